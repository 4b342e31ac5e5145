//! `llmtop sensors`: every power, temperature and fan source this machine has, with where each
//! figure comes from, and for what is missing, why and the fix. The first thing to run on a
//! new box.

use crate::cli::SensorsArgs;
use crate::config::{Config, SensorsSection};
use crate::sensors::plausible::Limits;
use crate::sensors::process::Procfs;
use crate::sensors::sampler::read_all_checked;
use crate::sensors::{
    Covers, Discovery, Meter, Method, Quantity, Reading, Sample, Source, SourceState, SourceStatus,
    discover,
};
use crate::term::event::{self, EventSource, Input, ScreenEvent};
use crate::term::screen::{Screen, in_terminal, run_screen};
use crate::util::sanitize;
use anyhow::Context;
use crossterm::event::{KeyCode, KeyModifiers};
use ratatui::Frame;
use ratatui::widgets::Paragraph;
use serde::Serialize;
use std::fmt::Write as _;
use std::io::Write as _;
use std::time::{Duration, Instant};

/// Counters need two reads to give watts: this far apart.
const RATE_GAP: Duration = Duration::from_millis(250);

pub fn run(args: &SensorsArgs, cfg: &Config) -> anyhow::Result<()> {
    let mut section = args
        .sensors
        .apply(&cfg.raw.sensors)
        .map_err(anyhow::Error::msg)?;
    if let Some(hz) = args.rate_hz {
        if !(hz.is_finite() && hz > 0.0 && hz <= 1000.0) {
            anyhow::bail!("--rate-hz {hz}: must be between 0 and 1000");
        }
        section.rate_hz = hz;
    }
    if let Some(secs) = args.bench_seconds {
        return bench(&section, secs);
    }
    if args.watch {
        return watch(&section);
    }
    // The memory's bandwidth before the sensors start (the probe keeps every CPU busy).
    let memory = memory_of(&section);
    let mut d = discover(&section);
    let sample = two_reads(&mut d, &Limits::from(&section));
    let mut out = std::io::stdout().lock();
    if args.json {
        let report = JsonReport {
            sysfs_root: section.sysfs_root.display().to_string(),
            readings: &sample.readings,
            statuses: &d.statuses,
            memory: &memory,
        };
        serde_json::to_writer_pretty(&mut out, &report)?;
        writeln!(out)?;
    } else {
        out.write_all(render(&section, &sample.readings, &d.statuses).as_bytes())?;
        out.write_all(render_memory(&memory).as_bytes())?;
    }
    Ok(())
}

/// The memory bandwidth of the machine `section` reads (the probe's figure is cached for the
/// boot); not for a captured tree, which describes another machine (or none). `sensors` and
/// `doctor` show it.
pub fn memory_of(section: &SensorsSection) -> crate::sensors::bandwidth::Ceilings {
    if section.sysfs_root == std::path::Path::new("/sys") {
        crate::sensors::bandwidth::ceilings(&crate::config::data_dir())
    } else {
        crate::sensors::bandwidth::Ceilings {
            cpu_missing: Some(
                "--sysfs-root reads a captured tree; run without it to measure this machine".into(),
            ),
            ..Default::default()
        }
    }
}

#[derive(Serialize)]
struct JsonReport<'a> {
    sysfs_root: String,
    readings: &'a [Reading],
    statuses: &'a [SourceStatus],
    /// Memory bandwidth: the decode roofline's ceiling.
    memory: &'a crate::sensors::bandwidth::Ceilings,
}

/// The memory section of the listing.
pub fn render_memory(m: &crate::sensors::bandwidth::Ceilings) -> String {
    let mut out = String::from("\nMemory bandwidth (the ceiling generation is judged against):\n");
    for line in m.lines() {
        let _ = writeln!(out, "  {}", sanitize::terminal(&line));
    }
    out
}

/// Read twice, `RATE_GAP` apart, so counter-derived watts have a value; implausible values
/// come back rejected, with the reason.
fn two_reads(d: &mut Discovery, limits: &Limits) -> Sample {
    let start = Instant::now();
    let _ = read_all_checked(&mut d.sensors, 0.0, limits);
    std::thread::sleep(RATE_GAP);
    read_all_checked(&mut d.sensors, start.elapsed().as_secs_f64(), limits)
}

fn covers_name(c: Covers) -> &'static str {
    match c {
        Covers::GpuBoard => "GPU board",
        Covers::CpuPackage => "CPU package",
        Covers::Dram => "DRAM",
        Covers::Wall => "whole system at the wall",
        Covers::Battery => "whole system (battery)",
        Covers::Platform => "platform (psys)",
        Covers::Other => "",
    }
}

/// Value with its unit; "rejected" when implausible, "n/a" when unread.
pub fn format_value(r: &Reading) -> String {
    if r.rejected.is_some() {
        return "rejected".into();
    }
    let Some(v) = r.value else {
        return "n/a".into();
    };
    match r.quantity {
        Quantity::Power => format!("{v:.1} W"),
        Quantity::Energy => {
            if v >= 1e5 {
                format!("{:.1} kJ", v / 1e3)
            } else {
                format!("{v:.1} J")
            }
        }
        Quantity::Temperature => format!("{v:.1} °C"),
        Quantity::FanRpm => format!("{v:.0} RPM"),
        Quantity::FanPercent => format!("{v:.0} % (fan)"),
        Quantity::Utilization => format!("{v:.1} %"),
        Quantity::MemoryUsed | Quantity::MemoryTotal => {
            format!("{:.2} GiB", v / (1024.0 * 1024.0 * 1024.0))
        }
        Quantity::Clock => format!("{v:.0} MHz"),
        Quantity::ThrottleCount => format!("{v:.0} events"),
        Quantity::RunnableThreads => format!("{v:.0} threads"),
        Quantity::ThrottleReasons => {
            let names = crate::sensors::nvml::reason_names(v as u64);
            if names.is_empty() {
                "none".into()
            } else {
                names.join(", ")
            }
        }
    }
}

/// Watts computed from two reads of an energy counter (RAPL, hwmon energy*_input).
pub fn is_counter_rate(r: &Reading) -> bool {
    r.id.ends_with(":power")
        && (r.source == Source::Rapl || (r.source == Source::Hwmon && r.id.contains(":energy")))
}

fn provenance(r: &Reading) -> String {
    let how = match (r.method, r.quantity) {
        (Method::Counter, _) => "cumulative counter",
        (Method::Estimated, _) => "ESTIMATED from utilisation",
        (Method::Measured, Quantity::Power) if is_counter_rate(r) => "rate of the counter",
        (Method::Measured, _) => "measured",
    };
    if let Some(why) = &r.rejected {
        return format!("REJECTED: {}", sanitize::terminal(why));
    }
    let covers = covers_name(r.covers);
    let mut s = how.to_string();
    if !covers.is_empty() {
        s = format!("{covers}, {s}");
    }
    // The call or file it came from (or, for n/a, what the device said instead).
    if let Some(via) = &r.via {
        s = format!("{s}, {}", sanitize::terminal(via));
    }
    let limit = match (r.limit, r.quantity) {
        (Some(l), Quantity::Temperature) => format!("; limit {l:.0} °C"),
        (Some(l), Quantity::Power) => format!("; limit {l:.0} W"),
        (Some(l), Quantity::Clock) => match r.value {
            Some(v) if l > 0.0 => format!("; max {l:.0} MHz ({:.0} %)", v / l * 100.0),
            _ => format!("; max {l:.0} MHz"),
        },
        _ => String::new(),
    };
    s + &limit
}

/// The plain-text listing.
pub fn render(cfg: &SensorsSection, readings: &[Reading], statuses: &[SourceStatus]) -> String {
    let mut out = String::new();
    let root = cfg.sysfs_root.display().to_string();
    let _ = writeln!(
        out,
        "llmtop sensors (sysfs root {})\n",
        sanitize::terminal(&root)
    );
    let rows: Vec<[String; 5]> = readings
        .iter()
        .map(|r| {
            [
                r.source.name().to_string(),
                sanitize::terminal(&r.device).into_owned(),
                sanitize::terminal(&r.label).into_owned(),
                format_value(r),
                provenance(r),
            ]
        })
        .collect();
    if rows.is_empty() {
        let _ = writeln!(out, "No readable sources.");
    } else {
        let head = ["SOURCE", "DEVICE", "LABEL", "VALUE", "PROVENANCE"];
        let mut width = head.map(|h| h.chars().count());
        for r in &rows {
            for (w, c) in width.iter_mut().zip(r.iter()) {
                *w = (*w).max(c.chars().count());
            }
        }
        let line = |cells: [&str; 5]| {
            let mut l = String::new();
            for (i, c) in cells.iter().enumerate() {
                if i == 3 {
                    let _ = write!(l, "{:>w$}  ", c, w = width[i]);
                } else if i == 4 {
                    l.push_str(c);
                } else {
                    let _ = write!(l, "{:<w$}  ", c, w = width[i]);
                }
            }
            l.trim_end().to_string()
        };
        let _ = writeln!(out, "{}", line(head));
        for r in &rows {
            let _ = writeln!(out, "{}", line([&r[0], &r[1], &r[2], &r[3], &r[4]]));
        }
    }
    let found: Vec<&SourceStatus> = statuses
        .iter()
        .filter(|s| s.state == SourceState::Found)
        .collect();
    if !found.is_empty() {
        let _ = writeln!(out, "\nFound:");
        for s in found {
            let _ = writeln!(
                out,
                "  {:<8} {}: {}",
                s.source.name(),
                sanitize::terminal(&s.device),
                sanitize::terminal(&s.detail)
            );
            if let Some(fix) = &s.fix {
                let _ = writeln!(out, "           tip: {}", sanitize::terminal(fix));
            }
        }
    }
    let problems: Vec<&SourceStatus> = statuses
        .iter()
        .filter(|s| s.state != SourceState::Found)
        .collect();
    if !problems.is_empty() {
        let _ = writeln!(out, "\nNot available:");
        for s in problems {
            let state = match s.state {
                SourceState::Missing => "missing",
                SourceState::PermissionDenied => "permission denied",
                SourceState::Unreadable => "unreadable",
                SourceState::Found => "found",
            };
            let _ = writeln!(
                out,
                "  {:<8} {} ({state}): {}",
                s.source.name(),
                sanitize::terminal(&s.device),
                sanitize::terminal(&s.detail)
            );
            if let Some(fix) = &s.fix {
                let _ = writeln!(out, "           fix: {}", sanitize::terminal(fix));
            }
        }
    }
    out
}

/// The fastest `--watch` refreshes: four times a second.
const WATCH_MAX_HZ: f64 = 4.0;

/// What the sensors screen reacts to.
#[derive(Debug)]
enum WatchEvent {
    Input(Input),
    Sample(Sample),
    /// Unused: the samples pace the screen, and the event source is given no tick.
    Tick,
    Terminate,
}

impl ScreenEvent for WatchEvent {
    fn input(i: Input) -> Self {
        WatchEvent::Input(i)
    }

    fn tick(_now: f64) -> Self {
        WatchEvent::Tick
    }

    fn terminate(_signal: &'static str) -> Self {
        WatchEvent::Terminate
    }
}

/// `sensors --watch`: the listing, redrawn on every local sample, on the dashboard's event
/// loop and terminal guard.
struct SensorsScreen<'a> {
    cfg: &'a SensorsSection,
    statuses: Vec<SourceStatus>,
    /// The latest readings of the local sensors, and of each plug (they sample on their own
    /// threads, at their own rates).
    local: Vec<Reading>,
    plugs: Vec<Reading>,
    rate_hz: f64,
    dirty: bool,
}

impl Screen for SensorsScreen<'_> {
    type Event = WatchEvent;

    fn update(&mut self, ev: WatchEvent) -> bool {
        match ev {
            WatchEvent::Input(Input::Key(k)) => {
                let ctrl_c =
                    k.code == KeyCode::Char('c') && k.modifiers.contains(KeyModifiers::CONTROL);
                if ctrl_c || matches!(k.code, KeyCode::Char('q') | KeyCode::Esc) {
                    return true;
                }
            }
            WatchEvent::Input(Input::Resize { .. }) => self.dirty = true,
            WatchEvent::Input(Input::Paste(_)) | WatchEvent::Tick => {}
            WatchEvent::Sample(s) => {
                let plug = |r: &Reading| r.source == Source::Plug;
                if !s.readings.is_empty() && s.readings.iter().all(plug) {
                    // One plug's sample: replace that plug's rows.
                    let ids: Vec<&str> = s.readings.iter().map(|r| r.device.as_str()).collect();
                    self.plugs.retain(|r| !ids.contains(&r.device.as_str()));
                    self.plugs.extend(s.readings);
                } else {
                    self.local = s.readings;
                }
                self.dirty = true;
            }
            WatchEvent::Terminate => return true,
        }
        false
    }

    fn dirty(&self) -> bool {
        self.dirty
    }

    fn drawn(&mut self) {
        self.dirty = false;
    }

    fn draw(&self, f: &mut Frame) {
        let mut rows = self.local.clone();
        rows.extend(self.plugs.iter().cloned());
        let mut text = render(self.cfg, &rows, &self.statuses);
        let _ = write!(
            text,
            "\n(every {:.2} s; q or Ctrl-C to quit)",
            1.0 / self.rate_hz
        );
        f.render_widget(Paragraph::new(text), f.area());
    }
}

/// Refresh the listing like `watch llmtop sensors`, until q, Ctrl-C, a signal or the terminal
/// closing; the terminal is put back on the way out.
fn watch(cfg: &SensorsSection) -> anyhow::Result<()> {
    let rate_hz = cfg.rate_hz.min(WATCH_MAX_HZ);
    let d = discover(cfg);
    let meter = Meter::checked(d.sensors, d.statuses, rate_hz, Limits::from(cfg));
    let mut screen = SensorsScreen {
        cfg,
        statuses: meter.statuses.clone(),
        local: Vec::new(),
        plugs: Vec::new(),
        rate_hz: meter.rate_hz,
        dirty: true,
    };
    let start = meter.handle.start();
    let (sampler, samples) = meter.into_parts();
    let runtime =
        crate::util::runtime::current_thread().context("cannot start the async runtime")?;
    let log = crate::util::paths::log_file();
    let result = runtime.block_on(in_terminal(&log, async |terminal| {
        let mut events =
            EventSource::new(start, None).with_feed(event::channel(samples, WatchEvent::Sample));
        events
            .listen_for_signals()
            .context("cannot catch SIGTERM/SIGHUP")?;
        run_screen(terminal, &mut events, &mut screen).await
    }));
    sampler.stop();
    result.map(|_| ())
}

/// CPU seconds of this process's threads named `thread_name` (all with `None`).
fn thread_cpu_seconds(thread_name: Option<&str>) -> Option<f64> {
    Procfs::default().thread_cpu_seconds(None, thread_name).ok()
}

/// `--bench-seconds N`: discovery time, then the sampler's CPU time over N seconds.
fn bench(cfg: &SensorsSection, secs: f64) -> anyhow::Result<()> {
    if !(secs.is_finite() && secs >= 0.0) {
        anyhow::bail!("--bench-seconds {secs}: must be a number of seconds >= 0");
    }
    let t = Instant::now();
    let d = discover(cfg);
    let discovery_s = t.elapsed().as_secs_f64();
    let names: Vec<String> = d
        .sensors
        .iter()
        .map(|s| sanitize::terminal(&s.name()).into_owned())
        .collect();
    println!(
        "discovery: {:.1} ms, {} sensor(s): {}",
        discovery_s * 1e3,
        names.len(),
        names.join(" ")
    );
    if secs == 0.0 {
        return Ok(());
    }
    let cpu0 = thread_cpu_seconds(None).unwrap_or(0.0);
    let wall = Instant::now();
    let meter = Meter::checked(d.sensors, d.statuses, cfg.rate_hz, Limits::from(cfg));
    let (handle, mut rx) = meter.into_parts();
    let mut samples = 0u64;
    let mut readings = 0u64;
    let deadline = wall + Duration::from_secs_f64(secs);
    let rt = crate::util::runtime::current_thread()?;
    rt.block_on(async {
        while let Ok(Some(s)) = tokio::time::timeout_at(deadline.into(), rx.recv()).await {
            samples += 1;
            readings += s.readings.len() as u64;
        }
    });
    // The sampler thread's own CPU time, read while it still exists.
    let sampler_cpu = thread_cpu_seconds(Some("llmtop-sensors")).unwrap_or(f64::NAN);
    let process_cpu = thread_cpu_seconds(None).unwrap_or(f64::NAN) - cpu0;
    let elapsed = wall.elapsed().as_secs_f64();
    handle.stop();
    println!(
        "sampled {samples} ticks ({readings} readings) at {} Hz over {elapsed:.1} s",
        cfg.rate_hz
    );
    println!(
        "sampler thread CPU: {sampler_cpu:.2} s = {:.3} % of one core",
        100.0 * sampler_cpu / elapsed
    );
    println!(
        "whole process CPU (sampler + receiver + runtime): {process_cpu:.2} s = {:.3} % of one core",
        100.0 * process_cpu / elapsed
    );
    Ok(())
}
