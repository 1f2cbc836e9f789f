//! Turns SIGINT/SIGTERM into the connectors' stop signals: the first signal asks them to stop
//! reading and drain (finish what was read, commit, exit 0); a second signal, or the drain
//! deadline passing, aborts them at once (what was committed stays consistent).

use std::time::Duration;

use tracing::{info, warn};

use crate::pipeline::ConnectorControl;

/// Spawns the signal watcher for `control`.
pub fn watch_signals(control: ConnectorControl, drain_deadline: Duration) {
    tokio::spawn(async move {
        // Listening from now on: a second signal sent right after the first is not missed.
        let mut signals = StopSignals::new();
        signals.recv().await;
        info!("stopping: finishing the events already read (signal again to stop at once)");
        control.shutdown.cancel();
        tokio::select! {
            _ = signals.recv() => warn!("second signal: stopping now"),
            _ = tokio::time::sleep(drain_deadline) => warn!("drain took longer than {drain_deadline:?}: stopping now"),
            _ = control.abort.cancelled() => return,
        }
        control.abort.cancel();
    });
}

/// SIGINT and SIGTERM, each received from the moment this is made.
struct StopSignals {
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
}

impl StopSignals {
    fn new() -> Self {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Self {
                interrupt: signal(SignalKind::interrupt()).expect("SIGINT handler"),
                terminate: signal(SignalKind::terminate()).expect("SIGTERM handler"),
            }
        }
        #[cfg(not(unix))]
        Self {}
    }

    async fn recv(&mut self) {
        #[cfg(unix)]
        tokio::select! {
            _ = self.interrupt.recv() => {}
            _ = self.terminate.recv() => {}
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
    }
}
