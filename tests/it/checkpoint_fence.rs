//! The checkpoint fence of every transactional target: a batch commits only if each stored
//! checkpoint row it writes is where the batch was planned from (`sinks::Stored`), checked
//! under a lock inside the batch's own transaction. Proven per target against the real server,
//! including the race the fence exists for (a restart that read the checkpoints while the
//! killed process's last commit was still in flight), and end to end with two connectors
//! running the same read model at once.

use std::{sync::Arc, time::Duration};

use projector_gateway::{
    config::SinkConfig,
    event::Position,
    payload::json_to_struct,
    proto::{self, names, pack},
    sinks::{
        ApplyError, Batch, BatchItem, Sink, SinkWriter,
        mongo::MongoSink,
        postgres::PostgresSink,
        sql::{SqlOp, SqlValue},
        sqlite::SqliteSink,
    },
};
use crate::support::{
    bookings_model::ReadModel,
    fixtures::*,
    mongo::{MongoDb, Server},
    postgres::{self as pg, Database},
    sidecars,
};

const WAIT: Duration = Duration::from_secs(120);
const SEEN_TABLE: &str = "CREATE TABLE IF NOT EXISTS seen (position bigint NOT NULL)";

/// One event at `position` on partition 0 of 1 applying `op`, planned from `stored`.
fn fenced_batch<Op>(op: Op, position: Position, stored: Option<Position>) -> Arc<Batch<Op>> {
    Arc::new(Batch::fenced(vec![BatchItem::Apply { event: tested_event(position), ops: vec![op] }], 1, &[stored]))
}

/// The SQL operation of the event at `position`: inserts the position into `seen`.
fn insert_seen(position: Position) -> SqlOp {
    SqlOp::Statement { sql: "INSERT INTO seen (position) VALUES ($1)".into(), params: vec![SqlValue::Int(position as i64)] }
}

fn sql_batch(position: Position, stored: Option<Position>) -> Arc<Batch<SqlOp>> {
    fenced_batch(insert_seen(position), position, stored)
}

fn assert_moved(result: Result<(), ApplyError>, what: &str) {
    let error = result.expect_err(what);
    assert!(error.checkpoint_moved, "{what}: not reported as a moved checkpoint: {error}");
    assert!(!error.transient && error.failed_at.is_none(), "{what}: {error:?}");
    assert!(error.message.contains("a checkpoint moved since this gateway read it"), "{what}: {}", error.message);
}

/// What every transactional target must do with a batch: commit it when the stored row is
/// what it was planned from, refuse it whole otherwise. `op` is the operation of the event at
/// a position; `seen` lists the positions whose operation was applied.
async fn the_fence_holds<S: Sink>(sink: &S, op: impl Fn(Position) -> S::Op, seen: impl AsyncFn() -> Vec<i64>) {
    let batch = |position, stored| fenced_batch(op(position), position, stored);
    let mut writer = sink.open_writer().await.expect("writer");
    writer.apply(batch(10, None)).await.expect("the first batch, planned from no row");
    assert_moved(writer.apply(batch(20, None)).await, "planned from no row, but a row exists");
    assert_moved(writer.apply(batch(20, Some(5))).await, "planned from a position that is not stored");
    assert_eq!(seen().await, [10], "a refused batch applies none of its operations");
    writer.apply(batch(20, Some(10))).await.expect("planned from the stored position");
    assert_eq!(seen().await, [10, 20]);
    let rows = sink.load_checkpoints().await.expect("checkpoints");
    assert_eq!(rows.iter().map(|r| (r.partition, r.position)).collect::<Vec<_>>(), [(0, 20)]);
    // Unchecked writes (tools, the sinks without transactions) never move a row backwards.
    let behind = Batch::new(vec![BatchItem::<S::Op>::Advance { partition: 0, position: 15 }], 1);
    writer.apply(Arc::new(behind)).await.expect("an unchecked advance");
    let rows = sink.load_checkpoints().await.expect("checkpoints");
    assert_eq!(rows[0].position, 20, "an unchecked write moved the checkpoint backwards");
}

#[tokio::test]
async fn sqlite_commits_a_batch_only_from_the_stored_checkpoint() {
    let ws = Workspace::new();
    let target = ws.target_path();
    let yaml = connector_yaml(
        &ws.log_path(),
        "http://127.0.0.1:1",
        &format!("      sqlite:\n        path: \"{}\"\n        init_sql: \"{SEEN_TABLE}\"\n", target.display()),
        &Setup::default(),
    );
    let SinkConfig::Sqlite(config) = parse_connector(&yaml).sink else { unreachable!() };
    let sink = SqliteSink::open(&config, "fenced").await.expect("open");
    the_fence_holds(&sink, insert_seen, async || {
        let conn = rusqlite::Connection::open(&target).unwrap();
        let mut stmt = conn.prepare("SELECT position FROM seen ORDER BY position").unwrap();
        stmt.query_map([], |r| r.get(0)).unwrap().map(Result::unwrap).collect()
    })
    .await;
}

async fn postgres_sink(db: &Database) -> PostgresSink {
    let yaml = connector_yaml(
        std::path::Path::new("/nonexistent.db"),
        "http://127.0.0.1:1",
        &format!("      postgres:\n        url: \"{}\"\n        init_sql: \"{SEEN_TABLE}\"\n", db.url),
        &Setup::default(),
    );
    let SinkConfig::Postgres(config) = parse_connector(&yaml).sink else { unreachable!() };
    PostgresSink::open(&config, "fenced", None).await.expect("open")
}

async fn pg_seen(db: &Database) -> Vec<i64> {
    let client = db.client().await;
    client.query("SELECT position FROM seen ORDER BY position", &[]).await.unwrap().iter().map(|r| r.get(0)).collect()
}

#[tokio::test]
async fn postgres_commits_a_batch_only_from_the_stored_checkpoint() {
    let db = Database::fresh("fence").await;
    let sink = postgres_sink(&db).await;
    the_fence_holds(&sink, insert_seen, async || pg_seen(&db).await).await;
}

/// The race behind a restart that double-applied a batch: the new process read the checkpoint
/// while the killed process's last `COMMIT` was still in flight. Here that commit is a
/// transaction held open on another connection; the batch planned from the old position
/// waits for its row lock, sees the committed position, and is refused whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_batch_racing_an_in_flight_commit_is_refused_once_that_commit_lands() {
    let db = Database::fresh("fence_race").await;
    let sink = postgres_sink(&db).await;
    let mut writer = sink.open_writer().await.expect("writer");
    writer.apply(sql_batch(10, None)).await.expect("first batch");

    let killed_process = db.client().await;
    killed_process.batch_execute("BEGIN").await.unwrap();
    killed_process.execute("INSERT INTO seen (position) VALUES (20)", &[]).await.unwrap();
    killed_process
        .execute("UPDATE checkpoints SET position = 20 WHERE connector = 'fenced' AND \"partition\" = 0", &[])
        .await
        .unwrap();

    // The restarted gateway read position 10 and plans event 20 from it.
    let racing = tokio::spawn(async move { writer.apply(sql_batch(20, Some(10))).await });
    let observer = db.client().await;
    poll_until_async("the racing batch to wait for the in-flight commit's row lock", WAIT, || async {
        let waiting: i64 = observer
            .query_one("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'", &[])
            .await
            .unwrap()
            .get(0);
        (waiting > 0).then_some(())
    })
    .await;
    killed_process.batch_execute("COMMIT").await.unwrap();
    assert_moved(racing.await.unwrap(), "a batch planned before the in-flight commit landed");
    assert_eq!(pg_seen(&db).await, [10, 20], "event 20 applied once, by the commit that was in flight");
}

#[tokio::test]
async fn mongo_with_transactions_commits_a_batch_only_from_the_stored_checkpoint() {
    let db = MongoDb::fresh(Server::Secantus, "fence").await;
    let sink = MongoSink::open(&db.sink_config(), "fenced").await.expect("open");
    assert!(sink.transactional(), "SecantusDB has transactions");
    let insert = |position: Position| {
        let document = json_to_struct(format!(r#"{{"_id": {position}}}"#).as_bytes()).unwrap();
        let op = pack(names::INSERT_ONE, &proto::InsertOne { document: Some(document), ..Default::default() });
        sink.decode(&op).expect("decodes").expect("not Ignore")
    };
    the_fence_holds(&sink, insert, async || {
        db.documents("docs").await.iter().map(|d| d.get_f64("_id").expect("a number") as i64).collect()
    })
    .await;
    assert_eq!(db.checkpoints("fenced").await.into_values().collect::<Vec<_>>(), [20]);
}

/// Two connectors with the same id on the same target at once (a second gateway started by
/// mistake, without a lease): each batch of one that the other already committed is refused,
/// and the loser re-plans from what is stored. The guest counters show any double effect.
async fn two_connectors_at_once_apply_everything_exactly_once(sink_yaml: String, read_model: impl AsyncFn() -> ReadModel) {
    let ws = Workspace::new();
    let log = ws.log_with_events(6_000, 600, 71);
    let sidecar = sidecars::rust_reducer().await;
    let setup = Setup { max_ops: 20, ..Setup::default() };
    let yaml = connector_yaml(&ws.log_path(), &sidecar.address, &sink_yaml, &setup);
    let mut first = Running::start(parse_connector(&yaml)).await;
    let mut second = Running::start(parse_connector(&yaml)).await;
    let head = log.head().unwrap();
    first.wait_for(head, WAIT).await;
    second.wait_for(head, WAIT).await;
    first.stop().await.expect("clean stop");
    second.stop().await.expect("clean stop");
    read_model().await.assert_same(&ReadModel::from_log(&ws.log_path(), |_, _| true));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_two_connectors_on_one_read_model_apply_each_event_once() {
    let ws = Workspace::new();
    let target = ws.target_path();
    two_connectors_at_once_apply_everything_exactly_once(sqlite_sink_yaml(&target), async || ReadModel::from_sqlite(&target)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_two_connectors_on_one_read_model_apply_each_event_once() {
    let db = Database::fresh("fence_two").await;
    two_connectors_at_once_apply_everything_exactly_once(pg::postgres_sink_yaml(&db.url), async || {
        pg::read_model(&db.client().await).await
    })
    .await;
}
