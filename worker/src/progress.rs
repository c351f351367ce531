//! The figures committed with each input offset.
//!
//! Every offset the worker commits carries, in Kafka's OffsetCommit metadata string (at most
//! `offset.metadata.max.bytes`, 4096 by default), a compact JSON object
//! `{"v":1,"in":N,"out":M,"dlq":K,"txns":T,"commits":C,"aborts":A}`: for that input partition,
//! since the group first consumed it, the records consumed (`in`), the records produced from them
//! (`out`), the records dead-lettered (`dlq`) and the transactions that committed offsets of the
//! partition (`txns`). `commits` and `aborts` count transactions once each, whatever partitions
//! they span: every committed transaction counts in `commits` of one partition only (the first,
//! in topic and partition order, of the offsets it commits), which also takes the transactions
//! the worker aborted since its previous commit into its `aborts`. Summed over partitions they
//! are the transactions committed and aborted. An abort the worker could not carry into a later
//! commit (it was killed, or ended, before one) is not counted, nor is a transaction a killed
//! worker left open (the broker aborts it when the worker's successor starts, and keeps no
//! count). Metadata written before these two fields existed reads as zero for them.
//!
//! Under `errorPolicy: Stop`, the commit that stops the pipeline adds `"stop"` to the metadata
//! of the failed record's partition: `"<topic>-<partition>@<offset>: <reason>"`, the committed
//! offset being that record's (the next to consume), e.g.
//! `{"v":1,"in":41,"out":41,"dlq":0,"txns":3,"stop":"orders-0@41: the value is not JSON: ..."}`.
//! It says what the *last* commit of the partition said: the next successful commit of the
//! partition (the record fixed, the transform fixed, the policy changed) leaves it out again.
//! Absent means not stopped; workers and readers that predate it ignore it (version 1 is
//! unchanged). The reason is cut to [`MAX_STOP_REASON_BYTES`] so the metadata stays far below
//! Kafka's limit.
//!
//! The metadata commits inside the same transaction as the outputs, so the figures are exactly
//! once themselves: an aborted transaction leaves them as they were, and they survive restarts
//! and rebalances because a worker that is assigned a partition reads the committed metadata and
//! counts on from it. The operator reads them with OffsetFetch and sums them into the Pipeline's
//! status. (Under `guarantee: AtLeastOnce` the metadata commits with the offsets in the same
//! OffsetCommit request: the figures still match the committed offsets exactly, but outputs of
//! a batch that was replayed after a crash are in the output topics more than once and counted
//! once.)

use serde::{Deserialize, Serialize};

/// The metadata format version; [`Progress::decode`] ignores metadata of any other version.
pub const VERSION: u32 = 1;

/// The longest stop reason kept in the metadata, in bytes (cut on a character boundary, with
/// `…` appended). With the longest topic name (249), the record's position and JSON escaping
/// of the worst kind the metadata stays below 4096 bytes.
pub const MAX_STOP_REASON_BYTES: usize = 512;

/// The longest `stop` value [`Progress::encode`] writes, whatever it was given (a guard: a
/// marker made by [`Progress::stop_marker`] is always shorter).
pub const MAX_STOP_BYTES: usize = 800;

/// Cumulative figures of one input partition.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
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
    /// Committed transactions counted here (each in one partition only; see the module docs).
    #[serde(default)]
    pub commits: u64,
    /// Transactions the worker aborted, counted with its next commit (see the module docs).
    #[serde(default)]
    pub aborts: u64,
    /// Set by the commit that stopped the pipeline at a record of this partition
    /// (`errorPolicy: Stop`): `"<topic>-<partition>@<offset>: <reason>"`. `None`: not stopped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop: Option<String>,
}

/// A stop marker taken apart (see [`Progress::stop_parts`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StopAt<'a> {
    /// Input topic of the failed record.
    pub topic: &'a str,
    /// Its partition.
    pub partition: i32,
    /// Its offset (the committed offset of the partition).
    pub offset: i64,
    /// Why it failed (possibly cut, ending in `…`).
    pub reason: &'a str,
}

#[derive(Serialize, Deserialize)]
struct Versioned {
    v: u32,
    #[serde(flatten)]
    progress: Progress,
}

/// The longest prefix of `text` of at most `max` bytes that ends on a character boundary.
fn cut(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

impl Progress {
    /// The metadata string, e.g. `{"v":1,"in":10,"out":9,"dlq":1,"txns":2,"commits":1,"aborts":0}`
    /// (under 200 bytes for any values, far below Kafka's 4096), with `,"stop":"..."` before the
    /// closing brace when stopped (at most [`MAX_STOP_BYTES`] before JSON escaping).
    pub fn encode(&self) -> String {
        let mut text = format!(
            r#"{{"v":{VERSION},"in":{},"out":{},"dlq":{},"txns":{},"commits":{},"aborts":{}"#,
            self.in_records,
            self.out_records,
            self.dead_lettered,
            self.transactions,
            self.commits,
            self.aborts
        );
        if let Some(stop) = &self.stop {
            let stop = serde_json::Value::String(cut(stop, MAX_STOP_BYTES).to_string());
            text.push_str(r#","stop":"#);
            text.push_str(&stop.to_string());
        }
        text.push('}');
        text
    }

    /// The figures in a committed metadata string; `None` for empty, foreign or other-version
    /// metadata (the partition then counts from zero).
    pub fn decode(metadata: &str) -> Option<Progress> {
        let versioned: Versioned = serde_json::from_str(metadata).ok()?;
        (versioned.v == VERSION).then_some(versioned.progress)
    }

    /// Where and why the last commit of this partition stopped the pipeline
    /// (`"<topic>-<partition>@<offset>: <reason>"`); `None` when it did not.
    pub fn stopped(&self) -> Option<&str> {
        self.stop.as_deref()
    }

    /// [`Self::stopped`] taken apart; `None` also for a marker not in the worker's format.
    pub fn stop_parts(&self) -> Option<StopAt<'_>> {
        // Topic names have no '@' (letters, digits, '.', '_', '-'), so the first '@' ends the
        // record's name, and its last '-' separates topic and partition.
        let stop = self.stop.as_deref()?;
        let (record, rest) = stop.split_once('@')?;
        let (topic, partition) = record.rsplit_once('-')?;
        let (offset, reason) = rest.split_once(": ").unwrap_or((rest, ""));
        Some(StopAt {
            topic,
            partition: partition.parse().ok()?,
            offset: offset.parse().ok()?,
            reason,
        })
    }

    /// The stop marker for the record at `offset` of `topic`-`partition` that failed with
    /// `reason`; the reason is cut to [`MAX_STOP_REASON_BYTES`] on a character boundary.
    pub fn stop_marker(topic: &str, partition: i32, offset: i64, reason: &str) -> String {
        let kept = cut(reason, MAX_STOP_REASON_BYTES);
        let ellipsis = if kept.len() < reason.len() { "…" } else { "" };
        format!("{topic}-{partition}@{offset}: {kept}{ellipsis}")
    }

    /// The figures alone, without the stop marker: what a successful commit carries on.
    pub fn figures(&self) -> Progress {
        Progress {
            stop: None,
            ..self.clone()
        }
    }

    /// Field-wise sum, saturating (the figures only grow; overflow would take 584 years at a
    /// billion records a second). The stop marker is `self`'s, else `other`'s: summed over
    /// partitions (as the operator does), the total names a stopped partition if any is.
    pub fn plus(&self, other: &Progress) -> Progress {
        Progress {
            in_records: self.in_records.saturating_add(other.in_records),
            out_records: self.out_records.saturating_add(other.out_records),
            dead_lettered: self.dead_lettered.saturating_add(other.dead_lettered),
            transactions: self.transactions.saturating_add(other.transactions),
            commits: self.commits.saturating_add(other.commits),
            aborts: self.aborts.saturating_add(other.aborts),
            stop: self.stop.clone().or_else(|| other.stop.clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn encode_is_compact_json() {
        assert_eq!(
            progress(10, 9, 1, 2).encode(),
            r#"{"v":1,"in":10,"out":9,"dlq":1,"txns":2,"commits":0,"aborts":0}"#
        );
    }

    #[test]
    fn metadata_without_commits_and_aborts_reads_them_as_zero() {
        assert_eq!(
            Progress::decode(r#"{"v":1,"in":3,"out":2,"dlq":1,"txns":1}"#),
            Some(progress(3, 2, 1, 1))
        );
        let counted = Progress {
            commits: 5,
            aborts: 2,
            ..progress(3, 2, 1, 1)
        };
        assert_eq!(Progress::decode(&counted.encode()), Some(counted));
    }

    #[test]
    fn decode_reverses_encode() {
        let p = Progress {
            commits: u64::MAX,
            aborts: u64::MAX,
            ..progress(u64::MAX, u64::MAX, u64::MAX, u64::MAX)
        };
        assert_eq!(Progress::decode(&p.encode()), Some(p.clone()));
        assert!(p.encode().len() < 200, "{}", p.encode().len());
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
            r#"{"v":1,"in":1,"out":1,"dlq":0,"txns":1,"stop":7}"#,
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
            Some(progress(3, 2, 1, 1))
        );
    }

    #[test]
    fn plus_adds_field_by_field() {
        let a = Progress {
            commits: 5,
            aborts: 6,
            ..progress(1, 2, 3, 4)
        };
        assert_eq!(
            a.plus(&a),
            Progress {
                commits: 10,
                aborts: 12,
                ..progress(2, 4, 6, 8)
            }
        );
    }

    #[test]
    fn a_stop_marker_is_encoded_after_the_figures_and_decoded_back() {
        let p = Progress {
            stop: Some(Progress::stop_marker(
                "orders",
                0,
                41,
                "the value is not JSON: expected value at line 1 column 1",
            )),
            ..progress(41, 41, 0, 3)
        };
        assert_eq!(
            p.encode(),
            r#"{"v":1,"in":41,"out":41,"dlq":0,"txns":3,"commits":0,"aborts":0,"stop":"orders-0@41: the value is not JSON: expected value at line 1 column 1"}"#
        );
        let decoded = Progress::decode(&p.encode());
        assert_eq!(decoded, Some(p.clone()));
        assert_eq!(
            p.stopped(),
            Some("orders-0@41: the value is not JSON: expected value at line 1 column 1")
        );
    }

    #[test]
    fn metadata_without_a_stop_is_not_stopped() {
        let p = Progress::decode(r#"{"v":1,"in":3,"out":2,"dlq":1,"txns":1}"#);
        assert_eq!(p.as_ref().and_then(Progress::stopped), None);
        assert_eq!(p.as_ref().and_then(Progress::stop_parts), None);
    }

    #[test]
    fn a_stop_reason_is_escaped_as_json() {
        let p = Progress {
            stop: Some(Progress::stop_marker(
                "in",
                1,
                2,
                "bad \"quote\" \\ and\nnewline",
            )),
            ..Progress::default()
        };
        let text = p.encode();
        assert!(
            serde_json::from_str::<serde_json::Value>(&text).is_ok(),
            "{text}"
        );
        assert_eq!(Progress::decode(&text), Some(p));
    }

    #[test]
    fn a_long_reason_is_cut_on_a_character_boundary_and_stays_below_the_metadata_limit() {
        // 'é' is two bytes: 300 of them are 600 bytes, cut to 512 (256 characters).
        let reason = "é".repeat(300);
        let topic = "t".repeat(249);
        let marker = Progress::stop_marker(&topic, i32::MAX, i64::MAX, &reason);
        let kept = marker.split_once(": ").map(|(_, r)| r).unwrap_or_default();
        assert_eq!(kept, format!("{}…", "é".repeat(256)));
        assert!(marker.len() <= MAX_STOP_BYTES, "{}", marker.len());
        // A reason of the worst kind for JSON (every byte escaped as \u00XX).
        let control = "\u{1}".repeat(2000);
        let p = Progress {
            stop: Some(Progress::stop_marker(&topic, i32::MAX, i64::MAX, &control)),
            commits: u64::MAX,
            aborts: u64::MAX,
            ..progress(u64::MAX, u64::MAX, u64::MAX, u64::MAX)
        };
        let text = p.encode();
        assert!(text.len() < 4096, "{}", text.len());
        assert_eq!(Progress::decode(&text), Some(p));
        // A marker longer than any the worker makes is cut by encode itself.
        let p = Progress {
            stop: Some("x".repeat(5000)),
            ..Progress::default()
        };
        assert!(p.encode().len() < 4096);
        assert_eq!(
            Progress::decode(&p.encode())
                .and_then(|p| p.stop)
                .map(|s| s.len()),
            Some(MAX_STOP_BYTES)
        );
    }

    #[test]
    fn a_short_reason_is_kept_whole() {
        assert_eq!(
            Progress::stop_marker("orders.eu", 3, 17, "no route"),
            "orders.eu-3@17: no route"
        );
    }

    #[test]
    fn stop_parts_takes_the_marker_apart() {
        let p = Progress {
            stop: Some(Progress::stop_marker(
                "shop-a.orders-v2",
                11,
                9001,
                "jq: error: x: y",
            )),
            ..Progress::default()
        };
        assert_eq!(
            p.stop_parts(),
            Some(StopAt {
                topic: "shop-a.orders-v2",
                partition: 11,
                offset: 9001,
                reason: "jq: error: x: y",
            })
        );
        for foreign in ["stopped", "orders@1: x", "orders-x@1: y", "orders-1@x: y"] {
            let p = Progress {
                stop: Some(foreign.into()),
                ..Progress::default()
            };
            assert_eq!(p.stopped(), Some(foreign));
            assert_eq!(p.stop_parts(), None, "{foreign}");
        }
    }

    #[test]
    fn figures_drop_the_marker_and_plus_keeps_the_first() {
        let stopped = Progress {
            stop: Some("a-0@1: x".into()),
            ..progress(1, 1, 0, 1)
        };
        assert_eq!(stopped.figures(), progress(1, 1, 0, 1));
        let other = Progress {
            stop: Some("b-0@1: y".into()),
            ..progress(1, 1, 0, 1)
        };
        assert_eq!(stopped.plus(&other).stopped(), Some("a-0@1: x"));
        assert_eq!(
            progress(0, 0, 0, 0).plus(&other).stopped(),
            Some("b-0@1: y")
        );
        assert_eq!(
            progress(0, 0, 0, 0).plus(&progress(1, 0, 0, 0)).stopped(),
            None
        );
    }
}
