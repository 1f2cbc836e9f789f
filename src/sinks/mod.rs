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
    config::{ConnectorConfig, EventuousCheckpoint},
    run_context::RunContext,
    event::{Event, Position},
};

#[cfg(feature = "elastic")]
pub mod elastic;
pub mod blue_green;
pub mod checkpoint_store;
pub mod console;
pub mod eventuous;
pub mod parked;
pub mod registry;
pub mod settings;
#[cfg(feature = "http")]
pub mod http;
#[cfg(feature = "mongo")]
pub mod mongo;
#[cfg(feature = "mssql")]
pub mod mssql;
#[cfg(feature = "postgres")]
pub mod postgres;
#[cfg(feature = "redis")] pub mod redis;
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

/// What a batch may assume about a partition's stored checkpoint before it writes a new one.
///
/// The writer of a connector knows what it loaded at start and what it committed since; it
/// states that here, and the sink's checkpoint write succeeds only if the stored row still
/// says so, checked under a lock inside the batch's own transaction (a compare-and-set). So a
/// batch planned from a stale read (a restart that raced the killed process's last commit, a
/// second gateway on the same connector, an in-doubt retry) never commits: the sink reports
/// [`ApplyError::checkpoint_moved`] and the connector re-plans from what is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    /// The partition has no row yet: the write inserts it, and fails if one appeared.
    Absent,
    /// The row holds this position: the write moves it from there, and fails otherwise.
    At(Position),
    /// Not checked (tools, tests, and the sinks without transactions): the write never moves
    /// a stored position backwards, and that is all.
    Unchecked,
}

impl Stored {
    /// True when the write must find the stored row as stated (a compare-and-set).
    pub fn is_checked(self) -> bool {
        self != Stored::Unchecked
    }

    /// The stored position the write expects, if it expects one.
    pub fn position(self) -> Option<Position> {
        match self {
            Stored::At(at) => Some(at),
            Stored::Absent | Stored::Unchecked => None,
        }
    }
}

/// One checkpoint row a batch writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckpointWrite {
    pub partition: u32,
    /// The position the partition reaches with this batch.
    pub position: Position,
    /// What the stored row must say for the write to go ahead.
    pub stored: Stored,
}

/// One transaction's worth of work: consecutive items of some partitions (in order within
/// each partition) and the position each of those partitions reaches once they are applied.
#[derive(Debug)]
pub struct Batch<Op> {
    pub items: Vec<BatchItem<Op>>,
    /// One row for every partition whose position moves forward, sorted by partition.
    pub checkpoints: Vec<CheckpointWrite>,
    /// The connector's partition count, stored with each checkpoint row.
    pub partition_count: u32,
}

impl<Op> Batch<Op> {
    /// A batch whose checkpoint rows are not checked against what is stored (see
    /// [`Stored::Unchecked`]).
    pub fn new(items: Vec<BatchItem<Op>>, partition_count: u32) -> Self {
        let reached = Self::reached(&items);
        let checkpoints = reached
            .into_iter()
            .map(|(partition, position)| CheckpointWrite { partition, position, stored: Stored::Unchecked })
            .collect();
        Self { items, checkpoints, partition_count }
    }

    /// A batch planned from the stored positions `stored` (indexed by partition; `None`: no
    /// row). A partition whose items do not reach past its stored position writes no row: a
    /// checkpoint never moves backwards, whatever the items say (a read-progress mark sent
    /// after a restart can be behind a partition that had already gone further).
    pub fn fenced(items: Vec<BatchItem<Op>>, partition_count: u32, stored: &[Option<Position>]) -> Self {
        let reached = Self::reached(&items);
        let checkpoints = reached
            .into_iter()
            .filter_map(|(partition, position)| {
                let stored = match stored.get(partition as usize).copied().flatten() {
                    Some(at) if position <= at => return None,
                    Some(at) => Stored::At(at),
                    None => Stored::Absent,
                };
                Some(CheckpointWrite { partition, position, stored })
            })
            .collect();
        Self { items, checkpoints, partition_count }
    }

    /// (partition, position) of every row the batch writes.
    pub fn positions(&self) -> Vec<(u32, Position)> {
        self.checkpoints.iter().map(|c| (c.partition, c.position)).collect()
    }

    fn reached(items: &[BatchItem<Op>]) -> std::collections::BTreeMap<u32, Position> {
        let mut reached = std::collections::BTreeMap::new();
        for item in items {
            let position = reached.entry(item.partition()).or_insert(0);
            *position = item.position().max(*position);
        }
        reached
    }

    /// True when applying the batch would change nothing: no operation, no parked event, no
    /// checkpoint that moves.
    pub fn is_empty(&self) -> bool {
        self.checkpoints.is_empty() && self.items.iter().all(|i| matches!(i, BatchItem::Advance { .. }))
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
    /// The batch was planned from a stored checkpoint that has moved since (see [`Stored`]):
    /// nothing of it was committed, and the connector must re-plan from what is stored.
    pub checkpoint_moved: bool,
}

impl ApplyError {
    /// The failure of a batch whose checkpoint compare-and-set found another position stored.
    pub fn checkpoint_moved(detail: impl fmt::Display) -> Self {
        Self {
            message: format!(
                "a checkpoint moved since this gateway read it ({detail}): another process committed for this connector \
                 (the gateway this one replaced, whose last commit was still in flight, or a second gateway running the same \
                 connector); nothing of this batch was committed"
            ),
            transient: false,
            failed_at: None,
            checkpoint_moved: true,
        }
    }
}

/// What a checkpoint compare-and-set expected and found, for [`ApplyError::checkpoint_moved`].
pub fn moved_detail(partition: u32, expected: Stored, found: &str) -> String {
    let expected = expected.position().map_or("no row".to_string(), |at| format!("position {at}"));
    format!("partition {partition}: expected {expected}, found {found}")
}

/// A failure outside of applying a batch: opening, preparing tables, reading checkpoints.
///
/// `.0` is the one line an operator reads: what failed, on which target, file or key, the
/// target's own words, and what to do. Its kind ([`SinkError::kind`]) says what the failure
/// is, so a caller acts on it without reading the text (waits out an outage, fails at once on
/// a mistake). A cause is part of the line and never a `source`, so a chain printed with `{:#}`
/// says it once.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SinkError(pub String, SinkErrorKind);

/// What kind of failure a [`SinkError`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SinkErrorKind {
    /// The target cannot be reached, the connection to it was lost, or it cannot serve for now
    /// (shutting down, failing over, busy, out of resources): an outage, which may end by
    /// itself. The target's own classification decides (each target's `is_transient`).
    Unreachable,
    /// The target answered and refused: credentials, permissions, a certificate, a database
    /// that does not exist, a request it rejected.
    Refused,
    /// Preparing the target failed: the gateway's schema, tables or indices, `init_sql` or
    /// `init_sql_file`, an index template or lifecycle policy, or a capability the
    /// configuration asks for (MongoDB's transactions).
    Schema,
    /// The connector's checkpoints (or the Eventuous checkpoint it takes over) cannot be read or
    /// stored, or what is stored is not a checkpoint.
    Checkpoints,
    /// Rebuilding the read model for a new projection version failed: a reset operation of the
    /// sidecar's `Describe` is malformed, or the target refused it.
    Reset,
    /// The configuration cannot work: a malformed URL, connection string or header, a feature
    /// not built into this binary, or something this target does not do.
    Config,
    /// The gateway itself failed: a blocking task panicked or was cancelled.
    Internal,
}

impl SinkError {
    pub fn new(kind: SinkErrorKind, message: impl Into<String>) -> Self {
        Self(message.into(), kind)
    }

    /// See [`SinkErrorKind::Unreachable`].
    pub fn unreachable(message: impl Into<String>) -> Self {
        Self::new(SinkErrorKind::Unreachable, message)
    }

    /// See [`SinkErrorKind::Refused`].
    pub fn refused(message: impl Into<String>) -> Self {
        Self::new(SinkErrorKind::Refused, message)
    }

    /// See [`SinkErrorKind::Schema`].
    pub fn schema(message: impl Into<String>) -> Self {
        Self::new(SinkErrorKind::Schema, message)
    }

    /// See [`SinkErrorKind::Checkpoints`].
    pub fn checkpoints(message: impl Into<String>) -> Self {
        Self::new(SinkErrorKind::Checkpoints, message)
    }

    /// See [`SinkErrorKind::Reset`].
    pub fn reset(message: impl Into<String>) -> Self {
        Self::new(SinkErrorKind::Reset, message)
    }

    /// See [`SinkErrorKind::Config`].
    pub fn config(message: impl Into<String>) -> Self {
        Self::new(SinkErrorKind::Config, message)
    }

    /// See [`SinkErrorKind::Internal`].
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(SinkErrorKind::Internal, message)
    }

    pub fn kind(&self) -> SinkErrorKind {
        self.1
    }

    /// True when trying again later may succeed: the target is unreachable for now.
    pub fn is_transient(&self) -> bool {
        self.1 == SinkErrorKind::Unreachable
    }

    /// True when trying again cannot help until someone changes something: the configuration,
    /// the target's schema (or the permissions to prepare it), the stored checkpoints, the
    /// sidecar's reset operations, or the gateway itself. Not an outage, so not worth waiting
    /// for.
    pub fn needs_a_fix(&self) -> bool {
        match self.1 {
            SinkErrorKind::Unreachable | SinkErrorKind::Refused => false,
            SinkErrorKind::Schema
            | SinkErrorKind::Checkpoints
            | SinkErrorKind::Reset
            | SinkErrorKind::Config
            | SinkErrorKind::Internal => true,
        }
    }

    /// The same failure, of kind [`SinkErrorKind::Unreachable`] when the target's own
    /// classification of its cause says it is transient (a connection lost while reading the
    /// checkpoints is an outage, not a checkpoint problem).
    pub fn unreachable_if(self, transient: bool) -> Self {
        if transient { Self(self.0, SinkErrorKind::Unreachable) } else { self }
    }
}

impl From<tokio::task::JoinError> for SinkError {
    /// A blocking task that panicked or was cancelled (the runtime shutting down).
    fn from(e: tokio::task::JoinError) -> Self {
        SinkError::internal(e.to_string())
    }
}

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
        async { Err(SinkError::config("this target does not record projection versions")) }
    }

    /// The position an Eventuous checkpoint store (the Eventuous Connector's) left in this
    /// target under `checkpoint`, for a connector taking over from it (`eventuous_checkpoint`).
    /// `Ok(None)` when it holds none: no such table, collection, index or document, or a null
    /// or -1 position ([`eventuous::position`]).
    fn eventuous_checkpoint(
        &self,
        checkpoint: &EventuousCheckpoint,
    ) -> impl Future<Output = Result<Option<Position>, SinkError>> + Send {
        let refused = SinkError::config(format!(
            "the {} sink has no Eventuous checkpoint to take over ({}); remove `eventuous_checkpoint`",
            self.name(),
            checkpoint.place
        ));
        async move { Err(refused) }
    }

    /// The connector's parked events that `query` selects, oldest position first.
    fn parked_events(&self, query: &parked::ParkedQuery) -> impl Future<Output = Result<Vec<parked::ParkedEvent>, SinkError>> + Send {
        let _ = query;
        let refused = SinkError::config(format!("the {} sink keeps no parked events", self.name()));
        async move { Err(refused) }
    }

    /// Deletes the connector's parked events with these record ids; returns how many it deleted
    /// (an id it does not hold is no error: discarding is idempotent).
    fn discard_parked(&self, ids: &[String]) -> impl Future<Output = Result<u64, SinkError>> + Send {
        let _ = ids;
        let refused = SinkError::config(format!("the {} sink keeps no parked events", self.name()));
        async move { Err(refused) }
    }

    /// How many parked events of the connector the target holds; `None` for a sink whose
    /// parked events are not counted here (none kept, or append-only elsewhere).
    fn count_parked(&self) -> impl Future<Output = Result<Option<u64>, SinkError>> + Send {
        async { Ok(None) }
    }

    /// Fences every batch of the writers opened from now on with the projection version the
    /// connector runs (blue/green rebuilds): a target that can refuses a batch of another
    /// version's read model once a swap recorded another one (PostgreSQL). Others ignore it.
    fn pin_version(&self, version: &str) {
        let _ = version;
    }

    /// True when the read model this sink was opened on is no longer the live one: a blue/green
    /// rebuild swapped another version in (the connector then reopens its sink).
    fn swapped(&self) -> impl Future<Output = Result<bool, SinkError>> + Send {
        async { Ok(false) }
    }

    /// How many writers may apply batches at the same time (each owns fixed partitions).
    fn writer_count(&self) -> usize;

    fn open_writer(&self) -> impl Future<Output = Result<Self::Writer, SinkError>> + Send;
}

/// How the pipeline opens a sink from its settings (one line per sink in `registry.rs`).
pub trait OpenSink: Sink + Sized {
    /// The sink's settings (`<sink>/config.rs`).
    type Settings;

    /// Opens the sink for `connector`, whose sink section `settings` is, in a run `context`.
    fn open(settings: &Self::Settings, connector: &ConnectorConfig, context: &RunContext) -> impl Future<Output = Result<Self, SinkError>> + Send;
}

/// Applies batches, one at a time.
pub trait SinkWriter: Send + 'static {
    type Op: Send + Sync + std::fmt::Debug + 'static;

    /// Applies the batch and its checkpoints atomically where the database allows it. On error
    /// nothing of the batch is kept (transactional targets).
    fn apply(&mut self, batch: Arc<Batch<Self::Op>>) -> impl Future<Output = Result<(), ApplyError>> + Send;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn advance(partition: u32, position: Position) -> BatchItem<()> {
        BatchItem::Advance { partition, position }
    }

    #[test]
    fn a_fenced_batch_never_moves_a_checkpoint_backwards() {
        // Partition 0 stored 50, partition 1 stored 10, partition 2 has no row; the batch's
        // read-progress mark (30) is behind partition 0.
        let stored = [Some(50), Some(10), None];
        let batch = Batch::fenced(vec![advance(0, 30), advance(1, 30), advance(2, 30)], 3, &stored);
        assert_eq!(
            batch.checkpoints,
            [
                CheckpointWrite { partition: 1, position: 30, stored: Stored::At(10) },
                CheckpointWrite { partition: 2, position: 30, stored: Stored::Absent },
            ]
        );
        assert!(!batch.is_empty());
        let behind = Batch::fenced(vec![advance(0, 30), advance(0, 50)], 3, &stored);
        assert!(behind.checkpoints.is_empty());
        assert!(behind.is_empty(), "marks at or behind what is stored change nothing");
    }

    #[test]
    fn a_transient_cause_makes_a_failure_an_outage_and_only_mistakes_need_a_fix() {
        let text = "PostgreSQL target postgres://gw@db/app: cannot read the checkpoints: connection closed";
        let failed = SinkError::checkpoints(text);
        assert!(failed.needs_a_fix() && !failed.is_transient());
        let outage = SinkError::checkpoints(text).unreachable_if(true);
        assert_eq!(outage.kind(), SinkErrorKind::Unreachable);
        assert!(outage.is_transient() && !outage.needs_a_fix());
        assert_eq!((outage.to_string(), outage.0), (text.to_string(), text.to_string()), "only the kind changes, never the text");
        let refused = SinkError::refused("cannot connect to the PostgreSQL target x: password authentication failed").unreachable_if(false);
        assert_eq!(refused.kind(), SinkErrorKind::Refused);
        assert!(!refused.needs_a_fix(), "credentials may be put in place while the gateway waits");
        for mistake in [SinkError::schema("s"), SinkError::reset("r"), SinkError::config("c"), SinkError::internal("i")] {
            assert!(mistake.needs_a_fix(), "{mistake:?}");
        }
    }

    #[test]
    fn an_unfenced_batch_writes_every_partition_it_touches_unchecked() {
        let batch = Batch::new(vec![advance(1, 7), advance(0, 3), advance(1, 9)], 2);
        assert_eq!(batch.positions(), [(0, 3), (1, 9)]);
        assert!(batch.checkpoints.iter().all(|c| c.stored == Stored::Unchecked));
    }
}
