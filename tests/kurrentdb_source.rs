//! The KurrentDB `$all` source, through the real `kurrentdb` client against the in-repo test
//! server (`tests/support/kurrentdb`, the official gRPC protos; no KurrentDB server can be
//! installed here): catch-up then live, resubscription after drops ("consumer too slow", a node
//! going away) without gaps or duplicates, server-side filters with checkpoints that move a
//! connector that matches nothing, events that are not JSON, credentials, and an unreachable
//! server.

mod support;
// Only the KurrentDB tests compile the test server.
#[path = "support/kurrentdb/mod.rs"]
mod kurrentdb_server;

use std::time::Duration;

use projector_gateway::{
    config::{FilterConfig, KurrentdbSourceConfig, NonJsonEvents},
    demo::BookingsGenerator,
    event::ContentType,
    sources::{EventSource, SourceBatch, kurrentdb::KurrentdbSource},
};
use support::{
    bookings_model::ReadModel,
    fixtures::*,
    sidecars::{self, Script},
};
use kurrentdb_server::{TestKurrentDb, consumer_too_slow};

const WAIT: Duration = Duration::from_secs(120);

/// Appends `count` generated bookings events, one append per event as an application would.
fn fill(server: &TestKurrentDb, count: usize, streams: usize, seed: u64) {
    let mut generator = BookingsGenerator::new(seed, streams);
    for event in generator.take(count) {
        let data: serde_json::Value = serde_json::from_str(&event.data).unwrap();
        server.append_json(&event.stream, &[(event.event_type.as_str(), data)]);
    }
}

/// The read model the reducer must build from the server's events.
fn reference(server: &TestKurrentDb) -> ReadModel {
    let mut model = ReadModel::default();
    for e in server.events() {
        if e.is_json {
            model.apply(e.position as i64, &e.event_type, &serde_json::from_slice(&e.data).unwrap());
        }
    }
    model
}

fn source_yaml(connection_string: &str) -> String {
    format!("      kurrentdb: {{ connection_string: \"{connection_string}\", checkpoint_interval: 50 }}\n")
}

fn source_config(connection_string: &str) -> KurrentdbSourceConfig {
    KurrentdbSourceConfig {
        connection_string: connection_string.into(),
        checkpoint_interval: 50,
        batch_size: 500,
        non_json: NonJsonEvents::Pass,
        resolve_links: false,
    }
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catches_up_then_follows_live_appends() {
    let server = TestKurrentDb::start().await;
    fill(&server, 4_000, 400, 1);
    let ws = Workspace::new();
    let sidecar = sidecars::rust_reducer().await;
    let yaml = connector_yaml_from(&source_yaml(&server.connection_string()), &sidecar.address, &sqlite_sink_yaml(&ws.target_path()), &Setup::default());
    let mut running = Running::start(parse_connector(&yaml)).await;

    running.wait_for(server.head(), WAIT).await;
    ReadModel::from_sqlite(&ws.target_path()).assert_same(&reference(&server));

    fill(&server, 600, 100, 2);
    running.wait_for(server.head(), WAIT).await;
    ReadModel::from_sqlite(&ws.target_path()).assert_same(&reference(&server));
    assert_eq!(server.subscriptions(), 1, "one subscription took it from catch-up to live");
    running.stop().await.expect("clean stop");

    // Restarted, it resumes after its checkpoint: nothing is applied twice (the guest counters
    // would show it).
    fill(&server, 300, 100, 3);
    let mut running = Running::start(parse_connector(&yaml)).await;
    running.wait_for(server.head(), WAIT).await;
    ReadModel::from_sqlite(&ws.target_path()).assert_same(&reference(&server));
    running.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resubscribes_after_drops_without_gaps_or_duplicates() {
    let server = TestKurrentDb::start().await;
    fill(&server, 12_000, 1_000, 4);
    let ws = Workspace::new();
    let sidecar = sidecars::rust_reducer().await;
    let setup = Setup { window: 16, max_ops: 50, ..Setup::default() };
    let yaml = connector_yaml_from(&source_yaml(&server.connection_string()), &sidecar.address, &sqlite_sink_yaml(&ws.target_path()), &setup);
    let mut running = Running::start(parse_connector(&yaml)).await;

    let first = server.events()[2_000].position;
    running.wait_for(first, WAIT).await;
    server.drop_subscriptions(consumer_too_slow());
    poll_until("a second subscription", WAIT, || (server.subscriptions() >= 2).then_some(())).await;

    let second = server.events()[6_000].position;
    running.wait_for(second, WAIT).await;
    server.drop_subscriptions(tonic::Status::unavailable("Server Is Not Ready"));
    poll_until("a third subscription", WAIT, || (server.subscriptions() >= 3).then_some(())).await;

    // Dropped while live, too, with appends made while it was away.
    running.wait_for(server.head(), WAIT).await;
    server.drop_subscriptions(consumer_too_slow());
    fill(&server, 500, 100, 5);
    running.wait_for(server.head(), WAIT).await;
    ReadModel::from_sqlite(&ws.target_path()).assert_same(&reference(&server));
    assert!(server.subscriptions() >= 4, "resubscribed after each drop: {}", server.subscriptions());
    running.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connector_that_matches_nothing_still_moves_its_checkpoint() {
    let server = TestKurrentDb::start().await;
    fill(&server, 1_000, 100, 6);
    let ws = Workspace::new();
    let sidecar = sidecars::rust_reducer().await;
    let setup = Setup { extra_filter: "{ include_stream_prefixes: [\"invoice-\"] }".into(), ..Setup::default() };
    let yaml = connector_yaml_from(&source_yaml(&server.connection_string()), &sidecar.address, &sqlite_sink_yaml(&ws.target_path()), &setup);
    let mut running = Running::start(parse_connector(&yaml)).await;

    // The server filters every event out and reports a checkpoint every 50 events read: the
    // connector's checkpoint follows them although no event reached the sidecar.
    let last_checkpoint = server.events()[999].position;
    running.wait_for(last_checkpoint, WAIT).await;
    assert_eq!(sidecar.requests(), 0, "no event crossed the wire");
    running.stop().await.expect("clean stop");
    assert!(sqlite_low_watermark(&ws.target_path(), "bookings", setup.partitions) >= last_checkpoint);
}

#[tokio::test]
async fn events_that_are_not_json_are_passed_as_bytes_or_skipped_and_system_events_left_out() {
    let server = TestKurrentDb::start().await;
    server.append_json("booking-1", &[("RoomBooked", serde_json::json!({ "bookingId": "1" }))]);
    let binary = server.append_binary("booking-1", "Scanned", b"\x00\x01PDF");
    server.append_json("$$booking-1", &[("$metadata", serde_json::json!({ "$maxCount": 10 }))]);
    let last = server.append_json("booking-1", &[("GuestCheckedIn", serde_json::json!({ "bookingId": "1" }))])[0];

    let config = source_config(&server.connection_string());
    let mut source = KurrentdbSource::open(&config, &FilterConfig::default(), 0).await.expect("open");
    let read = read_until(&mut source, last).await;
    let types: Vec<&str> = read.events.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(types, ["RoomBooked", "Scanned", "GuestCheckedIn"], "system events are filtered out by the server");
    let scanned = &read.events[1];
    assert_eq!((scanned.position, scanned.content_type, &scanned.data[..]), (binary, ContentType::Binary, &b"\x00\x01PDF"[..]));
    let first = &read.events[0];
    assert_eq!((first.stream.as_str(), first.revision, first.content_type), ("booking-1", 0, ContentType::Json));
    assert_eq!(first.event_id, server.events()[0].id);
    assert!((chrono::Utc::now() - first.created).num_seconds() < 60, "created keeps the server's stamp: {}", first.created);

    let skipping = KurrentdbSourceConfig { non_json: NonJsonEvents::Skip, ..config };
    let mut source = KurrentdbSource::open(&skipping, &FilterConfig::default(), 0).await.expect("open");
    let read = read_until(&mut source, last).await;
    let types: Vec<&str> = read.events.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(types, ["RoomBooked", "GuestCheckedIn"]);

    // Resuming after a position reads only what comes after it.
    let mut source = KurrentdbSource::open(&skipping, &FilterConfig::default(), binary).await.expect("open");
    let read = read_until(&mut source, last).await;
    assert_eq!(read.events.iter().map(|e| e.position).collect::<Vec<_>>(), [last]);
}

#[tokio::test]
async fn credentials_are_checked_at_open_with_a_message_that_does_not_show_them() {
    let server = TestKurrentDb::with_credentials("admin", "changeit").await;
    let last = server.append_json("booking-1", &[("RoomBooked", serde_json::json!({}))])[0];
    let url = |user: &str| format!("esdb://{user}@127.0.0.1:{}?tls=false", server.port);

    let denied = KurrentdbSource::open(&source_config(&url("admin:wrong")), &FilterConfig::default(), 0).await;
    let message = denied.err().expect("wrong password refused").to_string();
    assert!(message.contains("access denied") && message.contains("fix the credentials"), "{message}");
    assert!(!message.contains("wrong") && message.contains(&format!("esdb://127.0.0.1:{}", server.port)), "{message}");

    let mut source = KurrentdbSource::open(&source_config(&url("admin:changeit")), &FilterConfig::default(), 0).await.expect("open");
    assert_eq!(read_until(&mut source, last).await.events.len(), 1);
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
    use projector_gateway::{checkpoint::CheckpointRow, config::CheckpointStoreConfig, sinks::checkpoint_store::CheckpointStore};
    let server = TestKurrentDb::start().await;
    let url = server.connection_string();
    let config = CheckpointStoreConfig::Kurrentdb { connection_string: None, stream: None };
    let store = CheckpointStore::open(Some(&config), "tail", Some(&url)).await.expect("open");
    assert!(store.rows().is_empty());
    store.save(4, &[(0, 1_000), (2, 1_200)]).await.expect("save");
    store.save(4, &[(0, 1_500), (2, 1_100)]).await.expect("save");

    let reopened = CheckpointStore::open(Some(&config), "tail", Some(&url)).await.expect("reopen");
    let mut rows = reopened.rows();
    rows.sort_by_key(|r| r.partition);
    let row = |partition, position| CheckpointRow { partition_count: 4, partition, position };
    assert_eq!(rows, [row(0, 1_500), row(2, 1_200)], "latest save, positions never moved back");

    let events = server.events();
    let saves = events.iter().filter(|e| e.stream == "$connectors/tail/checkpoints").count();
    assert_eq!(saves, 2);
    let metadata = events.iter().find(|e| e.stream == "$$$connectors/tail/checkpoints").expect("stream metadata written");
    let metadata: serde_json::Value = serde_json::from_slice(&metadata.data).unwrap();
    assert_eq!(metadata["$maxCount"], 10, "{metadata}");

    // Without a KurrentDB source, the store needs its own connection string.
    let message = CheckpointStore::open(Some(&config), "tail", None).await.err().unwrap().to_string();
    assert!(message.contains("no connection_string, and the source is not KurrentDB"), "{message}");
}

/// A user's Eventuous Connector file (EsdbMongo) run as it is by the gateway process: the
/// KurrentDB source, the sidecar at `grpc.uri`, the MongoDB target (SecantusDB).
#[cfg(feature = "mongo")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_eventuous_connector_file_runs_unchanged() {
    use support::{mongo::{MongoDb, Server}, processes};
    let server = TestKurrentDb::start().await;
    fill(&server, 2_000, 200, 8);
    let db = MongoDb::fresh(Server::Secantus, "eventuous").await;
    let sidecar = sidecars::scripted(Script::Map(bookings_reducer::reduce_mongo)).await;
    let ws = Workspace::new();
    let file = ws.path("config-project.yaml");
    let text = format!(
        "connector:\n  connectorId: \"esdb-mongo-connector\"\n  connectorAssembly: \"Eventuous.Connector.EsdbMongo\"\n  diagnostics:\n    tracing:\n      enabled: true\n      exporters: [zipkin]\n    traceSamplerProbability: 0\nsource:\n  connectionString: \"{}\"\n  concurrencyLimit: 4\ntarget:\n  connectionString: \"{}\"\n  database: {}\n  collection: bookings\ngrpc:\n  uri: \"{}\"\n  credentials: \"insecure\"\n",
        server.connection_string(),
        Server::Secantus.url(),
        db.name,
        sidecar.address
    );
    std::fs::write(&file, text).unwrap();

    let mut gateway = processes::gateway_run(&file, ws.path(".").as_path(), "gateway");
    let head = server.head();
    let deadline = std::time::Instant::now() + WAIT;
    while db.low_watermark("esdb-mongo-connector", 4).await < head {
        assert!(gateway.child.try_wait().unwrap().is_none(), "the gateway stopped:\n{}", gateway.stderr());
        assert!(std::time::Instant::now() < deadline, "not at {head} in time:\n{}", gateway.stderr());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    gateway.signal(processes::SIGTERM);
    assert!(gateway.wait_exit(Duration::from_secs(30)).success(), "{}", gateway.stderr());
    db.read_model().await.assert_same(&reference(&server));
}

/// Eventuous's EsdbElastic files run as they are by the gateway process, in both modes, into a
/// real Elasticsearch: `project` (the sidecar's operations into `dataStream.indexName`) and
/// `produce` (every event a document of the data stream, with the template the file names).
#[cfg(feature = "elastic")]
mod eventuous_elastic {
    use std::time::{Duration, Instant};

    use ::elasticsearch::http::{Method, headers::HeaderMap};
    use serde_json::json;

    use super::{TestKurrentDb, WAIT, fill, reference, sidecars, Script};
    use crate::support::{
        elastic::{Engine, Indices},
        elastic_bookings::reduce_elastic,
        fixtures::Workspace,
        processes::{self, Process},
    };

    fn file(id: &str, server: &TestKurrentDb, target: &str) -> String {
        format!(
            "connector:\n  connectorId: \"{id}\"\n  connectorAssembly: \"Eventuous.Connector.EsdbElastic\"\nsource:\n  connectionString: \"{}\"\n  concurrencyLimit: 2\ntarget:\n  connectionString: \"{}\"\n{target}",
            server.connection_string(),
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
        let server = TestKurrentDb::start().await;
        fill(&server, 1_500, 150, 9);
        let ix = Indices::fresh(Engine::Elasticsearch, "eventuous");
        let sidecar = sidecars::scripted(Script::Map(reduce_elastic)).await;
        let ws = Workspace::new();
        let path = ws.path("config-project.yaml");
        let target = format!("  connectorMode: \"project\"\n  dataStream:\n    indexName: \"{}\"\ngrpc:\n  uri: \"{}\"\n", ix.prefix, sidecar.address);
        std::fs::write(&path, file(&ix.prefix, &server, &target)).unwrap();
        let mut gateway = processes::gateway_run(&path, ws.path(".").as_path(), "gateway");
        let head = server.head();
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
        ix.read_model().await.assert_same(&reference(&server));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_eventuous_elastic_produce_file_runs_unchanged() {
        let server = TestKurrentDb::start().await;
        fill(&server, 500, 50, 10);
        let ix = Indices::fresh(Engine::Elasticsearch, "eventuous-log");
        let ws = Workspace::new();
        let path = ws.path("config-produce.yaml");
        let stream = format!("{}-eventlog", ix.prefix);
        let target = format!(
            "  connectorMode: \"produce\"\n  dataStream:\n    indexName: \"{stream}\"\n    template:\n      templateName: \"{}-template\"\n      numberOrReplicas: 0\n",
            ix.prefix
        );
        std::fs::write(&path, file(&ix.prefix, &server, &target)).unwrap();
        let mut gateway = processes::gateway_run(&path, ws.path(".").as_path(), "gateway");
        let events = server.events().len() as u64;
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
