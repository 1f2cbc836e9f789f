//! The SQLite log's head (see `sources/head.rs`), on a connection of its own.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
};

use parking_lot::Mutex;

use chrono::DateTime;
use futures::{FutureExt, future::BoxFuture};
use rusqlite::{Connection, OptionalExtension};

use super::log::open_connection;
use crate::{
    event::Position,
    sources::{
        SourceError,
        head::{Head, HeadProbe},
    },
};

pub struct SqliteHead {
    conn: Arc<Mutex<Connection>>,
    path: PathBuf,
}

impl SqliteHead {
    pub fn open(path: &Path) -> Result<Self, SourceError> {
        let conn = open_connection(path).map_err(|e| SourceError::Open { location: path.display().to_string(), reason: e.to_string() })?;
        Ok(Self { conn: Arc::new(Mutex::new(conn)), path: path.to_owned() })
    }
}

impl HeadProbe for SqliteHead {
    fn head(&mut self, after: Position) -> BoxFuture<'_, Result<Head, SourceError>> {
        let conn = self.conn.clone();
        let location = self.path.display().to_string();
        async move {
            let read = tokio::task::spawn_blocking(move || -> rusqlite::Result<Head> {
                let conn = conn.lock();
                let position: Option<i64> = conn.query_row("SELECT max(position) FROM events", [], |r| r.get(0))?;
                let created_us: Option<i64> = conn
                    .prepare_cached("SELECT created_us FROM events WHERE position > ?1 ORDER BY position LIMIT 1")?
                    .query_row([after as i64], |r| r.get(0))
                    .optional()?;
                Ok(Head {
                    position: position.unwrap_or(0) as Position,
                    oldest_pending: created_us.and_then(DateTime::from_timestamp_micros),
                })
            });
            read.await
                .map_err(|e| SourceError::Read { location: location.clone(), reason: e.to_string() })?
                .map_err(|e| SourceError::Read { location, reason: e.to_string() })
        }
        .boxed()
    }
}
