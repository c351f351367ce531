//! A workload's own identity on the brokers (`spec.authentication` of a Producer or a
//! ConsumerGroup): a SCRAM user the operator creates, exactly the ACLs the workload's path needs,
//! and the credentials rendered into the workload's client Secret.

use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The workload logs in as its own SCRAM user, allowed only what its path needs.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Authentication {
    /// The SASL mechanism: `ScramSha512` or `ScramSha256`. The operator creates the user
    /// `<namespace>.<kind>.<name>` (kind in lower case) with a random password and grants it
    /// exactly the ACLs of the workload's path: a Producer Write and Describe on its topics and,
    /// with transactions, on the transactional ids `<transactionalIdPrefix>-*`; a ConsumerGroup
    /// Read and Describe on its topics and Read on its group. The credentials go into the Secret
    /// `<name>-client` (keys `username`, `password`, `sasl.jaas.config` for Java clients, `ca.crt`
    /// when the cluster's connection trusts a CA of its own; the properties files carry the
    /// librdkafka settings). Workloads connect where the operator connects to the KafkaCluster,
    /// whose `spec.external.secretRef` must therefore use `SASL_SSL` or `SASL_PLAINTEXT`, and the
    /// operator's user must be allowed to manage users and ACLs (a super user). User and ACLs are
    /// removed when the resource is deleted or this field is removed.
    #[serde(rename = "type")]
    pub type_: AuthenticationType,
    /// What to do when the user's ACLs are changed in Kafka directly: `Revert` (default) grants
    /// again what was removed and revokes what the user holds beyond its path; `Report` leaves
    /// them, lists them in `status.access.drift` and sets `Drifted=True`. A change of the path
    /// (topics, prefix, group) is always applied.
    #[serde(default)]
    pub drift_policy: AccessDriftPolicy,
}

/// The SASL/SCRAM mechanism of a workload's user.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthenticationType {
    /// SCRAM-SHA-512.
    ScramSha512,
    /// SCRAM-SHA-256.
    ScramSha256,
}

/// How ACLs changed in Kafka behind the operator's back are handled.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AccessDriftPolicy {
    /// Restore exactly the ACLs of the workload's path.
    #[default]
    Revert,
    /// Leave them, list the difference in `status.access.drift` and set `Drifted=True`.
    Report,
}

/// The workload's identity on the brokers, as last seen there.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct AccessStatus {
    /// The SCRAM user the workload logs in as; its principal is `User:<user>`.
    pub user: String,
    /// The mechanism of the user's credential, e.g. `SCRAM-SHA-512`.
    pub mechanism: String,
    /// The ACLs granted to the user: exactly those its path needs, e.g.
    /// `Allow User:shop.producer.orders Write Topic orders (literal)`. They are in force on the
    /// brokers, but for what `drift` lists.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub acls: Vec<String>,
    /// With `driftPolicy: Report`: changes made on the brokers behind the operator's back and
    /// left there — granted ACLs the user lacks now (`missing: ...`) and ACLs it holds beyond
    /// its path (`extra: ...`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub drift: Vec<String>,
}
