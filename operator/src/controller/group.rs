//! Reconciles `ConsumerGroup` (on Pulsar: [`super::group_pulsar`]): observes the group (it never creates members), reports state,
//! members and lag against the last stable offset, judges the lag objective, and runs the
//! guarded one-shot offset reset.
//!
//! Figures come from the cluster's shared [`super::observe::Snapshot`], refreshed at most once
//! per refresh interval for every resource on the cluster. [`group_status`] is pure.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::{Resource, ResourceExt};
use tracing::{info, warn};

use super::access::{self, Guard};
use super::lag::{self, GroupLag, PartitionOffsets};
use super::observe::{Interest, Partition, Snapshot};
use super::{Context, identity, resolve};
use crate::api::conditions::{self, types};
use crate::api::group::MAX_COMMIT_AGE;
use crate::api::{
    Condition, ConditionStatus, ConsumerGroup, ConsumerGroupStatus, GroupMember, Isolation,
    OffsetReset, OffsetResetOutcome, ResetTarget,
};
use crate::kafka::KafkaError;
use crate::{Error, Result};

/// Condition type: whether the group is within `spec.lagObjective`.
pub const LAG_OBJECTIVE_MET: &str = "LagObjectiveMet";
/// Most members listed in status.
pub const TOP_MEMBERS: usize = 20;

/// Group states in which no member holds partitions: an offset reset may run.
fn is_empty_state(state: &str) -> bool {
    matches!(state, "Empty" | "Dead" | "Unknown" | "")
}

/// What one observation says about a group.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GroupObservation {
    pub state: String,
    pub members: Vec<GroupMember>,
    pub lag: GroupLag,
    /// Committed offsets of the group on its topics.
    pub committed: BTreeMap<Partition, i64>,
    /// Topics of the spec that do not exist in Kafka.
    pub missing_topics: Vec<String>,
}

/// Picks the group's figures out of the cluster snapshot.
pub fn observation(
    snapshot: &Snapshot,
    group_id: &str,
    topics: &[String],
    isolation: crate::api::Isolation,
) -> GroupObservation {
    let offsets: BTreeMap<Partition, PartitionOffsets> = snapshot
        .offsets
        .iter()
        .filter(|((t, _), _)| topics.contains(t))
        .map(|(k, v)| (k.clone(), *v))
        .collect();
    let committed: BTreeMap<Partition, i64> = snapshot
        .committed
        .get(group_id)
        .map(|c| {
            c.iter()
                .filter(|((t, _), _)| topics.contains(t))
                .map(|(k, v)| (k.clone(), *v))
                .collect()
        })
        .unwrap_or_default();
    let (state, mut members) = match snapshot.groups.get(group_id) {
        Some(g) => (
            g.state.clone(),
            g.members
                .iter()
                .map(|m| GroupMember {
                    client_id: m.client_id.clone(),
                    host: m.client_host.clone(),
                })
                .collect::<Vec<_>>(),
        ),
        None => ("Unknown".to_string(), Vec::new()),
    };
    members.sort_by(|a, b| (&a.client_id, &a.host).cmp(&(&b.client_id, &b.host)));
    GroupObservation {
        state,
        members,
        lag: lag::group_lag(&offsets, &committed, isolation, lag::TOP_PARTITIONS),
        committed,
        missing_topics: topics
            .iter()
            .filter(|t| !snapshot.partitions.contains_key(*t))
            .cloned()
            .collect(),
    }
}

/// Whether the lag objective holds: `None` when the spec sets none.
pub fn objective_met(
    group: &ConsumerGroup,
    total_lag: i64,
    since_last_commit: Option<Duration>,
) -> Option<(bool, String)> {
    let objective = group.spec.lag_objective.as_ref()?;
    let mut broken = Vec::new();
    if let Some(max) = objective.max_lag
        && total_lag > max
    {
        broken.push(format!("total lag {total_lag} is above maxLag {max}"));
    }
    if let Some(max_age) = objective
        .max_commit_age
        .as_deref()
        .and_then(|text| MAX_COMMIT_AGE.parse(text).ok())
        && total_lag > 0
        && let Some(since) = since_last_commit
        && since > max_age
    {
        broken.push(format!(
            "no commit for {}s while lagging, above maxCommitAge {}",
            since.as_secs(),
            objective.max_commit_age.as_deref().unwrap_or_default()
        ));
    }
    Some(if broken.is_empty() {
        (
            true,
            format!("total lag {total_lag} is within the objective"),
        )
    } else {
        (false, broken.join("; "))
    })
}

/// The status one observation means, merged into `previous`.
pub fn group_status(
    group: &ConsumerGroup,
    observed: &GroupObservation,
    last_commit_seen: Option<String>,
    since_last_commit: Option<Duration>,
) -> ConsumerGroupStatus {
    use ConditionStatus::{False, True};
    let generation = group.meta().generation;
    let mut status = group.status.clone().unwrap_or_default();
    let cond = |type_: &str, s: ConditionStatus, reason: &str, message: String| {
        Condition::new(type_, s, reason, message, generation)
    };
    let mut desired = if observed.missing_topics.is_empty() {
        vec![
            cond(
                types::READY,
                True,
                "GroupObserved",
                format!("group state {}", observed.state),
            ),
            cond(types::RECONCILING, False, "Observed", String::new()),
            cond(types::STALLED, False, "Observed", String::new()),
        ]
    } else {
        vec![
            cond(
                types::READY,
                False,
                "TopicNotFound",
                format!(
                    "topic(s) {} do not exist in Kafka yet: lag is reported for the others",
                    observed.missing_topics.join(", ")
                ),
            ),
            cond(types::RECONCILING, True, "WaitingForTopics", String::new()),
            cond(types::STALLED, False, "WaitingForTopics", String::new()),
        ]
    };
    if let Some((met, message)) = objective_met(group, observed.lag.total, since_last_commit) {
        desired.push(if met {
            cond(LAG_OBJECTIVE_MET, True, "WithinObjective", message)
        } else {
            cond(LAG_OBJECTIVE_MET, False, "ObjectiveMissed", message)
        });
    }
    status.conditions = conditions::merge(&status.conditions, desired);
    if group.spec.lag_objective.is_none() {
        // An objective removed from the spec takes its condition with it.
        status.conditions.retain(|c| c.type_ != LAG_OBJECTIVE_MET);
    }
    status.observed_generation = generation;
    status.state = Some(observed.state.clone());
    status.member_count = Some(i32::try_from(observed.members.len()).unwrap_or(i32::MAX));
    status.members = observed.members.iter().take(TOP_MEMBERS).cloned().collect();
    status.total_lag = Some(observed.lag.total);
    status.partitions = observed.lag.partitions.clone();
    status.partitions_omitted = (observed.lag.omitted > 0).then_some(observed.lag.omitted);
    if last_commit_seen.is_some() {
        status.last_commit_seen = last_commit_seen;
    }
    status
}

/// The offsets a reset moves each partition to.
pub fn reset_offsets(
    target: ResetTarget,
    offset: Option<i64>,
    partitions: &BTreeMap<Partition, PartitionOffsets>,
    by_time: &BTreeMap<Partition, i64>,
) -> BTreeMap<Partition, i64> {
    partitions
        .iter()
        .map(|(p, o)| {
            let to = match target {
                ResetTarget::Earliest => o.log_start,
                ResetTarget::Latest => o.log_end,
                // -1 from ListOffsets: no record at or after the time, so the log end.
                ResetTarget::Timestamp => match by_time.get(p) {
                    Some(at) if *at >= 0 => *at,
                    _ => o.log_end,
                },
                ResetTarget::Offset => offset.unwrap_or(o.log_start).clamp(o.log_start, o.log_end),
            };
            (p.clone(), to)
        })
        .collect()
}

fn now() -> String {
    Timestamp::now().to_string()
}

/// Where the spec's reset request stands before a reconcile acts on it (both backends).
pub(super) enum Due<'a> {
    /// Nothing to run: no request, or this id has its outcome already.
    Nothing,
    /// This process ran it already (the status this reconcile read may be an older copy).
    Remembered(OffsetResetOutcome),
    /// Recorded `Applying` and never settled: an operator stopped between the two writes.
    Unsettled(&'a OffsetResetOutcome),
    /// To run, or to keep waiting for; its outcome is remembered under `memory_key`.
    Run {
        request: &'a OffsetReset,
        previous: Option<&'a OffsetResetOutcome>,
        memory_key: String,
    },
}

/// Where the group's reset request stands: what makes a reset run at most once per id.
pub(super) fn reset_due<'a>(group: &'a ConsumerGroup, ctx: &Context) -> Due<'a> {
    let Some(request) = group.spec.offset_reset.as_ref() else {
        return Due::Nothing;
    };
    let previous = group
        .status
        .as_ref()
        .and_then(|s| s.last_offset_reset.as_ref())
        .filter(|p| p.id == request.id);
    if previous.is_some_and(|p| p.result != WAITING && p.result != APPLYING) {
        return Due::Nothing; // done once for this id
    }
    // The status this reconcile reads may be an older cached copy: what this process already
    // did for the id is remembered, so the request never runs twice.
    let memory_key = format!("{}/{}", resolve::qualified(group), request.id);
    if let Some(done) = ctx
        .resets
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(&memory_key)
    {
        return Due::Remembered(done.clone());
    }
    match previous {
        Some(p) if p.result == APPLYING => Due::Unsettled(p),
        _ => Due::Run {
            request,
            previous,
            memory_key,
        },
    }
}

/// Remembers a reset's final outcome in this process (see [`reset_due`]).
pub(super) fn remember(ctx: &Context, memory_key: String, outcome: &OffsetResetOutcome) {
    ctx.resets
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(memory_key, outcome.clone());
}

/// Runs the spec's offset reset if it is due; returns its outcome, or `None` when there is
/// nothing to do.
#[allow(clippy::too_many_arguments)] // one call site; a struct would only rename them
async fn offset_reset(
    group: &ConsumerGroup,
    ctx: &Context,
    admin: &crate::kafka::KafkaAdmin,
    cluster_key: &str,
    group_id: &str,
    observed: &GroupObservation,
    snapshot: &Snapshot,
    topics: &[String],
) -> Option<OffsetResetOutcome> {
    let (request, previous, memory_key) = match reset_due(group, ctx) {
        Due::Nothing => return None,
        Due::Remembered(outcome) => return Some(outcome),
        Due::Unsettled(applying) => {
            return Some(settle_interrupted(admin, group_id, applying).await);
        }
        Due::Run {
            request,
            previous,
            memory_key,
        } => (request, previous, memory_key),
    };
    let waiting_for = |message: String| {
        if let Some(p) = previous
            && p.id == request.id
            && p.message == message
        {
            return p.clone();
        }
        OffsetResetOutcome {
            id: request.id.clone(),
            result: WAITING.into(),
            message,
            time: now(),
        }
    };
    let waiting = |state: &str, members: usize| {
        waiting_for(format!(
            "waiting: the group is {state} with {members} member(s); stop its consumers and the reset runs once it is Empty"
        ))
    };
    if !is_empty_state(&observed.state) || !observed.members.is_empty() {
        return Some(waiting(&observed.state, observed.members.len()));
    }
    // The snapshot may be a few seconds old: look at the group again right before moving it.
    match admin.describe_groups(&[group_id.to_string()]).await {
        Ok(groups) => {
            if let Some(g) = groups.get(group_id)
                && (!is_empty_state(&g.state) || !g.members.is_empty())
            {
                return Some(waiting(&g.state, g.members.len()));
            }
        }
        Err(e) => {
            return Some(waiting(&format!("not describable ({e})"), 0));
        }
    }
    let partitions: BTreeMap<Partition, PartitionOffsets> = snapshot
        .offsets
        .iter()
        .filter(|((t, _), _)| topics.contains(t))
        .map(|(k, v)| (k.clone(), *v))
        .collect();
    let by_time = match (request.to, request.timestamp.as_deref()) {
        (ResetTarget::Timestamp, Some(text)) => match text.parse::<Timestamp>() {
            Ok(at) => {
                let keys: Vec<Partition> = partitions.keys().cloned().collect();
                match admin.offsets_for_time(&keys, at.as_millisecond()).await {
                    Ok(found) => found,
                    Err(e) => {
                        return Some(failed(request.id.clone(), format!("{e}")));
                    }
                }
            }
            Err(e) => {
                return Some(failed(
                    request.id.clone(),
                    format!(
                        "timestamp '{text}' is not RFC 3339 ({e}); correct spec.offsetReset.timestamp and change its id"
                    ),
                ));
            }
        },
        _ => BTreeMap::new(),
    };
    let offsets = reset_offsets(request.to, request.offset, &partitions, &by_time);
    if offsets.is_empty() {
        // Typically a reset declared together with its topics: they are being created.
        return Some(waiting_for(
            "waiting: the group's topics have no partitions in Kafka yet; the reset runs once they exist"
                .into(),
        ));
    }
    let described: Vec<String> = offsets
        .iter()
        .take(10)
        .map(|((t, p), o)| format!("{t}-{p}→{o}"))
        .collect();
    let more = offsets.len().saturating_sub(described.len());
    let what = format!(
        "{:?} offsets on {} partition(s): {}{}",
        request.to,
        offsets.len(),
        described.join(", "),
        if more > 0 {
            format!(" and {more} more")
        } else {
            String::new()
        }
    );
    // Recorded before the commit: an operator that stops from here on finds `Applying` and
    // settles it from the group's offsets instead of committing a second time.
    if !record_applying(ctx, group, &request.id, format!("committing {what}")).await {
        return previous.cloned();
    }
    let result = admin
        .commit_offsets(group_id, &offsets, &reset_mark(&request.id))
        .await;
    ctx.observer.invalidate(cluster_key).await;
    match result {
        Ok(()) => {
            let message = format!("committed {what}");
            info!(group = group_id, id = %request.id, "{message}");
            super::publish_event(
                ctx,
                group,
                EventType::Normal,
                "OffsetReset",
                "ResetOffsets",
                message.clone(),
            )
            .await;
            let outcome = OffsetResetOutcome {
                id: request.id.clone(),
                result: APPLIED.into(),
                message,
                time: now(),
            };
            remember(ctx, memory_key, &outcome);
            Some(outcome)
        }
        // A member joined between the check and the commit: the coordinator refuses an
        // admin commit for a group with members. Wait, as for any active group.
        Err(KafkaError::Refused { code, .. })
            if [
                "UNKNOWN_MEMBER_ID",
                "ILLEGAL_GENERATION",
                "REBALANCE_IN_PROGRESS",
            ]
            .iter()
            .any(|c| code.starts_with(c)) =>
        {
            Some(waiting("no longer Empty", 1))
        }
        Err(e) => Some(failed(request.id.clone(), format!("{e}"))),
    }
}

/// `status.lastOffsetReset.result` of a reset whose group has members: it runs once they go.
pub(super) const WAITING: &str = "Waiting";
/// The result of a reset whose offsets were committed.
pub(super) const APPLIED: &str = "Applied";
/// The result recorded right before a reset's commit. Found on a later reconcile, it means an
/// operator stopped before recording the outcome: [`settle_interrupted`] decides from the group's
/// offsets, and the reset is never committed a second time.
pub(super) const APPLYING: &str = "Applying";
/// The result of a reset that may or may not have run: an operator stopped while applying it
/// and the group's offsets do not show it.
pub(super) const INTERRUPTED: &str = "Interrupted";

/// The commit metadata a reset leaves on each partition it moved, so that its effect can be
/// recognised after an operator stopped half-way.
pub fn reset_mark(id: &str) -> String {
    format!("exactly.dev/offset-reset={id}")
}

/// The outcome of a reset left `Applying`: `Applied` when the group's offsets carry its mark,
/// `Interrupted` when none does (not run again: a reset runs at most once), unchanged while
/// the offsets cannot be read.
async fn settle_interrupted(
    admin: &crate::kafka::KafkaAdmin,
    group_id: &str,
    applying: &OffsetResetOutcome,
) -> OffsetResetOutcome {
    let committed = match admin.committed_of_each_group(&[group_id.to_string()]).await {
        Ok((answered, failed)) if !failed.contains_key(group_id) => answered,
        Ok((_, failed)) => {
            let error = failed
                .get(group_id)
                .map(ToString::to_string)
                .unwrap_or_default();
            warn!(group = group_id, id = %applying.id, %error, "interrupted offset reset not settled yet");
            return applying.clone();
        }
        Err(error) => {
            warn!(group = group_id, id = %applying.id, %error, "interrupted offset reset not settled yet");
            return applying.clone();
        }
    };
    let mark = reset_mark(&applying.id);
    let marked = committed
        .get(group_id)
        .map(|offsets| offsets.values().filter(|(_, m)| *m == mark).count())
        .unwrap_or(0);
    let (result, message) = if marked > 0 {
        (
            APPLIED,
            format!(
                "committed on {marked} partition(s) before the operator stopped (their offsets carry this reset's mark); not run again"
            ),
        )
    } else {
        (
            INTERRUPTED,
            "the operator stopped while applying this reset and no offset of the group carries its mark: it may not have run, or a later commit replaced it. It is not retried (a reset runs at most once): check the group's offsets and set a new spec.offsetReset.id to run it".to_string(),
        )
    };
    info!(group = group_id, id = %applying.id, result, "{message}");
    OffsetResetOutcome {
        id: applying.id.clone(),
        result: result.into(),
        message,
        time: now(),
    }
}

fn failed(id: String, message: String) -> OffsetResetOutcome {
    reset_outcome(&id, FAILED, message)
}

/// The result of a reset that was refused or failed (a reset is not retried).
pub(super) const FAILED: &str = "Failed";

/// A reset's outcome `result` for the request `id`, reached now.
pub(super) fn reset_outcome(id: &str, result: &str, message: String) -> OffsetResetOutcome {
    OffsetResetOutcome {
        id: id.to_string(),
        result: result.into(),
        message,
        time: now(),
    }
}

/// Records `Applying` for the reset before it acts (both backends): a later reconcile that
/// finds it knows the reset may have run and never runs it again. `false` when it was not
/// written — the reconcile read a stale copy (the newer version's reconcile runs it) or the
/// write failed — and the reset must not run now.
pub(super) async fn record_applying(
    ctx: &Context,
    group: &ConsumerGroup,
    id: &str,
    message: String,
) -> bool {
    let mut recorded = group.status.clone().unwrap_or_default();
    recorded.last_offset_reset = Some(reset_outcome(id, APPLYING, message));
    match super::write_status(ctx, group, &recorded).await {
        Ok(written) => written,
        Err(e) => {
            warn!(group = %group.name_any(), %id, error = %e, "reset not started: recording it failed");
            false
        }
    }
}

/// The group's `group.id`: `spec.groupId`, else `metadata.name`.
pub fn group_id(group: &ConsumerGroup) -> String {
    group
        .spec
        .group_id
        .clone()
        .unwrap_or_else(|| group.name_any())
}

/// What every Topic, ConsumerGroup, Producer and Pipeline on the cluster `key` needs observed.
pub fn cluster_interest(ctx: &Context, key: &str) -> Interest {
    let mut interest = Interest::default();
    for g in ctx.groups.state() {
        let ns = g.namespace().unwrap_or_default();
        if !g.spec.cluster_ref.kind.is_kafka()
            || super::cluster_key(ctx, &ns, &g.spec.cluster_ref.name) != key
        {
            continue;
        }
        interest.groups.insert(group_id(&g));
        interest
            .topics
            .extend(resolve::topic_names(ctx, &ns, &g.spec.topics));
    }
    for t in ctx.topics.state() {
        let ns = t.namespace().unwrap_or_default();
        if !t.on_pulsar() && super::cluster_key(ctx, &ns, &t.spec.cluster_ref.name) == key {
            interest.topic_configs.insert(t.kafka_topic_name());
        }
    }
    for p in ctx.producers.state() {
        let ns = p.namespace().unwrap_or_default();
        if !p.spec.cluster_ref.kind.is_kafka()
            || super::cluster_key(ctx, &ns, &p.spec.cluster_ref.name) != key
        {
            continue;
        }
        interest
            .transactional_ids
            .extend(super::producer::transactional_ids(&p));
        interest
            .producer_topics
            .extend(resolve::topic_names(ctx, &ns, &p.spec.topics));
    }
    for p in ctx.pipelines.state() {
        let ns = p.namespace().unwrap_or_default();
        if super::cluster_key(ctx, &ns, &p.spec.cluster_ref.name) == key {
            interest
                .transactional_id_prefixes
                .insert(super::pipeline::transactional_id_prefix(&p));
        }
    }
    interest
}

/// How soon a group whose coordinator moved or is loading is looked at again.
const COORDINATOR_RETRY: Duration = Duration::from_secs(2);

/// Whether `error` says the group's coordinator is moving or loading (transient: seconds).
fn is_coordinator_moving(error: &KafkaError) -> bool {
    matches!(error, KafkaError::Refused { code, .. }
        if ["NOT_COORDINATOR", "COORDINATOR_LOAD_IN_PROGRESS", "COORDINATOR_NOT_AVAILABLE"]
            .iter()
            .any(|c| code.starts_with(c)))
}

/// Reports that Kafka could not be asked, and retries soon.
async fn unreachable(group: &ConsumerGroup, ctx: &Context, error: &KafkaError) -> Result<Action> {
    let status = resolve::unreachable_status(
        group.meta().generation,
        group.status.clone().unwrap_or_default(),
        error,
    );
    super::write_status(ctx, group, &status).await?;
    warn!(group = %group.name_any(), namespace = %group.namespace().unwrap_or_default(), %error, "group not observed");
    Ok(Action::requeue(super::RETRY))
}

/// The kind, as it names the group's user (`<namespace>.consumergroup.<name>`).
const KIND: &str = "ConsumerGroup";

/// The key of the rendered consumer properties in the group's client Secret.
pub const PROPERTIES_KEY: &str = "consumer.properties";

/// The consumer properties of a group with its own identity: where to connect, the group, the
/// isolation level it is measured with, and the `login` of its user.
pub fn consumer_properties(
    bootstrap: &str,
    group_id: &str,
    isolation: Isolation,
    login: &BTreeMap<String, String>,
) -> String {
    let isolation = match isolation {
        Isolation::ReadCommitted => "read_committed",
        Isolation::ReadUncommitted => "read_uncommitted",
    };
    let mut props = BTreeMap::from([
        ("bootstrap.servers".to_string(), bootstrap.to_string()),
        ("group.id".to_string(), group_id.to_string()),
        ("isolation.level".to_string(), isolation.to_string()),
    ]);
    props.extend(login.iter().map(|(k, v)| (k.clone(), v.clone())));
    let mut text = String::from(
        "# Rendered by the exactly operator from the ConsumerGroup resource. Do not edit.\n",
    );
    for (key, value) in props {
        text.push_str(&format!("{key}={value}\n"));
    }
    text
}

/// Reconciles one ConsumerGroup.
#[tracing::instrument(skip_all, fields(kind = "ConsumerGroup", namespace = group.namespace().unwrap_or_default(), name = %group.name_any()))]
pub async fn reconcile(group: Arc<ConsumerGroup>, ctx: Arc<Context>) -> Result<Action> {
    let namespace = group
        .namespace()
        .ok_or(Error::MissingObjectKey("metadata.namespace"))?;
    if group.spec.cluster_ref.kind == crate::api::ClusterKind::PulsarCluster {
        return super::group_pulsar::reconcile(group, ctx).await;
    }
    let name = group.name_any();
    let refresh = ctx.observer.interval();
    let secret_name = format!("{name}-client");
    let authentication = group.spec.authentication.as_ref();
    match access::guard(
        &ctx,
        group.as_ref(),
        KIND,
        &group.spec.cluster_ref.name,
        &secret_name,
        authentication.is_some(),
    )
    .await?
    {
        Guard::Proceed => {}
        Guard::Stop => return Ok(Action::await_change()),
        Guard::Failed(e) => return unreachable(&group, &ctx, &e).await,
    }
    let cluster = match resolve::cluster(&ctx, &namespace, &group.spec.cluster_ref.name).await {
        Ok(cluster) => cluster,
        Err(waiting) => {
            let status = waiting.status(
                group.meta().generation,
                group.status.clone().unwrap_or_default(),
            );
            super::write_status(&ctx, group.as_ref(), &status).await?;
            return Ok(Action::requeue(super::RETRY));
        }
    };
    let key = cluster.bootstrap_servers();
    let admin = match resolve::admin(&ctx, &cluster).await {
        Ok(admin) => admin,
        Err(e) => return unreachable(&group, &ctx, &e).await,
    };
    let group_id = group_id(&group);
    let topics = resolve::topic_names(&ctx, &namespace, &group.spec.topics);
    let access_status = match authentication {
        None => None,
        Some(auth) => {
            let credentials =
                match access::credentials(&ctx, &cluster, group.as_ref(), KIND, &secret_name, auth)
                    .await
                {
                    Ok(credentials) => credentials,
                    Err(access::Problem::Kafka(e)) => return unreachable(&group, &ctx, &e).await,
                    Err(access::Problem::Unavailable(message)) => {
                        let status = resolve::stalled_status(
                            group.meta().generation,
                            group.status.clone().unwrap_or_default(),
                            "AuthenticationUnavailable",
                            message,
                        );
                        super::write_status(&ctx, group.as_ref(), &status).await?;
                        return Ok(Action::requeue(refresh));
                    }
                };
            let mut data = BTreeMap::from([(
                PROPERTIES_KEY.to_string(),
                consumer_properties(
                    &cluster.bootstrap_servers(),
                    &group_id,
                    group.spec.isolation,
                    &credentials.properties(),
                ),
            )]);
            data.extend(credentials.secret_keys());
            // The password is in the Secret before the brokers know it (access.rs).
            let label = ("exactly.dev/consumer-group", name.clone());
            if super::secrets::apply_owned(
                &ctx,
                group.as_ref(),
                &namespace,
                &secret_name,
                label,
                &data,
            )
            .await?
            {
                info!(secret = %secret_name, %namespace, "rendered consumer client configuration");
            }
            let wanted = identity::group_acls(&credentials.user, &group_id, &topics);
            match access::ensure(
                &admin,
                &ctx.passwords,
                &credentials,
                &wanted,
                access::granted(
                    group.status.as_ref().and_then(|s| s.access.as_ref()),
                    &credentials.user,
                ),
                auth.drift_policy,
            )
            .await
            {
                Ok(ensured) => {
                    access::report_changes(
                        &ctx,
                        group.as_ref(),
                        &credentials.user,
                        &ensured.changes,
                    )
                    .await;
                    Some(ensured.status)
                }
                Err(e) => return unreachable(&group, &ctx, &e).await,
            }
        }
    };
    let mine = Interest {
        topics: topics.iter().cloned().collect(),
        groups: [group_id.clone()].into(),
        ..Interest::default()
    };
    let snapshot = match ctx
        .observer
        .snapshot(&key, &admin, &mine, || cluster_interest(&ctx, &key))
        .await
    {
        Ok(snapshot) => snapshot,
        Err(e) => return unreachable(&group, &ctx, &e).await,
    };
    // A topic of its own the brokers would not answer for: this group waits, no other does.
    if let Some(e) = snapshot.unanswered_of(&topics) {
        return unreachable(&group, &ctx, &e).await;
    }
    // Nor one whose committed offsets its coordinator would not give. A coordinator that moved
    // or is still loading the group (after a broker restart) answers within seconds: look again
    // with the next observation rather than after the usual retry.
    if let Some(e) = snapshot.unanswered_groups.get(&group_id) {
        let action = unreachable(&group, &ctx, e).await?;
        if is_coordinator_moving(e) {
            // As soon as the next observation can be taken, and not before (a group looked at
            // again earlier would only read the same answer from the cached snapshot).
            let next = snapshot
                .taken
                .and_then(|t| {
                    (t + refresh)
                        .duration_since(std::time::SystemTime::now())
                        .ok()
                })
                .unwrap_or_default();
            return Ok(Action::requeue(next.max(COORDINATOR_RETRY)));
        }
        return Ok(action);
    }
    let topic_list: Vec<String> = topics.to_vec();
    let observed = observation(&snapshot, &group_id, &topic_list, group.spec.isolation);

    // Time since the last commit: the operator sees commits as committed offsets that moved.
    let (last_commit_seen, since) = ctx.commit_clock.observe(
        &format!("{key}/{group_id}"),
        &observed.committed,
        group
            .status
            .as_ref()
            .and_then(|s| s.last_commit_seen.as_deref()),
    );
    let mut status = group_status(&group, &observed, last_commit_seen, since);
    access::set_status(
        &mut status.access,
        &mut status.conditions,
        authentication,
        access_status,
        group.meta().generation,
    );
    if let Some(outcome) = offset_reset(
        &group,
        &ctx,
        &admin,
        &key,
        &group_id,
        &observed,
        &snapshot,
        &topic_list,
    )
    .await
    {
        status.last_offset_reset = Some(outcome);
    }

    if super::still_watched(&ctx.groups, group.as_ref()) {
        let labels =
            ctx.metrics
                .series_of(crate::metrics::kinds::CONSUMER_GROUP, &namespace, &name);
        ctx.metrics
            .group_lag
            .get_or_create(&labels)
            .set(observed.lag.total);
        ctx.metrics
            .group_members
            .get_or_create(&labels)
            .set(i64::try_from(observed.members.len()).unwrap_or(i64::MAX));
        ctx.metrics.set_group_partition_lags(
            &namespace,
            &name,
            observed
                .lag
                .all
                .iter()
                .map(|p| (p.topic.clone(), p.partition, p.lag)),
        );
    }

    super::write_status(&ctx, group.as_ref(), &status).await?;
    Ok(Action::requeue(refresh))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{ClusterRef, ConsumerGroupSpec, Isolation, LagObjective, TopicRef};

    fn group(objective: Option<LagObjective>) -> ConsumerGroup {
        let mut g = ConsumerGroup::new(
            "billing",
            ConsumerGroupSpec {
                cluster_ref: ClusterRef::kafka("main"),
                group_id: None,
                topics: vec![TopicRef {
                    name: "orders".into(),
                }],
                isolation: Isolation::ReadCommitted,
                lag_objective: objective,
                offset_reset: None,
                authentication: None,
                pulsar: None,
            },
        );
        g.metadata.generation = Some(1);
        g
    }

    fn offsets(log_start: i64, log_end: i64, last_stable: i64) -> PartitionOffsets {
        PartitionOffsets {
            log_start,
            log_end,
            last_stable,
        }
    }

    #[test]
    fn group_id_defaults_to_the_resource_name() {
        assert_eq!(group_id(&group(None)), "billing");
    }

    #[test]
    fn lag_above_max_misses_the_objective_and_says_by_how_much() {
        let g = group(Some(LagObjective {
            max_lag: Some(10),
            max_commit_age: None,
        }));
        let (met, message) = objective_met(&g, 11, None).unwrap_or_default();
        assert!(!met);
        assert!(
            message.contains("11") && message.contains("10"),
            "{message}"
        );
        assert_eq!(objective_met(&g, 10, None).map(|(m, _)| m), Some(true));
    }

    #[test]
    fn no_commit_for_longer_than_max_commit_age_while_lagging_misses_the_objective() {
        let g = group(Some(LagObjective {
            max_lag: None,
            max_commit_age: Some("60s".into()),
        }));
        let stale = Some(Duration::from_secs(120));
        assert_eq!(objective_met(&g, 5, stale).map(|(m, _)| m), Some(false));
        // Without lag there is nothing to commit: not a miss.
        assert_eq!(objective_met(&g, 0, stale).map(|(m, _)| m), Some(true));
    }

    #[test]
    fn without_an_objective_there_is_no_condition() {
        assert_eq!(objective_met(&group(None), 1_000_000, None), None);
    }

    #[test]
    fn a_group_unknown_to_the_coordinator_still_reports_lag() {
        let snapshot = Snapshot {
            partitions: BTreeMap::from([("orders".to_string(), vec![0])]),
            offsets: BTreeMap::from([(("orders".to_string(), 0), offsets(0, 7, 7))]),
            ..Snapshot::default()
        };
        let o = observation(
            &snapshot,
            "billing",
            &["orders".into()],
            Isolation::ReadCommitted,
        );
        assert_eq!(o.state, "Unknown");
        assert_eq!(o.lag.total, 7);
    }

    #[test]
    fn a_coordinator_moving_or_loading_is_transient_and_other_refusals_are_not() {
        let refused = |code: &str| KafkaError::Refused {
            operation: "fetch committed offsets of",
            resource: "g".into(),
            code: code.into(),
        };
        assert!(is_coordinator_moving(&refused("NOT_COORDINATOR")));
        assert!(is_coordinator_moving(&refused(
            "COORDINATOR_LOAD_IN_PROGRESS"
        )));
        assert!(!is_coordinator_moving(&refused(
            "GROUP_AUTHORIZATION_FAILED"
        )));
        assert!(!is_coordinator_moving(&KafkaError::Unreachable {
            bootstrap: "k:9092".into(),
            message: "refused".into(),
        }));
    }

    #[test]
    fn reset_targets_map_to_offsets_within_the_log() {
        let parts = BTreeMap::from([(("t".to_string(), 0), offsets(5, 50, 40))]);
        let key = ("t".to_string(), 0);
        let at = |target, offset| reset_offsets(target, offset, &parts, &BTreeMap::new())[&key];
        assert_eq!(at(ResetTarget::Earliest, None), 5);
        assert_eq!(at(ResetTarget::Latest, None), 50);
        assert_eq!(at(ResetTarget::Offset, Some(2)), 5);
        assert_eq!(at(ResetTarget::Offset, Some(20)), 20);
        assert_eq!(at(ResetTarget::Timestamp, None), 50);
        let by_time = BTreeMap::from([(key.clone(), 12)]);
        assert_eq!(
            reset_offsets(ResetTarget::Timestamp, None, &parts, &by_time)[&key],
            12
        );
    }

    #[test]
    fn an_unchanged_observation_yields_an_identical_status() {
        let g = group(None);
        let observed = GroupObservation {
            state: "Empty".into(),
            ..GroupObservation::default()
        };
        let first = group_status(&g, &observed, None, None);
        let mut again = g.clone();
        again.status = Some(first.clone());
        assert_eq!(group_status(&again, &observed, None, None), first);
    }
}
