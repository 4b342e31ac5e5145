//! The lifetime tally: energy, cost, CO2 and tokens across every run, kept in
//! `<data dir>/tally.json`.
//!
//! Writes are atomic (temp file + rename) so a `kill -9` or an SSH drop leaves the old or the
//! new file, never half of one. The store keeps the increments since its last write and, on
//! each write, adds them to what is on disk now, so two llmtop processes do not erase each
//! other's counts. A file that cannot be parsed is moved aside and reported, never zeroed.

use crate::util::fs::write_atomic;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub const SCHEMA: &str = "llmtop.tally/1";
/// The longest a change waits before it is written, seconds.
pub const FLUSH_INTERVAL_S: f64 = 5.0;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tally {
    pub schema: String,
    pub energy_j: f64,
    pub generated_tokens: u64,
    pub prompt_tokens: u64,
    pub replies: u64,
    /// Money spent, by ISO currency code (a tariff change of currency starts a new entry).
    #[serde(default)]
    pub cost: BTreeMap<String, f64>,
    #[serde(default)]
    pub co2_g: f64,
    /// When the tally was started and last written, RFC 3339.
    pub since: String,
    pub updated: String,
}

impl Tally {
    fn empty(now: jiff::Timestamp) -> Self {
        Self {
            schema: SCHEMA.into(),
            energy_j: 0.0,
            generated_tokens: 0,
            prompt_tokens: 0,
            replies: 0,
            cost: BTreeMap::new(),
            co2_g: 0.0,
            since: now.to_string(),
            updated: now.to_string(),
        }
    }

    fn add(&mut self, d: &TallyDelta) {
        self.energy_j += d.energy_j;
        self.generated_tokens += d.generated_tokens;
        self.prompt_tokens += d.prompt_tokens;
        self.replies += d.replies;
        for (cur, amount) in &d.cost {
            *self.cost.entry(cur.clone()).or_default() += amount;
        }
        self.co2_g += d.co2_g;
    }

    pub fn energy_wh(&self) -> f64 {
        self.energy_j / 3600.0
    }
}

/// Increments to add: an energy sample's delta, a finished reply.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TallyDelta {
    pub energy_j: f64,
    pub generated_tokens: u64,
    pub prompt_tokens: u64,
    pub replies: u64,
    /// Money by currency code.
    pub cost: BTreeMap<String, f64>,
    pub co2_g: f64,
}

impl TallyDelta {
    fn is_empty(&self) -> bool {
        *self == Self::default()
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
    Read { path: PathBuf, err: std::io::Error },
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

    pub fn add(&mut self, d: &TallyDelta) {
        self.current.add(d);
        self.pending.merge(d);
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
                keep_aside(&self.path, &cause, wall)?;
                Tally::empty(wall)
            }
        };
        base.add(&self.pending);
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

enum Loaded {
    Ok(Tally),
    Missing,
    Corrupt(String),
}

fn read(path: &Path) -> Result<Loaded, TallyError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Loaded::Missing),
        Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
            return Ok(Loaded::Corrupt("not UTF-8".into()));
        }
        Err(err) => {
            return Err(TallyError::Read {
                path: path.to_path_buf(),
                err,
            });
        }
    };
    match serde_json::from_str::<Tally>(&text) {
        Ok(t) if t.schema == SCHEMA => Ok(Loaded::Ok(t)),
        Ok(t) => Ok(Loaded::Corrupt(format!("unknown schema \"{}\"", t.schema))),
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
        let alive = pid
            .parse::<u32>()
            .is_ok_and(|p| p == std::process::id() || Path::new(&format!("/proc/{p}")).exists());
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
