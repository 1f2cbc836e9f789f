//! Where a log's head is, for the lag metrics of the operations endpoint: the last position
//! the log holds and the time the oldest event after a given position was created. A probe
//! has a connection of its own, so asking never delays the connector's reads.

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;

use super::SourceError;
use crate::{config::SourceConfig, event::Position};

/// A log's head as seen from a connector's resume position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    /// The last position in the log (0 for an empty log).
    pub position: Position,
    /// When the first event after the asked position was created; `None` when there is none.
    pub oldest_pending: Option<DateTime<Utc>>,
}

/// Asks a log for its head.
pub trait HeadProbe: Send {
    /// The head, and the oldest event after `after`.
    fn head(&mut self, after: Position) -> BoxFuture<'_, Result<Head, SourceError>>;
}

/// A probe for the configured source, or `None` for a source that has none yet (KurrentDB:
/// the head of `$all` also moves with system events and checkpoint streams the connector
/// never sees, so head minus checkpoint would not be a lag).
pub async fn open(config: &SourceConfig) -> Result<Option<Box<dyn HeadProbe>>, SourceError> {
    super::open_head(config).await
}
