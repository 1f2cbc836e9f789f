//! Killing things mid-run: the gateway process with SIGKILL, and the sidecar process. After a
//! restart the read model equals the one computed straight from the log, and the guest
//! counters prove nothing was applied twice.

use std::time::Duration;

use crate::support::{
    bookings_model::ReadModel,
    fixtures::*,
    processes::{self, SIGTERM},
};

const WAIT: Duration = Duration::from_secs(180);

fn everything(_: &str, _: &str) -> bool {
    true
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_killed_with_sigkill_resumes_with_exactly_once_effect() {
    let ws = Workspace::new();
    let head = ws.log_with_events(60_000, 5_000, 21).head().unwrap();
    let port = processes::free_port();
    let sidecar = processes::example_sidecar(&format!("127.0.0.1:{port}"), ws.dir.path());
    let address = sidecar.address.clone().unwrap();
    let setup = Setup { max_ops: 100, ..Setup::default() };
    let config = ws.path("gateway.yaml");
    std::fs::write(&config, connector_yaml(&ws.log_path(), &address, &sqlite_sink_yaml(&ws.target_path()), &setup)).unwrap();

    let mut gateway = processes::gateway_run(&config, ws.dir.path(), "gateway-1");
    let target = ws.target_path();
    poll_until("a first commit", WAIT, || (sqlite_low_watermark(&target, "bookings", 4) > 0).then_some(())).await;
    gateway.kill_hard();
    let at_kill = sqlite_low_watermark(&target, "bookings", 4);
    assert!(at_kill < head, "the gateway was killed after finishing ({at_kill} of {head}): the test proves nothing");

    let mut gateway = processes::gateway_run(&config, ws.dir.path(), "gateway-2");
    poll_until("the restarted gateway to reach the head", WAIT, || {
        (sqlite_low_watermark(&target, "bookings", 4) >= head).then_some(())
    })
    .await;
    gateway.signal(SIGTERM);
    let status = gateway.wait_exit(Duration::from_secs(30));
    assert!(status.success(), "SIGTERM must stop the gateway cleanly: {status:?}\n{}", gateway.stderr());
    ReadModel::from_sqlite(&target).assert_same(&ReadModel::from_log(&ws.log_path(), everything));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sidecar_killed_and_restarted_mid_run_loses_and_repeats_nothing() {
    let ws = Workspace::new();
    let head = ws.log_with_events(60_000, 5_000, 22).head().unwrap();
    let address = format!("127.0.0.1:{}", processes::free_port());
    let mut sidecar = processes::example_sidecar(&address, ws.dir.path());
    let config = parse_connector(&connector_yaml(
        &ws.log_path(),
        &format!("http://{address}"),
        &sqlite_sink_yaml(&ws.target_path()),
        &Setup { max_ops: 100, ..Setup::default() },
    ));
    let mut running = Running::start(config).await;
    poll_until("some progress", WAIT, || (running.progress.borrow().low_watermark() > 0).then_some(())).await;
    sidecar.kill_hard();
    let at_kill = running.progress.borrow().low_watermark();
    assert!(at_kill < head, "the sidecar was killed after the end ({at_kill} of {head})");

    let _restarted = processes::example_sidecar(&address, ws.dir.path());
    running.wait_for(head, WAIT).await;
    running.stop().await.expect("clean stop");
    ReadModel::from_sqlite(&ws.target_path()).assert_same(&ReadModel::from_log(&ws.log_path(), everything));
}
