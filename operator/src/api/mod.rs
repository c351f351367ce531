//! The custom resources of `exactly.dev/v1alpha1`. Types only: nothing here talks to a client.
//! Doc comments on fields become `kubectl explain` text, so they are written for users.

pub mod cluster;
pub mod conditions;
pub mod topic;

pub use cluster::{ExternalCluster, KafkaCluster, KafkaClusterSpec, KafkaClusterStatus};
pub use conditions::{Condition, ConditionStatus};
pub use topic::{Topic, TopicSpec, TopicStatus};

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
