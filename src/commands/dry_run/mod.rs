//! `dry-run`: sends sample events of one connector's log through its sidecar and shows what
//! the sidecar answers for each, decoded as the target's operations; on SQL targets (SQLite,
//! PostgreSQL) the statements are also run, in order, in one transaction that is rolled back,
//! so a reducer bug (a statement the database refuses) shows next to the event that produced
//! it. Nothing is written: no checkpoint, no projection version, no table.
//!
//! - `sample.rs`: the events, read after `--from` through the connector's filter;
//! - `answers.rs`: the sidecar's answers, on one `Project` stream;
//! - `decode.rs`: the answers as the target's operations, without opening the target;
//! - `trial.rs`: the rolled-back transaction of the SQL targets;
//! - `report.rs`: the table, or JSON lines with `--json`.

mod answers;
mod decode;
mod report;
mod sample;
mod trial;

use std::{path::PathBuf, process::ExitCode, time::Duration};

use projector_gateway::{
    config::{self, Answers, ConfigError},
    event::Position,
    filter::EventFilter,
    partition::Partitioner,
    reducer::{self, Described},
};

use super::validate::{INVALID_CONFIG, report as report_config};
use answers::{Answer, Silence};
use decode::Target;
use report::{Check, EventReport, OpReport};

/// How long a silent sidecar is waited for, by default, when it answers only the events it
/// handles (`answers: handled`): its silence then means "ignored".
const HANDLED_SILENCE: Duration = Duration::from_secs(2);

#[derive(clap::Args)]
pub struct DryRunArgs {
    #[arg(long, short, env = "PROJECTOR_GATEWAY_CONFIG")]
    pub config: PathBuf,
    /// The connector's id in the config file.
    #[arg(long)]
    pub connector: String,
    /// Read the events after this position (default: from the start of the log).
    #[arg(long, default_value_t = 0)]
    pub from: Position,
    /// How many events to send (those the filters let through).
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub limit: u64,
    /// Only these event types (comma-separated), within the connector's filter and the types
    /// the sidecar's Describe names.
    #[arg(long, value_delimiter = ',')]
    pub types: Vec<String>,
    /// One JSON object per event (JSON lines) on stdout instead of the table; the summary goes
    /// to stderr.
    #[arg(long)]
    pub json: bool,
    /// PostgreSQL: also show each statement's plan (`EXPLAIN`, without running it twice).
    #[arg(long)]
    pub explain: bool,
    /// How long to wait for the sidecar's next answer before the events still unanswered
    /// count as unanswered. Default: `sidecar.request_timeout_ms`, or 2000 for a sidecar that
    /// answers only the events it handles (`answers: handled`), whose silence means "ignored".
    #[arg(long)]
    pub answer_timeout_ms: Option<u64>,
}

pub async fn dry_run(args: DryRunArgs) -> anyhow::Result<ExitCode> {
    let invalid = || Ok(ExitCode::from(INVALID_CONFIG));
    let config = match config::load_file(&args.config) {
        Ok(c) => c,
        Err(e) => {
            report_config(&e);
            return invalid();
        }
    };
    let problems = config::paths::check_files(&config);
    if !problems.is_empty() {
        report_config(&ConfigError::Invalid { origin: args.config.display().to_string(), problems });
        return invalid();
    }
    let ids: Vec<&str> = config.connectors.iter().map(|c| c.id.as_str()).collect();
    let Some(connector) = config.connectors.iter().find(|c| c.id == args.connector).cloned() else {
        eprintln!("error: {}: no connector `{}`; the file has: {}", args.config.display(), args.connector, ids.join(", "));
        return invalid();
    };
    let Some(sidecar) = connector.sidecar.clone() else {
        eprintln!(
            "error: connector `{}` has no sidecar: it is a producer connector, whose sink records every event as it is; a dry run tries a reducer",
            connector.id
        );
        return invalid();
    };
    let target = match Target::of(&connector) {
        Ok(target) => target,
        Err(reason) => {
            eprintln!("error: connector `{}`: {reason}", connector.id);
            return invalid();
        }
    };
    let mut filter = match EventFilter::new(&connector.filter) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("error: connector `{}`: filter: {e}", connector.id);
            return invalid();
        }
    };
    let types: Vec<String> = args.types.iter().map(|t| t.trim().to_string()).filter(|t| !t.is_empty()).collect();
    if !types.is_empty() {
        filter.restrict_types(types);
    }
    // One replica answers the sample: they run the same projection.
    let address = sidecar.addresses().first().map(|a| a.to_string()).unwrap_or_default();
    let channel = match reducer::channel_to(&sidecar, &address) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: connector `{}`: sidecar.address: {e}", connector.id);
            return invalid();
        }
    };
    let failed = || Ok(ExitCode::FAILURE);

    // As `run` does: the types the sidecar's Describe names narrow the filter.
    let described = match reducer::describe_once(channel.clone(), &connector.id, &address).await {
        Ok(Described::Yes(d)) => {
            let said = format!(
                "the sidecar describes projection `{}`{}, {}",
                d.projection,
                if d.version.is_empty() { String::new() } else { format!(" version `{}`", d.version) },
                if d.event_types.is_empty() { "for every event type".to_string() } else { format!("for {} event type(s)", d.event_types.len()) }
            );
            if !d.event_types.is_empty() {
                filter.restrict_types(d.event_types);
            }
            said
        }
        Ok(Described::NotSupported | Described::Stopped) => "the sidecar does not serve Describe: it is sent every event".to_string(),
        Err(e) => {
            eprintln!("error: connector `{}`: {e}", connector.id);
            return failed();
        }
    };

    let sampled = match sample::read(&connector, &filter, args.from, args.limit as usize).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: connector `{}`: {e}", connector.id);
            return failed();
        }
    };

    let silence = Duration::from_millis(args.answer_timeout_ms.unwrap_or(match sidecar.answers {
        Answers::All => sidecar.request_timeout_ms,
        Answers::Handled => HANDLED_SILENCE.as_millis() as u64,
    }));
    let partitioner = Partitioner::new(&connector.partitioning);
    let asked = match answers::ask(channel, &sidecar, &partitioner, &sampled.events, silence).await {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: connector `{}`: {e}", connector.id);
            return failed();
        }
    };

    let mut events: Vec<EventReport> = sampled
        .events
        .iter()
        .zip(asked)
        .map(|(event, asked)| {
            let answer = match asked.answer {
                Answer::Silent(Silence::TimedOut(after)) if sidecar.answers == Answers::All => Answer::Failed(format!(
                    "no answer within {after:?}; the sidecar must answer every event (`sidecar.answers: all`); if it answers only the \
                     events it handles, set `sidecar.answers: handled`"
                )),
                answer => answer,
            };
            decode_answer(&target, event, asked.partition, answer)
        })
        .collect();

    let trial = trial::run(&target, &mut events, args.explain).await;

    let header = report::Header {
        connector: &connector.id,
        sidecar: &address,
        described,
        sampled: &sampled,
        from: args.from,
        target: target.describe(),
        trial: &trial,
    };
    let summary = report::Summary::of(&events, &trial);
    if args.json {
        report::print_json(&header, &events, &summary);
    } else {
        report::print_table(&header, &events, &summary);
    }
    Ok(if summary.failures() > 0 { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}

/// One event's answer as the target's operations: decoded one by one, each failure kept with
/// its operation.
fn decode_answer(target: &Target, event: &projector_gateway::event::Event, partition: u32, answer: Answer) -> EventReport {
    let ops = match &answer {
        Answer::Operations(anys) => anys
            .iter()
            .enumerate()
            .map(|(n, any)| OpReport {
                number: n + 1,
                name: projector_gateway::proto::message_name(any).to_string(),
                decoded: target.decode(any).map_err(|e| e.to_string()),
                check: Check::None,
            })
            .collect(),
        _ => Vec::new(),
    };
    EventReport { event: event.clone(), partition, answer, ops }
}
