//! The Redis target (Redis 6+, Valkey). The sidecar sends typed Redis operations (`ops.rs`);
//! each batch is one MULTI/EXEC with its checkpoints, fenced by WATCH on the checkpoint hash
//! (`apply.rs`), after a check that no command of it would fail inside EXEC, where Redis has no
//! rollback (`check.rs`). Writers run in parallel (`sink.redis.writers`), each on a connection
//! of its own: WATCH and MULTI belong to a connection, so no other request may share it.
//!
//! - `ops.rs`: decoding and validating the operations, values as bytes, keys prefixed;
//! - `check.rs`: the play of a batch over the types and counters read under WATCH;
//! - `apply.rs`: a batch as WATCH, reads, MULTI, commands, checkpoints, EXEC; the in-doubt check.
//!
//! The gateway's keys, each after `key_prefix`: the hash `checkpoints:<connector>`, field
//! `<partition count>:<partition>`, value the position in decimal; the stream
//! `parked_events:<connector>`, one entry per parked event; the hash `projections:<connector>`
//! (`projection`, `version`, `updatedAt`) of the sidecar's `Describe`.

mod apply;
mod parked;
pub mod check;
pub mod ops;

use std::{sync::Arc, time::Duration};

use prost_types::Any;
use redis::{AsyncConnectionConfig, Client, RedisError, Value, aio::MultiplexedConnection};
use tracing::warn;

use crate::{
    checkpoint::CheckpointRow,
    config::ConnectorConfig,
    event::Position,
    run_context::RunContext,
    sinks::{DecodeError, OpenSink, Sink, SinkError, SinkErrorKind, settings::redis::RedisSinkConfig},
};

pub use apply::RedisWriter;
pub use ops::{KeySpace, KeyType, RedisOp, decode_redis_op};

/// The server, how to connect to it, and the gateway's keys for one connector.
#[derive(Debug)]
struct Target {
    client: Client,
    connection: AsyncConnectionConfig,
    /// `host:port/db`, without credentials.
    display: String,
    prefix: String,
    checkpoints: String,
    parked: String,
    projections: String,
}

impl Target {
    /// A new connection of its own (WATCH and MULTI are per connection).
    async fn connect(&self) -> Result<MultiplexedConnection, RedisError> {
        self.client.get_multiplexed_async_connection_with_config(&self.connection).await
    }

    /// The gateway's own keys, which no operation may touch.
    fn reserved(&self) -> [String; 3] {
        [self.checkpoints.clone(), self.parked.clone(), self.projections.clone()]
    }

    /// `what` failed with `e`: a failure of `kind`, or an outage when `e` is transient.
    fn error(&self, kind: SinkErrorKind, what: &str, e: &RedisError) -> SinkError {
        SinkError::new(kind, format!("Redis target `{}`: {what}: {}", self.display, describe_error(e))).unreachable_if(is_transient(e))
    }
}

pub struct RedisSink {
    target: Arc<Target>,
    reserved: [String; 3],
    writers: usize,
}

/// A URL the Redis client does not take.
#[derive(Debug, thiserror::Error)]
#[error("not a Redis URL the client takes: {}", describe_error(.0))]
pub struct UrlError(RedisError);

/// Checks a URL as the client reads it, without connecting (for the config loader).
pub fn parse_url(url: &str) -> Result<(), UrlError> {
    Client::open(url).map(drop).map_err(UrlError)
}

/// The field of a partition's checkpoint in the checkpoint hash.
fn checkpoint_field(partition_count: u32, partition: u32) -> String {
    format!("{partition_count}:{partition}")
}

/// A checkpoint field and value read back as a row.
fn checkpoint_row(field: &str, value: &[u8], key: &str) -> Result<CheckpointRow, String> {
    let (count, partition) = field
        .split_once(':')
        .and_then(|(c, p)| Some((c.parse().ok()?, p.parse().ok()?)))
        .ok_or_else(|| format!("field `{field}` of `{key}` is not `<partition count>:<partition>`"))?;
    let position = position(value).ok_or_else(|| format!("field `{field}` of `{key}` holds {:?}, not a position", String::from_utf8_lossy(value)))?;
    Ok(CheckpointRow { partition_count: count, partition, position })
}

/// A stored position (decimal text).
fn position(value: &[u8]) -> Option<Position> {
    std::str::from_utf8(value).ok()?.parse().ok()
}

impl RedisSink {
    /// Connects once (failing fast when the server cannot be reached or refuses the password).
    pub async fn open(config: &RedisSinkConfig, connector: &str) -> Result<Self, SinkError> {
        let client = Client::open(config.url.as_str()).map_err(|e| SinkError::config(format!("sink.redis.url: {}", describe_error(&e))))?;
        let info = client.get_connection_info();
        let display = format!("{}/{}", info.addr(), info.redis_settings().db());
        let connection = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(5)))
            .set_response_timeout(Some(Duration::from_millis(config.response_timeout_ms)));
        let prefix = config.key_prefix.clone();
        let target = Target {
            client,
            connection,
            display,
            checkpoints: format!("{prefix}checkpoints:{connector}"),
            parked: format!("{prefix}parked_events:{connector}"),
            projections: format!("{prefix}projections:{connector}"),
            prefix,
        };
        let mut conn = target.connect().await.map_err(|e| target.error(SinkErrorKind::Refused, "cannot connect", &e))?;
        redis::cmd("PING").query_async::<()>(&mut conn).await.map_err(|e| target.error(SinkErrorKind::Refused, "cannot reach the server", &e))?;
        // An `allkeys-*` eviction policy may evict the checkpoint hash under memory pressure:
        // the connector would then project the whole log again over the read model it left.
        // Managed servers often refuse CONFIG: then nothing is known, and nothing is said.
        if let Ok((_, policy)) = redis::cmd("CONFIG").arg("GET").arg("maxmemory-policy").query_async::<(String, String)>(&mut conn).await
            && policy.starts_with("allkeys-")
        {
            warn!(
                "Redis target `{}` evicts any key when its memory is full (`maxmemory-policy {policy}`): an evicted checkpoint hash \
                 makes connector `{connector}` project the whole log again over its read model; use `noeviction` (the default) or a \
                 `volatile-*` policy",
                target.display
            );
        }
        let reserved = target.reserved();
        Ok(Self { target: Arc::new(target), reserved, writers: config.writers.max(1) })
    }

    /// The hash holding the connector's checkpoints (for tools and tests).
    pub fn checkpoints_key(&self) -> &str {
        &self.target.checkpoints
    }

    /// The stream holding the connector's parked events.
    pub fn parked_key(&self) -> &str {
        &self.target.parked
    }

    async fn connection(&self) -> Result<MultiplexedConnection, SinkError> {
        self.target.connect().await.map_err(|e| self.target.error(SinkErrorKind::Refused, "cannot connect", &e))
    }
}

impl OpenSink for RedisSink {
    type Settings = RedisSinkConfig;

    async fn open(settings: &Self::Settings, connector: &ConnectorConfig, _: &RunContext) -> Result<Self, SinkError> {
        Self::open(settings, &connector.id).await
    }
}

impl Sink for RedisSink {
    type Op = RedisOp;
    type Writer = RedisWriter;

    fn name(&self) -> &'static str {
        "redis"
    }

    fn decode(&self, operation: &Any) -> Result<Option<RedisOp>, DecodeError> {
        decode_redis_op(operation, &KeySpace { prefix: &self.target.prefix, reserved: &self.reserved })
    }

    async fn load_checkpoints(&self) -> Result<Vec<CheckpointRow>, SinkError> {
        let mut conn = self.connection().await?;
        let key = &self.target.checkpoints;
        let fields: Vec<(String, Vec<u8>)> = redis::cmd("HGETALL")
            .arg(key)
            .query_async(&mut conn)
            .await
            .map_err(|e| self.target.error(SinkErrorKind::Checkpoints, "cannot read the checkpoints", &e))?;
        fields
            .iter()
            .map(|(field, value)| checkpoint_row(field, value, key))
            .collect::<Result<_, _>>()
            .map_err(|e| SinkError::checkpoints(format!("Redis target `{}`: cannot read the checkpoints: {e}", self.target.display)))
    }

    async fn parked_events(&self, query: &crate::sinks::parked::ParkedQuery) -> Result<Vec<crate::sinks::parked::ParkedEvent>, SinkError> {
        let mut conn = self.connection().await?;
        parked::list(&mut conn, &self.target.parked, query)
            .await
            .map_err(|e| self.target.error(SinkErrorKind::Refused, "cannot read the parked events", &e))
    }

    async fn count_parked(&self) -> Result<Option<u64>, SinkError> {
        let mut conn = self.connection().await?;
        parked::count(&mut conn, &self.target.parked)
            .await
            .map(Some)
            .map_err(|e| self.target.error(SinkErrorKind::Refused, "cannot count the parked events", &e))
    }

    async fn discard_parked(&self, ids: &[String]) -> Result<u64, SinkError> {
        let mut conn = self.connection().await?;
        parked::discard(&mut conn, &self.target.parked, ids)
            .await
            .map_err(|e| self.target.error(SinkErrorKind::Refused, "cannot discard parked events", &e))
    }

    async fn delete_checkpoints(&self, partition_count: u32) -> Result<(), SinkError> {
        let mut conn = self.connection().await?;
        let key = &self.target.checkpoints;
        let fields: Vec<String> = redis::cmd("HKEYS")
            .arg(key)
            .query_async(&mut conn)
            .await
            .map_err(|e| self.target.error(SinkErrorKind::Checkpoints, "cannot read the checkpoints", &e))?;
        let prefix = format!("{partition_count}:");
        let obsolete: Vec<&String> = fields.iter().filter(|f| f.starts_with(&prefix)).collect();
        if obsolete.is_empty() {
            return Ok(());
        }
        redis::cmd("HDEL")
            .arg(key)
            .arg(obsolete)
            .query_async::<()>(&mut conn)
            .await
            .map_err(|e| self.target.error(SinkErrorKind::Checkpoints, "cannot delete checkpoints", &e))
    }

    async fn projection_version(&self) -> Result<Option<String>, SinkError> {
        let mut conn = self.connection().await?;
        redis::cmd("HGET")
            .arg(&self.target.projections)
            .arg("version")
            .query_async(&mut conn)
            .await
            .map_err(|e| self.target.error(SinkErrorKind::Refused, "cannot read the projection version", &e))
    }

    /// One MULTI/EXEC: the reset operations, the checkpoint hash deleted, the version recorded.
    async fn record_projection_version(&self, projection: &str, version: &str, reset: Option<Vec<RedisOp>>) -> Result<(), SinkError> {
        let mut conn = self.connection().await?;
        let mut pipe = apply::transaction_pipe();
        let mut what = Vec::new();
        for (n, op) in reset.iter().flatten().enumerate() {
            op.push_commands(&mut pipe);
            what.extend(std::iter::repeat_n(format!("reset operation {} of the sidecar's Describe ({op})", n + 1), op.command_count()));
        }
        if reset.is_some() {
            pipe.cmd("DEL").arg(&self.target.checkpoints);
            what.push("deleting the checkpoints".into());
        }
        let now = chrono::Utc::now().to_rfc3339();
        pipe.cmd("HSET").arg(&self.target.projections).arg(&["projection", projection, "version", version, "updatedAt", &now]);
        what.push("recording the projection version".into());
        // A failure of the rebuild is one of its reset; a failure of recording alone is refused.
        let kind = if reset.is_some() { SinkErrorKind::Reset } else { SinkErrorKind::Refused };
        let fail = |message: String| SinkError::new(kind, format!("Redis target `{}`: {message}", self.target.display));
        match apply::transaction(&mut conn, pipe).await.map_err(|e| self.target.error(kind, "recording the projection version", &e))? {
            apply::Transaction::Ran(results) => match results.iter().enumerate().find_map(|(i, r)| match r {
                Value::ServerError(e) => Some((i, e)),
                _ => None,
            }) {
                None => Ok(()),
                Some((i, e)) => Err(fail(format!(
                    "{} failed while EXEC ran: {}; Redis has no rollback: the other commands were applied",
                    what[i],
                    apply::redis_words(e)
                ))),
            },
            apply::Transaction::Refused { index, message, .. } => Err(fail(format!(
                "{} was refused, so nothing was applied: {message}",
                what.get(index).map_or("EXEC", String::as_str)
            ))),
            apply::Transaction::WatchFired => Err(fail("the transaction was aborted (nothing was watched: unexpected)".into())),
        }
    }

    fn writer_count(&self) -> usize {
        self.writers
    }

    async fn open_writer(&self) -> Result<RedisWriter, SinkError> {
        Ok(RedisWriter::new(self.target.clone()))
    }
}

/// One line for a client error: the server's code and words, or what happened to the
/// connection.
pub(crate) fn describe_error(e: &RedisError) -> String {
    if e.is_timeout() {
        format!("no answer in time ({e})")
    } else if e.is_connection_refusal() {
        format!("connection refused ({e})")
    } else if e.is_connection_dropped() || e.is_io_error() {
        format!("connection lost ({e})")
    } else {
        e.to_string()
    }
}

/// Server error codes worth retrying: loading its data after a restart, a busy script, a
/// replica being promoted or a primary demoted, not enough replicas, memory full, a failed
/// disk write. They say nothing about the batch.
const TRANSIENT_CODES: &[&str] = &["LOADING", "BUSY", "TRYAGAIN", "MASTERDOWN", "READONLY", "CLUSTERDOWN", "NOREPLICAS", "OOM", "MISCONF"];

/// Whether trying again later may succeed: the connection (refused, reset, timed out) or a
/// server error of [`TRANSIENT_CODES`].
pub(crate) fn is_transient(e: &RedisError) -> bool {
    e.is_io_error()
        || e.is_connection_refusal()
        || e.is_connection_dropped()
        || e.is_timeout()
        || e.code().is_some_and(is_transient_code)
}

pub(crate) fn is_transient_code(code: &str) -> bool {
    TRANSIENT_CODES.contains(&code)
}
