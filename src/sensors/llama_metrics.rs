//! llama.cpp's `llama-server` `/metrics` (Prometheus text, on when it is started with
//! `--metrics`): the token and time counters of all its clients together, read passively.
//!
//! Counters are cumulative since the server started and advance when a request finishes:
//! `prompt_tokens_total` (prompt tokens evaluated, cached ones excluded),
//! `tokens_predicted_total` (generated tokens) and the seconds spent on each. Each equals the
//! sum of the finished requests' `timings` (`prompt_n`, `predicted_n`, `prompt_ms`,
//! `predicted_ms`).

use super::http::{Client, HttpError};
use openmetrics_parser::{MetricFamily, PrometheusType, PrometheusValue};
use std::time::Duration;

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
    #[error(
        "{url}: llama-server has no /metrics: it was started without --metrics; restart it with --metrics (e.g. llama-server -m MODEL --metrics)"
    )]
    NotEnabled { url: String },
    #[error("{url}: the server is still loading its model; wait until it is ready")]
    Loading { url: String },
    #[error("{url}: no answer ({why}); is llama-server running there? Check the host and port")]
    Down { url: String, why: String },
    #[error(
        "{url}: not llama-server: {why}; watch reads llama-server's /metrics (for Ollama or other servers, put llmtop proxy in front)"
    )]
    NotLlamaServer { url: String, why: String },
    /// `why` already names the URL.
    #[error("{why}")]
    Other { url: String, why: String },
}

/// `http://host:port/anything` -> `http://host:port/metrics`.
pub fn metrics_url(base: &str) -> Result<String, MetricsError> {
    let t = super::http::parse_url(base).map_err(|e| MetricsError::Other {
        url: base.into(),
        why: e.to_string(),
    })?;
    let scheme = if t.https { "https" } else { "http" };
    Ok(format!("{scheme}://{}:{}/metrics", t.host, t.port))
}

fn number(f: &MetricFamily<PrometheusType, PrometheusValue>) -> Option<f64> {
    // Summed over label sets: llama-server has none, a proxy in front might add some.
    let mut sum = None;
    for s in f.iter_samples() {
        let v = match &s.value {
            PrometheusValue::Counter(c) => c.value.as_f64(),
            PrometheusValue::Gauge(g) | PrometheusValue::Unknown(g) => g.as_f64(),
            _ => continue,
        };
        if v.is_finite() {
            sum = Some(sum.unwrap_or(0.0) + v);
        }
    }
    sum
}

/// The counters in a `/metrics` body; `Err(why)` when it is not llama-server's.
pub fn parse(text: &str) -> Result<LlamaCounters, String> {
    let exp = openmetrics_parser::prometheus::parse_prometheus(text).map_err(|e| {
        // The parser's message quotes the input over several lines: its first line will do.
        let first: String = e
            .to_string()
            .lines()
            .next()
            .unwrap_or("")
            .chars()
            .take(120)
            .collect();
        format!(
            "/metrics is not Prometheus text ({})",
            crate::util::sanitize::terminal(first.trim())
        )
    })?;
    let get = |name: &str| exp.families.get(name).and_then(number);
    let need = |name: &str| {
        get(name).ok_or_else(|| {
            let mut names: Vec<&str> = exp.families.keys().map(String::as_str).collect();
            names.sort_unstable();
            let seen = if names.is_empty() {
                "no metrics at all".to_string()
            } else {
                let first: Vec<&str> = names.into_iter().take(3).collect();
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
        let url = metrics_url(base)?;
        let client = Client::new(None).map_err(|e| MetricsError::Other {
            url: url.clone(),
            why: e.to_string(),
        })?;
        Ok(Self {
            base: base.into(),
            url,
            client,
            timeout,
        })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn read(&self) -> Result<LlamaCounters, MetricsError> {
        let url = self.url.clone();
        let body = self
            .client
            .get(&self.url, &[], self.timeout)
            .map_err(|e| classify(&url, e))?;
        parse(&body).map_err(|why| MetricsError::NotLlamaServer { url, why })
    }
}

fn classify(url: &str, e: HttpError) -> MetricsError {
    let url = url.to_string();
    match e {
        // llama-server answers 501 "Start it with `--metrics`" when metrics are off.
        HttpError::Status { status: 501, .. } => MetricsError::NotEnabled { url },
        HttpError::Status { status: 503, .. } => MetricsError::Loading { url },
        HttpError::Status { status, .. } => MetricsError::NotLlamaServer {
            url,
            why: format!("/metrics answered HTTP {status}"),
        },
        HttpError::Timeout { ms, .. } => MetricsError::Down {
            url,
            why: format!("nothing within {ms} ms"),
        },
        HttpError::HostNotFound { .. } => MetricsError::Down {
            url,
            why: "host not found".into(),
        },
        HttpError::Io { why, .. } => MetricsError::Down { url, why },
        HttpError::TooLarge { .. } => MetricsError::NotLlamaServer {
            url,
            why: "/metrics is over 1 MiB".into(),
        },
        HttpError::Malformed { why, .. } => MetricsError::NotLlamaServer {
            url,
            why: format!("malformed answer ({why})"),
        },
        other => MetricsError::Other {
            url,
            why: other.to_string(),
        },
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
