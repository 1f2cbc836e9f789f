//! The console producer sink: one JSON line per event on standard output, for looking at a
//! log, piping it into another tool, or checking a filter. Lines are built in the partition
//! tasks (`produce`) and written by one writer, a batch at a time, in log order per partition;
//! checkpoints go to the configured [`CheckpointStore`] after the batch was written and
//! flushed.

use std::{io::Write, sync::Arc};

use base64::Engine;
use prost_types::Any;
use serde_json::{Value, json};

use super::{ApplyError, Batch, BatchItem, DecodeError, EventRef, Sink, SinkError, SinkWriter, checkpoint_store::CheckpointStore};
use crate::{checkpoint::CheckpointRow, event::ContentType};

pub struct ConsoleSink {
    store: Arc<CheckpointStore>,
}

impl ConsoleSink {
    pub fn new(store: CheckpointStore) -> Self {
        Self { store: Arc::new(store) }
    }
}

/// The line for an event: its fields, the payload as JSON (or base64 when it is not JSON).
pub fn event_line(event: &EventRef) -> String {
    let e = &event.event;
    let mut line = json!({
        "position": e.position,
        "stream": e.stream,
        "revision": e.revision,
        "type": e.event_type,
        "id": e.event_id,
        "created": e.created.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        "partition": event.partition,
    });
    let parsed = (e.content_type == ContentType::Json).then(|| serde_json::from_slice::<Value>(&e.data).ok()).flatten();
    match parsed {
        Some(data) => line["data"] = data,
        None => line["data_base64"] = base64::engine::general_purpose::STANDARD.encode(&e.data).into(),
    }
    if let Some(metadata) = e.metadata.as_deref().and_then(|m| serde_json::from_slice::<Value>(m).ok()) {
        line["metadata"] = metadata;
    }
    line.to_string()
}

impl super::OpenSink for ConsoleSink {
    type Settings = crate::config::ConsoleSinkConfig;

    async fn open(settings: &Self::Settings, connector: &crate::config::ConnectorConfig, _: &crate::run_context::RunContext) -> Result<Self, SinkError> {
        let source = super::checkpoint_store::source_kurrentdb(connector);
        Ok(Self::new(CheckpointStore::open(settings.checkpoints.as_ref(), &connector.id, source).await?))
    }
}

impl Sink for ConsoleSink {
    type Op = String;
    type Writer = ConsoleWriter;

    fn name(&self) -> &'static str {
        "console"
    }

    fn decode(&self, operation: &Any) -> Result<Option<String>, DecodeError> {
        Err(DecodeError::Unsupported {
            name: operation.type_url.clone(),
            sink: "console",
            expected: "no operations: it is a producer sink (remove `sidecar`)",
        })
    }

    fn produce(&self, event: &EventRef) -> Result<Vec<String>, DecodeError> {
        Ok(vec![event_line(event)])
    }

    async fn load_checkpoints(&self) -> Result<Vec<CheckpointRow>, SinkError> {
        Ok(self.store.rows())
    }

    async fn delete_checkpoints(&self, partition_count: u32) -> Result<(), SinkError> {
        self.store.delete(partition_count).await
    }

    fn writer_count(&self) -> usize {
        1
    }

    async fn open_writer(&self) -> Result<ConsoleWriter, SinkError> {
        Ok(ConsoleWriter { store: self.store.clone() })
    }
}

pub struct ConsoleWriter {
    store: Arc<CheckpointStore>,
}

impl SinkWriter for ConsoleWriter {
    type Op = String;

    async fn apply(&mut self, batch: Arc<Batch<String>>) -> Result<(), ApplyError> {
        let lines = batch.clone();
        tokio::task::spawn_blocking(move || {
            let mut out = std::io::stdout().lock();
            for item in &lines.items {
                match item {
                    BatchItem::Apply { ops, .. } => {
                        for line in ops {
                            writeln!(out, "{line}")?;
                        }
                    }
                    BatchItem::Park { event, error } => {
                        tracing::warn!("parked {event}: {error} (the console sink has nowhere to park; it is logged only)")
                    }
                    BatchItem::Advance { .. } => {}
                }
            }
            out.flush()
        })
        .await
        .expect("console writer thread")
        .map_err(|e| ApplyError { message: format!("cannot write to standard output: {e}"), transient: false, failed_at: None, checkpoint_moved: false })?;
        self.store
            .save(batch.partition_count, &batch.positions())
            .await
            .map_err(|e| ApplyError { message: e.to_string(), transient: true, failed_at: None, checkpoint_moved: false })
    }
}
