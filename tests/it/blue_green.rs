//! Blue/green rebuilds on SQLite, PostgreSQL, Elasticsearch and MongoDB: a read model built by version 1, rebuilt by
//! version 2 beside it while a reader polls it without pause, then swapped. The reader never
//! sees it empty or half built (every snapshot holds at least the rows version 1 had, and is
//! wholly version 1's or wholly version 2's shape); the live connector keeps committing during
//! the rebuild; the final model is the reference computed for reducer version 2; a failing
//! rebuild leaves version 1 untouched; replaced versions are dropped by the policy.
//!
//! Version 2 is the real example reducer with one difference a reader can see: it writes the
//! booking statuses in capitals (`BOOKED`, ...).

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use bookings_reducer::proto::{self as sp, DescribeResponse, ProjectionRequest, ProjectionResponse};
use projector_gateway::pipeline::{ConnectorControl, RebuildOutcome, RebuildRequest, rebuild, rebuild_report};
use prost::Message;

use crate::support::{
    bookings_model::ReadModel,
    elastic::{Engine, Indices},
    fixtures::*,
    mongo::{MongoDb, Server as MongoServer},
    postgres::{self as pg, Database, postgres_sink_yaml},
    sidecars::{self, Script},
};

const WAIT: Duration = Duration::from_secs(120);

pub(crate) fn description(version: &str) -> DescribeResponse {
    DescribeResponse { version: version.into(), ..bookings_reducer::description() }
}

/// Reducer version 2: version 1 with the statuses in capitals.
pub(crate) fn reduce_v2(request: &ProjectionRequest) -> ProjectionResponse {
    let response = bookings_reducer::reduce(request);
    let capitals = |any: &mut prost_types::Any| {
        if any.type_url.ends_with("projection.Statement") {
            let mut statement = sp::Statement::decode(any.value.as_slice()).expect("a statement");
            for (from, to) in [("'booked'", "'BOOKED'"), ("'checked_in'", "'CHECKED_IN'"), ("'checked_out'", "'CHECKED_OUT'"), ("'cancelled'", "'CANCELLED'")] {
                statement.sql = statement.sql.replace(from, to);
            }
            any.value = statement.encode_to_vec();
        }
    };
    rewrite_operations(response, capitals)
}

/// `response` with `rewrite` applied to its operation and each of its operations.
fn rewrite_operations(mut response: ProjectionResponse, rewrite: impl FnMut(&mut prost_types::Any)) -> ProjectionResponse {
    response.operation.iter_mut().chain(response.operations.iter_mut()).for_each(rewrite);
    response
}

/// The reference for reducer version 2, computed from the log alone.
pub(crate) fn reference_v2(log: &std::path::Path) -> ReadModel {
    let mut model = ReadModel::from_log(log, |_, _| true);
    for booking in model.bookings.values_mut() {
        booking.status = booking.status.to_uppercase();
    }
    model
}

/// Each test's connector has an id of its own: the rebuild reports and the telemetry are
/// process-wide, and the tests run at the same time.
pub(crate) fn blue_green_yaml(id: &str, ws: &Workspace, sidecar: &str, sink: &str, keep: u32) -> String {
    connector_yaml(&ws.log_path(), sidecar, sink, &Setup { id: id.into(), ..Setup::default() }).replace(
        "      window:",
        &format!("      on_new_version: blue_green\n      blue_green: {{ keep_old_versions: {keep} }}\n      window:"),
    )
}

/// One reader's snapshot: the number of bookings, and how many have a status in capitals.
#[derive(Debug, Clone, Copy)]
struct Snapshot {
    rows: i64,
    capitals: i64,
}

impl Snapshot {
    /// Wholly version 1's shape or wholly version 2's.
    fn version(&self) -> Option<u8> {
        match self.capitals {
            0 => Some(1),
            c if c == self.rows => Some(2),
            _ => None,
        }
    }
}

/// What a reader polling without pause saw: every snapshot is checked as it is taken.
#[derive(Debug, Default)]
struct Seen {
    v1: u64,
    v2: u64,
}

fn check(snapshot: Snapshot, floor: i64, seen: &mut Seen) {
    assert!(snapshot.rows >= floor, "a reader saw {} bookings, fewer than the {floor} of version 1: empty or half built", snapshot.rows);
    match snapshot.version() {
        Some(1) => seen.v1 += 1,
        Some(2) => seen.v2 += 1,
        _ => panic!("a reader saw a mix of both versions: {snapshot:?}"),
    }
}

fn sqlite_snapshot(conn: &rusqlite::Connection) -> Snapshot {
    conn.query_row("SELECT count(*), count(*) FILTER (WHERE status = upper(status)) FROM bookings", [], |r| {
        Ok(Snapshot { rows: r.get(0)?, capitals: r.get(1)? })
    })
    .expect("a reader's query")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_readers_see_version_1_then_version_2_never_an_empty_or_half_built_model() {
    let ws = Workspace::new();
    let mut log = ws.log_with_events(20_000, 2_000, 81);
    let head = log.head().unwrap();
    let v1 = sidecars::describing(description("1")).await;
    let config = parse_connector(&blue_green_yaml("bg-sqlite-readers", &ws, &v1.address, &sqlite_sink_yaml(&ws.target_path()), 1));
    let mut live = Running::start(config.clone()).await;
    live.wait_for(head, WAIT).await;
    let target = ws.target_path();
    let floor = sqlite_snapshot(&rusqlite::Connection::open(&target).unwrap()).rows;
    assert!(floor > 0);

    // A reader that opens the read model afresh for every snapshot, and one that holds it open.
    let stop = Arc::new(AtomicBool::new(false));
    let reader = std::thread::spawn({
        let (stop, target) = (stop.clone(), target.clone());
        move || {
            let mut seen = Seen::default();
            // Until it has seen version 2 a few times (or the test gave up).
            while seen.v2 < 3 && !stop.load(Ordering::SeqCst) {
                let conn = rusqlite::Connection::open_with_flags(&target, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).expect("a reader opens");
                conn.busy_timeout(Duration::from_secs(10)).unwrap();
                check(sqlite_snapshot(&conn), floor, &mut seen);
            }
            seen
        }
    });
    let holder = rusqlite::Connection::open_with_flags(&target, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    assert_eq!(sqlite_snapshot(&holder).version(), Some(1));

    let v2 = sidecars::describing_with(Script::Map(reduce_v2), description("2")).await;
    let rebuilding = tokio::spawn(rebuild(config.clone(), RebuildRequest { automatic: false, sidecar: Some(v2.address.clone()) }, ConnectorControl::default()));
    poll_until("the rebuild to be building", WAIT, || rebuild_report("bg-sqlite-readers").filter(|r| r.state == "building" && r.position > 0)).await;
    // The live connector keeps committing while version 2 is built.
    append_generated(&mut log, 300, 2_000, 82);
    let appended = log.head().unwrap();
    live.wait_for(appended, WAIT).await;
    let report = rebuild_report("bg-sqlite-readers").unwrap();
    assert_eq!(report.state, "building", "the live connector committed while the rebuild was building: {report:?}");
    let v1_now = ReadModel::from_sqlite(&target);
    v1_now.assert_same(&ReadModel::from_log(&ws.log_path(), |_, _| true));

    let outcome = tokio::time::timeout(WAIT, rebuilding).await.expect("the rebuild ends").unwrap().expect("the rebuild succeeds");
    assert_eq!(outcome, RebuildOutcome::Swapped { from: Some("1".into()), to: "2".into(), dropped: vec![] });
    // Readers see version 2 from now on; the one holding the old file open still sees version 1.
    poll_until("a reader to see version 2", WAIT, || {
        let conn = rusqlite::Connection::open(&target).unwrap();
        (sqlite_snapshot(&conn).version() == Some(2)).then_some(())
    })
    .await;
    assert_eq!(sqlite_snapshot(&holder).version(), Some(1), "a reader holding the old file sees it until it reopens");
    let joined = tokio::time::timeout(WAIT, tokio::task::spawn_blocking(move || reader.join())).await;
    stop.store(true, Ordering::SeqCst);
    let seen = joined.expect("the reader saw version 2 in time").unwrap().expect("the reader never saw an empty, half-built or mixed model");
    assert!(seen.v1 > 0 && seen.v2 > 0, "the reader polled across the swap: {seen:?}");
    assert!(std::fs::symlink_metadata(&target).unwrap().file_type().is_symlink());
    ReadModel::from_sqlite(&ws.path("target.db.v1")).assert_same(&v1_now);

    // The live connector, still on version 1's sidecar, pauses; moved to version 2's sidecar, it
    // resumes from version 2's checkpoints and applies what came since.
    live.stop().await.expect("the live connector stops cleanly");
    append_generated(&mut log, 200, 2_000, 83);
    let last = log.head().unwrap();
    let moved = parse_connector(&blue_green_yaml("bg-sqlite-readers", &ws, &v2.address, &sqlite_sink_yaml(&target), 1));
    let mut resumed = Running::start(moved).await;
    resumed.wait_for(last, WAIT).await;
    resumed.stop().await.expect("clean stop");
    ReadModel::from_sqlite(&target).assert_same(&reference_v2(&ws.log_path()));
    drop(v1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_a_failing_rebuild_leaves_version_1_untouched_and_old_versions_go_by_policy() {
    let ws = Workspace::new();
    let log = ws.log_with_events(3_000, 300, 84);
    let head = log.head().unwrap();
    let v1 = sidecars::describing(description("1")).await;
    let config = parse_connector(&blue_green_yaml("bg-sqlite-failing", &ws, &v1.address, &sqlite_sink_yaml(&ws.target_path()), 1));
    let mut live = Running::start(config.clone()).await;
    live.wait_for(head, WAIT).await;
    live.stop().await.expect("clean stop");
    let target = ws.target_path();
    let v1_model = ReadModel::from_sqlite(&target);

    let broken = sidecars::describing_with(Script::BadSqlFor("PaymentRecorded"), description("2")).await;
    let failed = rebuild(config.clone(), RebuildRequest { automatic: false, sidecar: Some(broken.address.clone()) }, ConnectorControl::default()).await;
    let message = failed.expect_err("the rebuild fails").to_string();
    assert!(message.contains("the blue/green rebuild to version 2 failed; the live read model (version 1) is untouched"), "{message}");
    assert!(!std::fs::symlink_metadata(&target).unwrap().file_type().is_symlink(), "nothing was swapped");
    ReadModel::from_sqlite(&target).assert_same(&v1_model);
    let versions = projector_gateway::pipeline::read_model_versions(&config).await.unwrap();
    assert!(versions.iter().any(|v| v.version == "2" && v.state.as_str() == "failed" && v.detail.is_some()), "{versions:?}");

    // 1 -> 2 -> 3 keeping one old version: version 1's file goes, version 2's stays.
    let v2 = sidecars::describing_with(Script::Map(reduce_v2), description("2")).await;
    let outcome = rebuild(config.clone(), RebuildRequest { automatic: false, sidecar: Some(v2.address.clone()) }, ConnectorControl::default()).await.unwrap();
    assert_eq!(outcome, RebuildOutcome::Swapped { from: Some("1".into()), to: "2".into(), dropped: vec![] });
    let v3 = sidecars::describing(description("3")).await;
    let outcome = rebuild(config.clone(), RebuildRequest { automatic: false, sidecar: Some(v3.address.clone()) }, ConnectorControl::default()).await.unwrap();
    assert_eq!(outcome, RebuildOutcome::Swapped { from: Some("2".into()), to: "3".into(), dropped: vec!["1".into()] });
    assert!(!ws.path("target.db.v1").exists(), "version 1 was dropped by the policy");
    ReadModel::from_sqlite(&ws.path("target.db.v2")).assert_same(&reference_v2(&ws.log_path()));
    ReadModel::from_sqlite(&target).assert_same(&ReadModel::from_log(&ws.log_path(), |_, _| true));
    let again = rebuild(config, RebuildRequest { automatic: false, sidecar: Some(v3.address.clone()) }, ConnectorControl::default()).await.unwrap();
    assert_eq!(again, RebuildOutcome::UpToDate { version: "3".into() });
}

/// A PostgreSQL reader's snapshot through its search_path (one statement, one snapshot).
async fn pg_snapshot(client: &tokio_postgres::Client) -> Snapshot {
    let row = client
        .query_one("SELECT count(*), count(*) FILTER (WHERE status = upper(status)) FROM bookings", &[])
        .await
        .expect("a reader's query");
    Snapshot { rows: row.get(0), capitals: row.get(1) }
}

async fn pg_reader(db: &Database) -> tokio_postgres::Client {
    let client = db.client().await;
    client.batch_execute("SET search_path TO rm").await.unwrap();
    client
}

fn pg_sink(db: &Database) -> String {
    postgres_sink_yaml(&db.url) + "        read_model_schema: rm\n"
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_readers_see_version_1_then_version_2_never_an_empty_or_half_built_model() {
    let ws = Workspace::new();
    let db = Database::fresh("bluegreen").await;
    let mut log = ws.log_with_events(20_000, 2_000, 85);
    let head = log.head().unwrap();
    let v1 = sidecars::describing(description("1")).await;
    let config = parse_connector(&blue_green_yaml("bg-postgres-readers", &ws, &v1.address, &pg_sink(&db), 1));
    let mut live = Running::start(config.clone()).await;
    live.wait_for(head, WAIT).await;
    let reader = pg_reader(&db).await;
    let floor = pg_snapshot(&reader).await.rows;
    assert!(floor > 0);

    let stop = Arc::new(AtomicBool::new(false));
    let polling = tokio::spawn({
        let stop = stop.clone();
        async move {
            let mut seen = Seen::default();
            while seen.v2 < 3 && !stop.load(Ordering::SeqCst) {
                check(pg_snapshot(&reader).await, floor, &mut seen);
            }
            seen
        }
    });

    let v2 = sidecars::describing_with(Script::Map(reduce_v2), description("2")).await;
    let rebuilding = tokio::spawn(rebuild(config.clone(), RebuildRequest { automatic: false, sidecar: Some(v2.address.clone()) }, ConnectorControl::default()));
    poll_until("the rebuild to be building", WAIT, || rebuild_report("bg-postgres-readers").filter(|r| r.state == "building" && r.position > 0)).await;
    append_generated(&mut log, 300, 2_000, 86);
    let appended = log.head().unwrap();
    live.wait_for(appended, WAIT).await;
    let report = rebuild_report("bg-postgres-readers").unwrap();
    assert_eq!(report.state, "building", "the live connector committed while the rebuild was building: {report:?}");
    let client = pg_reader(&db).await;
    let v1_now = pg::read_model(&client).await;
    v1_now.assert_same(&ReadModel::from_log(&ws.log_path(), |_, _| true));

    let outcome = tokio::time::timeout(WAIT, rebuilding).await.expect("the rebuild ends").unwrap().expect("the rebuild succeeds");
    assert_eq!(outcome, RebuildOutcome::Swapped { from: Some("1".into()), to: "2".into(), dropped: vec![] });
    let joined = tokio::time::timeout(WAIT, polling).await;
    stop.store(true, Ordering::SeqCst);
    let seen = joined.expect("the reader saw version 2 in time").expect("the reader never saw an empty, half-built or mixed model");
    assert!(seen.v1 > 0 && seen.v2 > 0, "the reader polled across the swap: {seen:?}");
    // Version 1 is kept beside, as it was at the swap.
    client.batch_execute("SET search_path TO rm_v1").await.unwrap();
    let kept = pg::read_model(&client).await;
    assert!(kept.bookings.len() >= v1_now.bookings.len() && kept.bookings.values().all(|b| b.status == b.status.to_lowercase()));
    client.batch_execute("SET search_path TO rm").await.unwrap();

    // The live run on version 1's sidecar is fenced: the swap changed the version its batches
    // check, so what it applies after the swap never reaches version 2's model. It pauses.
    append_generated(&mut log, 100, 2_000, 87);
    let last = log.head().unwrap();
    let paused = poll_until("the live connector to pause after the fence", WAIT, || {
        projector_gateway::telemetry::for_connector("bg-postgres-readers").sidecar_outage.last_failure().map(|(_, reason)| reason)
    })
    .await;
    assert!(paused.contains("the sidecar reports projection version 1, the read model was built by version 2"), "{paused}");
    live.stop().await.expect("the live connector stops cleanly");
    assert_eq!(pg_snapshot(&client).await.version(), Some(2), "no version 1 operation reached version 2's model");

    let moved = parse_connector(&blue_green_yaml("bg-postgres-readers", &ws, &v2.address, &pg_sink(&db), 1));
    let mut resumed = Running::start(moved).await;
    resumed.wait_for(last, WAIT).await;
    resumed.stop().await.expect("clean stop");
    pg::read_model(&client).await.assert_same(&reference_v2(&ws.log_path()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_failing_rebuild_leaves_version_1_untouched_and_old_versions_go_by_policy() {
    let ws = Workspace::new();
    let db = Database::fresh("bluegreenfail").await;
    let log = ws.log_with_events(3_000, 300, 88);
    let head = log.head().unwrap();
    let v1 = sidecars::describing(description("1")).await;
    let config = parse_connector(&blue_green_yaml("bg-postgres-failing", &ws, &v1.address, &pg_sink(&db), 1));
    let mut live = Running::start(config.clone()).await;
    live.wait_for(head, WAIT).await;
    live.stop().await.expect("clean stop");
    let client = pg_reader(&db).await;
    let v1_model = pg::read_model(&client).await;

    let broken = sidecars::describing_with(Script::BadSqlFor("PaymentRecorded"), description("2")).await;
    let failed = rebuild(config.clone(), RebuildRequest { automatic: false, sidecar: Some(broken.address.clone()) }, ConnectorControl::default()).await;
    let message = failed.expect_err("the rebuild fails").to_string();
    assert!(message.contains("the blue/green rebuild to version 2 failed; the live read model (version 1) is untouched"), "{message}");
    pg::read_model(&client).await.assert_same(&v1_model);

    let v2 = sidecars::describing_with(Script::Map(reduce_v2), description("2")).await;
    rebuild(config.clone(), RebuildRequest { automatic: false, sidecar: Some(v2.address.clone()) }, ConnectorControl::default()).await.unwrap();
    let v3 = sidecars::describing(description("3")).await;
    let outcome = rebuild(config.clone(), RebuildRequest { automatic: false, sidecar: Some(v3.address.clone()) }, ConnectorControl::default()).await.unwrap();
    assert_eq!(outcome, RebuildOutcome::Swapped { from: Some("2".into()), to: "3".into(), dropped: vec!["1".into()] });
    let schemas: Vec<String> = client
        .query("SELECT nspname::text FROM pg_namespace WHERE nspname LIKE 'rm%' ORDER BY 1", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(schemas, ["rm", "rm_v2"], "version 1's schema was dropped by the policy, version 2's kept");
    pg::read_model(&client).await.assert_same(&ReadModel::from_log(&ws.log_path(), |_, _| true));
    let checkpoints = pg::checkpoints(&client, "bg-postgres-failing").await;
    assert!(checkpoints.iter().all(|c| c.2 as u64 >= head) && !checkpoints.is_empty(), "{checkpoints:?}");
    drop(v1);
}

// Elasticsearch: versions are indices (`<index>_v<version>`) and readers query `<index>`, an
// alias after the first swap; the read model of these tests starts as a concrete index.

fn elastic_description(version: &str) -> DescribeResponse {
    DescribeResponse { version: version.into(), ..bookings_reducer::elastic_description() }
}

/// Elasticsearch reducer version 2: version 1 with the statuses in capitals.
fn reduce_elastic_v2(request: &ProjectionRequest) -> ProjectionResponse {
    // Slow enough that the test sees the rebuild building while the live connector commits.
    std::thread::sleep(Duration::from_micros(500));
    let response = bookings_reducer::reduce_elastic(request);
    fn capitals(document: Option<&mut prost_types::Struct>) {
        let Some(status) = document.and_then(|d| d.fields.get_mut("status")) else { return };
        if let Some(prost_types::value::Kind::StringValue(text)) = status.kind.as_mut() {
            *text = text.to_uppercase();
        }
    }
    let rewrite = |any: &mut prost_types::Any| {
        if any.type_url.ends_with("projection.Index") {
            let mut index = sp::Index::decode(any.value.as_slice()).expect("an Index");
            capitals(index.document.as_mut());
            any.value = index.encode_to_vec();
        } else if any.type_url.ends_with("projection.Update") {
            let mut update = sp::Update::decode(any.value.as_slice()).expect("an Update");
            capitals(update.document.as_mut());
            any.value = update.encode_to_vec();
        }
    };
    rewrite_operations(response, rewrite)
}

/// A search through the alias (one request, one point in time after the last refresh). A search
/// in flight on the concrete index the first swap deletes (`remove_index`) fails with 503 "all
/// shards failed" (docs/blue-green.md): readers retry it, as they would any transient failure;
/// it never answers with an empty or half-built model.
async fn elastic_snapshot(ix: &Indices) -> Snapshot {
    let query = serde_json::json!({
        "size": 0, "track_total_hits": true,
        "query": {"term": {"kind.keyword": "booking"}},
        "aggs": {"statuses": {"terms": {"field": "status.keyword", "size": 20}}},
    });
    let path = format!("/{}/_search", ix.prefix);
    let mut attempts = 0;
    let reply = loop {
        attempts += 1;
        let body = Some(query.to_string().into_bytes());
        match projector_gateway::sinks::elastic::client::send_json(&ix.client, ::elasticsearch::http::Method::Post, &path, body).await {
            Ok((reply, _)) => break reply,
            Err(e) if e.transient && attempts < 5 => tokio::time::sleep(Duration::from_millis(20)).await,
            Err(e) => panic!("POST {path}: {}", e.message),
        }
    };
    let rows = reply["hits"]["total"]["value"].as_i64().expect("a total");
    let capitals = reply["aggregations"]["statuses"]["buckets"]
        .as_array()
        .expect("buckets")
        .iter()
        .filter(|b| b["key"].as_str().is_some_and(|k| k == k.to_uppercase()))
        .map(|b| b["doc_count"].as_i64().unwrap())
        .sum();
    Snapshot { rows, capitals }
}

/// A read model a reader test polls through a swap: one consistent snapshot of its bookings,
/// and the whole model.
trait Reader: Send + Sync + 'static {
    fn snapshot(&self) -> impl Future<Output = Snapshot> + Send;
    fn model(&self) -> impl Future<Output = ReadModel> + Send;
}

impl Reader for Indices {
    async fn snapshot(&self) -> Snapshot {
        elastic_snapshot(self).await
    }
    async fn model(&self) -> ReadModel {
        self.read_model().await
    }
}

impl Reader for MongoDb {
    async fn snapshot(&self) -> Snapshot {
        mongo_snapshot(self).await
    }
    async fn model(&self) -> ReadModel {
        self.read_model().await
    }
}

/// The middle of a reader test: `live` runs connector `config` on version 1's sidecar and has
/// committed the log; a rebuild to version 2 (sidecar `v2`) runs while a task polls `reader`
/// without pause; events appended meanwhile are committed by the live connector while the
/// rebuild is still building; the rebuild swaps, and the reader saw both versions and never an
/// empty, half-built or mixed model. Returns version 1's model as it was before the swap.
async fn rebuild_while_reading<R: Reader>(
    config: &projector_gateway::config::ConnectorConfig,
    live: &mut Running,
    log: &mut projector_gateway::sources::sqlite::EventLog,
    ws: &Workspace,
    reader: Arc<R>,
    v2: &str,
    seed: u64,
) -> ReadModel {
    let floor = reader.snapshot().await.rows;
    assert!(floor > 0);
    let stop = Arc::new(AtomicBool::new(false));
    let polling = tokio::spawn({
        let (stop, reader) = (stop.clone(), reader.clone());
        async move {
            let mut seen = Seen::default();
            while seen.v2 < 3 && !stop.load(Ordering::SeqCst) {
                check(reader.snapshot().await, floor, &mut seen);
            }
            seen
        }
    });

    let id = config.id.clone();
    let rebuilding = tokio::spawn(rebuild(config.clone(), RebuildRequest { automatic: false, sidecar: Some(v2.to_owned()) }, ConnectorControl::default()));
    poll_until("the rebuild to be building", WAIT, || rebuild_report(&id).filter(|r| r.state == "building" && r.position > 0)).await;
    append_generated(log, 300, 400, seed);
    live.wait_for(log.head().unwrap(), WAIT).await;
    let report = rebuild_report(&id).unwrap();
    assert_eq!(report.state, "building", "the live connector committed while the rebuild was building: {report:?}");
    let v1_now = reader.model().await;
    v1_now.assert_same(&ReadModel::from_log(&ws.log_path(), |_, _| true));

    let outcome = tokio::time::timeout(WAIT, rebuilding).await.expect("the rebuild ends").unwrap().expect("the rebuild succeeds");
    assert_eq!(outcome, RebuildOutcome::Swapped { from: Some("1".into()), to: "2".into(), dropped: vec![] });
    let joined = tokio::time::timeout(WAIT, polling).await;
    stop.store(true, Ordering::SeqCst);
    let seen = joined.expect("the reader saw version 2 in time").expect("the reader never saw an empty, half-built or mixed model");
    assert!(seen.v1 > 0 && seen.v2 > 0, "the reader polled across the swap: {seen:?}");
    v1_now
}

/// The end of a reader test: the live run, still on version 1's sidecar, meets the fence and
/// pauses (no version 1 operation reaches version 2's read model); moved to version 2's sidecar
/// (`moved`) it catches up, and the model is the reference for reducer version 2. Returns the
/// log's head.
async fn fenced_then_moved<R: Reader>(
    live: Running,
    log: &mut projector_gateway::sources::sqlite::EventLog,
    ws: &Workspace,
    reader: &R,
    moved: projector_gateway::config::ConnectorConfig,
    seed: u64,
) -> u64 {
    append_generated(log, 100, 400, seed);
    let last = log.head().unwrap();
    let id = moved.id.clone();
    let paused = poll_until("the live connector to pause after the fence", WAIT, || {
        projector_gateway::telemetry::for_connector(&id).sidecar_outage.last_failure().map(|(_, reason)| reason)
    })
    .await;
    assert!(paused.contains("the sidecar reports projection version 1, the read model was built by version 2"), "{paused}");
    live.stop().await.expect("the live connector stops cleanly");
    assert_eq!(reader.snapshot().await.version(), Some(2), "no version 1 operation reached version 2's read model");

    let mut resumed = Running::start(moved).await;
    resumed.wait_for(last, WAIT).await;
    resumed.stop().await.expect("clean stop");
    reader.model().await.assert_same(&reference_v2(&ws.log_path()));
    last
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn elastic_readers_of_the_alias_see_version_1_then_version_2_never_an_empty_or_half_built_model() {
    let ix = Indices::fresh(Engine::Elasticsearch, "bluegreen");
    let ws = Workspace::new();
    let mut log = ws.log_with_events(4_000, 400, 91);
    let head = log.head().unwrap();
    let v1 = sidecars::describing_with(Script::Map(bookings_reducer::reduce_elastic), elastic_description("1")).await;
    let config = parse_connector(&blue_green_yaml("bg-elastic-readers", &ws, &v1.address, &ix.sink_yaml(""), 1));
    let mut live = Running::start(config.clone()).await;
    live.wait_for(head, WAIT).await;
    ix.request(::elasticsearch::http::Method::Post, &format!("/{}/_refresh", ix.prefix), None).await;

    let ix = Arc::new(ix);
    let v2 = sidecars::describing_with(Script::Map(reduce_elastic_v2), elastic_description("2")).await;
    let v1_now = rebuild_while_reading(&config, &mut live, &mut log, &ws, ix.clone(), &v2.address, 92).await;
    let aliases = ix.request(::elasticsearch::http::Method::Get, &format!("/_alias/{}", ix.prefix), None).await;
    let targets: Vec<&String> = aliases.as_object().unwrap().keys().collect();
    assert_eq!(targets, [&format!("{}_v2", ix.prefix)], "{aliases}");
    // Version 1 is kept beside (a clone of the concrete index it was), as it was at the swap.
    let kept = ix.documents(&format!("{}_v1", ix.prefix)).await;
    assert!(kept.iter().filter(|(_, d)| d["kind"] == "booking").count() >= v1_now.bookings.len());

    // The live run on version 1's sidecar meets the fence: it reopens on version 2 and pauses.
    let moved = parse_connector(&blue_green_yaml("bg-elastic-readers", &ws, &v2.address, &ix.sink_yaml(""), 1));
    let last = fenced_then_moved(live, &mut log, &ws, &*ix, moved, 93).await;
    // Each version's checkpoints are its own: version 2's under its id, at the head.
    let checkpoints = ix.checkpoints("bg-elastic-readers@v2").await;
    assert!(!checkpoints.is_empty() && checkpoints.values().all(|p| *p >= head) && checkpoints.values().max() == Some(&last), "{checkpoints:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn elastic_old_versions_go_by_policy_and_later_swaps_move_the_alias() {
    elastic_policy(Engine::Elasticsearch, "bg-elastic-policy").await
}

/// OpenSearch has `_clone` and `remove_index` too: the same swaps.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opensearch_old_versions_go_by_policy_and_later_swaps_move_the_alias() {
    elastic_policy(Engine::OpenSearch, "bg-opensearch-policy").await
}

async fn elastic_policy(engine: Engine, id: &str) {
    let ix = Indices::fresh(engine, "bgpolicy");
    let ws = Workspace::new();
    let log = ws.log_with_events(1_000, 100, 94);
    let v1 = sidecars::describing_with(Script::Map(bookings_reducer::reduce_elastic), elastic_description("1")).await;
    let config = parse_connector(&blue_green_yaml(id, &ws, &v1.address, &ix.sink_yaml(""), 1));
    let mut live = Running::start(config.clone()).await;
    live.wait_for(log.head().unwrap(), WAIT).await;
    live.stop().await.expect("clean stop");

    let v2 = sidecars::describing_with(Script::Map(reduce_elastic_v2), elastic_description("2")).await;
    let outcome = rebuild(config.clone(), RebuildRequest { automatic: false, sidecar: Some(v2.address.clone()) }, ConnectorControl::default()).await.unwrap();
    assert_eq!(outcome, RebuildOutcome::Swapped { from: Some("1".into()), to: "2".into(), dropped: vec![] });
    ix.read_model().await.assert_same(&reference_v2(&ws.log_path()));
    let v3 = sidecars::describing_with(Script::Map(bookings_reducer::reduce_elastic), elastic_description("3")).await;
    let outcome = rebuild(config.clone(), RebuildRequest { automatic: false, sidecar: Some(v3.address.clone()) }, ConnectorControl::default()).await.unwrap();
    assert_eq!(outcome, RebuildOutcome::Swapped { from: Some("2".into()), to: "3".into(), dropped: vec!["1".into()] });
    ix.read_model().await.assert_same(&ReadModel::from_log(&ws.log_path(), |_, _| true));
    let indices = ix.request(::elasticsearch::http::Method::Get, &format!("/_cat/indices/{}*?format=json&h=index", ix.prefix), None).await;
    let mut names: Vec<&str> = indices.as_array().unwrap().iter().filter_map(|i| i["index"].as_str()).filter(|n| n.contains("_v")).collect();
    names.sort();
    assert_eq!(names, [format!("{}_v2", ix.prefix), format!("{}_v3", ix.prefix)], "version 1's index was dropped by the policy");
    let again = rebuild(config, RebuildRequest { automatic: false, sidecar: Some(v3.address.clone()) }, ConnectorControl::default()).await.unwrap();
    assert_eq!(again, RebuildOutcome::UpToDate { version: "3".into() });
}

// MongoDB (SecantusDB: transactions, `renameCollection` with `dropTarget`): versions are
// collections (`bookings_v2`, `guest_stats_v2`) renamed over the live ones one by one.

fn mongo_description(version: &str) -> DescribeResponse {
    DescribeResponse { version: version.into(), ..bookings_reducer::mongo_description() }
}

/// MongoDB reducer version 2: version 1 with the statuses in capitals.
fn reduce_mongo_v2(request: &ProjectionRequest) -> ProjectionResponse {
    std::thread::sleep(Duration::from_micros(500));
    let response = bookings_reducer::reduce_mongo(request);
    let rewrite = |any: &mut prost_types::Any| {
        if !any.type_url.ends_with("projection.UpdateOne") {
            return;
        }
        let mut update = sp::UpdateOne::decode(any.value.as_slice()).expect("an UpdateOne");
        let set = update.update.as_mut().and_then(|u| u.fields.get_mut("$set")).and_then(|s| match s.kind.as_mut() {
            Some(prost_types::value::Kind::StructValue(set)) => Some(set),
            _ => None,
        });
        if let Some(Some(prost_types::value::Kind::StringValue(status))) = set.and_then(|s| s.fields.get_mut("status")).map(|v| v.kind.as_mut()) {
            *status = status.to_uppercase();
        }
        any.value = update.encode_to_vec();
    };
    rewrite_operations(response, rewrite)
}

/// One aggregation over `bookings` (one snapshot of the collection).
async fn mongo_snapshot(db: &MongoDb) -> Snapshot {
    use futures::TryStreamExt;
    let pipeline = [mongodb::bson::doc! { "$group": {
        "_id": null,
        "rows": { "$sum": 1 },
        "capitals": { "$sum": { "$cond": [ { "$eq": [ "$status", { "$toUpper": "$status" } ] }, 1, 0 ] } },
    } }];
    let rows: Vec<mongodb::bson::Document> =
        db.db.collection::<mongodb::bson::Document>("bookings").aggregate(pipeline).await.expect("aggregate").try_collect().await.expect("rows");
    let int = |d: &mongodb::bson::Document, k: &str| match d.get(k) {
        Some(mongodb::bson::Bson::Int32(i)) => i64::from(*i),
        Some(mongodb::bson::Bson::Int64(i)) => *i,
        other => panic!("{k}: {other:?}"),
    };
    rows.first().map(|d| Snapshot { rows: int(d, "rows"), capitals: int(d, "capitals") }).unwrap_or(Snapshot { rows: 0, capitals: 0 })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mongo_readers_see_version_1_then_version_2_collection_by_collection_never_empty() {
    let db = MongoDb::fresh(MongoServer::Secantus, "bluegreen").await;
    let ws = Workspace::new();
    let mut log = ws.log_with_events(4_000, 400, 95);
    let head = log.head().unwrap();
    let v1 = sidecars::describing_with(Script::Map(bookings_reducer::reduce_mongo), mongo_description("1")).await;
    let config = parse_connector(&blue_green_yaml("bg-mongo-readers", &ws, &v1.address, &db.sink_yaml(""), 1));
    let mut live = Running::start(config.clone()).await;
    live.wait_for(head, WAIT).await;

    let db = Arc::new(db);
    let v2 = sidecars::describing_with(Script::Map(reduce_mongo_v2), mongo_description("2")).await;
    let v1_now = rebuild_while_reading(&config, &mut live, &mut log, &ws, db.clone(), &v2.address, 96).await;
    let kept = db.documents("bookings_v1").await;
    assert!(kept.len() >= v1_now.bookings.len() && kept.iter().all(|d| d.get_str("status").is_ok_and(|s| s == s.to_lowercase())));

    // The live run on version 1's sidecar meets the fence and pauses.
    let moved = parse_connector(&blue_green_yaml("bg-mongo-readers", &ws, &v2.address, &db.sink_yaml(""), 1));
    fenced_then_moved(live, &mut log, &ws, &*db, moved, 97).await;
    let mut names = db.db.list_collection_names().await.unwrap();
    names.sort();
    assert_eq!(names, ["bookings", "bookings_v1", "checkpoints", "guest_stats", "guest_stats_v1"].map(String::from).to_vec());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mongo_old_versions_go_by_policy() {
    let db = MongoDb::fresh(MongoServer::Secantus, "bgpolicy").await;
    let ws = Workspace::new();
    let log = ws.log_with_events(1_000, 100, 98);
    let v1 = sidecars::describing_with(Script::Map(bookings_reducer::reduce_mongo), mongo_description("1")).await;
    let config = parse_connector(&blue_green_yaml("bg-mongo-policy", &ws, &v1.address, &db.sink_yaml(""), 1));
    let mut live = Running::start(config.clone()).await;
    live.wait_for(log.head().unwrap(), WAIT).await;
    live.stop().await.expect("clean stop");
    let v2 = sidecars::describing_with(Script::Map(reduce_mongo_v2), mongo_description("2")).await;
    let outcome = rebuild(config.clone(), RebuildRequest { automatic: false, sidecar: Some(v2.address.clone()) }, ConnectorControl::default()).await.unwrap();
    assert_eq!(outcome, RebuildOutcome::Swapped { from: Some("1".into()), to: "2".into(), dropped: vec![] });
    db.read_model().await.assert_same(&reference_v2(&ws.log_path()));
    let v3 = sidecars::describing_with(Script::Map(bookings_reducer::reduce_mongo), mongo_description("3")).await;
    let outcome = rebuild(config.clone(), RebuildRequest { automatic: false, sidecar: Some(v3.address.clone()) }, ConnectorControl::default()).await.unwrap();
    assert_eq!(outcome, RebuildOutcome::Swapped { from: Some("2".into()), to: "3".into(), dropped: vec!["1".into()] });
    db.read_model().await.assert_same(&ReadModel::from_log(&ws.log_path(), |_, _| true));
    let mut names = db.db.list_collection_names().await.unwrap();
    names.sort();
    assert_eq!(names, ["bookings", "bookings_v2", "checkpoints", "guest_stats", "guest_stats_v2"].map(String::from).to_vec());
    let checkpoints = db.checkpoints("bg-mongo-policy").await;
    assert!(!checkpoints.is_empty() && checkpoints.values().all(|p| *p as u64 == log.head().unwrap()), "{checkpoints:?}");
}
