//! Pipeline: the operator renders the workers (a StatefulSet), their configuration, and the
//! Producer and ConsumerGroup that reserve the prefix and watch the group; the status names every
//! exactly-once link that fails.

use std::time::Duration;

use exactly::api::{ConsumerGroup, Pipeline, PipelineStatus, Producer, Topic};
use exactly_testenv::{TestNamespace, eventually, shared};
use exactly_worker::WorkerConfig;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Secret;
use kube::Client;
use kube::api::{Api, PostParams};

use crate::support::{condition, create, create_cluster};

const TIMEOUT: Duration = Duration::from_secs(60);

/// The operator, cluster `local`, Topics `orders` and `charges` (Ready), in a fresh namespace.
async fn setup(prefix: &str) -> (TestNamespace, Client) {
    let (ns, client, _) = setup_with_metrics(prefix).await;
    (ns, client)
}

/// [`setup`], with the operator's metrics.
async fn setup_with_metrics(
    prefix: &str,
) -> (
    TestNamespace,
    Client,
    std::sync::Arc<exactly::metrics::Metrics>,
) {
    let env = shared();
    let ns = env.namespace(prefix).await;
    let client = env.client().await.unwrap_or_else(|e| panic!("{e}"));
    let metrics = std::sync::Arc::new(exactly::metrics::Metrics::default());
    crate::support::run_operator_with_metrics(client.clone(), &ns.name, metrics.clone());
    create_cluster(&client, &ns, env).await;
    for name in ["orders", "charges"] {
        create::<Topic>(
            &client,
            &ns,
            name,
            serde_json::json!({"clusterRef": {"name": "local"}, "topicName": ns.unique(name),
                "partitions": 3}),
        )
        .await;
    }
    (ns, client, metrics)
}

/// A Pipeline manifest reading `orders` and writing `charges`, with `extra` merged into its spec.
fn pipeline(name: &str, extra: serde_json::Value) -> Pipeline {
    let mut spec = serde_json::json!({
        "clusterRef": {"name": "local"},
        "input": {"topics": [{"name": "orders"}]},
        "output": {"topicRef": {"name": "charges"}},
    });
    if let (Some(spec), Some(extra)) = (spec.as_object_mut(), extra.as_object()) {
        for (k, v) in extra {
            spec.insert(k.clone(), v.clone());
        }
    }
    serde_json::from_value(serde_json::json!({
        "apiVersion": "exactly.dev/v1alpha1",
        "kind": "Pipeline",
        "metadata": {"name": name},
        "spec": spec,
    }))
    .unwrap_or_else(|e| panic!("pipeline manifest: {e}"))
}

async fn create_pipeline(pipelines: &Api<Pipeline>, manifest: &Pipeline) {
    pipelines
        .create(&PostParams::default(), manifest)
        .await
        .unwrap_or_else(|e| panic!("create pipeline: {e}"));
}

/// Asserts that no worker StatefulSet `set` exists: nothing runs while a link fails.
async fn assert_no_workers(client: &Client, ns: &str, set: &str, why: &str) {
    let sets: Api<StatefulSet> = Api::namespaced(client.clone(), ns);
    assert!(
        sets.get_opt(set)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .is_none(),
        "{why}"
    );
}

async fn status_when(
    client: &Client,
    ns: &str,
    name: &str,
    what: &str,
    check: impl Fn(&PipelineStatus) -> bool,
) -> PipelineStatus {
    let pipelines: Api<Pipeline> = Api::namespaced(client.clone(), ns);
    eventually(what, TIMEOUT, || async {
        let p = pipelines.get(name).await.map_err(|e| e.to_string())?;
        let status = p.status.unwrap_or_default();
        if check(&status) {
            Ok(status)
        } else {
            Err(format!("{status:?}"))
        }
    })
    .await
}

#[tokio::test]
async fn a_pipeline_is_rendered_into_workers_their_configuration_a_producer_and_a_group() {
    let (ns, client) = setup("pipeline-render").await;
    let pipelines: Api<Pipeline> = Api::namespaced(client.clone(), &ns.name);
    let manifest = pipeline(
        "billing",
        serde_json::json!({
            "replicas": 2,
            "transform": {"type": "Jq", "jq": {"filter": "select(.amount > 0) | {order: .id, amount}"}},
        }),
    );
    create_pipeline(&pipelines, &manifest).await;

    let sets: Api<StatefulSet> = Api::namespaced(client.clone(), &ns.name);
    let set = eventually("the worker StatefulSet", TIMEOUT, || async {
        sets.get_opt("billing-worker")
            .await
            .map_err(|e| e.to_string())?
            .ok_or_else(|| "not yet".to_string())
    })
    .await;
    assert_eq!(set.spec.replicas, Some(2));
    let pod = set.spec.template.spec.unwrap_or_default();
    let container = &pod.containers[0];
    assert_eq!(
        container.command.as_ref().map(|c| c[0].as_str()),
        Some("exactly-worker")
    );
    assert_eq!(pod.automount_service_account_token, Some(false));

    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns.name);
    let secret = secrets
        .get("billing-pipeline")
        .await
        .unwrap_or_else(|e| panic!("the worker configuration Secret: {e}"));
    let json = secret
        .data
        .unwrap_or_default()
        .get("pipeline.json")
        .map(|b| b.0.clone())
        .unwrap_or_else(|| panic!("no pipeline.json in the Secret"));
    let config: WorkerConfig =
        serde_json::from_slice(&json).unwrap_or_else(|e| panic!("pipeline.json: {e}"));
    assert_eq!(config.input_topics, [ns.unique("orders")]);
    assert_eq!(
        config.output.topics.get("charges"),
        Some(&ns.unique("charges"))
    );
    assert_eq!(config.group_id, format!("{}.billing", ns.name));
    assert_eq!(
        config.transactional_id_prefix,
        format!("{}.billing", ns.name)
    );
    assert_eq!(config.commit_interval_ms, 100);
    assert_eq!(config.bootstrap_servers, shared().bootstrap_servers);
    assert!(config.validate().is_empty(), "{:?}", config.validate());

    // The Producer reserves the prefix for the workers' ordinals; the group is read_committed.
    let producers: Api<Producer> = Api::namespaced(client.clone(), &ns.name);
    let producer = producers
        .get("billing-pipeline")
        .await
        .unwrap_or_else(|e| panic!("the pipeline's Producer: {e}"));
    assert_eq!(
        producer.spec.transactional_id_prefix,
        format!("{}.billing", ns.name)
    );
    assert_eq!(
        producer.spec.stateful_set_ref.map(|s| s.name).as_deref(),
        Some("billing-worker")
    );
    let groups: Api<ConsumerGroup> = Api::namespaced(client.clone(), &ns.name);
    let group = groups
        .get("billing-pipeline")
        .await
        .unwrap_or_else(|e| panic!("the pipeline's ConsumerGroup: {e}"));
    assert_eq!(
        group.spec.group_id,
        Some(format!("{}.billing", ns.name)),
        "the default group id is namespaced: group ids are global to the Kafka cluster"
    );
    assert_eq!(group.spec.isolation, exactly::api::Isolation::ReadCommitted);

    // kwok reports both worker pods Ready (no container runs there); the single development
    // broker fails the cluster's exactly-once rules, and the Pipeline says so.
    let status = status_when(&client, &ns.name, "billing", "the workers ready", |s| {
        s.workers.as_deref() == Some("2/2")
    })
    .await;
    assert_eq!(
        condition(&status.conditions, "Ready").map(|c| (c.0, c.1)),
        Some(("True".into(), "WorkersReady".into()))
    );
    assert_eq!(status.failed_links, ["Cluster"]);
    let eos = condition(&status.conditions, "ExactlyOnceReady")
        .unwrap_or_else(|| panic!("no ExactlyOnceReady"));
    assert_eq!(eos.0, "False");
    assert!(
        eos.2
            .contains("KafkaCluster 'local' is not ExactlyOnceReady"),
        "{}",
        eos.2
    );
    assert_eq!(status.input.as_deref(), Some(ns.unique("orders").as_str()));
    assert_eq!(
        status.output.as_deref(),
        Some(ns.unique("charges").as_str())
    );
}

#[tokio::test]
async fn a_pipelines_workers_and_links_are_exported_as_prometheus_metrics() {
    let (ns, client, metrics) = setup_with_metrics("pipeline-metrics").await;
    let pipelines: Api<Pipeline> = Api::namespaced(client.clone(), &ns.name);
    pipelines
        .create(
            &PostParams::default(),
            &pipeline("copy", serde_json::json!({"replicas": 2})),
        )
        .await
        .unwrap_or_else(|e| panic!("create pipeline: {e}"));
    let labels = format!("{{namespace=\"{}\",name=\"copy\"}}", ns.name);
    let want = [
        format!("exactly_pipeline_workers_ready{labels} 2"),
        // The single development broker fails the cluster's rules: the Cluster link fails.
        format!("exactly_pipeline_exactly_once_ready{labels} 0"),
        format!("exactly_pipeline_lag{labels} 0"),
    ];
    eventually("the pipeline's metrics", TIMEOUT, || async {
        let text = metrics.encode();
        let missing: Vec<&String> = want.iter().filter(|w| !text.contains(w.as_str())).collect();
        if missing.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "missing {missing:?} in {:?}",
                text.lines()
                    .filter(|l| l.starts_with("exactly_pipeline"))
                    .collect::<Vec<_>>()
            ))
        }
    })
    .await;
}

#[tokio::test]
async fn a_jq_filter_that_does_not_compile_is_named_in_status_and_no_workers_are_rendered() {
    let (ns, client) = setup("pipeline-badjq").await;
    let pipelines: Api<Pipeline> = Api::namespaced(client.clone(), &ns.name);
    let manifest = pipeline(
        "broken",
        serde_json::json!({"transform": {"type": "Jq", "jq": {"filter": "{order: .id"}}}),
    );
    create_pipeline(&pipelines, &manifest).await;
    let status = status_when(
        &client,
        &ns.name,
        "broken",
        "the WorkerConfig link to fail",
        |s| s.failed_links.iter().any(|l| l == "WorkerConfig"),
    )
    .await;
    let ready = condition(&status.conditions, "Ready").unwrap_or_else(|| panic!("no Ready"));
    assert_eq!(
        (ready.0.as_str(), ready.1.as_str()),
        ("False", "WaitingForLinks")
    );
    assert!(ready.2.contains("transform"), "{}", ready.2);
    assert_eq!(
        condition(&status.conditions, "Stalled").map(|c| c.0),
        Some("True".into())
    );
    assert_no_workers(
        &client,
        &ns.name,
        "broken-worker",
        "workers were rendered for a transform that does not compile",
    )
    .await;
}

#[tokio::test]
async fn a_pipeline_whose_output_topic_is_missing_waits_naming_it() {
    let (ns, client) = setup("pipeline-missing").await;
    let pipelines: Api<Pipeline> = Api::namespaced(client.clone(), &ns.name);
    let manifest = pipeline(
        "waiting",
        serde_json::json!({"output": {"topicRef": {"name": "refunds"}}}),
    );
    create_pipeline(&pipelines, &manifest).await;
    let status = status_when(
        &client,
        &ns.name,
        "waiting",
        "the OutputTopics link to fail",
        |s| s.failed_links.iter().any(|l| l == "OutputTopics"),
    )
    .await;
    let ready = condition(&status.conditions, "Ready").unwrap_or_else(|| panic!("no Ready"));
    assert!(
        ready.2.contains("Topic 'refunds' does not exist"),
        "{}",
        ready.2
    );
}

#[tokio::test]
async fn a_pipeline_whose_input_topic_is_missing_waits_naming_it() {
    let (ns, client) = setup("pipeline-noinput").await;
    let pipelines: Api<Pipeline> = Api::namespaced(client.clone(), &ns.name);
    let manifest = pipeline(
        "waiting",
        serde_json::json!({"input": {"topics": [{"name": "orders"}, {"name": "returns"}]}}),
    );
    create_pipeline(&pipelines, &manifest).await;
    // Once the cluster and `orders` are Ready, only the missing Topic is left to name.
    let status = status_when(
        &client,
        &ns.name,
        "waiting",
        "InputTopics to fail for returns alone",
        |s| {
            condition(&s.conditions, "ExactlyOnceReady").is_some_and(|c| {
                c.2.contains("InputTopics: Topic 'returns' does not exist in this namespace")
            })
        },
    )
    .await;
    assert!(status.failed_links.contains(&"InputTopics".to_string()));
    assert_no_workers(
        &client,
        &ns.name,
        "waiting-worker",
        "workers were rendered before their input exists",
    )
    .await;
}

#[tokio::test]
async fn a_transaction_timeout_above_the_brokers_maximum_fails_the_transaction_timeout_link() {
    let (ns, client) = setup("pipeline-timeout").await;
    let pipelines: Api<Pipeline> = Api::namespaced(client.clone(), &ns.name);
    // The environment's broker keeps Kafka's default transaction.max.timeout.ms, 15 minutes.
    let manifest = pipeline("slow", serde_json::json!({"transactionTimeout": "20m"}));
    pipelines
        .create(&PostParams::default(), &manifest)
        .await
        .unwrap_or_else(|e| panic!("create pipeline: {e}"));
    let status = status_when(
        &client,
        &ns.name,
        "slow",
        "the TransactionTimeout link to fail",
        |s| s.failed_links.iter().any(|l| l == "TransactionTimeout"),
    )
    .await;
    let eos = condition(&status.conditions, "ExactlyOnceReady")
        .unwrap_or_else(|| panic!("no ExactlyOnceReady"));
    assert!(
        eos.2
            .contains("1200000 ms, above the brokers' transaction.max.timeout.ms 900000"),
        "{}",
        eos.2
    );
}

#[tokio::test]
async fn a_prefix_an_older_producer_holds_fails_the_prefix_reservation_link() {
    let (ns, client) = setup("pipeline-prefix").await;
    create::<Producer>(
        &client,
        &ns,
        "legacy",
        serde_json::json!({"clusterRef": {"name": "local"}, "topics": [{"name": "charges"}],
            "transactionalIdPrefix": ns.unique("shared")}),
    )
    .await;
    let producers: Api<Producer> = Api::namespaced(client.clone(), &ns.name);
    eventually("the older Producer to be Ready", TIMEOUT, || async {
        let p = producers.get("legacy").await.map_err(|e| e.to_string())?;
        match p
            .status
            .as_ref()
            .and_then(|s| condition(&s.conditions, "Ready"))
        {
            Some((s, _, _)) if s == "True" => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    // Claims are ordered by creationTimestamp, which has one-second resolution (ties go by
    // namespace/name): make the Pipeline's Producer younger by the clock, not by its name.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let pipelines: Api<Pipeline> = Api::namespaced(client.clone(), &ns.name);
    let manifest = pipeline(
        "copycat",
        serde_json::json!({"transactionalIdPrefix": ns.unique("shared")}),
    );
    create_pipeline(&pipelines, &manifest).await;
    let status = status_when(
        &client,
        &ns.name,
        "copycat",
        "the PrefixReservation link to fail",
        |s| s.failed_links.iter().any(|l| l == "PrefixReservation"),
    )
    .await;
    let eos = condition(&status.conditions, "ExactlyOnceReady")
        .unwrap_or_else(|| panic!("no ExactlyOnceReady"));
    assert!(eos.2.contains(&ns.unique("shared")), "{}", eos.2);
}

/// The API server's refusal of `manifest` under server dry-run.
async fn dry_run_refusal(client: &Client, ns: &str, manifest: &Pipeline) -> String {
    let pipelines: Api<Pipeline> = Api::namespaced(client.clone(), ns);
    match pipelines
        .create(
            &PostParams {
                dry_run: true,
                ..PostParams::default()
            },
            manifest,
        )
        .await
    {
        Err(kube::Error::Api(status)) if status.code == 422 => status.message,
        other => panic!("expected a 422 refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn server_dry_run_refuses_pipeline_specs_that_break_a_rule_naming_it() {
    let env = shared();
    let ns = env.namespace("pipeline-cel").await;
    let client = env.client().await.unwrap_or_else(|e| panic!("{e}"));
    for (spec, expected) in [
        (
            serde_json::json!({"commitInterval": "10s", "transactionTimeout": "30s"}),
            "commitInterval must be at most a tenth of transactionTimeout",
        ),
        (
            serde_json::json!({"errorPolicy": {"action": "DeadLetter"}}),
            "DeadLetter needs errorPolicy.deadLetterTopicRef",
        ),
        (
            serde_json::json!({"output": {"topicRef": {"name": "orders"}}}),
            "output.topicRef must not be one of input.topics",
        ),
        (
            serde_json::json!({"output": {"topicRef": {"name": "charges"}, "route": {"by": "Key", "rules": [{"value": "a", "topicRef": {"name": "x"}}]}}}),
            "set exactly one of output.topicRef",
        ),
        (
            serde_json::json!({"transform": {"type": "Jq"}}),
            "transform.type Jq needs transform.jq.filter",
        ),
        (
            serde_json::json!({"commitInterval": "soon"}),
            "commitInterval",
        ),
    ] {
        let message = dry_run_refusal(&client, &ns.name, &pipeline("p", spec.clone())).await;
        assert!(message.contains(expected), "{spec}: {message}");
    }
    // Kubernetes durations are taken as such.
    let pipelines: Api<Pipeline> = Api::namespaced(client.clone(), &ns.name);
    pipelines
        .create(
            &PostParams {
                dry_run: true,
                ..PostParams::default()
            },
            &pipeline(
                "p",
                serde_json::json!({"commitInterval": "1s500ms", "transactionTimeout": "1h30m"}),
            ),
        )
        .await
        .unwrap_or_else(|e| panic!("1s500ms / 1h30m refused: {e}"));
}
