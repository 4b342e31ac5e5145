//! `llmtop models`: what GGUF models this machine has.

use crate::cli::ModelsArgs;
use crate::engine::models::{HOW_TO_GET_A_MODEL, SearchRoots, discover};
use crate::util::sanitize;

pub fn run(args: &ModelsArgs) -> anyhow::Result<()> {
    if let Some(url) = &args.attach {
        return run_attached(url, args.kind.as_deref(), args.json);
    }
    let found = discover(&SearchRoots::from_env());
    if args.json {
        println!("{}", serde_json::to_string_pretty(&found)?);
        return Ok(());
    }
    if found.is_empty() {
        println!("{HOW_TO_GET_A_MODEL}");
        return Ok(());
    }
    // Names and paths come from file names and manifests: sanitised before the terminal.
    let term = |s: &str| sanitize::terminal(s).into_owned();
    let w = found
        .iter()
        .map(|m| term(&m.name).chars().count())
        .max()
        .unwrap_or(4)
        .max(4);
    println!(
        "{:<w$}  {:<10}  {:>9}  {:<11}  PATH",
        "NAME", "QUANT", "SIZE", "FROM"
    );
    for m in &found {
        let quant = if m.quantization.starts_with("invalid") {
            "invalid"
        } else {
            &m.quantization
        };
        println!(
            "{:<w$}  {:<10}  {:>9}  {:<11}  {}",
            term(&m.name),
            term(quant),
            human_size(m.size),
            m.origin.to_string(),
            term(&m.path.display().to_string())
        );
        if let Some(why) = m.quantization.strip_prefix("invalid: ") {
            println!("{:<w$}  ^ unusable: {}", "", term(why));
        }
    }
    Ok(())
}

pub fn human_size(bytes: u64) -> String {
    let b = bytes as f64;
    if b >= 1e9 {
        format!("{:.1} GB", b / 1e9)
    } else if b >= 1e6 {
        format!("{:.0} MB", b / 1e6)
    } else {
        format!("{:.0} kB", b / 1e3)
    }
}

/// `llmtop models --attach URL`: what a running server offers, and what it has loaded where.
fn run_attached(url: &str, kind: Option<&str>, json: bool) -> anyhow::Result<()> {
    use crate::engine::remote::{catalog, client::Server, kind as k};
    let server = Server::parse(url)?;
    let detected = match kind {
        Some(name) => {
            let kind = k::Kind::parse(name).ok_or_else(|| {
                anyhow::anyhow!(
                    "--kind {}: must be one of {}; leave it out to detect it",
                    sanitize::terminal(name),
                    k::KIND_NAMES
                )
            })?;
            k::confirm(&server, kind)?
        }
        None => k::detect(&server)?,
    };
    let models = catalog::list(&server, detected.kind)?;
    let loaded = catalog::loaded(&server, detected.kind).unwrap_or_default();
    if json {
        let v = serde_json::json!({
            "server": server.base,
            "kind": detected.kind.key(),
            "version": detected.version,
            "models": models,
            "loaded": loaded,
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    let term = |s: &str| sanitize::terminal(s).into_owned();
    println!("{}", term(&detected.describe(&server)));
    if models.is_empty() {
        println!("no models");
        return Ok(());
    }
    let w = models
        .iter()
        .map(|m| term(&m.name).chars().count())
        .max()
        .unwrap_or(4)
        .max(4);
    println!(
        "{:<w$}  {:>7}  {:<10}  {:>9}  LOADED",
        "NAME", "PARAMS", "QUANT", "SIZE"
    );
    for m in &models {
        let here = loaded.iter().find(|l| l.name == m.name);
        let where_ = match here {
            Some(l) => l.placement().unwrap_or_else(|| "yes".into()),
            None if m.loaded == Some(true) => "yes".into(),
            None => String::new(),
        };
        println!(
            "{:<w$}  {:>7}  {:<10}  {:>9}  {}",
            term(&m.name),
            m.n_params.map(params).unwrap_or_default(),
            term(m.quantization.as_deref().unwrap_or("")),
            m.size.map(human_size).unwrap_or_default(),
            where_
        );
    }
    Ok(())
}

/// 3 200 000 000 → "3.2B".
fn params(n: u64) -> String {
    let n = n as f64;
    if n >= 1e9 {
        format!("{:.1}B", n / 1e9)
    } else {
        format!("{:.0}M", n / 1e6)
    }
}
