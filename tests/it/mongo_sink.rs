//! The MongoDB target against real MongoDB-wire servers started by `scripts/mongo.sh`, the
//! whole suite once per server: SecantusDB (a single-node replica set: batches and checkpoints
//! commit in one transaction) and FerretDB v1 on SQLite (no transactions: checkpoints right
//! after the batch). Where a server lacks a feature, the test says so and checks what it can
//! (docs/targets/mongodb.md lists the gaps). With `MONGODB_URL` set, the same suite also
//! runs against that real MongoDB (module `external`; skipped otherwise).

#![cfg(feature = "mongo")]

use std::{sync::Arc, time::Duration};

use bookings_reducer::proto::{ProjectionRequest, ProjectionResponse};
use mongodb::bson::{Bson, doc};
use projector_gateway::{
    config::MongoTransactions,
    payload::json_to_struct,
    proto::{self, names, pack},
    sinks::{ApplyError, Batch, BatchItem, Sink, SinkWriter, mongo::MongoSink},
};
use prost_types::{Any, Struct};
use crate::support::{
    bookings_model::ReadModel,
    fixtures::*,
    mongo::{MongoDb, Server, int64},
    processes::free_port,
    sidecars::{self, Script},
};

const WAIT: Duration = Duration::from_secs(120);

fn everything(_: &str, _: &str) -> bool {
    true
}

fn st(json: &str) -> Struct {
    json_to_struct(json.as_bytes()).unwrap()
}

async fn open(db: &MongoDb) -> MongoSink {
    let sink = MongoSink::open(&db.sink_config(), "ops").await.expect("open the sink");
    if let Some(expected) = db.server.expects_transactions() {
        assert_eq!(sink.transactional(), expected, "transactions detected on {}", db.server.name());
    }
    sink
}

/// Applies one batch on partition 0 of 1: event i (position i + 1) answers `ops[i]`.
async fn apply(sink: &MongoSink, first_position: u64, events: Vec<Vec<Any>>) -> Result<(), ApplyError> {
    let items = events
        .into_iter()
        .enumerate()
        .map(|(i, ops)| {
            let ops = ops.iter().map(|op| sink.decode(op).expect("decodes").expect("not Ignore")).collect();
            BatchItem::Apply { event: tested_event(first_position + i as u64), ops }
        })
        .collect();
    let mut writer = sink.open_writer().await.expect("writer");
    writer.apply(Arc::new(Batch::new(items, 1))).await
}

fn insert(json: &str) -> Any {
    pack(names::INSERT_ONE, &proto::InsertOne { document: Some(st(json)), ..Default::default() })
}

fn update_one(filter: &str, update: &str) -> Any {
    pack(names::UPDATE_ONE, &proto::UpdateOne { filter: Some(st(filter)), update: Some(st(update)), ..Default::default() })
}

async fn every_operation_with_its_upsert_semantics(server: Server) {
    let db = MongoDb::fresh(server, "ops").await;
    let sink = open(&db).await;
    let many = |docs: &[&str]| pack(names::INSERT_MANY, &proto::InsertMany { documents: docs.iter().map(|d| st(d)).collect(), ..Default::default() });
    let update_many = |filter: &str, update: &str| {
        pack(names::UPDATE_MANY, &proto::UpdateMany { filter: Some(st(filter)), update: Some(st(update)), ..Default::default() })
    };
    let replace = |filter: &str, doc: &str| {
        pack(names::REPLACE_ONE, &proto::ReplaceOne { filter: Some(st(filter)), replacement: Some(st(doc)), ..Default::default() })
    };
    let delete = |name: &str, filter: &str| pack(name, &proto::DeleteOne { filter: Some(st(filter)), ..Default::default() });
    apply(
        &sink,
        1,
        vec![
            vec![insert(r#"{"_id": "a", "k": "x", "n": 1}"#), many(&[r#"{"_id": "b", "k": "x"}"#, r#"{"_id": "c", "k": "y"}"#])],
            // Upserts: a missing document is created from the filter's equality fields.
            vec![update_one(r#"{"_id": "d"}"#, r#"{"$set": {"k": "y"}, "$inc": {"n": 2}}"#)],
            vec![update_one(r#"{"_id": "a"}"#, r#"{"$inc": {"n": 10}}"#)],
            vec![update_many(r#"{"k": "x"}"#, r#"{"$set": {"seen": true}}"#)],
            vec![update_many(r#"{"k": "none"}"#, r#"{"$set": {"created": true}}"#)],
            vec![replace(r#"{"_id": "c"}"#, r#"{"k": "z", "whole": 1}"#), replace(r#"{"_id": "e"}"#, r#"{"k": "e"}"#)],
            vec![insert(r#"{"_id": "f", "k": "gone"}"#), insert(r#"{"_id": "g", "k": "gone"}"#), delete(names::DELETE_ONE, r#"{"k": "gone"}"#)],
            vec![insert(r#"{"_id": "h", "k": "y2"}"#), insert(r#"{"_id": "i", "k": "y2"}"#), delete(names::DELETE_MANY, r#"{"k": "y2"}"#)],
        ],
    )
    .await
    .expect("applied");
    let docs = db.documents("docs").await;
    let by_id = |id: &str| docs.iter().find(|d| d.get_str("_id") == Ok(id)).cloned();
    assert_eq!(by_id("a").unwrap(), doc! {"_id": "a", "k": "x", "n": 11.0, "seen": true});
    assert_eq!(by_id("b").unwrap(), doc! {"_id": "b", "k": "x", "seen": true});
    assert_eq!(by_id("c").unwrap(), doc! {"_id": "c", "k": "z", "whole": 1.0}, "replaced whole");
    assert_eq!(by_id("d").unwrap(), doc! {"_id": "d", "k": "y", "n": 2.0}, "upserted by UpdateOne");
    assert_eq!(by_id("e").unwrap(), doc! {"_id": "e", "k": "e"}, "upserted by ReplaceOne");
    let created: Vec<_> = docs.iter().filter(|d| d.get_bool("created") == Ok(true)).collect();
    assert_eq!(created.len(), 1, "UpdateMany upserts one document when none matches: {docs:#?}");
    assert_eq!(created[0].get_str("k"), Ok("none"));
    assert_eq!(docs.iter().filter(|d| d.get_str("k") == Ok("gone")).count(), 1, "DeleteOne deleted one of two");
    assert_eq!(docs.iter().filter(|d| d.get_str("k") == Ok("y2")).count(), 0, "DeleteMany deleted both");
    assert_eq!(db.checkpoints("ops").await.get(&(1, 0)), Some(&8), "checkpoint at the last event");
}

async fn integers_dates_and_the_per_operation_collection(server: Server) {
    let db = MongoDb::fresh(server, "bson").await;
    let sink = open(&db).await;
    let typed = pack(
        names::INSERT_ONE,
        &proto::InsertOne {
            document: Some(st(r#"{"_id": 1, "count": 3, "ratio": 0.5, "plain": 4, "at": {"$date": "2026-11-23T10:15:00.250Z"},
                "nested": {"cents": 120}, "list": [1, 2], "flag": true, "none": null, "name": "x"}"#)),
            collection: "typed".into(),
            integer_fields: vec!["_id".into(), "count".into(), "nested.cents".into(), "list".into()],
        },
    );
    let inc = pack(
        names::UPDATE_ONE,
        &proto::UpdateOne {
            filter: Some(st(r#"{"_id": 1}"#)),
            update: Some(st(r#"{"$inc": {"count": 2}}"#)),
            collection: "typed".into(),
            integer_fields: vec!["_id".into(), "count".into()],
            ..Default::default()
        },
    );
    apply(&sink, 1, vec![vec![typed, inc], vec![insert(r#"{"_id": "default"}"#)]]).await.expect("applied");
    let d = db.documents("typed").await.remove(0);
    assert_eq!(d.get("_id"), Some(&Bson::Int64(1)));
    assert_eq!(int64(&d, "count"), 5, "an Int64 counter stays Int64 under $inc");
    assert_eq!(d.get("ratio"), Some(&Bson::Double(0.5)));
    assert_eq!(d.get("plain"), Some(&Bson::Double(4.0)), "not hinted: a double");
    assert_eq!(d.get_datetime("at").unwrap().timestamp_millis(), 1_795_428_900_250, "2026-11-23T10:15:00.250Z");
    assert_eq!(d.get_document("nested").unwrap().get("cents"), Some(&Bson::Int64(120)));
    assert_eq!(d.get_array("list").unwrap(), &vec![Bson::Int64(1), Bson::Int64(2)]);
    assert_eq!(d.get("none"), Some(&Bson::Null));
    assert_eq!(db.documents("docs").await, vec![doc! {"_id": "default"}], "no collection named: the default one");
}

async fn update_pipelines(server: Server) {
    let db = MongoDb::fresh(server, "pipeline").await;
    let sink = open(&db).await;
    let pipeline = pack(
        names::UPDATE_ONE,
        &proto::UpdateOne {
            filter: Some(st(r#"{"_id": "p"}"#)),
            pipeline: vec![st(r#"{"$set": {"n": {"$add": [{"$ifNull": ["$n", 0]}, 2]}}}"#), st(r#"{"$set": {"twice": {"$multiply": ["$n", 2]}}}"#)],
            ..Default::default()
        },
    );
    let result = apply(&sink, 1, vec![vec![pipeline.clone()], vec![pipeline]]).await;
    if !server.has_pipeline_updates() {
        let e = result.expect_err("this server has no pipeline updates");
        println!("SKIPPED on {}: no aggregation-pipeline updates; the server says: {}", server.name(), e.message);
        assert!(e.message.contains("update on `docs` failed"), "{}", e.message);
        return;
    }
    result.expect("applied");
    assert_eq!(db.documents("docs").await, vec![doc! {"_id": "p", "n": 4.0, "twice": 8.0}]);
}

async fn a_batch_fails_at_its_event_and_is_atomic_where_transactions_exist(server: Server) {
    let db = MongoDb::fresh(server, "atomic").await;
    let sink = open(&db).await;
    apply(&sink, 1, vec![vec![insert(r#"{"_id": "taken"}"#)]]).await.expect("first batch");
    let e = apply(
        &sink,
        2,
        vec![
            vec![insert(r#"{"_id": "before"}"#)],
            vec![update_one(r#"{"_id": "counter"}"#, r#"{"$inc": {"n": 1}}"#)],
            vec![insert(r#"{"_id": "taken", "again": true}"#)],
            vec![insert(r#"{"_id": "after"}"#)],
        ],
    )
    .await
    .expect_err("duplicate key");
    assert_eq!(e.failed_at, Some(2), "{e:?}");
    assert!(!e.transient);
    assert!(e.message.contains("operation 1 of event e-4"), "{}", e.message);
    assert!(e.message.contains("duplicate key (code 11000)") && e.message.contains("E11000"), "{}", e.message);
    assert!(e.message.contains("InsertOne of 1 document(s)"), "{}", e.message);
    let ids: Vec<_> = db.documents("docs").await.iter().map(|d| d.get_str("_id").unwrap().to_string()).collect();
    if sink.transactional() {
        assert_eq!(ids, ["taken"], "nothing of the failed batch is kept");
    } else {
        // Ordered writes stop at the failure; what came before stays (at-least-once).
        assert_eq!(ids, ["before", "counter", "taken"]);
    }
    assert_eq!(db.checkpoints("ops").await.get(&(1, 0)), Some(&1), "the checkpoint did not move");
}

async fn invalid_update_documents_are_named(server: Server) {
    let db = MongoDb::fresh(server, "invalid").await;
    let sink = open(&db).await;
    // Rejected by the gateway before it reaches the server.
    let no_operator = update_one(r#"{"_id": 1}"#, r#"{"n": 1}"#);
    let e = sink.decode(&no_operator).unwrap_err().to_string();
    assert!(e.contains("invalid update document: `n` is not an update operator"), "{e}");
    // Rejected by the server.
    let e = apply(&sink, 1, vec![vec![insert(r#"{"_id": 1}"#)], vec![update_one(r#"{"_id": 1}"#, r#"{"$bogus": {"n": 1}}"#)]])
        .await
        .expect_err("unknown operator");
    assert_eq!(e.failed_at, Some(1));
    assert!(e.message.contains("invalid operation (update document, filter or pipeline)"), "{}", e.message);
    assert!(e.message.contains("$bogus"), "{}", e.message);
}

async fn an_unreachable_server_fails_the_start_with_a_clear_message(server: Server) {
    let db = MongoDb::fresh(server, "unreachable").await;
    let mut c = db.sink_config();
    c.url = format!("mongodb://127.0.0.1:{}/?directConnection=true&serverSelectionTimeoutMS=500", free_port());
    let e = MongoSink::open(&c, "ops").await.err().expect("cannot open").0;
    assert!(e.starts_with("cannot reach the MongoDB target `127.0.0.1:"), "{e}");
    assert!(e.contains("server unreachable"), "{e}");
}

async fn write_concern_errors_are_named(server: Server) {
    let db = MongoDb::fresh(server, "concern").await;
    for transactions in [MongoTransactions::Auto, MongoTransactions::Off] {
        let mut c = db.sink_config();
        c.url = server.url_with("w=5");
        c.transactions = transactions;
        let sink = MongoSink::open(&c, "ops").await.expect("open");
        let result = apply(&sink, 1, vec![vec![insert(r#"{"n": 1}"#)]]).await;
        if !server.has_write_concerns() {
            println!("SKIPPED on {}: FerretDB accepts any write concern (w: 5 on one node succeeds)", server.name());
            result.expect("FerretDB ignores the write concern");
            return;
        }
        let e = result.expect_err("w: 5 cannot be satisfied by one node");
        assert!(e.message.contains("write concern error"), "{transactions:?}: {}", e.message);
        if server == Server::Secantus {
            assert!(e.message.contains("code 100") && !e.transient, "{e:?}");
        }
    }
}

async fn bookings_match_the_reference_across_restarts(server: Server) {
    let db = MongoDb::fresh(server, "bookings").await;
    let ws = Workspace::new();
    let mut log = ws.log_with_events(3_000, 300, 61);
    let sidecar = sidecars::scripted(Script::Map(bookings_reducer::reduce_mongo)).await;
    // FerretDB v1 does not update one document atomically under concurrent writes (two `$inc`s
    // of the same guest from two writers can lose one): one writer there.
    let writers = if server.atomic_document_updates() { 2 } else { 1 };
    let sink = db.sink_yaml(&format!("        writers: {writers}\n"));
    let yaml = connector_yaml(&ws.log_path(), &sidecar.address, &sink, &Setup::default());

    let mut first = Running::start(parse_connector(&yaml)).await;
    first.wait_for(log.head().unwrap(), WAIT).await;
    first.stop().await.expect("clean stop");
    db.read_model().await.assert_same(&ReadModel::from_log(&ws.log_path(), everything));

    append_generated(&mut log, 1_000, 200, 62);
    let mut second = Running::start(parse_connector(&yaml)).await;
    second.wait_for(log.head().unwrap(), WAIT).await;
    append_generated(&mut log, 300, 50, 63);
    second.wait_for(log.head().unwrap(), WAIT).await;
    second.stop().await.expect("clean stop");

    db.read_model().await.assert_same(&ReadModel::from_log(&ws.log_path(), everything));
    let head = log.head().unwrap() as i64;
    let rows = db.checkpoints("bookings").await;
    assert_eq!(rows.len(), 4, "{rows:?}");
    assert!(rows.iter().all(|((count, _), position)| *count == 4 && *position == head), "{rows:?}");
}

async fn a_new_projection_version_rebuilds_the_read_model(server: Server) {
    let db = MongoDb::fresh(server, "rebuild").await;
    let ws = Workspace::new();
    let head = ws.log_with_events(800, 100, 65).head().unwrap();
    let sink = db.sink_yaml("        writers: 1\n");
    let yaml = |address: &str| {
        connector_yaml(&ws.log_path(), address, &sink, &Setup::default())
            .replace("      window:", "      rebuild_on_new_version: true\n      window:")
    };
    for version in ["1", "2"] {
        let description = bookings_reducer::proto::DescribeResponse { version: version.into(), ..bookings_reducer::mongo_description() };
        let sidecar = sidecars::describing_with(Script::Map(bookings_reducer::reduce_mongo), description).await;
        let mut running = Running::start(parse_connector(&yaml(&sidecar.address))).await;
        running.wait_for(head, WAIT).await;
        running.stop().await.expect("clean stop");
        assert!(sidecar.requests() > 0, "version {version} projected the log");
    }
    // The counters would be doubled had the reset not emptied the collections.
    db.read_model().await.assert_same(&ReadModel::from_log(&ws.log_path(), everything));
    let version = db.documents("checkpoints").await.into_iter().find(|d| d.get_str("_id") == Ok("bookings/version")).expect("version");
    assert_eq!(version.get_str("version"), Ok("2"));
}

/// Every event inserts a document keyed by its stream: the second event of a stream is a
/// duplicate key.
fn insert_by_stream(request: &ProjectionRequest) -> ProjectionResponse {
    let document = st(&format!(r#"{{"_id": "{}", "type": "{}"}}"#, request.stream, request.event_type));
    ProjectionResponse {
        event_id: request.event_id.clone(),
        operation: Some(pack(names::INSERT_ONE, &proto::InsertOne { document: Some(document), collection: "firsts".into(), ..Default::default() })),
        ..Default::default()
    }
}

async fn failing_events_are_parked_and_the_others_applied_once(server: Server) {
    let db = MongoDb::fresh(server, "park").await;
    let ws = Workspace::new();
    let log = ws.log_with_events(400, 40, 64);
    let sidecar = sidecars::scripted(Script::Map(insert_by_stream)).await;
    let setup = Setup { poison: "park", max_ops: 50, ..Setup::default() };
    let yaml = connector_yaml(&ws.log_path(), &sidecar.address, &db.sink_yaml(""), &setup);
    let mut running = Running::start(parse_connector(&yaml)).await;
    running.wait_for(log.head().unwrap(), WAIT).await;
    running.stop().await.expect("clean stop");

    let streams = db.documents("firsts").await.len();
    assert!(streams > 1 && streams < 400, "{streams}");
    let parked = db.documents("parked_events").await;
    // Each stream's first event inserted; every later one parked, exactly once (applying the
    // events before a failing one again would have parked more, or failed).
    assert_eq!(parked.len(), 400 - streams, "parked {} of 400 with {streams} streams", parked.len());
    let p = &parked[0];
    assert_eq!(p.get_str("connector"), Ok("bookings"));
    assert!(p.get_str("error").unwrap().contains("duplicate key (code 11000)"), "{p}");
    for key in ["eventId", "stream", "eventType", "payload"] {
        assert!(p.get_str(key).is_ok(), "{key} in {p}");
    }
    let head = log.head().unwrap() as i64;
    assert!(db.checkpoints("bookings").await.values().all(|p| *p == head));
}

/// Every event counts itself in `counts` by stream, then inserts a document keyed by its
/// stream: every event but a stream's first fails at its second operation.
fn count_then_insert(request: &ProjectionRequest) -> ProjectionResponse {
    let mut response = insert_by_stream(request);
    let count = proto::UpdateOne {
        filter: Some(st(&format!(r#"{{"_id": "{}"}}"#, request.stream))),
        update: Some(st(r#"{"$inc": {"n": 1}}"#)),
        collection: "counts".into(),
        integer_fields: vec!["n".into()],
        ..Default::default()
    };
    response.operations = vec![response.operation.take().unwrap()];
    response.operation = Some(pack(names::UPDATE_ONE, &count));
    response
}

async fn events_failing_after_a_first_operation_are_parked_once(server: Server) {
    let ws = Workspace::new();
    let log = ws.log_with_events(300, 30, 66);
    let sidecar = sidecars::scripted(Script::Map(count_then_insert)).await;
    let setup = Setup { poison: "park", max_ops: 40, ..Setup::default() };
    for transactions in ["auto", "off"] {
        let db = MongoDb::fresh(server, "partial").await;
        let sink = db.sink_yaml(&format!("        transactions: {transactions}\n"));
        let mut running = Running::start(parse_connector(&connector_yaml(&ws.log_path(), &sidecar.address, &sink, &setup))).await;
        running.wait_for(log.head().unwrap(), WAIT).await;
        running.stop().await.expect("clean stop");
        let streams = db.documents("firsts").await.len();
        assert_eq!(db.documents("parked_events").await.len(), 300 - streams, "{transactions}: each failing event parked once");
        let counted: i64 = db.documents("counts").await.iter().map(|d| int64(d, "n")).sum();
        let transactional = transactions == "auto" && MongoSink::open(&db.sink_config(), "x").await.unwrap().transactional();
        // In a transaction a parked event's first operation is rolled back with it; without,
        // it stays, applied once (not again when the events before it are applied alone).
        let expected = if transactional { streams as i64 } else { 300 };
        assert_eq!(counted, expected, "{transactions} (transactional: {transactional})");
    }
}

/// 150 updates of existing documents in one batch: FerretDB v1 never answers an `update`
/// command of 100 or more such statements, so the sink cuts its commands to 50 there.
async fn a_batch_of_many_updates_to_existing_documents_completes(server: Server) {
    const DOCUMENTS: usize = 150;
    let db = MongoDb::fresh(server, "many").await;
    let sink = open(&db).await;
    let inserts = (0..DOCUMENTS).map(|i| vec![insert(&format!(r#"{{"_id": "d{i}", "n": 0}}"#))]).collect();
    apply(&sink, 1, inserts).await.expect("inserted");
    let updates = (0..DOCUMENTS).map(|i| vec![update_one(&format!(r#"{{"_id": "d{i}"}}"#), r#"{"$inc": {"n": 1}}"#)]).collect();
    tokio::time::timeout(WAIT, apply(&sink, 1 + DOCUMENTS as u64, updates))
        .await
        .unwrap_or_else(|_| panic!("{} did not answer a batch of {DOCUMENTS} updates within {WAIT:?}", server.name()))
        .expect("updated");
    let docs = db.documents("docs").await;
    assert_eq!(docs.len(), DOCUMENTS);
    assert!(docs.iter().all(|d| d.get_f64("n") == Ok(1.0)), "every document updated once: {docs:?}");
    assert_eq!(db.checkpoints("ops").await.get(&(1, 0)), Some(&(2 * DOCUMENTS as i64)));
}

/// One test per (server, case).
macro_rules! on_both_servers {
    ($($case:ident),* $(,)?) => {
        mod secantus {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::$case(super::Server::Secantus).await
                }
            )*
        }
        mod ferret {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::$case(super::Server::Ferret).await
                }
            )*
        }
        /// Opt-in: a real MongoDB at `MONGODB_URL`.
        mod external {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    if crate::support::mongo::external_url().is_none() {
                        println!("SKIPPED: set MONGODB_URL to run the suite against a real MongoDB");
                        return;
                    }
                    super::$case(super::Server::External).await
                }
            )*
        }
    };
}

on_both_servers!(
    every_operation_with_its_upsert_semantics,
    integers_dates_and_the_per_operation_collection,
    update_pipelines,
    a_batch_fails_at_its_event_and_is_atomic_where_transactions_exist,
    invalid_update_documents_are_named,
    an_unreachable_server_fails_the_start_with_a_clear_message,
    write_concern_errors_are_named,
    a_new_projection_version_rebuilds_the_read_model,
    bookings_match_the_reference_across_restarts,
    failing_events_are_parked_and_the_others_applied_once,
    events_failing_after_a_first_operation_are_parked_once,
    a_batch_of_many_updates_to_existing_documents_completes,
);
