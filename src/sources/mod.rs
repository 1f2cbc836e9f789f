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
pub mod registry;
pub mod settings;
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

/// How the pipeline opens a source from its settings (one line per source in `registry.rs`).
pub trait OpenSource: EventSource + Sized + 'static {
    /// The source's settings (`<source>/config.rs`).
    type Settings;

    /// Opens the log positioned to read events after `after`. Sources that can filter on the
    /// server side (KurrentDB) narrow what they read with the connector's `filter`.
    fn open(settings: &Self::Settings, filter: &FilterConfig, after: Position) -> impl std::future::Future<Output = Result<Self, SourceError>> + Send;

    /// A probe of the log's head on a connection of its own (lag metrics), or `None` for a
    /// source that has none.
    fn head(settings: &Self::Settings) -> impl std::future::Future<Output = Result<Option<Box<dyn head::HeadProbe>>, SourceError>> + Send;
}

/// `open` and `head::open`, generated from the list of sources (`registry.rs`).
macro_rules! open_source {
    (; $($variant:ident $key:literal ($($cfg:tt)*) $settings:ty => $runtime:ty;)*) => {
        /// Opens the configured source, positioned to read events after `after`.
        pub async fn open(config: &SourceConfig, filter: &FilterConfig, after: Position) -> Result<Box<dyn EventSource>, SourceError> {
            match config {
                $(
                    #[cfg($($cfg)*)]
                    SourceConfig::$variant(settings) => Ok(Box::new(<$runtime as OpenSource>::open(settings, filter, after).await?)),
                )*
                #[allow(unreachable_patterns)]
                other => Err(SourceError::NotBuilt(other.key())),
            }
        }

        /// A probe of the configured source's head, or `None` for a source that has none.
        pub async fn open_head(config: &SourceConfig) -> Result<Option<Box<dyn head::HeadProbe>>, SourceError> {
            match config {
                $(
                    #[cfg($($cfg)*)]
                    SourceConfig::$variant(settings) => <$runtime as OpenSource>::head(settings).await,
                )*
                #[allow(unreachable_patterns)]
                _ => Ok(None),
            }
        }
    };
}
registry::each_source!(open_source);
