//! PostgreSQL at both ends, with the gateway and the sidecars as the processes users run: an
//! Eventuous event log and the read model in the same server, the gateway killed with SIGKILL
//! mid-run (Rust sidecar), and the Python sidecar catching up and following live appends.

use std::time::Duration;

use crate::support::{
    fixtures::*,
    postgres::{self as pg, Database, EventuousLog},
    processes::{self, SIGTERM},
};

const WAIT: Duration = Duration::from_secs(240);

async fn low_watermark(client: &tokio_postgres::Client, partitions: i32) -> i64 {
    let rows: Vec<_> = pg::checkpoints(client, "bookings").await.into_iter().filter(|r| r.0 == partitions).collect();
    if rows.len() < partitions as usize { 0 } else { rows.iter().map(|r| r.2).min().unwrap_or(0) }
}

/// Polls the target's checkpoints until every partition reached `position`.
async fn wait_for_checkpoint(client: &tokio_postgres::Client, position: i64, what: &str) -> i64 {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let reached = low_watermark(client, 4).await;
        if reached >= position {
            return reached;
        }
        assert!(std::time::Instant::now() < deadline, "timed out waiting for {what} (at {reached} of {position})");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_killed_with_sigkill_resumes_with_exactly_once_effect() {
    let db = Database::fresh("e2e_kill").await;
    let mut log = EventuousLog::create(&db).await;
    log.append_generated(30_000, 3_000, 51).await;
    let ws = Workspace::new();
    let address = format!("127.0.0.1:{}", processes::free_port());
    let _sidecar = processes::example_sidecar(&address, ws.dir.path());
    let setup = Setup { max_ops: 100, ..Setup::default() };
    let config = ws.path("gateway.yaml");
    let yaml = connector_yaml_from(&pg::postgres_source_yaml(&db.url), &format!("http://{address}"), &pg::postgres_sink_yaml(&db.url), &setup);
    std::fs::write(&config, yaml).unwrap();

    let client = db.client().await;
    let mut gateway = processes::gateway_run(&config, ws.dir.path(), "gateway-1");
    wait_for_checkpoint(&client, 1, "a first commit").await;
    gateway.kill_hard();
    let at_kill = low_watermark(&client, 4).await;
    assert!((at_kill as u64) < log.head(), "the gateway was killed after finishing ({at_kill} of {}): the test proves nothing", log.head());

    let mut gateway = processes::gateway_run(&config, ws.dir.path(), "gateway-2");
    wait_for_checkpoint(&client, log.head() as i64, "the restarted gateway to reach the head").await;
    gateway.signal(SIGTERM);
    let status = gateway.wait_exit(Duration::from_secs(30));
    assert!(status.success(), "SIGTERM must stop the gateway cleanly: {status:?}\n{}", gateway.stderr());
    pg::read_model(&client).await.assert_same(&log.reference());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_sidecar_projects_an_eventuous_log_into_postgres_catch_up_then_live() {
    let db = Database::fresh("e2e_python").await;
    let mut log = EventuousLog::create(&db).await;
    log.append_generated(3_000, 300, 52).await;
    let ws = Workspace::new();
    let address = format!("127.0.0.1:{}", processes::free_port());
    let _sidecar = processes::python_sidecar(&address, ws.dir.path());
    let config = ws.path("gateway.yaml");
    let yaml =
        connector_yaml_from(&pg::postgres_source_yaml(&db.url), &format!("http://{address}"), &pg::postgres_sink_yaml(&db.url), &Setup::default());
    std::fs::write(&config, yaml).unwrap();

    let client = db.client().await;
    let mut gateway = processes::gateway_run(&config, ws.dir.path(), "gateway");
    wait_for_checkpoint(&client, log.head() as i64, "catch-up").await;
    pg::read_model(&client).await.assert_same(&log.reference());

    log.append_generated(500, 100, 53).await;
    wait_for_checkpoint(&client, log.head() as i64, "live appends").await;
    gateway.signal(SIGTERM);
    let status = gateway.wait_exit(Duration::from_secs(30));
    assert!(status.success(), "SIGTERM must stop the gateway cleanly: {status:?}\n{}", gateway.stderr());
    pg::read_model(&client).await.assert_same(&log.reference());
}
