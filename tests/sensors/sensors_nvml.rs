//! NVML through the real nvml-wrapper, against the stand-in `libnvidia-ml.so.1`
//! (tests/nvml/) playing scripted boards: rows, NOT_SUPPORTED on each call, pre-Volta boards,
//! the power gauge of a steady board, counter energy against the truth over a minute, a 50 ms
//! reply, a board lost mid-run, eight boards, per-process samples, and `llmtop sensors` and
//! `llmtop serve` as a user runs them. Every figure is checked against the truth the timeline
//! was written from.
//!
//! Without the stand-in and without a driver (the normal case on CPU machines) there are no
//! rows and one quiet "no NVIDIA driver" line. The GPU test is ignored; on a machine with an
//! NVIDIA GPU and driver run:
//!     cargo test --test sensors sensors_nvml -- --ignored

#[path = "../nvml/mod.rs"]
mod standin;

use llmtop::accounting::energy::Window;
use llmtop::accounting::ledger::Ledger;
use llmtop::accounting::session::SessionRecorder;
use llmtop::engine::{EngineEvent, Origins, ReplyStats, StopReason};
use llmtop::export::feed::MetricsFeed;
use llmtop::metering::Metering;
use llmtop::report::runcard::EnergyMetrics;
use llmtop::sensors::nvml::{self, VIA_AVERAGE, VIA_COUNTER, VIA_INSTANT, VIA_LOST};
use llmtop::sensors::settings::SensorsSection;
use llmtop::sensors::{Method, Quantity, Reading, Sample, Sampler, Sensor, SourceState};
use standin::{Arch, Board, Standin};
use std::time::Duration;

fn h100(watts: f64) -> Board {
    Board::steady("NVIDIA H100 80GB HBM3", watts)
}

fn get<'a>(rows: &'a [Reading], id: &str) -> &'a Reading {
    rows.iter()
        .find(|r| r.id == id)
        .unwrap_or_else(|| panic!("no {id} in {rows:#?}"))
}

fn within(what: &str, got: f64, want: f64, rel: f64) {
    assert!(
        (got - want).abs() <= rel * want.abs(),
        "{what}: {got} vs {want} (more than {:.2} % off)",
        rel * 100.0
    );
}

/// The boards of `s` sampled by the real sampler thread at `rate_hz` until timeline time
/// `until`; `each` sees every sample with its timeline time.
fn sample(s: &Standin, rate_hz: f64, until: f64, mut each: impl FnMut(&Sample, f64)) {
    let (sensor, _) = nvml::discover_on(s.open());
    let sensor: Box<dyn Sensor> = Box::new(sensor.expect("stand-in boards"));
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let handle = Sampler::spawn(vec![sensor], rate_hz, tx);
    let offset = s.at(handle.start());
    while let Some(sample) = rx.blocking_recv() {
        let t = sample.t + offset;
        each(&sample, t);
        if t >= until {
            break;
        }
    }
    handle.stop();
}

/// The value of the first series of `family` whose labels hold `needle`.
fn scrape(text: &str, family: &str, needle: &str) -> Option<f64> {
    text.lines()
        .filter(|l| l.starts_with(&format!("{family}{{")) || l.starts_with(&format!("{family} ")))
        .find(|l| l.contains(needle))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

#[test]
fn no_driver_means_no_rows_and_one_quiet_line() {
    if nvml::handle().is_ok() {
        crate::skip::skipped(
            "an NVIDIA driver (or LLMTOP_NVML_LIBRARY) is present here; the ignored GPU test covers this machine",
        );
        return;
    }
    let (sensor, statuses) = nvml::discover();
    assert!(sensor.is_none());
    assert_eq!(statuses.len(), 1);
    assert_eq!(statuses[0].state, SourceState::Missing);
    assert!(
        statuses[0].detail.starts_with("no NVIDIA driver"),
        "{:?}",
        statuses[0]
    );
    assert!(nvml::gpu_names().is_empty());
    // Init is attempted once and remembered: a second call gives the same answer, no panic.
    assert_eq!(nvml::handle().err(), Some(statuses[0].detail.as_str()));
}

/// What NVML answers becomes rows with units, limits, ids and the call behind each.
#[test]
fn every_row_comes_through_nvml_wrapper_with_its_unit_limit_and_call() {
    let mut b = h100(250.0);
    // Idle (0x1) and display clock (0x100) are not throttling; power cap (0x4) and sw
    // thermal (0x20) are.
    b.throttle = 0x1 | 0x4 | 0x20 | 0x100;
    b.fans = vec![(45, Some(2400)), (50, None)];
    let s = Standin::new(vec![b]);
    let (sensor, statuses) = nvml::discover_on(s.open());
    let mut sensor = sensor.expect("one board");
    assert_eq!(statuses.len(), 1, "{statuses:?}");
    assert_eq!(statuses[0].state, SourceState::Found);
    assert_eq!(statuses[0].device, "GPU 0 (NVIDIA H100 80GB HBM3)");
    assert!(
        statuses[0].detail.contains(VIA_INSTANT) && statuses[0].detail.contains(VIA_COUNTER),
        "{}",
        statuses[0].detail
    );
    let t = s.now();
    let rows = sensor.read(0.0);
    let p = get(&rows, "nvml:0:power");
    assert_eq!((p.value, p.limit), (Some(250.0), Some(700.0)));
    assert_eq!((p.quantity, p.method), (Quantity::Power, Method::Measured));
    assert_eq!(p.via.as_deref(), Some(VIA_INSTANT));
    assert_eq!(p.device, "NVIDIA H100 80GB HBM3");
    // The counter: 1 MJ at time 0 (it counts since driver load), 250 J a second since, as of
    // its last 100 ms update.
    let e = get(&rows, "nvml:0:energy");
    assert_eq!((e.quantity, e.method), (Quantity::Energy, Method::Counter));
    assert_eq!(e.via.as_deref(), Some(VIA_COUNTER));
    let j = e.value.expect("energy");
    assert!(
        j <= 1e6 + 250.0 * t + 0.01 && j >= 1e6 + 250.0 * (t - 0.1) - 0.01,
        "{j} J at t = {t}"
    );
    let temp = get(&rows, "nvml:0:temp");
    assert_eq!((temp.value, temp.limit), (Some(61.0), Some(87.0)));
    let fan0 = get(&rows, "nvml:0:fan0");
    assert_eq!(
        (fan0.quantity, fan0.value),
        (Quantity::FanRpm, Some(2400.0))
    );
    let fan1 = get(&rows, "nvml:0:fan1");
    assert_eq!(
        (fan1.quantity, fan1.value),
        (Quantity::FanPercent, Some(50.0))
    );
    assert_eq!(get(&rows, "nvml:0:util").value, Some(97.0));
    assert_eq!(
        get(&rows, "nvml:0:vram_used").value,
        Some((20u64 << 30) as f64)
    );
    assert_eq!(
        get(&rows, "nvml:0:vram_total").value,
        Some((80u64 << 30) as f64)
    );
    let gfx = get(&rows, "nvml:0:clock_gfx");
    assert_eq!((gfx.value, gfx.limit), (Some(1755.0), Some(1980.0)));
    let sm = get(&rows, "nvml:0:clock_sm");
    assert_eq!(
        (sm.value, sm.limit, sm.label.as_str()),
        (Some(1755.0), Some(1980.0), "SM clock")
    );
    let mem = get(&rows, "nvml:0:clock_mem");
    assert_eq!((mem.value, mem.limit), (Some(2619.0), None));
    let why = get(&rows, "nvml:0:throttle");
    assert_eq!(why.quantity, Quantity::ThrottleReasons);
    assert_eq!(why.value, Some(f64::from(0x4 | 0x20)));
    assert_eq!(rows.len(), 12, "{rows:#?}");
}

/// NOT_SUPPORTED on any one call: that call's rows go n/a (or, for what discovery asks,
/// the board is taken without that feature), and every other row carries on unchanged.
#[test]
fn not_supported_on_any_one_call_leaves_the_other_rows_working() {
    let board = |fail: Option<&str>| {
        let mut b = h100(250.0);
        b.fans = vec![(45, Some(2400)), (50, None)];
        // A Volta board beside it: power_usage is its power row.
        let mut v = h100(150.0).arch(Arch::Volta);
        v.name = "Tesla V100-SXM2-32GB".into();
        v.fans = b.fans.clone();
        if let Some(call) = fail {
            b = b.fail(call, "NOT_SUPPORTED", None);
            v = v.fail(call, "NOT_SUPPORTED", None);
        }
        vec![b, v]
    };
    let read = |boards: Vec<Board>| {
        let s = Standin::new(boards);
        let (sensor, _) = nvml::discover_on(s.open());
        sensor.expect("boards").read(0.0)
    };
    // The rows, by id: value (energy rounded off: it moves), limit, quantity, via.
    type Row = (Option<f64>, Option<f64>, Quantity, Option<String>, String);
    let table = |rows: Vec<Reading>| -> std::collections::BTreeMap<String, Row> {
        rows.into_iter()
            .map(|r| {
                let v = if r.quantity == Quantity::Energy {
                    r.value.map(|_| 0.0)
                } else {
                    r.value
                };
                (r.id, (v, r.limit, r.quantity, r.via, r.device))
            })
            .collect()
    };
    let base = table(read(board(None)));
    assert_eq!(base.len(), 12 + 12, "{base:#?}");
    let na = |ids: &[&str]| {
        let mut t = base.clone();
        for id in ids {
            t.get_mut(*id).expect(id).0 = None;
        }
        t
    };
    let both = |what: &str| [format!("nvml:0:{what}"), format!("nvml:1:{what}")];
    for (call, expected) in [
        (
            "nvmlDeviceGetTemperature",
            na(&["nvml:0:temp", "nvml:1:temp"]),
        ),
        (
            "nvmlDeviceGetUtilizationRates",
            na(&["nvml:0:util", "nvml:1:util"]),
        ),
        (
            "nvmlDeviceGetMemoryInfo_v2",
            na(&[
                "nvml:0:vram_used",
                "nvml:0:vram_total",
                "nvml:1:vram_used",
                "nvml:1:vram_total",
            ]),
        ),
        (
            "nvmlDeviceGetClockInfo",
            na(&[
                "nvml:0:clock_gfx",
                "nvml:0:clock_sm",
                "nvml:0:clock_mem",
                "nvml:1:clock_gfx",
                "nvml:1:clock_sm",
                "nvml:1:clock_mem",
            ]),
        ),
        (
            "nvmlDeviceGetFanSpeed_v2",
            na(&["nvml:0:fan1", "nvml:1:fan1"]),
        ),
        // Only the Volta board asks power_usage (the other reads the instant field).
        ("nvmlDeviceGetPowerUsage", na(&["nvml:1:power"])),
        ("nvmlDeviceGetFieldValues", {
            // No instant field: the H100's power row is its 1 s average, and says so.
            let mut t = base.clone();
            t.get_mut("nvml:0:power").expect("power").3 = Some(VIA_AVERAGE.into());
            t
        }),
        ("nvmlDeviceGetTotalEnergyConsumption", {
            // No counter: no energy rows (the power is integrated instead).
            let mut t = base.clone();
            t.remove("nvml:0:energy");
            t.remove("nvml:1:energy");
            t
        }),
        ("nvmlDeviceGetTemperatureThreshold", {
            let mut t = base.clone();
            for id in both("temp") {
                t.get_mut(&id).expect("temp").1 = None;
            }
            t
        }),
        ("nvmlDeviceGetMaxClockInfo", {
            let mut t = base.clone();
            for id in both("clock_gfx").into_iter().chain(both("clock_sm")) {
                t.get_mut(&id).expect("clock").1 = None;
            }
            t
        }),
        ("nvmlDeviceGetEnforcedPowerLimit", {
            let mut t = base.clone();
            for id in both("power") {
                t.get_mut(&id).expect("power").1 = None;
            }
            t
        }),
        ("nvmlDeviceGetFanSpeedRPM", {
            // The fan that had RPM reports percent instead.
            let mut t = base.clone();
            for id in both("fan0") {
                let r = t.get_mut(&id).expect("fan0");
                r.0 = Some(45.0);
                r.2 = Quantity::FanPercent;
            }
            t
        }),
        ("nvmlDeviceGetNumFans", {
            let mut t = base.clone();
            t.retain(|id, _| !id.contains(":fan"));
            t
        }),
        ("nvmlDeviceGetCurrentClocksThrottleReasons", {
            let mut t = base.clone();
            t.retain(|id, _| !id.ends_with(":throttle"));
            t
        }),
        ("nvmlDeviceGetName", {
            let mut t = base.clone();
            for (id, r) in t.iter_mut() {
                r.4 = if id.starts_with("nvml:0") {
                    "GPU 0"
                } else {
                    "GPU 1"
                }
                .into();
            }
            t
        }),
    ] {
        let got = table(read(board(Some(call))));
        assert_eq!(got, expected, "NOT_SUPPORTED on {call}");
    }
}

/// Pre-Volta boards have no energy counter: the ledger integrates their power and says so;
/// a Volta board has the counter but no instant field, so its watts are `power_usage`.
#[test]
fn a_pre_volta_board_integrates_its_power_and_says_so() {
    let knots = [
        (0.0, 90.0),
        (1.0, 90.0),
        (1.0, 210.0),
        (2.0, 210.0),
        (3.0, 120.0),
    ];
    let p100 = Board {
        name: "Tesla P100-PCIE-16GB".into(),
        ..h100(0.0).arch(Arch::Pascal).power(&knots)
    };
    let v100 = Board {
        name: "Tesla V100-SXM2-32GB".into(),
        ..h100(0.0).arch(Arch::Volta).power(&knots).phase(0.05)
    };
    let s = Standin::new(vec![p100, v100]);
    let (_, statuses) = nvml::discover_on(s.open());
    assert!(
        statuses[0].detail.contains("no energy counter (pre-Volta)"),
        "{statuses:?}"
    );
    let mut ledger = Ledger::new();
    let mut first: Option<(f64, f64)> = None;
    let mut last = (0.0, 0.0);
    sample(&s, 10.0, 3.6, |smp, t| {
        ledger.push(smp);
        first.get_or_insert((smp.t, t));
        last = (smp.t, t);
        assert!(
            !smp.readings.iter().any(|r| r.id == "nvml:0:energy"),
            "a pre-Volta board has no counter row"
        );
    });
    let channels = ledger.channels();
    let p = channels
        .iter()
        .find(|c| c.id == "nvml:0:power")
        .expect("P100 channel");
    assert_eq!(p.method, Method::Measured);
    assert_eq!(
        p.energy_method(),
        format!("integrated {VIA_AVERAGE}"),
        "the method names what was integrated"
    );
    let v = channels
        .iter()
        .find(|c| c.id == "nvml:1:energy")
        .expect("V100 counter");
    assert_eq!(v.energy_method(), format!("counter ({VIA_COUNTER})"));
    assert_eq!(v.watts_via.as_deref(), Some(VIA_AVERAGE));
    // The integral of a sampled power with a step (10 Hz) against the truth: within what one
    // sample period at the step can add (120 W x 0.1 s).
    let ((a, ta), (b, tb)) = (first.expect("samples"), last);
    let report = ledger.report(&Window {
        t0: a + 0.5,
        t1: b,
        ..Window::default()
    });
    let got = report
        .sources
        .iter()
        .find(|x| x.id == "nvml:0:power")
        .expect("P100 energy")
        .energy_j;
    let truth = s.boards[0].energy_between(ta + 0.5, tb);
    // The sampled power lags the truth by up to one 100 ms update: at most the step (120 W)
    // and the ramp's change (90 W) times 0.1 s.
    assert!((got - truth).abs() <= 21.0, "{got} J vs {truth} J");
}

/// The gauge's live watts come from the instant field (or the 1 s average, named so), never
/// from the counter's difference over one sample: the counter moves in 100 ms steps, so over
/// a 250 ms sample a steady 250 W board read 200 or 300 W (issue 19).
#[test]
fn the_power_gauge_of_a_steady_board_stays_within_2_percent_on_every_sample() {
    let s = Standin::new(vec![
        h100(250.0),
        // No instant field on this one: its watts are the 1 s average.
        h100(250.0)
            .phase(0.037)
            .fail("nvmlDeviceGetFieldValues", "NOT_SUPPORTED", None),
    ]);
    let rate = SensorsSection::default().rate_hz;
    assert_eq!(rate, 4.0, "the sampler's default rate");
    let mut m = Metering::new(Ledger::new());
    let mut metrics = MetricsFeed::new(None);
    let mut checked = 0;
    let mut worst: f64 = 0.0;
    sample(&s, rate, 5.0, |smp, _| {
        m.fold(smp, &mut [&mut metrics]);
        let ledger = m.ledger();
        let channels = ledger.channels();
        if channels.iter().any(|c| c.watts.is_none()) {
            return; // the first sample: no counter step yet
        }
        for (id, via) in [
            ("nvml:0:energy", VIA_INSTANT),
            ("nvml:1:energy", VIA_AVERAGE),
        ] {
            let c = channels.iter().find(|c| c.id == id).expect(id);
            within(id, c.watts.expect("watts"), 250.0, 0.02);
            assert_eq!(c.watts_via.as_deref(), Some(via));
        }
        let total = ledger.total_power().expect("total");
        within("total power", total.watts, 500.0, 0.02);
        worst = worst.max((total.watts / 500.0 - 1.0).abs());
        let text = metrics.with(|m| m.render());
        let gauge = scrape(&text, "llmtop_power_watts", "id=\"nvml:0:energy\"").expect("gauge");
        within("llmtop_power_watts", gauge, 250.0, 0.02);
        let system = scrape(&text, "llmtop_system_power_watts", "").expect("system");
        within("llmtop_system_power_watts", system, 500.0, 0.02);
        checked += 1;
    });
    eprintln!("gauge: {checked} samples, worst {:.3} % off", worst * 100.0);
    assert!(checked >= 15, "only {checked} samples checked");
}

/// A minute of scripted load on two boards (bursts, ramps and idle, their counters out of
/// step): the counter energy in the ledger stays within 0.5 % of the true joules, per board
/// and in total. (Costs a minute of wall time; the other tests of this binary run beside it.)
#[test]
fn counter_energy_stays_within_half_a_percent_of_truth_over_a_60_s_load() {
    let mut knots = vec![(0.0, 60.0), (2.0, 60.0), (4.0, 350.0)];
    let mut t = 4.0;
    for (len, w) in [
        (6.0, 350.0),
        (0.3, 120.0),
        (2.0, 410.0),
        (0.7, 90.0),
        (5.0, 300.0),
        (3.0, 180.0),
        (0.25, 450.0),
        (4.0, 220.0),
        (8.0, 330.0),
        (1.5, 75.0),
        (6.0, 390.0),
        (2.5, 140.0),
        (7.0, 280.0),
    ] {
        knots.push((t, w));
        t += len;
        knots.push((t, w));
    }
    knots.push((t + 2.0, 60.0)); // idle at the ends: a counter's 100 ms lag costs least there
    let end = 61.5;
    assert!(t + 2.0 < end - 1.0, "the load fits the minute: {t}");
    let a = h100(0.0).power(&knots);
    let b = Board {
        name: "NVIDIA H100 80GB HBM3 (2)".into(),
        ..h100(0.0).power(&knots).phase(0.063)
    };
    let s = Standin::new(vec![a, b]);
    let mut ledger = Ledger::new();
    let mut times = Vec::new();
    sample(&s, SensorsSection::default().rate_hz, end, |smp, t| {
        ledger.push(smp);
        times.push((smp.t, t));
    });
    // From the first sample after 0.5 s to the last settled one.
    let &(a, ta) = times.iter().find(|(_, t)| *t >= 0.5).expect("samples");
    let settled = ledger.settled_until().expect("settled");
    let &(b, tb) = times
        .iter()
        .rev()
        .find(|(st, _)| *st <= settled)
        .expect("settled sample");
    assert!(tb - ta >= 59.0, "{ta}..{tb}");
    let report = ledger.report(&Window {
        t0: a,
        t1: b,
        ..Window::default()
    });
    let total = report.total.as_ref().expect("total");
    assert!(!total.apportioned);
    let mut truth_sum = 0.0;
    for (i, board) in s.boards.iter().enumerate() {
        let truth = board.energy_between(ta, tb);
        truth_sum += truth;
        let got = report
            .sources
            .iter()
            .find(|x| x.id == format!("nvml:{i}:energy"))
            .expect("board")
            .energy_j;
        eprintln!(
            "board {i}: {got:.1} J vs {truth:.1} J ({:+.3} %)",
            (got / truth - 1.0) * 100.0
        );
        within(&format!("board {i}"), got, truth, 0.005);
    }
    within("total", total.energy_j, truth_sum, 0.005);
}

fn stats(wall_s: f64, tokens: u32) -> ReplyStats {
    ReplyStats {
        prompt_tokens: 5,
        conversation_tokens: 5,
        generated_tokens: tokens,
        ttft_ms: wall_s * 200.0,
        prefill_ms: wall_s * 200.0,
        prefill_tok_s: 100.0,
        gen_ms: wall_s * 800.0,
        gen_tok_s: 50.0,
        gen_wall_tok_s: 50.0,
        wall_s,
        stop: StopReason::EndOfGeneration,
        prefill_end_s: wall_s * 0.2,
        load_ms: None,
        origins: Origins::default(),
    }
}

/// A 50 ms reply is shorter than two steps of the counter: its own difference holds 0, 1 or
/// 2 steps (at 20 Hz sampling, 0 J half the time). Its energy is apportioned from the steps
/// around it and marked so on the reply line and the run card, never 0 J.
#[test]
fn a_50_ms_reply_gets_non_zero_apportioned_energy() {
    for rate in [SensorsSection::default().rate_hz, 20.0] {
        let s = Standin::new(vec![h100(250.0)]);
        let mut m = Metering::new(Ledger::new());
        let mut rec = SessionRecorder::new(0.0);
        let mut zero_windows = 0;
        let mut figures = Vec::new();
        let mut reply_at = None;
        let mut last_t = 0.0;
        sample(&s, rate, 4.5, |smp, t| {
            m.fold(smp, &mut [&mut rec]);
            // What the counter alone says of each 50 ms before this sample.
            if t > 1.0
                && let Some((j, _)) = m.ledger().energy_between(smp.t - 0.05, smp.t)
                && j == 0.0
            {
                zero_windows += 1;
            }
            if t >= 2.0 && reply_at.is_none() {
                // A reply of 50 ms that ended between two samples.
                let end = smp.t + 0.5 / rate;
                rec.observe(&EngineEvent::ReplyDone(stats(0.05, 3)), end);
                reply_at = Some(end);
            }
            figures.extend(rec.take_reply_figures());
            last_t = t;
        });
        assert!(last_t >= 4.5);
        let f = figures.first().expect("the reply's figures settled");
        eprintln!(
            "{rate} Hz: 50 ms reply {:.3} J, {zero_windows} windows of 0 J",
            f.energy_j
        );
        assert!(f.apportioned, "{f:?}");
        // 250 W x 50 ms = 12.5 J, from a second of steps around it: one 25 J step in 250 J.
        within("50 ms reply", f.energy_j, 12.5, 0.12);
        let line = llmtop::dashboard::layout::figures_lines(f);
        assert!(line[0][0].starts_with('≈'), "{line:?}");
        assert!(line[0].iter().any(|p| p == "apportioned"), "{line:?}");
        let span = rec.replies().last().expect("reply").clone();
        let report = rec.reply_report(m.ledger(), &span).expect("report");
        let card = EnergyMetrics::from_report(&report).expect("card");
        assert!(card.apportioned);
        within("run card", card.total_j, f.energy_j, 1e-9);
        if rate > 10.0 {
            assert!(zero_windows > 0, "at {rate} Hz the counter alone reads 0 J");
        }
    }
}

/// A board that falls off the bus at 10 s: its rows say lost, the total changes basis to
/// the board left (a visible change, with the reason, on every surface), nothing freezes and
/// nothing panics.
#[test]
fn a_board_lost_at_10_s_is_a_basis_change_on_every_surface() {
    let s = Standin::new(vec![
        h100(300.0).fail("*", "GPU_IS_LOST", Some(10.0)),
        h100(200.0).phase(0.041),
    ]);
    let mut m = Metering::new(Ledger::new());
    let mut rec = SessionRecorder::new(0.0);
    let mut metrics = MetricsFeed::new(None);
    let mut lost_rows = 0;
    let mut last_good = None;
    let mut seen_at = None;
    sample(&s, SensorsSection::default().rate_hz, 12.5, |smp, t| {
        m.fold(smp, &mut [&mut rec, &mut metrics]);
        let power = smp
            .readings
            .iter()
            .find(|r| r.id == "nvml:0:power")
            .expect("row");
        if t >= 10.05 {
            // Every row of the lost board is kept, n/a and marked lost.
            for r in smp.readings.iter().filter(|r| r.id.starts_with("nvml:0:")) {
                assert_eq!((r.value, r.via.as_deref()), (None, Some(VIA_LOST)), "{r:?}");
            }
            lost_rows += 1;
        } else if t < 9.95 {
            assert_eq!(power.value, Some(300.0));
        }
        if power.value.is_some() {
            last_good = Some((smp.t, t));
        }
        // When the change of basis became visible.
        if seen_at.is_none() && m.ledger().changes().len() > 1 {
            seen_at = Some(t);
        }
        let board1 = smp
            .readings
            .iter()
            .find(|r| r.id == "nvml:1:power")
            .expect("row");
        assert_eq!(board1.value, Some(200.0), "the other board carries on");
    });
    assert!(lost_rows >= 6);
    let ledger = m.ledger();
    let change = ledger
        .changes()
        .iter()
        .skip(1)
        .find(|c| c.reason.contains("nvml:0:energy silent"))
        .expect("a change of basis");
    // The old basis counts as far as the lost board reported; the change shows within the
    // ledger's silence rule (a second) of the loss.
    let (good_st, good_t) = last_good.expect("readings before the loss");
    assert!(good_t < 10.0, "{good_t}");
    assert_eq!(change.t, good_st);
    let seen = seen_at.expect("the change seen");
    assert!((10.0..=11.5).contains(&seen), "seen at {seen}");
    assert!(change.reason.contains(VIA_LOST), "{}", change.reason);
    assert_eq!(change.sources, ["nvml:1:energy"]);
    // The gauge: the board left, not a frozen 500 W.
    within(
        "total after",
        ledger.total_power().expect("total").watts,
        200.0,
        0.02,
    );
    let lost = ledger
        .channels()
        .into_iter()
        .find(|c| c.id == "nvml:0:energy")
        .expect("channel");
    assert_eq!(lost.watts, None);
    assert_eq!(lost.note.as_deref(), Some(VIA_LOST));
    // The footer's status line.
    let (energy, _) = rec.footer(m.ledger(), None);
    let text =
        llmtop::dashboard::app::basis_change_text(energy.last_change.as_ref().expect("change"));
    assert!(text.contains("GPU lost"), "{text}");
    // F1.
    let view = ledger.power_view();
    let boards = llmtop::dashboard::state::board_lines(&view);
    assert_eq!(boards.len(), 2);
    assert_eq!(boards[0].silent.as_deref(), Some(VIA_LOST));
    assert_eq!(boards[1].silent, None);
    // The exporter: no gauge for the lost board, the system figure on the one left.
    let text = metrics.with(|m| m.render());
    assert_eq!(
        scrape(&text, "llmtop_power_watts", "id=\"nvml:0:energy\""),
        None,
        "{text}"
    );
    within(
        "llmtop_system_power_watts",
        scrape(&text, "llmtop_system_power_watts", "").expect("system"),
        200.0,
        0.02,
    );
    // The run card of the session: the change, with its reason, and energy right on both
    // sides of it (the lost board's joules up to 10 s, the other's throughout).
    let report = rec.session_report(m.ledger()).expect("session");
    let card = EnergyMetrics::from_report(&report).expect("card");
    assert!(
        card.basis_changes
            .iter()
            .any(|c| c.reason.contains(VIA_LOST)),
        "{:?}",
        card.basis_changes
    );
}

/// Eight boards: each its own rows and channel, summed once into the total; each board's
/// energy is its own counter's, and the total is their sum.
#[test]
fn eight_boards_each_their_own_channel_summed_once() {
    let boards: Vec<Board> = (0..8)
        .map(|i| {
            let b = h100(100.0 + 50.0 * f64::from(i)).phase(0.013 * f64::from(i));
            Board {
                name: format!("NVIDIA H100 80GB HBM3 #{i}"),
                ..b
            }
        })
        .collect();
    let s = Standin::new(boards);
    let mut ledger = Ledger::new();
    let mut first: Option<Sample> = None;
    let mut last: Option<Sample> = None;
    let mut times = Vec::new();
    sample(&s, SensorsSection::default().rate_hz, 4.0, |smp, t| {
        ledger.push(smp);
        if first.is_none() {
            first = Some(smp.clone());
        }
        last = Some(smp.clone());
        times.push((smp.t, t));
    });
    let (first, last) = (first.expect("first"), last.expect("last"));
    let sum_w: f64 = s.boards.iter().map(|b| b.power_at(0.0)).sum();
    assert_eq!(sum_w, 2200.0);
    let channels = ledger.channels();
    let gpus: Vec<_> = channels
        .iter()
        .filter(|c| c.id.starts_with("nvml:"))
        .collect();
    assert_eq!(gpus.len(), 8, "{channels:#?}");
    assert!(
        gpus.iter()
            .all(|c| c.in_total && c.method == Method::Counter)
    );
    within(
        "total power",
        ledger.total_power().expect("total").watts,
        sum_w,
        0.02,
    );
    // Over everything settled: each board's energy is its counter's difference, and the
    // total their sum, once.
    let (a, b) = ledger.span().expect("span");
    assert_eq!(a, first.t);
    let report = ledger.report(&Window {
        t0: a,
        t1: b,
        ..Window::default()
    });
    let total = report.total.as_ref().expect("total");
    let mut sum = 0.0;
    for i in 0..8 {
        let id = format!("nvml:{i}:energy");
        let part = report.sources.iter().find(|x| x.id == id).expect("board");
        let counter = |smp: &Sample| get(&smp.readings, &id).value.expect("counter");
        if b == last.t {
            within(&id, part.energy_j, counter(&last) - counter(&first), 1e-9);
        }
        // Against the truth: within one 100 ms step at each end.
        let (ta, tb) = (a - times[0].0 + times[0].1, b - times[0].0 + times[0].1);
        let truth = s.boards[i].energy_between(ta, tb);
        let p = s.boards[i].power_at(0.0);
        assert!(
            (part.energy_j - truth).abs() <= 2.0 * 0.1 * p + 1.0,
            "{id}: {} J vs {truth} J",
            part.energy_j
        );
        sum += part.energy_j;
    }
    within("total is the boards' sum", total.energy_j, sum, 1e-9);
    // Peaks from the boards' power readings, not the counters' steps over one sample (which
    // would say 300 W for a steady 250 W).
    within(
        "peak of the total",
        total.peak_w.expect("peak"),
        sum_w,
        0.02,
    );
    let gpu7 = report
        .sources
        .iter()
        .find(|x| x.id == "nvml:7:energy")
        .expect("GPU7");
    within("peak of GPU7", gpu7.peak_w.expect("peak"), 450.0, 0.02);
    // The gauges: one row per board, GPU0 ... GPU7.
    let (_, parts) = llmtop::dashboard::state::power_items(&ledger.power_view());
    let labels: Vec<&str> = parts.iter().map(|p| p.label.as_str()).collect();
    assert_eq!(
        labels,
        [
            "GPU0", "GPU1", "GPU2", "GPU3", "GPU4", "GPU5", "GPU6", "GPU7"
        ]
    );
    within("GPU7 gauge", parts[7].watts, 450.0, 0.02);
}

/// Two boards and a reply: F1 names how each board is read and its share of the reply, and
/// the run card carries both, per board.
#[test]
fn two_boards_a_reply_is_shown_per_board_in_f1_and_the_run_card() {
    let s = Standin::new(vec![h100(300.0), h100(100.0).arch(Arch::Volta).phase(0.05)]);
    let mut m = Metering::new(Ledger::new());
    let mut rec = SessionRecorder::new(0.0);
    let mut figures = Vec::new();
    let mut done = false;
    sample(&s, SensorsSection::default().rate_hz, 5.0, |smp, t| {
        m.fold(smp, &mut [&mut rec]);
        if t >= 3.0 && !done {
            rec.observe(&EngineEvent::ReplyDone(stats(2.0, 40)), smp.t);
            done = true;
        }
        figures.extend(rec.take_reply_figures());
    });
    let f = figures.first().expect("figures");
    assert!(!f.apportioned);
    assert_eq!(f.boards.len(), 2);
    // 2 s at 300 W and 100 W: each within one 100 ms counter step at each end.
    let (b0, b1) = (f.boards[0].energy_j, f.boards[1].energy_j);
    assert!((b0 - 600.0).abs() <= 61.0, "GPU0 {b0} J");
    assert!((b1 - 200.0).abs() <= 21.0, "GPU1 {b1} J");
    within("reply is the boards' sum", f.energy_j, b0 + b1, 1e-9);
    let pct = |j: f64| format!("({:.0} %)", 100.0 * j / (b0 + b1));
    let mut app = llmtop::dashboard::state::App::new(
        llmtop::config::keys::KeyMap::default(),
        vec!["dark".into()],
        0,
        "model".into(),
    );
    app.update(llmtop::dashboard::event::Event::Power(
        m.ledger().power_view(),
    ));
    app.messages.push(llmtop::dashboard::state::Message {
        figures: Some(f.clone()),
        reply_seq: Some(0),
        ..llmtop::dashboard::state::Message::new(llmtop::dashboard::state::Role::Assistant, "hi")
    });
    let lines = llmtop::dashboard::ui::help::board_lines(&app);
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(
        lines[0].starts_with(&format!(
            "GPU0 NVIDIA H100 80GB HBM3: energy counter ({VIA_COUNTER}), watts {VIA_INSTANT}, last reply"
        )),
        "{}",
        lines[0]
    );
    assert!(lines[0].ends_with(&pct(b0)), "{}", lines[0]);
    assert!(
        lines[1].contains(&format!("watts {VIA_AVERAGE}")) && lines[1].ends_with(&pct(b1)),
        "{}",
        lines[1]
    );
    let span = rec.replies()[0].clone();
    let card = EnergyMetrics::from_report(&rec.reply_report(m.ledger(), &span).expect("report"))
        .expect("card");
    let gpu0 = card
        .sources
        .iter()
        .find(|x| x.id == "nvml:0:energy")
        .expect("GPU0");
    assert_eq!(
        (
            gpu0.method.as_str(),
            gpu0.via.as_deref(),
            gpu0.power_via.as_deref()
        ),
        ("counter", Some(VIA_COUNTER), Some(VIA_INSTANT))
    );
    within("card GPU0", gpu0.joules, f.boards[0].energy_j, 1e-9);
}

/// Per-process SM samples through nvml-wrapper: only those newer than the last look, and
/// none (not an error) when no process ran since; compute processes with their VRAM.
#[test]
fn per_process_samples_honour_the_last_seen_timestamp() {
    use llmtop::sensors::nvml::GpuProcesses;
    let s = Standin::new(vec![
        h100(250.0)
            .process(77, 60, 10, 3 << 30)
            .process(88, 20, 5, 1 << 30)
            .process(99, 0, 0, 1 << 20),
        h100(250.0).fail("nvmlDeviceGetProcessUtilization", "NOT_SUPPORTED", None),
    ]);
    let mut gpu = nvml::processes_on(s.open());
    assert_eq!(gpu.indices(), [0, 1]);
    let all = gpu.utilization(0, 0).expect("samples");
    // Two seconds kept, one sample per busy process every 100 ms; the idle one has none.
    assert_eq!(all.len(), 42);
    assert!(all.iter().all(|x| x.pid != 99));
    let p77: Vec<_> = all.iter().filter(|x| x.pid == 77).collect();
    assert!(p77.iter().all(|x| (x.sm_pct, x.mem_pct) == (60, 10)));
    let newest = all.iter().map(|x| x.timestamp_us).max().expect("newest");
    assert_eq!(gpu.utilization(0, newest).expect("none newer"), []);
    std::thread::sleep(Duration::from_millis(250));
    let newer = gpu.utilization(0, newest).expect("newer");
    assert!(
        (4..=6).contains(&newer.len()) && newer.iter().all(|x| x.timestamp_us > newest),
        "{newer:?}"
    );
    let procs = gpu.compute_processes(0).expect("processes");
    assert_eq!(procs.len(), 3);
    assert_eq!((procs[0].pid, procs[0].vram_bytes), (77, Some(3 << 30)));
    let err = gpu.utilization(1, 0).expect_err("not supported");
    assert!(err.contains("GPU 1"), "{err}");
}

/// The process probe (what `llmtop share` and the attached server's share read each sample)
/// against the library: the first look takes what the driver kept, each later look only what
/// is newer than the newest it saw, and the VRAM counted is its own process's.
#[test]
fn the_process_probe_asks_only_for_samples_newer_than_it_saw() {
    use llmtop::sensors::process::{ProcessProbe, Procfs};
    let board = h100(250.0).process(77, 60, 10, 3 << 30);
    let s = Standin::new(vec![board.process(88, 20, 5, 1 << 30)]);
    // No procfs entry for pid 77: its CPU time is unknown, the GPU is still read.
    let procfs = tempfile::tempdir().expect("procfs");
    let gpu = Box::new(nvml::processes_on(s.open()));
    let mut probe = ProcessProbe::new(77, Procfs::new(procfs.path()), Some(gpu));
    let newest = |r: &llmtop::sensors::process::ProbeRead| {
        r.gpu[&0]
            .as_ref()
            .expect("samples")
            .iter()
            .map(|x| x.timestamp_us)
            .max()
    };
    let a = probe.read();
    let first = a.gpu[&0].as_ref().expect("samples");
    assert_eq!(first.len(), 42, "two seconds kept, two busy processes");
    assert_eq!(a.vram_bytes, Some(3 << 30));
    let share = llmtop::accounting::share::sm_share(first, &a.pids);
    assert!((share - 0.75).abs() < 1e-9, "{share}");
    let seen = newest(&a).expect("newest");
    // At once: nothing newer (at most the one 100 ms update that may fall between).
    let b = probe.read();
    let again = b.gpu[&0].as_ref().expect("no error");
    assert!(
        again.len() <= 2 && again.iter().all(|x| x.timestamp_us > seen),
        "{again:?}"
    );
    let seen = newest(&b).unwrap_or(seen);
    std::thread::sleep(Duration::from_millis(300));
    let c = probe.read();
    let later = c.gpu[&0].as_ref().expect("samples");
    assert!(
        (4..=8).contains(&later.len()) && later.iter().all(|x| x.timestamp_us > seen),
        "{later:?}"
    );
}

/// The power-limit calls the power-cap sweep (issue 21) will make: read, constraints,
/// default, set (recorded), and NO_PERMISSION for a user who may not.
#[test]
fn power_limits_are_read_set_and_refused() {
    let s = Standin::new(vec![
        h100(250.0),
        h100(250.0).fail("nvmlDeviceSetPowerManagementLimit", "NO_PERMISSION", None),
    ]);
    let nvml = s.open();
    let mut d = nvml.device_by_index(0).expect("board 0");
    assert_eq!(d.power_management_limit().expect("limit"), 700_000);
    let c = d.power_management_limit_constraints().expect("constraints");
    assert_eq!((c.min_limit, c.max_limit), (200_000, 700_000));
    assert_eq!(
        d.power_management_limit_default().expect("default"),
        700_000
    );
    d.set_power_management_limit(450_000).expect("set");
    assert_eq!(d.enforced_power_limit().expect("enforced"), 450_000);
    assert!(
        d.set_power_management_limit(100_000).is_err(),
        "below the minimum"
    );
    let mut d1 = nvml.device_by_index(1).expect("board 1");
    assert!(matches!(
        d1.set_power_management_limit(450_000),
        Err(nvml_wrapper::error::NvmlError::NoPermission)
    ));
    let set = s.limits_set();
    assert_eq!(set.len(), 1, "{set:?}");
    assert_eq!((set[0].0, set[0].1), (0, 450_000));
}

/// The binary as a user runs it, with the stand-in found through LLMTOP_NVML_LIBRARY and no
/// user config leaking in (`home` is its home and data dir).
fn llmtop_with(s: &Standin, home: &std::path::Path, args: &[&str]) -> std::process::Command {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_llmtop"));
    c.args(args)
        .env("XDG_CONFIG_HOME", home)
        .env("HOME", home)
        .env("LLMTOP_DATA_DIR", home)
        .env(nvml::LIBRARY_ENV, s.lib());
    c
}

fn sysfs(name: &str) -> String {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/sysfs")
        .join(name)
        .display()
        .to_string()
}

/// `llmtop sensors` as a user runs it, the library found through LLMTOP_NVML_LIBRARY: one
/// line per board and row, with the call behind each, and a lost board's rows saying so.
#[test]
fn llmtop_sensors_lists_each_board_with_its_calls() {
    let s = Standin::new(vec![
        h100(250.0),
        Board {
            name: "Tesla P100-PCIE-16GB".into(),
            ..h100(120.0).arch(Arch::Pascal)
        },
        h100(200.0).fail("*", "GPU_IS_LOST", Some(0.0)),
    ]);
    let home = tempfile::tempdir().expect("home");
    let out = llmtop_with(
        &s,
        home.path(),
        &["sensors", "--sysfs-root", &sysfs("desktop-intel")],
    )
    .output()
    .expect("llmtop sensors");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = |needle: &str| {
        text.lines()
            .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no {needle:?} in\n{text}"))
    };
    assert_eq!(
        line("H100 80GB HBM3 board power"),
        format!(
            "nvml NVIDIA H100 80GB HBM3 board power 250.0 W GPU board, measured, {VIA_INSTANT}; limit 700 W"
        )
    );
    assert!(
        line("H100 80GB HBM3 board energy")
            .ends_with(&format!("GPU board, cumulative counter, {VIA_COUNTER}"))
    );
    assert_eq!(
        line("P100-PCIE-16GB board power"),
        format!(
            "nvml Tesla P100-PCIE-16GB board power 120.0 W GPU board, measured, {VIA_AVERAGE}; limit 700 W"
        )
    );
    assert!(!text.contains("P100-PCIE-16GB board energy"), "{text}");
    assert!(line("GPU 1 (Tesla P100-PCIE-16GB)").contains("no energy counter (pre-Volta)"));
    // A board lost before discovery cannot be opened, and says why.
    assert_eq!(
        line("nvml GPU 2"),
        "nvml GPU 2 (unreadable): cannot open it: device fell off the bus or has otherwise become inacessible"
    );
}

/// `llmtop serve` scraped as Prometheus would: the board's power gauge and the system's are
/// within 2 % of the truth on every scrape (they flickered 200/300 W before, issue 19).
#[test]
fn llmtop_serve_power_gauge_is_steady_on_every_scrape() {
    use std::io::{BufRead, Read, Write};
    let s = Standin::new(vec![h100(250.0)]);
    let home = tempfile::tempdir().expect("home");
    let mut child = llmtop_with(
        &s,
        home.path(),
        &[
            "serve",
            "--sysfs-root",
            &sysfs("desktop-intel"),
            "--metrics-addr",
            "127.0.0.1:0",
        ],
    )
    .stderr(std::process::Stdio::piped())
    .stdout(std::process::Stdio::null())
    .spawn()
    .expect("llmtop serve");
    let err = std::io::BufReader::new(child.stderr.take().expect("stderr"));
    let banner = err
        .lines()
        .map_while(Result::ok)
        .find(|l| l.contains("http://"))
        .expect("the serving banner");
    let addr = banner
        .split("http://")
        .nth(1)
        .and_then(|r| r.split('/').next())
        .unwrap_or_else(|| panic!("no address in {banner:?}"))
        .to_string();
    let get = || {
        let mut c = std::net::TcpStream::connect(&addr).expect("connect");
        c.write_all(
            format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .expect("request");
        let mut body = String::new();
        c.read_to_string(&mut body).expect("response");
        body
    };
    // Wait for two samples (the counter's first step), then scrape through a few seconds.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let mut scrapes = 0;
    while scrapes < 12 {
        assert!(
            std::time::Instant::now() < deadline,
            "no power gauge after 20 s"
        );
        std::thread::sleep(Duration::from_millis(170));
        let text = get();
        let Some(gpu) = scrape(&text, "llmtop_power_watts", "id=\"nvml:0:energy\"") else {
            continue;
        };
        within("llmtop_power_watts (GPU)", gpu, 250.0, 0.02);
        let system = scrape(&text, "llmtop_system_power_watts", "").expect("system");
        within("llmtop_system_power_watts", system, 250.0, 0.02);
        scrapes += 1;
    }
    // SAFETY: a signal to the child this test started, by its pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    child.wait().expect("wait");
}

#[test]
#[ignore = "needs an NVIDIA GPU and driver: cargo test --test sensors sensors_nvml -- --ignored"]
fn gpu_rows_have_plausible_values() {
    let (sensor, statuses) = nvml::discover();
    let mut sensor = sensor.expect("an NVIDIA GPU");
    assert!(statuses.iter().all(|s| s.state == SourceState::Found));
    assert!(!nvml::gpu_names().is_empty());
    let a = sensor.read(0.0);
    std::thread::sleep(std::time::Duration::from_millis(500));
    let b = sensor.read(0.5);
    let val = |rows: &[Reading], id: &str| rows.iter().find(|r| r.id == id).and_then(|r| r.value);
    let w = val(&b, "nvml:0:power").expect("power");
    assert!(w > 1.0 && w < 2000.0, "{w} W");
    let t = val(&b, "nvml:0:temp").expect("temperature");
    assert!(t > 5.0 && t < 110.0, "{t} °C");
    // The energy counter (Volta+) advances.
    let (e0, e1) = (
        val(&a, "nvml:0:energy").expect("e0"),
        val(&b, "nvml:0:energy").expect("e1"),
    );
    assert!(e1 >= e0);
    let energy_row = get(&b, "nvml:0:energy");
    assert_eq!(
        (energy_row.quantity, energy_row.method),
        (Quantity::Energy, Method::Counter)
    );
    eprintln!("power row via {:?}", get(&b, "nvml:0:power").via);
    let total = val(&b, "nvml:0:vram_total").expect("vram");
    assert!(total > 1e9);
    // Clocks against their maxima, and the throttle reasons (idle is not one of them).
    for id in ["nvml:0:clock_gfx", "nvml:0:clock_sm"] {
        let row = get(&b, id);
        let (v, max) = (row.value.expect("clock"), row.limit.expect("max clock"));
        eprintln!("{id}: {v} of {max} MHz");
        assert!(
            v > 0.0 && max >= 300.0 && v <= max * 1.05,
            "{id}: {v} of {max}"
        );
    }
    let why = get(&b, "nvml:0:throttle");
    assert_eq!(why.quantity, Quantity::ThrottleReasons);
    let bits = why.value.expect("reasons") as u64;
    eprintln!(
        "throttle reasons now: {bits:#x} {:?}",
        nvml::reason_names(bits)
    );
    assert_eq!(bits & !nvml::COSTLY_REASONS, 0);
}
