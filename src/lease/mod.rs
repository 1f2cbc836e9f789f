//! High availability (design §4): several gateways define the same connector, and a lease held
//! in the connector's target database decides which one runs it. The holder renews the lease
//! while it runs; the others stand by and take it over once it expires (a holder that died or
//! was cut off) or is released (a holder that stopped).
//!
//! Expiry alone cannot stop a holder that is paused or partitioned from writing after it was
//! replaced, so every lease carries an epoch that grows with each new holder, and the sink
//! fences each commit with it: the batch's transaction first checks, under a row lock, that
//! the lease still has this holder and epoch, and rolls back otherwise. A replaced gateway can
//! therefore never commit, whatever its clocks and pauses.
//!
//! - `postgres`: the lease table, taking, renewing and releasing a lease, and the fence.
//! - `tenure`: how a gateway runs a leased connector: stand by, take over, renew, hand over.

#[cfg(feature = "postgres")]
pub mod postgres;
pub mod tenure;

/// A lease as its holder holds it: what the sink fences each commit with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tenure {
    /// The gateway instance that holds it (`--instance-id`).
    pub holder: String,
    /// Grows with each new holder; a commit under an older epoch is refused.
    pub epoch: i64,
}

/// Who holds a connector's lease, as the store says now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    pub holder: String,
    pub epoch: i64,
    /// Negative once it has expired.
    pub expires_in_ms: i64,
}

/// The lease store could not be used. Never fatal: a gateway that cannot reach it stands by (or,
/// holding the lease, goes on with every commit still fenced) and tries again.
#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    /// The target's URL, which the lease store shares, cannot be used.
    #[error("sink.postgres.url: {0}")]
    Url(String),
    /// A statement against the lease table failed.
    #[error("lease store (PostgreSQL target {endpoint}): {action}: {cause}")]
    Store { endpoint: String, action: &'static str, cause: String },
}

/// This process's name among the gateways: `--instance-id`, else the host name (a pod's name)
/// and the process id.
pub fn default_instance_id() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok().map(|h| h.trim().to_owned()).filter(|h| !h.is_empty()))
        .unwrap_or_else(|| "gateway".into());
    format!("{host}:{}", std::process::id())
}
