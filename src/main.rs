use clap::Parser;
use llmtop::cli::{Cli, Command};
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = Cli::parse();
    llmtop::logging::init();
    let cfg = match llmtop::config::load(cli.config.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("llmtop: {e}");
            return ExitCode::from(2);
        }
    };
    let result: anyhow::Result<()> = match &cli.command {
        Some(Command::Bench(a)) => llmtop::bench::run(a, &cfg),
        Some(Command::Models(a)) => llmtop::models_cmd::run(a),
        Some(Command::Sensors(_)) => Err(anyhow::anyhow!("sensors: not built yet")),
        Some(Command::Compare(_)) => Err(anyhow::anyhow!("compare: not built yet")),
        Some(Command::Serve(_)) => Err(anyhow::anyhow!("serve: not built yet")),
        None => llmtop::dashboard::run(&cli.dashboard, cfg),
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
