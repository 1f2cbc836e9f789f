//! The SQLite event log: its schema and appending to it. One table, `events`, ordered by an
//! autoincrement global position; stream revisions are unique per stream. SQLite serialises
//! writers and commits in order, so positions become visible in order and a reader never sees
//! a gap that later fills.
//!
//! Appends made through this module in the same process wake live readers of the same file at
//! once; appends from other processes are seen at the reader's next poll.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    sync::{Arc, LazyLock},
};

use parking_lot::Mutex;

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, params};
use tokio::sync::Notify;

use crate::event::Position;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS events (
    position   INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id   TEXT    NOT NULL UNIQUE,
    stream     TEXT    NOT NULL,
    revision   INTEGER NOT NULL,
    event_type TEXT    NOT NULL,
    data       TEXT    NOT NULL,
    metadata   TEXT,
    created_us INTEGER NOT NULL,
    UNIQUE (stream, revision)
);";

/// Why an append failed. The SQLite error is part of the message and not a `source`, so a
/// chain printed with `{:#}` says it once.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("event log {path}: {reason}")]
    Sqlite { path: String, reason: rusqlite::Error },
    #[error("event data for stream `{stream}` is not valid JSON: {reason}")]
    InvalidJson { stream: String, reason: String },
}

/// An event to append.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub stream: String,
    pub event_type: String,
    /// JSON text.
    pub data: String,
    /// JSON object text, if any.
    pub metadata: Option<String>,
    /// Defaults to a new random UUID.
    pub event_id: Option<String>,
    /// Defaults to now.
    pub created: Option<DateTime<Utc>>,
}

/// A writable handle on an event log file.
pub struct EventLog {
    conn: Connection,
    path: PathBuf,
    wake: Arc<Notify>,
}

impl EventLog {
    /// Opens the log at `path`, creating the file and schema if missing.
    pub fn open(path: &Path) -> Result<Self, LogError> {
        let conn = open_connection(path)?;
        conn.execute_batch(SCHEMA).map_err(|e| sqlite_error(path, e))?;
        Ok(Self { conn, path: path.to_path_buf(), wake: wake_handle(path) })
    }

    /// Appends events in one transaction and returns their positions. Each event goes to the
    /// end of its stream (its revision is the stream's next).
    pub fn append(&mut self, events: &[NewEvent]) -> Result<Vec<Position>, LogError> {
        for e in events {
            let check = serde_json::from_str::<serde_json::Value>(&e.data).map(|_| ());
            let check = check.and_then(|_| match &e.metadata {
                Some(m) => serde_json::from_str::<serde_json::Value>(m).map(|_| ()),
                None => Ok(()),
            });
            check.map_err(|err| LogError::InvalidJson { stream: e.stream.clone(), reason: err.to_string() })?;
        }
        let path = self.path.clone();
        let err = |e| sqlite_error(&path, e);
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(err)?;
        let mut positions = Vec::with_capacity(events.len());
        {
            let mut next_revision: HashMap<&str, i64> = HashMap::new();
            let mut last = tx
                .prepare_cached("SELECT max(revision) FROM events WHERE stream = ?1")
                .map_err(err)?;
            let mut insert = tx
                .prepare_cached(
                    "INSERT INTO events (event_id, stream, revision, event_type, data, metadata, created_us)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                )
                .map_err(err)?;
            for e in events {
                let revision = match next_revision.get(e.stream.as_str()) {
                    Some(r) => *r,
                    None => last
                        .query_row([&e.stream], |row| row.get::<_, Option<i64>>(0))
                        .optional()
                        .map_err(err)?
                        .flatten()
                        .map_or(0, |r| r + 1),
                };
                next_revision.insert(e.stream.as_str(), revision + 1);
                let id = e.event_id.clone().unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
                let created = e.created.unwrap_or_else(Utc::now).timestamp_micros();
                insert
                    .execute(params![id, e.stream, revision, e.event_type, e.data, e.metadata, created])
                    .map_err(err)?;
                positions.push(tx.last_insert_rowid() as Position);
            }
        }
        tx.commit().map_err(err)?;
        self.wake.notify_waiters();
        Ok(positions)
    }

    /// The position of the last event, 0 for an empty log.
    pub fn head(&self) -> Result<Position, LogError> {
        self.conn
            .query_row("SELECT coalesce(max(position), 0) FROM events", [], |r| r.get::<_, i64>(0))
            .map(|p| p as Position)
            .map_err(|e| sqlite_error(&self.path, e))
    }
}

pub(super) fn open_connection(path: &Path) -> Result<Connection, LogError> {
    let conn = Connection::open(path).map_err(|e| sqlite_error(path, e))?;
    conn.busy_timeout(std::time::Duration::from_secs(10)).map_err(|e| sqlite_error(path, e))?;
    conn.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;")
        .map_err(|e| sqlite_error(path, e))?;
    Ok(conn)
}

pub(super) fn sqlite_error(path: &Path, reason: rusqlite::Error) -> LogError {
    LogError::Sqlite { path: path.display().to_string(), reason }
}

/// The in-process wake-up shared by appenders and readers of one log file.
pub(super) fn wake_handle(path: &Path) -> Arc<Notify> {
    static HANDLES: LazyLock<Mutex<HashMap<PathBuf, Arc<Notify>>>> = LazyLock::new(Default::default);
    let key = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let mut handles = HANDLES.lock();
    handles.entry(key).or_default().clone()
}
