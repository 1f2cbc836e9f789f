//! `bookings-reducer`: the example sidecar as a process. Prints `listening on HOST:PORT` once
//! ready (port 0 picks a free one) and stops cleanly on SIGINT/SIGTERM. Exit codes: 0 after a
//! signal, 1 when it cannot listen or serve, 2 for a bad argument or `REDUCER_TARGET`.

use std::process::ExitCode;

use tokio::net::TcpListener;

const USAGE: &str = "usage: bookings-reducer [--address HOST:PORT]   (env REDUCER_TARGET=sql|mongo|elastic, default sql)";

#[tokio::main]
async fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let mut address = "127.0.0.1:50051".to_string();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--address" => match args.next() {
                Some(a) => address = a,
                None => return usage_error("--address needs HOST:PORT"),
            },
            "--help" | "-h" => {
                println!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            other => return usage_error(&format!("unknown argument `{other}`; try --help")),
        }
    }
    let target = match bookings_reducer::Target::parse(&std::env::var("REDUCER_TARGET").unwrap_or_else(|_| "sql".into())) {
        Ok(target) => target,
        Err(message) => return usage_error(&message),
    };
    match serve(&address, target).await {
        Ok(()) => {
            eprintln!("bookings-reducer: stopped");
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("bookings-reducer: {message}");
            ExitCode::FAILURE
        }
    }
}

fn usage_error(message: &str) -> ExitCode {
    eprintln!("bookings-reducer: {message}");
    ExitCode::from(2)
}

async fn serve(address: &str, target: bookings_reducer::Target) -> Result<(), String> {
    let listener = TcpListener::bind(address).await.map_err(|e| format!("cannot listen on {address}: {e}"))?;
    let local = listener.local_addr().map_err(|e| format!("cannot read the listening address: {e}"))?;
    println!("listening on {local}");
    bookings_reducer::serve_target(listener, target, shutdown_signal()).await.map_err(|e| format!("serving failed: {e}"))
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
