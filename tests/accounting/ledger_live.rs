//! Every surface against the true joules of a live synthetic machine: a RAPL counter that
//! wraps every second or so, an amdgpu hwmon (power only), and a Shelly plug on 127.0.0.1,
//! read by the real sensors, sampler and plug client. The gauge, footer, per-reply energy, run
//! card, exporter (scraped over loopback) and lifetime tally must agree with the truth (1 %;
//! 2 % where only power is sampled) and with each other, and the basis must not flip while
//! the plug answers.
use crate::live;
use crate::support;

use live::{LiveMachine, Profile, assert_within};
use llmtop::accounting::energy::{TotalBasis, Window};
use llmtop::accounting::lifetime::LifetimeTally;
use llmtop::accounting::pricing::Tariff;
use llmtop::accounting::session::{ReplySpan, SessionRecorder};
use llmtop::accounting::tally::TallyStore;
use llmtop::config::{PlugConfig, SensorsSection, SnapshotSection};
use llmtop::dashboard::card::{self, CardContext};
use llmtop::dashboard::event::Event;
use llmtop::dashboard::state::App;
use llmtop::engine::{EngineEvent, StopReason};
use llmtop::export::feed::MetricsFeed;
use llmtop::export::prometheus::MetricsServer;
use llmtop::metering::Metering;
use llmtop::sensors::host::HostInfo;
use llmtop::sensors::sysfs::Sysfs;
use llmtop::sensors::{DiscoverOptions, Meter, discover_with};
use std::io::{Read, Write};
use std::time::{Duration, Instant};

fn meter(m: &LiveMachine, with_plug: bool) -> Meter {
    let section = SensorsSection {
        sysfs_root: m.root.clone(),
        rate_hz: 4.0,
        plugs: if with_plug {
            vec![PlugConfig {
                kind: "shelly-gen2".into(),
                url: m.plug_url(),
                entity: None,
                token: None,
                rate_hz: 1.0,
                ca_file: None,
            }]
        } else {
            Vec::new()
        },
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

fn tariff() -> Tariff {
    Tariff::preset("DE")
        .expect("DE")
        .with_time_zone(jiff::tz::TimeZone::UTC)
}

fn scrape(addr: std::net::SocketAddr, name: &str) -> f64 {
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    write!(s, "GET /metrics HTTP/1.1\r\nHost: {addr}\r\n\r\n").expect("send");
    let mut body = String::new();
    s.read_to_string(&mut body).expect("read");
    body.lines()
        .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("{name} not in {body}"))
}

/// What the dashboard's shell does, on the live machine, for `seconds` of machine time: the
/// metering runtime's fold into the session, the lifetime tally and the metrics endpoint; a
/// reply ends with each burst of load. Returns the pieces to check.
struct Run {
    metering: Metering,
    rec: SessionRecorder,
    app: App,
    metrics: MetricsServer,
    tally: TallyStore,
    _dir: tempfile::TempDir,
    /// Sampler time minus machine time.
    offset: f64,
}

fn run(m: &LiveMachine, with_plug: bool, until_machine_t: f64) -> Run {
    let meter = meter(m, with_plug);
    assert_eq!(meter.has_wall_plug(), with_plug, "{:?}", meter.statuses);
    let mut metering = Metering::for_meter(&meter, tariff());
    let offset = -m.t_of(meter.handle.start());
    let (sampler, mut samples) = meter.into_parts();
    let mut rec = SessionRecorder::new(0.0);
    let mut app = support::new_app(120, 40);
    support::loaded(&mut app);
    let mut feed = MetricsFeed::new(Some(tariff()));
    let metrics = MetricsServer::start("127.0.0.1:0", feed.state()).expect("metrics");
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut store, _) =
        TallyStore::open(&dir.path().join("tally.json"), jiff::Timestamp::now()).expect("tally");
    let mut tally = LifetimeTally::new(&mut store);
    // Replies span each burst, from the ramp up (machine 2 s) to the end of the ramp down (6 s).
    let mut reply_ends: Vec<f64> = (0..4).map(|i| 6.0 + 6.0 * f64::from(i)).collect();
    reply_ends.retain(|&t| t < until_machine_t);
    let deadline = Instant::now() + Duration::from_secs_f64(until_machine_t + 10.0);
    loop {
        let now = sampler.now();
        if let Some(&end) = reply_ends.first()
            && now - offset >= end
        {
            reply_ends.remove(0);
            let mut stats = support::stats(200, StopReason::EndOfGeneration);
            stats.wall_s = 4.0;
            // The engine reports the reply when it ends: `now` is on the sampler clock.
            let end_s = end + offset;
            let ev = EngineEvent::ReplyDone(stats);
            if let Some(d) = rec.observe(&ev, end_s) {
                tally.add(&d);
            }
            app.update(Event::Engine {
                event: ev,
                now: end_s,
            });
        }
        while let Ok(s) = samples.try_recv() {
            metering.fold(&s, &mut [&mut rec, &mut tally, &mut feed]);
            app.update(Event::Power(metering.ledger().power_view()));
            app.update(Event::Sample(s.clone()));
        }
        let settled = metering.ledger().settled_until().unwrap_or(f64::MIN);
        if settled - offset >= until_machine_t && reply_ends.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "the ledger never settled");
        std::thread::sleep(Duration::from_millis(5));
    }
    sampler.stop();
    metering
        .flush(&mut [&mut rec, &mut tally, &mut feed])
        .expect("flush");
    drop(tally);
    let (energy, cost) = rec.footer(metering.ledger(), None);
    app.update(Event::Footer { energy, cost });
    Run {
        metering,
        rec,
        app,
        metrics,
        tally: store,
        _dir: dir,
        offset,
    }
}

fn truth_wall(m: &LiveMachine, r: &Run, t0: f64, t1: f64) -> f64 {
    m.profile.wall_j(t0 - r.offset, t1 - r.offset)
}

fn span_of(r: &Run) -> (f64, f64) {
    r.metering.ledger().span().expect("the ledger has a total")
}

#[test]
fn with_a_wall_plug_every_surface_agrees_with_the_true_joules() {
    let m = LiveMachine::start(Profile::bursts());
    // Ends in the idle stretch after the second burst (flat 62 W from 12 to 14 s).
    let mut r = run(&m, true, 13.6);
    let ledger = r.metering.ledger().clone();

    // The basis: the wall plug from the start, never a flip while it answers.
    assert_eq!(ledger.basis(), Some(TotalBasis::Wall));
    assert_eq!(ledger.changes().len(), 1, "{:?}", ledger.changes());

    // Footer: the session's energy, the plug's counter.
    let (t0, t1) = span_of(&r);
    let truth = truth_wall(&m, &r, t0, t1);
    let footer_j = ledger.totals().energy_j;
    assert_within("footer energy", footer_j, truth, 0.01);
    assert_within("footer Wh", r.app.energy.wh * 3600.0, footer_j, 1e-9);

    // Per reply: each burst, edges inside the plug's 1 s steps.
    let replies: Vec<ReplySpan> = r.rec.replies().to_vec();
    assert_eq!(replies.len(), 2);
    for span in &replies {
        let rep = r.rec.reply_report(&ledger, span).expect("reply energy");
        let total = rep.total.expect("total");
        assert_within(
            "reply energy",
            total.energy_j,
            truth_wall(&m, &r, span.t0, span.t1),
            0.01,
        );
        assert_eq!(total.basis, TotalBasis::Wall);
    }
    // The RAPL counter wrapped (100 J range) several times and still matches; the GPU is
    // sampled power only.
    let whole = ledger.report(&Window {
        t0,
        t1,
        ..Window::default()
    });
    let rapl = whole
        .sources
        .iter()
        .find(|s| s.id.starts_with("rapl:"))
        .expect("rapl source");
    assert_within(
        "RAPL package",
        rapl.energy_j,
        m.profile
            .cpu_j(t1 - r.offset - rapl.covered_s, t1 - r.offset),
        0.01,
    );
    assert!(
        rapl.energy_j > 3.0 * live::RAPL_RANGE_UJ as f64 / 1e6,
        "wrapped 3+ times"
    );
    let gpu = whole
        .sources
        .iter()
        .find(|s| s.id.starts_with("hwmon:"))
        .expect("gpu source");
    assert_within(
        "GPU hwmon",
        gpu.energy_j,
        m.profile
            .gpu_j(t1 - r.offset - gpu.covered_s, t1 - r.offset),
        0.02,
    );

    // Gauge: the wall's power over the plug's last interval: between the least and the most
    // of the true means of the plug's last intervals before the settled time (which of them
    // the gauge's step is depends on how late the load let each answer be sampled).
    let g = r.app.gauges.total.as_ref().expect("gauge total");
    assert_eq!(g.label, "Wall");
    assert_eq!(Some(g.watts), ledger.total_power().map(|p| p.watts));
    let steps = m.plug_interval_watts(t1 - r.offset + 0.5, 3);
    assert!(steps.len() == 3, "plug answers: {steps:?}");
    let lo = steps.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = steps.iter().copied().fold(0.0, f64::max);
    assert!(
        g.watts >= lo * 0.99 && g.watts <= hi * 1.01,
        "gauge {} W outside the true {lo}..{hi} W of the plug's last steps",
        g.watts
    );

    // Exporter over loopback: the same joules and money as the footer.
    let exported = scrape(r.metrics.local_addr(), "llmtop_system_energy_joules_total");
    assert_within("exporter energy", exported, footer_j, 1e-9);
    let cost = scrape(
        r.metrics.local_addr(),
        "llmtop_electricity_cost_total{region=\"DE\",currency=\"EUR\"}",
    );
    assert_within("exporter cost", cost, footer_j / 3.6e6 * 0.38, 1e-9);

    // Lifetime tally, flushed to its file: the same joules.
    r.tally.flush(jiff::Timestamp::now()).expect("flush");
    let tally: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(r.tally.path()).expect("tally file"))
            .expect("json");
    assert_within(
        "tally energy",
        tally["energy_j"].as_f64().expect("energy_j"),
        footer_j,
        1e-9,
    );
    assert_eq!(tally["replies"].as_u64(), Some(2));

    // Run card: the session and the last reply, the same figures again.
    let c = card::card(
        &r.app,
        &r.rec,
        &ledger,
        CardContext {
            host: HostInfo::detect(Vec::new()),
            tariff: &tariff(),
            compare: &[],
            snapshot: &SnapshotSection::default(),
            now: jiff::Timestamp::now(),
        },
    )
    .expect("card");
    let session = c.session.energy.as_ref().expect("session energy");
    assert_within("card session", session.total_j, footer_j, 1e-9);
    assert_eq!(session.basis.as_deref(), Some("wall"));
    let last = replies.last().expect("reply");
    let card_reply = c
        .last_reply
        .as_ref()
        .and_then(|x| x.energy.as_ref())
        .expect("card reply energy");
    assert_within(
        "card reply",
        card_reply.total_j,
        truth_wall(&m, &r, last.t0, last.t1),
        0.01,
    );
    let card_cost = c.cost[0].session.expect("card session cost");
    assert_within("card cost", card_cost, cost, 1e-9);
}

#[test]
fn without_a_plug_the_components_add_up_to_the_true_joules() {
    let m = LiveMachine::start(Profile::bursts());
    let r = run(&m, false, 7.0);
    let ledger = r.metering.ledger();
    assert_eq!(ledger.basis(), Some(TotalBasis::Components));
    assert_eq!(ledger.changes().len(), 1, "{:?}", ledger.changes());
    let (t0, t1) = span_of(&r);
    let (a, b) = (t0 - r.offset, t1 - r.offset);
    // CPU from the counter (exact), GPU from sampled power: 2 %.
    let truth = m.profile.cpu_j(a, b) + m.profile.gpu_j(a, b);
    assert_within("components total", ledger.totals().energy_j, truth, 0.02);
    let span = r.rec.replies()[0].clone();
    let rep = r.rec.reply_report(ledger, &span).expect("reply");
    let (ra, rb) = (span.t0 - r.offset, span.t1 - r.offset);
    assert_within(
        "reply on components",
        rep.total.expect("total").energy_j,
        m.profile.cpu_j(ra, rb) + m.profile.gpu_j(ra, rb),
        0.02,
    );
    let g = r.app.gauges.total.as_ref().expect("gauge");
    assert_eq!(g.label, "Sum");
}
