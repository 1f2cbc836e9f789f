//! TLS to PostgreSQL against a real server with `ssl = on`: a second cluster of
//! `scripts/postgres.sh` (port 54339, its own directory; the shared one keeps its settings),
//! whose TCP connections must use TLS and where one role logs in only with a client
//! certificate. The certificates (a test CA, the server's for `localhost`/127.0.0.1, a client's,
//! and an unrelated CA) are made here with rcgen.
//!
//! What it proves: a connector reads an Eventuous log and writes the read model and its
//! checkpoints over `verify-full` (every gateway connection shows `ssl` in `pg_stat_ssl`); the
//! host name is checked by `verify-full` and not by `verify-ca`; a certificate from another CA
//! is refused; `require` and `prefer` encrypt without checking, and `prefer` falls back to plain
//! on a server without TLS; `sslmode=disable` gets the server's refusal; mutual TLS with
//! `sslcert`/`sslkey` for a `hostssl ... cert` role, which is refused without them.

use std::{
    path::{Path, PathBuf},
    process::Command,
    sync::OnceLock,
    time::Duration,
};

use projector_gateway::{
    pipeline::{ConnectorControl, run_connector},
    postgres::{PgEndpoint, describe},
};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose,
};
use crate::support::{
    bookings_model::ReadModel,
    fixtures::*,
    postgres::{self as pg, EventuousLog},
    processes::repo_root,
    sidecars,
};
use tokio_postgres::Client;

const WAIT: Duration = Duration::from_secs(120);
const PORT: u16 = 54339;
const DATA_DIR: &str = "/tmp/projector-gateway-pg-tls/data";
/// The role of `hostssl ... cert`: its client certificate's CN.
const CERT_ROLE: &str = "gateway_cert";

/// The TLS cluster and the certificate files of this test binary.
struct TlsServer {
    _dir: tempfile::TempDir,
    ca: PathBuf,
    other_ca: PathBuf,
    client_cert: PathBuf,
    client_key: PathBuf,
}

fn server() -> &'static TlsServer {
    static SERVER: OnceLock<TlsServer> = OnceLock::new();
    SERVER.get_or_init(|| {
        let dir = tempfile::tempdir().expect("temp dir");
        let write = |name: &str, text: String| {
            let path = dir.path().join(name);
            std::fs::write(&path, text).unwrap();
            path
        };
        let ca = authority("projector-gateway test CA");
        let (server_cert, server_key) = leaf(&ca, "localhost", &["localhost", "127.0.0.1"], ExtendedKeyUsagePurpose::ServerAuth);
        let (client_cert, client_key) = leaf(&ca, CERT_ROLE, &[], ExtendedKeyUsagePurpose::ClientAuth);
        let (cert_file, key_file) = (write("server.crt", server_cert), write("server.key", server_key));
        let server = TlsServer {
            ca: write("ca.pem", ca.pem()),
            other_ca: write("other-ca.pem", authority("some other CA").pem()),
            client_cert: write("client.crt", client_cert),
            client_key: write("client.key", client_key),
            _dir: dir,
        };
        let out = Command::new("bash")
            .arg(repo_root().join("scripts/postgres.sh"))
            .arg("start")
            .env("PG_PORT", PORT.to_string())
            .env("PG_DATA_DIR", DATA_DIR)
            .env("PG_SSL_CERT_FILE", &cert_file)
            .env("PG_SSL_KEY_FILE", &key_file)
            .env("PG_SSL_CA_FILE", &server.ca)
            .env("PG_SSL_CERT_USER", CERT_ROLE)
            .stderr(std::process::Stdio::inherit())
            .output()
            .expect("run scripts/postgres.sh");
        assert!(out.status.success(), "scripts/postgres.sh start (TLS cluster) failed");
        server
    })
}

fn authority(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
}

/// A certificate signed by `ca` and its key, both PEM.
fn leaf(ca: &CertifiedIssuer<'static, KeyPair>, common_name: &str, names: &[&str], usage: ExtendedKeyUsagePurpose) -> (String, String) {
    let mut params = CertificateParams::new(names.iter().map(ToString::to_string).collect::<Vec<_>>()).unwrap();
    params.distinguished_name.push(DnType::CommonName, common_name);
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
    params.extended_key_usages = vec![usage];
    let key = KeyPair::generate().unwrap();
    (params.signed_by(&key, ca).unwrap().pem(), key.serialize_pem())
}

fn path(p: &Path) -> String {
    p.display().to_string()
}

/// A URL of the TLS cluster (as `gateway`, a superuser, unless `user` says otherwise).
fn url(user: &str, db: &str, tls: &str) -> String {
    format!("postgres://{user}@127.0.0.1:{PORT}/{db}?{tls}")
}

fn verify_full() -> String {
    format!("sslmode=verify-full&sslrootcert={}", path(&server().ca))
}

async fn connect(url: &str) -> Result<Client, String> {
    let endpoint = PgEndpoint::parse(url).unwrap_or_else(|e| panic!("{url}: {e}"));
    endpoint.connect().await.map_err(|e| describe(&e))
}

/// The test's own connection, verified, named apart from the gateway's.
async fn admin(db: &str) -> Client {
    connect(&url("gateway", db, &format!("{}&application_name=tls-test", verify_full()))).await.expect("admin connection")
}

/// A database of its own for one test, owned by `owner`.
async fn fresh(hint: &str, owner: &str) -> String {
    let name = format!("t_{hint}_{}", uuid::Uuid::new_v4().simple());
    admin("gateway").await.batch_execute(&format!("CREATE DATABASE {name} OWNER {owner}")).await.expect("create database");
    name
}

/// Whether the connection of `client` is encrypted, by the server's own account.
async fn encrypted(client: &Client) -> bool {
    client.query_one("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()", &[]).await.unwrap().get(0)
}

/// (ssl, client certificate DN) of every gateway connection to `db`.
async fn gateway_connections(db: &str) -> Vec<(bool, Option<String>)> {
    admin(db)
        .await
        .query(
            "SELECT s.ssl, s.client_dn FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid) \
             WHERE a.datname = $1 AND a.application_name = 'projector-gateway'",
            &[&db],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connector_reads_and_writes_over_verify_full() {
    let db = fresh("tls_full", "gateway").await;
    let url = url("gateway", &db, &verify_full());
    let client = admin(&db).await;
    client.batch_execute(pg::EVENTUOUS_SCHEMA).await.unwrap();
    let mut log = EventuousLog { client, appended: Vec::new() };
    log.append_generated(2_000, 200, 71).await;
    let sidecar = sidecars::rust_reducer().await;
    let yaml =
        connector_yaml_from(&pg::postgres_source_yaml(&url), &sidecar.address, &pg::postgres_sink_yaml(&url), &Setup::default());

    let mut running = Running::start(parse_connector(&yaml)).await;
    running.wait_for(log.head(), WAIT).await;
    // Live appends too, then the gateway's connections as the server sees them.
    log.append_generated(300, 30, 72).await;
    running.wait_for(log.head(), WAIT).await;
    let connections = gateway_connections(&db).await;
    // At least the source's reader and the sink's admin and writer connections.
    assert!(connections.len() >= 3, "{connections:?}");
    assert!(connections.iter().all(|(ssl, _)| *ssl), "a gateway connection without TLS: {connections:?}");
    running.stop().await.expect("clean stop");

    pg::read_model(&log.client).await.assert_same(&log.reference());
    let rows = pg::checkpoints(&log.client, "bookings").await;
    assert_eq!(rows.len(), 4, "{rows:?}");
    assert!(rows.iter().all(|r| r.0 == 4 && r.2 == log.head() as i64), "{rows:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_full_checks_the_host_name_and_verify_ca_does_not() {
    let db = fresh("tls_name", "gateway").await;
    // The TCP connection goes to 127.0.0.1, the certificate is checked for `db.example`.
    let key_values = |mode: &str| {
        format!("host=db.example hostaddr=127.0.0.1 port={PORT} user=gateway dbname={db} sslmode={mode} sslrootcert='{}'", path(&server().ca))
    };
    let ws = Workspace::new();
    let log = ws.log_with_events(10, 2, 73);
    assert!(log.head().unwrap() > 0);
    let sidecar = sidecars::rust_reducer().await;
    let sink = format!("      postgres:\n        url: \"{}\"\n", key_values("verify-full"));
    let yaml = connector_yaml(&ws.log_path(), &sidecar.address, &sink, &Setup::default());
    let ended = tokio::time::timeout(WAIT, run_connector(parse_connector(&yaml), ConnectorControl::default(), |_| {}))
        .await
        .expect("the connector ends");
    let message = ended.expect_err("verify-full must refuse a certificate for another name").to_string();
    for part in [
        &format!("cannot connect to the PostgreSQL target postgres://gateway@db.example:{PORT}/{db}?sslmode=verify-full"),
        "error performing TLS handshake",
        "certificate not valid for name \"db.example\"",
        "(`sslmode=verify-full` checks the host name",
    ] {
        assert!(message.contains(part), "`{part}` not in: {message}");
    }

    let client = connect(&key_values("verify-ca")).await.expect("verify-ca ignores the host name");
    assert!(encrypted(&client).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_from_another_authority_is_refused() {
    let other = path(&server().other_ca);
    for mode in ["verify-ca", "verify-full", "require"] {
        // `require` with a root certificate checks the chain, as libpq does.
        let err = connect(&url("gateway", "gateway", &format!("sslmode={mode}&sslrootcert={other}"))).await.expect_err(mode);
        assert!(
            err.contains("invalid peer certificate: UnknownIssuer (the server's certificate was not issued by a certificate of `sslrootcert`)"),
            "{mode}: {err}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn require_and_prefer_encrypt_without_a_root_certificate() {
    for tls in ["sslmode=require", "sslmode=prefer", "sslmode=allow", "application_name=default-mode"] {
        let client = connect(&url("gateway", "gateway", tls)).await.unwrap_or_else(|e| panic!("{tls}: {e}"));
        assert!(encrypted(&client).await, "{tls}");
    }
    // `prefer` (the default) on a server without TLS falls back to plain; `require` does not.
    let plain = pg::server_url();
    let client = connect(plain).await.expect("prefer falls back to plain");
    assert!(!encrypted(&client).await);
    let err = connect(&format!("{plain}?sslmode=require")).await.expect_err("require needs TLS");
    assert!(err.contains("server does not support TLS"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disable_gets_the_servers_refusal_where_tls_is_required() {
    server();
    let err = connect(&url("gateway", "gateway", "sslmode=disable")).await.expect_err("hostssl only");
    assert!(err.contains("no pg_hba.conf entry for host \"127.0.0.1\"") && err.contains("no encryption"), "{err}");
    assert!(err.contains("SQLSTATE 28000"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_logs_in_with_the_client_certificate() {
    let db = fresh("tls_mutual", CERT_ROLE).await;
    let tls = server();
    let with_cert = format!("{}&sslcert={}&sslkey={}", verify_full(), path(&tls.client_cert), path(&tls.client_key));
    let gateway_url = url(CERT_ROLE, &db, &with_cert);

    let err = connect(&url(CERT_ROLE, &db, &verify_full())).await.expect_err("no client certificate");
    assert!(err.contains("connection requires a valid client certificate"), "{err}");

    let ws = Workspace::new();
    let log = ws.log_with_events(1_500, 150, 74);
    let sidecar = sidecars::rust_reducer().await;
    let yaml = connector_yaml(&ws.log_path(), &sidecar.address, &pg::postgres_sink_yaml(&gateway_url), &Setup::default());
    let mut running = Running::start(parse_connector(&yaml)).await;
    let head = log.head().unwrap();
    running.wait_for(head, WAIT).await;
    let connections = gateway_connections(&db).await;
    assert!(connections.len() >= 2, "{connections:?}");
    for (ssl, dn) in &connections {
        assert!(*ssl && dn.as_deref() == Some(&*format!("/CN={CERT_ROLE}")), "{connections:?}");
    }
    running.stop().await.expect("clean stop");

    let client = connect(&gateway_url).await.expect("the certificate's role");
    let user: String = client.query_one("SELECT current_user::text", &[]).await.unwrap().get(0);
    assert_eq!(user, CERT_ROLE);
    pg::read_model(&client).await.assert_same(&ReadModel::from_log(&ws.log_path(), |_, _| true));
    let rows = pg::checkpoints(&client, "bookings").await;
    assert_eq!(rows.len(), 4, "{rows:?}");
    assert!(rows.iter().all(|r| r.0 == 4 && r.2 == head as i64), "{rows:?}");
}
