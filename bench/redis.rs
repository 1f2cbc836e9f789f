//! The Redis scenarios' pieces: a key prefix of its own per scenario (its keys deleted at the
//! end), the bookings read model in Redis served in-process (the tests' reducer,
//! `tests/it/support/redis_bookings.rs`, with `Describe` declaring the same five types as the SQL
//! reducer), and the raw measurement: the same operations, cut into the same batches, sent by
//! the same client as one MULTI/EXEC per batch with the batch's checkpoint HSET, and nothing
//! else (no gRPC, no WATCH, no reading of types and counters before MULTI).

use std::{pin::Pin, sync::Arc, time::Instant};

use ::redis::aio::MultiplexedConnection;
use anyhow::{Context, bail};
use bookings_reducer::proto::{
    DescribeRequest, DescribeResponse, ProjectionRequest, ProjectionResponse,
    projection_info_server::{ProjectionInfo, ProjectionInfoServer},
    projection_server::{Projection, ProjectionServer},
};
use projector_gateway::{
    config::{ConnectorConfig, SinkConfig, SourceConfig},
    event::Event,
    partition::Partitioner,
    reducer::build_request,
    sinks::{
        BatchItem, EventRef, Sink,
        redis::{RedisOp, RedisSink},
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

#[path = "../tests/it/support/redis_bookings.rs"]
mod redis_bookings;

/// The keys of one scenario: everything under `bench:<scenario>:<pid>:`.
pub struct ScratchRedis {
    url: String,
    pub prefix: String,
}

impl ScratchRedis {
    pub fn new(url: &str, scenario: &str) -> Self {
        Self { url: url.to_string(), prefix: format!("bench:{scenario}:{}:", std::process::id()) }
    }

    /// The `sink:` section.
    pub fn sink(&self, writers: usize) -> Value {
        json!({"redis": {"url": self.url, "key_prefix": self.prefix, "writers": writers}})
    }

    async fn connection(&self) -> anyhow::Result<MultiplexedConnection> {
        Ok(::redis::Client::open(self.url.as_str())?.get_multiplexed_async_connection().await?)
    }

    /// The scenario's keys, found by SCAN.
    async fn keys(&self) -> anyhow::Result<Vec<String>> {
        let mut conn = self.connection().await?;
        let (mut keys, mut cursor) = (Vec::new(), 0u64);
        loop {
            let (next, batch): (u64, Vec<String>) = ::redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(format!("{}*", self.prefix))
                .arg("COUNT")
                .arg(10_000)
                .query_async(&mut conn)
                .await?;
            keys.extend(batch);
            if next == 0 {
                return Ok(keys);
            }
            cursor = next;
        }
    }

    /// The read model's size, for the scenario's log line: (bookings, guests).
    pub async fn sizes(&self) -> anyhow::Result<(usize, usize)> {
        let keys = self.keys().await?;
        let count = |kind: &str| keys.iter().filter(|k| k[self.prefix.len()..].starts_with(kind)).count();
        Ok((count("booking:"), count("guest:")))
    }

    /// Deletes the scenario's keys.
    pub async fn drop(self) -> anyhow::Result<()> {
        let keys = self.keys().await?;
        let mut conn = self.connection().await?;
        for chunk in keys.chunks(1000) {
            ::redis::cmd("UNLINK").arg(chunk).query_async::<()>(&mut conn).await.context("deleting the bench keys")?;
        }
        Ok(())
    }
}

/// The Redis read model's reducer over gRPC.
#[derive(Clone, Copy)]
struct RedisReducer;

type Responses = Pin<Box<dyn Stream<Item = Result<ProjectionResponse, Status>> + Send>>;

// gRPC handlers answer with `tonic::Status`, as tonic's generated traits do.
#[allow(clippy::result_large_err)]
#[tonic::async_trait]
impl Projection for RedisReducer {
    type ProjectStream = Responses;

    async fn project(&self, request: Request<Streaming<ProjectionRequest>>) -> Result<Response<Responses>, Status> {
        let responses = request.into_inner().map(|r| r.map(|request| redis_bookings::reduce(&request)));
        Ok(Response::new(Box::pin(responses)))
    }
}

#[tonic::async_trait]
impl ProjectionInfo for RedisReducer {
    async fn describe(&self, _: Request<DescribeRequest>) -> Result<Response<DescribeResponse>, Status> {
        Ok(Response::new(DescribeResponse {
            projection: "bookings-redis".into(),
            event_types: redis_bookings::HANDLED.iter().map(|t| t.to_string()).collect(),
            ..Default::default()
        }))
    }
}

/// Serves the Redis reducer on `listener` until `shutdown`.
pub async fn serve(listener: TcpListener, shutdown: impl std::future::Future<Output = ()> + Send) -> Result<(), tonic::transport::Error> {
    tonic::transport::Server::builder()
        .tcp_nodelay(true)
        .initial_stream_window_size(Some(4 << 20))
        .initial_connection_window_size(Some(16 << 20))
        .add_service(ProjectionServer::new(RedisReducer))
        .add_service(ProjectionInfoServer::new(RedisReducer))
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown)
        .await
}

/// The raw rate: every handled event reduced and decoded by the sink beforehand, cut into
/// batches of `max_ops` per writer as the writers cut them under load; then only the
/// transactions are timed: per batch, MULTI, the operations' commands (the sink's own
/// `RedisOp::commands`), one HSET of the batch's checkpoint fields, EXEC, on one connection per
/// writer.
pub async fn raw_multi_exec(config: &ConnectorConfig) -> anyhow::Result<Outcome> {
    let setup = Instant::now();
    let SinkConfig::Redis(c) = &config.sink else { bail!("redis-raw needs the redis sink") };
    // Opened only to decode the operations as the pipeline does.
    let sink = RedisSink::open(c, &config.id).await?;
    let SourceConfig::Sqlite(source) = &config.source else { bail!("redis-raw reads a SQLite log") };
    let (events, head) = raw_batches::read_log(source).await?;
    let partitioner = Partitioner::new(&config.partitioning);
    let format = config.sidecar.as_ref().context("a projector needs a sidecar config")?.payload;
    let mut reduced: Vec<(EventRef, Vec<RedisOp>)> = Vec::with_capacity(events.len());
    for event in events {
        if !redis_bookings::HANDLED.contains(&event.event_type.as_str()) {
            continue;
        }
        let partition = partitioner.partition_of(&event.stream);
        let request = build_request(&event, partition, format);
        let request = ProjectionRequest::decode(request.encode_to_vec().as_slice())?;
        let response = redis_bookings::reduce(&request);
        if let Some(e) = response.error {
            bail!("the reducer rejected event {}: {}", event.event_id, e.message);
        }
        let ops = response.operation.iter().chain(response.operations.iter()).filter_map(|any| sink.decode(any).transpose()).collect::<Result<Vec<_>, _>>()?;
        let event = Event { data: Default::default(), metadata: None, ..event };
        reduced.push((EventRef::new(Arc::new(event), partition), ops));
    }
    let count = partitioner.count();
    let writers = sink.writer_count().clamp(1, count as usize);
    let max_ops = config.batch.max_ops;
    let Cut { batches, ops: total_ops, events: total_events } = raw_batches::cut(reduced, writers, count, max_ops);
    let transactions = batches.iter().map(Vec::len).sum::<usize>() as u64;
    let client = ::redis::Client::open(c.url.as_str())?;
    let mut connections = Vec::with_capacity(writers);
    for _ in 0..writers {
        connections.push(client.get_multiplexed_async_connection().await?);
    }
    let checkpoints = sink.checkpoints_key().to_string();
    let setup_seconds = setup.elapsed().as_secs_f64();

    let (started, cpu) = (Instant::now(), cpu_seconds());
    let mut tasks = tokio::task::JoinSet::new();
    for (mut conn, batches) in connections.into_iter().zip(batches) {
        let checkpoints = checkpoints.clone();
        tasks.spawn(async move {
            for batch in &batches {
                // The commands are built inside the clock, as the sink builds its own.
                let mut pipe = ::redis::pipe();
                pipe.atomic();
                for item in &batch.items {
                    let BatchItem::Apply { ops, .. } = item else { continue };
                    for op in ops {
                        op.push_commands(&mut pipe);
                    }
                }
                let hset = pipe.cmd("HSET").arg(&checkpoints);
                for c in &batch.checkpoints {
                    hset.arg(format!("{}:{}", batch.partition_count, c.partition)).arg(c.position);
                }
                pipe.exec_async(&mut conn).await?;
            }
            Ok::<_, ::redis::RedisError>(())
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
        transactions,
        setup_seconds,
        ..Default::default()
    })
}
