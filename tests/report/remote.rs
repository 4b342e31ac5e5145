//! `--remote`'s reading of other hosts' /metrics: llmtop's own exposition parsed back, the
//! rates over the window from the host's counters, and junk answers refused in one line.

use llmtop::accounting::ledger::Ledger;
use llmtop::accounting::pricing::Tariff;
use llmtop::export::prometheus::MetricsState;
use llmtop::export::scrape::{HostStatus, RemoteHost, parse};
use llmtop::sensors::{Covers, Method, Quantity, Reading, Sample, Source};

fn reading(id: &str, q: Quantity, v: f64, source: Source, covers: Covers) -> Reading {
    Reading {
        id: id.into(),
        device: "box, \"A\"".into(),
        label: id.into(),
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

/// A wall counter at 200 W and a temperature, `t` seconds in.
fn sample(t: f64) -> Sample {
    Sample {
        t,
        readings: vec![
            reading(
                "plug:energy",
                Quantity::Energy,
                200.0 * t,
                Source::Plug,
                Covers::Wall,
            ),
            reading(
                "plug:power",
                Quantity::Power,
                200.0,
                Source::Plug,
                Covers::Wall,
            ),
            reading(
                "temp",
                Quantity::Temperature,
                70.0 + t,
                Source::Hwmon,
                Covers::CpuPackage,
            ),
        ],
    }
}

#[test]
fn llmtops_own_exposition_reads_back_into_rates() {
    let tariff = Tariff::preset("DE").expect("DE");
    let mut st = MetricsState::new(Some(tariff.clone()));
    let mut ledger = Ledger::new().priced(tariff, jiff::Timestamp::now());
    let mut host = RemoteHost::new("http://a:9464");
    assert_eq!(host.status, HostStatus::Waiting);
    for t in 0..=10 {
        let t = f64::from(t);
        ledger.push(&sample(t));
        st.apply_sample(&sample(t));
        st.apply_ledger(&ledger);
        if t > 0.0 {
            // 20 tokens a second: 10 J per token at 200 W.
            st.record_reply(20, 20.0);
        }
        let s = parse(&st.render()).expect("parses");
        host.apply(t, Ok(s));
    }
    let s = host.last.clone().expect("scraped");
    let (w, basis) = s.system_w.clone().expect("system power");
    assert_eq!((w, basis.as_str()), (200.0, "wall"));
    assert_eq!(s.version.as_deref(), Some(env!("CARGO_PKG_VERSION")));
    // A device name with a comma and quotes: the value still reads right.
    assert_eq!(s.temps.len(), 1, "{:?}", s.temps);
    assert_eq!(s.temps[0].1, 80.0);
    assert_eq!(host.hottest().map(|h| h.1), Some(80.0));
    assert!((host.tok_s().expect("rate") - 20.0).abs() < 1e-9);
    assert!((host.j_per_token().expect("J/token") - 10.0).abs() < 1e-9);
    let (per_h, cur) = host.cost_per_hour().expect("cost");
    assert_eq!(cur, "EUR");
    assert!((per_h - 0.2 * 0.38).abs() < 1e-9, "{per_h}");

    // The host restarts: its counters begin at 0 again; no negative rate, no stale window.
    let fresh = MetricsState::new(None);
    host.apply(11.0, Ok(parse(&fresh.render()).expect("parses")));
    assert_eq!(host.j_per_token(), None);
    // It goes away: a status, the last figures kept.
    host.apply(12.0, Err("http://a:9464/metrics: no answer".into()));
    assert!(matches!(host.status, HostStatus::Down(_)));
    assert!(host.last.is_some());
}

#[test]
fn hostile_label_values_round_trip_through_the_exporters_own_output() {
    // Quote, comma, equals, backslash and newline: prometheus-parse kept the escapes (and a
    // `,` or `=` mislabelled the row); every character must come back as it went out.
    let hostile = "a\"b,c=d\\e\nf";
    let mut st = MetricsState::new(None);
    let mut ledger = Ledger::new();
    for t in 0..=2 {
        let mut s = sample(f64::from(t));
        for r in &mut s.readings {
            r.device = hostile.into();
            r.label = format!("{}{hostile}", r.id);
        }
        ledger.push(&s);
        st.apply_sample(&s);
        st.apply_ledger(&ledger);
    }
    let text = st.render();
    assert!(
        text.contains("a\\\"b,c=d\\\\e\\nf"),
        "escaped on the way out:\n{text}"
    );
    let s = parse(&text).expect("parses");
    assert!(!s.channels.is_empty(), "{text}");
    for c in &s.channels {
        assert_eq!(c.device, hostile, "{c:?}");
        assert!(
            c.label.starts_with("plug:") && c.label.ends_with(hostile),
            "{c:?}"
        );
        assert_eq!((c.source.as_str(), c.covers.as_str()), ("plug", "wall"));
        assert_eq!(c.watts, 200.0);
    }
    assert_eq!(s.temps, vec![(format!("{hostile} temp{hostile}"), 72.0)]);
}

#[test]
fn answers_that_are_not_llmtop_metrics_are_one_line_each() {
    for junk in [
        "",
        "<html><body>nginx</body></html>",
        "node_cpu_seconds_total{cpu=\"0\"} 12\n",
        "llmtop_system_power_watts{basis=\"wall\" oops\n",
        &"x".repeat(100_000),
    ] {
        let e = parse(junk).expect_err("not llmtop");
        assert!(!e.contains('\n'), "{e}");
        assert!(e.contains("llmtop"), "{e}");
    }
}
