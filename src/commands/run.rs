//! `run`: runs every connector of a config file until a stop signal. One connector failing does
//! not stop the others; the exit code says whether all of them stopped cleanly.

use std::{net::SocketAddr, path::Path, process::ExitCode, time::Duration};

use projector_gateway::{
    config,
    operations::{self, Connectors},
    pipeline::{ConnectorControl, run_connector},
    shutdown::watch_signals,
};
use tokio::task::JoinSet;
use tracing::{error, info};

/// Exit code when the operations endpoint cannot listen on its address.
const CANNOT_LISTEN: u8 = 3;

/// The operations endpoint: where it listens, and how often the lag metrics probe sources.
pub struct Endpoint {
    pub address: SocketAddr,
    pub lag_probe_every: Duration,
}

pub async fn run(path: &Path, drain_timeout_secs: u64, endpoint: Option<Endpoint>) -> anyhow::Result<ExitCode> {
    let config = match config::load_file(path) {
        Ok(c) => c,
        Err(e) => {
            super::validate::report(&e);
            return Ok(ExitCode::from(super::validate::INVALID_CONFIG));
        }
    };
    let registry = Connectors::default();
    let mut endpoint_tasks = Vec::new();
    let lag_probe_every = endpoint.as_ref().map(|e| e.lag_probe_every);
    if let Some(Endpoint { address, .. }) = endpoint {
        match operations::bind(address).await {
            Ok(listener) => {
                info!("operations endpoint (/health, /ready, /metrics, /connectors) listening on http://{address}");
                let registry = registry.clone();
                endpoint_tasks.push(tokio::spawn(async move {
                    if let Err(e) = operations::serve(listener, registry).await {
                        error!("the operations endpoint stopped: {e}");
                    }
                }));
            }
            Err(e) => {
                eprintln!("error: --listen {address}: cannot listen there: {e}. Choose a free address or port.");
                return Ok(ExitCode::from(CANNOT_LISTEN));
            }
        }
    }
    let control = ConnectorControl::default();
    watch_signals(control.clone(), Duration::from_secs(drain_timeout_secs));
    let mut connectors = JoinSet::new();
    for connector in config.connectors {
        let own = ConnectorControl { shutdown: control.shutdown.child_token(), abort: control.abort.child_token() };
        let id = connector.id.clone();
        let handle = registry.add(&id);
        if let Some(every) = lag_probe_every {
            endpoint_tasks.push(operations::watch_source_head(handle.clone(), connector.source.clone(), every));
        }
        info!(connector = %id, "starting");
        connectors.spawn(async move {
            let result = run_connector(connector, own, |progress| handle.started(progress)).await;
            handle.ended(result.as_ref().err().map(ToString::to_string));
            (id, result)
        });
    }
    let mut failed = 0;
    while let Some(joined) = connectors.join_next().await {
        match joined {
            Ok((id, Ok(()))) => info!(connector = %id, "stopped"),
            Ok((_, Err(e))) => {
                failed += 1;
                error!("{e}");
                eprintln!("error: {e}");
            }
            Err(e) => {
                failed += 1;
                eprintln!("error: a connector task panicked: {e}");
            }
        }
    }
    for task in endpoint_tasks {
        task.abort();
    }
    Ok(if failed == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
