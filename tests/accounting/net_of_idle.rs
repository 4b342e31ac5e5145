//! Net of idle is one ledger operation: a run's report, a request's attribution and a server's
//! share take it from the ledger and agree on a window to the joule, and each channel's idle
//! floor is a measured baseline or the source's own figure, never the lowest power seen.

use llmtop::accounting::attribution::{Activity, attribute};
use llmtop::accounting::energy::{IdleBaseline, IdleFloor, IdleFrom, TotalBasis, Window};
use llmtop::accounting::ledger::Ledger;
use llmtop::accounting::share::{Mark, ShareTracker};
use llmtop::sensors::process::CpuTicks;
use llmtop::sensors::{Covers, Method, Quantity, Reading, Sample, Source};
use std::collections::BTreeMap;

fn counter(id: &str, source: Source, covers: Covers, j: f64) -> Reading {
    Reading {
        id: id.into(),
        device: "dev".into(),
        label: id.into(),
        quantity: Quantity::Energy,
        value: Some(j),
        limit: None,
        source,
        covers,
        method: Method::Counter,
        rejected: None,
        via: None,
    }
}

fn rapl(j: f64) -> Reading {
    counter("rapl:package-0:energy", Source::Rapl, Covers::CpuPackage, j)
}

/// The CPU estimate as `EstimateSensor` writes it: its model's idle power in `limit`.
fn estimate(w: f64, idle_w: f64) -> Reading {
    Reading {
        id: "estimate:cpu:power".into(),
        device: "CPU".into(),
        label: "estimated".into(),
        quantity: Quantity::Power,
        value: Some(w),
        limit: Some(idle_w),
        source: Source::Estimate,
        covers: Covers::CpuPackage,
        method: Method::Estimated,
        rejected: None,
        via: None,
    }
}

/// A look at a server that has `cpu` of the machine's busy CPU time and `gpu` of GPU 0's SM
/// use since the previous look (`k` counts the looks).
fn mark(t: f64, k: u64, cpu: f64, gpu: Option<f64>) -> Mark {
    Mark {
        t,
        cpu: Some(CpuTicks {
            process: (1000.0 * cpu) as u64 * k,
            busy: 1000 * k,
            total: 4000 * k,
        }),
        gpu: gpu.map(|g| BTreeMap::from([(0, g)])).unwrap_or_default(),
        vram_bytes: None,
    }
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * b.abs().max(1.0)
}

/// Package and board power over time: idle (10 W, 50 W) until 2 s, busy (40 W, 250 W), a
/// stretch below idle from 4 to 5 s (5 W, 30 W: a clock dropped), busy again to 8 s.
fn watts(t: f64) -> (f64, f64) {
    if t < 2.0 {
        (10.0, 50.0)
    } else if (4.0..5.0).contains(&t) {
        (5.0, 30.0)
    } else {
        (40.0, 250.0)
    }
}

/// RAPL and NVML counters every 0.1 s following [`watts`].
fn components_ledger() -> Ledger {
    let mut l = Ledger::new();
    let (mut cpu, mut gpu) = (0.0, 0.0);
    for i in 0..=80 {
        let t = f64::from(i) / 10.0;
        if i > 0 {
            let (c, g) = watts(f64::from(i - 1) / 10.0);
            cpu += c * 0.1;
            gpu += g * 0.1;
        }
        l.push(&Sample {
            t,
            readings: vec![
                rapl(cpu),
                counter("nvml:0:energy", Source::Nvml, Covers::GpuBoard, gpu),
            ],
        });
    }
    l
}

#[test]
fn a_report_an_attribution_and_a_share_agree_on_a_window_to_the_joule() {
    let l = components_ledger();
    let idle = l.idle_baseline(0.0, 2.0).expect("baseline");
    assert!(close(idle.watts, 60.0), "{idle:?}");
    assert_eq!(idle.channels["rapl:package-0:energy"], 10.0);
    assert_eq!(idle.channels["nvml:0:energy"], 50.0);
    // [2.5, 7.5]: 165 J of package and 1030 J of board, less 60 W x 5 s of idle. The second
    // below idle takes 25 J off; floored per interval (attribution's old rule) it would have
    // read 920 J, and floored at the lowest power seen (the share's) 1195 - 35 x 5 = 1020 J.
    let want = 165.0 + 1030.0 - 300.0;
    let (t0, t1) = (2.5, 7.5);

    let report = l.report(&Window {
        t0,
        t1,
        idle: Some(idle.clone()),
        ..Window::default()
    });
    assert_eq!(report.idle_w, Some(60.0));
    let from_report = report.net_j.expect("net");

    // One request alone over the window gets all of it.
    let n = 50;
    let request = Activity {
        id: 1,
        t0,
        t1,
        prefill_tokens: 0.0,
        prefill: (t0, t0),
        token_times: (1..=n)
            .map(|i| t0 + (t1 - t0) * f64::from(i) / f64::from(n))
            .collect(),
        generated_tokens: f64::from(n),
        prefill_weight: None,
    };
    let share = attribute(&l, Some(&idle), None, &[&request], &request);
    assert_eq!(share.idle_w, Some(60.0));

    // A server that had all of the CPU time and all of the SM use, looked at every 0.5 s.
    let mut tracker = ShareTracker::new(7);
    for k in 0..=10u32 {
        let t = t0 + f64::from(k) * 0.5;
        tracker.push(mark(t, u64::from(k), 1.0, Some(1.0)));
    }
    tracker.update(&l, Some(&idle));
    let from_share = tracker
        .joules_between(t0, t1)
        .expect("share covers the window");

    for (who, got) in [
        ("report", from_report),
        ("attribution", share.joules),
        ("share", from_share),
    ] {
        assert!(close(got, want), "{who}: {got} J, want {want} J");
    }
    // Below idle over the whole window reads 0, not a negative figure: floored once.
    let dip = l.report(&Window {
        t0: 4.0,
        t1: 5.0,
        idle: Some(idle),
        ..Window::default()
    });
    assert_eq!(dip.net_j, Some(0.0));
    assert!(close(dip.total.expect("total").energy_j, 35.0));
}

#[test]
fn a_machine_busy_all_along_reads_its_true_net_share() {
    // The CPU estimate (10 W idle in its model) at 40 W for all of 10 s; the server has a
    // quarter of the busy CPU time. Its share is (40 - 10) W x 10 s x 1/4 = 75 J. Idle taken
    // as the lowest power seen (40 W: it never idled) read 0 J.
    let mut l = Ledger::new();
    let mut tracker = ShareTracker::new(9);
    for i in 0..=100 {
        let t = f64::from(i) / 10.0;
        l.push(&Sample {
            t,
            readings: vec![estimate(40.0, 10.0)],
        });
        if i % 10 == 0 {
            tracker.push(mark(t, u64::from(i as u32 / 10), 0.25, None));
        }
    }
    assert_eq!(
        l.idle_floor("estimate:cpu:power", None),
        Some(IdleFloor {
            watts: 10.0,
            from: IdleFrom::Source
        })
    );
    let s = tracker.update(&l, None);
    assert!(close(s.joules, 75.0), "{s:?}");
    assert!(close(s.watts_now.expect("watts now"), 7.5), "{s:?}");
    assert!(
        s.covers
            .starts_with("CPU package estimate:cpu:power (estimated) above idle"),
        "{}",
        s.covers
    );

    // A measured package busy all along, with the idle baseline of a quieter time (the
    // session's window, on another ledger): the same 75 J. A measured baseline beats the
    // source's own figure.
    let mut l = Ledger::new();
    let mut tracker = ShareTracker::new(9);
    for i in 0..=100 {
        let t = f64::from(i) / 10.0;
        l.push(&Sample {
            t,
            readings: vec![rapl(40.0 * t)],
        });
        if i % 10 == 0 {
            tracker.push(mark(t, u64::from(i as u32 / 10), 0.25, None));
        }
    }
    let idle = IdleBaseline {
        watts: 10.0,
        basis: TotalBasis::Components,
        window_s: 10.0,
        channels: [("rapl:package-0:energy".to_string(), 10.0)].into(),
    };
    let s = tracker.update(&l, Some(&idle));
    assert!(close(s.joules, 75.0), "{s:?}");
    // The report of the same stretch: 400 J less 100 J of idle.
    let r = l.report(&Window {
        t0: 0.0,
        t1: 10.0,
        idle: Some(idle.clone()),
        ..Window::default()
    });
    assert!(close(r.net_j.expect("net"), 300.0), "{r:?}");
    let mut with_estimate = idle;
    with_estimate
        .channels
        .insert("estimate:cpu:power".into(), 12.0);
    let mut l = Ledger::new();
    l.push(&Sample {
        t: 0.0,
        readings: vec![estimate(40.0, 10.0)],
    });
    assert_eq!(
        l.idle_floor("estimate:cpu:power", Some(&with_estimate)),
        Some(IdleFloor {
            watts: 12.0,
            from: IdleFrom::Baseline
        })
    );
}

#[test]
fn a_measured_package_shadows_the_estimate_in_the_total_and_every_split() {
    // RAPL at 30 W beside an estimate at 99 W: the total is the package alone, and so is what
    // a share or a baseline sees.
    let mut l = Ledger::new();
    for i in 0..=20 {
        let t = f64::from(i) / 10.0;
        l.push(&Sample {
            t,
            readings: vec![rapl(30.0 * t), estimate(99.0, 10.0)],
        });
    }
    let (j, _) = l.energy_between(0.0, 2.0).expect("total");
    assert!(close(j, 60.0), "{j}");
    let ids: Vec<String> = l
        .channels_above_idle(0.0, 2.0, None)
        .into_iter()
        .map(|c| c.id)
        .collect();
    assert_eq!(ids, ["rapl:package-0:energy"]);
    let idle = l.idle_baseline(0.0, 2.0).expect("baseline");
    assert_eq!(
        idle.channels.keys().collect::<Vec<_>>(),
        ["rapl:package-0:energy"]
    );
}
