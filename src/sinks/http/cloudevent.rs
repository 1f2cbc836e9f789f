//! An event as a CloudEvent 1.0: the one place that decides which attribute carries what, so
//! the structured body, the binary headers, the batch items and the parked copies all agree.
//!
//! | attribute | from |
//! | --- | --- |
//! | `id` | the event id |
//! | `source` | `sink.http.source`, default `projector-gateway/<connector id>` |
//! | `type` | the event type |
//! | `subject` | the stream |
//! | `time` | when the event was written (RFC 3339, UTC) |
//! | `datacontenttype` | `application/json`, or `application/octet-stream` for payloads that are not JSON |
//! | `data` / `data_base64` | the payload: JSON as it is stored, other bytes in base64 |
//! | `position` | extension: the event's global position in the log (a string: CloudEvents integers are 32-bit) |
//! | `streamrevision` | extension: the event's revision in its stream (a string, for the same reason) |
//! | `partition` | extension: the connector partition that delivered it (an integer) |
//!
//! Extension names are lowercase `a-z0-9`, as the specification requires. In binary mode every
//! attribute but `data` becomes a `ce-<name>` header whose value is percent-encoded where the
//! HTTP binding says so (space, `"`, `%` and anything outside printable ASCII).

use base64::Engine;
use bytes::Bytes;
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use serde::Serialize;

use crate::{event::ContentType, sinks::EventRef};

pub const SPEC_VERSION: &str = "1.0";

pub const STRUCTURED_CONTENT_TYPE: &str = "application/cloudevents+json";
pub const BATCH_CONTENT_TYPE: &str = "application/cloudevents-batch+json";

/// Every attribute but the data, in the order the JSON form lists them.
#[derive(Serialize)]
struct Attributes<'a> {
    specversion: &'static str,
    id: &'a str,
    source: &'a str,
    #[serde(rename = "type")]
    event_type: &'a str,
    subject: &'a str,
    time: String,
    datacontenttype: &'static str,
    position: String,
    streamrevision: String,
    partition: u32,
}

fn attributes<'a>(event: &'a EventRef, source: &'a str) -> Attributes<'a> {
    let e = &event.event;
    Attributes {
        specversion: SPEC_VERSION,
        id: &e.event_id,
        source,
        event_type: &e.event_type,
        subject: &e.stream,
        time: e.created.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
        datacontenttype: e.content_type.mime(),
        position: e.position.to_string(),
        streamrevision: e.revision.to_string(),
        partition: event.partition,
    }
}

/// Whether the payload goes as JSON (`data`, the stored bytes as they are) rather than base64:
/// a JSON event whose bytes parse. A JSON event that does not parse goes as `data_base64`, so
/// the receiver gets the exact bytes and the request is still valid JSON.
fn is_json(event: &EventRef) -> bool {
    let e = &event.event;
    e.content_type == ContentType::Json && serde_json::from_slice::<serde::de::IgnoredAny>(&e.data).is_ok()
}

/// The structured form: the whole CloudEvent as one JSON object (the body of a structured
/// request, an item of a batch, the copy kept with a parked event).
pub fn structured(event: &EventRef, source: &str) -> Bytes {
    let attributes = serde_json::to_vec(&attributes(event, source)).expect("attributes serialize");
    let data = &event.event.data;
    if is_json(event) {
        splice(attributes, "data", data)
    } else {
        let encoded = base64::engine::general_purpose::STANDARD.encode(data);
        splice(attributes, "data_base64", &serde_json::to_vec(&encoded).expect("a string serializes"))
    }
    .into()
}

/// Adds `"key": <raw JSON>` as the last member of a serialized JSON object.
pub fn splice(mut object: Vec<u8>, key: &str, raw: &[u8]) -> Vec<u8> {
    debug_assert_eq!(object.last(), Some(&b'}'));
    object.pop();
    if object.len() > 1 {
        object.push(b',');
    }
    object.extend(serde_json::to_vec(key).expect("a string serializes"));
    object.push(b':');
    object.extend_from_slice(raw);
    object.push(b'}');
    object
}

/// The binary form: the attributes as `ce-` headers (and `content-type`), the payload as the
/// body, exactly as the log holds it.
pub fn binary(event: &EventRef, source: &str) -> (HeaderMap, Bytes) {
    let a = attributes(event, source);
    let mut headers = HeaderMap::with_capacity(11);
    let partition = a.partition.to_string();
    for (name, value) in [
        ("ce-specversion", a.specversion),
        ("ce-id", a.id),
        ("ce-source", a.source),
        ("ce-type", a.event_type),
        ("ce-subject", a.subject),
        ("ce-time", &a.time),
        ("ce-position", &a.position),
        ("ce-streamrevision", &a.streamrevision),
        ("ce-partition", &partition),
    ] {
        let value = HeaderValue::from_str(&percent_encode(value)).expect("percent-encoded text is a valid header value");
        headers.insert(HeaderName::from_static(name), value);
    }
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(a.datacontenttype));
    (headers, event.event.data.clone())
}

/// Percent-encodes a header value as the CloudEvents HTTP binding asks: space, `"`, `%` and
/// every byte outside printable ASCII (non-ASCII characters as their UTF-8 bytes).
pub fn percent_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if matches!(byte, 0x21..=0x7e) && byte != b'"' && byte != b'%' {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use chrono::TimeZone;
    use serde_json::{Value, json};

    use super::*;
    use crate::event::Event;

    fn event(data: &[u8], content_type: ContentType, stream: &str) -> EventRef {
        EventRef::new(
            Arc::new(Event {
                position: 5_000_000_000,
                stream: stream.into(),
                revision: 3,
                event_type: "RoomBooked".into(),
                event_id: "0b7c3e0c-1111-4c1e-9a55-7a5c2b0c0001".into(),
                data: Bytes::copy_from_slice(data),
                content_type,
                metadata: None,
                created: chrono::Utc.with_ymd_and_hms(2026, 3, 1, 12, 30, 5).unwrap(),
            }),
            2,
        )
    }

    #[test]
    fn a_json_event_keeps_its_payload_as_json() {
        let e = event(br#"{"roomId": "r-1", "price": 12.50}"#, ContentType::Json, "booking-1");
        let ce: Value = serde_json::from_slice(&structured(&e, "projector-gateway/tail")).unwrap();
        assert_eq!(
            ce,
            json!({
                "specversion": "1.0",
                "id": "0b7c3e0c-1111-4c1e-9a55-7a5c2b0c0001",
                "source": "projector-gateway/tail",
                "type": "RoomBooked",
                "subject": "booking-1",
                "time": "2026-03-01T12:30:05Z",
                "datacontenttype": "application/json",
                "position": "5000000000",
                "streamrevision": "3",
                "partition": 2,
                "data": {"roomId": "r-1", "price": 12.50},
            })
        );
        // The stored bytes go out as they are (no re-encoding of numbers or spacing).
        let text = String::from_utf8(structured(&e, "s").to_vec()).unwrap();
        assert!(text.ends_with(r#""data":{"roomId": "r-1", "price": 12.50}}"#), "{text}");
    }

    #[test]
    fn other_payloads_go_as_base64_with_their_content_type() {
        let e = event(&[0, 159, 146, 150], ContentType::Binary, "blobs-1");
        let ce: Value = serde_json::from_slice(&structured(&e, "s")).unwrap();
        assert_eq!(ce["datacontenttype"], "application/octet-stream");
        assert_eq!(ce["data_base64"], "AJ+Slg==");
        assert!(ce.get("data").is_none());
        // A "JSON" event whose bytes do not parse keeps its bytes exactly.
        let e = event(b"{not json", ContentType::Json, "x");
        let ce: Value = serde_json::from_slice(&structured(&e, "s")).unwrap();
        assert_eq!(ce["data_base64"], base64::engine::general_purpose::STANDARD.encode("{not json"));
    }

    #[test]
    fn binary_mode_puts_the_attributes_in_percent_encoded_headers() {
        let e = event(&[1, 2, 3], ContentType::Binary, "caf\u{e9} 100%");
        let (headers, body) = binary(&e, "projector-gateway/tail");
        let h = |name: &str| headers.get(name).unwrap().to_str().unwrap().to_owned();
        assert_eq!(h("ce-specversion"), "1.0");
        assert_eq!(h("ce-subject"), "caf%C3%A9%20100%25");
        assert_eq!(h("ce-time"), "2026-03-01T12:30:05Z");
        assert_eq!((h("ce-position"), h("ce-streamrevision"), h("ce-partition")), ("5000000000".into(), "3".into(), "2".into()));
        assert_eq!(h("content-type"), "application/octet-stream");
        assert_eq!(&body[..], &[1, 2, 3]);
    }

    #[test]
    fn attribute_names_follow_the_specification() {
        let e = event(b"{}", ContentType::Json, "s");
        let ce: Value = serde_json::from_slice(&structured(&e, "s")).unwrap();
        for name in ce.as_object().unwrap().keys() {
            assert!(name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()) && name.len() <= 20, "{name}");
        }
    }
}
