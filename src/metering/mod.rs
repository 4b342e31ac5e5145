//! The metering runtime: what every mode of llmtop runs (the dashboard, `--proxy`, bench, serve,
//! proxy, watch, share, `sensors --watch`). Samples from the meter go into the one ledger, then
//! to the mode's subscribers ([`Subscriber`]: the session, the lifetime tally, the metrics
//! endpoint, the proxy's books, the server's share, a watch) in [`Metering::fold`]; when the run
//! ends ([`Ended`]: a terminating signal, a subscriber that is done, the meter gone, or the
//! mode's own end such as a quit key or a closed terminal) [`Metering::finish`] waits, bounded,
//! until the ledger covers what the subscribers still hold, and flushes them. The modes differ
//! only in their subscribers and their screen.
//!
//! Where each decision lives: the per-sample fold and the drain here, the signal set and what
//! a second signal does in [`signals`], the tokio runtime in `util::runtime`.

pub mod signals;

use crate::accounting::ledger::Ledger;
use crate::accounting::pricing::Tariff;
use crate::accounting::subscriber::Subscriber;
use crate::sensors::{Meter, Sample};
use signals::Signals;
use std::time::Duration;
use tokio::sync::mpsc::UnboundedReceiver;

/// The longest the drain waits for the ledger to cover what subscribers hold (a plug polled
/// once a second settles within two).
pub const DRAIN_LIMIT: Duration = Duration::from_secs(3);

/// What wakes a run or its drain.
#[derive(Debug)]
pub enum Wake {
    Sample(Sample),
    /// A terminating signal, by name.
    Signal(&'static str),
    /// No more samples will come.
    Closed,
}

/// Where a run's samples and signals come from: [`Headless`] for the modes without a screen;
/// the dashboard's event source for those with one.
pub trait Feed {
    fn next(&mut self) -> impl Future<Output = Wake>;
}

/// Why a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    Signal(&'static str),
    /// A subscriber has what it came for.
    Done,
    /// The meter stopped sending samples.
    Closed,
}

/// How the drain ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drained {
    /// No subscriber holds anything the ledger could still cover.
    Covered,
    /// [`DRAIN_LIMIT`] (or the given limit) passed first.
    TimedOut,
    /// A signal cut it short.
    Cut(&'static str),
    /// The samples stopped.
    Closed,
}

/// The ledger every figure of a run comes from, and the fold that feeds it.
pub struct Metering {
    ledger: Ledger,
}

impl Metering {
    pub fn new(ledger: Ledger) -> Self {
        Self { ledger }
    }

    /// For a running meter: priced from its clock, waiting at start for a wall plug that
    /// discovery found.
    pub fn for_meter(meter: &Meter, tariff: Tariff) -> Self {
        Self::new(crate::accounting::ledger_for(meter, tariff))
    }

    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    /// The per-sample fold, the only one: the ledger takes the sample in, then every
    /// subscriber sees it with the ledger as it now stands.
    pub fn fold(&mut self, s: &Sample, subs: &mut [&mut (dyn Subscriber + '_)]) {
        self.ledger.push(s);
        for sub in subs.iter_mut() {
            sub.sample(s, &self.ledger);
        }
    }

    /// Fold every sample already waiting in `samples`, without blocking; how many there were.
    pub fn fold_ready(
        &mut self,
        samples: &mut UnboundedReceiver<Sample>,
        subs: &mut [&mut (dyn Subscriber + '_)],
    ) -> usize {
        let mut n = 0;
        while let Ok(s) = samples.try_recv() {
            self.fold(&s, subs);
            n += 1;
        }
        n
    }

    fn holding(&self, subs: &mut [&mut (dyn Subscriber + '_)]) -> bool {
        subs.iter_mut().any(|s| s.holds(&self.ledger))
    }

    /// Fold samples until a signal, a subscriber that is done, or the end of the samples.
    pub async fn run(
        &mut self,
        feed: &mut impl Feed,
        subs: &mut [&mut (dyn Subscriber + '_)],
    ) -> Ended {
        loop {
            if subs.iter().any(|s| s.done()) {
                return Ended::Done;
            }
            match feed.next().await {
                Wake::Sample(s) => self.fold(&s, subs),
                Wake::Signal(name) => return Ended::Signal(name),
                Wake::Closed => return Ended::Closed,
            }
        }
    }

    /// The drain: fold samples while a subscriber holds something the ledger may yet cover,
    /// for at most `limit`; a signal cuts it short.
    pub async fn drain(
        &mut self,
        feed: &mut impl Feed,
        subs: &mut [&mut (dyn Subscriber + '_)],
        limit: Duration,
    ) -> Drained {
        let until = tokio::time::Instant::now() + limit;
        while self.holding(subs) {
            let wake = tokio::select! {
                biased;
                w = feed.next() => w,
                _ = tokio::time::sleep_until(until) => return Drained::TimedOut,
            };
            match wake {
                Wake::Sample(s) => self.fold(&s, subs),
                Wake::Signal(name) => return Drained::Cut(name),
                Wake::Closed => return Drained::Closed,
            }
        }
        Drained::Covered
    }

    /// Every subscriber writes out what it holds; the errors, one line each.
    pub fn flush(&mut self, subs: &mut [&mut (dyn Subscriber + '_)]) -> Result<(), String> {
        let errors: Vec<String> = subs
            .iter_mut()
            .filter_map(|s| s.flush(&self.ledger).err())
            .collect();
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors.join("; "))
        }
    }

    /// The end of every run: the drain (bounded by [`DRAIN_LIMIT`]), then the flush.
    pub async fn finish(
        &mut self,
        feed: &mut impl Feed,
        subs: &mut [&mut (dyn Subscriber + '_)],
    ) -> (Drained, Result<(), String>) {
        let drained = self.drain(feed, subs, DRAIN_LIMIT).await;
        if drained != Drained::Covered {
            tracing::info!("drain ended: {drained:?}");
        }
        (drained, self.flush(subs))
    }
}

/// A run of a set length on the sampler clock (`share --seconds`, `watch --duration`): done
/// once a sample at or past `end` came in. Remembers when the samples began.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Deadline {
    pub end: f64,
    /// The first sample's time.
    pub first: Option<f64>,
    last: Option<f64>,
}

impl Deadline {
    /// Until sampler time `end` (infinite: never done).
    pub fn at(end: f64) -> Self {
        Self {
            end,
            first: None,
            last: None,
        }
    }
}

impl Subscriber for Deadline {
    fn sample(&mut self, s: &Sample, _ledger: &Ledger) {
        self.first.get_or_insert(s.t);
        self.last = Some(s.t);
    }

    fn done(&self) -> bool {
        self.last.is_some_and(|t| t >= self.end)
    }
}

/// The feed of a mode without a screen: the meter's samples and the terminating signals.
pub struct Headless {
    pub samples: UnboundedReceiver<Sample>,
    pub signals: Signals,
}

impl Feed for Headless {
    async fn next(&mut self) -> Wake {
        tokio::select! {
            // A signal first: a busy meter must not hold off the end.
            biased;
            name = self.signals.recv() => Wake::Signal(name),
            s = self.samples.recv() => s.map_or(Wake::Closed, Wake::Sample),
        }
    }
}

/// Why a headless run could not start or end cleanly: one line each.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("cannot start the async runtime: {0}")]
    Runtime(std::io::Error),
    #[error("cannot catch SIGTERM: {0}")]
    Signals(std::io::Error),
    /// A subscriber could not write what it held.
    #[error("{0}")]
    Flush(String),
}

/// A headless mode from start to end, on the one runtime: catch the signals, fold until the
/// run ends, call `stop` (the mode stops taking work: the proxy closes its listener and the
/// streams in flight end, which its books hear of), then drain and flush.
pub fn run_headless(
    metering: &mut Metering,
    samples: UnboundedReceiver<Sample>,
    subs: &mut [&mut (dyn Subscriber + '_)],
    stop: impl FnOnce(),
) -> Result<Ended, RunError> {
    let rt = crate::util::runtime::current_thread().map_err(RunError::Runtime)?;
    rt.block_on(async {
        let signals = Signals::listen().map_err(RunError::Signals)?;
        let mut feed = Headless { samples, signals };
        let ended = metering.run(&mut feed, subs).await;
        stop();
        let (_, flushed) = metering.finish(&mut feed, subs).await;
        flushed.map_err(RunError::Flush)?;
        Ok(ended)
    })
}
