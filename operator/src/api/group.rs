//! `ConsumerGroup`: an expected consumer group. The operator observes and asserts (clients create
//! groups); it reports state, members and lag, and runs a guarded one-shot offset reset.

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::access::{AccessStatus, Authentication};
use super::duration::{self, DurationField};
use super::{ClusterRef, Condition, TopicRef};

/// `spec.lagObjective.maxCommitAge`: compared with the time since the group's last commit.
pub const MAX_COMMIT_AGE: DurationField = DurationField {
    path: "spec.lagObjective.maxCommitAge",
    min: std::time::Duration::ZERO,
    max: duration::MAX,
    why: "that is the longest duration Kubernetes can hold",
};

// clippy takes the repeated `type_ = ...` of separate printcolumn(...) lists for duplicates.
#[allow(clippy::duplicated_attributes)]
/// A consumer group the operator watches: state, members, per-partition lag against the last
/// stable offset, and a lag objective.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "exactly.dev",
    version = "v1alpha1",
    kind = "ConsumerGroup",
    namespaced,
    status = "ConsumerGroupStatus",
    shortname = "kcg",
    category = "exactly",
    doc = "An expected consumer group: on a KafkaCluster a Kafka consumer group, whose state, members and lag (against the last stable offset under read_committed) the operator reports; on a PulsarCluster a subscription on every partition of its Topics, created by the operator, whose type, consumers, backlog and unacknowledged messages it reports. Either way it runs guarded one-shot offset resets and never creates consumers.",
    printcolumn(
        name = "Cluster",
        type_ = "string",
        json_path = ".spec.clusterRef.name"
    ),
    printcolumn(name = "State", type_ = "string", json_path = ".status.state"),
    printcolumn(name = "Members", type_ = "integer", json_path = ".status.memberCount"),
    printcolumn(name = "Lag", type_ = "integer", json_path = ".status.totalLag"),
    printcolumn(
        name = "Objective",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"LagObjectiveMet\")].status"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[x_kube(validation = Rule::new("has(self.groupId) == has(oldSelf.groupId) && (!has(self.groupId) || self.groupId == oldSelf.groupId)").message("groupId is immutable: to watch another group, create a new ConsumerGroup resource"))]
#[x_kube(validation = Rule::new("!has(self.clusterRef.kind) || self.clusterRef.kind == 'KafkaCluster' || (!has(self.authentication) && (!has(self.offsetReset) || self.offsetReset.to != 'Offset'))").message("on a PulsarCluster a ConsumerGroup takes no authentication (yet), and offsetReset.to may be Earliest, Latest or Timestamp: Pulsar positions are message ids, not offsets"))]
#[x_kube(validation = Rule::new("!has(self.pulsar) || self.clusterRef.kind == 'PulsarCluster'").message("pulsar settings apply to a ConsumerGroup whose clusterRef.kind is PulsarCluster"))]
#[serde(rename_all = "camelCase")]
pub struct ConsumerGroupSpec {
    /// The KafkaCluster or PulsarCluster (same namespace) the group consumes from.
    pub cluster_ref: ClusterRef,

    /// The Kafka `group.id`, or on Pulsar the subscription name. Defaults to `metadata.name`.
    /// Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 249))]
    pub group_id: Option<String>,

    /// The Topics (same namespace) the group consumes; lag is reported for their partitions.
    #[schemars(length(min = 1, max = 100))]
    pub topics: Vec<TopicRef>,

    /// How lag is measured on Kafka: `ReadCommitted` (default) against the last stable offset,
    /// as a read_committed consumer sees the log; `ReadUncommitted` against the log end. (A
    /// Pulsar subscription's backlog is what the broker counts.)
    #[serde(default)]
    pub isolation: Isolation,

    /// Bounds the group should stay within; `LagObjectiveMet` says whether it does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lag_objective: Option<LagObjective>,

    /// A one-shot offset reset. It runs once per `id`, only while the group has no members
    /// (status says it waits otherwise); the result is kept in `status.lastOffsetReset`. On
    /// Pulsar it resets the subscription's cursor on every partition (`to: Offset` does not
    /// apply there).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset_reset: Option<OffsetReset>,

    /// The group's own identity on the brokers: a SCRAM user allowed only to read its topics
    /// and commit the group's offsets (see `authentication.type`). The operator then renders the
    /// Secret `<name>-client` (key `consumer.properties`: bootstrap servers, `group.id`, the
    /// isolation level and the credentials).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authentication: Option<Authentication>,

    /// Settings of the subscription on a PulsarCluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pulsar: Option<PulsarSubscription>,
}

/// How the operator creates a group's subscription on Pulsar.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct PulsarSubscription {
    /// Where a subscription the operator creates starts: `Earliest` (default: every message
    /// the topic still holds is delivered, and none published from then on is lost to
    /// retention before a consumer comes) or `Latest` (only messages published after it was
    /// created). An existing subscription is never moved by this; use `offsetReset`.
    #[serde(default)]
    pub initial_position: InitialPosition,
}

/// Where a new subscription starts.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum InitialPosition {
    /// The oldest message the topic holds.
    #[default]
    Earliest,
    /// After the last message published.
    Latest,
}

/// The isolation level a group reads with.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Isolation {
    /// Only committed transactional records are visible; lag is counted up to the LSO.
    #[default]
    ReadCommitted,
    /// Every record is visible; lag is counted up to the log end.
    ReadUncommitted,
}

/// Bounds on a group's lag.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct LagObjective {
    /// Most records the group may be behind, summed over its partitions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub max_lag: Option<i64>,
    /// Longest the group may go without committing while it has lag, as a Kubernetes duration:
    /// `90s`, `5m`, `1h30m`, `1.5h`, `500ms` (units h, m, s, ms, us, ns).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    #[x_kube(validation = MAX_COMMIT_AGE.syntax_rule(), validation = MAX_COMMIT_AGE.range_rule())]
    pub max_commit_age: Option<String>,
}

/// A one-shot request to move the group's committed offsets.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[x_kube(validation = Rule::new("self.to != 'Timestamp' || has(self.timestamp)").message("to: Timestamp needs timestamp (RFC 3339, e.g. 2026-01-31T12:00:00Z)"))]
#[x_kube(validation = Rule::new("self.to != 'Offset' || has(self.offset)").message("to: Offset needs offset"))]
#[serde(rename_all = "camelCase")]
pub struct OffsetReset {
    /// Identifies this request: a reset runs once per id. Change it to request another.
    #[schemars(length(min = 1, max = 63))]
    pub id: String,
    /// Where to move every partition of `spec.topics`.
    pub to: ResetTarget,
    /// With `to: Timestamp`: the earliest record at or after this time (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub timestamp: Option<String>,
    /// With `to: Offset`: this offset on every partition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub offset: Option<i64>,
}

/// Where an offset reset moves the group.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResetTarget {
    /// The first offset still in the log.
    Earliest,
    /// The log end: skip everything not yet consumed.
    Latest,
    /// The first record at or after `timestamp`.
    Timestamp,
    /// The given `offset`.
    Offset,
}

/// Observed state of a ConsumerGroup.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ConsumerGroupStatus {
    /// The generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// Current conditions: `Ready` when the group could be described; `LagObjectiveMet`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,

    /// Group state as the coordinator reports it: `Empty`, `Stable`, `PreparingRebalance`,
    /// `CompletingRebalance`, `Dead`, or `Unknown` when the group does not exist yet. On
    /// Pulsar: `Active` (consumers connected) or `Idle` (none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,

    /// Number of members (on Pulsar: distinct consumers connected to the subscription).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub member_count: Option<i32>,

    /// Members (the first 20 by client id).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub members: Vec<GroupMember>,

    /// Total lag over every partition of `spec.topics` (on Pulsar: the subscription's backlog).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_lag: Option<i64>,

    /// The partitions with the most lag (at most 20), then `partitionsOmitted` for the rest.
    /// Kafka only: on Pulsar see `subscription.partitions`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub partitions: Vec<PartitionLag>,

    /// Partitions not listed in `partitions` (their lag is in `totalLag`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partitions_omitted: Option<i32>,

    /// When the operator last saw the group's committed offsets move (RFC 3339); on Pulsar,
    /// when the broker last moved the subscription's acknowledged position.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_commit_seen: Option<String>,

    /// The outcome of the last `spec.offsetReset` request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_offset_reset: Option<OffsetResetOutcome>,

    /// With `spec.authentication`: the group's user and the ACLs in force for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access: Option<AccessStatus>,

    /// On Pulsar: the subscription as the broker reports it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscription: Option<SubscriptionStatus>,
}

/// A group's subscription on Pulsar, summed over the partitions of its topics.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct SubscriptionStatus {
    /// The subscription's name.
    pub name: String,
    /// The subscription type its consumers chose: `Exclusive` or `Failover` (one consumer a
    /// partition: in order), `Key_Shared` (in order per key), `Shared` (any consumer: no
    /// order). Absent while no consumer is connected.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub type_: Option<String>,
    /// Messages not yet acknowledged by the subscription, over every partition.
    pub backlog: i64,
    /// Messages delivered to consumers and not acknowledged yet.
    pub unacked: i64,
    /// Partitions of `spec.topics` on which the subscription exists.
    pub partition_count: i32,
    /// The partitions with the largest backlog (at most 20), then `partitionsOmitted`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub partitions: Vec<SubscriptionPartition>,
    /// Partitions not listed in `partitions` (their backlog is in `backlog`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partitions_omitted: Option<i32>,
}

/// The subscription on one partition.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct SubscriptionPartition {
    /// The partition's full name (`persistent://<tenant>/<namespace>/<topic>-partition-<n>`).
    pub partition: String,
    /// Messages not yet acknowledged on this partition.
    pub backlog: i64,
    /// Messages delivered and not acknowledged yet.
    pub unacked: i64,
    /// Consumers connected to this partition.
    pub consumers: i32,
}

/// One member of a group.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct GroupMember {
    /// The member's `client.id` (on Pulsar: the consumer name).
    pub client_id: String,
    /// The host it connected from (on Pulsar: its address).
    pub host: String,
}

/// Offsets and lag of one partition.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct PartitionLag {
    /// Topic name in Kafka.
    pub topic: String,
    /// Partition index.
    pub partition: i32,
    /// The group's committed offset; absent when it has committed none on this partition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub committed: Option<i64>,
    /// Log-end offset (high watermark).
    pub log_end: i64,
    /// Last stable offset: the first offset of the oldest open transaction, else the log end.
    pub last_stable: i64,
    /// Records the group is behind: LSO (ReadCommitted) or log end, minus committed (or minus the
    /// log start when nothing is committed).
    pub lag: i64,
}

/// What an offset reset request did.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct OffsetResetOutcome {
    /// The request's `id`.
    pub id: String,
    /// `Waiting` (the group has members; it runs once they go), `Applying` (recorded right
    /// before the commit), `Applied`, `Failed`, or `Interrupted`: the operator stopped while
    /// applying it and no offset carries its mark, so it may not have run. A reset runs at most
    /// once: after `Interrupted`, check the offsets and set a new `id` to run it.
    pub result: String,
    /// Details: what it waits for, the offsets set, or the error.
    pub message: String,
    /// When the result was reached (RFC 3339).
    pub time: String,
}
