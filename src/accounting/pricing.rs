//! Electricity prices: region presets, the user's own tariff with time-of-use bands, cost and
//! CO2 of an energy amount, and money formatting.
//!
//! All maths is in joules in, money out (1 kWh = 3.6 MJ). Local time comes from `jiff` (a
//! maintained, pure-Rust tz library reading the system tz database): the tariff carries its
//! [`TimeZone`], so tests inject a fixed zone instead of depending on the machine's.

use crate::accounting::energy::J_PER_WH;
use jiff::Timestamp;
use jiff::tz::TimeZone;
use serde::{Deserialize, Serialize};

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

/// Joules per kilowatt-hour.
pub const J_PER_KWH: f64 = 3.6e6;

/// A built-in household price (taxes included) and grid carbon intensity for one region.
#[derive(Debug, Clone, PartialEq)]
pub struct Region {
    pub code: &'static str,
    pub name: &'static str,
    pub currency: &'static str,
    pub price_per_kwh: f64,
    pub price_source: &'static str,
    pub price_year: u16,
    /// g CO2e per kWh of grid electricity; `None` where no figure is given.
    pub co2_g_per_kwh: Option<f64>,
    pub co2_source: &'static str,
    pub co2_year: u16,
    /// What the price leaves out, if anything.
    pub note: &'static str,
}

const CO2_SOURCE: &str = "Ember via Our World in Data";

/// The presets, from the table in SENSORS.md. Refresh yearly.
pub const REGIONS: &[Region] = &[
    Region {
        code: "US",
        name: "United States",
        currency: "USD",
        price_per_kwh: 0.175,
        price_source: "EIA Electric Power Monthly, residential",
        price_year: 2025,
        co2_g_per_kwh: Some(369.0),
        co2_source: CO2_SOURCE,
        co2_year: 2023,
        note: "",
    },
    Region {
        code: "DE",
        name: "Germany",
        currency: "EUR",
        price_per_kwh: 0.38,
        price_source: "Eurostat nrg_pc_204, H1",
        price_year: 2025,
        co2_g_per_kwh: Some(381.0),
        co2_source: CO2_SOURCE,
        co2_year: 2023,
        note: "",
    },
    Region {
        code: "DK",
        name: "Denmark",
        currency: "EUR",
        price_per_kwh: 0.35,
        price_source: "Eurostat nrg_pc_204, H1",
        price_year: 2025,
        co2_g_per_kwh: Some(152.0),
        co2_source: CO2_SOURCE,
        co2_year: 2023,
        note: "about 2.6 DKK",
    },
    Region {
        code: "FR",
        name: "France",
        currency: "EUR",
        price_per_kwh: 0.24,
        price_source: "CRE average incl. taxes",
        price_year: 2025,
        co2_g_per_kwh: Some(56.0),
        co2_source: CO2_SOURCE,
        co2_year: 2023,
        note: "",
    },
    Region {
        code: "UK",
        name: "United Kingdom",
        currency: "GBP",
        price_per_kwh: 0.2635,
        price_source: "Ofgem price cap, Oct-Dec",
        price_year: 2025,
        co2_g_per_kwh: Some(238.0),
        co2_source: CO2_SOURCE,
        co2_year: 2023,
        note: "unit rate only; the daily standing charge is not included",
    },
    Region {
        code: "JP",
        name: "Japan",
        currency: "JPY",
        price_per_kwh: 31.0,
        price_source: "national appliance-label guideline price (approximate)",
        price_year: 2022,
        co2_g_per_kwh: Some(485.0),
        co2_source: CO2_SOURCE,
        co2_year: 2023,
        note: "approximate",
    },
    Region {
        code: "EU",
        name: "European Union average",
        currency: "EUR",
        price_per_kwh: 0.287,
        price_source: "Eurostat nrg_pc_204, H1 average",
        price_year: 2025,
        co2_g_per_kwh: None,
        co2_source: "",
        co2_year: 0,
        note: "",
    },
];

/// The preset codes, comma-separated, for error messages.
pub fn region_codes() -> String {
    REGIONS
        .iter()
        .map(|r| r.code)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Look a preset up by code (case-insensitive).
pub fn region(code: &str) -> Option<&'static Region> {
    REGIONS
        .iter()
        .find(|r| r.code.eq_ignore_ascii_case(code.trim()))
}

/// A `[pricing]` setting that cannot be used: one line naming the key, the cause and the fix.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PricingError {
    #[error("[pricing] {key}: unknown region \"{code}\"; valid regions: {valid}{}", own_hint(.key))]
    UnknownRegion {
        key: String,
        code: String,
        valid: String,
    },
    #[error(
        "[pricing] {}: price {value} is not allowed; use a price of 0 or more per kWh",
        price_key(.band)
    )]
    BadPrice {
        /// The band whose price it is; `None` for `price_per_kwh`.
        band: Option<usize>,
        value: f64,
    },
    #[error("[pricing] co2_g_per_kwh: {value} is not allowed; use grams CO2e per kWh, 0 or more")]
    BadCo2 { value: f64 },
    #[error(
        "[pricing] currency: \"{code}\" is not a currency code; use a 3-letter ISO 4217 code such as USD, EUR, GBP"
    )]
    BadCurrency { code: String },
    #[error(
        "[pricing] region is empty: set region to one of {valid}, or set both price_per_kwh and currency"
    )]
    NoTariff { valid: String },
    #[error("[pricing] bands[{index}]: {message}")]
    BadBand {
        index: usize,
        /// The key at fault: "from_hour" or "to_hour".
        key: &'static str,
        message: String,
    },
    #[error(
        "[pricing] bands[{first}] and bands[{second}] overlap at hour {hour}; each hour of the day must belong to exactly one band"
    )]
    BandOverlap {
        first: usize,
        second: usize,
        hour: u8,
    },
    #[error(
        "[pricing] bands leave hours {hours} without a price; bands must cover all 24 hours (a band may cross midnight, e.g. from_hour = 22, to_hour = 6)"
    )]
    BandGap {
        hours: String,
        /// The band that ends where the first gap begins, if one does.
        before: Option<usize>,
    },
}

/// Only the configured region can be replaced by an own price; compare regions are presets.
fn own_hint(key: &str) -> &'static str {
    if key == "region" {
        " (or set price_per_kwh and currency for your own tariff)"
    } else {
        ""
    }
}

fn price_key(band: &Option<usize>) -> String {
    match band {
        Some(i) => format!("bands[{i}].price_per_kwh"),
        None => "price_per_kwh".into(),
    }
}

impl PricingError {
    /// Where in the config file the error is: the table (`pricing`, or `pricing.bands#i` for
    /// the i-th `[[pricing.bands]]`) and the key, so the config can name the file's line.
    pub fn place(&self) -> (String, &'static str) {
        let band = |i: usize| format!("pricing.bands#{i}");
        match self {
            PricingError::UnknownRegion { key, .. } if key == "compare_regions" => {
                ("pricing".into(), "compare_regions")
            }
            PricingError::UnknownRegion { .. } | PricingError::NoTariff { .. } => {
                ("pricing".into(), "region")
            }
            PricingError::BadPrice {
                band: Some(i),
                value: _,
            } => (band(*i), "price_per_kwh"),
            PricingError::BadPrice { band: None, .. } => ("pricing".into(), "price_per_kwh"),
            PricingError::BadCo2 { .. } => ("pricing".into(), "co2_g_per_kwh"),
            PricingError::BadCurrency { .. } => ("pricing".into(), "currency"),
            PricingError::BadBand { index, key, .. } => (band(*index), key),
            // The later band is the one that collides with what came before.
            PricingError::BandOverlap { second, .. } => (band(*second), "from_hour"),
            PricingError::BandGap {
                before: Some(i), ..
            } => (band(*i), "to_hour"),
            PricingError::BandGap { before: None, .. } => (band(0), "from_hour"),
        }
    }

    /// The message without its `[pricing] key:` lead, for a caller that names the place
    /// itself (the config's `file:line: key:` form).
    pub fn reason(&self) -> String {
        let full = self.to_string();
        let lead = match self {
            PricingError::UnknownRegion { key, .. } => format!("[pricing] {key}: "),
            PricingError::BadPrice { band, .. } => format!("[pricing] {}: ", price_key(band)),
            PricingError::BadCo2 { .. } => "[pricing] co2_g_per_kwh: ".into(),
            PricingError::BadCurrency { .. } => "[pricing] currency: ".into(),
            PricingError::BadBand { index, .. } => format!("[pricing] bands[{index}]: "),
            PricingError::NoTariff { .. }
            | PricingError::BandOverlap { .. }
            | PricingError::BandGap { .. } => "[pricing] ".into(),
        };
        full.strip_prefix(&lead).unwrap_or(&full).to_string()
    }
}

/// An ISO 4217 currency code, upper case.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Currency(String);

impl Currency {
    /// Accepts any 3-letter code (case-insensitive); formatting knows the common ones.
    pub fn new(code: &str) -> Result<Self, PricingError> {
        let code = code.trim();
        if code.len() == 3 && code.chars().all(|c| c.is_ascii_alphabetic()) {
            Ok(Self(code.to_ascii_uppercase()))
        } else {
            Err(PricingError::BadCurrency { code: code.into() })
        }
    }

    pub fn code(&self) -> &str {
        &self.0
    }

    /// Symbol placed before the amount, or the code after it when there is no common symbol;
    /// the digits after the decimal point in ordinary amounts.
    fn style(&self) -> (&str, &str, usize) {
        match self.0.as_str() {
            "USD" => ("$", "", 2),
            "EUR" => ("€", "", 2),
            "GBP" => ("£", "", 2),
            "JPY" => ("¥", "", 0),
            "DKK" => ("", " kr", 2),
            "SEK" => ("", " kr", 2),
            "NOK" => ("", " kr", 2),
            other => ("", other, 2),
        }
    }

    /// The hundredth part of the currency, as written after an amount: `¢` (US cent), `€ct`
    /// (euro cent; no symbol is standard, and a bare `ct` or `¢` would hide the currency),
    /// `p` (penny), `øre`/`öre`. `None` where llmtop does not know it (JPY has none in use;
    /// an unknown code may not divide by 100): those amounts stay in the main unit.
    fn minor_unit(&self) -> Option<&'static str> {
        match self.0.as_str() {
            "USD" => Some("¢"),
            "EUR" => Some("€ct"),
            "GBP" => Some("p"),
            "DKK" | "NOK" => Some("øre"),
            "SEK" => Some("öre"),
            _ => None,
        }
    }

    /// Digits after the decimal point in ordinary amounts (2 for USD, 0 for JPY).
    pub fn decimals(&self) -> usize {
        self.style().2
    }
}

impl std::fmt::Display for Currency {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Below this many main units (a dime, 10 p) an amount is written in the minor unit: `4.2 ¢`
/// reads faster than `$0.042`.
const MINOR_BELOW: f64 = 0.1;
/// The most digits after the point: below `0.0000000001 ¢` an amount is rounding noise.
const MAX_DECIMALS: usize = 10;

/// Format money so a person can read it: the unit is picked to give two or three significant
/// digits. Every surface that prints money (footer, reply line, run card Markdown, compare,
/// bench) calls this one function.
///
/// - 100 and more: whole units with thousands separators: `$1,235`, `¥12,346`.
/// - 1 to 100: the currency's own decimals, at least two significant digits: `$4.20`,
///   `$14.61`, `¥31`, `¥3.1`.
/// - 0.10 to 1: `$0.42`, `£0.36`.
/// - Below 0.10, in the minor unit with two significant digits: `4.2 ¢`, `0.42 ¢`,
///   `0.0012 ¢`, `0.063 €ct`, `0.5 p`, `3.1 øre`; a currency without a known minor unit keeps
///   its main unit: `¥0.0012`, `0.00042 CHF`.
///
/// Zero is `$0.00`; what cannot be a number is `n/a`. Negative amounts (some tariffs pay for
/// use at times) keep their sign: `-1.2 ¢`.
pub fn format_money(amount: f64, currency: &Currency) -> String {
    if !amount.is_finite() {
        return "n/a".into();
    }
    let (prefix, suffix, decimals) = currency.style();
    let sign = if amount < 0.0 { "-" } else { "" };
    let abs = amount.abs();
    let suffix = if suffix.is_empty() || suffix.starts_with(' ') {
        suffix.to_string()
    } else {
        format!(" {suffix}")
    };
    if abs == 0.0 {
        return format!("{prefix}{:.decimals$}{suffix}", 0.0);
    }
    if abs < MINOR_BELOW
        && let Some(minor) = currency.minor_unit()
    {
        let cents = abs * 100.0;
        let digits = two_significant(cents);
        // 9.996 ¢ rounds to 10.0 ¢: that is a dime, written as one.
        if format!("{cents:.digits$}").parse::<f64>().unwrap_or(0.0) < 10.0 {
            return format!("{sign}{cents:.digits$} {minor}");
        }
        return format!("{sign}{prefix}{abs:.decimals$}{suffix}");
    }
    let digits = if abs >= 100.0 {
        0
    } else {
        decimals.max(two_significant(abs))
    };
    let body = group_thousands(&format!("{abs:.digits$}"));
    format!("{sign}{prefix}{body}{suffix}")
}

/// Amounts shown side by side (a chart's panel, one axis) are written in one unit: the minor
/// one (cents) when every amount is below [`MINOR_BELOW`] and the currency has one; else the
/// main one. Returns the minor unit's name when it is the one.
pub fn shared_minor_unit(amounts: &[f64], currency: &Currency) -> Option<&'static str> {
    let minor = currency.minor_unit()?;
    amounts
        .iter()
        .filter(|a| a.is_finite())
        .all(|a| a.abs() < MINOR_BELOW)
        .then_some(minor)
}

/// `amount` in the unit [`shared_minor_unit`] chose for its panel: "0.012 ¢" in cents, else
/// "$0.00012" in the main unit (with two significant digits, however small).
pub fn format_money_in(amount: f64, currency: &Currency, minor: Option<&str>) -> String {
    if !amount.is_finite() {
        return "n/a".into();
    }
    let sign = if amount < 0.0 { "-" } else { "" };
    let abs = amount.abs();
    if let Some(unit) = minor {
        let cents = abs * 100.0;
        let digits = two_significant(cents);
        return format!("{sign}{cents:.digits$} {unit}");
    }
    let (prefix, suffix, decimals) = currency.style();
    let suffix = if suffix.is_empty() || suffix.starts_with(' ') {
        suffix.to_string()
    } else {
        format!(" {suffix}")
    };
    let digits = if abs >= 100.0 {
        0
    } else {
        decimals.max(two_significant(abs))
    };
    let body = group_thousands(&format!("{abs:.digits$}"));
    format!("{sign}{prefix}{body}{suffix}")
}

/// Decimals that show `abs` with two significant digits (none at 10 and above), at most
/// [`MAX_DECIMALS`].
fn two_significant(abs: f64) -> usize {
    if abs >= 10.0 || abs == 0.0 || !abs.is_finite() {
        return 0;
    }
    // The first significant digit sits at 10^-k; one decimal more shows the second.
    let k = (-abs.log10()).ceil() as i64;
    usize::try_from((k + 1).max(0))
        .unwrap_or(0)
        .min(MAX_DECIMALS)
}

fn group_thousands(number: &str) -> String {
    let (int, frac) = match number.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (number, None),
    };
    let mut out = String::with_capacity(number.len() + int.len() / 3);
    for (i, ch) in int.chars().enumerate() {
        if i > 0 && (int.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(ch);
    }
    if let Some(f) = frac {
        out.push('.');
        out.push_str(f);
    }
    out
}

/// A unit price, with up to 4 decimals so tariffs like 0.175 or 0.2635 show exactly:
/// `$0.175`, `£0.2635`, `€0.38`, `¥31`. (A tariff is quoted, not measured: it keeps its own
/// digits and its main unit, unlike [`format_money`].)
pub fn format_unit_price(price: f64, currency: &Currency) -> String {
    if !price.is_finite() {
        return "n/a".into();
    }
    let (prefix, suffix, decimals) = currency.style();
    let sign = if price < 0.0 { "-" } else { "" };
    let mut body = format!("{:.4}", price.abs());
    // Trim zeros beyond the currency's own decimals.
    let min_len = body.find('.').map_or(body.len(), |dot| {
        if decimals == 0 {
            dot
        } else {
            dot + 1 + decimals
        }
    });
    while body.len() > min_len && (body.ends_with('0') || body.ends_with('.')) {
        body.pop();
    }
    let body = group_thousands(&body);
    let suffix = if suffix.is_empty() || suffix.starts_with(' ') {
        suffix.to_string()
    } else {
        format!(" {suffix}")
    };
    format!("{sign}{prefix}{body}{suffix}")
}

/// Money per 1000 of something (replies, stories): `0.42 ¢ / 1000 replies`, for amounts too
/// small to read one at a time.
pub fn format_per_1000(amount_each: f64, currency: &Currency, what: &str) -> String {
    format!(
        "{} / 1000 {what}",
        format_money(amount_each * 1000.0, currency)
    )
}

/// Money per million generated tokens, the unit hosted models are priced in:
/// `1.0 ¢ / 1M tok` from an amount per token.
pub fn format_per_million_tokens(amount_per_token: f64, currency: &Currency) -> String {
    format!(
        "{} / 1M tok",
        format_money(amount_per_token * 1e6, currency)
    )
}

/// True when an amount is below one minor unit (a cent): too small to mean much alone, so
/// a surface adds a per-1000 or per-million figure beside it.
pub fn is_tiny(amount: f64) -> bool {
    amount.is_finite() && amount.abs() < 0.01
}

/// Hours in an average month and year (365.25 days).
pub const HOURS_PER_YEAR: f64 = 8766.0;
pub const HOURS_PER_MONTH: f64 = HOURS_PER_YEAR / 12.0;

/// What a cost run rate comes to over a month and a year.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Projection {
    pub per_hour: f64,
    pub per_month: f64,
    pub per_year: f64,
}

/// The shortest stretch a projection is made from: over a few seconds the rate is mostly the
/// model's load.
pub const MIN_PROJECTION_S: f64 = 60.0;

/// Project `cost` spent over `seconds` at the same pace, around the clock: the session's
/// average draw (idle time and replies as they came) for a month and a year. `None` for less
/// than [`MIN_PROJECTION_S`] or figures that are not numbers.
pub fn project(cost: f64, seconds: f64) -> Option<Projection> {
    if !(cost.is_finite() && seconds.is_finite() && seconds >= MIN_PROJECTION_S) {
        return None;
    }
    let per_hour = cost / seconds * 3600.0;
    Some(Projection {
        per_hour,
        per_month: per_hour * HOURS_PER_MONTH,
        per_year: per_hour * HOURS_PER_YEAR,
    })
}

/// Energy as a person reads it: joules below a watt-hour, with two significant digits when
/// small (`0.41 J`, `4.1 J`, `41 J`, `410 J`), then watt-hours (`1.2 Wh`, `12 Wh`,
/// `1,234 Wh`).
pub fn format_energy(joules: f64) -> String {
    if !joules.is_finite() {
        return "n/a".into();
    }
    let (value, unit) = if joules.abs() >= J_PER_WH {
        (joules / J_PER_WH, "Wh")
    } else {
        (joules, "J")
    };
    let sign = if value < 0.0 { "-" } else { "" };
    let abs = value.abs();
    let d = two_significant(abs).min(3);
    format!("{sign}{} {unit}", group_thousands(&format!("{abs:.d$}")))
}

/// Joules per generated token: `0.52 J/tok`, `12.3 J/tok`.
pub fn format_j_per_token(j: f64) -> String {
    if !j.is_finite() {
        return "n/a".into();
    }
    let digits = if j.abs() >= 10.0 { 1 } else { 2 };
    format!("{j:.digits$} J/tok")
}

/// Grams CO2e, switching to kg at 1000 g: `12.3 g CO2e`, `4.56 kg CO2e`.
pub fn format_co2(grams: f64) -> String {
    if !grams.is_finite() {
        "n/a".into()
    } else if grams.abs() >= 1000.0 {
        format!("{:.2} kg CO2e", grams / 1000.0)
    } else if grams.abs() >= 10.0 || grams == 0.0 {
        format!("{grams:.1} g CO2e")
    } else {
        let d = two_significant(grams.abs()).max(1);
        format!("{grams:.d$} g CO2e")
    }
}

/// A usable tariff: a price for every local hour of the day, a currency and, if known, the
/// grid's carbon intensity.
#[derive(Debug, Clone, PartialEq)]
pub struct Tariff {
    /// Region code ("DE") or "own" for a tariff from config.
    pub label: String,
    pub currency: Currency,
    /// Price per kWh for each local hour 0..24.
    hourly: [f64; 24],
    pub co2_g_per_kwh: Option<f64>,
    /// Where the price comes from, with its year: "Eurostat nrg_pc_204, H1 2025" or "config".
    pub source: String,
    tz: TimeZone,
}

impl Tariff {
    /// A built-in region, flat price, in the system's local time zone.
    pub fn preset(code: &str) -> Result<Self, PricingError> {
        Self::preset_for_key(code, "region")
    }

    fn preset_for_key(code: &str, key: &str) -> Result<Self, PricingError> {
        let r = region(code).ok_or_else(|| PricingError::UnknownRegion {
            key: key.into(),
            code: code.into(),
            valid: region_codes(),
        })?;
        Ok(Self::from_region(r))
    }

    pub fn from_region(r: &Region) -> Self {
        Self {
            label: r.code.into(),
            currency: Currency(r.currency.into()),
            hourly: [r.price_per_kwh; 24],
            co2_g_per_kwh: r.co2_g_per_kwh,
            source: format!("{} {}", r.price_source, r.price_year),
            tz: TimeZone::system(),
        }
    }

    /// The tariff `[pricing]` describes: the user's own price, currency, CO2 and bands win over
    /// the preset named by `region`.
    pub fn from_config(p: &PricingSection) -> Result<Self, PricingError> {
        let preset = if p.region.trim().is_empty() {
            None
        } else {
            Some(Self::preset_for_key(&p.region, "region")?)
        };
        let own = p.price_per_kwh.is_some() || p.currency.is_some() || !p.bands.is_empty();
        let mut t = match preset {
            Some(t) => t,
            None => {
                if (p.price_per_kwh.is_none() && p.bands.is_empty()) || p.currency.is_none() {
                    return Err(PricingError::NoTariff {
                        valid: region_codes(),
                    });
                }
                Self {
                    label: "own".into(),
                    currency: Currency("USD".into()),
                    hourly: [0.0; 24],
                    co2_g_per_kwh: None,
                    source: "config".into(),
                    tz: TimeZone::system(),
                }
            }
        };
        if let Some(c) = &p.currency {
            t.currency = Currency::new(c)?;
        }
        if let Some(price) = p.price_per_kwh {
            check_price(None, price)?;
            t.hourly = [price; 24];
        }
        if let Some(co2) = p.co2_g_per_kwh {
            if !co2.is_finite() || co2 < 0.0 {
                return Err(PricingError::BadCo2 { value: co2 });
            }
            t.co2_g_per_kwh = Some(co2);
        }
        if !p.bands.is_empty() {
            t.hourly = hourly_from_bands(&p.bands)?;
        }
        if own {
            t.label = "own".into();
            t.source = "config".into();
        }
        Ok(t)
    }

    /// The tariffs to compare against: `[pricing] compare_regions`, or `codes` when non-empty
    /// (from `--regions`).
    pub fn compare_set(p: &PricingSection, codes: &[String]) -> Result<Vec<Self>, PricingError> {
        let codes = if codes.is_empty() {
            &p.compare_regions
        } else {
            codes
        };
        codes
            .iter()
            .map(|c| Self::preset_for_key(c, "compare_regions"))
            .collect()
    }

    /// Use `tz` for time-of-use bands instead of the system's zone (tests, remote hosts).
    pub fn with_time_zone(mut self, tz: TimeZone) -> Self {
        self.tz = tz;
        self
    }

    /// True when the price differs by hour.
    pub fn is_time_of_use(&self) -> bool {
        self.hourly.iter().any(|p| *p != self.hourly[0])
    }

    /// Price per kWh in local hour `hour` (0..24; larger values wrap).
    pub fn price_in_hour(&self, hour: u8) -> f64 {
        self.hourly[usize::from(hour % 24)]
    }

    /// Price per kWh at instant `at`, by the local hour.
    pub fn price_at(&self, at: Timestamp) -> f64 {
        self.price_in_hour(local_hour(&self.tz, at))
    }

    /// The time-weighted mean price over a day: what a flat-rate comparison uses.
    pub fn mean_price_per_kwh(&self) -> f64 {
        if !self.is_time_of_use() {
            // Exact for flat tariffs: summing 24 copies would add float noise.
            return self.hourly[0];
        }
        self.hourly.iter().sum::<f64>() / 24.0
    }

    /// Cost of `energy_j` used at instant `at` (a sample's delta, for the footer tally).
    pub fn cost(&self, energy_j: f64, at: Timestamp) -> f64 {
        energy_j / J_PER_KWH * self.price_at(at)
    }

    /// Cost of `energy_j` at the day's mean price (comparisons across machines).
    pub fn cost_flat(&self, energy_j: f64) -> f64 {
        energy_j / J_PER_KWH * self.mean_price_per_kwh()
    }

    /// Cost of `energy_j` drawn evenly over `[start, end)`, each local hour at its own price.
    /// A span of zero length is priced at `start`.
    pub fn cost_over(&self, energy_j: f64, start: Timestamp, end: Timestamp) -> f64 {
        let total_ns = end.as_nanosecond() - start.as_nanosecond();
        if total_ns <= 0 || !self.is_time_of_use() {
            return self.cost(energy_j, start);
        }
        let mut t = start.as_nanosecond();
        let end_ns = end.as_nanosecond();
        let mut weighted = 0.0; // price x nanoseconds
        while t < end_ns {
            let Ok(ts) = Timestamp::from_nanosecond(t) else {
                break;
            };
            let dt = self.tz.to_datetime(ts);
            let into_hour_ns = (i128::from(dt.minute()) * 60 + i128::from(dt.second()))
                * 1_000_000_000
                + i128::from(dt.subsec_nanosecond());
            let next = (t + 3_600_000_000_000 - into_hour_ns).min(end_ns);
            weighted += self.price_in_hour(dt.hour() as u8) * (next - t) as f64;
            t = next;
        }
        energy_j / J_PER_KWH * weighted / total_ns as f64
    }

    /// Grams CO2e of `energy_j`, when the grid intensity is known.
    pub fn co2_g(&self, energy_j: f64) -> Option<f64> {
        self.co2_g_per_kwh.map(|g| energy_j / J_PER_KWH * g)
    }

    pub fn format(&self, amount: f64) -> String {
        format_money(amount, &self.currency)
    }
}

fn local_hour(tz: &TimeZone, at: Timestamp) -> u8 {
    tz.to_datetime(at).hour() as u8
}

fn check_price(band: Option<usize>, value: f64) -> Result<(), PricingError> {
    if value.is_finite() && value >= 0.0 {
        Ok(())
    } else {
        Err(PricingError::BadPrice { band, value })
    }
}

/// Expand bands into an hourly table; every hour must be covered exactly once.
fn hourly_from_bands(bands: &[TariffBand]) -> Result<[f64; 24], PricingError> {
    let mut owner: [Option<usize>; 24] = [None; 24];
    let mut hourly = [0.0; 24];
    for (i, b) in bands.iter().enumerate() {
        if b.from_hour > 23 {
            return Err(PricingError::BadBand {
                index: i,
                key: "from_hour",
                message: format!("from_hour = {} is not an hour; use 0 to 23", b.from_hour),
            });
        }
        if b.to_hour > 24 {
            return Err(PricingError::BadBand {
                index: i,
                key: "to_hour",
                message: format!(
                    "to_hour = {} is not an hour; use 0 to 24 (exclusive end)",
                    b.to_hour
                ),
            });
        }
        if b.from_hour == b.to_hour % 24 {
            return Err(PricingError::BadBand {
                index: i,
                key: "to_hour",
                message: format!(
                    "from_hour = to_hour = {} leaves the band empty; for one price all day set price_per_kwh instead",
                    b.from_hour
                ),
            });
        }
        check_price(Some(i), b.price_per_kwh)?;
        let mut h = b.from_hour;
        while h != b.to_hour % 24 {
            if let Some(first) = owner[usize::from(h)] {
                return Err(PricingError::BandOverlap {
                    first,
                    second: i,
                    hour: h,
                });
            }
            owner[usize::from(h)] = Some(i);
            hourly[usize::from(h)] = b.price_per_kwh;
            h = (h + 1) % 24;
        }
    }
    let gaps: Vec<u8> = (0..24u8)
        .filter(|h| owner[usize::from(*h)].is_none())
        .collect();
    if let Some(first) = gaps.first() {
        return Err(PricingError::BandGap {
            hours: gaps
                .iter()
                .map(u8::to_string)
                .collect::<Vec<_>>()
                .join(", "),
            before: bands.iter().position(|b| b.to_hour % 24 == *first),
        });
    }
    Ok(hourly)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_significant_digits() {
        assert_eq!(two_significant(0.00042), 5);
        assert_eq!(two_significant(0.42), 2);
        assert_eq!(two_significant(0.042), 3);
        assert_eq!(two_significant(4.2), 1);
        assert_eq!(two_significant(12.0), 0);
        assert_eq!(two_significant(1e-12), MAX_DECIMALS);
    }

    #[test]
    fn thousands_grouping() {
        assert_eq!(group_thousands("1234567.89"), "1,234,567.89");
        assert_eq!(group_thousands("999"), "999");
        assert_eq!(group_thousands("1000"), "1,000");
    }
}
