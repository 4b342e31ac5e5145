//! `llmtop compare`: run cards from several machines side by side.

use crate::accounting::pricing::Currency;
use crate::cli::CompareArgs;
use crate::config::Config;
use crate::report::compare::{
    CompareError, TcoOptions, compare, parse_hardware_price, render_csv, render_json,
    render_markdown, render_svg, render_table,
};
use crate::report::runcard::CardMoney;
use crate::report::runcard::RunCard;
use crate::util::sanitize;
use std::collections::BTreeMap;

/// The `compare` subcommand: load every file (a bad one is one line on stderr and the rest
/// still compare), print in the chosen format; fails when any file was bad or none was good.
/// The regions are the config's compare tariffs, `--regions` already applied to them.
pub fn run(args: &CompareArgs, cfg: &Config) -> anyhow::Result<()> {
    for (flag, value) in [("hours-per-day", args.hours_per_day), ("years", args.years)] {
        if !value.is_finite() || value <= 0.0 || (flag == "hours-per-day" && value > 24.0) {
            return Err(CompareError::BadNumber { flag, value }.into());
        }
    }
    if let Some(svg) = &args.svg
        && let Some(dir) = crate::util::paths::missing_parent(svg)
    {
        anyhow::bail!(
            "--svg {}: directory {} does not exist; create it first or write the chart elsewhere",
            sanitize::terminal(&svg.display().to_string()),
            sanitize::terminal(&dir.display().to_string())
        );
    }
    let tariffs = &cfg.compare;
    let default_currency = tariffs
        .first()
        .map(|t| t.currency.clone())
        .unwrap_or(Currency::new("USD")?);
    let mut cards = Vec::new();
    let mut errors = Vec::new();
    for f in &args.files {
        let text = f.to_string_lossy();
        if text.starts_with("http://") || text.starts_with("https://") {
            // Another machine's `llmtop serve`: its latest card, a card, or all it lists.
            match crate::export::scrape::fetch_cards(&text) {
                Ok(fetched) => cards.extend(fetched.into_iter().map(|(u, c)| (u.into(), c))),
                Err(e) => errors.push(e),
            }
            continue;
        }
        match RunCard::load(f) {
            Ok(card) => cards.push((f.clone(), card)),
            Err(e) => errors.push(e.to_string()),
        }
    }
    let mut hardware: BTreeMap<String, Vec<CardMoney>> = BTreeMap::new();
    for arg in &args.hardware_price {
        let (host, price) = parse_hardware_price(arg, &default_currency)?;
        if !cards
            .iter()
            .any(|(_, c)| c.host.hostname.to_lowercase() == host)
        {
            let hosts: Vec<String> = cards
                .iter()
                .map(|(_, c)| sanitize::terminal(&c.host.hostname).into_owned())
                .collect();
            return Err(CompareError::UnknownHost {
                host: sanitize::terminal(&host).into_owned(),
                hosts: hosts.join(", "),
            }
            .into());
        }
        let list = hardware.entry(host).or_default();
        list.retain(|m| m.currency != price.currency);
        list.push(price);
    }
    for e in &errors {
        eprintln!("llmtop compare: {}", sanitize::terminal(e));
    }
    if cards.is_empty() {
        anyhow::bail!("no run card could be read; nothing to compare");
    }
    let n_bad = errors.len();
    let total = args.files.len();
    let c = compare(
        &cards,
        tariffs,
        TcoOptions {
            hours_per_day: args.hours_per_day,
            years: args.years,
            hardware,
        },
        errors,
    );
    // The picture first: the Markdown links it only once it exists.
    let image = match &args.svg {
        Some(path) => {
            let chart = render_svg(&c)?;
            crate::util::fs::write_atomic(path, chart.svg.as_bytes()).map_err(|e| {
                anyhow::anyhow!(
                    "--svg {}: cannot write: {e}",
                    sanitize::terminal(&path.display().to_string())
                )
            })?;
            let cwd = std::env::current_dir().unwrap_or_default();
            Some(
                crate::util::paths::relative_to(&cwd, path)
                    .display()
                    .to_string(),
            )
        }
        None => None,
    };
    let out = if args.json {
        render_json(&c)
    } else if args.csv {
        for w in &c.warnings {
            eprintln!("llmtop compare: warning: {}", sanitize::terminal(w));
        }
        render_csv(&c)
    } else if args.markdown {
        render_markdown(&c, image.as_deref())
    } else {
        render_table(&c)
    };
    print!("{out}");
    if !out.ends_with('\n') {
        println!();
    }
    if n_bad > 0 {
        anyhow::bail!(
            "{n_bad} of {total} run cards could not be read (see above); the others were compared"
        );
    }
    Ok(())
}
