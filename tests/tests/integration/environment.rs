//! The environment itself: the control plane's controllers, scheduler and kwok work together,
//! and the broker does transactions.

use std::process::Command;
use std::time::Duration;

use exactly_testenv::{Environment, TestNamespace, eventually, shared};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, PostParams};
use rdkafka::admin::{NewTopic, TopicReplication};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{Message, Offset, TopicPartitionList};

use crate::support::kafka_admin;

#[tokio::test]
async fn api_server_reports_the_pinned_kubernetes_version() {
    let env = shared();
    let client = env.client().await.unwrap_or_else(|e| panic!("{e}"));
    let version = client
        .apiserver_version()
        .await
        .unwrap_or_else(|e| panic!("/version: {e}"));
    let pinned = exactly_testenv::tools::version("K8S_VERSION");
    assert_eq!(version.git_version, format!("v{pinned}"));
}

#[tokio::test]
async fn statefulset_of_three_replicas_gets_three_ready_pods_on_kwok_nodes() {
    let env = shared();
    let ns = env.namespace("sts").await;
    let client = env.client().await.unwrap_or_else(|e| panic!("{e}"));
    let sets: Api<StatefulSet> = Api::namespaced(client.clone(), &ns.name);
    let set: StatefulSet = serde_json::from_value(serde_json::json!({
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": "brokers"},
        "spec": {
            "replicas": 3,
            "serviceName": "brokers",
            "selector": {"matchLabels": {"app": "brokers"}},
            "template": {
                "metadata": {"labels": {"app": "brokers"}},
                "spec": {"containers": [{"name": "kafka", "image": "apache/kafka:4.3.1"}]},
            },
            // Claims as a broker would have them: kwok's volume stages bind them.
            "volumeClaimTemplates": [{
                "metadata": {"name": "data"},
                "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
            }],
        },
    }))
    .unwrap_or_else(|e| panic!("manifest: {e}"));
    sets.create(&PostParams::default(), &set)
        .await
        .unwrap_or_else(|e| panic!("create: {e}"));

    let ready = eventually("3 ready replicas", Duration::from_secs(90), || async {
        let set = sets.get("brokers").await.map_err(|e| e.to_string())?;
        let ready = set
            .status
            .as_ref()
            .and_then(|s| s.ready_replicas)
            .unwrap_or(0);
        if ready == 3 {
            Ok(ready)
        } else {
            Err(format!("{ready} ready: {:?}", set.status))
        }
    })
    .await;
    assert_eq!(ready, 3);

    let pods: Api<Pod> = Api::namespaced(client, &ns.name);
    let pods = pods
        .list(&ListParams::default().labels("app=brokers"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let mut placed: Vec<(String, String, String)> = pods
        .items
        .iter()
        .map(|p| {
            let name = p.metadata.name.clone().unwrap_or_default();
            let node = p
                .spec
                .as_ref()
                .and_then(|s| s.node_name.clone())
                .unwrap_or_default();
            let phase = p
                .status
                .as_ref()
                .and_then(|s| s.phase.clone())
                .unwrap_or_default();
            (name, node, phase)
        })
        .collect();
    placed.sort();
    assert_eq!(placed.len(), 3, "{placed:?}");
    for (name, node, phase) in &placed {
        assert!(node.starts_with("kwok-node-"), "{name} on {node}");
        assert_eq!(phase, "Running", "{name}");
    }
}

/// A record committed in a transaction is read under read_committed; an aborted one is not.
#[tokio::test]
async fn broker_commits_transactions_and_hides_aborted_ones_from_read_committed() {
    let env = shared();
    let ns = env.namespace("txn").await;
    let topic = ns.unique("payments");
    let admin = kafka_admin(env);
    let created = admin
        .create_topics(
            [&NewTopic::new(&topic, 1, TopicReplication::Fixed(1))],
            &Default::default(),
        )
        .await
        .unwrap_or_else(|e| panic!("create topic: {e}"));
    assert!(created.iter().all(|r| r.is_ok()), "{created:?}");

    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", &env.bootstrap_servers)
        .set("transactional.id", ns.unique("txn-0"))
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .create()
        .unwrap_or_else(|e| panic!("producer: {e}"));
    let timeout = Duration::from_secs(30);
    producer
        .init_transactions(timeout)
        .unwrap_or_else(|e| panic!("init_transactions: {e}"));
    for (payload, commit) in [("charge-1 aborted", false), ("charge-1", true)] {
        producer
            .begin_transaction()
            .unwrap_or_else(|e| panic!("begin: {e}"));
        producer
            .send(BaseRecord::<(), str>::to(&topic).payload(payload))
            .unwrap_or_else(|(e, _)| panic!("send: {e}"));
        if commit {
            producer
                .commit_transaction(timeout)
                .unwrap_or_else(|e| panic!("commit: {e}"));
        } else {
            producer
                .abort_transaction(timeout)
                .unwrap_or_else(|e| panic!("abort: {e}"));
        }
    }

    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &env.bootstrap_servers)
        .set("group.id", ns.unique("reader"))
        .set("isolation.level", "read_committed")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap_or_else(|e| panic!("consumer: {e}"));
    let mut assignment = TopicPartitionList::new();
    assignment
        .add_partition_offset(&topic, 0, Offset::Beginning)
        .unwrap_or_else(|e| panic!("{e}"));
    consumer
        .assign(&assignment)
        .unwrap_or_else(|e| panic!("assign: {e}"));
    let mut seen = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !seen.iter().any(|s: &String| s == "charge-1") && std::time::Instant::now() < deadline {
        if let Some(Ok(message)) = consumer.poll(Duration::from_millis(500)) {
            seen.push(String::from_utf8_lossy(message.payload().unwrap_or_default()).into_owned());
        }
    }
    assert_eq!(seen, vec!["charge-1".to_string()]);
}

/// Runs Kafka's own admin tool (`TopicCommand --list`) against the SASL_SSL listener as
/// `username`/`password` with `mechanism`, trusting only the environment's CA; returns whether it
/// exited 0, and its output.
fn list_topics_over_sasl_ssl(
    env: &Environment,
    ns: &TestNamespace,
    mechanism: &str,
    password: &str,
) -> (bool, String) {
    let dir = env.dir.join(&ns.name);
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let ca = dir.join("ca.pem");
    std::fs::write(&ca, &env.kafka_ca_pem).unwrap_or_else(|e| panic!("{}: {e}", ca.display()));
    let config = dir.join(format!("client-{mechanism}.properties"));
    std::fs::write(
        &config,
        format!(
            "security.protocol=SASL_SSL\n\
             sasl.mechanism={mechanism}\n\
             sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required \
             username=\"{username}\" password=\"{password}\";\n\
             ssl.truststore.type=PEM\n\
             ssl.truststore.location={ca}\n\
             request.timeout.ms=10000\n\
             default.api.timeout.ms=20000\n",
            username = env.kafka_username,
            ca = ca.display(),
        ),
    )
    .unwrap_or_else(|e| panic!("{}: {e}", config.display()));
    let output = Command::new("java")
        .args(["-Xmx256m", "-XX:TieredStopAtLevel=1", "-cp"])
        .arg(env.tools.kafka_classpath())
        .arg("org.apache.kafka.tools.TopicCommand")
        .arg("--bootstrap-server")
        .arg(&env.secure_bootstrap_servers)
        .arg("--command-config")
        .arg(&config)
        .arg("--list")
        .output()
        .unwrap_or_else(|e| panic!("running java: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

/// The secure listener serves a client that verifies the broker's certificate against the
/// environment's CA and authenticates as the environment's SCRAM user, with either mechanism:
/// it sees the same broker, a topic made over PLAINTEXT included.
#[tokio::test]
async fn secure_listener_admits_the_scram_user_over_tls_verified_by_the_environment_ca() {
    let env = shared();
    let ns = env.namespace("sasl-ok").await;
    assert!(
        env.kafka_ca_pem.contains("BEGIN CERTIFICATE"),
        "{}",
        env.kafka_ca_pem
    );
    let secure = &env.secure_bootstrap_servers;
    assert_ne!(secure, &env.bootstrap_servers);
    let topic = ns.unique("seen-securely");
    let created = kafka_admin(env)
        .create_topics(
            [&NewTopic::new(&topic, 1, TopicReplication::Fixed(1))],
            &Default::default(),
        )
        .await
        .unwrap_or_else(|e| panic!("create topic: {e}"));
    assert!(created.iter().all(|r| r.is_ok()), "{created:?}");
    for mechanism in ["SCRAM-SHA-256", "SCRAM-SHA-512"] {
        let (ok, output) = list_topics_over_sasl_ssl(env, &ns, mechanism, &env.kafka_password);
        assert!(
            ok,
            "TopicCommand --list on {secure} with {mechanism}:\n{output}"
        );
        assert!(
            output.lines().any(|line| line.trim() == topic),
            "{topic} not listed on {secure} with {mechanism}:\n{output}"
        );
    }
}

/// A wrong password is refused by the secure listener: the tool fails with an authentication
/// error instead of listing topics.
#[tokio::test]
async fn secure_listener_refuses_a_wrong_scram_password() {
    let env = shared();
    let ns = env.namespace("sasl-bad").await;
    let wrong = format!("{}-wrong", env.kafka_password);
    let (ok, output) = list_topics_over_sasl_ssl(env, &ns, "SCRAM-SHA-256", &wrong);
    assert!(
        !ok,
        "TopicCommand --list with a wrong password succeeded:\n{output}"
    );
    assert!(
        output.contains("SaslAuthenticationException") && output.contains("invalid credentials"),
        "no SCRAM authentication error in:\n{output}"
    );
}
