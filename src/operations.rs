//! The operations endpoint of `run --listen`: liveness, readiness, Prometheus metrics and each
//! connector's status over HTTP, for Kubernetes probes, scrapers and operators.
//!
//! It only reads what the connectors already publish (their progress channel, and how they
//! ended), so a slow or hostile scraper can never hold a connector back.

use std::{
    fmt::Write as _,
    net::SocketAddr,
    sync::{Arc, Mutex},
};

use axum::{
    Router,
    extract::State as AxumState,
    http::{StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use serde_json::{Value, json};
use tokio::net::TcpListener;

use crate::pipeline::{Progress, ProgressReceiver};

/// Where a connector is in its life.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectorState {
    /// Opening its sink, loading its checkpoints.
    Starting,
    /// Reading, reducing and applying.
    Running,
    /// Stopped cleanly (after a stop signal).
    Stopped,
    /// Stopped by an error, with the message the operator sees in the log.
    Failed(String),
}

impl ConnectorState {
    fn name(&self) -> &'static str {
        match self {
            Self::Starting => "starting",
            Self::Running => "running",
            Self::Stopped => "stopped",
            Self::Failed(_) => "failed",
        }
    }
}

struct Entry {
    id: String,
    state: ConnectorState,
    progress: Option<ProgressReceiver>,
}

/// The connectors of this process, as the endpoint reports them.
#[derive(Clone, Default)]
pub struct Connectors {
    entries: Arc<Mutex<Vec<Entry>>>,
}

/// One connector's way of telling the registry how it is doing.
pub struct ConnectorHandle {
    entries: Arc<Mutex<Vec<Entry>>>,
    index: usize,
}

impl Connectors {
    /// Registers a connector, in state `starting`.
    pub fn add(&self, id: &str) -> ConnectorHandle {
        let mut entries = self.entries.lock().expect("connector registry");
        entries.push(Entry { id: id.to_owned(), state: ConnectorState::Starting, progress: None });
        ConnectorHandle { entries: self.entries.clone(), index: entries.len() - 1 }
    }

    /// Each connector's id, state and latest progress, in registration order.
    fn snapshot(&self) -> Vec<(String, ConnectorState, Option<Progress>)> {
        let entries = self.entries.lock().expect("connector registry");
        entries.iter().map(|e| (e.id.clone(), e.state.clone(), e.progress.as_ref().map(|p| p.borrow().clone()))).collect()
    }
}

impl ConnectorHandle {
    /// The connector loaded its checkpoints and runs; `progress` is its progress channel.
    pub fn started(&self, progress: ProgressReceiver) {
        let mut entries = self.entries.lock().expect("connector registry");
        let entry = &mut entries[self.index];
        entry.state = ConnectorState::Running;
        entry.progress = Some(progress);
    }

    /// The connector ended: cleanly, or with `error`.
    pub fn ended(&self, error: Option<String>) {
        let mut entries = self.entries.lock().expect("connector registry");
        entries[self.index].state = error.map_or(ConnectorState::Stopped, ConnectorState::Failed);
    }
}

/// Binds the endpoint's address, so a port in use is reported before any connector starts.
pub async fn bind(address: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(address).await
}

/// Serves the endpoint on `listener` until the task is dropped or aborted.
pub async fn serve(listener: TcpListener, connectors: Connectors) -> std::io::Result<()> {
    let app = Router::new()
        .route("/health", get(|| async { "ok\n" }))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics))
        .route("/connectors", get(connector_list))
        .with_state(connectors);
    axum::serve(listener, app).await
}

/// 200 when every connector is running; 503 naming the ones that are not.
async fn ready(AxumState(connectors): AxumState<Connectors>) -> Response {
    let not_running: Vec<String> = connectors
        .snapshot()
        .into_iter()
        .filter(|(_, state, _)| *state != ConnectorState::Running)
        .map(|(id, state, _)| match state {
            ConnectorState::Failed(error) => format!("{id}: failed: {error}"),
            other => format!("{id}: {}", other.name()),
        })
        .collect();
    if not_running.is_empty() {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, format!("not ready:\n{}\n", not_running.join("\n"))).into_response()
    }
}

async fn metrics(AxumState(connectors): AxumState<Connectors>) -> Response {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], render_metrics(&connectors.snapshot())).into_response()
}

async fn connector_list(AxumState(connectors): AxumState<Connectors>) -> Response {
    let list: Vec<Value> = connectors
        .snapshot()
        .into_iter()
        .map(|(id, state, progress)| {
            let mut item = json!({ "id": id, "state": state.name() });
            if let ConnectorState::Failed(error) = &state {
                item["error"] = json!(error);
            }
            if let Some(p) = progress {
                item["checkpoint"] = json!({ "low_watermark": p.low_watermark(), "partitions": p.positions });
                item["events_applied"] = json!(p.events_applied);
                item["operations_applied"] = json!(p.ops_applied);
                item["events_parked"] = json!(p.events_parked);
                item["batches_committed"] = json!(p.batches);
            }
            item
        })
        .collect();
    ([(header::CONTENT_TYPE, "application/json")], Value::Array(list).to_string()).into_response()
}

/// The Prometheus text exposition of every connector.
fn render_metrics(connectors: &[(String, ConnectorState, Option<Progress>)]) -> String {
    type Read = fn(&Progress) -> u64;
    const COUNTERS: [(&str, &str, Read); 4] = [
        ("events_applied_total", "Events whose operations were committed (ignored events included).", |p| p.events_applied),
        ("operations_applied_total", "Operations committed to the target.", |p| p.ops_applied),
        ("events_parked_total", "Events the poison policy `park` set aside.", |p| p.events_parked),
        ("batches_committed_total", "Batches committed with their checkpoints.", |p| p.batches),
    ];
    let mut out = String::new();
    header_lines(&mut out, "connector_up", "gauge", "1 while the connector runs, 0 when it is starting, stopped or failed.");
    for (id, state, _) in connectors {
        sample(&mut out, "connector_up", &[("connector", id)], u64::from(*state == ConnectorState::Running));
    }
    for (name, help, read) in COUNTERS {
        header_lines(&mut out, name, "counter", help);
        for (id, _, progress) in connectors {
            if let Some(p) = progress {
                sample(&mut out, name, &[("connector", id)], read(p));
            }
        }
    }
    header_lines(&mut out, "checkpoint_low_watermark", "gauge", "Position every partition has committed (the resume point).");
    for (id, _, progress) in connectors {
        if let Some(p) = progress {
            sample(&mut out, "checkpoint_low_watermark", &[("connector", id)], p.low_watermark());
        }
    }
    header_lines(&mut out, "checkpoint_position", "gauge", "Committed position of each partition.");
    for (id, _, progress) in connectors {
        for (partition, position) in progress.iter().flat_map(|p| p.positions.iter().enumerate()) {
            sample(&mut out, "checkpoint_position", &[("connector", id), ("partition", &partition.to_string())], *position);
        }
    }
    out
}

const PREFIX: &str = "projector_gateway_";

fn header_lines(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {PREFIX}{name} {help}");
    let _ = writeln!(out, "# TYPE {PREFIX}{name} {kind}");
}

fn sample(out: &mut String, name: &str, labels: &[(&str, &str)], value: u64) {
    let labels: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{}\"", escape_label(v))).collect();
    let _ = writeln!(out, "{PREFIX}{name}{{{}}} {value}", labels.join(","));
}

/// A label value as the exposition format wants it: `\`, `"` and newlines escaped.
fn escape_label(value: &str) -> String {
    value.replace('\\', r"\\").replace('"', "\\\"").replace('\n', r"\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn progress(positions: Vec<u64>, events: u64) -> Progress {
        Progress { positions, events_applied: events, ops_applied: events * 2, events_parked: 1, batches: 3 }
    }

    #[test]
    fn renders_every_connector_with_escaped_labels() {
        let text = render_metrics(&[
            ("bookings".into(), ConnectorState::Running, Some(progress(vec![7, 5], 10))),
            ("odd \"one\"\\x".into(), ConnectorState::Failed("boom".into()), None),
        ]);
        for line in [
            "# TYPE projector_gateway_connector_up gauge",
            "projector_gateway_connector_up{connector=\"bookings\"} 1",
            "projector_gateway_connector_up{connector=\"odd \\\"one\\\"\\\\x\"} 0",
            "projector_gateway_events_applied_total{connector=\"bookings\"} 10",
            "projector_gateway_operations_applied_total{connector=\"bookings\"} 20",
            "projector_gateway_events_parked_total{connector=\"bookings\"} 1",
            "projector_gateway_batches_committed_total{connector=\"bookings\"} 3",
            "projector_gateway_checkpoint_low_watermark{connector=\"bookings\"} 5",
            "projector_gateway_checkpoint_position{connector=\"bookings\",partition=\"1\"} 5",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
        }
        assert!(!text.contains("events_applied_total{connector=\"odd"), "no progress, no counters:\n{text}");
    }
}
