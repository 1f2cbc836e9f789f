//! Turns SIGINT/SIGTERM into the connectors' stop signals: the first signal asks them to stop
//! reading and drain (finish what was read, commit, exit 0); a second signal, or the drain
//! deadline passing, aborts them at once (what was committed stays consistent).

use std::time::Duration;

use tracing::{info, warn};

use crate::pipeline::ConnectorControl;

/// Spawns the signal watcher for `control`.
pub fn watch_signals(control: ConnectorControl, drain_deadline: Duration) {
    tokio::spawn(async move {
        wait_for_signal().await;
        info!("stopping: finishing the events already read (signal again to stop at once)");
        control.shutdown.cancel();
        tokio::select! {
            _ = wait_for_signal() => warn!("second signal: stopping now"),
            _ = tokio::time::sleep(drain_deadline) => warn!("drain took longer than {drain_deadline:?}: stopping now"),
            _ = control.abort.cancelled() => return,
        }
        control.abort.cancel();
    });
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}
