//! What several tests need: the operator running against one namespace, and Kafka's own view.

use std::collections::BTreeMap;
use std::time::Duration;

use exactly::api::conditions;
use exactly::api::{KafkaCluster, Topic};
use exactly_testenv::{Environment, TestNamespace, eventually};
use futures::StreamExt;
use kube::Client;
use kube::api::{Api, ListParams, PostParams};
use rdkafka::admin::{AdminClient, AdminOptions, ConfigSource, ResourceSpecifier};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;

/// How often the operator under test refreshes delivery figures: short, so tests see changes
/// within seconds.
pub const REFRESH: Duration = Duration::from_secs(2);

/// Runs the operator's controllers for `namespace` in this test's runtime; they stop with it.
pub fn run_operator(client: Client, namespace: &str) {
    run_operator_with_metrics(client, namespace, std::sync::Arc::default());
}

/// [`run_operator`], recording into `metrics`.
pub fn run_operator_with_metrics(
    client: Client,
    namespace: &str,
    metrics: std::sync::Arc<exactly::metrics::Metrics>,
) {
    operator_logs();
    let options = exactly::controller::Options {
        namespace: Some(namespace.to_string()),
        concurrency: 2,
        refresh_interval: REFRESH,
        metrics,
        ..Default::default()
    };
    tokio::spawn(exactly::controller::run(
        client,
        options,
        std::future::pending(),
    ));
}

/// The operator's log lines (info and up), through the test harness's capture: a failing test
/// prints those of its own operator.
fn operator_logs() {
    use tracing_subscriber::Layer;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let _ = tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_ansi(false)
                .with_test_writer()
                .with_filter(tracing_subscriber::EnvFilter::new("exactly=info")),
        )
        .with(log_lines::Counter.with_filter(tracing_subscriber::EnvFilter::new("exactly=info")))
        .with(
            log_text::Capture.with_filter(tracing_subscriber::EnvFilter::new(
                "exactly=debug,kube=debug,info",
            )),
        )
        .try_init();
}

/// The text of every log line (operator and kube client, debug and up: every field of the
/// event and of its spans) while a test records it, to search for what must never be logged.
pub mod log_text {
    use std::fmt::Write as _;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use tracing::field::{Field, Visit};
    use tracing_subscriber::layer::Context;
    use tracing_subscriber::registry::LookupSpan;

    static RECORDING: AtomicUsize = AtomicUsize::new(0);
    static TEXT: Mutex<String> = Mutex::new(String::new());

    /// Lines are kept while one of these lives.
    pub struct Recording(());

    impl Drop for Recording {
        fn drop(&mut self) {
            if RECORDING.fetch_sub(1, Ordering::SeqCst) == 1 {
                TEXT.lock().unwrap_or_else(|p| p.into_inner()).clear();
            }
        }
    }

    /// Starts keeping lines (of every test of this binary running meanwhile).
    #[allow(dead_code)] // the integration tests' (this file is shared with the fault tests)
    pub fn record() -> Recording {
        RECORDING.fetch_add(1, Ordering::SeqCst);
        Recording(())
    }

    /// The lines kept so far.
    #[allow(dead_code)]
    pub fn text() -> String {
        TEXT.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    struct Fields<'a>(&'a mut String);

    impl Visit for Fields<'_> {
        fn record_str(&mut self, field: &Field, value: &str) {
            let _ = write!(self.0, " {}={value}", field.name());
        }

        fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
            let _ = write!(self.0, " {}={value:?}", field.name());
        }
    }

    fn keep(line: &str) {
        if RECORDING.load(Ordering::SeqCst) > 0 {
            let mut text = TEXT.lock().unwrap_or_else(|p| p.into_inner());
            text.push_str(line);
            text.push('\n');
        }
    }

    /// The layer that keeps lines.
    pub struct Capture;

    impl<S> tracing_subscriber::Layer<S> for Capture
    where
        S: tracing::Subscriber + for<'a> LookupSpan<'a>,
    {
        fn on_new_span(
            &self,
            attrs: &tracing::span::Attributes<'_>,
            _id: &tracing::span::Id,
            _ctx: Context<'_, S>,
        ) {
            if RECORDING.load(Ordering::SeqCst) > 0 {
                let mut line = format!("span {}:", attrs.metadata().name());
                attrs.record(&mut Fields(&mut line));
                keep(&line);
            }
        }

        fn on_record(
            &self,
            _id: &tracing::span::Id,
            values: &tracing::span::Record<'_>,
            _ctx: Context<'_, S>,
        ) {
            if RECORDING.load(Ordering::SeqCst) > 0 {
                let mut line = String::from("span record:");
                values.record(&mut Fields(&mut line));
                keep(&line);
            }
        }

        fn on_event(&self, event: &tracing::Event<'_>, _ctx: Context<'_, S>) {
            if RECORDING.load(Ordering::SeqCst) > 0 {
                let mut line = format!(
                    "{} {}:",
                    event.metadata().level(),
                    event.metadata().target()
                );
                event.record(&mut Fields(&mut line));
                keep(&line);
            }
        }
    }
}

/// The log lines the operators of this test binary wrote, by namespace: an event counts for the
/// namespace named by its own `namespace` field or by the nearest span that has one.
pub mod log_lines {
    use std::collections::HashMap;
    use std::sync::Mutex;

    use tracing::field::{Field, Visit};
    use tracing_subscriber::layer::Context;
    use tracing_subscriber::registry::LookupSpan;

    static COUNTS: Mutex<Option<HashMap<String, u64>>> = Mutex::new(None);

    /// Lines logged (at info and above) for `namespace` so far.
    #[allow(dead_code)] // the fault tests' (this file is shared with them)
    pub fn of(namespace: &str) -> u64 {
        COUNTS
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .and_then(|c| c.get(namespace).copied())
            .unwrap_or(0)
    }

    /// The `namespace` field's value, if any.
    #[derive(Default)]
    struct Namespace(Option<String>);

    impl Visit for Namespace {
        fn record_str(&mut self, field: &Field, value: &str) {
            if field.name() == "namespace" {
                self.0 = Some(value.to_string());
            }
        }

        fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
            if field.name() == "namespace" {
                self.0 = Some(format!("{value:?}").trim_matches('"').to_string());
            }
        }
    }

    /// The layer that counts.
    pub struct Counter;

    impl<S> tracing_subscriber::Layer<S> for Counter
    where
        S: tracing::Subscriber + for<'a> LookupSpan<'a>,
    {
        fn on_new_span(
            &self,
            attrs: &tracing::span::Attributes<'_>,
            id: &tracing::span::Id,
            ctx: Context<'_, S>,
        ) {
            let mut namespace = Namespace::default();
            attrs.record(&mut namespace);
            if let (Some(ns), Some(span)) = (namespace.0, ctx.span(id)) {
                span.extensions_mut().insert(Namespace(Some(ns)));
            }
        }

        fn on_event(&self, event: &tracing::Event<'_>, ctx: Context<'_, S>) {
            let mut namespace = Namespace::default();
            event.record(&mut namespace);
            let ns = namespace.0.or_else(|| {
                ctx.event_scope(event)?.find_map(|span| {
                    span.extensions()
                        .get::<Namespace>()
                        .and_then(|n| n.0.clone())
                })
            });
            if let Some(ns) = ns {
                let mut counts = COUNTS.lock().unwrap_or_else(|p| p.into_inner());
                *counts
                    .get_or_insert_with(HashMap::new)
                    .entry(ns)
                    .or_insert(0) += 1;
            }
        }
    }
}

/// An operator run that a test stops (and may start again) itself: to check what a fresh
/// process decides from what the API server holds, not from memory of an earlier run.
pub struct Operator {
    /// What this run counts (reconciles by kind and result, ...).
    pub metrics: std::sync::Arc<exactly::metrics::Metrics>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Operator {
    /// Starts the operator's controllers for `namespace`, as [`run_operator`] does.
    pub fn start(client: Client, namespace: &str) -> Operator {
        operator_logs();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let metrics = std::sync::Arc::new(exactly::metrics::Metrics::default());
        let options = exactly::controller::Options {
            namespace: Some(namespace.to_string()),
            concurrency: 2,
            refresh_interval: REFRESH,
            metrics: metrics.clone(),
            ..Default::default()
        };
        let task = tokio::spawn(exactly::controller::run(client, options, async move {
            let _ = stopped.await;
        }));
        Operator {
            metrics,
            stop: Some(stop),
            task,
        }
    }

    /// Reconciles of `kind` this run finished with `ok`.
    pub fn ok_reconciles(&self, kind: &str) -> u64 {
        let prefix = format!("exactly_reconciles_total{{kind=\"{kind}\",result=\"ok\"}} ");
        self.metrics
            .encode()
            .lines()
            .find_map(|l| l.strip_prefix(&prefix).and_then(|v| v.trim().parse().ok()))
            .unwrap_or(0)
    }

    /// Stops the controllers and waits until they have: in-flight reconciles finish, nothing
    /// of this run acts afterwards.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(Duration::from_secs(60), &mut self.task)
            .await
            .unwrap_or_else(|_| panic!("the operator did not stop within 60 s"))
            .unwrap_or_else(|e| panic!("the operator's task failed: {e}"));
    }
}

/// A KafkaCluster `name` on the environment's SASL_SSL listener, the operator logging in as the
/// environment's super user with `password` (SCRAM-SHA-512, the environment's CA), from the
/// Secret `<name>-login`.
pub async fn create_secure_cluster(client: &Client, ns: &str, name: &str, password: &str) {
    use k8s_openapi::api::core::v1::Secret;
    let env = exactly_testenv::shared();
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    let secret: Secret = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": format!("{name}-login")},
        "stringData": {
            "security.protocol": "SASL_SSL",
            "sasl.mechanism": "SCRAM-SHA-512",
            "sasl.username": env.kafka_username,
            "sasl.password": password,
            "ssl.ca.pem": env.kafka_ca_pem,
        },
    }))
    .unwrap_or_else(|e| panic!("{e}"));
    secrets
        .create(&PostParams::default(), &secret)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let clusters: Api<KafkaCluster> = Api::namespaced(client.clone(), ns);
    let cluster: KafkaCluster = serde_json::from_value(serde_json::json!({
        "apiVersion": "exactly.dev/v1alpha1", "kind": "KafkaCluster", "metadata": {"name": name},
        "spec": {"external": {"bootstrapServers": env.secure_bootstrap_servers,
            "secretRef": {"name": format!("{name}-login")}}},
    }))
    .unwrap_or_else(|e| panic!("{e}"));
    clusters
        .create(&PostParams::default(), &cluster)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
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

/// Waits until the Topic `name` is Ready for its current generation; a timeout names the
/// conditions it had. Tests that produce to a Topic's Kafka topic wait here first: a client's
/// Secret can be rendered before the topic exists.
pub async fn topic_ready(client: &Client, ns: &TestNamespace, name: &str, timeout: Duration) {
    let topics: Api<Topic> = Api::namespaced(client.clone(), &ns.name);
    eventually(
        &format!("the Topic {name} to be Ready"),
        timeout,
        || async {
            let topic = topics.get(name).await.map_err(|e| e.to_string())?;
            match ready_of(&topic) {
                Some((status, _, generation))
                    if status == "True" && generation == topic.metadata.generation =>
                {
                    Ok(())
                }
                _ => Err(format!(
                    "conditions: {:?}",
                    topic.status.map(|s| s.conditions).unwrap_or_default()
                )),
            }
        },
    )
    .await;
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

/// Creates any exactly resource from its manifest (`apiVersion` and `kind` are filled in from
/// `K`) in the test's namespace; returns the API for that kind.
pub async fn create<K>(
    client: &Client,
    ns: &TestNamespace,
    name: &str,
    spec: serde_json::Value,
) -> Api<K>
where
    K: kube::Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + serde::Serialize
        + std::fmt::Debug,
{
    let api: Api<K> = Api::namespaced(client.clone(), &ns.name);
    let object: K = serde_json::from_value(serde_json::json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "metadata": {"name": name},
        "spec": spec,
    }))
    .unwrap_or_else(|e| panic!("{} manifest: {e}", K::kind(&())));
    api.create(&PostParams::default(), &object)
        .await
        .unwrap_or_else(|e| panic!("create {} {name}: {e}", K::kind(&())));
    api
}

/// The condition `type_` as (status, reason, message).
pub fn condition(
    conditions: &[exactly::api::Condition],
    type_: &str,
) -> Option<(String, String, String)> {
    let c = conditions::find(conditions, type_)?;
    Some((
        format!("{:?}", c.status),
        c.reason.clone(),
        c.message.clone(),
    ))
}

/// The operator's own view of the broker, for setting up what a test needs (topics, groups,
/// hanging transactions) through the same wire client the operator uses.
pub fn wire(env: &Environment) -> exactly::kafka::WireClient {
    exactly::kafka::WireClient::new(
        &env.bootstrap_servers,
        "exactly-test",
        Duration::from_secs(15),
    )
}

/// Creates a Kafka topic directly on the broker (as someone outside the operator would).
pub async fn create_kafka_topic(
    env: &Environment,
    name: &str,
    partitions: i32,
    config: &[(&str, &str)],
) {
    use rdkafka::admin::{NewTopic, TopicReplication};
    let admin = kafka_admin(env);
    let mut topic = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
    for (k, v) in config {
        topic = topic.set(k, v);
    }
    let results = admin
        .create_topics([&topic], &AdminOptions::new())
        .await
        .unwrap_or_else(|e| panic!("create topic {name}: {e}"));
    for r in results {
        r.unwrap_or_else(|e| panic!("create topic {name}: {e:?}"));
    }
}

/// Sets (or with `None`, removes) one config on a topic directly in Kafka, as drift would.
pub async fn set_kafka_topic_config(
    env: &Environment,
    topic: &str,
    key: &str,
    value: Option<&str>,
) {
    use exactly::kafka::WireClient;
    use kafka_protocol::messages::IncrementalAlterConfigsRequest;
    use kafka_protocol::messages::incremental_alter_configs_request::{
        AlterConfigsResource, AlterableConfig,
    };
    use kafka_protocol::protocol::StrBytes;
    let client: WireClient = wire(env);
    let config = AlterableConfig::default()
        .with_name(StrBytes::from_string(key.to_string()))
        .with_config_operation(if value.is_some() { 0 } else { 1 })
        .with_value(value.map(|v| StrBytes::from_string(v.to_string())));
    let request = IncrementalAlterConfigsRequest::default().with_resources(vec![
        AlterConfigsResource::default()
            .with_resource_type(2)
            .with_resource_name(StrBytes::from_string(topic.to_string()))
            .with_configs(vec![config]),
    ]);
    let response = client
        .send(None, request)
        .await
        .unwrap_or_else(|e| panic!("alter {topic}: {e}"));
    for r in response.responses {
        assert_eq!(r.error_code, 0, "alter {topic}: {:?}", r.error_message);
    }
}

/// A read_committed consumer in `group` subscribed to `topic`, auto-commit off.
pub fn consumer(env: &Environment, group: &str, topic: &str) -> rdkafka::consumer::StreamConsumer {
    use rdkafka::consumer::Consumer;
    let consumer: rdkafka::consumer::StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", &env.bootstrap_servers)
        .set("group.id", group)
        .set("client.id", format!("{group}-consumer"))
        .set("isolation.level", "read_committed")
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "6000")
        .create()
        .unwrap_or_else(|e| panic!("consumer: {e}"));
    consumer
        .subscribe(&[topic])
        .unwrap_or_else(|e| panic!("subscribe {topic}: {e}"));
    consumer
}

/// Writes `count` committed records to `topic` with a transactional producer.
pub fn produce_committed(env: &Environment, topic: &str, count: usize) {
    use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", &env.bootstrap_servers)
        .set("transactional.id", format!("{topic}-seed"))
        .create()
        .unwrap_or_else(|e| panic!("producer: {e}"));
    let timeout = Duration::from_secs(20);
    producer
        .init_transactions(timeout)
        .unwrap_or_else(|e| panic!("init: {e}"));
    producer
        .begin_transaction()
        .unwrap_or_else(|e| panic!("begin: {e}"));
    for i in 0..count {
        let key = i.to_string();
        producer
            .send(BaseRecord::to(topic).key(&key).payload(&key))
            .unwrap_or_else(|(e, _)| panic!("send: {e}"));
    }
    producer
        .commit_transaction(timeout)
        .unwrap_or_else(|e| panic!("commit: {e}"));
}

/// Tests that switch partition verification off take turns.
static VERIFICATION: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn set_partition_verification(client: &exactly::kafka::WireClient, value: Option<&str>) {
    use kafka_protocol::messages::IncrementalAlterConfigsRequest;
    use kafka_protocol::messages::incremental_alter_configs_request::{
        AlterConfigsResource, AlterableConfig,
    };
    use kafka_protocol::protocol::StrBytes;
    // Resource type 4 (broker) with an empty name: the cluster-wide dynamic default.
    let request = IncrementalAlterConfigsRequest::default().with_resources(vec![
        AlterConfigsResource::default()
            .with_resource_type(4)
            .with_resource_name(StrBytes::new())
            .with_configs(vec![
                AlterableConfig::default()
                    .with_name(StrBytes::from_static_str(
                        "transaction.partition.verification.enable",
                    ))
                    .with_config_operation(if value.is_some() { 0 } else { 1 })
                    .with_value(value.map(|v| StrBytes::from_string(v.to_string()))),
            ]),
    ]);
    let response = client
        .send(None, request)
        .await
        .unwrap_or_else(|e| panic!("altering the broker default: {e}"));
    for r in &response.responses {
        assert_eq!(
            r.error_code, 0,
            "altering the broker default: {:?}",
            r.error_message
        );
    }
}

/// Leaves a HANGING transaction on `topic`-`partition`: a transactional batch no coordinator
/// tracks. Kafka 4 verifies transactional writes against the coordinator (KIP-890), so the
/// broker's `transaction.partition.verification.enable` is switched off for the moment of the
/// write (as on a broker before 3.8, or hit by the bugs KIP-890 closes) and restored after.
pub async fn hang_a_transaction(env: &Environment, topic: &str, partition: i32) -> (i64, i16) {
    let _turn = VERIFICATION.lock().await;
    let client = wire(env);
    let tp = exactly::kafka::TopicPartition::new(topic, partition);
    set_partition_verification(&client, Some("false")).await;
    let mut result = client.write_untracked_transactional_batch(&tp, 3).await;
    for _ in 0..100 {
        match &result {
            // INVALID_PRODUCER_ID_MAPPING: the setting has not reached the broker yet.
            Err(e) if e.code() == Some(49) => {
                tokio::time::sleep(Duration::from_millis(100)).await;
                result = client.write_untracked_transactional_batch(&tp, 3).await;
            }
            _ => break,
        }
    }
    set_partition_verification(&client, None).await;
    result.unwrap_or_else(|e| panic!("writing an untracked transactional batch: {e}"))
}

/// Leaves a transaction open on `topic` partition 0: `records` records written and not committed,
/// so the partition's last stable offset stays below its log end while the returned producer
/// lives (abort it when done).
pub fn leave_transaction_open(
    env: &Environment,
    topic: &str,
    records: usize,
) -> rdkafka::producer::ThreadedProducer<rdkafka::producer::DefaultProducerContext> {
    use rdkafka::producer::{BaseRecord, Producer};
    let producer = producer_from_properties(&BTreeMap::from([
        (
            "bootstrap.servers".to_string(),
            env.bootstrap_servers.clone(),
        ),
        ("transactional.id".to_string(), format!("{topic}-open")),
        ("transaction.timeout.ms".to_string(), "300000".to_string()),
    ]));
    let timeout = Duration::from_secs(20);
    producer
        .init_transactions(timeout)
        .unwrap_or_else(|e| panic!("init: {e}"));
    producer
        .begin_transaction()
        .unwrap_or_else(|e| panic!("begin: {e}"));
    for i in 0..records {
        let key = format!("open-{i}");
        producer
            .send(BaseRecord::to(topic).partition(0).key(&key).payload(&key))
            .unwrap_or_else(|(e, _)| panic!("send: {e}"));
    }
    producer
        .flush(timeout)
        .unwrap_or_else(|e| panic!("flush: {e}"));
    producer
}

/// A transactional rdkafka producer built from a rendered properties file.
pub fn producer_from_properties(
    properties: &BTreeMap<String, String>,
) -> rdkafka::producer::ThreadedProducer<rdkafka::producer::DefaultProducerContext> {
    let mut config = ClientConfig::new();
    for (k, v) in properties {
        config.set(k, v);
    }
    config
        .create()
        .unwrap_or_else(|e| panic!("producer from {properties:?}: {e}"))
}

/// Topics whose `Ready` is `True` for their current generation, of those in the namespace.
pub async fn ready_topics(topics: &Api<Topic>) -> Result<(usize, usize), String> {
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
pub async fn create_topics_at_once(
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
pub const MUTATIONS: [&str; 5] = [
    "CreateTopics",
    "CreatePartitions",
    "IncrementalAlterConfigs",
    "AlterConfigs",
    "DeleteTopics",
];

pub fn mutations(operator: &Operator) -> Vec<(&'static str, u64)> {
    MUTATIONS
        .iter()
        .map(|api| (*api, operator.metrics.kafka_requests_of(api)))
        .collect()
}
