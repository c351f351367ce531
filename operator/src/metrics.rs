//! Prometheus metrics: the live figures status shows at a bounded rate (lag, transactions,
//! exactly-once readiness), plus the operator's own work (reconciles, Kafka admin requests).

use std::sync::Mutex;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Labels naming one resource.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
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

/// Every metric the operator exports.
pub struct Metrics {
    registry: Mutex<Registry>,
    pub reconciles: Family<ReconcileLabels, Counter>,
    pub reconcile_seconds: Family<KindLabels, Histogram, fn() -> Histogram>,
    /// Failed watches (list or watch refused, or broken) of each controller's resources.
    pub watch_errors: Family<KindLabels, Counter>,
    /// Kafka admin requests sent, by API (connection handshakes included).
    pub kafka_requests: Family<ApiLabels, Counter>,
    pub cluster_brokers: Family<ResourceLabels, Gauge>,
    pub cluster_exactly_once_ready: Family<ResourceLabels, Gauge>,
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
        registry.register(
            "reconciles",
            "Reconciles by kind and result (ok or the error reason)",
            m.reconciles.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "How long reconciles take, by kind",
            m.reconcile_seconds.clone(),
        );
        registry.register(
            "watch_errors",
            "Failed lists or watches of the resources a controller follows, by the controller's kind",
            m.watch_errors.clone(),
        );
        registry.register(
            "kafka_admin_requests",
            "Kafka admin requests the operator sent, by API (connection handshakes included)",
            m.kafka_requests.clone(),
        );
        registry.register(
            "cluster_brokers",
            "Brokers a KafkaCluster reported",
            m.cluster_brokers.clone(),
        );
        registry.register(
            "cluster_exactly_once_ready",
            "1 when the cluster's settings meet every exactly-once rule",
            m.cluster_exactly_once_ready.clone(),
        );
        registry.register(
            "consumer_group_lag",
            "Total lag of a ConsumerGroup (records, against the LSO under read_committed)",
            m.group_lag.clone(),
        );
        registry.register(
            "consumer_group_partition_lag",
            "Lag of one partition of a ConsumerGroup",
            m.group_partition_lag.clone(),
        );
        registry.register(
            "consumer_group_members",
            "Members of a ConsumerGroup",
            m.group_members.clone(),
        );
        registry.register(
            "producer_open_transactions",
            "Open transactions of a Producer's transactional ids",
            m.producer_open_transactions.clone(),
        );
        registry.register(
            "producer_hanging_transactions",
            "Hanging transactions on a Producer's topics",
            m.producer_hanging_transactions.clone(),
        );
        registry.register(
            "producer_oldest_transaction_age_seconds",
            "Age of a Producer's oldest open transaction",
            m.producer_oldest_transaction_seconds.clone(),
        );
        registry.register(
            "pipeline_lag",
            "Input records a Pipeline has not processed (against the LSO)",
            m.pipeline_lag.clone(),
        );
        registry.register(
            "pipeline_records_in",
            "Input records a Pipeline's workers consumed and committed",
            m.pipeline_records_in.clone(),
        );
        registry.register(
            "pipeline_records_out",
            "Output records a Pipeline's workers committed",
            m.pipeline_records_out.clone(),
        );
        registry.register(
            "pipeline_dead_lettered",
            "Input records a Pipeline committed to its dead-letter Topic",
            m.pipeline_dead_lettered.clone(),
        );
        registry.register(
            "pipeline_transactions_committed",
            "Transactions a Pipeline's workers committed",
            m.pipeline_transactions_committed.clone(),
        );
        registry.register(
            "pipeline_transactions_aborted",
            "Transactions a Pipeline's workers aborted themselves (counted with their next commit)",
            m.pipeline_transactions_aborted.clone(),
        );
        registry.register(
            "pipeline_workers_ready",
            "Ready worker pods of a Pipeline",
            m.pipeline_workers_ready.clone(),
        );
        registry.register(
            "pipeline_exactly_once_ready",
            "1 when every exactly-once link of a Pipeline holds",
            m.pipeline_exactly_once_ready.clone(),
        );
        m.registry = Mutex::new(registry);
        m
    }
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
