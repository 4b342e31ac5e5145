//! The sampler thread with scripted sensors: monotonic timestamps, failing/vanishing/panicking
//! sensors become n/a while the rest continue, stop joins, a dropped receiver ends it.

use llmtop::sensors::{Covers, Method, Quantity, Reading, Sample, Sampler, Sensor, Source};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

fn row(id: &str, value: Option<f64>) -> Reading {
    Reading {
        id: id.into(),
        device: "fake".into(),
        label: id.into(),
        quantity: Quantity::Temperature,
        value,
        limit: None,
        source: Source::Hwmon,
        covers: Covers::Other,
        method: Method::Measured,
        rejected: None,
        via: None,
    }
}

/// Healthy: one row, value = number of reads so far.
struct Steady(Arc<AtomicUsize>);
impl Sensor for Steady {
    fn name(&self) -> String {
        "steady".into()
    }
    fn read(&mut self, _now: f64) -> Vec<Reading> {
        let n = self.0.fetch_add(1, Ordering::SeqCst);
        vec![row("steady:a", Some(n as f64))]
    }
}

/// Two rows for its first two reads, then it vanishes (returns nothing).
struct Vanishing(usize);
impl Sensor for Vanishing {
    fn name(&self) -> String {
        "vanishing".into()
    }
    fn read(&mut self, _now: f64) -> Vec<Reading> {
        self.0 += 1;
        if self.0 <= 2 {
            vec![row("van:x", Some(1.0)), row("van:y", Some(2.0))]
        } else {
            Vec::new()
        }
    }
}

/// Reads fine once, then panics on every read.
struct Panicky(usize);
impl Sensor for Panicky {
    fn name(&self) -> String {
        "panicky".into()
    }
    fn read(&mut self, _now: f64) -> Vec<Reading> {
        self.0 += 1;
        assert!(
            self.0 == 1,
            "scripted sensor failure (expected in this test)"
        );
        vec![row("panicky:p", Some(5.0))]
    }
}

fn collect(rx: &mut tokio::sync::mpsc::UnboundedReceiver<Sample>) -> Vec<Sample> {
    let mut out = Vec::new();
    while let Ok(s) = rx.try_recv() {
        out.push(s);
    }
    out
}

fn value(s: &Sample, id: &str) -> Option<Option<f64>> {
    s.readings.iter().find(|r| r.id == id).map(|r| r.value)
}

#[test]
fn failing_and_vanishing_sensors_become_na_while_the_rest_go_on() {
    let reads = Arc::new(AtomicUsize::new(0));
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let sensors: Vec<Box<dyn Sensor>> = vec![
        Box::new(Vanishing(0)),
        Box::new(Panicky(0)),
        Box::new(Steady(Arc::clone(&reads))),
    ];
    let h = Sampler::spawn(sensors, 50.0, tx);
    std::thread::sleep(Duration::from_millis(1000));
    h.stop();
    let samples = collect(&mut rx);
    assert!(samples.len() >= 5, "{} samples", samples.len());
    // Timestamps: monotonic, from the sampler's start, 20 ms apart at 50 Hz.
    assert!(
        samples[0].t >= 0.0 && samples[0].t < 0.1,
        "{}",
        samples[0].t
    );
    let mut gaps: Vec<f64> = samples.windows(2).map(|w| w[1].t - w[0].t).collect();
    assert!(gaps.iter().all(|&g| g > 0.0), "not monotonic: {gaps:?}");
    // Median gap at 50 Hz (the one tick where the panic hook ran may be slow).
    gaps.sort_by(f64::total_cmp);
    let median = gaps[gaps.len() / 2];
    assert!((0.015..0.05).contains(&median), "median gap {median}");
    let first = &samples[0];
    assert_eq!(value(first, "van:x"), Some(Some(1.0)));
    assert_eq!(value(first, "panicky:p"), Some(Some(5.0)));
    let last = samples.last().expect("last");
    // Same rows throughout; the broken ones are n/a.
    assert_eq!(value(last, "van:x"), Some(None));
    assert_eq!(value(last, "van:y"), Some(None));
    assert_eq!(value(last, "panicky:p"), Some(None));
    // The healthy sensor kept counting: one read per sample.
    assert_eq!(
        value(last, "steady:a"),
        Some(Some((samples.len() - 1) as f64))
    );
    assert_eq!(reads.load(Ordering::SeqCst), samples.len());
    assert!(samples.iter().all(|s| s.readings.len() == 4));
}

#[test]
fn stop_joins_and_closes_the_channel() {
    let reads = Arc::new(AtomicUsize::new(0));
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let h = Sampler::spawn(vec![Box::new(Steady(Arc::clone(&reads)))], 4.0, tx);
    let t = Instant::now();
    h.stop();
    // Stopped promptly, not after a 250 ms sleep.
    assert!(
        t.elapsed() < Duration::from_millis(200),
        "{:?}",
        t.elapsed()
    );
    let n = reads.load(Ordering::SeqCst);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(reads.load(Ordering::SeqCst), n, "no reads after stop");
    // Every sender is gone: the receiver drains and then ends.
    let mut got = 0;
    while let Some(_s) = rx.blocking_recv() {
        got += 1;
    }
    assert_eq!(got, n);
}

#[test]
fn a_dropped_receiver_ends_the_thread() {
    let reads = Arc::new(AtomicUsize::new(0));
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let h = Sampler::spawn(vec![Box::new(Steady(Arc::clone(&reads)))], 100.0, tx);
    std::thread::sleep(Duration::from_millis(50));
    drop(rx);
    std::thread::sleep(Duration::from_millis(100));
    let n = reads.load(Ordering::SeqCst);
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(
        reads.load(Ordering::SeqCst),
        n,
        "still reading with nobody listening"
    );
    h.stop();
}
