//! The custom resources of `exactly.dev/v1alpha1`. Types only: nothing here talks to a client.
//! Doc comments on fields become `kubectl explain` text, so they are written for users.

pub mod access;
pub mod cluster;
pub mod conditions;
pub mod duration;
pub mod group;
pub mod pipeline;
pub mod producer;
pub mod topic;

pub use access::{AccessDriftPolicy, AccessStatus, Authentication, AuthenticationType};
pub use cluster::{
    ExactlyOnceSettings, ExternalCluster, KafkaCluster, KafkaClusterSpec, KafkaClusterStatus,
    SecretRef,
};
pub use conditions::{Condition, ConditionStatus};
pub use group::{
    ConsumerGroup, ConsumerGroupSpec, ConsumerGroupStatus, GroupMember, Isolation, LagObjective,
    OffsetReset, OffsetResetOutcome, PartitionLag, ResetTarget,
};
pub use pipeline::{Pipeline, PipelineSpec, PipelineStatus};
pub use producer::{
    AbortOutcome, Guarantee, HangingTransaction, Producer, ProducerSpec, ProducerStatus,
    StatefulSetRef, TransactionState,
};
pub use topic::{ConfigDrift, DeletionPolicy, DriftPolicy, Topic, TopicSpec, TopicStatus};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// API group of every resource.
pub const GROUP: &str = "exactly.dev";
/// The one served version.
pub const VERSION: &str = "v1alpha1";
/// Category for `kubectl get exactly`.
pub const CATEGORY: &str = "exactly";

/// A reference to a KafkaCluster in the same namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
pub struct ClusterRef {
    /// Name of the KafkaCluster resource, in the same namespace as this resource.
    pub name: String,
}

/// A reference to a Topic resource in the same namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
pub struct TopicRef {
    /// Name of the Topic resource, in the same namespace as this resource.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}
