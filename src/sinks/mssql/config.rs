//! The SQL Server (and Azure SQL) target's settings and their checks. Compiled whatever
//! features are on (see `sinks/registry.rs`).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::config::{
    ConnectorConfig, EventuousCheckpointConfig, EventuousPlace, SinkSettings,
    eventuous_checkpoint::named,
    problem::{ConfigProblem, at_least, identifier, problem},
};

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
    #[serde(default = "crate::config::defaults::yes")]
    pub allow_raw_sql: bool,
    /// Connections applying batches in parallel; each owns a fixed set of partitions.
    #[serde(default = "crate::config::defaults::writers")]
    pub writers: usize,
}

impl SinkSettings for MssqlSinkConfig {
    fn eventuous_keys(&self) -> Option<&'static [&'static str]> {
        Some(&["table", "schema"])
    }

    fn eventuous_place(&self, config: &EventuousCheckpointConfig) -> Option<EventuousPlace> {
        Some(EventuousPlace::Table {
            database: "SQL Server",
            schema: Some(named(&config.schema, "dbo")),
            table: named(&config.table, "Checkpoints"),
        })
    }

    fn validate(&self, _: &ConnectorConfig, connector_path: &str, problems: &mut Vec<ConfigProblem>) {
        let at = |key: &str| format!("{connector_path}.sink.mssql.{key}");
        connection_string(&self.connection_string, &at("connection_string"), problems);
        identifier(&self.schema, &at("schema"), problems);
        at_least(self.writers as u64, 1, &at("writers"), problems);
    }
}

mod defaults {
    pub fn mssql_schema() -> String {
        "dbo".into()
    }
}

fn connection_string(s: &str, path: &str, problems: &mut Vec<ConfigProblem>) {
    if s.trim().is_empty() {
        problems.push(problem(path, "empty; expected e.g. `Server=tcp:127.0.0.1,1433;Database=app;User Id=gw;Password=...`"));
    } else if let Some(reason) = connection_string_problem(s) {
        problems.push(problem(path, reason));
    }
}

#[cfg(feature = "mssql")]
fn connection_string_problem(s: &str) -> Option<String> {
    crate::sinks::mssql::parse_connection_string(s).err().map(|e| e.to_string())
}

#[cfg(not(feature = "mssql"))]
fn connection_string_problem(_: &str) -> Option<String> {
    None
}
