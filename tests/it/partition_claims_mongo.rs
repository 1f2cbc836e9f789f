//! Scale-out into MongoDB (SecantusDB, which runs transactions): the partition claims kept in
//! the target's `gateway_claims` and `gateway_members`, and the fence every batch transaction
//! runs first. At the sink: a batch that writes for a partition this gateway no longer holds is
//! refused whole (nothing written, checkpoint unchanged) while its other partitions go on, and
//! a take of a claim a batch transaction has fenced waits for that transaction. On the real
//! binary: three gateways share a 16-partition connector through a SIGKILL and a
//! SIGSTOP/SIGCONT, and the read model ends exactly the reference with every checkpoint at the
//! head.

use std::{collections::BTreeMap, sync::Arc, time::Instant};

use mongodb::bson::{DateTime, doc};
use projector_gateway::{
    lease::{
        Claims, Fence,
        mongo_claims::{self, MongoClaims},
        partitions::ClaimStore,
    },
    sinks::{
        Batch, BatchItem, Sink, SinkWriter,
        mongo::{MongoOp, MongoSink, Write},
    },
};

use crate::support::{
    bookings_model::ReadModel,
    claims::{PARTITIONS, WAIT, claimed_config, event, held, kill_a_while_appending, mongo_example_sidecar, partition_taken_over_is_fenced_off, settled, three_gateways},
    fixtures::*,
    mongo::{MongoDb, Server},
    processes::{self, Process, SIGCONT, SIGSTOP},
};

fn everything(_: &str, _: &str) -> bool {
    true
}

/// Waits until all 16 checkpoints are at `head`.
async fn committed(db: &MongoDb, head: u64) {
    poll_until_async(&format!("every partition to commit position {head}"), WAIT, || async {
        let rows = db.checkpoints("bookings").await;
        let at_head = rows.iter().filter(|((count, _), position)| *count == PARTITIONS as i64 && **position == head as i64).count();
        (at_head == PARTITIONS as usize).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateways_share_partitions_into_mongo_through_a_kill_and_a_pause_and_the_read_model_stays_exact() {
    let db = MongoDb::fresh(Server::Secantus, "claims_chaos").await;
    let ws = Workspace::new();
    let mut log = ws.log_with_events(3_000, 300, 81);
    let sidecar_addresses: Vec<String> = (0..2).map(|_| format!("127.0.0.1:{}", processes::free_port())).collect();
    let sidecars: Vec<Process> = sidecar_addresses.iter().map(|a| mongo_example_sidecar(a, ws.dir.path())).collect();
    let urls: Vec<String> = sidecar_addresses.iter().map(|a| format!("http://{a}")).collect();
    // Claims live 3 s: SecantusDB (a Python server) answers slowly when the machine is busy,
    // and a claim that expires while its holder waits for an answer moves, which is right but
    // not what this test is about.
    let config = claimed_config(&ws, &urls, &db.sink_yaml(""), 3_000);

    let (mut gateways, three) = three_gateways(&config, ws.dir.path()).await;
    committed(&db, log.head().unwrap()).await;

    // a dies (SIGKILL) while events arrive: b and c take its partitions once its claims expire
    // (or, if it died inside a batch transaction, once the server reaps that); only a's move.
    kill_a_while_appending(&mut gateways, &three, &mut log, 82).await;
    committed(&db, log.head().unwrap()).await;
    let [_, b, c] = gateways;

    // b freezes past its claims' lifetime while events arrive; c runs everything meanwhile.
    append_generated(&mut log, 300, 100, 84);
    b.process.signal(SIGSTOP);
    append_generated(&mut log, 700, 100, 85);
    // Events keep arriving until c holds everything: if b froze inside a batch transaction, its
    // claims stay locked until the server reaps that transaction (60 s), and SecantusDB reaps
    // only when other transaction commands arrive (c's batches), as docs/targets/mongodb.md says.
    let mut seed = 1_000;
    poll_until("c to hold every partition", WAIT, || {
        seed += 1;
        append_generated(&mut log, 2, 100, seed);
        held(&c).filter(|h| h.len() == PARTITIONS as usize)
    })
    .await;
    committed(&db, log.head().unwrap()).await;

    // b wakes: its run is stopped (its claims were taken), and it gets its share back.
    b.process.signal(SIGCONT);
    append_generated(&mut log, 500, 100, 86);
    settled(&[&b, &c]).await;
    append_generated(&mut log, 500, 100, 87);
    committed(&db, log.head().unwrap()).await;

    db.read_model().await.assert_same(&ReadModel::from_log(&ws.log_path(), everything));
    let rows = db.checkpoints("bookings").await;
    assert_eq!(rows.len(), PARTITIONS as usize, "{rows:?}");
    assert!(b.process.stderr().contains("were taken over by another gateway"), "{}", b.process.stderr());
    drop((b, c, sidecars));
}

/// A batch of one event at `position` of `partition` (of 2) inserting `{_id: position}`.
fn insert(position: u64, partition: u32) -> Arc<Batch<MongoOp>> {
    let op = MongoOp { collection: None, write: Write::Insert { documents: vec![doc! { "_id": position as i64 }] } };
    Arc::new(Batch::new(vec![BatchItem::Apply { event: event(position, partition), ops: vec![op] }], 2))
}

/// Claims of connector `c` taken by `a` (partitions 0 and 1, epoch 1 each), and a sink fenced
/// with them.
async fn fenced_sink(db: &MongoDb) -> (MongoClaims, MongoSink) {
    let mut claims = MongoClaims::open(db.server.url(), &db.name).await.unwrap();
    let taken = claims.take("c", "a", &[0, 1], 60_000).await.unwrap();
    let epochs: BTreeMap<u32, i64> = taken.iter().map(|t| (t.partition, t.epoch)).collect();
    assert_eq!(epochs, BTreeMap::from([(0, 1), (1, 1)]));
    assert!(claims.take("c", "b", &[0, 1], 60_000).await.unwrap().is_empty(), "held by a");
    let fence = Fence::Claims(Claims { holder: "a".into(), epochs });
    let sink = MongoSink::open_fenced(&db.sink_config(), "c", Some(fence)).await.unwrap();
    assert!(sink.transactional(), "SecantusDB runs transactions");
    (claims, sink)
}

/// `a` stops renewing `partition`: its claim expired (a date long past).
async fn expire(db: &MongoDb, partition: i32) {
    let id = doc! { "connector": "c", "partition": partition };
    let claims = db.db.collection::<mongodb::bson::Document>(mongo_claims::CLAIMS);
    claims.update_one(doc! { "_id": id }, doc! { "$set": { "expires_at": DateTime::from_millis(0) } }).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mongo_batch_for_a_partition_taken_over_is_refused_whole_and_the_others_go_on() {
    let db = MongoDb::fresh(Server::Secantus, "claims_fence").await;
    let (mut claims, sink) = fenced_sink(&db).await;
    let mut writer = sink.open_writer().await.unwrap();
    writer.apply(insert(1, 0)).await.expect("partition 0 is a's");
    writer.apply(insert(2, 1)).await.expect("partition 1 is a's");

    // a stops renewing partition 1; b takes it over; a's batch for it is refused.
    partition_taken_over_is_fenced_off(&mut writer, &mut claims, expire(&db, 1), insert).await;
    let ids: Vec<i64> = db.documents("docs").await.iter().map(|d| d.get_i64("_id").unwrap()).collect();
    assert_eq!(ids, [1, 2, 4], "nothing of the fenced batch was applied");
    let checkpoints = db.checkpoints("c").await;
    assert_eq!(checkpoints, BTreeMap::from([((2, 0), 4), ((2, 1), 2)]), "partition 1's checkpoint stays where a's last commit left it");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_take_of_a_claim_a_batch_transaction_fenced_waits_for_that_transaction() {
    let db = MongoDb::fresh(Server::Secantus, "claims_wait").await;
    let (mut claims, _sink) = fenced_sink(&db).await;
    expire(&db, 1).await;

    // A batch transaction of a, fenced (its claim documents written), still open.
    let client = mongodb::Client::with_uri_str(db.server.url()).await.unwrap();
    let mut session = client.start_session().await.unwrap();
    session.start_transaction().await.unwrap();
    let fence = mongo_claims::fence_command("c", "a", &[(0, 1), (1, 1)]);
    let reply = client.database(&db.name).run_command(fence).session(&mut session).await.unwrap();
    assert_eq!(mongo_claims::matched(&reply), 2);

    // b's take of the expired partition 1 waits for the transaction to end.
    let hold = std::time::Duration::from_millis(800);
    let started = Instant::now();
    let commit = async {
        tokio::time::sleep(hold).await;
        session.commit_transaction().await.unwrap();
        started.elapsed()
    };
    let take = async {
        let taken = claims.take("c", "b", &[1], 60_000).await;
        (taken, started.elapsed())
    };
    let ((taken, took), committed_after) = tokio::join!(take, commit);
    let taken = taken.unwrap();
    assert_eq!(taken.iter().map(|t| (t.partition, t.epoch)).collect::<Vec<_>>(), [(1, 2)]);
    assert!(took >= committed_after, "the take ended ({took:?}) before the transaction committed ({committed_after:?})");
    let fence = db.documents(mongo_claims::FENCES).await.into_iter().find(|d| d.get_document("_id").unwrap().get_i32("partition") == Ok(1));
    assert_eq!(fence.as_ref().map(|d| d.get_i64("fenced_commits")), Some(Ok(1)), "the fenced transaction committed first");
    assert_eq!(fence.map(|d| (d.get_str("holder").map(str::to_owned), d.get_i64("epoch"))), Some((Ok("b".into()), Ok(2))), "then b's take moved the fence");
}
