//! Reconciles `Topic`: makes the topic exist as declared on its cluster (Kafka or Pulsar), keeps
//! its configuration as declared (per `driftPolicy`), deletes it on request (per
//! `deletionPolicy`), and reports it.
//!
//! Planning ([`plan_topic_change`], [`plan_config`], [`conflict_owner`]) and status
//! ([`topic_status`]) are pure functions and know no system; [`converge`] drives them through a
//! [`TopicAdmin`] — Kafka's batched calls ([`TopicBatches`]) or Pulsar's admin API
//! ([`crate::pulsar::topics::PulsarTopics`]). Kafka Topics in sync are then kept by the shared
//! observation ([`refresh`]); Pulsar Topics are looked at again every refresh interval.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::jiff::{SignedDuration, Timestamp};

use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::reflector::ObjectRef;
use kube::{Resource, ResourceExt};
use tracing::{debug, info, warn};

use super::Context;
use super::batch::{Batcher, Linger};
use crate::api::conditions::{self, types};
use crate::api::{
    Condition, ConditionStatus, ConfigDrift, DeletionPolicy, DriftPolicy, KafkaCluster, Topic,
    TopicStatus,
};
use crate::backend::{self, System, TopicAdmin, TopicConfig};
use crate::kafka::{CreateOutcome, KafkaAdmin, KafkaError, NewTopicRequest, TopicDescription};
use crate::{Error, Result};

/// How often an in-sync topic is looked at again (the broker can change behind our back).
const RESYNC: Duration = Duration::from_secs(300);
/// Retry interval while the cluster is unreachable or missing, or a deletion is blocked.
const RETRY: Duration = Duration::from_secs(15);
/// The finalizer a Topic with `deletionPolicy: Delete` carries, so the topic is deleted first.
pub const FINALIZER: &str = "exactly.dev/delete-topic";
/// Condition type: `True` when configuration set in Kafka differs from `spec.config`.
pub const DRIFTED: &str = "Drifted";
/// Condition type: `True` when an older resource manages the same Kafka topic.
pub const RESOURCE_CONFLICT: &str = "ResourceConflict";

/// What the broker's topic needs in order to match the spec.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TopicChange {
    Create(NewTopicRequest),
    GrowPartitions {
        from: i32,
        to: i32,
    },
    /// Kafka cannot remove partitions; never attempted.
    PartitionDecrease {
        have: i32,
        want: i32,
    },
    /// Changing replication needs a partition reassignment, which we do not do (yet).
    ReplicationChange {
        have: i32,
        want: i32,
    },
    None,
}

/// Compares the declared topic with what the broker has.
pub fn plan_topic_change(topic: &Topic, observed: Option<&TopicDescription>) -> TopicChange {
    let spec = &topic.spec;
    let Some(observed) = observed else {
        return TopicChange::Create(NewTopicRequest {
            name: topic.system_topic_name(),
            partitions: spec.partitions,
            replication_factor: spec.replication_factor,
            config: declared_config(topic),
        });
    };
    if let Some(want) = spec.replication_factor
        && want != observed.replication_factor
    {
        return TopicChange::ReplicationChange {
            have: observed.replication_factor,
            want,
        };
    }
    if spec.partitions < observed.partitions {
        TopicChange::PartitionDecrease {
            have: observed.partitions,
            want: spec.partitions,
        }
    } else if spec.partitions > observed.partitions {
        TopicChange::GrowPartitions {
            from: observed.partitions,
            to: spec.partitions,
        }
    } else {
        TopicChange::None
    }
}

/// The configuration a Topic declares in its system's terms: on Kafka `spec.config`; on Pulsar
/// the policies of `spec.pulsar`, deduplication always on
/// ([`crate::pulsar::topics::declared_policies`]).
pub fn declared_config(topic: &Topic) -> TopicConfig {
    if topic.on_pulsar() {
        crate::pulsar::topics::declared_policies(topic.spec.pulsar.as_ref())
    } else {
        topic.spec.config.clone()
    }
}

/// How the topic's configuration must change, and the drift left in place.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConfigPlan {
    /// Keys to set to these values.
    pub set: BTreeMap<String, String>,
    /// Keys to remove from the topic (they fall back to the broker's value).
    pub delete: Vec<String>,
    /// Differences left in place and reported (`driftPolicy: Report`).
    pub drift: Vec<ConfigDrift>,
}

impl ConfigPlan {
    /// Whether the plan changes anything in Kafka.
    pub fn alters(&self) -> bool {
        !self.set.is_empty() || !self.delete.is_empty()
    }
}

/// Compares `spec.config` with the configuration set on the topic itself (`on_topic`: only
/// dynamically set topic configs, never broker defaults). A spec the operator has not yet
/// applied (`spec_applied` false) is applied in full whatever the policy; after that, differences
/// are drift, handled per `policy`.
pub fn plan_config(
    spec: &BTreeMap<String, String>,
    on_topic: &BTreeMap<String, String>,
    policy: DriftPolicy,
    spec_applied: bool,
) -> ConfigPlan {
    let mut differences: Vec<ConfigDrift> = spec
        .iter()
        .filter(|(key, value)| on_topic.get(*key) != Some(*value))
        .map(|(key, value)| ConfigDrift {
            key: key.clone(),
            expected: Some(value.clone()),
            actual: on_topic.get(key).cloned(),
        })
        .collect();
    differences.extend(
        on_topic
            .iter()
            .filter(|(key, _)| !spec.contains_key(*key))
            .map(|(key, value)| ConfigDrift {
                key: key.clone(),
                expected: None,
                actual: Some(value.clone()),
            }),
    );
    differences.sort_by(|a, b| a.key.cmp(&b.key));
    let mut plan = ConfigPlan::default();
    if !spec_applied || policy == DriftPolicy::Revert {
        for d in differences {
            match d.expected {
                Some(value) => {
                    plan.set.insert(d.key, value);
                }
                None => plan.delete.push(d.key),
            }
        }
    } else if policy == DriftPolicy::Report {
        plan.drift = differences;
    }
    plan
}

/// Identity of a Topic for conflict checks: which cluster, which Kafka topic, and its age.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicClaim {
    /// The Kafka cluster's bootstrap servers (or `namespace/name` of a cluster not seen yet),
    /// or `pulsar:<serviceUrl>` (`namespace/PulsarCluster/name` for one not seen yet).
    pub cluster: String,
    /// The topic's name in its system.
    pub topic: String,
    /// `namespace/name` of the resource.
    pub resource: String,
    /// Creation time, RFC 3339 (sorts chronologically).
    pub created: String,
}

/// The resource that owns the Kafka topic `me` claims, when it is another one: the oldest claim
/// wins (ties broken by `namespace/name`).
pub fn conflict_owner<'a>(me: &TopicClaim, claims: &'a [TopicClaim]) -> Option<&'a TopicClaim> {
    let key = |c: &TopicClaim| (c.created.clone(), c.resource.clone());
    let owner = claims
        .iter()
        .filter(|c| c.cluster == me.cluster && c.topic == me.topic && c.resource != me.resource)
        .min_by_key(|c| key(c))?;
    (key(owner) < key(me)).then_some(owner)
}

/// The topic as found after a reconcile that got it in line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObservedTopic {
    pub description: TopicDescription,
    /// Configuration set on the topic itself.
    pub config: BTreeMap<String, String>,
    /// Differences left in place (`driftPolicy: Report`).
    pub drift: Vec<ConfigDrift>,
}

/// Where a reconcile ended up; [`topic_status`] turns it into conditions.
#[derive(Debug)]
pub enum TopicOutcome {
    /// The topic exists as declared (up to reported drift).
    InSync(ObservedTopic),
    /// `spec.clusterRef` names no cluster of its kind.
    ClusterNotFound {
        kind: crate::api::ClusterKind,
        cluster: String,
    },
    /// The brokers did not answer, or not yet as expected; we retry.
    Retrying(backend::Error),
    /// The broker refused what the spec asks (bad config, replication above broker count...).
    Refused(backend::Error),
    /// The spec asks for something Kafka cannot do; the topic is left as it is.
    NotSupported {
        observed: TopicDescription,
        message: String,
    },
    /// An older resource manages this Kafka topic; this one does nothing.
    Conflict { owner: String },
    /// The spec now names another topic than the one this resource made (a Pulsar tenant or
    /// namespace changed); the operator does not move topics.
    Moved { message: String },
    /// `deletionPolicy: Delete` and the topic is still in use; it is kept until it is not.
    DeletionBlocked { reasons: Vec<String> },
}

/// The status a reconcile outcome means, merged into `previous` so transition times and
/// figures that were not re-observed survive.
pub fn topic_status(
    generation: Option<i64>,
    previous: Option<&TopicStatus>,
    outcome: &TopicOutcome,
) -> TopicStatus {
    use ConditionStatus::{False, True};
    let mut status = previous.cloned().unwrap_or_default();
    let cond = |type_: &str, s: ConditionStatus, reason: &str, message: String| {
        Condition::new(type_, s, reason, message, generation)
    };
    let stalled = |reason: &str, message: String| {
        vec![
            cond(types::READY, False, reason, message.clone()),
            cond(types::RECONCILING, False, reason, String::new()),
            cond(types::STALLED, True, reason, message),
        ]
    };
    let retrying = |reason: &str, message: String, why: &str| {
        vec![
            cond(types::READY, False, reason, message),
            cond(types::RECONCILING, True, why, String::new()),
            cond(types::STALLED, False, why, String::new()),
        ]
    };
    let mut desired = match outcome {
        TopicOutcome::InSync(observed) => {
            let d = &observed.description;
            let message = if d.replication_factor > 0 {
                format!(
                    "topic '{}' exists with {} partitions and replication factor {}",
                    d.name, d.partitions, d.replication_factor
                )
            } else {
                format!("topic '{}' exists with {} partitions", d.name, d.partitions)
            };
            vec![
                cond(types::READY, True, "TopicReady", message),
                cond(types::RECONCILING, False, "Reconciled", String::new()),
                cond(types::STALLED, False, "Reconciled", String::new()),
            ]
        }
        TopicOutcome::ClusterNotFound { kind, cluster } => retrying(
            "ClusterNotFound",
            format!(
                "{kind} '{cluster}' does not exist in this namespace: create it, or correct spec.clusterRef.name"
            ),
            "WaitingForCluster",
        ),
        TopicOutcome::Retrying(error) => retrying(
            error.reason(),
            format!("{error}; retrying"),
            match error {
                backend::Error::Kafka(_) => "RetryingKafka",
                backend::Error::Pulsar(_) => "RetryingPulsar",
            },
        ),
        TopicOutcome::Refused(error) => {
            stalled("TopicRefused", format!("{error}: correct the Topic's spec"))
        }
        TopicOutcome::NotSupported { message, .. } => stalled("NotSupported", message.clone()),
        TopicOutcome::Moved { message } => stalled("TopicMoved", message.clone()),
        TopicOutcome::Conflict { owner } => stalled(
            RESOURCE_CONFLICT,
            format!(
                "Topic {owner} already manages this Kafka topic on this cluster; this resource changes nothing. \
                 Delete it, or set spec.topicName to another topic"
            ),
        ),
        TopicOutcome::DeletionBlocked { reasons } => retrying(
            "DeletionBlocked",
            format!(
                "deletionPolicy is Delete but the topic is in use: {}. It is deleted once that ends; \
                 to keep the topic instead, set deletionPolicy: Retain",
                reasons.join("; ")
            ),
            "WaitingToDelete",
        ),
    };
    match outcome {
        TopicOutcome::Conflict { owner } => desired.push(cond(
            RESOURCE_CONFLICT,
            True,
            "OlderResourceOwnsTopic",
            format!("managed by Topic {owner}"),
        )),
        TopicOutcome::InSync(_) | TopicOutcome::NotSupported { .. } => {
            desired.push(cond(RESOURCE_CONFLICT, False, "NoConflict", String::new()))
        }
        _ => {}
    }
    if let TopicOutcome::InSync(observed) = outcome {
        desired.push(if observed.drift.is_empty() {
            cond(DRIFTED, False, "InSync", String::new())
        } else {
            let keys: Vec<&str> = observed.drift.iter().map(|d| d.key.as_str()).collect();
            cond(
                DRIFTED,
                True,
                "ConfigChangedInKafka",
                format!(
                    "configuration set in Kafka differs from spec.config for {}: see status.drift \
                     (driftPolicy: Report leaves it; Revert would set it back)",
                    keys.join(", ")
                ),
            )
        });
        status.config = observed.config.clone();
        status.drift = observed.drift.clone();
    }
    status.conditions = conditions::merge(&status.conditions, desired);
    status.observed_generation = generation;
    let described = match outcome {
        TopicOutcome::InSync(observed) => Some(&observed.description),
        TopicOutcome::NotSupported { observed, .. } => Some(observed),
        _ => None,
    };
    if let Some(d) = described {
        status.topic_name = Some(d.name.clone());
        status.partitions = Some(d.partitions);
        status.replication_factor = (d.replication_factor > 0).then_some(d.replication_factor);
        if d.topic_id.is_some() {
            status.topic_id = d.topic_id.clone();
        }
    }
    status
}

/// Whether the operator already applied this generation of the spec in full: `Ready` is `True`
/// for it.
fn spec_applied(topic: &Topic) -> bool {
    let Some(status) = &topic.status else {
        return false;
    };
    conditions::find(&status.conditions, types::READY).is_some_and(|ready| {
        ready.status == ConditionStatus::True
            && ready.observed_generation == topic.meta().generation
    })
}

fn claim(ctx: &Context, topic: &Topic) -> TopicClaim {
    let namespace = topic.namespace().unwrap_or_default();
    TopicClaim {
        cluster: if topic.on_pulsar() {
            // By service URL: PulsarClusters in two namespaces may name one cluster.
            super::pulsar_cluster::find(ctx, &namespace, &topic.spec.cluster_ref.name).map_or_else(
                || format!("{namespace}/PulsarCluster/{}", topic.spec.cluster_ref.name),
                |c| format!("pulsar:{}", c.spec.external.service_url),
            )
        } else {
            super::cluster_key(ctx, &namespace, &topic.spec.cluster_ref.name)
        },
        topic: topic.system_topic_name(),
        resource: format!("{namespace}/{}", topic.name_any()),
        created: topic
            .meta()
            .creation_timestamp
            .as_ref()
            .map(|t| t.0.to_string())
            .unwrap_or_default(),
    }
}

/// The other resource that owns this Topic's Kafka topic, if any. Only Topics naming the same
/// Kafka topic are looked at closely: with 10 000 Topics this runs for each of them, so the
/// scan of the others must cost a string comparison each, not a claim.
fn conflicting_owner(topic: &Topic, ctx: &Context) -> Option<String> {
    let me = claim(ctx, topic);
    let claims: Vec<TopicClaim> = ctx
        .topics
        .state()
        .iter()
        .filter(|t| t.kafka_topic_name_ref() == topic.kafka_topic_name_ref())
        .map(|t| claim(ctx, t))
        .collect();
    conflict_owner(&me, &claims).map(|owner| owner.resource.clone())
}

async fn find_cluster(
    ctx: &Context,
    namespace: &str,
    name: &str,
) -> Result<Option<KafkaCluster>, TopicOutcome> {
    // The controllers' cache first: with thousands of Topics, a GET per reconcile is most of
    // the API server's load.
    match super::resolve::cluster(ctx, namespace, name).await {
        Ok(cluster) => Ok(Some(cluster)),
        Err(super::resolve::Waiting::ClusterNotFound(_)) => Ok(None),
        // The API server is what failed here, not Kafka; report it as a retryable wait.
        Err(super::resolve::Waiting::Api(message)) => Err(TopicOutcome::Retrying(
            KafkaError::Interrupted(message).into(),
        )),
    }
}

/// How long a batch of topic calls waits for more callers after its first: to an idle batcher,
/// long enough for reconciles started together to meet and short against a single Topic's way
/// to Ready; during a burst (a call of several Topics ended within the last second), long enough that a request
/// carries tens of topics rather than a handful, which is what costs the broker (see
/// [`super::batch`]).
const BATCH_LINGER: Linger = Linger {
    idle: Duration::from_millis(20),
    busy: Duration::from_millis(250),
    busy_for: Duration::from_secs(1),
};

/// The batched topic calls of one cluster ([`Batcher`]): Topics reconciled at the same moment
/// share one `Metadata`, one `CreateTopics` and one `DescribeConfigs` request.
pub struct TopicBatches {
    admin: Arc<KafkaAdmin>,
    describe: Arc<Batcher<String, Result<Option<TopicDescription>, KafkaError>>>,
    create: Arc<Batcher<NewTopicRequest, Result<CreateOutcome, KafkaError>>>,
    configs: Arc<Batcher<String, Result<TopicConfig, KafkaError>>>,
}

fn lost(call: &str) -> KafkaError {
    KafkaError::Interrupted(format!("the batched {call} call was lost"))
}

impl TopicBatches {
    /// Batches over `admin`.
    pub fn new(admin: Arc<KafkaAdmin>) -> Self {
        let a = admin.clone();
        let describe = Batcher::new(
            BATCH_LINGER,
            1000,
            Arc::new(move |names: Vec<String>| {
                let admin = a.clone();
                Box::pin(async move {
                    match admin.describe_topics(&names).await {
                        Ok(found) => names.iter().map(|n| Ok(found.get(n).cloned())).collect(),
                        Err(e) => names.iter().map(|_| Err(e.clone())).collect(),
                    }
                })
            }),
        );
        let a = admin.clone();
        let create = Batcher::new(
            BATCH_LINGER,
            crate::kafka::CREATE_CHUNK,
            Arc::new(move |requests: Vec<NewTopicRequest>| {
                let admin = a.clone();
                Box::pin(async move {
                    match admin.create_topics(&requests).await {
                        Ok(results) => results,
                        Err(e) => requests.iter().map(|_| Err(e.clone())).collect(),
                    }
                })
            }),
        );
        let a = admin.clone();
        let configs = Batcher::new(
            BATCH_LINGER,
            1000,
            Arc::new(move |names: Vec<String>| {
                let admin = a.clone();
                Box::pin(async move {
                    match admin.dynamic_topic_configs(&names).await {
                        Ok(found) => names
                            .iter()
                            .map(|n| Ok(found.get(n).cloned().unwrap_or_default()))
                            .collect(),
                        Err(e) => names.iter().map(|_| Err(e.clone())).collect(),
                    }
                })
            }),
        );
        TopicBatches {
            admin,
            describe,
            create,
            configs,
        }
    }
}

/// Kafka's Topic backend: describes, creates and config reads batched across Topics; partition
/// and configuration changes one topic at a time.
impl TopicAdmin for TopicBatches {
    fn system(&self) -> System {
        System::Kafka
    }

    async fn describe(&self, name: &str) -> Result<Option<TopicDescription>, backend::Error> {
        Ok(self
            .describe
            .call(name.to_string())
            .await
            .unwrap_or_else(|| Err(lost("describe")))?)
    }

    async fn create(&self, request: &NewTopicRequest) -> Result<CreateOutcome, backend::Error> {
        Ok(self
            .create
            .call(request.clone())
            .await
            .unwrap_or_else(|| Err(lost("create")))?)
    }

    async fn grow_partitions(&self, name: &str, to: i32) -> Result<(), backend::Error> {
        Ok(self.admin.grow_partitions(name, to).await?)
    }

    async fn configs(&self, name: &str) -> Result<TopicConfig, backend::Error> {
        Ok(self
            .configs
            .call(name.to_string())
            .await
            .unwrap_or_else(|| Err(lost("describe configs")))?)
    }

    async fn alter_configs(
        &self,
        name: &str,
        set: &TopicConfig,
        delete: &[String],
    ) -> Result<(), backend::Error> {
        Ok(self.admin.alter_topic_config(name, set, delete).await?)
    }
}

/// The batches of the cluster `cluster` (`namespace/name`) over `admin`, made on first use and
/// again when the cluster's client changed (new connection settings).
fn batches_of(ctx: &Context, cluster: &str, admin: &Arc<KafkaAdmin>) -> Arc<TopicBatches> {
    let mut all = ctx.topic_batches.lock().unwrap_or_else(|p| p.into_inner());
    match all.get(cluster) {
        Some(batches) if Arc::ptr_eq(&batches.admin, admin) => batches.clone(),
        _ => {
            let batches = Arc::new(TopicBatches::new(admin.clone()));
            all.insert(cluster.to_string(), batches.clone());
            batches
        }
    }
}

/// Creates the topic of `request` (on Kafka in the cluster's next batched `CreateTopics`),
/// recording what it did: created, or adopted when it existed already.
async fn create<A: TopicAdmin>(
    admin: &A,
    request: &NewTopicRequest,
    actions: &mut Vec<(&'static str, String)>,
) -> Result<CreateOutcome, backend::Error> {
    let outcome = admin.create(request).await?;
    let name = &request.name;
    let system = admin.system();
    match &outcome {
        CreateOutcome::Created(_) => {
            info!(topic = %name, partitions = request.partitions, "created topic");
            actions.push((
                "TopicCreated",
                format!(
                    "created {system} topic '{name}' with {} partitions",
                    request.partitions
                ),
            ));
        }
        CreateOutcome::AlreadyExists => {
            info!(topic = %name, "topic already exists; adopting it");
            actions.push((
                "TopicAdopted",
                format!("adopted the existing {system} topic '{name}'"),
            ));
        }
    }
    Ok(outcome)
}

/// A failed admin call's outcome: refused by the brokers (stays until something changes), or
/// worth retrying.
fn failed(e: backend::Error) -> TopicOutcome {
    if e.is_refused() {
        TopicOutcome::Refused(e)
    } else {
        TopicOutcome::Retrying(e)
    }
}

/// How far the API server's clock (creation timestamps) may run ahead of the operator's.
const CLOCK_MARGIN: SignedDuration = SignedDuration::from_secs(5);

/// Whether `topic` was created after `started` (with [`CLOCK_MARGIN`] to spare); a Topic without
/// a creation time counts as older.
fn is_newer_than(topic: &Topic, started: Timestamp) -> bool {
    topic
        .meta()
        .creation_timestamp
        .as_ref()
        .and_then(|t| started.checked_add(CLOCK_MARGIN).ok().map(|s| t.0 > s))
        .unwrap_or(false)
}

/// Brings the broker's topic in line with the spec, as far as its system allows.
async fn converge<A: TopicAdmin>(
    topic: &Topic,
    admin: &A,
    started: Timestamp,
    actions: &mut Vec<(&'static str, String)>,
) -> TopicOutcome {
    let name = topic.system_topic_name();
    let system = admin.system();
    // A Topic never reconciled (no status yet) and created since these controllers started
    // most likely names a topic that does not exist yet: create it straight away, one request
    // where a describe would come first. One that exists already is adopted and goes the usual
    // way (described, then changed as planned). A Topic older than this run is described first:
    // an earlier run may have created its topic and stopped before writing the status, and
    // asking again would send the broker a second CreateTopics.
    let mut created = None;
    if topic.status.is_none()
        && is_newer_than(topic, started)
        && let TopicChange::Create(request) = plan_topic_change(topic, None)
    {
        match create(admin, &request, actions).await {
            Ok(CreateOutcome::Created(config)) => created = Some(config),
            Ok(CreateOutcome::AlreadyExists) => {}
            Err(e) => return failed(e),
        }
    }
    if created.is_none() {
        let observed = match admin.describe(&name).await {
            Ok(observed) => observed,
            Err(e) => return failed(e),
        };
        let result = match plan_topic_change(topic, observed.as_ref()) {
            TopicChange::None => Ok(()),
            TopicChange::Create(request) => match create(admin, &request, actions).await {
                Ok(CreateOutcome::Created(config)) => {
                    created = Some(config);
                    Ok(())
                }
                Ok(CreateOutcome::AlreadyExists) => Ok(()),
                Err(e) => Err(e),
            },
            TopicChange::GrowPartitions { from, to } => {
                let grown = admin.grow_partitions(&name, to).await;
                if grown.is_ok() {
                    info!(topic = %name, from, to, "added partitions");
                    actions.push(("PartitionsAdded", format!("partitions {from} → {to}")));
                }
                grown
            }
            TopicChange::PartitionDecrease { have, want } => {
                if let Some(observed) = observed {
                    return TopicOutcome::NotSupported {
                        observed,
                        message: format!(
                            "spec.partitions is {want} but the topic has {have}: {system} cannot remove partitions. \
                             Set spec.partitions to {have} or more; the topic was left unchanged"
                        ),
                    };
                }
                Ok(())
            }
            TopicChange::ReplicationChange { have, want } => {
                if let Some(observed) = observed {
                    return TopicOutcome::NotSupported {
                        observed,
                        message: format!(
                            "spec.replicationFactor is {want} but the topic has {have}: changing the replication \
                             of an existing topic is not supported. Set spec.replicationFactor to {have}"
                        ),
                    };
                }
                Ok(())
            }
        };
        if let Err(e) = result {
            return failed(e);
        }
    }

    // Configuration: only what is set on the topic itself counts. A create's answer lists it
    // (CreateTopics v5+), which spares a DescribeConfigs.
    let on_topic = match created.flatten() {
        Some(config) => config,
        None => match admin.configs(&name).await {
            Ok(config) => config,
            Err(e) => return failed(e),
        },
    };
    let plan = plan_config(
        &declared_config(topic),
        &on_topic,
        topic.spec.drift_policy,
        spec_applied(topic),
    );
    let config = if plan.alters() {
        if let Err(e) = admin.alter_configs(&name, &plan.set, &plan.delete).await {
            return failed(e);
        }
        info!(topic = %name, set = ?plan.set.keys().collect::<Vec<_>>(), removed = ?plan.delete, "applied topic configuration");
        let mut changed: Vec<String> = plan.set.iter().map(|(k, v)| format!("{k}={v}")).collect();
        changed.extend(plan.delete.iter().map(|k| format!("{k} removed")));
        actions.push((
            "ConfigApplied",
            format!("configuration set: {}", changed.join(", ")),
        ));
        // The controller commits the change before it answers, but the broker serving the
        // next read applies it a moment later (more so under load): read until it shows, so
        // Ready means the brokers report the declared configuration.
        let mut attempts = 0;
        loop {
            attempts += 1;
            match admin.configs(&name).await {
                Ok(config)
                    if plan.set.iter().all(|(k, v)| config.get(k) == Some(v))
                        && plan.delete.iter().all(|k| !config.contains_key(k)) =>
                {
                    break config;
                }
                Ok(_) if attempts >= 10 => {
                    return TopicOutcome::Retrying(backend::Error::not_yet(
                        system,
                        format!(
                            "the configuration set on topic '{name}' is not yet shown by the brokers"
                        ),
                    ));
                }
                Ok(_) => tokio::time::sleep(Duration::from_millis(200)).await,
                Err(e) => return TopicOutcome::Retrying(e),
            }
        }
    } else {
        on_topic
    };

    // Metadata can lag a moment behind a create or a partition change: look again briefly
    // rather than report a transient failure.
    let want = topic.spec.partitions;
    let mut attempts = 0;
    loop {
        attempts += 1;
        match admin.describe(&name).await {
            Ok(Some(description)) if description.partitions >= want => {
                return TopicOutcome::InSync(ObservedTopic {
                    description,
                    config,
                    drift: plan.drift,
                });
            }
            Ok(Some(observed)) if attempts >= 10 => {
                return TopicOutcome::Retrying(backend::Error::not_yet(
                    system,
                    format!(
                        "topic '{name}' shows {} partitions of {want} in the cluster metadata",
                        observed.partitions
                    ),
                ));
            }
            Ok(None) if attempts >= 10 => {
                return TopicOutcome::Retrying(backend::Error::not_yet(
                    system,
                    format!("topic '{name}' not yet visible in the cluster metadata"),
                ));
            }
            Ok(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            Err(e) => return TopicOutcome::Retrying(e),
        }
    }
}

/// For a Topic whose spec is applied: checks it against the cluster's shared snapshot (one
/// batched describe per refresh for every Topic on the cluster). `Some` when nothing needs
/// changing; `None` sends the caller down the direct path ([`converge`]).
async fn steady_state(
    topic: &Topic,
    ctx: &Context,
    admin: &KafkaAdmin,
    key: &str,
) -> Option<TopicOutcome> {
    if !spec_applied(topic) {
        return None;
    }
    let mine = super::observe::Interest {
        topic_configs: [topic.kafka_topic_name()].into(),
        ..Default::default()
    };
    let snapshot = ctx
        .observer
        .snapshot(key, admin, &mine, || {
            super::group::cluster_interest(ctx, key)
        })
        .await
        .ok()?;
    in_sync_per_snapshot(topic, &snapshot)
}

/// The outcome of a Topic whose spec is applied, when the snapshot shows its Kafka topic as
/// declared (drift reported per `driftPolicy` included); `None` when something must change in
/// Kafka (a missing topic, partitions to add, drift to revert), which takes a reconcile.
pub fn in_sync_per_snapshot(
    topic: &Topic,
    snapshot: &super::observe::Snapshot,
) -> Option<TopicOutcome> {
    let name = topic.kafka_topic_name_ref();
    let description = snapshot.topics.get(name)?;
    if plan_topic_change(topic, Some(description)) != TopicChange::None {
        return None;
    }
    let config = snapshot
        .topic_configs
        .get(name)
        .cloned()
        .unwrap_or_default();
    let plan = plan_config(&topic.spec.config, &config, topic.spec.drift_policy, true);
    if plan.alters() {
        info!(topic = %name, keys = ?plan.set.keys().chain(&plan.delete).collect::<Vec<_>>(), "configuration drifted in Kafka; reverting");
        return None;
    }
    Some(TopicOutcome::InSync(ObservedTopic {
        description: description.clone(),
        config,
        drift: plan.drift,
    }))
}

/// What the periodic refresh does with one Topic.
#[derive(Debug, PartialEq)]
pub enum Refresh {
    /// Its status, recomputed from the snapshot, is as written: nothing to do.
    Unchanged,
    /// Its status changed (drift reported, the topic's id, the brokers unreachable): write it.
    Write(TopicStatus),
    /// Something must change in Kafka, or a failed attempt be retried: reconcile it.
    Reconcile,
}

/// Whether the refresh looks after `topic`: its current spec was reconciled and it ended in
/// sync, or waiting for the brokers. Others have their own retry (a refused spec, a conflict,
/// a deletion) or a reconcile on its way (a new generation).
pub fn refreshed(topic: &Topic) -> bool {
    // Pulsar Topics are not in the Kafka observation; each looks after itself.
    if topic.meta().deletion_timestamp.is_some() || topic.on_pulsar() {
        return false;
    }
    let Some(status) = &topic.status else {
        return false;
    };
    if status.observed_generation != topic.meta().generation {
        return false;
    }
    conditions::find(&status.conditions, types::READY)
        .is_some_and(|ready| ready.status == ConditionStatus::True || waiting_for_kafka(status))
}

/// Whether the Topic's status says it waits for the brokers (unreachable, or not answering).
fn waiting_for_kafka(status: &TopicStatus) -> bool {
    conditions::find(&status.conditions, types::RECONCILING)
        .is_some_and(|r| r.status == ConditionStatus::True && r.reason == "RetryingKafka")
}

/// The refresh of one Topic from its cluster's snapshot (or the error taking it failed with):
/// pure, so a refresh of 10 000 Topics is 10 000 comparisons and the writes of those that
/// changed.
pub fn plan_refresh(
    topic: &Topic,
    snapshot: Result<&super::observe::Snapshot, &KafkaError>,
) -> Refresh {
    let previous = topic.status.as_ref();
    let waiting = previous.is_some_and(waiting_for_kafka);
    let outcome = match snapshot {
        // A Topic that was waiting for the brokers gets a whole reconcile once they answer.
        Ok(_) if waiting || !spec_applied(topic) => return Refresh::Reconcile,
        Ok(snapshot) => match in_sync_per_snapshot(topic, snapshot) {
            Some(outcome) => outcome,
            None => return Refresh::Reconcile,
        },
        Err(error) => TopicOutcome::Retrying(error.clone().into()),
    };
    let status = topic_status(topic.meta().generation, previous, &outcome);
    if Some(&status) == previous {
        Refresh::Unchanged
    } else {
        Refresh::Write(status)
    }
}

/// One refresh of every Topic the refresh looks after ([`refreshed`]): per cluster, one shared
/// snapshot; statuses that changed are written, Topics that need Kafka changed are handed to
/// `reconcile` (the controller's trigger). Topics in sync cost no reconcile and no API request.
pub async fn refresh(ctx: &Context, reconcile: &(dyn Fn(ObjectRef<Topic>) + Sync)) {
    let mut by_cluster: BTreeMap<(String, String), Vec<Arc<Topic>>> = BTreeMap::new();
    for topic in ctx.topics.state() {
        if refreshed(&topic) {
            let key = (
                topic.namespace().unwrap_or_default(),
                topic.spec.cluster_ref.name.clone(),
            );
            by_cluster.entry(key).or_default().push(topic);
        }
    }
    for ((namespace, cluster_name), topics) in by_cluster {
        let Some(cluster) = ctx
            .clusters
            .get(&ObjectRef::new(&cluster_name).within(&namespace))
        else {
            // The cluster is gone: each Topic's own reconcile says so.
            topics
                .iter()
                .for_each(|t| reconcile(ObjectRef::from_obj(&**t)));
            continue;
        };
        let snapshot = match super::resolve::admin(ctx, &cluster).await {
            Ok(admin) => {
                let key = cluster.bootstrap_servers();
                let mine = super::observe::Interest {
                    topic_configs: topics.iter().map(|t| t.kafka_topic_name()).collect(),
                    ..Default::default()
                };
                ctx.observer
                    .snapshot(&key, &admin, &mine, || {
                        super::group::cluster_interest(ctx, &key)
                    })
                    .await
            }
            Err(e) => Err(e),
        };
        let (mut unchanged, mut writes, mut reconciled) = (0usize, Vec::new(), 0usize);
        for topic in &topics {
            match plan_refresh(topic, snapshot.as_deref()) {
                Refresh::Unchanged => unchanged += 1,
                Refresh::Write(status) => writes.push((topic.clone(), status)),
                Refresh::Reconcile => {
                    reconciled += 1;
                    reconcile(ObjectRef::from_obj(&**topic));
                }
            }
        }
        let written = writes.len();
        // Many at once only when the brokers became unreachable or answer again.
        futures::stream::iter(writes)
            .for_each_concurrent(16, |(topic, status)| async move {
                if let Err(e) = super::write_status(ctx, topic.as_ref(), &status).await {
                    warn!(topic = %topic.name_any(), namespace = %topic.namespace().unwrap_or_default(), error = %e, "refreshed status not written");
                }
            })
            .await;
        if let Err(e) = &snapshot {
            warn!(cluster = %cluster_name, %namespace, error = %e, topics = topics.len(), "refresh could not observe the cluster");
        }
        debug!(cluster = %cluster_name, %namespace, unchanged, written, reconciled, "refreshed Topics");
    }
}

/// Deletes the Kafka topic of a Topic being deleted with `deletionPolicy: Delete`, unless it is
/// in use. `None` means the finalizer may go.
async fn finalize(topic: &Topic, ctx: &Context, namespace: &str) -> Option<TopicOutcome> {
    if topic.on_pulsar() {
        return finalize_on_pulsar(topic, ctx, namespace).await;
    }
    let name = topic.kafka_topic_name();
    let cluster = match find_cluster(ctx, namespace, &topic.spec.cluster_ref.name).await {
        Ok(Some(cluster)) => cluster,
        Ok(None) => {
            // The cluster resource is gone: nothing left to delete through, and a finalizer
            // must never wedge the namespace.
            warn!(topic = %name, "KafkaCluster is gone; releasing the Topic without deleting the Kafka topic");
            return None;
        }
        Err(outcome) => return Some(outcome),
    };
    if let Some(owner) = conflicting_owner(topic, ctx) {
        info!(topic = %name, %owner, "not deleting a Kafka topic another resource manages");
        return None;
    }
    let admin = match super::resolve::admin(ctx, &cluster).await {
        Ok(admin) => admin,
        Err(e) => return Some(TopicOutcome::Retrying(e.into())),
    };
    match admin.topic_in_use(&name).await {
        Ok(reasons) if !reasons.is_empty() => {
            return Some(TopicOutcome::DeletionBlocked { reasons });
        }
        Ok(_) => {}
        Err(e) => return Some(TopicOutcome::Retrying(e.into())),
    }
    match admin.delete_topic(&name).await {
        Ok(()) => {
            info!(topic = %name, "deleted Kafka topic (deletionPolicy: Delete)");
            super::publish_event(
                ctx,
                topic,
                EventType::Normal,
                "TopicDeleted",
                "DeleteTopic",
                format!("deleted Kafka topic '{name}' (deletionPolicy: Delete)"),
            )
            .await;
            None
        }
        Err(e) => Some(TopicOutcome::Retrying(e.into())),
    }
}

/// Why the spec no longer names the topic the status says this resource manages, if it does
/// not: on Kafka `topicName` is immutable (the schema says so); a Pulsar topic's tenant and
/// namespace are checked here.
pub fn moved(topic: &Topic) -> Option<String> {
    let had = topic.status.as_ref()?.topic_name.as_deref()?;
    let wants = topic.system_topic_name();
    (topic.on_pulsar() && had != wants).then(|| {
        format!(
            "spec.pulsar names '{wants}' but this Topic manages '{had}': tenant and namespace \
             cannot change. Set them back, or create a new Topic for the new place"
        )
    })
}

/// The Topic backend of the PulsarCluster `name`, or the outcome saying why there is none yet.
async fn pulsar_backend(
    ctx: &Context,
    namespace: &str,
    name: &str,
) -> std::result::Result<crate::pulsar::topics::PulsarTopics, TopicOutcome> {
    let Some(cluster) = super::pulsar_cluster::find(ctx, namespace, name) else {
        return Err(TopicOutcome::ClusterNotFound {
            kind: crate::api::ClusterKind::PulsarCluster,
            cluster: name.to_string(),
        });
    };
    // Tenants are created allowed on the cluster the broker names; until the PulsarCluster
    // was reached once, that is not known.
    let Some(cluster_name) = cluster.status.as_ref().and_then(|s| s.cluster_name.clone()) else {
        return Err(TopicOutcome::Retrying(
            crate::pulsar::PulsarError::Interrupted(format!(
                "PulsarCluster '{name}' has not been reached yet"
            ))
            .into(),
        ));
    };
    match super::pulsar_cluster::admin_of(ctx, &cluster).await {
        Ok(admin) => Ok(crate::pulsar::topics::PulsarTopics::new(
            admin,
            cluster_name,
        )),
        Err(e) => Err(failed(e.into())),
    }
}

/// Deletes the Pulsar topic of a Topic being deleted with `deletionPolicy: Delete`; Pulsar
/// refuses while producers or consumers are connected, which keeps the Topic until they leave.
/// Its tenant and namespace stay.
async fn finalize_on_pulsar(topic: &Topic, ctx: &Context, namespace: &str) -> Option<TopicOutcome> {
    let name = topic.system_topic_name();
    if let Some(owner) = conflicting_owner(topic, ctx) {
        info!(topic = %name, %owner, "not deleting a Pulsar topic another resource manages");
        return None;
    }
    let backend = match pulsar_backend(ctx, namespace, &topic.spec.cluster_ref.name).await {
        Ok(backend) => backend,
        Err(TopicOutcome::ClusterNotFound { .. }) => {
            warn!(topic = %name, "PulsarCluster is gone; releasing the Topic without deleting the Pulsar topic");
            return None;
        }
        Err(outcome) => return Some(outcome),
    };
    // The name is built from the spec and always parses; one that did not has nothing to
    // delete.
    let parsed = crate::pulsar::admin::TopicName::parse(&name)?;
    match backend.admin().delete_partitioned(&parsed).await {
        Ok(()) => {
            info!(topic = %name, "deleted Pulsar topic (deletionPolicy: Delete)");
            super::publish_event(
                ctx,
                topic,
                EventType::Normal,
                "TopicDeleted",
                "DeleteTopic",
                format!("deleted Pulsar topic '{name}' (deletionPolicy: Delete)"),
            )
            .await;
            None
        }
        Err(crate::pulsar::PulsarError::Refused {
            status: 412,
            reason,
            ..
        }) => Some(TopicOutcome::DeletionBlocked {
            reasons: vec![format!("Pulsar refuses: {reason}")],
        }),
        Err(e) => Some(failed(e.into())),
    }
}

/// Reconciles one Topic.
#[tracing::instrument(skip_all, fields(kind = "Topic", namespace = topic.namespace().unwrap_or_default(), name = %topic.name_any()))]
pub async fn reconcile(topic: Arc<Topic>, ctx: Arc<Context>) -> Result<Action> {
    let namespace = topic
        .namespace()
        .ok_or(Error::MissingObjectKey("metadata.namespace"))?;
    let name = topic.name_any();

    if topic.meta().deletion_timestamp.is_some() {
        if !topic.finalizers().iter().any(|f| f == FINALIZER) {
            return Ok(Action::await_change());
        }
        return match finalize(&topic, &ctx, &namespace).await {
            None => {
                super::set_finalizer(&ctx, topic.as_ref(), FINALIZER, false).await?;
                Ok(Action::await_change())
            }
            Some(outcome) => {
                let status = topic_status(topic.meta().generation, topic.status.as_ref(), &outcome);
                super::write_status(&ctx, topic.as_ref(), &status).await?;
                Ok(Action::requeue(RETRY))
            }
        };
    }
    let wants_finalizer = topic.spec.deletion_policy == DeletionPolicy::Delete;
    if super::set_finalizer(&ctx, topic.as_ref(), FINALIZER, wants_finalizer).await? {
        // The change of metadata brings the object round again.
        return Ok(Action::await_change());
    }

    let mut actions = Vec::new();
    let outcome = if let Some(owner) = conflicting_owner(&topic, &ctx) {
        TopicOutcome::Conflict { owner }
    } else if let Some(message) = moved(&topic) {
        TopicOutcome::Moved { message }
    } else if topic.on_pulsar() {
        match pulsar_backend(&ctx, &namespace, &topic.spec.cluster_ref.name).await {
            Ok(backend) => converge(&topic, &backend, ctx.started, &mut actions).await,
            Err(outcome) => outcome,
        }
    } else {
        match find_cluster(&ctx, &namespace, &topic.spec.cluster_ref.name).await {
            Ok(Some(cluster)) => {
                let key = cluster.bootstrap_servers();
                match super::resolve::admin(&ctx, &cluster).await {
                    Ok(admin) => match steady_state(&topic, &ctx, &admin, &key).await {
                        Some(outcome) => outcome,
                        None => {
                            let batches = batches_of(
                                &ctx,
                                &format!("{namespace}/{}", cluster.name_any()),
                                &admin,
                            );
                            let outcome =
                                converge(&topic, batches.as_ref(), ctx.started, &mut actions).await;
                            if !actions.is_empty() {
                                // Only a change the operator made makes the snapshot stale; a
                                // burst of creations would otherwise drop it once per Topic.
                                ctx.observer.invalidate(&key).await;
                            }
                            outcome
                        }
                    },
                    Err(e) => TopicOutcome::Refused(e.into()),
                }
            }
            Ok(None) => TopicOutcome::ClusterNotFound {
                kind: crate::api::ClusterKind::KafkaCluster,
                cluster: topic.spec.cluster_ref.name.clone(),
            },
            Err(outcome) => outcome,
        }
    };
    let requeue = match &outcome {
        // On Pulsar, the Topic looks again itself every refresh interval.
        TopicOutcome::InSync(_) if topic.on_pulsar() => Some(ctx.refresh_interval),
        // The periodic refresh ([`refresh`]) looks after it from here.
        TopicOutcome::InSync(_) => None,
        TopicOutcome::NotSupported { .. }
        | TopicOutcome::Refused(_)
        | TopicOutcome::Conflict { .. }
        | TopicOutcome::Moved { .. } => Some(RESYNC),
        TopicOutcome::ClusterNotFound { .. }
        | TopicOutcome::Retrying(_)
        | TopicOutcome::DeletionBlocked { .. } => Some(RETRY),
    };
    let status = topic_status(topic.meta().generation, topic.status.as_ref(), &outcome);
    for (reason, message) in actions {
        super::publish_event(
            &ctx,
            topic.as_ref(),
            EventType::Normal,
            reason,
            reason,
            message,
        )
        .await;
    }
    if super::write_status(&ctx, topic.as_ref(), &status).await? {
        debug!(topic = %name, ?outcome, "status updated");
    }
    if let TopicOutcome::Retrying(e) | TopicOutcome::Refused(e) = &outcome {
        warn!(topic = %name, namespace = %namespace, error = %e, "topic not reconciled");
    }
    Ok(requeue.map_or_else(Action::await_change, Action::requeue))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{ClusterRef, TopicSpec};

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn revert_sets_changed_keys_and_removes_keys_set_only_in_kafka() {
        let spec = map(&[("retention.ms", "1000"), ("cleanup.policy", "compact")]);
        let on_topic = map(&[("retention.ms", "5"), ("segment.ms", "10")]);
        let plan = plan_config(&spec, &on_topic, DriftPolicy::Revert, true);
        assert_eq!(
            plan.set,
            map(&[("retention.ms", "1000"), ("cleanup.policy", "compact")])
        );
        assert_eq!(plan.delete, ["segment.ms"]);
        assert!(plan.drift.is_empty());
    }

    #[test]
    fn report_lists_drift_and_changes_nothing() {
        let spec = map(&[("retention.ms", "1000")]);
        let on_topic = map(&[("retention.ms", "5")]);
        let plan = plan_config(&spec, &on_topic, DriftPolicy::Report, true);
        assert!(!plan.alters());
        assert_eq!(
            plan.drift,
            [ConfigDrift {
                key: "retention.ms".into(),
                expected: Some("1000".into()),
                actual: Some("5".into()),
            }]
        );
    }

    #[test]
    fn ignore_neither_changes_nor_reports() {
        let plan = plan_config(
            &map(&[("retention.ms", "1000")]),
            &map(&[("retention.ms", "5")]),
            DriftPolicy::Ignore,
            true,
        );
        assert_eq!(plan, ConfigPlan::default());
    }

    #[test]
    fn a_spec_not_yet_applied_is_applied_whatever_the_drift_policy() {
        let plan = plan_config(
            &map(&[("retention.ms", "1000")]),
            &map(&[("retention.ms", "5")]),
            DriftPolicy::Ignore,
            false,
        );
        assert_eq!(plan.set, map(&[("retention.ms", "1000")]));
    }

    #[test]
    fn matching_config_needs_no_change() {
        let config = map(&[("retention.ms", "1000")]);
        let plan = plan_config(&config, &config, DriftPolicy::Revert, true);
        assert_eq!(plan, ConfigPlan::default());
    }

    fn claim(resource: &str, created: &str) -> TopicClaim {
        TopicClaim {
            cluster: "k:9092".into(),
            topic: "orders".into(),
            resource: resource.into(),
            created: created.into(),
        }
    }

    #[test]
    fn the_younger_of_two_claims_on_a_topic_names_the_older_as_owner() {
        let old = claim("a/first", "2026-01-01T00:00:00Z");
        let young = claim("b/second", "2026-01-02T00:00:00Z");
        let claims = [old.clone(), young.clone()];
        assert_eq!(conflict_owner(&young, &claims), Some(&old));
        assert_eq!(conflict_owner(&old, &claims), None);
    }

    #[test]
    fn claims_on_other_topics_or_clusters_do_not_conflict() {
        let me = claim("a/first", "2026-01-02T00:00:00Z");
        let other_topic = TopicClaim {
            topic: "payments".into(),
            ..claim("a/x", "2026-01-01T00:00:00Z")
        };
        let other_cluster = TopicClaim {
            cluster: "other:9092".into(),
            ..claim("a/y", "2026-01-01T00:00:00Z")
        };
        assert_eq!(conflict_owner(&me, &[other_topic, other_cluster]), None);
    }

    #[test]
    fn reported_drift_sets_drifted_naming_the_keys() {
        let outcome = TopicOutcome::InSync(ObservedTopic {
            description: observed(3, 1),
            config: map(&[("retention.ms", "5")]),
            drift: vec![ConfigDrift {
                key: "retention.ms".into(),
                expected: Some("1000".into()),
                actual: Some("5".into()),
            }],
        });
        let status = topic_status(Some(1), None, &outcome);
        let drifted = conditions::find(&status.conditions, DRIFTED).cloned();
        let drifted = drifted.unwrap_or_else(|| panic!("no Drifted in {status:?}"));
        assert_eq!(drifted.status, ConditionStatus::True);
        assert!(
            drifted.message.contains("retention.ms"),
            "{}",
            drifted.message
        );
        assert_eq!(status.drift.len(), 1);
        assert_eq!(status.topic_id.as_deref(), Some("id-1"));
    }

    #[test]
    fn only_a_topic_created_well_after_the_controllers_started_is_created_without_a_describe() {
        let started: Timestamp = "2026-12-07T10:00:00Z"
            .parse()
            .unwrap_or_else(|e| panic!("{e}"));
        let created_at = |at: &str| {
            let mut t = topic(1, None);
            t.metadata.creation_timestamp =
                Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                    at.parse().unwrap_or_else(|e| panic!("{e}")),
                ));
            is_newer_than(&t, started)
        };
        assert!(created_at("2026-12-07T10:00:06Z"));
        assert!(
            !created_at("2026-12-07T10:00:04Z"),
            "within the clock margin"
        );
        assert!(
            !created_at("2026-12-07T09:59:00Z"),
            "before this run: an earlier one may have acted"
        );
        assert!(!is_newer_than(&topic(1, None), started), "no creation time");
    }

    fn topic(partitions: i32, replication: Option<i32>) -> Topic {
        let mut topic = Topic::new(
            "orders",
            TopicSpec {
                cluster_ref: ClusterRef::kafka("main"),
                topic_name: None,
                partitions,
                replication_factor: replication,
                config: BTreeMap::from([("retention.ms".into(), "1000".into())]),
                deletion_policy: DeletionPolicy::Retain,
                drift_policy: DriftPolicy::Revert,
                pulsar: None,
            },
        );
        topic.metadata.generation = Some(3);
        topic
    }

    fn observed(partitions: i32, replication: i32) -> TopicDescription {
        TopicDescription {
            name: "orders".into(),
            partitions,
            replication_factor: replication,
            topic_id: Some("id-1".into()),
        }
    }

    fn in_sync(partitions: i32, replication: i32) -> TopicOutcome {
        TopicOutcome::InSync(ObservedTopic {
            description: observed(partitions, replication),
            config: BTreeMap::new(),
            drift: Vec::new(),
        })
    }

    #[test]
    fn missing_topic_is_created_with_spec_partitions_and_config() {
        let change = plan_topic_change(&topic(6, Some(1)), None);
        let TopicChange::Create(request) = change else {
            panic!("expected a create, got {change:?}");
        };
        assert_eq!(request.name, "orders");
        assert_eq!(request.partitions, 6);
        assert_eq!(request.replication_factor, Some(1));
        assert_eq!(
            request.config.get("retention.ms").map(String::as_str),
            Some("1000")
        );
    }

    #[test]
    fn topic_name_defaults_to_metadata_name_and_spec_overrides_it() {
        let mut t = topic(1, None);
        assert_eq!(t.kafka_topic_name(), "orders");
        t.spec.topic_name = Some("orders.v2".into());
        assert_eq!(t.kafka_topic_name(), "orders.v2");
    }

    #[test]
    fn more_partitions_in_spec_grows_the_topic() {
        let change = plan_topic_change(&topic(6, None), Some(&observed(3, 1)));
        assert_eq!(change, TopicChange::GrowPartitions { from: 3, to: 6 });
    }

    #[test]
    fn fewer_partitions_in_spec_is_a_decrease_never_an_action() {
        let change = plan_topic_change(&topic(2, None), Some(&observed(3, 1)));
        assert_eq!(change, TopicChange::PartitionDecrease { have: 3, want: 2 });
    }

    #[test]
    fn unset_replication_accepts_whatever_the_broker_chose() {
        let change = plan_topic_change(&topic(3, None), Some(&observed(3, 1)));
        assert_eq!(change, TopicChange::None);
    }

    #[test]
    fn different_replication_is_reported_not_applied() {
        let change = plan_topic_change(&topic(3, Some(3)), Some(&observed(3, 1)));
        assert_eq!(change, TopicChange::ReplicationChange { have: 1, want: 3 });
    }

    #[test]
    fn in_sync_topic_is_ready_for_its_generation_with_broker_figures() {
        let status = topic_status(Some(3), None, &in_sync(6, 1));
        let ready = conditions::find(&status.conditions, types::READY).cloned();
        let ready = ready.unwrap_or_else(|| panic!("no Ready condition in {status:?}"));
        assert_eq!(ready.status, ConditionStatus::True);
        assert_eq!(ready.observed_generation, Some(3));
        assert_eq!(status.observed_generation, Some(3));
        assert_eq!(status.partitions, Some(6));
        assert_eq!(status.replication_factor, Some(1));
    }

    #[test]
    fn a_pulsar_topic_whose_tenant_changed_is_reported_as_moved_and_a_kafka_topic_never_is() {
        let mut t = topic(3, None);
        t.status = Some(TopicStatus {
            topic_name: Some("orders".into()),
            ..TopicStatus::default()
        });
        assert_eq!(moved(&t), None, "Kafka: topicName is immutable by schema");
        t.spec.cluster_ref.kind = crate::api::ClusterKind::PulsarCluster;
        t.spec.config.clear();
        t.spec.pulsar = Some(crate::api::PulsarTopic {
            tenant: "acme".into(),
            namespace: "sales".into(),
            retention: None,
        });
        t.status = Some(TopicStatus {
            topic_name: Some("persistent://acme/sales/orders".into()),
            ..TopicStatus::default()
        });
        assert_eq!(moved(&t), None);
        if let Some(p) = t.spec.pulsar.as_mut() {
            p.tenant = "other".into();
        }
        let message = moved(&t).unwrap_or_default();
        assert!(
            message.contains("persistent://other/sales/orders"),
            "{message}"
        );
        assert!(
            message.contains("persistent://acme/sales/orders"),
            "{message}"
        );
        t.status = None;
        assert_eq!(moved(&t), None, "never reconciled: nothing to move from");
    }

    #[test]
    fn missing_cluster_names_it_and_says_what_to_do() {
        let status = topic_status(
            Some(1),
            None,
            &TopicOutcome::ClusterNotFound {
                kind: crate::api::ClusterKind::KafkaCluster,
                cluster: "main".into(),
            },
        );
        let ready = conditions::find(&status.conditions, types::READY).cloned();
        let ready = ready.unwrap_or_else(|| panic!("no Ready condition in {status:?}"));
        assert_eq!(ready.status, ConditionStatus::False);
        assert_eq!(ready.reason, "ClusterNotFound");
        assert!(ready.message.contains("'main'"), "{}", ready.message);
        assert!(
            ready.message.contains("spec.clusterRef.name"),
            "{}",
            ready.message
        );
    }

    #[test]
    fn unchanged_outcome_yields_an_identical_status() {
        let outcome = in_sync(6, 1);
        let first = topic_status(Some(3), None, &outcome);
        let second = topic_status(Some(3), Some(&first), &outcome);
        assert_eq!(first, second);
    }

    #[test]
    fn decrease_is_stalled_with_the_broker_figures_unchanged() {
        let outcome = TopicOutcome::NotSupported {
            observed: observed(3, 1),
            message: "cannot".into(),
        };
        let status = topic_status(Some(4), None, &outcome);
        let stalled = conditions::find(&status.conditions, types::STALLED).cloned();
        let stalled = stalled.unwrap_or_else(|| panic!("no Stalled condition in {status:?}"));
        assert_eq!(stalled.status, ConditionStatus::True);
        assert_eq!(stalled.reason, "NotSupported");
        assert_eq!(status.partitions, Some(3));
    }

    /// A snapshot in which the Kafka topic "orders" has `partitions` and `config`.
    fn snapshot_with(
        partitions: i32,
        config: &[(&str, &str)],
    ) -> crate::controller::observe::Snapshot {
        crate::controller::observe::Snapshot {
            topics: BTreeMap::from([("orders".into(), observed(partitions, 1))]),
            topic_configs: BTreeMap::from([("orders".into(), map(config))]),
            ..Default::default()
        }
    }

    /// The Topic "orders" (6 partitions, retention.ms=1000) with the status a reconcile that
    /// found it in sync wrote.
    fn reconciled_in_sync() -> Topic {
        let mut t = topic(6, None);
        let snapshot = snapshot_with(6, &[("retention.ms", "1000")]);
        let outcome = in_sync_per_snapshot(
            &{
                let mut applied = t.clone();
                applied.status = Some(topic_status(Some(3), None, &in_sync(6, 1)));
                applied
            },
            &snapshot,
        )
        .unwrap_or_else(|| panic!("in sync"));
        t.status = Some(topic_status(Some(3), None, &outcome));
        t
    }

    #[test]
    fn a_refresh_of_a_topic_in_sync_changes_nothing() {
        let t = reconciled_in_sync();
        assert!(refreshed(&t));
        let snapshot = snapshot_with(6, &[("retention.ms", "1000")]);
        assert_eq!(plan_refresh(&t, Ok(&snapshot)), Refresh::Unchanged);
    }

    #[test]
    fn a_refresh_that_finds_drift_to_revert_reconciles_and_writes_nothing() {
        let t = reconciled_in_sync();
        let snapshot = snapshot_with(6, &[("retention.ms", "5")]);
        assert_eq!(plan_refresh(&t, Ok(&snapshot)), Refresh::Reconcile);
    }

    #[test]
    fn a_refresh_that_finds_the_topic_gone_reconciles() {
        let t = reconciled_in_sync();
        let snapshot = crate::controller::observe::Snapshot::default();
        assert_eq!(plan_refresh(&t, Ok(&snapshot)), Refresh::Reconcile);
    }

    #[test]
    fn a_refresh_that_finds_reported_drift_writes_the_status_without_a_reconcile() {
        let mut t = reconciled_in_sync();
        t.spec.drift_policy = DriftPolicy::Report;
        let snapshot = snapshot_with(6, &[("retention.ms", "5")]);
        let Refresh::Write(status) = plan_refresh(&t, Ok(&snapshot)) else {
            panic!("expected a status write");
        };
        let drifted = conditions::find(&status.conditions, DRIFTED)
            .unwrap_or_else(|| panic!("no Drifted condition"));
        assert_eq!(drifted.status, ConditionStatus::True);
    }

    #[test]
    fn a_refresh_with_the_brokers_unreachable_says_so_and_a_later_one_reconciles() {
        let t = reconciled_in_sync();
        let error = KafkaError::Unreachable {
            bootstrap: "kafka:9092".into(),
            message: "connection refused".into(),
        };
        let Refresh::Write(status) = plan_refresh(&t, Err(&error)) else {
            panic!("expected a status write");
        };
        let ready = conditions::find(&status.conditions, types::READY)
            .unwrap_or_else(|| panic!("no Ready condition"));
        assert_eq!(ready.status, ConditionStatus::False);
        assert_eq!(ready.reason, "KafkaUnreachable");

        let mut waiting = t.clone();
        waiting.status = Some(status);
        assert!(
            refreshed(&waiting),
            "a Topic waiting for the brokers stays in the refresh"
        );
        let snapshot = snapshot_with(6, &[("retention.ms", "1000")]);
        assert_eq!(plan_refresh(&waiting, Ok(&snapshot)), Refresh::Reconcile);
        assert_eq!(
            plan_refresh(&waiting, Err(&error)),
            Refresh::Unchanged,
            "still unreachable: nothing new to write"
        );
    }

    #[test]
    fn a_topic_whose_new_spec_is_not_reconciled_yet_is_left_to_its_reconcile() {
        let mut t = reconciled_in_sync();
        t.metadata.generation = Some(4);
        assert!(!refreshed(&t));
        let mut deleted = reconciled_in_sync();
        deleted.metadata.deletion_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                k8s_openapi::jiff::Timestamp::now(),
            ));
        assert!(!refreshed(&deleted));
    }
}

/// [`converge`] against a fake backend: what it asks of a messaging system, whichever it is.
#[cfg(test)]
mod converge_tests {
    use std::sync::Mutex;

    use super::*;
    use crate::backend::{CreateOutcome, NewTopicRequest, System, TopicConfig, TopicDescription};

    /// A backend holding topics in memory and recording every mutation asked of it.
    #[derive(Default)]
    struct Fake {
        topics: Mutex<BTreeMap<String, (i32, TopicConfig)>>,
        mutations: Mutex<Vec<String>>,
    }

    impl Fake {
        fn with(name: &str, partitions: i32, config: &[(&str, &str)]) -> Fake {
            let fake = Fake::default();
            fake.topics
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(
                    name.into(),
                    (
                        partitions,
                        config
                            .iter()
                            .map(|(k, v)| (k.to_string(), v.to_string()))
                            .collect(),
                    ),
                );
            fake
        }

        fn mutations(&self) -> Vec<String> {
            self.mutations
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone()
        }

        fn record(&self, what: String) {
            self.mutations
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(what);
        }

        fn config(&self, name: &str) -> TopicConfig {
            self.topics
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(name)
                .map(|(_, c)| c.clone())
                .unwrap_or_default()
        }
    }

    impl TopicAdmin for Fake {
        fn system(&self) -> System {
            System::Kafka
        }

        async fn describe(&self, name: &str) -> Result<Option<TopicDescription>, backend::Error> {
            Ok(self
                .topics
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(name)
                .map(|(partitions, _)| TopicDescription {
                    name: name.into(),
                    partitions: *partitions,
                    replication_factor: 1,
                    topic_id: None,
                }))
        }

        async fn create(&self, request: &NewTopicRequest) -> Result<CreateOutcome, backend::Error> {
            self.record(format!("create {} {}", request.name, request.partitions));
            let mut topics = self.topics.lock().unwrap_or_else(|p| p.into_inner());
            if topics.contains_key(&request.name) {
                return Ok(CreateOutcome::AlreadyExists);
            }
            topics.insert(
                request.name.clone(),
                (request.partitions, request.config.clone()),
            );
            Ok(CreateOutcome::Created(Some(request.config.clone())))
        }

        async fn grow_partitions(&self, name: &str, to: i32) -> Result<(), backend::Error> {
            self.record(format!("grow {name} {to}"));
            if let Some((partitions, _)) = self
                .topics
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get_mut(name)
            {
                *partitions = to;
            }
            Ok(())
        }

        async fn configs(&self, name: &str) -> Result<TopicConfig, backend::Error> {
            Ok(self.config(name))
        }

        async fn alter_configs(
            &self,
            name: &str,
            set: &TopicConfig,
            delete: &[String],
        ) -> Result<(), backend::Error> {
            self.record(format!("alter {name} set {set:?} delete {delete:?}"));
            if let Some((_, config)) = self
                .topics
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get_mut(name)
            {
                config.extend(set.clone());
                config.retain(|k, _| !delete.contains(k));
            }
            Ok(())
        }
    }

    /// The Topic `orders` with `partitions`, `config` and `driftPolicy`; created now.
    fn topic(partitions: i32, config: &[(&str, &str)], drift: &str) -> Topic {
        let config: BTreeMap<&str, &str> = config.iter().copied().collect();
        let mut t: Topic = serde_json::from_value(serde_json::json!({
            "apiVersion": "exactly.dev/v1alpha1",
            "kind": "Topic",
            "metadata": {"name": "orders", "namespace": "shop", "generation": 1},
            "spec": {"clusterRef": {"name": "main"}, "partitions": partitions,
                "config": config, "driftPolicy": drift},
        }))
        .unwrap_or_else(|e| panic!("{e}"));
        t.metadata.creation_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            Timestamp::now(),
        ));
        t
    }

    /// `t` as it is once its spec was applied: Ready at its generation.
    fn applied(mut t: Topic) -> Topic {
        t.status = Some(TopicStatus {
            conditions: vec![Condition::new(
                types::READY,
                ConditionStatus::True,
                "TopicReady",
                String::new(),
                t.meta().generation,
            )],
            ..TopicStatus::default()
        });
        t
    }

    async fn run(t: &Topic, fake: &Fake) -> TopicOutcome {
        let mut actions = Vec::new();
        converge(t, fake, Timestamp::UNIX_EPOCH, &mut actions).await
    }

    #[tokio::test]
    async fn a_new_topic_is_created_once_and_a_second_pass_changes_nothing() {
        let fake = Fake::default();
        let new = topic(3, &[("retention.ms", "1000")], "Revert");
        assert!(
            matches!(run(&new, &fake).await, TopicOutcome::InSync(o) if o.description.partitions == 3)
        );
        assert_eq!(fake.mutations(), ["create orders 3"]);
        assert!(matches!(
            run(&applied(new), &fake).await,
            TopicOutcome::InSync(_)
        ));
        assert_eq!(fake.mutations(), ["create orders 3"]);
    }

    #[tokio::test]
    async fn partitions_grow_and_fewer_than_the_topic_has_changes_nothing() {
        let fake = Fake::with("orders", 6, &[]);
        let fewer = applied(topic(3, &[], "Revert"));
        assert!(matches!(
            run(&fewer, &fake).await,
            TopicOutcome::NotSupported { .. }
        ));
        assert!(fake.mutations().is_empty(), "{:?}", fake.mutations());
        let more = applied(topic(8, &[], "Revert"));
        assert!(matches!(run(&more, &fake).await, TopicOutcome::InSync(_)));
        assert_eq!(fake.mutations(), ["grow orders 8"]);
    }

    #[tokio::test]
    async fn configuration_changed_behind_the_operators_back_is_reverted_or_only_reported() {
        let reported = Fake::with("orders", 3, &[("retention.ms", "5")]);
        let outcome = run(
            &applied(topic(3, &[("retention.ms", "1000")], "Report")),
            &reported,
        )
        .await;
        assert!(matches!(outcome, TopicOutcome::InSync(o) if o.drift.len() == 1));
        assert!(reported.mutations().is_empty());
        let reverted = Fake::with("orders", 3, &[("retention.ms", "5")]);
        run(
            &applied(topic(3, &[("retention.ms", "1000")], "Revert")),
            &reverted,
        )
        .await;
        assert_eq!(reverted.mutations().len(), 1);
        assert_eq!(
            reverted
                .config("orders")
                .get("retention.ms")
                .map(String::as_str),
            Some("1000")
        );
    }
}
