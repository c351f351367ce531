//! The environment's real node: containers really run on it, and it leaves nothing on the host.

use std::time::Duration;

use exactly_testenv::node::{NODE_LABEL, NODE_NAME, NODE_TAINT_KEY};
use exactly_testenv::{Environment, Options, eventually};
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{Api, PostParams};

/// A pod that runs the node's sandbox image on the real node (tolerating its taint).
fn pause_pod(name: &str) -> Pod {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "nodeSelector": {NODE_LABEL.0: NODE_LABEL.1},
            "tolerations": [{"key": NODE_TAINT_KEY, "operator": "Exists", "effect": "NoSchedule"}],
            "containers": [{
                "name": "pause",
                "image": exactly_testenv::tools::version("PAUSE_IMAGE"),
                "imagePullPolicy": "Never",
            }],
        },
    }))
    .unwrap_or_else(|e| panic!("pod manifest: {e}"))
}

#[test]
fn an_environment_with_a_real_node_leaves_nothing_on_the_host_when_it_stops() {
    // An environment of its own, so that it can be stopped here.
    let env = Environment::start(Options {
        real_node: true,
        ..Options::default()
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let node = env.real_node().unwrap_or_else(|e| panic!("{e}"));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    runtime.block_on(async {
        let client = env.client().await.unwrap_or_else(|e| panic!("{e}"));
        let namespaces: Api<Namespace> = Api::all(client.clone());
        let namespace: Namespace = serde_json::from_value(
            serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "leftovers"}}),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        namespaces
            .create(&PostParams::default(), &namespace)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let pods: Api<Pod> = Api::namespaced(client, "leftovers");
        pods.create(&PostParams::default(), &pause_pod("sleeper"))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        eventually("the pod to run on the real node", Duration::from_secs(60), || async {
            let pod = pods.get("sleeper").await.map_err(|e| e.to_string())?;
            let node = pod.spec.as_ref().and_then(|s| s.node_name.clone());
            let running = pod
                .status
                .as_ref()
                .and_then(|s| s.container_statuses.as_ref())
                .and_then(|s| s.first())
                .and_then(|c| c.state.as_ref())
                .and_then(|s| s.running.as_ref())
                .is_some();
            if node.as_deref() == Some(NODE_NAME) && running {
                Ok(())
            } else {
                Err(format!("on {node:?}, running: {running}"))
            }
        })
        .await;
    });
    // While it runs, the node's link and cgroups are there: the check below can see them.
    let running = node.leftovers();
    assert!(
        running.iter().any(|l| l.starts_with("link "))
            && running.iter().any(|l| l.starts_with("cgroup "))
            && running.iter().any(|l| l.starts_with("process ")),
        "{running:#?}"
    );

    env.shutdown();
    let left = node.leftovers();
    assert!(
        left.is_empty(),
        "left on the host after shutdown: {left:#?}"
    );
}
