//! The model picker (`--attach`): the server's models, the one in use marked, what it has
//! loaded and where beside each.

use crate::dashboard::state::App;
use crate::dashboard::theme::Theme;
use crate::util::sanitize;
use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};

/// One row: "● llama3.2:latest  62 % on GPU" (the dot marks the model in use).
pub fn row_text(app: &App, name: &str) -> String {
    let Some(b) = &app.backend else {
        return String::new();
    };
    let mark = if name == b.current { "●" } else { " " };
    let loaded = b.loaded.iter().find(|l| l.name == name).map(|l| {
        l.placement()
            .map_or_else(|| "loaded".to_string(), |p| format!("loaded, {p}"))
    });
    let name = sanitize::terminal(name);
    match loaded {
        Some(l) => format!("{mark} {name}  ({l})"),
        None => format!("{mark} {name}"),
    }
}

pub fn draw(app: &App, theme: &Theme, frame: &mut Frame, area: Rect) {
    let (Some(sel), Some(b)) = (app.picker, &app.backend) else {
        return;
    };
    let rows: Vec<String> = b.models.iter().map(|m| row_text(app, m)).collect();
    // As many rows as fit, scrolled so the highlighted one shows.
    let fit = usize::from(area.height.saturating_sub(6)).max(1);
    let first = sel.saturating_sub(fit.saturating_sub(1));
    let mut lines: Vec<Line> = Vec::new();
    for (i, r) in rows.iter().enumerate().skip(first).take(fit) {
        let style = if i == sel {
            Style::default()
                .fg(theme.bg)
                .bg(theme.accent)
                .add_modifier(Modifier::BOLD)
        } else {
            Style::default().fg(theme.fg)
        };
        lines.push(Line::from(Span::styled(format!(" {r} "), style)));
    }
    let title = " Model · ↑↓ Enter picks · Esc closes ";
    let want_w = lines
        .iter()
        .map(Line::width)
        .max()
        .unwrap_or(20)
        .max(title.chars().count()) as u16
        + 2;
    super::help::overlay(theme, frame, area, title, lines, want_w);
}
