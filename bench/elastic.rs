//! The Elasticsearch scenarios' pieces: index names of their own per scenario (deleted at the
//! end), the bookings reducer's Elasticsearch form served in-process (the tests' reducer,
//! `tests/it/support/elastic_bookings.rs`, with `Describe` declaring the same five types as the
//! SQL reducer), and the raw `_bulk` measurement: the same operations, cut into the same
//! batches, sent by the same client as `_bulk` requests with nothing else (no gRPC, no
//! checkpoints).

use std::{pin::Pin, sync::Arc, time::Instant};

use anyhow::{Context, bail};
use bookings_reducer::proto::{
    DescribeRequest, DescribeResponse, ProjectionRequest, ProjectionResponse,
    projection_info_server::{ProjectionInfo, ProjectionInfoServer},
    projection_server::{Projection, ProjectionServer},
};
use projector_gateway::{
    config::{ConnectorConfig, ConnectorMode, SinkConfig, SourceConfig},
    partition::Partitioner,
    reducer::build_request,
    sinks::{
        EventRef, Sink,
        elastic::{ElasticOp, ElasticSink, client},
    },
};
use prost::Message;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio_stream::{Stream, StreamExt, wrappers::TcpListenerStream};
use tonic::{Request, Response, Status, Streaming};

use crate::{
    raw_batches::{self, Cut},
    scenarios::{Outcome, cpu_seconds},
};

#[path = "../tests/it/support/elastic_bookings.rs"]
mod elastic_bookings;

pub use elastic_bookings::reduce_elastic;

/// The indices of one scenario: `<prefix>` (the read model), `<prefix>-checkpoints`,
/// `<prefix>-parked`, and in producer mode `<prefix>-ev-<category>`.
pub struct ScratchIndices {
    url: String,
    pub prefix: String,
}

impl ScratchIndices {
    pub fn new(url: &str, scenario: &str) -> Self {
        Self { url: url.to_string(), prefix: format!("bench-{scenario}-{}", std::process::id()) }
    }

    /// The `sink:` section.
    pub fn sink(&self, producer: bool) -> Value {
        let mut elastic = json!({
            "url": self.url,
            "index": self.prefix,
            "checkpoints_index": format!("{}-checkpoints", self.prefix),
            "parked_index": format!("{}-parked", self.prefix),
        });
        if producer {
            // Plain indices rather than data streams: the write path is the same (`create` by
            // event id), and plain indices can be deleted by name afterwards on every engine.
            elastic["producer"] = json!({
                "index": format!("{}-ev-{{category}}", self.prefix),
                "data_stream": false,
                "settings": {"index.number_of_replicas": 0},
            });
        }
        json!({"elastic": elastic})
    }

    /// Deletes the scenario's indices (by name: engines refuse wildcard deletes by default).
    pub async fn drop(self) -> anyhow::Result<()> {
        let config = projector_gateway::config::ElasticSinkConfig {
            url: self.url.clone(),
            api_key: None,
            index: None,
            checkpoints_index: "x".into(),
            parked_index: "x".into(),
            refresh: Default::default(),
            max_bulk_bytes: 1 << 20,
            request_timeout_ms: 60_000,
            writers: 1,
            producer: None,
        };
        let (es, _) = client::connect(&config).map_err(anyhow::Error::msg)?;
        let names = ["", "-checkpoints", "-parked", "-ev-booking", "-ev-guest"]
            .map(|suffix| format!("{}{suffix}", self.prefix))
            .join(",");
        let path = format!("/{names}?ignore_unavailable=true");
        client::send(&es, elasticsearch::http::Method::Delete, &path, None)
            .await
            .map_err(|e| anyhow::anyhow!("deleting the bench indices: {}", e.message))?;
        let template = format!("/_index_template/projector-gateway-{}-ev-category", self.prefix);
        let _ = client::send(&es, elasticsearch::http::Method::Delete, &template, None).await;
        Ok(())
    }
}

/// The reducer's Elasticsearch form over gRPC.
#[derive(Clone, Copy)]
struct ElasticReducer;

type Responses = Pin<Box<dyn Stream<Item = Result<ProjectionResponse, Status>> + Send>>;

// gRPC handlers answer with `tonic::Status`, as tonic's generated traits do.
#[allow(clippy::result_large_err)]
#[tonic::async_trait]
impl Projection for ElasticReducer {
    type ProjectStream = Responses;

    async fn project(&self, request: Request<Streaming<ProjectionRequest>>) -> Result<Response<Responses>, Status> {
        let responses = request.into_inner().map(|r| r.map(|request| reduce_elastic(&request)));
        Ok(Response::new(Box::pin(responses)))
    }
}

#[tonic::async_trait]
impl ProjectionInfo for ElasticReducer {
    async fn describe(&self, _: Request<DescribeRequest>) -> Result<Response<DescribeResponse>, Status> {
        Ok(Response::new(DescribeResponse {
            projection: "bookings-elastic".into(),
            event_types: bookings_reducer::HANDLED_EVENT_TYPES.iter().map(|t| t.to_string()).collect(),
            ..Default::default()
        }))
    }
}

/// Serves the Elasticsearch reducer on `listener` until `shutdown`.
pub async fn serve(listener: TcpListener, shutdown: impl std::future::Future<Output = ()> + Send) -> Result<(), tonic::transport::Error> {
    tonic::transport::Server::builder()
        .tcp_nodelay(true)
        .initial_stream_window_size(Some(4 << 20))
        .initial_connection_window_size(Some(16 << 20))
        .add_service(ProjectionServer::new(ElasticReducer))
        .add_service(ProjectionInfoServer::new(ElasticReducer))
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown)
        .await
}

/// The raw `_bulk` rate: every event reduced (projector) or produced (producer) and decoded
/// beforehand, cut into batches of `max_ops` per writer as the writers cut them under load,
/// then only the `_bulk` requests are timed.
pub async fn raw_bulk(config: &ConnectorConfig) -> anyhow::Result<Outcome> {
    let setup = Instant::now();
    let SinkConfig::Elastic(c) = &config.sink else { bail!("raw-bulk needs the elastic sink") };
    let mode = config.mode();
    let sink = ElasticSink::open(c, &config.id, mode).await?;
    let SourceConfig::Sqlite(source) = &config.source else { bail!("raw-bulk reads a SQLite log") };
    let (events, head) = raw_batches::read_log(source).await?;
    let partitioner = Partitioner::new(&config.partitioning);
    let mut reduced: Vec<(EventRef, Vec<ElasticOp>)> = Vec::with_capacity(events.len());
    for event in events {
        let partition = partitioner.partition_of(&event.stream);
        let event = EventRef::new(Arc::new(event), partition);
        let ops = match mode {
            ConnectorMode::Producer => sink.produce(&event)?,
            ConnectorMode::Projector => {
                if !bookings_reducer::HANDLED_EVENT_TYPES.contains(&event.event.event_type.as_str()) {
                    continue;
                }
                let format = config.sidecar.as_ref().context("a projector needs a sidecar config")?.payload;
                let request = build_request(&event.event, partition, format);
                let request = ProjectionRequest::decode(request.encode_to_vec().as_slice())?;
                let response = reduce_elastic(&request);
                if let Some(e) = response.error {
                    bail!("the reducer rejected event {}: {}", event.event.event_id, e.message);
                }
                response.operation.iter().chain(response.operations.iter()).filter_map(|any| sink.decode(any).transpose()).collect::<Result<Vec<_>, _>>()?
            }
        };
        reduced.push((event, ops));
    }
    let count = partitioner.count();
    let writers = sink.writer_count().clamp(1, count as usize);
    let max_ops = config.batch.max_ops;
    let Cut { batches, ops: total_ops, events: total_events } = raw_batches::cut(reduced, writers, count, max_ops);
    let requests = batches.iter().map(Vec::len).sum::<usize>() as u64;
    let setup_seconds = setup.elapsed().as_secs_f64();

    let (started, cpu) = (Instant::now(), cpu_seconds());
    let sink = Arc::new(sink);
    let mut tasks = tokio::task::JoinSet::new();
    for batches in batches {
        let sink = sink.clone();
        tasks.spawn(async move {
            for batch in &batches {
                sink.raw_bulk(batch).await?;
            }
            Ok::<_, projector_gateway::sinks::ApplyError>(())
        });
    }
    while let Some(done) = tasks.join_next().await {
        done??;
    }
    Ok(Outcome {
        events: head,
        applied: total_events,
        ops: total_ops,
        seconds: started.elapsed().as_secs_f64(),
        cpu_seconds: cpu_seconds() - cpu,
        transactions: requests,
        setup_seconds,
        ..Default::default()
    })
}
