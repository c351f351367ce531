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

#[test]
fn a_killed_environment_leaves_its_node_to_the_kernel_and_its_cgroups_to_the_next_one() {
    let dir = std::env::temp_dir().join(format!(
        "exactly-killed-env-{:06x}",
        exactly_testenv::env::random_u64() & 0xff_ffff
    ));
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
    let exports = dir.join("env.sh");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_exactly-env"))
        .arg("--no-crds")
        .arg("--env-file")
        .arg(&exports)
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(dir.join("env.log")).unwrap_or_else(|e| panic!("{e}")))
        .spawn()
        .unwrap_or_else(|e| panic!("exactly-env: {e}"));
    // The file is written once the real node is Ready.
    let started = std::time::Instant::now();
    while !exports.exists() {
        assert!(
            started.elapsed() < Duration::from_secs(180),
            "exactly-env never became ready: {}",
            std::fs::read_to_string(dir.join("env.log")).unwrap_or_default()
        );
        assert!(
            child.try_wait().ok().flatten().is_none(),
            "exactly-env exited"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let text = std::fs::read_to_string(&exports).unwrap_or_else(|e| panic!("{e}"));
    let export = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("export {key}=")))
            .map(str::to_string)
            .unwrap_or_else(|| panic!("{key} not in {text}"))
    };
    let (env_dir, link, cgroup) = (
        export("EXACTLY_ENV_DIR"),
        export("EXACTLY_NODE_LINK"),
        export("EXACTLY_NODE_CGROUP"),
    );
    let node_dir = format!("{env_dir}/node");
    let cgroup_root = std::path::Path::new("/sys/fs/cgroup");
    let cgroup_dir = if cgroup_root.join("cgroup.controllers").exists() {
        cgroup_root.join(&cgroup)
    } else {
        cgroup_root.join("memory").join(&cgroup)
    };
    let processes = || -> Vec<String> {
        std::fs::read_dir("/proc")
            .map(|entries| {
                entries
                    .flatten()
                    .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
                    .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
                    .filter(|c| c.contains(&node_dir))
                    .collect()
            })
            .unwrap_or_default()
    };
    assert!(
        !processes().is_empty(),
        "no node processes seen while it runs"
    );
    assert!(std::path::Path::new("/sys/class/net").join(&link).exists());
    assert!(cgroup_dir.exists(), "{} not made", cgroup_dir.display());

    // SIGKILL: no shutdown code runs.
    child.kill().unwrap_or_else(|e| panic!("{e}"));
    let _ = child.wait();
    let started = std::time::Instant::now();
    loop {
        let left = processes();
        let link_left = std::path::Path::new("/sys/class/net").join(&link).exists();
        if left.is_empty() && !link_left {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "15 s after the kill: processes {left:#?}, link {link} there: {link_left}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // Only empty cgroups remain, which the next environment removes as it starts.
    if cgroup_dir.exists() {
        exactly_testenv::node::remove_stale_cgroups();
    }
    assert!(!cgroup_dir.exists(), "{} left", cgroup_dir.display());
    let _ = std::fs::remove_dir_all(&env_dir);
    let _ = std::fs::remove_dir_all(&dir);
}
