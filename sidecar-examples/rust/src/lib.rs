//! An example reducer sidecar for projector-gateway, in Rust with tonic: the hotel-bookings
//! read model of `sidecar-examples/BOOKINGS.md`.
//!
//! A reducer is a pure function from one event to the operations that update the read model.
//! This crate keeps that function ([`reduce`]) apart from the gRPC plumbing ([`BookingsReducer`],
//! [`serve`]) so it can be unit-tested and reused; the gateway's `demo` command runs it
//! in-process over a real loopback gRPC connection.
//!
//! Three targets, chosen by the process with `REDUCER_TARGET` (see `main.rs`): `sql` (the
//! default, [`reduce`]: typed SQL statements for the SQLite and PostgreSQL sinks), `mongo`
//! ([`reduce_mongo`]: MongoDB upserts for the MongoDB sink) and `elastic` ([`reduce_elastic`]
//! in `elastic.rs`: document operations for the Elasticsearch/OpenSearch sink).

#![allow(clippy::result_large_err)] // tonic::Status is large by design; every gRPC service returns it.

use std::{future::Future, pin::Pin};

use prost::Message;
use prost_types::{Any, Struct, value::Kind};
use tokio::net::TcpListener;
use tokio_stream::{Stream, StreamExt, wrappers::TcpListenerStream};
use tonic::{Request, Response, Status, Streaming};

mod elastic;

pub use elastic::{elastic_description, reduce_elastic};

/// The generated contract (from the gateway's `proto/projection.proto`).
pub mod proto {
    #![allow(clippy::all)]
    tonic::include_proto!("projection");
}

use proto::{
    Ignore, UpdateOne, ProjectionRequest, ProjectionResponse, ReducerError, SqlValue, Statement,
    DescribeRequest, DescribeResponse,
    projection_info_server::{ProjectionInfo, ProjectionInfoServer},
    projection_server::{Projection, ProjectionServer},
    sql_value::Kind as Param,
};

/// The read model's tables; give it to the sink as `init_sql`.
pub const SCHEMA_SQL: &str = include_str!("../../bookings-schema.sql");

const UPSERT_BOOKING: &str = "INSERT INTO bookings (booking_id, guest_id, room_id, check_in, check_out, price_cents, paid_cents, status, last_position) VALUES ($1, $2, $3, $4, $5, $6, 0, 'booked', $7) ON CONFLICT (booking_id) DO UPDATE SET guest_id = excluded.guest_id, room_id = excluded.room_id, check_in = excluded.check_in, check_out = excluded.check_out, price_cents = excluded.price_cents, status = 'booked', last_position = excluded.last_position";
const COUNT_BOOKING: &str = "INSERT INTO guest_stats (guest_id, bookings) VALUES ($1, 1) ON CONFLICT (guest_id) DO UPDATE SET bookings = guest_stats.bookings + 1";
const ADD_PAYMENT: &str = "UPDATE bookings SET paid_cents = paid_cents + $2, last_position = $3 WHERE booking_id = $1";
const COUNT_PAYMENT: &str = "INSERT INTO guest_stats (guest_id, payments, paid_cents) VALUES ($1, 1, $2) ON CONFLICT (guest_id) DO UPDATE SET payments = guest_stats.payments + 1, paid_cents = guest_stats.paid_cents + excluded.paid_cents";
const CHECK_IN: &str = "UPDATE bookings SET status = 'checked_in', last_position = $2 WHERE booking_id = $1";
const CHECK_OUT: &str = "UPDATE bookings SET status = 'checked_out', last_position = $2 WHERE booking_id = $1";
const CANCEL: &str = "UPDATE bookings SET status = 'cancelled', last_position = $2 WHERE booking_id = $1";
const COUNT_CANCELLATION: &str = "INSERT INTO guest_stats (guest_id, cancellations) VALUES ($1, 1) ON CONFLICT (guest_id) DO UPDATE SET cancellations = guest_stats.cancellations + 1";

/// Reduces one event to its response.
pub fn reduce(request: &ProjectionRequest) -> ProjectionResponse {
    let payload = Payload { fields: request.event_payload.as_ref(), request };
    let statements = match statements(request, &payload) {
        Ok(statements) => statements,
        Err(message) => {
            return ProjectionResponse {
                event_id: request.event_id.clone(),
                error: Some(ReducerError { message, retryable: false }),
                ..Default::default()
            };
        }
    };
    let mut operations = statements.into_iter().map(|s| pack("projection.Statement", &s));
    let operation = operations.next().unwrap_or_else(|| pack("projection.Ignore", &Ignore {}));
    ProjectionResponse {
        event_id: request.event_id.clone(),
        operation: Some(operation),
        operations: operations.collect(),
        ..Default::default()
    }
}

fn statements(request: &ProjectionRequest, p: &Payload) -> Result<Vec<Statement>, String> {
    let pos = int(request.global_position as i64);
    Ok(match request.event_type.as_str() {
        "RoomBooked" => vec![
            statement(
                UPSERT_BOOKING,
                vec![
                    p.text("bookingId")?,
                    p.text("guestId")?,
                    p.text("roomId")?,
                    p.text("checkIn")?,
                    p.text("checkOut")?,
                    p.int("priceCents")?,
                    pos,
                ],
            ),
            statement(COUNT_BOOKING, vec![p.text("guestId")?]),
        ],
        "PaymentRecorded" => vec![
            statement(ADD_PAYMENT, vec![p.text("bookingId")?, p.int("amountCents")?, pos]),
            statement(COUNT_PAYMENT, vec![p.text("guestId")?, p.int("amountCents")?]),
        ],
        "GuestCheckedIn" => vec![statement(CHECK_IN, vec![p.text("bookingId")?, pos])],
        "GuestCheckedOut" => vec![statement(CHECK_OUT, vec![p.text("bookingId")?, pos])],
        "BookingCancelled" => vec![
            statement(CANCEL, vec![p.text("bookingId")?, pos]),
            statement(COUNT_CANCELLATION, vec![p.text("guestId")?]),
        ],
        _ => vec![],
    })
}

/// Which read model the reducer writes.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// SQL statements on the `bookings` and `guest_stats` tables.
    #[default]
    Sql,
    /// MongoDB upserts on the `bookings` and `guest_stats` collections.
    Mongo,
    /// Elasticsearch documents: bookings and the facts their counters are aggregated from.
    Elastic,
}

impl Target {
    /// Parses `REDUCER_TARGET`'s value.
    pub fn parse(name: &str) -> Result<Self, String> {
        match name {
            "sql" => Ok(Target::Sql),
            "mongo" => Ok(Target::Mongo),
            "elastic" => Ok(Target::Elastic),
            other => Err(format!("REDUCER_TARGET={other} is not supported; use `sql`, `mongo` or `elastic`")),
        }
    }

    pub fn reduce(self, request: &ProjectionRequest) -> ProjectionResponse {
        match self {
            Target::Sql => reduce(request),
            Target::Mongo => reduce_mongo(request),
            Target::Elastic => reduce_elastic(request),
        }
    }

    /// What `Describe` answers for this target.
    pub fn description(self) -> DescribeResponse {
        match self {
            Target::Sql => description(),
            Target::Mongo => mongo_description(),
            Target::Elastic => elastic_description(),
        }
    }
}

/// Collections of the MongoDB read model (each operation names its collection).
pub const BOOKINGS_COLLECTION: &str = "bookings";
pub const GUEST_STATS_COLLECTION: &str = "guest_stats";

/// Fields stored as Int64 (a Struct number is a double; see the gateway's `integerFields`).
const INTEGER_FIELDS: [&str; 7] = ["price_cents", "paid_cents", "last_position", "bookings", "cancellations", "payments", "amount_cents"];

/// Reduces one event to MongoDB upserts: `bookings` documents keyed by bookingId (`$set`
/// for the values, `$inc` for paid cents) and `guest_stats` documents keyed by guestId (`$inc`
/// counters; `$inc` by 0 creates a missing counter at 0, like the SQL columns' `DEFAULT 0`).
/// Documents have the SQL model's columns as fields, `_id` in place of the key column.
pub fn reduce_mongo(request: &ProjectionRequest) -> ProjectionResponse {
    let payload = Payload { fields: request.event_payload.as_ref(), request };
    match mongo_updates(request, &payload) {
        Ok(updates) => {
            let mut operations = updates.into_iter().map(|u| pack("projection.UpdateOne", &u));
            let operation = operations.next().unwrap_or_else(|| pack("projection.Ignore", &Ignore {}));
            ProjectionResponse {
                event_id: request.event_id.clone(),
                operation: Some(operation),
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

fn mongo_updates(request: &ProjectionRequest, p: &Payload) -> Result<Vec<UpdateOne>, String> {
    let position = number(request.global_position as f64);
    let booking = |set: Vec<(&str, Kind)>, inc: Vec<(&str, Kind)>| -> Result<UpdateOne, String> {
        Ok(upsert(BOOKINGS_COLLECTION, p.string("bookingId")?, set, inc))
    };
    let guest = |inc: Vec<(&str, Kind)>| -> Result<UpdateOne, String> {
        let mut counters = vec![("bookings", number(0.0)), ("cancellations", number(0.0)), ("payments", number(0.0)), ("paid_cents", number(0.0))];
        for (name, by) in inc {
            counters.retain(|(n, _)| *n != name);
            counters.push((name, by));
        }
        Ok(upsert(GUEST_STATS_COLLECTION, p.string("guestId")?, vec![], counters))
    };
    Ok(match request.event_type.as_str() {
        "RoomBooked" => vec![
            booking(
                vec![
                    ("guest_id", Kind::StringValue(p.string("guestId")?)),
                    ("room_id", Kind::StringValue(p.string("roomId")?)),
                    ("check_in", Kind::StringValue(p.string("checkIn")?)),
                    ("check_out", Kind::StringValue(p.string("checkOut")?)),
                    ("price_cents", number(p.whole("priceCents")?)),
                    ("status", Kind::StringValue("booked".into())),
                    ("last_position", position.clone()),
                ],
                vec![("paid_cents", number(0.0))],
            )?,
            guest(vec![("bookings", number(1.0))])?,
        ],
        "PaymentRecorded" => {
            let amount = p.whole("amountCents")?;
            vec![
                booking(vec![("last_position", position)], vec![("paid_cents", number(amount))])?,
                guest(vec![("payments", number(1.0)), ("paid_cents", number(amount))])?,
            ]
        }
        "GuestCheckedIn" => vec![booking(vec![("status", Kind::StringValue("checked_in".into())), ("last_position", position)], vec![])?],
        "GuestCheckedOut" => vec![booking(vec![("status", Kind::StringValue("checked_out".into())), ("last_position", position)], vec![])?],
        "BookingCancelled" => vec![
            booking(vec![("status", Kind::StringValue("cancelled".into())), ("last_position", position)], vec![])?,
            guest(vec![("cancellations", number(1.0))])?,
        ],
        _ => vec![],
    })
}

fn number(n: f64) -> Kind {
    Kind::NumberValue(n)
}

fn object(fields: Vec<(&str, Kind)>) -> Struct {
    Struct { fields: fields.into_iter().map(|(k, v)| (k.to_string(), prost_types::Value { kind: Some(v) })).collect() }
}

/// An UpdateOne (an upsert in the gateway) of the document `_id: id` in `collection`.
fn upsert(collection: &str, id: String, set: Vec<(&str, Kind)>, inc: Vec<(&str, Kind)>) -> UpdateOne {
    let mut update = Vec::new();
    if !set.is_empty() {
        update.push(("$set", Kind::StructValue(object(set))));
    }
    if !inc.is_empty() {
        update.push(("$inc", Kind::StructValue(object(inc))));
    }
    UpdateOne {
        filter: Some(object(vec![("_id", Kind::StringValue(id))])),
        update: Some(object(update)),
        collection: collection.into(),
        pipeline: vec![],
        integer_fields: INTEGER_FIELDS.iter().map(|f| f.to_string()).collect(),
    }
}

struct Payload<'a> {
    fields: Option<&'a Struct>,
    request: &'a ProjectionRequest,
}

impl Payload<'_> {
    fn field(&self, name: &str) -> Result<&Kind, String> {
        self.fields
            .and_then(|s| s.fields.get(name))
            .and_then(|v| v.kind.as_ref())
            .ok_or_else(|| {
                format!(
                    "event {} ({}) has no `{name}` in its payload",
                    self.request.event_id, self.request.event_type
                )
            })
    }

    fn string(&self, name: &str) -> Result<String, String> {
        match self.field(name)? {
            Kind::StringValue(s) => Ok(s.clone()),
            other => Err(format!("`{name}` of event {} must be a string, not {other:?}", self.request.event_id)),
        }
    }

    fn whole(&self, name: &str) -> Result<f64, String> {
        match self.field(name)? {
            Kind::NumberValue(n) if n.fract() == 0.0 => Ok(*n),
            other => Err(format!("`{name}` of event {} must be a whole number, not {other:?}", self.request.event_id)),
        }
    }

    fn text(&self, name: &str) -> Result<SqlValue, String> {
        match self.field(name)? {
            Kind::StringValue(s) => Ok(SqlValue { kind: Some(Param::StringValue(s.clone())) }),
            other => Err(format!("`{name}` of event {} must be a string, not {other:?}", self.request.event_id)),
        }
    }

    fn int(&self, name: &str) -> Result<SqlValue, String> {
        match self.field(name)? {
            Kind::NumberValue(n) if n.fract() == 0.0 => Ok(int(*n as i64)),
            other => Err(format!("`{name}` of event {} must be a whole number, not {other:?}", self.request.event_id)),
        }
    }
}

fn int(i: i64) -> SqlValue {
    SqlValue { kind: Some(Param::Int64Value(i)) }
}

fn statement(sql: &str, params: Vec<SqlValue>) -> Statement {
    Statement { sql: sql.to_string(), params }
}

fn pack<M: Message>(name: &str, message: &M) -> Any {
    Any { type_url: format!("type.googleapis.com/{name}"), value: message.encode_to_vec() }
}

/// The gRPC service: answers each request of a stream, in order, with [`reduce`] (or
/// [`reduce_mongo`] for [`Target::Mongo`], [`reduce_elastic`] for [`Target::Elastic`]).
#[derive(Debug, Default, Clone, Copy)]
pub struct BookingsReducer {
    pub target: Target,
}

type ResponseStream = Pin<Box<dyn Stream<Item = Result<ProjectionResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Projection for BookingsReducer {
    type ProjectStream = ResponseStream;

    async fn project(
        &self,
        request: Request<Streaming<ProjectionRequest>>,
    ) -> Result<Response<Self::ProjectStream>, Status> {
        let target = self.target;
        let responses = request.into_inner().map(move |r| r.map(|request| target.reduce(&request)));
        Ok(Response::new(Box::pin(responses)))
    }
}

/// The event types [`reduce`] handles; every other type is answered with `Ignore`.
pub const HANDLED_EVENT_TYPES: [&str; 5] = ["RoomBooked", "PaymentRecorded", "GuestCheckedIn", "GuestCheckedOut", "BookingCancelled"];

/// The version of the read model's logic; change it when `reduce` changes what it writes, and
/// a gateway configured with `rebuild_on_new_version` rebuilds the read model.
pub const PROJECTION_VERSION: &str = "1";

/// What `Describe` answers: the handled types (the gateway then sends only those), the
/// projection's name and version, and how to clear the read model for a rebuild.
pub fn description() -> DescribeResponse {
    let clear = |table: &str| pack("projection.Statement", &statement(&format!("DELETE FROM {table}"), vec![]));
    DescribeResponse {
        projection: "bookings".into(),
        version: PROJECTION_VERSION.into(),
        event_types: HANDLED_EVENT_TYPES.iter().map(|t| t.to_string()).collect(),
        reset_operations: vec![clear("bookings"), clear("guest_stats")],
    }
}

#[tonic::async_trait]
impl ProjectionInfo for BookingsReducer {
    async fn describe(&self, _: Request<DescribeRequest>) -> Result<Response<DescribeResponse>, Status> {
        Ok(Response::new(self.target.description()))
    }
}

/// [`description`] for the MongoDB read model: its reset empties both collections.
pub fn mongo_description() -> DescribeResponse {
    let clear = |collection: &str| {
        pack(
            "projection.DeleteMany",
            &proto::DeleteMany { filter: Some(Struct::default()), collection: collection.into(), integer_fields: vec![] },
        )
    };
    DescribeResponse {
        reset_operations: vec![clear(BOOKINGS_COLLECTION), clear(GUEST_STATS_COLLECTION)],
        ..description()
    }
}

/// Serves the SQL reducer on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), tonic::transport::Error> {
    serve_target(listener, Target::Sql, shutdown).await
}

/// Serves the reducer for `target` on `listener` until `shutdown` completes.
pub async fn serve_target(
    listener: TcpListener,
    target: Target,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), tonic::transport::Error> {
    let reducer = BookingsReducer { target };
    tonic::transport::Server::builder()
        .tcp_nodelay(true)
        .initial_stream_window_size(Some(4 << 20))
        .initial_connection_window_size(Some(16 << 20))
        .add_service(ProjectionServer::new(reducer))
        .add_service(ProjectionInfoServer::new(reducer))
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost_types::Value;

    fn request(event_type: &str, fields: &[(&str, Kind)]) -> ProjectionRequest {
        ProjectionRequest {
            event_type: event_type.into(),
            event_id: "e-1".into(),
            stream: "booking-1".into(),
            event_payload: Some(Struct {
                fields: fields.iter().map(|(k, v)| (k.to_string(), Value { kind: Some(v.clone()) })).collect(),
            }),
            global_position: 42,
            ..Default::default()
        }
    }

    /// A RoomBooked of booking b1 by guest g1, 250.00.
    fn room_booked() -> ProjectionRequest {
        request(
            "RoomBooked",
            &[
                ("bookingId", Kind::StringValue("b1".into())),
                ("guestId", Kind::StringValue("g1".into())),
                ("roomId", Kind::StringValue("r1".into())),
                ("checkIn", Kind::StringValue("2026-01-01".into())),
                ("checkOut", Kind::StringValue("2026-01-03".into())),
                ("priceCents", Kind::NumberValue(25000.0)),
            ],
        )
    }

    fn decode(any: &Any) -> Statement {
        Statement::decode(any.value.as_slice()).unwrap()
    }

    #[test]
    fn room_booked_upserts_the_booking_and_counts_it() {
        let r = reduce(&room_booked());
        assert_eq!(r.event_id, "e-1");
        let first = decode(r.operation.as_ref().unwrap());
        assert_eq!(first.sql, UPSERT_BOOKING);
        assert_eq!(first.params[5].kind, Some(Param::Int64Value(25000)));
        assert_eq!(first.params[6].kind, Some(Param::Int64Value(42)));
        assert_eq!(r.operations.len(), 1);
        assert_eq!(decode(&r.operations[0]).sql, COUNT_BOOKING);
    }

    fn update(any: &Any) -> UpdateOne {
        assert_eq!(any.type_url, "type.googleapis.com/projection.UpdateOne");
        UpdateOne::decode(any.value.as_slice()).unwrap()
    }

    fn field<'a>(s: &'a Struct, path: &[&str]) -> &'a Kind {
        let (last, parents) = path.split_last().unwrap();
        let mut s = s;
        for p in parents {
            let Some(Kind::StructValue(inner)) = &s.fields[*p].kind else { panic!("{p} is not a struct") };
            s = inner;
        }
        s.fields[*last].kind.as_ref().unwrap()
    }

    #[test]
    fn mongo_room_booked_upserts_the_booking_and_counts_it_in_two_collections() {
        let r = Target::Mongo.reduce(&room_booked());
        let booking = update(r.operation.as_ref().unwrap());
        assert_eq!(booking.collection, BOOKINGS_COLLECTION);
        assert_eq!(field(booking.filter.as_ref().unwrap(), &["_id"]), &Kind::StringValue("b1".into()));
        let u = booking.update.as_ref().unwrap();
        assert_eq!(field(u, &["$set", "price_cents"]), &Kind::NumberValue(25000.0));
        assert_eq!(field(u, &["$set", "last_position"]), &Kind::NumberValue(42.0));
        assert_eq!(field(u, &["$set", "status"]), &Kind::StringValue("booked".into()));
        assert_eq!(field(u, &["$inc", "paid_cents"]), &Kind::NumberValue(0.0));
        assert!(booking.integer_fields.contains(&"price_cents".to_string()));
        assert_eq!(r.operations.len(), 1);
        let guest = update(&r.operations[0]);
        assert_eq!(guest.collection, GUEST_STATS_COLLECTION);
        assert_eq!(field(guest.filter.as_ref().unwrap(), &["_id"]), &Kind::StringValue("g1".into()));
        let u = guest.update.as_ref().unwrap();
        assert_eq!(field(u, &["$inc", "bookings"]), &Kind::NumberValue(1.0));
        assert_eq!(field(u, &["$inc", "payments"]), &Kind::NumberValue(0.0));
    }

    #[test]
    fn mongo_payments_increment_and_other_events_set_the_status() {
        let r = Target::Mongo.reduce(&request(
            "PaymentRecorded",
            &[
                ("bookingId", Kind::StringValue("b1".into())),
                ("guestId", Kind::StringValue("g1".into())),
                ("amountCents", Kind::NumberValue(500.0)),
            ],
        ));
        let booking = update(r.operation.as_ref().unwrap());
        assert_eq!(field(booking.update.as_ref().unwrap(), &["$inc", "paid_cents"]), &Kind::NumberValue(500.0));
        let guest = update(&r.operations[0]);
        assert_eq!(field(guest.update.as_ref().unwrap(), &["$inc", "paid_cents"]), &Kind::NumberValue(500.0));
        assert_eq!(field(guest.update.as_ref().unwrap(), &["$inc", "payments"]), &Kind::NumberValue(1.0));
        let r = Target::Mongo.reduce(&request("GuestCheckedIn", &[("bookingId", Kind::StringValue("b1".into()))]));
        let checked_in = update(r.operation.as_ref().unwrap());
        assert_eq!(field(checked_in.update.as_ref().unwrap(), &["$set", "status"]), &Kind::StringValue("checked_in".into()));
        assert!(r.operations.is_empty());
        let r = Target::Mongo.reduce(&request("GuestRegistered", &[]));
        assert!(r.operation.unwrap().type_url.ends_with("projection.Ignore"));
        let r = Target::Mongo.reduce(&request("PaymentRecorded", &[("bookingId", Kind::StringValue("b".into()))]));
        assert!(r.error.is_some() && r.operation.is_none());
        assert_eq!(Target::parse("mongo"), Ok(Target::Mongo));
        assert!(Target::parse("es").is_err());
    }

    #[test]
    fn unknown_events_are_ignored_and_bad_payloads_reported() {
        let r = reduce(&request("GuestRegistered", &[]));
        assert!(r.operation.unwrap().type_url.ends_with("projection.Ignore"));
        let r = reduce(&request("PaymentRecorded", &[("bookingId", Kind::StringValue("b".into()))]));
        let error = r.error.unwrap();
        assert!(error.message.contains("no `guestId`") || error.message.contains("no `amountCents`"), "{}", error.message);
        assert!(r.operation.is_none());
    }
}
