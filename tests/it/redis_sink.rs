//! The Redis target against a real Redis 7 (`scripts/redis.sh`; each test writes under a key
//! prefix of its own). A sidecar in the test process (`Script::Map`) answers the bookings events
//! with Redis operations (`crate::support::redis::bookings`): HSETs, HINCRBY counters and an XADD per
//! event, neither of the last two idempotent, so the counters and stream lengths equal to the
//! reference computed from the log are what proves each event applied exactly once: across
//! restarts, with two connectors on one read model, through a server killed mid-run, and
//! through a connection lost right after EXEC. Also: the checkpoint fence, and a command
//! Redis would refuse (WRONGTYPE) named with its key and event and handed to the poison
//! policy with nothing of its batch applied.

#![cfg(feature = "redis")]

use std::{
    collections::BTreeMap,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use bookings_reducer::proto::{DescribeResponse, ProjectionRequest, ProjectionResponse};
use projector_gateway::{
    event::Position,
    partition::Partitioner,
    proto::{self as gw, pack, redis_value},
    sinks::{ApplyError, Batch, BatchItem, Sink, SinkWriter, redis::{RedisOp, RedisSink}},
};
use prost_types::Any;
use crate::support::{
    bookings_model::ReadModel,
    fixtures::*,
    redis::{PrivateServer, RedisKeys, bookings, histories_from_log},
    sidecars::{self, Script},
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

const WAIT: Duration = Duration::from_secs(120);

fn everything(_: &str, _: &str) -> bool {
    true
}

/// The bookings reducer's sidecar, declaring the types it handles as the example reducers do.
async fn bookings_sidecar() -> sidecars::LocalSidecar {
    let description = DescribeResponse {
        projection: "bookings-redis".into(),
        version: "1".into(),
        event_types: bookings::HANDLED.iter().map(|t| t.to_string()).collect(),
        reset_operations: vec![],
    };
    sidecars::describing_with(Script::Map(bookings::reduce), description).await
}

async fn assert_bookings_match_the_log(keys: &RedisKeys, ws: &Workspace) {
    keys.read_model().await.assert_same(&ReadModel::from_log(&ws.log_path(), everything));
    assert_eq!(keys.histories().await, histories_from_log(&ws.log_path()), "one stream entry per event, in stream order");
}

#[tokio::test]
async fn bookings_match_the_reference_and_a_restart_applies_nothing_twice() {
    let keys = RedisKeys::fresh("bookings");
    let ws = Workspace::new();
    let mut log = ws.log_with_events(2_000, 200, 11);
    let sidecar = bookings_sidecar().await;
    let setup = Setup { max_ops: 150, ..Setup::default() };
    let yaml = connector_yaml(&ws.log_path(), &sidecar.address, &keys.sink_yaml(""), &setup);

    let mut running = Running::start(parse_connector(&yaml)).await;
    running.wait_for(log.head().unwrap(), WAIT).await;
    running.stop().await.expect("clean stop");
    assert_bookings_match_the_log(&keys, &ws).await;
    let head = log.head().unwrap();
    let checkpoints = keys.checkpoints("bookings").await;
    assert_eq!(checkpoints.len(), 4, "{checkpoints:?}");
    assert!(checkpoints.iter().all(|((count, _), p)| *count == 4 && *p == head), "every partition at the head {head}: {checkpoints:?}");

    // A restart resumes after the checkpoints: the old events are not applied again (the
    // counters and streams would show it), the new ones are.
    append_generated(&mut log, 1_000, 200, 12);
    let mut running = Running::start(parse_connector(&yaml)).await;
    running.wait_for(log.head().unwrap(), WAIT).await;
    running.stop().await.expect("clean stop");
    assert_bookings_match_the_log(&keys, &ws).await;
    assert!(keys.checkpoints("bookings").await.values().all(|p| *p == log.head().unwrap()));
}

/// Two connectors with the same id on one read model at once (a second gateway by mistake):
/// every batch one commits makes the other's EXEC find its WATCH fired; the fence refuses a
/// batch whose checkpoints moved, the loser re-plans, and every event is applied once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_connectors_on_one_read_model_apply_each_event_once() {
    let keys = RedisKeys::fresh("two");
    let ws = Workspace::new();
    let log = ws.log_with_events(4_000, 400, 21);
    let sidecar = bookings_sidecar().await;
    let setup = Setup { max_ops: 20, ..Setup::default() };
    let yaml = connector_yaml(&ws.log_path(), &sidecar.address, &keys.sink_yaml(""), &setup);
    let mut first = Running::start(parse_connector(&yaml)).await;
    let mut second = Running::start(parse_connector(&yaml)).await;
    let head = log.head().unwrap();
    first.wait_for(head, WAIT).await;
    second.wait_for(head, WAIT).await;
    first.stop().await.expect("clean stop");
    second.stop().await.expect("clean stop");
    assert_bookings_match_the_log(&keys, &ws).await;
}

/// Two writers of one connector share its checkpoint hash: each one's EXEC fires the other's
/// WATCH, and the batch is planned again at once (its own fields did not move).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_writers_share_the_checkpoint_hash() {
    let keys = RedisKeys::fresh("writers");
    let ws = Workspace::new();
    let log = ws.log_with_events(3_000, 300, 23);
    let sidecar = bookings_sidecar().await;
    let setup = Setup { max_ops: 50, ..Setup::default() };
    let yaml = connector_yaml(&ws.log_path(), &sidecar.address, &keys.sink_yaml("        writers: 2\n"), &setup);
    let mut running = Running::start(parse_connector(&yaml)).await;
    running.wait_for(log.head().unwrap(), WAIT).await;
    running.stop().await.expect("clean stop");
    assert_bookings_match_the_log(&keys, &ws).await;
}

/// The operation of the event at `position` in the fence test: append it to `seen`.
fn push_seen(sink: &RedisSink, position: Position) -> RedisOp {
    let value = gw::RedisValue { kind: Some(redis_value::Kind::Int64Value(position as i64)) };
    let op = pack("projection.RedisListPush", &gw::RedisListPush { key: "seen".into(), values: vec![value], ..Default::default() });
    sink.decode(&op).expect("decodes").expect("not Ignore")
}

fn fenced(op: RedisOp, position: Position, stored: Option<Position>) -> Arc<Batch<RedisOp>> {
    Arc::new(Batch::fenced(vec![BatchItem::Apply { event: tested_event(position), ops: vec![op] }], 1, &[stored]))
}

fn assert_moved(result: Result<(), ApplyError>, what: &str) {
    let error = result.expect_err(what);
    assert!(error.checkpoint_moved, "{what}: not reported as a moved checkpoint: {error}");
    assert!(!error.transient && error.failed_at.is_none(), "{what}: {error:?}");
    assert!(error.message.contains("a checkpoint moved since this gateway read it"), "{what}: {}", error.message);
}

async fn seen(keys: &RedisKeys) -> Vec<i64> {
    keys.query("LRANGE", &[&keys.key("seen"), "0", "-1"]).await
}

/// The pattern of `tests/it/checkpoint_fence.rs` for Redis: a batch commits only when each
/// checkpoint field it moves holds what it was planned from, else nothing of it is applied.
#[tokio::test]
async fn a_batch_planned_from_a_stale_checkpoint_commits_nothing() {
    let keys = RedisKeys::fresh("fence");
    let sink = RedisSink::open(&keys.sink_config(), "fenced").await.expect("open");
    let mut writer = sink.open_writer().await.expect("writer");
    let batch = |position, stored| fenced(push_seen(&sink, position), position, stored);
    writer.apply(batch(10, None)).await.expect("the first batch, planned from no field");
    assert_moved(writer.apply(batch(20, None)).await, "planned from no field, but one exists");
    assert_moved(writer.apply(batch(20, Some(5))).await, "planned from a position that is not stored");
    assert_eq!(seen(&keys).await, [10], "a refused batch applies none of its operations");
    writer.apply(batch(20, Some(10))).await.expect("planned from the stored position");
    assert_eq!(seen(&keys).await, [10, 20]);
    let rows = sink.load_checkpoints().await.expect("checkpoints");
    assert_eq!(rows.iter().map(|r| (r.partition_count, r.partition, r.position)).collect::<Vec<_>>(), [(1, 0, 20)]);

    // Another process commits for the connector after this gateway read position 20 (a
    // restart that raced the killed process's last EXEC): the batch planned from 20 is refused.
    let _: () = keys.query("HSET", &[sink.checkpoints_key(), "1:0", "30"]).await;
    assert_moved(writer.apply(batch(40, Some(20))).await, "planned before another process committed");
    assert_eq!(seen(&keys).await, [10, 20]);

    // Unchecked writes (tools) never move a position backwards.
    let behind = Batch::new(vec![BatchItem::<RedisOp>::Advance { partition: 0, position: 15 }], 1);
    writer.apply(Arc::new(behind)).await.expect("an unchecked advance");
    assert_eq!(sink.load_checkpoints().await.unwrap()[0].position, 30, "an unchecked write moved the checkpoint backwards");
    sink.delete_checkpoints(1).await.expect("delete");
    assert!(sink.load_checkpoints().await.unwrap().is_empty());
}

/// Each event counts itself (INCRBY `events`, HINCRBY `per-stream`), then appends its
/// position to a list of its stream: a stream whose list key holds a string makes its events
/// fail at their third operation, WRONGTYPE.
fn count_then_push(request: &ProjectionRequest) -> ProjectionResponse {
    let value = gw::RedisValue { kind: Some(redis_value::Kind::Int64Value(request.global_position as i64)) };
    let operations: Vec<Any> = vec![
        pack("projection.RedisIncrBy", &gw::RedisIncrBy { key: "events".into(), by: 1 }),
        pack("projection.RedisHashIncrBy", &gw::RedisHashIncrBy { key: "per-stream".into(), field: request.stream.clone(), by: 1 }),
        pack("projection.RedisListPush", &gw::RedisListPush { key: format!("list:{}", request.stream), values: vec![value], ..Default::default() }),
    ];
    ProjectionResponse { event_id: request.event_id.clone(), operations, ..Default::default() }
}

/// (position, stream, event id) of every event of the log, in order.
fn log_events(ws: &Workspace) -> Vec<(u64, String, String)> {
    let conn = rusqlite::Connection::open(ws.log_path()).unwrap();
    let mut stmt = conn.prepare("SELECT position, stream, event_id FROM events ORDER BY position").unwrap();
    stmt.query_map([], |r| Ok((r.get::<_, i64>(0)? as u64, r.get(1)?, r.get(2)?))).unwrap().map(Result::unwrap).collect()
}

/// What `count_then_push` must have written for the events `applied` keeps: `events`,
/// `per-stream` and each stream's list, from the log.
async fn assert_counted_exactly(keys: &RedisKeys, events: &[(u64, String, String)], applied: impl Fn(u64, &str) -> bool) {
    let mut per_stream: BTreeMap<String, i64> = BTreeMap::new();
    let mut lists: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for (position, stream, _) in events.iter().filter(|(p, s, _)| applied(*p, s)) {
        *per_stream.entry(stream.clone()).or_default() += 1;
        lists.entry(stream.clone()).or_default().push(*position as i64);
    }
    let total: i64 = per_stream.values().sum();
    let counted: Option<i64> = keys.query("GET", &[&keys.key("events")]).await;
    assert_eq!(counted.unwrap_or(0), total, "INCRBY events: each applied event counted once");
    let stored: BTreeMap<String, i64> = keys.query("HGETALL", &[&keys.key("per-stream")]).await;
    assert_eq!(stored, per_stream, "HINCRBY per stream");
    for (stream, positions) in lists {
        let list: Vec<i64> = keys.query("LRANGE", &[&keys.key(&format!("list:{stream}")), "0", "-1"]).await;
        assert_eq!(list, positions, "the list of {stream}: its events once each, in order");
    }
}

#[tokio::test]
async fn a_wrongtype_command_is_named_with_its_key_and_event_and_parked_with_nothing_of_it_applied() {
    let keys = RedisKeys::fresh("park");
    let ws = Workspace::new();
    let log = ws.log_with_events(600, 60, 31);
    let events = log_events(&ws);
    let poisoned = events[250].1.clone();
    let _: () = keys.query("SET", &[&keys.key(&format!("list:{poisoned}")), "not a list"]).await;
    let sidecar = sidecars::scripted(Script::Map(count_then_push)).await;
    let setup = Setup { poison: "park", max_ops: 60, ..Setup::default() };
    let yaml = connector_yaml(&ws.log_path(), &sidecar.address, &keys.sink_yaml(""), &setup);
    let mut running = Running::start(parse_connector(&yaml)).await;
    running.wait_for(log.head().unwrap(), WAIT).await;
    running.stop().await.expect("clean stop");

    // Every event of that stream is parked, once, with Redis's error naming the key; nothing
    // of it is applied (not even its first two operations: the batch was cut around it before
    // anything was sent), and every other event exactly once.
    let parked = keys.stream("parked_events:bookings").await;
    let expected: Vec<&str> = events.iter().filter(|(_, s, _)| *s == poisoned).map(|(_, _, id)| id.as_str()).collect();
    assert_eq!(parked.iter().map(|p| p["eventId"].as_str()).collect::<Vec<_>>(), expected);
    let error = &parked[0]["error"];
    assert!(error.contains("WRONGTYPE Operation against a key holding the wrong kind of value"), "{error}");
    assert!(error.contains(&format!("`{}` holds a string, and RedisListPush needs a list", keys.key(&format!("list:{poisoned}")))), "{error}");
    assert!(error.contains(&format!("operation 3 of event {}", expected[0])), "{error}");
    for field in ["partition", "position", "stream", "eventType", "payload", "parkedAt"] {
        assert!(parked[0].contains_key(field), "{field} in {:?}", parked[0]);
    }
    assert_counted_exactly(&keys, &events, |_, stream| stream != poisoned).await;
    assert!(keys.checkpoints("bookings").await.values().all(|p| *p == log.head().unwrap()));
}

#[tokio::test]
async fn a_wrongtype_command_stops_the_connector_before_its_event() {
    let keys = RedisKeys::fresh("stop");
    let ws = Workspace::new();
    ws.log_with_events(400, 40, 33);
    let events = log_events(&ws);
    let poisoned = events[150].1.clone();
    let (first_position, _, first_id) = events.iter().find(|(_, s, _)| *s == poisoned).cloned().unwrap();
    let _: () = keys.query("SET", &[&keys.key(&format!("list:{poisoned}")), "not a list"]).await;
    let sidecar = sidecars::scripted(Script::Map(count_then_push)).await;
    let setup = Setup { poison: "stop", max_ops: 40, ..Setup::default() };
    let config = parse_connector(&connector_yaml(&ws.log_path(), &sidecar.address, &keys.sink_yaml(""), &setup));
    let partitioner = Partitioner::new(&config.partitioning);
    let running = Running::start(config).await;
    let error = running.ended(WAIT).await.expect_err("the poison policy `stop` stops the connector").to_string();
    assert!(error.contains(&format!("event {first_id}")) && error.contains(&format!("at position {first_position}")), "{error}");
    assert!(error.contains("WRONGTYPE") && error.contains(&keys.key(&format!("list:{poisoned}"))), "{error}");

    // The checkpoints say what was applied, and the counters agree with them exactly.
    let stored = keys.checkpoints("bookings").await;
    let partition = partitioner.partition_of(&poisoned);
    let at = |p: u32| stored.get(&(4, p)).copied().unwrap_or(0);
    assert!(at(partition) < first_position, "the checkpoint of partition {partition} stays before the event: {stored:?}");
    assert_counted_exactly(&keys, &events, |position, stream| position <= at(partitioner.partition_of(stream))).await;
}

/// The server SIGKILLed mid-run and started again on its append-only file: batches fail
/// (connection refused, then LOADING) and are retried; a batch whose EXEC was in flight is
/// checked against the checkpoints; nothing is lost or doubled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_killed_mid_run_loses_and_doubles_nothing() {
    let server = PrivateServer::start();
    let keys = RedisKeys::on(&server.url, "kill");
    let ws = Workspace::new();
    let log = ws.log_with_events(30_000, 2_000, 41);
    let head = log.head().unwrap();
    let events = log_events(&ws);
    let sidecar = sidecars::scripted(Script::Map(count_then_push)).await;
    let setup = Setup { max_ops: 100, ..Setup::default() };
    let yaml = connector_yaml(&ws.log_path(), &sidecar.address, &keys.sink_yaml(""), &setup);
    let mut running = Running::start(parse_connector(&yaml)).await;
    // Kill it once a tenth of the log is applied, well before the end.
    poll_until_async("a tenth of the log applied", WAIT, || async {
        let progress = running.progress.borrow().clone();
        (progress.low_watermark() >= head / 10).then_some(())
    })
    .await;
    server.kill();
    let at_kill = running.progress.borrow().low_watermark();
    assert!(at_kill < head, "the whole log was applied before the kill; make the log longer");
    server.restart();
    running.wait_for(head, WAIT).await;
    running.stop().await.expect("clean stop");
    assert_counted_exactly(&keys, &events, |_, _| true).await;
    assert!(keys.checkpoints("bookings").await.values().all(|p| *p == head));
}

/// A TCP proxy in front of the shared server that, once armed, cuts the connection at the
/// next EXEC: before the server gets it (`after_exec: false`), or after the server got it but
/// before its reply comes back (`after_exec: true`).
struct ExecCutter {
    url: String,
    armed: Arc<AtomicBool>,
}

impl ExecCutter {
    async fn start(target_port: u16, after_exec: bool) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("redis://{}/0", listener.local_addr().unwrap());
        let armed = Arc::new(AtomicBool::new(false));
        let cutting = armed.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let server = TcpStream::connect(("127.0.0.1", target_port)).await.unwrap();
                tokio::spawn(relay(client, server, cutting.clone(), after_exec));
            }
        });
        Self { url, armed }
    }
}

async fn relay(client: TcpStream, server: TcpStream, armed: Arc<AtomicBool>, after_exec: bool) {
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let cut = Arc::new(tokio::sync::Notify::new());
    let cut_up = cut.clone();
    let cut_flag = Arc::new(AtomicBool::new(false));
    let cut_seen = cut_flag.clone();
    let upstream = async move {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match client_read.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            let exec = buf[..n].windows(6).any(|w| w.eq_ignore_ascii_case(b"\r\nEXEC"));
            if exec && armed.swap(false, Ordering::SeqCst) {
                if after_exec {
                    // The server runs EXEC; its reply never reaches the client.
                    cut_flag.store(true, Ordering::SeqCst);
                    let _ = server_write.write_all(&buf[..n]).await;
                }
                cut_up.notify_one();
                return;
            }
            if server_write.write_all(&buf[..n]).await.is_err() {
                return;
            }
        }
    };
    let downstream = async move {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = tokio::select! {
                read = server_read.read(&mut buf) => match read {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                },
                _ = cut.notified() => return,
            };
            if cut_seen.load(Ordering::SeqCst) {
                return;
            }
            if client_write.write_all(&buf[..n]).await.is_err() {
                return;
            }
        }
    };
    // Either side ending drops both halves: the client sees its connection closed.
    tokio::select! {
        _ = upstream => {}
        _ = downstream => {}
    }
}

/// A connection lost around EXEC leaves the batch in doubt; the next attempt reads the
/// checkpoints first: a batch that committed is not applied again, one that did not is.
#[tokio::test]
async fn a_batch_in_doubt_after_a_lost_exec_is_applied_exactly_once() {
    let port: u16 = crate::support::redis::url().rsplit(':').next().unwrap().trim_end_matches("/0").parse().unwrap();
    for after_exec in [true, false] {
        let proxy = ExecCutter::start(port, after_exec).await;
        let keys = RedisKeys::on(&proxy.url, "doubt");
        let sink = RedisSink::open(&keys.sink_config(), "doubt").await.expect("open");
        let mut writer = sink.open_writer().await.expect("writer");
        writer.apply(fenced(push_seen(&sink, 10), 10, None)).await.expect("first batch");
        proxy.armed.store(true, Ordering::SeqCst);
        let batch = fenced(push_seen(&sink, 20), 20, Some(10));
        let lost = writer.apply(batch.clone()).await.expect_err("the connection is cut at EXEC");
        assert!(lost.transient && lost.message.contains("EXEC's outcome is unknown"), "{lost:?}");
        let committed = if after_exec { vec![10, 20] } else { vec![10] };
        assert_eq!(seen(&keys).await, committed, "after_exec {after_exec}");
        writer.apply(batch).await.expect("the retry");
        assert_eq!(seen(&keys).await, [10, 20], "after_exec {after_exec}: applied exactly once");
        assert_eq!(sink.load_checkpoints().await.unwrap()[0].position, 20);
    }
}

/// Counters are read under WATCH with the types: an INCRBY that would overflow, an HINCRBY on
/// a field that is not an integer, are refused with Redis's words before anything is sent.
#[tokio::test]
async fn counters_redis_would_refuse_fail_their_event_before_the_batch_is_sent() {
    let keys = RedisKeys::fresh("counters");
    let _: () = keys.query("SET", &[&keys.key("n"), "9223372036854775807"]).await;
    let _: () = keys.query("HSET", &[&keys.key("g"), "c", "x"]).await;
    let _: () = keys.query("RPUSH", &[&keys.key("l"), "x"]).await;
    let sink = RedisSink::open(&keys.sink_config(), "counters").await.expect("open");
    let decode = |op: Any| sink.decode(&op).unwrap().unwrap();
    let incr = |key: &str| decode(pack("projection.RedisIncrBy", &gw::RedisIncrBy { key: key.into(), by: 1 }));
    let hincr = decode(pack("projection.RedisHashIncrBy", &gw::RedisHashIncrBy { key: "g".into(), field: "c".into(), by: 1 }));
    let mut writer = sink.open_writer().await.expect("writer");
    let on_list = format!("WRONGTYPE Operation against a key holding the wrong kind of value: `{}` holds a type other than string", keys.key("l"));
    for (op, words) in [
        (incr("n"), "ERR increment or decrement would overflow".to_string()),
        (hincr, "ERR hash value is not an integer".to_string()),
        (incr("l"), on_list),
    ] {
        let items = vec![
            BatchItem::Apply { event: tested_event(1), ops: vec![push_seen(&sink, 1)] },
            BatchItem::Apply { event: tested_event(2), ops: vec![op] },
        ];
        let error = writer.apply(Arc::new(Batch::fenced(items, 1, &[None]))).await.expect_err(&words);
        assert_eq!(error.failed_at, Some(1), "{error:?}");
        assert!(error.message.contains(&words) && error.message.contains("nothing of this batch was sent"), "{}", error.message);
        assert!(seen(&keys).await.is_empty(), "nothing of the batch applied");
        assert!(sink.load_checkpoints().await.unwrap().is_empty());
    }
}

/// What the checks before MULTI cannot foresee, Redis does not roll back: an HDEL that may
/// have emptied a hash (it did not), then the same key used as a set, fails inside EXEC; every
/// other command of the batch and its checkpoint are applied, and the batch is reported so,
/// with the command and its event, for the connector to stop.
#[tokio::test]
async fn a_command_failing_inside_exec_is_reported_as_applied_without_it() {
    let keys = RedisKeys::fresh("exec");
    let _: () = keys.query("HSET", &[&keys.key("h"), "a", "1", "b", "2"]).await;
    let sink = RedisSink::open(&keys.sink_config(), "exec").await.expect("open");
    let decode = |op: Any| sink.decode(&op).unwrap().unwrap();
    let hdel = decode(pack("projection.RedisHashDel", &gw::RedisHashDel { key: "h".into(), fields: vec!["a".into()] }));
    let member = gw::RedisValue { kind: Some(redis_value::Kind::StringValue("m".into())) };
    let sadd = decode(pack("projection.RedisSetAdd", &gw::RedisSetAdd { key: "h".into(), members: vec![member] }));
    let items = vec![
        BatchItem::Apply { event: tested_event(1), ops: vec![push_seen(&sink, 1)] },
        BatchItem::Apply { event: tested_event(2), ops: vec![hdel, sadd] },
        BatchItem::Apply { event: tested_event(3), ops: vec![push_seen(&sink, 3)] },
    ];
    let mut writer = sink.open_writer().await.expect("writer");
    let error = writer.apply(Arc::new(Batch::fenced(items, 1, &[None]))).await.expect_err("SADD on a hash");
    assert!(!error.transient && !error.checkpoint_moved && error.failed_at.is_none(), "{error:?}");
    assert!(error.message.contains(&format!("operation 2 of {} (RedisSetAdd `{}`) failed while EXEC ran: WRONGTYPE", tested_event(2), keys.key("h"))), "{}", error.message);
    assert!(error.message.contains("Redis has no rollback"), "{}", error.message);
    assert_eq!(seen(&keys).await, [1, 3], "the commands around it ran");
    assert_eq!(sink.load_checkpoints().await.unwrap()[0].position, 3, "and the checkpoint moved");
}

#[tokio::test]
async fn an_unreachable_server_or_a_bad_url_fails_the_start_with_a_clear_message() {
    let keys = RedisKeys::on(&format!("redis://127.0.0.1:{}/0", crate::support::processes::free_port()), "down");
    let error = RedisSink::open(&keys.sink_config(), "x").await.err().expect("nothing listens there").to_string();
    assert!(error.starts_with("Redis target `127.0.0.1:") && error.contains("cannot connect: connection refused"), "{error}");
    let problems = projector_gateway::config::parse(&format!(
        "connectors:\n  - id: c\n    source: {{ sqlite: {{ path: e.db }} }}\n    sidecar: {{ address: \"http://127.0.0.1:1\" }}\n    sink: {{ redis: {{ url: \"redis://127.0.0.1:{}/99x\" }} }}\n",
        6391
    ))
    .expect_err("a bad database");
    assert!(problems.iter().any(|p| p.to_string().starts_with("connectors[0].sink.redis.url: not a Redis URL")), "{problems:?}");
}

/// `Describe` with a new version and `rebuild_on_new_version`: the reset operations, the
/// checkpoints deleted and the version recorded in one MULTI/EXEC, then the whole log again.
#[tokio::test]
async fn a_new_projection_version_rebuilds_the_read_model() {
    let keys = RedisKeys::fresh("rebuild");
    let sink = RedisSink::open(&keys.sink_config(), "v").await.expect("open");
    assert_eq!(sink.projection_version().await.unwrap(), None);
    let mut writer = sink.open_writer().await.expect("writer");
    writer.apply(fenced(push_seen(&sink, 10), 10, None)).await.expect("batch");
    let clear = sink
        .decode(&pack("projection.RedisDel", &gw::RedisDel { keys: vec!["seen".into()] }))
        .unwrap()
        .unwrap();
    sink.record_projection_version("p", "2", Some(vec![clear])).await.expect("rebuild");
    assert_eq!(sink.projection_version().await.unwrap().as_deref(), Some("2"));
    assert!(seen(&keys).await.is_empty(), "the reset operations ran");
    assert!(sink.load_checkpoints().await.unwrap().is_empty(), "the checkpoints are gone");
}
