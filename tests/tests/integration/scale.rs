//! Scale (DESIGN §6): one batched observation of a cluster serves every resource on it, so the
//! admin requests it costs grow with brokers, not with resources.

use std::collections::{BTreeMap, BTreeSet};

use exactly::controller::observe::{Interest, observe};
use exactly::kafka::{KafkaAdmin, TopicPartition};
use exactly_testenv::shared;

use crate::support::{create_kafka_topic, wire};

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
        w.commit_offsets(
            &group,
            &BTreeMap::from([(TopicPartition::new(topic.clone(), 0), 0)]),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
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
