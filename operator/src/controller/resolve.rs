//! Looking up what a resource refers to (its KafkaCluster, its Topics), and the status a
//! resource shows while it waits for them. Shared by the Producer and ConsumerGroup controllers.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::reflector::ObjectRef;

use super::Context;
use crate::api::conditions::{self, types};
use crate::api::{Condition, ConditionStatus, KafkaCluster, TopicRef};
use crate::kafka::security::Security;
use crate::kafka::{KafkaAdmin, KafkaError};

/// A status with conditions, whatever its kind.
pub trait HasConditions {
    fn conditions(&self) -> &[Condition];
    fn conditions_mut(&mut self) -> &mut Vec<Condition>;
    fn set_observed_generation(&mut self, generation: Option<i64>);
}

macro_rules! has_conditions {
    ($($t:ty),*) => {$(
        impl HasConditions for $t {
            fn conditions(&self) -> &[Condition] {
                &self.conditions
            }
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
    crate::api::KafkaClusterStatus,
    crate::api::PipelineStatus,
    crate::api::PulsarClusterStatus
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

/// The Kafka client properties of `cluster`, read freshly from its Secret
/// (`spec.external.secretRef`); none for a cluster without one.
pub async fn client_properties(
    ctx: &Context,
    cluster: &KafkaCluster,
) -> Result<BTreeMap<String, String>, KafkaError> {
    let Some(secret_ref) = cluster.secret_ref() else {
        return Ok(BTreeMap::new());
    };
    let secrets: Api<Secret> =
        Api::namespaced(ctx.client.clone(), &cluster.namespace().unwrap_or_default());
    let secret = secrets
        .get_opt(&secret_ref.name)
        .await
        .map_err(|e| KafkaError::Interrupted(format!("reading Secret '{}': {e}", secret_ref.name)))?
        .ok_or_else(|| {
            KafkaError::ClientConfig(format!(
                "Secret '{}' named by spec.external.secretRef does not exist: create it or remove the reference",
                secret_ref.name
            ))
        })?;
    let mut props: BTreeMap<String, String> = secret.string_data.unwrap_or_default();
    for (k, v) in secret.data.unwrap_or_default() {
        props.insert(k, String::from_utf8_lossy(&v.0).into_owned());
    }
    Ok(props)
}

/// Reads the connection security of `cluster` from its Secret (`spec.external.secretRef`),
/// freshly, and remembers it for the other controllers.
pub async fn load_security(ctx: &Context, cluster: &KafkaCluster) -> Result<Security, KafkaError> {
    let namespace = cluster.namespace().unwrap_or_default();
    let security = match &cluster.secret_ref() {
        None => Security::default(),
        Some(secret_ref) => {
            let props = client_properties(ctx, cluster).await?;
            Security::from_properties(&props).map_err(|e| {
                KafkaError::ClientConfig(format!("Secret '{}': {e}", secret_ref.name))
            })?
        }
    };
    ctx.security
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(
            format!("{namespace}/{}", cluster.name_any()),
            security.clone(),
        );
    Ok(security)
}

/// The admin client of `cluster`, with its connection security (read once, then refreshed by
/// the KafkaCluster controller).
pub async fn admin(
    ctx: &Context,
    cluster: &KafkaCluster,
) -> Result<std::sync::Arc<KafkaAdmin>, KafkaError> {
    let security = security(ctx, cluster).await?;
    ctx.kafka
        .admin_with(&cluster.bootstrap_servers(), &security)
}

/// The connection security of `cluster` (read once, then refreshed by the KafkaCluster
/// controller).
pub async fn security(ctx: &Context, cluster: &KafkaCluster) -> Result<Security, KafkaError> {
    let key = format!(
        "{}/{}",
        cluster.namespace().unwrap_or_default(),
        cluster.name_any()
    );
    let known = ctx
        .security
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(&key)
        .cloned();
    match known {
        Some(security) if cluster.secret_ref().is_some() => Ok(security),
        _ if cluster.secret_ref().is_none() => Ok(Security::default()),
        _ => load_security(ctx, cluster).await,
    }
}

/// `status` saying the resource cannot go on until its spec (or what it refers to) changes.
pub fn stalled_status<S: HasConditions>(
    generation: Option<i64>,
    mut status: S,
    reason: &str,
    message: String,
) -> S {
    use ConditionStatus::{False, True};
    let desired = vec![
        Condition::new(types::READY, False, reason, message, generation),
        Condition::new(types::RECONCILING, False, reason, "", generation),
        Condition::new(types::STALLED, True, reason, "", generation),
    ];
    let merged = conditions::merge(status.conditions(), desired);
    *status.conditions_mut() = merged;
    status.set_observed_generation(generation);
    status
}
