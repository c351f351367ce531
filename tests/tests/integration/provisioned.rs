//! KafkaCluster, provisioned: the operator renders the cluster's Kubernetes objects, with broker
//! settings computed by the exactly-once rules, and kwok runs the pods.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use exactly::api::KafkaCluster;
use exactly_testenv::{TestNamespace, eventually, shared};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::Client;
use kube::api::{Api, ListParams, Patch, PatchParams};

use crate::support::{condition, create, run_operator};

const TIMEOUT: Duration = Duration::from_secs(90);

async fn setup(prefix: &str, spec: serde_json::Value) -> (TestNamespace, Client) {
    let env = shared();
    let ns = env.namespace(prefix).await;
    let client = env.client().await.unwrap_or_else(|e| panic!("{e}"));
    run_operator(client.clone(), &ns.name);
    create::<KafkaCluster>(
        &client,
        &ns,
        "main",
        serde_json::json!({"provisioned": spec}),
    )
    .await;
    (ns, client)
}

async fn wait_ready(client: &Client, ns: &str) -> exactly::api::KafkaClusterStatus {
    let clusters: Api<KafkaCluster> = Api::namespaced(client.clone(), ns);
    eventually("the cluster to be Ready", TIMEOUT, || async {
        let c = clusters.get("main").await.map_err(|e| e.to_string())?;
        let status = c.status.clone().unwrap_or_default();
        match condition(&status.conditions, "Ready") {
            Some((s, _, _))
                if s == "True" && status.observed_generation == c.metadata.generation =>
            {
                Ok(status)
            }
            other => Err(format!("{other:?}")),
        }
    })
    .await
}

/// broker.properties as rendered into the ConfigMap, as key/value pairs.
async fn broker_properties(client: &Client, ns: &str, role: &str) -> BTreeMap<String, String> {
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    let map = maps
        .get("main-kafka-config")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let text = map
        .data
        .unwrap_or_default()
        .get(&format!("{role}.properties"))
        .cloned()
        .unwrap_or_default();
    exactly::controller::producer_config::parse_properties(&text)
}

fn get<'a>(c: &'a BTreeMap<String, String>, k: &str) -> Option<&'a str> {
    c.get(k).map(String::as_str)
}

#[tokio::test]
async fn a_three_controller_three_broker_cluster_becomes_ready_with_its_settings_labelled_computed_not_observed()
 {
    let (ns, client) = setup(
        "prov-3x3",
        serde_json::json!({"controllers": {"replicas": 3}, "brokers": {"replicas": 3}}),
    )
    .await;
    let status = wait_ready(&client, &ns.name).await;
    assert_eq!(
        status.ready_replicas,
        BTreeMap::from([("brokers".to_string(), 3), ("controllers".to_string(), 3)])
    );
    // kwok runs no broker and the operator does not reach the cluster network: the settings
    // are the computed ones, said so, and they cannot make the cluster ExactlyOnceReady.
    assert_eq!(
        condition(&status.conditions, "ExactlyOnceReady").map(|c| (c.0, c.1)),
        Some(("Unknown".to_string(), "NotObserved".to_string()))
    );
    let settings = status.exactly_once.clone().unwrap_or_default();
    assert_eq!(
        settings.source,
        Some(exactly::api::cluster::SettingsSource::Computed)
    );
    assert_eq!(settings.transaction_version, None);
    assert!(status.failed_rules.is_empty(), "{:?}", status.failed_rules);
    assert_eq!(
        status.bootstrap_servers.as_deref(),
        Some(format!("main-kafka.{}.svc:9092", ns.name).as_str())
    );
    let broker = broker_properties(&client, &ns.name, "broker").await;
    for (key, want) in [
        ("default.replication.factor", "3"),
        ("min.insync.replicas", "2"),
        ("offsets.topic.replication.factor", "3"),
        ("transaction.state.log.replication.factor", "3"),
        ("transaction.state.log.min.isr", "2"),
        ("unclean.leader.election.enable", "false"),
        ("auto.create.topics.enable", "false"),
        ("process.roles", "broker"),
    ] {
        assert_eq!(get(&broker, key), Some(want), "{key}");
    }
    let controller = broker_properties(&client, &ns.name, "controller").await;
    assert_eq!(get(&controller, "process.roles"), Some("controller"));
    let sets: Api<StatefulSet> = Api::namespaced(client.clone(), &ns.name);
    let names: Vec<String> = sets
        .list(&ListParams::default())
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .items
        .into_iter()
        .map(|s| s.metadata.name.unwrap_or_default())
        .collect();
    assert_eq!(names, ["main-brokers", "main-controllers"]);
    let services: Api<Service> = Api::namespaced(client.clone(), &ns.name);
    assert!(
        services
            .get_opt("main-kafka")
            .await
            .ok()
            .flatten()
            .is_some()
    );
    let pdbs: Api<PodDisruptionBudget> = Api::namespaced(client.clone(), &ns.name);
    for role in ["main-controllers", "main-brokers"] {
        assert!(
            pdbs.get_opt(role).await.ok().flatten().is_some(),
            "no PodDisruptionBudget {role}"
        );
    }
}

#[tokio::test]
async fn an_override_that_breaks_a_rule_is_refused_naming_the_key_and_the_rule() {
    let (ns, client) = setup(
        "prov-refuse",
        serde_json::json!({"config": {"unclean.leader.election.enable": "true"}}),
    )
    .await;
    let clusters: Api<KafkaCluster> = Api::namespaced(client.clone(), &ns.name);
    let message = eventually("the override to be refused", TIMEOUT, || async {
        let c = clusters.get("main").await.map_err(|e| e.to_string())?;
        match condition(&c.status.unwrap_or_default().conditions, "Ready") {
            Some((_, reason, message)) if reason == "InvalidSpec" => Ok(message),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    assert!(
        message.contains("unclean.leader.election.enable=true"),
        "{message}"
    );
    assert!(message.contains("exactly-once needs false"), "{message}");
    let sets: Api<StatefulSet> = Api::namespaced(client.clone(), &ns.name);
    assert!(
        sets.list(&ListParams::default())
            .await
            .map(|l| l.items.is_empty())
            .unwrap_or(false)
    );
}

#[tokio::test]
async fn scaling_brokers_from_one_to_three_updates_the_computed_settings() {
    let (ns, client) = setup(
        "prov-scale",
        serde_json::json!({"profile": "Development", "controllers": {"replicas": 1}, "brokers": {"replicas": 1}}),
    )
    .await;
    wait_ready(&client, &ns.name).await;
    let broker = broker_properties(&client, &ns.name, "broker").await;
    assert_eq!(get(&broker, "default.replication.factor"), Some("1"));
    assert_eq!(get(&broker, "min.insync.replicas"), Some("1"));

    let clusters: Api<KafkaCluster> = Api::namespaced(client.clone(), &ns.name);
    let patch = serde_json::json!({"spec": {"provisioned": {"brokers": {"replicas": 3}}}});
    clusters
        .patch("main", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let status = wait_ready(&client, &ns.name).await;
    assert_eq!(status.ready_replicas.get("brokers"), Some(&3));
    let broker = broker_properties(&client, &ns.name, "broker").await;
    assert_eq!(get(&broker, "default.replication.factor"), Some("3"));
    assert_eq!(get(&broker, "min.insync.replicas"), Some("2"));
    assert_eq!(
        get(&broker, "transaction.state.log.replication.factor"),
        Some("3")
    );
}

#[tokio::test]
async fn a_config_change_rolls_the_broker_pods_one_at_a_time() {
    let (ns, client) = setup(
        "prov-roll",
        serde_json::json!({"controllers": {"replicas": 3}, "brokers": {"replicas": 3}}),
    )
    .await;
    wait_ready(&client, &ns.name).await;
    let sets: Api<StatefulSet> = Api::namespaced(client.clone(), &ns.name);
    let before = sets
        .get("main-brokers")
        .await
        .ok()
        .and_then(|s| s.status)
        .and_then(|s| s.current_revision)
        .unwrap_or_default();
    assert!(
        !before.is_empty(),
        "the broker StatefulSet has no current revision"
    );
    let clusters: Api<KafkaCluster> = Api::namespaced(client.clone(), &ns.name);
    let patch =
        serde_json::json!({"spec": {"provisioned": {"config": {"log.retention.hours": "24"}}}});

    // Watch every change of the broker pods (a watch, not a poll: no state between two polls goes
    // unseen). A pod is away from the moment it is Terminating, through its replacement's start,
    // until that replacement is Ready; the environment makes provisioned pods take 1-2 s to
    // become Ready, so each pod is visibly away for a while.
    use futures::StreamExt;
    use kube::runtime::watcher::{self, Event};
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns.name);
    let mut events = std::pin::pin!(watcher::watcher(
        pods,
        watcher::Config::default().labels("exactly.dev/role=broker")
    ));
    // name -> (available: Ready and not Terminating, revision)
    let mut seen: BTreeMap<String, (bool, String)> = BTreeMap::new();
    let mut listed = false;
    let mut order: Vec<String> = Vec::new();
    let mut most_away = 0;
    let rolled = tokio::time::timeout(TIMEOUT, async {
        while let Some(event) = events.next().await {
            let event = event.unwrap_or_else(|e| panic!("watching the broker pods: {e}"));
            let state = |pod: &Pod| {
                let ready = pod
                    .status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
                let revision = pod
                    .metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get("controller-revision-hash"))
                    .cloned()
                    .unwrap_or_default();
                (ready && pod.metadata.deletion_timestamp.is_none(), revision)
            };
            match event {
                Event::Init => seen.clear(),
                Event::InitApply(pod) | Event::Apply(pod) => {
                    seen.insert(pod.metadata.name.clone().unwrap_or_default(), state(&pod));
                }
                Event::Delete(pod) => {
                    seen.remove(&pod.metadata.name.clone().unwrap_or_default());
                }
                Event::InitDone => {
                    // The pods are listed and watched: now change the config.
                    if !listed {
                        clusters
                            .patch("main", &PatchParams::default(), &Patch::Merge(&patch))
                            .await
                            .unwrap_or_else(|e| panic!("{e}"));
                    }
                    listed = true;
                }
            }
            if !listed {
                continue;
            }
            let available: Vec<(&String, &String)> = seen
                .iter()
                .filter(|(_, (available, _))| *available)
                .map(|(name, (_, revision))| (name, revision))
                .collect();
            most_away = most_away.max(3 - available.len().min(3));
            for (name, revision) in &available {
                if **revision != before && !order.contains(name) {
                    order.push((*name).clone());
                }
            }
            if order.len() == 3 && available.len() == 3 {
                return;
            }
        }
    })
    .await;
    assert!(rolled.is_ok(), "rolled so far: {order:?}");
    assert!(
        most_away <= 1,
        "{most_away} broker pods were away at once (order {order:?})"
    );
    let mut rolled = order.clone();
    rolled.sort();
    assert_eq!(
        rolled,
        ["main-brokers-0", "main-brokers-1", "main-brokers-2"],
        "every broker pod moved to the new configuration, one after the other"
    );
    let broker = broker_properties(&client, &ns.name, "broker").await;
    assert_eq!(get(&broker, "log.retention.hours"), Some("24"));
}

#[tokio::test]
async fn deleting_the_cluster_garbage_collects_its_children() {
    let (ns, client) = setup(
        "prov-delete",
        serde_json::json!({"profile": "Development", "combined": true, "controllers": {"replicas": 1}}),
    )
    .await;
    wait_ready(&client, &ns.name).await;
    let sets: Api<StatefulSet> = Api::namespaced(client.clone(), &ns.name);
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), &ns.name);
    assert!(sets.get_opt("main-nodes").await.ok().flatten().is_some());
    let clusters: Api<KafkaCluster> = Api::namespaced(client.clone(), &ns.name);
    clusters
        .delete("main", &Default::default())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    eventually("the children to be collected", TIMEOUT, || async {
        let sets_left = sets
            .list(&ListParams::default().labels("exactly.dev/cluster=main"))
            .await
            .map_err(|e| e.to_string())?
            .items
            .len();
        let maps_left = maps
            .get_opt("main-kafka-config")
            .await
            .map_err(|e| e.to_string())?
            .is_some();
        if sets_left == 0 && !maps_left {
            Ok(())
        } else {
            Err(format!("{sets_left} sets, config map: {maps_left}"))
        }
    })
    .await;
}

#[tokio::test]
async fn a_tls_scram_listener_is_rendered_on_its_port_with_the_certificate_and_users_mounted() {
    use k8s_openapi::api::core::v1::Secret;
    let env = shared();
    let ns = env.namespace("prov-listener").await;
    let client = env.client().await.unwrap_or_else(|e| panic!("{e}"));
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns.name);
    for (name, data) in [
        (
            "kafka-tls",
            serde_json::json!({"tls.crt": "-----BEGIN CERTIFICATE-----", "tls.key": "-----BEGIN PRIVATE KEY-----"}),
        ),
        ("kafka-users", serde_json::json!({"billing": "s3cret"})),
    ] {
        let secret: Secret = serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "stringData": data,
        }))
        .unwrap_or_else(|e| panic!("{e}"));
        secrets
            .create(&Default::default(), &secret)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    run_operator(client.clone(), &ns.name);
    create::<KafkaCluster>(
        &client,
        &ns,
        "main",
        serde_json::json!({"provisioned": {
            "controllers": {"replicas": 3}, "brokers": {"replicas": 3},
            "listeners": [{"name": "secure", "port": 9094, "tlsSecret": "kafka-tls",
                "authentication": "ScramSha512", "usersSecret": "kafka-users"}],
        }}),
    )
    .await;
    wait_ready(&client, &ns.name).await;
    let broker = broker_properties(&client, &ns.name, "broker").await;
    assert_eq!(
        get(&broker, "listeners"),
        Some("PLAINTEXT://:9092,SECURE://:9094")
    );
    assert!(
        get(&broker, "listener.security.protocol.map")
            .is_some_and(|m| m.contains("SECURE:SASL_SSL"))
    );
    let services: Api<Service> = Api::namespaced(client.clone(), &ns.name);
    let ports: Vec<i32> = services
        .get("main-kafka")
        .await
        .ok()
        .and_then(|s| s.spec)
        .and_then(|s| s.ports)
        .unwrap_or_default()
        .iter()
        .map(|p| p.port)
        .collect();
    assert_eq!(ports, [9092, 9094]);
    // The brokers serve TLS; the controllers, which format the metadata log, create the users.
    let sets: Api<StatefulSet> = Api::namespaced(client.clone(), &ns.name);
    for (set, secret) in [
        ("main-brokers", "kafka-tls"),
        ("main-controllers", "kafka-users"),
    ] {
        let set = sets.get(set).await.unwrap_or_else(|e| panic!("{e}"));
        let pod = set.spec.template.spec.unwrap_or_default();
        let mounted: Vec<String> = pod
            .volumes
            .unwrap_or_default()
            .iter()
            .filter_map(|v| v.secret.as_ref().and_then(|s| s.secret_name.clone()))
            .collect();
        assert_eq!(mounted, [secret.to_string()]);
    }
}

#[tokio::test]
async fn a_scram_listener_without_users_is_rejected_by_the_api_server() {
    let env = shared();
    let ns = env.namespace("prov-nousers").await;
    let client = env.client().await.unwrap_or_else(|e| panic!("{e}"));
    let clusters: Api<KafkaCluster> = Api::namespaced(client.clone(), &ns.name);
    let cluster: KafkaCluster = serde_json::from_value(serde_json::json!({
        "apiVersion": "exactly.dev/v1alpha1", "kind": "KafkaCluster", "metadata": {"name": "main"},
        "spec": {"provisioned": {"listeners": [{"name": "secure", "port": 9094, "authentication": "ScramSha512"}]}},
    }))
    .unwrap_or_else(|e| panic!("{e}"));
    let err = clusters
        .create(&Default::default(), &cluster)
        .await
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        err.contains("SCRAM authentication needs usersSecret"),
        "{err}"
    );
}

/// The real-broker tests run one at a time: each cluster is six JVMs on two cores (two at a time
/// made the suite slower here, 558 s against 462 s).
static REAL_CLUSTER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The production example on the real node, with the chart's operator beside it, until it is
/// `ExactlyOnceReady` from what its brokers report: as pasted, except where it runs (the real
/// node, its taint tolerated), its local volumes, the environment's Kafka image, and requests
/// that fit two cores.
async fn real_production_cluster(
    prefix: &str,
) -> (TestNamespace, Client, exactly::api::KafkaClusterStatus) {
    real_production_cluster_with(prefix, &|_| Vec::new(), serde_json::json!([])).await
}

/// Secrets (name, `stringData`) to create in the namespace called so, before the cluster.
type SecretsFor<'a> = dyn Fn(&str) -> Vec<(String, serde_json::Value)> + Sync + 'a;

/// [`real_production_cluster`] with `secrets` created first and these extra client
/// `listeners`.
async fn real_production_cluster_with(
    prefix: &str,
    secrets: &SecretsFor<'_>,
    listeners: serde_json::Value,
) -> (TestNamespace, Client, exactly::api::KafkaClusterStatus) {
    let env = shared();
    tokio::task::spawn_blocking(|| {
        let env = shared();
        env.operator_image().unwrap_or_else(|e| panic!("{e}"));
        env.kafka_image().unwrap_or_else(|e| panic!("{e}"));
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let kafka_image = exactly_testenv::tools::version("KAFKA_IMAGE");
    let ns = env.namespace(prefix).await;
    let client = env.client().await.unwrap_or_else(|e| panic!("{e}"));
    let watch = format!("watchNamespaces={{{}}}", ns.name);
    let mut sets = crate::chart::ON_THE_REAL_NODE.to_vec();
    sets.push(&watch);
    crate::chart::install(env, &ns.name, &sets).await;
    let api: Api<Secret> = Api::namespaced(client.clone(), &ns.name);
    for (name, data) in secrets(&ns.name) {
        let secret: Secret = serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "stringData": data,
        }))
        .unwrap_or_else(|e| panic!("{e}"));
        api.create(&Default::default(), &secret)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }

    let path = format!(
        "{}/../examples/provisioned-production.yaml",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let mut cluster: serde_json::Value =
        serde_norway::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"));
    let p = &mut cluster["spec"]["provisioned"];
    p["image"] = serde_json::json!(kafka_image);
    p["listeners"] = listeners;
    p["placement"] = serde_json::json!({
        "nodeSelector": {"exactly.dev/node": "real"},
        "tolerations": [{"key": "exactly.dev/real-node", "operator": "Exists", "effect": "NoSchedule"}],
    });
    for pool in ["controllers", "brokers"] {
        p[pool]["storage"]["class"] = serde_json::json!(exactly_testenv::node::STORAGE_CLASS);
        p[pool]["resources"] = serde_json::json!({
            "requests": {"cpu": "50m", "memory": "256Mi"},
            "limits": {"memory": "1200Mi"},
        });
    }
    let clusters: Api<KafkaCluster> = Api::namespaced(client.clone(), &ns.name);
    let cluster: KafkaCluster = serde_json::from_value(cluster).unwrap_or_else(|e| panic!("{e}"));
    clusters
        .create(&Default::default(), &cluster)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let status = wait_exactly_once_ready(&clusters, Duration::from_secs(300)).await;
    (ns, client, status)
}

async fn wait_exactly_once_ready(
    clusters: &Api<KafkaCluster>,
    timeout: Duration,
) -> exactly::api::KafkaClusterStatus {
    eventually(
        "the cluster to be ExactlyOnceReady from its brokers",
        timeout,
        || async {
            let c = clusters.get("main").await.map_err(|e| e.to_string())?;
            let status = c.status.clone().unwrap_or_default();
            let ready = condition(&status.conditions, "Ready");
            let eos = condition(&status.conditions, "ExactlyOnceReady");
            let current = status.observed_generation == c.metadata.generation;
            match (&ready, &eos) {
                (Some((r, _, _)), Some((e, _, _))) if r == "True" && e == "True" && current => {
                    Ok(status)
                }
                _ => Err(format!(
                    "Ready {ready:?}, ExactlyOnceReady {eos:?}, replicas {:?}",
                    status.ready_replicas
                )),
            }
        },
    )
    .await
}

/// Runs `exactly-kafka-check` inside the real node's network (where the brokers' advertised
/// Service names resolve) and returns the JSON line it printed.
async fn kafka_check(args: Vec<String>) -> serde_json::Value {
    tokio::task::spawn_blocking(move || {
        let env = shared();
        let node = env.real_node().unwrap_or_else(|e| panic!("{e}"));
        let holder = env
            .node_holder_pid()
            .unwrap_or_else(|| panic!("no node holder"));
        let output = node
            .command_inside(
                holder,
                std::path::Path::new(env!("CARGO_BIN_EXE_exactly-kafka-check")),
            )
            .args(&args)
            .output()
            .unwrap_or_else(|e| panic!("exactly-kafka-check: {e}"));
        let stdout = String::from_utf8_lossy(&output.stdout);
        // Shown with the test's output when it fails.
        eprintln!(
            "exactly-kafka-check {args:?} stderr:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(
            output.status.success(),
            "exactly-kafka-check {args:?}: {}\n{stdout}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        serde_json::from_str(stdout.lines().last().unwrap_or_default())
            .unwrap_or_else(|e| panic!("exactly-kafka-check printed {stdout:?}: {e}"))
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"))
}

/// A transactional Producer on the cluster: its rendered client properties, in a file.
async fn producer_properties(client: &Client, ns: &TestNamespace, topic: &str) -> PathBuf {
    crate::support::create::<exactly::api::Producer>(
        client,
        ns,
        "writer",
        serde_json::json!({
            "clusterRef": {"name": "main"},
            "topics": [{"name": topic}],
            "transactionalIdPrefix": ns.unique("writer"),
        }),
    )
    .await;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns.name);
    let properties = eventually("the writer's client properties", TIMEOUT, || async {
        secrets
            .get_opt("writer-client")
            .await
            .map_err(|e| e.to_string())?
            .and_then(|s| s.data)
            .and_then(|d| d.get("instance-0.properties").map(|b| b.0.clone()))
            .ok_or_else(|| "not rendered yet".to_string())
    })
    .await;
    let path = std::env::temp_dir().join(format!("{}-writer.properties", ns.name));
    std::fs::write(&path, properties).unwrap_or_else(|e| panic!("{e}"));
    path
}

async fn topic_on_the_cluster(client: &Client, ns: &TestNamespace, name: &str) -> Option<i32> {
    crate::support::create::<exactly::api::Topic>(
        client,
        ns,
        name,
        serde_json::json!({"clusterRef": {"name": "main"}, "partitions": 3}),
    )
    .await;
    let topics: Api<exactly::api::Topic> = Api::namespaced(client.clone(), &ns.name);
    eventually(
        "the Topic to be Ready",
        Duration::from_secs(120),
        || async {
            let topic = topics.get(name).await.map_err(|e| e.to_string())?;
            let status = topic.status.clone().unwrap_or_default();
            match condition(&status.conditions, "Ready") {
                Some((s, _, _)) if s == "True" => Ok(status.replication_factor),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await
}

#[tokio::test]
async fn the_production_example_runs_real_brokers_that_move_transactional_records_exactly_once() {
    let _alone = REAL_CLUSTER.lock().await;
    let (ns, client, status) = real_production_cluster("prov-real").await;
    let settings = status.exactly_once.clone().unwrap_or_default();
    assert_eq!(
        settings.source,
        Some(exactly::api::cluster::SettingsSource::Observed),
        "{settings:?}"
    );
    assert_eq!(status.brokers, Some(3), "{status:?}");
    assert!(status.failed_rules.is_empty(), "{:?}", status.failed_rules);
    assert_eq!(
        (
            settings.default_replication_factor,
            settings.min_insync_replicas,
            settings.transaction_state_log_replication_factor,
            settings.transaction_state_log_min_isr,
            settings.unclean_leader_election_enable,
        ),
        (Some(3), Some(2), Some(3), Some(2), Some(false)),
        "{settings:?}"
    );

    // A Topic on it gets replication 3 (the brokers' default), read back from the brokers.
    assert_eq!(topic_on_the_cluster(&client, &ns, "orders").await, Some(3));

    // A transactional producer and a read_committed consumer, configured from the Secret the
    // operator rendered, move records through it: each record read once.
    let properties = producer_properties(&client, &ns, "orders").await;
    let props = properties.display().to_string();
    let produced = kafka_check(
        [
            "produce",
            "--properties",
            &props,
            "--topic",
            "orders",
            "--records",
            "5000",
        ]
        .map(String::from)
        .to_vec(),
    )
    .await;
    assert_eq!(produced["committed"], 5000, "{produced}");
    let counted = kafka_check(
        [
            "count",
            "--properties",
            &props,
            "--topic",
            "orders",
            "--records",
            "5000",
            "--group",
            &ns.unique("check"),
        ]
        .map(String::from)
        .to_vec(),
    )
    .await;
    assert_eq!(
        (
            &counted["lost"],
            &counted["duplicated"],
            &counted["unexpected"]
        ),
        (
            &serde_json::json!(0),
            &serde_json::json!(0),
            &serde_json::json!(0)
        ),
        "{counted}"
    );
    let _ = std::fs::remove_file(&properties);
}

/// Pod name → uid of the pods `selector` matches.
fn uids(list: &[Pod]) -> BTreeMap<String, String> {
    list.iter()
        .map(|p| {
            (
                p.metadata.name.clone().unwrap_or_default(),
                p.metadata.uid.clone().unwrap_or_default(),
            )
        })
        .collect()
}

fn pod_ready(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn pods_of(role: &str) -> ListParams {
    ListParams::default().labels(&format!("exactly.dev/cluster=main,exactly.dev/role={role}"))
}

fn assert_nothing_lost_or_duplicated(counted: &serde_json::Value) {
    assert_eq!(
        (
            &counted["lost"],
            &counted["duplicated"],
            &counted["unexpected"]
        ),
        (
            &serde_json::json!(0),
            &serde_json::json!(0),
            &serde_json::json!(0)
        ),
        "{counted}"
    );
}

#[tokio::test]
async fn a_config_change_rolls_real_brokers_one_at_a_time_while_transactions_flow_and_loses_nothing()
 {
    let _alone = REAL_CLUSTER.lock().await;
    let (ns, client, _) = real_production_cluster("prov-roll").await;
    assert_eq!(topic_on_the_cluster(&client, &ns, "orders").await, Some(3));
    let properties = producer_properties(&client, &ns, "orders").await;
    let props = properties.display().to_string();
    let stop = std::env::temp_dir().join(format!("{}-stop", ns.name));
    let total = std::env::temp_dir().join(format!("{}-total", ns.name));
    let (stop_arg, total_arg) = (stop.display().to_string(), total.display().to_string());
    // Transactions of 50 records every 20 ms until the roll is over, and a read_committed
    // consumer reading alongside, until it has every committed record.
    let producing = tokio::spawn(kafka_check(
        [
            "produce",
            "--properties",
            &props,
            "--topic",
            "orders",
            "--records",
            "100000000",
            "--per-transaction",
            "50",
            "--pause-ms",
            "20",
            "--until",
            &stop_arg,
        ]
        .map(String::from)
        .to_vec(),
    ));
    let consuming = tokio::spawn(kafka_check(
        [
            "count",
            "--properties",
            &props,
            "--topic",
            "orders",
            "--records-file",
            &total_arg,
            "--group",
            &ns.unique("check"),
            "--timeout-secs",
            "900",
        ]
        .map(String::from)
        .to_vec(),
    ));
    tokio::time::sleep(Duration::from_secs(3)).await;

    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns.name);
    let list = |role: &'static str| {
        let pods = pods.clone();
        async move {
            pods.list(&pods_of(role))
                .await
                .unwrap_or_else(|e| panic!("{e}"))
                .items
        }
    };
    let before = [uids(&list("broker").await), uids(&list("controller").await)];
    assert_eq!(before.iter().map(BTreeMap::len).collect::<Vec<_>>(), [3, 3]);

    let clusters: Api<KafkaCluster> = Api::namespaced(client.clone(), &ns.name);
    clusters
        .patch(
            "main",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"spec": {"provisioned": {"config": {"log.retention.hours": "96"}}}})),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));

    // Sample every pod while they roll: never more than one of a role away (its PDB's
    // maxUnavailable), until every broker was replaced and all are ready again.
    let started = std::time::Instant::now();
    let mut most_away = [0, 0];
    loop {
        let now = [list("broker").await, list("controller").await];
        let mut settled = true;
        for (i, role) in now.iter().enumerate() {
            let away = 3 - role.iter().filter(|p| pod_ready(p)).count();
            most_away[i] = most_away[i].max(away);
            settled &= away == 0;
        }
        let replaced = uids(&now[0])
            .iter()
            .filter(|(name, uid)| before[0].get(*name) != Some(uid))
            .count();
        if replaced == 3 && settled {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(400),
            "the brokers did not roll: {replaced} of 3 replaced, {most_away:?} away at most"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(most_away[0], 1, "brokers away at once, at most");
    assert!(
        most_away[1] <= 1,
        "{} controllers were away at once",
        most_away[1]
    );
    wait_exactly_once_ready(&clusters, Duration::from_secs(120)).await;

    std::fs::write(&stop, "").unwrap_or_else(|e| panic!("{e}"));
    let produced = producing.await.unwrap_or_else(|e| panic!("{e}"));
    let committed = produced["committed"].as_u64().unwrap_or(0);
    eprintln!("during the roll: {produced}");
    assert!(committed > 0, "{produced}");
    std::fs::write(&total, committed.to_string()).unwrap_or_else(|e| panic!("{e}"));
    let counted = consuming.await.unwrap_or_else(|e| panic!("{e}"));
    eprintln!("read alongside: {counted}");
    assert_nothing_lost_or_duplicated(&counted);
    for file in [&properties, &stop, &total] {
        let _ = std::fs::remove_file(file);
    }
}

#[tokio::test]
async fn a_broker_killed_with_no_grace_returns_with_its_volume_and_status_names_the_unmet_rule_meanwhile()
 {
    let _alone = REAL_CLUSTER.lock().await;
    let (ns, client, _) = real_production_cluster("prov-kill").await;
    assert_eq!(topic_on_the_cluster(&client, &ns, "orders").await, Some(3));
    let properties = producer_properties(&client, &ns, "orders").await;
    let props = properties.display().to_string();
    let produce = |from: &'static str| {
        kafka_check(
            [
                "produce",
                "--properties",
                &props,
                "--topic",
                "orders",
                "--records",
                "2000",
                "--from",
                from,
            ]
            .map(String::from)
            .to_vec(),
        )
    };
    assert_eq!(produce("0").await["committed"], 2000);

    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns.name);
    let claims: Api<k8s_openapi::api::core::v1::PersistentVolumeClaim> =
        Api::namespaced(client.clone(), &ns.name);
    let claim_uid = |claim: Option<k8s_openapi::api::core::v1::PersistentVolumeClaim>| {
        claim.and_then(|c| c.metadata.uid).unwrap_or_default()
    };
    let volume_before = claim_uid(
        claims
            .get_opt("data-main-brokers-1")
            .await
            .unwrap_or_else(|e| panic!("{e}")),
    );
    assert!(
        !volume_before.is_empty(),
        "no volume claim data-main-brokers-1"
    );
    let pod_before = pods
        .get("main-brokers-1")
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .metadata
        .uid;
    pods.delete(
        "main-brokers-1",
        &kube::api::DeleteParams::default().grace_period(0),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));

    // Meanwhile the status says which rule is unmet, and names the broker.
    let clusters: Api<KafkaCluster> = Api::namespaced(client.clone(), &ns.name);
    let (rules, message) = eventually(
        "ExactlyOnceReady=False naming the broker that is down",
        Duration::from_secs(60),
        || async {
            let status = clusters
                .get("main")
                .await
                .map_err(|e| e.to_string())?
                .status
                .unwrap_or_default();
            match condition(&status.conditions, "ExactlyOnceReady") {
                Some((s, _, message)) if s == "False" => Ok((status.failed_rules, message)),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await;
    eprintln!("while the broker was away: {rules:?}: {message}");
    assert!(
        rules.iter().any(|r| r == "BrokersUp"),
        "{rules:?}: {message}"
    );
    assert!(message.contains("broker"), "{message}");

    let status = wait_exactly_once_ready(&clusters, Duration::from_secs(180)).await;
    assert_eq!(status.under_replicated_partitions, Some(0), "{status:?}");
    assert!(status.failed_rules.is_empty(), "{:?}", status.failed_rules);
    let pod_after = pods
        .get("main-brokers-1")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_ne!(
        pod_after.metadata.uid, pod_before,
        "the pod was not replaced"
    );
    let claim_after = pod_after
        .spec
        .and_then(|s| s.volumes)
        .unwrap_or_default()
        .into_iter()
        .find(|v| v.name == "data")
        .and_then(|v| v.persistent_volume_claim)
        .map(|c| c.claim_name);
    assert_eq!(claim_after.as_deref(), Some("data-main-brokers-1"));
    assert_eq!(
        claim_uid(
            claims
                .get_opt("data-main-brokers-1")
                .await
                .unwrap_or_else(|e| panic!("{e}"))
        ),
        volume_before,
        "the broker came back on a new volume"
    );

    // Every record committed before the kill is still there, once, and the cluster takes more.
    assert_eq!(produce("2000").await["committed"], 2000);
    let counted = kafka_check(
        [
            "count",
            "--properties",
            &props,
            "--topic",
            "orders",
            "--records",
            "4000",
            "--group",
            &ns.unique("check"),
        ]
        .map(String::from)
        .to_vec(),
    )
    .await;
    eprintln!("read back: {counted}");
    assert_nothing_lost_or_duplicated(&counted);
    let _ = std::fs::remove_file(&properties);
}

/// A CA and a certificate for the brokers of cluster `main` in `namespace` (every broker's
/// advertised name and the client Service), as a `kubernetes.io/tls` Secret's data; and the
/// CA's PEM.
fn broker_certificate(namespace: &str) -> (serde_json::Value, String) {
    let dir = std::env::temp_dir().join(format!("{namespace}-pki"));
    exactly_testenv::pki::ca(&dir).unwrap_or_else(|e| panic!("{e}"));
    let sans = [
        format!("DNS:*.main-brokers.{namespace}.svc"),
        format!("DNS:main-kafka.{namespace}.svc"),
    ];
    let (crt, key) = exactly_testenv::pki::issue(&dir, "brokers", "/CN=main-kafka", &sans)
        .unwrap_or_else(|e| panic!("{e}"));
    let read = |p: &std::path::Path| {
        std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
    };
    let data = serde_json::json!({"tls.crt": read(&crt), "tls.key": read(&key)});
    let ca = read(&dir.join("ca.crt"));
    let _ = std::fs::remove_dir_all(&dir);
    (data, ca)
}

#[tokio::test]
async fn a_tls_scram_listener_on_real_brokers_admits_the_secrets_user_and_refuses_a_wrong_password()
{
    let _alone = REAL_CLUSTER.lock().await;
    let ca = std::sync::Mutex::new(String::new());
    let secrets = |namespace: &str| {
        let (tls, ca_pem) = broker_certificate(namespace);
        if let Ok(mut ca) = ca.lock() {
            *ca = ca_pem;
        }
        vec![
            ("kafka-tls".to_string(), tls),
            (
                "kafka-users".to_string(),
                serde_json::json!({"billing": "s3cret-Pa55"}),
            ),
        ]
    };
    let (ns, client, _) = real_production_cluster_with(
        "prov-tls",
        &secrets,
        serde_json::json!([{"name": "secure", "port": 9094, "tlsSecret": "kafka-tls",
            "authentication": "ScramSha512", "usersSecret": "kafka-users"}]),
    )
    .await;
    let ca = ca.lock().map(|c| c.clone()).unwrap_or_default();
    assert!(ca.contains("BEGIN CERTIFICATE"), "no CA was made");
    let ca_file = std::env::temp_dir().join(format!("{}-ca.crt", ns.name));
    std::fs::write(&ca_file, &ca).unwrap_or_else(|e| panic!("{e}"));
    let try_login = |password: &str| {
        let properties = std::env::temp_dir().join(format!("{}-{password}.properties", ns.name));
        let text = format!(
            "bootstrap.servers=main-kafka.{}.svc:9094\nsecurity.protocol=SASL_SSL\n\
             sasl.mechanism=SCRAM-SHA-512\nsasl.username=billing\nsasl.password={password}\n\
             ssl.ca.location={}\n",
            ns.name,
            ca_file.display(),
        );
        std::fs::write(&properties, text).unwrap_or_else(|e| panic!("{e}"));
        let path = properties.display().to_string();
        async move {
            let result = kafka_check(
                ["connect", "--properties", &path]
                    .map(String::from)
                    .to_vec(),
            )
            .await;
            let _ = std::fs::remove_file(&path);
            result
        }
    };
    let admitted = try_login("s3cret-Pa55").await;
    if admitted["ok"] != true {
        let pods: Api<Pod> = Api::namespaced(client.clone(), &ns.name);
        let params = kube::api::LogParams {
            tail_lines: Some(40),
            ..Default::default()
        };
        let log = pods
            .logs("main-brokers-0", &params)
            .await
            .unwrap_or_default();
        eprintln!("main-brokers-0, last lines:\n{log}");
    }
    assert_eq!(admitted["ok"], true, "{admitted}");
    assert_eq!(admitted["brokers"], 3, "{admitted}");
    let refused = try_login("wrong-password").await;
    assert_eq!(refused["ok"], false, "{refused}");
    let error = refused["error"].as_str().unwrap_or_default();
    eprintln!("the wrong password: {error}");
    assert!(error.contains("uthentication"), "{error}");
    let _ = std::fs::remove_file(&ca_file);
}
