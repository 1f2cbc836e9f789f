//! The one configuration model of the gateway: what a connector is made of. The YAML loader
//! (`load`), the CLI and the management API all build these same serde types, so a
//! connector definition means the same thing wherever it comes from.

mod eventuous;
mod eventuous_checkpoint;
mod load;

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub use eventuous_checkpoint::{EventuousCheckpoint, EventuousPlace};
pub use load::{ConfigError, ConfigProblem, load_file, parse, parse_connector};

/// A whole gateway: the connectors one process runs.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct GatewayConfig {
    pub connectors: Vec<ConnectorConfig>,
}

/// One connector: source -> filter -> partitioner -> sidecar -> batcher -> sink.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ConnectorConfig {
    /// Unique name; also the key of the connector's checkpoint rows in the target.
    pub id: String,
    pub source: SourceConfig,
    #[serde(default)]
    pub filter: FilterConfig,
    /// The reducer sidecar (projector connectors). A connector without one is a *producer*:
    /// every event goes to the sink as it is (console, HTTP, Elasticsearch producer mode).
    #[serde(default)]
    pub sidecar: Option<SidecarConfig>,
    #[serde(default)]
    pub partitioning: PartitioningConfig,
    #[serde(default)]
    pub batch: BatchConfig,
    pub sink: SinkConfig,
    #[serde(default)]
    pub poison: PoisonPolicy,
    /// High availability: with a lease, the connector runs on one gateway at a time among all
    /// those that define it; the others stand by to take over.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease: Option<LeaseConfig>,
    /// Taking over from the Eventuous Connector: where its checkpoint is in the target. On a
    /// start without checkpoints of its own, the connector resumes after that position and
    /// stores it as its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eventuous_checkpoint: Option<EventuousCheckpointConfig>,
    /// The lease this process holds for the connector while it runs it (set by the
    /// supervisor, never configured): the sink fences every commit with it.
    #[serde(skip)]
    pub tenure: Option<crate::lease::Tenure>,
}

/// The checkpoint an Eventuous Connector (or an Eventuous subscription) stored in the target,
/// which a connector replacing it resumes after on its first start. Only the keys of the
/// connector's target apply; each defaults to what Eventuous uses there
/// (`eventuous_checkpoint.rs`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct EventuousCheckpointConfig {
    /// The checkpoint's id: Eventuous's subscription id, which the Eventuous Connector sets to
    /// its `connector.connectorId`.
    pub id: String,
    /// SQL Server, PostgreSQL, SQLite: the table (`Checkpoints`, `checkpoints`,
    /// `eventuous_checkpoints`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table: Option<String>,
    /// SQL Server, PostgreSQL: the table's schema (`dbo`, `eventuous`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<String>,
    /// MongoDB: the collection (`checkpoint`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub collection: Option<String>,
    /// Elasticsearch: the index (`checkpoint`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<String>,
}

/// How the lease of a connector run by several gateways behaves.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LeaseConfig {
    /// How long the lease lasts without a renewal: a gateway that dies or is cut off is
    /// replaced after at most this long.
    #[serde(default = "defaults::lease_ttl_ms")]
    pub ttl_ms: u64,
    /// How often the holder renews it and a standby gateway tries to take it.
    #[serde(default = "defaults::lease_renew_every_ms")]
    pub renew_every_ms: u64,
}

impl Default for LeaseConfig {
    fn default() -> Self {
        Self { ttl_ms: defaults::lease_ttl_ms(), renew_every_ms: defaults::lease_renew_every_ms() }
    }
}

/// Where events come from. Exactly one key.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum SourceConfig {
    /// The embedded SQLite event log (`projector-gateway append` writes to it).
    Sqlite(SqliteSourceConfig),
    /// An Eventuous event store in PostgreSQL (`<schema>.messages`).
    Postgres(PostgresSourceConfig),
    /// KurrentDB (EventStoreDB): a catch-up subscription to `$all`, then live.
    Kurrentdb(KurrentdbSourceConfig),
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SqliteSourceConfig {
    /// Path of the event log database file.
    pub path: PathBuf,
    /// How often to look for new events when caught up (appends in the same process wake the
    /// reader at once).
    #[serde(default = "defaults::sqlite_poll_ms")]
    pub poll_interval_ms: u64,
    /// Events read per query.
    #[serde(default = "defaults::read_batch")]
    pub batch_size: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PostgresSourceConfig {
    /// libpq-style URL or key/value string, e.g. `postgres://user:pw@host:5432/db`.
    pub url: String,
    /// Schema holding Eventuous's `messages` and `streams` tables.
    #[serde(default = "defaults::eventuous_schema")]
    pub schema: String,
    #[serde(default = "defaults::postgres_poll_ms")]
    pub poll_interval_ms: u64,
    #[serde(default = "defaults::read_batch")]
    pub batch_size: usize,
    /// Longest time to hold back at a gap in global positions (a transaction that took a lower
    /// position and has not committed yet) before treating it as a rolled-back hole, when the
    /// database cannot prove it sooner.
    #[serde(default = "defaults::gap_timeout_ms")]
    pub gap_timeout_ms: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct KurrentdbSourceConfig {
    /// The connection string as KurrentDB clients take it, e.g.
    /// `kurrentdb://admin:changeit@db:2113?tls=false`, `esdb://a:2113,b:2113,c:2113?nodePreference=leader`
    /// or `esdb+discover://cluster.example:2113`.
    pub connection_string: String,
    /// The server reports how far it has read `$all` at least every this many events that do
    /// not pass its filter, so a connector that matches few events still moves its checkpoint.
    #[serde(default = "defaults::kurrentdb_checkpoint_interval")]
    pub checkpoint_interval: u32,
    /// Most events handed to the pipeline at once.
    #[serde(default = "defaults::read_batch")]
    pub batch_size: usize,
    /// What to do with events whose content type is not JSON.
    #[serde(default)]
    pub non_json: NonJsonEvents,
    /// Deliver the events that link events (`$>`) point to, instead of the links.
    #[serde(default)]
    pub resolve_links: bool,
}

/// What a KurrentDB source does with an event that is not JSON.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum NonJsonEvents {
    /// Send it to the sidecar as raw bytes (`payloadJson`, `contentType: application/octet-stream`).
    #[default]
    Pass,
    /// Leave it out (its position still counts for the checkpoint).
    Skip,
}

/// Which events reach the sidecar. Includes are applied first (empty = everything), then
/// excludes. System events (`$`-prefixed type or stream) are excluded unless `include_system`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FilterConfig {
    #[serde(default)]
    pub include_types: Vec<String>,
    #[serde(default)]
    pub exclude_types: Vec<String>,
    #[serde(default)]
    pub include_stream_prefixes: Vec<String>,
    #[serde(default)]
    pub exclude_stream_prefixes: Vec<String>,
    /// A regular expression (Rust `regex` syntax) the stream name must match.
    #[serde(default)]
    pub include_stream_regex: Option<String>,
    #[serde(default)]
    pub exclude_stream_regex: Option<String>,
    #[serde(default)]
    pub include_system: bool,
}

/// How to reach the reducer sidecar and how hard to drive it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SidecarConfig {
    /// gRPC endpoint, e.g. `http://127.0.0.1:50051`.
    pub address: String,
    /// Requests in flight per partition stream before waiting for responses.
    #[serde(default = "defaults::window")]
    pub window: usize,
    /// How long one event may wait for its response before it counts as failed.
    #[serde(default = "defaults::request_timeout_ms")]
    pub request_timeout_ms: u64,
    /// How often an event is sent again after a timeout or a retryable sidecar error before
    /// the poison policy decides.
    #[serde(default = "defaults::max_retries")]
    pub max_retries: u32,
    /// How the payload is sent: as a Struct (`eventPayload`), as raw JSON bytes
    /// (`payloadJson`), or both.
    #[serde(default)]
    pub payload: PayloadFormat,
    /// Which events the sidecar answers.
    #[serde(default)]
    pub answers: Answers,
    /// What happens to an event whose response does not come within `request_timeout_ms`.
    #[serde(default)]
    pub on_timeout: TimeoutPolicy,
    /// When the sidecar's `Describe` reports a projection version other than the one the
    /// target recorded: rebuild the read model (its reset operations, checkpoints deleted,
    /// the whole log projected again). Off: log a warning and go on.
    #[serde(default)]
    pub rebuild_on_new_version: bool,
}

/// Which events a sidecar answers.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Answers {
    /// Every event, in request order (this project's contract). A response for a later event
    /// while an earlier one is unanswered is an error.
    #[default]
    All,
    /// Only the events it has a handler for, in request order (Eventuous Connector sidecars
    /// log and skip the others): a response for a later event acknowledges every earlier
    /// unanswered one on the same partition stream as ignored.
    Handled,
}

/// What happens to an event the sidecar does not answer in time.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum TimeoutPolicy {
    /// Reopen the stream and send it again, up to `max_retries` times, then apply the poison
    /// policy.
    #[default]
    Retry,
    /// Accepted for old files; means `retry`. It once skipped the event, which lost the answer
    /// of a sidecar that was only slow; a sidecar's silences are settled by probes now
    /// (`answers: handled`).
    Ignore,
    /// Apply the poison policy at once.
    Stop,
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum PayloadFormat {
    #[default]
    Struct,
    Json,
    Both,
}

/// How events are spread over parallel, independently ordered partitions.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PartitioningConfig {
    #[serde(default = "defaults::partitions")]
    pub count: u32,
    #[serde(default)]
    pub key: PartitionKey,
}

impl Default for PartitioningConfig {
    fn default() -> Self {
        Self { count: defaults::partitions(), key: PartitionKey::default() }
    }
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum PartitionKey {
    /// The stream name: events of one stream stay in order.
    #[default]
    Stream,
    /// The stream's category (the part before the first `-`): events of one category stay in
    /// order.
    Category,
    /// One partition: every event in log order.
    None,
}

/// How operations are grouped into one transaction with the checkpoint.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BatchConfig {
    /// Most operations per transaction.
    #[serde(default = "defaults::max_ops")]
    pub max_ops: usize,
    /// How long to wait for more operations once some are ready. 0 (the default) applies what
    /// has arrived as soon as the sink is free, so batches grow with load and an idle
    /// connector applies each event at once.
    #[serde(default)]
    pub max_wait_ms: u64,
}

impl Default for BatchConfig {
    fn default() -> Self {
        Self { max_ops: defaults::max_ops(), max_wait_ms: 0 }
    }
}

/// Where operations are applied. Exactly one key.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum SinkConfig {
    Sqlite(SqliteSinkConfig),
    Postgres(PostgresSinkConfig),
    /// SQL Server or Azure SQL.
    Mssql(MssqlSinkConfig),
    Mongo(MongoSinkConfig),
    Elastic(ElasticSinkConfig),
    /// A producer sink: one JSON line per event on standard output.
    Console(ConsoleSinkConfig),
    /// A producer sink: every event POSTed to an HTTP endpoint as a CloudEvent.
    Http(HttpSinkConfig),
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ConsoleSinkConfig {
    /// Where the connector's checkpoints are kept; none: every run starts from the beginning.
    #[serde(default)]
    pub checkpoints: Option<CheckpointStoreConfig>,
}

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
    pub checkpoints: Option<CheckpointStoreConfig>,
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

/// What a connector does with an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectorMode {
    /// The sidecar reduces each event to operations, which the sink applies.
    Projector,
    /// No sidecar: the sink records each event as it is.
    Producer,
}

impl ConnectorConfig {
    pub fn mode(&self) -> ConnectorMode {
        if self.sidecar.is_some() { ConnectorMode::Projector } else { ConnectorMode::Producer }
    }
}

impl SinkConfig {
    /// The sink's key in the configuration, e.g. `sqlite`.
    pub fn key(&self) -> &'static str {
        match self {
            SinkConfig::Sqlite(_) => "sqlite",
            SinkConfig::Postgres(_) => "postgres",
            SinkConfig::Mssql(_) => "mssql",
            SinkConfig::Mongo(_) => "mongo",
            SinkConfig::Elastic(_) => "elastic",
            SinkConfig::Console(_) => "console",
            SinkConfig::Http(_) => "http",
        }
    }

    /// Whether this sink can run a connector of that mode.
    pub fn supports(&self, mode: ConnectorMode) -> bool {
        match self {
            SinkConfig::Sqlite(_) | SinkConfig::Postgres(_) | SinkConfig::Mssql(_) | SinkConfig::Mongo(_) => {
                mode == ConnectorMode::Projector
            }
            // Projector with a sidecar; producer without one (every event indexed as a document).
            SinkConfig::Elastic(_) => true,
            SinkConfig::Console(_) | SinkConfig::Http(_) => mode == ConnectorMode::Producer,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SqliteSinkConfig {
    /// Path of the read-model database file (created if missing).
    pub path: PathBuf,
    /// SQL run once at start, e.g. `CREATE TABLE IF NOT EXISTS ...` for the read model.
    #[serde(default)]
    pub init_sql: Option<String>,
    /// A file whose SQL is run once at start (after `init_sql`).
    #[serde(default)]
    pub init_sql_file: Option<PathBuf>,
    /// Accept Eventuous's raw `Execute{sql}` operation.
    #[serde(default = "defaults::yes")]
    pub allow_raw_sql: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PostgresSinkConfig {
    pub url: String,
    /// Schema for the gateway's own tables (`checkpoints`, `parked_events`).
    #[serde(default = "defaults::public_schema")]
    pub schema: String,
    #[serde(default)]
    pub init_sql: Option<String>,
    #[serde(default)]
    pub init_sql_file: Option<PathBuf>,
    #[serde(default = "defaults::yes")]
    pub allow_raw_sql: bool,
    /// Connections applying batches in parallel; each owns a fixed set of partitions.
    #[serde(default = "defaults::pg_writers")]
    pub writers: usize,
}

/// The SQL Server (or Azure SQL) target.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MssqlSinkConfig {
    /// ADO.NET connection string, e.g.
    /// `Server=tcp:host,1433;Database=app;User Id=gw;Password=...;Encrypt=true`.
    pub connection_string: String,
    /// Schema for the gateway's own tables (`checkpoints`, `parked_events`, `projections`).
    #[serde(default = "defaults::mssql_schema")]
    pub schema: String,
    #[serde(default)]
    pub init_sql: Option<String>,
    #[serde(default)]
    pub init_sql_file: Option<PathBuf>,
    #[serde(default = "defaults::yes")]
    pub allow_raw_sql: bool,
    /// Connections applying batches in parallel; each owns a fixed set of partitions.
    #[serde(default = "defaults::pg_writers")]
    pub writers: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MongoSinkConfig {
    /// MongoDB connection string, e.g. `mongodb://127.0.0.1:27017/?directConnection=true`.
    pub url: String,
    /// The database holding the read model and the gateway's collections.
    pub database: String,
    /// The collection an operation acts on when it names none (`collection` field).
    pub collection: String,
    /// The gateway's checkpoint documents.
    #[serde(default = "defaults::mongo_checkpoints")]
    pub checkpoints_collection: String,
    /// Events parked by the poison policy `park`.
    #[serde(default = "defaults::mongo_parked")]
    pub parked_collection: String,
    /// Whether a batch and its checkpoints go in one multi-document transaction.
    #[serde(default)]
    pub transactions: MongoTransactions,
    /// Clients applying batches in parallel; each owns a fixed set of partitions.
    #[serde(default = "defaults::pg_writers")]
    pub writers: usize,
}

/// Whether the MongoDB target uses multi-document transactions.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum MongoTransactions {
    /// Use them when the server supports them (a replica set or sharded cluster that runs a
    /// test transaction), else write the checkpoints right after the batch.
    #[default]
    Auto,
    /// Require them: refuse to start on a server without transactions.
    On,
    /// Never: checkpoints right after the batch (at-least-once).
    Off,
}

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
    #[serde(default = "defaults::pg_writers")]
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
    #[serde(default = "defaults::yes")]
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

/// What happens to an event that cannot be reduced or applied.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum PoisonPolicy {
    /// Stop the connector; its checkpoint stays before the event.
    #[default]
    Stop,
    /// Log the error and move on as if the sidecar had answered `Ignore`.
    Skip,
    /// Record the event and the error in the target's `parked_events` and move on.
    Park,
}

pub(crate) mod defaults {
    pub fn lease_ttl_ms() -> u64 {
        15_000
    }
    pub fn lease_renew_every_ms() -> u64 {
        3_000
    }
    pub fn sqlite_poll_ms() -> u64 {
        5
    }
    pub fn postgres_poll_ms() -> u64 {
        50
    }
    pub fn read_batch() -> usize {
        1000
    }
    pub fn eventuous_schema() -> String {
        "eventuous".into()
    }
    pub fn public_schema() -> String {
        "public".into()
    }
    pub fn mssql_schema() -> String {
        "dbo".into()
    }
    pub fn kurrentdb_checkpoint_interval() -> u32 {
        1000
    }
    pub fn gap_timeout_ms() -> u64 {
        10_000
    }
    pub fn window() -> usize {
        256
    }
    pub fn request_timeout_ms() -> u64 {
        30_000
    }
    pub fn max_retries() -> u32 {
        3
    }
    pub fn partitions() -> u32 {
        8
    }
    pub fn max_ops() -> usize {
        500
    }
    /// `batch.max_ops` when the file does not say. Elasticsearch takes larger batches: a
    /// `_bulk` request is cheap per item and dear per request (its guidance is requests of
    /// several MB), and each batch costs one more request for its checkpoints; 2,000 bookings
    /// operations are about 0.8 MB, under `max_bulk_bytes`.
    pub fn max_ops_for(sink: &super::SinkConfig) -> usize {
        match sink {
            super::SinkConfig::Elastic(_) => 2000,
            _ => max_ops(),
        }
    }
    pub fn mongo_checkpoints() -> String {
        "checkpoints".into()
    }
    pub fn mongo_parked() -> String {
        "parked_events".into()
    }
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
    pub fn http_timeout_ms() -> u64 {
        30_000
    }
    pub fn http_batch_events() -> usize {
        100
    }
    pub fn pg_writers() -> usize {
        1
    }
    pub fn yes() -> bool {
        true
    }
}
