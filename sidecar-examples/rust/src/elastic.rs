//! `REDUCER_TARGET=elastic`: the bookings read model as Elasticsearch document operations, the
//! same ones as the Go, Java and Python examples (the design is described under "`elastic`" in
//! `sidecar-examples/go/README.md`).
//!
//! The proto's Elasticsearch operations act on the connector's one index, so every document id
//! starts with its kind. An `Update` can only merge fields, not add to a counter, and a
//! stateless reducer cannot know the current total, so the documents hold facts and the SQL
//! model's counters are aggregations at query time:
//!
//! - `booking:<bookingId>`: `{kind: "booking", booking_id, guest_id, room_id, check_in,
//!   check_out, price_cents, status, last_position}`, indexed (created or replaced) on
//!   RoomBooked; its `status` and `last_position` are merged by `Update` on the later events;
//! - `event:<eventId>`: one fact per counted event, `{kind, booking_id, guest_id, position}`
//!   with `kind` `booked`, `payment` (plus `amount_cents`) or `cancellation`.
//!
//! A booking's `paid_cents` is the sum of its payments' `amount_cents`; a guest's `bookings`,
//! `cancellations` and `payments` are the counts of its facts of each kind and its `paid_cents`
//! the sum of its payments. Every id comes from the log, so an event delivered twice writes the
//! same documents again and changes nothing, and projecting the log again rewrites the same
//! documents: the reset of [`elastic_description`] is empty (the proto has no delete-by-query).
//! No bookings event removes a document, so no `Delete` is emitted.

use prost_types::{Any, value::Kind};

use crate::{
    Payload, description, number, object, pack,
    proto::{DescribeResponse, Ignore, Index, ProjectionRequest, ProjectionResponse, ReducerError, Update},
};

/// Reduces one event to Elasticsearch operations (see the module documentation).
pub fn reduce_elastic(request: &ProjectionRequest) -> ProjectionResponse {
    let payload = Payload { fields: request.event_payload.as_ref(), request };
    match elastic_operations(request, &payload) {
        Ok(operations) => {
            let mut operations = operations.into_iter();
            ProjectionResponse {
                event_id: request.event_id.clone(),
                operation: Some(operations.next().unwrap_or_else(|| pack("projection.Ignore", &Ignore {}))),
                operations: operations.collect(),
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

/// [`description`] for the Elasticsearch read model: no reset operations, since projecting the
/// log again rewrites the same documents.
pub fn elastic_description() -> DescribeResponse {
    DescribeResponse { reset_operations: vec![], ..description() }
}

fn elastic_operations(request: &ProjectionRequest, p: &Payload) -> Result<Vec<Any>, String> {
    let position = number(request.global_position as f64);
    let text = |s: &str| Kind::StringValue(s.to_string());
    let booking_id = || Ok::<_, String>(format!("booking:{}", p.string("bookingId")?));
    // Merges `fields` into the booking's document.
    let update = |fields: Vec<(&str, Kind)>| -> Result<Any, String> {
        Ok(pack("projection.Update", &Update { id: booking_id()?, document: Some(object(fields)), ..Default::default() }))
    };
    let status = |status: &str| update(vec![("status", text(status)), ("last_position", position.clone())]);
    // The fact that this event counted, keyed by its id.
    let fact = |kind: &str, extra: Vec<(&str, Kind)>| -> Result<Any, String> {
        let mut fields = vec![
            ("kind", text(kind)),
            ("booking_id", Kind::StringValue(p.string("bookingId")?)),
            ("guest_id", Kind::StringValue(p.string("guestId")?)),
            ("position", position.clone()),
        ];
        fields.extend(extra);
        let id = format!("event:{}", request.event_id);
        Ok(pack("projection.Index", &Index { id, document: Some(object(fields)), ..Default::default() }))
    };
    Ok(match request.event_type.as_str() {
        "RoomBooked" => {
            let document = object(vec![
                ("kind", text("booking")),
                ("booking_id", Kind::StringValue(p.string("bookingId")?)),
                ("guest_id", Kind::StringValue(p.string("guestId")?)),
                ("room_id", Kind::StringValue(p.string("roomId")?)),
                ("check_in", Kind::StringValue(p.string("checkIn")?)),
                ("check_out", Kind::StringValue(p.string("checkOut")?)),
                ("price_cents", number(p.whole("priceCents")?)),
                ("status", text("booked")),
                ("last_position", position.clone()),
            ]);
            vec![
                pack("projection.Index", &Index { id: booking_id()?, document: Some(document), ..Default::default() }),
                fact("booked", vec![])?,
            ]
        }
        "PaymentRecorded" => vec![
            update(vec![("last_position", position.clone())])?,
            fact("payment", vec![("amount_cents", number(p.whole("amountCents")?))])?,
        ],
        "GuestCheckedIn" => vec![status("checked_in")?],
        "GuestCheckedOut" => vec![status("checked_out")?],
        "BookingCancelled" => vec![status("cancelled")?, fact("cancellation", vec![])?],
        _ => vec![],
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use prost::Message;
    use prost_types::{Struct, Value};

    use super::*;
    use crate::Target;

    fn request(event_type: &str, position: u64, fields: &[(&str, Kind)]) -> ProjectionRequest {
        ProjectionRequest {
            event_type: event_type.into(),
            event_id: format!("e-{position}"),
            stream: "booking-1".into(),
            event_payload: Some(Struct {
                fields: fields.iter().map(|(k, v)| (k.to_string(), Value { kind: Some(v.clone()) })).collect(),
            }),
            global_position: position,
            ..Default::default()
        }
    }

    fn s(v: &str) -> Kind {
        Kind::StringValue(v.into())
    }

    fn n(v: f64) -> Kind {
        Kind::NumberValue(v)
    }

    fn booked(booking: &str, room: &str, price: f64, position: u64) -> ProjectionRequest {
        request(
            "RoomBooked",
            position,
            &[
                ("bookingId", s(booking)),
                ("guestId", s("g1")),
                ("roomId", s(room)),
                ("checkIn", s("2026-01-01")),
                ("checkOut", s("2026-01-03")),
                ("priceCents", n(price)),
            ],
        )
    }

    fn paid(booking: &str, amount: f64, position: u64) -> ProjectionRequest {
        request("PaymentRecorded", position, &[("bookingId", s(booking)), ("guestId", s("g1")), ("amountCents", n(amount))])
    }

    fn with_booking(event_type: &str, booking: &str, position: u64) -> ProjectionRequest {
        request(event_type, position, &[("bookingId", s(booking)), ("guestId", s("g1"))])
    }

    /// An operation as Elasticsearch sees it: which kind, the id, and the document.
    #[derive(Debug, PartialEq)]
    enum Op {
        Index(String, Struct),
        Update(String, Struct),
        Ignore,
    }

    fn ops(response: &ProjectionResponse) -> Vec<Op> {
        assert!(response.error.is_none(), "{:?}", response.error);
        response
            .operation
            .iter()
            .chain(&response.operations)
            .map(|any| match any.type_url.as_str() {
                "type.googleapis.com/projection.Index" => {
                    let index = Index::decode(any.value.as_slice()).unwrap();
                    assert!(index.index.is_empty() && !index.external_version, "{index:?}");
                    Op::Index(index.id, index.document.expect("a document"))
                }
                "type.googleapis.com/projection.Update" => {
                    let update = Update::decode(any.value.as_slice()).unwrap();
                    assert!(update.index.is_empty() && !update.doc_as_upsert && update.upsert.is_none(), "{update:?}");
                    Op::Update(update.id, update.document.expect("a document"))
                }
                "type.googleapis.com/projection.Ignore" => Op::Ignore,
                other => panic!("unexpected operation {other}"),
            })
            .collect()
    }

    fn doc(fields: &[(&str, Kind)]) -> Struct {
        object(fields.to_vec())
    }

    #[test]
    fn room_booked_indexes_the_booking_and_a_booked_fact() {
        let r = Target::Elastic.reduce(&booked("b1", "r1", 25000.0, 42));
        assert_eq!(r.event_id, "e-42");
        assert_eq!(
            ops(&r),
            vec![
                Op::Index(
                    "booking:b1".into(),
                    doc(&[
                        ("kind", s("booking")),
                        ("booking_id", s("b1")),
                        ("guest_id", s("g1")),
                        ("room_id", s("r1")),
                        ("check_in", s("2026-01-01")),
                        ("check_out", s("2026-01-03")),
                        ("price_cents", n(25000.0)),
                        ("status", s("booked")),
                        ("last_position", n(42.0)),
                    ])
                ),
                Op::Index(
                    "event:e-42".into(),
                    doc(&[("kind", s("booked")), ("booking_id", s("b1")), ("guest_id", s("g1")), ("position", n(42.0))])
                ),
            ]
        );
    }

    #[test]
    fn a_payment_moves_the_booking_and_is_a_fact_with_its_amount() {
        assert_eq!(
            ops(&reduce_elastic(&paid("b1", 500.0, 43))),
            vec![
                Op::Update("booking:b1".into(), doc(&[("last_position", n(43.0))])),
                Op::Index(
                    "event:e-43".into(),
                    doc(&[
                        ("kind", s("payment")),
                        ("booking_id", s("b1")),
                        ("guest_id", s("g1")),
                        ("position", n(43.0)),
                        ("amount_cents", n(500.0)),
                    ])
                ),
            ]
        );
    }

    #[test]
    fn status_events_merge_the_status_and_a_cancellation_is_a_fact() {
        for (event_type, status) in [("GuestCheckedIn", "checked_in"), ("GuestCheckedOut", "checked_out")] {
            assert_eq!(
                ops(&reduce_elastic(&with_booking(event_type, "b1", 44))),
                vec![Op::Update("booking:b1".into(), doc(&[("status", s(status)), ("last_position", n(44.0))]))],
                "{event_type}"
            );
        }
        assert_eq!(
            ops(&reduce_elastic(&with_booking("BookingCancelled", "b1", 45))),
            vec![
                Op::Update("booking:b1".into(), doc(&[("status", s("cancelled")), ("last_position", n(45.0))])),
                Op::Index(
                    "event:e-45".into(),
                    doc(&[("kind", s("cancellation")), ("booking_id", s("b1")), ("guest_id", s("g1")), ("position", n(45.0))])
                ),
            ]
        );
    }

    #[test]
    fn unknown_types_are_ignored_and_bad_payloads_are_non_retryable_errors() {
        assert_eq!(ops(&reduce_elastic(&with_booking("GuestRegistered", "b1", 1))), vec![Op::Ignore]);
        for bad in [
            request("PaymentRecorded", 2, &[("bookingId", s("b1")), ("guestId", s("g1"))]),
            booked("b1", "r1", 99.5, 3),
            request("BookingCancelled", 4, &[("bookingId", n(7.0)), ("guestId", s("g1"))]),
        ] {
            let r = reduce_elastic(&bad);
            let error = r.error.as_ref().unwrap_or_else(|| panic!("{} must be refused", bad.event_type));
            assert!(!error.retryable && r.operation.is_none() && r.operations.is_empty(), "{r:?}");
            assert_eq!(r.event_id, bad.event_id);
        }
        assert_eq!(Target::parse("elastic"), Ok(Target::Elastic));
    }

    /// Applies Index (create or replace) and Update (merge into an existing document) as the
    /// engine does, then computes the SQL model's rows with what are aggregations there.
    #[derive(Default, PartialEq, Debug)]
    struct Engine(BTreeMap<String, Struct>);

    impl Engine {
        fn apply(&mut self, request: &ProjectionRequest) {
            for op in ops(&reduce_elastic(request)) {
                match op {
                    Op::Index(id, document) => {
                        self.0.insert(id, document);
                    }
                    Op::Update(id, document) => {
                        let existing = self.0.get_mut(&id).unwrap_or_else(|| panic!("Update of {id}, which does not exist"));
                        existing.fields.extend(document.fields);
                    }
                    Op::Ignore => {}
                }
            }
        }

        fn field(&self, id: &str, name: &str) -> Kind {
            self.0[id].fields[name].kind.clone().unwrap()
        }

        /// (bookings, cancellations, payments, paid cents) of guest g1, and b1's paid cents.
        fn sums(&self) -> ((u32, u32, u32, f64), f64) {
            let (mut guest, mut b1_paid) = ((0, 0, 0, 0.0), 0.0);
            for document in self.0.values() {
                let get = |name: &str| document.fields.get(name).and_then(|v| v.kind.clone());
                match get("kind") {
                    Some(Kind::StringValue(kind)) if kind == "booked" => guest.0 += 1,
                    Some(Kind::StringValue(kind)) if kind == "cancellation" => guest.1 += 1,
                    Some(Kind::StringValue(kind)) if kind == "payment" => {
                        let Some(Kind::NumberValue(amount)) = get("amount_cents") else { panic!("{document:?}") };
                        guest.2 += 1;
                        guest.3 += amount;
                        if get("booking_id") == Some(s("b1")) {
                            b1_paid += amount;
                        }
                    }
                    _ => {}
                }
            }
            (guest, b1_paid)
        }
    }

    #[test]
    fn applied_in_order_the_documents_hold_the_sql_model_and_a_replay_changes_nothing() {
        let events = [
            booked("b1", "r1", 36000.0, 1),
            with_booking("GuestRegistered", "b1", 2),
            paid("b1", 20000.0, 3),
            booked("b1", "r2", 40000.0, 4),
            paid("b1", 16000.0, 5),
            with_booking("GuestCheckedIn", "b1", 6),
            booked("b2", "r3", 9000.0, 7),
            with_booking("BookingCancelled", "b2", 8),
        ];
        let mut once = Engine::default();
        events.iter().for_each(|e| once.apply(e));
        // The SQL model: b1 re-booked in room r2 keeps what was paid, and is checked in.
        assert_eq!(once.field("booking:b1", "room_id"), s("r2"));
        assert_eq!(once.field("booking:b1", "price_cents"), n(40000.0));
        assert_eq!(once.field("booking:b1", "status"), s("checked_in"));
        assert_eq!(once.field("booking:b1", "last_position"), n(6.0));
        assert_eq!(once.field("booking:b2", "status"), s("cancelled"));
        assert_eq!(once.sums(), ((3, 1, 2, 36000.0), 36000.0));
        // Every event delivered twice (the gateway's at-least-once replay): the same documents.
        let mut twice = Engine::default();
        events.iter().for_each(|e| {
            twice.apply(e);
            twice.apply(e);
        });
        assert_eq!(twice, once);
    }

    #[test]
    fn describe_declares_the_projection_and_no_reset() {
        let d = elastic_description();
        assert_eq!((d.projection.as_str(), d.version.as_str()), ("bookings", crate::PROJECTION_VERSION));
        assert_eq!(d.event_types, crate::HANDLED_EVENT_TYPES.map(String::from).to_vec());
        assert!(d.reset_operations.is_empty());
    }
}
