//! The plain data types the calls take and return.

use std::collections::BTreeMap;
use std::fmt;

/// A partition of a topic.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TopicPartition {
    /// Topic name.
    pub topic: String,
    /// Partition index.
    pub partition: i32,
}

impl TopicPartition {
    /// The partition `partition` of `topic`.
    pub fn new(topic: impl Into<String>, partition: i32) -> Self {
        TopicPartition {
            topic: topic.into(),
            partition,
        }
    }
}

impl fmt::Display for TopicPartition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.topic, self.partition)
    }
}

/// The cluster as `Metadata` reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterMetadata {
    /// The cluster id (`None` only from very old brokers).
    pub cluster_id: Option<String>,
    /// The active controller's id as brokers see it (-1 when unknown; KRaft brokers report a
    /// random broker here since clients cannot reach the controllers).
    pub controller_id: i32,
    /// Brokers, sorted by id.
    pub brokers: Vec<BrokerMetadata>,
    /// Topics, sorted by name. Topics asked for that do not exist are left out.
    pub topics: Vec<TopicMetadata>,
}

impl ClusterMetadata {
    /// The topic called `name`, if it was reported.
    pub fn topic(&self, name: &str) -> Option<&TopicMetadata> {
        self.topics.iter().find(|t| t.name == name)
    }
}

/// One broker of the cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BrokerMetadata {
    /// Node id.
    pub id: i32,
    /// Advertised host.
    pub host: String,
    /// Advertised port.
    pub port: i32,
    /// Rack, when configured.
    pub rack: Option<String>,
}

/// One topic of the cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicMetadata {
    /// Topic name.
    pub name: String,
    /// Topic id in Kafka's text form (22 characters of URL-safe base64, as `kafka-topics.sh`
    /// prints it).
    pub topic_id: String,
    /// Whether this is one of Kafka's internal topics (`__consumer_offsets`, ...).
    pub internal: bool,
    /// Partitions, sorted by index.
    pub partitions: Vec<PartitionMetadata>,
}

/// One partition of a topic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionMetadata {
    /// Partition index.
    pub partition: i32,
    /// Leader's node id, -1 when there is none.
    pub leader: i32,
    /// Leader epoch, -1 when unknown.
    pub leader_epoch: i32,
    /// Node ids of all replicas.
    pub replicas: Vec<i32>,
    /// Node ids of the in-sync replicas.
    pub isr: Vec<i32>,
    /// Node ids of the replicas that are offline.
    pub offline_replicas: Vec<i32>,
}

/// Where a configuration value comes from (Kafka's `ConfigSource`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConfigSource {
    /// Set on the topic itself.
    DynamicTopic,
    /// Set dynamically for this broker.
    DynamicBroker,
    /// Set dynamically as the default of every broker.
    DynamicDefaultBroker,
    /// From the broker's properties file.
    StaticBroker,
    /// Kafka's built-in default.
    Default,
    /// Any other source, by Kafka's id (0 unknown, 6 broker logger, 7 client metrics, 8 group).
    Other(i8),
}

impl ConfigSource {
    pub(crate) fn from_id(id: i8) -> Self {
        match id {
            1 => ConfigSource::DynamicTopic,
            2 => ConfigSource::DynamicBroker,
            3 => ConfigSource::DynamicDefaultBroker,
            4 => ConfigSource::StaticBroker,
            5 => ConfigSource::Default,
            other => ConfigSource::Other(other),
        }
    }
}

/// One configuration entry of a topic or broker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigEntry {
    /// The value; `None` when unset or sensitive.
    pub value: Option<String>,
    /// Where the value comes from.
    pub source: ConfigSource,
    /// Whether it cannot be changed at runtime.
    pub read_only: bool,
    /// Whether the value is a secret (and therefore not returned).
    pub sensitive: bool,
}

/// Which offset `ListOffsets` should look up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OffsetSpec {
    /// The log start offset.
    Earliest,
    /// The log end offset, or the last stable offset under [`Isolation::ReadCommitted`].
    Latest,
    /// The first offset whose timestamp is at or after this many milliseconds since the epoch
    /// (-1 in the answer when there is none).
    Timestamp(i64),
}

impl OffsetSpec {
    pub(super) fn timestamp(self) -> i64 {
        match self {
            OffsetSpec::Earliest => -2,
            OffsetSpec::Latest => -1,
            OffsetSpec::Timestamp(ms) => ms,
        }
    }
}

/// The isolation level of an offset lookup.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Isolation {
    /// See every record, including those of open and aborted transactions.
    ReadUncommitted,
    /// See only committed records: `Latest` is the last stable offset.
    ReadCommitted,
}

/// A consumer group as `ListGroups` reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupListing {
    /// Group id.
    pub group_id: String,
    /// Protocol type (`consumer` for consumer groups, empty for groups that only hold offsets).
    pub protocol_type: String,
    /// State (`Empty`, `Stable`, ...), from brokers speaking `ListGroups` v4+.
    pub state: Option<String>,
    /// Group type (`classic`, `consumer`, `share`, `streams`), from `ListGroups` v5+.
    pub group_type: Option<String>,
}

/// A classic consumer group as `DescribeGroups` reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupDescription {
    /// Group id.
    pub group_id: String,
    /// State: `Empty`, `Stable`, `PreparingRebalance`, `CompletingRebalance` or `Dead` (a group
    /// that does not exist, from brokers before `DescribeGroups` v6).
    pub state: String,
    /// Protocol type, e.g. `consumer`.
    pub protocol_type: String,
    /// The chosen protocol, e.g. the assignor (`range`, ...).
    pub protocol: String,
    /// Members, as the coordinator lists them.
    pub members: Vec<GroupMember>,
}

/// One member of a consumer group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupMember {
    /// Member id assigned by the coordinator.
    pub member_id: String,
    /// Static membership id, when the member set one.
    pub group_instance_id: Option<String>,
    /// The member's `client.id`.
    pub client_id: String,
    /// The member's host as the broker saw it.
    pub client_host: String,
    /// Topics assigned to the member (decoded for the `consumer` protocol; empty otherwise).
    pub assigned_topics: Vec<String>,
}

/// A transaction as `ListTransactions` reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TransactionListing {
    /// Transactional id.
    pub transactional_id: String,
    /// Producer id currently holding the transactional id.
    pub producer_id: i64,
    /// State, e.g. `Ongoing`, `PrepareCommit`, `CompleteCommit`, `Empty`.
    pub state: String,
}

/// A transaction as its coordinator describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TransactionDescription {
    /// Transactional id.
    pub transactional_id: String,
    /// Node id of the transaction coordinator.
    pub coordinator: i32,
    /// State, e.g. `Ongoing`.
    pub state: String,
    /// Producer id.
    pub producer_id: i64,
    /// Producer epoch.
    pub producer_epoch: i16,
    /// Transaction timeout in milliseconds.
    pub timeout_ms: i32,
    /// When the current transaction started, in milliseconds since the epoch; -1 when none is
    /// open.
    pub start_time_ms: i64,
    /// Partitions in the current transaction, sorted.
    pub partitions: Vec<TopicPartition>,
}

/// A producer with state on a partition, as `DescribeProducers` reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProducerState {
    /// Producer id.
    pub producer_id: i64,
    /// Producer epoch.
    pub producer_epoch: i16,
    /// Sequence number of the producer's last record on this partition.
    pub last_sequence: i32,
    /// Timestamp of the producer's last record on this partition.
    pub last_timestamp: i64,
    /// Epoch of the coordinator that wrote the producer's last transaction marker (-1 if none).
    pub coordinator_epoch: i32,
    /// First offset of the producer's open transaction on this partition; -1 when none is open.
    pub current_txn_start_offset: i64,
}

/// Committed offsets (with their commit metadata) of each group, by partition.
pub type CommittedOfGroups = BTreeMap<String, BTreeMap<TopicPartition, (i64, String)>>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_partition_displays_like_kafka() {
        assert_eq!(TopicPartition::new("orders", 3).to_string(), "orders-3");
    }
}
