//! Talking to PostgreSQL, for both the PostgreSQL source and the PostgreSQL sink: parsing the
//! configured URL once, naming the server in messages without its password, connecting (the
//! connection's I/O runs on its own task), quoting identifiers, and deciding which errors are
//! worth retrying. Kept in one place so the source and the sink say the same thing about the
//! same failure.

use std::{fmt::Write as _, time::Duration};

use tokio_postgres::{Client, Config, NoTls, config::Host, error::SqlState};
use tracing::debug;

/// How long to wait for a server to accept a connection when the URL does not say.
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A PostgreSQL server and database, parsed from the configured URL.
#[derive(Debug, Clone)]
pub struct PgEndpoint {
    config: Config,
    display: String,
}

impl PgEndpoint {
    /// Parses a libpq-style URL (`postgres://user:password@host:port/db`) or key/value string.
    pub fn parse(url: &str) -> Result<Self, String> {
        let mut config: Config = url
            .parse()
            .map_err(|e| format!("invalid PostgreSQL URL: {e}; expected e.g. `postgres://user:password@host:5432/db`"))?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(DEFAULT_CONNECT_TIMEOUT);
        }
        if config.get_application_name().is_none() {
            config.application_name("projector-gateway");
        }
        let display = redacted(&config);
        Ok(Self { config, display })
    }

    /// The server and database as `postgres://user@host:port/db`, never with the password.
    pub fn display(&self) -> &str {
        &self.display
    }

    /// Opens a connection (no TLS). Its I/O runs on a spawned task that ends by itself once
    /// the returned client is dropped or the server goes away.
    pub async fn connect(&self) -> Result<Client, tokio_postgres::Error> {
        let (client, connection) = self.config.connect(NoTls).await?;
        let server = self.display.clone();
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                debug!("PostgreSQL connection to {server} ended: {}", describe(&e));
            }
        });
        Ok(client)
    }
}

fn redacted(config: &Config) -> String {
    let mut out = String::from("postgres://");
    if let Some(user) = config.get_user() {
        let _ = write!(out, "{user}@");
    }
    let ports = config.get_ports();
    for (i, host) in config.get_hosts().iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        match host {
            Host::Tcp(name) => out.push_str(name),
            #[cfg(unix)]
            Host::Unix(path) => out.push_str(&path.display().to_string()),
        }
        if let Some(port) = ports.get(i).or(ports.first()) {
            let _ = write!(out, ":{port}");
        }
    }
    if config.get_hosts().is_empty() {
        out.push_str("localhost");
    }
    if let Some(db) = config.get_dbname() {
        let _ = write!(out, "/{db}");
    }
    out
}

/// The error as one line: the server's own message with its SQLSTATE, detail and hint, or
/// the client's description of a connection problem.
pub fn describe(error: &tokio_postgres::Error) -> String {
    if let Some(db) = error.as_db_error() {
        let mut text = format!("{} (SQLSTATE {})", db.message(), db.code().code());
        if let Some(detail) = db.detail() {
            let _ = write!(text, "; {detail}");
        }
        if let Some(hint) = db.hint() {
            let _ = write!(text, "; hint: {hint}");
        }
        return text;
    }
    match std::error::Error::source(error) {
        Some(cause) => format!("{error}: {cause}"),
        None => error.to_string(),
    }
}

/// True when the same work may succeed later: the connection was lost or could not be made,
/// a serialization failure or deadlock, the server shutting down or out of resources.
pub fn is_transient(error: &tokio_postgres::Error) -> bool {
    if is_connection_lost(error) {
        return true;
    }
    match error.code() {
        Some(code) => {
            let code = code.code();
            code.starts_with("08")
                || code.starts_with("53")
                || [&SqlState::T_R_SERIALIZATION_FAILURE, &SqlState::T_R_DEADLOCK_DETECTED]
                    .iter()
                    .any(|s| s.code() == code)
                || [&SqlState::ADMIN_SHUTDOWN, &SqlState::CRASH_SHUTDOWN, &SqlState::CANNOT_CONNECT_NOW]
                    .iter()
                    .any(|s| s.code() == code)
        }
        None => false,
    }
}

/// True when the error means the connection is gone (closed, I/O failure, or the server
/// terminated the session): the client must be replaced.
pub fn is_connection_lost(error: &tokio_postgres::Error) -> bool {
    if error.is_closed() {
        return true;
    }
    if let Some(code) = error.code() {
        return code.code().starts_with("08")
            || *code == SqlState::ADMIN_SHUTDOWN
            || *code == SqlState::CRASH_SHUTDOWN;
    }
    let mut cause = std::error::Error::source(error);
    while let Some(e) = cause {
        if e.is::<std::io::Error>() {
            return true;
        }
        cause = e.source();
    }
    false
}

/// `name` as a quoted SQL identifier (`"my ""odd"" schema"`).
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_display_form_never_shows_the_password() {
        let endpoint = PgEndpoint::parse("postgres://gateway:s3cret@127.0.0.1:54329/gateway").unwrap();
        assert_eq!(endpoint.display(), "postgres://gateway@127.0.0.1:54329/gateway");
        let endpoint = PgEndpoint::parse("host=db port=5433 user=u password=s3cret dbname=app").unwrap();
        assert_eq!(endpoint.display(), "postgres://u@db:5433/app");
        let err = PgEndpoint::parse("postgres://u:p@h:notaport/db").unwrap_err();
        assert!(err.starts_with("invalid PostgreSQL URL"), "{err}");
    }

    #[test]
    fn identifiers_are_quoted() {
        assert_eq!(quote_ident("eventuous"), "\"eventuous\"");
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
    }
}
