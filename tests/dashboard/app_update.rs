//! The app as a function: events in, state and effects out. No terminal, no runtime.
use crate::support;

use crossterm::event::{KeyCode, KeyModifiers};
use llmtop::dashboard::event::Event;
use llmtop::dashboard::state::{App, Effect, EngineState, Role};
use llmtop::engine::{Command, EngineEvent, Phase, StopReason};
use support::*;

const NONE: KeyModifiers = KeyModifiers::NONE;
const CTRL: KeyModifiers = KeyModifiers::CONTROL;

#[test]
fn enter_sends_the_trimmed_message_and_clears_the_input() {
    let mut app = new_app(80, 24);
    loaded(&mut app);
    typ(&mut app, "  hello  ");
    let fx = key(&mut app, KeyCode::Enter, NONE);
    assert_eq!(fx, vec![Effect::Engine(Command::Send("hello".into()))]);
    assert_eq!(app.input.text, "");
    assert_eq!(app.messages.len(), 2);
    assert_eq!(
        (app.messages[0].role, app.messages[0].text.as_str()),
        (Role::User, "hello")
    );
    assert_eq!(app.messages[1].role, Role::Assistant);
    assert_eq!(app.engine, EngineState::Prefill);
    // An empty input sends nothing.
    assert!(key(&mut app, KeyCode::Enter, NONE).is_empty());
}

#[test]
fn typing_while_loading_queues_the_message_until_loaded() {
    let mut app = new_app(80, 24);
    engine(&mut app, EngineEvent::LoadProgress(0.3), 0.1);
    assert_eq!(app.engine, EngineState::Loading(0.3));
    typ(&mut app, "hi");
    assert!(key(&mut app, KeyCode::Enter, NONE).is_empty());
    assert_eq!(app.pending.as_deref(), Some("hi"));
    let fx = engine(
        &mut app,
        EngineEvent::Loaded(llmtop::engine::scripted::ScriptedEngine::model_info()),
        0.4,
    );
    assert_eq!(fx, vec![Effect::Engine(Command::Send("hi".into()))]);
    assert_eq!(app.pending, None);
}

#[test]
fn tokens_stream_into_the_reply_with_a_live_rate() {
    let mut app = new_app(80, 24);
    loaded(&mut app);
    typ(&mut app, "q");
    key(&mut app, KeyCode::Enter, NONE);
    engine(&mut app, EngineEvent::Phase(Phase::Generating), 1.0);
    for i in 0..11 {
        engine(
            &mut app,
            EngineEvent::Tokens {
                text: format!("w{i} "),
                count: 1,
            },
            1.0 + 0.1 * f64::from(i),
        );
    }
    assert_eq!(app.messages[1].text, "w0 w1 w2 w3 w4 w5 w6 w7 w8 w9 w10 ");
    // 10 intervals over 1.0 s.
    let r = app.live.tok_s().expect("rate");
    assert!((r - 10.0).abs() < 1e-9, "{r}");
    engine(
        &mut app,
        EngineEvent::ReplyDone(stats(11, StopReason::EndOfGeneration)),
        2.1,
    );
    assert_eq!(app.engine, EngineState::Idle);
    assert_eq!(
        app.messages[1].stats.as_ref().map(|s| s.generated_tokens),
        Some(11)
    );
}

#[test]
fn batched_tokens_count_every_token_in_the_live_rate() {
    // The engine sends text a few tokens at a time: the rate counts tokens, not events.
    let mut app = new_app(80, 24);
    loaded(&mut app);
    typ(&mut app, "q");
    key(&mut app, KeyCode::Enter, NONE);
    engine(&mut app, EngineEvent::Phase(Phase::Generating), 1.0);
    // The first token alone at 1.0 s, then 20 more in 4 batches up to 1.5 s: 40 tok/s.
    let batches = [(1, 1.0), (5, 1.125), (5, 1.25), (5, 1.375), (5, 1.5)];
    for (i, (count, at)) in batches.into_iter().enumerate() {
        engine(
            &mut app,
            EngineEvent::Tokens {
                text: format!("b{i} "),
                count,
            },
            at,
        );
    }
    assert_eq!(app.live.tokens, 21);
    let r = app.live.tok_s().expect("rate");
    assert!((r - 40.0).abs() < 1e-9, "{r}");
    assert_eq!(app.messages[1].text, "b0 b1 b2 b3 b4 ");
}

#[test]
fn esc_cancels_a_running_reply_and_the_state_says_so() {
    let mut app = new_app(80, 24);
    loaded(&mut app);
    // Esc while idle does nothing.
    assert!(key(&mut app, KeyCode::Esc, NONE).is_empty());
    typ(&mut app, "q");
    key(&mut app, KeyCode::Enter, NONE);
    engine(
        &mut app,
        EngineEvent::Tokens {
            text: "a".into(),
            count: 1,
        },
        1.0,
    );
    assert_eq!(
        key(&mut app, KeyCode::Esc, NONE),
        vec![Effect::Engine(Command::Cancel)]
    );
    engine(
        &mut app,
        EngineEvent::ReplyDone(stats(1, StopReason::Cancelled)),
        1.2,
    );
    engine(&mut app, EngineEvent::Phase(Phase::Idle), 1.2);
    assert_eq!(app.engine, EngineState::Cancelled);
}

#[test]
fn first_ctrl_c_during_generation_cancels_second_quits() {
    let mut app = new_app(80, 24);
    loaded(&mut app);
    typ(&mut app, "q");
    key(&mut app, KeyCode::Enter, NONE);
    engine(
        &mut app,
        EngineEvent::Tokens {
            text: "a".into(),
            count: 1,
        },
        1.0,
    );
    assert_eq!(
        key(&mut app, KeyCode::Char('c'), CTRL),
        vec![Effect::Engine(Command::Cancel)]
    );
    assert!(!app.quitting);
    engine(
        &mut app,
        EngineEvent::ReplyDone(stats(1, StopReason::Cancelled)),
        1.1,
    );
    assert_eq!(key(&mut app, KeyCode::Char('c'), CTRL), vec![Effect::Quit]);
    assert!(app.quitting);
    // Ctrl-Q quits at once, even mid-reply.
    let mut app = new_app(80, 24);
    loaded(&mut app);
    typ(&mut app, "q");
    key(&mut app, KeyCode::Enter, NONE);
    assert_eq!(key(&mut app, KeyCode::Char('q'), CTRL), vec![Effect::Quit]);
}

#[test]
fn ctrl_s_asks_for_a_snapshot_and_shows_where_it_went() {
    let mut app = new_app(80, 24);
    loaded(&mut app);
    assert_eq!(
        key(&mut app, KeyCode::Char('s'), CTRL),
        vec![Effect::Snapshot]
    );
    app.update(Event::SnapshotWritten(Ok("/tmp/x/run.json".into())));
    assert_eq!(
        app.status.as_ref().map(|s| s.text.as_str()),
        Some("snapshot: /tmp/x/run.json")
    );
    // The status line expires with time carried by ticks.
    app.update(Event::Tick { now: 100.0 });
    assert_eq!(app.status, None);
}

#[test]
fn letters_go_to_the_input_never_to_commands() {
    let mut app = new_app(80, 24);
    loaded(&mut app);
    for c in ['q', 's', 't', 'l', 'c', '?'] {
        assert!(key(&mut app, KeyCode::Char(c), NONE).is_empty());
    }
    assert_eq!(app.input.text, "qstlc?");
}

#[test]
fn editing_keys_work_like_a_line_editor() {
    let mut app = new_app(80, 24);
    typ(&mut app, "hello big world");
    key(&mut app, KeyCode::Char('w'), CTRL);
    assert_eq!(app.input.text, "hello big ");
    key(&mut app, KeyCode::Home, NONE);
    key(&mut app, KeyCode::Delete, NONE);
    key(&mut app, KeyCode::Right, NONE);
    typ(&mut app, "X");
    assert_eq!(app.input.text, "eXllo big ");
    key(&mut app, KeyCode::End, NONE);
    key(&mut app, KeyCode::Backspace, NONE);
    assert_eq!(app.input.text, "eXllo big");
    // Alt-Enter and Shift-Enter insert newlines; a paste keeps its lines.
    key(&mut app, KeyCode::Enter, KeyModifiers::ALT);
    key(&mut app, KeyCode::Enter, KeyModifiers::SHIFT);
    app.update(Event::Paste("a\r\nb".into()));
    assert_eq!(app.input.text, "eXllo big\n\na\nb");
    // Up moves between lines before it reaches history.
    key(&mut app, KeyCode::Up, NONE);
    assert_eq!(app.input.cursor, "eXllo big\n\na".len());
}

#[test]
fn history_walks_back_and_restores_the_draft() {
    let mut app = new_app(80, 24);
    loaded(&mut app);
    for m in ["one", "two"] {
        typ(&mut app, m);
        key(&mut app, KeyCode::Enter, NONE);
        engine(
            &mut app,
            EngineEvent::ReplyDone(stats(1, StopReason::EndOfGeneration)),
            1.0,
        );
    }
    typ(&mut app, "dra");
    key(&mut app, KeyCode::Up, NONE);
    assert_eq!(app.input.text, "two");
    key(&mut app, KeyCode::Up, NONE);
    assert_eq!(app.input.text, "one");
    key(&mut app, KeyCode::Up, NONE);
    assert_eq!(app.input.text, "one");
    key(&mut app, KeyCode::Down, NONE);
    key(&mut app, KeyCode::Down, NONE);
    assert_eq!(app.input.text, "dra");
}

#[test]
fn page_keys_scroll_within_the_conversation_and_resize_clamps() {
    let mut app = new_app(80, 24);
    loaded(&mut app);
    typ(&mut app, "q");
    key(&mut app, KeyCode::Enter, NONE);
    let long: String = (0..60).map(|i| format!("line{i}\n")).collect();
    engine(
        &mut app,
        EngineEvent::Tokens {
            text: long,
            count: 1,
        },
        1.0,
    );
    engine(
        &mut app,
        EngineEvent::ReplyDone(stats(60, StopReason::EndOfGeneration)),
        2.0,
    );
    let (_, h) = llmtop::dashboard::ui::messages_size(&app);
    let total = llmtop::dashboard::ui::chat::rows(&app, 46).len();
    // You + q + blank + Model + 60 lines + the stats line, its memory figure on a second
    // line at this width.
    assert_eq!(total, 66);
    key(&mut app, KeyCode::PageUp, NONE);
    assert_eq!(app.scroll, usize::from(h) - 1);
    for _ in 0..10 {
        key(&mut app, KeyCode::PageUp, NONE);
    }
    assert_eq!(app.scroll, total - usize::from(h), "clamped at the top");
    key(&mut app, KeyCode::PageDown, NONE);
    assert_eq!(app.scroll, total - usize::from(h) - (usize::from(h) - 1));
    // A much taller terminal shows everything: the scroll clamps to the new maximum.
    app.update(Event::Resize {
        width: 80,
        height: 200,
    });
    assert_eq!(app.scroll, 0);
}

#[test]
fn new_chat_clears_and_resets_the_engine_conversation() {
    let mut app = new_app(80, 24);
    loaded(&mut app);
    typ(&mut app, "q");
    key(&mut app, KeyCode::Enter, NONE);
    let fx = key(&mut app, KeyCode::Char('l'), CTRL);
    assert_eq!(
        fx,
        vec![
            Effect::Engine(Command::Cancel),
            Effect::Engine(Command::Reset)
        ]
    );
    assert!(app.messages.is_empty());
}

#[test]
fn ctrl_t_cycles_themes_and_f1_toggles_help() {
    let mut app = new_app(80, 24);
    key(&mut app, KeyCode::Char('t'), CTRL);
    assert_eq!(app.theme_name(), "light");
    for _ in 0..3 {
        key(&mut app, KeyCode::Char('t'), CTRL);
    }
    assert_eq!(app.theme_name(), "dark");
    key(&mut app, KeyCode::F(1), NONE);
    assert!(app.show_help);
    key(&mut app, KeyCode::Esc, NONE);
    assert!(!app.show_help);
}

#[test]
fn samples_feed_gauges_and_history() {
    let mut app = new_app(80, 24);
    // 61 s of samples at 4 Hz: one history point per second.
    samples(&mut app, 0.0, 60.0);
    assert_eq!(app.hist.power.len(), 61);
    // At the samples' own times: the first of each second.
    assert_eq!(app.hist.power.first().map(|p| p.0), Some(0.0));
    assert_eq!(app.hist.power.last().map(|p| p.0), Some(60.0));
    assert_eq!(app.hist.cpu_temp.len(), 61);
    assert_eq!(app.hist.parts.len(), 2, "GPU and CPU");
    // Total power is GPU + CPU (no wall): 32 + 190 * load, load 0.5 at t = 60.
    let total = app.gauges.total.as_ref().expect("total");
    assert_eq!(total.label, "Sum");
    assert!((total.watts - 127.0).abs() < 1e-9, "{}", total.watts);
    assert_eq!(app.gauges.fan_rpm, Some(1400.0)); // fan1 at load 0.5 (t = 60)
}

#[test]
fn footer_figures_come_from_the_shell_and_redraw_only_on_change() {
    use llmtop::accounting::session::{CostLine, SessionEnergy};
    let mut app = new_app(80, 24);
    app.dirty = false;
    let footer = Event::Footer {
        energy: SessionEnergy {
            wh: 1.5,
            estimated: true,
            ..SessionEnergy::default()
        },
        cost: CostLine {
            session: Some("$0.00042".into()),
            region: Some("US".into()),
            ..CostLine::default()
        },
    };
    assert!(app.update(footer.clone()).is_empty());
    assert!(app.dirty);
    assert_eq!(app.energy.wh, 1.5);
    assert_eq!(app.cost.session.as_deref(), Some("$0.00042"));
    app.dirty = false;
    app.update(footer);
    assert!(!app.dirty, "same figures: no frame");
}

#[test]
fn sigterm_and_sighup_quit_even_while_generating() {
    for signal in ["SIGTERM", "SIGHUP"] {
        let mut app = new_app(80, 24);
        loaded(&mut app);
        typ(&mut app, "hello");
        key(&mut app, KeyCode::Enter, NONE);
        assert!(app.engine.busy());
        assert_eq!(app.update(Event::Terminate(signal)), vec![Effect::Quit]);
        assert!(app.quitting);
    }
}

#[test]
fn a_failed_load_blocks_sending_with_a_reason() {
    let mut app = new_app(80, 24);
    engine(&mut app, EngineEvent::Failed("not a GGUF file".into()), 0.1);
    assert_eq!(app.engine, EngineState::Failed("not a GGUF file".into()));
    typ(&mut app, "q");
    assert!(key(&mut app, KeyCode::Enter, NONE).is_empty());
    assert!(
        app.status
            .as_ref()
            .expect("status")
            .text
            .contains("not a GGUF file")
    );
}

mod gauge_totals {
    use llmtop::accounting::ledger::Ledger;
    use llmtop::dashboard::event::Event;
    use llmtop::dashboard::state::{GaugeSummary, power_items};
    use llmtop::sensors::{Covers, Method, Quantity, Reading, Sample, Source};

    /// The gauges' power as the dashboard gets it: the readings through the ledger (two
    /// samples, so each source can carry a total).
    fn summarize(readings: &[Reading]) -> GaugeSummary {
        let mut l = Ledger::new();
        for t in [0.0, 0.25] {
            l.push(&Sample {
                t,
                readings: readings.to_vec(),
            });
        }
        let (total, parts) = power_items(&l.power_view());
        GaugeSummary {
            total,
            parts,
            ..GaugeSummary::default()
        }
    }

    fn watts(id: &str, source: Source, covers: Covers, w: f64, method: Method) -> Reading {
        Reading {
            id: id.into(),
            device: id.into(),
            label: id.into(),
            quantity: Quantity::Power,
            value: Some(w),
            limit: None,
            source,
            covers,
            method,
            rejected: None,
            via: None,
        }
    }

    #[test]
    fn total_follows_the_energy_accounting_order() {
        let gpu = watts(
            "nvml:0:power",
            Source::Nvml,
            Covers::GpuBoard,
            100.0,
            Method::Measured,
        );
        let pkg = watts(
            "rapl:package-0:power",
            Source::Rapl,
            Covers::CpuPackage,
            20.0,
            Method::Measured,
        );
        let dram = watts(
            "rapl:dram:power",
            Source::Rapl,
            Covers::Dram,
            3.0,
            Method::Measured,
        );
        let psys = watts(
            "rapl:psys:power",
            Source::Rapl,
            Covers::Platform,
            45.0,
            Method::Measured,
        );
        let wall = watts(
            "plug:shelly:power",
            Source::Plug,
            Covers::Wall,
            160.0,
            Method::Measured,
        );

        // Components only: GPU + package + DRAM.
        let g = summarize(&[gpu.clone(), pkg.clone(), dram.clone()]);
        assert_eq!(g.total.as_ref().map(|t| t.watts), Some(123.0));
        // psys is the whole platform: the total is psys alone (the ledger's basis order),
        // while the breakdown still lists the GPU; package and DRAM are inside psys.
        let g = summarize(&[gpu.clone(), pkg.clone(), dram.clone(), psys.clone()]);
        assert_eq!(g.total.as_ref().map(|t| t.watts), Some(45.0));
        let parts: Vec<f64> = g.parts.iter().map(|p| p.watts).collect();
        assert_eq!(parts, vec![100.0, 45.0]);
        // A wall plug wins over everything.
        let g = summarize(&[gpu, pkg, dram, psys, wall]);
        assert_eq!(g.total.as_ref().map(|t| t.watts), Some(160.0));
        // An estimate stays marked as one.
        let est = watts(
            "estimate:cpu:power",
            Source::Estimate,
            Covers::CpuPackage,
            40.0,
            Method::Estimated,
        );
        let g = summarize(&[est]);
        assert!(
            g.total
                .as_ref()
                .is_some_and(|t| t.estimated && t.watts == 40.0)
        );
    }

    #[test]
    fn a_plug_in_samples_of_its_own_never_flips_the_gauge() {
        // The local sensors at 4 Hz and the plug at 1 Hz, each in its own sample, as the
        // sampler sends them: the total stays the wall's on every frame.
        let mut app = crate::support::new_app(80, 24);
        let mut l = Ledger::new().expecting(Some(llmtop::accounting::energy::TotalBasis::Wall));
        let mut labels = Vec::new();
        for i in 0..=24 {
            let t = f64::from(i) * 0.25;
            let mut samples = vec![Sample {
                t,
                readings: vec![
                    watts(
                        "nvml:0:power",
                        Source::Nvml,
                        Covers::GpuBoard,
                        100.0,
                        Method::Measured,
                    ),
                    watts(
                        "rapl:package-0:power",
                        Source::Rapl,
                        Covers::CpuPackage,
                        30.0,
                        Method::Measured,
                    ),
                ],
            }];
            if i % 4 == 1 {
                samples.push(Sample {
                    t: t + 0.02,
                    readings: vec![watts(
                        "plug:p:power",
                        Source::Plug,
                        Covers::Wall,
                        150.0,
                        Method::Measured,
                    )],
                });
            }
            for s in samples {
                l.push(&s);
                app.update(Event::Power(l.power_view()));
                app.update(Event::Sample(s));
                if let Some(total) = &app.gauges.total {
                    labels.push((total.label.clone(), total.watts));
                }
            }
        }
        assert!(labels.len() > 20, "{labels:?}");
        assert!(
            labels.iter().all(|(l, w)| l == "Wall" && *w == 150.0),
            "{labels:?}"
        );
        // The parts are still listed beside it.
        assert_eq!(app.gauges.parts.len(), 2);
    }

    #[test]
    fn psys_alone_is_the_platform_not_a_sum_of_parts() {
        let psys = watts(
            "rapl:psys:power",
            Source::Rapl,
            Covers::Platform,
            45.0,
            Method::Measured,
        );
        let g = summarize(&[psys]);
        assert_eq!(g.total.as_ref().map(|t| t.label.as_str()), Some("Platform"));
    }
}

/// The header's mark: there while the shell says an episode is on, gone when it ends, with the
/// engine state still in view on a narrow terminal.
#[test]
fn throttle_mark_comes_and_goes_with_the_episode() {
    use llmtop::accounting::throttle::{Episode, Evidence, Signal};
    let header = |app: &llmtop::dashboard::state::App, w: u16| {
        let theme = llmtop::dashboard::theme::Theme::dark();
        let buf = llmtop::dashboard::ui::render_buffer(app, &theme, w, 24);
        buf.content()[..usize::from(w)]
            .iter()
            .map(|c| c.symbol())
            .collect::<String>()
    };
    let mut app = new_app(80, 24);
    loaded(&mut app);
    engine(&mut app, EngineEvent::Phase(Phase::Generating), 1.0);
    assert!(!header(&app, 80).contains("throttled"));
    let episode = Episode {
        since: 12.0,
        until: None,
        rate_before_tok_s: 40.0,
        rate_low_tok_s: 26.0,
        evidence: vec![Evidence {
            signal: Signal::ClockBelowMax,
            id: "cpu:clock".into(),
            name: "cpufreq CPU clock (mean of 8)".into(),
            since: 11.5,
            value: 2450.0,
            limit: Some(4900.0),
        }],
    };
    app.dirty = false;
    app.update(Event::Throttle(Some(episode.clone())));
    assert!(app.dirty, "the mark must be drawn");
    let h = header(&app, 80);
    assert!(
        h.trim_end().ends_with("▼ throttled −35% ● generating"),
        "{h}"
    );
    // A new low of the same episode does not force a frame by itself.
    app.dirty = false;
    app.update(Event::Throttle(Some(Episode {
        rate_low_tok_s: 20.0,
        ..episode
    })));
    assert!(!app.dirty);
    // Narrow: the model name gives way, the mark and the state stay.
    let h = header(&app, 60);
    assert!(h.contains("▼ throttled −50% ● generating"), "{h}");
    app.update(Event::Throttle(None));
    assert!(app.dirty && app.throttle.is_none());
    assert!(!header(&app, 80).contains("throttled"));
}

fn figures(seq: usize, energy_j: f64) -> llmtop::accounting::session::ReplyFigures {
    llmtop::accounting::session::ReplyFigures {
        seq,
        tokens: 10,
        energy_j,
        j_per_token: Some(energy_j / 10.0),
        net_j: None,
        net_j_per_token: None,
        cost: Some(energy_j / 3.6e6 * 0.175),
        net_cost: None,
        currency: Some(llmtop::accounting::pricing::Currency::new("USD").expect("USD")),
        estimated: false,
        apportioned: false,
        band: Some(llmtop::accounting::uncertainty::Band::pm(0.05)),
        net_band: None,
        boards: Vec::new(),
    }
}

fn reply(app: &mut App, text: &str, at: f64) {
    typ(app, text);
    key(app, KeyCode::Enter, NONE);
    engine(
        app,
        EngineEvent::Tokens {
            text: "ok".into(),
            count: 1,
        },
        at,
    );
    engine(
        app,
        EngineEvent::ReplyDone(stats(10, StopReason::EndOfGeneration)),
        at + 0.1,
    );
    engine(app, EngineEvent::Phase(Phase::Idle), at + 0.1);
}

fn reply_rows(app: &App) -> Vec<String> {
    llmtop::dashboard::layout::rows(app, 200)
        .into_iter()
        .filter(|r| r.kind == llmtop::dashboard::layout::RowKind::Stats)
        .map(|r| r.text.trim().to_string())
        .collect()
}

#[test]
fn each_reply_keeps_the_figures_settled_for_it() {
    let mut app = new_app(80, 24);
    loaded(&mut app);
    reply(&mut app, "first", 1.0);
    reply(&mut app, "second", 2.0);
    // The ledger may settle them in any order; each finds its own reply.
    app.dirty = false;
    app.update(Event::ReplyFigures(figures(1, 200.0)));
    assert!(app.dirty);
    app.update(Event::ReplyFigures(figures(0, 41.0)));
    let answers: Vec<_> = app
        .messages
        .iter()
        .filter(|m| m.role == Role::Assistant)
        .collect();
    assert_eq!(answers[0].figures.as_ref().map(|f| f.energy_j), Some(41.0));
    assert_eq!(answers[1].figures.as_ref().map(|f| f.energy_j), Some(200.0));
    // 41 J at $0.175/kWh is $0.0000020: tiny, so the price of a million tokens comes too
    // ($0.0000020 / 10 tokens x 1M = $0.20).
    assert_eq!(
        reply_rows(&app),
        [
            // 10 tokens from a context of 12: the scripted model's 90 MB + 17 x 23 040 bytes a
            // token at 52.5 tok/s.
            "10 tok · 52.5 tok/s · TTFT 84 ms · 4.75 GB/s memory",
            "41 J ±5 % · 4.10 J/tok · 0.00020 ¢ · $0.20 / 1M tok",
            "10 tok · 52.5 tok/s · TTFT 84 ms · 4.75 GB/s memory",
            "200 J ±5 % · 20.0 J/tok · 0.00097 ¢ · $0.97 / 1M tok",
        ]
    );

    // A new conversation: figures of the old replies have no message left, and the next
    // reply is numbered after them.
    key(&mut app, KeyCode::Char('l'), CTRL);
    app.update(Event::ReplyFigures(figures(0, 41.0)));
    reply(&mut app, "third", 3.0);
    app.update(Event::ReplyFigures(figures(2, 80.0)));
    let last = app.messages.last().expect("reply");
    assert_eq!(last.reply_seq, Some(2));
    assert_eq!(last.figures.as_ref().map(|f| f.energy_j), Some(80.0));
}

#[test]
fn reply_figures_say_estimate_and_net_of_idle() {
    let mut app = new_app(80, 24);
    loaded(&mut app);
    reply(&mut app, "hi", 1.0);
    let mut f = figures(0, 5000.0);
    f.estimated = true;
    f.net_j = Some(2000.0);
    f.net_j_per_token = Some(200.0);
    f.net_cost = Some(2000.0 / 3.6e6 * 0.175);
    // An estimate's band (wider than ±25 %: said in words), a narrow one net of idle.
    f.band = Some(llmtop::accounting::uncertainty::Band {
        lo: -0.672,
        hi: 1.625,
    });
    f.net_band = Some(llmtop::accounting::uncertainty::Band::pm(0.2));
    app.update(Event::ReplyFigures(f));
    // 5000 J = 1.39 Wh at $0.175/kWh: $0.000243 (0.024 ¢), $24.31 a million tokens at 10 a
    // reply; net 2000 J is 0.0097 ¢.
    assert_eq!(
        reply_rows(&app)[1..],
        [
            "est. 1.4 Wh · could be −67 %…+163 % · 500.0 J/tok · 0.024 ¢ · $24.31 / 1M tok",
            "net of idle 2,000 J ±20 % · 200.0 J/tok · 0.0097 ¢",
        ]
    );
}

/// F2 with a server attached: the picker opens on the model in use, Down and Enter ask the
/// engine for the next one; without a server it says why there is nothing to pick.
#[test]
fn model_picker_switches_the_servers_model() {
    use llmtop::engine::BackendStatus;
    let mut app = new_app(80, 24);
    loaded(&mut app);
    let fx = key(&mut app, KeyCode::F(2), KeyModifiers::NONE);
    assert!(fx.is_empty() && app.picker.is_none());
    assert!(
        app.status
            .as_ref()
            .is_some_and(|s| s.text.contains("--attach URL")),
        "{:?}",
        app.status
    );
    engine(
        &mut app,
        EngineEvent::Backend(Box::new(BackendStatus {
            models: vec!["a".into(), "b".into(), "c".into()],
            current: "b".into(),
            ..Default::default()
        })),
        1.0,
    );
    key(&mut app, KeyCode::F(2), KeyModifiers::NONE);
    assert_eq!(app.picker, Some(1), "opens on the model in use");
    key(&mut app, KeyCode::Down, KeyModifiers::NONE);
    key(&mut app, KeyCode::Down, KeyModifiers::NONE);
    assert_eq!(app.picker, Some(0), "wraps around");
    let fx = key(&mut app, KeyCode::Enter, KeyModifiers::NONE);
    assert_eq!(fx, vec![Effect::Engine(Command::UseModel("a".into()))]);
    assert!(app.picker.is_none());
    assert!(app.input.text.is_empty(), "Enter did not send a message");
    // Esc closes without a switch.
    key(&mut app, KeyCode::F(2), KeyModifiers::NONE);
    let fx = key(&mut app, KeyCode::Esc, KeyModifiers::NONE);
    assert!(fx.is_empty() && app.picker.is_none());
}
