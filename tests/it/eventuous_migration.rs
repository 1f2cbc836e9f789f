//! Taking over from the Eventuous Connector (`eventuous_checkpoint`), per target, against the
//! real servers of the test support (SQL Server: the TDS double): the Eventuous checkpoint is
//! written as Eventuous writes it (its own DDL and statements, its document shapes), then a
//! connector with the key starts. It applies only the events after that position, stores it
//! as its own checkpoints at once, and a later start plans from those (a changed Eventuous
//! checkpoint is not read again); no table, document or position means the whole log.
//!
//! The sidecar records each event's position (a row in `seen`, a document), so the read model
//! shows exactly which events were applied; the log is an embedded SQLite log, whose positions
//! stand for the `$all` positions Eventuous stores.

use std::{future::Future, time::Duration};

use bookings_reducer::proto::{
    Index, InsertOne, ProjectionRequest, ProjectionResponse, SqlValue as PbValue, Statement, sql_value::Kind,
};
use prost::Message;
use projector_gateway::{payload::json_to_struct, pipeline, proto::pack};
use crate::support::{
    fixtures::*,
    sidecars::{self, Script},
};

const WAIT: Duration = Duration::from_secs(120);
const PARTITIONS: usize = 4;

/// A target holding an Eventuous checkpoint and the read model of the recording sidecar.
trait Target {
    /// The `sink:` section and, after it, the connector's `eventuous_checkpoint:` section.
    fn yaml(&self) -> String;
    /// How the sidecar records an event in this target.
    fn record(&self) -> fn(&ProjectionRequest) -> ProjectionResponse;
    /// Writes the Eventuous checkpoint (`None`: the row or document without a position) as
    /// Eventuous does.
    fn write_eventuous(&self, position: Option<i64>) -> impl Future<Output = ()>;
    /// Positions of the events applied, in order, duplicates kept.
    fn seen(&self) -> impl Future<Output = Vec<u64>>;
    /// The connector's own checkpoint positions, by partition.
    fn own(&self) -> impl Future<Output = Vec<u64>>;
}

fn statement_record(request: &ProjectionRequest) -> ProjectionResponse {
    let statement = Statement {
        sql: "INSERT INTO seen (position) VALUES ($1)".into(),
        params: vec![PbValue { kind: Some(Kind::Int64Value(request.global_position as i64)) }],
    };
    let operation = prost_types::Any { type_url: "type.googleapis.com/projection.Statement".into(), value: statement.encode_to_vec() };
    ProjectionResponse { event_id: request.event_id.clone(), operation: Some(operation), ..Default::default() }
}

fn positions(range: std::ops::RangeInclusive<u64>) -> Vec<u64> {
    range.collect()
}

/// The log has 300 events, all projected by the Eventuous Connector (its checkpoint is at
/// 300). The connector stores that as its own checkpoint before it plans, applies only what
/// is appended after, and a second start ignores a changed Eventuous checkpoint.
async fn takes_over_the_eventuous_checkpoint_once(target: &impl Target, seed: u64) {
    let ws = Workspace::new();
    let mut log = ws.log_with_events(300, 30, seed);
    let taken_over = log.head().unwrap();
    target.write_eventuous(Some(taken_over as i64)).await;
    let sidecar = sidecars::scripted(Script::Map(target.record())).await;
    let yaml = connector_yaml(&ws.log_path(), &sidecar.address, &target.yaml(), &Setup::default());

    let mut running = Running::start(parse_connector(&yaml)).await;
    assert_eq!(target.own().await, vec![taken_over; PARTITIONS], "the Eventuous position, stored as the connector's own");
    append_generated(&mut log, 100, 10, seed + 1);
    let head = log.head().unwrap();
    running.wait_for(head, WAIT).await;
    running.stop().await.expect("clean stop");
    assert_eq!(target.seen().await, positions(taken_over + 1..=head), "only the events after the Eventuous checkpoint");
    assert_eq!(target.own().await, vec![head; PARTITIONS]);

    // Its own checkpoints win: the Eventuous checkpoint, moved back, is not read again.
    target.write_eventuous(Some(100)).await;
    let sent = sidecar.requests();
    let mut again = Running::start(parse_connector(&yaml)).await;
    again.wait_for(head, WAIT).await;
    again.stop().await.expect("clean stop");
    assert_eq!(sidecar.requests(), sent, "no event sent to the sidecar again");
    assert_eq!(target.seen().await, positions(taken_over + 1..=head));
    assert_eq!(target.own().await, vec![head; PARTITIONS]);
}

/// With the Eventuous checkpoint in the middle of the log (of `ws`), the events at or below it
/// are skipped and every later one applied, in the same reads.
async fn resumes_in_the_middle_of_the_log(target: &impl Target, ws: &Workspace, seed: u64) {
    let head = ws.log_with_events(300, 30, seed).head().unwrap();
    target.write_eventuous(Some(120)).await;
    let sidecar = sidecars::scripted(Script::Map(target.record())).await;
    let yaml = connector_yaml(&ws.log_path(), &sidecar.address, &target.yaml(), &Setup::default());
    let mut running = Running::start(parse_connector(&yaml)).await;
    running.wait_for(head, WAIT).await;
    running.stop().await.expect("clean stop");
    assert_eq!(target.seen().await, positions(121..=head));
    assert_eq!(target.own().await, vec![head; PARTITIONS]);
}

/// No Eventuous position (as `prepare` leaves it): the whole log is projected.
async fn starts_from_the_beginning_without_a_position(target: &impl Target, seed: u64) {
    let ws = Workspace::new();
    let head = ws.log_with_events(100, 10, seed).head().unwrap();
    let sidecar = sidecars::scripted(Script::Map(target.record())).await;
    let yaml = connector_yaml(&ws.log_path(), &sidecar.address, &target.yaml(), &Setup::default());
    let mut running = Running::start(parse_connector(&yaml)).await;
    running.wait_for(head, WAIT).await;
    running.stop().await.expect("clean stop");
    assert_eq!(target.seen().await, positions(1..=head));
    assert_eq!(target.own().await, vec![head; PARTITIONS]);
}

// ---------------------------------------------------------------------------------------------
// SQLite: Eventuous.Sqlite's `eventuous_checkpoints`, and the Connector's layout by `table`.

struct Sqlite {
    path: std::path::PathBuf,
    /// `None`: Eventuous.Sqlite's `eventuous_checkpoints (id, position)` (the default);
    /// `Some`: the Eventuous Connector's `Checkpoints (ID, Position)` layout under this name
    /// (not `Checkpoints`: that is the gateway's own `checkpoints` table in SQLite).
    connector_table: Option<&'static str>,
}

const SEEN_TABLE: &str = "CREATE TABLE IF NOT EXISTS seen (position bigint NOT NULL)";

impl Sqlite {
    fn in_workspace(ws: &Workspace, connector_table: Option<&'static str>) -> Self {
        Self { path: ws.path("read-model.db"), connector_table }
    }

    fn connection(&self) -> rusqlite::Connection {
        rusqlite::Connection::open(&self.path).expect("target")
    }
}

impl Target for Sqlite {
    fn yaml(&self) -> String {
        let table = self.connector_table.map(|t| format!(", table: {t}")).unwrap_or_default();
        format!(
            "      sqlite:\n        path: \"{}\"\n        init_sql: \"{SEEN_TABLE}\"\n    eventuous_checkpoint: {{ id: esdb-sqlite{table} }}\n",
            self.path.display()
        )
    }

    fn record(&self) -> fn(&ProjectionRequest) -> ProjectionResponse {
        statement_record
    }

    async fn write_eventuous(&self, position: Option<i64>) {
        let conn = self.connection();
        match self.connector_table {
            None => {
                // Eventuous.Sqlite: `1_Schema.sql`, then `GetLastCheckpoint` inserts the id and
                // `StoreCheckpoint` updates the position.
                conn.execute_batch("CREATE TABLE IF NOT EXISTS eventuous_checkpoints (id TEXT PRIMARY KEY, position INTEGER NULL)")
                    .unwrap();
                conn.execute("INSERT OR IGNORE INTO eventuous_checkpoints (id) VALUES (?1)", ["esdb-sqlite"]).unwrap();
                conn.execute("UPDATE eventuous_checkpoints SET position = ?1 WHERE id = ?2", rusqlite::params![position, "esdb-sqlite"])
                    .unwrap();
            }
            Some(table) => {
                // The Eventuous Connector's `SqlCheckpointStore`: -1 for "none".
                conn.execute_batch(&format!("CREATE TABLE IF NOT EXISTS {table} (ID VARCHAR(100) NOT NULL PRIMARY KEY, Position BIGINT)"))
                    .unwrap();
                conn.execute(&format!("INSERT OR IGNORE INTO {table} (ID, Position) VALUES (?1, -1)"), ["esdb-sqlite"]).unwrap();
                conn.execute(&format!("UPDATE {table} SET Position = ?1 WHERE ID = ?2"), rusqlite::params![position.unwrap_or(-1), "esdb-sqlite"])
                    .unwrap();
            }
        }
    }

    async fn seen(&self) -> Vec<u64> {
        let conn = self.connection();
        let mut stmt = conn.prepare("SELECT position FROM seen ORDER BY position").unwrap();
        stmt.query_map([], |r| r.get::<_, i64>(0)).unwrap().map(|p| p.unwrap() as u64).collect()
    }

    async fn own(&self) -> Vec<u64> {
        sqlite_checkpoints(&self.path, "bookings").into_iter().map(|(_, _, p)| p).collect()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_takes_over_the_eventuous_checkpoint_once() {
    let ws = Workspace::new();
    takes_over_the_eventuous_checkpoint_once(&Sqlite::in_workspace(&ws, None), 201).await;
}

/// In the middle of the log, with the Connector's table layout; then a `reset` to the start
/// stores position 0 as the connector's own, so the next start projects the whole log instead
/// of taking the Eventuous checkpoint again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_resumes_in_the_middle_of_the_log_and_a_reset_does_not_take_it_again() {
    let ws = Workspace::new();
    let target = Sqlite::in_workspace(&ws, Some("ConnectorCheckpoints"));
    resumes_in_the_middle_of_the_log(&target, &ws, 202).await;

    let head = target.own().await[0];
    let sidecar = sidecars::scripted(Script::Map(statement_record)).await;
    let yaml = connector_yaml(&ws.log_path(), &sidecar.address, &target.yaml(), &Setup::default());
    let reset = pipeline::reset_connector(parse_connector(&yaml), pipeline::ResetTo::Start).await.expect("reset");
    assert_eq!(reset.after.iter().map(|r| r.position).collect::<Vec<_>>(), vec![0; PARTITIONS]);
    let mut running = Running::start(parse_connector(&yaml)).await;
    running.wait_for(head, WAIT).await;
    running.stop().await.expect("clean stop");
    let mut expected = positions(1..=head);
    expected.extend(121..=head);
    expected.sort_unstable();
    assert_eq!(target.seen().await, expected, "after the reset, the whole log once more");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_without_an_eventuous_position_starts_from_the_beginning() {
    // No table at all.
    let ws = Workspace::new();
    starts_from_the_beginning_without_a_position(&Sqlite::in_workspace(&ws, None), 203).await;
    // Eventuous.Sqlite's row before a first position: null.
    let ws = Workspace::new();
    let target = Sqlite::in_workspace(&ws, None);
    target.write_eventuous(None).await;
    starts_from_the_beginning_without_a_position(&target, 204).await;
    // The Connector's row before a first position: -1.
    let ws = Workspace::new();
    let target = Sqlite::in_workspace(&ws, Some("ConnectorCheckpoints"));
    target.write_eventuous(None).await;
    starts_from_the_beginning_without_a_position(&target, 205).await;
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL: Eventuous.Postgresql's `eventuous.checkpoints`.

mod postgres {
    use super::*;
    use crate::support::postgres::{self as pg, Database};

    pub struct Postgres {
        pub db: Database,
    }

    impl Target for Postgres {
        fn yaml(&self) -> String {
            format!(
                "      postgres:\n        url: \"{}\"\n        init_sql: \"{SEEN_TABLE}\"\n    eventuous_checkpoint: {{ id: esdb-postgres }}\n",
                self.db.url
            )
        }

        fn record(&self) -> fn(&ProjectionRequest) -> ProjectionResponse {
            statement_record
        }

        async fn write_eventuous(&self, position: Option<i64>) {
            let client = self.db.client().await;
            // Eventuous.Postgresql: `1_Schema.sql`'s table, `AddCheckpointSql` on the first
            // `GetLastCheckpoint`, `UpdateCheckpointSql` on each store.
            client
                .batch_execute(
                    "create schema if not exists eventuous;
                     create table if not exists eventuous.checkpoints (id varchar primary key, position bigint null);",
                )
                .await
                .unwrap();
            client.execute("insert into eventuous.checkpoints (id) values ($1) on conflict do nothing", &[&"esdb-postgres"]).await.unwrap();
            client.execute("update eventuous.checkpoints set position=($1) where id=($2)", &[&position, &"esdb-postgres"]).await.unwrap();
        }

        async fn seen(&self) -> Vec<u64> {
            let client = self.db.client().await;
            let rows = client.query("SELECT position FROM seen ORDER BY position", &[]).await.unwrap_or_default();
            rows.iter().map(|r| r.get::<_, i64>(0) as u64).collect()
        }

        async fn own(&self) -> Vec<u64> {
            pg::checkpoints(&self.db.client().await, "bookings").await.into_iter().map(|(_, _, p)| p as u64).collect()
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres_takes_over_the_eventuous_checkpoint_once() {
        takes_over_the_eventuous_checkpoint_once(&Postgres { db: Database::fresh("ev_once").await }, 211).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres_resumes_in_the_middle_of_the_log() {
        resumes_in_the_middle_of_the_log(&Postgres { db: Database::fresh("ev_middle").await }, &Workspace::new(), 212).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres_without_an_eventuous_position_starts_from_the_beginning() {
        // No `eventuous` schema at all.
        starts_from_the_beginning_without_a_position(&Postgres { db: Database::fresh("ev_absent").await }, 213).await;
        // The row before a first position: null.
        let target = Postgres { db: Database::fresh("ev_null").await };
        target.write_eventuous(None).await;
        starts_from_the_beginning_without_a_position(&target, 214).await;
    }
}

// ---------------------------------------------------------------------------------------------
// SQL Server (the TDS double): the Eventuous Connector's `Checkpoints` table.

mod mssql {
    use super::*;
    use crate::support::tds::{Request, TdsServer, Value};
    use tokio_util::compat::TokioAsyncWriteCompatExt;

    pub struct SqlServer {
        pub server: TdsServer,
    }

    impl SqlServer {
        async fn client(&self) -> tiberius::Client<tokio_util::compat::Compat<tokio::net::TcpStream>> {
            let config = tiberius::Config::from_ado_string(&self.server.connection_string("reads")).unwrap();
            let tcp = tokio::net::TcpStream::connect(config.get_addr()).await.unwrap();
            tiberius::Client::connect(config, tcp.compat_write()).await.expect("connect to the TDS double")
        }
    }

    impl Target for SqlServer {
        fn yaml(&self) -> String {
            format!(
                "      mssql:\n        connection_string: \"{}\"\n        schema: gateway\n    eventuous_checkpoint: {{ id: esdb-sql-connector }}\n",
                self.server.connection_string("reads")
            )
        }

        fn record(&self) -> fn(&ProjectionRequest) -> ProjectionResponse {
            statement_record
        }

        /// The Eventuous Connector's `SqlCheckpointStore` (EsdbSqlServer): the table created
        /// when missing, the row inserted with -1 at the first `GetLastCheckpoint`, then
        /// updated (-1 again for a null position); ADO.NET's `@CheckpointId`/`@Position` are
        /// tiberius's `@P1`/`@P2`.
        async fn write_eventuous(&self, position: Option<i64>) {
            let mut client = self.client().await;
            if self.server.eventuous_checkpoints("Checkpoints").is_empty() {
                client
                    .simple_query("CREATE TABLE Checkpoints (ID VARCHAR(100) NOT NULL PRIMARY KEY, Position BIGINT)")
                    .await
                    .unwrap()
                    .into_results()
                    .await
                    .unwrap();
                let mut insert = tiberius::Query::new("INSERT INTO Checkpoints (ID, Position) VALUES (@P1, @P2)");
                insert.bind("esdb-sql-connector");
                insert.bind(-1i64);
                insert.execute(&mut client).await.unwrap();
            }
            let mut update = tiberius::Query::new("UPDATE Checkpoints SET Position = @P1 WHERE ID = @P2");
            update.bind(position.unwrap_or(-1));
            update.bind("esdb-sql-connector");
            update.execute(&mut client).await.unwrap();
            assert_eq!(self.server.eventuous_checkpoints("Checkpoints").get("esdb-sql-connector"), Some(&Some(position.unwrap_or(-1))));
        }

        /// The positions of the `INSERT INTO seen` statements the gateway sent (the double
        /// runs no SQL: what was sent, in committed batches, is what was applied).
        async fn seen(&self) -> Vec<u64> {
            let insert = regex::Regex::new(r"INSERT INTO seen \(position\) VALUES \(@P(\d+)\)").unwrap();
            let mut seen = Vec::new();
            for request in self.server.requests() {
                let Request::Rpc { text, params, .. } = request else { continue };
                for m in insert.captures_iter(&text) {
                    let Value::Int(position) = &params[m[1].parse::<usize>().unwrap() - 1].value else { panic!("{params:?}") };
                    seen.push(*position as u64);
                }
            }
            seen.sort_unstable();
            seen
        }

        async fn own(&self) -> Vec<u64> {
            self.server.checkpoints("bookings").into_iter().map(|(_, _, p)| p as u64).collect()
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn mssql_takes_over_the_eventuous_checkpoint_once() {
        takes_over_the_eventuous_checkpoint_once(&SqlServer { server: TdsServer::start().await }, 221).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn mssql_resumes_in_the_middle_of_the_log() {
        let target = SqlServer { server: TdsServer::start().await };
        resumes_in_the_middle_of_the_log(&target, &Workspace::new(), 222).await;
        let read = target.server.requests().into_iter().find(|r| r.text().starts_with("SELECT Position")).expect("the read");
        assert_eq!(read.text(), "SELECT Position FROM [dbo].[Checkpoints] WHERE ID = @P1");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn mssql_without_an_eventuous_position_starts_from_the_beginning() {
        // No `Checkpoints` table: the read fails with 208, Invalid object name.
        starts_from_the_beginning_without_a_position(&SqlServer { server: TdsServer::start().await }, 223).await;
        // The Connector's row before a first position: -1.
        let target = SqlServer { server: TdsServer::start().await };
        target.write_eventuous(None).await;
        starts_from_the_beginning_without_a_position(&target, 224).await;
    }
}

// ---------------------------------------------------------------------------------------------
// MongoDB (SecantusDB): Eventuous.Projections.MongoDB's `checkpoint` collection.

mod mongo {
    use super::*;
    use mongodb::bson::{Bson, doc};
    use crate::support::mongo::{MongoDb, Server};

    pub struct Mongo {
        pub db: MongoDb,
    }

    fn record(request: &ProjectionRequest) -> ProjectionResponse {
        let document = json_to_struct(format!(r#"{{"position": {}}}"#, request.global_position).as_bytes()).unwrap();
        let insert = InsertOne { document: Some(document), collection: "seen".into(), integer_fields: vec!["position".into()] };
        ProjectionResponse { event_id: request.event_id.clone(), operation: Some(pack("projection.InsertOne", &insert)), ..Default::default() }
    }

    impl Target for Mongo {
        fn yaml(&self) -> String {
            format!("{}    eventuous_checkpoint: {{ id: esdb-mongo-connector }}\n", self.db.sink_yaml(""))
        }

        fn record(&self) -> fn(&ProjectionRequest) -> ProjectionResponse {
            record
        }

        /// `MongoCheckpointStore.StoreCheckpoint`: `ReplaceOne` by `_id`, upserting, of the
        /// `Checkpoint(Id, Position)` record as the C# driver maps it (`Id` is `_id`; a `ulong?`
        /// is an Int64 or null).
        async fn write_eventuous(&self, position: Option<i64>) {
            let position = position.map_or(Bson::Null, Bson::Int64);
            self.db
                .db
                .collection::<mongodb::bson::Document>("checkpoint")
                .replace_one(doc! { "_id": "esdb-mongo-connector" }, doc! { "_id": "esdb-mongo-connector", "Position": position })
                .upsert(true)
                .await
                .unwrap();
        }

        async fn seen(&self) -> Vec<u64> {
            let mut seen: Vec<u64> = self.db.documents("seen").await.iter().map(|d| crate::support::mongo::int64(d, "position") as u64).collect();
            seen.sort_unstable();
            seen
        }

        async fn own(&self) -> Vec<u64> {
            self.db.checkpoints("bookings").await.into_values().map(|p| p as u64).collect()
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn mongo_takes_over_the_eventuous_checkpoint_once() {
        takes_over_the_eventuous_checkpoint_once(&Mongo { db: MongoDb::fresh(Server::Secantus, "ev_once").await }, 231).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn mongo_resumes_in_the_middle_of_the_log() {
        resumes_in_the_middle_of_the_log(&Mongo { db: MongoDb::fresh(Server::Secantus, "ev_middle").await }, &Workspace::new(), 232).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn mongo_without_an_eventuous_position_starts_from_the_beginning() {
        // No `checkpoint` collection.
        starts_from_the_beginning_without_a_position(&Mongo { db: MongoDb::fresh(Server::Secantus, "ev_absent").await }, 233).await;
        // `Position: null`, as the store writes `Checkpoint(id, null)`.
        let target = Mongo { db: MongoDb::fresh(Server::Secantus, "ev_null").await };
        target.write_eventuous(None).await;
        starts_from_the_beginning_without_a_position(&target, 234).await;
    }
}

// ---------------------------------------------------------------------------------------------
// Elasticsearch and OpenSearch: Eventuous.ElasticSearch's `checkpoint` index.

mod elastic {
    use super::*;
    use ::elasticsearch::http::Method;
    use crate::support::elastic::{Engine, Indices, encode};

    /// The index is Eventuous's default, `checkpoint`, which every test on the engine shares:
    /// each uses a checkpoint id of its own.
    pub struct Elastic {
        pub ix: Indices,
        pub id: String,
        /// Write `Position` (a serializer keeping .NET's names) instead of NEST's `position`.
        pub pascal_case: bool,
    }

    impl Elastic {
        fn fresh(engine: Engine, hint: &str) -> Self {
            let ix = Indices::fresh(engine, hint);
            let id = format!("esdb-elastic-connector-{}", ix.prefix);
            Self { ix, id, pascal_case: false }
        }
    }

    fn record(request: &ProjectionRequest) -> ProjectionResponse {
        let position = request.global_position;
        let document = json_to_struct(format!(r#"{{"position": {position}}}"#).as_bytes()).unwrap();
        let index = Index { id: format!("p{position}"), document: Some(document), ..Default::default() };
        ProjectionResponse { event_id: request.event_id.clone(), operation: Some(pack("projection.Index", &index)), ..Default::default() }
    }

    impl Target for Elastic {
        fn yaml(&self) -> String {
            format!("{}    eventuous_checkpoint: {{ id: {} }}\n", self.ix.sink_yaml(""), self.id)
        }

        fn record(&self) -> fn(&ProjectionRequest) -> ProjectionResponse {
            record
        }

        /// `ElasticCheckpointStore`: the index created with NEST's `AutoMap` of `Checkpoint`
        /// when missing, then `Update` of the document `<id>` with `Doc(checkpoint)` and
        /// `DocAsUpsert`, serialized by NEST (camel-cased names).
        async fn write_eventuous(&self, position: Option<i64>) {
            let mapping = serde_json::json!({"mappings": {"properties": {
                "id": {"type": "text", "fields": {"keyword": {"type": "keyword", "ignore_above": 256}}},
                "position": {"type": "long"},
            }}});
            let created = projector_gateway::sinks::elastic::client::send(
                &self.ix.client,
                Method::Put,
                "/checkpoint",
                Some(mapping.to_string().into_bytes()),
            )
            .await;
            if let Err(e) = created {
                assert!(e.message.contains("resource_already_exists_exception"), "{}", e.message);
            }
            let field = if self.pascal_case { "Position" } else { "position" };
            let doc = serde_json::json!({"doc": {"id": self.id, field: position}, "doc_as_upsert": true});
            self.ix.request(Method::Post, &format!("/checkpoint/_update/{}", encode(&self.id)), Some(doc)).await;
        }

        async fn seen(&self) -> Vec<u64> {
            let mut seen: Vec<u64> = self.ix.documents(&self.ix.prefix).await.iter().map(|(_, d)| d["position"].as_u64().unwrap()).collect();
            seen.sort_unstable();
            seen
        }

        async fn own(&self) -> Vec<u64> {
            self.ix.checkpoints("bookings").await.into_values().collect()
        }
    }

    async fn takes_over(engine: Engine) {
        takes_over_the_eventuous_checkpoint_once(&Elastic::fresh(engine, "ev-once"), 241).await;
    }

    async fn resumes_in_the_middle(engine: Engine) {
        let target = Elastic { pascal_case: true, ..Elastic::fresh(engine, "ev-middle") };
        resumes_in_the_middle_of_the_log(&target, &Workspace::new(), 242).await;
    }

    async fn starts_from_the_beginning(engine: Engine) {
        // No document of this id in `checkpoint`.
        starts_from_the_beginning_without_a_position(&Elastic::fresh(engine, "ev-absent"), 243).await;
        // No index at all (one of the test's own names).
        let target = Elastic::fresh(engine, "ev-noindex");
        let missing = format!("{}-checkpoint", target.ix.prefix);
        let yaml = target.yaml().replace(" }\n", &format!(", index: {missing} }}\n"));
        let no_index = NoIndex { inner: target, yaml };
        starts_from_the_beginning_without_a_position(&no_index, 244).await;
        // `position: null`, as `Checkpoint(id, null)` is serialized.
        let target = Elastic::fresh(engine, "ev-null");
        target.write_eventuous(None).await;
        starts_from_the_beginning_without_a_position(&target, 245).await;
    }

    /// A target whose `eventuous_checkpoint.index` names an index that does not exist.
    struct NoIndex {
        inner: Elastic,
        yaml: String,
    }

    impl Target for NoIndex {
        fn yaml(&self) -> String {
            self.yaml.clone()
        }
        fn record(&self) -> fn(&ProjectionRequest) -> ProjectionResponse {
            record
        }
        async fn write_eventuous(&self, _: Option<i64>) {
            unreachable!("the index stays missing")
        }
        async fn seen(&self) -> Vec<u64> {
            self.inner.seen().await
        }
        async fn own(&self) -> Vec<u64> {
            self.inner.own().await
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn elasticsearch_takes_over_the_eventuous_checkpoint_once() {
        takes_over(Engine::Elasticsearch).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn elasticsearch_resumes_in_the_middle_of_the_log() {
        resumes_in_the_middle(Engine::Elasticsearch).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn elasticsearch_without_an_eventuous_position_starts_from_the_beginning() {
        starts_from_the_beginning(Engine::Elasticsearch).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn opensearch_takes_over_the_eventuous_checkpoint_once() {
        takes_over(Engine::OpenSearch).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn opensearch_resumes_in_the_middle_of_the_log() {
        resumes_in_the_middle(Engine::OpenSearch).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn opensearch_without_an_eventuous_position_starts_from_the_beginning() {
        starts_from_the_beginning(Engine::OpenSearch).await;
    }
}

// ---------------------------------------------------------------------------------------------
// The binary: what `validate` says, offline, and the one line `run` logs.

mod binary {
    use std::process::Command;

    use super::*;
    use crate::support::processes::{SIGTERM, gateway_bin, gateway_run};

    #[test]
    fn validate_says_where_each_connector_will_look_without_connecting() {
        let ws = Workspace::new();
        let config = ws.path("gateway.yaml");
        std::fs::write(
            &config,
            "connectors:\n  - id: reads\n    source: { sqlite: { path: e.db } }\n    sidecar: { address: \"http://127.0.0.1:1\" }\n    sink: { mongo: { url: \"mongodb://127.0.0.1:1\", database: app, collection: docs } }\n    eventuous_checkpoint: { id: esdb-mongo-connector }\n  - id: plain\n    source: { sqlite: { path: e.db } }\n    sidecar: { address: \"http://127.0.0.1:1\" }\n    sink: { sqlite: { path: t.db } }\n",
        )
        .unwrap();
        // `validate` checks that the event log exists (beside the config file).
        std::fs::write(ws.path("e.db"), "").unwrap();
        let out = Command::new(gateway_bin()).args(["validate", "--config", config.to_str().unwrap()]).output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let lines: Vec<&str> = stdout.lines().collect();
        assert_eq!(lines.len(), 2, "{stdout}");
        assert_eq!(
            lines[1],
            "connector reads: on its first start (no checkpoint of its own) resumes after the Eventuous checkpoint \
             `esdb-mongo-connector` in the MongoDB collection `checkpoint`, or starts from the beginning of the log if there is none"
        );

        // An Eventuous Connector file says the same of its connectorId.
        std::fs::write(
            &config,
            "connector:\n  connectorId: \"esdb-sql-connector\"\n  connectorAssembly: \"Eventuous.Connector.EsdbSqlServer\"\nsource:\n  connectionString: \"esdb://localhost:2113?tls=false\"\ntarget:\n  connectionString: \"Server=localhost;Database=test;User=sa;Password=p\"\ngrpc:\n  uri: \"http://localhost:9091\"\n",
        )
        .unwrap();
        let out = Command::new(gateway_bin()).args(["validate", "--config", config.to_str().unwrap()]).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert!(
            String::from_utf8_lossy(&out.stdout)
                .contains("resumes after the Eventuous checkpoint `esdb-sql-connector` in the SQL Server table `dbo.Checkpoints`"),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );

        // A sink where Eventuous keeps no checkpoint is refused, with the key's path.
        std::fs::write(
            &config,
            "connectors:\n  - id: tail\n    source: { sqlite: { path: e.db } }\n    sink: { console: {} }\n    eventuous_checkpoint: { id: x }\n",
        )
        .unwrap();
        let out = Command::new(gateway_bin()).args(["validate", "--config", config.to_str().unwrap()]).output().unwrap();
        assert_eq!(out.status.code(), Some(2));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("connectors[0].eventuous_checkpoint: the console sink has no Eventuous checkpoint to take over"),
            "{stderr}"
        );
    }

    /// One gateway, two connectors: one takes over an Eventuous checkpoint, the other finds
    /// none; each says so in exactly one INFO line, and a restart says nothing of it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn run_logs_one_line_per_connector_and_nothing_once_it_has_its_own_checkpoints() {
        let ws = Workspace::new();
        let head = ws.log_with_events(200, 20, 251).head().unwrap();
        let sidecar = sidecars::scripted(Script::Map(statement_record)).await;
        let taking = Sqlite { path: ws.path("taking.db"), connector_table: None };
        taking.write_eventuous(Some(head as i64)).await;
        let fresh = Sqlite { path: ws.path("fresh.db"), connector_table: None };
        let one = |id: &str, target: &Sqlite| {
            let setup = Setup { id: id.into(), ..Setup::default() };
            let yaml = connector_yaml(&ws.log_path(), &sidecar.address, &target.yaml(), &setup);
            yaml.strip_prefix("connectors:\n").unwrap().to_string()
        };
        let config = ws.path("gateway.yaml");
        std::fs::write(&config, format!("connectors:\n{}{}", one("taking", &taking), one("fresh", &fresh))).unwrap();

        let (config, ws, taking_db, fresh_db) = (&config, &ws, &taking.path, &fresh.path);
        let run = async |name: &str| {
            let mut gateway = gateway_run(config, ws.dir.path(), name);
            let started = |connector: &str| {
                let log = std::fs::read_to_string(&gateway.stderr_path).unwrap_or_default();
                log.lines().any(|l| l.contains("resuming after position") && l.contains(&format!("connector={connector}")))
            };
            poll_until("both connectors started", WAIT, || (started("taking") && started("fresh")).then_some(())).await;
            poll_until("both connectors at the head", WAIT, || {
                (sqlite_low_watermark(taking_db, "taking", 4) == head && sqlite_low_watermark(fresh_db, "fresh", 4) == head).then_some(())
            })
            .await;
            gateway.signal(SIGTERM);
            let status = gateway.wait_exit(WAIT);
            assert!(status.success(), "{status:?}: {}", gateway.stderr());
            std::fs::read_to_string(&gateway.stderr_path).unwrap()
        };
        let first = run("first").await;
        let took = format!(
            "resuming after the Eventuous Connector's checkpoint `esdb-sqlite` (SQLite table `eventuous_checkpoints`) at position {head}; \
             it is now stored as this connector's own checkpoint"
        );
        let found_none = "starting from the beginning of the log: no Eventuous checkpoint `esdb-sqlite` was found in the SQLite table \
                          `eventuous_checkpoints` (or it holds no position yet)";
        let lines = |log: &str, text: &str, connector: &str| {
            log.lines().filter(|l| l.contains(" INFO ") && l.contains(text) && l.contains(&format!("connector={connector}"))).count()
        };
        assert_eq!(lines(&first, &took, "taking"), 1, "{first}");
        assert_eq!(lines(&first, found_none, "fresh"), 1, "{first}");
        assert!(fresh.seen().await.len() == head as usize && taking.seen().await.is_empty());

        let second = run("second").await;
        assert!(!second.contains("Eventuous"), "a start with checkpoints of its own reads no Eventuous checkpoint:\n{second}");
    }
}
