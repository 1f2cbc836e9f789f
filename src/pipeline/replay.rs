//! Replaying parked events: each one read again from the log, sent through the connector's
//! sidecar as `run` sends it (the same partition stream code, retries and decoding) and applied
//! through the sink's own writer, then its parked record discarded.
//!
//! What a replay promises:
//! - **Order.** A replayed event is applied now, after everything its stream has applied since
//!   it was parked; the events of one replay are applied in log order. A reducer whose
//!   operations for a stream depend on order (an update a later event has overwritten) needs
//!   the later events projected again too: `reset --to-position` just before the parked event
//!   does that, and the parked record is discarded afterwards.
//! - **Once.** The operations and nothing else are committed (no checkpoint moves), then the
//!   record is discarded. A crash between the two leaves the event applied and still parked:
//!   replaying it again applies it twice; on SQL targets the statements of the sidecar run in
//!   one transaction, so a replay is never half applied.
//! - **Failure.** An event that fails again (the sidecar's error, an operation the target
//!   refuses, no answer) stays parked with both reasons; nothing of it is applied.
//! - An event the log no longer holds at its position (a truncated or scavenged log) is left
//!   parked and reported.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use tokio::sync::mpsc;

use super::{ConnectorError, WithSink, with_sink};
use crate::{
    config::{ConnectorConfig, PoisonPolicy},
    event::{Event, Position},
    partition::Partitioner,
    reducer::{self, PartitionReducer, RoutedItem},
    sinks::{
        Batch, BatchItem, EventRef, Sink, SinkError, SinkWriter,
        parked::{ParkedEvent, ParkedQuery},
    },
    sources,
};

/// How long reading one event back from the log may take.
const READ_TIMEOUT: Duration = Duration::from_secs(30);

/// What became of each parked event a replay was asked for.
#[derive(Debug, Default, serde::Serialize)]
pub struct ReplayOutcome {
    /// Applied, and its parked record discarded.
    pub applied: Vec<String>,
    /// Failed again: still parked, with both reasons.
    pub parked_again: Vec<Replayed>,
    /// Not replayed: not parked (any more), or the log no longer holds it.
    pub not_replayed: Vec<Replayed>,
}

/// A parked record and what happened to it.
#[derive(Debug, serde::Serialize)]
pub struct Replayed {
    pub id: String,
    pub reason: String,
}

/// Replays the connector's parked events with these record ids, in log order.
pub async fn replay_parked(config: ConnectorConfig, ids: Vec<String>) -> Result<ReplayOutcome, ConnectorError> {
    with_sink(config, &super::RunContext::default(), Replay(ids)).await
}

struct Replay(Vec<String>);

impl WithSink for Replay {
    type Output = ReplayOutcome;

    async fn with<S: Sink>(self, sink: S, config: ConnectorConfig) -> Result<ReplayOutcome, ConnectorError> {
        let connector = config.id.clone();
        let sink_error = |error: SinkError| ConnectorError::Sink { connector: connector.clone(), error };
        let config_error = |message: String| ConnectorError::Config { connector: connector.clone(), message };
        let Some(sidecar) = config.sidecar.clone() else {
            return Err(config_error("a producer connector (no sidecar) parks nothing it could replay".into()));
        };
        let query = ParkedQuery { ids: self.0.clone(), ..Default::default() };
        let parked = sink.parked_events(&query).await.map_err(sink_error)?;
        let mut outcome = ReplayOutcome::default();
        for id in self.0.iter().filter(|id| !parked.iter().any(|p| &p.id == *id)) {
            outcome.not_replayed.push(Replayed { id: id.clone(), reason: "no such parked event".into() });
        }

        // The events, read back from the log.
        let partitioner = Partitioner::new(&config.partitioning);
        let mut events: Vec<(ParkedEvent, EventRef)> = Vec::new();
        for record in parked {
            match read_back(&config, &record).await {
                Ok(event) => {
                    let partition = partitioner.partition_of(&event.stream);
                    events.push((record, EventRef::new(Arc::new(event), partition)));
                }
                Err(reason) => outcome.not_replayed.push(Replayed { id: record.id, reason }),
            }
        }

        // Through the sidecar (any of its replicas), one stream per partition, as `run` sends them.
        let telemetry = crate::telemetry::for_connector(&connector);
        let endpoints = reducer::Endpoints::start(&connector, &sidecar, partitioner.count(), telemetry.clone())
            .await
            .map_err(|e| config_error(format!("sidecar: {e}")))?;
        // A sidecar that is down would make every event look failed again: nothing is replayed.
        if let Err(e) = any_replica_answers(&endpoints, &connector).await {
            return Err(config_error(format!("{e}; nothing was replayed, every event is still parked as it was")));
        }
        let sidecar = Arc::new(sidecar);
        let sink = Arc::new(sink);
        let answered = reducer::Answered::new(telemetry.connector.clone());
        let mut by_partition: BTreeMap<u32, Vec<Arc<Event>>> = BTreeMap::new();
        for (_, event) in &events {
            by_partition.entry(event.partition).or_default().push(event.event.clone());
        }
        let (output, mut answers) = mpsc::channel::<BatchItem<S::Op>>(events.len().max(1) * 2 + 16);
        let abort = tokio_util::sync::CancellationToken::new();
        let mut streams = tokio::task::JoinSet::new();
        for (partition, partition_events) in by_partition {
            let (input, rx) = mpsc::channel(partition_events.len() + 1);
            for event in partition_events {
                let _ = input.try_send(RoutedItem::Event(event));
            }
            drop(input);
            let reducer = PartitionReducer {
                partition,
                endpoints: endpoints.view(),
                sink: sink.clone(),
                config: sidecar.clone(),
                policy: PoisonPolicy::Park,
                input: rx,
                output: output.clone(),
                abort: abort.clone(),
                telemetry: telemetry.clone(),
                silence: reducer::Silence::new(answered.clone(), Duration::from_millis(sidecar.request_timeout_ms)),
            };
            streams.spawn(reducer.run());
        }
        drop(output);
        // Every attempt of every event, and some slack: a sidecar that never answers (one that
        // answers only what it handles, asked about an event it now ignores) ends the replay.
        let patience = Duration::from_millis(sidecar.request_timeout_ms) * (sidecar.max_retries + 1) * (events.len() as u32 + 1)
            + Duration::from_secs(10);
        let mut results: BTreeMap<(u32, Position), BatchItem<S::Op>> = BTreeMap::new();
        let collected = tokio::time::timeout(patience, async {
            while let Some(item) = answers.recv().await {
                if let Some(event) = item.event() {
                    results.insert((event.partition, event.event.position), item);
                }
            }
        })
        .await;
        abort.cancel();
        while let Some(ended) = streams.join_next().await {
            if let Ok(Err(error)) = ended {
                return Err(ConnectorError::Reducer { connector: connector.clone(), error });
            }
        }
        if collected.is_err() {
            tracing::warn!(connector = %connector, "replay: the sidecar did not answer every event within {patience:?}");
        }

        // Applied in log order, each in a transaction of its own with no checkpoint.
        let count = partitioner.count();
        let mut writer = sink.open_writer().await.map_err(sink_error)?;
        events.sort_by_key(|(_, event)| event.event.position);
        let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        for (record, event) in events {
            let again = |reason: &str| format!("replayed at {now} and failed again: {reason} (parked before: {})", record.error);
            let item = results.remove(&(event.partition, event.event.position));
            let failed = match item {
                Some(BatchItem::Apply { event, ops }) => {
                    let batch = Batch { items: vec![BatchItem::Apply { event, ops }], checkpoints: vec![], partition_count: count };
                    match writer.apply(Arc::new(batch)).await {
                        Ok(()) => None,
                        Err(e) => Some(e.message),
                    }
                }
                Some(BatchItem::Park { error, .. }) => Some(error),
                Some(BatchItem::Advance { .. }) | None => Some("the sidecar did not answer".to_owned()),
            };
            match failed {
                None => {
                    sink.discard_parked(std::slice::from_ref(&record.id)).await.map_err(sink_error)?;
                    outcome.applied.push(record.id);
                }
                Some(reason) => {
                    let error = again(&reason);
                    park_again(&*sink, &mut writer, &record, event, &error, count).await.map_err(|e| {
                        sink_error(SinkError::refused(format!("parking event {} again failed: {e}", record.event_id)))
                    })?;
                    outcome.parked_again.push(Replayed { id: record.id, reason: error });
                }
            }
        }
        Ok(outcome)
    }
}

/// Whether one of the sidecar's replicas answers `Describe` (or says it does not serve it).
async fn any_replica_answers(endpoints: &reducer::Endpoints, connector: &str) -> Result<(), reducer::DescribeError> {
    let replicas = endpoints.view().current();
    let mut unreachable = None;
    for attempt in 0..replicas.len() as u32 {
        let endpoint = replicas.in_turn(attempt);
        match reducer::describe_once(endpoint.channel(), connector, &endpoint.to_string()).await {
            Err(e @ reducer::DescribeError::Unreachable { .. }) => unreachable = Some(e),
            _ => return Ok(()),
        }
    }
    unreachable.map_or(Ok(()), Err)
}

/// The event `record` names, read from the log at its position.
async fn read_back(config: &ConnectorConfig, record: &ParkedEvent) -> Result<Event, String> {
    let read = async {
        let mut source = sources::open(&config.source, &config.filter, record.position.saturating_sub(1)).await?;
        source.next_batch().await
    };
    let batch = tokio::time::timeout(READ_TIMEOUT, read)
        .await
        .map_err(|_| format!("the log did not give position {} within {READ_TIMEOUT:?}", record.position))?
        .map_err(|e| e.to_string())?;
    match batch.events.into_iter().next() {
        Some(event) if event.position == record.position && event.event_id == record.event_id => Ok(event),
        _ => Err(format!("the log no longer holds event {} at position {}", record.event_id, record.position)),
    }
}

/// Records the event as parked with `error`, and discards the earlier record unless the new one
/// replaced it (targets whose record id is the event's place in the log).
async fn park_again<S: Sink>(
    sink: &S,
    writer: &mut S::Writer,
    record: &ParkedEvent,
    event: EventRef,
    error: &str,
    count: u32,
) -> Result<(), String> {
    let batch = Batch { items: vec![BatchItem::Park { event, error: error.to_owned() }], checkpoints: vec![], partition_count: count };
    writer.apply(Arc::new(batch)).await.map_err(|e| e.message)?;
    let query = ParkedQuery { ids: vec![record.id.clone()], ..Default::default() };
    let still = sink.parked_events(&query).await.map_err(|e| e.to_string())?;
    if still.iter().any(|p| p.error != error) {
        sink.discard_parked(std::slice::from_ref(&record.id)).await.map_err(|e| e.to_string())?;
    }
    Ok(())
}
