//! Exponential backoff with jitter for reconnecting to a sidecar, a database or a log that went
//! away.
//!
//! Why jitter: the partition streams of a connector (and the connectors of a gateway) lose a
//! shared dependency at the same moment; with plain doubling they would all come back at the
//! same instants too, in lockstep, and hit the recovering sidecar or database together each
//! time. Each delay is drawn as "decorrelated jitter" (uniformly between the initial delay and
//! three times the previous one, capped), so streams spread out from the first retry while the
//! delays still grow about as fast as doubling and never leave `[initial, max]`. `backon` was
//! considered: its jitter adds up to one more delay on top of the capped one (so a delay can
//! reach twice the maximum) and its iterators cannot be reset, which every caller here needs.

use std::time::Duration;

use rand::Rng as _;

#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    /// The previous delay (the initial one before the first and after a reset).
    previous: Duration,
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration) -> Self {
        Self { initial, max: max.max(initial), previous: initial }
    }

    /// The delay before the next attempt: random, between the initial delay and three times the
    /// previous one, never above the maximum.
    pub fn next_delay(&mut self) -> Duration {
        let upper = (self.previous * 3).min(self.max);
        let delay = if upper > self.initial { rand::rng().random_range(self.initial..=upper) } else { self.initial };
        self.previous = delay;
        delay
    }

    /// Back to the initial delay after a success.
    pub fn reset(&mut self) {
        self.previous = self.initial;
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Self::new(Duration::from_millis(100), Duration::from_secs(5))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn delays_stay_within_the_bounds_and_reach_the_cap() {
        let mut b = Backoff::new(100 * MS, 350 * MS);
        let delays: Vec<_> = (0..200).map(|_| b.next_delay()).collect();
        assert!(delays.iter().all(|d| (100 * MS..=350 * MS).contains(d)), "{delays:?}");
        assert!(delays[0] <= 300 * MS, "the first delay is at most three times the initial one: {delays:?}");
        assert!(delays.iter().any(|d| *d > 300 * MS), "the delays grow towards the cap: {delays:?}");
        b.reset();
        assert!(b.next_delay() <= 300 * MS, "a reset starts from the initial delay again");
    }

    #[test]
    fn streams_that_fail_together_do_not_retry_together() {
        // Eight partition streams losing the sidecar at the same moment: their delays differ
        // from the first retry on, and their retry times stay apart.
        let mut streams: Vec<Backoff> = (0..8).map(|_| Backoff::default()).collect();
        for attempt in 0..5 {
            let delays: Vec<Duration> = streams.iter_mut().map(Backoff::next_delay).collect();
            assert!(delays.iter().any(|d| *d != delays[0]), "attempt {attempt}: every stream waits {:?}", delays[0]);
        }
    }

    #[test]
    fn a_maximum_below_the_initial_delay_means_the_initial_delay() {
        let mut b = Backoff::new(200 * MS, 100 * MS);
        assert_eq!((0..3).map(|_| b.next_delay()).collect::<Vec<_>>(), [200 * MS; 3]);
    }
}
