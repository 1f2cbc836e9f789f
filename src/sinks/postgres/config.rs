//! The PostgreSQL target's settings and their checks (the URL check is shared with the
//! PostgreSQL source). Compiled whatever features are on (see `sinks/registry.rs`).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::config::{
    ConnectorConfig, EventuousCheckpointConfig, EventuousPlace, SinkSettings,
    eventuous_checkpoint::named,
    problem::{ConfigProblem, at_least, identifier, problem},
};

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
    #[serde(default = "crate::config::defaults::yes")]
    pub allow_raw_sql: bool,
    /// The schema the read model lives in: the sidecar's unqualified SQL runs with
    /// `search_path` set to it (on every connection and in every batch transaction). Unset:
    /// the connection's default `search_path`, as before. A blue/green rebuild needs it: the
    /// new version is built in `<read_model_schema>_v<version>` and swapped in by renaming.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_model_schema: Option<String>,
    /// Connections applying batches in parallel; each owns a fixed set of partitions.
    #[serde(default = "crate::config::defaults::writers")]
    pub writers: usize,
}

impl SinkSettings for PostgresSinkConfig {
    fn eventuous_keys(&self) -> Option<&'static [&'static str]> {
        Some(&["table", "schema"])
    }

    fn eventuous_place(&self, config: &EventuousCheckpointConfig) -> Option<EventuousPlace> {
        Some(EventuousPlace::Table {
            database: "PostgreSQL",
            schema: Some(named(&config.schema, "eventuous")),
            table: named(&config.table, "checkpoints"),
        })
    }

    fn validate(&self, _: &ConnectorConfig, connector_path: &str, problems: &mut Vec<ConfigProblem>) {
        let at = |key: &str| format!("{connector_path}.sink.postgres.{key}");
        url(&self.url, &at("url"), problems);
        identifier(&self.schema, &at("schema"), problems);
        if let Some(schema) = &self.read_model_schema {
            identifier(schema, &at("read_model_schema"), problems);
        }
        at_least(self.writers as u64, 1, &at("writers"), problems);
    }
}

mod defaults {
    pub fn public_schema() -> String {
        "public".into()
    }
}

/// A PostgreSQL connection string, as libpq and tokio-postgres read it, with its TLS parameters
/// and the files they name (read as the connection would read them).
pub fn url(url: &str, path: &str, problems: &mut Vec<ConfigProblem>) {
    if url.trim().is_empty() {
        problems.push(problem(path, "empty; expected e.g. `postgres://user:password@127.0.0.1:5432/db`"));
    } else if let Some(reason) = url_problem(url) {
        problems.push(problem(path, reason));
    }
}

#[cfg(feature = "postgres")]
fn url_problem(url: &str) -> Option<String> {
    crate::postgres::PgEndpoint::parse(url).err().map(|e| e.to_string())
}

#[cfg(not(feature = "postgres"))]
fn url_problem(_: &str) -> Option<String> {
    None
}
