//! The PostgreSQL (Eventuous schema) source's settings and their checks. Compiled whatever
//! features are on (see `sources/registry.rs`).

use serde::{Deserialize, Serialize};

use crate::config::{
    SourceSettings,
    problem::{ConfigProblem, at_least, identifier},
};

/// An Eventuous event store in PostgreSQL (`<schema>.messages`).
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
    #[serde(default = "crate::config::defaults::read_batch")]
    pub batch_size: usize,
    /// Longest time to hold back at a gap in global positions (a transaction that took a lower
    /// position and has not committed yet) before treating it as a rolled-back hole, when the
    /// database cannot prove it sooner.
    #[serde(default = "defaults::gap_timeout_ms")]
    pub gap_timeout_ms: u64,
}

impl SourceSettings for PostgresSourceConfig {
    fn validate(&self, connector_path: &str, problems: &mut Vec<ConfigProblem>) {
        let at = |key: &str| format!("{connector_path}.source.postgres.{key}");
        crate::sinks::settings::postgres::url(&self.url, &at("url"), problems);
        identifier(&self.schema, &at("schema"), problems);
        at_least(self.batch_size as u64, 1, &at("batch_size"), problems);
    }
}

mod defaults {
    pub fn eventuous_schema() -> String {
        "eventuous".into()
    }
    pub fn postgres_poll_ms() -> u64 {
        50
    }
    pub fn gap_timeout_ms() -> u64 {
        10_000
    }
}
