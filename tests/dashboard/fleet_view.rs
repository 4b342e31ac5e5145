//! `llmtop --remote`'s screen (the fleet view) in TestBackend: the host table with two hosts up
//! and one down, the selected host's gauges and charts, and the single-host layout without a
//! table.

use llmtop::accounting::ledger::Ledger;
use llmtop::accounting::pricing::Tariff;
use llmtop::dashboard::fleet::{FleetView, normalise, view};
use llmtop::dashboard::theme::Theme;
use llmtop::export::prometheus::MetricsState;
use llmtop::export::scrape::parse;
use llmtop::sensors::{Covers, Method, Quantity, Reading, Sample, Source};
use ratatui::Terminal;
use ratatui::backend::TestBackend;

fn reading(id: &str, label: &str, q: Quantity, v: f64, source: Source, covers: Covers) -> Reading {
    Reading {
        id: id.into(),
        device: "box".into(),
        label: label.into(),
        quantity: q,
        value: Some(v),
        limit: None,
        source,
        covers,
        method: if q == Quantity::Energy {
            Method::Counter
        } else {
            Method::Measured
        },
        rejected: None,
        via: None,
    }
}

/// A host at `wall` W (of which `gpu` W on the GPU) generating `tok_s`, priced in `region`, as
/// its /metrics reads over 30 one-second scrapes.
fn feed(view: &mut FleetView, i: usize, wall: f64, gpu: f64, tok_s: u64, region: &str) {
    let tariff = Tariff::preset(region).expect("region");
    let mut st = MetricsState::new(Some(tariff.clone()));
    let origin = jiff::Timestamp::from_second(1_750_000_000).expect("time");
    let mut ledger = Ledger::new().priced(tariff.with_time_zone(jiff::tz::TimeZone::UTC), origin);
    for t in 0..=30 {
        let t = f64::from(t);
        let s = Sample {
            t,
            readings: vec![
                reading(
                    "plug:e",
                    "wall plug",
                    Quantity::Energy,
                    wall * t,
                    Source::Plug,
                    Covers::Wall,
                ),
                reading(
                    "plug:p",
                    "wall plug",
                    Quantity::Power,
                    wall,
                    Source::Plug,
                    Covers::Wall,
                ),
                reading(
                    "gpu:p",
                    "GPU",
                    Quantity::Power,
                    gpu,
                    Source::Nvml,
                    Covers::GpuBoard,
                ),
                reading(
                    "gpu:t",
                    "edge",
                    Quantity::Temperature,
                    40.0 + gpu / 5.0,
                    Source::Nvml,
                    Covers::GpuBoard,
                ),
                reading(
                    "fan",
                    "fan1",
                    Quantity::FanRpm,
                    900.0 + gpu,
                    Source::Hwmon,
                    Covers::Other,
                ),
            ],
        };
        ledger.push(&s);
        st.apply_sample(&s);
        st.apply_ledger(&ledger);
        if t > 0.0 {
            st.record_reply(tok_s, tok_s as f64);
        }
        view.hosts[i].apply(t, Ok(parse(&st.render()).expect("parses")));
    }
    view.now = 30.0;
}

fn screen(view: &FleetView, w: u16, h: u16) -> String {
    let mut term = Terminal::new(TestBackend::new(w, h)).expect("terminal");
    term.draw(|f| view::draw(view, &Theme::dark(), f))
        .expect("draw");
    let buf = term.backend().buffer().clone();
    (0..h)
        .map(|y| {
            (0..w)
                .map(|x| buf[(x, y)].symbol().to_string())
                .collect::<String>()
                .trim_end()
                .to_string()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn several_hosts_get_a_table_and_the_selected_ones_gauges() {
    let urls: Vec<String> = [
        "gpu-box:9464",
        "http://mini:9464/metrics",
        "http://gone:9464",
    ]
    .iter()
    .map(|u| normalise(u).expect("url"))
    .collect();
    assert_eq!(urls[0], "http://gpu-box:9464");
    assert_eq!(urls[1], "http://mini:9464");
    let mut view = FleetView::new(&urls);
    feed(&mut view, 0, 300.0, 200.0, 50, "DE");
    feed(&mut view, 1, 40.0, 0.0, 10, "US");
    view.hosts[2].apply(
        30.0,
        Err(
            "http://gone:9464/metrics: no answer within 2000 ms; is `llmtop serve` running there?"
                .into(),
        ),
    );
    let s = screen(&view, 110, 34);
    // 300 W for 50 tok/s is 6 J/token; 40 W for 10 tok/s is 4.
    let row = |host: &str| {
        s.lines()
            .find(|l| l.contains(host))
            .unwrap_or("")
            .to_string()
    };
    assert!(row("gpu-box").contains("300.0 W"), "{s}");
    assert!(row("gpu-box").contains("6.00 J/tok"), "{s}");
    assert!(row("mini").contains("4.00 J/tok"), "{s}");
    assert!(
        row("gone").contains("down: no answer within 2000 ms"),
        "{s}"
    );
    insta::assert_snapshot!("remote_three_hosts", s);

    // The selection moves with the arrows and wraps.
    use crossterm::event::{KeyCode, KeyModifiers};
    assert!(!view.key(KeyCode::Up, KeyModifiers::NONE));
    assert_eq!(view.selected, 2);
    let s = screen(&view, 110, 34);
    assert!(
        s.contains("down: http://gone:9464/metrics: no answer"),
        "{s}"
    );
    assert!(view.key(KeyCode::Char('q'), KeyModifiers::NONE));
}

#[test]
fn one_host_has_no_table() {
    let mut view = FleetView::new(&[normalise("http://gpu-box:9464").expect("url")]);
    feed(&mut view, 0, 300.0, 200.0, 50, "DE");
    let s = screen(&view, 80, 24);
    assert!(!s.contains("Hosts"), "{s}");
    insta::assert_snapshot!("remote_one_host", s);
}
