//! Scaling a Pipeline down while records flow: the removed workers' open transactions are fenced
//! by the operator, so none pins the output's last stable offset until its timeout.

use std::collections::BTreeMap;
use std::time::Duration;

use exactly::api::Pipeline;
use exactly::kafka::{Isolation, OffsetSpec, TopicPartition};
use exactly_testenv::{eventually, shared};
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, ListParams, Patch, PatchParams};

use crate::common::{
    EXACTLY_ONCE, Workers, create_topics, drained, produce_input_until, read_all, rendered_config,
    tally, tally_against, test_dir,
};
use crate::support::{create, create_cluster, run_operator, wire};

const PARTITIONS: i32 = 6;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scaling_three_workers_to_one_while_records_flow_leaves_no_open_transaction_of_the_removed_ones()
 {
    let _broker = crate::common::BROKER.read().await;
    let env = shared();
    let ns = env.namespace("scale-down").await;
    let client = env.client().await.unwrap_or_else(|e| panic!("{e}"));
    run_operator(client.clone(), &ns.name);
    create_cluster(&client, &ns, env).await;
    let input = ns.unique("orders");
    let output = ns.unique("charges");
    create_topics(
        &client,
        &ns,
        &[
            ("orders", &input, PARTITIONS),
            ("charges", &output, PARTITIONS),
        ],
    )
    .await;
    // A long transaction timeout: an open transaction left behind would pin the output for
    // ten minutes, far beyond this test's waits, unless the operator fences it.
    let pipelines = create::<Pipeline>(
        &client,
        &ns,
        "charging",
        serde_json::json!({
            "clusterRef": {"name": "local"},
            "input": {"topics": [{"name": "orders"}]},
            "output": {"topicRef": {"name": "charges"}},
            "replicas": 3,
            "transactionTimeout": "10m",
        }),
    )
    .await;
    let config = rendered_config(&client, &ns, "charging", None).await;
    let dir = test_dir(&ns);
    let config_path = dir.join("pipeline.json");
    std::fs::write(&config_path, &config).unwrap_or_else(|e| panic!("{e}"));
    let mut workers = Workers::new(config_path, dir.clone(), 3);
    // Records keep coming until the kills are done, so the workers have transactions to leave.
    let stop_input = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let producing = produce_input_until(
        env.bootstrap_servers.clone(),
        input.clone(),
        stop_input.clone(),
    );

    // Records flow through all three workers (each partition has committed progress). Workers
    // 1 and 2 go away the hard way (a pod killed past its grace period, a node lost): SIGKILL,
    // their transactions left open; the Pipeline is scaled to one worker.
    let group = format!("{}.charging", ns.name);
    let w = wire(env);
    eventually(
        "every partition to flow",
        Duration::from_secs(60),
        || async {
            let committed = w
                .committed_offsets(&group)
                .await
                .map_err(|e| e.to_string())?;
            let flowing = committed.values().filter(|o| **o > 0).count();
            if flowing == PARTITIONS as usize {
                Ok(())
            } else {
                Err(format!("{flowing} partitions committed"))
            }
        },
    )
    .await;
    // Kill them while each has a transaction open: frozen (SIGSTOP) so that what the
    // coordinator says stays true until the kill; thawed and tried again otherwise.
    let prefix = format!("{}.charging", ns.name);
    let removed = [format!("{prefix}-1"), format!("{prefix}-2")];
    // Each of them has committed a transaction already (it has partitions and records).
    eventually(
        "workers 1 and 2 to commit transactions",
        Duration::from_secs(60),
        || async {
            let described = w
                .describe_transactions(&removed)
                .await
                .map_err(|e| e.to_string())?;
            let states: Vec<&str> = described.iter().map(|t| t.state.as_str()).collect();
            if states.len() == removed.len() && states.iter().all(|s| *s != "Empty") {
                Ok(())
            } else {
                Err(format!("{states:?}"))
            }
        },
    )
    .await;
    let mut killed_open = false;
    let mut last_states: Vec<String> = Vec::new();
    for _ in 0..100 {
        workers.freeze(1, true);
        workers.freeze(2, true);
        let described = w
            .describe_transactions(&removed)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let open = described.iter().filter(|t| t.state == "Ongoing").count();
        last_states = described
            .iter()
            .map(|t| format!("{} {}", t.transactional_id, t.state))
            .collect();
        if open == removed.len() {
            workers.kill(1);
            workers.kill(2);
            killed_open = true;
            break;
        }
        workers.freeze(1, false);
        workers.freeze(2, false);
        // Thawed long enough to go on working (heartbeats, the next transaction).
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    assert!(
        killed_open,
        "workers 1 and 2 never both had a transaction open; last seen: {last_states:?}"
    );
    // Then the scale-down the kills stand for: the StatefulSet goes to one pod.
    pipelines
        .patch(
            "charging",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"spec": {"replicas": 1}})),
        )
        .await
        .unwrap_or_else(|e| panic!("scaling the Pipeline: {e}"));
    // A little more input for the remaining worker, then no more.
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop_input.store(true, std::sync::atomic::Ordering::Relaxed);
    eventually(
        "no open transaction of the removed workers",
        Duration::from_secs(60),
        || async {
            let described = w
                .describe_transactions(&removed)
                .await
                .map_err(|e| e.to_string())?;
            let open: Vec<String> = described
                .iter()
                .filter(|t| t.state == "Ongoing" || t.state.starts_with("Prepare"))
                .map(|t| format!("{} {}", t.transactional_id, t.state))
                .collect();
            if open.is_empty() {
                Ok(())
            } else {
                Err(format!("still open: {open:?}"))
            }
        },
    )
    .await;
    eventually(
        "the Pipeline to say none is left open",
        Duration::from_secs(30),
        || async {
            let p = pipelines.get("charging").await.map_err(|e| e.to_string())?;
            match p.status.and_then(|s| s.removed_worker_transactions) {
                Some(0) => Ok(()),
                other => Err(format!("removedWorkerTransactions {other:?}")),
            }
        },
    )
    .await;
    let events: Api<Event> = Api::namespaced(client.clone(), &ns.name);
    eventually(
        "a RemovedWorkerFenced Event (the kills left transactions open)",
        Duration::from_secs(10),
        || async {
            let fenced = events
                .list(&ListParams::default())
                .await
                .map_err(|e| e.to_string())?
                .items
                .into_iter()
                .filter(|e| e.reason.as_deref() == Some("RemovedWorkerFenced"))
                .count();
            if fenced > 0 {
                Ok(())
            } else {
                Err("none".to_string())
            }
        },
    )
    .await;

    // Input stops; the remaining worker takes every partition over and drains it: the output's
    // last stable offset reaches its log end.
    let written = tokio::task::spawn_blocking(move || producing.join())
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|_| panic!("the input producer panicked"));
    let partitions = |topic: &str| -> Vec<(TopicPartition, OffsetSpec)> {
        (0..PARTITIONS)
            .map(|p| {
                (
                    TopicPartition::new(topic.to_string(), p),
                    OffsetSpec::Latest,
                )
            })
            .collect()
    };
    drained(&w, &group, &input, PARTITIONS, Duration::from_secs(120)).await;
    eventually(
        "the output's last stable offset to reach its log end",
        Duration::from_secs(30),
        || async {
            let stable = w
                .list_offsets(&partitions(&output), Isolation::ReadCommitted)
                .await
                .map_err(|e| e.to_string())?;
            let end = w
                .list_offsets(&partitions(&output), Isolation::ReadUncommitted)
                .await
                .map_err(|e| e.to_string())?;
            let pinned: BTreeMap<_, _> = end
                .iter()
                .filter(|(tp, e)| stable.get(*tp) != Some(*e))
                .map(|(tp, e)| (format!("{tp:?}"), (stable.get(tp).copied(), *e)))
                .collect();
            if pinned.is_empty() {
                Ok(())
            } else {
                Err(format!("(LSO, log end) of pinned partitions: {pinned:?}"))
            }
        },
    )
    .await;
    let codes = workers.stop();
    assert!(
        codes.iter().all(|c| *c == Some(0)),
        "the remaining worker did not exit cleanly: {codes:?}"
    );
    let ids: Vec<u64> = read_all(env, &output, PARTITIONS, "read_committed")
        .iter()
        .filter_map(|r| r.json().and_then(|v| v["id"].as_u64()))
        .collect();
    let input_ids: Vec<u64> = read_all(env, &input, PARTITIONS, "read_uncommitted")
        .iter()
        .filter_map(|r| r.json().and_then(|v| v["id"].as_u64()))
        .collect();
    assert_eq!(
        tally(&input_ids, written).lost,
        0,
        "the test's input producer did not write every record"
    );
    assert_eq!(
        tally_against(&ids, &input_ids),
        EXACTLY_ONCE,
        "every input record exactly once"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
