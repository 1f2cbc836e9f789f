//! The in-memory log and the `Streams` service of the KurrentDB test server.
// gRPC handlers answer with `tonic::Status`, as tonic's generated traits do.
#![allow(clippy::result_large_err)]

use std::{
    collections::HashMap,
    pin::Pin,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
};

use tokio::{
    net::TcpListener,
    sync::{mpsc, watch},
};
use tokio_stream::{
    Stream,
    wrappers::{ReceiverStream, TcpListenerStream},
};
use tokio_util::sync::{CancellationToken, DropGuard};
use tonic::{Request, Response, Status, Streaming};

use super::pb::event_store::client::{
    Empty, StreamIdentifier, Uuid as PbUuid,
    streams::{
        AppendReq, AppendResp, BatchAppendReq, BatchAppendResp, DeleteReq, DeleteResp, ReadReq, ReadResp, TombstoneReq,
        TombstoneResp, append_req, append_resp,
        read_req::{
            options::{
                CountOption, FilterOption, ReadDirection, StreamOption, all_options::AllOption, filter_options,
                stream_options::RevisionOption,
            },
        },
        read_resp,
        streams_server::{Streams, StreamsServer},
    },
    uuid,
};

/// The first event's position: like a real server, `$all` does not start at 0, and positions
/// are not consecutive.
const FIRST_POSITION: u64 = 1_000;

/// One event of the test server's log.
#[derive(Debug, Clone)]
pub struct StoredEvent {
    pub position: u64,
    pub stream: String,
    pub revision: u64,
    pub id: String,
    pub event_type: String,
    pub is_json: bool,
    pub data: Vec<u8>,
    pub custom_metadata: Vec<u8>,
    /// 100 ns ticks since the Unix epoch.
    pub created: i64,
}

#[derive(Default)]
struct Log {
    events: Vec<StoredEvent>,
    /// Last revision of each stream.
    revisions: HashMap<String, u64>,
}

struct Shared {
    log: Mutex<Log>,
    /// The number of events in the log; subscriptions wait on it when caught up.
    appended: watch::Sender<usize>,
    /// Bumped (with the status to end them with) to drop every open subscription.
    drops: watch::Sender<(u64, Status)>,
    subscriptions: AtomicU64,
    /// `Basic ...` header every call must carry, when credentials are required.
    authorization: Option<String>,
}

/// A running test server; stops when dropped.
pub struct TestKurrentDb {
    pub port: u16,
    shared: Arc<Shared>,
    _stop: DropGuard,
}

impl TestKurrentDb {
    /// A server that takes any call.
    pub async fn start() -> Self {
        Self::serve(None).await
    }

    /// A server that answers `Unauthenticated` unless the call carries these credentials.
    pub async fn with_credentials(user: &str, password: &str) -> Self {
        use base64::Engine;
        let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        Self::serve(Some(format!("Basic {encoded}"))).await
    }

    async fn serve(authorization: Option<String>) -> Self {
        let shared = Arc::new(Shared {
            log: Mutex::default(),
            appended: watch::channel(0).0,
            drops: watch::channel((0, Status::ok(""))).0,
            subscriptions: AtomicU64::new(0),
            authorization,
        });
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the KurrentDB test server");
        let port = listener.local_addr().unwrap().port();
        let stop = CancellationToken::new();
        let service = StreamsServer::new(Service { shared: shared.clone() })
            .max_decoding_message_size(64 << 20)
            .max_encoding_message_size(64 << 20);
        let until = stop.clone();
        tokio::spawn(async move {
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming_shutdown(TcpListenerStream::new(listener), until.cancelled_owned())
                .await
                .expect("the KurrentDB test server failed");
        });
        Self { port, shared, _stop: stop.drop_guard() }
    }

    /// A connection string for this server, without credentials.
    pub fn connection_string(&self) -> String {
        format!("esdb://127.0.0.1:{}?tls=false", self.port)
    }

    /// Appends JSON events to a stream directly, as another writer would; returns their
    /// positions.
    pub fn append_json(&self, stream: &str, events: &[(&str, serde_json::Value)]) -> Vec<u64> {
        let proposed = events
            .iter()
            .map(|(event_type, data)| Proposed {
                id: ::uuid::Uuid::new_v4().to_string(),
                event_type: event_type.to_string(),
                is_json: true,
                data: serde_json::to_vec(data).unwrap(),
                custom_metadata: Vec::new(),
            })
            .collect();
        self.shared.append(stream, proposed)
    }

    /// Appends one event whose payload is not JSON.
    pub fn append_binary(&self, stream: &str, event_type: &str, data: &[u8]) -> u64 {
        let proposed = Proposed {
            id: ::uuid::Uuid::new_v4().to_string(),
            event_type: event_type.into(),
            is_json: false,
            data: data.to_vec(),
            custom_metadata: Vec::new(),
        };
        self.shared.append(stream, vec![proposed])[0]
    }

    /// Appends one event with the id its writer chose, as a client does; returns its position.
    pub fn append_event(&self, stream: &str, id: &str, event_type: &str, is_json: bool, data: Vec<u8>) -> u64 {
        let proposed = Proposed { id: id.into(), event_type: event_type.into(), is_json, data, custom_metadata: Vec::new() };
        self.shared.append(stream, vec![proposed])[0]
    }

    /// Every event, in log order.
    pub fn events(&self) -> Vec<StoredEvent> {
        self.shared.log.lock().unwrap().events.clone()
    }

    /// The position of the last event (0 when empty).
    pub fn head(&self) -> u64 {
        self.shared.log.lock().unwrap().events.last().map_or(0, |e| e.position)
    }

    /// Ends every open subscription with `status` (e.g. [`super::consumer_too_slow`], or
    /// `Status::unavailable` for a node going down).
    pub fn drop_subscriptions(&self, status: Status) {
        self.shared.drops.send_modify(|(generation, current)| {
            *generation += 1;
            *current = status;
        });
    }

    /// How many subscriptions were opened so far.
    pub fn subscriptions(&self) -> u64 {
        self.shared.subscriptions.load(Ordering::SeqCst)
    }
}

struct Proposed {
    id: String,
    event_type: String,
    is_json: bool,
    data: Vec<u8>,
    custom_metadata: Vec<u8>,
}

impl Shared {
    fn append(&self, stream: &str, events: Vec<Proposed>) -> Vec<u64> {
        let mut log = self.log.lock().unwrap();
        let mut positions = Vec::with_capacity(events.len());
        for proposed in events {
            let position = log
                .events
                .last()
                .map_or(FIRST_POSITION, |e| e.position + 64 + e.data.len() as u64);
            let revision = log.revisions.get(stream).map_or(0, |r| r + 1);
            log.revisions.insert(stream.to_owned(), revision);
            let created = chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default() / 100;
            log.events.push(StoredEvent {
                position,
                stream: stream.to_owned(),
                revision,
                id: proposed.id,
                event_type: proposed.event_type,
                is_json: proposed.is_json,
                data: proposed.data,
                custom_metadata: proposed.custom_metadata,
                created,
            });
            positions.push(position);
        }
        let count = log.events.len();
        drop(log);
        self.appended.send_replace(count);
        positions
    }

    fn authorize<T>(&self, request: &Request<T>) -> Result<(), Status> {
        match &self.authorization {
            None => Ok(()),
            Some(expected) => match request.metadata().get("authorization").and_then(|v| v.to_str().ok()) {
                Some(given) if given == expected => Ok(()),
                _ => Err(Status::unauthenticated("Bad username or password")),
            },
        }
    }
}

/// Which events a subscription or read lets through.
#[derive(Clone)]
struct Filter {
    on_stream: bool,
    prefixes: Vec<String>,
    regex: Option<regex::Regex>,
    /// Send a checkpoint after this many events read without one.
    checkpoint_every: Option<u64>,
}

impl Filter {
    fn from(option: Option<FilterOption>) -> Result<Option<Self>, Status> {
        let Some(FilterOption::Filter(options)) = option else { return Ok(None) };
        let (on_stream, expression) = match options.filter {
            Some(filter_options::Filter::StreamIdentifier(e)) => (true, e),
            Some(filter_options::Filter::EventType(e)) => (false, e),
            None => return Err(Status::invalid_argument("a filter needs an expression")),
        };
        let regex = match expression.regex.as_str() {
            "" => None,
            pattern => Some(regex::Regex::new(pattern).map_err(|e| Status::invalid_argument(e.to_string()))?),
        };
        let checkpoint_every = match options.window {
            Some(filter_options::Window::Max(max)) => Some(max as u64 * options.checkpoint_interval_multiplier.max(1) as u64),
            _ => None,
        };
        Ok(Some(Self { on_stream, prefixes: expression.prefix, regex, checkpoint_every }))
    }

    fn accepts(&self, event: &StoredEvent) -> bool {
        let subject = if self.on_stream { &event.stream } else { &event.event_type };
        let prefixed = self.prefixes.is_empty() || self.prefixes.iter().any(|p| subject.starts_with(p.as_str()));
        let matched = self.regex.as_ref().is_none_or(|r| r.is_match(subject));
        prefixed && matched
    }
}

fn read_event(e: &StoredEvent) -> ReadResp {
    let metadata = HashMap::from([
        ("type".to_owned(), e.event_type.clone()),
        (
            "content-type".to_owned(),
            if e.is_json { "application/json" } else { "application/octet-stream" }.to_owned(),
        ),
        ("created".to_owned(), e.created.to_string()),
    ]);
    let recorded = read_resp::read_event::RecordedEvent {
        id: Some(PbUuid { value: Some(uuid::Value::String(e.id.clone())) }),
        stream_identifier: Some(StreamIdentifier { stream_name: e.stream.clone().into_bytes() }),
        stream_revision: e.revision,
        prepare_position: e.position,
        commit_position: e.position,
        metadata,
        custom_metadata: e.custom_metadata.clone(),
        data: e.data.clone(),
    };
    ReadResp {
        content: Some(read_resp::Content::Event(read_resp::ReadEvent {
            event: Some(recorded),
            link: None,
            position: Some(read_resp::read_event::Position::CommitPosition(e.position)),
        })),
    }
}

fn checkpoint(position: u64) -> ReadResp {
    ReadResp {
        content: Some(read_resp::Content::Checkpoint(read_resp::Checkpoint {
            commit_position: position,
            prepare_position: position,
            timestamp: Some(now()),
        })),
    }
}

fn now() -> prost_types::Timestamp {
    let now = chrono::Utc::now();
    prost_types::Timestamp { seconds: now.timestamp(), nanos: now.timestamp_subsec_nanos() as i32 }
}

struct Service {
    shared: Arc<Shared>,
}

type ReadStream = Pin<Box<dyn Stream<Item = Result<ReadResp, Status>> + Send>>;

#[tonic::async_trait]
impl Streams for Service {
    type ReadStream = ReadStream;
    type BatchAppendStream = Pin<Box<dyn Stream<Item = Result<BatchAppendResp, Status>> + Send>>;

    async fn read(&self, request: Request<ReadReq>) -> Result<Response<ReadStream>, Status> {
        self.shared.authorize(&request)?;
        let options = request.into_inner().options.ok_or_else(|| Status::invalid_argument("no options"))?;
        let filter = Filter::from(options.filter_option.clone())?;
        let backwards = options.read_direction == ReadDirection::Backwards as i32;
        let (tx, rx) = mpsc::channel(64);
        match (options.stream_option, options.count_option) {
            (Some(StreamOption::All(all)), Some(CountOption::Subscription(_))) => {
                let after = match all.all_option {
                    Some(AllOption::Position(p)) => Some(p.commit_position),
                    Some(AllOption::End(_)) => Some(self.shared.log.lock().unwrap().events.last().map_or(0, |e| e.position)),
                    _ => None,
                };
                self.shared.subscriptions.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(subscribe(self.shared.clone(), after, filter, tx));
            }
            (Some(StreamOption::All(all)), Some(CountOption::Count(count))) => {
                // Selected under the lock: cloning the whole log for a one-event read cost
                // 100 ms at 50k events.
                let log = self.shared.log.lock().unwrap();
                let events = &log.events;
                let start = match all.all_option {
                    Some(AllOption::Position(p)) => Some(p.commit_position),
                    Some(AllOption::End(_)) if backwards => None,
                    Some(AllOption::End(_)) => Some(u64::MAX),
                    _ if backwards => Some(0),
                    _ => None,
                };
                let selected: Vec<ReadResp> = if backwards {
                    let from = start.unwrap_or(u64::MAX);
                    events.iter().rev().filter(|e| e.position < from || start.is_none()).take(count as usize).map(read_event).collect()
                } else {
                    events.iter().filter(|e| start.is_none_or(|s| e.position >= s)).take(count as usize).map(read_event).collect()
                };
                drop(log);
                tokio::spawn(send_all(selected, tx));
            }
            (Some(StreamOption::Stream(stream)), Some(CountOption::Count(count))) => {
                let name = String::from_utf8_lossy(&stream.stream_identifier.unwrap_or_default().stream_name).into_owned();
                let events: Vec<StoredEvent> =
                    self.shared.log.lock().unwrap().events.iter().filter(|e| e.stream == name).cloned().collect();
                let selected: Vec<ReadResp> = if events.is_empty() {
                    vec![ReadResp {
                        content: Some(read_resp::Content::StreamNotFound(read_resp::StreamNotFound {
                            stream_identifier: Some(StreamIdentifier { stream_name: name.into_bytes() }),
                        })),
                    }]
                } else if backwards {
                    let from = match stream.revision_option {
                        Some(RevisionOption::Revision(r)) => r,
                        _ => u64::MAX,
                    };
                    events.iter().rev().filter(|e| e.revision <= from).take(count as usize).map(read_event).collect()
                } else {
                    let from = match stream.revision_option {
                        Some(RevisionOption::Revision(r)) => r,
                        _ => 0,
                    };
                    events.iter().filter(|e| e.revision >= from).take(count as usize).map(read_event).collect()
                };
                tokio::spawn(send_all(selected, tx));
            }
            _ => return Err(Status::unimplemented("the test server reads $all (read or subscribe) and streams (read)")),
        }
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn append(&self, request: Request<Streaming<AppendReq>>) -> Result<Response<AppendResp>, Status> {
        self.shared.authorize(&request)?;
        let mut messages = request.into_inner();
        let Some(AppendReq { content: Some(append_req::Content::Options(options)) }) = messages.message().await? else {
            return Err(Status::invalid_argument("an append starts with its options"));
        };
        let stream = String::from_utf8_lossy(&options.stream_identifier.unwrap_or_default().stream_name).into_owned();
        let mut proposed = Vec::new();
        while let Some(message) = messages.message().await? {
            if let Some(append_req::Content::ProposedMessage(m)) = message.content {
                let id = match m.id.and_then(|id| id.value) {
                    Some(uuid::Value::String(s)) => s,
                    Some(uuid::Value::Structured(s)) => {
                        let mut bytes = [0u8; 16];
                        bytes[..8].copy_from_slice(&s.most_significant_bits.to_be_bytes());
                        bytes[8..].copy_from_slice(&s.least_significant_bits.to_be_bytes());
                        ::uuid::Uuid::from_bytes(bytes).to_string()
                    }
                    None => ::uuid::Uuid::new_v4().to_string(),
                };
                proposed.push(Proposed {
                    id,
                    event_type: m.metadata.get("type").cloned().unwrap_or_default(),
                    is_json: m.metadata.get("content-type").is_some_and(|c| c == "application/json"),
                    data: m.data,
                    custom_metadata: m.custom_metadata,
                });
            }
        }
        let current = self.shared.log.lock().unwrap().revisions.get(&stream).copied();
        use append_req::options::ExpectedStreamRevision as Expected;
        let ok = match options.expected_stream_revision {
            Some(Expected::Revision(r)) => current == Some(r),
            Some(Expected::NoStream(_)) => current.is_none(),
            Some(Expected::StreamExists(_)) => current.is_some(),
            Some(Expected::Any(_)) | None => true,
        };
        use append_resp::{success, wrong_expected_version as wrong};
        if !ok {
            let current_revision_option = Some(match current {
                Some(r) => wrong::CurrentRevisionOption::CurrentRevision(r),
                None => wrong::CurrentRevisionOption::CurrentNoStream(Empty {}),
            });
            return Ok(Response::new(AppendResp {
                result: Some(append_resp::Result::WrongExpectedVersion(append_resp::WrongExpectedVersion {
                    current_revision_option,
                    ..Default::default()
                })),
            }));
        }
        let positions = self.shared.append(&stream, proposed);
        let revision = self.shared.log.lock().unwrap().revisions.get(&stream).copied();
        let success = append_resp::Success {
            current_revision_option: Some(match revision {
                Some(r) => success::CurrentRevisionOption::CurrentRevision(r),
                None => success::CurrentRevisionOption::NoStream(Empty {}),
            }),
            position_option: Some(match positions.last() {
                Some(&p) => success::PositionOption::Position(append_resp::Position { commit_position: p, prepare_position: p }),
                None => success::PositionOption::NoPosition(Empty {}),
            }),
        };
        Ok(Response::new(AppendResp { result: Some(append_resp::Result::Success(success)) }))
    }

    async fn delete(&self, _: Request<DeleteReq>) -> Result<Response<DeleteResp>, Status> {
        Err(Status::unimplemented("not in the test server"))
    }

    async fn tombstone(&self, _: Request<TombstoneReq>) -> Result<Response<TombstoneResp>, Status> {
        Err(Status::unimplemented("not in the test server"))
    }

    async fn batch_append(
        &self,
        _: Request<Streaming<BatchAppendReq>>,
    ) -> Result<Response<Self::BatchAppendStream>, Status> {
        Err(Status::unimplemented("not in the test server"))
    }
}

async fn send_all(responses: Vec<ReadResp>, tx: mpsc::Sender<Result<ReadResp, Status>>) {
    for response in responses {
        if tx.send(Ok(response)).await.is_err() {
            return;
        }
    }
}

/// Serves one `$all` subscription: the events after `after` (all when `None`), then live ones,
/// until the client goes away or the test drops it.
async fn subscribe(shared: Arc<Shared>, after: Option<u64>, filter: Option<Filter>, tx: mpsc::Sender<Result<ReadResp, Status>>) {
    let mut drops = shared.drops.subscribe();
    drops.mark_unchanged();
    let mut appended = shared.appended.subscribe();
    let confirmation = read_resp::Content::Confirmation(read_resp::SubscriptionConfirmation {
        subscription_id: ::uuid::Uuid::new_v4().to_string(),
    });
    if tx.send(Ok(ReadResp { content: Some(confirmation) })).await.is_err() {
        return;
    }
    let mut next = {
        let log = shared.log.lock().unwrap();
        after.map_or(0, |a| log.events.partition_point(|e| e.position <= a))
    };
    let mut since_checkpoint = 0u64;
    let mut caught_up = false;
    loop {
        let batch: Vec<StoredEvent> = {
            appended.mark_unchanged();
            shared.log.lock().unwrap().events.iter().skip(next).take(256).cloned().collect()
        };
        if batch.is_empty() {
            if !caught_up {
                caught_up = true;
                let position = shared.log.lock().unwrap().events.last().map(|e| read_resp::Position {
                    commit_position: e.position,
                    prepare_position: e.position,
                });
                let message = read_resp::Content::CaughtUp(read_resp::CaughtUp { timestamp: Some(now()), stream_revision: None, position });
                if tx.send(Ok(ReadResp { content: Some(message) })).await.is_err() {
                    return;
                }
            }
            tokio::select! {
                _ = appended.changed() => continue,
                _ = drops.changed() => return end(&drops, tx).await,
                _ = tx.closed() => return,
            }
        }
        for event in batch {
            next += 1;
            since_checkpoint += 1;
            let response = match &filter {
                Some(f) if !f.accepts(&event) => match f.checkpoint_every {
                    Some(every) if since_checkpoint >= every => checkpoint(event.position),
                    _ => continue,
                },
                _ => read_event(&event),
            };
            if matches!(response.content, Some(read_resp::Content::Checkpoint(_))) {
                since_checkpoint = 0;
            }
            tokio::select! {
                sent = tx.send(Ok(response)) => if sent.is_err() { return },
                _ = drops.changed() => return end(&drops, tx).await,
            }
        }
    }
}

async fn end(drops: &watch::Receiver<(u64, Status)>, tx: mpsc::Sender<Result<ReadResp, Status>>) {
    let status = drops.borrow().1.clone();
    let _ = tx.send(Err(status)).await;
}
