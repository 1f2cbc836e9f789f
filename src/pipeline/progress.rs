//! What a running connector has done so far, published after every commit. The demo's progress
//! bar, the benchmarks and the tests watch it instead of polling the database.

use tokio::sync::watch;

use crate::event::Position;

/// A snapshot of one connector's progress.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Progress {
    /// Committed position per partition (0 = nothing yet).
    pub positions: Vec<Position>,
    /// Events whose operations were applied (ignored events included).
    pub events_applied: u64,
    /// Operations applied.
    pub ops_applied: u64,
    /// Events parked by the poison policy.
    pub events_parked: u64,
    /// Transactions committed.
    pub batches: u64,
}

impl Progress {
    /// Every event at or below this position is done in every partition.
    pub fn low_watermark(&self) -> Position {
        self.positions.iter().copied().min().unwrap_or(0)
    }
}

/// Sending side, shared by the connector's writers.
pub type ProgressSender = watch::Sender<Progress>;
/// Receiving side, for whoever watches the connector.
pub type ProgressReceiver = watch::Receiver<Progress>;

/// A channel whose first snapshot has `partitions` positions set from the stored checkpoints.
pub fn channel(initial_positions: Vec<Position>) -> (ProgressSender, ProgressReceiver) {
    watch::channel(Progress { positions: initial_positions, ..Default::default() })
}
