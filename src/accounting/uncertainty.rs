//! How sure each energy figure is: the one table of measuring method → error band, with each
//! band's source, and the rules the ledger follows to carry the bands from each channel to every
//! total, window, J/token, cost and CO2.
//!
//! A [`Band`] says where the truth lies around a figure `x`: between `x·(1+lo)` and `x·(1+hi)`.
//! Sources publish a reading's error against the truth instead ("reads −60 % to +190 % off
//! RAPL"); [`Band::from_reading_error`] turns one into the other (the truth of an estimate that
//! reads 190 % high is 1/2.9 of it: −66 %).
//!
//! A channel's error over a window has two parts:
//!
//! - **Gain**: the method's own systematic error ([`MethodBand::gain`]), the same fraction of
//!   every joule the channel counts. It does not average away over time.
//! - **Window**: what the sampling adds, in joules, whatever the window's length, so it weighs
//!   more on a short window than on a long one ([`window_error_j`]): a counter's update step at
//!   the edges (NVML's ~100 ms, a plug's ~1 s), the interpolation between two readings at each
//!   edge, the power between readings of a sampled channel (trapezoid), and the lag of a
//!   device-averaged reading (NVML's 1 s average trails a step by half a second).
//!
//! **Combination.** Per-sensor errors are systematic (a counter that reads 3 % high reads 3 %
//! high on every joule), so over the channels of a total they add linearly: the worst case, all
//! sensors wrong the same way. That is the conservative choice; quadrature (a root sum of
//! squares) holds only for independent random errors, and two or three systematic channels
//! give no such cancellation to rely on. Over time the total's band is the energy-weighted mix
//! of its channels' (a change of basis mixes bands by the energy drawn on each). Net of idle:
//! the idle floor is read by the same sensors, so a gain error scales the net as it scales the
//! gross (the same fraction); the window part stays in joules and weighs on the smaller net.
//! J/token, cost and CO2 take the band of the energy they divide or price: tokens are counted
//! exactly and a tariff's price per joule is a given, not a measurement.

use crate::sensors::{Method, Source};
use serde::{Deserialize, Serialize};

/// Where the truth lies around a figure `x`: `[x·(1+lo), x·(1+hi)]`, `lo <= 0 <= hi`.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Band {
    /// The truth may be this fraction lower (negative, at least −1).
    pub lo: f64,
    /// ... or this fraction higher.
    pub hi: f64,
}

/// Above this (either side) the screen says in words how far off a figure could be.
pub const WIDE: f64 = 0.25;

impl Band {
    pub const ZERO: Band = Band { lo: 0.0, hi: 0.0 };

    /// `±r`.
    pub const fn pm(r: f64) -> Self {
        Band { lo: -r, hi: r }
    }

    /// From a published error of the readings against the truth, `reading = truth·(1+e)`
    /// with `e` in `[e_lo, e_hi]`: the truth is `reading/(1+e)`.
    pub fn from_reading_error(e_lo: f64, e_hi: f64) -> Self {
        Band {
            lo: 1.0 / (1.0 + e_hi) - 1.0,
            hi: 1.0 / (1.0 + e_lo) - 1.0,
        }
    }

    /// Two errors in a chain (an estimate judged against RAPL, RAPL against the truth): the
    /// factors multiply.
    pub fn then(self, other: Band) -> Self {
        Band {
            lo: (1.0 + self.lo) * (1.0 + other.lo) - 1.0,
            hi: (1.0 + self.hi) * (1.0 + other.hi) - 1.0,
        }
    }

    /// The truth's range for a figure `x`.
    pub fn range(self, x: f64) -> (f64, f64) {
        (x * (1.0 + self.lo), x * (1.0 + self.hi))
    }

    /// Whether `truth` lies in the band around `x` (with `slack` of `x` for rounding).
    pub fn contains(self, x: f64, truth: f64, slack: f64) -> bool {
        let (a, b) = self.range(x);
        let s = slack * x.abs();
        truth >= a.min(b) - s && truth <= a.max(b) + s
    }

    /// The largest side, as a fraction.
    pub fn half_width(self) -> f64 {
        self.hi.max(-self.lo)
    }

    /// Wider than [`WIDE`] on either side: the screen says so in words.
    pub fn is_wide(self) -> bool {
        self.half_width() > WIDE
    }

    fn is_finite(self) -> bool {
        self.lo.is_finite() && self.hi.is_finite()
    }

    /// "±2 %", "±0.4 %", or "−3…+5 %" where the sides differ once rounded.
    pub fn text(self) -> String {
        if !self.is_finite() {
            return "±? %".into();
        }
        let (lo, hi) = (pct(-self.lo), pct(self.hi));
        if lo == hi {
            format!("±{hi} %")
        } else {
            format!("−{lo}…+{hi} %")
        }
    }

    /// The band in words where it is wide: "could be −66 %…+150 %", "could be ±30 %";
    /// `None` when narrow.
    pub fn words(self) -> Option<String> {
        (self.is_wide() || !self.is_finite()).then(|| {
            if !self.is_finite() {
                return "could be far off (too little energy to judge)".to_string();
            }
            let (lo, hi) = (pct(-self.lo), pct(self.hi));
            if lo == hi {
                format!("could be ±{hi} %")
            } else {
                format!("could be −{lo} %…+{hi} %")
            }
        })
    }
}

/// A percentage for a band: one decimal under 1 %, none above (a band is never exact to
/// better than that).
fn pct(fraction: f64) -> String {
    let p = (fraction * 100.0).max(0.0);
    if p < 0.95 {
        format!("{:.1}", (p * 10.0).round() / 10.0)
    } else {
        format!("{:.0}", p.round())
    }
}

/// One row of the table: a way of measuring energy and what it allows.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MethodBand {
    /// Stable name: "rapl_intel", "nvml_counter", ...
    pub key: &'static str,
    /// What is read, in words.
    pub what: &'static str,
    /// The systematic error of every joule counted.
    pub gain: Band,
    /// A counter's update step, s: between two updates it holds still, so a window's edge may
    /// miss up to this long of energy (NVML ~0.1 s, a plug ~1 s, RAPL ~1 ms).
    pub step_s: f64,
    /// A power reading's own averaging window, s (NVML's 1 s average); 0: instantaneous.
    pub average_s: f64,
    /// A counter's resolution, J: each edge reads up to this much low.
    pub resolution_j: f64,
    /// Where the band comes from: a paper, a vendor's page, or "assumed" with why.
    pub source: &'static str,
}

impl MethodBand {
    /// The band in the table's words: "±5 %", "−67…+163 %".
    pub fn band_text(&self) -> String {
        self.gain.text()
    }
}

/// CodeCarbon's accuracy page: its CPU-load x TDP estimate read −60 % to +190 % against RAPL
/// on the machines profiled, which is itself within RAPL's band of the truth.
const ESTIMATE_GAIN: Band = Band {
    // 1/2.9 × 0.95 − 1 and 1/0.4 × 1.05 − 1 ([`Band::from_reading_error`] then RAPL's ±5 %);
    // written out because a const cannot call it. Checked by a test.
    lo: -0.672_413_793_103_448_3,
    hi: 1.625,
};

/// The table. Every figure's band is decided from a reading's provenance ([`method_band`]),
/// once; README.md shows the same rows (a test keeps them in step).
pub const TABLE: [MethodBand; 14] = [
    MethodBand {
        key: "rapl_intel",
        what: "RAPL energy counter (Intel, energy_uj)",
        gain: Band::pm(0.05),
        step_s: 0.001,
        average_s: 0.0,
        resolution_j: 0.0,
        source: "measured, not modelled, since Haswell (Hackenberg et al., IPDPSW 2015); package and DRAM track a wall meter closely on Haswell and Skylake (Khan et al., ACM TOMPECS 2018, \"RAPL in Action\"); ±5 % assumed from those",
    },
    MethodBand {
        key: "rapl_amd",
        what: "RAPL energy counter (AMD Zen, energy_uj)",
        gain: Band::pm(0.20),
        step_s: 0.001,
        average_s: 0.0,
        resolution_j: 0.0,
        source: "a model, not a measurement: it misses data-dependent power (Schöne et al., \"Energy Efficiency Aspects of the AMD Zen 2 Architecture\", IEEE Cluster 2021); no published bound, ±20 % assumed (four times Intel's)",
    },
    MethodBand {
        key: "nvml_counter",
        what: "NVML energy counter (nvmlDeviceGetTotalEnergyConsumption)",
        gain: Band::pm(0.05),
        step_s: 0.1,
        average_s: 0.0,
        resolution_j: 0.001,
        source: "NVML's reference: power within ±5 % of draw (stated for Fermi and Kepler, assumed for newer boards); the counter moves every ~100 ms and A100/H100 sample power 25 % of the time (Yang et al., SC24, arXiv 2312.02741): one step at each edge",
    },
    MethodBand {
        key: "nvml_instant",
        what: "NVML instant power (NVML_FI_DEV_POWER_INSTANT), integrated",
        gain: Band::pm(0.05),
        step_s: 0.0,
        average_s: 0.0,
        resolution_j: 0.0,
        source: "NVML's ±5 % of draw (stated for Fermi and Kepler, assumed since); sampled, so the power between readings is not seen",
    },
    MethodBand {
        key: "nvml_average",
        what: "NVML power (nvmlDeviceGetPowerUsage, 1 s average), integrated",
        gain: Band::pm(0.05),
        step_s: 0.0,
        average_s: 1.0,
        resolution_j: 0.0,
        source: "NVML's ±5 % of draw (stated for Fermi and Kepler, assumed since), averaged over 1 s on Ampere and newer (except GA100): a load step shows half a second late",
    },
    MethodBand {
        key: "hwmon_power_input",
        what: "hwmon power*_input (amdgpu, instantaneous), integrated",
        gain: Band::pm(0.10),
        step_s: 0.0,
        average_s: 0.0,
        resolution_j: 0.0,
        source: "no published accuracy for the firmware's figure; ±10 % assumed",
    },
    MethodBand {
        key: "hwmon_power_average",
        what: "hwmon power*_average (amdgpu, firmware average), integrated",
        gain: Band::pm(0.10),
        step_s: 0.0,
        average_s: 1.0,
        resolution_j: 0.0,
        source: "no published accuracy nor window; ±10 % and a 1 s average assumed (like NVML's)",
    },
    MethodBand {
        key: "hwmon_energy",
        what: "hwmon energy*_input (Intel i915/xe GPU counter)",
        gain: Band::pm(0.10),
        step_s: 0.001,
        average_s: 0.0,
        resolution_j: 0.0,
        source: "the card's own counter; no published accuracy, ±10 % assumed",
    },
    MethodBand {
        key: "battery",
        what: "battery power_now (fuel gauge), integrated while discharging",
        gain: Band::pm(0.10),
        step_s: 0.0,
        average_s: 5.0,
        resolution_j: 0.0,
        source: "not precise and refreshed every 1 s to 5 s or more (R. Chen, The Old New Thing, 2010-09-24); ±10 % and a 5 s average assumed",
    },
    MethodBand {
        key: "plug_power",
        what: "smart plug power (Shelly apower, Tasmota Power, Home Assistant W), integrated",
        gain: Band::pm(0.05),
        step_s: 0.0,
        average_s: 1.0,
        resolution_j: 0.0,
        source: "consumer plugs publish no accuracy (their metering chips are specified near ±1 %, their calibration is not); ±5 % assumed; they update about once a second",
    },
    MethodBand {
        key: "plug_counter_wh",
        what: "smart plug counter (Shelly Gen2 aenergy.total, Wh)",
        gain: Band::pm(0.05),
        step_s: 1.0,
        average_s: 0.0,
        resolution_j: 3.6,
        source: "as the plug's power; 0.001 Wh resolution; about once a second",
    },
    MethodBand {
        key: "plug_counter_wmin",
        what: "smart plug counter (Shelly Gen1 meters[0].total, watt-minutes)",
        gain: Band::pm(0.05),
        step_s: 1.0,
        average_s: 0.0,
        resolution_j: 60.0,
        source: "as the plug's power; whole watt-minutes (60 J)",
    },
    MethodBand {
        key: "plug_counter_kwh",
        what: "smart plug counter (Home Assistant kWh)",
        gain: Band::pm(0.05),
        step_s: 1.0,
        average_s: 0.0,
        resolution_j: 3600.0,
        source: "as the plug's power; entities usually keep 0.001 kWh (3.6 kJ)",
    },
    MethodBand {
        key: "estimate",
        what: "CPU estimate (idle + (TDP − idle) × utilisation)",
        gain: ESTIMATE_GAIN,
        step_s: 0.0,
        average_s: 0.0,
        resolution_j: 0.0,
        source: "CodeCarbon's accuracy page: its CPU-load × TDP estimate read −60 % to +190 % against RAPL (docs/explanation/accuracy.md), then RAPL's own ±5 %",
    },
];

/// What an unknown way of measuring gets: none should reach it, but a figure never goes
/// without a band.
pub const UNKNOWN: MethodBand = MethodBand {
    key: "unknown",
    what: "a source this table does not know",
    gain: Band::pm(0.25),
    step_s: 1.0,
    average_s: 1.0,
    resolution_j: 0.0,
    source: "no basis; ±25 %",
};

fn row(key: &str) -> &'static MethodBand {
    TABLE.iter().find(|r| r.key == key).unwrap_or(&UNKNOWN)
}

/// The one place a reading's provenance becomes its band: the source, how it was read, and
/// the call or file (`Reading::via`).
pub fn method_band(source: Source, method: Method, via: Option<&str>) -> &'static MethodBand {
    let via = via.unwrap_or("");
    let key = match (source, method) {
        (Source::Estimate, _) | (_, Method::Estimated) => "estimate",
        (Source::Rapl, _) if via.contains("AMD") => "rapl_amd",
        (Source::Rapl, _) => "rapl_intel",
        (Source::Nvml, Method::Counter) => "nvml_counter",
        (Source::Nvml, _) if via.contains("INSTANT") => "nvml_instant",
        (Source::Nvml, _) => "nvml_average",
        (Source::Hwmon, Method::Counter) => "hwmon_energy",
        // The rate of an energy counter, where it is integrated at all.
        (Source::Hwmon, _) if via.contains("difference") => "hwmon_energy",
        (Source::Hwmon, _) if via.contains("average") => "hwmon_power_average",
        (Source::Hwmon, _) => "hwmon_power_input",
        (Source::Battery, _) => "battery",
        (Source::Plug, Method::Counter) if via.contains("watt-minutes") => "plug_counter_wmin",
        (Source::Plug, Method::Counter) if via.contains("kWh") => "plug_counter_kwh",
        (Source::Plug, Method::Counter) => "plug_counter_wh",
        (Source::Plug, _) => "plug_power",
        (Source::System, _) => "unknown",
    };
    row(key)
}

/// One channel's error over a window, in joules: the truth lies in
/// `[energy + lo_j, energy + hi_j]`. Adds linearly (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct ErrorJ {
    /// The joules the error is about.
    pub energy_j: f64,
    /// The gain part, J (`lo` ≤ 0 ≤ `hi`).
    pub gain_lo_j: f64,
    pub gain_hi_j: f64,
    /// The sampling part, J, on each side.
    pub window_lo_j: f64,
    pub window_hi_j: f64,
}

impl ErrorJ {
    /// `energy_j` counted with `gain`, plus sampling errors.
    pub fn of(energy_j: f64, gain: Band, window_lo_j: f64, window_hi_j: f64) -> Self {
        let e = energy_j.max(0.0);
        Self {
            energy_j,
            gain_lo_j: gain.lo * e,
            gain_hi_j: gain.hi * e,
            window_lo_j: window_lo_j.max(0.0),
            window_hi_j: window_hi_j.max(0.0),
        }
    }

    /// The same error for `f` times the energy (an apportioned window, a share): every part
    /// scales.
    pub fn scaled(self, f: f64) -> Self {
        let f = f.max(0.0);
        Self {
            energy_j: self.energy_j * f,
            gain_lo_j: self.gain_lo_j * f,
            gain_hi_j: self.gain_hi_j * f,
            window_lo_j: self.window_lo_j * f,
            window_hi_j: self.window_hi_j * f,
        }
    }

    /// Widen the sampling part by `lo_j` and `hi_j`.
    pub fn widen(self, lo_j: f64, hi_j: f64) -> Self {
        Self {
            window_lo_j: self.window_lo_j + lo_j.max(0.0),
            window_hi_j: self.window_hi_j + hi_j.max(0.0),
            ..self
        }
    }

    /// The energy-weighted gain of the channels summed, as a band.
    pub fn gain(&self) -> Option<Band> {
        (self.energy_j > 0.0).then(|| Band {
            lo: self.gain_lo_j / self.energy_j,
            hi: self.gain_hi_j / self.energy_j,
        })
    }

    /// The band of a figure of `x` joules measured this way (`x` = the energy itself, or its
    /// net of idle): the gain as a fraction of `x`, the sampling part in joules.
    pub fn band_of(&self, x: f64) -> Option<Band> {
        if !(x.is_finite() && x > 0.0) {
            return None;
        }
        let gain = self.gain().unwrap_or(Band::ZERO);
        Some(Band {
            lo: (gain.lo - self.window_lo_j / x).max(-1.0),
            hi: gain.hi + self.window_hi_j / x,
        })
    }

    /// [`Self::band_of`] the energy itself.
    pub fn band(&self) -> Option<Band> {
        self.band_of(self.energy_j)
    }
}

/// Linear sum: the conservative rule for systematic errors.
impl std::ops::Add for ErrorJ {
    type Output = Self;

    fn add(self, o: ErrorJ) -> Self {
        Self {
            energy_j: self.energy_j + o.energy_j,
            gain_lo_j: self.gain_lo_j + o.gain_lo_j,
            gain_hi_j: self.gain_hi_j + o.gain_hi_j,
            window_lo_j: self.window_lo_j + o.window_lo_j,
            window_hi_j: self.window_hi_j + o.window_hi_j,
        }
    }
}

/// The sampling error a channel adds over a window, in joules on each side (see the module
/// docs). Pure arithmetic on what the ledger knows about the channel around the window.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct WindowFacts {
    /// The window's length, s.
    pub length_s: f64,
    /// Power at the window's start and end (readings, or a counter's rate there), W.
    pub p_start_w: f64,
    pub p_end_w: f64,
    /// The range of the power around each edge (the readings or rates either side of it), W:
    /// what the interpolation between two readings may miss there.
    pub swing_start_w: f64,
    pub swing_end_w: f64,
    /// The interval between readings at each edge, s.
    pub gap_start_s: f64,
    pub gap_end_s: f64,
    /// The range of the power over the window and an averaging window either side of it, W.
    pub swing_w: f64,
    /// A sampled power channel's trapezoid bound over the window's intervals,
    /// Σ Δt·|ΔP|/2 (scaled by Δt/average where the device averages), J.
    pub trapezoid_j: f64,
    /// Whether the channel is a counter (else sampled power).
    pub counter: bool,
}

/// `(lo_j, hi_j)`: how much lower and higher the truth may be than what the ledger counts.
pub fn window_error_j(m: &MethodBand, f: &WindowFacts) -> (f64, f64) {
    // Linear interpolation between two readings: with the power anywhere in a range ΔP over
    // the gap Δ, the energy up to a point inside is off by at most Δ·ΔP/4.
    let edges = (f.gap_start_s * f.swing_start_w + f.gap_end_s * f.swing_end_w) / 4.0;
    if f.counter {
        // A counter that moves every `step` holds still in between: at the start it may not
        // yet show up to step x power drawn before (the window then counts it: the truth is
        // lower), at the end it may not yet show what was drawn (the truth is higher). Each
        // edge also reads up to one resolution low.
        let lo = m.step_s * f.p_start_w + m.resolution_j + edges;
        let hi = m.step_s * f.p_end_w + m.resolution_j + edges;
        (lo, hi)
    } else {
        // A device average trails the power by half its window: a step inside the window
        // shows late, by at most half the window times the swing.
        let lag = m.average_s / 2.0 * f.swing_w;
        let e = f.trapezoid_j + lag;
        (e, e)
    }
}

/// One interval's trapezoid bound, J: the power between two readings is not seen; a change
/// inside moves the energy by at most half the interval times the change. A device-averaged
/// reading moves at most Δt/average of a step per interval, so its bound shrinks by that.
pub fn trapezoid_bound_j(m: &MethodBand, dt: f64, dw: f64) -> f64 {
    let f = if m.average_s > 0.0 {
        (dt / m.average_s).min(1.0)
    } else {
        1.0
    };
    dt * dw.abs() / 2.0 * f
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_estimate_read_190_percent_high_has_a_truth_a_third_of_it() {
        let b = Band::from_reading_error(-0.60, 1.90);
        assert!((b.lo - (1.0 / 2.9 - 1.0)).abs() < 1e-12);
        assert!((b.hi - 1.5).abs() < 1e-12);
        // A figure of 290 J from an estimate 190 % high: the truth, 100 J, is at the band's
        // low end; one 60 % low (40 J for 100 J) at its high end.
        assert!(b.contains(290.0, 100.0, 1e-9));
        assert!(b.contains(40.0, 100.0, 1e-9));
        assert!(!b.contains(40.0, 101.0, 0.0));
        // The table's constant is this, then RAPL's ±5 %.
        let e = b.then(Band::pm(0.05));
        assert!((e.lo - ESTIMATE_GAIN.lo).abs() < 1e-12, "{e:?}");
        assert!((e.hi - ESTIMATE_GAIN.hi).abs() < 1e-12, "{e:?}");
        assert_eq!(ESTIMATE_GAIN.text(), "−67…+163 %");
        assert_eq!(
            ESTIMATE_GAIN.words().as_deref(),
            Some("could be −67 %…+163 %")
        );
    }

    #[test]
    fn bands_read_as_percentages() {
        assert_eq!(Band::pm(0.05).text(), "±5 %");
        assert_eq!(Band::pm(0.004).text(), "±0.4 %");
        assert_eq!(
            Band {
                lo: -0.03,
                hi: 0.05
            }
            .text(),
            "−3…+5 %"
        );
        assert!(Band::pm(0.05).words().is_none());
        assert!(Band::pm(0.26).is_wide());
        assert_eq!(Band::pm(0.26).words().as_deref(), Some("could be ±26 %"));
    }

    #[test]
    fn provenance_picks_the_row() {
        use crate::sensors::nvml::{VIA_AVERAGE, VIA_COUNTER, VIA_INSTANT};
        let key = |s, m, v| method_band(s, m, v).key;
        assert_eq!(
            key(Source::Rapl, Method::Counter, Some("energy_uj")),
            "rapl_intel"
        );
        assert_eq!(
            key(
                Source::Rapl,
                Method::Counter,
                Some("energy_uj (AMD Zen: a model)")
            ),
            "rapl_amd"
        );
        assert_eq!(
            key(Source::Nvml, Method::Counter, Some(VIA_COUNTER)),
            "nvml_counter"
        );
        assert_eq!(
            key(Source::Nvml, Method::Measured, Some(VIA_INSTANT)),
            "nvml_instant"
        );
        assert_eq!(
            key(Source::Nvml, Method::Measured, Some(VIA_AVERAGE)),
            "nvml_average"
        );
        assert_eq!(
            key(
                Source::Hwmon,
                Method::Measured,
                Some("power1_average (averaged by the device)")
            ),
            "hwmon_power_average"
        );
        assert_eq!(
            key(
                Source::Hwmon,
                Method::Measured,
                Some("power1_input (instantaneous)")
            ),
            "hwmon_power_input"
        );
        assert_eq!(key(Source::Estimate, Method::Estimated, None), "estimate");
        assert_eq!(
            key(Source::Plug, Method::Measured, Some("apower")),
            "plug_power"
        );
        assert_eq!(
            key(
                Source::Plug,
                Method::Counter,
                Some("meters[0].total (watt-minutes)")
            ),
            "plug_counter_wmin"
        );
        assert_eq!(key(Source::System, Method::Measured, None), "unknown");
    }

    #[test]
    fn errors_add_linearly_and_weigh_by_energy() {
        // 900 J at ±5 % and 100 J at ±20 %: ±6.5 % of 1000 J.
        let a = ErrorJ::of(900.0, Band::pm(0.05), 0.0, 0.0);
        let b = ErrorJ::of(100.0, Band::pm(0.20), 0.0, 0.0);
        let band = (a + b).band().expect("band");
        assert!((band.hi - 0.065).abs() < 1e-12 && (band.lo + 0.065).abs() < 1e-12);
        // The sampling part weighs on a net of a fifth of the gross five times as much; the
        // gain stays the same fraction.
        let e = ErrorJ::of(1000.0, Band::pm(0.05), 10.0, 10.0);
        assert!((e.band().expect("band").hi - 0.06).abs() < 1e-12);
        assert!((e.band_of(200.0).expect("band").hi - 0.10).abs() < 1e-12);
    }

    /// The table as README.md shows it, one row per method.
    fn readme_rows() -> String {
        let secs = |s: f64| {
            if s >= 1.0 {
                format!("{s:.0} s")
            } else {
                format!("{:.0} ms", s * 1000.0)
            }
        };
        let mut o = String::from(
            "| method | what is read | band | sampling | source |\n|---|---|---|---|---|\n",
        );
        for r in TABLE.iter().chain(std::iter::once(&UNKNOWN)) {
            let mut sampling = Vec::new();
            if r.step_s > 0.0 {
                sampling.push(format!("moves every {}", secs(r.step_s)));
            }
            if r.average_s > 0.0 {
                sampling.push(format!("{} average", secs(r.average_s)));
            }
            if r.resolution_j > 0.0 {
                sampling.push(format!("{} J resolution", r.resolution_j));
            }
            if sampling.is_empty() {
                sampling.push("sampled".into());
            }
            o.push_str(&format!(
                "| `{}` | {} | {} | {} | {} |\n",
                r.key,
                r.what,
                r.band_text(),
                sampling.join(", "),
                r.source
            ));
        }
        o
    }

    #[test]
    fn the_readme_shows_the_same_table() {
        let readme = include_str!("../../README.md");
        let rows = readme_rows();
        assert!(
            readme.contains(&rows),
            "README.md's error-bar table is out of step with TABLE; it should read:\n{rows}"
        );
    }

    #[test]
    fn a_one_second_average_under_a_step_is_bounded_by_half_the_window() {
        // A step from 20 to 160 W at the window's start: the average shows it over 1 s, so
        // 70 J of the first second are counted late; the bound is 1/2 x 140 W.
        let m = row("nvml_average");
        let f = WindowFacts {
            length_s: 4.0,
            swing_w: 140.0,
            ..WindowFacts::default()
        };
        assert_eq!(window_error_j(m, &f), (70.0, 70.0));
        // A counter with 100 ms steps: at most 0.1 s of the power at each edge.
        let m = row("nvml_counter");
        let f = WindowFacts {
            p_start_w: 50.0,
            p_end_w: 300.0,
            counter: true,
            ..WindowFacts::default()
        };
        let (lo, hi) = window_error_j(m, &f);
        assert!(
            (lo - 5.001).abs() < 1e-9 && (hi - 30.001).abs() < 1e-9,
            "{lo} {hi}"
        );
    }
}
