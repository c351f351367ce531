//! The Topic slice: a Topic resource becomes a topic on the real broker, and says so in status.

use std::collections::BTreeMap;
use std::time::Duration;

use exactly::api::Topic;
use exactly_testenv::{TestNamespace, eventually, shared};
use kube::Client;
use kube::api::{Api, Patch, PatchParams, PostParams};

use crate::support::{
    Operator, broker_partitions, broker_topic_config, condition, consumer, create_cluster,
    create_kafka_topic, ready_of, run_operator, set_kafka_topic_config, wire,
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
async fn fewer_partitions_than_the_kafka_topic_has_is_not_supported_and_the_broker_is_unchanged() {
    let env = shared();
    let ns = env.namespace("topic-shrink").await;
    let client = env.client().await.unwrap_or_else(|e| panic!("{e}"));
    run_operator(client.clone(), &ns.name);
    create_cluster(&client, &ns, env).await;
    let kafka_name = ns.unique("ledger");
    create_kafka_topic(env, &kafka_name, 3, &[]).await;
    let topics = create_topic(
        &client,
        &ns,
        "ledger",
        serde_json::json!({
            "clusterRef": {"name": "local"}, "topicName": kafka_name, "partitions": 2,
        }),
    )
    .await;
    let topic = wait_for_reason(&topics, "ledger", "NotSupported").await;
    let (ready, _, _) = ready_of(&topic).unwrap_or_default();
    assert_eq!(ready, "False");
    assert_eq!(broker_partitions(env, &kafka_name), Some(3));
}

#[tokio::test]
async fn lowering_partitions_is_rejected_by_the_api_server() {
    let env = shared();
    let ns = env.namespace("topic-lower").await;
    let client = env.client().await.unwrap_or_else(|e| panic!("{e}"));
    let topics = create_topic(
        &client,
        &ns,
        "orders",
        serde_json::json!({"clusterRef": {"name": "local"}, "partitions": 3}),
    )
    .await;
    let patch = serde_json::json!({"spec": {"partitions": 2}});
    let err = topics
        .patch("orders", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        err.contains("partitions may only grow"),
        "expected a rejection, got: {err:?}"
    );
}

#[tokio::test]
async fn an_existing_kafka_topic_is_adopted_and_given_the_declared_config() {
    let env = shared();
    let ns = env.namespace("topic-adopt").await;
    let client = env.client().await.unwrap_or_else(|e| panic!("{e}"));
    run_operator(client.clone(), &ns.name);
    create_cluster(&client, &ns, env).await;
    let kafka_name = ns.unique("payments");
    create_kafka_topic(env, &kafka_name, 2, &[("retention.ms", "1000")]).await;
    let topics = create_topic(
        &client,
        &ns,
        "payments",
        serde_json::json!({
            "clusterRef": {"name": "local"}, "topicName": kafka_name, "partitions": 2,
            "config": {"retention.ms": "7200000"},
        }),
    )
    .await;
    let topic = wait_for_reason(&topics, "payments", "TopicReady").await;
    let status = topic.status.clone().unwrap_or_default();
    assert_eq!(
        broker_topic_config(env, &kafka_name).await,
        BTreeMap::from([("retention.ms".to_string(), "7200000".to_string())])
    );
    assert_eq!(
        status.config.get("retention.ms").map(String::as_str),
        Some("7200000")
    );
    let broker_id = wire(env)
        .metadata(Some(std::slice::from_ref(&kafka_name)))
        .await
        .ok()
        .and_then(|m| m.topic(&kafka_name).map(|t| t.topic_id.clone()));
    assert!(broker_id.is_some());
    assert_eq!(status.topic_id, broker_id);
}

#[tokio::test]
async fn config_changes_are_applied_and_removed_keys_fall_back_to_the_broker() {
    let env = shared();
    let ns = env.namespace("topic-config").await;
    let client = env.client().await.unwrap_or_else(|e| panic!("{e}"));
    run_operator(client.clone(), &ns.name);
    create_cluster(&client, &ns, env).await;
    let kafka_name = ns.unique("audit");
    let topics = create_topic(
        &client,
        &ns,
        "audit",
        serde_json::json!({
            "clusterRef": {"name": "local"}, "topicName": kafka_name, "partitions": 1,
            "config": {"retention.ms": "3600000", "segment.ms": "600000"},
        }),
    )
    .await;
    wait_for_reason(&topics, "audit", "TopicReady").await;
    let patch =
        serde_json::json!({"spec": {"config": {"retention.ms": "7200000", "segment.ms": null}}});
    topics
        .patch("audit", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    wait_for_reason(&topics, "audit", "TopicReady").await;
    assert_eq!(
        broker_topic_config(env, &kafka_name).await,
        BTreeMap::from([("retention.ms".to_string(), "7200000".to_string())])
    );
}

#[tokio::test]
async fn the_younger_of_two_topics_for_one_kafka_topic_reports_resource_conflict() {
    let env = shared();
    let ns = env.namespace("topic-conflict").await;
    let client = env.client().await.unwrap_or_else(|e| panic!("{e}"));
    run_operator(client.clone(), &ns.name);
    create_cluster(&client, &ns, env).await;
    let kafka_name = ns.unique("shared");
    let topics = create_topic(
        &client,
        &ns,
        "first",
        serde_json::json!({
            "clusterRef": {"name": "local"}, "topicName": kafka_name, "partitions": 1,
            "config": {"retention.ms": "3600000"},
        }),
    )
    .await;
    wait_for_reason(&topics, "first", "TopicReady").await;
    // creationTimestamp has one-second resolution: make the second one unambiguously younger.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    create_topic(
        &client,
        &ns,
        "second",
        serde_json::json!({
            "clusterRef": {"name": "local"}, "topicName": kafka_name, "partitions": 4,
            "config": {"retention.ms": "1000"},
        }),
    )
    .await;
    let second = wait_for_reason(&topics, "second", "ResourceConflict").await;
    let status = second.status.clone().unwrap_or_default();
    let (conflict, _, message) =
        condition(&status.conditions, "ResourceConflict").unwrap_or_default();
    assert_eq!(conflict, "True");
    assert!(message.contains(&format!("{}/first", ns.name)), "{message}");
    assert_eq!(broker_partitions(env, &kafka_name), Some(1));
    assert_eq!(
        broker_topic_config(env, &kafka_name)
            .await
            .get("retention.ms")
            .map(String::as_str),
        Some("3600000")
    );
}

/// A Topic with `policy`, made to drift in Kafka: retention.ms changed, segment.ms added.
/// A Topic `drifty` made Ready by the operator, then changed directly in Kafka while no operator
/// runs (retention.ms changed, segment.ms added), and the change seen on the broker; then the
/// operator starts again. Whatever the test sees afterwards is the operator's answer to the
/// drift, not a read from before it.
async fn drifted_topic(
    env: &'static exactly_testenv::Environment,
    policy: &str,
    prefix: &str,
) -> (TestNamespace, Api<Topic>, String, Operator) {
    let ns = env.namespace(prefix).await;
    let client = env.client().await.unwrap_or_else(|e| panic!("{e}"));
    let operator = Operator::start(client.clone(), &ns.name);
    create_cluster(&client, &ns, env).await;
    let kafka_name = ns.unique("drifty");
    let topics = create_topic(
        &client,
        &ns,
        "drifty",
        serde_json::json!({
            "clusterRef": {"name": "local"}, "topicName": kafka_name, "partitions": 1,
            "config": {"retention.ms": "3600000"}, "driftPolicy": policy,
        }),
    )
    .await;
    wait_for_reason(&topics, "drifty", "TopicReady").await;
    operator.stop().await;
    set_kafka_topic_config(env, &kafka_name, "retention.ms", Some("1000")).await;
    set_kafka_topic_config(env, &kafka_name, "segment.ms", Some("600000")).await;
    let drifted = BTreeMap::from([
        ("retention.ms".to_string(), "1000".to_string()),
        ("segment.ms".to_string(), "600000".to_string()),
    ]);
    eventually("the drift to show on the broker", TIMEOUT, || async {
        let config = broker_topic_config(env, &kafka_name).await;
        if config == drifted {
            Ok(())
        } else {
            Err(format!("{config:?}"))
        }
    })
    .await;
    let operator = Operator::start(client, &ns.name);
    (ns, topics, kafka_name, operator)
}

#[tokio::test]
async fn drift_made_in_kafka_is_reverted_with_drift_policy_revert() {
    let env = shared();
    let (_ns, _topics, kafka_name, _operator) = drifted_topic(env, "Revert", "topic-revert").await;
    eventually("the drift to be reverted", TIMEOUT, || async {
        let config = broker_topic_config(env, &kafka_name).await;
        let want = BTreeMap::from([("retention.ms".to_string(), "3600000".to_string())]);
        if config == want {
            Ok(())
        } else {
            Err(format!("{config:?}"))
        }
    })
    .await;
}

#[tokio::test]
async fn drift_made_in_kafka_is_listed_and_left_with_drift_policy_report() {
    let env = shared();
    let (_ns, topics, kafka_name, _operator) = drifted_topic(env, "Report", "topic-report").await;
    let status = eventually("the drift to be reported", TIMEOUT, || async {
        let topic = topics.get("drifty").await.map_err(|e| e.to_string())?;
        let status = topic.status.clone().unwrap_or_default();
        match condition(&status.conditions, "Drifted") {
            Some((s, _, _)) if s == "True" && status.drift.len() == 2 => Ok(status),
            other => Err(format!("{other:?} {:?}", status.drift)),
        }
    })
    .await;
    let drift: Vec<(String, Option<String>, Option<String>)> = status
        .drift
        .iter()
        .map(|d| (d.key.clone(), d.expected.clone(), d.actual.clone()))
        .collect();
    assert_eq!(
        drift,
        [
            (
                "retention.ms".into(),
                Some("3600000".into()),
                Some("1000".into())
            ),
            ("segment.ms".into(), None, Some("600000".into())),
        ]
    );
    let config = broker_topic_config(env, &kafka_name).await;
    assert_eq!(config.get("retention.ms").map(String::as_str), Some("1000"));
}

#[tokio::test]
async fn deleting_a_topic_with_deletion_policy_retain_keeps_the_kafka_topic() {
    let env = shared();
    let ns = env.namespace("topic-retain").await;
    let client = env.client().await.unwrap_or_else(|e| panic!("{e}"));
    run_operator(client.clone(), &ns.name);
    create_cluster(&client, &ns, env).await;
    let kafka_name = ns.unique("keep");
    let topics = create_topic(
        &client,
        &ns,
        "keep",
        serde_json::json!({"clusterRef": {"name": "local"}, "topicName": kafka_name, "partitions": 1}),
    )
    .await;
    wait_for_reason(&topics, "keep", "TopicReady").await;
    topics
        .delete("keep", &Default::default())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    eventually("the Topic resource to go", TIMEOUT, || async {
        match topics.get_opt("keep").await {
            Ok(None) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    // Kept, and still kept three refresh intervals later: nothing deletes it late.
    for _ in 0..3 {
        assert_eq!(
            broker_partitions(env, &kafka_name),
            Some(1),
            "the Kafka topic of a deleted Retain Topic is gone"
        );
        tokio::time::sleep(crate::support::REFRESH).await;
    }
    assert_eq!(broker_partitions(env, &kafka_name), Some(1));
}

#[tokio::test]
async fn deleting_a_topic_with_deletion_policy_delete_removes_the_kafka_topic() {
    let env = shared();
    let ns = env.namespace("topic-delete").await;
    let client = env.client().await.unwrap_or_else(|e| panic!("{e}"));
    run_operator(client.clone(), &ns.name);
    create_cluster(&client, &ns, env).await;
    let kafka_name = ns.unique("scratch");
    let topics = create_topic(
        &client,
        &ns,
        "scratch",
        serde_json::json!({
            "clusterRef": {"name": "local"}, "topicName": kafka_name, "partitions": 1,
            "deletionPolicy": "Delete",
        }),
    )
    .await;
    let topic = wait_for_reason(&topics, "scratch", "TopicReady").await;
    assert!(
        topic
            .metadata
            .finalizers
            .unwrap_or_default()
            .iter()
            .any(|f| f == "exactly.dev/delete-topic")
    );
    topics
        .delete("scratch", &Default::default())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    eventually("the Kafka topic to be deleted", TIMEOUT, || async {
        match (
            topics.get_opt("scratch").await,
            broker_partitions(env, &kafka_name),
        ) {
            (Ok(None), None) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
}

#[tokio::test]
async fn deleting_a_topic_an_active_consumer_group_reads_is_refused_with_the_reason() {
    use rdkafka::consumer::Consumer;
    let env = shared();
    let ns = env.namespace("topic-inuse").await;
    let client = env.client().await.unwrap_or_else(|e| panic!("{e}"));
    run_operator(client.clone(), &ns.name);
    create_cluster(&client, &ns, env).await;
    let kafka_name = ns.unique("busy");
    let topics = create_topic(
        &client,
        &ns,
        "busy",
        serde_json::json!({
            "clusterRef": {"name": "local"}, "topicName": kafka_name, "partitions": 1,
            "deletionPolicy": "Delete",
        }),
    )
    .await;
    wait_for_reason(&topics, "busy", "TopicReady").await;
    let group = ns.unique("readers");
    let consumer = consumer(env, &group, &kafka_name);
    // Joining happens while polling; wait until the group has a member.
    let wire = wire(env);
    eventually("the consumer to join its group", TIMEOUT, || async {
        let _ = tokio::time::timeout(Duration::from_millis(300), consumer.recv()).await;
        let groups = wire
            .describe_groups(std::slice::from_ref(&group))
            .await
            .map_err(|e| e.to_string())?;
        match groups.first() {
            Some(g) if !g.members.is_empty() && g.state == "Stable" => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    topics
        .delete("busy", &Default::default())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let topic = wait_for_reason(&topics, "busy", "DeletionBlocked").await;
    let (_, _, message) = condition(
        &topic.status.clone().unwrap_or_default().conditions,
        "Ready",
    )
    .unwrap_or_default();
    assert!(message.contains(&group), "{message}");
    assert_eq!(broker_partitions(env, &kafka_name), Some(1));

    consumer.unsubscribe();
    drop(consumer);
    eventually(
        "the Kafka topic to be deleted once the group is empty",
        TIMEOUT,
        || async {
            match (
                topics.get_opt("busy").await,
                broker_partitions(env, &kafka_name),
            ) {
                (Ok(None), None) => Ok(()),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await;
}

async fn dry_run_error(client: &Client, ns: &TestNamespace, spec: serde_json::Value) -> String {
    let topics: Api<Topic> = Api::namespaced(client.clone(), &ns.name);
    let topic: Topic = serde_json::from_value(serde_json::json!({
        "apiVersion": "exactly.dev/v1alpha1", "kind": "Topic",
        "metadata": {"name": "unsafe"}, "spec": spec,
    }))
    .unwrap_or_else(|e| panic!("{e}"));
    topics
        .create(
            &PostParams {
                dry_run: true,
                ..Default::default()
            },
            &topic,
        )
        .await
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default()
}

#[tokio::test]
async fn server_dry_run_rejects_unclean_leader_election_with_a_readable_message() {
    let env = shared();
    let ns = env.namespace("topic-unclean").await;
    let client = env.client().await.unwrap_or_else(|e| panic!("{e}"));
    let err = dry_run_error(
        &client,
        &ns,
        serde_json::json!({"clusterRef": {"name": "local"}, "partitions": 1,
            "config": {"unclean.leader.election.enable": "TRUE"}}),
    )
    .await;
    assert!(
        err.contains("unclean.leader.election.enable must not be true"),
        "{err}"
    );
}

#[tokio::test]
async fn server_dry_run_rejects_min_insync_replicas_not_below_replication() {
    let env = shared();
    let ns = env.namespace("topic-minisr").await;
    let client = env.client().await.unwrap_or_else(|e| panic!("{e}"));
    let err = dry_run_error(
        &client,
        &ns,
        serde_json::json!({"clusterRef": {"name": "local"}, "partitions": 1,
            "replicationFactor": 3, "config": {"min.insync.replicas": "3"}}),
    )
    .await;
    assert!(
        err.contains("min.insync.replicas must be below replicationFactor"),
        "{err}"
    );
    let err = dry_run_error(
        &client,
        &ns,
        serde_json::json!({"clusterRef": {"name": "local"}, "partitions": 1,
            "replicationFactor": 3, "config": {"min.insync.replicas": "1"}}),
    )
    .await;
    assert!(
        err.contains("at least 2 when replicationFactor is 3"),
        "{err}"
    );
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

#[tokio::test]
async fn a_topic_whose_cluster_resource_is_gone_is_released_without_touching_kafka() {
    let env = shared();
    let ns = env.namespace("topic-orphan").await;
    let client = env.client().await.unwrap_or_else(|e| panic!("{e}"));
    run_operator(client.clone(), &ns.name);
    create_cluster(&client, &ns, env).await;
    let kafka_name = ns.unique("orphan");
    let topics = create_topic(
        &client,
        &ns,
        "orphan",
        serde_json::json!({
            "clusterRef": {"name": "local"}, "topicName": kafka_name, "partitions": 1,
            "deletionPolicy": "Delete",
        }),
    )
    .await;
    wait_for_reason(&topics, "orphan", "TopicReady").await;
    let clusters: Api<exactly::api::KafkaCluster> = Api::namespaced(client.clone(), &ns.name);
    clusters
        .delete("local", &Default::default())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    topics
        .delete("orphan", &Default::default())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    eventually("the Topic to be released", TIMEOUT, || async {
        match topics.get_opt("orphan").await {
            Ok(None) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    assert_eq!(broker_partitions(env, &kafka_name), Some(1));
}
