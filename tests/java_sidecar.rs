//! The Java example sidecar (`sidecar-examples/java`) end to end, as an operator runs it: the
//! gateway process projects a SQLite event log through the sidecar's shaded jar into a SQLite
//! target, catches up, follows live appends, survives the sidecar being stopped and started
//! again, and the read model equals the reference computed straight from the log (the guest
//! counters would show any event applied twice); the gateway records what the sidecar's
//! Describe declared. The sidecar's JUnit tests run here too, so `cargo test` exercises them.
//!
//! The jar and its launcher come from `scripts/java-sidecar.sh` (once per test binary; the
//! script itself skips the build when nothing changed). A cold first run downloads the
//! dependencies and protoc from Maven Central, which takes a minute or two.

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

/// Runs `scripts/java-sidecar.sh` with `args`, capturing everything it prints.
fn setup_script(args: &[&str]) -> Output {
    Command::new("bash")
        .arg(processes::repo_root().join("scripts/java-sidecar.sh"))
        .args(args)
        .output()
        .expect("run scripts/java-sidecar.sh")
}

/// The launcher of the Java sidecar, built (once per test binary) by `scripts/java-sidecar.sh`.
fn java_sidecar_launcher() -> &'static Path {
    static LAUNCHER: OnceLock<PathBuf> = OnceLock::new();
    LAUNCHER.get_or_init(|| {
        let out = setup_script(&[]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "scripts/java-sidecar.sh failed ({}):\n{stderr}", out.status);
        let stdout = String::from_utf8(out.stdout).expect("utf-8 stdout");
        let launcher = PathBuf::from(stdout.lines().last().expect("the launcher path").trim());
        assert!(launcher.is_absolute() && launcher.is_file(), "not a launcher: {launcher:?}\n{stderr}");
        launcher
    })
}

/// The Java example reducer as a process, listening on `address` (`HOST:PORT`, port 0 for any).
/// `Process::spawn` waits for its `listening on` line, which a JVM prints within a second or
/// two (60 s allowed).
fn java_sidecar(address: &str, dir: &Path, name: &str) -> Process {
    let mut command = Command::new(java_sidecar_launcher());
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
        for (name, process) in [("gateway", &mut *gateway), ("java sidecar", &mut *sidecar)] {
            if let Some(status) = process.child.try_wait().unwrap() {
                panic!("the {name} exited ({status}) before the checkpoints reached {head}:\n{}", process.stderr());
            }
        }
        (sqlite_low_watermark(target, "bookings", partitions) >= head).then_some(())
    })
    .await;
}

/// The (projection, version) the gateway recorded for the connector from the sidecar's Describe.
fn recorded_projection(target: &Path) -> Option<(String, String)> {
    let conn = rusqlite::Connection::open(target).unwrap();
    conn.query_row("SELECT projection, version FROM projections WHERE connector = 'bookings'", [], |r| {
        Ok((r.get(0)?, r.get(1)?))
    })
    .ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_projects_through_the_java_reducer_then_follows_live_appends() {
    let ws = Workspace::new();
    let mut log = ws.log_with_events(5_000, 500, 41);
    let mut sidecar = java_sidecar("127.0.0.1:0", ws.dir.path(), "java-sidecar-1");
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
    append_generated(&mut log, 1_000, 100, 42);
    wait_until_applied(&target, log.head().unwrap(), setup.partitions, &mut gateway, &mut sidecar).await;
    ReadModel::from_sqlite(&target).assert_same(&ReadModel::from_log(&ws.log_path(), everything));

    // The process contract of BOOKINGS.md: SIGTERM stops the sidecar with exit 0, here while
    // the gateway holds its streams open. The gateway reconnects to its replacement and
    // resends whatever was unanswered.
    sidecar.signal(SIGTERM);
    let status = sidecar.wait_exit(Duration::from_secs(30));
    assert!(status.success(), "SIGTERM must stop the java sidecar cleanly: {status:?}\n{}", sidecar.stderr());
    let mut sidecar = java_sidecar(address.trim_start_matches("http://"), ws.dir.path(), "java-sidecar-2");
    logs.0.push(sidecar.stderr_path.clone());
    append_generated(&mut log, 1_000, 100, 43);
    let head = log.head().unwrap();
    wait_until_applied(&target, head, setup.partitions, &mut gateway, &mut sidecar).await;

    gateway.signal(SIGTERM);
    let status = gateway.wait_exit(Duration::from_secs(30));
    assert!(status.success(), "SIGTERM must stop the gateway cleanly: {status:?}\n{}", gateway.stderr());
    ReadModel::from_sqlite(&target).assert_same(&ReadModel::from_log(&ws.log_path(), everything));
    let rows = sqlite_checkpoints(&target, "bookings");
    assert_eq!(rows.len(), setup.partitions as usize, "{rows:?}");
    assert!(rows.iter().all(|r| r.0 == setup.partitions && r.2 == head), "every partition at the head {head}: {rows:?}");
    // The gateway asked the sidecar to Describe itself and recorded the answer.
    assert_eq!(recorded_projection(&target), Some(("bookings".into(), "1".into())));

    sidecar.signal(SIGTERM);
    let status = sidecar.wait_exit(Duration::from_secs(30));
    assert!(status.success(), "SIGTERM must stop the java sidecar cleanly: {status:?}\n{}", sidecar.stderr());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_java_reducer_reads_the_raw_json_payload_too() {
    let ws = Workspace::new();
    let log = ws.log_with_events(2_000, 200, 44);
    let sidecar = java_sidecar("127.0.0.1:0", ws.dir.path(), "java-sidecar");
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
fn the_java_reducer_refuses_an_unknown_target_with_exit_code_2() {
    let out = Command::new(java_sidecar_launcher())
        .args(["--address", "127.0.0.1:0"])
        .env("REDUCER_TARGET", "cassandra")
        .output()
        .expect("run the java sidecar");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(out.stdout.is_empty() && stderr.contains("REDUCER_TARGET") && stderr.contains("sql, mongo, elastic"), "{stderr}");
}

#[test]
fn the_java_reducer_unit_tests_pass() {
    let out = setup_script(&["--test"]);
    let report = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "scripts/java-sidecar.sh --test failed ({}):\n{report}", out.status);
    // Surefire's summary: make sure tests ran, and none failed.
    let summary = report
        .lines()
        .filter_map(|line| line.strip_prefix("[INFO] Tests run: "))
        .find(|rest| !rest.contains(" -- in "))
        .unwrap_or_else(|| panic!("no Surefire summary in the output:\n{report}"));
    let ran: u32 = summary.split(',').next().and_then(|n| n.trim().parse().ok()).expect("a test count");
    assert!(ran > 0 && summary.contains("Failures: 0, Errors: 0"), "{summary}\n{report}");
}
