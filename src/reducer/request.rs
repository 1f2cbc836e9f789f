//! Builds the `ProjectionRequest` for an event: Eventuous's fields plus our extensions.

use crate::{
    config::PayloadFormat,
    event::{ContentType, Event},
    payload::{json_to_struct, metadata_to_map},
    proto::ProjectionRequest,
};

/// The request for `event` in `partition`. A payload that is not a JSON object (or not JSON at
/// all) cannot be a Struct; it is then sent as raw bytes in `payloadJson`, with its
/// `contentType`, whatever the format, so the sidecar still sees it.
pub fn build_request(event: &Event, partition: u32, format: PayloadFormat) -> ProjectionRequest {
    let want_struct = format != PayloadFormat::Json;
    let json = event.content_type == ContentType::Json;
    let event_payload = if want_struct && json { json_to_struct(&event.data).ok() } else { None };
    let raw = format != PayloadFormat::Struct || (want_struct && event_payload.is_none());
    ProjectionRequest {
        event_type: event.event_type.clone(),
        event_id: event.event_id.clone(),
        stream: event.stream.clone(),
        event_payload,
        metadata: event.metadata.as_deref().map(metadata_to_map).unwrap_or_default(),
        global_position: event.position,
        stream_revision: event.revision,
        created: Some(prost_types::Timestamp {
            seconds: event.created.timestamp(),
            nanos: event.created.timestamp_subsec_nanos() as i32,
        }),
        partition,
        payload_json: if raw { event.data.to_vec() } else { Vec::new() },
        content_type: event.content_type.mime().into(),
        traceparent: String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(data: &str) -> Event {
        Event {
            position: 7,
            stream: "booking-1".into(),
            revision: 2,
            event_type: "RoomBooked".into(),
            event_id: "e1".into(),
            data: data.to_string().into(),
            metadata: Some(r#"{"user":"ann"}"#.into()),
            created: chrono::DateTime::from_timestamp(1_700_000_000, 5).unwrap(),
            content_type: crate::event::ContentType::Json,
        }
    }

    #[test]
    fn fills_eventuous_fields_and_extensions() {
        let r = build_request(&event(r#"{"a":1}"#), 3, PayloadFormat::Struct);
        assert_eq!((r.event_type.as_str(), r.event_id.as_str(), r.stream.as_str()), ("RoomBooked", "e1", "booking-1"));
        assert!(r.event_payload.unwrap().fields.contains_key("a"));
        assert_eq!(r.metadata["user"], "ann");
        assert_eq!((r.global_position, r.stream_revision, r.partition), (7, 2, 3));
        assert_eq!(r.created.unwrap().seconds, 1_700_000_000);
        assert!(r.payload_json.is_empty());
    }

    #[test]
    fn sends_raw_json_when_asked_or_when_not_an_object() {
        let r = build_request(&event(r#"{"a":1}"#), 0, PayloadFormat::Json);
        assert!(r.event_payload.is_none());
        assert_eq!(r.payload_json, br#"{"a":1}"#);
        let r = build_request(&event("[1,2]"), 0, PayloadFormat::Struct);
        assert!(r.event_payload.is_none());
        assert_eq!(r.payload_json, b"[1,2]");
    }
}
