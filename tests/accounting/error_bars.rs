//! Error bars against sensor errors of known size, on live synthetic machines (tests/live):
//! a RAPL counter that reads 3 % high, a GPU whose power is a 1 s average under a step load,
//! and a CPU with no sensor at all, estimated from its utilisation. Read by the real sensors,
//! sampler and ledger; each figure's band must hold the true joules, and be no wider than its
//! method allows (the bound worked out by hand in each test).
use crate::live;

use live::{Inject, LiveMachine, Profile, assert_within};
use llmtop::accounting::energy::{EnergyReport, TotalBasis, Window};
use llmtop::accounting::session::{ReplyFigures, SessionRecorder};
use llmtop::accounting::uncertainty::Band;
use llmtop::config::SensorsSection;
use llmtop::engine::{EngineEvent, StopReason};
use llmtop::export::prometheus::MetricsState;
use llmtop::metering::Metering;
use llmtop::sensors::sysfs::Sysfs;
use llmtop::sensors::{DiscoverOptions, Meter, discover_with};
use std::time::{Duration, Instant};

/// The tree's sensors, no plug; `cpu_model` sets the estimate's (idle, TDP) watts.
fn meter(m: &LiveMachine, cpu_model: Option<(f64, f64)>) -> Meter {
    let mut section = SensorsSection {
        sysfs_root: m.root.clone(),
        rate_hz: 4.0,
        ..SensorsSection::default()
    };
    if let Some((idle, tdp)) = cpu_model {
        section.idle_watts = idle;
        section.tdp_watts = tdp;
    }
    let opts = DiscoverOptions {
        sysfs: Sysfs::new(&m.root),
        nvml: false,
        system: false,
        probe_plugs: false,
        proc_stat: m.proc_stat(),
    };
    Meter::discovered(discover_with(&section, &opts), section.rate_hz)
}

struct Run {
    metering: Metering,
    rec: SessionRecorder,
    /// Sampler time minus machine time.
    offset: f64,
    figures: Vec<ReplyFigures>,
}

/// The shell's accounting on the live machine until `until` (machine time), with a reply
/// over each `(start, end)` of machine time.
fn run(m: &LiveMachine, meter: Meter, replies: &[(f64, f64)], until: f64) -> Run {
    let mut metering = Metering::for_meter(
        &meter,
        llmtop::accounting::pricing::Tariff::preset("DE").expect("DE"),
    );
    let offset = -m.t_of(meter.handle.start());
    let (sampler, mut samples) = meter.into_parts();
    let mut rec = SessionRecorder::new(0.0);
    let mut pending: Vec<(f64, f64)> = replies.to_vec();
    let mut figures = Vec::new();
    let deadline = Instant::now() + Duration::from_secs_f64(until + 15.0);
    loop {
        let now = sampler.now();
        if let Some(&(start, end)) = pending.first()
            && now - offset >= end
        {
            pending.remove(0);
            let mut stats = crate::support::stats(200, StopReason::EndOfGeneration);
            stats.wall_s = end - start;
            rec.observe(&EngineEvent::ReplyDone(stats), end + offset);
        }
        while let Ok(s) = samples.try_recv() {
            metering.fold(&s, &mut [&mut rec]);
            figures.extend(rec.take_reply_figures());
        }
        let settled = metering.ledger().settled_until().unwrap_or(f64::MIN);
        if settled - offset >= until && pending.is_empty() && figures.len() == replies.len() {
            break;
        }
        assert!(Instant::now() < deadline, "the ledger never settled");
        std::thread::sleep(Duration::from_millis(5));
    }
    sampler.stop();
    Run {
        metering,
        rec,
        offset,
        figures,
    }
}

impl Run {
    /// The ledger's report over `[t0, t1]` of machine time.
    fn report(&self, t0: f64, t1: f64) -> EnergyReport {
        self.metering.ledger().report(&Window {
            t0: t0 + self.offset,
            t1: t1 + self.offset,
            ..Window::default()
        })
    }
}

/// The band around `figure` holds `truth`, and each side is no wider than `allowed` (a
/// fraction of the figure, worked out from the method by hand).
fn holds(what: &str, band: Option<Band>, figure: f64, truth: f64, allowed: f64) -> Band {
    let b = band.unwrap_or_else(|| panic!("{what}: no band"));
    let (lo, hi) = b.range(figure);
    eprintln!(
        "{what}: {figure:.2} J, band {} = {lo:.2}..{hi:.2} J, truth {truth:.2} J ({:+.2} %)",
        b.text(),
        (truth / figure - 1.0) * 100.0
    );
    assert!(
        b.contains(figure, truth, 0.0),
        "{what}: the truth {truth:.3} J is outside {lo:.3}..{hi:.3} J ({})",
        b.text()
    );
    assert!(
        b.half_width() <= allowed,
        "{what}: band {} wider than the {:.1} % its method allows",
        b.text(),
        allowed * 100.0
    );
    b
}

#[test]
fn a_rapl_counter_3_percent_high_stays_inside_its_band() {
    let m = LiveMachine::start(Profile::bursts().injected(Inject {
        rapl_gain: 1.03,
        ..Inject::default()
    }));
    // Two replies over the bursts (ramp up at 2 s, down by 6 s; again from 8 to 12 s).
    let r = run(&m, meter(&m, None), &[(2.0, 6.0), (8.0, 12.0)], 13.0);
    assert_eq!(r.metering.ledger().basis(), Some(TotalBasis::Components));
    let p = &m.profile;
    for (t0, t1) in [(2.0, 6.0), (8.0, 12.0), (1.0, 13.0)] {
        let rep = r.report(t0, t1);
        let rapl = rep
            .sources
            .iter()
            .find(|s| s.id.starts_with("rapl:"))
            .expect("rapl");
        let gpu = rep
            .sources
            .iter()
            .find(|s| s.id.starts_with("hwmon:"))
            .expect("gpu");
        // The injected error: the counter reads 3 % high (its data may start a tick late).
        let (a, b) = (t1 - rapl.covered_s, t1);
        let cpu_true = p.cpu_j(a, b);
        assert_within("RAPL 3 % high", rapl.energy_j, cpu_true * 1.03, 0.005);
        // Intel RAPL's ±5 %, plus the edges' interpolation at 4 Hz: the power ranges by at
        // most 33 W over a sample there, 0.25 s x 33 W / 4 = 2 J an edge.
        let allowed = 0.05 + 2.0 * 2.1 / rapl.energy_j;
        holds("RAPL package", rapl.band, rapl.energy_j, cpu_true, allowed);
        // The GPU, written without error: within 2 % as before (sampled power).
        let (ga, gb) = (t1 - gpu.covered_s, t1);
        let gpu_true = p.gpu_j(ga, gb);
        assert_within("GPU hwmon", gpu.energy_j, gpu_true, 0.02);
        // amdgpu's power1_average: ±10 %, a 1 s average trailing a 140 W swing by half a
        // second (70 J), and the trapezoid of an average sampled at 4 Hz: a 140 W ramp moves
        // 0.25 s x 35 W / 2 x 1/4 a sample, 4.4 J a ramp, two ramps a burst.
        let ramps = ((gb - ga) / 6.0).ceil() * 2.0;
        let allowed = 0.10 + (0.5 * 140.0 + ramps * 4.6) / gpu.energy_j;
        holds(
            "GPU power1_average",
            gpu.band,
            gpu.energy_j,
            gpu_true,
            allowed,
        );
        // The total: both, added linearly.
        let total = rep.total.as_ref().expect("total");
        let allowed = (rapl.energy_j * rapl.band.expect("band").half_width()
            + gpu.energy_j * gpu.band.expect("band").half_width())
            / total.energy_j
            + 1e-9;
        holds(
            "total",
            total.band,
            total.energy_j,
            p.cpu_j(a, b) + p.gpu_j(ga, gb),
            allowed,
        );
    }
    // A reply's figures carry the same band as its report.
    let f = &r.figures[0];
    let span = &r.rec.replies()[0];
    let rep = r
        .rec
        .reply_report(r.metering.ledger(), span)
        .expect("reply");
    assert_eq!(f.band, rep.total.expect("total").band);
}

#[test]
fn a_one_second_average_under_a_step_load_stays_inside_its_band() {
    let m = LiveMachine::start(Profile::steps().injected(Inject {
        gpu_average_s: Some(1.0),
        ..Inject::default()
    }));
    let r = run(&m, meter(&m, None), &[(3.0, 5.0)], 12.0);
    let p = &m.profile;
    // A reply that starts with the step: the average shows the first second's 140 W rise
    // over a second, so about 70 J of it comes after the window and the figure reads low.
    let rep = r.report(3.0, 5.0);
    let gpu = rep
        .sources
        .iter()
        .find(|s| s.id.starts_with("hwmon:"))
        .expect("gpu");
    let truth = p.gpu_j(3.0, 5.0);
    assert!(
        gpu.energy_j < truth * 0.85,
        "the average should trail the step: {} J of {truth} J",
        gpu.energy_j
    );
    // Allowed: ±10 % gain, half the window times the 140 W swing, the trapezoid of the
    // average's ramp (4.4 J) and of the step back down's first second where it overlaps.
    let allowed = 0.10 + (70.0 + 20.0) / gpu.energy_j;
    let b = holds(
        "GPU step, 2 s reply",
        gpu.band,
        gpu.energy_j,
        truth,
        allowed,
    );
    // Wider than ±25 %: the reply line says so in words.
    assert!(b.is_wide(), "{}", b.text());
    let f = &r.figures[0];
    let lines = llmtop::dashboard::layout::figures_lines(f);
    // (The reply's own band: the GPU's mixed with the other channels', whichever its sides.)
    let words = f.band.and_then(Band::words).expect("a wide reply band");
    assert!(words.starts_with("could be "), "{words}");
    assert!(lines[0].contains(&words), "{lines:?}");
    // Over a long window both steps' lags cancel: the figure is right, and its band is the
    // gain and the same two 70 J lags on a larger figure.
    let rep = r.report(1.0, 11.0);
    let gpu = rep
        .sources
        .iter()
        .find(|s| s.id.starts_with("hwmon:"))
        .expect("gpu");
    let truth = p.gpu_j(1.0, 11.0);
    assert_within("GPU over both edges of the step", gpu.energy_j, truth, 0.02);
    let allowed = 0.10 + (70.0 + 20.0) / gpu.energy_j;
    let long = holds(
        "GPU step, 10 s window",
        gpu.band,
        gpu.energy_j,
        truth,
        allowed,
    );
    assert!(
        long.half_width() < b.half_width(),
        "a longer window is surer"
    );
}

#[test]
fn an_estimated_cpu_keeps_its_published_band_both_ways() {
    // The same CPU estimated two ways: a model that reads high (20 W idle, 86 W TDP: +67 %
    // at idle, +91 % at load) and one that reads low (5 W idle, 20 W TDP: −58 % and −56 %),
    // both inside CodeCarbon's −60 %…+190 %.
    for (idle, tdp) in [(20.0, 86.0), (5.0, 20.0)] {
        let m = LiveMachine::start(Profile::bursts().injected(Inject {
            no_rapl: true,
            ..Inject::default()
        }));
        let r = run(&m, meter(&m, Some((idle, tdp))), &[(2.0, 6.0)], 7.0);
        let rep = r.report(2.0, 6.0);
        let cpu = rep
            .sources
            .iter()
            .find(|s| s.id.starts_with("estimate:"))
            .expect("estimate");
        let truth = m.profile.cpu_j(6.0 - cpu.covered_s, 6.0);
        // The published band, converted to where the truth lies (−67 %…+163 %), and the
        // trapezoid of a 4 Hz sample of the estimate's two 1 s ramps in the window: each
        // moves up to 0.25 s x (TDP − idle) / 2 over its four samples.
        let allowed = 1.63 + (2.0 * 0.25 * (tdp - idle) / 2.0 + 4.0) / cpu.energy_j;
        holds("estimated CPU", cpu.band, cpu.energy_j, truth, allowed);
        let total = rep.total.as_ref().expect("total");
        assert!(total.estimated);
        let truth_all = truth + m.profile.gpu_j(6.0 - cpu.covered_s, 6.0);
        let b = total.band.expect("band");
        assert!(b.contains(total.energy_j, truth_all, 0.0), "{}", b.text());
        // The reply line says "est." and the band in words.
        let f = &r.figures[0];
        let lines = llmtop::dashboard::layout::figures_lines(f);
        assert!(lines[0][0].starts_with("est. "), "{lines:?}");
        assert!(
            lines[0].iter().any(|p| p.starts_with("could be −")),
            "{lines:?}"
        );
        // The exporter: the estimate's own band, bound="lower" and "upper".
        let mut state = MetricsState::new(None);
        state.apply_ledger(r.metering.ledger());
        let text = state.render();
        let lower = text
            .lines()
            .find(|l| {
                l.starts_with("llmtop_energy_relative_uncertainty{id=\"estimate:cpu:power\"")
                    && l.contains("bound=\"lower\"")
            })
            .unwrap_or_else(|| panic!("no estimate band in\n{text}"));
        let v: f64 = lower
            .rsplit(' ')
            .next()
            .and_then(|v| v.parse().ok())
            .expect("value");
        // The ledger's band of the channel since start: the method's −67 % and what its
        // sampling added over the run.
        let own = r
            .metering
            .ledger()
            .channels()
            .into_iter()
            .find(|c| c.id == "estimate:cpu:power")
            .and_then(|c| c.band)
            .expect("channel band");
        assert!((v - own.lo).abs() < 1e-12, "{lower} vs {own:?}");
        assert!((-0.80..=-0.672).contains(&v), "{lower}");
    }
}
