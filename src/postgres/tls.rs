//! TLS for every PostgreSQL connection, configured in the connection string the way libpq
//! spells it (`sslmode`, `sslrootcert`, `sslcert`, `sslkey`).
//!
//! It exists because tokio-postgres does no certificate handling of its own: it takes a TLS
//! connector, and its connection-string parser knows only `sslmode` disable/prefer/require and
//! rejects every other `ssl*` parameter. So the TLS parameters are taken out of the string here
//! before tokio-postgres reads the rest, their files are read and checked once, when the URL is
//! parsed (so `validate` reports a missing or unreadable certificate with its key path), and one
//! rustls client configuration is built for every connection of the endpoint. Its crypto
//! provider is ring, given explicitly: nothing depends on a process-wide default provider.
//!
//! | `sslmode` | TLS | server certificate |
//! | --- | --- | --- |
//! | `disable` | never | - |
//! | `allow`, `prefer` (default) | if the server offers it, else plain | not checked (chain checked if `sslrootcert` is set) |
//! | `require` | always | not checked (chain checked if `sslrootcert` is set, as libpq does) |
//! | `verify-ca` | always | chain checked against the root certificate(s); host name not checked |
//! | `verify-full` | always | chain and host name checked |
//!
//! The handshake signatures are verified in every mode, so a server still has to hold the
//! private key of the certificate it presents.

use std::{fmt, path::PathBuf, sync::Arc};

use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
    client::{
        WebPkiServerVerifier,
        danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
    },
    crypto::{CryptoProvider, ring, verify_tls12_signature, verify_tls13_signature},
    pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime, pem::PemObject},
};
use tokio_postgres_rustls::MakeRustlsConnect;

/// The connection-string parameters this module takes out of the string.
const KEYS: [&str; 4] = ["sslmode", "sslrootcert", "sslcert", "sslkey"];

/// Where libpq looks for the root certificates of `verify-ca`/`verify-full` when `sslrootcert`
/// is not set.
const DEFAULT_ROOT_CERT: &str = "~/.postgresql/root.crt";

/// libpq's `sslmode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    Disable,
    Allow,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    const ALL: [SslMode; 6] =
        [SslMode::Disable, SslMode::Allow, SslMode::Prefer, SslMode::Require, SslMode::VerifyCa, SslMode::VerifyFull];

    /// The mode when the connection string names none (libpq's default).
    pub const DEFAULT: SslMode = SslMode::Prefer;

    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Allow => "allow",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }

    fn parse(value: &str) -> Result<Self, TlsError> {
        Self::ALL.into_iter().find(|m| m.as_str() == value).ok_or_else(|| TlsError::UnknownMode(value.to_owned()))
    }

    /// The mode tokio-postgres negotiates with; certificate checks are the connector's.
    fn driver(self) -> tokio_postgres::config::SslMode {
        use tokio_postgres::config::SslMode as Driver;
        match self {
            SslMode::Disable => Driver::Disable,
            SslMode::Allow | SslMode::Prefer => Driver::Prefer,
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => Driver::Require,
        }
    }
}

impl fmt::Display for SslMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why the TLS parameters of a connection string cannot be used. Each message names the
/// parameter (and the file) at fault and what to do; the cause (an I/O, PEM or rustls error)
/// is part of the message, not a `source`, so it is printed once.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("sslmode `{0}` is not one of {names}", names = SslMode::ALL.map(SslMode::as_str).join(", "))]
    UnknownMode(String),
    #[error("`{0}` is not UTF-8 once percent-decoded")]
    NotUtf8(String),
    #[error("sslmode `{0}` may not be used with sslrootcert=system (the Mozilla roots): use sslmode=verify-full, as libpq requires")]
    SystemRootsNeedVerifyFull(SslMode),
    #[error(
        "sslmode `{0}` needs the certificate(s) to verify the server with: set `sslrootcert=<file>` (PEM) or `sslrootcert=system` (there is no {root})",
        root = DEFAULT_ROOT_CERT
    )]
    NoRootCert(SslMode),
    /// `key` names the parameter: `sslrootcert`, `sslcert` or `sslkey`.
    #[error("{key} `{path}`: cannot read it: {reason}")]
    Unreadable { key: &'static str, path: String, reason: std::io::Error },
    #[error("{key} `{path}`: not a PEM file: {reason}")]
    NotPem { key: &'static str, path: String, reason: rustls::pki_types::pem::Error },
    #[error("{key} `{path}`: no certificate in it (expected PEM `-----BEGIN CERTIFICATE-----` blocks)")]
    NoCertificate { key: &'static str, path: String },
    #[error("sslrootcert `{path}`: certificate {number} cannot be a root certificate: {reason}")]
    NotARoot { path: String, number: usize, reason: rustls::Error },
    #[error("sslrootcert: {0}")]
    Roots(rustls::client::VerifierBuilderError),
    #[error(
        "sslkey `{0}`: no private key in it (expected an unencrypted PEM key: PKCS#8 `BEGIN PRIVATE KEY`, PKCS#1 `BEGIN RSA PRIVATE KEY` or SEC1 `BEGIN EC PRIVATE KEY`)"
    )]
    NoKey(String),
    #[error("sslcert `{cert}` with sslkey `{key}`: {reason}")]
    CertificateAndKey { cert: String, key: String, reason: rustls::Error },
    #[error("sslcert is set without sslkey: a client certificate needs both (PEM files)")]
    CertWithoutKey,
    #[error("sslkey is set without sslcert: a client certificate needs both (PEM files)")]
    KeyWithoutCert,
    #[error("TLS: {0}")]
    Protocols(rustls::Error),
}

/// The TLS parameters found in a connection string, decoded; the last of a repeated key wins
/// (as in libpq).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct TlsParams {
    pub mode: Option<SslMode>,
    pub root_cert: Option<String>,
    pub cert: Option<String>,
    pub key: Option<String>,
}

impl TlsParams {
    fn set(&mut self, key: &str, value: String) -> Result<(), TlsError> {
        match key {
            "sslmode" => self.mode = Some(SslMode::parse(&value)?),
            "sslrootcert" => self.root_cert = Some(value),
            "sslcert" => self.cert = Some(value),
            "sslkey" => self.key = Some(value),
            _ => unreachable!("not a TLS key: {key}"),
        }
        Ok(())
    }
}

/// Takes the TLS parameters out of a libpq connection string, URL (`postgres://...?sslmode=...`)
/// or key/value (`host=... sslmode=...`), and returns the rest, for tokio-postgres, with them.
/// A string tokio-postgres could not read either is returned whole, for its own message.
pub fn split(url: &str) -> Result<(String, TlsParams), TlsError> {
    // The same prefixes (case-sensitive) as tokio-postgres's, which reads anything else as
    // key/value pairs.
    match ["postgres://", "postgresql://"].iter().find(|p| url.starts_with(*p)) {
        Some(prefix) => split_url(url, prefix.len()),
        None => split_key_values(url),
    }
}

/// The query of a URL, found where tokio-postgres finds it: after the first `?` that follows
/// the credentials (which end at the first `@`).
fn split_url(url: &str, prefix: usize) -> Result<(String, TlsParams), TlsError> {
    let after_credentials = url[prefix..].find('@').map_or(prefix, |at| prefix + at + 1);
    let Some(question) = url[after_credentials..].find('?').map(|q| after_credentials + q) else {
        return Ok((url.to_string(), TlsParams::default()));
    };
    let mut params = TlsParams::default();
    let mut kept = Vec::new();
    let mut rest = &url[question + 1..];
    while !rest.is_empty() {
        let Some(equals) = rest.find('=') else {
            // tokio-postgres says what is wrong with it.
            kept.push(rest);
            break;
        };
        let end = rest[equals + 1..].find('&').map_or(rest.len(), |amp| equals + 1 + amp);
        let (pair, tail) = (&rest[..end], rest[end..].strip_prefix('&').unwrap_or(""));
        let key = percent_decode(&pair[..equals])?;
        if KEYS.contains(&key.as_str()) {
            params.set(&key, percent_decode(&pair[equals + 1..])?)?;
        } else {
            kept.push(pair);
        }
        rest = tail;
    }
    let mut out = url[..question].to_string();
    if !kept.is_empty() {
        out.push('?');
        out.push_str(&kept.join("&"));
    }
    Ok((out, params))
}

/// `%XX` sequences decoded (others kept as they are), as UTF-8.
fn percent_decode(s: &str) -> Result<String, TlsError> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%'
            && let (Some(hi), Some(lo)) = (bytes.get(i + 1).and_then(|b| hex(*b)), bytes.get(i + 2).and_then(|b| hex(*b)))
        {
            out.push((hi * 16 + lo) as u8);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| TlsError::NotUtf8(s.to_owned()))
}

/// Key/value pairs (`key = value`, values bare or in single quotes, `\` escaping the next
/// character), read with tokio-postgres's grammar; the pairs kept are written back quoted.
fn split_key_values(s: &str) -> Result<(String, TlsParams), TlsError> {
    let Some(pairs) = key_values(s) else {
        return Ok((s.to_string(), TlsParams::default()));
    };
    let mut params = TlsParams::default();
    let mut kept = Vec::new();
    for (key, value) in pairs {
        if KEYS.contains(&key) {
            params.set(key, value)?;
        } else {
            kept.push(format!("{key}='{}'", value.replace('\\', "\\\\").replace('\'', "\\'")));
        }
    }
    Ok((kept.join(" "), params))
}

/// The pairs of a key/value string, or `None` if it is malformed.
fn key_values(s: &str) -> Option<Vec<(&str, String)>> {
    let mut pairs = Vec::new();
    let mut rest = s.trim_start();
    while !rest.is_empty() {
        let key_end = rest.find(|c: char| c.is_whitespace() || c == '=').unwrap_or(rest.len());
        let key = &rest[..key_end];
        rest = rest[key_end..].trim_start().strip_prefix('=')?.trim_start();
        if key.is_empty() {
            return None;
        }
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let quoted = rest.starts_with('\'');
        if quoted {
            chars.next();
        }
        let mut end = None;
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => value.extend(chars.next().map(|(_, c)| c)),
                '\'' if quoted => {
                    end = Some(i + 1);
                    break;
                }
                c if c.is_whitespace() && !quoted => {
                    end = Some(i);
                    break;
                }
                c => value.push(c),
            }
        }
        let end = match end {
            Some(end) => end,
            None if quoted => return None,
            None => rest.len(),
        };
        if !quoted && value.is_empty() {
            return None;
        }
        pairs.push((key, value));
        rest = rest[end..].trim_start();
    }
    Some(pairs)
}

/// The TLS side of an endpoint: the mode and the connector every connection uses.
#[derive(Clone)]
pub struct PgTls {
    mode: SslMode,
    connector: MakeRustlsConnect,
}

impl fmt::Debug for PgTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgTls").field("mode", &self.mode).finish_non_exhaustive()
    }
}

impl PgTls {
    /// Reads and checks the files the parameters name and builds the client configuration.
    pub fn new(params: &TlsParams) -> Result<Self, TlsError> {
        Self::with_home(params, std::env::var_os("HOME").map(PathBuf::from))
    }

    /// [`PgTls::new`] with libpq's default root certificate looked up under `home`.
    fn with_home(params: &TlsParams, home: Option<PathBuf>) -> Result<Self, TlsError> {
        let system = params.root_cert.as_deref() == Some("system");
        let mode = params.mode.unwrap_or(if system { SslMode::VerifyFull } else { SslMode::DEFAULT });
        if system && mode != SslMode::VerifyFull {
            return Err(TlsError::SystemRootsNeedVerifyFull(mode));
        }
        let provider = Arc::new(ring::default_provider());
        if mode == SslMode::Disable {
            // Never used (tokio-postgres does not ask for TLS), and libpq reads no file then.
            let config = builder(&provider)?
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider.clone())))
                .with_no_client_auth();
            return Ok(Self { mode, connector: MakeRustlsConnect::new(config) });
        }
        let roots = match params.root_cert.as_deref() {
            Some("system") => Some(RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() }),
            Some(path) => Some(read_roots(path)?),
            None if matches!(mode, SslMode::VerifyCa | SslMode::VerifyFull) => {
                let default = home.map(|h| h.join(DEFAULT_ROOT_CERT.trim_start_matches("~/")));
                match default {
                    Some(path) if path.exists() => Some(read_roots(&path.display().to_string())?),
                    _ => return Err(TlsError::NoRootCert(mode)),
                }
            }
            None => None,
        };
        let builder = builder(&provider)?;
        let builder = match roots {
            Some(roots) => {
                let verifier = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                    .build()
                    .map_err(TlsError::Roots)?;
                if mode == SslMode::VerifyFull {
                    builder.with_webpki_verifier(verifier)
                } else {
                    builder.dangerous().with_custom_certificate_verifier(Arc::new(ChainOnly(verifier)))
                }
            }
            None => builder.dangerous().with_custom_certificate_verifier(Arc::new(AnyCertificate(provider.clone()))),
        };
        let mut config = match (params.cert.as_deref(), params.key.as_deref()) {
            (Some(cert), Some(key)) => builder
                .with_client_auth_cert(read_chain(cert)?, read_key(key)?)
                .map_err(|reason| TlsError::CertificateAndKey { cert: cert.to_owned(), key: key.to_owned(), reason })?,
            (None, None) => builder.with_no_client_auth(),
            (Some(_), None) => return Err(TlsError::CertWithoutKey),
            (None, Some(_)) => return Err(TlsError::KeyWithoutCert),
        };
        // What libpq 17 sends; servers before 17 ignore it, 17 needs it for sslnegotiation=direct.
        config.alpn_protocols = vec![b"postgresql".to_vec()];
        Ok(Self { mode, connector: MakeRustlsConnect::new(config) })
    }

    pub fn mode(&self) -> SslMode {
        self.mode
    }

    /// The mode to give tokio-postgres.
    pub fn driver_mode(&self) -> tokio_postgres::config::SslMode {
        self.mode.driver()
    }

    pub fn connector(&self) -> MakeRustlsConnect {
        self.connector.clone()
    }
}

fn builder(provider: &Arc<CryptoProvider>) -> Result<rustls::ConfigBuilder<ClientConfig, rustls::WantsVerifier>, TlsError> {
    ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Protocols)
}

fn read(path: &str, key: &'static str) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|reason| TlsError::Unreadable { key, path: path.to_owned(), reason })
}

fn certificates(path: &str, key: &'static str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(path, key)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|reason| TlsError::NotPem { key, path: path.to_owned(), reason })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate { key, path: path.to_owned() });
    }
    Ok(certs)
}

fn read_roots(path: &str) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for (i, cert) in certificates(path, "sslrootcert")?.into_iter().enumerate() {
        roots
            .add(cert)
            .map_err(|reason| TlsError::NotARoot { path: path.to_owned(), number: i + 1, reason })?;
    }
    Ok(roots)
}

fn read_chain(path: &str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    certificates(path, "sslcert")
}

fn read_key(path: &str) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = read(path, "sslkey")?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => TlsError::NoKey(path.to_owned()),
        reason => TlsError::NotPem { key: "sslkey", path: path.to_owned(), reason },
    })
}

/// `require`/`prefer`/`allow` without root certificates: any certificate is accepted, but the
/// handshake signatures are still verified with the provider's algorithms.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// `verify-ca`: the chain is checked against the root certificates (validity, signatures,
/// server usage), the host name is not.
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        // The name is checked last, once the chain was found good.
        match self.0.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(mode: Option<SslMode>, root_cert: Option<&str>) -> TlsParams {
        TlsParams { mode, root_cert: root_cert.map(Into::into), ..TlsParams::default() }
    }

    #[test]
    fn every_libpq_mode_is_read_and_others_are_refused() {
        for (name, mode) in [
            ("disable", SslMode::Disable),
            ("allow", SslMode::Allow),
            ("prefer", SslMode::Prefer),
            ("require", SslMode::Require),
            ("verify-ca", SslMode::VerifyCa),
            ("verify-full", SslMode::VerifyFull),
        ] {
            let (rest, found) = split(&format!("postgres://u@h/db?sslmode={name}")).unwrap();
            assert_eq!(rest, "postgres://u@h/db");
            assert_eq!(found.mode, Some(mode));
            assert_eq!(mode.to_string(), name);
        }
        assert_eq!(
            split("postgres://u@h/db?sslmode=verify-everything").unwrap_err().to_string(),
            "sslmode `verify-everything` is not one of disable, allow, prefer, require, verify-ca, verify-full"
        );
        assert!(split("host=h sslmode=VERIFY-FULL").unwrap_err().to_string().starts_with("sslmode `VERIFY-FULL` is not one of"));
    }

    #[test]
    fn url_parameters_are_taken_out_and_the_others_kept_as_written() {
        let (rest, found) = split(
            "postgresql://u:p%3F@h:5432,g/db?application_name=a%20b&sslrootcert=%2Ftmp%2Fca.pem&sslmode=verify-full&connect_timeout=3&sslcert=c.pem&sslkey=k.pem",
        )
        .unwrap();
        assert_eq!(rest, "postgresql://u:p%3F@h:5432,g/db?application_name=a%20b&connect_timeout=3");
        assert_eq!(
            found,
            TlsParams {
                mode: Some(SslMode::VerifyFull),
                root_cert: Some("/tmp/ca.pem".into()),
                cert: Some("c.pem".into()),
                key: Some("k.pem".into()),
            }
        );
        // A `?` in the password is not the query.
        let (rest, found) = split("postgres://u:a?b@h/db?sslmode=require").unwrap();
        assert_eq!((rest.as_str(), found.mode), ("postgres://u:a?b@h/db", Some(SslMode::Require)));
        let (rest, found) = split("postgres://u@h/db").unwrap();
        assert_eq!((rest.as_str(), found), ("postgres://u@h/db", TlsParams::default()));
    }

    #[test]
    fn key_value_parameters_are_taken_out_and_the_others_rewritten_quoted() {
        // The grammar has no doubled quotes: a malformed string is handed over whole, for
        // tokio-postgres to say what is wrong with it.
        let malformed = r"host=db password='it''s' sslmode=verify-ca";
        assert_eq!(split(malformed).unwrap(), (malformed.to_string(), TlsParams::default()));

        let (rest, found) =
            split(r"host=db  port = 5433 password='it\'s' sslmode = verify-ca sslrootcert='/my dir/ca.pem' user=a\ b").unwrap();
        assert_eq!(rest, r"host='db' port='5433' password='it\'s' user='a b'");
        assert_eq!(found, TlsParams { mode: Some(SslMode::VerifyCa), root_cert: Some("/my dir/ca.pem".into()), ..TlsParams::default() });
        let config: tokio_postgres::Config = rest.parse().unwrap();
        assert_eq!(config.get_password(), Some(&b"it's"[..]));
        assert_eq!(config.get_user(), Some("a b"));
    }

    #[test]
    fn verifying_modes_need_root_certificates() {
        let home = tempfile::tempdir().unwrap();
        for mode in [SslMode::VerifyCa, SslMode::VerifyFull] {
            let err = PgTls::with_home(&params(Some(mode), None), Some(home.path().into())).unwrap_err().to_string();
            assert_eq!(
                err,
                format!(
                    "sslmode `{mode}` needs the certificate(s) to verify the server with: set `sslrootcert=<file>` (PEM) or `sslrootcert=system` (there is no ~/.postgresql/root.crt)"
                )
            );
        }
        // libpq's default file is used when it is there.
        let ca = test_ca();
        std::fs::create_dir(home.path().join(".postgresql")).unwrap();
        std::fs::write(home.path().join(".postgresql/root.crt"), ca.pem()).unwrap();
        let tls = PgTls::with_home(&params(Some(SslMode::VerifyFull), None), Some(home.path().into())).unwrap();
        assert_eq!(tls.mode(), SslMode::VerifyFull);
        // Modes that do not verify need none.
        for mode in [SslMode::Disable, SslMode::Allow, SslMode::Prefer, SslMode::Require] {
            assert_eq!(PgTls::with_home(&params(Some(mode), None), None).unwrap().mode(), mode);
        }
        assert_eq!(PgTls::with_home(&params(None, None), None).unwrap().mode(), SslMode::Prefer);
    }

    #[test]
    fn system_roots_mean_verify_full() {
        assert_eq!(PgTls::new(&params(None, Some("system"))).unwrap().mode(), SslMode::VerifyFull);
        assert_eq!(PgTls::new(&params(Some(SslMode::VerifyFull), Some("system"))).unwrap().mode(), SslMode::VerifyFull);
        let err = PgTls::new(&params(Some(SslMode::Require), Some("system"))).unwrap_err().to_string();
        assert_eq!(
            err,
            "sslmode `require` may not be used with sslrootcert=system (the Mozilla roots): use sslmode=verify-full, as libpq requires"
        );
    }

    fn test_ca() -> rcgen::Certificate {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.self_signed(&rcgen::KeyPair::generate().unwrap()).unwrap()
    }

    #[test]
    fn files_that_are_missing_or_not_pem_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.pem").display().to_string();
        let err = PgTls::new(&params(Some(SslMode::VerifyCa), Some(&missing))).unwrap_err().to_string();
        assert!(err.starts_with(&format!("sslrootcert `{missing}`: cannot read it: ")), "{err}");
        let garbage = dir.path().join("garbage.pem");
        std::fs::write(&garbage, "hello").unwrap();
        let garbage = garbage.display().to_string();
        let err = PgTls::new(&params(Some(SslMode::Require), Some(&garbage))).unwrap_err().to_string();
        assert_eq!(err, format!("sslrootcert `{garbage}`: no certificate in it (expected PEM `-----BEGIN CERTIFICATE-----` blocks)"));

        // A client certificate and its key, PKCS#8 (rcgen's) and SEC1.
        let ca_path = dir.path().join("ca.pem");
        std::fs::write(&ca_path, test_ca().pem()).unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["client".to_string()]).unwrap().self_signed(&key).unwrap();
        let (cert_path, key_path) = (dir.path().join("client.crt"), dir.path().join("client.key"));
        std::fs::write(&cert_path, cert.pem()).unwrap();
        std::fs::write(&key_path, key.serialize_pem()).unwrap();
        let with_client = |cert: &str, key: &str| {
            PgTls::new(&TlsParams {
                mode: Some(SslMode::VerifyFull),
                root_cert: Some(ca_path.display().to_string()),
                cert: Some(cert.into()),
                key: Some(key.into()),
            })
        };
        let (cert_name, key_name) = (cert_path.display().to_string(), key_path.display().to_string());
        with_client(&cert_name, &key_name).unwrap();
        let sec1 = dir.path().join("client-sec1.key");
        let sec1_der = sec1_of(&key.serialize_der());
        std::fs::write(&sec1, pem_block("EC PRIVATE KEY", &sec1_der)).unwrap();
        with_client(&cert_name, &sec1.display().to_string()).unwrap();

        let err = with_client(&cert_name, &garbage).unwrap_err().to_string();
        assert!(err.starts_with(&format!("sslkey `{garbage}`: no private key in it")), "{err}");
        let err = with_client(&garbage, &key_name).unwrap_err().to_string();
        assert!(err.starts_with(&format!("sslcert `{garbage}`: no certificate in it")), "{err}");
        let other_key = dir.path().join("other.key");
        std::fs::write(&other_key, rcgen::KeyPair::generate().unwrap().serialize_pem()).unwrap();
        let err = with_client(&cert_name, &other_key.display().to_string()).unwrap_err().to_string();
        assert!(err.starts_with(&format!("sslcert `{cert_name}` with sslkey `{}`: ", other_key.display())), "{err}");
        let err = PgTls::new(&TlsParams { cert: Some(cert_name.clone()), ..TlsParams::default() }).unwrap_err().to_string();
        assert_eq!(err, "sslcert is set without sslkey: a client certificate needs both (PEM files)");
        // `disable` reads no file, as libpq.
        assert!(PgTls::new(&params(Some(SslMode::Disable), Some(&missing))).is_ok());
    }

    /// The SEC1 `ECPrivateKey` inside a PKCS#8 P-256 key (rcgen's default algorithm): the
    /// OCTET STRING that ends the PKCS#8 structure.
    fn sec1_of(pkcs8: &[u8]) -> Vec<u8> {
        // PKCS#8 v1 for P-256 from ring: fixed 26-byte header `30 81 87 02 01 00 30 13 ... 04 6d`.
        let at = pkcs8.windows(2).position(|w| w == [0x04, 0x6d]).expect("the private key octet string");
        pkcs8[at + 2..].to_vec()
    }

    fn pem_block(label: &str, der: &[u8]) -> String {
        use base64::Engine as _;
        let text = base64::engine::general_purpose::STANDARD.encode(der);
        let lines: Vec<_> = text.as_bytes().chunks(64).map(|c| std::str::from_utf8(c).unwrap()).collect();
        format!("-----BEGIN {label}-----\n{}\n-----END {label}-----\n", lines.join("\n"))
    }
}
