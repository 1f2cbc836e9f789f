//! The bookings read model as Elasticsearch documents, as a reducer function for the scripted
//! sidecar of the tests and for the benchmark (which includes this file): the Rust example's
//! `elastic` target (`bookings_reducer::reduce_elastic`, `sidecar-examples/rust/src/elastic.rs`),
//! which emits exactly the operations of the Go, Java and Python examples:
//!
//! - `booking:<bookingId>`: `{kind: "booking", booking_id, guest_id, room_id, check_in,
//!   check_out, price_cents, status, last_position}`, indexed on RoomBooked and merged into by
//!   Update on the other events;
//! - `event:<eventId>`: one fact per counted event (`booked`, `payment` with `amount_cents`,
//!   `cancellation`), indexed under the event's id, so a replay writes the same document again.
//!
//! A booking's `paid_cents` and a guest's counters are sums and counts over the facts
//! (`tests/it/support/elastic.rs`, `Indices::read_model`).

use bookings_reducer::proto::{ProjectionRequest, ProjectionResponse};

/// Reduces one bookings event to Elasticsearch operations: `bookings_reducer::reduce_elastic`.
pub fn reduce_elastic(request: &ProjectionRequest) -> ProjectionResponse {
    bookings_reducer::reduce_elastic(request)
}
