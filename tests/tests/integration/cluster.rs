//! KafkaCluster (external): the operator reaches the brokers and reports what it found.

use std::time::Duration;

use exactly::api::KafkaCluster;
use exactly::api::conditions::{self, types};
use exactly_testenv::{eventually, shared};
use kube::api::{Api, PostParams};

use crate::support::{create_cluster, kafka_admin, run_operator};

#[tokio::test]
async fn external_cluster_is_reported_ready_with_its_id_and_broker_count() {
    let env = shared();
    let ns = env.namespace("cluster-ready").await;
    let client = env.client().await.unwrap_or_else(|e| panic!("{e}"));
    run_operator(client.clone(), &ns.name);
    create_cluster(&client, &ns, env).await;
    let clusters: Api<KafkaCluster> = Api::namespaced(client, &ns.name);

    let status = eventually(
        "KafkaCluster to be Ready",
        Duration::from_secs(60),
        || async {
            let cluster = clusters.get("local").await.map_err(|e| e.to_string())?;
            let status = cluster.status.clone().unwrap_or_default();
            match conditions::find(&status.conditions, types::READY) {
                Some(ready) if ready.status == exactly::api::ConditionStatus::True => Ok(status),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await;

    let broker_cluster_id = kafka_admin(env)
        .inner()
        .fetch_cluster_id(Duration::from_secs(10));
    assert!(broker_cluster_id.is_some());
    assert_eq!(status.cluster_id, broker_cluster_id);
    assert_eq!(status.brokers, Some(1));
}

#[tokio::test]
async fn bootstrap_servers_that_are_not_host_port_are_rejected_by_the_api_server() {
    let env = shared();
    let ns = env.namespace("cluster-invalid").await;
    let client = env.client().await.unwrap_or_else(|e| panic!("{e}"));
    let clusters: Api<KafkaCluster> = Api::namespaced(client, &ns.name);
    let cluster: KafkaCluster = serde_json::from_value(serde_json::json!({
        "apiVersion": "exactly.dev/v1alpha1",
        "kind": "KafkaCluster",
        "metadata": {"name": "bad"},
        "spec": {"external": {"bootstrapServers": "kafka-without-port"}},
    }))
    .unwrap_or_else(|e| panic!("manifest: {e}"));
    let err = clusters
        .create(&PostParams::default(), &cluster)
        .await
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        err.contains("spec.external.bootstrapServers"),
        "expected a rejection, got: {err:?}"
    );
}

#[tokio::test]
async fn a_single_development_broker_is_reachable_but_names_the_exactly_once_rules_it_fails() {
    let env = shared();
    let ns = env.namespace("cluster-eos").await;
    let client = env.client().await.unwrap_or_else(|e| panic!("{e}"));
    run_operator(client.clone(), &ns.name);
    create_cluster(&client, &ns, env).await;
    let clusters: Api<KafkaCluster> = Api::namespaced(client, &ns.name);

    let status = eventually(
        "KafkaCluster to judge the exactly-once rules",
        Duration::from_secs(60),
        || async {
            let cluster = clusters.get("local").await.map_err(|e| e.to_string())?;
            let status = cluster.status.clone().unwrap_or_default();
            match conditions::find(&status.conditions, "ExactlyOnceReady") {
                Some(_) => Ok(status),
                None => Err(format!("{:?}", status.conditions)),
            }
        },
    )
    .await;
    let ready = conditions::find(&status.conditions, types::READY).cloned();
    assert_eq!(
        ready.map(|r| r.status),
        Some(exactly::api::ConditionStatus::True)
    );
    let eos = conditions::find(&status.conditions, "ExactlyOnceReady").cloned();
    let eos = eos.unwrap_or_else(|| panic!("no ExactlyOnceReady"));
    assert_eq!(eos.status, exactly::api::ConditionStatus::False);
    assert_eq!(
        status.failed_rules,
        [
            "Durability",
            "TransactionLogReplication",
            "OffsetsTopicReplication",
            "MinInsyncReplicas"
        ]
    );
    assert!(
        eos.message
            .contains("transaction.state.log.replication.factor is 1"),
        "{}",
        eos.message
    );
    let settings = status.exactly_once.unwrap_or_default();
    assert_eq!(settings.transaction_state_log_replication_factor, Some(1));
    assert_eq!(settings.unclean_leader_election_enable, Some(false));
    assert_eq!(settings.transaction_version, Some(2));
}

/// A KafkaCluster `secure` on the environment's SASL_SSL listener, with its credentials in the
/// Secret `secure-login` (SCRAM-SHA-512, the environment's CA).
async fn create_secure_cluster(client: &kube::Client, ns: &str, password: &str) {
    crate::support::create_secure_cluster(client, ns, "secure", password).await;
}

async fn ready_condition(client: &kube::Client, ns: &str) -> exactly::api::Condition {
    let clusters: Api<KafkaCluster> = Api::namespaced(client.clone(), ns);
    eventually(
        "the secure cluster's Ready condition",
        Duration::from_secs(60),
        || async {
            let cluster = clusters.get("secure").await.map_err(|e| e.to_string())?;
            let status = cluster.status.unwrap_or_default();
            conditions::find(&status.conditions, types::READY)
                .cloned()
                .ok_or_else(|| "no Ready yet".to_string())
        },
    )
    .await
}

#[tokio::test]
async fn a_cluster_reached_over_sasl_ssl_with_scram_is_ready_and_its_topics_are_created() {
    let env = shared();
    let ns = env.namespace("cluster-scram").await;
    let client = env.client().await.unwrap_or_else(|e| panic!("{e}"));
    run_operator(client.clone(), &ns.name);
    create_secure_cluster(&client, &ns.name, &env.kafka_password).await;
    let ready = ready_condition(&client, &ns.name).await;
    assert_eq!(
        ready.status,
        exactly::api::ConditionStatus::True,
        "{}",
        ready.message
    );

    let kafka_topic = ns.unique("secured");
    let topics: Api<exactly::api::Topic> = Api::namespaced(client.clone(), &ns.name);
    let topic: exactly::api::Topic = serde_json::from_value(serde_json::json!({
        "apiVersion": "exactly.dev/v1alpha1", "kind": "Topic", "metadata": {"name": "secured"},
        "spec": {"clusterRef": {"name": "secure"}, "topicName": kafka_topic, "partitions": 2},
    }))
    .unwrap_or_else(|e| panic!("{e}"));
    topics
        .create(&PostParams::default(), &topic)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    eventually(
        "the topic to exist on the broker",
        Duration::from_secs(60),
        || async {
            match crate::support::broker_partitions(env, &kafka_topic) {
                Some(2) => Ok(()),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await;
}

#[tokio::test]
async fn a_wrong_sasl_password_is_reported_with_the_brokers_refusal() {
    let env = shared();
    let ns = env.namespace("cluster-badpass").await;
    let client = env.client().await.unwrap_or_else(|e| panic!("{e}"));
    run_operator(client.clone(), &ns.name);
    create_secure_cluster(&client, &ns.name, "not-the-password").await;
    let ready = ready_condition(&client, &ns.name).await;
    assert_eq!(ready.status, exactly::api::ConditionStatus::False);
    assert!(
        ready.message.contains("SASL_AUTHENTICATION_FAILED"),
        "{}",
        ready.message
    );
}
