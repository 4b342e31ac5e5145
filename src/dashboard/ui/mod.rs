//! Drawing: pure functions of `&App` and `&Theme` into a ratatui `Frame`. No I/O, no `&mut App`.
//!
//! Layout (80x24 is the design size; larger terminals get wider gauges and taller charts):
//! header on the first row, footer on the last, the chat (or, with `--proxy`, the request
//! table) on the left, gauges on the right.

pub mod chart;
pub mod chat;
pub mod footer;
pub mod gauges;
pub mod header;
pub mod help;
pub mod picker;
pub mod requests;

pub use crate::dashboard::layout::{Areas, input_rows, layout, messages_size};
use crate::dashboard::state::App;
use crate::dashboard::theme::Theme;
use ratatui::Frame;
use ratatui::layout::{Alignment, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::text::Line;
use ratatui::widgets::{Block, Paragraph, Wrap};

/// Below this the dashboard asks to be enlarged rather than drawing a garbled screen.
pub const MIN_WIDTH: u16 = 60;
pub const MIN_HEIGHT: u16 = 16;

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
    if app.requests.is_some() {
        // `--proxy`: the request table takes the whole chat column.
        let left = Rect::new(
            areas.chat.x,
            areas.chat.y,
            areas.chat.width,
            areas.input.bottom().saturating_sub(areas.chat.y),
        );
        requests::draw(app, theme, frame, left);
    } else {
        chat::draw(app, theme, frame, &areas);
    }
    gauges::draw(app, theme, frame, areas.gauges);
    footer::draw(app, theme, frame, areas.footer);
    if app.show_help {
        help::draw(app, theme, frame, area);
    }
    if app.picker.is_some() {
        picker::draw(app, theme, frame, area);
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

/// Render the dashboard off-screen into a buffer of the given size: the same pixels the
/// terminal shows, for snapshots (SVG) and screenshots, without keeping a copy of every frame.
pub fn render_buffer(app: &App, theme: &Theme, width: u16, height: u16) -> ratatui::buffer::Buffer {
    // TestBackend cannot fail: its error type is uninhabited.
    let Ok(mut terminal) =
        ratatui::Terminal::new(ratatui::backend::TestBackend::new(width, height));
    let Ok(frame) = terminal.draw(|f| draw(app, theme, f));
    frame.buffer.clone()
}
