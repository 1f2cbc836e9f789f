//! The bookings read model in Redis, as a reducer function for the scripted sidecar of the
//! tests and for the benchmark (which includes this file). The same model as the SQL one of
//! `sidecar-examples/BOOKINGS.md`, in Redis's types:
//!
//! - `booking:<bookingId>`: a hash `guest_id, room_id, check_in, check_out, price_cents,
//!   status, last_position` set by HSET, and `paid_cents` counted by HINCRBY;
//! - `guest:<guestId>`: a hash of counters, `bookings, cancellations, payments, paid_cents`,
//!   each counted by HINCRBY (not idempotent: a batch applied twice shows in them);
//! - `history:<bookingId>`: a stream with one entry (`type`, `position`) per event of the
//!   booking, by XADD (not idempotent either).
//!
//! `GuestRegistered` is ignored, as the example reducers do (their `Describe` does not list it).

use bookings_reducer::proto::{ProjectionRequest, ProjectionResponse, ReducerError};
use prost_types::{Any, value::Kind};
use projector_gateway::proto::{self as gw, pack, redis_value};

/// The event types [`reduce`] writes; the others are answered with `Ignore`.
pub const HANDLED: [&str; 5] = bookings_reducer::HANDLED_EVENT_TYPES;

/// Reduces one bookings event to Redis operations (keys without the sink's prefix).
pub fn reduce(request: &ProjectionRequest) -> ProjectionResponse {
    let operations = match operations(request) {
        Ok(operations) => operations,
        Err(message) => {
            return ProjectionResponse {
                event_id: request.event_id.clone(),
                error: Some(ReducerError { message, retryable: false }),
                ..Default::default()
            };
        }
    };
    let operations = if operations.is_empty() { vec![pack("projection.Ignore", &gw::Ignore {})] } else { operations };
    ProjectionResponse { event_id: request.event_id.clone(), operations, ..Default::default() }
}

fn operations(request: &ProjectionRequest) -> Result<Vec<Any>, String> {
    let payload = request.event_payload.as_ref();
    let field = |name: &str| payload.and_then(|p| p.fields.get(name)).and_then(|v| v.kind.as_ref());
    let text = |name: &str| match field(name) {
        Some(Kind::StringValue(s)) => Ok(s.clone()),
        other => Err(format!("`{name}` of event {} must be a string, not {other:?}", request.event_id)),
    };
    let int = |name: &str| match field(name) {
        Some(Kind::NumberValue(n)) if n.fract() == 0.0 => Ok(*n as i64),
        other => Err(format!("`{name}` of event {} must be a whole number, not {other:?}", request.event_id)),
    };
    let position = request.global_position as i64;
    if !HANDLED.contains(&request.event_type.as_str()) {
        return Ok(Vec::new());
    }
    let booking = text("bookingId")?;
    let guest = format!("guest:{}", text("guestId")?);
    let status = |status: &str| hset(&format!("booking:{booking}"), &[("status", string(status)), ("last_position", integer(position))]);
    let mut ops = match request.event_type.as_str() {
        "RoomBooked" => vec![
            hset(&format!("booking:{booking}"), &[
                ("guest_id", string(&text("guestId")?)),
                ("room_id", string(&text("roomId")?)),
                ("check_in", string(&text("checkIn")?)),
                ("check_out", string(&text("checkOut")?)),
                ("price_cents", integer(int("priceCents")?)),
                ("status", string("booked")),
                ("last_position", integer(position)),
            ]),
            count(&guest, "bookings", 1),
        ],
        "PaymentRecorded" => {
            let amount = int("amountCents")?;
            vec![
                count(&format!("booking:{booking}"), "paid_cents", amount),
                hset(&format!("booking:{booking}"), &[("last_position", integer(position))]),
                count(&guest, "payments", 1),
                count(&guest, "paid_cents", amount),
            ]
        }
        "GuestCheckedIn" => vec![status("checked_in")],
        "GuestCheckedOut" => vec![status("checked_out")],
        _ => vec![status("cancelled"), count(&guest, "cancellations", 1)],
    };
    ops.push(pack("projection.RedisStreamAdd", &gw::RedisStreamAdd {
        key: format!("history:{booking}"),
        fields: vec![field_of("type", string(&request.event_type)), field_of("position", integer(position))],
        max_len: 0,
    }));
    Ok(ops)
}

fn string(s: &str) -> gw::RedisValue {
    gw::RedisValue { kind: Some(redis_value::Kind::StringValue(s.to_string())) }
}

fn integer(i: i64) -> gw::RedisValue {
    gw::RedisValue { kind: Some(redis_value::Kind::Int64Value(i)) }
}

fn field_of(name: &str, value: gw::RedisValue) -> gw::RedisField {
    gw::RedisField { name: name.to_string(), value: Some(value) }
}

fn hset(key: &str, fields: &[(&str, gw::RedisValue)]) -> Any {
    let fields = fields.iter().map(|(n, v)| field_of(n, v.clone())).collect();
    pack("projection.RedisHashSet", &gw::RedisHashSet { key: key.to_string(), fields })
}

fn count(key: &str, field: &str, by: i64) -> Any {
    pack("projection.RedisHashIncrBy", &gw::RedisHashIncrBy { key: key.to_string(), field: field.to_string(), by })
}
