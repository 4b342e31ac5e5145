use clap::Parser;
use llmtop::cli::{Cli, Command};
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => return usage_error(e),
    };
    // Checked before logging starts: logs, the tally and snapshots all live there.
    if let Err(e) = llmtop::util::paths::check_data_dir() {
        eprintln!("llmtop: {e}");
        return ExitCode::from(2);
    }
    llmtop::logging::init();
    // Power limits a killed `bench --sweep power-cap` left capped go back first, whatever runs.
    if let Some(line) =
        llmtop::sensors::powerlimit::marker::recover(&llmtop::util::paths::data_dir())
    {
        eprintln!("llmtop: {line}");
    }
    // The config is read, checked and parsed once, with the flags that override it; every
    // command uses the parsed values.
    let overrides = llmtop::config::Overrides {
        color: cli.dashboard.color,
        compare_regions: match &cli.command {
            Some(Command::Compare(a)) => a.regions.clone(),
            _ => Vec::new(),
        },
    };
    let cfg = match llmtop::config::load(cli.config.as_deref(), &overrides) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("llmtop: {e}");
            return ExitCode::from(2);
        }
    };
    // Doctor's exit status is its verdict.
    if let Some(Command::Doctor(a)) = &cli.command {
        return match llmtop::commands::doctor::run(a, &cfg) {
            Ok(code) => ExitCode::from(code),
            Err(e) => {
                eprintln!("llmtop: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    let result: anyhow::Result<()> = match &cli.command {
        Some(Command::Bench(a)) => llmtop::commands::bench::run(a, &cfg),
        Some(Command::Models(a)) => llmtop::commands::models::run(a),
        Some(Command::Sensors(a)) => llmtop::commands::sensors::run(a, &cfg),
        Some(Command::Compare(a)) => llmtop::commands::compare::run(a, &cfg),
        Some(Command::Serve(a)) => llmtop::commands::serve::run(a, &cfg),
        Some(Command::Watch(a)) => llmtop::commands::watch::run(a, &cfg),
        Some(Command::Share(a)) => llmtop::commands::share::run(a, &cfg),
        Some(Command::Proxy(a)) => llmtop::commands::proxy::run(a, &cfg),
        Some(Command::Doctor(_)) => Ok(()),
        Some(Command::TallyWriter(a)) => {
            llmtop::accounting::tally::writer_loop(&a.path, a.count).map_err(Into::into)
        }
        None => llmtop::dashboard::run(&cli.dashboard, &cfg),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line: what, where, how to fix. No backtrace.
            eprintln!("llmtop: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Help and version print as clap renders them; a usage error is one line plus where to look.
fn usage_error(e: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    if matches!(
        e.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        let _ = e.print();
        return ExitCode::SUCCESS;
    }
    if let Some(line) = value_error(&e).or_else(|| missing_error(&e)) {
        eprintln!("llmtop: {line}");
        return ExitCode::from(2);
    }
    let text = e.render().to_string();
    let first = text
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("invalid arguments")
        .trim_start_matches("error: ");
    eprintln!("llmtop: {first} (see llmtop --help)");
    ExitCode::from(2)
}

/// A value a parser refused, as "--threads -5: must be a whole number of 1 or more".
fn value_error(e: &clap::Error) -> Option<String> {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    if e.kind() != ErrorKind::ValueValidation {
        return None;
    }
    let Some(ContextValue::String(arg)) = e.get(ContextKind::InvalidArg) else {
        return None;
    };
    let Some(ContextValue::String(value)) = e.get(ContextKind::InvalidValue) else {
        return None;
    };
    let why = std::error::Error::source(e)?.to_string();
    // "--threads <N>" names the flag; the value name is noise here.
    let flag = arg.split_whitespace().next().unwrap_or(arg);
    let value = if value.is_empty() {
        "''"
    } else {
        value.as_str()
    };
    Some(format!("{flag} {value}: {why}"))
}

/// A required argument left out, named with the usage: "missing <FILE>... (usage: ...)".
fn missing_error(e: &clap::Error) -> Option<String> {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    if e.kind() != ErrorKind::MissingRequiredArgument {
        return None;
    }
    let Some(ContextValue::Strings(args)) = e.get(ContextKind::InvalidArg) else {
        return None;
    };
    let usage = match e.get(ContextKind::Usage) {
        Some(ContextValue::StyledStr(u)) => u.to_string(),
        _ => String::new(),
    };
    let usage = usage
        .trim()
        .trim_start_matches("Usage:")
        .trim()
        .lines()
        .next()
        .unwrap_or("")
        .to_string();
    let mut line = format!("missing {}", args.join(", "));
    if !usage.is_empty() {
        line.push_str(&format!(" (usage: {usage})"));
    }
    Some(line)
}
