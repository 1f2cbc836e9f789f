//! TLS to the reducer sidecar (`sidecar.tls`): the example reducer served over TLS by tonic's
//! own server, with certificates made here by a CA of the test's own. One-way TLS with the
//! CA's certificate (`ca_file`), mutual TLS (`cert_file`/`key_file`), a certificate for another
//! name than the address's host (`domain`); refusals that say which TLS check failed, with
//! nothing applied and the checkpoint where it was; and `validate` naming unusable files at
//! their key paths.

use std::{path::Path, process::Command, time::Duration};

use crate::support::{
    bookings_model::ReadModel,
    fixtures::*,
    processes::{Process, gateway_bin},
    tls::{TestCa, TlsSidecar, serve_reducer, slow_link},
};

const WAIT: Duration = Duration::from_secs(60);

fn everything(_: &str, _: &str) -> bool {
    true
}

/// A connector from the workspace's log through `address` into its SQLite target, with these
/// `sidecar.tls` settings (YAML), if any.
fn yaml(ws: &Workspace, address: &str, tls: Option<&str>) -> String {
    let yaml = connector_yaml(&ws.log_path(), address, &sqlite_sink_yaml(&ws.target_path()), &Setup::default());
    match tls {
        Some(tls) => yaml.replace("      window:", &format!("      tls: {tls}\n      window:")),
        None => yaml,
    }
}

fn quoted(path: &Path) -> String {
    format!("\"{}\"", path.display())
}

/// Runs the connector in this process until it has applied the whole log, then stops it, and
/// checks the read model and that every partition stored the head as its checkpoint.
async fn project_everything(ws: &Workspace, yaml: &str, head: u64) {
    let mut running = Running::start(parse_connector(yaml)).await;
    running.wait_for(head, WAIT).await;
    running.stop().await.expect("clean stop");
    ReadModel::from_sqlite(&ws.target_path()).assert_same(&ReadModel::from_log(&ws.log_path(), everything));
    let rows = sqlite_checkpoints(&ws.target_path(), "bookings");
    assert_eq!(rows.len(), 4, "{rows:?}");
    assert!(rows.iter().all(|r| r.2 == head), "every partition at the head {head}: {rows:?}");
}

fn bookings_in_target(ws: &Workspace) -> i64 {
    let conn = rusqlite::Connection::open(ws.target_path()).unwrap();
    conn.query_row("SELECT count(*) FROM bookings", [], |r| r.get(0)).unwrap_or(0)
}

/// Runs `yaml` in the gateway binary (as an operator would) until its log has a line about
/// `address` that holds `expected`, then stops it; returns the log. The connector keeps
/// retrying a sidecar it cannot reach, so the binary is stopped by the test. The reducer's
/// repeated attempts are logged too (at debug level): under mutual TLS the sidecar refuses
/// once the gateway's side of the handshake is over, and an attempt whose call had not left
/// by then only sees the connection close.
async fn logged_by_the_gateway(ws: &Workspace, yaml: &str, address: &str, expected: &str) -> String {
    let config = ws.path("gateway.yaml");
    std::fs::write(&config, yaml).unwrap();
    let mut command = Command::new(gateway_bin());
    command.args(["run", "--config"]).arg(&config).env("RUST_LOG", "info,projector_gateway::reducer=debug");
    let mut gateway = Process::spawn(command, ws.path("gateway.log"), false);
    let deadline = tokio::time::Instant::now() + WAIT;
    let log = loop {
        let log = std::fs::read_to_string(&gateway.stderr_path).unwrap_or_default();
        if log.lines().any(|line| line.contains(address) && line.contains(expected)) {
            break log;
        }
        assert!(tokio::time::Instant::now() < deadline, "no line about {address} with `{expected}` in the gateway's log within {WAIT:?}:\n{log}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    gateway.kill_hard();
    assert!(!log.contains("panicked"), "{log}");
    log
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_with_the_ca_that_signed_the_sidecar_s_certificate_projects_everything() {
    let ws = Workspace::new();
    let head = ws.log_with_events(2_000, 200, 91).head().unwrap();
    let ca = TestCa::new("sidecars CA");
    let sidecar = serve_reducer(&ca.server(&["127.0.0.1"]), None).await;
    let ca_file = ca.write(ws.dir.path(), "ca.pem");
    let yaml = yaml(&ws, &sidecar.address, Some(&format!("{{ ca_file: {} }}", quoted(&ca_file))));
    project_everything(&ws, &yaml, head).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_projects_with_the_client_certificate_and_is_refused_without_it() {
    let ws = Workspace::new();
    let head = ws.log_with_events(2_000, 200, 92).head().unwrap();
    let ca = TestCa::new("sidecars CA");
    let clients = TestCa::new("gateways CA");
    let sidecar = serve_reducer(&ca.server(&["127.0.0.1"]), Some(&clients)).await;
    let ca_file = ca.write(ws.dir.path(), "ca.pem");

    // Without a client certificate: the sidecar ends the handshake; the gateway says so, and
    // keeps asking (nothing is applied meanwhile). Under TLS 1.3 the refusal comes once the
    // gateway's side of the handshake is over: across a link between pods the gateway's first
    // call is on its way by then, and fails with the refusal; on loopback it can overtake the
    // call, which then only sees the connection close. The relay gives the link its latency.
    let (relay, _relay) = slow_link(format!("127.0.0.1:{}", sidecar.port), Duration::from_millis(50)).await;
    let relayed = format!("https://{relay}");
    let one_way = yaml(&ws, &relayed, Some(&format!("{{ ca_file: {} }}", quoted(&ca_file))));
    let expected = "TLS handshake failed: the sidecar refused the handshake (CertificateRequired alert); does it require a client certificate (`sidecar.tls.cert_file` and `key_file`) signed by a CA it trusts?";
    logged_by_the_gateway(&ws, &one_way, &relayed, expected).await;
    assert_eq!(bookings_in_target(&ws), 0);
    assert!(sqlite_checkpoints(&ws.target_path(), "bookings").iter().all(|r| r.2 == 0));

    // A client certificate of a CA the sidecar does not trust is refused the same way.
    let (cert, key) = TestCa::new("someone else's CA").client("gateway").write(ws.dir.path(), "stranger");
    let stranger = yaml(&ws, &relayed, Some(&format!("{{ ca_file: {}, cert_file: {}, key_file: {} }}", quoted(&ca_file), quoted(&cert), quoted(&key))));
    logged_by_the_gateway(&ws, &stranger, &relayed, "TLS handshake failed: the sidecar refused the handshake (UnknownCA alert)").await;
    assert_eq!(bookings_in_target(&ws), 0);

    // With the certificate its CA signed: everything is applied.
    let (cert, key) = clients.client("gateway").write(ws.dir.path(), "gateway");
    let mutual = yaml(&ws, &sidecar.address, Some(&format!("{{ ca_file: {}, cert_file: {}, key_file: {} }}", quoted(&ca_file), quoted(&cert), quoted(&key))));
    project_everything(&ws, &mutual, head).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sidecar_certificate_the_ca_did_not_sign_is_refused_and_nothing_moves() {
    let ws = Workspace::new();
    let mut log = ws.log_with_events(1_000, 100, 93);
    let ca = TestCa::new("sidecars CA");
    let sidecar = serve_reducer(&ca.server(&["127.0.0.1"]), None).await;
    let ca_file = ca.write(ws.dir.path(), "ca.pem");
    let trusted = yaml(&ws, &sidecar.address, Some(&format!("{{ ca_file: {} }}", quoted(&ca_file))));
    let first_head = log.head().unwrap();
    project_everything(&ws, &trusted, first_head).await;
    let (bookings, checkpoints) = (bookings_in_target(&ws), sqlite_checkpoints(&ws.target_path(), "bookings"));

    // New events, and a CA file of another CA: the handshake fails on the sidecar's
    // certificate, said so; nothing of the new events is applied, no checkpoint moves.
    append_generated(&mut log, 500, 50, 94);
    let other_ca = TestCa::new("another CA").write(ws.dir.path(), "other-ca.pem");
    let untrusted = yaml(&ws, &sidecar.address, Some(&format!("{{ ca_file: {} }}", quoted(&other_ca))));
    let expected = "TLS handshake failed: invalid peer certificate: UnknownIssuer";
    let logged = logged_by_the_gateway(&ws, &untrusted, &sidecar.address, expected).await;
    assert!(!logged.contains("transport error"), "the TLS failure is named, not a bare transport error: {logged}");
    assert_eq!(bookings_in_target(&ws), bookings);
    assert_eq!(sqlite_checkpoints(&ws.target_path(), "bookings"), checkpoints);
    assert!(checkpoints.iter().all(|r| r.2 == first_head), "{checkpoints:?}");

    // No `tls` at all: the Mozilla roots, which do not hold a test CA either.
    let mozilla = yaml(&ws, &sidecar.address, None);
    logged_by_the_gateway(&ws, &mozilla, &sidecar.address, expected).await;
    assert_eq!(sqlite_checkpoints(&ws.target_path(), "bookings"), checkpoints);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn domain_names_the_certificate_s_name_when_the_address_is_an_ip() {
    let ws = Workspace::new();
    let head = ws.log_with_events(1_000, 100, 95).head().unwrap();
    let ca = TestCa::new("sidecars CA");
    let sidecar: TlsSidecar = serve_reducer(&ca.server(&["reducer.internal"]), None).await;
    let ca_file = ca.write(ws.dir.path(), "ca.pem");

    // The certificate does not hold 127.0.0.1: refused, with the names it holds.
    let by_ip = yaml(&ws, &sidecar.address, Some(&format!("{{ ca_file: {} }}", quoted(&ca_file))));
    let expected = r#"TLS handshake failed: invalid peer certificate: certificate not valid for name "127.0.0.1"; certificate is only valid for DnsName("reducer.internal")"#;
    logged_by_the_gateway(&ws, &by_ip, &sidecar.address, expected).await;
    assert_eq!(bookings_in_target(&ws), 0);

    let named = yaml(&ws, &sidecar.address, Some(&format!("{{ ca_file: {}, domain: reducer.internal }}", quoted(&ca_file))));
    project_everything(&ws, &named, head).await;
}

#[test]
fn validate_accepts_an_https_sidecar_and_names_unusable_tls_files_at_their_key_paths() {
    let ws = Workspace::new();
    ws.log_with_events(1, 1, 96);
    let ca = TestCa::new("sidecars CA");
    let ca_file = ca.write(ws.dir.path(), "ca.pem");
    let (cert, key) = ca.client("gateway").write(ws.dir.path(), "gateway");
    let config = ws.path("gateway.yaml");
    let validate = |sidecar: &str| {
        let text = format!(
            "connectors:\n  - id: a\n    source: {{ sqlite: {{ path: {} }} }}\n    sidecar: {sidecar}\n    sink: {{ sqlite: {{ path: t.db }} }}\n",
            quoted(&ws.log_path())
        );
        std::fs::write(&config, text).unwrap();
        let out = Command::new(gateway_bin()).args(["validate", "--config", config.to_str().unwrap()]).output().unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
    };

    for good in [
        "{ address: \"https://reducer.example:443\" }".to_string(),
        format!("{{ address: \"https://127.0.0.1:50443\", tls: {{ ca_file: {}, cert_file: {}, key_file: {}, domain: reducer.internal }} }}", quoted(&ca_file), quoted(&cert), quoted(&key)),
    ] {
        let (code, stdout, stderr) = validate(&good);
        assert_eq!(code, Some(0), "{good}: {stderr}");
        assert!(stdout.contains("ok, 1 connector(s): a"), "{stdout}");
    }

    let missing = ws.path("missing/ca.pem");
    let not_pem = ws.path("not-pem.txt");
    std::fs::write(&not_pem, "not a certificate").unwrap();
    let cases = [
        (
            format!("{{ address: \"https://127.0.0.1:50443\", tls: {{ ca_file: {} }} }}", quoted(&missing)),
            format!("connectors[0].sidecar.tls.ca_file: {}: no such file", missing.display()),
        ),
        (
            format!("{{ address: \"https://127.0.0.1:50443\", tls: {{ ca_file: {} }} }}", quoted(&not_pem)),
            format!("connectors[0].sidecar.tls.ca_file: {}: holds no PEM certificate", not_pem.display()),
        ),
        (
            format!("{{ address: \"https://127.0.0.1:50443\", tls: {{ cert_file: {} }} }}", quoted(&cert)),
            "connectors[0].sidecar.tls.key_file: missing; `cert_file`".to_string(),
        ),
        (
            format!("{{ address: \"https://127.0.0.1:50443\", tls: {{ cert_file: {}, key_file: {} }} }}", quoted(&cert), quoted(&missing)),
            format!("connectors[0].sidecar.tls.key_file: {}: no such file", missing.display()),
        ),
        (
            format!("{{ address: \"http://127.0.0.1:50051\", tls: {{ ca_file: {} }} }}", quoted(&ca_file)),
            "connectors[0].sidecar.tls: TLS settings for `http://127.0.0.1:50051`, a plain-text address; use `https://127.0.0.1:50051`".to_string(),
        ),
    ];
    for (sidecar, expected) in cases {
        let (code, _, stderr) = validate(&sidecar);
        assert_eq!(code, Some(2), "{sidecar}: {stderr}");
        assert!(stderr.contains(&expected), "`{expected}` not in:\n{stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}
