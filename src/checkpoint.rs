//! Where a connector resumes, and which events it must not apply again.
//!
//! Each partition stores, in the target and in the same transaction as its operations, the
//! position up to which every one of its events has been applied or deliberately skipped.
//! Rows are keyed by (connector, partition count, partition), so a change of partition count
//! leaves the old scheme's rows in place as a record of what was applied under it. On start:
//! - reading resumes from the lowest position that could still hold an unapplied event;
//! - an event is skipped when any scheme (current or earlier) has it at or below its
//!   partition's stored position.
//!
//! That makes the effect exactly once on transactional targets, whatever the partition count
//! did between runs.

use crate::{config::PartitionKey, event::Position, partition::partition_of};

/// One stored checkpoint row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckpointRow {
    pub partition_count: u32,
    pub partition: u32,
    pub position: Position,
}

/// Positions of one partition scheme, indexed by partition.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Scheme {
    count: u32,
    positions: Vec<Option<Position>>,
}

impl Scheme {
    fn new(count: u32, rows: &[CheckpointRow]) -> Self {
        let mut positions = vec![None; count as usize];
        for row in rows.iter().filter(|r| r.partition_count == count && r.partition < count) {
            positions[row.partition as usize] = Some(row.position);
        }
        Self { count, positions }
    }
}

/// The resume decision for one connector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResumePlan {
    key: PartitionKey,
    current: Scheme,
    earlier: Vec<Scheme>,
    start: Position,
    /// Where a partition of the current scheme without a row starts.
    fallback: Position,
}

impl ResumePlan {
    /// Builds the plan from every stored row of the connector and the configured partitioning.
    pub fn new(rows: &[CheckpointRow], key: PartitionKey, partition_count: u32) -> Self {
        let current = Scheme::new(partition_count, rows);
        let mut counts: Vec<u32> =
            rows.iter().map(|r| r.partition_count).filter(|c| *c != partition_count).collect();
        counts.sort_unstable();
        counts.dedup();
        let earlier: Vec<Scheme> = counts.into_iter().map(|c| Scheme::new(c, rows)).collect();

        let lowest_earlier = earlier
            .iter()
            .flat_map(|s| s.positions.iter().map(|p| p.unwrap_or(0)))
            .min();
        // A partition of the current scheme without a row has applied nothing under it; what
        // it may still have to apply starts after the lowest earlier position (or at the very
        // beginning when there is no earlier scheme).
        let fallback = lowest_earlier.unwrap_or(0);
        let start = current.positions.iter().map(|p| p.unwrap_or(fallback)).min().unwrap_or(0);
        Self { key, current, earlier, start, fallback }
    }

    /// The plan of a run of only `partitions` (the ones this gateway holds): reading resumes
    /// from the lowest of their positions.
    pub fn only(mut self, partitions: &[u32]) -> Self {
        let positions = partitions.iter().filter_map(|p| self.current.positions.get(*p as usize));
        self.start = positions.map(|p| p.unwrap_or(self.fallback)).min().unwrap_or(self.start);
        self
    }

    /// Reading resumes after this position.
    pub fn start(&self) -> Position {
        self.start
    }

    /// True when the partition count changed since rows were last written.
    pub fn partition_count_changed(&self) -> bool {
        !self.earlier.is_empty()
    }

    /// Stored position of a partition under the current scheme, if any.
    pub fn position_of(&self, partition: u32) -> Option<Position> {
        self.current.positions.get(partition as usize).copied().flatten()
    }

    /// True when the event at `position` in `stream` (current partition `partition`) was
    /// already applied under the current or an earlier scheme.
    pub fn already_applied(&self, position: Position, stream: &str, partition: u32) -> bool {
        if self.position_of(partition).is_some_and(|p| position <= p) {
            return true;
        }
        self.earlier.iter().any(|s| {
            let q = partition_of(self.key, stream, s.count);
            s.positions[q as usize].is_some_and(|p| position <= p)
        })
    }

    /// Partition counts whose rows are no longer needed: every current partition has moved
    /// past everything they recorded.
    pub fn obsolete_counts(&self) -> Vec<u32> {
        let Some(lowest_current) = self.current.positions.iter().copied().collect::<Option<Vec<_>>>()
            .and_then(|v| v.into_iter().min())
        else {
            return Vec::new();
        };
        self.earlier
            .iter()
            .filter(|s| s.positions.iter().all(|p| p.unwrap_or(0) <= lowest_current))
            .map(|s| s.count)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(partition_count: u32, partition: u32, position: Position) -> CheckpointRow {
        CheckpointRow { partition_count, partition, position }
    }

    #[test]
    fn a_run_of_some_partitions_starts_at_the_lowest_of_theirs() {
        let rows = [
            CheckpointRow { partition_count: 4, partition: 0, position: 10 },
            CheckpointRow { partition_count: 4, partition: 1, position: 50 },
            CheckpointRow { partition_count: 4, partition: 2, position: 30 },
        ];
        let plan = ResumePlan::new(&rows, PartitionKey::Stream, 4);
        assert_eq!(plan.start(), 0, "partition 3 has no row");
        assert_eq!(plan.clone().only(&[1, 2]).start(), 30);
        assert_eq!(plan.clone().only(&[1]).start(), 50);
        assert_eq!(plan.only(&[1, 3]).start(), 0);
    }

    #[test]
    fn starts_from_the_beginning_without_rows() {
        let plan = ResumePlan::new(&[], PartitionKey::Stream, 4);
        assert_eq!(plan.start(), 0);
        assert!(!plan.already_applied(1, "s", 0));
    }

    #[test]
    fn resumes_from_the_lowest_partition_and_skips_per_partition() {
        let rows = [row(2, 0, 10), row(2, 1, 20)];
        let plan = ResumePlan::new(&rows, PartitionKey::Stream, 2);
        assert_eq!(plan.start(), 10);
        assert!(plan.already_applied(15, "x", 1));
        assert!(!plan.already_applied(15, "x", 0));
        assert!(!plan.already_applied(21, "x", 1));
    }

    #[test]
    fn a_missing_partition_row_means_nothing_applied_there() {
        let plan = ResumePlan::new(&[row(2, 1, 20)], PartitionKey::Stream, 2);
        assert_eq!(plan.start(), 0);
    }

    #[test]
    fn a_changed_partition_count_keeps_the_old_scheme_as_skip_rule() {
        // Under 2 partitions, partition 0 applied up to 10 and partition 1 up to 20.
        let rows = [row(2, 0, 10), row(2, 1, 20)];
        let plan = ResumePlan::new(&rows, PartitionKey::Stream, 3);
        assert!(plan.partition_count_changed());
        assert_eq!(plan.start(), 10);
        let stream_in_old_1 = (0..100)
            .map(|i| format!("s{i}"))
            .find(|s| partition_of(PartitionKey::Stream, s, 2) == 1)
            .unwrap();
        let p = partition_of(PartitionKey::Stream, &stream_in_old_1, 3);
        assert!(plan.already_applied(15, &stream_in_old_1, p));
        assert!(!plan.already_applied(21, &stream_in_old_1, p));
        // Rows under the new count take over once they pass everything the old ones recorded.
        let mut rows = rows.to_vec();
        rows.extend([row(3, 0, 25), row(3, 1, 30), row(3, 2, 20)]);
        let plan = ResumePlan::new(&rows, PartitionKey::Stream, 3);
        assert_eq!(plan.start(), 20);
        assert_eq!(plan.obsolete_counts(), [2]);
    }
}
