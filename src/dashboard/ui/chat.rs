//! The chat pane: scrollback of the conversation, the load gauge, and the input box.

use crate::dashboard::layout::Areas;
pub use crate::dashboard::layout::{InputLayout, Row, RowKind, input_layout, rows, wrap};
use crate::dashboard::state::{App, EngineState};
use crate::dashboard::theme::Theme;
use crate::util::sanitize;
use ratatui::Frame;
use ratatui::layout::Position;
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, LineGauge, Paragraph};

pub fn draw(app: &App, theme: &Theme, frame: &mut Frame, areas: &Areas) {
    let border = Style::default().fg(theme.border);
    let title_style = Style::default()
        .fg(theme.title)
        .add_modifier(Modifier::BOLD);

    // Scrollback.
    let all = rows(app, areas.messages.width);
    let h = usize::from(areas.messages.height);
    let max_scroll = all.len().saturating_sub(h);
    let scroll = app.scroll.min(max_scroll);
    let end = all.len() - scroll;
    let start = end.saturating_sub(h);
    let mut title = vec![Span::styled(" Chat ", title_style)];
    if scroll > 0 {
        title.push(Span::styled(
            format!("↑{scroll} lines "),
            Style::default().fg(theme.dim),
        ));
    }
    frame.render_widget(
        Block::default()
            .borders(Borders::ALL)
            .border_style(border)
            .title(Line::from(title)),
        areas.chat,
    );
    let lines: Vec<Line> = all[start..end]
        .iter()
        .map(|r| {
            let style = match r.kind {
                RowKind::UserLabel => Style::default().fg(theme.user).add_modifier(Modifier::BOLD),
                RowKind::AssistantLabel => Style::default()
                    .fg(theme.assistant)
                    .add_modifier(Modifier::BOLD),
                RowKind::User => Style::default().fg(theme.fg),
                RowKind::Assistant => Style::default().fg(theme.fg),
                RowKind::Notice => Style::default()
                    .fg(theme.warn)
                    .add_modifier(Modifier::ITALIC),
                RowKind::Stats | RowKind::Blank => Style::default().fg(theme.dim),
            };
            Line::styled(r.text.clone(), style)
        })
        .collect();
    if lines.is_empty() && areas.messages.height > 0 {
        let hint = Paragraph::new(vec![
            Line::from(""),
            Line::styled(
                "Ask the model something and watch what it costs.",
                Style::default().fg(theme.dim),
            ),
        ])
        .wrap(ratatui::widgets::Wrap { trim: true });
        frame.render_widget(hint, areas.messages);
    } else {
        frame.render_widget(Paragraph::new(lines), areas.messages);
    }

    // Load gauge (or load error), between scrollback and input.
    if areas.load.height > 0 {
        match &app.engine {
            EngineState::Failed(e) => frame.render_widget(
                Paragraph::new(Line::styled(
                    format!("model failed to load: {}", sanitize::terminal(e)),
                    Style::default().fg(theme.bad),
                )),
                areas.load,
            ),
            EngineState::Loading(p) => frame.render_widget(
                LineGauge::default()
                    .ratio(f64::from(*p).clamp(0.0, 1.0))
                    .label(format!("loading model {:>3.0}% ", p * 100.0))
                    .filled_style(Style::default().fg(theme.accent))
                    .unfilled_style(Style::default().fg(theme.border)),
                areas.load,
            ),
            _ => {}
        }
    }

    // Input box.
    let inner_w = areas.input.width.saturating_sub(2);
    let lay = input_layout(&app.input, inner_w);
    let visible = areas.input.height.saturating_sub(2);
    let first = lay
        .cursor
        .1
        .saturating_sub(visible.saturating_sub(1))
        .min(lay.rows.saturating_sub(visible));
    let input_title = match (&app.engine, &app.pending) {
        (EngineState::Loading(_), Some(_)) => " Message (queued until loaded) ",
        _ => " Message ",
    };
    let block = Block::default()
        .borders(Borders::ALL)
        .border_style(Style::default().fg(theme.accent))
        .title(Span::styled(input_title, title_style));
    let inner = block.inner(areas.input);
    frame.render_widget(block, areas.input);
    if app.input.text.is_empty() {
        let hint = if inner_w >= 44 {
            "Type here · Enter send · Alt-Enter newline"
        } else {
            "Type here · Enter send"
        };
        frame.render_widget(
            Paragraph::new(Line::styled(hint, Style::default().fg(theme.dim))),
            inner,
        );
    } else {
        let shown: Vec<Line> = lay
            .lines
            .iter()
            .skip(usize::from(first))
            .take(usize::from(visible))
            .map(|l| Line::from(l.clone()))
            .collect();
        frame.render_widget(Paragraph::new(shown), inner);
    }
    if !app.show_help {
        let (cx, cy) = lay.cursor;
        frame.set_cursor_position(Position::new(
            inner.x.saturating_add(cx.min(inner_w.saturating_sub(1))),
            inner.y.saturating_add(cy.saturating_sub(first)),
        ));
    }
}
