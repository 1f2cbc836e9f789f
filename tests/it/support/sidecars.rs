//! Sidecars served in the test process: the real Rust example reducer, and a scripted one that
//! wraps it and misbehaves in one precise way (wrong eventId, answers out of order, unknown
//! operation, silence, reported errors, SQL that fails in the database, and the hostile ones:
//! any bytes as an answer, answers nobody asked for).
//!
//! The scripted sidecar's `Project` service is written out as tonic generates it, with a codec
//! whose answers are bytes: a faithful answer is an encoded `ProjectionResponse` (the same
//! bytes tonic's own codec writes), a hostile one whatever the script makes.

use std::{
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
};

use bookings_reducer::proto::{self as sp, ProjectionRequest, ProjectionResponse};
use bytes::BufMut;
use prost::Message;
use tokio::{net::TcpListener, sync::mpsc};
use tokio_stream::{Stream, wrappers::{ReceiverStream, TcpListenerStream}};
use tokio_util::sync::{CancellationToken, DropGuard};
use tonic::{
    Request, Response, Status, Streaming,
    codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder},
    codegen::{Body, BoxFuture, StdError, http},
};

/// A sidecar served by this process; stops when dropped.
pub struct LocalSidecar {
    pub address: String,
    /// Requests received so far (resends included).
    pub requests: Arc<AtomicU64>,
    /// `Project` streams opened so far.
    pub streams: Arc<AtomicU64>,
    _stop: DropGuard,
}

impl LocalSidecar {
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::SeqCst)
    }

    pub fn streams(&self) -> u64 {
        self.streams.load(Ordering::SeqCst)
    }
}

/// How the scripted sidecar misbehaves. Every script answers other events faithfully.
#[derive(Clone, Debug)]
pub enum Script {
    Faithful,
    /// Answers events of this type with another eventId.
    WrongIdFor(&'static str),
    /// Holds the answer to the first event of this type and sends it after the next answer.
    SwapFirst(&'static str),
    /// Answers events of this type with an operation no sink knows.
    UnknownOpFor(&'static str),
    /// Stops answering anything on a stream once an event of this type arrives (a hung
    /// sidecar).
    HangAt(&'static str),
    /// Answers events of this type with a ReducerError.
    ErrorFor(&'static str, bool),
    /// Ends the stream with an INTERNAL status at events of this type, as a handler that
    /// throws does in every gRPC server library.
    StatusAt(&'static str),
    /// Answers events of this type with a statement on a table that does not exist.
    BadSqlFor(&'static str),
    /// Never answers events of this type, but answers the others (as Eventuous sidecars do
    /// for events they have no handler for).
    SilentFor(&'static str),
    /// Answers every event with what this function makes of the request (for sinks tested
    /// with operations other than the bookings reducer's).
    Map(fn(&ProjectionRequest) -> ProjectionResponse),
    /// Answers every event with these gRPC messages, as they are: hand-encoded responses
    /// (invalid UTF-8, nesting no decoder takes, more than the gateway's message size limit),
    /// several answers to one request, or none.
    Frames(fn(&ProjectionRequest) -> Vec<Vec<u8>>),
    /// Sends an answer for this eventId as soon as a stream opens, before any request (and on
    /// every stream), then answers every event faithfully.
    AnswerFirst(&'static str),
}

/// Serves the real example reducer.
pub async fn rust_reducer() -> LocalSidecar {
    scripted(Script::Faithful).await
}

/// Serves the example reducer wrapped in `script`.
pub async fn scripted(script: Script) -> LocalSidecar {
    serve(script, None).await
}

/// Serves the example reducer, faithful, and answers `Describe` with `description`.
pub async fn describing(description: sp::DescribeResponse) -> LocalSidecar {
    serve(Script::Faithful, Some(description)).await
}

/// Serves the example reducer wrapped in `script`, and answers `Describe` with `description`.
pub async fn describing_with(script: Script, description: sp::DescribeResponse) -> LocalSidecar {
    serve(script, Some(description)).await
}

struct Describing(sp::DescribeResponse);

#[tonic::async_trait]
impl sp::projection_info_server::ProjectionInfo for Describing {
    async fn describe(&self, _: Request<sp::DescribeRequest>) -> Result<Response<sp::DescribeResponse>, Status> {
        Ok(Response::new(self.0.clone()))
    }
}

async fn serve(script: Script, description: Option<sp::DescribeResponse>) -> LocalSidecar {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = format!("http://{}", listener.local_addr().unwrap());
    let stop = CancellationToken::new();
    let requests = Arc::new(AtomicU64::new(0));
    let streams = Arc::new(AtomicU64::new(0));
    let service = ScriptedServer(Arc::new(Scripted { script, requests: requests.clone(), streams: streams.clone() }));
    let shutdown = stop.clone().cancelled_owned();
    let router = tonic::transport::Server::builder()
        .add_service(service)
        .add_optional_service(description.map(|d| sp::projection_info_server::ProjectionInfoServer::new(Describing(d))));
    tokio::spawn(router.serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown));
    LocalSidecar { address, requests, streams, _stop: stop.drop_guard() }
}

struct Scripted {
    script: Script,
    requests: Arc<AtomicU64>,
    streams: Arc<AtomicU64>,
}

/// Answers as bytes (each one gRPC message).
type Frames = Pin<Box<dyn Stream<Item = Result<Vec<u8>, Status>> + Send>>;

/// `projection.Projection` with [`Scripted`] behind it.
#[derive(Clone)]
struct ScriptedServer(Arc<Scripted>);

impl tonic::server::NamedService for ScriptedServer {
    const NAME: &'static str = "projection.Projection";
}

impl<B> tonic::codegen::Service<http::Request<B>> for ScriptedServer
where
    B: Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = std::convert::Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let scripted = self.0.clone();
        match request.uri().path() {
            "/projection.Projection/Project" => {
                Box::pin(async move { Ok(tonic::server::Grpc::new(BytesCodec).streaming(Project(scripted), request).await) })
            }
            _ => Box::pin(async move { Ok(Status::unimplemented("only Project").into_http()) }),
        }
    }
}

struct Project(Arc<Scripted>);

impl tonic::server::StreamingService<ProjectionRequest> for Project {
    type Response = Vec<u8>;
    type ResponseStream = Frames;
    type Future = BoxFuture<Response<Frames>, Status>;

    fn call(&mut self, request: Request<Streaming<ProjectionRequest>>) -> Self::Future {
        let scripted = self.0.clone();
        Box::pin(async move { scripted.project(request).await })
    }
}

/// Decodes requests as tonic's codec does; writes answers as the bytes they are.
#[derive(Default)]
struct BytesCodec;

struct BytesEncoder;

struct RequestDecoder;

impl Codec for BytesCodec {
    type Encode = Vec<u8>;
    type Decode = ProjectionRequest;
    type Encoder = BytesEncoder;
    type Decoder = RequestDecoder;

    fn encoder(&mut self) -> BytesEncoder {
        BytesEncoder
    }

    fn decoder(&mut self) -> RequestDecoder {
        RequestDecoder
    }
}

impl Encoder for BytesEncoder {
    type Item = Vec<u8>;
    type Error = Status;

    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for RequestDecoder {
    type Item = ProjectionRequest;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<ProjectionRequest>, Status> {
        ProjectionRequest::decode(src).map(Some).map_err(|e| Status::internal(e.to_string()))
    }
}

impl Scripted {
    async fn project(&self, request: Request<Streaming<ProjectionRequest>>) -> Result<Response<Frames>, Status> {
        self.streams.fetch_add(1, Ordering::SeqCst);
        let mut inbound = request.into_inner();
        let (tx, rx) = mpsc::channel::<Result<Vec<u8>, Status>>(1024);
        let script = self.script.clone();
        let counter = self.requests.clone();
        if let Script::AnswerFirst(event_id) = &script {
            let unsolicited = ProjectionResponse { event_id: event_id.to_string(), ..Default::default() };
            let _ = tx.send(Ok(unsolicited.encode_to_vec())).await;
        }
        tokio::spawn(async move {
            let mut held: Option<ProjectionResponse> = None;
            let mut swapped = false;
            let mut hung = false;
            while let Ok(Some(req)) = inbound.message().await {
                counter.fetch_add(1, Ordering::SeqCst);
                let mut response = bookings_reducer::reduce(&req);
                let targeted = |t: &str| req.event_type == t;
                match &script {
                    Script::Faithful | Script::AnswerFirst(_) => {}
                    Script::Map(map) => response = map(&req),
                    Script::Frames(frames) => {
                        for frame in frames(&req) {
                            if tx.send(Ok(frame)).await.is_err() {
                                return;
                            }
                        }
                        continue;
                    }
                    Script::SilentFor(t) if targeted(t) => continue,
                    Script::WrongIdFor(t) if targeted(t) => response.event_id = "not-the-request-id".into(),
                    Script::SwapFirst(t) if targeted(t) && !swapped => {
                        swapped = true;
                        held = Some(response);
                        continue;
                    }
                    Script::UnknownOpFor(t) if targeted(t) => {
                        response.operation = Some(prost_types::Any {
                            type_url: "type.googleapis.com/projection.Teleport".into(),
                            value: vec![],
                        });
                    }
                    Script::HangAt(t) if targeted(t) || hung => {
                        hung = true;
                        continue;
                    }
                    Script::StatusAt(t) if targeted(t) => {
                        let _ = tx.send(Err(Status::internal("handler failed: KeyError 'room'"))).await;
                        return;
                    }
                    Script::ErrorFor(t, retryable) if targeted(t) => {
                        response.operation = None;
                        response.operations.clear();
                        response.error = Some(sp::ReducerError { message: "cannot price this room".into(), retryable: *retryable });
                    }
                    Script::BadSqlFor(t) if targeted(t) => {
                        let statement = sp::Statement { sql: "UPDATE no_such_table SET x = 1".into(), params: vec![] };
                        response.operation = Some(prost_types::Any {
                            type_url: "type.googleapis.com/projection.Statement".into(),
                            value: statement.encode_to_vec(),
                        });
                        response.operations.clear();
                    }
                    _ => {}
                }
                if tx.send(Ok(response.encode_to_vec())).await.is_err() {
                    return;
                }
                if let Some(h) = held.take()
                    && tx.send(Ok(h.encode_to_vec())).await.is_err()
                {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}
