//! Configuration: `RawConfig` as read from TOML (every field optional with a default), checked
//! and parsed once on load into a [`Config`] that carries the parsed values (tariffs, key
//! bindings, colour mode) beside the raw sections, so no command parses a section again.
//!
//! Each section is defined by the layer that uses it; this file only gathers and validates them.

pub mod engine;
pub mod keys;

pub use crate::accounting::pricing::{PricingSection, TariffBand};
pub use crate::engine::settings::{BackendSection, ModelSection, SamplingSection};
pub use crate::export::prometheus::MetricsSection;
pub use crate::report::snapshot::SnapshotSection;
pub use crate::sensors::settings::{PlugConfig, SensorsSection};
pub use crate::util::paths::{config_dir, data_dir, default_config_file, models_dir};

use crate::accounting::pricing::{PricingError, Tariff};
use crate::cli::ColorMode;
use crate::config::keys::KeyMap;
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
    pub backend: BackendSection,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UiSection {
    pub theme: String,
    /// Gauge refresh rate, Hz.
    pub refresh_hz: f64,
    /// Frames per second while a reply streams and the engine has a thread on every CPU
    /// (dashboard::pace); 60 otherwise.
    pub generating_fps: f64,
    /// "auto", "always" or "never".
    pub color: String,
}

impl Default for UiSection {
    fn default() -> Self {
        Self {
            theme: "dark".into(),
            refresh_hz: 4.0,
            generating_fps: 10.0,
            color: "auto".into(),
        }
    }
}

/// The config as the program uses it, built once in `main` from the file and the command
/// line: the raw sections, plus every value that needs parsing, already parsed.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it came from; `None` when there was none and the defaults apply.
    pub path: Option<PathBuf>,
    pub raw: RawConfig,
    /// The `[pricing]` tariff every cost is priced in.
    pub tariff: Tariff,
    /// The regions to compare against: `compare --regions`, else `[pricing] compare_regions`.
    pub compare: Vec<Tariff>,
    pub keys: KeyMap,
    /// `--color`, else `[ui] color`.
    pub color: ColorMode,
}

/// What the command line overrides in the config.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Overrides {
    /// `--color`.
    pub color: Option<ColorMode>,
    /// `compare --regions`; empty: the config's `compare_regions`.
    pub compare_regions: Vec<String>,
}

/// A config file that could not be used: one line naming the file, the place and the cause.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{}: cannot read config: {}", .0.path().display(), .0.reason())]
    Read(crate::util::fs::ReadError),
    /// The default config file is a symlink whose target is gone.
    #[error(
        "{}: config file is a link to {}, which does not exist; fix or remove the link",
        path.display(),
        target.display()
    )]
    DanglingLink { path: PathBuf, target: PathBuf },
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
    /// A command-line value the config would take (e.g. `--regions`) is unusable.
    #[error("{flag} {value}: {message}")]
    Flag {
        flag: &'static str,
        value: String,
        message: String,
    },
}

/// Parse and check config text, without command-line overrides; `path` is only used in
/// error messages.
pub fn parse(text: &str, path: &Path) -> Result<RawConfig, ConfigError> {
    Config::parse(text, path, &Overrides::default()).map(|c| c.raw)
}

impl Config {
    /// Parse config text, check it, apply `cli` and parse every value the program needs;
    /// `path` names the file in error messages.
    pub fn parse(text: &str, path: &Path, cli: &Overrides) -> Result<Config, ConfigError> {
        let raw = parse_toml(text, path)?;
        Config::build(raw, text, Some(path), cli)
    }

    /// The defaults (no config file), with `cli` applied.
    pub fn defaults(cli: &Overrides) -> Result<Config, ConfigError> {
        Config::build(RawConfig::default(), "", None, cli)
    }

    fn build(
        raw: RawConfig,
        text: &str,
        path: Option<&Path>,
        cli: &Overrides,
    ) -> Result<Config, ConfigError> {
        let shown = path.unwrap_or(Path::new("(defaults)"));
        let parsed = validate(&raw, text, shown)?;
        let compare = if cli.compare_regions.is_empty() {
            parsed.compare
        } else {
            Tariff::compare_set(&raw.pricing, &cli.compare_regions).map_err(|e| {
                let value = match &e {
                    PricingError::UnknownRegion { code, .. } => code.clone(),
                    _ => cli.compare_regions.join(","),
                };
                ConfigError::Flag {
                    flag: "--regions",
                    value,
                    message: e.reason(),
                }
            })?
        };
        Ok(Config {
            path: path.map(Path::to_path_buf),
            tariff: parsed.tariff,
            compare,
            keys: parsed.keys,
            color: cli.color.unwrap_or(parsed.color),
            raw,
        })
    }
}

/// The values [`validate`] parsed on its way through the file.
struct Parsed {
    tariff: Tariff,
    compare: Vec<Tariff>,
    keys: KeyMap,
    color: ColorMode,
}

fn parse_toml(text: &str, path: &Path) -> Result<RawConfig, ConfigError> {
    toml::from_str::<RawConfig>(text).map_err(|e| {
        let line = e
            .span()
            .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1)
            .unwrap_or(1);
        ConfigError::Parse {
            path: path.to_path_buf(),
            line,
            message: e.message().trim().replace('\n', " "),
        }
    })
}

/// Line of `key` in `section` (`""` for top level; `name#n` for the n-th `[[name]]` table),
/// for error messages; the section header, or 1, when the key is not written out.
fn line_of(text: &str, section: &str, key: &str) -> usize {
    find_line(text, section, key).unwrap_or(1)
}

/// [`line_of`], or `None` when neither the key nor its section is in the text.
fn find_line(text: &str, section: &str, key: &str) -> Option<usize> {
    let (section, nth) = match section.split_once('#') {
        Some((s, n)) => (s, n.parse::<usize>().unwrap_or(0)),
        None => (section, 0),
    };
    let mut in_section = section.is_empty();
    let mut header_line = None;
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
                header_line = Some(i + 1);
            }
            continue;
        }
        let dotted = format!("{section}.{key}");
        let starts = |k: &str| {
            l.strip_prefix(k)
                .is_some_and(|rest| rest.trim_start().starts_with('='))
        };
        if (in_section && starts(key)) || (!section.is_empty() && starts(&dotted)) {
            return Some(i + 1);
        }
    }
    header_line
}

/// A key as the user reads it: `ui.color`, `sensors.plugs[1].kind`.
fn shown_key(section: &str, key: &str) -> String {
    match section.split_once('#') {
        Some((s, n)) => format!("{s}[{n}].{key}"),
        None if section.is_empty() => key.to_string(),
        None => format!("{section}.{key}"),
    }
}

/// The line a `[pricing]` error points at. Bands written inline (`bands = [{ ... }]`) have
/// no `[[pricing.bands]]` table: then the `bands` key's line.
fn pricing_line(text: &str, e: &PricingError) -> usize {
    let (section, key) = e.place();
    find_line(text, &section, key)
        .or_else(|| {
            section
                .starts_with("pricing.bands#")
                .then(|| find_line(text, "pricing", "bands"))
                .flatten()
        })
        .unwrap_or(1)
}

/// Check values that parse but make no sense, so the program never starts with half a config,
/// and keep what parsing them gave. Each section's owner adds its checks here.
fn validate(cfg: &RawConfig, text: &str, path: &Path) -> Result<Parsed, ConfigError> {
    let err = |section: &str, key: &str, message: String| {
        Err(ConfigError::InvalidAt {
            path: path.to_path_buf(),
            line: line_of(text, section, key),
            key: shown_key(section, key),
            message,
        })
    };
    // [ui]
    let color = match cfg.ui.color.as_str() {
        "auto" => ColorMode::Auto,
        "always" => ColorMode::Always,
        "never" => ColorMode::Never,
        other => {
            return err(
                "ui",
                "color",
                format!("`{other}` is not one of auto, always, never"),
            );
        }
    };
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
    if !(cfg.ui.generating_fps >= 1.0 && cfg.ui.generating_fps <= 60.0) {
        return err(
            "ui",
            "generating_fps",
            format!(
                "{} is out of range; use 1 to 60 (default 10)",
                cfg.ui.generating_fps
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
    let keys = match KeyMap::from_config(&cfg.keys) {
        Ok(k) => k,
        Err((action, e)) => return err("keys", &action, e.to_string()),
    };
    // [model]: zeroes here are named by key and line, not as the flag that would override them.
    let m = &cfg.model;
    if m.path.as_ref().is_some_and(|p| p.as_os_str().is_empty()) {
        return err(
            "model",
            "path",
            "is empty; give the path of a GGUF file, or remove the key to search for models".into(),
        );
    }
    if m.n_ctx == Some(0) {
        return err(
            "model",
            "n_ctx",
            "0 must be at least 1; remove the key to use the model's context (up to 4096)".into(),
        );
    }
    if m.threads == Some(0) {
        return err(
            "model",
            "threads",
            "0 must be at least 1; remove the key to use all physical cores".into(),
        );
    }
    if m.max_tokens == Some(0) {
        return err("model", "max_tokens", "0 must be at least 1".into());
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
    // [backend]
    let b = &cfg.backend;
    if let Some(url) = &b.attach
        && let Err(e) = crate::engine::remote::client::Server::parse(url)
    {
        let why = match e {
            crate::engine::remote::client::RemoteError::BadUrl { why, .. } => why,
            other => other.to_string(),
        };
        return err(
            "backend",
            "attach",
            format!("bad URL: {why}; give the server's address, e.g. \"http://127.0.0.1:11434\""),
        );
    }
    if let Some(k) = &b.kind
        && crate::engine::remote::kind::Kind::parse(k).is_none()
    {
        return err(
            "backend",
            "kind",
            format!(
                "`{}` is not one of {}; remove the key to detect it",
                crate::util::sanitize::terminal(k),
                crate::engine::remote::kind::KIND_NAMES
            ),
        );
    }
    if b.model.as_ref().is_some_and(|m| m.trim().is_empty()) {
        return err(
            "backend",
            "model",
            "is empty; give a model name the server lists, or remove the key".into(),
        );
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
    // Plausibility ceilings: a reading above one is rejected, so each must be a real power.
    for (key, w, default) in [
        ("max_watts", se.max_watts, 5000),
        ("max_gpu_watts", se.max_gpu_watts, 1500),
        ("max_cpu_watts", se.max_cpu_watts, 1000),
        ("max_battery_watts", se.max_battery_watts, 500),
    ] {
        if !(w.is_finite() && w > 0.0 && w <= 1e6) {
            return err(
                "sensors",
                key,
                format!(
                    "{w} is out of range; use a power in W above 0, up to 1000000 (default {default})"
                ),
            );
        }
    }
    if se.tdp_watts > se.max_cpu_watts {
        return err(
            "sensors",
            "tdp_watts",
            format!(
                "{} W is above max_cpu_watts ({} W): raise max_cpu_watts or lower tdp_watts",
                se.tdp_watts, se.max_cpu_watts
            ),
        );
    }
    if !(se.idle_window_s.is_finite() && (0.0..=3600.0).contains(&se.idle_window_s)) {
        return err(
            "sensors",
            "idle_window_s",
            format!(
                "{} is out of range; use 0 (no idle baseline) to 3600 seconds (default 10)",
                se.idle_window_s
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
        let target = match crate::net::client::check_url(
            p.url.trim_end_matches('/'),
            crate::net::client::Peer::Plug,
        ) {
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
    // [pricing]: built here so a bad band or region stops every command, not only those
    // that price something, and names its line.
    let pricing_err = |e: PricingError| {
        let (section, key) = e.place();
        ConfigError::InvalidAt {
            path: path.to_path_buf(),
            line: pricing_line(text, &e),
            key: shown_key(&section, key),
            message: e.reason(),
        }
    };
    let tariff = Tariff::from_config(&cfg.pricing).map_err(pricing_err)?;
    let compare = Tariff::compare_set(&cfg.pricing, &[]).map_err(pricing_err)?;
    Ok(Parsed {
        tariff,
        compare,
        keys,
        color,
    })
}

/// Load `path`, or the default config file if it exists, or defaults; then apply `cli`.
pub fn load(explicit: Option<&Path>, cli: &Overrides) -> Result<Config, ConfigError> {
    load_from(explicit, default_config_file().as_deref(), cli)
}

/// [`load`] with the default file's place given (tests point it into a temp dir).
pub fn load_from(
    explicit: Option<&Path>,
    default: Option<&Path>,
    cli: &Overrides,
) -> Result<Config, ConfigError> {
    let path = match (explicit, default) {
        (Some(p), _) => p.to_path_buf(),
        (None, Some(p)) => match std::fs::symlink_metadata(p) {
            // Anything there, even a FIFO or a broken link, is meant as the config: read it
            // (and refuse it loudly) rather than run on defaults without a word.
            Ok(meta) => {
                if meta.file_type().is_symlink() && !p.exists() {
                    return Err(ConfigError::DanglingLink {
                        path: p.to_path_buf(),
                        target: std::fs::read_link(p).unwrap_or_default(),
                    });
                }
                p.to_path_buf()
            }
            Err(_) => return Config::defaults(cli),
        },
        (None, None) => return Config::defaults(cli),
    };
    let text = crate::util::fs::read_capped(&path, crate::util::fs::limits::CONFIG)
        .map_err(ConfigError::Read)?;
    Config::parse(&text, &path, cli)
}
