//! What `llmtop doctor` concludes: one verdict per source, an overall one, and the exit code.

use serde::Serialize;

/// How a source fared, worst last.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    /// Not on this machine, and nothing to fix (no NVIDIA GPU, no battery).
    Absent,
    /// Readable and consistent.
    Ok,
    /// Works, with something to fix or know (an estimate, a slow plug, a stuck counter).
    Warn,
    /// Present but unusable: no figure comes from it until fixed.
    Fail,
}

impl Level {
    /// The tag a line starts with.
    pub fn tag(self) -> &'static str {
        match self {
            Level::Absent => "--",
            Level::Ok => "ok",
            Level::Warn => "WARN",
            Level::Fail => "FAIL",
        }
    }
}

/// One source's verdict: a line of the report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Verdict {
    /// "rapl", "nvml", "hwmon", "battery", "plug", "estimate", "memory", "overall".
    pub source: String,
    /// Device or path: "intel-rapl:0", "http://10.0.0.9/rpc/...", "GPU 0 (NVIDIA H100)".
    pub device: String,
    pub level: Level,
    /// What was found and measured, in a few words.
    pub finding: String,
    /// The exact fix, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
    /// The interval between readings the source delivered, seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub period_s: Option<f64>,
    /// How long one read took (a plug's answer), seconds, median.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency_s: Option<f64>,
}

impl Verdict {
    pub fn new(source: &str, device: &str, level: Level, finding: impl Into<String>) -> Self {
        Self {
            source: source.into(),
            device: device.into(),
            level,
            finding: finding.into(),
            fix: None,
            period_s: None,
            latency_s: None,
        }
    }

    pub fn with_fix(mut self, fix: Option<String>) -> Self {
        self.fix = fix;
        self
    }
}

/// Exit codes: scripts can tell a healthy box from one to fix and from one whose total is
/// only an estimate. 1 and 2 stay llmtop's own (an error, a bad command line).
pub mod exit {
    /// Every source readable and consistent; the total is measured.
    pub const OK: u8 = 0;
    /// The total is measured, but a source has something to fix.
    pub const FIX: u8 = 3;
    /// The total is an estimate (utilisation x TDP), or there is none.
    pub const ESTIMATE: u8 = 4;
}

/// Everything doctor concluded.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    pub schema: &'static str,
    pub sysfs_root: String,
    /// Seconds spent sampling.
    pub seconds: f64,
    pub verdicts: Vec<Verdict>,
    pub overall: Verdict,
    /// The whole-system total is (partly) an estimate, or there is none.
    pub estimated: bool,
    pub exit_code: u8,
}

pub const SCHEMA: &str = "llmtop.doctor/1";

/// The exit code for a report's verdicts.
pub fn exit_code(estimated: bool, verdicts: &[Verdict], overall: &Verdict) -> u8 {
    if estimated {
        exit::ESTIMATE
    } else if verdicts
        .iter()
        .chain([overall])
        .any(|v| v.level >= Level::Warn)
    {
        exit::FIX
    } else {
        exit::OK
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exit_code_puts_an_estimate_before_a_fix_before_ok() {
        let ok = Verdict::new("rapl", "intel-rapl:0", Level::Ok, "package-0 20.0 W");
        let absent = Verdict::new("nvml", "NVIDIA", Level::Absent, "no NVIDIA GPU");
        let warn = Verdict::new("plug", "http://p", Level::Warn, "slow");
        let overall = Verdict::new("overall", "total", Level::Ok, "total from the wall plug");
        assert_eq!(
            exit_code(false, &[ok.clone(), absent.clone()], &overall),
            exit::OK
        );
        assert_eq!(
            exit_code(false, &[ok.clone(), warn.clone()], &overall),
            exit::FIX
        );
        assert_eq!(
            exit_code(true, std::slice::from_ref(&ok), &overall),
            exit::ESTIMATE
        );
        let bad = Verdict::new("overall", "total", Level::Fail, "no total");
        assert_eq!(exit_code(false, &[ok], &bad), exit::FIX);
        assert!(Level::Absent < Level::Ok && Level::Warn < Level::Fail);
    }
}
