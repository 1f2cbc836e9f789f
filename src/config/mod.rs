//! The one configuration model of the gateway: what a connector is made of. The YAML loader
//! (`load`), the CLI and the management API all build these same serde types, so a
//! connector definition means the same thing wherever it comes from.

mod blue_green;
mod eventuous;
pub mod eventuous_checkpoint;
mod load;
pub mod paths;
pub mod problem;

use serde::{Deserialize, Serialize};

pub use eventuous_checkpoint::{EventuousCheckpoint, EventuousPlace};
pub use load::{ConfigError, load_file, parse, parse_connector};
pub use problem::ConfigProblem;
pub use crate::sources::settings::{
    kurrentdb::{KurrentdbSourceConfig, NonJsonEvents},
    postgres::PostgresSourceConfig,
    sqlite::SqliteSourceConfig,
};
// Each sink's settings live in its folder; named here as well so the rest of the code finds
// the whole configuration model in one place.
pub use crate::sinks::{
    checkpoint_store::CheckpointStoreConfig,
    settings::{
        console::ConsoleSinkConfig,
        elastic::{ElasticLifecyclePolicy, ElasticPayloadMapping, ElasticProducerConfig, ElasticRefresh, ElasticSinkConfig},
        http::{HttpMode, HttpSinkConfig},
        mongo::{MongoSinkConfig, MongoTransactions},
        mssql::MssqlSinkConfig,
        postgres::PostgresSinkConfig,
        sqlite::SqliteSinkConfig,
    },
};

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
    /// High availability and scale-out: with a lease, the connector runs on one gateway at a
    /// time among all those that define it (the others stand by to take over), or, with
    /// `scope: partitions`, its partitions are shared out among them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease: Option<LeaseConfig>,
    /// Taking over from the Eventuous Connector: where its checkpoint is in the target. On a
    /// start without checkpoints of its own, the connector resumes after that position and
    /// stores it as its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eventuous_checkpoint: Option<EventuousCheckpointConfig>,
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
    /// What one gateway holds: the whole connector (high availability), or some of its
    /// partitions (scale-out: every gateway that runs the connector holds a fair share).
    #[serde(default)]
    pub scope: LeaseScope,
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
        Self { scope: LeaseScope::default(), ttl_ms: defaults::lease_ttl_ms(), renew_every_ms: defaults::lease_renew_every_ms() }
    }
}

/// What a lease covers.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum LeaseScope {
    /// One gateway runs the whole connector; the others stand by.
    #[default]
    Connector,
    /// Each partition is claimed by one gateway; the live gateways share them out.
    Partitions,
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
    /// gRPC endpoint, e.g. `http://127.0.0.1:50051`, or `https://reducer.internal:50443` for
    /// TLS (see `tls`). A DNS name that resolves to several IPs (a Kubernetes headless Service)
    /// is one endpoint per IP. Exactly one of `address` and `addresses` is given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// Several sidecar replicas, each a gRPC endpoint as `address` is (all `http://` or all
    /// `https://`); each partition stream goes to one of them (`src/reducer/endpoints.rs`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub addresses: Option<Vec<String>>,
    /// How often the addresses' DNS names are resolved again, in seconds (replicas come and go).
    #[serde(default = "defaults::resolve_every_secs")]
    pub resolve_every_secs: u64,
    /// TLS settings of an `https://` address (a CA of its own, a client certificate, the name
    /// to check). An `https://` address without them is checked against the Mozilla roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<SidecarTlsConfig>,
    /// Requests in flight per partition stream before waiting for responses.
    #[serde(default = "defaults::window")]
    pub window: usize,
    /// The largest message the gateway reads from or sends to the sidecar, in bytes (default
    /// 64 MiB). A larger answer is refused unread, as an attempt at the event it answers.
    #[serde(default = "defaults::max_message_bytes")]
    pub max_message_bytes: usize,
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
    /// What a new projection version in `Describe` does (see [`OnNewVersion`]). Unset: what
    /// `rebuild_on_new_version` says (`true` is `rebuild_in_place`, `false` is `warn`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_new_version: Option<OnNewVersion>,
    /// Blue/green rebuilds (`on_new_version: blue_green`, the `rebuild` command, the
    /// management API's rebuild verb): where the new version's sidecar is, how many old
    /// versions are kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blue_green: Option<BlueGreenConfig>,
}

/// What a connector does when its sidecar's `Describe` reports a projection version other than
/// the one its read model was built by.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum OnNewVersion {
    /// Log a warning and go on (the read model stays as the old version built it).
    #[default]
    Warn,
    /// Clear the read model in place (the sidecar's reset operations, checkpoints deleted)
    /// and project the whole log again: readers see it empty, then filling.
    RebuildInPlace,
    /// Build the new version beside the live one from the start of the log and swap it in,
    /// atomically for readers, once it has caught up (`pipeline/blue_green.rs`). SQLite and
    /// PostgreSQL targets.
    BlueGreen,
}

/// Settings of blue/green rebuilds.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BlueGreenConfig {
    /// The gRPC address of the sidecar that serves the new version, when it runs beside the
    /// old one (which keeps serving the live read model). Unset: the connector's own sidecar.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sidecar: Option<String>,
    /// How many replaced versions stay in the target after a swap (files beside the read
    /// model, schemas beside its schema); older ones are dropped.
    #[serde(default = "defaults::keep_old_versions")]
    pub keep_old_versions: u32,
}

impl Default for BlueGreenConfig {
    fn default() -> Self {
        Self { sidecar: None, keep_old_versions: defaults::keep_old_versions() }
    }
}

impl SidecarConfig {
    /// The configured addresses: `address`, or the `addresses` list.
    pub fn addresses(&self) -> Vec<&str> {
        match (&self.address, &self.addresses) {
            (Some(address), _) => vec![address.as_str()],
            (None, Some(addresses)) => addresses.iter().map(String::as_str).collect(),
            (None, None) => Vec::new(),
        }
    }

    /// What a new projection version does: `on_new_version`, else `rebuild_on_new_version`.
    pub fn new_version_policy(&self) -> OnNewVersion {
        match (self.on_new_version, self.rebuild_on_new_version) {
            (Some(policy), _) => policy,
            (None, true) => OnNewVersion::RebuildInPlace,
            (None, false) => OnNewVersion::Warn,
        }
    }

    /// The blue/green settings, their defaults when the section is absent.
    pub fn blue_green(&self) -> BlueGreenConfig {
        self.blue_green.clone().unwrap_or_default()
    }

    /// The configured addresses for a log line or a report: `http://a:1`, or `http://a:1, http://b:2`.
    pub fn shown_addresses(&self) -> String {
        self.addresses().join(", ")
    }
}

/// TLS to the sidecar (`src/reducer/tls.rs` reads the files).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SidecarTlsConfig {
    /// PEM file of the CA certificate(s) that signed the sidecar's certificate. Without it,
    /// the Mozilla roots (a certificate from a public CA).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<std::path::PathBuf>,
    /// PEM file of the gateway's client certificate (and its intermediates), for a sidecar that
    /// requires one (mutual TLS); with `key_file`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_file: Option<std::path::PathBuf>,
    /// PEM file of the client certificate's private key (PKCS#8, PKCS#1 or SEC1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_file: Option<std::path::PathBuf>,
    /// The name checked in the sidecar's certificate instead of the address's host (an address
    /// by IP, or a Service name the certificate does not hold).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
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
    /// While the sidecar holds a backlog (more of the connector's events in flight than it has
    /// partitions), how long at most to wait for its answers before applying what has arrived
    /// (default 5 ms; 0: never). Behind a sidecar that is the bottleneck this makes one
    /// transaction of what would be many small ones, at no cost in throughput (the sink would be
    /// waiting anyway); live traffic (an event or two in flight) never waits.
    #[serde(default = "defaults::adaptive_wait_ms")]
    pub adaptive_wait_ms: u64,
}

impl Default for BatchConfig {
    fn default() -> Self {
        Self { max_ops: defaults::max_ops(), max_wait_ms: 0, adaptive_wait_ms: defaults::adaptive_wait_ms() }
    }
}

/// What a sink's settings (`sinks/<sink>/config.rs`) tell the loader.
pub trait SinkSettings {
    /// Whether the sink runs connectors of this mode; most apply a sidecar's operations.
    fn supports(&self, mode: ConnectorMode) -> bool {
        mode == ConnectorMode::Projector
    }

    /// `batch.max_ops` when the file does not say.
    fn default_max_ops(&self) -> usize {
        defaults::max_ops()
    }

    /// Whether the target is a server reached over the network, whose outage at start is
    /// waited out as one mid-run is; a local file or the console fails at once instead.
    fn is_remote(&self) -> bool {
        true
    }

    /// Checks what serde cannot judge; `connector_path` is the connector's key path
    /// (`connectors[0]`), under which the sink's section is `.sink.<key>`.
    fn validate(&self, connector: &ConnectorConfig, connector_path: &str, problems: &mut Vec<ConfigProblem>);

    /// The keys of `eventuous_checkpoint` that name where Eventuous keeps its checkpoints in
    /// this target (besides `id`), or `None` where it keeps none.
    fn eventuous_keys(&self) -> Option<&'static [&'static str]> {
        None
    }

    /// Where Eventuous keeps the checkpoint `config` names in this target (its names, else
    /// Eventuous's defaults), or `None` where it keeps none.
    fn eventuous_place(&self, config: &EventuousCheckpointConfig) -> Option<EventuousPlace> {
        let _ = config;
        None
    }
}

/// A component section (`sink`, `source`): one variant per line of the component's registry
/// (`sinks/registry.rs`, `sources/registry.rs`), each holding that component's settings.
macro_rules! component_config {
    ($name:ident $settings_trait:ident $doc:literal; $($variant:ident $key:literal ($($cfg:tt)*) $settings:ty => $runtime:ty;)*) => {
        #[doc = $doc]
        #[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
        #[serde(deny_unknown_fields)]
        pub enum $name {
            $(#[serde(rename = $key)] $variant($settings),)*
        }

        impl $name {
            /// The component's key in the configuration, e.g. `sqlite`.
            pub fn key(&self) -> &'static str {
                match self {
                    $(Self::$variant(_) => $key,)*
                }
            }

            /// The component's settings, whichever it is.
            pub fn settings(&self) -> &dyn $settings_trait {
                match self {
                    $(Self::$variant(settings) => settings,)*
                }
            }
        }
    };
}
crate::sinks::registry::each_sink!(component_config, SinkConfig, SinkSettings, "Where operations are applied. Exactly one key.");

impl SinkConfig {
    /// Whether this sink can run a connector of that mode.
    pub fn supports(&self, mode: ConnectorMode) -> bool {
        self.settings().supports(mode)
    }
}

/// What a source's settings (`sources/<source>/config.rs`) tell the loader.
pub trait SourceSettings {
    /// Whether the log is on a server reached over the network, whose outage at start is
    /// waited out as one mid-run is; a local file fails at once instead.
    fn is_remote(&self) -> bool {
        true
    }

    /// Checks what serde cannot judge; `connector_path` is the connector's key path
    /// (`connectors[0]`), under which the source's section is `.source.<key>`.
    fn validate(&self, connector_path: &str, problems: &mut Vec<ConfigProblem>);
}

crate::sources::registry::each_source!(component_config, SourceConfig, SourceSettings, "Where events come from. Exactly one key.");

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
    pub fn keep_old_versions() -> u32 {
        1
    }
    pub fn lease_ttl_ms() -> u64 {
        15_000
    }
    pub fn lease_renew_every_ms() -> u64 {
        3_000
    }
    pub fn read_batch() -> usize {
        1000
    }
    pub fn window() -> usize {
        256
    }
    pub fn resolve_every_secs() -> u64 {
        10
    }
    pub fn max_message_bytes() -> usize {
        64 << 20
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

    pub fn adaptive_wait_ms() -> u64 {
        5
    }
    /// Connections (or clients) applying batches in parallel, for every sink that has them.
    pub fn writers() -> usize {
        1
    }
    pub fn yes() -> bool {
        true
    }
}
