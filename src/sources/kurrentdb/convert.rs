//! A KurrentDB recorded event as the pipeline's [`Event`].

use bytes::Bytes;
use chrono::{DateTime, Utc};
use kurrentdb::RecordedEvent;

use crate::event::{ContentType, Event, Position};

/// The event at `position` in `$all` (the commit position of what the subscription delivered,
/// which for a resolved link is the link's).
pub fn to_event(recorded: &RecordedEvent, position: Position) -> Event {
    Event {
        position,
        stream: recorded.stream_id().to_owned(),
        revision: recorded.revision,
        event_type: recorded.event_type.clone(),
        event_id: recorded.id.to_string(),
        data: recorded.data.clone(),
        content_type: if recorded.is_json { ContentType::Json } else { ContentType::Binary },
        metadata: user_metadata(&recorded.custom_metadata),
        created: created(recorded),
    }
}

/// The metadata the writer attached (Eventuous and most clients write a JSON object).
fn user_metadata(custom: &Bytes) -> Option<Bytes> {
    (!custom.is_empty()).then(|| custom.clone())
}

/// The server's `created` stamp (100 ns ticks since the Unix epoch) at full precision; the
/// client's own field keeps whole seconds only.
fn created(recorded: &RecordedEvent) -> DateTime<Utc> {
    recorded
        .metadata
        .get("created")
        .and_then(|ticks| ticks.parse::<i64>().ok())
        .and_then(|ticks| DateTime::from_timestamp(ticks.div_euclid(10_000_000), (ticks.rem_euclid(10_000_000) * 100) as u32))
        .unwrap_or(recorded.created)
}
