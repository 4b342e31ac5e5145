//! The proxy's books: what the taps report, folded with the ledger into one record per
//! request. Energy comes from the ledger only, split by `accounting::attribution`; a request
//! is settled as soon as the ledger covers its end; one still open is booked in parts as the
//! ledger covers it (`Attributor`), so a long request holds back no other's record.
//!
//! Pure: the caller pushes samples into its ledger, hands over the proxy's events and calls
//! [`ProxyBooks::settle`] after each sample (`llmtop proxy` and the dashboard do the same).

use super::record::{LogError, RequestEnergy, RequestLog, RequestRecord, SCHEMA};
use super::tap::{Exchange, ProxyEvent};
use crate::accounting::attribution::{Activity, Attributor, Share};
use crate::accounting::energy::IdleBaseline;
use crate::accounting::ledger::Ledger;
use crate::engine::remote::protocol::{Figures, Source};
use crate::export::prometheus::RequestMetrics;
use std::collections::{BTreeMap, VecDeque};

/// How long after a request's end the books wait for the ledger to cover it before they
/// record it without energy (a machine with no energy source reporting).
pub const GIVE_UP_S: f64 = 30.0;

/// Where the idle measurement stands: the first `idle_window_s` of the ledger, if no request
/// arrives in it.
#[derive(Debug, Clone, PartialEq)]
enum Idle {
    Waiting,
    Measuring { from: f64 },
    Done(Option<IdleBaseline>),
    Skipped,
}

pub struct ProxyBooks {
    attributor: Attributor,
    finished: BTreeMap<u64, Exchange>,
    idle_window_s: f64,
    idle: Idle,
    log: Option<RequestLog>,
    /// Records not written yet (the log failing), oldest first, at most [`MAX_QUEUED`].
    queue: VecDeque<RequestRecord>,
    /// Since when, and why, the log cannot be written (`None`: it can).
    pub log_error: Option<String>,
    /// Records dropped from a full queue while the log could not be written.
    pub dropped: u64,
    /// When the log was last tried while failing (sampler clock).
    tried_at: f64,
    /// What the books have to say about the log since the last call, once per change.
    notices: Vec<String>,
}

/// Records kept in memory while the log cannot be written (a record is ~1 KB).
pub const MAX_QUEUED: usize = 10_000;
/// While the log fails, how often it is tried again, s.
pub const RETRY_S: f64 = 1.0;

impl ProxyBooks {
    /// `idle_window_s`: how long to measure idle power when the proxy starts (0: never, every
    /// figure is gross). `log`: where records go (None: nowhere).
    pub fn new(idle_window_s: f64, log: Option<RequestLog>) -> Self {
        let w = if idle_window_s.is_finite() {
            idle_window_s.max(0.0)
        } else {
            0.0
        };
        Self {
            attributor: Attributor::new(),
            finished: BTreeMap::new(),
            idle_window_s: w,
            idle: if w > 0.0 {
                Idle::Waiting
            } else {
                Idle::Skipped
            },
            log,
            queue: VecDeque::new(),
            log_error: None,
            dropped: 0,
            tried_at: f64::NEG_INFINITY,
            notices: Vec::new(),
        }
    }

    /// The idle baseline records are net of, once measured.
    pub fn idle_baseline(&self) -> Option<&IdleBaseline> {
        match &self.idle {
            Idle::Done(b) => b.as_ref(),
            _ => None,
        }
    }

    /// Requests not yet recorded.
    pub fn pending(&self) -> usize {
        self.attributor.pending()
    }

    pub fn event(&mut self, e: ProxyEvent) {
        match e {
            ProxyEvent::Started { id, t0 } => {
                if matches!(self.idle, Idle::Waiting | Idle::Measuring { .. }) {
                    self.idle = Idle::Skipped;
                }
                self.attributor.open(id, t0);
            }
            ProxyEvent::Tokens { id, t, n } => self.attributor.tokens(id, t, n),
            ProxyEvent::Finished(ex) => {
                self.attributor.close(activity(&ex));
                self.finished.insert(ex.id, *ex);
            }
        }
    }

    /// Records of every request the ledger now lets settle, oldest first (also appended to
    /// the log). `now`: the sampler clock; a request the ledger has not covered
    /// [`GIVE_UP_S`] after its end (no energy source reporting) is recorded without energy.
    pub fn settle(&mut self, ledger: &Ledger, now: f64) -> Vec<RequestRecord> {
        match self.idle {
            Idle::Waiting => {
                if let Some((first, _)) = ledger.span() {
                    self.idle = Idle::Measuring { from: first };
                }
            }
            Idle::Measuring { from }
                if ledger
                    .settled_until()
                    .is_some_and(|t| t >= from + self.idle_window_s) =>
            {
                self.idle = Idle::Done(ledger.idle_baseline(from, from + self.idle_window_s));
            }
            _ => {}
        }
        let idle = self.idle_baseline().cloned();
        let shares = self
            .attributor
            .settle(ledger, idle.as_ref(), ledger.tariff());
        let mut out = Vec::new();
        for (id, share) in shares {
            if let Some(ex) = self.finished.remove(&id) {
                out.push(record(&ex, Some(&share), ledger));
            }
        }
        let covered = ledger.settled_until().unwrap_or(f64::NEG_INFINITY);
        let stale: Vec<u64> = self
            .finished
            .values()
            .filter(|ex| ex.t1 + GIVE_UP_S < now && covered < ex.t1)
            .map(|ex| ex.id)
            .collect();
        for id in stale {
            self.attributor.forget(id);
            if let Some(ex) = self.finished.remove(&id) {
                out.push(record(&ex, None, ledger));
            }
        }
        self.write(&out, Some(now));
        out
    }

    /// At exit: records of the requests the ledger never covered, without energy.
    pub fn flush(&mut self, ledger: &Ledger) -> Vec<RequestRecord> {
        let out: Vec<RequestRecord> = std::mem::take(&mut self.finished)
            .values()
            .map(|ex| record(ex, None, ledger))
            .collect();
        self.write(&out, None);
        if let Some(l) = self.log.as_mut() {
            l.sync_now();
        }
        out
    }

    /// The log could not be opened at start: say so once (at the next sample) and keep the
    /// records in memory until it can be written.
    pub fn log_failed(&mut self, e: &LogError) {
        let line = format!(
            "{e}; the proxy goes on, keeping up to {MAX_QUEUED} records in memory to write when it can"
        );
        tracing::warn!("{line}");
        self.notices.push(line);
        self.log_error = Some(e.to_string());
    }

    /// Records waiting for the log to be writable again.
    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    /// What the books said about the log since the last call (stderr's lines): that records
    /// are not being written, and that they are again. Each once per change.
    pub fn take_notices(&mut self) -> Vec<String> {
        std::mem::take(&mut self.notices)
    }

    /// The log's state for a status line: `None` while records are written.
    pub fn log_status(&self) -> Option<String> {
        self.log_error.as_ref().map(|e| {
            format!(
                "records not being written ({} kept in memory{}): {e}",
                self.queue.len(),
                if self.dropped > 0 {
                    format!(", {} dropped", self.dropped)
                } else {
                    String::new()
                }
            )
        })
    }

    /// Queue `records` for the log and write what can be written: while the log fails it is
    /// tried again every [`RETRY_S`] of `now` (`None`: now, at exit).
    fn write(&mut self, records: &[RequestRecord], now: Option<f64>) {
        let Some(log) = self.log.as_mut() else {
            return;
        };
        self.queue.extend(records.iter().cloned());
        let retry = match now {
            Some(t) if self.log_error.is_some() => {
                if t - self.tried_at < RETRY_S {
                    false
                } else {
                    self.tried_at = t;
                    true
                }
            }
            _ => true,
        };
        if retry {
            let mut wrote = 0usize;
            while let Some(r) = self.queue.front() {
                match log.append(r) {
                    Ok(()) => {
                        self.queue.pop_front();
                        wrote += 1;
                    }
                    Err(e) => {
                        if self.log_error.is_none() {
                            let line = format!(
                                "{e}; the proxy goes on, keeping up to {MAX_QUEUED} records in memory to write when it can"
                            );
                            tracing::warn!("{line}");
                            self.notices.push(line);
                        }
                        self.log_error = Some(e.to_string());
                        if let Some(t) = now {
                            self.tried_at = t;
                        }
                        break;
                    }
                }
            }
            if self.queue.is_empty() && wrote > 0 && self.log_error.take().is_some() {
                let line = format!(
                    "{}: request records written again ({wrote} kept in memory written{})",
                    log.path().display(),
                    if self.dropped > 0 {
                        format!(", {} dropped while it could not be", self.dropped)
                    } else {
                        String::new()
                    }
                );
                tracing::warn!("{line}");
                self.notices.push(line);
            }
            log.sync();
        }
        let over = self.queue.len().saturating_sub(MAX_QUEUED);
        if over > 0 {
            self.queue.drain(..over);
            self.dropped += over as u64;
        }
    }
}

/// Prompt tokens the server computed (cached excluded).
fn computed_prompt(f: &Figures) -> Option<u64> {
    if let Some(n) = f.prompt_eval_tokens {
        return Some(u64::from(n.value));
    }
    let whole = u64::from(f.prompt_tokens?.value);
    let cached = f.cached_tokens.map_or(0, |c| u64::from(c.value));
    Some(whole.saturating_sub(cached))
}

/// A prompt token's cost relative to a generated one, from the server's own durations.
fn prefill_weight(f: &Figures) -> Option<f64> {
    let (pn, ps) = (f.prompt_eval_tokens?.value, f.prompt_s?.value);
    let (gn, gs) = (f.generated_tokens?.value, f.generation_s?.value);
    if pn == 0 || gn == 0 || ps <= 0.0 || gs <= 0.0 {
        return None;
    }
    let w = (ps / f64::from(pn)) / (gs / f64::from(gn));
    w.is_finite().then_some(w)
}

/// What the attribution needs of an exchange.
pub fn activity(ex: &Exchange) -> Activity {
    let f = ex.figures.clone().unwrap_or_default();
    let first = ex
        .token_times
        .first()
        .copied()
        .or(ex.first_byte)
        .unwrap_or(ex.t1);
    Activity {
        id: ex.id,
        t0: ex.t0,
        t1: ex.t1.max(ex.t0),
        prefill_tokens: computed_prompt(&f).unwrap_or(0) as f64,
        prefill: (ex.t0, first.clamp(ex.t0, ex.t1.max(ex.t0))),
        token_times: ex.token_times.clone(),
        generated_tokens: f
            .generated_tokens
            .map_or(ex.tokens_seen as f64, |n| f64::from(n.value)),
        prefill_weight: prefill_weight(&f),
    }
}

/// Which kind of server answered, from the endpoint and where its figures were.
pub fn backend(ex: &Exchange) -> &'static str {
    let from = ex.figures.as_ref().and_then(|f| {
        f.generated_tokens
            .map(|r| r.from)
            .or(f.prompt_tokens.map(|r| r.from))
    });
    match from {
        Some(Source::Ollama) => return "ollama",
        Some(Source::LlamaTimings | Source::LlamaCompletion) => return "llama-server",
        Some(Source::LmStudioStats) => return "lm-studio",
        _ => {}
    }
    let p = ex.endpoint.as_str();
    if p.starts_with("/api/v0/") {
        "lm-studio"
    } else if p.starts_with("/api/") {
        "ollama"
    } else if p.starts_with("/v1/") {
        "openai-compatible"
    } else if p == "/completion" || p == "/completions" {
        "llama-server"
    } else {
        "unknown"
    }
}

/// The record of `ex`, with its attributed energy when settled.
pub fn record(ex: &Exchange, share: Option<&Share>, ledger: &Ledger) -> RequestRecord {
    let f = ex.figures.clone().unwrap_or_default();
    let ttft = ex.token_times.first().map(|t| (t - ex.t0).max(0.0));
    let prompt = computed_prompt(&f);
    let generated = f
        .generated_tokens
        .map(|n| u64::from(n.value))
        .or((ex.tokens_seen > 0).then_some(ex.tokens_seen));
    let tokens_from = f
        .generated_tokens
        .or(f.prompt_tokens)
        .map_or("counted on the stream", |r| r.from.describe());
    let server_decode = f.server_gen_tok_s();
    let server_prefill = f.server_prompt_tok_s();
    let measured_decode = match (ex.token_times.first(), ex.token_times.last()) {
        (Some(a), Some(b)) if b > a && ex.token_times.len() > 1 => {
            Some((ex.token_times.len() - 1) as f64 / (b - a))
        }
        _ => None,
    };
    let measured_prefill = match (prompt, ttft) {
        (Some(n), Some(t)) if t > 0.0 && n > 0 => Some(n as f64 / t),
        _ => None,
    };
    let rates_from = if server_decode.is_some() || server_prefill.is_some() {
        "server"
    } else {
        "measured"
    };
    let tariff = ledger.tariff();
    let energy = share.map(|s| RequestEnergy {
        joules: s.joules,
        method: "attributed".into(),
        covers: s.basis.map(|b| b.describe().to_string()),
        idle_w: s.idle_w,
        net_of_idle: s.idle_w.is_some(),
        split: format!(
            "each sampling interval's {} energy split between the requests active in it by tokens processed",
            if s.idle_w.is_some() {
                "net-of-idle"
            } else {
                "gross (no idle baseline)"
            }
        ),
        prompt_token_weight: s.prefill_weight,
        weight_from: if s.weight_measured {
            "server timings (prompt per-token time / generated per-token time)".into()
        } else {
            "assumed 1: the server gave no timings".into()
        },
        intervals: s.intervals,
        shared_s: s.shared_s,
    });
    let cost = share.and_then(|s| s.cost);
    RequestRecord {
        schema: SCHEMA.into(),
        id: ex.id,
        time: ledger.wall_at(ex.t0).map(|t| t.to_string()),
        client: ex.client.to_string(),
        method: ex.method.clone(),
        endpoint: ex.endpoint.clone(),
        status: ex.status,
        outcome: ex.outcome.label().into(),
        error: ex
            .outcome
            .reason()
            .map(String::from)
            .or_else(|| ex.wire_errors.first().cloned()),
        model: f.model.clone().or_else(|| ex.requested_model.clone()),
        backend: backend(ex).into(),
        prompt_tokens: prompt,
        cached_tokens: f.cached_tokens.map(|c| u64::from(c.value)),
        generated_tokens: generated,
        tokens_from: tokens_from.into(),
        ttft_s: ttft,
        prefill_tok_s: server_prefill.or(measured_prefill),
        decode_tok_s: server_decode.or(measured_decode),
        rates_from: rates_from.into(),
        wall_s: (ex.t1 - ex.t0).max(0.0),
        bytes_in: ex.bytes_in,
        bytes_out: ex.bytes_out,
        energy,
        cost,
        cost_text: match (cost, tariff) {
            (Some(c), Some(t)) => Some(t.format(c)),
            _ => None,
        },
        currency: tariff.map(|t| t.currency.code().to_string()),
        region: tariff.map(|t| t.label.clone()),
        co2_g: share.and_then(|s| s.co2_g),
        wire_errors: ex.wire_errors.clone(),
    }
}

/// What Prometheus counts of a record.
pub fn metrics(r: &RequestRecord) -> RequestMetrics {
    RequestMetrics {
        model: r.model.clone().unwrap_or_else(|| "unknown".into()),
        backend: r.backend.clone(),
        status: r.status.to_string(),
        prompt_tokens: r.prompt_tokens.unwrap_or(0),
        cached_tokens: r.cached_tokens.unwrap_or(0),
        generated_tokens: r.generated_tokens.unwrap_or(0),
        energy_j: r.energy.as_ref().map(|e| e.joules),
        cost: r.cost,
        co2_g: r.co2_g,
        ttft_s: r.ttft_s,
        gen_tok_s: r.decode_tok_s,
    }
}
