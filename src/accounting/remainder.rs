//! The wall's unmeasured remainder: with a wall plug and component sensors, the part of the
//! wall that no component explains (PSU losses, board, fans, disks, a monitor on USB-C), as
//! watts and as a share of the wall.
//!
//! The ledger splits each of the plug's sampling intervals into the parts and the rest
//! ([`Ledger::wall_splits`], the one operation that computes it); this tracker fits the rest
//! twice, apart: while idle (no reply in progress) its mean, and under load a line against
//! the parts' power (PSU losses grow with load). A lasting change of the idle remainder that
//! the parts do not explain is a [`Shift`]: "something else started drawing power" (or
//! stopped). After a shift the new level is the idle reference.

use super::ledger::Ledger;
use super::ledger::views::WallSplit;

/// Seconds of idle intervals that make a first reference level.
pub const REFERENCE_S: f64 = 10.0;
/// Seconds of recent idle intervals judged against the reference.
pub const RECENT_S: f64 = 5.0;
/// A shift is at least this many watts...
pub const MIN_SHIFT_W: f64 = 3.0;
/// ... and this many standard deviations of one interval's remainder at the reference.
pub const SHIFT_SIGMAS: f64 = 4.0;
/// The live figure: the remainder over the last this many seconds.
pub const LIVE_S: f64 = 5.0;

/// A lasting change of the idle remainder.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Shift {
    /// Sampler seconds of the first interval at the new level.
    pub t: f64,
    /// New level less the old, W (positive: something started drawing power).
    pub watts: f64,
    pub before_w: f64,
    pub after_w: f64,
}

impl Shift {
    /// "something else started drawing power: +15.0 W at the wall, no part draws more".
    pub fn describe(&self) -> String {
        if self.watts > 0.0 {
            format!(
                "something else started drawing power: {:+.1} W at the wall while idle, no part draws more",
                self.watts
            )
        } else {
            format!(
                "something else stopped drawing power: {:+.1} W at the wall while idle",
                self.watts
            )
        }
    }
}

/// A line `a + b x parts` fitted by least squares, weighted by seconds.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
struct Fit {
    w: f64,
    x: f64,
    y: f64,
    xx: f64,
    xy: f64,
}

impl Fit {
    fn add(&mut self, x: f64, y: f64, w: f64) {
        self.w += w;
        self.x += w * x;
        self.y += w * y;
        self.xx += w * x * x;
        self.xy += w * x * y;
    }

    /// (intercept, slope); a flat line where the parts barely varied.
    fn line(&self) -> Option<(f64, f64)> {
        if self.w <= 0.0 {
            return None;
        }
        let (mx, my) = (self.x / self.w, self.y / self.w);
        let var = self.xx / self.w - mx * mx;
        let cov = self.xy / self.w - mx * my;
        // Less than a watt of spread in the parts: no slope can be told from noise.
        if var < 1.0 {
            return Some((my, 0.0));
        }
        let b = cov / var;
        Some((my - b * mx, b))
    }
}

/// The idle level the recent intervals are judged against.
#[derive(Debug, Clone, Default, PartialEq)]
struct Reference {
    /// (remainder W, parts W, seconds) of the intervals it is made of.
    steps: Vec<(f64, f64, f64)>,
}

impl Reference {
    fn seconds(&self) -> f64 {
        self.steps.iter().map(|s| s.2).sum()
    }

    fn mean(&self, i: usize) -> Option<f64> {
        let s = self.seconds();
        (s > 0.0).then(|| {
            self.steps
                .iter()
                .map(|x| if i == 0 { x.0 } else { x.1 } * x.2)
                .sum::<f64>()
                / s
        })
    }

    fn sd(&self) -> f64 {
        let Some(m) = self.mean(0) else {
            return 0.0;
        };
        let n = self.steps.len() as f64;
        if n < 2.0 {
            return 0.0;
        }
        (self.steps.iter().map(|x| (x.0 - m).powi(2)).sum::<f64>() / (n - 1.0)).sqrt()
    }
}

/// What F1 and the run card show.
#[derive(Debug, Clone, PartialEq)]
pub struct RemainderView {
    /// Over the last [`LIVE_S`] seconds.
    pub watts: f64,
    /// Of the wall, 0..1.
    pub share: f64,
    pub wall_w: f64,
    pub parts_w: f64,
    /// The idle remainder now (the reference), W.
    pub idle_w: Option<f64>,
    /// Under load: intercept W and slope (W of remainder per W of parts).
    pub loaded: Option<(f64, f64)>,
    /// Every shift of the idle remainder, oldest first.
    pub shifts: Vec<Shift>,
    /// Some part is an estimate.
    pub estimated: bool,
}

/// See the module docs.
#[derive(Debug, Clone, Default)]
pub struct RemainderTracker {
    /// Splits taken up to here.
    done: f64,
    reference: Reference,
    /// Idle intervals since the reference was made, newest last (t0, remainder, parts, s).
    recent: Vec<(f64, f64, f64, f64)>,
    loaded: Fit,
    shifts: Vec<Shift>,
    any: bool,
}

impl RemainderTracker {
    pub fn new() -> Self {
        Self::default()
    }

    /// Take the wall's intervals the ledger has settled since the last call; `busy(t0, t1)`
    /// says whether a reply ran in that stretch (those fit the loaded line).
    pub fn update(&mut self, ledger: &Ledger, busy: impl Fn(f64, f64) -> bool) {
        let Some(until) = ledger.settled_until() else {
            return;
        };
        if until <= self.done {
            return;
        }
        let from = if self.any {
            self.done
        } else {
            f64::NEG_INFINITY
        };
        for s in ledger.wall_splits(from, until) {
            if s.t0 < self.done {
                continue;
            }
            self.done = s.t1;
            self.any = true;
            self.take(&s, busy(s.t0, s.t1));
        }
    }

    fn take(&mut self, s: &WallSplit, busy: bool) {
        let (rem, parts, secs) = (s.remainder_w(), s.parts_w(), s.seconds());
        if busy {
            self.loaded.add(parts, rem, secs);
            return;
        }
        if self.reference.seconds() < REFERENCE_S && self.shifts.is_empty() {
            self.reference.steps.push((rem, parts, secs));
            return;
        }
        self.recent.push((s.t0, rem, parts, secs));
        let mut held: f64 = self.recent.iter().map(|r| r.3).sum();
        while held - self.recent[0].3 >= RECENT_S {
            let old = self.recent.remove(0);
            held -= old.3;
            // Intervals that fell out of the window without a shift join the reference.
            self.reference.steps.push((old.1, old.2, old.3));
        }
        self.settle_last_shift();
        if held < RECENT_S {
            return;
        }
        let (Some(ref_w), Some(ref_parts)) = (self.reference.mean(0), self.reference.mean(1))
        else {
            return;
        };
        // Parts that draw more lose more in the PSU: expect that much more, at the loaded
        // slope (bounded: a PSU loses a fraction of what it delivers).
        let slope = self.loaded.line().map_or(0.0, |(_, b)| b.clamp(0.0, 0.5));
        let residual = |r: &(f64, f64, f64, f64)| r.1 - (ref_w + slope * (r.2 - ref_parts));
        let mean = self.recent.iter().map(|r| residual(r) * r.3).sum::<f64>() / held;
        let threshold = MIN_SHIFT_W.max(SHIFT_SIGMAS * self.reference.sd());
        if mean.abs() <= threshold {
            return;
        }
        // Every recent interval past half the shift marks its start.
        let t = self
            .recent
            .iter()
            .find(|r| residual(r).abs() > mean.abs() / 2.0 && residual(r).signum() == mean.signum())
            .map_or(self.recent[0].0, |r| r.0);
        let after: Vec<(f64, f64, f64)> = self
            .recent
            .iter()
            .filter(|r| r.0 >= t)
            .map(|r| (r.1, r.2, r.3))
            .collect();
        let new = Reference { steps: after };
        let after_w = new.mean(0).unwrap_or(ref_w + mean);
        self.shifts.push(Shift {
            t,
            watts: after_w - ref_w,
            before_w: ref_w,
            after_w,
        });
        self.reference = new;
        self.recent.clear();
    }

    /// A shift is flagged on a few seconds at the new level; its size is the mean of every
    /// idle interval since, until the new level has [`REFERENCE_S`] seconds (a few seconds'
    /// mean moves with the plug's timing on a busy machine).
    fn settle_last_shift(&mut self) {
        let Some(last) = self.shifts.last_mut() else {
            return;
        };
        if self.reference.seconds() >= REFERENCE_S {
            return;
        }
        let steps = self
            .reference
            .steps
            .iter()
            .copied()
            .chain(self.recent.iter().map(|r| (r.1, r.2, r.3)));
        let (j, s) = steps.fold((0.0, 0.0), |(j, s), x| (j + x.0 * x.2, s + x.2));
        if s > 0.0 {
            last.after_w = j / s;
            last.watts = last.after_w - last.before_w;
        }
    }

    /// The remainder now (over the last [`LIVE_S`] seconds the ledger settled), the fits and
    /// the shifts; `None` without a wall plug and parts.
    pub fn view(&self, ledger: &Ledger) -> Option<RemainderView> {
        let until = ledger.settled_until()?;
        let live = ledger
            .wall_split(until - LIVE_S, until)
            .or_else(|| ledger.wall_splits(f64::NEG_INFINITY, until).pop())?;
        Some(RemainderView {
            watts: live.remainder_w(),
            share: live.share().unwrap_or(0.0),
            wall_w: live.wall_w(),
            parts_w: live.parts_w(),
            idle_w: self.reference.mean(0),
            loaded: self.loaded.line(),
            shifts: self.shifts.clone(),
            estimated: live.estimated,
        })
    }

    pub fn shifts(&self) -> &[Shift] {
        &self.shifts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(t0: f64, parts: f64, rem: f64) -> WallSplit {
        WallSplit {
            t0,
            t1: t0 + 1.0,
            wall_j: parts + rem,
            parts_j: parts,
            estimated: false,
        }
    }

    /// Idle at 30 W of remainder with a little noise, 15 W more from t = 30: one shift of
    /// +15 W at 30; a reply's load (parts up, PSU losses with them) is no shift.
    #[test]
    fn a_lasting_idle_jump_is_a_shift_and_load_is_not() {
        let mut t = RemainderTracker::new();
        for i in 0..60 {
            let x = f64::from(i);
            let noise = if i % 2 == 0 { 0.3 } else { -0.3 };
            let busy = (15..20).contains(&i);
            let (parts, rem) = if busy {
                (200.0, 30.0 + 0.1 * 140.0)
            } else {
                (60.0, 30.0 + noise + if i >= 30 { 15.0 } else { 0.0 })
            };
            t.take(&split(x, parts, rem), busy);
        }
        assert_eq!(t.shifts.len(), 1, "{:?}", t.shifts);
        let s = t.shifts[0];
        assert_eq!(s.t, 30.0);
        assert!((s.watts - 15.0).abs() < 0.5, "{s:?}");
        assert!(
            s.describe()
                .starts_with("something else started drawing power: +15.")
        );
        // The loaded line: 30 W + 0.1 x (parts - 60) at 200 W of parts; no spread, flat.
        let (a, b) = t.loaded.line().expect("fit");
        assert!((a - 44.0).abs() < 1e-9 && b == 0.0, "{a} {b}");
        // And back: a shift down.
        for i in 60..80 {
            t.take(&split(f64::from(i), 60.0, 30.0), false);
        }
        assert_eq!(t.shifts.len(), 2);
        assert!((t.shifts[1].watts + 15.0).abs() < 0.5, "{:?}", t.shifts[1]);
        assert!(t.shifts[1].describe().contains("stopped"));
    }

    /// Flagged on the first 5 s, which read 2 W high (+17 W); the size settles on every idle
    /// interval since, until the new level has 10 s behind the detection window: the
    /// intervals 30..=43, (5 x 17 + 9 x 15) / 14 W.
    #[test]
    fn a_shift_settles_on_the_seconds_after_it() {
        let mut t = RemainderTracker::new();
        for i in 0..60 {
            let rem = match i {
                0..30 => 30.0,
                30..35 => 47.0,
                _ => 45.0,
            };
            t.take(&split(f64::from(i), 60.0, rem), false);
            if i == 34 {
                assert_eq!(t.shifts.len(), 1, "flagged at the end of the window");
                assert!((t.shifts[0].watts - 17.0).abs() < 1e-9, "{:?}", t.shifts);
            }
        }
        assert_eq!(t.shifts.len(), 1, "{:?}", t.shifts);
        let s = t.shifts[0];
        assert_eq!(s.t, 30.0);
        let settled = (5.0 * 17.0 + 9.0 * 15.0) / 14.0;
        assert!((s.watts - settled).abs() < 1e-9, "{s:?}");
        assert!((s.after_w - 30.0 - settled).abs() < 1e-9, "{s:?}");
    }

    #[test]
    fn noise_alone_is_no_shift() {
        let mut t = RemainderTracker::new();
        for i in 0..120 {
            let noise = [2.0, -1.5, 0.5, -2.5, 1.0][i % 5];
            t.take(&split(i as f64, 60.0, 30.0 + noise), false);
        }
        assert!(t.shifts.is_empty(), "{:?}", t.shifts);
    }

    #[test]
    fn the_loaded_line_has_the_psu_slope() {
        let mut f = Fit::default();
        for p in [100.0, 150.0, 200.0, 250.0] {
            f.add(p, 20.0 + 0.08 * p, 1.0);
        }
        let (a, b) = f.line().expect("line");
        assert!(
            (a - 20.0).abs() < 1e-9 && (b - 0.08).abs() < 1e-12,
            "{a} {b}"
        );
    }
}
