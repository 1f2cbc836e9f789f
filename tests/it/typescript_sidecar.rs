//! The TypeScript example sidecar (`sidecar-examples/typescript`) end to end, as an operator
//! runs it: the gateway process projects a SQLite event log through the Node.js reducer into a
//! SQLite target, catches up, follows live appends, survives the sidecar being stopped and
//! replaced, and the read model equals the reference computed straight from the log (the guest
//! counters would show any event applied twice). Also: the raw JSON payload, a rebuild
//! through the reducer's `Describe` reset operations, and with `REDUCER_TARGET=mongo` exactly
//! the Rust reference's MongoDB operations and the same read model built in MongoDB
//! (SecantusDB); with `REDUCER_TARGET=elastic`, the Rust reference's Elasticsearch operations
//! and exactly the reference's documents in Elasticsearch. The reducer's own unit tests
//! (`node --test`) run here too, so `cargo test` exercises them.
//!
//! `scripts/typescript-sidecar.sh` installs, generates and builds (once per test binary) and
//! names the launcher this file starts.

use std::time::Duration;

use crate::support::{
    bookings_model::ReadModel,
    example_sidecars::{self, LogsOnFailure, TYPESCRIPT},
    fixtures::*,
};

const WAIT: Duration = Duration::from_secs(180);

fn everything(_: &str, _: &str) -> bool {
    true
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_projects_through_the_typescript_reducer_then_follows_live_appends() {
    example_sidecars::catch_up_live_and_sidecar_restart(&TYPESCRIPT, 61).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_typescript_reducer_reads_the_raw_json_payload_too() {
    example_sidecars::reads_the_raw_json_payload(&TYPESCRIPT, 64).await;
}

/// The reducer serves Describe: the gateway records its version, and when the recorded one
/// differs (and the connector asks for it) rebuilds with the reducer's reset operations.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_version_rebuilds_the_read_model_with_the_typescript_reset_operations() {
    let ws = Workspace::new();
    let head = ws.log_with_events(2_000, 200, 65).head().unwrap();
    let sidecar = TYPESCRIPT.spawn("127.0.0.1:0", ws.dir.path(), "sidecar");
    let _logs = LogsOnFailure(vec![sidecar.stderr_path.clone()]);
    let target = ws.target_path();
    let yaml = connector_yaml(
        &ws.log_path(),
        sidecar.address.as_deref().expect("sidecar address"),
        &sqlite_sink_yaml(&target),
        &Setup::default(),
    )
    .replacen("      window:", "      rebuild_on_new_version: true\n      window:", 1);
    let project = || async {
        let mut running = Running::start(parse_connector(&yaml)).await;
        running.wait_for(head, WAIT).await;
        running.stop().await.expect("clean stop");
    };

    project().await;
    assert_eq!(example_sidecars::recorded_projection(&target), Some(("bookings".into(), "1".into())));
    // As if an older version of the reducer had built the read model.
    rusqlite::Connection::open(&target).unwrap().execute("UPDATE projections SET version = '0'", []).unwrap();
    project().await;
    // The version was recorded again, so the gateway took the rebuild path: it deleted the
    // checkpoints and projected everything again. The guest counters would be doubled had the
    // reset operations not cleared the tables.
    assert_eq!(example_sidecars::recorded_projection(&target), Some(("bookings".into(), "1".into())));
    ReadModel::from_sqlite(&target).assert_same(&ReadModel::from_log(&ws.log_path(), everything));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_typescript_reducer_emits_the_reference_mongo_operations() {
    example_sidecars::emits_the_reference_mongo_operations(&TYPESCRIPT, 66).await;
}

#[cfg(feature = "mongo")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_projects_through_the_typescript_reducer_into_mongodb() {
    example_sidecars::mongo_catch_up_and_live(&TYPESCRIPT, 67).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_typescript_reducer_emits_the_reference_elastic_operations() {
    example_sidecars::emits_the_reference_elastic_operations(&TYPESCRIPT, 68).await;
}

#[cfg(feature = "elastic")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_projects_through_the_typescript_reducer_into_elasticsearch() {
    example_sidecars::elastic_catch_up_and_live(&TYPESCRIPT, 69).await;
}

#[test]
fn the_typescript_reducer_unit_tests_pass() {
    let out = TYPESCRIPT.run_script(&["--test"]);
    let report = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "the TypeScript unit tests failed ({}):\n{report}", out.status);
    // node --test succeeds with zero tests too: make sure it ran some and none failed. Its
    // summary reads `# pass 22` (TAP, when piped) or `ℹ pass 22` (spec, on a terminal).
    let count = |key: &str| {
        report.lines().find_map(|line| {
            let rest = line.strip_prefix("# ").or_else(|| line.strip_prefix("ℹ "))?;
            rest.strip_prefix(key)?.trim().parse::<u32>().ok()
        })
    };
    assert!(count("pass ").is_some_and(|n| n > 0) && count("fail ") == Some(0), "{report}");
}
