//! The operations endpoint of `run --listen`: liveness, readiness, Prometheus metrics and each
//! connector's status over HTTP, for Kubernetes probes, scrapers and operators.
//!
//! It only reads what the connectors already publish (their progress channel, and how they
//! ended), so a slow or hostile scraper can never hold a connector back.

use std::{
    fmt::{Display, Write as _},
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{
    Router,
    extract::State as AxumState,
    http::{StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use chrono::Utc;
use serde_json::{Value, json};
use tokio::{net::TcpListener, task::JoinHandle};
use tracing::{debug, warn};

use crate::{
    config::SourceConfig,
    event::Position,
    pipeline::{Progress, ProgressReceiver},
    sources::head::{self, Head},
    telemetry,
};

/// Where a connector's definition comes from: the config file, or the management API (kept in
/// the definition log of `--state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    File,
    Api,
}

impl Origin {
    fn name(self) -> &'static str {
        match self {
            Self::File => "file",
            Self::Api => "api",
        }
    }
}

/// Where a connector is in its life.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectorState {
    /// Opening its sink, loading its checkpoints.
    Starting,
    /// Reading, reducing and applying.
    Running,
    /// Stopped cleanly (after a stop signal).
    Stopped,
    /// Stopped by an operator through the management API; stays so across restarts.
    Disabled,
    /// Stopped by an error, with the message the operator sees in the log.
    Failed(String),
    /// Waiting to take over a connector whose lease another gateway holds (or that this one
    /// cannot reach); says which.
    Standby(String),
}

impl ConnectorState {
    /// The state as `/connectors` names it (`running`, `standby`, ...).
    pub fn name(&self) -> &'static str {
        match self {
            Self::Starting => "starting",
            Self::Running => "running",
            Self::Stopped => "stopped",
            Self::Disabled => "disabled",
            Self::Failed(_) => "failed",
            Self::Standby(_) => "standby",
        }
    }
}

struct Entry {
    id: String,
    origin: Origin,
    state: ConnectorState,
    progress: Option<ProgressReceiver>,
    /// The source's head at the last probe (see `watch_source_head`).
    head: Option<Head>,
}

impl Entry {
    fn snapshot(&self) -> Snapshot {
        Snapshot {
            id: self.id.clone(),
            origin: self.origin,
            state: self.state.clone(),
            progress: self.progress.as_ref().map(|p| p.borrow().clone()),
            head: self.head.clone(),
        }
    }
}

/// What the endpoint reports of one connector at one moment.
pub struct Snapshot {
    id: String,
    origin: Origin,
    state: ConnectorState,
    progress: Option<Progress>,
    head: Option<Head>,
}

impl Snapshot {
    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn state(&self) -> &ConnectorState {
        &self.state
    }

    /// What the connector has committed, once it runs.
    pub fn progress(&self) -> Option<&Progress> {
        self.progress.as_ref()
    }

    /// The source's head at the last probe, when a probe runs and has answered.
    pub fn head(&self) -> Option<&Head> {
        self.head.as_ref()
    }

    /// Positions between the committed low watermark and the source's head.
    pub fn lag_positions(&self) -> Option<u64> {
        Some(self.head.as_ref()?.position.saturating_sub(self.progress.as_ref()?.low_watermark()))
    }

    /// Age of the oldest event not committed yet (0 when there is none).
    pub fn lag_seconds(&self) -> Option<f64> {
        let head = self.head.as_ref()?;
        Some(head.oldest_pending.map_or(0.0, |created| (Utc::now() - created).as_seconds_f64().max(0.0)))
    }

    /// The connector as `/connectors` lists it: id, origin, state (and error), checkpoint,
    /// counters and lag.
    pub fn to_json(&self) -> Value {
        let mut item = json!({ "id": self.id, "origin": self.origin.name(), "state": self.state.name() });
        match &self.state {
            ConnectorState::Failed(error) => item["error"] = json!(error),
            ConnectorState::Standby(why) => item["standby"] = json!(why),
            _ => {}
        }
        if let (Some(head), Some(positions), Some(seconds)) = (&self.head, self.lag_positions(), self.lag_seconds()) {
            item["source"] = json!({ "head": head.position, "lag_positions": positions, "lag_seconds": seconds });
        }
        if let Some(p) = &self.progress {
            item["checkpoint"] = json!({ "low_watermark": p.low_watermark(), "partitions": p.positions });
            item["events_applied"] = json!(p.events_applied);
            item["operations_applied"] = json!(p.ops_applied);
            item["events_parked"] = json!(p.events_parked);
            item["batches_committed"] = json!(p.batches);
        }
        item
    }
}

/// The connectors of this process, as the endpoint reports them.
#[derive(Clone, Default)]
pub struct Connectors {
    entries: Arc<Mutex<Vec<Arc<Mutex<Entry>>>>>,
}

/// One connector's way of telling the registry how it is doing.
#[derive(Clone)]
pub struct ConnectorHandle {
    entry: Arc<Mutex<Entry>>,
}

impl Connectors {
    /// Registers a connector, in state `starting`.
    pub fn add(&self, id: &str, origin: Origin) -> ConnectorHandle {
        let entry = Entry { id: id.to_owned(), origin, state: ConnectorState::Starting, progress: None, head: None };
        let entry = Arc::new(Mutex::new(entry));
        self.entries.lock().expect("connector registry").push(entry.clone());
        ConnectorHandle { entry }
    }

    /// Forgets a deleted connector.
    pub fn remove(&self, id: &str) {
        self.entries.lock().expect("connector registry").retain(|e| e.lock().expect("connector entry").id != id);
    }

    /// Each connector as it is now, in registration order.
    pub fn snapshot(&self) -> Vec<Snapshot> {
        let entries = self.entries.lock().expect("connector registry");
        entries.iter().map(|e| e.lock().expect("connector entry").snapshot()).collect()
    }

    /// The connector `id` as it is now.
    pub fn snapshot_of(&self, id: &str) -> Option<Snapshot> {
        let entries = self.entries.lock().expect("connector registry");
        entries.iter().map(|e| e.lock().expect("connector entry")).find(|e| e.id == id).map(|e| e.snapshot())
    }
}

impl ConnectorHandle {
    fn entry(&self) -> std::sync::MutexGuard<'_, Entry> {
        self.entry.lock().expect("connector entry")
    }

    /// The connector is (re)starting: no progress yet.
    pub fn starting(&self) {
        let mut entry = self.entry();
        entry.state = ConnectorState::Starting;
        entry.progress = None;
        entry.head = None;
    }

    /// The connector loaded its checkpoints and runs; `progress` is its progress channel.
    pub fn started(&self, progress: ProgressReceiver) {
        let mut entry = self.entry();
        entry.state = ConnectorState::Running;
        entry.progress = Some(progress);
    }

    /// The connector ended: cleanly, or with `error`.
    pub fn ended(&self, error: Option<String>) {
        self.entry().state = error.map_or(ConnectorState::Stopped, ConnectorState::Failed);
    }

    /// The connector waits for its lease, for the reason given.
    pub fn standby(&self, why: String) {
        let mut entry = self.entry();
        entry.state = ConnectorState::Standby(why);
        entry.progress = None;
        entry.head = None;
    }

    /// An operator disabled the connector (it has ended).
    pub fn disabled(&self) {
        self.entry().state = ConnectorState::Disabled;
    }

    /// The connector's state now.
    pub fn state(&self) -> ConnectorState {
        self.entry().state.clone()
    }

    /// The connector's state and, once it runs, its committed low watermark.
    fn position(&self) -> (ConnectorState, Option<Position>) {
        let entry = self.entry();
        (entry.state.clone(), entry.progress.as_ref().map(|p| p.borrow().low_watermark()))
    }

    fn set_head(&self, head: Option<Head>) {
        self.entry().head = head;
    }
}

/// Probes the connector's source every `every` for its head and the age of the oldest event
/// the connector has not committed, for the lag metrics, until the connector ends. A probe that
/// fails clears the figures (they are absent rather than stale) and is tried again.
pub fn watch_source_head(handle: ConnectorHandle, source: SourceConfig, every: Duration) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut probe = None;
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut warned = false;
        loop {
            ticks.tick().await;
            let after = match handle.position() {
                (ConnectorState::Running, Some(after)) => after,
                (ConnectorState::Starting, _) => {
                    // Look again soon rather than a whole interval later, so the lag is known
                    // from the moment the connector runs.
                    ticks.reset_after(every.min(Duration::from_millis(100)));
                    continue;
                }
                _ => return,
            };
            if probe.is_none() {
                match head::open(&source).await {
                    Ok(Some(opened)) => probe = Some(opened),
                    Ok(None) => return,
                    Err(e) => {
                        if !std::mem::replace(&mut warned, true) {
                            warn!("the lag metrics cannot read the source's head: {e}");
                        }
                        continue;
                    }
                }
            }
            let read = probe.as_mut().expect("opened above").head(after).await;
            match read {
                Ok(head) => handle.set_head(Some(head)),
                Err(e) => {
                    debug!("probing the source's head failed: {e}");
                    handle.set_head(None);
                    probe = None;
                }
            }
        }
    })
}

/// Binds the endpoint's address, so a port in use is reported before any connector starts.
pub async fn bind(address: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(address).await
}

/// What `/ready` asks of a running connector besides running: with `max_lag`, that the oldest
/// event it has not committed is younger than that (design §4: caught up within a bound).
#[derive(Debug, Clone, Copy, Default)]
pub struct Readiness {
    pub max_lag: Option<std::time::Duration>,
}

/// Serves the endpoint, and the routes of `more` (the management API), on `listener` until the
/// task is dropped or aborted.
pub async fn serve(listener: TcpListener, connectors: Connectors, readiness: Readiness, more: Router) -> std::io::Result<()> {
    let app = Router::new()
        .route("/health", get(|| async { "ok\n" }))
        .route("/ready", get(move |AxumState(connectors): AxumState<Connectors>| ready(connectors, readiness)))
        .route("/metrics", get(metrics))
        .route("/connectors", get(connector_list))
        .with_state(connectors)
        .merge(more);
    axum::serve(listener, app).await
}

/// 200 when every connector is ready; 503 naming the ones that are not, and why.
async fn ready(connectors: Connectors, readiness: Readiness) -> Response {
    let not_running: Vec<String> = connectors.snapshot().iter().filter_map(|c| unready(c, readiness)).collect();
    if not_running.is_empty() {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, format!("not ready:\n{}\n", not_running.join("\n"))).into_response()
    }
}

/// Why a connector keeps the gateway from being ready, if it does: it is starting, stopped or
/// failed, or (with a lag bound) it runs further behind than the bound. Disabled and standby
/// connectors do not count; a connector whose lag is not known yet (no probe answer, or a
/// KurrentDB source) is taken as within the bound.
fn unready(c: &Snapshot, readiness: Readiness) -> Option<String> {
    match &c.state {
        ConnectorState::Disabled | ConnectorState::Standby(_) => None,
        ConnectorState::Running => {
            let (bound, lag) = (readiness.max_lag?, c.lag_seconds()?);
            (lag > bound.as_secs_f64()).then(|| format!("{}: lagging: {lag:.1} s behind the source (bound {} s)", c.id, bound.as_secs_f64()))
        }
        ConnectorState::Failed(error) => Some(format!("{}: failed: {error}", c.id)),
        other => Some(format!("{}: {}", c.id, other.name())),
    }
}

async fn metrics(AxumState(connectors): AxumState<Connectors>) -> Response {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], render_metrics(&connectors.snapshot())).into_response()
}

async fn connector_list(AxumState(connectors): AxumState<Connectors>) -> Response {
    let list: Vec<Value> = connectors.snapshot().iter().map(Snapshot::to_json).collect();
    json_response(StatusCode::OK, &Value::Array(list))
}

/// A JSON body with its content type.
pub fn json_response(status: StatusCode, body: &Value) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
}

/// The Prometheus text exposition of every connector.
fn render_metrics(connectors: &[Snapshot]) -> String {
    type Read = fn(&Progress) -> u64;
    const COUNTERS: [(&str, &str, Read); 4] = [
        ("events_applied_total", "Events whose operations were committed (ignored events included).", |p| p.events_applied),
        ("operations_applied_total", "Operations committed to the target.", |p| p.ops_applied),
        ("events_parked_total", "Events the poison policy `park` set aside.", |p| p.events_parked),
        ("batches_committed_total", "Batches committed with their checkpoints.", |p| p.batches),
    ];
    let mut out = String::new();
    header_lines(&mut out, "connector_up", "gauge", "1 while the connector runs, 0 when it is starting, standing by, stopped or failed.");
    for c in connectors {
        sample(&mut out, "connector_up", &[("connector", &c.id)], u64::from(c.state == ConnectorState::Running));
    }
    header_lines(&mut out, "connector_standby", "gauge", "1 while another gateway holds the connector's lease and this one stands by.");
    for c in connectors {
        sample(&mut out, "connector_standby", &[("connector", &c.id)], u64::from(matches!(c.state, ConnectorState::Standby(_))));
    }
    for (name, help, read) in COUNTERS {
        header_lines(&mut out, name, "counter", help);
        for c in connectors {
            if let Some(p) = &c.progress {
                sample(&mut out, name, &[("connector", &c.id)], read(p));
            }
        }
    }
    header_lines(&mut out, "checkpoint_low_watermark", "gauge", "Position every partition has committed (the resume point).");
    for c in connectors {
        if let Some(p) = &c.progress {
            sample(&mut out, "checkpoint_low_watermark", &[("connector", &c.id)], p.low_watermark());
        }
    }
    header_lines(&mut out, "checkpoint_position", "gauge", "Committed position of each partition.");
    for c in connectors {
        for (partition, position) in c.progress.iter().flat_map(|p| p.positions.iter().enumerate()) {
            sample(&mut out, "checkpoint_position", &[("connector", &c.id), ("partition", &partition.to_string())], *position);
        }
    }
    let telemetry: Vec<_> = connectors.iter().map(|c| telemetry::of_connector(&c.id)).collect();
    for (index, (name, kind, help)) in telemetry::SERIES.iter().enumerate() {
        header_lines(&mut out, name, kind, help);
        for (c, recorded) in connectors.iter().zip(&telemetry) {
            if let Some(recorded) = recorded {
                recorded.render_series(index, &mut out, &format!("{PREFIX}{name}"), &escape_label(&c.id));
            }
        }
    }
    header_lines(&mut out, "source_head_position", "gauge", "Last position of the source's log at the last probe.");
    for c in connectors {
        if let Some(head) = &c.head {
            sample(&mut out, "source_head_position", &[("connector", &c.id)], head.position);
        }
    }
    header_lines(&mut out, "lag_positions", "gauge", "Source head minus the committed low watermark (events, for SQLite and PostgreSQL logs).");
    for c in connectors {
        if let Some(lag) = c.lag_positions() {
            sample(&mut out, "lag_positions", &[("connector", &c.id)], lag);
        }
    }
    header_lines(&mut out, "lag_seconds", "gauge", "Age of the oldest event the connector has not committed yet (0 when caught up).");
    for c in connectors {
        if let Some(lag) = c.lag_seconds() {
            sample(&mut out, "lag_seconds", &[("connector", &c.id)], format!("{lag:.3}"));
        }
    }
    out
}

const PREFIX: &str = "projector_gateway_";

fn header_lines(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {PREFIX}{name} {help}");
    let _ = writeln!(out, "# TYPE {PREFIX}{name} {kind}");
}

fn sample(out: &mut String, name: &str, labels: &[(&str, &str)], value: impl Display) {
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
    fn readiness_follows_the_state_and_the_lag_bound() {
        let running = |head: Option<Head>| Snapshot { id: "c".into(), origin: Origin::File, state: ConnectorState::Running, progress: None, head };
        let behind = |seconds| Some(Head { position: 9, oldest_pending: Some(Utc::now() - chrono::Duration::seconds(seconds)) });
        let bound = Readiness { max_lag: Some(std::time::Duration::from_secs(30)) };
        assert_eq!(unready(&running(behind(5)), bound), None);
        assert_eq!(unready(&running(Some(Head { position: 9, oldest_pending: None })), bound), None, "caught up");
        assert_eq!(unready(&running(None), bound), None, "lag not known yet");
        let late = unready(&running(behind(95)), bound).unwrap();
        assert!(late.starts_with("c: lagging: 9") && late.ends_with("s behind the source (bound 30 s)"), "{late}");
        assert_eq!(unready(&running(behind(95)), Readiness::default()), None, "no bound");
        let with = |state| Snapshot { state, ..running(None) };
        assert_eq!(unready(&with(ConnectorState::Standby("b holds it".into())), bound), None);
        assert_eq!(unready(&with(ConnectorState::Disabled), bound), None);
        assert_eq!(unready(&with(ConnectorState::Starting), bound).unwrap(), "c: starting");
        assert_eq!(unready(&with(ConnectorState::Failed("boom".into())), bound).unwrap(), "c: failed: boom");
    }

    #[test]
    fn renders_every_connector_with_escaped_labels() {
        let created = Utc::now() - chrono::Duration::seconds(90);
        let text = render_metrics(&[
            Snapshot {
                id: "bookings".into(),
                origin: Origin::File,
                state: ConnectorState::Running,
                progress: Some(progress(vec![7, 5], 10)),
                head: Some(Head { position: 12, oldest_pending: Some(created) }),
            },
            Snapshot { id: "odd \"one\"\\x".into(), origin: Origin::Api, state: ConnectorState::Failed("boom".into()), progress: None, head: None },
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
            "projector_gateway_source_head_position{connector=\"bookings\"} 12",
            "projector_gateway_lag_positions{connector=\"bookings\"} 7",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
        }
        assert!(!text.contains("events_applied_total{connector=\"odd"), "no progress, no counters:\n{text}");
        let lag: f64 = text.lines().find_map(|l| l.strip_prefix("projector_gateway_lag_seconds{connector=\"bookings\"} ")).unwrap().parse().unwrap();
        assert!((90.0..100.0).contains(&lag), "{lag}");
    }
}
