//! The Python example sidecar (`sidecar-examples/python`) end to end, as an operator runs it:
//! the gateway process projects a SQLite event log through `reducer.py` into a SQLite target,
//! catches up, follows live appends, and the read model equals the reference computed straight
//! from the log (the guest counters would show any event applied twice). With
//! `REDUCER_TARGET=mongo` it answers exactly the Rust reference's MongoDB operations, and the
//! gateway process builds the same read model in MongoDB (SecantusDB); with
//! `REDUCER_TARGET=elastic`, the Rust reference's Elasticsearch operations and exactly the
//! reference's documents in Elasticsearch. The reducer's own unit tests (`test_reducer.py`) run
//! here too, so `cargo test` exercises them.
//!
//! The venv and the stubs come from `scripts/python-sidecar.sh` (once per test binary).

use std::process::Command;

use crate::support::{example_sidecars::{self, PYTHON}, processes};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_projects_through_the_python_reducer_then_follows_live_appends() {
    example_sidecars::catch_up_live_and_sidecar_restart(&PYTHON, 31).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_reducer_reads_the_raw_json_payload_too() {
    example_sidecars::reads_the_raw_json_payload(&PYTHON, 33).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_reducer_emits_the_reference_mongo_operations() {
    example_sidecars::emits_the_reference_mongo_operations(&PYTHON, 35).await;
}

#[cfg(feature = "mongo")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_projects_through_the_python_reducer_into_mongodb() {
    example_sidecars::mongo_catch_up_and_live(&PYTHON, 36).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_reducer_emits_the_reference_elastic_operations() {
    example_sidecars::emits_the_reference_elastic_operations(&PYTHON, 37).await;
}

#[cfg(feature = "elastic")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_projects_through_the_python_reducer_into_elasticsearch() {
    example_sidecars::elastic_catch_up_and_live(&PYTHON, 38).await;
}

#[test]
fn the_python_reducer_refuses_an_unknown_target_with_exit_code_2() {
    example_sidecars::refuses_an_unknown_target(&PYTHON);
}

#[test]
fn the_python_reducer_unit_tests_pass() {
    let out = Command::new(processes::python_sidecar_python())
        .args(["-m", "unittest", "-v", "test_reducer"])
        .current_dir(processes::repo_root().join("sidecar-examples/python"))
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .output()
        .expect("run python -m unittest");
    let report = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "test_reducer.py failed ({}):\n{report}", out.status);
    // unittest succeeds with zero tests too: make sure it found them.
    assert!(report.contains("\nOK") && !report.contains("Ran 0 tests"), "{report}");
}
