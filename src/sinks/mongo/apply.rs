//! Applies a batch to MongoDB as ordered write commands: per collection (in the order the
//! batch first uses them), that collection's statements in batch order, one command per run of
//! the same kind (`insert`, `update` for updates, replacements and upserts, `delete`); the
//! parked events likewise; the checkpoint documents last.
//!
//! Grouping by collection is what keeps a batch to a few round trips: a read model that writes
//! two collections per event (the bookings example: the booking, then the guest's counters)
//! would otherwise cost one command per operation. Writes to different collections do not
//! affect each other, and each collection's writes keep their batch order, so the result is
//! the same as applying the operations one by one in batch order.
//!
//! Ordered commands stop at the first failing statement, and the server reports its index:
//! that is how a failure is traced back to its operation and event (`failed_at`).
//!
//! With transactions (a replica set), everything runs in one multi-document transaction and
//! the effect is exactly once. A connector whose partitions are shared out among gateways
//! first runs the claims fence in it (`lease::mongo_claims::fence_command`): it writes the
//! claim documents of every partition the batch writes for (operations or checkpoint), so a
//! take of one of them waits for the transaction (or, done first, makes it fail with a write
//! conflict and be retried), and the batch is refused whole unless this gateway still holds
//! each under its epoch. A commit whose outcome is unknown (the connection was lost, or
//! the server said `UnknownTransactionCommitResult`) leaves the batch in doubt: the next
//! attempt at it first reads the checkpoints, and if they hold the batch's positions it
//! committed.
//!
//! Without transactions, the commands are applied one after the other and the checkpoints
//! right after them: a crash in between applies the batch's operations again after the
//! restart (at-least-once; upserts with `$set` are idempotent, `$inc` is not). Within one
//! process, the writer remembers which statements of a batch that failed were applied for sure
//! (those of the commands before the failing one, and the failing command's statements before
//! the failing statement), so that retrying the batch, or applying the events before a failing
//! one on their own, does not apply them twice.

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
};

use mongodb::{
    Client, ClientSession, Database,
    bson::{Bson, Document, doc},
    error::{ErrorKind, TRANSIENT_TRANSACTION_ERROR, UNKNOWN_TRANSACTION_COMMIT_RESULT},
};
use tracing::debug;

use super::{
    Names, describe_error, is_transient, is_transient_code,
    ops::{MongoOp, Write},
};
use crate::{
    event::Position,
    lease::{Claims, mongo_claims},
    sinks::{ApplyError, Batch, BatchItem, CheckpointWrite, EventRef, SinkWriter, Stored, moved_detail},
};

/// What an attempt that failed applied for sure of one event.
#[derive(Debug, Clone, PartialEq)]
enum Done {
    /// These statements: (operation index, document index within an `InsertMany`, else 0).
    Statements(HashSet<(usize, usize)>),
    /// The event was parked.
    Parked,
}

/// Most statements in one write command (the server's `maxWriteBatchSize` is 100,000; see
/// `Names::max_statements` for servers that take fewer).
pub(super) const MAX_STATEMENTS: usize = 1000;
/// Most BSON bytes of statements in one command (the server takes 16 MiB plus a little).
const MAX_COMMAND_BYTES: usize = 8 * 1024 * 1024;

/// Applies batches through the shared client.
pub struct MongoWriter {
    client: Client,
    db: Database,
    names: Arc<Names>,
    connector: Arc<str>,
    transactional: bool,
    /// Checkpoints of a batch whose commit outcome is unknown.
    in_doubt: Option<(u32, Vec<(u32, Position)>)>,
    /// Without transactions: what an attempt that failed applied for sure of an event
    /// (partition, position).
    applied: HashMap<(u32, Position), Done>,
    /// The partition claims every transaction is fenced with, when the connector's partitions
    /// are shared out among gateways.
    fence: Option<Arc<Claims>>,
    /// The projection version the live run applies (blue/green): checked in every batch
    /// transaction, so a batch after a swap fails whole (`blue_green.rs`).
    pinned: Arc<std::sync::OnceLock<String>>,
    /// A staged run's collections already recorded (`blue_green.rs`); `None` for a live run.
    recorded: Option<HashSet<String>>,
}

impl MongoWriter {
    pub(super) fn new(
        client: Client,
        db: Database,
        names: Arc<Names>,
        connector: Arc<str>,
        transactional: bool,
        fence: Option<Arc<Claims>>,
    ) -> Self {
        Self {
            client,
            db,
            names,
            connector,
            transactional,
            in_doubt: None,
            applied: HashMap::new(),
            fence,
            pinned: Default::default(),
            recorded: None,
        }
    }

    /// The blue/green fence of a live run, and for a staged run the record of its collections.
    pub(super) fn blue_green(&mut self, pinned: Arc<std::sync::OnceLock<String>>, staged: bool) {
        self.pinned = pinned;
        self.recorded = staged.then(HashSet::new);
    }

    /// A staged run records the collections it writes, so the swap knows what to rename.
    async fn record_collections(&mut self, batch: &Batch<MongoOp>) -> Result<(), ApplyError> {
        let Some(recorded) = &self.recorded else { return Ok(()) };
        let new: Vec<String> = batch
            .items
            .iter()
            .filter_map(|item| match item {
                BatchItem::Apply { ops, .. } => Some(ops),
                _ => None,
            })
            .flatten()
            .map(|op| op.collection.clone().unwrap_or_else(|| self.names.collection.clone()))
            .filter(|c| !recorded.contains(c))
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        if new.is_empty() {
            return Ok(());
        }
        self.db
            .collection::<Document>(&self.names.checkpoints)
            .update_one(
                doc! { "_id": super::blue_green::collections_id(&self.connector) },
                doc! { "$set": { "kind": "blue_green_collections", "connector": &*self.connector }, "$addToSet": { "names": { "$each": &new } } },
            )
            .upsert(true)
            .await
            .map_err(|e| ApplyError {
                message: format!("cannot record the rebuild's collections: {}", describe_error(&e)),
                transient: is_transient(&e),
                failed_at: None,
                checkpoint_moved: false,
            })?;
        self.recorded.get_or_insert_with(HashSet::new).extend(new);
        Ok(())
    }

    async fn apply_batch(&mut self, batch: &Batch<MongoOp>) -> Result<(), ApplyError> {
        self.record_collections(batch).await?;
        if let Some(doubt) = self.in_doubt.take()
            && doubt.0 == batch.partition_count
            && doubt.1 == batch.positions()
        {
            match super::checkpoints_reached(&self.db, &self.names, &self.connector, &doubt).await {
                Ok(true) => return Ok(()),
                Ok(false) => {}
                Err(e) => {
                    self.in_doubt = Some(doubt);
                    return Err(ApplyError {
                        message: format!("cannot check whether the previous attempt committed: {}", describe_error(&e)),
                        transient: is_transient(&e),
                        failed_at: None,
                        checkpoint_moved: false,
                    });
                }
            }
        }
        let skip = if self.transactional { HashMap::new() } else { self.applied.clone() };
        let (names, connector) = (self.names.clone(), self.connector.clone());
        let runs = plan(batch, &names, &connector, &skip, self.transactional).map_err(|e| ApplyError {
            message: e.0,
            transient: false,
            failed_at: e.1,
            checkpoint_moved: false,
        })?;
        if self.transactional {
            self.apply_in_transaction(batch, &runs).await
        } else {
            let result = self.apply_in_order(&runs, skip).await;
            if result.is_ok() {
                for item in &batch.items {
                    self.applied.remove(&(item.partition(), item.position()));
                }
            }
            result
        }
    }

    async fn apply_in_transaction(&mut self, batch: &Batch<MongoOp>, runs: &[Run<'_>]) -> Result<(), ApplyError> {
        let whole = |what: &str, e: &mongodb::error::Error| ApplyError {
            message: format!("{what}: {}", describe_error(e)),
            transient: is_transient(e),
            failed_at: None,
            checkpoint_moved: false,
        };
        let mut session = self.client.start_session().await.map_err(|e| whole("cannot start a session", &e))?;
        session.start_transaction().await.map_err(|e| whole("cannot start a transaction", &e))?;
        if let Some(claims) = &self.fence
            && let Err(error) = self.fence(claims, batch, &mut session).await
        {
            let _ = session.abort_transaction().await;
            return Err(error);
        }
        if let Some(pinned) = self.pinned.get() {
            let version = self
                .db
                .collection::<Document>(&self.names.checkpoints)
                .find_one(doc! { "_id": super::version_id(&self.connector) })
                .session(&mut session)
                .await
                .map_err(|e| whole("cannot read the projection version (the blue/green fence)", &e))?;
            let recorded = version.as_ref().and_then(|d| d.get_str("version").ok());
            if recorded.is_some_and(|r| r != pinned) {
                let _ = session.abort_transaction().await;
                return Err(ApplyError::checkpoint_moved("a blue/green rebuild swapped another version of the read model in"));
            }
        }
        for run in runs {
            if let Err(failure) = run.execute(&self.db, Some(&mut session), &self.names).await {
                // The server aborts the transaction on a failing write; make sure of it.
                let _ = session.abort_transaction().await;
                return Err(failure.error);
            }
        }
        debug!("committing a batch of {} item(s) with its checkpoints in one transaction", batch.items.len());
        if let Err(e) = session.commit_transaction().await {
            let unknown = e.contains_label(UNKNOWN_TRANSACTION_COMMIT_RESULT) || is_network(&e);
            if unknown {
                self.in_doubt = Some((batch.partition_count, batch.positions()));
            }
            let mut error = whole("commit failed", &e);
            error.transient |= unknown || e.contains_label(TRANSIENT_TRANSACTION_ERROR);
            return Err(error);
        }
        Ok(())
    }

    /// The claims fence, first in the batch's transaction: every partition the batch writes
    /// for must still be this gateway's under its epoch (one it does not hold gets epoch -1,
    /// which no claim has).
    async fn fence(&self, claims: &Claims, batch: &Batch<MongoOp>, session: &mut ClientSession) -> Result<(), ApplyError> {
        let epochs = claims.fence_pairs(batch);
        if epochs.is_empty() {
            return Ok(());
        }
        let command = mongo_claims::fence_command(&self.connector, &claims.holder, &epochs);
        let reply = self.db.run_command(command).session(session).await.map_err(|e| ApplyError {
            message: format!("checking the partition claims: {}", describe_error(&e)),
            transient: is_transient(&e),
            failed_at: None,
            checkpoint_moved: false,
        })?;
        if let Ok(errors) = reply.get_array("writeErrors")
            && let Some(Bson::Document(first)) = errors.first()
        {
            let code = first.get_i32("code").unwrap_or(0);
            return Err(ApplyError {
                message: format!("checking the partition claims: code {code}: {}", first.get_str("errmsg").unwrap_or("no message")),
                transient: is_transient_code(code),
                failed_at: None,
                checkpoint_moved: false,
            });
        }
        if mongo_claims::matched(&reply) == epochs.len() as u64 {
            return Ok(());
        }
        let (partitions, epochs): (Vec<u32>, Vec<i64>) = epochs.into_iter().unzip();
        Err(ApplyError {
            message: crate::lease::fenced_off(&claims.holder, &self.connector, &partitions, &epochs),
            transient: false,
            failed_at: None,
            checkpoint_moved: false,
        })
    }

    async fn apply_in_order(&mut self, runs: &[Run<'_>], mut done: HashMap<(u32, Position), Done>) -> Result<(), ApplyError> {
        for run in runs {
            match run.execute(&self.db, None, &self.names).await {
                Ok(()) => run.count_applied(run.statements.len(), &mut done),
                Err(failure) => {
                    run.count_applied(failure.applied, &mut done);
                    self.applied = done;
                    return Err(failure.error);
                }
            }
        }
        Ok(())
    }
}

impl SinkWriter for MongoWriter {
    type Op = MongoOp;

    async fn apply(&mut self, batch: Arc<Batch<MongoOp>>) -> Result<(), ApplyError> {
        self.apply_batch(&batch).await.map_err(|mut e| {
            e.message = format!("MongoDB target `{}`: {}", self.names.display, e.message);
            e
        })
    }
}

/// Which write command a run uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Command {
    Insert,
    Update,
    Delete,
}

impl Command {
    fn name(self) -> &'static str {
        match self {
            Command::Insert => "insert",
            Command::Update => "update",
            Command::Delete => "delete",
        }
    }

    fn statements_key(self) -> &'static str {
        match self {
            Command::Insert => "documents",
            Command::Update => "updates",
            Command::Delete => "deletes",
        }
    }
}

/// Where a statement comes from.
#[derive(Clone, Copy)]
enum Origin<'b> {
    /// Operation `number` (1-based) of the event at `item` in the batch; `document`: which of
    /// an insert's documents (0 for other writes).
    Op { item: usize, number: usize, document: usize, event: &'b EventRef, op: &'b MongoOp },
    Park { item: usize, event: &'b EventRef },
    Checkpoint,
    /// A checkpoint row written only if it is where the batch was planned from.
    PlannedCheckpoint(CheckpointWrite),
}

/// Consecutive statements of one command on one collection.
struct Run<'b> {
    collection: &'b str,
    command: Command,
    statements: Vec<Document>,
    origins: Vec<Origin<'b>>,
    bytes: usize,
}

/// A run that failed, and how many of its statements were applied before it did.
struct RunFailure {
    error: ApplyError,
    applied: usize,
}

impl<'b> Run<'b> {
    fn command_document(&self) -> Document {
        let mut command = doc! { self.command.name(): self.collection };
        command.insert(self.command.statements_key(), self.statements.iter().cloned().map(Bson::Document).collect::<Vec<_>>());
        command.insert("ordered", true);
        command
    }

    async fn execute(&self, db: &Database, session: Option<&mut ClientSession>, names: &Names) -> Result<(), RunFailure> {
        let mut command = self.command_document();
        if session.is_none()
            && let Some(wc) = &names.write_concern
        {
            command.insert("writeConcern", wc.clone());
        }
        let action = db.run_command(command);
        let result = match session {
            Some(session) => action.session(session).await,
            None => action.await,
        };
        let reply = result.map_err(|e| RunFailure {
            error: ApplyError {
                message: format!("{} on `{}` failed: {}", self.command.name(), self.collection, describe_error(&e)),
                transient: is_transient(&e),
                // The whole command was refused: the culprit is one of its statements. Naming
                // the run's last event lets the writer apply the events before it on their own,
                // which narrows the culprit down one event at a time.
                failed_at: if is_transient(&e) { None } else { self.origins.iter().rev().find_map(Origin::item) },
                checkpoint_moved: false,
            },
            applied: 0,
        })?;
        if let Ok(errors) = reply.get_array("writeErrors")
            && let Some(Bson::Document(first)) = errors.first()
        {
            let index = first.get_i32("index").map(|i| i as usize).unwrap_or(0).min(self.statements.len().saturating_sub(1));
            let code = first.get_i32("code").unwrap_or(0);
            let message = first.get_str("errmsg").unwrap_or("no message");
            let mut error = self.origins[index].write_error(code, message);
            // Two upserts of the same `_id` at the same time (another writer, another process)
            // can both miss and both insert: the loser's duplicate key is a race, and trying
            // again updates the document the winner inserted.
            if is_duplicate_key(code) && self.command == Command::Update && is_id_only(&self.statements[index]) {
                error.transient = true;
                error.failed_at = None;
                error.message.push_str(" (an upsert raced with another writer's; retrying)");
            }
            return Err(RunFailure { error, applied: index });
        }
        // A compare-and-set whose filter matched nothing: the row is not where the batch was
        // planned from (`n` counts the statements that matched).
        if let Some(Origin::PlannedCheckpoint(first)) = self.origins.first()
            && self.command == Command::Update
        {
            let matched = match reply.get("n") {
                Some(Bson::Int32(n)) => *n as usize,
                Some(Bson::Int64(n)) => *n as usize,
                _ => self.statements.len(),
            };
            if matched < self.statements.len() {
                let partitions: Vec<String> = self
                    .origins
                    .iter()
                    .filter_map(|o| match o {
                        Origin::PlannedCheckpoint(c) => Some(c.partition.to_string()),
                        _ => None,
                    })
                    .collect();
                let detail = if partitions.len() == 1 {
                    moved_detail(first.partition, first.stored, "another position")
                } else {
                    format!("{} of partitions {} matched the positions the batch was planned from", matched, partitions.join(", "))
                };
                return Err(RunFailure { error: ApplyError::checkpoint_moved(detail), applied: 0 });
            }
        }
        if let Ok(concern) = reply.get_document("writeConcernError") {
            let code = concern.get_i32("code").unwrap_or(0);
            let message = concern.get_str("errmsg").unwrap_or("no message");
            return Err(RunFailure {
                error: ApplyError {
                    message: format!(
                        "write concern error on `{}` (code {code} {}): {message}; the writes were applied but not confirmed as asked",
                        self.collection,
                        concern.get_str("codeName").unwrap_or_default()
                    ),
                    // Not confirmed in time: try again; unsatisfiable (79, 100): stop.
                    transient: !matches!(code, 79 | 100),
                    failed_at: None,
                    checkpoint_moved: false,
                },
                applied: self.statements.len(),
            });
        }
        Ok(())
    }

    /// Records the first `n` statements as applied for their events.
    fn count_applied(&self, n: usize, done: &mut HashMap<(u32, Position), Done>) {
        for origin in &self.origins[..n] {
            match origin {
                Origin::Op { event, number, document, .. } => {
                    let entry = done
                        .entry((event.partition, event.event.position))
                        .or_insert_with(|| Done::Statements(HashSet::new()));
                    if let Done::Statements(statements) = entry {
                        statements.insert((number - 1, *document));
                    }
                }
                Origin::Park { event, .. } => {
                    done.insert((event.partition, event.event.position), Done::Parked);
                }
                Origin::Checkpoint | Origin::PlannedCheckpoint(_) => {}
            }
        }
    }
}

impl Origin<'_> {
    fn item(&self) -> Option<usize> {
        match self {
            Origin::Op { item, .. } | Origin::Park { item, .. } => Some(*item),
            Origin::Checkpoint | Origin::PlannedCheckpoint(_) => None,
        }
    }

    fn write_error(&self, code: i32, message: &str) -> ApplyError {
        let kind = match code {
            code if is_duplicate_key(code) => "duplicate key",
            2 | 9 | 14 | 40 | 52 | 55 | 56 | 57 | 66 => "invalid operation (update document, filter or pipeline)",
            _ => "write error",
        };
        let transient = is_transient_code(code);
        match self {
            Origin::Op { item, number, event, op, .. } => ApplyError {
                message: format!("operation {number} of {event} failed: {kind} (code {code}): {message}; {op}"),
                transient,
                failed_at: Some(*item),
                checkpoint_moved: false,
            },
            Origin::Park { item, event } => ApplyError {
                message: format!("parking {event} failed: {kind} (code {code}): {message}"),
                transient,
                failed_at: Some(*item),
                checkpoint_moved: false,
            },
            Origin::PlannedCheckpoint(c) if is_duplicate_key(code) => {
                ApplyError::checkpoint_moved(moved_detail(c.partition, c.stored, "a row"))
            }
            Origin::Checkpoint | Origin::PlannedCheckpoint(_) => ApplyError {
                message: format!("writing the checkpoints failed: {kind} (code {code}): {message}"),
                transient,
                failed_at: None,
                checkpoint_moved: false,
            },
        }
    }
}

fn is_duplicate_key(code: i32) -> bool {
    matches!(code, 11000 | 11001 | 12582)
}

/// An update statement whose filter is exactly `{_id: ...}`.
fn is_id_only(statement: &Document) -> bool {
    statement.get_document("q").is_ok_and(|q| q.len() == 1 && q.contains_key("_id"))
}

fn is_network(e: &mongodb::error::Error) -> bool {
    matches!(*e.kind, ErrorKind::Io(_) | ErrorKind::ConnectionPoolCleared { .. })
}

/// Runs of write commands grouped by collection: per collection, in the order the batch first
/// uses it, its statements in batch order.
struct Plan<'b> {
    collections: Vec<(&'b str, Vec<Run<'b>>)>,
    max_statements: usize,
}

impl<'b> Plan<'b> {
    fn new(names: &Names) -> Self {
        Self { collections: Vec::new(), max_statements: names.max_statements }
    }

    fn push(&mut self, collection: &'b str, command: Command, statement: Document, origin: Origin<'b>) {
        let runs = match self.collections.iter().position(|(c, _)| *c == collection) {
            Some(i) => &mut self.collections[i].1,
            None => {
                self.collections.push((collection, Vec::new()));
                &mut self.collections.last_mut().expect("just pushed").1
            }
        };
        let bytes = statement_size(&statement);
        match runs.last_mut() {
            Some(run)
                if run.command == command
                    && run.statements.len() < self.max_statements
                    && run.bytes + bytes <= MAX_COMMAND_BYTES =>
            {
                run.statements.push(statement);
                run.origins.push(origin);
                run.bytes += bytes;
            }
            _ => runs.push(Run { collection, command, statements: vec![statement], origins: vec![origin], bytes }),
        }
    }

    fn into_runs(self) -> Vec<Run<'b>> {
        self.collections.into_iter().flat_map(|(_, runs)| runs).collect()
    }
}

/// The batch as write commands, in the order they run: the operations and parked events
/// grouped by collection (see the module's comment), then the checkpoints. `skip` holds, per
/// event, what an earlier attempt applied for sure.
fn plan<'b>(
    batch: &'b Batch<MongoOp>,
    names: &'b Names,
    connector: &'b str,
    skip: &HashMap<(u32, Position), Done>,
    transactional: bool,
) -> Result<Vec<Run<'b>>, (String, Option<usize>)> {
    let mut writes = Plan::new(names);
    for (item, batch_item) in batch.items.iter().enumerate() {
        match batch_item {
            BatchItem::Apply { event, ops } => {
                let done = match skip.get(&(event.partition, event.event.position)) {
                    Some(Done::Statements(statements)) => Some(statements),
                    _ => None,
                };
                let applied = |n: usize, document: usize| done.is_some_and(|d| d.contains(&(n, document)));
                let mut push = |collection, command, statement, n: usize, document: usize| {
                    if !applied(n, document) {
                        let origin = Origin::Op { item, number: n + 1, document, event, op: &ops[n] };
                        writes.push(collection, command, statement, origin);
                    }
                };
                for (n, op) in ops.iter().enumerate() {
                    let collection = op.collection.as_deref().unwrap_or(&names.collection);
                    match &op.write {
                        Write::Insert { documents } => {
                            for (document, d) in documents.iter().enumerate() {
                                push(collection, Command::Insert, d.clone(), n, document);
                            }
                        }
                        Write::Update { filter, update, multi } => push(
                            collection,
                            Command::Update,
                            doc! { "q": filter.clone(), "u": update.to_bson(), "upsert": true, "multi": *multi },
                            n,
                            0,
                        ),
                        Write::Replace { filter, replacement } => push(
                            collection,
                            Command::Update,
                            doc! { "q": filter.clone(), "u": replacement.clone(), "upsert": true, "multi": false },
                            n,
                            0,
                        ),
                        Write::Delete { filter, multi } => push(
                            collection,
                            Command::Delete,
                            doc! { "q": filter.clone(), "limit": if *multi { 0 } else { 1 } },
                            n,
                            0,
                        ),
                    }
                }
            }
            BatchItem::Park { event, error } => {
                // Parked by an earlier attempt (an event whose first operations were applied
                // before it failed has its statements here, not the mark).
                if skip.get(&(event.partition, event.event.position)) == Some(&Done::Parked) {
                    continue;
                }
                let e = &event.event;
                let position = int64(e.position).map_err(|m| (m, Some(item)))?;
                let id = format!("{connector}/{}/{}", event.partition, e.position);
                let parked = doc! {
                    "connector": connector,
                    "partition": event.partition as i64,
                    "position": position,
                    "eventId": &e.event_id,
                    "stream": &e.stream,
                    "eventType": &e.event_type,
                    "payload": String::from_utf8_lossy(&e.data).into_owned(),
                    "error": error,
                    "parkedAt": mongodb::bson::DateTime::now(),
                };
                writes.push(
                    &names.parked,
                    Command::Update,
                    doc! { "q": { "_id": id }, "u": { "$set": parked }, "upsert": true, "multi": false },
                    Origin::Park { item, event },
                );
            }
            BatchItem::Advance { .. } => {}
        }
    }
    // The checkpoints come after everything else, even in a collection the operations use.
    let mut runs = writes.into_runs();
    let mut checkpoints = Plan::new(names);
    for checkpoint in &batch.checkpoints {
        let id = super::checkpoint_id(connector, batch.partition_count, checkpoint.partition);
        let position = int64(checkpoint.position).map_err(|m| (m, None))?;
        let row = doc! {
            "kind": "checkpoint",
            "connector": connector,
            "partitionCount": batch.partition_count as i64,
            "partition": checkpoint.partition as i64,
            "updatedAt": mongodb::bson::DateTime::now(),
        };
        // In a transaction, a row the batch was planned from moves only from the position it
        // read (a compare-and-set: the server's write conflict detection covers a concurrent
        // transaction, the filter a committed one); elsewhere, and for unchecked rows, a
        // stored position never moves backwards (`$max`).
        let stored = if transactional { checkpoint.stored } else { Stored::Unchecked };
        let (command, statement) = match stored {
            Stored::At(at) => {
                let mut set = row;
                set.insert("position", position);
                let at = int64(at).map_err(|m| (m, None))?;
                (Command::Update, doc! { "q": { "_id": id, "position": at }, "u": { "$set": set }, "upsert": false, "multi": false })
            }
            Stored::Absent => {
                let mut document = doc! { "_id": id };
                document.extend(row);
                document.insert("position", position);
                (Command::Insert, document)
            }
            Stored::Unchecked => (
                Command::Update,
                doc! { "q": { "_id": id }, "u": { "$set": row, "$max": { "position": position } }, "upsert": true, "multi": false },
            ),
        };
        let origin = if stored.is_checked() { Origin::PlannedCheckpoint(*checkpoint) } else { Origin::Checkpoint };
        checkpoints.push(&names.checkpoints, command, statement, origin);
    }
    runs.extend(checkpoints.into_runs());
    Ok(runs)
}

fn statement_size(d: &Document) -> usize {
    let mut bytes = Vec::new();
    d.to_writer(&mut bytes).map(|_| bytes.len()).unwrap_or(MAX_COMMAND_BYTES)
}

fn int64(position: Position) -> Result<i64, String> {
    i64::try_from(position).map_err(|_| format!("position {position} does not fit a BSON Int64"))
}
