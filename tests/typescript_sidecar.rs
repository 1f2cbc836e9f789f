//! The TypeScript example sidecar (`sidecar-examples/typescript`) end to end, as an operator
//! runs it: the gateway process projects a SQLite event log through the Node.js reducer into a
//! SQLite target, catches up, follows live appends, survives the sidecar being stopped and
//! replaced, and the read model equals the reference computed straight from the log (the guest
//! counters would show any event applied twice). Also: the raw JSON payload, and a rebuild
//! through the reducer's `Describe` reset operations. The reducer's own unit tests
//! (`node --test`) run here too, so `cargo test` exercises them.
//!
//! `scripts/typescript-sidecar.sh` installs, generates and builds (once per test binary) and
//! names the launcher this file starts.

mod support;

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::OnceLock,
    time::Duration,
};

use support::{
    bookings_model::ReadModel,
    fixtures::*,
    processes::{self, Process, SIGTERM},
};

const WAIT: Duration = Duration::from_secs(180);

fn everything(_: &str, _: &str) -> bool {
    true
}

/// The launcher printed by `scripts/typescript-sidecar.sh` (set up once per test binary).
fn typescript_launcher() -> &'static str {
    static LAUNCHER: OnceLock<String> = OnceLock::new();
    LAUNCHER.get_or_init(|| {
        let out = Command::new("bash")
            .arg(processes::repo_root().join("scripts/typescript-sidecar.sh"))
            .stderr(Stdio::inherit())
            .output()
            .expect("run scripts/typescript-sidecar.sh");
        assert!(out.status.success(), "scripts/typescript-sidecar.sh failed ({})", out.status);
        let stdout = String::from_utf8(out.stdout).expect("utf-8 stdout");
        stdout.lines().last().expect("the launcher path on stdout").trim().to_string()
    })
}

/// The TypeScript reducer as a process listening on `address` (`HOST:0` picks a port).
fn typescript_sidecar(address: &str, dir: &Path, name: &str) -> Process {
    let mut command = Command::new(typescript_launcher());
    command.args(["--address", address]);
    Process::spawn(command, dir.join(format!("{name}.log")), true)
}

/// Shows the tail of each process log when the test fails, before the temp folder that holds
/// the logs is removed.
struct LogsOnFailure(Vec<PathBuf>);

impl Drop for LogsOnFailure {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        for path in &self.0 {
            let text = std::fs::read_to_string(path).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            eprintln!("--- last lines of {} ---\n{}", path.display(), lines[lines.len().saturating_sub(40)..].join("\n"));
        }
    }
}

/// Polls the target until every partition's checkpoint has reached `head`; fails at once if
/// the gateway or the sidecar exits meanwhile.
async fn wait_until_applied(target: &Path, head: u64, partitions: u32, gateway: &mut Process, sidecar: &mut Process) {
    poll_until(&format!("the checkpoints to reach the log head {head}"), WAIT, || {
        for (name, process) in [("gateway", &mut *gateway), ("typescript sidecar", &mut *sidecar)] {
            if let Some(status) = process.child.try_wait().unwrap() {
                panic!("the {name} exited ({status}) before the checkpoints reached {head}:\n{}", process.stderr());
            }
        }
        (sqlite_low_watermark(target, "bookings", partitions) >= head).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_projects_through_the_typescript_reducer_then_follows_live_appends() {
    let ws = Workspace::new();
    let mut log = ws.log_with_events(4_000, 400, 61);
    let mut sidecar = typescript_sidecar("127.0.0.1:0", ws.dir.path(), "sidecar-1");
    let address = sidecar.address.clone().expect("sidecar address");
    let setup = Setup::default();
    let config = ws.path("gateway.yaml");
    let target = ws.target_path();
    std::fs::write(&config, connector_yaml(&ws.log_path(), &address, &sqlite_sink_yaml(&target), &setup)).unwrap();
    let mut gateway = processes::gateway_run(&config, ws.dir.path(), "gateway");
    let mut logs = LogsOnFailure(vec![gateway.stderr_path.clone(), sidecar.stderr_path.clone()]);

    // Catch-up.
    let head = log.head().unwrap();
    wait_until_applied(&target, head, setup.partitions, &mut gateway, &mut sidecar).await;
    ReadModel::from_sqlite(&target).assert_same(&ReadModel::from_log(&ws.log_path(), everything));

    // Live: events appended while the gateway is caught up are applied too.
    append_generated(&mut log, 1_000, 100, 62);
    let head = log.head().unwrap();
    wait_until_applied(&target, head, setup.partitions, &mut gateway, &mut sidecar).await;
    ReadModel::from_sqlite(&target).assert_same(&ReadModel::from_log(&ws.log_path(), everything));

    // The process contract of BOOKINGS.md: SIGTERM stops the sidecar with exit 0, here while
    // the gateway holds its streams open. The gateway reconnects to its replacement and
    // resends whatever was unanswered.
    sidecar.signal(SIGTERM);
    let status = sidecar.wait_exit(Duration::from_secs(30));
    assert!(status.success(), "SIGTERM must stop the typescript sidecar cleanly: {status:?}\n{}", sidecar.stderr());
    let mut sidecar = typescript_sidecar(address.trim_start_matches("http://"), ws.dir.path(), "sidecar-2");
    logs.0.push(sidecar.stderr_path.clone());
    append_generated(&mut log, 1_000, 100, 63);
    let head = log.head().unwrap();
    wait_until_applied(&target, head, setup.partitions, &mut gateway, &mut sidecar).await;

    gateway.signal(SIGTERM);
    let status = gateway.wait_exit(Duration::from_secs(30));
    assert!(status.success(), "SIGTERM must stop the gateway cleanly: {status:?}\n{}", gateway.stderr());
    ReadModel::from_sqlite(&target).assert_same(&ReadModel::from_log(&ws.log_path(), everything));
    let rows = sqlite_checkpoints(&target, "bookings");
    assert_eq!(rows.len(), setup.partitions as usize, "{rows:?}");
    assert!(rows.iter().all(|r| r.0 == setup.partitions && r.2 == head), "every partition at the head {head}: {rows:?}");
    assert_eq!(recorded_version(&target).as_deref(), Some("1"), "the gateway records the version Describe declares");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_typescript_reducer_reads_the_raw_json_payload_too() {
    let ws = Workspace::new();
    let log = ws.log_with_events(2_000, 200, 64);
    let sidecar = typescript_sidecar("127.0.0.1:0", ws.dir.path(), "sidecar");
    let _logs = LogsOnFailure(vec![sidecar.stderr_path.clone()]);
    let yaml = connector_yaml(
        &ws.log_path(),
        sidecar.address.as_deref().expect("sidecar address"),
        &sqlite_sink_yaml(&ws.target_path()),
        &Setup::default(),
    );
    // `payload: json`: eventPayload stays empty and the reducer parses payloadJson.
    let yaml = yaml.replacen("      window:", "      payload: json\n      window:", 1);
    assert!(yaml.contains("payload: json"), "{yaml}");

    let mut running = Running::start(parse_connector(&yaml)).await;
    running.wait_for(log.head().unwrap(), WAIT).await;
    running.stop().await.expect("clean stop");
    ReadModel::from_sqlite(&ws.target_path()).assert_same(&ReadModel::from_log(&ws.log_path(), everything));
}

fn recorded_version(target: &Path) -> Option<String> {
    let conn = rusqlite::Connection::open(target).unwrap();
    conn.query_row("SELECT version FROM projections WHERE connector = 'bookings'", [], |r| r.get(0)).ok()
}

/// The reducer serves Describe: the gateway records its version, and when the recorded one
/// differs (and the connector asks for it) rebuilds with the reducer's reset operations.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_version_rebuilds_the_read_model_with_the_typescript_reset_operations() {
    let ws = Workspace::new();
    let head = ws.log_with_events(2_000, 200, 65).head().unwrap();
    let sidecar = typescript_sidecar("127.0.0.1:0", ws.dir.path(), "sidecar");
    let _logs = LogsOnFailure(vec![sidecar.stderr_path.clone()]);
    let target = ws.target_path();
    let yaml = connector_yaml(
        &ws.log_path(),
        sidecar.address.as_deref().expect("sidecar address"),
        &sqlite_sink_yaml(&target),
        &Setup::default(),
    )
    .replacen("      window:", "      rebuild_on_new_version: true\n      window:", 1);
    let project = || async {
        let mut running = Running::start(parse_connector(&yaml)).await;
        running.wait_for(head, WAIT).await;
        running.stop().await.expect("clean stop");
    };

    project().await;
    assert_eq!(recorded_version(&target).as_deref(), Some("1"));
    // As if an older version of the reducer had built the read model.
    rusqlite::Connection::open(&target).unwrap().execute("UPDATE projections SET version = '0'", []).unwrap();
    project().await;
    // The version was recorded again, so the gateway took the rebuild path: it deleted the
    // checkpoints and projected everything again. The guest counters would be doubled had the
    // reset operations not cleared the tables.
    assert_eq!(recorded_version(&target).as_deref(), Some("1"));
    ReadModel::from_sqlite(&target).assert_same(&ReadModel::from_log(&ws.log_path(), everything));
}

#[test]
fn the_typescript_reducer_unit_tests_pass() {
    let out = Command::new("bash")
        .arg(processes::repo_root().join("scripts/typescript-sidecar.sh"))
        .arg("--test")
        .output()
        .expect("run scripts/typescript-sidecar.sh --test");
    let report = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "the TypeScript unit tests failed ({}):\n{report}", out.status);
    // node --test succeeds with zero tests too: make sure it ran some and none failed. Its
    // summary reads `# pass 22` (TAP, when piped) or `ℹ pass 22` (spec, on a terminal).
    let count = |key: &str| {
        report.lines().find_map(|line| {
            let rest = line.strip_prefix("# ").or_else(|| line.strip_prefix("ℹ "))?;
            rest.strip_prefix(key)?.trim().parse::<u32>().ok()
        })
    };
    assert!(count("pass ").is_some_and(|n| n > 0) && count("fail ") == Some(0), "{report}");
}
