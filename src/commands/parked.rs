//! `parked`: the operator's view of a connector's parked events (poison policy `park`) in its
//! target: list them with a filter, show them whole, replay them through the sidecar, discard
//! the ones dealt with. The running
//! gateway offers the same under `/connectors/{id}/parked`.

use std::{path::PathBuf, process::ExitCode};

use projector_gateway::{
    pipeline::{discard_parked, list_parked, replay_parked},
    sinks::parked::{ParkedEvent, ParkedQuery},
};

#[derive(clap::Args)]
pub struct ParkedArgs {
    #[command(subcommand)]
    verb: Verb,
}

#[derive(clap::Subcommand)]
enum Verb {
    /// One line per parked event (record id, partition, position, type, stream, when, why),
    /// oldest position first.
    List {
        #[command(flatten)]
        connector: Connector,
        #[command(flatten)]
        filter: Filter,
        /// One JSON object per event (JSON lines), payload included.
        #[arg(long)]
        json: bool,
    },
    /// Every field of the named parked events, payload included.
    Show {
        #[command(flatten)]
        connector: Connector,
        /// Record ids, as `list` prints them.
        #[arg(required = true)]
        ids: Vec<String>,
        /// JSON lines instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Sends the named parked events (or with --matching every one the filter selects) through
    /// the connector's sidecar again and applies what it answers, in log order, after what
    /// their streams applied since; an applied event's record is discarded, one that fails
    /// again stays parked with both reasons. No checkpoint moves. Exit code 1 if one failed
    /// again or could not be replayed.
    Replay {
        #[command(flatten)]
        connector: Connector,
        #[command(flatten)]
        selection: Selection,
        /// The outcome as one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Deletes parked events from the target: the named ones, or with --matching every one the
    /// filter selects (`list` with the same filter shows which first). The events stay in the
    /// log; nothing else changes.
    Discard {
        #[command(flatten)]
        connector: Connector,
        #[command(flatten)]
        selection: Selection,
    },
}

/// The parked events a replay or a discard acts on: named, or all that a filter selects.
#[derive(clap::Args)]
struct Selection {
    /// Record ids, as `list` prints them.
    #[arg(conflicts_with = "matching", required_unless_present = "matching")]
    ids: Vec<String>,
    /// Every parked event the filter selects (all of them without a filter).
    #[arg(long)]
    matching: bool,
    #[command(flatten)]
    filter: Filter,
}

impl Selection {
    /// The record ids it names, or the exit code once the failure to list them was printed.
    async fn ids(self, connector: &Connector) -> Result<Vec<String>, ExitCode> {
        if !self.matching {
            return Ok(self.ids);
        }
        Ok(listed(connector, self.filter.query()).await?.into_iter().map(|e| e.id).collect())
    }
}

#[derive(clap::Args)]
struct Connector {
    #[arg(long, short, env = "PROJECTOR_GATEWAY_CONFIG")]
    config: PathBuf,
    /// The connector's id in the config file.
    #[arg(long)]
    connector: String,
}

#[derive(clap::Args)]
struct Filter {
    /// Only events of this type.
    #[arg(long = "type")]
    event_type: Option<String>,
    /// Only events whose reason contains this text.
    #[arg(long)]
    error_contains: Option<String>,
    /// Only events parked at or after this time (RFC 3339, e.g. 2026-12-07T10:00:00Z).
    #[arg(long, value_parser = parse_time)]
    since: Option<chrono::DateTime<chrono::Utc>>,
    /// At most this many (0: all).
    #[arg(long, default_value_t = ParkedQuery::DEFAULT_LIMIT)]
    limit: usize,
}

impl Filter {
    fn query(self) -> ParkedQuery {
        ParkedQuery { event_type: self.event_type, error_contains: self.error_contains, since: self.since, ids: vec![], limit: self.limit }
    }
}

fn parse_time(text: &str) -> Result<chrono::DateTime<chrono::Utc>, String> {
    chrono::DateTime::parse_from_rfc3339(text)
        .map(|at| at.to_utc())
        .map_err(|e| format!("{e}; expected RFC 3339, e.g. 2026-12-07T10:00:00Z"))
}

pub async fn parked(args: ParkedArgs) -> anyhow::Result<ExitCode> {
    match args.verb {
        Verb::List { connector, filter, json } => {
            let limit = filter.limit;
            let events = match listed(&connector, filter.query()).await {
                Ok(events) => events,
                Err(code) => return Ok(code),
            };
            if json {
                print_json(&events);
            } else {
                print_table(&events);
                eprintln!("{} parked event(s){}", events.len(), if limit > 0 && events.len() == limit { " (the limit: --limit 0 lists all)" } else { "" });
            }
            Ok(ExitCode::SUCCESS)
        }
        Verb::Show { connector, ids, json } => {
            let query = ParkedQuery { ids: ids.clone(), ..Default::default() };
            let events = match listed(&connector, query).await {
                Ok(events) => events,
                Err(code) => return Ok(code),
            };
            if json {
                print_json(&events);
            } else {
                events.iter().for_each(print_whole);
            }
            let missing: Vec<&String> = ids.iter().filter(|id| !events.iter().any(|e| &e.id == *id)).collect();
            if missing.is_empty() {
                return Ok(ExitCode::SUCCESS);
            }
            eprintln!("error: connector `{}` has no parked event {}", connector.connector, quoted(&missing));
            Ok(ExitCode::FAILURE)
        }
        Verb::Replay { connector, selection, json } => match selection.ids(&connector).await {
            Ok(ids) => replay(&connector, ids, json).await,
            Err(code) => Ok(code),
        },
        Verb::Discard { connector, selection } => match selection.ids(&connector).await {
            Ok(ids) => discard(&connector, ids).await,
            Err(code) => Ok(code),
        },
    }
}

/// The parked events `query` selects, or the exit code once the failure was printed.
async fn listed(connector: &Connector, query: ParkedQuery) -> Result<Vec<ParkedEvent>, ExitCode> {
    let config = super::connector_of(&connector.config, &connector.connector)?;
    list_parked(config, query).await.map_err(|e| {
        eprintln!("error: {e}");
        ExitCode::FAILURE
    })
}

async fn discard(connector: &Connector, ids: Vec<String>) -> anyhow::Result<ExitCode> {
    let config = match super::connector_of(&connector.config, &connector.connector) {
        Ok(config) => config,
        Err(code) => return Ok(code),
    };
    let asked = ids.len();
    match discard_parked(config, ids).await {
        Ok(deleted) => {
            println!("connector `{}`: discarded {deleted} of {asked} parked event(s)", connector.connector);
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("error: {e}");
            Ok(ExitCode::FAILURE)
        }
    }
}

async fn replay(connector: &Connector, ids: Vec<String>, json: bool) -> anyhow::Result<ExitCode> {
    let config = match super::connector_of(&connector.config, &connector.connector) {
        Ok(config) => config,
        Err(code) => return Ok(code),
    };
    let outcome = match replay_parked(config, ids).await {
        Ok(outcome) => outcome,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::FAILURE);
        }
    };
    if json {
        println!("{}", serde_json::to_string(&outcome).expect("an outcome serializes"));
    } else {
        for id in &outcome.applied {
            println!("{id}: applied, record discarded");
        }
        for failed in &outcome.parked_again {
            println!("{}: {}", failed.id, failed.reason);
        }
        for skipped in &outcome.not_replayed {
            println!("{}: not replayed: {}", skipped.id, skipped.reason);
        }
    }
    eprintln!(
        "connector `{}`: {} applied, {} parked again, {} not replayed",
        connector.connector,
        outcome.applied.len(),
        outcome.parked_again.len(),
        outcome.not_replayed.len()
    );
    Ok(if outcome.parked_again.is_empty() && outcome.not_replayed.is_empty() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

fn print_json(events: &[ParkedEvent]) {
    for event in events {
        println!("{}", serde_json::to_string(event).expect("a parked event serializes"));
    }
}

fn print_table(events: &[ParkedEvent]) {
    println!("{:>8}  {:>9}  {:>10}  {:<24}  {:<24}  {:<24}  reason", "id", "partition", "position", "type", "stream", "parked at");
    for e in events {
        println!(
            "{:>8}  {:>9}  {:>10}  {:<24}  {:<24}  {:<24}  {}",
            e.id, e.partition, e.position, e.event_type, e.stream, e.parked_at, e.error
        );
    }
}

fn print_whole(e: &ParkedEvent) {
    println!("parked event {}", e.id);
    println!("  event      {} ({}) in stream `{}`", e.event_id, e.event_type, e.stream);
    println!("  position   {} (partition {})", e.position, e.partition);
    println!("  parked at  {}", e.parked_at);
    println!("  reason     {}", e.error);
    println!("  payload    {}", e.payload.as_deref().unwrap_or("(not kept)"));
}

fn quoted(ids: &[&String]) -> String {
    ids.iter().map(|id| format!("`{id}`")).collect::<Vec<_>>().join(", ")
}
