//! The definition log in PostgreSQL (`run --state postgres://...`): one table,
//! `<schema>.connector_definition_events`, shared by every replica of a scaled-out gateway, so
//! an operator can talk to any of them and all of them run the same connectors.
//!
//! Appends are serialised: each is one read-committed transaction that first takes the table
//! in `SHARE ROW EXCLUSIVE` mode (which only appends conflict with: readers and followers go
//! on), then checks the log's last sequence number against the last event the appending
//! gateway applied, and only then inserts. Two replicas creating the same connector at once
//! therefore append one after the other, and the second finds the first's event and is refused
//! ([`StoreError::Behind`]); and because a sequence number is taken under that lock and the
//! lock is held until the commit is visible, sequence numbers become visible in order: a
//! follower that read up to `n` never misses an event below `n` committed later. (Something
//! that inserts into the table without taking the lock breaks that; only gateways should
//! write it.)
//!
//! Each event names the gateway instance that wrote it (`instance`, `--instance-id`). The
//! definitions are stored as sent (`${VAR}`s unexpanded), as in the SQLite file: keep the table
//! readable by the gateways' role only; the history the API shows has every secret redacted.
//! One connection, opened again when lost; a failed statement is the caller's error (the API
//! answers 500, the follower tries again at its next poll).

use tokio::sync::{Mutex, MutexGuard};
use tokio_postgres::{Client, IsolationLevel};
use serde_json::Value;

use super::{DefinitionEvent, Logged, Replayed, StoreError, history_item};
use crate::{
    management::definition::CHANGED_BY,
    postgres::{PgEndpoint, describe, quote_ident},
};

/// How long an append waits for another's lock before it fails (a stuck session holding the
/// table must not hang the API).
const LOCK_TIMEOUT: &str = "10s";

/// The append-only log, in a PostgreSQL table.
pub struct PgLog {
    endpoint: PgEndpoint,
    /// The server (no password) and the table, as messages name them.
    name: String,
    /// `"schema".connector_definition_events`.
    table: String,
    schema: String,
    instance: String,
    client: Mutex<Option<Client>>,
}

impl PgLog {
    /// Connects and creates the schema and table where missing. `instance` is recorded with
    /// every event this gateway appends.
    pub async fn open(url: &str, schema: &str, instance: &str) -> Result<Self, StoreError> {
        // The URL parser names options and positions, never values (no password).
        let endpoint = PgEndpoint::parse(url).map_err(|e| StoreError::BadUrl(e.to_string()))?;
        let table = format!("{}.connector_definition_events", quote_ident(schema));
        let log = Self {
            name: format!("{} (table {table})", endpoint.display()),
            endpoint,
            table,
            schema: schema.to_owned(),
            instance: instance.to_owned(),
            client: Mutex::new(None),
        };
        drop(log.client().await?);
        Ok(log)
    }

    /// The server and table, as messages name them.
    pub fn name(&self) -> &str {
        &self.name
    }

    fn failed(&self, action: &str, e: &tokio_postgres::Error) -> StoreError {
        StoreError::Failed { log: self.name.clone(), message: format!("{action}: {}", describe(e)) }
    }

    /// The connection, opened again (and the table checked) when it was lost.
    async fn client(&self) -> Result<MutexGuard<'_, Option<Client>>, StoreError> {
        let mut client = self.client.lock().await;
        if client.as_ref().is_none_or(Client::is_closed) {
            let mut opened = self.endpoint.connect().await.map_err(|e| self.failed("cannot connect", &e))?;
            self.create(&mut opened).await.map_err(|e| self.failed("cannot create the table", &e))?;
            *client = Some(opened);
        }
        Ok(client)
    }

    /// Creates the schema and table where missing, under an advisory lock so replicas starting
    /// together do not race on the catalog; a table already there needs no `CREATE` privilege.
    async fn create(&self, client: &mut Client) -> Result<(), tokio_postgres::Error> {
        let exists = client.query_one("SELECT to_regclass($1) IS NOT NULL", &[&self.table]).await?.get::<_, bool>(0);
        if exists {
            return Ok(());
        }
        let transaction = client.transaction().await?;
        // Another replica may have created them meanwhile: no NOTICE that they exist.
        transaction.batch_execute("SET LOCAL client_min_messages = warning").await?;
        transaction.execute("SELECT pg_advisory_xact_lock(hashtext($1))", &[&format!("projector-gateway definition log {}", self.table)]).await?;
        transaction
            .batch_execute(&format!(
                "CREATE SCHEMA IF NOT EXISTS {schema};
                 CREATE TABLE IF NOT EXISTS {table} (
                     seq         bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                     connector   text        NOT NULL,
                     kind        text        NOT NULL CHECK (kind IN ('created', 'updated', 'deleted', 'enabled', 'disabled', 'reset')),
                     body        text,
                     recorded_at timestamptz NOT NULL DEFAULT now(),
                     changed_by  text,
                     instance    text        NOT NULL
                 );
                 CREATE INDEX IF NOT EXISTS connector_definition_events_connector ON {table} (connector, seq);",
                schema = quote_ident(&self.schema),
                table = self.table,
            ))
            .await?;
        transaction.commit().await
    }

    /// See [`super::DefinitionLog::append`]: one transaction, serialised with every other
    /// append by the table lock, the log's last event checked under it.
    pub async fn append(&self, connector: &str, event: &DefinitionEvent, after: Option<i64>) -> Result<i64, StoreError> {
        let by = CHANGED_BY.try_with(String::clone).ok();
        let mut client = self.client().await?;
        let client = client.as_mut().expect("connected");
        let transaction = client
            .build_transaction()
            .isolation_level(IsolationLevel::ReadCommitted)
            .start()
            .await
            .map_err(|e| self.failed("cannot begin an append", &e))?;
        transaction
            .batch_execute(&format!("SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'; LOCK TABLE {} IN SHARE ROW EXCLUSIVE MODE", self.table))
            .await
            .map_err(|e| self.failed("cannot lock the table for an append", &e))?;
        let head: i64 = transaction
            .query_one(&format!("SELECT coalesce(max(seq), 0) FROM {}", self.table), &[])
            .await
            .map_err(|e| self.failed("cannot read the last event", &e))?
            .get(0);
        if let Some(after) = after
            && head > after
        {
            // Dropping the transaction rolls it back (and releases the lock).
            return Err(StoreError::Behind { log: self.name.clone(), after, head });
        }
        let sql = format!("INSERT INTO {} (connector, kind, body, changed_by, instance) VALUES ($1, $2, $3, $4, $5) RETURNING seq", self.table);
        let seq: i64 = transaction
            .query_one(&sql, &[&connector, &event.kind(), &event.body(), &by, &self.instance])
            .await
            .map_err(|e| self.failed("cannot append", &e))?
            .get(0);
        transaction.commit().await.map_err(|e| self.failed("cannot commit an append", &e))?;
        Ok(seq)
    }

    /// Replays the whole log.
    pub async fn replay(&self) -> Result<Replayed, StoreError> {
        let events = self.since(0).await?;
        Ok(Replayed::fold(events.into_iter().map(|e| (e.seq, e.connector, e.event))))
    }

    /// The events after `after`, oldest first, with the instance that wrote each.
    pub async fn since(&self, after: i64) -> Result<Vec<Logged>, StoreError> {
        let sql = format!("SELECT seq, connector, kind, body, instance, changed_by FROM {} WHERE seq > $1 ORDER BY seq", self.table);
        let client = self.client().await?;
        let rows = client.as_ref().expect("connected").query(&sql, &[&after]).await.map_err(|e| self.failed("cannot read", &e))?;
        Ok(rows
            .into_iter()
            .filter_map(|row| {
                let event = DefinitionEvent::from_stored(row.get(2), row.get(3))?;
                Some(Logged { seq: row.get(0), connector: row.get(1), event, instance: Some(row.get(4)), by: row.get(5) })
            })
            .collect())
    }

    /// Every change to `connector`, oldest first, as the API shows it (times in UTC, as the
    /// SQLite log writes them).
    pub async fn history(&self, connector: &str) -> Result<Vec<Value>, StoreError> {
        let sql = format!(
            "SELECT seq, kind, body, to_char(recorded_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'), changed_by, instance
             FROM {} WHERE connector = $1 ORDER BY seq",
            self.table
        );
        let client = self.client().await?;
        let rows = client.as_ref().expect("connected").query(&sql, &[&connector]).await.map_err(|e| self.failed("cannot read the history", &e))?;
        Ok(rows
            .into_iter()
            .map(|row| history_item(row.get(0), row.get(1), row.get(2), row.get(3), row.get(4), row.get(5)))
            .collect())
    }
}
