//! `run`: runs every connector of a config file until a stop signal. One connector failing does
//! not stop the others; the exit code says whether all of them stopped cleanly.

use std::{path::Path, process::ExitCode, time::Duration};

use projector_gateway::{
    config,
    pipeline::{ConnectorControl, run_connector},
    shutdown::watch_signals,
};
use tokio::task::JoinSet;
use tracing::{error, info};

pub async fn run(path: &Path, drain_timeout_secs: u64) -> anyhow::Result<ExitCode> {
    let config = match config::load_file(path) {
        Ok(c) => c,
        Err(e) => {
            super::validate::report(&e);
            return Ok(ExitCode::from(super::validate::INVALID_CONFIG));
        }
    };
    let control = ConnectorControl::default();
    watch_signals(control.clone(), Duration::from_secs(drain_timeout_secs));
    let mut connectors = JoinSet::new();
    for connector in config.connectors {
        let own = ConnectorControl { shutdown: control.shutdown.child_token(), abort: control.abort.child_token() };
        let id = connector.id.clone();
        info!(connector = %id, "starting");
        connectors.spawn(async move { (id, run_connector(connector, own, |_| {}).await) });
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
    Ok(if failed == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
