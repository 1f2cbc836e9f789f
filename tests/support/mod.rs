//! Shared test support: sidecars (the real example reducers and scripted misbehaving ones),
//! the reference read model computed straight from the event log, and fixtures for logs,
//! configs and waiting with deadlines. Each test binary includes this with `mod support;`
//! and uses what it needs.
#![allow(dead_code)]

pub mod bookings_model;
pub mod chaos;
#[cfg(feature = "elastic")]
pub mod elastic;
#[cfg(feature = "elastic")]
pub mod elastic_bookings;
pub mod example_sidecars;
pub mod fixtures;
pub mod http;
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
