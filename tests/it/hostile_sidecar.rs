//! A hostile sidecar: answers the gateway cannot read (over its message size limit, invalid
//! UTF-8, nesting no decoder takes), answers nobody asked for, an operation under the wrong
//! type URL. `bad_input.rs` covers the sidecar that is merely wrong (another eventId, out of
//! order, an unknown operation, silence, reported errors); these go further, against the real
//! binary: the gateway runs as its own process (`run --state --listen`, so it stays up after
//! the connector stops and its memory can be read), the sidecar in this one.
//!
//! For each case: the connector stops (poison policy `stop`) with one error, which names the
//! connector, the event, its position and partition, and is the only error the gateway
//! prints; the checkpoint stays before that event and the read model holds exactly the events
//! each partition's checkpoint covers; and the gateway's peak memory (`VmHWM`) stays under
//! `PEAK_RSS_BOUND_KIB`, well below the 64 MiB answer of the first case.

use std::{
    path::Path,
    process::Command,
    time::Duration,
};

use bookings_reducer::proto::{ProjectionRequest, ProjectionResponse, SqlValue, Statement, sql_value::Kind};
use projector_gateway::partition::Partitioner;
use prost::Message;
use crate::support::{
    bookings_model::ReadModel,
    fixtures::*,
    http::get,
    processes::{self, Process, SIGTERM},
    sidecars::{self, LocalSidecar, Script},
};

const WAIT: Duration = Duration::from_secs(120);

/// The gateway's peak resident memory in any of these cases (a debug build peaks at 41-46
/// MiB; an answer over the limit is refused from its 5-byte header, never buffered: what the
/// HTTP/2 window let in, 4 MiB, is all of it the gateway ever holds).
const PEAK_RSS_BOUND_KIB: u64 = 64 * 1024;

/// The gateway's own message size limit for answers (`pipeline/mod.rs`).
const MAX_ANSWER_BYTES: usize = 64 << 20;

/// What a case left behind.
struct Outcome {
    ws: Workspace,
    yaml: String,
    /// The connector's error, as `/connectors/bookings` reports it.
    error: String,
    /// The gateway's log.
    stderr: String,
    peak_rss_kib: u64,
    _gateway: Process,
    _sidecar: LocalSidecar,
}

/// Runs the bookings connector (600 events over 60 streams, 4 partitions, SQLite target)
/// against `script` in a gateway process until the connector fails.
async fn run(script: Script, setup: Setup) -> Outcome {
    run_with(script, setup, "").await
}

/// [`run`] with `sidecar_keys` (YAML lines at the sidecar section's indentation) added.
async fn run_with(script: Script, setup: Setup, sidecar_keys: &str) -> Outcome {
    let ws = Workspace::new();
    ws.log_with_events(600, 60, 11);
    let sidecar = sidecars::scripted(script).await;
    let yaml = connector_yaml(&ws.log_path(), &sidecar.address, &sqlite_sink_yaml(&ws.target_path()), &setup)
        .replacen("    sidecar:\n", &format!("    sidecar:\n{sidecar_keys}"), 1);
    std::fs::write(ws.path("gateway.yaml"), &yaml).unwrap();
    let listen = format!("127.0.0.1:{}", processes::free_port());
    let mut command = Command::new(processes::gateway_bin());
    command
        .args(["run", "--quiet", "--config"])
        .arg(ws.path("gateway.yaml"))
        .args(["--listen", &listen, "--state"])
        .arg(ws.path("state.db"))
        .env("RUST_LOG", "info");
    let mut gateway = Process::spawn(command, ws.path("gateway.log"), false);
    let status = poll_until("the connector to stop with an error", WAIT, || {
        let (_, body) = get(&listen, "/connectors/bookings")?;
        let status: serde_json::Value = serde_json::from_str(&body).ok()?;
        (status["state"] == "failed").then_some(status)
    })
    .await;
    let peak_rss_kib = peak_rss_kib(gateway.child.id());
    // Stopped: the log is complete once the process has ended.
    gateway.signal(SIGTERM);
    gateway.wait_exit(Duration::from_secs(30));
    let stderr = std::fs::read_to_string(ws.path("gateway.log")).unwrap();
    Outcome { ws, yaml, error: status["error"].as_str().unwrap_or_default().to_owned(), stderr, peak_rss_kib, _gateway: gateway, _sidecar: sidecar }
}

/// `VmHWM` of a process: its peak resident set so far.
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("the gateway is running");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/<pid>/status")
}

/// Checks the one error and what it names, the checkpoints and the read model against it,
/// and the memory; returns the line the operator saw.
fn assert_stopped_precisely(outcome: &Outcome, expected: &[&str]) -> String {
    let message = &outcome.error;
    assert!(message.starts_with("connector `bookings`: event "), "{message}");
    for part in expected {
        assert!(message.contains(part), "`{part}` not in: {message}");
    }
    assert!(message.contains("poison policy `stop`"), "{message}");
    // The only error the gateway printed (as a log line, and as a plain `error:` line if any).
    let errors: std::collections::BTreeSet<&str> = outcome
        .stderr
        .lines()
        .filter_map(|l| l.strip_prefix("error: ").or_else(|| l.split_once(" ERROR ").map(|(_, rest)| rest.trim_start())))
        .map(|l| l.split_once(": connector `bookings`: ").map_or(l, |(_, rest)| rest))
        .map(|l| l.strip_prefix("connector `bookings`: ").unwrap_or(l))
        .map(|l| l.strip_suffix(" connector=bookings").unwrap_or(l))
        .collect();
    let expected_line = message.strip_prefix("connector `bookings`: ").unwrap();
    assert_eq!(errors.iter().copied().collect::<Vec<_>>(), [expected_line], "errors in the log:\n{}", outcome.stderr);
    let operator_line = outcome.stderr.lines().find(|l| l.starts_with("error: ") || l.contains(" ERROR ")).expect("the error line").to_owned();

    let captures = regex::Regex::new(r"at position (\d+) in partition (\d+)").unwrap().captures(message).expect("position and partition named");
    let position: u64 = captures[1].parse().unwrap();
    let partition: u32 = captures[2].parse().unwrap();
    let target = outcome.ws.target_path();
    let checkpoints = sqlite_checkpoints(&target, "bookings");
    for (_, p, stored) in checkpoints.iter().filter(|r| r.1 == partition) {
        assert!(*stored < position, "partition {p}'s checkpoint {stored} passed the failed event at {position}");
    }
    assert_read_model_matches_checkpoints(&outcome.ws.log_path(), &target, &outcome.yaml);
    assert!(
        outcome.peak_rss_kib < PEAK_RSS_BOUND_KIB,
        "the gateway peaked at {} KiB (bound {PEAK_RSS_BOUND_KIB} KiB)",
        outcome.peak_rss_kib
    );
    eprintln!("operator sees: {operator_line}\n  gateway peak RSS: {} KiB", outcome.peak_rss_kib);
    operator_line
}

/// The read model holds exactly the events at or before their partition's checkpoint: every
/// one of those applied, none after.
fn assert_read_model_matches_checkpoints(log: &Path, target: &Path, yaml: &str) {
    let partitioner = Partitioner::new(&parse_connector(yaml).partitioning);
    let stored: std::collections::HashMap<u32, u64> =
        sqlite_checkpoints(target, "bookings").into_iter().filter(|r| r.0 == partitioner.count()).map(|r| (r.1, r.2)).collect();
    let covered = ReadModel::from_log_where(log, |position, stream, _| {
        stored.get(&partitioner.partition_of(stream)).is_some_and(|&at| position <= at)
    });
    ReadModel::from_sqlite(target).assert_same(&covered);
}

// ---------------------------------------------------------------------------------------------
// The hostile answers
// ---------------------------------------------------------------------------------------------

const TARGETED: &str = "GuestCheckedIn";

/// The faithful answer, encoded.
fn faithful(req: &ProjectionRequest) -> Vec<u8> {
    bookings_reducer::reduce(req).encode_to_vec()
}

/// The first event of the targeted type the sidecar saw (the one it answers over the limit,
/// every time it is sent).
static OVERSIZED: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// An answer one KiB over the gateway's limit, to the first event of the targeted type (and
/// to it only, so the sidecar holds one such answer at a time): a statement that is mostly a
/// comment.
fn over_the_limit(req: &ProjectionRequest) -> Vec<Vec<u8>> {
    if req.event_type != TARGETED || OVERSIZED.get_or_init(|| req.event_id.clone()) != &req.event_id {
        return vec![faithful(req)];
    }
    let sql = format!("-- {}\nSELECT 1", "x".repeat(MAX_ANSWER_BYTES + 1024));
    let mut response = bookings_reducer::reduce(req);
    response.operations.clear();
    response.operation = Some(statement_any(Statement { sql, params: vec![] }));
    vec![response.encode_to_vec()]
}

/// The first answer to the targeted type 2 MiB long: over a `max_message_bytes` of 1 MiB.
fn over_a_configured_limit(req: &ProjectionRequest) -> Vec<Vec<u8>> {
    static FIRST: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    if req.event_type != TARGETED || FIRST.get_or_init(|| req.event_id.clone()) != &req.event_id {
        return vec![faithful(req)];
    }
    let sql = format!("-- {}\nSELECT 1", "x".repeat(2 << 20));
    let mut response = bookings_reducer::reduce(req);
    response.operations.clear();
    response.operation = Some(statement_any(Statement { sql, params: vec![] }));
    vec![response.encode_to_vec()]
}

fn statement_any(statement: Statement) -> prost_types::Any {
    prost_types::Any { type_url: "type.googleapis.com/projection.Statement".into(), value: statement.encode_to_vec() }
}

/// After each answer to the targeted type, another one for an event that was never sent.
fn answers_for_events_never_sent(req: &ProjectionRequest) -> Vec<Vec<u8>> {
    let mut frames = vec![faithful(req)];
    if req.event_type == TARGETED {
        frames.push(ProjectionResponse { event_id: format!("never-sent-{}", req.event_id), ..Default::default() }.encode_to_vec());
    }
    frames
}

/// The answer with an unknown field (99) holding 10,000 nested groups: valid protobuf that no
/// decoder with a recursion limit takes.
fn nested_10000_deep(req: &ProjectionRequest) -> Vec<Vec<u8>> {
    let mut frame = faithful(req);
    if req.event_type == TARGETED {
        let key = |wire_type| {
            let mut key = Vec::new();
            prost::encoding::encode_key(99, wire_type, &mut key);
            key
        };
        let (start, end) = (key(prost::encoding::WireType::StartGroup), key(prost::encoding::WireType::EndGroup));
        for _ in 0..10_000 {
            frame.extend_from_slice(&start);
        }
        for _ in 0..10_000 {
            frame.extend_from_slice(&end);
        }
    }
    vec![frame]
}

/// The answer with its eventId (field 1) as bytes that are not UTF-8.
fn event_id_not_utf8(req: &ProjectionRequest) -> Vec<Vec<u8>> {
    if req.event_type != TARGETED {
        return vec![faithful(req)];
    }
    let mut response = bookings_reducer::reduce(req);
    response.event_id.clear();
    // Field 1, length-delimited: the request's id with two bytes that are no UTF-8.
    let mut id = req.event_id.clone().into_bytes();
    id.extend_from_slice(b"\xff\xfe");
    let mut frame = vec![0x0a];
    prost::encoding::encode_varint(id.len() as u64, &mut frame);
    frame.extend_from_slice(&id);
    frame.extend_from_slice(&response.encode_to_vec());
    vec![frame]
}

/// The statement's SQL (inside the operation's bytes) is not UTF-8.
fn sql_not_utf8(req: &ProjectionRequest) -> ProjectionResponse {
    let mut response = bookings_reducer::reduce(req);
    if req.event_type == TARGETED {
        let mut value = vec![0x0a];
        let sql = b"UPDATE bookings SET status = '\xc3\x28'";
        prost::encoding::encode_varint(sql.len() as u64, &mut value);
        value.extend_from_slice(sql);
        response.operations.clear();
        response.operation = Some(prost_types::Any { type_url: "type.googleapis.com/projection.Statement".into(), value });
    }
    response
}

/// A JSON parameter nested 10,000 levels deep.
fn json_parameter_10000_deep(req: &ProjectionRequest) -> ProjectionResponse {
    let mut response = bookings_reducer::reduce(req);
    if req.event_type == TARGETED {
        let json = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        let params = vec![SqlValue { kind: Some(Kind::JsonValue(json)) }];
        response.operations.clear();
        response.operation = Some(statement_any(Statement { sql: "UPDATE bookings SET status = $1".into(), params }));
    }
    response
}

/// The reducer's own operation, under the type URL of a MongoDB operation.
fn wrong_type_url(req: &ProjectionRequest) -> ProjectionResponse {
    let mut response = bookings_reducer::reduce(req);
    if req.event_type == TARGETED {
        for any in response.operation.iter_mut().chain(response.operations.iter_mut()) {
            any.type_url = "type.googleapis.com/projection.InsertOne".into();
        }
    }
    response
}

// ---------------------------------------------------------------------------------------------
// Cases
// ---------------------------------------------------------------------------------------------

fn retried_once() -> Setup {
    Setup { max_retries: 1, ..Setup::default() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_over_the_message_size_limit_is_refused_unread() {
    let outcome = run(Script::Frames(over_the_limit), retried_once()).await;
    assert_stopped_precisely(
        &outcome,
        &[TARGETED, "an answer of the sidecar could not be read", "decoded message length too large", "the limit is: 67108864 bytes", "2 time(s)"],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_over_a_configured_limit_is_refused_unread() {
    let outcome = run_with(Script::Frames(over_a_configured_limit), retried_once(), "      max_message_bytes: 1048576\n").await;
    assert_stopped_precisely(
        &outcome,
        &[TARGETED, "an answer of the sidecar could not be read", "decoded message length too large", "the limit is: 1048576 bytes", "2 time(s)"],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_for_events_never_sent_stop_the_connector() {
    let outcome = run(Script::Frames(answers_for_events_never_sent), Setup::default()).await;
    assert_stopped_precisely(&outcome, &["`never-sent-", "which matches no event in flight"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_before_any_request_stops_the_connector() {
    let outcome = run(Script::AnswerFirst("before-any-request"), Setup::default()).await;
    assert_stopped_precisely(&outcome, &["`before-any-request`, which matches no event in flight"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_nested_10000_deep_is_refused() {
    let outcome = run(Script::Frames(nested_10000_deep), retried_once()).await;
    assert_stopped_precisely(&outcome, &[TARGETED, "an answer of the sidecar could not be read", "recursion limit reached", "2 time(s)"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_json_parameter_nested_10000_deep_is_refused() {
    let outcome = run(Script::Map(json_parameter_10000_deep), Setup::default()).await;
    assert_stopped_precisely(&outcome, &[TARGETED, "parameter $1: jsonValue is not JSON: recursion limit exceeded"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_id_that_is_not_utf8_is_refused() {
    let outcome = run(Script::Frames(event_id_not_utf8), retried_once()).await;
    assert_stopped_precisely(
        &outcome,
        &[TARGETED, "an answer of the sidecar could not be read", "ProjectionResponse.event_id: invalid string value: data is not UTF-8 encoded", "2 time(s)"],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_that_is_not_utf8_is_refused() {
    let outcome = run(Script::Map(sql_not_utf8), Setup::default()).await;
    assert_stopped_precisely(&outcome, &[TARGETED, "operation `projection.Statement` is malformed", "invalid string value: data is not UTF-8 encoded"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operation_under_another_type_url_is_refused() {
    let outcome = run(Script::Map(wrong_type_url), Setup::default()).await;
    assert_stopped_precisely(&outcome, &[TARGETED, "unknown operation `projection.InsertOne` for the sqlite sink"]);
}

/// Found by `an_answer_before_any_request_stops_the_connector`'s script on a connector with
/// nothing to do: every stream it opened got an answer at once, which reopened the stream at
/// once: 5,412 WARN lines and 1.8 s of CPU in 3 s. Now such a stream is reopened with backoff
/// and reported as an outage (one WARN, then DEBUG).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_connector_does_not_spin_on_answers_nobody_asked_for() {
    let ws = Workspace::new();
    ws.log_with_events(0, 1, 11);
    let sidecar = sidecars::scripted(Script::AnswerFirst("before-any-request")).await;
    let setup = Setup::default();
    let yaml = connector_yaml(&ws.log_path(), &sidecar.address, &sqlite_sink_yaml(&ws.target_path()), &setup);
    std::fs::write(ws.path("gateway.yaml"), &yaml).unwrap();
    let mut gateway = processes::gateway_run(&ws.path("gateway.yaml"), ws.dir.path(), "gateway");
    poll_until("the partitions to open their streams", WAIT, || (sidecar.streams() >= u64::from(setup.partitions)).then_some(())).await;
    let opened = sidecar.streams();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let reopened = sidecar.streams() - opened;
    gateway.signal(SIGTERM);
    gateway.wait_exit(Duration::from_secs(30));
    let log = std::fs::read_to_string(ws.path("gateway.log")).unwrap();
    let warnings = log.lines().filter(|l| l.contains(" WARN ") && l.contains("while no event was in flight")).count();
    // Backoff from 100 ms doubling: about 5 reconnections per partition in 3 s (thousands
    // without it).
    assert!(reopened <= 10 * u64::from(setup.partitions), "{reopened} streams opened in 3 s");
    assert_eq!(warnings, 1, "{log}");
}
