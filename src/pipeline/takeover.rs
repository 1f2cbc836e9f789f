//! Taking over from the Eventuous Connector (`eventuous_checkpoint`): a connector replacing it
//! resumes after the checkpoint it left in the target instead of projecting the whole log
//! again. Done once, at a start that finds no checkpoint of the connector's own: the position
//! is stored as the connector's own checkpoints (an advance-only batch through the sink's
//! writer, as `reset` stores a position), and from then on those rows are what every start
//! plans from, so the Eventuous checkpoint is never read again.

use tracing::info;

use super::reset::store_position;
use crate::{
    config::ConnectorConfig,
    sinks::{Sink, SinkError},
};

/// Stores the Eventuous checkpoint the connector takes over as its own checkpoints, when it
/// has one to take over and no checkpoint of its own. Logs one line saying what it did.
pub(super) async fn take_over_eventuous_checkpoint<S: Sink>(sink: &S, config: &ConnectorConfig, count: u32) -> Result<(), SinkError> {
    let Some(spec) = &config.eventuous_checkpoint else { return Ok(()) };
    if !sink.load_checkpoints().await?.is_empty() {
        return Ok(());
    }
    // A projection version is recorded in the same transaction that deletes the checkpoints
    // of a rebuild (`sidecar.rebuild_on_new_version`): a start after one that stopped before
    // its first commit must project from the beginning, not take the Eventuous checkpoint.
    if sink.projection_version().await?.is_some() {
        return Ok(());
    }
    let Some(checkpoint) = spec.resolve(&config.sink) else {
        return Err(SinkError::config(format!(
            "the {} sink has no Eventuous checkpoint to take over; remove `eventuous_checkpoint`",
            config.sink.key()
        )));
    };
    let connector = &config.id;
    let Some(position) = sink.eventuous_checkpoint(&checkpoint).await? else {
        info!(
            connector = %connector,
            "starting from the beginning of the log: no Eventuous checkpoint `{}` was found in the {} (or it holds no position yet)",
            checkpoint.id,
            checkpoint.place
        );
        return Ok(());
    };
    // Planned from "no rows": where the target checks (a compare-and-set in the batch's
    // transaction), a connector that stored checkpoints meanwhile keeps its own.
    let none = vec![None; count as usize];
    match store_position(sink, count, position, Some(&none)).await {
        Ok(()) => {
            info!(
                connector = %connector,
                "resuming after the Eventuous Connector's checkpoint `{}` ({}) at position {position}; it is now stored as this \
                 connector's own checkpoint",
                checkpoint.id,
                checkpoint.place
            );
            Ok(())
        }
        Err(e) if e.checkpoint_moved => Ok(()),
        Err(e) => Err(SinkError::checkpoints(format!(
            "storing the Eventuous checkpoint `{}` ({}, position {position}) as this connector's own failed: {e}",
            checkpoint.id, checkpoint.place
        ))
        .unreachable_if(e.transient)),
    }
}
