//! The performance benchmark of the whole gateway (see bench/README.md; `bench/run` drives it).
//!
//! Without a subcommand it orchestrates a run: writes the event logs once, then re-executes
//! itself once per scenario (`pipeline scenario ...`) so every measurement, peak RSS
//! included, comes from a fresh process, and prints a table followed by one
//! `bench scenario=...` line per scenario.

mod blue_green;
mod elastic;
mod gateways;
mod logs;
mod mongo;
mod null_sink;
mod orchestrator;
#[path = "../tests/it/support/otlp.rs"]
#[allow(dead_code)]
mod otlp;
mod pg;
mod raw_batches;
mod redis;
mod replicas;
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
    let result = match cli.command {
        Some(Command::Scenario(args)) => scenario(args),
        None => {
            init_logs();
            orchestrator::run(cli.run)
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logs() {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()))
        .with_writer(std::io::stderr)
        .init();
}

/// Runs one scenario and prints its `RESULT`. With `--traces RATIO` the process exports the
/// gateway's spans (that share of traces) over OTLP to a collector in this process that only
/// counts them, as a pod's collector sidecar would take them.
fn scenario(args: scenarios::ScenarioArgs) -> anyhow::Result<()> {
    use projector_gateway::traces::{self, ExportSettings};

    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    let tracing = match args.traces {
        Some(ratio) => Some(runtime.block_on(async {
            let collector = otlp::Collector::counting().await;
            let settings = ExportSettings { endpoint: collector.endpoint.clone(), sample_ratio: ratio };
            traces::init_with("warn", Some(settings)).map(|export| (collector, export))
        })?),
        None => {
            init_logs();
            None
        }
    };
    let mut outcome = runtime.block_on(scenarios::run(args))?;
    if let Some((collector, export)) = tracing {
        export.shutdown();
        outcome.spans = collector.count();
    }
    println!("RESULT {}", serde_json::to_string(&outcome).expect("serializable"));
    Ok(())
}
