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
}

/// Observed state of a KafkaCluster.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct KafkaClusterStatus {
    /// The generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Current conditions (kstatus style): `Ready` says whether the brokers answer.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,

    /// The id Kafka gave the cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_id: Option<String>,

    /// Brokers the cluster reported when last reached.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub brokers: Option<i32>,
}
