//! Energy accounting against hand-computed figures: constant and linear power (exact under
//! the trapezoid), counters with wraparound and resets, total selection without double
//! counting, idle baseline, J/token, prefill/decode split.

use llmtop::accounting::energy::{
    CounterStep, EnergyReport, IdleBaseline, TotalBasis, Window, counter_delta,
};
use llmtop::accounting::ledger::Ledger;
use llmtop::sensors::{Covers, Method, Quantity, Reading, Sample, Source};

fn reading(id: &str, q: Quantity, m: Method, covers: Covers, value: Option<f64>) -> Reading {
    let source = match id.split(':').next() {
        Some("rapl") => Source::Rapl,
        Some("nvml") => Source::Nvml,
        Some("plug") => Source::Plug,
        Some("battery") => Source::Battery,
        Some("estimate") => Source::Estimate,
        _ => Source::Hwmon,
    };
    Reading {
        id: id.into(),
        device: id.split(':').nth(1).unwrap_or("dev").into(),
        label: id.into(),
        quantity: q,
        value,
        limit: None,
        source,
        covers,
        method: m,
        rejected: None,
        via: None,
    }
}

fn power(id: &str, covers: Covers, w: f64) -> Reading {
    reading(id, Quantity::Power, Method::Measured, covers, Some(w))
}

fn counter(id: &str, covers: Covers, j: f64, wrap: Option<f64>) -> Reading {
    Reading {
        limit: wrap,
        ..reading(id, Quantity::Energy, Method::Counter, covers, Some(j))
    }
}

fn feed(acc: &mut Ledger, t: f64, readings: Vec<Reading>) {
    acc.push(&Sample { t, readings });
}

fn window(t0: f64, t1: f64) -> Window {
    Window {
        t0,
        t1,
        ..Default::default()
    }
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9 * b.abs().max(1.0)
}

#[test]
fn constant_power_integrates_exactly() {
    let mut acc = Ledger::new();
    for i in 0..=40 {
        let t = i as f64 * 0.25;
        feed(
            &mut acc,
            t,
            vec![power("rapl:package-0:power", Covers::CpuPackage, 50.0)],
        );
    }
    let r = acc.report(&window(0.0, 10.0));
    let total = r.total.expect("total");
    assert!(close(total.energy_j, 500.0), "{}", total.energy_j);
    assert!(close(total.wh, 500.0 / 3600.0));
    assert_eq!(total.avg_w, Some(50.0));
    assert_eq!(total.peak_w, Some(50.0));
    assert_eq!(total.basis, TotalBasis::Components);
    assert!(total.components_only);
    assert!(!total.estimated);
}

#[test]
fn linear_ramp_is_exact_even_on_an_off_grid_window() {
    // P(t) = 10 + 2t W, sampled every 0.25 s from 0 to 10 s.
    let mut acc = Ledger::new();
    for i in 0..=40 {
        let t = i as f64 * 0.25;
        feed(
            &mut acc,
            t,
            vec![power("nvml:0:power", Covers::GpuBoard, 10.0 + 2.0 * t)],
        );
    }
    // Whole run: 10*10 + 10^2 = 200 J.
    let r = acc.report(&window(0.0, 10.0));
    assert!(close(r.total.as_ref().expect("total").energy_j, 200.0));
    // [1.1, 7.3]: 10*6.2 + (7.3^2 - 1.1^2) = 62 + 52.08 = 114.08 J.
    let r = acc.report(&window(1.1, 7.3));
    let s = &r.sources[0];
    assert!(close(s.energy_j, 114.08), "{}", s.energy_j);
    assert!(close(s.covered_s, 6.2));
    assert!(close(s.peak_w.expect("peak"), 10.0 + 2.0 * 7.3));
    assert_eq!(s.method, Method::Measured);
}

#[test]
fn counter_unwraps_and_beats_a_power_reading_on_the_same_channel() {
    let max = 262_143.328_85; // max_energy_range_uj / 1e6
    let mut acc = Ledger::new();
    for i in 0..=10 {
        let t = i as f64;
        let e_true = 262_100.0 + 10.0 * t; // 10 W, wraps between t=4 and t=5
        feed(
            &mut acc,
            t,
            vec![
                counter(
                    "rapl:package-0:energy",
                    Covers::CpuPackage,
                    e_true % max,
                    Some(max),
                ),
                // A nonsense rate on the same channel must not be integrated too.
                power("rapl:package-0:power", Covers::CpuPackage, 999.0),
            ],
        );
    }
    let r = acc.report(&window(0.0, 10.0));
    assert_eq!(r.sources.len(), 1, "{:?}", r.sources);
    let s = &r.sources[0];
    assert_eq!(s.method, Method::Counter);
    assert!(close(s.energy_j, 100.0), "{}", s.energy_j);
    assert!(close(s.peak_w.expect("peak"), 10.0));
    assert_eq!(s.resets, 0);
    // Half a second inside each end: linear interpolation of the counter.
    let r = acc.report(&window(0.5, 9.5));
    assert!(close(r.sources[0].energy_j, 90.0));
}

#[test]
fn counter_reset_counts_that_interval_as_zero() {
    let mut acc = Ledger::new();
    for (t, j) in [
        (0.0, 1000.0),
        (1.0, 1100.0),
        (2.0, 1200.0),
        (3.0, 50.0),
        (4.0, 150.0),
        (5.0, 250.0),
    ] {
        feed(
            &mut acc,
            t,
            vec![counter("nvml:0:energy", Covers::GpuBoard, j, None)],
        );
    }
    let r = acc.report(&window(0.0, 5.0));
    let s = &r.sources[0];
    assert!(close(s.energy_j, 400.0), "{}", s.energy_j);
    assert_eq!(s.resets, 1);
    assert_eq!(counter_delta(1200.0, 50.0, None), CounterStep::Reset);
}

/// Plug, RAPL package + subzones + dram, NVML at fixed powers.
fn machine(acc: &mut Ledger, with_plug: bool, with_psys: bool) {
    for i in 0..=10 {
        let t = i as f64;
        let mut rs = vec![
            counter(
                "rapl:package-0:energy",
                Covers::CpuPackage,
                1000.0 + 40.0 * t,
                None,
            ),
            counter(
                "rapl:package-0/core:energy",
                Covers::Other,
                500.0 + 30.0 * t,
                None,
            ),
            counter(
                "rapl:package-0/uncore:energy",
                Covers::Other,
                100.0 + 5.0 * t,
                None,
            ),
            counter(
                "rapl:package-0/dram:energy",
                Covers::Dram,
                10.0 + 3.0 * t,
                None,
            ),
            counter("nvml:0:energy", Covers::GpuBoard, 7.0 + 200.0 * t, None),
            power("nvml:0:power", Covers::GpuBoard, 200.0),
            reading(
                "hwmon:nct:temp1",
                Quantity::Temperature,
                Method::Measured,
                Covers::Other,
                Some(40.0 + t),
            ),
        ];
        if with_plug {
            rs.push(power("plug:10.0.0.5:power", Covers::Wall, 300.0));
        }
        if with_psys {
            rs.push(counter(
                "rapl:psys:energy",
                Covers::Platform,
                5.0 + 60.0 * t,
                None,
            ));
        }
        feed(acc, t, rs);
    }
}

#[test]
fn total_is_components_without_double_counting_subzones() {
    let mut acc = Ledger::new();
    machine(&mut acc, false, false);
    let r = acc.report(&window(0.0, 10.0));
    let total = r.total.expect("total");
    // package 400 + dram 30 + GPU 2000; core (300) and uncore (50) are inside the package.
    assert!(close(total.energy_j, 2430.0), "{}", total.energy_j);
    assert_eq!(total.basis, TotalBasis::Components);
    assert!(total.components_only);
    assert!(close(total.peak_w.expect("peak"), 243.0));
    let in_total: Vec<&str> = r
        .sources
        .iter()
        .filter(|s| s.in_total)
        .map(|s| s.id.as_str())
        .collect();
    assert_eq!(
        in_total,
        [
            "nvml:0:energy",
            "rapl:package-0/dram:energy",
            "rapl:package-0:energy"
        ]
    );
    assert_eq!(r.peak_temp_c, Some(50.0));
}

#[test]
fn wall_plug_wins_then_psys() {
    let mut acc = Ledger::new();
    machine(&mut acc, true, true);
    let total = acc.report(&window(0.0, 10.0)).total.expect("total");
    assert_eq!(total.basis, TotalBasis::Wall);
    assert!(!total.components_only);
    assert!(close(total.energy_j, 3000.0));
    assert_eq!(total.sources, ["plug:10.0.0.5:power"]);

    let mut acc = Ledger::new();
    machine(&mut acc, false, true);
    let total = acc.report(&window(0.0, 10.0)).total.expect("total");
    assert_eq!(total.basis, TotalBasis::Platform);
    assert!(total.components_only);
    assert!(close(total.energy_j, 600.0));
}

#[test]
fn battery_counts_only_while_discharging_and_beats_components() {
    let mut acc = Ledger::new();
    for i in 0..=4 {
        let t = i as f64;
        let bat = if i < 2 { None } else { Some(12.0) }; // plugged in, then unplugged at t=2
        feed(
            &mut acc,
            t,
            vec![
                reading(
                    "battery:BAT0:power",
                    Quantity::Power,
                    Method::Measured,
                    Covers::Battery,
                    bat,
                ),
                power("rapl:package-0:power", Covers::CpuPackage, 5.0),
            ],
        );
    }
    let total = acc.report(&window(0.0, 4.0)).total.expect("total");
    // The components until the battery discharges at t=2, then the battery: a visible,
    // timestamped change of basis, not a silent flip.
    assert_eq!(total.basis, TotalBasis::Battery);
    assert!(
        close(total.energy_j, 5.0 * 2.0 + 12.0 * 2.0),
        "{}",
        total.energy_j
    );
    assert_eq!(total.changes.len(), 1, "{:?}", total.changes);
    let c = &total.changes[0];
    assert_eq!(
        (c.t, c.from, c.to),
        (2.0, Some(TotalBasis::Components), Some(TotalBasis::Battery))
    );
    assert!(
        c.reason.contains("battery:BAT0:power reporting"),
        "{}",
        c.reason
    );
    // From the change on, the battery alone.
    let after = acc.report(&window(2.0, 4.0)).total.expect("total");
    assert!(close(after.energy_j, 24.0));
    assert_eq!(after.avg_w, Some(12.0));
}

#[test]
fn idle_baseline_net_energy_per_token_and_phases() {
    let mut acc = Ledger::new();
    for i in 0..=20 {
        let t = i as f64;
        let w = if i <= 10 { 30.0 } else { 80.0 };
        feed(&mut acc, t, vec![power("plug:p:power", Covers::Wall, w)]);
    }
    let idle = acc.idle_baseline(0.0, 10.0).expect("idle");
    assert_eq!(
        idle,
        IdleBaseline {
            watts: 30.0,
            basis: TotalBasis::Wall,
            window_s: 10.0,
            channels: [("plug:p:power".to_string(), 30.0)].into(),
        }
    );
    let r = acc.report(&Window {
        t0: 11.0,
        t1: 20.0,
        tokens: Some(90),
        phase_boundary: Some(14.0),
        idle: Some(idle.clone()),
        apportion: false,
    });
    let total = r.total.as_ref().expect("total");
    assert!(close(total.energy_j, 720.0));
    assert_eq!(r.idle_w, Some(30.0));
    assert!(close(r.net_j.expect("net"), 720.0 - 30.0 * 9.0));
    assert!(close(r.j_per_token.expect("j/tok"), 8.0));
    assert!(close(r.net_j_per_token.expect("net j/tok"), 5.0));
    assert!(close(r.prefill_j.expect("prefill"), 240.0));
    assert!(close(r.decode_j.expect("decode"), 480.0));
    assert!(close(
        r.decode_j_per_token.expect("decode j/tok"),
        480.0 / 90.0
    ));

    // A baseline taken on another basis (say the plug was not there then) is not subtracted.
    let r = acc.report(&Window {
        t0: 11.0,
        t1: 20.0,
        idle: Some(IdleBaseline {
            basis: TotalBasis::Components,
            ..idle
        }),
        ..Default::default()
    });
    assert_eq!(r.net_j, None);
}

#[test]
fn a_short_gap_is_bridged_a_long_one_is_a_change_and_estimates_are_flagged() {
    // One n/a reading at 1 Hz is shorter than three periods: the line is bridged.
    let mut acc = Ledger::new();
    let vals = [Some(20.0), Some(20.0), None, Some(20.0), Some(20.0)];
    for (i, v) in vals.into_iter().enumerate() {
        feed(
            &mut acc,
            i as f64,
            vec![reading(
                "estimate:cpu:power",
                Quantity::Power,
                Method::Estimated,
                Covers::CpuPackage,
                v,
            )],
        );
    }
    let total = acc.report(&window(0.0, 4.0)).total.expect("total");
    assert!(close(total.energy_j, 80.0), "{}", total.energy_j);
    assert!(total.changes.is_empty());
    // Silent for 5 s: the total stops where the source did and restarts with it, each a
    // change; the silent stretch counts nothing.
    let mut acc = Ledger::new();
    let vals = [
        Some(20.0),
        Some(20.0),
        None,
        None,
        None,
        None,
        Some(20.0),
        Some(20.0),
    ];
    for (i, v) in vals.into_iter().enumerate() {
        feed(
            &mut acc,
            i as f64,
            vec![reading(
                "estimate:cpu:power",
                Quantity::Power,
                Method::Estimated,
                Covers::CpuPackage,
                v,
            )],
        );
    }
    let total = acc.report(&window(0.0, 7.0)).total.expect("total");
    // [0, 1] and [6, 7] only.
    assert!(close(total.energy_j, 40.0), "{}", total.energy_j);
    assert!(total.estimated);
    let kinds: Vec<_> = total.changes.iter().map(|c| (c.t, c.to)).collect();
    assert_eq!(
        kinds,
        vec![(1.0, None), (6.0, Some(TotalBasis::Components))]
    );
}

#[test]
fn peak_temperature_and_fan_inside_the_window_only() {
    let mut acc = Ledger::new();
    for (t, temp, fan) in [
        (0.0, 40.0, 900.0),
        (3.0, 85.0, 1500.0),
        (6.0, 60.0, 1200.0),
        (15.0, 99.0, 3000.0),
    ] {
        feed(
            &mut acc,
            t,
            vec![
                reading(
                    "hwmon:coretemp:temp1",
                    Quantity::Temperature,
                    Method::Measured,
                    Covers::CpuPackage,
                    Some(temp),
                ),
                reading(
                    "hwmon:nct6798:fan1",
                    Quantity::FanRpm,
                    Method::Measured,
                    Covers::Other,
                    Some(fan),
                ),
            ],
        );
    }
    let r = acc.report(&window(0.0, 10.0));
    assert_eq!(r.peak_temp_c, Some(85.0));
    assert_eq!(
        r.peak_temp_sensor.as_deref(),
        Some("coretemp hwmon:coretemp:temp1")
    );
    assert_eq!(r.max_fan_rpm, Some(1500.0));
    assert!(r.total.is_none(), "no power source, no total");
}

#[test]
fn report_round_trips_through_json() {
    let mut acc = Ledger::new();
    machine(&mut acc, true, false);
    let r = acc.report(&Window {
        t0: 0.0,
        t1: 10.0,
        tokens: Some(100),
        ..Default::default()
    });
    let json = serde_json::to_string(&r).expect("to json");
    assert!(json.contains("\"basis\":\"wall\""), "{json}");
    let back: EnergyReport = serde_json::from_str(&json).expect("from json");
    assert_eq!(back, r);
}

#[test]
fn a_single_sample_or_an_empty_window_gives_no_energy_and_no_panic() {
    let mut acc = Ledger::new();
    assert!(acc.report(&window(0.0, 1.0)).total.is_none());
    feed(
        &mut acc,
        1.0,
        vec![
            counter("rapl:package-0:energy", Covers::CpuPackage, 5.0, None),
            power("plug:p:power", Covers::Wall, 80.0),
        ],
    );
    let r = acc.report(&window(0.0, 2.0));
    assert!(r.total.is_none(), "{r:?}");
    assert!(acc.idle_baseline(0.0, 2.0).is_none());
    // Reversed window: empty, not negative.
    let r = acc.report(&window(2.0, 1.0));
    assert_eq!(r.duration_s, 0.0);
}

#[test]
fn a_counter_that_never_reads_does_not_hide_the_power_of_its_channel() {
    // Pre-Volta NVIDIA boards: the energy counter is NotSupported (always n/a), power works.
    let mut acc = Ledger::new();
    for i in 0..=10 {
        let t = f64::from(i);
        let dead = reading(
            "nvml:0:energy",
            Quantity::Energy,
            Method::Counter,
            Covers::GpuBoard,
            None,
        );
        feed(
            &mut acc,
            t,
            vec![dead, power("nvml:0:power", Covers::GpuBoard, 150.0)],
        );
    }
    let r = acc.report(&window(0.0, 10.0));
    let total = r.total.expect("total from the power reading");
    assert!(close(total.energy_j, 1500.0), "{}", total.energy_j);
    assert_eq!(total.sources, vec!["nvml:0:power".to_string()]);
}

#[test]
fn a_ledger_left_running_thins_itself_and_keeps_counters_exact_and_peaks() {
    // One hour at 4 Hz: a RAPL counter at 20 W that wraps, a temperature with one spike. The
    // ledger keeps the last 10 minutes whole and one point per 10 s before (serve and the
    // dashboard run for days).
    let mut l = Ledger::new();
    let wrap = 262_143.328_850; // J: max_energy_range_uj / 1e6
    for i in 0..=14_400 {
        let t = f64::from(i) * 0.25;
        let e = (t * 20.0) % wrap;
        let temp = if i == 5_001 { 97.0 } else { 50.0 };
        let readings = vec![
            counter("rapl:package-0:energy", Covers::CpuPackage, e, Some(wrap)),
            reading(
                "hwmon:coretemp:temp1",
                Quantity::Temperature,
                Method::Measured,
                Covers::CpuPackage,
                Some(temp),
            ),
        ];
        feed(&mut l, t, readings);
    }
    // Unthinned: 14 401 samples x (counter + temperature + total) = 43 203 points.
    assert!(l.point_count() < 10_000, "{} points left", l.point_count());
    // Whole-hour energy is exact: 20 W x 3600 s, across a counter wrap.
    let whole = l
        .report(&window(0.0, 3_600.0))
        .total
        .expect("total")
        .energy_j;
    assert!(close(whole, 72_000.0), "{whole}");
    // The recent part is untouched, and spans on retained points are exact.
    let r = l
        .report(&window(3_100.0, 3_350.0))
        .total
        .expect("t")
        .energy_j;
    assert!(close(r, 5_000.0), "{r}");
    let old = l.report(&window(100.0, 1_000.0)).total.expect("t").energy_j;
    assert!(close(old, 18_000.0), "{old}");
    // The 97 °C spike at t = 1250.25 s survives thinning.
    assert_eq!(l.report(&window(0.0, 3_600.0)).peak_temp_c, Some(97.0));
}
