//! The `blue-green` scenario (issue 22 item 4): a blue/green rebuild of a read model while the
//! live connector follows appends at a fixed rate (1,000 events/s). Two questions: does the
//! rebuild hurt the live connector (its append -> applied p99 with the rebuild running, against
//! the same connector's p99 without it: target within 2x), and is the rebuild itself as fast as
//! a plain catch-up of the same log (target >= 0.7x)?
//!
//! One process, SQLite target, the SQL reducer served in-process twice: as version 1 (the live
//! connector's sidecar) and as version 2 (the rebuild's). In order:
//! 1. plain catch-up: the live connector builds version 1 from the whole log (timed: the rate
//!    the rebuild is compared with);
//! 2. live without a rebuild: single events appended at `--live-rate` for `--live-seconds`,
//!    each timed until its partition's committed position passes it;
//! 3. live with a rebuild: the same appends while `pipeline::rebuild` builds version 2 beside
//!    and swaps it in; appends stop when the rebuild stops building (after the swap the live
//!    connector, still on version 1's sidecar, pauses by design). The rebuild's rate is the
//!    log it caught up with over its time until the swap.

use std::{
    collections::VecDeque,
    path::Path,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use bookings_reducer::proto::{
    DescribeRequest, DescribeResponse, ProjectionRequest, ProjectionResponse,
    projection_info_server::{ProjectionInfo, ProjectionInfoServer},
    projection_server::{Projection, ProjectionServer},
};
use projector_gateway::{
    config::{self, ConnectorConfig},
    demo::BookingsGenerator,
    partition::Partitioner,
    pipeline::{ConnectorControl, ConnectorError, ProgressReceiver, RebuildOutcome, RebuildRequest, RunContext, rebuild, rebuild_report, run_connector_in},
    sources::sqlite::EventLog,
};
use serde_json::json;
use tokio::{net::TcpListener, sync::oneshot, task::JoinHandle};
use tokio_stream::{Stream, StreamExt, wrappers::TcpListenerStream};
use tonic::{Request, Response, Status, Streaming};

use crate::scenarios::{Outcome, ScenarioArgs, Sidecar};

const ID: &str = "bench-blue-green";

/// The SQL reducer, describing itself as `version`.
#[derive(Clone, Copy)]
struct Versioned {
    version: &'static str,
}

type Responses = Pin<Box<dyn Stream<Item = Result<ProjectionResponse, Status>> + Send>>;

// gRPC handlers answer with `tonic::Status`, as tonic's generated traits do.
#[allow(clippy::result_large_err)]
#[tonic::async_trait]
impl Projection for Versioned {
    type ProjectStream = Responses;

    async fn project(&self, request: Request<Streaming<ProjectionRequest>>) -> Result<Response<Responses>, Status> {
        let responses = request.into_inner().map(|r| r.map(|request| bookings_reducer::reduce(&request)));
        Ok(Response::new(Box::pin(responses)))
    }
}

#[tonic::async_trait]
impl ProjectionInfo for Versioned {
    async fn describe(&self, _: Request<DescribeRequest>) -> Result<Response<DescribeResponse>, Status> {
        Ok(Response::new(DescribeResponse { version: self.version.into(), ..bookings_reducer::description() }))
    }
}

async fn serve(version: &'static str) -> anyhow::Result<Sidecar> {
    Sidecar::serve(move |listener: TcpListener, shutdown| {
        let reducer = Versioned { version };
        tokio::spawn(
            tonic::transport::Server::builder()
                .tcp_nodelay(true)
                .initial_stream_window_size(Some(4 << 20))
                .initial_connection_window_size(Some(16 << 20))
                .add_service(ProjectionServer::new(reducer))
                .add_service(ProjectionInfoServer::new(reducer))
                .serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown),
        )
    })
    .await
}

fn connector(args: &ScenarioArgs, sidecar: &str) -> anyhow::Result<ConnectorConfig> {
    let target = args.dir.join("blue-green-target.db");
    for suffix in ["", "-wal", "-shm", ".v1", ".v2"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", target.display()));
    }
    let document = json!({"connectors": [{
        "id": ID,
        "source": {"sqlite": {"path": args.log}},
        "sidecar": {"address": sidecar, "window": args.window, "on_new_version": "blue_green", "blue_green": {"keep_old_versions": 1}},
        "partitioning": {"count": args.partitions},
        "batch": {"max_ops": args.max_ops, "max_wait_ms": args.max_wait_ms},
        "sink": {"sqlite": {"path": target, "init_sql": format!("{}\n{}", args.sqlite_init, bookings_reducer::SCHEMA_SQL)}},
    }]});
    let mut parsed = config::parse(&serde_yaml::to_string(&document)?).map_err(|p| anyhow::anyhow!("bench config is invalid: {p:?}"))?;
    Ok(parsed.connectors.remove(0))
}

struct Live {
    control: ConnectorControl,
    task: JoinHandle<Result<(), ConnectorError>>,
    progress: ProgressReceiver,
}

impl Live {
    async fn start(config: ConnectorConfig) -> anyhow::Result<Self> {
        let control = ConnectorControl::default();
        let (tx, rx) = oneshot::channel();
        let task = tokio::spawn(run_connector_in(config, RunContext::default(), control.clone(), move |p| {
            let _ = tx.send(p);
        }));
        match rx.await {
            Ok(progress) => Ok(Self { control, task, progress }),
            Err(_) => Err(match task.await? {
                Err(e) => e.into(),
                Ok(()) => anyhow::anyhow!("the connector stopped before starting"),
            }),
        }
    }

    async fn wait_for(&mut self, position: u64) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(3600);
        while self.progress.borrow_and_update().low_watermark() < position {
            tokio::select! {
                changed = self.progress.changed() => if changed.is_err() { bail!("the live connector stopped") },
                _ = tokio::time::sleep_until(deadline) => bail!("position {position} not applied in time"),
            }
        }
        Ok(())
    }
}

/// Appends single events at `rate` from a thread until `count` are appended or `stop` is set,
/// and times each until the live connector applied it. Returns the sorted latencies (ms) and
/// how many appended events were not applied within `grace` after the appends stopped.
async fn follow(live: &mut Live, config: &ConnectorConfig, log_path: &Path, rate: u64, count: usize, seed: u64, stop: Arc<AtomicBool>) -> anyhow::Result<(Vec<f64>, usize)> {
    let mut log = EventLog::open(log_path)?;
    let partitioner = Partitioner::new(&config.partitioning);
    let events: Vec<_> = BookingsGenerator::new(seed, 200)
        .take(count)
        .into_iter()
        .map(|mut e| {
            e.stream = format!("live-{seed}-{}", e.stream);
            e
        })
        .collect();
    let interval = Duration::from_secs_f64(1.0 / rate as f64);
    let (tx, mut appended) = tokio::sync::mpsc::unbounded_channel::<(u64, u32, Instant)>();
    let appender = std::thread::spawn(move || -> anyhow::Result<()> {
        let start = Instant::now();
        for (i, event) in events.into_iter().enumerate() {
            if stop.load(Ordering::SeqCst) {
                break;
            }
            if let Some(wait) = (start + interval * i as u32).checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            let partition = partitioner.partition_of(&event.stream);
            let at = Instant::now();
            let position = log.append(std::slice::from_ref(&event))?[0];
            let _ = tx.send((position, partition, at));
        }
        Ok(())
    });
    let mut pending: VecDeque<(u64, u32, Instant)> = VecDeque::new();
    let mut latencies = Vec::with_capacity(count);
    let mut done = false;
    let mut grace: Option<tokio::time::Instant> = None;
    loop {
        if done && (pending.is_empty() || grace.is_some_and(|g| tokio::time::Instant::now() >= g)) {
            break;
        }
        let wake = grace.unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_millis(200));
        tokio::select! {
            item = appended.recv(), if !done => match item {
                Some(item) => pending.push_back(item),
                None => {
                    done = true;
                    grace = Some(tokio::time::Instant::now() + Duration::from_secs(5));
                }
            },
            changed = live.progress.changed() => if changed.is_err() { bail!("the live connector stopped during the live phase") },
            _ = tokio::time::sleep_until(wake) => {}
        }
        let now = Instant::now();
        let p = live.progress.borrow_and_update();
        pending.retain(|(position, partition, at)| {
            let applied = p.positions.get(*partition as usize).is_some_and(|done| done >= position);
            if applied {
                latencies.push(now.duration_since(*at).as_secs_f64() * 1000.0);
            }
            !applied
        });
    }
    appender.join().map_err(|_| anyhow::anyhow!("appender panicked"))??;
    latencies.sort_by(f64::total_cmp);
    Ok((latencies, pending.len()))
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

pub async fn run(args: &ScenarioArgs) -> anyhow::Result<Outcome> {
    let (v1, v2) = (serve("1").await?, serve("2").await?);
    let config = connector(args, &v1.address)?;
    let head = EventLog::open(&args.log)?.head()?;

    // 1. The plain catch-up.
    let started = Instant::now();
    let mut live = Live::start(config.clone()).await?;
    live.wait_for(head).await?;
    let catch_up_seconds = started.elapsed().as_secs_f64();
    let plain_rate = head as f64 / catch_up_seconds;
    eprintln!("[blue-green] plain catch-up: {head} events in {catch_up_seconds:.2}s ({plain_rate:.0} events/s)");

    // 2. The live connector alone.
    let count = (args.live_rate * args.live_seconds) as usize;
    let (without, lost) = follow(&mut live, &config, &args.log, args.live_rate, count, 4242, Arc::new(AtomicBool::new(false))).await?;
    anyhow::ensure!(lost == 0, "{lost} appended events were not applied without a rebuild");
    let p99_without = percentile(&without, 0.99);
    eprintln!("[blue-green] live without a rebuild: {} events, p99 {p99_without:.2} ms", without.len());

    // 3. The same with the rebuild to version 2 running beside.
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    // The rebuild's own time, start to swap: `follow` below waits a grace period after the
    // last append for events the swap left to version 2, which is none of the rebuild's time
    // (counting it made the rebuild look five seconds slower than it was).
    let rebuilding = tokio::spawn({
        let (config, request) = (config.clone(), RebuildRequest { sidecar: Some(v2.address.clone()), automatic: false });
        async move {
            let outcome = rebuild(config, request, ConnectorControl::default()).await;
            (outcome, started.elapsed().as_secs_f64())
        }
    });
    let watch = tokio::spawn({
        let stop = stop.clone();
        async move {
            // Appends stop once the rebuild stops building (the swap is next).
            loop {
                tokio::time::sleep(Duration::from_millis(5)).await;
                if rebuild_report(ID).is_some_and(|r| r.state != "building") {
                    stop.store(true, Ordering::SeqCst);
                    return;
                }
            }
        }
    });
    // More appends than the rebuild should need (three plain catch-ups); stopped by the watch.
    let budget = ((catch_up_seconds * 3.0 + 10.0) * args.live_rate as f64) as usize;
    let (with, unapplied) = follow(&mut live, &config, &args.log, args.live_rate, budget, 4343, stop.clone()).await?;
    let (outcome, rebuild_seconds) = rebuilding.await?;
    let outcome = outcome.map_err(anyhow::Error::from)?;
    watch.abort();
    let RebuildOutcome::Swapped { .. } = outcome else { bail!("the rebuild did not swap: {outcome:?}") };
    let rebuilt = rebuild_report(ID).map(|r| r.position).context("the rebuild's report")?;
    let rebuild_rate = rebuilt as f64 / rebuild_seconds;
    let p99_with = percentile(&with, 0.99);
    eprintln!(
        "[blue-green] live with the rebuild: {} events, p99 {p99_with:.2} ms ({unapplied} appended just before the swap left to version 2); \
         rebuild: {rebuilt} events in {rebuild_seconds:.2}s ({rebuild_rate:.0} events/s)",
        with.len()
    );
    live.control.shutdown.cancel();
    let _ = live.task.await?;
    v1.stop().await;
    v2.stop().await;
    Ok(Outcome {
        events: rebuilt,
        applied: with.len() as u64,
        seconds: rebuild_seconds,
        p50_ms: Some(percentile(&with, 0.50)),
        p99_ms: Some(p99_with),
        max_ms: with.last().copied(),
        blue_green: Some(Figures { live_p99_without_ms: p99_without, plain_rate }),
        ..Default::default()
    })
}

/// What the `blue-green` scenario reports beyond [`Outcome`]'s common fields.
#[derive(Debug, Clone, Copy, Default, serde::Serialize, serde::Deserialize)]
pub struct Figures {
    /// The live connector's p99 without the rebuild.
    pub live_p99_without_ms: f64,
    /// The plain catch-up's rate (events/s).
    pub plain_rate: f64,
}

/// The scenario's `bench scenario=blue-green ...` line (and its verdicts), when `name` is it.
pub fn report_line(name: &str, o: &Outcome) -> bool {
    if name != "blue-green" {
        return false;
    }
    let figures = o.blue_green.unwrap_or_default();
    let with = o.p99_ms.unwrap_or(f64::NAN);
    let ratio = with / figures.live_p99_without_ms;
    let rebuild_ratio = o.events_per_s() / figures.plain_rate;
    eprintln!(
        "  blue-green: live p99 {with:.2} ms with the rebuild, {:.2} ms without = {ratio:.2}x (target <= 2: {}); \
         rebuild {:.0} events/s = {rebuild_ratio:.2}x a plain catch-up (target >= 0.7: {})",
        figures.live_p99_without_ms,
        if ratio <= 2.0 { "met" } else { "MISSED" },
        o.events_per_s(),
        if rebuild_ratio >= 0.7 { "met" } else { "MISSED" },
    );
    println!(
        "bench scenario=blue-green live_p99_ms={with:.2} live_p99_without_ms={:.2} live_p99_ratio={ratio:.2} rebuild_ratio={rebuild_ratio:.2}",
        figures.live_p99_without_ms
    );
    true
}
