//! The HTTP endpoint of `run --listen`: `/health` (the process answers), `/ready` (every
//! connector runs, within the lag bound if one is set), `/metrics` (Prometheus text) and
//! `/connectors` (each connector's status as JSON), with the management API's routes merged in.
//!
//! It exists for Kubernetes probes, scrapers and operators, and only reads the connector
//! registry, so a slow or hostile client can never hold a connector back.

use std::{net::SocketAddr, sync::Arc};

use axum::{
    Router,
    extract::State as AxumState,
    http::{StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use prometheus_client::{encoding::prometheus_text, registry::Registry};
use serde_json::Value;
use tokio::net::TcpListener;

use super::{
    metrics,
    registry::{ConnectorState, Connectors, Snapshot},
};

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
    let registry = Arc::new(metrics::registry(connectors.clone()));
    let app = Router::new()
        .route("/health", get(|| async { "ok\n" }))
        .route("/ready", get(move |AxumState(connectors): AxumState<Connectors>| ready(connectors, readiness)))
        .route("/metrics", get(move || scrape(registry.clone())))
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

/// `/metrics`: the registry's families in the Prometheus text format.
async fn scrape(registry: Arc<Registry>) -> Response {
    ([(header::CONTENT_TYPE, prometheus_text::CONTENT_TYPE)], metrics::encode(&registry)).into_response()
}

async fn connector_list(AxumState(connectors): AxumState<Connectors>) -> Response {
    let list: Vec<Value> = connectors.snapshot().iter().map(Snapshot::to_json).collect();
    json_response(StatusCode::OK, &Value::Array(list))
}

/// A JSON body with its content type.
pub fn json_response(status: StatusCode, body: &Value) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
}

#[cfg(test)]
mod tests {
    use chrono::Utc;

    use super::*;
    use crate::{sources::head::Head, status::Origin};

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
}
