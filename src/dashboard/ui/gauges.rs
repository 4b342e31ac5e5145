//! The gauges pane: power with provenance, temperatures against their limits, fans, speed,
//! GPU utilisation and VRAM, and sparklines of watts, tok/s and temperature.

use crate::dashboard::state::{App, History, PowerItem, TempItem};
use crate::dashboard::theme::Theme;
use crate::sensors::Source;
use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph, Sparkline};

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
            format!(" / {l:.0}°C"),
            Style::default().fg(theme.dim),
        ));
    }
    Line::from(spans)
}

fn spark(hist: &History, width: u16) -> Vec<u64> {
    let n = usize::from(width);
    let skip = hist.points.len().saturating_sub(n);
    // Tenths keep small values (a 0.4 W idle, 7.5 tok/s) from flattening to zero.
    hist.points
        .iter()
        .skip(skip)
        .map(|v| (v.max(0.0) * 10.0).round() as u64)
        .collect()
}

fn section<'a>(title: &'a str, theme: &Theme) -> Line<'a> {
    Line::styled(
        title,
        Style::default()
            .fg(theme.title)
            .add_modifier(Modifier::BOLD),
    )
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
    let g = &app.gauges;
    let dim = Style::default().fg(theme.dim);

    // Power block: total, parts.
    let mut power: Vec<Line> = Vec::new();
    match &g.total {
        Some(t) => power.push(Line::from(vec![
            Span::styled(
                "Power ",
                Style::default()
                    .fg(theme.title)
                    .add_modifier(Modifier::BOLD),
            ),
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
        None => power.push(Line::from(vec![
            Span::styled(
                "Power ",
                Style::default()
                    .fg(theme.title)
                    .add_modifier(Modifier::BOLD),
            ),
            Span::styled("n/a (no sensor)", dim),
        ])),
    }
    let show_parts = g.total.as_ref().is_some_and(|t| t.label != "Sum") || g.parts.len() > 1;
    if show_parts {
        for p in &g.parts {
            power.push(Line::from(vec![
                Span::raw(format!(" {:<5}", p.label)),
                Span::styled(
                    watts_text(p),
                    Style::default().fg(if p.estimated { theme.warn } else { theme.fg }),
                ),
            ]));
        }
    }

    // Heat block.
    let mut heat: Vec<Line> = vec![section("Heat", theme)];
    if let Some(t) = &g.cpu_temp {
        heat.push(temp_line("CPU", t, theme));
    }
    if let Some(t) = &g.gpu_temp {
        heat.push(temp_line("GPU", t, theme));
    }
    if let Some(rpm) = g.fan_rpm {
        heat.push(Line::from(vec![
            Span::raw(" Fan "),
            Span::styled(format!("{rpm:>5.0} RPM"), Style::default().fg(theme.fg)),
        ]));
    }
    if heat.len() == 1 {
        heat.push(Line::styled(" n/a", dim));
    }

    // Speed block.
    let mut speed: Vec<Line> = vec![section("Speed", theme)];
    let live = app.live_tok_s();
    speed.push(Line::from(vec![
        Span::raw(" now  "),
        Span::styled(
            live.map_or("–".to_string(), |r| format!("{r:.1} tok/s")),
            Style::default()
                .fg(theme.speed)
                .add_modifier(Modifier::BOLD),
        ),
    ]));
    match &app.last_stats {
        Some(s) => {
            speed.push(Line::from(vec![
                Span::raw(" last "),
                Span::styled(
                    format!("{:.1} tok/s", s.gen_tok_s),
                    Style::default().fg(theme.fg),
                ),
                Span::styled(format!(" {} tok", s.generated_tokens), dim),
            ]));
            let prefill = format!(" prefill {:.0} tok/s", s.prefill_tok_s);
            let ttft = format!(" TTFT {:.0} ms", s.ttft_ms);
            if prefill.len() + ttft.len() <= usize::from(inner.width) {
                speed.push(Line::styled(prefill + &ttft, dim));
            } else {
                speed.push(Line::styled(prefill, dim));
                speed.push(Line::styled(ttft, dim));
            }
        }
        None => speed.push(Line::styled(" last –", dim)),
    }

    // Utilisation block.
    let mut util: Vec<Line> = Vec::new();
    let mut parts: Vec<Span> = Vec::new();
    if let Some(u) = g.cpu_util {
        parts.push(Span::raw(format!(" CPU {u:>3.0}%")));
    }
    if let Some(u) = g.gpu_util {
        parts.push(Span::raw(format!(" GPU {u:>3.0}%")));
    }
    if !parts.is_empty() {
        util.push(Line::from(parts));
    }
    if let Some((used, total)) = g.vram {
        util.push(Line::from(vec![
            Span::raw(" VRAM "),
            Span::raw(format!("{:.1}/{:.1} GB", used / 1e9, total / 1e9)),
        ]));
    }

    // Rows left over after text go to the three sparklines, shared evenly.
    let text_rows = (power.len() + heat.len() + speed.len() + util.len()) as u16;
    let spare = inner.height.saturating_sub(text_rows);
    let each = (spare / 3).clamp(0, 4);
    let mut y = inner.y;
    let bottom = inner.bottom();
    let put_lines = |lines: Vec<Line>, y: &mut u16, frame: &mut Frame| {
        let h = (lines.len() as u16).min(bottom.saturating_sub(*y));
        if h > 0 {
            frame.render_widget(
                Paragraph::new(lines),
                Rect::new(inner.x, *y, inner.width, h),
            );
        }
        *y += h;
    };
    let put_spark = |hist: &History, color: Color, y: &mut u16, frame: &mut Frame| {
        let h = each.min(bottom.saturating_sub(*y));
        if h > 0 {
            let w = inner.width.saturating_sub(1);
            frame.render_widget(
                Sparkline::default()
                    .data(spark(hist, w))
                    .style(Style::default().fg(color)),
                Rect::new(inner.x + 1, *y, w, h),
            );
        }
        *y += h;
    };
    put_lines(power, &mut y, frame);
    put_spark(&app.power_hist, theme.power, &mut y, frame);
    put_lines(heat, &mut y, frame);
    put_spark(&app.temp_hist, theme.temp, &mut y, frame);
    put_lines(speed, &mut y, frame);
    put_spark(&app.speed_hist, theme.speed, &mut y, frame);
    put_lines(util, &mut y, frame);
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

    #[test]
    fn sparkline_keeps_the_newest_points_in_tenths() {
        let mut h = History::default();
        for v in [1.0, 2.04, 3.06, -1.0] {
            h.push(v);
        }
        assert_eq!(spark(&h, 3), vec![20, 31, 0]);
    }
}
