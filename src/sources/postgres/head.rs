//! The PostgreSQL log's head (see `sources/head.rs`), on a connection of its own, reopened
//! by the next probe after it was lost.

use chrono::NaiveDateTime;
use futures::{FutureExt, future::BoxFuture};
use tokio_postgres::Client;

use crate::{
    config::PostgresSourceConfig,
    event::Position,
    postgres::{PgEndpoint, describe, quote_ident},
    sources::{
        SourceError,
        head::{Head, HeadProbe},
    },
};

pub struct PostgresHead {
    endpoint: PgEndpoint,
    client: Option<Client>,
    head_sql: String,
    oldest_sql: String,
}

impl PostgresHead {
    pub async fn open(config: &PostgresSourceConfig) -> Result<Self, SourceError> {
        let endpoint = PgEndpoint::parse(&config.url)
            .map_err(|e| SourceError::Open { location: "source.postgres.url".into(), reason: e.to_string() })?;
        let messages = format!("{}.messages", quote_ident(&config.schema));
        Ok(Self {
            endpoint,
            client: None,
            head_sql: format!("SELECT coalesce(max(global_position), 0) FROM {messages}"),
            oldest_sql: format!("SELECT created FROM {messages} WHERE global_position > $1 ORDER BY global_position LIMIT 1"),
        })
    }

    async fn read(&mut self, after: Position) -> Result<Head, tokio_postgres::Error> {
        if self.client.is_none() {
            self.client = Some(self.endpoint.connect().await?);
        }
        let client = self.client.as_ref().expect("connected above");
        let position: i64 = client.query_one(&self.head_sql, &[]).await?.try_get(0)?;
        let oldest = client.query_opt(&self.oldest_sql, &[&(after as i64)]).await?;
        Ok(Head {
            position: position.max(0) as Position,
            // Eventuous stores `created` as a UTC `timestamp` without time zone.
            oldest_pending: oldest.map(|row| row.try_get::<_, NaiveDateTime>(0)).transpose()?.map(|t| t.and_utc()),
        })
    }
}

impl HeadProbe for PostgresHead {
    fn head(&mut self, after: Position) -> BoxFuture<'_, Result<Head, SourceError>> {
        async move {
            self.read(after).await.map_err(|e| {
                self.client = None;
                SourceError::Read { location: self.endpoint.display().to_string(), reason: describe(&e) }
            })
        }
        .boxed()
    }
}
