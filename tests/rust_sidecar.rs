//! The Rust example sidecar (`sidecar-examples/rust`, the reference reducer) as its own process,
//! built by `scripts/rust-sidecar.sh`, with `REDUCER_TARGET=mongo`: the gateway process projects
//! a SQLite event log through it into MongoDB (SecantusDB), catches up, follows live appends,
//! and the documents equal the reference read model computed straight from the log; killed
//! with SIGKILL mid-catch-up and started again, the gateway applies nothing twice (the guest
//! counters would show it). Its SQL read model is covered by the tests that serve it in-process
//! (`tests/sqlite_pipeline.rs`, `tests/crash_recovery.rs`, ...), and its unit tests by
//! `cargo test -p bookings-reducer`.

#![cfg(feature = "mongo")]

mod support;

use support::example_sidecars::{self, RUST};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_projects_through_the_rust_reducer_into_mongodb() {
    example_sidecars::mongo_catch_up_and_live(&RUST, 71).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_killed_with_sigkill_resumes_the_rust_reducer_s_mongodb_read_model_exactly_once() {
    example_sidecars::mongo_gateway_killed_mid_catch_up_resumes_exactly_once(&RUST, 72).await;
}
