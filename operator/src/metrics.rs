//! Prometheus metrics: the live figures status shows at a bounded rate (lag, transactions,
//! exactly-once readiness), plus the operator's own work (reconciles, Kafka admin requests).
//!
//! A resource's own series (labelled with its namespace and name) live as long as it does:
//! controllers name them through [`Metrics::series_of`], which records them, and the watch of
//! each kind calls [`Metrics::forget`] when the resource is deleted (and [`Metrics::retain`]
//! after a relist, for deletions the watch missed), so a dashboard never shows a deleted
//! resource's last value until the operator restarts.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::{MetricType, TypedMetric};
use prometheus_client::registry::Registry;

/// Labels naming one resource.
#[derive(Clone, Debug, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
pub struct ResourceLabels {
    pub namespace: String,
    pub name: String,
}

/// Labels of a reconcile count.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReconcileLabels {
    pub kind: String,
    /// `ok` or the error reason (e.g. `KubernetesApiError`, `KafkaUnreachable`).
    pub result: String,
}

/// Labels naming a kind.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    pub kind: String,
}

/// Labels of a Kafka request count.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ApiLabels {
    /// The Kafka API, e.g. `CreateTopics`, `Metadata`, `DescribeConfigs`.
    pub api: String,
}

/// Labels of one partition's lag for one group.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PartitionLabels {
    pub namespace: String,
    pub name: String,
    pub topic: String,
    pub partition: String,
}

/// The kinds with series of their own, as the controllers and watches name them.
pub mod kinds {
    pub const CLUSTER: &str = "KafkaCluster";
    pub const CONSUMER_GROUP: &str = "ConsumerGroup";
    pub const PRODUCER: &str = "Producer";
    pub const PIPELINE: &str = "Pipeline";
    pub const PULSAR_CLUSTER: &str = "PulsarCluster";
}

/// The resources of one kind with series, each with the (topic, partition) pairs it has a
/// partition series for.
type SeriesOfKind = BTreeMap<ResourceLabels, BTreeSet<(String, i32)>>;

/// Every metric the operator exports.
pub struct Metrics {
    registry: Mutex<Registry>,
    /// The resources with series, by kind, and the partitions each ConsumerGroup has a lag
    /// series for: what [`Metrics::forget`] removes.
    resources: Mutex<BTreeMap<&'static str, SeriesOfKind>>,
    /// Every registered family's name (with the prefix) and type.
    families: Vec<(String, MetricType)>,
    pub reconciles: Family<ReconcileLabels, Counter>,
    pub reconcile_seconds: Family<KindLabels, Histogram, fn() -> Histogram>,
    /// Failed watches (list or watch refused, or broken) of each controller's resources.
    pub watch_errors: Family<KindLabels, Counter>,
    /// Kafka admin requests sent, by API (connection handshakes included).
    pub kafka_requests: Family<ApiLabels, Counter>,
    pub cluster_brokers: Family<ResourceLabels, Gauge>,
    pub cluster_exactly_once_ready: Family<ResourceLabels, Gauge>,
    pub pulsar_cluster_exactly_once_ready: Family<ResourceLabels, Gauge>,
    pub pulsar_cluster_open_transactions: Family<ResourceLabels, Gauge>,
    pub pulsar_cluster_hanging_transactions: Family<ResourceLabels, Gauge>,
    pub group_lag: Family<ResourceLabels, Gauge>,
    pub group_partition_lag: Family<PartitionLabels, Gauge>,
    pub group_members: Family<ResourceLabels, Gauge>,
    pub producer_open_transactions: Family<ResourceLabels, Gauge>,
    pub producer_hanging_transactions: Family<ResourceLabels, Gauge>,
    pub producer_oldest_transaction_seconds: Family<ResourceLabels, Gauge>,
    pub pipeline_lag: Family<ResourceLabels, Gauge>,
    pub pipeline_records_in: Family<ResourceLabels, Gauge>,
    pub pipeline_records_out: Family<ResourceLabels, Gauge>,
    pub pipeline_dead_lettered: Family<ResourceLabels, Gauge>,
    pub pipeline_transactions_committed: Family<ResourceLabels, Gauge>,
    pub pipeline_transactions_aborted: Family<ResourceLabels, Gauge>,
    pub pipeline_workers_ready: Family<ResourceLabels, Gauge>,
    pub pipeline_exactly_once_ready: Family<ResourceLabels, Gauge>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("exactly");
        let mut m = Metrics {
            registry: Mutex::new(Registry::default()),
            resources: Mutex::default(),
            families: Vec::new(),
            reconciles: Family::default(),
            reconcile_seconds: Family::new_with_constructor(|| {
                Histogram::new([
                    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                ])
            }),
            watch_errors: Family::default(),
            kafka_requests: Family::default(),
            cluster_brokers: Family::default(),
            cluster_exactly_once_ready: Family::default(),
            pulsar_cluster_exactly_once_ready: Family::default(),
            pulsar_cluster_open_transactions: Family::default(),
            pulsar_cluster_hanging_transactions: Family::default(),
            group_lag: Family::default(),
            group_partition_lag: Family::default(),
            group_members: Family::default(),
            producer_open_transactions: Family::default(),
            producer_hanging_transactions: Family::default(),
            producer_oldest_transaction_seconds: Family::default(),
            pipeline_lag: Family::default(),
            pipeline_records_in: Family::default(),
            pipeline_records_out: Family::default(),
            pipeline_dead_lettered: Family::default(),
            pipeline_transactions_committed: Family::default(),
            pipeline_transactions_aborted: Family::default(),
            pipeline_workers_ready: Family::default(),
            pipeline_exactly_once_ready: Family::default(),
        };
        register(
            &mut registry,
            &mut m.families,
            "reconciles",
            "Reconciles by kind and result (ok or the error reason)",
            m.reconciles.clone(),
        );
        register(
            &mut registry,
            &mut m.families,
            "reconcile_duration_seconds",
            "How long reconciles take, by kind",
            m.reconcile_seconds.clone(),
        );
        register(
            &mut registry,
            &mut m.families,
            "watch_errors",
            "Failed lists or watches of the resources a controller follows, by the controller's kind",
            m.watch_errors.clone(),
        );
        register(
            &mut registry,
            &mut m.families,
            "kafka_admin_requests",
            "Kafka admin requests the operator sent, by API (connection handshakes included)",
            m.kafka_requests.clone(),
        );
        register(
            &mut registry,
            &mut m.families,
            "cluster_brokers",
            "Brokers a KafkaCluster reported",
            m.cluster_brokers.clone(),
        );
        register(
            &mut registry,
            &mut m.families,
            "cluster_exactly_once_ready",
            "1 when the cluster's settings meet every exactly-once rule",
            m.cluster_exactly_once_ready.clone(),
        );
        register(
            &mut registry,
            &mut m.families,
            "pulsar_cluster_exactly_once_ready",
            "1 when a PulsarCluster meets every exactly-once rule",
            m.pulsar_cluster_exactly_once_ready.clone(),
        );
        register(
            &mut registry,
            &mut m.families,
            "pulsar_cluster_open_transactions",
            "Transactions open on a PulsarCluster's coordinators",
            m.pulsar_cluster_open_transactions.clone(),
        );
        register(
            &mut registry,
            &mut m.families,
            "pulsar_cluster_hanging_transactions",
            "Transactions open on a PulsarCluster past their timeout",
            m.pulsar_cluster_hanging_transactions.clone(),
        );
        register(
            &mut registry,
            &mut m.families,
            "consumer_group_lag",
            "Total lag of a ConsumerGroup (records, against the LSO under read_committed)",
            m.group_lag.clone(),
        );
        register(
            &mut registry,
            &mut m.families,
            "consumer_group_partition_lag",
            "Lag of one partition of a ConsumerGroup",
            m.group_partition_lag.clone(),
        );
        register(
            &mut registry,
            &mut m.families,
            "consumer_group_members",
            "Members of a ConsumerGroup",
            m.group_members.clone(),
        );
        register(
            &mut registry,
            &mut m.families,
            "producer_open_transactions",
            "Open transactions of a Producer's transactional ids",
            m.producer_open_transactions.clone(),
        );
        register(
            &mut registry,
            &mut m.families,
            "producer_hanging_transactions",
            "Hanging transactions on a Producer's topics",
            m.producer_hanging_transactions.clone(),
        );
        register(
            &mut registry,
            &mut m.families,
            "producer_oldest_transaction_age_seconds",
            "Age of a Producer's oldest open transaction",
            m.producer_oldest_transaction_seconds.clone(),
        );
        register(
            &mut registry,
            &mut m.families,
            "pipeline_lag",
            "Input records a Pipeline has not processed (against the LSO)",
            m.pipeline_lag.clone(),
        );
        register(
            &mut registry,
            &mut m.families,
            "pipeline_records_in",
            "Input records a Pipeline's workers consumed and committed",
            m.pipeline_records_in.clone(),
        );
        register(
            &mut registry,
            &mut m.families,
            "pipeline_records_out",
            "Output records a Pipeline's workers committed",
            m.pipeline_records_out.clone(),
        );
        register(
            &mut registry,
            &mut m.families,
            "pipeline_dead_lettered",
            "Input records a Pipeline committed to its dead-letter Topic",
            m.pipeline_dead_lettered.clone(),
        );
        register(
            &mut registry,
            &mut m.families,
            "pipeline_transactions_committed",
            "Transactions a Pipeline's workers committed",
            m.pipeline_transactions_committed.clone(),
        );
        register(
            &mut registry,
            &mut m.families,
            "pipeline_transactions_aborted",
            "Transactions a Pipeline's workers aborted themselves (counted with their next commit)",
            m.pipeline_transactions_aborted.clone(),
        );
        register(
            &mut registry,
            &mut m.families,
            "pipeline_workers_ready",
            "Ready worker pods of a Pipeline",
            m.pipeline_workers_ready.clone(),
        );
        register(
            &mut registry,
            &mut m.families,
            "pipeline_exactly_once_ready",
            "1 when every exactly-once link of a Pipeline holds",
            m.pipeline_exactly_once_ready.clone(),
        );
        m.registry = Mutex::new(registry);
        m
    }
}

/// Registers `metric` as `name` and records its full name and type (an empty family is not in a
/// scrape, so the scrape cannot say what exists).
fn register<M: prometheus_client::registry::Metric + TypedMetric>(
    registry: &mut Registry,
    families: &mut Vec<(String, MetricType)>,
    name: &str,
    help: &str,
    metric: M,
) {
    families.push((format!("exactly_{name}"), M::TYPE));
    registry.register(name, help, metric);
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Metrics {
    /// The OpenMetrics text exposition of every metric.
    pub fn encode(&self) -> String {
        let registry = self
            .registry
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &registry) {
            tracing::warn!(error = %e, "encoding metrics failed");
        }
        out
    }

    /// Records one reconcile of `kind`: its duration, and its result (`ok` or the error reason).
    pub fn observe_reconcile(&self, kind: &str, seconds: f64, result: &str) {
        self.reconcile_seconds
            .get_or_create(&KindLabels {
                kind: kind.to_string(),
            })
            .observe(seconds);
        self.reconciled(kind, result);
    }

    /// Counts one failed list or watch of the controller of `kind`.
    pub fn watch_failed(&self, kind: &str) {
        self.watch_errors
            .get_or_create(&KindLabels {
                kind: kind.to_string(),
            })
            .inc();
    }

    /// A counter of Kafka requests by API, for [`crate::kafka::KafkaClients::counting`].
    pub fn kafka_request_counter(&self) -> crate::kafka::wire::RequestCounter {
        let family = self.kafka_requests.clone();
        std::sync::Arc::new(move |api: &str| {
            family
                .get_or_create(&ApiLabels {
                    api: api.to_string(),
                })
                .inc();
        })
    }

    /// Kafka requests of `api` counted so far.
    pub fn kafka_requests_of(&self, api: &str) -> u64 {
        self.kafka_requests
            .get_or_create(&ApiLabels {
                api: api.to_string(),
            })
            .get()
    }

    /// The labels of the series of resource `kind` `namespace/name`, recorded so that they
    /// are removed with it ([`Metrics::forget`]). Every per-resource series is named this way.
    pub fn series_of(&self, kind: &'static str, namespace: &str, name: &str) -> ResourceLabels {
        let labels = labels(namespace, name);
        self.resources
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(kind)
            .or_default()
            .entry(labels.clone())
            .or_default();
        labels
    }

    /// Sets a ConsumerGroup's lag per partition to `lags` (topic, partition, lag), removing the
    /// series of partitions it no longer reports.
    pub fn set_group_partition_lags(
        &self,
        namespace: &str,
        name: &str,
        lags: impl IntoIterator<Item = (String, i32, i64)>,
    ) {
        let group = self.series_of(kinds::CONSUMER_GROUP, namespace, name);
        let mut resources = self.resources.lock().unwrap_or_else(|p| p.into_inner());
        let known = resources
            .entry(kinds::CONSUMER_GROUP)
            .or_default()
            .entry(group)
            .or_default();
        let mut now = BTreeSet::new();
        for (topic, partition, lag) in lags {
            self.group_partition_lag
                .get_or_create(&partition_labels(namespace, name, &topic, partition))
                .set(lag);
            now.insert((topic, partition));
        }
        for (topic, partition) in known.difference(&now) {
            self.group_partition_lag
                .remove(&partition_labels(namespace, name, topic, *partition));
        }
        *known = now;
    }

    /// Removes every series of resource `kind` `namespace/name`: it was deleted.
    pub fn forget(&self, kind: &str, namespace: &str, name: &str) {
        let labels = labels(namespace, name);
        let partitions = {
            let mut resources = self.resources.lock().unwrap_or_else(|p| p.into_inner());
            match resources.get_mut(kind).and_then(|r| r.remove(&labels)) {
                Some(partitions) => partitions,
                None => return,
            }
        };
        for family in self.families_of(kind) {
            family.remove(&labels);
        }
        for (topic, partition) in partitions {
            self.group_partition_lag
                .remove(&partition_labels(namespace, name, &topic, partition));
        }
    }

    /// After a relist of `kind` in `namespace` (all namespaces when `None`): removes the series
    /// of the resources there that are not in `present` (deleted while the watch was down).
    pub fn retain(
        &self,
        kind: &str,
        namespace: Option<&str>,
        present: &BTreeSet<(String, String)>,
    ) {
        let gone: Vec<ResourceLabels> = {
            let resources = self.resources.lock().unwrap_or_else(|p| p.into_inner());
            resources
                .get(kind)
                .map(|r| {
                    r.keys()
                        .filter(|l| namespace.is_none_or(|ns| l.namespace == ns))
                        .filter(|l| !present.contains(&(l.namespace.clone(), l.name.clone())))
                        .cloned()
                        .collect()
                })
                .unwrap_or_default()
        };
        for l in gone {
            self.forget(kind, &l.namespace, &l.name);
        }
    }

    /// The families labelled by one resource of `kind`.
    fn families_of(&self, kind: &str) -> Vec<&Family<ResourceLabels, Gauge>> {
        match kind {
            kinds::CLUSTER => vec![&self.cluster_brokers, &self.cluster_exactly_once_ready],
            kinds::CONSUMER_GROUP => vec![&self.group_lag, &self.group_members],
            kinds::PULSAR_CLUSTER => vec![
                &self.pulsar_cluster_exactly_once_ready,
                &self.pulsar_cluster_open_transactions,
                &self.pulsar_cluster_hanging_transactions,
            ],
            kinds::PRODUCER => vec![
                &self.producer_open_transactions,
                &self.producer_hanging_transactions,
                &self.producer_oldest_transaction_seconds,
            ],
            kinds::PIPELINE => vec![
                &self.pipeline_lag,
                &self.pipeline_records_in,
                &self.pipeline_records_out,
                &self.pipeline_dead_lettered,
                &self.pipeline_transactions_committed,
                &self.pipeline_transactions_aborted,
                &self.pipeline_workers_ready,
                &self.pipeline_exactly_once_ready,
            ],
            _ => Vec::new(),
        }
    }

    /// The name of every registered family (`exactly_` prefix), whether or not it has series.
    pub fn family_names(&self) -> Vec<String> {
        self.families.iter().map(|(name, _)| name.clone()).collect()
    }

    /// The names of every series a scrape can show (counters with `_total`, histograms as
    /// `_bucket`, `_sum` and `_count`).
    pub fn exported_names(&self) -> BTreeSet<String> {
        let mut names = BTreeSet::new();
        for (name, type_) in &self.families {
            match type_ {
                MetricType::Counter => {
                    names.insert(format!("{name}_total"));
                }
                MetricType::Histogram => {
                    for suffix in ["_bucket", "_sum", "_count"] {
                        names.insert(format!("{name}{suffix}"));
                    }
                }
                _ => {
                    names.insert(name.clone());
                }
            }
        }
        names
    }

    /// Counts one reconcile of `kind` with its result.
    pub fn reconciled(&self, kind: &str, result: &str) {
        self.reconciles
            .get_or_create(&ReconcileLabels {
                kind: kind.to_string(),
                result: result.to_string(),
            })
            .inc();
    }
}

/// Labels for a namespaced resource.
pub fn labels(namespace: &str, name: &str) -> ResourceLabels {
    ResourceLabels {
        namespace: namespace.to_string(),
        name: name.to_string(),
    }
}

fn partition_labels(namespace: &str, name: &str, topic: &str, partition: i32) -> PartitionLabels {
    PartitionLabels {
        namespace: namespace.to_string(),
        name: name.to_string(),
        topic: topic.to_string(),
        partition: partition.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scrape(metrics: &Metrics) -> Vec<String> {
        metrics
            .encode()
            .lines()
            .filter(|l| !l.starts_with('#'))
            .map(str::to_string)
            .collect()
    }

    fn of(metrics: &Metrics, name: &str) -> Vec<String> {
        scrape(metrics)
            .into_iter()
            .filter(|l| l.contains(&format!("name=\"{name}\"")))
            .collect()
    }

    #[test]
    fn a_deleted_resource_loses_its_series_and_the_others_keep_theirs() {
        let metrics = Metrics::default();
        for name in ["billing", "audit"] {
            let labels = metrics.series_of(kinds::CONSUMER_GROUP, "shop", name);
            metrics.group_lag.get_or_create(&labels).set(7);
            metrics.group_members.get_or_create(&labels).set(1);
            metrics.set_group_partition_lags("shop", name, [("orders".into(), 0, 7)]);
        }
        assert_eq!(of(&metrics, "billing").len(), 3, "{:?}", scrape(&metrics));
        metrics.forget(kinds::CONSUMER_GROUP, "shop", "billing");
        assert_eq!(of(&metrics, "billing"), Vec::<String>::new());
        assert_eq!(of(&metrics, "audit").len(), 3);
    }

    #[test]
    fn a_partition_no_longer_reported_loses_its_lag_series() {
        let metrics = Metrics::default();
        metrics.set_group_partition_lags(
            "shop",
            "billing",
            [("orders".into(), 0, 1), ("orders".into(), 1, 2)],
        );
        metrics.set_group_partition_lags("shop", "billing", [("orders".into(), 1, 3)]);
        let lags: Vec<String> = scrape(&metrics)
            .into_iter()
            .filter(|l| l.starts_with("exactly_consumer_group_partition_lag"))
            .collect();
        assert_eq!(lags.len(), 1, "{lags:?}");
        assert!(lags[0].contains("partition=\"1\"") && lags[0].ends_with(" 3"));
    }

    #[test]
    fn a_relist_removes_the_series_of_resources_no_longer_listed_in_its_namespace_only() {
        let metrics = Metrics::default();
        for (ns, name) in [("a", "kept"), ("a", "gone"), ("b", "other")] {
            let labels = metrics.series_of(kinds::PRODUCER, ns, name);
            metrics
                .producer_open_transactions
                .get_or_create(&labels)
                .set(1);
        }
        let listed = BTreeSet::from([("a".to_string(), "kept".to_string())]);
        metrics.retain(kinds::PRODUCER, Some("a"), &listed);
        assert_eq!(of(&metrics, "kept").len(), 1);
        assert_eq!(of(&metrics, "gone").len(), 0);
        assert_eq!(of(&metrics, "other").len(), 1);
    }

    #[test]
    fn every_per_resource_family_is_removed_with_its_kind() {
        let metrics = Metrics::default();
        for kind in [
            kinds::CLUSTER,
            kinds::CONSUMER_GROUP,
            kinds::PRODUCER,
            kinds::PIPELINE,
            kinds::PULSAR_CLUSTER,
        ] {
            let labels = metrics.series_of(kind, "ns", kind);
            for family in metrics.families_of(kind) {
                family.get_or_create(&labels).set(1);
            }
        }
        let families: usize = [
            kinds::CLUSTER,
            kinds::CONSUMER_GROUP,
            kinds::PRODUCER,
            kinds::PIPELINE,
            kinds::PULSAR_CLUSTER,
        ]
        .iter()
        .map(|k| metrics.families_of(k).len())
        .sum();
        // Every gauge labelled by namespace and name belongs to one kind.
        let per_resource = metrics
            .families
            .iter()
            .filter(|(_, t)| matches!(t, MetricType::Gauge))
            .count();
        // The partition lag is the one gauge labelled by more than the resource.
        assert_eq!(families + 1, per_resource);
        for kind in [
            kinds::CLUSTER,
            kinds::CONSUMER_GROUP,
            kinds::PRODUCER,
            kinds::PIPELINE,
            kinds::PULSAR_CLUSTER,
        ] {
            metrics.forget(kind, "ns", kind);
        }
        assert_eq!(scrape(&metrics), Vec::<String>::new());
    }

    /// The metric names the chart's Grafana dashboard queries.
    fn dashboard_metric_names() -> BTreeSet<String> {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../charts/exactly/dashboards/exactly.json"
        );
        let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
        let dashboard: serde_json::Value =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"));
        let mut exprs = Vec::new();
        collect_exprs(&dashboard, &mut exprs);
        assert!(!exprs.is_empty(), "no queries in {path}");
        let mut names = BTreeSet::new();
        for expr in exprs {
            let mut rest = expr.as_str();
            while let Some(at) = rest.find("exactly_") {
                let name: String = rest[at..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                rest = &rest[at + name.len()..];
                names.insert(name);
            }
        }
        names
    }

    fn collect_exprs(value: &serde_json::Value, out: &mut Vec<String>) {
        match value {
            serde_json::Value::Object(map) => {
                for (key, v) in map {
                    match (key.as_str(), v) {
                        ("expr" | "definition", serde_json::Value::String(e)) => {
                            out.push(e.clone())
                        }
                        _ => collect_exprs(v, out),
                    }
                }
            }
            serde_json::Value::Array(items) => items.iter().for_each(|v| collect_exprs(v, out)),
            _ => {}
        }
    }

    #[test]
    fn every_metric_the_dashboard_queries_is_one_the_operator_exports() {
        let exported = Metrics::default().exported_names();
        let unknown: Vec<String> = dashboard_metric_names()
            .difference(&exported)
            .cloned()
            .collect();
        assert!(
            unknown.is_empty(),
            "the dashboard queries metrics the operator does not export: {unknown:?}; exported: {exported:?}"
        );
    }

    #[test]
    fn the_dashboard_shows_every_metric_family_the_operator_exports() {
        let queried = dashboard_metric_names();
        let missing: Vec<String> = Metrics::default()
            .family_names()
            .into_iter()
            .filter(|family| !queried.iter().any(|q| q.starts_with(family.as_str())))
            .collect();
        assert!(missing.is_empty(), "no dashboard panel shows {missing:?}");
    }
}
