//! Connector definitions shared by several gateways through a definition log in PostgreSQL
//! (`run --state postgres://...`), on the real binary: two gateways (replicas `a` and `b`)
//! with the example sidecar and a SQLite log, each writing its own SQLite target (the
//! definition names it as `${REPLICA_TARGET}`, expanded from each gateway's environment).
//! A connector created, disabled, enabled, updated and deleted through either gateway's API
//! is run, stopped, restarted and forgotten by both; a restarted gateway replays the same set;
//! two creates of one id at once through both get one `201` and one `409`, and of a delete and
//! a disable at once, the second is refused saying why. The log's history
//! redacts secrets and names the gateway that wrote each change, and no gateway prints the
//! log's password.

use std::{path::Path, process::Command, time::Duration};

use projector_gateway::management::store::{DefinitionEvent, DefinitionLog, Location, StoreError};
use serde_json::Value;

use crate::support::{
    fixtures::*,
    http::{get, request},
    postgres::Database,
    processes::{self, Process, SIGTERM},
};

const WAIT: Duration = Duration::from_secs(120);
const TOKEN: &str = "shared-s3cret-token";
/// The password in the log's URL (the test server trusts loopback whatever the password): no
/// gateway may print it.
const STATE_PASSWORD: &str = "s3cr3t-state-pass";

/// The state URL of `db` with [`STATE_PASSWORD`] in it.
fn state_url(db: &Database) -> String {
    let url = db.url.replacen("gateway:gateway@", &format!("gateway:{STATE_PASSWORD}@"), 1);
    assert!(url.contains(STATE_PASSWORD), "unexpected test server URL {}", db.url);
    url
}

/// One replica: `run --listen <address> --state <state> --instance-id <instance>`, polling the
/// shared log every 50 ms, its targets `<dir>/<instance>-target.db` and beside it.
struct Replica {
    instance: &'static str,
    address: String,
    process: Process,
}

impl Replica {
    fn start(instance: &'static str, state: &str, dir: &Path, run: usize) -> Self {
        let address = format!("127.0.0.1:{}", processes::free_port());
        let mut command = Command::new(processes::gateway_bin());
        command
            .args(["run", "--listen", &address, "--state", state, "--instance-id", instance, "--state-poll-ms", "50"])
            .args(["--management-token", TOKEN, "--drain-timeout-secs", "20", "--lag-probe-interval-ms", "50", "--quiet"])
            .env("REPLICA_TARGET", target(dir, instance, ""))
            .env("RUST_LOG", "info");
        let process = Process::spawn(command, dir.join(format!("gateway-{instance}-{run}.log")), false);
        Self { instance, address, process }
    }

    /// Waits for the endpoint to answer.
    async fn ready(self) -> Self {
        poll_until(&format!("gateway {} to answer", self.instance), WAIT, || get(&self.address, "/connectors").filter(|(s, _)| *s == 200)).await;
        self
    }

    /// A change with the token: (status, JSON body).
    fn change(&self, method: &str, path: &str, body: &str) -> (u16, Value) {
        change(&self.address, method, path, body)
    }

    /// Waits until `GET /connectors/<id>` answers `status` with a body `check` accepts.
    async fn until(&self, id: &str, what: &str, check: impl Fn(u16, &Value) -> bool) -> Value {
        let path = format!("/connectors/{id}");
        poll_until(&format!("gateway {}: connector {id} {what}", self.instance), WAIT, || {
            let (status, body) = get(&self.address, &path)?;
            let body: Value = serde_json::from_str(&body).ok()?;
            check(status, &body).then_some(body)
        })
        .await
    }

    async fn until_state(&self, id: &str, state: &str) -> Value {
        self.until(id, &format!("is {state}"), |status, body| status == 200 && body["state"] == state).await
    }

    fn stop(mut self) -> String {
        self.process.signal(SIGTERM);
        let status = self.process.wait_exit(Duration::from_secs(30));
        let log = std::fs::read_to_string(&self.process.stderr_path).unwrap_or_default();
        assert!(status.success(), "{status:?}\n{}", self.process.stderr());
        log
    }
}

/// The replica's target for the definition of `version`.
fn target(dir: &Path, instance: &str, version: &str) -> std::path::PathBuf {
    std::path::PathBuf::from(format!("{}{version}", dir.join(format!("{instance}-target.db")).display()))
}

fn change(address: &str, method: &str, path: &str, body: &str) -> (u16, Value) {
    let (status, text) = request(address, method, path, body, Some(TOKEN)).unwrap_or_else(|| panic!("{method} {path}: no answer"));
    (status, serde_json::from_str(&text).unwrap_or_else(|e| panic!("{method} {path}: {e}: {text}")))
}

/// The definition of connector `id` from the workspace's log through `sidecar` into each
/// replica's own target (`${REPLICA_TARGET}`, then `version`: a new version, a new target).
fn definition(ws: &Workspace, sidecar: &str, id: &str, version: &str) -> String {
    let sink = format!(
        "      sqlite:\n        path: \"${{REPLICA_TARGET}}{version}\"\n        init_sql_file: \"{}\"\n",
        schema_file().display()
    );
    let yaml = connector_yaml(&ws.log_path(), sidecar, &sink, &Setup { id: id.into(), partitions: 2, ..Setup::default() });
    yaml.strip_prefix("connectors:\n  - ").unwrap().replace("\n    ", "\n")
}

/// Waits until the replica's target of `version` holds connector `id`'s checkpoints at `head`
/// in both partitions: it runs the connector.
async fn applied(dir: &Path, instance: &str, version: &str, id: &str, head: u64) {
    let target = target(dir, instance, version);
    poll_until(&format!("gateway {instance} to commit {id} up to {head} in {}", target.display()), WAIT, || {
        (sqlite_low_watermark(&target, id, 2) == head).then_some(())
    })
    .await;
}

fn events(history: &Value) -> Vec<(String, String)> {
    history
        .as_array()
        .unwrap_or_else(|| panic!("not a history: {history}"))
        .iter()
        .map(|h| (h["event"].as_str().unwrap().to_owned(), h["gateway"].as_str().unwrap_or("-").to_owned()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_through_either_gateway_are_run_by_both_and_a_restart_replays_them() {
    let ws = Workspace::new();
    let mut log = ws.log_with_events(600, 60, 91);
    let db = Database::fresh("shared_defs").await;
    let state = state_url(&db);
    let sidecar = processes::example_sidecar(&format!("127.0.0.1:{}", processes::free_port()), ws.dir.path());
    let sidecar = sidecar.address.clone().unwrap();
    let dir = ws.dir.path();
    let (a, b) = (Replica::start("a", &state, dir, 1), Replica::start("b", &state, dir, 1));
    let (a, b) = (a.ready().await, b.ready().await);

    // Created through a: both run it, each into its own target.
    let (status, body) = a.change("POST", "/connectors", &definition(&ws, &sidecar, "shared", ""));
    assert_eq!(status, 201, "{body}");
    let on_b = b.until_state("shared", "running").await;
    assert_eq!(on_b["origin"], "api", "{on_b}");
    let head = log.head().unwrap();
    applied(dir, "a", "", "shared", head).await;
    applied(dir, "b", "", "shared", head).await;

    // Disabled through b: a stops it too, and keeps what it had committed.
    let (status, body) = b.change("POST", "/connectors/shared/disable?wait=true", "");
    assert_eq!((status, body["state"].as_str()), (200, Some("disabled")), "{body}");
    a.until_state("shared", "disabled").await;
    append_generated(&mut log, 100, 60, 92);
    let second_head = log.head().unwrap();
    assert_eq!(sqlite_low_watermark(&target(dir, "a", ""), "shared", 2), head, "a disabled connector applied what came after");

    // Enabled through a: b runs it again and catches up.
    let (status, body) = a.change("POST", "/connectors/shared/enable", "");
    assert_eq!(status, 200, "{body}");
    b.until_state("shared", "running").await;
    applied(dir, "b", "", "shared", second_head).await;
    applied(dir, "a", "", "shared", second_head).await;

    // Updated through b (into a new target): both restart with it and fill their new target.
    let (status, body) = b.change("PUT", "/connectors/shared", &definition(&ws, &sidecar, "shared", ".v2"));
    assert_eq!(status, 200, "{body}");
    applied(dir, "a", ".v2", "shared", second_head).await;
    applied(dir, "b", ".v2", "shared", second_head).await;

    // Disabled and reset through a (its target's checkpoints), enabled again: both run it.
    let (status, body) = a.change("POST", "/connectors/shared/disable?wait=true", "");
    assert_eq!(status, 200, "{body}");
    b.until_state("shared", "disabled").await;
    let (status, body) = a.change("POST", "/connectors/shared/reset", r#"{"to": "start"}"#);
    assert_eq!((status, body["checkpoints_after"].as_array().map(Vec::len)), (200, Some(0)), "{body}");
    let (status, body) = a.change("POST", "/connectors/shared/enable", "");
    assert_eq!(status, 200, "{body}");
    b.until_state("shared", "running").await;
    applied(dir, "a", ".v2", "shared", second_head).await;

    // A restarted b replays the same set: the connector, updated, running.
    let b_log = b.stop();
    for change in ["enabled", "reset"] {
        assert!(b_log.contains(&format!("connector shared {change} by gateway a through the shared definition log")), "{b_log}");
    }
    let b = Replica::start("b", &state, dir, 2).ready().await;
    b.until_state("shared", "running").await;
    append_generated(&mut log, 100, 60, 93);
    let third_head = log.head().unwrap();
    applied(dir, "b", ".v2", "shared", third_head).await;
    assert_eq!(sqlite_low_watermark(&target(dir, "b", ""), "shared", 2), second_head, "the first target is not written any more");

    // Deleted through a: gone from b, whose status and history say so.
    let (status, body) = a.change("DELETE", "/connectors/shared", "");
    assert_eq!(status, 200, "{body}");
    b.until("shared", "is gone", |status, _| status == 404).await;
    assert_eq!(get(&b.address, "/connectors").unwrap(), (200, "[]".into()));
    let (status, history) = b.change("GET", "/connectors/shared/history", "");
    assert_eq!(status, 200, "{history}");
    let expected: Vec<(String, String)> =
        [("created", "a"), ("disabled", "b"), ("enabled", "a"), ("updated", "b"), ("disabled", "a"), ("reset", "a"), ("enabled", "a"), ("deleted", "a")]
        .iter()
        .map(|(e, g)| (e.to_string(), g.to_string()))
        .collect();
    assert_eq!(events(&history), expected, "{history}");

    // Changes another gateway made are logged once each, by the gateway that follows them, and
    // no gateway printed the log's password.
    let (a_log, b_log) = (a.stop(), b.stop());
    assert_eq!(a_log.matches("connector shared disabled by gateway b through the shared definition log").count(), 1, "{a_log}");
    assert_eq!(a_log.matches("connector shared updated by gateway b through the shared definition log").count(), 1, "{a_log}");
    assert!(!a_log.contains("connector shared created by gateway a"), "a applied its own change twice: {a_log}");
    assert!(b_log.contains("connector shared deleted by gateway a through the shared definition log"), "{b_log}");
    for text in [&a_log, &b_log] {
        assert!(!text.contains(STATE_PASSWORD), "the log's password was printed:\n{text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_at_once_through_two_gateways_make_one_and_refuse_the_other() {
    let ws = Workspace::new();
    ws.log_with_events(200, 20, 94);
    let db = Database::fresh("shared_race").await;
    let state = state_url(&db);
    let sidecar = processes::example_sidecar(&format!("127.0.0.1:{}", processes::free_port()), ws.dir.path());
    let sidecar = sidecar.address.clone().unwrap();
    let dir = ws.dir.path();
    let (a, b) = (Replica::start("a", &state, dir, 1), Replica::start("b", &state, dir, 1));
    let (a, b) = (a.ready().await, b.ready().await);

    for round in 0..3 {
        let id = format!("raced-{round}");
        let definition = definition(&ws, &sidecar, &id, "");
        let (on_a, on_b) = at_once((&a, "POST", "/connectors", &definition), (&b, "POST", "/connectors", &definition));
        let mut statuses = [on_a.0, on_b.0];
        statuses.sort();
        assert_eq!(statuses, [201, 409], "a: {on_a:?}\nb: {on_b:?}");
        let refused = if on_a.0 == 409 { &on_a.1 } else { &on_b.1 };
        let message = refused["error"].as_str().unwrap();
        assert!(message.contains("already exists") || message.contains("was created through gateway"), "{message}");

        // Both run the one connector; the log holds one creation.
        a.until_state(&id, "running").await;
        b.until_state(&id, "running").await;
        let (_, history) = a.change("GET", &format!("/connectors/{id}/history"), "");
        assert_eq!(events(&history).len(), 1, "{history}");
    }
    let rows = db.client().await.query_one("SELECT count(*) FROM projector_gateway.connector_definition_events", &[]).await.unwrap();
    assert_eq!(rows.get::<_, i64>(0), 3, "one creation per id");

    // A delete through a and a disable through b at once: one decided on a state the other
    // changed meanwhile is refused, saying why; one decided after the other was applied is made
    // (or, the disable, finds the connector gone). Both gateways forget the connector.
    let (on_a, on_b) = at_once((&a, "DELETE", "/connectors/raced-0", ""), (&b, "POST", "/connectors/raced-0/disable", ""));
    let error = |body: &Value| body["error"].as_str().unwrap_or_default().to_owned();
    match (on_a.0, on_b.0) {
        (200, 404 | 200 | 202) => {}
        (200, 409) => assert!(error(&on_b.1).starts_with("connector `raced-0` was deleted through gateway a while"), "{on_b:?}"),
        (409, 200 | 202) => {
            assert!(error(&on_a.1).starts_with("connector `raced-0` was disabled through gateway b while"), "{on_a:?}");
            let (status, body) = a.change("DELETE", "/connectors/raced-0", "");
            assert_eq!(status, 200, "{body}");
        }
        _ => panic!("a: {on_a:?}\nb: {on_b:?}"),
    }
    b.until("raced-0", "is gone", |status, _| status == 404).await;
    assert_eq!(get(&a.address, "/connectors/raced-0").unwrap().0, 404);
    a.stop();
    b.stop();
}

/// Sends two changes at once (each waits at a barrier, then goes): their answers.
fn at_once(first: (&Replica, &str, &str, &str), second: (&Replica, &str, &str, &str)) -> ((u16, Value), (u16, Value)) {
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(2));
    let send = |(replica, method, path, body): (&Replica, &str, &str, &str)| {
        let (barrier, address, method, path, body) = (barrier.clone(), replica.address.clone(), method.to_owned(), path.to_owned(), body.to_owned());
        std::thread::spawn(move || {
            barrier.wait();
            change(&address, &method, &path, &body)
        })
    };
    let (first, second) = (send(first), send(second));
    (first.join().unwrap(), second.join().unwrap())
}

#[tokio::test]
async fn a_postgres_log_redacts_secrets_in_its_history_and_refuses_stale_appends() {
    let db = Database::fresh("shared_log").await;
    let location = Location::from_state(Path::new(&format!("{}?schema=ops", state_url(&db)))).unwrap();
    let a = DefinitionLog::open(&location, "gateway-a").await.unwrap();
    let b = DefinitionLog::open(&location, "gateway-b").await.unwrap();
    assert!(a.is_shared());
    assert!(!a.name().contains(STATE_PASSWORD), "{}", a.name());
    assert!(a.name().contains("\"ops\".connector_definition_events"), "{}", a.name());

    let definition = "id: a\nsink: { postgres: { url: \"postgres://gw:pg-pass-123@db/app\" } }\n";
    let first = a.append("a", &DefinitionEvent::Created { definition: definition.into() }, Some(0)).await.unwrap();
    // b has applied nothing yet: its append decided on an empty log is refused.
    let stale = b.append("a", &DefinitionEvent::Created { definition: "id: a".into() }, Some(0)).await.unwrap_err();
    assert!(matches!(stale, StoreError::Behind { after: 0, head, .. } if head == first), "{stale}");
    let second = b.append("a", &DefinitionEvent::Disabled, Some(first)).await.unwrap();

    let history = b.history("a").await.unwrap();
    assert_eq!(history.len(), 2, "{history:?}");
    assert_eq!(history[0]["definition"], "id: a\nsink: { postgres: { url: \"postgres://gw:***@db/app\" } }\n");
    assert_eq!((history[0]["gateway"].as_str(), history[1]["gateway"].as_str()), (Some("gateway-a"), Some("gateway-b")));
    assert!(history[0]["recorded_at"].as_str().unwrap().ends_with('Z'), "{history:?}");
    assert!(!format!("{history:?}").contains("pg-pass-123"), "{history:?}");

    let replayed = a.replay().await.unwrap();
    assert_eq!(replayed.created, [("a".to_owned(), definition.to_owned())], "the replay keeps the definition whole");
    assert_eq!((replayed.disabled, replayed.through), (vec!["a".to_owned()], second));
    let followed: Vec<(i64, Option<String>)> = a.since(first).await.unwrap().into_iter().map(|e| (e.seq, e.instance)).collect();
    assert_eq!(followed, [(second, Some("gateway-b".to_owned()))]);
    let count = db.client().await.query_one("SELECT count(*) FROM ops.connector_definition_events", &[]).await.unwrap();
    assert_eq!(count.get::<_, i64>(0), 2, "nothing was appended by the refused append");
}

#[test]
fn a_log_that_cannot_be_reached_stops_run_with_one_line_without_the_password() {
    let ws = Workspace::new();
    let port = processes::free_port();
    let out = Command::new(processes::gateway_bin())
        .args(["run", "--listen", &format!("127.0.0.1:{}", processes::free_port()), "--state"])
        .arg(format!("postgres://gateway:{STATE_PASSWORD}@127.0.0.1:{port}/nowhere?schema=ops&connect_timeout=5"))
        .env("RUST_LOG", "info")
        .current_dir(ws.dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
    let expected = format!("error: --state: definition log postgres://gateway@127.0.0.1:{port}/nowhere (table \"ops\".connector_definition_events): cannot connect: ");
    assert!(stderr.starts_with(&expected), "{stderr}");
    assert!(!stderr.contains(STATE_PASSWORD), "{stderr}");
}
