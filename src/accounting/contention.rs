//! CPU contention: other programs wanting the CPUs llama.cpp generates on.
//!
//! llama.cpp's threads meet at a barrier after every operation of every layer, so one of them
//! that loses its CPU to another program holds up all the others: beside a single spinning
//! process, generation on every core collapses (README: "Other programs and the CPU"). It looks
//! like nothing more than "slow" unless someone says why, so while generating this detector
//! compares the threads other programs keep runnable (the `system:runnable` reading:
//! `procs_running` less this process's own runnable threads) with the CPUs llama.cpp leaves
//! free (online CPUs less its threads):
//!
//! - **contended** when, over the last `window_s` seconds (at least `min_samples` samples),
//!   of generation, other programs kept more threads runnable than that at every sample (so a
//!   process caught running now and then, a terminal redrawing, does not count: with four
//!   samples a second, all four must see another thread); the mark shows the average;
//! - how much it costs: the generation rate over the last seconds against the session's best
//!   rate while not contended.
//!
//! Pure: samples and tokens carry their times (the sampler clock); nothing here reads a clock.

use crate::accounting::throttle::windowed_rate;
use crate::sensors::{Quantity, Sample};
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;

pub use crate::sensors::runnable::READING_ID;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ContentionSettings {
    /// Runnable threads are averaged over this many seconds.
    pub window_s: f64,
    /// At least this many samples in the window before anything is said.
    pub min_samples: usize,
    /// Contended when the fewest seen in the window exceed the free CPUs by more than this.
    pub margin: f64,
    /// The generation rate is measured over this many seconds.
    pub rate_window_s: f64,
}

impl Default for ContentionSettings {
    fn default() -> Self {
        Self {
            window_s: 1.0,
            min_samples: 3,
            margin: 0.5,
            rate_window_s: 2.0,
        }
    }
}

/// A stretch of generation that other programs contended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Contention {
    /// When the mark appeared, sampler clock seconds.
    pub since: f64,
    /// When it went; `None` while it lasts.
    #[serde(default)]
    pub until: Option<f64>,
    /// Threads of other programs runnable on average over the window, now (the latest).
    pub others: f64,
    /// The most over the episode.
    pub others_max: f64,
    /// CPUs llama.cpp leaves free: online CPUs less its threads.
    pub free_cpus: u32,
    pub cpus: u32,
    pub engine_threads: u32,
    /// The session's best rate while not contended, tok/s (`None`: none yet).
    #[serde(default)]
    pub rate_uncontended_tok_s: Option<f64>,
    /// The rate over the last seconds, now, and the lowest while contended, tok/s.
    #[serde(default)]
    pub rate_now_tok_s: Option<f64>,
    #[serde(default)]
    pub rate_low_tok_s: Option<f64>,
}

impl Contention {
    /// The same with its times counted from `origin` (a reply's or a bench run's start).
    /// Contention that began before `origin` starts at 0 there.
    pub fn shifted(mut self, origin: f64) -> Self {
        self.since = (self.since - origin).max(0.0);
        self.until = self.until.map(|u| u - origin);
        self
    }

    /// How much slower than uncontended generation, percent, at `rate` (tok/s).
    pub fn slowdown_pct_at(&self, rate: Option<f64>) -> Option<f64> {
        let (r, best) = (rate?, self.rate_uncontended_tok_s?);
        (best > 0.0).then(|| ((1.0 - r / best) * 100.0).max(0.0))
    }

    /// "contended: 1 other runnable thread, generation −99 %": the header's words, with the
    /// rate now (`others` now).
    pub fn text(&self) -> String {
        contention_text(self.others, self.slowdown_pct_at(self.rate_now_tok_s))
    }

    /// The reply line's and bench's words for a reply that generated at `reply_tok_s`: the
    /// most other threads seen, and the reply's rate against the uncontended one.
    pub fn reply_text(&self, reply_tok_s: f64) -> String {
        contention_text(self.others_max, self.slowdown_pct_at(Some(reply_tok_s)))
    }
}

/// The one wording of the mark.
pub fn contention_text(others: f64, slowdown_pct: Option<f64>) -> String {
    let n = others.round().max(1.0) as u64;
    let threads = if n == 1 { "thread" } else { "threads" };
    match slowdown_pct {
        Some(x) => format!("contended: {n} other runnable {threads}, generation −{x:.0} %"),
        None => format!(
            "contended: {n} other runnable {threads}, generation rate unknown (no uncontended rate yet)"
        ),
    }
}

/// Folds samples and tokens into "contended now?" and the episodes so far.
#[derive(Debug, Clone, Default)]
pub struct ContentionDetector {
    settings: ContentionSettings,
    /// llama.cpp's threads in this process; `None`: no in-process engine (nothing judged).
    engine_threads: Option<u32>,
    /// (time, other runnable threads, online CPUs) of the recent samples.
    samples: VecDeque<(f64, f64, u32)>,
    tokens: VecDeque<f64>,
    generating: bool,
    best_uncontended: Option<f64>,
    current: Option<Contention>,
    episodes: Vec<Contention>,
}

/// Finished episodes kept.
const MAX_EPISODES: usize = 64;

impl ContentionDetector {
    pub fn new(settings: ContentionSettings) -> Self {
        Self {
            settings,
            ..Self::default()
        }
    }

    /// The in-process engine runs `threads` threads (from its report at load).
    pub fn engine_threads(&mut self, threads: u32) {
        self.engine_threads = Some(threads.max(1));
    }

    /// `count` tokens arrived at `t`.
    pub fn tokens(&mut self, t: f64, count: u32) {
        if !self.generating {
            // Only generation is judged: what ran while the prompt was typed or read does not
            // count against the reply.
            self.samples.retain(|(x, _, _)| *x >= t);
        }
        self.generating = true;
        self.tokens.extend(std::iter::repeat_n(t, count as usize));
    }

    /// The reply ended at `t`: an episode in progress ends with it.
    pub fn reply_done(&mut self, t: f64) {
        self.generating = false;
        self.tokens.clear();
        self.close(t);
    }

    pub fn current(&self) -> Option<&Contention> {
        self.current.as_ref()
    }

    /// Episodes that overlap `[t0, t1]`, the one in progress too.
    pub fn episodes_between(&self, t0: f64, t1: f64) -> Vec<Contention> {
        self.episodes
            .iter()
            .chain(self.current.as_ref())
            .filter(|e| e.since <= t1 && e.until.is_none_or(|u| u >= t0))
            .cloned()
            .collect()
    }

    /// Take in one sample, then decide.
    pub fn sample(&mut self, s: &Sample) {
        let t = s.t;
        if let Some(r) = s
            .readings
            .iter()
            .find(|r| r.id == READING_ID && r.quantity == Quantity::RunnableThreads)
            && let (Some(v), Some(cpus)) = (r.value.filter(|v| v.is_finite()), r.limit)
        {
            self.samples.push_back((t, v, cpus.max(1.0) as u32));
        }
        let window = self.settings.window_s;
        while self
            .samples
            .front()
            .is_some_and(|(x, _, _)| *x <= t - window)
        {
            self.samples.pop_front();
        }
        // Tokens no later rate window needs: behind the window, with MIN_TOKENS up to `t`
        // left (a bench feeds a reply's tokens before its samples).
        let keep_from = t - self.settings.rate_window_s;
        let mut upto = self.tokens.partition_point(|&x| x <= t);
        while upto > crate::accounting::throttle::MIN_TOKENS
            && self.tokens.front().is_some_and(|&x| x < keep_from)
        {
            self.tokens.pop_front();
            upto -= 1;
        }
        let (Some(threads), true) = (self.engine_threads, self.generating) else {
            return;
        };
        let rate = windowed_rate(&self.tokens, t, self.settings.rate_window_s);
        let enough = self.samples.len() >= self.settings.min_samples;
        let others = enough.then(|| {
            self.samples.iter().map(|(_, v, _)| v).sum::<f64>() / self.samples.len() as f64
        });
        let cpus = self.samples.back().map_or(1, |(_, _, c)| *c);
        let free = cpus.saturating_sub(threads);
        // Judged on the fewest seen: a thread that wanted a CPU at every look through the
        // window, not a passing process (or a kernel thread woken by our own reads) caught at
        // most of them.
        let fewest = enough.then(|| {
            self.samples
                .iter()
                .map(|(_, v, _)| *v)
                .fold(f64::INFINITY, f64::min)
        });
        let contended = fewest.is_some_and(|o| o > f64::from(free) + self.settings.margin);
        match (contended, others) {
            (true, Some(others)) => {
                let best = self.best_uncontended;
                let e = self.current.get_or_insert(Contention {
                    since: t,
                    until: None,
                    others,
                    others_max: others,
                    free_cpus: free,
                    cpus,
                    engine_threads: threads,
                    rate_uncontended_tok_s: best,
                    rate_now_tok_s: rate,
                    rate_low_tok_s: rate,
                });
                e.others = others;
                e.others_max = e.others_max.max(others);
                e.rate_now_tok_s = rate;
                e.rate_low_tok_s = match (e.rate_low_tok_s, rate) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
            }
            _ => {
                self.close(t);
                // Only a window that held no contention at all sets the uncontended rate.
                if enough && let Some(r) = rate {
                    self.best_uncontended = Some(self.best_uncontended.map_or(r, |b| b.max(r)));
                }
            }
        }
    }

    fn close(&mut self, t: f64) {
        if let Some(mut e) = self.current.take() {
            e.until = Some(t);
            if self.episodes.len() == MAX_EPISODES {
                self.episodes.remove(0);
            }
            self.episodes.push(e);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sensors::{Covers, Method, Reading, Source};

    fn sample(t: f64, others: f64, cpus: f64) -> Sample {
        Sample {
            t,
            readings: vec![Reading {
                id: READING_ID.into(),
                device: "system".into(),
                label: "other runnable threads".into(),
                quantity: Quantity::RunnableThreads,
                value: Some(others),
                limit: Some(cpus),
                source: Source::System,
                covers: Covers::Other,
                method: Method::Measured,
                rejected: None,
                via: None,
            }],
        }
    }

    /// Tokens at `rate` from `t0` to `t1`, samples every 0.25 s with `others` runnable.
    fn run(d: &mut ContentionDetector, t0: f64, t1: f64, rate: f64, others: f64) {
        let mut t = t0;
        let mut next_sample = t0;
        while t < t1 {
            d.tokens(t, 1);
            t += 1.0 / rate;
            while next_sample <= t {
                d.sample(&sample(next_sample, others, 2.0));
                next_sample += 0.25;
            }
        }
    }

    #[test]
    fn a_spinning_process_beside_every_core_is_marked_and_leaves() {
        let mut d = ContentionDetector::new(ContentionSettings::default());
        d.engine_threads(2);
        run(&mut d, 0.0, 5.0, 100.0, 0.0);
        assert!(d.current().is_none());
        // One other thread runnable: 2 CPUs, 2 engine threads, none free.
        run(&mut d, 5.0, 8.0, 1.0, 1.0);
        let e = d.current().cloned().expect("contended");
        // Once a whole window (1 s) holds only contended samples.
        assert!(e.since <= 6.0, "marked at {}", e.since);
        assert_eq!((e.free_cpus, e.cpus, e.engine_threads), (0, 2, 2));
        assert!((e.rate_uncontended_tok_s.expect("best") - 100.0).abs() < 1.0);
        assert!(
            e.text()
                .starts_with("contended: 1 other runnable thread, generation −")
        );
        assert!(
            e.slowdown_pct_at(e.rate_now_tok_s).expect("pct") > 90.0,
            "{e:?}"
        );
        // Gone: the mark leaves within the window.
        run(&mut d, 8.0, 10.0, 100.0, 0.0);
        let ended = d.episodes_between(0.0, 10.0);
        assert_eq!(ended.len(), 1);
        let until = ended[0].until.expect("ended");
        assert!((8.0..=9.0).contains(&until), "{until}");
        assert!(d.current().is_none());
    }

    #[test]
    fn a_free_cpu_and_passing_noise_are_not_contention() {
        let mut d = ContentionDetector::new(ContentionSettings::default());
        // One engine thread on 2 CPUs: one other runnable thread has a CPU of its own.
        d.engine_threads(1);
        run(&mut d, 0.0, 3.0, 50.0, 1.0);
        assert!(d.current().is_none());
        // Two engine threads: a thread caught in one sample of four is noise.
        let mut d = ContentionDetector::new(ContentionSettings::default());
        d.engine_threads(2);
        let mut t = 0.0;
        for i in 0..40 {
            d.tokens(t, 10);
            d.sample(&sample(t, if i % 4 == 0 { 1.0 } else { 0.0 }, 2.0));
            t += 0.25;
        }
        assert!(d.current().is_none());
        assert!(d.episodes_between(0.0, t).is_empty());
    }

    #[test]
    fn nothing_is_judged_while_idle_or_without_an_engine_here() {
        let mut d = ContentionDetector::new(ContentionSettings::default());
        for i in 0..20 {
            d.sample(&sample(f64::from(i) * 0.25, 3.0, 2.0));
        }
        assert!(d.current().is_none(), "no engine threads known");
        d.engine_threads(2);
        for i in 20..40 {
            d.sample(&sample(f64::from(i) * 0.25, 3.0, 2.0));
        }
        assert!(d.current().is_none(), "not generating");
        assert_eq!(
            contention_text(2.4, None),
            "contended: 2 other runnable threads, generation rate unknown (no uncontended rate yet)"
        );
    }

    #[test]
    fn what_ran_before_generation_and_three_of_four_samples_are_not_contention() {
        let mut d = ContentionDetector::new(ContentionSettings::default());
        d.engine_threads(2);
        // A second of typing and prompt reading beside the engine: every sample sees another
        // thread, then generation starts on a quiet machine.
        for i in 0..4 {
            d.sample(&sample(f64::from(i) * 0.25, 1.0, 2.0));
        }
        run(&mut d, 1.0, 2.0, 100.0, 0.0);
        assert!(d.episodes_between(0.0, 2.0).is_empty(), "{:?}", d.current());
        // Every other sample sees a passing process: half a thread on average, not more.
        for i in 8..20 {
            let t = f64::from(i) * 0.25;
            for k in 0..25 {
                d.tokens(t - 0.25 + f64::from(k) * 0.01, 1);
            }
            d.sample(&sample(t, f64::from(i % 2), 2.0));
        }
        assert!(d.episodes_between(0.0, 5.0).is_empty(), "{:?}", d.current());
        // Three of four: still not.
        for i in 20..32 {
            let t = f64::from(i) * 0.25;
            for k in 0..25 {
                d.tokens(t - 0.25 + f64::from(k) * 0.01, 1);
            }
            d.sample(&sample(t, if i % 4 == 0 { 0.0 } else { 1.0 }, 2.0));
        }
        assert!(d.episodes_between(0.0, 8.0).is_empty(), "{:?}", d.current());
        // Every sample: marked.
        run(&mut d, 8.0, 9.5, 100.0, 1.0);
        assert!(d.current().is_some());
    }
}
