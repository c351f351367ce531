//! The raw-protocol admin client against the real broker: every admin call it makes, each
//! checked against what rdkafka (an independent client) or Kafka itself observes, with its error
//! paths. Coordinator errors (NOT_COORDINATOR, COORDINATOR_LOAD_IN_PROGRESS,
//! COORDINATOR_NOT_AVAILABLE) cannot be provoked on the environment's single broker without
//! disturbing the other tests, so those tests put a [`Proxy`] between the client and the broker
//! that answers a scripted refusal instead of forwarding, and can advertise the coordinator at a
//! second address, as if it had moved to another broker.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use exactly::kafka::security::{Mechanism, Protocol, Security};
use exactly::kafka::wire::ConfigSource;
use exactly::kafka::{
    CreateOutcome, Isolation, KafkaAdmin, KafkaError, NewTopicRequest, OffsetSpec, TopicPartition,
    WireClient, WireError,
};
use exactly_testenv::{Environment, TestNamespace, eventually, shared};
use rdkafka::admin::{AdminOptions, ResourceSpecifier};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, StreamConsumer};
use rdkafka::producer::{
    DefaultProducerContext, FutureProducer, FutureRecord, Producer as _, ThreadedProducer,
};
use rdkafka::{Offset, TopicPartitionList};

use crate::support::{
    broker_partitions, broker_topic_config, consumer, create_kafka_topic, hang_a_transaction,
    kafka_admin, leave_transaction_open, produce_committed, producer_from_properties, wire,
};

const TIMEOUT: Duration = Duration::from_secs(60);
const KAFKA_TIMEOUT: Duration = Duration::from_secs(20);

/// Kafka error codes the tests expect by name.
mod code {
    pub const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
    pub const COORDINATOR_LOAD_IN_PROGRESS: i16 = 14;
    pub const COORDINATOR_NOT_AVAILABLE: i16 = 15;
    pub const NOT_COORDINATOR: i16 = 16;
    pub const UNKNOWN_MEMBER_ID: i16 = 25;
    pub const UNSUPPORTED_SASL_MECHANISM: i16 = 33;
    pub const SASL_AUTHENTICATION_FAILED: i16 = 58;
    pub const GROUP_ID_NOT_FOUND: i16 = 69;
    pub const UNSTABLE_OFFSET_COMMIT: i16 = 88;
    pub const TRANSACTIONAL_ID_NOT_FOUND: i16 = 105;
}

/// The broker-wide default that `hang_a_transaction` switches off and on while other tests run.
const PARTITION_VERIFICATION: &str = "transaction.partition.verification.enable";

async fn setup(prefix: &str) -> (&'static Environment, TestNamespace) {
    let env = shared();
    let ns = env.namespace(prefix).await;
    (env, ns)
}

/// The operator's high-level client (the one controllers use) of the plaintext listener.
fn admin(env: &Environment) -> KafkaAdmin {
    KafkaAdmin::connect(&env.bootstrap_servers)
        .unwrap_or_else(|e| panic!("admin client of {}: {e}", env.bootstrap_servers))
}

/// The broker's node id, as rdkafka reads it from metadata.
fn broker_id(env: &Environment) -> i32 {
    let metadata = kafka_admin(env)
        .inner()
        .fetch_metadata(None, KAFKA_TIMEOUT)
        .unwrap_or_else(|e| panic!("rdkafka metadata: {e}"));
    match metadata.brokers() {
        [broker] => broker.id(),
        other => panic!("expected one broker, rdkafka sees {}", other.len()),
    }
}

fn now_ms() -> i64 {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_else(|e| panic!("clock before the epoch: {e}"));
    i64::try_from(since.as_millis()).unwrap_or_else(|e| panic!("clock out of range: {e}"))
}

fn tp(topic: &str, partition: i32) -> TopicPartition {
    TopicPartition::new(topic, partition)
}

/// An rdkafka consumer that only looks (never subscribes): offsets, watermarks and committed
/// offsets of `group` as librdkafka reads them, at `isolation` (`read_committed` or
/// `read_uncommitted`).
fn observer(env: &Environment, group: &str, isolation: &str) -> BaseConsumer {
    ClientConfig::new()
        .set("bootstrap.servers", &env.bootstrap_servers)
        .set("group.id", group)
        .set("isolation.level", isolation)
        .set("enable.auto.commit", "false")
        .create()
        .unwrap_or_else(|e| panic!("rdkafka observer of {group}: {e}"))
}

/// (low, high) watermarks of a partition as rdkafka reads them; under `read_committed` the high
/// one is the last stable offset.
fn watermarks(env: &Environment, topic: &str, partition: i32, isolation: &str) -> (i64, i64) {
    observer(env, "wire-watermarks", isolation)
        .fetch_watermarks(topic, partition, KAFKA_TIMEOUT)
        .unwrap_or_else(|e| panic!("rdkafka watermarks of {topic}-{partition}: {e}"))
}

/// Commits offsets for `group` with rdkafka (as a consumer outside group management would).
fn rdkafka_commit(env: &Environment, group: &str, topic: &str, offsets: &[(i32, i64)]) {
    let mut list = TopicPartitionList::new();
    for (partition, offset) in offsets {
        list.add_partition_offset(topic, *partition, Offset::Offset(*offset))
            .unwrap_or_else(|e| panic!("offset list: {e}"));
    }
    observer(env, group, "read_committed")
        .commit(&list, CommitMode::Sync)
        .unwrap_or_else(|e| panic!("rdkafka commit for {group}: {e}"));
}

/// The offsets `group` has committed on `topic`'s first `partitions` partitions, as rdkafka reads
/// them (partitions without one left out).
fn rdkafka_committed(
    env: &Environment,
    group: &str,
    topic: &str,
    partitions: i32,
) -> BTreeMap<TopicPartition, i64> {
    let mut list = TopicPartitionList::new();
    for partition in 0..partitions {
        list.add_partition(topic, partition);
    }
    observer(env, group, "read_committed")
        .committed_offsets(list, KAFKA_TIMEOUT)
        .unwrap_or_else(|e| panic!("rdkafka committed offsets of {group}: {e}"))
        .elements()
        .iter()
        .filter_map(|e| match e.offset() {
            Offset::Offset(o) => Some((tp(e.topic(), e.partition()), o)),
            _ => None,
        })
        .collect()
}

/// A live member of `group`: an rdkafka consumer subscribed to `topic`, polling in the
/// background, once rdkafka itself reports the group Stable with it. Leaves when dropped.
struct Member {
    poller: tokio::task::JoinHandle<()>,
}

impl Member {
    async fn join(env: &Environment, group: &str, topic: &str) -> Member {
        let consumer: Arc<StreamConsumer> = Arc::new(consumer(env, group, topic));
        let polling = consumer.clone();
        let poller = tokio::spawn(async move {
            loop {
                let _ = polling.recv().await;
            }
        });
        drop(consumer);
        let rd = kafka_admin(env);
        eventually("the rdkafka member to join", TIMEOUT, || async {
            let list = rd
                .inner()
                .fetch_group_list(Some(group), KAFKA_TIMEOUT)
                .map_err(|e| e.to_string())?;
            match list.groups().first() {
                Some(g) if g.state() == "Stable" && g.members().len() == 1 => Ok(()),
                Some(g) => Err(format!("{} with {} members", g.state(), g.members().len())),
                None => Err("no group".into()),
            }
        })
        .await;
        Member { poller }
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        self.poller.abort();
    }
}

type TxnProducer = ThreadedProducer<DefaultProducerContext>;

/// An rdkafka transactional producer with `transactional.id` `id`, initialised.
fn transactional_producer(env: &Environment, id: &str, timeout_ms: u32) -> TxnProducer {
    let producer = producer_from_properties(&BTreeMap::from([
        (
            "bootstrap.servers".to_string(),
            env.bootstrap_servers.clone(),
        ),
        ("transactional.id".to_string(), id.to_string()),
        ("transaction.timeout.ms".to_string(), timeout_ms.to_string()),
    ]));
    producer
        .init_transactions(KAFKA_TIMEOUT)
        .unwrap_or_else(|e| panic!("init transactions of {id}: {e}"));
    producer
}

/// A client of the broker's SASL_SSL listener (the environment's CA, its SCRAM user).
fn secure_client(env: &Environment, mechanism: Mechanism, password: &str) -> WireClient {
    WireClient::with_security(
        &env.secure_bootstrap_servers,
        "exactly-test",
        Duration::from_secs(15),
        secure(env, mechanism, password),
    )
    .unwrap_or_else(|e| panic!("secure client of {}: {e}", env.secure_bootstrap_servers))
}

fn secure(env: &Environment, mechanism: Mechanism, password: &str) -> Security {
    Security {
        protocol: Protocol::SaslSsl,
        sasl: Some((mechanism, env.kafka_username.clone(), password.to_string())),
        ca_pem: Some(env.kafka_ca_pem.clone()),
    }
}

/// The code of a refusal the high-level client reports, e.g. `INVALID_PARTITIONS: ...`.
fn refused_code(result: Result<impl std::fmt::Debug, KafkaError>) -> String {
    match result {
        Err(KafkaError::Refused { code, .. }) => code,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

fn wire_source(source: ConfigSource) -> &'static str {
    match source {
        ConfigSource::DynamicTopic => "DynamicTopic",
        ConfigSource::DynamicBroker => "DynamicBroker",
        ConfigSource::DynamicDefaultBroker => "DynamicDefaultBroker",
        ConfigSource::StaticBroker => "StaticBroker",
        ConfigSource::Default => "Default",
        ConfigSource::Other(_) => "Other",
    }
}

fn rdkafka_source(source: &rdkafka::admin::ConfigSource) -> &'static str {
    use rdkafka::admin::ConfigSource as S;
    match source {
        S::DynamicTopic => "DynamicTopic",
        S::DynamicBroker => "DynamicBroker",
        S::DynamicDefaultBroker => "DynamicDefaultBroker",
        S::StaticBroker => "StaticBroker",
        S::Default => "Default",
        S::Unknown => "Other",
    }
}

/// Every entry rdkafka reads for `resource` as (value, source, read-only, sensitive).
type Described = BTreeMap<String, (Option<String>, &'static str, bool, bool)>;

async fn rdkafka_configs(env: &Environment, resource: ResourceSpecifier<'_>) -> Described {
    let results = kafka_admin(env)
        .describe_configs([&resource], &AdminOptions::new())
        .await
        .unwrap_or_else(|e| panic!("rdkafka describe configs of {resource:?}: {e}"));
    let resource = match results.into_iter().next() {
        Some(Ok(resource)) => resource,
        other => panic!("rdkafka describe configs: {other:?}"),
    };
    resource
        .entries
        .into_iter()
        .map(|e| {
            let source = rdkafka_source(&e.source);
            (e.name, (e.value, source, e.is_read_only, e.is_sensitive))
        })
        .collect()
}

fn described(entries: BTreeMap<String, exactly::kafka::wire::ConfigEntry>) -> Described {
    entries
        .into_iter()
        .map(|(k, e)| {
            let source = wire_source(e.source);
            (k, (e.value, source, e.read_only, e.sensitive))
        })
        .collect()
}

// ----- cluster ---------------------------------------------------------------------------------

#[tokio::test]
async fn metadata_names_the_cluster_and_its_one_broker_as_rdkafka_sees_them() {
    let (env, _ns) = setup("wire-metadata").await;
    let metadata = wire(env)
        .metadata(Some(&[]))
        .await
        .unwrap_or_else(|e| panic!("metadata: {e}"));
    let rd = kafka_admin(env);
    let rd_metadata = rd
        .inner()
        .fetch_metadata(None, KAFKA_TIMEOUT)
        .unwrap_or_else(|e| panic!("rdkafka metadata: {e}"));

    assert_eq!(
        metadata.cluster_id,
        rd.inner().fetch_cluster_id(KAFKA_TIMEOUT)
    );
    assert!(metadata.cluster_id.is_some(), "a KRaft cluster has an id");
    let brokers: Vec<(i32, String, i32, Option<String>)> = metadata
        .brokers
        .iter()
        .map(|b| (b.id, b.host.clone(), b.port, b.rack.clone()))
        .collect();
    let seen: Vec<(i32, String, i32, Option<String>)> = rd_metadata
        .brokers()
        .iter()
        .map(|b| (b.id(), b.host().to_string(), b.port(), None))
        .collect();
    assert_eq!(brokers, seen);
    assert_eq!(
        metadata
            .brokers
            .iter()
            .map(|b| format!("{}:{}", b.host, b.port))
            .collect::<Vec<_>>(),
        std::slice::from_ref(&env.bootstrap_servers),
        "the PLAINTEXT listener advertises the address it was asked on"
    );
    assert_eq!(metadata.controller_id, brokers[0].0);
    assert!(metadata.topics.is_empty(), "no topic was asked for");
}

#[tokio::test]
async fn metadata_of_a_topic_lists_its_partitions_leaders_and_replicas_as_rdkafka_sees_them() {
    let (env, ns) = setup("wire-metadata-topic").await;
    let topic = ns.unique("orders");
    create_kafka_topic(env, &topic, 3, &[]).await;
    let client = wire(env);

    let found = eventually(
        "the topic with a leader on every partition",
        TIMEOUT,
        || async {
            let metadata = client
                .metadata(Some(std::slice::from_ref(&topic)))
                .await
                .map_err(|e| e.to_string())?;
            match metadata.topic(&topic) {
                Some(t)
                    if t.partitions.len() == 3 && t.partitions.iter().all(|p| p.leader >= 0) =>
                {
                    Ok(t.clone())
                }
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await;
    let rd = kafka_admin(env)
        .inner()
        .fetch_metadata(Some(&topic), KAFKA_TIMEOUT)
        .unwrap_or_else(|e| panic!("rdkafka metadata of {topic}: {e}"));
    let rd_topic = &rd.topics()[0];
    let mut expected: Vec<(i32, i32, Vec<i32>, Vec<i32>)> = rd_topic
        .partitions()
        .iter()
        .map(|p| (p.id(), p.leader(), p.replicas().to_vec(), p.isr().to_vec()))
        .collect();
    expected.sort();
    let partitions: Vec<(i32, i32, Vec<i32>, Vec<i32>)> = found
        .partitions
        .iter()
        .map(|p| (p.partition, p.leader, p.replicas.clone(), p.isr.clone()))
        .collect();
    assert_eq!(partitions, expected);
    assert_eq!(found.name, topic);
    assert!(!found.internal);
    assert_eq!(found.topic_id.len(), 22, "{}", found.topic_id);
    assert_ne!(found.topic_id, "AAAAAAAAAAAAAAAAAAAAAA", "a real topic id");
    assert!(
        found
            .partitions
            .iter()
            .all(|p| p.offline_replicas.is_empty())
    );
}

#[tokio::test]
async fn metadata_leaves_out_a_topic_that_does_not_exist_and_does_not_create_it() {
    let (env, ns) = setup("wire-metadata-missing").await;
    let missing = ns.unique("missing");
    let metadata = wire(env)
        .metadata(Some(std::slice::from_ref(&missing)))
        .await
        .unwrap_or_else(|e| panic!("metadata of {missing}: {e}"));
    assert_eq!(metadata.topics, []);
    assert_eq!(metadata.brokers.len(), 1);
    assert_eq!(broker_partitions(env, &missing), None);
}

#[tokio::test]
async fn metadata_of_every_topic_includes_the_offsets_topic_marked_internal() {
    let (env, ns) = setup("wire-metadata-all").await;
    let topic = ns.unique("orders");
    create_kafka_topic(env, &topic, 1, &[]).await;
    // A commit makes sure __consumer_offsets exists, whichever test runs first.
    rdkafka_commit(env, &ns.unique("group"), &topic, &[(0, 0)]);

    let metadata = wire(env)
        .metadata(None)
        .await
        .unwrap_or_else(|e| panic!("metadata of every topic: {e}"));
    let ours = metadata
        .topic(&topic)
        .unwrap_or_else(|| panic!("{topic} not in {:?}", metadata.topics));
    assert!(!ours.internal);
    let offsets = metadata
        .topic("__consumer_offsets")
        .unwrap_or_else(|| panic!("no __consumer_offsets"));
    assert!(offsets.internal);
    assert_eq!(
        offsets.partitions.len(),
        3,
        "offsets.topic.num.partitions=3"
    );
    let names: Vec<&str> = metadata.topics.iter().map(|t| t.name.as_str()).collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted, "topics come sorted by name");
}

#[tokio::test]
async fn describe_cluster_reports_the_id_the_broker_count_its_configuration_and_features() {
    let (env, _ns) = setup("wire-describe-cluster").await;
    let cluster = admin(env)
        .describe_cluster()
        .await
        .unwrap_or_else(|e| panic!("describe cluster: {e}"));
    assert_eq!(
        cluster.cluster_id,
        kafka_admin(env).inner().fetch_cluster_id(KAFKA_TIMEOUT)
    );
    assert_eq!(cluster.brokers, 1);
    let config = |key: &str| cluster.broker_config.get(key).map(String::as_str);
    assert_eq!(config("offsets.topic.num.partitions"), Some("3"));
    assert_eq!(
        config("transaction.state.log.replication.factor"),
        Some("1")
    );
    assert_eq!(config("auto.create.topics.enable"), Some("false"));
    assert_eq!(cluster.features.get("transaction.version"), Some(&2));
    assert!(
        cluster.features.contains_key("metadata.version"),
        "{:?}",
        cluster.features
    );
}

/// Runs one of Kafka's own command-line tools (`class`, as `kafka-*.sh` would) against the
/// plaintext listener and returns what it printed.
async fn kafka_tool(env: &Environment, class: &str, args: &[&str]) -> String {
    let output = tokio::process::Command::new("java")
        .args([
            "-XX:TieredStopAtLevel=1",
            "-XX:+UseSerialGC",
            "-Xmx256m",
            "-cp",
        ])
        .arg(env.tools.kafka_classpath())
        .arg(class)
        .arg("--bootstrap-server")
        .arg(&env.bootstrap_servers)
        .args(args)
        .output()
        .await
        .unwrap_or_else(|e| panic!("running {class}: {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{class} {args:?}: {}\n{stdout}{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// The finalized feature levels as `kafka-features.sh describe` prints them: numbers, but
/// `metadata.version` by its release name (e.g. `4.3-IV0`).
async fn kafka_features(env: &Environment) -> BTreeMap<String, String> {
    kafka_tool(env, "org.apache.kafka.tools.FeatureCommand", &["describe"])
        .await
        .lines()
        .filter_map(|line| {
            let words: Vec<&str> = line.split_whitespace().collect();
            let after = |label: &str| {
                let at = words.iter().position(|w| *w == label)?;
                words.get(at + 1).map(|w| w.to_string())
            };
            Some((after("Feature:")?, after("FinalizedVersionLevel:")?))
        })
        .collect()
}

/// The rows of the table `kafka-transactions.sh <args>` prints, by column name.
async fn kafka_transactions(env: &Environment, args: &[&str]) -> Vec<BTreeMap<String, String>> {
    let printed = kafka_tool(env, "org.apache.kafka.tools.TransactionsCommand", args).await;
    let mut lines = printed.lines();
    let columns: Vec<String> = lines
        .next()
        .unwrap_or_default()
        .split('\t')
        .map(|c| c.trim().to_string())
        .collect();
    lines
        .map(|line| {
            columns
                .iter()
                .cloned()
                .zip(line.split('\t').map(|v| v.trim().to_string()))
                .filter(|(column, _)| !column.is_empty())
                .collect()
        })
        .collect()
}

#[tokio::test]
async fn finalized_features_are_the_levels_kafkas_own_feature_tool_reports() {
    let (env, _ns) = setup("wire-features").await;
    let mut features = wire(env)
        .finalized_features()
        .await
        .unwrap_or_else(|e| panic!("finalized features: {e}"));
    let mut kafka = kafka_features(env).await;

    // metadata.version: a number on the wire, a release name in the tool. 22 is 4.0-IV0, the
    // first level of Kafka 4 (3.9-IV0 is 21).
    let metadata_version = features.remove("metadata.version");
    assert!(
        metadata_version.is_some_and(|v| v >= 22),
        "{metadata_version:?}"
    );
    let named = kafka.remove("metadata.version").unwrap_or_default();
    assert!(named.starts_with("4."), "Kafka 4: {named}");
    let finalized: BTreeMap<String, String> = kafka.into_iter().filter(|(_, l)| l != "0").collect();
    let ours: BTreeMap<String, String> = features
        .iter()
        .map(|(name, level)| (name.clone(), level.to_string()))
        .collect();
    assert_eq!(ours, finalized);
    assert_eq!(
        features.get("transaction.version"),
        Some(&2),
        "{features:?}"
    );
}

// ----- configs ---------------------------------------------------------------------------------

#[tokio::test]
async fn describe_broker_configs_match_what_rdkafka_reads_value_source_and_flags() {
    let (env, _ns) = setup("wire-broker-configs").await;
    let broker = broker_id(env);
    let mut ours = described(
        wire(env)
            .describe_broker_configs(broker)
            .await
            .unwrap_or_else(|e| panic!("broker {broker} configs: {e}")),
    );
    let mut theirs = rdkafka_configs(env, ResourceSpecifier::Broker(broker)).await;
    // Switched off and on by hang_a_transaction while other tests run.
    ours.remove(PARTITION_VERIFICATION);
    theirs.remove(PARTITION_VERIFICATION);

    assert_eq!(ours, theirs);
    let entry = |key: &str| {
        ours.get(key)
            .map(|(value, source, _, _)| (value.as_deref(), *source))
    };
    assert_eq!(
        entry("offsets.topic.num.partitions"),
        Some((Some("3"), "StaticBroker"))
    );
    assert_eq!(entry("log.retention.hours"), Some((Some("168"), "Default")));
    assert!(
        ours.get("node.id")
            .is_some_and(|(_, _, read_only, _)| *read_only),
        "node.id cannot change at runtime"
    );
}

#[tokio::test]
async fn describe_topic_configs_match_what_rdkafka_reads_and_name_the_topics_own_settings() {
    let (env, ns) = setup("wire-topic-configs").await;
    let topic = ns.unique("orders");
    create_kafka_topic(env, &topic, 1, &[("retention.ms", "3600000")]).await;
    let mut configs = wire(env)
        .describe_topic_configs(std::slice::from_ref(&topic))
        .await
        .unwrap_or_else(|e| panic!("configs of {topic}: {e}"));
    assert_eq!(configs.keys().collect::<Vec<_>>(), [&topic]);
    let ours = described(configs.remove(&topic).unwrap_or_default());

    assert_eq!(
        ours,
        rdkafka_configs(env, ResourceSpecifier::Topic(&topic)).await
    );
    let entry = |key: &str| {
        ours.get(key)
            .map(|(value, source, _, _)| (value.as_deref(), *source))
    };
    assert_eq!(
        entry("retention.ms"),
        Some((Some("3600000"), "DynamicTopic"))
    );
    assert_eq!(
        entry("unclean.leader.election.enable"),
        Some((Some("false"), "StaticBroker"))
    );
    assert_eq!(entry("cleanup.policy"), Some((Some("delete"), "Default")));
}

#[tokio::test]
async fn describe_topic_configs_leave_out_a_topic_that_does_not_exist() {
    let (env, ns) = setup("wire-topic-configs-missing").await;
    let topic = ns.unique("orders");
    let missing = ns.unique("missing");
    create_kafka_topic(env, &topic, 1, &[]).await;
    let configs = wire(env)
        .describe_topic_configs(&[topic.clone(), missing.clone()])
        .await
        .unwrap_or_else(|e| panic!("configs of {topic} and {missing}: {e}"));
    assert_eq!(configs.keys().collect::<Vec<_>>(), [&topic]);
    assert!(configs[&topic].contains_key("retention.ms"));
}

#[tokio::test]
async fn describe_broker_configs_of_a_broker_not_in_the_cluster_is_an_error_naming_it() {
    let (env, _ns) = setup("wire-broker-configs-missing").await;
    let missing = broker_id(env) + 4242;
    match wire(env).describe_broker_configs(missing).await {
        Err(WireError::Protocol(message)) => assert!(
            message.contains(&format!("broker {missing} is not in the cluster")),
            "{message}"
        ),
        other => panic!("expected an error naming broker {missing}, got {other:?}"),
    }
}

#[tokio::test]
async fn dynamic_topic_configs_are_exactly_what_is_set_on_the_topic_itself() {
    let (env, ns) = setup("wire-dynamic-configs").await;
    let topic = ns.unique("orders");
    let missing = ns.unique("missing");
    create_kafka_topic(
        env,
        &topic,
        1,
        &[("retention.ms", "3600000"), ("cleanup.policy", "compact")],
    )
    .await;
    let configs = admin(env)
        .dynamic_topic_configs(&[topic.clone(), missing])
        .await
        .unwrap_or_else(|e| panic!("dynamic configs of {topic}: {e}"));
    let expected = BTreeMap::from([
        ("cleanup.policy".to_string(), "compact".to_string()),
        ("retention.ms".to_string(), "3600000".to_string()),
    ]);
    assert_eq!(configs, BTreeMap::from([(topic.clone(), expected.clone())]));
    assert_eq!(broker_topic_config(env, &topic).await, expected);
}

#[tokio::test]
async fn alter_topic_config_sets_a_key_and_leaves_the_others_untouched() {
    let (env, ns) = setup("wire-alter-set").await;
    let topic = ns.unique("orders");
    create_kafka_topic(
        env,
        &topic,
        1,
        &[("retention.ms", "3600000"), ("max.message.bytes", "200000")],
    )
    .await;
    admin(env)
        .alter_topic_config(
            &topic,
            &BTreeMap::from([("segment.ms".to_string(), "7200000".to_string())]),
            &[],
        )
        .await
        .unwrap_or_else(|e| panic!("alter {topic}: {e}"));
    let expected = BTreeMap::from([
        ("max.message.bytes".to_string(), "200000".to_string()),
        ("retention.ms".to_string(), "3600000".to_string()),
        ("segment.ms".to_string(), "7200000".to_string()),
    ]);
    eventually("the new key beside the old ones", TIMEOUT, || async {
        let config = broker_topic_config(env, &topic).await;
        if config == expected {
            Ok(())
        } else {
            Err(format!("{config:?}"))
        }
    })
    .await;
}

#[tokio::test]
async fn alter_topic_config_deletes_a_key_so_the_topic_falls_back_to_the_default() {
    let (env, ns) = setup("wire-alter-delete").await;
    let topic = ns.unique("orders");
    create_kafka_topic(
        env,
        &topic,
        1,
        &[("retention.ms", "3600000"), ("max.message.bytes", "200000")],
    )
    .await;
    admin(env)
        .alter_topic_config(&topic, &BTreeMap::new(), &["retention.ms".to_string()])
        .await
        .unwrap_or_else(|e| panic!("alter {topic}: {e}"));
    let expected = BTreeMap::from([("max.message.bytes".to_string(), "200000".to_string())]);
    eventually("the key to be gone from the topic", TIMEOUT, || async {
        let config = broker_topic_config(env, &topic).await;
        if config == expected {
            Ok(())
        } else {
            Err(format!("{config:?}"))
        }
    })
    .await;
    let theirs = rdkafka_configs(env, ResourceSpecifier::Topic(&topic)).await;
    assert_eq!(
        theirs.get("retention.ms").map(|e| (e.0.as_deref(), e.1)),
        Some((Some("604800000"), "Default"))
    );
}

#[tokio::test]
async fn alter_topic_config_of_a_topic_that_does_not_exist_is_refused_as_unknown_topic() {
    let (env, ns) = setup("wire-alter-missing").await;
    let missing = ns.unique("missing");
    let code = refused_code(
        admin(env)
            .alter_topic_config(
                &missing,
                &BTreeMap::from([("retention.ms".to_string(), "1000".to_string())]),
                &[],
            )
            .await,
    );
    assert!(code.starts_with("UNKNOWN_TOPIC_OR_PARTITION"), "{code}");
    assert_eq!(broker_partitions(env, &missing), None);
}

#[tokio::test]
async fn alter_topic_config_with_an_invalid_value_is_refused_as_invalid_config_and_changes_nothing()
{
    let (env, ns) = setup("wire-alter-invalid").await;
    let topic = ns.unique("orders");
    create_kafka_topic(env, &topic, 1, &[("retention.ms", "3600000")]).await;
    let code = refused_code(
        admin(env)
            .alter_topic_config(
                &topic,
                &BTreeMap::from([
                    ("cleanup.policy".to_string(), "sideways".to_string()),
                    ("segment.ms".to_string(), "7200000".to_string()),
                ]),
                &[],
            )
            .await,
    );
    assert!(code.starts_with("INVALID_CONFIG"), "{code}");
    assert_eq!(
        broker_topic_config(env, &topic).await,
        BTreeMap::from([("retention.ms".to_string(), "3600000".to_string())]),
        "no key of a refused request is applied"
    );
}

// ----- topics ----------------------------------------------------------------------------------

#[tokio::test]
async fn create_topic_creates_it_with_its_partitions_default_replication_and_config_and_answers_the_config()
 {
    let (env, ns) = setup("wire-create").await;
    let topic = ns.unique("orders");
    let outcome = admin(env)
        .create_topic(&NewTopicRequest {
            name: topic.clone(),
            partitions: 3,
            replication_factor: None,
            config: BTreeMap::from([("retention.ms".to_string(), "3600000".to_string())]),
        })
        .await
        .unwrap_or_else(|e| panic!("create {topic}: {e}"));
    assert_eq!(
        outcome,
        CreateOutcome::Created(Some(BTreeMap::from([(
            "retention.ms".to_string(),
            "3600000".to_string()
        )]))),
        "the answer lists the configuration set on the topic itself, broker defaults left out"
    );
    eventually("rdkafka to see 3 partitions", TIMEOUT, || async {
        match broker_partitions(env, &topic) {
            Some(3) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    assert_eq!(
        broker_topic_config(env, &topic).await,
        BTreeMap::from([("retention.ms".to_string(), "3600000".to_string())])
    );
    let described = admin(env)
        .describe_topic(&topic)
        .await
        .unwrap_or_else(|e| panic!("describe {topic}: {e}"))
        .unwrap_or_else(|| panic!("{topic} not described"));
    assert_eq!(
        (described.partitions, described.replication_factor),
        (3, 1),
        "default.replication.factor=1"
    );
}

#[tokio::test]
async fn create_topic_that_already_exists_reports_already_exists_and_leaves_it_as_it_was() {
    let (env, ns) = setup("wire-create-exists").await;
    let topic = ns.unique("orders");
    create_kafka_topic(env, &topic, 2, &[]).await;
    let outcome = admin(env)
        .create_topic(&NewTopicRequest {
            name: topic.clone(),
            partitions: 5,
            replication_factor: Some(1),
            config: BTreeMap::from([("retention.ms".to_string(), "1000".to_string())]),
        })
        .await
        .unwrap_or_else(|e| panic!("create {topic} again: {e}"));
    assert_eq!(outcome, CreateOutcome::AlreadyExists);
    assert_eq!(broker_partitions(env, &topic), Some(2));
    assert_eq!(broker_topic_config(env, &topic).await, BTreeMap::new());
}

#[tokio::test]
async fn create_topic_with_more_replicas_than_brokers_is_refused_and_creates_nothing() {
    let (env, ns) = setup("wire-create-replicas").await;
    let topic = ns.unique("orders");
    let code = refused_code(
        admin(env)
            .create_topic(&NewTopicRequest {
                name: topic.clone(),
                partitions: 1,
                replication_factor: Some(3),
                config: BTreeMap::new(),
            })
            .await,
    );
    assert!(code.starts_with("INVALID_REPLICATION_FACTOR"), "{code}");
    assert_eq!(broker_partitions(env, &topic), None);
}

#[tokio::test]
async fn grow_partitions_raises_the_partition_count_that_rdkafka_sees() {
    let (env, ns) = setup("wire-grow").await;
    let topic = ns.unique("orders");
    create_kafka_topic(env, &topic, 1, &[]).await;
    admin(env)
        .grow_partitions(&topic, 4)
        .await
        .unwrap_or_else(|e| panic!("grow {topic}: {e}"));
    eventually("rdkafka to see 4 partitions", TIMEOUT, || async {
        match broker_partitions(env, &topic) {
            Some(4) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
}

#[tokio::test]
async fn grow_partitions_to_fewer_partitions_is_refused_as_invalid_partitions() {
    let (env, ns) = setup("wire-grow-fewer").await;
    let topic = ns.unique("orders");
    create_kafka_topic(env, &topic, 3, &[]).await;
    let code = refused_code(admin(env).grow_partitions(&topic, 2).await);
    assert!(code.starts_with("INVALID_PARTITIONS"), "{code}");
    assert_eq!(broker_partitions(env, &topic), Some(3));
}

#[tokio::test]
async fn grow_partitions_of_a_topic_that_does_not_exist_is_refused_as_unknown_topic() {
    let (env, ns) = setup("wire-grow-missing").await;
    let missing = ns.unique("missing");
    let code = refused_code(admin(env).grow_partitions(&missing, 2).await);
    assert!(code.starts_with("UNKNOWN_TOPIC_OR_PARTITION"), "{code}");
    assert_eq!(broker_partitions(env, &missing), None);
}

#[tokio::test]
async fn delete_topic_removes_it_from_the_broker() {
    let (env, ns) = setup("wire-delete").await;
    let topic = ns.unique("orders");
    create_kafka_topic(env, &topic, 2, &[]).await;
    admin(env)
        .delete_topic(&topic)
        .await
        .unwrap_or_else(|e| panic!("delete {topic}: {e}"));
    eventually("rdkafka to no longer see the topic", TIMEOUT, || async {
        match broker_partitions(env, &topic) {
            None => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
}

#[tokio::test]
async fn delete_topic_of_a_topic_that_does_not_exist_is_not_an_error() {
    let (env, ns) = setup("wire-delete-missing").await;
    let missing = ns.unique("missing");
    admin(env)
        .delete_topic(&missing)
        .await
        .unwrap_or_else(|e| panic!("delete {missing}, which never existed: {e}"));
    assert_eq!(broker_partitions(env, &missing), None);
}

#[tokio::test]
async fn describe_topics_describes_those_that_exist_with_partitions_replication_and_id() {
    let (env, ns) = setup("wire-describe-topics").await;
    let first = ns.unique("first");
    let second = ns.unique("second");
    let missing = ns.unique("missing");
    create_kafka_topic(env, &first, 2, &[]).await;
    create_kafka_topic(env, &second, 1, &[]).await;
    let client = admin(env);
    let names = [first.clone(), second.clone(), missing.clone()];
    let described = eventually("both topics described", TIMEOUT, || async {
        let described = client
            .describe_topics(&names)
            .await
            .map_err(|e| e.to_string())?;
        if described.len() == 2 {
            Ok(described)
        } else {
            Err(format!("{described:?}"))
        }
    })
    .await;
    let shape: Vec<(&str, i32, i32)> = described
        .values()
        .map(|d| (d.name.as_str(), d.partitions, d.replication_factor))
        .collect();
    assert_eq!(shape, [(first.as_str(), 2, 1), (second.as_str(), 1, 1)]);
    let metadata = wire(env)
        .metadata(Some(&names[..2]))
        .await
        .unwrap_or_else(|e| panic!("metadata: {e}"));
    for d in described.values() {
        let id = metadata.topic(&d.name).map(|t| t.topic_id.clone());
        assert_eq!(d.topic_id, id, "{}", d.name);
    }
    assert_ne!(described[&first].topic_id, described[&second].topic_id);
    assert_eq!(
        client
            .partitions(&names)
            .await
            .unwrap_or_else(|e| panic!("partitions: {e}")),
        BTreeMap::from([(first.clone(), vec![0, 1]), (second.clone(), vec![0])])
    );
    assert_eq!(
        client
            .describe_topic(&missing)
            .await
            .unwrap_or_else(|e| panic!("describe {missing}: {e}")),
        None
    );
}

// ----- offsets ---------------------------------------------------------------------------------

#[tokio::test]
async fn list_offsets_earliest_and_latest_are_the_log_start_and_end_rdkafka_sees() {
    let (env, ns) = setup("wire-offsets").await;
    let topic = ns.unique("orders");
    create_kafka_topic(env, &topic, 1, &[]).await;
    produce_committed(env, &topic, 5);
    // Records below offset 2 deleted: the log start moves past 0.
    let mut below = TopicPartitionList::new();
    below
        .add_partition_offset(&topic, 0, Offset::Offset(2))
        .unwrap_or_else(|e| panic!("offset list: {e}"));
    kafka_admin(env)
        .delete_records(&below, &AdminOptions::new())
        .await
        .unwrap_or_else(|e| panic!("rdkafka delete records of {topic}: {e}"));
    let client = wire(env);
    let p = tp(&topic, 0);
    let offset = |spec| {
        let client = &client;
        let p = p.clone();
        async move {
            client
                .list_offsets(&[(p.clone(), spec)], Isolation::ReadUncommitted)
                .await
                .unwrap_or_else(|e| panic!("list offsets {spec:?} of {p}: {e}"))
                .get(&p)
                .copied()
        }
    };
    let (earliest, latest) = (
        offset(OffsetSpec::Earliest).await,
        offset(OffsetSpec::Latest).await,
    );
    let (low, high) = watermarks(env, &topic, 0, "read_uncommitted");
    assert_eq!((earliest, latest), (Some(low), Some(high)));
    // Five records and the commit marker.
    assert_eq!((earliest, latest), (Some(2), Some(6)));
}

#[tokio::test]
async fn list_offsets_read_committed_latest_is_the_last_stable_offset_held_at_an_open_transaction()
{
    let (env, ns) = setup("wire-offsets-lso").await;
    let topic = ns.unique("orders");
    create_kafka_topic(env, &topic, 1, &[]).await;
    produce_committed(env, &topic, 3);
    let producer = leave_transaction_open(env, &topic, 2);
    let client = wire(env);
    let p = tp(&topic, 0);
    let latest = |isolation| {
        let client = &client;
        let p = p.clone();
        async move {
            client
                .list_offsets(&[(p.clone(), OffsetSpec::Latest)], isolation)
                .await
                .unwrap_or_else(|e| panic!("list offsets of {p}: {e}"))
                .get(&p)
                .copied()
        }
    };

    // Three committed records and their marker (0..4), then two open ones (4, 5).
    assert_eq!(latest(Isolation::ReadUncommitted).await, Some(6));
    assert_eq!(latest(Isolation::ReadCommitted).await, Some(4));
    assert_eq!(watermarks(env, &topic, 0, "read_uncommitted").1, 6);
    assert_eq!(watermarks(env, &topic, 0, "read_committed").1, 4);

    producer
        .commit_transaction(KAFKA_TIMEOUT)
        .unwrap_or_else(|e| panic!("commit: {e}"));
    eventually(
        "the last stable offset past the commit marker",
        TIMEOUT,
        || async {
            match latest(Isolation::ReadCommitted).await {
                Some(7) => Ok(()),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await;
}

#[tokio::test]
async fn list_offsets_by_timestamp_is_the_first_offset_at_or_after_it_as_rdkafka_finds_it() {
    let (env, ns) = setup("wire-offsets-time").await;
    let topic = ns.unique("orders");
    create_kafka_topic(env, &topic, 1, &[]).await;
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &env.bootstrap_servers)
        .create()
        .unwrap_or_else(|e| panic!("rdkafka producer: {e}"));
    let base = now_ms() - 600_000;
    for (i, at) in [base, base + 1_000, base + 2_000].into_iter().enumerate() {
        let key = i.to_string();
        producer
            .send(
                FutureRecord::to(&topic)
                    .partition(0)
                    .key(&key)
                    .payload(&key)
                    .timestamp(at),
                KAFKA_TIMEOUT,
            )
            .await
            .unwrap_or_else(|(e, _)| panic!("send record {i}: {e}"));
    }
    let client = wire(env);
    let p = tp(&topic, 0);
    let rd = observer(env, "wire-offsets-time", "read_uncommitted");
    for (at, expected) in [
        (base - 1, 0),
        (base + 500, 1),
        (base + 2_000, 2),
        (now_ms() + 60_000, -1),
    ] {
        let ours = client
            .list_offsets(
                &[(p.clone(), OffsetSpec::Timestamp(at))],
                Isolation::ReadUncommitted,
            )
            .await
            .unwrap_or_else(|e| panic!("offset of {p} at {at}: {e}"));
        let mut list = TopicPartitionList::new();
        list.add_partition_offset(&topic, 0, Offset::Offset(at))
            .unwrap_or_else(|e| panic!("offset list: {e}"));
        let theirs = rd
            .offsets_for_times(list, KAFKA_TIMEOUT)
            .unwrap_or_else(|e| panic!("rdkafka offsets for {at}: {e}"));
        let theirs = match theirs.elements()[0].offset() {
            Offset::Offset(o) => o,
            Offset::End => -1,
            other => panic!("rdkafka offset for {at}: {other:?}"),
        };
        assert_eq!(ours.get(&p), Some(&theirs), "at {at}");
        assert_eq!(theirs, expected, "at {at}");
        let key = (topic.clone(), 0);
        let high_level = admin(env)
            .offsets_for_time(std::slice::from_ref(&key), at)
            .await
            .unwrap_or_else(|e| panic!("offsets for time {at}: {e}"));
        assert_eq!(high_level, BTreeMap::from([(key, expected)]));
    }
}

#[tokio::test]
async fn list_offsets_of_a_topic_that_does_not_exist_is_an_unknown_topic_error() {
    let (env, ns) = setup("wire-offsets-missing").await;
    let p = tp(&ns.unique("missing"), 0);
    let error = wire(env)
        .list_offsets(&[(p.clone(), OffsetSpec::Latest)], Isolation::ReadCommitted)
        .await
        .err()
        .unwrap_or_else(|| panic!("offsets of {p}, which does not exist"));
    assert_eq!(
        error.code(),
        Some(code::UNKNOWN_TOPIC_OR_PARTITION),
        "{error}"
    );
    assert!(error.to_string().contains(&p.to_string()), "{error}");
}

#[tokio::test]
async fn list_offsets_of_a_partition_beyond_the_topics_last_is_an_unknown_partition_error() {
    let (env, ns) = setup("wire-offsets-partition").await;
    let topic = ns.unique("orders");
    create_kafka_topic(env, &topic, 1, &[]).await;
    let error = wire(env)
        .list_offsets(
            &[
                (tp(&topic, 0), OffsetSpec::Latest),
                (tp(&topic, 7), OffsetSpec::Latest),
            ],
            Isolation::ReadUncommitted,
        )
        .await
        .err()
        .unwrap_or_else(|| panic!("offsets of {topic}-7, which does not exist"));
    assert_eq!(
        error.code(),
        Some(code::UNKNOWN_TOPIC_OR_PARTITION),
        "{error}"
    );
    assert!(error.to_string().contains(&format!("{topic}-7")), "{error}");
}

#[tokio::test]
async fn partition_offsets_report_log_start_log_end_and_last_stable_of_each_partition() {
    let (env, ns) = setup("wire-partition-offsets").await;
    let topic = ns.unique("orders");
    create_kafka_topic(env, &topic, 2, &[]).await;
    let producer = leave_transaction_open(env, &topic, 2);
    let keys = [(topic.clone(), 0), (topic.clone(), 1)];
    let offsets = admin(env)
        .partition_offsets(&keys)
        .await
        .unwrap_or_else(|e| panic!("partition offsets of {topic}: {e}"));
    let found: Vec<(i32, i64, i64, i64)> = offsets
        .iter()
        .map(|((_, p), o)| (*p, o.log_start, o.log_end, o.last_stable))
        .collect();
    let mut seen = Vec::new();
    for p in 0..2 {
        let (start, end) = watermarks(env, &topic, p, "read_uncommitted");
        let (_, stable) = watermarks(env, &topic, p, "read_committed");
        seen.push((p, start, end, stable));
    }
    assert_eq!(found, seen);
    assert_eq!(found, [(0, 0, 2, 0), (1, 0, 0, 0)]);
    producer
        .abort_transaction(KAFKA_TIMEOUT)
        .unwrap_or_else(|e| panic!("abort: {e}"));
}

// ----- groups ----------------------------------------------------------------------------------

#[tokio::test]
async fn list_groups_shows_a_group_with_an_rdkafka_member_as_a_stable_classic_consumer_group() {
    let (env, ns) = setup("wire-list-groups").await;
    let topic = ns.unique("orders");
    let group = ns.unique("billing");
    create_kafka_topic(env, &topic, 1, &[]).await;
    let _member = Member::join(env, &group, &topic).await;
    let groups = wire(env)
        .list_groups()
        .await
        .unwrap_or_else(|e| panic!("list groups: {e}"));
    let listed = groups
        .iter()
        .find(|g| g.group_id == group)
        .unwrap_or_else(|| panic!("{group} not in {groups:?}"));
    assert_eq!(listed.protocol_type, "consumer");
    assert_eq!(listed.state.as_deref(), Some("Stable"));
    assert_eq!(listed.group_type.as_deref(), Some("classic"));
}

#[tokio::test]
async fn describe_groups_reports_the_member_rdkafka_sees_with_its_client_id_and_assigned_topic() {
    let (env, ns) = setup("wire-describe-groups").await;
    let topic = ns.unique("orders");
    let group = ns.unique("billing");
    create_kafka_topic(env, &topic, 1, &[]).await;
    let _member = Member::join(env, &group, &topic).await;
    let described = wire(env)
        .describe_groups(std::slice::from_ref(&group))
        .await
        .unwrap_or_else(|e| panic!("describe {group}: {e}"));
    let theirs = kafka_admin(env)
        .inner()
        .fetch_group_list(Some(&group), KAFKA_TIMEOUT)
        .unwrap_or_else(|e| panic!("rdkafka group list of {group}: {e}"));
    let theirs = &theirs.groups()[0];

    let [ours] = &described[..] else {
        panic!("expected one group, got {described:?}")
    };
    assert_eq!(ours.group_id, group);
    assert_eq!(
        (
            ours.state.as_str(),
            ours.protocol_type.as_str(),
            ours.protocol.as_str()
        ),
        (theirs.state(), theirs.protocol_type(), theirs.protocol())
    );
    assert_eq!(
        (ours.state.as_str(), ours.protocol_type.as_str()),
        ("Stable", "consumer")
    );
    let members: Vec<(&str, &str, &str)> = ours
        .members
        .iter()
        .map(|m| {
            (
                m.member_id.as_str(),
                m.client_id.as_str(),
                m.client_host.as_str(),
            )
        })
        .collect();
    let seen: Vec<(&str, &str, &str)> = theirs
        .members()
        .iter()
        .map(|m| (m.id(), m.client_id(), m.client_host()))
        .collect();
    assert_eq!(members, seen);
    let expected_client_id = format!("{group}-consumer");
    assert_eq!(ours.members[0].client_id, expected_client_id);
    assert_eq!(
        ours.members[0].assigned_topics,
        std::slice::from_ref(&topic)
    );
    assert_eq!(ours.members[0].group_instance_id, None);
}

#[tokio::test]
async fn describe_groups_of_a_group_that_does_not_exist_is_group_id_not_found() {
    let (env, ns) = setup("wire-describe-groups-missing").await;
    let missing = ns.unique("missing");
    let error = wire(env)
        .describe_groups(std::slice::from_ref(&missing))
        .await
        .err()
        .unwrap_or_else(|| panic!("describing {missing}, which does not exist"));
    assert_eq!(error.code(), Some(code::GROUP_ID_NOT_FOUND), "{error}");
    assert!(error.to_string().contains(&missing), "{error}");
}

#[tokio::test]
async fn describe_groups_of_the_operator_leaves_out_a_group_that_does_not_exist() {
    let (env, ns) = setup("wire-describe-groups-some").await;
    let topic = ns.unique("orders");
    let group = ns.unique("billing");
    let missing = ns.unique("missing");
    create_kafka_topic(env, &topic, 1, &[]).await;
    rdkafka_commit(env, &group, &topic, &[(0, 0)]);
    let described = admin(env)
        .describe_groups(&[group.clone(), missing])
        .await
        .unwrap_or_else(|e| panic!("describe {group}: {e}"));
    let states: Vec<(&str, &str, usize)> = described
        .values()
        .map(|g| (g.group_id.as_str(), g.state.as_str(), g.members.len()))
        .collect();
    assert_eq!(states, [(group.as_str(), "Empty", 0)]);
}

#[tokio::test]
async fn committed_offsets_of_one_group_are_what_rdkafka_committed() {
    let (env, ns) = setup("wire-offset-fetch").await;
    let topic = ns.unique("orders");
    let group = ns.unique("billing");
    create_kafka_topic(env, &topic, 2, &[]).await;
    rdkafka_commit(env, &group, &topic, &[(0, 3), (1, 5)]);
    let committed = wire(env)
        .committed_offsets(&group)
        .await
        .unwrap_or_else(|e| panic!("committed offsets of {group}: {e}"));
    assert_eq!(committed, rdkafka_committed(env, &group, &topic, 2));
    assert_eq!(
        committed,
        BTreeMap::from([(tp(&topic, 0), 3), (tp(&topic, 1), 5)])
    );
}

/// A worker killed between sending its offsets to the transaction and committing it leaves them
/// pending. The observation's fetch of many groups still answers at once, with the offsets
/// committed before (a fetch that requires stable offsets is refused meanwhile: the control),
/// and with the new ones once the transaction commits.
#[tokio::test]
async fn committed_offsets_of_groups_answer_while_a_transaction_holds_offsets_pending() {
    let (env, ns) = setup("wire-offset-fetch-pending").await;
    let topic = ns.unique("orders");
    let group = ns.unique("billing");
    create_kafka_topic(env, &topic, 1, &[]).await;
    rdkafka_commit(env, &group, &topic, &[(0, 3)]);
    let producer = transactional_producer(env, &ns.unique("pending"), 300_000);
    producer
        .begin_transaction()
        .unwrap_or_else(|e| panic!("begin: {e}"));
    let mut offsets = TopicPartitionList::new();
    offsets
        .add_partition_offset(&topic, 0, Offset::Offset(9))
        .unwrap_or_else(|e| panic!("offset list: {e}"));
    let metadata = observer(env, &group, "read_committed")
        .group_metadata()
        .unwrap_or_else(|| panic!("no group metadata for {group}"));
    producer
        .send_offsets_to_transaction(&offsets, &metadata, KAFKA_TIMEOUT)
        .unwrap_or_else(|e| panic!("send offsets: {e}"));
    let client = WireClient::new(
        &env.bootstrap_servers,
        "exactly-test",
        Duration::from_secs(3),
    );

    let stable = client.committed_offsets(&group).await;
    let committed = client
        .committed_offsets_of_groups(std::slice::from_ref(&group))
        .await
        .unwrap_or_else(|e| panic!("committed offsets of {group} with offsets pending: {e}"));

    assert_eq!(
        stable.map_err(|e| e.code()),
        Err(Some(code::UNSTABLE_OFFSET_COMMIT)),
        "the control: a stable fetch waits for the transaction"
    );
    assert_eq!(
        committed,
        BTreeMap::from([(group.clone(), BTreeMap::from([(tp(&topic, 0), 3)]))])
    );
    producer
        .commit_transaction(KAFKA_TIMEOUT)
        .unwrap_or_else(|e| panic!("commit: {e}"));
    // The coordinator applies the commit once its marker is written, a moment after EndTxn.
    eventually(
        "the transaction's offsets to be committed",
        TIMEOUT,
        || async {
            let committed = client
                .committed_offsets_of_groups(std::slice::from_ref(&group))
                .await
                .map_err(|e| e.to_string())?;
            match committed.get(&group).and_then(|o| o.get(&tp(&topic, 0))) {
                Some(9) => Ok(()),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await;
}

#[tokio::test]
async fn committed_offsets_of_groups_answers_several_groups_with_one_offset_fetch() {
    let (env, ns) = setup("wire-offset-fetch-many").await;
    let topic = ns.unique("orders");
    create_kafka_topic(env, &topic, 2, &[]).await;
    let groups = [ns.unique("first"), ns.unique("second"), ns.unique("never")];
    rdkafka_commit(env, &groups[0], &topic, &[(0, 3), (1, 5)]);
    rdkafka_commit(env, &groups[1], &topic, &[(0, 7)]);
    let client = wire(env);
    client
        .metadata(Some(&[]))
        .await
        .unwrap_or_else(|e| panic!("metadata: {e}"));
    let before = client.requests_sent();
    let committed = client
        .committed_offsets_of_groups(&groups)
        .await
        .unwrap_or_else(|e| panic!("committed offsets of {groups:?}: {e}"));
    assert_eq!(
        client.requests_sent() - before,
        2,
        "one FindCoordinator for the three groups, one OffsetFetch to their coordinator"
    );
    let seen: BTreeMap<String, BTreeMap<TopicPartition, i64>> = groups
        .iter()
        .map(|g| (g.clone(), rdkafka_committed(env, g, &topic, 2)))
        .collect();
    assert_eq!(committed, seen);
    assert_eq!(
        committed,
        BTreeMap::from([
            (
                groups[0].clone(),
                BTreeMap::from([(tp(&topic, 0), 3), (tp(&topic, 1), 5)])
            ),
            (groups[1].clone(), BTreeMap::from([(tp(&topic, 0), 7)])),
            (groups[2].clone(), BTreeMap::new()),
        ])
    );
}

#[tokio::test]
async fn commit_offsets_of_a_group_without_members_is_what_rdkafka_then_reads() {
    let (env, ns) = setup("wire-offset-commit").await;
    let topic = ns.unique("orders");
    let group = ns.unique("billing");
    create_kafka_topic(env, &topic, 2, &[]).await;
    produce_committed(env, &topic, 10);
    let offsets = BTreeMap::from([(tp(&topic, 0), 4), (tp(&topic, 1), 2)]);
    wire(env)
        .commit_offsets(&group, &offsets)
        .await
        .unwrap_or_else(|e| panic!("commit offsets of {group}: {e}"));
    assert_eq!(rdkafka_committed(env, &group, &topic, 2), offsets);
}

#[tokio::test]
async fn commit_offsets_while_the_group_has_a_member_is_refused_and_moves_nothing() {
    let (env, ns) = setup("wire-offset-commit-member").await;
    let topic = ns.unique("orders");
    let group = ns.unique("billing");
    create_kafka_topic(env, &topic, 1, &[]).await;
    rdkafka_commit(env, &group, &topic, &[(0, 2)]);
    let member = Member::join(env, &group, &topic).await;
    let error = wire(env)
        .commit_offsets(&group, &BTreeMap::from([(tp(&topic, 0), 9)]))
        .await
        .err()
        .unwrap_or_else(|| panic!("an admin commit to {group} while it has a member"));
    assert_eq!(error.code(), Some(code::UNKNOWN_MEMBER_ID), "{error}");
    assert!(error.to_string().contains("OffsetCommit"), "{error}");
    assert_eq!(
        rdkafka_committed(env, &group, &topic, 1),
        BTreeMap::from([(tp(&topic, 0), 2)])
    );
    drop(member);
}

// ----- transactions ----------------------------------------------------------------------------

#[tokio::test]
async fn list_transactions_lists_an_open_rdkafka_transaction_as_ongoing() {
    let (env, ns) = setup("wire-list-txns").await;
    let topic = ns.unique("orders");
    let id = format!("{topic}-open");
    create_kafka_topic(env, &topic, 1, &[]).await;
    let producer = leave_transaction_open(env, &topic, 1);
    let client = wire(env);
    let listed = client
        .list_transactions()
        .await
        .unwrap_or_else(|e| panic!("list transactions: {e}"));
    let ours = listed
        .iter()
        .find(|t| t.transactional_id == id)
        .unwrap_or_else(|| panic!("{id} not in {listed:?}"));
    assert_eq!(ours.state, "Ongoing");
    let listed_by_kafka = kafka_transactions(env, &["list"]).await;
    let theirs = listed_by_kafka
        .iter()
        .find(|row| row.get("TransactionalId") == Some(&id))
        .unwrap_or_else(|| panic!("{id} not in kafka-transactions.sh list: {listed_by_kafka:?}"));
    assert_eq!(
        (
            ours.producer_id.to_string(),
            ours.state.clone(),
            broker_id(env).to_string()
        ),
        (
            theirs["ProducerId"].clone(),
            theirs["TransactionState"].clone(),
            theirs["Coordinator"].clone()
        )
    );
    producer
        .abort_transaction(KAFKA_TIMEOUT)
        .unwrap_or_else(|e| panic!("abort: {e}"));
}

#[tokio::test]
async fn describe_transactions_reports_the_open_transactions_partition_timeout_and_start() {
    let (env, ns) = setup("wire-describe-txns").await;
    let topic = ns.unique("orders");
    let id = format!("{topic}-open");
    create_kafka_topic(env, &topic, 1, &[]).await;
    let before = now_ms();
    let producer = leave_transaction_open(env, &topic, 1);
    let after = now_ms();
    let described = wire(env)
        .describe_transactions(std::slice::from_ref(&id))
        .await
        .unwrap_or_else(|e| panic!("describe {id}: {e}"));
    let [ours] = &described[..] else {
        panic!("expected one transaction, got {described:?}")
    };
    assert_eq!(ours.transactional_id, id);
    assert_eq!(ours.state, "Ongoing");
    assert_eq!(ours.partitions, [tp(&topic, 0)]);
    assert_eq!(
        ours.timeout_ms, 300_000,
        "leave_transaction_open's transaction.timeout.ms"
    );
    assert_eq!(ours.coordinator, broker_id(env));
    assert!(
        (before..=after).contains(&ours.start_time_ms),
        "started at {} between {before} and {after}",
        ours.start_time_ms
    );
    let described_by_kafka =
        kafka_transactions(env, &["describe", "--transactional-id", &id]).await;
    let [theirs] = &described_by_kafka[..] else {
        panic!("kafka-transactions.sh describe {id}: {described_by_kafka:?}")
    };
    let partitions: Vec<String> = ours.partitions.iter().map(|p| p.to_string()).collect();
    let ours_as_printed = BTreeMap::from([
        ("CoordinatorId", ours.coordinator.to_string()),
        ("ProducerId", ours.producer_id.to_string()),
        ("ProducerEpoch", ours.producer_epoch.to_string()),
        ("TransactionState", ours.state.clone()),
        ("TransactionTimeoutMs", ours.timeout_ms.to_string()),
        (
            "CurrentTransactionStartTimeMs",
            ours.start_time_ms.to_string(),
        ),
        ("TopicPartitions", partitions.join(",")),
    ]);
    let theirs_printed: BTreeMap<&str, String> = ours_as_printed
        .keys()
        .map(|column| (*column, theirs.get(*column).cloned().unwrap_or_default()))
        .collect();
    assert_eq!(ours_as_printed, theirs_printed);
    producer
        .abort_transaction(KAFKA_TIMEOUT)
        .unwrap_or_else(|e| panic!("abort: {e}"));
}

#[tokio::test]
async fn describe_transactions_after_the_commit_reports_it_complete_without_partitions() {
    let (env, ns) = setup("wire-describe-txns-done").await;
    let topic = ns.unique("orders");
    let id = format!("{topic}-open");
    create_kafka_topic(env, &topic, 1, &[]).await;
    let producer = leave_transaction_open(env, &topic, 1);
    producer
        .commit_transaction(KAFKA_TIMEOUT)
        .unwrap_or_else(|e| panic!("commit: {e}"));
    let client = wire(env);
    let done = eventually("the transaction to be complete", TIMEOUT, || async {
        let described = client
            .describe_transactions(std::slice::from_ref(&id))
            .await
            .map_err(|e| e.to_string())?;
        match described.first() {
            Some(t) if t.state == "CompleteCommit" => Ok(t.clone()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    assert_eq!(done.partitions, []);
    let listed = client
        .list_transactions()
        .await
        .unwrap_or_else(|e| panic!("list transactions: {e}"));
    let state = listed
        .iter()
        .find(|t| t.transactional_id == id)
        .map(|t| t.state.as_str());
    assert_eq!(state, Some("CompleteCommit"));
}

#[tokio::test]
async fn describe_transactions_of_an_unknown_transactional_id_is_transactional_id_not_found() {
    let (env, ns) = setup("wire-describe-txns-missing").await;
    let missing = ns.unique("missing");
    let error = wire(env)
        .describe_transactions(std::slice::from_ref(&missing))
        .await
        .err()
        .unwrap_or_else(|| panic!("describing {missing}, which no producer used"));
    assert_eq!(
        error.code(),
        Some(code::TRANSACTIONAL_ID_NOT_FOUND),
        "{error}"
    );
    assert!(error.to_string().contains(&missing), "{error}");
}

#[tokio::test]
async fn describe_producers_reports_an_open_transaction_at_its_first_offset() {
    let (env, ns) = setup("wire-describe-producers").await;
    let topic = ns.unique("orders");
    let id = format!("{topic}-open");
    create_kafka_topic(env, &topic, 1, &[]).await;
    produce_committed(env, &topic, 3);
    let producer = leave_transaction_open(env, &topic, 2);
    let client = wire(env);
    let txn = client
        .describe_transactions(std::slice::from_ref(&id))
        .await
        .unwrap_or_else(|e| panic!("describe {id}: {e}"));
    let p = tp(&topic, 0);
    let producers = client
        .describe_producers(std::slice::from_ref(&p))
        .await
        .unwrap_or_else(|e| panic!("producers of {p}: {e}"));
    assert_eq!(producers.keys().collect::<Vec<_>>(), [&p]);
    let states = &producers[&p];
    assert_eq!(states.len(), 2, "the seed producer and ours: {states:?}");
    let ours = states
        .iter()
        .find(|s| s.producer_id == txn[0].producer_id)
        .unwrap_or_else(|| panic!("producer {} not in {states:?}", txn[0].producer_id));
    // Three committed records and their marker (0..4): the open transaction starts at 4.
    assert_eq!(ours.current_txn_start_offset, 4);
    assert_eq!(ours.producer_epoch, txn[0].producer_epoch);
    assert_eq!(ours.last_sequence, 1, "two records, sequences 0 and 1");
    let seed = states
        .iter()
        .find(|s| s.producer_id != txn[0].producer_id)
        .unwrap_or_else(|| panic!("no seed producer in {states:?}"));
    assert_eq!(
        seed.current_txn_start_offset, -1,
        "the seed's transaction committed"
    );
    assert!(
        seed.coordinator_epoch >= 0,
        "a commit marker was written: {seed:?}"
    );
    let mut as_printed: Vec<BTreeMap<String, String>> = states
        .iter()
        .map(|s| {
            let start = match s.current_txn_start_offset {
                -1 => "None".to_string(),
                offset => offset.to_string(),
            };
            BTreeMap::from([
                ("ProducerId".to_string(), s.producer_id.to_string()),
                ("ProducerEpoch".to_string(), s.producer_epoch.to_string()),
                (
                    "LatestCoordinatorEpoch".to_string(),
                    s.coordinator_epoch.to_string(),
                ),
                ("LastSequence".to_string(), s.last_sequence.to_string()),
                ("LastTimestamp".to_string(), s.last_timestamp.to_string()),
                ("CurrentTransactionStartOffset".to_string(), start),
            ])
        })
        .collect();
    let mut by_kafka = kafka_transactions(
        env,
        &["describe-producers", "--topic", &topic, "--partition", "0"],
    )
    .await;
    as_printed.sort();
    by_kafka.sort();
    assert_eq!(
        as_printed, by_kafka,
        "as kafka-transactions.sh describe-producers"
    );
    producer
        .abort_transaction(KAFKA_TIMEOUT)
        .unwrap_or_else(|e| panic!("abort: {e}"));
}

#[tokio::test]
async fn describe_producers_of_a_topic_that_does_not_exist_is_an_unknown_topic_error() {
    let (env, ns) = setup("wire-describe-producers-missing").await;
    let p = tp(&ns.unique("missing"), 0);
    let error = wire(env)
        .describe_producers(std::slice::from_ref(&p))
        .await
        .err()
        .unwrap_or_else(|| panic!("producers of {p}, which does not exist"));
    assert_eq!(
        error.code(),
        Some(code::UNKNOWN_TOPIC_OR_PARTITION),
        "{error}"
    );
}

#[tokio::test]
async fn abort_transaction_clears_a_hanging_transaction_so_the_last_stable_offset_reaches_the_end()
{
    let (env, ns) = setup("wire-abort").await;
    let topic = ns.unique("orders");
    create_kafka_topic(env, &topic, 1, &[]).await;
    let (producer_id, producer_epoch) = hang_a_transaction(env, &topic, 0).await;
    let client = wire(env);
    let p = tp(&topic, 0);
    let hanging = client
        .describe_producers(std::slice::from_ref(&p))
        .await
        .unwrap_or_else(|e| panic!("producers of {p}: {e}"));
    let state = hanging[&p]
        .iter()
        .find(|s| s.producer_id == producer_id)
        .cloned()
        .unwrap_or_else(|| panic!("producer {producer_id} not in {hanging:?}"));
    assert_eq!(
        (state.producer_epoch, state.current_txn_start_offset),
        (producer_epoch, 0)
    );
    // Three records no coordinator will ever end: the last stable offset is stuck at 0.
    assert_eq!(watermarks(env, &topic, 0, "read_committed").1, 0);
    assert_eq!(watermarks(env, &topic, 0, "read_uncommitted").1, 3);

    client
        .abort_transaction(&p, producer_id, producer_epoch, state.coordinator_epoch)
        .await
        .unwrap_or_else(|e| panic!("abort the hanging transaction on {p}: {e}"));

    // The abort marker at 3: the log ends at 4 and all of it is stable.
    assert_eq!(watermarks(env, &topic, 0, "read_uncommitted").1, 4);
    assert_eq!(watermarks(env, &topic, 0, "read_committed").1, 4);
    let after = client
        .describe_producers(std::slice::from_ref(&p))
        .await
        .unwrap_or_else(|e| panic!("producers of {p}: {e}"));
    let open: Vec<i64> = after[&p]
        .iter()
        .filter(|s| s.current_txn_start_offset >= 0)
        .map(|s| s.producer_id)
        .collect();
    assert_eq!(
        open,
        Vec::<i64>::new(),
        "no open transaction is left on {p}"
    );
}

#[tokio::test]
async fn abort_transaction_on_a_topic_that_does_not_exist_is_an_unknown_topic_error() {
    let (env, ns) = setup("wire-abort-missing").await;
    let p = tp(&ns.unique("missing"), 0);
    let error = wire(env)
        .abort_transaction(&p, 1, 0, -1)
        .await
        .err()
        .unwrap_or_else(|| panic!("abort on {p}, which does not exist"));
    assert_eq!(
        error.code(),
        Some(code::UNKNOWN_TOPIC_OR_PARTITION),
        "{error}"
    );
}

#[tokio::test]
async fn topic_in_use_names_an_open_transaction_on_it() {
    let (env, ns) = setup("wire-in-use-txn").await;
    let topic = ns.unique("orders");
    create_kafka_topic(env, &topic, 1, &[]).await;
    let id = format!("{topic}-open");
    let producer = leave_transaction_open(env, &topic, 1);
    let producer_id = wire(env)
        .describe_transactions(std::slice::from_ref(&id))
        .await
        .unwrap_or_else(|e| panic!("describe {id}: {e}"))[0]
        .producer_id;
    let reasons = admin(env)
        .topic_in_use(&topic)
        .await
        .unwrap_or_else(|e| panic!("is {topic} in use: {e}"));
    assert_eq!(
        reasons,
        [format!(
            "open transactions on {topic}-0 (producer {producer_id})"
        )]
    );
    producer
        .abort_transaction(KAFKA_TIMEOUT)
        .unwrap_or_else(|e| panic!("abort: {e}"));
}

#[tokio::test]
async fn topic_in_use_names_a_group_with_a_member_reading_it() {
    let (env, ns) = setup("wire-in-use-group").await;
    let topic = ns.unique("orders");
    let group = ns.unique("billing");
    create_kafka_topic(env, &topic, 1, &[]).await;
    let _member = Member::join(env, &group, &topic).await;
    let reasons = admin(env)
        .topic_in_use(&topic)
        .await
        .unwrap_or_else(|e| panic!("is {topic} in use: {e}"));
    assert_eq!(
        reasons,
        [format!(
            "consumer group(s) with members reading it: '{group}' (1 member(s))"
        )]
    );
}

#[tokio::test]
async fn topic_in_use_is_empty_for_a_topic_no_one_writes_or_reads() {
    let (env, ns) = setup("wire-in-use-idle").await;
    let topic = ns.unique("orders");
    create_kafka_topic(env, &topic, 1, &[]).await;
    produce_committed(env, &topic, 2);
    rdkafka_commit(env, &ns.unique("done"), &topic, &[(0, 3)]);
    let reasons = admin(env)
        .topic_in_use(&topic)
        .await
        .unwrap_or_else(|e| panic!("is {topic} in use: {e}"));
    assert_eq!(reasons, Vec::<String>::new());
}

// ----- connections, TLS and SASL ---------------------------------------------------------------

#[tokio::test]
async fn scram_sha_512_over_tls_with_the_right_password_describes_the_cluster() {
    let (env, _ns) = setup("wire-scram-512").await;
    let client = KafkaAdmin::connect_with(
        &env.secure_bootstrap_servers,
        secure(env, Mechanism::ScramSha512, &env.kafka_password),
    )
    .unwrap_or_else(|e| panic!("secure admin client: {e}"));
    let cluster = client
        .describe_cluster()
        .await
        .unwrap_or_else(|e| panic!("describe the cluster over SASL_SSL: {e}"));
    assert_eq!(
        cluster.cluster_id,
        kafka_admin(env).inner().fetch_cluster_id(KAFKA_TIMEOUT)
    );
    assert_eq!(cluster.brokers, 1);
}

#[tokio::test]
async fn scram_sha_256_over_tls_with_the_right_password_sees_the_secure_listener() {
    let (env, _ns) = setup("wire-scram-256").await;
    let metadata = secure_client(env, Mechanism::ScramSha256, &env.kafka_password)
        .metadata(Some(&[]))
        .await
        .unwrap_or_else(|e| panic!("metadata over SASL_SSL: {e}"));
    let addresses: Vec<String> = metadata
        .brokers
        .iter()
        .map(|b| format!("{}:{}", b.host, b.port))
        .collect();
    assert_eq!(
        addresses,
        std::slice::from_ref(&env.secure_bootstrap_servers),
        "brokers are advertised on the listener the client is on"
    );
}

#[tokio::test]
async fn a_wrong_password_is_refused_with_sasl_authentication_failed() {
    let (env, _ns) = setup("wire-scram-wrong").await;
    let error = secure_client(env, Mechanism::ScramSha512, "not-the-password")
        .metadata(Some(&[]))
        .await
        .err()
        .unwrap_or_else(|| panic!("a wrong password was accepted"));
    match &error {
        WireError::Broker {
            api, code, name, ..
        } => assert_eq!(
            (*api, *code, *name),
            (
                "SaslAuthenticate",
                code::SASL_AUTHENTICATION_FAILED,
                "SASL_AUTHENTICATION_FAILED"
            )
        ),
        other => panic!("expected the broker's refusal, got {other:?}"),
    }
    assert!(
        error.to_string().contains(&env.kafka_username),
        "the refusal names the user: {error}"
    );
    assert!(
        !error.is_retriable(),
        "a wrong password is not a passing failure"
    );
    assert!(
        !error.to_string().contains("not-the-password"),
        "the password is not shown: {error}"
    );
}

#[tokio::test]
async fn a_mechanism_the_listener_does_not_enable_is_refused_naming_those_it_offers() {
    let (env, _ns) = setup("wire-sasl-plain").await;
    let error = secure_client(env, Mechanism::Plain, &env.kafka_password)
        .metadata(Some(&[]))
        .await
        .err()
        .unwrap_or_else(|| panic!("PLAIN was accepted by a SCRAM-only listener"));
    assert_eq!(
        error.code(),
        Some(code::UNSUPPORTED_SASL_MECHANISM),
        "{error}"
    );
    let message = error.to_string();
    assert!(message.contains("SaslHandshake"), "{message}");
    assert!(
        message.contains("mechanism PLAIN not enabled; the broker offers"),
        "{message}"
    );
    for offered in ["SCRAM-SHA-256", "SCRAM-SHA-512"] {
        assert!(message.contains(offered), "{message}");
    }
    assert!(!error.is_retriable());
}

#[tokio::test]
async fn a_broker_certificate_from_a_ca_the_client_does_not_trust_fails_the_tls_handshake() {
    let (env, ns) = setup("wire-tls-untrusted").await;
    let dir = env.dir.join(format!("{}-other-ca", ns.name));
    let other = exactly_testenv::pki::generate(&dir, &env.ports.ip, "10.96.0.1")
        .unwrap_or_else(|e| panic!("another CA: {e}"));
    let other_ca = std::fs::read_to_string(&other.ca_cert)
        .unwrap_or_else(|e| panic!("{}: {e}", other.ca_cert.display()));
    let security = Security {
        ca_pem: Some(other_ca),
        ..secure(env, Mechanism::ScramSha512, &env.kafka_password)
    };
    let client = WireClient::with_security(
        &env.secure_bootstrap_servers,
        "exactly-test",
        Duration::from_secs(15),
        security,
    )
    .unwrap_or_else(|e| panic!("client trusting another CA: {e}"));
    match client.metadata(Some(&[])).await {
        Err(WireError::Unreachable { address, message }) => {
            assert_eq!(address, env.secure_bootstrap_servers);
            assert!(message.contains("TLS handshake"), "{message}");
            assert!(message.contains("invalid peer certificate"), "{message}");
        }
        other => panic!("expected a failed TLS handshake, got {other:?}"),
    }
}

#[tokio::test]
async fn a_broker_that_does_not_listen_is_reported_unreachable_at_its_address() {
    let (env, _ns) = setup("wire-unreachable").await;
    let closed = std::net::TcpListener::bind((env.ports.ip.as_str(), 0))
        .and_then(|l| l.local_addr())
        .unwrap_or_else(|e| panic!("a free port: {e}"))
        .to_string();
    let client = WireClient::new(&closed, "exactly-test", Duration::from_secs(5));
    let started = Instant::now();
    let error = client
        .metadata(Some(&[]))
        .await
        .err()
        .unwrap_or_else(|| panic!("{closed} answered"));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "a refused connect fails at once"
    );
    match &error {
        WireError::Unreachable { address, message } => {
            assert_eq!(address, &closed);
            assert!(message.starts_with("connect:"), "{message}");
        }
        other => panic!("expected an unreachable broker, got {other:?}"),
    }
    assert!(error.is_retriable());
    assert_eq!(error.reason(), "KafkaUnreachable");
}

#[tokio::test]
async fn send_returns_the_brokers_answer_with_its_error_codes_unchecked() {
    use kafka_protocol::messages::DescribeConfigsRequest;
    use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
    use kafka_protocol::protocol::StrBytes;
    let (env, ns) = setup("wire-send").await;
    let missing = ns.unique("missing");
    let response = wire(env)
        .send(
            None,
            DescribeConfigsRequest::default().with_resources(vec![
                DescribeConfigsResource::default()
                    .with_resource_type(2)
                    .with_resource_name(StrBytes::from_string(missing.clone()))
                    .with_configuration_keys(None),
            ]),
        )
        .await
        .unwrap_or_else(|e| panic!("send DescribeConfigs: {e}"));
    let results: Vec<(String, i16)> = response
        .results
        .iter()
        .map(|r| (r.resource_name.to_string(), r.error_code))
        .collect();
    assert_eq!(results, [(missing, code::UNKNOWN_TOPIC_OR_PARTITION)]);
}

// ----- coordinators ----------------------------------------------------------------------------

#[tokio::test]
async fn a_group_coordinator_that_moved_is_looked_up_again_and_asked_at_its_new_broker() {
    let (env, ns) = setup("wire-coordinator-moved").await;
    let topic = ns.unique("orders");
    let group = ns.unique("billing");
    create_kafka_topic(env, &topic, 2, &[]).await;
    rdkafka_commit(env, &group, &topic, &[(0, 3), (1, 5)]);
    let old = Proxy::start(env).await;
    let new = Proxy::start(env).await;
    // After its NOT_COORDINATOR, FindCoordinator names another node, at the second address.
    let moved_to = broker_id(env) + 1;
    old.refuse(
        api::OFFSET_FETCH,
        code::NOT_COORDINATOR,
        Some(1),
        Some((moved_to, new.port)),
    );
    let client = WireClient::new(&old.address, "exactly-test", Duration::from_secs(15));

    let committed = client
        .committed_offsets_of_groups(std::slice::from_ref(&group))
        .await
        .unwrap_or_else(|e| panic!("committed offsets of {group} through the proxies: {e}"));

    assert_eq!(
        committed,
        BTreeMap::from([(group.clone(), rdkafka_committed(env, &group, &topic, 2))])
    );
    assert_eq!(committed[&group].len(), 2);
    let at_old = old.seen();
    assert_eq!(
        only(&at_old, api::OFFSET_FETCH),
        [Seen::Refused(api::OFFSET_FETCH, code::NOT_COORDINATOR)]
    );
    let refused = at_old
        .iter()
        .position(|s| matches!(s, Seen::Refused(..)))
        .unwrap_or_default();
    assert!(
        at_old[refused..].contains(&Seen::Forwarded(api::FIND_COORDINATOR)),
        "the coordinator is looked up again after the refusal: {at_old:?}"
    );
    assert_eq!(
        only(&new.seen(), api::OFFSET_FETCH),
        [Seen::Forwarded(api::OFFSET_FETCH)],
        "the fetch is sent again to where the coordinator moved"
    );
}

#[tokio::test]
async fn an_offset_commit_refused_by_a_coordinator_that_moved_is_sent_again_to_the_new_one() {
    let (env, ns) = setup("wire-coordinator-commit").await;
    let topic = ns.unique("orders");
    let group = ns.unique("billing");
    create_kafka_topic(env, &topic, 2, &[]).await;
    let old = Proxy::start(env).await;
    let new = Proxy::start(env).await;
    let moved_to = broker_id(env) + 1;
    old.refuse(
        api::OFFSET_COMMIT,
        code::NOT_COORDINATOR,
        Some(1),
        Some((moved_to, new.port)),
    );
    let client = WireClient::new(&old.address, "exactly-test", Duration::from_secs(15));
    let offsets = BTreeMap::from([(tp(&topic, 0), 4), (tp(&topic, 1), 0)]);

    client
        .commit_offsets(&group, &offsets)
        .await
        .unwrap_or_else(|e| panic!("commit offsets of {group} through the proxies: {e}"));

    assert_eq!(rdkafka_committed(env, &group, &topic, 2), offsets);
    assert_eq!(
        only(&old.seen(), api::OFFSET_COMMIT),
        [Seen::Refused(api::OFFSET_COMMIT, code::NOT_COORDINATOR)]
    );
    assert_eq!(
        only(&new.seen(), api::OFFSET_COMMIT),
        [Seen::Forwarded(api::OFFSET_COMMIT)],
        "the commit is sent again to where the coordinator moved"
    );
}

#[tokio::test]
async fn a_group_coordinator_still_loading_is_asked_again_until_it_answers() {
    let (env, ns) = setup("wire-coordinator-loading").await;
    let topic = ns.unique("orders");
    let group = ns.unique("billing");
    create_kafka_topic(env, &topic, 1, &[]).await;
    rdkafka_commit(env, &group, &topic, &[(0, 1)]);
    let proxy = Proxy::start(env).await;
    proxy.refuse(
        api::DESCRIBE_GROUPS,
        code::COORDINATOR_LOAD_IN_PROGRESS,
        Some(2),
        None,
    );
    let client = WireClient::new(&proxy.address, "exactly-test", Duration::from_secs(15));

    let described = client
        .describe_groups(std::slice::from_ref(&group))
        .await
        .unwrap_or_else(|e| panic!("describe {group} through the proxy: {e}"));

    let direct = wire(env)
        .describe_groups(std::slice::from_ref(&group))
        .await
        .unwrap_or_else(|e| panic!("describe {group}: {e}"));
    assert_eq!(described, direct);
    assert_eq!(described[0].state, "Empty");
    assert_eq!(
        only(&proxy.seen(), api::DESCRIBE_GROUPS),
        [
            Seen::Refused(api::DESCRIBE_GROUPS, code::COORDINATOR_LOAD_IN_PROGRESS),
            Seen::Refused(api::DESCRIBE_GROUPS, code::COORDINATOR_LOAD_IN_PROGRESS),
            Seen::Forwarded(api::DESCRIBE_GROUPS),
        ]
    );
}

#[tokio::test]
async fn a_transaction_coordinator_not_available_yet_is_looked_up_again() {
    let (env, ns) = setup("wire-coordinator-unavailable").await;
    let id = ns.unique("writer");
    let _producer = transactional_producer(env, &id, 60_000);
    let proxy = Proxy::start(env).await;
    proxy.refuse(
        api::FIND_COORDINATOR,
        code::COORDINATOR_NOT_AVAILABLE,
        Some(1),
        None,
    );
    let client = WireClient::new(&proxy.address, "exactly-test", Duration::from_secs(15));

    let described = client
        .describe_transactions(std::slice::from_ref(&id))
        .await
        .unwrap_or_else(|e| panic!("describe {id} through the proxy: {e}"));

    let direct = wire(env)
        .describe_transactions(std::slice::from_ref(&id))
        .await
        .unwrap_or_else(|e| panic!("describe {id}: {e}"));
    assert_eq!(described, direct);
    assert_eq!(
        described[0].state, "Empty",
        "initialised, no transaction yet"
    );
    let seen = proxy.seen();
    assert_eq!(
        only(&seen, api::FIND_COORDINATOR),
        [
            Seen::Refused(api::FIND_COORDINATOR, code::COORDINATOR_NOT_AVAILABLE),
            Seen::Forwarded(api::FIND_COORDINATOR),
        ]
    );
    assert_eq!(
        only(&seen, api::DESCRIBE_TRANSACTIONS),
        [Seen::Forwarded(api::DESCRIBE_TRANSACTIONS)]
    );
}

#[tokio::test]
async fn a_coordinator_that_keeps_refusing_is_reported_as_not_coordinator_once_the_timeout_passed()
{
    let (env, ns) = setup("wire-coordinator-refusing").await;
    let topic = ns.unique("orders");
    let group = ns.unique("billing");
    create_kafka_topic(env, &topic, 1, &[]).await;
    rdkafka_commit(env, &group, &topic, &[(0, 1)]);
    let proxy = Proxy::start(env).await;
    proxy.refuse(api::OFFSET_FETCH, code::NOT_COORDINATOR, None, None);
    let timeout = Duration::from_secs(2);
    let client = WireClient::new(&proxy.address, "exactly-test", timeout);

    let started = Instant::now();
    let error = tokio::time::timeout(
        timeout + Duration::from_secs(10),
        client.committed_offsets_of_groups(std::slice::from_ref(&group)),
    )
    .await
    .unwrap_or_else(|_| panic!("still retrying long after the {timeout:?} request timeout"))
    .err()
    .unwrap_or_else(|| panic!("an answer from a coordinator that only refuses"));
    let took = started.elapsed();

    assert_eq!(error.code(), Some(code::NOT_COORDINATOR), "{error}");
    assert!(error.to_string().contains("NOT_COORDINATOR"), "{error}");
    assert!(
        took < timeout + Duration::from_secs(5),
        "gave up after {took:?}, the request timeout is {timeout:?}"
    );
    let refusals = only(&proxy.seen(), api::OFFSET_FETCH).len();
    assert!(refusals >= 3, "asked {refusals} times within {took:?}");
}

// ----- a broker in the middle ------------------------------------------------------------------

/// API keys the proxy looks at.
mod api {
    pub const METADATA: i16 = 3;
    pub const OFFSET_COMMIT: i16 = 8;
    pub const OFFSET_FETCH: i16 = 9;
    pub const FIND_COORDINATOR: i16 = 10;
    pub const DESCRIBE_GROUPS: i16 = 15;
    pub const DESCRIBE_TRANSACTIONS: i16 = 65;
}

/// What the proxy did with one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Seen {
    /// Sent to the broker (API key); its answer went back.
    Forwarded(i16),
    /// Answered by the proxy with an error code instead (API key, error code).
    Refused(i16, i16),
}

fn only(seen: &[Seen], api: i16) -> Vec<Seen> {
    seen.iter()
        .copied()
        .filter(|s| matches!(s, Seen::Forwarded(a) | Seen::Refused(a, _) if *a == api))
        .collect()
}

struct Refusal {
    api: i16,
    code: i16,
    /// How many requests are still refused; `None`: all of them.
    left: Option<usize>,
    /// Node id and port that FindCoordinator answers name once the last refusal is sent.
    then_coordinator: Option<(i32, u16)>,
}

#[derive(Default)]
struct Script {
    refusals: Vec<Refusal>,
    /// Node id and port FindCoordinator answers name instead of the broker.
    coordinator: Option<(i32, u16)>,
    seen: Vec<Seen>,
    /// What went wrong in the proxy itself (fails the test that reads [`Proxy::seen`]).
    broken: Vec<String>,
}

impl Script {
    fn refusal(&mut self, api: i16) -> Option<i16> {
        let refusal = self
            .refusals
            .iter_mut()
            .find(|r| r.api == api && r.left != Some(0))?;
        if let Some(left) = refusal.left.as_mut() {
            *left -= 1;
        }
        let (code, done, then) = (
            refusal.code,
            refusal.left == Some(0),
            refusal.then_coordinator,
        );
        if done && then.is_some() {
            self.coordinator = then;
        }
        Some(code)
    }
}

/// A TCP proxy in front of the environment's broker, on the broker's IP: it forwards every
/// request and answer unchanged, except that Metadata and FindCoordinator answers advertise the
/// proxy instead of the broker (so the client keeps talking through it), and requests of a
/// scripted API are answered with a scripted error code instead of being forwarded.
struct Proxy {
    address: String,
    port: u16,
    script: Arc<Mutex<Script>>,
    acceptor: tokio::task::JoinHandle<()>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.acceptor.abort();
    }
}

/// The broker's advertised host and port, and the proxy's port to put in their place.
struct Rewrite {
    upstream: String,
    host: String,
    broker_port: i32,
    port: i32,
}

fn lock(script: &Mutex<Script>) -> std::sync::MutexGuard<'_, Script> {
    script
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Proxy {
    async fn start(env: &Environment) -> Proxy {
        let (host, broker_port) = env
            .bootstrap_servers
            .rsplit_once(':')
            .unwrap_or_else(|| panic!("bootstrap {} is not host:port", env.bootstrap_servers));
        let broker_port: i32 = broker_port
            .parse()
            .unwrap_or_else(|e| panic!("port of {}: {e}", env.bootstrap_servers));
        let listener = tokio::net::TcpListener::bind((host, 0))
            .await
            .unwrap_or_else(|e| panic!("proxy listener on {host}: {e}"));
        let port = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("proxy address: {e}"))
            .port();
        let rewrite = Arc::new(Rewrite {
            upstream: env.bootstrap_servers.clone(),
            host: host.to_string(),
            broker_port,
            port: i32::from(port),
        });
        let script = Arc::new(Mutex::new(Script::default()));
        let shared = script.clone();
        let acceptor = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let (rewrite, script) = (rewrite.clone(), shared.clone());
                tokio::spawn(async move {
                    if let Err(e) = serve(client, &rewrite, &script).await {
                        lock(&script).broken.push(e);
                    }
                });
            }
        });
        Proxy {
            address: format!("{host}:{port}"),
            port,
            script,
            acceptor,
        }
    }

    /// Answers `times` (`None`: every) request of `api` with `code`; after the last one,
    /// FindCoordinator answers name `then_coordinator` (node id, port of this host) if given.
    fn refuse(
        &self,
        api: i16,
        code: i16,
        times: Option<usize>,
        then_coordinator: Option<(i32, u16)>,
    ) {
        lock(&self.script).refusals.push(Refusal {
            api,
            code,
            left: times,
            then_coordinator,
        });
    }

    /// What the proxy did so far, in order; panics if the proxy itself failed.
    fn seen(&self) -> Vec<Seen> {
        let script = lock(&self.script);
        assert_eq!(script.broken, Vec::<String>::new(), "the proxy failed");
        script.seen.clone()
    }
}

/// Relays one client connection, request by request (the wire client sends one at a time).
async fn serve(
    mut client: tokio::net::TcpStream,
    rewrite: &Rewrite,
    script: &Mutex<Script>,
) -> Result<(), String> {
    let mut broker = tokio::net::TcpStream::connect(&rewrite.upstream)
        .await
        .map_err(|e| format!("connect to {}: {e}", rewrite.upstream))?;
    loop {
        let Ok(request) = read_frame(&mut client).await else {
            return Ok(()); // the client closed the connection
        };
        let (api, version) = match request.get(..4) {
            Some(h) => (
                i16::from_be_bytes([h[0], h[1]]),
                i16::from_be_bytes([h[2], h[3]]),
            ),
            None => return Err("request without a header".into()),
        };
        let refusal = lock(script).refusal(api);
        let response = match refusal {
            Some(code) => {
                let response = refusal_response(&request, code)
                    .map_err(|e| format!("refusing API {api} v{version}: {e}"))?;
                lock(script).seen.push(Seen::Refused(api, code));
                response
            }
            None => {
                write_frame(&mut broker, &request)
                    .await
                    .map_err(|e| format!("to the broker: {e}"))?;
                let mut response = read_frame(&mut broker)
                    .await
                    .map_err(|e| format!("from the broker: {e}"))?;
                if api == api::METADATA || api == api::FIND_COORDINATOR {
                    let coordinator = lock(script).coordinator;
                    let moved = coordinator.filter(|_| api == api::FIND_COORDINATOR);
                    let (node, port) = match moved {
                        Some((node, port)) => (Some(node), i32::from(port)),
                        None => (None, rewrite.port),
                    };
                    if !advertise(&mut response, rewrite, node, port) {
                        return Err(format!("no broker address in the answer to API {api}"));
                    }
                }
                lock(script).seen.push(Seen::Forwarded(api));
                response
            }
        };
        write_frame(&mut client, &response)
            .await
            .map_err(|e| format!("to the client: {e}"))?;
    }
}

async fn read_frame(stream: &mut tokio::net::TcpStream) -> std::io::Result<Vec<u8>> {
    use tokio::io::AsyncReadExt;
    let size = stream.read_i32().await?;
    let size = usize::try_from(size).map_err(|_| std::io::Error::other("negative frame size"))?;
    let mut frame = vec![0; size];
    stream.read_exact(&mut frame).await?;
    Ok(frame)
}

async fn write_frame(stream: &mut tokio::net::TcpStream, frame: &[u8]) -> std::io::Result<()> {
    use tokio::io::AsyncWriteExt;
    let size = i32::try_from(frame.len()).map_err(|_| std::io::Error::other("frame too large"))?;
    stream.write_all(&size.to_be_bytes()).await?;
    stream.write_all(frame).await
}

/// Puts `port` (and `node`, when given) in place of the broker's port (and node id) wherever a
/// flexible-version answer advertises the broker: node id, compact string host, port. Returns
/// whether it found one.
fn advertise(response: &mut [u8], rewrite: &Rewrite, node: Option<i32>, port: i32) -> bool {
    let mut pattern = Writer::default();
    pattern.string(&rewrite.host);
    pattern.i32(rewrite.broker_port);
    let pattern = pattern.0;
    let mut found = false;
    let mut at = 4;
    while at + pattern.len() <= response.len() {
        if response[at..at + pattern.len()] == pattern[..] {
            let end = at + pattern.len();
            response[end - 4..end].copy_from_slice(&port.to_be_bytes());
            if let Some(node) = node {
                response[at - 4..at].copy_from_slice(&node.to_be_bytes());
            }
            found = true;
            at = end;
        } else {
            at += 1;
        }
    }
    found
}

/// The answer a refusing coordinator gives: `code` for every key of the request, in the
/// request's version (flexible versions only, which is what the wire client speaks to Kafka 4).
fn refusal_response(request: &[u8], code: i16) -> Result<Vec<u8>, String> {
    let mut r = Reader {
        bytes: request,
        at: 0,
    };
    let api = r.i16()?;
    let version = r.i16()?;
    let correlation_id = r.i32()?;
    // Request header v2: client id (nullable non-compact string), tagged fields.
    let client_id = r.i16()?;
    if client_id > 0 {
        r.take(usize::try_from(client_id).map_err(|e| e.to_string())?)?;
    }
    r.tagged_fields()?;
    let mut w = Writer::default();
    // Response header v1: correlation id, tagged fields.
    w.i32(correlation_id);
    w.uvarint(0);
    w.i32(0); // throttle_time_ms
    match api {
        api::FIND_COORDINATOR if version >= 4 => {
            r.take(1)?; // key type
            let keys = r.strings()?;
            w.array(keys.len());
            for key in &keys {
                w.string(key);
                w.i32(-1); // node id
                w.string(""); // host
                w.i32(-1); // port
                w.i16(code);
                w.uvarint(0); // error message: null
                w.uvarint(0);
            }
        }
        api::DESCRIBE_GROUPS if version >= 5 => {
            let groups = r.strings()?;
            w.array(groups.len());
            for group in &groups {
                w.i16(code);
                if version >= 6 {
                    w.uvarint(0); // error message: null
                }
                w.string(group);
                w.string(""); // state
                w.string(""); // protocol type
                w.string(""); // protocol
                w.array(0); // members
                w.i32(i32::MIN); // authorized operations: not asked
                w.uvarint(0);
            }
        }
        api::OFFSET_FETCH if version >= 8 => {
            let count = r.uvarint()?.saturating_sub(1);
            let mut groups = Vec::new();
            for _ in 0..count {
                groups.push(r.string()?);
                if version >= 9 {
                    r.nullable_string()?; // member id
                    r.i32()?; // member epoch
                }
                let topics = r.uvarint()?.saturating_sub(1);
                for _ in 0..topics {
                    r.string()?;
                    let partitions = r.uvarint()?.saturating_sub(1);
                    r.take(4 * partitions)?;
                    r.tagged_fields()?;
                }
                r.tagged_fields()?;
            }
            w.array(groups.len());
            for group in &groups {
                w.string(group);
                w.array(0); // topics
                w.i16(code);
                w.uvarint(0);
            }
        }
        api::OFFSET_COMMIT if version >= 8 => {
            r.string()?; // group id
            r.i32()?; // generation
            r.string()?; // member id
            r.nullable_string()?; // group instance id
            let count = r.uvarint()?.saturating_sub(1);
            let mut topics = Vec::new();
            for _ in 0..count {
                let name = r.string()?;
                let mut partitions = Vec::new();
                for _ in 0..r.uvarint()?.saturating_sub(1) {
                    partitions.push(r.i32()?);
                    r.take(8 + 4)?; // offset, leader epoch
                    r.nullable_string()?; // metadata
                    r.tagged_fields()?;
                }
                r.tagged_fields()?;
                topics.push((name, partitions));
            }
            w.array(topics.len());
            for (name, partitions) in &topics {
                w.string(name);
                w.array(partitions.len());
                for partition in partitions {
                    w.i32(*partition);
                    w.i16(code);
                    w.uvarint(0);
                }
                w.uvarint(0);
            }
        }
        api::DESCRIBE_TRANSACTIONS => {
            let ids = r.strings()?;
            w.array(ids.len());
            for id in &ids {
                w.i16(code);
                w.string(id);
                w.string(""); // state
                w.i32(0); // timeout
                w.i64(-1); // start time
                w.i64(-1); // producer id
                w.i16(-1); // producer epoch
                w.array(0); // topics
                w.uvarint(0);
            }
        }
        other => return Err(format!("no refusal for API {other} v{version}")),
    }
    w.uvarint(0);
    Ok(w.0)
}

/// Reads the primitives of Kafka's protocol.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], String> {
        let bytes = self
            .bytes
            .get(self.at..self.at + n)
            .ok_or_else(|| format!("{n} bytes past the end at {}", self.at))?;
        self.at += n;
        Ok(bytes)
    }

    fn i16(&mut self) -> Result<i16, String> {
        let b = self.take(2)?;
        Ok(i16::from_be_bytes([b[0], b[1]]))
    }

    fn i32(&mut self) -> Result<i32, String> {
        let b = self.take(4)?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn uvarint(&mut self) -> Result<usize, String> {
        let mut value = 0usize;
        for shift in (0..35).step_by(7) {
            let byte = self.take(1)?[0];
            value |= usize::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err("varint too long".into())
    }

    fn string(&mut self) -> Result<String, String> {
        let len = self
            .uvarint()?
            .checked_sub(1)
            .ok_or("null where a string is expected")?;
        Ok(String::from_utf8_lossy(self.take(len)?).into_owned())
    }

    fn nullable_string(&mut self) -> Result<Option<String>, String> {
        match self.uvarint()? {
            0 => Ok(None),
            len => Ok(Some(
                String::from_utf8_lossy(self.take(len - 1)?).into_owned(),
            )),
        }
    }

    /// A compact array of compact strings.
    fn strings(&mut self) -> Result<Vec<String>, String> {
        let count = self.uvarint()?.saturating_sub(1);
        (0..count).map(|_| self.string()).collect()
    }

    fn tagged_fields(&mut self) -> Result<(), String> {
        for _ in 0..self.uvarint()? {
            self.uvarint()?;
            let size = self.uvarint()?;
            self.take(size)?;
        }
        Ok(())
    }
}

/// Writes the primitives of Kafka's protocol.
#[derive(Default)]
struct Writer(Vec<u8>);

impl Writer {
    fn i16(&mut self, v: i16) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }

    fn i32(&mut self, v: i32) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }

    fn i64(&mut self, v: i64) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }

    fn uvarint(&mut self, mut v: usize) {
        while v >= 0x80 {
            self.0
                .push(u8::try_from(v & 0x7f).unwrap_or_default() | 0x80);
            v >>= 7;
        }
        self.0.push(u8::try_from(v).unwrap_or_default());
    }

    fn string(&mut self, s: &str) {
        self.uvarint(s.len() + 1);
        self.0.extend_from_slice(s.as_bytes());
    }

    /// The length of a compact array of `n` items.
    fn array(&mut self, n: usize) {
        self.uvarint(n + 1);
    }
}

#[test]
fn the_proxys_refusals_decode_as_the_wire_client_reads_them() {
    use kafka_protocol::messages::{DescribeGroupsResponse, FindCoordinatorResponse};
    use kafka_protocol::protocol::Decodable;
    // A DescribeGroups v6 request for one group, as the client frames it (header v2).
    let mut request = Writer::default();
    request.i16(api::DESCRIBE_GROUPS);
    request.i16(6);
    request.i32(42);
    request.i16(4);
    request.0.extend_from_slice(b"test");
    request.uvarint(0);
    request.array(1);
    request.string("billing");
    request.0.push(0); // include authorized operations
    request.uvarint(0);
    let response = refusal_response(&request.0, code::NOT_COORDINATOR)
        .unwrap_or_else(|e| panic!("refusal: {e}"));
    let mut body = bytes::Bytes::from(response[5..].to_vec());
    let decoded = DescribeGroupsResponse::decode(&mut body, 6)
        .unwrap_or_else(|e| panic!("decoding the refusal: {e}"));
    assert_eq!(
        i32::from_be_bytes([response[0], response[1], response[2], response[3]]),
        42
    );
    assert_eq!(decoded.groups.len(), 1);
    assert_eq!(decoded.groups[0].error_code, code::NOT_COORDINATOR);
    assert_eq!(decoded.groups[0].group_id.0.to_string(), "billing");

    let mut request = Writer::default();
    request.i16(api::FIND_COORDINATOR);
    request.i16(6);
    request.i32(7);
    request.i16(-1);
    request.uvarint(0);
    request.0.push(1); // transaction
    request.array(2);
    request.string("a");
    request.string("b");
    request.uvarint(0);
    let response = refusal_response(&request.0, code::COORDINATOR_NOT_AVAILABLE)
        .unwrap_or_else(|e| panic!("refusal: {e}"));
    let mut body = bytes::Bytes::from(response[5..].to_vec());
    let decoded = FindCoordinatorResponse::decode(&mut body, 6)
        .unwrap_or_else(|e| panic!("decoding the refusal: {e}"));
    let keys: Vec<(String, i16)> = decoded
        .coordinators
        .iter()
        .map(|c| (c.key.to_string(), c.error_code))
        .collect();
    assert_eq!(
        keys,
        [
            ("a".to_string(), code::COORDINATOR_NOT_AVAILABLE),
            ("b".to_string(), code::COORDINATOR_NOT_AVAILABLE)
        ]
    );
}
