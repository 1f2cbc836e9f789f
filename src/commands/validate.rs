//! `validate`: loads a config and prints every problem, or a one-line summary and, offline,
//! what a connector taking over an Eventuous checkpoint will do at its first start. Without
//! connecting to anything it also checks the files the config names (the event log and the
//! `init_sql_file`s exist, the read model's file can be created). With `--connect` it then
//! reaches each connector's source, sidecar and target, and says per connector and per check
//! `ok` or what failed.

use std::{future::Future, path::Path, process::ExitCode, time::Duration};

use projector_gateway::{
    config::{self, ConfigError, ConnectorConfig},
    pipeline::{ConnectorError, RunContext, WithSink, with_sink},
    reducer::{self, Described},
    sinks::Sink,
    sources::head,
};

/// Exit code for an invalid configuration (distinct from a runtime failure).
pub const INVALID_CONFIG: u8 = 2;

/// How long one check of `--connect` may take.
const CHECK_TIMEOUT: Duration = Duration::from_secs(20);

pub async fn validate(path: &Path, connect: bool) -> anyhow::Result<ExitCode> {
    let config = match config::load_file(path) {
        Ok(config) => config,
        Err(e) => {
            report(&e);
            return Ok(ExitCode::from(INVALID_CONFIG));
        }
    };
    let problems = config::paths::check_files(&config);
    if !problems.is_empty() {
        report(&ConfigError::Invalid { origin: path.display().to_string(), problems });
        return Ok(ExitCode::from(INVALID_CONFIG));
    }
    let ids: Vec<_> = config.connectors.iter().map(|c| c.id.as_str()).collect();
    println!("{}: ok, {} connector(s): {}", path.display(), ids.len(), ids.join(", "));
    for c in &config.connectors {
        if let Some(checkpoint) = c.eventuous_checkpoint.as_ref().and_then(|e| e.resolve(&c.sink)) {
            println!(
                "connector {}: on its first start (no checkpoint of its own) resumes after the Eventuous checkpoint `{}` \
                 in the {}, or starts from the beginning of the log if there is none",
                c.id, checkpoint.id, checkpoint.place
            );
        }
    }
    if !connect {
        return Ok(ExitCode::SUCCESS);
    }
    let (mut checks, mut failed) = (0, 0);
    for c in &config.connectors {
        for (what, outcome) in [
            ("source", timed(check_source(c)).await),
            ("sidecar", timed(check_sidecar(c)).await),
            ("target", timed(check_target(c)).await),
        ] {
            match outcome {
                Checked::Ok(detail) => println!("connector {}: {what} ok ({detail})", c.id),
                Checked::Failed(reason) => {
                    println!("connector {}: {what} FAILED: {reason}", c.id);
                    failed += 1;
                }
                Checked::Skipped(_) if what == "sidecar" && c.sidecar.is_none() => continue,
                Checked::Skipped(why) => println!("connector {}: {what} not checked: {why}", c.id),
            }
            checks += 1;
        }
    }
    if failed > 0 {
        eprintln!("error: {failed} of {checks} check(s) failed");
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

/// What one check of `--connect` found.
enum Checked {
    Ok(String),
    Failed(String),
    Skipped(String),
}

async fn timed(check: impl Future<Output = Checked>) -> Checked {
    tokio::time::timeout(CHECK_TIMEOUT, check)
        .await
        .unwrap_or_else(|_| Checked::Failed(format!("no answer within {CHECK_TIMEOUT:?}")))
}

/// The source answers where its head is.
async fn check_source(c: &ConnectorConfig) -> Checked {
    let mut probe = match head::open(&c.source).await {
        Ok(Some(probe)) => probe,
        Ok(None) => return Checked::Skipped(format!("the {} source has no head to ask for", c.source.key())),
        Err(e) => return Checked::Failed(e.to_string()),
    };
    match probe.head(0).await {
        Ok(head) => Checked::Ok(format!("{}, head at position {}", c.source.key(), head.position)),
        Err(e) => Checked::Failed(e.to_string()),
    }
}

/// The sidecar is reachable and answers `Describe` (or says it does not serve it), at each of
/// its configured addresses (each replica, when there are several).
async fn check_sidecar(c: &ConnectorConfig) -> Checked {
    let Some(sidecar) = &c.sidecar else { return Checked::Skipped("no sidecar (a producer connector)".into()) };
    let (mut answered, mut failed) = (Vec::new(), Vec::new());
    for address in sidecar.addresses() {
        match check_replica(c, sidecar, address).await {
            Ok(said) => answered.push(said),
            Err(why) => failed.push(why),
        }
    }
    if failed.is_empty() { Checked::Ok(answered.join("; ")) } else { Checked::Failed(failed.join("; ")) }
}

async fn check_replica(c: &ConnectorConfig, sidecar: &config::SidecarConfig, address: &str) -> Result<String, String> {
    let channel = reducer::channel_to(sidecar, address).map_err(|e| format!("sidecar.address: {e}"))?;
    match reducer::describe_once(channel, &c.id, address).await {
        Ok(Described::Yes(d)) => {
            let types = if d.event_types.is_empty() { "every event type".to_string() } else { format!("{} event type(s)", d.event_types.len()) };
            let version = if d.version.is_empty() { String::new() } else { format!(" version `{}`", d.version) };
            Ok(format!("{address}: Describe answered: projection `{}`{version}, handles {types}", d.projection))
        }
        Ok(Described::NotSupported) => Ok(format!("{address}: reachable; it does not serve Describe, so it is sent every event")),
        Ok(Described::Stopped) => Err("stopped".into()),
        Err(e) => Err(e.to_string()),
    }
}

/// The target opens as `run` opens it and its checkpoints can be read.
async fn check_target(c: &ConnectorConfig) -> Checked {
    struct ReadCheckpoints;
    impl WithSink for ReadCheckpoints {
        type Output = (&'static str, usize);
        async fn with<S: Sink>(self, sink: S, config: ConnectorConfig) -> Result<Self::Output, ConnectorError> {
            let rows = sink
                .load_checkpoints()
                .await
                .map_err(|error| ConnectorError::Sink { connector: config.id.clone(), error })?;
            Ok((sink.name(), rows.len()))
        }
    }
    match with_sink(c.clone(), &RunContext::default(), ReadCheckpoints).await {
        Ok((name, rows)) => Checked::Ok(format!(
            "{name}: opened as `run` opens it (which creates the gateway's own tables where missing and runs the init SQL), \
             {rows} checkpoint row(s) of this connector"
        )),
        Err(e) => {
            let message = e.to_string();
            let prefix = format!("connector `{}`: ", c.id);
            Checked::Failed(message.strip_prefix(&prefix).unwrap_or(&message).to_string())
        }
    }
}

/// Prints a configuration error, one problem per line.
pub fn report(error: &ConfigError) {
    eprintln!("error: {error}");
}
