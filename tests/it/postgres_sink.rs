//! The PostgreSQL target against the real server of `scripts/postgres.sh`: the bookings read
//! model applied exactly once across restarts and lost connections, typed parameters bound to
//! the column types, failing statements stopped or parked, and clear errors for a target that
//! cannot be reached.

use std::time::Duration;

use bookings_reducer::proto::{ProjectionRequest, ProjectionResponse, SqlValue, Statement, sql_value::Kind};
use projector_gateway::pipeline::{ConnectorControl, run_connector};
use prost::Message;
use crate::support::{
    bookings_model::ReadModel,
    fixtures::*,
    postgres::{self as pg, Database},
    sidecars::{self, Script},
};

const WAIT: Duration = Duration::from_secs(120);

fn everything(_: &str, _: &str) -> bool {
    true
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn projects_into_postgres_exactly_once_across_restarts() {
    let db = Database::fresh("sink_restart").await;
    let ws = Workspace::new();
    let mut log = ws.log_with_events(8_000, 800, 41);
    let sidecar = sidecars::rust_reducer().await;
    let yaml = connector_yaml(&ws.log_path(), &sidecar.address, &pg::postgres_sink_yaml(&db.url), &Setup::default());

    let mut first = Running::start(parse_connector(&yaml)).await;
    first.wait_for(log.head().unwrap(), WAIT).await;
    first.stop().await.expect("clean stop");
    let client = db.client().await;
    pg::read_model(&client).await.assert_same(&ReadModel::from_log(&ws.log_path(), everything));

    append_generated(&mut log, 2_000, 300, 42);
    let mut second = Running::start(parse_connector(&yaml)).await;
    second.wait_for(log.head().unwrap(), WAIT).await;
    // Live appends too.
    append_generated(&mut log, 500, 50, 43);
    second.wait_for(log.head().unwrap(), WAIT).await;
    second.stop().await.expect("clean stop");

    pg::read_model(&client).await.assert_same(&ReadModel::from_log(&ws.log_path(), everything));
    let head = log.head().unwrap() as i64;
    let rows = pg::checkpoints(&client, "bookings").await;
    assert_eq!(rows.len(), 4, "{rows:?}");
    assert!(rows.iter().all(|r| r.0 == 4 && r.2 == head), "{rows:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_killed_by_the_server_are_reopened_without_loss_or_double_effect() {
    let db = Database::fresh("sink_terminate").await;
    let ws = Workspace::new();
    let mut log = ws.log_with_events(2_000, 200, 44);
    let sidecar = sidecars::rust_reducer().await;
    let setup = Setup { max_ops: 50, ..Setup::default() };
    let yaml = connector_yaml(&ws.log_path(), &sidecar.address, &pg::postgres_sink_yaml(&db.url), &setup);
    let mut running = Running::start(parse_connector(&yaml)).await;
    running.wait_for(log.head().unwrap(), WAIT).await;

    let admin = pg::connect(pg::server_url()).await;
    let terminate = "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()";
    for round in 0..3u64 {
        let killed: i64 = admin.query_one(terminate, &[&db.name]).await.unwrap().get(0);
        assert!(killed > 0, "round {round}: no gateway connection to terminate");
        append_generated(&mut log, 3_000, 300, 45 + round);
        running.wait_for(log.head().unwrap(), WAIT).await;
    }
    running.stop().await.expect("clean stop");
    pg::read_model(&db.client().await).await.assert_same(&ReadModel::from_log(&ws.log_path(), everything));
}

/// Every event becomes one insert into `typed` with each kind of parameter.
fn typed_insert(request: &ProjectionRequest) -> ProjectionResponse {
    let value = |kind| SqlValue { kind: Some(kind) };
    let statement = Statement {
        sql: "INSERT INTO typed (small, id, doc, at, amount, flag, raw, ratio, label, position) \
              VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
            .into(),
        params: vec![
            value(Kind::Int64Value(7)),
            value(Kind::UuidValue(request.event_id.clone())),
            value(Kind::JsonValue(r#"{"type": "x", "n": [1, 2]}"#.into())),
            value(Kind::StringValue("2026-11-23T10:15:00Z".into())),
            value(Kind::DecimalValue("12345678901234567890.125".into())),
            value(Kind::BoolValue(true)),
            value(Kind::BytesValue(vec![0, 1, 255])),
            value(Kind::DoubleValue(0.25)),
            value(Kind::NullValue(0)),
            value(Kind::Int64Value(request.global_position as i64)),
        ],
    };
    ProjectionResponse {
        event_id: request.event_id.clone(),
        operation: Some(prost_types::Any {
            type_url: "type.googleapis.com/projection.Statement".into(),
            value: statement.encode_to_vec(),
        }),
        ..Default::default()
    }
}

const TYPED_TABLE: &str = "CREATE TABLE IF NOT EXISTS typed (small int4, id uuid, doc jsonb, at timestamptz, \
    amount numeric, flag bool, raw bytea, ratio float8, label text, position int8 PRIMARY KEY)";

fn sink_with_init(url: &str, init_sql: &str) -> String {
    format!("      postgres:\n        url: \"{url}\"\n        init_sql: \"{init_sql}\"\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_parameters_are_bound_to_the_column_types() {
    let db = Database::fresh("sink_types").await;
    let ws = Workspace::new();
    let log = ws.log_with_events(50, 10, 46);
    let sidecar = sidecars::scripted(Script::Map(typed_insert)).await;
    let yaml = connector_yaml(&ws.log_path(), &sidecar.address, &sink_with_init(&db.url, TYPED_TABLE), &Setup::default());
    let mut running = Running::start(parse_connector(&yaml)).await;
    running.wait_for(log.head().unwrap(), WAIT).await;
    running.stop().await.expect("clean stop");

    let client = db.client().await;
    let row = client
        .query_one(
            "SELECT count(*), min(small), bool_and(flag), min(amount::text), min(doc->>'type'), min(encode(raw, 'hex')), min(ratio), \
             count(label), min(to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI')), count(DISTINCT id) FROM typed",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), 50);
    assert_eq!(row.get::<_, i32>(1), 7);
    assert!(row.get::<_, bool>(2));
    assert_eq!(row.get::<_, String>(3), "12345678901234567890.125", "numeric kept every digit");
    assert_eq!(row.get::<_, String>(4), "x");
    assert_eq!(row.get::<_, String>(5), "0001ff");
    assert_eq!(row.get::<_, f64>(6), 0.25);
    assert_eq!(row.get::<_, i64>(7), 0, "NULL stayed NULL");
    assert_eq!(row.get::<_, String>(8), "2026-11-23 10:15");
    assert_eq!(row.get::<_, i64>(9), 50);
}

fn too_big_for_int4(request: &ProjectionRequest) -> ProjectionResponse {
    let mut response = typed_insert(request);
    if request.event_type == "PaymentRecorded" {
        let mut statement = Statement::decode(response.operation.as_ref().unwrap().value.as_slice()).unwrap();
        statement.params[0] = SqlValue { kind: Some(Kind::Int64Value(5_000_000_000)) };
        response.operation.as_mut().unwrap().value = statement.encode_to_vec();
    }
    response
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parameter_that_does_not_fit_its_column_stops_before_that_event() {
    let db = Database::fresh("sink_bind").await;
    let ws = Workspace::new();
    let log = ws.log_with_events(300, 30, 47);
    let sidecar = sidecars::scripted(Script::Map(too_big_for_int4)).await;
    let yaml = connector_yaml(&ws.log_path(), &sidecar.address, &sink_with_init(&db.url, TYPED_TABLE), &Setup::default());
    let running = Running::start(parse_connector(&yaml)).await;
    let message = running.ended(WAIT).await.expect_err("the connector must stop").to_string();
    for part in ["connector `bookings`: event ", "cannot bind parameter $1 (int64 5000000000) to a column of type int4", "poison policy `stop`"] {
        assert!(message.contains(part), "`{part}` not in: {message}");
    }
    // The checkpoint of the failed event's partition stays before it.
    let captures = regex::Regex::new(r"at position (\d+) in partition (\d+)").unwrap().captures(&message).expect("position named");
    let (position, partition): (i64, i32) = (captures[1].parse().unwrap(), captures[2].parse().unwrap());
    let client = db.client().await;
    for row in pg::checkpoints(&client, "bookings").await.iter().filter(|r| r.1 == partition) {
        assert!(row.2 < position, "checkpoint {row:?} passed the failed event at {position}");
    }
    let applied: i64 = client.query_one("SELECT count(*) FROM typed WHERE position = $1", &[&position]).await.unwrap().get(0);
    assert_eq!(applied, 0);
    assert!(log.head().unwrap() > position as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn park_records_statements_the_database_rejects_and_applies_the_rest() {
    let db = Database::fresh("sink_park").await;
    let ws = Workspace::new();
    let log = ws.log_with_events(1_000, 100, 48);
    let sidecar = sidecars::scripted(Script::BadSqlFor("GuestCheckedIn")).await;
    let setup = Setup { poison: "park", ..Setup::default() };
    let yaml = connector_yaml(&ws.log_path(), &sidecar.address, &pg::postgres_sink_yaml(&db.url), &setup);
    let mut running = Running::start(parse_connector(&yaml)).await;
    running.wait_for(log.head().unwrap(), WAIT).await;
    running.stop().await.expect("clean stop");

    let client = db.client().await;
    let parked = client.query("SELECT event_type, error FROM public.parked_events", &[]).await.unwrap();
    let check_ins = ReadModel::from_log(&ws.log_path(), |_, t| t == "GuestCheckedIn");
    assert!(!parked.is_empty());
    for row in &parked {
        assert_eq!(row.get::<_, String>(0), "GuestCheckedIn");
        let error: String = row.get(1);
        assert!(error.contains("relation \"no_such_table\" does not exist"), "{error}");
    }
    assert_eq!(
        parked.len(),
        count_events(&ws, "GuestCheckedIn"),
        "one parked row per failed event ({} bookings checked in)",
        check_ins.bookings.len()
    );
    pg::read_model(&client).await.assert_same(&ReadModel::from_log(&ws.log_path(), |_, t| t != "GuestCheckedIn"));
}

fn count_events(ws: &Workspace, event_type: &str) -> usize {
    let conn = rusqlite::Connection::open(ws.log_path()).unwrap();
    conn.query_row("SELECT count(*) FROM events WHERE event_type = ?1", [event_type], |r| r.get::<_, i64>(0)).unwrap() as usize
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_target_at_start_is_one_clear_error() {
    let ws = Workspace::new();
    ws.log_with_events(10, 2, 49);
    let sidecar = sidecars::rust_reducer().await;
    let port = crate::support::processes::free_port();
    let url = format!("postgres://gateway:secret@127.0.0.1:{port}/nowhere");
    let yaml = connector_yaml(&ws.log_path(), &sidecar.address, &pg::postgres_sink_yaml(&url), &Setup::default());
    let result = tokio::time::timeout(WAIT, run_connector(parse_connector(&yaml), ConnectorControl::default(), |_| {}))
        .await
        .expect("fails fast");
    let message = result.expect_err("unreachable").to_string();
    assert!(message.starts_with("connector `bookings`: "), "{message}");
    assert!(message.contains(&format!("cannot connect to the PostgreSQL target postgres://gateway@127.0.0.1:{port}/nowhere")), "{message}");
    assert!(!message.contains("secret"), "the password leaked: {message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_projection_version_rebuilds_the_postgres_read_model() {
    let db = Database::fresh("sink_rebuild").await;
    let ws = Workspace::new();
    let head = ws.log_with_events(1_500, 150, 74).head().unwrap();
    let yaml = |address: &str| {
        connector_yaml(&ws.log_path(), address, &pg::postgres_sink_yaml(&db.url), &Setup::default())
            .replace("      window:", "      rebuild_on_new_version: true\n      window:")
    };
    for version in ["1", "2"] {
        let description = bookings_reducer::proto::DescribeResponse { version: version.into(), ..bookings_reducer::description() };
        let sidecar = sidecars::describing(description).await;
        let mut running = Running::start(parse_connector(&yaml(&sidecar.address))).await;
        running.wait_for(head, WAIT).await;
        running.stop().await.expect("clean stop");
        assert!(sidecar.requests() > 0, "version {version} projected the log");
    }
    let client = db.client().await;
    pg::read_model(&client).await.assert_same(&ReadModel::from_log(&ws.log_path(), everything));
    let version: String = client.query_one("SELECT version FROM public.projections WHERE connector = 'bookings'", &[]).await.unwrap().get(0);
    assert_eq!(version, "2");
}

/// Eight gateways (or a parked-event listing beside a starting connector) preparing one fresh
/// target at the same moment all succeed: without the preparation lock, concurrent
/// `CREATE TABLE IF NOT EXISTS` fail with `pg_type_typname_nsp_index`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn gateways_preparing_one_fresh_target_at_once_all_succeed() {
    for round in 0..3 {
        let db = Database::fresh(&format!("prepare_race_{round}")).await;
        let yaml = format!(
            "connectors:\n  - id: race\n    source:\n      sqlite: {{ path: unused.db }}\n    sidecar: {{ address: \"http://127.0.0.1:1\" }}\n    sink:\n{}",
            pg::postgres_sink_yaml(&db.url)
        );
        let config = match parse_connector(&yaml).sink {
            projector_gateway::config::SinkConfig::Postgres(config) => config,
            _ => unreachable!(),
        };
        let opens = (0..8).map(|n| {
            let config = config.clone();
            tokio::spawn(async move { projector_gateway::sinks::postgres::PostgresSink::open(&config, &format!("race-{n}"), None).await })
        });
        for opened in futures::future::join_all(opens).await {
            if let Err(e) = opened.expect("task") {
                panic!("round {round}: a concurrent preparation failed: {e}");
            }
        }
    }
}
