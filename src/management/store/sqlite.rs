//! The definition log in an SQLite file (`run --state FILE`): one gateway's own, one
//! append-only table, its replay the set of connectors.
//!
//! A created connector is stored as the definition text the operator sent, `${VAR}`s
//! unexpanded, so secrets kept in the environment do not end up in the file; one written inline
//! does, so the file (and SQLite's `-wal`/`-shm` beside it) is created readable by its owner
//! only (mode 0600 on unix), and a file found readable by others is tightened to 0600 with a
//! warning. The history the API shows has every secret redacted.
//!
//! SQLite is called on the blocking pool (`spawn_blocking`), never on a runtime thread: an
//! fsync of the file must not stall the tasks that run connectors. An append is one `BEGIN
//! IMMEDIATE` transaction, so its check of the log's last event holds until it commits.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
};

use parking_lot::Mutex;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use serde_json::Value;
use tracing::warn;

use super::{DefinitionEvent, Logged, Replayed, StoreError, history_item};
use crate::management::definition::CHANGED_BY;

/// The append-only log, in one SQLite file.
pub struct SqliteLog {
    path: PathBuf,
    name: String,
    connection: Arc<Mutex<Connection>>,
}

impl SqliteLog {
    /// Opens (or creates) the log at `path`.
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        let path = path.to_owned();
        let failed = |message: String| StoreError::Failed { log: path.display().to_string(), message };
        let opened = tokio::task::spawn_blocking({
            let path = path.clone();
            move || Self::open_blocking(&path)
        });
        opened.await.map_err(|e| failed(e.to_string()))?
    }

    fn open_blocking(path: &Path) -> Result<Self, StoreError> {
        let failed = |e: rusqlite::Error| StoreError::Failed { log: path.display().to_string(), message: e.to_string() };
        owner_only(path).map_err(|message| StoreError::Failed { log: path.display().to_string(), message })?;
        let connection = Connection::open(path).map_err(failed)?;
        connection
            .execute_batch(
                "PRAGMA journal_mode = WAL;
                 CREATE TABLE IF NOT EXISTS connector_definition_events (
                     seq INTEGER PRIMARY KEY AUTOINCREMENT,
                     connector TEXT NOT NULL,
                     kind TEXT NOT NULL CHECK (kind IN ('created', 'updated', 'deleted', 'enabled', 'disabled', 'reset')),
                     body TEXT,
                     recorded_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
                     changed_by TEXT
                 );",
            )
            .map_err(failed)?;
        // A log written before changes recorded who made them gets the column (NULL in the
        // events it has).
        let has_changed_by = connection
            .query_row("SELECT 1 FROM pragma_table_info('connector_definition_events') WHERE name = 'changed_by'", [], |_| Ok(()))
            .optional()
            .map_err(failed)?
            .is_some();
        if !has_changed_by {
            connection.execute_batch("ALTER TABLE connector_definition_events ADD COLUMN changed_by TEXT").map_err(failed)?;
        }
        // A log written before definitions could be replaced (`PUT`) refuses the kind
        // `updated`: SQLite cannot change a CHECK in place, so the table is copied into one
        // that accepts it, in one transaction.
        let table: String = connection
            .query_row("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'connector_definition_events'", [], |row| row.get(0))
            .map_err(failed)?;
        if !table.contains("'updated'") {
            connection
                .execute_batch(
                    "BEGIN IMMEDIATE;
                     ALTER TABLE connector_definition_events RENAME TO connector_definition_events_before_updates;
                     CREATE TABLE connector_definition_events (
                         seq INTEGER PRIMARY KEY AUTOINCREMENT,
                         connector TEXT NOT NULL,
                         kind TEXT NOT NULL CHECK (kind IN ('created', 'updated', 'deleted', 'enabled', 'disabled', 'reset')),
                         body TEXT,
                         recorded_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
                         changed_by TEXT
                     );
                     INSERT INTO connector_definition_events (seq, connector, kind, body, recorded_at, changed_by)
                         SELECT seq, connector, kind, body, recorded_at, changed_by FROM connector_definition_events_before_updates;
                     DROP TABLE connector_definition_events_before_updates;
                     COMMIT;",
                )
                .map_err(failed)?;
        }
        Ok(Self { path: path.to_owned(), name: path.display().to_string(), connection: Arc::new(Mutex::new(connection)) })
    }

    /// The file, as messages name it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs `f` on the connection on the blocking pool.
    async fn with<T: Send + 'static>(&self, f: impl FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static) -> Result<T, StoreError> {
        let connection = self.connection.clone();
        let failed = |message: String| StoreError::Failed { log: self.path.display().to_string(), message };
        match tokio::task::spawn_blocking(move || f(&mut connection.lock())).await {
            Ok(result) => result.map_err(|e| failed(e.to_string())),
            Err(e) => Err(failed(e.to_string())),
        }
    }

    /// See [`super::DefinitionLog::append`].
    pub async fn append(&self, connector: &str, event: &DefinitionEvent, after: Option<i64>) -> Result<i64, StoreError> {
        let (connector, kind, body) = (connector.to_owned(), event.kind(), event.body().map(str::to_owned));
        let by = CHANGED_BY.try_with(String::clone).ok();
        let appended = self.with(move |connection| {
            let transaction = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let head: i64 = transaction.query_row("SELECT coalesce(max(seq), 0) FROM connector_definition_events", [], |row| row.get(0))?;
            if after.is_some_and(|after| head > after) {
                return Ok(Err(head));
            }
            transaction.execute(
                "INSERT INTO connector_definition_events (connector, kind, body, changed_by) VALUES (?1, ?2, ?3, ?4)",
                params![connector, kind, body, by],
            )?;
            let seq = transaction.last_insert_rowid();
            transaction.commit()?;
            Ok(Ok(seq))
        });
        appended.await?.map_err(|head| StoreError::Behind { log: self.name.clone(), after: after.unwrap_or_default(), head })
    }

    /// Replays the whole log.
    pub async fn replay(&self) -> Result<Replayed, StoreError> {
        let events = self.since(0).await?;
        Ok(Replayed::fold(events.into_iter().map(|e| (e.seq, e.connector, e.event))))
    }

    /// The events after `after`, oldest first (no instance: the file is one gateway's).
    pub async fn since(&self, after: i64) -> Result<Vec<Logged>, StoreError> {
        let rows = self.with(move |connection| {
            let mut statement =
                connection.prepare("SELECT seq, connector, kind, body, changed_by FROM connector_definition_events WHERE seq > ?1 ORDER BY seq")?;
            let rows = statement.query_map([after], |row| {
                Ok((row.get::<_, i64>(0)?, row.get::<_, String>(1)?, row.get::<_, String>(2)?, row.get::<_, Option<String>>(3)?, row.get::<_, Option<String>>(4)?))
            })?;
            rows.collect::<rusqlite::Result<Vec<_>>>()
        });
        let rows = rows.await?;
        Ok(rows
            .into_iter()
            .filter_map(|(seq, connector, kind, body, by)| {
                Some(Logged { seq, connector, event: DefinitionEvent::from_stored(&kind, body)?, instance: None, by })
            })
            .collect())
    }

    /// Every change to `connector`, oldest first, as the API shows it.
    pub async fn history(&self, connector: &str) -> Result<Vec<Value>, StoreError> {
        let connector = connector.to_owned();
        self.with(move |connection| {
            let mut statement = connection.prepare(
                "SELECT seq, kind, body, recorded_at, changed_by FROM connector_definition_events WHERE connector = ?1 ORDER BY seq",
            )?;
            let rows = statement.query_map([connector], |row| {
                let kind: String = row.get(1)?;
                Ok(history_item(row.get(0)?, &kind, row.get(2)?, row.get(3)?, row.get(4)?, None))
            })?;
            rows.collect::<rusqlite::Result<Vec<_>>>()
        })
        .await
    }
}

/// Makes the log readable and writable by its owner only (unix): a new file is created with
/// mode 0600, which SQLite gives its `-wal` and `-shm` files too; an existing one (or one of
/// those) that others may read is tightened to 0600, with a warning, as it may hold definitions
/// with secrets written inline.
#[cfg(unix)]
fn owner_only(path: &Path) -> Result<(), String> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};

    match std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path) {
        Ok(_) => return Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(format!("cannot create it: {e}")),
    }
    let mut siblings = vec![path.to_owned()];
    for suffix in ["-wal", "-shm", "-journal"] {
        let mut name = path.as_os_str().to_owned();
        name.push(suffix);
        siblings.push(PathBuf::from(name));
    }
    for file in siblings {
        let Ok(metadata) = std::fs::metadata(&file) else { continue };
        let mode = metadata.permissions().mode() & 0o777;
        if mode & 0o077 == 0 {
            continue;
        }
        match std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode & 0o700)) {
            Ok(()) => warn!(
                "--state {}: it was readable by others (mode {mode:04o}) and may hold definitions with inline secrets; \
                 its mode is now {:04o}",
                file.display(),
                mode & 0o700
            ),
            Err(e) => warn!(
                "--state {}: it is readable by others (mode {mode:04o}) and may hold definitions with inline secrets, \
                 and its mode cannot be changed ({e}); run `chmod 600 {}`",
                file.display(),
                file.display()
            ),
        }
    }
    Ok(())
}

#[cfg(not(unix))]
fn owner_only(_: &Path) -> Result<(), String> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn replay_keeps_what_still_exists_and_the_last_enable_or_disable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let log = SqliteLog::open(&path).await.unwrap();
        let created = |text: &str| DefinitionEvent::Created { definition: text.into() };
        for (connector, event) in [
            ("a", created("id: a")),
            ("b", created("id: b")),
            ("file-one", DefinitionEvent::Disabled),
            ("a", DefinitionEvent::Disabled),
            ("b", DefinitionEvent::Deleted),
            ("c", created("id: c")),
            ("a", DefinitionEvent::Reset { to: "start".into() }),
            ("file-two", DefinitionEvent::Disabled),
            ("file-two", DefinitionEvent::Enabled),
            ("c", DefinitionEvent::Disabled),
            ("c", DefinitionEvent::Deleted),
            ("c", created("id: c\n# again")),
        ] {
            log.append(connector, &event, None).await.unwrap();
        }
        drop(log);
        let log = SqliteLog::open(&path).await.unwrap();
        let replayed = log.replay().await.unwrap();
        assert_eq!(replayed.created, vec![("a".to_owned(), "id: a".to_owned()), ("c".to_owned(), "id: c\n# again".to_owned())]);
        assert_eq!(replayed.disabled, vec!["file-one".to_owned(), "a".to_owned()]);
        assert_eq!(replayed.through, 12, "the last event replayed");
        let history = log.history("a").await.unwrap();
        let kinds: Vec<&str> = history.iter().map(|h| h["event"].as_str().unwrap()).collect();
        assert_eq!(kinds, ["created", "disabled", "reset"]);
        assert_eq!(history[0]["definition"], "id: a");
        assert_eq!(history[2]["to"], "start");
        assert!(history.iter().all(|h| h.get("by").is_none()), "appended outside the API: no `by`: {history:?}");
    }

    #[tokio::test]
    async fn history_names_who_changed_and_redacts_the_definitions() {
        let dir = tempfile::tempdir().unwrap();
        let log = SqliteLog::open(&dir.path().join("state.db")).await.unwrap();
        let definition = "id: a\nsink: { postgres: { url: \"postgres://gw:pg-pass-123@db/app\" } }\n";
        let created = DefinitionEvent::Created { definition: definition.into() };
        CHANGED_BY.scope("alice".to_owned(), log.append("a", &created, None)).await.unwrap();
        CHANGED_BY.scope("token".to_owned(), log.append("a", &DefinitionEvent::Disabled, None)).await.unwrap();
        let history = log.history("a").await.unwrap();
        assert_eq!((history[0]["by"].as_str(), history[1]["by"].as_str()), (Some("alice"), Some("token")));
        assert_eq!(history[0]["definition"], "id: a\nsink: { postgres: { url: \"postgres://gw:***@db/app\" } }\n");
        assert_eq!(log.replay().await.unwrap().created[0].1, definition, "the replay keeps the definition whole");
    }

    #[tokio::test]
    async fn an_append_decided_on_an_older_state_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let log = SqliteLog::open(&dir.path().join("state.db")).await.unwrap();
        assert_eq!(log.append("a", &DefinitionEvent::Disabled, Some(0)).await.unwrap(), 1);
        assert_eq!(log.append("a", &DefinitionEvent::Enabled, Some(1)).await.unwrap(), 2);
        let err = log.append("a", &DefinitionEvent::Disabled, Some(1)).await.unwrap_err();
        assert!(matches!(err, StoreError::Behind { after: 1, head: 2, .. }), "{err}");
        let since: Vec<(i64, DefinitionEvent)> = log.since(1).await.unwrap().into_iter().map(|e| (e.seq, e.event)).collect();
        assert_eq!(since, [(2, DefinitionEvent::Enabled)], "nothing was appended");
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn the_file_is_its_owners_only() {
        use std::os::unix::fs::PermissionsExt;

        let dir = tempfile::tempdir().unwrap();
        let mode = |path: &Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
        let path = dir.path().join("new.db");
        let log = SqliteLog::open(&path).await.unwrap();
        log.append("a", &DefinitionEvent::Disabled, None).await.unwrap();
        for suffix in ["", "-wal", "-shm"] {
            let file = PathBuf::from(format!("{}{suffix}", path.display()));
            assert_eq!(mode(&file), 0o600, "{}", file.display());
        }
        drop(log);
        // An existing log readable by others (an older gateway, a copy) is tightened.
        let loose = dir.path().join("loose.db");
        std::fs::write(&loose, b"").unwrap();
        std::fs::set_permissions(&loose, std::fs::Permissions::from_mode(0o644)).unwrap();
        SqliteLog::open(&loose).await.unwrap();
        assert_eq!(mode(&loose), 0o600);
    }

    #[tokio::test]
    async fn a_log_without_the_changed_by_column_gets_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.db");
        Connection::open(&path)
            .unwrap()
            .execute_batch(
                "CREATE TABLE connector_definition_events (seq INTEGER PRIMARY KEY AUTOINCREMENT, connector TEXT NOT NULL, kind TEXT NOT NULL, body TEXT,
                 recorded_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')));
                 INSERT INTO connector_definition_events (connector, kind) VALUES ('a', 'disabled');",
            )
            .unwrap();
        let log = SqliteLog::open(&path).await.unwrap();
        CHANGED_BY.scope("bob".to_owned(), log.append("a", &DefinitionEvent::Enabled, None)).await.unwrap();
        let history = log.history("a").await.unwrap();
        assert_eq!((history[0].get("by"), history[1]["by"].as_str()), (None, Some("bob")));
    }

    #[tokio::test]
    async fn a_log_that_refused_updates_is_copied_into_one_that_takes_them() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.db");
        Connection::open(&path)
            .unwrap()
            .execute_batch(
                "CREATE TABLE connector_definition_events (seq INTEGER PRIMARY KEY AUTOINCREMENT, connector TEXT NOT NULL,
                 kind TEXT NOT NULL CHECK (kind IN ('created', 'deleted', 'enabled', 'disabled', 'reset')), body TEXT,
                 recorded_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')), changed_by TEXT);
                 INSERT INTO connector_definition_events (connector, kind, body) VALUES ('a', 'created', 'id: a'), ('b', 'created', 'id: b');",
            )
            .unwrap();
        let log = SqliteLog::open(&path).await.unwrap();
        log.append("a", &DefinitionEvent::Updated { definition: "id: a\n# v2".into() }, None).await.unwrap();
        let replayed = log.replay().await.unwrap();
        assert_eq!(replayed.created, [("a".to_owned(), "id: a\n# v2".to_owned()), ("b".to_owned(), "id: b".to_owned())]);
        let kinds: Vec<String> = log.history("a").await.unwrap().iter().map(|h| h["event"].as_str().unwrap().to_owned()).collect();
        assert_eq!(kinds, ["created", "updated"]);
        drop(log);
        SqliteLog::open(&path).await.expect("opened again: nothing left to migrate");
    }
}
