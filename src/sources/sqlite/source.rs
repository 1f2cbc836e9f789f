//! Reads the SQLite event log: catch-up in batches by position, then live by polling (and
//! waking at once on appends made in the same process).

use std::{
    path::PathBuf,
    sync::Arc,
    time::Duration,
};

use parking_lot::Mutex;

use bytes::Bytes;
use chrono::DateTime;
use futures::{FutureExt, future::BoxFuture};
use rusqlite::Connection;
use tokio::sync::Notify;

use super::log::{open_connection, wake_handle};
use crate::{
    config::SqliteSourceConfig,
    event::{Event, Position},
    sources::{EventSource, SourceBatch, SourceError},
};

/// A live reader of the SQLite event log.
pub struct SqliteSource {
    conn: Arc<Mutex<Connection>>,
    path: PathBuf,
    after: Position,
    batch_size: usize,
    poll: Duration,
    wake: Arc<Notify>,
}

impl crate::sources::OpenSource for SqliteSource {
    type Settings = crate::config::SqliteSourceConfig;

    async fn open(settings: &Self::Settings, _filter: &crate::config::FilterConfig, after: Position) -> Result<Self, SourceError> {
        Self::open(settings, after)
    }

    async fn head(settings: &Self::Settings) -> Result<Option<Box<dyn crate::sources::head::HeadProbe>>, SourceError> {
        Ok(Some(Box::new(super::SqliteHead::open(&settings.path)?)))
    }
}

impl SqliteSource {
    pub fn open(config: &SqliteSourceConfig, after: Position) -> Result<Self, SourceError> {
        let location = config.path.display().to_string();
        if !config.path.exists() {
            return Err(SourceError::Open {
                location,
                reason: "no such file; create it with `projector-gateway append` or check `source.sqlite.path`".into(),
            });
        }
        let conn = open_connection(&config.path).map_err(|e| SourceError::Open { location: location.clone(), reason: e.to_string() })?;
        conn.query_row("SELECT count(*) FROM sqlite_master WHERE name = 'events'", [], |r| r.get::<_, i64>(0))
            .map_err(|e| SourceError::Open { location: location.clone(), reason: e.to_string() })
            .and_then(|n| if n == 1 { Ok(()) } else {
                Err(SourceError::Open { location: location.clone(), reason: "the file has no `events` table: it is not a projector-gateway event log".into() })
            })?;
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
            path: config.path.clone(),
            after,
            batch_size: config.batch_size,
            poll: Duration::from_millis(config.poll_interval_ms.max(1)),
            wake: wake_handle(&config.path),
        })
    }

    async fn read(&self) -> Result<Vec<Event>, SourceError> {
        let conn = self.conn.clone();
        let (after, limit) = (self.after, self.batch_size);
        let location = self.path.display().to_string();
        tokio::task::spawn_blocking(move || {
            let conn = conn.lock();
            read_after(&conn, after, limit)
        })
        .await
        .map_err(|e| SourceError::Read { location: location.clone(), reason: e.to_string() })?
        .map_err(|e| SourceError::Read { location, reason: e.to_string() })
    }

    async fn next(&mut self) -> Result<SourceBatch, SourceError> {
        loop {
            // Register for the wake-up before reading so an append between the read and the
            // wait is not missed.
            let woken = self.wake.notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            let events = self.read().await?;
            if let Some(last) = events.last() {
                self.after = last.position;
                return Ok(SourceBatch { end: self.after, events });
            }
            tokio::select! {
                _ = woken => {}
                _ = tokio::time::sleep(self.poll) => {}
            }
        }
    }
}

impl EventSource for SqliteSource {
    fn next_batch(&mut self) -> BoxFuture<'_, Result<SourceBatch, SourceError>> {
        self.next().boxed()
    }
}

fn read_after(conn: &Connection, after: Position, limit: usize) -> Result<Vec<Event>, rusqlite::Error> {
    let mut stmt = conn.prepare_cached(
            "SELECT position, event_id, stream, revision, event_type, data, metadata, created_us
             FROM events WHERE position > ?1 ORDER BY position LIMIT ?2",
    )?;
    stmt
        .query_map([after as i64, limit as i64], |row| {
            Ok(Event {
                position: row.get::<_, i64>(0)? as Position,
                event_id: row.get(1)?,
                stream: row.get(2)?,
                revision: row.get::<_, i64>(3)? as u64,
                event_type: row.get(4)?,
                data: Bytes::from(row.get::<_, String>(5)?),
                metadata: row.get::<_, Option<String>>(6)?.map(Bytes::from),
                created: DateTime::from_timestamp_micros(row.get(7)?).unwrap_or_default(),
                content_type: crate::event::ContentType::Json,
            })
        })
        .and_then(|rows| rows.collect())
}
