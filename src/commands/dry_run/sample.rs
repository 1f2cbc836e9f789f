//! The dry run's sample: up to `limit` events of the connector's log after a position, those
//! its filter lets through (narrowed by `--types` and the sidecar's Describe), read as `run`
//! reads them. The read stops at the log's head as it was when the dry run started (it never
//! waits for appends); a source without a head to ask for (KurrentDB) stops once a read brings
//! nothing for a while.

use std::time::Duration;

use projector_gateway::{
    config::ConnectorConfig,
    event::{Event, Position},
    filter::EventFilter,
    sources::{self, head},
};

/// How long a read may bring nothing before the log counts as read to its end, for a source
/// whose head cannot be asked for.
const IDLE: Duration = Duration::from_secs(3);

/// How long one read may take when the head is known to be further on.
const READ: Duration = Duration::from_secs(60);

/// What was read.
pub struct Sampled {
    /// The events to send, in log order.
    pub events: Vec<Event>,
    /// Events read and left out by the filters.
    pub filtered_out: usize,
    /// The last position read (the sample ends here).
    pub read_up_to: Position,
    /// The log's head when the dry run started, when the source tells it.
    pub head: Option<Position>,
}

/// Reads up to `limit` events after `from` that `filter` accepts.
pub async fn read(connector: &ConnectorConfig, filter: &EventFilter, from: Position, limit: usize) -> Result<Sampled, String> {
    let head = match head::open(&connector.source).await {
        Ok(Some(mut probe)) => Some(probe.head(from).await.map_err(|e| e.to_string())?.position),
        Ok(None) => None,
        Err(e) => return Err(e.to_string()),
    };
    let mut sampled = Sampled { events: Vec::new(), filtered_out: 0, read_up_to: from, head };
    if head.is_some_and(|h| h <= from) {
        return Ok(sampled);
    }
    let mut source = sources::open(&connector.source, &connector.filter, from).await.map_err(|e| e.to_string())?;
    while sampled.events.len() < limit && head.is_none_or(|h| sampled.read_up_to < h) {
        let wait = if head.is_some() { READ } else { IDLE };
        let batch = match tokio::time::timeout(wait, source.next_batch()).await {
            Ok(batch) => batch.map_err(|e| e.to_string())?,
            Err(_) if head.is_none() => break,
            Err(_) => {
                return Err(format!(
                    "the log was read up to position {} of its head {} and then brought nothing within {READ:?}",
                    sampled.read_up_to,
                    head.unwrap_or_default()
                ));
            }
        };
        for event in batch.events {
            if sampled.events.len() == limit {
                break;
            }
            sampled.read_up_to = event.position;
            if filter.accepts(&event) {
                sampled.events.push(event);
            } else {
                sampled.filtered_out += 1;
            }
        }
        if sampled.events.len() < limit {
            sampled.read_up_to = sampled.read_up_to.max(batch.end);
        }
    }
    Ok(sampled)
}
