//! The server's share of the machine's energy (Kepler's split, from the ledger only): on a
//! scripted ledger with known numbers, then a real busy child process on a live synthetic
//! machine, its CPU time read from the real /proc.

use crate::live;

use live::{LiveMachine, Profile};
use llmtop::accounting::energy::{IdleBaseline, IdleFrom, TotalBasis};
use llmtop::accounting::ledger::Ledger;
use llmtop::accounting::share::{METHOD, Mark, ServerMeter, ShareTracker};
use llmtop::sensors::nvml::{ComputeProcess, GpuProcesses, ProcessSm};
use llmtop::sensors::process::{CpuTicks, Procfs};
use llmtop::sensors::sampler::read_all;
use llmtop::sensors::sysfs::Sysfs;
use llmtop::sensors::{
    Covers, DiscoverOptions, Method, Quantity, Reading, Sample, Source, discover_with,
};
use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

fn reading(id: &str, source: Source, covers: Covers, q: Quantity, m: Method, v: f64) -> Reading {
    Reading {
        id: id.into(),
        device: id.split(':').nth(1).unwrap_or("dev").into(),
        label: id.into(),
        quantity: q,
        value: Some(v),
        limit: None,
        source,
        covers,
        method: m,
        rejected: None,
        via: None,
    }
}

/// Cumulative joules of a step from `idle` W to `busy` W at 2 s.
fn step_j(t: f64, idle: f64, busy: f64) -> f64 {
    if t < 2.0 {
        idle * t
    } else {
        idle * 2.0 + busy * (t - 2.0)
    }
}

/// Every 0.1 s: a RAPL package counter (10 W, then 40 W from 2 s), an NVIDIA board counter
/// (50 W, then 250 W), an amdgpu board's power (5 W, then 25 W; no per-process figures) and a
/// CPU estimate (99 W, ignored beside a measured package). Every 0.5 s a look at the server:
/// a quarter of the machine's busy CPU time, 60 % of GPU 0's SM utilisation. The idle
/// baseline is the ledger's own over the first 2 s.
#[test]
fn kepler_split_on_a_scripted_ledger_gives_the_known_joules() {
    let mut ledger = Ledger::new();
    let mut marks = Vec::new();
    for i in 0..=80 {
        let t = f64::from(i) * 0.1;
        let amd = if t < 2.0 { 5.0 } else { 25.0 };
        ledger.push(&Sample {
            t,
            readings: vec![
                reading(
                    "rapl:package-0:energy",
                    Source::Rapl,
                    Covers::CpuPackage,
                    Quantity::Energy,
                    Method::Counter,
                    1000.0 + step_j(t, 10.0, 40.0),
                ),
                reading(
                    "nvml:0:energy",
                    Source::Nvml,
                    Covers::GpuBoard,
                    Quantity::Energy,
                    Method::Counter,
                    5000.0 + step_j(t, 50.0, 250.0),
                ),
                reading(
                    "hwmon:amdgpu:power1",
                    Source::Hwmon,
                    Covers::GpuBoard,
                    Quantity::Power,
                    Method::Measured,
                    amd,
                ),
                reading(
                    "estimate:cpu:power",
                    Source::Estimate,
                    Covers::CpuPackage,
                    Quantity::Power,
                    Method::Estimated,
                    99.0,
                ),
            ],
        });
        if i % 5 == 0 {
            let k = u64::from(i as u32 / 5);
            marks.push(Mark {
                t,
                cpu: Some(CpuTicks {
                    process: 500 + 25 * k,
                    busy: 9000 + 100 * k,
                    total: 20000 + 200 * k,
                }),
                gpu: BTreeMap::from([(0, 0.6)]),
                vram_bytes: Some(1 << 30),
            });
        }
    }
    let idle = ledger.idle_baseline(0.0, 2.0).expect("idle baseline");
    assert_eq!(idle.basis, TotalBasis::Components);
    // The estimate stands aside for the measured package: not in the baseline either.
    assert_eq!(
        idle.channels.keys().collect::<Vec<_>>(),
        [
            "hwmon:amdgpu:power1",
            "nvml:0:energy",
            "rapl:package-0:energy"
        ]
    );
    let mut tracker = ShareTracker::new(4242);
    let mut gross = ShareTracker::new(4242);
    let mut shares = Vec::new();
    for m in &marks {
        tracker.push(m.clone());
        gross.push(m.clone());
        shares.push(tracker.update(&ledger, Some(&idle)));
        gross.update(&ledger, None);
    }
    let s = shares.last().expect("share").clone();
    // Active CPU (40-10 W) x 6 s x 1/4 = 45 J; active GPU (250-50 W) x 6 s x 0.6 = 720 J; the
    // idle stretch adds nothing; the amdgpu board is not split.
    let close = |a: f64, b: f64| (a - b).abs() <= 1e-6 * b.abs().max(1.0);
    assert!(close(s.joules, 765.0), "{s:?}");
    assert!(
        close(s.watts_now.expect("watts"), 0.25 * 30.0 + 0.6 * 200.0),
        "{s:?}"
    );
    assert_eq!((s.cpu_share, s.gpu_share), (Some(0.25), Some(0.6)));
    assert_eq!(
        (s.pid, s.vram_bytes, s.until),
        (4242, Some(1 << 30), Some(8.0))
    );
    assert_eq!(s.method, METHOD);
    assert!(s.method.starts_with("attribution"), "{}", s.method);
    assert!(
        s.covers.starts_with(
            "CPU package rapl:package-0:energy and GPU board nvml:0:energy above idle; GPU board hwmon:amdgpu:power1 not split (no per-process figures); not idle power"
        ),
        "{}",
        s.covers
    );
    assert!(!s.covers.contains("estimate"), "{}", s.covers);
    // Every interval is split once, back to back, with the baseline's idle floors.
    let splits = tracker.splits();
    assert_eq!(splits.len(), 16);
    assert!(splits.windows(2).all(|w| w[0].t1 == w[1].t0));
    let cpu: f64 = splits.iter().map(|x| x.cpu_j()).sum();
    let gpu: f64 = splits.iter().map(|x| x.gpu_j()).sum();
    assert!(close(cpu, 45.0) && close(gpu, 720.0), "{cpu} {gpu}");
    for c in splits.iter().flat_map(|x| &x.channels) {
        let floor = c.idle.expect("idle floor");
        assert_eq!(floor.from, IdleFrom::Baseline);
        match c.id.as_str() {
            "rapl:package-0:energy" => assert!(close(floor.watts, 10.0), "{c:?}"),
            "nvml:0:energy" => assert!(close(floor.watts, 50.0), "{c:?}"),
            "hwmon:amdgpu:power1" => assert_eq!((c.share, c.attributed_j), (None, 0.0)),
            other => panic!("unexpected channel {other}"),
        }
    }
    // Without a baseline (and no idle figure of their own) the channels are split gross, and
    // the line says so: 1/4 of 260 J of package and 0.6 of 1600 J of board.
    let g = gross.share();
    assert!(close(g.joules, 65.0 + 960.0), "{g:?}");
    assert!(
        g.covers.starts_with(
            "CPU package rapl:package-0:energy and GPU board nvml:0:energy gross (no idle baseline measured); GPU board hwmon:amdgpu:power1 not split (no per-process figures); not DRAM"
        ),
        "{}",
        g.covers
    );
}

/// `sh -c 'while :; do :; done'`: one thread spinning; killed by PID and reaped on drop.
struct Spinner(Child);

impl Drop for Spinner {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// (process ticks, machine busy ticks) from the real /proc, parsed here independently.
fn ticks(pid: u32) -> (u64, u64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("pid stat");
    let after = &stat[stat.rfind(')').expect(")") + 1..];
    let f: Vec<u64> = after
        .split_whitespace()
        .skip(11)
        .take(2)
        .map(|x| x.parse().expect("num"))
        .collect();
    let all = std::fs::read_to_string("/proc/stat").expect("stat");
    let cpu: Vec<u64> = all
        .lines()
        .next()
        .expect("cpu line")
        .split_whitespace()
        .skip(1)
        .take(8)
        .map(|x| x.parse().expect("num"))
        .collect();
    let busy = cpu.iter().sum::<u64>() - cpu[3] - cpu[4];
    (f[0] + f[1], busy)
}

/// A busy child on a live synthetic machine whose package draws 10 W idle, then 40 W: each
/// interval's share is the child's CPU ticks over the machine's busy ticks (read from /proc
/// here, beside the meter's own reads), and its joules are (true package energy - 10 W idle) x
/// that share. Within 3 % (the two reads of /proc are microseconds apart, ticks are 10 ms).
#[test]
fn a_busy_child_gets_its_cpu_time_share_of_the_live_packages_active_energy() {
    let mut profile = Profile::flat(10.0, 20.0, 30.0);
    profile.knots = vec![
        (0.0, 10.0, 20.0),
        (1.5, 10.0, 20.0),
        (1.6, 40.0, 20.0),
        (1e6, 40.0, 20.0),
    ];
    let m = LiveMachine::start(profile.clone());
    let mut found = discover_with(
        &Default::default(),
        &DiscoverOptions {
            sysfs: Sysfs::new(&m.root),
            nvml: false,
            system: false,
            probe_plugs: false,
            proc_stat: "/proc/stat".into(),
        },
    );
    let child = Spinner(
        Command::new("sh")
            .args(["-c", "while :; do :; done"])
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn spinner"),
    );
    let pid = child.0.id();
    let mut ledger = Ledger::new();
    let mut meter = ServerMeter::for_pid(pid, Procfs::default(), None);
    let mut mine: Vec<(f64, (u64, u64))> = Vec::new();
    let mut idle: Option<IdleBaseline> = None;
    let t_end = 9.0;
    loop {
        let t = m.start.elapsed().as_secs_f64();
        let sample = read_all(&mut found.sensors, t);
        ledger.push(&sample);
        // The idle baseline over the first second (the package draws 10 W until 1.5 s).
        if idle.is_none()
            && let Some(first) = mine.first()
        {
            idle = ledger.idle_baseline(first.0, t);
        }
        meter.on_sample(t, &ledger, idle.as_ref());
        mine.push((t, ticks(pid)));
        if t > t_end {
            break;
        }
        // A second apart: a few ms of scheduling jitter in when a counter is read is then
        // well under 1 % of an interval's energy.
        std::thread::sleep(Duration::from_millis(1000));
    }
    let share = meter.tracker().share();
    let splits = meter.tracker().splits();
    let from = 2.0;
    let mut expected = 0.0;
    let mut got = 0.0;
    for s in splits.iter().filter(|s| s.t0 >= from) {
        let a = mine.iter().find(|x| x.0 == s.t0).expect("my read at t0");
        let b = mine.iter().find(|x| x.0 == s.t1).expect("my read at t1");
        let (dc, db) = (b.1.0 - a.1.0, b.1.1 - a.1.1);
        let sh = if db == 0 { 0.0 } else { dc as f64 / db as f64 };
        let active = profile.cpu_j(s.t0, s.t1) - 10.0 * (s.t1 - s.t0);
        expected += active * sh;
        got += s.joules();
    }
    let (c0, c1) = (mine[0].1.0, mine[mine.len() - 1].1.0);
    let (t0, t1) = (mine[0].0, mine[mine.len() - 1].0);
    let cpu_s = (c1 - c0) as f64 / llmtop::sensors::process::ticks_per_second();
    eprintln!(
        "spinner: {cpu_s:.2} CPU s over {:.2} s; share now {:?}; attributed {got:.2} J vs {expected:.2} J",
        t1 - t0,
        share.cpu_share
    );
    // It spun, so it earned joules: enough that 3 % of them is well above the counters'
    // jitter, however busy the machine (a loaded CI box gives it a sixth of a CPU).
    assert!(cpu_s > 0.0, "spinner got {cpu_s} s");
    assert!(expected > 5.0, "expected {expected} J");
    live::assert_within("spinner's attributed joules", got, expected, 0.03);
    assert!(
        share.cpu_share.is_some_and(|s| s > 0.0 && s <= 1.0),
        "{share:?}"
    );
    // The amdgpu board has no per-process figures: not split, and the line says so.
    assert!(share.covers.contains("not split"), "{}", share.covers);
    assert_eq!(share.gpu_share, None);
    assert!(share.joules >= got);
}

/// NVIDIA's per-process figures, scripted: each look returns the samples newer than
/// `since_us`, as `nvmlDeviceGetProcessUtilization` does.
struct FakeGpu {
    samples: std::sync::Arc<std::sync::Mutex<Vec<ProcessSm>>>,
    asked_since: std::sync::Arc<std::sync::Mutex<Vec<u64>>>,
}

impl GpuProcesses for FakeGpu {
    fn indices(&self) -> Vec<u32> {
        vec![0]
    }

    fn utilization(&mut self, index: u32, since_us: u64) -> Result<Vec<ProcessSm>, String> {
        assert_eq!(index, 0);
        self.asked_since.lock().expect("lock").push(since_us);
        Ok(self
            .samples
            .lock()
            .expect("lock")
            .iter()
            .filter(|s| s.timestamp_us > since_us)
            .copied()
            .collect())
    }

    fn compute_processes(&mut self, _index: u32) -> Result<Vec<ComputeProcess>, String> {
        Ok(vec![
            ComputeProcess {
                pid: 77,
                vram_bytes: Some(3 << 30),
            },
            ComputeProcess {
                pid: 88,
                vram_bytes: Some(1 << 30),
            },
        ])
    }
}

/// The whole path the dashboard calls each sample, with a GPU: a procfs fixture rewritten
/// between looks (the server gets half the busy CPU time) and scripted NVML samples (the
/// server 75 % of the SM use, another process 25 %), on a ledger whose package steps 20 -> 60 W
/// and whose NVIDIA board steps 100 -> 300 W at 2 s.
#[test]
fn server_meter_splits_an_nvidia_board_by_the_processes_sm_samples() {
    let proc = tempfile::tempdir().expect("procfs");
    let write_ticks = |k: u64| {
        std::fs::create_dir_all(proc.path().join("77")).expect("mkdir");
        std::fs::write(
            proc.path().join("77/stat"),
            crate::proc_files::pid_stat(77, "llama-server", 1, [40 * k, 10 * k, 0, 0]),
        )
        .expect("pid stat");
        std::fs::write(
            proc.path().join("stat"),
            crate::proc_files::proc_stat(&format!(
                "cpu  {} 0 {} {} 0 0 0 0 0 0",
                80 * k,
                20 * k,
                100 * k
            )),
        )
        .expect("stat");
    };
    let samples = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let asked = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let gpu = FakeGpu {
        samples: samples.clone(),
        asked_since: asked.clone(),
    };
    let mut meter = ServerMeter::for_pid(77, Procfs::new(proc.path()), Some(Box::new(gpu)));
    let mut ledger = Ledger::new();
    // Measured before the server got busy (the books' or the session's idle window).
    let idle = IdleBaseline {
        watts: 120.0,
        basis: TotalBasis::Components,
        window_s: 10.0,
        channels: [
            ("rapl:package-0:energy".to_string(), 20.0),
            ("nvml:0:energy".to_string(), 100.0),
        ]
        .into(),
    };
    let mut last = None;
    for i in 0..=60 {
        let t = f64::from(i) * 0.1;
        ledger.push(&Sample {
            t,
            readings: vec![
                reading(
                    "rapl:package-0:energy",
                    Source::Rapl,
                    Covers::CpuPackage,
                    Quantity::Energy,
                    Method::Counter,
                    step_j(t, 20.0, 60.0),
                ),
                reading(
                    "nvml:0:energy",
                    Source::Nvml,
                    Covers::GpuBoard,
                    Quantity::Energy,
                    Method::Counter,
                    step_j(t, 100.0, 300.0),
                ),
            ],
        });
        let k = u64::from(i as u32);
        write_ticks(k);
        {
            let mut s = samples.lock().expect("lock");
            let us = 1_000_000 + k * 100_000;
            s.push(ProcessSm {
                pid: 77,
                timestamp_us: us,
                sm_pct: 60,
                mem_pct: 10,
            });
            s.push(ProcessSm {
                pid: 88,
                timestamp_us: us,
                sm_pct: 20,
                mem_pct: 5,
            });
        }
        last = Some(meter.on_sample(t, &ledger, Some(&idle)));
    }
    let s = last.expect("share");
    let close = |a: f64, b: f64| (a - b).abs() <= 1e-6 * b.abs().max(1.0);
    // CPU (60-20 W) x 4 s x 1/2 = 80 J; GPU (300-100 W) x 4 s x 3/4 = 600 J.
    assert!(close(s.joules, 680.0), "{s:?}");
    assert_eq!((s.cpu_share, s.gpu_share), (Some(0.5), Some(0.75)));
    assert_eq!(s.vram_bytes, Some(3 << 30));
    assert!(
        s.covers.starts_with(
            "CPU package rapl:package-0:energy and GPU board nvml:0:energy above idle"
        ),
        "{}",
        s.covers
    );
    // Each look asked only for samples newer than the last one it saw.
    let asked = asked.lock().expect("lock");
    assert_eq!(asked[0], 0);
    assert_eq!(asked[5], 1_000_000 + 4 * 100_000);
    drop(asked);
    // The process gone: the meter keeps its figures and says nothing new, no panic.
    std::fs::remove_dir_all(proc.path().join("77")).expect("rm");
    let after = meter.on_sample(6.1, &ledger, Some(&idle));
    assert!(after.joules >= s.joules);
}

/// A real server process (`llmtop proxy`) listening on `addr`, killed and reaped on drop.
fn serve_on(addr: &str, data: &std::path::Path) -> Spinner {
    let cfg = data.join("config.toml");
    std::fs::write(&cfg, "[sensors]\nidle_window_s = 0.0\n").expect("config");
    let child = Command::new(env!("CARGO_BIN_EXE_llmtop"))
        .arg("--config")
        .arg(&cfg)
        .args([
            "proxy",
            "--listen",
            addr,
            "--upstream",
            "http://127.0.0.1:9",
            "--no-log",
            "--sysfs-root",
            "tests/fixtures/sysfs/laptop",
        ])
        .env("LLMTOP_DATA_DIR", data)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn server");
    let end = std::time::Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(addr).is_err() {
        assert!(
            std::time::Instant::now() < end,
            "the server never listened on {addr}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    Spinner(child)
}

/// A server that restarts under a new PID on the same port is found again at the first
/// sample after it listens, and its share goes on (the interval across the switch with no CPU
/// share: the two processes' ticks do not subtract).
#[test]
fn a_server_restarted_under_a_new_pid_is_found_again_within_one_sample() {
    let data = tempfile::tempdir().expect("tempdir");
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .to_string();
    let first = serve_on(&addr, data.path());
    let url = format!("http://{addr}");
    let mut meter = ServerMeter::for_url_with(&url, Procfs::default(), None).expect("found");
    assert_eq!(meter.pid(), first.0.id());
    let mut ledger = Ledger::new();
    let mut t = 0.0;
    let mut step = |meter: &mut ServerMeter, ledger: &mut Ledger| {
        t += 0.25;
        ledger.push(&Sample {
            t,
            readings: vec![reading(
                "plug:x:energy",
                Source::Plug,
                Covers::Wall,
                Quantity::Energy,
                Method::Counter,
                100.0 * t,
            )],
        });
        (t, meter.on_sample(t, ledger, None))
    };
    for _ in 0..4 {
        let (_, s) = step(&mut meter, &mut ledger);
        assert_eq!(s.pid, first.0.id());
    }
    let old = first.0.id();
    drop(first);
    let second = serve_on(&addr, data.path());
    assert_ne!(second.0.id(), old);
    // The first sample after the new process listens finds it.
    let (t_switch, s) = step(&mut meter, &mut ledger);
    assert_eq!(meter.pid(), second.0.id());
    assert_eq!(s.pid, second.0.id());
    assert_eq!(meter.restarts, 1);
    assert!(meter.name.contains("llmtop"), "{}", meter.name);
    for _ in 0..4 {
        step(&mut meter, &mut ledger);
    }
    let share = meter.tracker().share();
    assert_eq!(share.pid, second.0.id());
    assert!(share.until.is_some_and(|u| u > t_switch), "{share:?}");
    assert!(
        share.cpu_share.is_some(),
        "the new process's CPU share is read: {share:?}"
    );
}
