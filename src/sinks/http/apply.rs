//! Delivering a batch to the endpoint, then saving its checkpoints.
//!
//! - `structured` and `binary`: one POST per event. Each partition's events are sent one after
//!   the other, in order; different partitions are sent side by side (up to
//!   [`MAX_IN_FLIGHT`] requests at a time).
//! - `batch`: the batch's events, in order, as JSON arrays of at most `max_batch_events`.
//!   When the endpoint rejects an array (a 4xx), its events are sent again one by one, each
//!   as an array of one, so the event it refuses is found: the events before it are delivered,
//!   and the poison policy decides about that event alone.
//!
//! Events parked by the poison policy are stored first (see `parked.rs`). The checkpoints are
//! saved only once every event of the batch was accepted (or parked), so the checkpoint never
//! passes an event the endpoint did not take. When an attempt fails part-way, the events the
//! endpoint already accepted are remembered and not sent again when the pipeline retries the
//! batch, or the events around a poisoned one; a crash before the checkpoint is saved sends
//! them again on restart (at-least-once: receivers can tell by the CloudEvent `id`).

use std::{collections::{BTreeMap, HashSet}, sync::Arc};

use bytes::{BufMut, Bytes, BytesMut};
use futures::StreamExt;
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderValue};
use tokio::time::Instant;
use tracing::warn;

use super::{HttpOp, Shared, cloudevent, send::{self, Failure}};
use crate::{
    config::HttpMode,
    event::Position,
    sinks::{ApplyError, Batch, BatchItem, EventRef, SinkWriter},
};

/// Requests in flight at once in `structured` and `binary` modes (one per partition).
pub const MAX_IN_FLIGHT: usize = 16;

pub struct HttpWriter {
    shared: Arc<Shared>,
    /// Events (partition, position) an earlier attempt delivered or parked, whose batch is not
    /// checkpointed yet.
    done: HashSet<(u32, Position)>,
    /// The endpoint asked not to be called again before then (`Retry-After`).
    not_before: Option<Instant>,
}

/// A request that failed, and the batch item it stands for.
struct Failed {
    at: usize,
    failure: Failure,
}

fn key(event: &EventRef) -> (u32, Position) {
    (event.partition, event.event.position)
}

impl HttpWriter {
    pub(super) fn new(shared: Arc<Shared>) -> Self {
        Self { shared, done: HashSet::new(), not_before: None }
    }

    async fn apply_batch(&mut self, batch: &Batch<HttpOp>) -> Result<(), ApplyError> {
        if let Some(at) = self.not_before.take() {
            tokio::time::sleep_until(at).await;
        }
        self.park(batch).await?;
        let failures = match self.shared.mode {
            HttpMode::Batch => self.deliver_in_arrays(batch).await,
            HttpMode::Structured | HttpMode::Binary => self.deliver_each(batch).await,
        };
        self.judge(failures)?;
        self.shared.checkpoints.save(batch.partition_count, &batch.positions()).await.map_err(|e| ApplyError {
            message: format!("{e} (the endpoint accepted the batch; it is not sent again)"),
            transient: true,
            failed_at: None,
            checkpoint_moved: false,
        })?;
        for item in &batch.items {
            self.done.remove(&(item.partition(), item.position()));
        }
        Ok(())
    }

    /// Stores the batch's parked events that an earlier attempt did not store.
    async fn park(&mut self, batch: &Batch<HttpOp>) -> Result<(), ApplyError> {
        let mut first = None;
        let parked: Vec<(&EventRef, &str)> = batch
            .items
            .iter()
            .enumerate()
            .filter_map(|(index, item)| match item {
                BatchItem::Park { event, error } if !self.done.contains(&key(event)) => {
                    first.get_or_insert(index);
                    Some((event, error.as_str()))
                }
                _ => None,
            })
            .collect();
        if parked.is_empty() {
            return Ok(());
        }
        let shared = &self.shared;
        shared.parked.park(&shared.connector, &shared.source, &parked).await.map_err(|e| ApplyError {
            message: e.message,
            transient: e.transient,
            // A parked item that fails stops the connector (there is nothing left to fall back to).
            failed_at: if e.transient { None } else { first }, checkpoint_moved: false,
        })?;
        self.done.extend(parked.iter().map(|(event, _)| key(event)));
        Ok(())
    }

    /// `structured`, `binary`: each event on its own, partitions side by side.
    async fn deliver_each(&mut self, batch: &Batch<HttpOp>) -> Vec<Failed> {
        let mut chains: BTreeMap<u32, Vec<(usize, &EventRef, &HttpOp)>> = BTreeMap::new();
        for (index, item) in batch.items.iter().enumerate() {
            if let BatchItem::Apply { event, ops } = item
                && !self.done.contains(&key(event))
            {
                chains.entry(event.partition).or_default().extend(ops.iter().map(|op| (index, event, op)));
            }
        }
        // Built before streaming them: a closure in the stream's type trips the compiler's
        // proof that the writer's future is `Send`.
        let chains: Vec<_> = chains.into_values().map(|chain| deliver_chain(&self.shared, chain)).collect();
        let results: Vec<ChainOutcome> = futures::stream::iter(chains).buffer_unordered(MAX_IN_FLIGHT).collect().await;
        let mut failures = Vec::new();
        for outcome in results {
            self.done.extend(outcome.delivered);
            failures.extend(outcome.failed);
        }
        failures
    }

    /// `batch`: the events in order, as arrays of at most `max_batch_events`.
    async fn deliver_in_arrays(&mut self, batch: &Batch<HttpOp>) -> Vec<Failed> {
        let pending: Vec<(usize, &EventRef, &Bytes)> = batch
            .items
            .iter()
            .enumerate()
            .filter_map(|(index, item)| match item {
                BatchItem::Apply { event, ops } if !self.done.contains(&key(event)) => Some((index, event, ops)),
                _ => None,
            })
            .flat_map(|(index, event, ops)| {
                ops.iter().map(move |op| match op {
                    HttpOp::Structured(body) => (index, event, body),
                    HttpOp::Binary { .. } => unreachable!("batch mode produces structured events"),
                })
            })
            .collect();
        for chunk in pending.chunks(self.shared.max_batch_events) {
            let failure = match self.post_array(chunk).await {
                Ok(()) => {
                    self.done.extend(chunk.iter().map(|(_, event, _)| key(event)));
                    continue;
                }
                Err(failure) => failure,
            };
            let (first, last) = (chunk[0].1, chunk[chunk.len() - 1].1);
            let failure = match failure {
                Failure::Rejected { message } if chunk.len() > 1 => {
                    warn!(
                        "HTTP sink: {message} (a batch of {} events, positions {} to {}); sending them one by one to find the event it refuses",
                        chunk.len(),
                        first.event.position,
                        last.event.position
                    );
                    match self.isolate(chunk).await {
                        Ok(()) => continue,
                        Err(failed) => return vec![failed],
                    }
                }
                rejected @ Failure::Rejected { .. } => return vec![Failed { at: chunk[0].0, failure: rejected }],
                other => other,
            };
            let events = if chunk.len() == 1 {
                format!("{first}")
            } else {
                format!("a batch of {} events (positions {} to {}, first {first})", chunk.len(), first.event.position, last.event.position)
            };
            return vec![Failed { at: chunk[0].0, failure: failure.map_message(|m| format!("{events}: {m}")) }];
        }
        Vec::new()
    }

    /// Sends the events of a rejected array one by one (each as an array of one) until the
    /// endpoint refuses one.
    async fn isolate(&mut self, chunk: &[(usize, &EventRef, &Bytes)]) -> Result<(), Failed> {
        for one in chunk.chunks(1) {
            let (index, event, _) = one[0];
            match self.post_array(one).await {
                Ok(()) => {
                    self.done.insert(key(event));
                }
                Err(Failure::Rejected { message }) => {
                    let message = format!("{message} (sent alone, after the endpoint rejected the batch of {} events it was in)", chunk.len());
                    return Err(Failed { at: index, failure: Failure::Rejected { message } });
                }
                Err(other) => return Err(Failed { at: index, failure: other.map_message(|m| format!("{event}: {m}")) }),
            }
        }
        Ok(())
    }

    async fn post_array(&self, events: &[(usize, &EventRef, &Bytes)]) -> Result<(), Failure> {
        let mut body = BytesMut::with_capacity(events.iter().map(|(_, _, b)| b.len() + 1).sum::<usize>() + 2);
        body.put_u8(b'[');
        for (n, (_, _, event)) in events.iter().enumerate() {
            if n > 0 {
                body.put_u8(b',');
            }
            body.put_slice(event);
        }
        body.put_u8(b']');
        send::post(&self.shared.endpoint, content_type(cloudevent::BATCH_CONTENT_TYPE), body.freeze()).await
    }

    /// What the failed requests mean for the batch: a refused request stops the connector, a
    /// rejected event goes to the poison policy (the earliest one, so everything before it is
    /// delivered first), the rest is retried.
    fn judge(&mut self, failures: Vec<Failed>) -> Result<(), ApplyError> {
        if failures.is_empty() {
            return Ok(());
        }
        if let Some(refused) = failures.iter().find(|f| matches!(f.failure, Failure::Refused { .. })) {
            return Err(ApplyError {
                message: format!(
                    "HTTP sink: {}. Every event would meet the same answer, so the connector stops whatever the poison policy, with the checkpoint before this event; fix the configuration and restart",
                    refused.failure.message()
                ),
                transient: false,
                failed_at: None,
                checkpoint_moved: false,
            });
        }
        if let Some(rejected) = failures.iter().filter(|f| matches!(f.failure, Failure::Rejected { .. })).min_by_key(|f| f.at) {
            return Err(ApplyError { message: format!("HTTP sink: {}", rejected.failure.message()), transient: false, failed_at: Some(rejected.at), checkpoint_moved: false });
        }
        let after = failures.iter().filter_map(|f| match f.failure {
            Failure::Transient { after, .. } => after,
            _ => None,
        });
        if let Some(after) = after.max() {
            self.not_before = Some(Instant::now() + after);
        }
        let more = match failures.len() {
            1 => String::new(),
            n => format!(" (and {} more partition(s) failing)", n - 1),
        };
        Err(ApplyError {
            message: format!("HTTP sink: {}{more}; the events the endpoint accepted are not sent again", failures[0].failure.message()),
            transient: true,
            failed_at: None,
            checkpoint_moved: false,
        })
    }
}

/// What became of one partition's events in `deliver_each`.
struct ChainOutcome {
    /// Accepted, in order.
    delivered: Vec<(u32, Position)>,
    /// The event that stopped the partition's chain, if one did.
    failed: Option<Failed>,
}

/// One partition's events, in order, until one fails.
async fn deliver_chain(shared: &Shared, chain: Vec<(usize, &EventRef, &HttpOp)>) -> ChainOutcome {
    let mut delivered = Vec::with_capacity(chain.len());
    for (index, event, op) in chain {
        let (headers, body) = match op {
            HttpOp::Structured(body) => (content_type(cloudevent::STRUCTURED_CONTENT_TYPE), body.clone()),
            HttpOp::Binary { headers, body } => (headers.clone(), body.clone()),
        };
        match send::post(&shared.endpoint, headers, body).await {
            Ok(()) => delivered.push(key(event)),
            Err(failure) => {
                let failure = match failure {
                    // The pipeline names the event of a rejected item itself.
                    rejected @ Failure::Rejected { .. } => rejected,
                    other => other.map_message(|m| format!("{event}: {m}")),
                };
                return ChainOutcome { delivered, failed: Some(Failed { at: index, failure }) };
            }
        }
    }
    ChainOutcome { delivered, failed: None }
}

fn content_type(value: &'static str) -> HeaderMap {
    HeaderMap::from_iter([(CONTENT_TYPE, HeaderValue::from_static(value))])
}

impl SinkWriter for HttpWriter {
    type Op = HttpOp;

    async fn apply(&mut self, batch: Arc<Batch<HttpOp>>) -> Result<(), ApplyError> {
        self.apply_batch(&batch).await
    }
}
