//! AMD and Intel GPUs through hwmon, on fixture trees shaped after the kernel's documented
//! layout (tests/fixtures/sysfs/{amdgpu-average,amdgpu-input,amdgpu-both,intel-i915,intel-xe}):
//! which file is read (the reading's `via`), the watts and joules each gives, and that the
//! ledger sums each board once (never an xe package inside its card, an i915 GT inside its
//! device, or an APU's SoC power that RAPL already counts).

use llmtop::accounting::energy::{TotalBasis, TotalEnergy, Window};
use llmtop::accounting::ledger::Ledger;
use llmtop::config::SensorsSection;
use llmtop::sensors::sysfs::{ReadFile, Sysfs};
use llmtop::sensors::{
    Covers, DiscoverOptions, Discovery, Method, Quantity, Reading, Sample, discover_with,
};
use std::path::{Path, PathBuf};
use std::sync::Arc;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/sysfs")
        .join(name)
}

fn discover_with_fs(fs: Sysfs) -> (Discovery, tempfile::TempDir) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let stat = tmp.path().join("stat");
    std::fs::write(&stat, "cpu  100 0 100 800 0 0 0 0 0 0\n").expect("stat");
    let opts = DiscoverOptions {
        sysfs: fs,
        nvml: false,
        system: false,
        probe_plugs: false,
        proc_stat: stat,
    };
    (discover_with(&SensorsSection::default(), &opts), tmp)
}

fn discover_at(root: &Path) -> (Discovery, tempfile::TempDir) {
    discover_with_fs(Sysfs::new(root))
}

fn read(d: &mut Discovery, t: f64) -> Sample {
    llmtop::sensors::sampler::read_all(&mut d.sensors, t)
}

fn get<'a>(s: &'a Sample, id: &str) -> &'a Reading {
    s.readings.iter().find(|r| r.id == id).unwrap_or_else(|| {
        let ids: Vec<&str> = s.readings.iter().map(|r| r.id.as_str()).collect();
        panic!("no reading {id}; have {ids:?}")
    })
}

/// Copy a fixture tree (symlinks kept) so a test can move its counters.
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

fn write(root: &Path, rel: &str, value: u64) {
    std::fs::write(root.join(rel), format!("{value}\n")).expect("write");
}

/// Two reads `dt` apart, `between` run in the middle (moving counters), through the ledger:
/// the second sample and the total over the interval.
fn two_reads(d: &mut Discovery, dt: f64, between: impl FnOnce()) -> (Sample, TotalEnergy, Ledger) {
    let mut ledger = Ledger::new();
    ledger.push(&read(d, 0.0));
    between();
    let s = read(d, dt);
    ledger.push(&s);
    let total = ledger
        .report(&Window {
            t0: 0.0,
            t1: dt,
            ..Default::default()
        })
        .total
        .expect("a total");
    (s, total, ledger)
}

/// A counter in joules from a file in µJ: equal but for the last bits of the conversion.
fn assert_near(got: Option<f64>, want: f64) {
    let got = got.expect("a value");
    assert!((got - want).abs() < 1e-6, "{got} J, want {want} J");
}

const AMD: &str = "hwmon:amdgpu@0000:03:00.0";

/// The temperatures and fan every amdgpu fixture has: edge/junction/mem with their critical
/// points, the fan in RPM; all the board's.
fn assert_amd_temps_and_fan(s: &Sample) {
    for (chan, label, c, crit) in [
        ("temp1", "edge", 48.0, 100.0),
        ("temp2", "junction", 61.0, 110.0),
        ("temp3", "mem", 58.0, 100.0),
    ] {
        let r = get(s, &format!("{AMD}:{chan}"));
        assert_eq!(
            (
                r.label.as_str(),
                r.value,
                r.limit,
                r.quantity,
                r.covers,
                r.via.as_deref()
            ),
            (
                label,
                Some(c),
                Some(crit),
                Quantity::Temperature,
                Covers::GpuBoard,
                Some(format!("{chan}_input").as_str())
            )
        );
    }
    let fan = get(s, &format!("{AMD}:fan1"));
    assert_eq!(
        (fan.value, fan.quantity, fan.covers),
        (Some(1420.0), Quantity::FanRpm, Covers::GpuBoard)
    );
}

/// A steady board over 2 s: the ledger's joules are the watts times 2, and the board is the
/// only part of the total (the temperatures and fan are not energy).
fn assert_amd_power(tree: &str, watts: f64, cap: f64, via: &str) {
    let (mut d, _tmp) = discover_at(&fixture(tree));
    let (s, total, _) = two_reads(&mut d, 2.0, || {});
    let p = get(&s, &format!("{AMD}:power1"));
    assert_eq!(
        (
            p.label.as_str(),
            p.value,
            p.limit,
            p.method,
            p.covers,
            p.via.as_deref()
        ),
        (
            "PPT",
            Some(watts),
            Some(cap),
            Method::Measured,
            Covers::GpuBoard,
            Some(via)
        ),
        "{tree}"
    );
    assert_amd_temps_and_fan(&s);
    assert_eq!(total.basis, TotalBasis::Components);
    assert_eq!(total.sources, [format!("{AMD}:power1")], "{tree}");
    assert!(
        (total.energy_j - watts * 2.0).abs() < 1e-9,
        "{tree}: {} J",
        total.energy_j
    );
}

#[test]
fn amdgpu_average_only_is_read_and_says_so() {
    assert_amd_power(
        "amdgpu-average",
        87.0,
        203.0,
        "power1_average (averaged by the device)",
    );
}

#[test]
fn amdgpu_input_only_is_read_and_says_so() {
    assert_amd_power("amdgpu-input", 212.0, 263.0, "power1_input (instantaneous)");
}

#[test]
fn amdgpu_with_both_reads_the_instantaneous_one_once() {
    // power1_input 180 W beside power1_average 150 W: 180 W, and 360 J in 2 s (not 660 J).
    assert_amd_power("amdgpu-both", 180.0, 203.0, "power1_input (instantaneous)");
}

/// A board whose firmware lacks the instantaneous sensor: the file exists, reading it fails
/// (EOPNOTSUPP), so the average is read instead.
struct NoInstant;
impl ReadFile for NoInstant {
    fn read(&self, path: &Path) -> std::io::Result<String> {
        if path.file_name().is_some_and(|n| n == "power1_input") {
            return Err(std::io::Error::from_raw_os_error(95));
        }
        std::fs::read_to_string(path)
    }
}

#[test]
fn amdgpu_unreadable_input_falls_back_to_the_average() {
    let fs = Sysfs::with_reader(fixture("amdgpu-both"), Arc::new(NoInstant));
    let (mut d, _tmp) = discover_with_fs(fs);
    let s = read(&mut d, 0.0);
    let p = get(&s, &format!("{AMD}:power1"));
    assert_eq!(
        (p.value, p.via.as_deref()),
        (Some(150.0), Some("power1_average (averaged by the device)"))
    );
}

#[test]
fn an_apu_soc_power_is_shown_but_not_summed_as_a_gpu() {
    // Van Gogh (Steam Deck) labels its power slowPPT/fastPPT: the whole SoC, CPU cores
    // included, which RAPL's package counts already.
    let tree = tempfile::tempdir().expect("tempdir");
    let hw = tree.path().join("class/hwmon/hwmon1");
    std::fs::create_dir_all(&hw).expect("mkdir");
    for (f, v) in [
        ("name", "amdgpu"),
        ("power1_label", "slowPPT"),
        ("power1_average", "9000000"),
        ("power2_label", "fastPPT"),
        ("power2_average", "11000000"),
        ("temp1_label", "edge"),
        ("temp1_input", "51000"),
        ("fan1_input", "2800"),
    ] {
        std::fs::write(hw.join(f), format!("{v}\n")).expect("write");
    }
    let (mut d, _tmp) = discover_at(tree.path());
    let mut ledger = Ledger::new();
    let s = read(&mut d, 0.0);
    ledger.push(&s);
    ledger.push(&read(&mut d, 1.0));
    for (chan, w) in [("power1", 9.0), ("power2", 11.0)] {
        let r = get(&s, &format!("hwmon:amdgpu:{chan}"));
        assert_eq!((r.value, r.covers), (Some(w), Covers::Other), "{chan}");
    }
    // Its temperature is still the GPU's; its power is in no total (the ledger integrates it,
    // 9 J in the second, as a channel of its own).
    assert_eq!(get(&s, "hwmon:amdgpu:temp1").covers, Covers::GpuBoard);
    let report = ledger.report(&Window {
        t0: 0.0,
        t1: 1.0,
        ..Default::default()
    });
    let soc: Vec<_> = report
        .sources
        .iter()
        .filter(|x| x.id.starts_with("hwmon:amdgpu:power"))
        .collect();
    assert!(!soc.is_empty(), "{:?}", report.sources);
    assert!(soc.iter().all(|x| !x.in_total), "{soc:?}");
    assert!(
        report
            .total
            .iter()
            .all(|t| t.sources.iter().all(|id| !id.starts_with("hwmon:"))),
        "{:?}",
        report.total
    );
}

const I915: &str = "hwmon:i915@0000:03:00.0";
const I915_GT: &str = "hwmon:i915_gt0@0000:03:00.0";

#[test]
fn i915_card_counter_gives_joules_and_watts_and_its_gt_is_not_summed() {
    let tree = copy_tree(&fixture("intel-i915"));
    let (mut d, _tmp) = discover_at(tree.path());
    let dev = tree
        .path()
        .join("devices/pci0000:00/0000:00:01.0/0000:01:00.0/0000:02:01.0/0000:03:00.0/hwmon");
    // 1.5 s: the card +45 J (30 W), its GT +27 J (18 W, part of the 30 W).
    let (s, total, ledger) = two_reads(&mut d, 1.5, || {
        write(&dev, "hwmon5/energy1_input", 48_213_456_789 + 45_000_000);
        write(&dev, "hwmon6/energy1_input", 30_123_456_789 + 27_000_000);
    });
    let card = get(&s, &format!("{I915}:energy1:energy"));
    assert_eq!(
        (card.method, card.quantity, card.covers, card.via.as_deref()),
        (
            Method::Counter,
            Quantity::Energy,
            Covers::GpuBoard,
            Some("energy1_input")
        )
    );
    assert_near(card.value, 48_258.456_789);
    let w = get(&s, &format!("{I915}:energy1:power"));
    assert!((w.value.expect("watts") - 30.0).abs() < 1e-6, "{w:?}");
    assert_eq!(
        w.via.as_deref(),
        Some("energy1_input (difference between samples)")
    );
    let gt = get(&s, &format!("{I915_GT}:energy1:energy"));
    assert_eq!(gt.covers, Covers::Other);
    let gt_w = get(&s, &format!("{I915_GT}:energy1:power"));
    assert!((gt_w.value.expect("watts") - 18.0).abs() < 1e-6);
    // The fan and voltage of the device hwmon: the fan is the board's.
    assert_eq!(get(&s, &format!("{I915}:fan1")).value, Some(1100.0));
    // Once: the card's counter, not card + GT (72 J).
    let gpu: Vec<&String> = total
        .sources
        .iter()
        .filter(|id| id.starts_with("hwmon:"))
        .collect();
    assert_eq!(gpu, [&format!("{I915}:energy1:energy")]);
    // The total is the card's 45 J and the CPU (an estimate here), nothing of the GT's.
    let report = ledger.report(&Window {
        t0: 0.0,
        t1: 1.5,
        ..Default::default()
    });
    let cpu: f64 = report
        .sources
        .iter()
        .filter(|x| x.in_total && !x.id.starts_with("hwmon:"))
        .map(|x| x.energy_j)
        .sum();
    assert!(
        (total.energy_j - (45.0 + cpu)).abs() < 1e-6,
        "total {} J, CPU {cpu} J",
        total.energy_j
    );
}

const XE: &str = "hwmon:xe@0000:03:00.0";

#[test]
fn xe_card_and_package_counters_the_card_is_the_board() {
    let tree = copy_tree(&fixture("intel-xe"));
    let (mut d, _tmp) = discover_at(tree.path());
    let hw = tree.path().join(
        "devices/pci0000:00/0000:00:01.0/0000:01:00.0/0000:02:01.0/0000:03:00.0/hwmon/hwmon7",
    );
    // 2 s: the card +60 J (30 W), the package inside it +40 J (20 W).
    let (s, total, ledger) = two_reads(&mut d, 2.0, || {
        write(&hw, "energy1_input", 91_234_567_890 + 60_000_000);
        write(&hw, "energy2_input", 70_123_456_789 + 40_000_000);
    });
    let card = get(&s, &format!("{XE}:energy1:energy"));
    let pkg = get(&s, &format!("{XE}:energy2:energy"));
    assert_eq!(
        (card.label.as_str(), card.covers),
        ("card", Covers::GpuBoard)
    );
    assert_near(card.value, 91_294.567_89);
    assert_eq!((pkg.label.as_str(), pkg.covers), ("pkg", Covers::Other));
    assert_near(pkg.value, 70_163.456_789);
    assert_eq!(card.via.as_deref(), Some("energy1_input"));
    assert_eq!(pkg.via.as_deref(), Some("energy2_input"));
    let w = |id: &str| get(&s, id).value.expect("watts");
    assert!((w(&format!("{XE}:energy1:power")) - 30.0).abs() < 1e-6);
    assert!((w(&format!("{XE}:energy2:power")) - 20.0).abs() < 1e-6);
    // xe has no power input file: power1/power2 are limits only, so no power channel.
    assert!(s.readings.iter().all(|r| r.id != format!("{XE}:power1")));
    for (chan, label, c) in [("temp2", "pkg", 55.0), ("temp3", "vram", 62.0)] {
        let t = get(&s, &format!("{XE}:{chan}"));
        assert_eq!(
            (t.label.as_str(), t.value, t.covers),
            (label, Some(c), Covers::GpuBoard)
        );
    }
    assert_eq!(get(&s, &format!("{XE}:fan2")).value, Some(1310.0));
    // The ledger: the card once (60 J), the package never added to it.
    let report = ledger.report(&Window {
        t0: 0.0,
        t1: 2.0,
        ..Default::default()
    });
    let src = |id: &str| {
        report
            .sources
            .iter()
            .find(|x| x.id == id)
            .unwrap_or_else(|| panic!("no source {id}"))
    };
    let card_e = src(&format!("{XE}:energy1:energy"));
    assert!((card_e.energy_j - 60.0).abs() < 1e-6, "{card_e:?}");
    assert!(card_e.in_total);
    assert!(!src(&format!("{XE}:energy2:energy")).in_total);
    let gpu: Vec<&String> = total
        .sources
        .iter()
        .filter(|id| id.starts_with("hwmon:"))
        .collect();
    assert_eq!(gpu, [&format!("{XE}:energy1:energy")]);
}

#[test]
fn xe_with_only_a_package_counter_counts_the_package() {
    let tree = copy_tree(&fixture("intel-xe"));
    let hw = tree.path().join(
        "devices/pci0000:00/0000:00:01.0/0000:01:00.0/0000:02:01.0/0000:03:00.0/hwmon/hwmon7",
    );
    for f in ["energy1_input", "energy1_label"] {
        std::fs::remove_file(hw.join(f)).expect("rm");
    }
    let (mut d, _tmp) = discover_at(tree.path());
    let s = read(&mut d, 0.0);
    assert_eq!(
        get(&s, &format!("{XE}:energy2:energy")).covers,
        Covers::GpuBoard
    );
}

use crate::live::gpus::{
    AMD_ID, I915_GT_ID, I915_GT_SHARE, I915_ID, I915_SHARE, LiveGpus, XE_ID, XE_PKG_ID,
    XE_PKG_SHARE, XE_SHARE,
};
use crate::live::{Profile, assert_within};

/// The live GPU box through a burst (idle, a ramp to 160 W, load, back to idle) read at 4 Hz:
/// each board's joules against the profile's, each board once in the total, and the amdgpu
/// gauge at the profile's power of the instant it was read.
#[test]
fn live_gpu_box_each_board_once_against_the_true_joules() {
    let m = LiveGpus::start(Profile::bursts());
    let (mut d, _tmp) = discover_at(&m.root);
    let mut ledger = Ledger::new();
    let (mut t0, mut t1) = (None, 0.0);
    let mut tick = 0.0;
    while t1 < 7.0 {
        tick += 0.25;
        let wait = tick - m.now();
        if wait > 0.0 {
            std::thread::sleep(std::time::Duration::from_secs_f64(wait));
        }
        let t = m.step();
        let s = read(&mut d, t);
        // The gauge: the instantaneous file, at the power of the instant it holds.
        let w = get(&s, AMD_ID).value.expect("amdgpu watts");
        assert!((w - m.profile.gpu_w(t)).abs() < 1e-3, "{w} W at {t:.3} s");
        ledger.push(&s);
        t0.get_or_insert(t);
        t1 = t;
    }
    let t0 = t0.expect("read");
    let report = ledger.report(&Window {
        t0,
        t1,
        ..Default::default()
    });
    let src = |id: &str| {
        report
            .sources
            .iter()
            .find(|x| x.id == id)
            .unwrap_or_else(|| panic!("no source {id}"))
    };
    let gpu_j = m.profile.gpu_j(t0, t1);
    // Sampled power integrated (2 %, as the other live GPU test); counters (1 %).
    assert_within("amdgpu power1_input", src(AMD_ID).energy_j, gpu_j, 0.02);
    for (id, share) in [
        (I915_ID, I915_SHARE),
        (I915_GT_ID, I915_GT_SHARE),
        (XE_ID, XE_SHARE),
        (XE_PKG_ID, XE_PKG_SHARE),
    ] {
        assert_within(id, src(id).energy_j, share * gpu_j, 0.01);
    }
    for (id, in_total) in [
        (AMD_ID, true),
        (I915_ID, true),
        (XE_ID, true),
        (I915_GT_ID, false),
        (XE_PKG_ID, false),
    ] {
        assert_eq!(src(id).in_total, in_total, "{id}");
    }
    let total = report.total.expect("total");
    let mut parts = total.sources.clone();
    parts.sort();
    assert_eq!(
        parts,
        [AMD_ID, I915_ID, XE_ID, "rapl:package-0:energy"],
        "each board once, with the CPU package"
    );
    assert_within(
        "total",
        total.energy_j,
        m.profile.cpu_j(t0, t1) + (1.0 + I915_SHARE + XE_SHARE) * gpu_j,
        0.01,
    );
}

/// The same box with a thread rewriting the files while they are read at 100 Hz: never a
/// torn number (n/a), never a counter seen going backwards, watts always positive.
#[test]
fn live_gpu_box_read_while_rewritten() {
    let mut m = LiveGpus::start(Profile::flat(20.0, 120.0, 0.0));
    m.spawn_writer();
    let (mut d, _tmp) = discover_at(&m.root);
    let mut last: std::collections::BTreeMap<String, f64> = Default::default();
    for _ in 0..100 {
        let s = read(&mut d, m.now());
        for id in [AMD_ID, I915_ID, I915_GT_ID, XE_ID, XE_PKG_ID] {
            let v = get(&s, id).value.unwrap_or_else(|| panic!("{id} n/a"));
            if id != AMD_ID {
                let prev = last.insert(id.to_string(), v).unwrap_or(0.0);
                assert!(v >= prev, "{id} went back from {prev} to {v}");
            } else {
                assert!((v - 120.0).abs() < 1e-3, "{id}: {v} W");
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}
