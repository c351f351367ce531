//! Consumer group lag, computed from offsets the brokers report. Pure functions: the
//! ConsumerGroup reconciler feeds them one batched observation of the cluster.

use std::collections::BTreeMap;

use crate::api::{Isolation, PartitionLag};

/// Most partitions listed in a ConsumerGroup's status; the rest count in the totals only.
pub const TOP_PARTITIONS: usize = 20;

/// The offsets of one partition as the brokers report them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PartitionOffsets {
    /// First offset still in the log.
    pub log_start: i64,
    /// High watermark.
    pub log_end: i64,
    /// Last stable offset (the high watermark when no transaction is open).
    pub last_stable: i64,
}

/// Lag of a group over its partitions: the top partitions by lag, the total, how many were left
/// out of the list.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GroupLag {
    /// The `top` partitions by lag (what status shows).
    pub partitions: Vec<PartitionLag>,
    /// Every partition (what metrics export).
    pub all: Vec<PartitionLag>,
    pub total: i64,
    pub omitted: i32,
}

/// The lag of one partition: what a consumer of this isolation can read beyond the committed
/// offset (or beyond the log start when nothing is committed, as `auto.offset.reset=earliest`
/// would read). Never negative, and saturating: offsets are the brokers' to report, and one
/// reported as -1 (unknown) beside one near `i64::MAX` must not overflow.
pub fn partition_lag(
    offsets: &PartitionOffsets,
    committed: Option<i64>,
    isolation: Isolation,
) -> i64 {
    let end = match isolation {
        Isolation::ReadCommitted => offsets.last_stable,
        Isolation::ReadUncommitted => offsets.log_end,
    };
    let position = committed
        .unwrap_or(offsets.log_start)
        .max(offsets.log_start);
    end.saturating_sub(position).max(0)
}

/// Lag over every partition in `offsets` (keyed by topic and partition), bounded to `top`
/// entries sorted by lag (largest first, then by name).
pub fn group_lag(
    offsets: &BTreeMap<(String, i32), PartitionOffsets>,
    committed: &BTreeMap<(String, i32), i64>,
    isolation: Isolation,
    top: usize,
) -> GroupLag {
    let mut all: Vec<PartitionLag> = offsets
        .iter()
        .map(|((topic, partition), o)| {
            let c = committed.get(&(topic.clone(), *partition)).copied();
            PartitionLag {
                topic: topic.clone(),
                partition: *partition,
                committed: c,
                log_end: o.log_end,
                last_stable: o.last_stable,
                lag: partition_lag(o, c, isolation),
            }
        })
        .collect();
    let total = all
        .iter()
        .fold(0i64, |total, p| total.saturating_add(p.lag));
    all.sort_by(|a, b| {
        b.lag
            .cmp(&a.lag)
            .then_with(|| a.topic.cmp(&b.topic))
            .then_with(|| a.partition.cmp(&b.partition))
    });
    let omitted = all.len().saturating_sub(top);
    let partitions = all.iter().take(top).cloned().collect();
    GroupLag {
        partitions,
        all,
        total,
        omitted: i32::try_from(omitted).unwrap_or(i32::MAX),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offsets(log_start: i64, log_end: i64, last_stable: i64) -> PartitionOffsets {
        PartitionOffsets {
            log_start,
            log_end,
            last_stable,
        }
    }

    #[test]
    fn read_committed_lag_stops_at_the_last_stable_offset() {
        let o = offsets(0, 100, 60);
        assert_eq!(partition_lag(&o, Some(50), Isolation::ReadCommitted), 10);
        assert_eq!(partition_lag(&o, Some(50), Isolation::ReadUncommitted), 50);
    }

    #[test]
    fn nothing_committed_counts_from_the_log_start() {
        let o = offsets(20, 100, 100);
        assert_eq!(partition_lag(&o, None, Isolation::ReadCommitted), 80);
    }

    #[test]
    fn a_commit_beyond_the_lso_is_no_negative_lag() {
        let o = offsets(0, 100, 60);
        assert_eq!(partition_lag(&o, Some(100), Isolation::ReadCommitted), 0);
    }

    #[test]
    fn status_lists_the_top_partitions_and_totals_all() {
        let offsets: BTreeMap<(String, i32), PartitionOffsets> = (0..30)
            .map(|p| {
                (
                    ("t".to_string(), p),
                    offsets(0, i64::from(p) * 10, i64::from(p) * 10),
                )
            })
            .collect();
        let lag = group_lag(&offsets, &BTreeMap::new(), Isolation::ReadCommitted, 5);
        assert_eq!(lag.partitions.len(), 5);
        assert_eq!(lag.partitions[0].partition, 29);
        assert_eq!(lag.omitted, 25);
        assert_eq!(lag.total, (0..30).map(|p| p * 10).sum::<i64>());
    }
}
