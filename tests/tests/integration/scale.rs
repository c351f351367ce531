//! Scale (DESIGN §6, issue #10): one batched observation of a cluster serves every resource on
//! it, so the admin requests it costs grow with brokers, not with resources; Topics created
//! together share their requests; a status write wakes no Topic reconcile. (1 000 idle Topics:
//! the faults binary, where the test can have the broker to itself.)

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use exactly::controller::observe::{Interest, observe};
use exactly::kafka::{KafkaAdmin, TopicPartition};
use exactly_testenv::{eventually, shared};
use kube::api::{Patch, PatchParams};

use crate::support::{
    Operator, REFRESH, create_cluster, create_kafka_topic, create_topics_at_once, mutations, wire,
};

/// Requests one observation of `interest` costs, on a fresh client (same handshakes each time).
async fn cost(bootstrap: &str, interest: &Interest) -> u64 {
    let admin = KafkaAdmin::connect(bootstrap).unwrap_or_else(|e| panic!("{e}"));
    let snapshot = observe(&admin, interest)
        .await
        .unwrap_or_else(|e| panic!("observe: {e}"));
    assert_eq!(snapshot.topics.len(), interest.topic_configs.len());
    admin.requests_sent()
}

#[tokio::test]
async fn observing_twenty_topics_groups_and_producers_costs_the_same_requests_as_one() {
    let env = shared();
    let ns = env.namespace("scale").await;
    let w = wire(env);
    let mut topics = Vec::new();
    let mut groups = Vec::new();
    for i in 0..20 {
        let topic = ns.unique(&format!("t{i}"));
        create_kafka_topic(env, &topic, 2, &[]).await;
        let group = ns.unique(&format!("g{i}"));
        // A broker applies a new topic a moment after it is created: until then a commit to it
        // is UNKNOWN_TOPIC_OR_PARTITION.
        let offsets = BTreeMap::from([(TopicPartition::new(topic.clone(), 0), 0)]);
        eventually(
            "a commit to the new topic",
            Duration::from_secs(30),
            || async {
                w.commit_offsets(&group, &offsets)
                    .await
                    .map_err(|e| e.to_string())
            },
        )
        .await;
        topics.push(topic);
        groups.push(group);
    }
    let interest = |n: usize| {
        let topics: BTreeSet<String> = topics.iter().take(n).cloned().collect();
        Interest {
            topics: topics.clone(),
            producer_topics: topics.clone(),
            topic_configs: topics,
            groups: groups.iter().take(n).cloned().collect(),
            transactional_ids: (0..n).map(|i| ns.unique(&format!("p{i}-0"))).collect(),
            ..Interest::default()
        }
    };
    let one = cost(&env.bootstrap_servers, &interest(1)).await;
    let twenty = cost(&env.bootstrap_servers, &interest(20)).await;
    println!("requests per observation: 1 of each kind {one}, 20 of each kind {twenty}");
    assert_eq!(
        one, twenty,
        "an observation of 20 resources of each kind cost {twenty} requests, of one {one}"
    );
}

#[tokio::test]
async fn topics_created_in_one_burst_share_a_few_create_topics_requests() {
    const N: usize = 60;
    let env = shared();
    let ns = env.namespace("burst").await;
    let client = env.client().await.unwrap_or_else(|e| panic!("{e}"));
    let operator = Operator::start(client.clone(), &ns.name);
    create_cluster(&client, &ns, env).await;
    create_topics_at_once(&client, &ns, "b", N, Duration::from_secs(120)).await;
    let creates = operator.metrics.kafka_requests_of("CreateTopics");
    println!("{N} Topics created with {creates} CreateTopics requests");
    assert!(creates >= 1, "no CreateTopics request was counted");
    assert!(
        creates * 5 <= N as u64,
        "{N} Topics took {creates} CreateTopics requests: the burst was not batched"
    );
    operator.stop().await;
}

#[tokio::test]
async fn a_status_only_change_never_wakes_a_topic_reconcile_or_a_kafka_mutation() {
    let env = shared();
    let ns = env.namespace("status-only").await;
    let client = env.client().await.unwrap_or_else(|e| panic!("{e}"));
    let operator = Operator::start(client.clone(), &ns.name);
    create_cluster(&client, &ns, env).await;
    let topics = create_topics_at_once(&client, &ns, "s", 3, Duration::from_secs(60)).await;
    // Let the refreshes settle after the creations (each invalidates the observation).
    tokio::time::sleep(REFRESH * 2).await;
    let reconciles = operator.ok_reconciles("Topic");
    let mutated = mutations(&operator);

    // Someone else writes the Topics' status, and the cluster's status moves on (it is
    // written on every observation of it): neither is a reason to reconcile a Topic.
    for i in 0..3 {
        topics
            .patch_status(
                &format!("s{i}"),
                &PatchParams::default(),
                &Patch::Merge(
                    serde_json::json!({"status": {"topicId": "written-by-someone-else"}}),
                ),
            )
            .await
            .unwrap_or_else(|e| panic!("patch status: {e}"));
    }
    tokio::time::sleep(REFRESH * 4).await;
    assert_eq!(
        operator.ok_reconciles("Topic"),
        reconciles,
        "a status write woke a Topic reconcile"
    );
    assert_eq!(
        mutations(&operator),
        mutated,
        "a status write changed Kafka"
    );
    // The refresh put the status back from what the broker says, without a reconcile.
    let s0 = topics
        .get("s0")
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .status
        .unwrap_or_default();
    assert_ne!(s0.topic_id.as_deref(), Some("written-by-someone-else"));

    // Control: a spec change does wake the reconcile, which changes Kafka.
    topics
        .patch(
            "s0",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"spec": {"partitions": 2}})),
        )
        .await
        .unwrap_or_else(|e| panic!("patch spec: {e}"));
    eventually(
        "the partitions to grow",
        Duration::from_secs(30),
        || async {
            let grown = operator.metrics.kafka_requests_of("CreatePartitions");
            if grown > 0 && operator.ok_reconciles("Topic") > reconciles {
                Ok(())
            } else {
                Err(format!("CreatePartitions requests: {grown}"))
            }
        },
    )
    .await;
    operator.stop().await;
}
