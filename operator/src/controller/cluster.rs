//! Reconciles `KafkaCluster` (external mode): checks that the brokers answer and reports the
//! cluster id and broker count.

use std::sync::Arc;
use std::time::Duration;

use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};
use tracing::{info, warn};

use super::Context;
use crate::api::conditions::{self, types};
use crate::api::{Condition, ConditionStatus, KafkaCluster, KafkaClusterStatus};
use crate::kafka::{ClusterDescription, KafkaError};
use crate::{Error, Result};

/// How often a reachable cluster is checked again.
const RESYNC: Duration = Duration::from_secs(60);
/// Retry interval while the brokers do not answer.
const RETRY: Duration = Duration::from_secs(15);

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
            vec![
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
        Err(error) => vec![
            cond(
                types::READY,
                False,
                error.reason(),
                format!(
                    "{error}; check spec.external.bootstrapServers and that the brokers are up. Retrying"
                ),
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
pub async fn reconcile(cluster: Arc<KafkaCluster>, ctx: Arc<Context>) -> Result<Action> {
    let namespace = cluster
        .namespace()
        .ok_or(Error::MissingObjectKey("metadata.namespace"))?;
    let name = cluster.name_any();
    let described = match ctx.kafka.admin(&cluster.spec.external.bootstrap_servers) {
        Ok(admin) => admin.describe_cluster().await,
        Err(e) => Err(e),
    };
    let status = cluster_status(
        cluster.meta().generation,
        cluster.status.as_ref(),
        &described,
    );
    if super::apply_status(
        &ctx.client,
        cluster.as_ref(),
        cluster.status.as_ref(),
        &status,
    )
    .await?
    {
        match &described {
            Ok(c) => info!(cluster = %name, brokers = c.brokers, "cluster reachable"),
            Err(e) => {
                warn!(cluster = %name, namespace = %namespace, error = %e, "cluster unreachable")
            }
        }
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
        });
        let first = cluster_status(Some(1), None, &described);
        assert_eq!(cluster_status(Some(1), Some(&first), &described), first);
    }
}
