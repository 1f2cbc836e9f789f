//! End to end on the embedded default: SQLite event log -> gateway -> sidecar -> SQLite target,
//! compared with the reference read model computed straight from the log.

use std::time::Duration;

use crate::support::{bookings_model::ReadModel, fixtures::*, sidecars};

const WAIT: Duration = Duration::from_secs(120);

fn everything(_: &str, _: &str) -> bool {
    true
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catches_up_then_follows_live_appends() {
    let ws = Workspace::new();
    let mut log = ws.log_with_events(20_000, 2_000, 1);
    let sidecar = sidecars::rust_reducer().await;
    let setup = Setup::default();
    let config = parse_connector(&connector_yaml(&ws.log_path(), &sidecar.address, &sqlite_sink_yaml(&ws.target_path()), &setup));
    let mut running = Running::start(config).await;

    running.wait_for(log.head().unwrap(), WAIT).await;
    ReadModel::from_sqlite(&ws.target_path()).assert_same(&ReadModel::from_log(&ws.log_path(), everything));

    // Live: appends made while the connector is caught up are applied too.
    append_generated(&mut log, 1_000, 100, 2);
    running.wait_for(log.head().unwrap(), WAIT).await;
    let progress = running.progress.borrow().clone();
    running.stop().await.expect("clean stop");
    ReadModel::from_sqlite(&ws.target_path()).assert_same(&ReadModel::from_log(&ws.log_path(), everything));

    // Every partition stored the head position, in the target, in the same database.
    let rows = sqlite_checkpoints(&ws.target_path(), "bookings");
    assert_eq!(rows.len(), 4, "{rows:?}");
    assert!(rows.iter().all(|r| r.0 == 4 && r.2 == log.head().unwrap()), "{rows:?}");
    assert!(progress.ops_applied > 20_000, "{progress:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarts_from_its_checkpoint_without_applying_anything_twice() {
    let ws = Workspace::new();
    let mut log = ws.log_with_events(5_000, 500, 3);
    let sidecar = sidecars::rust_reducer().await;
    let yaml = connector_yaml(&ws.log_path(), &sidecar.address, &sqlite_sink_yaml(&ws.target_path()), &Setup::default());

    let mut first = Running::start(parse_connector(&yaml)).await;
    first.wait_for(log.head().unwrap(), WAIT).await;
    first.stop().await.unwrap();
    let requests_after_first = sidecar.requests();

    append_generated(&mut log, 2_000, 300, 4);
    let mut second = Running::start(parse_connector(&yaml)).await;
    second.wait_for(log.head().unwrap(), WAIT).await;
    second.stop().await.unwrap();

    // The counters in guest_stats would be off if any event had been applied twice.
    ReadModel::from_sqlite(&ws.target_path()).assert_same(&ReadModel::from_log(&ws.log_path(), everything));
    // And the restarted run sent only the new events to the sidecar.
    let resent = sidecar.requests() - requests_after_first;
    assert!(resent <= 2_000, "the second run sent {resent} requests for 2000 new events");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_partition_count_loses_and_repeats_nothing() {
    let ws = Workspace::new();
    let mut log = ws.log_with_events(4_000, 400, 5);
    let sidecar = sidecars::rust_reducer().await;
    let sink = sqlite_sink_yaml(&ws.target_path());
    let four = Setup { partitions: 4, ..Setup::default() };
    let mut running = Running::start(parse_connector(&connector_yaml(&ws.log_path(), &sidecar.address, &sink, &four))).await;
    running.wait_for(log.head().unwrap(), WAIT).await;
    running.stop().await.unwrap();

    // Make the old scheme uneven, as a crash between two writers' commits leaves it:
    // partition 0 of the 4-partition scheme is set back to position 1000, so for the gateway
    // its later events are not applied yet, while every other partition is at the head.
    let set_back_to = 1_000i64;
    let conn = rusqlite::Connection::open(ws.target_path()).unwrap();
    conn.execute(r#"UPDATE checkpoints SET position = ?1 WHERE partition_count = 4 AND "partition" = 0"#, [set_back_to]).unwrap();
    drop(conn);

    append_generated(&mut log, 2_000, 200, 6);
    let seven = Setup { partitions: 7, ..Setup::default() };
    let requests_before = sidecar.requests();
    let mut running = Running::start(parse_connector(&connector_yaml(&ws.log_path(), &sidecar.address, &sink, &seven))).await;
    running.wait_for(log.head().unwrap(), WAIT).await;
    running.stop().await.unwrap();

    // Under 7 partitions, exactly the old-partition-0 events after 1000 and the new events
    // reach the sidecar: nothing the old scheme applied is sent again, nothing is skipped.
    let old_head = 4_000u64;
    let conn = rusqlite::Connection::open(ws.log_path()).unwrap();
    let streams: Vec<(i64, String)> = conn
        .prepare("SELECT position, stream FROM events WHERE position > ?1 AND position <= ?2")
        .unwrap()
        .query_map([set_back_to, old_head as i64], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let old_p0 = streams
        .iter()
        .filter(|(_, s)| projector_gateway::partition::partition_of(projector_gateway::config::PartitionKey::Stream, s, 4) == 0)
        .count() as u64;
    let sent = sidecar.requests() - requests_before;
    assert_eq!(sent, old_p0 + 2_000, "re-sent exactly the unapplied old-partition-0 events plus the new ones");
    // Rows of the old scheme are kept until the new one has passed them, then removed.
    let rows = sqlite_checkpoints(&ws.target_path(), "bookings");
    assert!(rows.iter().filter(|r| r.0 == 7).all(|r| r.2 == log.head().unwrap()), "{rows:?}");
    let mut running = Running::start(parse_connector(&connector_yaml(&ws.log_path(), &sidecar.address, &sink, &seven))).await;
    running.wait_for(log.head().unwrap(), WAIT).await;
    running.stop().await.unwrap();
    let rows = sqlite_checkpoints(&ws.target_path(), "bookings");
    assert!(rows.iter().all(|r| r.0 == 7), "old rows removed once obsolete: {rows:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filtered_events_never_reach_the_sidecar_but_move_the_checkpoint() {
    let ws = Workspace::new();
    let log = ws.log_with_events(3_000, 300, 7);
    let sidecar = sidecars::rust_reducer().await;
    let setup = Setup { extra_filter: "{ exclude_types: [GuestRegistered], exclude_stream_regex: \"^booking-1[0-9]$\" }".into(), ..Setup::default() };
    let config = parse_connector(&connector_yaml(&ws.log_path(), &sidecar.address, &sqlite_sink_yaml(&ws.target_path()), &setup));
    let mut running = Running::start(config).await;
    running.wait_for(log.head().unwrap(), WAIT).await;
    running.stop().await.unwrap();

    let kept = |stream: &str, event_type: &str| {
        event_type != "GuestRegistered" && !regex::Regex::new("^booking-1[0-9]$").unwrap().is_match(stream)
    };
    ReadModel::from_sqlite(&ws.target_path()).assert_same(&ReadModel::from_log(&ws.log_path(), kept));
    let conn = rusqlite::Connection::open(ws.log_path()).unwrap();
    let mut sent = 0u64;
    for row in conn.prepare("SELECT stream, event_type FROM events").unwrap().query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))).unwrap() {
        let (s, t) = row.unwrap();
        sent += u64::from(kept(&s, &t));
    }
    assert_eq!(sidecar.requests(), sent);
    assert!(sqlite_checkpoints(&ws.target_path(), "bookings").iter().all(|r| r.2 == log.head().unwrap()));
}
