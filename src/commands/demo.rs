//! `demo`: the whole product on one machine with nothing installed. Writes sample bookings
//! events to an embedded SQLite event log, starts the example Rust reducer in-process (over a
//! real loopback gRPC connection) unless `--sidecar` names another one, projects everything into
//! a SQLite read model with a progress bar, follows live appends for a few seconds, and prints
//! a summary and a query to look at the result.

use std::{
    path::{Path, PathBuf},
    process::ExitCode,
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use clap::Args;
use indicatif::ProgressBar;
use projector_gateway::{
    config,
    demo::BookingsGenerator,
    pipeline::{ConnectorControl, Progress, ProgressReceiver, run_connector},
    shutdown::watch_signals,
    sources::sqlite::EventLog,
};
use tokio::{net::TcpListener, sync::oneshot};
use tokio_util::sync::CancellationToken;

use super::progress::{bar_style, count, per_second, rate};

#[derive(Args, Debug, Clone)]
pub struct DemoArgs {
    /// Folder for the event log, the read model and a config file to reuse.
    #[arg(long, default_value = "demo-data")]
    dir: PathBuf,
    /// Sample events to write before projecting.
    #[arg(long, default_value_t = 200_000)]
    events: usize,
    /// Booking streams to spread them over.
    #[arg(long, default_value_t = 20_000)]
    streams: usize,
    #[arg(long, default_value_t = 8)]
    partitions: u32,
    /// How long to follow live appends after catching up.
    #[arg(long, default_value_t = 5)]
    live_seconds: u64,
    /// Live events appended per second.
    #[arg(long, default_value_t = 500)]
    live_rate: u64,
    /// Use this sidecar (e.g. `http://127.0.0.1:50051`) instead of the built-in Rust example.
    #[arg(long)]
    sidecar: Option<String>,
    /// Keep an existing event log and read model instead of starting over.
    #[arg(long)]
    keep: bool,
}

pub async fn demo(args: DemoArgs) -> anyhow::Result<ExitCode> {
    let log_path = args.dir.join("events.db");
    let target_path = args.dir.join("readmodel.db");
    if !args.keep {
        for file in [&log_path, &target_path] {
            for suffix in ["", "-wal", "-shm"] {
                let f = PathBuf::from(format!("{}{suffix}", file.display()));
                if f.exists() {
                    std::fs::remove_file(&f).with_context(|| format!("removing {}", f.display()))?;
                }
            }
        }
    }
    std::fs::create_dir_all(&args.dir).with_context(|| format!("creating {}", args.dir.display()))?;

    let mut log = EventLog::open(&log_path)?;
    if log.head()? == 0 {
        let bar = bar(args.events as u64, "writing sample events");
        super::append::write_sample_events(&mut log, args.events, args.streams, 42, |n| bar.set_position(n as u64))?;
        bar.finish_and_clear();
    }
    let head = log.head()?;
    println!("event log   {} ({head} events)", log_path.display());

    let sidecar_stop = CancellationToken::new();
    let address = match &args.sidecar {
        Some(address) => address.clone(),
        None => {
            let listener = TcpListener::bind("127.0.0.1:0").await.context("starting the example sidecar")?;
            let address = format!("http://{}", listener.local_addr()?);
            let stop = sidecar_stop.clone();
            tokio::spawn(bookings_reducer::serve(listener, stop.cancelled_owned()));
            address
        }
    };
    println!("sidecar     {address}{}", if args.sidecar.is_none() { " (built-in Rust example, sidecar-examples/rust)" } else { "" });
    println!("read model  {}", target_path.display());

    let config_path = args.dir.join("gateway.yaml");
    let yaml = demo_config(&config_path, &address, args.sidecar.is_none(), args.partitions);
    std::fs::write(&config_path, &yaml).with_context(|| format!("writing {}", config_path.display()))?;
    // The file just written, as `run --config` reads it (its paths are the config's neighbours).
    let connector = config::load_file(&config_path)
        .map_err(|e| anyhow::anyhow!("demo config is invalid: {e}"))?
        .connectors
        .remove(0);

    let control = ConnectorControl::default();
    watch_signals(control.clone(), Duration::from_secs(30));
    let (progress_tx, progress_rx) = oneshot::channel();
    let started = Instant::now();
    let running = tokio::spawn(run_connector(connector, control.clone(), move |rx| {
        let _ = progress_tx.send(rx);
    }));
    let Ok(mut progress) = progress_rx.await else {
        return Err(running.await?.err().map(anyhow::Error::from).unwrap_or_else(|| anyhow::anyhow!("connector did not start")));
    };

    // Catch-up.
    let bar = bar(head, "projecting");
    let caught_up = wait_for(&mut progress, head, &control, |p| bar.set_position(p.low_watermark())).await;
    bar.finish_and_clear();
    if !caught_up {
        return finish(running, control, sidecar_stop).await.map(|_| ExitCode::FAILURE);
    }
    let catch_up = started.elapsed();
    let snapshot = progress.borrow().clone();
    println!(
        "caught up   {} events, {} operations in {:.2}s: {} events/s",
        count(head),
        count(snapshot.ops_applied),
        catch_up.as_secs_f64(),
        rate(per_second(head, catch_up))
    );
    if snapshot.ops_applied == 0 && head > 0 {
        println!("note        {}", no_operations(&log_path, &address, &snapshot).await);
    }

    // Live.
    let latencies = follow_live(&args, &mut log, &mut progress, &control).await?;
    if !latencies.is_empty() {
        println!(
            "live        {} events appended at {}/s: append -> applied p50 {:.1} ms, p99 {:.1} ms",
            count(latencies.len() as u64),
            count(args.live_rate),
            percentile(&latencies, 0.50),
            percentile(&latencies, 0.99)
        );
    }

    let final_progress = progress.borrow().clone();
    finish(running, control, sidecar_stop).await?;
    let sidecar = if args.sidecar.is_some() { Sidecar::Own(&address) } else { Sidecar::BuiltIn(&address) };
    summary(&target_path, &config_path, &final_progress, sidecar)?;
    Ok(ExitCode::SUCCESS)
}

/// Serves the bundled example reducer for `target` (`--target` or `REDUCER_TARGET`: `sql`,
/// `mongo` or `elastic`) until SIGINT/SIGTERM. The first signal stops accepting connections
/// and lets open streams end; a gateway keeps its streams open, so a second signal, or 5 s,
/// stops at once (exit 0 either way: the gateway resends what was not answered).
pub async fn example_sidecar(address: &str, target: bookings_reducer::Target) -> anyhow::Result<ExitCode> {
    let listener = TcpListener::bind(address).await.with_context(|| format!("listening on {address}"))?;
    println!("listening on {}", listener.local_addr()?);
    let control = ConnectorControl::default();
    watch_signals(control.clone(), Duration::from_secs(5));
    tokio::select! {
        served = bookings_reducer::serve_target(listener, target, control.shutdown.cancelled_owned()) => served?,
        _ = control.abort.cancelled() => {}
    }
    Ok(ExitCode::SUCCESS)
}

/// Why the demo applied no operation: `Describe` narrowed the events to types the log does not
/// hold, or the sidecar answered everything with `Ignore`.
async fn no_operations(log: &Path, address: &str, progress: &Progress) -> String {
    if progress.events_applied > 0 {
        return format!(
            "0 operations: the sidecar at {address} answered all {} event(s) it was sent without an operation (projection.Ignore)",
            count(progress.events_applied)
        );
    }
    let in_log = log_event_types(log).unwrap_or_default();
    let sidecar = serde_json::from_value::<config::SidecarConfig>(serde_json::json!({ "address": address }));
    let described = match sidecar.ok().and_then(|s| projector_gateway::reducer::channel(&s).ok()) {
        Some(channel) => projector_gateway::reducer::describe_once(channel, "demo-bookings", address).await.ok(),
        None => None,
    };
    match described {
        Some(projector_gateway::reducer::Described::Yes(d)) if !d.event_types.is_empty() => format!(
            "0 operations: no event reached the sidecar. Its Describe says it handles {}, and the demo's log holds only {},              so every event was filtered out before it was sent; make Describe list the types your reducer handles (or none: every event)",
            d.event_types.join(", "),
            in_log.join(", ")
        ),
        _ => format!("0 operations: no event reached the sidecar at {address}; every event of the log ({}) was filtered out", in_log.join(", ")),
    }
}

/// The event types of the demo's log.
fn log_event_types(log: &Path) -> rusqlite::Result<Vec<String>> {
    let conn = rusqlite::Connection::open(log)?;
    let mut stmt = conn.prepare("SELECT DISTINCT event_type FROM events ORDER BY event_type")?;
    stmt.query_map([], |r| r.get(0))?.collect()
}

/// The config file the demo writes beside its event log and read model, which it names by
/// their file names (a config's relative paths are read from its directory).
fn demo_config(config: &Path, address: &str, built_in: bool, partitions: u32) -> String {
    let schema: String = bookings_reducer::SCHEMA_SQL.lines().map(|l| format!("          {l}\n")).collect();
    let sidecar = if built_in {
        format!(
            "# (`projector-gateway example-sidecar --address {}`: the built-in one, on the\n\
             # address below)",
            address.trim_start_matches("http://")
        )
    } else {
        format!("# (the one at {address}, below)")
    };
    format!(
        "# Written by `projector-gateway demo`. To run it yourself: start a sidecar\n\
         {sidecar}, then `projector-gateway run --config {config}`.\n\
         connectors:\n\
         \x20 - id: demo-bookings\n\
         \x20   source:\n\
         \x20     sqlite: {{ path: \"{log}\" }}\n\
         \x20   sidecar:\n\
         \x20     address: \"{address}\"\n\
         \x20   partitioning: {{ count: {partitions} }}\n\
         \x20   sink:\n\
         \x20     sqlite:\n\
         \x20       path: \"{target}\"\n\
         \x20       init_sql: |\n{schema}",
        config = config.display(),
        log = "events.db",
        target = "readmodel.db",
    )
}

/// Waits until every partition has passed `position`; false if the connector stopped first.
async fn wait_for(
    progress: &mut ProgressReceiver,
    position: u64,
    control: &ConnectorControl,
    mut on_change: impl FnMut(&Progress),
) -> bool {
    loop {
        {
            let p = progress.borrow_and_update();
            on_change(&p);
            if p.low_watermark() >= position {
                return true;
            }
        }
        tokio::select! {
            changed = progress.changed() => if changed.is_err() { return false },
            _ = control.shutdown.cancelled() => return false,
        }
    }
}

/// Appends events at the configured rate and measures append -> applied latency of each.
async fn follow_live(
    args: &DemoArgs,
    log: &mut EventLog,
    progress: &mut ProgressReceiver,
    control: &ConnectorControl,
) -> anyhow::Result<Vec<f64>> {
    if args.live_seconds == 0 || args.live_rate == 0 {
        return Ok(Vec::new());
    }
    let spinner = ProgressBar::new_spinner().with_message("following live appends");
    spinner.enable_steady_tick(Duration::from_millis(100));
    let mut generator = BookingsGenerator::new(4242, args.streams / 10 + 1);
    let interval = Duration::from_secs_f64(1.0 / args.live_rate as f64);
    let end = Instant::now() + Duration::from_secs(args.live_seconds);
    let mut latencies = Vec::new();
    let mut next = tokio::time::Instant::now();
    while Instant::now() < end && !control.shutdown.is_cancelled() {
        tokio::time::sleep_until(next).await;
        next += interval;
        let mut event = generator.next_event();
        // Keep live streams apart from the catch-up ones.
        event.stream = format!("live-{}", event.stream);
        let appended = Instant::now();
        let position = log.append(std::slice::from_ref(&event))?[0];
        let timeout = tokio::time::timeout(Duration::from_secs(10), wait_for(progress, position, control, |_| {}));
        if !timeout.await.unwrap_or(false) {
            bail!("event at position {position} was not applied within 10 s");
        }
        latencies.push(appended.elapsed().as_secs_f64() * 1000.0);
        spinner.set_message(format!("following live appends: {} applied", latencies.len()));
    }
    spinner.finish_and_clear();
    Ok(latencies)
}

async fn finish(
    running: tokio::task::JoinHandle<Result<(), projector_gateway::pipeline::ConnectorError>>,
    control: ConnectorControl,
    sidecar_stop: CancellationToken,
) -> anyhow::Result<()> {
    control.shutdown.cancel();
    let result = running.await.context("connector task")?;
    sidecar_stop.cancel();
    result.map_err(anyhow::Error::from)
}

/// The sidecar the demo ran with.
enum Sidecar<'a> {
    /// The built-in example, served by the demo on this address.
    BuiltIn(&'a str),
    /// The one `--sidecar` named.
    Own(&'a str),
}

fn summary(target: &Path, config: &Path, progress: &Progress, sidecar: Sidecar<'_>) -> anyhow::Result<()> {
    println!(
        "checkpoint  position {} in every one of {} partitions ({} transactions)",
        progress.low_watermark(),
        progress.positions.len(),
        progress.batches
    );
    const QUERY: &str = "SELECT status, count(*) AS bookings, sum(paid_cents) / 100.0 AS paid FROM bookings GROUP BY status ORDER BY bookings DESC";
    let conn = rusqlite::Connection::open(target)?;
    let mut stmt = conn.prepare(QUERY)?;
    let rows = stmt
        .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?, r.get::<_, f64>(2)?)))?
        .collect::<Result<Vec<_>, _>>()?;
    println!("\nread model: {QUERY};");
    println!("  {:<12} {:>9} {:>14}", "status", "bookings", "paid");
    for (status, count, paid) in rows {
        println!("  {status:<12} {count:>9} {paid:>14.2}");
    }
    println!("\nlook yourself:   sqlite3 {} \"{QUERY}\"", target.display());
    match sidecar {
        Sidecar::Own(address) => {
            println!("run it again:    projector-gateway run --config {}   (with the sidecar at {address} running)", config.display())
        }
        Sidecar::BuiltIn(address) => {
            println!("run it again:    projector-gateway example-sidecar --address {}   (the built-in sidecar, on the address in the config)", address.trim_start_matches("http://"));
            println!("                 projector-gateway run --config {}", config.display());
        }
    }
    Ok(())
}

fn bar(len: u64, message: &'static str) -> ProgressBar {
    ProgressBar::new(len).with_message(message).with_style(bar_style("{msg:>22} [{bar:40}] {pos}/{len} ({per_sec}, eta {eta})"))
}

fn percentile(values: &[f64], q: f64) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}
