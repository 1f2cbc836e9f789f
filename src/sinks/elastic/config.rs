//! The Elasticsearch (and OpenSearch) target's settings, projector and producer, and their
//! checks (index names are also checked for the Eventuous checkpoint a connector takes over).
//! Compiled whatever features are on (see `sinks/registry.rs`).

use serde::{Deserialize, Serialize};

use crate::config::{
    ConnectorConfig, ConnectorMode, EventuousCheckpointConfig, EventuousPlace, SinkSettings,
    eventuous_checkpoint::named,
    problem::{ConfigProblem, at_least, problem},
};

/// The Elasticsearch (or OpenSearch) target: a projector applying the sidecar's document
/// operations, or, with `producer`, an archive of the events themselves.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ElasticSinkConfig {
    /// `http(s)://[user:password@]host:port[/path]`; credentials in the URL are sent as Basic
    /// authentication.
    pub url: String,
    /// An API key (the base64 `id:key` form Elasticsearch returns as `encoded`), sent as
    /// `Authorization: ApiKey ...`.
    #[serde(default)]
    pub api_key: Option<String>,
    /// The index an operation acts on when it names none (`index` field).
    #[serde(default)]
    pub index: Option<String>,
    /// The gateway's checkpoint (and projection version) documents.
    #[serde(default = "defaults::elastic_checkpoints")]
    pub checkpoints_index: String,
    /// Events parked by the poison policy `park`.
    #[serde(default = "defaults::elastic_parked")]
    pub parked_index: String,
    /// The `refresh` of each batch's `_bulk` request: `false` (the default: documents become
    /// searchable at the next refresh), `true` or `wait_for`.
    #[serde(default)]
    pub refresh: ElasticRefresh,
    /// Largest `_bulk` request body; a batch above it is sent as several requests, in order.
    #[serde(default = "defaults::elastic_bulk_bytes")]
    pub max_bulk_bytes: usize,
    /// Time allowed for one request before it counts as failed (and is retried).
    #[serde(default = "defaults::elastic_timeout_ms")]
    pub request_timeout_ms: u64,
    /// Writers applying batches in parallel (one shared HTTP connection pool); each owns a
    /// fixed set of partitions.
    #[serde(default = "crate::config::defaults::writers")]
    pub writers: usize,
    /// Producer mode's settings (a connector without a `sidecar`: every event is indexed as a
    /// document); defaults when left out.
    #[serde(default)]
    pub producer: Option<ElasticProducerConfig>,
}

/// The `refresh` parameter of the `_bulk` requests.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ElasticRefresh {
    #[default]
    False,
    True,
    WaitFor,
}

impl<'de> Deserialize<'de> for ElasticRefresh {
    /// Accepts YAML booleans as well as the words.
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Written {
            Bool(bool),
            Word(String),
        }
        match Written::deserialize(deserializer)? {
            Written::Bool(false) => Ok(ElasticRefresh::False),
            Written::Bool(true) => Ok(ElasticRefresh::True),
            Written::Word(w) => match w.as_str() {
                "false" => Ok(ElasticRefresh::False),
                "true" => Ok(ElasticRefresh::True),
                "wait_for" => Ok(ElasticRefresh::WaitFor),
                other => Err(serde::de::Error::custom(format!("`{other}` is not a refresh policy; expected false, true or wait_for"))),
            },
        }
    }
}

/// Producer mode of the Elasticsearch target.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ElasticProducerConfig {
    /// Where events go: an index (or data stream) name, where `{category}` stands for the
    /// event's stream category (the part of the stream name before the first `-`, lowercased).
    #[serde(default = "defaults::elastic_events_index")]
    pub index: String,
    /// Write into data streams (append-only, `@timestamp`, backing indices managed by the
    /// engine) instead of plain indices.
    #[serde(default = "crate::config::defaults::yes")]
    pub data_stream: bool,
    /// How the template maps the payload: `object` (every field indexed with its own type) or
    /// `flattened` (the whole payload as one field of keywords: no mapping conflicts between
    /// event types, no mapping explosion).
    #[serde(default)]
    pub payload: ElasticPayloadMapping,
    /// Name of the index template created (or replaced) at start; default
    /// `projector-gateway-<index>` with `{category}` written as `category`.
    #[serde(default)]
    pub template: Option<String>,
    /// Priority of the template among those matching the same names.
    #[serde(default = "defaults::elastic_template_priority")]
    pub template_priority: u32,
    /// Extra index settings of the template, e.g. `index.lifecycle.name` for a lifecycle
    /// policy that moves old events to a cheaper tier, or `index.number_of_replicas`.
    #[serde(default)]
    pub settings: std::collections::BTreeMap<String, serde_json::Value>,
    /// An index lifecycle policy (Elasticsearch ILM) created at start when it does not exist
    /// yet, and named in the template's `index.lifecycle.name`.
    #[serde(default)]
    pub lifecycle_policy: Option<ElasticLifecyclePolicy>,
}

impl Default for ElasticProducerConfig {
    fn default() -> Self {
        Self {
            index: defaults::elastic_events_index(),
            data_stream: true,
            payload: ElasticPayloadMapping::default(),
            template: None,
            template_priority: defaults::elastic_template_priority(),
            settings: Default::default(),
            lifecycle_policy: None,
        }
    }
}

/// An Elasticsearch index lifecycle policy: its name and the body of `PUT _ilm/policy/<name>`'s
/// `policy` (`{"phases": {"hot": {...}, "warm": {...}}}`), as Elasticsearch documents it. An
/// existing policy of that name is left as it is (an operator may have tuned it).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ElasticLifecyclePolicy {
    pub name: String,
    pub policy: serde_json::Value,
}

/// How the producer's index template maps the event payload.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ElasticPayloadMapping {
    #[default]
    Object,
    Flattened,
}

impl SinkSettings for ElasticSinkConfig {
    fn eventuous_keys(&self) -> Option<&'static [&'static str]> {
        Some(&["index"])
    }

    fn eventuous_place(&self, config: &EventuousCheckpointConfig) -> Option<EventuousPlace> {
        Some(EventuousPlace::Index(named(&config.index, "checkpoint")))
    }

    /// Projector with a sidecar; producer without one (every event indexed as a document).
    fn supports(&self, _: ConnectorMode) -> bool {
        true
    }

    /// Larger batches: a `_bulk` request is cheap per item and dear per request (its guidance
    /// is requests of several MB), and each batch costs one more request for its checkpoints;
    /// 2,000 bookings operations are about 0.8 MB, under `max_bulk_bytes`.
    fn default_max_ops(&self) -> usize {
        2000
    }

    fn validate(&self, connector: &ConnectorConfig, connector_path: &str, problems: &mut Vec<ConfigProblem>) {
        validate(self, connector.mode(), &format!("{connector_path}.sink.elastic"), problems);
    }
}

mod defaults {
    pub fn elastic_checkpoints() -> String {
        "checkpoints".into()
    }
    pub fn elastic_parked() -> String {
        "parked_events".into()
    }
    pub fn elastic_bulk_bytes() -> usize {
        5 << 20
    }
    pub fn elastic_timeout_ms() -> u64 {
        60_000
    }
    pub fn elastic_events_index() -> String {
        "events-{category}".into()
    }
    pub fn elastic_template_priority() -> u32 {
        200
    }
}

fn validate(s: &ElasticSinkConfig, mode: ConnectorMode, path: &str, problems: &mut Vec<ConfigProblem>) {
    let at = |key: &str| format!("{path}.{key}");
    if s.url.trim().is_empty() {
        problems.push(problem(at("url"), "empty; expected e.g. `http://127.0.0.1:9200`"));
    } else if let Some(reason) = url_problem(&s.url) {
        problems.push(problem(at("url"), reason));
    }
    let mut names = vec![("checkpoints_index", s.checkpoints_index.clone()), ("parked_index", s.parked_index.clone())];
    names.extend(s.index.clone().map(|i| ("index", i)));
    if s.producer.is_some() && mode == ConnectorMode::Projector {
        problems.push(problem(
            at("producer"),
            "only for a producer connector (one without `sidecar`, whose events are indexed as they are); remove `producer` or `sidecar`",
        ));
    }
    if let Some(p) = &s.producer {
        // `{category}` becomes a lowercase word; check the rest of the name.
        names.push(("producer.index", p.index.replace("{category}", "category")));
        if p.index.matches("{category}").count() > 1 {
            problems.push(problem(at("producer.index"), "holds `{category}` more than once"));
        }
        if let Some(t) = &p.template {
            names.push(("producer.template", t.clone()));
        }
        if let Some(lifecycle) = &p.lifecycle_policy {
            if lifecycle.name.trim().is_empty() {
                problems.push(problem(at("producer.lifecycle_policy.name"), "empty"));
            }
            if !lifecycle.policy.get("phases").is_some_and(serde_json::Value::is_object) {
                problems.push(problem(
                    at("producer.lifecycle_policy.policy"),
                    "expected an object with `phases` (the `policy` of Elasticsearch's `PUT _ilm/policy/<name>`)",
                ));
            }
        }
    }
    for (key, name) in names {
        if let Some(reason) = index_problem(&name) {
            problems.push(problem(at(key), format!("`{name}` is not a valid index name: it {reason}")));
        }
    }
    at_least(s.max_bulk_bytes as u64, 1024, &at("max_bulk_bytes"), problems);
    at_least(s.request_timeout_ms, 1, &at("request_timeout_ms"), problems);
    at_least(s.writers as u64, 1, &at("writers"), problems);
}

#[cfg(feature = "elastic")]
fn url_problem(url: &str) -> Option<String> {
    crate::sinks::elastic::parse_url(url).err().map(|e| e.to_string())
}

#[cfg(not(feature = "elastic"))]
fn url_problem(_: &str) -> Option<String> {
    None
}

#[cfg(feature = "elastic")]
pub fn index_problem(name: &str) -> Option<String> {
    crate::sinks::elastic::index_name_problem(name)
}

#[cfg(not(feature = "elastic"))]
pub fn index_problem(_: &str) -> Option<String> {
    None
}
