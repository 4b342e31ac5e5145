//! NVML. Without a driver (the normal case on CPU machines, and this CI) there are no rows
//! and one quiet "no NVIDIA driver" line: tested for real here. The GPU test is ignored; on a
//! machine with an NVIDIA GPU and driver run:
//!     cargo test --test sensors_nvml -- --ignored

use llmtop::sensors::nvml;
use llmtop::sensors::{Method, Quantity, Sensor, SourceState};

#[test]
fn no_driver_means_no_rows_and_one_quiet_line() {
    if nvml::handle().is_ok() {
        crate::skip::skipped(
            "an NVIDIA driver is present here; the ignored GPU test covers this machine",
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

#[test]
#[ignore = "needs an NVIDIA GPU and driver: cargo test --test sensors_nvml -- --ignored"]
fn gpu_rows_have_plausible_values() {
    let (sensor, statuses) = nvml::discover();
    let mut sensor = sensor.expect("an NVIDIA GPU");
    assert!(statuses.iter().all(|s| s.state == SourceState::Found));
    assert!(!nvml::gpu_names().is_empty());
    let a = sensor.read(0.0);
    std::thread::sleep(std::time::Duration::from_millis(500));
    let b = sensor.read(0.5);
    let get = |rows: &[llmtop::sensors::Reading], id: &str| {
        rows.iter().find(|r| r.id == id).and_then(|r| r.value)
    };
    let w = get(&b, "nvml:0:power").expect("power");
    assert!(w > 1.0 && w < 2000.0, "{w} W");
    let t = get(&b, "nvml:0:temp").expect("temperature");
    assert!(t > 5.0 && t < 110.0, "{t} °C");
    // The energy counter (Volta+) advances.
    let (e0, e1) = (
        get(&a, "nvml:0:energy").expect("e0"),
        get(&b, "nvml:0:energy").expect("e1"),
    );
    assert!(e1 >= e0);
    let energy_row = b.iter().find(|r| r.id == "nvml:0:energy").expect("row");
    assert_eq!(
        (energy_row.quantity, energy_row.method),
        (Quantity::Energy, Method::Counter)
    );
    let total = get(&b, "nvml:0:vram_total").expect("vram");
    assert!(total > 1e9);
    // Clocks against their maxima, and the throttle reasons (idle is not one of them).
    for id in ["nvml:0:clock_gfx", "nvml:0:clock_sm"] {
        let row = b.iter().find(|r| r.id == id).expect(id);
        let (v, max) = (row.value.expect("clock"), row.limit.expect("max clock"));
        eprintln!("{id}: {v} of {max} MHz");
        assert!(
            v > 0.0 && max >= 300.0 && v <= max * 1.05,
            "{id}: {v} of {max}"
        );
    }
    let why = b
        .iter()
        .find(|r| r.id == "nvml:0:throttle")
        .expect("reasons row");
    assert_eq!(why.quantity, Quantity::ThrottleReasons);
    let bits = why.value.expect("reasons") as u64;
    eprintln!(
        "throttle reasons now: {bits:#x} {:?}",
        nvml::reason_names(bits)
    );
    assert_eq!(bits & !nvml::COSTLY_REASONS, 0);
}
