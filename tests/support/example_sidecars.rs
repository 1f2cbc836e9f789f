//! The example sidecars of `sidecar-examples/` as the processes an operator runs, each set up
//! by its own `scripts/<language>-sidecar.sh`, and the scenarios every example must pass
//! through the gateway process: catch-up, live appends, the sidecar stopped with SIGTERM and
//! replaced while the gateway holds its streams, and the raw JSON payload.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    process::{Command, Output},
    sync::Mutex,
    time::Duration,
};

use super::{
    bookings_model::ReadModel,
    fixtures::*,
    processes::{self, Process, SIGTERM},
};

const WAIT: Duration = Duration::from_secs(180);

/// One example sidecar and how to start it.
pub struct Example {
    pub language: &'static str,
    /// Set-up script (relative to the repository): prints the program to run as its last
    /// stdout line; `--test` runs the example's own unit tests.
    script: &'static str,
    /// Arguments before `--address` (relative paths are resolved against the repository).
    program_args: &'static [&'static str],
}

pub const PYTHON: Example =
    Example { language: "python", script: "scripts/python-sidecar.sh", program_args: &["sidecar-examples/python/reducer.py"] };
pub const TYPESCRIPT: Example = Example { language: "typescript", script: "scripts/typescript-sidecar.sh", program_args: &[] };
pub const GO: Example = Example { language: "go", script: "scripts/go-sidecar.sh", program_args: &[] };
pub const JAVA: Example = Example { language: "java", script: "scripts/java-sidecar.sh", program_args: &[] };

impl Example {
    /// Runs the set-up script with `args`, capturing what it prints.
    pub fn run_script(&self, args: &[&str]) -> Output {
        Command::new("bash")
            .arg(processes::repo_root().join(self.script))
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("run {}: {e}", self.script))
    }

    /// The program that starts the sidecar, set up once per test binary.
    pub fn program(&self) -> PathBuf {
        static PROGRAMS: Mutex<Option<HashMap<&'static str, PathBuf>>> = Mutex::new(None);
        let mut programs = PROGRAMS.lock().unwrap_or_else(|e| e.into_inner());
        let programs = programs.get_or_insert_with(HashMap::new);
        if let Some(program) = programs.get(self.language) {
            return program.clone();
        }
        let out = self.run_script(&[]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{} failed ({}):\n{stderr}", self.script, out.status);
        let stdout = String::from_utf8(out.stdout).expect("utf-8 stdout");
        let program = PathBuf::from(stdout.lines().last().expect("the program's path").trim());
        assert!(program.is_absolute() && program.is_file(), "not a program: {program:?}\n{stderr}");
        programs.insert(self.language, program.clone());
        program
    }

    /// The sidecar's command with these extra environment variables, before `--address`.
    pub fn command(&self) -> Command {
        let mut command = Command::new(self.program());
        command.args(self.program_args.iter().map(|a| processes::repo_root().join(a)));
        command.env("REDUCER_TARGET", "sql");
        command
    }

    /// The sidecar as a process listening on `address` (`HOST:PORT`, port 0 for any).
    pub fn spawn(&self, address: &str, dir: &Path, name: &str) -> Process {
        let mut command = self.command();
        command.args(["--address", address]);
        Process::spawn(command, dir.join(format!("{name}.log")), true)
    }
}

/// Shows the tail of each process log when the test fails, before the temp folder that holds
/// the logs is removed.
pub struct LogsOnFailure(pub Vec<PathBuf>);

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
pub async fn wait_until_applied(target: &Path, head: u64, partitions: u32, gateway: &mut Process, sidecar: &mut Process) {
    poll_until(&format!("the checkpoints to reach the log head {head}"), WAIT, || {
        for (name, process) in [("gateway", &mut *gateway), ("sidecar", &mut *sidecar)] {
            if let Some(status) = process.child.try_wait().unwrap() {
                panic!("the {name} exited ({status}) before the checkpoints reached {head}:\n{}", process.stderr());
            }
        }
        (sqlite_low_watermark(target, "bookings", partitions) >= head).then_some(())
    })
    .await;
}

fn everything(_: &str, _: &str) -> bool {
    true
}

fn stop(process: &mut Process, what: &str) {
    process.signal(SIGTERM);
    let status = process.wait_exit(Duration::from_secs(30));
    assert!(status.success(), "SIGTERM must stop the {what} cleanly: {status:?}\n{}", process.stderr());
}

/// Gateway process -> the example -> SQLite target: catch-up, live appends, the sidecar
/// stopped with SIGTERM (exit 0) and replaced on the same port while the gateway holds its
/// streams, the gateway stopped with SIGTERM; the read model equals the reference each time
/// and every checkpoint reaches the head. Returns the workspace for further checks.
pub async fn catch_up_live_and_sidecar_restart(example: &Example, seed: u64) -> Workspace {
    let ws = Workspace::new();
    let mut log = ws.log_with_events(5_000, 500, seed);
    let mut sidecar = example.spawn("127.0.0.1:0", ws.dir.path(), &format!("{}-sidecar-1", example.language));
    let address = sidecar.address.clone().expect("sidecar address");
    let setup = Setup::default();
    let config = ws.path("gateway.yaml");
    let target = ws.target_path();
    std::fs::write(&config, connector_yaml(&ws.log_path(), &address, &sqlite_sink_yaml(&target), &setup)).unwrap();
    let mut gateway = processes::gateway_run(&config, ws.dir.path(), "gateway");
    let mut logs = LogsOnFailure(vec![gateway.stderr_path.clone(), sidecar.stderr_path.clone()]);

    let head = log.head().unwrap();
    wait_until_applied(&target, head, setup.partitions, &mut gateway, &mut sidecar).await;
    ReadModel::from_sqlite(&target).assert_same(&ReadModel::from_log(&ws.log_path(), everything));

    append_generated(&mut log, 1_000, 100, seed + 1);
    wait_until_applied(&target, log.head().unwrap(), setup.partitions, &mut gateway, &mut sidecar).await;
    ReadModel::from_sqlite(&target).assert_same(&ReadModel::from_log(&ws.log_path(), everything));

    stop(&mut sidecar, &format!("{} sidecar", example.language));
    let replacement = format!("{}-sidecar-2", example.language);
    let mut sidecar = example.spawn(address.trim_start_matches("http://"), ws.dir.path(), &replacement);
    logs.0.push(sidecar.stderr_path.clone());
    append_generated(&mut log, 1_000, 100, seed + 2);
    let head = log.head().unwrap();
    wait_until_applied(&target, head, setup.partitions, &mut gateway, &mut sidecar).await;

    stop(&mut gateway, "gateway");
    ReadModel::from_sqlite(&target).assert_same(&ReadModel::from_log(&ws.log_path(), everything));
    let rows = sqlite_checkpoints(&target, "bookings");
    assert_eq!(rows.len(), setup.partitions as usize, "{rows:?}");
    assert!(rows.iter().all(|r| r.0 == setup.partitions && r.2 == head), "every partition at the head {head}: {rows:?}");
    stop(&mut sidecar, &format!("{} sidecar", example.language));
    ws
}

/// With `payload: json` the request's `eventPayload` stays empty and the example reads
/// `payloadJson`; the read model is the same.
pub async fn reads_the_raw_json_payload(example: &Example, seed: u64) {
    let ws = Workspace::new();
    let log = ws.log_with_events(2_000, 200, seed);
    let sidecar = example.spawn("127.0.0.1:0", ws.dir.path(), &format!("{}-sidecar", example.language));
    let _logs = LogsOnFailure(vec![sidecar.stderr_path.clone()]);
    let address = sidecar.address.as_deref().expect("sidecar address");
    let yaml = connector_yaml(&ws.log_path(), address, &sqlite_sink_yaml(&ws.target_path()), &Setup::default())
        .replacen("      window:", "      payload: json\n      window:", 1);
    assert!(yaml.contains("payload: json"), "{yaml}");
    let mut running = Running::start(parse_connector(&yaml)).await;
    running.wait_for(log.head().unwrap(), WAIT).await;
    running.stop().await.expect("clean stop");
    ReadModel::from_sqlite(&ws.target_path()).assert_same(&ReadModel::from_log(&ws.log_path(), everything));
}

/// An unknown `REDUCER_TARGET` is refused with exit code 2 and a message naming the choices.
pub fn refuses_an_unknown_target(example: &Example) {
    let out = example
        .command()
        .args(["--address", "127.0.0.1:0"])
        .env("REDUCER_TARGET", "cassandra")
        .output()
        .expect("run the sidecar");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(out.stdout.is_empty() && stderr.contains("REDUCER_TARGET"), "{stderr}");
}

/// The (projection, version) the gateway recorded from the sidecar's Describe.
pub fn recorded_projection(target: &Path) -> Option<(String, String)> {
    let conn = rusqlite::Connection::open(target).unwrap();
    conn.query_row("SELECT projection, version FROM projections WHERE connector = 'bookings'", [], |r| {
        Ok((r.get(0)?, r.get(1)?))
    })
    .ok()
}
