//! Leader failover under load (issue #11): two replicas of the operator, as processes, elect a
//! leader on a Lease. The leader is frozen (SIGSTOP) while it works through a burst of Topics,
//! long enough for its lease to pass to the standby; then it is thawed. Woken, the stale leader
//! sends no change — no API write, no Kafka change, though its queue was full — and exits; the
//! new leader finishes the work, and each topic was created by one CreateTopics.

use std::time::{Duration, Instant};

use exactly::api::Topic;
use exactly::api::conditions::types::READY;
use exactly_testenv::{TestNamespace, eventually, shared};
use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use kube::Client;
use kube::api::{Api, ListParams, PostParams};

use crate::common::{OperatorProcess, creates_seen, test_dir};
use crate::support::{condition, create_cluster};

const LEASE: &str = "exactly";
const BEFORE: usize = 300;
const DURING: usize = 100;

async fn holder(leases: &Api<Lease>) -> Option<String> {
    leases
        .get_opt(LEASE)
        .await
        .ok()
        .flatten()
        .and_then(|l| l.spec)
        .and_then(|s| s.holder_identity)
}

async fn create_topics(client: &Client, ns: &str, range: std::ops::Range<usize>) {
    let topics: Api<Topic> = Api::namespaced(client.clone(), ns);
    futures::stream::iter(range)
        .for_each_concurrent(8, |i| {
            let topics = topics.clone();
            async move {
                let topic: Topic = serde_json::from_value(serde_json::json!({
                    "apiVersion": "exactly.dev/v1alpha1", "kind": "Topic",
                    "metadata": {"name": format!("t-{i}")},
                    "spec": {"clusterRef": {"name": "local"}, "topicName": format!("{ns}.t-{i}"),
                             "partitions": 1},
                }))
                .unwrap_or_else(|e| panic!("manifest: {e}"));
                topics
                    .create(&PostParams::default(), &topic)
                    .await
                    .unwrap_or_else(|e| panic!("create t-{i}: {e}"));
            }
        })
        .await;
}

fn replica(env: &exactly_testenv::Environment, ns: &TestNamespace, name: &str) -> OperatorProcess {
    let mut process = OperatorProcess::new(env, &ns.name, test_dir(ns), name)
        .arg("--leader-elect")
        .arg(&format!("--lease-name={LEASE}"))
        .arg(&format!("--lease-namespace={}", ns.name))
        .var("POD_NAME", name)
        .var("RUST_LOG", "info,exactly::writes=debug");
    process.start();
    process
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_frozen_past_its_lease_changes_nothing_when_it_wakes_and_the_standby_finishes_the_work()
 {
    let _broker = crate::common::BROKER.read().await;
    let env = shared();
    let ns = env.namespace("failover").await;
    let client = env.client().await.unwrap_or_else(|e| panic!("{e}"));
    create_cluster(&client, &ns, env).await;
    let leases: Api<Lease> = Api::namespaced(client.clone(), &ns.name);

    let mut first = replica(env, &ns, "replica-a");
    eventually("replica-a to lead", Duration::from_secs(30), || async {
        match holder(&leases).await.as_deref() {
            Some("replica-a") => Ok(()),
            other => Err(format!("holder {other:?}")),
        }
    })
    .await;
    let mut second = replica(env, &ns, "replica-b");

    // A burst, and the leader frozen in the middle of working through it.
    create_topics(&client, &ns.name, 0..BEFORE).await;
    first.freeze(true);
    let frozen = Instant::now();
    eventually(
        "replica-b to take the lease over",
        Duration::from_secs(60),
        || async {
            match holder(&leases).await.as_deref() {
                Some("replica-b") => Ok(()),
                other => Err(format!("holder {other:?}")),
            }
        },
    )
    .await;
    eprintln!("lease taken over {:?} after the freeze", frozen.elapsed());
    create_topics(&client, &ns.name, BEFORE..BEFORE + DURING).await;

    // Woken: whatever it had queued or in flight, the stale leader writes nothing and exits.
    let before_thaw = first.log().len();
    first.freeze(false);
    let thawed = Instant::now();
    let status = loop {
        if let Some(status) = first.exited() {
            break status;
        }
        assert!(
            thawed.elapsed() < Duration::from_secs(30),
            "the stale leader still runs 30 s after waking"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    eprintln!(
        "the stale leader exited {:?} after waking",
        thawed.elapsed()
    );
    assert!(
        !status.success(),
        "a leader that lost its lease exits non-zero: {status}"
    );
    let after_thaw = first
        .log()
        .get(before_thaw..)
        .unwrap_or_default()
        .to_string();
    // Each change to the API server or to Kafka is logged as it passes the fence (a request
    // already past it when the process froze was logged before the freeze).
    let changes: Vec<&str> = after_thaw
        .lines()
        .filter(|l| l.contains("change passed the fence"))
        .collect();
    assert!(
        changes.is_empty(),
        "the stale leader sent {} change(s) after waking: {:?}",
        changes.len(),
        changes.iter().take(5).collect::<Vec<_>>()
    );
    let before: usize = first
        .log()
        .get(..before_thaw)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("change passed the fence"))
        .count();
    assert!(
        before > 0,
        "replica-a sent no change while it led: the log shows none"
    );
    let refused = after_thaw
        .lines()
        .filter(|l| l.contains("may no longer hold the leader lease"))
        .count();
    eprintln!("the stale leader refused {refused} change(s) after waking");

    // The new leader finishes: every Topic Ready, each topic created by one CreateTopics.
    let topics: Api<Topic> = Api::namespaced(client.clone(), &ns.name);
    eventually("every Topic Ready", Duration::from_secs(180), || async {
        let list = topics
            .list(&ListParams::default())
            .await
            .map_err(|e| e.to_string())?;
        let ready = list
            .items
            .iter()
            .filter(|t| {
                t.status
                    .as_ref()
                    .and_then(|s| condition(&s.conditions, READY))
                    .is_some_and(|(status, _, _)| status == "True")
            })
            .count();
        if ready == BEFORE + DURING {
            Ok(())
        } else {
            Err(format!("{ready} of {} Ready", list.items.len()))
        }
    })
    .await;
    let prefix = format!("{}.t-", ns.name);
    let seen = creates_seen(env, &prefix);
    let not_once: Vec<_> = seen
        .iter()
        .filter(|(_, s)| s.created != 1 || s.refused > 0)
        .collect();
    assert!(
        not_once.is_empty(),
        "topics not created exactly once: {not_once:?}"
    );
    assert_eq!(seen.len(), BEFORE + DURING, "{seen:?}");
    let existed: usize = seen.values().map(|s| s.existed).sum();
    eprintln!("{existed} CreateTopics answered \"exists already\"");
    assert!(
        second.exited().is_none(),
        "the new leader stopped: {}",
        second.log()
    );
    second.kill();
}
