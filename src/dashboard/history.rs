//! The gauges' history: one timestamped value per second for each charted figure, kept for
//! the last minutes. Timestamps are the samples' own, so a chart's time axis stays true when
//! samples arrive late, irregularly or not at all (a gap stays a gap).

use std::collections::VecDeque;

/// One series: (seconds, value) in time order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct History {
    points: VecDeque<(f64, f64)>,
}

impl History {
    /// Seconds of history kept (the longest chart window).
    pub const SPAN: f64 = 600.0;
    /// A bound on points whatever the timestamps do (one a second over SPAN, and some slack).
    pub const CAPACITY: usize = 1200;

    /// Append a point; one older than the newest is dropped (a clock that went back must not
    /// fold the chart over itself), as is a value that is not finite.
    pub fn push(&mut self, t: f64, v: f64) {
        if !t.is_finite() || !v.is_finite() || self.last().is_some_and(|(lt, _)| t < lt) {
            return;
        }
        self.points.push_back((t, v));
        while self.points.len() > Self::CAPACITY
            || self
                .points
                .front()
                .is_some_and(|(ft, _)| t - ft > Self::SPAN)
        {
            self.points.pop_front();
        }
    }

    pub fn len(&self) -> usize {
        self.points.len()
    }

    pub fn is_empty(&self) -> bool {
        self.points.is_empty()
    }

    pub fn first(&self) -> Option<(f64, f64)> {
        self.points.front().copied()
    }

    pub fn last(&self) -> Option<(f64, f64)> {
        self.points.back().copied()
    }

    pub fn points(&self) -> impl DoubleEndedIterator<Item = (f64, f64)> + '_ {
        self.points.iter().copied()
    }

    /// The largest value with a timestamp in `from..=to`.
    pub fn max_between(&self, from: f64, to: f64) -> Option<f64> {
        self.points
            .iter()
            .filter(|(t, _)| *t >= from && *t <= to)
            .map(|(_, v)| *v)
            .max_by(f64::total_cmp)
    }

    /// A typical spacing of the points: the median step (robust to one long stall).
    pub fn typical_step(&self) -> Option<f64> {
        let mut steps: Vec<f64> = self
            .points
            .iter()
            .zip(self.points.iter().skip(1))
            .map(|(a, b)| b.0 - a.0)
            .collect();
        if steps.is_empty() {
            return None;
        }
        steps.sort_by(f64::total_cmp);
        Some(steps[steps.len() / 2])
    }

    /// One value per column for `columns` equal slices of `from..=to`: the peak of the points
    /// inside a slice (a one-second burst stays visible on a ten-minute chart), else the line
    /// between the points either side if they are at most `max_gap` apart, else `None`.
    pub fn columns(&self, from: f64, to: f64, columns: usize, max_gap: f64) -> Vec<Option<f64>> {
        let mut out = vec![None; columns];
        if columns == 0 || to <= from {
            return out;
        }
        let dt = (to - from) / columns as f64;
        let pts: Vec<(f64, f64)> = self.points.iter().copied().collect();
        // Index of the first point after the current slice's start.
        let mut i = pts.partition_point(|(t, _)| *t <= from);
        for (c, slot) in out.iter_mut().enumerate() {
            let (a, b) = (from + dt * c as f64, from + dt * (c + 1) as f64);
            let start = i;
            while i < pts.len() && pts[i].0 <= b {
                i += 1;
            }
            if i > start {
                *slot = pts[start..i].iter().map(|p| p.1).max_by(f64::total_cmp);
                continue;
            }
            // No point in (a, b]: interpolate across the slice's middle.
            let mid = (a + b) / 2.0;
            if start == 0 || start >= pts.len() {
                continue;
            }
            let (l, r) = (pts[start - 1], pts[start]);
            if r.0 - l.0 <= max_gap && r.0 > l.0 {
                *slot = Some(l.1 + (r.1 - l.1) * (mid - l.0) / (r.0 - l.0));
            }
        }
        out
    }
}

/// What one second of the dashboard adds to the history: plain figures, so this module needs
/// nothing of the app's state.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Record {
    /// The whole-machine power on the ledger's basis, when there is one.
    pub total_w: Option<f64>,
    /// Each component's watts, keyed by [`part_keys`].
    pub parts_w: Vec<(String, f64)>,
    pub cpu_temp: Option<f64>,
    pub gpu_temp: Option<f64>,
    /// The live generation rate (0 between replies).
    pub tok_s: f64,
}

/// Every charted series, recorded together once a second.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Histories {
    pub power: History,
    /// Power per component, in first-seen order.
    pub parts: Vec<(String, History)>,
    pub cpu_temp: History,
    pub gpu_temp: History,
    pub speed: History,
    /// Timestamp of the latest record: the right edge ("now") of every chart.
    pub now: Option<f64>,
    /// Timestamp of the first record: the span the charts can cover.
    pub since: Option<f64>,
    last_second: Option<i64>,
}

impl Histories {
    /// Record the first sample of each second (samples come at several Hz); later ones in the
    /// same second are skipped. Returns whether anything was recorded.
    pub fn record(&mut self, t: f64, r: Record) -> bool {
        let second = t.floor() as i64;
        if !t.is_finite() || self.last_second == Some(second) || self.now.is_some_and(|n| t < n) {
            return false;
        }
        self.last_second = Some(second);
        self.now = Some(t);
        self.since.get_or_insert(t);
        // A missing figure is a gap in its chart, not a zero.
        if let Some(w) = r.total_w {
            self.power.push(t, w);
        }
        for (key, w) in r.parts_w {
            match self.parts.iter_mut().find(|(k, _)| *k == key) {
                Some((_, h)) => h.push(t, w),
                None => {
                    let mut h = History::default();
                    h.push(t, w);
                    self.parts.push((key, h));
                }
            }
        }
        if let Some(c) = r.cpu_temp {
            self.cpu_temp.push(t, c);
        }
        if let Some(c) = r.gpu_temp {
            self.gpu_temp.push(t, c);
        }
        self.speed.push(t, r.tok_s);
        true
    }

    /// The history of a component by its key.
    pub fn part(&self, key: &str) -> Option<&History> {
        self.parts.iter().find(|(k, _)| k == key).map(|(_, h)| h)
    }

    /// Seconds of history the charts can show: from the first record (or the oldest kept)
    /// to the latest.
    pub fn span(&self) -> f64 {
        match (self.since, self.now) {
            (Some(a), Some(b)) => (b - a).clamp(0.0, History::SPAN),
            _ => 0.0,
        }
    }
}

/// Keys that tell components apart when two share a label (two GPUs: "GPU", "GPU 2").
pub fn part_keys<'a>(labels: impl Iterator<Item = &'a str>) -> Vec<String> {
    let mut seen: Vec<(&str, usize)> = Vec::new();
    labels
        .map(|l| match seen.iter_mut().find(|(s, _)| *s == l) {
            Some((_, n)) => {
                *n += 1;
                format!("{l} {n}")
            }
            None => {
                seen.push((l, 1));
                l.to_string()
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_keeps_time_order_and_the_last_ten_minutes() {
        let mut h = History::default();
        h.push(0.0, 1.0);
        h.push(5.0, 2.0);
        h.push(4.0, 9.0); // a clock that went back
        h.push(6.0, f64::NAN);
        assert_eq!(h.points().collect::<Vec<_>>(), vec![(0.0, 1.0), (5.0, 2.0)]);
        h.push(604.0, 3.0);
        assert_eq!(h.first(), Some((5.0, 2.0)));
        assert_eq!(h.len(), 2);
    }

    #[test]
    fn columns_take_peaks_interpolate_short_gaps_and_keep_long_ones() {
        let mut h = History::default();
        for (t, v) in [
            (0.0, 0.0),
            (1.0, 10.0),
            (1.5, 30.0),
            (2.0, 20.0),
            (10.0, 5.0),
        ] {
            h.push(t, v);
        }
        // Ten one-second slices of 0..=10.
        let c = h.columns(0.0, 10.0, 10, 3.0);
        assert_eq!(c[0], Some(10.0)); // (0, 1]: the point at 1
        assert_eq!(c[1], Some(30.0)); // (1, 2]: peak of 30 and 20
        assert_eq!(c[2], None, "8 s between 2 and 10 is a gap, not a line");
        assert_eq!(c[9], Some(5.0));
        // The same points with a generous gap: the middle is the line from 20 to 5.
        let c = h.columns(0.0, 10.0, 10, 10.0);
        assert_eq!(c[2], Some(20.0 - 15.0 * 0.5 / 8.0));
        // Before the first point there is nothing.
        assert_eq!(h.columns(-5.0, -1.0, 4, 10.0), vec![None; 4]);
    }

    #[test]
    fn record_takes_one_point_a_second_and_leaves_gaps_for_missing_figures() {
        let mut hs = Histories::default();
        let rec = |w: Option<f64>| Record {
            total_w: w,
            parts_w: vec![("GPU".into(), 80.0)],
            tok_s: 0.0,
            ..Record::default()
        };
        assert!(hs.record(10.2, rec(Some(100.0))));
        assert!(!hs.record(10.7, rec(Some(999.0))), "same second");
        assert!(hs.record(11.0, rec(None)));
        assert!(hs.record(12.9, rec(Some(120.0))));
        assert_eq!(
            hs.power.points().collect::<Vec<_>>(),
            vec![(10.2, 100.0), (12.9, 120.0)]
        );
        assert_eq!(hs.part("GPU").map(History::len), Some(3));
        assert_eq!(hs.speed.len(), 3);
        assert!((hs.span() - 2.7).abs() < 1e-9);
    }

    #[test]
    fn part_keys_tell_twins_apart() {
        assert_eq!(
            part_keys(["GPU", "GPU", "CPU"].into_iter()),
            vec!["GPU", "GPU 2", "CPU"]
        );
    }
}
