//! Scale-out tests (`lease.scope: partitions`), whatever the target: the 16-partition bookings
//! connector shared out among gateway processes, each gateway's holdings read from its status
//! endpoint, waiting for a fair split, and the events of batches applied straight to a fenced
//! sink.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::Command,
    sync::Arc,
    time::Duration,
};

use projector_gateway::{
    event::{ContentType, Event},
    lease::partitions::ClaimStore,
    sinks::{Batch, EventRef, SinkWriter},
};
use serde_json::Value;

use super::{
    fixtures::*,
    http::get,
    processes::{self, Process},
};
use projector_gateway::sources::sqlite::EventLog;

/// How long the gateways get to settle or commit.
pub const WAIT: Duration = Duration::from_secs(120);
/// The partitions of the shared connector.
pub const PARTITIONS: u32 = 16;

/// The bookings connector into `sink_yaml`, its 16 partitions shared out among gateways,
/// calling every sidecar of `sidecars` (URLs), claims living `ttl_ms` (renewed six times in it).
pub fn claimed_config(ws: &Workspace, sidecars: &[String], sink_yaml: &str, ttl_ms: u64) -> PathBuf {
    let setup = Setup { partitions: PARTITIONS, max_ops: 50, ..Setup::default() };
    let yaml = connector_yaml(&ws.log_path(), &sidecars[0], sink_yaml, &setup);
    let addresses = sidecars.iter().map(|a| format!("\"{a}\"")).collect::<Vec<_>>().join(", ");
    let yaml = yaml.replace(&format!("address: \"{}\"", sidecars[0]), &format!("addresses: [{addresses}]"))
        + &format!("    lease: {{ scope: partitions, ttl_ms: {ttl_ms}, renew_every_ms: {} }}\n", ttl_ms / 6);
    let path = ws.path("gateway.yaml");
    std::fs::write(&path, yaml).unwrap();
    path
}

/// The bundled example reducer as its own process, answering with MongoDB operations.
pub fn mongo_example_sidecar(address: &str, dir: &Path) -> Process {
    let mut command = Command::new(processes::gateway_bin());
    command.args(["example-sidecar", "--target", "mongo", "--address", address]);
    Process::spawn(command, dir.join(format!("sidecar-{}.log", address.replace(':', "_"))), true)
}

/// A gateway process and the address of its endpoint.
pub struct Gateway {
    pub name: &'static str,
    pub address: String,
    pub process: Process,
}

/// `projector-gateway run --config <config> --instance-id <name> --listen <free port>`.
pub fn gateway(config: &Path, name: &'static str, dir: &Path) -> Gateway {
    let address = format!("127.0.0.1:{}", processes::free_port());
    let mut command = Command::new(processes::gateway_bin());
    command.args(["run", "--config"]).arg(config).args(["--instance-id", name, "--listen", &address]).env("RUST_LOG", "info");
    Gateway { name, process: Process::spawn(command, dir.join(format!("gateway-{name}.log")), false), address }
}

/// The partitions `gateway` says it holds, once its endpoint answers.
pub fn held(gateway: &Gateway) -> Option<Vec<u32>> {
    let (status, body) = get(&gateway.address, "/connectors/bookings")?;
    let body: Value = serde_json::from_str(&body).ok()?;
    if status != 200 {
        return None;
    }
    Some(body["claims"]["held"].as_array()?.iter().map(|h| h["partition"].as_u64().unwrap() as u32).collect())
}

/// Waits until `members` hold every partition between them, each once, each its fair share
/// (shares differing by at most one), each member seeing exactly these members. Returns who
/// holds what.
pub async fn settled(members: &[&Gateway]) -> Holdings {
    let names: Vec<&str> = members.iter().map(|g| g.name).collect();
    poll_until(&format!("{names:?} to share the {PARTITIONS} partitions fairly"), WAIT, || {
        let mut holdings = BTreeMap::new();
        for gateway in members {
            let (_, body) = get(&gateway.address, "/connectors/bookings")?;
            let body: Value = serde_json::from_str(&body).ok()?;
            let seen: Vec<&str> = body["claims"]["members"].as_array()?.iter().filter_map(Value::as_str).collect();
            if seen != names {
                return None;
            }
            let held = held(gateway)?;
            // Each holds its own fair share (not merely one of the sizes of a fair split, which
            // a hand-over under way passes through).
            if body["claims"]["fair_share"].as_u64()? != held.len() as u64 {
                return None;
            }
            holdings.insert(gateway.name, held);
        }
        let mut all: Vec<u32> = holdings.values().flatten().copied().collect();
        all.sort_unstable();
        let sizes: Vec<usize> = holdings.values().map(Vec::len).collect();
        let fair = sizes.iter().max()? - sizes.iter().min()? <= 1;
        (fair && all == (0..PARTITIONS).collect::<Vec<_>>()).then_some(holdings)
    })
    .await
}

/// Starts gateways a, b and c on `config` and waits until they hold 6, 5 and 5 partitions.
pub async fn three_gateways(config: &Path, dir: &Path) -> ([Gateway; 3], Holdings) {
    let gateways = [gateway(config, "a", dir), gateway(config, "b", dir), gateway(config, "c", dir)];
    let [a, b, c] = &gateways;
    let three = settled(&[a, b, c]).await;
    assert_eq!(three.values().map(Vec::len).collect::<Vec<_>>(), vec![6, 5, 5], "{three:?}");
    (gateways, three)
}

/// Kills `a` (SIGKILL) between two appends to `log` (seeds `seed` and `seed + 1`), waits
/// until `b` and `c` share every partition, and checks that only a's moved. Returns who holds
/// what then.
pub async fn kill_a_while_appending(gateways: &mut [Gateway; 3], three: &Holdings, log: &mut EventLog, seed: u64) -> Holdings {
    let [a, b, c] = gateways;
    append_generated(log, 500, 100, seed);
    a.process.kill_hard();
    append_generated(log, 500, 100, seed + 1);
    let two = settled(&[b, c]).await;
    assert_eq!(moved(three, &two), 6, "only a's partitions move: {three:?} -> {two:?}");
    two
}

/// Who holds which partitions, by gateway name.
pub type Holdings = BTreeMap<&'static str, Vec<u32>>;

/// How many partitions have another holder in `after` than in `before`.
pub fn moved(before: &BTreeMap<&str, Vec<u32>>, after: &BTreeMap<&str, Vec<u32>>) -> usize {
    let holder = |h: &BTreeMap<&str, Vec<u32>>, p: u32| h.iter().find(|(_, ps)| ps.contains(&p)).map(|(n, _)| n.to_string());
    (0..PARTITIONS).filter(|p| holder(before, *p) != holder(after, *p)).count()
}

/// An event at `position` of `partition`, for batches applied straight to a sink.
pub fn event(position: u64, partition: u32) -> EventRef {
    EventRef::new(
        Arc::new(Event {
            position,
            stream: format!("s-{partition}"),
            revision: position - 1,
            event_type: "T".into(),
            event_id: format!("e{position}"),
            data: "{}".into(),
            metadata: None,
            created: chrono::Utc::now(),
            content_type: ContentType::Json,
        }),
        partition,
    )
}

/// The middle of each target's fence test. Gateway `a` holds partitions 0 and 1 of connector
/// `c` and has applied `insert(1, 0)` and `insert(2, 1)` through `writer`; `expire` lets its
/// claim on partition 1 lapse. Then `b` takes partition 1 (epoch 2, the take measuring how
/// long `a` was silent), `a`'s batch `insert(3, 1)` is refused whole and not as transient, and
/// its batch `insert(4, 0)` still commits. The caller checks that the target holds 1, 2 and 4.
pub async fn partition_taken_over_is_fenced_off<W: SinkWriter>(
    writer: &mut W,
    claims: &mut impl ClaimStore,
    expire: impl Future<Output = ()>,
    insert: impl Fn(u64, u32) -> Arc<Batch<W::Op>>,
) {
    expire.await;
    let taken = claims.take("c", "b", &[1], 60_000).await.unwrap();
    assert_eq!((taken[0].partition, taken[0].epoch), (1, 2));
    assert!(taken[0].since_previous_holder_ms.is_some(), "the take measures how long a was silent");

    let refused = writer.apply(insert(3, 1)).await.expect_err("a's batch for partition 1 must be fenced off");
    assert!(refused.message.contains("no longer holds every partition of connector `c` this batch writes for"), "{}", refused.message);
    assert!(!refused.transient, "{refused:?}");
    writer.apply(insert(4, 0)).await.expect("partition 0 is still a's");
}
