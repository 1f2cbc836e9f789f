//! The performance benchmark of the whole gateway (see bench/README.md; `bench/run` drives it).
//!
//! Without a subcommand it orchestrates a run: writes the event logs once, then re-executes
//! itself once per scenario (`pipeline scenario ...`) so every measurement, peak RSS
//! included, comes from a fresh process, and prints a table followed by one
//! `bench scenario=...` line per scenario.

mod elastic;
mod logs;
mod mongo;
mod null_sink;
mod orchestrator;
mod pg;
mod scenarios;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(about = "projector-gateway pipeline benchmark")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: orchestrator::RunArgs,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true, global = true)]
    bench: bool,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Runs one scenario in this process and prints `RESULT {json}`.
    Scenario(scenarios::ScenarioArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()))
        .with_writer(std::io::stderr)
        .init();
    let result = match cli.command {
        Some(Command::Scenario(args)) => {
            let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
            runtime.block_on(scenarios::run(args)).map(|outcome| {
                println!("RESULT {}", serde_json::to_string(&outcome).expect("serializable"));
            })
        }
        None => orchestrator::run(cli.run),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
