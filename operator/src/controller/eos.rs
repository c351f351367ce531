//! The exactly-once rules for a cluster's broker settings (DESIGN §3), judged from what the
//! brokers report. Pure: the KafkaCluster reconciler feeds it one description of the cluster.

use std::collections::BTreeMap;

use crate::api::cluster::{ExactlyOnceSettings, SettingsSource};

/// Replication the production profile asks of internal topics and of topics by default.
pub const PRODUCTION_REPLICATION: i64 = 3;

/// One rule and whether the cluster meets it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuleResult {
    /// Stable identifier, e.g. `TransactionLogReplication`.
    pub rule: &'static str,
    /// `None` when the rule holds; otherwise what is wrong and what to change.
    pub failure: Option<String>,
}

/// The `ExactlyOnceReady` condition of a cluster whose brokers reported their settings, judged
/// by `results` (any system's rules), and the names of the rules that failed.
pub fn judgement(
    results: Vec<RuleResult>,
    generation: Option<i64>,
) -> (crate::api::Condition, Vec<String>) {
    use crate::api::ConditionStatus::{False, True};
    let failures: Vec<(&str, String)> = results
        .into_iter()
        .filter_map(|r| r.failure.map(|f| (r.rule, f)))
        .collect();
    let failed = failures.iter().map(|(rule, _)| rule.to_string()).collect();
    let (status, reason, message) = if failures.is_empty() {
        (
            True,
            "AllRulesMet",
            "the broker settings meet every exactly-once rule".to_string(),
        )
    } else {
        let list: Vec<String> = failures
            .iter()
            .map(|(rule, failure)| format!("{rule}: {failure}"))
            .collect();
        (
            False,
            "RulesFailed",
            format!("{} rule(s) failed. {}", failures.len(), list.join(". ")),
        )
    };
    let condition = crate::api::Condition::new(
        super::cluster::EXACTLY_ONCE_READY,
        status,
        reason,
        message,
        generation,
    );
    (condition, failed)
}

fn int(config: &BTreeMap<String, String>, key: &str) -> Option<i64> {
    config.get(key).and_then(|v| v.trim().parse().ok())
}

/// The settings that matter for exactly-once, as the status shows them.
pub fn settings(
    config: &BTreeMap<String, String>,
    features: &BTreeMap<String, i16>,
) -> ExactlyOnceSettings {
    ExactlyOnceSettings {
        transaction_state_log_replication_factor: int(
            config,
            "transaction.state.log.replication.factor",
        ),
        transaction_state_log_min_isr: int(config, "transaction.state.log.min.isr"),
        offsets_topic_replication_factor: int(config, "offsets.topic.replication.factor"),
        default_replication_factor: int(config, "default.replication.factor"),
        min_insync_replicas: int(config, "min.insync.replicas"),
        unclean_leader_election_enable: config
            .get("unclean.leader.election.enable")
            .map(|v| v.eq_ignore_ascii_case("true")),
        transaction_max_timeout_ms: int(config, "transaction.max.timeout.ms"),
        transaction_version: features.get("transaction.version").map(|v| i32::from(*v)),
        source: Some(SettingsSource::Observed),
    }
}

/// The settings the operator rendered for provisioned brokers, before the brokers confirm them:
/// features such as `transaction.version` are decided when the storage is formatted, so they
/// stay unknown.
pub fn computed_settings(config: &BTreeMap<String, String>) -> ExactlyOnceSettings {
    ExactlyOnceSettings {
        source: Some(SettingsSource::Computed),
        ..settings(config, &BTreeMap::new())
    }
}

/// Rules judged only on what the brokers report (not on computed settings).
pub const OBSERVED_ONLY_RULES: &[&str] = &["TransactionVersion"];

/// Every rule, judged for a cluster of `brokers` brokers with these settings.
pub fn check(brokers: i32, s: &ExactlyOnceSettings) -> Vec<RuleResult> {
    let n = i64::from(brokers);
    let mut rules = Vec::new();
    let mut rule = |rule: &'static str, failure: Option<String>| {
        rules.push(RuleResult { rule, failure });
    };
    rule(
        "Durability",
        (n < PRODUCTION_REPLICATION).then(|| {
            format!(
                "{n} broker(s): transactions work but nothing is replicated, so one broker loss loses \
                 committed data. Run at least {PRODUCTION_REPLICATION} brokers for production"
            )
        }),
    );
    let replication = |key: &str, value: Option<i64>| match value {
        None => Some(format!("{key} could not be read from the brokers")),
        Some(rf) if rf < PRODUCTION_REPLICATION => Some(format!(
            "{key} is {rf}: set it to {PRODUCTION_REPLICATION}, with at least {PRODUCTION_REPLICATION} brokers"
        )),
        Some(_) => None,
    };
    rule(
        "TransactionLogReplication",
        replication(
            "transaction.state.log.replication.factor",
            s.transaction_state_log_replication_factor,
        ),
    );
    rule(
        "TransactionLogMinIsr",
        match (
            s.transaction_state_log_min_isr,
            s.transaction_state_log_replication_factor,
        ) {
            (Some(isr), Some(rf)) if isr > rf => Some(format!(
                "transaction.state.log.min.isr is {isr}, above its replication factor {rf}: \
                 transactions cannot commit. Set it to {}",
                (rf - 1).max(1)
            )),
            (Some(isr), Some(rf)) if rf >= PRODUCTION_REPLICATION && isr < 2 => Some(format!(
                "transaction.state.log.min.isr is {isr}: a commit may be acknowledged by one broker only. Set it to 2"
            )),
            (None, _) => Some("transaction.state.log.min.isr could not be read".into()),
            _ => None,
        },
    );
    rule(
        "OffsetsTopicReplication",
        replication(
            "offsets.topic.replication.factor",
            s.offsets_topic_replication_factor,
        ),
    );
    rule(
        "MinInsyncReplicas",
        match s.min_insync_replicas {
            Some(m) if m < 2 => Some(format!(
                "min.insync.replicas is {m}: an acknowledged write may live on one broker only. \
                 Set it to 2 (replication - 1) with replication 3"
            )),
            None => Some("min.insync.replicas could not be read".into()),
            _ => None,
        },
    );
    rule(
        "UncleanLeaderElection",
        match s.unclean_leader_election_enable {
            Some(true) => Some(
                "unclean.leader.election.enable is true: an out-of-sync replica can become leader \
                 and drop committed records. Set it to false"
                    .into(),
            ),
            None => Some("unclean.leader.election.enable could not be read".into()),
            Some(false) => None,
        },
    );
    rule(
        "TransactionVersion",
        match s.transaction_version {
            Some(v) if v >= 2 => None,
            Some(v) => Some(format!(
                "feature transaction.version is {v}: without version 2 (KIP-890) the brokers do not \
                 verify transactional writes, so hanging transactions can occur. Upgrade with \
                 kafka-features.sh upgrade --feature transaction.version=2"
            )),
            None => Some(
                "the brokers report no transaction.version feature (Kafka before 3.8/4.0): \
                 hanging transactions are not prevented. Upgrade to Kafka 4"
                    .into(),
            ),
        },
    );
    rules
}

#[cfg(test)]
mod tests {
    use super::*;

    fn production() -> ExactlyOnceSettings {
        ExactlyOnceSettings {
            transaction_state_log_replication_factor: Some(3),
            transaction_state_log_min_isr: Some(2),
            offsets_topic_replication_factor: Some(3),
            default_replication_factor: Some(3),
            min_insync_replicas: Some(2),
            unclean_leader_election_enable: Some(false),
            transaction_max_timeout_ms: Some(900_000),
            transaction_version: Some(2),
            source: Some(SettingsSource::Observed),
        }
    }

    fn failed(rules: &[RuleResult]) -> Vec<&'static str> {
        rules
            .iter()
            .filter(|r| r.failure.is_some())
            .map(|r| r.rule)
            .collect()
    }

    #[test]
    fn a_three_broker_production_profile_meets_every_rule() {
        assert_eq!(failed(&check(3, &production())), Vec::<&str>::new());
    }

    #[test]
    fn a_single_development_broker_fails_on_durability_and_replication() {
        let s = ExactlyOnceSettings {
            transaction_state_log_replication_factor: Some(1),
            transaction_state_log_min_isr: Some(1),
            offsets_topic_replication_factor: Some(1),
            default_replication_factor: Some(1),
            min_insync_replicas: Some(1),
            ..production()
        };
        assert_eq!(
            failed(&check(1, &s)),
            [
                "Durability",
                "TransactionLogReplication",
                "OffsetsTopicReplication",
                "MinInsyncReplicas"
            ]
        );
    }

    #[test]
    fn unclean_election_and_an_old_transaction_version_are_named() {
        let s = ExactlyOnceSettings {
            unclean_leader_election_enable: Some(true),
            transaction_version: Some(1),
            ..production()
        };
        assert_eq!(
            failed(&check(3, &s)),
            ["UncleanLeaderElection", "TransactionVersion"]
        );
    }

    #[test]
    fn min_isr_above_replication_blocks_commits() {
        let s = ExactlyOnceSettings {
            transaction_state_log_min_isr: Some(4),
            ..production()
        };
        let rules = check(3, &s);
        let failure = rules
            .iter()
            .find(|r| r.rule == "TransactionLogMinIsr")
            .and_then(|r| r.failure.clone())
            .unwrap_or_default();
        assert!(failure.contains("cannot commit"), "{failure}");
    }

    #[test]
    fn settings_are_read_from_broker_config_and_features() {
        let config = BTreeMap::from([
            (
                "transaction.state.log.replication.factor".into(),
                "1".into(),
            ),
            ("unclean.leader.election.enable".into(), "false".into()),
        ]);
        let features = BTreeMap::from([("transaction.version".into(), 2)]);
        let s = settings(&config, &features);
        assert_eq!(s.transaction_state_log_replication_factor, Some(1));
        assert_eq!(s.unclean_leader_election_enable, Some(false));
        assert_eq!(s.transaction_version, Some(2));
        assert_eq!(s.min_insync_replicas, None);
    }
}
