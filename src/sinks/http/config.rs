//! The HTTP (CloudEvents) producer sink's settings and their checks. Compiled whatever
//! features are on (see `sinks/registry.rs`).

use serde::{Deserialize, Serialize};

use crate::config::{
    ConnectorConfig, ConnectorMode, SinkSettings,
    problem::{ConfigProblem, at_least, problem},
};

/// The HTTP producer sink: every event is POSTed to `url` as a CloudEvent 1.0.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct HttpSinkConfig {
    /// The endpoint, `http(s)://host[:port]/path`; credentials in the URL are sent as Basic
    /// authentication.
    pub url: String,
    /// Headers sent with every request (e.g. `authorization: Bearer ${TOKEN}`); the sink sets
    /// `content-type` and the `ce-` headers itself.
    #[serde(default)]
    pub headers: std::collections::BTreeMap<String, String>,
    /// Time allowed for one request, connecting included, before it is retried.
    #[serde(default = "defaults::http_timeout_ms")]
    pub timeout_ms: u64,
    /// How events are put into requests.
    #[serde(default)]
    pub mode: HttpMode,
    /// `batch` mode: most events per request (a larger pipeline batch is sent as several
    /// requests, in order).
    #[serde(default = "defaults::http_batch_events")]
    pub max_batch_events: usize,
    /// The CloudEvents `source` attribute; default `projector-gateway/<connector id>`.
    #[serde(default)]
    pub source: Option<String>,
    /// Where the connector's checkpoints are kept (parked events go beside them); none: every
    /// run starts from the beginning.
    #[serde(default)]
    pub checkpoints: Option<crate::sinks::checkpoint_store::CheckpointStoreConfig>,
}

/// The CloudEvents HTTP binding the HTTP sink uses.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum HttpMode {
    /// One request per event, the whole CloudEvent as the JSON body
    /// (`application/cloudevents+json`).
    #[default]
    Structured,
    /// One request per event, the attributes as `ce-` headers and the payload as the body.
    Binary,
    /// One request per batch of events, a JSON array of CloudEvents
    /// (`application/cloudevents-batch+json`).
    Batch,
}

impl SinkSettings for HttpSinkConfig {
    fn supports(&self, mode: ConnectorMode) -> bool {
        mode == ConnectorMode::Producer
    }

    fn validate(&self, connector: &ConnectorConfig, connector_path: &str, problems: &mut Vec<ConfigProblem>) {
        validate(self, connector, connector_path, problems);
    }
}

mod defaults {
    pub fn http_timeout_ms() -> u64 {
        30_000
    }
    pub fn http_batch_events() -> usize {
        100
    }
}

/// The HTTP sink: an http(s) URL, headers HTTP accepts (and none the sink sets itself), and
/// somewhere to park events when the poison policy is `park`.
fn validate(s: &HttpSinkConfig, c: &ConnectorConfig, connector_path: &str, problems: &mut Vec<ConfigProblem>) {
    let path = format!("{connector_path}.sink.http");
    let at = |key: &str| format!("{path}.{key}");
    if s.url.trim().is_empty() {
        problems.push(problem(at("url"), "empty; expected e.g. `https://events.example.com/ingest`"));
    } else if let Some(reason) = http_url_problem(&s.url) {
        problems.push(problem(at("url"), reason));
    }
    for (name, value) in &s.headers {
        if let Some(reason) = http_header_problem(name, value) {
            problems.push(problem(at(&format!("headers.{name}")), reason));
        }
    }
    if s.source.as_deref().is_some_and(|source| source.trim().is_empty()) {
        problems.push(problem(at("source"), "empty; leave it out for `projector-gateway/<connector id>`, or give a URI reference"));
    }
    at_least(s.timeout_ms, 1, &at("timeout_ms"), problems);
    at_least(s.max_batch_events as u64, 1, &at("max_batch_events"), problems);
    crate::sinks::checkpoint_store::validate(s.checkpoints.as_ref(), c, &at("checkpoints"), problems);
    if c.poison == crate::config::PoisonPolicy::Park && s.checkpoints.is_none() {
        problems.push(problem(
            format!("{connector_path}.poison"),
            "`park` needs somewhere durable to park events: the HTTP sink parks them beside its checkpoints; set `sink.http.checkpoints` (or use `stop` or `skip`)",
        ));
    }
}

#[cfg(feature = "http")]
fn http_url_problem(url: &str) -> Option<String> {
    crate::sinks::http::url_problem(url)
}

#[cfg(not(feature = "http"))]
fn http_url_problem(_: &str) -> Option<String> {
    None
}

#[cfg(feature = "http")]
fn http_header_problem(name: &str, value: &str) -> Option<String> {
    crate::sinks::http::header_problem(name, value)
}

#[cfg(not(feature = "http"))]
fn http_header_problem(_: &str, _: &str) -> Option<String> {
    None
}
