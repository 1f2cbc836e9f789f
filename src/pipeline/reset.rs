//! `projector-gateway reset`: moves a connector's checkpoints back to the start of the log, or
//! to a position, through the target's own checkpoint storage (rows, documents, a file or a
//! stream), so it works the same for every sink. The read model itself is left as it is.

use std::{collections::BTreeSet, sync::Arc};

use super::{ConnectorError, WithSink, with_sink};
use crate::{
    checkpoint::CheckpointRow,
    config::ConnectorConfig,
    event::Position,
    partition::Partitioner,
    sinks::{ApplyError, Batch, BatchItem, Sink, SinkError, SinkWriter},
};

/// Where the connector resumes after the reset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResetTo {
    /// The beginning of the log: everything is projected again.
    Start,
    /// After this position: every partition resumes with the first event past it.
    Position(Position),
}

/// The connector's checkpoints before and after the reset.
#[derive(Debug)]
pub struct ResetOutcome {
    pub before: Vec<CheckpointRow>,
    pub after: Vec<CheckpointRow>,
}

/// Deletes every checkpoint of the connector, then, for `ResetTo::Position`, stores that
/// position for each partition of its current partition count. A connector taking over an
/// Eventuous checkpoint (`eventuous_checkpoint`) reset to the start gets position 0 stored
/// instead of no rows, so its next start projects the log from its beginning rather than take
/// the Eventuous checkpoint again. Stop every gateway running the connector first: one still
/// running would write its own checkpoints again.
pub async fn reset_connector(config: ConnectorConfig, to: ResetTo) -> Result<ResetOutcome, ConnectorError> {
    with_sink(config, &super::RunContext::default(), Reset(to)).await
}

struct Reset(ResetTo);

impl WithSink for Reset {
    type Output = ResetOutcome;

    async fn with<S: Sink>(self, sink: S, config: ConnectorConfig) -> Result<ResetOutcome, ConnectorError> {
        let failed = |error: SinkError| ConnectorError::Sink { connector: config.id.clone(), error };
        let before = sink.load_checkpoints().await.map_err(failed)?;
        let counts: BTreeSet<u32> = before.iter().map(|row| row.partition_count).collect();
        for count in counts {
            sink.delete_checkpoints(count).await.map_err(failed)?;
        }
        let position = match self.0 {
            ResetTo::Position(position) if position > 0 => Some(position),
            _ if config.eventuous_checkpoint.is_some() => Some(0),
            _ => None,
        };
        if let Some(position) = position {
            let count = Partitioner::new(&config.partitioning).count();
            store_position(&sink, count, position, None).await.map_err(|e| {
                failed(SinkError::checkpoints(format!("storing the new checkpoints failed: {e}")).unreachable_if(e.transient))
            })?;
        }
        let after = sink.load_checkpoints().await.map_err(failed)?;
        Ok(ResetOutcome { before, after })
    }
}

/// Stores `position` as the checkpoint of every partition of `count`, as a batch that only
/// advances them, through one of the sink's writers: the sink stores it as it stores the
/// checkpoints of any batch (its own rows, documents, file or stream; in its transaction, with
/// its fences). `planned_from`: what each partition's row is expected to hold (see
/// `sinks::Stored`); `None` writes unchecked, as tools do.
pub(super) async fn store_position<S: Sink>(
    sink: &S,
    count: u32,
    position: Position,
    planned_from: Option<&[Option<Position>]>,
) -> Result<(), ApplyError> {
    let items = (0..count).map(|partition| BatchItem::Advance { partition, position }).collect();
    let batch = match planned_from {
        Some(stored) => Batch::fenced(items, count, stored),
        None => Batch::new(items, count),
    };
    let mut writer = sink.open_writer().await.map_err(|e| ApplyError {
        transient: e.is_transient(),
        message: e.0,
        failed_at: None,
        checkpoint_moved: false,
    })?;
    writer.apply(Arc::new(batch)).await
}
