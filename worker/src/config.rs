//! The worker's configuration: the `pipeline.json` the operator renders into the Pipeline's
//! Secret, and its validation.
//!
//! The JSON is camelCase; unknown fields are refused (a typo must not silently fall back to a
//! default). Enumerations are objects tagged by `kind` (`{"kind": "Jq", "filter": ".", ...}`),
//! except the plain ones (`guarantee`, `startFrom`, `transform.output`), which are strings.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::transform::Transform;

/// Everything one worker needs to run one member of a Pipeline.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WorkerConfig {
    /// The Pipeline as `namespace/name`; it labels logs and metrics.
    pub pipeline: String,
    /// Kafka bootstrap servers, `host:port[,host:port...]`.
    pub bootstrap_servers: String,
    /// Client properties passed verbatim to both the consumer and the producer (security.protocol,
    /// sasl.*, ssl.ca.location, ...). Properties the worker manages for exactly-once (see
    /// [`MANAGED_PROPERTIES`]) are refused here rather than silently overridden.
    #[serde(default)]
    pub client_properties: BTreeMap<String, String>,
    /// The consumer group the Pipeline's workers share; its committed offsets are the Pipeline's
    /// progress.
    pub group_id: String,
    /// Kafka names of the topics to consume.
    pub input_topics: Vec<String>,
    /// Where a group without committed offsets starts (`auto.offset.reset`).
    #[serde(default)]
    pub start_from: StartFrom,
    /// Each worker's `transactional.id` is `<prefix>-<ordinal>`: stable across restarts, so a
    /// restarted worker fences its zombie.
    pub transactional_id_prefix: String,
    /// `transaction.timeout.ms` of the producer: the coordinator aborts a transaction left open
    /// longer than this. It must not exceed the brokers' `transaction.max.timeout.ms`. It also
    /// bounds each blocking call of a commit (under `AtLeastOnce`, that is all it does).
    #[serde(default = "default_transaction_timeout_ms")]
    pub transaction_timeout_ms: u32,
    /// Commit the open transaction once it is this old (milliseconds). Shorter means fresher
    /// output for `read_committed` readers; longer means fewer, larger transactions.
    #[serde(default = "default_commit_interval_ms")]
    pub commit_interval_ms: u32,
    /// Commit early once the open transaction holds this many input records
    /// ([`DEFAULT_COMMIT_MAX_RECORDS`] by default: high enough that `commitIntervalMs` decides
    /// at rates below a million records a second, as each commit costs a fixed 10-25 ms; it
    /// only bounds what an abort replays and what the producer holds).
    #[serde(default = "default_commit_max_records")]
    pub commit_max_records: u32,
    /// Where output records go.
    pub output: Output,
    /// What each input record becomes.
    #[serde(default)]
    pub transform: TransformSpec,
    /// What happens to a record the transform or the routing cannot handle.
    #[serde(default)]
    pub error_policy: ErrorPolicy,
    /// The delivery guarantee: `ExactlyOnce` (the default, left out of the JSON) or
    /// `AtLeastOnce`, which is **not** exactly-once (see [`Guarantee`]).
    #[serde(default, skip_serializing_if = "Guarantee::is_exactly_once")]
    pub guarantee: Guarantee,
}

fn default_transaction_timeout_ms() -> u32 {
    60_000
}

fn default_commit_interval_ms() -> u32 {
    100
}

/// The default `commitMaxRecords`.
pub const DEFAULT_COMMIT_MAX_RECORDS: u32 = 100_000;

fn default_commit_max_records() -> u32 {
    DEFAULT_COMMIT_MAX_RECORDS
}

/// The delivery guarantee of the pipeline.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Guarantee {
    /// KIP-447 consume-transform-produce: a transactional producer
    /// (`transactional.id = <prefix>-<ordinal>`), the input offsets and their figures committed
    /// inside the same transaction as the outputs. Every input record is in the outputs exactly
    /// once, for `read_committed` readers, across crashes, restarts and rebalances.
    #[default]
    ExactlyOnce,
    /// **Not exactly-once.** No `transactional.id` and no transactions: an idempotent producer
    /// (`enable.idempotence=true`, `acks=all`, so a retried send is not written twice), and every
    /// `commitIntervalMs` (or `commitMaxRecords` input records) the worker flushes the producer,
    /// checks that every record sent since the last commit was acknowledged, and only then
    /// commits the consumed offsets, with the same progress metadata, with the consumer
    /// (a synchronous OffsetCommit). Nothing is lost; but the outputs of records consumed since
    /// the last commit are produced again after a crash, a lost assignment or a failed commit,
    /// so readers see duplicates (and see outputs at once, committed or not). For baselines and
    /// for sinks that deduplicate themselves.
    AtLeastOnce,
}

impl Guarantee {
    /// Whether this is [`Guarantee::ExactlyOnce`] (the default, which `pipeline.json` omits).
    pub fn is_exactly_once(&self) -> bool {
        *self == Guarantee::ExactlyOnce
    }

    /// Whether the worker uses Kafka transactions (a `transactional.id`, `init_transactions`,
    /// offsets sent to the transaction) rather than consumer offset commits.
    pub fn transactional(self) -> bool {
        self == Guarantee::ExactlyOnce
    }
}

/// Where a consumer group without committed offsets starts reading.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum StartFrom {
    /// From the oldest record still in the topic.
    #[default]
    Earliest,
    /// From records produced after the group first joins.
    Latest,
}

impl StartFrom {
    /// The `auto.offset.reset` value.
    pub fn auto_offset_reset(self) -> &'static str {
        match self {
            StartFrom::Earliest => "earliest",
            StartFrom::Latest => "latest",
        }
    }
}

/// The output topics and how a record picks one.
///
/// A record's topic is, in order: the one its transform chose (jq `Record` output), the `route`
/// rule matching it, the `defaultTopic`; with none of these the record is a record error.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Output {
    /// Output topics by Topic resource name (the name transforms and rules use) to Kafka topic
    /// name.
    pub topics: BTreeMap<String, String>,
    /// Resource name of the topic for records no rule routes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_topic: Option<String>,
    /// Content-based routing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route: Option<Route>,
}

/// Content-based routing: the record's key, or a field of its JSON value, picks the topic.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Route {
    /// What the rules match against.
    pub by: RouteBy,
    /// The matched value (exactly, as a string) to the Topic resource name. No match goes to
    /// `defaultTopic`.
    pub rules: BTreeMap<String, String>,
}

/// What routing rules match against.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", deny_unknown_fields)]
pub enum RouteBy {
    /// The output record's key, as UTF-8 text.
    Key,
    /// A field of the output record's JSON value. Strings match as they are, numbers and booleans
    /// by their JSON text (`42`, `true`); a missing field, `null`, an object or an array match no
    /// rule.
    Field {
        /// Dot path into the value, e.g. `region` or `customer.country`.
        path: String,
    },
}

/// What each input record becomes.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", deny_unknown_fields)]
pub enum TransformSpec {
    /// The record as it is: key, value and headers copied.
    #[default]
    Passthrough,
    /// A jq filter over the record's JSON value; see [`crate::transform`] for its semantics.
    Jq {
        /// The jq program.
        filter: String,
        /// How the filter's outputs become records.
        #[serde(default)]
        output: JqOutput,
    },
}

/// How a jq filter's outputs become records.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum JqOutput {
    /// Each output is the new value; key and headers are kept.
    #[default]
    Value,
    /// Each output is an object `{"value": ..., "key"?: ..., "topic"?: ..., "headers"?: ...}`.
    Record,
}

/// What happens to a record the transform or the routing cannot handle (not JSON, a jq error,
/// no route).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", deny_unknown_fields)]
pub enum ErrorPolicy {
    /// Produce the input record, unchanged, to a dead-letter topic inside the same transaction,
    /// with headers `exactly.error`, `exactly.source.topic`, `exactly.source.partition` and
    /// `exactly.source.offset`; the pipeline goes on.
    DeadLetter {
        /// Kafka name of the dead-letter topic.
        topic: String,
    },
    /// Stop the pipeline at the record: its offset is not committed, the worker stops consuming,
    /// reports `topic-partition@offset` and the reason (log, `/readyz`, metrics) and stays up,
    /// unready, until the Pipeline is fixed.
    #[default]
    Stop,
}

/// Client properties the worker sets itself for exactly-once; `clientProperties` may not set
/// them.
pub const MANAGED_PROPERTIES: &[&str] = &[
    "bootstrap.servers",
    "group.id",
    "transactional.id",
    "enable.idempotence",
    "acks",
    "request.required.acks",
    "max.in.flight.requests.per.connection",
    "max.in.flight",
    "transaction.timeout.ms",
    "isolation.level",
    "enable.auto.commit",
    "enable.auto.offset.store",
    "auto.offset.reset",
    "partition.assignment.strategy",
    "enable.partition.eof",
    "group.protocol",
    "group.instance.id",
];

/// One problem found by [`WorkerConfig::validate`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigProblem {
    /// Path of the offending field, e.g. `output.route.rules.eu` or `inputTopics[1]`.
    pub field: String,
    /// What is wrong and what to do.
    pub message: String,
}

impl std::fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// Error reading a `pipeline.json`.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The path given.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not a valid `pipeline.json`.
    #[error("{path} is not a valid pipeline configuration: {source}")]
    Parse {
        /// The path given.
        path: String,
        /// The JSON error, with line and column.
        source: serde_json::Error,
    },
    /// The file parsed but breaks the rules [`WorkerConfig::validate`] checks.
    #[error("{path} is invalid: {}", problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Invalid {
        /// The path given.
        path: String,
        /// Every problem found.
        problems: Vec<ConfigProblem>,
    },
}

impl WorkerConfig {
    /// Reads, parses and validates a `pipeline.json`.
    pub fn load(path: &str) -> Result<WorkerConfig, LoadError> {
        let text = std::fs::read_to_string(path).map_err(|source| LoadError::Read {
            path: path.to_string(),
            source,
        })?;
        let config: WorkerConfig =
            serde_json::from_str(&text).map_err(|source| LoadError::Parse {
                path: path.to_string(),
                source,
            })?;
        let problems = config.validate();
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(LoadError::Invalid {
                path: path.to_string(),
                problems,
            })
        }
    }

    /// Every problem with this configuration (empty when it can run), including a jq filter that
    /// does not compile. The operator calls this before rendering, so what it accepts is exactly
    /// what a worker runs.
    pub fn validate(&self) -> Vec<ConfigProblem> {
        let mut problems = Problems::default();
        self.validate_connection(&mut problems);
        self.validate_timing(&mut problems);
        self.validate_topics(&mut problems);
        self.validate_routing(&mut problems);
        if let Err(e) = Transform::compile(&self.transform) {
            problems.push("transform.filter", e.to_string());
        }
        problems.0
    }

    fn validate_connection(&self, problems: &mut Problems) {
        if self.pipeline.trim().is_empty() {
            problems.push("pipeline", "must name the Pipeline as namespace/name");
        }
        if self.bootstrap_servers.trim().is_empty() {
            problems.push("bootstrapServers", "must list at least one host:port");
        }
        if self.group_id.trim().is_empty() {
            problems.push("groupId", "must not be empty");
        }
        if self.transactional_id_prefix.trim().is_empty() {
            problems.push(
                "transactionalIdPrefix",
                "must not be empty: it makes each worker's transactional.id stable across restarts",
            );
        }
        for key in self.client_properties.keys() {
            if MANAGED_PROPERTIES.contains(&key.as_str()) {
                problems.push(
                    format!("clientProperties.{key}"),
                    "is set by the worker for exactly-once and cannot be overridden",
                );
            }
        }
    }

    fn validate_timing(&self, problems: &mut Problems) {
        if self.transaction_timeout_ms == 0 {
            problems.push("transactionTimeoutMs", "must be positive");
        }
        if self.commit_interval_ms == 0 {
            problems.push("commitIntervalMs", "must be positive");
        } else if self.guarantee.transactional()
            && self.commit_interval_ms >= self.transaction_timeout_ms
        {
            problems.push(
                "commitIntervalMs",
                format!(
                    "must be below transactionTimeoutMs ({}): the coordinator would abort every \
                     transaction before the worker commits it",
                    self.transaction_timeout_ms
                ),
            );
        }
        if self.commit_max_records == 0 {
            problems.push("commitMaxRecords", "must be positive");
        }
    }

    fn validate_topics(&self, problems: &mut Problems) {
        let inputs: BTreeSet<&str> = self.input_topics.iter().map(String::as_str).collect();
        if self.input_topics.is_empty() {
            problems.push("inputTopics", "must list at least one topic");
        }
        let mut seen = BTreeSet::new();
        for (i, topic) in self.input_topics.iter().enumerate() {
            let field = format!("inputTopics[{i}]");
            if let Some(message) = topic_name_problem(topic) {
                problems.push(field.clone(), message);
            }
            if !seen.insert(topic.as_str()) {
                problems.push(field, format!("lists {topic} twice"));
            }
        }
        if self.output.topics.is_empty() {
            problems.push("output.topics", "must list at least one topic");
        }
        for (name, topic) in &self.output.topics {
            let field = format!("output.topics.{name}");
            if name.is_empty() {
                problems.push("output.topics", "has an empty resource name");
            }
            if let Some(message) = topic_name_problem(topic) {
                problems.push(field.clone(), message);
            }
            if inputs.contains(topic.as_str()) {
                problems.push(
                    field,
                    format!(
                        "{topic} is also an input topic: the pipeline would consume its own output"
                    ),
                );
            }
        }
        if let ErrorPolicy::DeadLetter { topic } = &self.error_policy {
            if let Some(message) = topic_name_problem(topic) {
                problems.push("errorPolicy.topic", message);
            }
            if inputs.contains(topic.as_str()) {
                problems.push(
                    "errorPolicy.topic",
                    format!("{topic} is also an input topic: dead letters would be consumed again"),
                );
            }
        }
    }

    fn validate_routing(&self, problems: &mut Problems) {
        let known = |name: &str| self.output.topics.contains_key(name);
        let names = || {
            self.output
                .topics
                .keys()
                .map(String::as_str)
                .collect::<Vec<_>>()
                .join(", ")
        };
        if let Some(default) = &self.output.default_topic
            && !known(default)
        {
            problems.push(
                "output.defaultTopic",
                format!("{default} is not one of output.topics ({})", names()),
            );
        }
        if let Some(route) = &self.output.route {
            if let RouteBy::Field { path } = &route.by
                && (path.is_empty() || path.split('.').any(str::is_empty))
            {
                problems.push(
                    "output.route.by.path",
                    "must be a dot path of non-empty field names, e.g. customer.country",
                );
            }
            if route.rules.is_empty() {
                problems.push("output.route.rules", "must have at least one rule");
            }
            for (value, name) in &route.rules {
                if !known(name) {
                    problems.push(
                        format!("output.route.rules.{value}"),
                        format!("{name} is not one of output.topics ({})", names()),
                    );
                }
            }
        }
        let transform_picks_topic = matches!(
            self.transform,
            TransformSpec::Jq {
                output: JqOutput::Record,
                ..
            }
        );
        if self.output.default_topic.is_none()
            && self.output.route.is_none()
            && !transform_picks_topic
        {
            problems.push(
                "output.defaultTopic",
                "is required when there is no route and the transform does not choose a topic: \
                 records would have nowhere to go",
            );
        }
    }
}

/// Why `name` cannot be a Kafka topic name, if it cannot.
fn topic_name_problem(name: &str) -> Option<String> {
    if name.is_empty() {
        return Some("must not be empty".to_string());
    }
    if name == "." || name == ".." {
        return Some(format!("{name} is not a valid Kafka topic name"));
    }
    if name.len() > 249 {
        return Some("is longer than Kafka's 249 characters".to_string());
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Some(format!(
            "{name} is not a valid Kafka topic name: {c:?} is not a letter, digit, '.', '_' or '-'"
        ));
    }
    None
}

#[derive(Default)]
struct Problems(Vec<ConfigProblem>);

impl Problems {
    fn push(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.0.push(ConfigProblem {
            field: field.into(),
            message: message.into(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example_json() -> &'static str {
        r#"{
          "pipeline": "shop/orders-by-region",
          "bootstrapServers": "kafka-0.kafka:9092",
          "clientProperties": {"security.protocol": "plaintext"},
          "groupId": "exactly-pipeline-shop-orders-by-region",
          "inputTopics": ["orders"],
          "startFrom": "Earliest",
          "transactionalIdPrefix": "exactly-shop-orders-by-region",
          "transactionTimeoutMs": 60000,
          "commitIntervalMs": 100,
          "commitMaxRecords": 10000,
          "output": {
            "topics": {"orders-eu": "orders.eu", "orders-us": "orders.us", "orders-other": "orders.other"},
            "defaultTopic": "orders-other",
            "route": {"by": {"kind": "Field", "path": "customer.region"}, "rules": {"eu": "orders-eu", "us": "orders-us"}}
          },
          "transform": {"kind": "Jq", "filter": "select(.amount > 0)", "output": "Value"},
          "errorPolicy": {"kind": "DeadLetter", "topic": "orders.dead"}
        }"#
    }

    fn example() -> WorkerConfig {
        match serde_json::from_str(example_json()) {
            Ok(config) => config,
            Err(e) => panic!("example does not parse: {e}"),
        }
    }

    fn fields(problems: &[ConfigProblem]) -> Vec<&str> {
        problems.iter().map(|p| p.field.as_str()).collect()
    }

    #[test]
    fn example_parses_and_is_valid() {
        let config = example();
        assert_eq!(config.validate(), vec![]);
        assert_eq!(
            config.output.route.as_ref().map(|r| &r.by),
            Some(&RouteBy::Field {
                path: "customer.region".into()
            })
        );
    }

    #[test]
    fn config_round_trips_through_json() {
        let config = example();
        let json = serde_json::to_string(&config).unwrap_or_default();
        let again: Result<WorkerConfig, _> = serde_json::from_str(&json);
        assert_eq!(again.ok(), Some(config));
    }

    #[test]
    fn defaults_apply_to_omitted_fields() {
        let config: WorkerConfig = match serde_json::from_str(
            r#"{"pipeline": "a/b", "bootstrapServers": "k:9092", "groupId": "g",
                "inputTopics": ["in"], "transactionalIdPrefix": "p",
                "output": {"topics": {"out": "out"}, "defaultTopic": "out"}}"#,
        ) {
            Ok(c) => c,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(config.commit_interval_ms, 100);
        assert_eq!(config.commit_max_records, 100_000);
        assert_eq!(config.transaction_timeout_ms, 60_000);
        assert_eq!(config.start_from, StartFrom::Earliest);
        assert_eq!(config.transform, TransformSpec::Passthrough);
        assert_eq!(config.error_policy, ErrorPolicy::Stop);
        assert_eq!(config.guarantee, Guarantee::ExactlyOnce);
        assert_eq!(config.validate(), vec![]);
    }

    #[test]
    fn guarantee_is_a_plain_string_and_exactly_once_is_left_out() {
        let config = example();
        let json = serde_json::to_value(&config).unwrap_or_default();
        assert_eq!(json.get("guarantee"), None, "{json}");
        let mut at_least_once = config.clone();
        at_least_once.guarantee = Guarantee::AtLeastOnce;
        let json = serde_json::to_value(&at_least_once).unwrap_or_default();
        assert_eq!(json["guarantee"], "AtLeastOnce");
        let again: Result<WorkerConfig, _> = serde_json::from_value(json);
        assert_eq!(again.ok(), Some(at_least_once));
        let json = example_json().replace(
            r#""startFrom": "Earliest","#,
            r#""startFrom": "Earliest", "guarantee": "ExactlyOnce","#,
        );
        assert_eq!(
            serde_json::from_str::<WorkerConfig>(&json).ok(),
            Some(config)
        );
        let json = example_json().replace(
            r#""startFrom": "Earliest","#,
            r#""startFrom": "Earliest", "guarantee": "AtMostOnce","#,
        );
        assert!(serde_json::from_str::<WorkerConfig>(&json).is_err());
    }

    #[test]
    fn at_least_once_does_not_bind_the_commit_interval_to_the_transaction_timeout() {
        let mut config = example();
        config.commit_interval_ms = 60_000;
        config.guarantee = Guarantee::AtLeastOnce;
        assert_eq!(config.validate(), vec![]);
        config.guarantee = Guarantee::ExactlyOnce;
        assert_eq!(fields(&config.validate()), vec!["commitIntervalMs"]);
    }

    #[test]
    fn unknown_fields_are_refused() {
        let json = example_json().replace("\"commitIntervalMs\"", "\"commitIntervallMs\"");
        assert!(serde_json::from_str::<WorkerConfig>(&json).is_err());
        let json = example_json().replace(
            r#""kind": "DeadLetter", "topic""#,
            r#""kind": "DeadLetter", "topics""#,
        );
        assert!(serde_json::from_str::<WorkerConfig>(&json).is_err());
    }

    #[test]
    fn commit_interval_must_be_below_transaction_timeout() {
        let mut config = example();
        config.commit_interval_ms = 60_000;
        assert_eq!(fields(&config.validate()), vec!["commitIntervalMs"]);
    }

    #[test]
    fn every_problem_is_reported_not_just_the_first() {
        let mut config = example();
        config.input_topics = vec![];
        config.commit_max_records = 0;
        config.output.default_topic = Some("nowhere".into());
        if let Some(route) = config.output.route.as_mut() {
            route.rules.insert("apac".into(), "orders-apac".into());
        }
        config.transform = TransformSpec::Jq {
            filter: "map(".into(),
            output: JqOutput::Value,
        };
        assert_eq!(
            fields(&config.validate()),
            vec![
                "commitMaxRecords",
                "inputTopics",
                "output.defaultTopic",
                "output.route.rules.apac",
                "transform.filter"
            ]
        );
    }

    #[test]
    fn route_to_unknown_topic_names_the_known_ones() {
        let mut config = example();
        if let Some(route) = config.output.route.as_mut() {
            route.rules.insert("apac".into(), "orders-apac".into());
        }
        let problems = config.validate();
        assert_eq!(problems.len(), 1);
        assert_eq!(
            problems[0].message,
            "orders-apac is not one of output.topics (orders-eu, orders-other, orders-us)"
        );
    }

    #[test]
    fn output_topic_that_is_also_an_input_is_refused() {
        let mut config = example();
        config.input_topics.push("orders.eu".into());
        assert_eq!(fields(&config.validate()), vec!["output.topics.orders-eu"]);
    }

    #[test]
    fn dead_letter_topic_that_is_an_input_is_refused() {
        let mut config = example();
        config.error_policy = ErrorPolicy::DeadLetter {
            topic: "orders".into(),
        };
        assert_eq!(fields(&config.validate()), vec!["errorPolicy.topic"]);
    }

    #[test]
    fn managed_client_properties_are_refused() {
        let mut config = example();
        config
            .client_properties
            .insert("isolation.level".into(), "read_uncommitted".into());
        config.client_properties.insert("acks".into(), "1".into());
        assert_eq!(
            fields(&config.validate()),
            vec!["clientProperties.acks", "clientProperties.isolation.level"]
        );
    }

    #[test]
    fn invalid_topic_names_are_refused() {
        let mut config = example();
        config.input_topics = vec!["orders".into(), "bad topic".into(), "orders".into()];
        assert_eq!(
            fields(&config.validate()),
            vec!["inputTopics[1]", "inputTopics[2]"]
        );
    }

    #[test]
    fn records_need_somewhere_to_go() {
        let mut config = example();
        config.output.route = None;
        config.output.default_topic = None;
        assert_eq!(fields(&config.validate()), vec!["output.defaultTopic"]);
        // A Record transform may choose the topic itself.
        config.transform = TransformSpec::Jq {
            filter: "{value: ., topic: \"orders-eu\"}".into(),
            output: JqOutput::Record,
        };
        assert_eq!(config.validate(), vec![]);
    }

    #[test]
    fn field_route_needs_a_dot_path() {
        let mut config = example();
        if let Some(route) = config.output.route.as_mut() {
            route.by = RouteBy::Field {
                path: "customer..region".into(),
            };
        }
        assert_eq!(fields(&config.validate()), vec!["output.route.by.path"]);
    }
}
