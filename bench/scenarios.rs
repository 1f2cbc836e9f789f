//! One scenario, measured inside its own process (the orchestrator re-executes this binary
//! with `scenario ...`), so that peak RSS and allocator state belong to that scenario alone.
//! Each prints one `RESULT {json}` line on stdout.
//!
//! - `pipeline`: the real connector (`run_connector`, or `run_with_sink` with the [`NullSink`])
//!   reading a SQLite event log, talking to the Rust example reducer served in-process over
//!   loopback gRPC, writing to SQLite or PostgreSQL. Timed from start until every partition's
//!   committed position reaches the log's head. With `--replicas N` the connector talks to N
//!   latency-bound replicas of the reducer instead (`sidecar.addresses`, `replicas.rs`).
//! - `raw-sink`: the same operations applied by the same sink writers, without gRPC: every
//!   event is reduced by calling the reducer function directly and decoded by the sink
//!   beforehand (untimed); the batches are cut as the writers cut them under load (up to
//!   `max_ops` operations, partition `p` on writer `p % writers`); only the writers' `apply`
//!   is timed.
//! - `raw-sink` on the elastic targets: the same, but the timed part is the sink's bare `_bulk`
//!   requests (`ElasticSink::raw_bulk`: same client, same request bodies, no checkpoints).
//! - `raw-sink` on the mongo target: the same, but the timed part is the driver alone sending
//!   the operations as ordered write commands with the checkpoint write (`mongo::raw_bulk`).
//! - `raw-sink` on the redis target: the same, the client alone sending each batch's commands
//!   and checkpoint HSET as one MULTI/EXEC (`redis::raw_multi_exec`).
//! - `live`: catch up a small log, then append single events at a fixed rate from another
//!   thread (in-process, which wakes the source) and time each append until its partition's
//!   committed position passes it.

use std::{
    collections::VecDeque,
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use projector_gateway::{
    backoff::Backoff,
    config::{self, ConnectorConfig, SinkConfig, SourceConfig},
    demo::BookingsGenerator,
    event::Event,
    partition::Partitioner,
    pipeline::{ConnectorControl, ConnectorError, Progress, ProgressReceiver, RunContext, run_connector_in, run_with_sink},
    reducer::build_request,
    sinks::{Batch, BatchItem, EventRef, Sink, SinkWriter, sql::SqlOp},
    sources::sqlite::{EventLog, SqliteSource},
};
use prost::Message;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::{net::TcpListener, sync::oneshot, task::JoinHandle};
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

use crate::{
    elastic::ScratchIndices,
    mongo::ScratchMongo,
    null_sink::NullSink,
    pg::ScratchDatabase,
    redis::ScratchRedis,
    replicas::{ReplicaLoad, Replicas},
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Kind {
    Pipeline,
    RawSink,
    Live,
    /// Gateways killed and joining on a connector whose partitions they share (`gateways.rs`).
    Failover,
    /// A blue/green rebuild beside a live connector (`blue_green.rs`).
    BlueGreen,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Target {
    Sqlite,
    Postgres,
    /// Decode the operations and apply nothing (pipeline only).
    Null,
    /// Elasticsearch/OpenSearch, projector: the bookings reducer's document operations.
    Elastic,
    /// Elasticsearch/OpenSearch, producer: every event indexed as a document, no sidecar.
    ElasticProducer,
    /// A MongoDB-wire server: the bookings reducer's MongoDB upserts (`REDUCER_TARGET=mongo`).
    Mongo,
    /// Redis: the bookings read model as hashes, counters and streams
    /// (`tests/it/support/redis_bookings.rs`).
    Redis,
}

/// What one scenario runs; also usable by hand: `pipeline scenario --help`.
#[derive(Debug, Clone, Args)]
pub struct ScenarioArgs {
    #[arg(long)]
    pub name: String,
    #[arg(long, value_enum)]
    pub kind: Kind,
    #[arg(long, value_enum)]
    pub target: Target,
    /// The SQLite event log to read (for `live`, created here).
    #[arg(long)]
    pub log: PathBuf,
    /// Scratch folder for the SQLite target.
    #[arg(long)]
    pub dir: PathBuf,
    /// Admin URL of the PostgreSQL server; a fresh database is created on it and dropped after.
    #[arg(long)]
    pub pg_url: Option<String>,
    /// URL of the search engine (scripts/elastic.sh); indices of the scenario's own are created
    /// on it and deleted after.
    #[arg(long)]
    pub elastic_url: Option<String>,
    /// URL of a MongoDB-wire server (scripts/mongo.sh); a database of the scenario's own is
    /// created on it and dropped after.
    #[arg(long)]
    pub mongo_url: Option<String>,
    /// URL of a Redis server (scripts/redis.sh); the scenario writes under a key prefix of
    /// its own, deleted after.
    #[arg(long)]
    pub redis_url: Option<String>,
    #[arg(long, default_value_t = 16)]
    pub partitions: u32,
    /// Reducer credit window per partition.
    #[arg(long, default_value_t = 256)]
    pub window: usize,
    #[arg(long, default_value_t = 500)]
    pub max_ops: usize,
    #[arg(long, default_value_t = 0)]
    pub max_wait_ms: u64,
    /// `sink.postgres.writers`.
    #[arg(long, default_value_t = 4)]
    pub writers: usize,
    /// SQL run on the SQLite target before the read model's schema (e.g. `PRAGMA cache_size =
    /// -65536;`), to try target settings.
    #[arg(long, default_value = "")]
    pub sqlite_init: String,
    #[arg(long, default_value_t = 1000)]
    pub live_rate: u64,
    #[arg(long, default_value_t = 5)]
    pub live_seconds: u64,
    /// Export the gateway's trace spans over OTLP to a collector in this process, keeping this
    /// share of traces (1 = every event's and batch's span).
    #[arg(long)]
    pub traces: Option<f64>,
    /// PostgreSQL target: run under a lease taken before the clock starts, so every batch
    /// transaction is fenced by it (high availability).
    #[arg(long, action = clap::ArgAction::Set, default_value_t = false)]
    pub leased: bool,
    /// Pipeline only: talk to this many latency-bound replicas of the SQL reducer
    /// (`sidecar.addresses`, `bench/replicas.rs`) instead of one plain reducer.
    #[arg(long, default_value_t = 0)]
    pub replicas: usize,
    /// Pipeline only, PostgreSQL target: this many gateways share the connector's partitions
    /// (`lease.scope: partitions`), each with one of the `--replicas` (`bench/gateways.rs`).
    #[arg(long, default_value_t = 0)]
    pub gateways: usize,
}

/// What a scenario reports.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Outcome {
    /// Events of the log covered (the throughput is per log event).
    pub events: u64,
    /// Events sent to the reducer and applied (the types the reducer handles).
    #[serde(default)]
    pub applied: u64,
    pub ops: u64,
    pub seconds: f64,
    pub transactions: u64,
    pub peak_rss_kb: u64,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub max_ms: Option<f64>,
    /// Batches applied again after a transient failure (raw-sink only).
    #[serde(default)]
    pub retries: u64,
    /// CPU time (user + system, all threads) of this process during `seconds`.
    #[serde(default)]
    pub cpu_seconds: f64,
    /// Time spent preparing (raw-sink: reading, reducing and decoding), not in `seconds`.
    pub setup_seconds: f64,
    /// Trace spans the collector received (`--traces` only).
    #[serde(default)]
    pub spans: u64,
    /// What each latency-bound replica did (`--replicas` only).
    #[serde(default)]
    pub replicas: Vec<ReplicaLoad>,
    /// Gateways sharing the connector (`--gateways`, `failover`).
    #[serde(default)]
    pub gateways: usize,
    /// `failover`: per kill, from the kill to every orphaned partition committing elsewhere.
    #[serde(default)]
    pub failover_ms: Vec<f64>,
    /// `failover`: per join, from the start of the new gateway to its share committing.
    #[serde(default)]
    pub join_ms: Vec<f64>,
    /// `failover`: statements per second the members sent to the claims store, settled.
    #[serde(default)]
    pub coordination_statements_per_s: f64,
    /// The `blue-green` scenario's own figures.
    #[serde(default)]
    pub blue_green: Option<crate::blue_green::Figures>,
}

impl Outcome {
    pub fn events_per_s(&self) -> f64 {
        if self.seconds > 0.0 { self.events as f64 / self.seconds } else { 0.0 }
    }
}

pub async fn run(args: ScenarioArgs) -> anyhow::Result<Outcome> {
    let scratch = match args.target {
        Target::Postgres => {
            let url = args.pg_url.as_deref().context("--pg-url is required for --target postgres")?;
            Some(ScratchDatabase::create(url, &args.name).await?)
        }
        _ => None,
    };
    let indices = match args.target {
        Target::Elastic | Target::ElasticProducer => {
            let url = args.elastic_url.as_deref().context("--elastic-url is required for the elastic targets")?;
            Some(ScratchIndices::new(url, &args.name))
        }
        _ => None,
    };
    let mongo = match args.target {
        Target::Mongo => {
            let url = args.mongo_url.as_deref().context("--mongo-url is required for --target mongo")?;
            Some(ScratchMongo::new(url, &args.name))
        }
        _ => None,
    };
    let redis = match args.target {
        Target::Redis => {
            let url = args.redis_url.as_deref().context("--redis-url is required for --target redis")?;
            Some(ScratchRedis::new(url, &args.name))
        }
        _ => None,
    };
    let targets = Targets { db: scratch.as_ref(), indices: indices.as_ref(), mongo: mongo.as_ref(), redis: redis.as_ref() };
    let result = match (args.kind, args.target) {
        (Kind::Pipeline, _) => pipeline(&args, &targets).await,
        (Kind::RawSink, Target::Elastic | Target::ElasticProducer) => {
            match connector_config(&args, &[NO_SIDECAR.into()], &targets) {
                Ok(config) => crate::elastic::raw_bulk(&config).await,
                Err(e) => Err(e),
            }
        }
        (Kind::RawSink, Target::Mongo) => match connector_config(&args, &[NO_SIDECAR.into()], &targets) {
            Ok(config) => crate::mongo::raw_bulk(&config).await,
            Err(e) => Err(e),
        },
        (Kind::RawSink, Target::Redis) => match connector_config(&args, &[NO_SIDECAR.into()], &targets) {
            Ok(config) => crate::redis::raw_multi_exec(&config).await,
            Err(e) => Err(e),
        },
        (Kind::RawSink, _) => raw_sink(&args, scratch.as_ref()).await,
        (Kind::Live, _) => live(&args).await,
        (Kind::Failover, _) => failover(&args, &targets).await,
        (Kind::BlueGreen, _) => crate::blue_green::run(&args).await,
    };
    if let Some(indices) = indices {
        indices.drop().await?;
    }
    if let Some(mongo) = mongo {
        if let (Ok(outcome), Some(url)) = (&result, args.mongo_url.as_deref())
            && let Ok((bookings, guests)) = crate::mongo::documents(url, &mongo.database).await
        {
            eprintln!("[{}] read model: {bookings} bookings, {guests} guest_stats ({} ops)", args.name, outcome.ops);
        }
        mongo.drop().await?;
    }
    if let Some(redis) = redis {
        if let (Ok(outcome), Ok((bookings, guests))) = (&result, redis.sizes().await) {
            eprintln!("[{}] read model: {bookings} booking hashes, {guests} guest hashes ({} ops)", args.name, outcome.ops);
        }
        redis.drop().await?;
    }
    if let Some(db) = scratch {
        if let Ok(mb) = db.size_mb().await {
            eprintln!("[{}] target database size {mb:.0} MB", args.name);
        }
        db.drop().await?;
    }
    let mut outcome = result?;
    outcome.peak_rss_kb = peak_rss_kb();
    Ok(outcome)
}

/// The scratch targets of a scenario: a PostgreSQL database, Elasticsearch indices, a
/// MongoDB database or Redis keys of its own.
struct Targets<'a> {
    db: Option<&'a ScratchDatabase>,
    indices: Option<&'a ScratchIndices>,
    mongo: Option<&'a ScratchMongo>,
    redis: Option<&'a ScratchRedis>,
}

/// The connector as the product runs it, timed until the whole log is applied.
async fn pipeline(args: &ScenarioArgs, targets: &Targets<'_>) -> anyhow::Result<Outcome> {
    let head = EventLog::open(&args.log)?.head()?;
    let reducer = Reducer::start(args).await?;
    if args.gateways > 0 {
        return several_gateways(args, targets, reducer, head).await;
    }
    let config = connector_config(args, &reducer.addresses(), targets)?;
    let mut context = RunContext::default();
    match &config.sink {
        SinkConfig::Postgres(c) if args.leased => {
            let mut leases = projector_gateway::lease::postgres::PgLeases::open(&c.url, &c.schema).await?;
            context.tenure = leases.try_acquire(&config.id, "bench", 3_600_000).await?;
            anyhow::ensure!(context.tenure.is_some(), "the bench's lease is held by another holder");
        }
        SinkConfig::Elastic(c) => {
            // As in `elastic-raw-bulk`, the gateway's indices and the producer's template
            // exist before the clock starts (creating them is a cluster-state change that
            // costs about a second, which would weigh on a short run).
            projector_gateway::sinks::elastic::ElasticSink::open(c, &config.id, config.mode()).await?;
        }
        SinkConfig::Mongo(c) => {
            // As in `mongo-*-raw-bulk`: the gateway's checkpoints index exists before the clock.
            projector_gateway::sinks::mongo::MongoSink::open(c, &config.id).await?;
        }
        _ => {}
    }
    let (started, cpu) = (Instant::now(), cpu_seconds());
    let mut running = Running::start(config, context, args.target == Target::Null).await?;
    running.wait_for(head, Duration::from_secs(3600)).await?;
    let seconds = started.elapsed().as_secs_f64();
    let cpu_seconds = cpu_seconds() - cpu;
    let p = running.progress.borrow().clone();
    running.stop().await?;
    let replicas = reducer.stop().await;
    // The reducer's `Describe` narrows the subscription to the types it handles; the others
    // only move the checkpoint. A producer records every event.
    let handled = if args.target == Target::ElasticProducer { head } else { handled_events(&args.log)? };
    if p.events_applied != handled {
        bail!("{} events applied; the log holds {handled} events of the types the reducer handles", p.events_applied);
    }
    Ok(Outcome {
        events: head,
        applied: p.events_applied,
        ops: p.ops_applied,
        seconds,
        cpu_seconds,
        transactions: p.batches,
        replicas,
        ..Default::default()
    })
}

/// `--gateways N`: N gateways share the connector, gateway i calling replica i.
async fn several_gateways(args: &ScenarioArgs, targets: &Targets<'_>, reducer: Reducer, head: u64) -> anyhow::Result<Outcome> {
    let addresses = reducer.addresses();
    anyhow::ensure!(addresses.len() == args.gateways, "--gateways {} needs as many --replicas", args.gateways);
    let configs = addresses.iter().map(|a| connector_config(args, std::slice::from_ref(a), targets)).collect::<anyhow::Result<Vec<_>>>()?;
    prepare_postgres(&configs[0]).await?;
    let outcome = crate::gateways::scale(configs, head).await;
    let replicas = reducer.stop().await;
    Ok(Outcome { replicas, ..outcome? })
}

/// `failover`: four gateways on one connector, killed and joining in turn.
async fn failover(args: &ScenarioArgs, targets: &Targets<'_>) -> anyhow::Result<Outcome> {
    let sidecar = Sidecar::start(args.target).await?;
    let config = connector_config(args, std::slice::from_ref(&sidecar.address), targets)?;
    prepare_postgres(&config).await?;
    let outcome = crate::gateways::failover(config, args.log.clone(), args.live_rate).await;
    sidecar.stop().await;
    outcome
}

/// The PostgreSQL target's schema and read model, created before the clock starts.
async fn prepare_postgres(config: &ConnectorConfig) -> anyhow::Result<()> {
    let SinkConfig::Postgres(c) = &config.sink else { bail!("several gateways need the postgres target (it holds the claims)") };
    projector_gateway::sinks::postgres::PostgresSink::open(c, &config.id, None).await?;
    Ok(())
}

/// The sink writers alone, on precomputed operations and batches.
async fn raw_sink(args: &ScenarioArgs, db: Option<&ScratchDatabase>) -> anyhow::Result<Outcome> {
    let config = connector_config(args, &[NO_SIDECAR.into()], &Targets { db, indices: None, mongo: None, redis: None })?;
    match &config.sink {
        SinkConfig::Sqlite(c) => {
            let sink = projector_gateway::sinks::sqlite::SqliteSink::open(c, &config.id).await?;
            raw_apply(sink, &config).await
        }
        SinkConfig::Postgres(c) => {
            let sink = projector_gateway::sinks::postgres::PostgresSink::open(c, &config.id, None).await?;
            raw_apply(sink, &config).await
        }
        #[allow(unreachable_patterns)]
        _ => bail!("raw-sink measures the SQL sinks only"),
    }
}

async fn raw_apply<S: Sink<Op = SqlOp>>(sink: S, config: &ConnectorConfig) -> anyhow::Result<Outcome> {
    let setup = Instant::now();
    let SourceConfig::Sqlite(source) = &config.source else { bail!("raw-sink reads a SQLite log") };
    let head = EventLog::open(&source.path)?.head()?;
    let mut reader = SqliteSource::open(source, 0)?;
    let mut events = Vec::with_capacity(head as usize);
    while events.last().map_or(0, |e: &Event| e.position) < head {
        events.extend(projector_gateway::sources::EventSource::next_batch(&mut reader).await?.events);
    }
    drop(reader);

    // Reduce and decode exactly as the pipeline would, on both cores.
    let partitioner = Partitioner::new(&config.partitioning);
    let format = config.sidecar.as_ref().context("raw-sink needs a sidecar config")?.payload;
    let halves: Vec<Vec<Event>> = {
        let second = events.split_off(events.len() / 2);
        vec![events, second]
    };
    let reduced: Vec<Vec<(EventRef, Vec<SqlOp>)>> = std::thread::scope(|scope| {
        let handles: Vec<_> = halves
            .into_iter()
            .map(|half| {
                let sink = &sink;
                scope.spawn(move || -> anyhow::Result<Vec<(EventRef, Vec<SqlOp>)>> {
                    half.into_iter()
                        // The pipeline sends only what the reducer's `Describe` declares.
                        .filter(|event| bookings_reducer::HANDLED_EVENT_TYPES.contains(&event.event_type.as_str()))
                        .map(|event| {
                            let partition = partitioner.partition_of(&event.stream);
                            let request = build_request(&event, partition, format);
                            // The reducer crate has its own generated types: go through the wire form.
                            let request =
                                bookings_reducer::proto::ProjectionRequest::decode(request.encode_to_vec().as_slice())?;
                            let response = bookings_reducer::reduce(&request);
                            if let Some(e) = response.error {
                                bail!("the reducer rejected event {}: {}", event.event_id, e.message);
                            }
                            let ops = response
                                .operation
                                .iter()
                                .chain(response.operations.iter())
                                .filter_map(|any| sink.decode(any).transpose())
                                .collect::<Result<Vec<_>, _>>()?;
                            // The writers only read the payload to park an event; keep memory down.
                            let event = Event { data: Default::default(), metadata: None, ..event };
                            Ok((EventRef::new(Arc::new(event), partition), ops))
                        })
                        .collect()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("reducer thread")).collect::<anyhow::Result<_>>()
    })?;

    // Cut batches per writer the way the writer does when the sink is the bottleneck.
    let count = partitioner.count();
    let writers = sink.writer_count().clamp(1, count as usize);
    let max_ops = config.batch.max_ops;
    let mut pending: Vec<Vec<BatchItem<SqlOp>>> = (0..writers).map(|_| Vec::new()).collect();
    let mut pending_ops = vec![0usize; writers];
    let mut batches: Vec<Vec<Arc<Batch<SqlOp>>>> = (0..writers).map(|_| Vec::new()).collect();
    let (mut total_ops, mut total_events) = (0u64, 0u64);
    for (event, ops) in reduced.into_iter().flatten() {
        let w = event.partition as usize % writers;
        total_ops += ops.len() as u64;
        total_events += 1;
        pending_ops[w] += ops.len();
        pending[w].push(BatchItem::Apply { event, ops });
        if pending_ops[w] >= max_ops {
            batches[w].push(Arc::new(Batch::new(std::mem::take(&mut pending[w]), count)));
            pending_ops[w] = 0;
        }
    }
    for (w, items) in pending.into_iter().enumerate() {
        if !items.is_empty() {
            batches[w].push(Arc::new(Batch::new(items, count)));
        }
    }
    let transactions = batches.iter().map(Vec::len).sum::<usize>() as u64;
    let mut opened = Vec::with_capacity(writers);
    for _ in 0..writers {
        opened.push(sink.open_writer().await?);
    }
    let setup_seconds = setup.elapsed().as_secs_f64();

    let (started, cpu) = (Instant::now(), cpu_seconds());
    let mut tasks = tokio::task::JoinSet::new();
    for (mut writer, batches) in opened.into_iter().zip(batches) {
        tasks.spawn(async move {
            // Transient failures (deadlocks between writers) are retried as the pipeline's
            // writer retries them.
            let mut retries = 0u64;
            for batch in batches {
                let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(10));
                loop {
                    match writer.apply(batch.clone()).await {
                        Ok(()) => break,
                        Err(e) if e.transient => {
                            retries += 1;
                            tokio::time::sleep(backoff.next_delay()).await;
                        }
                        Err(e) => return Err(e),
                    }
                }
            }
            Ok::<_, projector_gateway::sinks::ApplyError>(retries)
        });
    }
    let mut retries = 0;
    while let Some(done) = tasks.join_next().await {
        retries += done??;
    }
    let seconds = started.elapsed().as_secs_f64();
    let cpu_seconds = cpu_seconds() - cpu;
    if retries > 0 {
        eprintln!("[raw-sink] {retries} batch(es) retried after a transient failure");
    }
    Ok(Outcome {
        events: head,
        applied: total_events,
        ops: total_ops,
        seconds,
        cpu_seconds,
        transactions,
        setup_seconds,
        retries,
        ..Default::default()
    })
}

/// Append -> applied latency of single events appended at a fixed rate.
async fn live(args: &ScenarioArgs) -> anyhow::Result<Outcome> {
    let mut log = EventLog::open(&args.log)?;
    if log.head()? == 0 {
        let mut generator = BookingsGenerator::new(7, 500);
        log.append(&generator.take(2000))?;
    }
    let head = log.head()?;
    let sidecar = Sidecar::start(args.target).await?;
    let config = connector_config(args, std::slice::from_ref(&sidecar.address), &Targets { db: None, indices: None, mongo: None, redis: None })?;
    let partitioner = Partitioner::new(&config.partitioning);
    let mut running = Running::start(config, RunContext::default(), false).await?;
    running.wait_for(head, Duration::from_secs(60)).await?;

    let count = (args.live_rate * args.live_seconds) as usize;
    let mut generator = BookingsGenerator::new(4242, 200);
    let events: Vec<_> = generator
        .take(count)
        .into_iter()
        .map(|mut e| {
            e.stream = format!("live-{}", e.stream);
            e
        })
        .collect();
    let interval = Duration::from_secs_f64(1.0 / args.live_rate as f64);
    let (appended_tx, mut appended) = tokio::sync::mpsc::unbounded_channel::<(u64, u32, Instant)>();
    let appender = std::thread::spawn(move || -> anyhow::Result<f64> {
        let start = Instant::now();
        for (i, event) in events.into_iter().enumerate() {
            let due = start + interval * i as u32;
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            let partition = partitioner.partition_of(&event.stream);
            let at = Instant::now();
            let position = log.append(std::slice::from_ref(&event))?[0];
            let _ = appended_tx.send((position, partition, at));
        }
        Ok(start.elapsed().as_secs_f64())
    });

    let mut pending: VecDeque<(u64, u32, Instant)> = VecDeque::new();
    let mut latencies = Vec::with_capacity(count);
    let mut senders_done = false;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(args.live_seconds + 30);
    while !(senders_done && pending.is_empty()) {
        tokio::select! {
            item = appended.recv(), if !senders_done => match item {
                Some(item) => pending.push_back(item),
                None => senders_done = true,
            },
            changed = running.progress.changed() => if changed.is_err() {
                bail!("the connector stopped during the live phase");
            },
            _ = tokio::time::sleep_until(deadline) => bail!("{} appended events were not applied in time", pending.len()),
        }
        let now = Instant::now();
        let p = running.progress.borrow_and_update();
        pending.retain(|(position, partition, at)| {
            let applied = p.positions.get(*partition as usize).is_some_and(|done| done >= position);
            if applied {
                latencies.push(now.duration_since(*at).as_secs_f64() * 1000.0);
            }
            !applied
        });
    }
    let append_seconds = appender.join().map_err(|_| anyhow::anyhow!("appender panicked"))??;
    let transactions = running.progress.borrow().batches;
    running.stop().await?;
    sidecar.stop().await;
    latencies.sort_by(f64::total_cmp);
    Ok(Outcome {
        events: latencies.len() as u64,
        seconds: append_seconds,
        transactions,
        p50_ms: Some(percentile(&latencies, 0.50)),
        p99_ms: Some(percentile(&latencies, 0.99)),
        max_ms: latencies.last().copied(),
        ..Default::default()
    })
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

/// Events of the log the example reducer handles (what `Describe` lets through).
fn handled_events(log: &Path) -> anyhow::Result<u64> {
    let conn = rusqlite::Connection::open(log)?;
    let types = bookings_reducer::HANDLED_EVENT_TYPES.map(|t| format!("'{t}'")).join(",");
    let n: i64 =
        conn.query_row(&format!("SELECT count(*) FROM events WHERE event_type IN ({types})"), [], |r| r.get(0))?;
    Ok(n as u64)
}

/// The sidecar address of the scenarios that never call one.
const NO_SIDECAR: &str = "http://127.0.0.1:1";

/// The connector's configuration, through the same YAML loader users go through: `sidecar`
/// is its `address`, or with `--replicas` its `addresses`.
fn connector_config(args: &ScenarioArgs, sidecar: &[String], targets: &Targets<'_>) -> anyhow::Result<ConnectorConfig> {
    let sink = match (args.target, targets.indices, targets.mongo) {
        (Target::Elastic, Some(ix), _) => ix.sink(false),
        (Target::ElasticProducer, Some(ix), _) => ix.sink(true),
        (Target::Elastic | Target::ElasticProducer, None, _) => bail!("no search engine for the elastic targets"),
        (Target::Mongo, _, Some(m)) => m.sink(args.writers),
        (Target::Mongo, _, None) => bail!("no MongoDB-wire server for the mongo target"),
        (Target::Redis, _, _) => targets.redis.context("no Redis server for the redis target")?.sink(args.writers),
        (target, _, _) => sql_sink(args, target, targets.db)?,
    };
    let mut connector = json!({
        "id": format!("bench-{}", args.name),
        "source": {"sqlite": {"path": args.log}},
        "sidecar": match (args.replicas, sidecar) {
            (0, [address]) => json!({"address": address, "window": args.window}),
            _ => json!({"addresses": sidecar, "window": args.window}),
        },
        "partitioning": {"count": args.partitions},
        "batch": {"max_ops": args.max_ops, "max_wait_ms": args.max_wait_ms},
        "sink": sink,
    });
    if args.target == Target::ElasticProducer {
        connector.as_object_mut().expect("object").remove("sidecar");
    }
    let document = json!({"connectors": [connector]});
    let yaml = serde_yaml::to_string(&document)?;
    let mut parsed =
        config::parse(&yaml).map_err(|problems| anyhow::anyhow!("bench config is invalid: {problems:?}"))?;
    Ok(parsed.connectors.remove(0))
}

/// The `sink:` section of the SQL targets.
fn sql_sink(args: &ScenarioArgs, target: Target, db: Option<&ScratchDatabase>) -> anyhow::Result<serde_json::Value> {
    Ok(match (target, db) {
        (Target::Postgres, Some(db)) => json!({"postgres": {
            "url": db.url, "init_sql": bookings_reducer::SCHEMA_SQL, "writers": args.writers,
        }}),
        (Target::Postgres, None) => bail!("no database for the PostgreSQL target"),
        _ => json!({"sqlite": {
            "path": target_path(&args.dir, &args.name),
            "init_sql": format!("{}\n{}", args.sqlite_init, bookings_reducer::SCHEMA_SQL),
        }}),
    })
}

fn target_path(dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(format!("{name}-target.db"));
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    path
}

/// A connector running on its own task, with its progress channel.
struct Running {
    control: ConnectorControl,
    task: JoinHandle<Result<(), ConnectorError>>,
    progress: ProgressReceiver,
}

impl Running {
    async fn start(config: ConnectorConfig, context: RunContext, null_sink: bool) -> anyhow::Result<Self> {
        let control = ConnectorControl::default();
        let (tx, rx) = oneshot::channel();
        let on_start = move |progress| {
            let _ = tx.send(progress);
        };
        let task = if null_sink {
            tokio::spawn(run_with_sink(NullSink, config, control.clone(), on_start))
        } else {
            tokio::spawn(run_connector_in(config, context, control.clone(), on_start))
        };
        match rx.await {
            Ok(progress) => Ok(Self { control, task, progress }),
            Err(_) => match task.await? {
                Err(e) => Err(e.into()),
                Ok(()) => bail!("the connector stopped before starting"),
            },
        }
    }

    /// Waits until every partition has committed `position`.
    async fn wait_for(&mut self, position: u64, limit: Duration) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            if self.progress.borrow_and_update().low_watermark() >= position {
                return Ok(());
            }
            tokio::select! {
                changed = self.progress.changed() => if changed.is_err() {
                    self.control.abort.cancel();
                    return match (&mut self.task).await? {
                        Err(e) => Err(e.into()),
                        Ok(()) => Err(anyhow::anyhow!("the connector stopped before applying position {position}")),
                    };
                },
                _ = tokio::time::sleep_until(deadline) => {
                    let p: Progress = self.progress.borrow().clone();
                    bail!("position {position} not applied within {limit:?} (low watermark {})", p.low_watermark());
                }
            }
        }
    }

    async fn stop(self) -> anyhow::Result<()> {
        self.control.shutdown.cancel();
        self.task.await??;
        Ok(())
    }
}

/// What a pipeline scenario's connector talks to.
enum Reducer {
    One(Sidecar),
    /// `--replicas`: latency-bound replicas of the SQL reducer.
    Replicas(Replicas),
}

impl Reducer {
    async fn start(args: &ScenarioArgs) -> anyhow::Result<Self> {
        if args.replicas == 0 {
            return Ok(Self::One(Sidecar::start(args.target).await?));
        }
        if !matches!(args.target, Target::Null | Target::Sqlite | Target::Postgres) {
            bail!("--replicas serves the SQL reducer: use it with the null, sqlite or postgres target");
        }
        Ok(Self::Replicas(Replicas::start(args.replicas).await?))
    }

    fn addresses(&self) -> Vec<String> {
        match self {
            Self::One(sidecar) => vec![sidecar.address.clone()],
            Self::Replicas(replicas) => replicas.addresses(),
        }
    }

    /// Stops the servers; returns what each replica did.
    async fn stop(self) -> Vec<ReplicaLoad> {
        match self {
            Self::One(sidecar) => {
                sidecar.stop().await;
                Vec::new()
            }
            Self::Replicas(replicas) => {
                let loads = replicas.loads();
                replicas.stop().await;
                loads
            }
        }
    }
}

/// A reducer served in-process on a loopback port of its own.
pub struct Sidecar {
    pub address: String,
    stop: CancellationToken,
    task: JoinHandle<Result<(), tonic::transport::Error>>,
}

impl Sidecar {
    /// The SQL reducer, or its Elasticsearch, MongoDB or Redis form for those targets (a producer
    /// has no sidecar: this one then serves nobody).
    async fn start(target: Target) -> anyhow::Result<Self> {
        Self::serve(move |listener, shutdown| match target {
            Target::Elastic => tokio::spawn(crate::elastic::serve(listener, shutdown)),
            Target::Mongo => tokio::spawn(crate::mongo::serve(listener, shutdown)),
            Target::Redis => tokio::spawn(crate::redis::serve(listener, shutdown)),
            _ => tokio::spawn(bookings_reducer::serve(listener, shutdown)),
        })
        .await
    }

    /// Binds a loopback port and spawns `serve` on it, which stops serving when its second
    /// argument completes.
    pub async fn serve(
        serve: impl FnOnce(TcpListener, WaitForCancellationFutureOwned) -> JoinHandle<Result<(), tonic::transport::Error>>,
    ) -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let address = format!("http://{}", listener.local_addr()?);
        let stop = CancellationToken::new();
        let task = serve(listener, stop.clone().cancelled_owned());
        Ok(Self { address, stop, task })
    }

    pub async fn stop(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }
}

/// CPU time used so far by this process (user + system, every thread), from /proc/self/stat.
pub fn cpu_seconds() -> f64 {
    const TICKS_PER_SECOND: f64 = 100.0; // USER_HZ on Linux
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            // Fields after the command name (which may hold spaces) start at field 3.
            let fields: Vec<&str> = s.rsplit_once(')')?.1.split_whitespace().collect();
            let utime: f64 = fields.get(11)?.parse().ok()?;
            let stime: f64 = fields.get(12)?.parse().ok()?;
            Some((utime + stime) / TICKS_PER_SECOND)
        })
        .unwrap_or(0.0)
}

/// Peak resident set size of this process (VmHWM), in kB.
pub fn peak_rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}
