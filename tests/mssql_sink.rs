//! The SQL Server target. No SQL Server can run on the development machine, so most of this
//! suite runs against the in-repo TDS test double (`tests/support/tds/`), a recorder that
//! speaks the wire protocol to tiberius: it asserts the exact calls the gateway sends (the
//! `sp_executesql` text, each parameter's TDS type, transaction boundaries, the checkpoint
//! `MERGE`, round trips per batch, table creation, errors and retries, checkpoint loading).
//! What SQL Server itself would do with that T-SQL is tested only by the opt-in suite at the
//! end, which runs when `MSSQL_URL` names a real server (README, "SQL Server target").

mod support;

use std::{sync::Arc, time::Duration};

use bookings_reducer::proto::{ProjectionRequest, ProjectionResponse, SqlValue as PbValue, Statement, sql_value::Kind};
use bytes::Bytes;
use projector_gateway::{
    config::MssqlSinkConfig,
    event::{ContentType, Event},
    sinks::{Batch, BatchItem, EventRef, Sink, SinkWriter, mssql::MssqlSink, sql::{SqlOp, SqlValue}},
};
use prost::Message;
use support::{
    fixtures::*,
    sidecars::{self, Script},
    tds::{Param, Request, ScriptedError, TdsServer, Value},
};

const WAIT: Duration = Duration::from_secs(120);

fn config(server: &TdsServer, schema: &str) -> MssqlSinkConfig {
    MssqlSinkConfig {
        connection_string: server.connection_string("reads"),
        schema: schema.into(),
        init_sql: Some("IF OBJECT_ID(N'dbo.seen', N'U') IS NULL CREATE TABLE dbo.seen (position bigint PRIMARY KEY)".into()),
        init_sql_file: None,
        allow_raw_sql: true,
        writers: 1,
    }
}

fn event(position: u64, partition: u32, event_type: &str) -> EventRef {
    EventRef::new(
        Arc::new(Event {
            position,
            stream: format!("booking-{partition}"),
            revision: 0,
            event_type: event_type.into(),
            event_id: format!("00000000-0000-0000-0000-{position:012}"),
            data: Bytes::from_static(br#"{"a":1}"#),
            content_type: ContentType::default(),
            metadata: None,
            created: chrono::Utc::now(),
        }),
        partition,
    )
}

fn apply(position: u64, partition: u32, ops: Vec<SqlOp>) -> BatchItem<SqlOp> {
    BatchItem::Apply { event: event(position, partition, "RoomBooked"), ops }
}

fn statement(sql: &str, params: Vec<SqlValue>) -> SqlOp {
    SqlOp::Statement { sql: sql.into(), params }
}

/// The RPCs and SQL batches a step sent (logins left out).
fn calls(server: &TdsServer) -> Vec<Request> {
    server.requests().into_iter().filter(|r| !matches!(r, Request::Login { .. })).collect()
}

fn types(params: &[Param]) -> Vec<&str> {
    params.iter().map(|p| p.tds_type.as_str()).collect()
}

#[tokio::test]
async fn start_creates_the_tables_in_the_configured_schema_and_restart_loads_checkpoints() {
    let server = TdsServer::start().await;
    server.set_checkpoint("bookings", 4, 2, 1234);
    let sink = MssqlSink::open(&config(&server, "gateway"), "bookings").await.expect("open");
    let requests = server.requests();
    assert_eq!(requests[0], Request::Login { user: "gateway".into(), database: "reads".into() });
    let Request::Batch { text, .. } = &requests[1] else { panic!("table creation is a SQL batch: {requests:?}") };
    assert!(text.starts_with("IF SCHEMA_ID(N'gateway') IS NULL EXEC(N'CREATE SCHEMA [gateway]');\n"), "{text}");
    for table in ["checkpoints", "parked_events", "projections"] {
        assert!(
            text.contains(&format!("IF OBJECT_ID(N'[gateway].[{table}]', N'U') IS NULL CREATE TABLE [gateway].[{table}] (")),
            "{table}: {text}"
        );
    }
    assert!(requests[2].text().starts_with("IF OBJECT_ID(N'dbo.seen'"), "init_sql runs after: {:?}", requests[2]);
    assert_eq!(requests.len(), 3, "one round trip for the tables, one for init_sql: {requests:?}");

    server.clear_requests();
    let rows = sink.load_checkpoints().await.expect("checkpoints");
    assert_eq!(rows.len(), 1);
    assert_eq!((rows[0].partition_count, rows[0].partition, rows[0].position), (4, 2, 1234));
    let Request::Rpc { procedure, text, declared, params, .. } = &calls(&server)[0] else { panic!() };
    assert_eq!(procedure, "sp_executesql");
    assert_eq!(text, "SELECT partition_count, [partition], position FROM [gateway].[checkpoints] WHERE connector = @P1");
    assert_eq!(declared, "@P1 nvarchar(4000)");
    assert_eq!(params[0].value, Value::Text("bookings".into()));
}

#[tokio::test]
async fn a_batch_is_one_sp_executesql_call_holding_the_transaction_and_the_checkpoint_merge() {
    let server = TdsServer::start().await;
    let sink = MssqlSink::open(&config(&server, "dbo"), "bookings").await.expect("open");
    let mut writer = sink.open_writer().await.expect("writer");
    let at: chrono::DateTime<chrono::Utc> = "2026-11-23T10:15:00.5Z".parse().unwrap();
    let id = "67e55044-10b1-426f-9247-bb680e5fe0c8";
    let typed = statement(
        "INSERT INTO typed (n, flag, amount, ratio, label, at, id, raw, nothing, doc) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        vec![
            SqlValue::Int(5_000_000_000),
            SqlValue::Bool(true),
            SqlValue::Decimal("12345678901234567890.125".into()),
            SqlValue::Double(0.25),
            SqlValue::Text("née".into()),
            SqlValue::Timestamp(at),
            SqlValue::Uuid(id.into()),
            SqlValue::Bytes(vec![0, 1, 255]),
            SqlValue::Null,
            SqlValue::Json(r#"{"k":[1,2]}"#.into()),
        ],
    );
    let batch = Batch::new(
        vec![
            apply(10, 0, vec![typed, SqlOp::Raw("DELETE FROM audit WHERE 1 = 0".into())]),
            apply(11, 1, vec![statement("UPDATE seen SET position = @P1 WHERE position = @P2", vec![SqlValue::Int(11), SqlValue::Int(3)])]),
            apply(12, 0, vec![statement("INSERT INTO seen (position) VALUES (?)", vec![SqlValue::Int(12)])]),
        ],
        4,
    );
    server.clear_requests();
    writer.apply(Arc::new(batch)).await.expect("applied");

    let calls = calls(&server);
    assert_eq!(calls.len(), 1, "one round trip per batch: {calls:#?}");
    let Request::Rpc { procedure, text, declared, params, transaction, .. } = &calls[0] else { panic!("{calls:?}") };
    assert_eq!(procedure, "sp_executesql");
    assert_eq!(*transaction, 0, "the transaction opens inside the call");
    assert_eq!(
        text,
        "SET NOCOUNT ON; SET XACT_ABORT ON; BEGIN TRAN;\n\
         INSERT INTO typed (n, flag, amount, ratio, label, at, id, raw, nothing, doc) VALUES (@P1, @P2, @P3, @P4, @P5, @P6, @P7, @P8, @P9, @P10)\n;\n\
         DELETE FROM audit WHERE 1 = 0\n;\n\
         UPDATE seen SET position = @P11 WHERE position = @P12\n;\n\
         INSERT INTO seen (position) VALUES (@P13)\n;\n\
         MERGE [dbo].[checkpoints] WITH (HOLDLOCK) AS t USING (VALUES (@P16, @P17), (@P18, @P19)) AS s ([partition], position) \
         ON t.connector = @P14 AND t.partition_count = @P15 AND t.[partition] = s.[partition] \
         WHEN MATCHED THEN UPDATE SET position = s.position, updated_at = SYSUTCDATETIME() \
         WHEN NOT MATCHED THEN INSERT (connector, partition_count, [partition], position, updated_at) \
         VALUES (@P14, @P15, s.[partition], s.position, SYSUTCDATETIME());\n;\n\
         COMMIT TRAN;"
    );
    assert_eq!(
        declared,
        "@P1 bigint,@P2 bit,@P3 numeric(23,3),@P4 float(53),@P5 nvarchar(4000),@P6 datetime2,@P7 uniqueidentifier,\
         @P8 varbinary(8000),@P9 nvarchar(4000),@P10 nvarchar(4000),@P11 bigint,@P12 bigint,@P13 bigint,\
         @P14 nvarchar(4000),@P15 int,@P16 int,@P17 bigint,@P18 int,@P19 bigint"
    );
    assert_eq!(
        types(&params[..10]),
        ["intn(8)", "bitn", "numeric(23,3)", "fltn(8)", "nvarchar(4000)", "datetime2(7)", "guid", "varbinary(8000)", "null", "nvarchar(4000)"]
    );
    let values: Vec<&Value> = params.iter().map(|p| &p.value).collect();
    assert_eq!(
        values[..10],
        [
            &Value::Int(5_000_000_000),
            &Value::Bit(true),
            &Value::Decimal("12345678901234567890.125".into()),
            &Value::Float(0.25),
            &Value::Text("née".into()),
            &Value::DateTime2("2026-11-23T10:15:00.5000000".into()),
            &Value::Guid(id.into()),
            &Value::Bytes(vec![0, 1, 255]),
            &Value::Null,
            &Value::Text(r#"{"k":[1,2]}"#.into()),
        ]
    );
    assert_eq!(params.iter().map(|p| p.name.as_str()).collect::<Vec<_>>()[..3], ["@P1", "@P2", "@P3"]);
    // The checkpoint rows: connector, partition count, then (partition, position) per partition.
    assert_eq!(
        values[13..],
        [&Value::Text("bookings".into()), &Value::Int(4), &Value::Int(0), &Value::Int(12), &Value::Int(1), &Value::Int(11)]
    );
    assert_eq!(server.checkpoints("bookings"), [(4, 0, 12), (4, 1, 11)], "committed");
}

#[tokio::test]
async fn a_batch_over_the_rpc_parameter_limit_spans_several_calls_in_one_transaction() {
    let server = TdsServer::start().await;
    let sink = MssqlSink::open(&config(&server, "dbo"), "bookings").await.expect("open");
    let mut writer = sink.open_writer().await.expect("writer");
    let wide = |position: u64| {
        let sql = format!("INSERT INTO wide VALUES ({})", (1..=1000).map(|i| format!("${i}")).collect::<Vec<_>>().join(", "));
        apply(position, 0, vec![statement(&sql, (0..1000).map(SqlValue::Int).collect())])
    };
    server.clear_requests();
    writer.apply(Arc::new(Batch::new(vec![wide(1), wide(2), wide(3)], 1))).await.expect("applied");

    let calls = calls(&server);
    assert_eq!(calls.len(), 4, "BEGIN, two calls of at most 2,098 parameters, COMMIT: {:#?}", calls.iter().map(Request::text).collect::<Vec<_>>());
    assert!(matches!(&calls[0], Request::Batch { text, transaction: 0, .. } if text == "SET XACT_ABORT ON; BEGIN TRAN;"));
    let descriptors: Vec<u64> = calls[1..3]
        .iter()
        .map(|c| match c {
            Request::Rpc { params, transaction, .. } => {
                assert!(params.len() <= 2_098);
                *transaction
            }
            other => panic!("{other:?}"),
        })
        .collect();
    assert!(descriptors[0] != 0 && descriptors[0] == descriptors[1], "both calls carry the open transaction: {descriptors:?}");
    assert!(matches!(&calls[3], Request::Batch { text, transaction, .. } if text == "COMMIT TRAN;" && *transaction == descriptors[0]));
    let Request::Rpc { params, text, .. } = &calls[2] else { panic!() };
    assert_eq!(params.len(), 1_004, "the third statement and the checkpoint MERGE");
    assert!(text.starts_with("SET NOCOUNT ON; SET XACT_ABORT ON;\nINSERT INTO wide VALUES (@P1, @P2,"), "{text}");
    assert_eq!(server.checkpoints("bookings"), [(1, 0, 3)]);
}

#[tokio::test]
async fn a_server_error_names_the_statement_its_parameters_the_error_number_and_the_item() {
    let server = TdsServer::start().await;
    let sink = MssqlSink::open(&config(&server, "dbo"), "bookings").await.expect("open");
    let mut writer = sink.open_writer().await.expect("writer");
    server.fail(ScriptedError {
        when_text_contains: "INSERT INTO guests".into(),
        number: 2627,
        class: 14,
        message: "Violation of PRIMARY KEY constraint 'PK_guests'. Cannot insert duplicate key in object 'dbo.guests'.".into(),
        times: None,
    });
    let batch = Batch::new(
        vec![
            apply(20, 0, vec![statement("UPDATE seen SET position = $1", vec![SqlValue::Int(20)])]),
            apply(21, 1, vec![
                statement("UPDATE seen SET position = $1", vec![SqlValue::Int(21)]),
                statement("INSERT INTO guests (id, name)\nVALUES ($1, $2)", vec![SqlValue::Int(7), SqlValue::Text("Ada".into())]),
            ]),
        ],
        4,
    );
    server.clear_requests();
    let error = writer.apply(Arc::new(batch)).await.expect_err("the insert fails");
    assert_eq!(error.failed_at, Some(1), "{error}");
    assert!(!error.transient);
    for part in [
        "SQL Server target mssql://127.0.0.1:",
        "operation 2 of event 00000000-0000-0000-0000-000000000021 (RoomBooked in stream `booking-1`) at position 21 in partition 1 failed",
        "SQL Server error 2627 (state 1, class 14, line 6): Violation of PRIMARY KEY constraint 'PK_guests'",
        "statement `INSERT INTO guests (id, name)\nVALUES ($1, $2)` with [$1: int64 7, $2: string \"Ada\"]",
    ] {
        assert!(error.message.contains(part), "`{part}` not in: {}", error.message);
    }
    let calls = calls(&server);
    assert_eq!(calls.len(), 2, "{calls:#?}");
    assert!(matches!(&calls[1], Request::Batch { text, .. } if text == "IF @@TRANCOUNT > 0 ROLLBACK TRAN;"));
    assert!(server.checkpoints("bookings").is_empty(), "nothing committed");
}

#[tokio::test]
async fn a_deadlock_is_transient_and_the_same_batch_succeeds_when_retried() {
    let server = TdsServer::start().await;
    let sink = MssqlSink::open(&config(&server, "dbo"), "bookings").await.expect("open");
    let mut writer = sink.open_writer().await.expect("writer");
    server.fail(ScriptedError {
        when_text_contains: "UPDATE seen".into(),
        number: 1205,
        class: 13,
        message: "Transaction (Process ID 57) was deadlocked on lock resources with another process and has been chosen as the deadlock victim. Rerun the transaction.".into(),
        times: Some(1),
    });
    let batch = Arc::new(Batch::new(vec![apply(30, 3, vec![statement("UPDATE seen SET position = $1", vec![SqlValue::Int(30)])])], 4));
    let error = writer.apply(batch.clone()).await.expect_err("deadlock victim");
    assert!(error.transient, "{error}");
    assert!(error.message.contains("SQL Server error 1205"), "{error}");
    writer.apply(batch).await.expect("the retry commits");
    assert_eq!(server.checkpoints("bookings"), [(4, 3, 30)]);
}

#[tokio::test]
async fn projection_versions_are_recorded_and_a_reset_deletes_the_checkpoints_in_one_call() {
    let server = TdsServer::start().await;
    let sink = MssqlSink::open(&config(&server, "dbo"), "bookings").await.expect("open");
    server.set_checkpoint("bookings", 4, 0, 99);
    assert_eq!(sink.projection_version().await.unwrap(), None);
    server.clear_requests();
    sink.record_projection_version("bookings", "2", Some(vec![SqlOp::Raw("TRUNCATE TABLE seen".into())])).await.expect("recorded");
    let calls = calls(&server);
    assert_eq!(calls.len(), 1, "{calls:#?}");
    assert!(calls[0].text().contains("TRUNCATE TABLE seen\n;\nDELETE FROM [dbo].[checkpoints] WHERE connector = @P1\n;\nMERGE [dbo].[projections]"));
    assert_eq!(sink.projection_version().await.unwrap().as_deref(), Some("2"));
    assert!(server.checkpoints("bookings").is_empty());
}

/// Every event: a row in `seen`; check-ins also a row in `guests`, which the double (or a real
/// server with the unique key) refuses.
fn seen(request: &ProjectionRequest) -> ProjectionResponse {
    let value = |kind| PbValue { kind: Some(kind) };
    let mut statements = vec![Statement {
        sql: "INSERT INTO seen (position, kind) VALUES ($1, $2)".into(),
        params: vec![value(Kind::Int64Value(request.global_position as i64)), value(Kind::StringValue(request.event_type.clone()))],
    }];
    if request.event_type == "GuestCheckedIn" {
        statements.push(Statement { sql: "INSERT INTO guests (id) VALUES ($1)".into(), params: vec![value(Kind::Int64Value(1))] });
    }
    ProjectionResponse {
        event_id: request.event_id.clone(),
        operations: statements
            .into_iter()
            .map(|s| prost_types::Any { type_url: "type.googleapis.com/projection.Statement".into(), value: s.encode_to_vec() })
            .collect(),
        ..Default::default()
    }
}

fn sink_yaml(connection_string: &str) -> String {
    format!("      mssql:\n        connection_string: \"{connection_string}\"\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_the_pipeline_deadlocks_are_retried_rejected_events_parked_and_a_restart_resumes() {
    let server = TdsServer::start().await;
    server.fail(ScriptedError {
        when_text_contains: "INSERT INTO seen".into(),
        number: 1205,
        class: 13,
        message: "chosen as the deadlock victim".into(),
        times: Some(2),
    });
    server.fail(ScriptedError {
        when_text_contains: "INSERT INTO guests".into(),
        number: 2627,
        class: 14,
        message: "Violation of PRIMARY KEY constraint 'PK_guests'.".into(),
        times: None,
    });
    let ws = Workspace::new();
    let log = ws.log_with_events(400, 40, 81);
    let head = log.head().unwrap();
    let sidecar = sidecars::scripted(Script::Map(seen)).await;
    let setup = Setup { poison: "park", ..Setup::default() };
    let yaml = connector_yaml(&ws.log_path(), &sidecar.address, &sink_yaml(&server.connection_string("reads")), &setup);
    let mut running = Running::start(parse_connector(&yaml)).await;
    running.wait_for(head, WAIT).await;
    running.stop().await.expect("clean stop");

    let checkpoints = server.checkpoints("bookings");
    assert_eq!(checkpoints.len(), 4, "{checkpoints:?}");
    assert!(checkpoints.iter().all(|(count, _, position)| *count == 4 && *position == head as i64), "{checkpoints:?}");
    let parked = server.parked();
    let check_ins = count_events(&ws, "GuestCheckedIn");
    assert!(check_ins > 0);
    assert_eq!(parked.len(), check_ins, "one parked row per check-in");
    for (connector, _, _, _, _, event_type, error) in &parked {
        assert_eq!((connector.as_str(), event_type.as_str()), ("bookings", "GuestCheckedIn"));
        assert!(error.contains("SQL Server error 2627"), "{error}");
        assert!(error.contains("INSERT INTO guests (id) VALUES ($1)"), "{error}");
    }

    // A restart loads the checkpoints and sends nothing for events already applied.
    server.clear_requests();
    let mut again = Running::start(parse_connector(&yaml)).await;
    again.wait_for(head, WAIT).await;
    again.stop().await.expect("clean stop");
    let applied: Vec<Request> = calls(&server).into_iter().filter(|r| r.text().contains("INSERT INTO seen")).collect();
    assert!(applied.is_empty(), "re-applied after restart: {applied:#?}");
    assert!(calls(&server).iter().any(|r| r.text().starts_with("SELECT partition_count")), "checkpoints loaded");
}

fn count_events(ws: &Workspace, event_type: &str) -> usize {
    let conn = rusqlite::Connection::open(ws.log_path()).unwrap();
    conn.query_row("SELECT count(*) FROM events WHERE event_type = ?1", [event_type], |r| r.get::<_, i64>(0)).unwrap() as usize
}

#[tokio::test]
async fn an_invalid_connection_string_and_an_unreachable_server_are_one_clear_error() {
    let bad = MssqlSinkConfig { connection_string: "Server=tcp:h,1433;TrustServerCertificate=perhaps".into(), ..config(&TdsServer::start().await, "dbo") };
    let message = MssqlSink::open(&bad, "bookings").await.err().expect("refused").to_string();
    assert!(message.starts_with("sink.mssql.connection_string: not an ADO.NET connection string"), "{message}");
    let port = support::processes::free_port();
    let unreachable = MssqlSinkConfig {
        connection_string: format!("Server=tcp:127.0.0.1,{port};Database=reads;User Id=sa;Password=hunter2;Encrypt=DANGER_PLAINTEXT"),
        ..bad
    };
    let message = MssqlSink::open(&unreachable, "bookings").await.err().expect("unreachable").to_string();
    assert!(message.starts_with(&format!("cannot connect to the SQL Server target mssql://127.0.0.1:{port}/reads: ")), "{message}");
    assert!(!message.contains("hunter2"), "{message}");
}

/// The opt-in suite against a real SQL Server (README, "SQL Server target"): set `MSSQL_URL`
/// to an ADO.NET connection string of a login that may create databases.
mod real_server {
    use super::*;
    use tiberius::{Client, Config};
    use tokio_util::compat::TokioAsyncWriteCompatExt;

    type Real = Client<tokio_util::compat::Compat<tokio::net::TcpStream>>;

    fn url() -> Option<String> {
        match std::env::var("MSSQL_URL") {
            Ok(url) if !url.trim().is_empty() => Some(url),
            _ => {
                println!("MSSQL_URL is not set: skipping the real SQL Server case (README, \"SQL Server target\")");
                None
            }
        }
    }

    async fn connect(url: &str) -> Real {
        let config = Config::from_ado_string(url).expect("MSSQL_URL");
        let tcp = tokio::net::TcpStream::connect(config.get_addr()).await.expect("SQL Server reachable");
        tcp.set_nodelay(true).unwrap();
        Client::connect(config, tcp.compat_write()).await.expect("login")
    }

    /// A fresh database for one test; the connection string pointing at it.
    async fn fresh(url: &str, name: &str) -> String {
        let mut admin = connect(url).await;
        let db = format!("gateway_{name}");
        let sql = format!(
            "IF DB_ID(N'{db}') IS NOT NULL BEGIN ALTER DATABASE [{db}] SET SINGLE_USER WITH ROLLBACK IMMEDIATE; DROP DATABASE [{db}]; END; CREATE DATABASE [{db}];"
        );
        admin.simple_query(sql).await.unwrap().into_results().await.unwrap();
        let without_db: Vec<&str> = url
            .split(';')
            .filter(|kv| !kv.trim().to_ascii_lowercase().starts_with("database=") && !kv.trim().to_ascii_lowercase().starts_with("initial catalog="))
            .collect();
        format!("{};Database={db}", without_db.join(";").trim_end_matches(';'))
    }

    async fn scalar(url: &str, sql: &str) -> String {
        let mut client = connect(url).await;
        let row = client.simple_query(sql).await.unwrap().into_row().await.unwrap().expect("a row");
        row.get::<&str, _>(0).map(str::to_string).unwrap_or_default()
    }

    const TABLES: &str = "CREATE TABLE seen (position bigint PRIMARY KEY, kind nvarchar(100) NOT NULL); \
        CREATE TABLE guests (id bigint PRIMARY KEY)";

    fn yaml_for(ws: &Workspace, address: &str, url: &str, setup: &Setup) -> String {
        let sink = format!("      mssql:\n        connection_string: \"{url}\"\n        init_sql: \"IF OBJECT_ID(N'seen') IS NULL BEGIN {TABLES} END\"\n");
        connector_yaml(&ws.log_path(), address, &sink, setup)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn projects_exactly_once_across_restarts_and_parks_rejected_statements() {
        let Some(url) = url() else { return };
        let url = fresh(&url, "restart").await;
        let ws = Workspace::new();
        let mut log = ws.log_with_events(2_000, 200, 82);
        let sidecar = sidecars::scripted(Script::Map(seen)).await;
        let setup = Setup { poison: "park", ..Setup::default() };
        let yaml = yaml_for(&ws, &sidecar.address, &url, &setup);
        let mut first = Running::start(parse_connector(&yaml)).await;
        first.wait_for(log.head().unwrap(), WAIT).await;
        first.stop().await.expect("clean stop");
        append_generated(&mut log, 1_000, 100, 83);
        let mut second = Running::start(parse_connector(&yaml)).await;
        second.wait_for(log.head().unwrap(), WAIT).await;
        second.stop().await.expect("clean stop");

        // The first check-in commits its guest row; every later one violates the key and is
        // parked, its `seen` row rolled back with it; every other event has its `seen` row.
        let check_ins = count_events(&ws, "GuestCheckedIn");
        let parked: usize = scalar(&url, "SELECT CAST(count(*) AS nvarchar(20)) FROM dbo.parked_events").await.parse().unwrap();
        assert_eq!(parked, check_ins - 1);
        let seen_rows: usize = scalar(&url, "SELECT CAST(count(*) AS nvarchar(20)) FROM seen").await.parse().unwrap();
        assert_eq!(seen_rows, log.head().unwrap() as usize - parked, "each applied event exactly once");
        let error = scalar(&url, "SELECT TOP 1 error FROM dbo.parked_events").await;
        assert!(error.contains("SQL Server error 2627"), "{error}");
        let head = log.head().unwrap().to_string();
        let low = scalar(&url, "SELECT CAST(min(position) AS nvarchar(20)) FROM dbo.checkpoints WHERE connector = 'bookings'").await;
        assert_eq!(low, head);
    }

    fn typed(request: &ProjectionRequest) -> ProjectionResponse {
        let value = |kind| PbValue { kind: Some(kind) };
        let statement = Statement {
            sql: "INSERT INTO typed (small, id, doc, at, amount, flag, raw, ratio, label, position) \
                  VALUES ($1, $2, $3, $4, $5, $6, CAST($7 AS varbinary(max)), $8, $9, $10)"
                .into(),
            params: vec![
                value(Kind::Int64Value(7)),
                value(Kind::UuidValue(request.event_id.clone())),
                value(Kind::JsonValue(r#"{"type": "x"}"#.into())),
                value(Kind::StringValue("2026-11-23T10:15:00".into())),
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
            operation: Some(prost_types::Any { type_url: "type.googleapis.com/projection.Statement".into(), value: statement.encode_to_vec() }),
            ..Default::default()
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn typed_parameters_are_converted_to_the_column_types() {
        let Some(url) = url() else { return };
        let url = fresh(&url, "types").await;
        let ws = Workspace::new();
        let log = ws.log_with_events(50, 10, 84);
        let sidecar = sidecars::scripted(Script::Map(typed)).await;
        let table = "CREATE TABLE typed (small int, id uniqueidentifier, doc nvarchar(max), at datetime2, amount decimal(38,3), \
            flag bit, raw varbinary(max), ratio float, label nvarchar(50), position bigint PRIMARY KEY)";
        let sink = format!("      mssql:\n        connection_string: \"{url}\"\n        init_sql: \"{table}\"\n");
        let yaml = connector_yaml(&ws.log_path(), &sidecar.address, &sink, &Setup::default());
        let mut running = Running::start(parse_connector(&yaml)).await;
        running.wait_for(log.head().unwrap(), WAIT).await;
        running.stop().await.expect("clean stop");
        let summary = scalar(
            &url,
            "SELECT CONCAT(count(*), '|', min(small), '|', CAST(min(amount) AS nvarchar(50)), '|', min(JSON_VALUE(doc, '$.type')), '|', \
             CONVERT(nvarchar(20), min(raw), 2), '|', min(ratio), '|', count(label), '|', CONVERT(nvarchar(16), min(at), 120), '|', \
             count(DISTINCT id)) FROM typed",
        )
        .await;
        assert_eq!(summary, "50|7|12345678901234567890.125|x|0001FF|0.25|0|2026-11-23 10:15|50");
    }
}
