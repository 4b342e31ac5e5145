//! Two more views of what the ledger holds, computed here and nowhere else:
//!
//! - **Any channel's energy**, shadowed or not ([`Ledger::channel_energy`]): a power reading
//!   that stands aside for its counter still holds its own integral, so the two views of one
//!   energy can be set against each other (`llmtop doctor`'s cross-check, zeusd-style).
//! - **The wall against the parts** ([`Ledger::wall_split`], [`Ledger::wall_splits`]): over
//!   the wall plug's own sampling intervals, the wall's energy and the components' (GPU
//!   boards, CPU packages, DRAM). What the parts do not explain is the remainder: PSU losses,
//!   board, fans, disks, anything else plugged into the machine.

use super::{Channel, Kind, Ledger};
use crate::accounting::energy::TotalBasis;
use crate::sensors::{Covers, Method};

/// The wall and the parts over one stretch of time.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WallSplit {
    pub t0: f64,
    pub t1: f64,
    /// Joules the wall plug(s) measured.
    pub wall_j: f64,
    /// Joules the components measured (or estimated) over the same stretch.
    pub parts_j: f64,
    /// Some part is an estimate (utilisation x TDP).
    pub estimated: bool,
}

impl WallSplit {
    pub fn seconds(&self) -> f64 {
        self.t1 - self.t0
    }

    /// The wall less the parts, J: signed (parts that over-read show as negative).
    pub fn remainder_j(&self) -> f64 {
        self.wall_j - self.parts_j
    }

    pub fn wall_w(&self) -> f64 {
        self.wall_j / self.seconds()
    }

    pub fn parts_w(&self) -> f64 {
        self.parts_j / self.seconds()
    }

    pub fn remainder_w(&self) -> f64 {
        self.remainder_j() / self.seconds()
    }

    /// The remainder's share of the wall, 0..1 (`None` when the wall read nothing).
    pub fn share(&self) -> Option<f64> {
        (self.wall_j > 0.0).then(|| self.remainder_j() / self.wall_j)
    }
}

impl Ledger {
    /// The sampler time of wall-clock instant `at` (the inverse of [`Ledger::wall_at`]);
    /// `None` without a wall clock.
    pub fn t_of(&self, at: jiff::Timestamp) -> Option<f64> {
        let origin = self.wall_origin?;
        Some((at.as_nanosecond() - origin.as_nanosecond()) as f64 / 1e9)
    }

    /// Joules of channel `id` over `[t0, t1]` and the seconds of it with data, whether or not
    /// it stands aside for another (`None`: no such channel, or no overlap).
    pub fn channel_energy(&self, id: &str, t0: f64, t1: f64) -> Option<(f64, f64)> {
        self.channels.get(id)?.energy_over(t0, t1)
    }

    /// The channels that stand (not shadowed) and cover what `covers` lists.
    fn standing(&self, covers: &[Covers]) -> Vec<&Channel> {
        self.channels
            .iter()
            .filter(|(id, c)| covers.contains(&c.covers) && !self.shadowed(id, c, false))
            .map(|(_, c)| c)
            .collect()
    }

    /// The wall against the parts over each of the wall's own sampling intervals inside
    /// `[t0, t1]`, where every wall and part channel has data on both sides and the wall did
    /// not fall silent. Empty without a wall plug or without parts.
    pub fn wall_splits(&self, t0: f64, t1: f64) -> Vec<WallSplit> {
        let walls = self.standing(TotalBasis::Wall.covers());
        let parts = self.standing(TotalBasis::Components.covers());
        let Some(lead) = walls.first() else {
            return Vec::new();
        };
        if parts.is_empty() {
            return Vec::new();
        }
        let all: Vec<&Channel> = walls.iter().chain(parts.iter()).copied().collect();
        let covered = |t: f64| {
            all.iter()
                .all(|c| c.first_t().is_some_and(|f| f <= t) && c.last_t().is_some_and(|l| t <= l))
        };
        let estimated = parts.iter().any(|c| c.method == Method::Estimated);
        let sum = |chs: &[&Channel], a: f64, b: f64| -> Option<f64> {
            chs.iter().map(|c| Some(c.j_at(b)? - c.j_at(a)?)).sum()
        };
        let silence = lead.silence_s();
        let from = lead.points.partition_point(|p| p.t < t0).saturating_sub(1);
        lead.points[from..]
            .windows(2)
            .map(|w| (w[0].t, w[1].t))
            .filter(|&(a, b)| a >= t0 && b <= t1 && b > a && b - a <= silence)
            .filter(|&(a, b)| covered(a) && covered(b))
            // A power channel across a silence holds no energy: such a stretch is not split.
            .filter(|&(a, b)| {
                all.iter()
                    .all(|c| c.kind == Kind::Counter || !c.gap_between(a, b))
            })
            .filter_map(|(a, b)| {
                Some(WallSplit {
                    t0: a,
                    t1: b,
                    wall_j: sum(&walls, a, b)?,
                    parts_j: sum(&parts, a, b)?,
                    estimated,
                })
            })
            .collect()
    }

    /// [`Self::wall_splits`] over `[t0, t1]` added up: one split for the whole stretch.
    pub fn wall_split(&self, t0: f64, t1: f64) -> Option<WallSplit> {
        let steps = self.wall_splits(t0, t1);
        let (first, last) = (steps.first()?, steps.last()?);
        Some(WallSplit {
            t0: first.t0,
            t1: last.t1,
            wall_j: steps.iter().map(|s| s.wall_j).sum(),
            parts_j: steps.iter().map(|s| s.parts_j).sum(),
            estimated: first.estimated,
        })
    }
}

impl Channel {
    /// Whether the readings between `a` and `b` hold a silence (an interval nothing was
    /// integrated over).
    fn gap_between(&self, a: f64, b: f64) -> bool {
        let silence = self.silence_s();
        let from = self.points.partition_point(|p| p.t < a).saturating_sub(1);
        self.points[from..]
            .windows(2)
            .take_while(|w| w[0].t < b)
            .any(|w| w[1].t - w[0].t > silence)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sensors::{Quantity, Reading, Sample, Source};

    fn reading(id: &str, covers: Covers, q: Quantity, v: f64) -> Reading {
        Reading {
            id: id.into(),
            device: "d".into(),
            label: "l".into(),
            quantity: q,
            value: Some(v),
            limit: None,
            source: Source::System,
            covers,
            method: if q == Quantity::Energy {
                Method::Counter
            } else {
                Method::Measured
            },
            rejected: None,
            via: None,
        }
    }

    /// A plug at 1 Hz (a counter), a CPU counter and a GPU power reading at 4 Hz: every
    /// wall interval splits into the parts and the rest, and a 15 W load that only the
    /// wall sees from t = 5 s shows in the remainder alone.
    #[test]
    fn the_remainder_is_the_wall_less_the_parts_per_wall_interval() {
        let rest = |t: f64| if t < 5.0 { 30.0 } else { 45.0 };
        let mut wall_j = 0.0;
        let mut l = Ledger::new().expecting(Some(TotalBasis::Wall));
        for i in 0..=40 {
            let t = f64::from(i) * 0.25;
            if i > 0 {
                wall_j += 0.25 * (40.0 + 100.0 + rest(t - 0.125));
            }
            let mut r = vec![
                reading(
                    "rapl:pkg:energy",
                    Covers::CpuPackage,
                    Quantity::Energy,
                    40.0 * t,
                ),
                reading("hwmon:gpu:power1", Covers::GpuBoard, Quantity::Power, 100.0),
            ];
            if i % 4 == 0 {
                r.push(reading(
                    "plug:p:energy",
                    Covers::Wall,
                    Quantity::Energy,
                    wall_j,
                ));
                r.push(reading(
                    "plug:p:power",
                    Covers::Wall,
                    Quantity::Power,
                    140.0 + rest(t),
                ));
            }
            l.push(&Sample { t, readings: r });
        }
        let steps = l.wall_splits(0.0, 10.0);
        assert_eq!(steps.len(), 10, "{steps:?}");
        for s in &steps {
            assert!((s.parts_w() - 140.0).abs() < 1e-9, "{s:?}");
            let want = if s.t0 < 5.0 { 30.0 } else { 45.0 };
            assert!((s.remainder_w() - want).abs() < 1e-9, "{s:?}");
        }
        let whole = l.wall_split(0.0, 10.0).expect("split");
        assert!((whole.remainder_j() - (30.0 * 5.0 + 45.0 * 5.0)).abs() < 1e-6);
        assert!((whole.share().expect("share") - 375.0 / whole.wall_j).abs() < 1e-12);
        // The plug's power reading stands aside for its counter, yet holds its own energy:
        // 10 s at 170 W, then 185 W, the step at 5 s seen as a ramp from the 4 s reading.
        let (j, s) = l.channel_energy("plug:p:power", 0.0, 10.0).expect("power");
        assert_eq!(s, 10.0);
        assert!(
            (j - (170.0 * 4.0 + 177.5 + 185.0 * 5.0)).abs() < 1e-6,
            "{j}"
        );
        assert_eq!(l.channel_energy("nope", 0.0, 10.0), None);
        // Without a wall, nothing to split.
        let mut parts_only = Ledger::new();
        parts_only.push(&Sample {
            t: 0.0,
            readings: vec![reading(
                "rapl:pkg:energy",
                Covers::CpuPackage,
                Quantity::Energy,
                0.0,
            )],
        });
        assert!(parts_only.wall_splits(0.0, 10.0).is_empty());
    }
}
