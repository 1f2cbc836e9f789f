//! The management API of `run --listen ... --state FILE` (design §4): operators create,
//! enable, disable, reset and delete connectors while the gateway runs, and every change is
//! kept in an append-only definition log so a restart runs the same set in the same states.
//!
//! - `definition`: the changes the definition log records and what its replay yields.
//! - `store`: the definition log (SQLite, append-only; its replay is the connector set).
//! - `supervisor`: owns the connector tasks and applies the operations in order.
//! - `api`: the HTTP routes over the supervisor, merged into the operations endpoint.

pub mod api;
mod definition;
#[cfg(feature = "sqlite")]
pub mod store;
#[cfg(not(feature = "sqlite"))]
pub mod store {
    //! Without the `sqlite` feature there is no definition log: `--state` is refused.
    #[derive(Debug, thiserror::Error)]
    #[error("this build has no `sqlite` feature, so it cannot keep a definition log (--state)")]
    pub struct StoreError;
    pub use super::definition::{DefinitionEvent, Replayed};
    pub struct DefinitionLog;
    impl DefinitionLog {
        pub fn open(_: &std::path::Path) -> Result<Self, StoreError> {
            Err(StoreError)
        }
        pub fn append(&self, _: &str, _: &DefinitionEvent) -> Result<(), StoreError> {
            Err(StoreError)
        }
        pub fn replay(&self) -> Result<Replayed, StoreError> {
            Err(StoreError)
        }
        pub fn history(&self, _: &str) -> Result<Vec<serde_json::Value>, StoreError> {
            Err(StoreError)
        }
    }
}
pub mod supervisor;

pub use supervisor::{ResetTarget, Settings, StartError, Supervisor};

use crate::config::ConfigProblem;

/// Why a management operation was refused or failed; each maps to one HTTP status.
#[derive(Debug, thiserror::Error)]
pub enum ManagementError {
    #[error("no connector `{0}`; GET /connectors lists them")]
    NotFound(String),
    #[error("connector `{connector}` has no parked event `{id}`; GET /connectors/{connector}/parked lists them")]
    NoParkedEvent { connector: String, id: String },
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("the connector definition has {} problem(s): {}", .0.len(), .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Invalid(Vec<ConfigProblem>),
    #[error(
        "the management API is read-only: start the gateway with --state FILE (a definition log) to create, \
         enable, disable, reset and delete connectors"
    )]
    ReadOnly,
    #[error("the gateway is stopping; try again on the next start")]
    Stopping,
    #[error("{0}")]
    Store(store::StoreError),
    #[error("{0}")]
    Failed(String),
}
