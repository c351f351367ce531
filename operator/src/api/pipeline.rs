//! `Pipeline`: consume from Topics, transform, produce to Topics, exactly once. The operator runs
//! the workers (a StatefulSet), reserves their `transactional.id` prefix and watches their
//! consumer group (through a Producer and a ConsumerGroup it owns), and aggregates every link of
//! the path into one `ExactlyOnceReady` condition.

use k8s_openapi::api::core::v1::ResourceRequirements;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::duration::{self, DurationField};
use super::{ClusterRef, Condition, TopicRef};

/// The commit interval when the spec names none.
pub const DEFAULT_COMMIT_INTERVAL: &str = "100ms";
/// The transaction timeout when the spec names none (Kafka's producer default).
pub const DEFAULT_TRANSACTION_TIMEOUT: &str = "60s";

/// `spec.commitInterval`: the worker's commit interval, in 32-bit milliseconds. At most a tenth
/// of `transactionTimeout` (a rule on the spec).
pub const COMMIT_INTERVAL: DurationField = DurationField {
    path: "spec.commitInterval",
    min: std::time::Duration::from_millis(1),
    max: duration::MAX_KAFKA_MILLIS,
    why: "the worker counts it in 32-bit milliseconds",
};

/// `spec.transactionTimeout`: the workers' `transaction.timeout.ms`, a 32-bit count of
/// milliseconds; the brokers' `transaction.max.timeout.ms` is checked at reconcile.
pub const TRANSACTION_TIMEOUT: DurationField = DurationField {
    path: "spec.transactionTimeout",
    min: std::time::Duration::from_millis(1),
    max: duration::MAX_KAFKA_MILLIS,
    why: "Kafka's transaction.timeout.ms is a 32-bit count of milliseconds",
};

/// The spec's rule that `commitInterval` is at most a tenth of `transactionTimeout`, with their
/// defaults. Checked only when both are durations: a mistyped one gets its own field's message.
fn commit_interval_within_timeout() -> kube::core::Rule {
    let pattern = duration::PATTERN;
    kube::core::Rule::new(format!(
        "(has(self.commitInterval) && !self.commitInterval.matches('{pattern}')) || \
         (has(self.transactionTimeout) && !self.transactionTimeout.matches('{pattern}')) || \
         duration(has(self.commitInterval) ? self.commitInterval : '{DEFAULT_COMMIT_INTERVAL}').getMilliseconds() * 10 \
         <= duration(has(self.transactionTimeout) ? self.transactionTimeout : '{DEFAULT_TRANSACTION_TIMEOUT}').getMilliseconds()"
    ))
    .message("commitInterval must be at most a tenth of transactionTimeout: a transaction that commits close to its timeout is aborted by the coordinator")
}

// clippy takes the repeated `type_ = ...` of separate printcolumn(...) lists for duplicates.
#[allow(clippy::duplicated_attributes)]
/// An exactly-once consume-transform-produce pipeline between Topics of one KafkaCluster.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "exactly.dev",
    version = "v1alpha1",
    kind = "Pipeline",
    namespaced,
    status = "PipelineStatus",
    shortname = "kpl",
    category = "exactly",
    doc = "An exactly-once pipeline: workers read the input Topics with read_committed, transform each record, and write the output in transactions that also commit the input offsets (KIP-447). The operator runs the workers as the StatefulSet <name>-worker and reports the pipeline's lag, figures and every exactly-once link.",
    printcolumn(name = "Input", type_ = "string", json_path = ".status.input"),
    printcolumn(name = "Output", type_ = "string", json_path = ".status.output"),
    printcolumn(name = "Replicas", type_ = "string", json_path = ".status.workers"),
    printcolumn(name = "Lag", type_ = "integer", json_path = ".status.totalLag"),
    printcolumn(
        name = "EOS",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"ExactlyOnceReady\")].status"
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
#[x_kube(validation = Rule::new("!has(self.output.topicRef) || !self.input.topics.exists(t, t.name == self.output.topicRef.name)").message("output.topicRef must not be one of input.topics: a pipeline reading its own output loops forever"))]
#[x_kube(validation = Rule::new("!has(self.output.route) || !self.input.topics.exists(t, self.output.route.rules.exists(r, r.topicRef.name == t.name) || (has(self.output.route.defaultTopicRef) && self.output.route.defaultTopicRef.name == t.name))").message("no output route may lead to one of input.topics: a pipeline reading its own output loops forever"))]
#[x_kube(validation = Rule::new("!has(self.errorPolicy) || !has(self.errorPolicy.deadLetterTopicRef) || !self.input.topics.exists(t, t.name == self.errorPolicy.deadLetterTopicRef.name)").message("errorPolicy.deadLetterTopicRef must not be one of input.topics"))]
#[x_kube(validation = commit_interval_within_timeout())]
#[x_kube(validation = Rule::new("!has(self.transactionalIdPrefix) || !has(oldSelf.transactionalIdPrefix) || self.transactionalIdPrefix == oldSelf.transactionalIdPrefix").message("transactionalIdPrefix is immutable: a new prefix would leave the old ids' transactions open and stop fencing zombies"))]
#[x_kube(validation = Rule::new("!has(self.clusterRef.kind) || self.clusterRef.kind == 'KafkaCluster'").message("Pipelines run on a KafkaCluster only, for now: Pulsar support covers PulsarCluster and Topic so far"))]
#[serde(rename_all = "camelCase")]
pub struct PipelineSpec {
    /// The KafkaCluster (same namespace) the pipeline reads from and writes to.
    pub cluster_ref: ClusterRef,

    /// What the pipeline reads: the input Topics and its consumer group.
    pub input: PipelineInput,

    /// Where the pipeline writes: one Topic, or a route choosing among several.
    pub output: PipelineOutput,

    /// What happens to each record on the way. Defaults to `Passthrough`.
    #[serde(default)]
    pub transform: Transform,

    /// Worker pods. Input partitions are shared among them (cooperative-sticky assignment);
    /// more workers than input partitions leaves the extra ones idle. Defaults to 1.
    #[serde(default = "default_replicas")]
    #[schemars(range(min = 0, max = 256))]
    pub replicas: i32,

    /// How often a worker commits its transaction (outputs and input offsets together), as a
    /// Kubernetes duration: `100ms`, `1s`, `1m30s`, `1.5s` (units h, m, s, ms, us, ns).
    /// Shorter means fresher output for `read_committed` readers and more commits. Defaults to
    /// `100ms`; at least 1ms and at most a tenth of `transactionTimeout`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    #[x_kube(validation = COMMIT_INTERVAL.syntax_rule(), validation = COMMIT_INTERVAL.range_rule())]
    pub commit_interval: Option<String>,

    /// How long a worker's transaction may stay open before the coordinator aborts it, as a
    /// Kubernetes duration: `60s`, `5m`, `2h`, `1h30m` (units h, m, s, ms, us, ns). At least
    /// 1ms; must not exceed the brokers' `transaction.max.timeout.ms` (15m by default).
    /// Defaults to `60s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    #[x_kube(validation = TRANSACTION_TIMEOUT.syntax_rule(), validation = TRANSACTION_TIMEOUT.range_rule())]
    pub transaction_timeout: Option<String>,

    /// What a worker does with a record the transform cannot handle (not JSON, a filter error,
    /// no route). Defaults to `Stop`.
    #[serde(default)]
    pub error_policy: ErrorPolicy,

    /// Prefix of the workers' `transactional.id`s: worker `n` uses `<prefix>-<n>`, stable
    /// across restarts so a restarted worker fences its predecessor at once. Unique per
    /// cluster among Producers and Pipelines (a younger claim reports `ResourceConflict`).
    /// Defaults to `<namespace>.<name>`. Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[a-zA-Z0-9._-]+$"), length(min = 1, max = 200))]
    pub transactional_id_prefix: Option<String>,

    /// The worker image. Defaults to the operator's own image, which ships `exactly-worker`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 512))]
    pub image: Option<String>,

    /// CPU and memory of each worker container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,

    /// Which nodes the worker pods may run on (their `nodeSelector` and `tolerations`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placement: Option<super::cluster::Placement>,

    /// `true` scales the workers to zero (their open transactions are resolved first by the
    /// fencing of a restart); the group's offsets stay where they were.
    #[serde(default)]
    pub paused: bool,

    /// The workers' own identity on the brokers: a SCRAM user allowed only what the path needs
    /// (Read and Describe on the input topics, Read on the group, Write and Describe on the
    /// output and dead-letter topics and on the transactional ids `<transactionalIdPrefix>-*`).
    /// Without it the workers connect with the KafkaCluster's own credentials. See
    /// `authentication.type`; the credentials are kept in the Secret `<name>-pipeline`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authentication: Option<super::access::Authentication>,
}

fn default_replicas() -> i32 {
    1
}

/// The input side of a pipeline.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(validation = Rule::new("has(self.groupId) == has(oldSelf.groupId) && (!has(self.groupId) || self.groupId == oldSelf.groupId)").message("input.groupId is immutable: a new group would start over from startFrom. Create a new Pipeline instead"))]
#[serde(rename_all = "camelCase")]
pub struct PipelineInput {
    /// The Topics (same namespace) to read, with `isolation.level=read_committed`.
    #[schemars(length(min = 1, max = 20))]
    pub topics: Vec<TopicRef>,

    /// The Kafka `group.id` of the workers; its committed offsets are the pipeline's progress.
    /// Defaults to `<namespace>.<name>` (group ids are global to the Kafka cluster). Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 249))]
    pub group_id: Option<String>,

    /// Where a group with no committed offsets starts: `Earliest` (default) or `Latest`.
    #[serde(default)]
    pub start_from: StartFrom,
}

/// Where a new consumer group starts reading.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum StartFrom {
    /// From the oldest record still in the log.
    #[default]
    Earliest,
    /// From records written after the group first joins.
    Latest,
}

/// The output side of a pipeline: exactly one of `topicRef` and `route`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(validation = Rule::new("has(self.topicRef) != has(self.route)").message("set exactly one of output.topicRef (one Topic) and output.route (a choice among several)"))]
#[serde(rename_all = "camelCase")]
pub struct PipelineOutput {
    /// The one Topic (same namespace) every output record goes to (unless a `Record`-mode jq
    /// transform names another output Topic).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic_ref: Option<TopicRef>,

    /// A rule choosing each record's Topic by its key or a field of its JSON value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route: Option<Route>,
}

/// Routes each output record to a Topic by its key or a field of its JSON value.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(validation = Rule::new("self.by != 'Field' || has(self.field)").message("route.by Field needs route.field, the field's path (e.g. region or customer.country)"))]
#[serde(rename_all = "camelCase")]
pub struct Route {
    /// `Key` (the record's key as text) or `Field` (a field of the JSON value).
    pub by: RouteBy,

    /// With `by: Field`, the dot-separated path of the field, e.g. `region` or
    /// `customer.country`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        regex(pattern = r"^[A-Za-z_][A-Za-z0-9_-]*(\.[A-Za-z_][A-Za-z0-9_-]*)*$"),
        length(max = 253)
    )]
    pub field: Option<String>,

    /// Each value and the Topic (same namespace) its records go to.
    #[schemars(length(min = 1, max = 100))]
    pub rules: Vec<RouteRule>,

    /// Where records matching no rule go. Without it such a record is handled by
    /// `errorPolicy`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_topic_ref: Option<TopicRef>,
}

/// What a route looks at.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum RouteBy {
    /// The record's key, as UTF-8 text.
    Key,
    /// A field of the record's JSON value (`route.field`).
    Field,
}

/// One route: records whose key or field equals `value` go to `topicRef`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RouteRule {
    /// The key or field value, compared as text (a JSON number or boolean as written).
    #[schemars(length(max = 1024))]
    pub value: String,
    /// The Topic (same namespace) these records go to.
    pub topic_ref: TopicRef,
}

/// A built-in transform. Deterministic and without side effects, so that a record replayed after
/// an aborted transaction gives the same output: a transform must not call out (network, time,
/// randomness), as such effects are not rolled back with the transaction.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[x_kube(validation = Rule::new("self.type != 'Jq' || has(self.jq)").message("transform.type Jq needs transform.jq.filter"))]
#[serde(rename_all = "camelCase")]
pub struct Transform {
    /// `Passthrough` (default: key, value and headers copied as they are) or `Jq`.
    #[serde(default, rename = "type")]
    pub type_: TransformType,

    /// With `type: Jq`, the filter and how its results become records.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jq: Option<JqTransform>,
}

/// The kind of transform.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TransformType {
    /// Copy every record unchanged.
    #[default]
    Passthrough,
    /// Run a jq filter over each record's JSON value.
    Jq,
}

/// A jq filter (the jaq dialect) run over each record.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct JqTransform {
    /// The filter. Its input `.` is the record's value parsed as JSON; `$key`, `$headers`,
    /// `$topic`, `$partition`, `$offset` and `$timestamp` describe the record. Each value it
    /// emits is one output record: emitting nothing drops the record (`select(...)`), emitting
    /// several writes several. Functions with effects or varying results (`now`, `env`,
    /// `input`, `debug`, ...) are refused. A value that is not JSON, or a filter error, is
    /// handled by `errorPolicy`. Compiled by the operator when applied: a syntax error is
    /// reported in status.
    #[schemars(length(min = 1, max = 65536))]
    pub filter: String,

    /// `Value` (default): each emitted value is the new record value, the key kept. `Record`:
    /// each emitted value is an object `{"value": ..., "key": "...", "topic": "<Topic
    /// resource name>", "headers": {...}}` (all but `value` optional), to set the key or pick
    /// one of the output Topics.
    #[serde(default)]
    pub output: JqOutput,
}

/// How a jq filter's results become records.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum JqOutput {
    /// Each result is the new value.
    #[default]
    Value,
    /// Each result is an object with `value` and optionally `key`, `topic`, `headers`.
    Record,
}

/// What a worker does with a record the transform cannot handle.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[x_kube(validation = Rule::new("self.action != 'DeadLetter' || has(self.deadLetterTopicRef)").message("errorPolicy.action DeadLetter needs errorPolicy.deadLetterTopicRef, the Topic the records go to"))]
#[serde(rename_all = "camelCase")]
pub struct ErrorPolicy {
    /// `Stop` (default): the worker commits the records before the failed one, with the input
    /// offset at the failed record, and stops consuming; status names the record
    /// (`topic-partition@offset`) and why (`status.stoppedAt`). `DeadLetter`: the record goes, with
    /// the error in its headers, to `deadLetterTopicRef` in the same transaction as the input
    /// offsets (no loss, no duplicate there either), and the pipeline goes on.
    #[serde(default)]
    pub action: ErrorAction,

    /// With `action: DeadLetter`, the Topic (same namespace) rejected records go to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dead_letter_topic_ref: Option<TopicRef>,
}

/// The error policy's action.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ErrorAction {
    /// Stop the pipeline at the record.
    #[default]
    Stop,
    /// Write the record to the dead-letter Topic and go on.
    DeadLetter,
}

/// Observed state of a Pipeline.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PipelineStatus {
    /// The generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// Current conditions (kstatus style): `Ready` (the workers run as declared),
    /// `ExactlyOnceReady` (every link of the path holds; the message names each that fails),
    /// `Reconciling`, `Stalled`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,

    /// The input Kafka topics, comma-separated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<String>,

    /// The output Kafka topics, comma-separated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,

    /// Workers ready over workers desired, e.g. `3/3`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workers: Option<String>,

    /// The workers' consumer group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_id: Option<String>,

    /// The workers' `transactional.id` prefix (worker `n`: `<prefix>-<n>`; the operator also
    /// counts and fences `<prefix>-<n>.<k>`, ids of a worker's further producers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transactional_id_prefix: Option<String>,

    /// Input records not yet processed: the group's lag against the last stable offset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_lag: Option<i64>,

    /// Input records the workers consumed and committed (each exactly once), summed from the
    /// figures they commit with the input offsets, in the same transactions as the outputs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub records_in: Option<i64>,

    /// Output records committed from them (a transform may drop or multiply records).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub records_out: Option<i64>,

    /// Input records committed to the dead-letter Topic instead (`errorPolicy: DeadLetter`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dead_lettered: Option<i64>,

    /// Transactions the workers committed, counted once each in the figures committed with the
    /// input offsets (so exactly: an aborted transaction does not count).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transactions_committed: Option<i64>,

    /// Transactions the workers aborted themselves (a failed produce or commit, partitions lost
    /// in a rebalance, a shutdown that could not commit), counted with their next commit. Not
    /// counted: a transaction a killed worker left open, which the broker aborts when the
    /// worker's successor starts (the broker keeps no count of those); `openTransactions` shows
    /// what is open now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transactions_aborted: Option<i64>,

    /// When the group's committed offsets were last seen to move (a commit of the workers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_commit_seen: Option<String>,

    /// Open transactions of the workers' transactional ids.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub open_transactions: Option<i32>,

    /// Where and why the pipeline stopped under `errorPolicy: Stop`, as
    /// `<topic>-<partition>@<offset>: <reason>` (several joined by `; `): the record's offset is
    /// committed, nothing after it is processed. Fix the transform (or choose `DeadLetter`) and
    /// the workers go on from that record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped_at: Option<String>,

    /// Open transactions of workers the pipeline no longer runs (ordinals at or above
    /// `replicas`, their pods gone). The operator fences each such `transactional.id` (its
    /// transaction aborted) so that none pins the output's last stable offset: 0 once done.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub removed_worker_transactions: Option<i32>,

    /// Hanging transactions on the output Topics.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hanging_transactions: Option<i32>,

    /// The exactly-once links that fail (empty when `ExactlyOnceReady` is `True`), e.g.
    /// `Cluster`, `InputTopics`, `TransactionTimeout`, `PrefixReservation`, `Transform`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failed_links: Vec<String>,

    /// With `spec.authentication`: the workers' user and the ACLs granted to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access: Option<super::access::AccessStatus>,
}
