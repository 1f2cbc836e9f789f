//! The SQLite target, the embedded default. SQLite has one writer at a time, so the sink has
//! one writer that applies batches spanning any partitions: each batch is one `BEGIN
//! IMMEDIATE ... COMMIT` holding the operations and the checkpoint rows of every partition it
//! touches, which makes the effect exactly once. WAL checkpoints run on a thread of their own
//! (`checkpointer.rs`), not inside the commits.

mod apply;
pub mod blue_green;
mod checkpointer;
mod parked;
pub(crate) mod schema;

use std::{
    path::PathBuf,
    sync::Arc,
};

use parking_lot::Mutex;

use prost_types::Any;
use rusqlite::Connection;
use tracing::warn;

use crate::{
    lease::{Claims, Fence},
    checkpoint::CheckpointRow,
    config::{EventuousCheckpoint, EventuousPlace, SqliteSinkConfig},
    event::Position,
    sinks::{DecodeError, Sink, SinkError, SinkErrorKind, eventuous,
        sql::{SqlOp, decode_sql_op}},
};

pub use apply::SqliteWriter;
use checkpointer::Checkpointer;

pub struct SqliteSink {
    connector: Arc<str>,
    path: PathBuf,
    allow_raw_sql: bool,
    conn: Arc<Mutex<Connection>>,
    /// `None` when its thread could not start: SQLite then checkpoints inside commits.
    checkpointer: Option<Arc<Checkpointer>>,
    /// The file `path` named when the sink opened it (device, inode): a blue/green swap
    /// points `path` at another file (`blue_green.rs`).
    opened: Option<(u64, u64)>,
    /// The partition claims every batch transaction is fenced with (`lease.scope: partitions`).
    claims: Option<Arc<Claims>>,
}

impl SqliteSink {
    /// Opens (creating if needed) the target database, its gateway tables, and runs the
    /// configured init SQL.
    pub async fn open(config: &SqliteSinkConfig, connector: &str) -> Result<Self, SinkError> {
        Self::open_fenced(config, connector, None).await
    }

    /// [`SqliteSink::open`] for a connector whose partitions are shared out among gateways:
    /// every batch transaction first checks that `claims` still holds each partition it writes
    /// for (`lease::sqlite_claims::FENCE_SQL`).
    pub async fn open_fenced(config: &SqliteSinkConfig, connector: &str, claims: Option<Claims>) -> Result<Self, SinkError> {
        let (path, allow_raw_sql) = (config.path.clone(), config.allow_raw_sql);
        let config = config.clone();
        let (conn, checkpointer) = tokio::task::spawn_blocking(move || {
            let conn = schema::open(&config)?;
            let checkpointer = match Checkpointer::start(&config.path) {
                Ok(c) => {
                    conn.execute_batch("PRAGMA wal_autocheckpoint = 0;").map_err(|e| {
                        SinkError::schema(format!("SQLite target {}: cannot configure: {e}", config.path.display()))
                    })?;
                    Some(Arc::new(c))
                }
                Err(e) => {
                    warn!("SQLite target {}: checkpoints stay inside commits: cannot start the checkpoint thread: {e}", config.path.display());
                    None
                }
            };
            Ok::<_, SinkError>((conn, checkpointer))
        })
        .await??;
        let opened = blue_green::file_identity(&path);
        Ok(Self { connector: connector.into(), path, allow_raw_sql, conn: Arc::new(Mutex::new(conn)), checkpointer, opened, claims: claims.map(Arc::new) })
    }

    /// Runs `f` on the connection, on a blocking thread; its failure is of `kind` (busy or
    /// locked: an outage).
    async fn with_conn<T: Send + 'static>(
        &self,
        kind: SinkErrorKind,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, SinkError> {
        let conn = self.conn.clone();
        let path = self.path.display().to_string();
        tokio::task::spawn_blocking(move || f(&conn.lock()))
            .await?
            .map_err(|e| SinkError::new(kind, format!("SQLite target {path}: {e}")).unreachable_if(apply::is_transient(&e)))
    }
}

/// Runs one operation on `conn` as a writer runs it in its batch transaction (the same `$n`
/// binding and checks), inside whatever transaction `conn` has open; the database's error
/// text on failure. For `dry-run`, which rolls its transaction back.
pub fn execute_op(conn: &Connection, op: &SqlOp) -> Result<(), String> {
    apply::execute(conn, op).map_err(|e| e.message)
}

impl super::OpenSink for SqliteSink {
    type Settings = crate::config::SqliteSinkConfig;

    async fn open(settings: &Self::Settings, connector: &crate::config::ConnectorConfig, context: &crate::run_context::RunContext) -> Result<Self, SinkError> {
        let claims = match context.fence() {
            None => None,
            Some(Fence::Claims(claims)) => Some(claims),
            Some(Fence::Lease(_)) => {
                return Err(SinkError::config("a connector lease (`lease.scope: connector`) is not held in SQLite targets (refused by validation otherwise)"));
            }
        };
        Self::open_fenced(settings, &connector.id, claims).await
    }
}

impl Sink for SqliteSink {
    type Op = SqlOp;
    type Writer = SqliteWriter;

    fn name(&self) -> &'static str {
        "sqlite"
    }

    fn decode(&self, operation: &Any) -> Result<Option<SqlOp>, DecodeError> {
        decode_sql_op(operation, self.allow_raw_sql, "sqlite")
    }

    async fn load_checkpoints(&self) -> Result<Vec<CheckpointRow>, SinkError> {
        let connector = self.connector.clone();
        self.with_conn(SinkErrorKind::Checkpoints, move |conn| schema::load_checkpoints(conn, &connector)).await
    }

    async fn delete_checkpoints(&self, partition_count: u32) -> Result<(), SinkError> {
        let connector = self.connector.clone();
        self.with_conn(SinkErrorKind::Checkpoints, move |conn| {
            conn.execute(
                "DELETE FROM checkpoints WHERE connector = ?1 AND partition_count = ?2",
                rusqlite::params![&*connector, partition_count],
            )
            .map(|_| ())
        })
        .await
    }

    async fn projection_version(&self) -> Result<Option<String>, SinkError> {
        let connector = self.connector.clone();
        self.with_conn(SinkErrorKind::Refused, move |conn| {
            use rusqlite::OptionalExtension;
            conn.query_row("SELECT version FROM projections WHERE connector = ?1", [&*connector], |r| r.get(0))
                .optional()
        })
        .await
    }

    async fn record_projection_version(
        &self,
        projection: &str,
        version: &str,
        reset: Option<Vec<SqlOp>>,
    ) -> Result<(), SinkError> {
        let (conn, connector, path) = (self.conn.clone(), self.connector.clone(), self.path.display().to_string());
        let (projection, version) = (projection.to_string(), version.to_string());
        tokio::task::spawn_blocking(move || {
            let mut conn = conn.lock();
            // A failure of the rebuild is one of its reset; a failure of recording alone is refused.
            let kind = if reset.is_some() { SinkErrorKind::Reset } else { SinkErrorKind::Refused };
            let fail = |what: &str, e: &rusqlite::Error| {
                SinkError::new(kind, format!("SQLite target {path}: {what}: {e}")).unreachable_if(apply::is_transient(e))
            };
            let tx = conn.transaction().map_err(|e| fail("cannot begin", &e))?;
            if let Some(ops) = &reset {
                for (n, op) in ops.iter().enumerate() {
                    apply::execute(&tx, op).map_err(|e| {
                        let what = format!("reset operation {} of the sidecar's Describe failed ({op})", n + 1);
                        SinkError::reset(format!("SQLite target {path}: {what}: {}", e.message)).unreachable_if(e.transient)
                    })?;
                }
                tx.execute("DELETE FROM checkpoints WHERE connector = ?1", [&*connector])
                    .map_err(|e| fail("cannot delete the checkpoints", &e))?;
            }
            tx.execute(
                "INSERT INTO projections (connector, projection, version, updated_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (connector) DO UPDATE SET projection = excluded.projection, version = excluded.version, updated_at = excluded.updated_at",
                rusqlite::params![&*connector, projection, version, chrono::Utc::now().to_rfc3339()],
            )
            .map_err(|e| fail("cannot record the projection version", &e))?;
            tx.commit().map_err(|e| fail("cannot commit", &e))
        })
        .await?
    }

    /// `SELECT position FROM <table> WHERE id = ?`, after looking the table up (none: no
    /// checkpoint). SQLite's names and columns are case-insensitive, so Eventuous.Sqlite's
    /// `eventuous_checkpoints (id, position)` and the Connector's `Checkpoints (ID, Position)`
    /// read alike.
    async fn eventuous_checkpoint(&self, checkpoint: &EventuousCheckpoint) -> Result<Option<Position>, SinkError> {
        let EventuousPlace::Table { table, .. } = &checkpoint.place else {
            return Err(eventuous::not_here(checkpoint, self.name()));
        };
        let (conn, table, id) = (self.conn.clone(), table.clone(), checkpoint.id.clone());
        let stored = tokio::task::spawn_blocking(move || {
            use rusqlite::{OptionalExtension, types::Value};
            let conn = conn.lock();
            let exists = conn
                .query_row("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1 COLLATE NOCASE", [&table], |_| Ok(()))
                .optional()?;
            if exists.is_none() {
                return Ok(None);
            }
            let sql = format!("SELECT position FROM \"{}\" WHERE id = ?1", table.replace('"', "\"\""));
            conn.query_row(&sql, [&id], |row| row.get::<_, Value>(0)).optional()
        })
        .await?
        .map_err(|e| eventuous::unreadable(checkpoint, format!("SQLite target {}: {e}", self.path.display()), apply::is_transient(&e)))?;
        match stored {
            None | Some(rusqlite::types::Value::Null) => Ok(None),
            Some(rusqlite::types::Value::Integer(p)) => eventuous::position(Some(p), checkpoint),
            Some(other) => Err(eventuous::unexpected(checkpoint, format!("a position of type {:?}", other.data_type()))),
        }
    }

    async fn parked_events(&self, query: &crate::sinks::parked::ParkedQuery) -> Result<Vec<crate::sinks::parked::ParkedEvent>, SinkError> {
        let (connector, query) = (self.connector.clone(), query.clone());
        self.with_conn(SinkErrorKind::Refused, move |conn| parked::list(conn, &connector, &query)).await
    }

    async fn count_parked(&self) -> Result<Option<u64>, SinkError> {
        let connector = self.connector.clone();
        self.with_conn(SinkErrorKind::Refused, move |conn| parked::count(conn, &connector).map(Some)).await
    }

    async fn discard_parked(&self, ids: &[String]) -> Result<u64, SinkError> {
        let (connector, ids) = (self.connector.clone(), ids.to_vec());
        self.with_conn(SinkErrorKind::Refused, move |conn| parked::discard(conn, &connector, &ids)).await
    }

    fn writer_count(&self) -> usize {
        1
    }

    /// `path` now names another file than the one this sink opened.
    async fn swapped(&self) -> Result<bool, SinkError> {
        Ok(self.opened.is_some() && blue_green::file_identity(&self.path) != self.opened)
    }

    async fn open_writer(&self) -> Result<SqliteWriter, SinkError> {
        Ok(SqliteWriter::new(self.conn.clone(), self.connector.clone(), self.path.clone(), self.checkpointer.clone(), self.opened, self.claims.clone()))
    }
}
