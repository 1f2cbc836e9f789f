//! TLS for tests: a certificate authority made in the test (rcgen, ring), server and client
//! certificates it signs, and the real example reducer served over TLS by tonic's own server
//! (`ServerTlsConfig`), with or without requiring a client certificate.

use std::path::{Path, PathBuf};

use bookings_reducer::{
    BookingsReducer,
    proto::{projection_info_server::ProjectionInfoServer, projection_server::ProjectionServer},
};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose,
};
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_util::sync::{CancellationToken, DropGuard};
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};

/// A certificate authority of the test's own.
pub struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

/// A certificate signed by a [`TestCa`] and its private key, as PEM.
pub struct Leaf {
    pub cert_pem: String,
    pub key_pem: String,
}

impl TestCa {
    pub fn new(name: &str) -> Self {
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().expect("CA key")).expect("CA certificate");
        Self { issuer }
    }

    pub fn cert_pem(&self) -> String {
        self.issuer.pem()
    }

    /// Writes the CA certificate to `dir/<file>` and returns its path.
    pub fn write(&self, dir: &Path, file: &str) -> PathBuf {
        let path = dir.join(file);
        std::fs::write(&path, self.cert_pem()).expect("write CA certificate");
        path
    }

    /// A server certificate for these names (DNS names or IP addresses).
    pub fn server(&self, names: &[&str]) -> Leaf {
        self.leaf(names, ExtendedKeyUsagePurpose::ServerAuth)
    }

    /// A client certificate (mutual TLS) with this name.
    pub fn client(&self, name: &str) -> Leaf {
        self.leaf(&[name], ExtendedKeyUsagePurpose::ClientAuth)
    }

    fn leaf(&self, names: &[&str], usage: ExtendedKeyUsagePurpose) -> Leaf {
        let mut params = CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).expect("names");
        params.distinguished_name.push(DnType::CommonName, names[0]);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![usage];
        let key = KeyPair::generate().expect("key");
        let cert = params.signed_by(&key, &self.issuer).expect("certificate");
        Leaf { cert_pem: cert.pem(), key_pem: key.serialize_pem() }
    }
}

impl Leaf {
    /// Writes the certificate and key to `dir/<name>.pem` and `dir/<name>.key`.
    pub fn write(&self, dir: &Path, name: &str) -> (PathBuf, PathBuf) {
        let (cert, key) = (dir.join(format!("{name}.pem")), dir.join(format!("{name}.key")));
        std::fs::write(&cert, &self.cert_pem).expect("write certificate");
        std::fs::write(&key, &self.key_pem).expect("write key");
        (cert, key)
    }

    pub fn identity(&self) -> Identity {
        Identity::from_pem(&self.cert_pem, &self.key_pem)
    }
}

/// The example reducer served over TLS on a loopback port; stops when dropped.
pub struct TlsSidecar {
    /// `https://127.0.0.1:PORT`.
    pub address: String,
    pub port: u16,
    _stop: DropGuard,
}

/// Serves the example reducer (Project and Describe) with `server`'s certificate; when
/// `client_ca` is given, only to clients presenting a certificate that CA signed.
pub async fn serve_reducer(server: &Leaf, client_ca: Option<&TestCa>) -> TlsSidecar {
    // tonic's server builds its rustls config with the process default provider, which must be
    // chosen when several are linked (as `main` does).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut tls = ServerTlsConfig::new().identity(server.identity());
    if let Some(ca) = client_ca {
        tls = tls.client_ca_root(Certificate::from_pem(ca.cert_pem()));
    }
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().unwrap().port();
    let stop = CancellationToken::new();
    let reducer = BookingsReducer::default();
    let router = Server::builder()
        .tls_config(tls)
        .expect("server TLS settings")
        .add_service(ProjectionServer::new(reducer))
        .add_service(ProjectionInfoServer::new(reducer));
    tokio::spawn(router.serve_with_incoming_shutdown(TcpListenerStream::new(listener), stop.clone().cancelled_owned()));
    TlsSidecar { address: format!("https://127.0.0.1:{port}"), port, _stop: stop.drop_guard() }
}

/// A TCP relay to `upstream` (`HOST:PORT`) that holds what the server sends for `latency`
/// before passing it on, as a link between two pods does (on loopback, a sidecar's refusal of
/// the gateway's certificate overtakes the gateway's first call, which then only sees the
/// connection close). Returns the relay's `HOST:PORT`; stops when the guard is dropped.
pub async fn slow_link(upstream: String, latency: std::time::Duration) -> (String, DropGuard) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().unwrap().to_string();
    let stop = CancellationToken::new();
    let stopped = stop.clone();
    tokio::spawn(async move {
        loop {
            let (client, _) = tokio::select! {
                _ = stopped.cancelled() => return,
                accepted = listener.accept() => match accepted { Ok(a) => a, Err(_) => return },
            };
            let Ok(server) = tokio::net::TcpStream::connect(&upstream).await else { continue };
            let (mut client_read, mut client_write) = client.into_split();
            let (mut server_read, mut server_write) = server.into_split();
            let stopped = stopped.clone();
            tokio::spawn(async move {
                let up = tokio::io::copy(&mut client_read, &mut server_write);
                let down = async {
                    let mut buffer = vec![0u8; 64 * 1024];
                    loop {
                        let n = server_read.read(&mut buffer).await?;
                        if n == 0 {
                            return client_write.shutdown().await;
                        }
                        tokio::time::sleep(latency).await;
                        client_write.write_all(&buffer[..n]).await?;
                    }
                };
                tokio::select! {
                    _ = stopped.cancelled() => {}
                    _ = async { tokio::join!(up, down) } => {}
                }
            });
        }
    });
    (address, stop.drop_guard())
}
