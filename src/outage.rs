//! One report per outage of a dependency, not one per partition stream and retry.
//!
//! Every partition of a connector has its own stream to the sidecar, and each retries on its
//! own: a sidecar that is down for a minute would otherwise print a warning per partition per
//! backoff step. An [`Outage`] is shared by the partitions of one connector: the first failure
//! starts the outage and is reported at WARN, the repeats go to DEBUG, and the first success
//! of an attempt made after it began (a stream opened, a batch tried) ends the outage with one
//! INFO line saying how long it lasted. An answer still in flight on a stream opened before
//! the outage proves nothing: when a sidecar dies, its last answers and its streams' failures
//! arrive in the same milliseconds.

use std::{
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use parking_lot::Mutex;
use prometheus_client::metrics::counter::Counter;

/// What a connector depends on and can wait for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dependency {
    Sidecar,
    Target,
    Source,
}

impl Dependency {
    pub fn name(self) -> &'static str {
        match self {
            Self::Sidecar => "sidecar",
            Self::Target => "target",
            Self::Source => "source",
        }
    }
}

/// The state of one dependency as its users saw it last.
#[derive(Debug, Default)]
pub struct Outage {
    /// Fast path for [`Outage::succeeded`], called on every answer.
    down: AtomicBool,
    since: Mutex<Option<Down>>,
    /// Every failure ever recorded (`/metrics`).
    failures: Counter,
    /// The latest failure, ended or not, and when (`/connectors`' `last_error`).
    last: Mutex<Option<(chrono::DateTime<chrono::Utc>, String)>>,
}

#[derive(Debug)]
struct Down {
    at: Instant,
    repeats: u64,
    /// The latest failure's message.
    reason: String,
}

/// An outage in progress, as operators see it.
#[derive(Debug, Clone, PartialEq)]
pub struct Ongoing {
    pub lasted: Duration,
    pub reason: String,
}

impl Outage {
    /// Records a failure and why; true when it starts an outage (report it), false for a repeat.
    pub fn failed(&self, reason: impl std::fmt::Display) -> bool {
        self.failures.inc();
        *self.last.lock() = Some((chrono::Utc::now(), reason.to_string()));
        let mut since = self.since.lock();
        match &mut *since {
            Some(down) => {
                down.repeats += 1;
                down.reason = reason.to_string();
                false
            }
            None => {
                *since = Some(Down { at: Instant::now(), repeats: 0, reason: reason.to_string() });
                self.down.store(true, Ordering::Release);
                true
            }
        }
    }

    /// The outage in progress, if any: how long it has lasted and its latest reason.
    pub fn ongoing(&self) -> Option<Ongoing> {
        if !self.down.load(Ordering::Acquire) {
            return None;
        }
        self.since.lock().as_ref().map(|down| Ongoing { lasted: down.at.elapsed(), reason: down.reason.clone() })
    }

    /// The latest failure recorded, ended or not: when, and its message.
    pub fn last_failure(&self) -> Option<(chrono::DateTime<chrono::Utc>, String)> {
        self.last.lock().clone()
    }

    /// How many failures were recorded, outages and repeats together.
    pub fn failures(&self) -> &Counter {
        &self.failures
    }

    /// Records a success of an attempt made at `attempt_started`; when it ends an outage, how
    /// long that lasted and how many failures after the first were not reported.
    pub fn succeeded(&self, attempt_started: Instant) -> Option<(Duration, u64)> {
        if !self.down.load(Ordering::Acquire) {
            return None;
        }
        let mut since = self.since.lock();
        match &*since {
            Some(down) if down.at < attempt_started => {
                let ended = (down.at.elapsed(), down.repeats);
                *since = None;
                self.down.store(false, Ordering::Release);
                Some(ended)
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_outage_is_reported_once_and_its_end_once() {
        let outage = Outage::default();
        let before = Instant::now();
        assert_eq!(outage.succeeded(before), None, "no outage yet");
        assert_eq!(outage.ongoing(), None);
        assert!(outage.failed("refused"), "the first failure starts it");
        assert!(!outage.failed("refused") && !outage.failed("reset by peer"), "repeats are not reported");
        assert_eq!(outage.ongoing().map(|o| o.reason), Some("reset by peer".to_owned()), "the latest reason");
        assert_eq!(outage.failures().get(), 3);
        assert_eq!(outage.succeeded(before), None, "an attempt made before it began ends nothing");
        let (_, repeats) = outage.succeeded(Instant::now()).expect("the first success of a later attempt ends it");
        assert_eq!(repeats, 2);
        assert_eq!(outage.succeeded(Instant::now()), None, "ended once");
        assert_eq!(outage.ongoing(), None);
        assert!(outage.failed("refused"), "a new outage is reported again");
    }
}
