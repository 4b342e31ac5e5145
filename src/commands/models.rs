//! `llmtop models`: what GGUF models this machine has.

use crate::cli::ModelsArgs;
use crate::engine::models::{HOW_TO_GET_A_MODEL, SearchRoots, discover};
use crate::util::sanitize;

pub fn run(args: &ModelsArgs) -> anyhow::Result<()> {
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
