//! Talking to PostgreSQL, for both the PostgreSQL source and the PostgreSQL sink: parsing the
//! configured URL once, naming the server in messages without its password, connecting (the
//! connection's I/O runs on its own task), quoting identifiers, and deciding which errors are
//! worth retrying. Kept in one place so the source and the sink say the same thing about the
//! same failure. Every connection (source, sink, lease) is made here, with the TLS of `tls.rs`.

mod tls;

use std::{fmt::Write as _, time::Duration};

use tokio_postgres::{Client, Config, config::Host, error::SqlState};
use tracing::debug;

pub use tls::{SslMode, TlsError};
use tls::PgTls;

/// How long to wait for a server to accept a connection when the URL does not say.
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a PostgreSQL connection string cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum UrlError {
    /// tokio-postgres cannot read it; its words name the option or the position, never a value.
    #[error("invalid PostgreSQL URL: {}; expected e.g. `postgres://user:password@host:5432/db`", with_cause(.0))]
    Invalid(tokio_postgres::Error),
    #[error(transparent)]
    Tls(#[from] TlsError),
}

/// The error and the cause tokio-postgres keeps as its `source`, on one line.
fn with_cause(error: &tokio_postgres::Error) -> String {
    match std::error::Error::source(error) {
        Some(cause) => format!("{error}: {cause}"),
        None => error.to_string(),
    }
}

/// A PostgreSQL server and database, parsed from the configured URL.
#[derive(Debug, Clone)]
pub struct PgEndpoint {
    config: Config,
    tls: PgTls,
    display: String,
}

impl PgEndpoint {
    /// Parses a libpq-style URL (`postgres://user:password@host:port/db?sslmode=verify-full`) or
    /// key/value string (`host=h dbname=db sslmode=require`), and reads the certificate and key
    /// files its TLS parameters name (`sslrootcert`, `sslcert`, `sslkey`; see `tls.rs`), so a
    /// missing or unreadable file is an error here, not at the first connection.
    pub fn parse(url: &str) -> Result<Self, UrlError> {
        let (rest, tls) = tls::split(url)?;
        let mut config: Config = rest.parse().map_err(UrlError::Invalid)?;
        let tls = PgTls::new(&tls)?;
        // Like libpq, no TLS over Unix-domain sockets (the server offers none there).
        let unix_only = !config.get_hosts().is_empty()
            && config.get_hostaddrs().is_empty()
            && config.get_hosts().iter().all(|h| !matches!(h, Host::Tcp(_)));
        config.ssl_mode(if unix_only { tokio_postgres::config::SslMode::Disable } else { tls.driver_mode() });
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(DEFAULT_CONNECT_TIMEOUT);
        }
        if config.get_application_name().is_none() {
            config.application_name("projector-gateway");
        }
        let mut display = redacted(&config);
        if tls.mode() != SslMode::DEFAULT {
            let _ = write!(display, "?sslmode={}", tls.mode());
        }
        Ok(Self { config, tls, display })
    }

    /// The server and database as `postgres://user@host:port/db`, with `?sslmode=...` when it
    /// is not libpq's default (`prefer`); never with the password or what the key file holds.
    pub fn display(&self) -> &str {
        &self.display
    }

    /// How the connections are secured.
    pub fn ssl_mode(&self) -> SslMode {
        self.tls.mode()
    }

    /// Opens a connection, with TLS as `sslmode` says. Its I/O runs on a spawned task that
    /// ends by itself once the returned client is dropped or the server goes away.
    pub async fn connect(&self) -> Result<Client, tokio_postgres::Error> {
        let (client, connection) = self.config.connect(self.tls.connector()).await?;
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
    let mut text = with_cause(error);
    if let Some(rustls::Error::InvalidCertificate(reason)) = tls_error(error) {
        use rustls::CertificateError as Why;
        match reason {
            Why::UnknownIssuer => text.push_str(" (the server's certificate was not issued by a certificate of `sslrootcert`)"),
            Why::NotValidForName | Why::NotValidForNameContext { .. } => {
                text.push_str(" (`sslmode=verify-full` checks the host name: connect by a name the certificate holds, or use `verify-ca`)")
            }
            _ => {}
        }
    }
    text
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
    if tls_refusal(error) {
        return false;
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

/// True when the TLS handshake failed over a certificate (the server's was not accepted, or the
/// server did not accept ours): the connection was refused, not lost, and retrying changes
/// nothing until someone changes a certificate or the URL.
fn tls_refusal(error: &tokio_postgres::Error) -> bool {
    use rustls::{AlertDescription as Alert, Error as Tls};
    matches!(
        tls_error(error),
        Some(
            Tls::InvalidCertificate(_)
                | Tls::NoCertificatesPresented
                | Tls::AlertReceived(
                    Alert::BadCertificate
                        | Alert::UnsupportedCertificate
                        | Alert::CertificateRevoked
                        | Alert::CertificateExpired
                        | Alert::CertificateUnknown
                        | Alert::UnknownCA
                        | Alert::AccessDenied
                        | Alert::CertificateRequired
                )
        )
    )
}

/// The rustls error behind a failed TLS handshake, if that is what the error is.
fn tls_error(error: &tokio_postgres::Error) -> Option<&rustls::Error> {
    let mut cause = std::error::Error::source(error);
    while let Some(e) = cause {
        let tls = e.downcast_ref::<rustls::Error>().or_else(|| {
            // tokio-rustls wraps the rustls error in an `io::Error`, whose `source()` skips it.
            e.downcast_ref::<std::io::Error>().and_then(|io| io.get_ref()).and_then(|inner| inner.downcast_ref::<rustls::Error>())
        });
        if tls.is_some() {
            return tls;
        }
        cause = e.source();
    }
    None
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
        let err = PgEndpoint::parse("postgres://u:p@h:notaport/db").unwrap_err().to_string();
        assert!(err.starts_with("invalid PostgreSQL URL"), "{err}");
    }

    #[test]
    fn the_display_form_says_how_the_connection_is_secured_and_nothing_secret() {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        std::fs::write(&ca, params.self_signed(&rcgen::KeyPair::generate().unwrap()).unwrap().pem()).unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["gateway".to_string()]).unwrap().self_signed(&key).unwrap();
        let (cert_file, key_file) = (dir.path().join("client.crt"), dir.path().join("client.key"));
        std::fs::write(&cert_file, cert.pem()).unwrap();
        std::fs::write(&key_file, key.serialize_pem()).unwrap();
        let url = format!(
            "postgres://gw:s3cret@db.example:5432/app?sslmode=verify-full&sslrootcert={}&sslcert={}&sslkey={}&application_name=x",
            ca.display(),
            cert_file.display(),
            key_file.display()
        );
        let endpoint = PgEndpoint::parse(&url).unwrap();
        assert_eq!(endpoint.display(), "postgres://gw@db.example:5432/app?sslmode=verify-full");
        assert_eq!(endpoint.ssl_mode(), SslMode::VerifyFull);
        assert_eq!(endpoint.config.get_ssl_mode(), tokio_postgres::config::SslMode::Require);
        assert_eq!(endpoint.config.get_application_name(), Some("x"));
        let debug = format!("{endpoint:?}");
        assert!(!debug.contains("PRIVATE KEY"), "{debug}");

        // The default (`prefer`) is not shown; the key/value form reads the same parameters.
        let endpoint = PgEndpoint::parse("postgres://gw@127.0.0.1/app").unwrap();
        assert_eq!((endpoint.display(), endpoint.ssl_mode()), ("postgres://gw@127.0.0.1:5432/app", SslMode::Prefer));
        assert_eq!(endpoint.config.get_ssl_mode(), tokio_postgres::config::SslMode::Prefer);
        let endpoint = PgEndpoint::parse(&format!("host=db user=gw dbname=app sslmode=verify-ca sslrootcert='{}'", ca.display())).unwrap();
        assert_eq!(endpoint.display(), "postgres://gw@db/app?sslmode=verify-ca");
        for (mode, driver) in [
            ("disable", tokio_postgres::config::SslMode::Disable),
            ("allow", tokio_postgres::config::SslMode::Prefer),
            ("require", tokio_postgres::config::SslMode::Require),
        ] {
            let endpoint = PgEndpoint::parse(&format!("host=db user=gw sslmode={mode}")).unwrap();
            assert_eq!(endpoint.display(), format!("postgres://gw@db?sslmode={mode}"));
            assert_eq!(endpoint.config.get_ssl_mode(), driver);
        }
        // No TLS over a Unix-domain socket, whatever the mode (as libpq).
        let endpoint = PgEndpoint::parse("host=/run/postgresql user=gw sslmode=require").unwrap();
        assert_eq!(endpoint.config.get_ssl_mode(), tokio_postgres::config::SslMode::Disable);
    }

    #[test]
    fn tls_mistakes_are_one_line_errors_at_parse_time() {
        let err = PgEndpoint::parse("postgres://gw@h/db?sslmode=verify-everything").unwrap_err().to_string();
        assert_eq!(err, "sslmode `verify-everything` is not one of disable, allow, prefer, require, verify-ca, verify-full");
        let err = PgEndpoint::parse("host=h sslmode=verify-full sslrootcert=/no/such/ca.pem").unwrap_err().to_string();
        assert!(err.starts_with("sslrootcert `/no/such/ca.pem`: cannot read it: "), "{err}");
        let err = PgEndpoint::parse("postgres://gw@h/db?sslmode=require&sslcert=/no/such.crt&sslkey=/no/such.key").unwrap_err().to_string();
        assert!(err.starts_with("sslcert `/no/such.crt`: cannot read it: "), "{err}");
        // Other `ssl*` parameters stay tokio-postgres's to refuse.
        let err = PgEndpoint::parse("postgres://gw@h/db?sslcrl=x").unwrap_err().to_string();
        assert!(err.starts_with("invalid PostgreSQL URL: invalid connection string: unknown option `sslcrl`; "), "{err}");
    }

    #[test]
    fn validation_reports_tls_problems_at_the_url_key() {
        let yaml = |source: &str, sink: &str| {
            format!(
                "connectors:\n  - id: c\n    source: {{ {source} }}\n    sidecar: {{ address: \"http://127.0.0.1:50051\" }}\n    sink: {{ {sink} }}\n"
            )
        };
        let problems = |text: String| -> Vec<String> {
            crate::config::parse(&text).unwrap_err().iter().map(ToString::to_string).collect()
        };
        let found = problems(yaml(
            "sqlite: { path: events.db }",
            "postgres: { url: \"postgres://gw@h/db?sslmode=verify-full&sslrootcert=/no/such/ca.pem\" }",
        ));
        assert!(
            found.iter().any(|p| p.starts_with("connectors[0].sink.postgres.url: sslrootcert `/no/such/ca.pem`: cannot read it: ")),
            "{found:#?}"
        );
        let found = problems(yaml(
            "postgres: { url: \"host=h sslmode=verify-everything\" }",
            "sqlite: { path: read.db }",
        ));
        assert!(
            found.iter().any(|p| p.starts_with("connectors[0].source.postgres.url: sslmode `verify-everything` is not one of")),
            "{found:#?}"
        );
    }

    #[test]
    fn identifiers_are_quoted() {
        assert_eq!(quote_ident("eventuous"), "\"eventuous\"");
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
    }
}
