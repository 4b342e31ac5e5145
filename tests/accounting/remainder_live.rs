//! The wall's unmeasured remainder on a live synthetic machine: RAPL and amdgpu for the parts,
//! a Shelly plug on 127.0.0.1 for the wall, and a 15 W "monitor" that only the wall sees,
//! plugged in at t = 30 s while the machine idles. Read by the real sensors, sampler and plug
//! client; the remainder must rise by 15 W (±1 W), be flagged as something else drawing
//! power, and show so in F1 and on the run card.
use crate::live;
use crate::support;

use live::{LiveMachine, Profile};
use llmtop::accounting::pricing::Tariff;
use llmtop::accounting::session::SessionRecorder;
use llmtop::config::{PlugConfig, SensorsSection};
use llmtop::dashboard::event::Event;
use llmtop::dashboard::theme::Theme;
use llmtop::metering::Metering;
use llmtop::sensors::sysfs::Sysfs;
use llmtop::sensors::{DiscoverOptions, Meter, discover_with};
use ratatui::buffer::Cell;
use std::time::{Duration, Instant};

fn meter(m: &LiveMachine) -> Meter {
    let section = SensorsSection {
        sysfs_root: m.root.clone(),
        rate_hz: 4.0,
        plugs: vec![PlugConfig {
            kind: "shelly-gen2".into(),
            url: m.plug_url(),
            entity: None,
            token: None,
            rate_hz: 1.0,
            ca_file: None,
        }],
        ..SensorsSection::default()
    };
    let opts = DiscoverOptions {
        sysfs: Sysfs::new(&m.root),
        nvml: false,
        system: false,
        probe_plugs: true,
        proc_stat: "/proc/stat".into(),
    };
    Meter::discovered(discover_with(&section, &opts), section.rate_hz)
}

fn screen(app: &llmtop::dashboard::state::App) -> String {
    let buf = llmtop::dashboard::ui::render_buffer(app, &Theme::dark(), app.width, app.height);
    buf.content()
        .chunks(usize::from(app.width))
        .map(|row| row.iter().map(Cell::symbol).collect::<String>())
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn a_monitor_plugged_in_while_idle_raises_the_remainder_by_its_watts_and_is_flagged() {
    let monitor_at = 30.0;
    let m = LiveMachine::start(Profile::flat(20.0, 50.0, 30.0).plus_rest_from(monitor_at, 15.0));
    let meter = meter(&m);
    assert!(meter.has_wall_plug(), "{:?}", meter.statuses);
    let tariff = Tariff::preset("DE").expect("DE");
    let mut metering = Metering::for_meter(&meter, tariff);
    // Sampler time = machine time + offset.
    let offset = -m.t_of(meter.handle.start());
    let (sampler, mut samples) = meter.into_parts();
    let mut rec = SessionRecorder::new(0.0);
    let until = monitor_at + 12.0;
    let deadline = Instant::now() + Duration::from_secs_f64(until + 20.0);
    let mut flagged_at = None;
    loop {
        while let Ok(s) = samples.try_recv() {
            metering.fold(&s, &mut [&mut rec]);
            let ledger = metering.ledger();
            if flagged_at.is_none() && rec.remainder(ledger).is_some_and(|r| !r.shifts.is_empty()) {
                flagged_at = ledger.settled_until();
            }
        }
        if metering.ledger().settled_until().unwrap_or(f64::MIN) - offset >= until {
            break;
        }
        assert!(Instant::now() < deadline, "the ledger never settled");
        std::thread::sleep(Duration::from_millis(5));
    }
    sampler.stop();
    let ledger = metering.ledger();
    // The remainder before and after, from the ledger: 30 W of rest, then 45 W.
    let before = ledger
        .wall_split(10.0 + offset, monitor_at - 1.0 + offset)
        .expect("split before");
    let after = ledger
        .wall_split(monitor_at + 2.0 + offset, until + offset)
        .expect("split after");
    eprintln!(
        "remainder before {:.3} W, after {:.3} W, parts {:.3} / {:.3} W",
        before.remainder_w(),
        after.remainder_w(),
        before.parts_w(),
        after.parts_w()
    );
    let rise = after.remainder_w() - before.remainder_w();
    assert!((rise - 15.0).abs() <= 1.0, "rise {rise}");
    assert!((before.remainder_w() - 30.0).abs() <= 1.0, "{before:?}");
    // The parts did not change: nothing any component measured explains it.
    assert!(
        (after.parts_w() - before.parts_w()).abs() < 0.5,
        "{before:?} {after:?}"
    );
    // Flagged once, at the monitor, within seconds of it.
    let view = rec.remainder(ledger).expect("a remainder");
    assert_eq!(view.shifts.len(), 1, "{:?}", view.shifts);
    let shift = view.shifts[0];
    assert!((shift.watts - 15.0).abs() <= 1.0, "{shift:?}");
    assert!(
        (shift.t - offset - monitor_at).abs() <= 1.5,
        "shift at machine t {} ({shift:?})",
        shift.t - offset
    );
    let flagged = flagged_at.expect("flagged") - offset;
    assert!(
        flagged < monitor_at + 8.0,
        "flagged only at machine t {flagged}"
    );
    // Live: the last seconds' remainder and its share of the wall.
    assert!((view.watts - 45.0).abs() <= 1.0, "{view:?}");
    assert!((view.share - 45.0 / 115.0).abs() <= 0.01, "{view:?}");
    assert!(
        view.idle_w.is_some_and(|w| (w - 45.0).abs() <= 1.0),
        "{view:?}"
    );

    // F1 shows it, the shift in words.
    let mut app = support::new_app(120, 50);
    support::loaded(&mut app);
    let (energy, cost) = rec.footer(ledger, None);
    app.update(Event::Footer { energy, cost });
    app.update(Event::Tick {
        now: ledger.settled_until().expect("settled"),
    });
    app.show_help = true;
    let s = screen(&app);
    assert!(
        s.contains("Wall remainder")
            && s.contains(&format!(
                "{:.1} W, {:.0} % of the wall",
                view.watts,
                view.share * 100.0
            )),
        "{s}"
    );
    assert!(
        s.contains(&format!(
            "! something else started drawing power: {:+.1} W at the wall while idle",
            shift.watts
        )),
        "{s}"
    );

    // The run card carries it, on the series clock.
    let card = llmtop::dashboard::card::session_metrics(&rec, ledger);
    let r = card.remainder.expect("card remainder");
    assert_eq!(r.shifts.len(), 1, "{r:?}");
    assert!((r.shifts[0].watts - shift.watts).abs() < 1e-9);
    let origin = rec.series_origin().expect("origin");
    assert!((r.shifts[0].t_s - (shift.t - origin)).abs() < 1e-9);
    assert!(
        r.shifts[0]
            .text
            .starts_with("something else started drawing power")
    );
    assert!(r.avg_w > 30.0 && r.avg_w < 45.0, "{r:?}");
}
