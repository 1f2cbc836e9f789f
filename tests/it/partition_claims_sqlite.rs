//! Scale-out on one machine: several gateway processes share a 16-partition connector whose
//! target is one SQLite file, the claims kept in that file (`lease.scope: partitions`). At the
//! sink: a batch that writes for a partition this gateway no longer holds is refused whole
//! while its other partitions go on. On the real binary: three gateways through a SIGKILL and
//! a SIGSTOP/SIGCONT, and the read model ends exactly the reference with every checkpoint at
//! the head.

use std::{collections::BTreeMap, path::Path, sync::Arc};

use projector_gateway::{
    config::SinkConfig,
    lease::{Claims, partitions::ClaimStore, sqlite_claims::SqliteClaims},
    sinks::{Batch, BatchItem, Sink, SinkWriter, sql::SqlOp, sqlite::SqliteSink},
};

use crate::support::{
    bookings_model::ReadModel,
    claims::{PARTITIONS, WAIT, claimed_config, event, held, kill_a_while_appending, partition_taken_over_is_fenced_off, settled, three_gateways},
    fixtures::*,
    processes::{self, Process, SIGCONT, SIGSTOP},
};

fn everything(_: &str, _: &str) -> bool {
    true
}

/// Waits until all 16 checkpoints in `target` are at `head`.
async fn committed(target: &Path, head: u64) {
    poll_until(&format!("every partition to commit position {head}"), WAIT, || {
        let rows = sqlite_checkpoints(target, "bookings");
        (rows.len() == PARTITIONS as usize && rows.iter().all(|(_, _, position)| *position == head)).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_processes_share_partitions_of_one_sqlite_file_through_a_kill_and_a_pause() {
    let ws = Workspace::new();
    let target = ws.target_path();
    let mut log = ws.log_with_events(3_000, 300, 91);
    let sidecar_addresses: Vec<String> = (0..2).map(|_| format!("127.0.0.1:{}", processes::free_port())).collect();
    let sidecars: Vec<Process> = sidecar_addresses.iter().map(|a| processes::example_sidecar(a, ws.dir.path())).collect();
    let urls: Vec<String> = sidecar_addresses.iter().map(|a| format!("http://{a}")).collect();
    let config = claimed_config(&ws, &urls, &sqlite_sink_yaml(&target), 3_000);

    let (mut gateways, three) = three_gateways(&config, ws.dir.path()).await;
    committed(&target, log.head().unwrap()).await;

    // a dies (SIGKILL) while events arrive: b and c take its partitions once its claims
    // expire, and only a's move.
    kill_a_while_appending(&mut gateways, &three, &mut log, 92).await;
    committed(&target, log.head().unwrap()).await;
    let [_, b, c] = gateways;

    // b freezes past its claims' lifetime while events arrive; c runs everything meanwhile.
    append_generated(&mut log, 300, 100, 94);
    b.process.signal(SIGSTOP);
    append_generated(&mut log, 700, 100, 95);
    poll_until("c to hold every partition", WAIT, || held(&c).filter(|h| h.len() == PARTITIONS as usize)).await;
    committed(&target, log.head().unwrap()).await;

    // b wakes: its run is stopped (its claims were taken), and it gets its share back.
    b.process.signal(SIGCONT);
    append_generated(&mut log, 500, 100, 96);
    settled(&[&b, &c]).await;
    append_generated(&mut log, 500, 100, 97);
    committed(&target, log.head().unwrap()).await;

    ReadModel::from_sqlite(&target).assert_same(&ReadModel::from_log(&ws.log_path(), everything));
    assert_eq!(sqlite_checkpoints(&target, "bookings").len(), PARTITIONS as usize);
    assert!(b.process.stderr().contains("were taken over by another gateway"), "{}", b.process.stderr());
    drop((b, c, sidecars));
}

fn insert(position: u64, partition: u32) -> Arc<Batch<SqlOp>> {
    let op = SqlOp::Raw(format!("INSERT INTO fenced VALUES ({position})"));
    Arc::new(Batch::new(vec![BatchItem::Apply { event: event(position, partition), ops: vec![op] }], 2))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sqlite_batch_for_a_partition_taken_over_is_refused_whole_and_the_others_go_on() {
    let ws = Workspace::new();
    let target = ws.target_path();
    let sink_yaml = format!(
        "      sqlite:\n        path: \"{}\"\n        allow_raw_sql: true\n        init_sql: \"CREATE TABLE IF NOT EXISTS fenced (n INTEGER PRIMARY KEY)\"\n",
        target.display()
    );
    let yaml = connector_yaml(Path::new("unused.db"), "http://127.0.0.1:1", &sink_yaml, &Setup::default());
    let SinkConfig::Sqlite(sink_config) = parse_connector(&yaml).sink else { unreachable!() };
    let mut claims = SqliteClaims::open(&target).await.unwrap();
    let taken = claims.take("c", "a", &[0, 1], 60_000).await.unwrap();
    let epochs: BTreeMap<u32, i64> = taken.iter().map(|t| (t.partition, t.epoch)).collect();
    assert_eq!(epochs, BTreeMap::from([(0, 1), (1, 1)]));
    assert!(claims.take("c", "b", &[0, 1], 60_000).await.unwrap().is_empty(), "held by a");

    let sink = SqliteSink::open_fenced(&sink_config, "c", Some(Claims { holder: "a".into(), epochs })).await.unwrap();
    let mut writer = sink.open_writer().await.unwrap();
    writer.apply(insert(1, 0)).await.expect("partition 0 is a's");
    writer.apply(insert(2, 1)).await.expect("partition 1 is a's");

    // a stops renewing partition 1; b takes it over; a's batch for it is refused.
    let expire = async {
        let conn = rusqlite::Connection::open(&target).unwrap();
        conn.execute(r#"UPDATE gateway_claims SET expires_at = 0 WHERE "partition" = 1"#, []).unwrap();
    };
    partition_taken_over_is_fenced_off(&mut writer, &mut claims, expire, insert).await;
    let conn = rusqlite::Connection::open(&target).unwrap();
    let rows: Vec<i64> = conn.prepare("SELECT n FROM fenced ORDER BY n").unwrap().query_map([], |r| r.get(0)).unwrap().map(Result::unwrap).collect();
    assert_eq!(rows, [1, 2, 4], "nothing of the fenced batch was applied");
    assert_eq!(sqlite_checkpoints(&target, "c"), [(2, 0, 4), (2, 1, 2)], "partition 1's checkpoint stays where a's last commit left it");
}
