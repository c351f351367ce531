//! `KafkaCluster`: where the brokers are. External mode points at an existing cluster;
//! provisioned mode (brokers the operator creates) will sit beside it as `spec.provisioned`.

use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use super::Condition;

// clippy takes the repeated `type_ = ...` of separate printcolumn(...) lists for duplicates.
#[allow(clippy::duplicated_attributes)]
/// A Kafka cluster that Topics, Producers and ConsumerGroups refer to by name.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "exactly.dev",
    version = "v1alpha1",
    kind = "KafkaCluster",
    namespaced,
    status = "KafkaClusterStatus",
    shortname = "kc",
    category = "exactly",
    doc = "A Kafka cluster that exactly-once resources run on: an existing (external) cluster reached through its bootstrap servers.",
    printcolumn(
        name = "Bootstrap",
        type_ = "string",
        json_path = ".spec.external.bootstrapServers"
    ),
    printcolumn(name = "Brokers", type_ = "integer", json_path = ".status.brokers"),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "EOS",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"ExactlyOnceReady\")].status"
    ),
    printcolumn(
        name = "Cluster ID",
        type_ = "string",
        json_path = ".status.clusterId",
        priority = 1
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct KafkaClusterSpec {
    /// An existing Kafka cluster that the operator connects to but does not manage.
    /// Required until provisioned clusters are supported.
    pub external: ExternalCluster,
}

/// Connection to a Kafka cluster the operator does not run.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ExternalCluster {
    /// Comma-separated `host:port` list of brokers to bootstrap from, e.g.
    /// `kafka-0.kafka:9092,kafka-1.kafka:9092`.
    #[schemars(
        regex(
            pattern = r"^([^,:\s\[\]]+|\[[0-9a-fA-F:.]+\]):[0-9]{1,5}(,\s*([^,:\s\[\]]+|\[[0-9a-fA-F:.]+\]):[0-9]{1,5})*$"
        ),
        length(min = 3, max = 4096)
    )]
    pub bootstrap_servers: String,

    /// A Secret (same namespace) with the connection security, as Kafka client properties:
    /// `security.protocol` (`PLAINTEXT`, `SSL`, `SASL_PLAINTEXT`, `SASL_SSL`), `sasl.mechanism`
    /// (`PLAIN`, `SCRAM-SHA-256`, `SCRAM-SHA-512`), `sasl.username`, `sasl.password`, and
    /// `ssl.ca.pem` (the CA certificates to trust, PEM; the system's when absent). Without it the
    /// operator connects in plaintext. Mutual TLS and OAUTHBEARER are not supported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<SecretRef>,
}

/// A reference to a Secret in the same namespace.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct SecretRef {
    /// Name of the Secret.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// The broker settings exactly-once depends on, as the brokers report them.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ExactlyOnceSettings {
    /// `transaction.state.log.replication.factor`: copies of the transaction log.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transaction_state_log_replication_factor: Option<i64>,
    /// `transaction.state.log.min.isr`: copies a transaction state change needs to commit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transaction_state_log_min_isr: Option<i64>,
    /// `offsets.topic.replication.factor`: copies of committed consumer offsets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offsets_topic_replication_factor: Option<i64>,
    /// `default.replication.factor`: replication of topics created without one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_replication_factor: Option<i64>,
    /// `min.insync.replicas` (broker default for topics that do not set it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_insync_replicas: Option<i64>,
    /// `unclean.leader.election.enable`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unclean_leader_election_enable: Option<bool>,
    /// `transaction.max.timeout.ms`: the longest transaction timeout a producer may ask for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transaction_max_timeout_ms: Option<i64>,
    /// The finalized `transaction.version` feature (2 = KIP-890 server-side defense).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transaction_version: Option<i32>,
}

/// Observed state of a KafkaCluster.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct KafkaClusterStatus {
    /// The generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Current conditions (kstatus style): `Ready` says whether the brokers answer,
    /// `ExactlyOnceReady` whether their settings meet every exactly-once rule (naming those failed).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,

    /// The id Kafka gave the cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_id: Option<String>,

    /// Brokers the cluster reported when last reached.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub brokers: Option<i32>,

    /// The broker settings exactly-once depends on; `ExactlyOnceReady` judges them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exactly_once: Option<ExactlyOnceSettings>,

    /// The exactly-once rules the cluster fails (empty when `ExactlyOnceReady` is `True`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failed_rules: Vec<String>,
}
