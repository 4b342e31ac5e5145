//! Smart plugs measuring the whole machine at the wall.
//!
//! | kind             | request                             | power              | counter                     |
//! |------------------|-------------------------------------|--------------------|-----------------------------|
//! | `shelly-gen2`    | `/rpc/Switch.GetStatus?id=0`        | `apower` W         | `aenergy.total` Wh          |
//! | `shelly-pm1`     | `/rpc/PM1.GetStatus?id=0`           | `apower` W         | `aenergy.total` Wh          |
//! | `shelly-gen1`    | `/status`                           | `meters[0].power`  | `meters[0].total` W·min     |
//! | `tasmota`        | `/cm?cmnd=Status%208`               | `StatusSNS.ENERGY.Power` W | none (see below)    |
//! | `home-assistant` | `/api/states/<entity>` + bearer     | `state` if unit W/kW | `state` if unit Wh/kWh    |
//!
//! Tasmota's `Total` has 0.001 kWh (3.6 kJ) resolution, coarser than integrating `Power` over
//! any run shorter than an hour, so it is not offered as a counter. Home Assistant energy
//! entities are usually just as coarse: prefer a power entity there.

use super::settings::PlugConfig;
use super::{Covers, Method, Quantity, Reading, Sensor, Source};
use crate::net::client::{CaFileError, Client, NetError, Peer, check_url};
use serde_json::Value;
use std::time::Duration;

/// Largest body read from a device; a plug's JSON is a few hundred bytes.
pub const MAX_BODY: u64 = 1 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlugKind {
    ShellyGen2,
    ShellyPm1,
    ShellyGen1,
    Tasmota,
    HomeAssistant,
}

pub const KINDS: &str = "shelly-gen2, shelly-pm1, shelly-gen1, tasmota, home-assistant";

impl std::str::FromStr for PlugKind {
    type Err = PlugError;
    fn from_str(s: &str) -> Result<Self, PlugError> {
        Ok(match s {
            "shelly-gen2" | "shelly" => PlugKind::ShellyGen2,
            "shelly-pm1" => PlugKind::ShellyPm1,
            "shelly-gen1" => PlugKind::ShellyGen1,
            "tasmota" => PlugKind::Tasmota,
            "home-assistant" | "homeassistant" => PlugKind::HomeAssistant,
            other => return Err(PlugError::Kind(other.into())),
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PlugError {
    #[error("unknown plug kind {0:?}; kinds: {KINDS}")]
    Kind(String),
    #[error("{0}")]
    Config(String),
    #[error(transparent)]
    Http(#[from] NetError),
    #[error(transparent)]
    CaFile(#[from] CaFileError),
    #[error("{url}: not JSON: {why}")]
    Json { url: String, why: String },
    #[error("{url}: no {field} in the answer")]
    Field { url: String, field: String },
    #[error("{url}: {why}")]
    Unusable { url: String, why: String },
}

/// What one poll yields.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct PlugValues {
    pub watts: Option<f64>,
    /// Cumulative energy counter, joules.
    pub energy_j: Option<f64>,
}

/// Parse a device's answer. Pure: the HTTP layer is tested separately.
pub fn parse(kind: PlugKind, url: &str, body: &str) -> Result<PlugValues, PlugError> {
    let v: Value = serde_json::from_str(body).map_err(|e| PlugError::Json {
        url: url.into(),
        why: e.to_string(),
    })?;
    let num = |ptr: &str| v.pointer(ptr).and_then(Value::as_f64);
    let need = |ptr: &str| {
        num(ptr).ok_or_else(|| PlugError::Field {
            url: url.into(),
            field: ptr.trim_start_matches('/').replace('/', "."),
        })
    };
    match kind {
        PlugKind::ShellyGen2 | PlugKind::ShellyPm1 => Ok(PlugValues {
            watts: Some(need("/apower")?),
            energy_j: num("/aenergy/total").map(|wh| wh * 3600.0),
        }),
        PlugKind::ShellyGen1 => {
            if v.pointer("/meters/0/is_valid").and_then(Value::as_bool) == Some(false) {
                return Err(PlugError::Unusable {
                    url: url.into(),
                    why: "meter reports is_valid=false".into(),
                });
            }
            Ok(PlugValues {
                watts: Some(need("/meters/0/power")?),
                // Watt-minutes.
                energy_j: num("/meters/0/total").map(|wmin| wmin * 60.0),
            })
        }
        PlugKind::Tasmota => Ok(PlugValues {
            watts: Some(need("/StatusSNS/ENERGY/Power")?),
            energy_j: None,
        }),
        PlugKind::HomeAssistant => {
            let state = v
                .get("state")
                .and_then(Value::as_str)
                .ok_or_else(|| PlugError::Field {
                    url: url.into(),
                    field: "state".into(),
                })?;
            let x: f64 = state.trim().parse().map_err(|_| PlugError::Unusable {
                url: url.into(),
                why: format!("state is {state:?}, not a number"),
            })?;
            let unit = v
                .pointer("/attributes/unit_of_measurement")
                .and_then(Value::as_str)
                .unwrap_or("");
            match unit {
                "W" => Ok(PlugValues {
                    watts: Some(x),
                    energy_j: None,
                }),
                "kW" => Ok(PlugValues {
                    watts: Some(x * 1e3),
                    energy_j: None,
                }),
                "Wh" => Ok(PlugValues {
                    watts: None,
                    energy_j: Some(x * 3600.0),
                }),
                "kWh" => Ok(PlugValues {
                    watts: None,
                    energy_j: Some(x * 3.6e6),
                }),
                other => Err(PlugError::Unusable {
                    url: url.into(),
                    why: format!(
                        "unit_of_measurement {other:?}: pick an entity in W, kW, Wh or kWh"
                    ),
                }),
            }
        }
    }
}

/// How long one poll of a plug polled at `rate_hz` may take before it counts as lost: never
/// longer than a poll period, and short enough that a dead plug is cheap.
pub fn timeout_for(rate_hz: f64) -> Duration {
    let rate = if rate_hz.is_finite() && rate_hz > 0.0 {
        rate_hz
    } else {
        1.0
    };
    Duration::from_secs_f64((0.8 / rate).clamp(0.2, 2.0))
}

/// One configured plug.
#[derive(Debug)]
pub struct PlugSensor {
    kind: PlugKind,
    kind_name: String,
    request_url: String,
    client: Client,
    token: Option<String>,
    rate_hz: f64,
    timeout: Duration,
    /// Host (and port, unless the scheme's default) of the URL: the stable part of reading ids.
    key: String,
    has_counter: bool,
    last_error: Option<String>,
}

impl PlugSensor {
    pub fn new(cfg: &PlugConfig) -> Result<Self, PlugError> {
        let kind: PlugKind = cfg.kind.parse()?;
        let base = cfg.url.trim_end_matches('/');
        let target = check_url(base, Peer::Plug)?;
        if cfg.ca_file.is_some() && !target.https {
            return Err(PlugError::Config(format!(
                "{}: ca_file only applies to https:// URLs",
                cfg.url
            )));
        }
        let request_url = match kind {
            PlugKind::ShellyGen2 => format!("{base}/rpc/Switch.GetStatus?id=0"),
            PlugKind::ShellyPm1 => format!("{base}/rpc/PM1.GetStatus?id=0"),
            PlugKind::ShellyGen1 => format!("{base}/status"),
            PlugKind::Tasmota => format!("{base}/cm?cmnd=Status%208"),
            PlugKind::HomeAssistant => {
                let entity = cfg.entity.as_deref().ok_or_else(|| {
                    PlugError::Config(format!(
                        "{}: home-assistant needs `entity` (e.g. sensor.desk_plug_power)",
                        cfg.url
                    ))
                })?;
                if cfg.token.is_none() {
                    return Err(PlugError::Config(format!(
                        "{}: home-assistant needs `token` (a long-lived access token)",
                        cfg.url
                    )));
                }
                format!("{base}/api/states/{entity}")
            }
        };
        // The entity lands in the path: refuse here what would be a bad URL at every poll.
        check_url(&request_url, Peer::Plug)?;
        let rate_hz = if cfg.rate_hz.is_finite() && cfg.rate_hz > 0.0 {
            cfg.rate_hz
        } else {
            1.0
        };
        Ok(Self {
            kind,
            kind_name: cfg.kind.clone(),
            request_url,
            client: Client::with_ca_file(Peer::Plug, cfg.ca_file.as_deref())?,
            token: cfg.token.clone(),
            rate_hz,
            timeout: timeout_for(rate_hz),
            key: if target.default_port() {
                target.host
            } else {
                format!("{}-{}", target.host, target.port)
            },
            has_counter: matches!(
                kind,
                PlugKind::ShellyGen2 | PlugKind::ShellyPm1 | PlugKind::ShellyGen1
            ),
            last_error: None,
        })
    }

    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    pub fn request_url(&self) -> &str {
        &self.request_url
    }

    /// Why the last poll failed, if it did.
    pub fn last_error(&self) -> Option<&str> {
        self.last_error.as_deref()
    }

    /// One poll.
    pub fn fetch(&self) -> Result<PlugValues, PlugError> {
        let auth = self.token.as_ref().map(|t| format!("Bearer {t}"));
        let headers: Vec<(&str, &str)> = auth
            .as_deref()
            .map(|a| vec![("Authorization", a)])
            .unwrap_or_default();
        let body = self
            .client
            .get_text(&self.request_url, &headers, self.timeout, MAX_BODY)?;
        parse(self.kind, &self.request_url, &body)
    }

    /// The field a reading comes from ([`Reading::via`]): its unit and resolution decide the
    /// counter's error band.
    fn via(&self, counter: bool) -> &'static str {
        match (self.kind, counter) {
            (PlugKind::ShellyGen2 | PlugKind::ShellyPm1, false) => "apower",
            (PlugKind::ShellyGen2 | PlugKind::ShellyPm1, true) => "aenergy.total (Wh)",
            (PlugKind::ShellyGen1, false) => "meters[0].power",
            (PlugKind::ShellyGen1, true) => "meters[0].total (watt-minutes)",
            (PlugKind::Tasmota, _) => "StatusSNS.ENERGY.Power",
            (PlugKind::HomeAssistant, false) => "state (W)",
            (PlugKind::HomeAssistant, true) => "state (kWh or Wh)",
        }
    }

    fn reading(&self, what: &str, q: Quantity, m: Method, value: Option<f64>) -> Reading {
        Reading {
            id: format!("plug:{}:{what}", self.key),
            device: format!("{} {}", self.kind_name, self.key),
            label: "wall".into(),
            quantity: q,
            value,
            limit: None,
            source: Source::Plug,
            covers: Covers::Wall,
            method: m,
            rejected: None,
            via: Some(self.via(m == Method::Counter).to_string()),
        }
    }
}

impl Sensor for PlugSensor {
    fn name(&self) -> String {
        format!("plug:{}", self.key)
    }

    fn read(&mut self, _now: f64) -> Vec<Reading> {
        let vals = match self.fetch() {
            Ok(v) => {
                self.last_error = None;
                v
            }
            Err(e) => {
                self.last_error = Some(e.to_string());
                PlugValues::default()
            }
        };
        let mut out = Vec::with_capacity(2);
        let ha_energy = self.kind == PlugKind::HomeAssistant && vals.energy_j.is_some();
        if !ha_energy {
            out.push(self.reading("power", Quantity::Power, Method::Measured, vals.watts));
        }
        if self.has_counter || ha_energy {
            out.push(self.reading("energy", Quantity::Energy, Method::Counter, vals.energy_j));
        }
        out
    }

    fn poll_rate_hz(&self) -> Option<f64> {
        Some(self.rate_hz)
    }
}
