//! `llmtop compare FILE...`: run cards from several machines side by side, the table the video
//! llmtop grew from made by hand: speed, watts, energy per 1000-word story, cost per region,
//! heat, noise, and total cost of ownership.

use crate::accounting::energy::joules_to_wh;
use crate::accounting::pricing::{
    Currency, Tariff, format_money, format_money_in, format_unit_price, shared_minor_unit,
};
use crate::accounting::uncertainty::Band;
use crate::report::chart::{self, Bar, Chart, ChartError, Member, Panel};
use crate::report::runcard::{CardMoney, EnergyMetrics, RunCard};
use crate::util::sanitize;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;

/// Total-cost-of-ownership assumptions.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TcoOptions {
    pub hours_per_day: f64,
    pub years: f64,
    /// Purchase prices by hostname (lower case), from `--hardware-price`; a card's own
    /// `hardware_price` is used for a currency not given here.
    pub hardware: BTreeMap<String, Vec<CardMoney>>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RegionInfo {
    pub code: String,
    pub currency: String,
    pub price_per_kwh: f64,
    pub source: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RegionCost {
    pub region: String,
    pub currency: String,
    pub per_story: Option<f64>,
    pub per_million_tokens: Option<f64>,
    /// Electricity over the TCO period at load power.
    pub electricity: Option<f64>,
    /// Purchase price in this region's currency, if known.
    pub hardware: Option<f64>,
    /// Hardware + electricity, when both are known in this currency.
    pub tco: Option<f64>,
}

/// One machine's row of the comparison.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MachineRow {
    pub file: PathBuf,
    pub machine: String,
    pub model: String,
    pub ttft_cold_ms: Option<f64>,
    pub ttft_warm_ms: Option<f64>,
    pub prefill_tok_s: Option<f64>,
    pub gen_tok_s: Option<f64>,
    pub idle_w: Option<f64>,
    pub load_w: Option<f64>,
    pub peak_w: Option<f64>,
    /// Energy of the measured reply (the 1000-word story in bench), Wh.
    pub wh_per_story: Option<f64>,
    pub j_per_token: Option<f64>,
    /// The measured reply's memory bandwidth, GB/s, the machine's ceiling for it, the share,
    /// and the generation rate that ceiling allows (the decode roofline).
    pub memory_gb_s: Option<f64>,
    pub memory_ceiling_gb_s: Option<f64>,
    pub roofline_share: Option<f64>,
    pub ceiling_tok_s: Option<f64>,
    pub costs: Vec<RegionCost>,
    pub peak_temp_c: Option<f64>,
    pub max_fan_rpm: Option<f64>,
    /// "wall", "components" or "n/a": what the energy figures cover.
    pub energy_scope: String,
    pub estimated: bool,
    /// Where the truth of the story's energy lies (and so of J/token and the costs per
    /// story), from the card; `None` for a card written before llmtop carried bands.
    pub energy_band: Option<Band>,
    /// The story's energy against the machine that used the least: "lowest", "within error"
    /// (the two bands overlap, so the two are not ranked) or "+42 %".
    pub vs_lowest: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Comparison {
    pub schema: &'static str,
    pub regions: Vec<RegionInfo>,
    pub tco: TcoOptions,
    pub machines: Vec<MachineRow>,
    /// Things that make the figures not like for like (different models, prompts, scopes).
    pub warnings: Vec<String>,
    /// Files that could not be compared, one line each.
    pub errors: Vec<String>,
}

/// Why compare could not run at all.
#[derive(Debug, thiserror::Error)]
pub enum CompareError {
    #[error(
        "--hardware-price {arg:?}: {why}; use HOST=AMOUNT with an optional currency, e.g. mini=1299 or mini=1299EUR"
    )]
    HardwarePrice { arg: String, why: String },
    #[error(
        "--hardware-price: no run card comes from host \"{host}\"; hosts in these cards: {hosts}"
    )]
    UnknownHost { host: String, hosts: String },
    #[error("--{flag} = {value} must be a positive number")]
    BadNumber { flag: &'static str, value: f64 },
}

/// Parse `HOST=AMOUNT[CUR]`; without a currency the amount is in `default_currency`.
pub fn parse_hardware_price(
    arg: &str,
    default_currency: &Currency,
) -> Result<(String, CardMoney), CompareError> {
    let bad = |why: &str| CompareError::HardwarePrice {
        arg: arg.into(),
        why: why.into(),
    };
    let (host, amount) = arg.split_once('=').ok_or_else(|| bad("no '='"))?;
    let host = host.trim();
    if host.is_empty() {
        return Err(bad("the host is empty"));
    }
    let amount = amount.trim();
    let split = amount
        .char_indices()
        .find(|(_, c)| c.is_ascii_alphabetic())
        .map_or(amount.len(), |(i, _)| i);
    let (number, code) = amount.split_at(split);
    let value: f64 = number
        .trim()
        .replace(',', "")
        .parse()
        .map_err(|_| bad("the amount is not a number"))?;
    let currency = if code.trim().is_empty() {
        default_currency.clone()
    } else {
        Currency::new(code).map_err(|_| bad("the currency is not a 3-letter code"))?
    };
    if !value.is_finite() || value < 0.0 {
        return Err(bad("the amount must be 0 or more"));
    }
    Ok((
        host.to_lowercase(),
        CardMoney {
            amount: value,
            currency: currency.code().into(),
        },
    ))
}

fn reply_energy(card: &RunCard) -> Option<&EnergyMetrics> {
    card.last_reply.as_ref().and_then(|r| r.energy.as_ref())
}

fn max_opt(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.max(y)),
        (x, y) => x.or(y),
    }
}

fn model_label(card: &RunCard) -> String {
    if card.model.quantization.is_empty() {
        card.model.name.clone()
    } else {
        format!("{} {}", card.model.name, card.model.quantization)
    }
}

/// Build the comparison from loaded cards. Pure: no I/O.
pub fn compare(
    cards: &[(PathBuf, RunCard)],
    tariffs: &[Tariff],
    tco: TcoOptions,
    errors: Vec<String>,
) -> Comparison {
    let hours = tco.hours_per_day * 365.0 * tco.years;
    let machines = cards
        .iter()
        .map(|(file, card)| {
            let re = reply_energy(card);
            let se = card.session.energy.as_ref();
            let load_w = re.map(|e| e.avg_w).or(se.map(|e| e.avg_w));
            let story_j = re.map(|e| e.total_j);
            let jpt = card.j_per_token();
            let host_key = card.host.hostname.to_lowercase();
            let mut hw: Vec<CardMoney> = tco.hardware.get(&host_key).cloned().unwrap_or_default();
            if let Some(own) = &card.hardware_price
                && !hw.iter().any(|m| m.currency == own.currency)
            {
                hw.push(own.clone());
            }
            let costs = tariffs
                .iter()
                .map(|t| {
                    let electricity = load_w.map(|w| t.cost_flat(w * hours * 3600.0));
                    let hardware = hw
                        .iter()
                        .find(|m| m.currency == t.currency.code())
                        .map(|m| m.amount);
                    RegionCost {
                        region: t.label.clone(),
                        currency: t.currency.code().into(),
                        per_story: story_j.map(|j| t.cost_flat(j)),
                        per_million_tokens: jpt.map(|j| t.cost_flat(j * 1e6)),
                        electricity,
                        hardware,
                        tco: hardware.zip(electricity).map(|(h, e)| h + e),
                    }
                })
                .collect();
            let roof = card.last_reply.as_ref().and_then(|r| r.roofline.as_ref());
            let energy_scope = match re.or(se) {
                Some(e) if e.components_only => "components",
                Some(_) => "wall",
                None => "n/a",
            };
            MachineRow {
                file: file.clone(),
                machine: card.host.hostname.clone(),
                model: model_label(card),
                ttft_cold_ms: card.session.ttft_cold_ms,
                ttft_warm_ms: card
                    .session
                    .ttft_warm_ms
                    .or(card.last_reply.as_ref().map(|r| r.ttft_ms)),
                prefill_tok_s: card
                    .session
                    .prefill_tok_s
                    .or(card.last_reply.as_ref().map(|r| r.prefill_tok_s)),
                gen_tok_s: card
                    .session
                    .gen_tok_s
                    .or(card.last_reply.as_ref().map(|r| r.gen_tok_s)),
                idle_w: re
                    .and_then(|e| e.idle_baseline_w)
                    .or(se.and_then(|e| e.idle_baseline_w)),
                load_w,
                peak_w: max_opt(re.map(|e| e.peak_w), se.map(|e| e.peak_w)),
                wh_per_story: story_j.map(joules_to_wh),
                j_per_token: jpt,
                memory_gb_s: roof.map(|r| r.gb_s),
                memory_ceiling_gb_s: roof.and_then(|r| r.ceiling.as_ref()).map(|c| c.gb_s),
                roofline_share: roof.and_then(|r| r.share),
                ceiling_tok_s: roof.and_then(|r| r.ceiling_tok_s),
                costs,
                peak_temp_c: max_opt(
                    card.session.thermal.peak_temp_c(),
                    card.last_reply
                        .as_ref()
                        .and_then(|r| r.thermal.peak_temp_c()),
                ),
                max_fan_rpm: max_opt(
                    card.session.thermal.max_fan_rpm,
                    card.last_reply.as_ref().and_then(|r| r.thermal.max_fan_rpm),
                ),
                energy_scope: energy_scope.into(),
                estimated: re.or(se).is_some_and(|e| e.estimated),
                energy_band: re.or(se).and_then(|e| e.uncertainty).map(|b| b.band()),
                vs_lowest: None,
            }
        })
        .collect::<Vec<_>>();
    let machines = rank_by_energy(machines);
    let warnings = mismatches(cards, &machines);
    Comparison {
        schema: "llmtop.compare/1",
        regions: tariffs
            .iter()
            .map(|t| RegionInfo {
                code: t.label.clone(),
                currency: t.currency.code().into(),
                price_per_kwh: t.mean_price_per_kwh(),
                source: t.source.clone(),
            })
            .collect(),
        tco,
        machines,
        warnings,
        errors,
    }
}

/// The truth's range of a machine's story energy, Wh (a point without a band).
fn story_range(r: &MachineRow) -> Option<(f64, f64)> {
    let wh = r.wh_per_story.filter(|w| w.is_finite())?;
    Some(r.energy_band.unwrap_or(Band::ZERO).range(wh))
}

/// Each machine's story energy against the lowest: where their bands overlap the two are
/// within error of each other and not ranked; else how much more it used.
fn rank_by_energy(mut rows: Vec<MachineRow>) -> Vec<MachineRow> {
    let lowest = rows
        .iter()
        .enumerate()
        .filter_map(|(i, r)| Some((i, r.wh_per_story.filter(|w| w.is_finite())?)))
        .min_by(|a, b| a.1.total_cmp(&b.1));
    let Some((best, best_wh)) = lowest else {
        return rows;
    };
    let Some((_, best_hi)) = story_range(&rows[best]) else {
        return rows;
    };
    for (i, r) in rows.iter_mut().enumerate() {
        let Some((lo, _)) = story_range(r) else {
            continue;
        };
        r.vs_lowest = Some(if i == best {
            "lowest".to_string()
        } else if lo <= best_hi {
            "within error".to_string()
        } else {
            let more = r.wh_per_story.unwrap_or(best_wh) / best_wh - 1.0;
            format!("+{:.0} %", more * 100.0)
        });
    }
    rows
}

/// A figure with its band, for the table: "0.213 ±13 %".
fn with_band(v: Option<f64>, digits: usize, band: Option<Band>) -> String {
    match (num(v, digits).as_str(), band) {
        ("n/a", _) => "n/a".into(),
        (n, Some(b)) => format!("{n} {}", b.text()),
        (n, None) => n.to_string(),
    }
}

/// Flag what makes the rows not like for like.
fn mismatches(cards: &[(PathBuf, RunCard)], rows: &[MachineRow]) -> Vec<String> {
    let mut w = Vec::new();
    let distinct = |key: &dyn Fn(&RunCard) -> String| {
        let mut seen: Vec<String> = cards.iter().map(|(_, c)| key(c)).collect();
        seen.sort();
        seen.dedup();
        seen.len() > 1
    };
    let list = |f: &dyn Fn(&RunCard) -> String| {
        cards
            .iter()
            .map(|(_, c)| format!("{}: {}", c.host.hostname, f(c)))
            .collect::<Vec<_>>()
            .join("; ")
    };
    if distinct(&|c| format!("{}|{}", model_label(c), c.model.sha256_first_mib)) {
        w.push(format!(
            "models differ, so speed and energy are not like for like ({})",
            list(&|c| {
                format!(
                    "{} [{}]",
                    model_label(c),
                    c.model.sha256_first_mib.get(..12).unwrap_or("?")
                )
            })
        ));
    }
    if distinct(&|c| c.prompt.clone().unwrap_or_default()) {
        w.push(format!(
            "prompts differ, so per-story figures are not like for like ({})",
            list(&|c| match &c.prompt {
                Some(p) => format!("{:?}", shorten(p, 40)),
                None => "no prompt recorded".into(),
            })
        ));
    }
    let scopes: Vec<&str> = rows.iter().map(|r| r.energy_scope.as_str()).collect();
    if scopes.contains(&"wall") && scopes.contains(&"components") {
        let comp: Vec<&str> = rows
            .iter()
            .filter(|r| r.energy_scope == "components")
            .map(|r| r.machine.as_str())
            .collect();
        w.push(format!(
            "energy scope differs: {} measured components only (GPU/CPU sensors, no wall plug), the others at the wall; components leave out the rest of the machine",
            comp.join(", ")
        ));
    }
    for r in rows.iter().filter(|r| r.estimated) {
        w.push(format!(
            "{}: energy is partly estimated (no power sensor), not measured",
            r.machine
        ));
    }
    for r in rows {
        if let Some(words) = r.energy_band.and_then(Band::words) {
            w.push(format!("{}: its story energy {words}", r.machine));
        }
    }
    w
}

fn shorten(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        format!("{}…", s.chars().take(n).collect::<String>())
    }
}

fn num(v: Option<f64>, digits: usize) -> String {
    match v {
        Some(x) if x.is_finite() => format!("{x:.digits$}"),
        _ => "n/a".into(),
    }
}

fn money(v: Option<f64>, currency: &str) -> String {
    match (v, Currency::new(currency)) {
        (Some(x), Ok(c)) => format_money(x, &c),
        _ => "n/a".into(),
    }
}

fn years_label(tco: &TcoOptions) -> String {
    format!(
        "{}y x {}h/day",
        trim_num(tco.years),
        trim_num(tco.hours_per_day)
    )
}

fn trim_num(v: f64) -> String {
    let s = format!("{v:.2}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// Rows of (label, one cell per machine): shared by the terminal and Markdown tables.
fn grid(c: &Comparison) -> Vec<(String, Vec<String>)> {
    let m = &c.machines;
    let col = |f: &dyn Fn(&MachineRow) -> String| m.iter().map(f).collect::<Vec<_>>();
    let mut rows = vec![
        ("model".to_string(), col(&|r| r.model.clone())),
        ("TTFT cold (ms)".into(), col(&|r| num(r.ttft_cold_ms, 0))),
        ("TTFT warm (ms)".into(), col(&|r| num(r.ttft_warm_ms, 0))),
        ("prefill (tok/s)".into(), col(&|r| num(r.prefill_tok_s, 1))),
        ("generation (tok/s)".into(), col(&|r| num(r.gen_tok_s, 1))),
        ("idle (W)".into(), col(&|r| num(r.idle_w, 1))),
        ("load (W)".into(), col(&|r| num(r.load_w, 1))),
        ("peak (W)".into(), col(&|r| num(r.peak_w, 1))),
        (
            "energy measured at".into(),
            col(&|r| r.energy_scope.clone()),
        ),
        (
            "Wh per story".into(),
            col(&|r| with_band(r.wh_per_story, 3, r.energy_band)),
        ),
        (
            "story energy vs lowest".into(),
            col(&|r| r.vs_lowest.clone().unwrap_or_else(|| "n/a".into())),
        ),
        (
            "J per token".into(),
            col(&|r| with_band(r.j_per_token, 2, r.energy_band)),
        ),
        ("memory read (GB/s)".into(), col(&|r| num(r.memory_gb_s, 2))),
        (
            "memory ceiling (GB/s)".into(),
            col(&|r| num(r.memory_ceiling_gb_s, 1)),
        ),
        (
            "of the ceiling (%)".into(),
            col(&|r| num(r.roofline_share.map(|x| x * 100.0), 0)),
        ),
        (
            "ceiling allows (tok/s)".into(),
            col(&|r| num(r.ceiling_tok_s, 1)),
        ),
    ];
    for (i, reg) in c.regions.iter().enumerate() {
        rows.push((
            format!("cost per story, {}", reg.code),
            col(&|r| money(r.costs[i].per_story, &r.costs[i].currency)),
        ));
    }
    for (i, reg) in c.regions.iter().enumerate() {
        rows.push((
            format!("cost per 1M tokens, {}", reg.code),
            col(&|r| money(r.costs[i].per_million_tokens, &r.costs[i].currency)),
        ));
    }
    rows.push(("peak temp (°C)".into(), col(&|r| num(r.peak_temp_c, 0))));
    rows.push(("max fan (RPM)".into(), col(&|r| num(r.max_fan_rpm, 0))));
    let period = years_label(&c.tco);
    for (i, reg) in c.regions.iter().enumerate() {
        rows.push((
            format!("electricity {period}, {}", reg.code),
            col(&|r| money(r.costs[i].electricity, &r.costs[i].currency)),
        ));
    }
    let any_hw = m
        .iter()
        .any(|r| r.costs.iter().any(|x| x.hardware.is_some()));
    if any_hw {
        for (i, reg) in c.regions.iter().enumerate() {
            rows.push((
                format!("hardware + electricity, {}", reg.code),
                col(&|r| money(r.costs[i].tco, &r.costs[i].currency)),
            ));
        }
    }
    rows
}

fn price_line(c: &Comparison) -> String {
    let parts: Vec<String> = c
        .regions
        .iter()
        .map(|r| {
            let price = Currency::new(&r.currency)
                .map(|cur| format_unit_price(r.price_per_kwh, &cur))
                .unwrap_or_else(|_| "n/a".into());
            format!("{} {price}/kWh ({})", r.code, r.source)
        })
        .collect();
    format!(
        "Prices: {}. Story = the measured reply; electricity at load power for {}.",
        parts.join("; "),
        years_label(&c.tco)
    )
}

/// What the ± after the energy figures means.
const BAND_LINE: &str =
    "±: error bands (README: Error bars); where two overlap: within error, not ranked.";

fn display_width(s: &str) -> usize {
    unicode_width::UnicodeWidthStr::width(s)
}

/// Aligned terminal table: one column per machine, one row per figure. Every cell is
/// sanitised (hostnames and model names come from the cards' files).
pub fn render_table(c: &Comparison) -> String {
    let term = |s: &str| sanitize::terminal(s).into_owned();
    let mut rows: Vec<(String, Vec<String>)> = vec![(
        String::new(),
        c.machines.iter().map(|m| term(&m.machine)).collect(),
    )];
    rows.extend(
        grid(c)
            .into_iter()
            .map(|(l, cells)| (term(&l), cells.iter().map(|x| term(x)).collect())),
    );
    let label_w = rows
        .iter()
        .map(|(l, _)| display_width(l))
        .max()
        .unwrap_or(0);
    let widths: Vec<usize> = (0..c.machines.len())
        .map(|i| {
            rows.iter()
                .map(|(_, v)| display_width(&v[i]))
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut o = String::new();
    for (label, cells) in &rows {
        let mut line = format!("{label}{}", " ".repeat(label_w - display_width(label)));
        for (cell, w) in cells.iter().zip(&widths) {
            line.push_str("  ");
            line.push_str(&" ".repeat(w - display_width(cell)));
            line.push_str(cell);
        }
        o.push_str(line.trim_end());
        o.push('\n');
    }
    o.push('\n');
    o.push_str(&sanitize::terminal(&price_line(c)));
    o.push('\n');
    o.push_str(BAND_LINE);
    o.push('\n');
    for w in &c.warnings {
        let _ = writeln!(o, "warning: {}", sanitize::terminal(w));
    }
    o
}

fn md_cell(s: &str) -> String {
    sanitize::markdown(s)
}

/// The comparison as charts: one panel per figure of the table (speed, TTFT, idle and load
/// power, energy per story and per token, cost per story and over the TCO period in each
/// region), one `<g class="machine">` per machine holding its bars.
pub fn render_svg(c: &Comparison) -> Result<Chart, ChartError> {
    let members: Vec<Member> = c
        .machines
        .iter()
        .enumerate()
        .map(|(i, m)| Member {
            class: "machine".into(),
            id: format!("machine-{}-{}", i + 1, id_slug(&m.machine)),
            name: m.machine.clone(),
        })
        .collect();
    let figure = |v: Option<f64>, digits: usize| Bar {
        value: v.filter(|x| x.is_finite()),
        text: num(v, digits),
        ..Bar::default()
    };
    // An energy figure with its error band as a whisker, and "within error" over the bars
    // whose band overlaps the lowest machine's (they are not ranked apart).
    let banded = |r: &MachineRow, v: Option<f64>, digits: usize| Bar {
        range: v
            .filter(|x| x.is_finite())
            .zip(r.energy_band)
            .map(|(x, b)| b.range(x)),
        note: r.vs_lowest.clone().filter(|s| s == "within error"),
        ..figure(v, digits)
    };
    // Money in one unit per panel (its title says which): cents when every amount of the
    // panel is below a dime, else the main unit; the axis and the labels agree.
    let unit_of = |amounts: Vec<Option<f64>>, currency: &str| -> Option<&'static str> {
        let cur = Currency::new(currency).ok()?;
        let v: Vec<f64> = amounts.into_iter().flatten().collect();
        shared_minor_unit(&v, &cur)
    };
    let priced = |v: Option<f64>, currency: &str, minor: Option<&str>| Bar {
        value: v
            .filter(|x| x.is_finite())
            .map(|x| if minor.is_some() { x * 100.0 } else { x }),
        text: match (v, Currency::new(currency)) {
            (Some(x), Ok(c)) => format_money_in(x, &c, minor),
            _ => "n/a".into(),
        },
        ..Bar::default()
    };
    let unit_title = |minor: Option<&str>, currency: &str| match minor {
        Some(m) => format!(" ({m})"),
        None => format!(" ({currency})"),
    };
    let panel =
        |key: &str, title: &str, bars: &[&str], f: &dyn Fn(&MachineRow) -> Vec<Bar>| Panel {
            key: key.into(),
            title: title.into(),
            bars: bars.iter().map(|b| b.to_string()).collect(),
            values: c.machines.iter().map(f).collect(),
        };
    let mut panels = vec![
        panel("prefill_tok_s", "prefill (tok/s)", &["prefill"], &|r| {
            vec![figure(r.prefill_tok_s, 1)]
        }),
        panel("gen_tok_s", "generation (tok/s)", &["generation"], &|r| {
            vec![figure(r.gen_tok_s, 1)]
        }),
        // Each machine against its own memory: the rate its bandwidth allows this model.
        panel(
            "roofline_tok_s",
            "generation vs its memory's ceiling (tok/s)",
            &["measured", "memory allows"],
            &|r| {
                // The measured reply's own rate: the ceiling's rate times the share.
                let measured = r.ceiling_tok_s.zip(r.roofline_share).map(|(c, s)| c * s);
                vec![figure(measured, 1), figure(r.ceiling_tok_s, 1)]
            },
        ),
        panel("ttft_cold_ms", "TTFT cold (ms)", &["cold"], &|r| {
            vec![figure(r.ttft_cold_ms, 0)]
        }),
        panel("ttft_warm_ms", "TTFT warm (ms)", &["warm"], &|r| {
            vec![figure(r.ttft_warm_ms, 0)]
        }),
        panel("power_w", "idle vs load (W)", &["idle", "load"], &|r| {
            vec![figure(r.idle_w, 1), figure(r.load_w, 1)]
        }),
        panel(
            "wh_per_story",
            "Wh per story (error bands)",
            &["story"],
            &|r| vec![banded(r, r.wh_per_story, 3)],
        ),
        panel(
            "j_per_token",
            "J per token (error bands)",
            &["token"],
            &|r| vec![banded(r, r.j_per_token, 2)],
        ),
    ];
    for (i, reg) in c.regions.iter().enumerate() {
        let minor = unit_of(
            c.machines.iter().map(|r| r.costs[i].per_story).collect(),
            &reg.currency,
        );
        panels.push(panel(
            &format!("cost_per_story_{}", reg.code),
            &format!(
                "cost per story, {}{}",
                reg.code,
                unit_title(minor, &reg.currency)
            ),
            &[reg.code.as_str()],
            &|r| vec![priced(r.costs[i].per_story, &r.costs[i].currency, minor)],
        ));
    }
    let any_hw = c
        .machines
        .iter()
        .any(|r| r.costs.iter().any(|x| x.hardware.is_some()));
    let period = years_label(&c.tco);
    for (i, reg) in c.regions.iter().enumerate() {
        let minor = unit_of(
            c.machines
                .iter()
                .flat_map(|r| [r.costs[i].electricity, r.costs[i].tco])
                .collect(),
            &reg.currency,
        );
        let unit = unit_title(minor, &reg.currency);
        let title = if any_hw {
            format!("{period}, {}: power / + hardware{unit}", reg.code)
        } else {
            format!("electricity {period}, {}{unit}", reg.code)
        };
        let key = format!("tco_{}", reg.code);
        panels.push(if any_hw {
            panel(
                &key,
                &title,
                &["electricity", "hardware + electricity"],
                &|r| {
                    let x = &r.costs[i];
                    vec![
                        priced(x.electricity, &x.currency, minor),
                        priced(x.tco, &x.currency, minor),
                    ]
                },
            )
        } else {
            panel(&key, &title, &["electricity"], &|r| {
                vec![priced(r.costs[i].electricity, &r.costs[i].currency, minor)]
            })
        });
    }
    let mut models: Vec<&str> = c.machines.iter().map(|m| m.model.as_str()).collect();
    models.sort_unstable();
    models.dedup();
    let title = format!("llmtop compare: {} machines", c.machines.len());
    let subtitle = format!(
        "{}; story = the measured reply; electricity at load power for {}{}",
        models.join(" / "),
        period,
        if c.warnings.is_empty() {
            ""
        } else {
            " (see the warnings in the table)"
        }
    );
    chart::bar_panels(&title, &subtitle, &members, &panels, 4)
}

/// A machine's name as part of an XML id: ASCII letters, digits, `-` and `_`.
fn id_slug(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// `image` is the chart's path as the Markdown should link it (relative), when one was drawn.
pub fn render_markdown(c: &Comparison, image: Option<&str>) -> String {
    let mut o = String::from("| |");
    for m in &c.machines {
        let _ = write!(o, " {} |", md_cell(&m.machine));
    }
    o.push_str("\n|---|");
    for _ in &c.machines {
        o.push_str("---:|");
    }
    o.push('\n');
    for (label, cells) in grid(c) {
        let _ = write!(o, "| {} |", md_cell(&label));
        for cell in cells {
            let _ = write!(o, " {} |", md_cell(&cell));
        }
        o.push('\n');
    }
    let _ = writeln!(o, "\n{}", md_cell(&price_line(c)));
    let _ = writeln!(o, "\n{}", md_cell(BAND_LINE));
    for w in &c.warnings {
        let _ = writeln!(o, "\n> **Warning:** {}", md_cell(w));
    }
    if let Some(path) = image {
        let _ = writeln!(o, "\n![llmtop compare charts]({})", md_link(path));
    }
    o
}

/// A link target: controls escaped; in `<...>` when it holds a space or a bracket, so the
/// link still ends where it should.
fn md_link(path: &str) -> String {
    let p = sanitize::terminal(path);
    if p.contains([' ', '(', ')', '<', '>']) {
        format!("<{}>", p.replace('<', "%3C").replace('>', "%3E"))
    } else {
        p.into_owned()
    }
}

fn csv_field(s: &str) -> String {
    sanitize::csv_field(s)
}

fn csv_num(v: Option<f64>) -> String {
    match v {
        Some(x) if x.is_finite() => format!("{x}"),
        _ => String::new(),
    }
}

/// One record per machine, raw numbers (no units, no rounding), empty for unknown.
pub fn render_csv(c: &Comparison) -> String {
    let mut header: Vec<String> = [
        "file",
        "machine",
        "model",
        "ttft_cold_ms",
        "ttft_warm_ms",
        "prefill_tok_s",
        "gen_tok_s",
        "idle_w",
        "load_w",
        "peak_w",
        "energy_scope",
        "wh_per_story",
        "j_per_token",
        "memory_gb_s",
        "memory_ceiling_gb_s",
        "roofline_share",
        "ceiling_tok_s",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for r in &c.regions {
        for what in [
            "cost_per_story",
            "cost_per_million_tokens",
            "electricity",
            "hardware",
            "tco",
        ] {
            header.push(format!("{what}_{}_{}", r.code, r.currency));
        }
    }
    header.extend([
        "peak_temp_c".into(),
        "max_fan_rpm".into(),
        "energy_band_lower".into(),
        "energy_band_upper".into(),
        "vs_lowest".into(),
    ]);
    let mut o = header.join(",");
    o.push('\n');
    for m in &c.machines {
        let mut f = vec![
            csv_field(&m.file.display().to_string()),
            csv_field(&m.machine),
            csv_field(&m.model),
            csv_num(m.ttft_cold_ms),
            csv_num(m.ttft_warm_ms),
            csv_num(m.prefill_tok_s),
            csv_num(m.gen_tok_s),
            csv_num(m.idle_w),
            csv_num(m.load_w),
            csv_num(m.peak_w),
            m.energy_scope.clone(),
            csv_num(m.wh_per_story),
            csv_num(m.j_per_token),
            csv_num(m.memory_gb_s),
            csv_num(m.memory_ceiling_gb_s),
            csv_num(m.roofline_share),
            csv_num(m.ceiling_tok_s),
        ];
        for x in &m.costs {
            f.extend([
                csv_num(x.per_story),
                csv_num(x.per_million_tokens),
                csv_num(x.electricity),
                csv_num(x.hardware),
                csv_num(x.tco),
            ]);
        }
        f.extend([
            csv_num(m.peak_temp_c),
            csv_num(m.max_fan_rpm),
            csv_num(m.energy_band.map(|b| b.lo)),
            csv_num(m.energy_band.map(|b| b.hi)),
            csv_field(m.vs_lowest.as_deref().unwrap_or("")),
        ]);
        o.push_str(&f.join(","));
        o.push('\n');
    }
    o
}

pub fn render_json(c: &Comparison) -> String {
    serde_json::to_string_pretty(c).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
}
