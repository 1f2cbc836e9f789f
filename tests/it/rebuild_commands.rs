//! Blue/green rebuilds as an operator starts them, on the real binary and a SQLite target:
//! `POST /connectors/{id}/rebuild` on a running gateway, the `rebuild` command and its
//! `--status`, and the rebuild `run` starts by itself (`on_new_version: blue_green` with
//! `blue_green.sidecar` reporting a new version), resumed after the gateway is killed with
//! SIGKILL in the middle of it. Each ends with the read model exactly the new version's
//! reference, computed from the log alone.

use std::{path::Path, process::Command, time::Duration};

use serde_json::Value;

use crate::{
    blue_green::{blue_green_yaml, description, reduce_v2, reference_v2},
    support::{
        bookings_model::ReadModel,
        fixtures::*,
        http::{get, request},
        processes::{self, Process},
        sidecars::{self, Script},
    },
};

const WAIT: Duration = Duration::from_secs(120);

/// `run --config <config> --listen <free port> <extra>`; returns the process and the
/// endpoint's address.
fn run_listening(config: &Path, dir: &Path, name: &str, extra: &[&str]) -> (Process, String) {
    let address = format!("127.0.0.1:{}", processes::free_port());
    let mut command = Command::new(processes::gateway_bin());
    command.args(["run", "--config"]).arg(config).args(["--listen", &address]).args(extra).env("RUST_LOG", "info");
    (Process::spawn(command, dir.join(format!("{name}.log")), false), address)
}

/// A gateway running connector `id` (on `on_new_version: blue_green`, keeping one old version)
/// whose read model version 1 has caught up with a log of `events` events; `with_state`: with a
/// definition log (`--state`), so that the management API can disable and enable.
struct VersionOne {
    ws: Workspace,
    log: projector_gateway::sources::sqlite::EventLog,
    target: std::path::PathBuf,
    config: std::path::PathBuf,
    gateway: Process,
    address: String,
    _v1: sidecars::LocalSidecar,
}

async fn version_one(id: &str, events: usize, seed: u64, with_state: bool) -> VersionOne {
    let ws = Workspace::new();
    let log = ws.log_with_events(events, events / 10, seed);
    let head = log.head().unwrap();
    let target = ws.target_path();
    let v1 = sidecars::describing(description("1")).await;
    let config = ws.path("gateway.yaml");
    std::fs::write(&config, blue_green_yaml(id, &ws, &v1.address, &sqlite_sink_yaml(&target), 1)).unwrap();
    let state = format!("--state={}", ws.path("definitions.db").display());
    let extra: &[&str] = if with_state { &[&state] } else { &[] };
    let (gateway, address) = run_listening(&config, ws.dir.path(), "gateway", extra);
    poll_until("version 1 to be built", WAIT, || (sqlite_low_watermark(&target, id, 4) >= head).then_some(())).await;
    VersionOne { ws, log, target, config, gateway, address, _v1: v1 }
}

/// The `rebuild` object of the connector's status, once the endpoint answers with one.
fn rebuild_status(address: &str, id: &str) -> Option<Value> {
    let (status, body) = get(address, &format!("/connectors/{id}"))?;
    let body: Value = serde_json::from_str(&body).ok()?;
    (status == 200).then(|| body["rebuild"].clone()).filter(|r| !r.is_null())
}

/// `projector-gateway rebuild --config <config> --connector <id> <extra>`: exit code, stdout
/// and stderr.
fn rebuild_command(config: &Path, id: &str, extra: &[&str]) -> (i32, String, String) {
    let output = Command::new(processes::gateway_bin())
        .args(["rebuild", "--config"])
        .arg(config)
        .args(["--connector", id])
        .args(extra)
        .output()
        .expect("rebuild runs");
    (output.status.code().unwrap_or(-1), String::from_utf8_lossy(&output.stdout).into_owned(), String::from_utf8_lossy(&output.stderr).into_owned())
}

/// The `rebuild --status` line of `version`, split into its columns.
fn version_line(status: &str, version: &str) -> Option<Vec<String>> {
    status.lines().map(|l| l.split_whitespace().map(str::to_owned).collect::<Vec<_>>()).find(|cols| cols.first().map(String::as_str) == Some(version))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_verb_and_the_rebuild_command_swap_new_versions_in_under_a_running_gateway() {
    let id = "bg-commands";
    let VersionOne { ws, target, config, mut gateway, address, _v1, .. } = version_one(id, 3_000, 61, false).await;
    let (code, out, err) = rebuild_command(&config, id, &["--status"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("no blue/green rebuild recorded"), "{out}");

    // Version 2 through the management API of the running gateway: 202, then the status
    // follows it to `live`.
    let v2 = sidecars::describing_with(Script::Map(reduce_v2), description("2")).await;
    let body = format!("{{\"sidecar\": \"{}\"}}", v2.address);
    let (status, answer) = request(&address, "POST", &format!("/connectors/{id}/rebuild"), &body, None).expect("the endpoint answers");
    assert_eq!(status, 202, "{answer}");
    let (status, answer) = request(&address, "POST", &format!("/connectors/{id}/rebuild"), "{\"sidecars\": 1}", None).unwrap();
    assert_eq!(status, 400, "an unknown field is refused: {answer}");
    let live = poll_until("the rebuild to version 2 to be live", WAIT, || rebuild_status(&address, id).filter(|r| r["state"] == "live")).await;
    assert_eq!((live["version"].as_str(), live["replaces"].as_str()), (Some("2"), Some("1")), "{live}");
    ReadModel::from_sqlite(&target).assert_same(&reference_v2(&ws.log_path()));
    let (code, out, _) = rebuild_command(&config, id, &["--status"]);
    assert_eq!(code, 0);
    assert_eq!(version_line(&out, "2").map(|c| c[1].clone()).as_deref(), Some("live"), "{out}");
    assert_eq!(version_line(&out, "1").map(|c| c[1].clone()).as_deref(), Some("retired"), "{out}");

    // Version 3 (the plain reducer) with the command, beside the same running gateway: it
    // swaps, and version 1 goes by the policy (one old version kept: 2).
    let v3 = sidecars::describing(description("3")).await;
    let (code, out, err) = rebuild_command(&config, id, &["--sidecar", &v3.address]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("version 3 is live, it replaced version 2; dropped by policy: 1"), "{out}");
    ReadModel::from_sqlite(&target).assert_same(&ReadModel::from_log(&ws.log_path(), |_, _| true));
    assert!(!ws.path("target.db.v1").exists(), "version 1's file was dropped");
    let (code, out, err) = rebuild_command(&config, id, &["--sidecar", &v3.address]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("the sidecar reports version 3, which the live read model already is"), "{out}");
    gateway.signal(processes::SIGTERM);
    assert!(gateway.wait_exit(WAIT).success(), "{}", gateway.stderr());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_rebuilds_by_itself_for_a_new_version_and_resumes_the_rebuild_after_a_sigkill() {
    let id = "bg-automatic";
    let VersionOne { ws, mut log, target, config, gateway: mut first, _v1, .. } = version_one(id, 30_000, 62, false).await;
    first.signal(processes::SIGTERM);
    assert!(first.wait_exit(WAIT).success(), "{}", first.stderr());
    let v1_model = ReadModel::from_sqlite(&target);

    // Version 2's sidecar beside version 1's: the next start builds version 2 by itself.
    let v2 = sidecars::describing_with(Script::Map(reduce_v2), description("2")).await;
    let yaml = std::fs::read_to_string(&config).unwrap().replace("blue_green: {", &format!("blue_green: {{ sidecar: \"{}\", ", v2.address));
    std::fs::write(&config, yaml).unwrap();
    let (mut second, address) = run_listening(&config, ws.dir.path(), "second", &[]);
    poll_until("the automatic rebuild to be building", WAIT, || {
        rebuild_status(&address, id).filter(|r| r["state"] == "building" && r["position"].as_u64().is_some_and(|p| p > 0))
    })
    .await;
    // Killed in the middle: the live read model is version 1, untouched.
    second.kill_hard();
    ReadModel::from_sqlite(&target).assert_same(&v1_model);
    let (code, out, _) = rebuild_command(&config, id, &["--status"]);
    assert_eq!(code, 0);
    assert_eq!(version_line(&out, "2").map(|c| c[1].clone()).as_deref(), Some("building"), "{out}");

    // The next start resumes it and swaps; events appended meanwhile are in version 2 too.
    append_generated(&mut log, 500, 300, 63);
    let (mut third, address) = run_listening(&config, ws.dir.path(), "third", &[]);
    poll_until("the resumed rebuild to be live", WAIT, || rebuild_status(&address, id).filter(|r| r["state"] == "live")).await;
    assert!(third.stderr().contains("blue/green rebuild: resuming version 2"), "the start says it resumes the rebuild: {}", third.stderr());
    ReadModel::from_sqlite(&target).assert_same(&reference_v2(&ws.log_path()));
    third.signal(processes::SIGTERM);
    assert!(third.wait_exit(WAIT).success(), "{}", third.stderr());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disabling_the_connector_stops_its_api_rebuild_and_enabling_it_resumes_the_rebuild() {
    let id = "bg-disable";
    let VersionOne { ws, target, config, mut gateway, address, _v1, .. } = version_one(id, 30_000, 64, true).await;
    let v1_model = ReadModel::from_sqlite(&target);
    let v2 = sidecars::describing_with(Script::Map(reduce_v2), description("2")).await;
    let body = format!("{{\"sidecar\": \"{}\"}}", v2.address);
    let (status, answer) = request(&address, "POST", &format!("/connectors/{id}/rebuild"), &body, None).unwrap();
    assert_eq!(status, 202, "{answer}");
    poll_until("the rebuild to be building", WAIT, || {
        rebuild_status(&address, id).filter(|r| r["state"] == "building" && r["position"].as_u64().is_some_and(|p| p > 0))
    })
    .await;

    // Disabled: the rebuild stops before its swap; version 1 stays live and untouched.
    let (status, answer) = request(&address, "POST", &format!("/connectors/{id}/disable?wait=true"), "", None).unwrap();
    assert_eq!(status, 200, "{answer}");
    let stopped = poll_until("the rebuild to stop", WAIT, || rebuild_status(&address, id).filter(|r| r["state"] == "stopped")).await;
    assert_eq!(stopped["version"], "2", "{stopped}");
    ReadModel::from_sqlite(&target).assert_same(&v1_model);
    let (code, out, _) = rebuild_command(&config, id, &["--status"]);
    assert_eq!(code, 0);
    assert_eq!(version_line(&out, "2").map(|c| c[1].clone()).as_deref(), Some("building"), "resumable: {out}");

    // Enabled: the connector's start resumes the rebuild (at the sidecar recorded with it) and
    // swaps version 2 in.
    let (status, answer) = request(&address, "POST", &format!("/connectors/{id}/enable"), "", None).unwrap();
    assert_eq!(status, 200, "{answer}");
    poll_until("the resumed rebuild to be live", WAIT, || rebuild_status(&address, id).filter(|r| r["state"] == "live")).await;
    assert!(gateway.stderr().contains("blue/green rebuild: resuming version 2"), "{}", gateway.stderr());
    ReadModel::from_sqlite(&target).assert_same(&reference_v2(&ws.log_path()));
    gateway.signal(processes::SIGTERM);
    assert!(gateway.wait_exit(WAIT).success(), "{}", gateway.stderr());
}
