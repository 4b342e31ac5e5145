//! Snapshots: a run card (JSON), a Markdown summary for forum posts and an SVG of the screen,
//! written atomically into the snapshots dir and named by time and host.

use crate::accounting::pricing::{Currency, format_co2, format_money, format_unit_price};
use crate::report::runcard::{EnergyMetrics, RunCard};
use ratatui::buffer::Buffer;
use ratatui::style::{Color, Modifier};
use serde::{Deserialize, Serialize};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

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

/// Where one snapshot went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotPaths {
    pub json: PathBuf,
    pub markdown: PathBuf,
    /// `None` when there was neither a screen nor a series to draw.
    pub svg: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error(
        "cannot write snapshot to {dir}: {err}; set [snapshot] dir in the config to a writable directory"
    )]
    Dir { dir: PathBuf, err: std::io::Error },
    #[error("cannot write snapshot file {path}: {err}")]
    Write { path: PathBuf, err: std::io::Error },
}

/// The snapshots dir: `[snapshot] dir`, else `<data dir>/snapshots`.
pub fn default_dir(section: &SnapshotSection) -> PathBuf {
    section
        .dir
        .clone()
        .unwrap_or_else(|| crate::util::paths::data_dir().join("snapshots"))
}

/// Write `card` (plus Markdown, plus an SVG of `screen` when given and of the card's power and
/// tok/s over the run when it has a series) into `dir`, creating it.
/// Files are named `<UTC time>-<host>.{json,md,svg}`; a name already taken gets `-2`, `-3`...
/// Each file is written atomically (temp file + rename).
pub fn write(
    dir: &Path,
    card: &RunCard,
    screen: Option<&Buffer>,
) -> Result<SnapshotPaths, SnapshotError> {
    std::fs::create_dir_all(dir).map_err(|err| SnapshotError::Dir {
        dir: dir.to_path_buf(),
        err,
    })?;
    let stem = unique_stem(dir, &base_name(card));
    let json = dir.join(format!("{stem}.json"));
    let markdown = dir.join(format!("{stem}.md"));
    let put = |path: &Path, bytes: &[u8]| {
        crate::util::fs::write_atomic(path, bytes).map_err(|err| SnapshotError::Write {
            path: path.to_path_buf(),
            err,
        })
    };
    let mut json_text = card.to_json();
    json_text.push('\n');
    put(&json, json_text.as_bytes())?;
    put(&markdown, markdown_summary(card).as_bytes())?;
    let svg = match card_svg(card, screen) {
        Some(text) => {
            let p = dir.join(format!("{stem}.svg"));
            put(&p, text.as_bytes())?;
            Some(p)
        }
        None => None,
    };
    Ok(SnapshotPaths {
        json,
        markdown,
        svg,
    })
}

/// `20250601T100000Z-fixture-mac-mini`: sortable time first, then a file-name-safe host.
fn base_name(card: &RunCard) -> String {
    let time = card
        .created
        .parse::<jiff::Timestamp>()
        .map(|t| t.strftime("%Y%m%dT%H%M%SZ").to_string())
        .unwrap_or_else(|_| "unknown-time".into());
    let host: String = card
        .host
        .hostname
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("{time}-{host}")
}

fn unique_stem(dir: &Path, base: &str) -> String {
    let taken = |s: &str| dir.join(format!("{s}.json")).exists();
    if !taken(base) {
        return base.to_string();
    }
    (2..)
        .map(|n| format!("{base}-{n}"))
        .find(|s| !taken(s))
        .unwrap_or_else(|| base.to_string())
}

fn opt(v: Option<f64>, digits: usize, unit: &str) -> String {
    match v {
        Some(x) if x.is_finite() => format!("{x:.digits$}{unit}"),
        _ => "n/a".into(),
    }
}

fn energy_lines(out: &mut String, title: &str, e: &EnergyMetrics) {
    let _ = writeln!(out, "\n### Energy, {title}\n");
    let _ = writeln!(out, "| source | covers | method | J | error band | net J |");
    let _ = writeln!(out, "|---|---|---|---:|---:|---:|");
    for s in &e.sources {
        // The method with the call or file behind it, per board: "counter
        // (nvmlDeviceGetTotalEnergyConsumption), watts NVML_FI_DEV_POWER_INSTANT (instant)".
        let mut method = s.method.clone();
        if let Some(via) = &s.via {
            method.push_str(&format!(" ({via})"));
        }
        if let Some(w) = s.power_via.as_ref().filter(|w| Some(*w) != s.via.as_ref()) {
            method.push_str(&format!(", watts {w}"));
        }
        let _ = writeln!(
            out,
            "| {} ({}) | {} | {} | {:.0} | {} | {} |",
            md_escape(&s.label),
            md_escape(&s.source),
            md_escape(&s.covers),
            md_escape(&method),
            s.joules,
            band_cell(s.uncertainty),
            opt(s.net_joules, 0, "")
        );
    }
    let scope = if e.components_only {
        "components only (no wall or battery source)"
    } else {
        "whole system"
    };
    let est = match (e.estimated, e.apportioned) {
        (true, _) => ", partly estimated",
        (false, true) => ", apportioned: shorter than two steps of the energy counter",
        (false, false) => "",
    };
    let _ = writeln!(
        out,
        "\nTotal {:.0} J{} ({:.3} Wh, {scope}{est}); net of idle {}{}; idle baseline {}; avg {:.1} W, peak {:.1} W; {} J/token; {} Wh per 1000 tokens.",
        e.total_j,
        band_suffix(e.uncertainty),
        e.total_wh(),
        opt(e.net_j, 0, " J"),
        e.net_j
            .map(|_| band_suffix(e.net_uncertainty))
            .unwrap_or_default(),
        opt(e.idle_baseline_w, 1, " W"),
        e.avg_w,
        e.peak_w,
        opt(e.j_per_token, 2, ""),
        opt(e.wh_per_1000_tokens, 3, ""),
    );
}

/// A band for a table cell: "±5 %", "could be −67 %…+163 %" where wide, "n/a" without one.
fn band_cell(b: Option<crate::report::runcard::CardBand>) -> String {
    match b.map(|b| b.band()) {
        Some(b) => b.words().unwrap_or_else(|| b.text()),
        None => "n/a".into(),
    }
}

/// " ±5 %" after a figure ("; could be −67 %…+163 %" where wide); nothing without a band.
fn band_suffix(b: Option<crate::report::runcard::CardBand>) -> String {
    match b.map(|b| b.band()) {
        Some(b) => match b.words() {
            Some(w) => format!(" ({w})"),
            None => format!(" {}", b.text()),
        },
        None => String::new(),
    }
}

/// Card fields come from a file (a card may be someone else's): control characters, newlines
/// and `|` escaped.
fn md_escape(s: &str) -> String {
    crate::util::sanitize::markdown(s)
}

/// A summary a person can paste into a forum post.
pub fn markdown_summary(card: &RunCard) -> String {
    let mut o = String::new();
    let h = &card.host;
    let m = &card.model;
    let _ = writeln!(
        o,
        "## llmtop run card: {} on {}\n",
        md_escape(&m.name),
        md_escape(&h.hostname)
    );
    let gpus = if h.gpus.is_empty() {
        "no GPU".to_string()
    } else {
        h.gpus.join(", ")
    };
    let features = if card.build.features.is_empty() {
        "CPU".to_string()
    } else {
        card.build.features.join(", ")
    };
    let _ = writeln!(
        o,
        "- **Machine:** {} ({} cores / {} threads), {:.0} GiB RAM, {}; {} {} ({})",
        md_escape(&h.cpu_model),
        h.physical_cores,
        h.logical_cores,
        h.ram_bytes as f64 / (1u64 << 30) as f64,
        md_escape(&gpus),
        md_escape(&h.os),
        md_escape(&h.kernel),
        md_escape(&h.arch)
    );
    let served = m
        .backend
        .as_ref()
        .map(|b| format!(", served by {}", md_escape(b)))
        .unwrap_or_default();
    let _ = writeln!(
        o,
        "- **Model:** {} `{}` {}, {:.2} GB, sha256(first MiB) `{}`{served}",
        md_escape(&m.name),
        md_escape(&m.file),
        md_escape(&m.quantization),
        m.size_bytes as f64 / 1e9,
        md_escape(m.sha256_first_mib.get(..12).unwrap_or(&m.sha256_first_mib))
    );
    let s = &card.settings;
    let template = s
        .chat_template
        .as_ref()
        .map(|t| format!(", chat template {}", md_escape(&t.source)))
        .unwrap_or_default();
    let _ = writeln!(
        o,
        "- **Settings:** llmtop {} ({}), threads {}, GPU layers {}, n_ctx {}, sampler {}{template}",
        md_escape(&card.build.llmtop_version),
        md_escape(&features),
        s.threads,
        s.gpu_layers,
        s.n_ctx,
        md_escape(&s.sampler_text()),
    );
    if let Some(p) = &s.system_prompt {
        let _ = writeln!(o, "- **System prompt:** {}", md_escape(p));
    }
    let _ = writeln!(o, "- **Taken:** {}", md_escape(&card.created));

    let _ = writeln!(o, "\n| | last reply | session |");
    let _ = writeln!(o, "|---|---:|---:|");
    let r = card.last_reply.as_ref();
    let ss = &card.session;
    let row = |o: &mut String, name: &str, a: String, b: String| {
        let _ = writeln!(o, "| {name} | {a} | {b} |");
    };
    row(&mut o, "load", "".into(), opt(ss.load_ms, 0, " ms"));
    row(
        &mut o,
        "TTFT",
        opt(r.map(|r| r.ttft_ms), 0, " ms"),
        format!(
            "cold {} / warm {}",
            opt(ss.ttft_cold_ms, 0, " ms"),
            opt(ss.ttft_warm_ms, 0, " ms")
        ),
    );
    row(
        &mut o,
        "prefill",
        opt(r.map(|r| r.prefill_tok_s), 1, " tok/s"),
        opt(ss.prefill_tok_s, 1, " tok/s"),
    );
    row(
        &mut o,
        "generation",
        opt(r.map(|r| r.gen_tok_s), 1, " tok/s"),
        opt(ss.gen_tok_s, 1, " tok/s"),
    );
    row(
        &mut o,
        "tokens (prompt / generated)",
        r.map(|r| format!("{} / {}", r.prompt_tokens, r.generated_tokens))
            .unwrap_or_else(|| "n/a".into()),
        format!(
            "{} / {} in {} replies",
            ss.prompt_tokens, ss.generated_tokens, ss.replies
        ),
    );
    let re = r.and_then(|r| r.energy.as_ref());
    let se = ss.energy.as_ref();
    row(
        &mut o,
        "energy",
        re.map(|e| format!("{:.3} Wh{}", e.total_wh(), band_suffix(e.uncertainty)))
            .unwrap_or_else(|| "n/a".into()),
        se.map(|e| format!("{:.3} Wh{}", e.total_wh(), band_suffix(e.uncertainty)))
            .unwrap_or_else(|| "n/a".into()),
    );
    row(
        &mut o,
        "J/token",
        opt(re.and_then(|e| e.j_per_token), 2, ""),
        opt(se.and_then(|e| e.j_per_token), 2, ""),
    );
    row(
        &mut o,
        "avg / peak W",
        re.map(|e| format!("{:.1} / {:.1}", e.avg_w, e.peak_w))
            .unwrap_or_else(|| "n/a".into()),
        se.map(|e| format!("{:.1} / {:.1}", e.avg_w, e.peak_w))
            .unwrap_or_else(|| "n/a".into()),
    );
    row(
        &mut o,
        "idle baseline",
        opt(re.and_then(|e| e.idle_baseline_w), 1, " W"),
        opt(se.and_then(|e| e.idle_baseline_w), 1, " W"),
    );
    row(
        &mut o,
        "peak temp / max fan",
        r.map(|r| {
            format!(
                "{} / {}",
                opt(r.thermal.peak_temp_c(), 0, " °C"),
                opt(r.thermal.max_fan_rpm, 0, " RPM")
            )
        })
        .unwrap_or_else(|| "n/a".into()),
        format!(
            "{} / {}",
            opt(ss.thermal.peak_temp_c(), 0, " °C"),
            opt(ss.thermal.max_fan_rpm, 0, " RPM")
        ),
    );

    if !card.cost.is_empty() {
        let _ = writeln!(
            o,
            "\n| region | price/kWh | last reply | session | per 1M tokens | CO2 (session) |"
        );
        let _ = writeln!(o, "|---|---:|---:|---:|---:|---:|");
        for c in &card.cost {
            let money = |v: Option<f64>| match (v, Currency::new(&c.currency)) {
                (Some(v), Ok(cur)) => format_money(v, &cur),
                _ => "n/a".into(),
            };
            let _ = writeln!(
                o,
                "| {} | {} | {} | {} | {} | {} |",
                md_escape(&c.region),
                Currency::new(&c.currency)
                    .map(|cur| format_unit_price(c.price_per_kwh, &cur))
                    .unwrap_or_else(|_| "n/a".into()),
                money(c.last_reply),
                money(c.session),
                money(c.per_million_tokens),
                c.co2_g_session
                    .map(format_co2)
                    .unwrap_or_else(|| "n/a".into())
            );
        }
        let sources: Vec<String> = card
            .cost
            .iter()
            .map(|c| format!("{}: {}", c.region, c.source))
            .collect();
        let _ = writeln!(o, "\nPrices: {}.", md_escape(&sources.join("; ")));
    }
    if let Some(e) = re {
        energy_lines(&mut o, "last reply", e);
    }
    if let Some(e) = se {
        energy_lines(&mut o, "session", e);
    }
    // The session's episodes include the last reply's.
    for t in &ss.throttle {
        let _ = writeln!(o, "\n**Throttled** {}.", md_escape(&t.line()));
    }
    if let Some(lr) = &card.last_reply {
        if let Some(r) = &lr.roofline {
            let ceiling = r
                .ceiling
                .as_ref()
                .map(|c| format!("; ceiling: {}", c.what))
                .unwrap_or_default();
            let _ = writeln!(
                o,
                "\n**Memory** (last reply): {}, {:.1} MB a token at a mean depth of {:.0} tokens{ceiling}.",
                md_escape(&crate::accounting::roofline::text(r)),
                r.bytes_per_token / 1e6,
                r.depth,
            );
        }
        for c in &lr.contention {
            let _ = writeln!(
                o,
                "\n**Contended** (last reply): {}.",
                md_escape(&c.reply_text(lr.gen_tok_s))
            );
        }
    }
    let _ = writeln!(
        o,
        "\n<sub>Made with llmtop {}; compare cards with `llmtop compare`.</sub>",
        md_escape(&card.build.llmtop_version)
    );
    o
}

/// Cell geometry of the SVG, px: a 14 px monospace font is about 0.6 em wide.
const CELL_W: f64 = 8.4;
const CELL_H: f64 = 17.0;
const DEFAULT_FG: &str = "#d0d0d0";
const DEFAULT_BG: &str = "#1c1c1c";

/// Height of the run card's chart of power and tok/s, px.
const CHART_H: u32 = 280;
/// Width of that chart when there is no screen above it.
const CHART_W: u32 = 900;

/// The run card's picture: the screen when given, above a chart of whole-system power and
/// tok/s over the run when the card's series has either; `None` when there is neither.
pub fn card_svg(card: &RunCard, screen: Option<&Buffer>) -> Option<String> {
    let chart = series_chart(card, screen.map(|b| screen_width(b).round() as u32));
    let Some(buf) = screen else {
        return chart.map(|c| c.svg);
    };
    let Some(chart) = chart else {
        return Some(buffer_to_svg(buf));
    };
    let h = f64::from(buf.area.height) * CELL_H;
    let w = screen_width(buf).max(f64::from(chart.width));
    let total = h + f64::from(chart.height);
    let mut o = String::new();
    let _ = writeln!(
        o,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{0}" height="{1}" viewBox="0 0 {0} {1}">"#,
        px(w),
        px(total)
    );
    let _ = writeln!(
        o,
        r#"<rect width="100%" height="100%" fill="{DEFAULT_BG}"/>"#
    );
    o.push_str(r#"<g class="screen" "#);
    o.push_str(SCREEN_FONT);
    o.push_str(">\n");
    o.push_str(&screen_body(buf));
    o.push_str("</g>\n");
    let _ = writeln!(
        o,
        r#"<g class="run-chart" transform="translate(0,{})">"#,
        px(h)
    );
    o.push_str(chart.body());
    o.push_str("</g>\n</svg>\n");
    Some(o)
}

/// Power (left axis) and tok/s (right axis) against time, from the card's series.
fn series_chart(card: &RunCard, width: Option<u32>) -> Option<crate::report::chart::Chart> {
    use crate::report::chart::{DARK, Line, time_lines};
    let pick = |f: fn(&crate::report::runcard::SeriesPoint) -> Option<f64>| -> Vec<(f64, f64)> {
        card.series
            .iter()
            .filter_map(|p| Some((p.t_s, f(p)?)))
            .filter(|(t, v)| t.is_finite() && v.is_finite())
            .collect()
    };
    let lines: Vec<Line> = [
        ("power_w", "power (W)", pick(|p| p.power_w), false),
        ("tok_s", "generation (tok/s)", pick(|p| p.tok_s), true),
    ]
    .into_iter()
    .filter(|(_, _, pts, _)| !pts.is_empty())
    .map(|(key, label, points, right)| Line {
        key: key.into(),
        label: label.into(),
        points,
        right,
    })
    .collect();
    if lines.is_empty() {
        return None;
    }
    let title = format!(
        "{} on {}: power and speed over the run",
        card.model.name, card.host.hostname
    );
    time_lines(
        &title,
        &lines,
        width.unwrap_or(CHART_W).max(480),
        CHART_H,
        DARK,
    )
    .map_err(|e| tracing::warn!("run card chart: {e}"))
    .ok()
}

const SCREEN_FONT: &str =
    r#"font-family="ui-monospace, 'DejaVu Sans Mono', Menlo, Consolas, monospace" font-size="14""#;

fn screen_width(buf: &Buffer) -> f64 {
    f64::from(buf.area.width) * CELL_W
}

/// Render a ratatui buffer as an SVG: one background rect per run of same-coloured cells, one
/// `<text>` per run of same-styled cells, stretched to the grid so any monospace font lines up.
pub fn buffer_to_svg(buf: &Buffer) -> String {
    let area = buf.area;
    let width = px(screen_width(buf));
    let height = px(f64::from(area.height) * CELL_H);
    let mut o = String::new();
    let _ = writeln!(
        o,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" {SCREEN_FONT}>"#
    );
    let _ = writeln!(
        o,
        r#"<rect width="100%" height="100%" fill="{DEFAULT_BG}"/>"#
    );
    o.push_str(&screen_body(buf));
    o.push_str("</svg>\n");
    o
}

/// The screen's rects and texts, without the enclosing element.
fn screen_body(buf: &Buffer) -> String {
    let area = buf.area;
    let mut o = String::new();
    for row in 0..area.height {
        let y = f64::from(row) * CELL_H;
        let mut cells: Vec<CellStyle> = (0..area.width)
            .map(|col| {
                buf.cell((area.x + col, area.y + row))
                    .map(CellStyle::of)
                    .unwrap_or_default()
            })
            .collect();
        // A wide character covers the cells after it: their blanks must not add text width.
        let mut covered = 0usize;
        for c in &mut cells {
            if covered > 0 {
                covered -= 1;
                c.symbol.clear();
            } else {
                covered =
                    unicode_width::UnicodeWidthStr::width(c.symbol.as_str()).saturating_sub(1);
            }
        }
        // Backgrounds.
        let mut col = 0;
        while col < cells.len() {
            let bg = cells[col].bg.clone();
            let start = col;
            while col < cells.len() && cells[col].bg == bg {
                col += 1;
            }
            if bg != DEFAULT_BG {
                let _ = writeln!(
                    o,
                    r#"<rect x="{}" y="{}" width="{}" height="{CELL_H}" fill="{bg}"/>"#,
                    px(start as f64 * CELL_W),
                    px(y),
                    px((col - start) as f64 * CELL_W)
                );
            }
        }
        // Text runs.
        let mut col = 0;
        while col < cells.len() {
            let start = col;
            let key = cells[col].text_key();
            let mut text = String::new();
            while col < cells.len() && cells[col].text_key() == key {
                text.push_str(&cells[col].symbol);
                col += 1;
            }
            let st = &cells[start];
            if text.trim().is_empty() || st.hidden {
                continue;
            }
            // Trailing blanks draw nothing; dropping them keeps the run's width honest.
            let mut end = col;
            while end > start && cells[end - 1].symbol == " " {
                end -= 1;
            }
            let text = text.trim_end_matches(' ');
            let mut attrs = format!(r#" fill="{}""#, st.fg);
            if st.bold {
                attrs.push_str(r#" font-weight="bold""#);
            }
            if st.italic {
                attrs.push_str(r#" font-style="italic""#);
            }
            if st.dim {
                attrs.push_str(r#" opacity="0.6""#);
            }
            match (st.underline, st.crossed) {
                (true, true) => attrs.push_str(r#" text-decoration="underline line-through""#),
                (true, false) => attrs.push_str(r#" text-decoration="underline""#),
                (false, true) => attrs.push_str(r#" text-decoration="line-through""#),
                _ => {}
            }
            let _ = writeln!(
                o,
                r#"<text x="{}" y="{}" textLength="{}" lengthAdjust="spacingAndGlyphs" xml:space="preserve"{attrs}>{}</text>"#,
                px(start as f64 * CELL_W),
                px(y + CELL_H * 0.8),
                px((end - start) as f64 * CELL_W),
                xml_escape(text)
            );
        }
    }
    o
}

/// Pixels with at most 2 decimals and no float noise: 25.2, not 25.200000000000003.
fn px(v: f64) -> String {
    let s = format!("{v:.2}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

#[derive(Debug, Clone, PartialEq)]
struct CellStyle {
    symbol: String,
    fg: String,
    bg: String,
    bold: bool,
    italic: bool,
    dim: bool,
    underline: bool,
    crossed: bool,
    hidden: bool,
}

impl Default for CellStyle {
    fn default() -> Self {
        Self {
            symbol: " ".into(),
            fg: DEFAULT_FG.into(),
            bg: DEFAULT_BG.into(),
            bold: false,
            italic: false,
            dim: false,
            underline: false,
            crossed: false,
            hidden: false,
        }
    }
}

impl CellStyle {
    fn of(c: &ratatui::buffer::Cell) -> Self {
        let m = c.modifier;
        let mut fg = color_hex(c.fg).unwrap_or_else(|| DEFAULT_FG.into());
        let mut bg = color_hex(c.bg).unwrap_or_else(|| DEFAULT_BG.into());
        if m.contains(Modifier::REVERSED) {
            std::mem::swap(&mut fg, &mut bg);
        }
        Self {
            symbol: c.symbol().to_string(),
            fg,
            bg,
            bold: m.contains(Modifier::BOLD),
            italic: m.contains(Modifier::ITALIC),
            dim: m.contains(Modifier::DIM),
            underline: m.contains(Modifier::UNDERLINED),
            crossed: m.contains(Modifier::CROSSED_OUT),
            hidden: m.contains(Modifier::HIDDEN),
        }
    }

    fn text_key(&self) -> (&str, bool, bool, bool, bool, bool, bool) {
        (
            &self.fg,
            self.bold,
            self.italic,
            self.dim,
            self.underline,
            self.crossed,
            self.hidden,
        )
    }
}

/// The xterm default palette for the 16 named colours.
const ANSI16: [&str; 16] = [
    "#000000", "#cd0000", "#00cd00", "#cdcd00", "#0000ee", "#cd00cd", "#00cdcd", "#e5e5e5",
    "#7f7f7f", "#ff0000", "#00ff00", "#ffff00", "#5c5cff", "#ff00ff", "#00ffff", "#ffffff",
];

/// `None` for `Color::Reset` (the terminal default).
pub fn color_hex(c: Color) -> Option<String> {
    let idx = match c {
        Color::Reset => return None,
        Color::Rgb(r, g, b) => return Some(format!("#{r:02x}{g:02x}{b:02x}")),
        Color::Indexed(i) => i,
        Color::Black => 0,
        Color::Red => 1,
        Color::Green => 2,
        Color::Yellow => 3,
        Color::Blue => 4,
        Color::Magenta => 5,
        Color::Cyan => 6,
        Color::Gray => 7,
        Color::DarkGray => 8,
        Color::LightRed => 9,
        Color::LightGreen => 10,
        Color::LightYellow => 11,
        Color::LightBlue => 12,
        Color::LightMagenta => 13,
        Color::LightCyan => 14,
        Color::White => 15,
    };
    Some(match idx {
        0..=15 => ANSI16[usize::from(idx)].to_string(),
        16..=231 => {
            // 6x6x6 cube: levels 0, 95, 135, 175, 215, 255.
            let level = |v: u8| if v == 0 { 0 } else { 55 + 40 * v };
            let i = idx - 16;
            format!(
                "#{:02x}{:02x}{:02x}",
                level(i / 36),
                level((i / 6) % 6),
                level(i % 6)
            )
        }
        _ => {
            let v = 8 + 10 * (idx - 232);
            format!("#{v:02x}{v:02x}{v:02x}")
        }
    })
}

/// Escape text for XML content and attribute values; control characters dropped.
pub fn xml_escape(s: &str) -> String {
    crate::util::sanitize::xml(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn palette_mapping() {
        assert_eq!(color_hex(Color::Reset), None);
        assert_eq!(color_hex(Color::Red).as_deref(), Some("#cd0000"));
        assert_eq!(color_hex(Color::Rgb(1, 2, 255)).as_deref(), Some("#0102ff"));
        // 16 = black corner of the cube, 231 = white corner, 196 = pure red (5,0,0).
        assert_eq!(color_hex(Color::Indexed(16)).as_deref(), Some("#000000"));
        assert_eq!(color_hex(Color::Indexed(231)).as_deref(), Some("#ffffff"));
        assert_eq!(color_hex(Color::Indexed(196)).as_deref(), Some("#ff0000"));
        assert_eq!(color_hex(Color::Indexed(232)).as_deref(), Some("#080808"));
        assert_eq!(color_hex(Color::Indexed(255)).as_deref(), Some("#eeeeee"));
    }

    #[test]
    fn escapes_markup() {
        assert_eq!(xml_escape("a<b>&\"c'\u{1}"), "a&lt;b&gt;&amp;&quot;c&apos;");
    }
}
