//! Owns the connectors of one `run`: starts each one, stops one on request (disable, delete)
//! with the same drain as a stop signal, starts it again (enable), moves its checkpoints while
//! it is stopped (reset), and adds connectors at runtime (create). Every change is first
//! recorded in the definition log (when `--state` is given), so a restarted gateway runs the
//! same set in the same states.
//!
//! One lock serialises the management operations: two operators disabling and enabling the
//! same connector at once see one outcome after the other, never a half-stopped connector.
//!
//! A definition log in PostgreSQL is shared by several gateways (replicas). Each one follows
//! it (`follow`: every `--state-poll-ms`, under the same lock) and applies what the others
//! appended to its own connectors as the API verbs do here. It keeps the sequence number of
//! the last event it applied (`through`); its own appends name it, and the log refuses one
//! made on an older state, so a gateway first applies what it had not seen yet and then
//! records its change on top, or answers 409 when another gateway changed the same connector
//! meanwhile. Its own events are never read back: each moves `through` past itself.
//!
//! - `follower`: following a shared definition log and applying the other gateways' changes.
//! - `run`: running one connector that is not leased (waiting out a dependency at start).

use std::{
    sync::{
        Arc,
        atomic::{AtomicI64, Ordering},
    },
    time::Duration,
};

use serde_json::{Value, json};
use tokio::{sync::Mutex, task::JoinHandle};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument as _, error, info, warn};

use super::{
    ManagementError,
    store::{DefinitionEvent, DefinitionLog, StoreError},
};
mod follower;
mod run;

use follower::gateway_name;
use run::{run_waiting_at_start, stop_at_once_when_stuck};

use crate::{
    checkpoint::CheckpointRow,
    config::{ConnectorConfig, LeaseScope, parse_connector},
    lease,
    pipeline::{ConnectorControl, ResetTo, discard_parked, list_parked, replay_parked, reset_connector},
    sinks::parked::ParkedQuery,
    sources::head,
    status::{ConnectorHandle, ConnectorState, Connectors, Origin, head_probe},
    telemetry,
    traces,
};

/// How the supervisor runs its connectors.
pub struct Settings {
    /// How long a disabled or deleted connector may take to finish what it read.
    pub drain_timeout: Duration,
    /// How often each source is probed for its head, for the lag the operations endpoint and
    /// `run`'s progress output show (`None`: neither is on, no probing).
    pub lag_probe_every: Option<Duration>,
    /// The definition log; without it the management API is read-only.
    pub log: Option<DefinitionLog>,
    /// How often a shared definition log is read for the changes other gateways made
    /// (`--state-poll-ms`).
    pub log_poll_every: Duration,
    /// This gateway's name among those sharing leased connectors (`--instance-id`).
    pub instance_id: String,
    /// A connector that cannot reach its target, source or sidecar at start fails at once
    /// instead of waiting for it (`run --fail-fast`).
    pub fail_fast: bool,
}

/// Why the gateway cannot start from its config file and definition log.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(
        "connector `{0}` is defined in the config file and was also created through the management API \
         (it is in the definition log of --state); delete it through the API or remove it from the file"
    )]
    DefinedTwice(String),
}

/// Where to move a connector's checkpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResetTarget {
    Start,
    /// The source's head now: the connector skips everything already in the log.
    End,
    Position(u64),
}

struct Running {
    control: ConnectorControl,
    task: JoinHandle<()>,
}

struct Slot {
    id: String,
    origin: Origin,
    /// The definition, or why a stored one no longer loads (e.g. an environment variable it
    /// names is not set in this process).
    config: Result<ConnectorConfig, String>,
    enabled: bool,
    handle: ConnectorHandle,
    running: Option<Running>,
    /// The source-head probe, kept while the connector is registered (see `head_probe`).
    probe: Option<JoinHandle<()>>,
    /// What stops a blue/green rebuild started through the API: disabling or deleting the
    /// connector, or the process stopping (it is recorded as building, and resumed by the
    /// connector's next start with `on_new_version: blue_green` or by asking again).
    rebuild: Option<ConnectorControl>,
}

impl Slot {
    fn is_active(&self) -> bool {
        self.running.as_ref().is_some_and(|r| !r.task.is_finished())
    }
}

struct Inner {
    slots: Mutex<Vec<Slot>>,
    /// The sequence number of the last definition-log event applied to `slots` (replayed,
    /// appended here, or followed); changed only while `slots` is locked.
    through: AtomicI64,
    /// The task that follows a shared definition log, and what stops it.
    follower: parking_lot::Mutex<Option<(CancellationToken, JoinHandle<()>)>>,
    registry: Connectors,
    process: ConnectorControl,
    settings: Settings,
}

/// How many times a change is tried on top of what other gateways appended meanwhile before
/// it is refused (each try first applies their changes here).
const RECORD_ATTEMPTS: usize = 5;

/// The connectors of this process and the operations an operator can apply to them.
#[derive(Clone)]
pub struct Supervisor {
    inner: Arc<Inner>,
}

impl Supervisor {
    /// Builds the set of connectors from the file's and the log's definitions and starts every
    /// enabled one. `process` is the process-wide stop (signals); each connector gets a child.
    pub async fn start(
        file: Vec<ConnectorConfig>,
        settings: Settings,
        process: ConnectorControl,
        registry: Connectors,
    ) -> Result<Self, StartError> {
        let replayed = match &settings.log {
            Some(log) => log.replay().await?,
            None => Default::default(),
        };
        if let Some((id, _)) = replayed.created.iter().find(|(id, _)| file.iter().any(|c| c.id == *id)) {
            return Err(StartError::DefinedTwice(id.clone()));
        }
        let from_file = file.into_iter().map(|config| (config.id.clone(), Origin::File, Ok(config)));
        let from_log = replayed.created.into_iter().map(|(id, text)| (id, Origin::Api, load_stored(&text)));
        let mut slots = Vec::new();
        for (id, origin, config) in from_file.chain(from_log) {
            let handle = registry.add(&id, origin);
            let enabled = !replayed.disabled.contains(&id);
            slots.push(Slot { id, origin, config, enabled, handle, running: None, probe: None, rebuild: None });
        }
        let inner = Inner {
            slots: Mutex::new(slots),
            through: AtomicI64::new(replayed.through),
            follower: parking_lot::Mutex::new(None),
            registry,
            process,
            settings,
        };
        let supervisor = Self { inner: Arc::new(inner) };
        let mut slots = supervisor.inner.slots.lock().await;
        for slot in slots.iter_mut() {
            match (&slot.config, slot.enabled) {
                (Err(problem), _) => {
                    error!(connector = %slot.id, "{problem}");
                    slot.handle.ended(Some(problem.clone()));
                }
                (Ok(_), false) => {
                    info!(connector = %slot.id, "disabled through the management API; not starting it");
                    slot.handle.disabled();
                }
                (Ok(_), true) => supervisor.spawn(slot),
            }
        }
        drop(slots);
        if let Some(log) = supervisor.inner.settings.log.as_ref().filter(|log| log.is_shared()) {
            info!(
                "the definition log {} is shared: following the changes other gateways make to it every {:?}",
                log.name(),
                supervisor.inner.settings.log_poll_every
            );
            let stop = supervisor.inner.process.shutdown.child_token();
            let task = tokio::spawn(supervisor.clone().follow(stop.clone()));
            *supervisor.inner.follower.lock() = Some((stop, task));
        }
        Ok(supervisor)
    }

    /// Whether operators can change connectors (a definition log is configured).
    pub fn is_writable(&self) -> bool {
        self.inner.settings.log.is_some()
    }

    /// Whether this gateway follows a definition log other gateways append to.
    pub fn follows_shared_log(&self) -> bool {
        self.inner.follower.lock().is_some()
    }

    /// Runs until the connectors have ended: with `until_signal`, until a stop signal has
    /// ended them (a gateway with a management API serves until then, even with none
    /// running; one that follows a shared log too, as other gateways may give it connectors);
    /// otherwise until every connector has ended. Returns how many failed.
    pub async fn wait(&self, until_signal: bool) -> usize {
        if until_signal || self.follows_shared_log() {
            self.inner.process.shutdown.cancelled().await;
        }
        // Nothing is started after this: the follower would start what it applies.
        let follower = self.inner.follower.lock().take();
        if let Some((stop, task)) = follower {
            stop.cancel();
            let _ = task.await;
        }
        loop {
            let tasks: Vec<(ConnectorHandle, JoinHandle<()>)> = {
                let mut slots = self.inner.slots.lock().await;
                slots.iter_mut().filter_map(|s| Some((s.handle.clone(), s.running.take()?.task))).collect()
            };
            if tasks.is_empty() {
                break;
            }
            for (handle, task) in tasks {
                if let Err(e) = task.await {
                    traces::eprint_line(&format!("error: a connector task panicked: {e}"));
                    handle.ended(Some(format!("the connector task panicked: {e}")));
                }
            }
        }
        let slots = self.inner.slots.lock().await;
        slots.iter().filter(|s| matches!(s.handle.state(), ConnectorState::Failed(_))).count()
    }

    /// Starts the slot's connector in a task of its own.
    fn spawn(&self, slot: &mut Slot) {
        let Ok(config) = slot.config.clone() else { return };
        let control = self.inner.process.child();
        let handle = slot.handle.clone();
        handle.starting();
        if slot.probe.as_ref().is_none_or(|probe| probe.is_finished()) {
            slot.probe = self.inner.settings.lag_probe_every.map(|every| head_probe::watch_source_head(handle.clone(), config.source.clone(), every));
        }
        let id = slot.id.clone();
        info!(connector = %id, "starting");
        let own = control.clone();
        let instance = self.inner.settings.instance_id.clone();
        let fail_fast = self.inner.settings.fail_fast;
        let stuck = tokio::spawn(stop_at_once_when_stuck(control.clone(), id.clone()));
        // Every line logged by the connector's stages carries its id, those of the database
        // clients and sinks included.
        let span = tracing::info_span!("connector", connector = %id);
        let task = tokio::spawn(async move {
            let result = match config.lease.as_ref().map(|l| l.scope) {
                Some(LeaseScope::Partitions) => lease::run_claimed(config, &instance, own, &handle).await,
                Some(LeaseScope::Connector) => lease::tenure::run_leased(config, &instance, own, &handle).await,
                None => run_waiting_at_start(config, own, &handle, fail_fast).await,
            };
            stuck.abort();
            match &result {
                Ok(()) => info!(connector = %id, "stopped"),
                // Once, as a log line with the connector's field (the message names it too).
                Err(e) => error!(connector = %id, "{e}"),
            }
            handle.ended(result.err().map(|e| e.to_string()));
        }.instrument(span));
        slot.running = Some(Running { control, task });
    }

    /// Stops the slot's connector as a stop signal would: it finishes what it read and commits,
    /// or, past the drain timeout, stops at once (uncommitted work is read again later).
    async fn stop(&self, slot: &mut Slot) {
        self.stop_in_background(slot, || {});
        if let Some(Running { task, .. }) = slot.running.take() {
            let _ = task.await;
        }
    }

    /// Asks the slot's connector to stop as [`Supervisor::stop`] does, without waiting: the
    /// slot then holds the stopping, which runs `then` once the connector has ended (at once
    /// when it was not running). A change that needs it stopped waits for it or is refused.
    fn stop_in_background(&self, slot: &mut Slot, then: impl FnOnce() + Send + 'static) {
        let Some(Running { control, mut task }) = slot.running.take() else {
            then();
            return;
        };
        control.shutdown.cancel();
        let (drain, id) = (self.inner.settings.drain_timeout, slot.id.clone());
        let abort = control.abort.clone();
        let stopping = tokio::spawn(async move {
            if tokio::time::timeout(drain, &mut task).await.is_err() {
                warn!(connector = %id, "drain took longer than {drain:?}: stopping now");
                abort.cancel();
                let _ = task.await;
            }
            then();
        });
        slot.running = Some(Running { control, task: stopping });
    }

    /// The slots, once management changes are possible (a definition log exists and the
    /// process is not stopping), with what other gateways appended to a shared log applied.
    async fn writable_slots(&self) -> Result<tokio::sync::MutexGuard<'_, Vec<Slot>>, ManagementError> {
        if self.inner.settings.log.is_none() {
            return Err(ManagementError::ReadOnly);
        }
        let mut slots = self.inner.slots.lock().await;
        if self.inner.process.shutdown.is_cancelled() {
            return Err(ManagementError::Stopping);
        }
        self.catch_up(&mut slots).await.map_err(ManagementError::Store)?;
        Ok(slots)
    }

    /// Records a change decided on `slots` as they are. When another gateway appended to a
    /// shared log since this one last applied it, nothing is recorded: their changes are
    /// applied here first, then the change is recorded on top of them, unless one of them
    /// changed the same connector (the change was decided on a state that is gone: 409).
    async fn record(&self, slots: &mut Vec<Slot>, id: &str, event: DefinitionEvent) -> Result<(), ManagementError> {
        let log = self.inner.settings.log.as_ref().ok_or(ManagementError::ReadOnly)?;
        for _ in 0..RECORD_ATTEMPTS {
            match log.append(id, &event, Some(self.inner.through.load(Ordering::Acquire))).await {
                Ok(seq) => {
                    self.inner.through.store(seq, Ordering::Release);
                    return Ok(());
                }
                Err(StoreError::Behind { .. }) => {
                    let applied = self.catch_up(slots).await.map_err(ManagementError::Store)?;
                    if let Some(other) = applied.iter().rev().find(|logged| logged.connector == id) {
                        return Err(ManagementError::Conflict(format!(
                            "connector `{id}` was {} through {} while this change was being made, so this change was not made; \
                             GET /connectors/{id} shows it now: send the change again if it still applies",
                            other.event.kind(),
                            gateway_name(other)
                        )));
                    }
                }
                Err(e) => return Err(ManagementError::Store(e)),
            }
        }
        Err(ManagementError::Conflict(format!(
            "other gateways kept changing connectors in the shared definition log while this change to `{id}` was being made, \
             so it was not made; try again"
        )))
    }

    /// Adds a connector created through the API (here or through another gateway) and starts
    /// it; one whose definition does not load is reported as failed.
    fn add(&self, slots: &mut Vec<Slot>, id: &str, config: Result<ConnectorConfig, String>) {
        let handle = self.inner.registry.add(id, Origin::Api);
        slots.push(Slot { id: id.to_owned(), origin: Origin::Api, config, enabled: true, handle, running: None, probe: None, rebuild: None });
        let slot = slots.last_mut().expect("just pushed");
        match &slot.config {
            Ok(_) => self.spawn(slot),
            Err(problem) => {
                error!(connector = %id, "{problem}");
                slot.handle.ended(Some(problem.clone()));
            }
        }
    }

    /// Gives the slot a new definition: its connector drains and stops, then starts with it
    /// unless it is disabled.
    async fn replace(&self, slot: &mut Slot, config: Result<ConnectorConfig, String>) {
        self.stop(slot).await;
        if let Some(probe) = slot.probe.take() {
            probe.abort();
        }
        slot.config = config;
        match (&slot.config, slot.enabled) {
            (Ok(_), true) => self.spawn(slot),
            (Ok(_), false) => {}
            (Err(problem), _) => {
                error!(connector = %slot.id, "{problem}");
                slot.handle.ended(Some(problem.clone()));
            }
        }
    }

    /// Stops the connector at `index` (draining) and forgets it.
    async fn remove(&self, slots: &mut Vec<Slot>, index: usize) {
        let slot = &mut slots[index];
        stop_rebuild(slot);
        self.stop(slot).await;
        if let Some(probe) = slot.probe.take() {
            probe.abort();
        }
        let id = slots.remove(index).id;
        self.inner.registry.remove(&id);
        telemetry::forget(&id);
    }

    /// Keeps the slot's connector stopped: it drains in the background and shows `disabled`
    /// once it has stopped, when `done` is logged.
    fn disable_slot(&self, slot: &mut Slot, done: Option<String>) {
        slot.enabled = false;
        stop_rebuild(slot);
        let handle = slot.handle.clone();
        if slot.is_active() {
            handle.stopping();
        }
        let id = slot.id.clone();
        self.stop_in_background(slot, move || {
            handle.disabled();
            if let Some(done) = done {
                info!(connector = %id, "{done}");
            }
        });
    }

    /// Starts the slot's connector from its checkpoints once its previous run (if any) has
    /// ended.
    async fn start_again(&self, slot: &mut Slot) {
        slot.enabled = true;
        if let Some(Running { task, .. }) = slot.running.take() {
            let _ = task.await;
        }
        self.spawn(slot);
    }

    /// After another gateway reset the connector's checkpoints (in the target, so nothing is
    /// left to move here): a run of it here stops and starts again, so it plans from them; one
    /// not running reads them when it starts.
    async fn run_again_after_reset(&self, slot: &mut Slot) {
        if slot.enabled && slot.is_active() {
            self.stop(slot).await;
            self.spawn(slot);
        }
    }

    fn status(&self, id: &str) -> Value {
        self.inner.registry.snapshot_of(id).map_or(Value::Null, |s| s.to_json())
    }

    /// Adds a connector from its definition text (YAML or JSON) and starts it.
    pub async fn create(&self, definition: &str) -> Result<Value, ManagementError> {
        let mut slots = self.writable_slots().await?;
        let config = parse_connector(definition).map_err(ManagementError::Invalid)?;
        if let Some(existing) = slots.iter().find(|s| s.id == config.id) {
            return Err(ManagementError::Conflict(format!(
                "connector `{}` already exists (defined in the {}); choose another id or delete it first",
                config.id,
                if existing.origin == Origin::File { "config file" } else { "management API" }
            )));
        }
        self.record(&mut slots, &config.id, DefinitionEvent::Created { definition: definition.to_owned() }).await?;
        let id = config.id.clone();
        self.add(&mut slots, &id, Ok(config));
        info!(connector = %id, "created through the management API");
        Ok(self.status(&id))
    }

    /// Stops a connector (draining what it read) and keeps it stopped, across restarts too.
    /// Answers at once, with the connector `stopping` if it was running (it shows `disabled`
    /// once it has stopped), or once it has stopped with `wait`; the bool says whether it has.
    pub async fn disable(&self, id: &str, wait: bool) -> Result<(Value, bool), ManagementError> {
        let mut slots = self.writable_slots().await?;
        find(&mut slots, id)?;
        self.record(&mut slots, id, DefinitionEvent::Disabled).await?;
        let slot = find(&mut slots, id)?;
        self.disable_slot(slot, Some("disabled through the management API".into()));
        if wait && let Some(Running { task, .. }) = slot.running.take() {
            let _ = task.await;
        }
        let done = !slot.is_active();
        Ok((self.status(id), done))
    }

    /// Replaces the definition of a connector created through the API; it restarts with it
    /// (draining what it read first) unless it is disabled.
    pub async fn update(&self, id: &str, definition: &str) -> Result<Value, ManagementError> {
        let mut slots = self.writable_slots().await?;
        let config = parse_connector(definition).map_err(ManagementError::Invalid)?;
        if config.id != id {
            return Err(ManagementError::BadRequest(format!(
                "the definition's id is `{}`, the path's `{id}`: an id cannot change (create the connector under the new id, then delete this one)",
                config.id
            )));
        }
        if find(&mut slots, id)?.origin == Origin::File {
            return Err(ManagementError::Conflict(format!(
                "connector `{id}` is defined in the config file; change it there and restart the gateway"
            )));
        }
        self.record(&mut slots, id, DefinitionEvent::Updated { definition: definition.to_owned() }).await?;
        let slot = find(&mut slots, id)?;
        self.replace(slot, Ok(config)).await;
        info!(connector = %id, "definition replaced through the management API{}", if slot.enabled { "; restarted" } else { "" });
        Ok(self.status(id))
    }

    /// Checks a definition as `create` would, changing nothing.
    pub fn validate(&self, definition: &str) -> Result<Value, ManagementError> {
        let config = parse_connector(definition).map_err(ManagementError::Invalid)?;
        Ok(json!({
            "valid": true,
            "id": config.id,
            "source": config.source.key(),
            "sink": config.sink.key(),
            "mode": if config.sidecar.is_some() { "projector" } else { "producer" },
        }))
    }

    /// Starts a disabled, stopped or failed connector again from its checkpoints; a running
    /// one is left as it is.
    pub async fn enable(&self, id: &str) -> Result<Value, ManagementError> {
        let mut slots = self.writable_slots().await?;
        let slot = find(&mut slots, id)?;
        if let Err(problem) = &slot.config {
            return Err(ManagementError::Conflict(format!("connector `{id}` cannot start: {problem}; delete it and create it again")));
        }
        if !slot.is_active() {
            self.record(&mut slots, id, DefinitionEvent::Enabled).await?;
            self.start_again(find(&mut slots, id)?).await;
            info!(connector = %id, "enabled through the management API");
        }
        Ok(self.status(id))
    }

    /// Moves the checkpoints of a connector that is not running; answers what they were and
    /// what they are now.
    pub async fn reset(&self, id: &str, to: ResetTarget) -> Result<Value, ManagementError> {
        let mut slots = self.writable_slots().await?;
        let slot = find(&mut slots, id)?;
        if slot.is_active() {
            let now = if slot.enabled { "is running; disable it first (POST /connectors/{id}/disable)" } else { "is still stopping; try again once its state is `disabled`" };
            return Err(ManagementError::Conflict(format!("connector `{id}` {}, reset it, then enable it", now.replace("{id}", id))));
        }
        let config = slot.config.clone().map_err(|problem| ManagementError::Conflict(format!("connector `{id}`: {problem}")))?;
        let position = match to {
            ResetTarget::Start => 0,
            ResetTarget::Position(position) => position,
            ResetTarget::End => source_head(&config).await?,
        };
        let outcome = reset_connector(config, if position == 0 { ResetTo::Start } else { ResetTo::Position(position) })
            .await
            .map_err(|e| ManagementError::Failed(e.to_string()))?;
        self.record(&mut slots, id, DefinitionEvent::Reset { to: if position == 0 { "start".into() } else { position.to_string() } }).await?;
        let mut positions = outcome.after.clone();
        positions.sort_by_key(|r| r.partition);
        find(&mut slots, id)?.handle.checkpoints_moved(positions.iter().map(|r| r.position).collect());
        info!(connector = %id, position, "checkpoints reset through the management API");
        let rows = |rows: &[CheckpointRow]| -> Vec<Value> {
            rows.iter().map(|r| json!({ "partition": r.partition, "partition_count": r.partition_count, "position": r.position })).collect()
        };
        Ok(json!({
            "id": id,
            "resumes_after": position,
            "checkpoints_before": rows(&outcome.before),
            "checkpoints_after": rows(&outcome.after),
            "note": "the read model was not cleared: events after this position are applied again when the connector is enabled",
        }))
    }

    /// Stops a connector created through the API and forgets it; its checkpoints and read
    /// model stay in the target.
    pub async fn delete(&self, id: &str) -> Result<Value, ManagementError> {
        let mut slots = self.writable_slots().await?;
        if find(&mut slots, id)?.origin == Origin::File {
            return Err(ManagementError::Conflict(format!(
                "connector `{id}` is defined in the config file; remove it there (or disable it here)"
            )));
        }
        self.record(&mut slots, id, DefinitionEvent::Deleted).await?;
        let index = slots.iter().position(|s| s.id == id).ok_or_else(|| ManagementError::NotFound(id.to_owned()))?;
        self.remove(&mut slots, index).await;
        info!(connector = %id, "deleted through the management API");
        Ok(json!({ "id": id, "deleted": true, "note": "its checkpoints and read model were left in the target" }))
    }

    /// The connector's configuration, when it has a usable one.
    async fn config_of(&self, id: &str) -> Result<ConnectorConfig, ManagementError> {
        let slots = self.inner.slots.lock().await;
        let slot = slots.iter().find(|s| s.id == id).ok_or_else(|| ManagementError::NotFound(id.to_owned()))?;
        slot.config.clone().map_err(|problem| ManagementError::Conflict(format!("connector `{id}`: {problem}")))
    }

    /// The connector's parked events `query` selects, from its target.
    pub async fn parked(&self, id: &str, query: ParkedQuery) -> Result<Value, ManagementError> {
        let config = self.config_of(id).await?;
        let limit = query.limit;
        let events = list_parked(config, query).await.map_err(|e| ManagementError::Failed(e.to_string()))?;
        let mut body = json!({ "id": id, "count": events.len(), "parked": events });
        if limit > 0 && events.len() == limit {
            body["note"] = json!(format!("the first {limit}: ask with a filter or a higher `limit` (0: all)"));
        }
        Ok(body)
    }

    /// One parked event of the connector, payload included.
    pub async fn parked_event(&self, id: &str, record: &str) -> Result<Value, ManagementError> {
        let config = self.config_of(id).await?;
        let query = ParkedQuery { ids: vec![record.to_owned()], ..Default::default() };
        let events = list_parked(config, query).await.map_err(|e| ManagementError::Failed(e.to_string()))?;
        let event = events.into_iter().next().ok_or_else(|| ManagementError::NoParkedEvent { connector: id.to_owned(), id: record.to_owned() })?;
        Ok(json!(event))
    }

    /// Deletes the connector's parked events with these record ids from its target.
    pub async fn discard_parked(&self, id: &str, records: Vec<String>) -> Result<Value, ManagementError> {
        let config = self.config_of(id).await?;
        let asked = records.len();
        let discarded = discard_parked(config, records.clone()).await.map_err(|e| ManagementError::Failed(e.to_string()))?;
        telemetry::for_connector(id).parked.dec_by(discarded as i64);
        let by = super::definition::CHANGED_BY.try_with(String::clone).unwrap_or_else(|_| "anyone".into());
        info!(connector = %id, discarded, ids = ?records, by = %by, "parked events discarded through the management API");
        Ok(json!({ "id": id, "asked": asked, "discarded": discarded }))
    }

    /// Replays the connector's parked events with these record ids through its sidecar.
    pub async fn replay_parked(&self, id: &str, records: Vec<String>) -> Result<Value, ManagementError> {
        let config = self.config_of(id).await?;
        let outcome = replay_parked(config, records.clone()).await.map_err(|e| ManagementError::Failed(e.to_string()))?;
        telemetry::for_connector(id).parked.dec_by(outcome.applied.len() as i64);
        let by = super::definition::CHANGED_BY.try_with(String::clone).unwrap_or_else(|_| "anyone".into());
        info!(
            connector = %id,
            applied = outcome.applied.len(),
            parked_again = outcome.parked_again.len(),
            not_replayed = outcome.not_replayed.len(),
            by = %by,
            "parked events replayed through the management API"
        );
        let mut body = json!(outcome);
        body["id"] = json!(id);
        Ok(body)
    }

    /// Every change recorded for a connector, oldest first.
    pub async fn history(&self, id: &str) -> Result<Value, ManagementError> {
        let log = self.inner.settings.log.as_ref().ok_or(ManagementError::ReadOnly)?;
        let history = log.history(id).await.map_err(ManagementError::Store)?;
        if history.is_empty() && self.inner.registry.snapshot_of(id).is_none() {
            return Err(ManagementError::NotFound(id.to_owned()));
        }
        Ok(Value::Array(history))
    }

    /// The connector's status, as `/connectors` lists it.
    pub fn get(&self, id: &str) -> Result<Value, ManagementError> {
        self.inner.registry.snapshot_of(id).map(|s| s.to_json()).ok_or_else(|| ManagementError::NotFound(id.to_owned()))
    }

    /// Starts a blue/green rebuild of the connector's read model (`pipeline/blue_green.rs`) at
    /// the sidecar `sidecar` names (else the configured one): built beside the live version,
    /// swapped in once caught up. Answers at once; the rebuild's progress is in the connector's
    /// status (`rebuild`). A rebuild already running is a conflict.
    pub async fn rebuild(&self, id: &str, sidecar: Option<String>) -> Result<Value, ManagementError> {
        let config = self.config_of(id).await?;
        if let Some(report) = crate::pipeline::rebuild_report(id).filter(|r| r.state == "building" || r.state == "swapping") {
            return Err(ManagementError::Conflict(format!(
                "connector `{id}`: a rebuild to version {} is already {}; its progress is in GET /connectors/{id}",
                report.version, report.state
            )));
        }
        if !matches!(
            config.sink,
            crate::config::SinkConfig::Sqlite(_)
                | crate::config::SinkConfig::Postgres(_)
                | crate::config::SinkConfig::Elastic(_)
                | crate::config::SinkConfig::Mongo(_)
        ) {
            return Err(ManagementError::Conflict(format!(
                "connector `{id}`: blue/green rebuild is not available for the {} sink yet (sqlite, postgres, elastic and mongo have it; SQL Server and Redis not yet)",
                config.sink.key()
            )));
        }
        let by = super::definition::CHANGED_BY.try_with(String::clone).unwrap_or_else(|_| "anyone".into());
        info!(connector = %id, by = %by, sidecar = ?sidecar, "blue/green rebuild started through the management API");
        let request = crate::pipeline::RebuildRequest { sidecar: sidecar.clone(), automatic: false };
        // The rebuild records itself in the target as it goes: stopped (with the process, or
        // by a disable or delete of the connector), it is resumed by the next start of a
        // connector with `on_new_version: blue_green`, or by asking again.
        let control = self.inner.process.child();
        if let Some(slot) = self.inner.slots.lock().await.iter_mut().find(|s| s.id == id) {
            stop_rebuild(slot);
            slot.rebuild = Some(control.clone());
        }
        let connector = id.to_owned();
        tokio::spawn(async move {
            match crate::pipeline::rebuild(config, request, control).await {
                Ok(outcome) => info!(connector = %connector, "blue/green rebuild through the management API ended: {outcome:?}"),
                Err(e) => tracing::error!(connector = %connector, "{e}"),
            }
        });
        Ok(json!({ "id": id, "rebuild": "started", "sidecar": sidecar, "note": format!("progress: GET /connectors/{id} (`rebuild`)") }))
    }
}

/// Stops the slot's API-started rebuild, if one runs (it ends as `stopped`, resumable).
fn stop_rebuild(slot: &mut Slot) {
    if let Some(control) = slot.rebuild.take() {
        control.shutdown.cancel();
    }
}

/// A stored definition as a connector's configuration, or why it no longer loads (e.g. an
/// environment variable it names is not set in this process).
fn load_stored(text: &str) -> Result<ConnectorConfig, String> {
    parse_connector(text).map_err(|problems| {
        let problems: Vec<String> = problems.iter().map(ToString::to_string).collect();
        format!("its stored definition no longer loads: {}", problems.join("; "))
    })
}

fn find<'a>(slots: &'a mut [Slot], id: &str) -> Result<&'a mut Slot, ManagementError> {
    slots.iter_mut().find(|s| s.id == id).ok_or_else(|| ManagementError::NotFound(id.to_owned()))
}

/// The last position of the connector's source now.
async fn source_head(config: &ConnectorConfig) -> Result<u64, ManagementError> {
    let failed = |e: crate::sources::SourceError| ManagementError::Failed(format!("reading the source's head failed: {e}"));
    match head::open(&config.source).await.map_err(failed)? {
        Some(mut probe) => Ok(probe.head(0).await.map_err(failed)?.position),
        None => Err(ManagementError::BadRequest(format!(
            "connector `{}`: its source cannot tell its head, so `end` is not available; give a position instead",
            config.id
        ))),
    }
}
