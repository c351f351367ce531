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
