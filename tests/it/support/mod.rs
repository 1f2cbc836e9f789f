//! Shared test support: sidecars (the real example reducers and scripted misbehaving ones),
//! the reference read model computed straight from the event log, and fixtures for logs,
//! configs and waiting with deadlines. The one test binary (`main.rs`) compiles it once; each
//! area's module uses what it needs (some of it only under the features that area needs).
#![allow(dead_code)]

pub mod bookings_model;
pub mod chaos;
pub mod claims;
#[cfg(feature = "elastic")]
pub mod elastic;
#[cfg(feature = "elastic")]
pub mod elastic_bookings;
pub mod example_sidecars;
pub mod fixtures;
pub mod http;
#[cfg(feature = "kurrentdb")]
pub mod kurrentdb;
// Beside the server rather than in it: the KurrentDB benchmark includes the server alone.
#[cfg(feature = "kurrentdb")]
#[path = "kurrentdb/log.rs"]
pub mod kurrentdb_log;
#[cfg(feature = "mongo")]
pub mod mongo;
#[cfg(feature = "otlp")]
pub mod otlp;
#[cfg(feature = "mssql")]
pub mod tds;
pub mod postgres;
pub mod processes;
#[cfg(feature = "redis")] pub mod redis;
pub mod sidecars;
pub mod tls;
