//! The manifests in `examples/` work when pasted: applied as they are (bootstrap address aside),
//! every resource becomes Ready on the real environment.

use std::time::Duration;

use exactly::api::conditions;
use exactly_testenv::{eventually, shared};
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::discovery::{ApiResource, Discovery};
use serde::Deserialize;

use crate::support::run_operator;

#[tokio::test]
async fn the_quickstart_example_becomes_ready_as_pasted() {
    let env = shared();
    let ns = env.namespace("example-quickstart").await;
    let client = env.client().await.unwrap_or_else(|e| panic!("{e}"));
    run_operator(client.clone(), &ns.name);
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/quickstart.yaml");
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let text = text.replace("kafka-bootstrap.kafka.svc:9092", &env.bootstrap_servers);
    // The example's topic is named `orders`: give it this test's own Kafka name.
    let kafka_topic = ns.unique("orders");
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
        if types.kind == "Topic" {
            object.data["spec"]["topicName"] = serde_json::json!(kafka_topic);
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
        let name = object.metadata.name.clone().unwrap_or_default();
        api.patch(
            &name,
            &PatchParams::apply("example-test"),
            &Patch::Apply(&object),
        )
        .await
        .unwrap_or_else(|e| panic!("apply {} {name}: {e}", types.kind));
        applied.push((resource, name));
    }
    assert_eq!(
        applied.len(),
        4,
        "the example declares a cluster, a topic, a producer and a group"
    );
    for (resource, name) in &applied {
        wait_ready(&client, &ns.name, resource, name).await;
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
