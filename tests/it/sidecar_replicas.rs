//! Several sidecar replicas behind one connector (`sidecar.addresses`), on the real binary and
//! real sidecar processes: the partitions spread over every replica, one rolled (SIGTERM, then
//! a new one on its address) costs no event and no WARN or ERROR line, its partitions move to
//! the others and come back, and the read model equals the reference with every partition's
//! checkpoint at the head. Which endpoint each partition takes, and how endpoints added or
//! removed by DNS move only their share, is unit-tested in `src/reducer/endpoints.rs`.

use std::{path::Path, process::Command, time::Duration};

use crate::support::{
    bookings_model::ReadModel,
    fixtures::*,
    http::get,
    processes::{self, Process, SIGTERM},
};

const WAIT: Duration = Duration::from_secs(120);
const PARTITIONS: u32 = 16;

fn everything(_: &str, _: &str) -> bool {
    true
}

/// `run --config <config> --listen <address>`, logging at info into `gateway.log`.
fn gateway(config: &Path, address: &str, dir: &Path) -> Process {
    let mut command = Command::new(processes::gateway_bin());
    command.args(["run", "--quiet", "--config"]).arg(config).args(["--listen", address]).env("RUST_LOG", "info");
    Process::spawn(command, dir.join("gateway.log"), false)
}

/// The partition streams open on each of `sidecars`, as `/metrics` tells them.
fn streams_per_endpoint(listen: &str, sidecars: &[String]) -> Option<Vec<u64>> {
    let (_, text) = get(listen, "/metrics")?;
    sidecars
        .iter()
        .map(|endpoint| {
            let series = format!("projector_gateway_sidecar_endpoint_streams{{connector=\"bookings\",endpoint=\"{endpoint}\"}} ");
            text.lines().find_map(|line| line.strip_prefix(series.as_str())?.parse().ok())
        })
        .collect()
}

/// Waits until every partition's stream is open, spread as `wanted` accepts it.
async fn wait_for_streams(what: &str, listen: &str, sidecars: &[String], wanted: impl Fn(&[u64]) -> bool) -> Vec<u64> {
    poll_until(what, WAIT, || {
        streams_per_endpoint(listen, sidecars).filter(|counts| counts.iter().sum::<u64>() == u64::from(PARTITIONS) && wanted(counts))
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitions_spread_over_the_replicas_and_a_rolled_one_costs_no_event_and_no_warning() {
    let ws = Workspace::new();
    let mut log = ws.log_with_events(4_000, 400, 61);
    let addresses: Vec<String> = (0..3).map(|_| format!("127.0.0.1:{}", processes::free_port())).collect();
    let mut sidecars: Vec<Process> = addresses.iter().map(|a| processes::example_sidecar(a, ws.dir.path())).collect();
    let endpoints: Vec<String> = addresses.iter().map(|a| format!("http://{a}")).collect();

    let setup = Setup { partitions: PARTITIONS, ..Setup::default() };
    let yaml = connector_yaml(&ws.log_path(), &endpoints[0], &sqlite_sink_yaml(&ws.target_path()), &setup);
    let listed = endpoints.iter().map(|e| format!("\"{e}\"")).collect::<Vec<_>>().join(", ");
    let yaml = yaml.replace(&format!("address: \"{}\"", endpoints[0]), &format!("addresses: [{listed}]\n      resolve_every_secs: 1"));
    assert!(yaml.contains("addresses: ["), "{yaml}");
    let config = ws.path("gateway.yaml");
    std::fs::write(&config, yaml).unwrap();
    let listen = format!("127.0.0.1:{}", processes::free_port());
    let mut gateway = gateway(&config, &listen, ws.dir.path());

    // Caught up, with every replica holding some of the partitions.
    let head = log.head().unwrap();
    poll_until("the connector to apply the log", WAIT, || (sqlite_low_watermark(&ws.target_path(), "bookings", PARTITIONS) == head).then_some(())).await;
    let spread = wait_for_streams("every replica to hold partition streams", &listen, &endpoints, |c| c.iter().all(|n| *n > 0)).await;

    // Replica 1 is rolled while events keep coming: SIGTERM (it stops taking connections, its
    // streams end), then a new replica on its address.
    append_generated(&mut log, 3_000, 300, 62);
    sidecars[1].signal(SIGTERM);
    let exit = sidecars[1].wait_exit(Duration::from_secs(30));
    assert!(exit.success(), "the replica stops cleanly: {exit:?}\n{}", sidecars[1].stderr());
    let moved = wait_for_streams("the rolled replica's partitions to move to the others", &listen, &endpoints, |c| c[1] == 0).await;
    assert!(moved[0] >= spread[0] && moved[2] >= spread[2], "only the rolled replica's partitions moved: {spread:?} -> {moved:?}");
    append_generated(&mut log, 1_000, 100, 63);
    let head = log.head().unwrap();
    poll_until("the connector to apply the appends on the other replicas", WAIT, || {
        (sqlite_low_watermark(&ws.target_path(), "bookings", PARTITIONS) == head).then_some(())
    })
    .await;

    sidecars[1] = processes::example_sidecar(&addresses[1], ws.dir.path());
    wait_for_streams("every partition to come back to its own replica", &listen, &endpoints, |c| c == spread.as_slice()).await;
    append_generated(&mut log, 1_000, 100, 64);
    let head = log.head().unwrap();
    poll_until("the connector to apply the appends on every replica", WAIT, || {
        (sqlite_low_watermark(&ws.target_path(), "bookings", PARTITIONS) == head).then_some(())
    })
    .await;

    gateway.signal(SIGTERM);
    assert!(gateway.wait_exit(Duration::from_secs(30)).success(), "{}", gateway.stderr());
    ReadModel::from_sqlite(&ws.target_path()).assert_same(&ReadModel::from_log(&ws.log_path(), everything));
    let rows = sqlite_checkpoints(&ws.target_path(), "bookings");
    assert_eq!(rows.len(), PARTITIONS as usize, "{rows:?}");
    assert!(rows.iter().all(|r| r.0 == PARTITIONS && r.2 == head), "every partition's checkpoint at the head {head}: {rows:?}");

    // The roll, on the operator's screen: one line when the replica went, one when it was back.
    let text = std::fs::read_to_string(ws.dir.path().join("gateway.log")).unwrap();
    for level in [" WARN ", " ERROR "] {
        assert!(!text.contains(level), "no{level}line for a rolled replica:\n{text}");
    }
    let went = format!("sidecar endpoint {} stopped answering", endpoints[1]);
    assert_eq!(text.matches(&went).count(), 1, "one line when the replica went:\n{text}");
    let came = format!("sidecar endpoint {} answers again", endpoints[1]);
    assert_eq!(text.matches(&came).count(), 1, "one line when it was back:\n{text}");
    assert!(!text.contains("the sidecar ended the stream"), "no line per partition:\n{text}");
}
