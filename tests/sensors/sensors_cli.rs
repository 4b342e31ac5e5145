//! `llmtop sensors` as a user runs it, on the fixture trees.

use std::path::Path;
use std::process::{Command, Output};

fn llmtop(args: &[&str]) -> Output {
    let home = tempfile::tempdir().expect("tempdir");
    Command::new(env!("CARGO_BIN_EXE_llmtop"))
        .args(args)
        // No user config file may leak in.
        .env("XDG_CONFIG_HOME", home.path())
        .env("HOME", home.path())
        .env("LLMTOP_DATA_DIR", home.path())
        .output()
        .expect("run llmtop")
}

fn fixture(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/sysfs")
        .join(name)
        .display()
        .to_string()
}

/// Stdout of a run that must have succeeded (its stderr otherwise).
fn stdout_of(out: &std::process::Output) -> String {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The first line holding `needle`, its columns joined by single spaces.
fn line_with(text: &str, needle: &str) -> String {
    text.lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .find(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("no line with {needle:?} in:\n{text}"))
}

#[test]
fn lists_sources_with_values_units_and_provenance() {
    let out = llmtop(&["sensors", "--sysfs-root", &fixture("amd-desktop")]);
    let text = stdout_of(&out);
    let line = |needle: &str| line_with(&text, needle);
    assert_eq!(
        line("PPT"),
        "hwmon amdgpu@0000:03:00.0 PPT 35.0 W GPU board, measured, power1_average (averaged by the device); limit 203 W"
    );
    assert_eq!(
        line("Tctl"),
        "hwmon k10temp@0000:00:18.3 Tctl 52.2 °C CPU package, measured, temp1_input"
    );
    assert!(line("fan1").contains("1250 RPM"));
    // Static fixture: two reads 250 ms apart, unchanged counter, 0 W (not n/a).
    assert!(line("package-0 0.0 W").contains("rate of the counter"));
    assert!(text.contains("Found:"));
}

/// CPU clocks and the kernel's throttle counters, as `llmtop sensors` lists them.
#[test]
fn lists_cpu_clock_against_its_max_and_throttle_counters() {
    let out = llmtop(&["sensors", "--sysfs-root", &fixture("desktop-intel")]);
    let text = stdout_of(&out);
    let line = |needle: &str| line_with(&text, needle);
    assert_eq!(
        line("CPU clock"),
        "system cpufreq CPU clock (mean of 4) 4600 MHz CPU package, measured; max 4900 MHz (94 %)"
    );
    assert_eq!(
        line("core throttles"),
        "system thermal_throttle core throttles 8 events CPU package, cumulative counter"
    );
    assert!(line("package throttles").contains(" 17 events "));
    assert!(line("clock of 4 CPU(s)").contains("throttle counters of 2 core(s) and 1 package(s)"));
}

#[test]
fn json_has_readings_and_statuses() {
    let out = llmtop(&["sensors", "--json", "--sysfs-root", &fixture("laptop")]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let readings = v["readings"].as_array().expect("readings");
    let bat = readings
        .iter()
        .find(|r| r["id"] == "battery:BAT0:power")
        .expect("battery row");
    assert_eq!(bat["value"], 9.875);
    assert_eq!(bat["covers"], "battery");
    assert_eq!(bat["method"], "measured");
    let statuses = v["statuses"].as_array().expect("statuses");
    assert!(
        statuses
            .iter()
            .any(|s| s["source"] == "rapl" && s["state"] == "found")
    );
}

#[test]
fn bad_sysfs_root_is_one_clear_line_and_an_error_exit() {
    let out = llmtop(&["sensors", "--sysfs-root", "/nonexistent/tree"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("--sysfs-root /nonexistent/tree: not a directory"),
        "{err}"
    );
}
