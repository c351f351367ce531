//! A Producer on a PulsarCluster. Pulsar makes a resend after a restart safe by broker-side
//! deduplication: the broker remembers, per producer name, the highest sequence id it
//! persisted, and drops a message that comes again with one not above it. That holds only if a
//! restarted instance produces under the **same name**, and if the client never gives up on a
//! message on its own (a send timeout fails a message the broker may have persisted; the
//! application's resend then carries a new sequence id and is not recognised). So each instance
//! `n` gets the producer name `<transactionalIdPrefix>-<n>` and `sendTimeoutMs=0`, rendered into
//! the `<name>-client` Secret as the Java client's configuration keys (`instance-<n>.properties`,
//! loadable with `PulsarClient.builder().loadConf` for `serviceUrl` and
//! `newProducer().loadConf` for the rest), with the topics' full names under the key `topics`.
//!
//! Status lists each producer name, the topic partitions the broker sees it connected to, and
//! the highest sequence id the brokers' deduplication snapshots hold for it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::StatefulSet;
use kube::api::Api;
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};
use tracing::warn;

use super::Context;
use super::producer::RESOURCE_CONFLICT;
use super::producer_config::{ConfigViolation, instance_key, syntax_problem};
use crate::api::conditions::{self, types};
use crate::api::{
    Condition, ConditionStatus, Producer, ProducerSpec, ProducerStatus, PulsarProducerState,
};
use crate::pulsar::PulsarError;
use crate::pulsar::admin::TopicName;
use crate::{Error, Result};

/// Keys the operator sets itself, and why.
const MANAGED: [(&str, &str); 3] = [
    ("serviceUrl", "it comes from the PulsarCluster"),
    (
        "producerName",
        "it is <transactionalIdPrefix>-<instance>, stable per instance so the broker's deduplication recognises a resend after a restart",
    ),
    (
        "topicName",
        "the topics come from spec.topics (the Secret's key `topics`)",
    ),
];

/// Checks `clientOverrides` for keys a Pulsar producer must not change. Every violation is
/// listed.
pub fn check_overrides(spec: &ProducerSpec) -> Vec<ConfigViolation> {
    let mut violations = Vec::new();
    for (key, value) in &spec.client_overrides {
        let v = value.trim().to_ascii_lowercase();
        let problem = syntax_problem(key, value).or_else(|| {
            if let Some((_, why)) = MANAGED.iter().find(|(k, _)| k == key) {
                return Some(format!("{key} is set by the operator: {why}"));
            }
            match key.as_str() {
                "sendTimeoutMs" if v != "0" => Some(format!(
                    "sendTimeoutMs={value} lets the client fail a message the broker may have persisted; \
                     a resend then carries a new sequence id and deduplication cannot drop it. \
                     Exactly-once needs 0 (retry until acknowledged). Remove the override"
                )),
                "blockIfQueueFull" if v != "true" => Some(format!(
                    "blockIfQueueFull={value} fails a send when the queue is full instead of waiting; \
                     the application's resend carries a new sequence id. Remove the override"
                )),
                _ => None,
            }
        });
        if let Some(message) = problem {
            violations.push(ConfigViolation {
                key: key.clone(),
                message,
            });
        }
    }
    violations
}

/// The producer name of instance `ordinal`.
pub fn producer_name(prefix: &str, ordinal: i32) -> String {
    format!("{prefix}-{ordinal}")
}

/// Renders one properties file per instance, and the key `topics` (the topics' full names, one
/// per line). Fails with every violation when an override weakens the guarantee.
pub fn render(
    spec: &ProducerSpec,
    instances: i32,
    service_url: &str,
    topics: &[String],
) -> std::result::Result<BTreeMap<String, String>, Vec<ConfigViolation>> {
    let violations = check_overrides(spec);
    if !violations.is_empty() {
        return Err(violations);
    }
    let mut files = BTreeMap::new();
    for ordinal in 0..instances.max(1) {
        let mut props: BTreeMap<String, String> = BTreeMap::from([
            ("serviceUrl".into(), service_url.to_string()),
            (
                "producerName".into(),
                producer_name(&spec.transactional_id_prefix, ordinal),
            ),
            ("sendTimeoutMs".into(), "0".into()),
            ("blockIfQueueFull".into(), "true".into()),
        ]);
        for (key, value) in &spec.client_overrides {
            props.insert(key.clone(), value.clone());
        }
        let mut text = String::from(
            "# Rendered by the exactly operator from the Producer resource. Do not edit.\n",
        );
        for (key, value) in props {
            text.push_str(&format!("{key}={value}\n"));
        }
        files.insert(instance_key(ordinal), text);
    }
    let mut list = topics.join("\n");
    list.push('\n');
    files.insert("topics".into(), list);
    Ok(files)
}

/// Where a reconcile of a Producer on Pulsar ended up.
#[derive(Debug)]
pub enum Outcome {
    /// The Secret is rendered; each producer name with where it is connected.
    Rendered {
        instances: i32,
        names: Vec<PulsarProducerState>,
    },
    /// An override weakens the guarantee.
    Invalid(Vec<ConfigViolation>),
    /// An older Producer holds the same prefix on this cluster: its instances would have the
    /// same producer names.
    Conflict { owner: String },
    /// `spec.clusterRef` names no PulsarCluster.
    ClusterNotFound { cluster: String },
    /// A Topic of `spec.topics` is not on this PulsarCluster (or does not exist yet).
    TopicsNotReady(Vec<String>),
    /// `spec.statefulSetRef` names no StatefulSet.
    WorkloadNotFound { name: String },
    /// The admin API failed; retried.
    Retrying(PulsarError),
}

/// The status `outcome` means, merged into `previous`.
pub fn status(
    generation: Option<i64>,
    previous: Option<&ProducerStatus>,
    secret_name: &str,
    outcome: &Outcome,
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
    let waiting = |reason: &str, message: String, why: &str| {
        vec![
            cond(types::READY, False, reason, message),
            cond(types::RECONCILING, True, why, String::new()),
            cond(types::STALLED, False, why, String::new()),
        ]
    };
    let mut desired = match outcome {
        Outcome::Rendered { instances, names } => {
            status.secret_name = Some(secret_name.to_string());
            status.instances = Some(*instances);
            status.producer_names = names.clone();
            vec![
                cond(
                    types::READY,
                    True,
                    "ConfigRendered",
                    format!(
                        "client configuration for {instances} instance(s) in Secret {secret_name}: \
                         producer names {}, no send timeout, deduplication on the topics",
                        names
                            .iter()
                            .map(|n| n.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ),
                cond(types::RECONCILING, False, "Reconciled", String::new()),
                cond(types::STALLED, False, "Reconciled", String::new()),
            ]
        }
        Outcome::Invalid(violations) => stalled(
            "WeakensGuarantee",
            violations
                .iter()
                .map(|v| format!("{}: {}", v.key, v.message))
                .collect::<Vec<_>>()
                .join("; "),
        ),
        Outcome::Conflict { owner } => {
            let mut c = stalled(
                RESOURCE_CONFLICT,
                format!(
                    "Producer {owner} already holds this transactionalIdPrefix on this Pulsar cluster: their instances \
                     would share producer names, and the broker's deduplication would drop one's messages as the other's \
                     resends. Choose another prefix (it is immutable: create a new Producer)"
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
                "Topic(s) {} are not Ready on this PulsarCluster yet (or not on it: a Producer's Topics must live on its cluster)",
                topics.join(", ")
            ),
            "WaitingForTopics",
        ),
        Outcome::WorkloadNotFound { name } => waiting(
            "WorkloadNotFound",
            format!("StatefulSet '{name}' (spec.statefulSetRef) does not exist in this namespace"),
            "WaitingForWorkload",
        ),
        Outcome::Retrying(error) => waiting(
            error.reason(),
            format!("{error}; retrying"),
            "RetryingPulsar",
        ),
    };
    // Reached only once the prefix was found free: a conflict seen before is over.
    if matches!(
        outcome,
        Outcome::Rendered { .. } | Outcome::Invalid(_) | Outcome::WorkloadNotFound { .. }
    ) {
        desired.push(cond(RESOURCE_CONFLICT, False, "NoConflict", String::new()));
    }
    status.conditions = conditions::merge(&status.conditions, desired);
    status.observed_generation = generation;
    status
}

/// Reconciles a Producer whose `clusterRef` names a PulsarCluster.
pub async fn reconcile(producer: Arc<Producer>, ctx: Arc<Context>) -> Result<Action> {
    let namespace = producer
        .namespace()
        .ok_or(Error::MissingObjectKey("metadata.namespace"))?;
    let name = producer.name_any();
    let secret_name = format!("{name}-client");
    let generation = producer.meta().generation;
    let cluster_name = &producer.spec.cluster_ref.name;
    let owner = super::producer::prefix_owner(&producer, &ctx);
    let outcome = match (
        super::pulsar_cluster::find(&ctx, &namespace, cluster_name),
        owner,
    ) {
        (None, _) => Outcome::ClusterNotFound {
            cluster: cluster_name.clone(),
        },
        (Some(_), Some(owner)) => Outcome::Conflict { owner },
        (Some(cluster), None) => match super::pulsar_cluster::ready_topics(
            &ctx,
            &namespace,
            cluster_name,
            &producer.spec.topics,
        ) {
            Err(missing) => Outcome::TopicsNotReady(missing),
            Ok(topics) => {
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
                match instances {
                    Err(name) => Outcome::WorkloadNotFound { name },
                    Ok(instances) => match render(
                        &producer.spec,
                        instances,
                        &cluster.spec.external.service_url,
                        &topics,
                    ) {
                        Err(violations) => Outcome::Invalid(violations),
                        Ok(files) => {
                            let label = ("exactly.dev/producer", name.clone());
                            super::secrets::apply_owned(
                                &ctx,
                                producer.as_ref(),
                                &namespace,
                                &secret_name,
                                label,
                                &files,
                            )
                            .await?;
                            match connected(&ctx, &cluster, &producer, instances, &topics).await {
                                Ok(names) => Outcome::Rendered { instances, names },
                                Err(e) => Outcome::Retrying(e),
                            }
                        }
                    },
                }
            }
        },
    };
    let status = status(generation, producer.status.as_ref(), &secret_name, &outcome);
    super::write_status(&ctx, producer.as_ref(), &status).await?;
    if let Outcome::Retrying(e) = &outcome {
        warn!(producer = %name, %namespace, error = %e, "Pulsar producer status not observed");
    }
    Ok(Action::requeue(match outcome {
        Outcome::Rendered { .. } => ctx.refresh_interval,
        Outcome::Invalid(_) => Duration::from_secs(300),
        // Looked at again each refresh: the conflict is over once the older Producer goes.
        Outcome::Conflict { .. } => ctx.refresh_interval,
        _ => super::RETRY,
    }))
}

/// Each instance's producer name, with the partitions of `topics` it is connected to and the
/// highest sequence id the brokers' deduplication snapshots hold for it.
async fn connected(
    ctx: &Context,
    cluster: &crate::api::PulsarCluster,
    producer: &Producer,
    instances: i32,
    topics: &[String],
) -> std::result::Result<Vec<PulsarProducerState>, PulsarError> {
    let admin = super::pulsar_cluster::admin_of(ctx, cluster).await?;
    let mut by_name: BTreeMap<String, Vec<String>> = (0..instances.max(1))
        .map(|n| {
            (
                producer_name(&producer.spec.transactional_id_prefix, n),
                Vec::new(),
            )
        })
        .collect();
    let mut snapshot: BTreeMap<String, i64> = BTreeMap::new();
    for topic in topics {
        let Some(parsed) = TopicName::parse(topic) else {
            continue;
        };
        for (partition, names) in admin.publishers(&parsed).await?.unwrap_or_default() {
            for n in names {
                if let Some(list) = by_name.get_mut(&n) {
                    list.push(partition.clone());
                }
            }
        }
        for sequence_ids in admin
            .dedup_snapshots(&parsed)
            .await?
            .unwrap_or_default()
            .into_values()
        {
            for (n, id) in sequence_ids {
                if by_name.contains_key(&n) {
                    let highest = snapshot.entry(n).or_insert(id);
                    *highest = (*highest).max(id);
                }
            }
        }
    }
    Ok(by_name
        .into_iter()
        .map(|(name, mut connected_to)| {
            connected_to.sort();
            PulsarProducerState {
                snapshot_sequence_id: snapshot.get(&name).copied(),
                name,
                connected_to,
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{ClusterKind, ClusterRef};
    use crate::controller::producer_config::parse_properties;

    fn spec(overrides: &[(&str, &str)]) -> ProducerSpec {
        let mut spec: ProducerSpec = serde_json::from_value(serde_json::json!({
            "clusterRef": {"kind": "PulsarCluster", "name": "pulsar"},
            "topics": [{"name": "orders"}],
            "transactionalIdPrefix": "orders-writer",
        }))
        .unwrap_or_else(|e| panic!("{e}"));
        spec.client_overrides = overrides
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        spec
    }

    #[test]
    fn each_instance_gets_its_stable_producer_name_and_no_send_timeout() {
        let files = render(
            &spec(&[("batchingMaxPublishDelayMicros", "500")]),
            2,
            "pulsar://p:6650",
            &["persistent://shop/sales/orders".into()],
        )
        .unwrap_or_else(|v| panic!("{v:?}"));
        for n in 0..2 {
            let props = parse_properties(&files[&instance_key(n)]);
            assert_eq!(
                props,
                BTreeMap::from([
                    ("serviceUrl".to_string(), "pulsar://p:6650".to_string()),
                    ("producerName".into(), format!("orders-writer-{n}")),
                    ("sendTimeoutMs".into(), "0".into()),
                    ("blockIfQueueFull".into(), "true".into()),
                    ("batchingMaxPublishDelayMicros".into(), "500".into()),
                ])
            );
        }
        assert_eq!(files["topics"], "persistent://shop/sales/orders\n");
        let _ = ClusterRef {
            name: "x".into(),
            kind: ClusterKind::PulsarCluster,
        };
    }

    #[test]
    fn overrides_that_weaken_deduplication_are_refused_naming_the_key() {
        let violations = render(
            &spec(&[
                ("sendTimeoutMs", "30000"),
                ("producerName", "mine"),
                ("blockIfQueueFull", "false"),
                ("sendTimeoutMs2", "1"),
            ]),
            1,
            "pulsar://p:6650",
            &[],
        )
        .err()
        .unwrap_or_default();
        let keys: Vec<&str> = violations.iter().map(|v| v.key.as_str()).collect();
        assert_eq!(keys, ["blockIfQueueFull", "producerName", "sendTimeoutMs"]);
        assert!(violations[2].message.contains("deduplication"));
    }

    #[test]
    fn a_send_timeout_of_zero_may_be_restated() {
        assert!(check_overrides(&spec(&[("sendTimeoutMs", "0")])).is_empty());
    }

    #[test]
    fn a_prefix_held_by_an_older_producer_is_a_conflict_until_it_is_free() {
        let conflict = status(
            Some(1),
            None,
            "w-client",
            &Outcome::Conflict {
                owner: "shop/first".into(),
            },
        );
        let ready = conditions::find(&conflict.conditions, types::READY)
            .unwrap_or_else(|| panic!("no Ready"));
        assert_eq!(ready.reason, RESOURCE_CONFLICT);
        assert!(ready.message.contains("shop/first"), "{}", ready.message);
        let flag = |s: &ProducerStatus| {
            conditions::find(&s.conditions, RESOURCE_CONFLICT).map(|c| c.status)
        };
        assert_eq!(flag(&conflict), Some(ConditionStatus::True));
        let freed = status(
            Some(1),
            Some(&conflict),
            "w-client",
            &Outcome::Rendered {
                instances: 1,
                names: Vec::new(),
            },
        );
        assert_eq!(flag(&freed), Some(ConditionStatus::False));
    }

    #[test]
    fn rendered_status_lists_the_producer_names_and_is_quiet_when_repeated() {
        let outcome = Outcome::Rendered {
            instances: 1,
            names: vec![PulsarProducerState {
                name: "orders-writer-0".into(),
                connected_to: vec!["persistent://shop/sales/orders-partition-0".into()],
                snapshot_sequence_id: Some(999),
            }],
        };
        let first = status(Some(1), None, "w-client", &outcome);
        let ready =
            conditions::find(&first.conditions, types::READY).unwrap_or_else(|| panic!("no Ready"));
        assert_eq!(ready.status, ConditionStatus::True);
        assert!(ready.message.contains("orders-writer-0"));
        assert_eq!(first.producer_names.len(), 1);
        assert_eq!(status(Some(1), Some(&first), "w-client", &outcome), first);
    }
}
