//! The integration tests: one binary, one module per area, so the shared support (servers,
//! fixtures, the reference read model, the test doubles) is compiled once. `cargo test --test it
//! <module>::` runs one area, e.g. `cargo test --test it postgres_sink::`. A module whose
//! components are behind cargo features is compiled with them only.

mod support;

mod bad_input;
#[cfg(all(feature = "sqlite", feature = "postgres"))]
mod blue_green;
mod chaos;
mod checkpoint_fence;
mod cli;
mod console_sink;
mod crash_recovery;
mod describe;
#[cfg(all(feature = "sqlite", feature = "postgres"))]
mod dry_run;
#[cfg(feature = "elastic")]
mod elastic_sink;
mod eventuous_compat;
#[cfg(all(feature = "sqlite", feature = "postgres", feature = "mssql", feature = "mongo", feature = "elastic"))]
mod eventuous_migration;
mod eventuous_typescript;
mod fuzz;
mod go_sidecar;
#[cfg(all(feature = "postgres", feature = "sqlite"))]
mod high_availability;
mod hostile_sidecar;
#[cfg(all(feature = "http", feature = "sqlite"))]
mod http_sink;
mod java_sidecar;
#[cfg(feature = "kurrentdb")]
mod kurrentdb_source;
mod management_api;
#[cfg(feature = "mongo")]
mod mongo_sink;
#[cfg(feature = "mssql")]
mod mssql_sink;
#[cfg(feature = "sqlite")]
mod new_sidecar;
mod operations_endpoint;
#[cfg(all(feature = "postgres", feature = "sqlite"))]
mod outages;
#[cfg(any(feature = "mongo", feature = "elastic", feature = "mssql", feature = "redis"))]
mod parked_stores;
#[cfg(all(feature = "postgres", feature = "sqlite"))]
mod parked_events;
#[cfg(all(feature = "postgres", feature = "sqlite"))]
mod partition_claims;
#[cfg(all(feature = "mongo", feature = "sqlite"))]
mod partition_claims_mongo;
#[cfg(feature = "sqlite")]
mod partition_claims_sqlite;
mod postgres_end_to_end;
mod postgres_sink;
mod postgres_source;
#[cfg(all(feature = "postgres", feature = "sqlite"))]
mod postgres_tls;
mod python_sidecar;
#[cfg(feature = "redis")]
mod redis_sink;
#[cfg(all(feature = "sqlite", feature = "postgres"))]
mod rebuild_commands;
mod reset;
mod run_progress;
mod rust_sidecar;
#[cfg(all(feature = "sqlite", feature = "postgres", feature = "http", feature = "redis"))]
mod secrets;
#[cfg(all(feature = "postgres", feature = "sqlite"))]
mod shared_definitions;
#[cfg(feature = "sqlite")]
mod sidecar_replicas;
#[cfg(feature = "sqlite")]
mod sidecar_tls;
mod sqlite_pipeline;
mod stall_memory;
mod stub_packages;
#[cfg(all(feature = "otlp", feature = "sqlite"))]
mod traces;
mod typescript_sidecar;
