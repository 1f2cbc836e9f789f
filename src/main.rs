//! The `projector-gateway` command line: run connectors from a config file, validate a
//! config, append to or generate an embedded event log, and a self-contained demo.

mod commands;

use std::{path::PathBuf, process::ExitCode, time::Duration};

use clap::{Parser, Subcommand};
use projector_gateway::traces;

#[derive(Parser)]
#[command(name = "projector-gateway", version, about = "Builds read models from an event log through a reducer sidecar over gRPC")]
struct Cli {
    /// How log lines are written: `text` (coloured on a terminal unless NO_COLOR is set) or
    /// `json` (one object per line, for log collectors).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "PROJECTOR_GATEWAY_LOG_FORMAT")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run the connectors of a config file (and those created through the management API)
    /// until SIGINT/SIGTERM.
    Run {
        #[arg(long, short, env = "PROJECTOR_GATEWAY_CONFIG", required_unless_present = "state")]
        config: Option<PathBuf>,
        /// The definition log that makes the management API read-write: connectors created,
        /// disabled or deleted through it stay so across restarts. An SQLite file (created if
        /// missing), or a PostgreSQL URL (`postgres://user:password@host/db`, optional
        /// `?schema=NAME`, default `projector_gateway`) whose log every replica given the same
        /// URL shares: a change made through any of them is run by all of them. The URL's
        /// password is never printed (`--help` hides the variable's value too).
        #[arg(long, env = "PROJECTOR_GATEWAY_STATE", hide_env_values = true)]
        state: Option<PathBuf>,
        /// With --state a PostgreSQL URL: how often this gateway reads the shared definition
        /// log for the changes made through other gateways, and applies them.
        #[arg(long, env = "PROJECTOR_GATEWAY_STATE_POLL_MS", default_value_t = 1000, value_parser = clap::value_parser!(u64).range(10..))]
        state_poll_ms: u64,
        /// After a stop signal (or a disable through the API), how long to finish in-flight
        /// events before stopping anyway.
        #[arg(long, default_value_t = 30)]
        drain_timeout_secs: u64,
        /// Serve /health, /ready, /metrics (Prometheus), /connectors and the management API on
        /// this address, e.g. 0.0.0.0:9464 in a pod; off when not given.
        #[arg(long, env = "PROJECTOR_GATEWAY_LISTEN")]
        listen: Option<std::net::SocketAddr>,
        /// How often each connector's source is asked for its head, on a connection of its own,
        /// for the lag in the metrics and the progress output; only with --listen or progress
        /// shown (not --quiet).
        #[arg(long, default_value_t = 5000, value_parser = clap::value_parser!(u64).range(10..))]
        lag_probe_interval_ms: u64,
        /// With --listen and --state: the bearer token the management API's changes need
        /// (`Authorization: Bearer <token>`); without it anyone who reaches the port may change
        /// connectors. A process's arguments and environment can be read by others on the
        /// host: --management-token-file keeps it out of both.
        #[arg(long, env = "PROJECTOR_GATEWAY_MANAGEMENT_TOKEN", hide_env_values = true, group = "management_tokens")]
        management_token: Option<String>,
        /// The management token read from this file (its trailing newline dropped), e.g. a
        /// mounted Kubernetes Secret; or one `name:token` per line, for several operators: the
        /// history then records which name made each change.
        #[arg(long, env = "PROJECTOR_GATEWAY_MANAGEMENT_TOKEN_FILE", group = "management_tokens")]
        management_token_file: Option<PathBuf>,
        /// GET /connectors, /connectors/{id} and /connectors/{id}/history need the management
        /// token too (/health, /ready and /metrics never do).
        #[arg(long, env = "PROJECTOR_GATEWAY_REQUIRE_TOKEN_FOR_READS", requires = "management_tokens")]
        require_token_for_reads: bool,
        /// With --listen: serve HTTPS, with this PEM certificate chain (the server's certificate
        /// first); needs --tls-key-file.
        #[arg(long, env = "PROJECTOR_GATEWAY_TLS_CERT_FILE", requires = "tls_key_file")]
        tls_cert_file: Option<PathBuf>,
        /// With --listen and --tls-cert-file: the certificate's PEM private key (PKCS#8, PKCS#1
        /// or SEC1).
        #[arg(long, env = "PROJECTOR_GATEWAY_TLS_KEY_FILE", requires = "tls_cert_file")]
        tls_key_file: Option<PathBuf>,
        /// This gateway's name among the gateways that run the same leased connectors (high
        /// availability, `lease:` in a connector); unique per replica. Default: the host name
        /// (a pod's name) and the process id.
        #[arg(long, env = "PROJECTOR_GATEWAY_INSTANCE_ID")]
        instance_id: Option<String>,
        /// With --listen: `/ready` also requires every running connector to be caught up within
        /// this many seconds (the age of the oldest event it has not committed); off when not
        /// given.
        #[arg(long, env = "PROJECTOR_GATEWAY_READY_MAX_LAG_SECS")]
        ready_max_lag_secs: Option<u64>,
        /// With --listen: `/ready` also fails while a running connector's sidecar or target has
        /// been down for longer than this many seconds; off when not given (an outage shows as
        /// state `waiting_for_sidecar` / `waiting_for_target` either way).
        #[arg(long, env = "PROJECTOR_GATEWAY_READY_MAX_OUTAGE_SECS")]
        ready_max_outage_secs: Option<u64>,
        /// A connector whose target, source or sidecar cannot be reached at start fails at once
        /// (the exit code says so) instead of waiting for it with backoff, as it does mid-run:
        /// for one-shot jobs. Without it a database blip at deploy time is waited out.
        #[arg(long, env = "PROJECTOR_GATEWAY_FAIL_FAST")]
        fail_fast: bool,
        /// When stderr is not a terminal (a pod, a pipe, CI): log one progress line per
        /// connector this often (position, head and lag, events/s, state). On a terminal a live
        /// display shows the same instead.
        #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..))]
        progress_interval_secs: u64,
        /// No progress output: neither the live display nor the progress lines (the other log
        /// lines are unchanged; RUST_LOG sets those).
        #[arg(long, short)]
        quiet: bool,
        /// Stop once every connector of the config file has applied everything up to its
        /// source's head as it was when the connector started (later appends are not waited
        /// for), as after a stop signal: exit 0, or 1 if a connector failed. For rebuild jobs
        /// and CI; not with --state.
        #[arg(long, conflicts_with = "state")]
        exit_when_caught_up: bool,
    },
    /// Move a connector's checkpoints back to the start of the log (or to a position), so the
    /// next start projects again from there. Stop every gateway running it first.
    Reset {
        #[arg(long, short, env = "PROJECTOR_GATEWAY_CONFIG")]
        config: PathBuf,
        /// The connector's id in the config file.
        #[arg(long)]
        connector: String,
        /// Resume after this position instead of from the start.
        #[arg(long)]
        to_position: Option<u64>,
    },
    /// Build a new version of a connector's read model beside the live one, from the start of
    /// the log, and swap it in once it has caught up (blue/green; SQLite, PostgreSQL,
    /// Elasticsearch/OpenSearch and MongoDB targets). The live version keeps serving until the swap. Exit code 1 if the rebuild
    /// failed (the live read model is untouched), 2 for a bad config.
    Rebuild {
        #[arg(long, short, env = "PROJECTOR_GATEWAY_CONFIG")]
        config: PathBuf,
        /// The connector's id in the config file.
        #[arg(long)]
        connector: String,
        /// The gRPC address of the sidecar serving the new version (default:
        /// `sidecar.blue_green.sidecar`, else the connector's own sidecar).
        #[arg(long)]
        sidecar: Option<String>,
        /// Only print the versions the target records (live, building, retired, failed).
        #[arg(long)]
        status: bool,
    },
    /// Send sample events of a connector's log through its sidecar and print each with the
    /// operations it answers; on SQLite and PostgreSQL targets, also run them in one
    /// transaction that is rolled back, with each statement's outcome. Writes nothing to the
    /// target: no checkpoint, no projection version, no table. Exit code 1 if an event's answer
    /// or operation failed, 2 for a bad config or arguments.
    DryRun(commands::dry_run::DryRunArgs),
    /// List, show or discard a connector's parked events (poison policy `park`) in its target.
    /// Exit code 1 if the target cannot be read or an id is not found, 2 for a bad config.
    Parked(commands::parked::ParkedArgs),
    /// Check a config file and print every problem with its key path; the files it names are
    /// checked too (the event log and init SQL files exist), without connecting to anything.
    Validate {
        #[arg(long, short)]
        config: PathBuf,
        /// Also reach each connector's source, sidecar (`Describe`) and target, and say per
        /// connector `ok` or what failed (exit code 1 if anything did). Opening a target is
        /// what `run` does: it creates the gateway's own tables where missing and runs the
        /// init SQL.
        #[arg(long)]
        connect: bool,
    },
    /// Append one event to an embedded SQLite event log (created if missing), or many from a
    /// JSON-lines file with --from.
    Append {
        #[arg(long)]
        log: PathBuf,
        #[arg(long, required_unless_present = "from", conflicts_with = "from")]
        stream: Option<String>,
        #[arg(long = "type", required_unless_present = "from", conflicts_with = "from")]
        event_type: Option<String>,
        /// The payload, a JSON object.
        #[arg(long, required_unless_present = "from", conflicts_with = "from")]
        data: Option<String>,
        /// Metadata, a JSON object.
        #[arg(long, conflicts_with = "from")]
        metadata: Option<String>,
        /// Event id (default: a new UUID).
        #[arg(long, conflicts_with = "from")]
        id: Option<String>,
        /// Append every event of this JSON-lines file (`-`: standard input), one per line:
        /// {"stream": "...", "type": "...", "data": {...}, "metadata": {...}, "id": "..."}
        /// (metadata and id optional), in transactions of 1,000 events.
        #[arg(long, value_name = "FILE")]
        from: Option<PathBuf>,
    },
    /// Fill an embedded SQLite event log with sample hotel-bookings events.
    Generate {
        #[arg(long)]
        log: PathBuf,
        #[arg(long, default_value_t = 100_000)]
        events: usize,
        /// Booking streams to spread the events over.
        #[arg(long, default_value_t = 5_000)]
        streams: usize,
        #[arg(long, default_value_t = 42)]
        seed: u64,
    },
    /// Project sample bookings events end to end on this machine, then follow live appends.
    Demo(commands::demo::DemoArgs),
    /// Write a starter reducer sidecar project (python, typescript, go, java or rust) into a
    /// folder: a gRPC server with Describe and one handler per event type, its tests, the
    /// stubs' generation, the gateway's config, sample events, and `run.sh`, which goes from
    /// zero to a read model in one command.
    NewSidecar(commands::new_sidecar::NewSidecarArgs),
    /// Serve the bundled example reducer (sidecar-examples/rust) as a sidecar. Prints
    /// `listening on HOST:PORT` once ready.
    ExampleSidecar {
        #[arg(long, default_value = "127.0.0.1:50051")]
        address: String,
        /// The read model the operations are for: `sql` (SQLite, PostgreSQL), `mongo` or
        /// `elastic` (Elasticsearch/OpenSearch), as the other examples take it.
        #[arg(long, env = "REDUCER_TARGET", default_value = "sql", value_name = "sql|mongo|elastic", value_parser = bookings_reducer::Target::parse)]
        target: bookings_reducer::Target,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let default_level = if matches!(cli.command, Command::Demo(_) | Command::DryRun(_)) { "warn" } else { "info" };
    // Chosen before the log is set up: on a terminal, the log lines go above `run`'s bars.
    let progress = match &cli.command {
        Command::Run { quiet, progress_interval_secs, .. } => {
            commands::progress::Display::choose(*quiet, Duration::from_secs(*progress_interval_secs))
        }
        _ => commands::progress::Display::Off,
    };
    // Several rustls crypto providers are linked (see Cargo.toml); without a process default,
    // rustls refuses to pick one when a TLS connection is made.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    // Inside the runtime: the trace exporter's connection runs on it.
    let traces = match runtime.block_on(async { traces::init(
        default_level,
        progress.log_output(),
        match cli.log_format {
            LogFormat::Text => traces::LogFormat::Text,
            LogFormat::Json => traces::LogFormat::Json,
        },
    ) }) {
        Ok(traces) => traces,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Run {
                config,
                state,
                state_poll_ms,
                drain_timeout_secs,
                listen,
                lag_probe_interval_ms,
                management_token,
                management_token_file,
                require_token_for_reads,
                tls_cert_file,
                tls_key_file,
                instance_id,
                ready_max_lag_secs,
                ready_max_outage_secs,
                fail_fast,
                progress_interval_secs: _,
                quiet: _,
                exit_when_caught_up,
            } => {
                let tls = tls_cert_file.zip(tls_key_file).map(|(cert, key)| projector_gateway::status::endpoint::TlsFiles { cert, key });
                let endpoint = listen.map(|address| commands::run::Endpoint {
                    address,
                    management_token,
                    management_token_file,
                    require_token_for_reads,
                    tls,
                    readiness: projector_gateway::status::endpoint::Readiness {
                        max_lag: ready_max_lag_secs.map(Duration::from_secs),
                        max_outage: ready_max_outage_secs.map(Duration::from_secs),
                    },
                });
                let drain_timeout = Duration::from_secs(drain_timeout_secs);
                let instance_id = instance_id.unwrap_or_else(projector_gateway::lease::default_instance_id);
                let lag_probe_every = Duration::from_millis(lag_probe_interval_ms);
                let state_poll_every = Duration::from_millis(state_poll_ms);
                let args = commands::run::RunArgs { config, state, state_poll_every, drain_timeout, endpoint, lag_probe_every, instance_id, progress, fail_fast, exit_when_caught_up };
                commands::run::run(args).await
            }
            Command::Reset { config, connector, to_position } => commands::reset::reset(&config, &connector, to_position).await,
            Command::Rebuild { config, connector, sidecar, status } => {
                commands::rebuild::rebuild(commands::rebuild::RebuildArgs { config: &config, connector: &connector, sidecar, status }).await
            }
            Command::DryRun(args) => commands::dry_run::dry_run(args).await,
            Command::Parked(args) => commands::parked::parked(args).await,
            Command::Validate { config, connect } => commands::validate::validate(&config, connect).await,
            Command::Append { log, from: Some(from), .. } => commands::append::append_from(&log, &from),
            Command::Append { log, stream, event_type, data, metadata, id, from: None } => {
                let missing = || anyhow::anyhow!("--stream, --type and --data are required without --from");
                let (stream, event_type, data) = (stream.ok_or_else(missing)?, event_type.ok_or_else(missing)?, data.ok_or_else(missing)?);
                commands::append::append(&log, stream, event_type, data, metadata, id)
            }
            Command::Generate { log, events, streams, seed } => commands::append::generate(&log, events, streams, seed),
            Command::Demo(args) => commands::demo::demo(args).await,
            Command::NewSidecar(args) => commands::new_sidecar::new_sidecar(args),
            Command::ExampleSidecar { address, target } => commands::demo::example_sidecar(&address, target).await,
        }
    });
    // Flushes the spans not exported yet, while the runtime still runs the exporter.
    traces.shutdown();
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
