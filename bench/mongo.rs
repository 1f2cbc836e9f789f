//! The MongoDB scenarios' pieces: a database of its own per scenario (dropped at the end), the
//! bookings reducer's MongoDB form served in-process (`bookings_reducer` with
//! `REDUCER_TARGET=mongo`), and the raw measurement: the same operations, cut into the same
//! batches, sent by the same driver as ordered write commands with the batch's checkpoint write,
//! and nothing else (no gRPC, no transaction, no failure bookkeeping).

use std::{sync::Arc, time::Instant};

use anyhow::{Context, bail};
use bookings_reducer::proto::ProjectionRequest;
use mongodb::{
    Client, Database,
    bson::{Bson, Document, doc},
};
use projector_gateway::{
    config::{ConnectorConfig, SinkConfig, SourceConfig},
    event::Event,
    partition::Partitioner,
    reducer::build_request,
    sinks::{
        Batch, BatchItem, EventRef, Sink,
        mongo::{MongoOp, MongoSink, Write},
    },
};
use prost::Message;
use serde_json::{Value, json};
use tokio::net::TcpListener;

use crate::{
    raw_batches::{self, Cut},
    scenarios::{Outcome, cpu_seconds},
};

/// Most statements in one write command, as the sink sends them (`sinks/mongo/apply.rs`), and
/// on FerretDB v1, which hangs on an `update` of 100 statements that match documents.
const MAX_STATEMENTS: usize = 1000;
const FERRETDB_V1_MAX_STATEMENTS: usize = 50;

/// The database of one scenario, on a server of `scripts/mongo.sh`.
pub struct ScratchMongo {
    url: String,
    pub database: String,
}

impl ScratchMongo {
    pub fn new(url: &str, scenario: &str) -> Self {
        Self { url: url.to_string(), database: format!("bench_{}_{}", scenario.replace('-', "_"), std::process::id()) }
    }

    /// The `sink:` section (the read model's collections are named by each operation).
    pub fn sink(&self, writers: usize) -> Value {
        json!({"mongo": {"url": self.url, "database": self.database, "collection": "bookings", "writers": writers}})
    }

    pub async fn drop(self) -> anyhow::Result<()> {
        let client = Client::with_uri_str(&self.url).await?;
        client.database(&self.database).drop().await.with_context(|| format!("dropping database {}", self.database))?;
        Ok(())
    }
}

/// Serves the bookings reducer's MongoDB form on `listener` until `shutdown`.
pub async fn serve(listener: TcpListener, shutdown: impl std::future::Future<Output = ()> + Send) -> Result<(), tonic::transport::Error> {
    bookings_reducer::serve_target(listener, bookings_reducer::Target::Mongo, shutdown).await
}

/// The raw rate: every handled event reduced by `reduce_mongo` and decoded by the sink
/// beforehand, cut into batches of `max_ops` per writer as the writers cut them under load;
/// then only the write commands are timed: per batch, one ordered `update` command per
/// collection with that collection's statements in batch order (what a driver's per-collection
/// ordered bulk write sends), then the checkpoint documents' `update`.
pub async fn raw_bulk(config: &ConnectorConfig) -> anyhow::Result<Outcome> {
    let setup = Instant::now();
    let SinkConfig::Mongo(c) = &config.sink else { bail!("raw-bulk needs the mongo sink") };
    // Opened only to decode the operations as the pipeline does, and to create the gateway's
    // checkpoints index as a run would find it.
    let sink = MongoSink::open(c, &config.id).await?;
    let SourceConfig::Sqlite(source) = &config.source else { bail!("raw-bulk reads a SQLite log") };
    let (events, head) = raw_batches::read_log(source).await?;
    let partitioner = Partitioner::new(&config.partitioning);
    let format = config.sidecar.as_ref().context("a projector needs a sidecar config")?.payload;
    let mut reduced: Vec<(EventRef, Vec<MongoOp>)> = Vec::with_capacity(events.len());
    for event in events {
        if !bookings_reducer::HANDLED_EVENT_TYPES.contains(&event.event_type.as_str()) {
            continue;
        }
        let partition = partitioner.partition_of(&event.stream);
        let request = build_request(&event, partition, format);
        let request = ProjectionRequest::decode(request.encode_to_vec().as_slice())?;
        let response = bookings_reducer::reduce_mongo(&request);
        if let Some(e) = response.error {
            bail!("the reducer rejected event {}: {}", event.event_id, e.message);
        }
        let ops = response
            .operation
            .iter()
            .chain(response.operations.iter())
            .filter_map(|any| sink.decode(any).transpose())
            .collect::<Result<Vec<_>, _>>()?;
        let event = Event { data: Default::default(), metadata: None, ..event };
        reduced.push((EventRef::new(Arc::new(event), partition), ops));
    }
    let count = partitioner.count();
    let writers = sink.writer_count().clamp(1, count as usize);
    let max_ops = config.batch.max_ops;
    let Cut { batches, ops: total_ops, events: total_events } = raw_batches::cut(reduced, writers, count, max_ops);
    let requests = batches.iter().map(Vec::len).sum::<usize>() as u64;
    // The commands themselves are built inside the clock, as the sink builds its own.
    let client = Client::with_uri_str(&c.url).await?;
    let db = client.database(&c.database);
    let ferret_v1 = db
        .run_command(doc! { "buildInfo": 1 })
        .await?
        .get_str("ferretdbVersion")
        .is_ok_and(|v| v.starts_with("v1."));
    let max_statements = if ferret_v1 { FERRETDB_V1_MAX_STATEMENTS } else { MAX_STATEMENTS };
    let setup_seconds = setup.elapsed().as_secs_f64();

    let (started, cpu) = (Instant::now(), cpu_seconds());
    let mut tasks = tokio::task::JoinSet::new();
    for batches in batches {
        let (db, connector, checkpoints) = (db.clone(), config.id.clone(), c.checkpoints_collection.clone());
        tasks.spawn(async move {
            for batch in &batches {
                for command in commands(batch, &connector, &checkpoints, max_statements)? {
                    let reply = db.run_command(command).await?;
                    if let Ok(errors) = reply.get_array("writeErrors") {
                        bail!("raw bulk write failed: {errors:?}");
                    }
                }
            }
            Ok(())
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

/// One batch as ordered write commands: per collection (in order of first use) its statements
/// in batch order, a new command where the kind of write changes or after `max_statements`;
/// then the checkpoint documents.
fn commands(batch: &Batch<MongoOp>, connector: &str, checkpoints: &str, max_statements: usize) -> anyhow::Result<Vec<Document>> {
    let mut per_collection: Vec<(&str, Vec<(&'static str, Document)>)> = Vec::new();
    for item in &batch.items {
        let BatchItem::Apply { ops, .. } = item else { continue };
        for op in ops {
            let collection = op.collection.as_deref().context("the bookings reducer names every collection")?;
            let statement = match &op.write {
                Write::Update { filter, update, multi } => {
                    ("update", doc! { "q": filter.clone(), "u": update.to_bson(), "upsert": true, "multi": *multi })
                }
                other => bail!("the bookings reducer sends updates only, not {}", other.name()),
            };
            match per_collection.iter_mut().find(|(c, _)| *c == collection) {
                Some((_, statements)) => statements.push(statement),
                None => per_collection.push((collection, vec![statement])),
            }
        }
    }
    let mut commands = Vec::new();
    for (collection, statements) in per_collection {
        let mut current: Option<(&str, Vec<Bson>)> = None;
        for (command, statement) in statements {
            match &mut current {
                Some((name, list)) if *name == command && list.len() < max_statements => list.push(Bson::Document(statement)),
                _ => {
                    if let Some((name, list)) = current.take() {
                        commands.push(doc! { name: collection, "updates": list, "ordered": true });
                    }
                    current = Some((command, vec![Bson::Document(statement)]));
                }
            }
        }
        if let Some((name, list)) = current {
            commands.push(doc! { name: collection, "updates": list, "ordered": true });
        }
    }
    let rows: Vec<Bson> = batch
        .checkpoints
        .iter()
        .map(|c| {
            let (partition, position) = (c.partition, c.position);
            Bson::Document(doc! {
                "q": { "_id": format!("{connector}/{}/{partition}", batch.partition_count) },
                "u": { "$set": {
                    "kind": "checkpoint",
                    "connector": connector,
                    "partitionCount": batch.partition_count as i64,
                    "partition": partition as i64,
                    "position": position as i64,
                    "updatedAt": mongodb::bson::DateTime::now(),
                } },
                "upsert": true,
                "multi": false,
            })
        })
        .collect();
    commands.push(doc! { "update": checkpoints, "updates": rows, "ordered": true });
    Ok(commands)
}

/// The read model's size, for the scenario's log line.
pub async fn documents(url: &str, database: &str) -> anyhow::Result<(u64, u64)> {
    let client = Client::with_uri_str(url).await?;
    let db: Database = client.database(database);
    let bookings = db.collection::<Document>("bookings").estimated_document_count().await?;
    let guests = db.collection::<Document>("guest_stats").estimated_document_count().await?;
    Ok((bookings, guests))
}
