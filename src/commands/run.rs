//! `run`: runs every connector of a config file (and of the definition log of `--state`, an
//! SQLite file or a PostgreSQL database several replicas share) until a stop signal. One
//! connector failing does not stop the others; the exit code says whether all of them stopped
//! cleanly.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::ExitCode,
    time::Duration,
};

use projector_gateway::{
    config,
    management::{
        self, Settings, Supervisor,
        api::{Access, Token},
        store::{DefinitionLog, Location},
    },
    pipeline::ConnectorControl,
    shutdown::watch_signals,
    status::{Connectors, endpoint},
};
use tracing::{error, info};

/// Exit code when the operations endpoint cannot listen on its address.
const CANNOT_LISTEN: u8 = 3;

/// The operations endpoint: where it listens (and with which certificate), who may change
/// and read connectors, what ready means.
pub struct Endpoint {
    pub address: SocketAddr,
    /// The bearer token the management API's changes need, if any (`--management-token`).
    pub management_token: Option<String>,
    /// A file holding that token, or several named ones (`--management-token-file`).
    pub management_token_file: Option<PathBuf>,
    /// The status reads need the token too (`--require-token-for-reads`).
    pub require_token_for_reads: bool,
    /// HTTPS with this certificate and key (`--tls-cert-file`, `--tls-key-file`).
    pub tls: Option<endpoint::TlsFiles>,
    /// What `/ready` asks of running connectors.
    pub readiness: endpoint::Readiness,
}

/// What `run` was asked to run.
pub struct RunArgs {
    pub config: Option<PathBuf>,
    /// The definition log: an SQLite file, or a PostgreSQL URL (never printed: it may hold a
    /// password).
    pub state: Option<PathBuf>,
    /// How often a shared definition log is read for other gateways' changes.
    pub state_poll_every: Duration,
    pub drain_timeout: Duration,
    pub endpoint: Option<Endpoint>,
    /// How often each source is asked for its head, when the endpoint or the progress output
    /// shows the lag.
    pub lag_probe_every: Duration,
    /// This gateway's name among those that share leased connectors.
    pub instance_id: String,
    /// The progress output (`--quiet`, `--progress-interval-secs`).
    pub progress: super::progress::Display,
    /// A connector that cannot reach a dependency at start fails instead of waiting.
    pub fail_fast: bool,
    /// Stop once every connector has caught up with its source's head as it was when the
    /// connector started (`--exit-when-caught-up`).
    pub exit_when_caught_up: bool,
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
    if let Some(refused) = args.exit_when_caught_up.then(|| super::caught_up::refused(&file_connectors)).flatten() {
        eprintln!("error: {refused}");
        return Ok(ExitCode::from(super::validate::INVALID_CONFIG));
    }
    let watched = if args.exit_when_caught_up { file_connectors.clone() } else { Vec::new() };
    let opened = match args.state.as_deref() {
        Some(state) => Some(open_log(state, &args.instance_id).await),
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
    let (access, tls) = match args.endpoint.as_ref().map(|endpoint| Ok::<_, (u8, String)>((access(endpoint)?, tls(endpoint)?))).transpose() {
        Ok(prepared) => prepared.unzip(),
        Err((code, message)) => {
            eprintln!("error: {message}");
            return Ok(ExitCode::from(code));
        }
    };
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
        log_poll_every: args.state_poll_every,
        instance_id: args.instance_id.clone(),
        fail_fast: args.fail_fast,
    };
    let caught_up_control = control.clone();
    let supervisor = match Supervisor::start(file_connectors, settings, control, registry.clone()).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::from(super::validate::INVALID_CONFIG));
        }
    };
    let progress = progress.start(registry.clone());
    let caught_up = args
        .exit_when_caught_up
        .then(|| super::caught_up::stop_when_caught_up(&watched, registry.clone(), caught_up_control));
    let endpoint_task = listener.zip(args.endpoint).map(|(listener, endpoint)| {
        let (access, tls) = (access.unwrap_or_default(), tls.flatten());
        let writable = if supervisor.is_writable() { "read-write" } else { "read-only: no --state" };
        let reads = if access.guards_reads() { ", reads need the token too" } else { "" };
        let scheme = if tls.is_some() { "https" } else { "http" };
        info!(
            "operations endpoint (/health, /ready, /metrics, /connectors; management API {writable}{reads}) listening on {scheme}://{}",
            endpoint.address
        );
        let routes = management::api::routes(supervisor.clone(), access.clone());
        tokio::spawn(async move {
            let guard_reads = |reads| access.guard_reads(reads);
            if let Err(e) = endpoint::serve(listener, tls, registry, endpoint.readiness, guard_reads, routes).await {
                error!("the operations endpoint stopped: {e}");
            }
        })
    });
    // A gateway an operator can change keeps serving until it is told to stop, even when no
    // connector runs; otherwise it ends with its last connector.
    let failed = supervisor.wait(supervisor.is_writable() && endpoint_task.is_some()).await;
    progress.finish().await;
    if let Some(task) = caught_up {
        task.abort();
    }
    if let Some(task) = endpoint_task {
        task.abort();
    }
    Ok(if failed == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// Who may use the management API: the token of `--management-token`, or those of
/// `--management-token-file`. An error is (exit code, message).
fn access(endpoint: &Endpoint) -> Result<Access, (u8, String)> {
    let invalid = |message: String| (super::validate::INVALID_CONFIG, message);
    let tokens = match (&endpoint.management_token, &endpoint.management_token_file) {
        (Some(token), _) if token.trim().is_empty() => return Err(invalid("--management-token: empty; give the token, or leave the flag out".into())),
        (Some(token), _) => vec![Token::unnamed(token.trim())],
        (None, Some(path)) => {
            let text = std::fs::read_to_string(path).map_err(|e| invalid(format!("--management-token-file {}: cannot read it: {e}", path.display())))?;
            Token::parse_file(&text).map_err(|e| invalid(format!("--management-token-file {}: {e}", path.display())))?
        }
        (None, None) => Vec::new(),
    };
    if endpoint.require_token_for_reads && tokens.is_empty() {
        return Err(invalid("--require-token-for-reads needs a token: give --management-token or --management-token-file".into()));
    }
    Ok(Access::new(tokens, endpoint.require_token_for_reads))
}

/// The endpoint's TLS configuration, when it serves HTTPS. An error is (exit code, message).
fn tls(endpoint: &Endpoint) -> Result<Option<endpoint::Tls>, (u8, String)> {
    endpoint.tls.as_ref().map(|files| files.load().map_err(|e| (CANNOT_LISTEN, e.to_string()))).transpose()
}

/// The definition log `--state` names. An error names the file, or the PostgreSQL server
/// without its password.
async fn open_log(state: &Path, instance_id: &str) -> Result<DefinitionLog, String> {
    let location = Location::from_state(state).map_err(|e| format!("--state: {e}"))?;
    DefinitionLog::open(&location, instance_id).await.map_err(|e| match &location {
        Location::Sqlite(path) => format!("--state {}: {e}", path.display()),
        Location::Postgres { .. } => format!("--state: {e}"),
    })
}
