//! Properties of the pure planners, renderers and status functions, over arbitrary specs and
//! observed broker states (issue #11): none panics, and each keeps its invariant. 10 000 cases
//! each; they are cheap (a few microseconds a case).

use std::collections::BTreeMap;

use proptest::prelude::*;
use proptest::strategy::LazyJust;

use crate::api::conditions::{self, types};
use crate::api::{
    ClusterRef, Condition, ConditionStatus, DeletionPolicy, DriftPolicy, Guarantee, Isolation,
    ProducerSpec, Topic, TopicSpec,
};
use crate::kafka::{KafkaError, TopicDescription};

use super::lag::{self, PartitionOffsets};
use super::producer_config::{self, parse_properties};
use super::topic::{self, ObservedTopic, TopicChange, TopicOutcome};

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 10_000,
        // XorShift rather than the default ChaCha: the same cases, generated about four times
        // faster in a debug build (the ChaCha generator dominated the run's time).
        rng_algorithm: proptest::test_runner::RngAlgorithm::XorShift,
        ..ProptestConfig::default()
    }
}

/// A topic configuration: a few well-known keys with small values, so spec and broker overlap.
fn topic_config() -> impl Strategy<Value = BTreeMap<String, String>> {
    let key = proptest::sample::select(vec![
        "retention.ms",
        "cleanup.policy",
        "min.insync.replicas",
        "segment.bytes",
        "compression.type",
    ]);
    let value = proptest::sample::select(vec!["", "1", "2", "delete", "compact", "1000"]);
    proptest::collection::btree_map(
        key.prop_map(String::from),
        value.prop_map(String::from),
        0..5,
    )
}

fn topic_resource(
    partitions: i32,
    replication: Option<i32>,
    config: BTreeMap<String, String>,
    deletion: DeletionPolicy,
    drift: DriftPolicy,
) -> Topic {
    let mut topic = Topic::new(
        "orders",
        TopicSpec {
            cluster_ref: ClusterRef::kafka("main"),
            topic_name: None,
            partitions,
            replication_factor: replication,
            config,
            deletion_policy: deletion,
            drift_policy: drift,
            pulsar: None,
        },
    );
    topic.metadata.generation = Some(1);
    topic
}

fn description(partitions: i32, replication: i32) -> TopicDescription {
    TopicDescription {
        name: "orders".into(),
        partitions,
        replication_factor: replication,
        topic_id: Some("id".into()),
    }
}

/// A short word for a message, a code or a name.
fn word() -> impl Strategy<Value = String> {
    proptest::sample::select(vec!["", "timeout", "INVALID_CONFIG", "x"]).prop_map(String::from)
}

fn kafka_error() -> impl Strategy<Value = KafkaError> {
    prop_oneof![
        word().prop_map(|m| KafkaError::Unreachable {
            bootstrap: "k:9092".into(),
            message: m
        }),
        word().prop_map(|c| KafkaError::Refused {
            operation: "create",
            resource: "orders".into(),
            code: c
        }),
        word().prop_map(KafkaError::Protocol),
    ]
}

/// A failure of either backend.
fn backend_error() -> impl Strategy<Value = crate::backend::Error> {
    prop_oneof![
        kafka_error().prop_map(Into::into),
        word().prop_map(|m| crate::pulsar::PulsarError::Unreachable {
            url: "http://p:8080".into(),
            message: m
        }
        .into()),
        (400u16..600, word()).prop_map(|(status, reason)| crate::pulsar::PulsarError::Refused {
            operation: "create the partitioned topic",
            resource: "persistent://t/ns/orders".into(),
            status,
            reason
        }
        .into()),
    ]
}

fn condition_status() -> impl Strategy<Value = ConditionStatus> {
    prop_oneof![
        Just(ConditionStatus::True),
        Just(ConditionStatus::False),
        Just(ConditionStatus::Unknown)
    ]
}

/// Conditions as a previous status may hold them, of the given types (one of each at most, as
/// the operator writes them), in any state and with old transition times.
fn previous_conditions(kinds: &'static [&'static str]) -> impl Strategy<Value = Vec<Condition>> {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use k8s_openapi::jiff::Timestamp;
    let condition = (
        proptest::sample::select(kinds),
        condition_status(),
        proptest::sample::select(vec!["A", "Reconciled", "WorkersReady"]),
        proptest::sample::select(vec!["", "x"]),
        proptest::option::of(0i64..3),
        0i64..1_000_000,
    )
        .prop_map(
            |(type_, status, reason, message, generation, at)| Condition {
                last_transition_time: Time(
                    Timestamp::from_second(at).unwrap_or(Timestamp::UNIX_EPOCH),
                ),
                ..Condition::new(type_, status, reason, message, generation)
            },
        );
    proptest::collection::vec(condition, 0..6).prop_map(|mut list| {
        let mut seen = Vec::new();
        list.retain(|c| {
            let first = !seen.contains(&c.type_);
            seen.push(c.type_.clone());
            first
        });
        list
    })
}

/// Whether no two conditions share a type.
fn one_of_each_type(conditions: &[Condition]) -> bool {
    let mut types: Vec<&str> = conditions.iter().map(|c| c.type_.as_str()).collect();
    let all = types.len();
    types.sort_unstable();
    types.dedup();
    types.len() == all
}

/// The status of the condition of `type_`, if present.
fn status_of(conditions: &[Condition], type_: &str) -> Option<ConditionStatus> {
    conditions::find(conditions, type_).map(|c| c.status)
}

/// The first condition of `after` whose status is the one it had in `before` but whose
/// transition time moved, if any.
fn moved_transition_time(before: &[Condition], after: &[Condition]) -> Option<String> {
    after.iter().find_map(|c| {
        let old = conditions::find(before, &c.type_)?;
        (old.status == c.status && old.last_transition_time != c.last_transition_time)
            .then(|| format!("{}: {:?} -> {:?}", c.type_, old, c))
    })
}

mod topic_plans {
    use super::*;

    proptest! {
        #![proptest_config(config())]

        #[test]
        fn a_topic_plan_never_decreases_partitions(
            want in any::<i32>(), have in any::<i32>(),
            want_rf in proptest::option::of(1i32..5), have_rf in 1i32..5,
        ) {
            let topic = topic_resource(want, want_rf, BTreeMap::new(), DeletionPolicy::Retain, DriftPolicy::Revert);
            match topic::plan_topic_change(&topic, Some(&description(have, have_rf))) {
                TopicChange::GrowPartitions { from, to } => {
                    prop_assert!(to > from);
                    prop_assert_eq!((from, to), (have, want));
                }
                TopicChange::PartitionDecrease { have: h, want: w } => prop_assert!(w < h),
                TopicChange::None => prop_assert_eq!(want, have),
                TopicChange::ReplicationChange { have: h, want: w } => prop_assert_ne!(h, w),
                TopicChange::Create(_) => prop_assert!(false, "a topic that exists is not created"),
            }
        }

        #[test]
        fn a_missing_topic_is_created_as_declared(
            want in any::<i32>(), rf in proptest::option::of(any::<i32>()), config in topic_config(),
        ) {
            let topic = topic_resource(want, rf, config.clone(), DeletionPolicy::Retain, DriftPolicy::Revert);
            match topic::plan_topic_change(&topic, None) {
                TopicChange::Create(request) => {
                    prop_assert_eq!(request.partitions, want);
                    prop_assert_eq!(request.replication_factor, rf);
                    prop_assert_eq!(request.config, config);
                }
                other => prop_assert!(false, "{other:?}"),
            }
        }

        #[test]
        fn a_reverted_config_plan_makes_the_topic_s_config_the_spec(
            spec in topic_config(), on_topic in topic_config(), applied in any::<bool>(),
        ) {
            let plan = topic::plan_config(&spec, &on_topic, DriftPolicy::Revert, applied);
            let mut after = on_topic.clone();
            for key in &plan.delete {
                after.remove(key);
            }
            after.extend(plan.set.clone());
            prop_assert_eq!(after, spec);
            prop_assert!(plan.drift.is_empty());
        }

        #[test]
        fn an_applied_spec_under_report_or_ignore_never_alters_the_topic(
            spec in topic_config(), on_topic in topic_config(),
            policy in prop_oneof![Just(DriftPolicy::Report), Just(DriftPolicy::Ignore)],
        ) {
            let plan = topic::plan_config(&spec, &on_topic, policy, true);
            prop_assert!(!plan.alters(), "{plan:?}");
            if policy == DriftPolicy::Ignore {
                prop_assert!(plan.drift.is_empty());
            }
            // Report lists each differing key once, sorted.
            let keys: Vec<&String> = plan.drift.iter().map(|d| &d.key).collect();
            prop_assert!(keys.windows(2).all(|w| w[0] < w[1]), "{keys:?}");
        }
    }
}

mod topic_status {
    use super::*;

    fn outcome() -> impl Strategy<Value = TopicOutcome> {
        prop_oneof![
            (1i32..50, 1i32..4, topic_config()).prop_map(|(p, rf, config)| TopicOutcome::InSync(
                ObservedTopic {
                    description: description(p, rf),
                    config,
                    drift: Vec::new(),
                }
            )),
            LazyJust::new(|| TopicOutcome::ClusterNotFound {
                kind: crate::api::ClusterKind::KafkaCluster,
                cluster: "main".into()
            }),
            backend_error().prop_map(TopicOutcome::Retrying),
            backend_error().prop_map(TopicOutcome::Refused),
            (1i32..50, word()).prop_map(|(p, message)| TopicOutcome::NotSupported {
                observed: description(p, 3),
                message,
            }),
            LazyJust::new(|| TopicOutcome::Conflict {
                owner: "ns/older".into()
            }),
            proptest::collection::vec(word(), 0..3)
                .prop_map(|reasons| TopicOutcome::DeletionBlocked { reasons }),
        ]
    }

    proptest! {
        #![proptest_config(config())]

        #[test]
        fn topic_status_never_holds_two_conditions_of_one_type(
            outcomes in proptest::collection::vec(outcome(), 1..4),
            generations in proptest::collection::vec(proptest::option::of(0i64..3), 4),
        ) {
            let mut status = None;
            for (outcome, generation) in outcomes.iter().zip(generations) {
                let next = topic::topic_status(generation, status.as_ref(), outcome);
                let mut types: Vec<&str> = next.conditions.iter().map(|c| c.type_.as_str()).collect();
                let all = types.len();
                types.sort_unstable();
                types.dedup();
                prop_assert_eq!(types.len(), all, "{:?}", next.conditions);
                prop_assert!(conditions::find(&next.conditions, types::READY).is_some());
                status = Some(next);
            }
        }

        #[test]
        fn topic_status_keeps_transition_times_of_conditions_whose_status_did_not_change(
            first in outcome(), second in outcome(),
        ) {
            let before = topic::topic_status(Some(1), None, &first);
            let after = topic::topic_status(Some(1), Some(&before), &second);
            for condition in &after.conditions {
                if let Some(old) = conditions::find(&before.conditions, &condition.type_)
                    && old.status == condition.status
                {
                    prop_assert_eq!(&old.last_transition_time, &condition.last_transition_time);
                }
            }
        }

        #[test]
        fn topic_status_of_the_same_outcome_twice_is_unchanged(outcome in outcome()) {
            let once = topic::topic_status(Some(1), None, &outcome);
            let twice = topic::topic_status(Some(1), Some(&once), &outcome);
            prop_assert_eq!(once, twice);
        }
    }
}

mod producer_config_render {
    use super::*;

    /// Overrides mixing the keys that matter with harmless ones, and values of every shape
    /// (line breaks, `=`, backslashes, case and spaces).
    fn overrides() -> impl Strategy<Value = BTreeMap<String, String>> {
        let key = prop_oneof![
            proptest::sample::select(vec![
                "acks",
                "request.required.acks",
                "enable.idempotence",
                "max.in.flight.requests.per.connection",
                "max.in.flight",
                "retries",
                "message.send.max.retries",
                "transactional.id",
                "transaction.timeout.ms",
                "bootstrap.servers",
                "linger.ms",
                "compression.type",
            ])
            .prop_map(String::from),
            proptest::sample::select(vec!["linger.ms=5\nacks", "a b", "key:x", "x\\", ""])
                .prop_map(String::from),
        ];
        let value = prop_oneof![
            proptest::sample::select(vec![
                "all", "ALL", " all ", "-1", "1", "0", "true", "TRUE", "false", "5", "6", "zstd",
                "",
            ])
            .prop_map(String::from),
            // A value that would smuggle a line into the properties file, or join the next one.
            proptest::sample::select(vec![
                "5\nacks=1",
                "5\r\nenable.idempotence=false",
                "5\rmax.in.flight.requests.per.connection=50",
                "zstd\\",
                "a=b",
            ])
            .prop_map(String::from),
        ];
        proptest::collection::btree_map(key, value, 0..6)
    }

    fn producer_spec() -> impl Strategy<Value = ProducerSpec> {
        (
            prop_oneof![Just(Guarantee::ExactlyOnce), Just(Guarantee::AtLeastOnce)],
            proptest::option::of(prop_oneof![
                proptest::sample::select(vec!["60s", "2h", "1h30m", "0s", "1d", "15m", "1.5s", ""])
                    .prop_map(String::from),
                (0u64..20_000_000).prop_map(|ms| format!("{ms}ms")),
            ]),
            overrides(),
        )
            .prop_map(
                |(guarantee, transaction_timeout, client_overrides)| ProducerSpec {
                    cluster_ref: ClusterRef::kafka("main"),
                    topics: Vec::new(),
                    transactional_id_prefix: "orders-writer".into(),
                    instances: None,
                    stateful_set_ref: None,
                    guarantee,
                    transaction_timeout,
                    client_overrides,
                    authentication: None,
                    consumer_group_ref: None,
                },
            )
    }

    fn lower(value: Option<&String>) -> Option<String> {
        value.map(|v| v.trim().to_ascii_lowercase())
    }

    proptest! {
        #![proptest_config(config())]

        #[test]
        fn a_rendered_producer_config_always_has_idempotence_and_acks_all(
            spec in producer_spec(), instances in 0i32..4, broker_max in 1i64..10_000_000,
        ) {
            let Ok(files) = producer_config::render(&spec, instances, "k:9092", broker_max, &BTreeMap::new()) else {
                return Ok(());
            };
            prop_assert_eq!(files.len(), usize::try_from(instances.max(1)).unwrap_or(1));
            for (ordinal, (_, text)) in files.iter().enumerate() {
                // Read back as a client reads the file: what an override smuggled in shows here.
                let props = parse_properties(text);
                let idempotence = lower(props.get("enable.idempotence"));
                prop_assert_eq!(idempotence.as_deref(), Some("true"), "{}", text);
                let acks = lower(props.get("acks"));
                prop_assert!(matches!(acks.as_deref(), Some("all" | "-1")), "{}", text);
                let legacy_acks = lower(props.get("request.required.acks"));
                prop_assert!(matches!(legacy_acks.as_deref(), None | Some("all" | "-1")), "{}", text);
                let in_flight = props.get("max.in.flight.requests.per.connection").and_then(|v| v.trim().parse::<i64>().ok());
                prop_assert!(in_flight.is_some_and(|n| (1..=producer_config::MAX_IN_FLIGHT).contains(&n)), "{}", text);
                match spec.guarantee {
                    Guarantee::ExactlyOnce => prop_assert_eq!(
                        props.get("transactional.id").cloned(),
                        Some(format!("orders-writer-{ordinal}"))
                    ),
                    Guarantee::AtLeastOnce => prop_assert!(!props.contains_key("transactional.id")),
                }
                prop_assert_eq!(props.get("bootstrap.servers").map(String::as_str), Some("k:9092"));
            }
        }

        #[test]
        fn a_refused_producer_config_names_every_offending_key(
            spec in producer_spec(), broker_max in 1i64..10_000_000,
        ) {
            let violations = producer_config::check_overrides(&spec);
            let result = producer_config::render(&spec, 1, "k:9092", broker_max, &BTreeMap::new());
            match &result {
                Ok(_) => prop_assert!(violations.is_empty()),
                Err(refused) => {
                    prop_assert!(!refused.is_empty());
                    for v in refused {
                        prop_assert!(
                            spec.client_overrides.contains_key(&v.key) || v.key == "spec.transactionTimeout",
                            "{v:?}"
                        );
                        prop_assert!(!v.message.is_empty());
                    }
                    for v in &violations {
                        prop_assert!(refused.contains(v));
                    }
                }
            }
            // The guarantee's own keys are refused whenever their value would weaken it.
            for (key, value) in &spec.client_overrides {
                let v = value.trim().to_ascii_lowercase();
                let weakens = match key.as_str() {
                    "acks" | "request.required.acks" => v != "all" && v != "-1",
                    "enable.idempotence" => v != "true",
                    "transactional.id" | "bootstrap.servers" | "transaction.timeout.ms" => true,
                    _ => false,
                };
                if weakens {
                    prop_assert!(violations.iter().any(|x| &x.key == key), "{key}={value} not refused");
                }
            }
        }
    }
}

mod condition_merging {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use k8s_openapi::jiff::Timestamp;

    fn condition() -> impl Strategy<Value = Condition> {
        (
            proptest::sample::select(vec![
                types::READY,
                types::RECONCILING,
                types::STALLED,
                "Drifted",
            ]),
            prop_oneof![
                Just(ConditionStatus::True),
                Just(ConditionStatus::False),
                Just(ConditionStatus::Unknown)
            ],
            proptest::sample::select(vec!["A", "B"]),
            proptest::sample::select(vec!["", "x"]),
            proptest::option::of(0i64..3),
            0i64..1_000_000,
        )
            .prop_map(
                |(type_, status, reason, message, generation, at)| Condition {
                    last_transition_time: Time(
                        Timestamp::from_second(at).unwrap_or(Timestamp::UNIX_EPOCH),
                    ),
                    ..Condition::new(type_, status, reason, message, generation)
                },
            )
    }

    /// Conditions as a status holds them: one of each type at most.
    fn held() -> impl Strategy<Value = Vec<Condition>> {
        proptest::collection::vec(condition(), 0..5).prop_map(|mut list| {
            let mut seen = Vec::new();
            list.retain(|c| {
                let first = !seen.contains(&c.type_);
                seen.push(c.type_.clone());
                first
            });
            list
        })
    }

    proptest! {
        #![proptest_config(config())]

        #[test]
        fn merged_conditions_never_hold_two_of_one_type(
            previous in held(), desired in proptest::collection::vec(condition(), 0..6),
        ) {
            let merged = conditions::merge(&previous, desired);
            let mut types: Vec<&str> = merged.iter().map(|c| c.type_.as_str()).collect();
            let all = types.len();
            types.sort_unstable();
            types.dedup();
            prop_assert_eq!(types.len(), all);
        }

        #[test]
        fn merging_keeps_the_transition_time_when_the_status_did_not_change(
            previous in held(), desired in proptest::collection::vec(condition(), 0..6),
        ) {
            let merged = conditions::merge(&previous, desired.clone());
            for old in &previous {
                let now = conditions::find(&merged, &old.type_);
                prop_assert!(now.is_some(), "a condition not recomputed is kept");
                if let Some(now) = now
                    && now.status == old.status
                {
                    prop_assert_eq!(&now.last_transition_time, &old.last_transition_time);
                }
            }
            // The last desired condition of each type is what a reader sees.
            for wanted in &desired {
                let last = desired.iter().rev().find(|c| c.type_ == wanted.type_);
                let now = conditions::find(&merged, &wanted.type_);
                prop_assert!(now.zip(last).is_some_and(|(n, l)| n.same_state(l)));
            }
        }

        #[test]
        fn upsert_reports_a_change_exactly_when_a_reader_would_see_one(
            previous in held(), desired in condition(),
        ) {
            let mut conditions = previous.clone();
            let changed = conditions::upsert(&mut conditions, desired.clone());
            let before = conditions::find(&previous, &desired.type_);
            prop_assert_eq!(changed, !before.is_some_and(|b| b.same_state(&desired)));
            prop_assert_eq!(changed, conditions != previous);
        }
    }
}

mod group_lag {
    use super::*;

    fn offsets() -> impl Strategy<Value = PartitionOffsets> {
        (any::<i64>(), any::<i64>(), any::<i64>()).prop_map(|(log_start, log_end, last_stable)| {
            PartitionOffsets {
                log_start,
                log_end,
                last_stable,
            }
        })
    }

    fn topic_name() -> impl Strategy<Value = String> {
        proptest::sample::select(vec!["a", "b", "c"]).prop_map(String::from)
    }

    fn isolation() -> impl Strategy<Value = Isolation> {
        prop_oneof![
            Just(Isolation::ReadCommitted),
            Just(Isolation::ReadUncommitted)
        ]
    }

    proptest! {
        #![proptest_config(config())]

        #[test]
        fn partition_lag_is_never_negative_whatever_the_brokers_report(
            offsets in offsets(), committed in proptest::option::of(any::<i64>()), isolation in isolation(),
        ) {
            prop_assert!(lag::partition_lag(&offsets, committed, isolation) >= 0);
        }

        #[test]
        fn group_lag_lists_at_most_top_partitions_and_counts_the_rest(
            partitions in proptest::collection::btree_map((topic_name(), 0i32..4), offsets(), 0..30),
            committed in proptest::collection::btree_map((topic_name(), 0i32..4), any::<i64>(), 0..30),
            isolation in isolation(), top in 0usize..25,
        ) {
            let group = lag::group_lag(&partitions, &committed, isolation, top);
            prop_assert!(group.partitions.len() <= top);
            prop_assert_eq!(group.all.len(), partitions.len());
            prop_assert_eq!(
                usize::try_from(group.omitted).unwrap_or(usize::MAX) + group.partitions.len(),
                partitions.len()
            );
            prop_assert!(group.total >= 0);
            prop_assert!(group.partitions.windows(2).all(|w| w[0].lag >= w[1].lag));
            prop_assert!(group.partitions.iter().all(|p| p.lag <= group.total));
        }
    }
}

mod broker_rules {
    use super::*;
    use crate::api::ExactlyOnceSettings;
    use crate::controller::eos;

    fn setting() -> impl Strategy<Value = Option<i64>> {
        proptest::option::of(prop_oneof![-2i64..6, any::<i64>()])
    }

    fn settings() -> impl Strategy<Value = ExactlyOnceSettings> {
        (
            (setting(), setting(), setting(), setting(), setting()),
            proptest::option::of(any::<bool>()),
            setting(),
            proptest::option::of(any::<i32>()),
        )
            .prop_map(
                |((tsl_rf, tsl_isr, offsets_rf, default_rf, min_isr), unclean, max_timeout, tv)| {
                    ExactlyOnceSettings {
                        transaction_state_log_replication_factor: tsl_rf,
                        transaction_state_log_min_isr: tsl_isr,
                        offsets_topic_replication_factor: offsets_rf,
                        default_replication_factor: default_rf,
                        min_insync_replicas: min_isr,
                        unclean_leader_election_enable: unclean,
                        transaction_max_timeout_ms: max_timeout,
                        transaction_version: tv,
                        source: None,
                    }
                },
            )
    }

    proptest! {
        #![proptest_config(config())]

        #[test]
        fn broker_rules_judge_every_rule_once_whatever_the_brokers_report(
            brokers in prop_oneof![0i32..6, any::<i32>()], settings in settings(),
        ) {
            let rules = eos::check(brokers, &settings);
            let mut names: Vec<&str> = rules.iter().map(|r| r.rule).collect();
            let all = names.len();
            names.sort_unstable();
            names.dedup();
            prop_assert_eq!(names.len(), all);
            prop_assert!(rules.iter().all(|r| r.failure.as_ref().is_none_or(|f| !f.is_empty())));
        }
    }
}

mod group_objective {
    use super::*;
    use crate::api::{ConsumerGroup, ConsumerGroupSpec, LagObjective, TopicRef};
    use crate::controller::group;
    use std::time::Duration;

    pub(super) fn consumer_group(objective: Option<LagObjective>) -> ConsumerGroup {
        let mut g = ConsumerGroup::new(
            "billing",
            ConsumerGroupSpec {
                cluster_ref: ClusterRef::kafka("main"),
                group_id: None,
                topics: vec![TopicRef {
                    name: "orders".into(),
                }],
                isolation: Isolation::ReadCommitted,
                lag_objective: objective,
                offset_reset: None,
                authentication: None,
                pulsar: None,
            },
        );
        g.metadata.generation = Some(1);
        g
    }

    pub(super) fn objective() -> impl Strategy<Value = Option<LagObjective>> {
        proptest::option::of(
            (
                proptest::option::of(prop_oneof![0i64..100, any::<i64>()]),
                proptest::option::of(prop_oneof![
                    proptest::sample::select(vec![
                        "60s", "5m", "1h30m", "1.5h", "0", "1d", "", "-1s"
                    ])
                    .prop_map(String::from),
                    (0u64..100_000).prop_map(|ms| format!("{ms}ms")),
                ]),
            )
                .prop_map(|(max_lag, max_commit_age)| LagObjective {
                    max_lag,
                    max_commit_age,
                }),
        )
    }

    proptest! {
        #![proptest_config(config())]

        #[test]
        fn a_met_lag_objective_is_within_both_bounds(
            objective in objective(), total_lag in prop_oneof![0i64..200, any::<i64>()],
            since in proptest::option::of((0u64..200_000).prop_map(Duration::from_millis)),
        ) {
            let g = consumer_group(objective.clone());
            let judged = group::objective_met(&g, total_lag, since);
            prop_assert_eq!(judged.is_some(), objective.is_some());
            if let (Some((true, _)), Some(objective)) = (&judged, &objective) {
                prop_assert!(objective.max_lag.is_none_or(|max| total_lag <= max));
                let age = objective.max_commit_age.as_deref().and_then(|t| crate::api::group::MAX_COMMIT_AGE.parse(t).ok());
                if let (Some(age), Some(since)) = (age, since) && total_lag > 0 {
                    prop_assert!(since <= age);
                }
            }
        }
    }
}

mod pipeline_durations {
    use super::*;
    use crate::api::Pipeline;
    use crate::api::pipeline::{COMMIT_INTERVAL, TRANSACTION_TIMEOUT};
    use crate::controller::pipeline;

    fn duration_text() -> impl Strategy<Value = Option<String>> {
        proptest::option::of(prop_oneof![
            proptest::sample::select(vec![
                "100ms", "1s", "1m30s", "1.5s", "0s", "0", "2h", "1d", "", "600h"
            ])
            .prop_map(String::from),
            (0u64..3_000_000_000).prop_map(|ms| format!("{ms}ms")),
        ])
    }

    fn pipeline_with(
        commit_interval: Option<String>,
        transaction_timeout: Option<String>,
    ) -> Option<Pipeline> {
        let spec = serde_json::json!({
            "clusterRef": {"name": "main"},
            "input": {"topics": [{"name": "orders"}]},
            "output": {"topicRef": {"name": "charges"}},
            "commitInterval": commit_interval,
            "transactionTimeout": transaction_timeout,
        });
        let mut p = Pipeline::new("billing", serde_json::from_value(spec).ok()?);
        p.metadata.namespace = Some("shop".into());
        Some(p)
    }

    proptest! {
        #![proptest_config(config())]

        #[test]
        fn a_pipeline_s_worker_config_takes_its_durations_through_the_one_parser(
            commit_interval in duration_text(), transaction_timeout in duration_text(),
        ) {
            let p = pipeline_with(commit_interval.clone(), transaction_timeout.clone());
            prop_assert!(p.is_some());
            let Some(p) = p else { return Ok(()) };
            let rendered = pipeline::render_worker_config(&p, "k:9092", &BTreeMap::new(), &BTreeMap::new());
            let interval = COMMIT_INTERVAL.parse_millis(commit_interval.as_deref().unwrap_or("100ms"));
            let timeout = TRANSACTION_TIMEOUT.parse_millis(transaction_timeout.as_deref().unwrap_or("60s"));
            match (&rendered, interval, timeout) {
                (Ok(config), Ok(i), Ok(t)) => {
                    prop_assert_eq!(u64::from(config.commit_interval_ms), i);
                    prop_assert_eq!(u64::from(config.transaction_timeout_ms), t);
                    prop_assert!(config.commit_interval_ms >= 1 && config.transaction_timeout_ms >= 1);
                }
                (Err(message), i, t) => {
                    prop_assert!(i.is_err() || t.is_err(), "refused valid durations: {message}");
                    prop_assert!(message.starts_with("spec.commitInterval") || message.starts_with("spec.transactionTimeout"), "{message}");
                }
                (Ok(_), i, t) => prop_assert!(false, "accepted {i:?} {t:?}"),
            }
        }
    }
}

mod producer_status {
    use super::*;
    use crate::api::{HangingTransaction, ProducerStatus, TransactionState};
    use crate::controller::producer::{self, HANGING, ProducerOutcome, RESOURCE_CONFLICT};
    use crate::controller::producer_config::ConfigViolation;

    const KINDS: &[&str] = &[
        types::READY,
        types::RECONCILING,
        types::STALLED,
        HANGING,
        RESOURCE_CONFLICT,
        "Drifted",
    ];

    fn hanging() -> impl Strategy<Value = HangingTransaction> {
        (
            proptest::sample::select(vec!["a", "b", "a-1"]),
            0i32..3,
            0i64..4,
            0i64..100,
        )
            .prop_map(
                |(topic, partition, producer_id, start_offset)| HangingTransaction {
                    partition: format!("{topic}-{partition}"),
                    producer_id,
                    producer_epoch: 0,
                    start_offset,
                    last_write: None,
                },
            )
    }

    fn transaction() -> impl Strategy<Value = TransactionState> {
        (
            proptest::sample::select(vec!["w-0", "w-1"]),
            proptest::sample::select(vec!["Ongoing", "PrepareCommit", "CompleteCommit", "Empty"]),
            0i64..4,
            proptest::option::of(0i64..100),
        )
            .prop_map(|(id, state, producer_id, age_seconds)| TransactionState {
                transactional_id: id.into(),
                state: state.into(),
                producer_id,
                producer_epoch: 0,
                timeout_ms: 60_000,
                started: None,
                age_seconds,
                partitions: Vec::new(),
            })
    }

    fn name() -> impl Strategy<Value = String> {
        proptest::sample::select(vec!["w", "ns/older"]).prop_map(String::from)
    }

    /// Every outcome a reconcile can reach, the rendered one twice as often.
    fn outcome() -> impl Strategy<Value = ProducerOutcome> {
        prop_oneof![
            2 => (
                proptest::collection::vec(transaction(), 0..3),
                proptest::collection::vec(hanging(), 0..3),
            )
                .prop_map(|(transactions, hanging)| ProducerOutcome::Rendered {
                    transactions,
                    hanging
                }),
            1 => proptest::collection::vec(
                (proptest::sample::select(vec!["acks", "enable.idempotence"]), word()),
                0..3,
            )
            .prop_map(|violations| ProducerOutcome::Invalid(
                violations
                    .into_iter()
                    .map(|(key, message)| ConfigViolation {
                        key: key.into(),
                        message
                    })
                    .collect()
            )),
            1 => name().prop_map(|owner| ProducerOutcome::Conflict { owner }),
            1 => name().prop_map(|name| ProducerOutcome::WorkloadNotFound { name }),
            1 => name().prop_map(|name| ProducerOutcome::ConsumerGroupNotFound { name }),
            1 => word().prop_map(ProducerOutcome::AuthenticationUnavailable),
            1 => kafka_error().prop_map(ProducerOutcome::Retrying),
        ]
    }

    /// A status as an earlier reconcile (or a person) may have left it.
    fn previous() -> impl Strategy<Value = Option<ProducerStatus>> {
        proptest::option::of(
            (
                previous_conditions(KINDS),
                proptest::option::of(name()),
                proptest::collection::vec(transaction(), 0..2),
                proptest::collection::vec(hanging(), 0..2),
                proptest::option::of(0i32..3),
                proptest::option::of(0i64..3),
            )
                .prop_map(
                    |(
                        conditions,
                        secret_name,
                        transactions,
                        hanging,
                        open,
                        observed_generation,
                    )| {
                        ProducerStatus {
                            observed_generation,
                            conditions,
                            secret_name,
                            open_transactions: open,
                            hanging_transactions: i32::try_from(hanging.len()).ok(),
                            transactions,
                            hanging,
                            ..ProducerStatus::default()
                        }
                    },
                ),
        )
    }

    fn generation() -> impl Strategy<Value = Option<i64>> {
        proptest::option::of(0i64..3)
    }

    proptest! {
        #![proptest_config(config())]

        #[test]
        fn producer_status_never_holds_two_conditions_of_one_type(
            previous in previous(),
            outcomes in proptest::collection::vec(outcome(), 1..4),
            generation in generation(),
        ) {
            let mut status = previous;
            for outcome in &outcomes {
                let next = producer::producer_status(generation, status.as_ref(), "w-client", outcome);
                prop_assert!(one_of_each_type(&next.conditions), "{:?}", next.conditions);
                status = Some(next);
            }
        }

        #[test]
        fn producer_status_of_the_same_outcome_twice_is_unchanged(
            previous in previous(), outcome in outcome(), generation in generation(),
        ) {
            let once = producer::producer_status(generation, previous.as_ref(), "w-client", &outcome);
            let twice = producer::producer_status(generation, Some(&once), "w-client", &outcome);
            prop_assert_eq!(once, twice);
        }

        #[test]
        fn producer_status_keeps_transition_times_of_conditions_whose_status_did_not_change(
            previous in previous(), outcome in outcome(), generation in generation(),
        ) {
            let before = previous.as_ref().map(|s| s.conditions.as_slice()).unwrap_or_default();
            let after = producer::producer_status(generation, previous.as_ref(), "w-client", &outcome);
            let moved = moved_transition_time(before, &after.conditions);
            prop_assert!(moved.is_none(), "{moved:?}");
        }

        #[test]
        fn a_producer_is_ready_exactly_when_its_client_configuration_is_rendered(
            previous in previous(), outcome in outcome(), generation in generation(),
        ) {
            let status = producer::producer_status(generation, previous.as_ref(), "w-client", &outcome);
            let ready = status_of(&status.conditions, types::READY) == Some(ConditionStatus::True);
            prop_assert_eq!(ready, matches!(outcome, ProducerOutcome::Rendered { .. }), "{:?}", status.conditions);
        }

        #[test]
        fn a_producer_is_stalled_exactly_when_only_a_change_of_spec_or_cluster_unblocks_it(
            previous in previous(), outcome in outcome(), generation in generation(),
        ) {
            let status = producer::producer_status(generation, previous.as_ref(), "w-client", &outcome);
            let stalled = status_of(&status.conditions, types::STALLED) == Some(ConditionStatus::True);
            let needs_a_person = matches!(
                outcome,
                ProducerOutcome::Invalid(_)
                    | ProducerOutcome::Conflict { .. }
                    | ProducerOutcome::AuthenticationUnavailable(_)
            );
            prop_assert_eq!(stalled, needs_a_person, "{:?}", status.conditions);
        }

        #[test]
        fn a_rendered_producer_reports_hanging_transactions_exactly_when_there_are_some_naming_each(
            previous in previous(),
            transactions in proptest::collection::vec(transaction(), 0..3),
            hanging in proptest::collection::vec(hanging(), 0..4),
            generation in generation(),
        ) {
            let outcome = ProducerOutcome::Rendered { transactions, hanging: hanging.clone() };
            let status = producer::producer_status(generation, previous.as_ref(), "w-client", &outcome);
            let condition = conditions::find(&status.conditions, HANGING);
            prop_assert!(condition.is_some(), "{:?}", status.conditions);
            let Some(condition) = condition else { return Ok(()) };
            prop_assert_eq!(condition.status == ConditionStatus::True, !hanging.is_empty());
            for h in &hanging {
                let named = format!("{} (producer {}", h.partition, h.producer_id);
                prop_assert!(condition.message.contains(&named), "{} not in {}", named, condition.message);
            }
            prop_assert_eq!(status.hanging_transactions, i32::try_from(hanging.len()).ok());
            prop_assert_eq!(&status.hanging, &hanging);
        }

        /// Invalid, WorkloadNotFound, ConsumerGroupNotFound and AuthenticationUnavailable are
        /// only reached once `prefix_owner` found no older Producer holding the prefix.
        #[test]
        fn a_producer_s_resource_conflict_clears_once_its_prefix_was_found_free(
            previous in previous(), owner in name(), outcome in outcome(), generation in generation(),
        ) {
            let found_free = matches!(
                outcome,
                ProducerOutcome::Rendered { .. }
                    | ProducerOutcome::Invalid(_)
                    | ProducerOutcome::WorkloadNotFound { .. }
                    | ProducerOutcome::ConsumerGroupNotFound { .. }
                    | ProducerOutcome::AuthenticationUnavailable(_)
            );
            if !found_free {
                return Ok(());
            }
            // The older Producer held the prefix at the last reconcile, and is gone now.
            let conflict = ProducerOutcome::Conflict { owner };
            let before = producer::producer_status(generation, previous.as_ref(), "w-client", &conflict);
            let after = producer::producer_status(generation, Some(&before), "w-client", &outcome);
            let left = conditions::find(&after.conditions, RESOURCE_CONFLICT);
            prop_assert!(
                left.is_none_or(|c| c.status != ConditionStatus::True),
                "{outcome:?} after a conflict left {left:?}"
            );
        }
    }
}

mod producer_transactions {
    use super::*;
    use crate::controller::observe::Partition;
    use crate::controller::producer;
    use crate::kafka::{ProducerState, TopicPartition, TransactionDescription};
    use k8s_openapi::jiff::Timestamp;
    use std::collections::BTreeSet;

    fn producer_state() -> impl Strategy<Value = ProducerState> {
        (
            0i64..6,
            any::<i16>(),
            prop_oneof![-2i64..4, any::<i64>()],
            any::<i64>(),
        )
            .prop_map(
                |(producer_id, producer_epoch, current_txn_start_offset, last_timestamp)| {
                    ProducerState {
                        producer_id,
                        producer_epoch,
                        last_sequence: 0,
                        last_timestamp,
                        coordinator_epoch: -1,
                        current_txn_start_offset,
                    }
                },
            )
    }

    /// What `DescribeProducers` reports for a few partitions.
    fn producers() -> impl Strategy<Value = BTreeMap<Partition, Vec<ProducerState>>> {
        proptest::collection::btree_map(
            (
                proptest::sample::select(vec!["a", "b", "a-1"]).prop_map(String::from),
                0i32..3,
            ),
            proptest::collection::vec(producer_state(), 0..4),
            0..5,
        )
    }

    /// Producer ids the transaction coordinators list.
    fn tracked() -> impl Strategy<Value = BTreeSet<i64>> {
        proptest::collection::btree_set(0i64..6, 0..6)
    }

    fn description() -> impl Strategy<Value = TransactionDescription> {
        (
            proptest::sample::select(vec!["w-0", "w-1", "x"]),
            proptest::sample::select(vec![
                "Ongoing",
                "PrepareCommit",
                "PrepareAbort",
                "PrepareEpochFence",
                "CompleteCommit",
                "CompleteAbort",
                "Empty",
                "Dead",
            ]),
            prop_oneof![-2i64..5_000_000, any::<i64>()],
            proptest::collection::vec((proptest::sample::select(vec!["a", "b"]), 0i32..3), 0..3),
        )
            .prop_map(
                |(id, state, start_time_ms, partitions)| TransactionDescription {
                    transactional_id: id.into(),
                    coordinator: 1,
                    state: state.into(),
                    producer_id: 5,
                    producer_epoch: 0,
                    timeout_ms: 60_000,
                    start_time_ms,
                    partitions: partitions
                        .into_iter()
                        .map(|(t, p)| TopicPartition::new(t, p))
                        .collect(),
                },
            )
    }

    fn described() -> impl Strategy<Value = BTreeMap<String, TransactionDescription>> {
        proptest::collection::btree_map(
            proptest::sample::select(vec!["w-0", "w-1", "w-2"]).prop_map(String::from),
            description(),
            0..4,
        )
    }

    fn ids() -> impl Strategy<Value = Vec<String>> {
        proptest::collection::vec(
            proptest::sample::select(vec!["w-0", "w-1", "w-2", "w-3"]).prop_map(String::from),
            0..4,
        )
    }

    /// The operator's clock: any instant from 1970 on a timestamp can hold, often near the
    /// transactions' start times. (A clock before 1970 would make `now - start` overflow for a
    /// start near `i64::MAX`; the operator's clock never reads that.)
    fn now_ms() -> impl Strategy<Value = i64> {
        prop_oneof![0i64..5_000_000, 0i64..=Timestamp::MAX.as_millisecond()]
    }

    proptest! {
        #![proptest_config(config())]

        #[test]
        fn a_hanging_transaction_is_only_reported_for_a_producer_id_no_coordinator_tracks(
            producers in producers(), tracked in tracked(),
        ) {
            for h in producer::hanging_transactions(&producers, &tracked) {
                prop_assert!(!tracked.contains(&h.producer_id), "{h:?}");
                prop_assert!(h.start_offset >= 0, "{h:?}");
                let reported = producers.iter().any(|((topic, partition), states)| {
                    format!("{topic}-{partition}") == h.partition
                        && states.iter().any(|s| {
                            s.producer_id == h.producer_id
                                && s.current_txn_start_offset == h.start_offset
                        })
                });
                prop_assert!(reported, "{h:?} is not in {producers:?}");
            }
        }

        #[test]
        fn every_open_transaction_no_coordinator_tracks_is_reported_as_hanging(
            producers in producers(), tracked in tracked(),
        ) {
            let mut expected: Vec<(String, i64, i64)> = producers
                .iter()
                .flat_map(|((topic, partition), states)| {
                    states
                        .iter()
                        .filter(|s| s.current_txn_start_offset >= 0 && !tracked.contains(&s.producer_id))
                        .map(move |s| (format!("{topic}-{partition}"), s.producer_id, s.current_txn_start_offset))
                })
                .collect();
            let mut reported: Vec<(String, i64, i64)> = producer::hanging_transactions(&producers, &tracked)
                .into_iter()
                .map(|h| (h.partition, h.producer_id, h.start_offset))
                .collect();
            expected.sort();
            reported.sort();
            prop_assert_eq!(reported, expected);
        }

        #[test]
        fn a_transaction_s_age_is_never_negative(
            ids in ids(), described in described(), now_ms in now_ms(),
        ) {
            for t in producer::transaction_states(&ids, &described, now_ms) {
                prop_assert!(t.age_seconds.is_none_or(|age| age >= 0), "{t:?} at {now_ms}");
            }
        }

        #[test]
        fn only_an_open_transaction_has_a_start_an_age_and_partitions(
            ids in ids(), described in described(), now_ms in now_ms(),
        ) {
            for t in producer::transaction_states(&ids, &described, now_ms) {
                if !producer::is_open(&t.state) {
                    prop_assert!(
                        t.age_seconds.is_none() && t.started.is_none() && t.partitions.is_empty(),
                        "{t:?}"
                    );
                }
            }
        }
    }
}

mod consumer_group_status {
    use super::group_objective::{consumer_group, objective};
    use super::*;
    use crate::api::{ConsumerGroup, ConsumerGroupStatus, GroupMember, LagObjective};
    use crate::controller::group::{self, GroupObservation, LAG_OBJECTIVE_MET};
    use std::time::Duration;

    const KINDS: &[&str] = &[
        types::READY,
        types::RECONCILING,
        types::STALLED,
        LAG_OBJECTIVE_MET,
        "Drifted",
    ];

    fn previous() -> impl Strategy<Value = Option<ConsumerGroupStatus>> {
        proptest::option::of(
            (
                previous_conditions(KINDS),
                proptest::option::of(0i32..40),
                proptest::option::of(0i32..40),
                seen(),
            )
                .prop_map(
                    |(conditions, member_count, partitions_omitted, last_commit_seen)| {
                        ConsumerGroupStatus {
                            observed_generation: Some(0),
                            conditions,
                            state: Some("Stable".into()),
                            member_count,
                            partitions_omitted,
                            last_commit_seen,
                            ..ConsumerGroupStatus::default()
                        }
                    },
                ),
        )
    }

    fn group_with(
        objective: Option<LagObjective>,
        previous: Option<ConsumerGroupStatus>,
    ) -> ConsumerGroup {
        let mut g = consumer_group(objective);
        g.status = previous;
        g
    }

    fn offset() -> impl Strategy<Value = i64> {
        prop_oneof![0i64..100, any::<i64>()]
    }

    /// An observation, its lag computed by `lag::group_lag`. Status lists at most
    /// `TOP_MEMBERS` members, so up to 30 are observed (made from a count: cheap to generate
    /// and to shrink); the lag is cut at a small `top` of its own, so a few partitions already
    /// leave some out.
    fn observation() -> impl Strategy<Value = GroupObservation> {
        let partition = || {
            (
                proptest::sample::select(vec!["a", "b"]).prop_map(String::from),
                0i32..4,
            )
        };
        let offsets =
            (offset(), offset(), offset()).prop_map(|(log_start, log_end, last_stable)| {
                PartitionOffsets {
                    log_start,
                    log_end,
                    last_stable,
                }
            });
        (
            proptest::sample::select(vec!["Empty", "Stable", "Dead", ""]),
            0usize..30,
            proptest::collection::btree_map(partition(), offsets, 0..6),
            proptest::collection::btree_map(partition(), offset(), 0..6),
            prop_oneof![
                Just(Isolation::ReadCommitted),
                Just(Isolation::ReadUncommitted)
            ],
            0usize..5,
            proptest::sample::subsequence(vec!["a", "b", "c"], 0..=3),
        )
            .prop_map(
                |(state, members, offsets, committed, isolation, top, missing)| GroupObservation {
                    state: state.into(),
                    members: (0..members)
                        .map(|n| GroupMember {
                            client_id: format!("c{n:02}"),
                            host: "h".into(),
                        })
                        .collect(),
                    lag: lag::group_lag(&offsets, &committed, isolation, top),
                    committed,
                    missing_topics: missing.into_iter().map(String::from).collect(),
                },
            )
    }

    fn seen() -> impl Strategy<Value = Option<String>> {
        proptest::option::of(
            proptest::sample::select(vec!["2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z"])
                .prop_map(String::from),
        )
    }

    fn since() -> impl Strategy<Value = Option<Duration>> {
        proptest::option::of((0u64..200_000).prop_map(Duration::from_millis))
    }

    proptest! {
        #![proptest_config(config())]

        #[test]
        fn group_status_never_holds_two_conditions_of_one_type(
            objective in objective(), previous in previous(),
            observations in proptest::collection::vec((observation(), seen(), since()), 1..3),
        ) {
            let mut g = group_with(objective, previous);
            for (observed, seen, since) in observations {
                let status = group::group_status(&g, &observed, seen, since);
                prop_assert!(one_of_each_type(&status.conditions), "{:?}", status.conditions);
                g.status = Some(status);
            }
        }

        #[test]
        fn group_status_of_the_same_observation_twice_is_unchanged(
            objective in objective(), previous in previous(),
            observed in observation(), seen in seen(), since in since(),
        ) {
            let mut g = group_with(objective, previous);
            let once = group::group_status(&g, &observed, seen.clone(), since);
            g.status = Some(once.clone());
            let twice = group::group_status(&g, &observed, seen, since);
            prop_assert_eq!(once, twice);
        }

        #[test]
        fn a_group_is_ready_exactly_when_none_of_its_topics_is_missing(
            objective in objective(), previous in previous(),
            observed in observation(), seen in seen(), since in since(),
        ) {
            let g = group_with(objective, previous);
            let status = group::group_status(&g, &observed, seen, since);
            let ready = status_of(&status.conditions, types::READY) == Some(ConditionStatus::True);
            prop_assert_eq!(ready, observed.missing_topics.is_empty(), "{:?}", status.conditions);
        }

        #[test]
        fn a_group_counts_every_member_and_lists_the_first_of_them(
            objective in objective(), previous in previous(),
            observed in observation(), seen in seen(), since in since(),
        ) {
            let g = group_with(objective, previous);
            let status = group::group_status(&g, &observed, seen, since);
            prop_assert_eq!(status.member_count, i32::try_from(observed.members.len()).ok());
            let listed = observed.members.len().min(group::TOP_MEMBERS);
            prop_assert_eq!(&status.members[..], &observed.members[..listed]);
        }

        #[test]
        fn a_group_s_listed_and_omitted_partitions_add_up_to_every_partition(
            objective in objective(), previous in previous(),
            observed in observation(), seen in seen(), since in since(),
        ) {
            let g = group_with(objective, previous);
            let status = group::group_status(&g, &observed, seen, since);
            // Said only when some are left out.
            prop_assert_ne!(status.partitions_omitted, Some(0));
            let omitted = status.partitions_omitted.map_or(0, |n| usize::try_from(n).unwrap_or(usize::MAX));
            prop_assert_eq!(status.partitions.len() + omitted, observed.lag.all.len());
            prop_assert_eq!(&status.partitions[..], &observed.lag.all[..status.partitions.len()]);
            prop_assert_eq!(status.total_lag, Some(observed.lag.total));
        }

        #[test]
        fn a_group_without_a_lag_objective_carries_no_lag_objective_condition(
            objective in objective(), previous in previous(),
            observed in observation(), seen in seen(), since in since(),
        ) {
            // Observed under the objective, if any, which is then removed from the spec.
            let mut g = group_with(objective, previous);
            g.status = Some(group::group_status(&g, &observed, seen.clone(), since));
            g.spec.lag_objective = None;
            let status = group::group_status(&g, &observed, seen, since);
            let stale = conditions::find(&status.conditions, LAG_OBJECTIVE_MET);
            prop_assert!(stale.is_none(), "{stale:?}");
        }
    }
}

mod pipeline_status {
    use super::group_objective::consumer_group;
    use super::*;
    use crate::api::{
        ConsumerGroup, ConsumerGroupStatus, ExactlyOnceSettings, ExternalCluster, Guarantee,
        KafkaCluster, KafkaClusterSpec, KafkaClusterStatus, PipelineStatus, Producer,
        ProducerStatus,
    };
    use crate::controller::cluster;
    use crate::controller::pipeline::{self, EXACTLY_ONCE_READY, Observed, TopicLink};
    use crate::controller::producer::RESOURCE_CONFLICT;
    use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetStatus};

    const KINDS: &[&str] = &[
        types::READY,
        types::RECONCILING,
        types::STALLED,
        EXACTLY_ONCE_READY,
        "Drifted",
    ];

    /// The links without which `pipeline_status` holds the workers back ("Workers only run
    /// once every link they depend on to start holds"): the others (`Cluster`,
    /// `TransactionTimeout`, `PrefixReservation`) fail `ExactlyOnceReady` only.
    const BLOCKING: [&str; 3] = ["InputTopics", "OutputTopics", "WorkerConfig"];

    /// What an `Observed` borrows, owned.
    #[derive(Debug)]
    struct World {
        generation: Option<i64>,
        previous: Option<PipelineStatus>,
        cluster: Option<KafkaCluster>,
        producer: Option<Producer>,
        group: Option<ConsumerGroup>,
        workers: Option<StatefulSet>,
        inputs: Vec<TopicLink>,
        outputs: Vec<TopicLink>,
        config_problems: Vec<String>,
        desired_workers: i32,
        paused: bool,
        transaction_timeout_ms: Option<u32>,
        progress: Option<exactly_worker::Progress>,
        removed_worker_transactions: Option<i32>,
        open_worker_transactions: Option<i32>,
        stopped_at: Option<Vec<String>>,
    }

    impl World {
        fn observed(&self) -> Observed<'_> {
            Observed {
                generation: self.generation,
                previous: self.previous.as_ref(),
                cluster: self.cluster.as_ref(),
                inputs: self.inputs.clone(),
                outputs: self.outputs.clone(),
                config_problems: self.config_problems.clone(),
                producer: self.producer.as_ref(),
                group: self.group.as_ref(),
                workers: self.workers.as_ref(),
                desired_workers: self.desired_workers,
                paused: self.paused,
                transaction_timeout_ms: self.transaction_timeout_ms,
                group_id: "shop.billing".into(),
                transactional_id_prefix: "shop.billing".into(),
                progress: self.progress.clone(),
                removed_worker_transactions: self.removed_worker_transactions,
                open_worker_transactions: self.open_worker_transactions,
                stopped_at: self.stopped_at.clone(),
            }
        }

        fn ready_workers(&self) -> i32 {
            self.workers
                .as_ref()
                .and_then(|s| s.status.as_ref())
                .and_then(|s| s.ready_replicas)
                .unwrap_or(0)
        }
    }

    fn previous() -> impl Strategy<Value = Option<PipelineStatus>> {
        proptest::option::of(
            (
                previous_conditions(KINDS),
                proptest::option::of(Just("a-0@4: not JSON".to_string())),
                proptest::option::of(0i32..3),
                proptest::collection::vec(
                    proptest::sample::select(vec!["Cluster", "InputTopics"]).prop_map(String::from),
                    0..2,
                ),
            )
                .prop_map(|(conditions, stopped_at, removed, failed_links)| {
                    PipelineStatus {
                        observed_generation: Some(0),
                        conditions,
                        stopped_at,
                        removed_worker_transactions: removed,
                        failed_links,
                        ..PipelineStatus::default()
                    }
                }),
        )
    }

    /// No KafkaCluster, or one judged (or not yet) ExactlyOnceReady, with or without a
    /// `transaction.max.timeout.ms`.
    fn kafka_cluster() -> impl Strategy<Value = Option<KafkaCluster>> {
        proptest::option::of(
            (
                proptest::option::of(condition_status()),
                proptest::option::of(prop_oneof![0i64..200_000, any::<i64>()]),
            )
                .prop_map(|(eos, max_timeout)| {
                    let mut c = KafkaCluster::new(
                        "main",
                        KafkaClusterSpec {
                            external: Some(ExternalCluster {
                                bootstrap_servers: "k:9092".into(),
                                secret_ref: None,
                            }),
                            provisioned: None,
                        },
                    );
                    c.status = Some(KafkaClusterStatus {
                        conditions: eos
                            .map(|s| {
                                Condition::new(cluster::EXACTLY_ONCE_READY, s, "R", "m", Some(1))
                            })
                            .into_iter()
                            .collect(),
                        exactly_once: Some(ExactlyOnceSettings {
                            transaction_max_timeout_ms: max_timeout,
                            ..ExactlyOnceSettings::default()
                        }),
                        ..KafkaClusterStatus::default()
                    });
                    c
                }),
        )
    }

    /// The Pipeline's Producer, its prefix reserved or taken.
    fn producer() -> impl Strategy<Value = Option<Producer>> {
        proptest::option::of(
            (
                previous_conditions(&[RESOURCE_CONFLICT, types::READY]),
                proptest::option::of(0i32..3),
                proptest::option::of(0i32..3),
            )
                .prop_map(|(conditions, open, hanging)| {
                    let mut p = Producer::new(
                        "billing-pipeline",
                        ProducerSpec {
                            cluster_ref: ClusterRef::kafka("main"),
                            topics: Vec::new(),
                            transactional_id_prefix: "shop.billing".into(),
                            instances: None,
                            stateful_set_ref: None,
                            guarantee: Guarantee::ExactlyOnce,
                            transaction_timeout: None,
                            client_overrides: BTreeMap::new(),
                            authentication: None,
                            consumer_group_ref: None,
                        },
                    );
                    p.status = Some(ProducerStatus {
                        conditions,
                        open_transactions: open,
                        hanging_transactions: hanging,
                        ..ProducerStatus::default()
                    });
                    p
                }),
        )
    }

    fn group() -> impl Strategy<Value = Option<ConsumerGroup>> {
        proptest::option::of(
            (
                proptest::option::of(0i64..100),
                proptest::option::of(Just("2026-01-01T00:00:00Z".to_string())),
            )
                .prop_map(|(total_lag, last_commit_seen)| {
                    let mut g = consumer_group(None);
                    g.status = Some(ConsumerGroupStatus {
                        total_lag,
                        last_commit_seen,
                        ..ConsumerGroupStatus::default()
                    });
                    g
                }),
        )
    }

    fn workers() -> impl Strategy<Value = Option<StatefulSet>> {
        proptest::option::of(
            proptest::option::of(0i32..5).prop_map(|ready_replicas| StatefulSet {
                status: Some(StatefulSetStatus {
                    ready_replicas,
                    ..StatefulSetStatus::default()
                }),
                ..StatefulSet::default()
            }),
        )
    }

    /// Topic links, each found or not, Ready or not (mostly Ready).
    fn links(name: &'static str) -> impl Strategy<Value = Vec<TopicLink>> {
        proptest::collection::vec(
            (
                proptest::sample::select(vec![name, "x"]),
                any::<bool>(),
                proptest::option::weighted(
                    0.2,
                    proptest::sample::select(vec![
                        "Topic 'x' does not exist in this namespace",
                        "Topic 'x' is not Ready (A: m)",
                    ]),
                ),
            )
                .prop_map(|(resource, found, problem)| TopicLink {
                    resource: resource.into(),
                    kafka: found.then(|| format!("shop.{resource}")),
                    problem: problem.map(String::from),
                }),
            0..3,
        )
    }

    fn config_problems() -> impl Strategy<Value = Vec<String>> {
        prop_oneof![
            3 => Just(Vec::new()),
            1 => proptest::collection::vec(
                proptest::sample::select(vec!["transform.filter: unexpected end", "bootstrapServers: empty"])
                    .prop_map(String::from),
                1..3,
            ),
        ]
    }

    /// The workers' figures (status copies them): one draw for all five.
    fn progress() -> impl Strategy<Value = Option<exactly_worker::Progress>> {
        proptest::option::of(any::<u64>().prop_map(|n| exactly_worker::Progress {
            in_records: n,
            out_records: n / 2,
            dead_lettered: n % 7,
            commits: n / 3,
            aborts: n % 2,
            ..exactly_worker::Progress::default()
        }))
    }

    /// Stop markers: not observed, observed none, or some.
    fn stopped_at() -> impl Strategy<Value = Option<Vec<String>>> {
        proptest::option::of(proptest::collection::vec(
            proptest::sample::select(vec!["a-0@4: not JSON", "b-1@0: x"]).prop_map(String::from),
            0..3,
        ))
    }

    fn world() -> impl Strategy<Value = World> {
        (
            (
                proptest::option::of(0i64..3),
                previous(),
                kafka_cluster(),
                producer(),
                group(),
                workers(),
            ),
            (links("orders"), links("charges"), config_problems()),
            (
                0i32..4,
                any::<bool>(),
                proptest::option::of(prop_oneof![1u32..200_000, any::<u32>()]),
                progress(),
                proptest::option::of(0i32..3),
                proptest::option::of(0i32..3),
                stopped_at(),
            ),
        )
            .prop_map(
                |(
                    (generation, previous, cluster, producer, group, workers),
                    (inputs, outputs, config_problems),
                    (
                        desired_workers,
                        paused,
                        transaction_timeout_ms,
                        progress,
                        removed_worker_transactions,
                        open_worker_transactions,
                        stopped_at,
                    ),
                )| World {
                    generation,
                    previous,
                    cluster,
                    producer,
                    group,
                    workers,
                    inputs,
                    outputs,
                    config_problems,
                    desired_workers,
                    paused,
                    transaction_timeout_ms,
                    progress,
                    removed_worker_transactions,
                    open_worker_transactions,
                    stopped_at,
                },
            )
    }

    fn blocked(status: &PipelineStatus) -> bool {
        status
            .failed_links
            .iter()
            .any(|l| BLOCKING.contains(&l.as_str()))
    }

    proptest! {
        #![proptest_config(config())]

        #[test]
        fn pipeline_status_never_holds_two_conditions_of_one_type(first in world(), second in world()) {
            let once = pipeline::pipeline_status(&first.observed());
            prop_assert!(one_of_each_type(&once.conditions), "{:?}", once.conditions);
            let next = pipeline::pipeline_status(&Observed { previous: Some(&once), ..second.observed() });
            prop_assert!(one_of_each_type(&next.conditions), "{:?}", next.conditions);
        }

        #[test]
        fn pipeline_status_of_the_same_observation_twice_is_unchanged(world in world()) {
            let once = pipeline::pipeline_status(&world.observed());
            let twice = pipeline::pipeline_status(&Observed { previous: Some(&once), ..world.observed() });
            prop_assert_eq!(once, twice);
        }

        #[test]
        fn pipeline_status_keeps_transition_times_of_conditions_whose_status_did_not_change(world in world()) {
            let before = world.previous.as_ref().map(|s| s.conditions.as_slice()).unwrap_or_default();
            let after = pipeline::pipeline_status(&world.observed());
            let moved = moved_transition_time(before, &after.conditions);
            prop_assert!(moved.is_none(), "{moved:?}");
        }

        #[test]
        fn a_pipeline_is_exactly_once_ready_exactly_when_no_link_fails(world in world()) {
            let observed = world.observed();
            let status = pipeline::pipeline_status(&observed);
            let failing: Vec<String> = pipeline::failed_links(&observed).into_iter().map(|(l, _)| l.to_string()).collect();
            prop_assert_eq!(&status.failed_links, &failing);
            let eos = status_of(&status.conditions, EXACTLY_ONCE_READY) == Some(ConditionStatus::True);
            prop_assert_eq!(eos, status.failed_links.is_empty(), "{:?}", status.conditions);
        }

        #[test]
        fn a_pipeline_is_never_ready_while_a_link_its_workers_need_fails(world in world()) {
            let status = pipeline::pipeline_status(&world.observed());
            if blocked(&status) {
                let ready = conditions::find(&status.conditions, types::READY);
                prop_assert!(
                    ready.is_some_and(|c| c.status == ConditionStatus::False && c.reason == "WaitingForLinks"),
                    "{ready:?}"
                );
                // Only a worker configuration that cannot run needs a person; a Topic may yet
                // appear or become Ready.
                let stalled = status_of(&status.conditions, types::STALLED) == Some(ConditionStatus::True);
                prop_assert_eq!(stalled, status.failed_links.iter().any(|l| l == "WorkerConfig"));
            }
        }

        #[test]
        fn a_pipeline_is_ready_exactly_when_its_workers_run_as_declared_or_it_is_paused(world in world()) {
            let status = pipeline::pipeline_status(&world.observed());
            let ready = status_of(&status.conditions, types::READY) == Some(ConditionStatus::True);
            let runs = world.paused || world.ready_workers() >= world.desired_workers;
            prop_assert_eq!(
                ready,
                !blocked(&status) && status.stopped_at.is_none() && runs,
                "{:?} {:?}", status.failed_links, status.conditions
            );
        }
    }
}

mod access_status {
    use super::*;
    use crate::api::{AccessDriftPolicy, AccessStatus, Authentication, AuthenticationType};
    use crate::controller::access::{self, DRIFTED};

    fn access_status() -> impl Strategy<Value = AccessStatus> {
        proptest::collection::vec(
            proptest::sample::select(vec![
                "missing: Allow Write Topic a",
                "extra: Allow Read Topic b",
            ])
            .prop_map(String::from),
            0..3,
        )
        .prop_map(|drift| AccessStatus {
            user: "shop.producer.w".into(),
            mechanism: "SCRAM-SHA-512".into(),
            acls: vec!["Allow User:shop.producer.w Write Topic a (literal)".into()],
            drift,
        })
    }

    fn authentication() -> impl Strategy<Value = Option<Authentication>> {
        proptest::option::of(
            (
                prop_oneof![
                    Just(AuthenticationType::ScramSha512),
                    Just(AuthenticationType::ScramSha256)
                ],
                prop_oneof![
                    Just(AccessDriftPolicy::Revert),
                    Just(AccessDriftPolicy::Report)
                ],
            )
                .prop_map(|(type_, drift_policy)| Authentication {
                    type_,
                    drift_policy,
                }),
        )
    }

    proptest! {
        #![proptest_config(config())]

        #[test]
        fn access_status_is_cleared_without_authentication_and_drifted_follows_what_was_seen(
            previous_access in proptest::option::of(access_status()),
            previous_conditions in previous_conditions(&[types::READY, types::STALLED, DRIFTED]),
            authentication in authentication(),
            seen in proptest::option::of(access_status()),
            generation in proptest::option::of(0i64..3),
        ) {
            let mut access = previous_access.clone();
            let mut conditions = previous_conditions.clone();
            access::set_status(&mut access, &mut conditions, authentication.as_ref(), seen.clone(), generation);
            prop_assert!(one_of_each_type(&conditions), "{conditions:?}");
            match (&authentication, &seen) {
                (None, _) => {
                    prop_assert_eq!(access, None);
                    prop_assert_eq!(status_of(&conditions, DRIFTED), None);
                }
                (Some(_), Some(seen)) => {
                    let drifted = status_of(&conditions, DRIFTED);
                    prop_assert_eq!(drifted, Some(ConditionStatus::from(!seen.drift.is_empty())));
                    prop_assert_eq!(access.as_ref(), Some(seen));
                }
                // The brokers were not asked: what was known stays.
                (Some(_), None) => {
                    prop_assert_eq!(access, previous_access);
                    prop_assert_eq!(conditions, previous_conditions);
                }
            }
        }
    }
}
