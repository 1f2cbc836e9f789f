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

pub async fn run(path: &Path, drain_timeout_secs: u64, listen: Option<SocketAddr>) -> anyhow::Result<ExitCode> {
    let config = match config::load_file(path) {
        Ok(c) => c,
        Err(e) => {
            super::validate::report(&e);
            return Ok(ExitCode::from(super::validate::INVALID_CONFIG));
        }
    };
    let registry = Connectors::default();
    let endpoint = match listen {
        None => None,
        Some(address) => match operations::bind(address).await {
            Ok(listener) => {
                info!("operations endpoint (/health, /ready, /metrics, /connectors) listening on http://{address}");
                Some(tokio::spawn(operations::serve(listener, registry.clone())))
            }
            Err(e) => {
                eprintln!("error: --listen {address}: cannot listen there: {e}. Choose a free address or port.");
                return Ok(ExitCode::from(CANNOT_LISTEN));
            }
        },
    };
    let control = ConnectorControl::default();
    watch_signals(control.clone(), Duration::from_secs(drain_timeout_secs));
    let mut connectors = JoinSet::new();
    for connector in config.connectors {
        let own = ConnectorControl { shutdown: control.shutdown.child_token(), abort: control.abort.child_token() };
        let id = connector.id.clone();
        let handle = registry.add(&id);
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
    if let Some(endpoint) = endpoint {
        endpoint.abort();
    }
    Ok(if failed == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
