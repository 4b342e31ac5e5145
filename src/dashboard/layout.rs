//! Screen geometry: where each pane goes and how the conversation wraps into rows. Shared by
//! the update (page size, scroll limits) and the drawing, so both agree on every row.

use super::state::{App, EngineState, Input, Role};
use crate::accounting::pricing::{
    format_energy, format_j_per_token, format_money, format_per_million_tokens, is_tiny,
};
use crate::accounting::session::ReplyFigures;
use crate::accounting::uncertainty::Band;
use crate::util::sanitize;
use ratatui::layout::Rect;
use unicode_width::UnicodeWidthChar;

/// Where each part of the dashboard goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Areas {
    pub header: Rect,
    pub chat: Rect,
    /// Inside the chat border: the scrollback.
    pub messages: Rect,
    /// One row for the load gauge (or the load error); zero height once loaded.
    pub load: Rect,
    pub input: Rect,
    pub gauges: Rect,
    pub footer: Rect,
}

/// Width of the gauges pane for a terminal this wide: the charts widen with the terminal, the
/// chat keeps the larger share.
pub fn gauges_width(width: u16) -> u16 {
    match width {
        0..=89 => 32,
        90..=119 => 36,
        120..=149 => 44,
        150..=199 => 56,
        _ => 64,
    }
}

/// Rows the input box needs (without its border).
pub fn input_rows(app: &App, inner_width: u16) -> u16 {
    let rows = input_layout(&app.input, inner_width).rows;
    rows.clamp(1, 5)
}

pub fn layout(app: &App, area: Rect) -> Areas {
    let header = Rect::new(area.x, area.y, area.width, 1);
    let footer = Rect::new(area.x, area.bottom().saturating_sub(1), area.width, 1);
    let body_h = area.height.saturating_sub(2);
    let gw = gauges_width(area.width).min(area.width);
    let chat_w = area.width - gw;
    let chat = Rect::new(area.x, area.y + 1, chat_w, body_h);
    let gauges = Rect::new(area.x + chat_w, area.y + 1, gw, body_h);
    let inner_w = chat_w.saturating_sub(2);
    let input_h = input_rows(app, inner_w) + 2;
    let load_h = u16::from(app.model.is_none());
    let input = Rect::new(
        chat.x,
        chat.bottom().saturating_sub(input_h),
        chat_w,
        input_h.min(body_h),
    );
    let load = Rect::new(chat.x + 1, input.y.saturating_sub(load_h), inner_w, load_h);
    // The scrollback block spans from the body's top to the load row; its border eats 2 rows.
    let msg_block_h = load.y.saturating_sub(chat.y);
    let messages = Rect::new(
        chat.x + 1,
        chat.y + 1,
        inner_w,
        msg_block_h.saturating_sub(2),
    );
    Areas {
        header,
        chat: Rect::new(chat.x, chat.y, chat_w, msg_block_h),
        messages,
        load,
        input,
        gauges,
        footer,
    }
}

/// Visible size of the chat scrollback, for scrolling in `App`.
pub fn messages_size(app: &App) -> (u16, u16) {
    let a = layout(app, Rect::new(0, 0, app.width, app.height));
    (a.messages.width, a.messages.height)
}

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

/// The reply's speed: "236 tok", "110.5 tok/s", "TTFT 101 ms", and why it stopped when it did
/// not end by itself.
/// A server's reply (`--attach`) says whose each figure is: "(server)" from the server's own
/// report, "(measured here)" from this side of the stream.
fn stats_parts(s: &crate::engine::ReplyStats) -> Vec<String> {
    use crate::engine::Origin;
    let by = |o: Origin| match o {
        Origin::Engine => String::new(),
        o => format!(" ({})", o.label()),
    };
    let o = &s.origins;
    let mut parts = vec![
        format!("{} tok{}", s.generated_tokens, by(o.tokens)),
        format!("{:.1} tok/s{}", s.gen_tok_s, by(o.generation)),
        format!("TTFT {:.0} ms{}", s.ttft_ms, by(o.ttft)),
    ];
    // The server's cold load before this reply (Ollama's load_duration).
    if let Some(ms) = s.load_ms.filter(|ms| *ms >= 1.0) {
        parts.push(format!("model load {:.0} ms (server)", ms));
    }
    if s.stop != crate::engine::StopReason::EndOfGeneration {
        parts.push(s.stop.to_string());
    }
    parts
}

/// A figure with its error band: "41 J ±2 %"; where the band is wider than ±25 %, the figure
/// alone and the band in words as a part of its own ("could be −67 %…+163 %").
pub fn with_band(figure: String, band: Option<Band>) -> Vec<String> {
    match band {
        Some(b) if b.is_wide() => vec![figure, b.words().unwrap_or_default()],
        Some(b) => vec![format!("{figure} {}", b.text())],
        None => vec![figure],
    }
}

/// A reply's energy and money under its speed, one line's parts each: "41 J ±2 %",
/// "0.17 J/tok", "0.00020 ¢", "0.84 ¢ / 1M tok" (the per-million figure only when the reply
/// cost less than a cent); "est." first when any part of the energy is an estimate; and the
/// same net of idle once a baseline exists. The band holds for every figure of its line
/// (tokens are counted, prices are given); a wide one is said in words.
pub fn figures_lines(f: &ReplyFigures) -> Vec<Vec<String>> {
    let money = |amount: Option<f64>| match (amount, &f.currency) {
        (Some(a), Some(c)) => Some(format_money(a, c)),
        _ => None,
    };
    let lead = match (f.estimated, f.apportioned) {
        (true, _) => "est. ",
        // Too short for the energy counter's steps: a share of the steps around it.
        (false, true) => "≈",
        (false, false) => "",
    };
    let mut total = with_band(format!("{lead}{}", format_energy(f.energy_j)), f.band);
    if f.apportioned {
        total.push("apportioned".into());
    }
    total.extend(f.j_per_token.map(format_j_per_token));
    total.extend(money(f.cost));
    if f.cost.is_some_and(is_tiny)
        && let (Some(each), Some(c)) = (f.cost_per_token(), &f.currency)
    {
        total.push(format_per_million_tokens(each, c));
    }
    let mut out = vec![total];
    if let Some(net) = f.net_j {
        let mut parts = with_band(format!("net of idle {}", format_energy(net)), f.net_band);
        parts.extend(f.net_j_per_token.map(format_j_per_token));
        parts.extend(money(f.net_cost));
        out.push(parts);
    }
    out
}

fn text_width(s: &str) -> usize {
    s.chars().map(|c| c.width().unwrap_or(0)).sum()
}

/// Join `parts` with " · " into lines at most `width` wide, breaking between parts so a
/// figure stays with its unit; a part wider than a line is word-wrapped.
fn pack(parts: &[String], width: usize) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    let mut line = String::new();
    for p in parts {
        if !line.is_empty() && text_width(&line) + 3 + text_width(p) > width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push_str(" · ");
        }
        line.push_str(p);
    }
    lines.push(line);
    lines.iter().flat_map(|l| wrap(l, width)).collect()
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
        // Model output and pasted text are foreign: ratatui must never get a control
        // character (an ESC would reach the terminal). The message itself stays exact (it is
        // the conversation the model sees and the transcript a card keeps).
        let mut text = sanitize::text(m.text.trim_start_matches('\n')).into_owned();
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
        let figures = m.figures.iter().flat_map(figures_lines);
        let speed = m.stats.iter().map(|s| {
            let mut parts = stats_parts(s);
            parts.extend(
                app.reply_roofline(s)
                    .map(|r| crate::accounting::roofline::text(&r)),
            );
            parts
        });
        // Other programs took the CPUs while it generated: said under its speed.
        let contended = m
            .contention
            .iter()
            .zip(&m.stats)
            .map(|(c, s)| vec![c.reply_text(s.gen_tok_s)]);
        for parts in speed.chain(contended).chain(figures) {
            for l in pack(&parts, w) {
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
    fn figures_break_between_parts_never_inside_one() {
        let parts: Vec<String> = ["170 J", "13.1 J/tok", "0.00083 ¢", "$0.64 / 1M tok"]
            .map(String::from)
            .to_vec();
        assert_eq!(
            pack(&parts, 44),
            ["170 J · 13.1 J/tok · 0.00083 ¢", "$0.64 / 1M tok"]
        );
        assert_eq!(
            pack(&parts, 80),
            ["170 J · 13.1 J/tok · 0.00083 ¢ · $0.64 / 1M tok"]
        );
        // A part wider than the line is word-wrapped.
        assert_eq!(
            pack(&["a very long part".to_string()], 6),
            ["a very", "long", "part"]
        );
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
