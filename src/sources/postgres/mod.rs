//! Reads an event log kept in PostgreSQL in Eventuous's schema (`<schema>.messages` joined
//! with `<schema>.streams`, ordered by `global_position`): catch-up in batches, then live by
//! polling every `poll_interval_ms` (at once again while a read comes back full).
//!
//! Every read runs in a read-only repeatable-read transaction together with
//! `pg_current_snapshot()`, which lets `gaps.rs` tell a position that is missing because its
//! transaction has not committed yet from one that will never appear; the reader never moves
//! past the former. A lost connection is reopened by the next read; the pipeline retries
//! failed reads with backoff.

mod gaps;
mod head;

use std::time::Duration;

use bytes::Bytes;
use chrono::NaiveDateTime;
use futures::{FutureExt, future::BoxFuture};
use tokio_postgres::{Client, IsolationLevel, Row};
use tracing::{info, warn};

pub use self::head::PostgresHead;
use self::gaps::{GapTracker, Snapshot};
use crate::{
    config::PostgresSourceConfig,
    event::{Event, Position},
    postgres::{PgEndpoint, describe, quote_ident},
    sources::{EventSource, SourceBatch, SourceError},
};

/// A live reader of an Eventuous PostgreSQL event log.
pub struct PostgresSource {
    endpoint: PgEndpoint,
    /// `None` after the connection was lost; reopened by the next read.
    client: Option<Client>,
    read_sql: String,
    after: Position,
    batch_size: i64,
    poll: Duration,
    gap_timeout: Duration,
    gaps: GapTracker,
}

impl crate::sources::OpenSource for PostgresSource {
    type Settings = crate::config::PostgresSourceConfig;

    async fn open(settings: &Self::Settings, _filter: &crate::config::FilterConfig, after: Position) -> Result<Self, SourceError> {
        Self::open(settings, after).await
    }

    async fn head(settings: &Self::Settings) -> Result<Option<Box<dyn crate::sources::head::HeadProbe>>, SourceError> {
        Ok(Some(Box::new(PostgresHead::open(settings).await?)))
    }
}

impl PostgresSource {
    /// Connects and checks that the schema holds Eventuous's tables.
    pub async fn open(config: &PostgresSourceConfig, after: Position) -> Result<Self, SourceError> {
        let endpoint = PgEndpoint::parse(&config.url)
            .map_err(|e| SourceError::Open { location: "source.postgres.url".into(), reason: e.to_string() })?;
        let open_error = |reason: String| SourceError::Open { location: endpoint.display().to_string(), reason };
        let client = endpoint.connect().await.map_err(|e| open_error(format!("cannot connect: {}", describe(&e))))?;
        for table in ["messages", "streams"] {
            let name = format!("{}.{table}", quote_ident(&config.schema));
            let exists: bool = client
                .query_one("SELECT to_regclass($1) IS NOT NULL", &[&name])
                .await
                .and_then(|row| row.try_get(0))
                .map_err(|e| open_error(format!("cannot look up {name}: {}", describe(&e))))?;
            if !exists {
                return Err(open_error(format!(
                    "no table {name}: is this an Eventuous event store? Check `source.postgres.schema` (now `{}`)",
                    config.schema
                )));
            }
        }
        let schema = quote_ident(&config.schema);
        Ok(Self {
            read_sql: format!(
                "SELECT m.global_position, coalesce(m.message_id::text, m.global_position::text), s.stream_name,
                        m.stream_position, m.message_type, m.json_data::text, m.json_metadata::text, m.created
                 FROM {schema}.messages m JOIN {schema}.streams s ON s.stream_id = m.stream_id
                 WHERE m.global_position > $1 ORDER BY m.global_position LIMIT $2"
            ),
            endpoint,
            client: Some(client),
            after,
            batch_size: config.batch_size.max(1) as i64,
            poll: Duration::from_millis(config.poll_interval_ms.max(1)),
            gap_timeout: Duration::from_millis(config.gap_timeout_ms),
            gaps: GapTracker::default(),
        })
    }

    fn read_error(&self, what: &str, e: &tokio_postgres::Error) -> SourceError {
        SourceError::Read { location: self.endpoint.display().to_string(), reason: format!("{what}: {}", describe(e)) }
    }

    async fn client(&mut self) -> Result<&mut Client, SourceError> {
        if self.client.as_ref().is_none_or(Client::is_closed) {
            self.client = None;
            let client = self.endpoint.connect().await.map_err(|e| self.read_error("cannot reconnect", &e))?;
            info!("reconnected to the PostgreSQL event log {}", self.endpoint.display());
            self.client = Some(client);
        }
        Ok(self.client.as_mut().expect("connected above"))
    }

    /// The next rows after `after`, with the snapshot they were read in.
    async fn read(&mut self) -> Result<(Vec<Row>, Snapshot), SourceError> {
        let (after, limit) = (self.after as i64, self.batch_size);
        let sql = self.read_sql.clone();
        let client = self.client().await?;
        let result = async {
            let tx = client
                .build_transaction()
                .isolation_level(IsolationLevel::RepeatableRead)
                .read_only(true)
                .start()
                .await?;
            let params: [&(dyn tokio_postgres::types::ToSql + Sync); 2] = [&after, &limit];
            let (snapshot, rows) =
                futures::try_join!(tx.query_one("SELECT pg_current_snapshot()::text", &[]), tx.query(&sql, &params))?;
            tx.commit().await?;
            Ok::<_, tokio_postgres::Error>((snapshot.try_get::<_, String>(0)?, rows))
        }
        .await;
        let (snapshot, rows) = result.map_err(|e| self.read_error("reading events failed", &e))?;
        let snapshot = Snapshot::parse(&snapshot)
            .map_err(|reason| SourceError::Read { location: self.endpoint.display().to_string(), reason })?;
        Ok((rows, snapshot))
    }

    /// True while any of these transactions is still running.
    async fn any_in_flight(&mut self, transactions: &[i64]) -> Result<bool, SourceError> {
        let transactions = transactions.to_vec();
        let client = self.client().await?;
        let result = client
            .query_one(
                "SELECT count(*) FROM unnest($1::bigint[]) AS t(x) WHERE pg_xact_status(x::text::xid8) = 'in progress'",
                &[&transactions],
            )
            .await
            .and_then(|row| row.try_get::<_, i64>(0));
        result.map(|n| n > 0).map_err(|e| self.read_error("checking transactions in flight failed", &e))
    }

    /// Settles the pending gap, if its transactions have ended or it waited too long.
    async fn settle_gap(&mut self) -> Result<(), SourceError> {
        let Some(pending) = self.gaps.pending().cloned() else {
            return Ok(());
        };
        if pending.timed_out(self.gap_timeout) {
            warn!(
                "PostgreSQL event log {}: position {} has been missing for {:?} while a later event is visible; \
                 treating it as a rolled-back hole (source.postgres.gap_timeout_ms). If a transaction appends it \
                 later, this connector will not see it.",
                self.endpoint.display(),
                pending.at,
                self.gap_timeout
            );
            self.gaps.settle_pending();
        } else if !self.any_in_flight(&pending.in_flight).await? {
            self.gaps.settle_pending();
        }
        Ok(())
    }

    async fn next(&mut self) -> Result<SourceBatch, SourceError> {
        loop {
            self.settle_gap().await?;
            let (rows, snapshot) = self.read().await?;
            let full = rows.len() as i64 == self.batch_size;
            let positions = rows
                .iter()
                .map(|row| row.try_get::<_, i64>(0).map(|p| p as Position))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| self.read_error("unexpected row", &e))?;
            let deliverable = self.gaps.deliverable(self.after, &positions, &snapshot).rows;
            if deliverable > 0 {
                let events = rows[..deliverable]
                    .iter()
                    .map(to_event)
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| self.read_error("unexpected row", &e))?;
                self.after = positions[deliverable - 1];
                return Ok(SourceBatch { end: self.after, events });
            }
            if !full || self.gaps.pending().is_some() {
                tokio::time::sleep(self.poll).await;
            }
        }
    }
}

impl EventSource for PostgresSource {
    fn next_batch(&mut self) -> BoxFuture<'_, Result<SourceBatch, SourceError>> {
        self.next().boxed()
    }
}

fn to_event(row: &Row) -> Result<Event, tokio_postgres::Error> {
    Ok(Event {
        position: row.try_get::<_, i64>(0)? as Position,
        event_id: row.try_get(1)?,
        stream: row.try_get(2)?,
        revision: row.try_get::<_, i32>(3)?.max(0) as u64,
        event_type: row.try_get(4)?,
        data: Bytes::from(row.try_get::<_, String>(5)?),
        metadata: row.try_get::<_, Option<String>>(6)?.map(Bytes::from),
        // Eventuous stores `created` as a UTC `timestamp` without time zone.
        created: row.try_get::<_, NaiveDateTime>(7)?.and_utc(),
        content_type: crate::event::ContentType::Json,
    })
}
