//! Applying a batch: its operations (and parked events) become `_bulk` requests of at most
//! `max_bulk_bytes`, sent in order; then, once every item is applied, one more `_bulk` request
//! writes the batch's checkpoints. The engine answers item by item, and each item is judged on
//! its own:
//!
//! - applied: a success, a delete of a missing document, or a version conflict where the
//!   operation is versioned by the event's position or is a producer's `create` (an earlier
//!   delivery of the same or a newer event wrote it: a replay);
//! - transient (429, 502-504, a conflict of an unversioned update with another writer): the
//!   batch is retried with backoff, and only what was not applied is sent again;
//! - anything else (a mapping conflict, a missing document, an invalid script): the first such
//!   item's event is named by `failed_at` for the poison policy.
//!
//! A request refused as a whole (413 too large, a body the engine cannot parse) names no item;
//! the rest of the batch is then sent one operation per request, which names the event the
//! engine cannot take, so the poison policy never gets an innocent neighbour.
//!
//! The engine has no transactions: the items that were applied stay applied. The writer
//! remembers them (per event and operation) and does not send them again when the pipeline
//! applies the rest of the batch around a failing event, so within a running gateway no
//! operation is applied twice.

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
};

use bytes::Bytes;
use elasticsearch::{BulkParts, Elasticsearch, http::headers::{CONTENT_TYPE, HeaderValue}, params::Refresh};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tracing::debug;

use super::{
    Names,
    checkpoints::{checkpoint_document, checkpoint_id},
    client::{self, RequestError},
    ops::{Action, ElasticOp},
};
use crate::{
    config::ElasticRefresh,
    event::Position,
    sinks::{ApplyError, Batch, BatchItem, CheckpointWrite, EventRef, SinkError, SinkWriter},
};

/// The operation number that stands for "the event was parked".
const PARKED: usize = usize::MAX;

pub struct ElasticWriter {
    client: Elasticsearch,
    names: Arc<Names>,
    connector: Arc<str>,
    /// Per event (partition, position): the operations (0-based; [`PARKED`] for a park) an
    /// earlier attempt applied, so they are not sent again.
    done: HashMap<(u32, Position), HashSet<usize>>,
    fence: Option<Fence>,
}

/// The live version a live run's sink opened on (`blue_green.rs`): checked before each batch,
/// so a run whose read model was swapped reopens its sink instead of writing on.
#[derive(Debug, Clone)]
pub struct Fence {
    pub connector: String,
    pub live: Option<String>,
}

impl Fence {
    pub(super) async fn moved(&self, client: &Elasticsearch, names: &Names) -> Result<bool, RequestError> {
        Ok(super::blue_green::live_record(client, names, &self.connector).await? != self.live)
    }
}

/// Where an item of a `_bulk` request comes from.
#[derive(Clone, Copy)]
enum Origin<'b> {
    Op { item: usize, number: usize, event: &'b EventRef, op: &'b ElasticOp },
    Park { item: usize, event: &'b EventRef },
}

impl Origin<'_> {
    fn item(&self) -> usize {
        match self {
            Origin::Op { item, .. } | Origin::Park { item, .. } => *item,
        }
    }

    fn key(&self) -> ((u32, Position), usize) {
        match self {
            Origin::Op { event, number, .. } => ((event.partition, event.event.position), *number),
            Origin::Park { event, .. } => ((event.partition, event.event.position), PARKED),
        }
    }
}

/// One `_bulk` request: its NDJSON body and where each of its items comes from.
struct Request<'b> {
    body: Vec<u8>,
    origins: Vec<Origin<'b>>,
}

/// The action line's metadata.
#[derive(Serialize)]
struct Meta<'a> {
    _index: &'a str,
    _id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    version: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    version_type: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    retry_on_conflict: Option<u32>,
}

/// The engine's answer to a `_bulk` request (filtered to what is judged).
#[derive(Deserialize)]
struct BulkReply {
    errors: bool,
    #[serde(default)]
    items: Vec<HashMap<String, ItemReply>>,
}

#[derive(Deserialize)]
struct ItemReply {
    status: u16,
    #[serde(default)]
    error: Option<Value>,
}

/// Why sending a batch's requests stopped.
enum Failure {
    /// An item failed (or the failure is transient): the error says which, if any.
    Item(ApplyError),
    /// A request holding several events' operations was refused as a whole.
    WholeRequest(ApplyError),
}

impl Failure {
    fn into_error(self) -> ApplyError {
        match self {
            Failure::Item(e) | Failure::WholeRequest(e) => e,
        }
    }
}

/// What became of one item.
enum Outcome {
    Applied,
    Transient(String),
    Failed(String),
}

const FILTER: &[&str] = &["errors", "items.*.status", "items.*.error"];

impl ElasticWriter {
    pub(super) fn new(client: Elasticsearch, names: Arc<Names>, connector: Arc<str>, fence: Option<Fence>) -> Self {
        Self { client, names, connector, done: HashMap::new(), fence }
    }

    async fn apply_batch(&mut self, batch: &Batch<ElasticOp>) -> Result<(), ApplyError> {
        if let Some(fence) = &self.fence {
            let moved = fence.moved(&self.client, &self.names).await.map_err(|e| ApplyError {
                message: format!("reading the live version (the blue/green fence) failed: {}", e.message),
                transient: e.transient,
                failed_at: None,
                checkpoint_moved: false,
            })?;
            if moved {
                return Err(ApplyError::checkpoint_moved("a blue/green rebuild swapped another version of the read model in"));
            }
        }
        let names = self.names.clone();
        let requests = plan(batch, &names, &self.connector, &self.done)?;
        if let Err(failure) = self.send(requests).await {
            let Failure::WholeRequest(error) = failure else { return Err(failure.into_error()) };
            // A request refused as a whole (a body the engine cannot parse, one too large)
            // names none of its items. Sending what is left one operation per request finds
            // the item: naming any other would hand an innocent event to the poison policy.
            debug!("{}; sending the rest of the batch one operation per request", error.message);
            let one_by_one = Names { max_bulk_bytes: 1, ..(*self.names).clone() };
            let requests = plan(batch, &one_by_one, &self.connector, &self.done)?;
            self.send(requests).await.map_err(Failure::into_error)?;
        }
        self.write_checkpoints(batch).await?;
        for item in &batch.items {
            self.done.remove(&(item.partition(), item.position()));
        }
        Ok(())
    }

    /// Sends the requests in order, judging every item of each answer and remembering what
    /// was applied; stops at the first request that failed.
    async fn send(&mut self, requests: Vec<Request<'_>>) -> Result<(), Failure> {
        for request in requests {
            let item_count = request.origins.len();
            debug!("_bulk request of {item_count} item(s), {} bytes", request.body.len());
            let reply = match bulk(&self.client, request.body, self.names.refresh).await {
                Ok(reply) => reply,
                Err(e) => {
                    let error = ApplyError {
                        message: format!("a _bulk request of {item_count} item(s) failed: {}", e.message),
                        transient: e.transient,
                        failed_at: None,
                        checkpoint_moved: false,
                    };
                    let items: HashSet<usize> = request.origins.iter().map(Origin::item).collect();
                    return Err(match (e.transient, items.len()) {
                        (true, _) => Failure::Item(error),
                        // One event's operations alone: that event is the one refused.
                        (false, 1) => Failure::Item(ApplyError { failed_at: request.origins.first().map(Origin::item), ..error }),
                        (false, _) => Failure::WholeRequest(error),
                    });
                }
            };
            if !reply.errors {
                for origin in &request.origins {
                    let (event, number) = origin.key();
                    self.done.entry(event).or_default().insert(number);
                }
                continue;
            }
            if reply.items.len() != item_count {
                return Err(Failure::Item(ApplyError {
                    message: format!("the engine answered {} item(s) to a _bulk request of {item_count}", reply.items.len()),
                    transient: true,
                    failed_at: None,
                    checkpoint_moved: false,
                }));
            }
            let mut failed: Option<ApplyError> = None;
            let mut transient = Vec::new();
            for (origin, answer) in request.origins.iter().zip(&reply.items) {
                let Some((verb, item)) = answer.iter().next() else { continue };
                match judge(origin, verb, item) {
                    Outcome::Applied => {
                        let (event, number) = origin.key();
                        self.done.entry(event).or_default().insert(number);
                    }
                    Outcome::Transient(message) => transient.push(message),
                    Outcome::Failed(message) => {
                        failed.get_or_insert(ApplyError { message, transient: false, failed_at: Some(origin.item()), checkpoint_moved: false });
                    }
                }
            }
            if let Some(error) = failed {
                return Err(Failure::Item(error));
            }
            if let Some(first) = transient.first() {
                return Err(Failure::Item(ApplyError {
                    message: format!("{first} ({} item(s) to retry; the applied ones are not sent again)", transient.len()),
                    transient: true,
                    failed_at: None,
                    checkpoint_moved: false,
                }));
            }
        }
        Ok(())
    }

    /// One `_bulk` request with a document per partition of the batch; none for a batch that
    /// moves no checkpoint (a replay of parked events, a read-progress mark behind the stored
    /// position), which the engine would refuse as a request without a body.
    async fn write_checkpoints(&self, batch: &Batch<ElasticOp>) -> Result<(), ApplyError> {
        if batch.checkpoints.is_empty() {
            return Ok(());
        }
        let mut body = Vec::with_capacity(batch.checkpoints.len() * 256);
        for &CheckpointWrite { partition, position, .. } in &batch.checkpoints {
            let id = checkpoint_id(&self.connector, batch.partition_count, partition);
            action_line(&mut body, "index", &Meta { _index: &self.names.checkpoints, _id: &id, version: None, version_type: None, retry_on_conflict: None });
            serde_json::to_writer(&mut body, &checkpoint_document(&self.connector, batch.partition_count, partition, position))
                .expect("JSON");
            body.push(b'\n');
        }
        let failure = |message: String, transient: bool| ApplyError {
            message: format!("writing the checkpoints failed (the batch's operations are applied and are not sent again): {message}"),
            transient,
            failed_at: None,
            checkpoint_moved: false,
        };
        let reply = bulk(&self.client, body, ElasticRefresh::False).await.map_err(|e| failure(e.message, e.transient))?;
        if reply.errors {
            let (status, error) = reply
                .items
                .iter()
                .flat_map(|i| i.values())
                .find(|i| i.error.is_some())
                .map(|i| (i.status, i.error.as_ref().map(client::describe_error).unwrap_or_default()))
                .unwrap_or((0, "no item error given".into()));
            return Err(failure(format!("HTTP {status}: {error}"), client::transient_status(status)));
        }
        Ok(())
    }
}

impl SinkWriter for ElasticWriter {
    type Op = ElasticOp;

    async fn apply(&mut self, batch: Arc<Batch<ElasticOp>>) -> Result<(), ApplyError> {
        self.apply_batch(&batch).await.map_err(|mut e| {
            e.message = format!("Elasticsearch target `{}`: {}", self.names.display, e.message);
            e
        })
    }
}

/// Sends one `_bulk` request and reads the item outcomes.
async fn bulk(client: &Elasticsearch, body: Vec<u8>, refresh: ElasticRefresh) -> Result<BulkReply, RequestError> {
    let refresh = match refresh {
        ElasticRefresh::False => Refresh::False,
        ElasticRefresh::True => Refresh::True,
        ElasticRefresh::WaitFor => Refresh::WaitFor,
    };
    let response = client
        .bulk(BulkParts::None)
        .header(CONTENT_TYPE, HeaderValue::from_static("application/x-ndjson"))
        .refresh(refresh)
        .filter_path(FILTER)
        .body(vec![Bytes::from(body)])
        .send()
        .await
        .map_err(|e| client::transport_error(&e))?;
    if !response.status_code().is_success() {
        return Err(client::response_error(response).await);
    }
    response.json::<BulkReply>().await.map_err(|e| RequestError {
        message: format!("cannot read the engine's answer to a _bulk request: {e}"),
        transient: true,
    })
}

/// How one item ended.
fn judge(origin: &Origin<'_>, verb: &str, item: &ItemReply) -> Outcome {
    let status = item.status;
    let Some(error) = &item.error else {
        // A success, or the delete of a document that is not there (404 without an error).
        return Outcome::Applied;
    };
    let kind = error.get("type").and_then(Value::as_str).unwrap_or_default();
    let op = match origin {
        Origin::Op { op, .. } => Some(*op),
        Origin::Park { .. } => None,
    };
    if status == 409 && kind == "version_conflict_engine_exception" && op.is_some_and(ElasticOp::conflict_means_applied) {
        return Outcome::Applied;
    }
    let described = client::describe_error(error);
    let what = match origin {
        Origin::Op { number, event, op, .. } => format!("operation {} of {event} ({verb} {op})", number + 1),
        Origin::Park { event, .. } => format!("parking {event}"),
    };
    // A write block: a blue/green swap blocked the index to clone it; the retry meets the fence.
    if client::transient_status(status) || status == 409 || kind == "cluster_block_exception" {
        return Outcome::Transient(format!("{what}: HTTP {status}: {described}"));
    }
    let label = match kind {
        k if k.contains("mapper") || k.contains("parsing") || k == "illegal_argument_exception" => "rejected by the mapping or as invalid",
        "document_missing_exception" => "the document does not exist (send Update with `docAsUpsert` or `upsert` to create it)",
        "index_not_found_exception" => "the index does not exist",
        "version_conflict_engine_exception" => "version conflict",
        _ => "rejected",
    };
    Outcome::Failed(format!("{what} failed: {label}: HTTP {status}: {described}"))
}

fn action_line(body: &mut Vec<u8>, verb: &str, meta: &Meta<'_>) {
    body.extend_from_slice(b"{\"");
    body.extend_from_slice(verb.as_bytes());
    body.extend_from_slice(b"\":");
    serde_json::to_writer(&mut *body, meta).expect("JSON");
    body.extend_from_slice(b"}\n");
}

/// The batch's operations and parked events as `_bulk` requests, leaving out what `done` holds.
fn plan<'b>(
    batch: &'b Batch<ElasticOp>,
    names: &'b Names,
    connector: &str,
    done: &HashMap<(u32, Position), HashSet<usize>>,
) -> Result<Vec<Request<'b>>, ApplyError> {
    let mut requests: Vec<Request<'b>> = Vec::new();
    let mut current = Request { body: Vec::new(), origins: Vec::new() };
    let limit = names.max_bulk_bytes;
    let cut = |current: &mut Request<'b>, requests: &mut Vec<Request<'b>>| {
        if !current.origins.is_empty() {
            requests.push(std::mem::replace(current, Request { body: Vec::new(), origins: Vec::new() }));
        }
    };
    for (item, batch_item) in batch.items.iter().enumerate() {
        match batch_item {
            BatchItem::Apply { event, ops } => {
                let skip = done.get(&(event.partition, event.event.position));
                for (number, op) in ops.iter().enumerate() {
                    if skip.is_some_and(|s| s.contains(&number)) {
                        continue;
                    }
                    let before = current.body.len();
                    write_op(&mut current.body, op, event, names).map_err(|message| ApplyError {
                        message: format!("operation {} of {event}: {message}", number + 1),
                        transient: false,
                        failed_at: Some(item),
                        checkpoint_moved: false,
                    })?;
                    current.origins.push(Origin::Op { item, number, event, op });
                    if current.body.len() >= limit && current.origins.len() > 1 && before > 0 {
                        // Too large with this item: send what came before, start again with it.
                        let tail = current.body.split_off(before);
                        let origin = current.origins.pop().expect("pushed");
                        cut(&mut current, &mut requests);
                        current.body = tail;
                        current.origins.push(origin);
                    }
                }
            }
            BatchItem::Park { event, error } => {
                if done.get(&(event.partition, event.event.position)).is_some_and(|s| s.contains(&PARKED)) {
                    continue;
                }
                let e = &event.event;
                let id = format!("{connector}/{}/{}", event.partition, e.position);
                action_line(&mut current.body, "index", &Meta { _index: &names.parked, _id: &id, version: None, version_type: None, retry_on_conflict: None });
                let parked = serde_json::json!({
                    "connector": connector,
                    "partition": event.partition,
                    "position": e.position,
                    "event_id": &e.event_id,
                    "event_type": &e.event_type,
                    "stream": &e.stream,
                    "payload": String::from_utf8_lossy(&e.data),
                    "error": error,
                    "parked_at": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                });
                serde_json::to_writer(&mut current.body, &parked).expect("JSON");
                current.body.push(b'\n');
                current.origins.push(Origin::Park { item, event });
            }
            BatchItem::Advance { .. } => {}
        }
        if current.body.len() >= limit {
            cut(&mut current, &mut requests);
        }
    }
    cut(&mut current, &mut requests);
    Ok(requests)
}

/// Appends one operation's action line (and source line) to a `_bulk` body.
fn write_op(body: &mut Vec<u8>, op: &ElasticOp, event: &EventRef, names: &Names) -> Result<(), String> {
    let index = op.index.as_deref().or(names.index.as_deref()).ok_or("it names no index and the connector has no default")?;
    let index = &*names.concrete(index);
    let version = || {
        i64::try_from(event.event.position)
            .map_err(|_| format!("position {} does not fit an external version (a signed 64-bit number)", event.event.position))
    };
    let meta = |version: Option<i64>, retry_on_conflict: Option<u32>| Meta {
        _index: index,
        _id: &op.id,
        version,
        version_type: version.map(|_| "external_gte"),
        retry_on_conflict,
    };
    match &op.action {
        Action::Index { source, external_version } => {
            let v = if *external_version { Some(version()?) } else { None };
            action_line(body, "index", &meta(v, None));
            body.extend_from_slice(source);
        }
        Action::Create { source } => {
            action_line(body, "create", &meta(None, None));
            body.extend_from_slice(source);
        }
        Action::Update { body: update, .. } => {
            // Two writers updating one document meet as a version conflict: try again at once.
            action_line(body, "update", &meta(None, Some(3)));
            body.extend_from_slice(update);
        }
        Action::Delete { external_version } => {
            let v = if *external_version { Some(version()?) } else { None };
            action_line(body, "delete", &meta(v, None));
            return Ok(());
        }
    }
    body.push(b'\n');
    Ok(())
}

/// The batch's `_bulk` requests alone, with the same client and request bodies as
/// [`ElasticWriter`], but no checkpoints and no bookkeeping of applied items: any failed item
/// fails. The benchmark compares the connector with this raw rate.
pub(super) async fn raw_bulk(client: &Elasticsearch, names: &Names, batch: &Batch<ElasticOp>) -> Result<(), ApplyError> {
    for request in plan(batch, names, "(raw)", &HashMap::new())? {
        let reply = bulk(client, request.body, names.refresh)
            .await
            .map_err(|e| ApplyError { message: e.message, transient: e.transient, failed_at: None, checkpoint_moved: false })?;
        if reply.errors {
            let first = reply.items.iter().flat_map(|i| i.values()).find_map(|i| i.error.as_ref().map(client::describe_error));
            return Err(ApplyError { message: format!("an item failed: {}", first.unwrap_or_default()), transient: false, failed_at: None, checkpoint_moved: false });
        }
    }
    Ok(())
}

/// Applies the reset operations of a rebuild (`Describe`), in order, outside of any batch.
pub(super) async fn apply_reset(client: &Elasticsearch, names: &Arc<Names>, ops: &[ElasticOp]) -> Result<(), SinkError> {
    if ops.is_empty() {
        return Ok(());
    }
    let event = EventRef::new(
        Arc::new(crate::event::Event {
            position: 0,
            stream: "(reset)".into(),
            revision: 0,
            event_type: "(reset)".into(),
            event_id: "(reset operations of the sidecar's Describe)".into(),
            data: Default::default(),
            content_type: Default::default(),
            metadata: None,
            created: chrono::Utc::now(),
        }),
        0,
    );
    let batch = Batch::new(vec![BatchItem::Apply { event, ops: ops.to_vec() }], 1);
    let mut writer = ElasticWriter::new(client.clone(), names.clone(), "(reset)".into(), None);
    let requests = plan(&batch, names, "(reset)", &writer.done).map_err(|e| SinkError::reset(e.message))?;
    for request in requests {
        let count = request.origins.len();
        let reply = bulk(client, request.body, ElasticRefresh::True)
            .await
            .map_err(|e| {
                SinkError::reset(format!("Elasticsearch target `{}`: the reset operations failed: {}", names.display, e.message))
                    .unreachable_if(e.transient)
            })?;
        if reply.errors {
            for (origin, answer) in request.origins.iter().zip(&reply.items) {
                if let Some((verb, item)) = answer.iter().next() {
                    let (transient, m) = match judge(origin, verb, item) {
                        Outcome::Applied => continue,
                        Outcome::Transient(m) => (true, m),
                        Outcome::Failed(m) => (false, m),
                    };
                    let failed = SinkError::reset(format!("Elasticsearch target `{}`: a reset operation failed: {m}", names.display));
                    return Err(failed.unreachable_if(transient));
                }
            }
        }
        debug!("applied {count} reset operation(s)");
    }
    writer.done.clear();
    Ok(())
}
