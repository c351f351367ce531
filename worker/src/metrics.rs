//! The worker's Prometheus metrics, prefixed `exactly_worker_` and labelled with the Pipeline.
//!
//! Record and transaction counters count *committed* work only (they move when a transaction
//! commits, by what it committed), so they agree with the progress figures in the offsets'
//! metadata; records processed in an aborted transaction are counted when their replay commits.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::progress::Progress;

/// Labels of an aborted transaction.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AbortLabels {
    /// Why: `produce`, `send_offsets`, `commit`, `lost`, `stop`, `shutdown`.
    pub reason: String,
}

/// Labels of a rebalance event.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RebalanceLabels {
    /// `assign`, `revoke`, `lost` or `error`.
    pub kind: String,
}

/// Buckets of the commit duration histograms, in seconds.
const DURATION_BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Every metric the worker exports.
pub struct Metrics {
    registry: Registry,
    /// Input records committed.
    pub records_in: Counter,
    /// Output records committed.
    pub records_out: Counter,
    /// Dead letters committed.
    pub dead_lettered: Counter,
    /// Transactions committed.
    pub transactions_committed: Counter,
    /// Transactions aborted, by reason.
    pub transactions_aborted: Family<AbortLabels, Counter>,
    /// Time from a commit's start (the drain) to the end of `commit_transaction` (under
    /// `AtLeastOnce`, of the offset commit).
    pub commit_seconds: Histogram,
    /// The part of it spent waiting for the producer to deliver the transaction's records.
    pub drain_seconds: Histogram,
    /// Rebalance events, by kind.
    pub rebalances: Family<RebalanceLabels, Counter>,
    /// Times this worker found itself fenced.
    pub fencings: Counter,
    /// Records the transform or the routing failed on (each attempt; a replay counts again).
    pub record_errors: Counter,
    /// Partitions currently assigned.
    pub assigned_partitions: Gauge,
    /// 1 while the `Stop` error policy holds the pipeline.
    pub stopped: Gauge,
}

impl Metrics {
    /// Metrics of the Pipeline `pipeline` (`namespace/name`).
    pub fn new(pipeline: &str) -> Metrics {
        let mut registry = Registry::with_prefix_and_labels(
            "exactly_worker",
            [("pipeline".into(), pipeline.to_string().into())].into_iter(),
        );
        let m = Metrics {
            registry: Registry::default(),
            records_in: Counter::default(),
            records_out: Counter::default(),
            dead_lettered: Counter::default(),
            transactions_committed: Counter::default(),
            transactions_aborted: Family::default(),
            commit_seconds: Histogram::new(DURATION_BUCKETS),
            drain_seconds: Histogram::new(DURATION_BUCKETS),
            rebalances: Family::default(),
            fencings: Counter::default(),
            record_errors: Counter::default(),
            assigned_partitions: Gauge::default(),
            stopped: Gauge::default(),
        };
        registry.register(
            "records_in",
            "Input records committed",
            m.records_in.clone(),
        );
        registry.register(
            "records_out",
            "Output records committed",
            m.records_out.clone(),
        );
        registry.register(
            "dead_lettered",
            "Records committed to the dead-letter topic",
            m.dead_lettered.clone(),
        );
        registry.register(
            "transactions_committed",
            "Transactions committed",
            m.transactions_committed.clone(),
        );
        registry.register(
            "transactions_aborted",
            "Transactions aborted, by reason",
            m.transactions_aborted.clone(),
        );
        registry.register(
            "commit_duration_seconds",
            "Time to commit a transaction: wait for its records' delivery, send the offsets, \
             commit",
            m.commit_seconds.clone(),
        );
        registry.register(
            "commit_drain_seconds",
            "Part of a commit spent waiting for the producer to deliver the transaction's records \
             (long when the broker accepts records slower than the transform makes them)",
            m.drain_seconds.clone(),
        );
        registry.register(
            "rebalances",
            "Consumer group rebalance events, by kind",
            m.rebalances.clone(),
        );
        registry.register(
            "fencings",
            "Times this worker was fenced by a newer instance",
            m.fencings.clone(),
        );
        registry.register(
            "record_errors",
            "Records the transform or the routing could not handle (each attempt)",
            m.record_errors.clone(),
        );
        registry.register(
            "assigned_partitions",
            "Input partitions currently assigned to this worker",
            m.assigned_partitions.clone(),
        );
        registry.register(
            "stopped",
            "1 while the Stop error policy holds the pipeline at a record",
            m.stopped.clone(),
        );
        Metrics { registry, ..m }
    }

    /// The OpenMetrics text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::warn!(error = %e, "encoding metrics failed");
        }
        out
    }

    /// Counts what a committed transaction committed.
    pub fn committed(&self, added: &Progress, seconds: f64) {
        self.records_in.inc_by(added.in_records);
        self.records_out.inc_by(added.out_records);
        self.dead_lettered.inc_by(added.dead_lettered);
        self.transactions_committed.inc();
        self.commit_seconds.observe(seconds);
    }

    /// Counts an aborted transaction.
    pub fn aborted(&self, reason: &str) {
        self.transactions_aborted
            .get_or_create(&AbortLabels {
                reason: reason.to_string(),
            })
            .inc();
    }

    /// Counts a rebalance event.
    pub fn rebalanced(&self, kind: &str) {
        self.rebalances
            .get_or_create(&RebalanceLabels {
                kind: kind.to_string(),
            })
            .inc();
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_carry_prefix_and_pipeline_label() {
        let m = Metrics::new("shop/orders");
        m.committed(
            &Progress {
                in_records: 3,
                out_records: 2,
                dead_lettered: 1,
                transactions: 1,
                ..Progress::default()
            },
            0.01,
        );
        m.aborted("commit");
        let text = m.encode();
        assert!(
            text.contains(r#"exactly_worker_records_in_total{pipeline="shop/orders"} 3"#),
            "{text}"
        );
        assert!(
            text.contains(
                r#"exactly_worker_transactions_aborted_total{pipeline="shop/orders",reason="commit"} 1"#
            ),
            "{text}"
        );
    }

    #[test]
    fn the_part_of_a_commit_spent_draining_the_producer_is_exported() {
        let m = Metrics::new("shop/orders");
        m.drain_seconds.observe(0.004);
        let text = m.encode();
        assert!(
            text.contains(r#"exactly_worker_commit_drain_seconds_count{pipeline="shop/orders"} 1"#),
            "{text}"
        );
    }
}
