//! Looking up what a resource refers to (its KafkaCluster, its Topics), and the status a
//! resource shows while it waits for them. Shared by the Producer and ConsumerGroup controllers.

use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::reflector::ObjectRef;

use super::Context;
use crate::api::conditions::{self, types};
use crate::api::{Condition, ConditionStatus, KafkaCluster, TopicRef};
use crate::kafka::KafkaError;

/// A status with conditions, whatever its kind.
pub trait HasConditions {
    fn conditions_mut(&mut self) -> &mut Vec<Condition>;
    fn set_observed_generation(&mut self, generation: Option<i64>);
}

macro_rules! has_conditions {
    ($($t:ty),*) => {$(
        impl HasConditions for $t {
            fn conditions_mut(&mut self) -> &mut Vec<Condition> {
                &mut self.conditions
            }
            fn set_observed_generation(&mut self, generation: Option<i64>) {
                self.observed_generation = generation;
            }
        }
    )*};
}
has_conditions!(
    crate::api::ProducerStatus,
    crate::api::ConsumerGroupStatus,
    crate::api::TopicStatus,
    crate::api::KafkaClusterStatus
);

/// Why a resource cannot be worked on yet.
#[derive(Debug)]
pub enum Waiting {
    /// `spec.clusterRef` names no KafkaCluster in the namespace.
    ClusterNotFound(String),
    /// The API server could not be read.
    Api(String),
}

impl Waiting {
    /// `status` with conditions saying what the resource waits for.
    pub fn status<S: HasConditions>(&self, generation: Option<i64>, mut status: S) -> S {
        let (reason, message) = match self {
            Waiting::ClusterNotFound(cluster) => (
                "ClusterNotFound",
                format!(
                    "KafkaCluster '{cluster}' does not exist in this namespace: create it, or correct spec.clusterRef.name"
                ),
            ),
            Waiting::Api(message) => ("KubernetesApiError", format!("{message}; retrying")),
        };
        set_waiting(
            &mut status,
            generation,
            reason,
            message,
            "WaitingForCluster",
        );
        status
    }
}

fn set_waiting<S: HasConditions>(
    status: &mut S,
    generation: Option<i64>,
    reason: &str,
    message: String,
    why: &str,
) {
    use ConditionStatus::{False, True};
    let desired = vec![
        Condition::new(types::READY, False, reason, message, generation),
        Condition::new(types::RECONCILING, True, why, "", generation),
        Condition::new(types::STALLED, False, why, "", generation),
    ];
    let merged = conditions::merge(status.conditions_mut(), desired);
    *status.conditions_mut() = merged;
    status.set_observed_generation(generation);
}

/// `status` saying the brokers could not be reached (a retryable wait).
pub fn unreachable_status<S: HasConditions>(
    generation: Option<i64>,
    mut status: S,
    error: &KafkaError,
) -> S {
    set_waiting(
        &mut status,
        generation,
        error.reason(),
        format!("{error}; retrying"),
        "RetryingKafka",
    );
    status
}

/// The KafkaCluster `name` in `namespace`: from the controllers' cache, else from the API server.
pub async fn cluster(ctx: &Context, namespace: &str, name: &str) -> Result<KafkaCluster, Waiting> {
    if let Some(cluster) = ctx.clusters.get(&ObjectRef::new(name).within(namespace)) {
        return Ok((*cluster).clone());
    }
    let api: Api<KafkaCluster> = Api::namespaced(ctx.client.clone(), namespace);
    match api.get_opt(name).await {
        Ok(Some(cluster)) => Ok(cluster),
        Ok(None) => Err(Waiting::ClusterNotFound(name.to_string())),
        Err(e) => Err(Waiting::Api(format!("reading KafkaCluster '{name}': {e}"))),
    }
}

/// Kafka topic names of Topic references: the Topic's `spec.topicName` when the resource is
/// known, else the reference's name (a Topic not created yet usually gets the same name).
pub fn topic_names(ctx: &Context, namespace: &str, refs: &[TopicRef]) -> Vec<String> {
    let mut names: Vec<String> = refs
        .iter()
        .map(|r| {
            ctx.topics
                .get(&ObjectRef::new(&r.name).within(namespace))
                .map(|t| t.kafka_topic_name())
                .unwrap_or_else(|| r.name.clone())
        })
        .collect();
    names.sort();
    names.dedup();
    names
}

/// `namespace/name` of a resource, for messages.
pub fn qualified<K: ResourceExt>(object: &K) -> String {
    format!(
        "{}/{}",
        object.namespace().unwrap_or_default(),
        object.name_any()
    )
}
