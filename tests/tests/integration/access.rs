//! `spec.authentication` end to end: the operator creates a workload's SCRAM user and exactly
//! the ACLs of its path on the real broker (reached over SASL_SSL as a super user), renders the
//! credentials into the workload's Secret, keeps the ACLs per `driftPolicy` and removes user and
//! ACLs with the resource. rdkafka clients configured from the rendered Secret do their job and
//! are refused the rest by the broker's `StandardAuthorizer`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use exactly::api::{ConsumerGroup, Producer, Topic};
use exactly::controller::producer_config::parse_properties;
use exactly::kafka::WireClient;
use exactly::kafka::acl::{AclBinding, AclOperation, AclPattern, AclResource};
use exactly_testenv::{TestNamespace, eventually, shared};
use k8s_openapi::api::core::v1::Secret;
use kube::Client;
use kube::api::{Api, DeleteParams, ListParams};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer as _};
use rdkafka::types::RDKafkaErrorCode;

use crate::support::{
    condition, consumer, create, create_cluster, create_kafka_topic, create_secure_cluster,
    log_text, produce_committed, run_operator, wire,
};

const TIMEOUT: Duration = Duration::from_secs(60);
const KAFKA_TIMEOUT: Duration = Duration::from_secs(30);

/// A namespace with the operator and the cluster `secure` (the operator on the SASL_SSL
/// listener as a super user), and a Topic `orders` on it; returns the Kafka topic's name.
async fn setup(prefix: &str) -> (TestNamespace, Client, String) {
    let env = shared();
    let ns = env.namespace(prefix).await;
    let client = env.client().await.unwrap_or_else(|e| panic!("{e}"));
    run_operator(client.clone(), &ns.name);
    create_secure_cluster(&client, &ns.name, "secure", &env.kafka_password).await;
    let topic = ns.unique("orders");
    create::<Topic>(
        &client,
        &ns,
        "orders",
        serde_json::json!({"clusterRef": {"name": "secure"}, "topicName": topic, "partitions": 1}),
    )
    .await;
    until_topics_ready(&client, &ns, 1).await;
    (ns, client, topic)
}

/// Waits until the namespace's `count` Topics are all Ready.
async fn until_topics_ready(client: &Client, ns: &TestNamespace, count: usize) {
    let topics: Api<Topic> = Api::namespaced(client.clone(), &ns.name);
    eventually(&format!("{count} Topics Ready"), TIMEOUT, || async {
        match crate::support::ready_topics(&topics).await? {
            (ready, all) if ready == count && all == count => Ok(()),
            other => Err(format!("{other:?} (ready, all)")),
        }
    })
    .await;
}

/// Creates the Producer `writer` of `orders` with its own user (`authentication`).
async fn create_writer(client: &Client, ns: &TestNamespace, authentication: serde_json::Value) {
    create::<Producer>(
        client,
        ns,
        "writer",
        serde_json::json!({
            "clusterRef": {"name": "secure"},
            "topics": [{"name": "orders"}],
            "transactionalIdPrefix": ns.unique("writer"),
            "authentication": authentication,
        }),
    )
    .await;
}

/// Waits until the workload `K` `name` is Ready with its ACLs listed; returns them.
async fn ready_access<K>(client: &Client, ns: &TestNamespace, name: &str) -> Vec<String>
where
    K: kube::Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + serde::Serialize,
{
    let api: Api<K> = Api::namespaced(client.clone(), &ns.name);
    eventually(
        &format!("{} {name} Ready with its ACLs", K::kind(&())),
        TIMEOUT,
        || async {
            let object = api.get(name).await.map_err(|e| e.to_string())?;
            let value = serde_json::to_value(&object).map_err(|e| e.to_string())?;
            let status = &value["status"];
            let conditions: Vec<exactly::api::Condition> =
                serde_json::from_value(status["conditions"].clone()).unwrap_or_default();
            let ready = condition(&conditions, "Ready");
            let acls: Vec<String> =
                serde_json::from_value(status["access"]["acls"].clone()).unwrap_or_default();
            match ready {
                Some((s, _, _)) if s == "True" && !acls.is_empty() => Ok(acls),
                other => Err(format!("Ready {other:?}, access {}", status["access"])),
            }
        },
    )
    .await
}

/// The data of the Secret `name`, as text.
async fn secret_data(client: &Client, ns: &TestNamespace, name: &str) -> BTreeMap<String, String> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns.name);
    let secret = eventually(&format!("Secret {name}"), TIMEOUT, || async {
        match secrets.get_opt(name).await {
            Ok(Some(s)) => Ok(s),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    secret
        .data
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, String::from_utf8_lossy(&v.0).into_owned()))
        .collect()
}

/// rdkafka settings from a rendered properties file, trusting the Secret's `ca.crt`.
fn client_config(properties: &str, data: &BTreeMap<String, String>) -> ClientConfig {
    let mut config = ClientConfig::new();
    for (k, v) in parse_properties(properties) {
        config.set(k, v);
    }
    let ca = data
        .get("ca.crt")
        .unwrap_or_else(|| panic!("no ca.crt in the client Secret: {:?}", data.keys()));
    config.set("ssl.ca.pem", ca);
    config
}

fn error_code<T>(result: &Result<T, KafkaError>) -> Option<RDKafkaErrorCode> {
    result
        .as_ref()
        .err()
        .and_then(KafkaError::rdkafka_error_code)
}

/// Waits until the broker lists exactly `expected` (as `status.access.acls` shows ACLs) for
/// `principal`.
async fn until_broker_acls_are(admin: &WireClient, principal: &str, expected: &[String]) {
    let mut expected = expected.to_vec();
    expected.sort();
    eventually(
        &format!("the broker's ACLs of {principal} to be {expected:?}"),
        TIMEOUT,
        || async {
            let mut listed: Vec<String> = admin
                .acls_of_principal(principal)
                .await
                .map_err(|e| e.to_string())?
                .iter()
                .map(ToString::to_string)
                .collect();
            listed.sort();
            if listed == expected {
                Ok(())
            } else {
                Err(format!("{listed:?}"))
            }
        },
    )
    .await;
}

#[tokio::test]
async fn a_producer_s_own_user_commits_to_its_topic_and_is_refused_another_topic_and_transactional_id()
 {
    let env = shared();
    let (ns, client, topic) = setup("access-producer").await;
    let audit = ns.unique("audit");
    create_kafka_topic(env, &audit, 1, &[]).await;
    create_writer(&client, &ns, serde_json::json!({"type": "ScramSha512"})).await;
    let user = format!("{}.producer.writer", ns.name);
    let prefix = ns.unique("writer");
    let acls = ready_access::<Producer>(&client, &ns, "writer").await;
    assert_eq!(
        acls,
        [
            format!("Allow User:{user} Write Topic {topic} (literal)"),
            format!("Allow User:{user} Describe Topic {topic} (literal)"),
            format!("Allow User:{user} Write TransactionalId {prefix}- (prefixed)"),
            format!("Allow User:{user} Describe TransactionalId {prefix}- (prefixed)"),
        ]
    );
    let data = secret_data(&client, &ns, "writer-client").await;
    assert_eq!(data["username"], user);
    assert!(
        data["sasl.jaas.config"].contains(&format!("password=\"{}\"", data["password"])),
        "the Java login line carries the password"
    );
    let props = parse_properties(&data["instance-0.properties"]);
    assert_eq!(props["security.protocol"], "SASL_SSL");
    assert_eq!(props["sasl.mechanism"], "SCRAM-SHA-512");
    assert_eq!(props["transactional.id"], format!("{prefix}-0"));

    // The authorizers apply new ACLs moments after the controller took them: retry the start.
    let producer: FutureProducer = eventually(
        "the rendered producer to initialise its transactions",
        TIMEOUT,
        || async {
            let producer: FutureProducer = client_config(&data["instance-0.properties"], &data)
                .set("message.timeout.ms", "20000")
                .create()
                .map_err(|e| e.to_string())?;
            producer
                .init_transactions(KAFKA_TIMEOUT)
                .map_err(|e| e.to_string())?;
            Ok(producer)
        },
    )
    .await;
    producer
        .begin_transaction()
        .unwrap_or_else(|e| panic!("begin: {e}"));
    producer
        .send(
            FutureRecord::to(&topic).key("k").payload("committed"),
            KAFKA_TIMEOUT,
        )
        .await
        .unwrap_or_else(|(e, _)| panic!("{user} sending to {topic}: {e}"));
    producer
        .commit_transaction(KAFKA_TIMEOUT)
        .unwrap_or_else(|e| panic!("{user} committing: {e}"));
    let reader = consumer(env, &ns.unique("check"), &topic);
    let record = tokio::time::timeout(KAFKA_TIMEOUT, reader.recv())
        .await
        .unwrap_or_else(|_| panic!("no committed record in {topic} within {KAFKA_TIMEOUT:?}"))
        .unwrap_or_else(|e| panic!("reading {topic}: {e}"));
    assert_eq!(record.payload(), Some(&b"committed"[..]));

    producer
        .begin_transaction()
        .unwrap_or_else(|e| panic!("begin: {e}"));
    let sent = producer
        .send(
            FutureRecord::to(&audit).key("k").payload("refused"),
            KAFKA_TIMEOUT,
        )
        .await
        .map_err(|(e, _)| e);
    assert_eq!(
        error_code(&sent),
        Some(RDKafkaErrorCode::TopicAuthorizationFailed),
        "{user} sending to {audit}, not one of its topics: {sent:?}"
    );
    producer
        .abort_transaction(KAFKA_TIMEOUT)
        .unwrap_or_else(|e| panic!("abort: {e}"));

    let stranger: FutureProducer = client_config(&data["instance-0.properties"], &data)
        .set("transactional.id", ns.unique("other-0"))
        .create()
        .unwrap_or_else(|e| panic!("producer of {user}: {e}"));
    let init = stranger.init_transactions(KAFKA_TIMEOUT);
    assert_eq!(
        error_code(&init),
        Some(RDKafkaErrorCode::TransactionalIdAuthorizationFailed),
        "{user} with a transactional id outside its prefix: {init:?}"
    );
}

#[tokio::test]
async fn a_consumer_group_s_own_user_reads_committed_and_commits_and_is_refused_another_group() {
    let env = shared();
    let (ns, client, topic) = setup("access-group").await;
    produce_committed(env, &topic, 3);
    let group_id = ns.unique("billing");
    create::<ConsumerGroup>(
        &client,
        &ns,
        "billing",
        serde_json::json!({
            "clusterRef": {"name": "secure"},
            "groupId": group_id,
            "topics": [{"name": "orders"}],
            "authentication": {"type": "ScramSha256"},
        }),
    )
    .await;
    let user = format!("{}.consumergroup.billing", ns.name);
    let acls = ready_access::<ConsumerGroup>(&client, &ns, "billing").await;
    assert_eq!(
        acls,
        [
            format!("Allow User:{user} Read Topic {topic} (literal)"),
            format!("Allow User:{user} Describe Topic {topic} (literal)"),
            format!("Allow User:{user} Read Group {group_id} (literal)"),
        ]
    );
    let data = secret_data(&client, &ns, "billing-client").await;
    let props = parse_properties(&data["consumer.properties"]);
    assert_eq!(props["group.id"], group_id);
    assert_eq!(props["isolation.level"], "read_committed");
    assert_eq!(props["sasl.mechanism"], "SCRAM-SHA-256");

    let consumer_in = |group: &str| -> StreamConsumer {
        let consumer: StreamConsumer = client_config(&data["consumer.properties"], &data)
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            .set("session.timeout.ms", "6000")
            .create()
            .unwrap_or_else(|e| panic!("consumer of {user} in {group}: {e}"));
        consumer
            .subscribe(&[&topic])
            .unwrap_or_else(|e| panic!("subscribe {topic}: {e}"));
        consumer
    };
    let billing = consumer_in(&group_id);
    let deadline = Instant::now() + TIMEOUT;
    let mut keys = Vec::new();
    while keys.len() < 3 {
        let left = deadline.saturating_duration_since(Instant::now());
        let record = match tokio::time::timeout(left, billing.recv()).await {
            Err(_) => panic!("{user} in {group_id} got {keys:?} within {TIMEOUT:?}"),
            // ACLs reach the authorizers moments after they are created.
            Ok(Err(e)) if Instant::now() < deadline => {
                eprintln!("{user} reading {topic}: {e}; retrying");
                continue;
            }
            Ok(Err(e)) => panic!("{user} reading {topic}: {e}"),
            Ok(Ok(record)) => record,
        };
        keys.push(String::from_utf8_lossy(record.key().unwrap_or_default()).into_owned());
        if keys.len() == 3 {
            billing
                .commit_message(&record, CommitMode::Sync)
                .unwrap_or_else(|e| panic!("{user} committing in {group_id}: {e}"));
        }
    }
    assert_eq!(keys, ["0", "1", "2"]);
    let committed = wire(env)
        .committed_offsets(&group_id)
        .await
        .unwrap_or_else(|e| panic!("committed offsets of {group_id}: {e}"));
    assert_eq!(
        committed,
        [(exactly::kafka::TopicPartition::new(&topic, 0), 3)].into()
    );

    let other_group = ns.unique("other");
    let other = consumer_in(&other_group);
    let refused = tokio::time::timeout(KAFKA_TIMEOUT, async {
        loop {
            match other.recv().await {
                Err(e)
                    if e.rdkafka_error_code()
                        == Some(RDKafkaErrorCode::GroupAuthorizationFailed) =>
                {
                    return;
                }
                Err(_) => continue,
                Ok(record) => panic!(
                    "{user} read {topic} offset {} in {other_group}, a group it has no ACL for",
                    record.offset()
                ),
            }
        }
    })
    .await;
    assert!(
        refused.is_ok(),
        "{user} in {other_group} was not refused within {KAFKA_TIMEOUT:?}"
    );
}

/// An ACL on `topic` for `principal` that no workload's path needs.
fn stranger_acl(principal: &str, topic: &str) -> AclBinding {
    AclBinding::allow(
        principal,
        AclOperation::Alter,
        AclResource::Topic,
        topic,
        AclPattern::Literal,
    )
}

#[tokio::test]
async fn acls_changed_behind_the_operator_s_back_are_restored_under_revert() {
    let env = shared();
    let (ns, client, topic) = setup("access-revert").await;
    create_writer(&client, &ns, serde_json::json!({"type": "ScramSha512"})).await;
    let acls = ready_access::<Producer>(&client, &ns, "writer").await;
    let principal = format!("User:{}.producer.writer", ns.name);
    let admin = wire(env);
    until_broker_acls_are(&admin, &principal, &acls).await;
    let in_force = admin
        .acls_of_principal(&principal)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let removed = in_force
        .iter()
        .find(|a| a.resource_type == AclResource::Topic && a.operation == AclOperation::Write)
        .cloned()
        .unwrap_or_else(|| panic!("no Write on the topic among {in_force:?}"));
    admin
        .delete_acls(std::slice::from_ref(&removed))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let extra = stranger_acl(&principal, &topic);
    for result in admin
        .create_acls(std::slice::from_ref(&extra))
        .await
        .unwrap_or_else(|e| panic!("{e}"))
    {
        result.unwrap_or_else(|e| panic!("{e}"));
    }
    // Back to exactly the path's ACLs: the Write granted again, the stranger revoked.
    until_broker_acls_are(&admin, &principal, &acls).await;
}

#[tokio::test]
async fn acls_changed_behind_the_operator_s_back_are_reported_under_report() {
    let env = shared();
    let (ns, client, topic) = setup("access-report").await;
    create_writer(
        &client,
        &ns,
        serde_json::json!({"type": "ScramSha512", "driftPolicy": "Report"}),
    )
    .await;
    let acls = ready_access::<Producer>(&client, &ns, "writer").await;
    let principal = format!("User:{}.producer.writer", ns.name);
    let admin = wire(env);
    until_broker_acls_are(&admin, &principal, &acls).await;
    let extra = stranger_acl(&principal, &topic);
    for result in admin
        .create_acls(std::slice::from_ref(&extra))
        .await
        .unwrap_or_else(|e| panic!("{e}"))
    {
        result.unwrap_or_else(|e| panic!("{e}"));
    }
    let producers: Api<Producer> = Api::namespaced(client.clone(), &ns.name);
    let drifted = eventually("the extra ACL reported", TIMEOUT, || async {
        let p = producers.get("writer").await.map_err(|e| e.to_string())?;
        let status = p.status.unwrap_or_default();
        let access = status.access.clone().unwrap_or_default();
        match condition(&status.conditions, "Drifted") {
            Some((s, reason, message)) if s == "True" => Ok((reason, message, access.drift)),
            other => Err(format!("Drifted {other:?}, drift {:?}", access.drift)),
        }
    })
    .await;
    assert_eq!(drifted.0, "AclsDrifted");
    assert_eq!(drifted.2, [format!("extra: {extra}")]);
    assert!(drifted.1.contains(&extra.to_string()), "{}", drifted.1);
    // Left in force: Report changes nothing on the broker.
    let mut expected = acls.clone();
    expected.push(extra.to_string());
    until_broker_acls_are(&admin, &principal, &expected).await;
}

#[tokio::test]
async fn deleting_a_producer_removes_its_user_and_acls_from_the_broker() {
    let env = shared();
    let (ns, client, _) = setup("access-delete").await;
    create_writer(&client, &ns, serde_json::json!({"type": "ScramSha512"})).await;
    let acls = ready_access::<Producer>(&client, &ns, "writer").await;
    let user = format!("{}.producer.writer", ns.name);
    let principal = format!("User:{user}");
    let admin = wire(env);
    until_broker_acls_are(&admin, &principal, &acls).await;
    let users = [user.clone()];
    assert!(
        admin
            .scram_users(&users)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .contains_key(&user),
        "the user exists while the Producer does"
    );
    let producers: Api<Producer> = Api::namespaced(client.clone(), &ns.name);
    producers
        .delete("writer", &DeleteParams::default())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    eventually("the Producer to be gone", TIMEOUT, || async {
        match producers.get_opt("writer").await {
            Ok(None) => Ok(()),
            other => Err(format!(
                "{:?}",
                other.map(|p| p.map(|p| p.metadata.finalizers))
            )),
        }
    })
    .await;
    until_broker_acls_are(&admin, &principal, &[]).await;
    let left = admin
        .scram_users(&users)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(left.is_empty(), "credentials left for {user}: {left:?}");
}

#[tokio::test]
async fn authentication_on_a_cluster_reached_without_sasl_is_stalled_saying_what_to_do() {
    let env = shared();
    let ns = env.namespace("access-plain").await;
    let client = env.client().await.unwrap_or_else(|e| panic!("{e}"));
    run_operator(client.clone(), &ns.name);
    create_cluster(&client, &ns, env).await;
    create::<Producer>(
        &client,
        &ns,
        "writer",
        serde_json::json!({
            "clusterRef": {"name": "local"},
            "transactionalIdPrefix": ns.unique("writer"),
            "authentication": {"type": "ScramSha512"},
        }),
    )
    .await;
    let producers: Api<Producer> = Api::namespaced(client.clone(), &ns.name);
    let (reason, message) = eventually("the Producer stalled", TIMEOUT, || async {
        let p = producers.get("writer").await.map_err(|e| e.to_string())?;
        let status = p.status.unwrap_or_default();
        match (
            condition(&status.conditions, "Ready"),
            condition(&status.conditions, "Stalled"),
        ) {
            (Some((ready, reason, message)), Some((stalled, _, _)))
                if ready == "False" && stalled == "True" =>
            {
                Ok((reason, message))
            }
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    assert_eq!(reason, "AuthenticationUnavailable");
    assert!(message.contains("SASL_SSL"), "{message}");
    assert!(message.contains("KafkaCluster 'local'"), "{message}");
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns.name);
    assert!(
        secrets
            .get_opt("writer-client")
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .is_none(),
        "nothing is rendered without the credentials"
    );
}

#[tokio::test]
async fn no_password_appears_in_the_operator_s_log_events_or_objects() {
    let recording = log_text::record();
    let env = shared();
    let (ns, client, _) = setup("access-secrets").await;
    create_writer(&client, &ns, serde_json::json!({"type": "ScramSha512"})).await;
    create::<ConsumerGroup>(
        &client,
        &ns,
        "billing",
        serde_json::json!({
            "clusterRef": {"name": "secure"},
            "topics": [{"name": "orders"}],
            "authentication": {"type": "ScramSha256"},
        }),
    )
    .await;
    ready_access::<Producer>(&client, &ns, "writer").await;
    ready_access::<ConsumerGroup>(&client, &ns, "billing").await;
    // An ACL revoked behind the operator's back, restored: one more round of changes logged.
    let admin = wire(env);
    let principal = format!("User:{}.consumergroup.billing", ns.name);
    let in_force = admin
        .acls_of_principal(&principal)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    admin
        .delete_acls(&in_force[..1])
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    until_broker_acls_are(
        &admin,
        &principal,
        &in_force.iter().map(ToString::to_string).collect::<Vec<_>>(),
    )
    .await;

    let mut passwords = Vec::new();
    for secret in ["writer-client", "billing-client"] {
        let data = secret_data(&client, &ns, secret).await;
        let password = data
            .get("password")
            .cloned()
            .unwrap_or_else(|| panic!("no password in {secret}"));
        assert!(password.len() >= 32, "a long password in {secret}");
        passwords.push(password);
    }

    let mut searched = Vec::new();
    let log = log_text::text();
    searched.push((
        "the operator's log (debug, with the kube client's)".to_string(),
        log.clone(),
    ));
    let events: Api<k8s_openapi::api::core::v1::Event> = Api::namespaced(client.clone(), &ns.name);
    let events = events
        .list(&ListParams::default())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    searched.push((
        format!("{} Events", events.items.len()),
        serde_json::to_string(&events.items).unwrap_or_default(),
    ));
    macro_rules! objects {
        ($($kind:ty),*) => {$({
            let api: Api<$kind> = Api::namespaced(client.clone(), &ns.name);
            let list = api.list(&ListParams::default()).await.unwrap_or_else(|e| panic!("{e}"));
            searched.push((
                format!("{} {}", list.items.len(), stringify!($kind)),
                serde_json::to_string(&list.items).unwrap_or_default(),
            ));
        })*};
    }
    objects!(
        Producer,
        ConsumerGroup,
        Topic,
        exactly::api::KafkaCluster,
        k8s_openapi::api::core::v1::ConfigMap
    );
    // The search finds what is there: the users are named in the log and in the Events.
    for user in [
        format!("{}.producer.writer", ns.name),
        format!("{}.consumergroup.billing", ns.name),
    ] {
        assert!(log.contains(&user), "the log names {user}");
        assert!(searched[1].1.contains(&user), "an Event names {user}");
    }
    for (what, text) in &searched {
        for password in &passwords {
            assert!(
                !text.contains(password.as_str()),
                "a workload's password appears in {what}"
            );
        }
    }
    drop(recording);
}

#[tokio::test]
async fn a_pipeline_s_workers_log_in_as_their_own_user_allowed_exactly_their_path() {
    let env = shared();
    let (ns, client, input) = setup("access-pipeline").await;
    let output = ns.unique("charges");
    create::<Topic>(
        &client,
        &ns,
        "charges",
        serde_json::json!({"clusterRef": {"name": "secure"}, "topicName": output, "partitions": 1}),
    )
    .await;
    until_topics_ready(&client, &ns, 2).await;
    produce_committed(env, &input, 3);
    create::<exactly::api::Pipeline>(
        &client,
        &ns,
        "billing",
        serde_json::json!({
            "clusterRef": {"name": "secure"},
            "input": {"topics": [{"name": "orders"}]},
            "output": {"topicRef": {"name": "charges"}},
            "authentication": {"type": "ScramSha512"},
        }),
    )
    .await;
    let user = format!("{}.pipeline.billing", ns.name);
    let pipelines: Api<exactly::api::Pipeline> = Api::namespaced(client.clone(), &ns.name);
    let access = eventually("the Pipeline's ACLs in status", TIMEOUT, || async {
        let p = pipelines.get("billing").await.map_err(|e| e.to_string())?;
        match p.status.and_then(|s| s.access) {
            Some(access) if !access.acls.is_empty() => Ok(access),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    assert_eq!(access.user, user);
    let data = secret_data(&client, &ns, "billing-pipeline").await;
    let config: exactly_worker::WorkerConfig = serde_json::from_str(&data["pipeline.json"])
        .unwrap_or_else(|e| panic!("pipeline.json: {e}"));
    let group = config.group_id.clone();
    let prefix = config.transactional_id_prefix.clone();
    assert_eq!(
        access.acls,
        [
            // Sorted by resource: `charges` before `orders`.
            format!("Allow User:{user} Write Topic {output} (literal)"),
            format!("Allow User:{user} Describe Topic {output} (literal)"),
            format!("Allow User:{user} Read Topic {input} (literal)"),
            format!("Allow User:{user} Describe Topic {input} (literal)"),
            format!("Allow User:{user} Read Group {group} (literal)"),
            format!("Allow User:{user} Write TransactionalId {prefix}- (prefixed)"),
            format!("Allow User:{user} Describe TransactionalId {prefix}- (prefixed)"),
        ]
    );
    assert_eq!(
        config.client_properties.get("sasl.username"),
        Some(&user),
        "the workers log in as their own user, not as the operator"
    );
    assert_eq!(
        config.client_properties.get("sasl.password"),
        data.get("password")
    );

    // The worker's path with the rendered settings: read the input in the group, write the
    // output and commit the group's offsets in one transaction.
    let settings = || {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &config.bootstrap_servers);
        for (k, v) in &config.client_properties {
            c.set(k, v);
        }
        c
    };
    let reader: StreamConsumer = settings()
        .set("group.id", &group)
        .set("isolation.level", "read_committed")
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "6000")
        .create()
        .unwrap_or_else(|e| panic!("consumer: {e}"));
    reader
        .subscribe(&[&input])
        .unwrap_or_else(|e| panic!("subscribe: {e}"));
    let writer: FutureProducer =
        eventually("the worker's producer to initialise", TIMEOUT, || async {
            let p: FutureProducer = settings()
                .set("transactional.id", format!("{prefix}-0"))
                .set("message.timeout.ms", "20000")
                .create()
                .map_err(|e| e.to_string())?;
            p.init_transactions(KAFKA_TIMEOUT)
                .map_err(|e| e.to_string())?;
            Ok(p)
        })
        .await;
    writer
        .begin_transaction()
        .unwrap_or_else(|e| panic!("begin: {e}"));
    let deadline = Instant::now() + TIMEOUT;
    let mut read = 0;
    while read < 3 {
        let left = deadline.saturating_duration_since(Instant::now());
        let record = match tokio::time::timeout(left, reader.recv()).await {
            Err(_) => panic!("read {read} of 3 records of {input} within {TIMEOUT:?}"),
            Ok(Err(e)) if Instant::now() < deadline => {
                eprintln!("reading {input}: {e}; retrying");
                continue;
            }
            Ok(Err(e)) => panic!("reading {input}: {e}"),
            Ok(Ok(record)) => record,
        };
        writer
            .send(
                FutureRecord::to(&output)
                    .key(record.key().unwrap_or_default())
                    .payload("charged"),
                KAFKA_TIMEOUT,
            )
            .await
            .unwrap_or_else(|(e, _)| panic!("{user} writing {output}: {e}"));
        read += 1;
    }
    let positions = reader
        .position()
        .unwrap_or_else(|e| panic!("positions: {e}"));
    let metadata = reader
        .group_metadata()
        .unwrap_or_else(|| panic!("no group metadata"));
    writer
        .send_offsets_to_transaction(&positions, &metadata, KAFKA_TIMEOUT)
        .unwrap_or_else(|e| panic!("{user} committing {group}'s offsets in the transaction: {e}"));
    writer
        .commit_transaction(KAFKA_TIMEOUT)
        .unwrap_or_else(|e| panic!("{user} committing: {e}"));
    let committed = wire(env)
        .committed_offsets(&group)
        .await
        .unwrap_or_else(|e| panic!("committed offsets of {group}: {e}"));
    assert_eq!(
        committed,
        [(exactly::kafka::TopicPartition::new(&input, 0), 3)].into()
    );

    // Writing its own input is not its path.
    writer
        .begin_transaction()
        .unwrap_or_else(|e| panic!("begin: {e}"));
    let sent = writer
        .send(
            FutureRecord::to(&input).key("k").payload("x"),
            KAFKA_TIMEOUT,
        )
        .await
        .map_err(|(e, _)| e);
    // The broker refuses the partition to the transaction (AddPartitionsToTxn): the send fails
    // with that refusal or with the purge it causes, and so does the transaction.
    let commit = writer.commit_transaction(KAFKA_TIMEOUT);
    let refusal = format!("{sent:?} {commit:?}");
    assert!(
        matches!(
            error_code(&sent),
            Some(RDKafkaErrorCode::TopicAuthorizationFailed | RDKafkaErrorCode::PurgeQueue)
        ) && error_code(&commit) == Some(RDKafkaErrorCode::TopicAuthorizationFailed),
        "{user} writing its input {input}: {refusal}"
    );
}

#[tokio::test]
async fn a_producer_commits_a_group_s_offsets_in_its_transactions_only_once_granted_by_consumer_group_ref()
 {
    use rdkafka::consumer::BaseConsumer;
    use rdkafka::{Offset, TopicPartitionList};
    let env = shared();
    let (ns, client, input) = setup("access-offsets").await;
    let group_id = ns.unique("payment");
    create::<ConsumerGroup>(
        &client,
        &ns,
        "payment",
        serde_json::json!({"clusterRef": {"name": "secure"}, "groupId": group_id,
            "topics": [{"name": "orders"}]}),
    )
    .await;
    // The producer writes `orders` itself here: the point is the group's offsets.
    create_writer(&client, &ns, serde_json::json!({"type": "ScramSha512"})).await;
    let user = format!("{}.producer.writer", ns.name);
    ready_access::<Producer>(&client, &ns, "writer").await;
    let data = secret_data(&client, &ns, "writer-client").await;
    let mut offsets = TopicPartitionList::new();
    offsets
        .add_partition_offset(&input, 0, Offset::Offset(1))
        .unwrap_or_else(|e| panic!("{e}"));
    let group: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &env.bootstrap_servers)
        .set("group.id", &group_id)
        .create()
        .unwrap_or_else(|e| panic!("{e}"));
    let metadata = group
        .group_metadata()
        .unwrap_or_else(|| panic!("no group metadata"));
    let producer: FutureProducer = eventually("the producer to initialise", TIMEOUT, || async {
        let p: FutureProducer = client_config(&data["instance-0.properties"], &data)
            .create()
            .map_err(|e| e.to_string())?;
        p.init_transactions(KAFKA_TIMEOUT)
            .map_err(|e| e.to_string())?;
        Ok(p)
    })
    .await;
    // Without consumerGroupRef: the group is not the producer's to commit.
    producer
        .begin_transaction()
        .unwrap_or_else(|e| panic!("begin: {e}"));
    let refused = producer.send_offsets_to_transaction(&offsets, &metadata, KAFKA_TIMEOUT);
    assert_eq!(
        error_code(&refused),
        Some(RDKafkaErrorCode::GroupAuthorizationFailed),
        "{user} committing {group_id}'s offsets without consumerGroupRef: {refused:?}"
    );
    let _ = producer.abort_transaction(KAFKA_TIMEOUT);
    drop(producer);

    let producers: Api<Producer> = Api::namespaced(client.clone(), &ns.name);
    producers
        .patch(
            "writer",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(serde_json::json!({
                "spec": {"consumerGroupRef": {"name": "payment"}}
            })),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let group_acl = format!("Allow User:{user} Read Group {group_id} (literal)");
    eventually("the group's Read granted", TIMEOUT, || async {
        let p = producers.get("writer").await.map_err(|e| e.to_string())?;
        let acls = p.status.and_then(|s| s.access).unwrap_or_default().acls;
        if acls.contains(&group_acl) {
            Ok(())
        } else {
            Err(format!("{acls:?}"))
        }
    })
    .await;
    // The authorizers apply the new ACL moments later: a fresh producer retries until then.
    eventually(
        "the group's offsets committed in a transaction",
        TIMEOUT,
        || async {
            let p: FutureProducer = client_config(&data["instance-0.properties"], &data)
                .create()
                .map_err(|e| e.to_string())?;
            p.init_transactions(KAFKA_TIMEOUT)
                .map_err(|e| e.to_string())?;
            p.begin_transaction().map_err(|e| e.to_string())?;
            if let Err(e) = p.send_offsets_to_transaction(&offsets, &metadata, KAFKA_TIMEOUT) {
                let _ = p.abort_transaction(KAFKA_TIMEOUT);
                return Err(e.to_string());
            }
            p.commit_transaction(KAFKA_TIMEOUT)
                .map_err(|e| e.to_string())
        },
    )
    .await;
    let committed = wire(env)
        .committed_offsets(&group_id)
        .await
        .unwrap_or_else(|e| panic!("committed offsets of {group_id}: {e}"));
    assert_eq!(
        committed,
        [(exactly::kafka::TopicPartition::new(&input, 0), 1)].into()
    );
}
