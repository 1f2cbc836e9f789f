//! The Java example sidecar (`sidecar-examples/java`) end to end, as an operator runs it: the
//! gateway process projects a SQLite event log through the sidecar's shaded jar into a SQLite
//! target, catches up, follows live appends, survives the sidecar being stopped and started
//! again, and the read model equals the reference computed straight from the log (the guest
//! counters would show any event applied twice); the gateway records what the sidecar's
//! Describe declared. With `REDUCER_TARGET=mongo` it answers exactly the Rust reference's
//! MongoDB operations, and the gateway process builds the same read model in MongoDB
//! (SecantusDB); with `REDUCER_TARGET=elastic`, the Rust reference's Elasticsearch operations
//! and exactly the reference's documents in Elasticsearch. The sidecar's JUnit tests run here
//! too, so `cargo test` exercises them.
//!
//! The jar and its launcher come from `scripts/java-sidecar.sh` (once per test binary; the
//! script itself skips the build when nothing changed). A cold first run downloads the
//! dependencies and protoc from Maven Central, which takes a minute or two.

use crate::support::example_sidecars::{self, JAVA};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_projects_through_the_java_reducer_then_follows_live_appends() {
    let ws = example_sidecars::catch_up_live_and_sidecar_restart(&JAVA, 41).await;
    // The gateway asked the sidecar to Describe itself and recorded the answer.
    assert_eq!(example_sidecars::recorded_projection(&ws.target_path()), Some(("bookings".into(), "1".into())));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_java_reducer_reads_the_raw_json_payload_too() {
    example_sidecars::reads_the_raw_json_payload(&JAVA, 44).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_java_reducer_emits_the_reference_mongo_operations() {
    example_sidecars::emits_the_reference_mongo_operations(&JAVA, 45).await;
}

#[cfg(feature = "mongo")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_projects_through_the_java_reducer_into_mongodb() {
    example_sidecars::mongo_catch_up_and_live(&JAVA, 46).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_java_reducer_emits_the_reference_elastic_operations() {
    example_sidecars::emits_the_reference_elastic_operations(&JAVA, 47).await;
}

#[cfg(feature = "elastic")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_projects_through_the_java_reducer_into_elasticsearch() {
    example_sidecars::elastic_catch_up_and_live(&JAVA, 48).await;
}

#[test]
fn the_java_reducer_refuses_an_unknown_target_with_exit_code_2() {
    example_sidecars::refuses_an_unknown_target(&JAVA);
}

#[test]
fn the_java_reducer_unit_tests_pass() {
    let out = JAVA.run_script(&["--test"]);
    let report = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "scripts/java-sidecar.sh --test failed ({}):\n{report}", out.status);
    // Surefire's summary: make sure tests ran, and none failed.
    let summary = report
        .lines()
        .filter_map(|line| line.strip_prefix("[INFO] Tests run: "))
        .find(|rest| !rest.contains(" -- in "))
        .unwrap_or_else(|| panic!("no Surefire summary in the output:\n{report}"));
    let ran: u32 = summary.split(',').next().and_then(|n| n.trim().parse().ok()).expect("a test count");
    assert!(ran > 0 && summary.contains("Failures: 0, Errors: 0"), "{summary}\n{report}");
}
