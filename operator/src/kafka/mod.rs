//! The one place that talks to Kafka brokers. Controllers see [`KafkaAdmin`] and plain data
//! types; behind it is the [`wire`] client, which speaks Kafka's admin protocol with the
//! `kafka-protocol` crate: everything librdkafka's admin API has (topics, partitions, configs)
//! and what it lacks (incremental config changes, offsets, groups, transactions — KIP-664),
//! asynchronously and over TLS/SASL ([`security`]). rdkafka stays a test dependency, for real
//! producers and consumers.

pub mod acl;
pub mod scram_credential;
pub mod security;
pub mod wire;

/// PBKDF2 iterations of the SCRAM credentials the operator creates: Kafka's own default
/// (`kafka-configs --add-config 'SCRAM-SHA-512=[password=...]'`) and its minimum.
pub const SCRAM_ITERATIONS: i32 = scram_credential::MIN_ITERATIONS;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use thiserror::Error;

use kafka_protocol::messages::TopicName;
use kafka_protocol::protocol::StrBytes;

use crate::controller::lag::PartitionOffsets;
use crate::fence::Fence;
pub use wire::{
    GroupDescription, Isolation, OffsetSpec, ProducerState, TopicPartition, TransactionDescription,
    TransactionListing, WireClient, WireError,
};

/// How long one admin request may take before it counts as the cluster being unreachable.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
/// Topics described in one `Metadata` request: a refresh of 10 000 Topics sends ten, each
/// answer a few hundred KiB, instead of one of megabytes.
const DESCRIBE_CHUNK: usize = 1000;
/// Topics whose configuration one `DescribeConfigs` request asks for: each answer lists every
/// config key of each topic (about forty), about 2 MiB for a thousand; a refresh of 10 000
/// Topics sends ten.
const CONFIGS_CHUNK: usize = 1000;
/// Topics created in one `CreateTopics` request.
pub const CREATE_CHUNK: usize = 500;

/// Failures talking to Kafka, split by what a person should do about them.
#[derive(Error, Debug, Clone)]
pub enum KafkaError {
    /// The brokers did not answer (network, DNS, broker down, timeout).
    #[error("cannot reach Kafka at {bootstrap}: {message}")]
    Unreachable { bootstrap: String, message: String },
    /// A broker answered and refused the request; `code` says why.
    #[error("Kafka refused to {operation} '{resource}': {code}")]
    Refused {
        operation: &'static str,
        resource: String,
        code: String,
    },
    /// A broker's answer could not be understood.
    #[error("Kafka protocol error: {0}")]
    Protocol(String),
    /// The connection settings ask for something the operator cannot do yet.
    #[error("{0}")]
    Unsupported(String),
    /// The connection settings (the KafkaCluster's Secret) cannot be used.
    #[error("invalid Kafka connection settings: {0}")]
    ClientConfig(String),
    /// A blocking client call was lost (its worker thread panicked or was cancelled).
    #[error("Kafka client call did not complete: {0}")]
    Interrupted(String),
    /// A change refused before it was sent: this replica may no longer hold the leader lease.
    #[error(transparent)]
    NotLeader(#[from] crate::fence::NotLeader),
}

impl KafkaError {
    /// Stable CamelCase label for conditions, events and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            KafkaError::Unreachable { .. } => "KafkaUnreachable",
            KafkaError::Refused { .. } => "KafkaRefused",
            KafkaError::ClientConfig(_) => "KafkaClientConfigInvalid",
            KafkaError::Protocol(_) => "KafkaProtocolError",
            KafkaError::Unsupported(_) => "NotSupported",
            KafkaError::Interrupted(_) => "KafkaCallInterrupted",
            KafkaError::NotLeader(_) => "NotLeader",
        }
    }
}

/// Committed offsets of each group, with the metadata committed beside each.
pub type CommittedWithMetadata = BTreeMap<String, BTreeMap<PartitionKey, (i64, String)>>;

/// A topic as the broker reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicDescription {
    pub name: String,
    pub partitions: i32,
    /// Replicas of partition 0 (Kafka keeps one replication factor per topic in practice).
    pub replication_factor: i32,
    /// The topic's id, when the brokers report one.
    pub topic_id: Option<String>,
}

/// A cluster as its brokers report it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClusterDescription {
    pub cluster_id: Option<String>,
    pub brokers: i32,
    /// Configuration of one broker (every key, with its effective value).
    pub broker_config: BTreeMap<String, String>,
    /// Finalized feature levels, e.g. `transaction.version` → 2.
    pub features: BTreeMap<String, i16>,
}

/// A partition with fewer in-sync replicas than replicas.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShortPartition {
    pub topic: String,
    pub partition: i32,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
}

/// Which brokers are up and how every partition's replicas stand, from one `Metadata` request.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReplicaHealth {
    /// Ids of the brokers registered (up and unfenced), sorted.
    pub live_brokers: Vec<i32>,
    /// Partitions of every topic, internal ones included.
    pub partitions: usize,
    /// The partitions whose in-sync replicas are fewer than their replicas, by topic and index.
    pub short: Vec<ShortPartition>,
}

impl ReplicaHealth {
    /// Summarises what `Metadata` for every topic reported.
    pub fn of(metadata: &wire::ClusterMetadata) -> Self {
        let mut live_brokers: Vec<i32> = metadata.brokers.iter().map(|b| b.id).collect();
        live_brokers.sort_unstable();
        let mut partitions = 0;
        let mut short = Vec::new();
        for topic in &metadata.topics {
            for p in &topic.partitions {
                partitions += 1;
                if p.isr.len() < p.replicas.len() {
                    short.push(ShortPartition {
                        topic: topic.name.clone(),
                        partition: p.partition,
                        replicas: p.replicas.clone(),
                        isr: p.isr.clone(),
                    });
                }
            }
        }
        ReplicaHealth {
            live_brokers,
            partitions,
            short,
        }
    }
}

/// A topic to create.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewTopicRequest {
    pub name: String,
    pub partitions: i32,
    /// `None` takes the broker's `default.replication.factor`.
    pub replication_factor: Option<i32>,
    pub config: BTreeMap<String, String>,
}

/// What creating a topic did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CreateOutcome {
    /// Created, with the configuration set on the topic itself as `CreateTopics` answered it
    /// (v5+, when the principal may describe the topic's configuration; broker defaults left
    /// out), or `None` when the answer did not list it.
    Created(Option<BTreeMap<String, String>>),
    /// It was there already (created by someone else, or by us a moment ago).
    AlreadyExists,
}

/// The configuration set on a topic itself, from its `CreateTopics` answer: `None` before v5
/// (no configuration in the answer) and when the broker could not say
/// (`topic_config_error_code`, e.g. the principal may create but not describe configs).
fn created_config(
    version: i16,
    result: &kafka_protocol::messages::create_topics_response::CreatableTopicResult,
) -> Option<BTreeMap<String, String>> {
    if version < 5 || result.topic_config_error_code != 0 {
        return None;
    }
    Some(
        result
            .configs
            .as_ref()?
            .iter()
            .filter(|c| {
                wire::ConfigSource::from_id(c.config_source) == wire::ConfigSource::DynamicTopic
            })
            .filter_map(|c| Some((c.name.to_string(), c.value.as_ref()?.to_string())))
            .collect(),
    )
}

/// Calls `call` for all of `partitions` at once; when that fails and they span more than one
/// topic, once per topic: the answers of the topics that succeeded, and the error of each that
/// failed.
async fn per_topic<V, F, Fut>(
    partitions: &[PartitionKey],
    call: F,
) -> (BTreeMap<PartitionKey, V>, BTreeMap<String, KafkaError>)
where
    F: Fn(Vec<PartitionKey>) -> Fut,
    Fut: std::future::Future<Output = Result<BTreeMap<PartitionKey, V>, KafkaError>>,
{
    let whole = match call(partitions.to_vec()).await {
        Ok(answers) => return (answers, BTreeMap::new()),
        Err(e) => e,
    };
    let mut by_topic: BTreeMap<&str, Vec<PartitionKey>> = BTreeMap::new();
    for p in partitions {
        by_topic.entry(p.0.as_str()).or_default().push(p.clone());
    }
    // Only a refusal (the brokers answered, with an error for some partition) can be one
    // topic's; unreachable brokers fail every topic alike, without asking each.
    if by_topic.len() <= 1 || !matches!(whole, KafkaError::Refused { .. }) {
        return (
            BTreeMap::new(),
            by_topic
                .into_keys()
                .map(|t| (t.to_string(), whole.clone()))
                .collect(),
        );
    }
    let mut answers = BTreeMap::new();
    let mut failed = BTreeMap::new();
    for (topic, some) in by_topic {
        match call(some).await {
            Ok(found) => answers.extend(found),
            Err(e) => {
                failed.insert(topic.to_string(), e);
            }
        }
    }
    (answers, failed)
}

/// Admin access to one Kafka cluster.
pub struct KafkaAdmin {
    bootstrap: String,
    wire: WireClient,
    /// Checked before every change this client sends (reads go ahead regardless).
    fence: Fence,
}

/// A (topic, partition) key, as the controllers use it.
pub type PartitionKey = (String, i32);

fn key(tp: &TopicPartition) -> PartitionKey {
    (tp.topic.clone(), tp.partition)
}

fn tp((topic, partition): &PartitionKey) -> TopicPartition {
    TopicPartition::new(topic.clone(), *partition)
}

fn describe(topic: &wire::TopicMetadata) -> TopicDescription {
    TopicDescription {
        name: topic.name.clone(),
        partitions: i32::try_from(topic.partitions.len()).unwrap_or(i32::MAX),
        replication_factor: topic
            .partitions
            .iter()
            .find(|p| p.partition == 0)
            .map(|p| i32::try_from(p.replicas.len()).unwrap_or(i32::MAX))
            .unwrap_or(0),
        topic_id: Some(topic.topic_id.clone()),
    }
}

impl KafkaAdmin {
    /// Builds a client for the brokers at `bootstrap` (`host:port[,host:port...]`) with the given
    /// security. No request is sent until the first call.
    pub fn connect(bootstrap: &str) -> Result<Self, KafkaError> {
        KafkaAdmin::connect_with(bootstrap, security::Security::default())
    }

    /// [`KafkaAdmin::connect`] with TLS and/or SASL.
    pub fn connect_with(bootstrap: &str, security: security::Security) -> Result<Self, KafkaError> {
        KafkaAdmin::connect_counting(bootstrap, security, None)
    }

    /// [`KafkaAdmin::connect_with`], telling `counter` (when given) the API name of every
    /// request it sends.
    pub fn connect_counting(
        bootstrap: &str,
        security: security::Security,
        counter: Option<wire::RequestCounter>,
    ) -> Result<Self, KafkaError> {
        let mut wire =
            WireClient::with_security(bootstrap, "exactly-operator", REQUEST_TIMEOUT, security)
                .map_err(|e| KafkaError::ClientConfig(e.to_string()))?;
        if let Some(counter) = counter {
            wire = wire.counting(counter);
        }
        Ok(KafkaAdmin {
            bootstrap: bootstrap.to_string(),
            wire,
            fence: Fence::open(),
        })
    }

    /// This client, sending no change while `fence` does not hold.
    pub fn fenced(mut self, fence: Fence) -> Self {
        self.fence = fence;
        self
    }

    /// Whether the change `what` may be sent now (see [`Fence`]).
    fn may_change(&self, what: &str) -> Result<(), KafkaError> {
        self.fence.check()?;
        crate::fence::passed("Kafka", format_args!("{what} on {}", self.bootstrap));
        Ok(())
    }

    /// The bootstrap servers this client talks to.
    pub fn bootstrap(&self) -> &str {
        &self.bootstrap
    }

    /// Admin requests sent over the wire protocol so far (rdkafka's are not counted).
    pub fn requests_sent(&self) -> u64 {
        self.wire.requests_sent()
    }

    /// The raw-protocol client, for requests this type does not wrap (tests, tools).
    pub fn wire(&self) -> &WireClient {
        &self.wire
    }

    fn wire_error(&self, operation: &'static str, error: WireError) -> KafkaError {
        match error {
            WireError::Unreachable { address, message } => KafkaError::Unreachable {
                bootstrap: self.bootstrap.clone(),
                message: format!("{address}: {message}"),
            },
            WireError::Protocol(message) => KafkaError::Protocol(message),
            WireError::Broker {
                resource,
                name,
                message,
                ..
            } => KafkaError::Refused {
                operation,
                resource,
                code: match message {
                    Some(m) if !m.is_empty() => format!("{name}: {m}"),
                    _ => name.to_string(),
                },
            },
        }
    }

    /// The cluster id, its brokers, one broker's configuration and the finalized features.
    pub async fn describe_cluster(&self) -> Result<ClusterDescription, KafkaError> {
        let op = "describe the cluster";
        let metadata = self
            .wire
            .metadata(Some(&[]))
            .await
            .map_err(|e| self.wire_error(op, e))?;
        let broker = metadata
            .brokers
            .iter()
            .map(|b| b.id)
            .find(|id| *id == metadata.controller_id)
            .or_else(|| metadata.brokers.first().map(|b| b.id));
        let broker_config = match broker {
            Some(id) => self
                .wire
                .describe_broker_configs(id)
                .await
                .map_err(|e| self.wire_error("describe the configuration of", e))?
                .into_iter()
                .filter_map(|(k, e)| e.value.map(|v| (k, v)))
                .collect(),
            None => BTreeMap::new(),
        };
        let features = self
            .wire
            .finalized_features()
            .await
            .map_err(|e| self.wire_error(op, e))?;
        Ok(ClusterDescription {
            cluster_id: metadata.cluster_id,
            brokers: i32::try_from(metadata.brokers.len()).unwrap_or(i32::MAX),
            broker_config,
            features,
        })
    }

    /// The live brokers and the partitions short of in-sync replicas, across every topic (one
    /// `Metadata` request).
    pub async fn replica_health(&self) -> Result<ReplicaHealth, KafkaError> {
        let metadata = self
            .wire
            .metadata(None)
            .await
            .map_err(|e| self.wire_error("describe the replicas of", e))?;
        Ok(ReplicaHealth::of(&metadata))
    }

    /// Partitions, replication and id of `name`, or `None` when the topic does not exist.
    pub async fn describe_topic(&self, name: &str) -> Result<Option<TopicDescription>, KafkaError> {
        let metadata = self
            .wire
            .metadata(Some(&[name.to_string()]))
            .await
            .map_err(|e| self.wire_error("describe topic", e))?;
        Ok(metadata.topic(name).map(describe))
    }

    /// Partition indexes of each of `topics` that exists (one Metadata request).
    pub async fn partitions(
        &self,
        topics: &[String],
    ) -> Result<BTreeMap<String, Vec<i32>>, KafkaError> {
        Ok(self
            .describe_topics(topics)
            .await?
            .into_iter()
            .map(|(name, d)| (name, (0..d.partitions).collect()))
            .collect())
    }

    /// Each of `topics` that exists, described (one Metadata request per thousand topics).
    pub async fn describe_topics(
        &self,
        topics: &[String],
    ) -> Result<BTreeMap<String, TopicDescription>, KafkaError> {
        let mut out = BTreeMap::new();
        for chunk in topics.chunks(DESCRIBE_CHUNK) {
            let metadata = self
                .wire
                .metadata(Some(chunk))
                .await
                .map_err(|e| self.wire_error("describe topics", e))?;
            out.extend(
                metadata
                    .topics
                    .iter()
                    .map(|topic| (topic.name.clone(), describe(topic))),
            );
        }
        Ok(out)
    }

    /// The configuration set on each of `topics` itself, broker defaults left out (one
    /// DescribeConfigs request per thousand topics). Topics that do not exist are left out.
    pub async fn dynamic_topic_configs(
        &self,
        topics: &[String],
    ) -> Result<BTreeMap<String, BTreeMap<String, String>>, KafkaError> {
        let mut out = BTreeMap::new();
        for chunk in topics.chunks(CONFIGS_CHUNK) {
            let described = self
                .wire
                .describe_topic_configs(chunk)
                .await
                .map_err(|e| self.wire_error("describe configs of", e))?;
            out.extend(described.into_iter().map(|(topic, entries)| {
                let set: BTreeMap<String, String> = entries
                    .into_iter()
                    .filter(|(_, e)| e.source == wire::ConfigSource::DynamicTopic)
                    .filter_map(|(k, e)| e.value.map(|v| (k, v)))
                    .collect();
                (topic, set)
            }));
        }
        Ok(out)
    }

    fn refused(
        operation: &'static str,
        resource: &str,
        code: i16,
        message: Option<String>,
    ) -> KafkaError {
        let name = wire::error_name(code);
        KafkaError::Refused {
            operation,
            resource: resource.to_string(),
            code: match message {
                Some(m) if !m.is_empty() => format!("{name}: {m}"),
                _ => name.to_string(),
            },
        }
    }

    /// Creates a topic. A topic that already exists is not an error: the caller adopts it.
    pub async fn create_topic(
        &self,
        request: &NewTopicRequest,
    ) -> Result<CreateOutcome, KafkaError> {
        self.create_topics(std::slice::from_ref(request))
            .await?
            .into_iter()
            .next()
            .unwrap_or_else(|| {
                Err(KafkaError::Protocol(
                    "CreateTopics returned no result".into(),
                ))
            })
    }

    /// Creates every topic of `requests` in one `CreateTopics` request (at most
    /// [`CREATE_CHUNK`] of them): one result per request, in order. A topic that already exists
    /// is not an error. The outer error means the request itself failed.
    pub async fn create_topics(
        &self,
        requests: &[NewTopicRequest],
    ) -> Result<Vec<Result<CreateOutcome, KafkaError>>, KafkaError> {
        self.may_change("create_topics")?;
        use kafka_protocol::messages::CreateTopicsRequest;
        use kafka_protocol::messages::create_topics_request::{
            CreatableTopic, CreatableTopicConfig,
        };
        const OP: &str = "create topic";
        const TOPIC_ALREADY_EXISTS: i16 = 36;
        if requests.is_empty() {
            return Ok(Vec::new());
        }
        // One entry per name: Kafka refuses a request naming a topic twice (INVALID_REQUEST
        // for every entry), so a duplicate (two resources racing for one name) is asked once
        // and both get its answer.
        let mut unique: Vec<&NewTopicRequest> = Vec::new();
        for request in requests {
            if !unique.iter().any(|u| u.name == request.name) {
                unique.push(request);
            }
        }
        let topics = unique
            .iter()
            .map(|request| {
                CreatableTopic::default()
                    .with_name(TopicName(StrBytes::from_string(request.name.clone())))
                    .with_num_partitions(request.partitions)
                    // -1 asks the broker for its default.replication.factor (CreateTopics v4+).
                    .with_replication_factor(
                        request
                            .replication_factor
                            .and_then(|r| i16::try_from(r).ok())
                            .unwrap_or(-1),
                    )
                    .with_configs(
                        request
                            .config
                            .iter()
                            .map(|(k, v)| {
                                CreatableTopicConfig::default()
                                    .with_name(StrBytes::from_string(k.clone()))
                                    .with_value(Some(StrBytes::from_string(v.clone())))
                            })
                            .collect(),
                    )
            })
            .collect();
        let request_timeout = i32::try_from(REQUEST_TIMEOUT.as_millis()).unwrap_or(i32::MAX);
        let (version, response) = self
            .wire
            .send_versioned(
                None,
                None,
                CreateTopicsRequest::default()
                    .with_topics(topics)
                    .with_timeout_ms(request_timeout),
            )
            .await
            .map_err(|e| self.wire_error(OP, e))?;
        let answers: HashMap<String, Result<CreateOutcome, KafkaError>> = response
            .topics
            .into_iter()
            .map(|t| {
                let name = t.name.0.to_string();
                let outcome = match t.error_code {
                    0 => Ok(CreateOutcome::Created(created_config(version, &t))),
                    TOPIC_ALREADY_EXISTS => Ok(CreateOutcome::AlreadyExists),
                    code => Err(Self::refused(
                        OP,
                        &name,
                        code,
                        t.error_message.map(|m| m.to_string()),
                    )),
                };
                (name, outcome)
            })
            .collect();
        Ok(requests
            .iter()
            .map(|request| {
                answers.get(&request.name).cloned().unwrap_or_else(|| {
                    Err(KafkaError::Protocol(format!(
                        "CreateTopics returned no result for '{}'",
                        request.name
                    )))
                })
            })
            .collect())
    }

    /// Raises the partition count of `name` to `partitions`.
    pub async fn grow_partitions(&self, name: &str, partitions: i32) -> Result<(), KafkaError> {
        self.may_change("grow_partitions")?;
        use kafka_protocol::messages::CreatePartitionsRequest;
        use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
        const OP: &str = "add partitions to";
        let request_timeout = i32::try_from(REQUEST_TIMEOUT.as_millis()).unwrap_or(i32::MAX);
        let response = self
            .wire
            .send(
                None,
                CreatePartitionsRequest::default()
                    .with_topics(vec![
                        CreatePartitionsTopic::default()
                            .with_name(TopicName(StrBytes::from_string(name.to_string())))
                            .with_count(partitions)
                            .with_assignments(None),
                    ])
                    .with_timeout_ms(request_timeout),
            )
            .await
            .map_err(|e| self.wire_error(OP, e))?;
        match response.results.into_iter().next() {
            Some(r) if r.error_code == 0 => Ok(()),
            Some(r) => Err(Self::refused(
                OP,
                name,
                r.error_code,
                r.error_message.map(|m| m.to_string()),
            )),
            None => Err(KafkaError::Protocol(
                "CreatePartitions returned no result".into(),
            )),
        }
    }

    /// Deletes the topic `name` (a topic already gone is not an error).
    pub async fn delete_topic(&self, name: &str) -> Result<(), KafkaError> {
        self.may_change("delete_topic")?;
        use kafka_protocol::messages::DeleteTopicsRequest;
        use kafka_protocol::messages::delete_topics_request::DeleteTopicState;
        const OP: &str = "delete topic";
        const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
        let request_timeout = i32::try_from(REQUEST_TIMEOUT.as_millis()).unwrap_or(i32::MAX);
        let topic = TopicName(StrBytes::from_string(name.to_string()));
        let response = self
            .wire
            .send(
                None,
                DeleteTopicsRequest::default()
                    .with_timeout_ms(request_timeout)
                    .with_topics(vec![
                        DeleteTopicState::default().with_name(Some(topic.clone())),
                    ]),
            )
            .await
            .map_err(|e| self.wire_error(OP, e))?;
        match response.responses.into_iter().next() {
            Some(r) if r.error_code == 0 || r.error_code == UNKNOWN_TOPIC_OR_PARTITION => Ok(()),
            Some(r) => Err(Self::refused(
                OP,
                name,
                r.error_code,
                r.error_message.map(|m| m.to_string()),
            )),
            None => Err(KafkaError::Protocol(
                "DeleteTopics returned no result".into(),
            )),
        }
    }

    /// Changes the topic's configuration incrementally (`IncrementalAlterConfigs`): sets `set`,
    /// removes `delete` (they fall back to the broker's value); other keys are untouched.
    pub async fn alter_topic_config(
        &self,
        name: &str,
        set: &BTreeMap<String, String>,
        delete: &[String],
    ) -> Result<(), KafkaError> {
        self.may_change("alter_topic_config")?;
        use kafka_protocol::messages::IncrementalAlterConfigsRequest;
        use kafka_protocol::messages::incremental_alter_configs_request::{
            AlterConfigsResource, AlterableConfig,
        };
        use kafka_protocol::protocol::StrBytes;
        const OP: &str = "change the configuration of";
        const RESOURCE_TOPIC: i8 = 2;
        const SET: i8 = 0;
        const DELETE: i8 = 1;
        let configs = set
            .iter()
            .map(|(k, v)| {
                AlterableConfig::default()
                    .with_name(StrBytes::from_string(k.clone()))
                    .with_config_operation(SET)
                    .with_value(Some(StrBytes::from_string(v.clone())))
            })
            .chain(delete.iter().map(|k| {
                AlterableConfig::default()
                    .with_name(StrBytes::from_string(k.clone()))
                    .with_config_operation(DELETE)
            }))
            .collect();
        let request = IncrementalAlterConfigsRequest::default().with_resources(vec![
            AlterConfigsResource::default()
                .with_resource_type(RESOURCE_TOPIC)
                .with_resource_name(StrBytes::from_string(name.to_string()))
                .with_configs(configs),
        ]);
        let response = self
            .wire
            .send(None, request)
            .await
            .map_err(|e| self.wire_error(OP, e))?;
        for r in response.responses {
            if r.error_code != 0 {
                let name_of_code = wire::error_name(r.error_code);
                return Err(KafkaError::Refused {
                    operation: OP,
                    resource: r.resource_name.to_string(),
                    code: match r.error_message {
                        Some(m) if !m.is_empty() => format!("{name_of_code}: {m}"),
                        _ => name_of_code.to_string(),
                    },
                });
            }
        }
        Ok(())
    }

    /// Log start, log end and last stable offset of each partition (three batched lookups, one
    /// request per partition leader each).
    pub async fn partition_offsets(
        &self,
        partitions: &[PartitionKey],
    ) -> Result<BTreeMap<PartitionKey, PartitionOffsets>, KafkaError> {
        let op = "list offsets of";
        let lookup = |spec: OffsetSpec| -> Vec<(TopicPartition, OffsetSpec)> {
            partitions.iter().map(|p| (tp(p), spec)).collect()
        };
        let start = self
            .wire
            .list_offsets(&lookup(OffsetSpec::Earliest), Isolation::ReadUncommitted)
            .await
            .map_err(|e| self.wire_error(op, e))?;
        let end = self
            .wire
            .list_offsets(&lookup(OffsetSpec::Latest), Isolation::ReadUncommitted)
            .await
            .map_err(|e| self.wire_error(op, e))?;
        let stable = self
            .wire
            .list_offsets(&lookup(OffsetSpec::Latest), Isolation::ReadCommitted)
            .await
            .map_err(|e| self.wire_error(op, e))?;
        Ok(end
            .iter()
            .map(|(p, log_end)| {
                (
                    key(p),
                    PartitionOffsets {
                        log_start: start.get(p).copied().unwrap_or(0),
                        log_end: *log_end,
                        last_stable: stable.get(p).copied().unwrap_or(*log_end),
                    },
                )
            })
            .collect())
    }

    /// Like [`KafkaAdmin::partition_offsets`], but one topic the brokers cannot answer for (a
    /// partition `NOT_LEADER_OR_FOLLOWER` while a broker still applies a new topic) does not
    /// fail the others: when the whole request fails, each topic is asked on its own, and those
    /// that fail come back with their error instead of offsets.
    pub async fn partition_offsets_by_topic(
        &self,
        partitions: &[PartitionKey],
    ) -> (
        BTreeMap<PartitionKey, PartitionOffsets>,
        BTreeMap<String, KafkaError>,
    ) {
        per_topic(partitions, |some| async move {
            self.partition_offsets(&some).await
        })
        .await
    }

    /// Like [`KafkaAdmin::producers`], one topic's failure kept to that topic (see
    /// [`KafkaAdmin::partition_offsets_by_topic`]).
    pub async fn producers_by_topic(
        &self,
        partitions: &[PartitionKey],
    ) -> (
        BTreeMap<PartitionKey, Vec<ProducerState>>,
        BTreeMap<String, KafkaError>,
    ) {
        per_topic(
            partitions,
            |some| async move { self.producers(&some).await },
        )
        .await
    }

    /// The first offset at or after `at_ms` on each partition (-1 where there is none).
    pub async fn offsets_for_time(
        &self,
        partitions: &[PartitionKey],
        at_ms: i64,
    ) -> Result<BTreeMap<PartitionKey, i64>, KafkaError> {
        let requests: Vec<(TopicPartition, OffsetSpec)> = partitions
            .iter()
            .map(|p| (tp(p), OffsetSpec::Timestamp(at_ms)))
            .collect();
        Ok(self
            .wire
            .list_offsets(&requests, Isolation::ReadUncommitted)
            .await
            .map_err(|e| self.wire_error("look up offsets by time of", e))?
            .iter()
            .map(|(p, o)| (key(p), *o))
            .collect())
    }

    /// The groups among `ids` that the coordinators know, described (state, members). Groups
    /// that do not exist (yet) are left out: Kafka 4 answers `GROUP_ID_NOT_FOUND` for them.
    pub async fn describe_groups(
        &self,
        ids: &[String],
    ) -> Result<BTreeMap<String, GroupDescription>, KafkaError> {
        let listed: BTreeMap<String, wire::GroupListing> = self
            .wire
            .list_groups()
            .await
            .map_err(|e| self.wire_error("list consumer groups", e))?
            .into_iter()
            .filter(|g| ids.contains(&g.group_id))
            .map(|g| (g.group_id.clone(), g))
            .collect();
        // Groups of the new consumer protocol (KIP-848, type `consumer`) are not answered by
        // DescribeGroups; their state comes from the listing, their members are not reported.
        let (classic, modern): (Vec<_>, Vec<_>) = listed
            .into_values()
            .partition(|g| g.group_type.as_deref().is_none_or(|t| t == "classic"));
        let mut out: BTreeMap<String, GroupDescription> = modern
            .into_iter()
            .map(|g| {
                let described = GroupDescription {
                    group_id: g.group_id.clone(),
                    state: g.state.unwrap_or_else(|| "Unknown".into()),
                    protocol_type: g.protocol_type,
                    protocol: String::new(),
                    members: Vec::new(),
                };
                (g.group_id, described)
            })
            .collect();
        let classic: Vec<String> = classic.into_iter().map(|g| g.group_id).collect();
        if !classic.is_empty() {
            out.extend(
                self.wire
                    .describe_groups(&classic)
                    .await
                    .map_err(|e| self.wire_error("describe consumer groups", e))?
                    .into_iter()
                    .map(|g| (g.group_id.clone(), g)),
            );
        }
        Ok(out)
    }

    /// Committed offsets of each of `groups` (one request per group coordinator).
    pub async fn committed_offsets(
        &self,
        groups: &[String],
    ) -> Result<BTreeMap<String, BTreeMap<PartitionKey, i64>>, KafkaError> {
        Ok(self
            .wire
            .committed_offsets_of_groups(groups)
            .await
            .map_err(|e| self.wire_error("fetch committed offsets of", e))?
            .into_iter()
            .map(|(group, offsets)| (group, offsets.iter().map(|(p, o)| (key(p), *o)).collect()))
            .collect())
    }

    /// Committed offsets of each of `groups` with their commit metadata (one request per group
    /// coordinator); each group the coordinator would not answer for is set apart with its error
    /// rather than failing the others' answers.
    pub async fn committed_of_each_group(
        &self,
        groups: &[String],
    ) -> Result<(CommittedWithMetadata, BTreeMap<String, KafkaError>), KafkaError> {
        let (answered, failed) = self
            .wire
            .committed_of_each_group(groups)
            .await
            .map_err(|e| self.wire_error("fetch committed offsets of", e))?;
        let answered = answered
            .into_iter()
            .map(|(group, offsets)| {
                let offsets = offsets.into_iter().map(|(p, c)| (key(&p), c)).collect();
                (group, offsets)
            })
            .collect();
        let failed = failed
            .into_iter()
            .map(|(group, e)| (group, self.wire_error("fetch committed offsets of", e)))
            .collect();
        Ok((answered, failed))
    }

    /// Commits `offsets` for `group` as an administrator (the group must be Empty), each with
    /// `metadata` as its commit metadata.
    pub async fn commit_offsets(
        &self,
        group: &str,
        offsets: &BTreeMap<PartitionKey, i64>,
        metadata: &str,
    ) -> Result<(), KafkaError> {
        self.may_change("commit_offsets")?;
        let offsets: BTreeMap<TopicPartition, i64> =
            offsets.iter().map(|(p, o)| (tp(p), *o)).collect();
        self.wire
            .commit_offsets_marked(group, &offsets, Some(metadata))
            .await
            .map_err(|e| self.wire_error("commit offsets of", e))
    }

    /// Every transactional id the transaction coordinators know.
    pub async fn list_transactions(&self) -> Result<Vec<TransactionListing>, KafkaError> {
        self.wire
            .list_transactions()
            .await
            .map_err(|e| self.wire_error("list transactions", e))
    }

    /// The given transactional ids, as their coordinators describe them.
    pub async fn describe_transactions(
        &self,
        ids: &[String],
    ) -> Result<BTreeMap<String, TransactionDescription>, KafkaError> {
        Ok(self
            .wire
            .describe_transactions(ids)
            .await
            .map_err(|e| self.wire_error("describe transactions", e))?
            .into_iter()
            .map(|t| (t.transactional_id.clone(), t))
            .collect())
    }

    /// Active producers of each partition, as the partition leaders report them.
    pub async fn producers(
        &self,
        partitions: &[PartitionKey],
    ) -> Result<BTreeMap<PartitionKey, Vec<ProducerState>>, KafkaError> {
        let tps: Vec<TopicPartition> = partitions.iter().map(tp).collect();
        Ok(self
            .wire
            .describe_producers(&tps)
            .await
            .map_err(|e| self.wire_error("describe producers of", e))?
            .into_iter()
            .map(|(p, states)| (key(&p), states))
            .collect())
    }

    /// Fences `transactional_id` (a new epoch, its open transaction aborted). Returns the new
    /// producer id and epoch.
    pub async fn fence_transactional_id(
        &self,
        transactional_id: &str,
        transaction_timeout_ms: i32,
    ) -> Result<(i64, i16), KafkaError> {
        self.may_change("fence_transactional_id")?;
        self.wire
            .fence_transactional_id(transactional_id, transaction_timeout_ms)
            .await
            .map_err(|e| self.wire_error("fence the transactional id", e))
    }

    /// Aborts the open transaction of `producer` on `partition` by writing an abort marker.
    pub async fn abort_transaction(
        &self,
        partition: &PartitionKey,
        producer: &ProducerState,
    ) -> Result<(), KafkaError> {
        self.may_change("abort_transaction")?;
        self.wire
            .abort_transaction(
                &tp(partition),
                producer.producer_id,
                producer.producer_epoch,
                producer.coordinator_epoch,
            )
            .await
            .map_err(|e| self.wire_error("abort a transaction on", e))
    }

    /// The SCRAM mechanisms `user` has a credential for (none: no such user).
    pub async fn scram_mechanisms(
        &self,
        user: &str,
    ) -> Result<Vec<scram_credential::ScramMechanism>, KafkaError> {
        let mut users = self
            .wire
            .scram_users(&[user.to_string()])
            .await
            .map_err(|e| self.wire_error("describe the SCRAM credentials of", e))?;
        Ok(users.remove(user).unwrap_or_default())
    }

    /// Creates or replaces `user`'s credential for `mechanism`, from `password`.
    pub async fn upsert_scram_user(
        &self,
        user: &str,
        mechanism: scram_credential::ScramMechanism,
        password: &str,
    ) -> Result<(), KafkaError> {
        self.may_change("upsert_scram_user")?;
        self.wire
            .upsert_scram_user(user, mechanism, password, SCRAM_ITERATIONS)
            .await
            .map_err(|e| self.wire_error("set the SCRAM credential of", e))
    }

    /// Deletes `user`'s credential for `mechanism`.
    pub async fn delete_scram_user(
        &self,
        user: &str,
        mechanism: scram_credential::ScramMechanism,
    ) -> Result<(), KafkaError> {
        self.may_change("delete_scram_user")?;
        self.wire
            .delete_scram_user(user, mechanism)
            .await
            .map_err(|e| self.wire_error("delete the SCRAM credential of", e))
    }

    /// The ACLs of `principal` (e.g. `User:alice`), sorted.
    pub async fn acls_of(&self, principal: &str) -> Result<Vec<acl::AclBinding>, KafkaError> {
        self.wire
            .acls_of_principal(principal)
            .await
            .map_err(|e| self.wire_error("describe the ACLs of", e))
    }

    /// Creates `bindings`; the first one Kafka refuses fails the call.
    pub async fn create_acls(&self, bindings: &[acl::AclBinding]) -> Result<(), KafkaError> {
        if bindings.is_empty() {
            return Ok(());
        }
        self.may_change("create_acls")?;
        let results = self
            .wire
            .create_acls(bindings)
            .await
            .map_err(|e| self.wire_error("create ACLs", e))?;
        for result in results {
            result.map_err(|e| self.wire_error("create ACL", e))?;
        }
        Ok(())
    }

    /// Deletes `bindings` (each matched exactly; one matching nothing is not an error).
    pub async fn delete_acls(&self, bindings: &[acl::AclBinding]) -> Result<(), KafkaError> {
        if bindings.is_empty() {
            return Ok(());
        }
        self.may_change("delete_acls")?;
        self.wire
            .delete_acls(bindings)
            .await
            .map(drop)
            .map_err(|e| self.wire_error("delete ACLs", e))
    }

    /// Why the topic must not be deleted now: open transactions on it, consumer groups with
    /// members that consume it. Empty when it may go.
    pub async fn topic_in_use(&self, name: &str) -> Result<Vec<String>, KafkaError> {
        let mut reasons = Vec::new();
        let partitions = self.partitions(&[name.to_string()]).await?;
        let keys: Vec<PartitionKey> = partitions
            .get(name)
            .map(|ps| ps.iter().map(|p| (name.to_string(), *p)).collect())
            .unwrap_or_default();
        if keys.is_empty() {
            return Ok(reasons);
        }
        let open: Vec<String> = self
            .producers(&keys)
            .await?
            .iter()
            .flat_map(|((t, p), states)| {
                states
                    .iter()
                    .filter(|s| s.current_txn_start_offset >= 0)
                    .map(move |s| format!("{t}-{p} (producer {})", s.producer_id))
            })
            .collect();
        if !open.is_empty() {
            reasons.push(format!("open transactions on {}", open.join(", ")));
        }
        let listed = self
            .wire
            .list_groups()
            .await
            .map_err(|e| self.wire_error("list consumer groups", e))?;
        let ids: Vec<String> = listed.into_iter().map(|g| g.group_id).collect();
        if ids.is_empty() {
            return Ok(reasons);
        }
        let groups = self.describe_groups(&ids).await?;
        let mut active = Vec::new();
        for (id, group) in &groups {
            if group.members.is_empty() {
                continue;
            }
            let assigned = group
                .members
                .iter()
                .any(|m| m.assigned_topics.iter().any(|t| t == name));
            let committed = assigned
                || self
                    .committed_offsets(std::slice::from_ref(id))
                    .await?
                    .values()
                    .any(|o| o.keys().any(|(t, _)| t == name));
            if committed {
                active.push(format!("'{id}' ({} member(s))", group.members.len()));
            }
        }
        if !active.is_empty() {
            reasons.push(format!(
                "consumer group(s) with members reading it: {}",
                active.join(", ")
            ));
        }
        Ok(reasons)
    }
}

/// One [`KafkaAdmin`] per cluster, shared by every resource on it: a client holds connections,
/// so resources must not each open their own.
#[derive(Default)]
pub struct KafkaClients {
    by_cluster: Mutex<HashMap<(String, security::Security), Arc<KafkaAdmin>>>,
    /// Given to every client made, to count its requests.
    counter: Option<wire::RequestCounter>,
    /// Given to every client made: no change is sent while it does not hold.
    fence: Fence,
}

impl KafkaClients {
    /// Clients that tell `counter` the API name of every request they send.
    pub fn counting(counter: wire::RequestCounter) -> Self {
        KafkaClients {
            by_cluster: Mutex::default(),
            counter: Some(counter),
            fence: Fence::open(),
        }
    }

    /// These clients, sending no change while `fence` does not hold.
    pub fn fenced(mut self, fence: Fence) -> Self {
        self.fence = fence;
        self
    }

    /// The plaintext client for `bootstrap`, created on first use.
    pub fn admin(&self, bootstrap: &str) -> Result<Arc<KafkaAdmin>, KafkaError> {
        self.admin_with(bootstrap, &security::Security::default())
    }

    /// The client for `bootstrap` with `security`, created on first use.
    pub fn admin_with(
        &self,
        bootstrap: &str,
        security: &security::Security,
    ) -> Result<Arc<KafkaAdmin>, KafkaError> {
        let mut clients = self
            .by_cluster
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let key = (bootstrap.to_string(), security.clone());
        if let Some(admin) = clients.get(&key) {
            return Ok(admin.clone());
        }
        let admin = Arc::new(
            KafkaAdmin::connect_counting(bootstrap, security.clone(), self.counter.clone())?
                .fenced(self.fence.clone()),
        );
        clients.insert(key, admin.clone());
        Ok(admin)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn one_topic_the_brokers_do_not_answer_for_fails_alone() {
        let parts = |topics: &[&str]| -> Vec<PartitionKey> {
            topics.iter().map(|t| (t.to_string(), 0)).collect()
        };
        let answer = |some: Vec<PartitionKey>| async move {
            if some.iter().any(|(t, _)| t == "new") {
                Err(KafkaError::Refused {
                    operation: "list offsets of",
                    resource: "new".into(),
                    code: "NOT_LEADER_OR_FOLLOWER".into(),
                })
            } else {
                Ok(some.into_iter().map(|p| (p, 1)).collect::<BTreeMap<_, _>>())
            }
        };
        let (found, failed) = per_topic(&parts(&["orders", "new", "payments"]), answer).await;
        assert_eq!(
            found.keys().map(|(t, _)| t.as_str()).collect::<Vec<_>>(),
            ["orders", "payments"]
        );
        assert_eq!(failed.keys().collect::<Vec<_>>(), ["new"]);

        let (found, failed) = per_topic(&parts(&["orders", "payments"]), answer).await;
        assert_eq!(found.len(), 2);
        assert!(failed.is_empty());

        let (found, failed) = per_topic(&parts(&["new"]), answer).await;
        assert!(found.is_empty());
        assert_eq!(failed.keys().collect::<Vec<_>>(), ["new"]);
    }

    #[test]
    fn a_create_answer_lists_only_what_is_set_on_the_topic_itself_and_only_from_v5() {
        use kafka_protocol::messages::create_topics_response::{
            CreatableTopicConfigs, CreatableTopicResult,
        };
        let entry = |name: &str, value: Option<&str>, source: i8| {
            CreatableTopicConfigs::default()
                .with_name(StrBytes::from_string(name.into()))
                .with_value(value.map(|v| StrBytes::from_string(v.into())))
                .with_config_source(source)
        };
        let answer = CreatableTopicResult::default().with_configs(Some(vec![
            entry("retention.ms", Some("3600000"), 1),
            entry("cleanup.policy", Some("delete"), 5),
            entry("min.insync.replicas", Some("2"), 4),
            entry("sasl.secret", None, 1),
        ]));
        assert_eq!(
            created_config(7, &answer),
            Some(BTreeMap::from([(
                "retention.ms".to_string(),
                "3600000".to_string()
            )]))
        );
        assert_eq!(created_config(4, &answer), None, "no configs before v5");
        let refused = answer.clone().with_topic_config_error_code(29);
        assert_eq!(created_config(7, &refused), None, "not allowed to describe");
        let unlisted = CreatableTopicResult::default().with_configs(None);
        assert_eq!(created_config(7, &unlisted), None);
    }

    fn partition(partition: i32, replicas: &[i32], isr: &[i32]) -> wire::PartitionMetadata {
        wire::PartitionMetadata {
            partition,
            leader: isr.first().copied().unwrap_or(-1),
            leader_epoch: 0,
            replicas: replicas.to_vec(),
            isr: isr.to_vec(),
            offline_replicas: Vec::new(),
        }
    }

    #[test]
    fn replica_health_counts_every_partition_and_lists_those_short_of_in_sync_replicas() {
        let metadata = wire::ClusterMetadata {
            cluster_id: None,
            controller_id: 1,
            brokers: [2, 1]
                .map(|id| wire::BrokerMetadata {
                    id,
                    host: "b".into(),
                    port: 9092,
                    rack: None,
                })
                .to_vec(),
            topics: vec![wire::TopicMetadata {
                name: "orders".into(),
                topic_id: String::new(),
                internal: false,
                partitions: vec![
                    partition(0, &[1, 2, 3], &[1, 2, 3]),
                    partition(1, &[1, 2, 3], &[2, 1]),
                ],
            }],
        };
        let health = ReplicaHealth::of(&metadata);
        assert_eq!(health.live_brokers, [1, 2]);
        assert_eq!(health.partitions, 2);
        assert_eq!(
            health.short,
            [ShortPartition {
                topic: "orders".into(),
                partition: 1,
                replicas: vec![1, 2, 3],
                isr: vec![2, 1],
            }]
        );
    }
}
