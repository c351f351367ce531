//! Reconciles `KafkaCluster` (external mode): checks that the brokers answer, reports the
//! cluster id, broker count and the settings exactly-once depends on, and judges them
//! ([`super::eos`]) into the `ExactlyOnceReady` condition.

use std::sync::Arc;
use std::time::Duration;

use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};
use tracing::{info, warn};

use super::Context;
use super::eos;
use crate::api::conditions::{self, types};
use crate::api::{Condition, ConditionStatus, KafkaCluster, KafkaClusterStatus};
use crate::kafka::{ClusterDescription, KafkaError};

/// Condition type: `True` when the broker settings meet every exactly-once rule.
pub const EXACTLY_ONCE_READY: &str = "ExactlyOnceReady";
use crate::{Error, Result};

/// How often a reachable cluster is checked again.
const RESYNC: Duration = Duration::from_secs(60);
/// Retry interval while the brokers do not answer: short, so a cluster is Ready again within
/// seconds of its brokers' return (one connection attempt per interval, not a storm). A snapshot
/// of the cluster that finds it answering again wakes the check sooner ([`Observer::waking`]).
///
/// [`Observer::waking`]: super::observe::Observer::waking
const RETRY: Duration = Duration::from_secs(5);

/// The status a description (or the failure to get one) means, merged into `previous`.
pub fn cluster_status(
    generation: Option<i64>,
    previous: Option<&KafkaClusterStatus>,
    described: &Result<ClusterDescription, KafkaError>,
) -> KafkaClusterStatus {
    use ConditionStatus::{False, True};
    let mut status = previous.cloned().unwrap_or_default();
    let cond = |type_: &str, s: ConditionStatus, reason: &str, message: String| {
        Condition::new(type_, s, reason, message, generation)
    };
    let desired = match described {
        Ok(cluster) => {
            status.cluster_id = cluster.cluster_id.clone();
            status.brokers = Some(cluster.brokers);
            let settings = eos::settings(&cluster.broker_config, &cluster.features);
            let (exactly_once, failed) =
                eos::judgement(eos::check(cluster.brokers, &settings), generation);
            status.exactly_once = Some(settings);
            status.failed_rules = failed;
            vec![
                exactly_once,
                cond(
                    types::READY,
                    True,
                    "ClusterReachable",
                    format!("{} broker(s) answered", cluster.brokers),
                ),
                cond(types::RECONCILING, False, "Reconciled", String::new()),
                cond(types::STALLED, False, "Reconciled", String::new()),
            ]
        }
        Err(error @ (KafkaError::Unsupported(_) | KafkaError::ClientConfig(_))) => vec![
            cond(types::READY, False, error.reason(), error.to_string()),
            cond(types::RECONCILING, False, error.reason(), String::new()),
            cond(types::STALLED, True, error.reason(), error.to_string()),
        ],
        Err(error) => vec![
            cond(
                types::READY,
                False,
                error.reason(),
                match error {
                    KafkaError::Refused { .. } => format!(
                        "{error}; check the credentials in spec.external.secretRef's Secret and the \
                         operator's permissions on the cluster. Retrying"
                    ),
                    _ => format!(
                        "{error}; check spec.external.bootstrapServers and that the brokers are up. Retrying"
                    ),
                },
            ),
            cond(types::RECONCILING, True, "RetryingKafka", String::new()),
            cond(types::STALLED, False, "RetryingKafka", String::new()),
        ],
    };
    status.conditions = conditions::merge(&status.conditions, desired);
    status.observed_generation = generation;
    status
}

/// Reconciles one KafkaCluster.
#[tracing::instrument(skip_all, fields(kind = "KafkaCluster", namespace = cluster.namespace().unwrap_or_default(), name = %cluster.name_any()))]
pub async fn reconcile(cluster: Arc<KafkaCluster>, ctx: Arc<Context>) -> Result<Action> {
    let namespace = cluster
        .namespace()
        .ok_or(Error::MissingObjectKey("metadata.namespace"))?;
    let name = cluster.name_any();
    if let Some(spec) = cluster.spec.provisioned.clone() {
        return super::provisioned::reconcile(cluster, &spec, ctx).await;
    }
    let described = match super::resolve::load_security(&ctx, &cluster).await {
        Err(e) => Err(e),
        Ok(security) => {
            match ctx
                .kafka
                .admin_with(&cluster.bootstrap_servers(), &security)
            {
                Ok(admin) => admin.describe_cluster().await,
                Err(e) => Err(e),
            }
        }
    };
    // What this check found is what the shared observation compares its own findings with.
    ctx.observer.saw(&cluster.bootstrap_servers(), &described);
    let mut status = cluster_status(
        cluster.meta().generation,
        cluster.status.as_ref(),
        &described,
    );
    status.bootstrap_servers = Some(cluster.bootstrap_servers());
    if super::write_status(&ctx, cluster.as_ref(), &status).await? {
        match &described {
            Ok(c) => info!(cluster = %name, brokers = c.brokers, "cluster reachable"),
            Err(e) => {
                warn!(cluster = %name, namespace = %namespace, error = %e, "cluster unreachable")
            }
        }
    }
    if let Ok(c) = &described
        && super::still_watched(&ctx.clusters, cluster.as_ref())
    {
        let labels = ctx
            .metrics
            .series_of(crate::metrics::kinds::CLUSTER, &namespace, &name);
        ctx.metrics
            .cluster_brokers
            .get_or_create(&labels)
            .set(i64::from(c.brokers));
        ctx.metrics
            .cluster_exactly_once_ready
            .get_or_create(&labels)
            .set(i64::from(status.failed_rules.is_empty()));
    }
    Ok(Action::requeue(if described.is_ok() {
        RESYNC
    } else {
        RETRY
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn ready(status: &KafkaClusterStatus) -> Condition {
        conditions::find(&status.conditions, types::READY)
            .cloned()
            .unwrap_or_else(|| panic!("no Ready condition in {status:?}"))
    }

    #[test]
    fn reachable_cluster_is_ready_with_its_id_and_broker_count() {
        let described = Ok(ClusterDescription {
            cluster_id: Some("abc".into()),
            brokers: 3,
            ..Default::default()
        });
        let status = cluster_status(Some(2), None, &described);
        assert_eq!(ready(&status).status, ConditionStatus::True);
        assert_eq!(ready(&status).observed_generation, Some(2));
        assert_eq!(
            (status.cluster_id.as_deref(), status.brokers),
            (Some("abc"), Some(3))
        );
    }

    #[test]
    fn unreachable_cluster_says_what_to_check_and_keeps_the_last_known_figures() {
        let before = cluster_status(
            Some(1),
            None,
            &Ok(ClusterDescription {
                cluster_id: Some("abc".into()),
                brokers: 3,
                ..Default::default()
            }),
        );
        let failed = Err(KafkaError::Interrupted("timed out".into()));
        let status = cluster_status(Some(1), Some(&before), &failed);
        let ready = ready(&status);
        assert_eq!(ready.status, ConditionStatus::False);
        assert!(
            ready.message.contains("spec.external.bootstrapServers"),
            "{}",
            ready.message
        );
        assert_eq!(status.brokers, Some(3));
    }

    #[test]
    fn a_second_identical_check_changes_nothing() {
        let described = Ok(ClusterDescription {
            cluster_id: Some("abc".into()),
            brokers: 1,
            ..Default::default()
        });
        let first = cluster_status(Some(1), None, &described);
        assert_eq!(cluster_status(Some(1), Some(&first), &described), first);
    }

    #[test]
    fn a_single_broker_is_reachable_but_not_exactly_once_ready_naming_the_rules() {
        let described = Ok(ClusterDescription {
            cluster_id: Some("abc".into()),
            brokers: 1,
            broker_config: BTreeMap::from([
                (
                    "transaction.state.log.replication.factor".into(),
                    "1".into(),
                ),
                ("transaction.state.log.min.isr".into(), "1".into()),
                ("offsets.topic.replication.factor".into(), "3".into()),
                ("min.insync.replicas".into(), "2".into()),
                ("unclean.leader.election.enable".into(), "false".into()),
            ]),
            features: BTreeMap::from([("transaction.version".into(), 2)]),
        });
        let status = cluster_status(Some(1), None, &described);
        assert_eq!(ready(&status).status, ConditionStatus::True);
        let eos = conditions::find(&status.conditions, EXACTLY_ONCE_READY).cloned();
        let eos = eos.unwrap_or_else(|| panic!("no ExactlyOnceReady in {status:?}"));
        assert_eq!(eos.status, ConditionStatus::False);
        assert_eq!(
            status.failed_rules,
            ["Durability", "TransactionLogReplication"]
        );
        assert!(
            eos.message
                .contains("transaction.state.log.replication.factor is 1"),
            "{}",
            eos.message
        );
    }
}
