//! The bookkeeping of the open transaction, per input partition: where it started (to rewind
//! after an abort), where it is (the offsets to commit) and the figures it adds to the committed
//! [`Progress`].
//!
//! Rewinding to the first offset the transaction consumed, rather than to the broker's committed
//! offset, needs no round trip and is right even for a partition that has no committed offset yet
//! (librdkafka's example seeks those to the beginning, which under `startFrom: Latest` would
//! replay history).
//!
//! Under `errorPolicy: Stop` the transaction that stops also commits the failed record's
//! partition at the failed record's own offset, its metadata carrying the stop marker
//! ([`Ledger::stop_at`]); any later commit of that partition carries the figures alone.

use std::collections::BTreeMap;

use crate::progress::Progress;

/// A topic and partition.
pub type TopicPartition = (String, i32);

/// Per-partition state of the worker's assignment and open transaction.
#[derive(Clone, Debug, Default)]
pub struct Ledger {
    partitions: BTreeMap<TopicPartition, PartitionLedger>,
    records_in_txn: u64,
    /// Transactions aborted since the last commit: the next commit counts them (in
    /// [`Progress::aborts`] of its lead partition).
    aborts_pending: u64,
}

#[derive(Clone, Debug, Default)]
struct PartitionLedger {
    /// The figures committed so far; `None` until the committed metadata has been read.
    committed: Option<Progress>,
    /// What the open transaction consumed from this partition.
    open: Option<OpenRange>,
}

#[derive(Clone, Debug)]
struct OpenRange {
    first_offset: i64,
    next_offset: i64,
    /// What the transaction adds to the figures (never a stop marker).
    added: Progress,
    /// The stop marker this transaction commits for the partition.
    stop: Option<String>,
}

/// One offset to send to the transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OffsetToCommit {
    /// Topic name.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// The next offset to consume (last consumed + 1), as Kafka expects.
    pub offset: i64,
    /// The partition's progress after this transaction, to store as the offset's metadata
    /// (with a stop marker only for the partition the transaction stops at).
    pub progress: Progress,
}

/// Where to seek a partition after an abort.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rewind {
    /// Topic name.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// The first offset the aborted transaction consumed.
    pub offset: i64,
}

impl Ledger {
    /// A partition was assigned; `committed` is its committed progress if already read
    /// (`Some(Progress::default())` for a partition without metadata).
    pub fn assign(&mut self, tp: TopicPartition, committed: Option<Progress>) {
        self.partitions.insert(
            tp,
            PartitionLedger {
                committed,
                open: None,
            },
        );
    }

    /// The committed progress of an assigned partition has been read.
    pub fn set_committed(&mut self, tp: &TopicPartition, committed: Progress) {
        if let Some(p) = self.partitions.get_mut(tp) {
            p.committed = Some(committed);
        }
    }

    /// Partitions whose committed progress is still unknown.
    pub fn unknown_progress(&self) -> Vec<TopicPartition> {
        self.partitions
            .iter()
            .filter(|(_, p)| p.committed.is_none())
            .map(|(tp, _)| tp.clone())
            .collect()
    }

    /// Whether `tp`'s committed progress is known (records of a partition whose progress is not
    /// known must wait: the commit would overwrite the figures).
    pub fn knows_progress(&self, tp: &TopicPartition) -> bool {
        self.partitions
            .get(tp)
            .is_some_and(|p| p.committed.is_some())
    }

    /// A partition was revoked or lost; anything open for it is forgotten (the caller committed
    /// or aborted the transaction first).
    pub fn revoke(&mut self, tp: &TopicPartition) {
        if let Some(p) = self.partitions.remove(tp)
            && p.open.is_some()
        {
            self.records_in_txn = self
                .records_in_txn
                .saturating_sub(p.open.map_or(0, |o| o.added.in_records));
        }
    }

    /// The partitions currently assigned.
    pub fn assigned(&self) -> impl Iterator<Item = &TopicPartition> {
        self.partitions.keys()
    }

    /// One record at `offset` of `tp` was consumed in the open transaction, producing
    /// `produced` records and `dead_lettered` dead letters.
    pub fn consumed(
        &mut self,
        tp: &TopicPartition,
        offset: i64,
        produced: u64,
        dead_lettered: u64,
    ) {
        let open = self.open_range(tp, offset);
        open.next_offset = offset.saturating_add(1);
        open.added.in_records += 1;
        open.added.out_records += produced;
        open.added.dead_lettered += dead_lettered;
        self.records_in_txn += 1;
    }

    /// The pipeline stops at the record at `offset` of `tp` (`errorPolicy: Stop`): the open
    /// transaction commits the partition at `offset` (the failed record is the next to consume:
    /// neither it nor anything after it is committed), with `marker` in the metadata. The
    /// partition counts as committed by this transaction even if no record of it was consumed
    /// in it.
    pub fn stop_at(&mut self, tp: &TopicPartition, offset: i64, marker: String) {
        let open = self.open_range(tp, offset);
        open.next_offset = offset;
        open.stop = Some(marker);
    }

    fn open_range(&mut self, tp: &TopicPartition, offset: i64) -> &mut OpenRange {
        let p = self.partitions.entry(tp.clone()).or_default();
        p.open.get_or_insert(OpenRange {
            first_offset: offset,
            next_offset: offset,
            added: Progress {
                transactions: 1,
                ..Progress::default()
            },
            stop: None,
        })
    }

    /// Input records in the open transaction.
    pub fn records_in_txn(&self) -> u64 {
        self.records_in_txn
    }

    /// Whether the open transaction consumed anything.
    pub fn is_open(&self) -> bool {
        self.partitions.values().any(|p| p.open.is_some())
    }

    /// The offsets (with their progress metadata) the open transaction must commit. The first
    /// (the lead partition) also counts the transaction itself and the aborts since the last
    /// commit.
    pub fn offsets_to_commit(&self) -> Vec<OffsetToCommit> {
        let lead = self.lead_figures();
        self.partitions
            .iter()
            .filter_map(|((topic, partition), p)| {
                let open = p.open.as_ref()?;
                Some((topic, partition, p, open))
            })
            .enumerate()
            .map(|(i, (topic, partition, p, open))| OffsetToCommit {
                topic: topic.clone(),
                partition: *partition,
                offset: open.next_offset,
                progress: after(p.committed.as_ref(), open, (i == 0).then_some(&lead)),
            })
            .collect()
    }

    /// The transaction committed: its figures become the committed progress. Returns what it
    /// added, summed over partitions (for metrics; `transactions` left out, `commits` and
    /// `aborts` as counted by the lead partition).
    pub fn committed(&mut self) -> Progress {
        let lead = self.lead_figures();
        let mut added = Progress::default();
        let mut first = true;
        for p in self.partitions.values_mut() {
            if let Some(open) = p.open.take() {
                let extra = first.then_some(&lead);
                p.committed = Some(after(p.committed.as_ref(), &open, extra));
                added = added.plus(&Progress {
                    transactions: 0,
                    ..open.added
                });
                if let Some(extra) = extra {
                    added = added.plus(extra);
                }
                first = false;
            }
        }
        if !first {
            self.aborts_pending = 0;
        }
        self.records_in_txn = 0;
        added
    }

    /// What the lead partition of the open transaction adds besides its records: this
    /// transaction, and the aborts since the last commit.
    fn lead_figures(&self) -> Progress {
        Progress {
            commits: 1,
            aborts: self.aborts_pending,
            ..Progress::default()
        }
    }

    /// A transaction was aborted (by the worker); the next commit counts it.
    pub fn note_abort(&mut self) {
        self.aborts_pending = self.aborts_pending.saturating_add(1);
    }

    /// The transaction aborted: its figures are dropped, and the partitions it consumed must be
    /// rewound to where it started.
    pub fn aborted(&mut self) -> Vec<Rewind> {
        self.records_in_txn = 0;
        self.partitions
            .iter_mut()
            .filter_map(|((topic, partition), p)| {
                p.open.take().map(|open| Rewind {
                    topic: topic.clone(),
                    partition: *partition,
                    offset: open.first_offset,
                })
            })
            .collect()
    }

    /// A transaction was counted as committed ([`Ledger::committed`]) before its commit ended,
    /// `before` being the ledger until then, and the commit failed. Both it and the transaction
    /// open since (if any) are aborted: the ledger becomes `before` with nothing open, and every
    /// partition either consumed is rewound to where the failed one began, or, if only the later
    /// one consumed it, to where that began.
    pub fn undo_commit(&mut self, before: Ledger) -> Vec<Rewind> {
        let later = self.aborted();
        *self = before;
        let mut rewinds = self.aborted();
        for r in later {
            if !rewinds
                .iter()
                .any(|e| e.topic == r.topic && e.partition == r.partition)
            {
                rewinds.push(r);
            }
        }
        rewinds
    }

    /// The committed progress summed over the assigned partitions (for the progress log line).
    pub fn committed_total(&self) -> Progress {
        self.partitions
            .values()
            .filter_map(|p| p.committed.as_ref())
            .fold(Progress::default(), |sum, p| sum.plus(p))
    }
}

/// A partition's progress once `open` commits: the committed figures plus what it added (plus
/// `lead`'s counts for the transaction's lead partition), and the stop marker only if this
/// transaction stops at the partition (an earlier marker is cleared).
fn after(committed: Option<&Progress>, open: &OpenRange, lead: Option<&Progress>) -> Progress {
    let figures = committed
        .map(Progress::figures)
        .unwrap_or_default()
        .plus(&open.added);
    Progress {
        stop: open.stop.clone(),
        ..lead.map_or_else(|| figures.clone(), |lead| figures.plus(lead))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tp(partition: i32) -> TopicPartition {
        ("orders".to_string(), partition)
    }

    fn progress(
        in_records: u64,
        out_records: u64,
        dead_lettered: u64,
        transactions: u64,
    ) -> Progress {
        Progress {
            in_records,
            out_records,
            dead_lettered,
            transactions,
            ..Progress::default()
        }
    }

    /// `progress` as a transaction's lead partition counts it: `commits` committed transactions
    /// counted here.
    fn led(progress: Progress, commits: u64) -> Progress {
        Progress {
            commits,
            ..progress
        }
    }

    fn stopped(progress: Progress, marker: &str) -> Progress {
        Progress {
            stop: Some(marker.to_string()),
            ..progress
        }
    }

    #[test]
    fn commit_sends_next_offset_and_cumulative_progress() {
        let mut ledger = Ledger::default();
        ledger.assign(tp(0), Some(progress(100, 90, 10, 5)));
        ledger.assign(tp(1), Some(Progress::default()));
        ledger.consumed(&tp(0), 200, 1, 0);
        ledger.consumed(&tp(0), 201, 2, 0);
        ledger.consumed(&tp(0), 202, 0, 1);
        assert_eq!(ledger.records_in_txn(), 3);
        assert_eq!(
            ledger.offsets_to_commit(),
            vec![OffsetToCommit {
                topic: "orders".into(),
                partition: 0,
                offset: 203,
                progress: led(progress(103, 93, 11, 6), 1),
            }]
        );
    }

    #[test]
    fn committed_figures_carry_into_the_next_transaction() {
        let mut ledger = Ledger::default();
        ledger.assign(tp(0), Some(Progress::default()));
        ledger.consumed(&tp(0), 0, 1, 0);
        assert_eq!(ledger.committed(), led(progress(1, 1, 0, 0), 1));
        assert!(!ledger.is_open());
        assert_eq!(ledger.records_in_txn(), 0);
        ledger.consumed(&tp(0), 1, 1, 0);
        assert_eq!(
            ledger.offsets_to_commit()[0].progress,
            led(progress(2, 2, 0, 2), 2)
        );
    }

    #[test]
    fn abort_rewinds_to_the_first_offset_of_the_transaction_and_drops_its_figures() {
        let mut ledger = Ledger::default();
        ledger.assign(tp(0), Some(progress(5, 5, 0, 1)));
        ledger.assign(tp(1), Some(Progress::default()));
        ledger.assign(tp(2), Some(Progress::default()));
        ledger.consumed(&tp(0), 5, 1, 0);
        ledger.consumed(&tp(0), 6, 1, 0);
        ledger.consumed(&tp(1), 70, 1, 0);
        assert_eq!(
            ledger.aborted(),
            vec![
                Rewind {
                    topic: "orders".into(),
                    partition: 0,
                    offset: 5
                },
                Rewind {
                    topic: "orders".into(),
                    partition: 1,
                    offset: 70
                },
            ]
        );
        assert!(!ledger.is_open());
        assert_eq!(ledger.records_in_txn(), 0);
        assert_eq!(ledger.committed_total(), progress(5, 5, 0, 1));
    }

    #[test]
    fn each_transaction_counts_once_in_its_first_partition_with_the_aborts_before_it() {
        let mut ledger = Ledger::default();
        for p in 0..3 {
            ledger.assign(tp(p), Some(Progress::default()));
        }
        // Two aborted transactions, then one that spans partitions 1 and 2.
        ledger.consumed(&tp(0), 0, 1, 0);
        ledger.note_abort();
        ledger.aborted();
        ledger.note_abort();
        ledger.aborted();
        ledger.consumed(&tp(2), 0, 1, 0);
        ledger.consumed(&tp(1), 0, 1, 0);
        let offsets = ledger.offsets_to_commit();
        let counts: Vec<(i32, u64, u64)> = offsets
            .iter()
            .map(|o| (o.partition, o.progress.commits, o.progress.aborts))
            .collect();
        assert_eq!(counts, vec![(1, 1, 2), (2, 0, 0)]);
        let added = ledger.committed();
        assert_eq!((added.commits, added.aborts), (1, 2));
        // The next commit counts itself only: the aborts were carried.
        ledger.consumed(&tp(2), 1, 1, 0);
        let total = ledger.committed_total();
        assert_eq!((total.commits, total.aborts), (1, 2));
        ledger.committed();
        let total = ledger.committed_total();
        assert_eq!((total.commits, total.aborts), (2, 2));
    }

    #[test]
    fn unknown_progress_is_tracked_until_read() {
        let mut ledger = Ledger::default();
        ledger.assign(tp(0), None);
        ledger.assign(tp(1), Some(Progress::default()));
        assert_eq!(ledger.unknown_progress(), vec![tp(0)]);
        assert!(!ledger.knows_progress(&tp(0)));
        ledger.set_committed(&tp(0), progress(1, 1, 0, 1));
        assert!(ledger.knows_progress(&tp(0)));
        assert_eq!(ledger.unknown_progress(), vec![]);
    }

    #[test]
    fn a_stop_commits_the_partition_at_the_failed_record_with_the_marker() {
        let mut ledger = Ledger::default();
        ledger.assign(tp(0), Some(progress(10, 10, 0, 2)));
        ledger.assign(tp(1), Some(progress(5, 5, 0, 1)));
        ledger.consumed(&tp(0), 10, 1, 0);
        ledger.consumed(&tp(0), 11, 1, 0);
        ledger.consumed(&tp(1), 5, 1, 0);
        ledger.stop_at(&tp(0), 12, "orders-0@12: not JSON".into());
        assert_eq!(
            ledger.records_in_txn(),
            3,
            "the failed record is not consumed"
        );
        assert_eq!(
            ledger.offsets_to_commit(),
            vec![
                OffsetToCommit {
                    topic: "orders".into(),
                    partition: 0,
                    offset: 12,
                    progress: stopped(led(progress(12, 12, 0, 3), 1), "orders-0@12: not JSON"),
                },
                OffsetToCommit {
                    topic: "orders".into(),
                    partition: 1,
                    offset: 6,
                    progress: progress(6, 6, 0, 2),
                },
            ]
        );
        assert_eq!(ledger.committed(), led(progress(3, 3, 0, 0), 1));
    }

    #[test]
    fn a_stop_at_a_partition_the_transaction_did_not_consume_still_commits_it() {
        let mut ledger = Ledger::default();
        ledger.assign(tp(0), Some(progress(7, 7, 0, 4)));
        assert!(!ledger.is_open());
        ledger.stop_at(&tp(0), 7, "orders-0@7: no route".into());
        assert!(ledger.is_open());
        assert_eq!(ledger.records_in_txn(), 0);
        assert_eq!(
            ledger.offsets_to_commit(),
            vec![OffsetToCommit {
                topic: "orders".into(),
                partition: 0,
                offset: 7,
                progress: stopped(led(progress(7, 7, 0, 5), 1), "orders-0@7: no route"),
            }]
        );
        // Aborted, the replay starts at the failed record again.
        assert_eq!(
            ledger.aborted(),
            vec![Rewind {
                topic: "orders".into(),
                partition: 0,
                offset: 7
            }]
        );
    }

    #[test]
    fn the_next_commit_of_a_stopped_partition_clears_the_marker() {
        // A restarted worker reads the marker the last commit left; the record now passes.
        let mut ledger = Ledger::default();
        ledger.assign(tp(0), None);
        ledger.set_committed(
            &tp(0),
            stopped(progress(7, 7, 0, 5), "orders-0@7: no route"),
        );
        ledger.consumed(&tp(0), 7, 1, 0);
        assert_eq!(
            ledger.offsets_to_commit()[0].progress,
            led(progress(8, 8, 0, 6), 1),
            "no marker once the record went through"
        );
        ledger.committed();
        assert_eq!(ledger.committed_total(), led(progress(8, 8, 0, 6), 1));
    }

    #[test]
    fn a_stop_again_at_the_same_record_keeps_the_figures_and_renews_the_marker() {
        let mut ledger = Ledger::default();
        ledger.assign(
            tp(0),
            Some(stopped(progress(7, 7, 0, 5), "orders-0@7: old")),
        );
        ledger.stop_at(&tp(0), 7, "orders-0@7: new".into());
        assert_eq!(
            ledger.offsets_to_commit()[0].progress,
            stopped(led(progress(7, 7, 0, 6), 1), "orders-0@7: new")
        );
        ledger.committed();
        assert_eq!(
            ledger.committed_total(),
            stopped(led(progress(7, 7, 0, 6), 1), "orders-0@7: new")
        );
    }

    #[test]
    fn a_failed_commit_undone_rewinds_to_where_it_began_and_the_later_transaction_too() {
        let mut ledger = Ledger::default();
        ledger.assign(tp(0), Some(progress(10, 10, 0, 1)));
        ledger.assign(tp(1), Some(progress(20, 20, 0, 2)));
        ledger.assign(tp(2), Some(Progress::default()));
        ledger.consumed(&tp(0), 100, 1, 0);
        ledger.consumed(&tp(0), 101, 1, 0);
        ledger.consumed(&tp(1), 50, 1, 0);
        let before = ledger.clone();
        ledger.committed();
        // The next transaction, while the first one's commit is in flight.
        ledger.consumed(&tp(0), 102, 1, 0);
        ledger.consumed(&tp(2), 7, 1, 0);
        let rewinds = ledger.undo_commit(before);
        let rewind = |partition, offset| Rewind {
            topic: "orders".into(),
            partition,
            offset,
        };
        assert_eq!(rewinds, vec![rewind(0, 100), rewind(1, 50), rewind(2, 7)]);
        assert!(!ledger.is_open());
        assert_eq!(ledger.records_in_txn(), 0);
        // The figures are the ones before the failed commit.
        assert_eq!(ledger.committed_total(), progress(30, 30, 0, 3));
        // And the next commit of partition 0 starts from them.
        ledger.consumed(&tp(0), 100, 1, 0);
        assert_eq!(
            ledger.offsets_to_commit()[0].progress,
            led(progress(11, 11, 0, 2), 1)
        );
    }

    #[test]
    fn revoked_partitions_leave_the_ledger() {
        let mut ledger = Ledger::default();
        ledger.assign(tp(0), Some(Progress::default()));
        ledger.assign(tp(1), Some(Progress::default()));
        ledger.consumed(&tp(1), 3, 1, 0);
        ledger.revoke(&tp(1));
        assert_eq!(ledger.assigned().collect::<Vec<_>>(), vec![&tp(0)]);
        assert!(!ledger.is_open());
        assert_eq!(ledger.records_in_txn(), 0);
    }
}
