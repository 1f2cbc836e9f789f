//! The HTTP (CloudEvents) producer sink against a real HTTP server started in each test
//! (axum on 127.0.0.1:0), which records every request and answers what the test scripts: the
//! three modes' bodies and headers, retries of 429 (after its `Retry-After`), 500 and
//! timeouts, the poison policies for a 400, a refused endpoint (401), checkpoints in a file
//! and a restart that sends only what came after them.

#[cfg(feature = "kurrentdb")]
use crate::support::kurrentdb as kurrentdb_server;

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use axum::{
    Router,
    body::Bytes,
    extract::State,
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
};
use chrono::{TimeZone, Utc};
use projector_gateway::sources::sqlite::{EventLog, NewEvent};
use serde_json::{Value, json};
use crate::support::fixtures::*;

// ---------------------------------------------------------------------------------------------
// The receiving server

/// One request as the server received it.
#[derive(Clone, Debug)]
struct Received {
    at: Instant,
    headers: HeaderMap,
    body: Bytes,
    /// The status the server answered.
    status: u16,
}

impl Received {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().expect("ASCII header"))
    }

    /// The CloudEvents the request carries, in whichever mode it was sent.
    fn events(&self) -> Vec<Value> {
        match self.header("content-type") {
            Some("application/cloudevents+json") => vec![serde_json::from_slice(&self.body).expect("a JSON CloudEvent")],
            Some("application/cloudevents-batch+json") => serde_json::from_slice(&self.body).expect("a JSON array of CloudEvents"),
            // Binary mode: the id is all the tests need from the headers here.
            _ => vec![json!({ "id": self.header("ce-id").expect("ce-id") })],
        }
    }

    fn ids(&self) -> Vec<String> {
        self.events().iter().map(|e| e["id"].as_str().expect("id").to_owned()).collect()
    }

    fn accepted(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// What the server answers to one request.
struct Reply {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: String,
    /// The server holds the answer this long (a slow endpoint).
    delay: Duration,
}

impl Reply {
    fn status(status: u16) -> Self {
        Self { status, headers: Vec::new(), body: String::new(), delay: Duration::ZERO }
    }

    fn ok() -> Self {
        Self::status(202)
    }
}

/// Decides the answer to the `n`-th request (0-based).
type Script = dyn Fn(usize, &HeaderMap, &Bytes) -> Reply + Send + Sync;

#[derive(Clone)]
struct ServerState {
    received: Arc<Mutex<Vec<Received>>>,
    script: Arc<Script>,
}

struct Receiver {
    url: String,
    received: Arc<Mutex<Vec<Received>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Receiver {
    async fn start(script: impl Fn(usize, &HeaderMap, &Bytes) -> Reply + Send + Sync + 'static) -> Self {
        let received = Arc::new(Mutex::new(Vec::new()));
        let state = ServerState { received: received.clone(), script: Arc::new(script) };
        let app = Router::new().fallback(answer).with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind 127.0.0.1:0");
        let url = format!("http://{}/events", listener.local_addr().unwrap());
        let task = tokio::spawn(async move { axum::serve(listener, app).await.expect("test server") });
        Self { url, received, task }
    }

    fn requests(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    /// How often the endpoint accepted each event id.
    fn accepted_ids(&self) -> HashMap<String, usize> {
        let mut counts = HashMap::new();
        for request in self.requests().iter().filter(|r| r.accepted()) {
            for id in request.ids() {
                *counts.entry(id).or_default() += 1;
            }
        }
        counts
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn answer(State(state): State<ServerState>, headers: HeaderMap, body: Bytes) -> Response {
    let reply = {
        let mut received = state.received.lock().unwrap();
        let reply = (state.script)(received.len(), &headers, &body);
        received.push(Received { at: Instant::now(), headers, body, status: reply.status });
        reply
    };
    if !reply.delay.is_zero() {
        tokio::time::sleep(reply.delay).await;
    }
    let mut response = (StatusCode::from_u16(reply.status).unwrap(), reply.body).into_response();
    for (name, value) in reply.headers {
        response.headers_mut().insert(name, value.parse().unwrap());
    }
    response
}

// ---------------------------------------------------------------------------------------------
// Logs and connectors

const CREATED: i64 = 1_772_368_205; // 2026-03-01T12:30:05Z

fn event(stream: &str, event_type: &str, data: Value, id: &str) -> NewEvent {
    NewEvent {
        stream: stream.into(),
        event_type: event_type.into(),
        data: data.to_string(),
        metadata: None,
        event_id: Some(id.into()),
        created: Some(Utc.timestamp_opt(CREATED, 0).unwrap()),
    }
}

/// `count` events over `streams` streams, ids `ev-<prefix>-<n>`, appended to the log.
fn append_events(log: &mut EventLog, prefix: &str, count: usize, streams: usize) -> Vec<(u64, String)> {
    let events: Vec<NewEvent> = (0..count)
        .map(|n| event(&format!("booking-{}", n % streams), "RoomBooked", json!({ "n": n, "prefix": prefix }), &format!("ev-{prefix}-{n}")))
        .collect();
    let positions = log.append(&events).expect("append");
    positions.into_iter().zip(events.into_iter().map(|e| e.event_id.unwrap())).collect()
}

struct Connector<'a> {
    ws: &'a Workspace,
    url: &'a str,
    sink: &'a str,
    partitions: u32,
    poison: &'a str,
    /// `batch.max_wait_ms`: how long the pipeline gathers events into one batch.
    linger_ms: u64,
}

impl Connector<'_> {
    fn yaml(&self) -> String {
        format!(
            "connectors:\n  - id: hooks\n    source: {{ sqlite: {{ path: \"{log}\", poll_interval_ms: 2 }} }}\n    partitioning: {{ count: {partitions} }}\n    batch: {{ max_wait_ms: {linger} }}\n    poison: {poison}\n    sink:\n      http:\n        url: \"{url}\"\n        checkpoints: {{ file: \"{checkpoints}\" }}\n{sink}",
            log = self.ws.log_path().display(),
            partitions = self.partitions,
            poison = self.poison,
            linger = self.linger_ms,
            url = self.url,
            checkpoints = checkpoint_file(self.ws).display(),
            sink = self.sink,
        )
    }

    async fn start(&self) -> Running {
        Running::start(parse_connector(&self.yaml())).await
    }
}

fn checkpoint_file(ws: &Workspace) -> PathBuf {
    ws.path("hooks.checkpoints.json")
}

/// The lowest position the checkpoint file holds (0 without a file).
fn stored_checkpoint(file: &Path) -> u64 {
    let Ok(bytes) = std::fs::read(file) else { return 0 };
    let saved: Value = serde_json::from_slice(&bytes).expect("a checkpoint file");
    let positions = saved["positions"].as_object().expect("positions");
    positions.values().flat_map(|p| p.as_object().unwrap().values()).filter_map(Value::as_u64).min().unwrap_or(0)
}

const WITHIN: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------------------------
// Modes

#[tokio::test]
async fn structured_mode_posts_one_cloudevent_per_event_and_resumes_after_its_checkpoint() {
    let ws = Workspace::new();
    let mut log = EventLog::open(&ws.log_path()).unwrap();
    let first = log
        .append(&[event("booking-\u{e9}t\u{e9} 1", "RoomBooked", json!({ "roomId": "r-12", "priceCents": 24000, "rate": 1.5 }), "ev-first")])
        .unwrap()[0];
    let events = append_events(&mut log, "a", 120, 7);
    let server = Receiver::start(|_, _, _| Reply::ok()).await;
    let connector = Connector {
        ws: &ws,
        url: &server.url,
        sink: "        mode: structured\n        headers: { authorization: \"Bearer t0ken\", x-tenant: acme }\n",
        partitions: 3,
        poison: "stop",
        linger_ms: 0,
    };
    let mut running = connector.start().await;
    let head = log.head().unwrap();
    running.wait_for(head, WITHIN).await;
    running.stop().await.expect("clean stop");

    let requests = server.requests();
    let request = requests.iter().find(|r| r.ids() == ["ev-first"]).expect("the first event was sent");
    assert_eq!(request.header("content-type"), Some("application/cloudevents+json"));
    assert_eq!(request.header("authorization"), Some("Bearer t0ken"), "configured headers are sent");
    assert_eq!(request.header("x-tenant"), Some("acme"));
    let ce: Value = serde_json::from_slice(&request.body).unwrap();
    // The partition depends on the stream's hash; everything else is fixed.
    let partition = ce["partition"].as_u64().expect("an integer partition");
    assert!(partition < 3, "{ce}");
    assert_eq!(
        ce,
        json!({
            "specversion": "1.0",
            "id": "ev-first",
            "source": "projector-gateway/hooks",
            "type": "RoomBooked",
            "subject": "booking-\u{e9}t\u{e9} 1",
            "time": "2026-03-01T12:30:05Z",
            "datacontenttype": "application/json",
            "position": first.to_string(),
            "streamrevision": "0",
            "partition": partition,
            "data": { "roomId": "r-12", "priceCents": 24000, "rate": 1.5 },
        })
    );
    let accepted = server.accepted_ids();
    assert_eq!(accepted.len(), 121, "every event, once");
    assert!(accepted.values().all(|&n| n == 1), "no event twice: {accepted:?}");
    for (_, id) in &events {
        assert!(accepted.contains_key(id), "{id} delivered");
    }
    // Per stream, in log order.
    let order: Vec<String> = requests.iter().flat_map(|r| r.ids()).collect();
    for stream in 0..7 {
        let sent: Vec<&String> = order.iter().filter(|id| events.iter().any(|(_, e)| e == *id && id_number(e) % 7 == stream)).collect();
        let mut sorted = sent.clone();
        sorted.sort_by_key(|id| id_number(id));
        assert_eq!(sent, sorted, "stream booking-{stream} in order");
    }
    assert_eq!(stored_checkpoint(&checkpoint_file(&ws)), head, "checkpoint saved at the head");

    // A restart from the checkpoint file sends only the events after it.
    let more = append_events(&mut log, "b", 30, 5);
    let before = server.requests().len();
    let mut running = connector.start().await;
    running.wait_for(log.head().unwrap(), WITHIN).await;
    running.stop().await.expect("clean stop");
    let resent: Vec<String> = server.requests()[before..].iter().flat_map(|r| r.ids()).collect();
    let mut expected: Vec<String> = more.iter().map(|(_, id)| id.clone()).collect();
    let mut got = resent.clone();
    got.sort();
    expected.sort();
    assert_eq!(got, expected, "after a restart only the new events are sent, once each");
    assert_eq!(stored_checkpoint(&checkpoint_file(&ws)), log.head().unwrap());
}

fn id_number(id: &str) -> usize {
    id.rsplit('-').next().unwrap().parse().unwrap()
}

#[tokio::test]
async fn binary_mode_sends_the_attributes_as_headers_and_the_payload_as_it_is_stored() {
    let ws = Workspace::new();
    let mut log = EventLog::open(&ws.log_path()).unwrap();
    let data = r#"{"roomId": "r-12",  "priceCents": 24000}"#;
    let mut stored = event("caf\u{e9} 100%", "RoomBooked", json!(null), "ev-binary");
    stored.data = data.into();
    let position = log.append(&[stored]).unwrap()[0];
    let events = append_events(&mut log, "c", 40, 4);
    let server = Receiver::start(|_, _, _| Reply::status(200)).await;
    let connector = Connector {
        ws: &ws,
        url: &server.url,
        sink: "        mode: binary\n        source: \"urn:example:bookings\"\n",
        partitions: 2,
        poison: "stop",
        linger_ms: 0,
    };
    let mut running = connector.start().await;
    running.wait_for(log.head().unwrap(), WITHIN).await;
    running.stop().await.expect("clean stop");

    let requests = server.requests();
    let request = requests.iter().find(|r| r.header("ce-id") == Some("ev-binary")).expect("sent");
    for (name, value) in [
        ("ce-specversion", "1.0"),
        ("ce-source", "urn:example:bookings"),
        ("ce-type", "RoomBooked"),
        ("ce-subject", "caf%C3%A9%20100%25"),
        ("ce-time", "2026-03-01T12:30:05Z"),
        ("ce-position", &position.to_string()),
        ("ce-streamrevision", "0"),
        ("content-type", "application/json"),
    ] {
        assert_eq!(request.header(name), Some(value), "{name}");
    }
    assert!(request.header("ce-partition").unwrap().parse::<u32>().unwrap() < 2);
    assert_eq!(&request.body[..], data.as_bytes(), "the payload byte for byte");
    let accepted = server.accepted_ids();
    assert_eq!(accepted.len(), 41);
    assert!(events.iter().all(|(_, id)| accepted.get(id) == Some(&1)), "{accepted:?}");
}

#[tokio::test]
async fn batch_mode_posts_arrays_of_at_most_max_batch_events() {
    let ws = Workspace::new();
    let mut log = EventLog::open(&ws.log_path()).unwrap();
    let events = append_events(&mut log, "d", 200, 9);
    let server = Receiver::start(|_, _, _| Reply::ok()).await;
    let connector = Connector {
        ws: &ws,
        url: &server.url,
        sink: "        mode: batch\n        max_batch_events: 7\n",
        partitions: 2,
        poison: "stop",
        linger_ms: 0,
    };
    let mut running = connector.start().await;
    let head = log.head().unwrap();
    running.wait_for(head, WITHIN).await;
    running.stop().await.expect("clean stop");

    let requests = server.requests();
    for request in &requests {
        assert_eq!(request.header("content-type"), Some("application/cloudevents-batch+json"));
        let n = request.events().len();
        assert!((1..=7).contains(&n), "{n} events in one request");
    }
    let items: Vec<Value> = requests.iter().flat_map(Received::events).collect();
    assert_eq!(items.len(), 200, "every event once");
    let (position, id) = &events[10];
    let item = items.iter().find(|e| e["id"] == json!(id)).unwrap();
    assert_eq!(
        item,
        &json!({
            "specversion": "1.0",
            "id": id,
            "source": "projector-gateway/hooks",
            "type": "RoomBooked",
            "subject": "booking-1",
            "time": "2026-03-01T12:30:05Z",
            "datacontenttype": "application/json",
            "position": position.to_string(),
            "streamrevision": "1",
            "partition": item["partition"],
            "data": { "n": 10, "prefix": "d" },
        })
    );
    assert_eq!(stored_checkpoint(&checkpoint_file(&ws)), head);
}

// ---------------------------------------------------------------------------------------------
// Retries

#[tokio::test]
async fn a_429_is_retried_after_the_time_the_endpoint_asks_for() {
    let ws = Workspace::new();
    let mut log = EventLog::open(&ws.log_path()).unwrap();
    let events = append_events(&mut log, "e", 20, 3);
    let server = Receiver::start(|n, _, _| match n {
        0 => Reply { headers: vec![("retry-after", "1".into())], body: "slow down".into(), ..Reply::status(429) },
        _ => Reply::ok(),
    })
    .await;
    let connector = Connector { ws: &ws, url: &server.url, sink: "        mode: structured\n", partitions: 1, poison: "stop", linger_ms: 0 };
    let mut running = connector.start().await;
    running.wait_for(log.head().unwrap(), WITHIN).await;
    running.stop().await.expect("clean stop");

    let requests = server.requests();
    assert_eq!(requests[0].status, 429);
    assert_eq!(requests[1].ids(), requests[0].ids(), "the refused event is sent again first");
    let waited = requests[1].at - requests[0].at;
    assert!(waited >= Duration::from_millis(950), "Retry-After: 1 honoured, waited {waited:?}");
    let accepted = server.accepted_ids();
    assert_eq!(accepted.len(), 20, "nothing lost");
    assert!(accepted.values().all(|&n| n == 1), "nothing accepted twice: {accepted:?}");
    assert!(events.iter().all(|(_, id)| accepted.contains_key(id)));
    assert_eq!(stored_checkpoint(&checkpoint_file(&ws)), log.head().unwrap());
}

#[tokio::test]
async fn a_500_is_retried_and_the_events_other_partitions_delivered_are_not_sent_again() {
    let ws = Workspace::new();
    let mut log = EventLog::open(&ws.log_path()).unwrap();
    let events = append_events(&mut log, "f", 60, 6);
    let victim = events[0].1.clone();
    let failures = Arc::new(Mutex::new(0));
    let script_failures = failures.clone();
    let server = Receiver::start(move |_, _, body| {
        let mut failures = script_failures.lock().unwrap();
        if *failures < 2 && String::from_utf8_lossy(body).contains(&format!("\"{victim}\"")) {
            *failures += 1;
            return Reply { body: "database unavailable".into(), ..Reply::status(500) };
        }
        Reply::ok()
    })
    .await;
    let connector = Connector { ws: &ws, url: &server.url, sink: "        mode: structured\n", partitions: 3, poison: "stop", linger_ms: 0 };
    let mut running = connector.start().await;
    running.wait_for(log.head().unwrap(), WITHIN).await;
    running.stop().await.expect("clean stop");

    assert_eq!(*failures.lock().unwrap(), 2, "two 500s answered");
    let sent: Vec<String> = server.requests().iter().flat_map(|r| r.ids()).collect();
    assert_eq!(sent.iter().filter(|id| **id == events[0].1).count(), 3, "the failing event sent three times");
    let accepted = server.accepted_ids();
    assert_eq!(accepted.len(), 60, "nothing lost");
    assert!(accepted.values().all(|&n| n == 1), "accepted events are not sent again: {accepted:?}");
    assert_eq!(stored_checkpoint(&checkpoint_file(&ws)), log.head().unwrap());
}

#[tokio::test]
async fn a_timeout_is_retried() {
    let ws = Workspace::new();
    let mut log = EventLog::open(&ws.log_path()).unwrap();
    let events = append_events(&mut log, "g", 10, 2);
    // The first request is answered long after the sink's timeout.
    let server = Receiver::start(|n, _, _| if n == 0 { Reply { delay: Duration::from_secs(30), ..Reply::ok() } } else { Reply::ok() }).await;
    let connector = Connector {
        ws: &ws,
        url: &server.url,
        sink: "        mode: batch\n        timeout_ms: 300\n",
        partitions: 1,
        poison: "stop",
        linger_ms: 0,
    };
    let mut running = connector.start().await;
    running.wait_for(log.head().unwrap(), WITHIN).await;
    running.stop().await.expect("clean stop");

    let requests = server.requests();
    assert!(requests.len() >= 2, "{requests:?}");
    let first = requests[0].ids();
    let again: Vec<String> = requests[1..].iter().flat_map(|r| r.ids()).collect();
    assert!(first.iter().all(|id| again.contains(id)), "the timed-out events are sent again");
    assert!(requests[1].at - requests[0].at >= Duration::from_millis(300), "after the timeout");
    let delivered: Vec<String> = requests[1..].iter().filter(|r| r.accepted()).flat_map(|r| r.ids()).collect();
    assert!(events.iter().all(|(_, id)| delivered.contains(id)), "nothing lost");
    assert_eq!(stored_checkpoint(&checkpoint_file(&ws)), log.head().unwrap());
}

#[tokio::test]
async fn stopping_at_once_ends_a_delivery_the_endpoint_holds_and_keeps_the_checkpoint_before_it() {
    let ws = Workspace::new();
    let mut log = EventLog::open(&ws.log_path()).unwrap();
    append_events(&mut log, "h", 5, 1);
    // The endpoint holds every answer far longer than the test's deadline.
    let server = Receiver::start(|_, _, _| Reply { delay: Duration::from_secs(600), ..Reply::ok() }).await;
    let connector = Connector {
        ws: &ws,
        url: &server.url,
        sink: "        mode: batch
        timeout_ms: 600000
",
        partitions: 1,
        poison: "stop",
        linger_ms: 0,
    };
    let running = connector.start().await;
    poll_until("the first delivery to reach the endpoint", WITHIN, || (!server.requests().is_empty()).then_some(())).await;

    // A second signal (or the drain deadline): the connector must not wait for the endpoint.
    running.control.shutdown.cancel();
    running.control.abort.cancel();
    // Stopping at once is a stop, not a failure: the held batch is simply not committed.
    running.ended(Duration::from_secs(10)).await.expect("a stop at once mid-delivery ends cleanly");
    assert_eq!(server.requests().len(), 1);
    assert_eq!(stored_checkpoint(&checkpoint_file(&ws)), 0, "the checkpoint stays before the held batch");
}

// ---------------------------------------------------------------------------------------------
// Poison

/// A log of 30 events on one stream; the endpoint answers 400 to the 11th, whatever the mode.
async fn poisoned_setup(ws: &Workspace) -> (EventLog, Vec<(u64, String)>, Receiver) {
    let mut log = EventLog::open(&ws.log_path()).unwrap();
    let events = append_events(&mut log, "p", 30, 1);
    let poison = format!("\"{}\"", events[10].1);
    let server = Receiver::start(move |_, headers, body| {
        let binary_id = headers.get("ce-id").map(|v| format!("\"{}\"", v.to_str().unwrap()));
        if String::from_utf8_lossy(body).contains(&poison) || binary_id.as_ref() == Some(&poison) {
            Reply { body: format!("{{\"error\":\"invalid booking\",\"detail\":\"{}\"}}", "x".repeat(2000)), ..Reply::status(400) }
        } else {
            Reply::ok()
        }
    })
    .await;
    (log, events, server)
}

#[tokio::test]
async fn a_400_under_poison_stop_stops_the_connector_before_the_event() {
    let ws = Workspace::new();
    let (log, events, server) = poisoned_setup(&ws).await;
    let connector = Connector { ws: &ws, url: &server.url, sink: "        mode: structured\n", partitions: 1, poison: "stop", linger_ms: 0 };
    let running = connector.start().await;
    let error = running.ended(WITHIN).await.expect_err("the connector stops").to_string();
    let (position, id) = &events[10];
    for part in [
        "connector `hooks`",
        &format!("event {id} (RoomBooked in stream `booking-0`) at position {position}"),
        &format!("POST {} answered 400 Bad Request: {{\"error\":\"invalid booking\"", server.url),
        "poison policy `stop`",
    ] {
        assert!(error.contains(part), "`{part}` in: {error}");
    }
    assert!(error.len() < 1500, "the response body is cut short: {} bytes", error.len());
    assert_eq!(stored_checkpoint(&checkpoint_file(&ws)), position - 1, "the checkpoint stays just before the event");
    let sent: Vec<String> = server.requests().iter().flat_map(|r| r.ids()).collect();
    assert!(!sent.contains(&events[11].1), "nothing after the poisoned event is sent");
    assert!(log.head().unwrap() > *position);
}

#[tokio::test]
async fn a_400_under_poison_skip_moves_past_the_event() {
    let ws = Workspace::new();
    let (log, events, server) = poisoned_setup(&ws).await;
    let connector = Connector { ws: &ws, url: &server.url, sink: "        mode: binary\n", partitions: 1, poison: "skip", linger_ms: 0 };
    let mut running = connector.start().await;
    running.wait_for(log.head().unwrap(), WITHIN).await;
    running.stop().await.expect("clean stop");
    let accepted = server.accepted_ids();
    assert_eq!(accepted.len(), 29, "all but the poisoned event");
    assert!(!accepted.contains_key(&events[10].1));
    assert!(accepted.values().all(|&n| n == 1));
    assert_eq!(stored_checkpoint(&checkpoint_file(&ws)), log.head().unwrap());
    assert!(!projector_gateway::sinks::http::parked_file(&checkpoint_file(&ws)).exists(), "skip parks nothing");
}

#[tokio::test]
async fn a_400_in_batch_mode_under_poison_park_finds_the_event_and_parks_it_beside_the_checkpoints() {
    let ws = Workspace::new();
    let (log, events, server) = poisoned_setup(&ws).await;
    let connector = Connector {
        ws: &ws,
        url: &server.url,
        sink: "        mode: batch\n        max_batch_events: 8\n",
        partitions: 1,
        poison: "park",
        // One pipeline batch for the whole log, so the rejected array holds several events.
        linger_ms: 300,
    };
    let mut running = connector.start().await;
    running.wait_for(log.head().unwrap(), WITHIN).await;
    let progress = running.progress.borrow().clone();
    running.stop().await.expect("clean stop");

    assert_eq!(progress.events_parked, 1);
    let accepted = server.accepted_ids();
    assert_eq!(accepted.len(), 29, "every other event of the rejected batch is delivered");
    assert!(!accepted.contains_key(&events[10].1));
    assert!(accepted.values().all(|&n| n == 1), "{accepted:?}");
    let requests = server.requests();
    assert!(requests.iter().any(|r| r.status == 400 && r.events().len() > 1), "a whole batch was rejected first");
    assert!(requests.iter().any(|r| r.status == 400 && r.ids() == [events[10].1.clone()]), "then the event alone");

    let parked = projector_gateway::sinks::http::parked_file(&checkpoint_file(&ws));
    assert_eq!(parked.file_name().unwrap(), "hooks.checkpoints.parked.jsonl");
    let text = std::fs::read_to_string(&parked).expect("the parked events file");
    let lines: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 1, "{text}");
    let (position, id) = &events[10];
    let entry = &lines[0];
    assert_eq!((entry["connector"].as_str(), entry["event_id"].as_str(), entry["position"].as_u64()), (Some("hooks"), Some(id.as_str()), Some(*position)));
    assert_eq!((entry["stream"].as_str(), entry["event_type"].as_str(), entry["partition"].as_u64()), (Some("booking-0"), Some("RoomBooked"), Some(0)));
    let error = entry["error"].as_str().unwrap();
    assert!(error.contains("400 Bad Request") && error.contains("invalid booking"), "{error}");
    assert_eq!(entry["cloudevent"]["id"], json!(id), "the CloudEvent the endpoint refused");
    assert_eq!(entry["cloudevent"]["data"], json!({ "n": 10, "prefix": "p" }));
    assert_eq!(stored_checkpoint(&checkpoint_file(&ws)), log.head().unwrap());
}

#[tokio::test]
async fn an_endpoint_that_refuses_the_credentials_stops_the_connector_whatever_the_policy() {
    let ws = Workspace::new();
    let mut log = EventLog::open(&ws.log_path()).unwrap();
    let events = append_events(&mut log, "u", 5, 1);
    let server = Receiver::start(|_, _, _| Reply { body: "bad token".into(), ..Reply::status(401) }).await;
    let connector = Connector {
        ws: &ws,
        url: &server.url,
        sink: "        headers: { authorization: \"Bearer expired\" }\n",
        partitions: 1,
        poison: "skip",
        linger_ms: 0,
    };
    let running = connector.start().await;
    let error = running.ended(WITHIN).await.expect_err("the connector stops").to_string();
    for part in [
        &format!("event {} (RoomBooked in stream `booking-0`) at position {}", events[0].1, events[0].0),
        &format!("POST {} answered 401 Unauthorized: bad token", server.url),
        "check `sink.http.url` and `sink.http.headers`",
        "whatever the poison policy",
    ] {
        assert!(error.contains(part), "`{part}` in: {error}");
    }
    assert_eq!(server.requests().len(), 1, "one request, then it stops");
    assert_eq!(stored_checkpoint(&checkpoint_file(&ws)), 0, "nothing checkpointed");
}

/// From KurrentDB: payloads that are not JSON go as `data_base64` with their content type,
/// and `park` with KurrentDB checkpoints writes to the stream `$connectors/<id>/parked`.
#[cfg(feature = "kurrentdb")]
#[tokio::test]
async fn events_from_kurrentdb_that_are_not_json_go_as_base64_and_park_in_a_stream() {
    let kurrentdb = kurrentdb_server::TestKurrentDb::start().await;
    kurrentdb.append_json("booking-1", &[("RoomBooked", json!({ "roomId": "r-1" }))]);
    let blob = kurrentdb.append_binary("blobs-1", "BlobStored", &[0, 159, 146, 150]);
    let refused = kurrentdb.append_binary("blobs-2", "BlobRefused", b"\x01\x02");
    let head = kurrentdb.head();
    let server = Receiver::start(|_, _, body| {
        if String::from_utf8_lossy(body).contains("\"type\":\"BlobRefused\"") {
            Reply { body: "unsupported payload".into(), ..Reply::status(415) }
        } else {
            Reply::ok()
        }
    })
    .await;
    let yaml = format!(
        "connectors:\n  - id: hooks\n    source: {{ kurrentdb: {{ connection_string: \"{}\" }} }}\n    poison: park\n    sink:\n      http:\n        url: \"{}\"\n        checkpoints: {{ kurrentdb: {{}} }}\n",
        kurrentdb.connection_string(),
        server.url
    );
    let mut running = Running::start(parse_connector(&yaml)).await;
    running.wait_for(head, WITHIN).await;
    running.stop().await.expect("clean stop");

    let requests = server.requests();
    let sent: Vec<Value> = requests.iter().filter(|r| r.accepted()).flat_map(Received::events).collect();
    assert_eq!(sent.len(), 2, "{sent:#?}");
    let stored = sent.iter().find(|e| e["type"] == "BlobStored").expect("the binary event");
    assert_eq!(
        (&stored["datacontenttype"], &stored["data_base64"], &stored["position"]),
        (&json!("application/octet-stream"), &json!("AJ+Slg=="), &json!(blob.to_string()))
    );
    assert!(stored.get("data").is_none());
    assert_eq!(sent.iter().find(|e| e["type"] == "RoomBooked").expect("the JSON event")["data"], json!({ "roomId": "r-1" }));

    let parked: Vec<_> = kurrentdb.events().into_iter().filter(|e| e.stream == "$connectors/hooks/parked").collect();
    assert_eq!(parked.len(), 1, "one parked event");
    assert_eq!(parked[0].event_type, "$connector-parked");
    let entry: Value = serde_json::from_slice(&parked[0].data).unwrap();
    assert_eq!((entry["position"].as_u64(), entry["stream"].as_str()), (Some(refused), Some("blobs-2")));
    assert!(entry["error"].as_str().unwrap().contains("415 Unsupported Media Type: unsupported payload"), "{entry}");
    assert_eq!(entry["cloudevent"]["data_base64"], json!("AQI="));
    assert!(kurrentdb.events().iter().any(|e| e.stream == "$connectors/hooks/checkpoints"), "checkpoints in the stream");
}

// ---------------------------------------------------------------------------------------------
// Configuration

#[test]
fn the_validator_checks_the_http_sink_with_key_paths() {
    let ws = Workspace::new();
    let connector = Connector {
        ws: &ws,
        url: "ftp://example.com/in",
        sink: "        mode: batch\n        max_batch_events: 0\n        headers: { \"bad header\": x, content-type: text/plain, x-ok: \"a\\nb\" }\n",
        partitions: 1,
        poison: "stop",
        linger_ms: 0,
    };
    let problems: Vec<String> = projector_gateway::config::parse(&connector.yaml()).unwrap_err().iter().map(ToString::to_string).collect();
    for expected in [
        "connectors[0].sink.http.url: `ftp` is not an http(s) URL",
        "connectors[0].sink.http.headers.bad header: `bad header` is not a valid HTTP header name",
        "connectors[0].sink.http.headers.content-type: `content-type` is set by the sink itself",
        "connectors[0].sink.http.headers.x-ok: not a valid HTTP header value",
        "connectors[0].sink.http.max_batch_events: 0 is too small",
    ] {
        assert!(problems.iter().any(|p| p.starts_with(expected)), "{expected} not in {problems:#?}");
    }

    let unknown_mode = Connector { url: "http://127.0.0.1:9/in", sink: "        mode: chunked\n", ..connector };
    let problems: Vec<String> = projector_gateway::config::parse(&unknown_mode.yaml()).unwrap_err().iter().map(ToString::to_string).collect();
    assert!(problems.iter().any(|p| p.starts_with("connectors[0].sink.http.mode: unknown variant `chunked`")), "{problems:#?}");

    let good = Connector { sink: "", ..unknown_mode };
    let with_sidecar = good.yaml().replace("    sink:\n", "    sidecar: { address: \"http://127.0.0.1:50051\" }\n    sink:\n");
    let problems: Vec<String> = projector_gateway::config::parse(&with_sidecar).unwrap_err().iter().map(ToString::to_string).collect();
    assert_eq!(problems, ["connectors[0].sidecar: the http sink records every event as it is and takes no sidecar; remove this key"]);

    let park_nowhere = good.yaml().replace("poison: stop", "poison: park");
    let park_nowhere = park_nowhere.lines().filter(|l| !l.contains("checkpoints")).collect::<Vec<_>>().join("\n");
    let problems: Vec<String> = projector_gateway::config::parse(&park_nowhere).unwrap_err().iter().map(ToString::to_string).collect();
    assert!(problems.iter().any(|p| p.starts_with("connectors[0].poison: `park` needs somewhere durable")), "{problems:#?}");

    let config = projector_gateway::config::parse(&good.yaml()).expect("valid");
    let projector_gateway::config::SinkConfig::Http(http) = &config.connectors[0].sink else { panic!() };
    assert_eq!((http.mode, http.timeout_ms, http.max_batch_events), (projector_gateway::config::HttpMode::Structured, 30_000, 100));
}
