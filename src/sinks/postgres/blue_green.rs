//! Blue/green rebuilds on a PostgreSQL target: the live read model is the schema
//! `read_model_schema`, a new version is built in `<read_model_schema>_v<version>` by the
//! sidecar's unchanged, unqualified SQL (its connections' `search_path` is that schema), and
//! the swap is one transaction:
//!
//! 1. the connector's row in `<schema>.projections` is set to the new version first: every
//!    batch of the live run share-locks that row and checks the version it runs
//!    (`GatewaySql::version_fence`), so the swap waits for a batch in flight, and any batch after
//!    it fails whole instead of writing the old version's operations into the new read model;
//! 2. `ALTER SCHEMA <rm> RENAME TO <rm>_v<old>`, `ALTER SCHEMA <rm>_v<new> RENAME TO <rm>`;
//! 3. the checkpoints and parked events change hands: the old version's rows go under its own
//!    id (`<connector>@v<old>`), the new version's take the connector's id;
//! 4. the record of versions (`<schema>.blue_green_versions`) says which is live.
//!
//! A reader whose `search_path` names `<rm>` sees the old schema until the commit and the new
//! one after it: never neither, never half of one. Replaced schemas past the policy are then
//! dropped (`DROP SCHEMA ... CASCADE`), outside the swap, so a reader of an old version does
//! not hold the swap up.

use tokio_postgres::Client;

use crate::{
    config::PostgresSinkConfig,
    postgres::{PgEndpoint, describe, is_transient, quote_ident},
    sinks::{
        SinkError,
        blue_green::{VersionRecord, VersionState, drop_replaced, mark_past_policy, staged_id},
    },
};

/// The longest name PostgreSQL keeps whole.
const MAX_NAME: usize = 63;

/// The schema where version `suffix` of the read model in `schema` is built.
pub fn version_schema(schema: &str, suffix: &str) -> Result<String, SinkError> {
    let suffix: String = suffix.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect();
    let name = format!("{schema}_v{suffix}");
    if name.len() > MAX_NAME {
        return Err(SinkError::config(format!(
            "schema `{name}` (read_model_schema `{schema}`, version `{suffix}`) is longer than PostgreSQL's {MAX_NAME} characters; \
             use a shorter read_model_schema or version"
        )));
    }
    Ok(name)
}

/// The versions of one connector's read model in a PostgreSQL target.
pub struct Schemas {
    connector: String,
    endpoint: PgEndpoint,
    client: tokio::sync::Mutex<Client>,
    /// The gateway's schema (quoted).
    gw: String,
    /// The live read model's schema.
    live: String,
}

impl Schemas {
    pub async fn open(connector: &str, settings: &PostgresSinkConfig, read_model_schema: &str) -> Result<Self, SinkError> {
        let endpoint = PgEndpoint::parse(&settings.url).map_err(|e| SinkError::config(format!("sink.postgres.url: {e}")))?;
        let client = endpoint.connect().await.map_err(|e| {
            SinkError::refused(format!("cannot connect to the PostgreSQL target {}: {}", endpoint.display(), describe(&e))).unreachable_if(is_transient(&e))
        })?;
        let gw = quote_ident(&settings.schema);
        let this = Self { connector: connector.to_string(), endpoint, client: tokio::sync::Mutex::new(client), gw, live: read_model_schema.to_string() };
        let create = format!(
            r#"CREATE SCHEMA IF NOT EXISTS {gw};
               CREATE TABLE IF NOT EXISTS {gw}.blue_green_versions (
                 connector  text NOT NULL,
                 version    text NOT NULL,
                 state      text NOT NULL,
                 place      text NOT NULL,
                 sidecar    text,
                 changed_at text NOT NULL,
                 detail     text,
                 PRIMARY KEY (connector, version))"#,
            gw = this.gw
        );
        let exists: bool = this
            .client
            .lock()
            .await
            .query_one("SELECT to_regclass($1) IS NOT NULL", &[&format!("{}.blue_green_versions", this.gw)])
            .await
            .and_then(|r| r.try_get(0))
            .map_err(|e| this.error("cannot look up blue_green_versions", &e))?;
        if !exists {
            this.client.lock().await.batch_execute(&create).await.map_err(|e| this.error("cannot create blue_green_versions", &e))?;
        }
        Ok(this)
    }

    fn error(&self, what: &str, e: &tokio_postgres::Error) -> SinkError {
        SinkError::refused(format!("PostgreSQL target {}: {what}: {}", self.endpoint.display(), describe(e))).unreachable_if(is_transient(e))
    }

    pub async fn versions(&self) -> Result<Vec<VersionRecord>, SinkError> {
        let client = self.client.lock().await;
        read_versions(&*client, &self.gw, &self.connector).await.map_err(|e| self.error("cannot read blue_green_versions", &e))
    }

    pub async fn live_version(&self) -> Result<Option<String>, SinkError> {
        let client = self.client.lock().await;
        match client.query_opt(&format!("SELECT version FROM {}.projections WHERE connector = $1", self.gw), &[&self.connector]).await {
            Ok(row) => row.map(|r| r.try_get(0)).transpose().map_err(|e| self.error("cannot read the live projection version", &e)),
            Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::UNDEFINED_TABLE) => Ok(None),
            Err(e) => Err(self.error("cannot read the live projection version", &e)),
        }
    }

    pub async fn record(&self, record: &VersionRecord) -> Result<(), SinkError> {
        let client = self.client.lock().await;
        write_version(&*client, &self.gw, &self.connector, record).await.map_err(|e| self.error("cannot record the rebuild", &e))
    }

    pub async fn discard(&self, version: &str) -> Result<(), SinkError> {
        let schema = version_schema(&self.live, &crate::sinks::blue_green::version_suffix(version)?)?;
        let mut client = self.client.lock().await;
        let tx = client.transaction().await.map_err(|e| self.error("cannot begin", &e))?;
        let id = staged_id(&self.connector, version);
        let sql = format!(
            "DROP SCHEMA IF EXISTS {} CASCADE; ",
            quote_ident(&schema)
        );
        tx.batch_execute(&sql).await.map_err(|e| self.error(&format!("cannot drop schema `{schema}`"), &e))?;
        for table in ["checkpoints", "projections", "parked_events"] {
            tx.execute(&format!("DELETE FROM {}.{table} WHERE connector = $1", self.gw), &[&id])
                .await
                .map_err(|e| self.error(&format!("cannot delete the {table} of version {version}"), &e))?;
        }
        tx.commit().await.map_err(|e| self.error("cannot commit", &e))
    }

    pub async fn swap(&self, projection: &str, live: Option<&str>, new: &str, keep: u32) -> Result<Vec<String>, SinkError> {
        use crate::sinks::blue_green::version_suffix;
        let new_schema = version_schema(&self.live, &version_suffix(new)?)?;
        let old = live.unwrap_or("0");
        let old_schema = version_schema(&self.live, &version_suffix(old)?)?;
        let (gw, c) = (&self.gw, self.connector.as_str());
        let (old_id, new_id) = (staged_id(c, old), staged_id(c, new));
        let now = chrono::Utc::now().to_rfc3339();
        let mut client = self.client.lock().await;
        let tx = client.transaction().await.map_err(|e| self.error("cannot begin the swap", &e))?;
        let fail = |what: &str, e: &tokio_postgres::Error| self.error(&format!("the swap failed ({what}), nothing of it was committed"), e);
        // 1. The fence: waits for the live run's batch in flight; refuses every later one.
        tx.execute(
            &format!(
                "INSERT INTO {gw}.projections (connector, projection, version, updated_at) VALUES ($1, $2, $3, now())
                 ON CONFLICT (connector) DO UPDATE SET projection = excluded.projection, version = excluded.version, updated_at = now()"
            ),
            &[&c, &projection, &new],
        )
        .await
        .map_err(|e| fail("recording the new version", &e))?;
        // 2. The schemas.
        tx.batch_execute(&format!(
            "ALTER SCHEMA {live} RENAME TO {old}; ALTER SCHEMA {new} RENAME TO {live};",
            live = quote_ident(&self.live),
            old = quote_ident(&old_schema),
            new = quote_ident(&new_schema),
        ))
        .await
        .map_err(|e| fail(&format!("renaming `{}` to `{old_schema}` and `{new_schema}` to `{}`", self.live, self.live), &e))?;
        // 3. The rows change hands.
        for table in ["checkpoints", "parked_events"] {
            let statements = [
                format!("DELETE FROM {gw}.{table} WHERE connector = $1"),
                format!("UPDATE {gw}.{table} SET connector = $1 WHERE connector = $2"),
                format!("UPDATE {gw}.{table} SET connector = $1 WHERE connector = $2"),
            ];
            tx.execute(&statements[0], &[&old_id]).await.map_err(|e| fail(&format!("clearing {table} of `{old_id}`"), &e))?;
            tx.execute(&statements[1], &[&old_id, &c]).await.map_err(|e| fail(&format!("moving {table} to `{old_id}`"), &e))?;
            tx.execute(&statements[2], &[&c, &new_id]).await.map_err(|e| fail(&format!("moving {table} to `{c}`"), &e))?;
        }
        tx.execute(&format!("DELETE FROM {gw}.projections WHERE connector = $1"), &[&new_id])
            .await
            .map_err(|e| fail("deleting the rebuild's version row", &e))?;
        // 4. The record.
        let mut versions = read_versions(&tx, gw, c).await.map_err(|e| fail("reading blue_green_versions", &e))?;
        versions.retain(|v| v.version != old && v.version != new);
        if live.is_some() {
            versions.push(VersionRecord { version: old.into(), state: VersionState::Retired, place: old_schema.clone(), sidecar: None, changed_at: now.clone(), detail: None });
        }
        let current = VersionRecord { version: new.into(), state: VersionState::Live, place: self.live.clone(), sidecar: None, changed_at: now.clone(), detail: None };
        versions.push(current);
        let dropped = mark_past_policy(&mut versions, keep);
        for v in &versions {
            write_version(&tx, gw, c, v).await.map_err(|e| fail("recording the versions", &e))?;
        }
        tx.commit().await.map_err(|e| fail("COMMIT", &e))?;
        drop(client);
        Ok(drop_replaced(&self.connector, dropped, async |old| self.discard(&old.version).await).await)
    }
}

async fn read_versions(client: &impl tokio_postgres::GenericClient, gw: &str, connector: &str) -> Result<Vec<VersionRecord>, tokio_postgres::Error> {
    let rows = client
        .query(
            &format!("SELECT version, state, place, sidecar, changed_at, detail FROM {gw}.blue_green_versions WHERE connector = $1 ORDER BY changed_at"),
            &[&connector],
        )
        .await?;
    rows.iter()
        .map(|r| {
            Ok(VersionRecord {
                version: r.try_get(0)?,
                state: VersionState::parse(r.try_get(1)?),
                place: r.try_get(2)?,
                sidecar: r.try_get(3)?,
                changed_at: r.try_get(4)?,
                detail: r.try_get(5)?,
            })
        })
        .collect()
}

async fn write_version(client: &impl tokio_postgres::GenericClient, gw: &str, connector: &str, v: &VersionRecord) -> Result<(), tokio_postgres::Error> {
    client
        .execute(
            &format!(
                "INSERT INTO {gw}.blue_green_versions (connector, version, state, place, sidecar, changed_at, detail) VALUES ($1, $2, $3, $4, $5, $6, $7)
                 ON CONFLICT (connector, version) DO UPDATE SET state = excluded.state, place = excluded.place, sidecar = excluded.sidecar,
                   changed_at = excluded.changed_at, detail = excluded.detail"
            ),
            &[&connector, &v.version, &v.state.as_str(), &v.place, &v.sidecar, &v.changed_at, &v.detail],
        )
        .await
        .map(drop)
}
