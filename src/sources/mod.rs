//! Event sources: the logs a connector reads. A source hands the pipeline *batches* of events
//! in log order, starting after the connector's resume position: first the backlog
//! (catch-up), then new events as they are appended (live), with no gap or duplicate at the
//! switch. Each batch also says how far the log has been read (`end`), so that the checkpoint
//! can move past events that were read but filtered out.

use futures::future::BoxFuture;

use crate::{
    config::{FilterConfig, SourceConfig},
    event::{Event, Position},
};

pub mod head;
#[cfg(feature = "kurrentdb")]
pub mod kurrentdb;
#[cfg(feature = "postgres")]
pub mod postgres;
#[cfg(feature = "sqlite")]
pub mod sqlite;

/// Events read from a log, in log order.
#[derive(Debug, Default)]
pub struct SourceBatch {
    pub events: Vec<Event>,
    /// Every event of the log at or below this position has been read (and is in this batch
    /// or an earlier one). At least the position of the last event.
    pub end: Position,
}

/// Why a source could not read.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("cannot open the event log at {location}: {reason}")]
    Open { location: String, reason: String },
    #[error("reading the event log at {location} failed: {reason}")]
    Read { location: String, reason: String },
    #[error("the subscription to the event log at {location} stopped: {reason}")]
    Stopped { location: String, reason: String },
    #[error("the {0} source is not built into this binary (cargo feature `{0}`)")]
    NotBuilt(&'static str),
}

impl SourceError {
    /// True when trying again later may succeed (the database went away for a while).
    pub fn is_transient(&self) -> bool {
        matches!(self, SourceError::Read { .. })
    }
}

/// A log being read. `next_batch` waits until at least one event (or a move of `end`) is
/// available; dropping its future is safe and only abandons that read.
pub trait EventSource: Send + Sync {
    fn next_batch(&mut self) -> BoxFuture<'_, Result<SourceBatch, SourceError>>;
}

/// Opens the configured source, positioned to read events after `after`. Sources that can
/// filter on the server side (KurrentDB) narrow what they read with the connector's `filter`.
#[cfg_attr(not(feature = "kurrentdb"), allow(unused_variables))]
pub async fn open(config: &SourceConfig, filter: &FilterConfig, after: Position) -> Result<Box<dyn EventSource>, SourceError> {
    match config {
        #[cfg(feature = "sqlite")]
        SourceConfig::Sqlite(c) => Ok(Box::new(sqlite::SqliteSource::open(c, after)?)),
        #[cfg(not(feature = "sqlite"))]
        SourceConfig::Sqlite(_) => Err(SourceError::NotBuilt("sqlite")),
        #[cfg(feature = "postgres")]
        SourceConfig::Postgres(c) => Ok(Box::new(postgres::PostgresSource::open(c, after).await?)),
        #[cfg(not(feature = "postgres"))]
        SourceConfig::Postgres(_) => Err(SourceError::NotBuilt("postgres")),
        #[cfg(feature = "kurrentdb")]
        SourceConfig::Kurrentdb(c) => Ok(Box::new(kurrentdb::KurrentdbSource::open(c, filter, after).await?)),
        #[cfg(not(feature = "kurrentdb"))]
        SourceConfig::Kurrentdb(_) => Err(SourceError::NotBuilt("kurrentdb")),
    }
}
