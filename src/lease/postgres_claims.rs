//! Partition claims in a PostgreSQL target: `<schema>.gateway_members` (one row per gateway
//! running a connector: its heartbeat) and `<schema>.gateway_claims` (one row per partition:
//! holder, epoch, expiry), both kept with the database's clock, and the fence statement the
//! sink runs first in every batch transaction.
//!
//! Every statement is one round trip and touches only the connector's rows. A member's tick is
//! four statements (heartbeat, renewal of all its claims in one `UPDATE`, the live members,
//! the claims), whatever the number of partitions; taking and handing back partitions are one
//! statement each. `ARCHITECTURE.md` ("Scale-out") works out what that costs at scale.

use std::collections::BTreeMap;

use tokio_postgres::{Client, types::ToSql};

use super::{
    Claims, LeaseError,
    partitions::{ClaimStore, Taken},
    share::{ClaimRow, View},
};
use crate::postgres::{PgEndpoint, describe, quote_ident};

/// The fence: `$1` connector, `$2` holder, `$3` partitions, `$4` their epochs. It share-locks
/// the claim rows, so a partition taken over waits for the batch to commit (and then finds its
/// checkpoint), and fails with `division_by_zero` unless every partition is still held under
/// its epoch, which aborts the batch.
pub fn fence_sql(schema: &str) -> String {
    format!(
        "SELECT 1 / (SELECT (count(*) = cardinality($3::int[]))::int FROM (SELECT 1 FROM {}.gateway_claims
            WHERE connector = $1 AND holder = $2 AND (partition, epoch) IN (SELECT * FROM unnest($3::int[], $4::bigint[]))
            FOR SHARE) AS held)",
        quote_ident(schema)
    )
}

/// The claims and members of one target, on a connection of their own.
pub struct PgClaims {
    endpoint: PgEndpoint,
    client: Option<Client>,
    sql: Statements,
    /// Statements sent (for the coordination cost the benchmark prints).
    statements: u64,
}

struct Statements {
    create: String,
    heartbeat: String,
    leave: String,
    renew: String,
    members: String,
    claims: String,
    take: String,
    release: String,
}

impl Statements {
    fn new(schema: &str) -> Self {
        let s = quote_ident(schema);
        let members = format!("{s}.gateway_members");
        let claims = format!("{s}.gateway_claims");
        let ttl = "$3::bigint * interval '1 millisecond'";
        Self {
            create: format!(
                "CREATE SCHEMA IF NOT EXISTS {s};
                 CREATE TABLE IF NOT EXISTS {members} (
                    connector  text        NOT NULL,
                    member     text        NOT NULL,
                    expires_at timestamptz NOT NULL,
                    joined_at  timestamptz NOT NULL,
                    PRIMARY KEY (connector, member));
                 CREATE TABLE IF NOT EXISTS {claims} (
                    connector   text        NOT NULL,
                    partition   int         NOT NULL,
                    holder      text        NOT NULL,
                    epoch       bigint      NOT NULL,
                    expires_at  timestamptz NOT NULL,
                    renewed_at  timestamptz NOT NULL,
                    released    boolean     NOT NULL DEFAULT false,
                    PRIMARY KEY (connector, partition))"
            ),
            heartbeat: format!(
                "INSERT INTO {members} AS m (connector, member, expires_at, joined_at) VALUES ($1, $2, now() + {ttl}, now())
                 ON CONFLICT (connector, member) DO UPDATE SET expires_at = excluded.expires_at,
                    joined_at = CASE WHEN m.expires_at < now() THEN now() ELSE m.joined_at END"
            ),
            leave: format!("UPDATE {members} SET expires_at = now() WHERE connector = $1 AND member = $2"),
            // Renewed while the epoch is still ours, even if it expired meanwhile: nobody took
            // it (that would have changed the epoch), and the fence keeps commits safe.
            renew: format!(
                "UPDATE {claims} AS c SET expires_at = now() + {ttl}, renewed_at = now()
                 FROM unnest($4::int[], $5::bigint[]) AS h(partition, epoch)
                 WHERE c.connector = $1 AND c.holder = $2 AND c.partition = h.partition AND c.epoch = h.epoch AND NOT c.released
                 RETURNING c.partition"
            ),
            members: format!("SELECT member FROM {members} WHERE connector = $1 AND expires_at > now() ORDER BY member"),
            claims: format!(
                "SELECT partition, holder, epoch, expires_at > now() AND NOT released FROM {claims} WHERE connector = $1 ORDER BY partition"
            ),
            // Taken when nobody has it, it expired or was handed back, or this instance had it
            // (a restart): each time with a new epoch, so whatever ran under the old one is
            // fenced off. The old row is read in the same statement's snapshot.
            take: format!(
                "WITH wanted AS (SELECT unnest($4::int[]) AS partition),
                      before AS (SELECT c.partition, c.holder, c.released, (extract(epoch FROM now() - c.renewed_at) * 1000)::bigint AS idle_ms
                                 FROM {claims} c JOIN wanted USING (partition) WHERE c.connector = $1)
                 INSERT INTO {claims} AS c (connector, partition, holder, epoch, expires_at, renewed_at)
                 SELECT $1, partition, $2, 1, now() + {ttl}, now() FROM wanted
                 ON CONFLICT (connector, partition) DO UPDATE
                 SET holder = excluded.holder, epoch = c.epoch + 1, expires_at = excluded.expires_at, renewed_at = now(), released = false
                 WHERE c.holder = excluded.holder OR c.expires_at < now() OR c.released
                 RETURNING c.partition, c.epoch,
                    (SELECT b.idle_ms FROM before b WHERE b.partition = c.partition AND b.holder <> $2),
                    coalesce((SELECT b.released FROM before b WHERE b.partition = c.partition AND b.holder <> $2), false)"
            ),
            release: format!(
                // `renewed_at` becomes the moment of the handover, which the taker measures from.
                "UPDATE {claims} AS c SET expires_at = now(), renewed_at = now(), released = true
                 FROM unnest($3::int[], $4::bigint[]) AS h(partition, epoch)
                 WHERE c.connector = $1 AND c.holder = $2 AND c.partition = h.partition AND c.epoch = h.epoch"
            ),
        }
    }
}

impl PgClaims {
    /// Connects and creates the tables where missing.
    pub async fn open(url: &str, schema: &str) -> Result<Self, LeaseError> {
        let endpoint = PgEndpoint::parse(url).map_err(|e| LeaseError::Url(e.to_string()))?;
        let mut claims = Self { endpoint, client: None, sql: Statements::new(schema), statements: 0 };
        claims.client().await?;
        Ok(claims)
    }

    /// The connection, reopened (and the tables created) if it was lost.
    async fn client(&mut self) -> Result<&Client, LeaseError> {
        if self.client.as_ref().is_none_or(Client::is_closed) {
            let client = self.endpoint.connect().await.map_err(|e| self.error("cannot connect", &e))?;
            // Gateways starting together race to create the tables; one at a time.
            let created = client
                .batch_execute(&format!(
                    "BEGIN; SELECT pg_advisory_xact_lock(hashtext('projector_gateway.claims')); {}; COMMIT",
                    self.sql.create
                ))
                .await;
            created.map_err(|e| self.error("cannot create the claims tables", &e))?;
            self.client = Some(client);
        }
        Ok(self.client.as_ref().expect("just connected"))
    }

    fn error(&self, action: &'static str, e: &tokio_postgres::Error) -> LeaseError {
        LeaseError::Store { database: "PostgreSQL", endpoint: self.endpoint.display().to_string(), action, cause: describe(e) }
    }

    /// [`PgClaims::open`] for a store that outlives its arguments.
    pub async fn open_owned(url: String, schema: String) -> Result<Self, LeaseError> {
        Self::open(&url, &schema).await
    }
}

impl ClaimStore for PgClaims {
    fn statements(&self) -> u64 {
        self.statements
    }

    /// Four statements, sent together on the connection's pipeline.
    async fn tick(&mut self, connector: &str, held: &Claims, ttl_ms: u64) -> Result<(Vec<u32>, View), LeaseError> {
        let ttl = ttl_ms as i64;
        let (partitions, epochs) = arrays(&held.epochs);
        let me = held.holder.as_str();
        self.statements += 4;
        let sql = &self.sql;
        let (heartbeat, renew, members, claims) = (sql.heartbeat.clone(), sql.renew.clone(), sql.members.clone(), sql.claims.clone());
        let client = self.client().await?;
        // Sent together: one round trip on the connection's pipeline.
        let beat_params: [&(dyn ToSql + Sync); 3] = [&connector, &me, &ttl];
        let renew_params: [&(dyn ToSql + Sync); 5] = [&connector, &me, &ttl, &partitions, &epochs];
        let read_params: [&(dyn ToSql + Sync); 1] = [&connector];
        let (beat, renewed, members, claims) = tokio::join!(
            client.execute(&heartbeat, &beat_params),
            client.query(&renew, &renew_params),
            client.query(&members, &read_params),
            client.query(&claims, &read_params),
        );
        beat.map_err(|e| self.error("cannot keep the membership alive", &e))?;
        let renewed = renewed.map_err(|e| self.error("cannot renew the partition claims", &e))?;
        let members = members.map_err(|e| self.error("cannot read the members", &e))?;
        let claims = claims.map_err(|e| self.error("cannot read the partition claims", &e))?;
        let still = renewed.iter().map(|r| r.get::<_, i32>(0) as u32).collect();
        let view = View {
            members: members.iter().map(|r| r.get(0)).collect(),
            claims: claims
                .iter()
                .map(|r| ClaimRow { partition: r.get::<_, i32>(0) as u32, holder: r.get(1), epoch: r.get(2), live: r.get(3) })
                .collect(),
        };
        Ok((still, view))
    }

    async fn take(&mut self, connector: &str, holder: &str, partitions: &[u32], ttl_ms: u64) -> Result<Vec<Taken>, LeaseError> {
        let ttl = ttl_ms as i64;
        let wanted: Vec<i32> = partitions.iter().map(|p| *p as i32).collect();
        self.statements += 1;
        let sql = self.sql.take.clone();
        let rows = self.client().await?.query(&sql, &[&connector, &holder, &ttl, &wanted]).await;
        let rows = rows.map_err(|e| self.error("cannot take partitions", &e))?;
        Ok(rows
            .iter()
            .map(|r| Taken {
                partition: r.get::<_, i32>(0) as u32,
                epoch: r.get(1),
                since_previous_holder_ms: r.get(2),
                was_released: r.get(3),
            })
            .collect())
    }

    async fn release(&mut self, connector: &str, holder: &str, released: &BTreeMap<u32, i64>) -> Result<(), LeaseError> {
        if released.is_empty() {
            return Ok(());
        }
        let (partitions, epochs) = arrays(released);
        self.statements += 1;
        let sql = self.sql.release.clone();
        let done = self.client().await?.execute(&sql, &[&connector, &holder, &partitions, &epochs]).await;
        done.map(drop).map_err(|e| self.error("cannot hand partitions back", &e))
    }

    async fn leave(&mut self, connector: &str, member: &str) -> Result<(), LeaseError> {
        self.statements += 1;
        let sql = self.sql.leave.clone();
        let done = self.client().await?.execute(&sql, &[&connector, &member]).await;
        done.map(drop).map_err(|e| self.error("cannot leave the members", &e))
    }
}

/// The partitions and epochs of `epochs` as the two arrays the statements take.
pub fn arrays(epochs: &BTreeMap<u32, i64>) -> (Vec<i32>, Vec<i64>) {
    epochs.iter().map(|(p, e)| (*p as i32, *e)).unzip()
}
