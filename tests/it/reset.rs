//! `projector-gateway reset` on a SQLite target: back to the start the whole log is projected
//! again; to a position, every partition resumes right after it; an unknown connector is named.

use std::{path::Path, process::Command, time::Duration};

use crate::support::{fixtures::*, processes::gateway_bin, sidecars};

const WAIT: Duration = Duration::from_secs(120);

fn reset(config: &Path, args: &[&str]) -> std::process::Output {
    Command::new(gateway_bin()).args(["reset", "--config", config.to_str().unwrap()]).args(args).output().unwrap()
}

/// A log of 2,000 events projected once to its head through the Rust reducer; the config is
/// also written to a file for `reset`.
struct Projected {
    ws: Workspace,
    head: u64,
    yaml: String,
    config: std::path::PathBuf,
    /// Events the first run applied.
    first: u64,
    _sidecar: sidecars::LocalSidecar,
}

async fn projected_once(seed: u64) -> Projected {
    let ws = Workspace::new();
    let head = ws.log_with_events(2_000, 200, seed).head().unwrap();
    let sidecar = sidecars::rust_reducer().await;
    let yaml = connector_yaml(&ws.log_path(), &sidecar.address, &sqlite_sink_yaml(&ws.target_path()), &Setup::default());
    let config = ws.path("gateway.yaml");
    std::fs::write(&config, &yaml).unwrap();
    let (_, first) = project(&yaml, head).await;
    assert!(first > 0);
    Projected { ws, head, yaml, config, first, _sidecar: sidecar }
}

/// Projects the log to its head, stops, and returns the events the run applied.
async fn project(yaml: &str, head: u64) -> (Vec<u64>, u64) {
    let mut running = Running::start(parse_connector(yaml)).await;
    let resumed_from = running.progress.borrow().positions.clone();
    running.wait_for(head, WAIT).await;
    let applied = running.progress.borrow().events_applied;
    running.stop().await.expect("clean stop");
    (resumed_from, applied)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn back_to_the_start_the_whole_log_is_projected_again() {
    let Projected { ws, head, yaml, config, first, _sidecar } = projected_once(51).await;

    let out = reset(&config, &["--connector", "bookings"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains(&format!("checkpoints were 4 of 4 partition(s) at positions {head}..={head}")), "{stdout}");
    assert!(stdout.contains("checkpoints are now none"), "{stdout}");
    assert!(sqlite_checkpoints(&ws.target_path(), "bookings").is_empty());

    let (resumed_from, again) = project(&yaml, head).await;
    assert_eq!(resumed_from, vec![0; 4]);
    assert_eq!(again, first, "every event is applied again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn to_a_position_every_partition_resumes_right_after_it() {
    let Projected { ws, head, yaml, config, first, _sidecar } = projected_once(52).await;

    let middle = head / 2;
    let out = reset(&config, &["--connector", "bookings", "--to-position", &middle.to_string()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains(&format!("checkpoints are now 4 of 4 partition(s) at positions {middle}..={middle}")), "{stdout}");
    let rows = sqlite_checkpoints(&ws.target_path(), "bookings");
    assert_eq!(rows.iter().map(|r| (r.0, r.2)).collect::<Vec<_>>(), vec![(4, middle); 4]);

    let (resumed_from, again) = project(&yaml, head).await;
    assert_eq!(resumed_from, vec![middle; 4]);
    assert!(again > 0 && again < first, "only the events after {middle} are applied again: {again} of {first}");
}

#[test]
fn an_unknown_connector_is_named_with_the_ones_the_file_has() {
    let ws = Workspace::new();
    let config = ws.path("gateway.yaml");
    std::fs::write(&config, connector_yaml(&ws.log_path(), "http://127.0.0.1:1", &sqlite_sink_yaml(&ws.target_path()), &Setup::default())).unwrap();
    let out = reset(&config, &["--connector", "bokings"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("no connector `bokings`; the file has: bookings"), "{stderr}");
}
