//! The SQLite target's settings: the read-model file, its start-up SQL, and what is checked
//! before a connector starts. Compiled whatever features are on (see `sinks/registry.rs`).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::config::{
    ConnectorConfig, EventuousCheckpointConfig, EventuousPlace, SinkSettings,
    eventuous_checkpoint::named,
    problem::{ConfigProblem, non_empty_path},
};

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
    #[serde(default = "crate::config::defaults::yes")]
    pub allow_raw_sql: bool,
}

impl SinkSettings for SqliteSinkConfig {
    fn is_remote(&self) -> bool {
        false
    }

    fn eventuous_keys(&self) -> Option<&'static [&'static str]> {
        Some(&["table"])
    }

    fn eventuous_place(&self, config: &EventuousCheckpointConfig) -> Option<EventuousPlace> {
        Some(EventuousPlace::Table { database: "SQLite", schema: None, table: named(&config.table, "eventuous_checkpoints") })
    }

    fn validate(&self, _: &ConnectorConfig, connector_path: &str, problems: &mut Vec<ConfigProblem>) {
        non_empty_path(&self.path, &format!("{connector_path}.sink.sqlite.path"), problems);
    }
}
