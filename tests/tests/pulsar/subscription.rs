//! A ConsumerGroup on Pulsar is a subscription: created by the operator, its backlog, unacked
//! messages, consumers and type reported from the broker's stats, and its offset reset a
//! guarded one-shot cursor reset. Every figure the status shows is compared with what Pulsar's
//! admin API says, read by the test itself.

use std::collections::BTreeMap;
use std::time::Duration;

use exactly::api::{ConsumerGroup, ConsumerGroupStatus, Topic};
use exactly_testenv::pulsar_check::{Hold, checker, write_properties};
use exactly_testenv::{TestNamespace, eventually, pulsar};
use kube::Client;
use kube::api::{Api, Patch, PatchParams};

use super::resources::{TIMEOUT, condition, create, ready, setup, topic_in, topic_until};

/// A Topic `orders` with `partitions` partitions in the tenant named after the namespace, and
/// the ConsumerGroup `billing` on it; returns the topic's full name once both are Ready.
async fn topic_and_group(client: &Client, ns: &TestNamespace, partitions: i32) -> String {
    let tenant = ns.name.clone();
    create::<Topic>(
        client,
        ns,
        "orders",
        serde_json::json!({"clusterRef": {"kind": "PulsarCluster", "name": "local"},
            "partitions": partitions, "pulsar": {"tenant": tenant, "namespace": "sales"}}),
    )
    .await;
    topic_until(client, ns, "orders", "the Topic to be Ready", ready).await;
    create::<ConsumerGroup>(
        client,
        ns,
        "billing",
        serde_json::json!({"clusterRef": {"kind": "PulsarCluster", "name": "local"},
            "topics": [{"name": "orders"}]}),
    )
    .await;
    group_until(
        client,
        ns,
        "the ConsumerGroup to be Ready",
        |s| match condition(&s.conditions, "Ready") {
            Some((r, _, _)) if r == "True" => Ok(()),
            other => Err(format!("{other:?}")),
        },
    )
    .await;
    topic_in(&tenant, "sales", "orders").to_string()
}

/// Waits for the ConsumerGroup `billing`'s status of its current generation to satisfy
/// `check`.
async fn group_until<T>(
    client: &Client,
    ns: &TestNamespace,
    what: &str,
    check: impl Fn(&ConsumerGroupStatus) -> Result<T, String>,
) -> T {
    let groups: Api<ConsumerGroup> = Api::namespaced(client.clone(), &ns.name);
    eventually(what, TIMEOUT, || async {
        let group = groups.get("billing").await.map_err(|e| e.to_string())?;
        let status = group.status.clone().unwrap_or_default();
        if status.observed_generation != group.metadata.generation {
            return Err(format!(
                "status of generation {:?}",
                status.observed_generation
            ));
        }
        check(&status)
    })
    .await
}

/// The subscription `billing` on each partition of `topic` as Pulsar's admin API reports it:
/// partition → (backlog, unacked, consumers). A partition without it is absent.
fn broker_view(topic: &str) -> BTreeMap<String, (i64, i64, usize)> {
    let path = format!(
        "/admin/v2/{}/partitioned-stats?perPartition=true",
        topic.replace("://", "/")
    );
    let stats = super::get(pulsar::shared(), &path, 200)
        .json()
        .unwrap_or_else(|e| panic!("{e}"));
    let mut view = BTreeMap::new();
    if let Some(partitions) = stats["partitions"].as_object() {
        for (partition, p) in partitions {
            let sub = &p["subscriptions"]["billing"];
            if sub.is_object() {
                view.insert(
                    partition.clone(),
                    (
                        sub["msgBacklog"].as_i64().unwrap_or(-1),
                        sub["unackedMessages"].as_i64().unwrap_or(-1),
                        sub["consumers"].as_array().map_or(0, Vec::len),
                    ),
                );
            }
        }
    }
    view
}

/// The status' view in the same shape as [`broker_view`].
fn status_view(status: &ConsumerGroupStatus) -> BTreeMap<String, (i64, i64, usize)> {
    status
        .subscription
        .iter()
        .flat_map(|s| &s.partitions)
        .map(|p| {
            (
                p.partition.clone(),
                (
                    p.backlog,
                    p.unacked,
                    usize::try_from(p.consumers).unwrap_or(0),
                ),
            )
        })
        .collect()
}

/// Sends `m-0`..`m-<count-1>` to `topic` with a producer of its own name.
fn produce(ns: &TestNamespace, topic: &str, count: u64) {
    let dir = pulsar::shared().dir.join("checker");
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
    let config = dir.join(format!("{}-feeder.properties", ns.name));
    write_properties(
        &config,
        &[
            ("serviceUrl", &pulsar::shared().service_url),
            ("producerName", &format!("{}-feeder", ns.name)),
            ("sendTimeoutMs", "0"),
        ],
    )
    .unwrap_or_else(|e| panic!("{e}"));
    checker()
        .unwrap_or_else(|e| panic!("{e}"))
        .produce(&config, topic, 0..=count - 1, None)
        .unwrap_or_else(|e| panic!("{e}"));
}

/// Runs a `hold` consumer on a blocking thread.
fn hold_in_background(
    topic: &str,
    type_: &'static str,
    receive: u64,
    ack: bool,
    hold: Duration,
) -> tokio::task::JoinHandle<()> {
    let topic = topic.to_string();
    tokio::task::spawn_blocking(move || {
        checker()
            .unwrap_or_else(|e| panic!("{e}"))
            .hold(&Hold {
                service_url: &pulsar::shared().service_url,
                topic: &topic,
                subscription: "billing",
                type_,
                receive,
                ack,
                hold,
            })
            .unwrap_or_else(|e| panic!("{e}"));
    })
}

#[tokio::test]
async fn a_consumer_group_on_pulsar_creates_its_subscription_and_reports_the_backlog_the_broker_counts()
 {
    let (ns, client) = setup("pulsar-sub").await;
    let topic = topic_and_group(&client, &ns, 3).await;
    // Created by the operator on every partition, before any consumer: nothing published
    // from now on can be lost to retention.
    assert_eq!(broker_view(&topic).len(), 3, "{:?}", broker_view(&topic));
    produce(&ns, &topic, 30);
    let status = group_until(&client, &ns, "a backlog of 30", |s| match s.total_lag {
        Some(30) => Ok(s.clone()),
        other => Err(format!("{other:?}")),
    })
    .await;
    assert_eq!(status_view(&status), broker_view(&topic));
    let sub = status.subscription.clone().unwrap_or_default();
    assert_eq!((sub.name.as_str(), sub.partition_count), ("billing", 3));
    assert_eq!(status.state.as_deref(), Some("Idle"));
}

#[tokio::test]
async fn a_connected_consumer_shows_with_its_unacked_messages_and_a_shared_one_is_reported_unordered()
 {
    let (ns, client) = setup("pulsar-shared").await;
    let topic = topic_and_group(&client, &ns, 1).await;
    produce(&ns, &topic, 10);
    // Receives 4 without acknowledging them (the client prefetches the rest: the broker
    // counts those as unacked too), connected for 20 s.
    let consumer = hold_in_background(&topic, "Shared", 4, false, Duration::from_secs(20));
    let status = group_until(&client, &ns, "the Shared consumer in status", |s| {
        let sub = s.subscription.clone().unwrap_or_default();
        match (s.member_count, sub.type_.as_deref(), sub.unacked) {
            (Some(1), Some("Shared"), n) if n >= 4 => Ok(s.clone()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    assert_eq!(status_view(&status), broker_view(&topic));
    assert_eq!(status.state.as_deref(), Some("Active"));
    assert_eq!(
        condition(&status.conditions, "OrderedDelivery").map(|(s, r, _)| (s, r)),
        Some(("False".to_string(), "SharedSubscription".to_string()))
    );
    consumer.await.unwrap_or_else(|e| panic!("{e}"));
    // Gone without acknowledging: all 10 are still the subscription's backlog.
    let status = group_until(&client, &ns, "the consumer gone", |s| {
        match (s.member_count, s.total_lag) {
            (Some(0), Some(10)) => Ok(s.clone()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    assert_eq!(status_view(&status), broker_view(&topic));
}

#[tokio::test]
async fn the_cursor_reset_waits_while_a_consumer_is_connected_and_applies_once_after_it_leaves() {
    let (ns, client) = setup("pulsar-reset").await;
    let topic = topic_and_group(&client, &ns, 2).await;
    produce(&ns, &topic, 20);
    // Consumes everything, then stays connected for 15 s.
    let consumer = hold_in_background(&topic, "Failover", 20, true, Duration::from_secs(15));
    group_until(
        &client,
        &ns,
        "everything acknowledged by a connected consumer",
        |s| match (s.member_count, s.total_lag) {
            (Some(1), Some(0)) => Ok(()),
            other => Err(format!("{other:?}")),
        },
    )
    .await;
    let groups: Api<ConsumerGroup> = Api::namespaced(client.clone(), &ns.name);
    groups
        .patch(
            "billing",
            &PatchParams::default(),
            &Patch::Merge(
                serde_json::json!({"spec": {"offsetReset": {"id": "replay-1", "to": "Earliest"}}}),
            ),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let waiting = group_until(&client, &ns, "the reset waiting", |s| {
        match s.last_offset_reset.as_ref() {
            Some(r) if r.id == "replay-1" && r.result == "Waiting" => Ok(r.message.clone()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    assert!(waiting.contains("1 consumer(s) connected"), "{waiting}");
    // Not run while the consumer is there: the broker still counts nothing to deliver.
    let backlog: i64 = broker_view(&topic).values().map(|v| v.0).sum();
    assert_eq!(backlog, 0);
    consumer.await.unwrap_or_else(|e| panic!("{e}"));
    let applied = group_until(&client, &ns, "the reset applied", |s| {
        match s.last_offset_reset.as_ref() {
            Some(r) if r.id == "replay-1" && r.result == "Applied" => Ok(r.clone()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    // Back at the oldest message: the broker counts all 20 again.
    let backlog: i64 = broker_view(&topic).values().map(|v| v.0).sum();
    assert_eq!(backlog, 20);
    // Consumed again, and the reset is not run a second time on later refreshes.
    let read = checker()
        .unwrap_or_else(|e| panic!("{e}"))
        .read(
            &pulsar::shared().service_url,
            &topic,
            "billing",
            Duration::from_secs(3),
        )
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(read.received, 20, "{read:?}");
    group_until(&client, &ns, "the replay acknowledged", |s| {
        match s.total_lag {
            Some(0) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    tokio::time::sleep(Duration::from_secs(6)).await; // three refreshes
    let backlog: i64 = broker_view(&topic).values().map(|v| v.0).sum();
    assert_eq!(backlog, 0);
    let last = groups
        .get("billing")
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .status
        .and_then(|s| s.last_offset_reset);
    assert_eq!(last, Some(applied));
}
