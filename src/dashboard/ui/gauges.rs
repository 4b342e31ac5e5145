//! The gauges pane: power with provenance, temperatures against their limits, speed, and
//! btop-like charts of each over the last minutes; utilisation, VRAM and fans as figures. Only
//! what the machine has is shown, and what matters most goes in first when rows are short.

use super::chart::{self, ChartSpec, TimeFrame};
use crate::dashboard::history::part_keys;
use crate::dashboard::state::{App, PowerItem, TempItem};
use crate::dashboard::theme::Theme;
use crate::sensors::Source;
use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph};

/// Short provenance mark shown after a watt figure.
pub fn source_mark(source: Source) -> &'static str {
    match source {
        Source::Nvml => "nvml",
        Source::Rapl => "rapl",
        Source::Hwmon => "hwmon",
        Source::Battery => "batt",
        Source::Plug => "plug",
        Source::Estimate => "est.",
        Source::System => "sum",
    }
}

/// "45.2 W" measured, "~45 W est." estimated: an estimate never looks like a measurement.
pub fn watts_text(p: &PowerItem) -> String {
    if p.estimated {
        format!("~{:.0} W est.", p.watts)
    } else {
        format!("{:.1} W {}", p.watts, source_mark(p.source))
    }
}

/// The total: its provenance is spelled out beside it, so only the estimate mark goes here.
pub fn total_text(p: &PowerItem) -> String {
    if p.estimated {
        format!("~{:.0} W est.", p.watts)
    } else {
        format!("{:.1} W", p.watts)
    }
}

fn temp_line<'a>(name: &'a str, t: &TempItem, theme: &Theme) -> Line<'a> {
    let ratio = t.limit.map(|l| t.celsius / l.max(1.0));
    let color = match ratio {
        Some(r) if r >= 0.9 => theme.bad,
        Some(r) if r >= 0.75 => theme.warn,
        _ => theme.good,
    };
    let mut spans = vec![
        Span::raw(format!(" {name:<4}")),
        Span::styled(
            format!("{:>3.0}°C", t.celsius),
            Style::default().fg(color).add_modifier(Modifier::BOLD),
        ),
    ];
    if let Some(l) = t.limit {
        spans.push(Span::styled(
            format!("  limit {l:.0}°C"),
            Style::default().fg(theme.dim),
        ));
    }
    Line::from(spans)
}

fn title<'a>(text: &'a str, theme: &Theme) -> Span<'a> {
    Span::styled(
        text,
        Style::default()
            .fg(theme.title)
            .add_modifier(Modifier::BOLD),
    )
}

/// One thing the pane can show: a line of figures or a chart.
enum Piece<'a> {
    Text(Line<'a>),
    Chart(ChartSpec<'a>),
}

/// How much a piece matters: lower goes in first when rows are short.
mod prio {
    /// The figures themselves: total power, each source, temperatures, speed.
    pub const FIGURE: u8 = 0;
    /// The charts every machine has: total power and speed.
    pub const MAIN_CHART: u8 = 1;
    /// A chart of temperature against its limit.
    pub const TEMP_CHART: u8 = 2;
    /// Utilisation, VRAM, fans.
    pub const DETAIL: u8 = 3;
    /// Charts of each power source when there are several.
    pub const PART_CHART: u8 = 4;
    /// Prefill rate and time to first token.
    pub const EXTRA: u8 = 5;
}

/// A piece's wish: rows it needs at least, its priority, whether it takes spare rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Want {
    pub min: u16,
    pub prio: u8,
    pub grows: bool,
}

/// Rows for each piece (0: left out) within `height`. Pieces go in by priority, in order,
/// while they fit; the rows left over go to the growing pieces in turn, most important first,
/// so charts fill the pane.
pub fn plan(wants: &[Want], height: u16) -> Vec<u16> {
    let mut rows = vec![0u16; wants.len()];
    let mut order: Vec<usize> = (0..wants.len()).collect();
    order.sort_by_key(|&i| wants[i].prio);
    let mut left = height;
    for &i in &order {
        if wants[i].min <= left {
            rows[i] = wants[i].min;
            left -= wants[i].min;
        }
    }
    let growing: Vec<usize> = order
        .into_iter()
        .filter(|&i| rows[i] > 0 && wants[i].grows)
        .collect();
    while left > 0 && !growing.is_empty() {
        for &i in &growing {
            if left == 0 {
                break;
            }
            rows[i] += 1;
            left -= 1;
        }
    }
    rows
}

/// Short figures packed into lines no wider than `width`.
fn pack<'a>(items: Vec<String>, width: u16, style: Style) -> Vec<Line<'a>> {
    let mut lines: Vec<String> = Vec::new();
    for item in items {
        match lines.last_mut() {
            Some(l) if l.chars().count() + 2 + item.chars().count() <= usize::from(width) => {
                l.push_str("  ");
                l.push_str(&item);
            }
            _ => lines.push(format!(" {item}")),
        }
    }
    lines.into_iter().map(|l| Line::styled(l, style)).collect()
}

/// The pieces of the pane in the order they are shown, each with its priority. Only what the
/// machine has: no sensor, no row.
/// The attached server's share beside the machine's total: " server 23 W · 1.2 Wh attrib."
/// (power over the latest split interval, energy since it was found); the F1 help says what it
/// covers and how it is split.
fn server_share_line<'a>(app: &App, theme: &Theme) -> Option<Line<'a>> {
    let s = app.server_share.as_ref()?;
    let watts = s
        .watts_now
        .map_or_else(|| "… W".to_string(), |w| format!("{w:.1} W"));
    Some(Line::from(vec![
        Span::raw(" server "),
        Span::styled(watts, Style::default().fg(theme.fg)),
        Span::styled(
            format!(
                " · {} attrib.",
                crate::accounting::pricing::format_energy(s.joules)
            ),
            Style::default().fg(theme.dim),
        ),
    ]))
}

fn pieces<'a>(app: &'a App, theme: &Theme, width: u16) -> Vec<(Piece<'a>, u8)> {
    let g = &app.gauges;
    let h = &app.hist;
    let dim = Style::default().fg(theme.dim);
    let mut out: Vec<(Piece, u8)> = Vec::new();
    let text = |l: Line<'a>| Piece::Text(l);

    // Power: the total on its basis, then each source when there are several (or the total
    // is a wall or battery figure the sources sit inside).
    match &g.total {
        Some(t) => {
            out.push((
                text(Line::from(vec![
                    title("Power ", theme),
                    Span::styled(
                        total_text(t),
                        Style::default()
                            .fg(theme.power)
                            .add_modifier(Modifier::BOLD),
                    ),
                    Span::styled(
                        match t.label.as_str() {
                            "Sum" if g.parts.len() == 1 => format!(" {}", g.parts[0].label),
                            "Sum" => " sum of parts".to_string(),
                            "Wall" => format!(" wall {}", source_mark(t.source)),
                            other => format!(" {}", other.to_lowercase()),
                        },
                        dim,
                    ),
                ])),
                prio::FIGURE,
            ));
            if !h.power.is_empty() {
                out.push((
                    Piece::Chart(ChartSpec {
                        hist: &h.power,
                        unit: "W",
                        min_scale: 1.0,
                        color: theme.power,
                        limit: None,
                    }),
                    prio::MAIN_CHART,
                ));
            }
        }
        // Said once samples arrive, so start-up does not claim a sensor is missing.
        None if h.now.is_some() => out.push((
            text(Line::from(vec![
                title("Power ", theme),
                Span::styled("no sensor (F1 says why)", dim),
            ])),
            prio::FIGURE,
        )),
        None => {}
    }
    if let Some(line) = server_share_line(app, theme) {
        out.push((text(line), prio::FIGURE));
    }
    let show_parts = g.total.as_ref().is_some_and(|t| t.label != "Sum") || g.parts.len() > 1;
    if show_parts {
        let keys = part_keys(g.parts.iter().map(|p| p.label.as_str()));
        for (p, key) in g.parts.iter().zip(keys) {
            out.push((
                text(Line::from(vec![
                    Span::raw(format!(" {:<5}", p.label)),
                    Span::styled(
                        watts_text(p),
                        Style::default().fg(if p.estimated { theme.warn } else { theme.fg }),
                    ),
                ])),
                prio::FIGURE,
            ));
            if let Some(hist) = h.part(&key) {
                out.push((
                    Piece::Chart(ChartSpec {
                        hist,
                        unit: "W",
                        min_scale: 1.0,
                        color: theme.power,
                        limit: None,
                    }),
                    prio::PART_CHART,
                ));
            }
        }
    }

    // Temperatures, each against its own limit.
    for (name, t, hist) in [
        ("CPU", &g.cpu_temp, &h.cpu_temp),
        ("GPU", &g.gpu_temp, &h.gpu_temp),
    ] {
        let Some(t) = t else { continue };
        out.push((text(temp_line(name, t, theme)), prio::FIGURE));
        if hist.is_empty() {
            continue;
        }
        out.push((
            Piece::Chart(ChartSpec {
                hist,
                unit: "°C",
                min_scale: 10.0,
                color: theme.temp,
                limit: t.limit,
            }),
            prio::TEMP_CHART,
        ));
    }

    // Utilisation, memory and fans: short figures, packed.
    let mut details = Vec::new();
    if let Some(u) = g.cpu_util {
        details.push(format!("CPU {u:.0}%"));
    }
    if let Some(u) = g.gpu_util {
        details.push(format!("GPU {u:.0}%"));
    }
    if let Some((used, total)) = g.vram {
        details.push(format!("VRAM {:.1}/{:.1} GB", used / 1e9, total / 1e9));
    }
    if let Some(rpm) = g.fan_rpm {
        details.push(format!("Fan {rpm:.0} RPM"));
    }
    for l in pack(details, width, Style::default().fg(theme.fg)) {
        out.push((text(l), prio::DETAIL));
    }

    // Speed: live while a reply streams, else the last reply's.
    let speed = Style::default()
        .fg(theme.speed)
        .add_modifier(Modifier::BOLD);
    let last = app.last_stats.as_ref();
    let mut caption = vec![title("Speed ", theme)];
    match (app.live_tok_s(), last) {
        (Some(r), _) => {
            caption.push(Span::raw("now "));
            caption.push(Span::styled(format!("{r:.1} tok/s"), speed));
        }
        (None, Some(s)) => {
            caption.push(Span::raw("last "));
            caption.push(Span::styled(format!("{:.1} tok/s", s.gen_tok_s), speed));
            caption.push(Span::styled(format!(" {} tok", s.generated_tokens), dim));
        }
        (None, None) => caption.push(Span::styled("no reply yet", dim)),
    }
    out.push((text(Line::from(caption)), prio::FIGURE));
    if let (Some(_), Some(s)) = (app.live_tok_s(), last) {
        out.push((
            text(Line::from(vec![
                Span::raw(" last "),
                Span::styled(
                    format!("{:.1} tok/s", s.gen_tok_s),
                    Style::default().fg(theme.fg),
                ),
                Span::styled(format!(" {} tok", s.generated_tokens), dim),
            ])),
            prio::FIGURE,
        ));
    }
    // A chart once there is history to draw (none before the first sample).
    if !h.speed.is_empty() {
        out.push((
            Piece::Chart(ChartSpec {
                hist: &h.speed,
                unit: "tok/s",
                min_scale: 1.0,
                color: theme.speed,
                limit: None,
            }),
            prio::MAIN_CHART,
        ));
    }
    if let Some(s) = last {
        let prefill = format!(" prefill {:.0} tok/s", s.prefill_tok_s);
        let ttft = format!(" TTFT {:.0} ms", s.ttft_ms);
        if prefill.len() + ttft.len() <= usize::from(width) {
            out.push((text(Line::styled(prefill + &ttft, dim)), prio::EXTRA));
        } else {
            out.push((text(Line::styled(ttft, dim)), prio::EXTRA));
        }
    }
    out
}

pub fn draw(app: &App, theme: &Theme, frame: &mut Frame, area: Rect) {
    let block = Block::default()
        .borders(Borders::ALL)
        .border_style(Style::default().fg(theme.border))
        .title(Span::styled(
            " Gauges ",
            Style::default()
                .fg(theme.title)
                .add_modifier(Modifier::BOLD),
        ));
    let inner = block.inner(area);
    frame.render_widget(block, area);
    if inner.is_empty() {
        return;
    }
    let pieces = pieces(app, theme, inner.width);
    let wants: Vec<Want> = pieces
        .iter()
        .map(|(p, prio)| match p {
            Piece::Text(_) => Want {
                min: 1,
                prio: *prio,
                grows: false,
            },
            Piece::Chart(_) => Want {
                min: chart::MIN_ROWS,
                prio: *prio,
                grows: true,
            },
        })
        .collect();
    let rows = plan(&wants, inner.height);
    let time = TimeFrame::new(app.hist.now.unwrap_or(0.0), app.hist.span());
    let mut y = inner.y;
    for ((piece, _), h) in pieces.into_iter().zip(rows) {
        if h == 0 {
            continue;
        }
        let r = Rect::new(inner.x, y, inner.width, h);
        match piece {
            Piece::Text(line) => frame.render_widget(Paragraph::new(line), r),
            Piece::Chart(spec) => chart::draw(&spec, time, theme, frame, r),
        }
        y += h;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn estimates_never_look_measured() {
        let est = PowerItem {
            label: "CPU".into(),
            watts: 44.6,
            source: Source::Estimate,
            estimated: true,
        };
        assert_eq!(watts_text(&est), "~45 W est.");
        let m = PowerItem {
            label: "GPU".into(),
            watts: 123.45,
            source: Source::Nvml,
            estimated: false,
        };
        assert_eq!(watts_text(&m), "123.5 W nvml");
    }

    fn want(min: u16, prio: u8, grows: bool) -> Want {
        Want { min, prio, grows }
    }

    #[test]
    fn plan_fits_by_priority_and_gives_spare_rows_to_charts() {
        let wants = [
            want(1, 0, false), // caption
            want(3, 1, true),  // main chart
            want(1, 3, false), // detail
            want(3, 2, true),  // temp chart
            want(1, 5, false), // extra
        ];
        // Room for everything, 6 spare rows: the charts share them, the first gets the odd one.
        assert_eq!(plan(&wants, 14), vec![1, 6, 1, 5, 1]);
        // Seven rows: the caption and both charts; no room for the detail line left.
        assert_eq!(plan(&wants, 7), vec![1, 3, 0, 3, 0]);
        assert_eq!(plan(&wants, 8), vec![1, 3, 1, 3, 0]);
        // Too small for a chart: the figures still show.
        assert_eq!(plan(&wants, 2), vec![1, 0, 1, 0, 0]);
        assert_eq!(plan(&wants, 0), vec![0; 5]);
    }
}
