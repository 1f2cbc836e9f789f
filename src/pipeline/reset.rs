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
    sinks::{Batch, BatchItem, Sink, SinkError, SinkWriter},
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
/// position for each partition of its current partition count. Stop every gateway running the
/// connector first: one still running would write its own checkpoints again.
pub async fn reset_connector(config: ConnectorConfig, to: ResetTo) -> Result<ResetOutcome, ConnectorError> {
    with_sink(config, Reset(to)).await
}

struct Reset(ResetTo);

impl WithSink for Reset {
    type Output = ResetOutcome;

    async fn with<S: Sink>(self, sink: S, config: ConnectorConfig) -> Result<ResetOutcome, ConnectorError> {
        let failed = |source: SinkError| ConnectorError::Sink { connector: config.id.clone(), source };
        let before = sink.load_checkpoints().await.map_err(failed)?;
        let counts: BTreeSet<u32> = before.iter().map(|row| row.partition_count).collect();
        for count in counts {
            sink.delete_checkpoints(count).await.map_err(failed)?;
        }
        if let ResetTo::Position(position) = self.0
            && position > 0
        {
            // A batch that only advances every partition: the sink stores it as it stores the
            // checkpoints of any batch.
            let count = Partitioner::new(&config.partitioning).count();
            let items = (0..count).map(|partition| BatchItem::Advance { partition, position }).collect();
            let mut writer = sink.open_writer().await.map_err(failed)?;
            writer
                .apply(Arc::new(Batch::new(items, count)))
                .await
                .map_err(|e| failed(SinkError(format!("storing the new checkpoints failed: {e}"))))?;
        }
        let after = sink.load_checkpoints().await.map_err(failed)?;
        Ok(ResetOutcome { before, after })
    }
}
