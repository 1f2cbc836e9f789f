//! The definition log of `run --state FILE`: every change an operator makes through the
//! management API (a connector created, deleted, enabled, disabled or reset) is appended to an
//! SQLite table and never rewritten, so the set of connectors a restarted gateway runs is the
//! replay of that log, and the log is also the audit trail of who changed what when.
//!
//! A created connector is stored as the definition text the operator sent, `${VAR}`s
//! unexpanded, so secrets kept in the environment do not end up in the file.
//!
//! SQLite is called on the blocking pool (`spawn_blocking`), never on a runtime thread: an
//! fsync of the file must not stall the tasks that run connectors.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    sync::Arc,
};

use parking_lot::Mutex;

use rusqlite::{Connection, params};

pub use super::definition::{DefinitionEvent, Replayed};
use serde_json::{Value, json};

/// The definition log could not be read or written.
#[derive(Debug, thiserror::Error)]
#[error("definition log {path}: {message}")]
pub struct StoreError {
    path: String,
    message: String,
}

/// The append-only log, in one SQLite file.
pub struct DefinitionLog {
    path: PathBuf,
    connection: Arc<Mutex<Connection>>,
}

impl DefinitionLog {
    /// Opens (or creates) the log at `path`.
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        let path = path.to_owned();
        let failed = |message: String| StoreError { path: path.display().to_string(), message };
        let opened = tokio::task::spawn_blocking({
            let path = path.clone();
            move || Self::open_blocking(&path)
        });
        opened.await.map_err(|e| failed(e.to_string()))?
    }

    fn open_blocking(path: &Path) -> Result<Self, StoreError> {
        let failed = |e: rusqlite::Error| StoreError { path: path.display().to_string(), message: e.to_string() };
        let connection = Connection::open(path).map_err(failed)?;
        connection
            .execute_batch(
                "PRAGMA journal_mode = WAL;
                 CREATE TABLE IF NOT EXISTS connector_definition_events (
                     seq INTEGER PRIMARY KEY AUTOINCREMENT,
                     connector TEXT NOT NULL,
                     kind TEXT NOT NULL CHECK (kind IN ('created', 'deleted', 'enabled', 'disabled', 'reset')),
                     body TEXT,
                     recorded_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
                 );",
            )
            .map_err(failed)?;
        Ok(Self { path: path.to_owned(), connection: Arc::new(Mutex::new(connection)) })
    }

    /// Runs `f` on the connection on the blocking pool.
    async fn with<T: Send + 'static>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static) -> Result<T, StoreError> {
        let connection = self.connection.clone();
        let failed = |message: String| StoreError { path: self.path.display().to_string(), message };
        match tokio::task::spawn_blocking(move || f(&connection.lock())).await {
            Ok(result) => result.map_err(|e| failed(e.to_string())),
            Err(e) => Err(failed(e.to_string())),
        }
    }

    /// Appends one change (durably: it is committed when this returns).
    pub async fn append(&self, connector: &str, event: &DefinitionEvent) -> Result<(), StoreError> {
        let (connector, kind, body) = (connector.to_owned(), event.kind(), event.body().map(str::to_owned));
        self.with(move |connection| {
            connection
                .execute(
                    "INSERT INTO connector_definition_events (connector, kind, body) VALUES (?1, ?2, ?3)",
                    params![connector, kind, body],
                )
                .map(drop)
        })
        .await
    }

    /// Replays the whole log.
    pub async fn replay(&self) -> Result<Replayed, StoreError> {
        let rows = self.with(|connection| {
            let mut statement = connection.prepare("SELECT connector, kind, body FROM connector_definition_events ORDER BY seq")?;
            let rows = statement
                .query_map([], |row| Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?, row.get::<_, Option<String>>(2)?)))?;
            rows.collect::<rusqlite::Result<Vec<_>>>()
        });
        let rows = rows.await?;
        let mut created: Vec<(String, String)> = Vec::new();
        let mut disabled: HashMap<String, bool> = HashMap::new();
        let mut order: Vec<String> = Vec::new();
        for (connector, kind, body) in rows {
            match kind.as_str() {
                "created" => {
                    created.retain(|(id, _)| *id != connector);
                    created.push((connector.clone(), body.unwrap_or_default()));
                    disabled.remove(&connector);
                }
                "deleted" => {
                    created.retain(|(id, _)| *id != connector);
                    disabled.remove(&connector);
                }
                "enabled" | "disabled" => {
                    if !order.contains(&connector) {
                        order.push(connector.clone());
                    }
                    disabled.insert(connector, kind == "disabled");
                }
                _ => {}
            }
        }
        let disabled = order.into_iter().filter(|id| disabled.get(id).copied().unwrap_or(false)).collect();
        Ok(Replayed { created, disabled })
    }

    /// Every change to `connector`, oldest first, as the API shows it.
    pub async fn history(&self, connector: &str) -> Result<Vec<Value>, StoreError> {
        let connector = connector.to_owned();
        self.with(move |connection| {
            let mut statement = connection
                .prepare("SELECT seq, kind, body, recorded_at FROM connector_definition_events WHERE connector = ?1 ORDER BY seq")?;
            let rows = statement.query_map([connector], |row| {
                let (seq, kind, body, at): (i64, String, Option<String>, String) = (row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?);
                let mut item = json!({ "seq": seq, "event": kind, "recorded_at": at });
                match (kind.as_str(), body) {
                    ("created", Some(definition)) => item["definition"] = json!(definition),
                    ("reset", Some(to)) => item["to"] = json!(to),
                    _ => {}
                }
                Ok(item)
            })?;
            rows.collect::<rusqlite::Result<Vec<_>>>()
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn replay_keeps_what_still_exists_and_the_last_enable_or_disable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let log = DefinitionLog::open(&path).await.unwrap();
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
            log.append(connector, &event).await.unwrap();
        }
        drop(log);
        let log = DefinitionLog::open(&path).await.unwrap();
        let replayed = log.replay().await.unwrap();
        assert_eq!(replayed.created, vec![("a".to_owned(), "id: a".to_owned()), ("c".to_owned(), "id: c\n# again".to_owned())]);
        assert_eq!(replayed.disabled, vec!["file-one".to_owned(), "a".to_owned()]);
        let history = log.history("a").await.unwrap();
        let kinds: Vec<&str> = history.iter().map(|h| h["event"].as_str().unwrap()).collect();
        assert_eq!(kinds, ["created", "disabled", "reset"]);
        assert_eq!(history[0]["definition"], "id: a");
        assert_eq!(history[2]["to"], "start");
    }
}
