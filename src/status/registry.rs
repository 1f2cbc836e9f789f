//! The registry of the connectors a `run` runs, as operators see them: each connector's task
//! tells its handle when it starts, runs, stands by, stops or fails, and hands it its progress
//! channel; the head probe adds the source's head.
//!
//! It exists so that everything that reports on connectors (`/ready`, `/metrics`, `/connectors`,
//! the management API, `run`'s progress output) reads one place that the connector tasks only
//! write to, and so never touches a connector's data path.

use std::sync::Arc;

use parking_lot::Mutex;

use chrono::Utc;
use serde_json::{Value, json};

use crate::{
    event::Position,
    pipeline::{Progress, ProgressReceiver},
    sources::head::Head,
};

/// Where a connector's definition comes from: the config file, or the management API (kept in
/// the definition log of `--state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    File,
    Api,
}

impl Origin {
    fn name(self) -> &'static str {
        match self {
            Self::File => "file",
            Self::Api => "api",
        }
    }
}

/// Where a connector is in its life.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectorState {
    /// Opening its sink, loading its checkpoints.
    Starting,
    /// Reading, reducing and applying.
    Running,
    /// Stopped cleanly (after a stop signal).
    Stopped,
    /// Stopped by an operator through the management API; stays so across restarts.
    Disabled,
    /// Stopped by an error, with the message the operator sees in the log.
    Failed(String),
    /// Waiting to take over a connector whose lease another gateway holds (or that this one
    /// cannot reach); says which.
    Standby(String),
}

impl ConnectorState {
    /// The state as `/connectors` names it (`running`, `standby`, ...).
    pub fn name(&self) -> &'static str {
        match self {
            Self::Starting => "starting",
            Self::Running => "running",
            Self::Stopped => "stopped",
            Self::Disabled => "disabled",
            Self::Failed(_) => "failed",
            Self::Standby(_) => "standby",
        }
    }
}

struct Entry {
    id: String,
    origin: Origin,
    state: ConnectorState,
    progress: Option<ProgressReceiver>,
    /// The source's head at the last probe (see `head_probe::watch_source_head`).
    head: Option<Head>,
}

impl Entry {
    fn snapshot(&self) -> Snapshot {
        Snapshot {
            id: self.id.clone(),
            origin: self.origin,
            state: self.state.clone(),
            progress: self.progress.as_ref().map(|p| p.borrow().clone()),
            head: self.head.clone(),
        }
    }
}

/// What the endpoint reports of one connector at one moment.
#[derive(Debug)]
pub struct Snapshot {
    pub(super) id: String,
    pub(super) origin: Origin,
    pub(super) state: ConnectorState,
    pub(super) progress: Option<Progress>,
    pub(super) head: Option<Head>,
}

impl Snapshot {
    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn state(&self) -> &ConnectorState {
        &self.state
    }

    /// What the connector has committed, once it runs.
    pub fn progress(&self) -> Option<&Progress> {
        self.progress.as_ref()
    }

    /// The source's head at the last probe, when a probe runs and has answered.
    pub fn head(&self) -> Option<&Head> {
        self.head.as_ref()
    }

    /// Positions between the committed low watermark and the source's head.
    pub fn lag_positions(&self) -> Option<u64> {
        Some(self.head.as_ref()?.position.saturating_sub(self.progress.as_ref()?.low_watermark()))
    }

    /// Age of the oldest event not committed yet (0 when there is none).
    pub fn lag_seconds(&self) -> Option<f64> {
        let head = self.head.as_ref()?;
        Some(head.oldest_pending.map_or(0.0, |created| (Utc::now() - created).as_seconds_f64().max(0.0)))
    }

    /// The connector as `/connectors` lists it: id, origin, state (and error), checkpoint,
    /// counters and lag.
    pub fn to_json(&self) -> Value {
        let mut item = json!({ "id": self.id, "origin": self.origin.name(), "state": self.state.name() });
        match &self.state {
            ConnectorState::Failed(error) => item["error"] = json!(error),
            ConnectorState::Standby(why) => item["standby"] = json!(why),
            _ => {}
        }
        if let (Some(head), Some(positions), Some(seconds)) = (&self.head, self.lag_positions(), self.lag_seconds()) {
            item["source"] = json!({ "head": head.position, "lag_positions": positions, "lag_seconds": seconds });
        }
        if let Some(p) = &self.progress {
            item["checkpoint"] = json!({ "low_watermark": p.low_watermark(), "partitions": p.positions });
            item["events_applied"] = json!(p.events_applied);
            item["operations_applied"] = json!(p.ops_applied);
            item["events_parked"] = json!(p.events_parked);
            item["batches_committed"] = json!(p.batches);
        }
        item
    }
}

/// The connectors of this process, as the endpoint reports them.
#[derive(Clone, Default)]
pub struct Connectors {
    entries: Arc<Mutex<Vec<Arc<Mutex<Entry>>>>>,
}

/// One connector's way of telling the registry how it is doing.
#[derive(Clone)]
pub struct ConnectorHandle {
    entry: Arc<Mutex<Entry>>,
}

impl Connectors {
    /// Registers a connector, in state `starting`.
    pub fn add(&self, id: &str, origin: Origin) -> ConnectorHandle {
        let entry = Entry { id: id.to_owned(), origin, state: ConnectorState::Starting, progress: None, head: None };
        let entry = Arc::new(Mutex::new(entry));
        self.entries.lock().push(entry.clone());
        ConnectorHandle { entry }
    }

    /// Forgets a deleted connector.
    pub fn remove(&self, id: &str) {
        self.entries.lock().retain(|e| e.lock().id != id);
    }

    /// Each connector as it is now, in registration order.
    pub fn snapshot(&self) -> Vec<Snapshot> {
        let entries = self.entries.lock();
        entries.iter().map(|e| e.lock().snapshot()).collect()
    }

    /// The connector `id` as it is now.
    pub fn snapshot_of(&self, id: &str) -> Option<Snapshot> {
        let entries = self.entries.lock();
        entries.iter().map(|e| e.lock()).find(|e| e.id == id).map(|e| e.snapshot())
    }
}

impl ConnectorHandle {
    fn entry(&self) -> parking_lot::MutexGuard<'_, Entry> {
        self.entry.lock()
    }

    /// The connector is (re)starting: no progress yet.
    pub fn starting(&self) {
        let mut entry = self.entry();
        entry.state = ConnectorState::Starting;
        entry.progress = None;
        entry.head = None;
    }

    /// The connector loaded its checkpoints and runs; `progress` is its progress channel.
    pub fn started(&self, progress: ProgressReceiver) {
        let mut entry = self.entry();
        entry.state = ConnectorState::Running;
        entry.progress = Some(progress);
    }

    /// The connector ended: cleanly, or with `error`.
    pub fn ended(&self, error: Option<String>) {
        self.entry().state = error.map_or(ConnectorState::Stopped, ConnectorState::Failed);
    }

    /// The connector waits for its lease, for the reason given.
    pub fn standby(&self, why: String) {
        let mut entry = self.entry();
        entry.state = ConnectorState::Standby(why);
        entry.progress = None;
        entry.head = None;
    }

    /// An operator disabled the connector (it has ended).
    pub fn disabled(&self) {
        self.entry().state = ConnectorState::Disabled;
    }

    /// The connector's state now.
    pub fn state(&self) -> ConnectorState {
        self.entry().state.clone()
    }

    /// The connector's state and, once it runs, its committed low watermark.
    pub(super) fn position(&self) -> (ConnectorState, Option<Position>) {
        let entry = self.entry();
        (entry.state.clone(), entry.progress.as_ref().map(|p| p.borrow().low_watermark()))
    }

    pub(super) fn set_head(&self, head: Option<Head>) {
        self.entry().head = head;
    }
}
