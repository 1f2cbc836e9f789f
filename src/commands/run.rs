//! `run`: runs every connector of a config file (and of the definition log of `--state`) until
//! a stop signal. One connector failing does not stop the others; the exit code says whether
//! all of them stopped cleanly.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::ExitCode,
    time::Duration,
};

use projector_gateway::{
    config,
    management::{self, Settings, Supervisor, store::DefinitionLog},
    pipeline::ConnectorControl,
    shutdown::watch_signals,
    status::{Connectors, endpoint},
};
use tracing::{error, info};

/// Exit code when the operations endpoint cannot listen on its address.
const CANNOT_LISTEN: u8 = 3;

/// The operations endpoint: where it listens, who may change connectors, what ready means.
pub struct Endpoint {
    pub address: SocketAddr,
    /// The bearer token the management API's changes need, if any.
    pub management_token: Option<String>,
    /// What `/ready` asks of running connectors.
    pub readiness: endpoint::Readiness,
}

/// What `run` was asked to run.
pub struct RunArgs {
    pub config: Option<PathBuf>,
    pub state: Option<PathBuf>,
    pub drain_timeout: Duration,
    pub endpoint: Option<Endpoint>,
    /// How often each source is asked for its head, when the endpoint or the progress output
    /// shows the lag.
    pub lag_probe_every: Duration,
    /// This gateway's name among those that share leased connectors.
    pub instance_id: String,
    /// The progress output (`--quiet`, `--progress-interval-secs`).
    pub progress: super::progress::Display,
}

pub async fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let file_connectors = match &args.config {
        Some(path) => match config::load_file(path) {
            Ok(c) => c.connectors,
            Err(e) => {
                super::validate::report(&e);
                return Ok(ExitCode::from(super::validate::INVALID_CONFIG));
            }
        },
        None => Vec::new(),
    };
    let opened = match args.state.as_deref() {
        Some(path) => Some(open_log(path).await),
        None => None,
    };
    let log = match opened.transpose() {
        Ok(log) => log,
        Err(message) => {
            eprintln!("error: {message}");
            return Ok(ExitCode::from(super::validate::INVALID_CONFIG));
        }
    };
    // A console sink prints its events on stdout, which the bars would garble on a terminal.
    let writes_stdout = file_connectors.iter().any(|c| matches!(c.sink, config::SinkConfig::Console(_)));
    let progress = args.progress.sharing_stdout(writes_stdout);
    let registry = Connectors::default();
    let listener = match &args.endpoint {
        Some(endpoint) => match endpoint::bind(endpoint.address).await {
            Ok(listener) => Some(listener),
            Err(e) => {
                eprintln!("error: --listen {}: cannot listen there: {e}. Choose a free address or port.", endpoint.address);
                return Ok(ExitCode::from(CANNOT_LISTEN));
            }
        },
        None => None,
    };
    let control = ConnectorControl::default();
    watch_signals(control.clone(), args.drain_timeout);
    let settings = Settings {
        drain_timeout: args.drain_timeout,
        // The same probe feeds the endpoint's lag and the progress output's.
        lag_probe_every: (args.endpoint.is_some() || progress.is_on()).then_some(args.lag_probe_every),
        log,
        instance_id: args.instance_id.clone(),
    };
    let supervisor = match Supervisor::start(file_connectors, settings, control, registry.clone()).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::from(super::validate::INVALID_CONFIG));
        }
    };
    let progress = progress.start(registry.clone());
    let endpoint_task = listener.zip(args.endpoint).map(|(listener, endpoint)| {
        let writable = if supervisor.is_writable() { "read-write" } else { "read-only: no --state" };
        info!("operations endpoint (/health, /ready, /metrics, /connectors; management API {writable}) listening on http://{}", endpoint.address);
        let routes = management::api::routes(supervisor.clone(), endpoint.management_token);
        tokio::spawn(async move {
            if let Err(e) = endpoint::serve(listener, registry, endpoint.readiness, routes).await {
                error!("the operations endpoint stopped: {e}");
            }
        })
    });
    // A gateway an operator can change keeps serving until it is told to stop, even when no
    // connector runs; otherwise it ends with its last connector.
    let failed = supervisor.wait(supervisor.is_writable() && endpoint_task.is_some()).await;
    progress.finish().await;
    if let Some(task) = endpoint_task {
        task.abort();
    }
    Ok(if failed == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

async fn open_log(path: &Path) -> Result<DefinitionLog, String> {
    DefinitionLog::open(path).await.map_err(|e| format!("--state {}: {e}", path.display()))
}
