//! llama.cpp's `llama-server` `/metrics` (Prometheus text, on when it is started with
//! `--metrics`): the token and time counters of all its clients together, read passively.
//!
//! Counters are cumulative since the server started and advance when a request finishes:
//! `prompt_tokens_total` (prompt tokens evaluated, cached ones excluded),
//! `tokens_predicted_total` (generated tokens) and the seconds spent on each. Each equals the
//! sum of the finished requests' `timings` (`prompt_n`, `predicted_n`, `prompt_ms`,
//! `predicted_ms`).

use crate::net::client::{Client, NetError, Peer};
use crate::net::exposition;
use std::time::Duration;

/// Largest `/metrics` body read (llama-server's is under 2 KiB).
pub const MAX_BODY: u64 = 1 << 20;

/// One read of the counters.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct LlamaCounters {
    pub prompt_tokens: f64,
    pub generated_tokens: f64,
    pub prompt_seconds: f64,
    pub generated_seconds: f64,
    /// Requests being processed now (gauge).
    pub requests_processing: Option<f64>,
    /// Requests waiting for a free slot (gauge).
    pub requests_deferred: Option<f64>,
}

pub const PROMPT_TOKENS: &str = "llamacpp:prompt_tokens_total";
pub const GENERATED_TOKENS: &str = "llamacpp:tokens_predicted_total";
pub const PROMPT_SECONDS: &str = "llamacpp:prompt_seconds_total";
pub const GENERATED_SECONDS: &str = "llamacpp:tokens_predicted_seconds_total";
pub const REQUESTS_PROCESSING: &str = "llamacpp:requests_processing";
pub const REQUESTS_DEFERRED: &str = "llamacpp:requests_deferred";

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MetricsError {
    /// The network's one vocabulary: down, slow, an HTTP status (501: started without
    /// --metrics; 503: still loading), too large.
    #[error(transparent)]
    Net(#[from] NetError),
    #[error(
        "{url}: not llama-server: {why}; watch reads llama-server's /metrics (for Ollama or other servers, put llmtop proxy in front)"
    )]
    NotLlamaServer { url: String, why: String },
}

impl MetricsError {
    /// The server answers 503 while it loads its model.
    pub fn is_loading(&self) -> bool {
        matches!(self, MetricsError::Net(e) if e.http_status() == Some(503))
    }

    /// The URL read.
    pub fn url(&self) -> &str {
        match self {
            MetricsError::Net(e) => &e.url,
            MetricsError::NotLlamaServer { url, .. } => url,
        }
    }
}

/// `http://host:port/anything` -> `http://host:port/metrics`.
pub fn metrics_url(base: &str) -> Result<String, MetricsError> {
    let t = crate::net::client::check_url(base, Peer::LlamaMetrics)?;
    let scheme = if t.https { "https" } else { "http" };
    Ok(format!("{scheme}://{}:{}/metrics", t.host, t.port))
}

/// The counters in a `/metrics` body; `Err(why)` when it is not llama-server's.
pub fn parse(text: &str) -> Result<LlamaCounters, String> {
    let exp = exposition::parse(text).map_err(|why| format!("/metrics is {why}"))?;
    // Summed over label sets: llama-server has none, a proxy in front might add some.
    let get = |name: &str| exp.sum(name);
    let need = |name: &str| {
        get(name).ok_or_else(|| {
            let seen = if exp.families.is_empty() {
                "no metrics at all".to_string()
            } else {
                let first: Vec<&str> = exp.families.iter().take(3).map(String::as_str).collect();
                format!("metrics such as {}", first.join(", "))
            };
            format!(
                "/metrics has no {name} ({})",
                crate::util::sanitize::terminal(&seen)
            )
        })
    };
    Ok(LlamaCounters {
        prompt_tokens: need(PROMPT_TOKENS)?,
        generated_tokens: need(GENERATED_TOKENS)?,
        prompt_seconds: get(PROMPT_SECONDS).unwrap_or(0.0),
        generated_seconds: get(GENERATED_SECONDS).unwrap_or(0.0),
        requests_processing: get(REQUESTS_PROCESSING),
        requests_deferred: get(REQUESTS_DEFERRED),
    })
}

/// Reads one server's counters.
#[derive(Debug)]
pub struct LlamaMetrics {
    pub base: String,
    url: String,
    client: Client,
    timeout: Duration,
}

impl LlamaMetrics {
    pub fn new(base: &str, timeout: Duration) -> Result<Self, MetricsError> {
        Ok(Self {
            base: base.into(),
            url: metrics_url(base)?,
            client: Client::new(Peer::LlamaMetrics),
            timeout,
        })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn read(&self) -> Result<LlamaCounters, MetricsError> {
        let body = self
            .client
            .get_text(&self.url, &[], self.timeout, MAX_BODY)?;
        parse(&body).map_err(|why| MetricsError::NotLlamaServer {
            url: self.url.clone(),
            why,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// As llama-server (llama.cpp b5xxx+, via llama-cpp-python 0.3.36) writes it.
    const REAL: &str = "# HELP llamacpp:prompt_tokens_total Number of prompt tokens processed, excluding cached tokens\n# TYPE llamacpp:prompt_tokens_total counter\nllamacpp:prompt_tokens_total 33\n# HELP llamacpp:prompt_tokens_cached_total Number of prompt tokens reused from the cache\n# TYPE llamacpp:prompt_tokens_cached_total counter\nllamacpp:prompt_tokens_cached_total 0\n# HELP llamacpp:prompt_seconds_total Total time spent processing prompts\n# TYPE llamacpp:prompt_seconds_total counter\nllamacpp:prompt_seconds_total 3.96038\n# HELP llamacpp:tokens_predicted_total Number of generation tokens processed\n# TYPE llamacpp:tokens_predicted_total counter\nllamacpp:tokens_predicted_total 16\n# HELP llamacpp:tokens_predicted_seconds_total Total time spent generating tokens\n# TYPE llamacpp:tokens_predicted_seconds_total counter\nllamacpp:tokens_predicted_seconds_total 5.06248\n# HELP llamacpp:requests_processing Number of requests processing\n# TYPE llamacpp:requests_processing gauge\nllamacpp:requests_processing 1\n# HELP llamacpp:requests_deferred Number of requests deferred\n# TYPE llamacpp:requests_deferred gauge\nllamacpp:requests_deferred 0\n";

    #[test]
    fn reads_llama_servers_counters_and_refuses_others() {
        let c = parse(REAL).expect("parse");
        assert_eq!(
            c,
            LlamaCounters {
                prompt_tokens: 33.0,
                generated_tokens: 16.0,
                prompt_seconds: 3.96038,
                generated_seconds: 5.06248,
                requests_processing: Some(1.0),
                requests_deferred: Some(0.0),
            }
        );
        let vllm = "# TYPE vllm:num_requests_running gauge\nvllm:num_requests_running 0\n";
        let e = parse(vllm).expect_err("not llama-server");
        assert!(
            e.contains(
                "no llamacpp:prompt_tokens_total (metrics such as vllm:num_requests_running)"
            ),
            "{e}"
        );
        let e = parse("<html>\x1b[31mhello</html>").expect_err("html");
        assert!(e.starts_with("/metrics is not Prometheus text ("), "{e}");
        assert!(!e.contains('\n') && !e.contains('\x1b'), "{e}");
        assert_eq!(
            metrics_url("http://127.0.0.1:8080/v1/chat").expect("url"),
            "http://127.0.0.1:8080/metrics"
        );
    }
}
