//! `guarantee: AtLeastOnce`, the baseline that is not exactly-once: without transactions, a
//! worker killed between its flush and its offset commit produces records again, but none is
//! ever lost.

use std::time::Duration;

use exactly::api::{Pipeline, Topic};
use exactly_testenv::{eventually, shared};
use kube::api::Api;

use crate::common::{
    Rng, Workers, drained, produce_input, read_all, rendered_config, tally, test_dir,
};
use crate::support::{create, create_cluster, run_operator, wire};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_least_once_loses_no_record_while_workers_are_killed_and_uses_no_transaction() {
    let _broker = crate::common::BROKER.read().await;
    const RECORDS: u64 = 20_000;
    const PARTITIONS: i32 = 3;
    const WORKERS: usize = 2;
    const KILLS: usize = 6;

    let env = shared();
    let ns = env.namespace("guarantee").await;
    let client = env.client().await.unwrap_or_else(|e| panic!("{e}"));
    run_operator(client.clone(), &ns.name);
    create_cluster(&client, &ns, env).await;
    let input = ns.unique("orders");
    let output = ns.unique("charges");
    for (name, topic) in [("orders", &input), ("charges", &output)] {
        create::<Topic>(
            &client,
            &ns,
            name,
            serde_json::json!({"clusterRef": {"name": "local"}, "topicName": topic,
                "partitions": PARTITIONS}),
        )
        .await;
    }
    let group = ns.unique("copying");
    create::<Pipeline>(
        &client,
        &ns,
        "copying",
        serde_json::json!({
            "clusterRef": {"name": "local"},
            "input": {"topics": [{"name": "orders"}], "groupId": group},
            "output": {"topicRef": {"name": "charges"}},
            "replicas": WORKERS,
            "transform": {"type": "Jq", "jq": {"filter": "{id: .id, doubled: (.amount * 2)}"}},
        }),
    )
    .await;
    // The operator renders ExactlyOnce (the Pipeline has no guarantee of its own yet): the
    // test sets the worker's `guarantee` as the benchmark does.
    let rendered = rendered_config(&client, &ns, "copying", None).await;
    let mut config: serde_json::Value =
        serde_json::from_slice(&rendered).unwrap_or_else(|e| panic!("pipeline.json: {e}"));
    config["guarantee"] = "AtLeastOnce".into();
    let prefix = config["transactionalIdPrefix"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let dir = test_dir(&ns);
    let config_path = dir.join("pipeline.json");
    std::fs::write(&config_path, config.to_string()).unwrap_or_else(|e| panic!("{e}"));

    let seed = Rng::seed();
    eprintln!(
        "fault schedule seed {seed:#x}; worker logs in {}",
        dir.display()
    );
    let mut rng = Rng(seed);
    let mut workers = Workers::new(config_path, dir.clone(), WORKERS);
    let producing = produce_input(env.bootstrap_servers.clone(), input.clone(), RECORDS);
    let faults = tokio::task::spawn_blocking(move || {
        for _ in 0..KILLS {
            std::thread::sleep(Duration::from_millis(300 + rng.below(700)));
            let ordinal = rng.below(WORKERS as u64) as usize;
            workers.kill(ordinal);
            workers.start(ordinal);
        }
        workers
    });
    let mut workers = faults
        .await
        .unwrap_or_else(|e| panic!("the fault schedule: {e}"));
    tokio::task::spawn_blocking(move || producing.join())
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|_| panic!("the input producer panicked"));

    let w = wire(env);
    drained(&w, &group, &input, PARTITIONS, Duration::from_secs(90)).await;
    let exited = workers.exited();
    assert!(exited.is_empty(), "workers exited on their own: {exited:?}");
    let codes = workers.stop();
    assert!(
        codes.iter().all(|c| *c == Some(0)),
        "workers did not exit cleanly on SIGTERM: {codes:?}"
    );

    // No transaction: the coordinator never heard of the workers' transactional ids.
    let transactions = w
        .list_transactions()
        .await
        .unwrap_or_else(|e| panic!("list transactions: {e}"));
    let ours: Vec<_> = transactions
        .iter()
        .filter(|t| t.transactional_id.starts_with(&prefix))
        .collect();
    assert!(ours.is_empty(), "AtLeastOnce used transactions: {ours:?}");

    // Every record at least once, whether read committed or not (there is nothing to abort).
    let ids = |isolation: &str| -> Vec<u64> {
        read_all(env, &output, PARTITIONS, isolation)
            .iter()
            .map(|r| {
                let value = r
                    .json()
                    .unwrap_or_else(|| panic!("an output record that is not JSON: {r:?}"));
                value["id"]
                    .as_u64()
                    .unwrap_or_else(|| panic!("an output record without an id: {value}"))
            })
            .collect()
    };
    let committed = tally(&ids("read_committed"), RECORDS);
    let uncommitted = tally(&ids("read_uncommitted"), RECORDS);
    eprintln!("{KILLS} kills, at least once: {committed:?}");
    assert_eq!(
        (committed.lost, committed.unexpected),
        (0, 0),
        "{committed:?}"
    );
    assert_eq!(committed, uncommitted, "no transaction, nothing to abort");

    // The figures still match the committed offsets exactly: each input record counted once.
    let pipelines: Api<Pipeline> = Api::namespaced(client.clone(), &ns.name);
    let expected = (Some(0), Some(RECORDS as i64), Some(RECORDS as i64), Some(0));
    eventually(
        "the Pipeline's figures to agree",
        Duration::from_secs(60),
        || async {
            let p = pipelines.get("copying").await.map_err(|e| e.to_string())?;
            let s = p.status.unwrap_or_default();
            let figures = (s.total_lag, s.records_in, s.records_out, s.dead_lettered);
            if figures == expected {
                Ok(())
            } else {
                Err(format!(
                    "(totalLag, recordsIn, recordsOut, deadLettered) = {figures:?}, want \
                     {expected:?}"
                ))
            }
        },
    )
    .await;
    let _ = std::fs::remove_dir_all(&dir);
}
