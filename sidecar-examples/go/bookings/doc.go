// Package bookings is the reducer of the hotel-bookings read model
// (sidecar-examples/BOOKINGS.md): a pure function from one event the gateway sends to the
// operations that update the read model.
//
// It exists apart from the gRPC plumbing (package server) because a reducer must be
// stateless and deterministic: the gateway may send the same event again after a reconnect,
// and applies what the reducer returns atomically with its checkpoint, so the response may
// depend on the request only. Keeping it a plain function of the request makes that easy to
// see and lets it be unit-tested without a network.
//
// Reduce works in two steps. Decode turns a request into a typed domain event (RoomBooked,
// PaymentRecorded, ...), validating the payload once; then the chosen Target turns the event
// into operations: SQL statements or MongoDB upserts (both applied by the gateway's sinks), or
// the Elasticsearch operations of the proto.
package bookings
