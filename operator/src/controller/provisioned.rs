//! Reconciles a provisioned KafkaCluster: applies the children [`super::provision`] renders (by
//! server-side apply, one field manager, owner references), deletes the children it no longer
//! wants (by label, nothing else), and reports readiness per role and the exactly-once rules.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::Api;
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};

use super::children::Children;
use super::producer_config::ConfigViolation;
use super::provision::{self, CLUSTER_LABEL, Names};
use super::{Context, eos};
use crate::api::cluster::ExactlyOnceSettings;
use crate::api::cluster::ProvisionedCluster;
use crate::api::conditions::{self, types};
use crate::api::{Condition, ConditionStatus, KafkaCluster, KafkaClusterStatus};
use crate::kafka::{ReplicaHealth, ShortPartition};
use crate::{Error, Result};

/// A Kafka cluster id derived from the resource's uid: stable for the life of the resource, a
/// valid 22-character base64url UUID, never starting with `-` (Kafka's tools would read it as an
/// option).
pub fn cluster_id(uid: &str) -> String {
    use base64::Engine as _;
    let hex: String = uid.chars().filter(char::is_ascii_hexdigit).collect();
    let mut bytes = [0u8; 16];
    for (i, byte) in bytes.iter_mut().enumerate() {
        *byte = hex
            .get(i * 2..i * 2 + 2)
            .and_then(|h| u8::from_str_radix(h, 16).ok())
            .unwrap_or(0);
    }
    bytes[0] &= 0x3f; // first character in A..=P
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// What the provisioned brokers themselves reported, once the operator reached them.
#[derive(Clone, Debug, PartialEq)]
pub struct ObservedBrokers {
    pub cluster_id: Option<String>,
    pub brokers: i32,
    pub settings: ExactlyOnceSettings,
    /// Live brokers and partitions short of in-sync replicas, when that could be read.
    pub health: Option<ReplicaHealth>,
}

/// How many short partitions a message names before it says "and N more".
const EXAMPLES: usize = 3;

/// The rules a running cluster meets or fails right now, beyond its settings: every broker it
/// should run is up (`BrokersUp`), and every partition has all its replicas in sync
/// (`ReplicasInSync`). While either fails, an acknowledged commit is on fewer copies than the
/// settings promise, and below `min.insync.replicas` transactional writes are refused.
pub fn replication_rules(
    expected: &[i32],
    ready_pods: i32,
    min_isr: Option<i64>,
    health: &ReplicaHealth,
) -> Vec<eos::RuleResult> {
    let missing: Vec<String> = expected
        .iter()
        .filter(|id| !health.live_brokers.contains(id))
        .map(i32::to_string)
        .collect();
    let wanted = i32::try_from(expected.len()).unwrap_or(i32::MAX);
    let mut down = Vec::new();
    if !missing.is_empty() {
        down.push(format!(
            "broker(s) {} not registered with the controllers ({} of {wanted} up)",
            missing.join(", "),
            expected.len() - missing.len(),
        ));
    }
    if ready_pods < wanted {
        down.push(format!("{ready_pods} of {wanted} broker pods ready"));
    }
    let brokers_up = (!down.is_empty()).then(|| {
        format!(
            "{}: the partitions they hold run on fewer copies until they return and catch up. \
             Check the broker pods and their logs",
            down.join("; ")
        )
    });
    let below_min = |p: &ShortPartition| {
        min_isr.is_some_and(|m| i64::try_from(p.isr.len()).unwrap_or(i64::MAX) < m)
    };
    let replicas_in_sync = (!health.short.is_empty()).then(|| {
        let ids = |v: &[i32]| v.iter().map(i32::to_string).collect::<Vec<_>>().join(",");
        let mut examples: Vec<String> = health
            .short
            .iter()
            .take(EXAMPLES)
            .map(|p| {
                format!(
                    "{}-{} in sync [{}] of [{}]",
                    p.topic,
                    p.partition,
                    ids(&p.isr),
                    ids(&p.replicas)
                )
            })
            .collect();
        if health.short.len() > EXAMPLES {
            examples.push(format!("and {} more", health.short.len() - EXAMPLES));
        }
        let below = health.short.iter().filter(|p| below_min(p)).count();
        let consequence = match (below, min_isr) {
            (0, _) => "writes go on, but an acknowledged commit has fewer copies than the \
                       replication factor until the replicas catch up"
                .to_string(),
            (n, Some(m)) => format!(
                "{n} of them have fewer than min.insync.replicas={m} in sync, so transactional \
                 writes to them are refused until the replicas catch up"
            ),
            (n, None) => format!("{n} of them are below min.insync.replicas"),
        };
        format!(
            "{} of {} partition(s) have fewer in-sync replicas than replicas ({}): {consequence}",
            health.short.len(),
            health.partitions,
            examples.join("; ")
        )
    });
    vec![
        eos::RuleResult {
            rule: "BrokersUp",
            failure: brokers_up,
        },
        eos::RuleResult {
            rule: "ReplicasInSync",
            failure: replicas_in_sync,
        },
    ]
}

/// The role whose pods hold the data: brokers, or combined nodes.
fn data_role(spec: &ProvisionedCluster) -> &'static str {
    if spec.combined { "combined" } else { "broker" }
}

/// Whether every role has all its pods ready.
pub fn pods_ready(spec: &ProvisionedCluster, ready: &BTreeMap<String, i32>) -> bool {
    provision::roles(spec).into_iter().all(|(role, pool)| {
        ready
            .get(provision::plural(role))
            .is_some_and(|n| *n >= pool.replicas)
    })
}

/// The `ExactlyOnceReady` condition of a provisioned cluster, and the rules it fails. Judged on
/// what the brokers report once they answered (`observed`); before that on the computed
/// settings, which can prove a rule broken but not the cluster ready: then `Unknown`.
fn exactly_once_condition(
    generation: Option<i64>,
    data_nodes: i32,
    settings: &ExactlyOnceSettings,
    observed: bool,
    running: Vec<eos::RuleResult>,
) -> (Condition, Vec<String>) {
    use ConditionStatus::{False, True, Unknown};
    let failures: Vec<(&str, String)> = eos::check(data_nodes, settings)
        .into_iter()
        .chain(running)
        .filter(|r| observed || !eos::OBSERVED_ONLY_RULES.contains(&r.rule))
        .filter_map(|r| r.failure.map(|f| (r.rule, f)))
        .collect();
    let rules = failures.iter().map(|(r, _)| r.to_string()).collect();
    let list: Vec<String> = failures.iter().map(|(r, f)| format!("{r}: {f}")).collect();
    let (status, reason, message) = match (failures.is_empty(), observed) {
        (true, true) => (
            True,
            "AllRulesMet",
            "the brokers report settings that meet every exactly-once rule".to_string(),
        ),
        (false, true) => (
            False,
            "RulesFailed",
            format!("{} rule(s) failed. {}", failures.len(), list.join(". ")),
        ),
        (true, false) => (
            Unknown,
            "NotObserved",
            "the computed broker settings meet every rule that can be judged before the brokers \
             answer; the operator has not reached them yet, so their live settings and \
             transaction.version are unconfirmed"
                .to_string(),
        ),
        (false, false) => (
            False,
            "RulesFailed",
            format!(
                "{} rule(s) failed in the computed settings. {}",
                failures.len(),
                list.join(". ")
            ),
        ),
    };
    (
        Condition::new(
            super::cluster::EXACTLY_ONCE_READY,
            status,
            reason,
            message,
            generation,
        ),
        rules,
    )
}

/// The status of a provisioned cluster: per-role readiness, the settings it was given (or, once
/// reached, those its brokers report), the rules.
pub fn provisioned_status(
    generation: Option<i64>,
    previous: Option<&KafkaClusterStatus>,
    bootstrap: &str,
    spec: &ProvisionedCluster,
    rendered: &std::result::Result<BTreeMap<String, String>, Vec<ConfigViolation>>,
    ready: &BTreeMap<String, i32>,
    observed: Option<&ObservedBrokers>,
) -> KafkaClusterStatus {
    use ConditionStatus::{False, True};
    let mut status = previous.cloned().unwrap_or_default();
    let cond = |type_: &str, s: ConditionStatus, reason: &str, message: String| {
        Condition::new(type_, s, reason, message, generation)
    };
    status.bootstrap_servers = Some(bootstrap.to_string());
    let desired = match rendered {
        Err(violations) => {
            let list: Vec<String> = violations
                .iter()
                .map(|v| format!("{}: {}", v.key, v.message))
                .collect();
            let message = format!("nothing was changed. {}", list.join(". "));
            vec![
                cond(types::READY, False, "InvalidSpec", message.clone()),
                cond(types::RECONCILING, False, "InvalidSpec", String::new()),
                cond(types::STALLED, True, "InvalidSpec", message.clone()),
                cond(
                    super::cluster::EXACTLY_ONCE_READY,
                    False,
                    "OverrideRefused",
                    message,
                ),
            ]
        }
        Ok(config) => {
            let (settings, brokers, running) = match observed {
                Some(o) => {
                    status.cluster_id = o.cluster_id.clone();
                    let running = o.health.as_ref().map(|h| {
                        replication_rules(
                            &provision::data_node_ids(spec),
                            ready
                                .get(provision::plural(data_role(spec)))
                                .copied()
                                .unwrap_or(0),
                            o.settings.min_insync_replicas,
                            h,
                        )
                    });
                    status.under_replicated_partitions = o
                        .health
                        .as_ref()
                        .map(|h| i32::try_from(h.short.len()).unwrap_or(i32::MAX));
                    (o.settings.clone(), o.brokers, running.unwrap_or_default())
                }
                None => (
                    eos::computed_settings(config),
                    provision::data_nodes(spec),
                    Vec::new(),
                ),
            };
            // Durability is judged on the brokers the cluster is given; one that is down is
            // `BrokersUp`'s to name.
            let (eos_condition, failed_rules) = exactly_once_condition(
                generation,
                provision::data_nodes(spec),
                &settings,
                observed.is_some(),
                running,
            );
            status.exactly_once = Some(settings);
            status.brokers = Some(brokers);
            status.failed_rules = failed_rules;
            status.ready_replicas = ready.clone();
            let wanted: Vec<(String, i32)> = provision::roles(spec)
                .into_iter()
                .map(|(role, pool)| (provision::plural(role).to_string(), pool.replicas))
                .collect();
            let missing: Vec<String> = wanted
                .iter()
                .filter(|(role, n)| ready.get(role).copied().unwrap_or(0) < *n)
                .map(|(role, n)| format!("{role} {}/{n}", ready.get(role).copied().unwrap_or(0)))
                .collect();
            if missing.is_empty() {
                vec![
                    cond(
                        types::READY,
                        True,
                        "PodsReady",
                        format!(
                            "every pod is ready ({}); clients connect to {bootstrap}",
                            wanted
                                .iter()
                                .map(|(r, n)| format!("{n} {r}"))
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    ),
                    cond(types::RECONCILING, False, "Reconciled", String::new()),
                    cond(types::STALLED, False, "Reconciled", String::new()),
                    eos_condition,
                ]
            } else {
                vec![
                    cond(
                        types::READY,
                        False,
                        "PodsNotReady",
                        format!("waiting for pods: {} ready", missing.join(", ")),
                    ),
                    cond(types::RECONCILING, True, "RollingOut", String::new()),
                    cond(types::STALLED, False, "RollingOut", String::new()),
                    eos_condition,
                ]
            }
        }
    };
    status.conditions = conditions::merge(&status.conditions, desired);
    status.observed_generation = generation;
    status
}

/// Reconciles a provisioned cluster.
pub async fn reconcile(
    cluster: Arc<KafkaCluster>,
    spec: &ProvisionedCluster,
    ctx: Arc<Context>,
) -> Result<Action> {
    let namespace = cluster
        .namespace()
        .ok_or(Error::MissingObjectKey("metadata.namespace"))?;
    let name = cluster.name_any();
    let mut violations = provision::check_size(spec);
    let rendered = match provision::broker_config(provision::data_nodes(spec), &spec.config) {
        Ok(config) if violations.is_empty() => Ok(config),
        Ok(_) => Err(violations),
        Err(more) => {
            violations.extend(more);
            Err(violations)
        }
    };
    let sets: Api<StatefulSet> = Api::namespaced(ctx.client.clone(), &namespace);
    if let Ok(config) = &rendered {
        let owner = cluster
            .controller_owner_ref(&())
            .ok_or(Error::MissingObjectKey("metadata.uid"))?;
        let id = cluster_id(&cluster.uid().unwrap_or_default());
        let rendered = provision::children(&name, &namespace, &id, spec, config, &owner);
        let mut children = Children::of(&ctx.client, cluster.as_ref(), (CLUSTER_LABEL, &name))?;
        children.apply(rendered.config_map).await?;
        for service in rendered.services {
            children.apply(service).await?;
        }
        for set in rendered.stateful_sets {
            children.apply(set).await?;
        }
        for pdb in rendered.pdbs {
            children.apply(pdb).await?;
        }
        children.prune::<StatefulSet>().await?;
        children.prune::<Service>().await?;
        children.prune::<ConfigMap>().await?;
        children.prune::<PodDisruptionBudget>().await?;
    }
    let mut ready = BTreeMap::new();
    for (role, _) in provision::roles(spec) {
        let set = sets.get_opt(&Names::pool(&name, role)).await?;
        let count = set
            .and_then(|s| s.status)
            .and_then(|s| s.ready_replicas)
            .unwrap_or(0);
        ready.insert(provision::plural(role).to_string(), count);
    }
    // Once brokers are ready, what they themselves report (as for an external cluster), and how
    // their replicas stand: a cluster that formed and then lost a broker is judged on what its
    // survivors say. From outside the cluster network (or while the brokers start) this fails;
    // that is no error: the status then says the settings are computed, not observed.
    let mut observed = None;
    if ready
        .get(provision::plural(data_role(spec)))
        .is_some_and(|n| *n > 0)
        && rendered.is_ok()
        && let Ok(admin) = ctx.kafka.admin(&cluster.bootstrap_servers())
    {
        let observe = async {
            let described = admin.describe_cluster().await?;
            let health = admin.replica_health().await?;
            Ok::<_, crate::kafka::KafkaError>((described, health))
        };
        match tokio::time::timeout(Duration::from_secs(5), observe).await {
            Ok(Ok((described, health))) => {
                observed = Some(ObservedBrokers {
                    cluster_id: described.cluster_id,
                    brokers: described.brokers,
                    settings: eos::settings(&described.broker_config, &described.features),
                    health: Some(health),
                })
            }
            Ok(Err(e)) => {
                tracing::debug!(cluster = %name, error = %e, "brokers not reachable from the operator")
            }
            Err(_) => tracing::debug!(cluster = %name, "brokers did not answer within 5 s"),
        }
    }
    let status = provisioned_status(
        cluster.meta().generation,
        cluster.status.as_ref(),
        &cluster.bootstrap_servers(),
        spec,
        &rendered,
        &ready,
        observed.as_ref(),
    );
    super::write_status(&ctx, cluster.as_ref(), &status).await?;
    // While pods start or replicas catch up, look again soon: the return to ready is news.
    let settled = pods_ready(spec, &ready)
        && observed
            .as_ref()
            .and_then(|o| o.health.as_ref())
            .is_none_or(|h| h.short.is_empty());
    Ok(Action::requeue(Duration::from_secs(if settled {
        60
    } else {
        5
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(brokers: i32) -> ProvisionedCluster {
        serde_json::from_value(serde_json::json!({
            "profile": if brokers >= 3 { "Production" } else { "Development" },
            "controllers": {"replicas": if brokers >= 3 { 3 } else { 1 }},
            "brokers": {"replicas": brokers},
        }))
        .unwrap_or_else(|e| panic!("{e}"))
    }

    fn all_ready(spec: &ProvisionedCluster) -> BTreeMap<String, i32> {
        provision::roles(spec)
            .into_iter()
            .map(|(role, pool)| (provision::plural(role).to_string(), pool.replicas))
            .collect()
    }

    fn status_of(brokers: i32, observed: Option<&ObservedBrokers>) -> KafkaClusterStatus {
        let spec = spec(brokers);
        let rendered = provision::broker_config(provision::data_nodes(&spec), &spec.config);
        provisioned_status(
            Some(1),
            None,
            "main-kafka.ns.svc:9092",
            &spec,
            &rendered,
            &all_ready(&spec),
            observed,
        )
    }

    fn eos(status: &KafkaClusterStatus) -> (ConditionStatus, String) {
        let c = conditions::find(
            &status.conditions,
            super::super::cluster::EXACTLY_ONCE_READY,
        )
        .unwrap_or_else(|| panic!("no ExactlyOnceReady in {status:?}"));
        (c.status, c.reason.clone())
    }

    #[test]
    fn before_the_brokers_answer_rules_met_by_the_computed_settings_leave_exactly_once_unknown() {
        let status = status_of(3, None);
        assert_eq!(
            eos(&status),
            (ConditionStatus::Unknown, "NotObserved".into())
        );
        let settings = status.exactly_once.unwrap_or_default();
        assert_eq!(
            settings.source,
            Some(crate::api::cluster::SettingsSource::Computed)
        );
        assert_eq!(
            settings.transaction_version, None,
            "not known before the brokers answer"
        );
        assert_eq!(settings.transaction_state_log_replication_factor, Some(3));
        assert!(status.failed_rules.is_empty());
    }

    #[test]
    fn a_rule_the_computed_settings_break_is_named_before_the_brokers_answer() {
        let status = status_of(1, None);
        assert_eq!(eos(&status), (ConditionStatus::False, "RulesFailed".into()));
        assert!(status.failed_rules.contains(&"Durability".to_string()));
        assert!(
            !status
                .failed_rules
                .contains(&"TransactionVersion".to_string())
        );
    }

    #[test]
    fn once_the_brokers_answer_their_own_settings_are_judged() {
        let spec = spec(3);
        let rendered = provision::broker_config(3, &spec.config).unwrap_or_default();
        let mut features = BTreeMap::from([("transaction.version".to_string(), 2)]);
        let good = ObservedBrokers {
            cluster_id: Some("id".into()),
            brokers: 3,
            settings: eos::settings(&rendered, &features),
            health: Some(healthy()),
        };
        let status = status_of(3, Some(&good));
        assert_eq!(eos(&status), (ConditionStatus::True, "AllRulesMet".into()));
        assert_eq!(
            status.exactly_once.and_then(|s| s.source),
            Some(crate::api::cluster::SettingsSource::Observed)
        );
        assert_eq!(status.cluster_id.as_deref(), Some("id"));

        // The brokers report what the operator did not render: that is what counts.
        features.insert("transaction.version".into(), 1);
        let old = ObservedBrokers {
            settings: eos::settings(&rendered, &features),
            ..good
        };
        let status = status_of(3, Some(&old));
        assert_eq!(eos(&status), (ConditionStatus::False, "RulesFailed".into()));
        assert_eq!(status.failed_rules, ["TransactionVersion"]);
    }

    fn healthy() -> ReplicaHealth {
        ReplicaHealth {
            live_brokers: vec![100, 101, 102],
            partitions: 53,
            short: Vec::new(),
        }
    }

    fn short(topic: &str, partition: i32, isr: &[i32]) -> ShortPartition {
        ShortPartition {
            topic: topic.into(),
            partition,
            replicas: vec![100, 101, 102],
            isr: isr.to_vec(),
        }
    }

    fn observed_with(health: ReplicaHealth) -> ObservedBrokers {
        let rendered = provision::broker_config(3, &spec(3).config).unwrap_or_default();
        let features = BTreeMap::from([("transaction.version".to_string(), 2)]);
        ObservedBrokers {
            cluster_id: Some("id".into()),
            brokers: i32::try_from(health.live_brokers.len()).unwrap_or(0),
            settings: eos::settings(&rendered, &features),
            health: Some(health),
        }
    }

    fn message(status: &KafkaClusterStatus) -> String {
        conditions::find(
            &status.conditions,
            super::super::cluster::EXACTLY_ONCE_READY,
        )
        .map(|c| c.message.clone())
        .unwrap_or_default()
    }

    #[test]
    fn a_lost_broker_and_the_partitions_it_leaves_short_are_named_and_not_as_a_durability_failure()
    {
        let health = ReplicaHealth {
            live_brokers: vec![100, 102],
            partitions: 53,
            short: vec![
                short("orders", 0, &[100, 102]),
                short("orders", 1, &[102, 100]),
            ],
        };
        let status = status_of(3, Some(&observed_with(health)));
        assert_eq!(eos(&status), (ConditionStatus::False, "RulesFailed".into()));
        assert_eq!(status.failed_rules, ["BrokersUp", "ReplicasInSync"]);
        let text = message(&status);
        assert!(
            text.contains("broker(s) 101 not registered with the controllers (2 of 3 up)"),
            "{text}"
        );
        assert!(text.contains("2 of 53 partition(s)"), "{text}");
        assert!(
            text.contains("orders-0 in sync [100,102] of [100,101,102]"),
            "{text}"
        );
        assert!(text.contains("writes go on"), "{text}");
        assert_eq!(status.under_replicated_partitions, Some(2));
    }

    #[test]
    fn a_broker_pod_that_is_not_ready_fails_brokers_up_before_the_controllers_notice() {
        let spec = spec(3);
        let rendered = provision::broker_config(3, &spec.config);
        let mut ready = all_ready(&spec);
        ready.insert("brokers".into(), 2);
        let status = provisioned_status(
            Some(1),
            None,
            "main-kafka.ns.svc:9092",
            &spec,
            &rendered,
            &ready,
            Some(&observed_with(healthy())),
        );
        assert_eq!(status.failed_rules, ["BrokersUp"]);
        assert!(
            message(&status).contains("2 of 3 broker pods ready"),
            "{}",
            message(&status)
        );
    }

    #[test]
    fn partitions_below_min_isr_are_said_to_refuse_transactional_writes() {
        let health = ReplicaHealth {
            live_brokers: vec![100, 101, 102],
            partitions: 10,
            short: (0..5).map(|p| short("orders", p, &[100])).collect(),
        };
        let status = status_of(3, Some(&observed_with(health)));
        assert_eq!(status.failed_rules, ["ReplicasInSync"]);
        let text = message(&status);
        assert!(
            text.contains("5 of them have fewer than min.insync.replicas=2 in sync"),
            "{text}"
        );
        assert!(text.contains("and 2 more"), "{text}");
    }

    #[test]
    fn caught_up_replicas_make_the_cluster_exactly_once_ready_again() {
        let status = status_of(3, Some(&observed_with(healthy())));
        assert_eq!(eos(&status), (ConditionStatus::True, "AllRulesMet".into()));
        assert_eq!(status.under_replicated_partitions, Some(0));
    }

    #[test]
    fn the_cluster_id_is_a_22_character_id_that_never_starts_with_a_dash() {
        let id = cluster_id("ffffffff-1234-5678-9abc-def012345678");
        assert_eq!(id.len(), 22);
        assert!(!id.starts_with('-') && !id.starts_with('_'), "{id}");
        assert_eq!(id, cluster_id("ffffffff-1234-5678-9abc-def012345678"));
        assert_ne!(id, cluster_id("00000000-1234-5678-9abc-def012345678"));
    }
}
