//! `bookings-reducer`: the example sidecar as a process. Prints `listening on HOST:PORT` once
//! ready (port 0 picks a free one) and stops cleanly on SIGINT/SIGTERM.

use tokio::net::TcpListener;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let mut address = "127.0.0.1:50051".to_string();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--address" => address = args.next().ok_or("--address needs HOST:PORT")?,
            "--help" | "-h" => {
                println!("usage: bookings-reducer [--address HOST:PORT]   (env REDUCER_TARGET=sql|mongo, default sql)");
                return Ok(());
            }
            other => return Err(format!("unknown argument `{other}`; try --help").into()),
        }
    }
    let target = bookings_reducer::Target::parse(&std::env::var("REDUCER_TARGET").unwrap_or_else(|_| "sql".into()))?;
    let listener = TcpListener::bind(&address).await.map_err(|e| format!("cannot listen on {address}: {e}"))?;
    println!("listening on {}", listener.local_addr()?);
    bookings_reducer::serve_target(listener, target, shutdown_signal()).await?;
    eprintln!("bookings-reducer: stopped");
    Ok(())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
