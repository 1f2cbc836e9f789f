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
    /// The payload exactly as stored.
    pub data: Bytes,
    /// What `data` holds: JSON (every SQL log, and KurrentDB events written as JSON) or bytes
    /// of another format (KurrentDB events not marked as JSON).
    pub content_type: ContentType,
    /// The metadata as stored (a JSON object), if any.
    pub metadata: Option<Bytes>,
    pub created: DateTime<Utc>,
}

/// The format of an event's payload.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ContentType {
    #[default]
    Json,
    /// Not JSON: passed to the sidecar as raw bytes (`payloadJson` with `contentType`).
    Binary,
}

impl ContentType {
    /// The MIME type sent in `ProjectionRequest.contentType`.
    pub fn mime(self) -> &'static str {
        match self {
            ContentType::Json => "application/json",
            ContentType::Binary => "application/octet-stream",
        }
    }
}

impl Event {
    /// True for the event store's own events (`$`-prefixed type or stream), which connectors
    /// skip unless configured otherwise.
    pub fn is_system(&self) -> bool {
        self.event_type.starts_with('$') || self.stream.starts_with('$')
    }
}

#[cfg(test)]
impl Event {
    /// An event for unit tests: `{}` on stream `s`, created now.
    pub fn sample(event_id: &str, event_type: &str, position: Position) -> Self {
        Self {
            position,
            stream: "s".into(),
            revision: 0,
            event_type: event_type.into(),
            event_id: event_id.into(),
            data: "{}".into(),
            metadata: None,
            created: chrono::Utc::now(),
            content_type: ContentType::Json,
        }
    }
}
