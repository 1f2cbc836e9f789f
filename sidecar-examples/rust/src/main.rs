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
    // The first signal stops accepting connections and lets open streams end; a gateway keeps
    // its streams open, so a second signal, or the drain time, stops at once (the gateway
    // resends whatever was not answered). The signals are listened to from here on, so a second
    // one sent right after the first is not missed.
    let mut signals = StopSignals::new();
    let signalled = std::sync::Arc::new(tokio::sync::Notify::new());
    let served = bookings_reducer::serve_target(listener, target, {
        let signalled = signalled.clone();
        async move { signalled.notified().await }
    });
    tokio::pin!(served);
    tokio::select! {
        served = &mut served => return served.map_err(|e| format!("serving failed: {e}")),
        () = signals.recv() => {}
    }
    eprintln!("bookings-reducer: stopping: open streams have {DRAIN:?} to end (signal again to stop at once)");
    signalled.notify_one();
    tokio::select! {
        served = served => served.map_err(|e| format!("serving failed: {e}")),
        () = signals.recv() => Ok(()),
        () = tokio::time::sleep(DRAIN) => Ok(()),
    }
}

/// How long open streams may take to end after the first stop signal.
const DRAIN: std::time::Duration = std::time::Duration::from_secs(5);

/// SIGINT and SIGTERM, each received from the moment this is made.
struct StopSignals {
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
}

impl StopSignals {
    fn new() -> Self {
        use tokio::signal::unix::{SignalKind, signal};
        Self {
            interrupt: signal(SignalKind::interrupt()).expect("SIGINT handler"),
            terminate: signal(SignalKind::terminate()).expect("SIGTERM handler"),
        }
    }

    async fn recv(&mut self) {
        tokio::select! {
            _ = self.interrupt.recv() => {}
            _ = self.terminate.recv() => {}
        }
    }
}
