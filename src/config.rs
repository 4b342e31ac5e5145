//! Configuration: `RawConfig` as read from TOML (every field optional with a default), and
//! where the file and llmtop's data live (XDG paths via `directories`).
//!
//! Each section is owned by the module that uses it; this file only gathers them.

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The whole config file. Unknown keys are errors, so a typo never silently does nothing.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawConfig {
    pub model: ModelSection,
    pub sampling: SamplingSection,
    pub sensors: SensorsSection,
    pub ui: UiSection,
    pub keys: std::collections::BTreeMap<String, String>,
    pub pricing: PricingSection,
    pub snapshot: SnapshotSection,
    pub metrics: MetricsSection,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModelSection {
    /// Path to a GGUF file; when unset, llmtop searches (see `llmtop models`).
    pub path: Option<PathBuf>,
    /// Default: the model's training context, capped at 4096.
    pub n_ctx: Option<u32>,
    /// Default: all physical cores.
    pub threads: Option<u32>,
    /// Default: 0 (CPU only).
    pub gpu_layers: Option<u32>,
    pub max_tokens: Option<u32>,
    pub system_prompt: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SamplingSection {
    pub temperature: Option<f32>,
    pub top_k: Option<i32>,
    pub top_p: Option<f32>,
    pub min_p: Option<f32>,
    pub seed: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SensorsSection {
    /// Sampling rate of local sensors, Hz.
    pub rate_hz: f64,
    /// Read sysfs from here instead of `/sys` (a captured tree).
    pub sysfs_root: PathBuf,
    /// CPU TDP for the utilisation-based estimate when no power sensor is readable, W.
    pub tdp_watts: f64,
    /// CPU idle power for the same estimate, W.
    pub idle_watts: f64,
    /// Idle-baseline window, seconds: before bench runs, and after the dashboard's model loads.
    pub idle_window_s: f64,
    pub plugs: Vec<PlugConfig>,
}

impl Default for SensorsSection {
    fn default() -> Self {
        Self {
            rate_hz: 4.0,
            sysfs_root: PathBuf::from("/sys"),
            tdp_watts: 65.0,
            idle_watts: 10.0,
            idle_window_s: 10.0,
            plugs: Vec::new(),
        }
    }
}

/// A smart plug measuring wall power.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlugConfig {
    /// "shelly-gen2", "shelly-pm1", "shelly-gen1", "tasmota" or "home-assistant".
    pub kind: String,
    /// Base URL, e.g. "http://192.168.1.50".
    pub url: String,
    /// Home Assistant only.
    pub entity: Option<String>,
    /// Home Assistant only: long-lived access token.
    pub token: Option<String>,
    /// Poll rate, Hz (plugs update about once a second).
    #[serde(default = "default_plug_rate")]
    pub rate_hz: f64,
}

fn default_plug_rate() -> f64 {
    1.0
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UiSection {
    pub theme: String,
    /// Gauge refresh rate, Hz.
    pub refresh_hz: f64,
    /// "auto", "always" or "never".
    pub color: String,
}

impl Default for UiSection {
    fn default() -> Self {
        Self {
            theme: "dark".into(),
            refresh_hz: 4.0,
            color: "auto".into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PricingSection {
    /// A preset: "US", "DE", "DK", "FR", "UK", "JP", "EU".
    pub region: String,
    /// Own tariff; overrides the preset's price when set.
    pub price_per_kwh: Option<f64>,
    pub currency: Option<String>,
    pub co2_g_per_kwh: Option<f64>,
    /// Time-of-use bands: price by hour of day.
    pub bands: Vec<TariffBand>,
    pub compare_regions: Vec<String>,
}

impl Default for PricingSection {
    fn default() -> Self {
        Self {
            region: "US".into(),
            price_per_kwh: None,
            currency: None,
            co2_g_per_kwh: None,
            bands: Vec::new(),
            compare_regions: vec!["US".into(), "DE".into(), "DK".into()],
        }
    }
}

/// Price from `from_hour` (inclusive) to `to_hour` (exclusive), local time; may cross midnight.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TariffBand {
    pub from_hour: u8,
    pub to_hour: u8,
    pub price_per_kwh: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SnapshotSection {
    /// Where snapshots go; default: `<data dir>/snapshots`.
    pub dir: Option<PathBuf>,
    /// Include the conversation in run cards.
    pub transcript: bool,
}

impl Default for SnapshotSection {
    fn default() -> Self {
        Self {
            dir: None,
            transcript: true,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsSection {
    /// Serve Prometheus metrics from the dashboard on this address, e.g. "127.0.0.1:9464".
    pub addr: Option<String>,
}

/// A config file that could not be used: one line naming the file, the place and the cause.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: cannot read config: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}:{line}: {message}")]
    Parse {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("{path}: {key}: {message}")]
    Invalid {
        path: PathBuf,
        key: String,
        message: String,
    },
    #[error("{path}:{line}: {key}: {message}")]
    InvalidAt {
        path: PathBuf,
        line: usize,
        key: String,
        message: String,
    },
}

/// Parse config text; `path` is only used in error messages.
pub fn parse(text: &str, path: &Path) -> Result<RawConfig, ConfigError> {
    let cfg = toml::from_str::<RawConfig>(text).map_err(|e| {
        let line = e
            .span()
            .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1)
            .unwrap_or(1);
        ConfigError::Parse {
            path: path.to_path_buf(),
            line,
            message: e.message().trim().replace('\n', " "),
        }
    })?;
    validate(&cfg, text, path)?;
    Ok(cfg)
}

/// Line of `key` in `section` (`""` for top level; `name#n` for the n-th `[[name]]` table),
/// for error messages; the section header, or 1, when the key is not written out.
fn line_of(text: &str, section: &str, key: &str) -> usize {
    let (section, nth) = match section.split_once('#') {
        Some((s, n)) => (s, n.parse::<usize>().unwrap_or(0)),
        None => (section, 0),
    };
    let mut in_section = section.is_empty();
    let mut header_line = 1;
    let mut seen = 0usize;
    for (i, raw) in text.lines().enumerate() {
        let l = raw.trim();
        if l.starts_with('[') {
            let name = l.trim_matches(|c| c == '[' || c == ']').trim();
            in_section = name == section && {
                seen += 1;
                seen == nth + 1
            };
            if in_section {
                header_line = i + 1;
            }
            continue;
        }
        let dotted = format!("{section}.{key}");
        let starts = |k: &str| {
            l.strip_prefix(k)
                .is_some_and(|rest| rest.trim_start().starts_with('='))
        };
        if (in_section && starts(key)) || (!section.is_empty() && starts(&dotted)) {
            return i + 1;
        }
    }
    header_line
}

/// Check values that parse but make no sense, so the program never starts with half a config.
/// Each section's owner adds its checks here.
pub fn validate(cfg: &RawConfig, text: &str, path: &Path) -> Result<(), ConfigError> {
    let err = |section: &str, key: &str, message: String| {
        let shown = match section.split_once('#') {
            Some((s, n)) => format!("{s}[{n}].{key}"),
            None if section.is_empty() => key.to_string(),
            None => format!("{section}.{key}"),
        };
        Err(ConfigError::InvalidAt {
            path: path.to_path_buf(),
            line: line_of(text, section, key),
            key: shown,
            message,
        })
    };
    // [ui]
    if !["auto", "always", "never"].contains(&cfg.ui.color.as_str()) {
        return err(
            "ui",
            "color",
            format!("`{}` is not one of auto, always, never", cfg.ui.color),
        );
    }
    if !(cfg.ui.refresh_hz > 0.0 && cfg.ui.refresh_hz <= 60.0) {
        return err(
            "ui",
            "refresh_hz",
            format!(
                "{} is out of range; use 0.1 to 60 (default 4)",
                cfg.ui.refresh_hz
            ),
        );
    }
    if cfg.ui.theme.trim().is_empty() {
        return err(
            "ui",
            "theme",
            "is empty; use dark, light, high-contrast or mono".into(),
        );
    }
    // [keys]
    if let Err((action, e)) = crate::keys::KeyMap::from_config(&cfg.keys) {
        return err("keys", &action, e.to_string());
    }
    // [sampling]
    let sp = &cfg.sampling;
    if let Some(t) = sp.temperature
        && !(0.0..=5.0).contains(&t)
    {
        return err(
            "sampling",
            "temperature",
            format!("{t} is out of range 0 to 5"),
        );
    }
    if let Some(p) = sp.top_p
        && !(p > 0.0 && p <= 1.0)
    {
        return err(
            "sampling",
            "top_p",
            format!("{p} is out of range; use (0, 1]"),
        );
    }
    if let Some(p) = sp.min_p
        && !(0.0..=1.0).contains(&p)
    {
        return err("sampling", "min_p", format!("{p} is out of range 0 to 1"));
    }
    // [sensors]
    let se = &cfg.sensors;
    if !(se.rate_hz > 0.0 && se.rate_hz <= 100.0) {
        return err(
            "sensors",
            "rate_hz",
            format!("{} is out of range; use 0.1 to 100 (default 4)", se.rate_hz),
        );
    }
    if !(se.idle_watts >= 0.0 && se.tdp_watts > se.idle_watts) {
        return err(
            "sensors",
            "tdp_watts",
            format!(
                "must be above idle_watts ({} W) and idle_watts must be >= 0",
                se.idle_watts
            ),
        );
    }
    const PLUGS: [&str; 5] = [
        "shelly-gen2",
        "shelly-pm1",
        "shelly-gen1",
        "tasmota",
        "home-assistant",
    ];
    for (i, p) in se.plugs.iter().enumerate() {
        let sec = format!("sensors.plugs#{i}");
        if !PLUGS.contains(&p.kind.as_str()) {
            return err(
                &sec,
                "kind",
                format!("`{}` is not one of {}", p.kind, PLUGS.join(", ")),
            );
        }
        if !(p.url.starts_with("http://") || p.url.starts_with("https://")) {
            return err(
                &sec,
                "url",
                format!("`{}` must start with http:// or https://", p.url),
            );
        }
        if p.kind == "home-assistant" && (p.entity.is_none() || p.token.is_none()) {
            return err(
                &sec,
                "entity",
                "home-assistant needs both entity and token".into(),
            );
        }
        if !(p.rate_hz > 0.0 && p.rate_hz <= 10.0) {
            return err(
                &sec,
                "rate_hz",
                format!("{} is out of range 0.1 to 10", p.rate_hz),
            );
        }
    }
    Ok(())
}

/// Load `path`, or the default config file if it exists, or defaults.
pub fn load(explicit: Option<&Path>) -> Result<RawConfig, ConfigError> {
    let path = match explicit {
        Some(p) => p.to_path_buf(),
        None => match default_config_file() {
            Some(p) if p.exists() => p,
            _ => return Ok(RawConfig::default()),
        },
    };
    let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::Read {
        path: path.clone(),
        source,
    })?;
    parse(&text, &path)
}

fn project_dirs() -> Option<directories::ProjectDirs> {
    directories::ProjectDirs::from("", "", "llmtop")
}

/// `~/.config/llmtop/config.toml` on Linux.
pub fn default_config_file() -> Option<PathBuf> {
    project_dirs().map(|d| d.config_dir().join("config.toml"))
}

/// `~/.config/llmtop` on Linux: user themes live in `themes/` below it.
pub fn config_dir() -> Option<PathBuf> {
    project_dirs().map(|d| d.config_dir().to_path_buf())
}

/// `~/.local/share/llmtop` on Linux (`LLMTOP_DATA_DIR` overrides, for tests and portable setups).
pub fn data_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("LLMTOP_DATA_DIR") {
        return PathBuf::from(dir);
    }
    project_dirs()
        .map(|d| d.data_dir().to_path_buf())
        .unwrap_or_else(|| PathBuf::from(".llmtop"))
}

/// Where `scripts/fetch-model.sh` puts the default model.
pub fn models_dir() -> PathBuf {
    data_dir().join("models")
}
