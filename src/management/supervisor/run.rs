//! How the supervisor runs one connector that is not leased: waiting out, at start, a target
//! or source that cannot be reached yet, and stopping at once a connector asked to stop while
//! a dependency it waits for is down.

use std::{
    sync::atomic::{AtomicBool, Ordering},
    time::Duration,
};

use tracing::{debug, info, warn};

use crate::{
    backoff::Backoff,
    config::ConnectorConfig,
    pipeline::{ConnectorControl, ConnectorError, run_connector},
    status::{ConnectorHandle, Dependency},
    telemetry,
};

/// Runs a connector. A failure before it ever ran, because its target or source cannot be
/// reached, is waited out with backoff in state `waiting_for_target` / `waiting_for_source`,
/// as the same outage mid-run is (a database blip at deploy time must not become a crash
/// loop), unless `fail_fast`. A sink error that needs a fix is not waited for
/// ([`crate::sinks::SinkError::needs_a_fix`]). Its sidecar is waited for at start in any case
/// (`Describe`).
pub(super) async fn run_waiting_at_start(config: ConnectorConfig, control: ConnectorControl, handle: &ConnectorHandle, fail_fast: bool) -> Result<(), ConnectorError> {
    let id = config.id.clone();
    let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(30));
    let mut waited: Option<(Dependency, std::time::Instant)> = None;
    loop {
        let started = AtomicBool::new(false);
        let result = run_connector(config.clone(), control.clone(), |progress| {
            started.store(true, Ordering::Relaxed);
            if let Some((on, since)) = waited.take() {
                info!(connector = %id, "the {} is reachable again after {:.1?}; the connector runs", on.name(), since.elapsed());
            }
            handle.started(progress)
        })
        .await;
        let error = match result {
            Ok(()) => return Ok(()),
            Err(error) => error,
        };
        let Some(on) = error.outage(&config) else { return Err(error) };
        let reason = match &error {
            ConnectorError::Sink { error, .. } => error.to_string(),
            ConnectorError::Source { error, .. } => error.to_string(),
            other => other.to_string(),
        };
        if fail_fast || started.load(Ordering::Relaxed) || control.shutdown.is_cancelled() {
            return Err(error);
        }
        let delay = backoff.next_delay();
        match &waited {
            None => {
                warn!(
                    connector = %id,
                    "{error}; waiting for the {} (state waiting_for_{}), trying again with backoff; repeats are logged at debug \
                     level (`run --fail-fast` fails instead)",
                    on.name(),
                    on.name()
                );
                waited = Some((on, std::time::Instant::now()));
            }
            Some(_) => debug!(connector = %id, "{error}; trying again in {delay:?}"),
        }
        handle.waiting(on, reason);
        tokio::select! {
            _ = control.shutdown.cancelled() => return Ok(()),
            _ = control.abort.cancelled() => return Ok(()),
            _ = tokio::time::sleep(delay) => {}
        }
    }
}

/// Once the connector is asked to stop, stops it at once instead of draining while its sidecar
/// or target is down: nothing it holds can be applied before the drain timeout, and what it
/// has not committed is read again at the next start.
pub(super) async fn stop_at_once_when_stuck(control: ConnectorControl, id: String) {
    control.shutdown.cancelled().await;
    let telemetry = telemetry::for_connector(&id);
    let mut every = tokio::time::interval(Duration::from_millis(50));
    while !control.abort.is_cancelled() {
        if let Some((on, outage)) = telemetry.ongoing_outage() {
            info!(
                connector = %id,
                "stopping now rather than draining: the {} has been down for {:.1?} ({}); what was not committed is read again \
                 at the next start",
                on.name(),
                outage.lasted,
                outage.reason
            );
            control.abort.cancel();
            return;
        }
        every.tick().await;
    }
}

