//! `Topic`: a Kafka topic the operator creates (or adopts) and keeps as declared.

use std::collections::BTreeMap;

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
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
#[x_kube(validation = Rule::new("self.partitions >= oldSelf.partitions").message("partitions may only grow: Kafka cannot remove partitions. Keep spec.partitions at or above its current value"))]
#[x_kube(validation = Rule::new("!has(self.config) || !('unclean.leader.election.enable' in self.config) || self.config['unclean.leader.election.enable'].lowerAscii() != 'true'").message("unclean.leader.election.enable must not be true: an unclean election loses committed records and breaks exactly-once. Remove the key or set it to \"false\""))]
#[x_kube(validation = Rule::new("!has(self.config) || !('min.insync.replicas' in self.config) || self.config['min.insync.replicas'].matches('^[0-9]{1,5}$')").message("min.insync.replicas must be a whole number, e.g. \"2\""))]
#[x_kube(validation = Rule::new("!has(self.config) || !('min.insync.replicas' in self.config) || !has(self.replicationFactor) || !self.config['min.insync.replicas'].matches('^[0-9]{1,5}$') || int(self.config['min.insync.replicas']) < self.replicationFactor || self.replicationFactor == 1").message("min.insync.replicas must be below replicationFactor, or a single broker outage stops every transactional write: lower min.insync.replicas or raise replicationFactor"))]
#[x_kube(validation = Rule::new("!has(self.config) || !('min.insync.replicas' in self.config) || !has(self.replicationFactor) || self.replicationFactor < 3 || !self.config['min.insync.replicas'].matches('^[0-9]{1,5}$') || int(self.config['min.insync.replicas']) >= 2").message("min.insync.replicas must be at least 2 when replicationFactor is 3 or more, or an acknowledged write can live on one broker only: set min.insync.replicas to 2 (or replicationFactor - 1)"))]
#[x_kube(validation = Rule::new("!has(self.pulsar) || (has(self.clusterRef.kind) && self.clusterRef.kind == 'PulsarCluster')").message("spec.pulsar applies to topics on a PulsarCluster: remove it, or set spec.clusterRef.kind: PulsarCluster"))]
#[x_kube(validation = Rule::new("!has(self.clusterRef.kind) || self.clusterRef.kind != 'PulsarCluster' || (!has(self.replicationFactor) && !has(self.config))").message("replicationFactor and config are Kafka settings: on a PulsarCluster replication is the namespace's, and topic policies go in spec.pulsar"))]
#[x_kube(validation = Rule::new("(has(self.clusterRef.kind) ? self.clusterRef.kind : 'KafkaCluster') == (has(oldSelf.clusterRef.kind) ? oldSelf.clusterRef.kind : 'KafkaCluster')").message("clusterRef.kind is immutable: a topic cannot move between messaging systems. Create a new Topic"))]
#[serde(rename_all = "camelCase")]
pub struct TopicSpec {
    /// The cluster (same namespace) on which the topic lives: a KafkaCluster, or a
    /// PulsarCluster with `kind: PulsarCluster`.
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
    #[schemars(extend("maxProperties" = 256))]
    pub config: BTreeMap<String, String>,

    /// What deleting this resource does to the Kafka topic: `Retain` (default) leaves the topic
    /// and its data; `Delete` deletes the topic, but refuses (and keeps the resource, saying why
    /// in status) while it has open transactions or a consumer group with members.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,

    /// What to do when the topic's configuration is changed directly in Kafka, away from
    /// `spec.config`. Only configs set on the topic itself count, never broker defaults.
    /// `Revert` (default) sets them back; `Report` lists them in `status.drift` and sets the
    /// `Drifted` condition; `Ignore` leaves them. A change of this spec is always applied in full.
    #[serde(default)]
    pub drift_policy: DriftPolicy,

    /// Where the topic lives on a PulsarCluster, and its policies there. Only with
    /// `clusterRef.kind: PulsarCluster`; the topic is persistent and partitioned, with
    /// deduplication kept on as a topic policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pulsar: Option<PulsarTopic>,
}

/// A topic's place and policies on a PulsarCluster.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct PulsarTopic {
    /// The Pulsar tenant. Created when missing (allowed on the broker's cluster); never
    /// deleted by the operator. Not to be changed once the topic exists (the operator refuses
    /// to move a topic, and says so in status).
    #[serde(default = "default_tenant")]
    #[schemars(regex(pattern = r"^[a-zA-Z0-9._-]+$"), length(min = 1, max = 128))]
    pub tenant: String,
    /// The namespace in the tenant. Created when missing; never deleted by the operator.
    #[serde(default = "default_namespace")]
    #[schemars(regex(pattern = r"^[a-zA-Z0-9._-]+$"), length(min = 1, max = 128))]
    pub namespace: String,
    /// How long acknowledged messages are kept, as a topic policy; absent: the namespace's or
    /// broker's retention applies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention: Option<PulsarRetention>,
}

fn default_tenant() -> String {
    "public".into()
}

fn default_namespace() -> String {
    "default".into()
}

impl Default for PulsarTopic {
    fn default() -> Self {
        PulsarTopic {
            tenant: default_tenant(),
            namespace: default_namespace(),
            retention: None,
        }
    }
}

/// Pulsar's retention of acknowledged messages: kept until both limits are passed.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct PulsarRetention {
    /// Minutes acknowledged messages are kept; `-1` for ever, `0` not at all.
    #[schemars(range(min = -1, max = 52560000))]
    pub minutes: i64,
    /// Megabytes of acknowledged messages kept; `-1` without limit, `0` none.
    #[schemars(range(min = -1, max = 1073741824))]
    pub size_mb: i64,
}

/// What deleting a Topic resource does to the Kafka topic.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DeletionPolicy {
    /// Keep the topic and its data in Kafka.
    #[default]
    Retain,
    /// Delete the topic from Kafka, unless it has open transactions or active consumer groups.
    Delete,
}

/// How configuration drift made directly in Kafka is handled.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DriftPolicy {
    /// Set the topic's configuration back to `spec.config`.
    #[default]
    Revert,
    /// Leave it, list the differences in `status.drift` and set `Drifted=True`.
    Report,
    /// Leave it and say nothing.
    Ignore,
}

/// One configuration key whose value in Kafka differs from `spec.config`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ConfigDrift {
    /// The configuration key, e.g. `retention.ms`.
    pub key: String,
    /// The value `spec.config` declares; absent when the key is not declared.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected: Option<String>,
    /// The value set on the topic in Kafka; absent when it is not set on the topic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actual: Option<String>,
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

    /// The id Kafka gave the topic. A different id under the same name means the topic was
    /// deleted and created again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic_id: Option<String>,

    /// The configuration set on the topic itself in Kafka (broker defaults are not listed).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub config: BTreeMap<String, String>,

    /// Keys whose value in Kafka differs from `spec.config` (with `driftPolicy: Report`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub drift: Vec<ConfigDrift>,
}

impl Topic {
    /// Whether the topic lives on a PulsarCluster.
    pub fn on_pulsar(&self) -> bool {
        self.spec.cluster_ref.kind == super::ClusterKind::PulsarCluster
    }

    /// The topic's name in its messaging system: on Kafka [`Topic::kafka_topic_name`], on
    /// Pulsar `persistent://<tenant>/<namespace>/<name>`.
    pub fn system_topic_name(&self) -> String {
        if self.on_pulsar() {
            let place = self.spec.pulsar.clone().unwrap_or_default();
            format!(
                "persistent://{}/{}/{}",
                place.tenant,
                place.namespace,
                self.kafka_topic_name_ref()
            )
        } else {
            self.kafka_topic_name()
        }
    }

    /// The topic's name in Kafka: `spec.topicName`, else `metadata.name`.
    pub fn kafka_topic_name_ref(&self) -> &str {
        self.spec
            .topic_name
            .as_deref()
            .or(self.metadata.name.as_deref())
            .unwrap_or_default()
    }

    /// [`Topic::kafka_topic_name_ref`], owned.
    pub fn kafka_topic_name(&self) -> String {
        self.kafka_topic_name_ref().to_string()
    }
}
