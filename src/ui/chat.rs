//! The chat pane: scrollback of the conversation, the load gauge, and the input box.

use super::Areas;
use crate::app::{App, EngineState, Input, Role};
use crate::theme::Theme;
use ratatui::Frame;
use ratatui::layout::Position;
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, LineGauge, Paragraph};
use unicode_width::UnicodeWidthChar;

/// What a row of the scrollback is, for styling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowKind {
    UserLabel,
    AssistantLabel,
    User,
    Assistant,
    Notice,
    Stats,
    Blank,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub kind: RowKind,
    pub text: String,
}

const INDENT: &str = "  ";
/// Shown at the end of the reply while it streams.
const STREAM_CURSOR: char = '▍';

/// Word-wrap `text` to `width` columns; words longer than a line are broken.
pub fn wrap(text: &str, width: usize) -> Vec<String> {
    let width = width.max(1);
    let mut out = Vec::new();
    for para in text.split('\n') {
        let mut line = String::new();
        let mut line_w = 0usize;
        // Byte index in `line` just after the last space, and the width before it.
        let mut last_space: Option<(usize, usize)> = None;
        for ch in para.chars() {
            let cw = ch.width().unwrap_or(0);
            if line_w + cw > width && !line.is_empty() {
                match last_space {
                    Some((cut, cut_w)) if ch != ' ' => {
                        let rest = line.split_off(cut);
                        out.push(line.trim_end().to_string());
                        line = rest;
                        line_w -= cut_w;
                    }
                    _ => {
                        out.push(line.trim_end().to_string());
                        line = String::new();
                        line_w = 0;
                    }
                }
                last_space = None;
                if ch == ' ' && line.is_empty() {
                    continue;
                }
            }
            line.push(ch);
            line_w += cw;
            if ch == ' ' {
                last_space = Some((line.len(), line_w));
            }
        }
        out.push(line);
    }
    out
}

fn stats_line(s: &crate::engine::ReplyStats) -> String {
    let mut t = format!(
        "{} tok · {:.1} tok/s · TTFT {:.0} ms",
        s.generated_tokens, s.gen_tok_s, s.ttft_ms
    );
    if s.stop != crate::engine::StopReason::EndOfGeneration {
        t.push_str(&format!(" · {}", s.stop));
    }
    t
}

/// The scrollback as rows `width` columns wide.
pub fn rows(app: &App, width: u16) -> Vec<Row> {
    let w = usize::from(width).saturating_sub(INDENT.len()).max(1);
    let mut out = Vec::new();
    let n = app.messages.len();
    for (i, m) in app.messages.iter().enumerate() {
        let streaming = i + 1 == n && m.role == Role::Assistant && app.engine.busy();
        let (label, label_kind, kind) = match m.role {
            Role::User => ("You", RowKind::UserLabel, RowKind::User),
            Role::Assistant => ("Model", RowKind::AssistantLabel, RowKind::Assistant),
            Role::Notice => ("", RowKind::Notice, RowKind::Notice),
        };
        if !label.is_empty() {
            out.push(Row {
                kind: label_kind,
                text: label.into(),
            });
        }
        let mut text = m.text.trim_start_matches('\n').to_string();
        if streaming {
            if text.is_empty() && matches!(app.engine, EngineState::Prefill) {
                text.push('…');
            }
            text.push(STREAM_CURSOR);
        }
        let body_w = if m.role == Role::Notice {
            usize::from(width).max(1)
        } else {
            w
        };
        for l in wrap(text.trim_end(), body_w) {
            out.push(Row {
                kind,
                text: if m.role == Role::Notice {
                    l
                } else {
                    format!("{INDENT}{l}")
                },
            });
        }
        if let Some(s) = &m.stats {
            for l in wrap(&stats_line(s), w) {
                out.push(Row {
                    kind: RowKind::Stats,
                    text: format!("{INDENT}{l}"),
                });
            }
        }
        if i + 1 < n {
            out.push(Row {
                kind: RowKind::Blank,
                text: String::new(),
            });
        }
    }
    out
}

/// The input text laid out in its box: hard-wrapped rows and where the cursor lands.
pub struct InputLayout {
    pub lines: Vec<String>,
    pub rows: u16,
    /// (column, row) of the cursor within the laid-out text.
    pub cursor: (u16, u16),
}

pub fn input_layout(input: &Input, width: u16) -> InputLayout {
    let width = usize::from(width).max(1);
    let mut lines = vec![String::new()];
    let mut col = 0usize;
    let mut cursor = (0usize, 0usize);
    for (i, ch) in input.text.char_indices() {
        if i == input.cursor {
            cursor = (col, lines.len() - 1);
        }
        if ch == '\n' {
            lines.push(String::new());
            col = 0;
            continue;
        }
        let cw = ch.width().unwrap_or(0);
        if col + cw > width {
            lines.push(String::new());
            col = 0;
            if i == input.cursor {
                cursor = (0, lines.len() - 1);
            }
        }
        if let Some(l) = lines.last_mut() {
            l.push(ch);
        }
        col += cw;
    }
    if input.cursor >= input.text.len() {
        cursor = (col, lines.len() - 1);
    }
    // A cursor after a full row sits at the start of the next one.
    if cursor.0 >= width {
        cursor = (0, cursor.1 + 1);
        if cursor.1 >= lines.len() {
            lines.push(String::new());
        }
    }
    // A pasted text can be longer than a terminal can ever show: clamp, never wrap around.
    let clamp = |n: usize| u16::try_from(n).unwrap_or(u16::MAX);
    InputLayout {
        rows: clamp(lines.len()),
        lines,
        cursor: (clamp(cursor.0), clamp(cursor.1)),
    }
}

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
                    format!("model failed to load: {e}"),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrap_breaks_at_spaces_and_hard_breaks_long_words() {
        assert_eq!(
            wrap("the quick brown fox", 10),
            vec!["the quick", "brown fox"]
        );
        assert_eq!(wrap("abcdefghijkl", 5), vec!["abcde", "fghij", "kl"]);
        assert_eq!(wrap("a\n\nb", 5), vec!["a", "", "b"]);
        assert_eq!(wrap("", 5), vec![""]);
        // Wide characters count two columns.
        assert_eq!(wrap("日本語です", 4), vec!["日本", "語で", "す"]);
    }

    #[test]
    fn input_cursor_follows_newlines_and_wraps() {
        let mut i = Input::default();
        i.insert("abc\nde");
        let l = input_layout(&i, 10);
        assert_eq!(l.lines, vec!["abc", "de"]);
        assert_eq!(l.cursor, (2, 1));
        i.home();
        assert_eq!(input_layout(&i, 10).cursor, (0, 1));
        let mut j = Input::default();
        j.insert("abcdef");
        let l = input_layout(&j, 3);
        assert_eq!(l.lines, vec!["abc", "def", ""]);
        assert_eq!(l.cursor, (0, 2));
        j.left();
        assert_eq!(input_layout(&j, 3).cursor, (2, 1));
    }
}
