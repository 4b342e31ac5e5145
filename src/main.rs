use clap::Parser;
use llmtop::cli::{Cli, Command};
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => return usage_error(e),
    };
    llmtop::logging::init();
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
    let result: anyhow::Result<()> = match &cli.command {
        Some(Command::Bench(a)) => llmtop::commands::bench::run(a, &cfg),
        Some(Command::Models(a)) => llmtop::commands::models::run(a),
        Some(Command::Sensors(a)) => llmtop::commands::sensors::run(a, &cfg),
        Some(Command::Compare(a)) => llmtop::commands::compare::run(a, &cfg),
        Some(Command::Serve(a)) => llmtop::commands::serve::run(a, &cfg),
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
    let text = e.render().to_string();
    let first = text
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("invalid arguments")
        .trim_start_matches("error: ");
    eprintln!("llmtop: {first} (see llmtop --help)");
    ExitCode::from(2)
}
