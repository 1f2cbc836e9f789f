//! The operator's verbs over parked events, end to end: `projector-gateway parked list / show /
//! discard` on a SQLite target, and the management API's `/connectors/{id}/parked` routes on a
//! PostgreSQL target while the gateway runs. The events are parked for real: a sidecar that
//! reports an error for every `PaymentRecorded` under poison policy `park`. The stores of the
//! other targets are tested at the sink level in `parked_stores.rs`.

use std::{path::Path, process::Output, time::Duration};

use serde_json::Value;

use crate::support::{
    bookings_model::ReadModel,
    fixtures::*,
    http,
    postgres::{self as pg, Database},
    processes::{self, gateway_bin},
    sidecars::{self, Script},
};

const WAIT: Duration = Duration::from_secs(120);
const FAILING: &str = "PaymentRecorded";
/// What the scripted sidecar reports for each of them.
const REASON: &str = "cannot price this room";

async fn gateway(args: &[&str]) -> (Output, String, String) {
    let mut command = tokio::process::Command::new(gateway_bin());
    command.args(args).env_remove("RUST_LOG");
    let out = tokio::time::timeout(WAIT, command.output())
        .await
        .unwrap_or_else(|_| panic!("projector-gateway {args:?} did not end within {WAIT:?}"))
        .expect("run projector-gateway");
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned());
    (out, stdout, stderr)
}

fn count_of(log: &Path, event_type: &str) -> usize {
    rusqlite::Connection::open(log)
        .unwrap()
        .query_row("SELECT count(*) FROM events WHERE event_type = ?1", [event_type], |r| r.get::<_, i64>(0))
        .unwrap() as usize
}

/// The reference read model of the whole log with the events of `replayed` applied after all
/// the others, in log order: what replaying them once they were parked yields.
fn replayed_last(log: &Path, replayed: &str) -> ReadModel {
    let mut model = ReadModel::from_log(log, |_, event_type| event_type != replayed);
    let conn = rusqlite::Connection::open(log).unwrap();
    let mut statement = conn.prepare("SELECT position, data FROM events WHERE event_type = ?1 ORDER BY position").unwrap();
    let rows = statement.query_map([replayed], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))).unwrap();
    for row in rows {
        let (position, data) = row.unwrap();
        model.apply(position, replayed, &serde_json::from_str(&data).unwrap());
    }
    model
}

/// The `parked_events` gauge of connector `bookings` in the gateway's `/metrics`.
fn parked_gauge(listen: &str) -> i64 {
    let (_, metrics) = http::get(listen, "/metrics").expect("metrics");
    let line = metrics.lines().find(|l| l.starts_with("projector_gateway_parked_events{connector=\"bookings\"}")).unwrap_or_else(|| panic!("{metrics}"));
    line.rsplit(' ').next().unwrap().parse().unwrap()
}

fn json_lines(stdout: &str) -> Vec<Value> {
    stdout.lines().map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"))).collect()
}

fn ids(events: &[Value]) -> Vec<String> {
    events.iter().map(|e| e["id"].as_str().expect("id").to_owned()).collect()
}

/// Runs the connector of `config` in this process until it has handled the whole log.
async fn park_the_failing_events(yaml: &str, head: u64) {
    let mut running = Running::start(parse_connector(yaml)).await;
    running.wait_for(head, WAIT).await;
    running.stop().await.expect("park keeps the connector running");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_lists_shows_and_discards_parked_events_of_a_sqlite_target() {
    let ws = Workspace::new();
    let log = ws.log_with_events(400, 40, 81);
    let sidecar = sidecars::scripted(Script::ErrorFor(FAILING, false)).await;
    let yaml = connector_yaml(&ws.log_path(), &sidecar.address, &sqlite_sink_yaml(&ws.target_path()), &Setup { poison: "park", ..Setup::default() });
    park_the_failing_events(&yaml, log.head().unwrap()).await;
    let config = ws.path("gateway.yaml");
    std::fs::write(&config, &yaml).unwrap();
    let config = config.to_str().unwrap();
    let parked = count_of(&ws.log_path(), FAILING);
    assert!(parked >= 5, "the generated log has {parked} {FAILING} events");

    // All of them, oldest position first, with every field.
    let (out, stdout, stderr) = gateway(&["parked", "list", "-c", config, "--connector", "bookings", "--limit", "0", "--json"]).await;
    assert!(out.status.success(), "{stderr}");
    let all = json_lines(&stdout);
    assert_eq!(all.len(), parked, "{stdout}");
    let positions: Vec<u64> = all.iter().map(|e| e["position"].as_u64().unwrap()).collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "{positions:?}");
    for event in &all {
        assert_eq!(event["event_type"], FAILING);
        assert!(event["error"].as_str().unwrap().contains(REASON), "{event}");
        assert!(event["payload"].as_str().is_some_and(|p| p.starts_with('{')), "{event}");
        assert!(chrono::DateTime::parse_from_rfc3339(event["parked_at"].as_str().unwrap()).is_ok(), "{event}");
    }

    // Filters and the limit.
    let (_, stdout, _) = gateway(&["parked", "list", "-c", config, "--connector", "bookings", "--json", "--type", "RoomBooked"]).await;
    assert_eq!(stdout, "", "no RoomBooked event was parked");
    let (_, stdout, _) = gateway(&["parked", "list", "-c", config, "--connector", "bookings", "--json", "--limit", "3"]).await;
    assert_eq!(ids(&json_lines(&stdout)), ids(&all[..3]));
    let (_, stdout, _) = gateway(&["parked", "list", "-c", config, "--connector", "bookings", "--json", "--since", "2999-01-01T00:00:00Z"]).await;
    assert_eq!(stdout, "");
    let (out, _, stderr) = gateway(&["parked", "list", "-c", config, "--connector", "bookings", "--since", "yesterday"]).await;
    assert_eq!(out.status.code(), Some(2), "a bad time is a usage error: {stderr}");
    assert!(stderr.contains("expected RFC 3339"), "{stderr}");
    // The table names each event.
    let (_, stdout, stderr) = gateway(&["parked", "list", "-c", config, "--connector", "bookings", "--limit", "0"]).await;
    assert_eq!(stdout.lines().count(), parked + 1, "a header and a line per event: {stdout}");
    assert!(stderr.contains(&format!("{parked} parked event(s)")), "{stderr}");

    // Show: the whole record; an unknown id fails.
    let first = all[0]["id"].as_str().unwrap();
    let (out, stdout, _) = gateway(&["parked", "show", "-c", config, "--connector", "bookings", first]).await;
    assert!(out.status.success());
    assert!(stdout.contains(&format!("parked event {first}")) && stdout.contains(all[0]["event_id"].as_str().unwrap()), "{stdout}");
    let (out, _, stderr) = gateway(&["parked", "show", "-c", config, "--connector", "bookings", first, "999999"]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr.contains("connector `bookings` has no parked event `999999`"), "{stderr}");

    // Discard two by id, then the rest by filter; the log and the checkpoints do not change.
    let checkpoints = sqlite_checkpoints(&ws.target_path(), "bookings");
    let (a, b) = (all[1]["id"].as_str().unwrap(), all[2]["id"].as_str().unwrap());
    let (out, stdout, stderr) = gateway(&["parked", "discard", "-c", config, "--connector", "bookings", a, b, "424242"]).await;
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("discarded 2 of 3 parked event(s)"), "{stdout}");
    let (_, stdout, _) = gateway(&["parked", "list", "-c", config, "--connector", "bookings", "--limit", "0", "--json"]).await;
    let left = ids(&json_lines(&stdout));
    assert_eq!(left.len(), parked - 2);
    assert!(!left.iter().any(|id| id == a || id == b), "{left:?}");
    let (out, stdout, _) = gateway(&["parked", "discard", "-c", config, "--connector", "bookings", "--matching", "--error-contains", REASON, "--limit", "0"]).await;
    assert!(out.status.success());
    assert!(stdout.contains(&format!("discarded {} of {}", parked - 2, parked - 2)), "{stdout}");
    let (_, stdout, _) = gateway(&["parked", "list", "-c", config, "--connector", "bookings", "--json"]).await;
    assert_eq!(stdout, "");
    assert_eq!(sqlite_checkpoints(&ws.target_path(), "bookings"), checkpoints);
    assert_eq!(count_of(&ws.log_path(), FAILING), parked);

    // A connector the file does not have is a config error.
    let (out, _, stderr) = gateway(&["parked", "list", "-c", config, "--connector", "nope"]).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr.contains("no connector `nope`; the file has: bookings"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_management_api_lists_shows_and_discards_parked_events_of_a_postgres_target() {
    let db = Database::fresh("parked_api").await;
    let ws = Workspace::new();
    let log = ws.log_with_events(300, 30, 82);
    let head = log.head().unwrap();
    let sidecar = sidecars::scripted(Script::ErrorFor(FAILING, false)).await;
    let yaml = connector_yaml(&ws.log_path(), &sidecar.address, &pg::postgres_sink_yaml(&db.url), &Setup { poison: "park", ..Setup::default() });
    let config = ws.path("gateway.yaml");
    std::fs::write(&config, &yaml).unwrap();
    let listen = format!("127.0.0.1:{}", processes::free_port());
    let mut command = std::process::Command::new(gateway_bin());
    command.args(["run", "--config"]).arg(&config).args(["--listen", &listen, "--management-token", "sesame"]).env("RUST_LOG", "info");
    let mut gateway = processes::Process::spawn(command, ws.path("gateway.log"), false);
    let parked = count_of(&ws.log_path(), FAILING);
    assert!(parked >= 5, "the generated log has {parked} {FAILING} events");

    // The gateway runs the connector to the head meanwhile; every failing event ends up parked.
    let client = db.client().await;
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        if let Some(status) = gateway.child.try_wait().unwrap() {
            panic!("the gateway exited ({status}) before parking every failing event; its log:\n{}", gateway.stderr());
        }
        let rows = pg::checkpoints(&client, "bookings").await;
        let at_head = rows.len() == 4 && rows.iter().all(|r| r.2 == head as i64);
        let listed = http::get(&listen, "/connectors/bookings/parked?limit=0").filter(|(status, _)| *status == 200);
        let count = listed.map(|(_, body)| serde_json::from_str::<Value>(&body).unwrap()["count"].clone());
        if at_head && count == Some(Value::from(parked)) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "within {WAIT:?}: checkpoints {rows:?} (head {head}), parked {count:?} of {parked}; the gateway's log:\n{}",
            gateway.stderr()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    assert_eq!(parked_gauge(&listen), parked as i64, "counted as they were parked");
    let (status, body) = http::get(&listen, "/connectors/bookings/parked?limit=0").unwrap();
    assert_eq!(status, 200, "{body}");
    let body: Value = serde_json::from_str(&body).unwrap();
    let all = body["parked"].as_array().unwrap().clone();
    assert_eq!(all.len(), parked);
    assert!(all.iter().all(|e| e["event_type"] == FAILING && e["error"].as_str().unwrap().contains(REASON)), "{body}");
    let (_, body) = http::get(&listen, "/connectors/bookings/parked?limit=2").unwrap();
    let two: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(ids(two["parked"].as_array().unwrap()), ids(&all[..2]));
    assert!(two["note"].as_str().unwrap().contains("the first 2"), "{two}");
    let (_, body) = http::get(&listen, "/connectors/bookings/parked?type=RoomBooked").unwrap();
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["count"], 0);
    let (status, body) = http::get(&listen, "/connectors/bookings/parked?since=soon").unwrap();
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("expected RFC 3339"), "{body}");

    // One event, whole; an unknown one is a 404 that says so.
    let first = all[0]["id"].as_str().unwrap();
    let (status, body) = http::get(&listen, &format!("/connectors/bookings/parked/{first}")).unwrap();
    assert_eq!(status, 200, "{body}");
    let one: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(one, all[0]);
    let (status, body) = http::get(&listen, "/connectors/bookings/parked/999999").unwrap();
    assert_eq!(status, 404);
    assert!(body.contains("connector `bookings` has no parked event `999999`"), "{body}");
    let (status, _) = http::get(&listen, "/connectors/nope/parked").unwrap();
    assert_eq!(status, 404);

    // Discarding needs the token; then one by DELETE, two by POST.
    let path = format!("/connectors/bookings/parked/{first}");
    assert_eq!(http::request(&listen, "DELETE", &path, "", None).unwrap().0, 401);
    let (status, body) = http::request(&listen, "DELETE", &path, "", Some("sesame")).unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["discarded"], 1);
    let (a, b) = (all[1]["id"].as_str().unwrap(), all[2]["id"].as_str().unwrap());
    let request = format!(r#"{{"ids": ["{a}", "{b}"]}}"#);
    let (status, body) = http::request(&listen, "POST", "/connectors/bookings/parked/discard", &request, Some("sesame")).unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["discarded"], 2);
    let (status, body) = http::request(&listen, "POST", "/connectors/bookings/parked/discard", "[1]", Some("sesame")).unwrap();
    assert_eq!(status, 400, "{body}");

    assert_eq!(parked_gauge(&listen), parked as i64 - 3, "the discards through the API are counted");
    // The target holds exactly the rest.
    let rows = client.query("SELECT id::text FROM public.parked_events WHERE connector = 'bookings' ORDER BY position", &[]).await.unwrap();
    let left: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    assert_eq!(left, ids(&all[3..]));

    // A replay while the sidecar still fails: both stay parked (as new rows, the old ones
    // discarded), each with both reasons; the token is needed.
    let (c, d) = (all[3]["id"].as_str().unwrap(), all[4]["id"].as_str().unwrap());
    let request = format!(r#"{{"ids": ["{c}", "{d}"]}}"#);
    assert_eq!(http::request(&listen, "POST", "/connectors/bookings/parked/replay", &request, None).unwrap().0, 401);
    let (status, body) = http::request(&listen, "POST", "/connectors/bookings/parked/replay", &request, Some("sesame")).unwrap();
    assert_eq!(status, 200, "{body}");
    let outcome: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(outcome["parked_again"].as_array().unwrap().len(), 2, "{outcome}");
    assert_eq!(outcome["applied"], serde_json::json!([]), "{outcome}");
    let rows = client
        .query("SELECT id::text, error FROM public.parked_events WHERE connector = 'bookings' ORDER BY position", &[])
        .await
        .unwrap();
    assert_eq!(rows.len(), parked - 3, "one record per event");
    let again: Vec<String> = rows.iter().map(|r| r.get::<_, String>(1)).filter(|e| e.contains("failed again")).collect();
    assert_eq!(again.len(), 2, "{again:?}");
    assert!(again.iter().all(|e| e.contains(REASON) && e.contains("parked before:")), "{again:?}");
    assert!(!rows.iter().any(|r| r.get::<_, String>(0) == c || r.get::<_, String>(0) == d), "the earlier records were replaced");
    assert_eq!(parked_gauge(&listen), parked as i64 - 3, "parked again: as many as before");

    // A restart counts them in the target: discarded by another process meanwhile included.
    gateway.signal(processes::SIGTERM);
    assert!(gateway.wait_exit(WAIT).success(), "{}", gateway.stderr());
    client.execute("DELETE FROM public.parked_events WHERE id = (SELECT min(id) FROM public.parked_events)", &[]).await.unwrap();
    let mut command = std::process::Command::new(gateway_bin());
    command.args(["run", "--config"]).arg(&config).args(["--listen", &listen]).env("RUST_LOG", "info");
    let mut gateway = processes::Process::spawn(command, ws.path("gateway-2.log"), false);
    poll_until("the restarted gateway's count", WAIT, || {
        let (_, metrics) = http::get(&listen, "/metrics")?;
        metrics.contains(&format!("projector_gateway_parked_events{{connector=\"bookings\"}} {}", parked - 4)).then_some(())
    })
    .await;
    gateway.signal(processes::SIGTERM);
    assert!(gateway.wait_exit(WAIT).success(), "{}", gateway.stderr());
}

/// Replay on a SQLite target: with the sidecar still failing, the named events stay parked with
/// both reasons and nothing is applied; once the sidecar is fixed (here: the config names the
/// correct reducer), every parked event is applied, its record discarded, the read model equals
/// the reference of the whole log, and no checkpoint moved.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_replays_parked_events_through_the_fixed_sidecar() {
    let ws = Workspace::new();
    let log = ws.log_with_events(400, 40, 83);
    let failing = sidecars::scripted(Script::ErrorFor(FAILING, false)).await;
    let setup = Setup { poison: "park", ..Setup::default() };
    let yaml = connector_yaml(&ws.log_path(), &failing.address, &sqlite_sink_yaml(&ws.target_path()), &setup);
    park_the_failing_events(&yaml, log.head().unwrap()).await;
    let still_failing = ws.path("failing.yaml");
    std::fs::write(&still_failing, &yaml).unwrap();
    let fixed_sidecar = sidecars::rust_reducer().await;
    let fixed = ws.path("fixed.yaml");
    std::fs::write(&fixed, connector_yaml(&ws.log_path(), &fixed_sidecar.address, &sqlite_sink_yaml(&ws.target_path()), &setup)).unwrap();
    let (still_failing, fixed) = (still_failing.to_str().unwrap(), fixed.to_str().unwrap());
    let parked = count_of(&ws.log_path(), FAILING);
    let (_, stdout, _) = gateway(&["parked", "list", "-c", still_failing, "--connector", "bookings", "--limit", "0", "--json"]).await;
    let before = json_lines(&stdout);
    assert_eq!(before.len(), parked);
    let checkpoints = sqlite_checkpoints(&ws.target_path(), "bookings");
    let without_payments = ReadModel::from_log(&ws.log_path(), |_, event_type| event_type != FAILING);
    ReadModel::from_sqlite(&ws.target_path()).assert_same(&without_payments);

    // Still failing: parked again with both reasons, exit 1, nothing applied.
    let (a, b) = (before[0]["id"].as_str().unwrap(), before[1]["id"].as_str().unwrap());
    let (out, stdout, stderr) = gateway(&["parked", "replay", "-c", still_failing, "--connector", "bookings", a, b, "777777", "--json"]).await;
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    let outcome: Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(outcome["applied"], serde_json::json!([]), "{outcome}");
    assert_eq!(outcome["parked_again"].as_array().unwrap().len(), 2, "{outcome}");
    assert_eq!(outcome["not_replayed"][0]["id"], "777777", "{outcome}");
    let (_, stdout, _) = gateway(&["parked", "list", "-c", still_failing, "--connector", "bookings", "--limit", "0", "--json"]).await;
    let after_failure = json_lines(&stdout);
    assert_eq!(after_failure.len(), parked, "each failed replay leaves exactly one record");
    let again: Vec<&Value> = after_failure.iter().filter(|e| e["error"].as_str().unwrap().contains("failed again")).collect();
    assert_eq!(again.len(), 2, "{after_failure:?}");
    for record in again {
        let error = record["error"].as_str().unwrap();
        assert!(error.contains(REASON) && error.contains("parked before:"), "{error}");
    }
    ReadModel::from_sqlite(&ws.target_path()).assert_same(&without_payments);

    // Fixed: everything applied, nothing parked; the read model is the whole log's with the
    // replayed events applied last, in log order (a booking's `last_position` is the replayed
    // payment's: the documented order of a replay).
    let (out, stdout, stderr) = gateway(&["parked", "replay", "-c", fixed, "--connector", "bookings", "--matching", "--limit", "0"]).await;
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(stderr.contains(&format!("{parked} applied, 0 parked again, 0 not replayed")), "{stderr}");
    let (_, stdout, _) = gateway(&["parked", "list", "-c", fixed, "--connector", "bookings", "--json"]).await;
    assert_eq!(stdout, "");
    ReadModel::from_sqlite(&ws.target_path()).assert_same(&replayed_last(&ws.log_path(), FAILING));
    assert_ne!(replayed_last(&ws.log_path(), FAILING), ReadModel::from_log(&ws.log_path(), |_, _| true), "the order shows");
    assert_eq!(sqlite_checkpoints(&ws.target_path(), "bookings"), checkpoints, "a replay moves no checkpoint");
}

/// Replay where a parked record's id is the event's place in the log (MongoDB, Elasticsearch):
/// parking an event again replaces its record instead of adding one. With the sidecar still
/// failing, the two replayed records keep their ids and carry both reasons; with the fixed
/// sidecar every record is gone and, on MongoDB, the read model is the reference with the
/// replayed events applied last.
#[cfg(any(feature = "mongo", feature = "elastic"))]
mod same_id_stores {
    use projector_gateway::{
        pipeline::{list_parked, replay_parked},
        sinks::parked::ParkedQuery,
    };

    use super::*;
    use crate::support::sidecars::Script;

    async fn parked_ids(yaml: &str) -> Vec<(String, String)> {
        let parked = list_parked(parse_connector(yaml), ParkedQuery::default()).await.expect("list");
        parked.into_iter().map(|p| (p.id, p.error)).collect()
    }

    /// Parks the failing events through `failing`, replays two of them through it and then all
    /// of them through `fixed`; returns the log's path's workspace for the caller's checks.
    async fn park_and_replay(sink_yaml: &str, failing: Script, fixed: Script) -> Workspace {
        let ws = Workspace::new();
        let log = ws.log_with_events(300, 30, 84);
        let failing = sidecars::scripted(failing).await;
        let setup = Setup { poison: "park", ..Setup::default() };
        let yaml = connector_yaml(&ws.log_path(), &failing.address, sink_yaml, &setup);
        park_the_failing_events(&yaml, log.head().unwrap()).await;
        let parked = count_of(&ws.log_path(), FAILING);
        let before = parked_ids(&yaml).await;
        assert_eq!(before.len(), parked);

        let two = vec![before[0].0.clone(), before[1].0.clone()];
        let outcome = replay_parked(parse_connector(&yaml), two.clone()).await.expect("replay");
        assert_eq!(outcome.parked_again.len(), 2, "{outcome:?}");
        let after = parked_ids(&yaml).await;
        assert_eq!(after.len(), parked, "the records were replaced, not added to");
        for id in &two {
            let error = &after.iter().find(|(i, _)| i == id).expect("same id").1;
            assert!(error.contains("failed again") && error.contains(REASON) && error.contains("parked before:"), "{error}");
        }

        let fixed = sidecars::scripted(fixed).await;
        let fixed_yaml = connector_yaml(&ws.log_path(), &fixed.address, sink_yaml, &setup);
        let all: Vec<String> = after.into_iter().map(|(id, _)| id).collect();
        let outcome = replay_parked(parse_connector(&fixed_yaml), all).await.expect("replay");
        assert_eq!(outcome.applied.len(), parked, "{outcome:?}");
        assert!(outcome.parked_again.is_empty() && outcome.not_replayed.is_empty(), "{outcome:?}");
        assert!(parked_ids(&fixed_yaml).await.is_empty());
        ws
    }

    fn error_for_failing(request: &bookings_reducer::proto::ProjectionRequest, reduce: fn(&bookings_reducer::proto::ProjectionRequest) -> bookings_reducer::proto::ProjectionResponse) -> bookings_reducer::proto::ProjectionResponse {
        let mut response = reduce(request);
        if request.event_type == FAILING {
            response.operation = None;
            response.operations.clear();
            response.error = Some(bookings_reducer::proto::ReducerError { message: REASON.into(), retryable: false });
        }
        response
    }

    #[cfg(feature = "mongo")]
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn mongo_replays_in_place() {
        use crate::support::mongo::{MongoDb, Server};
        fn failing(request: &bookings_reducer::proto::ProjectionRequest) -> bookings_reducer::proto::ProjectionResponse {
            error_for_failing(request, bookings_reducer::reduce_mongo)
        }
        let db = MongoDb::fresh(Server::Secantus, "replay").await;
        let ws = park_and_replay(&db.sink_yaml(""), Script::Map(failing), Script::Map(bookings_reducer::reduce_mongo)).await;
        db.read_model().await.assert_same(&replayed_last(&ws.log_path(), FAILING));
    }

    #[cfg(feature = "elastic")]
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn elasticsearch_replays_in_place() {
        use crate::support::{elastic::{Engine, Indices}, elastic_bookings::reduce_elastic};
        fn failing(request: &bookings_reducer::proto::ProjectionRequest) -> bookings_reducer::proto::ProjectionResponse {
            error_for_failing(request, reduce_elastic)
        }
        let indices = Indices::fresh(Engine::Elasticsearch, "replay");
        park_and_replay(&indices.sink_yaml(""), Script::Map(failing), Script::Map(reduce_elastic)).await;
    }
}
