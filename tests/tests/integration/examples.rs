//! The manifests in `examples/` work when pasted: applied as they are (bootstrap address aside),
//! every resource becomes Ready on the real environment.

use std::time::Duration;

use exactly::api::conditions;
use exactly_testenv::{TestNamespace, eventually, shared};
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::discovery::{ApiResource, Discovery};
use serde::Deserialize;

use crate::support::run_operator;

/// Applies one example into a fresh namespace, as pasted, except: the bootstrap address points at
/// the environment's broker, and Kafka-side names (topics, transactional id prefixes, group ids)
/// get the namespace as a prefix, since every test shares one broker. Waits for every resource
/// to be Ready.
async fn apply_example(file: &str, expected: usize) {
    let env = shared();
    let prefix = format!("example-{}", file.trim_end_matches(".yaml"));
    let ns = env.namespace(&prefix[..prefix.len().min(40)]).await;
    let client = env.client().await.unwrap_or_else(|e| panic!("{e}"));
    run_operator(client.clone(), &ns.name);
    apply_example_in(&ns, file, expected, Some(&env.bootstrap_servers)).await;
}

/// [`apply_example`] into `ns`, where an operator already runs; with `bootstrap`, the examples'
/// bootstrap address is replaced by it (an operator on the host cannot resolve Service names),
/// without, it stays as pasted (an operator in a pod of the real node reaches the broker as
/// `kafka-bootstrap.kafka.svc:9092`).
pub(crate) async fn apply_example_in(
    ns: &TestNamespace,
    file: &str,
    expected: usize,
    bootstrap: Option<&str>,
) {
    let env = shared();
    let client = env.client().await.unwrap_or_else(|e| panic!("{e}"));
    let path = format!("{}/../examples/{file}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let text = match bootstrap {
        Some(address) => text.replace("kafka-bootstrap.kafka.svc:9092", address),
        None => text,
    };
    let discovery = Discovery::new(client.clone())
        .run()
        .await
        .unwrap_or_else(|e| panic!("discovery: {e}"));
    let mut applied = Vec::new();
    for document in serde_norway::Deserializer::from_str(&text) {
        let mut object =
            DynamicObject::deserialize(document).unwrap_or_else(|e| panic!("{path}: {e}"));
        let types = object
            .types
            .clone()
            .unwrap_or_else(|| panic!("no apiVersion/kind"));
        let name = object.metadata.name.clone().unwrap_or_default();
        let spec = &mut object.data["spec"];
        match types.kind.as_str() {
            "Topic" => spec["topicName"] = serde_json::json!(ns.unique(&name)),
            "ConsumerGroup" => spec["groupId"] = serde_json::json!(ns.unique(&name)),
            "Producer" => {
                let prefix = spec["transactionalIdPrefix"].as_str().unwrap_or_default();
                spec["transactionalIdPrefix"] = serde_json::json!(ns.unique(prefix));
            }
            // Its transactional id prefix defaults to <namespace>.<name>, unique already.
            "Pipeline" => spec["input"]["groupId"] = serde_json::json!(ns.unique(&name)),
            _ => {}
        }
        let (group, version) = types
            .api_version
            .split_once('/')
            .unwrap_or(("", &types.api_version));
        let (resource, _) = discovery
            .resolve_gvk(&kube::core::GroupVersionKind::gvk(
                group,
                version,
                &types.kind,
            ))
            .unwrap_or_else(|| panic!("{} is not served", types.kind));
        let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), &ns.name, &resource);
        api.patch(
            &name,
            &PatchParams::apply("example-test"),
            &Patch::Apply(&object),
        )
        .await
        .unwrap_or_else(|e| panic!("apply {} {name}: {e}", types.kind));
        applied.push((resource, name));
    }
    assert_eq!(applied.len(), expected, "resources in {file}");
    for (resource, name) in &applied {
        wait_ready(&client, &ns.name, resource, name).await;
    }
}

#[tokio::test]
async fn the_quickstart_example_becomes_ready_as_pasted() {
    apply_example("quickstart.yaml", 6).await;
}

#[tokio::test]
async fn the_ecommerce_orders_example_becomes_ready_as_pasted() {
    apply_example("ecommerce-orders.yaml", 7).await;
}

#[tokio::test]
async fn the_ledger_transfers_example_becomes_ready_as_pasted() {
    apply_example("ledger-transfers.yaml", 5).await;
}

#[tokio::test]
async fn the_cdc_cache_sync_example_becomes_ready_as_pasted() {
    apply_example("cdc-cache-sync.yaml", 4).await;
}

#[tokio::test]
async fn the_provisioned_production_cluster_example_becomes_ready_as_pasted() {
    apply_example("provisioned-production.yaml", 1).await;
}

/// Runs the environment's kubectl on `file` in `ns`; returns whether it succeeded, and what it
/// printed.
fn kubectl(ns: &str, args: &[&str], file: &str) -> (std::process::ExitStatus, String) {
    let env = shared();
    let output = std::process::Command::new(&env.tools.kubectl)
        .arg("--kubeconfig")
        .arg(&env.kubeconfig)
        .args(["--namespace", ns])
        .args(args)
        .args(["-f", file])
        .output()
        .unwrap_or_else(|e| panic!("kubectl {args:?}: {e}"));
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status, printed)
}

/// The resourceVersion of each object of `file` in `ns`, by kind and name.
fn resource_versions(ns: &str, file: &str) -> Vec<(String, String, String)> {
    let (status, printed) = kubectl(ns, &["get", "-o", "json"], file);
    assert!(status.success(), "kubectl get: {printed}");
    let got: serde_json::Value =
        serde_json::from_str(&printed).unwrap_or_else(|e| panic!("{e}: {printed}"));
    // One object is printed as itself, several as a List.
    let items = match got["items"].as_array() {
        Some(items) => items.clone(),
        None => vec![got],
    };
    items
        .iter()
        .map(|o| {
            let field = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_string();
            (
                field(&o["kind"]),
                field(&o["metadata"]["name"]),
                field(&o["metadata"]["resourceVersion"]),
            )
        })
        .collect()
}

/// GitOps tools apply the same manifests again and again: once a person's `kubectl apply` (client
/// side) has been taken over by server-side apply, applying again must write nothing (no new
/// resourceVersion, no event for a watcher) and `kubectl diff` must show nothing. No operator
/// runs in these namespaces, so only the applies write.
#[tokio::test]
async fn applying_every_example_again_server_side_changes_nothing() {
    let env = shared();
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples");
    let mut files: Vec<String> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{dir}: {e}"))
        .filter_map(|e| e.ok())
        .map(|e| e.path().to_string_lossy().into_owned())
        .filter(|p| p.ends_with(".yaml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no examples in {dir}");
    for file in &files {
        let ns = env.namespace("examples-apply").await;
        for args in [&["apply"][..], &["apply", "--server-side"][..]] {
            let (status, printed) = kubectl(&ns.name, args, file);
            assert!(status.success(), "kubectl {args:?} {file}: {printed}");
        }
        let before = resource_versions(&ns.name, file);
        assert!(!before.is_empty(), "{file} created nothing");
        let (status, printed) = kubectl(&ns.name, &["apply", "--server-side"], file);
        assert!(
            status.success(),
            "the second server-side apply of {file}: {printed}"
        );
        assert_eq!(
            resource_versions(&ns.name, file),
            before,
            "the second server-side apply of {file} wrote: {printed}"
        );
        let (status, printed) = kubectl(&ns.name, &["diff", "--server-side"], file);
        assert!(
            status.success() && printed.trim().is_empty(),
            "kubectl diff --server-side {file} ({status}): {printed}"
        );
    }
}

#[test]
fn every_example_file_has_a_test() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples");
    let mut files: Vec<String> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{dir}: {e}"))
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    let this = include_str!("examples.rs");
    for file in files {
        assert!(
            this.contains(&format!("apply_example(\"{file}\"")),
            "examples/{file} is not applied by a test"
        );
    }
}

async fn wait_ready(client: &kube::Client, ns: &str, resource: &ApiResource, name: &str) {
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, resource);
    eventually(
        &format!("{} {name} to be Ready", resource.kind),
        Duration::from_secs(60),
        || async {
            let object = api.get(name).await.map_err(|e| e.to_string())?;
            let conditions: Vec<exactly::api::Condition> =
                serde_json::from_value(object.data["status"]["conditions"].clone())
                    .unwrap_or_default();
            match conditions::find(&conditions, "Ready") {
                Some(c) if c.status == exactly::api::ConditionStatus::True => Ok(()),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await;
}
