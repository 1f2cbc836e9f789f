//! How a gateway runs its share of a connector whose partitions are shared out among gateways
//! (`lease.scope: partitions`): it keeps its membership alive and its claims renewed, takes
//! free partitions while it holds less than its fair share, and runs the connector on exactly
//! the partitions it holds (every commit fenced with their epochs).
//!
//! A change of the partitions it runs goes through a drain: the run stops reading, commits
//! what it read (as a stop signal does), and only then are surplus partitions handed back and
//! the run started again with the new set, planned from the stored checkpoints. So a partition
//! moves with its checkpoint and nothing but the batch in flight is read twice. A partition
//! found taken by another gateway (this one was paused or cut off past the claims' lifetime)
//! stops the run at once: whatever it had not committed is fenced off and belongs to the new
//! holder.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::Arc,
    time::Duration,
};

use serde_json::json;
use tokio::time::Instant;
use tracing::{info, warn};

use super::{
    Claims, LeaseError,
    share::{self, Decision, View},
};
#[cfg(feature = "postgres")]
use super::postgres_claims::PgClaims;
use crate::{
    config::{ConnectorConfig, LeaseConfig, SinkConfig},
    partition::Partitioner,
    pipeline::{ConnectorControl, ConnectorError, RunContext, run_connector_in},
    status::ConnectorHandle,
    telemetry::ConnectorTelemetry,
};

/// Runs this process's share of `config`'s partitions as instance `instance` until the process
/// or the operator stops it.
pub async fn run_claimed(
    config: ConnectorConfig,
    instance: &str,
    control: ConnectorControl,
    handle: &ConnectorHandle,
) -> Result<(), ConnectorError> {
    let lease = config.lease.clone().expect("run_claimed is given a connector with a lease");
    match &config.sink {
        #[cfg(feature = "postgres")]
        SinkConfig::Postgres(sink) => {
            let (url, schema) = (sink.url.clone(), sink.schema.clone());
            let open: OpenStore<PgClaims> = Box::new(move || Box::pin(PgClaims::open_owned(url.clone(), schema.clone())));
            run_member(config, instance, control, handle, lease, open).await
        }
        #[cfg(feature = "mongo")]
        SinkConfig::Mongo(sink) => {
            use super::mongo_claims::MongoClaims;
            let (url, database) = (sink.url.clone(), sink.database.clone());
            let open: OpenStore<MongoClaims> = Box::new(move || Box::pin(MongoClaims::open_owned(url.clone(), database.clone())));
            run_member(config, instance, control, handle, lease, open).await
        }
        #[cfg(feature = "sqlite")]
        SinkConfig::Sqlite(sink) => {
            use super::sqlite_claims::SqliteClaims;
            let path = sink.path.clone();
            let open: OpenStore<SqliteClaims> = Box::new(move || Box::pin(SqliteClaims::open_owned(path.clone())));
            run_member(config, instance, control, handle, lease, open).await
        }
        other => {
            let message = format!("partition claims are not held in {} targets yet (refused by validation otherwise)", other.key());
            Err(ConnectorError::Config { connector: config.id, message })
        }
    }
}

/// Opens a claims store (again, after a failure).
type OpenStore<S> = Box<dyn Fn() -> std::pin::Pin<Box<dyn Future<Output = Result<S, LeaseError>> + Send>> + Send + Sync>;

async fn run_member<S: ClaimStore>(
    config: ConnectorConfig,
    instance: &str,
    control: ConnectorControl,
    handle: &ConnectorHandle,
    lease: LeaseConfig,
    open: OpenStore<S>,
) -> Result<(), ConnectorError> {
    let every = Duration::from_millis(lease.renew_every_ms);
    let mut member = Member {
        connector: config.id.clone(),
        instance: instance.to_owned(),
        partitions: Partitioner::new(&config.partitioning).count(),
        open,
        lease,
        store: None,
        held: BTreeMap::new(),
        taken_order: BTreeMap::new(),
        takes: 0,
        view: View::default(),
        telemetry: crate::telemetry::for_connector(&config.id),
        handle: handle.clone(),
        store_failing: false,
    };
    // A run that failed for an outage of its target or source is started again after a
    // backoff, the claims renewed meanwhile (as an unleased connector waits out an outage).
    let mut backoff = crate::backoff::Backoff::new(Duration::from_millis(500), Duration::from_secs(30));
    let mut retry_at: Option<Instant> = None;
    loop {
        if control.shutdown.is_cancelled() {
            member.leave().await;
            return Ok(());
        }
        // Settle what this member holds before running anything.
        if member.tick().await.is_ok() {
            match member.decide() {
                Decision::Release(surplus) => member.release(&surplus).await,
                Decision::Take(free) => drop(member.take(&free).await),
                Decision::Steady => {}
            }
        }
        if member.held.is_empty() {
            handle.standby(member.why_idle());
            tokio::select! {
                _ = control.shutdown.cancelled() => {}
                _ = tokio::time::sleep(every) => {}
            }
            continue;
        }

        if let Some(at) = retry_at.filter(|at| *at > Instant::now()) {
            tokio::select! {
                _ = control.shutdown.cancelled() => {}
                _ = tokio::time::sleep_until(at.min(Instant::now() + every)) => {}
            }
            continue;
        }
        handle.starting();
        member.publish();
        let context = RunContext { claims: Some(member.claims()), ..RunContext::default() };
        let run_control = control.child();
        let waited = retry_at.take().is_some();
        let id = &config.id;
        let started = std::sync::atomic::AtomicBool::new(false);
        let run = run_connector_in(config.clone(), context, run_control.clone(), |progress| {
            started.store(true, std::sync::atomic::Ordering::Relaxed);
            if waited {
                info!(connector = %id, "the connector runs again");
            }
            handle.started(progress)
        });
        tokio::pin!(run);
        let mut ticks = tokio::time::interval_at(Instant::now() + every, every);
        let mut stopping = Stopping::No;
        let result = loop {
            let drain_deadline = match stopping {
                Stopping::Draining(deadline) => Some(deadline),
                _ => None,
            };
            tokio::select! {
                result = &mut run => break result,
                _ = async { tokio::time::sleep_until(drain_deadline.expect("guarded")).await }, if drain_deadline.is_some() => {
                    warn!(connector = %member.connector, "draining for a rebalance took longer than the claims' ttl; stopping now (what was not committed is read again)");
                    run_control.abort.cancel();
                    stopping = Stopping::Aborted;
                }
                _ = ticks.tick() => {
                    let Ok(lost) = member.tick().await else { continue };
                    if !lost.is_empty() {
                        warn!(
                            connector = %member.connector,
                            "partition(s) {lost:?} were taken over by another gateway (this one missed renewing them); stopping their run now, \
                             their uncommitted work is fenced off"
                        );
                        run_control.abort.cancel();
                        stopping = Stopping::Aborted;
                        continue;
                    }
                    if stopping != Stopping::No {
                        continue;
                    }
                    let change = match member.decide() {
                        Decision::Steady => false,
                        Decision::Take(free) => member.take(&free).await,
                        Decision::Release(_) => true,
                    };
                    if change {
                        // Drain, then the top of the loop hands back the surplus and starts again.
                        run_control.shutdown.cancel();
                        stopping = Stopping::Draining(Instant::now() + Duration::from_millis(member.lease.ttl_ms));
                    }
                }
            }
        };
        if started.load(std::sync::atomic::Ordering::Relaxed) {
            backoff.reset();
        }
        match result {
            Ok(()) if control.shutdown.is_cancelled() || stopping == Stopping::No => {
                member.leave().await;
                return Ok(());
            }
            Ok(()) => drop(member.telemetry.rebalances.inc()),
            Err(e) => {
                // A run whose commit was fenced lost a partition: that is a handover, not a failure.
                let before = member.held.len();
                let lost_some = matches!(member.tick().await, Ok(lost) if !lost.is_empty()) || member.held.len() < before;
                if !lost_some && stopping == Stopping::No {
                    if let Some(on) = e.outage(&config).filter(|_| !control.shutdown.is_cancelled()) {
                        let delay = backoff.next_delay();
                        warn!(
                            connector = %member.connector,
                            "{e}; waiting for the {} (state waiting_for_{}), its partitions still claimed; trying again in {delay:?}",
                            on.name(),
                            on.name()
                        );
                        handle.waiting(on, e.to_string());
                        retry_at = Some(Instant::now() + delay);
                        continue;
                    }
                    member.leave().await;
                    return Err(e);
                }
                info!(connector = %member.connector, "stopped after a change of partitions: {e}");
                member.telemetry.rebalances.inc();
            }
        }
    }
}

/// Where a run of the held partitions stands while they change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stopping {
    /// Running; no change pending.
    No,
    /// Asked to drain for a change of partitions; aborted if still running at the deadline.
    Draining(Instant),
    /// Aborted (a partition was lost, or the drain outlasted its deadline): ends soon.
    Aborted,
}

/// Where a connector's partition claims and members are kept (the target database), as a
/// member uses it. Each store also gives its sink a fence that checks the claims' epochs in
/// every batch transaction.
pub trait ClaimStore: Send {
    /// One tick: keeps `held.holder`'s membership alive for `ttl_ms`, renews every claim of
    /// `held`, and reads the live members and every claim. Returns the partitions of `held`
    /// still held (renewed) and the view.
    fn tick(&mut self, connector: &str, held: &Claims, ttl_ms: u64) -> impl Future<Output = Result<(Vec<u32>, View), LeaseError>> + Send;
    /// Takes those of `partitions` that are free for `holder` (no claim, expired, handed back,
    /// or `holder`'s own from an earlier run), each under a new epoch; returns what it got.
    fn take(&mut self, connector: &str, holder: &str, partitions: &[u32], ttl_ms: u64) -> impl Future<Output = Result<Vec<Taken>, LeaseError>> + Send;
    /// Hands `released` (partition -> epoch) back at once.
    fn release(&mut self, connector: &str, holder: &str, released: &BTreeMap<u32, i64>) -> impl Future<Output = Result<(), LeaseError>> + Send;
    /// Ends `member`'s heartbeat.
    fn leave(&mut self, connector: &str, member: &str) -> impl Future<Output = Result<(), LeaseError>> + Send;
    /// Statements sent so far (the cost of coordination).
    fn statements(&self) -> u64;
}

/// A partition just taken: its epoch, and for one taken from another gateway, how long ago
/// that gateway last renewed it (its death, as near as the store knows) or handed it back.
#[derive(Debug, Clone, PartialEq)]
pub struct Taken {
    pub partition: u32,
    pub epoch: i64,
    pub since_previous_holder_ms: Option<i64>,
    pub was_released: bool,
}

/// This process as one member of the gateways sharing a connector.
struct Member<S> {
    connector: String,
    instance: String,
    partitions: u32,
    open: OpenStore<S>,
    lease: LeaseConfig,
    store: Option<S>,
    /// Partition -> epoch, of the partitions this process holds.
    held: BTreeMap<u32, i64>,
    /// Partition -> when this process took it (a count of takes): a surplus goes back newest
    /// first. Kept for partitions no longer held, which is harmless (retaken, renumbered).
    taken_order: BTreeMap<u32, u64>,
    takes: u64,
    /// What the store showed at the last tick.
    view: View,
    telemetry: Arc<ConnectorTelemetry>,
    handle: ConnectorHandle,
    /// The last statement against the store failed: warned once until it works again.
    store_failing: bool,
}

impl<S: ClaimStore> Member<S> {
    /// The store, opened if it is not yet; counts the statements it sends.
    async fn with_store<T>(&mut self, act: impl AsyncFnOnce(&mut S) -> Result<T, LeaseError>) -> Result<T, LeaseError> {
        if self.store.is_none() {
            self.store = Some((self.open)().await.inspect_err(|e| self.failed(e))?);
        }
        let store = self.store.as_mut().expect("opened above");
        let before = store.statements();
        let result = act(store).await;
        self.telemetry.coordination_statements.inc_by(store.statements() - before);
        match &result {
            Ok(_) if self.store_failing => {
                self.store_failing = false;
                info!(connector = %self.connector, "the partition claims store answers again");
            }
            Ok(_) => {}
            Err(e) => self.failed(e),
        }
        result
    }

    fn failed(&mut self, e: &LeaseError) {
        if !std::mem::replace(&mut self.store_failing, true) {
            warn!(connector = %self.connector, "{e}; the partitions held go on, every commit still fenced by their claims; retrying");
        }
    }

    /// Heartbeat, renewal and a fresh view. Returns the partitions found lost (taken by
    /// another gateway), which are no longer held.
    async fn tick(&mut self) -> Result<Vec<u32>, LeaseError> {
        let (connector, claims, ttl) = (self.connector.clone(), self.claims(), self.lease.ttl_ms);
        let (still, view) = self.with_store(async |store| store.tick(&connector, &claims, ttl).await).await?;
        let still: BTreeSet<u32> = still.into_iter().collect();
        let lost: Vec<u32> = self.held.keys().copied().filter(|p| !still.contains(p)).collect();
        self.held.retain(|p, _| still.contains(p));
        self.view = view;
        self.publish();
        Ok(lost)
    }

    fn decide(&self) -> Decision {
        let mut held: Vec<u32> = self.held.keys().copied().collect();
        held.sort_by_key(|p| self.taken_order.get(p).copied().unwrap_or(0));
        share::decide(&self.view, &self.instance, self.partitions, &held)
    }

    /// Takes what it can of `free`; true when it got any.
    async fn take(&mut self, free: &[u32]) -> bool {
        let (connector, me, ttl) = (self.connector.clone(), self.instance.clone(), self.lease.ttl_ms);
        let Ok(taken) = self.with_store(async |store| store.take(&connector, &me, free, ttl).await).await else { return false };
        for t in &taken {
            self.held.insert(t.partition, t.epoch);
            self.takes += 1;
            self.taken_order.insert(t.partition, self.takes);
            if let Some(ms) = t.since_previous_holder_ms {
                self.telemetry.partition_handover.observe(ms.max(0) as f64 / 1000.0);
            }
        }
        if !taken.is_empty() {
            let list: Vec<String> = taken.iter().map(|t| format!("{} (epoch {})", t.partition, t.epoch)).collect();
            info!(
                connector = %self.connector,
                "took partition(s) {}; holding {} of {} with {} member(s)",
                list.join(", "),
                self.held.len(),
                self.partitions,
                self.view.members.len().max(1)
            );
        }
        self.publish();
        !taken.is_empty()
    }

    /// Hands `surplus` back (its run has drained).
    async fn release(&mut self, surplus: &[u32]) {
        let released: BTreeMap<u32, i64> = surplus.iter().filter_map(|p| Some((*p, *self.held.get(p)?))).collect();
        let (connector, me) = (self.connector.clone(), self.instance.clone());
        if self.with_store(async |store| store.release(&connector, &me, &released).await).await.is_ok() {
            info!(
                connector = %self.connector,
                "handed back partition(s) {:?} to rebalance: {} member(s) share {} partitions",
                released.keys().collect::<Vec<_>>(),
                self.view.members.len(),
                self.partitions
            );
        }
        // Not running them either way: unreleased, they expire.
        self.held.retain(|p, _| !released.contains_key(p));
        self.publish();
    }

    /// Hands everything back and leaves the members (a clean stop), so the others take over at
    /// once instead of after the ttl.
    async fn leave(&mut self) {
        let (connector, me, held) = (self.connector.clone(), self.instance.clone(), std::mem::take(&mut self.held));
        let left = self
            .with_store(async |store| {
                store.release(&connector, &me, &held).await?;
                store.leave(&connector, &me).await
            })
            .await;
        if let Err(e) = left {
            warn!(connector = %self.connector, "{e}; the other gateways take this one's partitions once its claims expire");
        }
        self.publish();
    }

    fn claims(&self) -> Claims {
        Claims { holder: self.instance.clone(), epochs: self.held.clone() }
    }

    fn why_idle(&self) -> String {
        format!(
            "holds no partition: {} member(s) share {} partition(s) and none is free for this one yet",
            self.view.members.len().max(1),
            self.partitions
        )
    }

    /// Status and metrics: the members, who holds which partition, this one's share.
    fn publish(&self) {
        self.telemetry.partitions_held.set(self.held.len() as i64);
        self.telemetry.claim_members.set(self.view.members.len() as i64);
        let holders: BTreeMap<String, Vec<u32>> = self.view.claims.iter().filter(|c| c.live).fold(BTreeMap::new(), |mut by, c| {
            by.entry(c.holder.clone()).or_default().push(c.partition);
            by
        });
        self.handle.claims(json!({
            "member": self.instance,
            "members": self.view.members,
            "fair_share": share::fair_share(&self.view.members, &self.instance, self.partitions),
            "held": self.held.iter().map(|(p, e)| json!({ "partition": p, "epoch": e })).collect::<Vec<_>>(),
            "holders": holders,
            "rebalances": self.telemetry.rebalances.get(),
        }));
    }
}
