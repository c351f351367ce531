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

use crate::support::{
    Operator, consumer, create, create_cluster, leave_transaction_open, produce_committed, wire,
};

const TIMEOUT: Duration = Duration::from_secs(60);

struct Setup {
    ns: TestNamespace,
    client: Client,
    topic: String,
    group: String,
    /// The operator under test; it runs while the Setup lives.
    operator: Option<Operator>,
}

impl Setup {
    /// Stops the operator and starts a fresh one: nothing it decides afterwards comes from the
    /// memory of the first run, only from what the API server and the brokers hold.
    async fn restart_operator(&mut self) {
        if let Some(operator) = self.operator.take() {
            operator.stop().await;
        }
        self.operator = Some(Operator::start(self.client.clone(), &self.ns.name));
    }
}

/// The operator, cluster `local`, a Topic `orders` (one partition) holding 10 committed records,
/// and a ConsumerGroup `billing` watching the group.
async fn setup(prefix: &str) -> Setup {
    let env = shared();
    let ns = env.namespace(prefix).await;
    let client = env.client().await.unwrap_or_else(|e| panic!("{e}"));
    let operator = Operator::start(client.clone(), &ns.name);
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
        operator: Some(operator),
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
async fn lag_of_a_read_committed_consumer_counts_from_the_last_stable_offset_not_the_log_end() {
    use rdkafka::producer::Producer;
    let s = setup("group-lag").await;
    // 10 committed records and their marker (offsets 0-10), then 3 records of a transaction left
    // open (11-13): log end 14, last stable offset 11.
    let open = leave_transaction_open(shared(), &s.topic, 3);
    let member = Member::join(&s).await;
    member.commit(&s.topic, 4);
    let status = status_when(
        &s,
        "lag after the commit, with the open transaction",
        |st| {
            st.partitions
                .first()
                .is_some_and(|p| p.committed == Some(4) && p.log_end == 14)
                && st.member_count == Some(1)
        },
    )
    .await;
    let expected = broker_lag(&s).await;
    let p = &status.partitions[0];
    assert_eq!(
        (p.topic.as_str(), p.partition, p.lag),
        (s.topic.as_str(), 0, expected)
    );
    // 7 records behind the LSO; counted from the log end it would be 10.
    assert_eq!((p.log_end, p.last_stable, p.lag), (14, 11, 7));
    assert_eq!(status.total_lag, Some(7));
    assert_eq!(status.state.as_deref(), Some("Stable"));
    assert!(status.members[0].client_id.ends_with("-consumer"));
    member.leave().await;
    open.abort_transaction(Duration::from_secs(20))
        .unwrap_or_else(|e| panic!("abort: {e}"));
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
    let mut s = setup("group-reset").await;
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
    // Once per id, also across an operator restart (the guard kept in status, not only the
    // first run's memory): a later commit is not undone by the same request.
    w.commit_offsets(&s.group, &BTreeMap::from([(tp.clone(), 3)]))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    status_when(&s, "the new commit to show", |st| {
        st.partitions.first().and_then(|p| p.committed) == Some(3)
    })
    .await;
    s.restart_operator().await;
    // The fresh operator reconciles the group at start and on every refresh: let it do so a
    // few times, each a chance to re-apply the reset.
    let fresh = s.operator.as_ref().unwrap_or_else(|| panic!("no operator"));
    eventually(
        "the fresh operator to reconcile the group",
        TIMEOUT,
        || async {
            match fresh.ok_reconciles("ConsumerGroup") {
                n if n >= 3 => Ok(()),
                n => Err(format!("{n} reconciles")),
            }
        },
    )
    .await;
    let committed = w
        .committed_offsets(&s.group)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        committed.get(&tp),
        Some(&3),
        "the reset was applied again after the restart"
    );
    let after = status_when(&s, "the reset still recorded", |st| {
        st.last_offset_reset.is_some()
    })
    .await;
    assert_eq!(
        after.last_offset_reset.map(|r| (r.id, r.result)),
        Some(("replay-1".to_string(), "Applied".to_string()))
    );
}

/// A reset the operator recorded as `Applying` and then stopped before recording its outcome:
/// with the operator stopped, the group's offset is committed at 6 (with `metadata` as its
/// commit metadata), the spec asks for `replay-2` to Earliest and the status says `Applying`.
/// Returns the status once a fresh operator settled it, and the committed offset then.
async fn settle_a_reset_left_applying(
    prefix: &str,
    metadata: Option<&str>,
) -> (ConsumerGroupStatus, Option<i64>) {
    let mut s = setup(prefix).await;
    status_when(&s, "a first status", |st| !st.partitions.is_empty()).await;
    if let Some(operator) = s.operator.take() {
        operator.stop().await;
    }
    let w = wire(shared());
    let tp = TopicPartition::new(s.topic.clone(), 0);
    w.commit_offsets_marked(&s.group, &BTreeMap::from([(tp.clone(), 6)]), metadata)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let groups: Api<ConsumerGroup> = Api::namespaced(s.client.clone(), &s.ns.name);
    let spec = serde_json::json!({"spec": {"offsetReset": {"id": "replay-2", "to": "Earliest"}}});
    groups
        .patch("billing", &PatchParams::default(), &Patch::Merge(&spec))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let status = serde_json::json!({"status": {"lastOffsetReset": {
        "id": "replay-2", "result": "Applying",
        "message": "committing Earliest offsets on 1 partition(s)", "time": "2026-12-07T10:00:00Z",
    }}});
    groups
        .patch_status("billing", &PatchParams::default(), &Patch::Merge(&status))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    s.restart_operator().await;
    let settled = status_when(&s, "the interrupted reset to be settled", |st| {
        st.last_offset_reset
            .as_ref()
            .is_some_and(|r| r.id == "replay-2" && r.result != "Applying")
    })
    .await;
    let committed = w
        .committed_offsets(&s.group)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    (settled, committed.get(&tp).copied())
}

#[tokio::test]
async fn a_reset_left_applying_whose_mark_is_on_the_offsets_is_settled_as_applied_without_a_second_commit()
 {
    let mark = exactly::controller::group::reset_mark("replay-2");
    let (status, committed) = settle_a_reset_left_applying("group-applying", Some(&mark)).await;
    let outcome = status
        .last_offset_reset
        .unwrap_or_else(|| panic!("no outcome"));
    assert_eq!(outcome.result, "Applied", "{}", outcome.message);
    assert!(
        outcome.message.contains("not run again"),
        "{}",
        outcome.message
    );
    assert_eq!(committed, Some(6), "the reset was committed a second time");
}

#[tokio::test]
async fn a_reset_left_applying_without_its_mark_is_reported_interrupted_and_not_run() {
    let (status, committed) = settle_a_reset_left_applying("group-interrupted", None).await;
    let outcome = status
        .last_offset_reset
        .unwrap_or_else(|| panic!("no outcome"));
    assert_eq!(outcome.result, "Interrupted", "{}", outcome.message);
    assert!(
        outcome.message.contains("set a new spec.offsetReset.id"),
        "{}",
        outcome.message
    );
    assert_eq!(committed, Some(6), "an interrupted reset ran after all");
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
