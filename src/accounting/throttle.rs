//! Throttling that costs speed. The generation rate alone cannot tell (a longer context, a
//! busier machine, a different prompt all slow a reply), and a clock under its maximum alone
//! is not news (all-core turbo sits under the single-core maximum). So "throttled" is said only
//! when both happen at once, while generating:
//!
//! - the rate over the last seconds fell below its best in this session by `rate_drop`, and
//! - a hardware signal says the machine is holding itself back: a clock fell below
//!   `clock_ratio` of its maximum *and* below its own best under load, a thermal throttle
//!   counter advanced, a temperature sits within `temp_margin_c` of its limit, or the GPU
//!   reports a costly clocks-event reason (power cap, thermal or hardware slowdown).
//!
//! The detector keeps the evidence of each episode: which signals, how much, since when, and
//! the rate before and at its lowest. Pure: tokens and samples carry their times (the sampler
//! clock), and nothing here reads a clock or a file.

use crate::sensors::{Method, Quantity, Reading, Sample};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};

/// The thresholds; the defaults are what the dashboard and bench use.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ThrottleSettings {
    /// The rate is measured over at least this many seconds (and at least [`MIN_TOKENS`]).
    pub window_s: f64,
    /// The rate "fell" when it is this fraction below the session's best.
    pub rate_drop: f64,
    /// A clock under this fraction of its maximum...
    pub clock_ratio: f64,
    /// ...and this fraction under its own best while generating is a fallen clock.
    pub clock_drop: f64,
    /// A temperature within this many °C of its limit sits at it.
    pub temp_margin_c: f64,
    /// A counter that advanced counts as a signal for this long after.
    pub counter_hold_s: f64,
    /// The mark goes when the condition has been false this long.
    pub clear_after_s: f64,
}

impl Default for ThrottleSettings {
    fn default() -> Self {
        Self {
            window_s: 2.0,
            rate_drop: 0.15,
            clock_ratio: 0.9,
            clock_drop: 0.05,
            temp_margin_c: 2.0,
            counter_hold_s: 3.0,
            clear_after_s: 2.0,
        }
    }
}

/// Fewer tokens than this in the window: no rate yet (a slow model's window is widened).
pub const MIN_TOKENS: usize = 8;
/// Finished episodes kept (a dashboard left running for days stays small).
const MAX_EPISODES: usize = 64;

/// Which kind of hardware signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Signal {
    /// A clock fell below its maximum.
    ClockBelowMax,
    /// A thermal throttle counter advanced.
    ThrottleCount,
    /// A temperature sits at its limit.
    TempAtLimit,
    /// The GPU names why it holds its clocks down.
    GpuReasons,
}

/// One signal's part in an episode.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    pub signal: Signal,
    /// Reading id, e.g. `cpu:clock`, `cpu:core_throttles`, `nvml:0:throttle`.
    pub id: String,
    /// "device label" of the reading (not sanitised: every surface does that).
    pub name: String,
    /// When the signal began, sampler clock seconds.
    pub since: f64,
    /// How much: the lowest clock (MHz), the events counted since it began, the highest
    /// temperature (°C), the reason bits seen.
    pub value: f64,
    /// The clock's maximum (MHz) or the temperature's limit (°C).
    pub limit: Option<f64>,
}

/// A stretch of generation that was throttled.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Episode {
    /// When the mark appeared, sampler clock seconds.
    pub since: f64,
    /// When it went (the condition cleared, or the reply ended); `None` while it lasts.
    pub until: Option<f64>,
    /// The session's best rate before, tok/s.
    pub rate_before_tok_s: f64,
    /// The lowest rate while throttled, tok/s.
    pub rate_low_tok_s: f64,
    pub evidence: Vec<Evidence>,
}

impl Evidence {
    /// "CPU clock 2450 of 4900 MHz (50 %)", "core throttles +4", "GPU 88 °C at its 90 °C
    /// limit", "GPU throttle reasons: power cap, thermal (sw)".
    pub fn describe(&self) -> String {
        let name = &self.name;
        match (self.signal, self.limit) {
            (Signal::ClockBelowMax, Some(max)) if max > 0.0 => format!(
                "{name} {:.0} of {max:.0} MHz ({:.0} %)",
                self.value,
                self.value / max * 100.0
            ),
            (Signal::ClockBelowMax, _) => format!("{name} {:.0} MHz", self.value),
            (Signal::ThrottleCount, _) => format!("{name} +{:.0}", self.value),
            (Signal::TempAtLimit, Some(l)) => {
                format!("{name} {:.0} °C at its {l:.0} °C limit", self.value)
            }
            (Signal::TempAtLimit, None) => format!("{name} {:.0} °C", self.value),
            (Signal::GpuReasons, _) => format!(
                "{name}: {}",
                crate::sensors::nvml::reason_names(self.value as u64).join(", ")
            ),
        }
    }
}

impl Episode {
    /// How much slower, percent (positive).
    pub fn slowdown_pct(&self) -> f64 {
        if self.rate_before_tok_s > 0.0 {
            (1.0 - self.rate_low_tok_s / self.rate_before_tok_s) * 100.0
        } else {
            0.0
        }
    }

    /// One line: "12.0 → 6.1 tok/s (-49 %) from 31.2 s: CPU clock ... since 30.9 s; ...".
    pub fn summary(&self) -> String {
        let evidence: Vec<String> = self
            .evidence
            .iter()
            .map(|e| format!("{} since {:.1} s", e.describe(), e.since))
            .collect();
        format!(
            "{:.1} → {:.1} tok/s (-{:.0} %) from {:.1} s: {}",
            self.rate_before_tok_s,
            self.rate_low_tok_s,
            self.slowdown_pct(),
            self.since,
            evidence.join("; ")
        )
    }
}

/// What the detector remembers of one reading.
#[derive(Debug, Clone, Default)]
struct Track {
    /// When the signal began; `None` while quiet.
    since: Option<f64>,
    /// Counter: its last value and when it last advanced.
    last_count: Option<f64>,
    last_advance: Option<f64>,
    /// Counter: events since the signal began.
    counted: f64,
    /// Clock: its best while generating.
    best_clock: Option<f64>,
}

/// Folds tokens and samples into "throttled now?" and the episodes so far.
#[derive(Debug, Clone, Default)]
pub struct ThrottleDetector {
    settings: ThrottleSettings,
    /// Times of this reply's tokens not yet behind every window.
    tokens: VecDeque<f64>,
    generating: bool,
    /// The best windowed rate of the session, tok/s.
    best_rate: Option<f64>,
    tracks: BTreeMap<String, Track>,
    current: Option<Episode>,
    /// The last time the condition held.
    last_held: f64,
    episodes: Vec<Episode>,
}

impl ThrottleDetector {
    pub fn new(settings: ThrottleSettings) -> Self {
        Self {
            settings,
            ..Self::default()
        }
    }

    /// `count` tokens arrived at `t` (the engine sends a few at a time).
    pub fn tokens(&mut self, t: f64, count: u32) {
        self.generating = true;
        self.tokens.extend(std::iter::repeat_n(t, count as usize));
    }

    /// The reply ended at `t` (finished or cancelled): an episode in progress ends with it.
    pub fn reply_done(&mut self, t: f64) {
        self.generating = false;
        self.tokens.clear();
        self.close(t);
    }

    /// The episode in progress: what the header marks.
    pub fn current(&self) -> Option<&Episode> {
        self.current.as_ref()
    }

    /// Every episode of the session, the one in progress last.
    pub fn episodes(&self) -> Vec<Episode> {
        let mut v = self.episodes.clone();
        v.extend(self.current.clone());
        v
    }

    /// Episodes that overlap `[t0, t1]`.
    pub fn episodes_between(&self, t0: f64, t1: f64) -> Vec<Episode> {
        self.episodes()
            .into_iter()
            .filter(|e| e.since <= t1 && e.until.is_none_or(|u| u >= t0))
            .collect()
    }

    /// The rate over the window ending at `t` ([`windowed_rate`]).
    fn rate(&self, t: f64) -> Option<f64> {
        windowed_rate(&self.tokens, t, self.settings.window_s)
    }

    /// Take in one sample: update every signal, then decide.
    pub fn sample(&mut self, s: &Sample) {
        let t = s.t;
        let set = self.settings;
        let generating = self.generating;
        let mut active: Vec<Evidence> = Vec::new();
        for r in &s.readings {
            let Some(v) = r.value.filter(|v| v.is_finite()) else {
                continue;
            };
            let track = self.tracks.entry(r.id.clone()).or_default();
            let on = signal(r, v, t, generating, &set, track);
            match on {
                Some((sig, value, limit)) => {
                    let since = *track.since.get_or_insert(t);
                    active.push(Evidence {
                        signal: sig,
                        id: r.id.clone(),
                        name: format!("{} {}", r.device, r.label).trim().to_string(),
                        since,
                        value,
                        limit,
                    });
                }
                None => {
                    track.since = None;
                    track.counted = 0.0;
                }
            }
        }
        // Drop tokens no later window needs: behind the window, with MIN_TOKENS up to `t`
        // left without them (a later sample's rate looks no further back than that).
        let keep_from = t - set.window_s;
        let mut upto = self.tokens.partition_point(|&x| x <= t);
        while upto > MIN_TOKENS && self.tokens.front().is_some_and(|&x| x < keep_from) {
            self.tokens.pop_front();
            upto -= 1;
        }
        let rate = if self.generating { self.rate(t) } else { None };
        let fell = match (rate, self.best_rate) {
            (Some(r), Some(best)) => r < best * (1.0 - set.rate_drop),
            _ => false,
        };
        if let Some(r) = rate {
            self.best_rate = Some(self.best_rate.map_or(r, |b| b.max(r)));
        }
        if fell && !active.is_empty() {
            self.last_held = t;
            let rate = rate.unwrap_or(0.0);
            match &mut self.current {
                None => {
                    self.current = Some(Episode {
                        since: t,
                        until: None,
                        rate_before_tok_s: self.best_rate.unwrap_or(rate),
                        rate_low_tok_s: rate,
                        evidence: active,
                    });
                }
                Some(e) => {
                    e.rate_low_tok_s = e.rate_low_tok_s.min(rate);
                    for a in active {
                        match e.evidence.iter_mut().find(|x| x.id == a.id) {
                            Some(x) => merge(x, &a),
                            None => e.evidence.push(a),
                        }
                    }
                }
            }
        } else if self.current.is_some() && t - self.last_held >= set.clear_after_s {
            self.close(t);
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

/// The generation rate over the `window_s` seconds ending at `t`, from the token times up to
/// `t` only (a bench feeds a reply's tokens before its samples); at least [`MIN_TOKENS`] tokens
/// (a slow model's window is widened). A stall (no token for several token periods) counts up
/// to `t`. The throttle and contention detectors share it.
pub(crate) fn windowed_rate(tokens: &VecDeque<f64>, t: f64, window_s: f64) -> Option<f64> {
    let upto = tokens.partition_point(|&x| x <= t);
    if upto < MIN_TOKENS {
        return None;
    }
    let last = tokens[upto - 1];
    let in_window = tokens
        .range(..upto)
        .rev()
        .take_while(|&&x| x > t - window_s)
        .count();
    let n = in_window.max(MIN_TOKENS);
    let first = tokens[upto - n];
    if last <= first {
        return None;
    }
    let mut rate = (n - 1) as f64 / (last - first);
    if t - last > 3.0 / rate {
        rate = (n - 1) as f64 / (t - first);
    }
    Some(rate)
}

/// Keep the worst of a signal over the episode.
fn merge(into: &mut Evidence, now: &Evidence) {
    into.value = match into.signal {
        Signal::ClockBelowMax => into.value.min(now.value),
        Signal::TempAtLimit => into.value.max(now.value),
        Signal::ThrottleCount => into.value.max(now.value),
        Signal::GpuReasons => ((into.value as u64) | (now.value as u64)) as f64,
    };
    into.limit = now.limit.or(into.limit);
}

/// Whether reading `r` (value `v`) signals throttling now: the kind, how much, the limit.
fn signal(
    r: &Reading,
    v: f64,
    t: f64,
    generating: bool,
    set: &ThrottleSettings,
    track: &mut Track,
) -> Option<(Signal, f64, Option<f64>)> {
    match (r.quantity, r.method) {
        (Quantity::Clock, _) => {
            let max = r.limit.filter(|m| *m > 0.0)?;
            if !generating {
                return None; // an idle CPU clocks down: that is rest, not throttling
            }
            let best = track.best_clock.get_or_insert(v);
            *best = best.max(v);
            let fallen = v < set.clock_ratio * max && v < (1.0 - set.clock_drop) * *best;
            fallen.then_some((Signal::ClockBelowMax, v, Some(max)))
        }
        (Quantity::ThrottleCount, Method::Counter) => {
            match track.last_count {
                Some(prev) if v > prev => {
                    track.last_advance = Some(t);
                    track.counted += v - prev;
                }
                _ => {}
            }
            track.last_count = Some(v);
            let recent = track
                .last_advance
                .is_some_and(|a| t - a <= set.counter_hold_s);
            recent.then_some((Signal::ThrottleCount, track.counted, None))
        }
        (Quantity::Temperature, _) => {
            let limit = r.limit.filter(|l| *l > 0.0)?;
            (v >= limit - set.temp_margin_c).then_some((Signal::TempAtLimit, v, Some(limit)))
        }
        (Quantity::ThrottleReasons, _) => (v > 0.0).then_some((Signal::GpuReasons, v, None)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sensors::{Covers, Source};

    fn reading(id: &str, q: Quantity, m: Method, v: f64, limit: Option<f64>) -> Reading {
        Reading {
            id: id.into(),
            device: "cpufreq".into(),
            label: id.into(),
            quantity: q,
            value: Some(v),
            limit,
            source: Source::System,
            covers: Covers::CpuPackage,
            method: m,
            rejected: None,
            via: None,
        }
    }

    fn clock(mhz: f64) -> Reading {
        reading(
            "cpu:clock",
            Quantity::Clock,
            Method::Measured,
            mhz,
            Some(4900.0),
        )
    }

    fn counter(n: f64) -> Reading {
        reading(
            "cpu:core_throttles",
            Quantity::ThrottleCount,
            Method::Counter,
            n,
            None,
        )
    }

    /// Scripted run: tokens at `rate(t)` tok/s from 0 to `end` s, a sample every 0.25 s with
    /// `rows(t)`. Returns the time of each sample at which the mark was on.
    fn run(
        d: &mut ThrottleDetector,
        end: f64,
        rate: impl Fn(f64) -> f64,
        rows: impl Fn(f64) -> Vec<Reading>,
    ) -> Vec<f64> {
        let mut marked = Vec::new();
        let mut next_token = 0.0;
        let mut t = 0.0;
        while t <= end + 1e-9 {
            while next_token <= t {
                d.tokens(next_token, 1);
                next_token += 1.0 / rate(next_token);
            }
            d.sample(&Sample {
                t,
                readings: rows(t),
            });
            if d.current().is_some() {
                marked.push(t);
            }
            t += 0.25;
        }
        marked
    }

    #[test]
    fn rate_falls_with_clocks_at_max_is_not_throttling() {
        let mut d = ThrottleDetector::new(ThrottleSettings::default());
        // Half the speed from 10 s (a longer context, another program), clocks at 4.8 GHz.
        let marked = run(
            &mut d,
            20.0,
            |t| if t < 10.0 { 40.0 } else { 20.0 },
            |_| vec![clock(4800.0), counter(5.0)],
        );
        assert!(marked.is_empty(), "{marked:?}");
        assert!(d.episodes().is_empty());
    }

    #[test]
    fn clocks_held_low_all_along_are_not_throttling_either() {
        // All-core turbo at 80 % of the single-core maximum from the start: a rate that falls
        // for other reasons must not be blamed on it.
        let mut d = ThrottleDetector::new(ThrottleSettings::default());
        let marked = run(
            &mut d,
            20.0,
            |t| if t < 10.0 { 40.0 } else { 25.0 },
            |_| vec![clock(3900.0)],
        );
        assert!(marked.is_empty(), "{marked:?}");
    }

    #[test]
    fn clocks_falling_with_the_rate_is_throttling_with_its_evidence() {
        let mut d = ThrottleDetector::new(ThrottleSettings::default());
        let marked = run(
            &mut d,
            20.0,
            |t| if t < 10.0 { 40.0 } else { 20.0 },
            |t| {
                let mhz = if t < 9.5 { 4800.0 } else { 2450.0 };
                vec![clock(mhz)]
            },
        );
        let first = *marked.first().expect("marked");
        // The 2 s window sees the slower rate within a second of the change, not before it.
        assert!((10.0..=11.5).contains(&first), "{marked:?}");
        let e = d.current().expect("still throttled at the end");
        assert_eq!(e.evidence.len(), 1);
        let ev = &e.evidence[0];
        assert_eq!(
            (ev.signal, ev.value, ev.limit),
            (Signal::ClockBelowMax, 2450.0, Some(4900.0))
        );
        assert_eq!(ev.since, 9.5);
        assert!((e.rate_before_tok_s - 40.0).abs() < 1.0, "{e:?}");
        assert!((e.rate_low_tok_s - 20.0).abs() < 1.0, "{e:?}");
        assert!(
            e.summary()
                .contains("cpufreq cpu:clock 2450 of 4900 MHz (50 %) since 9.5 s"),
            "{}",
            e.summary()
        );
        // The reply ends: the episode is closed and kept.
        d.reply_done(20.1);
        assert!(d.current().is_none());
        assert_eq!(d.episodes()[0].until, Some(20.1));
        assert!(d.episodes_between(0.0, 5.0).is_empty());
        assert_eq!(d.episodes_between(15.0, 16.0).len(), 1);
    }

    #[test]
    fn a_counter_that_advances_while_the_rate_falls_and_then_recovery() {
        let mut d = ThrottleDetector::new(ThrottleSettings::default());
        let marked = run(
            &mut d,
            30.0,
            |t| {
                if (10.0..15.0).contains(&t) {
                    25.0
                } else {
                    40.0
                }
            },
            |t| {
                // Throttle events at 10 s and 12 s; the counter then stays still.
                let n = if t < 10.0 {
                    3.0
                } else if t < 12.0 {
                    7.0
                } else {
                    9.0
                };
                vec![counter(n)]
            },
        );
        assert!(
            marked.first().is_some_and(|&t| (10.0..=11.5).contains(&t)),
            "{marked:?}"
        );
        // Gone once the rate is back and the counter still (hold 3 s, clear 2 s).
        assert!(marked.last().is_some_and(|&t| t < 20.0), "{marked:?}");
        let eps = d.episodes();
        assert_eq!(eps.len(), 1);
        let ev = &eps[0].evidence[0];
        assert_eq!(
            (ev.signal, ev.value, ev.since),
            (Signal::ThrottleCount, 6.0, 10.0)
        );
        assert!(ev.describe().ends_with("+6"), "{}", ev.describe());
    }

    #[test]
    fn temperature_at_its_limit_and_gpu_reasons_count() {
        let mut d = ThrottleDetector::new(ThrottleSettings::default());
        let temp = |c: f64| {
            reading(
                "nvml:0:temp",
                Quantity::Temperature,
                Method::Measured,
                c,
                Some(90.0),
            )
        };
        let why = |bits: f64| {
            reading(
                "nvml:0:throttle",
                Quantity::ThrottleReasons,
                Method::Measured,
                bits,
                None,
            )
        };
        let marked = run(
            &mut d,
            20.0,
            |t| if t < 10.0 { 60.0 } else { 40.0 },
            |t| {
                if t < 10.0 {
                    vec![temp(80.0), why(0.0)]
                } else {
                    vec![temp(89.0), why(f64::from(0x4 | 0x20))]
                }
            },
        );
        assert!(!marked.is_empty());
        let e = d.current().expect("on");
        let kinds: Vec<Signal> = e.evidence.iter().map(|x| x.signal).collect();
        assert_eq!(kinds, [Signal::TempAtLimit, Signal::GpuReasons]);
        assert_eq!(
            e.evidence[0].describe(),
            "cpufreq nvml:0:temp 89 °C at its 90 °C limit"
        );
        assert_eq!(
            e.evidence[1].describe(),
            "cpufreq nvml:0:throttle: power cap, thermal (sw)"
        );
    }

    #[test]
    fn idle_is_never_throttled_and_a_stall_counts_as_slow() {
        let mut d = ThrottleDetector::new(ThrottleSettings::default());
        // Clock low and counter moving, but no reply running.
        for i in 0..40 {
            d.sample(&Sample {
                t: f64::from(i) * 0.25,
                readings: vec![clock(800.0), counter(f64::from(i))],
            });
        }
        assert!(d.current().is_none() && d.episodes().is_empty());
        // Tokens at 40 tok/s, then none at all from 12 s while a counter moves: throttled.
        let mut d = ThrottleDetector::new(ThrottleSettings::default());
        let mut t = 0.0;
        let mut i = 0;
        while t < 16.0 {
            if t < 12.0 {
                d.tokens(t, 1);
            }
            if i % 10 == 0 {
                d.sample(&Sample {
                    t,
                    readings: vec![counter(if t < 12.0 { 0.0 } else { t.floor() })],
                });
            }
            t += 0.025;
            i += 1;
        }
        assert!(d.current().is_some(), "{:?}", d.episodes());
    }
}
