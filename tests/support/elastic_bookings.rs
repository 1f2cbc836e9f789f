//! The bookings read model as Elasticsearch documents (the design of the example sidecars'
//! `elastic` target, `sidecar-examples/go/README.md`), as a reducer function for the scripted
//! sidecar of the tests and for the benchmark (which includes this file):
//!
//! - `booking:<bookingId>`: `{kind: "booking", booking_id, guest_id, room_id, check_in,
//!   check_out, price_cents, status, last_position}`, written by Update with `docAsUpsert` on
//!   RoomBooked (a re-booking keeps nothing else to reset) and by Update on the other events;
//! - `event:<eventId>`: one fact per counted event (`booked`, `payment` with `amount_cents`,
//!   `cancellation`), written by Index with the event's position as external version, so a
//!   replay changes nothing.
//!
//! A booking's `paid_cents` and a guest's counters are sums and counts over the facts.

use bookings_reducer::proto::{Ignore, Index, ProjectionRequest, ProjectionResponse, ReducerError, Update};
use prost::Message;
use prost_types::{Any, Struct, Value, value::Kind};

fn pack<M: Message>(name: &str, message: &M) -> Any {
    Any { type_url: format!("type.googleapis.com/{name}"), value: message.encode_to_vec() }
}

fn object(fields: Vec<(&str, Kind)>) -> Struct {
    Struct { fields: fields.into_iter().map(|(k, v)| (k.to_string(), Value { kind: Some(v) })).collect() }
}

fn text(s: &str) -> Kind {
    Kind::StringValue(s.to_string())
}

fn number(n: f64) -> Kind {
    Kind::NumberValue(n)
}

/// Reduces one bookings event to Elasticsearch operations.
pub fn reduce_elastic(request: &ProjectionRequest) -> ProjectionResponse {
    let field = |name: &str| request.event_payload.as_ref().and_then(|p| p.fields.get(name)).and_then(|v| v.kind.clone());
    let string = |name: &str| match field(name) {
        Some(Kind::StringValue(s)) => Ok(s),
        other => Err(format!("`{name}` of event {} must be a string, not {other:?}", request.event_id)),
    };
    let whole = |name: &str| match field(name) {
        Some(Kind::NumberValue(n)) if n.fract() == 0.0 => Ok(n),
        other => Err(format!("`{name}` of event {} must be a whole number, not {other:?}", request.event_id)),
    };
    let position = number(request.global_position as f64);
    let ops = || -> Result<Vec<Any>, String> {
        let booking = |fields: Vec<(&str, Kind)>, upsert: bool| -> Result<Any, String> {
            Ok(pack(
                "projection.Update",
                &Update { id: format!("booking:{}", string("bookingId")?), document: Some(object(fields)), doc_as_upsert: upsert, ..Default::default() },
            ))
        };
        let fact = |kind: &str, extra: Vec<(&str, Kind)>| -> Result<Any, String> {
            let mut fields = vec![("kind", text(kind)), ("booking_id", Kind::StringValue(string("bookingId")?)), ("guest_id", Kind::StringValue(string("guestId")?)), ("position", position.clone())];
            fields.extend(extra);
            Ok(pack(
                "projection.Index",
                &Index { id: format!("event:{}", request.event_id), document: Some(object(fields)), external_version: true, ..Default::default() },
            ))
        };
        let status = |s: &str| booking(vec![("status", text(s)), ("last_position", position.clone())], false);
        Ok(match request.event_type.as_str() {
            "RoomBooked" => vec![
                booking(
                    vec![
                        ("kind", text("booking")),
                        ("booking_id", Kind::StringValue(string("bookingId")?)),
                        ("guest_id", Kind::StringValue(string("guestId")?)),
                        ("room_id", Kind::StringValue(string("roomId")?)),
                        ("check_in", Kind::StringValue(string("checkIn")?)),
                        ("check_out", Kind::StringValue(string("checkOut")?)),
                        ("price_cents", number(whole("priceCents")?)),
                        ("status", text("booked")),
                        ("last_position", position.clone()),
                    ],
                    true,
                )?,
                fact("booked", vec![])?,
            ],
            "PaymentRecorded" => vec![
                booking(vec![("last_position", position.clone())], false)?,
                fact("payment", vec![("amount_cents", number(whole("amountCents")?))])?,
            ],
            "GuestCheckedIn" => vec![status("checked_in")?],
            "GuestCheckedOut" => vec![status("checked_out")?],
            "BookingCancelled" => vec![status("cancelled")?, fact("cancellation", vec![])?],
            _ => vec![],
        })
    };
    match ops() {
        Ok(ops) => {
            let mut ops = ops.into_iter();
            ProjectionResponse {
                event_id: request.event_id.clone(),
                operation: Some(ops.next().unwrap_or_else(|| pack("projection.Ignore", &Ignore {}))),
                operations: ops.collect(),
                ..Default::default()
            }
        }
        Err(message) => ProjectionResponse {
            event_id: request.event_id.clone(),
            error: Some(ReducerError { message, retryable: false }),
            ..Default::default()
        },
    }
}
