//! A sidecar that answers wrongly, an operation the database rejects, a response that never
//! comes: the connector reports one precise error naming the connector, partition, event and
//! position; the checkpoint never passes that event; the poison policy decides what follows.
//! A hostile sidecar (answers the gateway cannot read, answers nobody asked for) is in
//! `hostile_sidecar.rs`; arbitrary operations, payloads and configs in `fuzz.rs`.

use std::{path::Path, time::Duration};

use bookings_reducer::proto::{ProjectionRequest, ProjectionResponse, SqlValue, Statement, sql_value::Kind};
use prost::Message;

use crate::support::{
    bookings_model::ReadModel,
    fixtures::*,
    sidecars::{self, Script},
};

const WAIT: Duration = Duration::from_secs(60);

struct Outcome {
    ws: Workspace,
    head: u64,
    result: Result<(), String>,
}

async fn run(script: Script, setup: Setup) -> Outcome {
    let ws = Workspace::new();
    let log = ws.log_with_events(600, 60, 11);
    let head = log.head().unwrap();
    let sidecar = sidecars::scripted(script).await;
    let config = parse_connector(&connector_yaml(&ws.log_path(), &sidecar.address, &sqlite_sink_yaml(&ws.target_path()), &setup));
    let mut running = Running::start(config).await;
    // Either the connector stops by itself (policy stop) or it reaches the head.
    let deadline = std::time::Instant::now() + 2 * WAIT;
    let result = loop {
        assert!(std::time::Instant::now() < deadline, "the connector neither stopped nor reached the head within {:?}", 2 * WAIT);
        if running.progress.borrow_and_update().low_watermark() >= head {
            break running.stop().await.map_err(|e| e.to_string());
        }
        if running.task.is_finished() {
            break running.ended(WAIT).await.map_err(|e| e.to_string());
        }
        let _ = tokio::time::timeout(Duration::from_millis(200), running.progress.changed()).await;
    };
    Outcome { ws, head, result }
}

/// (position, partition) named in a poison error, and checks the checkpoint stayed before it.
fn assert_stopped_before_the_event(outcome: &Outcome, expected: &[&str]) {
    let message = outcome.result.as_ref().expect_err("the connector must stop");
    assert!(message.starts_with("connector `bookings`: event "), "{message}");
    for part in expected {
        assert!(message.contains(part), "`{part}` not in: {message}");
    }
    assert!(message.contains("poison policy `stop`"), "{message}");
    let captures = regex::Regex::new(r"at position (\d+) in partition (\d+)").unwrap().captures(message).expect("position and partition named");
    let position: u64 = captures[1].parse().unwrap();
    let partition: u32 = captures[2].parse().unwrap();
    let rows = sqlite_checkpoints(&outcome.ws.target_path(), "bookings");
    for (_, p, stored) in rows.iter().filter(|r| r.1 == partition) {
        assert!(*stored < position, "partition {p} checkpoint {stored} passed the failed event at {position}");
    }
    // The failed event's effect is not in the read model.
    let event_id = regex::Regex::new(r"^connector `bookings`: event ([0-9a-f-]+) ").unwrap().captures(message).unwrap()[1].to_string();
    let (event_type, stream) = event_info(&outcome.ws.log_path(), &event_id);
    if event_type == "GuestCheckedIn" {
        use rusqlite::OptionalExtension;
        let status: Option<String> = rusqlite::Connection::open(outcome.ws.target_path())
            .unwrap()
            .query_row("SELECT status FROM bookings WHERE booking_id = ?1", [&stream], |r| r.get(0))
            .optional()
            .unwrap();
        assert_ne!(status.as_deref(), Some("checked_in"), "{stream}");
    }
}

fn event_info(log: &Path, event_id: &str) -> (String, String) {
    rusqlite::Connection::open(log)
        .unwrap()
        .query_row("SELECT event_type, stream FROM events WHERE event_id = ?1", [event_id], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
}

fn parked(target: &Path) -> Vec<(String, String, String)> {
    let conn = rusqlite::Connection::open(target).unwrap();
    let mut stmt = conn.prepare("SELECT event_type, stream, error FROM parked_events ORDER BY position").unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))).unwrap().collect::<Result<_, _>>().unwrap()
}

fn count_of(log: &Path, event_type: &str) -> usize {
    rusqlite::Connection::open(log)
        .unwrap()
        .query_row("SELECT count(*) FROM events WHERE event_type = ?1", [event_type], |r| r.get::<_, i64>(0))
        .unwrap() as usize
}

fn without(event_type: &'static str) -> impl Fn(&str, &str) -> bool {
    move |_, t| t != event_type
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_with_the_wrong_event_id_stops_the_connector_before_that_event() {
    let outcome = run(Script::WrongIdFor("GuestCheckedIn"), Setup::default()).await;
    assert_stopped_before_the_event(&outcome, &["GuestCheckedIn", "`not-the-request-id`, which matches no event in flight"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn responses_out_of_request_order_stop_the_connector() {
    let outcome = run(Script::SwapFirst("PaymentRecorded"), Setup { partitions: 1, ..Setup::default() }).await;
    assert_stopped_before_the_event(&outcome, &["PaymentRecorded", "sent after this one, before answering this one"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_operation_type_is_named() {
    let outcome = run(Script::UnknownOpFor("BookingCancelled"), Setup::default()).await;
    assert_stopped_before_the_event(&outcome, &["BookingCancelled", "unknown operation `projection.Teleport` for the sqlite sink"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_that_never_comes_times_out_after_the_retries() {
    let setup = Setup { request_timeout_ms: 300, max_retries: 1, ..Setup::default() };
    let outcome = run(Script::HangAt("GuestCheckedOut"), setup).await;
    assert_stopped_before_the_event(&outcome, &["GuestCheckedOut", "did not answer within 300ms, 2 time(s)"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_that_throws_on_an_event_is_retried_then_poisoned() {
    let setup = Setup { max_retries: 1, ..Setup::default() };
    let outcome = run(Script::StatusAt("GuestCheckedOut"), setup).await;
    assert_stopped_before_the_event(
        &outcome,
        &["GuestCheckedOut", "the sidecar failed its stream with `Internal: handler failed: KeyError 'room'`", "2 time(s)"],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn park_also_catches_an_event_whose_handler_throws() {
    let setup = Setup { max_retries: 0, poison: "park", ..Setup::default() };
    let outcome = run(Script::StatusAt("GuestCheckedOut"), setup).await;
    outcome.result.as_ref().expect("park keeps the connector running");
    let rows = parked(&outcome.ws.target_path());
    assert_eq!(rows.len(), count_of(&outcome.ws.log_path(), "GuestCheckedOut"));
    assert!(rows.iter().all(|(t, _, e)| t == "GuestCheckedOut" && e.contains("KeyError 'room'")), "{rows:?}");
    ReadModel::from_sqlite(&outcome.ws.target_path()).assert_same(&ReadModel::from_log(&outcome.ws.log_path(), without("GuestCheckedOut")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operation_the_database_rejects_names_the_statement() {
    let outcome = run(Script::BadSqlFor("GuestCheckedIn"), Setup::default()).await;
    assert_stopped_before_the_event(&outcome, &["GuestCheckedIn", "no such table: no_such_table", "UPDATE no_such_table SET x = 1"]);
}

/// A statement for GuestCheckedIn whose parameters do not match its placeholders.
fn check_in_with(sql: &'static str, params: usize, req: &ProjectionRequest) -> ProjectionResponse {
    let mut response = bookings_reducer::reduce(req);
    if req.event_type == "GuestCheckedIn" {
        let params = (0..params).map(|_| SqlValue { kind: Some(Kind::StringValue(req.stream.clone())) }).collect();
        let statement = Statement { sql: sql.into(), params };
        response.operations.clear();
        response.operation =
            Some(prost_types::Any { type_url: "type.googleapis.com/projection.Statement".into(), value: statement.encode_to_vec() });
    }
    response
}

fn one_parameter_missing(req: &ProjectionRequest) -> ProjectionResponse {
    check_in_with("UPDATE bookings SET status = 'checked_in' WHERE booking_id = $1 AND status <> $2", 1, req)
}

fn one_parameter_too_many(req: &ProjectionRequest) -> ProjectionResponse {
    check_in_with("UPDATE bookings SET status = 'checked_in' WHERE booking_id = $1", 2, req)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statement_missing_a_parameter_is_refused() {
    let outcome = run(Script::Map(one_parameter_missing), Setup::default()).await;
    assert_stopped_before_the_event(&outcome, &["GuestCheckedIn", "the statement uses $2 but the sidecar sent 1 parameter(s)"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statement_with_a_parameter_too_many_is_refused() {
    let outcome = run(Script::Map(one_parameter_too_many), Setup::default()).await;
    assert_stopped_before_the_event(
        &outcome,
        &["GuestCheckedIn", "the sidecar sent 2 parameter(s) but the statement does not use $2; every parameter needs its placeholder"],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn park_records_each_failed_event_and_applies_everything_else() {
    let outcome = run(Script::BadSqlFor("GuestCheckedIn"), Setup { poison: "park", ..Setup::default() }).await;
    outcome.result.as_ref().expect("park keeps the connector running");
    let rows = parked(&outcome.ws.target_path());
    assert_eq!(rows.len(), count_of(&outcome.ws.log_path(), "GuestCheckedIn"));
    assert!(rows.iter().all(|(t, _, e)| t == "GuestCheckedIn" && e.contains("no such table: no_such_table")), "{rows:?}");
    ReadModel::from_sqlite(&outcome.ws.target_path()).assert_same(&ReadModel::from_log(&outcome.ws.log_path(), without("GuestCheckedIn")));
    assert!(sqlite_checkpoints(&outcome.ws.target_path(), "bookings").iter().all(|r| r.2 == outcome.head));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn park_also_catches_errors_the_sidecar_reports() {
    let outcome = run(Script::ErrorFor("PaymentRecorded", false), Setup { poison: "park", ..Setup::default() }).await;
    outcome.result.as_ref().expect("park keeps the connector running");
    let rows = parked(&outcome.ws.target_path());
    assert_eq!(rows.len(), count_of(&outcome.ws.log_path(), "PaymentRecorded"));
    assert!(rows.iter().all(|(_, _, e)| e.contains("the sidecar reported an error: cannot price this room")), "{rows:?}");
    ReadModel::from_sqlite(&outcome.ws.target_path()).assert_same(&ReadModel::from_log(&outcome.ws.log_path(), without("PaymentRecorded")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skip_moves_on_without_a_trace_in_the_target() {
    let outcome = run(Script::WrongIdFor("GuestCheckedOut"), Setup { poison: "skip", ..Setup::default() }).await;
    outcome.result.as_ref().expect("skip keeps the connector running");
    assert!(parked(&outcome.ws.target_path()).is_empty());
    ReadModel::from_sqlite(&outcome.ws.target_path()).assert_same(&ReadModel::from_log(&outcome.ws.log_path(), without("GuestCheckedOut")));
    assert!(sqlite_checkpoints(&outcome.ws.target_path(), "bookings").iter().all(|r| r.2 == outcome.head));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retryable_sidecar_error_is_retried_then_poisoned() {
    let setup = Setup { max_retries: 2, poison: "park", ..Setup::default() };
    let outcome = run(Script::ErrorFor("GuestCheckedOut", true), setup).await;
    outcome.result.as_ref().expect("park keeps the connector running");
    let rows = parked(&outcome.ws.target_path());
    assert_eq!(rows.len(), count_of(&outcome.ws.log_path(), "GuestCheckedOut"));
}
