//! High availability on the real binary: two gateways run the same leased connector (SQLite
//! log, the example sidecar, a PostgreSQL target holding the lease). One runs it, the other
//! stands by; when the holder is killed or paused, the standby takes over, and the read model
//! stays exactly the reference (nothing lost, nothing applied twice). A holder that wakes up
//! after being replaced stands by, and its commits are fenced off: shown at the sink, where a
//! batch under a lost lease is refused whole.

use std::{path::Path, process::Command, sync::Arc, time::Duration};

use projector_gateway::{
    config::SinkConfig,
    lease::{Fence, Tenure, postgres::PgLeases},
    sinks::{Batch, BatchItem, Sink, SinkWriter, postgres::PostgresSink, sql::SqlOp},
    sources::sqlite::EventLog,
};
use serde_json::Value;
use crate::support::{
    bookings_model::ReadModel,
    claims::event,
    fixtures::*,
    http::get,
    postgres::{self as pg, Database},
    processes::{self, Process, SIGCONT, SIGSTOP},
};

const WAIT: Duration = Duration::from_secs(120);

fn everything(_: &str, _: &str) -> bool {
    true
}

/// The bookings connector from the SQLite log to `db`, under a short lease.
fn leased_config(ws: &Workspace, sidecar: &str, db: &Database) -> std::path::PathBuf {
    let yaml = connector_yaml(&ws.log_path(), sidecar, &pg::postgres_sink_yaml(&db.url), &Setup { max_ops: 50, ..Setup::default() })
        + "    lease: { ttl_ms: 1500, renew_every_ms: 250 }\n";
    let path = ws.path("gateway.yaml");
    std::fs::write(&path, yaml).unwrap();
    path
}

/// Gateway `instance` on `address` running `config`.
fn gateway(config: &Path, instance: &str, address: &str, dir: &Path) -> Process {
    let mut command = Command::new(processes::gateway_bin());
    command
        .args(["run", "--config"])
        .arg(config)
        .args(["--instance-id", instance, "--listen", address])
        .env("RUST_LOG", "info");
    Process::spawn(command, dir.join(format!("gateway-{instance}.log")), false)
}

/// Waits until `GET /connectors/bookings` on `address` shows `state`; returns the status.
async fn state_becomes(address: &str, state: &str) -> Value {
    poll_until(&format!("connector bookings on {address} to be {state}"), WAIT, || {
        let (status, body) = get(address, "/connectors/bookings")?;
        let body: Value = serde_json::from_str(&body).ok()?;
        (status == 200 && body["state"] == state).then_some(body)
    })
    .await
}

async fn committed(db: &Database, head: u64) {
    let client = db.client().await;
    poll_until_async(&format!("the target to commit position {head}"), WAIT, || async {
        let rows = pg::checkpoints(&client, "bookings").await;
        (rows.len() == 4 && rows.iter().all(|r| r.2 as u64 == head)).then_some(())
    })
    .await;
}

async fn lease_row(db: &Database) -> (String, i64) {
    let row = db.client().await.query_one("SELECT holder, epoch FROM public.gateway_leases WHERE connector = 'bookings'", &[]).await.unwrap();
    (row.get(0), row.get(1))
}

/// Two gateways on the same leased connector over a fresh log and database: `a` runs it, `b`
/// stands by (as its status says), and `a` has committed the log.
struct Pair {
    db: Database,
    ws: Workspace,
    log: EventLog,
    _sidecar: Process,
    a: Process,
    a_address: String,
    b: Process,
    b_address: String,
    /// `b`'s status once it stood by.
    standby: Value,
}

async fn pair(hint: &str, seed: u64) -> Pair {
    let db = Database::fresh(hint).await;
    let ws = Workspace::new();
    let log = ws.log_with_events(2_000, 200, seed);
    let sidecar = processes::example_sidecar(&format!("127.0.0.1:{}", processes::free_port()), ws.dir.path());
    let config = leased_config(&ws, sidecar.address.as_deref().unwrap(), &db);
    let (a_address, b_address) = (format!("127.0.0.1:{}", processes::free_port()), format!("127.0.0.1:{}", processes::free_port()));
    let a = gateway(&config, "a", &a_address, ws.dir.path());
    state_becomes(&a_address, "running").await;
    let b = gateway(&config, "b", &b_address, ws.dir.path());
    let standby = state_becomes(&b_address, "standby").await;
    committed(&db, log.head().unwrap()).await;
    Pair { db, ws, log, _sidecar: sidecar, a, a_address, b, b_address, standby }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_takes_over_from_a_killed_holder_and_the_read_model_stays_exact() {
    let Pair { db, ws, mut log, _sidecar, mut a, b, b_address, standby, .. } = pair("ha_kill", 61).await;
    assert!(standby["standby"].as_str().unwrap().contains("gateway `a` holds the lease"), "{standby}");
    // A standby gateway is ready (it can take over), so a rolling deployment proceeds.
    assert_eq!(get(&b_address, "/ready").unwrap().0, 200);
    let metrics = get(&b_address, "/metrics").unwrap().1;
    for line in ["projector_gateway_connector_up{connector=\"bookings\"} 0", "projector_gateway_connector_standby{connector=\"bookings\"} 1"] {
        assert!(metrics.lines().any(|l| l == line), "{line} not in\n{metrics}");
    }
    assert_eq!(lease_row(&db).await, ("a".into(), 1));

    a.kill_hard();
    append_generated(&mut log, 1_000, 150, 62);
    state_becomes(&b_address, "running").await;
    committed(&db, log.head().unwrap()).await;
    pg::read_model(&db.client().await).await.assert_same(&ReadModel::from_log(&ws.log_path(), everything));
    assert_eq!(lease_row(&db).await, ("b".into(), 2));
    let metrics = get(&b_address, "/metrics").unwrap().1;
    assert!(metrics.lines().any(|l| l == "projector_gateway_connector_standby{connector=\"bookings\"} 0"), "{metrics}");
    drop(b);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_holder_is_replaced_and_stands_by_when_it_wakes() {
    let Pair { db, ws, mut log, _sidecar, a, a_address, b, b_address, .. } = pair("ha_pause", 63).await;

    // A freezes (a long GC pause, a frozen VM) while events keep coming.
    a.signal(SIGSTOP);
    append_generated(&mut log, 1_000, 150, 64);
    state_becomes(&b_address, "running").await;
    committed(&db, log.head().unwrap()).await;
    a.signal(SIGCONT);
    let woken = state_becomes(&a_address, "standby").await;
    assert!(woken["standby"].as_str().unwrap().contains("gateway `b` holds the lease") || woken["standby"] == "another gateway took the lease over", "{woken}");
    append_generated(&mut log, 500, 100, 65);
    committed(&db, log.head().unwrap()).await;
    pg::read_model(&db.client().await).await.assert_same(&ReadModel::from_log(&ws.log_path(), everything));
    assert!(a.stderr().contains("another gateway took the lease over"), "{}", a.stderr());
    assert_eq!(lease_row(&db).await, ("b".into(), 2));
    drop((a, b));
}

fn insert(position: u64) -> Arc<Batch<SqlOp>> {
    let op = SqlOp::Raw(format!("INSERT INTO fenced VALUES ({position})"));
    Arc::new(Batch::new(vec![BatchItem::Apply { event: event(position, 0), ops: vec![op] }], 1))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_under_a_lost_lease_is_refused_whole() {
    let db = Database::fresh("ha_fence").await;
    let yaml = connector_yaml(Path::new("unused.db"), "http://127.0.0.1:1", &format!("      postgres:\n        url: \"{}\"\n        init_sql: \"CREATE TABLE IF NOT EXISTS fenced (n int PRIMARY KEY)\"\n", db.url), &Setup::default());
    let SinkConfig::Postgres(sink_config) = parse_connector(&yaml).sink else { unreachable!() };
    let mut leases = PgLeases::open(&db.url, "public").await.unwrap();
    let tenure = leases.try_acquire("c", "a", 60_000).await.unwrap().expect("a free lease");
    assert_eq!(tenure, Tenure { holder: "a".into(), epoch: 1 });
    assert_eq!(leases.try_acquire("c", "b", 60_000).await.unwrap(), None, "held by a");

    let sink = PostgresSink::open(&sink_config, "c", Some(Fence::Lease(tenure.clone()))).await.unwrap();
    let mut writer = sink.open_writer().await.unwrap();
    writer.apply(insert(1)).await.expect("applied under the lease");

    // The lease expires while `a` is away, and `b` takes it over.
    let client = db.client().await;
    client.execute("UPDATE gateway_leases SET expires_at = now() - interval '1 second'", &[]).await.unwrap();
    let taken = leases.try_acquire("c", "b", 60_000).await.unwrap().expect("an expired lease");
    assert_eq!(taken.epoch, 2);
    assert!(!leases.renew("c", &tenure, 60_000).await.unwrap(), "a's renewal must fail");

    let refused = writer.apply(insert(2)).await.expect_err("a's batch must be fenced off");
    assert!(refused.message.contains("no longer holds the lease of connector `c` (epoch 1)"), "{}", refused.message);
    assert!(!refused.transient, "{refused:?}");
    let rows: Vec<i32> = client.query("SELECT n FROM fenced ORDER BY n", &[]).await.unwrap().iter().map(|r| r.get(0)).collect();
    assert_eq!(rows, [1], "nothing of the fenced batch was applied");
    let checkpoints = pg::checkpoints(&client, "c").await;
    assert_eq!(checkpoints, [(1, 0, 1)], "the checkpoint stays where a's last commit left it");
}
