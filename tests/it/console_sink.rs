//! The console producer sink, as a user runs it: `projector-gateway run` on a SQLite log with
//! no sidecar, one JSON line per event on stdout, checkpoints in a file, and a restart that
//! prints only what came after.

use std::{
    path::Path,
    process::{Command, Stdio},
    time::Duration,
};

use crate::support::{fixtures::*, processes::*};

fn console_config(ws: &Workspace) -> String {
    format!(
        "connectors:\n  - id: tail\n    source: {{ sqlite: {{ path: \"{}\", poll_interval_ms: 2 }} }}\n    filter: {{ exclude_types: [GuestRegistered] }}\n    sink:\n      console:\n        checkpoints: {{ file: \"{}\" }}\n",
        ws.log_path().display(),
        ws.path("tail.checkpoints.json").display()
    )
}

/// Runs the gateway until the checkpoint file reaches `head`, then stops it with SIGTERM and
/// returns its stdout lines as JSON.
async fn run_until(ws: &Workspace, config: &Path, head: u64, run: &str) -> Vec<serde_json::Value> {
    let stdout = std::fs::File::create(ws.path(&format!("{run}.out"))).unwrap();
    let mut command = Command::new(gateway_bin());
    command.args(["run", "--config"]).arg(config).stdout(Stdio::from(stdout)).env("RUST_LOG", "info");
    let stderr = std::fs::File::create(ws.path(&format!("{run}.log"))).unwrap();
    let mut child = command.stdin(Stdio::null()).stderr(stderr).spawn().expect("start the gateway");
    let checkpoints = ws.path("tail.checkpoints.json");
    poll_until("the checkpoint file to reach the head", Duration::from_secs(60), || {
        let saved: serde_json::Value = serde_json::from_slice(&std::fs::read(&checkpoints).ok()?).ok()?;
        let lowest = saved["positions"].as_object()?.values().flat_map(|p| p.as_object().unwrap().values()).filter_map(|v| v.as_u64()).min()?;
        (lowest >= head).then_some(())
    })
    .await;
    // SAFETY: kill(2) on our own child.
    unsafe { libc_kill(child.id() as i32, 15) };
    assert!(child.wait().unwrap().success(), "clean exit on SIGTERM");
    let text = std::fs::read_to_string(ws.path(&format!("{run}.out"))).unwrap();
    text.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l}"))).collect()
}

unsafe extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, sig: i32) -> i32;
}

#[tokio::test]
async fn prints_every_event_once_and_resumes_after_its_checkpoint() {
    let ws = Workspace::new();
    let mut log = ws.log_with_events(2_000, 200, 11);
    let config = ws.path("console.yaml");
    std::fs::write(&config, console_config(&ws)).unwrap();
    let expected = |from: u64| -> Vec<(u64, String)> {
        let conn = rusqlite::Connection::open(ws.log_path()).unwrap();
        let mut stmt = conn.prepare("SELECT position, event_id FROM events WHERE position > ?1 AND event_type <> 'GuestRegistered' ORDER BY position").unwrap();
        stmt.query_map([from as i64], |r| Ok((r.get::<_, i64>(0)? as u64, r.get(1)?))).unwrap().map(Result::unwrap).collect()
    };

    let head = log.head().unwrap();
    let lines = run_until(&ws, &config, head, "first").await;
    let mut printed: Vec<(u64, String)> = lines.iter().map(|l| (l["position"].as_u64().unwrap(), l["id"].as_str().unwrap().to_owned())).collect();
    printed.sort();
    assert_eq!(printed, expected(0), "every event but the filtered type, once");
    let line = &lines[0];
    for field in ["stream", "type", "created", "data", "revision", "partition"] {
        assert!(!line[field].is_null(), "`{field}` in {line}");
    }
    assert!(line["data"].is_object(), "the JSON payload as an object: {line}");

    append_generated(&mut log, 300, 50, 12);
    let lines = run_until(&ws, &config, log.head().unwrap(), "second").await;
    let mut printed: Vec<(u64, String)> = lines.iter().map(|l| (l["position"].as_u64().unwrap(), l["id"].as_str().unwrap().to_owned())).collect();
    printed.sort();
    assert_eq!(printed, expected(head), "after a restart, only the events after the checkpoint");
}

#[test]
fn a_console_connector_takes_no_sidecar() {
    let ws = Workspace::new();
    let text = console_config(&ws).replace("    sink:\n", "    sidecar: { address: \"http://127.0.0.1:50051\" }\n    sink:\n");
    let problems = projector_gateway::config::parse(&text).unwrap_err();
    assert!(
        problems.iter().any(|p| p.to_string() == "connectors[0].sidecar: the console sink records every event as it is and takes no sidecar; remove this key"),
        "{problems:#?}"
    );
}
