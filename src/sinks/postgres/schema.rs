//! The gateway's own tables in a PostgreSQL target (`<schema>.checkpoints`,
//! `<schema>.parked_events`), the SQL that reads and writes them, and the one-time preparation
//! of a target: create what is missing, then run the configured init SQL.
//!
//! Objects are looked up before they are created, so a role that may use but not create them
//! (the tables were made by a migration tool) still starts.

use tokio_postgres::Client;

use crate::{
    checkpoint::CheckpointRow,
    config::PostgresSinkConfig,
    postgres::{describe, is_transient, quote_ident},
    sinks::SinkError,
};

/// The statements on the gateway's tables, with the schema filled in.
#[derive(Debug)]
pub(super) struct GatewaySql {
    schema: String,
    checkpoints_table: String,
    pub parked_table: String,
    projections_table: String,
    create_checkpoints: String,
    create_projections: String,
    /// `$1` connector.
    pub load_version: String,
    /// `$1` connector, `$2` projection, `$3` version.
    pub upsert_version: String,
    /// `$1` connector.
    pub delete_all_checkpoints: String,
    create_parked: String,
    /// `$1` connector, `$2` partition count, `$3` partitions (int[]), `$4` positions (bigint[]).
    pub write_checkpoints: String,
    /// `$1` connector, `$2` partition, `$3` position, `$4` event id, `$5` stream, `$6` event
    /// type, `$7` payload, `$8` error.
    pub insert_parked: String,
    /// `$1` connector.
    pub load_checkpoints: String,
    /// `$1` connector, `$2` partition count.
    pub delete_checkpoints: String,
    /// `$1` connector, `$2` holder, `$3` epoch: fails unless the lease is still theirs.
    pub fence: String,
    /// The fence of a connector whose partitions are shared out: `$1` connector, `$2` holder,
    /// `$3` partitions, `$4` their epochs.
    pub claims_fence: String,
    /// `$1` connector, `$2` version: fails (22012) unless the recorded projection version is
    /// still that one; share-locks its row.
    pub version_fence: String,
    /// `SET search_path TO <read_model_schema>`, when the read model has a schema of its own.
    pub set_search_path: Option<String>,
    /// The read model's schema, when it has one of its own.
    pub read_model_schema: Option<String>,
}

impl GatewaySql {
    pub fn new(schema: &str, read_model_schema: Option<&str>) -> Self {
        let s = quote_ident(schema);
        Self {
            version_fence: format!(
                "SELECT 1 / (SELECT count(*)::int FROM (SELECT 1 FROM {s}.projections WHERE connector = $1 AND version = $2 FOR SHARE) AS live)"
            ),
            set_search_path: read_model_schema.map(|rm| format!("SET search_path TO {}", quote_ident(rm))),
            read_model_schema: read_model_schema.map(str::to_string),
            schema: schema.to_string(),
            checkpoints_table: format!("{s}.checkpoints"),
            parked_table: format!("{s}.parked_events"),
            projections_table: format!("{s}.projections"),
            create_projections: format!(
                r#"CREATE TABLE IF NOT EXISTS {s}.projections (
                    connector   text        PRIMARY KEY,
                    projection  text        NOT NULL,
                    version     text        NOT NULL,
                    updated_at  timestamptz NOT NULL DEFAULT now())"#
            ),
            load_version: format!("SELECT version FROM {s}.projections WHERE connector = $1"),
            upsert_version: format!(
                r#"INSERT INTO {s}.projections (connector, projection, version, updated_at) VALUES ($1, $2, $3, now())
                   ON CONFLICT (connector) DO UPDATE SET projection = excluded.projection, version = excluded.version, updated_at = now()"#
            ),
            delete_all_checkpoints: format!("DELETE FROM {s}.checkpoints WHERE connector = $1"),
            create_checkpoints: format!(
                r#"CREATE TABLE IF NOT EXISTS {s}.checkpoints (
                    connector       text        NOT NULL,
                    partition_count integer     NOT NULL,
                    "partition"     integer     NOT NULL,
                    position        bigint      NOT NULL,
                    updated_at      timestamptz NOT NULL DEFAULT now(),
                    PRIMARY KEY (connector, partition_count, "partition"))"#
            ),
            create_parked: format!(
                r#"CREATE TABLE IF NOT EXISTS {s}.parked_events (
                    id          bigserial   PRIMARY KEY,
                    connector   text        NOT NULL,
                    "partition" integer     NOT NULL,
                    position    bigint      NOT NULL,
                    event_id    text        NOT NULL,
                    stream      text        NOT NULL,
                    event_type  text        NOT NULL,
                    payload     text,
                    error       text        NOT NULL,
                    parked_at   timestamptz NOT NULL DEFAULT now())"#
            ),
            // Every checkpoint row of a batch in one statement (see `sinks::Stored`): rows the
            // batch was planned from move only from the position it read (`checked`, with
            // `expected` null for "no row yet"), under the row lock the UPDATE takes, which
            // waits for a concurrent commit and then re-reads the row; unchecked rows never move
            // backwards. A checked row that is not where the batch expects it makes the
            // division fail, which aborts the transaction (SQLSTATE 22012).
            write_checkpoints: format!(
                r#"WITH c AS (SELECT * FROM UNNEST($3::int[], $4::bigint[], $5::bool[], $6::bigint[]) AS c(p, pos, checked, expected)),
                   moved AS (UPDATE {s}.checkpoints t SET position = c.pos, updated_at = now() FROM c
                             WHERE t.connector = $1 AND t.partition_count = $2 AND t."partition" = c.p
                               AND c.checked AND t.position = c.expected
                             RETURNING 1),
                   added AS (INSERT INTO {s}.checkpoints (connector, partition_count, "partition", position, updated_at)
                             SELECT $1, $2, c.p, c.pos, now() FROM c WHERE c.checked AND c.expected IS NULL
                             ON CONFLICT (connector, partition_count, "partition") DO NOTHING
                             RETURNING 1),
                   merged AS (INSERT INTO {s}.checkpoints (connector, partition_count, "partition", position, updated_at)
                              SELECT $1, $2, c.p, c.pos, now() FROM c WHERE NOT c.checked
                              ON CONFLICT (connector, partition_count, "partition")
                              DO UPDATE SET position = GREATEST({s}.checkpoints.position, excluded.position), updated_at = excluded.updated_at)
                   SELECT 1 / ((SELECT count(*) FROM moved) + (SELECT count(*) FROM added) = (SELECT count(*) FROM c WHERE c.checked))::int"#
            ),
            insert_parked: format!(
                r#"INSERT INTO {s}.parked_events (connector, "partition", position, event_id, stream, event_type, payload, error)
                   VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"#
            ),
            load_checkpoints: format!(
                r#"SELECT partition_count, "partition", position FROM {s}.checkpoints WHERE connector = $1"#
            ),
            delete_checkpoints: format!(
                "DELETE FROM {s}.checkpoints WHERE connector = $1 AND partition_count = $2"
            ),
            fence: crate::lease::postgres::fence_sql(schema),
            claims_fence: crate::lease::postgres_claims::fence_sql(schema),
        }
    }
}

/// The advisory lock every gateway holds while it prepares a PostgreSQL target: two sessions
/// running `CREATE TABLE IF NOT EXISTS` for the same table at once make one of them fail
/// (`pg_type_typname_nsp_index`), which two gateways starting together, or a listing of parked
/// events while the connector starts, would otherwise hit.
const PREPARING: i64 = 0x7072_6570_6761_7465; // "prepgate"

/// Creates the schema and the gateway's tables where missing, then runs `init_sql` and
/// `init_sql_file` (simple query protocol: several statements are fine), one gateway session at
/// a time ([`PREPARING`]).
pub(super) async fn prepare_target(
    client: &Client,
    config: &PostgresSinkConfig,
    sql: &GatewaySql,
    server: &str,
) -> Result<(), SinkError> {
    let fail = |what: &str, e: &tokio_postgres::Error| preparation_failed(server, what, e);
    client.execute("SELECT pg_advisory_lock($1)", &[&PREPARING]).await.map_err(|e| fail("cannot take the preparation lock", &e))?;
    let prepared = prepare_locked(client, config, sql, server).await;
    // Released with the session otherwise; an unlock that fails leaves it to that.
    let _ = client.execute("SELECT pg_advisory_unlock($1)", &[&PREPARING]).await;
    prepared
}

fn preparation_failed(server: &str, what: &str, e: &tokio_postgres::Error) -> SinkError {
    SinkError::schema(format!("PostgreSQL target {server}: {what}: {}", describe(e))).unreachable_if(is_transient(e))
}

async fn prepare_locked(client: &Client, config: &PostgresSinkConfig, sql: &GatewaySql, server: &str) -> Result<(), SinkError> {
    let fail = |what: &str, e: &tokio_postgres::Error| preparation_failed(server, what, e);
    let schema_exists: bool = client
        .query_one("SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)", &[&sql.schema])
        .await
        .and_then(|row| row.try_get(0))
        .map_err(|e| fail("cannot look up the schema", &e))?;
    if !schema_exists {
        client
            .batch_execute(&format!("CREATE SCHEMA IF NOT EXISTS {}", quote_ident(&sql.schema)))
            .await
            .map_err(|e| fail(&format!("cannot create schema `{}` (sink.postgres.schema)", sql.schema), &e))?;
    }
    for (table, create) in [
        (&sql.checkpoints_table, &sql.create_checkpoints),
        (&sql.parked_table, &sql.create_parked),
        (&sql.projections_table, &sql.create_projections),
    ] {
        let exists: bool = client
            .query_one("SELECT to_regclass($1) IS NOT NULL", &[table])
            .await
            .and_then(|row| row.try_get(0))
            .map_err(|e| fail(&format!("cannot look up {table}"), &e))?;
        if !exists {
            client.batch_execute(create).await.map_err(|e| fail(&format!("cannot create {table}"), &e))?;
        }
    }
    if let Some(rm) = &sql.read_model_schema {
        let exists: bool = client
            .query_one("SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)", &[rm])
            .await
            .and_then(|row| row.try_get(0))
            .map_err(|e| fail("cannot look up the read model's schema", &e))?;
        if !exists {
            client
                .batch_execute(&format!("CREATE SCHEMA IF NOT EXISTS {}", quote_ident(rm)))
                .await
                .map_err(|e| fail(&format!("cannot create schema `{rm}` (sink.postgres.read_model_schema)"), &e))?;
        }
    }
    // The init SQL is the read model's: it runs where the sidecar's statements will.
    if let Some(set) = &sql.set_search_path {
        client.batch_execute(set).await.map_err(|e| fail(set, &e))?;
    }
    if let Some(init) = &config.init_sql {
        client.batch_execute(init).await.map_err(|e| fail("`init_sql` failed", &e))?;
    }
    if let Some(file) = &config.init_sql_file {
        let init = tokio::fs::read_to_string(file).await.map_err(|e| {
            SinkError::schema(format!("PostgreSQL target {server}: cannot read `init_sql_file` {}: {e}", file.display()))
        })?;
        client
            .batch_execute(&init)
            .await
            .map_err(|e| fail(&format!("`init_sql_file` {} failed", file.display()), &e))?;
    }
    Ok(())
}

pub(super) async fn load_checkpoints(
    client: &Client,
    sql: &GatewaySql,
    connector: &str,
) -> Result<Vec<CheckpointRow>, tokio_postgres::Error> {
    let rows = client.query(&sql.load_checkpoints, &[&connector]).await?;
    rows.iter()
        .map(|row| {
            Ok(CheckpointRow {
                partition_count: row.try_get::<_, i32>(0)? as u32,
                partition: row.try_get::<_, i32>(1)? as u32,
                position: row.try_get::<_, i64>(2)? as u64,
            })
        })
        .collect()
}
