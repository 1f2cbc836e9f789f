//! Applies a batch to SQLite: one immediate transaction with every operation, parked event and
//! checkpoint row of the batch. Statements are prepared once and cached; their `$n`
//! placeholders are bound by number (SQLite reads `$1` as a parameter named "$1", so the
//! gateway maps each name to its position rather than trusting the order of appearance).

use std::{
    path::PathBuf,
    sync::Arc,
};

use parking_lot::Mutex;

use rusqlite::{Connection, ErrorCode, ToSql, types::ToSqlOutput, types::Value as Sqlite};

use super::checkpointer::Checkpointer;
use crate::lease::Claims;
use crate::sinks::{ApplyError, Batch, BatchItem, CheckpointWrite, SinkWriter, Stored, moved_detail, sql::{SqlOp, SqlValue}};

pub struct SqliteWriter {
    conn: Arc<Mutex<Connection>>,
    connector: Arc<str>,
    path: PathBuf,
    checkpointer: Option<Arc<Checkpointer>>,
    /// The file `path` named when the sink opened it: a batch after a blue/green swap pointed
    /// `path` elsewhere is refused, and the connector reopens its sink (`blue_green.rs`).
    opened: Option<(u64, u64)>,
    /// The partition claims every batch transaction is fenced with (`lease.scope: partitions`).
    claims: Option<Arc<Claims>>,
}

impl SqliteWriter {
    pub(super) fn new(
        conn: Arc<Mutex<Connection>>,
        connector: Arc<str>,
        path: PathBuf,
        checkpointer: Option<Arc<Checkpointer>>,
        opened: Option<(u64, u64)>,
        claims: Option<Arc<Claims>>,
    ) -> Self {
        Self { conn, connector, path, checkpointer, opened, claims }
    }
}

impl SinkWriter for SqliteWriter {
    type Op = SqlOp;

    async fn apply(&mut self, batch: Arc<Batch<SqlOp>>) -> Result<(), ApplyError> {
        let conn = self.conn.clone();
        let connector = self.connector.clone();
        let path = self.path.display().to_string();
        let (file, opened, claims) = (self.path.clone(), self.opened, self.claims.clone());
        tokio::task::spawn_blocking(move || {
            if opened.is_some() && super::blue_green::file_identity(&file) != opened {
                return Err(ApplyError::checkpoint_moved(
                    "the read model's path names another file now: a blue/green rebuild swapped another version in",
                ));
            }
            let mut conn = conn.lock();
            apply_batch(&mut conn, &connector, &batch, claims.as_deref())
        })
        .await
        .map_err(|e| ApplyError { message: e.to_string(), transient: false, failed_at: None, checkpoint_moved: false })?
        .map_err(|mut e| {
            e.message = format!("SQLite target {path}: {}", e.message);
            e
        })?;
        if let Some(checkpointer) = &self.checkpointer {
            checkpointer.committed();
        }
        Ok(())
    }
}

fn apply_batch(conn: &mut Connection, connector: &str, batch: &Batch<SqlOp>, claims: Option<&Claims>) -> Result<(), ApplyError> {
    let whole = |e: rusqlite::Error| ApplyError { transient: is_transient(&e), message: e.to_string(), failed_at: None, checkpoint_moved: false };
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate).map_err(whole)?;
    if let Some(claims) = claims {
        fence(&tx, connector, claims, batch)?;
    }
    let now = chrono::Utc::now().to_rfc3339();
    // The checkpoints first: the immediate transaction holds the database's write lock, so
    // what they compare against is what is stored, and a batch planned from a stale read
    // fails before any of its operations runs.
    write_checkpoints(&tx, connector, batch, &now)?;
    for (index, item) in batch.items.iter().enumerate() {
        match item {
            BatchItem::Apply { event, ops } => {
                for (n, op) in ops.iter().enumerate() {
                    execute(&tx, op).map_err(|e| ApplyError {
                        transient: e.transient,
                        message: format!("operation {} of {event} failed: {}; {op}", n + 1, e.message),
                        failed_at: Some(index),
                        checkpoint_moved: false,
                    })?;
                }
            }
            BatchItem::Advance { .. } => {}
            BatchItem::Park { event, error } => {
                tx.prepare_cached(
                    r#"INSERT INTO parked_events (connector, "partition", position, event_id, stream, event_type, payload, error, parked_at)
                       VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"#,
                )
                .and_then(|mut s| {
                    s.execute(rusqlite::params![
                        connector,
                        event.partition,
                        event.event.position as i64,
                        event.event.event_id,
                        event.event.stream,
                        event.event.event_type,
                        String::from_utf8_lossy(&event.event.data),
                        error,
                        now
                    ])
                })
                .map_err(|e| ApplyError {
                    transient: is_transient(&e),
                    message: format!("parking {event} failed: {e}"),
                    failed_at: Some(index),
                    checkpoint_moved: false,
                })?;
            }
        }
    }
    tx.commit().map_err(whole)
}

/// The claims fence, first in the batch's transaction (which holds the write lock, so no take
/// can come between it and the commit): every partition the batch writes for must still be
/// this gateway's under its epoch (one it does not hold gets epoch -1, which no claim has).
fn fence(tx: &rusqlite::Transaction<'_>, connector: &str, claims: &Claims, batch: &Batch<SqlOp>) -> Result<(), ApplyError> {
    let epochs = claims.fence_pairs(batch);
    if epochs.is_empty() {
        return Ok(());
    }
    let held: i64 = tx
        .prepare_cached(crate::lease::sqlite_claims::FENCE_SQL)
        .and_then(|mut s| s.query_row(rusqlite::params![connector, claims.holder, crate::lease::sqlite_claims::fence_pairs(&epochs)], |r| r.get(0)))
        .map_err(|e| ApplyError {
            transient: is_transient(&e),
            message: format!("checking the partition claims failed: {e}"),
            failed_at: None,
            checkpoint_moved: false,
        })?;
    if held == epochs.len() as i64 {
        return Ok(());
    }
    let (partitions, epochs): (Vec<u32>, Vec<i64>) = epochs.into_iter().unzip();
    Err(ApplyError {
        message: crate::lease::fenced_off(&claims.holder, connector, &partitions, &epochs),
        transient: false,
        failed_at: None,
        checkpoint_moved: false,
    })
}

/// Writes the batch's checkpoint rows, each only if the stored row is what the batch was
/// planned from (see `Stored`).
fn write_checkpoints(tx: &rusqlite::Transaction<'_>, connector: &str, batch: &Batch<SqlOp>, now: &str) -> Result<(), ApplyError> {
    let whole = |e: rusqlite::Error| ApplyError {
        transient: is_transient(&e),
        message: format!("writing the checkpoints failed: {e}"),
        failed_at: None,
        checkpoint_moved: false,
    };
    for checkpoint in &batch.checkpoints {
        let CheckpointWrite { partition, position, stored } = *checkpoint;
        let (count, position) = (batch.partition_count, position as i64);
        let written = match stored {
            Stored::At(at) => tx
                .prepare_cached(
                    r#"UPDATE checkpoints SET position = ?4, updated_at = ?5
                       WHERE connector = ?1 AND partition_count = ?2 AND "partition" = ?3 AND position = ?6"#,
                )
                .and_then(|mut s| s.execute(rusqlite::params![connector, count, partition, position, now, at as i64])),
            Stored::Absent => tx
                .prepare_cached(
                    r#"INSERT INTO checkpoints (connector, partition_count, "partition", position, updated_at)
                       VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (connector, partition_count, "partition") DO NOTHING"#,
                )
                .and_then(|mut s| s.execute(rusqlite::params![connector, count, partition, position, now])),
            Stored::Unchecked => tx
                .prepare_cached(
                    r#"INSERT INTO checkpoints (connector, partition_count, "partition", position, updated_at)
                       VALUES (?1, ?2, ?3, ?4, ?5)
                       ON CONFLICT (connector, partition_count, "partition")
                       DO UPDATE SET position = max(position, excluded.position), updated_at = excluded.updated_at"#,
                )
                .and_then(|mut s| s.execute(rusqlite::params![connector, count, partition, position, now])),
        }
        .map_err(whole)?;
        if written != 1 && stored.is_checked() {
            return Err(ApplyError::checkpoint_moved(moved_detail(partition, stored, &current(tx, connector, count, partition))));
        }
    }
    Ok(())
}

/// What is stored for one partition, for the message of a checkpoint that moved.
fn current(tx: &rusqlite::Transaction<'_>, connector: &str, count: u32, partition: u32) -> String {
    tx.query_row(
        r#"SELECT position FROM checkpoints WHERE connector = ?1 AND partition_count = ?2 AND "partition" = ?3"#,
        rusqlite::params![connector, count, partition],
        |row| row.get::<_, i64>(0),
    )
    .map_or_else(|_| "no row".to_string(), |p| format!("position {p}"))
}

pub(super) struct OpError {
    pub message: String,
    pub transient: bool,
}

pub(super) fn execute(conn: &Connection, op: &SqlOp) -> Result<(), OpError> {
    let fail = |e: rusqlite::Error| OpError { transient: is_transient(&e), message: e.to_string() };
    match op {
        SqlOp::Raw(sql) => conn.execute_batch(sql).map_err(fail),
        SqlOp::Statement { sql, params } => {
            let mut stmt = conn.prepare_cached(sql).map_err(fail)?;
            let mut used = vec![false; params.len()];
            for index in 1..=stmt.parameter_count() {
                let number = match stmt.parameter_name(index) {
                    None => index,
                    Some(name) => name
                        .strip_prefix(['$', '?'])
                        .and_then(|n| n.parse::<usize>().ok())
                        .filter(|n| *n > 0)
                        .ok_or_else(|| OpError {
                            transient: false,
                            message: format!("placeholder `{name}` is not positional; write $1, $2, ..."),
                        })?,
                };
                let value = params.get(number - 1).ok_or_else(|| OpError {
                    transient: false,
                    message: format!(
                        "the statement uses ${number} but the sidecar sent {} parameter(s)",
                        params.len()
                    ),
                })?;
                used[number - 1] = true;
                stmt.raw_bind_parameter(index, Bind(value)).map_err(fail)?;
            }
            if let Some(unused) = used.iter().position(|u| !u) {
                return Err(OpError { transient: false, message: surplus(params.len(), unused + 1) });
            }
            match stmt.raw_execute() {
                Ok(_) | Err(rusqlite::Error::ExecuteReturnedResults) => Ok(()),
                Err(e) => Err(fail(e)),
            }
        }
    }
}

/// A parameter the statement has no placeholder for: refused like a missing one, since it
/// means the statement and its parameters disagree (a dropped column, a miscounted list).
fn surplus(sent: usize, unused: usize) -> String {
    format!("the sidecar sent {sent} parameter(s) but the statement does not use ${unused}; every parameter needs its placeholder")
}

/// How a typed parameter is stored in SQLite.
struct Bind<'a>(&'a SqlValue);

impl ToSql for Bind<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        use rusqlite::types::ValueRef;
        Ok(match self.0 {
            SqlValue::Null => ToSqlOutput::Owned(Sqlite::Null),
            SqlValue::Bool(b) => ToSqlOutput::Owned(Sqlite::Integer(i64::from(*b))),
            SqlValue::Int(i) => ToSqlOutput::Owned(Sqlite::Integer(*i)),
            SqlValue::Double(d) => ToSqlOutput::Owned(Sqlite::Real(*d)),
            SqlValue::Text(s) | SqlValue::Decimal(s) | SqlValue::Uuid(s) | SqlValue::Json(s) => {
                ToSqlOutput::Borrowed(ValueRef::Text(s.as_bytes()))
            }
            SqlValue::Bytes(b) => ToSqlOutput::Borrowed(ValueRef::Blob(b)),
            SqlValue::Timestamp(t) => ToSqlOutput::Owned(Sqlite::Text(
                t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            )),
        })
    }
}

pub(super) fn is_transient(e: &rusqlite::Error) -> bool {
    matches!(e.sqlite_error_code(), Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(sql: &str, params: Vec<SqlValue>) -> Result<(), String> {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE t (a, b)").unwrap();
        execute(&conn, &SqlOp::Statement { sql: sql.into(), params }).map_err(|e| e.message)
    }

    #[test]
    fn every_parameter_needs_a_placeholder_and_every_placeholder_a_parameter() {
        let (one, two) = (SqlValue::Int(1), SqlValue::Int(2));
        run("INSERT INTO t VALUES ($1, $2)", vec![one.clone(), two.clone()]).unwrap();
        run("INSERT INTO t VALUES ($2, $1)", vec![one.clone(), two.clone()]).unwrap();
        run("INSERT INTO t VALUES (?, ?)", vec![one.clone(), two.clone()]).unwrap();
        run("INSERT INTO t VALUES ($1, $1)", vec![one.clone()]).unwrap();
        assert_eq!(run("INSERT INTO t VALUES ($1, $2)", vec![one.clone()]).unwrap_err(), "the statement uses $2 but the sidecar sent 1 parameter(s)");
        assert_eq!(
            run("INSERT INTO t VALUES ($1, 0)", vec![one.clone(), two.clone()]).unwrap_err(),
            "the sidecar sent 2 parameter(s) but the statement does not use $2; every parameter needs its placeholder"
        );
        assert_eq!(
            run("INSERT INTO t VALUES ($1, $3)", vec![one.clone(), two.clone(), one.clone()]).unwrap_err(),
            "the sidecar sent 3 parameter(s) but the statement does not use $2; every parameter needs its placeholder"
        );
        assert!(run("INSERT INTO t VALUES (0, 0)", vec![one]).unwrap_err().contains("does not use $1"));
    }
}
