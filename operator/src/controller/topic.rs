//! Reconciles `Topic`: makes the Kafka topic exist as declared and reports it in status.
//!
//! Planning ([`plan_topic_change`]) and status ([`topic_status`]) are pure functions; the
//! reconciler around them does the I/O.

use std::sync::Arc;
use std::time::Duration;

use kube::api::Api;
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};
use tracing::{debug, info, warn};

use super::Context;
use crate::api::conditions::{self, types};
use crate::api::{Condition, ConditionStatus, KafkaCluster, Topic, TopicStatus};
use crate::kafka::{CreateOutcome, KafkaError, NewTopicRequest, TopicDescription};
use crate::{Error, Result};

/// How often an in-sync topic is looked at again (the broker can change behind our back).
const RESYNC: Duration = Duration::from_secs(300);
/// Retry interval while the cluster is unreachable or missing.
const RETRY: Duration = Duration::from_secs(15);

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
            name: topic.kafka_topic_name(),
            partitions: spec.partitions,
            replication_factor: spec.replication_factor,
            config: spec.config.clone(),
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

/// Where a reconcile ended up; [`topic_status`] turns it into conditions.
#[derive(Debug)]
pub enum TopicOutcome {
    /// The topic exists as declared.
    InSync(TopicDescription),
    /// `spec.clusterRef` names no KafkaCluster.
    ClusterNotFound { cluster: String },
    /// The brokers did not answer, or not yet as expected; we retry.
    Retrying(KafkaError),
    /// The broker refused what the spec asks (bad config, replication above broker count...).
    Refused(KafkaError),
    /// The spec asks for something Kafka cannot do; the topic is left as it is.
    NotSupported {
        observed: TopicDescription,
        message: String,
    },
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
    let (ready, reconciling, stalled) = match outcome {
        TopicOutcome::InSync(observed) => {
            let message = format!(
                "topic '{}' exists with {} partitions and replication factor {}",
                observed.name, observed.partitions, observed.replication_factor
            );
            (
                cond(types::READY, True, "TopicReady", message),
                cond(types::RECONCILING, False, "Reconciled", String::new()),
                cond(types::STALLED, False, "Reconciled", String::new()),
            )
        }
        TopicOutcome::ClusterNotFound { cluster } => (
            cond(
                types::READY,
                False,
                "ClusterNotFound",
                format!(
                    "KafkaCluster '{cluster}' does not exist in this namespace: create it, or correct spec.clusterRef.name"
                ),
            ),
            cond(types::RECONCILING, True, "WaitingForCluster", String::new()),
            cond(types::STALLED, False, "WaitingForCluster", String::new()),
        ),
        TopicOutcome::Retrying(error) => (
            cond(
                types::READY,
                False,
                error.reason(),
                format!("{error}; retrying"),
            ),
            cond(types::RECONCILING, True, "RetryingKafka", String::new()),
            cond(types::STALLED, False, "RetryingKafka", String::new()),
        ),
        TopicOutcome::Refused(error) => {
            let message = format!("{error}: correct the Topic's spec");
            (
                cond(types::READY, False, "TopicRefused", message.clone()),
                cond(types::RECONCILING, False, "TopicRefused", String::new()),
                cond(types::STALLED, True, "TopicRefused", message),
            )
        }
        TopicOutcome::NotSupported { message, .. } => (
            cond(types::READY, False, "NotSupported", message.clone()),
            cond(types::RECONCILING, False, "NotSupported", String::new()),
            cond(types::STALLED, True, "NotSupported", message.clone()),
        ),
    };
    status.conditions = conditions::merge(&status.conditions, vec![ready, reconciling, stalled]);
    status.observed_generation = generation;
    if let TopicOutcome::InSync(observed) | TopicOutcome::NotSupported { observed, .. } = outcome {
        status.topic_name = Some(observed.name.clone());
        status.partitions = Some(observed.partitions);
        status.replication_factor = Some(observed.replication_factor);
    }
    status
}

/// Brings the broker's topic in line with the spec, as far as Kafka allows.
async fn converge(topic: &Topic, namespace: &str, ctx: &Context) -> TopicOutcome {
    let cluster_name = &topic.spec.cluster_ref.name;
    let clusters: Api<KafkaCluster> = Api::namespaced(ctx.client.clone(), namespace);
    let cluster = match clusters.get_opt(cluster_name).await {
        Ok(Some(cluster)) => cluster,
        Ok(None) => {
            return TopicOutcome::ClusterNotFound {
                cluster: cluster_name.clone(),
            };
        }
        Err(e) => {
            // The API server is what failed here, not Kafka; report it as a retryable wait.
            return TopicOutcome::Retrying(KafkaError::Interrupted(format!(
                "reading KafkaCluster '{cluster_name}': {e}"
            )));
        }
    };
    let admin = match ctx.kafka.admin(&cluster.spec.external.bootstrap_servers) {
        Ok(admin) => admin,
        Err(e) => return TopicOutcome::Refused(e),
    };
    let name = topic.kafka_topic_name();

    let observed = match admin.describe_topic(&name).await {
        Ok(observed) => observed,
        Err(e @ KafkaError::Refused { .. }) => return TopicOutcome::Refused(e),
        Err(e) => return TopicOutcome::Retrying(e),
    };
    let result = match plan_topic_change(topic, observed.as_ref()) {
        TopicChange::None => Ok(()),
        TopicChange::Create(request) => match admin.create_topic(&request).await {
            Ok(CreateOutcome::Created) => {
                info!(topic = %name, partitions = request.partitions, "created topic");
                Ok(())
            }
            Ok(CreateOutcome::AlreadyExists) => {
                info!(topic = %name, "topic already exists; adopting it");
                Ok(())
            }
            Err(e) => Err(e),
        },
        TopicChange::GrowPartitions { from, to } => {
            let grown = admin.grow_partitions(&name, to).await;
            if grown.is_ok() {
                info!(topic = %name, from, to, "added partitions");
            }
            grown
        }
        TopicChange::PartitionDecrease { have, want } => {
            if let Some(observed) = observed {
                return TopicOutcome::NotSupported {
                    observed,
                    message: format!(
                        "spec.partitions is {want} but the topic has {have}: Kafka cannot remove partitions. \
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
        return match e {
            KafkaError::Refused { .. } => TopicOutcome::Refused(e),
            other => TopicOutcome::Retrying(other),
        };
    }
    // Metadata can lag a moment behind a create or a partition change: look again briefly
    // rather than report a transient failure.
    let want = topic.spec.partitions;
    let mut attempts = 0;
    loop {
        attempts += 1;
        match admin.describe_topic(&name).await {
            Ok(Some(observed)) if observed.partitions >= want => {
                return TopicOutcome::InSync(observed);
            }
            Ok(Some(observed)) if attempts >= 10 => {
                return TopicOutcome::Retrying(KafkaError::Interrupted(format!(
                    "topic '{name}' shows {} partitions of {want} in the cluster metadata",
                    observed.partitions
                )));
            }
            Ok(None) if attempts >= 10 => {
                return TopicOutcome::Retrying(KafkaError::Interrupted(format!(
                    "topic '{name}' not yet visible in the cluster metadata"
                )));
            }
            Ok(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            Err(e) => return TopicOutcome::Retrying(e),
        }
    }
}

/// Reconciles one Topic.
pub async fn reconcile(topic: Arc<Topic>, ctx: Arc<Context>) -> Result<Action> {
    let namespace = topic
        .namespace()
        .ok_or(Error::MissingObjectKey("metadata.namespace"))?;
    let name = topic.name_any();
    let outcome = converge(&topic, &namespace, &ctx).await;
    let requeue = match &outcome {
        TopicOutcome::InSync(_) | TopicOutcome::NotSupported { .. } | TopicOutcome::Refused(_) => {
            RESYNC
        }
        TopicOutcome::ClusterNotFound { .. } | TopicOutcome::Retrying(_) => RETRY,
    };
    let status = topic_status(topic.meta().generation, topic.status.as_ref(), &outcome);
    if super::apply_status(&ctx.client, topic.as_ref(), topic.status.as_ref(), &status).await? {
        debug!(topic = %name, ?outcome, "status updated");
    }
    if let TopicOutcome::Retrying(e) | TopicOutcome::Refused(e) = &outcome {
        warn!(topic = %name, namespace = %namespace, error = %e, "topic not reconciled");
    }
    Ok(Action::requeue(requeue))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{ClusterRef, TopicSpec};
    use std::collections::BTreeMap;

    fn topic(partitions: i32, replication: Option<i32>) -> Topic {
        let mut topic = Topic::new(
            "orders",
            TopicSpec {
                cluster_ref: ClusterRef {
                    name: "main".into(),
                },
                topic_name: None,
                partitions,
                replication_factor: replication,
                config: BTreeMap::from([("retention.ms".into(), "1000".into())]),
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
        }
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
        let status = topic_status(Some(3), None, &TopicOutcome::InSync(observed(6, 1)));
        let ready = conditions::find(&status.conditions, types::READY).cloned();
        let ready = ready.unwrap_or_else(|| panic!("no Ready condition in {status:?}"));
        assert_eq!(ready.status, ConditionStatus::True);
        assert_eq!(ready.observed_generation, Some(3));
        assert_eq!(status.observed_generation, Some(3));
        assert_eq!(status.partitions, Some(6));
        assert_eq!(status.replication_factor, Some(1));
    }

    #[test]
    fn missing_cluster_names_it_and_says_what_to_do() {
        let status = topic_status(
            Some(1),
            None,
            &TopicOutcome::ClusterNotFound {
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
        let outcome = TopicOutcome::InSync(observed(6, 1));
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
}
