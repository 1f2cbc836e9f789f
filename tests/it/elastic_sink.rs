//! The Elasticsearch target against real engines started by `scripts/elastic.sh`, the whole
//! suite once per engine: Elasticsearch 8 (its `integ-test-zip` distribution) and OpenSearch 2
//! (docs/targets/elasticsearch.md says what these distributions lack). Operations through
//! the sink's writer, external versions under replay, item-level failures, an engine that goes
//! away, parking, checkpoints across restarts, producer mode with templates and data streams,
//! and the whole gateway with a scripted sidecar.

#![cfg(feature = "elastic")]

use std::{sync::Arc, time::Duration};

use bookings_reducer::proto::{ProjectionRequest, ProjectionResponse};
use bytes::Bytes;
use ::elasticsearch::http::Method;
use projector_gateway::{
    config::{ConnectorMode, ElasticLifecyclePolicy, ElasticProducerConfig, ElasticSinkConfig},
    event::{ContentType, Event},
    payload::json_to_struct,
    proto::{self, names, pack},
    sinks::{
        ApplyError, Batch, BatchItem, EventRef, Sink, SinkWriter,
        elastic::{ElasticSink, ElasticWriter, elastic_names},
    },
};
use prost_types::{Any, Struct};
use serde_json::json;
use crate::support::{
    bookings_model::ReadModel,
    elastic::{Engine, Indices},
    elastic_bookings::reduce_elastic,
    fixtures::*,
    processes::free_port,
    sidecars::{self, Script},
};
use tokio::{net::TcpListener, task::JoinHandle};

const WAIT: Duration = Duration::from_secs(120);

fn everything(_: &str, _: &str) -> bool {
    true
}

fn st(json: &str) -> Struct {
    json_to_struct(json.as_bytes()).unwrap()
}

async fn open(ix: &Indices) -> ElasticSink {
    let sink = ElasticSink::open(&ix.config(), "ops", ConnectorMode::Projector).await.expect("open the sink");
    assert_eq!(sink.engine(), ix.engine.detected(), "the engine detected on {}", ix.engine.name());
    sink
}

fn event(position: u64, stream: &str) -> EventRef {
    EventRef::new(
        Arc::new(Event {
            position,
            stream: stream.into(),
            revision: 0,
            event_type: "Tested".into(),
            event_id: format!("e-{position}"),
            data: Bytes::from_static(b"{}"),
            content_type: ContentType::Json,
            metadata: None,
            created: chrono::Utc::now(),
        }),
        0,
    )
}

/// A batch on partition 0 of 1: event i (position `first_position + i`) answers `ops[i]`.
fn batch(sink: &ElasticSink, first_position: u64, events: Vec<Vec<Any>>) -> Arc<Batch<projector_gateway::sinks::elastic::ElasticOp>> {
    let items = events
        .into_iter()
        .enumerate()
        .map(|(i, ops)| {
            let position = first_position + i as u64;
            let ops = ops.iter().map(|op| sink.decode(op).expect("decodes").expect("not Ignore")).collect();
            BatchItem::Apply { event: event(position, &format!("s-{position}")), ops }
        })
        .collect();
    Arc::new(Batch::new(items, 1))
}

async fn apply(sink: &ElasticSink, first_position: u64, events: Vec<Vec<Any>>) -> Result<(), ApplyError> {
    let mut writer = sink.open_writer().await.expect("writer");
    writer.apply(batch(sink, first_position, events)).await
}

fn index(id: &str, json: &str) -> Any {
    pack(elastic_names::INDEX, &proto::Index { id: id.into(), document: Some(st(json)), ..Default::default() })
}

fn index_versioned(id: &str, json: &str) -> Any {
    pack(elastic_names::INDEX, &proto::Index { id: id.into(), document: Some(st(json)), external_version: true, ..Default::default() })
}

fn update(id: &str, json: &str) -> Any {
    pack(elastic_names::UPDATE, &proto::Update { id: id.into(), document: Some(st(json)), ..Default::default() })
}

fn delete(id: &str) -> Any {
    pack(elastic_names::DELETE, &proto::Delete { id: id.into(), ..Default::default() })
}

async fn every_operation_with_its_semantics(engine: Engine) {
    let ix = Indices::fresh(engine, "ops");
    let sink = open(&ix).await;
    let other = format!("{}-other", ix.prefix);
    let upsert = |id: &str, doc: &str, upsert: Option<&str>, as_upsert: bool| {
        pack(elastic_names::UPDATE, &proto::Update { id: id.into(), document: Some(st(doc)), upsert: upsert.map(st), doc_as_upsert: as_upsert, ..Default::default() })
    };
    apply(
        &sink,
        1,
        vec![
            vec![index("a", r#"{"k": "x", "n": 1, "price": 24000, "ratio": 0.5}"#), index("b", r#"{"k": "y"}"#)],
            vec![update("a", r#"{"n": 2, "seen": true}"#)],
            vec![upsert("c", r#"{"k": "doc"}"#, None, true), upsert("d", r#"{"k": "doc"}"#, Some(r#"{"k": "inserted"}"#), true)],
            vec![upsert("d", r#"{"k": "merged"}"#, Some(r#"{"k": "not used"}"#), false)],
            vec![index("b", r#"{"k": "replaced"}"#)],
            vec![index("gone", r#"{"k": "g"}"#), delete("gone"), delete("never-there")],
            vec![pack(elastic_names::INDEX, &proto::Index { id: "x".into(), document: Some(st(r#"{"in": "other"}"#)), index: other.clone(), ..Default::default() })],
            vec![],
        ],
    )
    .await
    .expect("applied");
    assert_eq!(ix.get(&ix.prefix, "a").await.unwrap(), json!({"k": "x", "n": 2, "price": 24000, "ratio": 0.5, "seen": true}), "Update merged");
    assert_eq!(ix.get(&ix.prefix, "b").await.unwrap(), json!({"k": "replaced"}), "Index replaced the whole document");
    assert_eq!(ix.get(&ix.prefix, "c").await.unwrap(), json!({"k": "doc"}), "docAsUpsert inserted the document");
    assert_eq!(ix.get(&ix.prefix, "d").await.unwrap(), json!({"k": "merged"}), "upsert inserted, then the update merged");
    assert_eq!(ix.get(&ix.prefix, "gone").await, None, "deleted");
    assert_eq!(ix.get(&other, "x").await.unwrap(), json!({"in": "other"}), "the per-operation index");
    // Whole numbers are JSON integers: dynamic mapping made `price` a long, not a float.
    let mapping = ix.request(Method::Get, &format!("/{}/_mapping", ix.prefix), None).await;
    let properties = &mapping[&ix.prefix]["mappings"]["properties"];
    assert_eq!(properties["price"]["type"], "long", "{properties}");
    assert_eq!(properties["ratio"]["type"], "float", "{properties}");
    assert_eq!(ix.checkpoints("ops").await.get(&(1, 0)), Some(&8), "checkpoint at the last event");
    // Ignore decodes to nothing; an operation naming no index needs the default.
    assert_eq!(sink.decode(&pack(names::IGNORE, &proto::Ignore {})).unwrap(), None);
    let mut c = ix.config();
    c.index = None;
    let without_default = ElasticSink::open(&c, "ops", ConnectorMode::Projector).await.unwrap();
    let e = without_default.decode(&delete("a")).unwrap_err().to_string();
    assert!(e.contains("names no `index` and the connector has no default (`sink.elastic.index`)"), "{e}");
}

async fn external_versions_keep_replays_from_overwriting_newer_state(engine: Engine) {
    let ix = Indices::fresh(engine, "versions");
    let sink = open(&ix).await;
    // Event 5 writes v1; event 8 writes v2 twice in one event (same version: both apply).
    apply(&sink, 5, vec![vec![index_versioned("doc", r#"{"v": 1}"#)]]).await.expect("event 5");
    apply(&sink, 8, vec![vec![index_versioned("doc", r#"{"v": 2}"#), index_versioned("doc", r#"{"v": 3}"#)]]).await.expect("event 8");
    assert_eq!(ix.get(&ix.prefix, "doc").await.unwrap(), json!({"v": 3}));
    assert_eq!(ix.version(&ix.prefix, "doc").await, 8, "the document's version is the event's position");
    // A replay of event 5 (after a crash before its checkpoint, say): the engine refuses the
    // older version, which counts as applied, and the checkpoint moves.
    apply(&sink, 5, vec![vec![index_versioned("doc", r#"{"v": 1}"#)]]).await.expect("the replay counts as applied");
    assert_eq!(ix.get(&ix.prefix, "doc").await.unwrap(), json!({"v": 3}), "newer state kept");
    // A versioned delete of an older event does not remove the newer document either.
    let old_delete = pack(elastic_names::DELETE, &proto::Delete { id: "doc".into(), external_version: true, ..Default::default() });
    apply(&sink, 6, vec![vec![old_delete.clone()]]).await.expect("older delete counts as applied");
    assert_eq!(ix.get(&ix.prefix, "doc").await.unwrap(), json!({"v": 3}));
    apply(&sink, 9, vec![vec![old_delete]]).await.expect("newer delete");
    assert_eq!(ix.get(&ix.prefix, "doc").await, None, "a newer versioned delete removes it");
    // Unversioned, a replay overwrites (what `externalVersion` is for).
    apply(&sink, 10, vec![vec![index("plain", r#"{"v": 2}"#)]]).await.unwrap();
    apply(&sink, 7, vec![vec![index("plain", r#"{"v": 1}"#)]]).await.unwrap();
    assert_eq!(ix.get(&ix.prefix, "plain").await.unwrap(), json!({"v": 1}));
}

async fn item_level_failures_name_their_event_and_nothing_is_sent_twice(engine: Engine) {
    let ix = Indices::fresh(engine, "items");
    let sink = open(&ix).await;
    let mut writer = sink.open_writer().await.unwrap();
    writer.apply(batch(&sink, 1, vec![vec![index("n", r#"{"n": 1}"#)]])).await.expect("maps `n` as a long");
    let failing = batch(
        &sink,
        2,
        vec![
            vec![index("before", r#"{"k": 1}"#)],
            vec![index("conflict", r#"{"n": "not a number"}"#)],
            vec![index("after", r#"{"k": 2}"#)],
        ],
    );
    let e = writer.apply(failing.clone()).await.expect_err("mapping conflict");
    assert_eq!(e.failed_at, Some(1), "{e:?}");
    assert!(!e.transient);
    assert!(e.message.contains(&format!("Elasticsearch target `{}`", ix.engine.url())), "{}", e.message);
    assert!(e.message.contains("operation 1 of event e-3 (Tested in stream `s-3`) at position 3"), "{}", e.message);
    assert!(e.message.contains("rejected by the mapping or as invalid: HTTP 400") && e.message.contains("[n]"), "{}", e.message);
    assert!(e.message.contains("Index of `conflict`"), "{}", e.message);
    // No transactions: the other items were applied, the checkpoint was not written.
    assert!(ix.get(&ix.prefix, "before").await.is_some() && ix.get(&ix.prefix, "after").await.is_some());
    assert_eq!(ix.checkpoints("ops").await.get(&(1, 0)), Some(&1), "the checkpoint did not move");
    // What the pipeline does next (poison policy skip): the events around the culprit are
    // applied again by the same writer, which does not send what was applied.
    let Batch { items, .. } = Arc::try_unwrap(failing).unwrap();
    let rest: Vec<_> = items
        .into_iter()
        .map(|item| match item {
            BatchItem::Apply { event, .. } if event.event.position == 3 => BatchItem::Advance { partition: 0, position: 3 },
            other => other,
        })
        .collect();
    writer.apply(Arc::new(Batch::new(rest, 1))).await.expect("the rest");
    assert_eq!(ix.version(&ix.prefix, "before").await, 1, "not indexed twice");
    assert_eq!(ix.version(&ix.prefix, "after").await, 1, "not indexed twice");
    assert_eq!(ix.checkpoints("ops").await.get(&(1, 0)), Some(&4));

    // An update of a missing document, and a script in a language the engine does not have.
    let e = apply(&sink, 10, vec![vec![update("missing", r#"{"k": 1}"#)]]).await.expect_err("missing document");
    assert_eq!(e.failed_at, Some(0));
    assert!(e.message.contains("the document does not exist (send Update with `docAsUpsert` or `upsert` to create it): HTTP 404"), "{}", e.message);
    assert!(e.message.contains("document_missing_exception"), "{}", e.message);
    let script = pack(
        elastic_names::UPDATE_SCRIPT,
        &proto::UpdateScript {
            id: "n".into(),
            script: Some(proto::Script { lang: "painless".into(), source: "ctx._source.n += 1".into(), params: None }),
            ..Default::default()
        },
    );
    let e = apply(&sink, 11, vec![vec![script]]).await.expect_err("these distributions have no painless");
    assert_eq!(e.failed_at, Some(0));
    assert!(e.message.contains("painless") && e.message.contains("HTTP 400"), "{}", e.message);
    assert_eq!(ix.get(&ix.prefix, "n").await.unwrap(), json!({"n": 1}), "the script did not run");
}

/// A loopback TCP forwarder to the engine that a test can take down and bring back, so the
/// engine becomes unreachable for the sink without stopping the shared engine.
struct Proxy {
    port: u16,
    target: u16,
    task: Option<JoinHandle<()>>,
}

impl Proxy {
    async fn start(target: u16) -> Self {
        let mut proxy = Self { port: free_port(), target, task: None };
        proxy.up().await;
        proxy
    }

    async fn up(&mut self) {
        let listener = TcpListener::bind(("127.0.0.1", self.port)).await.expect("bind the proxy");
        let target = self.target;
        self.task = Some(tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            while let Ok((mut inbound, _)) = listener.accept().await {
                connections.spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(("127.0.0.1", target)).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        }));
    }

    /// Closes the listener and every connection through it.
    async fn down(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
    }
}

fn port_of(url: &str) -> u16 {
    url.rsplit(':').next().unwrap().trim_end_matches('/').parse().unwrap()
}

async fn an_engine_that_goes_away_is_retried_and_an_unreachable_one_named(engine: Engine) {
    let ix = Indices::fresh(engine, "away");
    let mut c = ix.config();
    c.url = format!("http://127.0.0.1:{}", free_port());
    let e = ElasticSink::open(&c, "ops", ConnectorMode::Projector).await.err().expect("cannot open").0;
    assert!(e.starts_with(&format!("cannot reach the Elasticsearch target `{}`: server unreachable", c.url)), "{e}");
    assert!(e.ends_with("; start it, or fix `sink.elastic.url`"), "{e}");

    let mut proxy = Proxy::start(port_of(ix.engine.url())).await;
    c.url = format!("http://127.0.0.1:{}", proxy.port);
    let sink = ElasticSink::open(&c, "ops", ConnectorMode::Projector).await.expect("open through the proxy");
    let mut writer: ElasticWriter = sink.open_writer().await.unwrap();
    writer.apply(batch(&sink, 1, vec![vec![index("a", "{}")]])).await.expect("through the proxy");
    proxy.down().await;
    let e = writer.apply(batch(&sink, 2, vec![vec![index("b", "{}")]])).await.expect_err("the engine is gone");
    assert!(e.transient, "{e:?}");
    assert_eq!(e.failed_at, None);
    assert!(e.message.starts_with(&format!("Elasticsearch target `{}`: a _bulk request of 1 item(s) failed: ", c.url)), "{}", e.message);
    assert!(e.message.contains("server unreachable") || e.message.contains("connection lost"), "{}", e.message);
    // Through the pipeline's writer the same failure is retried with backoff until it passes.
    proxy.up().await;
    writer.apply(batch(&sink, 2, vec![vec![index("b", "{}")]])).await.expect("back");
    assert!(ix.get(&ix.prefix, "b").await.is_some());
    assert_eq!(ix.checkpoints("ops").await.get(&(1, 0)), Some(&2));
}

async fn bookings_match_the_reference_across_restarts(engine: Engine) {
    let ix = Indices::fresh(engine, "bookings");
    let ws = Workspace::new();
    let mut log = ws.log_with_events(3_000, 300, 71);
    let yaml = |address: &str| connector_yaml(&ws.log_path(), address, &ix.sink_yaml("        writers: 2\n"), &Setup::default());

    let first_sidecar = sidecars::scripted(Script::Map(reduce_elastic)).await;
    let mut first = Running::start(parse_connector(&yaml(&first_sidecar.address))).await;
    first.wait_for(log.head().unwrap(), WAIT).await;
    first.stop().await.expect("clean stop");
    ix.read_model().await.assert_same(&ReadModel::from_log(&ws.log_path(), everything));

    let before = log.head().unwrap();
    append_generated(&mut log, 1_000, 200, 72);
    let second_sidecar = sidecars::scripted(Script::Map(reduce_elastic)).await;
    let mut second = Running::start(parse_connector(&yaml(&second_sidecar.address))).await;
    second.wait_for(log.head().unwrap(), WAIT).await;
    second.stop().await.expect("clean stop");
    // The checkpoints were restored: only the new events went to the sidecar.
    assert_eq!(second_sidecar.requests(), log.head().unwrap() - before, "events sent after the restart");
    ix.read_model().await.assert_same(&ReadModel::from_log(&ws.log_path(), everything));
    let head = log.head().unwrap();
    let rows = ix.checkpoints("bookings").await;
    assert_eq!(rows.len(), 4, "{rows:?}");
    assert!(rows.iter().all(|((count, _), position)| *count == 4 && *position == head), "{rows:?}");
}

/// RoomBooked indexes a document per stream; every other event updates a document that does
/// not exist, which fails in the engine.
fn update_missing_unless_booked(request: &ProjectionRequest) -> ProjectionResponse {
    let op = if request.event_type == "RoomBooked" {
        let doc = st(&format!(r#"{{"stream": "{}"}}"#, request.stream));
        pack("projection.Index", &bookings_reducer::proto::Index { id: request.stream.clone(), document: Some(doc), ..Default::default() })
    } else {
        let doc = st(r#"{"touched": true}"#);
        pack("projection.Update", &bookings_reducer::proto::Update { id: format!("missing-{}", request.event_id), document: Some(doc), ..Default::default() })
    };
    ProjectionResponse { event_id: request.event_id.clone(), operation: Some(op), ..Default::default() }
}

async fn failing_events_are_parked_and_the_others_applied_once(engine: Engine) {
    let ix = Indices::fresh(engine, "park");
    let ws = Workspace::new();
    let log = ws.log_with_events(400, 40, 74);
    let booked = ReadModel::from_log(&ws.log_path(), |_, t| t == "RoomBooked");
    let bookings = rusqlite::Connection::open(ws.log_path())
        .unwrap()
        .query_row("SELECT count(*) FROM events WHERE event_type = 'RoomBooked'", [], |r| r.get::<_, i64>(0))
        .unwrap() as usize;
    let sidecar = sidecars::scripted(Script::Map(update_missing_unless_booked)).await;
    let setup = Setup { poison: "park", max_ops: 50, ..Setup::default() };
    let yaml = connector_yaml(&ws.log_path(), &sidecar.address, &ix.sink_yaml(""), &setup);
    let mut running = Running::start(parse_connector(&yaml)).await;
    running.wait_for(log.head().unwrap(), WAIT).await;
    running.stop().await.expect("clean stop");

    let indexed = ix.documents(&ix.prefix).await;
    assert_eq!(indexed.len(), booked.bookings.len(), "one document per booked stream");
    // Each document was indexed once per RoomBooked of its stream: nothing was sent again when
    // the events around a parked one were applied.
    let conn = rusqlite::Connection::open(ws.log_path()).unwrap();
    for (id, _) in &indexed {
        let times: i64 = conn
            .query_row("SELECT count(*) FROM events WHERE stream = ?1 AND event_type = 'RoomBooked'", [id], |r| r.get(0))
            .unwrap();
        assert_eq!(ix.version(&ix.prefix, id).await, times, "versions of {id}");
    }
    let parked = ix.documents(&ix.parked_index()).await;
    assert_eq!(parked.len(), 400 - bookings, "every other event parked, once");
    let (id, p) = &parked[0];
    assert!(id.starts_with("bookings/"), "{id}");
    assert_eq!(p["connector"], "bookings");
    for key in ["event_id", "stream", "event_type", "payload", "error", "parked_at"] {
        assert!(p[key].is_string(), "{key} in {p}");
    }
    assert!(p["error"].as_str().unwrap().contains("document_missing_exception"), "{p}");
    let head = log.head().unwrap();
    assert!(ix.checkpoints("bookings").await.values().all(|p| *p == head));
}

/// Every event indexes a document named after it; the documents of events at positions
/// divisible by 50 carry the word the refusing front below rejects.
fn index_marked_every_fiftieth(request: &ProjectionRequest) -> ProjectionResponse {
    let position = request.global_position;
    let marker = if position.is_multiple_of(50) { "refuse-me" } else { "fine" };
    let doc = st(&format!(r#"{{"position": {position}, "marker": "{marker}"}}"#));
    let op = pack("projection.Index", &bookings_reducer::proto::Index { id: format!("p{position}"), document: Some(doc), ..Default::default() });
    ProjectionResponse { event_id: request.event_id.clone(), operation: Some(op), ..Default::default() }
}

/// An HTTP front to the engine that refuses, as a whole, every `_bulk` request holding the
/// word `refuse-me` (413, as an engine does for a request over its size limit), and forwards
/// everything else.
async fn refusing_front(engine: Engine) -> String {
    use axum::{body::Bytes as Body, extract::Request, http::StatusCode, response::IntoResponse};
    let (client, _) = projector_gateway::sinks::elastic::client::connect(&ElasticSinkConfig { url: engine.url().into(), ..Indices::fresh(engine, "front").config() })
        .expect("client");
    let forward = move |request: Request| {
        let client = client.clone();
        async move {
            let (parts, body) = request.into_parts();
            let body: Body = axum::body::to_bytes(body, usize::MAX).await.unwrap_or_default();
            let path = parts.uri.path_and_query().map(|p| p.as_str().to_string()).unwrap_or_default();
            if path.contains("_bulk") && body.windows(9).any(|w| w == b"refuse-me") {
                return (StatusCode::PAYLOAD_TOO_LARGE, "request entity too large").into_response();
            }
            let method = match parts.method.as_str() {
                "GET" => Method::Get,
                "PUT" => Method::Put,
                "DELETE" => Method::Delete,
                "HEAD" => Method::Head,
                _ => Method::Post,
            };
            let mut headers = ::elasticsearch::http::headers::HeaderMap::new();
            headers.insert(
                ::elasticsearch::http::headers::CONTENT_TYPE,
                ::elasticsearch::http::headers::HeaderValue::from_static("application/json"),
            );
            let body = (!body.is_empty()).then(|| body.to_vec());
            match client.send(method, &path, headers, Option::<&()>::None, body, None).await {
                Ok(answer) => {
                    let status = StatusCode::from_u16(answer.status_code().as_u16()).unwrap();
                    let product = answer.headers().get("x-elastic-product").map(|v| v.as_bytes().to_vec());
                    let text = answer.text().await.unwrap_or_default();
                    let mut response = (status, [("content-type", "application/json")], text).into_response();
                    if let Some(product) = product {
                        response.headers_mut().insert("x-elastic-product", product.try_into().unwrap());
                    }
                    response
                }
                Err(e) => (StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
            }
        }
    };
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, axum::Router::new().fallback(forward)).await });
    address
}

/// A `_bulk` request refused as a whole names none of its events: the writer finds the one
/// refused by sending the rest one operation per request, so the poison policy parks exactly
/// that event and every other event of the batch is applied (naming the request's last event
/// instead parked innocent ones).
async fn a_request_refused_as_a_whole_parks_only_the_event_it_cannot_take(engine: Engine) {
    let ix = Indices::fresh(engine, "whole");
    let ws = Workspace::new();
    let log = ws.log_with_events(300, 30, 77);
    let head = log.head().unwrap();
    let sidecar = sidecars::scripted(Script::Map(index_marked_every_fiftieth)).await;
    let front = refusing_front(engine).await;
    let sink = ix.sink_yaml("").replace(engine.url(), &front);
    let setup = Setup { poison: "park", max_ops: 100, ..Setup::default() };
    let mut running = Running::start(parse_connector(&connector_yaml(&ws.log_path(), &sidecar.address, &sink, &setup))).await;
    running.wait_for(head, WAIT).await;
    running.stop().await.expect("clean stop");

    let refused: Vec<u64> = (1..=head).filter(|p| p.is_multiple_of(50)).collect();
    let mut parked: Vec<u64> = ix.documents(&ix.parked_index()).await.iter().map(|(_, d)| d["position"].as_u64().unwrap()).collect();
    parked.sort_unstable();
    assert_eq!(parked, refused, "exactly the refused events parked");
    let indexed: std::collections::BTreeSet<String> = ix.documents(&ix.prefix).await.into_iter().map(|(id, _)| id).collect();
    let expected: std::collections::BTreeSet<String> = (1..=head).filter(|p| !p.is_multiple_of(50)).map(|p| format!("p{p}")).collect();
    assert_eq!(indexed, expected, "every other event applied");
}

async fn producer_mode_archives_events_in_data_streams_per_category(engine: Engine) {
    let ix = Indices::fresh(engine, "produce");
    let ws = Workspace::new();
    let log = ws.log_with_events(600, 60, 75);
    let head = log.head().unwrap();
    let sink = format!(
        "{}        producer:\n          index: \"{}-ev-{{category}}\"\n          settings: {{ index.number_of_replicas: 0 }}\n",
        ix.sink_yaml(""),
        ix.prefix
    );
    let yaml = connector_yaml(&ws.log_path(), "-", &sink, &Setup::default());
    let yaml = without_sidecar(&yaml);
    let config = parse_connector(&yaml);
    assert_eq!(config.mode(), ConnectorMode::Producer);
    for run in 1..=2 {
        let mut running = Running::start(config.clone()).await;
        running.wait_for(head, WAIT).await;
        running.stop().await.expect("clean stop");
        if run == 1 {
            // Forget the checkpoints: the second run archives every event again, which must
            // change nothing (id = event id, `create` refused as already there).
            let ids: Vec<String> = ix.checkpoints("bookings").await.keys().map(|(c, p)| format!("bookings/{c}/{p}")).collect();
            for id in ids {
                ix.request(Method::Delete, &format!("/{}/_doc/{}", ix.checkpoints_index(), crate::support::elastic::encode(&id)), None).await;
            }
        }
    }
    let streams = ix.request(Method::Get, &format!("/_resolve/index/{}-ev-*", ix.prefix), None).await;
    let mut names: Vec<_> = streams["data_streams"].as_array().unwrap().iter().map(|s| s["name"].as_str().unwrap().to_string()).collect();
    names.sort();
    assert_eq!(names, [format!("{}-ev-booking", ix.prefix), format!("{}-ev-guest", ix.prefix)], "one data stream per category");
    let docs = ix.documents(&format!("{}-ev-*", ix.prefix)).await;
    assert_eq!(docs.len() as u64, head, "every event once, after two runs");
    let conn = rusqlite::Connection::open(ws.log_path()).unwrap();
    let (id, stream, event_type, data): (String, String, String, String) = conn
        .query_row("SELECT event_id, stream, event_type, data FROM events WHERE position = 1", [], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .unwrap();
    let (_, first) = docs.iter().find(|(doc_id, _)| *doc_id == id).expect("the first event, by its id");
    assert_eq!(first["event_type"], event_type.as_str());
    assert_eq!(first["stream"], stream.as_str());
    assert_eq!(first["position"], 1);
    assert_eq!(first["payload"], serde_json::from_str::<serde_json::Value>(&data).unwrap(), "the payload as stored");
    assert!(first["@timestamp"].is_string() && first["created"].is_string(), "{first}");
    // The template: its mappings and the configured settings.
    let template_name = format!("projector-gateway-{}-ev-category", ix.prefix);
    let template = ix.request(Method::Get, &format!("/_index_template/{template_name}"), None).await;
    let t = &template["index_templates"][0]["index_template"];
    assert_eq!(t["index_patterns"], json!([format!("{}-ev-*", ix.prefix)]));
    assert_eq!(t["template"]["mappings"]["properties"]["event_type"]["type"], "keyword", "{t}");
    assert_eq!(t["template"]["mappings"]["properties"]["payload"]["type"], "object", "{t}");
    let backing = ix.request(Method::Get, &format!("/{}-ev-booking/_settings", ix.prefix), None).await;
    let replicas: Vec<_> = backing.as_object().unwrap().values().map(|i| i["settings"]["index"]["number_of_replicas"].clone()).collect();
    assert!(replicas.iter().all(|r| r == "0"), "{replicas:?}");
}

async fn producer_mode_into_one_index_with_a_flattened_payload(engine: Engine) {
    let ix = Indices::fresh(engine, "flat");
    let ws = Workspace::new();
    let log = ws.log_with_events(300, 30, 76);
    let index = format!("{}-archive", ix.prefix);
    let sink = format!(
        "{}        producer:\n          index: {index}\n          data_stream: false\n          payload: flattened\n          template: {}-template\n",
        ix.sink_yaml(""),
        ix.prefix
    );
    let config = parse_connector(&without_sidecar(&connector_yaml(&ws.log_path(), "-", &sink, &Setup::default())));
    let mut running = Running::start(config).await;
    running.wait_for(log.head().unwrap(), WAIT).await;
    running.stop().await.expect("clean stop");
    let mapping = ix.request(Method::Get, &format!("/{index}/_mapping"), None).await;
    let payload_type = mapping[&index]["mappings"]["properties"]["payload"]["type"].as_str().unwrap().to_string();
    let expected = match engine {
        Engine::Elasticsearch => "flattened",
        Engine::OpenSearch => "flat_object",
    };
    assert_eq!(payload_type, expected);
    assert_eq!(ix.documents(&index).await.len() as u64, log.head().unwrap());
    // Flattened: the payload's values are searchable as keywords.
    let found = ix
        .request(Method::Post, &format!("/{index}/_search"), Some(json!({"query": {"term": {"payload.guestId": "guest-1"}}})))
        .await;
    assert!(found["hits"]["total"]["value"].as_u64().unwrap() > 0, "{found}");
}

/// A lifecycle policy (what an Eventuous EsdbElastic produce file describes) needs
/// Elasticsearch's index lifecycle management, which neither test distribution ships: the
/// start stops with a message naming the policy and what to do, and creates nothing.
async fn a_lifecycle_policy_without_lifecycle_management_stops_the_start_with_a_message(engine: Engine) {
    let ix = Indices::fresh(engine, "ilm");
    let policy = format!("{}-policy", ix.prefix);
    let config = ElasticSinkConfig {
        producer: Some(ElasticProducerConfig {
            index: format!("{}-log", ix.prefix),
            lifecycle_policy: Some(ElasticLifecyclePolicy {
                name: policy.clone(),
                policy: json!({"phases": {"hot": {"actions": {"rollover": {"max_age": "1d"}}}}}),
            }),
            ..ElasticProducerConfig::default()
        }),
        ..ix.config()
    };
    let error = ElasticSink::open(&config, "ilm", ConnectorMode::Producer).await.err().expect("no lifecycle management here");
    let message = error.to_string();
    assert!(message.contains(&format!("cannot look up the lifecycle policy `{policy}`")), "{message}");
    assert!(message.contains("needs index lifecycle management"), "{message}");
    let templates = ix.request(Method::Get, "/_index_template", None).await;
    let names: Vec<&str> = templates["index_templates"].as_array().unwrap().iter().filter_map(|t| t["name"].as_str()).collect();
    assert!(!names.iter().any(|n| n.contains(&ix.prefix)), "no template created: {names:?}");
}

async fn projection_versions_are_recorded_and_a_rebuild_forgets_the_checkpoints(engine: Engine) {
    let ix = Indices::fresh(engine, "version");
    let sink = open(&ix).await;
    assert_eq!(sink.projection_version().await.unwrap(), None);
    sink.record_projection_version("bookings", "1", None).await.unwrap();
    assert_eq!(sink.projection_version().await.unwrap().as_deref(), Some("1"));
    apply(&sink, 1, vec![vec![index("a", "{}")], vec![index("b", "{}")]]).await.unwrap();
    assert_eq!(sink.load_checkpoints().await.unwrap().len(), 1);
    let reset = vec![sink.decode(&delete("a")).unwrap().unwrap()];
    sink.record_projection_version("bookings", "2", Some(reset)).await.unwrap();
    assert_eq!(sink.projection_version().await.unwrap().as_deref(), Some("2"));
    assert!(sink.load_checkpoints().await.unwrap().is_empty(), "checkpoints deleted: the log is projected again");
    assert_eq!(ix.get(&ix.prefix, "a").await, None, "the reset operation ran");
}

/// The connector YAML without its `sidecar` section (a producer).
fn without_sidecar(yaml: &str) -> String {
    let mut out = Vec::new();
    let mut skipping = false;
    for line in yaml.lines() {
        if line == "    sidecar:" {
            skipping = true;
            continue;
        }
        if skipping && line.starts_with("      ") {
            continue;
        }
        skipping = false;
        out.push(line);
    }
    out.join("\n") + "\n"
}

crate::support::elastic::on_both_engines!(
    every_operation_with_its_semantics,
    external_versions_keep_replays_from_overwriting_newer_state,
    item_level_failures_name_their_event_and_nothing_is_sent_twice,
    an_engine_that_goes_away_is_retried_and_an_unreachable_one_named,
    bookings_match_the_reference_across_restarts,
    failing_events_are_parked_and_the_others_applied_once,
    producer_mode_archives_events_in_data_streams_per_category,
    producer_mode_into_one_index_with_a_flattened_payload,
    projection_versions_are_recorded_and_a_rebuild_forgets_the_checkpoints,
    a_lifecycle_policy_without_lifecycle_management_stops_the_start_with_a_message,
    a_request_refused_as_a_whole_parks_only_the_event_it_cannot_take,
);
