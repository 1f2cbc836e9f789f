//! `projector-gateway dry-run`: sample events go through the sidecar and come out as the target's
//! operations, tried on SQL targets in a transaction that is rolled back. What is checked: the
//! output names each event with its SQL and each statement's outcome; the target is exactly as it
//! was (SQLite: a dump of every table before and after; PostgreSQL: no relation at all
//! afterwards); a statement the database refuses shows next to the event that produced it and
//! the exit code says so; `--json` gives one object per event; the sidecar's errors and
//! silences show with their events.

use std::{path::Path, process::Output, time::Duration};

use crate::support::{
    fixtures::{Setup, Workspace, connector_yaml, schema_file, sqlite_checkpoints, sqlite_sink_yaml},
    postgres::{Database, postgres_sink_yaml},
    processes::{self, gateway_bin},
    sidecars::{self, Script},
};

/// The binary, run to its end (without blocking the runtime, which may serve a sidecar).
async fn gateway(args: &[&str]) -> Output {
    let mut command = tokio::process::Command::new(gateway_bin());
    command.args(args).env_remove("RUST_LOG");
    tokio::time::timeout(Duration::from_secs(120), command.output())
        .await
        .unwrap_or_else(|_| panic!("projector-gateway {args:?} did not end within 120 s"))
        .expect("run projector-gateway")
}

fn text(o: &Output) -> (String, String) {
    (String::from_utf8_lossy(&o.stdout).into_owned(), String::from_utf8_lossy(&o.stderr).into_owned())
}

async fn dry_run(config: &Path, extra: &[&str]) -> (Option<i32>, String, String) {
    let mut args = vec!["dry-run", "--config", config.to_str().unwrap(), "--connector", "bookings"];
    args.extend_from_slice(extra);
    let out = gateway(&args).await;
    let (stdout, stderr) = text(&out);
    (out.status.code(), stdout, stderr)
}

/// The event blocks of the table: each starts with `position N  stream S  type T`.
fn blocks(stdout: &str) -> Vec<&str> {
    stdout.split("\nposition ").skip(1).collect()
}

/// (position, stream, type) of a block.
fn heading(block: &str) -> (u64, String, String) {
    let words: Vec<&str> = block.lines().next().unwrap().split_whitespace().collect();
    assert_eq!((words[1], words[3]), ("stream", "type"), "{block}");
    (words[0].parse().unwrap(), words[2].to_string(), words[4].to_string())
}

/// Every table of a SQLite file with its definition and its rows (sorted), as text.
fn dump(path: &Path) -> Vec<String> {
    let conn = rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).expect("open the target");
    let objects: Vec<(String, String, Option<String>)> = conn
        .prepare("SELECT type, name, sql FROM sqlite_master ORDER BY type, name")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let mut out = Vec::new();
    for (kind, name, sql) in objects {
        out.push(format!("{kind} {name}: {sql:?}"));
        if kind != "table" {
            continue;
        }
        let mut statement = conn.prepare(&format!("SELECT * FROM \"{name}\"")).unwrap();
        let columns = statement.column_count();
        let mut rows: Vec<String> = statement
            .query_map([], |r| (0..columns).map(|i| r.get::<_, rusqlite::types::Value>(i).map(|v| format!("{v:?}"))).collect::<Result<Vec<_>, _>>())
            .unwrap()
            .map(|row| format!("  {name}: {}", row.unwrap().join(" | ")))
            .collect();
        rows.sort();
        out.extend(rows);
    }
    out
}

/// The bookings schema without `bookings.paid_cents`, which the reducer writes.
fn schema_without_paid_cents(ws: &Workspace) -> std::path::PathBuf {
    let schema = std::fs::read_to_string(schema_file()).unwrap();
    let broken: String = schema.lines().filter(|l| !l.trim_start().starts_with("paid_cents    BIGINT NOT NULL DEFAULT 0,")).map(|l| format!("{l}\n")).collect();
    assert_ne!(broken.len(), schema.len(), "the schema changed: drop a column the reducer writes");
    let path = ws.path("broken-schema.sql");
    std::fs::write(&path, broken).unwrap();
    path
}

fn write_config(ws: &Workspace, name: &str, sidecar: &str, sink_yaml: &str) -> std::path::PathBuf {
    let config = ws.path(name);
    std::fs::write(&config, connector_yaml(&ws.log_path(), sidecar, sink_yaml, &Setup::default())).unwrap();
    config
}

/// (a) SQLite: the output lists each event (only the types the sidecar's Describe names) with
/// its statements and their parameters, each `ok` in the transaction; the target's every table,
/// row and checkpoint is as before, and neither a checkpoint nor the projection version the
/// sidecar described was recorded. A target file that does not exist is not created.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_shows_each_event_with_its_sql_and_leaves_the_target_as_it_was() {
    let ws = Workspace::new();
    ws.log_with_events(60, 6, 71);
    let address = format!("127.0.0.1:{}", processes::free_port());
    let _sidecar = processes::example_sidecar(&address, ws.dir.path());
    let config = write_config(&ws, "gateway.yaml", &format!("http://{address}"), &sqlite_sink_yaml(&ws.target_path()));
    // The target as `run` leaves it at its first start: the gateway's tables and the schema.
    let out = gateway(&["validate", "--connect", "--config", config.to_str().unwrap()]).await;
    assert!(out.status.success(), "{:?}", text(&out));
    let before = dump(&ws.target_path());
    assert!(before.iter().any(|l| l.starts_with("table bookings")) && before.iter().any(|l| l.starts_with("table checkpoints")), "{before:#?}");

    let (code, stdout, stderr) = dry_run(&config, &["--limit", "12"]).await;
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    let events = blocks(&stdout);
    assert_eq!(events.len(), 12, "{stdout}");
    let mut last = 0;
    for block in &events {
        let (position, stream, event_type) = heading(block);
        assert!(position > last, "positions in log order:\n{stdout}");
        last = position;
        assert!(stream.starts_with("booking-"), "{block}");
        assert!(bookings_reducer::HANDLED_EVENT_TYPES.contains(&event_type.as_str()), "only the types Describe names: {block}");
        let statements = block.matches("Statement: ").count();
        assert!(statements >= 1, "{block}");
        assert_eq!(block.matches("-> ok, 1 row(s) changed").count(), statements, "{block}");
    }
    let booked = events.iter().find(|b| heading(b).2 == "RoomBooked").expect("a RoomBooked event in the sample");
    let booking = heading(booked).1;
    assert!(booked.contains("Statement: INSERT INTO bookings (booking_id, guest_id"), "{booked}");
    assert!(booked.contains(&format!("$1 = string \"{booking}\"")), "{booked}");
    assert!(!stdout.contains("FAILED"), "{stdout}");
    assert!(stdout.contains("12 event(s)") && stdout.contains("all ok; nothing was committed to the target, no checkpoint moved"), "{stdout}");

    assert_eq!(dump(&ws.target_path()), before, "the dry run changed the target");
    assert_eq!(sqlite_checkpoints(&ws.target_path(), "bookings"), Vec::new());
    assert!(!before.iter().any(|l| l.starts_with("  projections:")), "no projection version recorded: {before:#?}");

    // A target that does not exist yet: tried in memory, not created.
    let missing = ws.path("not-yet.db");
    let config = write_config(&ws, "missing.yaml", &format!("http://{address}"), &sqlite_sink_yaml(&missing));
    let (code, stdout, stderr) = dry_run(&config, &["--limit", "5"]).await;
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    assert!(stdout.contains("does not exist yet and was not created"), "{stdout}");
    assert_eq!(blocks(&stdout).len(), 5);
    assert!(!missing.exists(), "the dry run created the target file");
}

/// (b) PostgreSQL: the same, each statement `ok` with its plan (`--explain`), and nothing in
/// the database afterwards: the init SQL ran inside the rolled-back transaction too, so not
/// even the read model's tables exist. With a column missing, the database's own error shows
/// next to the event, and the other events' statements still run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_runs_the_statements_in_a_rolled_back_transaction() {
    let ws = Workspace::new();
    ws.log_with_events(60, 6, 72);
    let db = Database::fresh("dry_run").await;
    let address = format!("127.0.0.1:{}", processes::free_port());
    let _sidecar = processes::example_sidecar(&address, ws.dir.path());
    let config = write_config(&ws, "gateway.yaml", &format!("http://{address}"), &postgres_sink_yaml(&db.url));

    let (code, stdout, stderr) = dry_run(&config, &["--limit", "10", "--explain"]).await;
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    let events = blocks(&stdout);
    assert_eq!(events.len(), 10, "{stdout}");
    for block in &events {
        let statements = block.matches("Statement: ").count();
        assert!(statements >= 1, "{block}");
        assert_eq!(block.matches("-> ok, 1 row(s) changed").count(), statements, "{block}");
        assert_eq!(block.matches("plan:").count(), statements, "{block}");
    }
    assert!(stdout.contains("Conflict Arbiter Indexes: bookings_pkey"), "EXPLAIN's own words:\n{stdout}");
    assert!(!stdout.contains("FAILED"), "{stdout}");

    let client = db.client().await;
    let relations: i64 = client
        .query_one("SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(relations, 0, "the dry run left tables, indexes or sequences behind");

    let broken = schema_without_paid_cents(&ws);
    let sink = postgres_sink_yaml(&db.url).replace(&schema_file().display().to_string(), &broken.display().to_string());
    let config = write_config(&ws, "broken.yaml", &format!("http://{address}"), &sink);
    let (code, stdout, stderr) = dry_run(&config, &["--limit", "10"]).await;
    assert_eq!(code, Some(1), "{stdout}\n{stderr}");
    let booked = blocks(&stdout).into_iter().find(|b| heading(b).2 == "RoomBooked").expect("a RoomBooked event");
    assert!(booked.lines().next().unwrap().ends_with("FAILED"), "{booked}");
    assert!(booked.contains("-> FAILED: column \"paid_cents\" of relation \"bookings\" does not exist (SQLSTATE 42703)"), "{booked}");
    assert!(booked.contains("-> not run: an earlier operation of this event failed"), "{booked}");
    let cancelled = blocks(&stdout).into_iter().find(|b| heading(b).2 == "BookingCancelled");
    if let Some(cancelled) = cancelled {
        assert!(cancelled.contains("-> ok, "), "an event after a failed one still runs:\n{cancelled}");
    }
    let relations: i64 = client
        .query_one("SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(relations, 0);
}

/// (c) A reducer bug: the schema lacks a column the reducer writes. The database's error is
/// printed next to the event that produced it, the exit code is 1, and nothing was committed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statement_the_database_refuses_shows_with_its_event_and_fails_the_dry_run() {
    let ws = Workspace::new();
    ws.log_with_events(40, 4, 73);
    let address = format!("127.0.0.1:{}", processes::free_port());
    let _sidecar = processes::example_sidecar(&address, ws.dir.path());
    let broken = schema_without_paid_cents(&ws);
    let sink = format!("      sqlite:\n        path: \"{}\"\n        init_sql_file: \"{}\"\n", ws.target_path().display(), broken.display());
    let config = write_config(&ws, "gateway.yaml", &format!("http://{address}"), &sink);
    let out = gateway(&["validate", "--connect", "--config", config.to_str().unwrap()]).await;
    assert!(out.status.success(), "{:?}", text(&out));
    let before = dump(&ws.target_path());

    let (code, stdout, stderr) = dry_run(&config, &["--limit", "30"]).await;
    assert_eq!(code, Some(1), "{stdout}\n{stderr}");
    let events = blocks(&stdout);
    assert_eq!(events.len(), 30, "{stdout}");
    // Some statements did change rows (a cancellation counted for a guest): committed, they would
    // show in the dump.
    assert!(stdout.contains("-> ok, 1 row(s) changed"), "{stdout}");
    for block in &events {
        let (_, _, event_type) = heading(block);
        let failed = block.lines().next().unwrap().ends_with("FAILED");
        match event_type.as_str() {
            "RoomBooked" => {
                assert!(failed, "{block}");
                assert!(block.contains("INSERT INTO bookings") && block.contains("-> FAILED: table bookings has no column named paid_cents"), "{block}");
            }
            "PaymentRecorded" => assert!(failed && block.contains("-> FAILED: no such column: paid_cents"), "{block}"),
            // Their statements do not touch the column.
            _ => assert!(!failed && block.contains("-> ok, "), "{block}"),
        }
    }
    assert!(stdout.contains("event(s) FAILED; nothing was committed to the target"), "{stdout}");
    assert_eq!(dump(&ws.target_path()), before, "the dry run changed the target");
}

/// (d) `--json`: one JSON object per event on stdout, each with its position, stream, type and
/// operations (SQL, typed parameters, outcome); the summary on stderr.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_lines_give_one_object_per_event_with_its_operations() {
    let ws = Workspace::new();
    ws.log_with_events(40, 4, 74);
    let address = format!("127.0.0.1:{}", processes::free_port());
    let _sidecar = processes::example_sidecar(&address, ws.dir.path());
    let config = write_config(&ws, "gateway.yaml", &format!("http://{address}"), &sqlite_sink_yaml(&ws.target_path()));

    let (code, stdout, stderr) = dry_run(&config, &["--limit", "8", "--json", "--from", "3"]).await;
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    let events: Vec<serde_json::Value> =
        stdout.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"))).collect();
    assert_eq!(events.len(), 8, "{stdout}");
    let mut last = 3;
    for event in &events {
        let position = event["position"].as_u64().unwrap();
        assert!(position > last, "after --from, in order: {event}");
        last = position;
        assert!(event["stream"].as_str().unwrap().starts_with("booking-"), "{event}");
        assert!(bookings_reducer::HANDLED_EVENT_TYPES.contains(&event["type"].as_str().unwrap()), "{event}");
        assert_eq!((event["ok"].as_bool(), event["answer"].as_str()), (Some(true), Some("operations")), "{event}");
        let operations = event["operations"].as_array().unwrap();
        assert!(!operations.is_empty(), "{event}");
        for op in operations {
            assert_eq!(op["name"], "projection.Statement", "{op}");
            assert_eq!(op["operation"]["kind"], "Statement", "{op}");
            assert!(op["operation"]["sql"].as_str().unwrap().contains("$1"), "{op}");
            assert!(op["operation"]["params"].as_array().unwrap().iter().all(|p| p["type"].is_string()), "{op}");
            // Rows changed: on an empty database, an update of a booking made before `--from` changes none.
            assert!(op["result"]["status"] == "ok" && op["result"]["rows"].is_u64(), "{op}");
        }
    }
    let booked = events.iter().find(|e| e["type"] == "RoomBooked").expect("a RoomBooked event");
    let insert = &booked["operations"][0]["operation"];
    assert_eq!(insert["params"][0], serde_json::json!({ "type": "string", "value": booked["stream"] }), "{insert}");
    assert_eq!(insert["params"][6], serde_json::json!({ "type": "int64", "value": booked["position"] }), "{insert}");
    assert!(stderr.contains("8 event(s)") && stderr.contains("all ok"), "{stderr}");
    assert!(!ws.target_path().exists());
}

/// What the sidecar itself does shows with each event: a reported error, a failed stream or no
/// answer from a sidecar that answers every event fails that event (and the dry run), not its
/// neighbours; an `answers: handled` sidecar's silence is an ignored event, settled by its next
/// answer (or by the timeout at the end of the sample), and fails nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sidecars_errors_and_silences_show_with_their_events() {
    let ws = Workspace::new();
    ws.log_with_events(40, 4, 75);
    let failing = sidecars::scripted(Script::ErrorFor("BookingCancelled", false)).await;
    let config = write_config(&ws, "errors.yaml", &failing.address, &sqlite_sink_yaml(&ws.target_path()));
    let (code, stdout, stderr) = dry_run(&config, &["--limit", "40"]).await;
    assert_eq!(code, Some(1), "{stdout}\n{stderr}");
    let events = blocks(&stdout);
    let cancelled: Vec<_> = events.iter().filter(|b| heading(b).2 == "BookingCancelled").collect();
    assert!(!cancelled.is_empty(), "no BookingCancelled event in the sample:\n{stdout}");
    for block in &cancelled {
        assert!(block.lines().next().unwrap().ends_with("FAILED") && block.contains("SIDECAR ERROR: "), "{block}");
    }
    assert!(events.iter().filter(|b| heading(b).2 == "RoomBooked").all(|b| b.contains("-> ok, ")), "{stdout}");

    // A stream the sidecar fails is charged to the event it failed on; the others are answered
    // on a new stream. A sidecar that answers every event and hangs: each event it left
    // unanswered fails, the others are answered.
    // (A timer decides "no answer": long enough for a loaded machine's answers, paid once per
    // hung event.)
    for (script, failed_type, said) in [
        (Script::StatusAt("GuestCheckedOut"), "GuestCheckedOut", "FAILED: the sidecar failed its stream with `Internal: handler failed: KeyError 'room'`"),
        (Script::HangAt("GuestCheckedIn"), "GuestCheckedIn", "FAILED: no answer within 1s"),
    ] {
        let sidecar = sidecars::scripted(script).await;
        let config = write_config(&ws, "failing.yaml", &sidecar.address, &sqlite_sink_yaml(&ws.target_path()));
        let (code, stdout, stderr) = dry_run(&config, &["--limit", "40", "--answer-timeout-ms", "1000"]).await;
        assert_eq!(code, Some(1), "{stdout}\n{stderr}");
        let events = blocks(&stdout);
        assert_eq!(events.len(), 40, "{stdout}");
        assert!(events.iter().any(|b| heading(b).2 == failed_type), "no {failed_type} event in the sample:\n{stdout}");
        for block in events {
            let failed = block.lines().next().unwrap().ends_with("FAILED");
            assert_eq!(failed, heading(block).2 == failed_type, "{block}");
            assert_eq!(block.contains(said), failed, "{block}");
        }
    }

    let silent = sidecars::scripted(Script::SilentFor("GuestCheckedIn")).await;
    let config = write_config(&ws, "silent.yaml", &silent.address, &sqlite_sink_yaml(&ws.target_path()));
    std::fs::write(&config, std::fs::read_to_string(&config).unwrap().replace("      window:", "      answers: handled\n      window:")).unwrap();
    // Settled by later answers: the timer never runs out (the sample ends with an answered event).
    let (code, stdout, stderr) = dry_run(&config, &["--limit", "40", "--answer-timeout-ms", "10000"]).await;
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    let events = blocks(&stdout);
    let checked_in: Vec<_> = events.iter().filter(|b| heading(b).2 == "GuestCheckedIn").collect();
    assert!(!checked_in.is_empty(), "no GuestCheckedIn event in the sample:\n{stdout}");
    for block in &checked_in {
        assert!(block.contains("no answer"), "{block}");
        assert!(!block.contains("FAILED"), "{block}");
    }
    assert!(events.iter().filter(|b| heading(b).2 != "GuestCheckedIn").all(|b| !b.contains("no answer")), "{stdout}");
    assert!(stdout.contains("unanswered (ignored). all ok"), "{stdout}");
    // Nothing after them to settle their silence: the timeout does, and says so.
    let (code, stdout, stderr) = dry_run(&config, &["--types", "GuestCheckedIn", "--answer-timeout-ms", "1000"]).await;
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    let events = blocks(&stdout);
    assert_eq!(events.len(), checked_in.len().min(20), "{stdout}");
    assert!(events.iter().all(|b| b.contains("no answer within 1s: counted as ignored")), "{stdout}");
    assert!(!ws.target_path().exists());
}
