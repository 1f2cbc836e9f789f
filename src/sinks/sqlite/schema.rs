//! The gateway's own tables in a SQLite target (`checkpoints`, `parked_events`) and the
//! connection settings every SQLite target gets.

use rusqlite::Connection;

use crate::{checkpoint::CheckpointRow, config::SqliteSinkConfig, sinks::SinkError};

const TABLES: &str = r#"
CREATE TABLE IF NOT EXISTS checkpoints (
    connector       TEXT    NOT NULL,
    partition_count INTEGER NOT NULL,
    "partition"     INTEGER NOT NULL,
    position        INTEGER NOT NULL,
    updated_at      TEXT    NOT NULL,
    PRIMARY KEY (connector, partition_count, "partition")
);
CREATE TABLE IF NOT EXISTS parked_events (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    connector   TEXT    NOT NULL,
    "partition" INTEGER NOT NULL,
    position    INTEGER NOT NULL,
    event_id    TEXT    NOT NULL,
    stream      TEXT    NOT NULL,
    event_type  TEXT    NOT NULL,
    payload     TEXT,
    error       TEXT    NOT NULL,
    parked_at   TEXT    NOT NULL
);
CREATE TABLE IF NOT EXISTS projections (
    connector   TEXT PRIMARY KEY,
    projection  TEXT NOT NULL,
    version     TEXT NOT NULL,
    updated_at  TEXT NOT NULL
);
"#;

/// The settings every connection to a SQLite target gets: the gateway's own (writers, the
/// partition claims of `lease::sqlite_claims`) wait for one another's write lock, in WAL mode.
pub(crate) fn configure(conn: &Connection) -> rusqlite::Result<()> {
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    conn.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;")
}

pub(super) fn open(config: &SqliteSinkConfig) -> Result<Connection, SinkError> {
    let path = config.path.display().to_string();
    let fail = |what: &str, e: &dyn std::fmt::Display| SinkError::schema(format!("SQLite target {path}: {what}: {e}"));
    if let Some(dir) = config.path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| fail("cannot create its directory", &e))?;
    }
    let conn = Connection::open(&config.path).map_err(|e| fail("cannot open", &e))?;
    configure(&conn).map_err(|e| fail("cannot configure", &e))?;
    conn.set_prepared_statement_cache_capacity(256);
    conn.execute_batch(TABLES).map_err(|e| fail("cannot create the gateway tables", &e))?;
    if let Some(sql) = &config.init_sql {
        conn.execute_batch(sql).map_err(|e| fail("`init_sql` failed", &e))?;
    }
    if let Some(file) = &config.init_sql_file {
        let sql = std::fs::read_to_string(file)
            .map_err(|e| fail(&format!("cannot read `init_sql_file` {}", file.display()), &e))?;
        conn.execute_batch(&sql)
            .map_err(|e| fail(&format!("`init_sql_file` {} failed", file.display()), &e))?;
    }
    Ok(conn)
}

pub(super) fn load_checkpoints(conn: &Connection, connector: &str) -> rusqlite::Result<Vec<CheckpointRow>> {
    let mut stmt = conn.prepare(
        r#"SELECT partition_count, "partition", position FROM checkpoints WHERE connector = ?1"#,
    )?;
    stmt.query_map([connector], |row| {
        Ok(CheckpointRow {
            partition_count: row.get(0)?,
            partition: row.get(1)?,
            position: row.get::<_, i64>(2)? as u64,
        })
    })?
    .collect()
}
