//! A passive watch of a server's token counters beside the ledger: per interval between two
//! reads of the counters, the tokens all of its clients had processed, the machine's energy
//! then (ledger), J/token, and the server process's attributed share when it runs here.
//!
//! The J/token is an **attribution**: the machine's energy over every client's tokens together.
//! The counters advance in steps (llama-server counts a request's prompt tokens once the
//! prompt is evaluated and its generated tokens once it finishes), so a request that spans
//! intervals counts in the intervals where those steps fall; over a whole watch that starts
//! and ends idle the sums are exact.

use super::energy::Window;
use super::ledger::Ledger;
use super::share::ShareTracker;
use crate::sensors::llama_metrics::LlamaCounters;
use serde::Serialize;

/// Tokens and seconds between two reads.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize)]
pub struct TokenDelta {
    pub prompt_tokens: u64,
    pub generated_tokens: u64,
    pub prompt_s: f64,
    pub generated_s: f64,
}

impl TokenDelta {
    pub fn processed(&self) -> u64 {
        self.prompt_tokens + self.generated_tokens
    }

    fn add(&mut self, o: &TokenDelta) {
        self.prompt_tokens += o.prompt_tokens;
        self.generated_tokens += o.generated_tokens;
        self.prompt_s += o.prompt_s;
        self.generated_s += o.generated_s;
    }
}

/// The counters' advance from `a` to `b`; a counter that went down means the server restarted
/// (its counters count from zero again), and `b` is what it did since.
pub fn delta(a: &LlamaCounters, b: &LlamaCounters) -> (TokenDelta, bool) {
    let restarted = b.prompt_tokens < a.prompt_tokens || b.generated_tokens < a.generated_tokens;
    let base = if restarted {
        LlamaCounters::default()
    } else {
        *a
    };
    let d = TokenDelta {
        prompt_tokens: (b.prompt_tokens - base.prompt_tokens).max(0.0).round() as u64,
        generated_tokens: (b.generated_tokens - base.generated_tokens)
            .max(0.0)
            .round() as u64,
        prompt_s: (b.prompt_seconds - base.prompt_seconds).max(0.0),
        generated_s: (b.generated_seconds - base.generated_seconds).max(0.0),
    };
    (d, restarted)
}

/// One interval's figures.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WatchInterval {
    /// Sampler seconds.
    pub t0: f64,
    pub t1: f64,
    #[serde(flatten)]
    pub tokens: TokenDelta,
    /// Requests in progress at the end (gauge).
    pub requests_processing: Option<f64>,
    /// The server restarted inside (its counters went back to zero).
    pub restarted: bool,
    /// The machine's joules over the interval (ledger), and what the total is measured from.
    pub energy_j: Option<f64>,
    pub basis: Option<String>,
    pub estimated: bool,
    /// Machine joules per generated token, and per token processed (prompt + generated).
    pub j_per_generated_token: Option<f64>,
    pub j_per_token: Option<f64>,
    /// The server process's attributed joules over the interval, when it runs here.
    pub server_j: Option<f64>,
    pub server_j_per_generated_token: Option<f64>,
}

/// Reads of the counters, folded into intervals as the ledger settles them.
#[derive(Debug, Clone, Default)]
pub struct ServerWatch {
    first: Option<(f64, LlamaCounters)>,
    last: Option<(f64, LlamaCounters)>,
    /// Reads not yet reported (the ledger had not settled them).
    pending: Vec<(f64, LlamaCounters)>,
    /// The last reported read.
    reported: Option<(f64, LlamaCounters)>,
    total: TokenDelta,
    restarts: u32,
}

/// Split shares may lag the ledger by a sample; an interval waits for them at most this long.
const SHARE_WAIT_S: f64 = 2.0;

impl ServerWatch {
    pub fn new() -> Self {
        Self::default()
    }

    /// A read of the counters at sampler time `t` (reads come in time order).
    pub fn read(&mut self, t: f64, c: LlamaCounters) {
        if self.last.is_some_and(|(lt, _)| t <= lt) {
            return;
        }
        if self.first.is_none() {
            self.first = Some((t, c));
            self.reported = Some((t, c));
        } else {
            self.pending.push((t, c));
        }
        self.last = Some((t, c));
    }

    /// Every interval the ledger (and the share, when there is one) now covers, oldest first.
    /// `flush`: report the rest with what there is (the end of a watch).
    pub fn ready(
        &mut self,
        ledger: &Ledger,
        share: Option<&ShareTracker>,
        flush: bool,
    ) -> Vec<WatchInterval> {
        let mut out = Vec::new();
        let settled = ledger.settled_until().unwrap_or(f64::NEG_INFINITY);
        let newest = self.last.map_or(f64::NEG_INFINITY, |l| l.0);
        while let Some(&(t1, c1)) = self.pending.first() {
            let Some((t0, c0)) = self.reported else {
                break;
            };
            let share_until = share.and_then(|s| s.share().until);
            let share_ok = share.is_none()
                || share_until.is_some_and(|u| u >= t1)
                || newest - t1 > SHARE_WAIT_S;
            if !flush && (settled < t1 || !share_ok) {
                break;
            }
            let (d, restarted) = delta(&c0, &c1);
            self.restarts += u32::from(restarted);
            self.total.add(&d);
            out.push(interval(
                ledger,
                share,
                t0,
                t1,
                d,
                c1.requests_processing,
                restarted,
            ));
            self.reported = Some((t1, c1));
            self.pending.remove(0);
        }
        out
    }

    /// From the first read to the last reported one.
    pub fn summary(&self, ledger: &Ledger, share: Option<&ShareTracker>) -> Option<WatchInterval> {
        let (t0, _) = self.first?;
        let (t1, c1) = self.reported?;
        (t1 > t0).then(|| {
            interval(
                ledger,
                share,
                t0,
                t1,
                self.total,
                c1.requests_processing,
                self.restarts > 0,
            )
        })
    }
}

fn interval(
    ledger: &Ledger,
    share: Option<&ShareTracker>,
    t0: f64,
    t1: f64,
    tokens: TokenDelta,
    requests_processing: Option<f64>,
    restarted: bool,
) -> WatchInterval {
    // J per generated token, as every J/token in llmtop, from the ledger's own report.
    let per_gen = ledger.report(&Window {
        t0,
        t1,
        tokens: Some(tokens.generated_tokens),
        ..Window::default()
    });
    let all = ledger.report(&Window {
        t0,
        t1,
        tokens: Some(tokens.processed()),
        ..Window::default()
    });
    let server_j = share.and_then(|s| s.joules_between(t0, t1));
    WatchInterval {
        t0,
        t1,
        tokens,
        requests_processing,
        restarted,
        energy_j: per_gen.total.as_ref().map(|t| t.energy_j),
        basis: per_gen
            .total
            .as_ref()
            .map(|t| t.basis.describe().to_string()),
        estimated: per_gen.total.as_ref().is_some_and(|t| t.estimated),
        j_per_generated_token: per_gen.j_per_token,
        j_per_token: all.j_per_token,
        server_j,
        server_j_per_generated_token: server_j
            .filter(|_| tokens.generated_tokens > 0)
            .map(|j| j / tokens.generated_tokens as f64),
    }
}
