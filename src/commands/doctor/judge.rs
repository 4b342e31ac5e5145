//! Doctor's verdicts, from what discovery said and what the sampler delivered. Pure: the
//! figures come from the ledger (energy, the wall against the parts), the readings' own
//! values (stuck, zero, rejected), and the arrival times (periods, a plug's answer time).

use super::observe::{Arrival, Observed, PlugPlan};
use super::verdict::{Level, Verdict};
use crate::commands::sensors::is_counter_rate;
use crate::sensors::bandwidth::Ceilings;
use crate::sensors::nvml_init::{FIX_LOST, ProblemKind, nvidia_on_pci, problem_from_detail};
use crate::sensors::{Covers, Method, Quantity, Reading, Source, SourceState, SourceStatus};
use crate::util::sanitize;
use std::collections::BTreeMap;

/// Two views of one energy (a counter and its own power reading) agree when they differ by
/// less than this share of the larger, or less than [`AGREE_J`]: NVML's power is a 1 s
/// average and a plug's counter has a coarse step, so a few percent apart is normal.
pub const AGREE_WITHIN: f64 = 0.10;
pub const AGREE_J: f64 = 5.0;
/// A counter is stuck when it did not move over at least this long.
pub const STUCK_AFTER_S: f64 = 1.5;
/// A plug is slow when its median answer takes more than this share of its timeout: one
/// poll a little slower is lost.
pub const SLOW_SHARE: f64 = 0.5;
/// The wall must read at least the parts: this much slack for the plug's resolution.
const WALL_SLACK: f64 = 0.02;

/// One reading id over the run.
struct Series<'a> {
    first: &'a Reading,
    /// (sampler time, value) for every read, `None` where it was n/a.
    points: Vec<(f64, Option<f64>)>,
    rejected: Vec<&'a str>,
    /// What the device answered instead of a value, at the latest n/a read that said
    /// ("GPU lost (NVML_ERROR_GPU_IS_LOST)").
    why_na: Option<&'a str>,
}

fn series(arrivals: &[Arrival]) -> BTreeMap<&str, Series<'_>> {
    let mut out: BTreeMap<&str, Series<'_>> = BTreeMap::new();
    for a in arrivals {
        for r in &a.sample.readings {
            let s = out.entry(r.id.as_str()).or_insert_with(|| Series {
                first: r,
                points: Vec::new(),
                rejected: Vec::new(),
                why_na: None,
            });
            if r.value.is_none()
                && let Some(via) = &r.via
            {
                s.why_na = Some(via);
            }
            s.points
                .push((a.sample.t, r.value.filter(|v| v.is_finite())));
            if let Some(why) = &r.rejected {
                s.rejected.push(why);
            }
        }
    }
    for s in out.values_mut() {
        s.points.sort_by(|a, b| a.0.total_cmp(&b.0));
    }
    out
}

/// ", the last: GPU lost (NVML_ERROR_GPU_IS_LOST)": what the device said instead of a value.
fn why_na(s: &Series<'_>) -> String {
    s.why_na
        .map(|w| format!(", the last: {}", sanitize::terminal(w)))
        .unwrap_or_default()
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    Some(v[v.len() / 2])
}

fn gaps(ts: &[f64]) -> Vec<f64> {
    ts.windows(2)
        .map(|w| w[1] - w[0])
        .filter(|d| *d > 0.0)
        .collect()
}

pub fn fmt_s(s: f64) -> String {
    if s < 10.0 {
        format!("{s:.2} s")
    } else {
        format!("{s:.0} s")
    }
}

impl Series<'_> {
    fn values(&self) -> impl Iterator<Item = (f64, f64)> + '_ {
        self.points.iter().filter_map(|&(t, v)| Some((t, v?)))
    }

    /// How often the value really changes: the median time between changes (a sensor that
    /// updates once a second, read four times a second, changes every second).
    fn change_period(&self) -> Option<f64> {
        let mut last: Option<f64> = None;
        let mut at = Vec::new();
        for (t, v) in self.values() {
            if last.is_some_and(|l| l != v) {
                at.push(t);
            }
            last = Some(v);
        }
        median(gaps(&at))
    }

    fn is_energy(&self) -> bool {
        matches!(self.first.quantity, Quantity::Power | Quantity::Energy)
    }

    /// A power reading of its own (not the rate of a counter) or a counter.
    fn is_view(&self) -> bool {
        (self.first.quantity == Quantity::Energy && self.first.method == Method::Counter)
            || (self.first.quantity == Quantity::Power
                && self.first.method == Method::Measured
                && !is_counter_rate(self.first))
    }
}

/// The energy a counter and a power reading share: `nvml:0:energy` and `nvml:0:power`,
/// `plug:H:energy` and `plug:H:power`, `hwmon:K:energy1:energy` and `hwmon:K:power1`.
fn view_key(id: &str) -> String {
    let mut parts: Vec<&str> = id.split(':').collect();
    if matches!(parts.last(), Some(&"energy") | Some(&"power")) {
        parts.pop();
    }
    let mut key: Vec<String> = parts.iter().map(|p| p.to_string()).collect();
    if let Some(last) = key.last_mut() {
        for word in ["energy", "power"] {
            if let Some(n) = last.strip_prefix(word)
                && !n.is_empty()
                && n.chars().all(|c| c.is_ascii_digit())
            {
                *last = n.to_string();
            }
        }
    }
    key.join(":")
}

/// What one energy channel showed: its figure and what is wrong with it.
struct ChannelLook {
    figure: Option<String>,
    issues: Vec<(Level, String)>,
    period_s: Option<f64>,
}

struct Judge<'a> {
    obs: &'a Observed,
    series: BTreeMap<&'a str, Series<'a>>,
    t0: f64,
    t1: f64,
    /// The local tick's delivered interval, seconds.
    tick_s: Option<f64>,
}

fn name(r: &Reading) -> String {
    sanitize::terminal(&r.label).into_owned()
}

impl<'a> Judge<'a> {
    fn new(obs: &'a Observed) -> Self {
        let series = series(&obs.arrivals);
        let local: Vec<f64> = obs
            .arrivals
            .iter()
            .filter(|a| a.sample.readings.iter().any(|r| r.source != Source::Plug))
            .map(|a| a.sample.t)
            .collect();
        Self {
            obs,
            series,
            t0: obs.span.0,
            t1: obs.span.1,
            tick_s: median(gaps(&local)),
        }
    }

    fn avg_w(&self, id: &str) -> Option<f64> {
        let (j, s) = self.obs.ledger.channel_energy(id, self.t0, self.t1)?;
        (s > 0.0).then(|| j / s)
    }

    /// Stuck, zero, rejected, n/a, reset: what one channel's history says.
    fn look(&self, id: &str) -> ChannelLook {
        let mut issues = Vec::new();
        let Some(s) = self.series.get(id) else {
            return ChannelLook {
                figure: None,
                issues,
                period_s: None,
            };
        };
        let label = name(s.first);
        let values: Vec<(f64, f64)> = s.values().collect();
        let reads = s.points.len();
        if !s.rejected.is_empty() {
            issues.push((
                Level::Warn,
                format!(
                    "{label} jumps: {} of {reads} readings rejected as implausible ({})",
                    s.rejected.len(),
                    sanitize::terminal(s.rejected[0])
                ),
            ));
        } else if values.is_empty() && reads > 0 {
            issues.push((
                Level::Warn,
                format!("{label}: no value in {reads} reads{}", why_na(s)),
            ));
        } else if values.len() < reads {
            issues.push((
                Level::Warn,
                format!(
                    "{label}: {} of {reads} reads n/a{}",
                    reads - values.len(),
                    why_na(s)
                ),
            ));
        }
        let span = match (values.first(), values.last()) {
            (Some(a), Some(b)) => b.0 - a.0,
            _ => 0.0,
        };
        let counter = s.first.method == Method::Counter;
        if counter && span >= STUCK_AFTER_S && values.iter().all(|v| v.1 == values[0].1) {
            issues.push((
                Level::Warn,
                format!(
                    "{label} is stuck: the counter did not move in {}",
                    fmt_s(span)
                ),
            ));
        }
        let zero_matters = matches!(
            s.first.covers,
            Covers::Wall | Covers::Platform | Covers::CpuPackage | Covers::GpuBoard
        );
        if !counter
            && s.first.quantity == Quantity::Power
            && !is_counter_rate(s.first)
            && zero_matters
            && values.len() >= 3
            && values.iter().all(|v| v.1 == 0.0)
        {
            issues.push((
                Level::Warn,
                format!(
                    "{label} reads 0 W throughout: not wired, or measuring something that is off"
                ),
            ));
        }
        if counter {
            let resets = self
                .obs
                .ledger
                .report(&crate::accounting::energy::Window {
                    t0: self.t0,
                    t1: self.t1,
                    ..Default::default()
                })
                .sources
                .iter()
                .find(|x| x.id == id)
                .map_or(0, |x| x.resets);
            if resets > 0 {
                issues.push((
                    Level::Warn,
                    format!("{label} jumps: {resets} counter step(s) beyond what the source can draw, not counted"),
                ));
            }
        }
        let period_s = s.change_period();
        let figure = match self.avg_w(id) {
            Some(w) => {
                let mut f = format!("{label} {w:.1} W");
                if let (Some(p), Some(tick)) = (period_s, self.tick_s)
                    && s.first.source != Source::Plug
                    && p > 1.5 * tick
                {
                    f.push_str(&format!(" (new value every {})", fmt_s(p)));
                }
                Some(f)
            }
            None => None,
        };
        ChannelLook {
            figure,
            issues,
            period_s,
        }
    }

    /// The counter against its own power reading, where a channel has both.
    fn cross_checks(&self, ids: &[&str]) -> Vec<(Level, String)> {
        let mut by_key: BTreeMap<String, (Option<&str>, Option<&str>)> = BTreeMap::new();
        for &id in ids {
            let Some(s) = self.series.get(id) else {
                continue;
            };
            if !s.is_view() {
                continue;
            }
            let e = by_key.entry(view_key(id)).or_default();
            if s.first.method == Method::Counter {
                e.0 = Some(id);
            } else {
                e.1 = Some(id);
            }
        }
        let mut out = Vec::new();
        for (counter, power) in by_key.into_values() {
            let (Some(c), Some(p)) = (counter, power) else {
                continue;
            };
            let ledger = &self.obs.ledger;
            let (Some((cj, cs)), Some((pj, ps))) = (
                ledger.channel_energy(c, self.t0, self.t1),
                ledger.channel_energy(p, self.t0, self.t1),
            ) else {
                continue;
            };
            // Compare over the same seconds: scale the shorter to the longer's span.
            let secs = cs.min(ps);
            if secs < STUCK_AFTER_S {
                continue;
            }
            let (cj, pj) = (cj * secs / cs, pj * secs / ps);
            let big = cj.abs().max(pj.abs());
            let label = self
                .series
                .get(c)
                .map(|s| name(s.first))
                .unwrap_or_default();
            if (cj - pj).abs() > (AGREE_WITHIN * big).max(AGREE_J) {
                out.push((
                    Level::Warn,
                    format!(
                        "{label}: the counter and the power reading disagree: {:.1} W against {:.1} W ({:+.0} %) over {}",
                        cj / secs,
                        pj / secs,
                        (cj - pj) / pj.abs().max(1e-9) * 100.0,
                        fmt_s(secs)
                    ),
                ));
            } else {
                out.push((
                    Level::Ok,
                    format!(
                        "{label}: counter and power agree ({:+.1} %)",
                        (cj - pj) / pj.abs().max(1e-9) * 100.0
                    ),
                ));
            }
        }
        out
    }

    /// One line from a set of channels: figures, issues, cross-checks.
    fn line_from(&self, source: &str, device: &str, ids: &[&str], base: Level) -> Verdict {
        let mut figures = Vec::new();
        let mut issues = Vec::new();
        let mut period: Option<f64> = None;
        for id in ids {
            // The rate of a counter is the counter's: judged there.
            if self
                .series
                .get(id)
                .is_some_and(|s| is_counter_rate(s.first))
            {
                continue;
            }
            let look = self.look(id);
            // A power reading that stands aside for its counter adds no figure of its own.
            let shadowed = self.series.get(id).is_some_and(|s| {
                s.first.quantity == Quantity::Power
                    && ids.iter().any(|o| {
                        o != id
                            && self
                                .series
                                .get(o)
                                .is_some_and(|x| x.first.method == Method::Counter)
                            && view_key(o) == view_key(id)
                    })
            });
            if !shadowed {
                figures.extend(look.figure);
            }
            issues.extend(look.issues);
            if let Some(p) = look.period_s {
                period = Some(period.map_or(p, |q: f64| q.max(p)));
            }
        }
        issues.extend(self.cross_checks(ids));
        let level = issues.iter().map(|i| i.0).fold(base, Level::max);
        let mut finding = if figures.is_empty() {
            "no power figure".to_string()
        } else {
            figures.join(", ")
        };
        for (_, text) in &issues {
            finding.push_str("; ");
            finding.push_str(text);
        }
        let mut v = Verdict::new(source, device, level, finding);
        // What the source delivers: the tick it is read at, unless its values change slower.
        v.period_s = match (period, self.tick_s) {
            (Some(p), Some(t)) if p > 1.5 * t => Some(p),
            (_, t) => t,
        };
        v
    }

    fn ids_where(&self, f: impl Fn(&Reading) -> bool) -> Vec<&'a str> {
        self.series
            .iter()
            .filter(|(_, s)| s.is_energy() && f(s.first))
            .map(|(id, _)| *id)
            .collect()
    }
}

fn statuses(obs: &Observed, source: Source) -> Vec<&SourceStatus> {
    obs.statuses.iter().filter(|s| s.source == source).collect()
}

fn clean(s: &str) -> String {
    sanitize::terminal(s).into_owned()
}

/// A problem status as a line: its words and its fix.
fn problem_line(source: &str, s: &SourceStatus, level: Level) -> Verdict {
    Verdict::new(source, &clean(&s.device), level, clean(&s.detail))
        .with_fix(s.fix.as_deref().map(clean))
}

fn rapl(j: &Judge<'_>) -> Vec<Verdict> {
    let st = statuses(j.obs, Source::Rapl);
    let found: Vec<&&SourceStatus> = st
        .iter()
        .filter(|s| s.state == SourceState::Found)
        .collect();
    let problems: Vec<&&SourceStatus> = st
        .iter()
        .filter(|s| s.state != SourceState::Found)
        .collect();
    let Some(f) = found.first() else {
        return problems
            .iter()
            .map(|p| {
                let masked = p.detail.contains("masked");
                let level = match p.state {
                    SourceState::Missing if !masked => Level::Absent,
                    _ => Level::Fail,
                };
                problem_line("rapl", p, level)
            })
            .take(1)
            .collect();
    };
    // Packages, psys and DRAM: core and uncore subzones are inside a package.
    let ids = j.ids_where(|r| r.source == Source::Rapl && r.covers != Covers::Other);
    let mut v = j.line_from("rapl", &clean(&f.device), &ids, Level::Ok);
    // Some zones readable, others not (a root-only dram): say so, with the fix.
    if let Some(p) = problems.first() {
        v.level = v.level.max(Level::Warn);
        v.finding
            .push_str(&format!("; {} {}", clean(&p.device), clean(&p.detail)));
        v.fix = p.fix.as_deref().map(clean);
    }
    vec![v]
}

fn nvml(j: &Judge<'_>) -> Vec<Verdict> {
    let st = statuses(j.obs, Source::Nvml);
    let found: Vec<&&SourceStatus> = st
        .iter()
        .filter(|s| s.state == SourceState::Found)
        .collect();
    if found.is_empty() {
        let pci = nvidia_on_pci(&j.obs.sysfs);
        return st
            .iter()
            .take(1)
            .map(|s| {
                let p = problem_from_detail(&s.detail);
                let harmless = matches!(
                    p.kind,
                    ProblemKind::NoLibrary | ProblemKind::DriverNotLoaded
                ) || s.detail.contains("no GPU visible");
                if pci.is_empty() && harmless {
                    return Verdict::new(
                        "nvml",
                        &clean(&s.device),
                        Level::Absent,
                        format!("no NVIDIA GPU on the PCI bus ({})", clean(&s.detail)),
                    );
                }
                let mut finding = clean(&s.detail);
                if !pci.is_empty() {
                    finding = format!("NVIDIA GPU at {} but {finding}", pci.join(", "));
                }
                Verdict::new("nvml", &clean(&s.device), Level::Fail, finding).with_fix(p.fix)
            })
            .collect();
    }
    found
        .iter()
        .map(|s| {
            // "GPU 0 (NVIDIA H100)": its rows are nvml:0:...
            let index = s
                .device
                .strip_prefix("GPU ")
                .and_then(|d| d.split_whitespace().next())
                .unwrap_or("");
            let prefix = format!("nvml:{index}:");
            let ids = j.ids_where(|r| r.source == Source::Nvml && r.id.starts_with(&prefix));
            let v = j.line_from("nvml", &clean(&s.device), &ids, Level::Ok);
            // A board that fell off the bus mid-run gives no figure until it is reset.
            let lost = ids.iter().any(|id| {
                j.series
                    .get(id)
                    .is_some_and(|x| x.why_na == Some(crate::sensors::nvml::VIA_LOST))
            });
            if lost {
                Verdict {
                    level: Level::Fail,
                    ..v
                }
                .with_fix(Some(FIX_LOST.into()))
            } else {
                v
            }
        })
        .collect()
}

fn hwmon(j: &Judge<'_>) -> Vec<Verdict> {
    let st = statuses(j.obs, Source::Hwmon);
    let mut out = Vec::new();
    let mut devices: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for id in j.ids_where(|r| r.source == Source::Hwmon) {
        if let Some(s) = j.series.get(id) {
            devices.entry(s.first.device.as_str()).or_default().push(id);
        }
    }
    for (device, ids) in &devices {
        out.push(j.line_from("hwmon", &clean(device), ids, Level::Ok));
    }
    let found = st.iter().filter(|s| s.state == SourceState::Found).count();
    let others = found.saturating_sub(devices.len());
    let problems: Vec<String> = st
        .iter()
        .filter(|s| s.state != SourceState::Found && s.state != SourceState::Missing)
        .map(|s| format!("{} {}", clean(&s.device), clean(&s.detail)))
        .collect();
    if others > 0 || !problems.is_empty() {
        let mut finding = format!("{others} device(s) with temperatures and fans, no power");
        for p in &problems {
            finding.push_str("; skipped ");
            finding.push_str(p);
        }
        out.push(Verdict::new("hwmon", "class/hwmon", Level::Ok, finding));
    } else if let Some(m) = st.iter().find(|s| s.state == SourceState::Missing)
        && devices.is_empty()
    {
        out.push(problem_line("hwmon", m, Level::Absent));
    }
    out
}

fn battery(j: &Judge<'_>) -> Vec<Verdict> {
    statuses(j.obs, Source::Battery)
        .into_iter()
        .filter(|s| s.state != SourceState::Missing)
        .map(|s| {
            if s.state != SourceState::Found {
                return problem_line("battery", s, Level::Warn);
            }
            let ids = j.ids_where(|r| r.source == Source::Battery);
            let mut v = j.line_from("battery", &clean(&s.device), &ids, Level::Ok);
            if v.finding == "no power figure" {
                v.finding = format!("{} (counts only while discharging)", clean(&s.detail));
            }
            v
        })
        .collect()
}

/// The fix for a plug that answers in `latency` seconds (`None`: not at all in time): a
/// slower poll waits longer, up to 2 s.
fn slow_plug_fix(plan: &PlugPlan, latency: Option<f64>) -> String {
    let want = latency.map_or(2.0, |l| 2.0 * l);
    if want <= 2.0 {
        let rate = (0.8 / want).min(plan.rate_hz / 2.0);
        let rate = (rate * 10.0).floor().max(1.0) / 10.0;
        let waits = crate::sensors::plug::timeout_for(rate).as_secs_f64();
        format!(
            "set rate_hz = {rate} in this plug's [[sensors.plugs]] entry (llmtop then waits up to {}), or improve its Wi-Fi signal",
            fmt_s(waits)
        )
    } else {
        "the plug answers slower than llmtop can wait (2 s): improve its Wi-Fi signal (move it or the access point), or use a plug on a wired or closer network".into()
    }
}

fn plug(j: &Judge<'_>) -> Vec<Verdict> {
    let st = statuses(j.obs, Source::Plug);
    let mut out = Vec::new();
    for s in &st {
        let Some(plan) = j.obs.plugs.iter().find(|p| p.request_url == s.device) else {
            // Its entry in the config is wrong: no sensor was made.
            out.push(problem_line("plug", s, Level::Fail));
            continue;
        };
        let prefix = format!("{}:", plan.name);
        let polls: Vec<&Arrival> = j
            .obs
            .arrivals
            .iter()
            .filter(|a| a.sample.readings.iter().any(|r| r.id.starts_with(&prefix)))
            .collect();
        let answered: Vec<&&Arrival> = polls
            .iter()
            .filter(|a| {
                a.sample
                    .readings
                    .iter()
                    .any(|r| r.id.starts_with(&prefix) && r.value.is_some())
            })
            .collect();
        let device = clean(&s.device);
        if answered.is_empty() {
            let finding = if s.state == SourceState::Found {
                format!(
                    "no answer within its {} timeout in {} poll(s)",
                    fmt_s(plan.timeout_s),
                    polls.len()
                )
            } else {
                clean(&s.detail)
            };
            // Answering too late is a slow plug; anything else, the status's own fix.
            let late = s.state == SourceState::Found || s.detail.contains("no answer within");
            let fix = match s.fix.as_deref() {
                Some(f) if !late => clean(f),
                _ => slow_plug_fix(plan, None),
            };
            let mut v = Verdict::new("plug", &device, Level::Fail, finding).with_fix(Some(fix));
            v.latency_s = median(polls.iter().map(|a| a.received - a.sample.t).collect());
            out.push(v);
            continue;
        }
        let ids = j.ids_where(|r| r.id.starts_with(&prefix));
        let mut v = j.line_from("plug", &device, &ids, Level::Ok);
        let latency = median(answered.iter().map(|a| a.received - a.sample.t).collect());
        v.latency_s = latency;
        v.period_s = median(gaps(
            &answered.iter().map(|a| a.sample.t).collect::<Vec<_>>(),
        ));
        let lost = polls.len() - answered.len();
        if let Some(lat) = latency {
            v.finding.push_str(&format!("; answers in {}", fmt_s(lat)));
            if lat > SLOW_SHARE * plan.timeout_s {
                v.level = v.level.max(Level::Warn);
                v.finding.push_str(&format!(
                    " (slow: over half of its {} timeout; a slower answer is a lost reading)",
                    fmt_s(plan.timeout_s)
                ));
                v.fix = Some(slow_plug_fix(plan, Some(lat)));
            }
        }
        if lost > 0 {
            v.level = v.level.max(Level::Warn);
            v.finding
                .push_str(&format!("; {lost} of {} polls lost", polls.len()));
            if v.fix.is_none() {
                v.fix = Some(slow_plug_fix(plan, None));
            }
        }
        out.push(v);
    }
    out
}

fn estimate(j: &Judge<'_>) -> Vec<Verdict> {
    statuses(j.obs, Source::Estimate)
        .into_iter()
        .map(|s| {
            let ids = j.ids_where(|r| r.method == Method::Estimated);
            let figure = ids
                .first()
                .and_then(|id| j.avg_w(id))
                .map(|w| format!("{w:.1} W ESTIMATED, not measured: "))
                .unwrap_or_default();
            Verdict::new(
                "estimate",
                &clean(&s.device),
                Level::Warn,
                format!("{figure}{}", clean(&s.detail)),
            )
            .with_fix(Some(format!(
                "make a CPU power sensor readable (see the rapl line), or {}",
                s.fix.as_deref().map(clean).unwrap_or_default()
            )))
        })
        .collect()
}

/// The memory bandwidth (the decode roofline's ceiling): system RAM as the probe measured
/// it before the sensors started, each NVIDIA board's datasheet peak. Known or not, nothing
/// here is a sensor to fix: the level is `ok` or `--`, never one that moves the exit code.
pub fn memory_bandwidth_lines(memory: &Ceilings) -> Vec<Verdict> {
    let mut out = Vec::new();
    match (&memory.cpu, &memory.cpu_missing) {
        (Some(b), _) => out.push(Verdict::new(
            "memory",
            &clean(&b.device),
            Level::Ok,
            clean(&b.describe()),
        )),
        (None, Some(why)) => out.push(Verdict::new(
            "memory",
            "system RAM",
            Level::Absent,
            format!("not measured: {}", clean(why)),
        )),
        (None, None) => {}
    }
    out.extend(
        memory
            .gpus
            .iter()
            .map(|b| Verdict::new("memory", &clean(&b.device), Level::Ok, clean(&b.describe()))),
    );
    out
}

/// The whole-system total: its basis, whether it is measured, and the wall against the parts.
fn overall(j: &Judge<'_>) -> (Verdict, bool) {
    let ledger = &j.obs.ledger;
    let totals = ledger.totals();
    let Some(basis) = ledger.basis() else {
        let v = Verdict::new(
            "overall",
            "whole system",
            Level::Fail,
            "no whole-system total: no power source gave a reading",
        )
        .with_fix(Some("fix the sources above (see each line's fix)".into()));
        return (v, true);
    };
    let avg = ledger
        .energy_between(j.t0, j.t1)
        .filter(|(_, s)| *s > 0.0)
        .map(|(e, s)| e / s);
    let mut finding = format!("total from the {}", basis.describe());
    if let Some(w) = avg {
        finding.push_str(&format!(": {w:.1} W"));
    }
    let mut level = Level::Ok;
    let mut fix = None;
    if totals.estimated {
        level = Level::Warn;
        finding.push_str(" (partly ESTIMATED from CPU use x TDP: not a measurement)");
    }
    match basis {
        crate::accounting::energy::TotalBasis::Components => finding.push_str(
            "; the sum of parts leaves out PSU losses, board, fans and disks (a smart plug measures the wall)",
        ),
        crate::accounting::energy::TotalBasis::Platform => {
            finding.push_str("; psys leaves out PSU losses (a smart plug measures the wall)")
        }
        _ => {}
    }
    if let Some(split) = ledger.wall_split(j.t0, j.t1) {
        if split.parts_j > split.wall_j * (1.0 + WALL_SLACK) + AGREE_J {
            level = Level::Warn;
            finding.push_str(&format!(
                "; the parts read more than the wall: {:.1} W against {:.1} W",
                split.parts_w(),
                split.wall_w()
            ));
            fix = Some(
                "check that the plug feeds this machine (and only it), and which part over-reads (compare each with its own meter)".into(),
            );
        } else {
            finding.push_str(&format!(
                "; the parts explain {:.1} W, the rest {:.1} W ({:.0} %: PSU losses, board, fans, disks, anything else plugged in)",
                split.parts_w(),
                split.remainder_w(),
                split.share().unwrap_or(0.0) * 100.0
            ));
        }
    }
    let v = Verdict::new("overall", "whole system", level, finding).with_fix(fix);
    (v, totals.estimated)
}

/// Every verdict, in a fixed order, and the overall one with whether the total is estimated.
pub fn judge(obs: &Observed) -> (Vec<Verdict>, Verdict, bool) {
    let j = Judge::new(obs);
    let mut v = Vec::new();
    v.extend(nvml(&j));
    v.extend(rapl(&j));
    v.extend(hwmon(&j));
    v.extend(battery(&j));
    v.extend(plug(&j));
    v.extend(estimate(&j));
    v.extend(memory_bandwidth_lines(&obs.memory));
    let (overall, estimated) = overall(&j);
    (v, overall, estimated)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_counter_and_its_own_power_reading_share_a_key() {
        assert_eq!(view_key("nvml:0:energy"), view_key("nvml:0:power"));
        assert_eq!(
            view_key("plug:10.0.0.9:energy"),
            view_key("plug:10.0.0.9:power")
        );
        assert_eq!(
            view_key("hwmon:amdgpu@0000:03:00.0:energy1:energy"),
            view_key("hwmon:amdgpu@0000:03:00.0:power1")
        );
        assert_ne!(
            view_key("hwmon:k:energy1:energy"),
            view_key("hwmon:k:power2")
        );
        assert_ne!(view_key("nvml:0:energy"), view_key("nvml:1:power"));
    }
}
