//! The gateway's own tables in a SQL Server target (`<schema>.checkpoints`,
//! `<schema>.parked_events`, `<schema>.projections`), the statements that read and write them,
//! and the one-time preparation of a target: create what is missing (one batch, one round
//! trip), then run the configured init SQL.
//!
//! Every statement here uses `@P1..` placeholders numbered from 1 within itself; a batch
//! renumbers them (see `params.rs`). Objects are looked up before they are created
//! (`SCHEMA_ID`, `OBJECT_ID`), so a login that may use but not create them still starts.

use tiberius::Query;

use super::connect::{MssqlClient, describe, is_transient, quote_ident};
use crate::{checkpoint::CheckpointRow, config::MssqlSinkConfig, sinks::SinkError};

/// Rows of one checkpoint `MERGE`: 2 + 2 per row parameters, well under the 2,100 of an RPC.
pub const CHECKPOINT_ROWS_PER_MERGE: usize = 500;

/// The error number `check_checkpoints` throws when a row is not where the batch expects it.
pub const CHECKPOINT_MOVED: u32 = 51_000;

/// The statements on the gateway's tables, with the schema filled in.
#[derive(Debug)]
pub struct GatewaySql {
    schema: String,
    checkpoints: String,
    parked: String,
    projections: String,
    /// `@P1` connector.
    pub load_checkpoints: String,
    /// `@P1` connector, `@P2` partition count.
    pub delete_checkpoints: String,
    /// `@P1` connector.
    pub delete_all_checkpoints: String,
    /// `@P1` connector, `@P2` partition, `@P3` position, `@P4` event id, `@P5` stream, `@P6`
    /// event type, `@P7` payload, `@P8` error.
    pub insert_parked: String,
    /// `@P1` connector.
    pub load_version: String,
    /// `@P1` connector, `@P2` projection, `@P3` version.
    pub upsert_version: String,
}

impl GatewaySql {
    pub fn new(schema: &str) -> Self {
        let s = quote_ident(schema);
        Self {
            schema: schema.to_string(),
            checkpoints: format!("{s}.[checkpoints]"),
            parked: format!("{s}.[parked_events]"),
            projections: format!("{s}.[projections]"),
            load_checkpoints: format!(
                "SELECT partition_count, [partition], position FROM {s}.[checkpoints] WHERE connector = @P1"
            ),
            delete_checkpoints: format!("DELETE FROM {s}.[checkpoints] WHERE connector = @P1 AND partition_count = @P2"),
            delete_all_checkpoints: format!("DELETE FROM {s}.[checkpoints] WHERE connector = @P1"),
            insert_parked: format!(
                "INSERT INTO {s}.[parked_events] (connector, [partition], position, event_id, stream, event_type, payload, error) \
                 VALUES (@P1, @P2, @P3, @P4, @P5, @P6, @P7, @P8)"
            ),
            load_version: format!("SELECT version FROM {s}.[projections] WHERE connector = @P1"),
            upsert_version: format!(
                "MERGE {s}.[projections] WITH (HOLDLOCK) AS t USING (VALUES (@P1, @P2, @P3)) AS s (connector, projection, version) \
                 ON t.connector = s.connector \
                 WHEN MATCHED THEN UPDATE SET projection = s.projection, version = s.version, updated_at = SYSUTCDATETIME() \
                 WHEN NOT MATCHED THEN INSERT (connector, projection, version, updated_at) \
                 VALUES (s.connector, s.projection, s.version, SYSUTCDATETIME());"
            ),
        }
    }

    /// The upsert of `rows` checkpoint rows: `@P1` connector, `@P2` partition count, then
    /// (partition, position) per row.
    /// Checks, under locks held to the end of the transaction, that each of `rows` checkpoint
    /// rows is where the batch was planned from: parameters `@P1` connector, `@P2` partition
    /// count, then (partition, expected position) pairs, a null position meaning "no row yet"
    /// (see `sinks::Stored`). `UPDLOCK, HOLDLOCK` lock the rows (and, for a missing row, its
    /// key range), so a concurrent commit is waited for and then seen; a mismatch throws
    /// [`CHECKPOINT_MOVED`], and `XACT_ABORT` rolls the whole batch back.
    pub fn check_checkpoints(&self, rows: usize) -> String {
        let values = (0..rows).map(|r| format!("(@P{}, @P{})", 3 + 2 * r, 4 + 2 * r)).collect::<Vec<_>>().join(", ");
        format!(
            "IF (SELECT count(*) FROM (VALUES {values}) AS s([partition], expected) \
             WHERE (s.expected IS NULL AND NOT EXISTS (SELECT 1 FROM {c} t WITH (UPDLOCK, HOLDLOCK) \
                    WHERE t.connector = @P1 AND t.partition_count = @P2 AND t.[partition] = s.[partition])) \
                OR EXISTS (SELECT 1 FROM {c} t WITH (UPDLOCK, HOLDLOCK) \
                    WHERE t.connector = @P1 AND t.partition_count = @P2 AND t.[partition] = s.[partition] AND t.position = s.expected)) <> {rows} \
             THROW {CHECKPOINT_MOVED}, N'projector-gateway: a checkpoint row is not where this batch was planned from', 1;",
            c = self.checkpoints
        )
    }

    /// Writes `rows` checkpoint rows; a stored position never moves backwards.
    pub fn merge_checkpoints(&self, rows: usize) -> String {
        let values = (0..rows).map(|r| format!("(@P{}, @P{})", 3 + 2 * r, 4 + 2 * r)).collect::<Vec<_>>().join(", ");
        format!(
            "MERGE {} WITH (HOLDLOCK) AS t USING (VALUES {values}) AS s ([partition], position) \
             ON t.connector = @P1 AND t.partition_count = @P2 AND t.[partition] = s.[partition] \
             WHEN MATCHED THEN UPDATE SET position = CASE WHEN s.position > t.position THEN s.position ELSE t.position END, \
               updated_at = SYSUTCDATETIME() \
             WHEN NOT MATCHED THEN INSERT (connector, partition_count, [partition], position, updated_at) \
             VALUES (@P1, @P2, s.[partition], s.position, SYSUTCDATETIME());",
            self.checkpoints
        )
    }

    /// One batch creating the schema and the tables where missing.
    pub fn create_missing(&self) -> String {
        let name = self.schema.replace('\'', "''");
        let s = quote_ident(&self.schema).replace('\'', "''");
        format!(
            "IF SCHEMA_ID(N'{name}') IS NULL EXEC(N'CREATE SCHEMA {s}');\n\
             IF OBJECT_ID(N'{c}', N'U') IS NULL CREATE TABLE {c} (\n\
               connector       nvarchar(200) NOT NULL,\n\
               partition_count int           NOT NULL,\n\
               [partition]     int           NOT NULL,\n\
               position        bigint        NOT NULL,\n\
               updated_at      datetime2     NOT NULL DEFAULT SYSUTCDATETIME(),\n\
               PRIMARY KEY (connector, partition_count, [partition]));\n\
             IF OBJECT_ID(N'{p}', N'U') IS NULL CREATE TABLE {p} (\n\
               id          bigint IDENTITY PRIMARY KEY,\n\
               connector   nvarchar(200)  NOT NULL,\n\
               [partition] int            NOT NULL,\n\
               position    bigint         NOT NULL,\n\
               event_id    nvarchar(100)  NOT NULL,\n\
               stream      nvarchar(1000) NOT NULL,\n\
               event_type  nvarchar(400)  NOT NULL,\n\
               payload     nvarchar(max)  NULL,\n\
               error       nvarchar(max)  NOT NULL,\n\
               parked_at   datetime2      NOT NULL DEFAULT SYSUTCDATETIME());\n\
             IF OBJECT_ID(N'{v}', N'U') IS NULL CREATE TABLE {v} (\n\
               connector   nvarchar(200) NOT NULL PRIMARY KEY,\n\
               projection  nvarchar(400) NOT NULL,\n\
               version     nvarchar(200) NOT NULL,\n\
               updated_at  datetime2     NOT NULL DEFAULT SYSUTCDATETIME());",
            c = self.checkpoints,
            p = self.parked,
            v = self.projections,
        )
    }
}

/// Creates what is missing, then runs `init_sql` and `init_sql_file` (SQL batches: several
/// statements are fine, `GO` separators are not).
pub async fn prepare_target(
    client: &mut MssqlClient,
    config: &MssqlSinkConfig,
    sql: &GatewaySql,
    server: &str,
) -> Result<(), SinkError> {
    let fail = |what: &str, e: &tiberius::error::Error| {
        SinkError::schema(format!("SQL Server target {server}: {what}: {}", describe(e))).unreachable_if(is_transient(e))
    };
    run_batch(client, &sql.create_missing())
        .await
        .map_err(|e| fail(&format!("cannot create the gateway's tables in schema `{}` (sink.mssql.schema)", sql.schema), &e))?;
    if let Some(init) = &config.init_sql {
        run_batch(client, init).await.map_err(|e| fail("`init_sql` failed", &e))?;
    }
    if let Some(file) = &config.init_sql_file {
        let init = tokio::fs::read_to_string(file).await.map_err(|e| {
            SinkError::schema(format!("SQL Server target {server}: cannot read `init_sql_file` {}: {e}", file.display()))
        })?;
        run_batch(client, &init).await.map_err(|e| fail(&format!("`init_sql_file` {} failed", file.display()), &e))?;
    }
    Ok(())
}

/// Runs a T-SQL batch (no parameters) and reads its results to the end.
pub async fn run_batch(client: &mut MssqlClient, sql: &str) -> Result<(), tiberius::error::Error> {
    client.simple_query(sql).await?.into_results().await.map(drop)
}

pub async fn load_checkpoints(
    client: &mut MssqlClient,
    sql: &GatewaySql,
    connector: &str,
) -> Result<Vec<CheckpointRow>, tiberius::error::Error> {
    let mut query = Query::new(sql.load_checkpoints.as_str());
    query.bind(connector);
    let rows = query.query(client).await?.into_first_result().await?;
    rows.iter()
        .map(|row| {
            let int = |i: usize| -> Result<i64, tiberius::error::Error> {
                match row.try_get::<i32, _>(i) {
                    Ok(Some(v)) => Ok(v.into()),
                    Ok(None) => Err(tiberius::error::Error::Conversion("NULL in a checkpoint row".into())),
                    Err(_) => row
                        .try_get::<i64, _>(i)?
                        .ok_or_else(|| tiberius::error::Error::Conversion("NULL in a checkpoint row".into())),
                }
            };
            Ok(CheckpointRow { partition_count: int(0)? as u32, partition: int(1)? as u32, position: int(2)? as u64 })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_name_the_configured_schema() {
        let sql = GatewaySql::new("gw");
        assert!(sql.create_missing().starts_with("IF SCHEMA_ID(N'gw') IS NULL EXEC(N'CREATE SCHEMA [gw]');"));
        assert!(sql.create_missing().contains("IF OBJECT_ID(N'[gw].[parked_events]', N'U') IS NULL CREATE TABLE [gw].[parked_events]"));
        assert_eq!(
            sql.load_checkpoints,
            "SELECT partition_count, [partition], position FROM [gw].[checkpoints] WHERE connector = @P1"
        );
        let merge = sql.merge_checkpoints(2);
        assert!(merge.starts_with("MERGE [gw].[checkpoints] WITH (HOLDLOCK) AS t USING (VALUES (@P3, @P4), (@P5, @P6)) AS s"), "{merge}");
        assert!(merge.ends_with(';'));
    }
}
