//! Every picture llmtop draws as a chart: bar panels (`compare --svg`), a scatter with a marked
//! Pareto frontier (`bench --sweep --svg`) and lines over time (the run card's SVG). Drawn with
//! plotters' SVG backend; text is left to the viewer's fonts, so no font library is linked.
//!
//! Each chart groups what it draws in `<g>` elements a reader (or a test) can pick out: one per
//! machine, per bar, per series, per frontier. plotters has no groups, so a group is opened and
//! closed by a marker text drawn in sequence with the shapes, whose content starts with a control
//! character (no label can contain one: labels go through [`sanitize::xml_label`]); [`finish`]
//! replaces each marker with the group's tag.

use crate::util::sanitize;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use std::fmt::Write as _;

/// A chart that could not be drawn (plotters reports layout problems as errors).
#[derive(Debug, thiserror::Error)]
#[error("cannot draw the chart: {0}")]
pub struct ChartError(String);

impl<E: std::error::Error + Send + Sync> From<DrawingAreaErrorKind<E>> for ChartError {
    fn from(e: DrawingAreaErrorKind<E>) -> Self {
        Self(e.to_string())
    }
}

/// A finished picture.
#[derive(Debug, Clone, PartialEq)]
pub struct Chart {
    pub width: u32,
    pub height: u32,
    /// The SVG document.
    pub svg: String,
}

impl Chart {
    /// What lies inside the outer `<svg>` element, to place the chart inside another picture.
    pub fn body(&self) -> &str {
        let start = self.svg.find('\n').map_or(0, |i| i + 1);
        let end = self.svg.rfind("</svg>").unwrap_or(self.svg.len());
        self.svg.get(start..end).unwrap_or("")
    }
}

/// Colours of a chart: light for pictures of their own, dark under a run card's screen.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Theme {
    pub background: RGBColor,
    pub text: RGBColor,
    pub grid: RGBColor,
}

pub const LIGHT: Theme = Theme {
    background: RGBColor(255, 255, 255),
    text: RGBColor(34, 34, 34),
    grid: RGBColor(220, 220, 220),
};

pub const DARK: Theme = Theme {
    background: RGBColor(28, 28, 28),
    text: RGBColor(208, 208, 208),
    grid: RGBColor(60, 60, 60),
};

/// Colour-blind-friendly (Okabe-Ito), one per machine or series, repeating after eight.
const PALETTE: [RGBColor; 8] = [
    RGBColor(0, 114, 178),
    RGBColor(230, 159, 0),
    RGBColor(0, 158, 115),
    RGBColor(204, 121, 167),
    RGBColor(86, 180, 233),
    RGBColor(213, 94, 0),
    RGBColor(240, 228, 66),
    RGBColor(120, 120, 120),
];

pub fn color(i: usize) -> RGBColor {
    PALETTE[i % PALETTE.len()]
}

const FONT: &str = "sans-serif";
/// Starts every group marker's text; see the module comment.
const MARK: char = '\u{1}';

/// Group tags in the order the markers were drawn.
#[derive(Default)]
struct Groups {
    tags: Vec<String>,
}

impl Groups {
    /// Open a group: `attrs` are (name, raw value) pairs, each value made one line and
    /// escaped here.
    fn open<DB: DrawingBackend>(
        &mut self,
        area: &DrawingArea<DB, Shift>,
        attrs: &[(&str, &str)],
    ) -> Result<(), ChartError> {
        let mut tag = String::from("<g");
        for (k, v) in attrs {
            let _ = write!(tag, " {k}=\"{}\"", sanitize::xml(&sanitize::xml_label(v)));
        }
        tag.push('>');
        self.tags.push(tag);
        marker(area, &format!("{MARK}open:{}", self.tags.len() - 1))
    }

    fn close<DB: DrawingBackend>(&self, area: &DrawingArea<DB, Shift>) -> Result<(), ChartError> {
        marker(area, &format!("{MARK}close"))
    }
}

fn marker<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, text: &str) -> Result<(), ChartError> {
    area.draw(&Text::new(
        text.to_string(),
        (0, 0),
        (FONT, 1).into_font().color(&BLACK),
    ))
    .map_err(|e| ChartError(e.to_string()))
}

/// Replace the markers plotters wrote (`<text ...>`, the marker, `</text>`, one line each) by
/// the groups' tags.
fn finish(raw: &str, groups: &Groups) -> String {
    let lines: Vec<&str> = raw.lines().collect();
    let mut out = String::with_capacity(raw.len());
    let mut i = 0;
    while i < lines.len() {
        if lines[i].starts_with("<text")
            && let (Some(m), Some(&"</text>")) = (lines.get(i + 1), lines.get(i + 2))
            && let Some(m) = m.strip_prefix(MARK)
        {
            if m == "close" {
                out.push_str("</g>\n");
            } else if let Some(tag) = m
                .strip_prefix("open:")
                .and_then(|k| k.parse::<usize>().ok())
                .and_then(|k| groups.tags.get(k))
            {
                out.push_str(tag);
                out.push('\n');
            }
            i += 3;
            continue;
        }
        out.push_str(lines[i]);
        out.push('\n');
        i += 1;
    }
    out
}

/// A number for a `data-*` attribute: full precision, so a reader gets the figure itself.
fn data_num(v: f64) -> String {
    format!("{v}")
}

/// A label from a file or a device, ready for plotters (which escapes markup itself).
fn label(s: &str) -> String {
    sanitize::xml_label(s)
}

/// A chart's title and subtitle across its top 64 px; the rest of the area is returned.
fn heading<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    theme: &Theme,
    title: &str,
    subtitle: &str,
) -> Result<DrawingArea<DB, Shift>, ChartError> {
    let (top, body) = root.split_vertically(64);
    top.draw(&Text::new(
        label(title),
        (12, 8),
        (FONT, 22).into_font().color(&theme.text),
    ))?;
    top.draw(&Text::new(
        label(subtitle),
        (12, 38),
        (FONT, 13).into_font().color(&theme.text),
    ))?;
    Ok(body)
}

/// Shorten a label to `n` characters for a crowded axis.
fn short(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        format!(
            "{}…",
            s.chars().take(n.saturating_sub(1)).collect::<String>()
        )
    }
}

/// An axis tick: three significant figures at most, no trailing zeros (2000, 0.5, 0.0003).
fn tick(v: &f64) -> String {
    let v = *v;
    if v == 0.0 || !v.is_finite() {
        return "0".into();
    }
    let digits = (2 - v.abs().log10().floor() as i32).clamp(0, 8) as usize;
    let s = format!("{v:.digits$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

/// A top-of-axis bound with headroom for the value labels above the bars.
fn headroom(max: f64) -> f64 {
    if max.is_finite() && max > 0.0 {
        max * 1.18
    } else {
        1.0
    }
}

/// One thing compared (a machine): its group's class and id, and its name (from a file).
#[derive(Debug, Clone, PartialEq)]
pub struct Member {
    pub class: String,
    pub id: String,
    pub name: String,
}

/// One bar: which of a panel's bars (e.g. "idle" or "load"), its value, and the value as
/// shown above the bar (formatted by the caller, money by its one formatter).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Bar {
    pub value: Option<f64>,
    pub text: String,
    /// Where the truth lies, `(low, high)` in the panel's unit: drawn as a whisker over the
    /// bar and kept in `data-lower`/`data-upper`.
    pub range: Option<(f64, f64)>,
    /// A word above the value ("within error"), in the bar's group as `data-note`.
    pub note: Option<String>,
}

/// One small chart: a figure for every member, one or more bars each.
#[derive(Debug, Clone, PartialEq)]
pub struct Panel {
    /// Names the figure in the SVG (`data-panel`), e.g. "gen_tok_s".
    pub key: String,
    pub title: String,
    /// The bars each member has here, e.g. ["idle", "load"]; one name for a single bar.
    pub bars: Vec<String>,
    /// `values[member][bar]`.
    pub values: Vec<Vec<Bar>>,
}

/// A sheet of bar panels, `columns` wide. The members' bars are drawn member by member, so each
/// member's bars across every panel sit in one `<g class=... id=... data-name=...>`.
pub fn bar_panels(
    title: &str,
    subtitle: &str,
    members: &[Member],
    panels: &[Panel],
    columns: usize,
) -> Result<Chart, ChartError> {
    let theme = LIGHT;
    let columns = columns.clamp(1, panels.len().max(1));
    let rows = panels.len().div_ceil(columns).max(1);
    let (panel_w, panel_h) = (300u32, 230u32);
    let head = 86u32;
    let width = panel_w * columns as u32;
    let height = head + panel_h * rows as u32;
    let mut raw = String::new();
    let mut groups = Groups::default();
    {
        let root = SVGBackend::with_string(&mut raw, (width, height)).into_drawing_area();
        root.fill(&theme.background)?;
        let (top, body) = root.split_vertically(head);
        top.draw(&Text::new(
            label(title),
            (12, 8),
            (FONT, 22).into_font().color(&theme.text),
        ))?;
        top.draw(&Text::new(
            label(subtitle),
            (12, 36),
            (FONT, 13).into_font().color(&theme.text),
        ))?;
        // Legend: one swatch per member.
        let mut x = 12i32;
        for (i, m) in members.iter().enumerate() {
            let name = short(&label(&m.name), 28);
            top.draw(&Rectangle::new([(x, 60), (x + 14, 74)], color(i).filled()))?;
            top.draw(&Text::new(
                name.clone(),
                (x + 20, 60),
                (FONT, 14).into_font().color(&theme.text),
            ))?;
            x += 40 + 8 * name.chars().count() as i32;
        }
        let areas = body.split_evenly((rows, columns));
        let n = members.len().max(1);
        let names: Vec<String> = members.iter().map(|m| short(&label(&m.name), 12)).collect();
        let mut charts = Vec::new();
        for (area, p) in areas.iter().zip(panels) {
            let max = p
                .values
                .iter()
                .flatten()
                .flat_map(|b| [b.value, b.range.map(|r| r.1)])
                .flatten()
                .filter(|v| v.is_finite())
                .fold(0.0f64, f64::max);
            let mut chart = ChartBuilder::on(area)
                .caption(label(&p.title), (FONT, 15).into_font().color(&theme.text))
                .margin(8)
                .x_label_area_size(22)
                .y_label_area_size(46)
                .build_cartesian_2d(0f64..n as f64, 0f64..headroom(max))?;
            chart
                .configure_mesh()
                .disable_x_mesh()
                .light_line_style(theme.background)
                .bold_line_style(theme.grid)
                .axis_style(theme.text)
                .y_labels(5)
                .y_label_formatter(&tick)
                // The machines' names go under their bars (plotters would tick the x range).
                .x_labels(0)
                .label_style((FONT, 11).into_font().color(&theme.text))
                .draw()?;
            for (i, name) in names.iter().enumerate() {
                let (x, y) = chart.backend_coord(&(i as f64 + 0.5, 0.0));
                root.draw(&Text::new(
                    name.clone(),
                    (x, y + 5),
                    (FONT, 11)
                        .into_font()
                        .color(&theme.text)
                        .pos(Pos::new(HPos::Center, VPos::Top)),
                ))?;
            }
            charts.push(chart);
        }
        for (i, m) in members.iter().enumerate() {
            groups.open(
                &root,
                &[("class", &m.class), ("id", &m.id), ("data-name", &m.name)],
            )?;
            for (chart, p) in charts.iter_mut().zip(panels) {
                let Some(bars) = p.values.get(i) else {
                    continue;
                };
                let k = p.bars.len().max(1) as f64;
                let (pad, slot) = (0.14, 0.72 / k);
                for (j, bar) in bars.iter().enumerate() {
                    let sub = p.bars.get(j).cloned().unwrap_or_default();
                    let x0 = i as f64 + pad + slot * j as f64;
                    let x1 = x0 + slot * 0.92;
                    let mut attrs = vec![
                        ("class", "bar".to_string()),
                        ("data-panel", p.key.clone()),
                        ("data-bar", sub),
                    ];
                    if let Some(v) = bar.value.filter(|v| v.is_finite()) {
                        attrs.push(("data-value", data_num(v)));
                    }
                    let range = bar
                        .range
                        .filter(|(a, b)| a.is_finite() && b.is_finite() && b >= a);
                    if let Some((lo, hi)) = range {
                        attrs.push(("data-lower", data_num(lo)));
                        attrs.push(("data-upper", data_num(hi)));
                    }
                    if let Some(n) = &bar.note {
                        attrs.push(("data-note", n.clone()));
                    }
                    let attrs: Vec<(&str, &str)> =
                        attrs.iter().map(|(a, v)| (*a, v.as_str())).collect();
                    groups.open(&root, &attrs)?;
                    // Later bars of a member (load after idle) in full colour, earlier ones paler.
                    let shade = if j + 1 == bars.len() {
                        color(i).to_rgba()
                    } else {
                        color(i).mix(0.45)
                    };
                    let v = bar.value.filter(|v| v.is_finite() && *v >= 0.0);
                    if let Some(v) = v {
                        chart.draw_series(std::iter::once(Rectangle::new(
                            [(x0, 0.0), (x1, v)],
                            shade.filled(),
                        )))?;
                    }
                    // The error band: a whisker with caps from its low to its high end.
                    let mid = (x0 + x1) / 2.0;
                    if let Some((lo, hi)) = range {
                        let cap = (x1 - x0) / 4.0;
                        let ink = theme.text.stroke_width(1);
                        for seg in [
                            [(mid, lo.max(0.0)), (mid, hi)],
                            [(mid - cap, lo.max(0.0)), (mid + cap, lo.max(0.0))],
                            [(mid - cap, hi), (mid + cap, hi)],
                        ] {
                            chart.draw_series(std::iter::once(PathElement::new(seg, ink)))?;
                        }
                    }
                    let y = v.unwrap_or(0.0).max(range.map_or(0.0, |r| r.1));
                    let (x, yy) = chart.backend_coord(&(mid, y));
                    root.draw(&Text::new(
                        label(&bar.text),
                        (x, yy - 3),
                        (FONT, 10)
                            .into_font()
                            .color(&theme.text)
                            .pos(Pos::new(HPos::Center, VPos::Bottom)),
                    ))?;
                    if let Some(n) = &bar.note {
                        root.draw(&Text::new(
                            label(n),
                            (x, yy - 15),
                            (FONT, 9)
                                .into_font()
                                .color(&theme.text)
                                .pos(Pos::new(HPos::Center, VPos::Bottom)),
                        ))?;
                    }
                    groups.close(&root)?;
                }
            }
            groups.close(&root)?;
        }
        root.present()?;
    }
    Ok(Chart {
        width,
        height,
        svg: finish(&raw, &groups),
    })
}

/// One setting of a sweep on the speed/energy plane.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    pub label: String,
    pub x: f64,
    pub y: f64,
    pub frontier: bool,
}

/// Speed (x, more is better) against energy (y, less is better); the frontier points in
/// `<g class="frontier">` joined by a line, the others in `<g class="dominated">`, each point
/// in `<g class="point" data-label data-x data-y>`.
pub fn frontier_scatter(
    title: &str,
    subtitle: &str,
    x_desc: &str,
    y_desc: &str,
    points: &[Point],
) -> Result<Chart, ChartError> {
    let theme = LIGHT;
    let (width, height) = (900u32, 620u32);
    let finite: Vec<&Point> = points
        .iter()
        .filter(|p| p.x.is_finite() && p.y.is_finite())
        .collect();
    let span = |v: &mut dyn Iterator<Item = f64>| {
        let (lo, hi) = v.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), x| {
            (lo.min(x), hi.max(x))
        });
        if !lo.is_finite() {
            return (0.0, 1.0);
        }
        let pad = ((hi - lo) * 0.15).max(hi.abs() * 0.05).max(1e-9);
        ((lo - pad).max(0.0), hi + pad)
    };
    let (x0, x1) = span(&mut finite.iter().map(|p| p.x));
    let (y0, y1) = span(&mut finite.iter().map(|p| p.y));
    let mut raw = String::new();
    let mut groups = Groups::default();
    {
        let root = SVGBackend::with_string(&mut raw, (width, height)).into_drawing_area();
        root.fill(&theme.background)?;
        let body = heading(&root, &theme, title, subtitle)?;
        let mut chart = ChartBuilder::on(&body)
            .margin(16)
            .x_label_area_size(44)
            .y_label_area_size(64)
            .build_cartesian_2d(x0..x1, y0..y1)?;
        chart
            .configure_mesh()
            .light_line_style(theme.background)
            .bold_line_style(theme.grid)
            .axis_style(theme.text)
            .x_desc(label(x_desc))
            .y_desc(label(y_desc))
            .x_label_formatter(&tick)
            .y_label_formatter(&tick)
            .label_style((FONT, 12).into_font().color(&theme.text))
            .axis_desc_style((FONT, 14).into_font().color(&theme.text))
            .draw()?;
        let mut front: Vec<&&Point> = finite.iter().filter(|p| p.frontier).collect();
        front.sort_by(|a, b| a.x.total_cmp(&b.x));
        let accent = RGBColor(213, 94, 0);
        let plain = RGBColor(0, 114, 178);
        let mut placed: Vec<(i32, i32, i32)> = Vec::new();
        for (class, on_front) in [("dominated", false), ("frontier", true)] {
            groups.open(&root, &[("class", class)])?;
            if on_front && front.len() > 1 {
                chart.draw_series(std::iter::once(PathElement::new(
                    front.iter().map(|p| (p.x, p.y)).collect::<Vec<_>>(),
                    accent.stroke_width(2),
                )))?;
            }
            for p in finite.iter().filter(|p| p.frontier == on_front) {
                groups.open(
                    &root,
                    &[
                        ("class", "point"),
                        ("data-label", &p.label),
                        ("data-x", &data_num(p.x)),
                        ("data-y", &data_num(p.y)),
                    ],
                )?;
                let style = if on_front {
                    accent.filled()
                } else {
                    plain.mix(0.8).filled()
                };
                chart.draw_series(std::iter::once(Circle::new(
                    (p.x, p.y),
                    if on_front { 6 } else { 5 },
                    style,
                )))?;
                let (px, py) = chart.backend_coord(&(p.x, p.y));
                let text = short(&label(&p.label), 40);
                // Settings close on the plane would print over each other: step a label
                // down until it clears those already placed (12 px text, about 7 px a char).
                let w = 7 * text.chars().count() as i32;
                // Left of the point when it would run off the right edge.
                let x = if px + 9 + w > width as i32 - 8 {
                    px - 9 - w
                } else {
                    px + 9
                };
                let mut y = py - 16;
                while placed
                    .iter()
                    .any(|&(ox, oy, ow)| x < ox + ow && ox < x + w && (y - oy).abs() < 15)
                {
                    y += 15;
                }
                placed.push((x, y, w));
                root.draw(&Text::new(
                    text,
                    (x, y),
                    (FONT, 12).into_font().color(&theme.text),
                ))?;
                groups.close(&root)?;
            }
            groups.close(&root)?;
        }
        root.present()?;
    }
    Ok(Chart {
        width,
        height,
        svg: finish(&raw, &groups),
    })
}

/// A line over time: `(t_s, value)` points; `right` puts it on the right-hand axis.
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    pub key: String,
    pub label: String,
    pub points: Vec<(f64, f64)>,
    pub right: bool,
}

/// Up to two lines against time, one per axis, each in `<g class="series" data-series=key>`.
pub fn time_lines(
    title: &str,
    lines: &[Line],
    width: u32,
    height: u32,
    theme: Theme,
) -> Result<Chart, ChartError> {
    let t_max = lines
        .iter()
        .flat_map(|l| l.points.iter().map(|p| p.0))
        .filter(|t| t.is_finite())
        .fold(0.0f64, f64::max)
        .max(1.0);
    let top = |right: bool| {
        headroom(
            lines
                .iter()
                .filter(|l| l.right == right)
                .flat_map(|l| l.points.iter().map(|p| p.1))
                .filter(|v| v.is_finite())
                .fold(0.0f64, f64::max),
        )
    };
    let desc = |right: bool| {
        lines
            .iter()
            .filter(|l| l.right == right)
            .map(|l| label(&l.label))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut raw = String::new();
    let mut groups = Groups::default();
    {
        let root = SVGBackend::with_string(&mut raw, (width, height)).into_drawing_area();
        root.fill(&theme.background)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(label(title), (FONT, 16).into_font().color(&theme.text))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(56)
            .right_y_label_area_size(56)
            .build_cartesian_2d(0f64..t_max, 0f64..top(false))?
            .set_secondary_coord(0f64..t_max, 0f64..top(true));
        chart
            .configure_mesh()
            .light_line_style(theme.background)
            .bold_line_style(theme.grid)
            .axis_style(theme.text)
            .x_desc("seconds")
            .y_desc(desc(false))
            .x_label_formatter(&tick)
            .y_label_formatter(&tick)
            .label_style((FONT, 12).into_font().color(&theme.text))
            .axis_desc_style((FONT, 13).into_font().color(&theme.text))
            .draw()?;
        if lines.iter().any(|l| l.right) {
            chart
                .configure_secondary_axes()
                .axis_style(theme.text)
                .y_desc(desc(true))
                .y_label_formatter(&tick)
                .label_style((FONT, 12).into_font().color(&theme.text))
                .axis_desc_style((FONT, 13).into_font().color(&theme.text))
                .draw()?;
        }
        for (i, l) in lines.iter().enumerate() {
            groups.open(
                &root,
                &[
                    ("class", "series"),
                    ("data-series", &l.key),
                    ("data-points", &l.points.len().to_string()),
                ],
            )?;
            let pts: Vec<(f64, f64)> = l
                .points
                .iter()
                .copied()
                .filter(|(t, v)| t.is_finite() && v.is_finite())
                .collect();
            let style = color(usize::from(l.right) + 2 * (i / 2)).stroke_width(2);
            let anno = if l.right {
                chart.draw_secondary_series(LineSeries::new(pts, style))?
            } else {
                chart.draw_series(LineSeries::new(pts, style))?
            };
            anno.label(label(&l.label))
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], style));
            groups.close(&root)?;
        }
        if !lines.is_empty() {
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::UpperLeft)
                .background_style(theme.background.mix(0.85))
                .border_style(theme.grid)
                .label_font((FONT, 12).into_font().color(&theme.text))
                .draw()?;
        }
        root.present()?;
    }
    Ok(Chart {
        width,
        height,
        svg: finish(&raw, &groups),
    })
}

/// A curve against the power cap: `(cap W, value)` points.
#[derive(Debug, Clone, PartialEq)]
pub struct CapCurve {
    /// Names the curve in the SVG (`data-series`), e.g. "decode".
    pub key: String,
    pub label: String,
    pub points: Vec<(f64, f64)>,
}

/// A cap marked on the chart: a knee or the recommended cap.
#[derive(Debug, Clone, PartialEq)]
pub struct CapMark {
    /// `data-mark`: "decode-knee", "prefill-knee", "recommended".
    pub key: String,
    pub label: String,
    pub cap_w: f64,
}

/// Speed against the power cap: each curve (% of the reference cap's speed) in
/// `<g class="series" data-series=key>` with a `<g class="point" data-cap data-value>` per
/// point, the optional `right` curve (tokens per joule) on the right-hand axis, and each mark a
/// vertical line in `<g class="mark" data-mark=key data-cap>`.
pub fn cap_knees(
    title: &str,
    subtitle: &str,
    curves: &[CapCurve],
    right: Option<&CapCurve>,
    marks: &[CapMark],
) -> Result<Chart, ChartError> {
    let theme = LIGHT;
    let (width, height) = (900u32, 620u32);
    let all_x = curves
        .iter()
        .chain(right)
        .flat_map(|c| c.points.iter().map(|p| p.0))
        .chain(marks.iter().map(|m| m.cap_w))
        .filter(|x| x.is_finite());
    let (lo, hi) = all_x.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), x| {
        (lo.min(x), hi.max(x))
    });
    let (x0, x1) = if lo.is_finite() {
        let pad = ((hi - lo) * 0.08).max(hi.abs() * 0.02).max(1.0);
        ((lo - pad).max(0.0), hi + pad)
    } else {
        (0.0, 1.0)
    };
    let y_top = curves
        .iter()
        .flat_map(|c| c.points.iter().map(|p| p.1))
        .filter(|v| v.is_finite())
        .fold(100.0f64, f64::max)
        * 1.12;
    let r_top = headroom(
        right
            .iter()
            .flat_map(|c| c.points.iter().map(|p| p.1))
            .filter(|v| v.is_finite())
            .fold(0.0f64, f64::max),
    );
    let mut raw = String::new();
    let mut groups = Groups::default();
    {
        let root = SVGBackend::with_string(&mut raw, (width, height)).into_drawing_area();
        root.fill(&theme.background)?;
        let body = heading(&root, &theme, title, subtitle)?;
        let mut chart = ChartBuilder::on(&body)
            .margin(16)
            .x_label_area_size(44)
            .y_label_area_size(64)
            .right_y_label_area_size(if right.is_some() { 64 } else { 0 })
            .build_cartesian_2d(x0..x1, 0f64..y_top)?
            .set_secondary_coord(x0..x1, 0f64..r_top);
        chart
            .configure_mesh()
            .light_line_style(theme.background)
            .bold_line_style(theme.grid)
            .axis_style(theme.text)
            .x_desc("power cap (W)")
            .y_desc("speed (% of the reference cap's)")
            .x_label_formatter(&tick)
            .y_label_formatter(&tick)
            .label_style((FONT, 12).into_font().color(&theme.text))
            .axis_desc_style((FONT, 14).into_font().color(&theme.text))
            .draw()?;
        if let Some(r) = right {
            chart
                .configure_secondary_axes()
                .axis_style(theme.text)
                .y_desc(label(&r.label))
                .y_label_formatter(&tick)
                .label_style((FONT, 12).into_font().color(&theme.text))
                .axis_desc_style((FONT, 14).into_font().color(&theme.text))
                .draw()?;
        }
        let accent = RGBColor(213, 94, 0);
        for m in marks {
            groups.open(
                &root,
                &[
                    ("class", "mark"),
                    ("data-mark", &m.key),
                    ("data-cap", &data_num(m.cap_w)),
                ],
            )?;
            let style = if m.key == "recommended" {
                accent.stroke_width(2)
            } else {
                theme.text.mix(0.5).stroke_width(1)
            };
            chart.draw_series(std::iter::once(PathElement::new(
                vec![(m.cap_w, 0.0), (m.cap_w, y_top)],
                style,
            )))?;
            let (x, y) = chart.backend_coord(&(m.cap_w, y_top));
            let row = marks.iter().take_while(|o| !std::ptr::eq(*o, m)).count() as i32;
            root.draw(&Text::new(
                label(&m.label),
                (x + 4, y + 4 + 15 * row),
                (FONT, 12).into_font().color(&theme.text),
            ))?;
            groups.close(&root)?;
        }
        let sides = curves
            .iter()
            .map(|c| (c, false))
            .chain(right.map(|c| (c, true)));
        for (i, (c, on_right)) in sides.enumerate() {
            groups.open(
                &root,
                &[
                    ("class", "series"),
                    ("data-series", &c.key),
                    ("data-points", &c.points.len().to_string()),
                ],
            )?;
            let mut pts: Vec<(f64, f64)> = c
                .points
                .iter()
                .copied()
                .filter(|(x, y)| x.is_finite() && y.is_finite())
                .collect();
            pts.sort_by(|a, b| a.0.total_cmp(&b.0));
            let style = color(i).stroke_width(2);
            let anno = if on_right {
                chart.draw_secondary_series(LineSeries::new(pts.clone(), style))?
            } else {
                chart.draw_series(LineSeries::new(pts.clone(), style))?
            };
            anno.label(label(&c.label))
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], style));
            for &(x, y) in &pts {
                groups.open(
                    &root,
                    &[
                        ("class", "point"),
                        ("data-cap", &data_num(x)),
                        ("data-value", &data_num(y)),
                    ],
                )?;
                if on_right {
                    chart.draw_secondary_series(std::iter::once(Circle::new(
                        (x, y),
                        4,
                        color(i).filled(),
                    )))?;
                } else {
                    chart.draw_series(std::iter::once(Circle::new(
                        (x, y),
                        4,
                        color(i).filled(),
                    )))?;
                }
                groups.close(&root)?;
            }
            groups.close(&root)?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .background_style(theme.background.mix(0.85))
            .border_style(theme.grid)
            .label_font((FONT, 12).into_font().color(&theme.text))
            .draw()?;
        root.present()?;
    }
    Ok(Chart {
        width,
        height,
        svg: finish(&raw, &groups),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_become_groups_and_nothing_else_changes() {
        let mut g = Groups::default();
        g.tags.push("<g class=\"a\">".into());
        let raw = "<svg>\n<text x=\"0\">\n\u{1}open:0\n</text>\n<rect/>\n<text x=\"0\">\n\u{1}close\n</text>\n<text x=\"1\">\nplain\n</text>\n</svg>\n";
        assert_eq!(
            finish(raw, &g),
            "<svg>\n<g class=\"a\">\n<rect/>\n</g>\n<text x=\"1\">\nplain\n</text>\n</svg>\n"
        );
    }

    #[test]
    fn ticks_are_short() {
        let t = |v: f64| tick(&v);
        assert_eq!(
            [
                t(0.0),
                t(2000.0),
                t(2.5),
                t(0.5),
                t(0.0003),
                t(0.00025),
                t(123.456)
            ],
            ["0", "2000", "2.5", "0.5", "0.0003", "0.00025", "123"]
        );
    }

    #[test]
    fn body_is_inside_the_outer_element() {
        let c = Chart {
            width: 1,
            height: 1,
            svg: "<svg a=\"1\">\n<rect/>\n</svg>\n".into(),
        };
        assert_eq!(c.body(), "<rect/>\n");
    }
}
