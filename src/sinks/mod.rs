//! Sinks: where the sidecar's operations are applied, together with the checkpoint.
//!
//! The pipeline only knows the [`Sink`] trait. A sink decodes the sidecar's `Any` operations
//! into its own typed operation (at the edge, once, in the partition's task), reports the
//! checkpoint rows it stores, and opens [`SinkWriter`]s that apply a [`Batch`]: the outcomes
//! of consecutive events of some partitions, plus the position each of those partitions
//! reached, atomically where the database allows it.

use std::{fmt, future::Future, sync::Arc};

use prost_types::Any;

use crate::{
    checkpoint::CheckpointRow,
    event::{Event, Position},
};

#[cfg(feature = "elastic")]
pub mod elastic;
pub mod checkpoint_store;
pub mod console;
#[cfg(feature = "http")]
pub mod http;
#[cfg(feature = "mongo")]
pub mod mongo;
#[cfg(feature = "mssql")]
pub mod mssql;
#[cfg(feature = "postgres")]
pub mod postgres;
pub mod sql;
#[cfg(feature = "sqlite")]
pub mod sqlite;

/// An event and the partition it was routed to, as sinks and error messages need it.
#[derive(Debug, Clone)]
pub struct EventRef {
    pub event: Arc<Event>,
    pub partition: u32,
    /// The event's trace span (`traces::event_span`), closed when the last copy of it is
    /// dropped: after the batch that applied it. Disabled unless traces are exported.
    pub span: tracing::Span,
}

impl EventRef {
    pub fn new(event: Arc<Event>, partition: u32) -> Self {
        Self { event, partition, span: tracing::Span::none() }
    }

    /// The same, carrying the event's trace span.
    pub fn traced(event: Arc<Event>, partition: u32, span: tracing::Span) -> Self {
        Self { event, partition, span }
    }
}

/// Equal when they name the same event in the same partition (the span is not compared).
impl PartialEq for EventRef {
    fn eq(&self, other: &Self) -> bool {
        self.event == other.event && self.partition == other.partition
    }
}

impl fmt::Display for EventRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let e = &self.event;
        write!(
            f,
            "event {} ({} in stream `{}`) at position {} in partition {}",
            e.event_id, e.event_type, e.stream, e.position, self.partition
        )
    }
}

/// What to do for one event (or span of the log) in a batch.
#[derive(Debug)]
pub enum BatchItem<Op> {
    /// Apply these operations, in order (none for an ignored event).
    Apply { event: EventRef, ops: Vec<Op> },
    /// Record the event as parked with the reason (poison policy `park`).
    Park { event: EventRef, error: String },
    /// Nothing to apply, but the partition has now handled everything up to `position`
    /// (events filtered out, skipped by policy, or a read-progress mark).
    Advance { partition: u32, position: Position },
}

impl<Op> BatchItem<Op> {
    pub fn partition(&self) -> u32 {
        match self {
            BatchItem::Apply { event, .. } | BatchItem::Park { event, .. } => event.partition,
            BatchItem::Advance { partition, .. } => *partition,
        }
    }

    pub fn position(&self) -> Position {
        match self {
            BatchItem::Apply { event, .. } | BatchItem::Park { event, .. } => event.event.position,
            BatchItem::Advance { position, .. } => *position,
        }
    }

    /// The event the item applies or parks (none for an advance).
    pub fn event(&self) -> Option<&EventRef> {
        match self {
            BatchItem::Apply { event, .. } | BatchItem::Park { event, .. } => Some(event),
            BatchItem::Advance { .. } => None,
        }
    }

    /// Number of operations this item applies (a parked event counts as one write).
    pub fn op_count(&self) -> usize {
        match self {
            BatchItem::Apply { ops, .. } => ops.len(),
            BatchItem::Park { .. } => 1,
            BatchItem::Advance { .. } => 0,
        }
    }
}

/// One transaction's worth of work: consecutive items of some partitions (in order within
/// each partition) and the position each of those partitions reaches once they are applied.
#[derive(Debug)]
pub struct Batch<Op> {
    pub items: Vec<BatchItem<Op>>,
    /// (partition, position) for every partition the items touch, sorted by partition.
    pub checkpoints: Vec<(u32, Position)>,
    /// The connector's partition count, stored with each checkpoint row.
    pub partition_count: u32,
}

impl<Op> Batch<Op> {
    pub fn new(items: Vec<BatchItem<Op>>, partition_count: u32) -> Self {
        let mut reached = std::collections::BTreeMap::new();
        for item in &items {
            let position = reached.entry(item.partition()).or_insert(0);
            *position = item.position().max(*position);
        }
        Self { items, checkpoints: reached.into_iter().collect(), partition_count }
    }
}

/// A failure to apply a batch.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct ApplyError {
    /// What failed, with the statement and the database's own message.
    pub message: String,
    /// Retrying the same batch later may succeed (connection lost, deadlock, busy).
    pub transient: bool,
    /// Index in `Batch::items` of the item that failed, only when the sink knows it: the
    /// pipeline applies the items before it, then hands this one to the poison policy
    /// without trying it again, so a guess would skip or park an innocent event.
    pub failed_at: Option<usize>,
}

/// A failure outside of applying a batch: opening, preparing tables, reading checkpoints.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SinkError(pub String);

/// An operation the sink cannot accept.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum DecodeError {
    #[error("unknown operation `{name}` for the {sink} sink; it applies {expected}")]
    Unsupported { name: String, sink: &'static str, expected: &'static str },
    #[error("operation `{name}` is malformed: {reason}")]
    Malformed { name: String, reason: String },
    #[error("the {0} sink applies the operations of a reducer sidecar and cannot record events by itself; configure `sidecar`")]
    NeedsSidecar(&'static str),
    #[error("raw SQL (`projection.Execute`) is disabled for this sink (`allow_raw_sql: false`); send `projection.Statement` with typed parameters")]
    RawSqlDisabled,
}

/// A target database.
pub trait Sink: Send + Sync + 'static {
    type Op: Send + Sync + fmt::Debug + 'static;
    type Writer: SinkWriter<Op = Self::Op>;

    /// Short name for messages, e.g. `sqlite`.
    fn name(&self) -> &'static str;

    /// Decodes one operation; `Ok(None)` for `projection.Ignore`.
    fn decode(&self, operation: &Any) -> Result<Option<Self::Op>, DecodeError>;

    /// Producer connectors (no sidecar): the operations that record `event` as it is.
    fn produce(&self, event: &EventRef) -> Result<Vec<Self::Op>, DecodeError> {
        let _ = event;
        Err(DecodeError::NeedsSidecar(self.name()))
    }

    /// Every checkpoint row the connector has stored.
    fn load_checkpoints(&self) -> impl Future<Output = Result<Vec<CheckpointRow>, SinkError>> + Send;

    /// Removes the rows of an earlier partition count once they are no longer needed.
    fn delete_checkpoints(&self, partition_count: u32) -> impl Future<Output = Result<(), SinkError>> + Send;

    /// The projection version this connector last recorded in the target (see the sidecar's
    /// `Describe`), if any.
    fn projection_version(&self) -> impl Future<Output = Result<Option<String>, SinkError>> + Send {
        async { Ok(None) }
    }

    /// Records the projection version. With `reset`, rebuilds in the same transaction: applies
    /// the reset operations and deletes every checkpoint of the connector, so the whole log is
    /// projected again.
    fn record_projection_version(
        &self,
        projection: &str,
        version: &str,
        reset: Option<Vec<Self::Op>>,
    ) -> impl Future<Output = Result<(), SinkError>> + Send {
        let _ = (projection, version, reset);
        async { Err(SinkError("this target does not record projection versions".into())) }
    }

    /// How many writers may apply batches at the same time (each owns fixed partitions).
    fn writer_count(&self) -> usize;

    fn open_writer(&self) -> impl Future<Output = Result<Self::Writer, SinkError>> + Send;
}

/// Applies batches, one at a time.
pub trait SinkWriter: Send + 'static {
    type Op: Send + Sync + std::fmt::Debug + 'static;

    /// Applies the batch and its checkpoints atomically where the database allows it. On error
    /// nothing of the batch is kept (transactional targets).
    fn apply(&mut self, batch: Arc<Batch<Self::Op>>) -> impl Future<Output = Result<(), ApplyError>> + Send;
}
