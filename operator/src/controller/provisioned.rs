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
) -> (Condition, Vec<String>) {
    use ConditionStatus::{False, True, Unknown};
    let failures: Vec<(&str, String)> = eos::check(data_nodes, settings)
        .into_iter()
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
            let (settings, brokers) = match observed {
                Some(o) => {
                    status.cluster_id = o.cluster_id.clone();
                    (o.settings.clone(), o.brokers)
                }
                None => (eos::computed_settings(config), provision::data_nodes(spec)),
            };
            let (eos_condition, failed_rules) =
                exactly_once_condition(generation, brokers, &settings, observed.is_some());
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
        children.apply(rendered.pdb).await?;
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
    // Once the pods are ready, what the brokers themselves report (as for an external cluster).
    // From outside the cluster network (or while the brokers start) this fails; that is no
    // error: the status then says the settings are computed, not observed.
    let mut observed = None;
    if pods_ready(spec, &ready)
        && rendered.is_ok()
        && let Ok(admin) = ctx.kafka.admin(&cluster.bootstrap_servers())
    {
        match tokio::time::timeout(Duration::from_secs(5), admin.describe_cluster()).await {
            Ok(Ok(described)) => {
                observed = Some(ObservedBrokers {
                    cluster_id: described.cluster_id,
                    brokers: described.brokers,
                    settings: eos::settings(&described.broker_config, &described.features),
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
    Ok(Action::requeue(Duration::from_secs(60)))
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

    #[test]
    fn the_cluster_id_is_a_22_character_id_that_never_starts_with_a_dash() {
        let id = cluster_id("ffffffff-1234-5678-9abc-def012345678");
        assert_eq!(id.len(), 22);
        assert!(!id.starts_with('-') && !id.starts_with('_'), "{id}");
        assert_eq!(id, cluster_id("ffffffff-1234-5678-9abc-def012345678"));
        assert_ne!(id, cluster_id("00000000-1234-5678-9abc-def012345678"));
    }
}
