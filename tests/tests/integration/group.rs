//! ConsumerGroup: lag measured against the last stable offset, as the broker's own offsets give
//! it, with real read_committed consumers; the guarded one-shot offset reset.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use exactly::api::{ConsumerGroup, ConsumerGroupStatus, Topic};
use exactly::kafka::{Isolation, OffsetSpec, TopicPartition};
use exactly_testenv::{TestNamespace, eventually, shared};
use kube::Client;
use kube::api::{Api, Patch, PatchParams};
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::{Offset, TopicPartitionList};

use crate::support::{consumer, create, create_cluster, produce_committed, run_operator, wire};

const TIMEOUT: Duration = Duration::from_secs(60);

struct Setup {
    ns: TestNamespace,
    client: Client,
    topic: String,
    group: String,
}

/// The operator, cluster `local`, a Topic `orders` (one partition) holding 10 committed records,
/// and a ConsumerGroup `billing` watching the group.
async fn setup(prefix: &str) -> Setup {
    let env = shared();
    let ns = env.namespace(prefix).await;
    let client = env.client().await.unwrap_or_else(|e| panic!("{e}"));
    run_operator(client.clone(), &ns.name);
    create_cluster(&client, &ns, env).await;
    let topic = ns.unique("orders");
    let group = ns.unique("billing");
    create::<Topic>(
        &client,
        &ns,
        "orders",
        serde_json::json!({"clusterRef": {"name": "local"}, "topicName": topic, "partitions": 1}),
    )
    .await;
    let topics: Api<Topic> = Api::namespaced(client.clone(), &ns.name);
    eventually("the topic to exist", TIMEOUT, || async {
        let t = topics.get("orders").await.map_err(|e| e.to_string())?;
        t.status
            .and_then(|s| s.partitions)
            .ok_or_else(|| "no partitions yet".to_string())
    })
    .await;
    produce_committed(env, &topic, 10);
    create::<ConsumerGroup>(
        &client,
        &ns,
        "billing",
        serde_json::json!({
            "clusterRef": {"name": "local"}, "groupId": group,
            "topics": [{"name": "orders"}], "isolation": "ReadCommitted",
        }),
    )
    .await;
    Setup {
        ns,
        client,
        topic,
        group,
    }
}

/// A consumer that stays in its group (polling in the background) until dropped.
struct Member {
    consumer: Arc<StreamConsumer>,
    poller: tokio::task::JoinHandle<()>,
}

impl Member {
    async fn join(s: &Setup) -> Member {
        let consumer = Arc::new(consumer(shared(), &s.group, &s.topic));
        let polling = consumer.clone();
        let poller = tokio::spawn(async move {
            loop {
                let _ = polling.recv().await;
            }
        });
        let w = wire(shared());
        eventually("the consumer to join", TIMEOUT, || async {
            let groups = w
                .describe_groups(std::slice::from_ref(&s.group))
                .await
                .map_err(|e| e.to_string())?;
            match groups.first() {
                Some(g) if g.state == "Stable" && !g.members.is_empty() => Ok(()),
                other => Err(format!("{other:?}")),
            }
        })
        .await;
        Member { consumer, poller }
    }

    /// Commits `offset` on partition 0, as a consumer that processed up to there would.
    fn commit(&self, topic: &str, offset: i64) {
        let mut list = TopicPartitionList::new();
        list.add_partition_offset(topic, 0, Offset::Offset(offset))
            .unwrap_or_else(|e| panic!("{e}"));
        self.consumer
            .commit(&list, CommitMode::Sync)
            .unwrap_or_else(|e| panic!("commit: {e}"));
    }

    /// Leaves the group.
    async fn leave(self) {
        self.poller.abort();
        let _ = self.poller.await;
        self.consumer.unsubscribe();
        drop(self.consumer);
    }
}

async fn status_when(
    s: &Setup,
    what: &str,
    check: impl Fn(&ConsumerGroupStatus) -> bool,
) -> ConsumerGroupStatus {
    let groups: Api<ConsumerGroup> = Api::namespaced(s.client.clone(), &s.ns.name);
    eventually(what, TIMEOUT, || async {
        let g = groups.get("billing").await.map_err(|e| e.to_string())?;
        let status = g.status.unwrap_or_default();
        if check(&status) {
            Ok(status)
        } else {
            Err(format!("{status:?}"))
        }
    })
    .await
}

/// Lag as the broker's own offsets give it: LSO minus the group's committed offset.
async fn broker_lag(s: &Setup) -> i64 {
    let w = wire(shared());
    let tp = TopicPartition::new(s.topic.clone(), 0);
    let lso = w
        .list_offsets(
            &[(tp.clone(), OffsetSpec::Latest)],
            Isolation::ReadCommitted,
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"))[&tp];
    let committed = w
        .committed_offsets(&s.group)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    lso - committed.get(&tp).copied().unwrap_or(0)
}

#[tokio::test]
async fn lag_of_a_read_committed_consumer_equals_what_the_brokers_offsets_give() {
    let s = setup("group-lag").await;
    let member = Member::join(&s).await;
    member.commit(&s.topic, 4);
    let status = status_when(&s, "lag after the commit", |st| {
        st.partitions.first().and_then(|p| p.committed) == Some(4) && st.member_count == Some(1)
    })
    .await;
    let expected = broker_lag(&s).await;
    let p = &status.partitions[0];
    assert_eq!(
        (p.topic.as_str(), p.partition, p.lag),
        (s.topic.as_str(), 0, expected)
    );
    // 10 records and a commit marker: log end and LSO 11, so 7 records behind.
    assert_eq!((p.log_end, p.last_stable, p.lag), (11, 11, 7));
    assert_eq!(status.total_lag, Some(7));
    assert_eq!(status.state.as_deref(), Some("Stable"));
    assert!(status.members[0].client_id.ends_with("-consumer"));
    member.leave().await;
}

#[tokio::test]
async fn lag_stays_reported_after_the_consumer_stops() {
    let s = setup("group-stopped").await;
    let member = Member::join(&s).await;
    member.commit(&s.topic, 6);
    member.leave().await;
    let status = status_when(&s, "the group to be Empty with its lag", |st| {
        st.state.as_deref() == Some("Empty") && st.total_lag.is_some()
    })
    .await;
    assert_eq!(status.member_count, Some(0));
    assert_eq!(status.total_lag, Some(broker_lag(&s).await));
    assert_eq!(status.total_lag, Some(5));
}

#[tokio::test]
async fn an_offset_reset_waits_while_members_exist_and_applies_once_the_group_is_empty() {
    let s = setup("group-reset").await;
    let member = Member::join(&s).await;
    member.commit(&s.topic, 8);
    let groups: Api<ConsumerGroup> = Api::namespaced(s.client.clone(), &s.ns.name);
    let patch = serde_json::json!({"spec": {"offsetReset": {"id": "replay-1", "to": "Earliest"}}});
    groups
        .patch("billing", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let waiting = status_when(&s, "the reset to wait", |st| {
        st.last_offset_reset
            .as_ref()
            .is_some_and(|r| r.id == "replay-1" && r.result == "Waiting")
    })
    .await;
    let message = waiting
        .last_offset_reset
        .map(|r| r.message)
        .unwrap_or_default();
    assert!(message.contains("1 member"), "{message}");
    let w = wire(shared());
    let tp = TopicPartition::new(s.topic.clone(), 0);
    let committed = w
        .committed_offsets(&s.group)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        committed.get(&tp),
        Some(&8),
        "nothing moved while members exist"
    );

    member.leave().await;
    let applied = status_when(&s, "the reset to apply", |st| {
        st.last_offset_reset
            .as_ref()
            .is_some_and(|r| r.id == "replay-1" && r.result == "Applied")
    })
    .await;
    let committed = w
        .committed_offsets(&s.group)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        committed,
        BTreeMap::from([(tp.clone(), 0)]),
        "{:?}",
        applied.last_offset_reset
    );
    // Once per id: a later commit is not undone by the same request.
    w.commit_offsets(&s.group, &BTreeMap::from([(tp.clone(), 3)]))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    status_when(&s, "the new commit to show", |st| {
        st.partitions.first().and_then(|p| p.committed) == Some(3)
    })
    .await;
    let committed = w
        .committed_offsets(&s.group)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(committed.get(&tp), Some(&3));
}

#[tokio::test]
async fn lag_is_exported_as_a_prometheus_metric_on_the_metrics_endpoint() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let env = shared();
    let ns = env.namespace("group-metrics").await;
    let client = env.client().await.unwrap_or_else(|e| panic!("{e}"));
    let metrics = Arc::new(exactly::metrics::Metrics::default());
    crate::support::run_operator_with_metrics(client.clone(), &ns.name, metrics.clone());
    let address = exactly::http::serve(
        "127.0.0.1:0".parse().unwrap_or_else(|e| panic!("{e}")),
        metrics,
    )
    .await
    .unwrap_or_else(|e| panic!("serve: {e}"));
    create_cluster(&client, &ns, env).await;
    let topic = ns.unique("orders");
    crate::support::create_kafka_topic(env, &topic, 1, &[]).await;
    produce_committed(env, &topic, 5);
    create::<Topic>(
        &client,
        &ns,
        "orders",
        serde_json::json!({"clusterRef": {"name": "local"}, "topicName": topic, "partitions": 1}),
    )
    .await;
    create::<ConsumerGroup>(
        &client,
        &ns,
        "billing",
        serde_json::json!({"clusterRef": {"name": "local"}, "groupId": ns.unique("billing"),
            "topics": [{"name": "orders"}]}),
    )
    .await;
    let want = format!(
        "exactly_consumer_group_lag{{namespace=\"{}\",name=\"billing\"}} 6",
        ns.name
    );
    eventually("the lag metric", TIMEOUT, || async {
        let mut stream = tokio::net::TcpStream::connect(address)
            .await
            .map_err(|e| e.to_string())?;
        stream
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .map_err(|e| e.to_string())?;
        let mut body = String::new();
        stream
            .read_to_string(&mut body)
            .await
            .map_err(|e| e.to_string())?;
        if body.starts_with("HTTP/1.1 200 OK") && body.contains(&want) {
            Ok(())
        } else {
            Err(body
                .lines()
                .filter(|l| l.contains("lag"))
                .collect::<Vec<_>>()
                .join("\n"))
        }
    })
    .await;
}
