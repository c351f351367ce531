//! GitOps (issue #11): what Flux and Argo CD make of the operator's real objects, and the
//! metric series a dashboard shows. The verdicts come from `tools/gitops` (`make tools`), which
//! runs kstatus (the library Flux computes health with) and the chart's Argo CD health checks
//! (`charts/exactly/argocd/health.yaml`) with gopher-lua, as Argo CD runs them.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use exactly::api::{ConsumerGroup, KafkaCluster, Pipeline, Producer, Topic};
use exactly_testenv::{TestNamespace, eventually, shared};
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams};
use kube::discovery::ApiResource;
use kube::{Client, Resource};
use serde::Deserialize;

use crate::examples::apply_example_in;
use crate::support::{Operator, create, create_cluster, ready_of, run_operator};

const TIMEOUT: Duration = Duration::from_secs(60);

/// The checker `make tools` built from `tools/gitops`; a missing one names the command.
fn checker() -> PathBuf {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../tools/install.sh");
    let output = Command::new("bash")
        .args([script, "--print-gitops"])
        .output()
        .unwrap_or_else(|e| panic!("{script} --print-gitops: {e}"));
    let path = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
    assert!(
        path.exists(),
        "the GitOps checker {} is missing: run `make tools` (or `tools/install.sh gitops`)",
        path.display()
    );
    path
}

#[derive(Clone, Debug, Deserialize)]
struct Verdict {
    status: String,
    message: String,
}

/// What kstatus and the Argo CD health check said of one object.
#[derive(Clone, Debug, Deserialize)]
struct Verdicts {
    kind: String,
    name: String,
    kstatus: Verdict,
    argocd: Verdict,
}

/// Runs the checker over `objects`, as the API server returned them.
fn verdicts(objects: Vec<serde_json::Value>) -> Vec<Verdicts> {
    let health = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../charts/exactly/argocd/health.yaml"
    );
    let mut child = Command::new(checker())
        .args(["--argocd", health])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("exactly-gitops: {e}"));
    let list = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": objects});
    child
        .stdin
        .take()
        .map(|mut stdin| stdin.write_all(list.to_string().as_bytes()))
        .transpose()
        .unwrap_or_else(|e| panic!("exactly-gitops stdin: {e}"));
    let output = child
        .wait_with_output()
        .unwrap_or_else(|e| panic!("exactly-gitops: {e}"));
    assert!(
        output.status.success(),
        "exactly-gitops failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{line}: {e}")))
        .collect()
}

/// The resource of kind `K` for a dynamic API.
fn resource<K: Resource<DynamicType = ()>>() -> ApiResource {
    ApiResource::erase::<K>(&())
}

fn every_kind() -> [ApiResource; 5] {
    [
        resource::<KafkaCluster>(),
        resource::<Topic>(),
        resource::<Producer>(),
        resource::<ConsumerGroup>(),
        resource::<Pipeline>(),
    ]
}

/// Every object of the exactly kinds in `ns`, as the API server returns it.
async fn objects(client: &Client, ns: &str) -> Result<Vec<serde_json::Value>, String> {
    let mut all = Vec::new();
    for resource in every_kind() {
        let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &resource);
        for mut object in api
            .list(&ListParams::default())
            .await
            .map_err(|e| e.to_string())?
            .items
        {
            object.types = Some(kube::core::TypeMeta {
                api_version: resource.api_version.clone(),
                kind: resource.kind.clone(),
            });
            all.push(serde_json::to_value(&object).map_err(|e| e.to_string())?);
        }
    }
    Ok(all)
}

/// The verdicts on one object of `ns`, read afresh.
async fn verdicts_of(client: &Client, ns: &str, kind: &str, name: &str) -> Verdicts {
    let all = verdicts(objects(client, ns).await.unwrap_or_else(|e| panic!("{e}")));
    all.into_iter()
        .find(|v| v.kind == kind && v.name == name)
        .unwrap_or_else(|| panic!("no {kind} {name} in {ns}"))
}

/// Waits until the verdicts on `kind` `name` are `kstatus` and `argocd`; returns them.
async fn wait_for_verdicts(
    client: &Client,
    ns: &str,
    kind: &str,
    name: &str,
    kstatus: &str,
    argocd: &str,
) -> Verdicts {
    eventually(
        &format!("{kind} {name} to be {kstatus} to kstatus and {argocd} to Argo CD"),
        TIMEOUT,
        || async {
            let v = verdicts_of(client, ns, kind, name).await;
            if v.kstatus.status == kstatus && v.argocd.status == argocd {
                Ok(v)
            } else {
                Err(format!("{v:?}"))
            }
        },
    )
    .await
}

#[tokio::test]
async fn every_kind_when_ready_is_current_to_kstatus_and_healthy_to_argo_cd() {
    let env = shared();
    let ns = env.namespace("gitops-ready").await;
    let client = env.client().await.unwrap_or_else(|e| panic!("{e}"));
    run_operator(client.clone(), &ns.name);
    // A cluster, two Topics, a Producer, a ConsumerGroup and a Pipeline, all Ready.
    apply_example_in(&ns, "quickstart.yaml", 6, Some(&env.bootstrap_servers)).await;
    let seen = eventually("every object Current and Healthy", TIMEOUT, || async {
        let all = verdicts(objects(&client, &ns.name).await?);
        let off: Vec<&Verdicts> = all
            .iter()
            .filter(|v| v.kstatus.status != "Current" || v.argocd.status != "Healthy")
            .collect();
        if off.is_empty() {
            Ok(all.clone())
        } else {
            Err(format!("{off:?}"))
        }
    })
    .await;
    let mut kinds: Vec<&str> = seen.iter().map(|v| v.kind.as_str()).collect();
    kinds.sort();
    kinds.dedup();
    assert_eq!(
        kinds,
        [
            "ConsumerGroup",
            "KafkaCluster",
            "Pipeline",
            "Producer",
            "Topic"
        ],
        "{seen:?}"
    );
}

#[tokio::test]
async fn a_resource_waiting_for_its_cluster_is_in_progress_and_progressing() {
    let env = shared();
    let ns = env.namespace("gitops-waiting").await;
    let client = env.client().await.unwrap_or_else(|e| panic!("{e}"));
    run_operator(client.clone(), &ns.name);
    create::<Topic>(
        &client,
        &ns,
        "orders",
        serde_json::json!({"clusterRef": {"name": "absent"}, "topicName": ns.unique("orders"),
            "partitions": 1}),
    )
    .await;
    let v = wait_for_verdicts(
        &client,
        &ns.name,
        "Topic",
        "orders",
        "InProgress",
        "Progressing",
    )
    .await;
    assert!(
        v.argocd.message.contains("'absent' does not exist"),
        "{v:?}"
    );
}

#[tokio::test]
async fn a_spec_change_not_yet_reconciled_is_in_progress_and_progressing() {
    let env = shared();
    let ns = env.namespace("gitops-generation").await;
    let client = env.client().await.unwrap_or_else(|e| panic!("{e}"));
    let operator = Operator::start(client.clone(), &ns.name);
    create_cluster(&client, &ns, env).await;
    let topics = create::<Topic>(
        &client,
        &ns,
        "orders",
        serde_json::json!({"clusterRef": {"name": "local"}, "topicName": ns.unique("orders"),
            "partitions": 1}),
    )
    .await;
    wait_for_verdicts(&client, &ns.name, "Topic", "orders", "Current", "Healthy").await;
    // With no operator running, the new generation stays unobserved.
    operator.stop().await;
    topics
        .patch(
            "orders",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"spec": {"partitions": 2}})),
        )
        .await
        .unwrap_or_else(|e| panic!("patch: {e}"));
    let v = verdicts_of(&client, &ns.name, "Topic", "orders").await;
    assert_eq!(
        (v.kstatus.status.as_str(), v.argocd.status.as_str()),
        ("InProgress", "Progressing"),
        "{v:?}"
    );
    assert!(v.kstatus.message.contains("generation is 2"), "{v:?}");
    assert!(v.argocd.message.contains("generation 2"), "{v:?}");
}

/// kstatus's rule for a custom resource without status is `Current` (it cannot tell a resource
/// no controller has seen yet from one whose controller writes no status); Argo CD's check says
/// Progressing until the operator's first status.
#[tokio::test]
async fn a_resource_before_its_first_status_is_current_to_kstatus_and_progressing_to_argo_cd() {
    let env = shared();
    let ns = env.namespace("gitops-new").await;
    let client = env.client().await.unwrap_or_else(|e| panic!("{e}"));
    // No operator in this namespace: the Topic keeps no status.
    create::<Topic>(
        &client,
        &ns,
        "orders",
        serde_json::json!({"clusterRef": {"name": "local"}, "topicName": ns.unique("orders"),
            "partitions": 1}),
    )
    .await;
    let v = verdicts_of(&client, &ns.name, "Topic", "orders").await;
    assert_eq!(
        (v.kstatus.status.as_str(), v.argocd.status.as_str()),
        ("Current", "Progressing"),
        "{v:?}"
    );
}

#[tokio::test]
async fn what_the_cluster_refuses_is_failed_to_kstatus_and_degraded_to_argo_cd() {
    let env = shared();
    let ns = env.namespace("gitops-stalled").await;
    let client = env.client().await.unwrap_or_else(|e| panic!("{e}"));
    run_operator(client.clone(), &ns.name);
    create_cluster(&client, &ns, env).await;
    // The environment's Kafka has one broker: replication 3 is refused by the broker.
    let topics = create::<Topic>(
        &client,
        &ns,
        "orders",
        serde_json::json!({"clusterRef": {"name": "local"}, "topicName": ns.unique("orders"),
            "partitions": 1, "replicationFactor": 3}),
    )
    .await;
    // A client override that would weaken exactly-once is refused by the operator.
    create::<Producer>(
        &client,
        &ns,
        "writer",
        serde_json::json!({"clusterRef": {"name": "local"}, "topics": [{"name": "orders"}],
            "transactionalIdPrefix": ns.unique("writer"), "clientOverrides": {"acks": "1"}}),
    )
    .await;
    let topic = wait_for_verdicts(&client, &ns.name, "Topic", "orders", "Failed", "Degraded").await;
    let reason = topics
        .get("orders")
        .await
        .ok()
        .as_ref()
        .and_then(ready_of)
        .map(|(_, reason, _)| reason);
    assert_eq!(reason.as_deref(), Some("TopicRefused"), "{topic:?}");
    assert_eq!(topic.kstatus.message, topic.argocd.message);
    let producer = wait_for_verdicts(
        &client, &ns.name, "Producer", "writer", "Failed", "Degraded",
    )
    .await;
    assert!(producer.argocd.message.contains("acks"), "{producer:?}");
}

/// The `namespace`'s series in a scrape of the operator's /metrics endpoint.
async fn series_of_namespace(
    address: std::net::SocketAddr,
    ns: &str,
) -> Result<Vec<String>, String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
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
    let label = format!("namespace=\"{ns}\"");
    Ok(body
        .lines()
        .filter(|l| l.contains(&label))
        .map(str::to_string)
        .collect())
}

#[tokio::test]
async fn deleting_a_resource_removes_its_metric_series() {
    let env = shared();
    let ns: TestNamespace = env.namespace("gitops-metrics").await;
    let client = env.client().await.unwrap_or_else(|e| panic!("{e}"));
    let metrics = Arc::new(exactly::metrics::Metrics::default());
    crate::support::run_operator_with_metrics(client.clone(), &ns.name, metrics.clone());
    let address = exactly::http::serve(
        "127.0.0.1:0".parse().unwrap_or_else(|e| panic!("{e}")),
        metrics,
    )
    .await
    .unwrap_or_else(|e| panic!("serve: {e}"));
    apply_example_in(&ns, "quickstart.yaml", 6, Some(&env.bootstrap_servers)).await;
    // Each kind with series of its own: the cluster, the Producer, the ConsumerGroup and the
    // Pipeline (which also has a Producer and a ConsumerGroup of its own).
    let names = ["main", "orders-writer", "billing", "charging"];
    eventually("every resource's series", TIMEOUT, || async {
        let series = series_of_namespace(address, &ns.name).await?;
        let missing: Vec<&str> = names
            .iter()
            .copied()
            .filter(|n| !series.iter().any(|l| l.contains(&format!("name=\"{n}\""))))
            .collect();
        if missing.is_empty() {
            Ok(())
        } else {
            Err(format!("none for {missing:?} in {series:?}"))
        }
    })
    .await;

    // The ConsumerGroup first: only its series go.
    let groups: Api<ConsumerGroup> = Api::namespaced(client.clone(), &ns.name);
    groups
        .delete("billing", &DeleteParams::default())
        .await
        .unwrap_or_else(|e| panic!("delete billing: {e}"));
    eventually(
        "the deleted ConsumerGroup's series to go",
        TIMEOUT,
        || async {
            let series = series_of_namespace(address, &ns.name).await?;
            let billing: Vec<&String> = series
                .iter()
                .filter(|l| l.contains("name=\"billing\""))
                .collect();
            if billing.is_empty() {
                Ok(())
            } else {
                Err(format!("{billing:?}"))
            }
        },
    )
    .await;
    let series = series_of_namespace(address, &ns.name)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        series.iter().any(|l| l.contains("name=\"orders-writer\"")),
        "another resource's series went too: {series:?}"
    );

    // Then everything else: no series of the namespace is left.
    for resource in every_kind() {
        let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), &ns.name, &resource);
        api.delete_collection(&DeleteParams::default(), &ListParams::default())
            .await
            .unwrap_or_else(|e| panic!("delete every {}: {e}", resource.kind));
    }
    eventually("every series of the namespace to go", TIMEOUT, || async {
        let series = series_of_namespace(address, &ns.name).await?;
        if series.is_empty() {
            Ok(())
        } else {
            Err(format!("{series:?}"))
        }
    })
    .await;
}
