//! The custom resources of `exactly.dev/v1alpha1`. Types only: nothing here talks to a client.
//! Doc comments on fields become `kubectl explain` text, so they are written for users.

pub mod access;
pub mod cluster;
pub mod conditions;
pub mod duration;
pub mod group;
pub mod pipeline;
pub mod producer;
pub mod pulsar;
pub mod topic;

pub use access::{AccessDriftPolicy, AccessStatus, Authentication, AuthenticationType};
pub use cluster::{
    ExactlyOnceSettings, ExternalCluster, KafkaCluster, KafkaClusterSpec, KafkaClusterStatus,
    SecretRef,
};
pub use conditions::{Condition, ConditionStatus};
pub use group::{
    ConsumerGroup, ConsumerGroupSpec, ConsumerGroupStatus, GroupMember, InitialPosition, Isolation,
    LagObjective, OffsetReset, OffsetResetOutcome, PartitionLag, PulsarSubscription, ResetTarget,
    SubscriptionPartition, SubscriptionStatus,
};
pub use pipeline::{Pipeline, PipelineSpec, PipelineStatus};
pub use producer::{
    AbortOutcome, Guarantee, HangingTransaction, Producer, ProducerSpec, ProducerStatus,
    PulsarProducerState, StatefulSetRef, TransactionState,
};
pub use pulsar::{
    PulsarCluster, PulsarClusterSpec, PulsarClusterStatus, PulsarExactlyOnce, PulsarExternal,
    PulsarHangingTransaction,
};
pub use topic::{
    ConfigDrift, DeletionPolicy, DriftPolicy, PulsarRetention, PulsarTopic, Topic, TopicSpec,
    TopicStatus,
};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// API group of every resource.
pub const GROUP: &str = "exactly.dev";
/// The one served version.
pub const VERSION: &str = "v1alpha1";
/// Category for `kubectl get exactly`.
pub const CATEGORY: &str = "exactly";

/// A reference to the cluster a resource lives on, in the same namespace: a KafkaCluster
/// (the default) or a PulsarCluster.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
pub struct ClusterRef {
    /// Name of the cluster resource, in the same namespace as this resource.
    pub name: String,
    /// Kind of the cluster resource: `KafkaCluster` (default) or `PulsarCluster`.
    #[serde(default, skip_serializing_if = "ClusterKind::is_kafka")]
    pub kind: ClusterKind,
}

impl ClusterRef {
    /// A reference to the KafkaCluster `name`.
    pub fn kafka(name: impl Into<String>) -> Self {
        ClusterRef {
            name: name.into(),
            kind: ClusterKind::KafkaCluster,
        }
    }
}

/// The kinds of cluster resource a `clusterRef` may name: one per messaging system.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
pub enum ClusterKind {
    /// A `KafkaCluster`: Apache Kafka.
    #[default]
    KafkaCluster,
    /// A `PulsarCluster`: Apache Pulsar.
    PulsarCluster,
}

impl ClusterKind {
    /// Whether this is the default kind, `KafkaCluster` (left out when serialized).
    pub fn is_kafka(&self) -> bool {
        *self == ClusterKind::KafkaCluster
    }
}

impl std::fmt::Display for ClusterKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ClusterKind::KafkaCluster => "KafkaCluster",
            ClusterKind::PulsarCluster => "PulsarCluster",
        })
    }
}

/// A reference to a Topic resource in the same namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
pub struct TopicRef {
    /// Name of the Topic resource, in the same namespace as this resource.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}
