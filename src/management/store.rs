//! The definition log of `run --state FILE`: every change an operator makes through the
//! management API (a connector created, deleted, enabled, disabled or reset) is appended to an
//! SQLite table and never rewritten, so the set of connectors a restarted gateway runs is the
//! replay of that log, and the log is also the audit trail of who changed what when.
//!
//! A created connector is stored as the definition text the operator sent, `${VAR}`s
//! unexpanded, so secrets kept in the environment do not end up in the file.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    sync::Mutex,
};

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
    connection: Mutex<Connection>,
}

impl DefinitionLog {
    /// Opens (or creates) the log at `path`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
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
        Ok(Self { path: path.to_owned(), connection: Mutex::new(connection) })
    }

    fn failed(&self, e: rusqlite::Error) -> StoreError {
        StoreError { path: self.path.display().to_string(), message: e.to_string() }
    }

    /// Appends one change (durably: it is committed when this returns).
    pub fn append(&self, connector: &str, event: &DefinitionEvent) -> Result<(), StoreError> {
        let connection = self.connection.lock().expect("definition log");
        connection
            .execute(
                "INSERT INTO connector_definition_events (connector, kind, body) VALUES (?1, ?2, ?3)",
                params![connector, event.kind(), event.body()],
            )
            .map(drop)
            .map_err(|e| self.failed(e))
    }

    /// Replays the whole log.
    pub fn replay(&self) -> Result<Replayed, StoreError> {
        let connection = self.connection.lock().expect("definition log");
        let mut statement = connection
            .prepare("SELECT connector, kind, body FROM connector_definition_events ORDER BY seq")
            .map_err(|e| self.failed(e))?;
        let rows = statement
            .query_map([], |row| Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?, row.get::<_, Option<String>>(2)?)))
            .map_err(|e| self.failed(e))?;
        let mut created: Vec<(String, String)> = Vec::new();
        let mut disabled: HashMap<String, bool> = HashMap::new();
        let mut order: Vec<String> = Vec::new();
        for row in rows {
            let (connector, kind, body) = row.map_err(|e| self.failed(e))?;
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
    pub fn history(&self, connector: &str) -> Result<Vec<Value>, StoreError> {
        let connection = self.connection.lock().expect("definition log");
        let mut statement = connection
            .prepare("SELECT seq, kind, body, recorded_at FROM connector_definition_events WHERE connector = ?1 ORDER BY seq")
            .map_err(|e| self.failed(e))?;
        let rows = statement
            .query_map([connector], |row| {
                let (seq, kind, body, at): (i64, String, Option<String>, String) = (row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?);
                let mut item = json!({ "seq": seq, "event": kind, "recorded_at": at });
                match (kind.as_str(), body) {
                    ("created", Some(definition)) => item["definition"] = json!(definition),
                    ("reset", Some(to)) => item["to"] = json!(to),
                    _ => {}
                }
                Ok(item)
            })
            .map_err(|e| self.failed(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.failed(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replay_keeps_what_still_exists_and_the_last_enable_or_disable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let log = DefinitionLog::open(&path).unwrap();
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
            log.append(connector, &event).unwrap();
        }
        drop(log);
        let log = DefinitionLog::open(&path).unwrap();
        let replayed = log.replay().unwrap();
        assert_eq!(replayed.created, vec![("a".to_owned(), "id: a".to_owned()), ("c".to_owned(), "id: c\n# again".to_owned())]);
        assert_eq!(replayed.disabled, vec!["file-one".to_owned(), "a".to_owned()]);
        let history = log.history("a").unwrap();
        let kinds: Vec<&str> = history.iter().map(|h| h["event"].as_str().unwrap()).collect();
        assert_eq!(kinds, ["created", "disabled", "reset"]);
        assert_eq!(history[0]["definition"], "id: a");
        assert_eq!(history[2]["to"], "start");
    }
}
