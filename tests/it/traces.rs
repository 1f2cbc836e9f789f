//! Traces over OTLP, on the real binary with the example sidecar and SQLite: every event's span
//! and every batch's span reach a collector, the batch links to the events it applied, and the
//! event's span ends once that batch has committed; a collector that is down holds nothing
//! back; a protocol the gateway does not speak is refused at start with one message.

use std::{
    collections::{HashMap, HashSet},
    path::Path,
    process::Command,
    time::Duration,
};

use std::sync::Mutex;

use bookings_reducer::proto::{ProjectionRequest, ProjectionResponse};
use crate::support::{
    fixtures::*,
    otlp::{Collector, ReceivedSpan},
    processes::{self, Process, SIGTERM},
    sidecars::{self, Script},
};

const WAIT: Duration = Duration::from_secs(120);

/// `run --config <config>` exporting traces to `endpoint`, with the SDK's batch delay short
/// and no inherited `OTEL_*` setting.
fn gateway_exporting(config: &Path, endpoint: &str, dir: &Path, extra: &[(&str, &str)]) -> Process {
    let mut command = Command::new(processes::gateway_bin());
    command.args(["run", "--config"]).arg(config).env("RUST_LOG", "info");
    for (name, _) in std::env::vars().filter(|(name, _)| name.starts_with("OTEL_")) {
        command.env_remove(name);
    }
    command.env("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint).env("OTEL_BSP_SCHEDULE_DELAY", "100");
    for (name, value) in extra {
        command.env(name, value);
    }
    Process::spawn(command, dir.join("gateway.log"), false)
}

/// The bookings connector (SQLite log to SQLite target through `sidecar`) in batches of at
/// most 50 operations, so every batch has fewer items than a span's 128 links.
fn config_file(ws: &Workspace, sidecar: &str) -> std::path::PathBuf {
    let setup = Setup { max_ops: 50, ..Setup::default() };
    let yaml = connector_yaml(&ws.log_path(), sidecar, &sqlite_sink_yaml(&ws.target_path()), &setup);
    let path = ws.path("gateway.yaml");
    std::fs::write(&path, yaml).unwrap();
    path
}

/// The ids of the log's events the example sidecar handles: its `Describe` pushes its event
/// types into the source's filter, so only those cross the wire and get a span.
fn handled_event_ids(log: &Path) -> HashSet<String> {
    let conn = rusqlite::Connection::open(log).unwrap();
    let mut statement = conn.prepare("SELECT event_id, event_type FROM events").unwrap();
    let rows = statement.query_map([], |row| Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?))).unwrap().map(Result::unwrap);
    rows.filter(|(_, event_type)| bookings_reducer::HANDLED_EVENT_TYPES.contains(&event_type.as_str())).map(|(id, _)| id).collect()
}

/// Stops the gateway (SIGTERM) and returns its stderr.
fn stop(mut gateway: Process) -> String {
    gateway.signal(SIGTERM);
    let status = gateway.wait_exit(Duration::from_secs(60));
    assert!(status.success(), "{status:?}\n{}", gateway.stderr());
    gateway.stderr()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_and_batch_reaches_the_collector_linked_and_in_order() {
    let collector = Collector::start().await;
    let ws = Workspace::new();
    let head = ws.log_with_events(600, 40, 5).head().unwrap();
    let ids = handled_event_ids(&ws.log_path());
    let sidecar = processes::example_sidecar(&format!("127.0.0.1:{}", processes::free_port()), ws.dir.path());
    let config = config_file(&ws, sidecar.address.as_deref().unwrap());
    let gateway = gateway_exporting(&config, &collector.endpoint, ws.dir.path(), &[]);

    poll_until("the connector to commit the head", WAIT, || (sqlite_low_watermark(&ws.target_path(), "bookings", 4) == head).then_some(())).await;
    // A stop flushes the spans not exported yet.
    let stderr = stop(gateway);
    let spans = collector.spans();

    let events: Vec<&ReceivedSpan> = spans.iter().filter(|s| s.name == "event").collect();
    let batches: Vec<&ReceivedSpan> = spans.iter().filter(|s| s.name == "apply_batch").collect();
    assert!(spans.iter().all(|s| s.service == "projector-gateway"), "{:?}", spans.first());
    let traced: HashSet<String> = events.iter().map(|s| s.attributes["event.id"].clone()).collect();
    assert_eq!(events.len(), ids.len(), "one span per event; {} batch spans, {} in all\n{stderr}", batches.len(), spans.len());
    assert_eq!(traced, ids);
    for event in &events {
        assert!(event.parent_span_id.is_empty(), "each event is a trace of its own: {event:?}");
        assert_eq!(event.attributes["connector"], "bookings");
        assert!(event.attributes["event.stream"].starts_with("booking-"), "{event:?}");
        assert!(event.attributes.contains_key("event.type") && event.attributes.contains_key("event.position"), "{event:?}");
        assert!(event.attributes.contains_key("operations"), "answered: {event:?}");
        assert!(event.event_names.iter().any(|n| n == "answered"), "{event:?}");
        assert_ne!(event.status_code, 2, "{event:?}");
    }

    // Every event is linked from the batch that applied it, which ended before the event did.
    let batch_of: HashMap<&[u8], &ReceivedSpan> =
        batches.iter().flat_map(|b| b.links.iter().map(move |(_, span_id)| (span_id.as_slice(), *b))).collect();
    for event in &events {
        let batch = batch_of.get(event.span_id.as_slice()).unwrap_or_else(|| panic!("no batch links to {event:?}"));
        assert!(batch.end_ns <= event.end_ns, "the event's span ends after its batch committed: {batch:?} {event:?}");
        assert_eq!(batch.links.iter().find(|(_, s)| *s == event.span_id).unwrap().0, event.trace_id);
    }
    for batch in &batches {
        assert_eq!(batch.attributes["connector"], "bookings");
        assert_eq!(batch.attributes["attempt"], "1");
        let items: usize = batch.attributes["items"].parse().unwrap();
        assert!(batch.links.len() <= items && !batch.links.is_empty(), "{batch:?}");
        assert_ne!(batch.status_code, 2, "{batch:?}");
    }
    let last: u64 = batches.iter().map(|b| b.attributes["positions.last"].parse::<u64>().unwrap()).max().unwrap();
    assert_eq!(last, head);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sampler_ratio_traces_that_share_of_the_events_and_only_their_batches() {
    let collector = Collector::start().await;
    let ws = Workspace::new();
    let head = ws.log_with_events(3_000, 100, 8).head().unwrap();
    let handled = handled_event_ids(&ws.log_path()).len();
    let sidecar = processes::example_sidecar(&format!("127.0.0.1:{}", processes::free_port()), ws.dir.path());
    let config = config_file(&ws, sidecar.address.as_deref().unwrap());
    let sampler = [("OTEL_TRACES_SAMPLER", "traceidratio"), ("OTEL_TRACES_SAMPLER_ARG", "0.1")];
    let gateway = gateway_exporting(&config, &collector.endpoint, ws.dir.path(), &sampler);

    poll_until("the connector to commit the head", WAIT, || (sqlite_low_watermark(&ws.target_path(), "bookings", 4) == head).then_some(())).await;
    stop(gateway);
    let spans = collector.spans();
    let events: HashSet<&[u8]> = spans.iter().filter(|s| s.name == "event").map(|s| s.span_id.as_slice()).collect();
    let expected = handled / 10;
    assert!((expected / 2..expected * 2).contains(&events.len()), "{} event spans for {handled} events at 10%", events.len());
    let batches: Vec<&ReceivedSpan> = spans.iter().filter(|s| s.name == "apply_batch").collect();
    assert!(!batches.is_empty());
    for batch in batches {
        assert!(!batch.links.is_empty() && batch.links.iter().all(|(_, id)| events.contains(id.as_slice())), "{batch:?}");
    }
}

/// (event id, traceparent) of every request the recording sidecar received.
static RECEIVED: Mutex<Vec<(String, String)>> = Mutex::new(Vec::new());

/// Records the request's trace context and ignores the event.
fn record_traceparent(request: &ProjectionRequest) -> ProjectionResponse {
    RECEIVED.lock().unwrap().push((request.event_id.clone(), request.traceparent.clone()));
    ProjectionResponse { event_id: request.event_id.clone(), ..Default::default() }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sidecar_receives_the_trace_context_of_each_traced_event() {
    let collector = Collector::start().await;
    let ws = Workspace::new();
    let head = ws.log_with_events(400, 40, 9).head().unwrap();
    let sidecar = sidecars::scripted(Script::Map(record_traceparent)).await;
    let config = config_file(&ws, &sidecar.address);
    let sampler = [("OTEL_TRACES_SAMPLER", "traceidratio"), ("OTEL_TRACES_SAMPLER_ARG", "0.5")];
    let gateway = gateway_exporting(&config, &collector.endpoint, ws.dir.path(), &sampler);
    poll_until("the connector to commit the head", WAIT, || (sqlite_low_watermark(&ws.target_path(), "bookings", 4) == head).then_some(())).await;
    stop(gateway);

    let received: HashMap<String, String> = RECEIVED.lock().unwrap().iter().cloned().collect();
    assert_eq!(received.len() as u64, head, "the recording sidecar describes nothing, so it gets every event");
    let spans = collector.spans();
    let events: Vec<&ReceivedSpan> = spans.iter().filter(|s| s.name == "event").collect();
    assert!(!events.is_empty() && events.len() < received.len(), "about half the events are traced: {}", events.len());
    for event in &events {
        let id = &event.attributes["event.id"];
        assert_eq!(received[id], format!("00-{}-{}-01", hex(&event.trace_id), hex(&event.span_id)), "event {id}");
    }
    let traced: std::collections::HashSet<&String> = events.iter().map(|e| &e.attributes["event.id"]).collect();
    for (id, traceparent) in &received {
        assert_eq!(traceparent.is_empty(), !traced.contains(id), "event {id}: {traceparent:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collector_that_is_down_holds_nothing_back() {
    let ws = Workspace::new();
    let head = ws.log_with_events(300, 30, 6).head().unwrap();
    let sidecar = processes::example_sidecar(&format!("127.0.0.1:{}", processes::free_port()), ws.dir.path());
    let config = config_file(&ws, sidecar.address.as_deref().unwrap());
    // Nothing listens there.
    let endpoint = format!("http://127.0.0.1:{}", processes::free_port());
    let gateway = gateway_exporting(&config, &endpoint, ws.dir.path(), &[("OTEL_EXPORTER_OTLP_TIMEOUT", "500")]);

    poll_until("the connector to commit the head", WAIT, || (sqlite_low_watermark(&ws.target_path(), "bookings", 4) == head).then_some(())).await;
    stop(gateway);
}

#[test]
fn a_protocol_the_gateway_does_not_speak_is_refused_at_start() {
    let ws = Workspace::new();
    ws.log_with_events(10, 2, 7);
    let config = config_file(&ws, "127.0.0.1:1");
    let output = Command::new(processes::gateway_bin())
        .args(["run", "--config"])
        .arg(&config)
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")
        .env("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf is not supported") && stderr.contains("grpc"), "{stderr}");
    assert_eq!(stderr.lines().filter(|l| l.starts_with("error")).count(), 1, "{stderr}");
}
