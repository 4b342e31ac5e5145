//! Cumulative counters (RAPL `energy_uj`, hwmon `energy*_input`, NVML total energy, plug
//! totals): the one rule for the step between two readings, wrap and reset included.

use super::Source;

/// How often a source's energy counter moves, where that is coarse next to a sampler's
/// period: NVML's total-energy counter updates about every 100 ms. A window shorter than two
/// of its steps holds 0, 1 or 2 of them, so its difference says little (the ledger apportions
/// such a window from the steps around it). `None`: fine-grained (RAPL: about 1 ms).
pub fn update_step_s(source: Source) -> Option<f64> {
    match source {
        Source::Nvml => Some(0.1),
        _ => None,
    }
}

/// One step of a cumulative counter.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum CounterStep {
    /// `cur >= prev`: the counter advanced by this much.
    Advanced(f64),
    /// The counter passed its wrap point once; this much was consumed.
    Wrapped(f64),
    /// The counter went backwards with no plausible wrap (driver reload, device reset, reboot
    /// of a plug): the interval's energy is unknown and counted as zero.
    Reset,
}

impl CounterStep {
    /// The energy this step contributes.
    pub fn energy(self) -> f64 {
        match self {
            CounterStep::Advanced(d) | CounterStep::Wrapped(d) => d,
            CounterStep::Reset => 0.0,
        }
    }
}

/// From `prev` to `cur` of a counter that wraps to zero at `wrap` (if known).
///
/// A wrap is only believed when the consumed amount is under half the range: a sampler reads
/// far more often than that (RAPL at 200 W wraps every ~22 minutes), so a larger "wrap" is
/// really a reset.
pub fn counter_delta(prev: f64, cur: f64, wrap: Option<f64>) -> CounterStep {
    if !prev.is_finite() || !cur.is_finite() {
        return CounterStep::Reset;
    }
    if cur >= prev {
        return CounterStep::Advanced(cur - prev);
    }
    match wrap {
        Some(w) if w > 0.0 && prev <= w && cur >= 0.0 => {
            let d = cur + (w - prev);
            if d <= w / 2.0 {
                CounterStep::Wrapped(d)
            } else {
                CounterStep::Reset
            }
        }
        _ => CounterStep::Reset,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counter_wraps_and_resets() {
        assert_eq!(counter_delta(10.0, 25.0, None), CounterStep::Advanced(15.0));
        // RAPL: max 262143.328850 J; from 262140 to 5 is 3.32885 + 5.
        let d = counter_delta(262_140.0, 5.0, Some(262_143.328_85));
        match d {
            CounterStep::Wrapped(x) => assert!((x - 8.328_85).abs() < 1e-6, "{x}"),
            other => panic!("expected wrap, got {other:?}"),
        }
        // Backwards by most of the range: a reset, not a wrap of 200 kJ in one tick.
        assert_eq!(
            counter_delta(1000.0, 10.0, Some(262_143.328_85)),
            CounterStep::Reset
        );
        // No wrap point known (NVML mJ counter): backwards is a reset.
        assert_eq!(counter_delta(50.0, 3.0, None), CounterStep::Reset);
        assert_eq!(CounterStep::Reset.energy(), 0.0);
    }
}
