//! The HTTP endpoint of `run --listen`: `/health` (the process answers), `/ready` (every
//! connector runs, within the lag bound if one is set), `/metrics` (Prometheus text) and
//! `/connectors` (each connector's status as JSON), with the management API's routes merged in.
//!
//! It exists for Kubernetes probes, scrapers and operators, and only reads the connector
//! registry, so a slow or hostile client can never hold a connector back.
//!
//! It speaks HTTPS instead of HTTP with `--tls-cert-file`/`--tls-key-file` (rustls on ring).
//! Nothing it answers holds a secret: every string of its JSON bodies, and `/ready`'s lines, go
//! through the one redaction of `registry::redact_secrets`. A request refused for want of the
//! management token (401/403) is logged once at WARN with its method, path and peer, never
//! what it sent.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::Arc,
};

use axum::{
    Router,
    extract::{ConnectInfo, Request, State as AxumState},
    http::{StatusCode, header},
    middleware::Next,
    response::{IntoResponse, Response},
    routing::get,
};
use prometheus_client::{encoding::prometheus_text, registry::Registry};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tracing::warn;

use super::{
    metrics,
    registry::{ConnectorState, Connectors, Snapshot, redact_json, redact_secrets},
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
    /// With it, a running connector whose sidecar or target has been down for longer than
    /// this makes the gateway unready.
    pub max_outage: Option<std::time::Duration>,
}

/// The certificate and key the endpoint serves HTTPS with (`--tls-cert-file`,
/// `--tls-key-file`).
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// The endpoint's TLS server configuration, loaded from [`TlsFiles`].
#[derive(Clone)]
pub struct Tls(axum_server::tls_rustls::RustlsConfig);

/// Why the endpoint cannot serve HTTPS with the files it was given: one line naming the flag
/// and the file at fault (the cause is part of it, not a `source`).
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// `flag` is `--tls-cert-file` or `--tls-key-file`.
    #[error("{flag} {}: cannot read it: {reason}", path.display())]
    Unreadable { flag: &'static str, path: PathBuf, reason: std::io::Error },
    #[error("--tls-cert-file {}: not a PEM certificate file: {reason}", path.display())]
    NotPemCertificates { path: PathBuf, reason: rustls::pki_types::pem::Error },
    #[error(
        "--tls-cert-file {}: no certificate in it (expected PEM `-----BEGIN CERTIFICATE-----` blocks, the server's first)",
        .0.display()
    )]
    NoCertificate(PathBuf),
    #[error(
        "--tls-key-file {}: no private key in it (expected an unencrypted PEM `PRIVATE KEY`, `RSA PRIVATE KEY` or `EC PRIVATE KEY` block)",
        .0.display()
    )]
    NoKey(PathBuf),
    #[error("--tls-key-file {}: not a PEM private key file: {reason}", path.display())]
    NotPemKey { path: PathBuf, reason: rustls::pki_types::pem::Error },
    /// The certificate and the key do not make a server configuration (`why` says why).
    #[error("--tls-cert-file {} with --tls-key-file {}: {why}", cert.display(), key.display())]
    Rejected { cert: PathBuf, key: PathBuf, why: String },
}

impl TlsFiles {
    /// Reads the PEM certificate chain (the server's certificate first) and private key (PKCS#8,
    /// PKCS#1 or SEC1) and builds the server configuration on the ring provider, offering
    /// HTTP/2 and HTTP/1.1. The error is one line naming the flag and file at fault.
    pub fn load(&self) -> Result<Tls, TlsError> {
        use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};

        let read = |flag: &'static str, path: &Path| {
            std::fs::read(path).map_err(|reason| TlsError::Unreadable { flag, path: path.to_owned(), reason })
        };
        let cert_pem = read("--tls-cert-file", &self.cert)?;
        let certs = CertificateDer::pem_slice_iter(&cert_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|reason| TlsError::NotPemCertificates { path: self.cert.clone(), reason })?;
        if certs.is_empty() {
            return Err(TlsError::NoCertificate(self.cert.clone()));
        }
        let key_pem = read("--tls-key-file", &self.key)?;
        let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| match e {
            rustls::pki_types::pem::Error::NoItemsFound => TlsError::NoKey(self.key.clone()),
            reason => TlsError::NotPemKey { path: self.key.clone(), reason },
        })?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .and_then(|builder| builder.with_no_client_auth().with_single_cert(certs, key))
            .map_err(|e| {
                let why = match e {
                    rustls::Error::InconsistentKeys(_) => "the private key does not belong to the (first) certificate".to_owned(),
                    e => e.to_string(),
                };
                TlsError::Rejected { cert: self.cert.clone(), key: self.key.clone(), why }
            })?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Tls(axum_server::tls_rustls::RustlsConfig::from_config(Arc::new(config))))
    }
}

/// Serves the endpoint, and the routes of `more` (the management API), on `listener` (HTTPS
/// with `tls`) until the task is dropped or aborted. `guard_reads` wraps the routes that read
/// connectors (`GET /connectors`), for the management token when reads need it; the probes and
/// `/metrics` never need one.
pub async fn serve(
    listener: TcpListener,
    tls: Option<Tls>,
    connectors: Connectors,
    readiness: Readiness,
    guard_reads: impl FnOnce(Router) -> Router,
    more: Router,
) -> std::io::Result<()> {
    let registry = Arc::new(metrics::registry(connectors.clone()));
    let reads = Router::new().route("/connectors", get(connector_list)).with_state(connectors.clone());
    let app = Router::new()
        .route("/health", get(|| async { "ok\n" }))
        .route("/ready", get(move |AxumState(connectors): AxumState<Connectors>| ready(connectors, readiness)))
        .route("/metrics", get(move || scrape(registry.clone())))
        .route("/openapi.json", get(|| async { ([(header::CONTENT_TYPE, "application/json")], OPENAPI) }))
        .with_state(connectors)
        .merge(guard_reads(reads))
        .merge(more)
        .fallback(no_route)
        .method_not_allowed_fallback(no_method)
        .layer(axum::middleware::from_fn(log_refusals))
        .into_make_service_with_connect_info::<SocketAddr>();
    match tls {
        None => axum::serve(listener, app).await,
        Some(Tls(config)) => axum_server::from_tcp_rustls(listener.into_std()?, config)?.serve(app).await,
    }
}

/// What the endpoint serves, described: `GET /openapi.json`.
pub const OPENAPI: &str = include_str!("openapi.json");

/// Every route of the endpoint and the management API (method, path as in [`OPENAPI`]); a test
/// checks the document against it and the integration tests check each answers.
pub const ROUTES: &[(&str, &str)] = &[
    ("GET", "/health"),
    ("GET", "/ready"),
    ("GET", "/metrics"),
    ("GET", "/openapi.json"),
    ("GET", "/connectors"),
    ("POST", "/connectors"),
    ("GET", "/connectors/{id}"),
    ("PUT", "/connectors/{id}"),
    ("DELETE", "/connectors/{id}"),
    ("GET", "/connectors/{id}/history"),
    ("POST", "/connectors/{id}/enable"),
    ("POST", "/connectors/{id}/disable"),
    ("POST", "/connectors/{id}/reset"),
    ("GET", "/connectors/{id}/parked"),
    ("GET", "/connectors/{id}/parked/{record}"),
    ("DELETE", "/connectors/{id}/parked/{record}"),
    ("POST", "/connectors/{id}/parked/discard"),
    ("POST", "/connectors/{id}/parked/replay"),
    ("POST", "/connectors/{id}/rebuild"),
    ("POST", "/validate"),
];

/// A path the endpoint does not serve: JSON like every other error.
async fn no_route(request: Request) -> Response {
    let body = json!({ "error": format!("no route {} {}; GET /openapi.json describes the endpoint", request.method(), request.uri().path()) });
    json_response(StatusCode::NOT_FOUND, &body)
}

/// A path served, with a method it does not take.
async fn no_method(request: Request) -> Response {
    let path = request.uri().path().to_owned();
    let allowed: Vec<&str> =
        ROUTES.iter().filter(|(_, route)| same_route(route, &path)).map(|(method, _)| *method).collect();
    let body = json!({ "error": format!("{} {path}: the method is not allowed here; it takes {}", request.method(), allowed.join(", ")) });
    json_response(StatusCode::METHOD_NOT_ALLOWED, &body)
}

/// Whether `path` matches the route pattern `route` (`{id}` matches one segment).
fn same_route(route: &str, path: &str) -> bool {
    let (route, path): (Vec<&str>, Vec<&str>) = (route.split('/').collect(), path.split('/').collect());
    route.len() == path.len() && route.iter().zip(&path).all(|(r, p)| r == p || (r.starts_with('{') && !p.is_empty()))
}

/// Logs a request refused for want of the management token, once, at WARN: method, path (not
/// the query) and peer address, and whether it sent an `Authorization` header at all, never
/// the header itself.
async fn log_refusals(ConnectInfo(peer): ConnectInfo<SocketAddr>, request: Request, next: Next) -> Response {
    let (method, path) = (request.method().clone(), request.uri().path().to_owned());
    let authorization = if request.headers().contains_key(header::AUTHORIZATION) { "wrong or malformed" } else { "missing" };
    let response = next.run(request).await;
    let status = response.status();
    if matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) {
        warn!(%method, path, %peer, status = status.as_u16(), authorization, "refused a request to the operations endpoint: no valid management token");
    }
    response
}

/// 200 when every connector is ready; 503 naming the ones that are not, and why.
async fn ready(connectors: Connectors, readiness: Readiness) -> Response {
    let not_running: Vec<String> = connectors.snapshot().iter().filter_map(|c| unready(c, readiness)).collect();
    if not_running.is_empty() {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        let lines: Vec<String> = not_running.iter().map(|line| redact_secrets(line)).collect();
        (StatusCode::SERVICE_UNAVAILABLE, format!("not ready:\n{}\n", lines.join("\n"))).into_response()
    }
}

/// Why a connector keeps the gateway from being ready, if it does: it is starting (or waiting
/// for a dependency before it ever ran), stopped or failed, or it runs further behind than the
/// lag bound, or waits for its sidecar or target for longer than the outage bound. Disabled and
/// standby connectors do not count; a connector whose lag is not known yet (no probe answer,
/// or a KurrentDB source) is taken as within the bound.
fn unready(c: &Snapshot, readiness: Readiness) -> Option<String> {
    match &c.state {
        ConnectorState::Disabled | ConnectorState::Stopping | ConnectorState::Standby(_) => None,
        ConnectorState::Waiting { reason, since, .. } if c.progress.is_some() => {
            let lasted = since.elapsed();
            let outage = readiness.max_outage.filter(|bound| lasted > *bound).map(|bound| {
                format!("{}: {} for {:.0} s (bound {} s): {reason}", c.id, c.state.name(), lasted.as_secs_f64(), bound.as_secs())
            });
            outage.or_else(|| lagging(c, readiness))
        }
        ConnectorState::Waiting { reason, .. } => Some(format!("{}: {}: {reason}", c.id, c.state.name())),
        ConnectorState::Running => lagging(c, readiness),
        ConnectorState::Failed(error) => Some(format!("{}: failed: {error}", c.id)),
        other => Some(format!("{}: {}", c.id, other.name())),
    }
}

/// With a lag bound, a connector further behind its source than the bound.
fn lagging(c: &Snapshot, readiness: Readiness) -> Option<String> {
    let (bound, lag) = (readiness.max_lag?, c.lag_seconds()?);
    (lag > bound.as_secs_f64()).then(|| format!("{}: lagging: {lag:.1} s behind the source (bound {} s)", c.id, bound.as_secs_f64()))
}

/// `/metrics`: the registry's families in the Prometheus text format.
async fn scrape(registry: Arc<Registry>) -> Response {
    ([(header::CONTENT_TYPE, prometheus_text::CONTENT_TYPE)], metrics::encode(&registry)).into_response()
}

async fn connector_list(AxumState(connectors): AxumState<Connectors>) -> Response {
    let list: Vec<Value> = connectors.snapshot().iter().map(Snapshot::to_json).collect();
    json_response(StatusCode::OK, &Value::Array(list))
}

/// A JSON body with its content type, every string in it redacted ([`redact_secrets`]).
pub fn json_response(status: StatusCode, body: &Value) -> Response {
    let mut body = body.clone();
    redact_json(&mut body);
    (status, [(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
}

#[cfg(test)]
mod tests {
    use chrono::Utc;

    use super::*;
    use crate::{sources::head::Head, status::Origin};

    #[test]
    fn the_openapi_document_describes_every_route_and_no_other() {
        let document: Value = serde_json::from_str(OPENAPI).expect("openapi.json is JSON");
        let mut described: Vec<(String, String)> = document["paths"]
            .as_object()
            .unwrap()
            .iter()
            .flat_map(|(path, item)| {
                let methods = item.as_object().unwrap().keys().filter(|k| ["get", "put", "post", "delete", "patch"].contains(&k.as_str()));
                methods.map(move |method| (method.to_uppercase(), path.clone())).collect::<Vec<_>>()
            })
            .collect();
        let mut routes: Vec<(String, String)> = ROUTES.iter().map(|(m, p)| (m.to_string(), p.to_string())).collect();
        described.sort();
        routes.sort();
        assert_eq!(described, routes);
    }

    #[test]
    fn route_patterns_match_one_segment_per_parameter() {
        assert!(same_route("/connectors/{id}", "/connectors/orders"));
        assert!(same_route("/connectors/{id}/reset", "/connectors/orders/reset"));
        assert!(!same_route("/connectors/{id}", "/connectors/"));
        assert!(!same_route("/connectors/{id}", "/connectors/orders/reset"));
    }

    #[test]
    fn readiness_follows_the_state_and_the_lag_bound() {
        let running = |head: Option<Head>| Snapshot { id: "c".into(), origin: Origin::File, state: ConnectorState::Running, progress: None, head, claims: None };
        let behind = |seconds| Some(Head { position: 9, oldest_pending: Some(Utc::now() - chrono::Duration::seconds(seconds)) });
        let bound = Readiness { max_lag: Some(std::time::Duration::from_secs(30)), max_outage: None };
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
