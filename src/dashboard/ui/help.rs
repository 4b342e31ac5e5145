//! The F1 help overlay: every action with its (possibly reconfigured) keys, the editing keys,
//! and, where the terminal is tall enough, how to read the gauges.

use crate::config::keys::Action;
use crate::dashboard::state::App;
use crate::dashboard::theme::Theme;
use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Paragraph};

const EDITING: [(&str, &str); 5] = [
    ("Left/Right Home/End", "move in the message"),
    ("Backspace/Delete", "delete a character"),
    ("Ctrl-W", "delete the word before the cursor"),
    ("Up/Down", "earlier messages (history)"),
    ("paste", "multi-line paste goes in as is"),
];

/// How to read the gauges: shown only when it fits, so 80x24 keeps every key visible.
const GAUGES: [(&str, &str); 5] = [
    ("~45 W est.", "estimated from CPU use x TDP, not measured"),
    (
        "sum of parts",
        "GPU + CPU + DRAM sensors: the wall reads more",
    ),
    ("77°C / 100°C", "hottest sensor and where it throttles"),
    (
        "now / last",
        "live tok/s; the last reply's rate, prefill, TTFT",
    ),
    ("Session Wh", "energy since start, its cost, and all-time"),
];

pub fn draw(app: &App, theme: &Theme, frame: &mut Frame, area: Rect) {
    let key_style = Style::default()
        .fg(theme.accent)
        .add_modifier(Modifier::BOLD);
    let desc = Style::default().fg(theme.fg);
    let key_w = Action::ALL
        .iter()
        .map(|a| app.keys.keys_for(*a).chars().count())
        .chain(EDITING.iter().map(|(k, _)| k.len()))
        .max()
        .unwrap_or(10);
    let mut lines: Vec<Line> = Vec::new();
    for a in Action::ALL {
        lines.push(Line::from(vec![
            Span::styled(format!(" {:<key_w$}  ", app.keys.keys_for(a)), key_style),
            Span::styled(a.describe(), desc),
        ]));
    }
    lines.push(Line::from(""));
    for (k, d) in EDITING {
        lines.push(Line::from(vec![
            Span::styled(format!(" {k:<key_w$}  "), key_style),
            Span::styled(d, desc),
        ]));
    }
    // Keys first; the legend only when it fits in full (borders and a margin included).
    if usize::from(area.height) >= lines.len() + GAUGES.len() + 1 + 4 {
        lines.push(Line::from(""));
        for (k, d) in GAUGES {
            lines.push(Line::from(vec![
                Span::styled(format!(" {k:<key_w$}  "), key_style),
                Span::styled(d, desc),
            ]));
        }
    }
    let want_w = lines.iter().map(Line::width).max().unwrap_or(40) as u16 + 3;
    let w = want_w.min(area.width.saturating_sub(2));
    let h = (lines.len() as u16 + 2).min(area.height.saturating_sub(2));
    let rect = Rect::new(
        area.x + (area.width - w) / 2,
        area.y + (area.height - h) / 2,
        w,
        h,
    );
    frame.render_widget(Clear, rect);
    frame.render_widget(
        Paragraph::new(lines)
            .style(Style::default().fg(theme.fg).bg(theme.bg))
            .block(
                Block::default()
                    .borders(Borders::ALL)
                    .border_style(Style::default().fg(theme.accent))
                    .title(Span::styled(
                        " Keys · F1 or Esc closes ",
                        Style::default()
                            .fg(theme.title)
                            .add_modifier(Modifier::BOLD),
                    )),
            ),
        rect,
    );
}
