//! The KurrentDB source benchmark (`bench/run` runs it after the pipeline harness; alone:
//! `cargo bench --bench kurrentdb -- [--events N]`). The KurrentDB test server
//! (`tests/it/support/kurrentdb`, the real gRPC service) holds N bookings events; measured in one
//! run, in this process:
//!
//! - `kurrentdb-raw`: the official `kurrentdb` client alone, subscribed to `$all` from the
//!   start, counting events until the head: the rate the source cannot beat;
//! - `kurrentdb-source`: the gateway's source (`KurrentdbSource`, batches handed on through
//!   its channel) read to the head;
//! - `kurrentdb-e2e`: a whole connector, KurrentDB source -> Rust example reducer over
//!   loopback gRPC -> SQLite target, until every partition's checkpoint reaches the head.
//!
//! Each is timed from a connected client to the head: the client's connection (the `kurrentdb`
//! crate sleeps its 500 ms discovery interval before its first connection to a single node)
//! and the connector's start (SQLite target, sidecar `Describe`) are setup, reported apart,
//! and would otherwise swamp a rate measured over well under a second.
//!
//! Target (issue "KurrentDB source"): e2e >= 0.8 x raw.

// The bench uses only part of the test server.
#[allow(dead_code)]
#[path = "../tests/it/support/kurrentdb/mod.rs"]
mod kurrentdb_server;

use std::time::{Duration, Instant};

use kurrentdb::{Client, ReadAllOptions, StreamPosition, SubscribeToAllOptions, SubscriptionEvent, SubscriptionFilter};
use projector_gateway::{
    config::{self, FilterConfig, KurrentdbSourceConfig, NonJsonEvents},
    demo::BookingsGenerator,
    pipeline::{ConnectorControl, run_connector},
    sources::{EventSource, kurrentdb::KurrentdbSource},
};
use tokio::{net::TcpListener, sync::oneshot};
use tokio_util::sync::CancellationToken;

use kurrentdb_server::TestKurrentDb;

const TARGET: f64 = 0.8;

fn main() -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let args: Vec<String> = std::env::args().collect();
    let events = match args.iter().position(|a| a == "--events") {
        Some(i) => args.get(i + 1).and_then(|n| n.parse().ok()).unwrap_or(100_000),
        None if args.iter().any(|a| a == "--quick") => 200_000,
        None => 500_000,
    };
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?.block_on(run(events))
}

async fn run(count: usize) -> anyhow::Result<()> {
    let server = TestKurrentDb::start().await;
    let mut generator = BookingsGenerator::new(7, count / 10);
    for event in generator.take(count) {
        let data: serde_json::Value = serde_json::from_str(&event.data)?;
        server.append_json(&event.stream, &[(event.event_type.as_str(), data)]);
    }
    let head = server.head();
    let url = server.connection_string();

    let (raw, raw_cores, raw_setup) = raw_client(&url, head).await?;
    let (source, source_cores, source_setup) = gateway_source(&url, head).await?;
    let (e2e, e2e_cores, e2e_setup) = connector(&url, head).await?;

    println!("\nKurrentDB source: {count} events from the test server (in-process, loopback gRPC)\n");
    println!("| scenario | setup s (untimed) | seconds | events/s | x raw | CPU cores | CPU us/event | target |");
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |");
    let rate = |s: f64| count as f64 / s;
    for (name, setup, seconds, cores, target) in [
        ("kurrentdb-raw", raw_setup, raw, raw_cores, ""),
        ("kurrentdb-source", source_setup, source, source_cores, ""),
        ("kurrentdb-e2e", e2e_setup, e2e, e2e_cores, ">= 0.8 x raw"),
    ] {
        let us_per_event = cores * seconds * 1e6 / count as f64;
        println!(
            "| {name} | {setup:.2} | {seconds:.2} | {:.0} | {:.2} | {cores:.2} | {us_per_event:.1} | {target} |",
            rate(seconds),
            raw / seconds
        );
    }
    println!();
    for (name, seconds) in [("kurrentdb-raw", raw), ("kurrentdb-source", source), ("kurrentdb-e2e", e2e)] {
        let ratio = raw / seconds;
        let met = if name == "kurrentdb-e2e" { if ratio >= TARGET { " target=0.8 met=yes" } else { " target=0.8 met=no" } } else { "" };
        println!("bench scenario={name} events={count} seconds={seconds:.3} events_per_s={:.0} ratio_to_raw={ratio:.3}{met}", rate(seconds));
    }
    Ok(())
}

/// Wall seconds, and the CPU cores this process used meanwhile (test server included).
struct Stopwatch {
    started: Instant,
    cpu: f64,
}

impl Stopwatch {
    fn start() -> Self {
        Self { started: Instant::now(), cpu: cpu_seconds() }
    }

    fn seconds_and_cores(&self) -> (f64, f64) {
        let seconds = self.started.elapsed().as_secs_f64();
        (seconds, (cpu_seconds() - self.cpu) / seconds)
    }
}

/// User plus system CPU seconds of this process so far.
fn cpu_seconds() -> f64 {
    const TICKS_PER_SECOND: f64 = 100.0; // USER_HZ on Linux
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            let fields: Vec<&str> = s.rsplit_once(')')?.1.split_whitespace().collect();
            Some((fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?) / TICKS_PER_SECOND)
        })
        .unwrap_or(0.0)
}

/// (seconds, CPU cores, setup seconds) of one scenario.
type Timed = (f64, f64, f64);

const DEADLINE: Duration = Duration::from_secs(600);

/// The client alone: a `$all` subscription (system events filtered on the server, as the
/// source does), every event received and dropped. The client connects with a one-event read
/// first, as the source's probe does.
async fn raw_client(url: &str, head: u64) -> anyhow::Result<Timed> {
    let setup = Instant::now();
    let client = Client::new(url.parse()?).map_err(|e| anyhow::anyhow!("{e}"))?;
    let probe = ReadAllOptions::default().position(StreamPosition::End).backwards().max_count(1);
    client.read_all(&probe).await?.next().await?;
    let setup = setup.elapsed().as_secs_f64();
    let clock = Stopwatch::start();
    let options = SubscribeToAllOptions::default()
        .position(StreamPosition::Start)
        .filter(SubscriptionFilter::on_event_type().exclude_system_events().max(1000));
    tokio::time::timeout(DEADLINE, async {
        let mut subscription = client.subscribe_to_all(&options).await;
        loop {
            if let SubscriptionEvent::EventAppeared(event) = subscription.next_subscription_event().await?
                && event.get_original_event().position.commit >= head
            {
                return anyhow::Ok(());
            }
        }
    })
    .await??;
    let (seconds, cores) = clock.seconds_and_cores();
    Ok((seconds, cores, setup))
}

async fn gateway_source(url: &str, head: u64) -> anyhow::Result<Timed> {
    let config = KurrentdbSourceConfig {
        connection_string: url.into(),
        checkpoint_interval: 1000,
        batch_size: 1000,
        non_json: NonJsonEvents::Pass,
        resolve_links: false,
    };
    let setup = Instant::now();
    let mut source = KurrentdbSource::open(&config, &FilterConfig::default(), 0).await?;
    let setup = setup.elapsed().as_secs_f64();
    let clock = Stopwatch::start();
    tokio::time::timeout(DEADLINE, async {
        while source.next_batch().await?.end < head {}
        anyhow::Ok(())
    })
    .await??;
    let (seconds, cores) = clock.seconds_and_cores();
    Ok((seconds, cores, setup))
}

/// Timed from the connector's start (source connected, target opened, sidecar described):
/// the moment its router subscribes.
async fn connector(url: &str, head: u64) -> anyhow::Result<Timed> {
    let dir = tempfile::tempdir()?;
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let sidecar = format!("http://{}", listener.local_addr()?);
    let stop = CancellationToken::new();
    tokio::spawn(bookings_reducer::serve(listener, stop.clone().cancelled_owned()));
    let yaml = format!(
        "connectors:\n  - id: bench\n    source: {{ kurrentdb: {{ connection_string: \"{url}\" }} }}\n    sidecar: {{ address: \"{sidecar}\" }}\n    partitioning: {{ count: 16 }}\n    sink:\n      sqlite: {{ path: \"{}\", init_sql: \"{}\" }}\n",
        dir.path().join("read.db").display(),
        bookings_reducer::SCHEMA_SQL.replace('\n', " ")
    );
    let connector = config::parse(&yaml).map_err(|p| anyhow::anyhow!("{p:?}"))?.connectors.remove(0);
    let control = ConnectorControl::default();
    let (tx, rx) = oneshot::channel();
    let setup = Instant::now();
    let task = tokio::spawn(run_connector(connector, control.clone(), move |p| {
        let _ = tx.send(p);
    }));
    let mut progress = rx.await?;
    let setup = setup.elapsed().as_secs_f64();
    let clock = Stopwatch::start();
    tokio::time::timeout(DEADLINE, async {
        while progress.borrow_and_update().low_watermark() < head {
            if progress.changed().await.is_err() {
                anyhow::bail!("the connector stopped");
            }
        }
        anyhow::Ok(())
    })
    .await??;
    let (seconds, cores) = clock.seconds_and_cores();
    control.shutdown.cancel();
    task.await??;
    stop.cancel();
    Ok((seconds, cores, setup))
}
