//! Deciding how far a batch of rows read from PostgreSQL may be delivered without ever
//! skipping an event.
//!
//! Global positions come from an identity sequence, which hands out numbers when a row is
//! inserted, not when its transaction commits. Two appenders can therefore commit in the
//! reverse order of their positions: for a while the reader sees position 11 but not 10. If
//! it delivered 11 and moved its checkpoint there, 10 would be lost forever. A missing
//! position is either *pending* (its transaction is still running) or a *hole* (its
//! transaction rolled back, or the sequence skipped it): the reader stops at the first missing
//! position until it can tell which.
//!
//! The proof comes from the snapshot the rows were read in (`pg_current_snapshot()` in the
//! same repeatable-read transaction). A row visible in the snapshot committed before it; the
//! missing position below it was taken even earlier, so its transaction had started before the
//! snapshot too: it was either already finished (then, not being visible, it rolled back: a
//! hole) or listed among the snapshot's in-flight transactions. Hence:
//! - no in-flight transaction in the snapshot: every missing position below the last visible
//!   row is a hole, at once;
//! - otherwise, once every transaction the snapshot lists as in flight has ended, every
//!   position still missing below the last row of that read is a hole;
//! - a transaction can stay open for hours (a forgotten `BEGIN` in a console): after
//!   `gap_timeout_ms` the reader gives up waiting, says so in a warning, and treats the gap as a
//!   hole, like Marten's and other PostgreSQL event stores' "stale gap" rule.
//!
//! This assumes the sequence hands out numbers in time order, which is true of an identity
//! column with the default `CACHE 1` (Eventuous's schema).

use std::time::{Duration, Instant};

use crate::event::Position;

/// A `pg_snapshot` in its text form `xmin:xmax:xip,xip,...`: the transactions in flight
/// when it was taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Snapshot {
    pub in_flight: Vec<i64>,
}

impl Snapshot {
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut parts = text.splitn(3, ':');
        let (Some(_xmin), Some(_xmax), Some(xip)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(format!("unexpected snapshot `{text}`"));
        };
        let in_flight = xip
            .split(',')
            .filter(|x| !x.is_empty())
            .map(|x| x.parse::<i64>().map_err(|_| format!("unexpected transaction id `{x}` in snapshot `{text}`")))
            .collect::<Result<_, _>>()?;
        Ok(Self { in_flight })
    }
}

/// A missing position the reader is waiting on.
#[derive(Debug, Clone)]
pub(super) struct PendingGap {
    /// The first missing position.
    pub at: Position,
    /// The transactions in flight when it was seen; once all have ended, every position still
    /// missing up to `through` is a hole.
    pub in_flight: Vec<i64>,
    /// The last position of the read that saw the gap.
    pub through: Position,
    pub since: Instant,
}

impl PendingGap {
    pub fn timed_out(&self, timeout: Duration) -> bool {
        self.since.elapsed() >= timeout
    }
}

/// Tracks which missing positions are known holes.
#[derive(Debug, Default)]
pub(super) struct GapTracker {
    /// Every position missing at or below this is a hole.
    holes_through: Position,
    pending: Option<PendingGap>,
}

/// How many of the rows of a read may be delivered.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Deliverable {
    pub rows: usize,
}

impl GapTracker {
    pub fn pending(&self) -> Option<&PendingGap> {
        self.pending.as_ref()
    }

    /// The pending gap was proven a hole (its transactions ended, or it timed out).
    pub fn settle_pending(&mut self) -> Option<PendingGap> {
        let gap = self.pending.take()?;
        self.holes_through = self.holes_through.max(gap.through);
        Some(gap)
    }

    /// Given rows read (positions in ascending order) after `after` in `snapshot`, how many
    /// may be delivered. Records a pending gap when the rows stop at one that is not proven.
    pub fn deliverable(&mut self, after: Position, positions: &[Position], snapshot: &Snapshot) -> Deliverable {
        let Some(&last) = positions.last() else {
            return Deliverable { rows: 0 };
        };
        if snapshot.in_flight.is_empty() {
            // Nothing was in flight: whatever is missing below the last visible row is a hole.
            self.holes_through = self.holes_through.max(last);
            return Deliverable { rows: positions.len() };
        }
        let mut expected = after + 1;
        for (i, &position) in positions.iter().enumerate() {
            if position != expected && position - 1 > self.holes_through {
                if self.pending.is_none() {
                    self.pending = Some(PendingGap {
                        at: expected,
                        in_flight: snapshot.in_flight.clone(),
                        through: last,
                        since: Instant::now(),
                    });
                }
                return Deliverable { rows: i };
            }
            expected = position + 1;
        }
        Deliverable { rows: positions.len() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn busy() -> Snapshot {
        Snapshot { in_flight: vec![42] }
    }

    fn idle() -> Snapshot {
        Snapshot { in_flight: vec![] }
    }

    #[test]
    fn snapshots_parse_with_and_without_transactions_in_flight() {
        assert_eq!(Snapshot::parse("10:20:10,14,15").unwrap().in_flight, vec![10, 14, 15]);
        assert_eq!(Snapshot::parse("10:10:").unwrap().in_flight, Vec::<i64>::new());
        assert!(Snapshot::parse("garbage").is_err());
        assert!(Snapshot::parse("1:2:x").is_err());
    }

    #[test]
    fn contiguous_rows_are_delivered_whatever_is_in_flight() {
        let mut gaps = GapTracker::default();
        assert_eq!(gaps.deliverable(10, &[11, 12, 13], &busy()).rows, 3);
        assert!(gaps.pending().is_none());
    }

    #[test]
    fn the_reader_stops_at_a_gap_while_a_transaction_is_in_flight() {
        let mut gaps = GapTracker::default();
        assert_eq!(gaps.deliverable(10, &[11, 13, 14], &busy()).rows, 1);
        let pending = gaps.pending().unwrap();
        assert_eq!((pending.at, pending.through, pending.in_flight.clone()), (12, 14, vec![42]));
        // Still missing on the next read: still held back.
        assert_eq!(gaps.deliverable(11, &[13, 14], &busy()).rows, 0);
        // The gap filled: everything goes.
        assert_eq!(gaps.deliverable(11, &[12, 13, 14], &busy()).rows, 3);
    }

    #[test]
    fn a_gap_at_the_start_is_held_back_too() {
        let mut gaps = GapTracker::default();
        assert_eq!(gaps.deliverable(0, &[2, 3], &busy()).rows, 0);
        assert_eq!(gaps.pending().unwrap().at, 1);
    }

    #[test]
    fn with_nothing_in_flight_missing_positions_are_holes_at_once() {
        let mut gaps = GapTracker::default();
        assert_eq!(gaps.deliverable(10, &[11, 15, 20], &idle()).rows, 3);
        // Later reads may cross those holes even while something is in flight (with nothing in
        // flight, everything missing below 20 was proven, 1..10 included).
        assert_eq!(gaps.deliverable(0, &[11, 15, 20], &busy()).rows, 3);
        assert_eq!(gaps.deliverable(11, &[15, 20, 21], &busy()).rows, 3);
        assert_eq!(gaps.deliverable(21, &[23], &busy()).rows, 0, "22 is above what was proven");
    }

    #[test]
    fn a_settled_gap_becomes_a_hole_up_to_the_read_that_saw_it() {
        let mut gaps = GapTracker::default();
        assert_eq!(gaps.deliverable(10, &[11, 13, 14], &busy()).rows, 1);
        let settled = gaps.settle_pending().unwrap();
        assert_eq!(settled.at, 12);
        assert!(gaps.pending().is_none());
        assert_eq!(gaps.deliverable(11, &[13, 14, 16], &busy()).rows, 2, "15 appeared after the proof");
        assert_eq!(gaps.pending().unwrap().at, 15);
    }
}
