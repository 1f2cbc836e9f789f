//! The event as every stage sees it, whatever log it came from. Sources produce it, the router
//! routes it by stream, the reducer client turns it into a `ProjectionRequest`, and poison
//! handling stores it. Payloads stay as the bytes the log holds until a request is built.

use bytes::Bytes;
use chrono::{DateTime, Utc};

/// A position in the global log. Positions start at 1; [`Position`] 0 means "before the first
/// event", which is what a connector without a checkpoint resumes from.
pub type Position = u64;

/// One event read from a log.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// Global position in the log; strictly increasing.
    pub position: Position,
    /// The event-store stream (the partition key), e.g. `booking-42`.
    pub stream: String,
    /// Position within the stream, starting at 0.
    pub revision: u64,
    pub event_type: String,
    /// Unique id, normally a UUID in text form.
    pub event_id: String,
    /// The payload exactly as stored (JSON for every log this version reads).
    pub data: Bytes,
    /// The metadata as stored (a JSON object), if any.
    pub metadata: Option<Bytes>,
    pub created: DateTime<Utc>,
}

impl Event {
    /// True for the event store's own events (`$`-prefixed type or stream), which connectors
    /// skip unless configured otherwise.
    pub fn is_system(&self) -> bool {
        self.event_type.starts_with('$') || self.stream.starts_with('$')
    }
}
