//! Drawing: pure functions of `&App` and `&Theme` into a ratatui `Frame`. No I/O, no `&mut App`.
//!
//! Layout (80x24 is the design size; larger terminals get wider gauges and taller sparklines):
//! header on the first row, footer on the last, the chat on the left, gauges on the right.

pub mod chat;
pub mod footer;
pub mod gauges;
pub mod header;
pub mod help;

use crate::app::App;
use crate::theme::Theme;
use ratatui::Frame;
use ratatui::layout::{Alignment, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::text::Line;
use ratatui::widgets::{Block, Paragraph, Wrap};

/// Below this the dashboard asks to be enlarged rather than drawing a garbled screen.
pub const MIN_WIDTH: u16 = 60;
pub const MIN_HEIGHT: u16 = 16;

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

/// Width of the gauges pane for a terminal this wide.
fn gauges_width(width: u16) -> u16 {
    match width {
        0..=89 => 32,
        90..=119 => 36,
        _ => 44,
    }
}

/// Rows the input box needs (without its border).
pub fn input_rows(app: &App, inner_width: u16) -> u16 {
    let rows = chat::input_layout(&app.input, inner_width).rows;
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

/// The whole dashboard.
pub fn draw(app: &App, theme: &Theme, frame: &mut Frame) {
    let area = frame.area();
    let base = Style::default().fg(theme.fg).bg(theme.bg);
    frame.render_widget(Block::default().style(base), area);
    if area.width < MIN_WIDTH || area.height < MIN_HEIGHT {
        draw_too_small(theme, frame, area);
        return;
    }
    let areas = layout(app, area);
    header::draw(app, theme, frame, areas.header);
    chat::draw(app, theme, frame, &areas);
    gauges::draw(app, theme, frame, areas.gauges);
    footer::draw(app, theme, frame, areas.footer);
    if app.show_help {
        help::draw(app, theme, frame, area);
    }
}

fn draw_too_small(theme: &Theme, frame: &mut Frame, area: Rect) {
    let text = vec![
        Line::from("llmtop").style(Style::default().add_modifier(Modifier::BOLD)),
        Line::from(""),
        Line::from(format!("Terminal is {}x{}.", area.width, area.height)),
        Line::from(format!("Enlarge to at least {MIN_WIDTH}x{MIN_HEIGHT}."))
            .style(Style::default().fg(theme.warn)),
        Line::from(""),
        Line::from("Ctrl-Q quits.").style(Style::default().fg(theme.dim)),
    ];
    let h = (text.len() as u16).min(area.height);
    let y = area.y + area.height.saturating_sub(h) / 2;
    frame.render_widget(
        Paragraph::new(text)
            .alignment(Alignment::Center)
            .wrap(Wrap { trim: true }),
        Rect::new(area.x, y, area.width, h),
    );
}

/// Visible size of the chat scrollback, for scrolling in `App`.
pub fn messages_size(app: &App) -> (u16, u16) {
    let a = layout(app, Rect::new(0, 0, app.width, app.height));
    (a.messages.width, a.messages.height)
}

/// Render the dashboard off-screen into a buffer of the given size: the same pixels the
/// terminal shows, for snapshots (SVG) and screenshots, without keeping a copy of every frame.
pub fn render_buffer(app: &App, theme: &Theme, width: u16, height: u16) -> ratatui::buffer::Buffer {
    // TestBackend cannot fail: its error type is uninhabited.
    let Ok(mut terminal) =
        ratatui::Terminal::new(ratatui::backend::TestBackend::new(width, height));
    let Ok(frame) = terminal.draw(|f| draw(app, theme, f));
    frame.buffer.clone()
}
