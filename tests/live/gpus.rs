//! A live GPU box: three GPU boards in a sysfs-format tree that a thread rewrites every few
//! milliseconds from one power profile, each through another driver's files:
//! - an amdgpu card with both `power1_input` (the profile's power now) and `power1_average`
//!   (its mean over the last second, as the firmware's average trails a load step),
//! - an i915 card whose `energy1_input` counts `I915_SHARE` of the profile's joules, and its
//!   GT hwmon (`i915_gt0`) counting `I915_GT_SHARE`, a part of the card's,
//! - an xe card whose `energy1_input` (label `card`) counts `XE_SHARE` and `energy2_input`
//!   (label `pkg`, inside the card) `XE_PKG_SHARE`,
//!
//! and a RAPL package counter at the profile's CPU power, so the whole-system total is known.
//!
//! Two ways to drive it. `step()` writes every file for the instant it returns, and the test
//! reads right after: a figure can then be compared to the truth at 1 % on a loaded 2-core
//! machine, where a starved writer thread would leave values tens of milliseconds stale.
//! `spawn_writer()` rewrites the files from a thread while the code under test reads them, for
//! what only concurrency shows (a half-written number, a counter seen going backwards).

use super::Profile;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub const I915_SHARE: f64 = 0.5;
pub const I915_GT_SHARE: f64 = 0.3;
pub const XE_SHARE: f64 = 0.75;
pub const XE_PKG_SHARE: f64 = 0.6;

pub const AMD_ID: &str = "hwmon:amdgpu@0000:03:00.0:power1";
pub const I915_ID: &str = "hwmon:i915@0000:04:00.0:energy1:energy";
pub const I915_GT_ID: &str = "hwmon:i915_gt0@0000:04:00.0:energy1:energy";
pub const XE_ID: &str = "hwmon:xe@0000:05:00.0:energy1:energy";
pub const XE_PKG_ID: &str = "hwmon:xe@0000:05:00.0:energy2:energy";

pub struct LiveGpus {
    pub root: PathBuf,
    _dir: tempfile::TempDir,
    pub start: Instant,
    pub profile: Profile,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// The hwmon folder of a PCI function, linked from class/hwmon as on a real machine.
fn hwmon(root: &Path, bdf: &str, n: u32, name: &str, files: &[(&str, &str)]) {
    let dev = root.join(format!("devices/pci0000:00/{bdf}"));
    let hw = dev.join(format!("hwmon/hwmon{n}"));
    std::fs::create_dir_all(&hw).expect("mkdir hwmon");
    std::fs::write(hw.join("name"), format!("{name}\n")).expect("name");
    for (f, v) in files {
        std::fs::write(hw.join(f), format!("{v}\n")).expect("file");
    }
    std::os::unix::fs::symlink(format!("../../../{bdf}"), hw.join("device")).expect("device");
    let class = root.join("class/hwmon");
    std::fs::create_dir_all(&class).expect("class");
    std::os::unix::fs::symlink(
        format!("../../devices/pci0000:00/{bdf}/hwmon/hwmon{n}"),
        class.join(format!("hwmon{n}")),
    )
    .expect("class link");
}

fn write_atomic(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).expect("write");
    std::fs::rename(&tmp, path).expect("rename");
}

fn dev(root: &Path, bdf: &str, n: u32) -> PathBuf {
    root.join(format!("devices/pci0000:00/{bdf}/hwmon/hwmon{n}"))
}

fn write_files(p: &Profile, t: f64, root: &Path) {
    let uj = |j: f64| format!("{}\n", (j * 1e6) as u64);
    write_atomic(
        &root.join("class/powercap/intel-rapl:0/energy_uj"),
        &uj(p.cpu_j(0.0, t)),
    );
    let amd = dev(root, "0000:03:00.0", 1);
    write_atomic(&amd.join("power1_input"), &uj(p.gpu_w(t)));
    // The mean over the last second (before 0 s the board drew the profile's first power).
    let avg = p.gpu_j((t - 1.0).max(0.0), t) + p.gpu_w(0.0) * (1.0 - t).max(0.0);
    write_atomic(&amd.join("power1_average"), &uj(avg));
    let gpu_j = p.gpu_j(0.0, t);
    write_atomic(
        &dev(root, "0000:04:00.0", 2).join("energy1_input"),
        &uj(I915_SHARE * gpu_j),
    );
    write_atomic(
        &dev(root, "0000:04:00.0", 3).join("energy1_input"),
        &uj(I915_GT_SHARE * gpu_j),
    );
    let xe = dev(root, "0000:05:00.0", 4);
    write_atomic(&xe.join("energy1_input"), &uj(XE_SHARE * gpu_j));
    write_atomic(&xe.join("energy2_input"), &uj(XE_PKG_SHARE * gpu_j));
}

impl LiveGpus {
    pub fn start(profile: Profile) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().to_path_buf();
        let rapl = root.join("class/powercap/intel-rapl:0");
        std::fs::create_dir_all(&rapl).expect("mkdir rapl");
        std::fs::write(rapl.join("name"), "package-0\n").expect("name");
        std::fs::write(rapl.join("max_energy_range_uj"), "262143328850\n").expect("range");
        hwmon(
            &root,
            "0000:03:00.0",
            1,
            "amdgpu",
            &[
                ("power1_label", "PPT"),
                ("power1_cap", "300000000"),
                ("temp1_label", "edge"),
                ("temp1_input", "50000"),
            ],
        );
        hwmon(
            &root,
            "0000:04:00.0",
            2,
            "i915",
            &[("power1_max", "190000000")],
        );
        hwmon(&root, "0000:04:00.0", 3, "i915_gt0", &[]);
        hwmon(
            &root,
            "0000:05:00.0",
            4,
            "xe",
            &[("energy1_label", "card"), ("energy2_label", "pkg")],
        );
        let start = Instant::now();
        write_files(&profile, 0.0, &root);
        Self {
            root,
            _dir: dir,
            start,
            profile,
            stop: Arc::new(AtomicBool::new(false)),
            thread: None,
        }
    }

    /// Seconds on the machine's clock now.
    pub fn now(&self) -> f64 {
        self.start.elapsed().as_secs_f64()
    }

    /// Write every file for now; returns that instant (machine seconds).
    pub fn step(&self) -> f64 {
        let t = self.now();
        write_files(&self.profile, t, &self.root);
        t
    }

    /// Rewrite the files every few milliseconds from a thread until dropped.
    pub fn spawn_writer(&mut self) {
        let (p, s, r, start) = (
            self.profile.clone(),
            self.stop.clone(),
            self.root.clone(),
            self.start,
        );
        self.thread = Some(std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                write_files(&p, start.elapsed().as_secs_f64(), &r);
                std::thread::sleep(Duration::from_millis(2));
            }
        }));
    }
}

impl Drop for LiveGpus {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
