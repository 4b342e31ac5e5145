//! Run cards: round trip, schema validation, fingerprints, and snapshots on disk.
use crate::common;

use llmtop::accounting::ledger::Ledger;
use llmtop::accounting::pricing::Tariff;
use llmtop::report::runcard::CardSpans;
use llmtop::report::runcard::{RunCard, RunCardError, SCHEMA, fingerprint};
use llmtop::report::snapshot::{self, SnapshotError, buffer_to_svg, markdown_summary};
use llmtop::sensors::{Covers, Method, Quantity, Reading, Sample, Source};
use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::style::{Color, Modifier, Style};
use std::path::{Path, PathBuf};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/runcards")
        .join(name)
}

fn mac() -> RunCard {
    RunCard::load(&fixture("mac-mini.json")).expect("fixture loads")
}

#[test]
fn fixtures_load_and_round_trip() {
    for name in ["mac-mini.json", "nuc.json", "rtx4090.json"] {
        let card = RunCard::load(&fixture(name)).expect(name);
        assert_eq!(card.schema, SCHEMA);
        let text = card.to_json();
        let back = RunCard::from_json(&text, Path::new("mem")).expect("round trip");
        assert_eq!(back, card, "{name}");
    }
    let c = mac();
    assert_eq!(c.host.hostname, "fixture-mac-mini");
    let e = c
        .last_reply
        .as_ref()
        .and_then(|r| r.energy.as_ref())
        .expect("energy");
    assert_eq!(e.total_j, 2400.0);
    assert_eq!(e.sources[0].covers, "wall");
    assert_eq!(c.session.thermal.peak_temp_c(), Some(68.0));
}

#[test]
fn pricing_the_card_uses_hand_computed_costs() {
    let mut c = mac();
    let de = Tariff::preset("DE").expect("DE");
    let compare = Tariff::compare_set(&Default::default(), &[]).expect("US, DE, DK");
    // A ledger with a 100 W wall plug: the reply (0 to 24 s) drew 2400 J, the session (0 to
    // 73 s) 7300 J, as the fixture card says.
    let mut ledger = Ledger::new().priced(de.clone(), "2025-06-01T12:00:00Z".parse().expect("t"));
    for i in 0..=80 {
        let t = f64::from(i);
        ledger.push(&Sample {
            t,
            readings: vec![Reading {
                id: "plug:p:energy".into(),
                device: "plug".into(),
                label: "wall".into(),
                quantity: Quantity::Energy,
                value: Some(100.0 * t),
                limit: None,
                source: Source::Plug,
                covers: Covers::Wall,
                method: Method::Counter,
                rejected: None,
                via: None,
            }],
        });
    }
    let spans = CardSpans {
        reply: Some((0.0, 24.0)),
        session: Some((0.0, 73.0)),
    };
    c.price(&de, &compare, &ledger, spans);
    let labels: Vec<_> = c.cost.iter().map(|x| x.region.as_str()).collect();
    assert_eq!(labels, ["DE", "US", "DK"], "configured first, no duplicate");
    let de_cost = &c.cost[0];
    // Last reply 2400 J = 2/3000 kWh x 0.38 = 0.000253333 EUR.
    assert!((de_cost.last_reply.expect("reply") - 2400.0 / 3.6e6 * 0.38).abs() < 1e-12);
    // Session 7300 J x 381 g/kWh = 0.772583 g.
    assert!((de_cost.co2_g_session.expect("co2") - 7300.0 / 3.6e6 * 381.0).abs() < 1e-12);
    // 2.0 J/token: 1M tokens = 2 MJ = 0.5556 kWh x 0.175 USD = 0.097222 USD.
    assert!((c.cost[1].per_million_tokens.expect("per M") - 2e6 / 3.6e6 * 0.175).abs() < 1e-12);
    let md = markdown_summary(&c);
    assert!(md.contains("| DE | €0.38 | 0.025 €ct |"), "{md}");
    assert!(md.contains("| US | $0.175 | 0.012 ¢ |"), "{md}");
}

fn load_text(text: &str) -> String {
    let e = RunCard::from_json(text, Path::new("card.json")).expect_err("must fail");
    let msg = e.to_string();
    assert!(!msg.contains('\n'), "one line: {msg}");
    msg
}

#[test]
fn bad_cards_give_one_clear_line() {
    let good = std::fs::read_to_string(fixture("nuc.json")).expect("read");
    let msg = load_text(&good.replace("llmtop.runcard/1", "llmtop.runcard/2"));
    assert_eq!(
        msg,
        "card.json: run card schema \"llmtop.runcard/2\" is not supported; this llmtop reads \"llmtop.runcard/1\" (a newer llmtop wrote it? upgrade llmtop)"
    );
    let msg = load_text(r#"{"hello": 1}"#);
    assert!(
        msg.starts_with("card.json: not an llmtop run card"),
        "{msg}"
    );
    let msg = load_text(&good[..good.len() / 2]);
    assert!(
        msg.starts_with("card.json: not valid JSON at line"),
        "{msg}"
    );
    let mut v: serde_json::Value = serde_json::from_str(&good).expect("json");
    v.as_object_mut().expect("object").remove("session");
    let msg = load_text(&v.to_string());
    assert_eq!(msg, "card.json: invalid run card: missing field `session`");
    let mut v: serde_json::Value = serde_json::from_str(&good).expect("json");
    v["created"] = "yesterday".into();
    assert!(load_text(&v.to_string()).contains("created = \"yesterday\" is not an RFC 3339 time"));
    let mut v: serde_json::Value = serde_json::from_str(&good).expect("json");
    v["session"]["energy"]["total_j"] = (-5.0).into();
    assert!(load_text(&v.to_string()).contains("session.energy.total_j = -5"));
    let missing = RunCard::load(Path::new("/nonexistent/card.json")).expect_err("missing");
    assert!(matches!(missing, RunCardError::Read { .. }));
}

#[test]
fn fingerprint_hashes_only_the_first_mib() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = dir.path().join("a.gguf");
    let b = dir.path().join("b.gguf");
    let mut bytes = vec![7u8; 1024 * 1024];
    std::fs::write(&a, &bytes).expect("write a");
    bytes.extend_from_slice(b"tail differs");
    std::fs::write(&b, &bytes).expect("write b");
    assert_eq!(fingerprint(&a).expect("a"), fingerprint(&b).expect("b"));
    // sha256("abc"), FIPS 180-2 test vector.
    let small = dir.path().join("abc");
    std::fs::write(&small, b"abc").expect("write");
    assert_eq!(
        fingerprint(&small).expect("abc"),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
}

fn screen() -> Buffer {
    let mut buf = Buffer::empty(Rect::new(0, 0, 20, 3));
    buf.set_string(0, 0, "tok/s <42> & W", Style::default().fg(Color::Green));
    buf.set_string(
        0,
        1,
        "hot",
        Style::default()
            .fg(Color::Rgb(255, 0, 0))
            .bg(Color::Indexed(196))
            .add_modifier(Modifier::BOLD),
    );
    buf.set_string(0, 2, "漢字ok", Style::default());
    buf
}

#[test]
fn svg_of_a_buffer() {
    let svg = buffer_to_svg(&screen());
    assert!(
        svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"168\" height=\"51\"")
    );
    assert!(
        svg.contains(r##"fill="#00cd00">tok/s &lt;42&gt; &amp; W</text>"##),
        "{svg}"
    );
    // "hot" on Indexed(196), which is pure red in the xterm cube: 3 cells x 8.4 px.
    assert!(
        svg.contains(r##"<rect x="0" y="17" width="25.2" height="17" fill="#ff0000"/>"##),
        "{svg}"
    );
    assert!(svg.contains(r#"font-weight="bold">hot</text>"#), "{svg}");
    // Wide characters: "漢字ok" spans 6 cells, so the run is 6 x 8.4 px wide with no extra blanks.
    assert!(
        svg.contains(r##"<text x="0" y="47.6" textLength="50.4" lengthAdjust="spacingAndGlyphs" xml:space="preserve" fill="#d0d0d0">漢字ok</text>"##),
        "{svg}"
    );
    assert!(svg.trim_end().ends_with("</svg>"));
}

#[test]
fn snapshot_writes_three_files_named_by_time_and_host() {
    let dir = tempfile::tempdir().expect("tempdir");
    let snaps = dir.path().join("snaps");
    let card = mac();
    let p = snapshot::write(&snaps, &card, Some(&screen())).expect("written");
    assert_eq!(p.json, snaps.join("20250601T100000Z-fixture-mac-mini.json"));
    assert_eq!(
        p.markdown,
        snaps.join("20250601T100000Z-fixture-mac-mini.md")
    );
    assert_eq!(
        p.svg,
        Some(snaps.join("20250601T100000Z-fixture-mac-mini.svg"))
    );
    let back = RunCard::load(&p.json).expect("reads back");
    assert_eq!(back, card);
    let md = std::fs::read_to_string(&p.markdown).expect("md");
    assert!(md.starts_with("## llmtop run card: Llama-2-7B-Chat on fixture-mac-mini"));
    assert!(
        md.contains("| generation | 30.0 tok/s | 30.2 tok/s |"),
        "{md}"
    );
    assert!(md.contains("| J/token | 2.00 | 2.03 |"), "{md}");
    // A second snapshot in the same second does not overwrite the first; no temp files remain.
    let p2 = snapshot::write(&snaps, &card, None).expect("second");
    assert_eq!(
        p2.json,
        snaps.join("20250601T100000Z-fixture-mac-mini-2.json")
    );
    // No screen, but the card has a series: the SVG is its chart of power and tok/s.
    assert_eq!(
        p2.svg,
        Some(snaps.join("20250601T100000Z-fixture-mac-mini-2.svg"))
    );
    let mut names: Vec<String> = std::fs::read_dir(&snaps)
        .expect("ls")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names.len(), 6, "{names:?}");
    assert!(names.iter().all(|n| !n.starts_with('.')), "{names:?}");
}

#[test]
fn unwritable_snapshot_dir_is_one_clear_error() {
    // Tests run as root in CI, where permission bits stop nothing: use a path below a regular
    // file (ENOTDIR for everyone) and /proc (the kernel refuses to create files there).
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("plain-file");
    std::fs::write(&file, b"x").expect("write");
    let target = file.join("snapshots");
    let e = snapshot::write(&target, &mac(), None).expect_err("under a file");
    assert!(matches!(e, SnapshotError::Dir { .. }));
    let msg = e.to_string();
    assert!(
        msg.starts_with(&format!("cannot write snapshot to {}: ", target.display())),
        "{msg}"
    );
    assert!(
        msg.ends_with("set [snapshot] dir in the config to a writable directory"),
        "{msg}"
    );
    assert!(!msg.contains('\n'));

    let e = snapshot::write(Path::new("/proc/llmtop-snapshots"), &mac(), None).expect_err("/proc");
    assert!(
        e.to_string()
            .starts_with("cannot write snapshot to /proc/llmtop-snapshots: ")
    );
}

#[test]
fn transcript_follows_the_config_switch() {
    use llmtop::report::runcard::TranscriptTurn;
    let turns = vec![TranscriptTurn {
        role: "user".into(),
        text: "hi".into(),
    }];
    let mut c = mac();
    c.set_transcript(turns.clone(), true);
    assert_eq!(c.transcript.as_deref(), Some(&turns[..]));
    c.set_transcript(turns, false);
    assert_eq!(c.transcript, None);
    assert!(!c.to_json().contains("\"hi\""));
}

#[test]
fn series_points_take_the_ledgers_power_and_keep_the_last_temperatures() {
    use llmtop::accounting::session::SessionRecorder;
    let r = |id: &str, q: Quantity, v: Option<f64>, covers: Covers| Reading {
        id: id.into(),
        device: "dev".into(),
        label: id.into(),
        quantity: q,
        value: v,
        limit: None,
        source: Source::Hwmon,
        covers,
        method: Method::Measured,
        rejected: None,
        via: None,
    };
    let components = vec![
        r("gpu", Quantity::Power, Some(250.0), Covers::GpuBoard),
        r("cpu", Quantity::Power, Some(45.5), Covers::CpuPackage),
        r("t", Quantity::Temperature, Some(71.0), Covers::CpuPackage),
        r("f", Quantity::FanRpm, Some(1800.0), Covers::Other),
        r("gone", Quantity::Temperature, None, Covers::Other),
    ];
    let mut metering = llmtop::metering::Metering::new(Ledger::new());
    let mut rec = SessionRecorder::new(0.0);
    rec.set_rate(Some(33.0));
    for t in [10.0, 10.5, 11.0, 12.5] {
        let s = Sample {
            t,
            readings: components.clone(),
        };
        metering.fold(&s, &mut [&mut rec]);
    }
    let p = rec.series().last().expect("point").clone();
    assert_eq!(p.t_s, 2.5);
    assert_eq!(p.power_w, Some(295.5), "GPU + CPU, the components basis");
    assert_eq!(p.tok_s, Some(33.0));
    assert_eq!(p.temps_c.get("dev t"), Some(&71.0));
    assert_eq!(p.fans_rpm.get("dev f"), Some(&1800.0));
    assert_eq!(p.temps_c.len(), 1, "unreadable sensor left out");
    // A wall plug, in samples of its own: the plug alone is the machine's power, and the
    // points keep the local sensors' temperatures.
    rec.set_rate(None);
    for t in [13.0, 13.5, 14.0] {
        let s = Sample {
            t,
            readings: vec![r("plug", Quantity::Power, Some(320.0), Covers::Wall)],
        };
        metering.fold(&s, &mut [&mut rec]);
    }
    let p = rec.series().last().expect("point");
    assert_eq!(p.power_w, Some(320.0));
    assert_eq!(p.temps_c.get("dev t"), Some(&71.0));
}

#[test]
fn undefined_rates_survive_the_round_trip() {
    // A reply cancelled before its first token has no rate; JSON writes NaN as null.
    let mut c = mac();
    if let Some(r) = c.last_reply.as_mut() {
        r.gen_tok_s = f64::NAN;
        if let Some(e) = r.energy.as_mut() {
            e.peak_w = f64::NAN;
        }
    }
    let text = c.to_json();
    assert!(text.contains("\"gen_tok_s\": null"), "{text}");
    let back = RunCard::from_json(&text, Path::new("mem")).expect("loads");
    let r = back.last_reply.expect("reply");
    assert!(r.gen_tok_s.is_nan());
    assert!(r.energy.expect("energy").peak_w.is_nan());
    assert!(markdown_summary(&c).contains("| generation | n/a | 30.2 tok/s |"));
}

#[test]
fn card_records_the_settings_the_engine_reported() {
    use llmtop::accounting::session::SessionRecorder;
    use llmtop::config::SnapshotSection;
    use llmtop::config::keys::KeyMap;
    use llmtop::dashboard::card::{self, CardContext};
    use llmtop::dashboard::event::Event;
    use llmtop::dashboard::state::App;
    use llmtop::engine::{EngineEvent, EngineSettings};
    use llmtop::sensors::host::HostInfo;

    // The real engine with context and threads left at "default" and greedy sampling: the
    // card must record what ran, not the requests (0, 0) nor values greedy ignores.
    let mut s = EngineSettings::with_model(common::model_path());
    s.temperature = 0.0;
    s.system_prompt = "You are a terse lighthouse keeper.".into();
    let e = common::start(s);
    let info = e.info.clone();
    e.handle.shutdown();

    let mut app = App::new(KeyMap::default(), vec!["dark".into()], 0, "m".into());
    app.update(Event::Engine {
        event: EngineEvent::Loaded(info.clone()),
        now: 0.0,
    });
    let rec = SessionRecorder::new(0.0);
    let card = card::card(
        &app,
        &rec,
        &Ledger::new(),
        CardContext {
            host: HostInfo::detect(Vec::new()),
            tariff: &Tariff::preset("US").expect("US"),
            compare: &[],
            snapshot: &SnapshotSection::default(),
            now: "2025-06-01T12:00:00Z".parse().expect("time"),
        },
    )
    .expect("card");
    let st = &card.settings;
    // SmolLM2's 8192-token training context capped at 4096: what llama.cpp allocated.
    assert_eq!(st.n_ctx, 4096);
    let cores = sysinfo::System::physical_core_count()
        .ok()
        .map(|n| n as u32)
        .filter(|n| *n > 0);
    assert_eq!(st.threads, cores.unwrap_or(4));
    assert_eq!(st.threads, info.in_effect.threads);
    assert_eq!(
        st.system_prompt.as_deref(),
        Some("You are a terse lighthouse keeper.")
    );
    let t = st.chat_template.as_ref().expect("template recorded");
    assert_eq!(t.source, "model");
    let g = llmtop::engine::gguf::read(&common::model_path()).expect("header");
    assert_eq!(Some(t.template.as_str()), g.chat_template());
    assert_eq!((st.temperature, st.sampler.as_str()), (0.0, "greedy"));
    assert_eq!(
        (st.top_k, st.top_p, st.min_p, st.seed),
        (None, None, None, None)
    );

    // In the file: no top_k & co. at all, the new fields present, and it loads back.
    let json = card.to_json();
    let v: serde_json::Value = serde_json::from_str(&json).expect("json");
    let written = v["settings"].as_object().expect("settings");
    for absent in ["top_k", "top_p", "min_p", "seed"] {
        assert!(!written.contains_key(absent), "{absent} written: {json}");
    }
    assert_eq!(written["n_ctx"], 4096);
    assert_eq!(
        written["system_prompt"],
        "You are a terse lighthouse keeper."
    );
    let back = RunCard::from_json(&json, Path::new("mem")).expect("loads");
    assert_eq!(back.settings, card.settings);
    assert!(markdown_summary(&card).contains("n_ctx 4096, sampler greedy, chat template model"));
}

#[test]
fn older_cards_with_ignored_sampling_values_still_load() {
    // nuc.json predates the sampler field: greedy (temperature 0) with top_k and the rest.
    let c = RunCard::load(&fixture("nuc.json")).expect("loads");
    assert_eq!(c.settings.top_k, Some(40));
    assert_eq!(c.settings.system_prompt, None);
    assert_eq!(c.settings.chat_template, None);
    assert_eq!(c.settings.sampler_text(), "greedy");
    assert!(markdown_summary(&c).contains("sampler greedy"));
}

#[test]
fn the_cards_markdown_shows_each_band_and_a_wide_one_in_words() {
    let dir = tempfile::tempdir().expect("dir");
    let cards = crate::compare::banded_cards(dir.path());
    let md = |i: usize| {
        let card = RunCard::load(&cards[i]).expect("card");
        llmtop::report::snapshot::markdown_summary(&card)
    };
    // The Mac at a plug's ±5 %: digits beside each energy figure.
    let mac = md(0);
    assert!(
        mac.contains("| energy | 0.667 Wh ±5 % | 2.028 Wh ±5 % |"),
        "{mac}"
    );
    assert!(mac.contains("Total 2400 J ±5 % (0.667 Wh"), "{mac}");
    assert!(!mac.contains("could be"), "{mac}");
    // The RTX box from the CPU estimate: the band in words.
    let rtx = md(2);
    assert!(
        rtx.contains("| energy | 1.000 Wh (could be −67 %…+163 %) |"),
        "{rtx}"
    );
    assert!(
        rtx.contains("Total 3600 J (could be −67 %…+163 %) (1.000 Wh"),
        "{rtx}"
    );
}
