//! Parked events as an operator lists and discards them (`Sink::parked_events`,
//! `Sink::discard_parked`), in the stores of the MongoDB target (SecantusDB and FerretDB, the
//! servers `scripts/mongo.sh` runs), the Elasticsearch target (Elasticsearch 8 and OpenSearch 2,
//! `scripts/elastic.sh`) and the SQL Server target. The events are parked through the sinks'
//! own writers (`BatchItem::Park`), by two connectors sharing one store; the same scenario
//! runs on each store. No SQL Server runs here: its scenario runs when `MSSQL_URL` names a real
//! server (skipped otherwise, as in `tests/it/mssql_sink.rs`), and the TDS recorder checks the
//! statements the sink sends.

use std::{sync::Arc, time::Duration};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use projector_gateway::{
    event::{ContentType, Event},
    sinks::{
        Batch, BatchItem, EventRef, Sink, SinkWriter,
        parked::{ParkedEvent, ParkedQuery},
    },
};

/// One event to park: (position, partition, event type, reason).
type Park = (u64, u32, &'static str, &'static str);

/// The first batch of the connector `ops`, out of position order (partition 0 before 1).
const FIRST: [Park; 2] = [
    (11, 0, "PaymentRecorded", "Arithmetic overflow converting 5000000000 to int"),
    (10, 1, "RoomBooked", r#"duplicate key (code 11000): {_id: "b-1"}"#),
];
/// The second batch of `ops`, parked later.
const SECOND: [Park; 2] = [
    (12, 2, "RoomBooked", "timeout after 5s; the sidecar did not answer"),
    (13, 3, "GuestCheckedIn", "Invalid object name 'no_such_table'"),
];
/// The connector `other`'s, in the same store: the same position, type and reason as one of
/// `ops`'s, and a later one.
const OTHER: [Park; 2] = [(11, 0, "RoomBooked", r#"duplicate key (code 11000): {_id: "b-1"}"#), (14, 1, "GuestCheckedIn", "timeout")];

fn event((position, partition, event_type, _): Park) -> EventRef {
    EventRef::new(
        Arc::new(Event {
            position,
            stream: format!("booking-{partition}"),
            revision: 0,
            event_type: event_type.into(),
            event_id: format!("e-{position}"),
            data: Bytes::from(format!(r#"{{"n":{position}}}"#)),
            content_type: ContentType::Json,
            metadata: None,
            created: Utc::now(),
        }),
        partition,
    )
}

/// Parks `parks` in one batch through a writer of `sink`.
async fn park<S: Sink>(sink: &S, parks: &[Park]) {
    let items = parks.iter().map(|p| BatchItem::Park { event: event(*p), error: p.3.to_string() }).collect();
    let mut writer = sink.open_writer().await.expect("writer");
    writer.apply(Arc::new(Batch::new(items, 4))).await.expect("parked");
}

async fn list<S: Sink>(sink: &S, query: ParkedQuery) -> Vec<ParkedEvent> {
    sink.parked_events(&query).await.unwrap_or_else(|e| panic!("listing {query:?}: {e}"))
}

/// The positions of a listing, in its order.
fn positions(events: &[ParkedEvent]) -> Vec<u64> {
    events.iter().map(|e| e.position).collect()
}

fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text).unwrap_or_else(|e| panic!("parked_at `{text}` is not RFC 3339: {e}")).to_utc()
}

/// Checks every field of a listed event against what was parked.
fn assert_parked(listed: &ParkedEvent, (position, partition, event_type, error): Park) {
    assert_eq!(
        (listed.position, listed.partition, listed.event_type.as_str(), listed.error.as_str()),
        (position, partition, event_type, error),
        "{listed:?}"
    );
    assert_eq!((listed.event_id.clone(), listed.stream.clone()), (format!("e-{position}"), format!("booking-{partition}")));
    assert_eq!(listed.payload.as_deref(), Some(format!(r#"{{"n":{position}}}"#).as_str()));
    // RFC 3339 in UTC with milliseconds and `Z`: formatting it again gives the same text.
    assert_eq!(at(&listed.parked_at).to_rfc3339_opts(chrono::SecondsFormat::Millis, true), listed.parked_at, "{listed:?}");
    let age = Utc::now() - at(&listed.parked_at);
    assert!(age.num_minutes().abs() < 10, "parked at {} (now {})", listed.parked_at, Utc::now());
    assert!(!listed.id.is_empty());
}

/// The scenario every store runs: `sink` (connector `ops`) and `other` (connector `other`)
/// share the store. `gateway_clock`: the store's `parked_at` comes from this process's clock
/// (not the server's), so parks before and after an instant measured here fall on either side
/// of it.
async fn lists_filters_and_discards<S: Sink>(sink: &S, other: &S, gateway_clock: bool) {
    assert_eq!(list(sink, ParkedQuery::default()).await, [], "nothing parked yet");
    assert_eq!(sink.count_parked().await.expect("count"), Some(0));
    assert_eq!(sink.discard_parked(&["ops/0/1".into(), "1".into()]).await.expect("discard"), 0);

    park(sink, &FIRST).await;
    park(other, &OTHER).await;
    // The second batch is parked strictly after the first (a later millisecond).
    let first = list(sink, ParkedQuery::default()).await;
    let latest = first.iter().map(|e| at(&e.parked_at)).max().expect("parked");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while Utc::now() <= latest + chrono::Duration::milliseconds(5) {
        assert!(std::time::Instant::now() < deadline, "the clock did not pass {latest}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    park(sink, &SECOND).await;

    assert_eq!(sink.count_parked().await.expect("count"), Some(4), "only ops's");
    assert_eq!(other.count_parked().await.expect("count"), Some(2));
    // Everything of `ops`, by position, with its fields; none of `other`'s.
    let all = list(sink, ParkedQuery::default()).await;
    assert_eq!(positions(&all), [10, 11, 12, 13], "{all:#?}");
    for (listed, parked) in all.iter().zip([FIRST[1], FIRST[0], SECOND[0], SECOND[1]]) {
        assert_parked(listed, parked);
    }
    let id = |position: u64| all.iter().find(|e| e.position == position).expect("listed").id.clone();
    let theirs = list(other, ParkedQuery::default()).await;
    assert_eq!(positions(&theirs), [11, 14]);
    assert_parked(&theirs[0], OTHER[0]);
    assert!(theirs.iter().all(|e| !all.iter().any(|a| a.id == e.id)), "ids are the store's, one per record: {theirs:?}");

    // Each filter alone.
    let by_type = |t: &str| ParkedQuery { event_type: Some(t.into()), ..Default::default() };
    assert_eq!(positions(&list(sink, by_type("RoomBooked")).await), [10, 12], "exactly this type, only ops's");
    assert_eq!(positions(&list(sink, by_type("roombooked")).await), [] as [u64; 0], "the type compares with case");
    assert_eq!(positions(&list(sink, by_type("Room")).await), [] as [u64; 0], "the whole type");
    let by_reason = |t: &str| ParkedQuery { error_contains: Some(t.into()), ..Default::default() };
    assert_eq!(positions(&list(sink, by_reason("(code 11000): {_id:")).await), [10], "a substring, punctuation as it is");
    assert_eq!(positions(&list(sink, by_reason("Duplicate")).await), [] as [u64; 0], "case-sensitive");
    assert_eq!(positions(&list(sink, by_reason("o")).await), [10, 11, 12, 13]);
    assert_eq!(positions(&list(sink, by_reason("out")).await), [12], "`timeout`");
    assert_eq!(positions(&list(sink, by_reason("5000000000 to int")).await), [11]);
    let since = at(&all.iter().find(|e| e.position == 12).expect("listed").parked_at);
    let expected: Vec<u64> = all.iter().filter(|e| at(&e.parked_at) >= since).map(|e| e.position).collect();
    let after = list(sink, ParkedQuery { since: Some(since), ..Default::default() }).await;
    assert_eq!(positions(&after), expected, "parked at or after {since}");
    if gateway_clock {
        assert_eq!(positions(&after), [12, 13], "the second batch only");
    }
    let later = list(sink, ParkedQuery { since: Some(Utc::now() + chrono::Duration::hours(1)), ..Default::default() }).await;
    assert_eq!(later, []);
    let named = ParkedQuery { ids: vec![id(12), "no-such-id".into(), theirs[0].id.clone(), id(10)], ..Default::default() };
    assert_eq!(positions(&list(sink, named).await), [10, 12], "by id, never another connector's");
    assert_eq!(list(sink, ParkedQuery { ids: vec!["no-such-id".into()], ..Default::default() }).await, []);

    // Limits, and filters together.
    assert_eq!(positions(&list(sink, ParkedQuery { limit: 2, ..Default::default() }).await), [10, 11]);
    assert_eq!(positions(&list(sink, ParkedQuery { limit: 1, ..by_type("RoomBooked") }).await), [10]);
    assert_eq!(positions(&list(sink, ParkedQuery { limit: 10, ..Default::default() }).await), [10, 11, 12, 13]);
    assert_eq!(positions(&list(sink, ParkedQuery { limit: 2, ..by_reason("o") }).await), [10, 11]);
    assert_eq!(positions(&list(sink, ParkedQuery { limit: 1, ..by_reason("name") }).await), [13]);
    assert_eq!(positions(&list(sink, ParkedQuery { error_contains: Some("timeout".into()), ..by_type("RoomBooked") }).await), [12]);
    assert_eq!(list(sink, ParkedQuery { ids: vec![id(11)], ..by_type("RoomBooked") }).await, []);
    assert_eq!(list(sink, ParkedQuery { ids: vec![id(11)], ..Default::default() }).await, [all[1].clone()], "`show` of one");

    // Discarding: two of ops's, then ids that name nothing of ops's.
    assert_eq!(sink.discard_parked(&[id(10), id(12)]).await.expect("discard"), 2);
    assert_eq!(positions(&list(sink, ParkedQuery::default()).await), [11, 13], "the rest remain");
    assert_eq!(sink.count_parked().await.expect("count"), Some(2));
    assert_eq!(sink.discard_parked(&[id(10), "no-such-id".into(), theirs[0].id.clone()]).await.expect("discard"), 0);
    assert_eq!(sink.discard_parked(&[]).await.expect("discard"), 0);
    assert_eq!(list(other, ParkedQuery::default()).await, theirs, "another connector's are never deleted");
    assert_eq!(positions(&list(sink, ParkedQuery::default()).await), [11, 13]);
    let ids: Vec<String> = theirs.iter().map(|e| e.id.clone()).collect();
    assert_eq!(other.discard_parked(&ids).await.expect("discard"), 2);
    assert_eq!(list(other, ParkedQuery::default()).await, []);
    assert_eq!(positions(&list(sink, ParkedQuery::default()).await), [11, 13]);
}

#[cfg(feature = "mongo")]
mod mongo {
    use projector_gateway::sinks::mongo::MongoSink;

    use super::*;
    use crate::support::mongo::{MongoDb, Server};

    async fn parked_events_are_listed_filtered_and_discarded(server: Server) {
        let db = MongoDb::fresh(server, "parked").await;
        let sink = MongoSink::open(&db.sink_config(), "ops").await.expect("open ops");
        let other = MongoSink::open(&db.sink_config(), "other").await.expect("open other");
        lists_filters_and_discards(&sink, &other, true).await;
        // The record ids are the documents' `_id`s.
        let ids: Vec<String> = list(&sink, ParkedQuery::default()).await.into_iter().map(|e| e.id).collect();
        assert_eq!(ids, ["ops/0/11", "ops/3/13"]);
        let stored: Vec<_> = db.documents("parked_events").await.iter().map(|d| d.get_str("_id").unwrap().to_string()).collect();
        assert_eq!(stored, ["ops/0/11", "ops/3/13"]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn secantus() {
        parked_events_are_listed_filtered_and_discarded(Server::Secantus).await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn ferret() {
        parked_events_are_listed_filtered_and_discarded(Server::Ferret).await
    }
}

#[cfg(feature = "elastic")]
mod elastic {
    use ::elasticsearch::http::Method;
    use projector_gateway::{config::ConnectorMode, sinks::elastic::ElasticSink};

    use super::*;
    use crate::support::elastic::{Engine, Indices};

    async fn open(ix: &Indices, connector: &str) -> ElasticSink {
        ElasticSink::open(&ix.config(), connector, ConnectorMode::Projector).await.unwrap_or_else(|e| panic!("open {connector}: {e}"))
    }

    async fn parked_events_are_listed_filtered_and_discarded(engine: Engine) {
        let ix = Indices::fresh(engine, "parked");
        let sink = open(&ix, "ops").await;
        let other = open(&ix, "other").await;
        lists_filters_and_discards(&sink, &other, true).await;
        let ids: Vec<String> = list(&sink, ParkedQuery::default()).await.into_iter().map(|e| e.id).collect();
        assert_eq!(ids, ["ops/0/11", "ops/3/13"], "the documents' ids");
        let stored: Vec<String> = ix.documents(&ix.parked_index()).await.into_iter().map(|(id, _)| id).collect();
        assert_eq!(stored, ["ops/0/11", "ops/3/13"]);
    }

    /// More events than a page of the engine's hits, most filtered out in the gateway (the
    /// reason is analysed text): the listing reads on until `limit` pass.
    async fn a_reason_filter_reads_past_one_page(engine: Engine) {
        let ix = Indices::fresh(engine, "parked-pages");
        let sink = open(&ix, "ops").await;
        let reasons = ["Rare Case", "common"];
        let items: Vec<BatchItem<_>> = (1..=2_500u64)
            .map(|p| {
                let error = if p % 1000 == 0 { reasons[0] } else { reasons[1] };
                BatchItem::Park { event: event((p, (p % 4) as u32, "Tested", "")), error: error.into() }
            })
            .collect();
        let mut writer = sink.open_writer().await.expect("writer");
        writer.apply(Arc::new(Batch::new(items, 4))).await.expect("parked");
        let rare = |limit| ParkedQuery { error_contains: Some("Rare Case".into()), limit, ..Default::default() };
        assert_eq!(positions(&list(&sink, rare(0)).await), [1000, 2000]);
        assert_eq!(positions(&list(&sink, rare(1)).await), [1000]);
        assert_eq!(positions(&list(&sink, ParkedQuery { error_contains: Some("rare case".into()), ..Default::default() }).await), [] as [u64; 0]);
        assert_eq!(list(&sink, ParkedQuery::default()).await.len(), 2_500);
        let page = list(&sink, ParkedQuery { limit: 1_200, ..Default::default() }).await;
        assert_eq!(positions(&page), (1..=1_200).collect::<Vec<u64>>());
    }

    /// No parked index (deleted since the sink started): nothing to list or discard.
    async fn no_parked_index_is_no_parked_event(engine: Engine) {
        let ix = Indices::fresh(engine, "parked-none");
        let sink = open(&ix, "ops").await;
        ix.request(Method::Delete, &format!("/{}", ix.parked_index()), None).await;
        assert_eq!(list(&sink, ParkedQuery::default()).await, []);
        assert_eq!(list(&sink, ParkedQuery { event_type: Some("RoomBooked".into()), limit: 5, ..Default::default() }).await, []);
        assert_eq!(sink.discard_parked(&["ops/0/1".into()]).await.expect("discard"), 0);
    }

    crate::support::elastic::on_both_engines!(parked_events_are_listed_filtered_and_discarded, a_reason_filter_reads_past_one_page, no_parked_index_is_no_parked_event);
}

#[cfg(feature = "mssql")]
mod mssql {
    use projector_gateway::{config::MssqlSinkConfig, sinks::mssql::MssqlSink};
    use tiberius::{Client, Config};
    use tokio_util::compat::TokioAsyncWriteCompatExt;

    use super::*;
    use crate::support::tds::{Request, TdsServer, Value};

    fn config(connection_string: String) -> MssqlSinkConfig {
        MssqlSinkConfig { connection_string, schema: "dbo".into(), init_sql: None, init_sql_file: None, allow_raw_sql: false, writers: 1 }
    }

    /// The recorder: the statements and typed parameters a listing with every filter and a
    /// discard send (the double answers them with no rows; what SQL Server does with them is
    /// the real server's case below).
    #[tokio::test]
    async fn listing_and_discarding_send_one_parameterised_statement_each() {
        let server = TdsServer::start().await;
        let sink = MssqlSink::open(&config(server.connection_string("reads")), "ops").await.expect("open");
        server.clear_requests();
        let since: DateTime<Utc> = "2026-12-07T10:00:00.250Z".parse().unwrap();
        let query = ParkedQuery {
            event_type: Some("RoomBooked".into()),
            error_contains: Some("duplicate".into()),
            since: Some(since),
            ids: vec!["7".into(), "not-a-number".into(), "3".into()],
            limit: 5,
        };
        assert_eq!(sink.parked_events(&query).await.expect("listed"), []);
        assert_eq!(sink.discard_parked(&["7".into(), "x".into()]).await.expect("discarded"), 0);
        assert_eq!(sink.discard_parked(&["x".into()]).await.expect("nothing to discard"), 0);
        assert_eq!(sink.parked_events(&ParkedQuery { ids: vec!["x".into()], ..Default::default() }).await.expect("listed"), []);

        let calls: Vec<Request> = server.requests().into_iter().filter(|r| !matches!(r, Request::Login { .. })).collect();
        assert_eq!(calls.len(), 2, "ids that are no numbers name nothing, without a round trip: {calls:#?}");
        let Request::Rpc { procedure, text, params, .. } = &calls[0] else { panic!("{calls:?}") };
        assert_eq!(procedure, "sp_executesql");
        assert_eq!(
            text,
            "SELECT TOP (@P7) id, [partition], position, event_id, stream, event_type, payload, error, parked_at FROM [dbo].[parked_events] \
             WHERE connector = @P1 COLLATE Latin1_General_BIN2 \
             AND event_type = @P2 COLLATE Latin1_General_BIN2 AND DATALENGTH(event_type) = DATALENGTH(@P2) \
             AND CHARINDEX(@P3 COLLATE Latin1_General_BIN2, error COLLATE Latin1_General_BIN2) > 0 \
             AND parked_at >= @P4 AND id IN (@P5, @P6) ORDER BY position, id"
        );
        let values: Vec<&Value> = params.iter().map(|p| &p.value).collect();
        assert_eq!(
            values,
            [
                &Value::Text("ops".into()),
                &Value::Text("RoomBooked".into()),
                &Value::Text("duplicate".into()),
                &Value::DateTime2("2026-12-07T10:00:00.2500000".into()),
                &Value::Int(3),
                &Value::Int(7),
                &Value::Int(5),
            ]
        );
        assert_eq!(params[4].tds_type, "intn(8)", "ids are bigints");
        let Request::Rpc { text, params, .. } = &calls[1] else { panic!("{calls:?}") };
        assert_eq!(text, "DELETE FROM [dbo].[parked_events] WHERE connector = @P1 COLLATE Latin1_General_BIN2 AND id IN (@P2)");
        assert_eq!(params.iter().map(|p| &p.value).collect::<Vec<_>>(), [&Value::Text("ops".into()), &Value::Int(7)]);
    }

    /// A database of its own on the server of `MSSQL_URL` (an ADO.NET connection string of a
    /// login that may create databases), or `None` with a note when it is not set.
    struct Db {
        admin: String,
        name: String,
        url: String,
    }

    async fn run(url: &str, sql: &str) {
        let config = Config::from_ado_string(url).expect("MSSQL_URL");
        let tcp = tokio::net::TcpStream::connect(config.get_addr()).await.expect("SQL Server reachable");
        let mut client = Client::connect(config, tcp.compat_write()).await.expect("login");
        client.simple_query(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}")).into_results().await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    impl Db {
        async fn fresh() -> Option<Self> {
            let Some(admin) = std::env::var("MSSQL_URL").ok().filter(|url| !url.trim().is_empty()) else {
                println!("MSSQL_URL is not set: skipping the real SQL Server case (README, \"SQL Server target\")");
                return None;
            };
            let name = format!("gateway_parked_{}", uuid::Uuid::new_v4().simple());
            run(&admin, &format!("CREATE DATABASE [{name}]")).await;
            let kept: Vec<&str> = admin
                .split(';')
                .filter(|kv| {
                    let key = kv.split('=').next().unwrap_or_default().trim().to_ascii_lowercase();
                    !key.is_empty() && key != "database" && key != "initial catalog"
                })
                .collect();
            let url = format!("{};Database={name}", kept.join(";"));
            Some(Self { admin, name, url })
        }

        async fn drop_database(self) {
            run(&self.admin, &format!("ALTER DATABASE [{0}] SET SINGLE_USER WITH ROLLBACK IMMEDIATE; DROP DATABASE [{0}];", self.name)).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn real_server_parked_events_are_listed_filtered_and_discarded() {
        let Some(db) = Db::fresh().await else { return };
        let sink = MssqlSink::open(&config(db.url.clone()), "ops").await.expect("open ops");
        let other = MssqlSink::open(&config(db.url.clone()), "other").await.expect("open other");
        // `parked_at` is the server's clock (`SYSUTCDATETIME()`), not this process's.
        lists_filters_and_discards(&sink, &other, false).await;
        let remaining = list(&sink, ParkedQuery::default()).await;
        assert!(remaining.iter().all(|e| e.id.parse::<i64>().is_ok()), "the rows' bigint ids: {remaining:?}");
        db.drop_database().await;
    }
}

/// Redis keeps a connector's parked events in a stream of its own (`parked_events:<connector>`),
/// so a record id (the entry's) names an event of one connector only: the shared scenario's
/// checks across connectors do not apply, the rest do.
#[cfg(feature = "redis")]
mod redis_target {
    use projector_gateway::sinks::redis::RedisSink;

    use super::*;
    use crate::support::redis::RedisKeys;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn parked_events_are_listed_filtered_and_discarded() {
        let keys = RedisKeys::fresh("parked");
        let sink = RedisSink::open(&keys.sink_config(), "ops").await.expect("open");
        assert_eq!(list(&sink, ParkedQuery::default()).await, [], "no stream yet");
        assert_eq!(sink.discard_parked(&["1-0".into(), "ops/0/1".into()]).await.expect("discard"), 0);
        park(&sink, &FIRST).await;
        park(&sink, &SECOND).await;

        let all = list(&sink, ParkedQuery::default()).await;
        assert_eq!(positions(&all), [10, 11, 12, 13], "{all:#?}");
        for (listed, parked) in all.iter().zip([FIRST[1], FIRST[0], SECOND[0], SECOND[1]]) {
            assert_parked(listed, parked);
        }
        let by_type = ParkedQuery { event_type: Some("RoomBooked".into()), ..Default::default() };
        assert_eq!(positions(&list(&sink, by_type).await), [10, 12]);
        let by_reason = ParkedQuery { error_contains: Some("(code 11000): {_id:".into()), ..Default::default() };
        assert_eq!(positions(&list(&sink, by_reason).await), [10]);
        assert_eq!(positions(&list(&sink, ParkedQuery { limit: 3, ..Default::default() }).await), [10, 11, 12]);
        let later = ParkedQuery { since: Some(Utc::now() + chrono::Duration::hours(1)), ..Default::default() };
        assert_eq!(list(&sink, later).await, []);
        let one = ParkedQuery { ids: vec![all[2].id.clone()], ..Default::default() };
        assert_eq!(list(&sink, one).await, [all[2].clone()]);

        assert_eq!(sink.discard_parked(&[all[0].id.clone(), all[2].id.clone(), "ops/0/1".into()]).await.expect("discard"), 2);
        assert_eq!(positions(&list(&sink, ParkedQuery::default()).await), [11, 13]);
        let length: i64 = keys.query("XLEN", &[&keys.key("parked_events:ops")]).await;
        assert_eq!(length, 2, "the entries are gone from the stream");
        assert_eq!(sink.count_parked().await.expect("count"), Some(2));
    }
}
