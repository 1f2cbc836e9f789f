//! The PostgreSQL target. Each writer owns a connection and applies a batch as one
//! transaction holding its operations, its parked events and the checkpoint rows of every
//! partition it touches, which makes the effect exactly once. Writers run in parallel
//! (`sink.postgres.writers`), each on the fixed set of partitions the pipeline gives it.
//!
//! - `schema.rs`: the gateway's tables and their preparation;
//! - `values.rs`: binding the sidecar's typed parameters to the server's parameter types;
//! - `apply.rs`: applying a batch, pipelined on the connection, with reconnection.

mod apply;
pub mod blue_green;
mod parked;
mod schema;
mod values;

use std::sync::Arc;

use prost_types::Any;
use tokio::sync::Mutex;
use tokio_postgres::Client;

use crate::{
    checkpoint::CheckpointRow,
    config::{EventuousCheckpoint, PostgresSinkConfig},
    event::Position,
    lease::Fence,
    postgres::{PgEndpoint, describe, is_transient},
    sinks::{DecodeError, Sink, SinkError, SinkErrorKind, eventuous, sql::{SqlOp, decode_sql_op}},
};

pub use apply::PostgresWriter;
pub use values::{BindError, Bound, bind, bind_all};

use schema::GatewaySql;

pub struct PostgresSink {
    endpoint: Arc<PgEndpoint>,
    connector: Arc<str>,
    sql: Arc<GatewaySql>,
    allow_raw_sql: bool,
    writers: usize,
    /// The lease or partition claims this gateway holds for the connector, when it runs under
    /// them: every batch transaction is fenced with them.
    fence: Option<Arc<Fence>>,
    /// For reading and deleting checkpoints; reopened if the server dropped it.
    admin: Mutex<Client>,
    /// The projection version the connector pinned (`Sink::pin_version`): every batch is
    /// fenced with it.
    version: Arc<std::sync::OnceLock<String>>,
}

impl PostgresSink {
    /// Connects to the target, creates the gateway's schema and tables where missing, and runs
    /// the configured init SQL. With a `fence`, every commit is fenced by that lease or those
    /// claims (their table exists: they were taken in it).
    pub async fn open(config: &PostgresSinkConfig, connector: &str, fence: Option<Fence>) -> Result<Self, SinkError> {
        let endpoint = PgEndpoint::parse(&config.url).map_err(|e| SinkError::config(format!("sink.postgres.url: {e}")))?;
        let client = connect(&endpoint).await?;
        let sql = GatewaySql::new(&config.schema, config.read_model_schema.as_deref());
        schema::prepare_target(&client, config, &sql, endpoint.display()).await?;
        Ok(Self {
            endpoint: Arc::new(endpoint),
            connector: connector.into(),
            sql: Arc::new(sql),
            allow_raw_sql: config.allow_raw_sql,
            writers: config.writers.max(1),
            fence: fence.map(Arc::new),
            admin: Mutex::new(client),
            version: Arc::default(),
        })
    }

    /// The admin connection, reconnected first if it was lost.
    async fn admin(&self) -> Result<tokio::sync::MutexGuard<'_, Client>, SinkError> {
        let mut client = self.admin.lock().await;
        if client.is_closed() {
            *client = connect(&self.endpoint).await?;
            if let Some(set) = &self.sql.set_search_path {
                client.batch_execute(set).await.map_err(|e| self.error(SinkErrorKind::Unreachable, set, &e))?;
            }
        }
        Ok(client)
    }

    /// `what` failed with `e`: a failure of `kind`, or an outage when `e` is transient.
    fn error(&self, kind: SinkErrorKind, what: &str, e: &tokio_postgres::Error) -> SinkError {
        SinkError::new(kind, format!("PostgreSQL target {}: {what}: {}", self.endpoint.display(), describe(e))).unreachable_if(is_transient(e))
    }
}

async fn connect(endpoint: &PgEndpoint) -> Result<Client, SinkError> {
    endpoint.connect().await.map_err(|e| cannot_connect(endpoint, &e))
}

/// A connection that could not be made: an outage, or refused (credentials, certificate, no
/// such database).
fn cannot_connect(endpoint: &PgEndpoint, e: &tokio_postgres::Error) -> SinkError {
    SinkError::refused(format!("cannot connect to the PostgreSQL target {}: {}", endpoint.display(), describe(e))).unreachable_if(is_transient(e))
}

impl super::OpenSink for PostgresSink {
    type Settings = crate::config::PostgresSinkConfig;

    async fn open(settings: &Self::Settings, connector: &crate::config::ConnectorConfig, context: &crate::run_context::RunContext) -> Result<Self, SinkError> {
        Self::open(settings, &connector.id, context.fence()).await
    }
}

impl Sink for PostgresSink {
    type Op = SqlOp;
    type Writer = PostgresWriter;

    fn name(&self) -> &'static str {
        "postgres"
    }

    fn decode(&self, operation: &Any) -> Result<Option<SqlOp>, DecodeError> {
        decode_sql_op(operation, self.allow_raw_sql, "postgres")
    }

    async fn load_checkpoints(&self) -> Result<Vec<CheckpointRow>, SinkError> {
        let client = self.admin().await?;
        schema::load_checkpoints(&client, &self.sql, &self.connector)
            .await
            .map_err(|e| self.error(SinkErrorKind::Checkpoints, "cannot read the checkpoints", &e))
    }

    async fn delete_checkpoints(&self, partition_count: u32) -> Result<(), SinkError> {
        let client = self.admin().await?;
        let count = partition_count as i32;
        client
            .execute(&self.sql.delete_checkpoints, &[&&*self.connector, &count])
            .await
            .map(|_| ())
            .map_err(|e| self.error(SinkErrorKind::Checkpoints, "cannot delete checkpoints", &e))
    }

    async fn parked_events(&self, query: &crate::sinks::parked::ParkedQuery) -> Result<Vec<crate::sinks::parked::ParkedEvent>, SinkError> {
        let client = self.admin().await?;
        parked::list(&client, &self.sql.parked_table, &self.connector, query)
            .await
            .map_err(|e| self.error(SinkErrorKind::Refused, "cannot read the parked events", &e))
    }

    async fn count_parked(&self) -> Result<Option<u64>, SinkError> {
        let client = self.admin().await?;
        parked::count(&client, &self.sql.parked_table, &self.connector)
            .await
            .map(Some)
            .map_err(|e| self.error(SinkErrorKind::Refused, "cannot count the parked events", &e))
    }

    async fn discard_parked(&self, ids: &[String]) -> Result<u64, SinkError> {
        let client = self.admin().await?;
        parked::discard(&client, &self.sql.parked_table, &self.connector, ids)
            .await
            .map_err(|e| self.error(SinkErrorKind::Refused, "cannot discard parked events", &e))
    }

    async fn projection_version(&self) -> Result<Option<String>, SinkError> {
        let client = self.admin().await?;
        client
            .query_opt(&self.sql.load_version, &[&&*self.connector])
            .await
            .and_then(|row| row.map(|r| r.try_get(0)).transpose())
            .map_err(|e| self.error(SinkErrorKind::Refused, "cannot read the projection version", &e))
    }

    async fn record_projection_version(
        &self,
        projection: &str,
        version: &str,
        reset: Option<Vec<SqlOp>>,
    ) -> Result<(), SinkError> {
        let mut client = self.admin().await?;
        // A failure of the rebuild is one of its reset; a failure of recording alone is refused.
        let kind = if reset.is_some() { SinkErrorKind::Reset } else { SinkErrorKind::Refused };
        let tx = client.transaction().await.map_err(|e| self.error(kind, "cannot begin", &e))?;
        if let Some(ops) = &reset {
            for (n, op) in ops.iter().enumerate() {
                let what = format!("reset operation {} of the sidecar's Describe ({op})", n + 1);
                match op {
                    SqlOp::Raw(sql) => tx.batch_execute(sql).await.map_err(|e| self.error(kind, &what, &e))?,
                    SqlOp::Statement { sql, params } => {
                        let statement = tx.prepare(sql).await.map_err(|e| self.error(kind, &what, &e))?;
                        let bound = bind_all(params, statement.params())
                            .map_err(|e| SinkError::reset(format!("PostgreSQL target {}: {what}: {e}", self.endpoint.display())))?;
                        let refs: Vec<&(dyn postgres_types::ToSql + Sync)> =
                            bound.iter().map(|b| b as &(dyn postgres_types::ToSql + Sync)).collect();
                        tx.execute(&statement, &refs).await.map_err(|e| self.error(kind, &what, &e))?;
                    }
                }
            }
            tx.execute(&self.sql.delete_all_checkpoints, &[&&*self.connector])
                .await
                .map_err(|e| self.error(kind, "cannot delete the checkpoints", &e))?;
        }
        tx.execute(&self.sql.upsert_version, &[&&*self.connector, &projection, &version])
            .await
            .map_err(|e| self.error(kind, "cannot record the projection version", &e))?;
        tx.commit().await.map_err(|e| self.error(kind, "cannot commit", &e))
    }

    /// `SELECT position FROM <schema>.<table> WHERE id = $1`; a missing table or schema is no
    /// checkpoint. The names are plain identifiers (the validator's rule) and left unquoted, so
    /// they fold to lowercase as Eventuous's own unquoted `CREATE TABLE` did.
    async fn eventuous_checkpoint(&self, checkpoint: &EventuousCheckpoint) -> Result<Option<Position>, SinkError> {
        let Some(table) = checkpoint.place.qualified_table() else {
            return Err(eventuous::not_here(checkpoint, self.name()));
        };
        let client = self.admin().await?;
        let unreadable = |e: &tokio_postgres::Error| {
            eventuous::unreadable(checkpoint, format!("PostgreSQL target {}: {}", self.endpoint.display(), describe(e)), is_transient(e))
        };
        let sql = format!("SELECT position FROM {table} WHERE id = $1");
        let row = match client.query_opt(&sql, &[&checkpoint.id]).await {
            Ok(row) => row,
            Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::UNDEFINED_TABLE) => return Ok(None),
            Err(e) => return Err(unreadable(&e)),
        };
        match row.map(|r| r.try_get::<_, Option<i64>>(0)) {
            None => Ok(None),
            Some(Ok(stored)) => eventuous::position(stored, checkpoint),
            Some(Err(e)) => Err(eventuous::unexpected(checkpoint, format!("a `position` that is not a bigint ({e})"))),
        }
    }

    fn writer_count(&self) -> usize {
        self.writers
    }

    async fn open_writer(&self) -> Result<PostgresWriter, SinkError> {
        PostgresWriter::open(self.endpoint.clone(), self.connector.clone(), self.sql.clone(), self.fence.clone(), self.version.clone()).await
    }

    fn pin_version(&self, version: &str) {
        let _ = self.version.set(version.to_string());
    }

    /// The recorded version is no longer the pinned one: a swap happened in the target.
    async fn swapped(&self) -> Result<bool, SinkError> {
        let Some(pinned) = self.version.get() else { return Ok(false) };
        Ok(self.projection_version().await?.is_some_and(|recorded| &recorded != pinned))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_server_that_is_not_there_is_an_outage_said_as_before() {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let endpoint = PgEndpoint::parse(&format!("postgres://gw@127.0.0.1:{port}/app")).unwrap();
        let Err(e) = connect(&endpoint).await else { panic!("nothing listens on port {port}") };
        assert_eq!(e.kind(), SinkErrorKind::Unreachable, "{e}");
        assert!(e.to_string().starts_with(&format!("cannot connect to the PostgreSQL target postgres://gw@127.0.0.1:{port}/app: ")), "{e}");
    }
}
