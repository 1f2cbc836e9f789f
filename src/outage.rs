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

/// The state of one dependency as its users saw it last.
#[derive(Debug, Default)]
pub struct Outage {
    /// Fast path for [`Outage::succeeded`], called on every answer.
    down: AtomicBool,
    since: Mutex<Option<(Instant, u64)>>,
}

impl Outage {
    /// Records a failure; true when it starts an outage (report it), false for a repeat.
    pub fn failed(&self) -> bool {
        let mut since = self.since.lock();
        match &mut *since {
            Some((_, repeats)) => {
                *repeats += 1;
                false
            }
            None => {
                *since = Some((Instant::now(), 0));
                self.down.store(true, Ordering::Release);
                true
            }
        }
    }

    /// Records a success of an attempt made at `attempt_started`; when it ends an outage, how
    /// long that lasted and how many failures after the first were not reported.
    pub fn succeeded(&self, attempt_started: Instant) -> Option<(Duration, u64)> {
        if !self.down.load(Ordering::Acquire) {
            return None;
        }
        let mut since = self.since.lock();
        match *since {
            Some((at, repeats)) if at < attempt_started => {
                *since = None;
                self.down.store(false, Ordering::Release);
                Some((at.elapsed(), repeats))
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
        assert!(outage.failed(), "the first failure starts it");
        assert!(!outage.failed() && !outage.failed(), "repeats are not reported");
        assert_eq!(outage.succeeded(before), None, "an attempt made before it began ends nothing");
        let (_, repeats) = outage.succeeded(Instant::now()).expect("the first success of a later attempt ends it");
        assert_eq!(repeats, 2);
        assert_eq!(outage.succeeded(Instant::now()), None, "ended once");
        assert!(outage.failed(), "a new outage is reported again");
    }
}
