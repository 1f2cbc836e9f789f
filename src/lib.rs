//! projector-gateway: builds read models from an event log through a reducer sidecar written
//! in any language. See `ARCHITECTURE.md` for the map of the code.

pub mod backoff;
pub mod checkpoint;
pub mod config;
pub mod event;
pub mod filter;
pub mod lease;
pub mod management;
pub mod outage;
pub mod partition;
pub mod payload;
pub mod pipeline;
#[cfg(feature = "postgres")]
pub mod postgres;
pub mod proto;
pub mod reducer;
pub mod run_context;
pub mod shutdown;
pub mod sinks;
pub mod sources;
pub mod status;
pub mod telemetry;
pub mod traces;
pub mod demo;
