//! `llmtop --proxy`: the request table in place of the chat, newest first, like top for
//! requests. Every string from the network (model, client) is sanitised before it is drawn.

use crate::accounting::pricing::format_energy;
use crate::dashboard::state::{App, RequestTable};
use crate::dashboard::theme::Theme;
use crate::proxy::record::RequestRecord;
use crate::util::sanitize;
use ratatui::Frame;
use ratatui::layout::{Constraint, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Cell, Paragraph, Row, Table};

/// The client column is shown from this table width on.
const CLIENT_FROM: u16 = 92;
/// Below this the time drops its hours and TTFT is left out (80 columns: the gauges keep 32).
const NARROW_BELOW: u16 = 62;

/// Local wall-clock time of a record, HH:MM:SS.
fn clock(r: &RequestRecord) -> String {
    r.time
        .as_deref()
        .and_then(|t| t.parse::<jiff::Timestamp>().ok())
        .map(|t| {
            jiff::tz::TimeZone::system()
                .to_datetime(t)
                .strftime("%H:%M:%S")
                .to_string()
        })
        .unwrap_or_else(|| "--:--:--".into())
}

fn opt(v: Option<f64>, f: impl Fn(f64) -> String) -> String {
    v.filter(|x| x.is_finite()).map_or("-".into(), f)
}

/// One row's cells: time, client, model, tokens, TTFT, tok/s, J, cost.
pub fn cells(r: &RequestRecord) -> [String; 8] {
    // llama-server names its model by file path: the file name says it.
    let model = r.model.as_deref().unwrap_or("?");
    let model = model.rsplit('/').next().unwrap_or(model);
    let tokens = match (r.prompt_tokens, r.cached_tokens, r.generated_tokens) {
        // A failed request says how instead.
        _ if r.status >= 400 => format!("HTTP {}", r.status),
        _ if r.outcome == "client_closed" => "closed".into(),
        _ if r.outcome != "complete" => "cut off".into(),
        (None, None, None) => "-".to_string(),
        (p, c, g) => {
            let cached = c
                .filter(|c| *c > 0)
                .map_or(String::new(), |c| format!("+{c}"));
            format!("{}{cached}→{}", p.unwrap_or(0), g.unwrap_or(0))
        }
    };
    let energy = r
        .energy
        .as_ref()
        .map_or("-".into(), |e| format_energy(e.joules));
    [
        clock(r),
        sanitize::terminal(&r.client).into_owned(),
        sanitize::terminal(model).into_owned(),
        tokens,
        opt(r.ttft_s, |t| format!("{t:.2}s")),
        opt(r.decode_tok_s, |v| format!("{v:.1}")),
        energy,
        r.cost_text.clone().unwrap_or_else(|| "-".into()),
    ]
}

pub fn draw(app: &App, theme: &Theme, frame: &mut Frame, area: Rect) {
    let Some(t) = app.requests.as_ref() else {
        return;
    };
    let title_style = Style::default()
        .fg(theme.title)
        .add_modifier(Modifier::BOLD);
    let mut spans = vec![
        Span::styled(" Requests ", title_style),
        Span::styled(
            format!(
                "{} done, {} pending · {} → {} ",
                t.total,
                t.pending,
                sanitize::terminal(&t.listen),
                sanitize::terminal(&t.upstream),
            ),
            Style::default().fg(theme.dim),
        ),
    ];
    // Short: the table is narrow; the status line has the whole reason.
    if t.upstream_down.is_some() {
        spans.push(Span::styled(
            "· upstream down, retrying ",
            Style::default().fg(theme.bad).add_modifier(Modifier::BOLD),
        ));
    }
    let title = Line::from(spans);
    let block = Block::default()
        .borders(Borders::ALL)
        .border_style(Style::default().fg(theme.border))
        .title(title);
    let inner = block.inner(area);
    frame.render_widget(block, area);
    if inner.height == 0 {
        return;
    }
    if t.rows.is_empty() {
        let hint = vec![
            Line::from(format!(
                "Point clients at http://{} instead of the server.",
                sanitize::terminal(&t.listen)
            )),
            Line::from("Each request appears here once its energy is settled:"),
            Line::from("an attributed share of each sampling interval, by tokens."),
        ];
        frame.render_widget(
            Paragraph::new(hint).style(Style::default().fg(theme.dim)),
            inner,
        );
        return;
    }
    draw_table(t, theme, frame, inner);
}

fn draw_table(t: &RequestTable, theme: &Theme, frame: &mut Frame, area: Rect) {
    let narrow = area.width < NARROW_BELOW;
    let keep = |i: usize| match i {
        1 => area.width >= CLIENT_FROM,
        4 => !narrow,
        _ => true,
    };
    let names = [
        "time", "client", "model", "tokens", "TTFT", "tok/s", "energy", "cost",
    ];
    let widths = [
        Constraint::Length(if narrow { 5 } else { 8 }),
        Constraint::Length(15),
        Constraint::Min(5),
        Constraint::Length(9),
        Constraint::Length(6),
        Constraint::Length(5),
        Constraint::Length(7),
        Constraint::Length(10),
    ];
    let pick = |v: Vec<String>| -> Vec<Cell> {
        v.into_iter()
            .enumerate()
            .filter(|(i, _)| keep(*i))
            .map(|(_, c)| Cell::from(c))
            .collect()
    };
    let header = Row::new(pick(names.iter().map(|n| n.to_string()).collect())).style(
        Style::default()
            .fg(theme.title)
            .add_modifier(Modifier::BOLD),
    );
    let rows = t
        .rows
        .iter()
        .take(usize::from(area.height.saturating_sub(1)))
        .map(|r| {
            let style = if r.status >= 400 || r.outcome != "complete" {
                Style::default().fg(theme.warn)
            } else {
                Style::default().fg(theme.fg)
            };
            let mut c = cells(r).to_vec();
            if narrow {
                // MM:SS: the hour is the one on the clock.
                c[0] = c[0].chars().skip(3).collect();
            }
            Row::new(pick(c)).style(style)
        });
    let widths: Vec<Constraint> = widths
        .iter()
        .enumerate()
        .filter(|(i, _)| keep(*i))
        .map(|(_, w)| *w)
        .collect();
    frame.render_widget(
        Table::new(rows, widths).header(header).column_spacing(1),
        area,
    );
}
