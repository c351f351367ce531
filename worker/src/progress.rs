//! The figures committed with each input offset.
//!
//! Every offset the worker commits carries, in Kafka's OffsetCommit metadata string (at most
//! `offset.metadata.max.bytes`, 4096 by default), a compact JSON object
//! `{"v":1,"in":N,"out":M,"dlq":K,"txns":T}`: for that input partition, since the group first
//! consumed it, the records consumed (`in`), the records produced from them (`out`), the records
//! dead-lettered (`dlq`) and the transactions that committed offsets of the partition (`txns`).
//!
//! The metadata commits inside the same transaction as the outputs, so the figures are exactly
//! once themselves: an aborted transaction leaves them as they were, and they survive restarts
//! and rebalances because a worker that is assigned a partition reads the committed metadata and
//! counts on from it. The operator reads them with OffsetFetch and sums them into the Pipeline's
//! status.

use serde::{Deserialize, Serialize};

/// The metadata format version; [`Progress::decode`] ignores metadata of any other version.
pub const VERSION: u32 = 1;

/// Cumulative figures of one input partition.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    /// Records consumed from the partition.
    #[serde(rename = "in")]
    pub in_records: u64,
    /// Records produced to output topics from them.
    #[serde(rename = "out")]
    pub out_records: u64,
    /// Records of the partition sent to the dead-letter topic.
    #[serde(rename = "dlq")]
    pub dead_lettered: u64,
    /// Transactions that committed offsets of the partition.
    #[serde(rename = "txns")]
    pub transactions: u64,
}

#[derive(Serialize, Deserialize)]
struct Versioned {
    v: u32,
    #[serde(flatten)]
    progress: Progress,
}

impl Progress {
    /// The metadata string, e.g. `{"v":1,"in":10,"out":9,"dlq":1,"txns":2}` (under 120 bytes
    /// for any values, far below Kafka's 4096).
    pub fn encode(&self) -> String {
        format!(
            r#"{{"v":{VERSION},"in":{},"out":{},"dlq":{},"txns":{}}}"#,
            self.in_records, self.out_records, self.dead_lettered, self.transactions
        )
    }

    /// The figures in a committed metadata string; `None` for empty, foreign or other-version
    /// metadata (the partition then counts from zero).
    pub fn decode(metadata: &str) -> Option<Progress> {
        let versioned: Versioned = serde_json::from_str(metadata).ok()?;
        (versioned.v == VERSION).then_some(versioned.progress)
    }

    /// Field-wise sum, saturating (the figures only grow; overflow would take 584 years at a
    /// billion records a second).
    pub fn plus(&self, other: &Progress) -> Progress {
        Progress {
            in_records: self.in_records.saturating_add(other.in_records),
            out_records: self.out_records.saturating_add(other.out_records),
            dead_lettered: self.dead_lettered.saturating_add(other.dead_lettered),
            transactions: self.transactions.saturating_add(other.transactions),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_is_compact_json() {
        let p = Progress {
            in_records: 10,
            out_records: 9,
            dead_lettered: 1,
            transactions: 2,
        };
        assert_eq!(p.encode(), r#"{"v":1,"in":10,"out":9,"dlq":1,"txns":2}"#);
    }

    #[test]
    fn decode_reverses_encode() {
        let p = Progress {
            in_records: u64::MAX,
            out_records: 0,
            dead_lettered: 7,
            transactions: 12345,
        };
        assert_eq!(Progress::decode(&p.encode()), Some(p));
        assert!(p.encode().len() < 120);
    }

    #[test]
    fn empty_or_foreign_metadata_decodes_to_none() {
        for metadata in [
            "",
            "{}",
            "hello",
            r#"{"in":1}"#,
            "[1,2]",
            r#"{"v":"1","in":1,"out":1,"dlq":0,"txns":1}"#,
        ] {
            assert_eq!(Progress::decode(metadata), None, "{metadata}");
        }
    }

    #[test]
    fn other_versions_decode_to_none() {
        assert_eq!(
            Progress::decode(r#"{"v":2,"in":1,"out":1,"dlq":0,"txns":1}"#),
            None
        );
    }

    #[test]
    fn unknown_fields_are_ignored_for_forward_compatibility() {
        assert_eq!(
            Progress::decode(r#"{"v":1,"in":3,"out":2,"dlq":1,"txns":1,"bytes":99}"#),
            Some(Progress {
                in_records: 3,
                out_records: 2,
                dead_lettered: 1,
                transactions: 1
            })
        );
    }

    #[test]
    fn plus_adds_field_by_field() {
        let a = Progress {
            in_records: 1,
            out_records: 2,
            dead_lettered: 3,
            transactions: 4,
        };
        assert_eq!(
            a.plus(&a),
            Progress {
                in_records: 2,
                out_records: 4,
                dead_lettered: 6,
                transactions: 8
            }
        );
    }
}
