//! The Eventuous PostgreSQL event log as a source, against the real server of
//! `scripts/postgres.sh`: catch-up then live through the Rust sidecar, and the live reader
//! never skipping an event whose transaction commits after a later one (two appending
//! transactions committed in reverse order), while still moving past positions that were
//! rolled back.

use std::time::{Duration, Instant};

use projector_gateway::{
    config::{PostgresSourceConfig, SourceConfig},
    demo::BookingsGenerator,
    sources::{EventSource, SourceBatch, head, postgres::PostgresSource, sqlite::NewEvent},
};
use crate::support::{
    bookings_model::ReadModel,
    fixtures::*,
    postgres::{self as pg, Database, EventuousLog},
    sidecars,
};

const WAIT: Duration = Duration::from_secs(120);
/// How long a negative check ("nothing is delivered while...") watches the source.
const HOLD_BACK_WINDOW: Duration = Duration::from_millis(700);

fn source_config(db: &Database, gap_timeout_ms: u64) -> PostgresSourceConfig {
    PostgresSourceConfig {
        url: db.url.clone(),
        schema: "eventuous".into(),
        poll_interval_ms: 5,
        batch_size: 100,
        gap_timeout_ms,
    }
}

/// Reads from the source until `n` events arrived (or the deadline passes).
async fn read_events(source: &mut PostgresSource, n: usize, within: Duration) -> Vec<SourceBatch> {
    let deadline = Instant::now() + within;
    let mut batches = Vec::new();
    let mut got = 0;
    while got < n {
        let left = deadline.saturating_duration_since(Instant::now());
        let batch = tokio::time::timeout(left, source.next_batch())
            .await
            .unwrap_or_else(|_| panic!("only {got} of {n} events within {within:?}"))
            .expect("read");
        got += batch.events.len();
        batches.push(batch);
    }
    batches
}

/// The event moved to a stream of its own, so that two open appending transactions never wait
/// on each other's stream row.
fn on_stream(mut event: NewEvent, stream: &str) -> NewEvent {
    event.stream = stream.to_string();
    event
}

fn positions(batches: &[SourceBatch]) -> Vec<u64> {
    batches.iter().flat_map(|b| b.events.iter().map(|e| e.position)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn projects_an_eventuous_log_catch_up_then_live_including_reverse_order_commits() {
    let db = Database::fresh("src_e2e").await;
    let mut log = EventuousLog::create(&db).await;
    log.append_generated(3_000, 300, 31).await;
    let ws = Workspace::new();
    let sidecar = sidecars::rust_reducer().await;
    let yaml = connector_yaml_from(
        &pg::postgres_source_yaml(&db.url),
        &sidecar.address,
        &sqlite_sink_yaml(&ws.target_path()),
        &Setup::default(),
    );
    let mut running = Running::start(parse_connector(&yaml)).await;
    running.wait_for(log.head(), WAIT).await;
    ReadModel::from_sqlite(&ws.target_path()).assert_same(&log.reference());

    // Live, with two appending transactions that commit in the reverse order of their
    // positions: the first one's events must not be skipped.
    let first = db.client().await;
    let second = db.client().await;
    let mut generator = BookingsGenerator::new(32, 50);
    first.batch_execute("BEGIN").await.unwrap();
    second.batch_execute("BEGIN").await.unwrap();
    // Each stream's events all go to one of the transactions (a stream is ordered, and two
    // open transactions appending to the same stream would wait on each other).
    let (early_events, late_events): (Vec<_>, Vec<_>) =
        generator.take(80).into_iter().partition(|e| e.stream.bytes().map(u32::from).sum::<u32>() % 2 == 0);
    let mut early = Vec::new();
    for event in early_events {
        early.push((pg::append(&first, &event).await, event));
    }
    let mut late = Vec::new();
    for event in late_events {
        late.push((pg::append(&second, &event).await, event));
    }
    assert!(early.last().unwrap().0 < late[0].0);
    second.batch_execute("COMMIT").await.unwrap();
    let held_back_below = early[0].0 as u64;
    // While the first transaction is open, the connector stays before its first position.
    let deadline = Instant::now() + HOLD_BACK_WINDOW;
    while Instant::now() < deadline {
        let reached = running.progress.borrow().low_watermark();
        assert!(reached < held_back_below, "the connector moved to {reached}, past the uncommitted {held_back_below}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    first.batch_execute("COMMIT").await.unwrap();
    log.appended.extend(early);
    log.appended.extend(late);
    running.wait_for(log.head(), WAIT).await;
    running.stop().await.expect("clean stop");
    ReadModel::from_sqlite(&ws.target_path()).assert_same(&log.reference());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_live_reader_waits_for_a_lower_position_that_commits_later() {
    let db = Database::fresh("src_gap").await;
    let mut log = EventuousLog::create(&db).await;
    log.append_generated(10, 5, 33).await;
    let mut source = PostgresSource::open(&source_config(&db, 60_000), 0).await.unwrap();
    assert_eq!(positions(&read_events(&mut source, 10, WAIT).await), (1..=10).collect::<Vec<_>>());

    let (slow, fast) = (db.client().await, db.client().await);
    let mut generator = BookingsGenerator::new(34, 5);
    slow.batch_execute("BEGIN").await.unwrap();
    let slow_position = pg::append(&slow, &on_stream(generator.next_event(), "slow")).await;
    let fast_position = pg::append(&fast, &on_stream(generator.next_event(), "fast")).await; // autocommit
    assert_eq!((slow_position, fast_position), (11, 12));

    // 12 is visible, 11 is not yet: nothing may be delivered.
    let early = tokio::time::timeout(HOLD_BACK_WINDOW, source.next_batch()).await;
    assert!(early.is_err(), "delivered past an uncommitted position: {:?}", early.map(|b| positions(&[b.unwrap()])));
    slow.batch_execute("COMMIT").await.unwrap();
    assert_eq!(positions(&read_events(&mut source, 2, WAIT).await), vec![11, 12]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolled_back_position_is_passed_once_its_transaction_ended() {
    let db = Database::fresh("src_hole").await;
    let mut log = EventuousLog::create(&db).await;
    log.append_generated(3, 2, 35).await;
    let mut source = PostgresSource::open(&source_config(&db, 60_000), 3).await.unwrap();

    let (aborting, other) = (db.client().await, db.client().await);
    let mut generator = BookingsGenerator::new(36, 5);
    aborting.batch_execute("BEGIN").await.unwrap();
    assert_eq!(pg::append(&aborting, &on_stream(generator.next_event(), "aborting")).await, 4);
    assert_eq!(pg::append(&other, &on_stream(generator.next_event(), "other")).await, 5);
    let early = tokio::time::timeout(HOLD_BACK_WINDOW, source.next_batch()).await;
    assert!(early.is_err(), "delivered past a position whose transaction is still open");

    aborting.batch_execute("ROLLBACK").await.unwrap();
    // Far sooner than the 60 s gap timeout: the transaction is known to have ended.
    let batches = read_events(&mut source, 1, Duration::from_secs(10)).await;
    assert_eq!(positions(&batches), vec![5]);
    assert_eq!(batches.last().unwrap().end, 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gap_kept_open_by_a_long_transaction_is_given_up_after_the_gap_timeout() {
    let db = Database::fresh("src_timeout").await;
    EventuousLog::create(&db).await;
    // An unrelated transaction that stays open holds the proof back.
    let idle_in_transaction = db.client().await;
    idle_in_transaction.batch_execute("BEGIN; SELECT pg_current_xact_id();").await.unwrap();

    let (aborting, other) = (db.client().await, db.client().await);
    let mut generator = BookingsGenerator::new(37, 5);
    aborting.batch_execute("BEGIN").await.unwrap();
    assert_eq!(pg::append(&aborting, &on_stream(generator.next_event(), "aborting")).await, 1);
    aborting.batch_execute("ROLLBACK").await.unwrap();
    assert_eq!(pg::append(&other, &on_stream(generator.next_event(), "other")).await, 2);

    let gap_timeout = Duration::from_millis(400);
    let mut source = PostgresSource::open(&source_config(&db, gap_timeout.as_millis() as u64), 0).await.unwrap();
    let started = Instant::now();
    let batches = read_events(&mut source, 1, Duration::from_secs(20)).await;
    assert_eq!(positions(&batches), vec![2]);
    assert!(started.elapsed() >= gap_timeout, "the gap was given up after {:?}", started.elapsed());
    idle_in_transaction.batch_execute("ROLLBACK").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_schema_or_unreachable_server_is_a_clear_error() {
    let db = Database::fresh("src_errors").await;
    let err = PostgresSource::open(&source_config(&db, 1_000), 0).await.err().expect("no Eventuous tables");
    let message = err.to_string();
    assert!(message.contains("no table \"eventuous\".messages"), "{message}");
    assert!(message.contains("source.postgres.schema"), "{message}");

    let port = crate::support::processes::free_port();
    let unreachable = PostgresSourceConfig { url: format!("postgres://gateway:secret@127.0.0.1:{port}/x"), ..source_config(&db, 1_000) };
    let message = PostgresSource::open(&unreachable, 0).await.err().expect("unreachable").to_string();
    assert!(message.contains(&format!("postgres://gateway@127.0.0.1:{port}/x")), "{message}");
    assert!(message.contains("cannot connect"), "{message}");
    assert!(!message.contains("secret"), "the password leaked: {message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_head_probe_gives_the_last_position_and_the_oldest_event_after_a_position() {
    let db = Database::fresh("src_head").await;
    let mut log = EventuousLog::create(&db).await;
    let mut probe = head::open(&SourceConfig::Postgres(source_config(&db, 1_000))).await.unwrap().expect("a probe");
    let empty = probe.head(0).await.unwrap();
    assert_eq!((empty.position, empty.oldest_pending), (0, None));

    log.append_generated(50, 5, 33).await;
    let client = db.client().await;
    let first_after_10: chrono::NaiveDateTime = client
        .query_one("SELECT created FROM eventuous.messages WHERE global_position > 10 ORDER BY global_position LIMIT 1", &[])
        .await
        .unwrap()
        .get(0);
    let seen = probe.head(10).await.unwrap();
    assert_eq!(seen.position, log.head());
    assert_eq!(seen.oldest_pending, Some(first_after_10.and_utc()));
    assert_eq!(probe.head(log.head()).await.unwrap().oldest_pending, None, "nothing after the head");
}
