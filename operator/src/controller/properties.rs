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
            cluster_ref: ClusterRef {
                name: "main".into(),
            },
            topic_name: None,
            partitions,
            replication_factor: replication,
            config,
            deletion_policy: deletion,
            drift_policy: drift,
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
                cluster: "main".into()
            }),
            kafka_error().prop_map(TopicOutcome::Retrying),
            kafka_error().prop_map(TopicOutcome::Refused),
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
                    cluster_ref: ClusterRef {
                        name: "main".into(),
                    },
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

    fn consumer_group(objective: Option<LagObjective>) -> ConsumerGroup {
        let mut g = ConsumerGroup::new(
            "billing",
            ConsumerGroupSpec {
                cluster_ref: ClusterRef {
                    name: "main".into(),
                },
                group_id: None,
                topics: vec![TopicRef {
                    name: "orders".into(),
                }],
                isolation: Isolation::ReadCommitted,
                lag_objective: objective,
                offset_reset: None,
                authentication: None,
            },
        );
        g.metadata.generation = Some(1);
        g
    }

    fn objective() -> impl Strategy<Value = Option<LagObjective>> {
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
