//! The stand-in `libnvidia-ml.so.1` (tests/nvml/standin.c): compiled once per test binary,
//! and one copy per scenario, each beside the timeline it plays (a copy is a separate library
//! to the dynamic loader, so scenarios in one process do not share state).
//!
//! A scenario's true power and energy come from the same knots the library plays, computed
//! here independently of the C code, so every figure llmtop shows is checked against them.
#![allow(dead_code)]

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Instant;

/// The compiled library, built once per test binary (C compiler: `cc`, as in CI's
/// build-essential).
pub fn library() -> &'static Path {
    static LIB: OnceLock<PathBuf> = OnceLock::new();
    LIB.get_or_init(|| {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/nvml/standin.c");
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("nvml-standin");
        std::fs::create_dir_all(&dir).expect("stand-in dir");
        // Built under a name of its own, then renamed: test binaries run side by side.
        let tmp = dir.join(format!("libnvidia-ml.so.1.{}", std::process::id()));
        let out = std::process::Command::new("cc")
            .args([
                "-shared", "-fPIC", "-O2", "-Wall", "-Wextra", "-Werror", "-o",
            ])
            .arg(&tmp)
            .arg(&src)
            .arg("-lm")
            .output()
            .expect("cc (install build-essential)");
        assert!(
            out.status.success(),
            "compiling {}: {}",
            src.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        let lib = dir.join("libnvidia-ml.so.1");
        std::fs::rename(&tmp, &lib).expect("rename");
        lib
    })
}

/// CLOCK_MONOTONIC now, seconds: the stand-in's time base (and `Instant`'s on Linux).
pub fn monotonic_s() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

/// A GPU generation, as the stand-in plays it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arch {
    /// Counter, instant field, `power_usage` a 1 s average.
    Ampere,
    /// Counter; `power_usage` instant; no instant field.
    Volta,
    /// No counter, no instant field.
    Pascal,
}

/// One scripted board.
#[derive(Debug, Clone)]
pub struct Board {
    pub name: String,
    pub arch: Arch,
    /// Knots of true power `(t s, W)`: linear between, a step is two knots at one time.
    pub power: Vec<(f64, f64)>,
    pub counter_phase_s: f64,
    pub temp: (u32, u32, u32),
    /// Percent, and RPM where the fan reports it.
    pub fans: Vec<(u32, Option<u32>)>,
    /// (current, max) MHz of graphics, SM, memory.
    pub clocks: [(u32, u32); 3],
    pub throttle: u64,
    pub vram: (u64, u64),
    pub util: (u32, u32),
    /// Current, min, max, default power limit, W.
    pub limit: (f64, f64, f64, f64),
    pub bus_width: u32,
    /// pid, SM %, memory %, VRAM bytes.
    pub processes: Vec<(u32, u32, u32, u64)>,
    /// Entry point (or "*"), NVML error name, from when (s).
    pub fails: Vec<(String, String, Option<f64>)>,
}

impl Board {
    /// An H100-like board at a steady `watts`.
    pub fn steady(name: &str, watts: f64) -> Self {
        Self {
            name: name.into(),
            arch: Arch::Ampere,
            power: vec![(0.0, watts)],
            counter_phase_s: 0.0,
            temp: (61, 87, 92),
            fans: vec![(45, Some(2400))],
            clocks: [(1755, 1980), (1755, 1980), (2619, 2619)],
            throttle: 0,
            vram: (20 << 30, 80 << 30),
            util: (97, 40),
            limit: (700.0, 200.0, 700.0, 700.0),
            bus_width: 5120,
            processes: Vec::new(),
            fails: Vec::new(),
        }
    }

    pub fn arch(mut self, arch: Arch) -> Self {
        self.arch = arch;
        self
    }

    pub fn power(mut self, knots: &[(f64, f64)]) -> Self {
        self.power = knots.to_vec();
        self
    }

    pub fn phase(mut self, s: f64) -> Self {
        self.counter_phase_s = s;
        self
    }

    pub fn fail(mut self, call: &str, code: &str, from: Option<f64>) -> Self {
        self.fails.push((call.into(), code.into(), from));
        self
    }

    pub fn process(mut self, pid: u32, sm: u32, mem: u32, vram: u64) -> Self {
        self.processes.push((pid, sm, mem, vram));
        self
    }

    /// True power at `t` (timeline seconds).
    pub fn power_at(&self, t: f64) -> f64 {
        let k = &self.power;
        let i = k.partition_point(|&(kt, _)| kt <= t);
        match i {
            0 => k.first().map_or(0.0, |p| p.1),
            i if i == k.len() => k[i - 1].1,
            i => {
                let ((t0, w0), (t1, w1)) = (k[i - 1], k[i]);
                w0 + (w1 - w0) * (t - t0) / (t1 - t0)
            }
        }
    }

    /// True joules between `a` and `b` (timeline seconds), integrated finely.
    pub fn energy_between(&self, a: f64, b: f64) -> f64 {
        let n = (((b - a) * 2000.0).ceil() as usize).max(1);
        let h = (b - a) / n as f64;
        (0..n)
            .map(|i| {
                let (x, y) = (a + h * i as f64, a + h * (i + 1) as f64);
                h * (self.power_at(x) + self.power_at(y)) / 2.0
            })
            .sum()
    }

    fn script(&self, out: &mut String) {
        let arch = match self.arch {
            Arch::Ampere => "ampere",
            Arch::Volta => "volta",
            Arch::Pascal => "pascal",
        };
        let _ = writeln!(out, "board\nname {}\narch {arch}", self.name);
        for (t, w) in &self.power {
            let _ = writeln!(out, "power {t} {w}");
        }
        let (c, slow, shut) = self.temp;
        let _ = writeln!(out, "counter_phase {}", self.counter_phase_s);
        let _ = writeln!(out, "temp {c} {slow} {shut}");
        for (pct, rpm) in &self.fans {
            let _ = writeln!(
                out,
                "fan {pct} {}",
                rpm.map(|r| r.to_string()).unwrap_or_default()
            );
        }
        for (name, (cur, max)) in ["gfx", "sm", "mem"].iter().zip(self.clocks) {
            let _ = writeln!(out, "clock {name} {cur} {max}");
        }
        let _ = writeln!(out, "throttle {:#x}", self.throttle);
        let _ = writeln!(out, "vram {} {}", self.vram.0, self.vram.1);
        let _ = writeln!(out, "util {} {}", self.util.0, self.util.1);
        let (l, lo, hi, def) = self.limit;
        let _ = writeln!(out, "limit {l} {lo} {hi} {def}");
        let _ = writeln!(out, "bus_width {}", self.bus_width);
        for (pid, sm, mem, vram) in &self.processes {
            let _ = writeln!(out, "process {pid} {sm} {mem} {vram}");
        }
        for (call, code, from) in &self.fails {
            let from = from.map(|f| f.to_string()).unwrap_or_default();
            let _ = writeln!(out, "fail {call} {code} {from}");
        }
    }
}

/// One scenario: a copy of the library beside its timeline, time zero at its creation.
pub struct Standin {
    dir: tempfile::TempDir,
    /// CLOCK_MONOTONIC seconds of timeline time 0.
    pub epoch_s: f64,
    pub boards: Vec<Board>,
}

impl Standin {
    pub fn new(boards: Vec<Board>) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::copy(library(), dir.path().join("libnvidia-ml.so.1")).expect("copy library");
        let epoch_s = monotonic_s();
        let mut script = format!(
            "# written by tests/nvml/mod.rs\nepoch_ns {}\nrecord {}\n",
            (epoch_s * 1e9).round() as u64,
            dir.path().join("limits.log").display()
        );
        for b in &boards {
            b.script(&mut script);
        }
        std::fs::write(dir.path().join("timeline"), script).expect("timeline");
        Self {
            dir,
            epoch_s,
            boards,
        }
    }

    /// The library to load (`LLMTOP_NVML_LIBRARY`, or [`Self::open`]).
    pub fn lib(&self) -> PathBuf {
        self.dir.path().join("libnvidia-ml.so.1")
    }

    /// Timeline seconds now.
    pub fn now(&self) -> f64 {
        monotonic_s() - self.epoch_s
    }

    /// Timeline seconds of the instant `i` (a sampler's start, say).
    pub fn at(&self, i: Instant) -> f64 {
        self.now() - i.elapsed().as_secs_f64()
    }

    /// This scenario's own NVML, loaded through the real nvml-wrapper.
    pub fn open(&self) -> &'static nvml_wrapper::Nvml {
        llmtop::sensors::nvml::open_at(&self.lib()).expect("stand-in NVML")
    }

    /// The power limits set so far: (board, mW, timeline s).
    pub fn limits_set(&self) -> Vec<(u32, u32, f64)> {
        std::fs::read_to_string(self.dir.path().join("limits.log"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| {
                let mut it = l.split_whitespace();
                Some((
                    it.next()?.parse().ok()?,
                    it.next()?.parse().ok()?,
                    it.next()?.parse().ok()?,
                ))
            })
            .collect()
    }
}
