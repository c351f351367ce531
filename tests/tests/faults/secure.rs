//! A Pipeline on a cluster reached only over SASL_SSL (SCRAM-SHA-512, the environment's CA):
//! the workers log in with the cluster's client properties, rendered into `pipeline.json`.

use std::time::Duration;

use exactly::api::Pipeline;
use exactly_testenv::shared;
use exactly_worker::WorkerConfig;

use crate::common::{
    EXACTLY_ONCE, Workers, committed_ids, create_topics, drained, produce_records, rendered_config,
    tally_of, test_dir,
};
use crate::support::{create, run_operator, wire};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipeline_on_a_sasl_ssl_cluster_logs_its_workers_in_and_copies_every_record_once() {
    let _broker = crate::common::BROKER.read().await;
    const RECORDS: u64 = 5_000;
    const PARTITIONS: i32 = 3;

    let env = shared();
    let ns = env.namespace("secure").await;
    let client = env.client().await.unwrap_or_else(|e| panic!("{e}"));
    run_operator(client.clone(), &ns.name);
    // The cluster `local` is the broker's SASL_SSL listener alone: whatever reaches it logs in.
    crate::support::create_secure_cluster(&client, &ns.name, "local", &env.kafka_password).await;
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
    assert_eq!(config.bootstrap_servers, env.secure_bootstrap_servers);
    let property = |key: &str| config.client_properties.get(key).map(String::as_str);
    assert_eq!(
        (property("security.protocol"), property("sasl.mechanism")),
        (Some("SASL_SSL"), Some("SCRAM-SHA-512")),
        "the cluster's login is in the worker's configuration"
    );
    eprintln!("worker logs in {}", dir.display());
    let mut workers = Workers::new(config_path, dir.clone(), 1);
    // The input is written over the broker's plaintext listener: the same topics.
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
    drained(
        &wire(env),
        &config.group_id,
        &input,
        PARTITIONS,
        Duration::from_secs(90),
    )
    .await;
    let codes = workers.stop();
    assert_eq!(codes, vec![Some(0)], "the worker on SIGTERM");

    let ids: Vec<u64> = committed_ids(env, &output, PARTITIONS);
    assert_eq!(
        tally_of(&ids, &(0..RECORDS).collect::<Vec<_>>()),
        EXACTLY_ONCE,
        "every record once through the SASL_SSL listener"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
