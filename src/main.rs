use clap::Parser;
use llmtop::cli::{Cli, Command};
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result: anyhow::Result<()> = match cli.command {
        Some(Command::Bench(_)) => Err(anyhow::anyhow!("bench: not built yet")),
        Some(Command::Models(_)) => Err(anyhow::anyhow!("models: not built yet")),
        Some(Command::Sensors(_)) => Err(anyhow::anyhow!("sensors: not built yet")),
        Some(Command::Compare(_)) => Err(anyhow::anyhow!("compare: not built yet")),
        Some(Command::Serve(_)) => Err(anyhow::anyhow!("serve: not built yet")),
        None => llmtop::config::load(cli.config.as_deref())
            .map_err(anyhow::Error::from)
            .and_then(|cfg| llmtop::dashboard::run(&cli.dashboard, cfg)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("llmtop: {e:#}");
            ExitCode::FAILURE
        }
    }
}
