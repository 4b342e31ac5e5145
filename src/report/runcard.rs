//! The run card: one run on one machine, as a stable, versioned JSON file
//! (`schema = "llmtop.runcard/1"`). `llmtop compare` reads cards from many machines.
//!
//! The metric structs here are the file format, not the program's internal types: they must
//! not change when `energy` or `engine` types change. The lead maps internal reports into them.
//! Adding an optional field keeps version 1; renaming or removing one needs version 2.

use crate::accounting::energy::joules_to_wh;
use crate::accounting::pricing::{J_PER_KWH, Tariff};
use crate::engine::{ModelInfo, ReplyStats};
use crate::sensors::host::{BuildInfo, HostInfo};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

/// The schema this llmtop writes and reads.
pub const SCHEMA: &str = "llmtop.runcard/1";
const SCHEMA_FAMILY: &str = "llmtop.runcard/";

/// Bytes hashed for the model fingerprint.
pub const FINGERPRINT_BYTES: u64 = 1024 * 1024;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunCard {
    pub schema: String,
    /// When the card was written, RFC 3339 UTC, e.g. "2025-06-01T12:00:00Z".
    pub created: String,
    pub host: HostInfo,
    pub build: BuildInfo,
    pub model: CardModel,
    pub settings: CardSettings,
    /// The prompt of the measured reply (the 1000-word story in bench), to spot mismatches.
    #[serde(default)]
    pub prompt: Option<String>,
    #[serde(default)]
    pub last_reply: Option<ReplyMetrics>,
    pub session: SessionMetrics,
    /// Cost in the configured region first, then the compare regions.
    #[serde(default)]
    pub cost: Vec<CardCost>,
    /// Purchase price of the machine, for total cost of ownership in `compare`.
    #[serde(default)]
    pub hardware_price: Option<CardMoney>,
    /// Sampled time series of the run.
    #[serde(default)]
    pub series: Vec<SeriesPoint>,
    /// The conversation; absent when `[snapshot] transcript = false`.
    #[serde(default)]
    pub transcript: Option<Vec<TranscriptTurn>>,
    /// The machine's memory bandwidth: the decode roofline's ceiling (RAM measured by the
    /// probe, NVIDIA boards' datasheet peak).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<crate::sensors::bandwidth::Ceilings>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CardModel {
    pub name: String,
    /// File name only (no directories: a path says more about the user than the run).
    pub file: String,
    pub size_bytes: u64,
    /// e.g. "Q4_1".
    pub quantization: String,
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub n_params: u64,
    /// sha256 of the first MiB of the file, hex: a cheap fingerprint to spot different files.
    pub sha256_first_mib: String,
    /// The server that ran it (`--attach`): "Ollama 0.5.7 at 127.0.0.1:11434". Absent: llmtop
    /// ran it in-process.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend: Option<String>,
}

/// The settings the run had in effect, as the engine reported them after load. Sampling
/// values the chain did not use (top-k and the rest under greedy) are absent, not recorded as
/// if they had mattered; cards written before that may still carry them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CardSettings {
    pub threads: u32,
    pub gpu_layers: u32,
    /// Context llama.cpp allocated.
    pub n_ctx: u32,
    /// 0 means greedy.
    pub temperature: f32,
    /// The sampler chain: "greedy", or its steps, e.g. "top_k=40,top_p=0.95,temperature=0.7,seed=42".
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub sampler: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_k: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_p: Option<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u32>,
    pub max_tokens: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_prompt: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chat_template: Option<CardChatTemplate>,
}

/// The chat template the conversation was rendered with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CardChatTemplate {
    /// "model" (from the GGUF metadata) or "chatml (fallback)".
    pub source: String,
    /// The template: Jinja text, or a llama.cpp template name.
    pub template: String,
}

/// One reply's measurements.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ReplyMetrics {
    #[serde(deserialize_with = "crate::util::json::null_as_nan")]
    pub ttft_ms: f64,
    #[serde(deserialize_with = "crate::util::json::null_as_nan")]
    pub prefill_tok_s: f64,
    #[serde(deserialize_with = "crate::util::json::null_as_nan")]
    pub gen_tok_s: f64,
    pub prompt_tokens: u32,
    pub generated_tokens: u32,
    #[serde(deserialize_with = "crate::util::json::null_as_nan")]
    pub wall_s: f64,
    #[serde(default)]
    pub energy: Option<EnergyMetrics>,
    #[serde(default)]
    pub thermal: Thermal,
    /// Where generation slowed while the hardware held itself back (empty: never).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub throttle: Vec<CardThrottle>,
    /// Memory bandwidth generation used and its share of the ceiling.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub roofline: Option<crate::accounting::roofline::Roofline>,
    /// Other programs took the CPUs while it generated (times in seconds from the reply's
    /// start, as in bench's `runs[].contention`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub contention: Vec<crate::accounting::contention::Contention>,
}

/// The whole session (or all measured bench runs).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct SessionMetrics {
    /// Model load time (file to ready context), ms.
    #[serde(default)]
    pub load_ms: Option<f64>,
    pub replies: u32,
    /// Time to first token of the first reply after load (cold caches), ms.
    #[serde(default)]
    pub ttft_cold_ms: Option<f64>,
    /// Median time to first token of later replies, ms.
    #[serde(default)]
    pub ttft_warm_ms: Option<f64>,
    /// Mean over replies.
    #[serde(default)]
    pub prefill_tok_s: Option<f64>,
    #[serde(default)]
    pub gen_tok_s: Option<f64>,
    pub prompt_tokens: u64,
    pub generated_tokens: u64,
    #[serde(deserialize_with = "crate::util::json::null_as_nan")]
    pub wall_s: f64,
    #[serde(default)]
    pub energy: Option<EnergyMetrics>,
    #[serde(default)]
    pub thermal: Thermal,
    /// Where generation slowed while the hardware held itself back (empty: never).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub throttle: Vec<CardThrottle>,
    /// The wall's remainder (with a wall plug and component sensors).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remainder: Option<crate::report::runcard_rest::CardRemainder>,
    /// The model loaded at rest: waiting against answering.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at_rest: Option<crate::report::runcard_rest::CardAtRest>,
}

/// A stretch where the generation rate fell while the hardware held itself back, with the
/// evidence. Times are seconds on the card's `series` clock (`t_s`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CardThrottle {
    pub since_s: f64,
    /// Absent while it was still going on when the card was written.
    #[serde(default)]
    pub until_s: Option<f64>,
    /// The session's best generation rate before, tok/s.
    #[serde(deserialize_with = "crate::util::json::null_as_nan")]
    pub rate_before_tok_s: f64,
    /// The lowest rate while throttled, tok/s.
    #[serde(deserialize_with = "crate::util::json::null_as_nan")]
    pub rate_low_tok_s: f64,
    /// How much slower at the lowest, percent.
    #[serde(deserialize_with = "crate::util::json::null_as_nan")]
    pub slowdown_pct: f64,
    pub evidence: Vec<CardThrottleEvidence>,
}

/// One signal behind a [`CardThrottle`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CardThrottleEvidence {
    /// "clock_below_max", "throttle_count", "temp_at_limit" or "gpu_reasons".
    pub signal: String,
    /// Reading id, e.g. "cpu:clock", "cpu:core_throttles", "nvml:0:throttle".
    pub id: String,
    pub since_s: f64,
    /// The lowest clock (MHz), events counted, the highest temperature (°C), reason bits.
    #[serde(deserialize_with = "crate::util::json::null_as_nan")]
    pub value: f64,
    /// The clock's maximum (MHz) or the temperature's limit (°C).
    #[serde(default)]
    pub limit: Option<f64>,
    /// In words: "cpufreq CPU clock (mean of 8) 2450 of 4900 MHz (50 %)".
    pub text: String,
}

impl CardThrottle {
    /// From the detector's episode; `origin` is the sampler time where the series' `t_s` is 0.
    pub fn from_episode(e: &crate::accounting::throttle::Episode, origin: f64) -> Self {
        Self {
            since_s: e.since - origin,
            until_s: e.until.map(|u| u - origin),
            rate_before_tok_s: e.rate_before_tok_s,
            rate_low_tok_s: e.rate_low_tok_s,
            slowdown_pct: e.slowdown_pct(),
            evidence: e
                .evidence
                .iter()
                .map(|x| CardThrottleEvidence {
                    signal: snake_name(&x.signal),
                    id: x.id.clone(),
                    since_s: x.since - origin,
                    value: x.value,
                    limit: x.limit,
                    text: x.describe(),
                })
                .collect(),
        }
    }

    /// One line for the Markdown and the terminal (not escaped: the caller does that).
    pub fn line(&self) -> String {
        let during = match self.until_s {
            Some(u) => format!("{:.1}–{u:.1} s", self.since_s),
            None => format!("from {:.1} s", self.since_s),
        };
        let evidence: Vec<String> = self
            .evidence
            .iter()
            .map(|e| format!("{} (since {:.1} s)", e.text, e.since_s))
            .collect();
        format!(
            "{during}: {:.1} → {:.1} tok/s (−{:.0} %) while {}",
            self.rate_before_tok_s,
            self.rate_low_tok_s,
            self.slowdown_pct,
            evidence.join("; ")
        )
    }
}

/// Sampler-clock spans a card's costs cover.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CardSpans {
    pub reply: Option<(f64, f64)>,
    pub session: Option<(f64, f64)>,
}

/// Energy over a span, per source and in total, with provenance.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct EnergyMetrics {
    pub sources: Vec<EnergySource>,
    /// Energy of the span, J: what the user pays for.
    #[serde(deserialize_with = "crate::util::json::null_as_nan")]
    pub total_j: f64,
    /// Above the idle baseline, J: what the inference itself cost.
    #[serde(default)]
    pub net_j: Option<f64>,
    /// True when no whole-system source (wall plug, battery, psys) was available and the
    /// total is a sum of components (GPU board + CPU package + DRAM).
    pub components_only: bool,
    /// True when any part of the total comes from an estimate rather than a measurement.
    #[serde(default)]
    pub estimated: bool,
    #[serde(default)]
    pub idle_baseline_w: Option<f64>,
    #[serde(deserialize_with = "crate::util::json::null_as_nan")]
    pub avg_w: f64,
    #[serde(deserialize_with = "crate::util::json::null_as_nan")]
    pub peak_w: f64,
    #[serde(default)]
    pub j_per_token: Option<f64>,
    #[serde(default)]
    pub wh_per_1000_tokens: Option<f64>,
    /// What the total was measured from at the end of the span ("wall", "components", ...).
    #[serde(default)]
    pub basis: Option<String>,
    /// Changes of basis inside the span, timestamped on the sampler clock.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub basis_changes: Vec<crate::accounting::energy::BasisChange>,
    /// The span was shorter than two steps of a quantised energy counter (NVML's, ~100 ms):
    /// its energy is the rate over the steps around it times its length.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub apportioned: bool,
    /// Where the truth of `total_j` lies, and so of `j_per_token` and the costs: each
    /// source's error band added over the span (README: Error bars).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uncertainty: Option<CardBand>,
    /// ... and of `net_j`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub net_uncertainty: Option<CardBand>,
}

/// An error band as a run card stores it: the truth of a figure `x` lies between
/// `x * (1 + lower)` and `x * (1 + upper)`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CardBand {
    /// At most 0 (−0.05: up to 5 % lower).
    #[serde(deserialize_with = "crate::util::json::null_as_nan")]
    pub lower: f64,
    /// At least 0.
    #[serde(deserialize_with = "crate::util::json::null_as_nan")]
    pub upper: f64,
}

impl From<crate::accounting::uncertainty::Band> for CardBand {
    fn from(b: crate::accounting::uncertainty::Band) -> Self {
        Self {
            lower: b.lo,
            upper: b.hi,
        }
    }
}

impl CardBand {
    /// Back to the accounting's band (to show or compare it).
    pub fn band(self) -> crate::accounting::uncertainty::Band {
        crate::accounting::uncertainty::Band {
            lo: self.lower,
            hi: self.upper,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnergySource {
    /// Reading id, e.g. "rapl:package-0:energy".
    pub id: String,
    pub label: String,
    /// "nvml", "rapl", "hwmon", "battery", "plug", "estimate".
    pub source: String,
    /// "gpu_board", "cpu_package", "dram", "wall", "battery", "platform", "other".
    pub covers: String,
    /// "counter", "measured" (power integrated) or "estimated".
    pub method: String,
    #[serde(deserialize_with = "crate::util::json::null_as_nan")]
    pub joules: f64,
    #[serde(default)]
    pub net_joules: Option<f64>,
    /// The call or file the energy came from: "nvmlDeviceGetTotalEnergyConsumption" (counter),
    /// or the power reading integrated, "nvmlDeviceGetPowerUsage (1 s average)".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub via: Option<String>,
    /// Where the live watts came from: "NVML_FI_DEV_POWER_INSTANT (instant)", ...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub power_via: Option<String>,
    /// Where the truth of `joules` lies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uncertainty: Option<CardBand>,
    /// The row of the method table the band comes from ("rapl_intel", "nvml_counter").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub band_method: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Thermal {
    /// Highest temperature per sensor label, °C.
    #[serde(default)]
    pub peak_temps_c: BTreeMap<String, f64>,
    #[serde(default)]
    pub max_fan_rpm: Option<f64>,
}

impl Thermal {
    pub fn peak_temp_c(&self) -> Option<f64> {
        self.peak_temps_c.values().copied().reduce(f64::max)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CardMoney {
    pub amount: f64,
    pub currency: String,
}

/// Cost of the card's energy in one region.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CardCost {
    /// Region code or "own".
    pub region: String,
    pub currency: String,
    /// What the session's energy cost per kWh (each joule priced when drawn); the mean over
    /// the day when the card has no session energy.
    #[serde(deserialize_with = "crate::util::json::null_as_nan")]
    pub price_per_kwh: f64,
    pub source: String,
    #[serde(default)]
    pub last_reply: Option<f64>,
    #[serde(default)]
    pub session: Option<f64>,
    #[serde(default)]
    pub per_million_tokens: Option<f64>,
    #[serde(default)]
    pub co2_g_session: Option<f64>,
}

pub use crate::accounting::energy::SeriesPoint;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TranscriptTurn {
    /// "system", "user" or "assistant".
    pub role: String,
    pub text: String,
}

/// A run card that cannot be used: one line naming the file and the cause.
#[derive(Debug, thiserror::Error)]
pub enum RunCardError {
    #[error("{}: cannot read run card: {}", .0.path().display(), .0.reason())]
    Read(crate::util::fs::ReadError),
    #[error("{path}: not valid JSON at line {line}, column {column}: {message}")]
    Json {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
    #[error(
        "{path}: not an llmtop run card (no \"schema\": \"{SCHEMA}\" field); make one with Ctrl-S in the dashboard or `llmtop bench --snapshot`"
    )]
    NotACard { path: PathBuf },
    #[error(
        "{path}: run card schema \"{found}\" is not supported; this llmtop reads \"{SCHEMA}\" (a newer llmtop wrote it? upgrade llmtop)"
    )]
    UnsupportedSchema { path: PathBuf, found: String },
    #[error("{path}: invalid run card: {message}")]
    Invalid { path: PathBuf, message: String },
}

impl RunCard {
    /// A card with the fixed parts filled in and empty metrics; the caller adds the rest.
    pub fn new(
        created: jiff::Timestamp,
        host: HostInfo,
        build: BuildInfo,
        model: CardModel,
        settings: CardSettings,
    ) -> Self {
        Self {
            schema: SCHEMA.into(),
            created: created.to_string(),
            host,
            build,
            model,
            settings,
            prompt: None,
            last_reply: None,
            session: SessionMetrics::default(),
            cost: Vec::new(),
            hardware_price: None,
            series: Vec::new(),
            transcript: None,
            memory: None,
        }
    }

    /// Fill `cost` for `configured` followed by `compare` (duplicates of the configured label
    /// are skipped). The ledger prices the spans the card covers, each joule at the time it
    /// was drawn; `price_per_kwh` is what the session's energy effectively cost per kWh.
    pub fn price(
        &mut self,
        configured: &Tariff,
        compare: &[Tariff],
        ledger: &crate::accounting::ledger::Ledger,
        spans: CardSpans,
    ) {
        let mut tariffs = vec![configured];
        tariffs.extend(compare.iter().filter(|t| t.label != configured.label));
        let session_j = self.session.energy.as_ref().map(|e| e.total_j);
        let j_per_token = self.j_per_token();
        let cost_of = |t: &Tariff, span: Option<(f64, f64)>| {
            span.and_then(|(a, b)| ledger.cost_between(t, a, b))
        };
        self.cost = tariffs
            .into_iter()
            .map(|t| {
                let session = cost_of(t, spans.session);
                let price_per_kwh = match (session, session_j) {
                    (Some(c), Some(j)) if j > 0.0 => c / (j / J_PER_KWH),
                    _ => t.mean_price_per_kwh(),
                };
                CardCost {
                    region: t.label.clone(),
                    currency: t.currency.code().into(),
                    price_per_kwh,
                    source: t.source.clone(),
                    last_reply: cost_of(t, spans.reply),
                    session,
                    per_million_tokens: j_per_token.map(|j| j * 1e6 / J_PER_KWH * price_per_kwh),
                    co2_g_session: session_j.and_then(|j| t.co2_g(j)),
                }
            })
            .collect();
    }

    /// Attach the conversation, unless `[snapshot] transcript = false`.
    pub fn set_transcript(&mut self, turns: Vec<TranscriptTurn>, keep: bool) {
        self.transcript = keep.then_some(turns);
    }

    /// J per generated token: the last reply's when measured, else the session's.
    pub fn j_per_token(&self) -> Option<f64> {
        self.last_reply
            .as_ref()
            .and_then(|r| r.energy.as_ref())
            .and_then(|e| e.j_per_token)
            .or_else(|| self.session.energy.as_ref().and_then(|e| e.j_per_token))
    }

    /// Serialise as pretty JSON (the file format).
    pub fn to_json(&self) -> String {
        // Serialising plain structs of strings and numbers cannot fail; NaN becomes null.
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }

    /// Parse and validate a card; `path` is only used in error messages.
    pub fn from_json(text: &str, path: &Path) -> Result<Self, RunCardError> {
        let json_err = |e: serde_json::Error| RunCardError::Json {
            path: path.to_path_buf(),
            line: e.line(),
            column: e.column(),
            message: strip_position(&e.to_string()),
        };
        let value: serde_json::Value = serde_json::from_str(text).map_err(json_err)?;
        match value.get("schema").and_then(|s| s.as_str()) {
            Some(SCHEMA) => {}
            Some(other) if other.starts_with(SCHEMA_FAMILY) => {
                return Err(RunCardError::UnsupportedSchema {
                    path: path.to_path_buf(),
                    found: other.into(),
                });
            }
            _ => {
                return Err(RunCardError::NotACard {
                    path: path.to_path_buf(),
                });
            }
        }
        let card: RunCard = serde_json::from_value(value).map_err(|e| RunCardError::Invalid {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        card.validate().map_err(|message| RunCardError::Invalid {
            path: path.to_path_buf(),
            message,
        })?;
        Ok(card)
    }

    /// Read, parse and validate a card file (a regular file of at most 16 MiB: a FIFO or
    /// `/dev/zero` handed to `compare` is refused, not waited on or read forever).
    pub fn load(path: &Path) -> Result<Self, RunCardError> {
        let text = crate::util::fs::read_capped(path, crate::util::fs::limits::RUN_CARD)
            .map_err(RunCardError::Read)?;
        Self::from_json(&text, path)
    }

    /// Checks serde cannot express: non-empty names, a parseable time, sane numbers.
    fn validate(&self) -> Result<(), String> {
        if self.host.hostname.trim().is_empty() {
            return Err("host.hostname is empty".into());
        }
        if self.model.name.trim().is_empty() && self.model.file.trim().is_empty() {
            return Err("model.name and model.file are both empty".into());
        }
        if self.created.parse::<jiff::Timestamp>().is_err() {
            return Err(format!(
                "created = \"{}\" is not an RFC 3339 time such as 2025-06-01T12:00:00Z",
                self.created
            ));
        }
        let energies = [
            ("session.energy", self.session.energy.as_ref()),
            (
                "last_reply.energy",
                self.last_reply.as_ref().and_then(|r| r.energy.as_ref()),
            ),
        ];
        for (key, e) in energies {
            // NaN (written as null) means "not measured" and is allowed; negative is not.
            if let Some(e) = e
                && (e.total_j < 0.0 || e.total_j.is_infinite())
            {
                return Err(format!(
                    "{key}.total_j = {} must be a number of joules, 0 or more",
                    e.total_j
                ));
            }
        }
        if let Some(hw) = &self.hardware_price
            && (!hw.amount.is_finite() || hw.amount < 0.0)
        {
            return Err(format!(
                "hardware_price.amount = {} must be 0 or more",
                hw.amount
            ));
        }
        Ok(())
    }
}

/// serde_json appends " at line L column C"; we report those separately.
fn strip_position(msg: &str) -> String {
    match msg.rfind(" at line ") {
        Some(i) => msg[..i].to_string(),
        None => msg.to_string(),
    }
}

impl CardSettings {
    /// From the engine's report after load: the resolved values, never the requests.
    pub fn from_model_info(m: &ModelInfo) -> Self {
        let e = &m.in_effect;
        let s = &e.sampler;
        Self {
            threads: e.threads,
            gpu_layers: e.gpu_layers,
            n_ctx: m.n_ctx,
            temperature: s.temperature(),
            sampler: s.to_string(),
            top_k: s.top_k(),
            top_p: s.top_p(),
            min_p: s.min_p(),
            seed: s.seed(),
            max_tokens: e.max_tokens,
            system_prompt: (!e.system_prompt.is_empty()).then(|| e.system_prompt.clone()),
            chat_template: (!m.chat_template.is_empty() || !e.chat_template_text.is_empty()).then(
                || CardChatTemplate {
                    source: m.chat_template.clone(),
                    template: e.chat_template_text.clone(),
                },
            ),
        }
    }

    /// The sampler as written, or for older cards without it, rebuilt from the fields.
    pub fn sampler_text(&self) -> String {
        if !self.sampler.is_empty() {
            return self.sampler.clone();
        }
        if self.temperature <= 0.0 {
            return "greedy".into();
        }
        let mut parts = Vec::new();
        if let Some(k) = self.top_k {
            parts.push(format!("top_k={k}"));
        }
        if let Some(p) = self.top_p {
            parts.push(format!("top_p={p}"));
        }
        if let Some(p) = self.min_p {
            parts.push(format!("min_p={p}"));
        }
        parts.push(format!("temperature={}", self.temperature));
        if let Some(seed) = self.seed {
            parts.push(format!("seed={seed}"));
        }
        parts.join(",")
    }
}

impl CardModel {
    /// From the engine's model facts; hashes the first MiB of the file.
    pub fn from_model_info(m: &ModelInfo) -> std::io::Result<Self> {
        Ok(Self {
            sha256_first_mib: fingerprint(&m.path)?,
            ..Self::unhashed(m)
        })
    }

    /// From the engine's model facts without reading the file (empty fingerprint): for a
    /// model file that is gone, or the scripted demo model that has none.
    pub fn unhashed(m: &ModelInfo) -> Self {
        Self {
            name: m.name.clone(),
            file: m
                .path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            size_bytes: m.file_size,
            quantization: m.quantization.clone(),
            architecture: m.architecture.clone(),
            n_params: m.n_params,
            sha256_first_mib: String::new(),
            backend: m.backend.clone(),
        }
    }
}

impl ReplyMetrics {
    /// Timing from the engine's stats, energy and thermal from the report over the reply's span.
    pub fn measured(
        s: &ReplyStats,
        energy: Option<&crate::accounting::energy::EnergyReport>,
    ) -> Self {
        let mut m = Self::from_stats(s);
        if let Some(e) = energy {
            m.energy = EnergyMetrics::from_report(e);
            m.thermal = Thermal::from_report(e);
        }
        m
    }

    /// Timing fields from the engine's stats; energy and thermal are filled by the caller.
    pub fn from_stats(s: &ReplyStats) -> Self {
        Self {
            ttft_ms: s.ttft_ms,
            prefill_tok_s: s.prefill_tok_s,
            gen_tok_s: s.gen_tok_s,
            prompt_tokens: s.prompt_tokens,
            generated_tokens: s.generated_tokens,
            wall_s: s.wall_s,
            energy: None,
            thermal: Thermal::default(),
            throttle: Vec::new(),
            roofline: None,
            contention: Vec::new(),
        }
    }
}

impl SessionMetrics {
    /// Sums over `replies` (count, tokens, wall time) plus the session's energy and thermal
    /// from its report; load time, TTFT and rates are left for the caller, whose statistics
    /// differ (bench: medians of measured runs; dashboard: cold first reply, warm median).
    pub fn from_replies<'a>(
        replies: impl IntoIterator<Item = &'a ReplyStats>,
        session: Option<&crate::accounting::energy::EnergyReport>,
    ) -> Self {
        let mut m = Self {
            energy: session.and_then(EnergyMetrics::from_report),
            thermal: session.map(Thermal::from_report).unwrap_or_default(),
            ..Self::default()
        };
        for r in replies {
            m.replies += 1;
            m.prompt_tokens += u64::from(r.prompt_tokens);
            m.generated_tokens += u64::from(r.generated_tokens);
            m.wall_s += r.wall_s;
        }
        m
    }
}

impl EnergyMetrics {
    /// From the sensor layer's report over a span; `None` when it had no system total.
    pub fn from_report(r: &crate::accounting::energy::EnergyReport) -> Option<Self> {
        let total = r.total.as_ref()?;
        let duration = r.duration_s.max(0.0);
        let sources = r
            .sources
            .iter()
            .map(|s| EnergySource {
                id: s.id.clone(),
                label: format!("{} {}", s.device, s.label).trim().to_string(),
                source: snake_name(&s.source),
                covers: snake_name(&s.covers),
                method: snake_name(&s.method),
                joules: s.energy_j,
                net_joules: None,
                via: s.via.clone(),
                power_via: s.power_via.clone(),
                uncertainty: s.band.map(CardBand::from),
                band_method: (!s.band_row.is_empty()).then(|| s.band_row.clone()),
            })
            .collect();
        let mut m = Self {
            sources,
            total_j: total.energy_j,
            net_j: r.net_j,
            components_only: total.components_only,
            estimated: total.estimated,
            idle_baseline_w: r.idle_w,
            avg_w: total.avg_w.unwrap_or(if duration > 0.0 {
                total.energy_j / duration
            } else {
                f64::NAN
            }),
            peak_w: total.peak_w.unwrap_or(f64::NAN),
            j_per_token: None,
            wh_per_1000_tokens: None,
            basis: Some(snake_name(&total.basis)),
            basis_changes: total.changes.clone(),
            apportioned: total.apportioned,
            uncertainty: total.band.map(CardBand::from),
            net_uncertainty: r.net_band.map(CardBand::from),
        };
        if let Some(n) = r.tokens {
            m = m.with_tokens(n);
        }
        Some(m)
    }
}

impl Thermal {
    /// The hottest sensor and the fastest fan over the report's span.
    pub fn from_report(r: &crate::accounting::energy::EnergyReport) -> Self {
        let mut peak_temps_c = BTreeMap::new();
        if let (Some(t), Some(name)) = (r.peak_temp_c, &r.peak_temp_sensor) {
            peak_temps_c.insert(name.clone(), t);
        }
        Self {
            peak_temps_c,
            max_fan_rpm: r.max_fan_rpm,
        }
    }
}

/// An enum's serde name ("gpu_board", "counter", ...), the form run cards store.
fn snake_name<T: Serialize>(v: &T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

impl EnergyMetrics {
    pub fn total_wh(&self) -> f64 {
        joules_to_wh(self.total_j)
    }

    /// Fill the per-token figures from a token count.
    pub fn with_tokens(mut self, generated_tokens: u64) -> Self {
        if generated_tokens > 0 {
            let jpt = self.total_j / generated_tokens as f64;
            self.j_per_token = Some(jpt);
            self.wh_per_1000_tokens = Some(joules_to_wh(jpt * 1000.0));
        }
        self
    }

    /// kWh of the total.
    pub fn total_kwh(&self) -> f64 {
        self.total_j / J_PER_KWH
    }
}

/// sha256 of the first MiB of `path` (or the whole file if smaller), lower-case hex.
/// Cheap enough to run on every snapshot of a multi-GB model, and different GGUF files
/// differ in their header and first tensors.
pub fn fingerprint(path: &Path) -> std::io::Result<String> {
    use sha2::{Digest, Sha256};
    let f = std::fs::File::open(path)?;
    let mut buf = Vec::with_capacity(FINGERPRINT_BYTES as usize);
    f.take(FINGERPRINT_BYTES).read_to_end(&mut buf)?;
    let digest = Sha256::digest(&buf);
    Ok(digest.iter().map(|b| format!("{b:02x}")).collect())
}
