//! The embedded SQLite event log's settings and their checks. Compiled whatever features are
//! on (see `sources/registry.rs`).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::config::{
    SourceSettings,
    problem::{ConfigProblem, at_least, non_empty_path},
};

/// The embedded SQLite event log (`projector-gateway append` writes to it).
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
    #[serde(default = "crate::config::defaults::read_batch")]
    pub batch_size: usize,
}

impl SourceSettings for SqliteSourceConfig {
    fn is_remote(&self) -> bool {
        false
    }

    fn validate(&self, connector_path: &str, problems: &mut Vec<ConfigProblem>) {
        non_empty_path(&self.path, &format!("{connector_path}.source.sqlite.path"), problems);
        at_least(self.batch_size as u64, 1, &format!("{connector_path}.source.sqlite.batch_size"), problems);
    }
}

mod defaults {
    pub fn sqlite_poll_ms() -> u64 {
        5
    }
}
