//! The optional `Describe` handshake: a sidecar that declares its event types gets only those;
//! a new projection version rebuilds the read model when the connector asks for it (reset
//! operations, checkpoints deleted, everything projected again, in one transaction), and only
//! warns otherwise. Sidecars without `Describe` are every other test.

use std::time::Duration;

use bookings_reducer::proto::DescribeResponse;
use crate::support::{bookings_model::ReadModel, fixtures::*, sidecars};

const WAIT: Duration = Duration::from_secs(60);

fn everything(_: &str, _: &str) -> bool {
    true
}

fn count_where(ws: &Workspace, condition: &str) -> u64 {
    let conn = rusqlite::Connection::open(ws.log_path()).unwrap();
    conn.query_row(&format!("SELECT count(*) FROM events WHERE {condition}"), [], |r| r.get::<_, i64>(0)).unwrap() as u64
}

fn description(version: &str) -> DescribeResponse {
    DescribeResponse { version: version.into(), ..bookings_reducer::description() }
}

fn recorded_version(ws: &Workspace) -> Option<String> {
    let conn = rusqlite::Connection::open(ws.target_path()).unwrap();
    conn.query_row("SELECT version FROM projections WHERE connector = 'bookings'", [], |r| r.get(0)).ok()
}

async fn project(ws: &Workspace, sidecar: &sidecars::LocalSidecar, head: u64, rebuild: bool) {
    let yaml = connector_yaml(&ws.log_path(), &sidecar.address, &sqlite_sink_yaml(&ws.target_path()), &Setup::default())
        .replace("      window:", &format!("      rebuild_on_new_version: {rebuild}\n      window:"));
    let mut running = Running::start(parse_connector(&yaml)).await;
    running.wait_for(head, WAIT).await;
    running.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn declared_event_types_are_the_only_ones_sent() {
    let ws = Workspace::new();
    let head = ws.log_with_events(3_000, 300, 71).head().unwrap();
    let sidecar = sidecars::describing(description("1")).await;
    project(&ws, &sidecar, head, false).await;

    let handled = count_where(&ws, "event_type <> 'GuestRegistered'");
    assert!(handled < head, "the log must hold events the sidecar does not handle");
    assert_eq!(sidecar.requests(), handled, "only declared types cross the wire");
    ReadModel::from_sqlite(&ws.target_path()).assert_same(&ReadModel::from_log(&ws.log_path(), everything));
    assert_eq!(recorded_version(&ws).as_deref(), Some("1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_version_rebuilds_the_read_model_when_asked() {
    let ws = Workspace::new();
    let head = ws.log_with_events(2_000, 200, 72).head().unwrap();
    let first = sidecars::describing(description("1")).await;
    project(&ws, &first, head, true).await;

    let second = sidecars::describing(description("2")).await;
    project(&ws, &second, head, true).await;
    // Everything was sent again, and the counters show nothing was applied twice: the reset
    // operations cleared the tables in the same transaction as the checkpoints.
    assert_eq!(second.requests(), count_where(&ws, "event_type <> 'GuestRegistered'"));
    ReadModel::from_sqlite(&ws.target_path()).assert_same(&ReadModel::from_log(&ws.log_path(), everything));
    assert_eq!(recorded_version(&ws).as_deref(), Some("2"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_version_without_rebuild_only_warns() {
    let ws = Workspace::new();
    let head = ws.log_with_events(1_000, 100, 73).head().unwrap();
    let first = sidecars::describing(description("1")).await;
    project(&ws, &first, head, false).await;

    let second = sidecars::describing(description("2")).await;
    project(&ws, &second, head, false).await;
    assert_eq!(second.requests(), 0, "nothing is projected again");
    assert_eq!(recorded_version(&ws).as_deref(), Some("1"), "the recorded version stays, so a later rebuild still happens");
    ReadModel::from_sqlite(&ws.target_path()).assert_same(&ReadModel::from_log(&ws.log_path(), everything));
}
