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
//! Scale-out (`scope: partitions`) makes the same lease per partition: every gateway running
//! the connector keeps a membership row alive, the live members share the partitions out
//! (each holds its fair share, `share`), and each batch's transaction checks the epochs of
//! the partitions it writes, so a partition moves between gateways with its checkpoint and a
//! former holder can never commit for it again.
//!
//! - `postgres`: the lease table, taking, renewing and releasing a lease, and the fence.
//! - `postgres_claims`: the claims and membership tables, and the per-partition fence.
//! - `mongo_claims`: the same as collections of a MongoDB target.
//! - `share`: which partitions a member should take or hand back (pure, unit-tested).
//! - `tenure`: how a gateway runs a leased connector: stand by, take over, renew, hand over.
//! - `partitions`: how a gateway runs its share of a connector's partitions.

#[cfg(any(feature = "postgres", feature = "mongo", feature = "sqlite"))]
pub mod partitions;
#[cfg(feature = "mongo")]
pub mod mongo_claims;
#[cfg(feature = "postgres")]
pub mod postgres;
#[cfg(feature = "postgres")]
pub mod postgres_claims;
pub mod share;
#[cfg(feature = "sqlite")]
pub mod sqlite_claims;
pub mod tenure;

use std::collections::BTreeMap;

#[cfg(any(feature = "postgres", feature = "mongo", feature = "sqlite"))]
pub use partitions::run_claimed;

/// Without a target that can hold them there is nowhere to keep partition claims.
#[cfg(not(any(feature = "postgres", feature = "mongo", feature = "sqlite")))]
pub async fn run_claimed(
    config: crate::config::ConnectorConfig,
    _: &str,
    _: crate::pipeline::ConnectorControl,
    _: &crate::status::ConnectorHandle,
) -> Result<(), crate::pipeline::ConnectorError> {
    let message = "partition claims need the postgres, mongo or sqlite feature, which this build lacks".into();
    Err(crate::pipeline::ConnectorError::Config { connector: config.id, message })
}

/// A lease as its holder holds it: what the sink fences each commit with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tenure {
    /// The gateway instance that holds it (`--instance-id`).
    pub holder: String,
    /// Grows with each new holder; a commit under an older epoch is refused.
    pub epoch: i64,
}

/// The partitions a gateway holds, each under the epoch it took it with: what the sink
/// fences each commit with when the connector's partitions are shared out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    /// The gateway instance that holds them (`--instance-id`).
    pub holder: String,
    /// Partition -> epoch.
    pub epochs: BTreeMap<u32, i64>,
}

impl Claims {
    /// Whether `partition` is one of them.
    pub fn holds(&self, partition: u32) -> bool {
        self.epochs.contains_key(&partition)
    }

    /// What a batch's fence checks: each partition the batch writes for (operations or
    /// checkpoints), once and in order, with the epoch this gateway holds it under; one it
    /// does not hold gets epoch -1, which no claim has, so the fence refuses the batch.
    pub fn fence_pairs<Op>(&self, batch: &crate::sinks::Batch<Op>) -> Vec<(u32, i64)> {
        let partitions: std::collections::BTreeSet<u32> =
            batch.items.iter().map(crate::sinks::BatchItem::partition).chain(batch.checkpoints.iter().map(|c| c.partition)).collect();
        partitions.into_iter().map(|p| (p, self.epochs.get(&p).copied().unwrap_or(-1))).collect()
    }
}

/// The error of a batch the claims fence refused (the same words on every target).
pub fn fenced_off(holder: &str, connector: &str, partitions: &impl std::fmt::Debug, epochs: &impl std::fmt::Debug) -> String {
    format!(
        "this gateway ({holder}) no longer holds every partition of connector `{connector}` this batch writes for \
         (partitions {partitions:?} under epochs {epochs:?}): another gateway took one over, and nothing of this batch was committed"
    )
}

/// What every commit of a run is fenced with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fence {
    /// The connector's lease (high availability): one holder for every partition.
    Lease(Tenure),
    /// Partition claims (scale-out): the batch's partitions must all still be held.
    Claims(Claims),
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
    #[error("lease store ({database} target {endpoint}): {action}: {cause}")]
    Store { database: &'static str, endpoint: String, action: &'static str, cause: String },
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
