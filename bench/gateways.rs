//! Several gateways on one connector (`lease.scope: partitions`), for the `scale-gateways-<N>`
//! and `failover` scenarios. Each gateway is a member running [`run_claimed`] in this process
//! under its own instance id, with its own sidecar (as a pod of gateway + sidecar is), against
//! one PostgreSQL target holding the claims. Killing a gateway is aborting its task: its
//! connections close without a word (no hand-back, no leave), as with `kill -9`.
//!
//! - `scale-gateways-<N>`: N gateways, each with one latency-bound replica (`replicas.rs`), share
//!   16 partitions. The claims are taken for them before the clock starts (partition `p` to
//!   gateway `p % N`), so the figure is the steady state, not the first rebalance.
//! - `failover`: 4 gateways, 64 partitions, events appended at a steady rate throughout. Ten
//!   times: a gateway is killed, and the time until every one of its partitions has committed
//!   under another gateway is measured; then a new gateway joins, and the time until it has
//!   committed on its whole share is measured. The statements the members send to the claims
//!   store are counted over a quiet stretch (the cost of coordination).

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use projector_gateway::{
    config::{ConnectorConfig, LeaseConfig, LeaseScope, SinkConfig},
    demo::BookingsGenerator,
    lease::{partitions::ClaimStore, postgres_claims::PgClaims, run_claimed},
    pipeline::{ConnectorControl, ConnectorError},
    sources::sqlite::EventLog,
    status::{Connectors, Origin},
};
use tokio::task::JoinHandle;
use tokio_postgres::Client;

use crate::scenarios::{Outcome, cpu_seconds};

/// How long a claim lasts without renewal, and how often members renew (short, to measure).
const TTL_MS: u64 = 2_000;
const RENEW_EVERY_MS: u64 = 250;

/// One gateway: a member task.
struct Member {
    name: String,
    control: ConnectorControl,
    task: JoinHandle<Result<(), ConnectorError>>,
}

impl Member {
    fn start(mut config: ConnectorConfig, name: String) -> Self {
        config.lease = Some(LeaseConfig { scope: LeaseScope::Partitions, ttl_ms: TTL_MS, renew_every_ms: RENEW_EVERY_MS });
        let control = ConnectorControl::default();
        let handle = Connectors::default().add(&config.id, Origin::File);
        let (own, member) = (control.clone(), name.clone());
        let task = tokio::spawn(async move { run_claimed(config, &member, own, &handle).await });
        Self { name, control, task }
    }

    /// `kill -9`: the task and every connection it holds go at once.
    fn kill(self) {
        self.task.abort();
    }

    async fn stop(self) -> anyhow::Result<()> {
        self.control.shutdown.cancel();
        self.task.await??;
        Ok(())
    }
}

/// The target's claims and checkpoints, as the harness reads them.
struct Target {
    client: Client,
    connector: String,
    partitions: i32,
}

impl Target {
    async fn open(config: &ConnectorConfig) -> anyhow::Result<(Self, String)> {
        let SinkConfig::Postgres(sink) = &config.sink else { bail!("the gateway scenarios need the postgres target") };
        let client = crate::pg::connect(&sink.url).await?;
        let partitions = config.partitioning.count as i32;
        Ok((Self { client, connector: config.id.clone(), partitions }, sink.url.clone()))
    }

    /// Live claims: partition -> holder.
    async fn holders(&self) -> anyhow::Result<BTreeMap<i32, String>> {
        let rows = self
            .client
            .query(
                "SELECT partition, holder FROM public.gateway_claims WHERE connector = $1 AND expires_at > now() AND NOT released",
                &[&self.connector],
            )
            .await?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    /// Committed position per partition.
    async fn positions(&self) -> anyhow::Result<BTreeMap<i32, i64>> {
        let rows = self
            .client
            .query(
                r#"SELECT "partition", position FROM public.checkpoints WHERE connector = $1 AND partition_count = $2"#,
                &[&self.connector, &self.partitions],
            )
            .await?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    /// Waits until every partition has committed `head`.
    async fn wait_for(&self, head: u64, members: &mut [Member]) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(3600);
        loop {
            let positions = self.positions().await?;
            if positions.len() == self.partitions as usize && positions.values().all(|p| *p as u64 >= head) {
                return Ok(());
            }
            if let Some(ended) = members.iter_mut().find(|m| m.task.is_finished()) {
                bail!("gateway {} stopped before position {head} was committed", ended.name);
            }
            if Instant::now() > deadline {
                bail!("position {head} not committed within an hour");
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Waits until `names` hold every partition, each exactly its fair share.
    async fn settled(&self, names: &[String]) -> anyhow::Result<BTreeMap<String, BTreeSet<i32>>> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let mut by: BTreeMap<String, BTreeSet<i32>> = names.iter().map(|n| (n.clone(), BTreeSet::new())).collect();
            let holders = self.holders().await?;
            for (partition, holder) in &holders {
                by.entry(holder.clone()).or_default().insert(*partition);
            }
            let sizes: Vec<usize> = by.values().map(BTreeSet::len).collect();
            let fair = sizes.iter().max().unwrap_or(&0) - sizes.iter().min().unwrap_or(&0) <= 1;
            if holders.len() == self.partitions as usize && by.len() == names.len() && fair {
                return Ok(by);
            }
            if Instant::now() > deadline {
                bail!("{names:?} did not settle within 60 s: {by:?}");
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Waits until every partition of `partitions` is held by `holder` (or, with `None`, by
    /// anyone but `not`) and has committed past where it was when that was first seen.
    /// Returns when that was true of the last of them.
    async fn committed_under(&self, partitions: &BTreeSet<i32>, holder: Option<&str>, not: &str) -> anyhow::Result<Instant> {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut taken_at: BTreeMap<i32, i64> = BTreeMap::new();
        let mut done: BTreeSet<i32> = BTreeSet::new();
        loop {
            let (holders, positions) = (self.holders().await?, self.positions().await?);
            for p in partitions {
                let Some(h) = holders.get(p) else { continue };
                if h == not || holder.is_some_and(|wanted| wanted != h) {
                    continue;
                }
                let position = positions.get(p).copied().unwrap_or(0);
                let from = *taken_at.entry(*p).or_insert(position);
                if position > from {
                    done.insert(*p);
                }
            }
            if done.len() == partitions.len() {
                return Ok(Instant::now());
            }
            if Instant::now() > deadline {
                bail!("partitions {:?} did not commit under a new holder within 60 s", partitions.difference(&done).collect::<Vec<_>>());
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

/// `scale-gateways-<N>`: `configs[i]` is gateway i's connector (its own sidecar).
pub async fn scale(configs: Vec<ConnectorConfig>, head: u64) -> anyhow::Result<Outcome> {
    let (target, url) = Target::open(&configs[0]).await?;
    let n = configs.len();
    let mut store = PgClaims::open(&url, "public").await?;
    for i in 0..n {
        let share: Vec<u32> = (0..target.partitions as u32).filter(|p| *p as usize % n == i).collect();
        let taken = store.take(&target.connector, &format!("gateway-{i}"), &share, 60_000).await?;
        anyhow::ensure!(taken.len() == share.len(), "could not take gateway-{i}'s share before the clock");
    }
    let (started, cpu) = (Instant::now(), cpu_seconds());
    let mut members: Vec<Member> = configs.into_iter().enumerate().map(|(i, c)| Member::start(c, format!("gateway-{i}"))).collect();
    target.wait_for(head, &mut members).await?;
    let seconds = started.elapsed().as_secs_f64();
    let cpu_seconds = cpu_seconds() - cpu;
    for member in members {
        member.stop().await?;
    }
    Ok(Outcome { events: head, seconds, cpu_seconds, gateways: n, ..Default::default() })
}

/// `failover`: ten kills and ten joins of four gateways on `config` (64 partitions), with
/// events appended at `rate` per second to `log` throughout.
pub async fn failover(config: ConnectorConfig, log: std::path::PathBuf, rate: u64) -> anyhow::Result<Outcome> {
    let (target, url) = Target::open(&config).await?;
    let began = Instant::now();
    // The claims tables, created before the harness reads them.
    PgClaims::open(&url, "public").await?;
    let stop = Arc::new(AtomicBool::new(false));
    let appender = {
        let stop = stop.clone();
        std::thread::spawn(move || -> anyhow::Result<u64> {
            let mut log = EventLog::open(&log)?;
            let mut generator = BookingsGenerator::new(99, 2_000);
            let every = Duration::from_secs_f64(10.0 / rate as f64);
            let mut appended = 0;
            let start = Instant::now();
            while !stop.load(Ordering::Relaxed) {
                log.append(&generator.take(10))?;
                appended += 10;
                if let Some(wait) = (start + every * (appended / 10) as u32).checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
            }
            Ok(appended)
        })
    };
    let mut names: Vec<String> = (0..4).map(|i| format!("gateway-{i}")).collect();
    let mut members: Vec<Member> = names.iter().map(|n| Member::start(config.clone(), n.clone())).collect();
    target.settled(&names).await.context("the first four gateways")?;

    // The cost of coordination, over a quiet stretch of settled members.
    let telemetry = projector_gateway::telemetry::for_connector(&config.id);
    let (before, since) = (telemetry.coordination_statements.get(), Instant::now());
    tokio::time::sleep(Duration::from_secs(5)).await;
    let statements_per_s = (telemetry.coordination_statements.get() - before) as f64 / since.elapsed().as_secs_f64();

    let (mut failover_ms, mut join_ms) = (Vec::new(), Vec::new());
    for round in 0..10 {
        let holdings = target.settled(&names).await.with_context(|| format!("round {round}"))?;
        let victim = members.remove(round % members.len());
        let orphaned = holdings[&victim.name].clone();
        names.retain(|n| *n != victim.name);
        let killed_at = Instant::now();
        let dead = victim.name.clone();
        victim.kill();
        let done = target.committed_under(&orphaned, None, &dead).await.with_context(|| format!("failover of {dead}"))?;
        failover_ms.push(done.duration_since(killed_at).as_secs_f64() * 1000.0);

        // A new gateway joins: time until it committed on its whole share.
        let name = format!("gateway-r{round}");
        let joined_at = Instant::now();
        members.push(Member::start(config.clone(), name.clone()));
        names.push(name.clone());
        names.sort();
        let holdings = target.settled(&names).await.with_context(|| format!("{name} joining"))?;
        let done = target.committed_under(&holdings[&name], Some(&name), "").await.with_context(|| format!("{name} committing"))?;
        join_ms.push(done.duration_since(joined_at).as_secs_f64() * 1000.0);
    }
    stop.store(true, Ordering::Relaxed);
    let appended = appender.join().map_err(|_| anyhow::anyhow!("the appender panicked"))??;
    for member in members {
        member.stop().await?;
    }
    Ok(Outcome {
        events: appended,
        seconds: began.elapsed().as_secs_f64(),
        failover_ms,
        join_ms,
        coordination_statements_per_s: statements_per_s,
        gateways: 4,
        ..Default::default()
    })
}

/// The p-th percentile (nearest rank) of `samples`.
pub fn percentile(samples: &[f64], p: f64) -> f64 {
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize;
    sorted[rank.min(sorted.len()) - 1]
}
