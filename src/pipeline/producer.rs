//! The partition stage of a *producer* connector (one without a sidecar): the sink turns each
//! event into the operations that record it as it is (a document, a line, an HTTP request).
//! It takes the place of the reducer, so ordering, batching, checkpoints and the poison policy
//! are the same as for a projector.

use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::{
    config::PoisonPolicy,
    reducer::{ReducerError, RoutedItem, poisoned},
    sinks::{BatchItem, EventRef, Sink},
    traces,
};

pub struct PartitionProducer<S: Sink> {
    pub partition: u32,
    pub sink: Arc<S>,
    pub policy: PoisonPolicy,
    pub input: mpsc::Receiver<RoutedItem>,
    pub output: mpsc::Sender<BatchItem<S::Op>>,
    pub abort: CancellationToken,
    /// The connector's id, for the events' trace spans.
    pub connector: Arc<str>,
}

impl<S: Sink> PartitionProducer<S> {
    /// Runs until the input is closed, the connector is aborted, or an event is poisoned under
    /// policy `stop`.
    pub async fn run(mut self) -> Result<(), ReducerError> {
        loop {
            let item = tokio::select! {
                biased;
                _ = self.abort.cancelled() => return Ok(()),
                item = self.input.recv() => item,
            };
            let item = match item {
                None => return Ok(()),
                Some(RoutedItem::ReadUpTo(position)) => BatchItem::Advance { partition: self.partition, position },
                Some(RoutedItem::Event(event)) => {
                    let span = traces::event_span(&self.connector, self.partition, &event);
                    let event = EventRef::traced(event, self.partition, span);
                    match self.sink.produce(&event) {
                        Ok(ops) => BatchItem::Apply { event, ops },
                        Err(e) => {
                            let reason = format!("the {} sink cannot record it: {e}", self.sink.name());
                            poisoned(self.policy, event, reason)?
                        }
                    }
                }
            };
            self.output.send(item).await.map_err(|_| ReducerError::SinkGone(self.partition))?;
        }
    }
}
