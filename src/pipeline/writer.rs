//! The batcher and the sink writer loop: collects the partitions' items into batches of up to
//! `max_ops` operations, applies each batch with its checkpoints in one transaction, retries
//! transient failures with backoff, and isolates the event that makes a batch fail so the
//! poison policy decides about that event alone and everything before it is still applied.

use std::{sync::Arc, time::Duration};

use tokio::{sync::mpsc, time::Instant};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info, warn};

use super::progress::ProgressSender;
use crate::{
    backoff::Backoff,
    config::{BatchConfig, PoisonPolicy},
    event::Position,
    sinks::{ApplyError, Batch, BatchItem, EventRef, SinkWriter},
    telemetry::ConnectorTelemetry,
    traces,
};

/// Why a writer stopped.
#[derive(Debug, thiserror::Error)]
pub enum WriterError {
    #[error("{event}: applying its operations failed: {error}. The checkpoint stays before this event (poison policy `stop`); fix the cause (or set `poison: skip` or `park`) and restart")]
    Poisoned { event: Box<EventRef>, error: ApplyError },
    #[error("applying a batch failed: {0}. The checkpoint stays before this batch, so it is applied again once the cause is fixed and the connector restarted")]
    Batch(ApplyError),
    /// The stored checkpoints are not what this run planned from: the connector re-plans.
    #[error("{0}")]
    CheckpointMoved(ApplyError),
}

pub(super) struct Writer<W: SinkWriter> {
    pub sink: W,
    pub input: mpsc::Receiver<BatchItem<W::Op>>,
    pub batch: BatchConfig,
    pub partition_count: u32,
    /// Per partition, the position stored in the target as this writer last knew it (loaded
    /// at start, then what it committed): every batch is planned from it (`Batch::fenced`).
    pub stored: Vec<Option<Position>>,
    pub policy: PoisonPolicy,
    pub progress: ProgressSender,
    pub abort: CancellationToken,
    pub telemetry: Arc<ConnectorTelemetry>,
}

impl<W: SinkWriter> Writer<W> {
    /// Runs until every partition feeding it has finished (input closed and drained), or until
    /// aborted.
    pub async fn run(mut self) -> Result<(), WriterError> {
        while let Some(items) = self.collect().await {
            self.apply_all(items).await?;
        }
        Ok(())
    }

    /// Waits for the first item, then takes whatever else is ready up to `max_ops` operations,
    /// and what arrives within `max_wait_ms`, or, while the sidecar holds a backlog (more events
    /// in flight than partitions), within `adaptive_wait_ms`: their answers are on their way,
    /// and a sidecar that is the bottleneck would otherwise make a transaction of every answer
    /// or two. A live event or two in flight is no backlog: nothing waits for them.
    async fn collect(&mut self) -> Option<Vec<BatchItem<W::Op>>> {
        let first = tokio::select! {
            biased;
            _ = self.abort.cancelled() => return None,
            item = self.input.recv() => item?,
        };
        let mut ops = first.op_count();
        let mut items = vec![first];
        let linger = Duration::from_millis(self.batch.max_wait_ms);
        let deadline = Instant::now() + linger;
        let adaptive_deadline = Instant::now() + Duration::from_millis(self.batch.adaptive_wait_ms);
        while ops < self.batch.max_ops {
            let next = match self.input.try_recv() {
                Ok(item) => Some(item),
                Err(_) if !linger.is_zero() => tokio::time::timeout_at(deadline, self.input.recv()).await.ok().flatten(),
                Err(_) if self.sidecar_has_a_backlog() && Instant::now() < adaptive_deadline => {
                    tokio::time::timeout_at(adaptive_deadline, self.input.recv()).await.ok().flatten()
                }
                Err(_) => None,
            };
            let Some(item) = next else { break };
            ops += item.op_count();
            items.push(item);
        }
        Some(items)
    }

    /// Whether more events are at the sidecar than the connector has partitions: a backlog the
    /// sidecar works through, not the odd live event on its way.
    fn sidecar_has_a_backlog(&self) -> bool {
        self.telemetry.in_flight.get() > i64::from(self.partition_count)
    }

    /// Applies the items, isolating and handing to the poison policy any item that fails.
    async fn apply_all(&mut self, mut items: Vec<BatchItem<W::Op>>) -> Result<(), WriterError> {
        while !items.is_empty() {
            let batch = Arc::new(Batch::fenced(items, self.partition_count, &self.stored));
            if batch.is_empty() {
                // Only read-progress marks behind what is stored: nothing to write.
                return Ok(());
            }
            let Err(error) = self.apply_retrying(&batch).await else {
                for checkpoint in &batch.checkpoints {
                    self.stored[checkpoint.partition as usize] = Some(checkpoint.position);
                }
                self.publish(&batch);
                return Ok(());
            };
            if self.abort.is_cancelled() {
                // Stopped at once (a stop past the drain, or another stage failed): what was
                // not committed is read again at the next start, so this is no failure.
                return Ok(());
            }
            if error.checkpoint_moved {
                return Err(WriterError::CheckpointMoved(error));
            }
            // A sink that still holds the batch (a request it could not cancel) leaves nothing
            // to isolate the failing item in: the failure is the batch's.
            let Some(batch) = Arc::into_inner(batch) else {
                return Err(WriterError::Batch(error));
            };
            items = batch.items;
            let Some(failed) = error.failed_at else {
                return Err(WriterError::Batch(error));
            };
            // Everything before the failing item is fine: apply it on its own first.
            let mut rest = items.split_off(failed);
            if !items.is_empty() {
                Box::pin(self.apply_all(items)).await?;
            }
            let culprit = rest.remove(0);
            let replacement = self.poisoned(culprit, error)?;
            items = std::iter::once(replacement).chain(rest).collect();
        }
        Ok(())
    }

    /// What replaces an item whose operations fail, by policy.
    fn poisoned(&self, item: BatchItem<W::Op>, error: ApplyError) -> Result<BatchItem<W::Op>, WriterError> {
        let BatchItem::Apply { event, .. } = item else {
            // Parking itself failed: there is nothing left to fall back to.
            return Err(WriterError::Batch(error));
        };
        traces::poisoned(&event.span, self.policy, &error.message);
        match self.policy {
            PoisonPolicy::Stop => Err(WriterError::Poisoned { event: Box::new(event), error }),
            PoisonPolicy::Skip => {
                warn!("skipping {event} (poison policy `skip`): {error}");
                Ok(BatchItem::Advance { partition: event.partition, position: event.event.position })
            }
            PoisonPolicy::Park => {
                warn!("parking {event} (poison policy `park`): {error}");
                Ok(BatchItem::Park { event, error: error.message })
            }
        }
    }

    /// Applies one batch, retrying transient failures with backoff until it succeeds, fails
    /// for good, or the connector is aborted. An abort also ends an attempt in progress (one
    /// waiting on an endpoint's `Retry-After`, or on a database that does not answer): every
    /// sink commits its checkpoint with or after the batch's effects, so an attempt cut short
    /// leaves the checkpoint before the batch and a restart applies it again.
    async fn apply_retrying(&mut self, batch: &Arc<Batch<W::Op>>) -> Result<(), ApplyError> {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(10));
        let operations = batch.items.iter().map(BatchItem::op_count).sum::<usize>();
        let positions = batch.items.first().zip(batch.items.last()).map(|(first, last)| (first.position(), last.position()));
        let mut attempt_number = 0;
        loop {
            attempt_number += 1;
            let span = traces::batch_span(
                &self.telemetry.connector,
                batch.items.iter().filter_map(BatchItem::event).map(|e| &e.span),
                (batch.items.len(), operations),
                positions,
                attempt_number,
            );
            let started = Instant::now();
            let attempt = tokio::select! {
                biased;
                result = self.sink.apply(batch.clone()).instrument(span.clone()) => result,
                _ = self.abort.cancelled() => return Err(ApplyError {
                    message: format!("connector stopping: the batch of {} item(s) being applied was not committed (applied again on restart)", batch.items.len()),
                    transient: false,
                    failed_at: None,
                    checkpoint_moved: false,
                }),
            };
            if let Err(e) = &attempt {
                traces::batch_failed(&span, e);
            }
            drop(span);
            match attempt {
                Ok(()) => {
                    if let Some((lasted, repeats)) = self.telemetry.target_outage.succeeded(started.into_std()) {
                        info!(
                            connector = %self.telemetry.connector,
                            "the target accepts batches again after {lasted:.1?} ({repeats} more failed attempt(s) while it was failing)"
                        );
                    }
                    self.telemetry.batch_apply.observe_duration(started.elapsed());
                    self.telemetry.batch_operations.observe(operations as f64);
                    return Ok(());
                }
                Err(e) if e.transient => {
                    self.telemetry.batch_retries.inc();
                    let delay = backoff.next_delay();
                    if self.telemetry.target_outage.failed(&e) {
                        warn!(
                            connector = %self.telemetry.connector,
                            "{e}; retrying the batch of {} item(s) with backoff; repeats are logged at debug level until a \
                             batch commits",
                            batch.items.len()
                        );
                    } else {
                        debug!(connector = %self.telemetry.connector, "{e}; retrying the batch of {} item(s) in {delay:?}", batch.items.len());
                    }
                    tokio::select! {
                        _ = self.abort.cancelled() => return Err(ApplyError { message: format!("{e} (gave up: connector stopping)"), transient: false, failed_at: None, checkpoint_moved: false }),
                        _ = tokio::time::sleep(delay) => {}
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn publish(&self, batch: &Batch<W::Op>) {
        self.progress.send_modify(|p| {
            for checkpoint in &batch.checkpoints {
                if let Some(slot) = p.positions.get_mut(checkpoint.partition as usize) {
                    *slot = (*slot).max(checkpoint.position);
                }
            }
            for item in &batch.items {
                match item {
                    BatchItem::Apply { ops, .. } => {
                        p.events_applied += 1;
                        p.ops_applied += ops.len() as u64;
                    }
                    BatchItem::Park { .. } => {
                        p.events_parked += 1;
                        self.telemetry.parked.inc();
                    }
                    BatchItem::Advance { .. } => {}
                }
            }
            p.batches += 1;
        });
    }
}

#[cfg(test)]
mod tests {
    //! How the writer groups what arrives into batches, on a paused clock: an item sent "1 ms
    //! later" arrives exactly then, so the waits are measured, not raced.

    use std::sync::Arc;

    use tokio::time::{Duration, Instant};

    use super::*;
    use crate::{
        event::{ContentType, Event},
        pipeline::progress,
        sinks::{Batch, SinkWriter},
    };

    struct NoSink;

    impl SinkWriter for NoSink {
        type Op = ();

        async fn apply(&mut self, _: Arc<Batch<()>>) -> Result<(), ApplyError> {
            Ok(())
        }
    }

    fn item(position: u64) -> BatchItem<()> {
        let event = Event {
            position,
            stream: "s".into(),
            revision: 0,
            event_type: "T".into(),
            event_id: position.to_string(),
            data: Default::default(),
            content_type: ContentType::Json,
            metadata: None,
            created: chrono::Utc::now(),
        };
        BatchItem::Apply { event: EventRef::new(Arc::new(event), 0), ops: vec![()] }
    }

    /// A writer of connector `connector` (its own telemetry) and the sender of its input.
    fn writer(connector: &str) -> (Writer<NoSink>, mpsc::Sender<BatchItem<()>>) {
        let (tx, input) = mpsc::channel(64);
        let writer = Writer {
            sink: NoSink,
            input,
            batch: BatchConfig::default(),
            partition_count: 1,
            stored: vec![None],
            policy: PoisonPolicy::Stop,
            progress: progress::channel(vec![0]).0,
            abort: CancellationToken::new(),
            telemetry: crate::telemetry::for_connector(connector),
        };
        (writer, tx)
    }

    /// Sends `positions` one millisecond apart, the first at once.
    fn trickle(tx: mpsc::Sender<BatchItem<()>>, positions: std::ops::Range<u64>) {
        tokio::spawn(async move {
            for position in positions {
                tx.send(item(position)).await.unwrap();
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        });
    }

    #[tokio::test(start_paused = true)]
    async fn with_no_backlog_at_the_sidecar_a_batch_goes_at_once() {
        let (mut writer, tx) = writer("writer-idle");
        // One event in flight per partition at most: live traffic, not a backlog.
        writer.telemetry.in_flight.set(1);
        trickle(tx, 1..4);
        let started = Instant::now();
        let batch = writer.collect().await.expect("a batch");
        assert_eq!(batch.len(), 1, "nothing was in flight: the live event goes alone");
        assert_eq!(started.elapsed(), Duration::ZERO);
        writer.telemetry.in_flight.set(0);
    }

    #[tokio::test(start_paused = true)]
    async fn while_events_are_at_the_sidecar_their_answers_are_waited_for() {
        let (mut writer, tx) = writer("writer-busy");
        writer.telemetry.in_flight.set(3);
        // The input stays open (the sender is kept): only the bound ends the wait.
        trickle(tx.clone(), 1..4);
        let started = Instant::now();
        let batch = writer.collect().await.expect("a batch");
        assert_eq!(batch.len(), 3, "the answers that came within adaptive_wait_ms joined the batch");
        // Then nothing more comes: the wait ends at its bound, 5 ms after the first item.
        assert_eq!(started.elapsed(), Duration::from_millis(5));
        writer.telemetry.in_flight.set(0);
        drop(tx);
    }

    #[tokio::test(start_paused = true)]
    async fn the_adaptive_wait_can_be_turned_off() {
        let (mut writer, tx) = writer("writer-off");
        writer.batch.adaptive_wait_ms = 0;
        writer.telemetry.in_flight.set(3);
        trickle(tx, 1..4);
        let batch = writer.collect().await.expect("a batch");
        assert_eq!(batch.len(), 1);
        writer.telemetry.in_flight.set(0);
    }
}
