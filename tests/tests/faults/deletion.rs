//! Deleting a Pipeline: its workers and the children the operator rendered go; the data it
//! read and wrote, and its group's committed offsets, stay (Retain semantics).

use std::time::Duration;

use exactly::api::{ConsumerGroup, Pipeline, Producer, Topic};
use exactly_testenv::{eventually, shared};
use exactly_worker::WorkerConfig;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DeleteParams};

use crate::common::{
    EXACTLY_ONCE, Workers, committed_ids, create_topics, drained, produce_records, read_all,
    rendered_config, tally_of, test_dir,
};
use crate::support::{create, create_cluster, run_operator, wire};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_pipeline_removes_its_workers_and_keeps_its_topics_their_data_and_the_committed_offsets()
 {
    let _broker = crate::common::BROKER.read().await;
    const RECORDS: u64 = 2_000;
    const PARTITIONS: i32 = 2;

    let env = shared();
    let ns = env.namespace("deletion").await;
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
    let pipelines = create::<Pipeline>(
        &client,
        &ns,
        "charging",
        serde_json::json!({
            "clusterRef": {"name": "local"},
            "input": {"topics": [{"name": "orders"}], "groupId": ns.unique("charging")},
            "output": {"topicRef": {"name": "charges"}},
            "replicas": 1,
        }),
    )
    .await;
    let dir = test_dir(&ns);
    let config_path = dir.join("pipeline.json");
    let rendered = rendered_config(&client, &ns, "charging", None).await;
    std::fs::write(&config_path, &rendered).unwrap_or_else(|e| panic!("{e}"));
    let config: WorkerConfig =
        serde_json::from_slice(&rendered).unwrap_or_else(|e| panic!("pipeline.json: {e}"));
    let mut workers = Workers::new(config_path, dir.clone(), 1);
    let producing = produce_records(
        env.bootstrap_servers.clone(),
        input.clone(),
        RECORDS,
        1_000,
        |id| format!("{{\"id\":{id}}}"),
    );
    tokio::task::spawn_blocking(move || producing.join())
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|_| panic!("the input producer panicked"));
    let w = wire(env);
    drained(
        &w,
        &config.group_id,
        &input,
        PARTITIONS,
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(workers.stop(), vec![Some(0)], "the worker on SIGTERM");
    let committed = w
        .committed_offsets(&config.group_id)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        committed.values().sum::<i64>(),
        RECORDS as i64,
        "{committed:?}"
    );

    // The children exist; then the Pipeline is deleted and they are collected.
    let sets: Api<StatefulSet> = Api::namespaced(client.clone(), &ns.name);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns.name);
    let producers: Api<Producer> = Api::namespaced(client.clone(), &ns.name);
    let groups: Api<ConsumerGroup> = Api::namespaced(client.clone(), &ns.name);
    let children = || async {
        let mut left = Vec::new();
        if sets
            .get_opt("charging-worker")
            .await
            .map_err(|e| e.to_string())?
            .is_some()
        {
            left.push("StatefulSet charging-worker");
        }
        if secrets
            .get_opt("charging-pipeline")
            .await
            .map_err(|e| e.to_string())?
            .is_some()
        {
            left.push("Secret charging-pipeline");
        }
        if producers
            .get_opt("charging-pipeline")
            .await
            .map_err(|e| e.to_string())?
            .is_some()
        {
            left.push("Producer charging-pipeline");
        }
        if groups
            .get_opt("charging-pipeline")
            .await
            .map_err(|e| e.to_string())?
            .is_some()
        {
            left.push("ConsumerGroup charging-pipeline");
        }
        Ok::<_, String>(left)
    };
    eventually(
        "the Pipeline's children",
        Duration::from_secs(30),
        || async {
            let left = children().await?;
            if left.len() == 4 {
                Ok(())
            } else {
                Err(format!("only {left:?}"))
            }
        },
    )
    .await;
    pipelines
        .delete("charging", &DeleteParams::default())
        .await
        .unwrap_or_else(|e| panic!("deleting the Pipeline: {e}"));
    eventually(
        "the Pipeline and its children to be gone",
        Duration::from_secs(60),
        || async {
            let pipeline = pipelines
                .get_opt("charging")
                .await
                .map_err(|e| e.to_string())?;
            let left = children().await?;
            if pipeline.is_none() && left.is_empty() {
                Ok(())
            } else {
                Err(format!(
                    "Pipeline present: {}; children left: {left:?}",
                    pipeline.is_some()
                ))
            }
        },
    )
    .await;

    // What it read and wrote stays: the Topics, every output record once, the group's offsets.
    let topics: Api<Topic> = Api::namespaced(client.clone(), &ns.name);
    for name in ["orders", "charges"] {
        assert!(
            topics
                .get_opt(name)
                .await
                .unwrap_or_else(|e| panic!("{e}"))
                .is_some(),
            "the Topic {name} went with the Pipeline"
        );
    }
    let ids: Vec<u64> = committed_ids(env, &output, PARTITIONS);
    assert_eq!(
        tally_of(&ids, &(0..RECORDS).collect::<Vec<_>>()),
        EXACTLY_ONCE,
        "the output after the deletion"
    );
    assert_eq!(
        read_all(env, &input, PARTITIONS, "read_committed").len() as u64,
        RECORDS,
        "the input after the deletion"
    );
    assert_eq!(
        w.committed_offsets(&config.group_id)
            .await
            .unwrap_or_else(|e| panic!("{e}")),
        committed,
        "the group's committed offsets after the deletion"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
