//! Wires one connector together and runs it:
//!
//! ```text
//! source -> router (filter, partitioner, resume skip) -> N partition reducers (gRPC)
//!        -> K sink writers (batcher + apply with checkpoint)
//! ```
//!
//! A producer connector (no sidecar) has partition producers in place of the reducers: the
//! sink itself turns each event into the operations that record it.
//!
//! Every stage is a task connected by bounded channels, so a slow sidecar or a slow database
//! slows the reading of the log and memory stays bounded by configuration. Partition `p` is
//! written by writer `p % K`, which keeps each partition's operations in order.
//!
//! Stopping: cancelling `shutdown` stops reading; everything already read is reduced and
//! applied, then the connector returns. Cancelling `abort` (or any stage failing) stops every
//! stage at once; what was committed is consistent, the rest is read again on restart.

mod blue_green;
mod parked;
mod producer;
mod progress;
mod replay;
mod reset;
mod router;
mod takeover;
mod writer;

pub use crate::run_context::RunContext;

use std::{sync::Arc, time::Duration};

use tokio::{sync::mpsc, task::JoinSet};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument as _, info, warn};

pub use blue_green::{RebuildOutcome, RebuildReport, RebuildRequest, rebuild, rebuild_report, versions as read_model_versions};
pub use parked::{discard_parked, list_parked};
pub use replay::{ReplayOutcome, Replayed, replay_parked};
pub use progress::{Progress, ProgressReceiver, ProgressSender, channel as progress_channel};
pub use reset::{ResetOutcome, ResetTo, reset_connector};
pub use writer::WriterError;

use crate::{
    backoff::Backoff,
    checkpoint::ResumePlan,
    event::Position,
    config::{ConnectorConfig, SinkConfig},
    filter::EventFilter,
    partition::Partitioner,
    proto::DescribeResponse,
    reducer::{self, Described, PartitionReducer, ReducerError},
    sinks::{OpenSink, Sink, SinkError},
    sources::{self, SourceError},
};

/// Why a connector stopped with an error. Every message names the connector. The cause is
/// part of the message and not a `source`, so a chain printed with `{:#}` says it once.
#[derive(Debug, thiserror::Error)]
pub enum ConnectorError {
    #[error("connector `{connector}`: {error}")]
    Sink { connector: String, error: SinkError },
    #[error("connector `{connector}`: {error}")]
    Source { connector: String, error: SourceError },
    #[error("connector `{connector}`: invalid configuration: {message}")]
    Config { connector: String, message: String },
    #[error("connector `{connector}`: {error}")]
    Reducer { connector: String, error: ReducerError },
    #[error("connector `{connector}`: {error}")]
    Writer { connector: String, error: WriterError },
    /// A blue/green rebuild swapped another version of the read model in under this run: the
    /// connector reopens its sink (`run_connector_in`), nothing failed.
    #[error("connector `{connector}`: a blue/green rebuild swapped another version of the read model in; reopening it")]
    Swapped { connector: String },
}

impl ConnectorError {
    /// The dependency whose outage this failure is (a target or source that cannot be reached
    /// or cannot serve for now), for a connector configured as `config`: a failure worth
    /// waiting out and trying again. `None` for a mistake that needs a fix (configuration,
    /// schema, checkpoints, the sidecar's reset), however remote the target.
    pub fn outage(&self, config: &ConnectorConfig) -> Option<crate::status::Dependency> {
        use crate::status::Dependency;
        match self {
            Self::Sink { error, .. } if config.sink.settings().is_remote() && !error.needs_a_fix() => Some(Dependency::Target),
            Self::Source { error, .. } if config.source.settings().is_remote() && !matches!(error, SourceError::NotBuilt(_)) => {
                Some(Dependency::Source)
            }
            _ => None,
        }
    }
}

/// Handles to steer and watch a running connector.
#[derive(Clone)]
pub struct ConnectorControl {
    /// Stop reading, finish what was read, return.
    pub shutdown: CancellationToken,
    /// Stop now.
    pub abort: CancellationToken,
}

impl Default for ConnectorControl {
    fn default() -> Self {
        Self { shutdown: CancellationToken::new(), abort: CancellationToken::new() }
    }
}

impl ConnectorControl {
    /// Handles that stop when these do, and can also be stopped on their own (one connector
    /// of a process, one run of a leased connector).
    pub fn child(&self) -> Self {
        Self { shutdown: self.shutdown.child_token(), abort: self.abort.child_token() }
    }
}

/// Opens the connector's sink and runs it until shutdown or failure. `on_start` receives the
/// progress channel once checkpoints are loaded.
pub async fn run_connector(
    config: ConnectorConfig,
    control: ConnectorControl,
    on_start: impl FnOnce(ProgressReceiver) + Send,
) -> Result<(), ConnectorError> {
    run_connector_in(config, RunContext::default(), control, on_start).await
}

/// [`run_connector`] in a context (a leased run).
pub async fn run_connector_in(
    config: ConnectorConfig,
    context: RunContext,
    control: ConnectorControl,
    on_start: impl FnOnce(ProgressReceiver) + Send,
) -> Result<(), ConnectorError> {
    struct Run<F> {
        control: ConnectorControl,
        on_start: F,
        held: Option<Vec<u32>>,
    }
    impl<F: FnOnce(ProgressReceiver) + Send> WithSink for Run<F> {
        type Output = ();
        async fn with<S: Sink>(self, sink: S, config: ConnectorConfig) -> Result<(), ConnectorError> {
            run_partitions_with_sink(sink, config, self.held, self.control, self.on_start).await
        }
    }
    let held: Option<Vec<u32>> = context.claims.as_ref().map(|claims| claims.epochs.keys().copied().collect());
    let blue_green = config.sidecar.as_ref().is_some_and(|s| s.new_version_policy() == crate::config::OnNewVersion::BlueGreen);
    if !blue_green {
        return with_sink(config, &context, Run { control, on_start, held }).await;
    }
    // Blue/green: a rebuild runs beside the live run, and a swap makes the live run reopen its
    // sink on the new version. Whoever watches sees one progress channel throughout.
    let mut rebuilds = JoinSet::new();
    rebuilds.spawn(blue_green::rebuild_beside(config.clone(), control.child()).in_current_span());
    let mut outer: Option<ProgressSender> = None;
    let mut on_start = Some(on_start);
    loop {
        let (started_tx, started_rx) = tokio::sync::oneshot::channel::<ProgressReceiver>();
        let run = with_sink(config.clone(), &context, Run { control: control.clone(), on_start: move |p| { let _ = started_tx.send(p); }, held: held.clone() });
        tokio::pin!(run);
        let result = tokio::select! {
            result = &mut run => result,
            Ok(progress) = started_rx => {
                let initial = progress.borrow().clone();
                let sender = match &outer {
                    Some(sender) => {
                        sender.send_replace(initial);
                        sender.clone()
                    }
                    None => {
                        let (sender, receiver) = tokio::sync::watch::channel(initial);
                        if let Some(on_start) = on_start.take() {
                            on_start(receiver);
                        }
                        outer = Some(sender.clone());
                        sender
                    }
                };
                tokio::spawn(forward(progress, sender));
                run.await
            }
        };
        match result {
            Err(ConnectorError::Swapped { connector }) if !control.shutdown.is_cancelled() => {
                info!(connector = %connector, "the read model was swapped by a blue/green rebuild; reopening it on the new version");
            }
            other => {
                rebuilds.shutdown().await;
                return other;
            }
        }
    }
}

/// Copies one run's progress into the channel whoever watches the connector holds.
async fn forward(mut from: ProgressReceiver, to: ProgressSender) {
    while from.changed().await.is_ok() {
        let progress = from.borrow_and_update().clone();
        to.send_replace(progress);
    }
}

/// Something to do with a connector's sink, whichever kind it is (the sinks are different
/// types, so this stands in for a closure generic over them).
pub trait WithSink: Send {
    type Output;
    fn with<S: Sink>(self, sink: S, config: ConnectorConfig) -> impl Future<Output = Result<Self::Output, ConnectorError>> + Send;
}

/// `with_sink`, generated from the list of sinks (`sinks/registry.rs`).
macro_rules! with_sink {
    (; $($variant:ident $key:literal ($($cfg:tt)*) $settings:ty => $runtime:ty;)*) => {
        /// Opens the connector's sink and hands it to `task`.
        pub async fn with_sink<T: WithSink>(config: ConnectorConfig, context: &RunContext, task: T) -> Result<T::Output, ConnectorError> {
            let connector = config.id.clone();
            let sink_error = |error| ConnectorError::Sink { connector: connector.clone(), error };
            match &config.sink {
                $(
                    #[cfg($($cfg)*)]
                    SinkConfig::$variant(settings) => {
                        let sink = <$runtime as OpenSink>::open(settings, &config, context).await.map_err(sink_error)?;
                        task.with(sink, config).await
                    }
                )*
                #[allow(unreachable_patterns)]
                other => Err(ConnectorError::Config {
                    connector: connector.clone(),
                    message: format!(
                        "the {0} sink is not built into this binary; build it with the cargo feature `{0}` (e.g. `--features sqlite,{0}`)",
                        other.key()
                    ),
                }),
            }
        }
    };
}
crate::sinks::registry::each_sink!(with_sink);

/// Runs a connector on an already opened sink.
pub async fn run_with_sink<S: Sink>(
    sink: S,
    config: ConnectorConfig,
    control: ConnectorControl,
    on_start: impl FnOnce(ProgressReceiver) + Send,
) -> Result<(), ConnectorError> {
    run_partitions_with_sink(sink, config, None, control, on_start).await
}

/// [`run_with_sink`] for the partitions `held` only (the ones this gateway holds when the
/// connector's partitions are shared out), or all of them.
async fn run_partitions_with_sink<S: Sink>(
    sink: S,
    config: ConnectorConfig,
    held: Option<Vec<u32>>,
    control: ConnectorControl,
    on_start: impl FnOnce(ProgressReceiver) + Send,
) -> Result<(), ConnectorError> {
    let connector = config.id.clone();
    let config_error = |message: String| ConnectorError::Config { connector: connector.clone(), message };
    let sink = Arc::new(sink);
    let partitioner = Partitioner::new(&config.partitioning);
    let count = partitioner.count();

    let sink_error = |error| ConnectorError::Sink { connector: connector.clone(), error };
    let source_error = |error| ConnectorError::Source { connector: connector.clone(), error };
    let telemetry = crate::telemetry::for_connector(&connector);
    let endpoints = match &config.sidecar {
        Some(sidecar) => {
            let endpoints = reducer::Endpoints::start(&connector, sidecar, count, telemetry.clone()).await;
            Some(endpoints.map_err(|e| config_error(format!("sidecar: {e}")))?)
        }
        None => None,
    };
    let mut filter = EventFilter::new(&config.filter).map_err(|e| config_error(format!("filter: {e}")))?;
    // The source is opened before the sidecar is asked anything, so a log that cannot be read
    // is reported at once, whether or not the sidecar is up yet.
    // Only here, at the start: a rebuild below, or a re-plan, finds no rows for other reasons.
    takeover::take_over_eventuous_checkpoint(&*sink, &config, count).await.map_err(sink_error)?;
    let mut plan = resume_plan(&*sink, &config, count, held.as_deref()).await.map_err(sink_error)?;
    let mut source = sources::open(&config.source, &config.filter, plan.start()).await.map_err(source_error)?;
    if let Some(endpoints) = &endpoints {
        match reducer::describe(endpoints.view(), &connector, &control.shutdown).await {
            Ok(Described::Yes(description)) => {
                let blue_green = config.sidecar.as_ref().is_some_and(|s| s.new_version_policy() == crate::config::OnNewVersion::BlueGreen);
                if blue_green && !description.version.is_empty() {
                    match wait_for_version(&*sink, endpoints, &config, &description, &control).await? {
                        Some(()) => {}
                        None => return Ok(()),
                    }
                } else if adopt_description(&*sink, &config, &description).await.map_err(sink_error)? {
                    // Rebuilt: the checkpoints are gone, read the log from its start.
                    plan = resume_plan(&*sink, &config, count, held.as_deref()).await.map_err(sink_error)?;
                    source = sources::open(&config.source, &config.filter, plan.start()).await.map_err(source_error)?;
                }
                if !description.event_types.is_empty() {
                    filter.restrict_types(description.event_types);
                }
            }
            Ok(Described::NotSupported) => {}
            Ok(Described::Stopped) => return Ok(()),
            Err(e) => return Err(config_error(e.to_string())),
        }
    }
    if plan.partition_count_changed() {
        info!(connector = %connector, "the partition count changed to {count}; events applied under the earlier count are skipped");
    }
    let (progress_tx, progress_rx) =
        progress::channel((0..count).map(|p| plan.position_of(p).unwrap_or(0)).collect());
    progress_tx.send_modify(|p| p.held = held.clone());
    on_start(progress_rx);
    match sink.count_parked().await {
        Ok(counted) => telemetry.parked.set(counted.unwrap_or(0) as i64),
        Err(e) => {
            warn!(connector = %connector, "cannot count the parked events (the parked_events gauge starts at 0): {e}");
            telemetry.parked.set(0)
        }
    };
    let answered = reducer::Answered::new(telemetry.connector.clone());
    if let Some(sidecar) = &config.sidecar {
        reducer::announce_answers(&connector, sidecar);
    }
    let stages = Stages { sink, config, filter, endpoints, progress: progress_tx, telemetry, answered, held };
    let mut replans = Backoff::new(Duration::from_millis(100), Duration::from_secs(10));
    loop {
        info!(connector = %connector, sink = stages.sink.name(), partitions = count, "resuming after position {}", plan.start());
        let run = control.child();
        match stages.run(plan, source, &run).await {
            Err(ConnectorError::Writer { error: WriterError::CheckpointMoved(error), .. }) if !control.abort.is_cancelled() => {
                if stages.sink.swapped().await.map_err(sink_error)? {
                    return Err(ConnectorError::Swapped { connector: connector.clone() });
                }
                // Someone else committed for this connector since its checkpoints were read:
                // whatever this run did not commit is planned again from what is stored now.
                let delay = replans.next_delay();
                warn!(connector = %connector, "{error}; re-planning from the stored checkpoints in {delay:?}");
                tokio::select! {
                    _ = control.abort.cancelled() => return Ok(()),
                    _ = control.shutdown.cancelled() => return Ok(()),
                    _ = tokio::time::sleep(delay) => {}
                }
                plan = resume_plan(&*stages.sink, &stages.config, count, stages.held.as_deref()).await.map_err(sink_error)?;
                stages.progress.send_modify(|p| {
                    for (partition, slot) in p.positions.iter_mut().enumerate() {
                        *slot = (*slot).max(plan.position_of(partition as u32).unwrap_or(0));
                    }
                });
                source = sources::open(&stages.config.source, &stages.config.filter, plan.start()).await.map_err(source_error)?;
            }
            other => return other,
        }
    }
}

/// What every run of a connector shares: the sink, the sidecar's endpoints, the filter, the
/// progress channel. A run is planned from the stored checkpoints; a run that finds them moved
/// under it ends, and the next one is planned again (`run_with_sink`).
struct Stages<S: Sink> {
    sink: Arc<S>,
    config: ConnectorConfig,
    filter: EventFilter,
    /// The sidecar's endpoints (its replicas), kept resolved while the connector runs.
    endpoints: Option<reducer::Endpoints>,
    progress: ProgressSender,
    telemetry: Arc<crate::telemetry::ConnectorTelemetry>,
    /// What the partitions learn of the sidecar's answers, kept across re-plans.
    answered: Arc<reducer::Answered>,
    /// The partitions this run processes (the ones this gateway holds), or all of them.
    held: Option<Vec<u32>>,
}

impl<S: Sink> Stages<S> {
    /// Runs the stages from `plan` until the source is drained after a shutdown, or a stage
    /// fails (then every stage of this run is aborted).
    async fn run(&self, plan: ResumePlan, source: Box<dyn sources::EventSource>, control: &ConnectorControl) -> Result<(), ConnectorError> {
        let (config, sink) = (&self.config, &self.sink);
        let connector = config.id.clone();
        let partitioner = Partitioner::new(&config.partitioning);
        let count = partitioner.count();
        let writer_count = sink.writer_count().clamp(1, count as usize);
        let stored: Vec<Option<Position>> = (0..count).map(|p| plan.position_of(p)).collect();
        let mut tasks: JoinSet<Result<(), ConnectorError>> = JoinSet::new();
        let mut writer_inputs = Vec::with_capacity(writer_count);
        for _ in 0..writer_count {
            let (tx, rx) = mpsc::channel(config.batch.max_ops.max(64) * 2);
            writer_inputs.push(tx);
            let writer = writer::Writer {
                sink: sink
                    .open_writer()
                    .await
                    .map_err(|error| ConnectorError::Sink { connector: connector.clone(), error })?,
                input: rx,
                batch: config.batch.clone(),
                partition_count: count,
                stored: stored.clone(),
                policy: config.poison,
                progress: self.progress.clone(),
                abort: control.abort.clone(),
                telemetry: self.telemetry.clone(),
            };
            let connector = connector.clone();
            tasks.spawn(async move { writer.run().await.map_err(|error| ConnectorError::Writer { connector, error }) }.in_current_span());
        }

        let reducers = self.endpoints.as_ref().zip(config.sidecar.clone()).map(|(endpoints, sidecar)| (endpoints, Arc::new(sidecar)));
        let mut partition_inputs = Vec::with_capacity(count as usize);
        for partition in 0..count {
            if self.held.as_ref().is_some_and(|held| !held.contains(&partition)) {
                // Another gateway's: the router drops its events.
                partition_inputs.push(None);
                continue;
            }
            let output = writer_inputs[partition as usize % writer_count].clone();
            let connector = connector.clone();
            let reducer_error = |error| ConnectorError::Reducer { connector, error };
            match &reducers {
                Some((endpoints, sidecar)) => {
                    let (tx, rx) = mpsc::channel(sidecar.window.max(16));
                    partition_inputs.push(Some(tx));
                    let reducer = PartitionReducer {
                        partition,
                        endpoints: endpoints.view(),
                        sink: sink.clone(),
                        config: sidecar.clone(),
                        policy: config.poison,
                        input: rx,
                        output,
                        abort: control.abort.clone(),
                        telemetry: self.telemetry.clone(),
                        silence: reducer::Silence::new(self.answered.clone(), Duration::from_millis(sidecar.request_timeout_ms)),
                    };
                    tasks.spawn(async move { reducer.run().await.map_err(reducer_error) }.in_current_span());
                }
                None => {
                    let (tx, rx) = mpsc::channel(config.batch.max_ops.max(64));
                    partition_inputs.push(Some(tx));
                    let producer = producer::PartitionProducer {
                        partition,
                        sink: sink.clone(),
                        policy: config.poison,
                        input: rx,
                        output,
                        abort: control.abort.clone(),
                        connector: self.telemetry.connector.clone(),
                    };
                    tasks.spawn(async move { producer.run().await.map_err(reducer_error) }.in_current_span());
                }
            }
        }
        drop(writer_inputs);

        let router = router::Router {
            source,
            filter: self.filter.clone(),
            partitioner,
            plan,
            partitions: partition_inputs,
            shutdown: control.shutdown.clone(),
            abort: control.abort.clone(),
            telemetry: self.telemetry.clone(),
        };
        {
            let connector = connector.clone();
            tasks.spawn(async move { router.run().await.map_err(|error| ConnectorError::Source { connector, error }) }.in_current_span());
        }

        // The first real failure stops everything; a reducer that only noticed its writer was gone
        // is a consequence, not the cause, so the writer's own error is preferred.
        let mut first_error: Option<ConnectorError> = None;
        while let Some(joined) = tasks.join_next().await {
            let result = joined.unwrap_or_else(|e| {
                Err(ConnectorError::Config { connector: connector.clone(), message: format!("a task panicked: {e}") })
            });
            if let Err(e) = result {
                control.abort.cancel();
                let is_consequence = matches!(&e, ConnectorError::Reducer { error: ReducerError::SinkGone(_), .. });
                match &first_error {
                    None => first_error = Some(e),
                    Some(ConnectorError::Reducer { error: ReducerError::SinkGone(_), .. }) if !is_consequence => {
                        first_error = Some(e)
                    }
                    Some(_) => {}
                }
            }
        }
        // The reducers that counted them are gone; the next run counts its own.
        self.telemetry.in_flight.set(0);
        match first_error {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

/// Records the projection version the sidecar described, rebuilding the read model when it
/// changed and the connector asks for it (`sidecar.rebuild_on_new_version`). Returns true when
/// the read model was rebuilt.
async fn adopt_description<S: Sink>(sink: &S, config: &ConnectorConfig, description: &DescribeResponse) -> Result<bool, SinkError> {
    if description.version.is_empty() {
        return Ok(false);
    }
    let (name, version) = (&description.projection, &description.version);
    match sink.projection_version().await? {
        None => sink.record_projection_version(name, version, None).await.map(|()| false),
        Some(recorded) if &recorded == version => Ok(false),
        Some(recorded) if config.sidecar.as_ref().is_some_and(|s| s.rebuild_on_new_version) => {
            let mut reset = Vec::new();
            for (n, any) in description.reset_operations.iter().enumerate() {
                match sink.decode(any) {
                    Ok(op) => reset.extend(op),
                    Err(e) => return Err(SinkError::reset(format!("reset operation {} of the sidecar's Describe: {e}", n + 1))),
                }
            }
            info!(
                connector = %config.id,
                "projection `{name}` changed from version {recorded} to {version}: rebuilding the read model ({} reset operation(s), checkpoints deleted)",
                reset.len()
            );
            sink.record_projection_version(name, version, Some(reset)).await.map(|()| true)
        }
        Some(recorded) => {
            warn!(
                connector = %config.id,
                "the sidecar reports projection `{name}` version {version}, but the read model was built by version {recorded}; \
                 set `sidecar.rebuild_on_new_version: true` to rebuild it"
            );
            Ok(false)
        }
    }
}

/// `sidecar.on_new_version: blue_green`: the live run applies operations only while its sidecar
/// reports the version its read model records (`pipeline/blue_green.rs`). Records the version
/// when none is, pins it (the sink fences its batches with it) and returns `Some`; otherwise
/// pauses (no stage runs, the connector shows `waiting_for_sidecar`), asking again every
/// [`VERSION_CHECK`], until the sidecar reports the recorded version, or a swap made the read
/// model another (`Err(Swapped)`: the connector reopens its sink), or the connector stops
/// (`None`).
async fn wait_for_version<S: Sink>(
    sink: &S,
    endpoints: &reducer::Endpoints,
    config: &ConnectorConfig,
    description: &DescribeResponse,
    control: &ConnectorControl,
) -> Result<Option<()>, ConnectorError> {
    let connector = &config.id;
    let sink_error = |error| ConnectorError::Sink { connector: connector.clone(), error };
    let outage = &crate::telemetry::for_connector(connector).sidecar_outage;
    let mut reported = description.version.clone();
    let paused_at = std::time::Instant::now();
    loop {
        if sink.swapped().await.map_err(sink_error)? {
            return Err(ConnectorError::Swapped { connector: connector.clone() });
        }
        match sink.projection_version().await.map_err(sink_error)? {
            None => {
                sink.record_projection_version(&description.projection, &reported, None).await.map_err(sink_error)?;
                sink.pin_version(&reported);
                return Ok(Some(()));
            }
            Some(recorded) if recorded == reported => {
                if outage.succeeded(paused_at).is_some() {
                    info!(connector = %connector, "the sidecar reports version {reported} again, the read model's: applying operations again");
                }
                sink.pin_version(&reported);
                return Ok(Some(()));
            }
            Some(recorded) => {
                let reason = format!("the sidecar reports projection version {reported}, the read model was built by version {recorded}");
                if outage.failed(&reason) {
                    warn!(
                        connector = %connector,
                        "paused: {reason}; no operation is applied until the sidecar reports version {recorded} or a blue/green rebuild \
                         swaps version {reported} in (state waiting_for_sidecar)"
                    );
                }
            }
        }
        tokio::select! {
            _ = control.shutdown.cancelled() => return Ok(None),
            _ = control.abort.cancelled() => return Ok(None),
            _ = tokio::time::sleep(VERSION_CHECK) => {}
        }
        match reducer::describe(endpoints.view(), connector, &control.shutdown).await {
            Ok(Described::Yes(description)) if !description.version.is_empty() => reported = description.version,
            Ok(Described::Stopped) => return Ok(None),
            Ok(_) => {}
            Err(e) => return Err(ConnectorError::Config { connector: connector.clone(), message: e.to_string() }),
        }
    }
}

/// How often a paused live run asks its sidecar's version again.
const VERSION_CHECK: Duration = Duration::from_secs(1);

/// Where to resume, from the stored checkpoints; deletes those of an earlier partition count
/// that are no longer needed.
async fn resume_plan<S: Sink>(sink: &S, config: &ConnectorConfig, count: u32, held: Option<&[u32]>) -> Result<ResumePlan, SinkError> {
    let rows = sink.load_checkpoints().await?;
    let plan = ResumePlan::new(&rows, config.partitioning.key, count);
    let plan = match held {
        Some(held) => plan.only(held),
        None => plan,
    };
    for obsolete in plan.obsolete_counts() {
        sink.delete_checkpoints(obsolete).await?;
    }
    Ok(plan)
}
