//! The hotel-bookings sample domain: a deterministic generator of realistic event streams,
//! used by the `demo` and `generate` commands, the benchmarks and the tests.

mod generator;

pub use generator::BookingsGenerator;
