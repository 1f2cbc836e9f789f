//! Scale-out on the real binary: several gateways share one 16-partition connector through
//! partition claims in its PostgreSQL target (`lease.scope: partitions`), calling several
//! sidecar replicas, while the harness kills one gateway with SIGKILL, freezes another with
//! SIGSTOP and thaws it, starts a fourth and kills a sidecar. The shares stay fair (holdings
//! differ by at most one once membership settles), a joining member moves at most its share,
//! and at the end the read model is exactly the reference computed from the log with every
//! checkpoint at the head. At the sink: a batch that writes for a partition this gateway no
//! longer holds is refused whole (the per-partition fence).

use std::{collections::BTreeMap, path::Path, sync::Arc};

use projector_gateway::{
    config::SinkConfig,
    lease::{Claims, Fence, partitions::ClaimStore, postgres_claims::PgClaims},
    sinks::{Batch, BatchItem, Sink, SinkWriter, postgres::PostgresSink, sql::SqlOp},
};

use crate::support::{
    bookings_model::ReadModel,
    claims::{PARTITIONS, WAIT, claimed_config, event, gateway, held, kill_a_while_appending, moved, partition_taken_over_is_fenced_off, settled, three_gateways},
    fixtures::*,
    http::get,
    postgres::{self as pg, Database},
    processes::{self, Process, SIGCONT, SIGSTOP},
};

fn everything(_: &str, _: &str) -> bool {
    true
}

/// Waits until all 16 checkpoints are at `head`.
async fn committed(db: &Database, head: u64) {
    let client = db.client().await;
    poll_until_async(&format!("every partition to commit position {head}"), WAIT, || async {
        let rows = pg::checkpoints(&client, "bookings").await;
        (rows.len() == PARTITIONS as usize && rows.iter().all(|r| r.2 as u64 == head)).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateways_share_partitions_through_kills_pauses_and_joins_and_the_read_model_stays_exact() {
    let db = Database::fresh("claims_chaos").await;
    let ws = Workspace::new();
    let mut log = ws.log_with_events(3_000, 300, 71);
    let sidecar_addresses: Vec<String> = (0..3).map(|_| format!("127.0.0.1:{}", processes::free_port())).collect();
    let mut sidecars: Vec<Process> = sidecar_addresses.iter().map(|a| processes::example_sidecar(a, ws.dir.path())).collect();
    let urls: Vec<String> = sidecar_addresses.iter().map(|a| format!("http://{a}")).collect();
    let config = claimed_config(&ws, &urls, &pg::postgres_sink_yaml(&db.url), 3_000);

    let (mut gateways, three) = three_gateways(&config, ws.dir.path()).await;
    committed(&db, log.head().unwrap()).await;
    let metrics = get(&gateways[1].address, "/metrics").unwrap().1;
    for line in ["projector_gateway_partitions_held{connector=\"bookings\"} 5", "projector_gateway_claim_members{connector=\"bookings\"} 3"] {
        assert!(metrics.lines().any(|l| l == line), "{line} not in\n{metrics}");
    }

    // a dies while events arrive: b and c take its partitions once its claims expire; only
    // a's move.
    kill_a_while_appending(&mut gateways, &three, &mut log, 170).await;
    committed(&db, log.head().unwrap()).await;
    let [_, b, c] = gateways;

    // b freezes past its claims' lifetime; c runs everything meanwhile, through a sidecar
    // being killed and started again.
    b.process.signal(SIGSTOP);
    append_generated(&mut log, 1_000, 150, 73);
    poll_until("c to hold every partition", WAIT, || held(&c).filter(|h| h.len() == PARTITIONS as usize)).await;
    sidecars[0].kill_hard();
    append_generated(&mut log, 500, 100, 74);
    committed(&db, log.head().unwrap()).await;
    sidecars[0] = processes::example_sidecar(&sidecar_addresses[0], ws.dir.path());

    // b wakes: its run is stopped (its claims were taken), and it gets its share back.
    b.process.signal(SIGCONT);
    let thawed = settled(&[&b, &c]).await;
    append_generated(&mut log, 500, 100, 75);
    committed(&db, log.head().unwrap()).await;

    // d joins: it takes its share, and nothing else moves.
    let d = gateway(&config, "d", ws.dir.path());
    let joined = settled(&[&b, &c, &d]).await;
    assert!(moved(&thawed, &joined) <= PARTITIONS.div_ceil(3) as usize, "{thawed:?} -> {joined:?}");
    assert_eq!(joined["d"].len(), moved(&thawed, &joined), "only d gained: {thawed:?} -> {joined:?}");
    append_generated(&mut log, 1_000, 150, 76);
    committed(&db, log.head().unwrap()).await;

    pg::read_model(&db.client().await).await.assert_same(&ReadModel::from_log(&ws.log_path(), everything));
    assert!(b.process.stderr().contains("were taken over by another gateway"), "{}", b.process.stderr());
    // Every takeover after a death or a hand-back is measured.
    let metrics = get(&c.address, "/metrics").unwrap().1;
    let handovers = metrics.lines().find(|l| l.starts_with("projector_gateway_partition_handover_seconds_count{")).unwrap_or_default();
    assert!(handovers.rsplit(' ').next().and_then(|n| n.parse::<u64>().ok()).is_some_and(|n| n >= 3), "{handovers}");
    drop((b, c, d, sidecars));
}

fn insert(position: u64, partition: u32) -> Arc<Batch<SqlOp>> {
    let op = SqlOp::Raw(format!("INSERT INTO fenced VALUES ({position})"));
    Arc::new(Batch::new(vec![BatchItem::Apply { event: event(position, partition), ops: vec![op] }], 2))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_for_a_partition_taken_over_is_refused_whole_and_the_others_go_on() {
    let db = Database::fresh("claims_fence").await;
    let sink_yaml = format!(
        "      postgres:\n        url: \"{}\"\n        init_sql: \"CREATE TABLE IF NOT EXISTS fenced (n int PRIMARY KEY)\"\n",
        db.url
    );
    let yaml = connector_yaml(Path::new("unused.db"), "http://127.0.0.1:1", &sink_yaml, &Setup::default());
    let SinkConfig::Postgres(sink_config) = parse_connector(&yaml).sink else { unreachable!() };
    let mut claims = PgClaims::open(&db.url, "public").await.unwrap();
    let taken = claims.take("c", "a", &[0, 1], 60_000).await.unwrap();
    let epochs: BTreeMap<u32, i64> = taken.iter().map(|t| (t.partition, t.epoch)).collect();
    assert_eq!(epochs, BTreeMap::from([(0, 1), (1, 1)]));
    assert!(claims.take("c", "b", &[0, 1], 60_000).await.unwrap().is_empty(), "held by a");

    let fence = Fence::Claims(Claims { holder: "a".into(), epochs });
    let sink = PostgresSink::open(&sink_config, "c", Some(fence)).await.unwrap();
    let mut writer = sink.open_writer().await.unwrap();
    writer.apply(insert(1, 0)).await.expect("partition 0 is a's");
    writer.apply(insert(2, 1)).await.expect("partition 1 is a's");

    // a stops renewing partition 1; b takes it over; a's batch for it is refused.
    let client = db.client().await;
    let expire = async {
        client.execute("UPDATE gateway_claims SET expires_at = now() - interval '1 second' WHERE partition = 1", &[]).await.unwrap();
    };
    partition_taken_over_is_fenced_off(&mut writer, &mut claims, expire, insert).await;
    let rows: Vec<i32> = client.query("SELECT n FROM fenced ORDER BY n", &[]).await.unwrap().iter().map(|r| r.get(0)).collect();
    assert_eq!(rows, [1, 2, 4], "nothing of the fenced batch was applied");
    let checkpoints = pg::checkpoints(&client, "c").await;
    assert_eq!(checkpoints, [(2, 0, 4), (2, 1, 2)], "partition 1's checkpoint stays where a's last commit left it");
}
