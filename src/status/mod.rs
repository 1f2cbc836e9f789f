//! What operators see of a `run`: the registry of its connectors (`registry`), the probe of each
//! connector's source head for the lag (`head_probe`), the Prometheus families of `/metrics`
//! (`metrics`) and the HTTP endpoint of `run --listen` that serves them (`endpoint`).
//!
//! The connector tasks write to the registry; everything else only reads it, so reporting never
//! touches a connector's data path.

pub mod endpoint;
pub mod head_probe;
pub mod metrics;
pub mod registry;

pub use registry::{ConnectorHandle, ConnectorState, Connectors, Dependency, Origin, Snapshot};
