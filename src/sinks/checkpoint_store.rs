//! Where producer sinks without a database of their own (console, HTTP) keep their
//! checkpoints: a stream per connector in the KurrentDB the events come from (as KurrentDB's
//! own connectors do), or a local file. Either holds the whole set of partition positions;
//! it is written after the batch was delivered, so the effect is at-least-once: a crash
//! between delivering and saving sends the last batch again (CloudEvents carry the event id,
//! so receivers can tell).

use std::{collections::BTreeMap, path::PathBuf};

use parking_lot::Mutex;

use serde::{Deserialize, Serialize};

use crate::{
    checkpoint::CheckpointRow,
    config::{
        ConnectorConfig,
        problem::{ConfigProblem, non_empty_path, problem},
    },
    event::Position,
};

use super::SinkError;

/// The saved state: every partition's position of each partition scheme still in use.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct Saved {
    connector: String,
    /// partition_count -> partition -> position
    positions: BTreeMap<u32, BTreeMap<u32, Position>>,
}

impl Saved {
    fn rows(&self) -> Vec<CheckpointRow> {
        self.positions
            .iter()
            .flat_map(|(&partition_count, parts)| {
                parts.iter().map(move |(&partition, &position)| CheckpointRow { partition_count, partition, position })
            })
            .collect()
    }
}

pub struct CheckpointStore {
    backend: Backend,
    saved: Mutex<Saved>,
}

enum Backend {
    /// Nothing is kept: every run starts from the beginning of the log.
    None,
    File(PathBuf),
    #[cfg(feature = "kurrentdb")]
    Kurrentdb(Box<stream::StreamStore>),
}

impl CheckpointStore {
    /// Opens the store and reads what it holds. `source_connection_string` is the KurrentDB
    /// the connector reads, the default home of its checkpoint stream.
    pub async fn open(
        config: Option<&CheckpointStoreConfig>,
        connector: &str,
        source_connection_string: Option<&str>,
    ) -> Result<Self, SinkError> {
        let (backend, saved) = match config {
            None => (Backend::None, None),
            Some(CheckpointStoreConfig::File(path)) => {
                let saved = match tokio::fs::read(path).await {
                    Ok(bytes) => Some(serde_json::from_slice::<Saved>(&bytes).map_err(|e| {
                        SinkError::checkpoints(format!("checkpoint file {}: not a checkpoint file ({e}); move it away to start over", path.display()))
                    })?),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                    Err(e) => return Err(SinkError::checkpoints(format!("checkpoint file {}: cannot read: {e}", path.display()))),
                };
                (Backend::File(path.clone()), saved)
            }
            #[cfg(feature = "kurrentdb")]
            Some(CheckpointStoreConfig::Kurrentdb { connection_string, stream }) => {
                let Some(url) = connection_string.as_deref().or(source_connection_string) else {
                    return Err(SinkError::config(
                        "checkpoints.kurrentdb: no connection_string, and the source is not KurrentDB; name the KurrentDB to keep checkpoints in",
                    ));
                };
                let name = stream.clone().unwrap_or_else(|| format!("$connectors/{connector}/checkpoints"));
                let store = stream::StreamStore::open(url, name).await?;
                let saved = store.load().await?;
                (Backend::Kurrentdb(Box::new(store)), saved)
            }
            #[cfg(not(feature = "kurrentdb"))]
            Some(CheckpointStoreConfig::Kurrentdb { .. }) => {
                let _ = source_connection_string;
                return Err(SinkError::config("checkpoints.kurrentdb: the kurrentdb feature is not built into this binary"));
            }
        };
        let saved = saved.unwrap_or_else(|| Saved { connector: connector.to_owned(), ..Saved::default() });
        Ok(Self { backend, saved: Mutex::new(saved) })
    }

    pub fn rows(&self) -> Vec<CheckpointRow> {
        self.saved.lock().rows()
    }

    /// Records the positions the partitions reached (never moving one back) and saves.
    pub async fn save(&self, partition_count: u32, reached: &[(u32, Position)]) -> Result<(), SinkError> {
        let snapshot = {
            let mut saved = self.saved.lock();
            let scheme = saved.positions.entry(partition_count).or_default();
            for &(partition, position) in reached {
                let slot = scheme.entry(partition).or_default();
                *slot = (*slot).max(position);
            }
            saved.clone()
        };
        self.write(&snapshot).await
    }

    /// Forgets the positions of an earlier partition count.
    pub async fn delete(&self, partition_count: u32) -> Result<(), SinkError> {
        let snapshot = {
            let mut saved = self.saved.lock();
            saved.positions.remove(&partition_count);
            saved.clone()
        };
        self.write(&snapshot).await
    }

    async fn write(&self, saved: &Saved) -> Result<(), SinkError> {
        match &self.backend {
            Backend::None => Ok(()),
            Backend::File(path) => write_file(path, saved).await,
            #[cfg(feature = "kurrentdb")]
            Backend::Kurrentdb(store) => store.save(saved).await,
        }
    }
}

/// Replaces the file atomically: a crash leaves the old or the new content, never a mix.
async fn write_file(path: &std::path::Path, saved: &Saved) -> Result<(), SinkError> {
    let bytes = serde_json::to_vec_pretty(saved).expect("checkpoints serialize");
    let (path, temporary) = (path.to_owned(), path.with_extension("tmp"));
    let shown = path.display().to_string();
    tokio::task::spawn_blocking(move || {
        use std::io::Write;
        let mut file = std::fs::File::create(&temporary)?;
        file.write_all(&bytes)?;
        file.sync_all()?;
        std::fs::rename(&temporary, &path)
    })
    .await
    .expect("checkpoint writer thread")
    .map_err(|e| SinkError::checkpoints(format!("cannot write the checkpoint file {shown}: {e}")))
}

#[cfg(feature = "kurrentdb")]
mod stream {
    //! The checkpoint stream: one event per save holding every position, and `$maxCount`
    //! metadata so the server keeps only the last few.

    use kurrentdb::{AppendToStreamOptions, Client, EventData, ReadStreamOptions, StreamMetadata, StreamPosition};

    use super::Saved;
    use crate::sinks::SinkError;

    const EVENT_TYPE: &str = "$connector-checkpoint";
    /// Saves kept by the server.
    const KEEP: u64 = 10;

    pub struct StreamStore {
        client: Client,
        stream: String,
    }

    impl StreamStore {
        pub async fn open(connection_string: &str, stream: String) -> Result<Self, SinkError> {
            let settings = connection_string
                .parse()
                .map_err(|e: kurrentdb::ClientSettingsParseError| SinkError::config(format!("checkpoints.kurrentdb.connection_string: {}", e.message())))?;
            let client = Client::new(settings).map_err(|e| SinkError::config(format!("checkpoint stream: {e}")))?;
            let metadata = StreamMetadata::builder().max_count(KEEP).build();
            client.set_stream_metadata(stream.as_str(), &Default::default(), &metadata).await.map_err(|e| {
                SinkError::checkpoints(format!("checkpoint stream `{stream}`: cannot set its metadata: {e}")).unreachable_if(is_transient(&e))
            })?;
            Ok(Self { client, stream })
        }

        /// The last save, if any.
        pub async fn load(&self) -> Result<Option<Saved>, SinkError> {
            let options = ReadStreamOptions::default().position(StreamPosition::End).backwards().max_count(1);
            let error = |e: kurrentdb::Error| {
                SinkError::checkpoints(format!("checkpoint stream `{}`: cannot read: {e}", self.stream)).unreachable_if(is_transient(&e))
            };
            let mut read = match self.client.read_stream(self.stream.as_str(), &options).await {
                Ok(read) => read,
                Err(kurrentdb::Error::ResourceNotFound) => return Ok(None),
                Err(e) => return Err(error(e)),
            };
            match read.next().await {
                Ok(Some(event)) => {
                    let data = &event.get_original_event().data;
                    serde_json::from_slice(data)
                        .map(Some)
                        .map_err(|e| SinkError::checkpoints(format!("checkpoint stream `{}`: the last event is not a checkpoint: {e}", self.stream)))
                }
                Ok(None) | Err(kurrentdb::Error::ResourceNotFound) => Ok(None),
                Err(e) => Err(error(e)),
            }
        }

        pub async fn save(&self, saved: &Saved) -> Result<(), SinkError> {
            let event = EventData::json(EVENT_TYPE, saved).map_err(|e| SinkError::internal(e.to_string()))?;
            self.client
                .append_to_stream(self.stream.as_str(), &AppendToStreamOptions::default(), event)
                .await
                .map(|_| ())
                .map_err(|e| {
                    SinkError::checkpoints(format!("cannot save checkpoints to stream `{}`: {e}", self.stream)).unreachable_if(is_transient(&e))
                })
        }
    }

    /// True when the server could not be reached or answered too late, or is changing leaders:
    /// trying again later may succeed.
    fn is_transient(e: &kurrentdb::Error) -> bool {
        matches!(
            e,
            kurrentdb::Error::ConnectionClosed
                | kurrentdb::Error::GrpcConnectionError(_)
                | kurrentdb::Error::DeadlineExceeded
                | kurrentdb::Error::NotLeaderException(_)
                | kurrentdb::Error::Grpc { code: tonic::Code::Unavailable, .. }
        )
    }
}

/// The KurrentDB a connector reads, when it reads one: the default home of its checkpoints.
pub fn source_kurrentdb(connector: &ConnectorConfig) -> Option<&str> {
    match &connector.source {
        #[cfg(feature = "kurrentdb")]
        crate::config::SourceConfig::Kurrentdb(k) => Some(k.connection_string.as_str()),
        _ => None,
    }
}

/// Where a producer sink without a database of its own keeps its checkpoints.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum CheckpointStoreConfig {
    /// A local JSON file, replaced atomically at each save.
    File(PathBuf),
    /// A stream in KurrentDB (`$connectors/<id>/checkpoints` unless `stream` says otherwise),
    /// by default in the KurrentDB the connector reads.
    Kurrentdb {
        #[serde(default)]
        connection_string: Option<String>,
        #[serde(default)]
        stream: Option<String>,
    },
}

/// A producer sink's checkpoint store: a file path, or a KurrentDB to write to.
pub fn validate(store: Option<&CheckpointStoreConfig>, c: &ConnectorConfig, path: &str, problems: &mut Vec<ConfigProblem>) {
    match store {
        Some(CheckpointStoreConfig::File(file)) => non_empty_path(file, &format!("{path}.file"), problems),
        Some(CheckpointStoreConfig::Kurrentdb { connection_string: Some(url), .. }) => {
            crate::sources::settings::kurrentdb::connection_string(url, &format!("{path}.kurrentdb.connection_string"), problems)
        }
        Some(CheckpointStoreConfig::Kurrentdb { connection_string: None, .. }) if !matches!(c.source, crate::config::SourceConfig::Kurrentdb(_)) => {
            problems.push(problem(
                format!("{path}.kurrentdb.connection_string"),
                "missing; without it the checkpoints go to the source's KurrentDB, but this connector's source is not KurrentDB",
            ))
        }
        _ => {}
    }
}
