//! Doctor's report as text: one line per source, then the overall one. Every string in a
//! verdict was sanitised where it was made.

use super::judge::fmt_s;
use super::verdict::{Report, Verdict};
use std::fmt::Write as _;

/// "ok    rapl      intel-rapl:0: package-0 12.3 W; read every 0.25 s; fix: ..."
pub fn line(v: &Verdict) -> String {
    let mut l = format!(
        "{:<5} {:<9} {}: {}",
        v.level.tag(),
        v.source,
        v.device,
        v.finding
    );
    if let Some(p) = v.period_s {
        let _ = write!(l, "; read every {}", fmt_s(p));
    }
    if let Some(fix) = &v.fix {
        let _ = write!(l, "; fix: {fix}");
    }
    l
}

pub fn text(r: &Report) -> String {
    let mut out = format!(
        "llmtop doctor: {} of readings, sysfs {}\n",
        fmt_s(r.seconds),
        crate::util::sanitize::terminal(&r.sysfs_root)
    );
    for v in r.verdicts.iter().chain([&r.overall]) {
        out.push_str(&line(v));
        out.push('\n');
    }
    let _ = writeln!(
        out,
        "exit {}: {}",
        r.exit_code,
        match r.exit_code {
            0 => "every source readable and consistent; the total is measured",
            3 => "the total is measured; a source above has something to fix",
            _ => "no measured whole-system total (an ESTIMATE, or none): fix the sources above",
        }
    );
    out
}
