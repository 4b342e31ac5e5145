//! The decode roofline on a scripted model of known size (90 MB of weights a token, 23 040
//! bytes of KV cache per token of context) and a scripted 20 GB/s of RAM: the header while
//! generating, the reply line, the run card and compare all show the figure worked out by hand,
//! and the same one. And CPU contention: the header's mark and the reply line.

use crate::support::*;
use crossterm::event::{KeyCode, KeyModifiers};
use llmtop::accounting::roofline;
use llmtop::dashboard::event::Event;
use llmtop::dashboard::state::App;
use llmtop::engine::scripted::ScriptedEngine;
use llmtop::engine::{EngineEvent, Phase, StopReason};
use llmtop::sensors::bandwidth::{Bandwidth, BandwidthMethod, Ceilings, Memory};

fn ram(gb_s: f64) -> Ceilings {
    Ceilings {
        cpu: Some(Bandwidth {
            memory: Memory::Cpu,
            device: "system RAM".into(),
            read_gb_s: gb_s,
            triad_gb_s: None,
            method: BandwidthMethod::Probe,
            detail: "scripted".into(),
            others_runnable: None,
        }),
        cpu_missing: None,
        gpus: vec![],
    }
}

fn screen(app: &App) -> Vec<String> {
    let theme = llmtop::dashboard::theme::Theme::dark();
    let buf = llmtop::dashboard::ui::render_buffer(app, &theme, app.width, app.height);
    let w = usize::from(app.width);
    buf.content()
        .chunks(w)
        .map(|row| row.iter().map(|c| c.symbol()).collect::<String>())
        .collect()
}

/// 100 tokens at 100 tok/s from a context of 10 tokens: the mean depth is 10 + 100/2 = 60,
/// so a token reads 90 000 000 + 60 x 23 040 = 91 382 400 bytes: 9.138 GB/s at 100 tok/s,
/// 45.7 % of 20 GB/s.
const BYTES: f64 = 91_382_400.0;

fn generating() -> App {
    let mut app = new_app(150, 40);
    loaded(&mut app);
    app.memory = ram(20.0);
    typ(&mut app, "Tell me a story.");
    key(&mut app, KeyCode::Enter, KeyModifiers::NONE);
    engine(&mut app, EngineEvent::ContextDepth(10), 1.0);
    engine(&mut app, EngineEvent::Phase(Phase::Generating), 1.0);
    for i in 0..100 {
        let piece = EngineEvent::Tokens {
            text: "word ".into(),
            count: 1,
        };
        engine(&mut app, piece, 1.0 + f64::from(i) * 0.01);
    }
    app
}

#[test]
fn every_surface_shows_the_figure_worked_out_by_hand() {
    let mut app = generating();
    // The header, live: 99 token gaps in 0.99 s.
    let live = app.live_roofline().expect("live figure");
    assert!((live.tok_s - 100.0).abs() < 1e-9, "{live:?}");
    assert_eq!(live.bytes_per_token, BYTES);
    assert!((live.gb_s - 9.13824).abs() < 1e-9);
    assert!(
        screen(&app)[0].contains("9.14 GB/s 46 %"),
        "{}",
        screen(&app)[0]
    );

    let mut s = stats(100, StopReason::EndOfGeneration);
    s.conversation_tokens = 10;
    s.gen_tok_s = 100.0;
    engine(&mut app, EngineEvent::ReplyDone(s.clone()), 2.0);
    let line = "9.14 GB/s memory (46 % of 20.0 GB/s)";
    let rows = screen(&app).join("\n");
    assert!(rows.contains(line), "{rows}");
    // Idle: the header no longer shows a live figure.
    assert!(!screen(&app)[0].contains("GB/s"));

    // The run card Ctrl-S writes: the same figure, to the byte.
    let tariff = llmtop::accounting::pricing::Tariff::preset("US").expect("US");
    let mut rec = llmtop::accounting::session::SessionRecorder::new(0.0);
    rec.observe(&EngineEvent::Loaded(ScriptedEngine::model_info()), 0.5);
    rec.observe(&EngineEvent::ReplyDone(s.clone()), 2.0);
    let snapshot = llmtop::config::SnapshotSection::default();
    let ctx = llmtop::dashboard::card::CardContext {
        host: llmtop::sensors::host::HostInfo::detect(vec![]),
        tariff: &tariff,
        compare: &[],
        snapshot: &snapshot,
        now: jiff::Timestamp::now(),
    };
    let ledger = llmtop::accounting::ledger::Ledger::new();
    let card = llmtop::dashboard::card::card(&app, &rec, &ledger, ctx).expect("card");
    let on_card = card
        .last_reply
        .as_ref()
        .and_then(|r| r.roofline.clone())
        .expect("card roofline");
    assert_eq!(Some(&on_card), app.reply_roofline(&s).as_ref());
    assert_eq!(on_card.bytes_per_token, BYTES);
    assert_eq!(roofline::text(&on_card), line);
    assert_eq!(card.memory, Some(ram(20.0)));
    let md = llmtop::report::snapshot::markdown_summary(&card);
    assert!(
        md.contains(&format!(
            "**Memory** (last reply): {line}, 91.4 MB a token at a mean depth of 60 tokens"
        )),
        "{md}"
    );
    // Written and read back, then compared: the same figures in compare's table.
    let back = llmtop::report::runcard::RunCard::from_json(
        &card.to_json(),
        std::path::Path::new("c.json"),
    )
    .expect("card parses");
    let c = llmtop::report::compare::compare(
        &[("c.json".into(), back)],
        std::slice::from_ref(&tariff),
        llmtop::report::compare::TcoOptions {
            hours_per_day: 8.0,
            years: 3.0,
            hardware: Default::default(),
        },
        vec![],
    );
    let m = &c.machines[0];
    assert_eq!(m.memory_gb_s, Some(on_card.gb_s));
    assert_eq!(m.memory_ceiling_gb_s, Some(20.0));
    assert_eq!(m.ceiling_tok_s, on_card.ceiling_tok_s);
    let table = llmtop::report::compare::render_table(&c);
    assert!(
        table.contains("memory read (GB/s)") && table.contains("9.14"),
        "{table}"
    );
    assert!(
        table.contains("of the ceiling (%)") && table.contains("46"),
        "{table}"
    );
    // compare's SVG: the measured rate against what this machine's memory allows.
    let svg = llmtop::report::compare::render_svg(&c).expect("svg").svg;
    let doc = roxmltree::Document::parse(&svg).expect("svg parses");
    let bar = |which: &str| -> f64 {
        doc.descendants()
            .find(|n| {
                n.attribute("data-panel") == Some("roofline_tok_s")
                    && n.attribute("data-bar") == Some(which)
            })
            .and_then(|n| n.attribute("data-value")?.parse().ok())
            .unwrap_or_else(|| panic!("no {which} bar in {svg}"))
    };
    assert_eq!(bar("measured"), 100.0);
    assert!((bar("memory allows") - 20e9 / BYTES).abs() < 1e-9);
}

#[test]
fn contention_marks_the_header_and_stays_with_the_reply() {
    use llmtop::accounting::contention::Contention;
    let mut app = generating();
    let c = Contention {
        since: 1.5,
        until: None,
        others: 1.0,
        others_max: 1.0,
        free_cpus: 0,
        cpus: 2,
        engine_threads: 2,
        rate_uncontended_tok_s: Some(150.0),
        rate_now_tok_s: Some(1.5),
        rate_low_tok_s: Some(1.5),
    };
    app.update(Event::Contention(Some(c)));
    let head = screen(&app)[0].clone();
    assert!(
        head.contains("contended: 1 other runnable thread, generation −99 %"),
        "{head}"
    );
    app.update(Event::Contention(None));
    assert!(!screen(&app)[0].contains("contended"));
    let mut s = stats(100, StopReason::EndOfGeneration);
    s.gen_tok_s = 30.0;
    engine(&mut app, EngineEvent::ReplyDone(s), 2.0);
    // The reply's own rate against the uncontended one: 1 - 30/150 = 80 % slower.
    let rows = screen(&app).join("\n");
    assert!(
        rows.contains("contended: 1 other runnable thread, generation −80 %"),
        "{rows}"
    );
}
