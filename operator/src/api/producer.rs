//! `Producer`: a logical transactional producer. The operator reserves its `transactional.id`
//! prefix, renders the client configuration exactly-once needs, and reports its transactions.

use std::collections::BTreeMap;

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::access::{AccessStatus, Authentication};
use super::duration::{self, DurationField};
use super::{ClusterRef, Condition, TopicRef};

/// `spec.transactionTimeout`: sent to Kafka as `transaction.timeout.ms`, a 32-bit count of
/// milliseconds; the brokers' own `transaction.max.timeout.ms` is checked when it is rendered.
pub const TRANSACTION_TIMEOUT: DurationField = DurationField {
    path: "spec.transactionTimeout",
    min: std::time::Duration::from_millis(1),
    max: duration::MAX_KAFKA_MILLIS,
    why: "Kafka's transaction.timeout.ms is a 32-bit count of milliseconds",
};

// clippy takes the repeated `type_ = ...` of separate printcolumn(...) lists for duplicates.
#[allow(clippy::duplicated_attributes)]
/// A transactional producer: its client configuration and the state of its transactions.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "exactly.dev",
    version = "v1alpha1",
    kind = "Producer",
    namespaced,
    status = "ProducerStatus",
    shortname = "kp",
    category = "exactly",
    doc = "A logical Kafka producer: the operator reserves its transactional.id prefix, renders its client configuration into the Secret <name>-client, and reports its transactions (open, hanging).",
    printcolumn(
        name = "Cluster",
        type_ = "string",
        json_path = ".spec.clusterRef.name"
    ),
    printcolumn(
        name = "Prefix",
        type_ = "string",
        json_path = ".spec.transactionalIdPrefix"
    ),
    printcolumn(name = "Instances", type_ = "integer", json_path = ".status.instances"),
    printcolumn(
        name = "Open",
        type_ = "integer",
        json_path = ".status.openTransactions"
    ),
    printcolumn(
        name = "Hanging",
        type_ = "integer",
        json_path = ".status.hangingTransactions"
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
#[x_kube(validation = Rule::new("self.transactionalIdPrefix == oldSelf.transactionalIdPrefix").message("transactionalIdPrefix is immutable: a new prefix would orphan open transactions and stop fencing zombies. Create a new Producer instead"))]
#[x_kube(validation = Rule::new("!(has(self.instances) && has(self.statefulSetRef))").message("set either instances or statefulSetRef: with statefulSetRef the instance count is the StatefulSet's replicas"))]
#[x_kube(validation = Rule::new("self.guarantee != 'ExactlyOnce' || !has(self.clientOverrides) || !('transactional.id' in self.clientOverrides)").message("clientOverrides must not set transactional.id: it is <transactionalIdPrefix>-<ordinal>, stable per instance so a restarted instance fences its zombie"))]
#[x_kube(validation = Rule::new("!has(self.clusterRef.kind) || self.clusterRef.kind == 'KafkaCluster' || (!has(self.authentication) && !has(self.consumerGroupRef))").message("authentication and consumerGroupRef are Kafka settings: a Producer on a PulsarCluster takes neither (yet)"))]
#[serde(rename_all = "camelCase")]
pub struct ProducerSpec {
    /// The KafkaCluster (same namespace) the producer writes to.
    pub cluster_ref: ClusterRef,

    /// The Topics (same namespace) the producer writes to. Their transactions and hanging
    /// transactions are reported here.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 100))]
    pub topics: Vec<TopicRef>,

    /// Prefix of the producer's `transactional.id`s: instance `n` uses `<prefix>-<n>`, stable
    /// across restarts so a restarted instance fences its predecessor. Unique per cluster (a second
    /// Producer claiming it reports `ResourceConflict`) and immutable.
    #[schemars(regex(pattern = r"^[a-zA-Z0-9._-]+$"), length(min = 1, max = 200))]
    pub transactional_id_prefix: String,

    /// How many instances run this producer; one `transactional.id` and one properties file
    /// each. Defaults to 1. Leave it out when `statefulSetRef` is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1000))]
    pub instances: Option<i32>,

    /// The StatefulSet (same namespace) that runs this producer: the instance count follows its
    /// `spec.replicas`, so scaling it renders the new instances' properties. Pod `<sts>-<n>`
    /// uses `instance-<n>.properties`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stateful_set_ref: Option<StatefulSetRef>,

    /// `ExactlyOnce` (default): transactions, idempotence, `acks=all`. `AtLeastOnce`: idempotence
    /// and `acks=all` without transactions (no `transactional.id`).
    #[serde(default)]
    pub guarantee: Guarantee,

    /// How long a transaction may stay open before the coordinator aborts it, as a Kubernetes
    /// duration: `60s`, `5m`, `2h`, `1h30m`, `1.5h`, `90000ms` (units h, m, s, ms, us, ns).
    /// At least 1ms; must not exceed the brokers' `transaction.max.timeout.ms` (15m by default).
    /// Defaults to `60s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    #[x_kube(validation = TRANSACTION_TIMEOUT.syntax_rule(), validation = TRANSACTION_TIMEOUT.range_rule())]
    pub transaction_timeout: Option<String>,

    /// Extra producer properties (librdkafka / Java client names), e.g. `linger.ms: "5"`,
    /// `compression.type: zstd`. An override that weakens the guarantee (`acks`,
    /// `enable.idempotence`, `max.in.flight.requests.per.connection` above 5, ...) is refused,
    /// naming the key; so is a key that is not a property name (letters, digits, `.`, `_`, `-`)
    /// and a value with a line break, control character or backslash, which would change other
    /// lines of the rendered properties file.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 64))]
    pub client_overrides: BTreeMap<String, String>,

    /// The producer's own identity on the brokers: a SCRAM user allowed only to write its
    /// topics and use its transactional ids (see `authentication.type`). Without it the
    /// rendered properties carry no credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authentication: Option<Authentication>,

    /// The ConsumerGroup (same namespace) whose offsets this producer commits in its
    /// transactions (read-process-write: `sendOffsetsToTransaction`). With `authentication`,
    /// the producer's user is also granted Read on that group and on the group's topics, which
    /// committing offsets in a transaction needs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consumer_group_ref: Option<ConsumerGroupRef>,
}

/// A reference to a ConsumerGroup in the same namespace.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct ConsumerGroupRef {
    /// Name of the ConsumerGroup resource.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// A reference to a StatefulSet in the same namespace.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct StatefulSetRef {
    /// Name of the StatefulSet.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// The delivery guarantee a producer is configured for.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Guarantee {
    /// Transactions: writes to several partitions (and consumed offsets) commit together or not
    /// at all; read_committed consumers see each record once.
    #[default]
    ExactlyOnce,
    /// Idempotent writes without transactions: no duplicates from retries, but no atomicity.
    AtLeastOnce,
}

/// Observed state of a Producer.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ProducerStatus {
    /// The generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// Current conditions (kstatus style): `Ready` when the client Secret is rendered and the
    /// settings are exactly-once safe; `HangingTransactions` when a transaction pins a partition.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,

    /// The Secret holding the client properties, one key per instance
    /// (`instance-<n>.properties`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_name: Option<String>,

    /// Instances the configuration was rendered for (from `spec.instances` or the StatefulSet).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instances: Option<i32>,

    /// Transactions currently open (state other than Empty/CompleteCommit/CompleteAbort/Dead).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub open_transactions: Option<i32>,

    /// Transactions pinning a partition's last stable offset that the coordinator no longer
    /// tracks (see `hanging`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hanging_transactions: Option<i32>,

    /// State of each `transactional.id` the coordinator knows, by instance.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub transactions: Vec<TransactionState>,

    /// Hanging transactions on the producer's topics, each with what to do.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hanging: Vec<HangingTransaction>,

    /// The outcome of the last `exactly.dev/abort-transaction` request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_abort: Option<AbortOutcome>,

    /// On a PulsarCluster: each instance's producer name and where the broker sees it
    /// connected.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub producer_names: Vec<PulsarProducerState>,

    /// With `spec.authentication`: the producer's user and the ACLs in force for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access: Option<AccessStatus>,
}

/// One producer name of a Producer on a PulsarCluster, as the broker reports it.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct PulsarProducerState {
    /// `<transactionalIdPrefix>-<n>`, the name instance n produces under: the broker
    /// deduplicates by producer name and sequence id, so a restarted instance must reuse it.
    pub name: String,
    /// The topic partitions a producer of this name is connected to now.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub connected_to: Vec<String>,
    /// The highest sequence id of this name in the brokers' last deduplication snapshots, over
    /// the topics' partitions: persisted, so a resend up to it is dropped. Brokers snapshot
    /// every `brokerDeduplicationEntriesInterval` entries (1000 by default) and every
    /// `brokerDeduplicationSnapshotFrequencyInSeconds` (120 s); what came after is recovered
    /// from the log, so the broker may know a higher one. Absent before the first snapshot
    /// that holds the name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_sequence_id: Option<i64>,
}

/// One `transactional.id` as its coordinator reports it.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct TransactionState {
    /// The `transactional.id`, `<prefix>-<n>`.
    pub transactional_id: String,
    /// Coordinator state: `Empty`, `Ongoing`, `PrepareCommit`, `PrepareAbort`,
    /// `CompleteCommit`, `CompleteAbort`, `PrepareEpochFence` or `Dead`.
    pub state: String,
    /// Producer id the coordinator assigned.
    pub producer_id: i64,
    /// Producer epoch; it rises each time an instance restarts and fences its predecessor.
    pub producer_epoch: i32,
    /// The transaction timeout the producer registered, in milliseconds.
    pub timeout_ms: i64,
    /// When the open transaction started (RFC 3339); absent when none is open.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started: Option<String>,
    /// Age of the open transaction in seconds at the last refresh.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub age_seconds: Option<i64>,
    /// Partitions the open transaction has written to, as `topic-partition`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub partitions: Vec<String>,
}

/// A transaction that pins a partition's last stable offset although its coordinator no longer
/// tracks it: every read_committed consumer of that partition stalls until it is aborted.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct HangingTransaction {
    /// The pinned partition, as `topic-partition`.
    pub partition: String,
    /// The producer id holding the transaction open.
    pub producer_id: i64,
    /// Its producer epoch.
    pub producer_epoch: i32,
    /// Offset of the transaction's first record: the partition's last stable offset is stuck here.
    pub start_offset: i64,
    /// When the producer last wrote to the partition (RFC 3339), if the broker knows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_write: Option<String>,
}

/// What an `exactly.dev/abort-transaction` request did.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct AbortOutcome {
    /// The annotation's value: a partition (`topic-partition`) or a `transactional.id`.
    pub target: String,
    /// `Aborted` or `Refused`.
    pub result: String,
    /// What was done, or why not.
    pub message: String,
    /// When (RFC 3339).
    pub time: String,
}
