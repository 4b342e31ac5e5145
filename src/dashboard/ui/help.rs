//! The F1 help overlay: every action with its (possibly reconfigured) keys, the editing keys,
//! what start-up found wrong (sensor sources not available, the tally), and, where the
//! terminal is tall enough, the money (this pace a month and a year, the lifetime tally) and
//! how to read the gauges.

use crate::config::keys::Action;
use crate::dashboard::state::App;
use crate::dashboard::theme::Theme;
use crate::dashboard::ui::footer;
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
const GAUGES: [(&str, &str); 6] = [
    ("~45 W est.", "estimated from CPU use x TDP, not measured"),
    (
        "sum of parts",
        "GPU + CPU + DRAM sensors: the wall reads more",
    ),
    (
        "77°C  limit 100°C",
        "hottest sensor; it throttles at the dashed line",
    ),
    (
        "200 W … last 2 min",
        "a chart's top and the time it spans, to now",
    ),
    (
        "now / last",
        "live tok/s; the last reply's rate, prefill, TTFT",
    ),
    ("Session Wh", "energy, cost, a month at this pace, all-time"),
];

/// The money section: the session's pace projected over a month and a year, and the
/// lifetime tally with its cost per 1000 replies.
fn money_lines(app: &App) -> Vec<(String, String)> {
    let c = &app.cost;
    let mut out = Vec::new();
    if let (Some(m), Some(y)) = (&c.per_month, &c.per_year) {
        out.push((
            "At this pace".to_string(),
            format!("{m} a month, {y} a year (this session's average draw, 24 h a day)"),
        ));
    }
    if let Some(total) = footer::lifetime_text(app) {
        let since = match &c.lifetime_since {
            Some(d) => format!("Since {d}"),
            None => "All sessions".to_string(),
        };
        let mut d = total;
        if let Some(n) = c.lifetime_replies {
            d.push_str(&format!(", {n} replies"));
        }
        if let Some(p) = &c.lifetime_per_1000_replies {
            d.push_str(&format!(" ({p})"));
        }
        out.push((since, d));
    }
    out.extend(rest_lines(app));
    out
}

/// Seconds as "2 min 10 s", "45 s".
fn span_text(s: f64) -> String {
    let s = s.max(0.0).round() as u64;
    if s >= 60 {
        format!("{} min {} s", s / 60, s % 60)
    } else {
        format!("{s} s")
    }
}

/// The model at rest (waiting, and what unloading would save) and the wall's remainder.
fn rest_lines(app: &App) -> Vec<(String, String)> {
    let mut out = Vec::new();
    if let Some(a) = &app.cost.at_rest
        && let Some(w) = a.waiting_w
    {
        let mut d = format!("{w:.1} W with the model loaded and no request");
        if let Some(h) = &a.per_hour {
            d.push_str(&format!(", {h} an hour"));
        }
        if let Some(c) = &a.waiting_cost {
            d.push_str(&format!(" ({c} over {})", span_text(a.waiting_s)));
        }
        out.push(("Waiting".to_string(), d));
        if let Some(c) = &a.answering_cost {
            out.push((
                "Answering".to_string(),
                format!("{c} over {} of replies", span_text(a.answering_s)),
            ));
        }
        let unload = match (&a.saving_per_month, a.unloaded_w) {
            (Some(m), Some(u)) => {
                format!("would save {m} a month (the machine idles at {u:.1} W without the model)")
            }
            _ => "saving not known: the machine's idle without the model was not measured"
                .to_string(),
        };
        out.push(("Unloading".to_string(), unload));
        if let Some(at) = &a.unloads_at {
            out.push((
                "Server unloads".to_string(),
                format!("the model at {at} (its keep_alive)"),
            ));
        }
    }
    if let Some(r) = &app.energy.remainder {
        let mut d = format!(
            "{:.1} W, {:.0} % of the wall: PSU losses, board, fans, disks, anything plugged in",
            r.watts,
            r.share * 100.0
        );
        if let Some(i) = r.idle_w {
            d.push_str(&format!("; idle {i:.1} W"));
        }
        if let Some((a, b)) = r.loaded {
            d.push_str(&format!("; under load {a:.1} W + {b:.2} x parts"));
        }
        if r.estimated {
            d.push_str(" (parts partly estimated)");
        }
        out.push(("Wall remainder".to_string(), d));
    }
    out
}

/// The latest shift of the wall's remainder while idle, in words with when.
pub fn shift_text(app: &App) -> Option<String> {
    let s = app.energy.remainder.as_ref()?.shifts.last()?;
    Some(format!(
        "{}, {} ago",
        s.describe(),
        span_text(app.now - s.t)
    ))
}

/// One line per GPU board: "GPU1 NVIDIA H100: energy counter
/// (nvmlDeviceGetTotalEnergyConsumption), watts NVML_FI_DEV_POWER_INSTANT (instant), last
/// reply 6.2 J (49 %)"; a board without a reading says so and why ("GPU lost ...").
pub fn board_lines(app: &App) -> Vec<String> {
    let last = app.messages.iter().rev().find_map(|m| m.figures.as_ref());
    let reply_j: f64 = last.map_or(0.0, |f| f.boards.iter().map(|b| b.energy_j).sum());
    app.gauges
        .boards
        .iter()
        .map(|b| {
            let mut s = format!(
                "{} {}: energy {}",
                b.label,
                crate::util::sanitize::terminal(&b.device),
                crate::util::sanitize::terminal(&b.energy)
            );
            if let Some(w) = &b.watts {
                s.push_str(&format!(", watts {}", crate::util::sanitize::terminal(w)));
            }
            if let Some(why) = &b.silent {
                s.push_str(&format!(", now {}", crate::util::sanitize::terminal(why)));
            }
            if let Some(share) = last.and_then(|f| f.boards.iter().find(|x| x.id == b.id)) {
                s.push_str(&format!(
                    ", last reply {}",
                    crate::accounting::pricing::format_energy(share.energy_j)
                ));
                if reply_j > 0.0 {
                    s.push_str(&format!(" ({:.0} %)", 100.0 * share.energy_j / reply_j));
                }
            }
            s
        })
        .collect()
}

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
    // What start-up found wrong, wrapped to the overlay's widest possible width: these lines
    // carry paths and fixes that must be read in full.
    if !app.startup_notes.is_empty() {
        let text_w = usize::from(area.width.saturating_sub(7)).max(20);
        let warn = Style::default().fg(theme.warn);
        lines.push(Line::from(""));
        lines.push(Line::from(Span::styled(
            " Not available (see also the log):",
            key_style,
        )));
        for note in &app.startup_notes {
            for (i, part) in wrap(note, text_w).into_iter().enumerate() {
                let lead = if i == 0 { " - " } else { "   " };
                lines.push(Line::from(Span::styled(format!("{lead}{part}"), warn)));
            }
        }
    }
    // Something else started drawing power at the wall: said in full, always.
    if let Some(text) = shift_text(app) {
        let text_w = usize::from(area.width.saturating_sub(7)).max(20);
        lines.push(Line::from(""));
        for (i, part) in wrap(&text, text_w).into_iter().enumerate() {
            let lead = if i == 0 { " ! " } else { "   " };
            lines.push(Line::from(Span::styled(
                format!("{lead}{part}"),
                Style::default().fg(theme.warn),
            )));
        }
    }
    // The attached server's share: how it is split and what it leaves out, read in full.
    if let Some(s) = &app.server_share {
        let text_w = usize::from(area.width.saturating_sub(7)).max(20);
        lines.push(Line::from(""));
        lines.push(Line::from(Span::styled(
            format!(" Server share (pid {}):", s.pid),
            key_style,
        )));
        for note in [s.method, s.covers.as_str()] {
            for (i, part) in wrap(&crate::util::sanitize::terminal(note), text_w)
                .into_iter()
                .enumerate()
            {
                let lead = if i == 0 { " - " } else { "   " };
                lines.push(Line::from(Span::styled(format!("{lead}{part}"), desc)));
            }
        }
    }
    // Each GPU board: how its energy and its watts are read, and its share of the last reply;
    // where it fits in full, after the keys.
    let text_w = usize::from(area.width.saturating_sub(7)).max(20);
    let mut boards: Vec<Line> = Vec::new();
    for b in board_lines(app) {
        for (i, part) in wrap(&b, text_w).into_iter().enumerate() {
            let lead = if i == 0 { " - " } else { "   " };
            boards.push(Line::from(Span::styled(format!("{lead}{part}"), desc)));
        }
    }
    if !boards.is_empty() && usize::from(area.height) >= lines.len() + boards.len() + 2 + 4 {
        lines.push(Line::from(""));
        lines.push(Line::from(Span::styled(
            " GPU boards (how each is read, share of the last reply):",
            key_style,
        )));
        lines.extend(boards);
    }
    // How sure the energy is: the session's band and each sensor's method, where it fits in
    // full after the keys (a band wider than ±25 % is said in words).
    let mut sure: Vec<Line> = Vec::new();
    let session = app
        .energy
        .band
        .map(|_| format!("session: {}", footer::energy_text(app)));
    for a in session.iter().chain(&app.gauges.accuracy) {
        for (i, part) in wrap(a, text_w).into_iter().enumerate() {
            let lead = if i == 0 { " - " } else { "   " };
            sure.push(Line::from(Span::styled(format!("{lead}{part}"), desc)));
        }
    }
    if !app.gauges.accuracy.is_empty()
        && usize::from(area.height) >= lines.len() + sure.len() + 2 + 4
    {
        lines.push(Line::from(""));
        lines.push(Line::from(Span::styled(
            " Error bars (each sensor's method; README: Error bars):",
            key_style,
        )));
        lines.extend(sure);
    }
    // Then the money, where it fits: what this pace costs a month and a year, and the tally.
    let money = money_lines(app);
    if !money.is_empty() && usize::from(area.height) >= lines.len() + money.len() + 1 + 4 {
        lines.push(Line::from(""));
        for (k, d) in money {
            lines.push(Line::from(vec![
                Span::styled(format!(" {k:<key_w$}  "), key_style),
                Span::styled(d, desc),
            ]));
        }
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
    overlay(
        theme,
        frame,
        area,
        " Keys · F1 or Esc closes ",
        lines,
        want_w,
    );
}

/// A bordered box of `lines` centred over `area` (help, the model picker), at most `want_w`
/// wide and as tall as its lines, both capped a cell inside the area.
pub fn overlay(
    theme: &Theme,
    frame: &mut Frame,
    area: Rect,
    title: &str,
    lines: Vec<Line>,
    want_w: u16,
) {
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
                        title,
                        Style::default()
                            .fg(theme.title)
                            .add_modifier(Modifier::BOLD),
                    )),
            ),
        rect,
    );
}

/// Split `text` into lines of at most `width` characters, at spaces where there are any.
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut out = Vec::new();
    let mut line = String::new();
    for word in text.split(' ') {
        let mut word = word.to_string();
        loop {
            let used = line.chars().count();
            let need = word.chars().count() + usize::from(used > 0);
            if used + need <= width {
                if used > 0 {
                    line.push(' ');
                }
                line.push_str(&word);
                break;
            }
            if used > 0 {
                out.push(std::mem::take(&mut line));
                continue;
            }
            // A word longer than a line (a long path): cut it.
            let head: String = word.chars().take(width).collect();
            word = word.chars().skip(width).collect();
            out.push(head);
            if word.is_empty() {
                break;
            }
        }
    }
    if !line.is_empty() {
        out.push(line);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::wrap;

    #[test]
    fn wraps_at_spaces_and_cuts_long_words() {
        assert_eq!(wrap("aa bb cc", 5), ["aa bb", "cc"]);
        assert_eq!(wrap("abcdefgh x", 3), ["abc", "def", "gh", "x"]);
        assert_eq!(wrap("", 5), Vec::<String>::new());
    }
}
