//! One record per proxied request (schema `llmtop.request/1`, documented in README.md), and
//! the JSONL file they are appended to under the data dir, rotated by size.

use serde::{Deserialize, Serialize};
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub const SCHEMA: &str = "llmtop.request/1";
/// The file under the data dir.
pub const FILE_NAME: &str = "requests.jsonl";
/// Rotate when the file would grow past this.
pub const DEFAULT_MAX_BYTES: u64 = 16 * 1024 * 1024;
/// Rotated files kept (`requests.jsonl.1` newest .. `.N` oldest).
pub const DEFAULT_KEEP: u32 = 5;

/// The energy attributed to a request and what it rests on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequestEnergy {
    pub joules: f64,
    /// Always "attributed": a split of measured energy, not a measurement of the request.
    pub method: String,
    /// What the ledger's total covers: "wall plug", "battery", "platform (psys)", "sum of parts".
    pub covers: Option<String>,
    /// Idle power taken off first, W (`null`: gross energy, no idle baseline).
    pub idle_w: Option<f64>,
    pub net_of_idle: bool,
    /// How the split was made, in words.
    pub split: String,
    /// A prompt token's weight relative to a generated one, and where it came from.
    pub prompt_token_weight: f64,
    pub weight_from: String,
    /// Sampling intervals the request was split in; seconds shared with other requests.
    pub intervals: u32,
    pub shared_s: f64,
}

/// One proxied request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequestRecord {
    pub schema: String,
    pub id: u64,
    /// When the request arrived, RFC 3339 UTC.
    pub time: Option<String>,
    pub client: String,
    pub method: String,
    pub endpoint: String,
    /// The HTTP status the client got (502: the upstream could not be reached).
    pub status: u16,
    /// "complete", "client_closed", "upstream_broke", "upstream_unreachable", "cut_by_proxy".
    pub outcome: String,
    pub error: Option<String>,
    /// The model that answered (the server's name), else the one asked for.
    pub model: Option<String>,
    /// "ollama", "llama-server", "lm-studio", "openai-compatible", "unknown".
    pub backend: String,
    /// Prompt tokens the server computed; cached ones are apart; the prompt is their sum.
    pub prompt_tokens: Option<u64>,
    pub cached_tokens: Option<u64>,
    pub generated_tokens: Option<u64>,
    /// Where the counts come from: the server's figures ("llama-server timings", "OpenAI
    /// usage", ...) or "counted on the stream".
    pub tokens_from: String,
    /// Time to the first generated token on the stream, s.
    pub ttft_s: Option<f64>,
    pub prefill_tok_s: Option<f64>,
    pub decode_tok_s: Option<f64>,
    /// "server" (its own timings) or "measured" (at the proxy, over the stream).
    pub rates_from: String,
    pub wall_s: f64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// `null` when the ledger had no total over the request (or llmtop stopped first).
    pub energy: Option<RequestEnergy>,
    /// In `currency`'s main unit; `cost_text` is the same amount as llmtop prints money.
    pub cost: Option<f64>,
    pub cost_text: Option<String>,
    pub currency: Option<String>,
    pub region: Option<String>,
    pub co2_g: Option<f64>,
    /// Problems reading the stream (the bytes still passed unchanged).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub wire_errors: Vec<String>,
}

/// Appends records to `requests.jsonl`; past `max_bytes` the file becomes `.1`, `.1`
/// becomes `.2`, ... and the oldest beyond `keep` is removed.
///
/// Every record is one `write` of one whole line to a file opened for appending, so a reader
/// (or a restart after kill -9) never sees half a record; a write that fails part-way (disk
/// full, a file-size limit) is cut back off, and opening the file cuts off any partial last
/// line a crash left. Written lines are flushed to the disk (`fdatasync`) at most once a second
/// ([`RequestLog::sync`]): a crash of the process loses nothing written, a crash of the machine
/// at most the last second.
#[derive(Debug)]
pub struct RequestLog {
    path: PathBuf,
    max_bytes: u64,
    keep: u32,
    file: Option<File>,
    size: u64,
    unsynced: bool,
    synced_at: Option<Instant>,
}

#[derive(Debug, thiserror::Error)]
#[error("{}: cannot write request records: {err}; check the data dir's permissions and free space", path.display())]
pub struct LogError {
    pub path: PathBuf,
    pub err: std::io::Error,
}

/// How often written lines are flushed to the disk.
pub const SYNC_EVERY: Duration = Duration::from_secs(1);

impl RequestLog {
    pub fn open(path: &Path, max_bytes: u64, keep: u32) -> Result<Self, LogError> {
        let mut l = Self::closed(path, max_bytes, keep);
        l.reopen()?;
        Ok(l)
    }

    /// A log not opened yet (the data dir not writable now): each [`RequestLog::append`]
    /// tries again.
    pub fn closed(path: &Path, max_bytes: u64, keep: u32) -> Self {
        Self {
            path: path.to_path_buf(),
            max_bytes: max_bytes.max(1024),
            keep,
            file: None,
            size: 0,
            unsynced: false,
            synced_at: None,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn err(&self, err: std::io::Error) -> LogError {
        LogError {
            path: self.path.clone(),
            err,
        }
    }

    fn reopen(&mut self) -> Result<(), LogError> {
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| self.err(e))?;
        }
        let mut f = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(&self.path)
            .map_err(|e| self.err(e))?;
        self.size = whole_lines(&mut f).map_err(|e| self.err(e))?;
        self.file = Some(f);
        Ok(())
    }

    fn rotated(&self, n: u32) -> PathBuf {
        let mut s = self.path.clone().into_os_string();
        s.push(format!(".{n}"));
        PathBuf::from(s)
    }

    fn rotate(&mut self) -> Result<(), LogError> {
        if let Some(f) = self.file.take()
            && self.unsynced
        {
            let _ = f.sync_data();
            self.unsynced = false;
        }
        if self.keep == 0 {
            let _ = std::fs::remove_file(&self.path);
        } else {
            let _ = std::fs::remove_file(self.rotated(self.keep));
            for n in (1..self.keep).rev() {
                let _ = std::fs::rename(self.rotated(n), self.rotated(n + 1));
            }
            std::fs::rename(&self.path, self.rotated(1)).map_err(|e| self.err(e))?;
        }
        self.reopen()
    }

    /// Append one record as one line (one write, so a reader never sees half a record).
    pub fn append(&mut self, r: &RequestRecord) -> Result<(), LogError> {
        let mut line = serde_json::to_vec(r).map_err(|e| self.err(e.into()))?;
        line.push(b'\n');
        if self.file.is_none() {
            self.reopen()?;
        }
        if self.size > 0 && self.size + line.len() as u64 > self.max_bytes {
            self.rotate()?;
        }
        let Some(f) = self.file.as_mut() else {
            return Ok(());
        };
        if let Err(e) = f.write_all(&line) {
            // Part of the line may be in the file: cut it off, and open afresh next time
            // (which cuts again if this could not).
            let _ = f.set_len(self.size);
            self.file = None;
            return Err(self.err(e));
        }
        self.size += line.len() as u64;
        self.unsynced = true;
        Ok(())
    }

    /// Flush written lines to the disk if the last flush is [`SYNC_EVERY`] old.
    pub fn sync(&mut self) {
        if self.synced_at.is_some_and(|t| t.elapsed() < SYNC_EVERY) {
            return;
        }
        self.sync_now();
    }

    /// Flush written lines to the disk now (at exit).
    pub fn sync_now(&mut self) {
        if !self.unsynced {
            return;
        }
        if let Some(f) = self.file.as_ref() {
            let _ = f.sync_data();
        }
        self.unsynced = false;
        self.synced_at = Some(Instant::now());
    }
}

/// The length of `f` up to its last whole line: a partial last line (a crash mid-write) is
/// cut off. Only the tail is read.
fn whole_lines(f: &mut File) -> std::io::Result<u64> {
    let len = f.metadata()?.len();
    if len == 0 {
        return Ok(0);
    }
    let mut end = len;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let from = end.saturating_sub(buf.len() as u64);
        let n = (end - from) as usize;
        f.seek(SeekFrom::Start(from))?;
        f.read_exact(&mut buf[..n])?;
        if end == len && buf[n - 1] == b'\n' {
            return Ok(len);
        }
        if let Some(i) = buf[..n].iter().rposition(|&b| b == b'\n') {
            let keep = from + i as u64 + 1;
            f.set_len(keep)?;
            return Ok(keep);
        }
        if from == 0 {
            f.set_len(0)?;
            return Ok(0);
        }
        end = from;
    }
}
