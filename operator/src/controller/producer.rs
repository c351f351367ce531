//! Reconciles `Producer`: reserves the `transactional.id` prefix, renders the client
//! configuration into the Secret `<name>-client`, reports the producer's transactions and the
//! hanging transactions on its topics, and carries out the guarded abort requested by the
//! `exactly.dev/abort-transaction` annotation.
//!
//! Transaction figures come from the cluster's shared [`super::observe::Snapshot`]; an abort
//! looks again at that moment, never at a cached figure. [`transaction_states`],
//! [`hanging_transactions`] and [`producer_status`] are pure.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::reflector::ObjectRef;
use kube::{Resource, ResourceExt};
use tracing::{info, warn};

use super::access::{self, Guard};
use super::observe::{Interest, Partition, Snapshot};
use super::producer_config::{self, ConfigViolation};
use super::{Context, identity, resolve};
use crate::api::conditions::{self, types};
use crate::api::{
    AbortOutcome, Condition, ConditionStatus, Guarantee, HangingTransaction, Producer,
    ProducerStatus, TransactionState,
};
use crate::kafka::{KafkaAdmin, KafkaError, ProducerState, TransactionDescription};
use crate::{Error, Result};

/// The kind, as it names the producer's user (`<namespace>.producer.<name>`).
const KIND: &str = "Producer";

/// The annotation that requests a guarded abort: a partition (`topic-3`) or a transactional id.
pub const ABORT_ANNOTATION: &str = "exactly.dev/abort-transaction";
/// Condition type: `True` while a transaction hangs on one of the producer's topics.
pub const HANGING: &str = "HangingTransactions";
/// Condition type: `True` when an older Producer holds the same prefix on the cluster.
pub const RESOURCE_CONFLICT: &str = "ResourceConflict";
/// Kafka's default `transaction.max.timeout.ms`, assumed until the cluster reports its own.
const DEFAULT_BROKER_MAX_TIMEOUT_MS: i64 = 900_000;

/// Coordinator states in which a transaction is open.
pub fn is_open(state: &str) -> bool {
    matches!(
        state,
        "Ongoing" | "PrepareCommit" | "PrepareAbort" | "PrepareEpochFence"
    )
}

/// The instance count last known: `spec.instances`, else what the StatefulSet had when the
/// configuration was last rendered, else 1.
pub fn known_instances(producer: &Producer) -> i32 {
    producer
        .spec
        .instances
        .or_else(|| producer.status.as_ref().and_then(|s| s.instances))
        .unwrap_or(1)
}

/// The transactional ids of a Producer's instances (none for `AtLeastOnce`).
pub fn transactional_ids(producer: &Producer) -> Vec<String> {
    ids_for(producer, known_instances(producer))
}

fn ids_for(producer: &Producer, instances: i32) -> Vec<String> {
    if producer.spec.guarantee != Guarantee::ExactlyOnce {
        return Vec::new();
    }
    (0..instances.max(1))
        .map(|n| producer_config::transactional_id(&producer.spec.transactional_id_prefix, n))
        .collect()
}

fn rfc3339(ms: i64) -> Option<String> {
    Timestamp::from_millisecond(ms).ok().map(|t| t.to_string())
}

/// The state of each of `ids` the coordinators know, with the age of open transactions at
/// `now_ms`.
pub fn transaction_states(
    ids: &[String],
    described: &BTreeMap<String, TransactionDescription>,
    now_ms: i64,
) -> Vec<TransactionState> {
    ids.iter()
        .filter_map(|id| described.get(id))
        .map(|t| {
            let open = is_open(&t.state) && t.start_time_ms >= 0;
            let mut partitions: Vec<String> = t
                .partitions
                .iter()
                .map(|p| format!("{}-{}", p.topic, p.partition))
                .collect();
            partitions.sort();
            TransactionState {
                transactional_id: t.transactional_id.clone(),
                state: t.state.clone(),
                producer_id: t.producer_id,
                producer_epoch: i32::from(t.producer_epoch),
                timeout_ms: i64::from(t.timeout_ms),
                started: if open { rfc3339(t.start_time_ms) } else { None },
                age_seconds: open.then(|| ((now_ms - t.start_time_ms) / 1000).max(0)),
                partitions: if open { partitions } else { Vec::new() },
            }
        })
        .collect()
}

/// Transactions that pin a partition's last stable offset while no transaction coordinator
/// tracks their producer: the producer has an open transaction on the partition
/// (`currentTxnStartOffset` ≥ 0) but no coordinator lists its producer id. Nothing will ever
/// complete them; only an abort marker frees the partition.
pub fn hanging_transactions(
    producers: &BTreeMap<Partition, Vec<ProducerState>>,
    tracked_producer_ids: &BTreeSet<i64>,
) -> Vec<HangingTransaction> {
    let mut hanging: Vec<HangingTransaction> = producers
        .iter()
        .flat_map(|((topic, partition), states)| {
            states
                .iter()
                .filter(|s| {
                    s.current_txn_start_offset >= 0
                        && !tracked_producer_ids.contains(&s.producer_id)
                })
                .map(move |s| HangingTransaction {
                    partition: format!("{topic}-{partition}"),
                    producer_id: s.producer_id,
                    producer_epoch: i32::from(s.producer_epoch),
                    start_offset: s.current_txn_start_offset,
                    last_write: (s.last_timestamp > 0)
                        .then(|| rfc3339(s.last_timestamp))
                        .flatten(),
                })
        })
        .collect();
    hanging.sort_by(|a, b| (&a.partition, a.producer_id).cmp(&(&b.partition, b.producer_id)));
    hanging
}

/// What one reconcile found.
#[derive(Debug)]
pub enum ProducerOutcome {
    /// The Secret is rendered; transactions as observed.
    Rendered {
        transactions: Vec<TransactionState>,
        hanging: Vec<HangingTransaction>,
    },
    /// An override or the timeout would weaken the guarantee; nothing was rendered.
    Invalid(Vec<ConfigViolation>),
    /// An older Producer holds the prefix on this cluster.
    Conflict { owner: String },
    /// `spec.statefulSetRef` names no StatefulSet.
    WorkloadNotFound { name: String },
    /// `spec.consumerGroupRef` names no ConsumerGroup (its user's rights on it are unknown).
    ConsumerGroupNotFound { name: String },
    /// `spec.authentication` cannot be met with the cluster's connection; nothing was rendered.
    AuthenticationUnavailable(String),
    /// Kafka could not be asked (the Secret may have been rendered).
    Retrying(KafkaError),
}

/// The status an outcome means, merged into `previous`.
pub fn producer_status(
    generation: Option<i64>,
    previous: Option<&ProducerStatus>,
    secret_name: &str,
    outcome: &ProducerOutcome,
) -> ProducerStatus {
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
    let mut desired = match outcome {
        ProducerOutcome::Rendered {
            transactions,
            hanging,
        } => {
            status.secret_name = Some(secret_name.to_string());
            let open = transactions.iter().filter(|t| is_open(&t.state)).count();
            status.open_transactions = Some(i32::try_from(open).unwrap_or(i32::MAX));
            status.hanging_transactions = Some(i32::try_from(hanging.len()).unwrap_or(i32::MAX));
            status.transactions = transactions.clone();
            status.hanging = hanging.clone();
            let hanging_condition = if hanging.is_empty() {
                cond(HANGING, False, "NoneHanging", String::new())
            } else {
                let list: Vec<String> = hanging
                    .iter()
                    .map(|h| {
                        format!(
                            "{} (producer {}, since offset {})",
                            h.partition, h.producer_id, h.start_offset
                        )
                    })
                    .collect();
                cond(
                    HANGING,
                    True,
                    "TransactionHanging",
                    format!(
                        "{} hanging transaction(s) pin the last stable offset, stalling read_committed consumers: {}. \
                         To abort one, annotate this Producer with {ABORT_ANNOTATION}=<topic-partition>",
                        hanging.len(),
                        list.join(", ")
                    ),
                )
            };
            vec![
                cond(
                    types::READY,
                    True,
                    "ClientConfigRendered",
                    format!("client properties are in Secret {secret_name}"),
                ),
                cond(types::RECONCILING, False, "Reconciled", String::new()),
                cond(types::STALLED, False, "Reconciled", String::new()),
                cond(RESOURCE_CONFLICT, False, "NoConflict", String::new()),
                hanging_condition,
            ]
        }
        ProducerOutcome::Invalid(violations) => {
            let list: Vec<String> = violations
                .iter()
                .map(|v| format!("{}: {}", v.key, v.message))
                .collect();
            stalled(
                "WeakensGuarantee",
                format!(
                    "the client configuration was not rendered. {}",
                    list.join(". ")
                ),
            )
        }
        ProducerOutcome::Conflict { owner } => {
            let mut c = stalled(
                RESOURCE_CONFLICT,
                format!(
                    "Producer {owner} already holds this transactionalIdPrefix on this cluster: two producers \
                     with one prefix fence each other. Choose another prefix (it is immutable: create a new Producer)"
                ),
            );
            c.push(cond(
                RESOURCE_CONFLICT,
                True,
                "PrefixTaken",
                format!("prefix held by Producer {owner}"),
            ));
            c
        }
        ProducerOutcome::WorkloadNotFound { name } => vec![
            cond(
                types::READY,
                False,
                "StatefulSetNotFound",
                format!(
                    "StatefulSet '{name}' named by spec.statefulSetRef does not exist in this namespace: \
                     create it, or correct the reference"
                ),
            ),
            cond(
                types::RECONCILING,
                True,
                "WaitingForStatefulSet",
                String::new(),
            ),
            cond(
                types::STALLED,
                False,
                "WaitingForStatefulSet",
                String::new(),
            ),
        ],
        ProducerOutcome::ConsumerGroupNotFound { name } => vec![
            cond(
                types::READY,
                False,
                "ConsumerGroupNotFound",
                format!(
                    "ConsumerGroup '{name}' named by spec.consumerGroupRef does not exist in this namespace: \
                     create it, or correct the reference (the producer's user is granted Read on its group and topics)"
                ),
            ),
            cond(
                types::RECONCILING,
                True,
                "WaitingForConsumerGroup",
                String::new(),
            ),
            cond(
                types::STALLED,
                False,
                "WaitingForConsumerGroup",
                String::new(),
            ),
        ],
        ProducerOutcome::AuthenticationUnavailable(message) => {
            stalled("AuthenticationUnavailable", message.clone())
        }
        ProducerOutcome::Retrying(error) => vec![
            cond(
                types::READY,
                False,
                error.reason(),
                format!("{error}; retrying"),
            ),
            cond(types::RECONCILING, True, "RetryingKafka", String::new()),
            cond(types::STALLED, False, "RetryingKafka", String::new()),
        ],
    };
    // These are reached only once the prefix was found free: a conflict seen before is over.
    if matches!(
        outcome,
        ProducerOutcome::Invalid(_)
            | ProducerOutcome::WorkloadNotFound { .. }
            | ProducerOutcome::ConsumerGroupNotFound { .. }
            | ProducerOutcome::AuthenticationUnavailable(_)
    ) {
        desired.push(cond(RESOURCE_CONFLICT, False, "NoConflict", String::new()));
    }
    status.conditions = conditions::merge(&status.conditions, desired);
    status.observed_generation = generation;
    status
}

/// The cluster a Producer's prefix is claimed on: a KafkaCluster's bootstrap servers, a
/// PulsarCluster's service URL (two resources naming one cluster share its names).
fn claim_key(ctx: &Context, namespace: &str, cluster: &crate::api::ClusterRef) -> String {
    match cluster.kind {
        crate::api::ClusterKind::KafkaCluster => super::cluster_key(ctx, namespace, &cluster.name),
        crate::api::ClusterKind::PulsarCluster => {
            super::pulsar_cluster::find(ctx, namespace, &cluster.name).map_or_else(
                || format!("pulsar:{namespace}/{}", cluster.name),
                |c| format!("pulsar:{}", c.spec.external.service_url),
            )
        }
    }
}

/// The older Producer holding the same prefix on the same cluster, if any.
pub(super) fn prefix_owner(producer: &Producer, ctx: &Context) -> Option<String> {
    let ns = producer.namespace().unwrap_or_default();
    let me_key = claim_key(ctx, &ns, &producer.spec.cluster_ref);
    let age = |p: &Producer| {
        (
            p.meta()
                .creation_timestamp
                .as_ref()
                .map(|t| t.0.to_string())
                .unwrap_or_default(),
            resolve::qualified(p),
        )
    };
    let mine = age(producer);
    // Only the Producers with this prefix (an index), not every cached one.
    ctx.producer_prefixes
        .get(&producer.spec.transactional_id_prefix)
        .into_iter()
        .filter_map(|(namespace, name)| {
            ctx.producers
                .get(&kube::runtime::reflector::ObjectRef::new(&name).within(&namespace))
        })
        .filter(|p| {
            p.spec.transactional_id_prefix == producer.spec.transactional_id_prefix
                && resolve::qualified(p.as_ref()) != mine.1
                && claim_key(ctx, &p.namespace().unwrap_or_default(), &p.spec.cluster_ref) == me_key
        })
        .map(|p| age(&p))
        .filter(|other| *other < mine)
        .min()
        .map(|(_, name)| name)
}

/// Writes the Secret `<name>-client` (owned by the Producer so it is collected with it).
async fn apply_secret(
    producer: &Producer,
    ctx: &Context,
    namespace: &str,
    name: &str,
    files: &BTreeMap<String, String>,
) -> Result<()> {
    let label = ("exactly.dev/producer", producer.name_any());
    if super::secrets::apply_owned(ctx, producer, namespace, name, label, files).await? {
        info!(
            secret = name,
            namespace, "rendered producer client configuration"
        );
    }
    Ok(())
}

/// Parses `topic-3` into its topic and partition.
pub fn parse_partition(text: &str) -> Option<Partition> {
    let (topic, partition) = text.trim().rsplit_once('-')?;
    let partition: i32 = partition.parse().ok()?;
    (!topic.is_empty() && partition >= 0).then(|| (topic.to_string(), partition))
}

/// Carries out an abort request after checking, at this moment, that it targets a hanging
/// transaction.
async fn guarded_abort(
    producer: &Producer,
    admin: &KafkaAdmin,
    topics: &[String],
    target: &str,
) -> (bool, String) {
    let Some(partition) = parse_partition(target) else {
        let ids = transactional_ids(producer);
        return (
            false,
            if ids.iter().any(|id| id == target) {
                format!(
                    "'{target}' is a transactional id its coordinator tracks: its transaction completes or \
                     times out by itself, and aborting it from outside would break the producer. \
                     Name the pinned partition (topic-partition) of a hanging transaction instead"
                )
            } else {
                format!(
                    "'{target}' is neither a partition (topic-partition) nor one of this producer's transactional ids"
                )
            },
        );
    };
    if !topics.contains(&partition.0) {
        return (
            false,
            format!(
                "{target} is not a partition of this Producer's topics ({})",
                topics.join(", ")
            ),
        );
    }
    let producers = match admin.producers(std::slice::from_ref(&partition)).await {
        Ok(p) => p,
        Err(e) => return (false, format!("could not check {target}: {e}")),
    };
    let tracked: BTreeSet<i64> = match admin.list_transactions().await {
        Ok(listed) => listed.iter().map(|t| t.producer_id).collect(),
        Err(e) => return (false, format!("could not check {target}: {e}")),
    };
    let states = producers.get(&partition).cloned().unwrap_or_default();
    let open: Vec<&ProducerState> = states
        .iter()
        .filter(|s| s.current_txn_start_offset >= 0)
        .collect();
    if open.is_empty() {
        return (
            false,
            format!("no transaction is open on {target}: nothing to abort"),
        );
    }
    let hanging: Vec<&ProducerState> = open
        .iter()
        .copied()
        .filter(|s| !tracked.contains(&s.producer_id))
        .collect();
    if hanging.is_empty() {
        return (
            false,
            format!(
                "the open transaction on {target} (producer {}) is tracked by its coordinator: it is healthy \
                 and completes or times out by itself, so it was not aborted",
                open[0].producer_id
            ),
        );
    }
    let mut done = Vec::new();
    for state in hanging {
        if let Err(e) = admin.abort_transaction(&partition, state).await {
            return (false, format!("abort on {target} failed: {e}"));
        }
        done.push(format!(
            "producer {} (epoch {}, open since offset {})",
            state.producer_id, state.producer_epoch, state.current_txn_start_offset
        ));
    }
    (
        true,
        format!(
            "aborted the hanging transaction of {} on {target}",
            done.join(", ")
        ),
    )
}

/// Removes the abort annotation, only from the version of the object this reconcile saw.
/// Returns the object as it is now.
async fn take_annotation(producer: &Producer, ctx: &Context, namespace: &str) -> Result<Producer> {
    let api: Api<Producer> = Api::namespaced(ctx.client.clone(), namespace);
    let patch = serde_json::json!({"metadata": {
        "annotations": {ABORT_ANNOTATION: null},
        "resourceVersion": producer.resource_version(),
    }});
    Ok(api
        .patch(
            &producer.name_any(),
            &PatchParams::default(),
            &Patch::Merge(patch),
        )
        .await?)
}

/// Reconciles one Producer.
#[tracing::instrument(skip_all, fields(kind = "Producer", namespace = producer.namespace().unwrap_or_default(), name = %producer.name_any()))]
pub async fn reconcile(producer: Arc<Producer>, ctx: Arc<Context>) -> Result<Action> {
    let namespace = producer
        .namespace()
        .ok_or(Error::MissingObjectKey("metadata.namespace"))?;
    if producer.spec.cluster_ref.kind == crate::api::ClusterKind::PulsarCluster {
        return super::producer_pulsar::reconcile(producer, ctx).await;
    }
    let name = producer.name_any();
    let generation = producer.meta().generation;
    let secret_name = format!("{name}-client");
    let authentication = producer.spec.authentication.as_ref();
    match access::guard(
        &ctx,
        producer.as_ref(),
        KIND,
        &producer.spec.cluster_ref.name,
        &secret_name,
        authentication.is_some(),
    )
    .await?
    {
        Guard::Proceed => {}
        Guard::Stop => return Ok(Action::await_change()),
        Guard::Failed(e) => {
            let outcome = ProducerOutcome::Retrying(e);
            let status =
                producer_status(generation, producer.status.as_ref(), &secret_name, &outcome);
            super::write_status(&ctx, producer.as_ref(), &status).await?;
            return Ok(Action::requeue(super::RETRY));
        }
    }
    let cluster = match resolve::cluster(&ctx, &namespace, &producer.spec.cluster_ref.name).await {
        Ok(cluster) => cluster,
        Err(waiting) => {
            let status = waiting.status(generation, producer.status.clone().unwrap_or_default());
            super::write_status(&ctx, producer.as_ref(), &status).await?;
            return Ok(Action::requeue(super::RETRY));
        }
    };
    let key = cluster.bootstrap_servers();
    let topics = resolve::topic_names(&ctx, &namespace, &producer.spec.topics);

    let credentials = match authentication {
        None => Ok(None),
        Some(auth) => {
            access::credentials(&ctx, &cluster, producer.as_ref(), KIND, &secret_name, auth)
                .await
                .map(Some)
        }
    };
    let mut access_status = None;
    let mut last_abort = None;
    let mut rendered_instances = None;
    // The object as last written by this reconcile (status is written against its version).
    let mut latest: Option<Producer> = None;
    // The group whose offsets the producer commits (its id and topics), when its user needs
    // the rights to.
    let offsets_of = match (&producer.spec.consumer_group_ref, authentication) {
        (Some(r), Some(_)) => match ctx.groups.get(&ObjectRef::new(&r.name).within(&namespace)) {
            Some(group) => Some(Ok((
                super::group::group_id(&group),
                resolve::topic_names(&ctx, &namespace, &group.spec.topics),
            ))),
            None => Some(Err(r.name.clone())),
        },
        _ => None,
    };
    let outcome = if let Some(owner) = prefix_owner(&producer, &ctx) {
        ProducerOutcome::Conflict { owner }
    } else if let Some(Err(name)) = &offsets_of {
        ProducerOutcome::ConsumerGroupNotFound { name: name.clone() }
    } else if let Err(problem) = &credentials {
        match problem {
            access::Problem::Unavailable(message) => {
                ProducerOutcome::AuthenticationUnavailable(message.clone())
            }
            access::Problem::Kafka(e) => ProducerOutcome::Retrying(e.clone()),
        }
    } else {
        let credentials = credentials.as_ref().ok().and_then(Option::as_ref);
        let login = credentials.map(|c| c.properties()).unwrap_or_default();
        let max_timeout = cluster
            .status
            .as_ref()
            .and_then(|s| s.exactly_once.as_ref())
            .and_then(|e| e.transaction_max_timeout_ms)
            .unwrap_or(DEFAULT_BROKER_MAX_TIMEOUT_MS);
        let instances = match &producer.spec.stateful_set_ref {
            None => Ok(producer.spec.instances.unwrap_or(1)),
            Some(sts) => {
                let api: Api<StatefulSet> = Api::namespaced(ctx.client.clone(), &namespace);
                match api.get_opt(&sts.name).await? {
                    Some(found) => Ok(found.spec.replicas.unwrap_or(1)),
                    None => Err(sts.name.clone()),
                }
            }
        };
        match instances.map(|n| {
            (
                n,
                producer_config::render(&producer.spec, n, &key, max_timeout, &login),
            )
        }) {
            Err(name) => ProducerOutcome::WorkloadNotFound { name },
            Ok((_, Err(violations))) => ProducerOutcome::Invalid(violations),
            Ok((instances, Ok(mut files))) => {
                rendered_instances = Some(instances);
                if let Some(credentials) = credentials {
                    files.extend(credentials.secret_keys());
                }
                // The password is in the Secret before the brokers know it (access.rs).
                apply_secret(&producer, &ctx, &namespace, &secret_name, &files).await?;
                let admin = resolve::admin(&ctx, &cluster).await?;
                if let (Some(credentials), Some(auth)) = (credentials, authentication) {
                    let prefix = (producer.spec.guarantee == crate::api::Guarantee::ExactlyOnce)
                        .then_some(producer.spec.transactional_id_prefix.as_str());
                    let mut wanted = identity::producer_acls(&credentials.user, &topics, prefix);
                    if let Some(Ok(group)) = &offsets_of {
                        wanted.extend(identity::group_acls(&credentials.user, &group.0, &group.1));
                    }
                    match access::ensure(
                        &admin,
                        &ctx.passwords,
                        credentials,
                        &wanted,
                        access::granted(
                            producer.status.as_ref().and_then(|s| s.access.as_ref()),
                            &credentials.user,
                        ),
                        auth.drift_policy,
                    )
                    .await
                    {
                        Ok(ensured) => {
                            access::report_changes(
                                &ctx,
                                producer.as_ref(),
                                &credentials.user,
                                &ensured.changes,
                            )
                            .await;
                            access_status = Some(ensured.status);
                        }
                        Err(e) => {
                            let outcome = ProducerOutcome::Retrying(e);
                            let mut status = producer_status(
                                generation,
                                producer.status.as_ref(),
                                &secret_name,
                                &outcome,
                            );
                            status.instances = rendered_instances;
                            super::write_status(&ctx, producer.as_ref(), &status).await?;
                            return Ok(Action::requeue(super::RETRY));
                        }
                    }
                }
                // Take the request off the object first, guarded by its resourceVersion: a
                // reconcile of a stale cached copy fails here instead of acting twice.
                let request = match producer.annotations().get(ABORT_ANNOTATION) {
                    Some(target) => match take_annotation(&producer, &ctx, &namespace).await {
                        Ok(now) => {
                            latest = Some(now);
                            Some(target.clone())
                        }
                        Err(Error::Kube(kube::Error::Api(e))) if e.code == 409 => {
                            return Ok(Action::requeue(std::time::Duration::from_secs(1)));
                        }
                        Err(e) => return Err(e),
                    },
                    None => None,
                };
                if let Some(target) = &request {
                    let (aborted, message) =
                        guarded_abort(&producer, &admin, &topics, target).await;
                    ctx.observer.invalidate(&key).await;
                    let (type_, result) = if aborted {
                        (EventType::Normal, "Aborted")
                    } else {
                        (EventType::Warning, "Refused")
                    };
                    info!(producer = %name, %target, result, "{message}");
                    super::publish_event(
                        &ctx,
                        producer.as_ref(),
                        type_,
                        &format!("Abort{result}"),
                        "AbortTransaction",
                        message.clone(),
                    )
                    .await;
                    last_abort = Some(AbortOutcome {
                        target: target.clone(),
                        result: result.into(),
                        message,
                        time: Timestamp::now().to_string(),
                    });
                }
                let ids = ids_for(&producer, instances);
                let mine = Interest {
                    producer_topics: topics.iter().cloned().collect(),
                    transactional_ids: ids.iter().cloned().collect(),
                    ..Interest::default()
                };
                match ctx
                    .observer
                    .snapshot(&key, &admin, &mine, || {
                        super::group::cluster_interest(&ctx, &key)
                    })
                    .await
                {
                    // A topic of its own the brokers would not answer for: this Producer
                    // waits, no other does.
                    Ok(snapshot) => match snapshot.unanswered_of(&topics) {
                        Some(e) => ProducerOutcome::Retrying(e),
                        None => observed(&ids, &snapshot),
                    },
                    Err(e) => ProducerOutcome::Retrying(e),
                }
            }
        }
    };
    let mut status = producer_status(generation, producer.status.as_ref(), &secret_name, &outcome);
    if last_abort.is_some() {
        status.last_abort = last_abort;
    }
    if rendered_instances.is_some() {
        status.instances = rendered_instances;
    }
    access::set_status(
        &mut status.access,
        &mut status.conditions,
        authentication,
        access_status,
        generation,
    );
    if let ProducerOutcome::Rendered {
        transactions,
        hanging,
    } = &outcome
        && super::still_watched(&ctx.producers, producer.as_ref())
    {
        let labels = ctx
            .metrics
            .series_of(crate::metrics::kinds::PRODUCER, &namespace, &name);
        let open = transactions.iter().filter(|t| is_open(&t.state)).count();
        ctx.metrics
            .producer_open_transactions
            .get_or_create(&labels)
            .set(i64::try_from(open).unwrap_or(i64::MAX));
        ctx.metrics
            .producer_hanging_transactions
            .get_or_create(&labels)
            .set(i64::try_from(hanging.len()).unwrap_or(i64::MAX));
        ctx.metrics
            .producer_oldest_transaction_seconds
            .get_or_create(&labels)
            .set(
                transactions
                    .iter()
                    .filter_map(|t| t.age_seconds)
                    .max()
                    .unwrap_or(0),
            );
    }
    if let ProducerOutcome::Retrying(e) = &outcome {
        warn!(producer = %name, namespace = %namespace, error = %e, "producer transactions not observed");
    }
    // Written over the object as this reconcile last changed it (the abort annotation taken).
    let written = latest.as_ref().unwrap_or(producer.as_ref());
    super::write_status(&ctx, written, &status).await?;
    Ok(Action::requeue(match outcome {
        ProducerOutcome::Retrying(_) | ProducerOutcome::ConsumerGroupNotFound { .. } => {
            super::RETRY
        }
        _ => ctx.observer.interval(),
    }))
}

fn observed(ids: &[String], snapshot: &Snapshot) -> ProducerOutcome {
    let now_ms = Timestamp::now().as_millisecond();
    ProducerOutcome::Rendered {
        transactions: transaction_states(ids, &snapshot.transactions, now_ms),
        hanging: hanging_transactions(&snapshot.producers, &snapshot.tracked_producer_ids),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kafka::TopicPartition;

    fn state(pid: i64, start: i64) -> ProducerState {
        ProducerState {
            producer_id: pid,
            producer_epoch: 0,
            last_sequence: 0,
            last_timestamp: 1_700_000_000_000,
            coordinator_epoch: -1,
            current_txn_start_offset: start,
        }
    }

    #[test]
    fn an_open_transaction_no_coordinator_tracks_is_hanging() {
        let producers = BTreeMap::from([
            (("orders".to_string(), 0), vec![state(7, 42), state(8, -1)]),
            (("orders".to_string(), 1), vec![state(9, 3)]),
        ]);
        let tracked = BTreeSet::from([9]);
        let hanging = hanging_transactions(&producers, &tracked);
        assert_eq!(hanging.len(), 1);
        assert_eq!(hanging[0].partition, "orders-0");
        assert_eq!(hanging[0].producer_id, 7);
        assert_eq!(hanging[0].start_offset, 42);
    }

    #[test]
    fn an_ongoing_transaction_reports_its_age_and_partitions() {
        let described = BTreeMap::from([(
            "w-0".to_string(),
            TransactionDescription {
                transactional_id: "w-0".into(),
                coordinator: 1,
                state: "Ongoing".into(),
                producer_id: 5,
                producer_epoch: 2,
                timeout_ms: 60_000,
                start_time_ms: 1_000_000,
                partitions: vec![TopicPartition::new("orders", 1)],
            },
        )]);
        let states = transaction_states(&["w-0".into(), "w-1".into()], &described, 1_042_000);
        assert_eq!(states.len(), 1);
        assert_eq!(states[0].state, "Ongoing");
        assert_eq!(states[0].age_seconds, Some(42));
        assert_eq!(states[0].partitions, ["orders-1"]);
    }

    #[test]
    fn a_completed_transaction_has_no_age() {
        let described = BTreeMap::from([(
            "w-0".to_string(),
            TransactionDescription {
                transactional_id: "w-0".into(),
                coordinator: 1,
                state: "CompleteCommit".into(),
                producer_id: 5,
                producer_epoch: 2,
                timeout_ms: 60_000,
                start_time_ms: -1,
                partitions: vec![],
            },
        )]);
        let states = transaction_states(&["w-0".into()], &described, 5);
        assert_eq!(states[0].age_seconds, None);
        assert_eq!(states[0].started, None);
    }

    #[test]
    fn partitions_parse_from_the_last_dash() {
        assert_eq!(
            parse_partition("orders-v2-3"),
            Some(("orders-v2".into(), 3))
        );
        assert_eq!(parse_partition("orders"), None);
        assert_eq!(parse_partition("-3"), None);
    }

    #[test]
    fn a_hanging_transaction_sets_the_condition_with_the_abort_hint() {
        let outcome = ProducerOutcome::Rendered {
            transactions: vec![],
            hanging: hanging_transactions(
                &BTreeMap::from([(("orders".to_string(), 0), vec![state(7, 42)])]),
                &BTreeSet::new(),
            ),
        };
        let status = producer_status(Some(1), None, "w-client", &outcome);
        let c = conditions::find(&status.conditions, HANGING).cloned();
        let c = c.unwrap_or_else(|| panic!("no {HANGING} in {status:?}"));
        assert_eq!(c.status, ConditionStatus::True);
        assert!(c.message.contains(ABORT_ANNOTATION), "{}", c.message);
        assert_eq!(status.hanging_transactions, Some(1));
    }

    #[test]
    fn an_invalid_override_is_stalled_naming_the_key() {
        let outcome = ProducerOutcome::Invalid(vec![ConfigViolation {
            key: "acks".into(),
            message: "acks=1 ...".into(),
        }]);
        let status = producer_status(Some(1), None, "w-client", &outcome);
        let ready = conditions::find(&status.conditions, types::READY).cloned();
        let ready = ready.unwrap_or_else(|| panic!("no Ready in {status:?}"));
        assert_eq!(ready.reason, "WeakensGuarantee");
        assert!(ready.message.contains("acks"), "{}", ready.message);
    }
}
