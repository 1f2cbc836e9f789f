//! The Elasticsearch target (Elasticsearch 8.x, OpenSearch 2.x), in two modes.
//!
//! - **Projector** (a connector with a sidecar): the sidecar's document operations (Eventuous's
//!   `Index`, `Update`, `UpdateScript`, `Delete`, plus a per-operation index, upserts and
//!   external versions) are applied as `_bulk` requests, one batch of a writer's partitions at
//!   a time; item-level failures are judged item by item (`apply.rs`).
//! - **Producer** (no sidecar; settings in `sink.elastic.producer`): every event becomes a document of its
//!   own, id = event id, in an index or data stream per stream category, under an index
//!   template created at start (`producer.rs`).
//!
//! The engine has no transactions: a batch's checkpoints are written by a second request once
//! every operation of the batch is applied, so the checkpoint never passes an unapplied
//! operation, and a crash between the two applies the batch again after the restart
//! (at-least-once; docs/targets/elasticsearch.md says which operations are idempotent).
//!
//! - `client.rs`: the client, the engine, error lines and which errors are transient;
//! - `json.rs`: Struct -> JSON, whole numbers as integers;
//! - `ops.rs`: decoding and validating the operations;
//! - `apply.rs`: a batch as `_bulk` requests, item outcomes, then the checkpoints;
//! - `checkpoints.rs`: the gateway's indices, checkpoint and projection-version documents;
//! - `parked.rs`: the connector's parked events, listed and discarded for the operator;
//! - `producer.rs`: producer mode's documents and index template;
//! - `blue_green.rs`: versioned indices behind an alias, for blue/green rebuilds.

mod apply;
pub mod blue_green;
mod checkpoints;
pub mod client;
pub mod json;
pub mod ops;
mod parked;
mod producer;

use std::sync::Arc;

use elasticsearch::Elasticsearch;
use prost_types::Any;
use tracing::info;

use crate::{
    checkpoint::CheckpointRow,
    config::{ConnectorMode, ElasticRefresh, ElasticSinkConfig, EventuousCheckpoint, EventuousPlace},
    event::Position,
    sinks::{DecodeError, EventRef, Sink, SinkError, eventuous},
};

pub use apply::ElasticWriter;
pub use client::{Engine, UrlError, parse_url};
pub use ops::{Action, ElasticOp, decode_elastic_op, elastic_names};
use producer::Producer;

/// Index names and settings every writer needs.
#[derive(Debug, Clone)]
struct Names {
    /// The URL, without credentials.
    display: String,
    /// The index of operations that name none.
    index: Option<String>,
    checkpoints: String,
    parked: String,
    refresh: ElasticRefresh,
    max_bulk_bytes: usize,
    /// The version of the read model this sink writes (blue/green): the default index is then
    /// written as `<index>_v<version>` (`blue_green.rs`).
    version: Option<String>,
}

impl Names {
    /// The concrete index an operation naming `index` writes.
    fn concrete<'a>(&self, index: &'a str) -> std::borrow::Cow<'a, str> {
        match &self.version {
            Some(version) => blue_green::version_index(index, version).map(std::borrow::Cow::Owned).unwrap_or(std::borrow::Cow::Borrowed(index)),
            None => std::borrow::Cow::Borrowed(index),
        }
    }
}

/// The client and the names of a configuration (no request sent).
fn connect(config: &ElasticSinkConfig) -> Result<(Elasticsearch, Names), SinkError> {
    let (client, display) = client::connect(config).map_err(|e| SinkError::config(format!("sink.elastic.url: {e}")))?;
    let names = Names {
        display,
        index: config.index.clone(),
        checkpoints: config.checkpoints_index.clone(),
        parked: config.parked_index.clone(),
        refresh: config.refresh,
        max_bulk_bytes: config.max_bulk_bytes.max(1024),
        version: None,
    };
    Ok((client, names))
}

pub struct ElasticSink {
    client: Elasticsearch,
    names: Arc<Names>,
    /// The id the connector's rows are under: its own, or its version's (`blue_green.rs`).
    connector: Arc<str>,
    engine: Engine,
    writers: usize,
    producer: Option<Producer>,
    /// The connector and the live version recorded when the sink opened, when its batches are
    /// fenced by a blue/green swap (a connector with blue/green settings).
    fence: Option<apply::Fence>,
    /// The live version recorded when the sink opened (the one its placement follows).
    opened_live: Option<String>,
}

impl ElasticSink {
    /// Connects (failing at once, with the reason, when the engine cannot be reached), creates
    /// the gateway's indices and, for a producer connector, the index template.
    pub async fn open(config: &ElasticSinkConfig, connector: &str, mode: ConnectorMode) -> Result<Self, SinkError> {
        let (client, mut names) = connect(config)?;
        let engine = checkpoints::reach(&client, &names).await?;
        checkpoints::create_indices(&client, &names).await?;
        let placement = blue_green::placement(&client, &names, connector).await?;
        if let Some(version) = &placement.version {
            blue_green::version_index(names.index.as_deref().unwrap_or("index"), version)?;
            names.version = Some(version.clone());
        }
        let names = Arc::new(names);
        let producer = match mode {
            ConnectorMode::Producer => {
                Some(Producer::start(&client, &names, &config.producer.clone().unwrap_or_default(), engine).await?)
            }
            ConnectorMode::Projector => None,
        };
        info!(
            "Elasticsearch target `{}` ({}){}",
            names.display,
            engine.name(),
            producer.as_ref().map(|p| format!(": producer mode, events into `{}`", p.describe())).unwrap_or_default()
        );
        // Set by the pipeline's open for a connector that may be swapped (`OpenSink::open`).
        let fence = None;
        let opened_live = placement.live;
        Ok(Self { client, names, connector: placement.key.into(), engine, writers: config.writers.max(1), producer, fence, opened_live })
    }

    /// The engine that answered at start.
    pub fn engine(&self) -> Engine {
        self.engine
    }

    /// Sends the batch's operations as the writers do, without checkpoints or bookkeeping:
    /// the raw `_bulk` rate the benchmark compares the connector with.
    pub async fn raw_bulk(&self, batch: &crate::sinks::Batch<ElasticOp>) -> Result<(), crate::sinks::ApplyError> {
        apply::raw_bulk(&self.client, &self.names, batch).await
    }

    /// Whether the sink was opened for a producer connector (no sidecar).
    pub fn producer_mode(&self) -> bool {
        self.producer.is_some()
    }
}

/// Why a name cannot be an index name (lowercase, none of `\ / * ? " < > | , #` or spaces,
/// not starting with `-`, `_` or `+`, at most 255 bytes), if it cannot.
pub fn index_name_problem(name: &str) -> Option<String> {
    if name.is_empty() {
        Some("is empty".into())
    } else if name.chars().any(|c| c.is_uppercase()) {
        Some("must be lowercase".into())
    } else if let Some(c) = name.chars().find(|c| "\\/*?\"<>|,# :".contains(*c)) {
        Some(format!("cannot hold `{c}`"))
    } else if name.starts_with(['-', '_', '+']) {
        Some("cannot start with `-`, `_` or `+`".into())
    } else if name == "." || name == ".." {
        Some("cannot be `.` or `..`".into())
    } else if name.len() > 255 {
        Some("is longer than 255 bytes".into())
    } else {
        None
    }
}

impl super::OpenSink for ElasticSink {
    type Settings = crate::config::ElasticSinkConfig;

    async fn open(settings: &Self::Settings, connector: &crate::config::ConnectorConfig, _: &crate::run_context::RunContext) -> Result<Self, SinkError> {
        let mut sink = Self::open(settings, &connector.id, connector.mode()).await?;
        // Only a live connector that may be swapped pays a request per batch for the fence.
        let swappable = connector.sidecar.as_ref().is_some_and(|s| {
            s.new_version_policy() == crate::config::OnNewVersion::BlueGreen || s.blue_green.is_some()
        });
        if swappable && blue_green::staged_version(&connector.id).is_none() {
            sink.fence = Some(apply::Fence { connector: connector.id.clone(), live: sink.opened_live.clone() });
        }
        Ok(sink)
    }
}

impl Sink for ElasticSink {
    type Op = ElasticOp;
    type Writer = ElasticWriter;

    fn name(&self) -> &'static str {
        "elastic"
    }

    fn decode(&self, operation: &Any) -> Result<Option<ElasticOp>, DecodeError> {
        let op = decode_elastic_op(operation)?;
        if let Some(op) = &op
            && op.index.is_none()
            && self.names.index.is_none()
        {
            return Err(DecodeError::Malformed {
                name: proto_name(operation),
                reason: "it names no `index` and the connector has no default (`sink.elastic.index`)".into(),
            });
        }
        if let Some(op) = &op
            && self.names.version.is_some()
            && op.index.as_ref().is_some_and(|i| Some(i) != self.names.index.as_ref())
        {
            return Err(DecodeError::Malformed {
                name: proto_name(operation),
                reason: format!(
                    "it names the index `{}`; a blue/green version of the read model holds only the connector's index `{}` (sink.elastic.index)",
                    op.index.as_deref().unwrap_or_default(),
                    self.names.index.as_deref().unwrap_or_default()
                ),
            });
        }
        Ok(op)
    }

    /// Producer mode: the `create` of the event's document (id = event id).
    fn produce(&self, event: &EventRef) -> Result<Vec<ElasticOp>, DecodeError> {
        match &self.producer {
            Some(p) => p.produce(event).map(|op| vec![op]),
            None => Err(DecodeError::NeedsSidecar(self.name())),
        }
    }

    async fn load_checkpoints(&self) -> Result<Vec<CheckpointRow>, SinkError> {
        checkpoints::load(&self.client, &self.names, &self.connector).await
    }

    async fn delete_checkpoints(&self, partition_count: u32) -> Result<(), SinkError> {
        checkpoints::delete_count(&self.client, &self.names, &self.connector, partition_count).await
    }

    async fn parked_events(&self, query: &crate::sinks::parked::ParkedQuery) -> Result<Vec<crate::sinks::parked::ParkedEvent>, SinkError> {
        parked::list(&self.client, &self.names, &self.connector, query).await
    }

    async fn count_parked(&self) -> Result<Option<u64>, SinkError> {
        parked::count(&self.client, &self.names, &self.connector).await.map(Some)
    }

    async fn discard_parked(&self, ids: &[String]) -> Result<u64, SinkError> {
        parked::discard(&self.client, &self.names, &self.connector, ids).await
    }

    async fn projection_version(&self) -> Result<Option<String>, SinkError> {
        checkpoints::projection_version(&self.client, &self.names, &self.connector).await
    }

    async fn record_projection_version(
        &self,
        projection: &str,
        version: &str,
        reset: Option<Vec<ElasticOp>>,
    ) -> Result<(), SinkError> {
        if let Some(ops) = reset {
            apply::apply_reset(&self.client, &self.names, &ops).await?;
            checkpoints::delete_all(&self.client, &self.names, &self.connector).await?;
        }
        checkpoints::record_version(&self.client, &self.names, &self.connector, projection, version).await
    }

    /// `GET <index>/_doc/<id>` (real time: no refresh needed); 404, for a missing document or
    /// index, is no checkpoint. NEST serializes Eventuous's `Checkpoint(Id, Position)` with
    /// camel-cased names (`position`); `Position` is read too.
    async fn eventuous_checkpoint(&self, checkpoint: &EventuousCheckpoint) -> Result<Option<Position>, SinkError> {
        let EventuousPlace::Index(index) = &checkpoint.place else {
            return Err(eventuous::not_here(checkpoint, self.name()));
        };
        let unreadable = |e: client::RequestError| {
            eventuous::unreadable(checkpoint, format!("Elasticsearch target `{}`: {}", self.names.display, e.message), e.transient)
        };
        let path = format!("/{}/_doc/{}", client::encode_segment(index), client::encode_segment(&checkpoint.id));
        let response = self
            .client
            .send(elasticsearch::http::Method::Get, &path, Default::default(), Option::<&()>::None, Option::<Vec<u8>>::None, None)
            .await
            .map_err(|e| unreadable(client::transport_error(&e)))?;
        if client::is_not_found(response.status_code()) {
            return Ok(None);
        }
        if !response.status_code().is_success() {
            return Err(unreadable(client::response_error(response).await));
        }
        let document: serde_json::Value = response.json().await.map_err(|e| unreadable(client::transport_error(&e)))?;
        let source = &document["_source"];
        let stored = source.get("position").or_else(|| source.get("Position")).unwrap_or(&serde_json::Value::Null);
        match stored {
            serde_json::Value::Null => Ok(None),
            value => match value.as_i64() {
                Some(p) => eventuous::position(Some(p), checkpoint),
                None => Err(eventuous::unexpected(checkpoint, format!("`position: {value}`"))),
            },
        }
    }

    fn writer_count(&self) -> usize {
        self.writers
    }

    /// A blue/green swap recorded another live version since this sink opened.
    async fn swapped(&self) -> Result<bool, SinkError> {
        match &self.fence {
            Some(fence) => fence.moved(&self.client, &self.names).await.map_err(|e| {
                SinkError::refused(format!("Elasticsearch target `{}`: cannot read the live version: {}", self.names.display, e.message)).unreachable_if(e.transient)
            }),
            None => Ok(false),
        }
    }

    async fn open_writer(&self) -> Result<ElasticWriter, SinkError> {
        Ok(ElasticWriter::new(self.client.clone(), self.names.clone(), self.connector.clone(), self.fence.clone()))
    }
}

fn proto_name(any: &Any) -> String {
    crate::proto::message_name(any).to_string()
}
