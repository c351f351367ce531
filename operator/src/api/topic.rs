//! `Topic`: a Kafka topic the operator creates (or adopts) and keeps as declared.

use std::collections::BTreeMap;

use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use super::{ClusterRef, Condition};

// clippy takes the repeated `type_ = ...` of separate printcolumn(...) lists for duplicates.
#[allow(clippy::duplicated_attributes)]
/// A Kafka topic, created on the referenced cluster with the declared partitions,
/// replication and configuration.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "exactly.dev",
    version = "v1alpha1",
    kind = "Topic",
    namespaced,
    status = "TopicStatus",
    shortname = "kt",
    category = "exactly",
    doc = "A Kafka topic, created on the referenced KafkaCluster with the declared partitions, replication and configuration.",
    printcolumn(
        name = "Cluster",
        type_ = "string",
        json_path = ".spec.clusterRef.name"
    ),
    printcolumn(
        name = "Partitions",
        type_ = "integer",
        json_path = ".status.partitions"
    ),
    printcolumn(
        name = "Replication",
        type_ = "integer",
        json_path = ".status.replicationFactor"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason",
        priority = 1
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[x_kube(validation = Rule::new("has(self.topicName) == has(oldSelf.topicName) && (!has(self.topicName) || self.topicName == oldSelf.topicName)").message("topicName is immutable: to use another Kafka topic, create a new Topic resource"))]
#[serde(rename_all = "camelCase")]
pub struct TopicSpec {
    /// The KafkaCluster (same namespace) on which the topic lives.
    pub cluster_ref: ClusterRef,

    /// Name of the topic in Kafka. Defaults to `metadata.name`. Immutable.
    /// Kafka allows letters, digits, `.`, `_` and `-`, up to 249 characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[a-zA-Z0-9._-]+$"), length(min = 1, max = 249))]
    pub topic_name: Option<String>,

    /// Number of partitions.
    #[schemars(range(min = 1, max = 100000))]
    pub partitions: i32,

    /// Copies of each partition. Defaults to the cluster's `default.replication.factor`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 32767))]
    pub replication_factor: Option<i32>,

    /// Topic-level Kafka configuration, e.g. `retention.ms: "604800000"`,
    /// `min.insync.replicas: "2"`. Keys not listed keep the broker's defaults.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub config: BTreeMap<String, String>,
}

/// Observed state of a Topic.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TopicStatus {
    /// The generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// Current conditions (kstatus style): `Ready` is `True` once the topic exists as declared.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,

    /// Name of the topic in Kafka.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic_name: Option<String>,

    /// Partitions the topic has on the broker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partitions: Option<i32>,

    /// Replication factor the topic has on the broker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replication_factor: Option<i32>,
}

impl Topic {
    /// The topic's name in Kafka: `spec.topicName`, else `metadata.name`.
    pub fn kafka_topic_name(&self) -> String {
        self.spec
            .topic_name
            .clone()
            .or_else(|| self.metadata.name.clone())
            .unwrap_or_default()
    }
}
