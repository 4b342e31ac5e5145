//! The footer row: the session's electricity tally (Wh, money, region), the status message and
//! the key hints. The pricing module fills `App::cost`; until then only Wh shows.

use crate::app::App;
use crate::keys::Action;
use crate::theme::Theme;
use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

/// "0.123 Wh", or "~0.123 Wh est." when any part came from an estimate.
pub fn energy_text(app: &App) -> String {
    let wh = app.energy.wh;
    let num = if wh >= 100.0 {
        format!("{wh:.0}")
    } else if wh >= 10.0 {
        format!("{wh:.1}")
    } else {
        format!("{wh:.3}")
    };
    if app.energy.estimated {
        format!("~{num} Wh est.")
    } else {
        format!("{num} Wh")
    }
}

pub fn draw(app: &App, theme: &Theme, frame: &mut Frame, area: Rect) {
    let mut bar = Style::default().fg(theme.footer_fg).bg(theme.footer_bg);
    if theme.is_colorless() {
        bar = bar.add_modifier(Modifier::REVERSED);
    }
    let mut left = vec![
        Span::styled(" Session ", bar.add_modifier(Modifier::BOLD)),
        Span::styled(energy_text(app), bar.fg(theme.power)),
    ];
    if let Some(cost) = &app.cost.session {
        left.push(Span::styled(format!(" · {cost}"), bar));
    }
    if let Some(region) = &app.cost.region {
        left.push(Span::styled(format!(" ({region})"), bar));
    }
    if let Some(l) = app.cost.lifetime_wh {
        left.push(Span::styled(format!(" · all {l:.1} Wh"), bar));
    }
    let hints = format!(
        "{} help  {} quit ",
        app.keys.keys_for(Action::Help),
        app.keys.keys_for(Action::Quit)
    );
    let mut middle = match &app.status {
        Some(s) => format!(" │ {}", s.text),
        None => String::new(),
    };
    let left_w: usize = left.iter().map(|s| s.width()).sum();
    let avail = usize::from(area.width);
    let hints_w = hints.chars().count();
    // The status message wins over the key hints when both do not fit.
    let show_hints = left_w + middle.chars().count() + hints_w < avail;
    let room = avail.saturating_sub(left_w + if show_hints { hints_w } else { 0 });
    if middle.chars().count() > room {
        middle = middle
            .chars()
            .take(room.saturating_sub(1))
            .collect::<String>()
            + "…";
    }
    let mut spans = left;
    let mid_w = middle.chars().count();
    spans.push(Span::styled(middle, bar.fg(theme.accent)));
    if show_hints {
        spans.push(Span::styled(
            " ".repeat(avail.saturating_sub(left_w + mid_w + hints_w)),
            bar,
        ));
        spans.push(Span::styled(hints, bar.fg(theme.dim)));
    }
    frame.render_widget(Paragraph::new(Line::from(spans)).style(bar), area);
}
