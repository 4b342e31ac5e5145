//! A live synthetic machine: a sysfs-format tree in a temp dir that a thread rewrites every few
//! milliseconds at a known power profile (a RAPL package counter with a small wrap range, an
//! amdgpu hwmon with power, temperature and fan), and a Shelly Gen2 plug served on 127.0.0.1
//! that measures the whole machine. The true joules of any interval come from the profile, so
//! every figure llmtop shows can be checked against them. Two CPUs (one core each, one package)
//! report their clocks and thermal throttle counters; from `Profile::throttle_at` on, the
//! clocks drop to half and the counters advance, as a CPU at its thermal limit does.
#![allow(dead_code)]

pub mod gpus;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// RAPL wraps at 100 J here (real ones at ~262 kJ), so a test of seconds sees several wraps; a
/// step of more than half the range is a reset, so a sampler stalled for over a second at
/// 45 W would still count every joule.
pub const RAPL_RANGE_UJ: u64 = 100_000_000;

/// CPU clocks, kHz: the maximum, what the CPUs run at under load, and throttled.
pub const CPU_MAX_KHZ: u64 = 4_900_000;
pub const CPU_FAST_KHZ: u64 = 4_800_000;
pub const CPU_THROTTLED_KHZ: u64 = 2_400_000;
/// Throttle events per second per core (and for the package) once throttled.
pub const THROTTLES_PER_S: f64 = 4.0;

/// Power over time, piecewise linear between knots `(t, cpu W, gpu W)`, plus a constant rest
/// of the machine that only the wall plug sees.
#[derive(Debug, Clone)]
pub struct Profile {
    pub knots: Vec<(f64, f64, f64)>,
    pub rest_w: f64,
    /// From this second on the CPU is throttled (clocks halved, counters advancing).
    pub throttle_at: Option<f64>,
    /// `(t, w)`: from second `t` on, something only the wall sees draws `w` more (a monitor
    /// plugged into the machine's USB-C).
    pub rest_steps: Vec<(f64, f64)>,
    /// Known sensor errors written into the tree (none by default).
    pub inject: Inject,
}

/// Sensor errors the tree is written with, so a figure's error band can be checked against
/// an error of known size.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Inject {
    /// The RAPL counter counts this many joules per true joule (1.03: it reads 3 % high).
    pub rapl_gain: f64,
    /// The GPU's `power1_average` is the mean of the true power over this many seconds
    /// before the instant it is read, as a device's average is (`None`: the power now).
    pub gpu_average_s: Option<f64>,
    /// No RAPL zone: the CPU is estimated from a `proc_stat` file in the tree (see
    /// [`LiveMachine::proc_stat`]) whose utilisation is the CPU's load between its idle and
    /// full power.
    pub no_rapl: bool,
}

impl Default for Inject {
    fn default() -> Self {
        Self {
            rapl_gain: 1.0,
            gpu_average_s: None,
            no_rapl: false,
        }
    }
}

/// The CPU's idle and full power in [`Profile::bursts`] and [`Profile::steps`]: the
/// utilisation written for the estimate is the load between them.
pub const CPU_IDLE_W: f64 = 12.0;
pub const CPU_FULL_W: f64 = 45.0;
/// Ticks per second in the written `proc_stat`.
const TICKS_PER_S: f64 = 1e6;

impl Profile {
    /// Idle, then a ramp to load and back, repeated: what replies look like.
    pub fn bursts() -> Self {
        let mut knots = vec![(0.0, 12.0, 20.0)];
        let mut t = 0.0;
        for _ in 0..8 {
            knots.push((t + 2.0, 12.0, 20.0));
            knots.push((t + 3.0, 45.0, 160.0));
            knots.push((t + 5.0, 45.0, 160.0));
            knots.push((t + 6.0, 12.0, 20.0));
            t += 6.0;
        }
        Self {
            knots,
            rest_w: 30.0,
            throttle_at: None,
            rest_steps: Vec::new(),
            inject: Inject::default(),
        }
    }

    /// The same power all the time.
    pub fn flat(cpu: f64, gpu: f64, rest: f64) -> Self {
        Self {
            knots: vec![(0.0, cpu, gpu), (1e6, cpu, gpu)],
            rest_w: rest,
            throttle_at: None,
            rest_steps: Vec::new(),
            inject: Inject::default(),
        }
    }

    /// Idle, then a step to full load at 3 s (within a millisecond), back to idle at 8 s,
    /// and again from 13 s to 18 s: what a device average trails.
    pub fn steps() -> Self {
        let (ci, cf, gi, gf) = (CPU_IDLE_W, CPU_FULL_W, 20.0, 160.0);
        let mut knots = vec![(0.0, ci, gi)];
        for (up, down) in [(3.0, 8.0), (13.0, 18.0)] {
            knots.extend([
                (up, ci, gi),
                (up + 0.001, cf, gf),
                (down, cf, gf),
                (down + 0.001, ci, gi),
            ]);
        }
        Self {
            knots,
            rest_w: 30.0,
            throttle_at: None,
            rest_steps: Vec::new(),
            inject: Inject::default(),
        }
    }

    /// The same profile with these sensor errors written into the tree.
    pub fn injected(mut self, inject: Inject) -> Self {
        self.inject = inject;
        self
    }

    /// The CPU's utilisation at `t` as the written `proc_stat` shows it: its load between
    /// idle and full power.
    pub fn cpu_util(&self, t: f64) -> f64 {
        ((self.cpu_w(t) - CPU_IDLE_W) / (CPU_FULL_W - CPU_IDLE_W)).clamp(0.0, 1.0)
    }

    /// Busy seconds of the CPU from 0 to `t` (the trapezoid of the utilisation, exact on the
    /// profile's lines).
    fn busy_s(&self, t: f64) -> f64 {
        let cpu_j = self.energy_to(t).0;
        (cpu_j - CPU_IDLE_W * t) / (CPU_FULL_W - CPU_IDLE_W)
    }

    /// What the GPU's `power1_average` reads at `t`.
    pub fn gpu_reading(&self, t: f64) -> f64 {
        match self.inject.gpu_average_s {
            Some(w) if w > 0.0 => {
                let from = (t - w).max(0.0);
                if t > from {
                    self.gpu_j(from, t) / (t - from)
                } else {
                    self.gpu_w(t)
                }
            }
            _ => self.gpu_w(t),
        }
    }

    /// The same profile, with `w` more that only the wall sees from `t` on.
    pub fn plus_rest_from(mut self, t: f64, w: f64) -> Self {
        self.rest_steps.push((t, w));
        self
    }

    /// What only the wall sees at `t`, W.
    pub fn rest_at(&self, t: f64) -> f64 {
        self.rest_w
            + self
                .rest_steps
                .iter()
                .filter(|(at, _)| t >= *at)
                .map(|(_, w)| w)
                .sum::<f64>()
    }

    /// Joules only the wall sees from `t0` to `t1`.
    pub fn rest_j(&self, t0: f64, t1: f64) -> f64 {
        self.rest_w * (t1 - t0)
            + self
                .rest_steps
                .iter()
                .map(|&(at, w)| w * (t1 - at.max(t0)).max(0.0))
                .sum::<f64>()
    }

    /// The same profile, throttled from `t` on.
    pub fn throttled_from(mut self, t: f64) -> Self {
        self.throttle_at = Some(t);
        self
    }

    /// Throttle events each core's (and the package's) counter shows at `t`.
    pub fn throttle_count(&self, t: f64) -> u64 {
        match self.throttle_at {
            Some(at) if t >= at => 1 + ((t - at) * THROTTLES_PER_S) as u64,
            _ => 0,
        }
    }

    /// Each CPU's clock at `t`, kHz.
    pub fn cpu_khz(&self, t: f64) -> u64 {
        match self.throttle_at {
            Some(at) if t >= at => CPU_THROTTLED_KHZ,
            _ => CPU_FAST_KHZ,
        }
    }

    fn at(&self, t: f64) -> (f64, f64) {
        let k = &self.knots;
        let i = k.partition_point(|p| p.0 <= t);
        if i == 0 {
            return (k[0].1, k[0].2);
        }
        if i >= k.len() {
            let l = k[k.len() - 1];
            return (l.1, l.2);
        }
        let (a, b) = (k[i - 1], k[i]);
        let f = (t - a.0) / (b.0 - a.0);
        (a.1 + (b.1 - a.1) * f, a.2 + (b.2 - a.2) * f)
    }

    pub fn cpu_w(&self, t: f64) -> f64 {
        self.at(t).0
    }

    pub fn gpu_w(&self, t: f64) -> f64 {
        self.at(t).1
    }

    pub fn wall_w(&self, t: f64) -> f64 {
        let (c, g) = self.at(t);
        c + g + self.rest_at(t)
    }

    /// Exact joules of (cpu, gpu) from 0 to `t`: the trapezoid is exact on lines.
    fn energy_to(&self, t: f64) -> (f64, f64) {
        let mut e = (0.0, 0.0);
        let mut prev = (0.0, self.at(0.0));
        let mut points: Vec<f64> = self
            .knots
            .iter()
            .map(|k| k.0)
            .filter(|&x| x > 0.0 && x < t)
            .collect();
        points.push(t);
        for x in points {
            let p = self.at(x);
            let dt = x - prev.0;
            e.0 += dt * (prev.1.0 + p.0) / 2.0;
            e.1 += dt * (prev.1.1 + p.1) / 2.0;
            prev = (x, p);
        }
        e
    }

    pub fn cpu_j(&self, t0: f64, t1: f64) -> f64 {
        self.energy_to(t1).0 - self.energy_to(t0).0
    }

    pub fn gpu_j(&self, t0: f64, t1: f64) -> f64 {
        self.energy_to(t1).1 - self.energy_to(t0).1
    }

    pub fn wall_j(&self, t0: f64, t1: f64) -> f64 {
        self.cpu_j(t0, t1) + self.gpu_j(t0, t1) + self.rest_j(t0, t1)
    }
}

/// The running machine. Dropping it stops the writer and the plug.
pub struct LiveMachine {
    pub root: PathBuf,
    _dir: tempfile::TempDir,
    pub start: Instant,
    pub profile: Profile,
    pub plug_addr: SocketAddr,
    /// When the plug answered, on the machine's clock: a plug reading's true interval.
    plug_answers: Arc<std::sync::Mutex<Vec<f64>>>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

fn write_atomic(path: &Path, text: &str) {
    // sysfs files change in place; here a rename keeps a reader from seeing half a number.
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).expect("write");
    std::fs::rename(&tmp, path).expect("rename");
}

impl LiveMachine {
    pub fn start(profile: Profile) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().to_path_buf();
        if !profile.inject.no_rapl {
            let rapl = root.join("class/powercap/intel-rapl:0");
            std::fs::create_dir_all(&rapl).expect("mkdir rapl");
            std::fs::write(rapl.join("name"), "package-0\n").expect("name");
            std::fs::write(
                rapl.join("max_energy_range_uj"),
                format!("{RAPL_RANGE_UJ}\n"),
            )
            .expect("range");
        }
        let hw = root.join("class/hwmon/hwmon0");
        std::fs::create_dir_all(&hw).expect("mkdir hwmon");
        std::fs::write(hw.join("name"), "amdgpu\n").expect("name");
        std::fs::write(hw.join("temp1_label"), "edge\n").expect("label");
        std::fs::write(hw.join("temp1_crit"), "100000\n").expect("crit");
        for n in 0..2 {
            let cpu = root.join(format!("devices/system/cpu/cpu{n}"));
            for d in ["cpufreq", "topology", "thermal_throttle"] {
                std::fs::create_dir_all(cpu.join(d)).expect("mkdir cpu");
            }
            std::fs::write(
                cpu.join("cpufreq/cpuinfo_max_freq"),
                format!("{CPU_MAX_KHZ}\n"),
            )
            .expect("max");
            std::fs::write(cpu.join("topology/physical_package_id"), "0\n").expect("pkg");
            std::fs::write(cpu.join("topology/core_id"), format!("{n}\n")).expect("core");
        }
        let start = Instant::now();
        let stop = Arc::new(AtomicBool::new(false));
        let mut m = Self {
            root,
            _dir: dir,
            start,
            profile: profile.clone(),
            plug_addr: "127.0.0.1:0".parse().expect("addr"),
            plug_answers: Default::default(),
            stop: stop.clone(),
            threads: Vec::new(),
        };
        m.write_files(0.0);
        let (p, s, root) = (profile.clone(), stop.clone(), m.root.clone());
        m.threads.push(std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                let t = start.elapsed().as_secs_f64();
                write_files(&p, t, &root);
                std::thread::sleep(Duration::from_millis(4));
            }
        }));
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind plug");
        listener.set_nonblocking(true).expect("nonblocking");
        m.plug_addr = listener.local_addr().expect("addr");
        let (p, s, answers) = (profile, stop, m.plug_answers.clone());
        m.threads.push(std::thread::spawn(move || {
            serve_plug(listener, p, start, s, &answers)
        }));
        m
    }

    fn write_files(&self, t: f64) {
        write_files(&self.profile, t, &self.root);
    }

    /// The wall's true mean power between each two consecutive plug answers (machine clock),
    /// the last `n` such intervals ending by `until`: what a gauge built from the plug's
    /// counter can read, whatever delay the machine's load put between an answer and its
    /// sample.
    pub fn plug_interval_watts(&self, until: f64, n: usize) -> Vec<f64> {
        let t: Vec<f64> = self
            .plug_answers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .copied()
            .filter(|t| *t <= until)
            .collect();
        t.windows(2)
            .filter(|w| w[1] > w[0])
            .map(|w| self.profile.wall_j(w[0], w[1]) / (w[1] - w[0]))
            .rev()
            .take(n)
            .collect()
    }

    /// The instant the CPU starts throttling, if the profile says it does.
    pub fn throttle_instant(&self) -> Option<Instant> {
        self.profile
            .throttle_at
            .map(|t| self.start + Duration::from_secs_f64(t))
    }

    /// Seconds on the machine's clock at `instant`.
    pub fn t_of(&self, instant: Instant) -> f64 {
        instant.duration_since(self.start).as_secs_f64()
    }

    /// The config file text for this machine's plug.
    pub fn plug_config(&self) -> String {
        format!(
            "[sensors]\nrate_hz = 4.0\nidle_window_s = 2.0\n\n[[sensors.plugs]]\nkind = \"shelly-gen2\"\nurl = \"http://{}\"\n",
            self.plug_addr
        )
    }

    pub fn plug_url(&self) -> String {
        format!("http://{}", self.plug_addr)
    }

    /// The `/proc/stat` the writer keeps (the CPU's utilisation, for an estimate).
    pub fn proc_stat(&self) -> PathBuf {
        self.root.join("proc_stat")
    }
}

fn write_files(p: &Profile, t: f64, root: &Path) {
    let rapl = root.join("class/powercap/intel-rapl:0");
    let hw = root.join("class/hwmon/hwmon0");
    let count = format!("{}\n", p.throttle_count(t));
    let khz = format!("{}\n", p.cpu_khz(t));
    for n in 0..2 {
        let cpu = root.join(format!("devices/system/cpu/cpu{n}"));
        write_atomic(&cpu.join("cpufreq/scaling_cur_freq"), &khz);
        write_atomic(&cpu.join("thermal_throttle/core_throttle_count"), &count);
        write_atomic(&cpu.join("thermal_throttle/package_throttle_count"), &count);
    }
    let (cpu_j, _) = p.energy_to(t);
    if p.inject.no_rapl {
        // The aggregate line: user busy, idle the rest (ticks, cumulative).
        let (busy, total) = (p.busy_s(t) * TICKS_PER_S, t * TICKS_PER_S);
        let line = format!(
            "cpu  {} 0 0 {} 0 0 0 0 0 0",
            busy as u64,
            (total - busy).max(0.0) as u64
        );
        write_atomic(
            &root.join("proc_stat"),
            &format!(
                "{line}\ncpu0 1 0 1 1 0 0 0 0 0 0\nintr 1000 0\nctxt 5000\nbtime 1700000000\nprocesses 300\nprocs_running 1\nprocs_blocked 0\nsoftirq 100 0\n"
            ),
        );
    } else {
        let uj = (cpu_j * p.inject.rapl_gain * 1e6) as u64 % RAPL_RANGE_UJ;
        write_atomic(&rapl.join("energy_uj"), &format!("{uj}\n"));
    }
    let gpu = p.gpu_w(t);
    write_atomic(
        &hw.join("power1_average"),
        &format!("{}\n", (p.gpu_reading(t) * 1e6) as u64),
    );
    write_atomic(
        &hw.join("temp1_input"),
        &format!("{}\n", (40_000.0 + gpu * 200.0) as u64),
    );
    write_atomic(
        &hw.join("fan1_input"),
        &format!("{}\n", (800.0 + gpu * 5.0) as u64),
    );
}

/// A Shelly Gen2 switch: `apower` now and `aenergy.total` in Wh, computed at request time.
fn serve_plug(
    listener: TcpListener,
    p: Profile,
    start: Instant,
    stop: Arc<AtomicBool>,
    answers: &std::sync::Mutex<Vec<f64>>,
) {
    while !stop.load(Ordering::Relaxed) {
        let Ok((mut s, _)) = listener.accept() else {
            std::thread::sleep(Duration::from_millis(2));
            continue;
        };
        let _ = s.set_nonblocking(false);
        let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
        let mut buf = [0u8; 2048];
        let mut req = Vec::new();
        while !req.windows(4).any(|w| w == b"\r\n\r\n") {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => req.extend_from_slice(&buf[..n]),
            }
        }
        let t = start.elapsed().as_secs_f64();
        answers.lock().unwrap_or_else(|e| e.into_inner()).push(t);
        let body = format!(
            "{{\"id\":0,\"output\":true,\"apower\":{:.3},\"voltage\":230.1,\"aenergy\":{{\"total\":{:.6}}}}}",
            p.wall_w(t),
            p.wall_j(0.0, t) / 3600.0
        );
        let _ = write!(
            s,
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
    }
}

impl Drop for LiveMachine {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// `|a - b| <= tol * |b|`, with both in the message.
pub fn assert_within(what: &str, got: f64, truth: f64, tol: f64) {
    // Shown with `--nocapture`: the figures behind the notes in BENCHMARKS.md.
    eprintln!(
        "{what}: {got:.3} vs {truth:.3} ({:+.4} %)",
        (got - truth) / truth * 100.0
    );
    assert!(
        (got - truth).abs() <= tol * truth.abs(),
        "{what}: {got:.3} vs true {truth:.3} ({:+.3} %, allowed {:.1} %)",
        (got - truth) / truth * 100.0,
        tol * 100.0
    );
}
