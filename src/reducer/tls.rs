//! TLS to the sidecar (`sidecar.tls`, an `https://` address): reads and checks the PEM files
//! a connector names and turns them into tonic's client TLS settings.
//!
//! It exists because tonic takes these files without a word about what is wrong with them: a
//! CA file with no certificate in it is silently an empty trust store (every handshake then
//! fails with `UnknownIssuer`), a key that does not belong to its certificate is noticed only
//! by the sidecar, mid-handshake. Here each file is read and parsed once, the same way for
//! `validate`, the loader and the management API (which report each problem at its key path,
//! e.g. `connectors[0].sidecar.tls.ca_file`) as for the channel a connector opens; and a
//! handshake that fails later is told apart from a sidecar that is away ([`handshake_failure`]).
//!
//! Without `tls.ca_file` the sidecar's certificate is checked against the Mozilla roots
//! (webpki-roots, built in: the same in every image, whatever the host has). With
//! `tls.cert_file` and `tls.key_file` the gateway presents a client certificate (mutual TLS).
//! `tls.domain` is the name checked in the sidecar's certificate instead of the address's host.
//! The crypto provider is rustls's ring, the process default `main` installs; where none is
//! installed (tests), tonic takes ring by its `tls-ring` feature.

use std::{io, path::Path};

use rustls::{
    RootCertStore,
    pki_types::{CertificateDer, PrivateKeyDer, ServerName, pem::PemObject},
    sign::CertifiedKey,
};
use tonic::transport::{Certificate, ClientTlsConfig, Identity, Uri};

use crate::config::{SidecarConfig, SidecarTlsConfig};

/// Something wrong with the TLS settings of a sidecar section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsProblem {
    /// The key within the `sidecar` section, e.g. `tls.ca_file` or `address`.
    pub key: &'static str,
    pub message: String,
}

impl TlsProblem {
    fn new(key: &'static str, message: impl Into<String>) -> Self {
        Self { key, message: message.into() }
    }
}

/// Whether `address` asks for TLS.
pub fn is_https(address: &str) -> bool {
    address.starts_with("https://")
}

/// The client TLS settings of `config`'s sidecar at `address` (one of its addresses): `None`
/// for a plain `http://` address, otherwise its files read and checked. The name checked in
/// the sidecar's certificate is `tls.domain` or `address`'s host, also when the connection goes
/// to one of the IPs that host resolves to (`endpoints.rs`). Every problem found is returned,
/// not just the first.
pub fn client_config(config: &SidecarConfig, address: &str) -> Result<Option<ClientTlsConfig>, Vec<TlsProblem>> {
    if !is_https(address) {
        return Ok(None);
    }
    let default = SidecarTlsConfig::default();
    let tls = config.tls.as_ref().unwrap_or(&default);
    let mut problems = Vec::new();
    let domain = server_name(address, tls, &mut problems);
    let ca = tls.ca_file.as_deref().and_then(|path| ca_certificates(path, &mut problems));
    let identity = match (&tls.cert_file, &tls.key_file) {
        (None, None) => None,
        (Some(cert), Some(key)) => identity(cert, key, &mut problems),
        (Some(_), None) => {
            problems.push(TlsProblem::new("tls.key_file", "missing; `cert_file` (the gateway's client certificate) needs its private key"));
            None
        }
        (None, Some(_)) => {
            problems.push(TlsProblem::new("tls.cert_file", "missing; `key_file` is the private key of a client certificate, which goes here"));
            None
        }
    };
    if !problems.is_empty() {
        return Err(problems);
    }
    let mut settings = ClientTlsConfig::new();
    if let Some(domain) = domain {
        settings = settings.domain_name(domain);
    }
    settings = match ca {
        Some(pem) => settings.ca_certificate(Certificate::from_pem(pem)),
        None => settings.with_webpki_roots(),
    };
    if let Some(identity) = identity {
        settings = settings.identity(identity);
    }
    Ok(Some(settings))
}

/// The name the sidecar's certificate must hold: `tls.domain`, else the address's host (an
/// IPv6 host without its brackets).
fn server_name(address: &str, tls: &SidecarTlsConfig, problems: &mut Vec<TlsProblem>) -> Option<String> {
    if let Some(domain) = &tls.domain {
        if ServerName::try_from(domain.as_str()).is_err() {
            problems.push(TlsProblem::new("tls.domain", format!("`{domain}` is not a DNS name or an IP address")));
            return None;
        }
        return Some(domain.clone());
    }
    let host = address.parse::<Uri>().ok()?.host()?.to_owned();
    let host = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).map(str::to_owned).unwrap_or(host);
    if ServerName::try_from(host.as_str()).is_err() {
        problems.push(TlsProblem::new(
            "address",
            format!("`{host}` cannot be checked against a certificate (not a DNS name or an IP address); set `tls.domain` to the name in the sidecar's certificate"),
        ));
        return None;
    }
    Some(host)
}

/// The CA certificates of `tls.ca_file`, as PEM, once each parses as a trust anchor.
fn ca_certificates(path: &Path, problems: &mut Vec<TlsProblem>) -> Option<Vec<u8>> {
    const KEY: &str = "tls.ca_file";
    let pem = read(KEY, path, problems)?;
    let certificates = certificates(KEY, path, &pem, problems)?;
    let mut store = RootCertStore::empty();
    for (index, certificate) in certificates.into_iter().enumerate() {
        if let Err(e) = store.add(certificate) {
            problems.push(TlsProblem::new(KEY, format!("{}: certificate {} cannot be a trust anchor: {e}", path.display(), index + 1)));
            return None;
        }
    }
    Some(pem)
}

/// The client certificate and its key, once they parse and belong together.
fn identity(cert_path: &Path, key_path: &Path, problems: &mut Vec<TlsProblem>) -> Option<Identity> {
    let cert_pem = read("tls.cert_file", cert_path, problems);
    let key_pem = read("tls.key_file", key_path, problems);
    let chain = cert_pem.as_deref().and_then(|pem| certificates("tls.cert_file", cert_path, pem, problems));
    let key = key_pem.as_deref().and_then(|pem| match PrivateKeyDer::from_pem_slice(pem) {
        Ok(key) => Some(key),
        Err(rustls::pki_types::pem::Error::NoItemsFound) => {
            problems.push(TlsProblem::new(
                "tls.key_file",
                format!("{}: holds no PEM private key (`-----BEGIN PRIVATE KEY-----`, `RSA PRIVATE KEY` or `EC PRIVATE KEY`)", key_path.display()),
            ));
            None
        }
        Err(e) => {
            problems.push(TlsProblem::new("tls.key_file", format!("{}: not a PEM private key: {e}", key_path.display())));
            None
        }
    });
    let (chain, key) = (chain?, key?);
    let provider = rustls::crypto::ring::default_provider();
    if let Err(e) = CertifiedKey::from_der(chain, key, &provider) {
        let message = match e {
            rustls::Error::InconsistentKeys(_) => format!(
                "{} is not the private key of the certificate in `cert_file` ({})",
                key_path.display(),
                cert_path.display()
            ),
            other => format!("{}: cannot be used with the certificate in `cert_file` ({}): {other}", key_path.display(), cert_path.display()),
        };
        problems.push(TlsProblem::new("tls.key_file", message));
        return None;
    }
    Some(Identity::from_pem(cert_pem?, key_pem?))
}

fn read(key: &'static str, path: &Path, problems: &mut Vec<TlsProblem>) -> Option<Vec<u8>> {
    match std::fs::read(path) {
        Ok(bytes) => Some(bytes),
        Err(e) => {
            let why = match e.kind() {
                io::ErrorKind::NotFound => "no such file".to_owned(),
                io::ErrorKind::PermissionDenied => "permission denied".to_owned(),
                _ => format!("cannot be read: {e}"),
            };
            problems.push(TlsProblem::new(key, format!("{}: {why}", path.display())));
            None
        }
    }
}

/// Every certificate of a PEM file; at least one.
fn certificates(key: &'static str, path: &Path, pem: &[u8], problems: &mut Vec<TlsProblem>) -> Option<Vec<CertificateDer<'static>>> {
    match CertificateDer::pem_slice_iter(pem).collect::<Result<Vec<_>, _>>() {
        Ok(certificates) if certificates.is_empty() => {
            problems.push(TlsProblem::new(key, format!("{}: holds no PEM certificate (`-----BEGIN CERTIFICATE-----`)", path.display())));
            None
        }
        Ok(certificates) => Some(certificates),
        Err(e) => {
            problems.push(TlsProblem::new(key, format!("{}: not a PEM file: {e}", path.display())));
            None
        }
    }
}

/// What failed, when a call to the sidecar failed in its TLS handshake: `TLS handshake failed:
/// invalid peer certificate: UnknownIssuer` (a certificate the CA did not sign), `... certificate
/// not valid for name ...` (a name mismatch), `... the sidecar refused the handshake
/// (CertificateRequired alert)` (mutual TLS without a client certificate). `None` when nothing in
/// `error`'s source chain is a TLS failure.
pub fn handshake_failure(error: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut next = Some(error);
    while let Some(cause) = next {
        let inner = cause.downcast_ref::<io::Error>().and_then(io::Error::get_ref);
        if let Some(tls) = cause.downcast_ref::<rustls::Error>().or_else(|| inner.and_then(|e| e.downcast_ref::<rustls::Error>())) {
            return Some(format!("TLS handshake failed: {}", reason(tls)));
        }
        // An alert the sidecar sent once the handshake was over on the gateway's side (TLS 1.3
        // checks a client certificate then): rustls reports it as text.
        if let Some(alert) = inner.map(ToString::to_string).as_deref().and_then(|text| text.strip_prefix("received fatal alert: ")) {
            return Some(format!("TLS handshake failed: {}", refused(alert)));
        }
        next = cause.source();
    }
    None
}

fn reason(error: &rustls::Error) -> String {
    match error {
        rustls::Error::AlertReceived(alert) => refused(&format!("{alert:?}")),
        // Plain text where a TLS record was due: the sidecar serves `http://`.
        rustls::Error::InvalidMessage(_) => {
            format!("{error}; does the sidecar serve TLS? (one that does not answers a handshake with plain HTTP/2; use `http://`)")
        }
        other => other.to_string(),
    }
}

fn refused(alert: &str) -> String {
    let hint = match alert {
        "CertificateRequired" | "BadCertificate" | "UnknownCA" | "CertificateUnknown" | "AccessDenied" | "HandshakeFailure" => {
            "; does it require a client certificate (`sidecar.tls.cert_file` and `key_file`) signed by a CA it trusts?"
        }
        _ => "",
    };
    format!("the sidecar refused the handshake ({alert} alert){hint}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sidecar(yaml: &str) -> SidecarConfig {
        serde_yaml::from_str(yaml).unwrap()
    }

    #[tokio::test]
    async fn an_https_channel_is_made_without_a_process_default_crypto_provider() {
        // `main` installs ring; where nothing does (this test binary), tonic takes ring by its
        // `tls-ring` feature instead of panicking on two linked providers.
        assert!(rustls::crypto::CryptoProvider::get_default().is_none());
        assert!(crate::reducer::channel(&sidecar("address: https://reducer.example:443")).is_ok());
        let plain = sidecar("address: http://127.0.0.1:50051");
        assert!(client_config(&plain, "http://127.0.0.1:50051").unwrap().is_none());

        let missing = sidecar("address: https://reducer.example:443\ntls: { ca_file: /nowhere/ca.pem }");
        let error = crate::reducer::channel(&missing).unwrap_err().to_string();
        assert_eq!(error, "`https://reducer.example:443`: its TLS settings cannot be used: sidecar.tls.ca_file: /nowhere/ca.pem: no such file");
    }

    #[test]
    fn a_failed_handshake_is_named_with_its_reason() {
        let wrapped = |e: rustls::Error| io::Error::new(io::ErrorKind::InvalidData, e);
        let unknown = wrapped(rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer));
        assert_eq!(handshake_failure(&unknown).as_deref(), Some("TLS handshake failed: invalid peer certificate: UnknownIssuer"));
        let refused = io::Error::new(io::ErrorKind::InvalidData, "received fatal alert: CertificateRequired");
        assert_eq!(
            handshake_failure(&refused).as_deref(),
            Some(
                "TLS handshake failed: the sidecar refused the handshake (CertificateRequired alert); does it require a client \
                 certificate (`sidecar.tls.cert_file` and `key_file`) signed by a CA it trusts?"
            )
        );
        let plain = wrapped(rustls::Error::InvalidMessage(rustls::InvalidMessage::InvalidContentType));
        assert!(handshake_failure(&plain).unwrap().contains("does the sidecar serve TLS?"));
        let refused_tcp = io::Error::new(io::ErrorKind::ConnectionRefused, "Connection refused");
        assert_eq!(handshake_failure(&refused_tcp), None);
    }
}
