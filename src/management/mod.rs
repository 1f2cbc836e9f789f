//! The management API of `run --listen ... --state FILE|URL` (design §4): operators create,
//! enable, disable, reset and delete connectors while the gateway runs, and every change is
//! kept in an append-only definition log so a restart runs the same set in the same states.
//! Kept in PostgreSQL, the log is shared: several replicas follow it and run the same set,
//! whichever of them an operator changed it through.
//!
//! - `definition`: the changes the definition log records and what its replay yields.
//! - `store`: the definition log (an SQLite file or a shared PostgreSQL table, append-only;
//!   its replay is the connector set).
//! - `supervisor`: owns the connector tasks, applies the operations in order, and follows a
//!   shared log (`follow`).
//! - `api`: the HTTP routes over the supervisor, merged into the operations endpoint.

pub mod api;
mod definition;
pub mod store;
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
