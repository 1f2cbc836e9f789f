//! Applies a batch to PostgreSQL: one transaction with every operation, parked event and
//! checkpoint row of the batch, sent as one pipeline.
//!
//! Round trips, not statements, are what a remote database costs, so a batch takes as few as
//! possible:
//! - statements are prepared once per connection and cached; the new SQL texts of a batch are
//!   prepared together, up front, in one round trip;
//! - `BEGIN`, every operation, the parked events, one statement for all the checkpoint rows
//!   (`UNNEST` of arrays) and `COMMIT` are then written to the connection before the first
//!   answer is awaited. The server runs them in order; a failing statement aborts the
//!   transaction, every later one fails with "transaction is aborted", and the pipelined
//!   `COMMIT` becomes a rollback. The first error in order is the one reported.
//!
//! Two things must not happen in the middle of such a pipeline: a parameter that fails to encode
//! on the client (the statement would silently be missing from a transaction that commits), so
//! every parameter is converted before anything is sent (see `values.rs`); and a statement
//! that cannot be prepared before the transaction (typically, its table is created by an
//! earlier raw operation of the same batch), so such a statement is prepared again at its place,
//! inside the transaction, after what precedes it has run.
//!
//! A lost connection is replaced at the next `apply`. If it was lost after `COMMIT` was sent,
//! the outcome is unknown: the next attempt at the same batch first reads the checkpoint rows,
//! and if they already hold the batch's positions, the batch committed and is not applied
//! twice.

use std::{
    borrow::Cow,
    collections::{HashMap, HashSet},
    future::poll_fn,
    sync::Arc,
    task::Poll,
};

use futures::{FutureExt, TryFutureExt, future::BoxFuture};
use postgres_types::ToSql;
use tokio_postgres::{Client, Statement, error::SqlState};

use super::{
    schema::GatewaySql,
    values::{Bound, bind_all},
};
use crate::{
    event::Position,
    lease::{Fence, postgres::FENCED},
    postgres::{PgEndpoint, describe, is_connection_lost, is_transient},
    sinks::{
        ApplyError, Batch, BatchItem, EventRef, SinkError, SinkWriter,
        sql::{SqlOp, SqlValue},
    },
};

/// Prepared statements kept per connection; the cache starts over when it is full (a sidecar
/// that builds SQL texts dynamically must not grow it without bound).
const MAX_CACHED_STATEMENTS: usize = 1024;

/// Applies batches on its own connection.
pub struct PostgresWriter {
    endpoint: Arc<PgEndpoint>,
    connector: Arc<str>,
    sql: Arc<GatewaySql>,
    /// `None` after the connection was lost; reopened by the next `apply`.
    conn: Option<WriterConnection>,
    /// A batch whose `COMMIT` was sent but whose outcome is unknown (the connection was lost).
    in_doubt: Option<InDoubt>,
    /// The lease or partition claims every transaction is fenced with, when the connector
    /// runs under them.
    fence: Option<Arc<Fence>>,
    /// The projection version every transaction is fenced with, once the connector has pinned
    /// one (blue/green rebuilds: a swap in the target refuses the old version's batches).
    version: Arc<std::sync::OnceLock<String>>,
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

impl PostgresWriter {
    pub(super) async fn open(
        endpoint: Arc<PgEndpoint>,
        connector: Arc<str>,
        sql: Arc<GatewaySql>,
        fence: Option<Arc<Fence>>,
        version: Arc<std::sync::OnceLock<String>>,
    ) -> Result<Self, SinkError> {
        let conn = WriterConnection::open(&endpoint, &sql, fence.as_deref()).await.map_err(|e| super::cannot_connect(&endpoint, &e))?;
        Ok(Self { endpoint, connector, sql, conn: Some(conn), in_doubt: None, fence, version })
    }

    async fn apply_batch(&mut self, batch: &Batch<SqlOp>) -> Result<(), ApplyError> {
        let conn = match &mut self.conn {
            Some(conn) if !conn.client.is_closed() => conn,
            _ => {
                self.conn = None;
                let conn = WriterConnection::open(&self.endpoint, &self.sql, self.fence.as_deref()).await.map_err(|e| ApplyError {
                    message: format!("cannot connect: {}", describe(&e)),
                    transient: is_transient(&e),
                    failed_at: None,
                    checkpoint_moved: false,
                })?;
                self.conn.insert(conn)
            }
        };
        if let Some(doubt) = self.in_doubt.take()
            && doubt == InDoubt::of(batch)
        {
            match conn.already_committed(&self.sql, &self.connector, &doubt).await {
                Ok(true) => return Ok(()),
                Ok(false) => {}
                Err(e) => {
                    self.in_doubt = Some(doubt);
                    if is_connection_lost(&e) {
                        self.conn = None;
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
        let Err(failure) = conn.apply(&self.connector, self.fence.as_deref(), self.version.get().map(String::as_str), batch).await else {
            return Ok(());
        };
        if failure.connection_lost || conn.client.is_closed() {
            self.conn = None;
            if failure.commit_sent {
                self.in_doubt = Some(InDoubt::of(batch));
            }
        } else if conn.client.batch_execute("ROLLBACK").await.is_err() {
            self.conn = None;
        }
        Err(failure.error)
    }
}

impl SinkWriter for PostgresWriter {
    type Op = SqlOp;

    async fn apply(&mut self, batch: Arc<Batch<SqlOp>>) -> Result<(), ApplyError> {
        self.apply_batch(&batch).await.map_err(|mut e| {
            e.message = format!("PostgreSQL target {}: {}", self.endpoint.display(), e.message);
            e
        })
    }
}

/// A connection and what is prepared on it.
struct WriterConnection {
    client: Client,
    statements: HashMap<String, Statement>,
    write_checkpoints: Statement,
    insert_parked: Statement,
    version_fence: Statement,
    /// Prepared only under a lease or claims (their table exists then: they were taken in it).
    fence: Option<Statement>,
    /// `SET LOCAL search_path` to the read model's schema, when it has one.
    search_path: Option<String>,
}

/// Why a batch failed, and what that means for the connection.
struct Failure {
    error: ApplyError,
    connection_lost: bool,
    /// `COMMIT` was written to the connection: if the connection was lost, the batch may have
    /// committed.
    commit_sent: bool,
}

impl WriterConnection {
    async fn open(endpoint: &PgEndpoint, sql: &GatewaySql, fence: Option<&Fence>) -> Result<Self, tokio_postgres::Error> {
        let client = endpoint.connect().await?;
        // The session's search_path too, so that statements prepared outside a transaction
        // resolve their names where the transaction will run them.
        if let Some(set) = &sql.set_search_path {
            client.batch_execute(set).await?;
        }
        let (write_checkpoints, insert_parked, version_fence, fence) = futures::try_join!(
            client.prepare(&sql.write_checkpoints),
            client.prepare(&sql.insert_parked),
            client.prepare(&sql.version_fence),
            async {
                match fence {
                    Some(Fence::Lease(_)) => client.prepare(&sql.fence).await.map(Some),
                    Some(Fence::Claims(_)) => client.prepare(&sql.claims_fence).await.map(Some),
                    None => Ok(None),
                }
            }
        )?;
        let search_path = sql.set_search_path.as_ref().map(|set| set.replacen("SET ", "SET LOCAL ", 1));
        Ok(Self { client, statements: HashMap::new(), write_checkpoints, insert_parked, version_fence, fence, search_path })
    }

    /// True when the checkpoint rows already hold every position of the batch in doubt.
    async fn already_committed(
        &self,
        sql: &GatewaySql,
        connector: &str,
        doubt: &InDoubt,
    ) -> Result<bool, tokio_postgres::Error> {
        let stored = super::schema::load_checkpoints(&self.client, sql, connector).await?;
        Ok(doubt.checkpoints.iter().all(|(partition, position)| {
            stored.iter().any(|row| {
                row.partition_count == doubt.partition_count && row.partition == *partition && row.position == *position
            })
        }))
    }

    async fn apply(&mut self, connector: &str, fence: Option<&Fence>, version: Option<&str>, batch: &Batch<SqlOp>) -> Result<(), Failure> {
        self.prepare_new_statements(batch).await?;
        let mut steps = self.plan(connector, fence, version, batch)?;
        let mut start = 0;
        loop {
            let end = steps[start..].iter().position(Step::is_barrier).map_or(steps.len(), |i| start + i);
            let commit_sent = end == steps.len();
            let results = self.send(&steps[start..end]).await;
            if let Some((i, e)) = results.into_iter().enumerate().find_map(|(i, r)| r.err().map(|e| (i, e))) {
                return Err(steps[start + i].failure(&e, commit_sent));
            }
            if commit_sent {
                return Ok(());
            }
            let (sql, params, origin) = match &steps[end] {
                Step::PrepareHere { sql, params, origin } => (*sql, *params, *origin),
                Step::Reject { message, origin } => return Err(origin.rejected(message)),
                _ => unreachable!("only PrepareHere and Reject are barriers"),
            };
            let statement = match self.statements.get(sql) {
                Some(statement) => statement.clone(),
                None => {
                    let statement = self.client.prepare(sql).await.map_err(|e| origin.failure(&e, false))?;
                    self.cache(sql, statement.clone());
                    statement
                }
            };
            steps[end] = bound_statement(statement, params, origin);
            start = end;
        }
    }

    /// Prepares, in one round trip, every SQL text of the batch not prepared on this
    /// connection yet. A text that fails to prepare now is prepared again at its place in the
    /// transaction (see the module doc), where its error, if any, is reported.
    async fn prepare_new_statements(&mut self, batch: &Batch<SqlOp>) -> Result<(), Failure> {
        let mut seen = HashSet::new();
        let new: Vec<&str> = batch
            .items
            .iter()
            .flat_map(|item| match item {
                BatchItem::Apply { ops, .. } => ops.as_slice(),
                _ => &[],
            })
            .filter_map(|op| match op {
                SqlOp::Statement { sql, .. } if !self.statements.contains_key(sql) && seen.insert(sql.as_str()) => {
                    Some(sql.as_str())
                }
                _ => None,
            })
            .collect();
        if new.is_empty() {
            return Ok(());
        }
        let prepared = pipeline(new.iter().map(|sql| self.client.prepare(sql).boxed()).collect()).await;
        for (sql, result) in new.into_iter().zip(prepared) {
            match result {
                Ok(statement) => self.cache(sql, statement),
                Err(e) if is_connection_lost(&e) => {
                    return Err(Failure {
                        error: ApplyError {
                            message: format!("preparing statements failed: {}", describe(&e)),
                            transient: true,
                            failed_at: None,
                            checkpoint_moved: false,
                        },
                        connection_lost: true,
                        commit_sent: false,
                    });
                }
                Err(_) => {}
            }
        }
        Ok(())
    }

    fn cache(&mut self, sql: &str, statement: Statement) {
        if self.statements.len() >= MAX_CACHED_STATEMENTS {
            self.statements.clear();
        }
        self.statements.insert(sql.to_string(), statement);
    }

    /// The transaction as a list of steps, parameters already converted.
    fn plan<'b>(
        &self,
        connector: &'b str,
        fence: Option<&'b Fence>,
        version: Option<&'b str>,
        batch: &'b Batch<SqlOp>,
    ) -> Result<Vec<Step<'b>>, Failure> {
        let mut steps = Vec::with_capacity(batch.items.len() + 6);
        steps.push(Step::Begin);
        if let Some(set) = &self.search_path {
            steps.push(Step::SearchPath(set.clone()));
        }
        match fence {
            Some(Fence::Lease(tenure)) => steps.push(Step::Fence { connector, holder: &tenure.holder, epoch: tenure.epoch }),
            Some(Fence::Claims(claims)) => {
                let (partitions, epochs) = claims.fence_pairs(batch).into_iter().map(|(p, e)| (p as i32, e)).unzip();
                steps.push(Step::ClaimsFence { connector, holder: &claims.holder, partitions, epochs });
            }
            None => {}
        }
        // Before anything is written: the version's row is share-locked, so a swap (which
        // updates it first) waits for this transaction, and a batch after the swap finds
        // another version there and fails whole (`blue_green.rs`).
        if let Some(version) = version {
            steps.push(Step::Version { connector, version });
        }
        // The checkpoints right after `BEGIN`: their compare-and-set takes the rows' locks
        // before any operation runs, so a batch planned from a stale read fails at once.
        if !batch.checkpoints.is_empty() {
            steps.push(checkpoints_step(connector, batch)?);
        }
        for (item, batch_item) in batch.items.iter().enumerate() {
            match batch_item {
                BatchItem::Apply { event, ops } => {
                    for (n, op) in ops.iter().enumerate() {
                        let origin = Origin { item, number: n + 1, event, op };
                        steps.push(match op {
                            SqlOp::Raw(sql) => Step::Raw { sql, origin },
                            SqlOp::Statement { sql, params } => match self.statements.get(sql) {
                                Some(statement) => bound_statement(statement.clone(), params, origin),
                                None => Step::PrepareHere { sql, params, origin },
                            },
                        });
                    }
                }
                BatchItem::Park { event, error } => steps.push(Step::Park {
                    connector,
                    event,
                    item,
                    partition: event.partition as i32,
                    position: bigint(event.event.position).map_err(|e| unsendable(e, Some(item)))?,
                    payload: String::from_utf8_lossy(&event.event.data),
                    error,
                }),
                BatchItem::Advance { .. } => {}
            }
        }
        steps.push(Step::Commit);
        Ok(steps)
    }

    /// Sends the steps as one pipeline and returns their results, in order.
    async fn send(&self, steps: &[Step<'_>]) -> Vec<Result<(), tokio_postgres::Error>> {
        let params: Vec<Vec<&(dyn ToSql + Sync)>> = steps.iter().map(Step::params).collect();
        let requests = steps
            .iter()
            .zip(&params)
            .map(|(step, params)| -> BoxFuture<'_, Result<(), tokio_postgres::Error>> {
                let client = &self.client;
                match step {
                    Step::Begin => client.batch_execute("BEGIN").boxed(),
                    Step::SearchPath(set) => client.batch_execute(set).boxed(),
                    Step::Version { .. } => client.execute(&self.version_fence, params).map_ok(drop).boxed(),
                    Step::Commit => client.batch_execute("COMMIT").boxed(),
                    Step::Fence { .. } | Step::ClaimsFence { .. } => {
                        let fence = self.fence.as_ref().expect("prepared on connections of a leased connector");
                        client.execute(fence, params).map_ok(drop).boxed()
                    }
                    Step::Raw { sql, .. } => client.batch_execute(sql).boxed(),
                    Step::Execute { statement, .. } => client.execute(statement, params).map_ok(drop).boxed(),
                    Step::Park { .. } => client.execute(&self.insert_parked, params).map_ok(drop).boxed(),
                    Step::Checkpoints { .. } => client.execute(&self.write_checkpoints, params).map_ok(drop).boxed(),
                    Step::PrepareHere { .. } | Step::Reject { .. } => {
                        unreachable!("barriers are never sent")
                    }
                }
            })
            .collect();
        pipeline(requests).await
    }
}

/// Sends every request before waiting for the first answer. tokio-postgres writes a request to
/// the connection when its future is first polled, and the server answers in order: polling
/// every future once, in order, puts them all on the wire in that order; waiting for them one
/// by one afterwards then costs a single round trip overall.
async fn pipeline<T>(mut requests: Vec<BoxFuture<'_, T>>) -> Vec<T> {
    let mut early: Vec<Option<T>> = requests.iter().map(|_| None).collect();
    poll_fn(|cx| {
        for (request, answer) in requests.iter_mut().zip(early.iter_mut()) {
            if let Poll::Ready(value) = request.as_mut().poll(cx) {
                *answer = Some(value);
            }
        }
        Poll::Ready(())
    })
    .await;
    let mut answers = Vec::with_capacity(requests.len());
    for (request, answer) in requests.into_iter().zip(early) {
        answers.push(match answer {
            Some(value) => value,
            None => request.await,
        });
    }
    answers
}

/// Where an operation comes from, for error messages and `failed_at`.
#[derive(Clone, Copy)]
struct Origin<'b> {
    /// Index in `Batch::items`.
    item: usize,
    /// 1-based number of the operation within its event.
    number: usize,
    event: &'b EventRef,
    op: &'b SqlOp,
}

impl Origin<'_> {
    fn failure(&self, e: &tokio_postgres::Error, commit_sent: bool) -> Failure {
        if is_connection_lost(e) {
            // Not the operation's fault: whichever statement was on the wire sees it.
            return connection_lost(e, commit_sent);
        }
        Failure {
            error: ApplyError {
                message: format!("operation {} of {} failed: {}; {}", self.number, self.event, describe(e), self.op),
                transient: is_transient(e),
                failed_at: Some(self.item),
                checkpoint_moved: false,
            },
            connection_lost: is_connection_lost(e),
            commit_sent,
        }
    }

    fn rejected(&self, reason: &str) -> Failure {
        Failure {
            error: ApplyError {
                message: format!("operation {} of {} cannot be applied: {reason}; {}", self.number, self.event, self.op),
                transient: false,
                failed_at: Some(self.item),
                checkpoint_moved: false,
            },
            connection_lost: false,
            commit_sent: false,
        }
    }
}

/// One request of the transaction.
enum Step<'b> {
    Begin,
    Commit,
    Raw { sql: &'b str, origin: Origin<'b> },
    Execute { statement: Statement, params: Vec<Bound<'b>>, origin: Origin<'b> },
    /// Could not be prepared before the transaction: prepared here, after the steps before it
    /// have run. A barrier: the pipeline is flushed before it.
    PrepareHere { sql: &'b str, params: &'b [SqlValue], origin: Origin<'b> },
    /// Cannot be sent (its parameters do not fit): the batch fails here once the steps before
    /// it have shown that they do not fail first. A barrier.
    Reject { message: String, origin: Origin<'b> },
    Park {
        connector: &'b str,
        event: &'b EventRef,
        item: usize,
        partition: i32,
        position: i64,
        payload: Cow<'b, str>,
        error: &'b str,
    },
    Checkpoints {
        connector: &'b str,
        partition_count: i32,
        partitions: Vec<i32>,
        positions: Vec<i64>,
        checked: Vec<bool>,
        expected: Vec<Option<i64>>,
    },
    /// The lease check that precedes everything else in the transaction.
    Fence { connector: &'b str, holder: &'b str, epoch: i64 },
    /// The partition claims check that precedes everything else in the transaction.
    ClaimsFence { connector: &'b str, holder: &'b str, partitions: Vec<i32>, epochs: Vec<i64> },
    /// `SET LOCAL search_path` to the read model's schema.
    SearchPath(String),
    /// The projection version check (blue/green): the version's row, share-locked.
    Version { connector: &'b str, version: &'b str },
}

impl Step<'_> {
    fn is_barrier(&self) -> bool {
        matches!(self, Step::PrepareHere { .. } | Step::Reject { .. })
    }

    fn params(&self) -> Vec<&(dyn ToSql + Sync)> {
        match self {
            Step::Execute { params, .. } => params.iter().map(|p| p as &(dyn ToSql + Sync)).collect(),
            Step::Park { connector, event, partition, position, payload, error, .. } => vec![
                connector,
                partition,
                position,
                &event.event.event_id,
                &event.event.stream,
                &event.event.event_type,
                payload,
                error,
            ],
            Step::Checkpoints { connector, partition_count, partitions, positions, checked, expected } => {
                vec![connector, partition_count, partitions, positions, checked, expected]
            }
            Step::Fence { connector, holder, epoch } => vec![connector, holder, epoch],
            Step::ClaimsFence { connector, holder, partitions, epochs } => vec![connector, holder, partitions, epochs],
            Step::Version { connector, version } => vec![connector, version],
            _ => Vec::new(),
        }
    }

    fn failure(&self, e: &tokio_postgres::Error, commit_sent: bool) -> Failure {
        if is_connection_lost(e) && !matches!(self, Step::Reject { .. }) {
            return connection_lost(e, commit_sent);
        }
        let whole = |what: &str| Failure {
            error: ApplyError {
                message: format!("{what} failed: {}", describe(e)),
                transient: is_transient(e),
                failed_at: None,
                checkpoint_moved: false,
            },
            connection_lost: is_connection_lost(e),
            commit_sent,
        };
        match self {
            Step::Raw { origin, .. } | Step::Execute { origin, .. } | Step::PrepareHere { origin, .. } => {
                origin.failure(e, commit_sent)
            }
            Step::Reject { origin, message } => origin.rejected(message),
            Step::Park { event, item, .. } => Failure {
                error: ApplyError {
                    message: format!("parking {event} failed: {}", describe(e)),
                    transient: is_transient(e),
                    failed_at: Some(*item),
                    checkpoint_moved: false,
                },
                connection_lost: is_connection_lost(e),
                commit_sent,
            },
            Step::Begin => whole("BEGIN"),
            Step::SearchPath(set) => whole(set),
            Step::Version { version, .. } if e.code() == Some(&SqlState::DIVISION_BY_ZERO) => Failure {
                // Said as a moved checkpoint: the connector re-plans, and there finds the read
                // model swapped (`Sink::swapped`).
                error: ApplyError::checkpoint_moved(format!(
                    "the read model is no longer projection version {version}: a blue/green rebuild swapped another version in"
                )),
                connection_lost: false,
                commit_sent,
            },
            Step::Version { .. } => whole("checking the projection version"),
            Step::Fence { connector, holder, epoch } if e.code() == Some(FENCED) => Failure {
                error: ApplyError {
                    message: format!(
                        "this gateway ({holder}) no longer holds the lease of connector `{connector}` (epoch {epoch}): another gateway took it over, \
                         and nothing of this batch was committed"
                    ),
                    transient: false,
                    failed_at: None,
                    checkpoint_moved: false,
                },
                connection_lost: false,
                commit_sent,
            },
            Step::Fence { .. } => whole("checking the lease"),
            Step::ClaimsFence { connector, holder, partitions, epochs } if e.code() == Some(FENCED) => Failure {
                error: ApplyError {
                    message: crate::lease::fenced_off(holder, connector, partitions, epochs),
                    transient: false,
                    failed_at: None,
                    checkpoint_moved: false,
                },
                connection_lost: false,
                commit_sent,
            },
            Step::ClaimsFence { .. } => whole("checking the partition claims"),
            Step::Checkpoints { partitions, checked, expected, .. } if e.code() == Some(&SqlState::DIVISION_BY_ZERO) => {
                let planned: Vec<String> = partitions
                    .iter()
                    .zip(checked)
                    .zip(expected)
                    .filter(|((_, checked), _)| **checked)
                    .map(|((p, _), at)| match at {
                        Some(at) => format!("{p} at {at}"),
                        None => format!("{p} without a row"),
                    })
                    .collect();
                Failure {
                    error: ApplyError::checkpoint_moved(format!(
                        "the batch was planned from partition(s) {}, and at least one of them is no longer there",
                        planned.join(", ")
                    )),
                    connection_lost: false,
                    commit_sent,
                }
            }
            Step::Checkpoints { .. } => whole("writing the checkpoints"),
            Step::Commit => whole("COMMIT"),
        }
    }
}

/// The step writing the batch's checkpoint rows (see `GatewaySql::write_checkpoints`).
fn checkpoints_step<'b>(connector: &'b str, batch: &Batch<SqlOp>) -> Result<Step<'b>, Failure> {
    let rows = &batch.checkpoints;
    let position = |p: Position| bigint(p).map_err(|e| unsendable(e, None));
    Ok(Step::Checkpoints {
        connector,
        partition_count: batch.partition_count as i32,
        partitions: rows.iter().map(|c| c.partition as i32).collect(),
        positions: rows.iter().map(|c| position(c.position)).collect::<Result<_, _>>()?,
        checked: rows.iter().map(|c| c.stored.is_checked()).collect(),
        expected: rows.iter().map(|c| c.stored.position().map(position).transpose()).collect::<Result<_, _>>()?,
    })
}

/// The connection went away in the middle of a batch: said as what it is, whichever
/// statement was on the wire, and retried (on a new connection; first checked against the
/// checkpoints when `COMMIT` had been sent).
fn connection_lost(e: &tokio_postgres::Error, commit_sent: bool) -> Failure {
    let outcome = if commit_sent {
        "after COMMIT was sent, so whether the batch committed is checked before it is applied again"
    } else {
        "before COMMIT, so nothing of the batch was committed"
    };
    Failure {
        error: ApplyError {
            message: format!("the connection to the target was lost while applying a batch ({outcome}): {}", describe(e)),
            transient: true,
            failed_at: None,
            checkpoint_moved: false,
        },
        connection_lost: true,
        commit_sent,
    }
}

/// The step for a prepared statement: its parameters converted to the server's types, or the
/// reason they cannot be.
fn bound_statement<'b>(statement: Statement, params: &'b [SqlValue], origin: Origin<'b>) -> Step<'b> {
    match bind_all(params, statement.params()) {
        Ok(params) => Step::Execute { statement, params, origin },
        Err(message) => Step::Reject { message, origin },
    }
}

fn bigint(position: Position) -> Result<i64, String> {
    i64::try_from(position).map_err(|_| format!("position {position} does not fit a PostgreSQL bigint"))
}

fn unsendable(message: String, failed_at: Option<usize>) -> Failure {
    Failure {
        error: ApplyError { message, transient: false, failed_at, checkpoint_moved: false },
        connection_lost: false,
        commit_sent: false,
    }
}
