//! What one run of a connector has beside its configuration: state the process holds for it
//! (the lease it runs under), handed to the sink when it opens. Kept out of the configuration
//! model, which says only what an operator wrote, and below the pipeline, so a sink can take
//! it without reaching up.

use crate::lease::{Claims, Fence, Tenure};

/// State a run of a connector holds, never configured.
#[derive(Debug, Clone, Default)]
pub struct RunContext {
    /// The lease this process holds for the connector while it runs it (high availability):
    /// the sink fences every commit with it.
    pub tenure: Option<Tenure>,
    /// The partitions this process holds of a connector shared out among gateways
    /// (`lease.scope: partitions`): it runs only these, and the sink fences every commit with
    /// their epochs.
    pub claims: Option<Claims>,
}

impl RunContext {
    /// What the sink fences every commit with, if anything.
    pub fn fence(&self) -> Option<Fence> {
        match (&self.claims, &self.tenure) {
            (Some(claims), _) => Some(Fence::Claims(claims.clone())),
            (None, Some(tenure)) => Some(Fence::Lease(tenure.clone())),
            (None, None) => None,
        }
    }

    /// Whether this run processes `partition` (every partition unless it runs claimed ones).
    pub fn runs(&self, partition: u32) -> bool {
        self.claims.as_ref().is_none_or(|claims| claims.holds(partition))
    }
}
