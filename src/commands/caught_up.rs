//! `run --exit-when-caught-up`, for rebuild jobs and CI: once every connector of the config
//! file has committed everything up to its source's head as it was when the connector started
//! running, the gateway stops as after a stop signal (what was read is applied, then exit 0;
//! 1 if a connector failed). Events appended after a connector started are not waited for.

use std::{collections::HashMap, time::Duration};

use projector_gateway::{
    config::{ConnectorConfig, SourceConfig},
    event::Position,
    pipeline::ConnectorControl,
    sources::head,
    status::{ConnectorState, Connectors},
};
use tokio::task::JoinHandle;
use tracing::{info, warn};

/// How often the connectors' progress is looked at.
const EVERY: Duration = Duration::from_millis(100);

/// Why `--exit-when-caught-up` cannot be used with these connectors, if it cannot.
pub fn refused(connectors: &[ConnectorConfig]) -> Option<String> {
    if connectors.is_empty() {
        return Some("--exit-when-caught-up needs the connectors of a config file (--config)".into());
    }
    connectors.iter().find(|c| matches!(c.source, SourceConfig::Kurrentdb(_))).map(|c| {
        format!(
            "--exit-when-caught-up: connector `{}` reads KurrentDB, whose head the gateway does not tell apart from system events and \
             checkpoint streams yet, so it cannot know when it has caught up",
            c.id
        )
    })
}

/// Watches the connectors `connectors` (as registered in `registry`) and stops the gateway
/// (`control.shutdown`) once each has caught up with the head its source had when it started
/// running, or has ended.
pub fn stop_when_caught_up(connectors: &[ConnectorConfig], registry: Connectors, control: ConnectorControl) -> JoinHandle<()> {
    let sources: HashMap<String, SourceConfig> = connectors.iter().map(|c| (c.id.clone(), c.source.clone())).collect();
    tokio::spawn(async move {
        let mut heads: HashMap<String, Position> = HashMap::new();
        let mut ticks = tokio::time::interval(EVERY);
        loop {
            ticks.tick().await;
            if control.shutdown.is_cancelled() {
                return;
            }
            let mut pending = 0;
            for (id, source) in &sources {
                let Some(snapshot) = registry.snapshot_of(id) else { continue };
                match snapshot.state() {
                    ConnectorState::Stopped | ConnectorState::Failed(_) | ConnectorState::Disabled => continue,
                    ConnectorState::Running => {}
                    _ => {
                        pending += 1;
                        continue;
                    }
                }
                let head = match heads.get(id) {
                    Some(head) => *head,
                    None => match read_head(source).await {
                        Ok(head) => {
                            info!(connector = %id, "runs until it has applied everything up to position {head}, the source's head now (--exit-when-caught-up)");
                            heads.insert(id.clone(), head);
                            head
                        }
                        Err(e) => {
                            warn!(connector = %id, "--exit-when-caught-up cannot read the source's head yet: {e}; asking again");
                            pending += 1;
                            continue;
                        }
                    },
                };
                let reached = registry.snapshot_of(id).and_then(|s| s.progress().map(|p| p.low_watermark())).unwrap_or(0);
                if reached < head {
                    pending += 1;
                }
            }
            if pending == 0 {
                info!("every connector has caught up with the head its source had when it started; stopping (--exit-when-caught-up)");
                control.shutdown.cancel();
                return;
            }
        }
    })
}

async fn read_head(source: &SourceConfig) -> Result<Position, String> {
    let mut probe = head::open(source)
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("the {} source has no head to ask for", source.key()))?;
    probe.head(0).await.map(|h| h.position).map_err(|e| e.to_string())
}
