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
    /// The partitions this process runs, when it runs only some (partition claims); `None`:
    /// every partition. The others' positions are what was stored when it started them.
    pub held: Option<Vec<u32>>,
}

impl Progress {
    /// Every event at or below this position is done in every partition this process runs.
    pub fn low_watermark(&self) -> Position {
        self.run_positions().map(|(_, p)| p).min().unwrap_or(0)
    }

    /// (partition, committed position) of each partition this process runs.
    pub fn run_positions(&self) -> impl Iterator<Item = (u32, Position)> + '_ {
        let runs = |p: u32| self.held.as_ref().is_none_or(|held| held.contains(&p));
        self.positions.iter().enumerate().map(|(p, at)| (p as u32, *at)).filter(move |(p, _)| runs(*p))
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
