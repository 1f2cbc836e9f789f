//! Reaching SQL Server: the ADO.NET connection string as SQL Server and Azure SQL users write
//! it, a password-free name of the target for messages, connecting (following Azure SQL's
//! gateway redirection), and which server errors are worth retrying.

use tiberius::{Client, Config, error::Error};
use tokio::net::TcpStream;
use tokio_util::compat::{Compat, TokioAsyncWriteCompatExt};

pub type MssqlClient = Client<Compat<TcpStream>>;

/// How long opening a connection (TCP, TLS, login) may take.
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Server error numbers after which the same batch may succeed later: deadlock victim, lock
/// timeout, Azure SQL throttling and reconfiguration (failover, scaling, a serverless database
/// resuming), and transport failures the server reports as errors.
pub const TRANSIENT_ERRORS: &[u32] = &[
    1205,  // chosen as deadlock victim
    1222,  // lock request time out
    4060,  // cannot open database (Azure: during failover)
    4221,  // login to a read-only secondary timed out
    10053, 10054, 10060, 233, 64, // transport-level errors
    10928, 10929, // Azure: resource limits
    18401, // login failed: server in script upgrade mode
    40143, 40197, 40501, 40540, 40613, // Azure: service busy, error processing, unavailable
    42108, 42109, // Azure serverless: database paused, resuming
    49918, 49919, 49920, // Azure: too many operations in progress
];

/// A parsed connection string and the target's name for messages.
#[derive(Clone)]
pub struct Endpoint {
    config: Config,
    display: String,
}

/// A connection string tiberius cannot read.
#[derive(Debug, thiserror::Error)]
#[error("not an ADO.NET connection string ({0}); expected e.g. `Server=tcp:host,1433;Database=app;User Id=gw;Password=...;Encrypt=true`")]
pub struct ConnectionStringError(Error);

/// Checks an ADO.NET connection string; the message says what is wrong.
pub fn parse_connection_string(s: &str) -> Result<(), ConnectionStringError> {
    Endpoint::parse(s).map(drop)
}

impl Endpoint {
    pub fn parse(s: &str) -> Result<Self, ConnectionStringError> {
        let config = Config::from_ado_string(s).map_err(ConnectionStringError)?;
        let database = ado_value(s, &["database", "initial catalog"]).unwrap_or_else(|| "(default database)".into());
        let display = format!("mssql://{}/{database}", config.get_addr());
        Ok(Self { config, display })
    }

    /// `mssql://host:port/database`, never the password.
    pub fn display(&self) -> &str {
        &self.display
    }

    pub async fn connect(&self) -> Result<MssqlClient, Error> {
        match tokio::time::timeout(CONNECT_TIMEOUT, self.connect_once(self.config.clone())).await {
            Ok(result) => result,
            Err(_) => Err(Error::Io {
                kind: std::io::ErrorKind::TimedOut,
                message: format!("no answer within {}s", CONNECT_TIMEOUT.as_secs()),
            }),
        }
    }

    async fn connect_once(&self, mut config: Config) -> Result<MssqlClient, Error> {
        let tcp = TcpStream::connect(config.get_addr()).await?;
        tcp.set_nodelay(true)?;
        match Client::connect(config.clone(), tcp.compat_write()).await {
            // Azure SQL's gateway may redirect the session to the node holding the database.
            Err(Error::Routing { host, port }) => {
                config.host(&host);
                config.port(port);
                let tcp = TcpStream::connect(config.get_addr()).await?;
                tcp.set_nodelay(true)?;
                Client::connect(config, tcp.compat_write()).await
            }
            other => other,
        }
    }
}

/// The value of the first of `keys` in an ADO.NET string (for display only).
fn ado_value(s: &str, keys: &[&str]) -> Option<String> {
    s.split(';').find_map(|pair| {
        let (key, value) = pair.split_once('=')?;
        keys.contains(&key.trim().to_ascii_lowercase().as_str()).then(|| value.trim().to_string())
    })
}

/// Retrying the same work later may succeed.
pub fn is_transient(e: &Error) -> bool {
    match e {
        Error::Io { .. } | Error::Routing { .. } => true,
        // A protocol error leaves the connection out of step; a new one may work.
        Error::Protocol(_) => true,
        Error::Server(token) => TRANSIENT_ERRORS.contains(&token.code()),
        _ => false,
    }
}

/// The connection cannot be used any more.
pub fn is_connection_lost(e: &Error) -> bool {
    matches!(e, Error::Io { .. } | Error::Protocol(_))
}

/// One line: the server's error number, state, class and line, then its message.
pub fn describe(e: &Error) -> String {
    match e {
        Error::Server(t) => {
            let procedure =
                if t.procedure().is_empty() { String::new() } else { format!(", procedure {}", t.procedure()) };
            format!(
                "SQL Server error {} (state {}, class {}, line {}{procedure}): {}",
                t.code(),
                t.state(),
                t.class(),
                t.line(),
                t.message()
            )
        }
        other => other.to_string(),
    }
}

/// `[name]`, with `]` doubled.
pub fn quote_ident(name: &str) -> String {
    format!("[{}]", name.replace(']', "]]"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_ado_net_strings_as_sql_server_users_write_them() {
        let e = Endpoint::parse(
            "Server=tcp:db.example.net,14330;Database=reads;User Id=gw;Password=s3cret;Encrypt=true;TrustServerCertificate=false",
        )
        .unwrap();
        assert_eq!(e.display(), "mssql://db.example.net:14330/reads");
        assert!(!e.display().contains("s3cret"));
        // Azure SQL's form, with `Initial Catalog` and the default port.
        let azure = Endpoint::parse(
            "Server=tcp:myserver.database.windows.net;Initial Catalog=app;Persist Security Info=False;User ID=gw;Password=x;Encrypt=True;Connection Timeout=30",
        )
        .unwrap();
        assert_eq!(azure.display(), "mssql://myserver.database.windows.net:1433/app");
        assert!(
            parse_connection_string("Server=tcp:h,1433;TrustServerCertificate=maybe").unwrap_err().to_string().contains("not an ADO.NET connection string")
        );
    }

    #[test]
    fn transient_errors_are_the_retryable_ones() {
        for code in [1205, 40501, 40613, 49918, 49919, 49920, 4060] {
            assert!(TRANSIENT_ERRORS.contains(&code), "{code}");
        }
        assert!(is_transient(&Error::Io { kind: std::io::ErrorKind::ConnectionReset, message: "reset".into() }));
        assert!(!is_transient(&Error::Conversion("x".into())));
        assert_eq!(quote_ident("a]b"), "[a]]b]");
    }
}
