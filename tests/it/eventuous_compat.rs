//! Sidecars written for the Eventuous Connector answer only the events they handle. With
//! `sidecar.answers: handled` a response for a later event (or to a probe, at the end of a
//! backlog) acknowledges the earlier unanswered ones as ignored, and `sidecar.on_timeout`
//! decides only about a sidecar that answers nothing, not even the probe; with the default
//! contract the same silence is an error.

use std::time::Duration;

use crate::support::{
    bookings_model::ReadModel,
    fixtures::*,
    sidecars::{self, Script},
};

const WAIT: Duration = Duration::from_secs(60);

fn yaml_for(ws: &Workspace, address: &str, sidecar_extra: &str, setup: &Setup) -> String {
    connector_yaml(&ws.log_path(), address, &sqlite_sink_yaml(&ws.target_path()), setup)
        .replace("      window:", &format!("{sidecar_extra}      window:"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sidecar_that_answers_only_what_it_handles_projects_everything_else() {
    let ws = Workspace::new();
    let mut log = ws.log_with_events(3_000, 300, 61);
    let sidecar = sidecars::scripted(Script::SilentFor("GuestCheckedIn")).await;
    // The tail of a partition may be unanswered: a short deadline keeps the test quick.
    let setup = Setup { request_timeout_ms: 300, ..Setup::default() };
    let yaml = yaml_for(&ws, &sidecar.address, "      answers: handled\n      on_timeout: ignore\n", &setup);
    let mut running = Running::start(parse_connector(&yaml)).await;
    running.wait_for(log.head().unwrap(), WAIT).await;
    append_generated(&mut log, 500, 50, 62);
    running.wait_for(log.head().unwrap(), WAIT).await;
    running.stop().await.expect("clean stop");

    let without_check_ins = ReadModel::from_log(&ws.log_path(), |_, t| t != "GuestCheckedIn");
    ReadModel::from_sqlite(&ws.target_path()).assert_same(&without_check_ins);
    let rows = sqlite_checkpoints(&ws.target_path(), "bookings");
    assert!(rows.iter().all(|r| r.2 == log.head().unwrap()), "{rows:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_default_contract_the_same_silence_stops_the_connector() {
    let ws = Workspace::new();
    ws.log_with_events(600, 60, 63);
    let sidecar = sidecars::scripted(Script::SilentFor("GuestCheckedIn")).await;
    let setup = Setup { request_timeout_ms: 300, max_retries: 1, ..Setup::default() };
    let yaml = yaml_for(&ws, &sidecar.address, "", &setup);
    let running = Running::start(parse_connector(&yaml)).await;
    let message = running.ended(WAIT).await.expect_err("must stop").to_string();
    assert!(
        message.contains("answered event")
            && message.contains("responses must come back in request order")
            && message.contains("set `sidecar.answers: handled`"),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_timeout_stop_poisons_at_once_when_not_even_the_probe_is_answered() {
    let ws = Workspace::new();
    ws.log_with_events(600, 60, 64);
    let sidecar = sidecars::scripted(Script::HangAt("GuestCheckedIn")).await;
    let setup = Setup { request_timeout_ms: 300, max_retries: 5, partitions: 1, ..Setup::default() };
    // One partition and a window of 1: every unanswered event is a tail, and is probed.
    let setup = Setup { window: 1, ..setup };
    let yaml = yaml_for(&ws, &sidecar.address, "      answers: handled\n      on_timeout: stop\n", &setup);
    let running = Running::start(parse_connector(&yaml)).await;
    let message = running.ended(WAIT).await.expect_err("must stop").to_string();
    assert!(message.contains("did not answer within 300ms (sidecar.on_timeout: stop)"), "{message}");
}
