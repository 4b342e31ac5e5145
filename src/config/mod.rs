//! Configuration: `RawConfig` as read from TOML (every field optional with a default), checked
//! once on load.
//!
//! Each section is defined by the layer that uses it; this file only gathers and validates them.

pub mod engine;
pub mod keys;

pub use crate::accounting::pricing::{PricingSection, TariffBand};
pub use crate::engine::settings::{ModelSection, SamplingSection};
pub use crate::export::prometheus::MetricsSection;
pub use crate::report::snapshot::SnapshotSection;
pub use crate::sensors::settings::{PlugConfig, SensorsSection};
pub use crate::util::paths::{config_dir, data_dir, default_config_file, models_dir};

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
    if let Err((action, e)) = crate::config::keys::KeyMap::from_config(&cfg.keys) {
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
        let target = match crate::sensors::http::parse_url(p.url.trim_end_matches('/')) {
            Ok(t) => t,
            Err(e) => return err(&sec, "url", e.to_string()),
        };
        if let Some(ca) = &p.ca_file {
            if !target.https {
                return err(
                    &sec,
                    "ca_file",
                    format!(
                        "is only used with https:// URLs, and url is `{}`; use https:// or remove ca_file",
                        p.url
                    ),
                );
            }
            if ca.as_os_str().is_empty() {
                return err(
                    &sec,
                    "ca_file",
                    "is empty; give the path of the CA certificate (PEM)".into(),
                );
            }
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
