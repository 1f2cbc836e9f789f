//! The KurrentDB (EventStoreDB) source's settings and their checks (the connection string
//! check also serves the checkpoint store of producer sinks). Compiled whatever features are
//! on (see `sources/registry.rs`).

use serde::{Deserialize, Serialize};

use crate::config::{
    SourceSettings,
    problem::{ConfigProblem, at_least, problem},
};

/// KurrentDB (EventStoreDB): a catch-up subscription to `$all`, then live.
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
    #[serde(default = "crate::config::defaults::read_batch")]
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

impl SourceSettings for KurrentdbSourceConfig {
    fn validate(&self, connector_path: &str, problems: &mut Vec<ConfigProblem>) {
        let at = |key: &str| format!("{connector_path}.source.kurrentdb.{key}");
        connection_string(&self.connection_string, &at("connection_string"), problems);
        at_least(self.checkpoint_interval as u64, 1, &at("checkpoint_interval"), problems);
        at_least(self.batch_size as u64, 1, &at("batch_size"), problems);
    }
}

mod defaults {
    pub fn kurrentdb_checkpoint_interval() -> u32 {
        1000
    }
}

/// A KurrentDB connection string, as the official client reads it.
pub fn connection_string(text: &str, path: &str, problems: &mut Vec<ConfigProblem>) {
    const EXAMPLE: &str = "e.g. `kurrentdb://admin:changeit@127.0.0.1:2113?tls=false`";
    if text.trim().is_empty() {
        problems.push(problem(path, format!("empty; expected a KurrentDB connection string, {EXAMPLE}")));
    } else {
        #[cfg(feature = "kurrentdb")]
        if let Err(e) = text.parse::<kurrentdb::ClientSettings>() {
            let detail = e.error().map(|u| format!(" ({u})")).unwrap_or_default();
            problems.push(problem(path, format!("not a KurrentDB connection string: {}{detail}; {EXAMPLE}", e.message())));
        }
    }
}
