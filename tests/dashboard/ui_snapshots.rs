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
            EngineEvent::Tokens {
                text: (*t).into(),
                count: 1,
            },
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

/// The gauges pane alone, cut from the whole screen as the terminal shows it.
fn gauges_pane(app: &App, theme: &Theme) -> String {
    let buf = llmtop::dashboard::ui::render_buffer(app, theme, app.width, app.height);
    let area = llmtop::dashboard::ui::layout(app, *buf.area()).gauges;
    let mut out = String::new();
    for y in area.top()..area.bottom() {
        for x in area.left()..area.right() {
            out.push_str(buf[(x, y)].symbol());
        }
        out.push('\n');
    }
    out
}

fn rich_app(w: u16, h: u16) -> App {
    use llmtop::sensors::scripted::ScriptedSensor;
    support::timeline_app(
        w,
        h,
        ScriptedSensor {
            with_wall: true,
            cpu_estimated: false,
        },
    )
}

fn one_source_app(w: u16, h: u16) -> App {
    support::timeline_app(w, h, support::OneSourceSensor)
}

macro_rules! pane_snap {
    ($name:expr, $app:expr) => {{
        let pane = gauges_pane(&$app, &Theme::dark());
        // The charts' dots depend on float rounding at pixel edges; the figures do not.
        insta::assert_snapshot!($name, pane);
    }};
}

#[test]
fn gauges_rich_80x24() {
    pane_snap!("gauges_rich_80x24", rich_app(80, 24));
}

#[test]
fn gauges_rich_120x40() {
    pane_snap!("gauges_rich_120x40", rich_app(120, 40));
}

#[test]
fn gauges_one_source_80x24() {
    pane_snap!("gauges_one_source_80x24", one_source_app(80, 24));
}

#[test]
fn gauges_one_source_120x40() {
    pane_snap!("gauges_one_source_120x40", one_source_app(120, 40));
}

fn is_braille(c: char) -> bool {
    ('\u{2801}'..='\u{28ff}').contains(&c)
}

#[test]
fn one_source_machine_gets_big_charts_and_no_empty_rows() {
    for (w, h) in [(80, 24), (120, 40)] {
        let pane = gauges_pane(&one_source_app(w, h), &Theme::dark());
        assert!(!pane.contains("n/a"), "{pane}");
        assert!(!pane.contains("GPU"), "no GPU on this machine: {pane}");
        // The one source, marked as the estimate it is, and the temperature with its limit.
        assert!(pane.contains("Power ~10 W est. CPU"), "{pane}");
        assert!(pane.contains("CPU  68°C  limit 95°C"), "{pane}");
        assert!(pane.contains("Speed now 48.0 tok/s"), "{pane}");
        // Three charts (power, temperature, speed), each with its time axis.
        assert_eq!(pane.matches("last 3 min").count(), 3, "{pane}");
        // Every row inside the border is used, and all but the five figure lines (power,
        // temperature, speed now and last, prefill) and the three axes are chart.
        let inner: Vec<&str> = pane
            .lines()
            .skip(1)
            .take(usize::from(h) - 4)
            .map(|l| l.trim_matches('│'))
            .collect();
        assert!(inner.iter().all(|l| !l.trim().is_empty()), "{pane}");
        // A chart row has dots, or is a top row with only its scale label.
        let chart_rows = inner
            .iter()
            .filter(|l| {
                l.chars().any(is_braille)
                    || ["15 W", "120°C", "50 tok/s"].iter().any(|s| l.trim() == *s)
            })
            .count();
        assert_eq!(chart_rows, inner.len() - 5 - 3, "{pane}");
    }
}

#[test]
fn rich_machine_charts_every_source_within_the_space() {
    let pane = gauges_pane(&rich_app(120, 40), &Theme::dark());
    for want in [
        "W wall plug",
        "GPU",
        "W nvml",
        "W rapl",
        "limit 100°C",
        "limit 90°C",
        "Speed now 48.0 tok/s",
        "last 24.0 tok/s",
        "VRAM",
        "RPM",
    ] {
        assert!(pane.contains(want), "{want}: {pane}");
    }
    // Wall, GPU, CPU, two temperatures and speed: six charts, six axes.
    assert_eq!(pane.matches("last 3 min").count(), 6, "{pane}");
    // Scales: the wall peaks at (180 + 42) x 1.15 + 25 = 280 W, the GPU at 180 W.
    assert!(pane.contains("300 W"), "{pane}");
    assert!(pane.contains("200 W"), "{pane}");
    assert!(pane.contains("50 tok/s"), "48 tok/s at the peak: {pane}");
    // At 80x24 the figures all stay; charts give way.
    let small = gauges_pane(&rich_app(80, 24), &Theme::dark());
    for want in [
        "W wall plug",
        "W nvml",
        "W rapl",
        "limit 100°C",
        "Speed now",
    ] {
        assert!(small.contains(want), "{want}: {small}");
    }
    assert!(small.matches("last 3 min").count() >= 3, "{small}");
}

#[test]
fn the_time_axis_comes_from_timestamps_not_sample_counts() {
    use llmtop::dashboard::event::Event;
    use llmtop::sensors::scripted::ScriptedSensor;
    use llmtop::sensors::{Sample, Sensor};
    // The same 41 samples, one a second and then one every 10 s.
    for (step, label) in [(1.0, "last 1 min"), (10.0, "last 10 min")] {
        let mut app = new_app(80, 24);
        loaded(&mut app);
        let mut s = ScriptedSensor::default();
        let mut ledger = llmtop::accounting::ledger::Ledger::new();
        for i in 0..=40 {
            let t = f64::from(i) * step;
            let sample = Sample {
                t,
                readings: s.read(t),
            };
            ledger.push(&sample);
            app.update(Event::Power(ledger.power_view()));
            app.update(Event::Sample(sample));
        }
        assert_eq!(app.hist.power.len(), 41);
        let pane = gauges_pane(&app, &Theme::dark());
        assert!(pane.contains(label), "{label}: {pane}");
    }
}

#[test]
fn mono_theme_draws_blocks_and_colour_themes_braille() {
    let app = rich_app(120, 40);
    let mono = llmtop::dashboard::theme::Theme::parse(
        llmtop::dashboard::theme::BUILTIN[3].1,
        std::path::Path::new("themes/mono.toml"),
        None,
    )
    .expect("mono");
    let pane = gauges_pane(&app, &mono);
    assert!(!pane.chars().any(is_braille), "{pane}");
    assert!(pane.contains('█'), "{pane}");
    let pane = gauges_pane(&app, &Theme::dark());
    assert!(pane.chars().any(is_braille), "{pane}");
}

#[test]
fn gauges_never_panic_at_any_size() {
    let app = rich_app(120, 40);
    let one = one_source_app(80, 24);
    for w in 0..48u16 {
        for h in 0..44u16 {
            for a in [&app, &one] {
                let mut terminal = Terminal::new(TestBackend::new(48, 44)).expect("terminal");
                terminal
                    .draw(|f| {
                        llmtop::dashboard::ui::gauges::draw(
                            a,
                            &Theme::dark(),
                            f,
                            ratatui::layout::Rect::new(0, 0, w, h),
                        )
                    })
                    .expect("draw");
            }
        }
    }
    // And the whole screen at sizes down to a single cell.
    for (w, h) in [
        (1, 1),
        (3, 2),
        (20, 5),
        (59, 15),
        (60, 16),
        (61, 17),
        (250, 70),
    ] {
        let _ = render(&rich_app(w, h));
    }
}

/// Attached to a (scripted) Ollama: the header names the server and where the model sits,
/// the reply's figures say whose they are, and F2 opens the picker.
fn attached_app(w: u16, h: u16) -> App {
    use llmtop::engine::{BackendStatus, LoadedModel, Origin, Origins, StopReason};
    let mut app = new_app(w, h);
    let mut info = llmtop::engine::scripted::ScriptedEngine::model_info();
    info.name = "llama3.2:latest".into();
    info.quantization = "Q4_K_M".into();
    info.file_size = 0;
    info.backend = Some("Ollama 0.5.7 at 127.0.0.1:11434".into());
    engine(&mut app, EngineEvent::Loaded(info), 0.5);
    engine(
        &mut app,
        EngineEvent::Backend(Box::new(BackendStatus {
            description: "Ollama 0.5.7 at 127.0.0.1:11434".into(),
            models: vec!["llama3.2:latest".into(), "qwen2.5:0.5b".into()],
            current: "llama3.2:latest".into(),
            loaded: vec![LoadedModel {
                name: "llama3.2:latest".into(),
                size: Some(3_000_000_000),
                size_vram: Some(1_860_000_000),
                context_length: Some(4096),
                expires_at: None,
            }],
        })),
        0.5,
    );
    typ(&mut app, "Why is the sky blue?");
    key(&mut app, KeyCode::Enter, KeyModifiers::NONE);
    engine(
        &mut app,
        EngineEvent::Tokens {
            text: "Rayleigh scattering.".into(),
            count: 4,
        },
        1.0,
    );
    let mut s = stats(5, StopReason::EndOfGeneration);
    s.load_ms = Some(1500.0);
    s.origins = Origins {
        tokens: Origin::Server,
        ttft: Origin::Client,
        prefill: Origin::Server,
        generation: Origin::Server,
    };
    engine(&mut app, EngineEvent::ReplyDone(s), 1.2);
    engine(
        &mut app,
        EngineEvent::Phase(llmtop::engine::Phase::Idle),
        1.2,
    );
    app
}

#[test]
fn attached_80x24() {
    snap!("attached_80x24", attached_app(80, 24));
}

#[test]
fn attached_picker_120x40() {
    let mut app = attached_app(120, 40);
    key(&mut app, KeyCode::F(2), KeyModifiers::NONE);
    snap!("attached_picker_120x40", app);
}

/// A server's strings (model names, its version, its errors) never reach the terminal raw.
#[test]
fn server_strings_with_control_characters_are_escaped() {
    use llmtop::engine::BackendStatus;
    let evil = "m\u{1b}[2J\u{7}";
    let mut app = new_app(120, 40);
    let mut info = llmtop::engine::scripted::ScriptedEngine::model_info();
    info.name = evil.into();
    info.backend = Some(format!("Ollama {evil} at 127.0.0.1:1"));
    engine(&mut app, EngineEvent::Loaded(info), 0.5);
    engine(
        &mut app,
        EngineEvent::Backend(Box::new(BackendStatus {
            models: vec![evil.into()],
            current: evil.into(),
            ..Default::default()
        })),
        0.5,
    );
    engine(
        &mut app,
        EngineEvent::Failed(format!("the server says: {evil}")),
        0.6,
    );
    key(&mut app, KeyCode::F(2), KeyModifiers::NONE);
    let screen = render(&app);
    assert!(
        !screen.contains('\u{1b}') && !screen.contains('\u{7}'),
        "{screen}"
    );
    assert!(screen.contains("m\\x1b[2J\\x07"), "{screen}");
}

#[test]
fn an_attached_servers_share_sits_beside_the_machines_total_and_f1_explains_it() {
    use llmtop::accounting::share::ServerShare;
    let mut app = generating_app(120, 40);
    use llmtop::dashboard::event::Event;
    app.update(Event::ServerShare(ServerShare {
        pid: 4242,
        joules: 5400.0,
        watts_now: Some(23.45),
        cpu_share: Some(0.61),
        gpu_share: None,
        vram_bytes: None,
        covers: "CPU package above idle\u{1b}[2J".into(),
        method: "attribution (Kepler's split)",
        until: Some(5.0),
    }));
    let gauges = gauges_pane(&app, &Theme::dark());
    // 5400 J = 1.5 Wh; the power over the latest interval, one decimal.
    assert!(
        gauges.contains(" server 23.4 W · 1.5 Wh attrib."),
        "{gauges}"
    );
    let power_row = gauges
        .lines()
        .position(|l| l.contains("Power "))
        .expect("power");
    let share_row = gauges
        .lines()
        .position(|l| l.contains(" server "))
        .expect("share");
    assert!(share_row > power_row, "{gauges}");
    key(&mut app, KeyCode::F(1), KeyModifiers::NONE);
    let help = render(&app);
    assert!(help.contains("Server share (pid 4242):"), "{help}");
    assert!(help.contains("attribution (Kepler's split)"), "{help}");
    // What the server's process table said is escaped, never obeyed.
    assert!(
        help.contains("\\x1b[2J") && !help.contains('\u{1b}'),
        "{help}"
    );
}

fn request(
    id: u64,
    model: &str,
    status: u16,
    outcome: &str,
) -> llmtop::proxy::record::RequestRecord {
    use llmtop::proxy::record::{RequestEnergy, RequestRecord, SCHEMA};
    let ok = status == 200 && outcome == "complete";
    RequestRecord {
        schema: SCHEMA.into(),
        id,
        time: Some(format!("2026-05-01T12:00:{:02}Z", id)),
        client: format!("127.0.0.1:5{id:04}"),
        method: "POST".into(),
        endpoint: "/v1/chat/completions".into(),
        status,
        outcome: outcome.into(),
        error: None,
        model: Some(model.into()),
        backend: "llama-server".into(),
        prompt_tokens: ok.then_some(31 + id),
        cached_tokens: ok.then_some(if id.is_multiple_of(2) { 12 } else { 0 }),
        generated_tokens: ok.then_some(100 + 10 * id),
        tokens_from: "llama-server timings".into(),
        ttft_s: ok.then_some(0.05 * id as f64),
        prefill_tok_s: ok.then_some(800.0),
        decode_tok_s: ok.then_some(40.0 + id as f64),
        rates_from: "server".into(),
        wall_s: 2.5,
        bytes_in: 120,
        bytes_out: 9000,
        energy: Some(RequestEnergy {
            joules: 12.5 * id as f64,
            method: "attributed".into(),
            covers: Some("wall plug".into()),
            idle_w: Some(30.0),
            net_of_idle: true,
            split: "by tokens".into(),
            prompt_token_weight: 0.1,
            weight_from: "server timings".into(),
            intervals: 10,
            shared_s: 1.0,
        }),
        cost: Some(0.000_001 * id as f64),
        cost_text: Some(format!("0.0000{id} ¢")),
        currency: Some("USD".into()),
        region: Some("US".into()),
        co2_g: Some(0.01),
        wire_errors: Vec::new(),
    }
}

fn proxy_app(w: u16, h: u16) -> App {
    let mut app = new_app(w, h);
    samples(&mut app, 0.0, 5.0);
    app.engine = llmtop::dashboard::state::EngineState::Idle;
    app.model_label = "proxy → http://127.0.0.1:8080".into();
    app.requests = Some(llmtop::dashboard::state::RequestTable {
        listen: "127.0.0.1:11435".into(),
        upstream: "http://127.0.0.1:8080".into(),
        ..Default::default()
    });
    let records = vec![
        request(
            1,
            "/models/SmolLM2-135M-Instruct.Q4_1.gguf",
            200,
            "complete",
        ),
        request(2, "llama3:8b", 200, "complete"),
        request(3, "\u{1b}[31mred\u{7}", 200, "complete"),
        request(4, "llama3:8b", 502, "upstream_unreachable"),
        request(5, "llama3:8b", 200, "client_closed"),
    ];
    app.update(llmtop::dashboard::event::Event::Requests {
        records,
        pending: 2,
    });
    app
}

macro_rules! snap_proxy {
    ($name:expr, $app:expr) => {{
        let screen = render(&$app);
        // Times are shown in the local zone.
        insta::with_settings!({filters => vec![
            (r"│\d\d:\d\d:\d\d ", "│hh:mm:ss "),
            (r"│\d\d:\d\d ", "│mm:ss "),
        ]}, {
            insta::assert_snapshot!($name, screen);
        });
    }};
}

#[test]
fn proxy_requests_80x24() {
    let app = proxy_app(80, 24);
    let t = app.requests.as_ref().expect("table");
    assert_eq!(t.rows.front().map(|r| r.id), Some(5), "newest first");
    assert_eq!((t.total, t.pending), (5, 2));
    let screen = render(&app);
    assert!(
        !screen.contains('\u{1b}'),
        "escape from the network reached the screen"
    );
    assert!(screen.contains("\\x1b"), "{screen}");
    snap_proxy!("proxy_requests_80x24", app);
}

#[test]
fn proxy_requests_120x40() {
    snap_proxy!("proxy_requests_120x40", proxy_app(120, 40));
}
