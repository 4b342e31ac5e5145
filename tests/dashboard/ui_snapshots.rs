//! Whole-screen snapshots of the dashboard in `TestBackend`, at 80x24 and 120x40.
//!
//! Every input (time, tokens, sensor readings) is fed as plain events, so no number on these
//! screens depends on the machine or the clock; the one filter below only guards the
//! scripted model's load time.
use crate::support;

use crossterm::event::{KeyCode, KeyModifiers};
use llmtop::dashboard::state::App;
use llmtop::dashboard::theme::Theme;
use llmtop::engine::EngineEvent;
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use support::*;

fn render(app: &App) -> String {
    let backend = TestBackend::new(app.width, app.height);
    let mut terminal = Terminal::new(backend).expect("terminal");
    terminal
        .draw(|f| llmtop::dashboard::ui::draw(app, &Theme::dark(), f))
        .expect("draw");
    terminal.backend().to_string()
}

macro_rules! snap {
    ($name:expr, $app:expr) => {{
        let screen = render(&$app);
        insta::with_settings!({filters => vec![(r"loaded in \d+ ms", "loaded in [N] ms")]}, {
            insta::assert_snapshot!($name, screen);
        });
    }};
}

fn loading_app(w: u16, h: u16) -> App {
    let mut app = new_app(w, h);
    engine(&mut app, EngineEvent::LoadProgress(0.42), 0.3);
    typ(&mut app, "Typing while it loads");
    app
}

/// The chat pane and the footer row only: the reply lines and the money, apart from the
/// gauges pane (drawn and tested on its own).
fn chat_and_footer(app: &App) -> String {
    let backend = TestBackend::new(app.width, app.height);
    let mut terminal = Terminal::new(backend).expect("terminal");
    terminal
        .draw(|f| llmtop::dashboard::ui::draw(app, &Theme::dark(), f))
        .expect("draw");
    let buf = terminal.backend().buffer();
    let a =
        llmtop::dashboard::ui::layout(app, ratatui::layout::Rect::new(0, 0, app.width, app.height));
    let row = |y: u16, x0: u16, x1: u16| -> String {
        (x0..x1).map(|x| buf[(x, y)].symbol()).collect::<String>()
    };
    let mut out: Vec<String> = (a.chat.y..a.chat.bottom())
        .map(|y| row(y, a.chat.x, a.chat.right()))
        .collect();
    out.push(row(a.footer.y, a.footer.x, a.footer.right()));
    out.join("\n")
}

macro_rules! snap_money {
    ($name:expr, $app:expr) => {{
        let screen = chat_and_footer(&$app);
        insta::with_settings!({filters => vec![(r"loaded in \d+ ms", "loaded in [N] ms")]}, {
            insta::assert_snapshot!($name, screen);
        });
    }};
}

#[test]
fn reply_money_80x24() {
    snap_money!("reply_money_80x24", idle_app(80, 24));
}

#[test]
fn reply_money_120x40() {
    snap_money!("reply_money_120x40", idle_app(120, 40));
}

#[test]
fn idle_80x24() {
    snap!("idle_80x24", idle_app(80, 24));
}

#[test]
fn idle_120x40() {
    snap!("idle_120x40", idle_app(120, 40));
}

#[test]
fn loading_80x24() {
    snap!("loading_80x24", loading_app(80, 24));
}

#[test]
fn loading_120x40() {
    snap!("loading_120x40", loading_app(120, 40));
}

#[test]
fn generating_80x24() {
    snap!("generating_80x24", generating_app(80, 24));
}

#[test]
fn generating_120x40() {
    snap!("generating_120x40", generating_app(120, 40));
}

#[test]
fn help_80x24() {
    let mut app = idle_app(80, 24);
    key(&mut app, KeyCode::F(1), KeyModifiers::NONE);
    snap!("help_80x24", app);
}

#[test]
fn help_120x40() {
    let mut app = idle_app(120, 40);
    key(&mut app, KeyCode::F(1), KeyModifiers::NONE);
    snap!("help_120x40", app);
}

#[test]
fn too_small_50x12() {
    snap!("too_small_50x12", idle_app(50, 12));
}

#[test]
fn generating_screen_shows_the_live_figures() {
    // Independent of the stored snapshots: the facts a user must see mid-reply.
    let screen = render(&generating_app(80, 24));
    assert!(screen.contains("● generating"), "{screen}");
    assert!(screen.contains("40.0 tok/s"), "live rate: {screen}");
    assert!(screen.contains("last 52.5 tok/s"), "{screen}");
    assert!(screen.contains("▍"), "stream cursor: {screen}");
    assert!(screen.contains("Power "), "{screen}");
}

#[test]
fn estimated_power_is_marked_on_screen() {
    use llmtop::sensors::scripted::ScriptedSensor;
    let mut app = new_app(80, 24);
    let s = ScriptedSensor {
        with_wall: false,
        cpu_estimated: true,
    };
    support::samples_of(&mut app, s.clone(), 5.0, 5.75);
    support::shell_footer(&mut app, s.clone(), 5.0, 5.75, None);
    let screen = render(&app);
    // CPU at the peak is 42 W, estimated: shown as an estimate, and the total too.
    assert!(screen.contains("~42 W est."), "{screen}");
    assert!(screen.contains("est."), "{screen}");
    assert!(screen.contains("Wh est."), "footer energy marked: {screen}");
}

#[test]
fn model_output_with_control_characters_never_reaches_the_terminal_raw() {
    let mut app = generating_app(80, 24);
    for (i, t) in ["\u{1b}]0;pwned\u{7}", " cleared\u{1b}[2J", "\ttab\u{9b}1m"]
        .iter()
        .enumerate()
    {
        engine(
            &mut app,
            EngineEvent::Token((*t).into()),
            82.0 + 0.01 * i as f64,
        );
    }
    let backend = TestBackend::new(app.width, app.height);
    let mut terminal = Terminal::new(backend).expect("terminal");
    terminal
        .draw(|f| llmtop::dashboard::ui::draw(&app, &Theme::dark(), f))
        .expect("draw");
    let buf = terminal.backend().buffer();
    for cell in buf.content() {
        assert!(
            !cell
                .symbol()
                .chars()
                .any(llmtop::util::sanitize::is_control),
            "raw control character {:?} in a cell",
            cell.symbol()
        );
    }
    let screen = terminal.backend().to_string();
    assert!(screen.contains("\\x1b]0;pwned\\x07"), "{screen}");
    // The conversation itself keeps the model's exact text.
    let last = app.messages.last().expect("reply");
    assert!(last.text.contains("\u{1b}[2J"));
}
