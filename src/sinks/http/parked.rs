//! Where the HTTP sink parks events (`poison: park`). An HTTP endpoint has no
//! `parked_events` table, so parked events go where the checkpoints are, durably, before the
//! checkpoint passes them:
//!
//! - checkpoints in a file `F`: JSON lines appended to `F` with its extension replaced by
//!   `parked.jsonl` (`orders.checkpoints.json` -> `orders.checkpoints.parked.jsonl`), each
//!   line flushed to disk before the batch's checkpoint is saved;
//! - checkpoints in KurrentDB: events of type `$connector-parked` in the stream
//!   `$connectors/<connector id>/parked` of that KurrentDB.
//!
//! Each entry names the event (connector, partition, position, stream, id, type), the error,
//! when it was parked, and holds the event as the structured CloudEvent the endpoint refused,
//! so it can be inspected or sent again by hand (`curl -d @...`).

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::cloudevent;
use crate::{config::CheckpointStoreConfig, sinks::{EventRef, SinkError}};

pub struct ParkedStore {
    backend: Backend,
}

enum Backend {
    /// No checkpoint store configured (the validator refuses `park` then): logged only.
    None,
    File(PathBuf),
    #[cfg(feature = "kurrentdb")]
    Kurrentdb { client: Box<kurrentdb::Client>, stream: String },
}

/// Parking failed.
#[derive(Debug)]
pub struct ParkError {
    pub message: String,
    pub transient: bool,
}

/// One parked event, as stored.
#[derive(Serialize)]
struct Entry<'a> {
    connector: &'a str,
    partition: u32,
    position: u64,
    stream: &'a str,
    event_id: &'a str,
    event_type: &'a str,
    error: &'a str,
    parked_at: String,
}

/// The file parked events go to, for checkpoints kept in `checkpoint_file`.
pub fn parked_file(checkpoint_file: &Path) -> PathBuf {
    checkpoint_file.with_extension("parked.jsonl")
}

impl ParkedStore {
    pub fn open(checkpoints: Option<&CheckpointStoreConfig>, connector: &str, source_connection_string: Option<&str>) -> Result<Self, SinkError> {
        let backend = match checkpoints {
            None => Backend::None,
            Some(CheckpointStoreConfig::File(path)) => Backend::File(parked_file(path)),
            #[cfg(feature = "kurrentdb")]
            Some(CheckpointStoreConfig::Kurrentdb { connection_string, .. }) => {
                let Some(url) = connection_string.as_deref().or(source_connection_string) else {
                    return Err(SinkError::config("checkpoints.kurrentdb: no connection_string, and the source is not KurrentDB; name the KurrentDB to keep checkpoints (and parked events) in"));
                };
                let settings = url
                    .parse()
                    .map_err(|e: kurrentdb::ClientSettingsParseError| SinkError::config(format!("checkpoints.kurrentdb.connection_string: {}", e.message())))?;
                let client = kurrentdb::Client::new(settings).map_err(|e| SinkError::config(format!("parked events stream: {e}")))?;
                Backend::Kurrentdb { client: Box::new(client), stream: format!("$connectors/{connector}/parked") }
            }
            #[cfg(not(feature = "kurrentdb"))]
            Some(CheckpointStoreConfig::Kurrentdb { .. }) => {
                let _ = (connector, source_connection_string);
                Backend::None
            }
        };
        Ok(Self { backend })
    }

    /// Where parked events go, for messages.
    pub fn location(&self) -> String {
        match &self.backend {
            Backend::None => "nowhere (no checkpoint store is configured; the event is only logged)".into(),
            Backend::File(path) => format!("file {}", path.display()),
            #[cfg(feature = "kurrentdb")]
            Backend::Kurrentdb { stream, .. } => format!("KurrentDB stream `{stream}`"),
        }
    }

    /// Stores the events durably, in order; `source` is the CloudEvents source attribute. A
    /// file that cannot be written is not transient (permissions, a full disk: the connector
    /// stops and says so); a KurrentDB that cannot be reached is.
    pub async fn park(&self, connector: &str, source: &str, events: &[(&EventRef, &str)]) -> Result<(), ParkError> {
        let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
        let entries: Vec<Vec<u8>> = events
            .iter()
            .map(|(event, error)| {
                let e = &event.event;
                let entry = Entry {
                    connector,
                    partition: event.partition,
                    position: e.position,
                    stream: &e.stream,
                    event_id: &e.event_id,
                    event_type: &e.event_type,
                    error,
                    parked_at: now.clone(),
                };
                let entry = serde_json::to_vec(&entry).expect("entries serialize");
                cloudevent::splice(entry, "cloudevent", &cloudevent::structured(event, source))
            })
            .collect();
        let failed = |e: &dyn std::fmt::Display, transient: bool| ParkError {
            message: format!("cannot park {} event(s) in the {}: {e}", events.len(), self.location()),
            transient,
        };
        match &self.backend {
            Backend::None => {
                for (event, error) in events {
                    tracing::warn!("parked {event}: {error} (no checkpoint store is configured, so it is logged only)");
                }
                Ok(())
            }
            Backend::File(path) => append_lines(path.clone(), entries).await.map_err(|e| failed(&e, false)),
            #[cfg(feature = "kurrentdb")]
            Backend::Kurrentdb { client, stream } => {
                let mut data = Vec::with_capacity(entries.len());
                for entry in entries {
                    let value: serde_json::Value = serde_json::from_slice(&entry).expect("an entry is JSON");
                    data.push(kurrentdb::EventData::json("$connector-parked", &value).map_err(|e| failed(&e, false))?);
                }
                client
                    .append_to_stream(stream.as_str(), &kurrentdb::AppendToStreamOptions::default(), data)
                    .await
                    .map(|_| ())
                    .map_err(|e| failed(&e, true))
            }
        }
    }
}

/// Appends the lines and waits until they are on disk.
async fn append_lines(path: PathBuf, entries: Vec<Vec<u8>>) -> std::io::Result<()> {
    tokio::task::spawn_blocking(move || {
        use std::io::Write;
        let mut file = std::fs::OpenOptions::new().create(true).append(true).open(&path)?;
        let mut text = Vec::with_capacity(entries.iter().map(|e| e.len() + 1).sum());
        for entry in entries {
            text.extend(entry);
            text.push(b'\n');
        }
        file.write_all(&text)?;
        file.sync_data()
    })
    .await
    .expect("parked events writer thread")
}

