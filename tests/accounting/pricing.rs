//! Cost, CO2 and money formatting against hand-computed values.

use jiff::Timestamp;
use jiff::civil::date;
use jiff::tz::{TimeZone, offset};
use llmtop::accounting::pricing::{
    Currency, HOURS_PER_MONTH, HOURS_PER_YEAR, PricingError, Tariff, format_co2, format_energy,
    format_j_per_token, format_money, format_per_1000, format_per_million_tokens,
    format_unit_price, is_tiny, project, region,
};
use llmtop::config::{PricingSection, TariffBand, parse};
use std::path::Path;

const KWH: f64 = 3.6e6;

fn close(a: f64, b: f64) {
    assert!((a - b).abs() < 1e-9 * b.abs().max(1.0), "{a} != {b}");
}

fn cur(code: &str) -> Currency {
    Currency::new(code).expect("currency")
}

fn band(from_hour: u8, to_hour: u8, price_per_kwh: f64) -> TariffBand {
    TariffBand {
        from_hour,
        to_hour,
        price_per_kwh,
    }
}

fn own(bands: Vec<TariffBand>) -> PricingSection {
    PricingSection {
        region: String::new(),
        currency: Some("EUR".into()),
        bands,
        ..PricingSection::default()
    }
}

/// Local wall-clock time in a UTC+1 zone (no DST), as an instant.
fn at_plus1(day: i8, hour: i8, minute: i8) -> Timestamp {
    TimeZone::fixed(offset(1))
        .to_timestamp(date(2025, 1, day).at(hour, minute, 0, 0))
        .expect("timestamp")
}

#[test]
fn presets_match_the_table() {
    let de = region("de").expect("DE");
    assert_eq!((de.currency, de.price_per_kwh), ("EUR", 0.38));
    assert_eq!(de.co2_g_per_kwh, Some(381.0));
    assert_eq!(region("US").map(|r| r.price_per_kwh), Some(0.175));
    assert_eq!(region("JP").map(|r| r.currency), Some("JPY"));
    assert_eq!(region("EU").and_then(|r| r.co2_g_per_kwh), None);
    let t = Tariff::preset("DK").expect("DK");
    assert_eq!(t.source, "Eurostat nrg_pc_204, H1 2025");
}

#[test]
fn flat_cost_and_co2() {
    let de = Tariff::preset("DE").expect("DE");
    // 0.1 kWh x 0.38 EUR = 0.038 EUR; x 381 g = 38.1 g.
    close(de.cost_flat(0.1 * KWH), 0.038);
    close(de.co2_g(0.1 * KWH).expect("co2"), 38.1);
    // 1000 J = 1/3600 kWh; x 0.175 USD = 4.8611e-5 USD.
    let us = Tariff::preset("US").expect("US");
    close(us.cost_flat(1000.0), 0.175 / 3600.0);
    assert_eq!(us.format(us.cost_flat(1000.0)), "0.0049 ¢");
    assert_eq!(Tariff::preset("EU").expect("EU").co2_g(KWH), None);
}

#[test]
fn own_price_overrides_preset_but_keeps_its_grid() {
    let p = PricingSection {
        region: "DE".into(),
        price_per_kwh: Some(0.30),
        ..PricingSection::default()
    };
    let t = Tariff::from_config(&p).expect("tariff");
    assert_eq!(t.label, "own");
    assert_eq!(t.currency.code(), "EUR");
    close(t.cost_flat(2.0 * KWH), 0.60);
    close(t.co2_g(2.0 * KWH).expect("co2"), 762.0);
}

#[test]
fn run_from_23_to_01_is_split_across_two_bands() {
    // Evening 21-24 at 0.30, night 0-7 at 0.10, day 7-21 at 0.25.
    let t = Tariff::from_config(&own(vec![
        band(7, 21, 0.25),
        band(21, 24, 0.30),
        band(0, 7, 0.10),
    ]))
    .expect("tariff")
    .with_time_zone(TimeZone::fixed(offset(1)));
    // 2 kWh evenly over 2 h: 1 kWh x 0.30 + 1 kWh x 0.10 = 0.40 EUR.
    close(
        t.cost_over(2.0 * KWH, at_plus1(1, 23, 0), at_plus1(2, 1, 0)),
        0.40,
    );
    // Not hour-aligned: 22:30-00:30, 1.5 h at 0.30 and 0.5 h at 0.10 of 2 kWh over 2 h:
    // 1.5 kWh x 0.30 + 0.5 kWh x 0.10 = 0.50.
    close(
        t.cost_over(2.0 * KWH, at_plus1(1, 22, 30), at_plus1(2, 0, 30)),
        0.50,
    );
    // Instant prices follow local time, not UTC: 23:00 local is 22:00 UTC.
    close(t.price_at(at_plus1(1, 23, 0)), 0.30);
    close(t.price_at(at_plus1(2, 0, 59)), 0.10);
    close(t.cost(KWH, at_plus1(1, 12, 0)), 0.25);
}

#[test]
fn band_crossing_midnight() {
    // Night 22-06 at 0.12 (one band across midnight), day 06-22 at 0.32.
    let t = Tariff::from_config(&own(vec![band(22, 6, 0.12), band(6, 22, 0.32)]))
        .expect("tariff")
        .with_time_zone(TimeZone::fixed(offset(1)));
    // 21:00-23:00: 1 kWh x 0.32 + 1 kWh x 0.12 = 0.44.
    close(
        t.cost_over(2.0 * KWH, at_plus1(1, 21, 0), at_plus1(1, 23, 0)),
        0.44,
    );
    // 23:30-00:30 lies wholly inside the night band.
    close(
        t.cost_over(KWH, at_plus1(1, 23, 30), at_plus1(2, 0, 30)),
        0.12,
    );
    // 05:00-07:00: 0.12 then 0.32.
    close(
        t.cost_over(2.0 * KWH, at_plus1(2, 5, 0), at_plus1(2, 7, 0)),
        0.44,
    );
    // Mean over the day: (8 x 0.12 + 16 x 0.32) / 24 = 6.08 / 24.
    close(t.mean_price_per_kwh(), 6.08 / 24.0);
    assert!(t.is_time_of_use());
}

#[test]
fn bands_follow_dst_when_the_clock_goes_back() {
    if !Path::new("/usr/share/zoneinfo/Europe/Berlin").exists() {
        crate::skip::skipped(
            "no tz database at /usr/share/zoneinfo (scripts/bootstrap.sh installs tzdata)",
        );
        return;
    }
    let berlin = TimeZone::get("Europe/Berlin").expect("Europe/Berlin");
    // 2025-10-26: 03:00 CEST becomes 02:00 CET, so local 02:00-03:00 happens twice.
    // 23:30 UTC (01:30 CEST) to 02:30 UTC (03:30 CET) is 3 h: 0.5 h in hour 1, 2 h in hour 2,
    // 0.5 h in hour 3. Bands: 0-2 at 0.10, 2-3 at 0.50, 3-0 at 0.20 (across midnight).
    let t = Tariff::from_config(&own(vec![
        band(0, 2, 0.10),
        band(2, 3, 0.50),
        band(3, 0, 0.20),
    ]))
    .expect("tariff")
    .with_time_zone(berlin);
    let start: Timestamp = "2025-10-25T23:30:00Z".parse().expect("start");
    let end: Timestamp = "2025-10-26T02:30:00Z".parse().expect("end");
    // 3 kWh over 3 h: 0.5 x 0.10 + 2 x 0.50 + 0.5 x 0.20 = 1.15.
    close(t.cost_over(3.0 * KWH, start, end), 1.15);
}

#[test]
fn zero_length_span_is_priced_at_its_instant() {
    let t = Tariff::from_config(&own(vec![band(22, 6, 0.12), band(6, 22, 0.32)]))
        .expect("tariff")
        .with_time_zone(TimeZone::fixed(offset(1)));
    let t0 = at_plus1(1, 23, 0);
    close(t.cost_over(KWH, t0, t0), 0.12);
}

#[test]
fn money_formatting() {
    assert_eq!(format_money(1234.5, &cur("USD")), "$1,234");
    assert_eq!(format_money(0.38, &cur("eur")), "€0.38");
    assert_eq!(format_money(0.00042, &cur("USD")), "0.042 ¢");
    assert_eq!(format_money(0.015, &cur("USD")), "1.5 ¢");
    assert_eq!(format_money(0.0, &cur("USD")), "$0.00");
    assert_eq!(format_money(0.0, &cur("JPY")), "¥0");
    assert_eq!(format_money(-1.5, &cur("GBP")), "-£1.50");
    assert_eq!(format_money(-0.01234, &cur("USD")), "-1.2 ¢");
    assert_eq!(format_money(31.0, &cur("JPY")), "¥31");
    assert_eq!(format_money(1234.4, &cur("JPY")), "¥1,234");
    assert_eq!(format_money(0.31, &cur("JPY")), "¥0.31");
    assert_eq!(format_money(2.6, &cur("DKK")), "2.60 kr");
    assert_eq!(format_money(5.0, &cur("CHF")), "5.00 CHF");
    assert_eq!(format_money(f64::NAN, &cur("USD")), "n/a");
    assert_eq!(format_money(f64::INFINITY, &cur("USD")), "n/a");
    // Rounding up to a dime writes a dime, not "10.0 ¢".
    assert_eq!(format_money(0.09996, &cur("USD")), "$0.10");
    assert_eq!(format_money(0.0994, &cur("USD")), "9.9 ¢");
    // Below a ten-billionth of a cent is noise: the digits stop there.
    assert_eq!(format_money(1e-15, &cur("USD")), "0.0000000000 ¢");
    assert_eq!(
        format_per_1000(0.00042, &cur("USD"), "replies"),
        "$0.42 / 1000 replies"
    );
    assert_eq!(
        format_per_million_tokens(1.2e-8, &cur("USD")),
        "1.2 ¢ / 1M tok"
    );
    assert_eq!(
        format_per_million_tokens(3.8e-7, &cur("EUR")),
        "€0.38 / 1M tok"
    );
    assert!(is_tiny(0.0099) && !is_tiny(0.01) && !is_tiny(f64::NAN));
    assert_eq!(format_unit_price(0.175, &cur("USD")), "$0.175");
    assert_eq!(format_unit_price(0.2635, &cur("GBP")), "£0.2635");
    assert_eq!(format_unit_price(0.38, &cur("EUR")), "€0.38");
    assert_eq!(format_unit_price(0.3, &cur("EUR")), "€0.30");
    assert_eq!(format_unit_price(31.0, &cur("JPY")), "¥31");
    assert_eq!(format_co2(38.1), "38.1 g CO2e");
    assert_eq!(format_co2(4560.0), "4.56 kg CO2e");
    assert_eq!(format_co2(0.5), "0.50 g CO2e");
}

/// 1.234 x 10^k for k = -9 ..= 4 in each currency: a unit with two or three significant
/// digits at every size (the minor unit below a tenth of the main one, where one is known).
#[test]
fn money_is_readable_from_a_billionth_to_ten_thousand() {
    let table: [(&str, [&str; 14]); 6] = [
        (
            "USD",
            [
                "0.00000012 ¢",
                "0.0000012 ¢",
                "0.000012 ¢",
                "0.00012 ¢",
                "0.0012 ¢",
                "0.012 ¢",
                "0.12 ¢",
                "1.2 ¢",
                "$0.12",
                "$1.23",
                "$12.34",
                "$123",
                "$1,234",
                "$12,340",
            ],
        ),
        (
            "EUR",
            [
                "0.00000012 €ct",
                "0.0000012 €ct",
                "0.000012 €ct",
                "0.00012 €ct",
                "0.0012 €ct",
                "0.012 €ct",
                "0.12 €ct",
                "1.2 €ct",
                "€0.12",
                "€1.23",
                "€12.34",
                "€123",
                "€1,234",
                "€12,340",
            ],
        ),
        (
            "GBP",
            [
                "0.00000012 p",
                "0.0000012 p",
                "0.000012 p",
                "0.00012 p",
                "0.0012 p",
                "0.012 p",
                "0.12 p",
                "1.2 p",
                "£0.12",
                "£1.23",
                "£12.34",
                "£123",
                "£1,234",
                "£12,340",
            ],
        ),
        (
            // No minor unit in use: yen with two significant digits.
            "JPY",
            [
                "¥0.0000000012",
                "¥0.000000012",
                "¥0.00000012",
                "¥0.0000012",
                "¥0.000012",
                "¥0.00012",
                "¥0.0012",
                "¥0.012",
                "¥0.12",
                "¥1.2",
                "¥12",
                "¥123",
                "¥1,234",
                "¥12,340",
            ],
        ),
        (
            "DKK",
            [
                "0.00000012 øre",
                "0.0000012 øre",
                "0.000012 øre",
                "0.00012 øre",
                "0.0012 øre",
                "0.012 øre",
                "0.12 øre",
                "1.2 øre",
                "0.12 kr",
                "1.23 kr",
                "12.34 kr",
                "123 kr",
                "1,234 kr",
                "12,340 kr",
            ],
        ),
        (
            // A code llmtop has no minor unit for stays in its main unit.
            "CHF",
            [
                "0.0000000012 CHF",
                "0.000000012 CHF",
                "0.00000012 CHF",
                "0.0000012 CHF",
                "0.000012 CHF",
                "0.00012 CHF",
                "0.0012 CHF",
                "0.012 CHF",
                "0.12 CHF",
                "1.23 CHF",
                "12.34 CHF",
                "123 CHF",
                "1,234 CHF",
                "12,340 CHF",
            ],
        ),
    ];
    for (code, want) in table {
        for (i, w) in want.iter().enumerate() {
            let amount = 1.234 * 10f64.powi(i as i32 - 9);
            assert_eq!(format_money(amount, &cur(code)), *w, "{amount:e} {code}");
        }
    }
}

#[test]
fn energy_and_energy_per_token_formatting() {
    assert_eq!(format_energy(0.412), "0.41 J");
    assert_eq!(format_energy(4.12), "4.1 J");
    assert_eq!(format_energy(41.2), "41 J");
    assert_eq!(format_energy(412.0), "412 J");
    assert_eq!(format_energy(3599.0), "3,599 J");
    assert_eq!(format_energy(4320.0), "1.2 Wh");
    assert_eq!(format_energy(43_200.0), "12 Wh");
    assert_eq!(format_energy(4.5e6), "1,250 Wh");
    assert_eq!(format_energy(-123.0), "-123 J");
    assert_eq!(format_energy(0.0), "0 J");
    assert_eq!(format_j_per_token(0.523), "0.52 J/tok");
    assert_eq!(format_j_per_token(12.34), "12.3 J/tok");
}

#[test]
fn a_pace_is_projected_over_a_month_and_a_year() {
    // $0.01 over 10 minutes: $0.06 an hour.
    let p = project(0.01, 600.0).expect("projection");
    close(p.per_hour, 0.06);
    close(p.per_month, 0.06 * 730.5);
    close(p.per_year, 0.06 * 8766.0);
    close(HOURS_PER_MONTH * 12.0, HOURS_PER_YEAR);
    // Under a minute the rate is mostly the model's load: no projection.
    assert_eq!(project(0.01, 59.0), None);
    assert_eq!(project(f64::NAN, 600.0), None);
    assert_eq!(project(0.01, f64::INFINITY), None);
}

fn err(p: &PricingSection) -> String {
    let e = Tariff::from_config(p).expect_err("must be rejected");
    let msg = e.to_string();
    assert!(!msg.contains('\n'), "one line: {msg}");
    msg
}

#[test]
fn unknown_region_lists_the_valid_ones() {
    let msg = err(&PricingSection {
        region: "XX".into(),
        ..PricingSection::default()
    });
    assert_eq!(
        msg,
        "[pricing] region: unknown region \"XX\"; valid regions: US, DE, DK, FR, UK, JP, EU (or set price_per_kwh and currency for your own tariff)"
    );
    let bad = Tariff::compare_set(&PricingSection::default(), &["US".into(), "MARS".into()])
        .expect_err("MARS");
    assert!(matches!(bad, PricingError::UnknownRegion { ref code, .. } if code == "MARS"));
    assert!(bad.to_string().starts_with("[pricing] compare_regions:"));
    let ok = Tariff::compare_set(&PricingSection::default(), &[]).expect("defaults");
    let labels: Vec<_> = ok.iter().map(|t| t.label.as_str()).collect();
    assert_eq!(labels, ["US", "DE", "DK"]);
}

#[test]
fn negative_or_nan_price_is_rejected() {
    let msg = err(&PricingSection {
        price_per_kwh: Some(-0.1),
        ..PricingSection::default()
    });
    assert_eq!(
        msg,
        "[pricing] price_per_kwh: price -0.1 is not allowed; use a price of 0 or more per kWh"
    );
    let msg = err(&own(vec![band(0, 12, 0.1), band(12, 0, -0.2)]));
    assert!(
        msg.starts_with("[pricing] bands[1].price_per_kwh: price -0.2"),
        "{msg}"
    );
    err(&PricingSection {
        price_per_kwh: Some(f64::NAN),
        ..PricingSection::default()
    });
    let msg = err(&PricingSection {
        co2_g_per_kwh: Some(-5.0),
        ..PricingSection::default()
    });
    assert!(msg.contains("co2_g_per_kwh"), "{msg}");
}

#[test]
fn malformed_bands_are_rejected() {
    let msg = err(&own(vec![band(0, 12, 0.1), band(11, 0, 0.2)]));
    assert_eq!(
        msg,
        "[pricing] bands[0] and bands[1] overlap at hour 11; each hour of the day must belong to exactly one band"
    );
    let msg = err(&own(vec![band(0, 12, 0.1), band(13, 23, 0.2)]));
    assert!(msg.contains("hours 12, 23 without a price"), "{msg}");
    let msg = err(&own(vec![band(25, 3, 0.1)]));
    assert!(
        msg.starts_with("[pricing] bands[0]: from_hour = 25"),
        "{msg}"
    );
    let msg = err(&own(vec![band(0, 30, 0.1)]));
    assert!(msg.contains("to_hour = 30"), "{msg}");
    let msg = err(&own(vec![band(5, 5, 0.1)]));
    assert!(msg.contains("empty"), "{msg}");
    let mut p = own(vec![]);
    p.price_per_kwh = Some(0.2);
    p.currency = Some("EURO".into());
    assert!(err(&p).contains("\"EURO\" is not a currency code"));
    let msg = err(&PricingSection {
        region: String::new(),
        price_per_kwh: Some(0.2),
        ..PricingSection::default()
    });
    assert!(msg.contains("set both price_per_kwh and currency"), "{msg}");
}

#[test]
fn tariff_from_config_file_text() {
    let text = r#"
[pricing]
region = ""
currency = "GBP"
co2_g_per_kwh = 200
bands = [
  { from_hour = 0, to_hour = 7, price_per_kwh = 0.08 },
  { from_hour = 7, to_hour = 0, price_per_kwh = 0.28 },
]
"#;
    let cfg = parse(text, Path::new("test.toml")).expect("parses");
    let t = Tariff::from_config(&cfg.pricing)
        .expect("tariff")
        .with_time_zone(TimeZone::UTC);
    assert_eq!(t.currency.code(), "GBP");
    let start: Timestamp = "2025-03-01T06:00:00Z".parse().expect("t");
    let end: Timestamp = "2025-03-01T08:00:00Z".parse().expect("t");
    // 1 kWh at 0.08 + 1 kWh at 0.28 = 0.36; CO2 2 kWh x 200 g = 400 g.
    close(t.cost_over(2.0 * KWH, start, end), 0.36);
    close(t.co2_g(2.0 * KWH).expect("co2"), 400.0);
    assert_eq!(t.format(0.36), "£0.36");
}

/// A machine at a constant 1 kW (1 kWh in the hour), from 21:30 to 22:30 local time, across
/// a band change at 22:00 (day 0.30, night 0.10 EUR/kWh).
fn ledger_across_22h(tariff: &Tariff) -> llmtop::accounting::ledger::Ledger {
    use llmtop::sensors::{Covers, Method, Quantity, Reading, Sample, Source};
    let origin = at_plus1(1, 21, 30);
    let mut l = llmtop::accounting::ledger::Ledger::new().priced(tariff.clone(), origin);
    for i in 0..=3600 {
        let t = f64::from(i);
        l.push(&Sample {
            t,
            readings: vec![Reading {
                id: "plug:p:energy".into(),
                device: "plug".into(),
                label: "wall".into(),
                quantity: Quantity::Energy,
                value: Some(1000.0 * t),
                limit: None,
                source: Source::Plug,
                covers: Covers::Wall,
                method: Method::Counter,
                rejected: None,
                via: None,
            }],
        });
    }
    l
}

#[test]
fn each_joule_is_priced_when_it_was_drawn_on_every_surface() {
    use llmtop::report::runcard::{CardSpans, RunCard};
    let t = Tariff::from_config(&own(vec![band(6, 22, 0.30), band(22, 6, 0.10)]))
        .expect("bands")
        .with_time_zone(TimeZone::fixed(offset(1)));
    let l = ledger_across_22h(&t);
    // Half a kWh at 0.30 and half at 0.10: 0.20 EUR, where the day's mean (0.2333) would say
    // 0.2333 and the night band alone 0.10.
    let whole = l.totals();
    close(whole.energy_j, KWH);
    close(whole.cost, 0.20);
    close(l.cost_between(&t, 0.0, 3600.0).expect("cost"), 0.20);
    // The first 10 minutes are all day rate, the last 10 all night rate.
    close(
        l.cost_between(&t, 0.0, 600.0).expect("cost"),
        KWH / 6.0 / 3.6e6 * 0.30,
    );
    close(
        l.cost_between(&t, 3000.0, 3600.0).expect("cost"),
        KWH / 6.0 / 3.6e6 * 0.10,
    );
    // A tariff the ledger was not made with is priced the same way, step by step.
    let flat = Tariff::preset("DE").expect("DE");
    close(l.cost_between(&flat, 0.0, 3600.0).expect("cost"), 0.38);
    // The run card takes its costs from the ledger.
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/runcards/nuc.json"),
    )
    .expect("fixture");
    let mut card = RunCard::from_json(&text, Path::new("nuc.json")).expect("card");
    if let Some(e) = card.session.energy.as_mut() {
        e.total_j = KWH;
    }
    card.price(
        &t,
        &[],
        &l,
        CardSpans {
            reply: Some((3000.0, 3600.0)),
            session: Some((0.0, 3600.0)),
        },
    );
    close(card.cost[0].session.expect("session cost"), 0.20);
    close(
        card.cost[0].last_reply.expect("reply cost"),
        KWH / 6.0 / 3.6e6 * 0.10,
    );
    close(card.cost[0].price_per_kwh, 0.20);
}
