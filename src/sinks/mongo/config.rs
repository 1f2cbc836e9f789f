//! The MongoDB target's settings and their checks (names are also checked for the Eventuous
//! checkpoint a connector takes over). Compiled whatever features are on (see
//! `sinks/registry.rs`).

use serde::{Deserialize, Serialize};

use crate::config::{
    ConnectorConfig, EventuousCheckpointConfig, EventuousPlace, SinkSettings,
    eventuous_checkpoint::named,
    problem::{ConfigProblem, at_least, problem},
};

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
    #[serde(default = "crate::config::defaults::writers")]
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

impl SinkSettings for MongoSinkConfig {
    fn eventuous_keys(&self) -> Option<&'static [&'static str]> {
        Some(&["collection"])
    }

    fn eventuous_place(&self, config: &EventuousCheckpointConfig) -> Option<EventuousPlace> {
        Some(EventuousPlace::Collection(named(&config.collection, "checkpoint")))
    }

    fn validate(&self, _: &ConnectorConfig, connector_path: &str, problems: &mut Vec<ConfigProblem>) {
        let at = |key: &str| format!("{connector_path}.sink.mongo.{key}");
        url(&self.url, &at("url"), problems);
        name(&self.database, &at("database"), "database", problems);
        for (key, collection) in [
            ("collection", &self.collection),
            ("checkpoints_collection", &self.checkpoints_collection),
            ("parked_collection", &self.parked_collection),
        ] {
            name(collection, &at(key), "collection", problems);
        }
        at_least(self.writers as u64, 1, &at("writers"), problems);
    }
}

mod defaults {
    pub fn mongo_checkpoints() -> String {
        "checkpoints".into()
    }
    pub fn mongo_parked() -> String {
        "parked_events".into()
    }
}

fn url(url: &str, path: &str, problems: &mut Vec<ConfigProblem>) {
    if url.trim().is_empty() {
        problems.push(problem(path, "empty; expected e.g. `mongodb://127.0.0.1:27017/?directConnection=true`"));
    } else if !url.starts_with("mongodb://") && !url.starts_with("mongodb+srv://") {
        problems.push(problem(path, format!("`{url}` is not a MongoDB connection string; expected `mongodb://host:port/...`")));
    } else if let Some(reason) = url_problem(url) {
        problems.push(problem(path, reason));
    }
}

#[cfg(feature = "mongo")]
fn url_problem(url: &str) -> Option<String> {
    if url.starts_with("mongodb+srv://") {
        return Some("`mongodb+srv://` URLs need DNS SRV lookups, which this build leaves out; list the hosts with `mongodb://`".into());
    }
    crate::sinks::mongo::parse_url(url).err().map(|e| e.to_string())
}

#[cfg(not(feature = "mongo"))]
fn url_problem(_: &str) -> Option<String> {
    None
}

/// Database and collection names: not empty, no characters MongoDB forbids in them.
pub fn name(name: &str, path: &str, what: &str, problems: &mut Vec<ConfigProblem>) {
    let forbidden: &[char] = if what == "database" { &['/', '\\', '.', ' ', '"', '$', '\0'] } else { &['$', '\0'] };
    if name.is_empty() {
        problems.push(problem(path, format!("empty; expected a {what} name")));
    } else if name.contains(forbidden) || (what == "collection" && name.starts_with("system.")) {
        problems.push(problem(path, format!("`{name}` is not a valid MongoDB {what} name")));
    }
}
