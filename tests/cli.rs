//! The command line as an operator meets it: `validate` lists every problem with its key path,
//! `run` refuses bad configs and unreachable databases with one clear message and a non-zero
//! exit (never a panic), `append` writes to the embedded log.

mod support;

use std::process::{Command, Output};

use support::{fixtures::Workspace, processes::gateway_bin};

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

/// `deploy/kubernetes.yaml` cannot be applied here (no cluster), but what it says about the
/// binary is checked: its gateway.yaml validates, and the arguments, probes and scrape port
/// are those `run --listen` serves.
#[test]
fn the_kubernetes_example_agrees_with_the_binary() {
    use serde::Deserialize;
    let text = std::fs::read_to_string(support::processes::repo_root().join("deploy/kubernetes.yaml")).unwrap();
    let docs: Vec<serde_yaml::Value> =
        serde_yaml::Deserializer::from_str(&text).map(|doc| serde_yaml::Value::deserialize(doc).expect("YAML")).collect();
    let of_kind = |kind: &str| docs.iter().find(|d| d["kind"] == kind).unwrap_or_else(|| panic!("a {kind}"));

    let ws = Workspace::new();
    let config = ws.path("gateway.yaml");
    std::fs::write(&config, of_kind("ConfigMap")["data"]["gateway.yaml"].as_str().unwrap()).unwrap();
    let out = Command::new(gateway_bin())
        .args(["validate", "--config", config.to_str().unwrap()])
        .env("ESDB_PASSWORD", "secret")
        .env("PGPASSWORD", "secret")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));

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
