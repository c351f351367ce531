//! The one place that talks to Kafka brokers. Controllers see [`KafkaAdmin`] and plain data types
//! ([`TopicDescription`], [`NewTopicRequest`]); rdkafka stays behind this module.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::admin::{
    AdminClient, AdminOptions, ConfigSource, NewPartitions, NewTopic, ResourceSpecifier,
    TopicReplication,
};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::error::KafkaError as RdKafkaError;
use rdkafka::types::{RDKafkaErrorCode, RDKafkaRespErr};
use thiserror::Error;

/// How long one admin request may take before it counts as the cluster being unreachable.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

/// Failures talking to Kafka, split by what a person should do about them.
#[derive(Error, Debug)]
pub enum KafkaError {
    /// The brokers did not answer (network, DNS, broker down, timeout).
    #[error("cannot reach Kafka at {bootstrap}: {source}")]
    Unreachable {
        bootstrap: String,
        #[source]
        source: RdKafkaError,
    },
    /// A broker answered and refused the request; `code` says why.
    #[error("Kafka refused to {operation} '{resource}': {code}")]
    Refused {
        operation: &'static str,
        resource: String,
        code: RDKafkaErrorCode,
    },
    /// The client could not be built from the given settings.
    #[error("invalid Kafka client settings: {0}")]
    ClientConfig(#[source] RdKafkaError),
    /// A blocking client call was lost (its worker thread panicked or was cancelled).
    #[error("Kafka client call did not complete: {0}")]
    Interrupted(String),
}

impl KafkaError {
    /// Stable CamelCase label for conditions, events and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            KafkaError::Unreachable { .. } => "KafkaUnreachable",
            KafkaError::Refused { .. } => "KafkaRefused",
            KafkaError::ClientConfig(_) => "KafkaClientConfigInvalid",
            KafkaError::Interrupted(_) => "KafkaCallInterrupted",
        }
    }
}

/// A topic as the broker reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicDescription {
    pub name: String,
    pub partitions: i32,
    /// Replicas of partition 0 (Kafka keeps one replication factor per topic in practice).
    pub replication_factor: i32,
}

/// A cluster as its brokers report it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterDescription {
    pub cluster_id: Option<String>,
    pub brokers: i32,
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
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CreateOutcome {
    Created,
    /// It was there already (created by someone else, or by us a moment ago).
    AlreadyExists,
}

/// One configuration entry of a topic, with where its value comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicConfigEntry {
    pub value: Option<String>,
    /// Set on the topic itself (as opposed to inherited from broker settings or defaults).
    pub set_on_topic: bool,
}

/// Admin access to one Kafka cluster.
pub struct KafkaAdmin {
    bootstrap: String,
    admin: Arc<AdminClient<DefaultClientContext>>,
}

impl KafkaAdmin {
    /// Builds a client for the brokers at `bootstrap` (`host:port[,host:port...]`). No request is
    /// sent until the first call.
    pub fn connect(bootstrap: &str) -> Result<Self, KafkaError> {
        let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("client.id", "exactly-operator")
            .set("allow.auto.create.topics", "false")
            .set("socket.timeout.ms", "10000")
            .create()
            .map_err(KafkaError::ClientConfig)?;
        Ok(KafkaAdmin {
            bootstrap: bootstrap.to_string(),
            admin: Arc::new(admin),
        })
    }

    /// The bootstrap servers this client talks to.
    pub fn bootstrap(&self) -> &str {
        &self.bootstrap
    }

    fn options() -> AdminOptions {
        AdminOptions::new()
            .request_timeout(Some(REQUEST_TIMEOUT))
            .operation_timeout(Some(REQUEST_TIMEOUT))
    }

    fn unreachable(&self, source: RdKafkaError) -> KafkaError {
        KafkaError::Unreachable {
            bootstrap: self.bootstrap.clone(),
            source,
        }
    }

    /// The cluster id and how many brokers the cluster has.
    pub async fn describe_cluster(&self) -> Result<ClusterDescription, KafkaError> {
        let admin = self.admin.clone();
        let described = tokio::task::spawn_blocking(move || {
            // Metadata for one topic still lists every broker, without the cost of describing
            // every topic of a large cluster.
            let metadata = admin
                .inner()
                .fetch_metadata(Some("__consumer_offsets"), REQUEST_TIMEOUT)?;
            let cluster_id = admin.inner().fetch_cluster_id(REQUEST_TIMEOUT);
            Ok::<_, RdKafkaError>((metadata.brokers().len(), cluster_id))
        })
        .await
        .map_err(|e| KafkaError::Interrupted(e.to_string()))?;
        let (brokers, cluster_id) = described.map_err(|e| self.unreachable(e))?;
        Ok(ClusterDescription {
            cluster_id,
            brokers: i32::try_from(brokers).unwrap_or(i32::MAX),
        })
    }

    /// Partitions and replication of `name`, or `None` when the topic does not exist.
    pub async fn describe_topic(&self, name: &str) -> Result<Option<TopicDescription>, KafkaError> {
        let admin = self.admin.clone();
        let topic = name.to_string();
        // librdkafka's metadata call blocks; keep it off the async workers.
        let metadata = tokio::task::spawn_blocking(move || {
            admin.inner().fetch_metadata(Some(&topic), REQUEST_TIMEOUT)
        })
        .await
        .map_err(|e| KafkaError::Interrupted(e.to_string()))?
        .map_err(|e| self.unreachable(e))?;

        let Some(topic) = metadata.topics().iter().find(|t| t.name() == name) else {
            return Ok(None);
        };
        match topic.error() {
            None => {}
            Some(RDKafkaRespErr::RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART) => return Ok(None),
            Some(err) => {
                return Err(KafkaError::Refused {
                    operation: "describe topic",
                    resource: name.to_string(),
                    code: RDKafkaErrorCode::from(err),
                });
            }
        }
        let partitions = i32::try_from(topic.partitions().len()).unwrap_or(i32::MAX);
        let replication_factor = topic
            .partitions()
            .iter()
            .find(|p| p.id() == 0)
            .map(|p| i32::try_from(p.replicas().len()).unwrap_or(i32::MAX))
            .unwrap_or(0);
        Ok(Some(TopicDescription {
            name: name.to_string(),
            partitions,
            replication_factor,
        }))
    }

    /// Creates a topic. A topic that already exists is not an error: the caller adopts it.
    pub async fn create_topic(
        &self,
        request: &NewTopicRequest,
    ) -> Result<CreateOutcome, KafkaError> {
        // -1 asks the broker for its default.replication.factor (CreateTopics v4+).
        let replication = request.replication_factor.unwrap_or(-1);
        let mut new_topic = NewTopic::new(
            &request.name,
            request.partitions,
            TopicReplication::Fixed(replication),
        );
        for (key, value) in &request.config {
            new_topic = new_topic.set(key, value);
        }
        let results = self
            .admin
            .create_topics([&new_topic], &Self::options())
            .await
            .map_err(|e| self.unreachable(e))?;
        match results.into_iter().next() {
            Some(Ok(_)) => Ok(CreateOutcome::Created),
            Some(Err((_, RDKafkaErrorCode::TopicAlreadyExists))) => {
                Ok(CreateOutcome::AlreadyExists)
            }
            Some(Err((_, code))) => Err(KafkaError::Refused {
                operation: "create topic",
                resource: request.name.clone(),
                code,
            }),
            None => Err(KafkaError::Interrupted(
                "CreateTopics returned no result".into(),
            )),
        }
    }

    /// Raises the partition count of `name` to `partitions`.
    pub async fn grow_partitions(&self, name: &str, partitions: i32) -> Result<(), KafkaError> {
        let count = usize::try_from(partitions).unwrap_or(0);
        let request = NewPartitions::new(name, count);
        let results = self
            .admin
            .create_partitions([&request], &Self::options())
            .await
            .map_err(|e| self.unreachable(e))?;
        match results.into_iter().next() {
            Some(Ok(_)) => Ok(()),
            Some(Err((_, code))) => Err(KafkaError::Refused {
                operation: "add partitions to",
                resource: name.to_string(),
                code,
            }),
            None => Err(KafkaError::Interrupted(
                "CreatePartitions returned no result".into(),
            )),
        }
    }

    /// The topic's configuration, every key, with whether it is set on the topic itself.
    pub async fn topic_config(
        &self,
        name: &str,
    ) -> Result<BTreeMap<String, TopicConfigEntry>, KafkaError> {
        let results = self
            .admin
            .describe_configs([&ResourceSpecifier::Topic(name)], &Self::options())
            .await
            .map_err(|e| self.unreachable(e))?;
        let resource = match results.into_iter().next() {
            Some(Ok(resource)) => resource,
            Some(Err(code)) => {
                return Err(KafkaError::Refused {
                    operation: "describe configs of",
                    resource: name.to_string(),
                    code,
                });
            }
            None => {
                return Err(KafkaError::Interrupted(
                    "DescribeConfigs returned no result".into(),
                ));
            }
        };
        Ok(resource
            .entries
            .into_iter()
            .map(|entry| {
                let set_on_topic = entry.source == ConfigSource::DynamicTopic;
                (
                    entry.name,
                    TopicConfigEntry {
                        value: entry.value,
                        set_on_topic,
                    },
                )
            })
            .collect())
    }
}

/// One [`KafkaAdmin`] per cluster, shared by every resource on it: a client holds threads and
/// connections, so resources must not each open their own.
#[derive(Default)]
pub struct KafkaClients {
    by_bootstrap: Mutex<HashMap<String, Arc<KafkaAdmin>>>,
}

impl KafkaClients {
    /// The client for `bootstrap`, created on first use.
    pub fn admin(&self, bootstrap: &str) -> Result<Arc<KafkaAdmin>, KafkaError> {
        let mut clients = self
            .by_bootstrap
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(admin) = clients.get(bootstrap) {
            return Ok(admin.clone());
        }
        let admin = Arc::new(KafkaAdmin::connect(bootstrap)?);
        clients.insert(bootstrap.to_string(), admin.clone());
        Ok(admin)
    }
}
