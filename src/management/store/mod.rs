//! The definition log of `run --state`: every change an operator makes through the management
//! API (a connector created, updated, deleted, enabled, disabled or reset) is appended and never
//! rewritten, so the set of connectors a (re)started gateway runs is the replay of that log, and
//! the log is also the audit trail of who changed what when.
//!
//! Two homes, one type the supervisor uses ([`DefinitionLog`]):
//!
//! - `sqlite`: a file (`--state FILE`), one gateway's own.
//! - `postgres`: a table in a PostgreSQL database (`--state postgres://...`), shared by every
//!   replica of a scaled-out gateway; each event also names the instance that wrote it, and
//!   each replica follows the log (the supervisor polls [`DefinitionLog::since`]).
//!
//! An append is conditional: it names the last event the gateway has applied (`after`), and
//! is refused ([`StoreError::Behind`]) when the log holds a later one, checked in the same
//! transaction as the insert and serialised with every other append. So a change is only ever
//! recorded on top of the state it was decided on, whichever replica decided it.

#[cfg(feature = "postgres")]
mod postgres;
#[cfg(feature = "sqlite")]
mod sqlite;

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

pub use super::definition::{DefinitionEvent, Logged, Replayed};
use crate::status::registry::redact_secrets;

/// The schema of the shared log's table when the URL names none (`?schema=`).
pub const DEFAULT_SCHEMA: &str = "projector_gateway";

/// The definition log could not be used, or refused an append.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Reading or writing the log failed; `log` names it (the file, or the PostgreSQL server
    /// and table, never a password).
    #[error("definition log {log}: {message}")]
    Failed { log: String, message: String },
    /// Nothing was appended: the log holds changes after the last one this gateway applied
    /// (another replica appended them); the gateway applies them and decides again.
    #[error("definition log {log}: it holds changes after #{after} (up to #{head}) that this gateway has not applied yet; nothing was appended")]
    Behind { log: String, after: i64, head: i64 },
    /// `--state` names a kind of log this build cannot keep.
    #[error("this build has no `{feature}` feature, so it cannot keep the definition log {what}; build it with `--features {feature}`")]
    NotBuilt { feature: &'static str, what: &'static str },
    /// `--state` is a PostgreSQL URL that cannot be used (the message never holds a value
    /// from it).
    #[error("{0}")]
    BadUrl(String),
}

/// Where `--state` keeps the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// An SQLite file, created if missing.
    Sqlite(PathBuf),
    /// A PostgreSQL database (`postgres://` or `postgresql://`), the table in `schema`.
    Postgres { url: String, schema: String },
}

impl Location {
    /// What `--state` says: a `postgres://` / `postgresql://` URL (with an optional
    /// `schema=NAME` parameter, taken out of the URL; default [`DEFAULT_SCHEMA`]), else the
    /// path of an SQLite file.
    pub fn from_state(state: &Path) -> Result<Self, StoreError> {
        let Some(text) = state.to_str().filter(|t| t.starts_with("postgres://") || t.starts_with("postgresql://")) else {
            return Ok(Self::Sqlite(state.to_owned()));
        };
        let Some((base, query)) = text.split_once('?') else {
            return Ok(Self::Postgres { url: text.to_owned(), schema: DEFAULT_SCHEMA.to_owned() });
        };
        let mut schema = None;
        let mut kept = Vec::new();
        for parameter in query.split('&') {
            match parameter.strip_prefix("schema=") {
                Some(_) if schema.is_some() => return Err(StoreError::BadUrl("`schema` is given twice in the PostgreSQL URL".into())),
                Some("") => return Err(StoreError::BadUrl("`schema=` is empty in the PostgreSQL URL; name a schema or leave it out".into())),
                Some(name) => schema = Some(name.to_owned()),
                None => kept.push(parameter),
            }
        }
        let url = if kept.is_empty() { base.to_owned() } else { format!("{base}?{}", kept.join("&")) };
        Ok(Self::Postgres { url, schema: schema.unwrap_or_else(|| DEFAULT_SCHEMA.to_owned()) })
    }
}

/// The append-only log, in one of its homes.
pub enum DefinitionLog {
    #[cfg(feature = "sqlite")]
    Sqlite(sqlite::SqliteLog),
    /// Boxed: its endpoint (TLS settings included) is large, and a log is opened once.
    #[cfg(feature = "postgres")]
    Postgres(Box<postgres::PgLog>),
    /// A build with neither backend has no log (opening one is refused).
    #[cfg(not(any(feature = "sqlite", feature = "postgres")))]
    None(std::convert::Infallible),
}

/// Runs `$body` with `$log` bound to the backend of `$self`.
macro_rules! each {
    ($self:expr, $log:ident => $body:expr) => {
        match $self {
            #[cfg(feature = "sqlite")]
            DefinitionLog::Sqlite($log) => $body,
            #[cfg(feature = "postgres")]
            DefinitionLog::Postgres($log) => $body,
            #[cfg(not(any(feature = "sqlite", feature = "postgres")))]
            DefinitionLog::None(never) => match *never {},
        }
    };
}

// Without a backend the methods only match the uninhabited `None`.
#[cfg_attr(not(any(feature = "sqlite", feature = "postgres")), allow(unused_variables))]
impl DefinitionLog {
    /// Opens (or creates) the log at `location`; `instance` (`--instance-id`) is recorded with
    /// every event a shared log holds.
    pub async fn open(location: &Location, instance: &str) -> Result<Self, StoreError> {
        let _ = instance;
        match location {
            #[cfg(feature = "sqlite")]
            Location::Sqlite(path) => Ok(Self::Sqlite(sqlite::SqliteLog::open(path).await?)),
            #[cfg(not(feature = "sqlite"))]
            Location::Sqlite(_) => Err(StoreError::NotBuilt { feature: "sqlite", what: "in a file" }),
            #[cfg(feature = "postgres")]
            Location::Postgres { url, schema } => Ok(Self::Postgres(Box::new(postgres::PgLog::open(url, schema, instance).await?))),
            #[cfg(not(feature = "postgres"))]
            Location::Postgres { .. } => Err(StoreError::NotBuilt { feature: "postgres", what: "in PostgreSQL" }),
        }
    }

    /// Where the log is, for the operator: the file, or the server (no password) and table.
    pub fn name(&self) -> String {
        each!(self, log => log.name().to_owned())
    }

    /// Whether other gateways may append to it too (so this one follows it).
    pub fn is_shared(&self) -> bool {
        match self {
            #[cfg(feature = "postgres")]
            Self::Postgres(_) => true,
            #[allow(unreachable_patterns)]
            _ => false,
        }
    }

    /// Appends one change, with who made it when the management API says so (see
    /// `CHANGED_BY`), and answers its sequence number; it is committed when this returns.
    /// With `after` (the last event this gateway applied), nothing is appended while the log
    /// holds a later event ([`StoreError::Behind`]).
    pub async fn append(&self, connector: &str, event: &DefinitionEvent, after: Option<i64>) -> Result<i64, StoreError> {
        each!(self, log => log.append(connector, event, after).await)
    }

    /// Replays the whole log.
    pub async fn replay(&self) -> Result<Replayed, StoreError> {
        each!(self, log => log.replay().await)
    }

    /// The events after sequence number `after`, oldest first.
    pub async fn since(&self, after: i64) -> Result<Vec<Logged>, StoreError> {
        each!(self, log => log.since(after).await)
    }

    /// Every change to `connector`, oldest first, as the API shows it: who made it (`by`, when
    /// recorded), which gateway wrote it (`gateway`, in a shared log) and, for a creation or an
    /// update, the definition with its secrets redacted.
    pub async fn history(&self, connector: &str) -> Result<Vec<Value>, StoreError> {
        each!(self, log => log.history(connector).await)
    }
}

/// One history item, the same from every backend.
#[cfg_attr(not(any(feature = "sqlite", feature = "postgres")), allow(dead_code))]
fn history_item(seq: i64, kind: &str, body: Option<String>, recorded_at: String, by: Option<String>, instance: Option<String>) -> Value {
    let mut item = json!({ "seq": seq, "event": kind, "recorded_at": recorded_at });
    if let Some(by) = by {
        item["by"] = json!(by);
    }
    if let Some(instance) = instance {
        item["gateway"] = json!(instance);
    }
    match (kind, body) {
        ("created" | "updated", Some(definition)) => item["definition"] = json!(redact_secrets(&definition)),
        ("reset", Some(to)) => item["to"] = json!(to),
        _ => {}
    }
    item
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_is_a_file_or_a_postgres_url_with_an_optional_schema() {
        let at = |s: &str| Location::from_state(Path::new(s));
        assert_eq!(at("gateway-state.db").unwrap(), Location::Sqlite("gateway-state.db".into()));
        assert_eq!(at("./postgres://x").unwrap(), Location::Sqlite("./postgres://x".into()));
        assert_eq!(
            at("postgres://gw:pw@db:5432/app").unwrap(),
            Location::Postgres { url: "postgres://gw:pw@db:5432/app".into(), schema: DEFAULT_SCHEMA.into() }
        );
        assert_eq!(
            at("postgresql://gw@db/app?sslmode=require&schema=gateways&connect_timeout=5").unwrap(),
            Location::Postgres { url: "postgresql://gw@db/app?sslmode=require&connect_timeout=5".into(), schema: "gateways".into() }
        );
        assert_eq!(at("postgres://gw@db/app?schema=ops").unwrap(), Location::Postgres { url: "postgres://gw@db/app".into(), schema: "ops".into() });
        let err = at("postgres://gw:pw@db/app?schema=").unwrap_err().to_string();
        assert!(err.contains("`schema=` is empty") && !err.contains("pw"), "{err}");
        let err = at("postgres://gw:pw@db/app?schema=a&schema=b").unwrap_err().to_string();
        assert!(err.contains("given twice") && !err.contains("pw"), "{err}");
    }
}
