//! No secret leaves the gateway by its logs or its operations endpoint. One `run` uses every
//! kind of secret at once: named management tokens from `--management-token-file`, HTTPS with
//! a certificate of a CA made here, reads behind the token (`--require-token-for-reads`), a
//! PostgreSQL target whose URL holds a password (the test server trusts any), a file
//! connector whose URL password comes from the environment (`${VAR}`), an HTTP sink with an
//! API key header and Basic credentials in its URL (a receiver here checks they arrive), a
//! Redis target whose URL holds a password (at a port where nothing listens: its failure
//! path), and wrong tokens. Connectors are created, disabled, reset, enabled and deleted
//! through the API; statuses, histories, `/ready` and `/metrics` are read. Then every line
//! the process printed (`RUST_LOG=debug`, stdout and stderr) and every body it answered are
//! searched for each secret: none may be there. The definition log is the owner's only
//! (mode 0600), each refused request is logged once with its method, path and peer, and the
//! history says which token made each change. Bad TLS and token files stop `run` with one line.

use std::{
    path::{Path, PathBuf},
    process::{Command, ExitStatus, Stdio},
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{Router, http::HeaderMap};
use base64::Engine;
use reqwest::{Client, Method};
use serde_json::Value;
use crate::support::{
    fixtures::*,
    postgres::{Database, checkpoints, postgres_sink_yaml},
    processes::{self, Process, SIGTERM},
    tls::TestCa,
};

const WAIT: Duration = Duration::from_secs(120);

const PG_PASSWORD: &str = "s3cr3t-pg-pass";
const ENV_PG_PASSWORD: &str = "s3cr3t-env-pg-pass";
const HTTP_API_KEY: &str = "s3cr3t-http-api-key";
const HTTP_BASIC_PASSWORD: &str = "s3cr3t-http-basic";
const REDIS_PASSWORD: &str = "s3cr3t-redis-pass";
const OPS_TOKEN: &str = "s3cr3t-ops-token";
const CI_TOKEN: &str = "s3cr3t-ci-token";
const WRONG_TOKEN: &str = "s3cr3t-wrong-guess";

/// Every secret the run knows, and the Basic credentials as they go on the wire.
fn secrets() -> Vec<String> {
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("hook-user:{HTTP_BASIC_PASSWORD}"));
    [PG_PASSWORD, ENV_PG_PASSWORD, HTTP_API_KEY, HTTP_BASIC_PASSWORD, REDIS_PASSWORD, OPS_TOKEN, CI_TOKEN, WRONG_TOKEN]
        .into_iter()
        .map(str::to_owned)
        .chain([basic])
        .collect()
}

/// The admin URL of a fresh database with `password` in place of the test server's own (it
/// trusts loopback connections whatever the password).
fn with_password(db: &Database, password: &str) -> String {
    let url = db.url.replacen("gateway:gateway@", &format!("gateway:{password}@"), 1);
    assert!(url.contains(password), "unexpected test server URL {}", db.url);
    url
}

/// A one-connector definition (the shape of one entry of `connectors:`) from YAML of the
/// fixtures.
fn definition(config_yaml: &str) -> String {
    config_yaml.strip_prefix("connectors:\n  - ").expect("one connector").replace("\n    ", "\n")
}

/// The HTTPS endpoint as an operator's client sees it: every answer kept for the search.
struct Endpoint {
    client: Client,
    base: String,
    answers: Mutex<Vec<(String, String)>>,
    refused: Mutex<usize>,
}

impl Endpoint {
    /// `method path` with `body`, and `token` as the bearer: (status, body).
    async fn call(&self, method: Method, path: &str, token: Option<&str>, body: &str) -> (u16, String) {
        let mut request = self.client.request(method.clone(), format!("{}{path}", self.base)).body(body.to_owned());
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let status = response.status().as_u16();
        let text = response.text().await.unwrap_or_else(|e| panic!("{method} {path}: body: {e}"));
        if matches!(status, 401 | 403) {
            *self.refused.lock().unwrap() += 1;
        }
        self.answers.lock().unwrap().push((format!("{method} {path} -> {status}"), text.clone()));
        (status, text)
    }

    async fn json(&self, method: Method, path: &str, token: Option<&str>, body: &str) -> (u16, Value) {
        let (status, text) = self.call(method.clone(), path, token, body).await;
        (status, serde_json::from_str(&text).unwrap_or_else(|e| panic!("{method} {path}: {e}: {text}")))
    }

    /// `GET /connectors/{id}` (with the ops token) once `check` holds for it.
    async fn status_when(&self, id: &str, what: &str, check: impl Fn(&Value) -> bool) -> Value {
        let deadline = std::time::Instant::now() + WAIT;
        loop {
            let (status, body) = self.json(Method::GET, &format!("/connectors/{id}"), Some(OPS_TOKEN), "").await;
            if status == 200 && check(&body) {
                return body;
            }
            assert!(std::time::Instant::now() < deadline, "timed out waiting for {id} to be {what}; last status {status}: {body}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// A receiver of the HTTP sink's requests that keeps their headers.
async fn http_receiver() -> (String, Arc<Mutex<Vec<HeaderMap>>>) {
    let received = Arc::new(Mutex::new(Vec::new()));
    let keep = received.clone();
    let app = Router::new().fallback(move |headers: HeaderMap| {
        keep.lock().unwrap().push(headers);
        async { "ok" }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://hook-user:{HTTP_BASIC_PASSWORD}@127.0.0.1:{port}/events"), received)
}

/// The gateway with its stdout and stderr each in a file of `dir`.
fn spawn_gateway(args: &[&str], env: &[(&str, &str)], dir: &Path) -> (Process, PathBuf) {
    let (stdout, stderr) = (dir.join("gateway.out"), dir.join("gateway.err"));
    let child = Command::new(processes::gateway_bin())
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&stdout).unwrap())
        .stderr(std::fs::File::create(&stderr).unwrap())
        .spawn()
        .unwrap();
    (Process { child, stderr_path: stderr, address: None }, stdout)
}

fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).permissions().mode() & 0o777
}

/// Where each secret appears in each text: (what, secret, the line that holds it).
fn leaks<'a>(texts: impl IntoIterator<Item = (&'a str, &'a str)>) -> Vec<String> {
    let secrets = secrets();
    let mut found = Vec::new();
    for (what, text) in texts {
        for line in text.lines() {
            for secret in secrets.iter().filter(|s| line.contains(s.as_str())) {
                let shown: String = line.chars().take(400).collect();
                found.push(format!("{what}: `{secret}` in: {shown}"));
            }
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_in_any_log_line_or_answer() {
    let ws = Workspace::new();
    let head = ws.log_with_events(400, 40, 81).head().unwrap();
    let sidecar = processes::example_sidecar(&format!("127.0.0.1:{}", processes::free_port()), ws.dir.path());
    let sidecar_address = sidecar.address.clone().unwrap();
    let (api_db, file_db) = (Database::fresh("secrets_api").await, Database::fresh("secrets_file").await);
    let (hook_url, hooks) = http_receiver().await;

    // The certificate of the endpoint, from a CA of the test's own.
    let ca = TestCa::new("secrets test CA");
    let (cert, key) = ca.server(&["127.0.0.1", "localhost"]).write(ws.dir.path(), "endpoint");
    // Two operators' tokens, by name.
    let tokens = ws.path("tokens");
    std::fs::write(&tokens, format!("# operators\nops:{OPS_TOKEN}\nci:{CI_TOKEN}\n")).unwrap();
    // A connector of the file whose password comes from the environment.
    let env_url = with_password(&file_db, "${GW_TEST_PG_PASSWORD}");
    let setup = |id: &str| Setup { id: id.into(), ..Setup::default() };
    let config = ws.path("gateway.yaml");
    std::fs::write(&config, connector_yaml(&ws.log_path(), &sidecar_address, &postgres_sink_yaml(&env_url), &setup("pg-file"))).unwrap();

    let state = ws.path("state.db");
    let port = processes::free_port();
    let address = format!("127.0.0.1:{port}");
    let (cert, key, state_arg, tokens_arg, config_arg) =
        (cert.display().to_string(), key.display().to_string(), state.display().to_string(), tokens.display().to_string(), config.display().to_string());
    #[rustfmt::skip]
    let args = [
        "run", "--config", &config_arg, "--state", &state_arg, "--listen", &address, "--management-token-file", &tokens_arg,
        "--require-token-for-reads", "--tls-cert-file", &cert, "--tls-key-file", &key, "--lag-probe-interval-ms", "200",
        "--drain-timeout-secs", "20",
    ];
    let (mut gateway, stdout) = spawn_gateway(&args, &[("RUST_LOG", "debug"), ("GW_TEST_PG_PASSWORD", ENV_PG_PASSWORD)], ws.dir.path());

    let ca_cert = reqwest::Certificate::from_pem(ca.cert_pem().as_bytes()).unwrap();
    let client = Client::builder().add_root_certificate(ca_cert).timeout(Duration::from_secs(60)).build().unwrap();
    let api = Endpoint { client, base: format!("https://{address}"), answers: Mutex::new(Vec::new()), refused: Mutex::new(0) };

    // HTTPS, with the test CA's certificate; probes and metrics need no token.
    poll_until_async("the endpoint to answer over HTTPS", WAIT, || async {
        api.client.get(format!("{}/health", api.base)).send().await.ok().filter(|r| r.status() == 200)
    })
    .await;
    assert_eq!(api.call(Method::GET, "/health", None, "").await, (200, "ok\n".into()));
    assert_eq!(api.call(Method::GET, "/metrics", None, "").await.0, 200);
    assert_ne!(api.call(Method::GET, "/ready", None, "").await.0, 401);
    // Plain HTTP on the same port gets no answer; a client without the CA refuses the server.
    assert_eq!(crate::support::http::get(&address, "/health"), None, "plain HTTP must not be served");
    let plain = reqwest::get(format!("http://{address}/health")).await;
    assert!(plain.is_err() || plain.as_ref().unwrap().status() != 200, "{plain:?}");
    let untrusted = Client::new().get(format!("https://{address}/health")).send().await;
    assert!(untrusted.is_err(), "a certificate of an unknown CA was accepted: {untrusted:?}");

    // Reads need a token; a wrong one is refused like none.
    assert_eq!(api.call(Method::GET, "/connectors", None, "").await.0, 401);
    assert_eq!(api.call(Method::GET, "/connectors", Some(WRONG_TOKEN), "").await.0, 401);
    assert_eq!(api.call(Method::GET, "/connectors/pg-file", None, "").await.0, 401);
    let (status, list) = api.json(Method::GET, "/connectors", Some(CI_TOKEN), "").await;
    assert_eq!((status, list[0]["id"].as_str()), (200, Some("pg-file")), "{list}");

    // A PostgreSQL target whose URL holds a password, created by `ops`.
    let pg = definition(&connector_yaml(&ws.log_path(), &sidecar_address, &postgres_sink_yaml(&with_password(&api_db, PG_PASSWORD)), &setup("pg-api")));
    assert_eq!(api.call(Method::POST, "/connectors", Some(WRONG_TOKEN), &pg).await.0, 401);
    let (status, body) = api.json(Method::POST, "/connectors", Some(OPS_TOKEN), &pg).await;
    assert_eq!(status, 201, "{body}");
    // An HTTP sink with an API key header and Basic credentials in its URL, created by `ci`.
    let hook = format!(
        "id: hooks\nsource: {{ sqlite: {{ path: \"{}\", poll_interval_ms: 2 }} }}\nsink:\n  http:\n    url: \"{hook_url}\"\n    mode: batch\n    headers: {{ x-api-key: \"{HTTP_API_KEY}\" }}\n    checkpoints: {{ file: \"{}\" }}\n",
        ws.log_path().display(),
        ws.path("hooks-checkpoints.json").display()
    );
    let (status, body) = api.json(Method::POST, "/connectors", Some(CI_TOKEN), &hook).await;
    assert_eq!(status, 201, "{body}");
    // A Redis target whose URL holds a password, where nothing listens: it cannot start, and
    // its error is shown.
    let redis_url = format!("redis://:{REDIS_PASSWORD}@127.0.0.1:{}/0", processes::free_port());
    let redis = format!(
        "id: cache\nsource: {{ sqlite: {{ path: \"{}\" }} }}\nsidecar: {{ address: \"{sidecar_address}\" }}\nsink: {{ redis: {{ url: \"{redis_url}\" }} }}\n",
        ws.log_path().display()
    );
    let (status, body) = api.json(Method::POST, "/connectors", Some(OPS_TOKEN), &redis).await;
    assert_eq!(status, 201, "{body}");
    // A definition that does not validate: its problem quotes the URL, password redacted.
    let wrong_scheme = redis.replace("id: cache", "id: cache-2").replace("redis://", "http://");
    let (status, body) = api.json(Method::POST, "/connectors", Some(OPS_TOKEN), &wrong_scheme).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.to_string().contains("http://:***@127.0.0.1"), "the problem quotes the URL, redacted: {body}");

    let at_head = |s: &Value| s["state"] == "running" && s["checkpoint"]["low_watermark"] == head;
    for id in ["pg-file", "pg-api", "hooks"] {
        api.status_when(id, "at the head", at_head).await;
    }
    let cache = api.status_when("cache", "failed or waiting", |s| !matches!(s["state"].as_str(), Some("starting" | "running"))).await;
    assert!(cache.to_string().contains("127.0.0.1"), "the status says why: {cache}");
    // The secrets work: the PostgreSQL server has the checkpoints, the receiver got the key.
    let stored = checkpoints(&api_db.client().await, "pg-api").await;
    assert!(!stored.is_empty() && stored.iter().all(|c| c.2 as u64 == head), "{stored:?}");
    {
        let hooks = hooks.lock().unwrap();
        assert!(!hooks.is_empty());
        let basic = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("hook-user:{HTTP_BASIC_PASSWORD}")));
        assert!(hooks.iter().all(|h| h["x-api-key"] == HTTP_API_KEY && h["authorization"] == basic.as_str()), "{:?}", hooks[0]);
    }

    // Disable, reset and enable: it projects everything again.
    assert_eq!(api.call(Method::POST, "/connectors/pg-api/disable", Some(WRONG_TOKEN), "").await.0, 401);
    assert_eq!(api.call(Method::POST, "/connectors/pg-api/disable", None, "").await.0, 401);
    let (status, body) = api.json(Method::POST, "/connectors/pg-api/disable?wait=true", Some(OPS_TOKEN), "").await;
    assert_eq!((status, body["state"].as_str()), (200, Some("disabled")), "{body}");
    let (status, body) = api.json(Method::POST, "/connectors/pg-api/reset", Some(CI_TOKEN), r#"{"to": "start"}"#).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = api.json(Method::POST, "/connectors/pg-api/enable", Some(OPS_TOKEN), "").await;
    assert_eq!(status, 200, "{body}");
    api.status_when("pg-api", "at the head again", at_head).await;
    let (status, body) = api.json(Method::DELETE, "/connectors/cache", Some(OPS_TOKEN), "").await;
    assert_eq!(status, 200, "{body}");

    // The history needs a token, says who made each change, and shows no password.
    assert_eq!(api.call(Method::GET, "/connectors/pg-api/history", None, "").await.0, 401);
    let (status, history) = api.json(Method::GET, "/connectors/pg-api/history", Some(CI_TOKEN), "").await;
    assert_eq!(status, 200, "{history}");
    let changes: Vec<(&str, &str)> = history.as_array().unwrap().iter().map(|h| (h["event"].as_str().unwrap(), h["by"].as_str().unwrap())).collect();
    assert_eq!(changes, [("created", "ops"), ("disabled", "ops"), ("reset", "ci"), ("enabled", "ops")], "{history}");
    let shown = history[0]["definition"].as_str().unwrap();
    assert!(shown.contains("gateway:***@127.0.0.1") && shown.contains("id: pg-api"), "{shown}");
    let (_, history) = api.json(Method::GET, "/connectors/hooks/history", Some(OPS_TOKEN), "").await;
    assert_eq!(history[0]["by"], "ci", "{history}");
    assert!(history[0]["definition"].as_str().unwrap().contains("x-api-key: \"***\""), "{history}");
    api.json(Method::GET, "/connectors/cache/history", Some(OPS_TOKEN), "").await;
    for path in ["/connectors", "/connectors/pg-file", "/connectors/pg-api", "/connectors/hooks", "/metrics", "/ready"] {
        api.call(Method::GET, path, Some(OPS_TOKEN), "").await;
    }

    // The definition log (and SQLite's files beside it) are the owner's only.
    for file in ["state.db", "state.db-wal", "state.db-shm"] {
        assert_eq!(mode(&ws.path(file)), 0o600, "{file}");
    }

    gateway.signal(SIGTERM);
    let status = gateway.wait_exit(Duration::from_secs(60));
    assert!(status.success(), "{status:?}\n{}", gateway.stderr());

    // Each refused request was logged once, with its method, path and peer.
    let (out, err) = (std::fs::read_to_string(&stdout).unwrap(), std::fs::read_to_string(&gateway.stderr_path).unwrap());
    let refusals: Vec<&str> = err.lines().filter(|l| l.contains("refused a request to the operations endpoint")).collect();
    assert_eq!(refusals.len(), *api.refused.lock().unwrap(), "{refusals:#?}");
    assert!(
        refusals.iter().any(|l| l.contains("WARN")
            && l.contains("method=POST")
            && l.contains("path=\"/connectors/pg-api/disable\"")
            && l.contains("peer=127.0.0.1:")
            && l.contains("authorization=\"wrong or malformed\"")),
        "{refusals:#?}"
    );
    assert!(err.contains("listening on https://"), "the startup line says https");
    assert!(err.lines().count() > 200, "the run logged at debug level: {} lines", err.lines().count());

    let answers = api.answers.lock().unwrap();
    let texts = [("stdout", out.as_str()), ("stderr", err.as_str())].into_iter().chain(answers.iter().map(|(what, body)| (what.as_str(), body.as_str())));
    let found = leaks(texts);
    assert!(found.is_empty(), "secrets leaked ({}):\n{}", found.len(), found.join("\n"));
}

/// `run --state <dir>/state.db --listen <free port>` plus `extra`: its exit status and stderr.
fn run_with(dir: &Path, extra: &[&str]) -> (ExitStatus, String) {
    let out = Command::new(processes::gateway_bin())
        .args(["run", "--state"])
        .arg(dir.join("state.db"))
        .args(["--listen", &format!("127.0.0.1:{}", processes::free_port())])
        .args(extra)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (out.status, String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn bad_tls_and_token_files_stop_run_with_one_line() {
    let ws = Workspace::new();
    let dir = ws.dir.path();
    let ca = TestCa::new("errors test CA");
    let (cert, key) = ca.server(&["127.0.0.1"]).write(dir, "good");
    let (_, other_key) = ca.server(&["127.0.0.1"]).write(dir, "other");
    let empty = ws.path("empty");
    std::fs::write(&empty, "\n").unwrap();
    let missing = ws.path("missing.pem");
    let (cert, key, other_key, empty, missing) =
        (cert.display().to_string(), key.display().to_string(), other_key.display().to_string(), empty.display().to_string(), missing.display().to_string());
    for (extra, code, message) in [
        (vec!["--tls-cert-file", &missing, "--tls-key-file", &key], 3, format!("error: --tls-cert-file {missing}: cannot read it: ")),
        (vec!["--tls-cert-file", &cert, "--tls-key-file", &missing], 3, format!("error: --tls-key-file {missing}: cannot read it: ")),
        (vec!["--tls-cert-file", &empty, "--tls-key-file", &key], 3, format!("error: --tls-cert-file {empty}: no certificate in it")),
        (vec!["--tls-cert-file", &cert, "--tls-key-file", &cert], 3, format!("error: --tls-key-file {cert}: no private key in it")),
        (
            vec!["--tls-cert-file", &cert, "--tls-key-file", &other_key],
            3,
            format!("error: --tls-cert-file {cert} with --tls-key-file {other_key}: the private key does not belong to the (first) certificate"),
        ),
        (vec!["--management-token-file", &empty], 2, format!("error: --management-token-file {empty}: holds no token")),
        (vec!["--management-token-file", &missing], 2, format!("error: --management-token-file {missing}: cannot read it: ")),
        (vec!["--management-token", " "], 2, "error: --management-token: empty".into()),
    ] {
        let (status, stderr) = run_with(dir, &extra);
        assert_eq!(status.code(), Some(code), "{extra:?}: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "{extra:?}: one line: {stderr}");
        assert!(stderr.starts_with(&message), "{extra:?}: {stderr}");
    }
    // Both TLS files or neither; one token source; reads guarded only with a token.
    for extra in [
        vec!["--tls-cert-file", &cert],
        vec!["--management-token", "t", "--management-token-file", &missing],
        vec!["--require-token-for-reads"],
    ] {
        let (status, stderr) = run_with(dir, &extra);
        assert_eq!(status.code(), Some(2), "{extra:?}: {stderr}");
    }
}
