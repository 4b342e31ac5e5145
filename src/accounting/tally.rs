//! The lifetime tally: energy, cost, CO2 and tokens across every run, kept in
//! `<data dir>/tally.json`.
//!
//! Writes are atomic (temp file + rename) so a `kill -9` or an SSH drop leaves the old or the
//! new file, never half of one. The store keeps the increments since its last write and, on
//! each write, adds them to what is on disk now, so two llmtop processes do not erase each
//! other's counts. A file that cannot be parsed is moved aside and reported, never zeroed.
//!
//! The tally is never replaced by a worse one: an increment that is not a finite, non-negative
//! amount (a sensor gone mad: 1.8e308 W) is refused and logged, and a tally that would not be
//! all finite numbers is never written (JSON would store `null`, and the next start would
//! take the file for corrupt).

use super::energy::joules_to_wh;
use crate::util::fs::{ReadError, limits, read_capped, write_atomic};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub const SCHEMA: &str = "llmtop.tally/1";
/// The longest a change waits before it is written, seconds.
pub const FLUSH_INTERVAL_S: f64 = 5.0;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tally {
    pub schema: String,
    /// Every amount since the tally was started: the sum of every increment, kept in the
    /// increments' own type so that adding one is [`TallyDelta::merge`] alone.
    #[serde(flatten)]
    pub totals: TallyDelta,
    /// When the tally was started and last written, RFC 3339.
    pub since: String,
    pub updated: String,
}

impl Tally {
    fn empty(now: jiff::Timestamp) -> Self {
        Self {
            schema: SCHEMA.into(),
            totals: TallyDelta::default(),
            since: now.to_string(),
            updated: now.to_string(),
        }
    }

    fn add(&mut self, d: &TallyDelta) {
        self.totals.merge(d);
    }

    pub fn energy_wh(&self) -> f64 {
        joules_to_wh(self.totals.energy_j)
    }

    fn flaw(&self) -> Option<String> {
        self.totals.flaw()
    }
}

/// Increments to add (an energy sample's delta, a finished reply), and the tally's totals.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct TallyDelta {
    pub energy_j: f64,
    pub generated_tokens: u64,
    pub prompt_tokens: u64,
    pub replies: u64,
    /// Money by ISO currency code (a tariff change of currency starts a new entry).
    #[serde(default)]
    pub cost: BTreeMap<String, f64>,
    #[serde(default)]
    pub co2_g: f64,
}

impl TallyDelta {
    fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// Why these amounts are not fit to count or keep: a figure that is not finite, or
    /// energy or CO2 below zero (money may be negative: some tariffs pay for use at times).
    pub fn flaw(&self) -> Option<String> {
        if !(self.energy_j.is_finite() && self.energy_j >= 0.0) {
            return Some(format!("energy_j = {}", self.energy_j));
        }
        if !(self.co2_g.is_finite() && self.co2_g >= 0.0) {
            return Some(format!("co2_g = {}", self.co2_g));
        }
        self.cost
            .iter()
            .find(|(_, v)| !v.is_finite())
            .map(|(cur, v)| format!("cost {cur} = {v}"))
    }

    /// Add another delta to this one (increments not yet written, or a sum in tests).
    pub fn merge(&mut self, d: &TallyDelta) {
        self.energy_j += d.energy_j;
        self.generated_tokens += d.generated_tokens;
        self.prompt_tokens += d.prompt_tokens;
        self.replies += d.replies;
        for (cur, amount) in &d.cost {
            *self.cost.entry(cur.clone()).or_default() += amount;
        }
        self.co2_g += d.co2_g;
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TallyError {
    #[error("cannot read lifetime tally {path}: {err}")]
    Read { path: PathBuf, err: String },
    /// A directory, FIFO or device where the tally should be: left alone, not moved.
    #[error(
        "lifetime tally {path} is {kind}, not a file; move it away (a new tally is then started) or set LLMTOP_DATA_DIR to another directory"
    )]
    NotAFile { path: PathBuf, kind: &'static str },
    /// The sum to write is not all finite numbers: the file is left as it was.
    #[error(
        "lifetime tally {path} not updated: the new total would be {what}; the file is kept as it was"
    )]
    NotFinite { path: PathBuf, what: String },
    #[error(
        "cannot write lifetime tally {path}: {err}; free some disk space or set LLMTOP_DATA_DIR to a writable directory"
    )]
    Write { path: PathBuf, err: std::io::Error },
    #[error(
        "lifetime tally {path} is unreadable ({cause}) and could not be moved aside: {err}; move it away by hand"
    )]
    KeepAside {
        path: PathBuf,
        cause: String,
        err: std::io::Error,
    },
}

/// The tally on disk plus what was added since the last write.
#[derive(Debug)]
pub struct TallyStore {
    path: PathBuf,
    /// What was on disk at the last read or write, plus `pending`.
    current: Tally,
    pending: TallyDelta,
    last_write_s: Option<f64>,
    interval_s: f64,
    /// Increments refused so far (logged at 1, 10, 100, ... so a stuck sensor cannot flood
    /// the log).
    rejected: u64,
}

/// `<data dir>/tally.json`.
pub fn default_path() -> PathBuf {
    crate::util::paths::data_dir().join("tally.json")
}

impl TallyStore {
    /// Open the tally at `path` (a missing file is a new, empty tally). Returns a warning to
    /// show the user when an unreadable file was moved aside. Stale temp files left by a
    /// killed writer are removed.
    pub fn open(path: &Path, now: jiff::Timestamp) -> Result<(Self, Option<String>), TallyError> {
        remove_stale_temps(path);
        let (current, warning) = match read(path)? {
            Loaded::Ok(t) => (t, None),
            Loaded::Missing => (Tally::empty(now), None),
            Loaded::Corrupt(cause) => {
                let aside = keep_aside(path, &cause, now)?;
                let w = format!(
                    "lifetime tally {} was unreadable ({cause}); kept it as {} and started a new tally",
                    path.display(),
                    aside.display()
                );
                (Tally::empty(now), Some(w))
            }
        };
        Ok((
            Self {
                path: path.to_path_buf(),
                current,
                pending: TallyDelta::default(),
                last_write_s: None,
                interval_s: FLUSH_INTERVAL_S,
                rejected: 0,
            },
            warning,
        ))
    }

    /// Write more or less often than every 5 s (the tally-writer test helper uses 0).
    pub fn with_interval(mut self, seconds: f64) -> Self {
        self.interval_s = seconds;
        self
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The lifetime totals including what is not written yet.
    pub fn tally(&self) -> &Tally {
        &self.current
    }

    /// Count `d`, unless it is not a finite, non-negative amount or would make a total
    /// infinite: then the tally is kept as it is and the refusal logged. Returns whether `d`
    /// was counted.
    pub fn add(&mut self, d: &TallyDelta) -> bool {
        let mut next = self.current.clone();
        next.add(d);
        let flaw = d
            .flaw()
            .map(|f| format!("increment {f}"))
            .or_else(|| next.flaw().map(|f| format!("total {f}")));
        if let Some(flaw) = flaw {
            self.rejected += 1;
            if is_power_of_ten(self.rejected) {
                tracing::warn!(
                    "lifetime tally {}: refused an increment ({flaw}; {d:?}); {} refused so far",
                    self.path.display(),
                    self.rejected
                );
            }
            return false;
        }
        self.current = next;
        self.pending.merge(d);
        true
    }

    /// Increments refused since the store was opened.
    pub fn rejected(&self) -> u64 {
        self.rejected
    }

    /// Call on every tick with a monotonic clock (`now_s`) and the wall clock: writes when
    /// something changed and the interval has passed. Returns whether it wrote.
    pub fn tick(&mut self, now_s: f64, wall: jiff::Timestamp) -> Result<bool, TallyError> {
        if self.pending.is_empty() {
            return Ok(false);
        }
        let due = self
            .last_write_s
            .is_none_or(|last| now_s - last >= self.interval_s);
        if !due {
            return Ok(false);
        }
        self.flush(wall)?;
        self.last_write_s = Some(now_s);
        Ok(true)
    }

    /// Write now (on exit, SIGTERM, SIGHUP). Adds the pending increments to the file as it is
    /// now, so another llmtop's writes since ours are kept.
    pub fn flush(&mut self, wall: jiff::Timestamp) -> Result<(), TallyError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let mut base = match read(&self.path)? {
            Loaded::Ok(t) => t,
            Loaded::Missing => Tally::empty(wall),
            Loaded::Corrupt(cause) => {
                // Someone broke the file under us: keep it, write ours fresh.
                let aside = keep_aside(&self.path, &cause, wall)?;
                tracing::warn!(
                    "lifetime tally {} became unreadable ({cause}); kept it as {} and started a new tally",
                    self.path.display(),
                    aside.display()
                );
                Tally::empty(wall)
            }
        };
        base.add(&self.pending);
        // JSON has no infinity: such a total would be written as null and lost on the next
        // start. Keep the file; drop what cannot be added.
        if let Some(what) = base.flaw() {
            self.pending = TallyDelta::default();
            tracing::warn!(
                "lifetime tally {}: not written, the total would be {what}",
                self.path.display()
            );
            return Err(TallyError::NotFinite {
                path: self.path.clone(),
                what,
            });
        }
        base.updated = wall.to_string();
        let mut text = serde_json::to_string_pretty(&base).unwrap_or_default();
        text.push('\n');
        write_atomic(&self.path, text.as_bytes()).map_err(|err| TallyError::Write {
            path: self.path.clone(),
            err,
        })?;
        self.current = base;
        self.pending = TallyDelta::default();
        Ok(())
    }
}

fn is_power_of_ten(mut n: u64) -> bool {
    while n >= 10 && n.is_multiple_of(10) {
        n /= 10;
    }
    n == 1
}

enum Loaded {
    Ok(Tally),
    Missing,
    Corrupt(String),
}

fn read(path: &Path) -> Result<Loaded, TallyError> {
    let text = match read_capped(path, limits::TALLY) {
        Ok(t) => t,
        Err(ReadError::Missing { .. }) => return Ok(Loaded::Missing),
        Err(ReadError::NotUtf8 { .. }) => return Ok(Loaded::Corrupt("not UTF-8".into())),
        // Far larger than any tally: not ours to read, but kept (renamed, not read).
        Err(e @ ReadError::TooLarge { .. }) => return Ok(Loaded::Corrupt(e.reason())),
        Err(ReadError::NotRegular { kind, .. }) => {
            return Err(TallyError::NotAFile {
                path: path.to_path_buf(),
                kind,
            });
        }
        Err(e) => {
            return Err(TallyError::Read {
                path: path.to_path_buf(),
                err: e.reason(),
            });
        }
    };
    if text.trim().is_empty() {
        return Ok(Loaded::Corrupt("empty file".into()));
    }
    match serde_json::from_str::<Tally>(&text) {
        Ok(t) if t.schema != SCHEMA => {
            Ok(Loaded::Corrupt(format!("unknown schema \"{}\"", t.schema)))
        }
        Ok(t) => match t.flaw() {
            Some(flaw) => Ok(Loaded::Corrupt(flaw)),
            None => Ok(Loaded::Ok(t)),
        },
        Err(e) => Ok(Loaded::Corrupt(e.to_string())),
    }
}

/// Rename an unreadable tally to `tally.json.corrupt-<time>` beside it.
fn keep_aside(path: &Path, cause: &str, now: jiff::Timestamp) -> Result<PathBuf, TallyError> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "tally.json".into());
    let stamp = now.strftime("%Y%m%dT%H%M%SZ").to_string();
    let mut aside = path.with_file_name(format!("{name}.corrupt-{stamp}"));
    let mut n = 2;
    while aside.exists() {
        aside = path.with_file_name(format!("{name}.corrupt-{stamp}-{n}"));
        n += 1;
    }
    std::fs::rename(path, &aside).map_err(|err| TallyError::KeepAside {
        path: path.to_path_buf(),
        cause: cause.into(),
        err,
    })?;
    Ok(aside)
}

/// `write_atomic` names its temp file `.<name>.tmp<pid>`; one whose writer is gone is stale.
fn remove_stale_temps(path: &Path) {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return;
    };
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let prefix = format!(".{}.tmp", name.to_string_lossy());
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let fname = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = fname.strip_prefix(&prefix) else {
            continue;
        };
        let alive = pid.parse::<u32>().is_ok_and(|p| {
            p == std::process::id() || crate::sensors::process::Procfs::default().has_pid(p)
        });
        if !alive {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// The hidden `__tally-writer` subcommand, for the kill -9 test: adds 1 J, 2 tokens and
/// 1 reply per round and writes after every round, `count` rounds (0 = until killed).
pub fn writer_loop(path: &Path, count: u64) -> Result<(), TallyError> {
    let (mut store, warning) = TallyStore::open(path, jiff::Timestamp::now())?;
    if let Some(w) = warning {
        eprintln!("llmtop: {w}");
    }
    let mut rounds = 0u64;
    loop {
        store.add(&TallyDelta {
            energy_j: 1.0,
            generated_tokens: 2,
            replies: 1,
            ..TallyDelta::default()
        });
        store.flush(jiff::Timestamp::now())?;
        rounds += 1;
        if count != 0 && rounds >= count {
            return Ok(());
        }
    }
}
