//! The HTTP producer sink: every event POSTed to an endpoint as a CloudEvent 1.0, for feeding
//! webhooks, serverless functions, Knative/Dapr brokers or anything that takes CloudEvents
//! over HTTP, without writing a sidecar. The connector has no sidecar: the partition tasks
//! turn each event into its request (`produce`), one writer delivers the batches
//! (`apply.rs`), and checkpoints go to the same store as the console sink's (a file or a
//! KurrentDB stream), after the endpoint accepted the batch.
//!
//! - `cloudevent.rs`: which attribute carries what (structured JSON, binary headers);
//! - `endpoint.rs`: the URL, the operator's headers and the HTTP client, and their checks;
//! - `send.rs`: one POST and what its answer means (accepted, retry, poison, stop);
//! - `apply.rs`: a batch as requests, in order per partition, then the checkpoints;
//! - `parked.rs`: where `poison: park` stores events (beside the checkpoints).

mod apply;
mod cloudevent;
mod endpoint;
mod parked;
mod send;

use std::sync::Arc;

use bytes::Bytes;
use prost_types::Any;
use reqwest::header::HeaderMap;

pub use apply::HttpWriter;
pub use endpoint::{header_problem, url_problem};
pub use parked::parked_file;

use self::{endpoint::Endpoint, parked::ParkedStore};
use super::{DecodeError, EventRef, Sink, SinkError, checkpoint_store::CheckpointStore};
use crate::{
    checkpoint::CheckpointRow,
    config::{HttpMode, HttpSinkConfig},
};

/// One event's request, built in the partition's task.
#[derive(Debug)]
pub enum HttpOp {
    /// The structured CloudEvent: the body of a `structured` request, or an item of a `batch`.
    Structured(Bytes),
    /// A `binary` request: the `ce-` headers and `content-type`, and the payload.
    Binary { headers: HeaderMap, body: Bytes },
}

/// What the sink and its writer share.
struct Shared {
    endpoint: Endpoint,
    mode: HttpMode,
    max_batch_events: usize,
    /// The CloudEvents `source` attribute.
    source: String,
    connector: String,
    checkpoints: CheckpointStore,
    parked: ParkedStore,
}

pub struct HttpSink {
    shared: Arc<Shared>,
}

/// The CloudEvents `source` of a connector's events when `sink.http.source` is not set.
pub fn default_source(connector: &str) -> String {
    format!("projector-gateway/{connector}")
}

impl HttpSink {
    /// Builds the client and reads the checkpoints. `source_connection_string` is the KurrentDB
    /// the connector reads, the default home of its checkpoint stream. Nothing is sent yet: an
    /// endpoint that is down is retried when the first events come.
    pub async fn open(config: &HttpSinkConfig, connector: &str, source_connection_string: Option<&str>) -> Result<Self, SinkError> {
        let endpoint = Endpoint::new(config)?;
        let checkpoints = CheckpointStore::open(config.checkpoints.as_ref(), connector, source_connection_string).await?;
        let parked = ParkedStore::open(config.checkpoints.as_ref(), connector, source_connection_string)?;
        tracing::info!(
            connector,
            "HTTP sink: POST to {} ({} mode); parked events go to the {}",
            endpoint.display,
            match config.mode {
                HttpMode::Structured => "structured",
                HttpMode::Binary => "binary",
                HttpMode::Batch => "batch",
            },
            parked.location()
        );
        let shared = Shared {
            endpoint,
            mode: config.mode,
            max_batch_events: config.max_batch_events.max(1),
            source: config.source.clone().unwrap_or_else(|| default_source(connector)),
            connector: connector.to_owned(),
            checkpoints,
            parked,
        };
        Ok(Self { shared: Arc::new(shared) })
    }
}

impl super::OpenSink for HttpSink {
    type Settings = crate::config::HttpSinkConfig;

    async fn open(settings: &Self::Settings, connector: &crate::config::ConnectorConfig, _: &crate::run_context::RunContext) -> Result<Self, SinkError> {
        Self::open(settings, &connector.id, super::checkpoint_store::source_kurrentdb(connector)).await
    }
}

impl HttpSink {
    /// Why the operator's parked-event verbs do not apply: the store is append-only.
    fn append_only(&self) -> SinkError {
        SinkError::config(format!(
            "the http sink keeps parked events append-only, in the {}: read them there (one entry per event, its CloudEvent \
             included); a producer connector sends each event as it is, so a parked one is sent again by `reset --to-position`",
            self.shared.parked.location()
        ))
    }
}

impl Sink for HttpSink {
    type Op = HttpOp;
    type Writer = HttpWriter;

    fn name(&self) -> &'static str {
        "http"
    }

    fn decode(&self, operation: &Any) -> Result<Option<HttpOp>, DecodeError> {
        Err(DecodeError::Unsupported {
            name: operation.type_url.clone(),
            sink: "http",
            expected: "no operations: it is a producer sink (remove `sidecar`)",
        })
    }

    fn produce(&self, event: &EventRef) -> Result<Vec<HttpOp>, DecodeError> {
        let source = &self.shared.source;
        Ok(vec![match self.shared.mode {
            HttpMode::Binary => {
                let (headers, body) = cloudevent::binary(event, source);
                HttpOp::Binary { headers, body }
            }
            HttpMode::Structured | HttpMode::Batch => HttpOp::Structured(cloudevent::structured(event, source)),
        }])
    }

    async fn load_checkpoints(&self) -> Result<Vec<CheckpointRow>, SinkError> {
        Ok(self.shared.checkpoints.rows())
    }

    async fn delete_checkpoints(&self, partition_count: u32) -> Result<(), SinkError> {
        self.shared.checkpoints.delete(partition_count).await
    }

    async fn parked_events(&self, _: &crate::sinks::parked::ParkedQuery) -> Result<Vec<crate::sinks::parked::ParkedEvent>, SinkError> {
        Err(self.append_only())
    }

    async fn discard_parked(&self, _: &[String]) -> Result<u64, SinkError> {
        Err(self.append_only())
    }

    /// One writer: the checkpoint store holds every partition's position in one record, and
    /// the writer sends different partitions side by side itself.
    fn writer_count(&self) -> usize {
        1
    }

    async fn open_writer(&self) -> Result<HttpWriter, SinkError> {
        Ok(HttpWriter::new(self.shared.clone()))
    }
}
