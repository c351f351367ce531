//! Producer: the rendered client configuration, and the transactions the operator reports — with
//! real rdkafka producers, and a hanging transaction left on the real broker.

use std::collections::BTreeMap;
use std::time::Duration;

use exactly::api::{Producer, Topic};
use exactly::controller::producer_config::parse_properties;
use exactly_testenv::{TestNamespace, eventually, shared};
use k8s_openapi::api::core::v1::Secret;
use kube::Client;
use kube::api::{Api, Patch, PatchParams};
use rdkafka::producer::{BaseRecord, Producer as _};

use crate::support::{
    condition, create, create_cluster, hang_a_transaction, producer_from_properties, run_operator,
    topic_ready, wire,
};

const TIMEOUT: Duration = Duration::from_secs(60);
const KAFKA_TIMEOUT: Duration = Duration::from_secs(20);

/// A namespace with the operator, the cluster `local`, a Topic `orders` (one partition) and a
/// Producer `writer` writing to it; returns the Kafka topic's name and the Producer's prefix.
async fn setup(prefix: &str, spec: serde_json::Value) -> (TestNamespace, Client, String, String) {
    let env = shared();
    let ns = env.namespace(prefix).await;
    let client = env.client().await.unwrap_or_else(|e| panic!("{e}"));
    run_operator(client.clone(), &ns.name);
    create_cluster(&client, &ns, env).await;
    let kafka_topic = ns.unique("orders");
    let txn_prefix = ns.unique("writer");
    create::<Topic>(
        &client,
        &ns,
        "orders",
        serde_json::json!({"clusterRef": {"name": "local"}, "topicName": kafka_topic, "partitions": 1}),
    )
    .await;
    let mut full = serde_json::json!({
        "clusterRef": {"name": "local"},
        "topics": [{"name": "orders"}],
        "transactionalIdPrefix": txn_prefix,
    });
    if let (Some(full), Some(extra)) = (full.as_object_mut(), spec.as_object()) {
        full.extend(extra.clone());
    }
    create::<Producer>(&client, &ns, "writer", full).await;
    topic_ready(&client, &ns, "orders", TIMEOUT).await;
    (ns, client, kafka_topic, txn_prefix)
}

/// Waits for the Producer's status to satisfy `check`.
async fn wait_for<T>(
    client: &Client,
    ns: &TestNamespace,
    what: &str,
    check: impl Fn(&Producer) -> Result<T, String>,
) -> T {
    let producers: Api<Producer> = Api::namespaced(client.clone(), &ns.name);
    eventually(what, TIMEOUT, || async {
        let p = producers.get("writer").await.map_err(|e| e.to_string())?;
        check(&p)
    })
    .await
}

async fn instance_properties(
    client: &Client,
    ns: &TestNamespace,
    n: i32,
) -> BTreeMap<String, String> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns.name);
    let secret = eventually("the client Secret", TIMEOUT, || async {
        match secrets.get_opt("writer-client").await {
            Ok(Some(s)) => Ok(s),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    let data = secret.data.unwrap_or_default();
    let file = data
        .get(&format!("instance-{n}.properties"))
        .unwrap_or_else(|| panic!("no instance-{n}.properties in {:?}", data.keys()));
    parse_properties(&String::from_utf8_lossy(&file.0))
}

/// A transactional producer built from `props`, with one record sent in a transaction it has not
/// ended.
fn open_transaction(
    props: &BTreeMap<String, String>,
    topic: &str,
) -> rdkafka::producer::ThreadedProducer<rdkafka::producer::DefaultProducerContext> {
    let producer = producer_from_properties(props);
    producer
        .init_transactions(KAFKA_TIMEOUT)
        .unwrap_or_else(|e| panic!("init: {e}"));
    producer
        .begin_transaction()
        .unwrap_or_else(|e| panic!("begin: {e}"));
    producer
        .send(BaseRecord::to(topic).key("k").payload("order-1"))
        .unwrap_or_else(|(e, _)| panic!("send: {e}"));
    producer
}

#[tokio::test]
async fn the_client_secret_holds_exactly_the_expected_properties() {
    let env = shared();
    let (ns, client, _, prefix) = setup(
        "producer-secret",
        serde_json::json!({"instances": 2, "transactionTimeout": "30s", "clientOverrides": {"linger.ms": "5"}}),
    )
    .await;
    for n in 0..2 {
        let props = instance_properties(&client, &ns, n).await;
        assert_eq!(
            props,
            BTreeMap::from([
                (
                    "bootstrap.servers".to_string(),
                    env.bootstrap_servers.clone()
                ),
                ("enable.idempotence".into(), "true".into()),
                ("acks".into(), "all".into()),
                ("max.in.flight.requests.per.connection".into(), "5".into()),
                ("transactional.id".into(), format!("{prefix}-{n}")),
                ("transaction.timeout.ms".into(), "30000".into()),
                ("linger.ms".into(), "5".into()),
            ])
        );
    }
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns.name);
    let secret = secrets
        .get("writer-client")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let owner = secret.metadata.owner_references.unwrap_or_default();
    assert_eq!(
        owner.first().map(|o| (o.kind.as_str(), o.name.as_str())),
        Some(("Producer", "writer"))
    );
}

#[tokio::test]
async fn a_client_secret_edited_or_deleted_by_hand_is_written_again() {
    let (ns, client, _, _) = setup("producer-secret-restore", serde_json::json!({})).await;
    let expected = instance_properties(&client, &ns, 0).await;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns.name);
    let restored = |what: &'static str| {
        let secrets = secrets.clone();
        let expected = expected.clone();
        eventually(what, TIMEOUT, move || {
            let secrets = secrets.clone();
            let expected = expected.clone();
            async move {
                let secret = secrets
                    .get_opt("writer-client")
                    .await
                    .map_err(|e| e.to_string())?
                    .ok_or("no Secret")?;
                let props = secret
                    .data
                    .unwrap_or_default()
                    .get("instance-0.properties")
                    .map(|f| parse_properties(&String::from_utf8_lossy(&f.0)))
                    .ok_or("no instance-0.properties")?;
                if props == expected {
                    Ok(())
                } else {
                    Err(format!("{props:?}"))
                }
            }
        })
    };

    let edit = serde_json::json!({"data": {
        "instance-0.properties": k8s_openapi::ByteString(b"acks=1\n".to_vec()),
    }});
    secrets
        .patch(
            "writer-client",
            &PatchParams::default(),
            &Patch::Merge(edit),
        )
        .await
        .unwrap_or_else(|e| panic!("edit the Secret: {e}"));
    restored("the edited Secret to be written again").await;

    secrets
        .delete("writer-client", &Default::default())
        .await
        .unwrap_or_else(|e| panic!("delete the Secret: {e}"));
    restored("the deleted Secret to be written again").await;
}

#[tokio::test]
async fn a_weakening_override_is_rejected_naming_the_key() {
    let (ns, client, _, _) = setup(
        "producer-weak",
        serde_json::json!({"clientOverrides": {"acks": "1", "compression.type": "zstd"}}),
    )
    .await;
    let message = wait_for(&client, &ns, "the override to be refused", |p| {
        let status = p.status.clone().unwrap_or_default();
        match condition(&status.conditions, "Ready") {
            Some((s, reason, message)) if s == "False" && reason == "WeakensGuarantee" => {
                Ok(message)
            }
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    assert!(message.contains("acks"), "{message}");
    assert!(!message.contains("compression.type"), "{message}");
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns.name);
    assert!(
        secrets
            .get_opt("writer-client")
            .await
            .ok()
            .flatten()
            .is_none()
    );
}

#[tokio::test]
async fn a_producer_configured_from_the_secret_commits_and_its_transaction_is_reported() {
    let (ns, client, topic, prefix) = setup("producer-commit", serde_json::json!({})).await;
    let props = instance_properties(&client, &ns, 0).await;
    let producer = open_transaction(&props, &topic);
    producer
        .commit_transaction(KAFKA_TIMEOUT)
        .unwrap_or_else(|e| panic!("commit: {e}"));

    let env = shared();
    let w = wire(env);
    let tp = exactly::kafka::TopicPartition::new(topic.clone(), 0);
    // One record and its commit marker become stable (markers are written just after the commit
    // returns).
    eventually("the committed record to be stable", TIMEOUT, || async {
        let offsets = w
            .list_offsets(
                &[(tp.clone(), exactly::kafka::OffsetSpec::Latest)],
                exactly::kafka::Isolation::ReadCommitted,
            )
            .await
            .map_err(|e| e.to_string())?;
        match offsets.get(&tp) {
            Some(2) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    let id = format!("{prefix}-0");
    let state = wait_for(&client, &ns, "the committed transaction in status", |p| {
        let status = p.status.clone().unwrap_or_default();
        match status
            .transactions
            .iter()
            .find(|t| t.transactional_id == id)
        {
            // Only CompleteCommit proves the commit: a transactional id that has initialized
            // but never committed shows `Empty` too.
            Some(t) if t.state == "CompleteCommit" => Ok(t.clone()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    assert_eq!(state.age_seconds, None);
}

#[tokio::test]
async fn a_transaction_left_open_shows_ongoing_with_its_age() {
    let (ns, client, topic, prefix) = setup("producer-open", serde_json::json!({})).await;
    let props = instance_properties(&client, &ns, 0).await;
    let producer = open_transaction(&props, &topic);
    producer
        .flush(KAFKA_TIMEOUT)
        .unwrap_or_else(|e| panic!("flush: {e}"));

    let id = format!("{prefix}-0");
    let (state, open) = wait_for(&client, &ns, "the open transaction in status", |p| {
        let status = p.status.clone().unwrap_or_default();
        match status
            .transactions
            .iter()
            .find(|t| t.transactional_id == id)
        {
            Some(t) if t.state == "Ongoing" && t.age_seconds.is_some() => {
                Ok((t.clone(), status.open_transactions))
            }
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    assert_eq!(open, Some(1));
    assert_eq!(state.partitions, [format!("{topic}-0")]);
    assert!(state.started.is_some());
    assert_eq!(state.timeout_ms, 60_000);
    producer
        .abort_transaction(KAFKA_TIMEOUT)
        .unwrap_or_else(|e| panic!("abort: {e}"));
}

#[tokio::test]
async fn a_hanging_transaction_is_reported_and_the_guarded_abort_clears_it() {
    let env = shared();
    let (ns, client, topic, _) = setup("producer-hanging", serde_json::json!({})).await;
    wait_for(&client, &ns, "the Producer to be Ready", |p| {
        let status = p.status.clone().unwrap_or_default();
        match condition(&status.conditions, "Ready") {
            Some((s, _, _)) if s == "True" => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    let (producer_id, _) = hang_a_transaction(env, &topic, 0).await;
    let partition = format!("{topic}-0");
    let hanging = wait_for(&client, &ns, "the hanging transaction in status", |p| {
        let status = p.status.clone().unwrap_or_default();
        match (
            condition(&status.conditions, "HangingTransactions"),
            status.hanging.first(),
        ) {
            (Some((s, _, _)), Some(h)) if s == "True" => Ok(h.clone()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    assert_eq!(hanging.partition, partition);
    assert_eq!(hanging.producer_id, producer_id);
    assert_eq!(hanging.start_offset, 0);

    let producers: Api<Producer> = Api::namespaced(client.clone(), &ns.name);
    let patch = serde_json::json!({"metadata": {"annotations": {"exactly.dev/abort-transaction": partition}}});
    producers
        .patch("writer", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let producer = wait_for(
        &client,
        &ns,
        "the abort to be recorded and the hang cleared",
        |p| {
            let status = p.status.clone().unwrap_or_default();
            let annotated = p
                .metadata
                .annotations
                .as_ref()
                .is_some_and(|a| a.contains_key("exactly.dev/abort-transaction"));
            match &status.last_abort {
                Some(a) if a.result == "Aborted" && status.hanging.is_empty() && !annotated => {
                    Ok(p.clone())
                }
                other => Err(format!(
                    "{other:?} hanging={:?} annotated={annotated}",
                    status.hanging
                )),
            }
        },
    )
    .await;
    let status = producer.status.unwrap_or_default();
    assert_eq!(
        condition(&status.conditions, "HangingTransactions").map(|c| c.0),
        Some("False".to_string())
    );
    let offsets = |isolation| {
        let w = wire(env);
        let tp = exactly::kafka::TopicPartition::new(topic.clone(), 0);
        async move {
            w.list_offsets(&[(tp, exactly::kafka::OffsetSpec::Latest)], isolation)
                .await
                .unwrap_or_else(|e| panic!("{e}"))
                .into_values()
                .next()
        }
    };
    let stable = offsets(exactly::kafka::Isolation::ReadCommitted).await;
    let end = offsets(exactly::kafka::Isolation::ReadUncommitted).await;
    assert_eq!(stable, end, "the last stable offset is no longer pinned");
}

#[tokio::test]
async fn the_guarded_abort_refuses_on_a_healthy_transaction() {
    let (ns, client, topic, _) = setup("producer-refuse", serde_json::json!({})).await;
    let props = instance_properties(&client, &ns, 0).await;
    let producer = open_transaction(&props, &topic);
    producer
        .flush(KAFKA_TIMEOUT)
        .unwrap_or_else(|e| panic!("flush: {e}"));

    let producers: Api<Producer> = Api::namespaced(client.clone(), &ns.name);
    let patch = serde_json::json!({"metadata": {"annotations": {"exactly.dev/abort-transaction": format!("{topic}-0")}}});
    producers
        .patch("writer", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let abort = wait_for(&client, &ns, "the abort request to be refused", |p| match p
        .status
        .clone()
        .unwrap_or_default()
        .last_abort
    {
        Some(a) if a.result == "Refused" => Ok(a),
        other => Err(format!("{other:?}")),
    })
    .await;
    assert!(
        abort.message.contains("tracked by its coordinator"),
        "{}",
        abort.message
    );
    // The transaction was left alone: its producer still commits it.
    producer
        .commit_transaction(KAFKA_TIMEOUT)
        .unwrap_or_else(|e| panic!("commit after a refused abort: {e}"));
}

#[tokio::test]
async fn a_second_producer_claiming_the_same_prefix_reports_resource_conflict() {
    let (ns, client, _, prefix) = setup("producer-conflict", serde_json::json!({})).await;
    wait_for(
        &client,
        &ns,
        "the first Producer to be Ready",
        |p| match condition(&p.status.clone().unwrap_or_default().conditions, "Ready") {
            Some((s, _, _)) if s == "True" => Ok(()),
            other => Err(format!("{other:?}")),
        },
    )
    .await;
    // creationTimestamp has one-second resolution: make the second one unambiguously younger.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    create::<Producer>(
        &client,
        &ns,
        "copycat",
        serde_json::json!({"clusterRef": {"name": "local"}, "transactionalIdPrefix": prefix}),
    )
    .await;
    let producers: Api<Producer> = Api::namespaced(client.clone(), &ns.name);
    let message = eventually("the conflict to be reported", TIMEOUT, || async {
        let p = producers.get("copycat").await.map_err(|e| e.to_string())?;
        match condition(&p.status.unwrap_or_default().conditions, "Ready") {
            Some((_, reason, message)) if reason == "ResourceConflict" => Ok(message),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    assert!(
        message.contains(&format!("{}/writer", ns.name)),
        "{message}"
    );
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns.name);
    assert!(
        secrets
            .get_opt("copycat-client")
            .await
            .ok()
            .flatten()
            .is_none()
    );
}

#[tokio::test]
async fn a_producer_run_by_a_statefulset_gets_one_properties_file_per_replica_and_follows_scaling()
{
    use k8s_openapi::api::apps::v1::StatefulSet;
    let (ns, client, _, prefix) = setup(
        "producer-sts",
        serde_json::json!({"statefulSetRef": {"name": "writer"}}),
    )
    .await;
    wait_for(
        &client,
        &ns,
        "the missing StatefulSet to be reported",
        |p| match condition(&p.status.clone().unwrap_or_default().conditions, "Ready") {
            Some((_, reason, _)) if reason == "StatefulSetNotFound" => Ok(()),
            other => Err(format!("{other:?}")),
        },
    )
    .await;
    let sets: Api<StatefulSet> = Api::namespaced(client.clone(), &ns.name);
    let set: StatefulSet = serde_json::from_value(serde_json::json!({
        "apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "writer"},
        "spec": {
            "replicas": 2, "serviceName": "writer",
            "selector": {"matchLabels": {"app": "writer"}},
            "template": {"metadata": {"labels": {"app": "writer"}},
                "spec": {"containers": [{"name": "app", "image": "example/orders-writer:1"}]}},
        },
    }))
    .unwrap_or_else(|e| panic!("{e}"));
    sets.create(&Default::default(), &set)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns.name);
    let keys = |want: usize| {
        let secrets = secrets.clone();
        async move {
            eventually(&format!("{want} instance files"), TIMEOUT, || async {
                let secret = secrets
                    .get_opt("writer-client")
                    .await
                    .map_err(|e| e.to_string())?;
                let keys: Vec<String> = secret
                    .and_then(|s| s.data)
                    .map(|d| d.keys().cloned().collect())
                    .unwrap_or_default();
                if keys.len() == want {
                    Ok(keys)
                } else {
                    Err(format!("{keys:?}"))
                }
            })
            .await
        }
    };
    assert_eq!(
        keys(2).await,
        ["instance-0.properties", "instance-1.properties"]
    );
    let patch = serde_json::json!({"spec": {"replicas": 3}});
    sets.patch("writer", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(keys(3).await.len(), 3);
    let props = instance_properties(&client, &ns, 2).await;
    assert_eq!(props.get("transactional.id"), Some(&format!("{prefix}-2")));
    wait_for(&client, &ns, "status to show 3 instances", |p| {
        match p.status.clone().unwrap_or_default().instances {
            Some(3) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
}
