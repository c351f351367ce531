//! Quiet status (DESIGN §4): with nothing changing, the operator writes nothing (status or
//! children: Secrets, StatefulSets, a Pipeline's Producer and ConsumerGroup) and emits no
//! Events, however often it looks. Runs two minutes at the tests' 2-second refresh interval:
//! about sixty observations of the cluster.

use std::collections::BTreeMap;
use std::time::Duration;

use exactly::api::{ConsumerGroup, KafkaCluster, Pipeline, Producer, Topic};
use exactly::kafka::TopicPartition;
use exactly_testenv::{eventually, shared};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Event, Secret};
use kube::api::{Api, ListParams};
use kube::{Client, Resource, ResourceExt};

use crate::support::{condition, create, create_cluster, produce_committed, run_operator, wire};

const QUIET_FOR: Duration = Duration::from_secs(120);

/// resourceVersion of every object of kind `K` in the namespace, by name.
async fn versions<K>(client: &Client, ns: &str) -> BTreeMap<String, String>
where
    K: kube::Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let api: Api<K> = Api::namespaced(client.clone(), ns);
    api.list(&ListParams::default())
        .await
        .unwrap_or_else(|e| panic!("list: {e}"))
        .items
        .into_iter()
        .map(|o| (o.name_any(), o.resource_version().unwrap_or_default()))
        .collect()
}

async fn all_versions(client: &Client, ns: &str) -> Vec<BTreeMap<String, String>> {
    vec![
        versions::<KafkaCluster>(client, ns).await,
        versions::<Topic>(client, ns).await,
        versions::<Producer>(client, ns).await,
        versions::<ConsumerGroup>(client, ns).await,
        versions::<Pipeline>(client, ns).await,
        versions::<StatefulSet>(client, ns).await,
        versions::<Secret>(client, ns).await,
    ]
}

/// A fingerprint of every Event in the namespace. kube-runtime's recorder folds a repeated
/// identical Event into the existing object (a PATCH of `series`, `count` left unset), so the
/// object's resourceVersion and `series.count` are part of it: a re-emitted Event changes the
/// fingerprint even though its reason, object, count and message stay the same.
async fn events(client: &Client, ns: &str) -> Vec<String> {
    let api: Api<Event> = Api::namespaced(client.clone(), ns);
    api.list(&ListParams::default())
        .await
        .unwrap_or_else(|e| panic!("list events: {e}"))
        .items
        .into_iter()
        .map(|e| {
            format!(
                "{} {} rv={} x{} series={}: {}",
                e.reason.clone().unwrap_or_default(),
                e.involved_object.name.clone().unwrap_or_default(),
                e.resource_version().unwrap_or_default(),
                e.count.unwrap_or(1),
                e.series.as_ref().and_then(|s| s.count).unwrap_or(0),
                e.message.clone().unwrap_or_default()
            )
        })
        .collect()
}

/// The fingerprint the quiet test used before, without resourceVersion and `series.count`: kept
/// only to show, in the negative control, what it missed.
async fn events_by_reason_name_count_message(client: &Client, ns: &str) -> Vec<String> {
    let api: Api<Event> = Api::namespaced(client.clone(), ns);
    api.list(&ListParams::default())
        .await
        .unwrap_or_else(|e| panic!("list events: {e}"))
        .items
        .into_iter()
        .map(|e| {
            format!(
                "{} {} x{}: {}",
                e.reason.unwrap_or_default(),
                e.involved_object.name.unwrap_or_default(),
                e.count.unwrap_or(1),
                e.message.unwrap_or_default()
            )
        })
        .collect()
}

/// Negative control of the quiet test's Event check: the operator's recorder publishing the
/// same Event again (as a refresh that wrongly re-emitted it would) changes the fingerprint.
#[tokio::test]
async fn an_event_published_again_changes_the_event_fingerprint() {
    use kube::runtime::events::{Event as Emitted, EventType, Recorder, Reporter};
    let env = shared();
    let ns = env.namespace("quiet-control").await;
    let client = env.client().await.unwrap_or_else(|e| panic!("{e}"));
    create_cluster(&client, &ns, env).await;
    let clusters: Api<KafkaCluster> = Api::namespaced(client.clone(), &ns.name);
    let cluster = clusters
        .get("local")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let recorder = Recorder::new(client.clone(), Reporter::from("exactly-operator"));
    let event = Emitted {
        type_: EventType::Warning,
        reason: "RulesFailed".into(),
        note: Some("1 rule(s) failed".into()),
        action: "ExactlyOnceReady".into(),
        secondary: None,
    };
    let reference = cluster.object_ref(&());
    recorder
        .publish(&event, &reference)
        .await
        .unwrap_or_else(|e| panic!("publish: {e}"));
    let first = events(&client, &ns.name).await;
    let first_old = events_by_reason_name_count_message(&client, &ns.name).await;
    assert_eq!(first.len(), 1, "{first:?}");
    recorder
        .publish(&event, &reference)
        .await
        .unwrap_or_else(|e| panic!("publish again: {e}"));
    let second = events(&client, &ns.name).await;
    let second_old = events_by_reason_name_count_message(&client, &ns.name).await;
    assert_ne!(first, second, "the repeated Event went unseen");
    assert_eq!(
        first_old, second_old,
        "the old fingerprint sees the repeat after all; the control shows nothing"
    );
}

#[tokio::test]
async fn with_nothing_changing_for_two_minutes_there_are_no_status_writes_and_no_events() {
    let env = shared();
    let ns = env.namespace("quiet").await;
    let client = env.client().await.unwrap_or_else(|e| panic!("{e}"));
    run_operator(client.clone(), &ns.name);
    create_cluster(&client, &ns, env).await;
    let topic_names: Vec<String> = (0..3).map(|i| ns.unique(&format!("t{i}"))).collect();
    for (i, name) in topic_names.iter().enumerate() {
        create::<Topic>(
            &client,
            &ns,
            &format!("t{i}"),
            serde_json::json!({"clusterRef": {"name": "local"}, "topicName": name, "partitions": 2,
                "config": {"retention.ms": "3600000"}}),
        )
        .await;
    }
    for i in 0..2 {
        create::<Producer>(
            &client,
            &ns,
            &format!("p{i}"),
            serde_json::json!({"clusterRef": {"name": "local"}, "topics": [{"name": "t0"}],
                "transactionalIdPrefix": ns.unique(&format!("p{i}")), "instances": 2}),
        )
        .await;
    }
    for i in 0..2 {
        create::<ConsumerGroup>(
            &client,
            &ns,
            &format!("g{i}"),
            serde_json::json!({"clusterRef": {"name": "local"}, "groupId": ns.unique(&format!("g{i}")),
                "topics": [{"name": "t0"}, {"name": "t1"}], "lagObjective": {"maxLag": 100}}),
        )
        .await;
    }
    // A Pipeline from t1 to t2: its workers' StatefulSet, Secret, Producer and ConsumerGroup are
    // applied on every reconcile, and must not be written when nothing changed.
    create::<Pipeline>(
        &client,
        &ns,
        "copy",
        serde_json::json!({"clusterRef": {"name": "local"}, "input": {"topics": [{"name": "t1"}]},
            "output": {"topicRef": {"name": "t2"}}, "replicas": 2}),
    )
    .await;
    // Something to report: records, and a group that committed part of them.
    let topics: Api<Topic> = Api::namespaced(client.clone(), &ns.name);
    eventually("the topics to exist", Duration::from_secs(60), || async {
        let t = topics.get("t0").await.map_err(|e| e.to_string())?;
        t.status
            .and_then(|s| s.partitions)
            .ok_or("no partitions yet".to_string())
    })
    .await;
    produce_committed(env, &topic_names[0], 20);
    wire(env)
        .commit_offsets(
            &ns.unique("g0"),
            &BTreeMap::from([(TopicPartition::new(topic_names[0].clone(), 0), 3)]),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));

    // Settle: every resource Ready, and the group's commit observed.
    let groups: Api<ConsumerGroup> = Api::namespaced(client.clone(), &ns.name);
    let producers: Api<Producer> = Api::namespaced(client.clone(), &ns.name);
    eventually(
        "every resource to settle",
        Duration::from_secs(90),
        || async {
            let mut not_ready = Vec::new();
            for t in topics
                .list(&ListParams::default())
                .await
                .map_err(|e| e.to_string())?
                .items
            {
                let s = t.status.clone().unwrap_or_default();
                if condition(&s.conditions, "Ready").map(|c| c.0) != Some("True".into()) {
                    not_ready.push(t.name_any());
                }
            }
            for p in producers
                .list(&ListParams::default())
                .await
                .map_err(|e| e.to_string())?
                .items
            {
                let s = p.status.clone().unwrap_or_default();
                if condition(&s.conditions, "Ready").map(|c| c.0) != Some("True".into()) {
                    not_ready.push(p.name_any());
                }
            }
            for g in groups
                .list(&ListParams::default())
                .await
                .map_err(|e| e.to_string())?
                .items
            {
                let s = g.status.clone().unwrap_or_default();
                let committed = s.partitions.iter().any(|p| p.committed == Some(3));
                if condition(&s.conditions, "Ready").map(|c| c.0) != Some("True".into())
                    || (g.name_any() == "g0" && !committed)
                {
                    not_ready.push(g.name_any());
                }
            }
            let pipelines: Api<Pipeline> = Api::namespaced(client.clone(), &ns.name);
            let copy = pipelines.get("copy").await.map_err(|e| e.to_string())?;
            let s = copy.status.unwrap_or_default();
            if condition(&s.conditions, "Ready").map(|c| c.0) != Some("True".into()) {
                not_ready.push("copy".into());
            }
            if not_ready.is_empty() {
                Ok(())
            } else {
                Err(format!("{not_ready:?}"))
            }
        },
    )
    .await;
    // A few refreshes more, so anything still moving shows before the clock starts.
    tokio::time::sleep(Duration::from_secs(6)).await;

    let before = all_versions(&client, &ns.name).await;
    let events_before = events(&client, &ns.name).await;
    tokio::time::sleep(QUIET_FOR).await;
    let after = all_versions(&client, &ns.name).await;
    let events_after = events(&client, &ns.name).await;

    assert_eq!(before, after, "objects were written while nothing changed");
    assert_eq!(
        events_before, events_after,
        "events were emitted while nothing changed"
    );
    let lag = groups
        .get("g0")
        .await
        .ok()
        .and_then(|g| g.status)
        .and_then(|s| s.total_lag);
    let w = wire(env);
    let partitions: Vec<_> = (0..2)
        .map(|p| {
            (
                TopicPartition::new(topic_names[0].clone(), p),
                exactly::kafka::OffsetSpec::Latest,
            )
        })
        .collect();
    let stable: i64 = w
        .list_offsets(&partitions, exactly::kafka::Isolation::ReadCommitted)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .values()
        .sum();
    assert_eq!(lag, Some(stable - 3), "the figures were there to report");
}
