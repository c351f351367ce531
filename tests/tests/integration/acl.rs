//! Least-privilege identities against the real broker: SCRAM users and ACLs made with the
//! operator's wire client (over the plaintext listener, whose ANONYMOUS principal is a super
//! user), then used by rdkafka clients logging in as those users on the SASL_SSL listener, where
//! the broker's `StandardAuthorizer` allows only what an ACL allows
//! (`allow.everyone.if.no.acl.found=false`).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use exactly::kafka::WireClient;
use exactly::kafka::acl::{AclBinding, AclOperation, AclPattern, AclResource};
use exactly::kafka::scram_credential::{MIN_ITERATIONS, ScramMechanism};
use exactly::kafka::{TopicPartition, WireError};
use exactly_testenv::{Environment, eventually, shared};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::types::RDKafkaErrorCode;

use crate::support::{consumer, create_kafka_topic, produce_committed, wire};

/// Bound on each Kafka client call and on waiting for a change to be in force.
const KAFKA_TIMEOUT: Duration = Duration::from_secs(30);

/// A password nobody guesses.
fn random_password() -> String {
    use exactly_testenv::env::random_u64;
    format!("{:016x}{:016x}", random_u64(), random_u64())
}

/// rdkafka settings of a client of the SASL_SSL listener logging in as `user`.
fn secure_config(
    env: &Environment,
    mechanism: ScramMechanism,
    user: &str,
    password: &str,
) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", &env.secure_bootstrap_servers)
        .set("security.protocol", "SASL_SSL")
        .set("sasl.mechanisms", mechanism.name())
        .set("sasl.username", user)
        .set("sasl.password", password)
        .set("ssl.ca.pem", &env.kafka_ca_pem);
    config
}

fn allow(
    principal: &str,
    operation: AclOperation,
    resource_type: AclResource,
    name: &str,
    pattern: AclPattern,
) -> AclBinding {
    AclBinding::allow(principal, operation, resource_type, name, pattern)
}

/// Creates `bindings`, each of which Kafka must accept.
async fn create_acls(admin: &WireClient, bindings: &[AclBinding]) {
    let results = admin
        .create_acls(bindings)
        .await
        .unwrap_or_else(|e| panic!("CreateAcls: {e}"));
    for (binding, result) in bindings.iter().zip(results) {
        result.unwrap_or_else(|e| panic!("creating {binding}: {e}"));
    }
}

/// Waits until the broker lists exactly `expected` (in any order) for `principal`.
async fn until_acls_are(admin: &WireClient, principal: &str, expected: &[AclBinding]) {
    let mut expected = expected.to_vec();
    expected.sort();
    eventually(
        &format!("the ACLs of {principal} to be {expected:?}"),
        KAFKA_TIMEOUT,
        || async {
            let listed = admin
                .acls_of_principal(principal)
                .await
                .map_err(|e| e.to_string())?;
            if listed == expected {
                Ok(())
            } else {
                Err(format!("{listed:?}"))
            }
        },
    )
    .await;
}

/// Waits until the broker knows `user`'s credentials as `expected` (absent: none).
async fn until_scram_users_are(
    admin: &WireClient,
    users: &[String],
    expected: BTreeMap<String, Vec<ScramMechanism>>,
) {
    eventually(
        &format!("the SCRAM credentials of {users:?} to be {expected:?}"),
        KAFKA_TIMEOUT,
        || async {
            let described = admin.scram_users(users).await.map_err(|e| e.to_string())?;
            if described == expected {
                Ok(())
            } else {
                Err(format!("{described:?}"))
            }
        },
    )
    .await;
}

/// Creates `user` with a random password for `mechanism`, waits until the broker knows it, and
/// returns the password.
async fn scram_user(admin: &WireClient, user: &str, mechanism: ScramMechanism) -> String {
    let password = random_password();
    admin
        .upsert_scram_user(user, mechanism, &password, MIN_ITERATIONS)
        .await
        .unwrap_or_else(|e| panic!("creating SCRAM user {user}: {e}"));
    let users = [user.to_string()];
    until_scram_users_are(admin, &users, [(user.to_string(), vec![mechanism])].into()).await;
    password
}

fn error_code<T>(result: &Result<T, KafkaError>) -> Option<RDKafkaErrorCode> {
    result
        .as_ref()
        .err()
        .and_then(KafkaError::rdkafka_error_code)
}

#[tokio::test]
async fn a_scram_user_with_a_producer_s_acls_commits_a_transaction_and_is_refused_another_topic_and_transactional_id()
 {
    let env = shared();
    let ns = env.namespace("acl-producer").await;
    let (allowed, refused) = (ns.unique("orders"), ns.unique("audit"));
    create_kafka_topic(env, &allowed, 1, &[]).await;
    create_kafka_topic(env, &refused, 1, &[]).await;
    let admin = wire(env);
    let user = ns.unique("writer");
    let password = scram_user(&admin, &user, ScramMechanism::Sha512).await;
    let principal = format!("User:{user}");
    let transactional_ids = format!("{user}-");
    let acls = [
        (
            AclOperation::Write,
            AclResource::Topic,
            &allowed,
            AclPattern::Literal,
        ),
        (
            AclOperation::Describe,
            AclResource::Topic,
            &allowed,
            AclPattern::Literal,
        ),
        (
            AclOperation::Write,
            AclResource::TransactionalId,
            &transactional_ids,
            AclPattern::Prefixed,
        ),
        (
            AclOperation::Describe,
            AclResource::TransactionalId,
            &transactional_ids,
            AclPattern::Prefixed,
        ),
    ]
    .map(|(operation, resource, name, pattern)| {
        allow(&principal, operation, resource, name, pattern)
    });
    create_acls(&admin, &acls).await;
    until_acls_are(&admin, &principal, &acls).await;

    let producer: FutureProducer = secure_config(env, ScramMechanism::Sha512, &user, &password)
        .set("transactional.id", format!("{user}-0"))
        .set("message.timeout.ms", "20000")
        .create()
        .unwrap_or_else(|e| panic!("producer of {user}: {e}"));
    producer
        .init_transactions(KAFKA_TIMEOUT)
        .unwrap_or_else(|e| panic!("{user} initialising transactions: {e}"));
    producer
        .begin_transaction()
        .unwrap_or_else(|e| panic!("begin: {e}"));
    producer
        .send(
            FutureRecord::to(&allowed).key("k").payload("committed"),
            KAFKA_TIMEOUT,
        )
        .await
        .unwrap_or_else(|(e, _)| panic!("{user} sending to {allowed}: {e}"));
    producer
        .commit_transaction(KAFKA_TIMEOUT)
        .unwrap_or_else(|e| panic!("{user} committing: {e}"));

    let reader = consumer(env, &ns.unique("check"), &allowed);
    let record = tokio::time::timeout(KAFKA_TIMEOUT, reader.recv())
        .await
        .unwrap_or_else(|_| panic!("no committed record in {allowed} within {KAFKA_TIMEOUT:?}"))
        .unwrap_or_else(|e| panic!("reading {allowed}: {e}"));
    assert_eq!(record.payload(), Some(&b"committed"[..]));

    producer
        .begin_transaction()
        .unwrap_or_else(|e| panic!("begin: {e}"));
    let sent = producer
        .send(
            FutureRecord::to(&refused).key("k").payload("refused"),
            KAFKA_TIMEOUT,
        )
        .await
        .map_err(|(e, _)| e);
    assert_eq!(
        error_code(&sent),
        Some(RDKafkaErrorCode::TopicAuthorizationFailed),
        "{user} sending to {refused}, for which it has no ACL: {sent:?}"
    );
    producer
        .abort_transaction(KAFKA_TIMEOUT)
        .unwrap_or_else(|e| panic!("the refused send's transaction is abortable: {e}"));

    let other_id = ns.unique("other-0");
    let stranger: FutureProducer = secure_config(env, ScramMechanism::Sha512, &user, &password)
        .set("transactional.id", &other_id)
        .create()
        .unwrap_or_else(|e| panic!("producer of {user}: {e}"));
    let init = stranger.init_transactions(KAFKA_TIMEOUT);
    assert_eq!(
        error_code(&init),
        Some(RDKafkaErrorCode::TransactionalIdAuthorizationFailed),
        "{user} initialising transactional id {other_id}, outside its prefix: {init:?}"
    );
}

#[tokio::test]
async fn a_scram_user_with_a_consumer_group_s_acls_reads_committed_and_commits_offsets_and_is_refused_another_group()
 {
    let env = shared();
    let ns = env.namespace("acl-consumer").await;
    let topic = ns.unique("orders");
    create_kafka_topic(env, &topic, 1, &[]).await;
    produce_committed(env, &topic, 3);
    let admin = wire(env);
    // SCRAM-SHA-256 here, SHA-512 for the producer: both salted passwords are right.
    let user = ns.unique("reader");
    let password = scram_user(&admin, &user, ScramMechanism::Sha256).await;
    let principal = format!("User:{user}");
    let (group, other_group) = (ns.unique("billing"), ns.unique("other"));
    let acls = [
        allow(
            &principal,
            AclOperation::Read,
            AclResource::Topic,
            &topic,
            AclPattern::Literal,
        ),
        allow(
            &principal,
            AclOperation::Describe,
            AclResource::Topic,
            &topic,
            AclPattern::Literal,
        ),
        allow(
            &principal,
            AclOperation::Read,
            AclResource::Group,
            &group,
            AclPattern::Literal,
        ),
    ];
    create_acls(&admin, &acls).await;
    until_acls_are(&admin, &principal, &acls).await;

    let secure_consumer = |group: &str| -> StreamConsumer {
        let consumer: StreamConsumer = secure_config(env, ScramMechanism::Sha256, &user, &password)
            .set("group.id", group)
            .set("isolation.level", "read_committed")
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

    let billing = secure_consumer(&group);
    let mut keys = Vec::new();
    let mut last_offset = None;
    while keys.len() < 3 {
        let record = tokio::time::timeout(KAFKA_TIMEOUT, billing.recv())
            .await
            .unwrap_or_else(|_| panic!("{user} in {group} got {keys:?} within {KAFKA_TIMEOUT:?}"))
            .unwrap_or_else(|e| panic!("{user} reading {topic} in {group}: {e}"));
        keys.push(String::from_utf8_lossy(record.key().unwrap_or_default()).into_owned());
        last_offset = Some(record.offset());
        if keys.len() == 3 {
            billing
                .commit_message(&record, CommitMode::Sync)
                .unwrap_or_else(|e| panic!("{user} committing in {group}: {e}"));
        }
    }
    assert_eq!(keys, ["0", "1", "2"]);
    assert_eq!(last_offset, Some(2));
    let committed = admin
        .committed_offsets(&group)
        .await
        .unwrap_or_else(|e| panic!("committed offsets of {group}: {e}"));
    assert_eq!(committed, [(TopicPartition::new(&topic, 0), 3)].into());

    let other = secure_consumer(&other_group);
    let deadline = Instant::now() + KAFKA_TIMEOUT;
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, other.recv()).await {
            Ok(Err(e))
                if e.rdkafka_error_code() == Some(RDKafkaErrorCode::GroupAuthorizationFailed) =>
            {
                break;
            }
            Ok(Err(e)) => seen.push(e.to_string()),
            Ok(Ok(record)) => panic!(
                "{user} read offset {} in {other_group}, for which it has no ACL",
                record.offset()
            ),
            Err(_) => panic!(
                "{user} in {other_group} was not refused within {KAFKA_TIMEOUT:?}; errors: {seen:?}"
            ),
        }
    }
}

#[tokio::test]
async fn acls_listed_for_a_principal_are_those_created_and_deleted_ones_are_gone() {
    let env = shared();
    let ns = env.namespace("acl-list").await;
    let admin = wire(env);
    let principal = format!("User:{}", ns.unique("lister"));
    let neighbour = format!("User:{}", ns.unique("neighbour"));
    let topic = ns.unique("orders");
    let group_prefix = ns.unique("billing-");
    let bindings = vec![
        allow(
            &principal,
            AclOperation::Read,
            AclResource::Topic,
            &topic,
            AclPattern::Literal,
        ),
        allow(
            &principal,
            AclOperation::Describe,
            AclResource::Topic,
            &topic,
            AclPattern::Literal,
        ),
        allow(
            &principal,
            AclOperation::Read,
            AclResource::Group,
            &group_prefix,
            AclPattern::Prefixed,
        ),
        allow(
            &principal,
            AclOperation::IdempotentWrite,
            AclResource::Cluster,
            exactly::kafka::acl::CLUSTER_RESOURCE_NAME,
            AclPattern::Literal,
        ),
    ];
    let neighbours = [allow(
        &neighbour,
        AclOperation::Read,
        AclResource::Topic,
        &topic,
        AclPattern::Literal,
    )];
    create_acls(&admin, &bindings).await;
    create_acls(&admin, &neighbours).await;
    until_acls_are(&admin, &principal, &bindings).await;
    until_acls_are(&admin, &neighbour, &neighbours).await;

    let (gone, kept) = bindings.split_at(2);
    let deleted = admin
        .delete_acls(gone)
        .await
        .unwrap_or_else(|e| panic!("deleting {gone:?}: {e}"));
    let mut expected = gone.to_vec();
    expected.sort();
    assert_eq!(deleted, expected, "DeleteAcls reports what it deleted");
    until_acls_are(&admin, &principal, kept).await;
    until_acls_are(&admin, &neighbour, &neighbours).await;

    let again = admin
        .delete_acls(gone)
        .await
        .unwrap_or_else(|e| panic!("deleting {gone:?} again: {e}"));
    assert_eq!(again, [], "nothing left to delete, and that is no error");
}

#[tokio::test]
async fn an_acl_kafka_refuses_is_reported_on_its_own_and_the_others_are_created() {
    let env = shared();
    let ns = env.namespace("acl-refused").await;
    let admin = wire(env);
    let principal = format!("User:{}", ns.unique("mixed"));
    let topic = ns.unique("orders");
    let good = allow(
        &principal,
        AclOperation::Read,
        AclResource::Topic,
        &topic,
        AclPattern::Literal,
    );
    let misnamed_cluster = allow(
        &principal,
        AclOperation::IdempotentWrite,
        AclResource::Cluster,
        &topic,
        AclPattern::Literal,
    );
    let untyped_principal = allow(
        &ns.unique("mixed"),
        AclOperation::Read,
        AclResource::Topic,
        &topic,
        AclPattern::Literal,
    );
    let bindings = [misnamed_cluster, good.clone(), untyped_principal];
    let results = admin
        .create_acls(&bindings)
        .await
        .unwrap_or_else(|e| panic!("CreateAcls: {e}"));
    let outcomes: Vec<Option<(i16, String)>> = results
        .iter()
        .map(|r| {
            r.as_ref()
                .err()
                .map(|e| (e.code().unwrap_or(0), e.to_string()))
        })
        .collect();
    match outcomes.as_slice() {
        [Some((42, cluster)), None, Some((42, principal_error))] => {
            assert!(
                cluster.contains(&bindings[0].to_string()) && cluster.contains("kafka-cluster"),
                "the refusal names the binding and says why: {cluster}"
            );
            assert!(
                principal_error.contains("principal"),
                "the refusal says why: {principal_error}"
            );
        }
        other => panic!("expected INVALID_REQUEST, created, INVALID_REQUEST; got {other:?}"),
    }
    until_acls_are(&admin, &principal, &[good]).await;
}

#[tokio::test]
async fn a_deleted_scram_user_can_no_longer_log_in() {
    let env = shared();
    let ns = env.namespace("acl-leaver").await;
    let admin = wire(env);
    let user = ns.unique("leaver");
    let nobody = ns.unique("nobody");
    let password = scram_user(&admin, &user, ScramMechanism::Sha512).await;
    let users = [user.clone(), nobody.clone()];
    let described = admin
        .scram_users(&users)
        .await
        .unwrap_or_else(|e| panic!("describing {users:?}: {e}"));
    assert_eq!(
        described,
        [(user.clone(), vec![ScramMechanism::Sha512])].into(),
        "{nobody}, who has no credential, is absent"
    );
    let login = |group: &str| -> BaseConsumer {
        secure_config(env, ScramMechanism::Sha512, &user, &password)
            .set("group.id", group)
            .create()
            .unwrap_or_else(|e| panic!("client of {user}: {e}"))
    };
    login(&ns.unique("before"))
        .fetch_metadata(None, KAFKA_TIMEOUT)
        .unwrap_or_else(|e| panic!("{user} logging in before its deletion: {e}"));

    admin
        .delete_scram_user(&user, ScramMechanism::Sha512)
        .await
        .unwrap_or_else(|e| panic!("deleting {user}: {e}"));
    until_scram_users_are(&admin, &users, BTreeMap::new()).await;
    admin
        .delete_scram_user(&user, ScramMechanism::Sha512)
        .await
        .unwrap_or_else(|e| panic!("deleting {user}, already gone: {e}"));

    let client = login(&ns.unique("after"));
    let metadata = client.fetch_metadata(None, Duration::from_secs(10));
    assert!(
        metadata.is_err(),
        "{user} logged in after its deletion: {:?}",
        metadata.map(|m| m.orig_broker_name().to_string())
    );
    let deadline = Instant::now() + KAFKA_TIMEOUT;
    let mut seen = Vec::new();
    loop {
        match client.poll(Duration::from_millis(200)) {
            Some(Err(e)) if e.rdkafka_error_code() == Some(RDKafkaErrorCode::Authentication) => {
                break;
            }
            Some(Err(e)) => seen.push(e.to_string()),
            _ => {}
        }
        assert!(
            Instant::now() < deadline,
            "no authentication error for {user} within {KAFKA_TIMEOUT:?}; errors: {seen:?}"
        );
    }
}

/// The client refuses a count Kafka would refuse, before hashing or sending: the address here
/// has no broker, so a request would have failed as unreachable.
#[tokio::test]
async fn too_few_iterations_are_refused_as_an_unacceptable_credential_without_asking_kafka() {
    let nowhere = WireClient::new("127.0.0.1:1", "exactly-test", Duration::from_secs(5));
    let error = nowhere
        .upsert_scram_user("weak", ScramMechanism::Sha256, "p", MIN_ITERATIONS - 1)
        .await
        .err()
        .unwrap_or_else(|| panic!("{} iterations were accepted", MIN_ITERATIONS - 1));
    match &error {
        WireError::Broker { code, name, .. } => {
            assert_eq!((*code, *name), (93, "UNACCEPTABLE_CREDENTIAL"), "{error}")
        }
        other => panic!("expected UNACCEPTABLE_CREDENTIAL, got {other:?}"),
    }
}
