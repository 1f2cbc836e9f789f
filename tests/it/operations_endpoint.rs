//! The operations endpoint of `run --listen`, on the real binary with the example sidecar:
//! readiness follows the connectors' states, the metrics report the checkpoints the target
//! holds, a failed connector is named, and an address in use stops `run` with one message.

use std::{path::Path, process::Command, time::Duration};

use serde_json::Value;
use crate::support::{
    fixtures::*,
    http::{get, request},
    processes::{self, Process, SIGTERM},
};

const WAIT: Duration = Duration::from_secs(120);

/// The value of the metric line `name{labels}`, if the text has it.
fn metric(text: &str, series: &str) -> Option<u64> {
    text.lines().find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// The value of the metric line `name{labels}` as a float, if the text has it.
fn gauge(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// `GET /metrics` once it satisfies `check`.
async fn metrics_when(address: &str, what: &str, check: impl Fn(&str) -> bool) -> String {
    poll_until(what, WAIT, || get(address, "/metrics").map(|(_, text)| text).filter(|text| check(text))).await
}

/// `run --config <config> --listen <address>` (sources probed every 50 ms, plus `extra`
/// arguments) with its stderr in the workspace.
fn gateway_listening(config: &Path, address: &str, dir: &Path, extra: &[&str]) -> Process {
    let mut command = Command::new(processes::gateway_bin());
    command.args(["run", "--config"]).arg(config).args(["--listen", address, "--lag-probe-interval-ms", "50"]).args(extra).env("RUST_LOG", "info");
    Process::spawn(command, dir.join("gateway.log"), false)
}

/// A config of the bookings connector (SQLite log to SQLite target through `sidecar`), plus
/// the connectors in `more` (YAML list items).
fn config_file(ws: &Workspace, sidecar: &str, more: &str) -> std::path::PathBuf {
    let yaml = connector_yaml(&ws.log_path(), sidecar, &sqlite_sink_yaml(&ws.target_path()), &Setup::default()) + more;
    let path = ws.path("gateway.yaml");
    std::fs::write(&path, yaml).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_readiness_metrics_and_status_that_match_the_target() {
    let ws = Workspace::new();
    let head = ws.log_with_events(3_000, 300, 41).head().unwrap();
    let sidecar = processes::example_sidecar(&format!("127.0.0.1:{}", processes::free_port()), ws.dir.path());
    let config = config_file(&ws, sidecar.address.as_deref().unwrap(), "");
    let address = format!("127.0.0.1:{}", processes::free_port());
    let mut gateway = gateway_listening(&config, &address, ws.dir.path(), &[]);

    assert_eq!(poll_until("the endpoint to answer /health", WAIT, || get(&address, "/health")).await, (200, "ok\n".into()));
    let ready = poll_until("/ready to say ready", WAIT, || get(&address, "/ready").filter(|(status, _)| *status == 200)).await;
    assert_eq!(ready.1, "ready\n");
    let series = "projector_gateway_checkpoint_low_watermark{connector=\"bookings\"}";
    let text = poll_until("the metrics to show the head committed", WAIT, || {
        get(&address, "/metrics").map(|(_, text)| text).filter(|text| metric(text, series) == Some(head))
    })
    .await;

    // Every partition's position is the one the target's checkpoints table holds.
    let rows = sqlite_checkpoints(&ws.target_path(), "bookings");
    assert_eq!(rows.len(), 4, "{rows:?}");
    for (_, partition, position) in rows {
        let series = format!("projector_gateway_checkpoint_position{{connector=\"bookings\",partition=\"{partition}\"}}");
        assert_eq!(metric(&text, &series), Some(position), "{series}\n{text}");
    }
    assert_eq!(metric(&text, "projector_gateway_connector_up{connector=\"bookings\"}"), Some(1));
    let events = metric(&text, "projector_gateway_events_applied_total{connector=\"bookings\"}").expect("events counter");
    let ops = metric(&text, "projector_gateway_operations_applied_total{connector=\"bookings\"}").expect("ops counter");
    assert!(events > 0 && events <= head && ops >= events / 2, "events {events}, ops {ops}, head {head}");
    assert!(metric(&text, "projector_gateway_batches_committed_total{connector=\"bookings\"}").unwrap() > 0);
    assert!(text.contains("# TYPE projector_gateway_events_applied_total counter"), "{text}");

    // The histograms agree with the counters: one observation per committed batch, whose
    // operations add up to the operations committed.
    let batches = metric(&text, "projector_gateway_batches_committed_total{connector=\"bookings\"}").unwrap();
    assert!(text.contains("# TYPE projector_gateway_batch_apply_seconds histogram"), "{text}");
    assert_eq!(metric(&text, "projector_gateway_batch_apply_seconds_count{connector=\"bookings\"}"), Some(batches));
    assert_eq!(metric(&text, "projector_gateway_batch_apply_seconds_bucket{connector=\"bookings\",le=\"+Inf\"}"), Some(batches));
    assert_eq!(metric(&text, "projector_gateway_batch_operations_count{connector=\"bookings\"}"), Some(batches));
    assert_eq!(gauge(&text, "projector_gateway_batch_operations_sum{connector=\"bookings\"}"), Some(ops as f64));
    let answered = metric(&text, "projector_gateway_sidecar_round_trip_seconds_count{connector=\"bookings\"}").unwrap();
    assert!(answered > 0 && answered <= events, "{answered} answers for {events} events");
    assert_eq!(metric(&text, "projector_gateway_batch_retries_total{connector=\"bookings\"}"), Some(0));

    let (status, body) = get(&address, "/connectors").unwrap();
    assert_eq!(status, 200);
    let list: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(list[0]["id"], "bookings");
    assert_eq!(list[0]["state"], "running");
    assert_eq!(list[0]["checkpoint"]["low_watermark"], head);
    assert_eq!(list[0]["events_applied"], events);
    assert_eq!(list[0]["origin"], "file");

    // Without --state the management API only reads, and says how to make it writable.
    let (status, body) = request(&address, "POST", "/connectors/bookings/disable", "", None).unwrap();
    assert_eq!(status, 409, "{body}");
    assert!(body.contains("read-only: start the gateway with --state FILE"), "{body}");
    assert_eq!(get(&address, "/connectors/bookings").unwrap().0, 200);

    gateway.signal(SIGTERM);
    let status = gateway.wait_exit(Duration::from_secs(30));
    assert!(status.success(), "{status:?}\n{}", gateway.stderr());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lag_metrics_follow_the_source_head_and_the_oldest_event_not_applied() {
    let ws = Workspace::new();
    let mut log = ws.log_with_events(1_000, 100, 44);
    let head = log.head().unwrap();
    let sidecar_address = format!("127.0.0.1:{}", processes::free_port());
    let sidecar = processes::example_sidecar(&sidecar_address, ws.dir.path());
    let config = config_file(&ws, sidecar.address.as_deref().unwrap(), "");
    let address = format!("127.0.0.1:{}", processes::free_port());
    // `/ready` also asks that no event waits for more than a minute.
    let mut gateway = gateway_listening(&config, &address, ws.dir.path(), &["--ready-max-lag-secs", "60"]);
    let series = |name: &str| format!("projector_gateway_{name}{{connector=\"bookings\"}}");

    let caught_up = |text: &str| metric(text, &series("lag_positions")) == Some(0) && gauge(text, &series("lag_seconds")) == Some(0.0);
    let text = metrics_when(&address, "the lag to reach 0 at the head", caught_up).await;
    assert_eq!(metric(&text, &series("source_head_position")), Some(head));
    assert_eq!(get(&address, "/ready").unwrap(), (200, "ready\n".into()));

    // Without a sidecar nothing more is applied: the lag is the 20 new events, the oldest of
    // which was created at a fixed time long ago.
    drop(sidecar);
    let long_ago = chrono::DateTime::parse_from_rfc3339("2026-03-01T12:00:00Z").unwrap().to_utc();
    let mut more = projector_gateway::demo::BookingsGenerator::new(45, 10).take(20);
    for event in &mut more {
        event.created = Some(long_ago);
    }
    log.append(&more).unwrap();
    let new_head = log.head().unwrap();
    let text = metrics_when(&address, "the lag to show the new events", |text| {
        metric(text, &series("source_head_position")) == Some(new_head)
    })
    .await;
    assert_eq!(metric(&text, &series("lag_positions")), Some(new_head - head), "{text}");
    let age = gauge(&text, &series("lag_seconds")).unwrap();
    let expected = (chrono::Utc::now() - long_ago).as_seconds_f64();
    assert!((expected - 60.0..=expected + 1.0).contains(&age), "lag_seconds {age}, the oldest pending event is {expected} s old");
    let list: Value = serde_json::from_str(&get(&address, "/connectors").unwrap().1).unwrap();
    assert_eq!(list[0]["source"]["lag_positions"], new_head - head);
    let (status, body) = get(&address, "/ready").unwrap();
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("bookings: lagging: ") && body.contains("s behind the source (bound 60 s)"), "{body}");

    // The sidecar back: everything is applied and the lag returns to 0.
    let _sidecar = processes::example_sidecar(&sidecar_address, ws.dir.path());
    metrics_when(&address, "the lag to return to 0", caught_up).await;
    assert_eq!(get(&address, "/ready").unwrap(), (200, "ready\n".into()));

    gateway.signal(SIGTERM);
    let status = gateway.wait_exit(Duration::from_secs(30));
    assert!(status.success(), "{status:?}\n{}", gateway.stderr());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_a_failed_connector_while_the_others_run_on() {
    let ws = Workspace::new();
    let head = ws.log_with_events(500, 50, 42).head().unwrap();
    let sidecar = processes::example_sidecar(&format!("127.0.0.1:{}", processes::free_port()), ws.dir.path());
    let sidecar_address = sidecar.address.clone().unwrap();
    // A second connector whose target path is a folder: it fails at start.
    let broken = connector_yaml(
        &ws.log_path(),
        &sidecar_address,
        &sqlite_sink_yaml(ws.dir.path()),
        &Setup { id: "broken".into(), ..Setup::default() },
    );
    let config = config_file(&ws, &sidecar_address, broken.strip_prefix("connectors:\n").unwrap());
    let address = format!("127.0.0.1:{}", processes::free_port());
    let mut gateway = gateway_listening(&config, &address, ws.dir.path(), &[]);

    // Once the healthy connector runs, /ready names only the failed one, with its reason.
    let (_, not_ready) = poll_until("/ready to name the failed connector alone", WAIT, || {
        get(&address, "/ready").filter(|(status, body)| *status == 503 && body.contains("broken: failed") && !body.contains("bookings"))
    })
    .await;
    assert!(not_ready.contains("cannot open"), "the reason is given: {not_ready}");
    let series = "projector_gateway_checkpoint_low_watermark{connector=\"bookings\"}";
    let text = poll_until("the healthy connector to reach the head", WAIT, || {
        get(&address, "/metrics").map(|(_, text)| text).filter(|text| metric(text, series) == Some(head))
    })
    .await;
    assert_eq!(metric(&text, "projector_gateway_connector_up{connector=\"broken\"}"), Some(0));
    assert_eq!(metric(&text, "projector_gateway_connector_up{connector=\"bookings\"}"), Some(1));
    let list: Value = serde_json::from_str(&get(&address, "/connectors").unwrap().1).unwrap();
    assert_eq!(list[1]["state"], "failed");
    assert!(list[1]["error"].as_str().unwrap().contains("broken"), "{list}");

    gateway.signal(SIGTERM);
    let status = gateway.wait_exit(Duration::from_secs(30));
    assert_eq!(status.code(), Some(1), "a failed connector makes the exit code 1\n{}", gateway.stderr());
}

#[test]
fn an_address_in_use_stops_run_with_one_message() {
    let ws = Workspace::new();
    ws.log_with_events(10, 2, 43);
    let config = config_file(&ws, "http://127.0.0.1:1", "");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = taken.local_addr().unwrap().to_string();
    let out = Command::new(processes::gateway_bin()).args(["run", "--config"]).arg(&config).args(["--listen", &address]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains(&format!("--listen {address}: cannot listen there")), "{stderr}");
}
