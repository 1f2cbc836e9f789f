//! The source-head probe: a task per connector that asks the connector's source, on a
//! connection of its own, where its log ends and how old the oldest event the connector has not
//! committed is, and records the answer in the connector's registry entry.
//!
//! It exists because the lag (`/metrics`, `/connectors`, `/ready` with a lag bound, `run`'s
//! progress output) needs the source's side, which the connector's own reading never asks for:
//! a separate, periodic probe keeps that question off the data path (`sources/head.rs` has the
//! SQLite and PostgreSQL probes).

use std::time::Duration;

use tokio::task::JoinHandle;
use tracing::{debug, warn};

use super::registry::{ConnectorHandle, ConnectorState};
use crate::{config::SourceConfig, sources::head};

/// Probes the connector's source every `every` for its head and the age of the oldest event
/// the connector has not committed, for the lag metrics, for as long as the connector is
/// registered: a connector that is disabled, stopped or waiting for a dependency falls behind
/// its source too, and shows it. A probe that fails clears the figures (they are absent rather
/// than stale) and is tried again.
pub fn watch_source_head(handle: ConnectorHandle, source: SourceConfig, every: Duration) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut probe = None;
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut warned = false;
        loop {
            ticks.tick().await;
            let after = match handle.position() {
                // Another gateway holds the connector: its figures are that gateway's.
                (ConnectorState::Standby(_), _) => continue,
                (_, Some(after)) => after,
                (ConnectorState::Starting | ConnectorState::Waiting { .. }, None) => {
                    // Look again soon rather than a whole interval later, so the lag is known
                    // from the moment the connector has loaded its checkpoints.
                    ticks.reset_after(every.min(Duration::from_millis(100)));
                    continue;
                }
                // Never ran in this process (disabled at start, failed at start): no position.
                _ => return,
            };
            if probe.is_none() {
                match head::open(&source).await {
                    Ok(Some(opened)) => probe = Some(opened),
                    Ok(None) => return,
                    Err(e) => {
                        if !std::mem::replace(&mut warned, true) {
                            warn!("the lag metrics cannot read the source's head: {e}");
                        }
                        continue;
                    }
                }
            }
            let read = probe.as_mut().expect("opened above").head(after).await;
            match read {
                Ok(head) => handle.set_head(Some(head)),
                Err(e) => {
                    debug!("probing the source's head failed: {e}");
                    handle.set_head(None);
                    probe = None;
                }
            }
        }
    })
}
