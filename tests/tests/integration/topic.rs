//! The Topic slice: a Topic resource becomes a topic on the real broker, and says so in status.

use std::time::Duration;

use exactly::api::Topic;
use exactly_testenv::{TestNamespace, eventually, shared};
use kube::Client;
use kube::api::{Api, Patch, PatchParams, PostParams};

use crate::support::{
    broker_partitions, broker_topic_config, create_cluster, ready_of, run_operator,
};

const TIMEOUT: Duration = Duration::from_secs(60);

async fn create_topic(
    client: &Client,
    ns: &TestNamespace,
    name: &str,
    spec: serde_json::Value,
) -> Api<Topic> {
    let topics: Api<Topic> = Api::namespaced(client.clone(), &ns.name);
    let topic: Topic = serde_json::from_value(serde_json::json!({
        "apiVersion": "exactly.dev/v1alpha1",
        "kind": "Topic",
        "metadata": {"name": name},
        "spec": spec,
    }))
    .unwrap_or_else(|e| panic!("topic manifest: {e}"));
    topics
        .create(&PostParams::default(), &topic)
        .await
        .unwrap_or_else(|e| panic!("create topic: {e}"));
    topics
}

/// Waits until the Topic's Ready condition has `reason` for its current generation.
async fn wait_for_reason(topics: &Api<Topic>, name: &str, reason: &str) -> Topic {
    eventually(
        &format!("Topic {name} to report {reason}"),
        TIMEOUT,
        || async {
            let topic = topics.get(name).await.map_err(|e| e.to_string())?;
            match ready_of(&topic) {
                Some((_, r, generation))
                    if r == reason && generation == topic.metadata.generation =>
                {
                    Ok(topic)
                }
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await
}

#[tokio::test]
async fn topic_is_created_on_the_broker_with_its_partitions_and_config_and_reports_ready() {
    let env = shared();
    let ns = env.namespace("topic-create").await;
    let client = env.client().await.unwrap_or_else(|e| panic!("{e}"));
    run_operator(client.clone(), &ns.name);
    create_cluster(&client, &ns, env).await;
    let kafka_name = ns.unique("orders");
    let topics = create_topic(
        &client,
        &ns,
        "orders",
        serde_json::json!({
            "clusterRef": {"name": "local"},
            "topicName": kafka_name,
            "partitions": 3,
            "replicationFactor": 1,
            "config": {"retention.ms": "3600000", "cleanup.policy": "compact"},
        }),
    )
    .await;

    let topic = wait_for_reason(&topics, "orders", "TopicReady").await;
    let (ready, _, generation) = ready_of(&topic).unwrap_or_default();
    assert_eq!(ready, "True");
    assert_eq!(generation, topic.metadata.generation);

    assert_eq!(broker_partitions(env, &kafka_name), Some(3));
    let config = broker_topic_config(env, &kafka_name).await;
    assert_eq!(
        config.get("retention.ms").map(String::as_str),
        Some("3600000"),
        "{config:?}"
    );
    assert_eq!(
        config.get("cleanup.policy").map(String::as_str),
        Some("compact"),
        "{config:?}"
    );
    let status = topic.status.unwrap_or_default();
    assert_eq!(
        (status.partitions, status.replication_factor),
        (Some(3), Some(1))
    );
}

#[tokio::test]
async fn topic_whose_cluster_is_missing_says_which_and_what_to_do() {
    let env = shared();
    let ns = env.namespace("topic-nocluster").await;
    let client = env.client().await.unwrap_or_else(|e| panic!("{e}"));
    run_operator(client.clone(), &ns.name);
    let topics = create_topic(
        &client,
        &ns,
        "orders",
        serde_json::json!({
            "clusterRef": {"name": "nowhere"},
            "topicName": ns.unique("orders"),
            "partitions": 1,
        }),
    )
    .await;

    let topic = wait_for_reason(&topics, "orders", "ClusterNotFound").await;
    let status = topic.status.unwrap_or_default();
    let ready = exactly::api::conditions::find(&status.conditions, "Ready").cloned();
    let message = ready.map(|c| c.message).unwrap_or_default();
    assert!(
        message.contains("'nowhere'") && message.contains("spec.clusterRef.name"),
        "{message}"
    );
    assert_eq!(broker_partitions(env, &ns.unique("orders")), None);
}

#[tokio::test]
async fn raising_partitions_grows_the_topic_on_the_broker() {
    let env = shared();
    let ns = env.namespace("topic-grow").await;
    let client = env.client().await.unwrap_or_else(|e| panic!("{e}"));
    run_operator(client.clone(), &ns.name);
    create_cluster(&client, &ns, env).await;
    let kafka_name = ns.unique("events");
    let topics = create_topic(
        &client,
        &ns,
        "events",
        serde_json::json!({
            "clusterRef": {"name": "local"}, "topicName": kafka_name, "partitions": 1,
        }),
    )
    .await;
    wait_for_reason(&topics, "events", "TopicReady").await;

    let patch = serde_json::json!({"spec": {"partitions": 4}});
    topics
        .patch("events", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let topic = eventually("status to show 4 partitions", TIMEOUT, || async {
        let topic = topics.get("events").await.map_err(|e| e.to_string())?;
        let partitions = topic.status.as_ref().and_then(|s| s.partitions);
        if partitions == Some(4) && ready_of(&topic).map(|r| r.2) == Some(topic.metadata.generation)
        {
            Ok(topic)
        } else {
            Err(format!("{:?}", topic.status))
        }
    })
    .await;
    assert_eq!(ready_of(&topic).map(|r| r.0), Some("True".to_string()));
    assert_eq!(broker_partitions(env, &kafka_name), Some(4));
}

#[tokio::test]
async fn lowering_partitions_is_reported_not_supported_and_the_broker_is_unchanged() {
    let env = shared();
    let ns = env.namespace("topic-shrink").await;
    let client = env.client().await.unwrap_or_else(|e| panic!("{e}"));
    run_operator(client.clone(), &ns.name);
    create_cluster(&client, &ns, env).await;
    let kafka_name = ns.unique("ledger");
    let topics = create_topic(
        &client,
        &ns,
        "ledger",
        serde_json::json!({
            "clusterRef": {"name": "local"}, "topicName": kafka_name, "partitions": 3,
        }),
    )
    .await;
    wait_for_reason(&topics, "ledger", "TopicReady").await;

    let patch = serde_json::json!({"spec": {"partitions": 2}});
    topics
        .patch("ledger", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let topic = wait_for_reason(&topics, "ledger", "NotSupported").await;
    assert_eq!(ready_of(&topic).map(|r| r.0), Some("False".to_string()));
    assert_eq!(broker_partitions(env, &kafka_name), Some(3));
}

#[tokio::test]
async fn changing_topic_name_is_rejected_by_the_api_server() {
    let env = shared();
    let ns = env.namespace("topic-rename").await;
    let client = env.client().await.unwrap_or_else(|e| panic!("{e}"));
    let topics = create_topic(
        &client,
        &ns,
        "orders",
        serde_json::json!({
            "clusterRef": {"name": "local"}, "topicName": ns.unique("orders"), "partitions": 1,
        }),
    )
    .await;
    let patch = serde_json::json!({"spec": {"topicName": ns.unique("orders-renamed")}});
    let err = topics
        .patch("orders", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        err.contains("topicName is immutable"),
        "expected a rejection, got: {err:?}"
    );
}
