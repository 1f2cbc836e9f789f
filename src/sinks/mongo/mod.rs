//! The MongoDB target. Operations are the Eventuous Connector's MongoDB operations (plus
//! `ReplaceOne`, a per-operation collection, update pipelines and integral-field hints); their
//! Structs become BSON by the rules of `bson.rs`. A batch is applied as ordered write commands
//! with the checkpoint documents, in one multi-document transaction where the server has them
//! (replica sets, sharded clusters), else with the checkpoints written right after the batch
//! (at-least-once). Writers run in parallel (`sink.mongo.writers`) on one shared client (a
//! connection pool), each on the fixed set of partitions the pipeline gives it. A connector
//! whose partitions are shared out among gateways (`lease.scope: partitions`) has every batch
//! transaction fenced by its partition claims (`lease/mongo_claims.rs`); without transactions
//! there is no fence, so such a sink refuses to open.
//!
//! - `bson.rs`: Struct -> BSON (`$date`, `integerFields`);
//! - `ops.rs`: decoding and validating the operations;
//! - `apply.rs`: applying a batch, in a transaction or in order;
//! - `parked.rs`: the connector's parked events, listed and discarded for the operator;
//! - `blue_green.rs`: versions of the read model in collections of their own, renamed in.
//!
//! The gateway's documents: in `checkpoints_collection`, one per (connector, partition count,
//! partition) with `_id` `<connector>/<count>/<partition>` and `kind: "checkpoint"`, and the
//! connector's projection version with `_id` `<connector>/version`; in `parked_collection`, one
//! per parked event, `_id` `<connector>/<partition>/<position>`.

mod apply;
pub mod blue_green;
pub mod bson;
pub mod ops;
mod parked;

use std::{sync::Arc, time::Duration};

use futures::TryStreamExt;
use mongodb::{
    Client, Database,
    bson::{Bson, Document, doc},
    error::{ErrorKind, RETRYABLE_WRITE_ERROR, WriteFailure, TRANSIENT_TRANSACTION_ERROR, UNKNOWN_TRANSACTION_COMMIT_RESULT},
    options::{ClientOptions, ConnectionString},
};
use prost_types::Any;
use tracing::info;

use crate::{
    checkpoint::CheckpointRow,
    config::{EventuousCheckpoint, EventuousPlace, MongoSinkConfig, MongoTransactions},
    event::Position,
    lease::{Claims, Fence},
    sinks::{DecodeError, Sink, SinkError, SinkErrorKind, eventuous},
};

pub use apply::MongoWriter;
pub use ops::{MongoOp, Update, Write, decode_mongo_op};

/// Collection names and how to name the target in messages.
#[derive(Debug)]
struct Names {
    /// `host:port/database`, without credentials.
    display: String,
    collection: String,
    checkpoints: String,
    parked: String,
    /// The URL's write concern (`w`, `journal`, `wtimeoutMS`), as the `writeConcern` of write
    /// commands outside transactions (a transaction's commit takes it from the client).
    write_concern: Option<Document>,
    /// Most statements in one write command: `apply::MAX_STATEMENTS`, fewer on FerretDB v1.
    max_statements: usize,
}

pub struct MongoSink {
    client: Client,
    db: Database,
    names: Arc<Names>,
    connector: Arc<str>,
    transactional: bool,
    writers: usize,
    /// The partitions this gateway holds, when the connector's partitions are shared out among
    /// gateways: every batch transaction is fenced with them.
    fence: Option<Arc<Claims>>,
    /// The configured default collection (a staged run writes `<it>_v<version>`).
    base_collection: String,
    /// The version a staged run builds (`<connector>@v<version>`, `blue_green.rs`).
    version: Option<String>,
    /// The projection version the live run applies, once pinned: every batch transaction
    /// checks it (the blue/green fence).
    pinned: Arc<std::sync::OnceLock<String>>,
}

/// Most statements per write command on FerretDB v1 (see `MongoSink::open`).
const FERRETDB_V1_MAX_STATEMENTS: usize = 50;

/// A connection string the MongoDB driver does not take.
#[derive(Debug, thiserror::Error)]
#[error("not a MongoDB connection string: {}", describe_error(.0))]
pub struct UrlError(mongodb::error::Error);

/// Checks a connection string without connecting (for the config loader).
pub fn parse_url(url: &str) -> Result<(), UrlError> {
    ConnectionString::parse(url).map(drop).map_err(UrlError)
}

impl MongoSink {
    /// Connects (failing fast when the server cannot be reached), decides whether batches use
    /// transactions, and creates the gateway's index.
    pub async fn open(config: &MongoSinkConfig, connector: &str) -> Result<Self, SinkError> {
        Self::open_fenced(config, connector, None).await
    }

    /// [`MongoSink::open`] for a run that holds partition claims (`Fence::Claims`): every batch
    /// transaction first checks them, and a target without transactions is refused. A lease
    /// (`Fence::Lease`) is not fenced in MongoDB targets (refused by validation).
    pub async fn open_fenced(config: &MongoSinkConfig, connector: &str, fence: Option<Fence>) -> Result<Self, SinkError> {
        let fence = match fence {
            None => None,
            Some(Fence::Claims(claims)) => Some(Arc::new(claims)),
            Some(Fence::Lease(_)) => {
                return Err(SinkError::config(
                    "a connector lease (`lease.scope: connector`) is not fenced in MongoDB targets; use `lease.scope: partitions` \
                     (refused by validation otherwise)",
                ));
            }
        };
        let mut options = ClientOptions::parse(&config.url)
            .await
            .map_err(|e| SinkError::config(format!("sink.mongo.url: {}", describe_error(&e))))?;
        let hosts = options.hosts.iter().map(ToString::to_string).collect::<Vec<_>>().join(",");
        let write_concern = match &options.write_concern {
            Some(wc) => Some(
                mongodb::bson::to_document(wc).map_err(|e| SinkError::config(format!("sink.mongo.url: write concern: {e}")))?,
            )
            .filter(|d| !d.is_empty()),
            None => None,
        };
        let version = crate::sinks::blue_green::staged_version(connector).map(str::to_string);
        let collection = match &version {
            Some(v) => blue_green::version_collection(&config.collection, v)?,
            None => config.collection.clone(),
        };
        let mut names = Names {
            display: format!("{hosts}/{}", config.database),
            collection,
            checkpoints: config.checkpoints_collection.clone(),
            parked: config.parked_collection.clone(),
            write_concern,
            max_statements: apply::MAX_STATEMENTS,
        };
        options.app_name.get_or_insert_with(|| "projector-gateway".into());
        options.server_selection_timeout.get_or_insert(Duration::from_secs(10));
        options.connect_timeout.get_or_insert(Duration::from_secs(5));
        let client = Client::with_options(options)
            .map_err(|e| SinkError::config(format!("MongoDB target `{}`: {}", names.display, describe_error(&e))))?;
        let db = client.database(&config.database);
        let hello = db.run_command(doc! { "hello": 1 }).await.map_err(|e| {
            SinkError::refused(format!("cannot reach the MongoDB target `{}`: {}", names.display, describe_error(&e)))
                .unreachable_if(is_transient(&e))
        })?;
        // FerretDB v1 keeps one SQLite connection (of a pool of 100) per statement of an
        // `update` command until the command ends, so a command of 100 updates that match
        // documents never returns: keep its commands well below that.
        if let Ok(build) = db.run_command(doc! { "buildInfo": 1 }).await
            && build.get_str("ferretdbVersion").is_ok_and(|v| v.starts_with("v1."))
        {
            names.max_statements = FERRETDB_V1_MAX_STATEMENTS;
        }
        let names = Arc::new(names);
        let transactional = match config.transactions {
            MongoTransactions::Off => false,
            mode => match transactions_work(&client, &db, &names, &hello).await {
                Ok(()) => true,
                Err(reason) if mode == MongoTransactions::Auto => {
                    info!(
                        "MongoDB target `{}` has no multi-document transactions ({reason}): checkpoints are written right after each batch (at-least-once)",
                        names.display
                    );
                    false
                }
                Err(reason) => {
                    return Err(SinkError::schema(format!(
                        "MongoDB target `{}`: `transactions: on` but the server cannot run multi-document transactions: {reason}",
                        names.display
                    )));
                }
            },
        };
        if fence.is_some() && !transactional {
            return Err(SinkError::config(format!(
                "MongoDB target `{}`: partition claims (`lease.scope: partitions`) fence every batch inside its transaction, and \
                 this server runs none (`sink.mongo.transactions` is `{}`): use a replica set or mongos with `transactions: auto` or `on`",
                names.display,
                match config.transactions {
                    MongoTransactions::Auto => "auto",
                    MongoTransactions::On => "on",
                    MongoTransactions::Off => "off",
                }
            )));
        }
        if transactional {
            info!("MongoDB target `{}`: each batch and its checkpoints commit in one transaction", names.display);
        }
        db.collection::<Document>(&names.checkpoints)
            .create_index(mongodb::IndexModel::builder().keys(doc! { "connector": 1 }).build())
            // The gateway's own index: acknowledged by the primary is enough (and a write
            // concern problem then shows at the first batch, with the batch).
            .write_concern(mongodb::options::WriteConcern::nodes(1))
            .await
            .map_err(|e| {
                SinkError::schema(format!("MongoDB target `{}`: cannot create the checkpoints index: {}", names.display, describe_error(&e)))
                    .unreachable_if(is_transient(&e))
            })?;
        Ok(Self {
            client,
            db,
            names,
            connector: connector.into(),
            transactional,
            writers: config.writers.max(1),
            base_collection: config.collection.clone(),
            version,
            pinned: Default::default(),
            fence,
        })
    }

    /// Whether batches and their checkpoints commit in one transaction (exactly once) rather
    /// than one after the other (at-least-once).
    pub fn transactional(&self) -> bool {
        self.transactional
    }

    /// `what` failed with `e`: a failure of `kind`, or an outage when `e` is transient.
    fn error(&self, kind: SinkErrorKind, what: &str, e: &mongodb::error::Error) -> SinkError {
        SinkError::new(kind, format!("MongoDB target `{}`: {what}: {}", self.names.display, describe_error(e))).unreachable_if(is_transient(e))
    }

    /// `commands` in one transaction where the server runs them (else one after the other).
    /// A failure comes with whether the transaction may simply be tried again.
    async fn run_version_commands(&self, commands: &[(String, Document)], kind: SinkErrorKind) -> Result<(), (SinkError, bool)> {
        let failed = |what: &str, e: &mongodb::error::Error| (self.error(kind, what, e), e.contains_label(TRANSIENT_TRANSACTION_ERROR));
        let mut session = None;
        if self.transactional {
            let mut s = self.client.start_session().await.map_err(|e| failed("cannot start a session", &e))?;
            s.start_transaction().await.map_err(|e| failed("cannot start a transaction", &e))?;
            session = Some(s);
        }
        for (what, command) in commands {
            let action = self.db.run_command(command.clone());
            let reply = match session.as_mut() {
                Some(s) => action.session(s).await,
                None => action.await,
            }
            .map_err(|e| failed(what, &e))?;
            if let Ok(errors) = reply.get_array("writeErrors") {
                let conflict = errors.iter().filter_map(Bson::as_document).any(|e| e.get_i32("code") == Ok(112));
                return Err((SinkError::new(kind, format!("MongoDB target `{}`: {what}: {errors:?}", self.names.display)), conflict));
            }
        }
        if let Some(mut s) = session {
            s.commit_transaction().await.map_err(|e| failed("cannot commit", &e))?;
        }
        Ok(())
    }
}

/// Ok when the server runs multi-document transactions: it is a replica set member or a
/// mongos, has sessions, and commits a test transaction.
async fn transactions_work(client: &Client, db: &Database, names: &Names, hello: &Document) -> Result<(), String> {
    let replica = hello.get_str("setName").is_ok() || hello.get_str("msg") == Ok("isdbgrid");
    if !replica {
        return Err("it is not a replica set member or mongos (`hello` has no `setName`)".into());
    }
    if !hello.contains_key("logicalSessionTimeoutMinutes") {
        return Err("it has no sessions".into());
    }
    let mut session = client.start_session().await.map_err(|e| describe_error(&e))?;
    session.start_transaction().await.map_err(|e| describe_error(&e))?;
    db.run_command(doc! { "find": &names.checkpoints, "filter": { "_id": "-" }, "limit": 1 })
        .session(&mut session)
        .await
        .map_err(|e| format!("a test transaction failed: {}", describe_error(&e)))?;
    session.commit_transaction().await.map_err(|e| format!("a test transaction failed to commit: {}", describe_error(&e)))
}

fn checkpoint_id(connector: &str, partition_count: u32, partition: u32) -> String {
    format!("{connector}/{partition_count}/{partition}")
}

fn version_id(connector: &str) -> String {
    format!("{connector}/version")
}

/// True when the stored checkpoints hold every position of `doubt` (a batch in doubt
/// committed).
async fn checkpoints_reached(
    db: &Database,
    names: &Names,
    connector: &str,
    doubt: &(u32, Vec<(u32, Position)>),
) -> Result<bool, mongodb::error::Error> {
    let stored = load_checkpoints(db, names, connector).await?;
    Ok(doubt.1.iter().all(|(partition, position)| {
        stored.iter().any(|r| r.partition_count == doubt.0 && r.partition == *partition && r.position == *position)
    }))
}

async fn load_checkpoints(db: &Database, names: &Names, connector: &str) -> Result<Vec<CheckpointRow>, mongodb::error::Error> {
    let docs: Vec<Document> = db
        .collection::<Document>(&names.checkpoints)
        .find(doc! { "connector": connector, "kind": "checkpoint" })
        .await?
        .try_collect()
        .await?;
    Ok(docs
        .iter()
        .filter_map(|d| {
            let int = |key: &str| match d.get(key) {
                Some(Bson::Int64(i)) => Some(*i),
                Some(Bson::Int32(i)) => Some(i64::from(*i)),
                Some(Bson::Double(f)) if f.fract() == 0.0 => Some(*f as i64),
                _ => None,
            };
            Some(CheckpointRow {
                partition_count: u32::try_from(int("partitionCount")?).ok()?,
                partition: u32::try_from(int("partition")?).ok()?,
                position: u64::try_from(int("position")?).ok()?,
            })
        })
        .collect())
}

/// One line for a driver error: what kind of failure, then the server's or driver's words.
pub(crate) fn describe_error(e: &mongodb::error::Error) -> String {
    match &*e.kind {
        ErrorKind::ServerSelection { message, .. } => format!("server unreachable: {message}"),
        ErrorKind::Io(io) => format!("connection lost: {io}"),
        ErrorKind::Command(c) => format!("{} (code {} {})", c.message, c.code, c.code_name),
        ErrorKind::Write(WriteFailure::WriteConcernError(w)) => {
            format!("write concern error (code {} {}): {}", w.code, w.code_name, w.message)
        }
        _ => e.to_string(),
    }
}

/// Whether trying again later may succeed: network trouble, no primary, a failover, a
/// transaction conflict, or a write the server labels retryable.
pub(crate) fn is_transient(e: &mongodb::error::Error) -> bool {
    if e.contains_label(TRANSIENT_TRANSACTION_ERROR)
        || e.contains_label(RETRYABLE_WRITE_ERROR)
        || e.contains_label(UNKNOWN_TRANSACTION_COMMIT_RESULT)
    {
        return true;
    }
    match &*e.kind {
        ErrorKind::Io(_) | ErrorKind::ServerSelection { .. } | ErrorKind::ConnectionPoolCleared { .. } => true,
        // NotWritablePrimary & co., shutdowns, network timeouts, write conflicts.
        ErrorKind::Command(c) => is_transient_code(c.code),
        // Not confirmed in time, or the primary stepped down meanwhile; a write concern the
        // server can never satisfy (codes 79, 100) is permanent.
        ErrorKind::Write(WriteFailure::WriteConcernError(w)) => !matches!(w.code, 79 | 100),
        _ => false,
    }
}

/// Server error codes worth retrying: NotWritablePrimary & co., shutdowns, network timeouts,
/// write conflicts.
pub(crate) fn is_transient_code(code: i32) -> bool {
    matches!(code, 6 | 7 | 64 | 89 | 91 | 112 | 189 | 262 | 9001 | 10107 | 11600 | 11602 | 13435 | 13436)
}

impl super::OpenSink for MongoSink {
    type Settings = crate::config::MongoSinkConfig;

    async fn open(
        settings: &Self::Settings,
        connector: &crate::config::ConnectorConfig,
        context: &crate::run_context::RunContext,
    ) -> Result<Self, SinkError> {
        Self::open_fenced(settings, &connector.id, context.fence()).await
    }
}

impl Sink for MongoSink {
    type Op = MongoOp;
    type Writer = MongoWriter;

    fn name(&self) -> &'static str {
        "mongo"
    }

    /// A staged run (blue/green) writes each collection's version: `<collection>_v<version>`.
    fn decode(&self, operation: &Any) -> Result<Option<MongoOp>, DecodeError> {
        let mut op = decode_mongo_op(operation)?;
        if let (Some(version), Some(op)) = (&self.version, op.as_mut()) {
            let collection = op.collection.as_deref().unwrap_or(&self.base_collection);
            let versioned = blue_green::version_collection(collection, version)
                .map_err(|e| DecodeError::Malformed { name: proto_name(operation), reason: e.to_string() })?;
            op.collection = Some(versioned);
        }
        Ok(op)
    }

    async fn load_checkpoints(&self) -> Result<Vec<CheckpointRow>, SinkError> {
        load_checkpoints(&self.db, &self.names, &self.connector)
            .await
            .map_err(|e| self.error(SinkErrorKind::Checkpoints, "cannot read the checkpoints", &e))
    }

    async fn delete_checkpoints(&self, partition_count: u32) -> Result<(), SinkError> {
        self.db
            .collection::<Document>(&self.names.checkpoints)
            .delete_many(doc! { "connector": &*self.connector, "kind": "checkpoint", "partitionCount": partition_count as i64 })
            .await
            .map(drop)
            .map_err(|e| self.error(SinkErrorKind::Checkpoints, "cannot delete checkpoints", &e))
    }

    async fn parked_events(&self, query: &crate::sinks::parked::ParkedQuery) -> Result<Vec<crate::sinks::parked::ParkedEvent>, SinkError> {
        parked::list(&self.db, &self.names, &self.connector, query)
            .await
            .map_err(|e| self.error(SinkErrorKind::Refused, "cannot read the parked events", &e))
    }

    async fn count_parked(&self) -> Result<Option<u64>, SinkError> {
        parked::count(&self.db, &self.names, &self.connector)
            .await
            .map(Some)
            .map_err(|e| self.error(SinkErrorKind::Refused, "cannot count the parked events", &e))
    }

    async fn discard_parked(&self, ids: &[String]) -> Result<u64, SinkError> {
        parked::discard(&self.db, &self.names, &self.connector, ids)
            .await
            .map_err(|e| self.error(SinkErrorKind::Refused, "cannot discard parked events", &e))
    }

    async fn projection_version(&self) -> Result<Option<String>, SinkError> {
        let found = self
            .db
            .collection::<Document>(&self.names.checkpoints)
            .find_one(doc! { "_id": version_id(&self.connector) })
            .await
            .map_err(|e| self.error(SinkErrorKind::Refused, "cannot read the projection version", &e))?;
        Ok(found.and_then(|d| d.get_str("version").ok().map(str::to_string)))
    }

    async fn record_projection_version(
        &self,
        projection: &str,
        version: &str,
        reset: Option<Vec<MongoOp>>,
    ) -> Result<(), SinkError> {
        // A failure of the rebuild is one of its reset; a failure of recording alone is refused.
        let kind = if reset.is_some() { SinkErrorKind::Reset } else { SinkErrorKind::Refused };
        let mut commands = Vec::new();
        for (n, op) in reset.iter().flatten().enumerate() {
            commands.push((format!("reset operation {} of the sidecar's Describe ({op})", n + 1), reset_command(op, &self.names)));
        }
        if reset.is_some() {
            commands.push((
                "deleting the checkpoints".to_string(),
                doc! { "delete": &self.names.checkpoints, "deletes": [ { "q": { "connector": &*self.connector, "kind": "checkpoint" }, "limit": 0 } ] },
            ));
        }
        commands.push((
            "recording the projection version".to_string(),
            doc! { "update": &self.names.checkpoints, "updates": [ {
                "q": { "_id": version_id(&self.connector) },
                "u": { "$set": { "kind": "projection_version", "connector": &*self.connector, "projection": projection, "version": version } },
                "upsert": true,
            } ] },
        ));
        // Gateways sharing a connector's partitions start together and record the version at
        // once: a write conflict of their transactions is tried again, as MongoDB's drivers
        // do for a transaction labelled TransientTransactionError.
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.run_version_commands(&commands, kind).await {
                Err((e, true)) if attempt < 5 => {
                    tracing::debug!("{e}; trying the transaction again");
                    tokio::time::sleep(std::time::Duration::from_millis(50 * attempt)).await;
                }
                done => return done.map_err(|(e, _)| e),
            }
        }
    }

    /// The document `{_id: <id>}` of the collection (none, or no collection: no checkpoint),
    /// and its `Position` (the Mongo C# driver's default element name for Eventuous's
    /// `Checkpoint.Position`; `position` too, for a camel-case convention).
    async fn eventuous_checkpoint(&self, checkpoint: &EventuousCheckpoint) -> Result<Option<Position>, SinkError> {
        let EventuousPlace::Collection(collection) = &checkpoint.place else {
            return Err(eventuous::not_here(checkpoint, self.name()));
        };
        let found = self
            .db
            .collection::<Document>(collection)
            .find_one(doc! { "_id": &checkpoint.id })
            .await
            .map_err(|e| {
                eventuous::unreadable(checkpoint, format!("MongoDB target `{}`: {}", self.names.display, describe_error(&e)), is_transient(&e))
            })?;
        let Some(document) = found else { return Ok(None) };
        match document.get("Position").or_else(|| document.get("position")) {
            None | Some(Bson::Null) => Ok(None),
            Some(Bson::Int64(p)) => eventuous::position(Some(*p), checkpoint),
            Some(Bson::Int32(p)) => eventuous::position(Some(i64::from(*p)), checkpoint),
            Some(Bson::Double(p)) if p.fract() == 0.0 && p.abs() < 9.0e15 => eventuous::position(Some(*p as i64), checkpoint),
            Some(other) => Err(eventuous::unexpected(checkpoint, format!("`Position: {other}` (BSON {:?})", other.element_type()))),
        }
    }

    fn writer_count(&self) -> usize {
        self.writers
    }

    fn pin_version(&self, version: &str) {
        let _ = self.pinned.set(version.to_string());
    }

    /// The recorded version is no longer the pinned one: a blue/green swap happened.
    async fn swapped(&self) -> Result<bool, SinkError> {
        let Some(pinned) = self.pinned.get() else { return Ok(false) };
        Ok(self.projection_version().await?.is_some_and(|recorded| &recorded != pinned))
    }

    async fn open_writer(&self) -> Result<MongoWriter, SinkError> {
        let mut writer = MongoWriter::new(
            self.client.clone(),
            self.db.clone(),
            self.names.clone(),
            self.connector.clone(),
            self.transactional,
            self.fence.clone(),
        );
        writer.blue_green(self.pinned.clone(), self.version.is_some());
        Ok(writer)
    }
}

/// One reset operation as a write command of its own.
fn reset_command(op: &MongoOp, names: &Names) -> Document {
    let collection = op.collection.as_deref().unwrap_or(&names.collection);
    match &op.write {
        Write::Insert { documents } => doc! { "insert": collection, "documents": documents.clone() },
        Write::Update { filter, update, multi } => {
            doc! { "update": collection, "updates": [ { "q": filter.clone(), "u": update.to_bson(), "upsert": true, "multi": *multi } ] }
        }
        Write::Replace { filter, replacement } => {
            doc! { "update": collection, "updates": [ { "q": filter.clone(), "u": replacement.clone(), "upsert": true } ] }
        }
        Write::Delete { filter, multi } => {
            doc! { "delete": collection, "deletes": [ { "q": filter.clone(), "limit": if *multi { 0 } else { 1 } } ] }
        }
    }
}

fn proto_name(any: &Any) -> String {
    crate::proto::message_name(any).to_string()
}
