//! A Pipeline's own worker pods, on the environment's real node, deliver every record exactly
//! once while their containers are SIGKILLed: the StatefulSet the operator renders, the operator
//! image's `exactly-worker`, kubelet restarting each killed container. The check is the same
//! independent read as with worker processes, and the broker restarts once half-way.

use std::time::Duration;

use exactly::api::Pipeline;
use exactly::kafka::{Isolation, OffsetSpec, TopicPartition};
use exactly_testenv::{eventually, shared};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};

use crate::common::{
    Rng, Tally, create_topics, drained, pids_in_pod, produce_input_until, read_all, tally,
    tally_against,
};
use crate::support::{create, create_cluster, run_operator, wire};

/// Input records, at least: it flows until the last kill and until there are this many.
const MIN_RECORDS: u64 = 200_000;
const PARTITIONS: i32 = 6;
const WORKERS: usize = 3;
/// Container kills (the environment's kubelet restarts a container after at most 1 s, where a
/// default kubelet's crash-loop backoff would reach minutes).
const KILLS: usize = 20;

/// Restarts of pod `pod`'s worker container and whether it is running and ready now.
async fn container_state(pods: &Api<Pod>, pod: &str) -> (i32, bool) {
    let Ok(pod) = pods.get(pod).await else {
        return (0, false);
    };
    pod.status
        .and_then(|s| s.container_statuses)
        .and_then(|s| s.into_iter().next())
        .map(|c| {
            let running = c.state.as_ref().and_then(|s| s.running.as_ref()).is_some();
            (c.restart_count, running && c.ready)
        })
        .unwrap_or((0, false))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipelines_own_worker_pods_deliver_every_record_exactly_once_while_their_containers_are_killed()
 {
    // Alone for its whole run: it restarts the broker, and its pods (20 kills, ~200 000 records
    // through jq) load the 2 cores enough to slow the other tests' timed waits.
    let _alone = crate::common::BROKER.write().await;
    let env = shared();
    let image = tokio::task::spawn_blocking(|| shared().operator_image())
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|e| panic!("{e}"));
    let ns = env.namespace("pods").await;
    let client = env.client().await.unwrap_or_else(|e| panic!("{e}"));
    run_operator(client.clone(), &ns.name);
    // The environment's broker listens on the host end of the node's veth: pods reach it.
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
    create::<Pipeline>(
        &client,
        &ns,
        "charging",
        serde_json::json!({
            "clusterRef": {"name": "local"},
            "input": {"topics": [{"name": "orders"}]},
            "output": {"topicRef": {"name": "charges"}},
            "replicas": WORKERS,
            "image": image,
            "transform": {"type": "Jq", "jq": {"filter": "{id: .id, doubled: (.amount * 2)}"}},
            "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"memory": "512Mi"}},
            "placement": {
                "nodeSelector": {"exactly.dev/node": "real"},
                "tolerations": [{"key": "exactly.dev/real-node", "operator": "Exists", "effect": "NoSchedule"}],
            },
        }),
    )
    .await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns.name);
    let names: Vec<String> = (0..WORKERS)
        .map(|i| format!("charging-worker-{i}"))
        .collect();
    eventually(
        "every worker pod ready on the real node",
        Duration::from_secs(120),
        || async {
            let list = pods
                .list(&ListParams::default().labels("exactly.dev/pipeline=charging"))
                .await
                .map_err(|e| e.to_string())?;
            let ready: Vec<(String, Option<String>, bool)> = list
                .items
                .iter()
                .map(|p| {
                    let ready = p
                        .status
                        .as_ref()
                        .and_then(|s| s.container_statuses.as_ref())
                        .and_then(|s| s.first())
                        .is_some_and(|c| c.ready);
                    (
                        p.metadata.name.clone().unwrap_or_default(),
                        p.spec.as_ref().and_then(|s| s.node_name.clone()),
                        ready,
                    )
                })
                .collect();
            let on_node = ready
                .iter()
                .filter(|(_, node, ok)| {
                    *ok && node.as_deref() == Some(exactly_testenv::node::NODE_NAME)
                })
                .count();
            if on_node == WORKERS {
                Ok(())
            } else {
                Err(format!("{ready:?}"))
            }
        },
    )
    .await;

    let seed = Rng::seed();
    eprintln!("container kill schedule seed {seed:#x}");
    let mut rng = Rng(seed);
    // Input flows until the last kill (at least MIN_RECORDS): every kill lands while records
    // are in flight, so it can hit an open transaction.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let producing = produce_input_until(env.bootstrap_servers.clone(), input.clone(), stop.clone());
    let mut kills = 0;
    let mut restarts_expected = vec![0; WORKERS];
    let mut restarted_broker = false;
    while kills < KILLS {
        tokio::time::sleep(Duration::from_millis(500 + rng.below(1500))).await;
        if kills == KILLS / 2 && !restarted_broker {
            tokio::task::spawn_blocking(move || {
                shared()
                    .restart_kafka(Duration::from_secs(2))
                    .unwrap_or_else(|e| panic!("restarting the broker: {e}"));
            })
            .await
            .unwrap_or_else(|e| panic!("{e}"));
            restarted_broker = true;
            eprintln!("restarted the broker after kill {kills}/{KILLS}");
        }
        let ordinal = rng.below(WORKERS as u64) as usize;
        let (restarts, ready) = container_state(&pods, &names[ordinal]).await;
        let pids = pids_in_pod(&names[ordinal], "exactly-worker");
        if !ready || pids.is_empty() {
            continue; // restarting (or backing off) after an earlier kill
        }
        for pid in &pids {
            // SAFETY: kill(2) of a process found running this pod's worker a moment ago.
            unsafe {
                libc::kill(*pid, libc::SIGKILL);
            }
        }
        kills += 1;
        restarts_expected[ordinal] = restarts + 1;
        eprintln!(
            "killed {} (pids {pids:?}), kill {kills}/{KILLS}",
            names[ordinal]
        );
    }
    let w = wire(env);
    let ends: Vec<(TopicPartition, OffsetSpec)> = (0..PARTITIONS)
        .map(|p| (TopicPartition::new(input.clone(), p), OffsetSpec::Latest))
        .collect();
    eventually(
        "the input to reach its minimum while the workers run",
        Duration::from_secs(180),
        || async {
            let written: i64 = w
                .list_offsets(&ends, Isolation::ReadUncommitted)
                .await
                .map_err(|e| e.to_string())?
                .values()
                .sum();
            if written >= MIN_RECORDS as i64 {
                Ok(())
            } else {
                Err(format!("{written} input records"))
            }
        },
    )
    .await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let records = tokio::task::spawn_blocking(move || producing.join())
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|_| panic!("the input producer panicked"));
    assert!(
        records >= MIN_RECORDS,
        "only {records} input records during the kills"
    );
    // kubelet restarted every killed container (the kills hit the pods' own containers).
    eventually(
        "kubelet to restart every killed container",
        Duration::from_secs(180),
        || async {
            let mut states = Vec::new();
            for (i, name) in names.iter().enumerate() {
                let (restarts, ready) = container_state(&pods, name).await;
                states.push((name.clone(), restarts, ready));
                if restarts < restarts_expected[i] || !ready {
                    return Err(format!(
                        "{states:?}, expected restarts {restarts_expected:?}"
                    ));
                }
            }
            Ok(())
        },
    )
    .await;

    drained(
        &w,
        &format!("{}.charging", ns.name),
        &input,
        PARTITIONS,
        Duration::from_secs(240),
    )
    .await;
    let ids_of = |isolation: &str| -> Vec<u64> {
        read_all(env, &output, PARTITIONS, isolation)
            .iter()
            .map(|r| {
                let value = r.json().unwrap_or_else(|| panic!("not JSON: {r:?}"));
                let id = value["id"]
                    .as_u64()
                    .unwrap_or_else(|| panic!("no id: {value}"));
                assert_eq!(value["doubled"].as_u64(), Some((id % 1000) * 2));
                id
            })
            .collect()
    };
    let input_ids: Vec<u64> = read_all(env, &input, PARTITIONS, "read_uncommitted")
        .iter()
        .filter_map(|r| r.json().and_then(|v| v["id"].as_u64()))
        .collect();
    let written = tally(&input_ids, records);
    assert_eq!(
        (written.lost, written.unexpected),
        (0, 0),
        "the test's input"
    );
    let committed_ids = ids_of("read_committed");
    let committed = tally_against(&committed_ids, &input_ids);
    let uncommitted = tally_against(&ids_of("read_uncommitted"), &input_ids);
    eprintln!(
        "{KILLS} container kills, one broker restart: input {} records; read_committed {} ({committed:?}); \
         read_uncommitted ({uncommitted:?})",
        input_ids.len(),
        committed_ids.len()
    );
    assert_eq!(
        committed,
        Tally {
            lost: 0,
            duplicated: 0,
            unexpected: 0
        },
        "read_committed must see every record exactly once"
    );
    assert!(
        uncommitted.duplicated > 0,
        "no aborted record in the output: the kills never hit an open transaction"
    );
}
