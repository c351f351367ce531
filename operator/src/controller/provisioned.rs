//! Reconciles a provisioned KafkaCluster: applies the children [`super::provision`] renders (by
//! server-side apply, one field manager, owner references), deletes the children it no longer
//! wants (by label, nothing else), and reports readiness per role and the exactly-once rules.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};
use tracing::info;

use super::producer_config::ConfigViolation;
use super::provision::{self, CLUSTER_LABEL, Names};
use super::{Context, FIELD_MANAGER, eos};
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

/// The status of a provisioned cluster: per-role readiness, the settings it was given, the rules.
pub fn provisioned_status(
    generation: Option<i64>,
    previous: Option<&KafkaClusterStatus>,
    bootstrap: &str,
    spec: &ProvisionedCluster,
    rendered: &std::result::Result<BTreeMap<String, String>, Vec<ConfigViolation>>,
    ready: &BTreeMap<String, i32>,
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
            let data_nodes = provision::data_nodes(spec);
            let settings = eos::settings(
                config,
                &BTreeMap::from([("transaction.version".to_string(), 2)]),
            );
            let failures: Vec<(&str, String)> = eos::check(data_nodes, &settings)
                .into_iter()
                .filter_map(|r| r.failure.map(|f| (r.rule, f)))
                .collect();
            status.exactly_once = Some(settings);
            status.brokers = Some(data_nodes);
            status.failed_rules = failures.iter().map(|(r, _)| r.to_string()).collect();
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
            let eos_condition = if failures.is_empty() {
                cond(
                    super::cluster::EXACTLY_ONCE_READY,
                    True,
                    "AllRulesMet",
                    "the computed broker settings meet every exactly-once rule".into(),
                )
            } else {
                let list: Vec<String> = failures.iter().map(|(r, f)| format!("{r}: {f}")).collect();
                cond(
                    super::cluster::EXACTLY_ONCE_READY,
                    False,
                    "RulesFailed",
                    format!("{} rule(s) failed. {}", failures.len(), list.join(". ")),
                )
            };
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

async fn apply<K>(api: &Api<K>, object: &K) -> Result<()>
where
    K: Resource + Clone + serde::Serialize + serde::de::DeserializeOwned + std::fmt::Debug,
    K::DynamicType: Default,
{
    let name = object.meta().name.clone().unwrap_or_default();
    api.patch(
        &name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(object),
    )
    .await?;
    Ok(())
}

/// Deletes the children of `cluster` of kind `K` that are not in `keep`.
async fn prune<K>(api: &Api<K>, cluster: &str, keep: &[String]) -> Result<()>
where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
    K::DynamicType: Default,
{
    let listed = api
        .list(&ListParams::default().labels(&format!("{CLUSTER_LABEL}={cluster}")))
        .await?;
    for object in listed.items {
        let name = object.name_any();
        if !keep.contains(&name) {
            info!(kind = %K::kind(&K::DynamicType::default()), %name, "deleting a child the cluster no longer needs");
            api.delete(&name, &DeleteParams::default()).await?;
        }
    }
    Ok(())
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
        let owner = OwnerReference {
            api_version: KafkaCluster::api_version(&()).to_string(),
            kind: KafkaCluster::kind(&()).to_string(),
            name: name.clone(),
            uid: cluster.uid().unwrap_or_default(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        };
        let id = cluster_id(&cluster.uid().unwrap_or_default());
        let children = provision::children(&name, &namespace, &id, spec, config, &owner);
        let config_maps: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), &namespace);
        let services: Api<Service> = Api::namespaced(ctx.client.clone(), &namespace);
        let pdbs: Api<PodDisruptionBudget> = Api::namespaced(ctx.client.clone(), &namespace);
        apply(&config_maps, &children.config_map).await?;
        for service in &children.services {
            apply(&services, service).await?;
        }
        for set in &children.stateful_sets {
            apply(&sets, set).await?;
        }
        apply(&pdbs, &children.pdb).await?;
        let keep_sets: Vec<String> = children
            .stateful_sets
            .iter()
            .map(ResourceExt::name_any)
            .collect();
        let keep_services: Vec<String> = children
            .services
            .iter()
            .map(ResourceExt::name_any)
            .collect();
        prune(&sets, &name, &keep_sets).await?;
        prune(&services, &name, &keep_services).await?;
        let names = Names::of(&name);
        prune(&config_maps, &name, &[names.config_map]).await?;
        prune(&pdbs, &name, &[names.pdb]).await?;
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
    let mut status = provisioned_status(
        cluster.meta().generation,
        cluster.status.as_ref(),
        &cluster.bootstrap_servers(),
        spec,
        &rendered,
        &ready,
    );
    // Once the pods are ready, what the brokers themselves report (as for an external cluster).
    // From outside the cluster network (or while the brokers start) this fails; that is no error.
    let all_ready = conditions::find(&status.conditions, types::READY)
        .is_some_and(|c| c.status == ConditionStatus::True);
    if all_ready && let Ok(admin) = ctx.kafka.admin(&cluster.bootstrap_servers()) {
        match tokio::time::timeout(Duration::from_secs(5), admin.describe_cluster()).await {
            Ok(Ok(described)) => {
                status.cluster_id = described.cluster_id;
                status.brokers = Some(described.brokers);
                status.exactly_once =
                    Some(eos::settings(&described.broker_config, &described.features));
            }
            Ok(Err(e)) => {
                tracing::debug!(cluster = %name, error = %e, "brokers not reachable from the operator")
            }
            Err(_) => tracing::debug!(cluster = %name, "brokers did not answer within 5 s"),
        }
    }
    super::write_status(&ctx, cluster.as_ref(), &status).await?;
    Ok(Action::requeue(Duration::from_secs(60)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cluster_id_is_a_22_character_id_that_never_starts_with_a_dash() {
        let id = cluster_id("ffffffff-1234-5678-9abc-def012345678");
        assert_eq!(id.len(), 22);
        assert!(!id.starts_with('-') && !id.starts_with('_'), "{id}");
        assert_eq!(id, cluster_id("ffffffff-1234-5678-9abc-def012345678"));
        assert_ne!(id, cluster_id("00000000-1234-5678-9abc-def012345678"));
    }
}
