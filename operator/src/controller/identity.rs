//! Least privilege on the broker (issue #11): the SCRAM user a workload gets and exactly the ACLs
//! its path needs. Pure: the reconcilers apply what this plans (`kafka::wire`'s SCRAM and ACL
//! calls) and compare it with what the broker reports.
//!
//! - A Producer writes to its topics and, with transactions, uses the transactional ids
//!   `<transactionalIdPrefix>-<instance>`: Write and Describe on each topic, Write and Describe on
//!   the transactional ids with that prefix. (An idempotent producer needs nothing on the cluster
//!   since Kafka 3.0: Write on a topic implies IdempotentWrite, KIP-679.)
//! - A ConsumerGroup's members read their topics and commit the group's offsets: Read and
//!   Describe on each topic, Read on the group.
//!
//! Nothing is ever granted on the cluster, with a wildcard, or by prefix on topics or groups.

use std::collections::BTreeSet;

use crate::kafka::acl::{AclBinding, AclOperation, AclPattern, AclResource};

/// The SCRAM user of a workload: `<namespace>.<kind>.<name>` (kind in lower case), so two kinds
/// or namespaces never share one.
pub fn user_name(kind: &str, namespace: &str, name: &str) -> String {
    format!("{namespace}.{}.{name}", kind.to_ascii_lowercase())
}

/// The principal Kafka's SCRAM authentication gives `user`.
pub fn principal(user: &str) -> String {
    format!("User:{user}")
}

/// `operations` on each of `topics` (by name) for `principal`.
fn on_topics(
    principal: &str,
    topics: &[String],
    operations: [AclOperation; 2],
) -> BTreeSet<AclBinding> {
    topics
        .iter()
        .flat_map(|topic| {
            operations.map(|operation| {
                AclBinding::allow(
                    principal,
                    operation,
                    AclResource::Topic,
                    topic.clone(),
                    AclPattern::Literal,
                )
            })
        })
        .collect()
}

/// The ACLs a Producer's user needs: Write and Describe on each of `topics`, and with
/// `transactional_id_prefix` (exactly-once) Write and Describe on the transactional ids
/// `<prefix>-*`.
pub fn producer_acls(
    user: &str,
    topics: &[String],
    transactional_id_prefix: Option<&str>,
) -> BTreeSet<AclBinding> {
    let principal = principal(user);
    let mut acls = on_topics(
        &principal,
        topics,
        [AclOperation::Write, AclOperation::Describe],
    );
    if let Some(prefix) = transactional_id_prefix {
        for operation in [AclOperation::Write, AclOperation::Describe] {
            acls.insert(AclBinding::allow(
                principal.clone(),
                operation,
                AclResource::TransactionalId,
                format!("{prefix}-"),
                AclPattern::Prefixed,
            ));
        }
    }
    acls
}

/// The ACLs a ConsumerGroup's user needs: Read and Describe on each of `topics`, Read on the
/// group `group_id`.
pub fn group_acls(user: &str, group_id: &str, topics: &[String]) -> BTreeSet<AclBinding> {
    let principal = principal(user);
    let mut acls = on_topics(
        &principal,
        topics,
        [AclOperation::Read, AclOperation::Describe],
    );
    acls.insert(AclBinding::allow(
        principal,
        AclOperation::Read,
        AclResource::Group,
        group_id,
        AclPattern::Literal,
    ));
    acls
}

/// The ACLs a Pipeline's workers need: a group's (Read and Describe on `inputs`, Read on
/// `group_id`; committing the group's offsets in a transaction needs no more) and a
/// transactional producer's (Write and Describe on `outputs` and on the transactional ids
/// `<prefix>-*`, which covers each worker's `<prefix>-<n>` and `<prefix>-<n>.<i>`).
pub fn pipeline_acls(
    user: &str,
    inputs: &[String],
    group_id: &str,
    outputs: &[String],
    prefix: &str,
) -> BTreeSet<AclBinding> {
    let mut acls = group_acls(user, group_id, inputs);
    acls.extend(producer_acls(user, outputs, Some(prefix)));
    acls
}

/// How the ACLs in force differ from those wanted: `missing` (to create, or report) and
/// `extra` (held by the user beyond its path: to delete, or report).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AclDrift {
    pub missing: BTreeSet<AclBinding>,
    pub extra: BTreeSet<AclBinding>,
}

impl AclDrift {
    pub fn is_empty(&self) -> bool {
        self.missing.is_empty() && self.extra.is_empty()
    }
}

/// Compares `wanted` with `in_force` (the broker's ACLs of the user's principal).
pub fn drift(wanted: &BTreeSet<AclBinding>, in_force: &[AclBinding]) -> AclDrift {
    let in_force: BTreeSet<AclBinding> = in_force.iter().cloned().collect();
    AclDrift {
        missing: wanted.difference(&in_force).cloned().collect(),
        extra: in_force.difference(wanted).cloned().collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    fn shown(acls: &BTreeSet<AclBinding>) -> Vec<String> {
        acls.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn a_user_name_names_namespace_kind_and_resource() {
        assert_eq!(
            user_name("Producer", "payments", "orders-writer"),
            "payments.producer.orders-writer"
        );
        assert_ne!(
            user_name("Producer", "a", "x"),
            user_name("ConsumerGroup", "a", "x")
        );
        assert_eq!(principal("a.producer.x"), "User:a.producer.x");
    }

    #[test]
    fn a_transactional_producer_may_write_its_topics_and_use_its_transactional_ids() {
        let acls = producer_acls("u", &strings(&["orders", "audit"]), Some("orders-writer"));
        assert_eq!(
            shown(&acls),
            [
                "Allow User:u Write Topic audit (literal)",
                "Allow User:u Describe Topic audit (literal)",
                "Allow User:u Write Topic orders (literal)",
                "Allow User:u Describe Topic orders (literal)",
                "Allow User:u Write TransactionalId orders-writer- (prefixed)",
                "Allow User:u Describe TransactionalId orders-writer- (prefixed)",
            ]
        );
    }

    #[test]
    fn an_idempotent_producer_gets_no_transactional_id_and_nothing_on_the_cluster() {
        let acls = producer_acls("u", &strings(&["orders"]), None);
        assert_eq!(acls.len(), 2);
        assert!(
            acls.iter()
                .all(|a| a.resource_type == AclResource::Topic && a.pattern == AclPattern::Literal)
        );
    }

    #[test]
    fn a_consumer_group_may_read_its_topics_and_its_group() {
        let acls = group_acls("u", "billing", &strings(&["orders"]));
        assert_eq!(
            shown(&acls),
            [
                "Allow User:u Read Topic orders (literal)",
                "Allow User:u Describe Topic orders (literal)",
                "Allow User:u Read Group billing (literal)",
            ]
        );
    }

    #[test]
    fn a_pipeline_may_read_its_inputs_commit_its_group_and_write_its_outputs() {
        let acls = pipeline_acls("u", &strings(&["in"]), "g", &strings(&["out"]), "p");
        assert_eq!(
            shown(&acls),
            [
                "Allow User:u Read Topic in (literal)",
                "Allow User:u Describe Topic in (literal)",
                "Allow User:u Write Topic out (literal)",
                "Allow User:u Describe Topic out (literal)",
                "Allow User:u Read Group g (literal)",
                "Allow User:u Write TransactionalId p- (prefixed)",
                "Allow User:u Describe TransactionalId p- (prefixed)",
            ]
        );
    }

    #[test]
    fn drift_lists_what_is_missing_and_what_is_held_beyond_the_path() {
        let wanted = group_acls("u", "billing", &strings(&["orders"]));
        let mut in_force: Vec<AclBinding> = wanted.iter().skip(1).cloned().collect();
        let stranger = AclBinding::allow(
            "User:u",
            AclOperation::Write,
            AclResource::Topic,
            "payments",
            AclPattern::Literal,
        );
        in_force.push(stranger.clone());
        let drift = drift(&wanted, &in_force);
        assert_eq!(
            drift.missing,
            wanted.iter().take(1).cloned().collect::<BTreeSet<_>>()
        );
        assert_eq!(drift.extra, BTreeSet::from([stranger]));
        assert!(super::drift(&wanted, &wanted.iter().cloned().collect::<Vec<_>>()).is_empty());
    }
}

#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;

    fn names() -> impl Strategy<Value = Vec<String>> {
        proptest::collection::vec("[a-z][a-z0-9.-]{0,20}", 0..6)
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 10_000, ..ProptestConfig::default() })]

        #[test]
        fn a_workload_s_acls_allow_only_its_own_user_on_named_topics_groups_and_ids(
            user in "[a-z][a-z0-9.-]{0,30}",
            topics in names(),
            prefix in proptest::option::of("[a-z][a-z0-9.-]{0,20}"),
            group in "[a-z][a-z0-9.-]{0,20}",
        ) {
            let producer = producer_acls(&user, &topics, prefix.as_deref());
            let group = group_acls(&user, &group, &topics);
            for acl in producer.iter().chain(group.iter()) {
                prop_assert_eq!(&acl.principal, &principal(&user));
                prop_assert_eq!(acl.permission, crate::kafka::acl::AclPermission::Allow);
                prop_assert!(acl.resource_type != AclResource::Cluster, "{}", acl);
                prop_assert!(acl.operation != AclOperation::All, "{}", acl);
                prop_assert!(!acl.name.is_empty() && acl.name != "*", "{}", acl);
                // Only transactional ids go by prefix, and only the workload's own.
                if acl.pattern == AclPattern::Prefixed {
                    prop_assert_eq!(acl.resource_type, AclResource::TransactionalId);
                    prop_assert_eq!(Some(acl.name.clone()), prefix.as_ref().map(|p| format!("{p}-")));
                }
            }
            // Every topic is covered: a producer writes it, a group reads it.
            for topic in &topics {
                prop_assert!(producer.iter().any(|a| &a.name == topic && a.operation == AclOperation::Write));
                prop_assert!(group.iter().any(|a| &a.name == topic && a.operation == AclOperation::Read));
                prop_assert!(!group.iter().any(|a| &a.name == topic && a.operation == AclOperation::Write));
            }
        }
    }
}
