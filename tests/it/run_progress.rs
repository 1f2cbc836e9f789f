//! `run`'s progress output when stderr is not a terminal (a pod, a pipe, CI): one INFO line per
//! connector every `--progress-interval-secs`, with the connector's id, its committed position
//! and the source's head, connectors created through the management API included, and a last
//! line when `run` ends; `--quiet` prints none. The real binary, the example sidecar and
//! SQLite files, stderr going to a file.

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use crate::support::{
    fixtures::*,
    http::{get, request},
    processes::{self, Process, SIGTERM},
};

const WAIT: Duration = Duration::from_secs(120);
const EVENTS: u64 = 3_000;

/// `run` with stderr in `<dir>/<name>.log` and `args` after it.
fn gateway(dir: &Path, name: &str, args: &[&str]) -> Process {
    let mut command = Command::new(processes::gateway_bin());
    command.arg("run").args(args).env("RUST_LOG", "info");
    Process::spawn(command, dir.join(format!("{name}.log")), false)
}

/// Everything the process wrote to stderr so far.
fn stderr_of(process: &Process) -> String {
    std::fs::read_to_string(&process.stderr_path).unwrap_or_default()
}

/// The progress lines of connector `id` in `text`.
fn progress_lines<'a>(text: &'a str, id: &str) -> Vec<&'a str> {
    let field = format!(" connector={id}");
    text.lines().filter(|l| l.contains(" INFO ") && l.contains("progress: ") && l.ends_with(&field)).collect()
}

/// An event log of `EVENTS` events, written by `projector-gateway generate` as an operator would.
fn generated_log(ws: &Workspace) {
    let out = Command::new(processes::gateway_bin())
        .args(["generate", "--log", ws.log_path().to_str().unwrap(), "--events", &EVENTS.to_string(), "--streams", "300"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// The YAML of connector `id` from the workspace's log through `sidecar` into `target`.
fn connector(ws: &Workspace, sidecar: &str, id: &str, target: &Path) -> String {
    connector_yaml(&ws.log_path(), sidecar, &sqlite_sink_yaml(target), &Setup { id: id.into(), ..Setup::default() })
}

fn config_file(ws: &Workspace, name: &str, yaml: &str) -> PathBuf {
    let path = ws.path(name);
    std::fs::write(&path, yaml).unwrap();
    path
}

fn stop(gateway: &mut Process) {
    gateway.signal(SIGTERM);
    let status = gateway.wait_exit(WAIT);
    assert!(status.success(), "{status:?}\n{}", gateway.stderr());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_progress_line_per_connector_goes_to_the_log_and_quiet_turns_it_off() {
    let ws = Workspace::new();
    generated_log(&ws);
    let sidecar = processes::example_sidecar(&format!("127.0.0.1:{}", processes::free_port()), ws.dir.path());
    let sidecar = sidecar.address.clone().unwrap();
    let (quiet_target, loud_target) = (ws.path("quiet.db"), ws.path("loud.db"));
    let quiet_config = config_file(&ws, "quiet.yaml", &connector(&ws, &sidecar, "bookings", &quiet_target));
    let loud_config = config_file(&ws, "loud.yaml", &connector(&ws, &sidecar, "bookings", &loud_target));
    // The quiet one starts first, so it has run at least as long as the other when that one
    // has printed its lines.
    let mut quiet = gateway(ws.dir.path(), "quiet", &["--config", quiet_config.to_str().unwrap(), "--quiet", "--progress-interval-secs", "1"]);
    let mut loud = gateway(
        ws.dir.path(),
        "loud",
        &["--config", loud_config.to_str().unwrap(), "--progress-interval-secs", "1", "--lag-probe-interval-ms", "50"],
    );

    // The position and the head are the connector's, caught up (no --listen: the head probe
    // runs for the progress output).
    let caught_up = format!("progress: position {EVENTS} (head {EVENTS}, caught up), ");
    let text = poll_until("a progress line saying the connector caught up", WAIT, || {
        let text = stderr_of(&loud);
        progress_lines(&text, "bookings").iter().any(|l| l.contains(&caught_up)).then_some(text)
    })
    .await;
    let line = progress_lines(&text, "bookings").into_iter().find(|l| l.contains(&caught_up)).unwrap().to_owned();
    assert!(line.contains(" ev/s over the last ") && line.contains(" batches/s, state running connector=bookings"), "{line}");
    // Every interval, not once.
    poll_until("a second progress line", WAIT, || (progress_lines(&stderr_of(&loud), "bookings").len() >= 2).then_some(())).await;
    poll_until("the quiet gateway to catch up", WAIT, || (sqlite_low_watermark(&quiet_target, "bookings", 4) == EVENTS).then_some(())).await;

    stop(&mut loud);
    stop(&mut quiet);
    let text = stderr_of(&loud);
    let last = *progress_lines(&text, "bookings").last().unwrap();
    assert!(last.contains(&format!("progress: position {EVENTS} (head {EVENTS}, caught up), ")), "{last}");
    assert!(last.contains(" events in ") && last.ends_with(" batches since it started, state stopped connector=bookings"), "{last}");
    assert!(!text.contains('\r') && !text.contains('\x1b'), "no terminal display, no colours in a file:\n{text}");

    let text = stderr_of(&quiet);
    assert!(text.contains("stopped connector=bookings"), "{text}");
    assert!(!text.contains("progress: "), "--quiet prints no progress:\n{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connector_created_through_the_management_api_is_reported_too() {
    let ws = Workspace::new();
    generated_log(&ws);
    let sidecar = processes::example_sidecar(&format!("127.0.0.1:{}", processes::free_port()), ws.dir.path());
    let address = format!("127.0.0.1:{}", processes::free_port());
    let state = ws.path("state.db");
    let mut gateway = gateway(
        ws.dir.path(),
        "gateway",
        &["--listen", &address, "--state", state.to_str().unwrap(), "--progress-interval-secs", "1", "--lag-probe-interval-ms", "50"],
    );
    poll_until("the endpoint to answer", WAIT, || get(&address, "/connectors").filter(|(s, b)| *s == 200 && b == "[]")).await;

    let yaml = connector(&ws, sidecar.address.as_deref().unwrap(), "made-later", &ws.target_path());
    let definition = yaml.strip_prefix("connectors:\n  - ").unwrap().replace("\n    ", "\n");
    let (status, body) = request(&address, "POST", "/connectors", &definition, None).expect("an answer");
    assert_eq!(status, 201, "{body}");

    let caught_up = format!("progress: position {EVENTS} (head {EVENTS}, caught up), ");
    poll_until("a progress line of the connector made through the API", WAIT, || {
        progress_lines(&stderr_of(&gateway), "made-later").iter().any(|l| l.contains(&caught_up)).then_some(())
    })
    .await;
    stop(&mut gateway);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_format_json_writes_one_object_per_line_with_the_connector_field() {
    let ws = Workspace::new();
    generated_log(&ws);
    let sidecar = processes::example_sidecar(&format!("127.0.0.1:{}", processes::free_port()), ws.dir.path());
    let config = config_file(&ws, "gateway.yaml", &connector(&ws, sidecar.address.as_deref().unwrap(), "bookings", &ws.target_path()));
    let mut gateway = gateway(
        ws.dir.path(),
        "json",
        &["--log-format", "json", "--config", config.to_str().unwrap(), "--progress-interval-secs", "1"],
    );
    poll_until("the connector to apply the log", WAIT, || (sqlite_low_watermark(&ws.target_path(), "bookings", 4) == EVENTS).then_some(())).await;
    poll_until("a progress line", WAIT, || stderr_of(&gateway).contains("progress: ").then_some(())).await;
    gateway.signal(SIGTERM);
    assert!(gateway.wait_exit(Duration::from_secs(30)).success(), "{}", stderr_of(&gateway));

    let text = stderr_of(&gateway);
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON object ({e}): {line}")))
        .collect();
    assert!(lines.len() >= 3, "{text}");
    for line in &lines {
        assert!(line["timestamp"].is_string() && line["level"].is_string() && line["message"].is_string(), "{line}");
    }
    let progress = lines.iter().find(|l| l["message"].as_str().unwrap().starts_with("progress: ")).expect("a progress line");
    assert_eq!(progress["connector"], "bookings", "{progress}");
    assert_eq!(progress["level"], "INFO");
}
