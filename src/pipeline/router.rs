//! Reads the source and routes each event to its partition: events the filter rejects or that
//! an earlier run already applied are dropped here, and after every source batch each
//! partition gets a "read up to" mark so its checkpoint moves even when none of its events
//! were in the batch (a filtered or quiet partition never holds the connector back).

use std::{sync::Arc, time::Duration};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::{
    backoff::Backoff,
    checkpoint::ResumePlan,
    filter::EventFilter,
    partition::Partitioner,
    reducer::RoutedItem,
    sources::{EventSource, SourceError},
    telemetry::ConnectorTelemetry,
};

pub(super) struct Router {
    pub source: Box<dyn EventSource>,
    pub filter: EventFilter,
    pub partitioner: Partitioner,
    pub plan: ResumePlan,
    /// Each partition's input; `None` for a partition another gateway runs (its events are
    /// dropped here).
    pub partitions: Vec<Option<mpsc::Sender<RoutedItem>>>,
    /// Stop reading (graceful shutdown): what was read is still processed.
    pub shutdown: CancellationToken,
    /// Stop at once.
    pub abort: CancellationToken,
    pub telemetry: Arc<ConnectorTelemetry>,
}

impl Router {
    pub async fn run(mut self) -> Result<(), SourceError> {
        let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(10));
        loop {
            let attempt_started = std::time::Instant::now();
            let batch = tokio::select! {
                biased;
                _ = self.abort.cancelled() => return Ok(()),
                _ = self.shutdown.cancelled() => return Ok(()),
                batch = self.source.next_batch() => batch,
            };
            let batch = match batch {
                Ok(batch) => {
                    backoff.reset();
                    if let Some((lasted, repeats)) = self.telemetry.source_outage.succeeded(attempt_started) {
                        info!("the source reads again after {lasted:.1?} ({repeats} more failed attempt(s) while it was failing)");
                    }
                    batch
                }
                Err(e) if e.is_transient() => {
                    let delay = backoff.next_delay();
                    if self.telemetry.source_outage.failed(&e) {
                        warn!("{e}; retrying with backoff; repeats are logged at debug level until the source reads again");
                    } else {
                        debug!("{e}; retrying in {delay:?}");
                    }
                    tokio::select! {
                        _ = self.abort.cancelled() => return Ok(()),
                        _ = self.shutdown.cancelled() => return Ok(()),
                        _ = tokio::time::sleep(delay) => continue,
                    }
                }
                Err(e) => return Err(e),
            };
            self.telemetry.events_read.inc_by(batch.events.len() as u64);
            for event in batch.events {
                if !self.filter.accepts(&event) {
                    self.telemetry.events_filtered.inc();
                    continue;
                }
                let partition = self.partitioner.partition_of(&event.stream);
                if self.plan.already_applied(event.position, &event.stream, partition) {
                    self.telemetry.events_already_applied.inc();
                    continue;
                }
                if !self.send(partition, RoutedItem::Event(Arc::new(event))).await {
                    return Ok(());
                }
            }
            for partition in 0..self.partitions.len() as u32 {
                if !self.send(partition, RoutedItem::ReadUpTo(batch.end)).await {
                    return Ok(());
                }
            }
        }
    }

    /// Hands an item to its partition, waiting for room (backpressure). False when the
    /// connector is stopping. An item of a partition this run does not process goes nowhere.
    async fn send(&self, partition: u32, item: RoutedItem) -> bool {
        let Some(input) = &self.partitions[partition as usize] else { return true };
        tokio::select! {
            biased;
            _ = self.abort.cancelled() => false,
            sent = input.send(item) => sent.is_ok(),
        }
    }
}
