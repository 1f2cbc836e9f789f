//! Leases in a PostgreSQL target: the `<schema>.gateway_leases` table (one row per leased
//! connector: holder, epoch, expiry), kept with the database's clock so the gateways' clocks
//! never matter, and the fence statement the sink runs first in every batch transaction.

use tokio_postgres::Client;

use super::{Holder, LeaseError, Tenure};
use crate::postgres::{PgEndpoint, describe, quote_ident};

/// The fence: `$1` connector, `$2` holder, `$3` epoch. It share-locks the lease row, so a
/// takeover waits for the batch to commit (and then finds its checkpoints), and fails with
/// `division_by_zero` when the lease has another holder or epoch, which aborts the batch.
pub fn fence_sql(schema: &str) -> String {
    format!(
        "SELECT 1 / (SELECT count(*)::int FROM (SELECT 1 FROM {}.gateway_leases WHERE connector = $1 AND holder = $2 AND epoch = $3 FOR SHARE) AS held)",
        quote_ident(schema)
    )
}

/// The SQLSTATE of the fence refusing a commit.
pub const FENCED: &tokio_postgres::error::SqlState = &tokio_postgres::error::SqlState::DIVISION_BY_ZERO;

/// The leases of one target, on a connection of their own.
pub struct PgLeases {
    endpoint: PgEndpoint,
    client: Option<Client>,
    create: String,
    acquire: String,
    renew: String,
    release: String,
    holder: String,
}

impl PgLeases {
    /// Connects and creates the lease table where missing.
    pub async fn open(url: &str, schema: &str) -> Result<Self, LeaseError> {
        let endpoint = PgEndpoint::parse(url).map_err(|e| LeaseError::Url(e.to_string()))?;
        let t = format!("{}.gateway_leases", quote_ident(schema));
        let mut leases = Self {
            create: format!(
                "CREATE SCHEMA IF NOT EXISTS {schema};
                 CREATE TABLE IF NOT EXISTS {t} (
                    connector   text        PRIMARY KEY,
                    holder      text        NOT NULL,
                    epoch       bigint      NOT NULL,
                    expires_at  timestamptz NOT NULL,
                    acquired_at timestamptz NOT NULL)",
                schema = quote_ident(schema)
            ),
            // Taken when nobody has it, it expired, or this instance had it (a restart): each
            // time with a new epoch, so whatever ran under the old one is fenced off.
            acquire: format!(
                "INSERT INTO {t} AS l (connector, holder, epoch, expires_at, acquired_at)
                 VALUES ($1, $2, 1, now() + $3::bigint * interval '1 millisecond', now())
                 ON CONFLICT (connector) DO UPDATE
                 SET holder = excluded.holder, epoch = l.epoch + 1, expires_at = excluded.expires_at, acquired_at = now()
                 WHERE l.holder = excluded.holder OR l.expires_at < now()
                 RETURNING epoch"
            ),
            // Renewed while the epoch is still ours, even if it expired meanwhile: nobody took
            // it (that would have changed the epoch), and the fence keeps commits safe.
            renew: format!(
                "UPDATE {t} SET expires_at = now() + $4::bigint * interval '1 millisecond'
                 WHERE connector = $1 AND holder = $2 AND epoch = $3"
            ),
            release: format!("UPDATE {t} SET expires_at = now() WHERE connector = $1 AND holder = $2 AND epoch = $3"),
            holder: format!(
                "SELECT holder, epoch, (extract(epoch FROM expires_at - now()) * 1000)::bigint FROM {t} WHERE connector = $1"
            ),
            endpoint,
            client: None,
        };
        leases.client().await?;
        Ok(leases)
    }

    /// The connection, reopened (and the table created) if it was lost.
    async fn client(&mut self) -> Result<&Client, LeaseError> {
        if self.client.as_ref().is_none_or(Client::is_closed) {
            let client = self.endpoint.connect().await.map_err(|e| self.error("cannot connect", &e))?;
            client.batch_execute(&self.create).await.map_err(|e| self.error("cannot create the lease table", &e))?;
            self.client = Some(client);
        }
        Ok(self.client.as_ref().expect("just connected"))
    }

    fn error(&self, action: &'static str, e: &tokio_postgres::Error) -> LeaseError {
        LeaseError::Store { database: "PostgreSQL", endpoint: self.endpoint.display().to_string(), action, cause: describe(e) }
    }

    /// Takes the lease of `connector` for `holder` if it is free, expired or already theirs.
    pub async fn try_acquire(&mut self, connector: &str, holder: &str, ttl_ms: u64) -> Result<Option<Tenure>, LeaseError> {
        let sql = self.acquire.clone();
        let ttl = ttl_ms as i64;
        let row = self.client().await?.query_opt(&sql, &[&connector, &holder, &ttl]).await;
        let row = row.map_err(|e| self.error("cannot take the lease", &e))?;
        Ok(row.map(|r| Tenure { holder: holder.to_owned(), epoch: r.get(0) }))
    }

    /// Extends the lease; `false` when it is no longer `tenure`'s (another gateway took it).
    pub async fn renew(&mut self, connector: &str, tenure: &Tenure, ttl_ms: u64) -> Result<bool, LeaseError> {
        let sql = self.renew.clone();
        let ttl = ttl_ms as i64;
        let updated = self.client().await?.execute(&sql, &[&connector, &tenure.holder, &tenure.epoch, &ttl]).await;
        Ok(updated.map_err(|e| self.error("cannot renew the lease", &e))? == 1)
    }

    /// Lets the lease expire now, so a standby gateway takes over at once.
    pub async fn release(&mut self, connector: &str, tenure: &Tenure) -> Result<(), LeaseError> {
        let sql = self.release.clone();
        let released = self.client().await?.execute(&sql, &[&connector, &tenure.holder, &tenure.epoch]).await;
        released.map(drop).map_err(|e| self.error("cannot release the lease", &e))
    }

    /// Who holds the lease now, if anyone ever took it.
    pub async fn holder(&mut self, connector: &str) -> Result<Option<Holder>, LeaseError> {
        let sql = self.holder.clone();
        let row = self.client().await?.query_opt(&sql, &[&connector]).await;
        let row = row.map_err(|e| self.error("cannot read the lease", &e))?;
        Ok(row.map(|r| Holder { holder: r.get(0), epoch: r.get(1), expires_in_ms: r.get(2) }))
    }
}
