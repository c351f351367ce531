//! What several tests need: the operator running against one namespace, and Kafka's own view.

use std::collections::BTreeMap;
use std::time::Duration;

use exactly::api::conditions;
use exactly::api::{KafkaCluster, Topic};
use exactly_testenv::{Environment, TestNamespace};
use kube::Client;
use kube::api::{Api, PostParams};
use rdkafka::admin::{AdminClient, AdminOptions, ConfigSource, ResourceSpecifier};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;

/// How often the operator under test refreshes delivery figures: short, so tests see changes
/// within seconds.
pub const REFRESH: Duration = Duration::from_secs(2);

/// Runs the operator's controllers for `namespace` in this test's runtime; they stop with it.
pub fn run_operator(client: Client, namespace: &str) {
    let options = exactly::controller::Options {
        namespace: Some(namespace.to_string()),
        concurrency: 2,
        refresh_interval: REFRESH,
        ..Default::default()
    };
    tokio::spawn(exactly::controller::run(
        client,
        options,
        std::future::pending(),
    ));
}

/// An admin client of the environment's broker, independent of the operator's own.
pub fn kafka_admin(env: &Environment) -> AdminClient<DefaultClientContext> {
    ClientConfig::new()
        .set("bootstrap.servers", &env.bootstrap_servers)
        .create()
        .unwrap_or_else(|e| panic!("kafka admin client: {e}"))
}

/// Partitions of `topic` as the broker reports them, `None` when it does not exist.
pub fn broker_partitions(env: &Environment, topic: &str) -> Option<usize> {
    let admin = kafka_admin(env);
    let metadata = admin
        .inner()
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("metadata for {topic}: {e}"));
    let found = metadata.topics().iter().find(|t| t.name() == topic)?;
    if found.error().is_some() {
        return None;
    }
    Some(found.partitions().len())
}

/// Configs set on the topic itself (not inherited from the broker), as the broker reports them.
pub async fn broker_topic_config(env: &Environment, topic: &str) -> BTreeMap<String, String> {
    let admin = kafka_admin(env);
    let results = admin
        .describe_configs([&ResourceSpecifier::Topic(topic)], &AdminOptions::new())
        .await
        .unwrap_or_else(|e| panic!("describe configs of {topic}: {e}"));
    let resource = match results.into_iter().next() {
        Some(Ok(resource)) => resource,
        other => panic!("describe configs of {topic}: {other:?}"),
    };
    resource
        .entries
        .into_iter()
        .filter(|e| e.source == ConfigSource::DynamicTopic)
        .filter_map(|e| Some((e.name, e.value?)))
        .collect()
}

/// The Topic's `Ready` condition as (status, reason, observedGeneration), for assertions.
pub fn ready_of(topic: &Topic) -> Option<(String, String, Option<i64>)> {
    let status = topic.status.as_ref()?;
    let ready = conditions::find(&status.conditions, conditions::types::READY)?;
    Some((
        format!("{:?}", ready.status),
        ready.reason.clone(),
        ready.observed_generation,
    ))
}

/// Creates the KafkaCluster `local` in the test's namespace, pointing at the environment's broker.
pub async fn create_cluster(client: &Client, ns: &TestNamespace, env: &Environment) {
    let clusters: Api<KafkaCluster> = Api::namespaced(client.clone(), &ns.name);
    let cluster: KafkaCluster = serde_json::from_value(serde_json::json!({
        "apiVersion": "exactly.dev/v1alpha1",
        "kind": "KafkaCluster",
        "metadata": {"name": "local"},
        "spec": {"external": {"bootstrapServers": env.bootstrap_servers}},
    }))
    .unwrap_or_else(|e| panic!("cluster manifest: {e}"));
    clusters
        .create(&PostParams::default(), &cluster)
        .await
        .unwrap_or_else(|e| panic!("create cluster: {e}"));
}
