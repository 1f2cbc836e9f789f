//! Applies a batch to SQL Server: one transaction with every operation, parked event and
//! checkpoint row of the batch, sent as one `sp_executesql` call (see `batch.rs`).
//!
//! Every parameter is converted and every placeholder checked before anything is sent, so an
//! operation that cannot be sent fails the batch at its item without a round trip. After a
//! server error the writer sends `IF @@TRANCOUNT > 0 ROLLBACK TRAN` (a compile error ends the
//! batch but leaves the transaction open). A lost connection is replaced at the next `apply`;
//! if it was lost once the text holding `COMMIT TRAN` was sent, the outcome is unknown, and the
//! next attempt at the same batch first reads the checkpoint rows: if they hold the batch's
//! positions, it committed and is not applied twice.

use std::sync::Arc;

use tiberius::{ColumnData, Query, error::Error};

use super::{
    batch::{BEGIN_BATCH, COMMIT_BATCH, Chunk, Origin, Plan, ROLLBACK_BATCH, Step},
    connect::{Endpoint, MssqlClient, describe, is_connection_lost, is_transient},
    params::column,
    schema::{CHECKPOINT_MOVED, CHECKPOINT_ROWS_PER_MERGE, GatewaySql, load_checkpoints, run_batch},
};
use crate::{
    event::Position,
    sinks::{ApplyError, Batch, BatchItem, CheckpointWrite, SinkError, SinkWriter, sql::SqlOp},
};

/// Applies batches on its own connection.
pub struct MssqlWriter {
    endpoint: Arc<Endpoint>,
    connector: Arc<str>,
    sql: Arc<GatewaySql>,
    /// `None` after the connection was lost; reopened by the next `apply`.
    client: Option<MssqlClient>,
    /// A batch whose `COMMIT TRAN` was sent but whose outcome is unknown.
    in_doubt: Option<InDoubt>,
}

#[derive(Debug, PartialEq)]
struct InDoubt {
    partition_count: u32,
    checkpoints: Vec<(u32, Position)>,
}

impl InDoubt {
    fn of(batch: &Batch<SqlOp>) -> Self {
        Self { partition_count: batch.partition_count, checkpoints: batch.positions() }
    }
}

impl MssqlWriter {
    pub(super) async fn open(endpoint: Arc<Endpoint>, connector: Arc<str>, sql: Arc<GatewaySql>) -> Result<Self, SinkError> {
        let client = endpoint.connect().await.map_err(|e| super::cannot_connect(&endpoint, &e))?;
        Ok(Self { endpoint, connector, sql, client: Some(client), in_doubt: None })
    }

    async fn apply_batch(&mut self, batch: &Batch<SqlOp>) -> Result<(), ApplyError> {
        // Everything is converted before a connection is even needed.
        let steps = plan(&self.sql, &self.connector, batch)?;
        let client = match &mut self.client {
            Some(client) => client,
            None => {
                let client = self.endpoint.connect().await.map_err(|e| ApplyError {
                    message: format!("cannot connect: {}", describe(&e)),
                    transient: is_transient(&e),
                    failed_at: None,
                    checkpoint_moved: false,
                })?;
                self.client.insert(client)
            }
        };
        if let Some(doubt) = self.in_doubt.take()
            && doubt == InDoubt::of(batch)
        {
            match load_checkpoints(client, &self.sql, &self.connector).await {
                Ok(stored) => {
                    let committed = doubt.checkpoints.iter().all(|(partition, position)| {
                        stored.iter().any(|row| {
                            row.partition_count == doubt.partition_count
                                && row.partition == *partition
                                && row.position == *position
                        })
                    });
                    if committed {
                        return Ok(());
                    }
                }
                Err(e) => {
                    self.in_doubt = Some(doubt);
                    if is_connection_lost(&e) {
                        self.client = None;
                    }
                    return Err(ApplyError {
                        message: format!("cannot check whether the previous attempt committed: {}", describe(&e)),
                        transient: is_transient(&e),
                        failed_at: None,
                        checkpoint_moved: false,
                    });
                }
            }
        }
        let plan = Plan::new(steps);
        tracing::debug!(items = batch.items.len(), round_trips = plan.round_trips(), "applying a batch to SQL Server");
        let Err(failure) = run(client, plan).await else {
            return Ok(());
        };
        if is_connection_lost(&failure.error) {
            self.client = None;
            if failure.commit_sent {
                self.in_doubt = Some(InDoubt::of(batch));
            }
        } else if run_batch(client, ROLLBACK_BATCH).await.is_err() {
            self.client = None;
        }
        Err(describe_failure(&failure, batch))
    }
}

impl SinkWriter for MssqlWriter {
    type Op = SqlOp;

    async fn apply(&mut self, batch: Arc<Batch<SqlOp>>) -> Result<(), ApplyError> {
        self.apply_batch(&batch).await.map_err(|mut e| {
            e.message = format!("SQL Server target {}: {}", self.endpoint.display(), e.message);
            e
        })
    }
}

/// What the checkpoint check is called in messages (and how its failure is recognised).
const CHECKING_CHECKPOINTS: &str = "checking the checkpoints";

/// The batch's statements, parameters converted, placeholders checked.
fn plan<'b>(sql: &'b GatewaySql, connector: &'b str, batch: &'b Batch<SqlOp>) -> Result<Vec<Step<'b>>, ApplyError> {
    let mut steps = Vec::with_capacity(batch.items.len() + 2);
    for (item, batch_item) in batch.items.iter().enumerate() {
        match batch_item {
            BatchItem::Apply { event, ops } => {
                for (n, op) in ops.iter().enumerate() {
                    let origin = Origin::Op { item, number: n + 1 };
                    steps.push(match op {
                        SqlOp::Raw(text) => Step::raw(text, origin),
                        SqlOp::Statement { sql, params } => params
                            .iter()
                            .enumerate()
                            .map(|(i, p)| column(p).map_err(|reason| format!("parameter ${} ({p}): {reason}", i + 1)))
                            .collect::<Result<Vec<_>, _>>()
                            .and_then(|params| Step::statement(sql, params, origin))
                            .map_err(|reason| ApplyError {
                                message: format!("operation {} of {event} cannot be applied: {reason}; {op}", n + 1),
                                transient: false,
                                failed_at: Some(item),
                                checkpoint_moved: false,
                            })?,
                    });
                }
            }
            BatchItem::Park { event, error } => {
                let e = &event.event;
                let params = vec![
                    ColumnData::String(Some(connector.into())),
                    ColumnData::I32(Some(event.partition as i32)),
                    ColumnData::I64(Some(bigint(e.position, Some(item))?)),
                    ColumnData::String(Some(e.event_id.as_str().into())),
                    ColumnData::String(Some(e.stream.as_str().into())),
                    ColumnData::String(Some(e.event_type.as_str().into())),
                    ColumnData::String(Some(String::from_utf8_lossy(&e.data))),
                    ColumnData::String(Some(error.as_str().into())),
                ];
                steps.push(Step::statement(sql.insert_parked.as_str(), params, Origin::Park { item }).expect("gateway SQL is valid"));
            }
            BatchItem::Advance { .. } => {}
        }
    }
    // The checkpoints last, each chunk checked first (see `GatewaySql::check_checkpoints`):
    // a batch planned from a stale read throws there, and `XACT_ABORT` rolls it back whole.
    for rows in batch.checkpoints.chunks(CHECKPOINT_ROWS_PER_MERGE) {
        let planned: Vec<&CheckpointWrite> = rows.iter().filter(|c| c.stored.is_checked()).collect();
        if !planned.is_empty() {
            let mut params = vec![
                ColumnData::String(Some(connector.into())),
                ColumnData::I32(Some(batch.partition_count as i32)),
            ];
            for c in &planned {
                params.push(ColumnData::I32(Some(c.partition as i32)));
                params.push(ColumnData::I64(c.stored.position().map(|at| bigint(at, None)).transpose()?));
            }
            let step = Step::statement(sql.check_checkpoints(planned.len()), params, Origin::Gateway(CHECKING_CHECKPOINTS));
            steps.push(step.expect("gateway SQL is valid"));
        }
        let mut params = vec![
            ColumnData::String(Some(connector.into())),
            ColumnData::I32(Some(batch.partition_count as i32)),
        ];
        for c in rows {
            params.push(ColumnData::I32(Some(c.partition as i32)));
            params.push(ColumnData::I64(Some(bigint(c.position, None)?)));
        }
        let step = Step::statement(sql.merge_checkpoints(rows.len()), params, Origin::Gateway("writing the checkpoints"));
        steps.push(step.expect("gateway SQL is valid"));
    }
    Ok(steps)
}

fn bigint(position: Position, failed_at: Option<usize>) -> Result<i64, ApplyError> {
    i64::try_from(position).map_err(|_| ApplyError {
        message: format!("position {position} does not fit SQL Server's bigint"),
        transient: false,
        failed_at,
        checkpoint_moved: false,
    })
}

/// Why a plan failed.
pub(super) struct Failure {
    pub error: Error,
    /// The statement on the line the server named, when it names one of ours.
    pub origin: Option<Origin>,
    /// The text holding `COMMIT TRAN` was sent.
    pub commit_sent: bool,
}

/// Sends a plan: one call for [`Plan::Single`], `BEGIN TRAN`, the calls and `COMMIT TRAN` for
/// [`Plan::Split`].
pub(super) async fn run(client: &mut MssqlClient, plan: Plan<'_>) -> Result<(), Failure> {
    let failure = |error: Error, origin, commit_sent| Failure { error, origin, commit_sent };
    match plan {
        Plan::Single(chunk) => call(client, chunk, true).await,
        Plan::Split(chunks) => {
            run_batch(client, BEGIN_BATCH).await.map_err(|e| failure(e, None, false))?;
            for chunk in chunks {
                call(client, chunk, false).await?;
            }
            run_batch(client, COMMIT_BATCH)
                .await
                .map_err(|e| failure(e, Some(Origin::Gateway("COMMIT")), true))
        }
    }
}

async fn call(client: &mut MssqlClient, chunk: Chunk<'_>, commits: bool) -> Result<(), Failure> {
    let Chunk { text, params, .. } = &chunk;
    let mut query = Query::new(text.as_str());
    for param in params.iter().cloned() {
        query.bind(param);
    }
    let result = query.execute(client).await;
    result.map(drop).map_err(|error| {
        let origin = match &error {
            Error::Server(token) if token.procedure().is_empty() => chunk.step_at_line(token.line()),
            _ => None,
        };
        Failure { error, origin, commit_sent: commits }
    })
}

/// The message and `failed_at` of a failure, naming the operation when the line told it.
fn describe_failure(failure: &Failure, batch: &Batch<SqlOp>) -> ApplyError {
    let transient = is_transient(&failure.error);
    let why = describe(&failure.error);
    let item_error = |item: usize, message: String| ApplyError { message, transient, failed_at: Some(item), checkpoint_moved: false };
    match failure.origin {
        Some(Origin::Op { item, number }) => match &batch.items[item] {
            BatchItem::Apply { event, ops } => {
                item_error(item, format!("operation {number} of {event} failed: {why}; {}", ops[number - 1]))
            }
            _ => item_error(item, format!("item {item} failed: {why}")),
        },
        Some(Origin::Park { item }) => match &batch.items[item] {
            BatchItem::Park { event, .. } => item_error(item, format!("parking {event} failed: {why}")),
            _ => item_error(item, format!("item {item} failed: {why}")),
        },
        Some(Origin::Gateway(CHECKING_CHECKPOINTS))
            if matches!(&failure.error, Error::Server(token) if token.code() == CHECKPOINT_MOVED) =>
        {
            let partitions: Vec<String> = batch
                .checkpoints
                .iter()
                .filter(|c| c.stored.is_checked())
                .map(|c| c.partition.to_string())
                .collect();
            ApplyError::checkpoint_moved(format!(
                "the batch was planned from the stored rows of partition(s) {}, and at least one of them changed",
                partitions.join(", ")
            ))
        }
        Some(Origin::Gateway(what)) => ApplyError { message: format!("{what} failed: {why}"), transient, failed_at: None, checkpoint_moved: false },
        None => {
            // A line outside our statements (a trigger's, say): only a batch of one event
            // can still be pinned to its item.
            let mut with_ops = batch.items.iter().enumerate().filter(|(_, i)| i.op_count() > 0);
            match (with_ops.next(), with_ops.next()) {
                (Some((item, BatchItem::Apply { event, .. })), None) if !transient => {
                    item_error(item, format!("{event} failed: {why}"))
                }
                _ => ApplyError { message: format!("the batch failed: {why}"), transient, failed_at: None, checkpoint_moved: false },
            }
        }
    }
}
