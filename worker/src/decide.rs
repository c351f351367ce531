//! The transaction loop's decisions, pure: what to do on a Kafka error, when to commit, what a
//! rebalance means for the open transaction, and what a record error becomes under each error
//! policy. `run` does what these say.
//!
//! # Exit codes
//!
//! | code | meaning |
//! |---|---|
//! | 0 | stopped by SIGTERM/SIGINT after committing or aborting the open transaction |
//! | 1 | the configuration could not be read or is invalid, or the clients could not start |
//! | 2 | a fatal Kafka client error (the producer or consumer is unusable) |
//! | 3 | fenced: another worker now owns this `transactional.id` (or the group moved on) |
//!
//! # `guarantee: AtLeastOnce`
//!
//! Without transactions the decisions that differ are the commit's: the worker flushes the
//! producer and commits the consumed offsets itself ([`may_commit_offsets`],
//! [`on_offset_commit_error`]); an "abort" only rewinds the consumer, the records already
//! produced stay (they are produced again: duplicates, never loss).
//!
//! The `Stop` error policy does not exit: the worker stays up, unready, holding its place, so
//! the Pipeline can report the record (see [`StopReason`]).

use std::time::Duration;

use crate::config::{ErrorPolicy, WorkerConfig};
use crate::transform::{InputRecord, OutputRecord, RecordError};

/// What the Kafka client said about an error, without the client types (so this is testable).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KafkaErrorFacts {
    /// The client instance is unusable (`rd_kafka_error_is_fatal`).
    pub fatal: bool,
    /// The transaction must be aborted (`rd_kafka_error_txn_requires_abort`).
    pub abortable: bool,
    /// The operation may be retried as is (`rd_kafka_error_is_retriable`, or a timeout).
    pub retriable: bool,
    /// The producer was fenced: `PRODUCER_FENCED`, `INVALID_PRODUCER_EPOCH` or librdkafka's
    /// `_FENCED`.
    pub fenced: bool,
}

/// The transactional operation that failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TxnOperation {
    /// `init_transactions` at start.
    Init,
    /// `begin_transaction`.
    Begin,
    /// Producing one record.
    Produce,
    /// `send_offsets_to_transaction`.
    SendOffsets,
    /// `commit_transaction`.
    Commit,
    /// `abort_transaction`.
    Abort,
}

/// What the loop does about an error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Call the same operation again.
    Retry,
    /// Abort the open transaction and rewind the consumer to where it started.
    AbortAndRewind,
    /// Stop the process with this reason.
    Exit(ExitReason),
}

/// Why the worker exits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitReason {
    /// Invalid configuration, or the clients could not be created.
    Config,
    /// A fatal client error.
    Fatal,
    /// Another instance took over this worker's transactional id or group membership.
    Fenced,
}

impl ExitReason {
    /// The process exit code (see the module documentation).
    pub fn code(self) -> i32 {
        match self {
            ExitReason::Config => 1,
            ExitReason::Fatal => 2,
            ExitReason::Fenced => 3,
        }
    }

    /// A stable short label for logs and metrics.
    pub fn label(self) -> &'static str {
        match self {
            ExitReason::Config => "config",
            ExitReason::Fatal => "fatal",
            ExitReason::Fenced => "fenced",
        }
    }
}

/// How often a retriable error is retried before the transaction is given up (aborted); with the
/// loop's back-off this is about half a minute.
pub const MAX_RETRIES: u32 = 30;

/// Classifies an error of `operation` on its `attempt`-th try (0-based).
///
/// Precedence: fenced, then fatal (the client is gone: exit and let the restarted worker fence
/// its zombie and resume from the committed offsets), then abortable (abort, rewind, go on), then
/// retriable (retry, a bounded number of times). What is none of these is a usage or state error:
/// for a produce or a commit step the transaction is aborted; for `init`, `begin` and `abort`
/// there is no safe way on, so the worker exits.
pub fn on_kafka_error(operation: TxnOperation, facts: KafkaErrorFacts, attempt: u32) -> Decision {
    if facts.fenced {
        return Decision::Exit(ExitReason::Fenced);
    }
    if facts.fatal {
        return Decision::Exit(ExitReason::Fatal);
    }
    if facts.abortable {
        return match operation {
            // Aborting is what an abortable error asks for; failing to abort is the end.
            TxnOperation::Abort => Decision::Exit(ExitReason::Fatal),
            _ => Decision::AbortAndRewind,
        };
    }
    if facts.retriable && attempt < MAX_RETRIES {
        return Decision::Retry;
    }
    match operation {
        TxnOperation::Produce | TxnOperation::SendOffsets | TxnOperation::Commit => {
            Decision::AbortAndRewind
        }
        TxnOperation::Init | TxnOperation::Begin | TxnOperation::Abort => {
            Decision::Exit(ExitReason::Fatal)
        }
    }
}

/// Whether the open transaction should commit now: it holds `records_in_txn` input records and
/// has been open `since_txn_start`. It commits when full or old enough; an open transaction that
/// holds nothing also commits when old enough, ending cleanly rather than running into the
/// transaction timeout.
pub fn should_commit(records_in_txn: u64, since_txn_start: Duration, cfg: &WorkerConfig) -> bool {
    records_in_txn >= u64::from(cfg.commit_max_records).max(1)
        || since_txn_start >= Duration::from_millis(u64::from(cfg.commit_interval_ms))
}

/// `AtLeastOnce`: whether the batch's offsets may be committed once the producer is flushed:
/// only when none of the records sent since the batch began failed delivery. Committing the
/// offsets of a record whose output was lost would lose it for good; not committing only
/// produces the batch again.
pub fn may_commit_offsets(failed_deliveries_since_batch_began: u64) -> bool {
    failed_deliveries_since_batch_began == 0
}

/// `AtLeastOnce`: how a consumer offset commit failed, without the client types.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OffsetCommitFailure {
    /// Worth repeating as is: a timeout, the coordinator loading or moving, a rebalance in
    /// progress.
    Transient,
    /// The group moved to a new generation (`ILLEGAL_GENERATION`, `UNKNOWN_MEMBER_ID`): these
    /// offsets cannot commit; the partitions' next owner starts from the last commit.
    StaleGeneration,
    /// Another consumer joined with this worker's `group.instance.id` (`FENCED_INSTANCE_ID`).
    Fenced,
    /// The consumer is unusable.
    Fatal,
    /// Anything else (authorization, an offset out of range, ...).
    Other,
}

/// `AtLeastOnce`: what a failed offset commit (attempt `attempt`, 0-based) means. Transient
/// failures are retried a bounded number of times; a stale generation or anything else rewinds
/// the consumer to the batch's first offsets (its outputs are produced again: duplicates, never
/// loss); fenced and fatal end the worker as they do under transactions.
pub fn on_offset_commit_error(failure: OffsetCommitFailure, attempt: u32) -> Decision {
    match failure {
        OffsetCommitFailure::Fenced => Decision::Exit(ExitReason::Fenced),
        OffsetCommitFailure::Fatal => Decision::Exit(ExitReason::Fatal),
        OffsetCommitFailure::Transient if attempt < MAX_RETRIES => Decision::Retry,
        OffsetCommitFailure::Transient
        | OffsetCommitFailure::StaleGeneration
        | OffsetCommitFailure::Other => Decision::AbortAndRewind,
    }
}

/// What a rebalance does to the open transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RebalanceAction {
    /// Commit it before the partitions go: their offsets and outputs are ours to commit.
    Commit,
    /// Abort it: the partitions were lost (session timeout, fenced generation), another member
    /// may already own them, and a commit would fail or, worse, duplicate.
    Abort,
    /// Nothing is open.
    Nothing,
}

/// The open transaction's fate when partitions are revoked (`lost` when librdkafka reports the
/// assignment lost rather than revoked cooperatively).
pub fn on_revoke(lost: bool, txn_open: bool) -> RebalanceAction {
    match (txn_open, lost) {
        (false, _) => RebalanceAction::Nothing,
        (true, true) => RebalanceAction::Abort,
        (true, false) => RebalanceAction::Commit,
    }
}

/// Where the pipeline stopped under the `Stop` policy, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StopReason {
    /// Input topic of the record.
    pub topic: String,
    /// Its partition.
    pub partition: i32,
    /// Its offset.
    pub offset: i64,
    /// The record error.
    pub message: String,
}

impl StopReason {
    /// The marker committed in the partition's metadata (see [`crate::progress`]): this
    /// reason's text with the message cut to [`crate::progress::MAX_STOP_REASON_BYTES`].
    pub fn marker(&self) -> String {
        crate::progress::Progress::stop_marker(
            &self.topic,
            self.partition,
            self.offset,
            &self.message,
        )
    }
}

impl std::fmt::Display for StopReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}-{}@{}: {}",
            self.topic, self.partition, self.offset, self.message
        )
    }
}

/// What a record error becomes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RecordErrorAction {
    /// Produce this record to this Kafka topic, in the open transaction, and go on.
    DeadLetter {
        /// Kafka topic name.
        topic: String,
        /// The dead letter.
        record: OutputRecord,
    },
    /// Commit the records before it (the open transaction holds only complete records: a record
    /// error strikes before any output of the record is produced), leave the record's own offset
    /// uncommitted, and stop consuming.
    Stop(StopReason),
}

/// Header naming the record error of a dead letter.
pub const HEADER_ERROR: &str = "exactly.error";
/// Header naming the input topic of a dead letter.
pub const HEADER_SOURCE_TOPIC: &str = "exactly.source.topic";
/// Header naming the input partition of a dead letter.
pub const HEADER_SOURCE_PARTITION: &str = "exactly.source.partition";
/// Header naming the input offset of a dead letter.
pub const HEADER_SOURCE_OFFSET: &str = "exactly.source.offset";

/// What to do with `record`, which failed with `error`, under `policy`.
pub fn on_record_error(
    policy: &ErrorPolicy,
    record: &InputRecord,
    error: &RecordError,
) -> RecordErrorAction {
    match policy {
        ErrorPolicy::DeadLetter { topic } => RecordErrorAction::DeadLetter {
            topic: topic.clone(),
            record: dead_letter(record, error),
        },
        ErrorPolicy::Stop => RecordErrorAction::Stop(StopReason {
            topic: record.topic.clone(),
            partition: record.partition,
            offset: record.offset,
            message: error.message.clone(),
        }),
    }
}

/// The input record unchanged (key, value, headers), plus the `exactly.*` headers saying where
/// it came from and why it failed. Earlier `exactly.*` headers (a dead letter re-fed as input)
/// are replaced, not repeated.
pub fn dead_letter(record: &InputRecord, error: &RecordError) -> OutputRecord {
    let ours = [
        HEADER_ERROR,
        HEADER_SOURCE_TOPIC,
        HEADER_SOURCE_PARTITION,
        HEADER_SOURCE_OFFSET,
    ];
    let mut headers: Vec<_> = record
        .headers
        .iter()
        .filter(|(name, _)| !ours.contains(&name.as_str()))
        .cloned()
        .collect();
    headers.extend([
        (
            HEADER_ERROR.to_string(),
            Some(error.message.clone().into_bytes()),
        ),
        (
            HEADER_SOURCE_TOPIC.to_string(),
            Some(record.topic.clone().into_bytes()),
        ),
        (
            HEADER_SOURCE_PARTITION.to_string(),
            Some(record.partition.to_string().into_bytes()),
        ),
        (
            HEADER_SOURCE_OFFSET.to_string(),
            Some(record.offset.to_string().into_bytes()),
        ),
    ]);
    OutputRecord {
        topic: None,
        key: record.key.clone(),
        value: record.value.clone(),
        headers,
    }
}

/// Back-off before retry `attempt` (0-based): 100 ms doubling to at most 2 s.
pub fn retry_backoff(attempt: u32) -> Duration {
    Duration::from_millis(100u64.saturating_mul(1 << attempt.min(5)).min(2_000))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL_OPS: [TxnOperation; 6] = [
        TxnOperation::Init,
        TxnOperation::Begin,
        TxnOperation::Produce,
        TxnOperation::SendOffsets,
        TxnOperation::Commit,
        TxnOperation::Abort,
    ];

    #[test]
    fn fenced_exits_with_the_fenced_code_whatever_else_is_said() {
        let facts = KafkaErrorFacts {
            fenced: true,
            fatal: true,
            abortable: true,
            retriable: true,
        };
        for op in ALL_OPS {
            assert_eq!(
                on_kafka_error(op, facts, 0),
                Decision::Exit(ExitReason::Fenced)
            );
        }
        assert_eq!(ExitReason::Fenced.code(), 3);
    }

    #[test]
    fn fatal_exits() {
        let facts = KafkaErrorFacts {
            fatal: true,
            abortable: true,
            ..Default::default()
        };
        for op in ALL_OPS {
            assert_eq!(
                on_kafka_error(op, facts, 0),
                Decision::Exit(ExitReason::Fatal)
            );
        }
    }

    #[test]
    fn abortable_aborts_and_rewinds() {
        let facts = KafkaErrorFacts {
            abortable: true,
            retriable: true,
            ..Default::default()
        };
        for op in [
            TxnOperation::Produce,
            TxnOperation::SendOffsets,
            TxnOperation::Commit,
        ] {
            assert_eq!(on_kafka_error(op, facts, 0), Decision::AbortAndRewind);
        }
    }

    #[test]
    fn abortable_error_while_aborting_exits() {
        let facts = KafkaErrorFacts {
            abortable: true,
            ..Default::default()
        };
        assert_eq!(
            on_kafka_error(TxnOperation::Abort, facts, 0),
            Decision::Exit(ExitReason::Fatal)
        );
    }

    #[test]
    fn retriable_retries_a_bounded_number_of_times() {
        let facts = KafkaErrorFacts {
            retriable: true,
            ..Default::default()
        };
        assert_eq!(
            on_kafka_error(TxnOperation::Commit, facts, 0),
            Decision::Retry
        );
        assert_eq!(
            on_kafka_error(TxnOperation::Commit, facts, MAX_RETRIES - 1),
            Decision::Retry
        );
        assert_eq!(
            on_kafka_error(TxnOperation::Commit, facts, MAX_RETRIES),
            Decision::AbortAndRewind
        );
        assert_eq!(
            on_kafka_error(TxnOperation::Abort, facts, MAX_RETRIES),
            Decision::Exit(ExitReason::Fatal)
        );
    }

    #[test]
    fn unclassified_errors_abort_in_a_transaction_and_exit_outside() {
        let facts = KafkaErrorFacts::default();
        assert_eq!(
            on_kafka_error(TxnOperation::Produce, facts, 0),
            Decision::AbortAndRewind
        );
        assert_eq!(
            on_kafka_error(TxnOperation::Begin, facts, 0),
            Decision::Exit(ExitReason::Fatal)
        );
        assert_eq!(
            on_kafka_error(TxnOperation::Init, facts, 0),
            Decision::Exit(ExitReason::Fatal)
        );
    }

    fn config(interval_ms: u32, max_records: u32) -> WorkerConfig {
        WorkerConfig {
            pipeline: "a/b".into(),
            bootstrap_servers: "k:9092".into(),
            client_properties: Default::default(),
            group_id: "g".into(),
            input_topics: vec!["in".into()],
            start_from: Default::default(),
            transactional_id_prefix: "p".into(),
            transaction_timeout_ms: 60_000,
            commit_interval_ms: interval_ms,
            commit_max_records: max_records,
            output: crate::config::Output {
                topics: [("out".to_string(), "out".to_string())].into(),
                default_topic: Some("out".into()),
                route: None,
            },
            transform: Default::default(),
            error_policy: Default::default(),
            guarantee: Default::default(),
        }
    }

    #[test]
    fn commit_after_the_interval() {
        let cfg = config(100, 1000);
        assert!(!should_commit(1, Duration::from_millis(99), &cfg));
        assert!(should_commit(1, Duration::from_millis(100), &cfg));
    }

    #[test]
    fn commit_early_after_max_records() {
        let cfg = config(100, 1000);
        assert!(!should_commit(999, Duration::ZERO, &cfg));
        assert!(should_commit(1000, Duration::ZERO, &cfg));
    }

    #[test]
    fn empty_transaction_commits_only_when_old_enough() {
        let cfg = config(100, 1000);
        assert!(!should_commit(0, Duration::from_millis(10), &cfg));
        assert!(should_commit(0, Duration::from_millis(100), &cfg));
    }

    #[test]
    fn revoke_commits_lost_aborts() {
        assert_eq!(on_revoke(false, true), RebalanceAction::Commit);
        assert_eq!(on_revoke(true, true), RebalanceAction::Abort);
        assert_eq!(on_revoke(false, false), RebalanceAction::Nothing);
        assert_eq!(on_revoke(true, false), RebalanceAction::Nothing);
    }

    fn failed_record() -> InputRecord {
        InputRecord {
            topic: "orders".into(),
            partition: 2,
            offset: 17,
            timestamp: None,
            key: Some(b"k".to_vec()),
            value: Some(b"{oops".to_vec()),
            headers: vec![
                ("source".into(), Some(b"web".to_vec())),
                (HEADER_ERROR.into(), Some(b"an older error".to_vec())),
            ],
        }
    }

    #[test]
    fn dead_letter_keeps_the_record_and_says_where_it_came_from() {
        let error = RecordError::new("the value is not JSON");
        let action = on_record_error(
            &ErrorPolicy::DeadLetter {
                topic: "orders.dead".into(),
            },
            &failed_record(),
            &error,
        );
        let header = |name: &str, value: &str| (name.to_string(), Some(value.as_bytes().to_vec()));
        assert_eq!(
            action,
            RecordErrorAction::DeadLetter {
                topic: "orders.dead".into(),
                record: OutputRecord {
                    topic: None,
                    key: Some(b"k".to_vec()),
                    value: Some(b"{oops".to_vec()),
                    headers: vec![
                        header("source", "web"),
                        header(HEADER_ERROR, "the value is not JSON"),
                        header(HEADER_SOURCE_TOPIC, "orders"),
                        header(HEADER_SOURCE_PARTITION, "2"),
                        header(HEADER_SOURCE_OFFSET, "17"),
                    ],
                },
            }
        );
    }

    #[test]
    fn stop_names_the_record_and_the_reason() {
        let action = on_record_error(
            &ErrorPolicy::Stop,
            &failed_record(),
            &RecordError::new("the value is not JSON"),
        );
        let RecordErrorAction::Stop(reason) = action else {
            panic!("expected Stop, got {action:?}");
        };
        assert_eq!(reason.to_string(), "orders-2@17: the value is not JSON");
        assert_eq!(reason.marker(), reason.to_string());
        let long = StopReason {
            message: "x".repeat(2_000),
            ..reason
        };
        assert!(long.marker().len() < 600);
        assert!(long.marker().starts_with("orders-2@17: xxx"));
    }

    #[test]
    fn at_least_once_commits_offsets_only_after_every_send_was_acknowledged() {
        assert!(may_commit_offsets(0));
        assert!(!may_commit_offsets(1));
    }

    #[test]
    fn at_least_once_offset_commit_errors() {
        use OffsetCommitFailure::*;
        assert_eq!(on_offset_commit_error(Transient, 0), Decision::Retry);
        assert_eq!(
            on_offset_commit_error(Transient, MAX_RETRIES),
            Decision::AbortAndRewind
        );
        assert_eq!(
            on_offset_commit_error(StaleGeneration, 0),
            Decision::AbortAndRewind
        );
        assert_eq!(on_offset_commit_error(Other, 0), Decision::AbortAndRewind);
        assert_eq!(
            on_offset_commit_error(Fenced, 0),
            Decision::Exit(ExitReason::Fenced)
        );
        assert_eq!(
            on_offset_commit_error(Fatal, 0),
            Decision::Exit(ExitReason::Fatal)
        );
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        assert_eq!(retry_backoff(0), Duration::from_millis(100));
        assert_eq!(retry_backoff(1), Duration::from_millis(200));
        assert_eq!(retry_backoff(10), Duration::from_millis(2_000));
    }
}
