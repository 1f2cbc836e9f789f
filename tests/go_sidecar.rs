//! The Go example sidecar (`sidecar-examples/go`) end to end, as an operator runs it: the
//! gateway process projects a SQLite event log through the sidecar's binary into a SQLite
//! target, catches up, follows live appends, survives the sidecar being stopped and started
//! again, and the read model equals the reference computed straight from the log (the guest
//! counters would show any event applied twice). The sidecar's `go test` suite runs here too,
//! so `cargo test` exercises it.
//!
//! The binary comes from `scripts/go-sidecar.sh` (once per test binary; the script itself
//! skips the build when nothing changed). A cold first run downloads grpc-go and protobuf from
//! the Go module proxy and builds them, which takes about a minute.

mod support;

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
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

/// Runs `scripts/go-sidecar.sh` with `args`, capturing everything it prints.
fn setup_script(args: &[&str]) -> Output {
    Command::new("bash")
        .arg(processes::repo_root().join("scripts/go-sidecar.sh"))
        .args(args)
        .output()
        .expect("run scripts/go-sidecar.sh")
}

/// The Go sidecar's executable, built (once per test binary) by `scripts/go-sidecar.sh`.
fn go_sidecar_binary() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| {
        let out = setup_script(&[]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "scripts/go-sidecar.sh failed ({}):\n{stderr}", out.status);
        let stdout = String::from_utf8(out.stdout).expect("utf-8 stdout");
        let binary = PathBuf::from(stdout.lines().last().expect("the executable's path").trim());
        assert!(binary.is_absolute() && binary.is_file(), "not an executable: {binary:?}\n{stderr}");
        binary
    })
}

/// The Go example reducer as a process, listening on `address` (`HOST:PORT`, port 0 for any).
fn go_sidecar(address: &str, dir: &Path, name: &str) -> Process {
    let mut command = Command::new(go_sidecar_binary());
    command.args(["--address", address]).env("REDUCER_TARGET", "sql");
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
        for (name, process) in [("gateway", &mut *gateway), ("go sidecar", &mut *sidecar)] {
            if let Some(status) = process.child.try_wait().unwrap() {
                panic!("the {name} exited ({status}) before the checkpoints reached {head}:\n{}", process.stderr());
            }
        }
        (sqlite_low_watermark(target, "bookings", partitions) >= head).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_projects_through_the_go_reducer_then_follows_live_appends() {
    let ws = Workspace::new();
    let mut log = ws.log_with_events(5_000, 500, 51);
    let mut sidecar = go_sidecar("127.0.0.1:0", ws.dir.path(), "go-sidecar-1");
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
    append_generated(&mut log, 1_000, 100, 52);
    wait_until_applied(&target, log.head().unwrap(), setup.partitions, &mut gateway, &mut sidecar).await;
    ReadModel::from_sqlite(&target).assert_same(&ReadModel::from_log(&ws.log_path(), everything));

    // The process contract of BOOKINGS.md: SIGTERM stops the sidecar with exit 0, here while
    // the gateway holds its streams open. The gateway reconnects to its replacement and
    // resends whatever was unanswered.
    sidecar.signal(SIGTERM);
    let status = sidecar.wait_exit(Duration::from_secs(30));
    assert!(status.success(), "SIGTERM must stop the go sidecar cleanly: {status:?}\n{}", sidecar.stderr());
    let mut sidecar = go_sidecar(address.trim_start_matches("http://"), ws.dir.path(), "go-sidecar-2");
    logs.0.push(sidecar.stderr_path.clone());
    append_generated(&mut log, 1_000, 100, 53);
    let head = log.head().unwrap();
    wait_until_applied(&target, head, setup.partitions, &mut gateway, &mut sidecar).await;

    gateway.signal(SIGTERM);
    let status = gateway.wait_exit(Duration::from_secs(30));
    assert!(status.success(), "SIGTERM must stop the gateway cleanly: {status:?}\n{}", gateway.stderr());
    ReadModel::from_sqlite(&target).assert_same(&ReadModel::from_log(&ws.log_path(), everything));
    let rows = sqlite_checkpoints(&target, "bookings");
    assert_eq!(rows.len(), setup.partitions as usize, "{rows:?}");
    assert!(rows.iter().all(|r| r.0 == setup.partitions && r.2 == head), "every partition at the head {head}: {rows:?}");

    sidecar.signal(SIGTERM);
    let status = sidecar.wait_exit(Duration::from_secs(30));
    assert!(status.success(), "SIGTERM must stop the go sidecar cleanly: {status:?}\n{}", sidecar.stderr());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_go_reducer_reads_the_raw_json_payload_too() {
    let ws = Workspace::new();
    let log = ws.log_with_events(2_000, 200, 54);
    let sidecar = go_sidecar("127.0.0.1:0", ws.dir.path(), "go-sidecar");
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

#[test]
fn the_go_reducer_refuses_an_unknown_target_with_exit_code_2() {
    let out = Command::new(go_sidecar_binary())
        .args(["--address", "127.0.0.1:0"])
        .env("REDUCER_TARGET", "cassandra")
        .output()
        .expect("run the go sidecar");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(out.stdout.is_empty() && stderr.contains("REDUCER_TARGET") && stderr.contains("sql, mongo, elastic"), "{stderr}");
}

#[test]
fn the_go_reducer_unit_tests_pass() {
    let out = setup_script(&["--test"]);
    let report = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "scripts/go-sidecar.sh --test failed ({}):\n{report}", out.status);
    // `go test ./...` prints `ok  <package>` per package whose tests passed: make sure the
    // packages with tests ran them.
    for package in ["projector-gateway/sidecar", "projector-gateway/sidecar/bookings", "projector-gateway/sidecar/server"] {
        assert!(
            report.lines().any(|line| line.starts_with("ok") && line.split_whitespace().nth(1) == Some(package)),
            "no passing tests for {package}:\n{report}"
        );
    }
}
