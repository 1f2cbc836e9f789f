//! How a gateway follows a definition log shared with other gateways (`--state postgres://...`):
//! it reads what the others appended since the last event it applied, and applies each change
//! to its own connectors as the API verb does here. A change made here first catches up the
//! same way (`catch_up`), so it is decided on the log's latest state.

use std::sync::atomic::Ordering;

use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::{Slot, Supervisor, load_stored};
use crate::{
    management::store::{DefinitionEvent, Logged, StoreError},
    status::Origin,
};

impl Supervisor {
    /// Follows a shared definition log until `stop`: every `log_poll_every`, reads what other
    /// gateways appended since the last event applied here and applies it. A log that cannot
    /// be read is reported once (WARN) and read again at the next poll.
    pub(super) async fn follow(self, stop: CancellationToken) {
        let Some(log) = &self.inner.settings.log else { return };
        let every = self.inner.settings.log_poll_every;
        let mut failing = false;
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(every) => {}
            }
            // Read without holding the slots, so a slow or unreachable database never holds
            // up the API; what a change made here meanwhile applied is skipped below.
            let read = tokio::select! {
                _ = stop.cancelled() => return,
                read = log.since(self.inner.through.load(Ordering::Acquire)) => read,
            };
            match read {
                Ok(events) => {
                    if failing {
                        failing = false;
                        info!("the shared definition log {} can be read again; following it", log.name());
                    }
                    if !events.is_empty() {
                        let mut slots = self.inner.slots.lock().await;
                        if stop.is_cancelled() {
                            return;
                        }
                        self.apply_followed(&mut slots, events).await;
                    }
                }
                Err(e) if !failing => {
                    failing = true;
                    warn!(
                        "{e}; changes other gateways make are applied here once it can be read again (tried every {every:?}; \
                         repeats are logged at debug level)"
                    );
                }
                Err(e) => debug!("{e}"),
            }
        }
    }

    /// Applies what the log holds after the last event applied here, in log order (what other
    /// gateways appended); answers those events.
    pub(super) async fn catch_up(&self, slots: &mut Vec<Slot>) -> Result<Vec<Logged>, StoreError> {
        let Some(log) = &self.inner.settings.log else { return Ok(Vec::new()) };
        let events = log.since(self.inner.through.load(Ordering::Acquire)).await?;
        Ok(self.apply_followed(slots, events).await)
    }

    /// Applies `events`, read from the log, in order, but those already applied (a change made
    /// here after they were read moved `through` past them); answers those it applied.
    async fn apply_followed(&self, slots: &mut Vec<Slot>, events: Vec<Logged>) -> Vec<Logged> {
        let mut applied = Vec::new();
        for logged in events {
            if logged.seq <= self.inner.through.load(Ordering::Acquire) {
                continue;
            }
            self.apply_one(slots, &logged).await;
            self.inner.through.store(logged.seq, Ordering::Release);
            applied.push(logged);
        }
        applied
    }

    /// Applies one change another gateway made to this gateway's connectors, as the API verb
    /// does here: created, added and started; updated, stopped and started with the new
    /// definition; deleted, stopped and forgotten; disabled, stopped; enabled, started; reset
    /// (the checkpoints were moved by the gateway that took the call), run again from them.
    async fn apply_one(&self, slots: &mut Vec<Slot>, logged: &Logged) {
        let (id, change, gateway) = (logged.connector.as_str(), logged.event.kind(), gateway_name(logged));
        let by = logged.by.as_deref().unwrap_or("-");
        let Some(index) = slots.iter().position(|s| s.id == id) else {
            match &logged.event {
                DefinitionEvent::Created { definition } => {
                    self.add(slots, id, load_stored(definition));
                    info!(connector = %id, by, "connector {id} created by {gateway} through the shared definition log");
                }
                _ => debug!(connector = %id, "connector {id} {change} by {gateway}: not a connector of this gateway, nothing to do"),
            }
            return;
        };
        let slot = &mut slots[index];
        let definition_change = matches!(logged.event, DefinitionEvent::Created { .. } | DefinitionEvent::Updated { .. } | DefinitionEvent::Deleted);
        if slot.origin == Origin::File && definition_change {
            warn!(
                connector = %id,
                "connector {id} {change} by {gateway} through the shared definition log, but this gateway's config file defines \
                 it: the file's definition is kept (give every replica the same config file)"
            );
            return;
        }
        match &logged.event {
            DefinitionEvent::Created { definition } | DefinitionEvent::Updated { definition } => {
                if matches!(logged.event, DefinitionEvent::Created { .. }) {
                    slot.enabled = true;
                }
                self.replace(slot, load_stored(definition)).await;
            }
            DefinitionEvent::Deleted => self.remove(slots, index).await,
            DefinitionEvent::Disabled => self.disable_slot(slot, None),
            DefinitionEvent::Enabled => {
                // A connector still stopping after a disable is waited for, then started.
                if slot.config.is_ok() && (!slot.enabled || !slot.is_active()) {
                    self.start_again(slot).await;
                }
                slot.enabled = true;
            }
            DefinitionEvent::Reset { .. } => self.run_again_after_reset(slot).await,
        }
        info!(connector = %id, by, "connector {id} {change} by {gateway} through the shared definition log");
    }
}

/// The gateway that appended an event, as log lines and messages name it.
pub(super) fn gateway_name(logged: &Logged) -> String {
    match &logged.instance {
        Some(instance) => format!("gateway {instance}"),
        None => "another gateway".into(),
    }
}

