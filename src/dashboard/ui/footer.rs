//! The footer row: the session's electricity tally (Wh, money, region), what it comes to a
//! month and a year at this pace, the lifetime tally, the status message and the key hints.
//! The shell's session accounting fills `App::energy` and `App::cost`.

use crate::accounting::pricing::format_j_per_token;
use crate::config::keys::Action;
use crate::dashboard::state::App;
use crate::dashboard::theme::Theme;
use crate::util::sanitize;
use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

/// "0.123 Wh ±3 %", "~0.123 Wh est." when any part came from an estimate, and where the band
/// is wider than ±25 % it in words: "~0.123 Wh est. could be −67 %…+163 %".
pub fn energy_text(app: &App) -> String {
    let wh = app.energy.wh;
    let num = if wh >= 100.0 {
        format!("{wh:.0}")
    } else if wh >= 10.0 {
        format!("{wh:.1}")
    } else {
        format!("{wh:.3}")
    };
    let figure = if app.energy.estimated {
        format!("~{num} Wh est.")
    } else {
        format!("{num} Wh")
    };
    crate::dashboard::layout::with_band(figure, app.energy.band).join(" ")
}

/// "at this pace $1.20/mo, $14.61/yr": the session's average draw so far, around the clock;
/// "est." when the session's energy is partly an estimate.
pub fn pace_text(app: &App) -> Option<String> {
    let c = &app.cost;
    let (m, y) = (c.per_month.as_ref()?, c.per_year.as_ref()?);
    let est = if app.energy.estimated { " est." } else { "" };
    // The model loaded and waiting is part of the pace: say how much.
    let waiting = c
        .waiting_per_month
        .as_ref()
        .map(|w| format!(" ({w} waiting)"))
        .unwrap_or_default();
    Some(format!("at this pace {m}/mo{waiting}, {y}/yr{est}"))
}

/// The lifetime tally's energy and money: "1.23 kWh $0.21".
pub fn lifetime_text(app: &App) -> Option<String> {
    let c = &app.cost;
    let l = c.lifetime_wh?;
    let wh = if l >= 1000.0 {
        format!("{:.2} kWh", l / 1000.0)
    } else {
        format!("{l:.1} Wh")
    };
    Some(match &c.lifetime_cost {
        Some(m) => format!("{wh} {m}"),
        None => wh,
    })
}

/// The footer's figures after the energy, most important first: cost in the region, what
/// that pace costs a month and a year, the lifetime tally, J/token of the last reply (every
/// reply shows its own), CO2. Later ones give way on narrow terminals.
pub fn extras(app: &App) -> Vec<String> {
    let c = &app.cost;
    let mut out = Vec::new();
    if let Some(cost) = &c.session {
        out.push(match &c.region {
            Some(r) => format!(" · {cost} {r}"),
            None => format!(" · {cost}"),
        });
    }
    if let Some(p) = pace_text(app) {
        out.push(format!(" · {p}"));
    }
    if let Some(l) = lifetime_text(app) {
        out.push(format!(" · all {l}"));
    }
    if let Some(j) = c.j_per_token.filter(|j| j.is_finite()) {
        out.push(format!(" · {}", format_j_per_token(j)));
    }
    if let Some(co2) = &c.co2 {
        out.push(format!(" · {co2}"));
    }
    out
}

/// Room a status message keeps before the footer's later figures give way.
const STATUS_ROOM: usize = 40;

pub fn draw(app: &App, theme: &Theme, frame: &mut Frame, area: Rect) {
    let mut bar = Style::default().fg(theme.footer_fg).bg(theme.footer_bg);
    if theme.is_colorless() {
        bar = bar.add_modifier(Modifier::REVERSED);
    }
    let avail = usize::from(area.width);
    let mut extras = extras(app);
    let head = format!(" Session {}", energy_text(app));
    let width = |extras: &[String]| {
        head.chars().count() + extras.iter().map(|e| e.chars().count()).sum::<usize>()
    };
    let help = app.keys.keys_for(Action::Help);
    let full_hints = format!("{help} help  {} quit ", app.keys.keys_for(Action::Quit));
    let short_hints = format!("{help} help ");
    // Room kept for the status message, or at least for the help key when there is none.
    let wanted = match &app.status {
        Some(s) => (s.text.chars().count() + 3).min(STATUS_ROOM),
        None => short_hints.chars().count() + 1,
    };
    // Keep the session cost; drop CO2, J/token, the lifetime and the pace first when space is
    // short.
    while extras.len() > 1 && width(&extras) + wanted > avail {
        extras.pop();
    }
    let mut left = vec![
        Span::styled(" Session ", bar.add_modifier(Modifier::BOLD)),
        Span::styled(energy_text(app), bar.fg(theme.power)),
    ];
    left.extend(extras.into_iter().map(|e| Span::styled(e, bar)));
    let mut middle = match &app.status {
        // Status text may hold a path or an error from the system.
        Some(s) => format!(" │ {}", sanitize::terminal(&s.text)),
        None => String::new(),
    };
    let left_w: usize = left.iter().map(|s| s.width()).sum();
    let mid_w = middle.chars().count();
    // The status message wins over the key hints when both do not fit.
    let hints = [full_hints, short_hints]
        .into_iter()
        .find(|h| left_w + mid_w + h.chars().count() < avail)
        .unwrap_or_default();
    let hints_w = hints.chars().count();
    let room = avail.saturating_sub(left_w + hints_w);
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
    if hints_w > 0 {
        spans.push(Span::styled(
            " ".repeat(avail.saturating_sub(left_w + mid_w + hints_w)),
            bar,
        ));
        spans.push(Span::styled(hints, bar.fg(theme.dim)));
    }
    frame.render_widget(Paragraph::new(Line::from(spans)).style(bar), area);
}
