//! The SQL Server (and Azure SQL) target, through tiberius. Each writer owns a connection and
//! applies a batch as one transaction holding its operations, its parked events and the
//! checkpoint rows of every partition it touches, which makes the effect exactly once.
//!
//! Round trips per batch: **one** — the whole transaction (`SET XACT_ABORT ON; BEGIN TRAN;`,
//! every statement with its parameters numbered across the batch, the checkpoint `MERGE`,
//! `COMMIT TRAN`) is one `sp_executesql` call. Only a batch with more than 2,098 parameters
//! (the RPC limit of 2,100 less `sp_executesql`'s own two) is split between statements into
//! N calls, sent as `BEGIN TRAN` + N calls + `COMMIT TRAN`: N + 2 round trips. A failed batch
//! costs one more (`ROLLBACK`).
//!
//! - `connect.rs`: the ADO.NET connection string, connecting, error classification;
//! - `params.rs`: typed parameters as SQL Server values, placeholders renumbered;
//! - `batch.rs`: a transaction as one T-SQL text, and its lines mapped back to the items;
//! - `schema.rs`: the gateway's tables;
//! - `apply.rs`: applying a batch, with reconnection and the in-doubt check;
//! - `parked.rs`: the connector's parked events, listed and discarded for the operator.
//!
//! Projection versions are recorded in `<schema>.projections`, as the PostgreSQL target does.

mod apply;
mod batch;
mod connect;
mod params;
mod parked;
mod schema;

use std::sync::Arc;

use prost_types::Any;
use tiberius::{ColumnData, Query};
use tokio::sync::Mutex;

use crate::{
    checkpoint::CheckpointRow,
    config::{EventuousCheckpoint, EventuousPlace, MssqlSinkConfig},
    event::Position,
    sinks::{DecodeError, Sink, SinkError, SinkErrorKind, eventuous, sql::{SqlOp, decode_sql_op}},
};

pub use apply::MssqlWriter;
pub use connect::{ConnectionStringError, TRANSIENT_ERRORS, parse_connection_string};

use batch::{Origin, Plan, ROLLBACK_BATCH, Step};
use connect::{Endpoint, MssqlClient, describe, is_connection_lost, is_transient, quote_ident};
use schema::GatewaySql;

pub struct MssqlSink {
    endpoint: Arc<Endpoint>,
    connector: Arc<str>,
    sql: Arc<GatewaySql>,
    /// `[<schema>].[parked_events]`, as `schema.rs` names it.
    parked_table: String,
    allow_raw_sql: bool,
    writers: usize,
    /// For reading and deleting checkpoints and recording versions; reopened when lost.
    admin: Mutex<Option<MssqlClient>>,
}

impl MssqlSink {
    /// Connects to the target, creates the gateway's schema and tables where missing, and runs
    /// the configured init SQL.
    pub async fn open(config: &MssqlSinkConfig, connector: &str) -> Result<Self, SinkError> {
        let endpoint =
            Endpoint::parse(&config.connection_string).map_err(|e| SinkError::config(format!("sink.mssql.connection_string: {e}")))?;
        let mut client = connect(&endpoint).await?;
        let sql = GatewaySql::new(&config.schema);
        schema::prepare_target(&mut client, config, &sql, endpoint.display()).await?;
        Ok(Self {
            endpoint: Arc::new(endpoint),
            connector: connector.into(),
            sql: Arc::new(sql),
            parked_table: format!("{}.[parked_events]", quote_ident(&config.schema)),
            allow_raw_sql: config.allow_raw_sql,
            writers: config.writers.max(1),
            admin: Mutex::new(Some(client)),
        })
    }

    /// Runs `work` on the admin connection (reopened first if lost); a connection that fails
    /// is dropped so the next call opens a new one. Its failure is of `kind`, or an outage.
    async fn with_admin<T>(
        &self,
        kind: SinkErrorKind,
        what: &str,
        work: impl AsyncFnOnce(&mut MssqlClient) -> Result<T, tiberius::error::Error>,
    ) -> Result<T, SinkError> {
        let mut guard = self.admin.lock().await;
        let client = match &mut *guard {
            Some(client) => client,
            None => guard.insert(connect(&self.endpoint).await?),
        };
        match work(client).await {
            Ok(value) => Ok(value),
            Err(e) => {
                if is_connection_lost(&e) {
                    *guard = None;
                }
                let failed = SinkError::new(kind, format!("SQL Server target {}: {what}: {}", self.endpoint.display(), describe(&e)));
                Err(failed.unreachable_if(is_transient(&e)))
            }
        }
    }
}

async fn connect(endpoint: &Endpoint) -> Result<MssqlClient, SinkError> {
    endpoint.connect().await.map_err(|e| cannot_connect(endpoint, &e))
}

/// A connection that could not be made: an outage, or refused (a login failed, a certificate,
/// no such database).
fn cannot_connect(endpoint: &Endpoint, e: &tiberius::error::Error) -> SinkError {
    SinkError::refused(format!("cannot connect to the SQL Server target {}: {}", endpoint.display(), describe(e))).unreachable_if(is_transient(e))
}

impl super::OpenSink for MssqlSink {
    type Settings = crate::config::MssqlSinkConfig;

    async fn open(settings: &Self::Settings, connector: &crate::config::ConnectorConfig, _: &crate::run_context::RunContext) -> Result<Self, SinkError> {
        Self::open(settings, &connector.id).await
    }
}

impl Sink for MssqlSink {
    type Op = SqlOp;
    type Writer = MssqlWriter;

    fn name(&self) -> &'static str {
        "mssql"
    }

    fn decode(&self, operation: &Any) -> Result<Option<SqlOp>, DecodeError> {
        decode_sql_op(operation, self.allow_raw_sql, "mssql")
    }

    async fn load_checkpoints(&self) -> Result<Vec<CheckpointRow>, SinkError> {
        self.with_admin(SinkErrorKind::Checkpoints, "cannot read the checkpoints", async |client| {
            schema::load_checkpoints(client, &self.sql, &self.connector).await
        })
        .await
    }

    async fn delete_checkpoints(&self, partition_count: u32) -> Result<(), SinkError> {
        self.with_admin(SinkErrorKind::Checkpoints, "cannot delete checkpoints", async |client| {
            let mut query = Query::new(self.sql.delete_checkpoints.as_str());
            query.bind(&*self.connector);
            query.bind(partition_count as i32);
            query.execute(client).await.map(drop)
        })
        .await
    }

    async fn parked_events(&self, query: &crate::sinks::parked::ParkedQuery) -> Result<Vec<crate::sinks::parked::ParkedEvent>, SinkError> {
        self.with_admin(SinkErrorKind::Refused, "cannot read the parked events", async |client| {
            parked::list(client, &self.parked_table, &self.connector, query).await
        })
        .await
    }

    async fn count_parked(&self) -> Result<Option<u64>, SinkError> {
        self.with_admin(SinkErrorKind::Refused, "cannot count the parked events", async |client| {
            parked::count(client, &self.parked_table, &self.connector).await.map(Some)
        })
        .await
    }

    async fn discard_parked(&self, ids: &[String]) -> Result<u64, SinkError> {
        self.with_admin(SinkErrorKind::Refused, "cannot discard parked events", async |client| {
            parked::discard(client, &self.parked_table, &self.connector, ids).await
        })
        .await
    }

    async fn projection_version(&self) -> Result<Option<String>, SinkError> {
        self.with_admin(SinkErrorKind::Refused, "cannot read the projection version", async |client| {
            let mut query = Query::new(self.sql.load_version.as_str());
            query.bind(&*self.connector);
            let row = query.query(client).await?.into_row().await?;
            Ok(row.and_then(|r| r.get::<&str, _>(0).map(str::to_string)))
        })
        .await
    }

    async fn record_projection_version(
        &self,
        projection: &str,
        version: &str,
        reset: Option<Vec<SqlOp>>,
    ) -> Result<(), SinkError> {
        let mut steps = Vec::new();
        for (n, op) in reset.iter().flatten().enumerate() {
            let origin = Origin::Op { item: 0, number: n + 1 };
            let what = || format!("reset operation {} of the sidecar's Describe ({op})", n + 1);
            steps.push(match op {
                SqlOp::Raw(sql) => Step::raw(sql, origin),
                SqlOp::Statement { sql, params } => params
                    .iter()
                    .map(params::column)
                    .collect::<Result<Vec<_>, _>>()
                    .and_then(|params| Step::statement(sql.as_str(), params, origin))
                    .map_err(|e| SinkError::reset(format!("SQL Server target {}: {}: {e}", self.endpoint.display(), what())))?,
            });
        }
        let connector = || ColumnData::String(Some((*self.connector).into()));
        if reset.is_some() {
            let step = Step::statement(self.sql.delete_all_checkpoints.as_str(), vec![connector()], Origin::Gateway("deleting the checkpoints"));
            steps.push(step.expect("gateway SQL is valid"));
        }
        let params = vec![connector(), ColumnData::String(Some(projection.into())), ColumnData::String(Some(version.into()))];
        let step = Step::statement(self.sql.upsert_version.as_str(), params, Origin::Gateway("recording the projection version"));
        steps.push(step.expect("gateway SQL is valid"));
        // A failure of the rebuild is one of its reset; a failure of recording alone is refused.
        let kind = if reset.is_some() { SinkErrorKind::Reset } else { SinkErrorKind::Refused };
        self.with_admin(kind, "cannot record the projection version", async |client| {
            match apply::run(client, Plan::new(steps)).await {
                Ok(()) => Ok(()),
                Err(failure) => {
                    if !is_connection_lost(&failure.error) {
                        let _ = schema::run_batch(client, ROLLBACK_BATCH).await;
                    }
                    Err(failure.error)
                }
            }
        })
        .await
    }

    /// `SELECT Position FROM [<schema>].[<table>] WHERE ID = @P1`; a table that does not exist
    /// (error 208, "Invalid object name") is no checkpoint. Names and columns compare without
    /// case under SQL Server's default collations, so the Connector's `Checkpoints (ID,
    /// Position)` and Eventuous.SqlServer's `Checkpoints (Id, Position)` read alike.
    async fn eventuous_checkpoint(&self, checkpoint: &EventuousCheckpoint) -> Result<Option<Position>, SinkError> {
        /// SQL Server's "Invalid object name".
        const NO_SUCH_OBJECT: u32 = 208;
        let EventuousPlace::Table { schema, table, .. } = &checkpoint.place else {
            return Err(eventuous::not_here(checkpoint, self.name()));
        };
        let table = match schema {
            Some(schema) => format!("{}.{}", quote_ident(schema), quote_ident(table)),
            None => quote_ident(table),
        };
        let what = format!("cannot read the Eventuous checkpoint `{}` in the {}", checkpoint.id, checkpoint.place);
        let row = self
            .with_admin(SinkErrorKind::Checkpoints, &what, async |client| {
                let mut query = Query::new(format!("SELECT Position FROM {table} WHERE ID = @P1"));
                query.bind(checkpoint.id.as_str());
                let read = async { query.query(client).await?.into_row().await };
                match read.await {
                    Err(tiberius::error::Error::Server(e)) if e.code() == NO_SUCH_OBJECT => Ok(None),
                    other => other,
                }
            })
            .await?;
        let Some(row) = row else { return Ok(None) };
        let stored = match row.try_get::<i64, _>(0) {
            Ok(stored) => stored,
            Err(_) => match row.try_get::<i32, _>(0) {
                Ok(stored) => stored.map(i64::from),
                Err(e) => return Err(eventuous::unexpected(checkpoint, format!("a `Position` that is not a bigint ({e})"))),
            },
        };
        eventuous::position(stored, checkpoint)
    }

    fn writer_count(&self) -> usize {
        self.writers
    }

    async fn open_writer(&self) -> Result<MssqlWriter, SinkError> {
        MssqlWriter::open(self.endpoint.clone(), self.connector.clone(), self.sql.clone()).await
    }
}
