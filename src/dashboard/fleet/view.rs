//! Drawing the remote view: a pure function of the view and the theme.

use super::FleetView;
use crate::accounting::pricing::{Currency, format_j_per_token, format_money};
use crate::dashboard::history::History;
use crate::dashboard::theme::Theme;
use crate::dashboard::ui::chart::{self, ChartSpec, TimeFrame};
use crate::export::scrape::{HostStatus, RemoteHost};
use crate::util::sanitize;
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Cell, Paragraph, Row, Table};

/// The host as the table names it: the URL without its scheme.
pub fn host_name(h: &RemoteHost) -> String {
    let bare = h.url.split_once("://").map_or(h.url.as_str(), |(_, r)| r);
    sanitize::terminal(bare).into_owned()
}

fn watts(w: Option<f64>) -> String {
    w.filter(|w| w.is_finite())
        .map_or("-".into(), |w| format!("{w:.1} W"))
}

fn money_per_hour(c: Option<(f64, String)>) -> String {
    match c {
        Some((amount, code)) => match Currency::new(&code) {
            Ok(cur) => format!("{}/h", format_money(amount, &cur)),
            Err(_) => format!("{amount:.4} {}/h", sanitize::terminal(&code)),
        },
        None => "-".into(),
    }
}

/// (status text, is it a problem).
fn status(h: &RemoteHost) -> (String, bool) {
    match &h.status {
        HostStatus::Waiting => ("waiting".into(), false),
        HostStatus::Up => ("up".into(), false),
        // The row names the host already: the reason without the URL in front.
        HostStatus::Down(why) => {
            let reason = why
                .split_once(": ")
                .filter(|(url, _)| url.starts_with(&h.url))
                .map_or(why.as_str(), |(_, r)| r);
            (format!("down: {}", sanitize::terminal(reason)), true)
        }
    }
}

/// The whole screen.
pub fn draw(view: &FleetView, theme: &Theme, f: &mut Frame) {
    let area = f.area();
    f.render_widget(
        Block::default().style(Style::default().fg(theme.fg).bg(theme.bg)),
        area,
    );
    let several = view.hosts.len() > 1;
    let table_rows = if several {
        (view.hosts.len() as u16 + 3).min(area.height / 2)
    } else {
        0
    };
    let [header, table, detail, footer] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(table_rows),
        Constraint::Min(0),
        Constraint::Length(1),
    ])
    .areas(area);
    let up = view
        .hosts
        .iter()
        .filter(|h| h.status == HostStatus::Up)
        .count();
    f.render_widget(
        Paragraph::new(format!(
            " llmtop remote · {} of {} hosts up",
            up,
            view.hosts.len()
        ))
        .style(Style::default().fg(theme.header_fg).bg(theme.header_bg)),
        header,
    );
    if several {
        draw_table(view, theme, f, table);
    }
    if let Some(h) = view.hosts.get(view.selected) {
        draw_host(h, view.now, theme, f, detail);
    }
    let keys = if several {
        " ↑/↓ select host · q quit"
    } else {
        " q quit"
    };
    f.render_widget(
        Paragraph::new(keys).style(Style::default().fg(theme.footer_fg).bg(theme.footer_bg)),
        footer,
    );
}

fn draw_table(view: &FleetView, theme: &Theme, f: &mut Frame, area: Rect) {
    let head = Row::new([
        "host", "status", "power", "tok/s", "J/token", "cost", "hottest",
    ])
    .style(
        Style::default()
            .fg(theme.title)
            .add_modifier(Modifier::BOLD),
    );
    let rows = view.hosts.iter().enumerate().map(|(i, h)| {
        let (st, bad) = status(h);
        let last = h.last.as_ref();
        let hottest = h.hottest().map_or("-".into(), |(_, c)| format!("{c:.0}°C"));
        let mut row = Row::new(vec![
            Cell::from(host_name(h)),
            Cell::from(st).style(Style::default().fg(if bad { theme.bad } else { theme.good })),
            Cell::from(watts(last.and_then(|s| s.system_w.as_ref().map(|p| p.0)))),
            Cell::from(h.tok_s().map_or("-".into(), |r| format!("{r:.1}"))),
            Cell::from(h.j_per_token().map_or("-".into(), format_j_per_token)),
            Cell::from(money_per_hour(h.cost_per_hour())),
            Cell::from(hottest),
        ]);
        if i == view.selected {
            row = row.style(Style::default().add_modifier(Modifier::REVERSED));
        }
        row
    });
    let widths = [
        Constraint::Fill(2),
        Constraint::Fill(3),
        Constraint::Length(9),
        Constraint::Length(6),
        Constraint::Length(11),
        Constraint::Length(12),
        Constraint::Length(7),
    ];
    f.render_widget(
        Table::new(rows, widths).header(head).block(
            Block::default()
                .borders(Borders::ALL)
                .border_style(Style::default().fg(theme.border))
                .title(Span::styled(" Hosts ", Style::default().fg(theme.title))),
        ),
        area,
    );
}

fn block<'a>(title: String, theme: &Theme) -> Block<'a> {
    Block::default()
        .borders(Borders::ALL)
        .border_style(Style::default().fg(theme.border))
        .title(Span::styled(title, Style::default().fg(theme.title)))
}

fn draw_host(h: &RemoteHost, now: f64, theme: &Theme, f: &mut Frame, area: Rect) {
    let name = host_name(h);
    // The gauges as tall as their longest list; the charts take the rest.
    let rows = h.last.as_ref().map_or(2, |s| {
        (s.channels.len() + 2)
            .max(s.temps.len() + s.fans.len())
            .max(6)
    }) as u16;
    let [gauges, charts] = Layout::vertical([
        Constraint::Length((rows + 2).min(area.height.saturating_sub(5))),
        Constraint::Min(0),
    ])
    .areas(area);
    let [power, heat, rates] = Layout::horizontal([
        Constraint::Percentage(40),
        Constraint::Percentage(30),
        Constraint::Percentage(30),
    ])
    .areas(gauges);

    let dim = Style::default().fg(theme.dim);
    let mut lines = Vec::new();
    if let HostStatus::Down(why) = &h.status {
        lines.push(Line::styled(
            format!("down: {}", sanitize::terminal(why)),
            Style::default().fg(theme.bad),
        ));
    }
    let Some(s) = &h.last else {
        if lines.is_empty() {
            lines.push(Line::styled("waiting for the first scrape", dim));
        }
        f.render_widget(
            Paragraph::new(lines)
                .wrap(ratatui::widgets::Wrap { trim: true })
                .block(block(format!(" {name} "), theme)),
            gauges,
        );
        return;
    };
    if let Some((w, basis)) = &s.system_w {
        lines.push(Line::from(vec![
            Span::styled(
                format!("{:>9}", watts(Some(*w))),
                Style::default()
                    .fg(theme.power)
                    .add_modifier(Modifier::BOLD),
            ),
            Span::raw(format!(" whole machine ({})", sanitize::terminal(basis))),
        ]));
    }
    for c in &s.channels {
        lines.push(Line::from(vec![
            Span::styled(
                format!("{:>9}", watts(Some(c.watts))),
                Style::default().fg(theme.power),
            ),
            Span::raw(format!(" {}", sanitize::terminal(&c.label))),
            Span::styled(
                format!(
                    " {} · {}{}",
                    sanitize::terminal(&c.source),
                    sanitize::terminal(&c.covers),
                    if c.method == "estimated" {
                        " · est."
                    } else {
                        ""
                    }
                ),
                dim,
            ),
        ]));
    }
    f.render_widget(
        Paragraph::new(lines).block(block(format!(" Power · {name} "), theme)),
        power,
    );

    let mut heat_lines: Vec<Line> = s
        .temps
        .iter()
        .map(|(n, c)| {
            Line::from(vec![
                Span::styled(format!("{c:>5.1}°C "), Style::default().fg(theme.temp)),
                Span::raw(sanitize::terminal(n).into_owned()),
            ])
        })
        .collect();
    heat_lines.extend(s.fans.iter().map(|(n, rpm)| {
        Line::from(vec![
            Span::styled(
                format!("{rpm:>5.0} RPM "),
                Style::default().fg(theme.accent),
            ),
            Span::raw(sanitize::terminal(n).into_owned()),
        ])
    }));
    if heat_lines.is_empty() {
        heat_lines.push(Line::styled("no temperature or fan reported", dim));
    }
    f.render_widget(
        Paragraph::new(heat_lines).block(block(" Heat ".into(), theme)),
        heat,
    );

    let row = |label: &str, value: String| {
        Line::from(vec![
            Span::styled(format!("{label:<10}"), dim),
            Span::raw(value),
        ])
    };
    let mut rate_lines = vec![
        row(
            "tok/s now",
            s.tok_s.map_or("-".into(), |r| format!("{r:.1}")),
        ),
        row(
            "tok/s 1 m",
            h.tok_s().map_or("-".into(), |r| format!("{r:.1}")),
        ),
        row(
            "J/token",
            h.j_per_token().map_or("-".into(), format_j_per_token),
        ),
        row("cost", money_per_hour(h.cost_per_hour())),
    ];
    if let Some(m) = &s.model {
        rate_lines.push(row("model", sanitize::terminal(m).into_owned()));
    }
    if let Some(v) = &s.version {
        rate_lines.push(row("llmtop", sanitize::terminal(v).into_owned()));
    }
    f.render_widget(
        Paragraph::new(rate_lines).block(block(" Rates ".into(), theme)),
        rates,
    );

    // The same charts as the dashboard's: power and tok/s over the last minutes.
    let mut power_hist = History::default();
    let mut rate_hist = History::default();
    for (t, w, r) in &h.history {
        power_hist.push(*t, *w);
        rate_hist.push(*t, *r);
    }
    let span = power_hist.first().map_or(0.0, |(t0, _)| now - t0);
    let frame = TimeFrame::new(now, span);
    let [left, right] =
        Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)]).areas(charts);
    for (area, title, spec) in [
        (
            left,
            " Power ",
            ChartSpec {
                hist: &power_hist,
                unit: "W",
                min_scale: 10.0,
                color: theme.power,
                limit: None,
            },
        ),
        (
            right,
            " Tokens/s ",
            ChartSpec {
                hist: &rate_hist,
                unit: "tok/s",
                min_scale: 1.0,
                color: theme.speed,
                limit: None,
            },
        ),
    ] {
        let b = block(title.into(), theme);
        let inner = b.inner(area);
        f.render_widget(b, area);
        if inner.height >= chart::MIN_ROWS {
            chart::draw(&spec, frame, theme, f, inner);
        }
    }
}
