//! The command line as an operator meets it: `validate` lists every problem with its key path,
//! `run` refuses bad configs and unreachable databases with one clear message and a non-zero
//! exit (never a panic), `append` writes to the embedded log.

use std::process::{Command, Output};

use crate::support::{fixtures::Workspace, processes::gateway_bin};

fn gateway(args: &[&str]) -> Output {
    Command::new(gateway_bin()).args(args).output().expect("run projector-gateway")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn validate_prints_every_problem_with_its_key_path() {
    let ws = Workspace::new();
    let config = ws.path("gateway.yaml");
    std::fs::write(
        &config,
        "connectors:\n  - id: a\n    source: { sqlite: { path: e.db } }\n    sidecar: { address: \"http://127.0.0.1:1\", window: 0 }\n    sink: { postgres: { schema: public } }\n  - id: b\n    source: { mysql: { path: x } }\n    sidecar: { address: \"http://127.0.0.1:1\" }\n    sink: { sqlite: { path: t.db } }\n    poison: maybe\n",
    )
    .unwrap();
    let out = gateway(&["validate", "--config", config.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    for expected in [
        "connectors[0].sink.postgres.url: missing",
        "connectors[1].source: unknown variant `mysql`, expected one of `sqlite`, `postgres`, `kurrentdb`",
        "connectors[1].poison: unknown variant `maybe`, expected one of `stop`, `skip`, `park`",
    ] {
        assert!(err.contains(expected), "`{expected}` not in:\n{err}");
    }
    assert!(!err.contains("panicked"), "{err}");

    std::fs::write(&config, "connectors:\n  - id: a\n    source: { sqlite: { path: e.db } }\n    sidecar: { address: \"http://127.0.0.1:1\" }\n    sink: { sqlite: { path: t.db } }\n").unwrap();
    // The event log is checked too, beside the config file.
    std::fs::write(ws.path("e.db"), "").unwrap();
    let out = gateway(&["validate", "--config", config.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("ok, 1 connector(s): a"));
}

#[test]
fn run_refuses_malformed_yaml_with_its_location() {
    let ws = Workspace::new();
    let config = ws.path("gateway.yaml");
    std::fs::write(&config, "connectors:\n  - id: a\n   source: [\n").unwrap();
    let out = gateway(&["run", "--config", config.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains("not valid YAML") && err.contains("line"), "{err}");
    let out = gateway(&["run", "--config", ws.path("missing.yaml").to_str().unwrap()]);
    assert!(stderr(&out).contains("cannot read config file"), "{}", stderr(&out));
    assert!(!out.status.success());
}

#[test]
fn run_stops_with_one_clear_message_when_a_database_cannot_be_opened() {
    let ws = Workspace::new();
    let config = ws.path("gateway.yaml");
    let log = ws.path("events.db");
    let append = gateway(&["append", "--log", log.to_str().unwrap(), "--stream", "booking-1", "--type", "RoomBooked", "--data", "{\"bookingId\":\"booking-1\"}"]);
    assert!(append.status.success(), "{}", stderr(&append));
    assert!(String::from_utf8_lossy(&append.stdout).contains("at position 1"));

    std::fs::write(
        &config,
        format!(
            "connectors:\n  - id: a\n    source: {{ sqlite: {{ path: \"{}\" }} }}\n    sidecar: {{ address: \"http://127.0.0.1:1\" }}\n    sink: {{ sqlite: {{ path: /proc/no-such-dir/target.db }} }}\n",
            log.display()
        ),
    )
    .unwrap();
    let out = gateway(&["run", "--config", config.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("connector `a`: SQLite target /proc/no-such-dir/target.db: cannot create its directory"), "{err}");
    assert!(!err.contains("panicked"), "{err}");

    std::fs::write(
        &config,
        format!(
            "connectors:\n  - id: a\n    source: {{ sqlite: {{ path: \"{}\" }} }}\n    sidecar: {{ address: \"http://127.0.0.1:1\" }}\n    sink: {{ sqlite: {{ path: \"{}\" }} }}\n",
            ws.path("no-log.db").display(),
            ws.path("target.db").display()
        ),
    )
    .unwrap();
    let out = gateway(&["run", "--config", config.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("no such file; create it with `projector-gateway append`"), "{}", stderr(&out));
}

#[test]
fn append_rejects_a_payload_that_is_not_json() {
    let ws = Workspace::new();
    let out = gateway(&["append", "--log", ws.path("e.db").to_str().unwrap(), "--stream", "s", "--type", "T", "--data", "{oops"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("event data for stream `s` is not valid JSON"), "{}", stderr(&out));
}

/// The documents of a Kubernetes manifest of the repository.
fn manifest(path: &str) -> Vec<serde_yaml::Value> {
    use serde::Deserialize;
    let text = std::fs::read_to_string(crate::support::processes::repo_root().join(path)).unwrap();
    serde_yaml::Deserializer::from_str(&text).map(|doc| serde_yaml::Value::deserialize(doc).expect("YAML")).collect()
}

/// `validate` accepts a manifest's gateway.yaml, with the Secret's variables set.
fn assert_validates(gateway_yaml: &str) {
    let ws = Workspace::new();
    let config = ws.path("gateway.yaml");
    std::fs::write(&config, gateway_yaml).unwrap();
    let out = Command::new(gateway_bin())
        .args(["validate", "--config", config.to_str().unwrap()])
        .env("ESDB_PASSWORD", "secret")
        .env("PGPASSWORD", "secret")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
}

/// `deploy/kubernetes.yaml` cannot be applied here (no cluster), but what it says about the
/// binary is checked: its gateway.yaml validates, and the arguments, probes and scrape port
/// are those `run --listen` serves.
#[test]
fn the_kubernetes_example_agrees_with_the_binary() {
    let docs = manifest("deploy/kubernetes.yaml");
    let of_kind = |kind: &str| docs.iter().find(|d| d["kind"] == kind).unwrap_or_else(|| panic!("a {kind}"));

    assert_validates(of_kind("ConfigMap")["data"]["gateway.yaml"].as_str().unwrap());

    let pod = &of_kind("Deployment")["spec"]["template"];
    let gateway = &pod["spec"]["containers"][0];
    let args: Vec<&str> = gateway["args"].as_sequence().unwrap().iter().map(|a| a.as_str().unwrap()).collect();
    let after = |flag: &str| args[args.iter().position(|a| *a == flag).unwrap_or_else(|| panic!("{flag} in {args:?}")) + 1];
    assert_eq!(args[0], "run");
    assert_eq!(after("--config"), format!("{}/gateway.yaml", gateway["volumeMounts"][0]["mountPath"].as_str().unwrap()));
    assert!(after("--listen").ends_with(":9464"), "{args:?}");
    assert_eq!(gateway["ports"][0]["containerPort"].as_u64(), Some(9464));
    assert_eq!(pod["metadata"]["annotations"]["prometheus.io/port"].as_str(), Some("9464"));
    assert_eq!(gateway["livenessProbe"]["httpGet"]["path"].as_str(), Some("/health"));
    assert_eq!(gateway["readinessProbe"]["httpGet"]["path"].as_str(), Some("/ready"));

    // More than one replica only when every connector has a lease (else each would run on all).
    let connectors: serde_yaml::Value = serde_yaml::from_str(of_kind("ConfigMap")["data"]["gateway.yaml"].as_str().unwrap()).unwrap();
    let replicas = of_kind("Deployment")["spec"]["replicas"].as_u64().unwrap();
    let leased = connectors["connectors"].as_sequence().unwrap().iter().all(|c| c["lease"].is_mapping());
    assert!(replicas == 1 || leased, "{replicas} replicas of connectors without a lease");
}

/// `deploy/kubernetes-sidecar-replicas.yaml`: its gateway.yaml validates; the sidecar address is
/// the headless Service's name on the port the Service and the replicas serve; the autoscaler
/// never makes more replicas than partitions; the gateway's probes and port are `run --listen`'s.
#[test]
fn the_scaled_sidecar_example_agrees_with_the_binary_and_itself() {
    let docs = manifest("deploy/kubernetes-sidecar-replicas.yaml");
    let named = |kind: &str, name: &str| {
        docs.iter().find(|d| d["kind"] == kind && d["metadata"]["name"] == name).unwrap_or_else(|| panic!("a {kind} {name}"))
    };

    let config_text = named("ConfigMap", "projector-gateway")["data"]["gateway.yaml"].as_str().unwrap();
    assert_validates(config_text);

    let connector = &serde_yaml::from_str::<serde_yaml::Value>(config_text).unwrap()["connectors"][0];
    let address = connector["sidecar"]["address"].as_str().unwrap();
    let service = named("Service", "bookings-reducer");
    assert_eq!(service["spec"]["clusterIP"].as_str(), Some("None"), "headless: the name resolves to every replica");
    let port = service["spec"]["ports"][0]["port"].as_u64().unwrap();
    assert_eq!(address, format!("http://bookings-reducer.default.svc.cluster.local:{port}"));
    let reducer = named("Deployment", "bookings-reducer");
    assert_eq!(reducer["spec"]["selector"]["matchLabels"], service["spec"]["selector"]);
    let container = &reducer["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["ports"][0]["name"], service["spec"]["ports"][0]["targetPort"]);
    assert_eq!(container["ports"][0]["containerPort"].as_u64(), Some(port));
    let autoscaler = named("HorizontalPodAutoscaler", "bookings-reducer");
    assert_eq!(autoscaler["spec"]["scaleTargetRef"]["name"].as_str(), Some("bookings-reducer"));
    let partitions = connector["partitioning"]["count"].as_u64().unwrap();
    assert!(autoscaler["spec"]["maxReplicas"].as_u64().unwrap() * 2 <= partitions, "a few partitions per replica at most scale");

    let gateway = named("Deployment", "projector-gateway");
    let replicas = gateway["spec"]["replicas"].as_u64().unwrap();
    assert!(replicas == 1 || connector["lease"].is_mapping(), "{replicas} gateways run an unleased connector each");
    // The gateways share the partitions: each holds some, none stands idle.
    assert_eq!(connector["lease"]["scope"].as_str(), Some("partitions"));
    assert!(replicas > 1 && replicas <= partitions, "{replicas} gateways for {partitions} partitions");
    let container = &gateway["spec"]["template"]["spec"]["containers"][0];
    let args: Vec<&str> = container["args"].as_sequence().unwrap().iter().map(|a| a.as_str().unwrap()).collect();
    assert!(args.windows(2).any(|w| w[0] == "--listen" && w[1].ends_with(":9464")), "{args:?}");
    assert_eq!(container["readinessProbe"]["httpGet"]["path"].as_str(), Some("/ready"));
    for budget in ["bookings-reducer", "projector-gateway"] {
        named("PodDisruptionBudget", budget);
    }
}

// ---------------------------------------------------------------------------------------------
// Mistakes caught before the first event; paths read from the config file's directory; bulk
// appends; a run that ends once caught up.

/// The binary, run from `dir`, to its end (without blocking the runtime serving the sidecars).
async fn gateway_in(dir: &std::path::Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = tokio::process::Command::new(gateway_bin());
    command.args(args).current_dir(dir);
    for (key, value) in env {
        command.env(key, value);
    }
    tokio::time::timeout(std::time::Duration::from_secs(120), command.output())
        .await
        .unwrap_or_else(|_| panic!("projector-gateway {args:?} did not end within 120 s"))
        .expect("run projector-gateway")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A config beside its event log and read model, naming them (and the schema) by relative
/// paths.
fn relative_config(ws: &Workspace, sidecar: &str) -> std::path::PathBuf {
    std::fs::copy(crate::support::fixtures::schema_file(), ws.path("schema.sql")).unwrap();
    let config = ws.path("gateway.yaml");
    std::fs::write(
        &config,
        format!(
            "connectors:\n  - id: bookings\n    source: {{ sqlite: {{ path: events.db }} }}\n    sidecar: {{ address: \"{sidecar}\" }}\n    partitioning: {{ count: 4 }}\n    sink: {{ sqlite: {{ path: read/target.db, init_sql_file: schema.sql }} }}\n"
        ),
    )
    .unwrap();
    config
}

#[test]
fn validate_checks_the_files_a_config_names_without_connecting() {
    let ws = Workspace::new();
    let config = relative_config(&ws, "http://127.0.0.1:1");
    std::fs::write(&config, std::fs::read_to_string(&config).unwrap().replace("events.db", "evnts.db").replace("schema.sql", "schema.sq")).unwrap();
    let elsewhere = Workspace::new();
    let out = Command::new(gateway_bin()).args(["validate", "--config", config.to_str().unwrap()]).current_dir(elsewhere.dir.path()).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stdout(&out));
    let err = stderr(&out);
    for expected in [
        format!("connectors[0].source.sqlite.path: `{}`: no such file; the event log must exist", ws.path("evnts.db").display()),
        format!("connectors[0].sink.sqlite.init_sql_file: `{}`: no such file", ws.path("schema.sq").display()),
    ] {
        assert!(err.contains(&expected), "`{expected}` not in:\n{err}");
    }

    // Fixed: ok, and nothing was created (the read model's directory included).
    let config = relative_config(&ws, "http://127.0.0.1:1");
    ws.log_with_events(10, 2, 1);
    let out = Command::new(gateway_bin()).args(["validate", "--config", config.to_str().unwrap()]).current_dir(elsewhere.dir.path()).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!ws.path("read").exists());
}

#[test]
fn unknown_keys_near_a_known_one_get_a_suggestion() {
    let ws = Workspace::new();
    let config = ws.path("gateway.yaml");
    std::fs::write(
        &config,
        "connectors:\n  - id: a\n    source: { sqlite: { path: e.db, pol_interval_ms: 5 } }\n    sidecar: { address: \"http://127.0.0.1:1\" }\n    partitionning: { count: 2 }\n    sink: { sqlite: { path: t.db } }\n",
    )
    .unwrap();
    let out = gateway(&["validate", "--config", config.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains("connectors[0].partitionning: unknown key; expected one of id, source, filter, sidecar, partitioning"), "{err}");
    assert!(err.contains("; did you mean `partitioning`?"), "{err}");
    assert!(err.contains("connectors[0].source.sqlite.pol_interval_ms: unknown key; expected one of `path`, `poll_interval_ms`, `batch_size`; did you mean `poll_interval_ms`?"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validate_connect_reaches_each_connectors_source_sidecar_and_target() {
    let ws = Workspace::new();
    ws.log_with_events(50, 5, 3);
    let sidecar = crate::support::sidecars::describing(bookings_reducer::description()).await;
    let unreachable = format!("http://127.0.0.1:{}", crate::support::processes::free_port());
    let config = ws.path("gateway.yaml");
    let connector = |id: &str, address: &str, target: &str| {
        format!(
            "  - id: {id}\n    source: {{ sqlite: {{ path: events.db }} }}\n    sidecar: {{ address: \"{address}\" }}\n    sink: {{ sqlite: {{ path: {target}, init_sql_file: \"{}\" }} }}\n",
            crate::support::fixtures::schema_file().display()
        )
    };
    let both = format!("connectors:\n{}{}", connector("good", &sidecar.address, "good.db"), connector("bad", &unreachable, "bad.db"));
    std::fs::write(&config, &both).unwrap();
    let out = gateway_in(ws.dir.path(), &["validate", "--connect", "--config", config.to_str().unwrap()], &[]).await;
    let (out_text, err) = (stdout(&out), stderr(&out));
    assert_eq!(out.status.code(), Some(1), "{out_text}\n{err}");
    for expected in [
        "connector good: source ok (sqlite, head at position 50)".to_string(),
        format!("connector good: sidecar ok ({}: Describe answered: projection `bookings`", sidecar.address),
        "connector good: target ok (sqlite: opened as `run` opens it (which creates the gateway's own tables where missing and runs the init SQL), 0 checkpoint row(s) of this connector)".to_string(),
        format!("connector bad: sidecar FAILED: the sidecar at {unreachable} cannot be reached"),
        "connector bad: target ok".to_string(),
    ] {
        assert!(out_text.contains(&expected), "`{expected}` not in:\n{out_text}");
    }
    assert!(err.contains("error: 1 of 6 check(s) failed"), "{err}");

    std::fs::write(&config, format!("connectors:\n{}", connector("good", &sidecar.address, "good.db"))).unwrap();
    let out = gateway_in(ws.dir.path(), &["validate", "--connect", "--config", config.to_str().unwrap()], &[]).await;
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
}

#[test]
fn append_from_a_json_lines_file_in_transactions_of_a_thousand() {
    let ws = Workspace::new();
    let log = ws.path("events.db");
    let line = |n: usize| format!("{{\"stream\": \"booking-{}\", \"type\": \"RoomBooked\", \"data\": {{\"n\": {n}}}, \"metadata\": {{\"by\": \"test\"}}}}\n", n % 7);
    let good: String = (1..=2_500).map(line).collect::<String>() + "\n";
    std::fs::write(ws.path("good.jsonl"), &good).unwrap();
    let out = gateway(&["append", "--log", log.to_str().unwrap(), "--from", ws.path("good.jsonl").to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("appended 2500 event(s) from"), "{}", stdout(&out));
    assert!(stdout(&out).contains("at positions 1 to 2500"), "{}", stdout(&out));
    let conn = rusqlite::Connection::open(&log).unwrap();
    let (count, revisions): (i64, i64) =
        conn.query_row("SELECT count(*), max(revision) FROM events WHERE stream = 'booking-0'", [], |r| Ok((r.get(0)?, r.get(1)?))).unwrap();
    assert_eq!((count, revisions), (357, 356));
    let (data, metadata): (String, String) = conn.query_row("SELECT data, metadata FROM events WHERE position = 7", [], |r| Ok((r.get(0)?, r.get(1)?))).unwrap();
    assert_eq!((data.as_str(), metadata.as_str()), ("{\"n\":7}", "{\"by\":\"test\"}"));

    // Line 1,500 is not an event: the first thousand stay, nothing after them is appended.
    let bad: String = (1..=2_000).map(|n| if n == 1_500 { "{\"stream\": \"s\", \"data\": {}}\n".to_string() } else { line(n) }).collect();
    std::fs::write(ws.path("bad.jsonl"), &bad).unwrap();
    let out = gateway(&["append", "--log", log.to_str().unwrap(), "--from", ws.path("bad.jsonl").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("line 1500: not an event: missing field `type`"), "{err}");
    assert!(err.contains("the 1000 event(s) of lines 1 to 1000 were appended (positions 2501 to 3500), nothing after line 1000"), "{err}");
    let head: i64 = conn.query_row("SELECT max(position) FROM events", [], |r| r.get(0)).unwrap();
    assert_eq!(head, 3_500);

    // From standard input; a payload that is not an object is refused on its line.
    let mut child = Command::new(gateway_bin())
        .args(["append", "--log", log.to_str().unwrap(), "--from", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(format!("{}{{\"stream\": \"s\", \"type\": \"T\", \"data\": [1]}}\n", line(1)).as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("standard input: line 2: `data` is not a JSON object; nothing was appended"), "{}", stderr(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_from_another_directory_uses_the_files_beside_the_config_and_exits_once_caught_up() {
    use crate::support::bookings_model::ReadModel;
    let ws = Workspace::new();
    let head = ws.log_with_events(2_000, 200, 24).head().unwrap();
    let sidecar = crate::support::sidecars::rust_reducer().await;
    let config = relative_config(&ws, &sidecar.address);
    let elsewhere = Workspace::new();
    let out = gateway_in(elsewhere.dir.path(), &["run", "--exit-when-caught-up", "--quiet", "--config", config.to_str().unwrap()], &[]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stderr(&out).contains(&format!("runs until it has applied everything up to position {head}")), "{}", stderr(&out));
    let target = ws.path("read/target.db");
    assert!(crate::support::fixtures::sqlite_checkpoints(&target, "bookings").iter().all(|r| r.2 == head));
    ReadModel::from_sqlite(&target).assert_same(&ReadModel::from_log(&ws.log_path(), |_, _| true));
    assert_eq!(std::fs::read_dir(elsewhere.dir.path()).unwrap().count(), 0, "nothing is created in the current directory");

    // Run again: nothing new, it stops at once.
    let out = gateway_in(elsewhere.dir.path(), &["run", "--exit-when-caught-up", "--quiet", "--config", config.to_str().unwrap()], &[]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));

    // Not with --state, not with a source whose head is unknown.
    let out = gateway_in(elsewhere.dir.path(), &["run", "--exit-when-caught-up", "--state", "s.db", "--config", config.to_str().unwrap()], &[]).await;
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_debug_level_each_event_logs_the_operations_the_sidecar_returned() {
    let ws = Workspace::new();
    ws.log_with_events(20, 4, 8);
    let sidecar = crate::support::sidecars::rust_reducer().await;
    let config = relative_config(&ws, &sidecar.address);
    let out = gateway_in(
        ws.dir.path(),
        &["run", "--exit-when-caught-up", "--quiet", "--config", config.to_str().unwrap()],
        &[("RUST_LOG", "info,projector_gateway::reducer=debug")],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let err = stderr(&out);
    let lines: Vec<&str> = err.lines().filter(|l| l.contains(" operation(s): ")).collect();
    // One line per event (this sidecar serves no Describe, so it is sent every event).
    assert_eq!(lines.len(), 20, "{err}");
    let booked = lines.iter().find(|l| l.contains("event_type=RoomBooked")).unwrap_or_else(|| panic!("{err}"));
    for part in ["connector=bookings", "stream=", "position=", "Statement { sql: \"INSERT INTO bookings", "params: ["] {
        assert!(booked.contains(part), "`{part}` not in {booked}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_names_its_sidecar_and_says_when_describe_filtered_every_event_out() {
    let ws = Workspace::new();
    let description = bookings_reducer::proto::DescribeResponse {
        event_types: vec!["LoanOpened".into(), "LoanReturned".into()],
        ..bookings_reducer::description()
    };
    let sidecar = crate::support::sidecars::describing(description).await;
    let dir = ws.path("demo");
    let out = gateway_in(
        ws.dir.path(),
        &["demo", "--dir", dir.to_str().unwrap(), "--events", "300", "--streams", "30", "--live-seconds", "0", "--sidecar", &sidecar.address],
        &[],
    )
    .await;
    let text = stdout(&out);
    assert!(out.status.success(), "{text}\n{}", stderr(&out));
    assert!(text.contains(&format!("sidecar     {}\n", sidecar.address)), "{text}");
    assert!(text.contains("0 operations: no event reached the sidecar. Its Describe says it handles LoanOpened, LoanReturned"), "{text}");
    assert!(text.contains(&format!("(with the sidecar at {} running)", sidecar.address)), "{text}");
    assert!(!text.contains("50051"), "{text}");
    // The config it wrote runs as it is, from anywhere.
    let written = std::fs::read_to_string(dir.join("gateway.yaml")).unwrap();
    assert!(written.contains("path: \"events.db\"") && written.contains(&sidecar.address), "{written}");
}

#[test]
fn a_sidecar_that_cannot_be_reached_yet_is_named_by_its_address() {
    let ws = Workspace::new();
    ws.log_with_events(10, 2, 5);
    let address = format!("http://127.0.0.1:{}", crate::support::processes::free_port());
    let config = relative_config(&ws, &address);
    let gateway = crate::support::processes::gateway_run(&config, ws.dir.path(), "gateway");
    let expected = format!("the sidecar at {address} cannot be reached yet");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !gateway.stderr().contains(&expected) {
        assert!(std::time::Instant::now() < deadline, "`{expected}` not logged:\n{}", gateway.stderr());
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}
