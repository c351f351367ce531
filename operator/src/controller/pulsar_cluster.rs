//! Reconciles `PulsarCluster`: reaches the admin API, reports the broker's version and cluster
//! name, and judges the broker settings exactly-once depends on (`ExactlyOnceReady`, naming each
//! rule that fails). Also gives the other controllers the cluster's admin client
//! ([`admin_of`], kept per cluster in [`Admins`]).

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use kube::{Resource, ResourceExt};
use tracing::{info, warn};

use super::Context;
use super::eos::{self, RuleResult};
use crate::api::conditions::{self, types};
use crate::api::{
    Condition, ConditionStatus, PulsarCluster, PulsarClusterStatus, PulsarExactlyOnce,
    PulsarHangingTransaction,
};
use crate::pulsar::admin::OpenTransaction;
use crate::pulsar::{PulsarAdmin, PulsarError, RuntimeConfig};
use crate::{Error, Result};

/// How often a reachable cluster is checked again.
const RESYNC: Duration = Duration::from_secs(60);
/// Retry interval while the admin API does not answer.
const RETRY: Duration = Duration::from_secs(5);

/// What one check of the cluster found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Observed {
    pub version: String,
    /// The broker's `clusterName`.
    pub cluster_name: String,
    pub config: RuntimeConfig,
    /// The open transactions; `None` while no coordinator is loaded (or transactions are off).
    pub transactions: Option<Vec<OpenTransaction>>,
    /// When it was observed (epoch milliseconds), to tell which transactions are past their
    /// timeout.
    pub now_ms: i64,
}

/// The settings exactly-once depends on, from the broker's runtime configuration.
pub fn settings(config: &RuntimeConfig) -> PulsarExactlyOnce {
    let flag = |key: &str| config.get(key).and_then(|v| v.trim().parse::<bool>().ok());
    PulsarExactlyOnce {
        transaction_coordinator_enabled: flag("transactionCoordinatorEnabled"),
        system_topic_enabled: flag("systemTopicEnabled"),
        topic_level_policies_enabled: flag("topicLevelPoliciesEnabled"),
        broker_deduplication_enabled: flag("brokerDeduplicationEnabled"),
        broker_delete_inactive_topics_enabled: flag("brokerDeleteInactiveTopicsEnabled"),
    }
}

/// The exactly-once rules, judged on `settings`. A setting the broker did not report fails its
/// rule: what cannot be seen cannot be promised.
pub fn check(settings: &PulsarExactlyOnce) -> Vec<RuleResult> {
    let must = |rule: &'static str, value: Option<bool>, want: bool, why: &str| RuleResult {
        rule,
        failure: match value {
            Some(v) if v == want => None,
            Some(v) => Some(format!("is {v}, must be {want}: {why}")),
            None => Some(format!("not reported by the broker; must be {want}: {why}")),
        },
    };
    vec![
        must(
            "TransactionCoordinatorEnabled",
            settings.transaction_coordinator_enabled,
            true,
            "without transaction coordinators nothing can produce and acknowledge atomically \
             (transactionCoordinatorEnabled=true in broker.conf)",
        ),
        must(
            "SystemTopicEnabled",
            settings.system_topic_enabled,
            true,
            "transactions and topic policies are kept in system topics (systemTopicEnabled=true)",
        ),
        must(
            "TopicLevelPoliciesEnabled",
            settings.topic_level_policies_enabled,
            true,
            "the operator keeps deduplication on per topic as a topic policy \
             (topicLevelPoliciesEnabled=true)",
        ),
        must(
            "InactiveTopicsKept",
            settings.broker_delete_inactive_topics_enabled,
            false,
            "the broker would delete a declared topic while it is idle \
             (brokerDeleteInactiveTopicsEnabled=false)",
        ),
    ]
}

/// Condition type: `True` when a transaction is open past its timeout.
pub const HANGING: &str = "HangingTransactions";

/// The transactions of `open` past their timeout at `now_ms`, oldest first.
pub fn hanging(open: &[OpenTransaction], now_ms: i64) -> Vec<PulsarHangingTransaction> {
    let time = |ms: Option<i64>| {
        ms.and_then(|ms| k8s_openapi::jiff::Timestamp::from_millisecond(ms).ok())
            .map(|t| t.to_string())
    };
    let deadline = |t: &OpenTransaction| Some(t.opened_ms?.saturating_add(t.timeout_ms?));
    let mut past: Vec<&OpenTransaction> = open
        .iter()
        .filter(|t| deadline(t).is_some_and(|at| at < now_ms))
        .collect();
    past.sort_by_key(|t| (t.opened_ms, t.id.clone()));
    past.into_iter()
        .map(|t| PulsarHangingTransaction {
            id: t.id.clone(),
            opened: time(t.opened_ms),
            timed_out: time(deadline(t)),
        })
        .collect()
}

/// The status a check (or its failure) means, merged into `previous`.
pub fn pulsar_cluster_status(
    generation: Option<i64>,
    previous: Option<&PulsarClusterStatus>,
    observed: &std::result::Result<Observed, PulsarError>,
) -> PulsarClusterStatus {
    use ConditionStatus::{False, True};
    let mut status = previous.cloned().unwrap_or_default();
    let cond = |type_: &str, s: ConditionStatus, reason: &str, message: String| {
        Condition::new(type_, s, reason, message, generation)
    };
    let desired = match observed {
        Ok(found) => {
            status.version = Some(found.version.clone());
            status.cluster_name = Some(found.cluster_name.clone());
            let settings = settings(&found.config);
            let (exactly_once, failed) = eos::judgement(check(&settings), generation);
            status.exactly_once = Some(settings);
            status.failed_rules = failed;
            let hanging_condition = match &found.transactions {
                None => {
                    status.open_transactions = None;
                    status.hanging.clear();
                    cond(
                        HANGING,
                        ConditionStatus::Unknown,
                        "CoordinatorsNotLoaded",
                        "no transaction coordinator is loaded yet: they load when a client first \
                         uses transactions"
                            .into(),
                    )
                }
                Some(open) => {
                    status.open_transactions = Some(i32::try_from(open.len()).unwrap_or(i32::MAX));
                    status.hanging = hanging(open, found.now_ms);
                    if status.hanging.is_empty() {
                        cond(HANGING, False, "NoneHanging", String::new())
                    } else {
                        cond(
                            HANGING,
                            True,
                            "PastTimeout",
                            format!(
                                "{} transaction(s) open past their timeout: {}. The coordinator \
                                 aborts a transaction when it times out; one still open holds back \
                                 what consumers of its partitions may read — see status.hanging",
                                status.hanging.len(),
                                status
                                    .hanging
                                    .iter()
                                    .map(|h| h.id.as_str())
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            ),
                        )
                    }
                }
            };
            vec![
                exactly_once,
                hanging_condition,
                cond(
                    types::READY,
                    True,
                    "ClusterReachable",
                    format!(
                        "Pulsar {} answered (cluster '{}')",
                        found.version, found.cluster_name
                    ),
                ),
                cond(types::RECONCILING, False, "Reconciled", String::new()),
                cond(types::STALLED, False, "Reconciled", String::new()),
            ]
        }
        Err(error @ PulsarError::ClientConfig(_)) => vec![
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
                    PulsarError::Refused { status: 401, .. }
                    | PulsarError::Refused { status: 403, .. } => format!(
                        "{error}; check the token in spec.external.secretRef's Secret and its \
                         role's permissions (the operator needs a superuser role). Retrying"
                    ),
                    _ => format!(
                        "{error}; check spec.external.adminUrl and that the brokers are up. Retrying"
                    ),
                },
            ),
            cond(types::RECONCILING, True, "RetryingPulsar", String::new()),
            cond(types::STALLED, False, "RetryingPulsar", String::new()),
        ],
    };
    status.conditions = conditions::merge(&status.conditions, desired);
    status.observed_generation = generation;
    status
}

/// How to reach a PulsarCluster's admin API: its URL, and its Secret's token and CA.
#[derive(Clone, PartialEq, Eq)]
pub struct Connection {
    url: String,
    token: Option<String>,
    ca: Option<String>,
}

/// The admin clients of the PulsarClusters (`namespace/name`), with the settings each was
/// built from: made by the cluster's own reconcile (which reads its Secret), reused by its
/// Topics and Producers, so they neither read the Secret nor open a new connection pool on
/// every reconcile.
pub type Admins = std::sync::Mutex<std::collections::HashMap<String, (Connection, PulsarAdmin)>>;

fn key(cluster: &PulsarCluster) -> String {
    format!(
        "{}/{}",
        cluster.namespace().unwrap_or_default(),
        cluster.name_any()
    )
}

/// The connection settings of `cluster`, its Secret read afresh.
async fn connection(
    ctx: &Context,
    cluster: &PulsarCluster,
) -> std::result::Result<Connection, PulsarError> {
    let namespace = cluster.namespace().unwrap_or_default();
    let (mut token, mut ca) = (None, None);
    if let Some(secret_ref) = cluster.secret_ref() {
        let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &namespace);
        let secret = secrets
            .get_opt(&secret_ref.name)
            .await
            .map_err(|e| {
                PulsarError::Interrupted(format!("reading Secret '{}': {e}", secret_ref.name))
            })?
            .ok_or_else(|| {
                PulsarError::ClientConfig(format!(
                    "Secret '{}' (spec.external.secretRef) does not exist in namespace '{namespace}'",
                    secret_ref.name
                ))
            })?;
        let data = secret.data.unwrap_or_default();
        let text = |key: &str| -> std::result::Result<Option<String>, PulsarError> {
            data.get(key)
                .map(|v| {
                    String::from_utf8(v.0.clone())
                        .map(|s| s.trim().to_string())
                        .map_err(|_| {
                            PulsarError::ClientConfig(format!(
                                "key '{key}' of Secret '{}' is not UTF-8 text",
                                secret_ref.name
                            ))
                        })
                })
                .transpose()
        };
        token = text("token")?.filter(|t| !t.is_empty());
        ca = text("ca.crt")?;
    }
    Ok(Connection {
        url: cluster.spec.external.admin_url.clone(),
        token,
        ca,
    })
}

/// A client for `connection`.
fn build(ctx: &Context, connection: &Connection) -> std::result::Result<PulsarAdmin, PulsarError> {
    let tls = if connection.url.starts_with("https://") {
        let security = crate::kafka::security::Security {
            ca_pem: connection.ca.clone(),
            ..Default::default()
        };
        Some(
            security
                .tls_config()
                .map_err(|e| PulsarError::ClientConfig(format!("TLS: {e}")))?,
        )
    } else {
        None
    };
    Ok(PulsarAdmin::new(&connection.url, connection.token.clone(), tls)?.fenced(ctx.fence.clone()))
}

/// The client for `connection`: the cached one when it was built from the same settings
/// (its connection pool kept), else a new one, cached.
fn reuse_or_build(
    ctx: &Context,
    key: String,
    connection: Connection,
) -> std::result::Result<PulsarAdmin, PulsarError> {
    let mut admins = ctx.pulsar_admins.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((built_from, admin)) = admins.get(&key)
        && *built_from == connection
    {
        return Ok(admin.clone());
    }
    let admin = build(ctx, &connection)?;
    admins.insert(key, (connection, admin.clone()));
    Ok(admin)
}

/// The admin client of `cluster` for its Topics and Producers: the one its PulsarCluster's
/// reconcile keeps (with the token and CA of the Secret as last read there), or, before that
/// ran or after `adminUrl` changed, one built now.
pub async fn admin_of(
    ctx: &Context,
    cluster: &PulsarCluster,
) -> std::result::Result<PulsarAdmin, PulsarError> {
    let key = key(cluster);
    let cached = ctx
        .pulsar_admins
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(&key)
        .filter(|(built_from, _)| built_from.url == cluster.spec.external.admin_url)
        .map(|(_, admin)| admin.clone());
    match cached {
        Some(admin) => Ok(admin),
        None => {
            let connection = connection(ctx, cluster).await?;
            reuse_or_build(ctx, key, connection)
        }
    }
}

/// What the admin API says about the cluster.
async fn observe(admin: &PulsarAdmin) -> std::result::Result<Observed, PulsarError> {
    let version = admin.version().await?;
    let config = admin.runtime_config().await?;
    let cluster_name = match config.get("clusterName") {
        Some(name) if !name.is_empty() => name.clone(),
        _ => admin
            .clusters()
            .await?
            .into_iter()
            .next()
            .unwrap_or_default(),
    };
    let transactions = if settings(&config).transaction_coordinator_enabled == Some(true) {
        admin.open_transactions().await?
    } else {
        None
    };
    Ok(Observed {
        version,
        cluster_name,
        config,
        transactions,
        now_ms: k8s_openapi::jiff::Timestamp::now().as_millisecond(),
    })
}

/// The PulsarCluster `name` of `namespace`, from the controllers' cache.
pub fn find(ctx: &Context, namespace: &str, name: &str) -> Option<Arc<PulsarCluster>> {
    ctx.pulsar_clusters
        .get(&ObjectRef::new(name).within(namespace))
}

/// The full names of the Topics `refs` names (in `namespace`), when each is Ready on the
/// PulsarCluster `cluster`; else the names of those that are not (missing, not Ready, or on
/// another cluster: a resource's Topics must live on its cluster).
pub fn ready_topics(
    ctx: &Context,
    namespace: &str,
    cluster: &str,
    refs: &[crate::api::TopicRef],
) -> std::result::Result<Vec<String>, Vec<String>> {
    let mut names = Vec::new();
    let mut missing = Vec::new();
    for r in refs {
        let topic: Option<Arc<crate::api::Topic>> =
            ctx.topics.get(&ObjectRef::new(&r.name).within(namespace));
        let ready = topic.as_ref().is_some_and(|t| {
            t.on_pulsar()
                && t.spec.cluster_ref.name == cluster
                && t.status.as_ref().is_some_and(|s| {
                    conditions::find(&s.conditions, types::READY)
                        .is_some_and(|c| c.status == ConditionStatus::True)
                })
        });
        match topic {
            Some(t) if ready => names.push(t.system_topic_name()),
            _ => missing.push(r.name.clone()),
        }
    }
    if missing.is_empty() {
        names.sort();
        names.dedup();
        Ok(names)
    } else {
        Err(missing)
    }
}

/// Reconciles one PulsarCluster.
#[tracing::instrument(skip_all, fields(kind = "PulsarCluster", namespace = cluster.namespace().unwrap_or_default(), name = %cluster.name_any()))]
pub async fn reconcile(cluster: Arc<PulsarCluster>, ctx: Arc<Context>) -> Result<Action> {
    let namespace = cluster
        .namespace()
        .ok_or(Error::MissingObjectKey("metadata.namespace"))?;
    let name = cluster.name_any();
    // The Secret is read here on every check, so a rotated token is used from then on.
    let admin = match connection(&ctx, &cluster).await {
        Ok(connection) => reuse_or_build(&ctx, key(&cluster), connection),
        Err(e) => Err(e),
    };
    let observed = match admin {
        Ok(admin) => observe(&admin).await,
        Err(e) => Err(e),
    };
    let status = pulsar_cluster_status(
        cluster.meta().generation,
        cluster.status.as_ref(),
        &observed,
    );
    if super::write_status(&ctx, cluster.as_ref(), &status).await? {
        match &observed {
            Ok(o) => {
                info!(cluster = %name, version = %o.version, failed_rules = ?status.failed_rules, "Pulsar cluster reachable")
            }
            Err(e) => {
                warn!(cluster = %name, namespace = %namespace, error = %e, "Pulsar cluster unreachable")
            }
        }
    }
    if observed.is_ok() && super::still_watched(&ctx.pulsar_clusters, cluster.as_ref()) {
        let labels =
            ctx.metrics
                .series_of(crate::metrics::kinds::PULSAR_CLUSTER, &namespace, &name);
        ctx.metrics
            .pulsar_cluster_exactly_once_ready
            .get_or_create(&labels)
            .set(i64::from(status.failed_rules.is_empty()));
        if let Some(open) = status.open_transactions {
            ctx.metrics
                .pulsar_cluster_open_transactions
                .get_or_create(&labels)
                .set(i64::from(open));
            ctx.metrics
                .pulsar_cluster_hanging_transactions
                .get_or_create(&labels)
                .set(i64::try_from(status.hanging.len()).unwrap_or(i64::MAX));
        }
    }
    Ok(Action::requeue(match &observed {
        // Open transactions are figures that move: looked at every refresh interval.
        Ok(_) => ctx.refresh_interval.min(RESYNC),
        Err(PulsarError::ClientConfig(_)) => RESYNC,
        Err(_) => RETRY,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::cluster::EXACTLY_ONCE_READY;

    fn config(pairs: &[(&str, &str)]) -> RuntimeConfig {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn good() -> RuntimeConfig {
        config(&[
            ("transactionCoordinatorEnabled", "true"),
            ("systemTopicEnabled", "true"),
            ("topicLevelPoliciesEnabled", "true"),
            ("brokerDeduplicationEnabled", "false"),
            ("brokerDeleteInactiveTopicsEnabled", "false"),
            ("clusterName", "standalone"),
        ])
    }

    fn observed(config: RuntimeConfig) -> std::result::Result<Observed, PulsarError> {
        Ok(Observed {
            version: "4.0.7".into(),
            cluster_name: "standalone".into(),
            config,
            transactions: Some(Vec::new()),
            now_ms: 1_000_000,
        })
    }

    fn open(id: &str, opened_ms: i64, timeout_ms: i64) -> OpenTransaction {
        OpenTransaction {
            id: id.into(),
            status: "OPEN".into(),
            opened_ms: Some(opened_ms),
            timeout_ms: Some(timeout_ms),
        }
    }

    #[test]
    fn a_transaction_open_past_its_timeout_is_hanging_and_one_within_it_is_only_open() {
        let mut found = observed(good()).unwrap_or_else(|e| panic!("{e}"));
        // now_ms is 1 000 000: (0,2) times out at 1 100 000, (0,1) timed out at 160 000.
        found.transactions = Some(vec![
            open("(0,2)", 900_000, 200_000),
            open("(0,1)", 100_000, 60_000),
        ]);
        let status = pulsar_cluster_status(Some(1), None, &Ok(found));
        assert_eq!(status.open_transactions, Some(2));
        assert_eq!(status.hanging.len(), 1);
        assert_eq!(status.hanging[0].id, "(0,1)");
        assert_eq!(
            status.hanging[0].timed_out.as_deref(),
            Some("1970-01-01T00:02:40Z")
        );
        let c = conditions::find(&status.conditions, HANGING).unwrap_or_else(|| panic!());
        assert_eq!(c.status, ConditionStatus::True);
        assert!(c.message.contains("(0,1)"));
    }

    #[test]
    fn without_a_loaded_coordinator_open_transactions_are_unknown_not_zero() {
        let mut found = observed(good()).unwrap_or_else(|e| panic!("{e}"));
        found.transactions = None;
        let status = pulsar_cluster_status(Some(1), None, &Ok(found));
        assert_eq!(status.open_transactions, None);
        let c = conditions::find(&status.conditions, HANGING).unwrap_or_else(|| panic!());
        assert_eq!(c.status, ConditionStatus::Unknown);
    }

    #[test]
    fn a_broker_with_transactions_system_topics_and_topic_policies_meets_every_rule() {
        let status = pulsar_cluster_status(Some(1), None, &observed(good()));
        assert!(status.failed_rules.is_empty(), "{:?}", status.failed_rules);
        let eos = conditions::find(&status.conditions, EXACTLY_ONCE_READY)
            .unwrap_or_else(|| panic!("no ExactlyOnceReady"));
        assert_eq!(eos.status, ConditionStatus::True);
        assert_eq!(status.version.as_deref(), Some("4.0.7"));
        assert_eq!(status.cluster_name.as_deref(), Some("standalone"));
    }

    #[test]
    fn each_failed_rule_is_named_with_the_setting_to_change() {
        let mut c = good();
        c.insert("transactionCoordinatorEnabled".into(), "false".into());
        c.insert("brokerDeleteInactiveTopicsEnabled".into(), "true".into());
        c.remove("topicLevelPoliciesEnabled");
        let status = pulsar_cluster_status(Some(1), None, &observed(c));
        assert_eq!(
            status.failed_rules,
            [
                "TransactionCoordinatorEnabled",
                "TopicLevelPoliciesEnabled",
                "InactiveTopicsKept"
            ]
        );
        let eos = conditions::find(&status.conditions, EXACTLY_ONCE_READY)
            .unwrap_or_else(|| panic!("no ExactlyOnceReady"));
        assert_eq!(eos.status, ConditionStatus::False);
        assert!(eos.message.contains("transactionCoordinatorEnabled=true"));
        assert!(eos.message.contains("not reported by the broker"));
        assert!(
            eos.message
                .contains("brokerDeleteInactiveTopicsEnabled=false")
        );
    }

    #[test]
    fn an_unreachable_cluster_is_not_ready_and_keeps_what_it_last_saw() {
        let before = pulsar_cluster_status(Some(1), None, &observed(good()));
        let after = pulsar_cluster_status(
            Some(1),
            Some(&before),
            &Err(PulsarError::Unreachable {
                url: "http://p:8080".into(),
                message: "connection refused".into(),
            }),
        );
        let ready =
            conditions::find(&after.conditions, types::READY).unwrap_or_else(|| panic!("no Ready"));
        assert_eq!(ready.status, ConditionStatus::False);
        assert_eq!(ready.reason, "PulsarUnreachable");
        assert!(ready.message.contains("spec.external.adminUrl"));
        assert_eq!(after.version.as_deref(), Some("4.0.7"));
    }

    #[test]
    fn unusable_connection_settings_stall_until_the_spec_changes() {
        let status = pulsar_cluster_status(
            Some(2),
            None,
            &Err(PulsarError::ClientConfig(
                "adminUrl 'x' must start with http://".into(),
            )),
        );
        let stalled = conditions::find(&status.conditions, types::STALLED)
            .unwrap_or_else(|| panic!("no Stalled"));
        assert_eq!(stalled.status, ConditionStatus::True);
    }

    #[test]
    fn the_same_observation_gives_the_same_status() {
        let first = pulsar_cluster_status(Some(1), None, &observed(good()));
        let second = pulsar_cluster_status(Some(1), Some(&first), &observed(good()));
        assert_eq!(first, second);
    }
}
