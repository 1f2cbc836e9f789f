//! What one run of a connector has beside its configuration: state the process holds for it
//! (the lease it runs under), handed to the sink when it opens. Kept out of the configuration
//! model, which says only what an operator wrote, and below the pipeline, so a sink can take
//! it without reaching up.

use crate::lease::Tenure;

/// State a run of a connector holds, never configured.
#[derive(Debug, Clone, Default)]
pub struct RunContext {
    /// The lease this process holds for the connector while it runs it (high availability):
    /// the sink fences every commit with it.
    pub tenure: Option<Tenure>,
}
