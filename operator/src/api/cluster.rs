//! `KafkaCluster`: where the brokers are. External mode points at an existing cluster;
//! provisioned mode has the operator run KRaft controllers and brokers itself.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ResourceRequirements, Toleration};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
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
    doc = "A Kafka cluster that exactly-once resources run on: an existing (external) cluster reached through its bootstrap servers, or one the operator provisions (KRaft controllers and brokers).",
    printcolumn(
        name = "Bootstrap",
        type_ = "string",
        json_path = ".status.bootstrapServers"
    ),
    printcolumn(name = "Brokers", type_ = "integer", json_path = ".status.brokers"),
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
#[x_kube(validation = Rule::new("has(self.external) != has(self.provisioned)").message("set exactly one of spec.external (a cluster that exists) or spec.provisioned (one the operator runs)"))]
#[x_kube(validation = Rule::new("has(self.external) == has(oldSelf.external)").message("a cluster cannot switch between external and provisioned: create a new KafkaCluster"))]
#[serde(rename_all = "camelCase")]
pub struct KafkaClusterSpec {
    /// An existing Kafka cluster that the operator connects to but does not manage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external: Option<ExternalCluster>,

    /// A Kafka cluster the operator runs: KRaft controllers and brokers as StatefulSets, with a
    /// broker configuration computed by the exactly-once rules.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provisioned: Option<ProvisionedCluster>,
}

/// A KRaft cluster the operator provisions.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ProvisionedCluster {
    /// Apache Kafka version; the image is `apache/kafka:<version>` unless `image` is set.
    #[serde(default = "default_version")]
    #[schemars(regex(pattern = r"^4\.[0-9]+\.[0-9]+$"))]
    pub version: String,

    /// Container image, when not the official one for `version`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 512))]
    pub image: Option<String>,

    /// `Production` (default): at least 3 brokers and 3 controllers, replication 3, durable.
    /// `Development`: any size down to one combined node; transactions work but a broker loss
    /// loses data.
    #[serde(default)]
    pub profile: Profile,

    /// Run the controller and broker roles in the same pods (`brokers` is then ignored).
    /// Meant for development.
    #[serde(default)]
    pub combined: bool,

    /// The KRaft controllers (the metadata quorum). Defaults to 3 replicas.
    #[serde(default = "default_pool")]
    pub controllers: NodePool,

    /// The brokers. Defaults to 3 replicas.
    #[serde(default = "default_pool")]
    pub brokers: NodePool,

    /// Broker configuration overrides (`server.properties` keys). An override that breaks an
    /// exactly-once rule (unclean leader election, topic auto-creation, replication or min ISR
    /// above what the brokers allow) is refused, naming the key and the rule; keys the operator
    /// sets itself (node ids, roles, listeners, quorum) cannot be overridden.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 128))]
    pub config: BTreeMap<String, String>,

    /// Client listeners besides the plaintext one on 9092 (which the operator and inter-broker
    /// traffic use, inside the cluster network): e.g. TLS with SCRAM logins on 9094.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 4))]
    pub listeners: Vec<Listener>,
    /// Which nodes the controller and broker pods may run on (e.g. dedicated, tainted Kafka
    /// nodes). Changing it rolls the pods one at a time, like a configuration change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placement: Option<Placement>,
}

/// Node placement of a provisioned cluster's pods.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct Placement {
    /// Labels a node must have (the pods' `nodeSelector`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 32))]
    pub node_selector: BTreeMap<String, String>,
    /// Taints the pods tolerate (the pods' `tolerations`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub tolerations: Vec<Toleration>,
}

/// An extra client listener of a provisioned cluster.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[x_kube(validation = Rule::new("self.port != 9092 && self.port != 9093").message("ports 9092 (plaintext clients) and 9093 (controllers) are taken"))]
#[x_kube(validation = Rule::new("!has(self.authentication) || self.authentication == 'None' || has(self.usersSecret)").message("SCRAM authentication needs usersSecret, the Secret with the users to create"))]
#[serde(rename_all = "camelCase")]
pub struct Listener {
    /// Name, lowercase, e.g. `secure`; it becomes the listener's name in Kafka (upper-cased).
    #[schemars(regex(pattern = r"^[a-z][a-z0-9]{0,14}$"))]
    pub name: String,
    /// Port on every broker and on the client Service.
    #[schemars(range(min = 1024, max = 65535))]
    pub port: i32,
    /// Serve TLS with the certificate in this Secret (keys `tls.crt`, `tls.key`, as
    /// cert-manager writes them; the certificate must name the brokers' Service DNS names,
    /// `*.<cluster>-brokers.<namespace>.svc` and `<cluster>-kafka.<namespace>.svc`). Kafka reads
    /// the key only in PKCS#8 (`BEGIN PRIVATE KEY`): with cert-manager set
    /// `privateKey.encoding: PKCS8`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_secret: Option<String>,
    /// `None` (default) or `ScramSha512`: clients log in with SCRAM-SHA-512.
    #[serde(default)]
    pub authentication: ListenerAuthentication,
    /// With SCRAM: a Secret whose keys are user names and values their passwords; the users are
    /// created when the cluster's metadata is first formatted (on the controllers, at the
    /// cluster's creation). Users added to the Secret later are not created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub users_secret: Option<String>,
}

/// How clients authenticate on a listener.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ListenerAuthentication {
    /// No authentication.
    #[default]
    None,
    /// SASL/SCRAM-SHA-512 logins.
    ScramSha512,
}

fn default_version() -> String {
    "4.3.1".into()
}

fn default_pool() -> NodePool {
    NodePool {
        replicas: 3,
        storage: Storage::default(),
        resources: None,
    }
}

/// Durability profile of a provisioned cluster.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Profile {
    /// Replicated and durable: needs 3 or more brokers and controllers.
    #[default]
    Production,
    /// Any size: for laptops and CI.
    Development,
}

/// A set of identical Kafka nodes.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct NodePool {
    /// Number of nodes.
    #[schemars(range(min = 1, max = 100))]
    pub replicas: i32,
    /// Persistent storage of each node.
    #[serde(default)]
    pub storage: Storage,
    /// CPU and memory of each node's container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
}

/// A persistent volume per node.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Storage {
    /// Size of each node's volume, e.g. `100Gi`.
    #[schemars(regex(pattern = r"^[0-9]+(Mi|Gi|Ti)$"))]
    pub size: String,
    /// StorageClass of the volumes; the cluster default when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class: Option<String>,
}

impl Default for Storage {
    fn default() -> Self {
        Storage {
            size: "10Gi".into(),
            class: None,
        }
    }
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

    /// A Secret (same namespace) with the connection security, as Kafka client properties:
    /// `security.protocol` (`PLAINTEXT`, `SSL`, `SASL_PLAINTEXT`, `SASL_SSL`), `sasl.mechanism`
    /// (`PLAIN`, `SCRAM-SHA-256`, `SCRAM-SHA-512`), `sasl.username`, `sasl.password`, and
    /// `ssl.ca.pem` (the CA certificates to trust, PEM; the system's when absent). Without it the
    /// operator connects in plaintext. Mutual TLS and OAUTHBEARER are not supported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<SecretRef>,
}

/// A reference to a Secret in the same namespace.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct SecretRef {
    /// Name of the Secret.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// The broker settings exactly-once depends on, as the brokers report them.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ExactlyOnceSettings {
    /// `transaction.state.log.replication.factor`: copies of the transaction log.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transaction_state_log_replication_factor: Option<i64>,
    /// `transaction.state.log.min.isr`: copies a transaction state change needs to commit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transaction_state_log_min_isr: Option<i64>,
    /// `offsets.topic.replication.factor`: copies of committed consumer offsets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offsets_topic_replication_factor: Option<i64>,
    /// `default.replication.factor`: replication of topics created without one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_replication_factor: Option<i64>,
    /// `min.insync.replicas` (broker default for topics that do not set it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_insync_replicas: Option<i64>,
    /// `unclean.leader.election.enable`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unclean_leader_election_enable: Option<bool>,
    /// `transaction.max.timeout.ms`: the longest transaction timeout a producer may ask for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transaction_max_timeout_ms: Option<i64>,
    /// The finalized `transaction.version` feature (2 = KIP-890 server-side defense).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transaction_version: Option<i32>,
    /// Where these settings come from: `Observed`, as the brokers report them, or `Computed`,
    /// as the operator rendered them for a provisioned cluster whose brokers it has not reached
    /// (yet); `transactionVersion` is known only once they answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<SettingsSource>,
}

/// Whether broker settings were reported by the brokers or computed by the operator.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum SettingsSource {
    /// Reported by the brokers (DescribeConfigs and the finalized features).
    Observed,
    /// Rendered by the operator into the provisioned brokers' configuration; not yet confirmed
    /// by the brokers.
    Computed,
}

/// Observed state of a KafkaCluster.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct KafkaClusterStatus {
    /// The generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Current conditions (kstatus style): `Ready` says whether the brokers answer,
    /// `ExactlyOnceReady` whether their settings meet every exactly-once rule (naming those failed).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,

    /// The id Kafka gave the cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_id: Option<String>,

    /// Brokers the cluster reported when last reached.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub brokers: Option<i32>,

    /// The broker settings exactly-once depends on; `ExactlyOnceReady` judges them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exactly_once: Option<ExactlyOnceSettings>,

    /// The exactly-once rules the cluster fails (empty when `ExactlyOnceReady` is `True`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failed_rules: Vec<String>,

    /// Where clients connect: `spec.external.bootstrapServers`, or the provisioned cluster's
    /// client Service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bootstrap_servers: Option<String>,

    /// Partitions (of every topic, internal ones included) with fewer in-sync replicas than
    /// replicas when the provisioned brokers were last observed; `ExactlyOnceReady` names them
    /// under the rule `ReplicasInSync`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub under_replicated_partitions: Option<i32>,

    /// Ready pods per role of a provisioned cluster, e.g. `controllers: 3`, `brokers: 3`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub ready_replicas: BTreeMap<String, i32>,
}

impl KafkaCluster {
    /// Where clients connect: the external bootstrap servers, or the provisioned cluster's
    /// client Service (`<name>-kafka.<namespace>.svc:9092`).
    pub fn bootstrap_servers(&self) -> String {
        match (&self.spec.external, &self.spec.provisioned) {
            (Some(external), _) => external.bootstrap_servers.clone(),
            (None, _) => format!(
                "{}-kafka.{}.svc:9092",
                self.metadata.name.clone().unwrap_or_default(),
                self.metadata.namespace.clone().unwrap_or_default()
            ),
        }
    }

    /// The Secret with connection security (external clusters only).
    pub fn secret_ref(&self) -> Option<&SecretRef> {
        self.spec
            .external
            .as_ref()
            .and_then(|e| e.secret_ref.as_ref())
    }
}
