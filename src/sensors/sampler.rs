//! The sampler: one thread reads the local sensors at a fixed rate; each slow/remote sensor
//! (smart plug) gets its own thread at its own rate, so a dead plug never delays the rest.
//! Every tick becomes an owned [`Sample`] on a tokio unbounded channel (sending works from a
//! plain thread; the dashboard `select!`s on the receiver).
//!
//! Timestamps are seconds since the sampler started, from one monotonic clock shared by all
//! threads. A sensor that fails, panics or stops returning a row yields that row with
//! `value: None` ("n/a") while the others carry on. Every reading passes the plausibility
//! limits ([`Limits::screen`]) here, before anything else sees it.

use super::plausible::Limits;
use super::{Reading, Sample, Sensor};
use std::collections::BTreeMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tokio::sync::mpsc::UnboundedSender;

/// Keeps one sensor's rows stable: rows it stops returning come back as n/a.
struct Tracked {
    sensor: Box<dyn Sensor>,
    known: BTreeMap<String, Reading>,
    /// It panicked once: never called again (a panic every tick would flood the panic hook).
    dead: bool,
}

impl Tracked {
    fn new(sensor: Box<dyn Sensor>) -> Self {
        Self {
            sensor,
            known: BTreeMap::new(),
            dead: false,
        }
    }

    fn read(&mut self, now: f64, limits: &Limits, out: &mut Vec<Reading>) {
        let rows = if self.dead {
            Vec::new()
        } else {
            catch_unwind(AssertUnwindSafe(|| self.sensor.read(now))).unwrap_or_else(|_| {
                self.dead = true;
                Vec::new()
            })
        };
        let mut seen = std::collections::HashSet::with_capacity(rows.len());
        for r in rows {
            let r = limits.screen(r);
            seen.insert(r.id.clone());
            if !self.known.contains_key(&r.id) {
                self.known.insert(
                    r.id.clone(),
                    Reading {
                        value: None,
                        rejected: None,
                        ..r.clone()
                    },
                );
            }
            out.push(r);
        }
        for (id, template) in &self.known {
            if !seen.contains(id) {
                out.push(template.clone());
            }
        }
    }
}

/// Read every sensor once at `now` with the default plausibility limits.
pub fn read_all(sensors: &mut [Box<dyn Sensor>], now: f64) -> Sample {
    read_all_checked(sensors, now, &Limits::default())
}

/// Read every sensor once at `now` (the same path the sampler thread takes each tick),
/// implausible values rejected by `limits`.
pub fn read_all_checked(sensors: &mut [Box<dyn Sensor>], now: f64, limits: &Limits) -> Sample {
    let mut readings = Vec::new();
    for s in sensors.iter_mut() {
        let rows = catch_unwind(AssertUnwindSafe(|| s.read(now))).unwrap_or_default();
        readings.extend(rows.into_iter().map(|r| limits.screen(r)));
    }
    Sample { t: now, readings }
}

type StopFlag = Arc<(Mutex<bool>, Condvar)>;

/// Sensors read together on one thread at one rate, and the thread's name.
struct Group {
    rate_hz: f64,
    sensors: Vec<Box<dyn Sensor>>,
    name: String,
}

/// Running sampler threads; [`SamplerHandle::stop`] (or drop) ends and joins them.
pub struct SamplerHandle {
    stop: StopFlag,
    threads: Vec<JoinHandle<()>>,
    start: Instant,
}

pub struct Sampler;

impl Sampler {
    /// [`Sampler::spawn_checked`] with the default plausibility limits.
    pub fn spawn(
        sensors: Vec<Box<dyn Sensor>>,
        rate_hz: f64,
        tx: UnboundedSender<Sample>,
    ) -> SamplerHandle {
        Self::spawn_checked(sensors, rate_hz, Limits::default(), tx)
    }

    /// Start sampling `sensors`: those without a [`Sensor::poll_rate_hz`] together at
    /// `rate_hz`, the others each on their own thread; every reading screened by `limits`.
    /// Threads end when stopped or when the receiver is dropped.
    pub fn spawn_checked(
        sensors: Vec<Box<dyn Sensor>>,
        rate_hz: f64,
        limits: Limits,
        tx: UnboundedSender<Sample>,
    ) -> SamplerHandle {
        let start = Instant::now();
        let stop: StopFlag = Arc::new((Mutex::new(false), Condvar::new()));
        let (remote, local): (Vec<_>, Vec<_>) = sensors
            .into_iter()
            .partition(|s| s.poll_rate_hz().is_some());
        let mut threads = Vec::new();
        let mut groups = Vec::new();
        if !local.is_empty() {
            groups.push(Group {
                rate_hz,
                sensors: local,
                name: "llmtop-sensors".into(),
            });
        }
        for s in remote {
            groups.push(Group {
                rate_hz: s.poll_rate_hz().unwrap_or(1.0),
                name: format!("llmtop-{}", s.name()),
                sensors: vec![s],
            });
        }
        for Group {
            rate_hz: rate,
            sensors: group,
            name,
        } in groups
        {
            let period = Duration::from_secs_f64(1.0 / sane_rate(rate));
            let tx = tx.clone();
            let stop = Arc::clone(&stop);
            let spawned = std::thread::Builder::new()
                .name(name.chars().take(15).collect())
                .spawn(move || run(group, period, limits, start, tx, stop));
            if let Ok(h) = spawned {
                threads.push(h);
            }
        }
        SamplerHandle {
            stop,
            threads,
            start,
        }
    }
}

fn sane_rate(hz: f64) -> f64 {
    if hz.is_finite() && hz > 0.0 {
        hz.clamp(0.01, 1000.0)
    } else {
        4.0
    }
}

fn run(
    sensors: Vec<Box<dyn Sensor>>,
    period: Duration,
    limits: Limits,
    start: Instant,
    tx: UnboundedSender<Sample>,
    stop: StopFlag,
) {
    let mut tracked: Vec<Tracked> = sensors.into_iter().map(Tracked::new).collect();
    let mut next = Instant::now();
    loop {
        let now = start.elapsed().as_secs_f64();
        let mut readings = Vec::new();
        for t in &mut tracked {
            t.read(now, &limits, &mut readings);
        }
        if tx.send(Sample { t: now, readings }).is_err() {
            return; // nobody listens any more
        }
        // Fixed rate; after a slow tick, skip the missed ones rather than bursting.
        next += period;
        let now_i = Instant::now();
        if next < now_i {
            next = now_i;
        }
        let (lock, cvar) = &*stop;
        let Ok(mut stopped) = lock.lock() else { return };
        while !*stopped {
            let left = next.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            match cvar.wait_timeout(stopped, left) {
                Ok((g, _)) => stopped = g,
                Err(_) => return,
            }
        }
        if *stopped {
            return;
        }
    }
}

impl SamplerHandle {
    /// The sampler clock's origin: `Sample::t` is seconds since this instant.
    pub fn start(&self) -> Instant {
        self.start
    }

    /// Seconds on the sampler clock now (e.g. to mark the start of a reply).
    pub fn now(&self) -> f64 {
        self.start.elapsed().as_secs_f64()
    }

    /// Stop and join every thread. A plug in the middle of a request finishes it first (at
    /// most its timeout).
    pub fn stop(mut self) {
        self.stop_and_join();
    }

    fn stop_and_join(&mut self) {
        let (lock, cvar) = &*self.stop;
        if let Ok(mut s) = lock.lock() {
            *s = true;
        }
        cvar.notify_all();
        for h in self.threads.drain(..) {
            let _ = h.join();
        }
    }
}

impl Drop for SamplerHandle {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}
