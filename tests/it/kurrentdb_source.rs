//! The KurrentDB `$all` source, through the real `kurrentdb` client. Each case runs against the
//! in-repo test server (`tests/it/support/kurrentdb`, the official gRPC protos; no KurrentDB server
//! can be installed here) and, in `real_server`, against a real KurrentDB / EventStoreDB when
//! `KURRENTDB_URL` is set (skipped otherwise; docs/sources.md, "KurrentDB"): catch-up then live
//! and a restart after the checkpoint, server-side filters and the checkpoints that move a
//! connector that matches nothing, events that are not JSON, credentials, the checkpoint
//! stream of producers, an Eventuous Connector file. Resubscription after drops ("consumer too
//! slow", a node going away) and an unreachable server need a server the test controls: the
//! test server only.

use crate::support::{kurrentdb as kurrentdb_server, kurrentdb_log};

use std::time::Duration;

use kurrentdb::{Client, ReadStreamOptions, StreamMetadataResult, StreamPosition};
use projector_gateway::{
    checkpoint::CheckpointRow,
    config::{CheckpointStoreConfig, FilterConfig, KurrentdbSourceConfig, NonJsonEvents},
    event::ContentType,
    sinks::checkpoint_store::CheckpointStore,
    sources::{EventSource, SourceBatch, kurrentdb::KurrentdbSource},
};
use crate::support::{
    bookings_model::ReadModel,
    fixtures::*,
    sidecars::{self, Script},
};
use kurrentdb_log::{Appended, TestLog};
use kurrentdb_server::{TestKurrentDb, consumer_too_slow};

const WAIT: Duration = Duration::from_secs(120);

/// Events a filtered subscription reads between two checkpoints from the server.
const CHECKPOINT_INTERVAL: u32 = 50;

fn source_yaml(connection_string: &str) -> String {
    format!("      kurrentdb: {{ connection_string: \"{connection_string}\", checkpoint_interval: {CHECKPOINT_INTERVAL} }}\n")
}

fn source_config(connection_string: &str) -> KurrentdbSourceConfig {
    KurrentdbSourceConfig {
        connection_string: connection_string.into(),
        checkpoint_interval: CHECKPOINT_INTERVAL,
        batch_size: 500,
        non_json: NonJsonEvents::Pass,
        resolve_links: false,
    }
}

/// A connector from the log's own streams (`streams`: those starting with it) through
/// `sidecar` into a SQLite target in `ws`.
fn connector_yaml(log: &TestLog, streams: &str, sidecar: &str, ws: &Workspace, setup: Setup) -> (String, Setup) {
    let setup = Setup { extra_filter: log.filter_yaml(streams), ..setup };
    (connector_yaml_from(&source_yaml(&log.url), sidecar, &sqlite_sink_yaml(&ws.target_path()), &setup), setup)
}

/// Reads batches until `end` reaches `position`, returning every event read.
async fn read_until(source: &mut KurrentdbSource, position: u64) -> SourceBatch {
    let mut all = SourceBatch::default();
    tokio::time::timeout(WAIT, async {
        while all.end < position {
            let batch = source.next_batch().await.expect("read");
            all.end = batch.end;
            all.events.extend(batch.events);
        }
    })
    .await
    .unwrap_or_else(|_| panic!("the source did not reach {position}; read up to {}", all.end));
    all
}

/// The positions of the events a source with `filter` delivers after the test's start, up to
/// `last`.
async fn crossing(log: &TestLog, config: &KurrentdbSourceConfig, filter: &FilterConfig, last: u64) -> Vec<u64> {
    let mut source = KurrentdbSource::open(config, filter, log.start).await.expect("open");
    read_until(&mut source, last).await.events.iter().map(|e| e.position).collect()
}

/// `url` with its password replaced (`None` when it has no credentials).
fn with_password(url: &str, password: &str) -> Option<String> {
    let scheme = url.find("://")? + 3;
    let at = scheme + url[scheme..].find('@')?;
    let user = url[scheme..at].split_once(':')?.0;
    Some(format!("{}{user}:{password}{}", &url[..scheme], &url[at..]))
}

/// `url` as the gateway's messages show it, credentials left out.
fn without_credentials(url: &str) -> String {
    match (url.find("://"), url.find('@')) {
        (Some(scheme), Some(at)) if at > scheme => format!("{}{}", &url[..scheme + 3], &url[at + 1..]),
        _ => url.to_owned(),
    }
}

/// How many events a stream holds (0 when it does not exist).
async fn count_events(client: &Client, stream: &str) -> usize {
    let mut read = match client.read_stream(stream, &ReadStreamOptions::default()).await {
        Ok(read) => read,
        Err(kurrentdb::Error::ResourceNotFound) => return 0,
        Err(e) => panic!("read {stream}: {e}"),
    };
    let mut count = 0;
    loop {
        match read.next().await {
            Ok(Some(_)) => count += 1,
            Ok(None) | Err(kurrentdb::Error::ResourceNotFound) => return count,
            Err(e) => panic!("read {stream}: {e}"),
        }
    }
}

// The cases, each run against the test server below and against a real server in
// `real_server`.

/// Catch-up then live on one subscription; restarted, the connector resumes after its
/// checkpoint: only the new events reach the sidecar, and nothing is applied twice (the guest
/// counters would show it).
async fn catch_up_live_and_restart(log: &TestLog) {
    log.fill(4_000, 400, 1).await;
    let ws = Workspace::new();
    let sidecar = sidecars::rust_reducer().await;
    let (yaml, _) = connector_yaml(log, "", &sidecar.address, &ws, Setup::default());
    let mut running = Running::start(parse_connector(&yaml)).await;

    running.wait_for(log.last(), WAIT).await;
    ReadModel::from_sqlite(&ws.target_path()).assert_same(&log.reference());

    log.fill(600, 100, 2).await;
    running.wait_for(log.last(), WAIT).await;
    ReadModel::from_sqlite(&ws.target_path()).assert_same(&log.reference());
    if let Some(subscriptions) = log.subscriptions() {
        assert_eq!(subscriptions, 1, "one subscription took it from catch-up to live");
    }
    running.stop().await.expect("clean stop");

    let before = sidecar.requests();
    log.fill(300, 100, 3).await;
    let mut running = Running::start(parse_connector(&yaml)).await;
    running.wait_for(log.last(), WAIT).await;
    ReadModel::from_sqlite(&ws.target_path()).assert_same(&log.reference());
    running.stop().await.expect("clean stop");
    assert_eq!(sidecar.requests() - before, 300, "after the restart, only the events appended meanwhile reached the sidecar");
}

/// The server reports its read position every `CHECKPOINT_INTERVAL` events it filters out:
/// the checkpoint of a connector whose filter matches nothing follows them although no event
/// reaches the sidecar.
async fn checkpoint_of_a_connector_that_matches_nothing(log: &TestLog) {
    log.fill(1_000, 100, 6).await;
    let ws = Workspace::new();
    let sidecar = sidecars::rust_reducer().await;
    let (yaml, setup) = connector_yaml(log, "invoice-", &sidecar.address, &ws, Setup::default());
    let mut running = Running::start(parse_connector(&yaml)).await;

    // The test server's `$all` is the test's events alone: a checkpoint falls on the last one.
    // A real server counts system and other tests' events too, so the last checkpoint it
    // reports inside the test's events is only known to be within the last window or so.
    let slack = if log.is_real() { 4 * CHECKPOINT_INTERVAL as usize } else { 0 };
    let checkpointed = log.position(999 - slack);
    running.wait_for(checkpointed, WAIT).await;
    assert_eq!(sidecar.requests(), 0, "no event crossed the wire");
    running.stop().await.expect("clean stop");
    assert!(sqlite_low_watermark(&ws.target_path(), &setup.id, setup.partitions) >= checkpointed);
}

/// A stream-prefix filter and an event-type filter are applied by the server: exactly the
/// matching events are delivered.
async fn filters_pushed_to_the_server(log: &TestLog) {
    let paid = log.stream("InvoicePaid");
    for i in 0..10 {
        log.append_json(&log.stream(&format!("booking-{}", i % 3)), "RoomBooked", serde_json::json!({ "bookingId": i })).await;
        log.append_json(&log.stream(&format!("invoice-{}", i % 2)), "InvoiceIssued", serde_json::json!({ "invoice": i })).await;
        log.append_json(&log.stream(&format!("invoice-{}", i % 2)), &paid, serde_json::json!({ "invoice": i })).await;
    }
    let (config, last) = (source_config(&log.url), log.last());
    let expected = |keep: &dyn Fn(&Appended) -> bool| -> Vec<u64> {
        log.appended().iter().filter(|e| keep(e)).map(|e| e.position).collect()
    };

    let invoices = log.stream("invoice-");
    let on_streams = FilterConfig { include_stream_prefixes: vec![invoices.clone()], ..FilterConfig::default() };
    let crossed = crossing(log, &config, &on_streams, last).await;
    assert_eq!(crossed, expected(&|e| e.stream.starts_with(&invoices)), "only the invoice streams' events crossed");

    let on_types = FilterConfig { include_types: vec![paid.clone()], ..FilterConfig::default() };
    let crossed = crossing(log, &config, &on_types, last).await;
    assert_eq!(crossed, expected(&|e| e.event_type == paid), "only `{paid}` events crossed");
}

/// Events that are not JSON are passed as bytes, or skipped; the stream's metadata (a system
/// event) is left out; a resumed source reads only what comes after its position.
async fn events_that_are_not_json(log: &TestLog) {
    let stream = log.stream("booking-1");
    log.append_json(&stream, "RoomBooked", serde_json::json!({ "bookingId": "1" })).await;
    let binary = log.append(&stream, "Scanned", false, b"\x00\x01PDF".to_vec()).await;
    log.append_json(&format!("$${stream}"), "$metadata", serde_json::json!({ "$maxCount": 10 })).await;
    let last = log.append_json(&stream, "GuestCheckedIn", serde_json::json!({ "bookingId": "1" })).await;

    let config = source_config(&log.url);
    let mut source = KurrentdbSource::open(&config, &log.filter(""), log.start).await.expect("open");
    let read = read_until(&mut source, last).await;
    let types: Vec<&str> = read.events.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(types, ["RoomBooked", "Scanned", "GuestCheckedIn"], "system events are filtered out by the server");
    let scanned = &read.events[1];
    assert_eq!((scanned.position, scanned.content_type, &scanned.data[..]), (binary, ContentType::Binary, &b"\x00\x01PDF"[..]));
    let first = &read.events[0];
    assert_eq!((first.stream.as_str(), first.revision, first.content_type), (stream.as_str(), 0, ContentType::Json));
    assert_eq!(first.event_id, log.appended()[0].id);
    assert!((chrono::Utc::now() - first.created).num_seconds() < 60, "created keeps the server's stamp: {}", first.created);

    let skipping = KurrentdbSourceConfig { non_json: NonJsonEvents::Skip, ..config };
    let mut source = KurrentdbSource::open(&skipping, &log.filter(""), log.start).await.expect("open");
    let read = read_until(&mut source, last).await;
    let types: Vec<&str> = read.events.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(types, ["RoomBooked", "GuestCheckedIn"]);

    // Resuming after a position reads only what comes after it.
    let mut source = KurrentdbSource::open(&skipping, &log.filter(""), binary).await.expect("open");
    let read = read_until(&mut source, last).await;
    assert_eq!(read.events.iter().map(|e| e.position).collect::<Vec<_>>(), [last]);
}

/// Wrong credentials are refused at open, with a message that does not show them; the right
/// ones (`url`) read.
async fn credentials_checked_at_open(log: &TestLog, url: &str) {
    let last = log.append_json(&log.stream("booking-1"), "RoomBooked", serde_json::json!({})).await;
    let wrong = with_password(url, "not-the-password").expect("credentials in the connection string");

    let denied = KurrentdbSource::open(&source_config(&wrong), &log.filter(""), log.start).await;
    let message = denied.err().expect("wrong password refused").to_string();
    assert!(message.contains("access denied") && message.contains("fix the credentials"), "{message}");
    assert!(!message.contains("not-the-password") && message.contains(&without_credentials(url)), "{message}");

    assert_eq!(crossing(log, &source_config(url), &log.filter(""), last).await, [last]);
}

/// A producer's checkpoints in the stream `$connectors/<id>/checkpoints` of the source's
/// KurrentDB, with `$maxCount` metadata; returns the store's connector id.
async fn producer_checkpoints_in_a_capped_stream(log: &TestLog) -> String {
    let id = format!("{}tail", log.prefix);
    let config = CheckpointStoreConfig::Kurrentdb { connection_string: None, stream: None };
    let store = CheckpointStore::open(Some(&config), &id, Some(&log.url)).await.expect("open");
    assert!(store.rows().is_empty());
    store.save(4, &[(0, 1_000), (2, 1_200)]).await.expect("save");
    store.save(4, &[(0, 1_500), (2, 1_100)]).await.expect("save");

    let reopened = CheckpointStore::open(Some(&config), &id, Some(&log.url)).await.expect("reopen");
    let mut rows = reopened.rows();
    rows.sort_by_key(|r| r.partition);
    let row = |partition, position| CheckpointRow { partition_count: 4, partition, position };
    assert_eq!(rows, [row(0, 1_500), row(2, 1_200)], "latest save, positions never moved back");

    let stream = format!("$connectors/{id}/checkpoints");
    let client = log.client();
    assert_eq!(count_events(&client, &stream).await, 2, "one event per save");
    let last = ReadStreamOptions::default().position(StreamPosition::End).backwards().max_count(1);
    match client.get_stream_metadata(stream.as_str(), &last).await.expect("read the metadata") {
        StreamMetadataResult::Success(m) => assert_eq!(m.metadata().max_count, Some(10), "{m:?}"),
        other => panic!("no metadata on {stream}: {other:?}"),
    }

    // Without a KurrentDB source, the store needs its own connection string.
    let message = CheckpointStore::open(Some(&config), &id, None).await.err().unwrap().to_string();
    assert!(message.contains("no connection_string, and the source is not KurrentDB"), "{message}");
    id
}

/// A user's Eventuous Connector file (EsdbMongo) run as it is by the gateway process: the
/// KurrentDB source, the sidecar at `grpc.uri` (answering with `reducer`), the MongoDB target
/// (SecantusDB).
#[cfg(feature = "mongo")]
async fn eventuous_connector_file(log: &TestLog, reducer: fn(&ProjectionRequest) -> ProjectionResponse) {
    use crate::support::{mongo::{MongoDb, Server}, processes};
    log.fill(2_000, 200, 8).await;
    let db = MongoDb::fresh(Server::Secantus, "eventuous").await;
    let sidecar = sidecars::scripted(Script::Map(reducer)).await;
    let ws = Workspace::new();
    let file = ws.path("config-project.yaml");
    let text = format!(
        "connector:\n  connectorId: \"esdb-mongo-connector\"\n  connectorAssembly: \"Eventuous.Connector.EsdbMongo\"\n  diagnostics:\n    tracing:\n      enabled: true\n      exporters: [zipkin]\n    traceSamplerProbability: 0\nsource:\n  connectionString: \"{}\"\n  concurrencyLimit: 4\ntarget:\n  connectionString: \"{}\"\n  database: {}\n  collection: bookings\ngrpc:\n  uri: \"{}\"\n  credentials: \"insecure\"\n",
        log.url,
        Server::Secantus.url(),
        db.name,
        sidecar.address
    );
    std::fs::write(&file, text).unwrap();

    let mut gateway = processes::gateway_run(&file, ws.path(".").as_path(), "gateway");
    let head = log.last();
    let deadline = std::time::Instant::now() + WAIT;
    while db.low_watermark("esdb-mongo-connector", 4).await < head {
        assert!(gateway.child.try_wait().unwrap().is_none(), "the gateway stopped:\n{}", gateway.stderr());
        assert!(std::time::Instant::now() < deadline, "not at {head} in time:\n{}", gateway.stderr());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    gateway.signal(processes::SIGTERM);
    assert!(gateway.wait_exit(Duration::from_secs(30)).success(), "{}", gateway.stderr());
    db.read_model().await.assert_same(&log.reference());
}

#[cfg(feature = "mongo")]
use bookings_reducer::proto::{ProjectionRequest, ProjectionResponse};

// Against the test server.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catches_up_then_follows_live_appends_and_resumes_after_its_checkpoint() {
    catch_up_live_and_restart(&TestLog::double(TestKurrentDb::start().await)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resubscribes_after_drops_without_gaps_or_duplicates() {
    let log = TestLog::double(TestKurrentDb::start().await);
    let server = log.server();
    log.fill(12_000, 1_000, 4).await;
    let ws = Workspace::new();
    let sidecar = sidecars::rust_reducer().await;
    let (yaml, _) = connector_yaml(&log, "", &sidecar.address, &ws, Setup { window: 16, max_ops: 50, ..Setup::default() });
    let mut running = Running::start(parse_connector(&yaml)).await;

    running.wait_for(log.position(2_000), WAIT).await;
    server.drop_subscriptions(consumer_too_slow());
    poll_until("a second subscription", WAIT, || (server.subscriptions() >= 2).then_some(())).await;

    running.wait_for(log.position(6_000), WAIT).await;
    server.drop_subscriptions(tonic::Status::unavailable("Server Is Not Ready"));
    poll_until("a third subscription", WAIT, || (server.subscriptions() >= 3).then_some(())).await;

    // Dropped while live, too, with appends made while it was away.
    running.wait_for(log.last(), WAIT).await;
    server.drop_subscriptions(consumer_too_slow());
    log.fill(500, 100, 5).await;
    running.wait_for(log.last(), WAIT).await;
    ReadModel::from_sqlite(&ws.target_path()).assert_same(&log.reference());
    assert!(server.subscriptions() >= 4, "resubscribed after each drop: {}", server.subscriptions());
    running.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connector_that_matches_nothing_still_moves_its_checkpoint() {
    checkpoint_of_a_connector_that_matches_nothing(&TestLog::double(TestKurrentDb::start().await)).await;
}

#[tokio::test]
async fn filters_are_applied_by_the_server() {
    filters_pushed_to_the_server(&TestLog::double(TestKurrentDb::start().await)).await;
}

#[tokio::test]
async fn events_that_are_not_json_are_passed_as_bytes_or_skipped_and_system_events_left_out() {
    events_that_are_not_json(&TestLog::double(TestKurrentDb::start().await)).await;
}

#[tokio::test]
async fn credentials_are_checked_at_open_with_a_message_that_does_not_show_them() {
    let server = TestKurrentDb::with_credentials("admin", "changeit").await;
    let url = format!("esdb://admin:changeit@127.0.0.1:{}?tls=false", server.port);
    credentials_checked_at_open(&TestLog::double(server), &url).await;
}

#[tokio::test]
async fn an_unreachable_server_is_reported_at_open() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let config = source_config(&format!("esdb://127.0.0.1:{port}?tls=false&maxDiscoverAttempts=2&discoveryInterval=100"));
    let started = std::time::Instant::now();
    let message = KurrentdbSource::open(&config, &FilterConfig::default(), 0).await.err().expect("unreachable").to_string();
    assert!(message.starts_with(&format!("cannot open the event log at esdb://127.0.0.1:{port}")), "{message}");
    assert!(started.elapsed() < Duration::from_secs(30), "reported in {:?}", started.elapsed());
}

#[tokio::test]
async fn producer_checkpoints_live_in_a_capped_stream_of_the_source_database() {
    producer_checkpoints_in_a_capped_stream(&TestLog::double(TestKurrentDb::start().await)).await;
}

#[cfg(feature = "mongo")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_eventuous_connector_file_runs_unchanged() {
    eventuous_connector_file(&TestLog::double(TestKurrentDb::start().await), bookings_reducer::reduce_mongo).await;
}

/// The same cases against a real KurrentDB or EventStoreDB at `KURRENTDB_URL`, e.g. the
/// official image started with `docker run -d -p 2113:2113
/// docker.kurrent.io/kurrent-latest/kurrentdb --insecure --run-projections=All` and
/// `KURRENTDB_URL='esdb://127.0.0.1:2113?tls=false' cargo test --test kurrentdb_source
/// real_server`. Each test is skipped, with a note, when the variable is not set. The server
/// may hold anything: each test writes to streams of its own and reads through a filter on
/// them.
mod real_server {
    use super::*;

    /// A log on the real server for one test, or `None` (with a note) without `KURRENTDB_URL`.
    async fn log() -> Option<TestLog> {
        match kurrentdb_log::real_url() {
            Some(url) => Some(TestLog::real(&url).await),
            None => {
                println!("KURRENTDB_URL is not set: skipping the real KurrentDB case (README, \"KurrentDB source\")");
                None
            }
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn catches_up_then_follows_live_appends_and_resumes_after_its_checkpoint() {
        let Some(log) = log().await else { return };
        catch_up_live_and_restart(&log).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_connector_that_matches_nothing_still_moves_its_checkpoint() {
        let Some(log) = log().await else { return };
        checkpoint_of_a_connector_that_matches_nothing(&log).await;
    }

    #[tokio::test]
    async fn filters_are_applied_by_the_server() {
        let Some(log) = log().await else { return };
        filters_pushed_to_the_server(&log).await;
    }

    #[tokio::test]
    async fn events_that_are_not_json_are_passed_as_bytes_or_skipped_and_system_events_left_out() {
        let Some(log) = log().await else { return };
        events_that_are_not_json(&log).await;
    }

    /// Needs a secure server and credentials in `KURRENTDB_URL` (an `--insecure` server takes
    /// any).
    #[tokio::test]
    async fn credentials_are_checked_at_open_with_a_message_that_does_not_show_them() {
        let Some(log) = log().await else { return };
        if with_password(&log.url, "").is_none() || log.url.to_ascii_lowercase().contains("tls=false") {
            println!("KURRENTDB_URL has no credentials or is an insecure server (tls=false), which takes any: skipping the access-denied case");
            return;
        }
        let url = log.url.clone();
        credentials_checked_at_open(&log, &url).await;
    }

    /// The shared case, then what only a real server does: `$maxCount` keeps the last 10 saves.
    #[tokio::test]
    async fn producer_checkpoints_live_in_a_capped_stream_of_the_source_database() {
        let Some(log) = log().await else { return };
        let id = producer_checkpoints_in_a_capped_stream(&log).await;
        let config = CheckpointStoreConfig::Kurrentdb { connection_string: None, stream: None };
        let store = CheckpointStore::open(Some(&config), &id, Some(&log.url)).await.expect("reopen");
        for save in 1..=12u64 {
            store.save(4, &[(0, 1_500 + save), (2, 1_200 + save)]).await.expect("save");
        }
        let stream = format!("$connectors/{id}/checkpoints");
        assert_eq!(count_events(&log.client(), &stream).await, 10, "the server keeps the last 10 saves of {stream}");
        let reopened = CheckpointStore::open(Some(&config), &id, Some(&log.url)).await.expect("reopen");
        let mut rows = reopened.rows();
        rows.sort_by_key(|r| r.partition);
        assert_eq!(rows.iter().map(|r| r.position).collect::<Vec<_>>(), [1_512, 1_212], "the last save is read back");
    }

    /// The gateway reads all of `$all` (an Eventuous file has no filter): the sidecar answers
    /// events of the test's own streams and ignores the others, which are other tests'.
    #[cfg(feature = "mongo")]
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_eventuous_connector_file_runs_unchanged() {
        let Some(log) = log().await else { return };
        OWN_STREAMS.set(log.prefix.clone()).expect("one test sets the prefix");
        eventuous_connector_file(&log, reduce_own_streams).await;
    }

    /// The prefix of the streams of `an_eventuous_connector_file_runs_unchanged`.
    #[cfg(feature = "mongo")]
    static OWN_STREAMS: std::sync::OnceLock<String> = std::sync::OnceLock::new();

    /// The bookings reducer for the test's own streams; an answer without operations (ignored)
    /// for the rest.
    #[cfg(feature = "mongo")]
    fn reduce_own_streams(request: &ProjectionRequest) -> ProjectionResponse {
        match OWN_STREAMS.get() {
            Some(prefix) if request.stream.starts_with(prefix.as_str()) => bookings_reducer::reduce_mongo(request),
            _ => ProjectionResponse { event_id: request.event_id.clone(), ..ProjectionResponse::default() },
        }
    }
}

/// Eventuous's EsdbElastic files run as they are by the gateway process, in both modes, into a
/// real Elasticsearch: `project` (the sidecar's operations into `dataStream.indexName`) and
/// `produce` (every event a document of the data stream, with the template the file names).
#[cfg(feature = "elastic")]
mod eventuous_elastic {
    use std::time::{Duration, Instant};

    use ::elasticsearch::http::{Method, headers::HeaderMap};
    use serde_json::json;

    use super::{Script, TestKurrentDb, TestLog, WAIT, sidecars};
    use crate::support::{
        elastic::{Engine, Indices},
        elastic_bookings::reduce_elastic,
        fixtures::Workspace,
        processes::{self, Process},
    };

    fn file(id: &str, log: &TestLog, target: &str) -> String {
        format!(
            "connector:\n  connectorId: \"{id}\"\n  connectorAssembly: \"Eventuous.Connector.EsdbElastic\"\nsource:\n  connectionString: \"{}\"\n  concurrencyLimit: 2\ntarget:\n  connectionString: \"{}\"\n{target}",
            log.url,
            Engine::Elasticsearch.url()
        )
    }

    /// Polls `done` until it holds, failing when the gateway stops or time runs out.
    async fn until<F: Future<Output = bool>>(gateway: &mut Process, what: &str, mut done: impl FnMut() -> F) {
        let deadline = Instant::now() + WAIT;
        while !done().await {
            assert!(gateway.child.try_wait().unwrap().is_none(), "the gateway stopped:\n{}", gateway.stderr());
            assert!(Instant::now() < deadline, "{what} not reached in time:\n{}", gateway.stderr());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn stop(mut gateway: Process) {
        gateway.signal(processes::SIGTERM);
        assert!(gateway.wait_exit(Duration::from_secs(30)).success(), "{}", gateway.stderr());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_eventuous_elastic_project_file_runs_unchanged() {
        let log = TestLog::double(TestKurrentDb::start().await);
        log.fill(1_500, 150, 9).await;
        let ix = Indices::fresh(Engine::Elasticsearch, "eventuous");
        let sidecar = sidecars::scripted(Script::Map(reduce_elastic)).await;
        let ws = Workspace::new();
        let path = ws.path("config-project.yaml");
        let target = format!("  connectorMode: \"project\"\n  dataStream:\n    indexName: \"{}\"\ngrpc:\n  uri: \"{}\"\n", ix.prefix, sidecar.address);
        std::fs::write(&path, file(&ix.prefix, &log, &target)).unwrap();
        let mut gateway = processes::gateway_run(&path, ws.path(".").as_path(), "gateway");
        let head = log.last();
        // The checkpoints go to the default `checkpoints` index, under the file's connectorId.
        until(&mut gateway, "the head", || async {
            let positions: Vec<u64> = ix
                .documents("checkpoints")
                .await
                .into_iter()
                .filter(|(_, d)| d["connector"] == ix.prefix.as_str() && d["kind"] == "checkpoint")
                .filter_map(|(_, d)| d["position"].as_u64())
                .collect();
            positions.len() == 2 && positions.iter().all(|p| *p >= head)
        })
        .await;
        stop(gateway);
        ix.read_model().await.assert_same(&log.reference());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_eventuous_elastic_produce_file_runs_unchanged() {
        let log = TestLog::double(TestKurrentDb::start().await);
        log.fill(500, 50, 10).await;
        let ix = Indices::fresh(Engine::Elasticsearch, "eventuous-log");
        let ws = Workspace::new();
        let path = ws.path("config-produce.yaml");
        let stream = format!("{}-eventlog", ix.prefix);
        let target = format!(
            "  connectorMode: \"produce\"\n  dataStream:\n    indexName: \"{stream}\"\n    template:\n      templateName: \"{}-template\"\n      numberOrReplicas: 0\n",
            ix.prefix
        );
        std::fs::write(&path, file(&ix.prefix, &log, &target)).unwrap();
        let mut gateway = processes::gateway_run(&path, ws.path(".").as_path(), "gateway");
        let events = log.appended().len() as u64;
        // The data stream appears with the first batch: until then the count is "no such index".
        let count = || async {
            let (refresh, count) = (format!("/{stream}/_refresh"), format!("/{stream}/_count"));
            let send = |method, path| ix.client.send(method, path, HeaderMap::new(), Option::<&()>::None, Option::<Vec<u8>>::None, None);
            send(Method::Post, &refresh).await.ok()?;
            let answer = send(Method::Get, &count).await.ok()?;
            answer.json::<serde_json::Value>().await.ok()?["count"].as_u64()
        };
        until(&mut gateway, "every event archived", || async { count().await == Some(events) }).await;
        stop(gateway);
        let template = ix.request(Method::Get, &format!("/_index_template/{}-template", ix.prefix), None).await;
        let t = &template["index_templates"][0]["index_template"];
        assert_eq!(t["data_stream"], json!({"hidden": false, "allow_custom_routing": false}), "{t}");
        assert_eq!(t["template"]["settings"]["index"]["number_of_replicas"], "0", "{t}");
    }
}
