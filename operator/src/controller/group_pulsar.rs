//! A ConsumerGroup on a PulsarCluster: a **subscription** (named `spec.groupId`, else
//! `metadata.name`) on every partition of its Topics.
//!
//! Pulsar keeps a subscription's position (its cursor) on the broker, and keeps the messages a
//! subscription has not acknowledged: so the operator creates the subscription when it is
//! missing (at `spec.pulsar.initialPosition`, the oldest message by default), and from then on
//! nothing published is lost to retention before a consumer comes. It never deletes one: a
//! subscription removed with its resource would drop its backlog.
//!
//! Status comes from the broker's per-partition stats: the subscription type the consumers
//! chose (Shared is reported as unordered), the backlog and unacknowledged messages on each
//! partition, the consumers connected, and the time the acknowledged position last moved (for
//! the lag objective's `maxCommitAge`). The offset reset is a guarded one-shot cursor reset:
//! only while no consumer is connected, at most once per request id.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use k8s_openapi::jiff::Timestamp;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::{Resource, ResourceExt};
use tracing::{info, warn};

use super::Context;
use super::group::{
    self, APPLIED, Due, FAILED, INTERRUPTED, LAG_OBJECTIVE_MET, TOP_MEMBERS, WAITING, reset_outcome,
};
use crate::api::conditions::{self, types};
use crate::api::{
    Condition, ConditionStatus, ConsumerGroup, ConsumerGroupStatus, GroupMember, InitialPosition,
    OffsetResetOutcome, PulsarCluster, ResetTarget, SubscriptionPartition, SubscriptionStatus,
};
use crate::pulsar::admin::TopicName;
use crate::pulsar::stats::{TopicStats, partition_index};
use crate::pulsar::{PulsarAdmin, PulsarError};
use crate::{Error, Result};

/// Condition type: whether the subscription delivers in order (by its type).
pub const ORDERED_DELIVERY: &str = "OrderedDelivery";
/// Partitions listed in `status.subscription.partitions`.
pub const TOP_PARTITIONS: usize = 20;

/// What the broker reports of a subscription, over the partitions of the group's topics.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Observed {
    /// The type its consumers chose; `None` while none is connected.
    pub type_: Option<String>,
    pub backlog: i64,
    pub unacked: i64,
    /// Every partition holding the subscription, the largest backlog first.
    pub partitions: Vec<SubscriptionPartition>,
    /// Distinct consumers (one consumer of a partitioned topic is on each partition).
    pub consumers: Vec<GroupMember>,
    /// When the acknowledged position last moved, per partition (ms since the epoch).
    pub acked_at: BTreeMap<(String, i32), i64>,
}

/// Sums the subscription `name` over the stats of each topic (topic → partition → stats).
/// Partitions the subscription is missing on are returned apart.
pub fn observe(
    name: &str,
    topics: &BTreeMap<String, BTreeMap<String, TopicStats>>,
) -> (Observed, Vec<String>) {
    let mut observed = Observed::default();
    let mut missing = Vec::new();
    let mut consumers = BTreeSet::new();
    for partitions in topics.values() {
        for (partition, stats) in partitions {
            let Some(sub) = stats.subscriptions.get(name) else {
                missing.push(partition.clone());
                continue;
            };
            observed.backlog += sub.msg_backlog;
            observed.unacked += sub.unacked_messages;
            if !sub.consumers.is_empty() && observed.type_.is_none() {
                observed.type_.clone_from(&sub.type_);
            }
            for c in &sub.consumers {
                consumers.insert((
                    c.consumer_name.clone().unwrap_or_default(),
                    c.address.clone().unwrap_or_default(),
                ));
            }
            observed.partitions.push(SubscriptionPartition {
                partition: partition.clone(),
                backlog: sub.msg_backlog,
                unacked: sub.unacked_messages,
                consumers: i32::try_from(sub.consumers.len()).unwrap_or(i32::MAX),
            });
            let topic = partition
                .rsplit_once("-partition-")
                .map_or(partition.as_str(), |(t, _)| t);
            observed.acked_at.insert(
                (topic.to_string(), partition_index(partition).unwrap_or(0)),
                sub.last_mark_delete_advanced_timestamp,
            );
        }
    }
    observed.partitions.sort_by(|a, b| {
        b.backlog
            .cmp(&a.backlog)
            .then(a.partition.cmp(&b.partition))
    });
    observed.consumers = consumers
        .into_iter()
        .map(|(client_id, host)| GroupMember { client_id, host })
        .collect();
    (observed, missing)
}

/// Where a reconcile of a ConsumerGroup on Pulsar ended up.
#[derive(Debug)]
pub enum Outcome {
    /// The subscription exists on every partition; what the broker reports of it.
    Observed(Observed),
    /// `spec.clusterRef` names no PulsarCluster.
    ClusterNotFound { cluster: String },
    /// A Topic of `spec.topics` is not Ready on this PulsarCluster (or does not exist).
    TopicsNotReady(Vec<String>),
    /// The admin API failed; retried.
    Retrying(PulsarError),
}

/// Whether a subscription type keeps order, as the `OrderedDelivery` condition says it.
fn ordering(type_: Option<&str>) -> (ConditionStatus, &'static str, String) {
    match type_ {
        None => (
            ConditionStatus::Unknown,
            "NoConsumers",
            "no consumer is connected: the type is the consumers' choice".into(),
        ),
        Some(t @ ("Exclusive" | "Failover")) => (
            ConditionStatus::True,
            "PerPartitionOrder",
            format!("{t}: one consumer at a time on each partition, in order"),
        ),
        Some("Key_Shared") => (
            ConditionStatus::True,
            "PerKeyOrder",
            "Key_Shared: each key goes to one consumer, in order per key".into(),
        ),
        Some("Shared") => (
            ConditionStatus::False,
            "SharedSubscription",
            "Shared: each message goes to any consumer and a redelivery may reach another one, so neither partition nor key order holds; use Failover or Key_Shared where order matters".into(),
        ),
        Some(other) => (
            ConditionStatus::Unknown,
            "UnknownType",
            format!("subscription type {other} is unknown to the operator"),
        ),
    }
}

/// The status `outcome` means, merged into the group's current status.
pub fn status(
    group: &ConsumerGroup,
    outcome: &Outcome,
    last_commit_seen: Option<String>,
    since_last_commit: Option<std::time::Duration>,
) -> ConsumerGroupStatus {
    use ConditionStatus::{False, True};
    let generation = group.meta().generation;
    let mut status = group.status.clone().unwrap_or_default();
    let cond = |type_: &str, s: ConditionStatus, reason: &str, message: String| {
        Condition::new(type_, s, reason, message, generation)
    };
    let waiting = |reason: &str, message: String, why: &str| {
        vec![
            cond(types::READY, False, reason, message),
            cond(types::RECONCILING, True, why, String::new()),
            cond(types::STALLED, False, why, String::new()),
        ]
    };
    let name = group::group_id(group);
    let desired = match outcome {
        Outcome::Observed(observed) => {
            let mut desired = vec![
                cond(
                    types::READY,
                    True,
                    "SubscriptionObserved",
                    format!(
                        "subscription {name} on {} partition(s): backlog {}, {} unacked, {} consumer(s){}",
                        observed.partitions.len(),
                        observed.backlog,
                        observed.unacked,
                        observed.consumers.len(),
                        observed
                            .type_
                            .as_deref()
                            .map(|t| format!(", type {t}"))
                            .unwrap_or_default()
                    ),
                ),
                cond(types::RECONCILING, False, "Observed", String::new()),
                cond(types::STALLED, False, "Observed", String::new()),
            ];
            let (ordered, reason, message) = ordering(observed.type_.as_deref());
            desired.push(cond(ORDERED_DELIVERY, ordered, reason, message));
            if let Some((met, message)) =
                group::objective_met(group, observed.backlog, since_last_commit)
            {
                desired.push(if met {
                    cond(LAG_OBJECTIVE_MET, True, "WithinObjective", message)
                } else {
                    cond(LAG_OBJECTIVE_MET, False, "ObjectiveMissed", message)
                });
            }
            status.state = Some(if observed.consumers.is_empty() {
                "Idle".into()
            } else {
                "Active".into()
            });
            status.member_count = Some(i32::try_from(observed.consumers.len()).unwrap_or(i32::MAX));
            status.members = observed
                .consumers
                .iter()
                .take(TOP_MEMBERS)
                .cloned()
                .collect();
            status.total_lag = Some(observed.backlog);
            status.partitions = Vec::new();
            status.partitions_omitted = None;
            let omitted = observed.partitions.len().saturating_sub(TOP_PARTITIONS);
            status.subscription = Some(SubscriptionStatus {
                name: name.clone(),
                type_: observed.type_.clone(),
                backlog: observed.backlog,
                unacked: observed.unacked,
                partition_count: i32::try_from(observed.partitions.len()).unwrap_or(i32::MAX),
                partitions: observed
                    .partitions
                    .iter()
                    .take(TOP_PARTITIONS)
                    .cloned()
                    .collect(),
                partitions_omitted: (omitted > 0)
                    .then(|| i32::try_from(omitted).unwrap_or(i32::MAX)),
            });
            if last_commit_seen.is_some() {
                status.last_commit_seen = last_commit_seen;
            }
            desired
        }
        Outcome::ClusterNotFound { cluster } => waiting(
            "ClusterNotFound",
            format!(
                "PulsarCluster '{cluster}' does not exist in this namespace: create it, or correct spec.clusterRef.name"
            ),
            "WaitingForCluster",
        ),
        Outcome::TopicsNotReady(topics) => waiting(
            "TopicsNotReady",
            format!(
                "Topic(s) {} are not Ready on this PulsarCluster yet (or not on it: a ConsumerGroup's Topics must live on its cluster); the subscription is created once they are",
                topics.join(", ")
            ),
            "WaitingForTopics",
        ),
        Outcome::Retrying(error) => waiting(
            error.reason(),
            format!("{error}; retrying"),
            "RetryingPulsar",
        ),
    };
    status.conditions = conditions::merge(&status.conditions, desired);
    if group.spec.lag_objective.is_none() {
        status.conditions.retain(|c| c.type_ != LAG_OBJECTIVE_MET);
    }
    status.observed_generation = generation;
    status
}

/// Reads the subscription on every partition of `topics`, creating it where it is missing.
/// `Ok(Err(names))` when a topic does not exist on the broker.
async fn observe_creating(
    ctx: &Context,
    group: &ConsumerGroup,
    admin: &PulsarAdmin,
    name: &str,
    topics: &[String],
) -> std::result::Result<std::result::Result<Observed, Vec<String>>, PulsarError> {
    let earliest = group
        .spec
        .pulsar
        .as_ref()
        .is_none_or(|p| p.initial_position == InitialPosition::Earliest);
    let mut all = BTreeMap::new();
    let mut absent = Vec::new();
    for topic in topics {
        let Some(parsed) = TopicName::parse(topic) else {
            absent.push(topic.clone());
            continue;
        };
        let Some(mut partitions) = admin.partition_stats(&parsed).await? else {
            absent.push(topic.clone());
            continue;
        };
        let missing: Vec<&String> = partitions
            .iter()
            .filter(|(_, stats)| !stats.subscriptions.contains_key(name))
            .map(|(p, _)| p)
            .collect();
        if !missing.is_empty() || partitions.is_empty() {
            // On the partitioned topic when it has none (the broker creates it on every
            // partition), else on each partition that lacks it.
            let targets: Vec<TopicName> = if missing.len() == partitions.len() {
                vec![parsed.clone()]
            } else {
                missing.iter().filter_map(|p| TopicName::parse(p)).collect()
            };
            let mut created = 0;
            for target in &targets {
                if admin.create_subscription(target, name, earliest).await? {
                    created += 1;
                }
            }
            if created > 0 {
                let message = format!(
                    "created subscription {name} on {topic} ({} partition(s) lacked it) at the {} message",
                    missing.len().max(1),
                    if earliest { "oldest" } else { "newest" }
                );
                info!(subscription = name, %topic, "{message}");
                super::publish_event(
                    ctx,
                    group,
                    EventType::Normal,
                    "SubscriptionCreated",
                    "CreateSubscription",
                    message,
                )
                .await;
            }
            partitions = admin.partition_stats(&parsed).await?.unwrap_or_default();
        }
        all.insert(topic.clone(), partitions);
    }
    if !absent.is_empty() {
        return Ok(Err(absent));
    }
    // Partitions still without it (created a moment ago and not in the stats yet) show on
    // the next refresh.
    Ok(Ok(observe(name, &all).0))
}

/// Runs the spec's offset reset as a cursor reset if it is due; returns its outcome, or `None`
/// when there is nothing to do.
async fn cursor_reset(
    ctx: &Context,
    group: &ConsumerGroup,
    admin: &PulsarAdmin,
    name: &str,
    topics: &[String],
    observed: &Observed,
) -> Option<OffsetResetOutcome> {
    let (request, previous, memory_key) = match group::reset_due(group, ctx) {
        Due::Nothing => return None,
        Due::Remembered(outcome) => return Some(outcome),
        // Pulsar keeps no mark of a cursor reset: whether it ran cannot be told.
        Due::Unsettled(applying) => {
            return Some(reset_outcome(
                &applying.id,
                INTERRUPTED,
                "the operator stopped while resetting the cursor, and Pulsar keeps no mark of a reset: it may or may not have run. It is not retried (a reset runs at most once): check the subscription's backlog and set a new spec.offsetReset.id to run it".into(),
            ));
        }
        Due::Run {
            request,
            previous,
            memory_key,
        } => (request, previous, memory_key),
    };
    if !observed.consumers.is_empty() {
        let message = format!(
            "waiting: {} consumer(s) connected to subscription {name} ({}); stop them and the reset runs once none is left",
            observed.consumers.len(),
            observed
                .consumers
                .iter()
                .take(3)
                .map(|c| c.client_id.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
        if let Some(p) = previous
            && p.id == request.id
            && p.result == WAITING
            && p.message == message
        {
            return Some(p.clone());
        }
        return Some(reset_outcome(&request.id, WAITING, message));
    }
    let at = match request.to {
        ResetTarget::Earliest => Some(0),
        ResetTarget::Latest => None,
        ResetTarget::Timestamp => {
            let text = request.timestamp.as_deref().unwrap_or_default();
            match text.parse::<Timestamp>() {
                Ok(at) => Some(at.as_millisecond()),
                Err(e) => {
                    return Some(reset_outcome(
                        &request.id,
                        FAILED,
                        format!(
                            "timestamp '{text}' is not RFC 3339 ({e}); correct spec.offsetReset.timestamp and change its id"
                        ),
                    ));
                }
            }
        }
        ResetTarget::Offset => {
            return Some(reset_outcome(
                &request.id,
                FAILED,
                "to: Offset does not apply on Pulsar (positions are message ids): use Earliest, Latest or Timestamp with a new id".into(),
            ));
        }
    };
    let what = match (request.to, at) {
        (ResetTarget::Latest, _) => format!("subscription {name} to the end (backlog skipped)"),
        (ResetTarget::Earliest, _) => format!("subscription {name} to the oldest message"),
        _ => format!(
            "subscription {name} to the first message at or after {}",
            request.timestamp.as_deref().unwrap_or_default()
        ),
    };
    // Recorded before the reset: an operator that stops from here on finds `Applying` and
    // reports it interrupted instead of resetting a second time.
    // Recorded before the reset: an operator that stops from here on finds `Applying` and
    // reports it interrupted instead of resetting a second time.
    let applying = format!("resetting {what} on {} topic(s)", topics.len());
    if !group::record_applying(ctx, group, &request.id, applying).await {
        return previous.cloned();
    }
    let mut done = Vec::new();
    for topic in topics {
        let result = match TopicName::parse(topic) {
            None => Err(PulsarError::ClientConfig(format!(
                "'{topic}' is not a topic name"
            ))),
            Some(parsed) => match at {
                Some(millis) => admin.reset_cursor_to_time(&parsed, name, millis).await,
                None => admin.skip_all(&parsed, name).await,
            },
        };
        if let Err(e) = result {
            let message = if done.is_empty() {
                format!("{e}")
            } else {
                format!(
                    "{e}; already reset on {} (a reset runs at most once: set a new id to run it again)",
                    done.join(", ")
                )
            };
            return Some(reset_outcome(&request.id, FAILED, message));
        }
        done.push(topic.clone());
    }
    let message = format!("reset {what} on {}", done.join(", "));
    info!(subscription = name, id = %request.id, "{message}");
    super::publish_event(
        ctx,
        group,
        EventType::Normal,
        "OffsetReset",
        "ResetCursor",
        message.clone(),
    )
    .await;
    let applied = reset_outcome(&request.id, APPLIED, message);
    group::remember(ctx, memory_key, &applied);
    Some(applied)
}

/// Observes (and creates) the subscription, then runs a due cursor reset and observes again
/// after one ran.
async fn observe_and_reset(
    ctx: &Context,
    group: &ConsumerGroup,
    cluster: &PulsarCluster,
    name: &str,
    topics: &[String],
) -> (Outcome, Option<OffsetResetOutcome>) {
    let admin = match super::pulsar_cluster::admin_of(ctx, cluster).await {
        Ok(admin) => admin,
        Err(e) => return (Outcome::Retrying(e), None),
    };
    let observed = match observe_creating(ctx, group, &admin, name, topics).await {
        Ok(Ok(observed)) => observed,
        Ok(Err(absent)) => return (Outcome::TopicsNotReady(absent), None),
        Err(e) => return (Outcome::Retrying(e), None),
    };
    let reset = cursor_reset(ctx, group, &admin, name, topics, &observed).await;
    if reset.as_ref().is_some_and(|r| r.result == APPLIED) {
        // The backlog moved: report it now rather than a refresh later.
        if let Ok(Ok(after)) = observe_creating(ctx, group, &admin, name, topics).await {
            return (Outcome::Observed(after), reset);
        }
    }
    (Outcome::Observed(observed), reset)
}

/// Reconciles a ConsumerGroup whose `clusterRef` names a PulsarCluster.
pub async fn reconcile(group: Arc<ConsumerGroup>, ctx: Arc<Context>) -> Result<Action> {
    let namespace = group
        .namespace()
        .ok_or(Error::MissingObjectKey("metadata.namespace"))?;
    let name = group.name_any();
    let subscription = group::group_id(&group);
    let cluster_name = &group.spec.cluster_ref.name;
    let (outcome, reset) = match super::pulsar_cluster::find(&ctx, &namespace, cluster_name) {
        None => (
            Outcome::ClusterNotFound {
                cluster: cluster_name.clone(),
            },
            None,
        ),
        Some(cluster) => match super::pulsar_cluster::ready_topics(
            &ctx,
            &namespace,
            cluster_name,
            &group.spec.topics,
        ) {
            Err(missing) => (Outcome::TopicsNotReady(missing), None),
            Ok(topics) => observe_and_reset(&ctx, &group, &cluster, &subscription, &topics).await,
        },
    };
    let (last_commit_seen, since) = match &outcome {
        Outcome::Observed(observed) => ctx.commit_clock.observe(
            &format!("pulsar:{namespace}/{name}"),
            &observed.acked_at,
            group
                .status
                .as_ref()
                .and_then(|s| s.last_commit_seen.as_deref()),
        ),
        _ => (None, None),
    };
    let mut status = status(&group, &outcome, last_commit_seen, since);
    if let Some(reset) = reset {
        status.last_offset_reset = Some(reset);
    }
    if let Outcome::Observed(observed) = &outcome
        && super::still_watched(&ctx.groups, group.as_ref())
    {
        let labels =
            ctx.metrics
                .series_of(crate::metrics::kinds::CONSUMER_GROUP, &namespace, &name);
        ctx.metrics
            .group_lag
            .get_or_create(&labels)
            .set(observed.backlog);
        ctx.metrics
            .group_members
            .get_or_create(&labels)
            .set(i64::try_from(observed.consumers.len()).unwrap_or(i64::MAX));
        ctx.metrics.set_group_partition_lags(
            &namespace,
            &name,
            observed.partitions.iter().map(|p| {
                let topic = p
                    .partition
                    .rsplit_once("-partition-")
                    .map_or(p.partition.as_str(), |(t, _)| t);
                (
                    topic.to_string(),
                    partition_index(&p.partition).unwrap_or(0),
                    p.backlog,
                )
            }),
        );
    }
    super::write_status(&ctx, group.as_ref(), &status).await?;
    if let Outcome::Retrying(e) = &outcome {
        warn!(group = %name, %namespace, error = %e, "Pulsar subscription not observed");
    }
    Ok(Action::requeue(match outcome {
        Outcome::Observed(_) => ctx.refresh_interval,
        _ => super::RETRY,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pulsar::stats::{ConsumerStats, SubscriptionStats};

    fn group() -> ConsumerGroup {
        let mut g: ConsumerGroup = serde_json::from_value(serde_json::json!({
            "apiVersion": "exactly.dev/v1alpha1",
            "kind": "ConsumerGroup",
            "metadata": {"name": "billing", "namespace": "shop", "generation": 1},
            "spec": {
                "clusterRef": {"kind": "PulsarCluster", "name": "pulsar"},
                "topics": [{"name": "orders"}],
            },
        }))
        .unwrap_or_else(|e| panic!("{e}"));
        g.metadata.generation = Some(1);
        g
    }

    fn partition(backlog: i64, unacked: i64, consumers: &[(&str, &str)]) -> TopicStats {
        TopicStats {
            subscriptions: BTreeMap::from([(
                "billing".to_string(),
                SubscriptionStats {
                    msg_backlog: backlog,
                    unacked_messages: unacked,
                    type_: Some("Failover".into()),
                    consumers: consumers
                        .iter()
                        .map(|(n, a)| ConsumerStats {
                            consumer_name: Some(n.to_string()),
                            address: Some(a.to_string()),
                            unacked_messages: 0,
                        })
                        .collect(),
                    last_mark_delete_advanced_timestamp: 0,
                },
            )]),
            ..TopicStats::default()
        }
    }

    fn topic(parts: Vec<TopicStats>) -> BTreeMap<String, BTreeMap<String, TopicStats>> {
        BTreeMap::from([(
            "persistent://shop/sales/orders".to_string(),
            parts
                .into_iter()
                .enumerate()
                .map(|(n, s)| (format!("persistent://shop/sales/orders-partition-{n}"), s))
                .collect(),
        )])
    }

    #[test]
    fn backlog_and_unacked_are_summed_over_partitions_and_a_consumer_counts_once() {
        let c = [("c1", "/10.0.0.7:4000")];
        let (o, missing) = observe(
            "billing",
            &topic(vec![
                partition(3, 1, &c),
                partition(9, 0, &c),
                TopicStats::default(),
            ]),
        );
        assert_eq!((o.backlog, o.unacked), (12, 1));
        assert_eq!(o.consumers.len(), 1);
        assert_eq!(o.type_.as_deref(), Some("Failover"));
        assert_eq!(
            o.partitions[0].partition,
            "persistent://shop/sales/orders-partition-1"
        );
        assert_eq!(missing, ["persistent://shop/sales/orders-partition-2"]);
    }

    #[test]
    fn without_consumers_the_type_is_not_reported() {
        let (o, _) = observe("billing", &topic(vec![partition(3, 0, &[])]));
        assert_eq!(o.type_, None);
        let s = status(&group(), &Outcome::Observed(o), None, None);
        assert_eq!(s.state.as_deref(), Some("Idle"));
        let ordered = conditions::find(&s.conditions, ORDERED_DELIVERY)
            .unwrap_or_else(|| panic!("no {ORDERED_DELIVERY}"));
        assert_eq!(ordered.status, ConditionStatus::Unknown);
    }

    #[test]
    fn a_shared_subscription_is_reported_unordered() {
        let observed = Observed {
            type_: Some("Shared".into()),
            consumers: vec![GroupMember {
                client_id: "c".into(),
                host: "/h:1".into(),
            }],
            ..Observed::default()
        };
        let s = status(&group(), &Outcome::Observed(observed), None, None);
        let ordered = conditions::find(&s.conditions, ORDERED_DELIVERY)
            .unwrap_or_else(|| panic!("no {ORDERED_DELIVERY}"));
        assert_eq!(
            (ordered.status, ordered.reason.as_str()),
            (ConditionStatus::False, "SharedSubscription")
        );
        for t in ["Exclusive", "Failover", "Key_Shared"] {
            assert_eq!(ordering(Some(t)).0, ConditionStatus::True, "{t}");
        }
    }

    #[test]
    fn the_status_lists_the_backlog_as_lag_and_is_quiet_when_repeated() {
        let (o, _) = observe(
            "billing",
            &topic(vec![
                partition(4, 2, &[("c1", "/h:1")]),
                partition(6, 0, &[]),
            ]),
        );
        let outcome = Outcome::Observed(o);
        let first = status(&group(), &outcome, None, None);
        assert_eq!(first.total_lag, Some(10));
        assert_eq!(first.member_count, Some(1));
        let sub = first
            .subscription
            .clone()
            .unwrap_or_else(|| panic!("no subscription"));
        assert_eq!((sub.backlog, sub.unacked, sub.partition_count), (10, 2, 2));
        let ready =
            conditions::find(&first.conditions, types::READY).unwrap_or_else(|| panic!("no Ready"));
        assert_eq!(ready.status, ConditionStatus::True);
        let mut again = group();
        again.status = Some(first.clone());
        assert_eq!(status(&again, &outcome, None, None), first);
    }

    #[test]
    fn topics_not_ready_say_which_and_keep_the_last_figures() {
        let mut g = group();
        g.status = Some(ConsumerGroupStatus {
            total_lag: Some(5),
            ..ConsumerGroupStatus::default()
        });
        let s = status(
            &g,
            &Outcome::TopicsNotReady(vec!["orders".into()]),
            None,
            None,
        );
        let ready =
            conditions::find(&s.conditions, types::READY).unwrap_or_else(|| panic!("no Ready"));
        assert_eq!(ready.reason, "TopicsNotReady");
        assert!(ready.message.contains("orders"));
        assert_eq!(s.total_lag, Some(5));
    }
}
