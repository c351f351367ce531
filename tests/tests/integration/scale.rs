//! Scale (DESIGN §6, issue #10): one batched observation of a cluster serves every resource on
//! it, so the admin requests it costs grow with brokers, not with resources; Topics created
//! together share their requests; a refresh of idle Topics writes, reconciles and changes
//! nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use exactly::api::Topic;
use exactly::controller::observe::{Interest, observe};
use exactly::kafka::{KafkaAdmin, TopicPartition};
use exactly_testenv::{TestNamespace, eventually, shared};
use futures::StreamExt;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};

use crate::support::{Operator, REFRESH, create_cluster, create_kafka_topic, wire};

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

/// Topics whose `Ready` is `True` for their current generation, of those in the namespace.
async fn ready_topics(topics: &Api<Topic>) -> Result<(usize, usize), String> {
    let all = topics
        .list(&ListParams::default())
        .await
        .map_err(|e| e.to_string())?
        .items;
    let ready = all
        .iter()
        .filter(|t| {
            t.status.as_ref().is_some_and(|s| {
                exactly::api::conditions::find(&s.conditions, "Ready").is_some_and(|c| {
                    c.status == exactly::api::ConditionStatus::True
                        && c.observed_generation == t.metadata.generation
                })
            })
        })
        .count();
    Ok((ready, all.len()))
}

/// Creates `n` Topics named `<prefix><i>` at once (each its own Kafka topic, unique to the
/// test), and waits until all are Ready.
async fn create_topics_at_once(
    client: &Client,
    ns: &TestNamespace,
    prefix: &str,
    n: usize,
    timeout: Duration,
) -> Api<Topic> {
    let topics: Api<Topic> = Api::namespaced(client.clone(), &ns.name);
    futures::stream::iter(0..n)
        .for_each_concurrent(16, |i| {
            let topics = topics.clone();
            let name = format!("{prefix}{i}");
            let kafka_name = ns.unique(&name);
            async move {
                let topic: Topic = serde_json::from_value(serde_json::json!({
                    "apiVersion": "exactly.dev/v1alpha1",
                    "kind": "Topic",
                    "metadata": {"name": name},
                    "spec": {"clusterRef": {"name": "local"}, "topicName": kafka_name,
                        "partitions": 1, "replicationFactor": 1},
                }))
                .unwrap_or_else(|e| panic!("Topic manifest: {e}"));
                topics
                    .create(&PostParams::default(), &topic)
                    .await
                    .unwrap_or_else(|e| panic!("create Topic {name}: {e}"));
            }
        })
        .await;
    eventually(&format!("{n} Topics to be Ready"), timeout, || async {
        match ready_topics(&topics).await? {
            (ready, all) if ready == n && all == n => Ok(()),
            (ready, all) => Err(format!("{ready} of {all} Ready")),
        }
    })
    .await;
    topics
}

/// Kafka requests that change something (topics, partitions, configs).
const MUTATIONS: [&str; 5] = [
    "CreateTopics",
    "CreatePartitions",
    "IncrementalAlterConfigs",
    "AlterConfigs",
    "DeleteTopics",
];

fn mutations(operator: &Operator) -> Vec<(&'static str, u64)> {
    MUTATIONS
        .iter()
        .map(|api| (*api, operator.metrics.kafka_requests_of(api)))
        .collect()
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

#[tokio::test]
async fn a_thousand_idle_topics_are_refreshed_without_a_write_a_reconcile_or_a_kafka_mutation() {
    const N: usize = 1000;
    const QUIET_FOR: Duration = Duration::from_secs(60);
    let env = shared();
    let ns = env.namespace("quiet-1000").await;
    let client = env.client().await.unwrap_or_else(|e| panic!("{e}"));
    let operator = Operator::start(client.clone(), &ns.name);
    create_cluster(&client, &ns, env).await;
    let topics = create_topics_at_once(&client, &ns, "q", N, Duration::from_secs(300)).await;
    tokio::time::sleep(REFRESH * 3).await;

    let versions = |list: Vec<Topic>| -> BTreeMap<String, String> {
        list.into_iter()
            .map(|t| (t.name_any(), t.resource_version().unwrap_or_default()))
            .collect()
    };
    let list = || async {
        topics
            .list(&ListParams::default())
            .await
            .unwrap_or_else(|e| panic!("list: {e}"))
            .items
    };
    let before = versions(list().await);
    let reconciles = operator.ok_reconciles("Topic");
    let mutated = mutations(&operator);
    let described = operator.metrics.kafka_requests_of("DescribeConfigs");
    tokio::time::sleep(QUIET_FOR).await;
    let after = versions(list().await);

    let changed: Vec<&String> = before
        .iter()
        .filter(|(name, version)| after.get(*name) != Some(version))
        .map(|(name, _)| name)
        .collect();
    assert!(
        changed.is_empty(),
        "{} of {N} Topics were written while nothing changed, e.g. {:?}",
        changed.len(),
        changed.iter().take(5).collect::<Vec<_>>()
    );
    assert_eq!(
        operator.ok_reconciles("Topic"),
        reconciles,
        "refreshes reconciled Topics"
    );
    assert_eq!(mutations(&operator), mutated, "refreshes changed Kafka");
    // The refreshes did look: the drift check read the topics' configuration in batches.
    let reads = operator.metrics.kafka_requests_of("DescribeConfigs") - described;
    let refreshes = QUIET_FOR.as_secs() / REFRESH.as_secs();
    assert!(reads > 0, "no refresh read the topics' configuration");
    assert!(
        reads <= refreshes * (N as u64 / 200 + 1) * 2,
        "{reads} DescribeConfigs requests over {refreshes} refreshes of {N} Topics"
    );
    operator.stop().await;
}
