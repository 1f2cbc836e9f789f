//! The console producer sink's settings: where its checkpoints are kept. Always built.

use serde::{Deserialize, Serialize};

use crate::config::{
    ConnectorConfig, ConnectorMode, SinkSettings,
    problem::ConfigProblem,
};

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ConsoleSinkConfig {
    /// Where the connector's checkpoints are kept; none: every run starts from the beginning.
    #[serde(default)]
    pub checkpoints: Option<crate::sinks::checkpoint_store::CheckpointStoreConfig>,
}

impl SinkSettings for ConsoleSinkConfig {
    fn is_remote(&self) -> bool {
        false
    }

    fn supports(&self, mode: ConnectorMode) -> bool {
        mode == ConnectorMode::Producer
    }

    fn validate(&self, connector: &ConnectorConfig, connector_path: &str, problems: &mut Vec<ConfigProblem>) {
        let path = format!("{connector_path}.sink.console.checkpoints");
        crate::sinks::checkpoint_store::validate(self.checkpoints.as_ref(), connector, &path, problems);
    }
}
