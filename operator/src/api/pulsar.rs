//! `PulsarCluster`: where a Pulsar cluster's brokers are (external mode: the operator connects to
//! a cluster that exists; it does not run Pulsar itself).

use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use super::{Condition, SecretRef};

// clippy takes the repeated `type_ = ...` of separate printcolumn(...) lists for duplicates.
#[allow(clippy::duplicated_attributes)]
/// A Pulsar cluster that Topics refer to with `clusterRef: {kind: PulsarCluster, name: ...}`.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "exactly.dev",
    version = "v1alpha1",
    kind = "PulsarCluster",
    namespaced,
    status = "PulsarClusterStatus",
    shortname = "pc",
    category = "exactly",
    doc = "An Apache Pulsar cluster that exactly-once resources run on: an existing cluster reached through its admin REST API (and its service URL for clients). Its status says whether the brokers meet the rules exactly-once depends on.",
    printcolumn(
        name = "Admin URL",
        type_ = "string",
        json_path = ".spec.external.adminUrl"
    ),
    printcolumn(name = "Version", type_ = "string", json_path = ".status.version"),
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
        name = "Cluster",
        type_ = "string",
        json_path = ".status.clusterName",
        priority = 1
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct PulsarClusterSpec {
    /// An existing Pulsar cluster that the operator connects to but does not manage.
    pub external: PulsarExternal,
}

/// How to reach an existing Pulsar cluster.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct PulsarExternal {
    /// The binary-protocol URL clients connect to, e.g. `pulsar://pulsar-broker.pulsar:6650`
    /// or `pulsar+ssl://pulsar-broker.pulsar:6651`. The operator renders it into client
    /// configurations; it does not connect to it itself.
    #[schemars(
        regex(pattern = r"^pulsar(\+ssl)?://[^\s/]+(/)?$"),
        length(min = 10, max = 4096)
    )]
    pub service_url: String,

    /// The admin REST API of a broker (or a proxy), e.g. `http://pulsar-broker.pulsar:8080`
    /// or `https://pulsar-broker.pulsar:8443`: everything the operator does goes through it.
    #[schemars(
        regex(pattern = r"^https?://[^\s/]+(/)?$"),
        length(min = 8, max = 4096)
    )]
    pub admin_url: String,

    /// A Secret (same namespace) with the connection security: `token`, a JWT sent as a bearer
    /// token to the admin API (token authentication), and `ca.crt`, the CA certificates (PEM)
    /// an `https` admin URL is verified against (the system's when absent). Without it the
    /// operator connects unauthenticated. TLS client certificates are not supported yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<SecretRef>,
}

/// The broker settings exactly-once depends on, as the broker reports them (its runtime
/// configuration).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct PulsarExactlyOnce {
    /// `transactionCoordinatorEnabled`: transactions (produce and acknowledge atomically).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transaction_coordinator_enabled: Option<bool>,
    /// `systemTopicEnabled`: the system topics transactions and topic policies are kept in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_topic_enabled: Option<bool>,
    /// `topicLevelPoliciesEnabled`: policies per topic, which the operator uses to keep
    /// deduplication on for each of its topics.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic_level_policies_enabled: Option<bool>,
    /// `brokerDeduplicationEnabled`: deduplication for topics that set no policy of their own
    /// (the operator's topics always set one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub broker_deduplication_enabled: Option<bool>,
    /// `brokerDeleteInactiveTopicsEnabled`: whether the broker deletes topics without
    /// producers, subscriptions or messages — a declared topic would vanish while idle.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub broker_delete_inactive_topics_enabled: Option<bool>,
}

/// Observed state of a PulsarCluster.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PulsarClusterStatus {
    /// The generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Current conditions (kstatus style): `Ready` says whether the admin API answers,
    /// `ExactlyOnceReady` whether the broker meets every exactly-once rule (naming those failed).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The broker's Pulsar version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The name of the Pulsar cluster the broker belongs to (`clusterName`); tenants the
    /// operator creates are allowed on it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_name: Option<String>,
    /// The broker settings exactly-once depends on; `ExactlyOnceReady` judges them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exactly_once: Option<PulsarExactlyOnce>,
    /// The exactly-once rules the cluster fails (empty when `ExactlyOnceReady` is `True`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failed_rules: Vec<String>,
    /// Transactions open on the cluster's coordinators when last observed; absent while no
    /// coordinator is loaded (no client has used transactions yet) or it cannot be read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub open_transactions: Option<i32>,
    /// Open transactions past their timeout: the coordinator should have aborted them, and
    /// until it does they hold back what consumers of their partitions may read
    /// (`HangingTransactions`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hanging: Vec<PulsarHangingTransaction>,
}

/// A transaction open past its timeout.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct PulsarHangingTransaction {
    /// The transaction's id, `(<mostSigBits>,<leastSigBits>)`.
    pub id: String,
    /// When it was opened (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub opened: Option<String>,
    /// When it timed out (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timed_out: Option<String>,
}

impl PulsarCluster {
    /// The Secret with connection security, if any.
    pub fn secret_ref(&self) -> Option<&SecretRef> {
        self.spec.external.secret_ref.as_ref()
    }
}
