//! Sysfs readers against the fixture trees (tests/fixtures/sysfs) and odd trees built in temp
//! dirs. Host-dependent parts (NVML, /proc memory) are switched off so results depend only on
//! the tree.

use llmtop::accounting::energy::{TotalBasis, Window};
use llmtop::accounting::ledger::Ledger;
use llmtop::config::SensorsSection;
use llmtop::sensors::sysfs::{ReadFile, Sysfs};
use llmtop::sensors::{
    Covers, DiscoverOptions, Discovery, Method, Quantity, Reading, Sample, Source, SourceState,
    discover_with,
};
use std::path::{Path, PathBuf};
use std::sync::Arc;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/sysfs")
        .join(name)
}

fn opts(sysfs: Sysfs, proc_stat: &Path) -> DiscoverOptions {
    DiscoverOptions {
        sysfs,
        nvml: false,
        system: false,
        probe_plugs: false,
        proc_stat: proc_stat.to_path_buf(),
    }
}

fn discover_at(root: &Path) -> (Discovery, tempfile::TempDir) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let stat = tmp.path().join("stat");
    std::fs::write(
        &stat,
        crate::proc_files::proc_stat("cpu  100 0 100 800 0 0 0 0 0 0"),
    )
    .expect("stat");
    let d = discover_with(&SensorsSection::default(), &opts(Sysfs::new(root), &stat));
    (d, tmp)
}

fn read(d: &mut Discovery, t: f64) -> Sample {
    llmtop::sensors::sampler::read_all(&mut d.sensors, t)
}

fn get<'a>(s: &'a Sample, id: &str) -> &'a Reading {
    s.readings
        .iter()
        .find(|r| r.id == id)
        .unwrap_or_else(|| panic!("no reading {id}; have {:?}", ids(s)))
}

fn ids(s: &Sample) -> Vec<&str> {
    s.readings.iter().map(|r| r.id.as_str()).collect()
}

/// Copy a fixture tree (keeping symlinks) so a test can change values.
fn copy_tree(src: &Path) -> tempfile::TempDir {
    let dst = tempfile::tempdir().expect("tempdir");
    let status = std::process::Command::new("cp")
        .arg("-a")
        .arg(format!("{}/.", src.display()))
        .arg(dst.path())
        .status()
        .expect("cp");
    assert!(status.success());
    dst
}

fn write(root: &Path, rel: &str, text: &str) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
    std::fs::write(p, format!("{text}\n")).expect("write");
}

#[test]
fn intel_desktop_rapl_coretemp_and_fans() {
    let (mut d, _tmp) = discover_at(&fixture("desktop-intel"));
    let s = read(&mut d, 0.0);
    let pkg = get(&s, "rapl:package-0:energy");
    assert_eq!(pkg.value, Some(81_234.567_890));
    assert_eq!(pkg.limit, Some(262_143.328_850));
    assert_eq!(
        (pkg.covers, pkg.method),
        (Covers::CpuPackage, Method::Counter)
    );
    assert_eq!(get(&s, "rapl:package-0/core:energy").covers, Covers::Other);
    assert_eq!(
        get(&s, "rapl:package-0/uncore:energy").covers,
        Covers::Other
    );
    let dram = get(&s, "rapl:package-0/dram:energy");
    assert_eq!(
        (dram.covers, dram.limit),
        (Covers::Dram, Some(65_712.999_613))
    );
    // First read: no rate yet.
    assert_eq!(get(&s, "rapl:package-0:power").value, None);
    // The intel-rapl-mmio duplicate of package-0 is not read.
    assert_eq!(
        s.readings
            .iter()
            .filter(|r| r.source == Source::Rapl)
            .count(),
        8
    );

    let t = get(&s, "hwmon:coretemp@coretemp.0:temp1");
    assert_eq!(
        (t.label.as_str(), t.value, t.limit),
        ("Package id 0", Some(45.0), Some(100.0))
    );
    assert_eq!(t.covers, Covers::CpuPackage);
    assert_eq!(get(&s, "hwmon:coretemp@coretemp.0:temp3").label, "Core 4");
    let fans: Vec<Option<f64>> = (1..=3)
        .map(|i| get(&s, &format!("hwmon:nct6798@nct6775.656:fan{i}")).value)
        .collect();
    assert_eq!(fans, [Some(1032.0), Some(845.0), Some(0.0)]);
    assert_eq!(get(&s, "hwmon:nct6798@nct6775.656:temp1").label, "SYSTIN");
    assert_eq!(get(&s, "hwmon:acpitz:temp1").value, Some(27.8));
    // Voltages and PWM are not ours; no estimate since RAPL is readable; no battery.
    assert!(
        !ids(&s)
            .iter()
            .any(|i| i.contains("in0") || i.contains("pwm"))
    );
    assert!(
        !s.readings
            .iter()
            .any(|r| matches!(r.source, Source::Estimate | Source::Battery))
    );
    assert!(
        d.statuses.iter().all(|st| st.state == SourceState::Found),
        "{:?}",
        d.statuses
    );
}

/// cpufreq behind its policy symlinks, two hyperthreaded cores in one package: one clock row
/// (mean against mean max), counters counted once per core and once per package.
#[test]
fn intel_desktop_cpu_clock_and_throttle_counters() {
    let (mut d, _tmp) = discover_at(&fixture("desktop-intel"));
    let s = read(&mut d, 0.0);
    let clock = get(&s, "cpu:clock");
    assert_eq!(
        (clock.value, clock.limit, clock.quantity),
        (Some(4600.0), Some(4900.0), Quantity::Clock)
    );
    assert_eq!(
        (clock.source, clock.covers),
        (Source::System, Covers::CpuPackage)
    );
    let core = get(&s, "cpu:core_throttles");
    // cpu0/cpu1 are core 0 (3 events), cpu2/cpu3 core 4 (5 events): 8, not 16.
    assert_eq!(
        (core.value, core.quantity, core.method),
        (Some(8.0), Quantity::ThrottleCount, Method::Counter)
    );
    // Every CPU repeats the package's count: once.
    assert_eq!(get(&s, "cpu:package_throttles").value, Some(17.0));

    // The counters move and the clock drops: the next read says so.
    let tree = copy_tree(&fixture("desktop-intel"));
    let (mut d, _tmp) = discover_at(tree.path());
    let cpu = tree.path().join("devices/system/cpu");
    for n in 0..4 {
        write(
            &cpu,
            &format!("cpufreq/policy{n}/scaling_cur_freq"),
            "2450000",
        );
    }
    write(&cpu, "cpu2/thermal_throttle/core_throttle_count", "9");
    write(&cpu, "cpu3/thermal_throttle/core_throttle_count", "9");
    let s = read(&mut d, 0.25);
    assert_eq!(get(&s, "cpu:clock").value, Some(2450.0));
    assert_eq!(get(&s, "cpu:core_throttles").value, Some(12.0));
}

#[test]
fn amd_box_k10temp_and_amdgpu() {
    let (mut d, _tmp) = discover_at(&fixture("amd-desktop"));
    let s = read(&mut d, 0.0);
    let ppt = get(&s, "hwmon:amdgpu@0000:03:00.0:power1");
    assert_eq!(
        (ppt.label.as_str(), ppt.value, ppt.limit, ppt.covers),
        ("PPT", Some(35.0), Some(203.0), Covers::GpuBoard)
    );
    let junction = get(&s, "hwmon:amdgpu@0000:03:00.0:temp2");
    assert_eq!(
        (junction.label.as_str(), junction.value, junction.limit),
        ("junction", Some(52.0), Some(110.0))
    );
    assert_eq!(
        get(&s, "hwmon:amdgpu@0000:03:00.0:fan1").value,
        Some(1250.0)
    );
    assert_eq!(
        get(&s, "hwmon:k10temp@0000:00:18.3:temp1").value,
        Some(52.25)
    );
    assert_eq!(get(&s, "hwmon:k10temp@0000:00:18.3:temp3").label, "Tccd1");
    assert_eq!(get(&s, "hwmon:nvme:temp1").value, Some(38.85));
    assert_eq!(get(&s, "rapl:package-0:energy").value, Some(5_123.456_789));
}

/// Read, bump every RAPL counter by a known amount, read one second later: the rates and the
/// total must count the package and DRAM once, never core/uncore (inside the package).
#[test]
fn rapl_subzones_are_not_double_counted() {
    let tree = copy_tree(&fixture("desktop-intel"));
    let (mut d, _tmp) = discover_at(tree.path());
    let mut acc = Ledger::new();
    acc.push(&read(&mut d, 0.0));
    let zones = tree.path().join("class/powercap");
    for (zone, before, plus_uj) in [
        ("intel-rapl:0", 81_234_567_890u64, 2_000_000u64), // package +2 J
        ("intel-rapl:0:0", 40_123_456_789, 1_500_000),     // core +1.5 J (inside package)
        ("intel-rapl:0:1", 1_234_567_890, 200_000),        // uncore +0.2 J (inside package)
        ("intel-rapl:0:2", 9_876_543_210, 500_000),        // dram +0.5 J
    ] {
        std::fs::write(
            zones.join(zone).join("energy_uj"),
            format!("{}\n", before + plus_uj),
        )
        .expect("write");
    }
    let s = read(&mut d, 1.0);
    let w = |id: &str| get(&s, id).value.expect("rate");
    assert!((w("rapl:package-0:power") - 2.0).abs() < 1e-9);
    assert!((w("rapl:package-0/core:power") - 1.5).abs() < 1e-9);
    assert!((w("rapl:package-0/dram:power") - 0.5).abs() < 1e-9);
    acc.push(&s);
    let total = acc
        .report(&Window {
            t0: 0.0,
            t1: 1.0,
            ..Default::default()
        })
        .total
        .expect("total");
    assert_eq!(total.basis, TotalBasis::Components);
    // By hand: package 2 J + dram 0.5 J = 2.5 J (not 4.2 J with core and uncore).
    assert!((total.energy_j - 2.5).abs() < 1e-9, "{}", total.energy_j);
    let mut parts = total.sources.clone();
    parts.sort();
    assert_eq!(
        parts,
        ["rapl:package-0/dram:energy", "rapl:package-0:energy"]
    );
}

#[test]
fn rapl_counter_wraps_at_max_energy_range() {
    let tree = copy_tree(&fixture("amd-desktop"));
    let e = tree.path().join("class/powercap/intel-rapl:0/energy_uj");
    std::fs::write(&e, "262143000000\n").expect("write");
    let (mut d, _tmp) = discover_at(tree.path());
    let mut acc = Ledger::new();
    acc.push(&read(&mut d, 0.0));
    std::fs::write(&e, "1000000\n").expect("write");
    let s = read(&mut d, 0.5);
    // (262143.328850 - 262143.0) + 1.0 = 1.32885 J in 0.5 s.
    let w = get(&s, "rapl:package-0:power").value.expect("rate");
    assert!((w - 2.657_7).abs() < 1e-9, "{w}");
    acc.push(&s);
    let r = acc.report(&Window {
        t0: 0.0,
        t1: 0.5,
        ..Default::default()
    });
    let pkg = r
        .sources
        .iter()
        .find(|s| s.id == "rapl:package-0:energy")
        .expect("pkg");
    assert!((pkg.energy_j - 1.328_85).abs() < 1e-9, "{}", pkg.energy_j);
    assert_eq!(pkg.resets, 0);
}

#[test]
fn laptop_battery_psys_and_mouse_ignored() {
    let tree = copy_tree(&fixture("laptop"));
    let (mut d, _tmp) = discover_at(tree.path());
    let s = read(&mut d, 0.0);
    let bat = get(&s, "battery:BAT0:power");
    assert_eq!((bat.value, bat.covers), (Some(9.875), Covers::Battery));
    assert!(
        !ids(&s).iter().any(|i| i.contains("hidpp")),
        "the mouse is not the system"
    );
    assert_eq!(get(&s, "rapl:psys:energy").covers, Covers::Platform);
    assert_eq!(get(&s, "hwmon:thinkpad:fan1").value, Some(2900.0));

    let mut acc = Ledger::new();
    acc.push(&s);
    let psys = tree.path().join("class/powercap/intel-rapl:1/energy_uj");
    std::fs::write(&psys, "60129456789\n").expect("write"); // +6 J
    acc.push(&read(&mut d, 1.0));
    let total = acc
        .report(&Window {
            t0: 0.0,
            t1: 1.0,
            ..Default::default()
        })
        .total
        .expect("total");
    assert_eq!(total.basis, TotalBasis::Battery);
    assert!((total.energy_j - 9.875).abs() < 1e-9);

    // On the charger the battery says nothing about the system: psys alone is the total.
    std::fs::write(
        tree.path().join("class/power_supply/BAT0/status"),
        "Charging\n",
    )
    .expect("w");
    let s = read(&mut d, 2.0);
    assert_eq!(get(&s, "battery:BAT0:power").value, None);
    let mut acc = Ledger::new();
    acc.push(&s);
    std::fs::write(&psys, "60137456789\n").expect("write"); // +8 J
    acc.push(&read(&mut d, 3.0));
    let total = acc
        .report(&Window {
            t0: 2.0,
            t1: 3.0,
            ..Default::default()
        })
        .total
        .expect("total");
    assert_eq!(total.basis, TotalBasis::Platform);
    assert!((total.energy_j - 8.0).abs() < 1e-9, "{}", total.energy_j);
}

#[test]
fn battery_without_power_now_uses_current_times_voltage() {
    let tmp = tempfile::tempdir().expect("tempdir");
    write(tmp.path(), "class/power_supply/BAT1/type", "Battery");
    write(tmp.path(), "class/power_supply/BAT1/status", "Discharging");
    write(tmp.path(), "class/power_supply/BAT1/current_now", "1500000");
    write(
        tmp.path(),
        "class/power_supply/BAT1/voltage_now",
        "12000000",
    );
    let (mut d, _t) = discover_at(tmp.path());
    assert_eq!(
        get(&read(&mut d, 0.0), "battery:BAT1:power").value,
        Some(18.0)
    );
}

/// A tree with one good device and every kind of junk next to it.
fn odd_tree() -> tempfile::TempDir {
    let tmp = tempfile::tempdir().expect("tempdir");
    let r = tmp.path();
    // hwmon0: no name at all.
    write(r, "class/hwmon/hwmon0/temp1_input", "40000");
    // hwmon1: good.
    write(r, "class/hwmon/hwmon1/name", "coretemp");
    write(r, "class/hwmon/hwmon1/temp1_input", "51000");
    // hwmon2: one input is a directory (reads fail like EIO), one is fine.
    write(r, "class/hwmon/hwmon2/name", "it8686");
    std::fs::create_dir_all(r.join("class/hwmon/hwmon2/temp1_input")).expect("mkdir");
    write(r, "class/hwmon/hwmon2/fan1_input", "1200");
    // hwmon3: non-numeric values only.
    write(r, "class/hwmon/hwmon3/name", "weird");
    write(r, "class/hwmon/hwmon3/temp1_input", "N/A");
    write(r, "class/hwmon/hwmon3/power1_input", "");
    // hwmon4: a symlink to itself.
    std::os::unix::fs::symlink("hwmon4", r.join("class/hwmon/hwmon4")).expect("symlink");
    // hwmon5: a `device` link pointing back at its own directory (a loop if one recursed).
    write(r, "class/hwmon/hwmon5/name", "loopy");
    write(r, "class/hwmon/hwmon5/temp1_input", "33000");
    std::os::unix::fs::symlink(".", r.join("class/hwmon/hwmon5/device")).expect("symlink");
    tmp
}

#[test]
fn junk_is_skipped_and_reported_never_fatal() {
    let tree = odd_tree();
    let (mut d, _tmp) = discover_at(tree.path());
    let s = read(&mut d, 0.0);
    let mut got: Vec<(&str, Option<f64>)> = s
        .readings
        .iter()
        .filter(|r| r.source == Source::Hwmon)
        .map(|r| (r.id.as_str(), r.value))
        .collect();
    got.sort_by(|a, b| a.0.cmp(b.0));
    assert_eq!(
        got,
        [
            ("hwmon:coretemp:temp1", Some(51.0)),
            ("hwmon:it8686:fan1", Some(1200.0)),
            ("hwmon:loopy:temp1", Some(33.0)),
        ]
    );
    let status_of = |dev: &str| {
        d.statuses
            .iter()
            .find(|st| st.source == Source::Hwmon && st.device.starts_with(dev))
            .unwrap_or_else(|| panic!("no status for {dev}: {:?}", d.statuses))
    };
    let s0 = status_of("hwmon0");
    assert_eq!(s0.state, SourceState::Unreadable);
    assert!(s0.detail.contains("name"), "{s0:?}");
    let s2 = status_of("hwmon2");
    assert_eq!(s2.state, SourceState::Found);
    assert!(s2.detail.contains("temp1 (unreadable)"), "{s2:?}");
    let s3 = status_of("hwmon3");
    assert_eq!(s3.state, SourceState::Unreadable);
    assert!(s3.detail.contains("not a number"), "{s3:?}");
    let s4 = status_of("hwmon4");
    assert_eq!(s4.state, SourceState::Unreadable);
    assert!(s4.detail.contains("symlink loop"), "{s4:?}");
}

#[test]
fn a_device_that_disappears_between_reads_becomes_na() {
    let tree = odd_tree();
    let (mut d, _tmp) = discover_at(tree.path());
    let first = read(&mut d, 0.0);
    assert_eq!(get(&first, "hwmon:coretemp:temp1").value, Some(51.0));
    std::fs::remove_dir_all(tree.path().join("class/hwmon/hwmon1")).expect("rm");
    let second = read(&mut d, 0.25);
    assert_eq!(get(&second, "hwmon:coretemp:temp1").value, None);
    // The others carry on.
    assert_eq!(get(&second, "hwmon:it8686:fan1").value, Some(1200.0));
    assert_eq!(ids(&first), ids(&second));
}

/// Refuses `energy_uj` as a non-root user would see it (tests run as root, who ignores
/// mode 000, so the denial is injected at the reader).
struct DenyEnergy;
impl ReadFile for DenyEnergy {
    fn read(&self, path: &Path) -> std::io::Result<String> {
        if path.file_name().is_some_and(|n| n == "energy_uj") {
            return Err(std::io::Error::from(std::io::ErrorKind::PermissionDenied));
        }
        std::fs::read_to_string(path)
    }
}

#[test]
fn rapl_permission_denied_gives_the_fix_and_falls_back_to_the_estimate() {
    let root = fixture("desktop-intel");
    let tmp = tempfile::tempdir().expect("tempdir");
    let stat = tmp.path().join("stat");
    std::fs::write(
        &stat,
        crate::proc_files::proc_stat("cpu  100 0 100 800 0 0 0 0 0 0"),
    )
    .expect("stat");
    let sysfs = Sysfs::with_reader(&root, Arc::new(DenyEnergy));
    let cfg = SensorsSection {
        tdp_watts: 125.0,
        idle_watts: 15.0,
        ..SensorsSection::default()
    };
    let mut d = discover_with(&cfg, &opts(sysfs, &stat));
    let denied = d
        .statuses
        .iter()
        .find(|s| s.state == SourceState::PermissionDenied)
        .expect("a permission-denied line");
    assert_eq!(denied.source, Source::Rapl);
    assert_eq!(
        denied.device,
        "intel-rapl:0 intel-rapl:0:0 intel-rapl:0:1 intel-rapl:0:2"
    );
    let fix = denied.fix.as_deref().expect("fix");
    assert!(
        fix.starts_with(&format!(
            "sudo chmod a+r {}/class/powercap/intel-rapl:*/energy_uj",
            root.display()
        )),
        "{fix}"
    );
    assert!(fix.contains("SUBSYSTEM==\"powercap\""), "{fix}");
    // No RAPL rows; the estimate stands in, labelled as such: 15 + (125-15) * 0.5 at 50 % busy.
    std::fs::write(
        &stat,
        crate::proc_files::proc_stat("cpu  200 0 200 1000 0 0 0 0 0 0"),
    )
    .expect("stat");
    let s = read(&mut d, 0.0);
    assert!(!s.readings.iter().any(|r| r.source == Source::Rapl));
    let est = get(&s, "estimate:cpu:power");
    assert_eq!(
        (est.method, est.covers, est.value),
        (Method::Estimated, Covers::CpuPackage, Some(70.0))
    );
    assert!(est.label.contains("estimated"));
    assert!(d.statuses.iter().any(|st| st.source == Source::Estimate));
}

#[test]
fn rapl_energy_unreadable_is_reported() {
    let tmp = tempfile::tempdir().expect("tempdir");
    write(tmp.path(), "class/powercap/intel-rapl:0/name", "package-0");
    std::fs::create_dir_all(tmp.path().join("class/powercap/intel-rapl:0/energy_uj"))
        .expect("mkdir");
    let (d, _t) = discover_at(tmp.path());
    let st = d
        .statuses
        .iter()
        .find(|s| s.source == Source::Rapl)
        .expect("rapl status");
    assert_eq!(st.state, SourceState::Unreadable);
    assert!(st.detail.contains("package-0"), "{st:?}");
    assert!(d.sensors.iter().any(|s| s.name() == "estimate:cpu"));
}

#[test]
fn mode_000_energy_uj_as_the_current_user_sees_it() {
    // Root reads mode-000 files; everyone else gets EACCES. Either way discovery must match
    // what the current user can actually read.
    let tree = copy_tree(&fixture("amd-desktop"));
    let e = tree.path().join("class/powercap/intel-rapl:0/energy_uj");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&e, std::fs::Permissions::from_mode(0o000)).expect("chmod");
    let readable = std::fs::read_to_string(&e).is_ok();
    let (d, _t) = discover_at(tree.path());
    let denied = d
        .statuses
        .iter()
        .any(|s| s.state == SourceState::PermissionDenied);
    assert_eq!(denied, !readable);
    let has_pkg = d.sensors.iter().any(|s| s.name() == "rapl");
    assert!(
        has_pkg,
        "core zone (mode 644) or package is readable either way"
    );
}

#[test]
fn hwmon_energy_counter_gives_watts_and_is_the_counter() {
    let tmp = tempfile::tempdir().expect("tempdir");
    write(tmp.path(), "class/hwmon/hwmon0/name", "xe");
    write(tmp.path(), "class/hwmon/hwmon0/energy1_input", "1000000000");
    let (mut d, _t) = discover_at(tmp.path());
    let _ = read(&mut d, 0.0);
    write(tmp.path(), "class/hwmon/hwmon0/energy1_input", "1030000000"); // +30 J
    let s = read(&mut d, 2.0);
    let e = get(&s, "hwmon:xe:energy1:energy");
    assert_eq!(
        (e.value, e.method, e.quantity),
        (Some(1030.0), Method::Counter, Quantity::Energy)
    );
    assert_eq!(get(&s, "hwmon:xe:energy1:power").value, Some(15.0));
    assert_eq!(e.covers, Covers::GpuBoard);
}
