//! The Go example sidecar (`sidecar-examples/go`) end to end, as an operator runs it: the
//! gateway process projects a SQLite event log through the sidecar's binary into a SQLite
//! target, catches up, follows live appends, survives the sidecar being stopped and started
//! again, and the read model equals the reference computed straight from the log (the guest
//! counters would show any event applied twice). With `REDUCER_TARGET=mongo` it answers
//! exactly the Rust reference's MongoDB operations, and the gateway process builds the same read
//! model in MongoDB (SecantusDB), also when it is killed with SIGKILL mid-catch-up and started
//! again. With `REDUCER_TARGET=elastic` likewise: the Rust reference's Elasticsearch operations,
//! and exactly the reference's documents in Elasticsearch, also after a SIGKILL and the replay
//! that follows. The sidecar's `go test` suite runs here too, so `cargo test` exercises it.
//!
//! The binary comes from `scripts/go-sidecar.sh` (once per test binary; the script itself
//! skips the build when nothing changed). A cold first run downloads grpc-go and protobuf from
//! the Go module proxy and builds them, which takes about a minute.

use crate::support::example_sidecars::{self, GO};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_projects_through_the_go_reducer_then_follows_live_appends() {
    example_sidecars::catch_up_live_and_sidecar_restart(&GO, 51).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_go_reducer_reads_the_raw_json_payload_too() {
    example_sidecars::reads_the_raw_json_payload(&GO, 54).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_go_reducer_emits_the_reference_mongo_operations() {
    example_sidecars::emits_the_reference_mongo_operations(&GO, 55).await;
}

#[cfg(feature = "mongo")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_projects_through_the_go_reducer_into_mongodb() {
    example_sidecars::mongo_catch_up_and_live(&GO, 56).await;
}

#[cfg(feature = "mongo")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_killed_with_sigkill_resumes_the_go_reducer_s_mongodb_read_model_exactly_once() {
    example_sidecars::mongo_gateway_killed_mid_catch_up_resumes_exactly_once(&GO, 57).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_go_reducer_emits_the_reference_elastic_operations() {
    example_sidecars::emits_the_reference_elastic_operations(&GO, 58).await;
}

#[cfg(feature = "elastic")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_projects_through_the_go_reducer_into_elasticsearch() {
    example_sidecars::elastic_catch_up_and_live(&GO, 59).await;
}

#[cfg(feature = "elastic")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_killed_with_sigkill_replays_into_the_go_reducer_s_elasticsearch_documents_unchanged() {
    example_sidecars::elastic_gateway_killed_mid_catch_up_converges(&GO, 60).await;
}

#[test]
fn the_go_reducer_refuses_an_unknown_target_with_exit_code_2() {
    example_sidecars::refuses_an_unknown_target(&GO);
}

#[test]
fn the_go_reducer_unit_tests_pass() {
    let out = GO.run_script(&["--test"]);
    let report = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "scripts/go-sidecar.sh --test failed ({}):\n{report}", out.status);
    // `go test ./...` prints `ok  <package>` per package whose tests passed: make sure the
    // packages with tests ran them.
    for package in ["projector-gateway/sidecar", "projector-gateway/sidecar/bookings", "projector-gateway/sidecar/server"] {
        assert!(
            report.lines().any(|line| line.starts_with("ok") && line.split_whitespace().nth(1) == Some(package)),
            "no passing tests for {package}:\n{report}"
        );
    }
}
