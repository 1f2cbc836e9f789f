//! The management API of `run --listen --state`, on the real binary with the example sidecar
//! and SQLite targets: disable, reset and enable a connector of the config file; create and
//! delete one at runtime; and every change survives a restart of the gateway because it is
//! replayed from the definition log.

use std::{path::Path, process::Command, time::Duration};

use projector_gateway::{demo::BookingsGenerator, sources::sqlite::NewEvent};
use serde_json::Value;
use crate::support::{
    bookings_model::ReadModel,
    fixtures::*,
    http::{get, request},
    processes::{self, Process, SIGTERM},
};

const WAIT: Duration = Duration::from_secs(120);
const TOKEN: &str = "s3cret-token";

/// `run --listen <address> --state <dir>/state.db` (plus `--config` when given), changes
/// guarded by `TOKEN`.
fn gateway(config: Option<&Path>, address: &str, dir: &Path, name: &str) -> Process {
    let mut command = Command::new(processes::gateway_bin());
    command.arg("run");
    if let Some(config) = config {
        command.arg("--config").arg(config);
    }
    command
        .args(["--listen", address, "--state"])
        .arg(dir.join("state.db"))
        .args(["--management-token", TOKEN, "--drain-timeout-secs", "20", "--lag-probe-interval-ms", "50"])
        .env("RUST_LOG", "info");
    Process::spawn(command, dir.join(format!("{name}.log")), false)
}

fn stop(mut gateway: Process) {
    gateway.signal(SIGTERM);
    let status = gateway.wait_exit(Duration::from_secs(30));
    assert!(status.success(), "{status:?}\n{}", gateway.stderr());
}

/// A change with the token: (status, JSON body).
fn change(address: &str, method: &str, path: &str, body: &str) -> (u16, Value) {
    let (status, text) = request(address, method, path, body, Some(TOKEN)).unwrap_or_else(|| panic!("{method} {path}: no answer"));
    (status, serde_json::from_str(&text).unwrap_or_else(|e| panic!("{method} {path}: {e}: {text}")))
}

/// `GET /connectors/<id>` once it answers.
async fn status_of(address: &str, id: &str) -> Value {
    let (_, body) = poll_until("the endpoint to answer", WAIT, || get(address, &format!("/connectors/{id}")).filter(|(s, _)| *s == 200)).await;
    serde_json::from_str(&body).unwrap()
}

/// Waits until connector `id` has committed up to `head` in `target`.
async fn wait_applied(target: &Path, id: &str, head: u64) {
    poll_until(&format!("connector {id} to commit position {head}"), WAIT, || (sqlite_low_watermark(target, id, 4) == head).then_some(())).await;
}

/// RoomBooked events of bookings named `skipped-<n>`, so whether any was applied shows in the
/// target's `bookings` table.
fn skipped_bookings(count: usize) -> Vec<NewEvent> {
    let mut generator = BookingsGenerator::new(77, 1_000);
    let mut out = Vec::new();
    while out.len() < count {
        for mut event in generator.take(100) {
            if event.event_type == "RoomBooked" && out.len() < count {
                let mut data: Value = serde_json::from_str(&event.data).unwrap();
                let name = format!("skipped-{}", out.len());
                data["bookingId"] = Value::String(name.clone());
                event.data = data.to_string();
                event.stream = name;
                out.push(event);
            }
        }
    }
    out
}

fn skipped_rows(target: &Path) -> i64 {
    let conn = rusqlite::Connection::open(target).unwrap();
    conn.query_row("SELECT count(*) FROM bookings WHERE booking_id LIKE 'skipped-%'", [], |r| r.get(0)).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disable_reset_and_enable_a_connector_of_the_file_across_a_restart() {
    let ws = Workspace::new();
    let mut log = ws.log_with_events(1_000, 100, 51);
    let first_head = log.head().unwrap();
    let sidecar = processes::example_sidecar(&format!("127.0.0.1:{}", processes::free_port()), ws.dir.path());
    let yaml = connector_yaml(&ws.log_path(), sidecar.address.as_deref().unwrap(), &sqlite_sink_yaml(&ws.target_path()), &Setup::default());
    let config = ws.path("gateway.yaml");
    std::fs::write(&config, yaml).unwrap();
    let address = format!("127.0.0.1:{}", processes::free_port());
    let gateway_one = gateway(Some(&config), &address, ws.dir.path(), "gateway-1");
    wait_applied(&ws.target_path(), "bookings", first_head).await;

    // Changes need the token; a running connector cannot be reset.
    let (status, body) = request(&address, "POST", "/connectors/bookings/disable", "", None).unwrap();
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("Authorization: Bearer"), "{body}");
    assert_eq!(status_of(&address, "bookings").await["state"], "running");
    let (status, body) = change(&address, "POST", "/connectors/bookings/reset", r#"{"to": "start"}"#);
    assert_eq!(status, 409, "{body}");
    assert!(body["error"].as_str().unwrap().contains("disable it first"), "{body}");
    let (status, body) = change(&address, "POST", "/connectors/nobody/disable", "");
    assert_eq!((status, body["error"].as_str().unwrap()), (404, "no connector `nobody`; GET /connectors lists them"));

    // Disabled with `wait`: the answer comes once the connector has stopped, so what is
    // appended now stays unapplied.
    let (status, body) = change(&address, "POST", "/connectors/bookings/disable?wait=true", "");
    assert_eq!((status, body["state"].as_str()), (200, Some("disabled")), "{body}");
    log.append(&skipped_bookings(30)).unwrap();
    let skipped_head = log.head().unwrap();
    assert_eq!(sqlite_low_watermark(&ws.target_path(), "bookings", 4), first_head);
    assert_eq!(get(&address, "/ready").unwrap(), (200, "ready\n".into()), "a disabled connector does not make the gateway unready");
    // A disabled connector falls behind its source, and shows it.
    let behind = poll_until("the lag of the disabled connector to count what was appended", WAIT, || {
        let (_, body) = get(&address, "/connectors/bookings")?;
        let status: Value = serde_json::from_str(&body).ok()?;
        (status["source"]["lag_positions"] == skipped_head - first_head).then_some(status)
    })
    .await;
    assert_eq!(behind["checkpoint"]["low_watermark"], first_head, "{behind}");

    // Reset to the end: every partition resumes after the head of the log as it is now.
    let (status, body) = change(&address, "POST", "/connectors/bookings/reset", r#"{"to": "end"}"#);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["resumes_after"], skipped_head);
    assert_eq!(body["checkpoints_before"].as_array().unwrap().len(), 4, "{body}");
    assert!(body["checkpoints_before"].as_array().unwrap().iter().all(|c| c["position"] == first_head), "{body}");
    let stored = sqlite_checkpoints(&ws.target_path(), "bookings");
    assert_eq!(stored, (0..4).map(|p| (4, p, skipped_head)).collect::<Vec<_>>());
    let status = status_of(&address, "bookings").await;
    assert_eq!(status["checkpoint"]["low_watermark"], skipped_head, "the status shows the checkpoints as reset: {status}");

    // A restart keeps it disabled: the definition log says so.
    stop(gateway_one);
    let gateway_two = gateway(Some(&config), &address, ws.dir.path(), "gateway-2");
    let status = status_of(&address, "bookings").await;
    assert_eq!((status["state"].as_str(), status["origin"].as_str()), (Some("disabled"), Some("file")), "{status}");
    append_generated(&mut log, 300, 100, 52);
    let last_head = log.head().unwrap();

    // Enabled: it projects what came after the reset position, and nothing of what it skipped.
    let (status, body) = change(&address, "POST", "/connectors/bookings/enable", "");
    assert_eq!(status, 200, "{body}");
    wait_applied(&ws.target_path(), "bookings", last_head).await;
    assert_eq!(skipped_rows(&ws.target_path()), 0, "events before the reset position were applied");
    ReadModel::from_sqlite(&ws.target_path()).assert_same(&ReadModel::from_log(&ws.log_path(), |stream, _| !stream.starts_with("skipped-")));
    assert_eq!(status_of(&address, "bookings").await["state"], "running");

    // The history holds definitions as created (credentials included), so it needs the token.
    assert_eq!(get(&address, "/connectors/bookings/history").unwrap().0, 401);
    let (status, history) = change(&address, "GET", "/connectors/bookings/history", "");
    assert_eq!(status, 200, "{history}");
    let events: Vec<&str> = history.as_array().unwrap().iter().map(|h| h["event"].as_str().unwrap()).collect();
    assert_eq!(events, ["disabled", "reset", "enabled"], "{history}");
    assert_eq!(history[1]["to"], skipped_head.to_string());
    stop(gateway_two);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_and_delete_connectors_at_runtime_and_a_restart_keeps_them() {
    let ws = Workspace::new();
    let mut log = ws.log_with_events(800, 80, 61);
    let head = log.head().unwrap();
    let sidecar = processes::example_sidecar(&format!("127.0.0.1:{}", processes::free_port()), ws.dir.path());
    let address = format!("127.0.0.1:{}", processes::free_port());
    // No config file: every connector comes from the API.
    let gateway_one = gateway(None, &address, ws.dir.path(), "gateway-1");
    poll_until("the endpoint to answer", WAIT, || get(&address, "/connectors").filter(|(s, b)| *s == 200 && b == "[]")).await;

    // An invalid definition: each problem with its key path, nothing created.
    let (status, body) = change(&address, "POST", "/connectors", "id: broken\nsource: { sqlite: { path: x.db } }\nsidecar: { windoww: 3 }\n");
    assert_eq!(status, 400, "{body}");
    let paths: Vec<&str> = body["problems"].as_array().unwrap().iter().map(|p| p["path"].as_str().unwrap()).collect();
    assert!(paths.contains(&"sink") && paths.iter().any(|p| p.starts_with("sidecar")), "{body}");
    assert_eq!(get(&address, "/connectors/broken").unwrap().0, 404);

    // Created from YAML (the same text a file's `connectors` item holds).
    let yaml = connector_yaml(&ws.log_path(), sidecar.address.as_deref().unwrap(), &sqlite_sink_yaml(&ws.target_path()), &Setup { id: "made-at-runtime".into(), ..Setup::default() });
    let definition = yaml.strip_prefix("connectors:\n  - ").unwrap().replace("\n    ", "\n");
    let (status, body) = change(&address, "POST", "/connectors", &definition);
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["origin"], "api");
    let (status, body) = change(&address, "POST", "/connectors", &definition);
    assert_eq!(status, 409, "{body}");
    assert!(body["error"].as_str().unwrap().contains("already exists"), "{body}");
    wait_applied(&ws.target_path(), "made-at-runtime", head).await;
    ReadModel::from_sqlite(&ws.target_path()).assert_same(&ReadModel::from_log(&ws.log_path(), |_, _| true));

    // After a restart it is there again and follows the log.
    stop(gateway_one);
    let gateway_two = gateway(None, &address, ws.dir.path(), "gateway-2");
    let status = status_of(&address, "made-at-runtime").await;
    assert_eq!(status["origin"], "api", "{status}");
    append_generated(&mut log, 200, 80, 62);
    let head = log.head().unwrap();
    wait_applied(&ws.target_path(), "made-at-runtime", head).await;
    ReadModel::from_sqlite(&ws.target_path()).assert_same(&ReadModel::from_log(&ws.log_path(), |_, _| true));
    stop(gateway_two);

    // The same id in a config file as well: the gateway refuses to guess which one is meant.
    let config = ws.path("gateway.yaml");
    std::fs::write(&config, &yaml).unwrap();
    let out = Command::new(processes::gateway_bin())
        .args(["run", "--config"])
        .arg(&config)
        .arg("--state")
        .arg(ws.path("state.db"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("connector `made-at-runtime` is defined in the config file and was also created through the management API"), "{stderr}");

    // Deleted: stopped and forgotten, across restarts too; its checkpoints stay in the target.
    let gateway_three = gateway(None, &address, ws.dir.path(), "gateway-3");
    status_of(&address, "made-at-runtime").await;
    let (status, body) = change(&address, "DELETE", "/connectors/made-at-runtime", "");
    assert_eq!(status, 200, "{body}");
    assert_eq!(get(&address, "/connectors/made-at-runtime").unwrap().0, 404);
    stop(gateway_three);
    let gateway_four = gateway(None, &address, ws.dir.path(), "gateway-4");
    poll_until("the endpoint to answer", WAIT, || get(&address, "/connectors").filter(|(s, _)| *s == 200)).await;
    assert_eq!(get(&address, "/connectors").unwrap(), (200, "[]".into()));
    assert_eq!(sqlite_low_watermark(&ws.target_path(), "made-at-runtime", 4), head);
    let (status, history) = change(&address, "GET", "/connectors/made-at-runtime/history", "");
    assert_eq!(status, 200, "{history}");
    let events: Vec<&str> = history.as_array().unwrap().iter().map(|h| h["event"].as_str().unwrap()).collect();
    assert_eq!(events, ["created", "deleted"], "{history}");
    stop(gateway_four);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_updates_validates_answers_json_everywhere_and_matches_its_openapi_document() {
    let ws = Workspace::new();
    let mut log = ws.log_with_events(500, 50, 81);
    let sidecar = processes::example_sidecar(&format!("127.0.0.1:{}", processes::free_port()), ws.dir.path());
    let address = format!("127.0.0.1:{}", processes::free_port());
    let gateway = gateway(None, &address, ws.dir.path(), "gateway");
    poll_until("the endpoint to answer", WAIT, || get(&address, "/connectors").filter(|(s, _)| *s == 200)).await;
    let setup = Setup { id: "api".into(), ..Setup::default() };
    let definition = |target: &Path| {
        let yaml = connector_yaml(&ws.log_path(), sidecar.address.as_deref().unwrap(), &sqlite_sink_yaml(target), &setup);
        yaml.strip_prefix("connectors:\n  - ").unwrap().replace("\n    ", "\n")
    };
    let first_target = ws.path("first.db");

    // Validate: what a create would say, nothing created.
    let (status, body) = change(&address, "POST", "/validate", &definition(&first_target));
    assert_eq!((status, &body["valid"], &body["sink"]), (200, &Value::Bool(true), &Value::from("sqlite")), "{body}");
    let (status, body) = change(&address, "POST", "/validate", "id: x\nsource: { sqlite: { path: x.db } }\n");
    assert_eq!(status, 400, "{body}");
    assert!(body["problems"].as_array().unwrap().iter().any(|p| p["path"] == "sink"), "{body}");
    assert_eq!(get(&address, "/connectors").unwrap(), (200, "[]".into()));

    let (status, body) = change(&address, "POST", "/connectors", &definition(&first_target));
    assert_eq!(status, 201, "{body}");
    let head = log.head().unwrap();
    wait_applied(&first_target, "api", head).await;
    let status = status_of(&address, "api").await;
    assert_eq!(status["partitions"].as_array().unwrap().len(), 4, "per-partition positions: {status}");

    // Update: the connector drains, restarts with the new definition (here a new target).
    let second_target = ws.path("second.db");
    let (status, body) = change(&address, "PUT", "/connectors/api", &definition(&second_target));
    assert_eq!(status, 200, "{body}");
    append_generated(&mut log, 100, 20, 82);
    let head = log.head().unwrap();
    wait_applied(&second_target, "api", head).await;
    let (status, body) = change(&address, "PUT", "/connectors/api", &definition(&second_target).replace("id: api", "id: other"));
    assert_eq!(status, 400, "{body}");
    assert!(body["error"].as_str().unwrap().contains("an id cannot change"), "{body}");

    // Disable answers at once; the state shows the stop.
    let (status, body) = change(&address, "POST", "/connectors/api/disable", "");
    assert!(matches!(status, 200 | 202), "{status} {body}");
    poll_until("the connector to show disabled", WAIT, || get(&address, "/connectors/api").filter(|(_, b)| b.contains("\"disabled\""))).await;

    // No destructive default: a reset says where to.
    let (status, body) = change(&address, "POST", "/connectors/api/reset", "");
    assert_eq!(status, 400, "{body}");
    assert!(body["error"].as_str().unwrap().contains("a reset says where to"), "{body}");
    let (_, history) = change(&address, "GET", "/connectors/api/history", "");
    let events: Vec<&str> = history.as_array().unwrap().iter().map(|h| h["event"].as_str().unwrap()).collect();
    assert_eq!(events, ["created", "updated", "disabled"], "{history}");

    // JSON for what is not served.
    let (status, body) = change(&address, "GET", "/nowhere", "");
    assert_eq!(status, 404, "{body}");
    assert!(body["error"].as_str().unwrap().starts_with("no route GET /nowhere"), "{body}");
    let (status, body) = change(&address, "PATCH", "/connectors/api", "");
    assert_eq!(status, 405, "{body}");
    assert!(body["error"].as_str().unwrap().contains("it takes GET, PUT, DELETE"), "{body}");

    // Every method and path of /openapi.json is served (none falls through to the fallbacks).
    let (status, document) = change(&address, "GET", "/openapi.json", "");
    assert_eq!(status, 200);
    let mut checked = 0;
    for (path, item) in document["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys().filter(|k| ["get", "put", "post", "delete"].contains(&k.as_str())) {
            // On a connector that does not exist, so nothing changes.
            let concrete = path.replace("{id}", "no-such-connector");
            let (status, body) = request(&address, &method.to_uppercase(), &concrete, "{}", Some(TOKEN)).unwrap();
            assert!(status != 405 && !body.contains("no route"), "{method} {path} is documented but not served: {status} {body}");
            checked += 1;
        }
    }
    assert!(checked >= 14, "{checked}");
    stop(gateway);
}
