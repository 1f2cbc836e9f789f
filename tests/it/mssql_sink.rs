//! The SQL Server target. No SQL Server can run on the development machine, so most of this
//! suite runs against the in-repo TDS test double (`tests/it/support/tds/`), a recorder that
//! speaks the wire protocol to tiberius: it asserts the exact calls the gateway sends (the
//! `sp_executesql` text, each parameter's TDS type, transaction boundaries, the checkpoint
//! `MERGE`, round trips per batch, table creation, errors and retries, checkpoint loading).
//! What SQL Server itself would do with that T-SQL is tested only by the opt-in suite at the
//! end (`real_server`: the cases of `tests/it/postgres_sink.rs`), which runs when `MSSQL_URL`
//! names a real server (docs/targets/mssql.md).

use std::{sync::Arc, time::Duration};

use bookings_reducer::proto::{ProjectionRequest, ProjectionResponse, SqlValue as PbValue, Statement, sql_value::Kind};
use bytes::Bytes;
use projector_gateway::{
    config::MssqlSinkConfig,
    event::{ContentType, Event},
    sinks::{Batch, BatchItem, EventRef, Sink, SinkWriter, mssql::MssqlSink, sql::{SqlOp, SqlValue}},
};
use prost::Message;
use crate::support::{
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
         WHEN MATCHED THEN UPDATE SET position = CASE WHEN s.position > t.position THEN s.position ELSE t.position END, \
         updated_at = SYSUTCDATETIME() \
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

/// The checkpoint fence (`sinks::Stored`): each chunk of checkpoint rows is checked under
/// `UPDLOCK, HOLDLOCK` before its `MERGE`, in the batch's transaction; a row that is not where
/// the batch was planned from throws, the batch rolls back whole and the writer is told to
/// re-plan. (The double evaluates the check against its committed rows; the locking itself
/// needs a real server: `MSSQL_URL`.)
#[tokio::test]
async fn a_batch_planned_from_a_checkpoint_that_moved_is_refused_whole() {
    let server = TdsServer::start().await;
    let sink = MssqlSink::open(&config(&server, "dbo"), "bookings").await.expect("open");
    let mut writer = sink.open_writer().await.expect("writer");
    server.set_checkpoint("bookings", 4, 1, 40);
    let planned = |stored: &[Option<u64>]| {
        Arc::new(Batch::fenced(vec![apply(50, 1, vec![statement("UPDATE seen SET position = $1", vec![SqlValue::Int(50)])])], 4, stored))
    };
    for (stored, what) in [([None, Some(30)], "planned from position 30"), ([None, None], "planned from no row")] {
        server.clear_requests();
        let error = writer.apply(planned(&stored)).await.expect_err(what);
        assert!(error.checkpoint_moved && !error.transient && error.failed_at.is_none(), "{what}: {error:?}");
        assert!(error.message.contains("a checkpoint moved since this gateway read it"), "{what}: {error}");
        let calls = calls(&server);
        assert!(calls[0].text().contains("THROW 51000"), "{what}: the check runs in the batch's call: {calls:#?}");
        assert!(matches!(&calls[1], Request::Batch { text, .. } if text == "IF @@TRANCOUNT > 0 ROLLBACK TRAN;"), "{calls:#?}");
        assert_eq!(server.checkpoints("bookings"), [(4, 1, 40)], "{what}: nothing committed");
    }
    writer.apply(planned(&[None, Some(40)])).await.expect("planned from the stored position");
    assert_eq!(server.checkpoints("bookings"), [(4, 1, 50)]);
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
    ProjectionResponse { event_id: request.event_id.clone(), operations: statements.iter().map(packed).collect(), ..Default::default() }
}

/// A `projection.Statement` as the sidecar sends it.
fn packed(statement: &Statement) -> prost_types::Any {
    prost_types::Any { type_url: "type.googleapis.com/projection.Statement".into(), value: statement.encode_to_vec() }
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
    let port = crate::support::processes::free_port();
    let unreachable = MssqlSinkConfig {
        connection_string: format!("Server=tcp:127.0.0.1,{port};Database=reads;User Id=sa;Password=hunter2;Encrypt=DANGER_PLAINTEXT"),
        ..bad
    };
    let message = MssqlSink::open(&unreachable, "bookings").await.err().expect("unreachable").to_string();
    assert!(message.starts_with(&format!("cannot connect to the SQL Server target mssql://127.0.0.1:{port}/reads: ")), "{message}");
    assert!(!message.contains("hunter2"), "{message}");
}

/// The opt-in suite against a real SQL Server (docs/targets/mssql.md): the cases of
/// `tests/it/postgres_sink.rs`, with the bookings read model written by a T-SQL reducer. Set
/// `MSSQL_URL` to an ADO.NET connection string of a login that may create databases and kill
/// sessions (`sa` in the official container); each test makes a database of its own, named
/// `gateway_<case>_<uuid>`, and drops it when it passes (a failed one is left to look at).
mod real_server {
    use super::*;
    use bookings_reducer::proto::DescribeResponse;
    use projector_gateway::pipeline::{ConnectorControl, run_connector};
    use crate::support::bookings_model::{Booking, GuestStats, ReadModel};
    use tiberius::{Client, Config, Row};
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

    /// Runs `sql` as one batch on a new connection; the rows of its first result.
    async fn run(url: &str, sql: &str) -> Vec<Row> {
        let mut client = connect(url).await;
        let results = client.simple_query(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
        results.into_first_result().await.unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// The ADO.NET string `url` without the keys `keys` (any case), with `pair` added.
    fn with_key(url: &str, keys: &[&str], pair: &str) -> String {
        let kept: Vec<&str> = url
            .split(';')
            .filter(|kv| {
                let key = kv.split('=').next().unwrap_or_default().trim().to_ascii_lowercase();
                !key.is_empty() && !keys.contains(&key.as_str())
            })
            .collect();
        format!("{};{pair}", kept.join(";"))
    }

    /// A database of one test on the server of `MSSQL_URL`.
    struct Db {
        admin: String,
        name: String,
        url: String,
    }

    impl Db {
        /// A new database, or `None` (with the printed note) when `MSSQL_URL` is not set.
        async fn fresh(case: &str) -> Option<Self> {
            let admin = url()?;
            let name = format!("gateway_{case}_{}", uuid::Uuid::new_v4().simple());
            run(&admin, &format!("CREATE DATABASE [{name}]")).await;
            let url = with_key(&admin, &["database", "initial catalog"], &format!("Database={name}"));
            Some(Self { admin, name, url })
        }

        /// Drops the database, ending the sessions still in it.
        async fn drop_database(self) {
            run(&self.admin, &format!("ALTER DATABASE [{0}] SET SINGLE_USER WITH ROLLBACK IMMEDIATE; DROP DATABASE [{0}];", self.name))
                .await;
        }

        async fn rows(&self, sql: &str) -> Vec<Row> {
            run(&self.url, sql).await
        }

        /// The first column of the first row, as text.
        async fn scalar(&self, sql: &str) -> String {
            let rows = self.rows(sql).await;
            let row = rows.first().unwrap_or_else(|| panic!("no row: {sql}"));
            row.get::<&str, _>(0).unwrap_or_default().to_string()
        }

        /// Kills every other session in this database, as a DBA's `KILL` does; how many.
        async fn kill_sessions(&self) -> usize {
            let mut admin = connect(&self.admin).await;
            let sessions = "SELECT session_id FROM sys.dm_exec_sessions WHERE database_id = DB_ID(@P1) AND session_id <> @@SPID";
            let ids: Vec<i16> = admin
                .query(sessions, &[&self.name.as_str()])
                .await
                .unwrap()
                .into_first_result()
                .await
                .unwrap()
                .iter()
                .filter_map(|r| r.get::<i16, _>(0))
                .collect();
            let mut killed = 0;
            for id in ids {
                // A session that ended since the query is no error of the test (error 6106).
                if let Ok(done) = admin.simple_query(format!("KILL {id}")).await
                    && done.into_results().await.is_ok()
                {
                    killed += 1;
                }
            }
            killed
        }

        /// Checkpoint rows of the connector `bookings`: (partition count, partition, position).
        async fn checkpoints(&self) -> Vec<(i32, i32, i64)> {
            let sql = "SELECT partition_count, [partition], position FROM dbo.checkpoints WHERE connector = N'bookings' ORDER BY 1, 2";
            self.rows(sql).await.iter().map(|r| (r.get(0).unwrap(), r.get(1).unwrap(), r.get(2).unwrap())).collect()
        }

        /// What the `bookings` and `guest_stats` tables hold.
        async fn read_model(&self) -> ReadModel {
            let text = |r: &Row, i: usize| r.get::<&str, _>(i).unwrap_or_default().to_string();
            let int = |r: &Row, i: usize| r.get::<i64, _>(i).unwrap_or_default();
            let mut model = ReadModel::default();
            let bookings = "SELECT booking_id, guest_id, room_id, check_in, check_out, price_cents, paid_cents, status, last_position FROM bookings";
            for r in self.rows(bookings).await {
                let booking = Booking {
                    guest_id: text(&r, 1),
                    room_id: text(&r, 2),
                    check_in: text(&r, 3),
                    check_out: text(&r, 4),
                    price_cents: int(&r, 5),
                    paid_cents: int(&r, 6),
                    status: text(&r, 7),
                    last_position: int(&r, 8),
                };
                model.bookings.insert(text(&r, 0), booking);
            }
            for r in self.rows("SELECT guest_id, bookings, cancellations, payments, paid_cents FROM guest_stats").await {
                let stats = GuestStats { bookings: int(&r, 1), cancellations: int(&r, 2), payments: int(&r, 3), paid_cents: int(&r, 4) };
                model.guests.insert(text(&r, 0), stats);
            }
            model
        }

        /// The read model equals the reference computed from the events of `ws`'s log that
        /// `keep` keeps.
        async fn assert_read_model(&self, ws: &Workspace, keep: impl Fn(&str, &str) -> bool) {
            self.read_model().await.assert_same(&ReadModel::from_log(&ws.log_path(), keep));
        }
    }

    fn everything(_: &str, _: &str) -> bool {
        true
    }

    /// Runs the connector of `yaml` until every partition passed `head`, then stops it.
    async fn project_to(yaml: &str, head: u64) {
        let mut running = Running::start(parse_connector(yaml)).await;
        running.wait_for(head, WAIT).await;
        running.stop().await.expect("clean stop");
    }

    /// The bookings read model's tables (`sidecar-examples/bookings-schema.sql`) in T-SQL,
    /// created by `init_sql` at the first start.
    const BOOKINGS_TABLES: &str = "IF OBJECT_ID(N'bookings', N'U') IS NULL BEGIN \
        CREATE TABLE bookings (booking_id nvarchar(100) PRIMARY KEY, guest_id nvarchar(100) NOT NULL, room_id nvarchar(100) NOT NULL, \
        check_in nvarchar(40) NOT NULL, check_out nvarchar(40) NOT NULL, price_cents bigint NOT NULL, paid_cents bigint NOT NULL, \
        status nvarchar(20) NOT NULL, last_position bigint NOT NULL); \
        CREATE TABLE guest_stats (guest_id nvarchar(100) PRIMARY KEY, bookings bigint NOT NULL DEFAULT 0, \
        cancellations bigint NOT NULL DEFAULT 0, payments bigint NOT NULL DEFAULT 0, paid_cents bigint NOT NULL DEFAULT 0) END";

    fn sink_with_init(url: &str, init_sql: &str) -> String {
        format!("{}        init_sql: \"{init_sql}\"\n", sink_yaml(url))
    }

    fn bookings_yaml(ws: &Workspace, sidecar: &str, db: &Db, setup: &Setup) -> String {
        connector_yaml(&ws.log_path(), sidecar, &sink_with_init(&db.url, BOOKINGS_TABLES), setup)
    }

    /// The example bookings reducer in T-SQL: the statements and typed parameters of
    /// `bookings_reducer::reduce`, with its PostgreSQL `ON CONFLICT` upserts written as
    /// `UPDATE ... IF @@ROWCOUNT = 0 INSERT` (a booking) and `MERGE` (a guest's counters); its
    /// plain `UPDATE`s are T-SQL as they are.
    fn tsql_bookings(request: &ProjectionRequest) -> ProjectionResponse {
        let mut response = bookings_reducer::reduce(request);
        let operations = response.operation.iter_mut().chain(response.operations.iter_mut());
        for (index, any) in operations.enumerate().filter(|(_, any)| any.type_url.ends_with("projection.Statement")) {
            let mut statement = Statement::decode(any.value.as_slice()).expect("a Statement");
            if let Some(sql) = tsql_upsert(&request.event_type, index) {
                statement.sql = sql;
            }
            assert!(!statement.sql.contains("ON CONFLICT"), "no T-SQL for {} statement {index}: {}", request.event_type, statement.sql);
            *any = packed(&statement);
        }
        response
    }

    /// The T-SQL of the example's upsert `index` for `event_type`, with its parameters.
    fn tsql_upsert(event_type: &str, index: usize) -> Option<String> {
        Some(match (event_type, index) {
            // @P1 booking, @P2 guest, @P3 room, @P4 check-in, @P5 check-out, @P6 price, @P7 position
            ("RoomBooked", 0) => "UPDATE bookings SET guest_id = @P2, room_id = @P3, check_in = @P4, check_out = @P5, price_cents = @P6, \
                status = 'booked', last_position = @P7 WHERE booking_id = @P1;\n\
                IF @@ROWCOUNT = 0 INSERT INTO bookings (booking_id, guest_id, room_id, check_in, check_out, price_cents, paid_cents, status, last_position) \
                VALUES (@P1, @P2, @P3, @P4, @P5, @P6, 0, 'booked', @P7)"
                .into(),
            // @P1 guest
            ("RoomBooked", 1) => count_guest(&[("bookings", "1")]),
            // @P1 guest, @P2 amount
            ("PaymentRecorded", 1) => count_guest(&[("payments", "1"), ("paid_cents", "@P2")]),
            // @P1 guest
            ("BookingCancelled", 1) => count_guest(&[("cancellations", "1")]),
            _ => return None,
        })
    }

    /// `MERGE` of the `guest_stats` row of guest `@P1`: each counter increased by its amount.
    fn count_guest(counters: &[(&str, &str)]) -> String {
        let set: Vec<String> = counters.iter().map(|(c, by)| format!("{c} = t.{c} + {by}")).collect();
        let columns: Vec<&str> = counters.iter().map(|(c, _)| *c).collect();
        let values: Vec<&str> = counters.iter().map(|(_, by)| *by).collect();
        format!(
            "MERGE guest_stats WITH (HOLDLOCK) AS t USING (VALUES (@P1)) AS s (guest_id) ON t.guest_id = s.guest_id \
             WHEN MATCHED THEN UPDATE SET {} WHEN NOT MATCHED THEN INSERT (guest_id, {}) VALUES (s.guest_id, {});",
            set.join(", "),
            columns.join(", "),
            values.join(", ")
        )
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn projects_exactly_once_across_restarts() {
        let Some(db) = Db::fresh("restart").await else { return };
        let ws = Workspace::new();
        let mut log = ws.log_with_events(8_000, 800, 82);
        let sidecar = sidecars::scripted(Script::Map(tsql_bookings)).await;
        let yaml = bookings_yaml(&ws, &sidecar.address, &db, &Setup::default());

        project_to(&yaml, log.head().unwrap()).await;
        db.assert_read_model(&ws, everything).await;

        append_generated(&mut log, 2_000, 300, 83);
        let mut second = Running::start(parse_connector(&yaml)).await;
        second.wait_for(log.head().unwrap(), WAIT).await;
        // Live appends too.
        append_generated(&mut log, 500, 50, 84);
        second.wait_for(log.head().unwrap(), WAIT).await;
        second.stop().await.expect("clean stop");

        db.assert_read_model(&ws, everything).await;
        let head = log.head().unwrap() as i64;
        let rows = db.checkpoints().await;
        assert_eq!(rows.len(), 4, "{rows:?}");
        assert!(rows.iter().all(|r| r.0 == 4 && r.2 == head), "{rows:?}");
        db.drop_database().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn connections_killed_by_the_server_are_reopened_without_loss_or_double_effect() {
        let Some(db) = Db::fresh("kill").await else { return };
        let ws = Workspace::new();
        let mut log = ws.log_with_events(2_000, 200, 85);
        let sidecar = sidecars::scripted(Script::Map(tsql_bookings)).await;
        let yaml = bookings_yaml(&ws, &sidecar.address, &db, &Setup { max_ops: 50, ..Setup::default() });
        let mut running = Running::start(parse_connector(&yaml)).await;
        running.wait_for(log.head().unwrap(), WAIT).await;

        for round in 0..3u64 {
            let killed = db.kill_sessions().await;
            assert!(killed > 0, "round {round}: no gateway session to kill");
            append_generated(&mut log, 3_000, 300, 86 + round);
            running.wait_for(log.head().unwrap(), WAIT).await;
        }
        running.stop().await.expect("clean stop");
        db.assert_read_model(&ws, everything).await;
        db.drop_database().await;
    }

    const TYPED_TABLE: &str = "CREATE TABLE typed (small int, id uniqueidentifier, doc nvarchar(max), at datetime2, amount decimal(38,3), \
        flag bit, raw varbinary(max), ratio float, label nvarchar(50), position bigint PRIMARY KEY)";

    /// Every event becomes one insert into `typed` with each kind of parameter, `small` first.
    fn typed_insert(request: &ProjectionRequest, small: i64) -> ProjectionResponse {
        let value = |kind| PbValue { kind: Some(kind) };
        let statement = Statement {
            sql: "INSERT INTO typed (small, id, doc, at, amount, flag, raw, ratio, label, position) \
                  VALUES ($1, $2, $3, $4, $5, $6, CAST($7 AS varbinary(max)), $8, $9, $10)"
                .into(),
            params: vec![
                value(Kind::Int64Value(small)),
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
        ProjectionResponse { event_id: request.event_id.clone(), operation: Some(packed(&statement)), ..Default::default() }
    }

    fn typed(request: &ProjectionRequest) -> ProjectionResponse {
        typed_insert(request, 7)
    }

    /// As [`typed`], but payments put a value into `small` that an `int` cannot hold.
    fn too_big_for_int(request: &ProjectionRequest) -> ProjectionResponse {
        typed_insert(request, if request.event_type == "PaymentRecorded" { 5_000_000_000 } else { 7 })
    }

    fn typed_yaml(ws: &Workspace, sidecar: &str, db: &Db) -> String {
        connector_yaml(&ws.log_path(), sidecar, &sink_with_init(&db.url, TYPED_TABLE), &Setup::default())
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn typed_parameters_are_converted_to_the_column_types() {
        let Some(db) = Db::fresh("types").await else { return };
        let ws = Workspace::new();
        let log = ws.log_with_events(50, 10, 87);
        let sidecar = sidecars::scripted(Script::Map(typed)).await;
        project_to(&typed_yaml(&ws, &sidecar.address, &db), log.head().unwrap()).await;
        let summary = db
            .scalar(
                "SELECT CONCAT(count(*), '|', min(small), '|', CAST(min(amount) AS nvarchar(50)), '|', min(JSON_VALUE(doc, '$.type')), '|', \
                 CONVERT(nvarchar(20), min(raw), 2), '|', min(ratio), '|', count(label), '|', CONVERT(nvarchar(16), min(at), 120), '|', \
                 count(DISTINCT id)) FROM typed",
            )
            .await;
        assert_eq!(summary, "50|7|12345678901234567890.125|x|0001FF|0.25|0|2026-11-23 10:15|50");
        db.drop_database().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_parameter_that_does_not_fit_its_column_stops_before_that_event() {
        let Some(db) = Db::fresh("bind").await else { return };
        let ws = Workspace::new();
        let log = ws.log_with_events(300, 30, 88);
        let sidecar = sidecars::scripted(Script::Map(too_big_for_int)).await;
        let running = Running::start(parse_connector(&typed_yaml(&ws, &sidecar.address, &db))).await;
        let message = running.ended(WAIT).await.expect_err("the connector must stop").to_string();
        for part in [
            "connector `bookings`: event ",
            "(PaymentRecorded in stream `",
            "SQL Server error ",
            "Arithmetic overflow error converting expression to data type int",
            "with [$1: int64 5000000000, ",
            "poison policy `stop`",
        ] {
            assert!(message.contains(part), "`{part}` not in: {message}");
        }
        // The checkpoint of the failed event's partition stays before it.
        let captures = regex::Regex::new(r"at position (\d+) in partition (\d+)").unwrap().captures(&message).expect("position named");
        let (position, partition): (i64, i32) = (captures[1].parse().unwrap(), captures[2].parse().unwrap());
        for row in db.checkpoints().await.iter().filter(|r| r.1 == partition) {
            assert!(row.2 < position, "checkpoint {row:?} passed the failed event at {position}");
        }
        let applied = db.scalar(&format!("SELECT CAST(count(*) AS nvarchar(20)) FROM typed WHERE position = {position}")).await;
        assert_eq!(applied, "0");
        assert!(log.head().unwrap() > position as u64);
        db.drop_database().await;
    }

    /// [`tsql_bookings`], but check-ins update a table that does not exist (a name resolved
    /// when the statement runs, which ends the call with the transaction still open), and
    /// check-outs, after their own update, insert the same `guest_stats` row twice (a key
    /// violation, which `XACT_ABORT` rolls back with everything before it).
    fn tsql_rejecting_check_ins_and_outs(request: &ProjectionRequest) -> ProjectionResponse {
        let mut response = tsql_bookings(request);
        match request.event_type.as_str() {
            "GuestCheckedIn" => {
                response.operation = Some(packed(&Statement { sql: "UPDATE no_such_table SET x = 1".into(), params: vec![] }));
                response.operations.clear();
            }
            "GuestCheckedOut" => {
                let key = PbValue { kind: Some(Kind::StringValue(format!("check-out {}", request.event_id))) };
                let insert = Statement { sql: "INSERT INTO guest_stats (guest_id) VALUES (@P1)".into(), params: vec![key] };
                response.operations.extend([packed(&insert), packed(&insert)]);
            }
            _ => {}
        }
        response
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn park_records_statements_the_database_rejects_and_applies_the_rest() {
        let Some(db) = Db::fresh("park").await else { return };
        let ws = Workspace::new();
        let log = ws.log_with_events(1_000, 100, 89);
        let sidecar = sidecars::scripted(Script::Map(tsql_rejecting_check_ins_and_outs)).await;
        project_to(&bookings_yaml(&ws, &sidecar.address, &db, &Setup { poison: "park", ..Setup::default() }), log.head().unwrap()).await;

        let (check_ins, check_outs) = (count_events(&ws, "GuestCheckedIn"), count_events(&ws, "GuestCheckedOut"));
        assert!(check_ins > 0 && check_outs > 0, "the log has check-ins ({check_ins}) and check-outs ({check_outs})");
        let parked = db.rows("SELECT event_type, error FROM dbo.parked_events").await;
        assert_eq!(parked.len(), check_ins + check_outs, "one parked row per rejected event");
        for row in &parked {
            let (event_type, error) = (row.get::<&str, _>(0).unwrap(), row.get::<&str, _>(1).unwrap());
            let expected = match event_type {
                "GuestCheckedIn" => "Invalid object name 'no_such_table'",
                "GuestCheckedOut" => "Violation of PRIMARY KEY constraint",
                other => panic!("{other} parked: {error}"),
            };
            assert!(error.contains(expected), "{event_type}: {error}");
        }
        db.assert_read_model(&ws, |_, t| t != "GuestCheckedIn" && t != "GuestCheckedOut").await;
        db.drop_database().await;
    }

    /// `run_connector` with the bookings reducer into `connection_string` fails at start with
    /// one message holding `expected`, without the password `secret`.
    async fn assert_start_fails(connection_string: &str, secret: &str, expected: &str) {
        let ws = Workspace::new();
        ws.log_with_events(10, 2, 90);
        let sidecar = sidecars::scripted(Script::Map(tsql_bookings)).await;
        let yaml = connector_yaml(&ws.log_path(), &sidecar.address, &sink_yaml(connection_string), &Setup::default());
        let result = tokio::time::timeout(WAIT, run_connector(parse_connector(&yaml), ConnectorControl::default(), |_| {}))
            .await
            .expect("fails fast");
        let message = result.expect_err("the target cannot be used").to_string();
        assert!(message.starts_with("connector `bookings`: "), "{message}");
        assert!(message.contains(expected), "`{expected}` not in: {message}");
        assert!(!message.contains(secret), "the password leaked: {message}");
    }

    /// Nothing listening needs no server, so that half runs without `MSSQL_URL` too; a login
    /// the real server refuses is the other half.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_unreachable_target_at_start_is_one_clear_error() {
        let port = crate::support::processes::free_port();
        let nowhere = format!("Server=tcp:127.0.0.1,{port};Database=nowhere;User Id=gateway;Password=hunter2;Encrypt=DANGER_PLAINTEXT");
        assert_start_fails(&nowhere, "hunter2", &format!("cannot connect to the SQL Server target mssql://127.0.0.1:{port}/nowhere: ")).await;

        let Some(url) = url() else { return };
        let secret = "Not-the-password#1";
        let refused = with_key(&url, &["password", "pwd"], &format!("Password={secret}"));
        let address = Config::from_ado_string(&url).expect("MSSQL_URL").get_addr();
        assert_start_fails(&refused, secret, &format!("cannot connect to the SQL Server target mssql://{address}/")).await;
        assert_start_fails(&refused, secret, "Login failed for user").await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_new_projection_version_rebuilds_the_read_model() {
        let Some(db) = Db::fresh("rebuild").await else { return };
        let ws = Workspace::new();
        let head = ws.log_with_events(1_500, 150, 91).head().unwrap();
        for version in ["1", "2"] {
            // The example's reset operations (`DELETE FROM bookings`, `DELETE FROM guest_stats`) are T-SQL as they are.
            let description = DescribeResponse { version: version.into(), ..bookings_reducer::description() };
            let sidecar = sidecars::describing_with(Script::Map(tsql_bookings), description).await;
            let yaml = bookings_yaml(&ws, &sidecar.address, &db, &Setup::default())
                .replace("      window:", "      rebuild_on_new_version: true\n      window:");
            project_to(&yaml, head).await;
            assert!(sidecar.requests() > 0, "version {version} projected the log");
        }
        db.assert_read_model(&ws, everything).await;
        assert_eq!(db.scalar("SELECT version FROM dbo.projections WHERE connector = N'bookings'").await, "2");
        db.drop_database().await;
    }
}
