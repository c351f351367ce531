//! The operator SIGKILLed at random moments while 1 000 resources are applied (issue #11): it is
//! the `exactly` binary run as a process and started again after each kill, or (on the real
//! node) the chart's pod whose container kubelet restarts. Whatever it was doing when killed, it
//! converges to every resource Ready; the broker's controller created each topic once (its log
//! lists each request's topics and results); no topic, Secret or finalizer is left behind by the
//! Topics deleted meanwhile; and a guarded offset reset ran at most once: a commit made after
//! its outcome was recorded is never undone by it.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use exactly::api::conditions::types::READY;
use exactly::api::{Condition, ConsumerGroup, Producer, Topic};
use exactly::kafka::TopicPartition;
use exactly_testenv::{Environment, TestNamespace, eventually, shared};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::Client;
use kube::api::{Api, DeleteParams, ListParams, PostParams};

use crate::common::{OperatorProcess, Rng, creates_seen, pids_in_pod, test_dir};
use crate::support::{condition, create_cluster, wire};

const TOPICS: usize = 600;
/// Topics `t-550` to `t-599` are declared with `deletionPolicy: Delete` and deleted once applied.
const DELETED_FROM: usize = 550;
/// Producer `p-i` writes to `t-i`.
const PRODUCERS: usize = 200;
/// Group `g-i` reads `t-(200+i)`; the first [`RESETS`] ask for a one-shot offset reset.
const GROUPS: usize = 200;
const RESETS: usize = 20;
const KILLS: usize = 12;
/// What the test commits for a reset group once the reset's outcome is recorded: a reset run
/// again would move the offset back to 0.
const AFTER_THE_RESET: i64 = 7;
const AFTER_THE_RESET_MARK: &str = "committed-by-the-test";

/// One object of the apply, as (kind, name, spec).
fn manifests(ns: &str) -> Vec<(&'static str, String, serde_json::Value)> {
    let cluster = serde_json::json!({"name": "local"});
    let mut all = Vec::new();
    for i in 0..TOPICS {
        let policy = if i >= DELETED_FROM {
            "Delete"
        } else {
            "Retain"
        };
        all.push((
            "Topic",
            format!("t-{i}"),
            serde_json::json!({"clusterRef": cluster, "topicName": format!("{ns}.t-{i}"),
                               "partitions": 1, "deletionPolicy": policy}),
        ));
    }
    for i in 0..PRODUCERS {
        all.push((
            "Producer",
            format!("p-{i}"),
            serde_json::json!({"clusterRef": cluster, "topics": [{"name": format!("t-{i}")}],
                               "transactionalIdPrefix": format!("{ns}.p-{i}")}),
        ));
    }
    for i in 0..GROUPS {
        let mut spec = serde_json::json!({"clusterRef": cluster,
            "topics": [{"name": format!("t-{}", 200 + i)}], "groupId": format!("{ns}.g-{i}")});
        if i < RESETS {
            spec["offsetReset"] = serde_json::json!({"id": "once", "to": "Offset", "offset": 0});
        }
        all.push(("ConsumerGroup", format!("g-{i}"), spec));
    }
    all
}

async fn create_one(client: &Client, ns: &str, kind: &str, name: &str, spec: serde_json::Value) {
    let object = serde_json::json!({
        "apiVersion": "exactly.dev/v1alpha1", "kind": kind,
        "metadata": {"name": name}, "spec": spec,
    });
    async fn post<K>(client: &Client, ns: &str, object: serde_json::Value)
    where
        K: kube::Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + serde::de::DeserializeOwned
            + serde::Serialize
            + std::fmt::Debug,
    {
        let typed: K = serde_json::from_value(object).unwrap_or_else(|e| panic!("manifest: {e}"));
        Api::<K>::namespaced(client.clone(), ns)
            .create(&PostParams::default(), &typed)
            .await
            .unwrap_or_else(|e| panic!("create: {e}"));
    }
    match kind {
        "Topic" => post::<Topic>(client, ns, object).await,
        "Producer" => post::<Producer>(client, ns, object).await,
        _ => post::<ConsumerGroup>(client, ns, object).await,
    }
}

/// Applies every manifest in a random order, in waves of 100 with pauses between them, then
/// deletes the Topics declared with `deletionPolicy: Delete`.
async fn apply(client: Client, ns: String, seed: u64) {
    let mut rng = Rng(seed);
    let mut all = manifests(&ns);
    for i in (1..all.len()).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        all.swap(i, j);
    }
    for wave in all.chunks(100) {
        futures::stream::iter(wave.iter().cloned())
            .for_each_concurrent(8, |(kind, name, spec)| {
                let (client, ns) = (client.clone(), ns.clone());
                async move { create_one(&client, &ns, kind, &name, spec).await }
            })
            .await;
        tokio::time::sleep(Duration::from_millis(500 + rng.below(2000))).await;
    }
    let topics: Api<Topic> = Api::namespaced(client, &ns);
    for i in DELETED_FROM..TOPICS {
        topics
            .delete(&format!("t-{i}"), &DeleteParams::default())
            .await
            .unwrap_or_else(|e| panic!("delete t-{i}: {e}"));
    }
}

/// Once a reset group's outcome is recorded, commits [`AFTER_THE_RESET`] for it (as its
/// consumers would); returns each group's recorded result when all [`RESETS`] have one.
async fn commit_after_each_reset(
    client: Client,
    ns: String,
    env: &Environment,
) -> BTreeMap<String, String> {
    let groups: Api<ConsumerGroup> = Api::namespaced(client, &ns);
    let w = wire(env);
    let mut results = BTreeMap::new();
    while results.len() < RESETS {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let Ok(list) = groups.list(&ListParams::default()).await else {
            continue;
        };
        for g in list.items {
            let name = g.metadata.name.clone().unwrap_or_default();
            let Some(outcome) = g.status.and_then(|s| s.last_offset_reset) else {
                continue;
            };
            if results.contains_key(&name)
                || ["Waiting", "Applying"].contains(&outcome.result.as_str())
            {
                continue;
            }
            let i: usize = name.trim_start_matches("g-").parse().unwrap_or(usize::MAX);
            let tp = TopicPartition::new(format!("{ns}.t-{}", 200 + i), 0);
            let group_id = format!("{ns}.{name}");
            w.commit_offsets_marked(
                &group_id,
                &BTreeMap::from([(tp, AFTER_THE_RESET)]),
                Some(AFTER_THE_RESET_MARK),
            )
            .await
            .unwrap_or_else(|e| panic!("commit for {group_id}: {e}"));
            results.insert(name, outcome.result);
        }
    }
    results
}

fn is_ready(conditions: Option<&[Condition]>) -> bool {
    conditions
        .and_then(|c| condition(c, READY))
        .is_some_and(|(status, _, _)| status == "True")
}

/// How many of each kind are Ready, and how many Topics exist.
async fn readiness(client: &Client, ns: &str) -> Result<(usize, usize, usize, usize), String> {
    let topics = Api::<Topic>::namespaced(client.clone(), ns)
        .list(&ListParams::default())
        .await
        .map_err(|e| e.to_string())?
        .items;
    let producers = Api::<Producer>::namespaced(client.clone(), ns)
        .list(&ListParams::default())
        .await
        .map_err(|e| e.to_string())?
        .items;
    let groups = Api::<ConsumerGroup>::namespaced(client.clone(), ns)
        .list(&ListParams::default())
        .await
        .map_err(|e| e.to_string())?
        .items;
    Ok((
        topics.len(),
        topics
            .iter()
            .filter(|t| is_ready(t.status.as_ref().map(|s| s.conditions.as_slice())))
            .count(),
        producers
            .iter()
            .filter(|p| is_ready(p.status.as_ref().map(|s| s.conditions.as_slice())))
            .count(),
        groups
            .iter()
            .filter(|g| is_ready(g.status.as_ref().map(|s| s.conditions.as_slice())))
            .count(),
    ))
}

/// What the test kills: the operator's process, or its pod's container.
trait Killer {
    /// SIGKILLs the operator (and, for a process, starts it again); false when nothing ran to
    /// be killed.
    async fn kill(&mut self) -> bool;
    /// Why the operator's runs look wrong (a panic, a restart the test did not cause), if so.
    async fn trouble(&mut self, kills: usize) -> Option<String>;
}

impl Killer for OperatorProcess {
    async fn kill(&mut self) -> bool {
        OperatorProcess::kill(self);
        self.start();
        true
    }

    async fn trouble(&mut self, _kills: usize) -> Option<String> {
        let logs = self.logs();
        logs.contains("panicked")
            .then(|| "the operator panicked (see its logs)".to_string())
    }
}

/// The chart's operator pod on the environment's real node: kills hit its container's process
/// and kubelet starts the container again.
struct OperatorPod {
    pods: Api<Pod>,
    name: String,
}

/// The chart's release name in these tests.
const RELEASE: &str = "exactly";

impl OperatorPod {
    /// `helm install` of the chart into `ns`, watching only `ns`, its pod on the real node.
    async fn install(env: &Environment, ns: &str, client: &Client) -> OperatorPod {
        let chart = concat!(env!("CARGO_MANIFEST_DIR"), "/../charts/exactly");
        let watch = format!("watchNamespaces={{{ns}}}");
        let sets = [
            "nodeSelector.exactly\\.dev/node=real",
            "tolerations[0].key=exactly.dev/real-node",
            "tolerations[0].operator=Exists",
            "tolerations[0].effect=NoSchedule",
            "refreshInterval=5s",
            &watch,
        ];
        let mut helm = tokio::process::Command::new(&env.tools.helm);
        helm.args([
            "install",
            RELEASE,
            chart,
            "--namespace",
            ns,
            "--skip-crds",
            "--wait",
        ])
        .args(["--timeout", "180s", "--kubeconfig"])
        .arg(&env.kubeconfig);
        for set in sets {
            helm.args(["--set", set]);
        }
        let output = helm.output().await.unwrap_or_else(|e| panic!("helm: {e}"));
        assert!(
            output.status.success(),
            "helm install: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
        let list = pods
            .list(&ListParams::default().labels("app.kubernetes.io/instance=exactly"))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let name = list
            .items
            .first()
            .and_then(|p| p.metadata.name.clone())
            .unwrap_or_else(|| panic!("no operator pod"));
        OperatorPod { pods, name }
    }

    /// The container's restarts, and the exit code of its last termination.
    async fn restarts(&self) -> (usize, Option<i32>) {
        let status = self
            .pods
            .get(&self.name)
            .await
            .ok()
            .and_then(|p| p.status)
            .and_then(|s| s.container_statuses)
            .and_then(|s| s.into_iter().next());
        status
            .map(|c| {
                let code = c.last_state.and_then(|s| s.terminated).map(|t| t.exit_code);
                (usize::try_from(c.restart_count).unwrap_or(0), code)
            })
            .unwrap_or((0, None))
    }
}

impl Killer for OperatorPod {
    async fn kill(&mut self) -> bool {
        // The container may be starting again after the last kill: wait for its process.
        for _ in 0..100 {
            let pids = pids_in_pod(&self.name, "/exactly");
            if !pids.is_empty() {
                for pid in pids {
                    // SAFETY: kill(2) with a pid read from /proc; no memory is involved.
                    unsafe {
                        libc::kill(pid, libc::SIGKILL);
                    }
                }
                return true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        false
    }

    async fn trouble(&mut self, kills: usize) -> Option<String> {
        let started = Instant::now();
        loop {
            let (restarts, code) = self.restarts().await;
            if restarts == kills && code == Some(137) {
                return None;
            }
            if restarts > kills || started.elapsed() > Duration::from_secs(30) {
                return Some(format!(
                    "{restarts} container restarts for {kills} kills, the last exit code {code:?} (137 is SIGKILL)"
                ));
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_chart_s_operator_pod_killed_twelve_times_during_a_thousand_resource_apply_converges_with_each_topic_created_once()
 {
    let _broker = crate::common::BROKER.read().await;
    let env = shared();
    tokio::task::spawn_blocking(|| shared().operator_image())
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|e| panic!("{e}"));
    let ns = env.namespace("killed-pod").await;
    let client = env.client().await.unwrap_or_else(|e| panic!("{e}"));
    create_cluster(&client, &ns, env).await;
    let mut operator = OperatorPod::install(env, &ns.name, &client).await;
    converges_under_kills(env, &ns, &client, &mut operator).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_killed_twelve_times_during_a_thousand_resource_apply_converges_with_each_topic_created_once()
 {
    let _broker = crate::common::BROKER.read().await;
    let env = shared();
    let ns = env.namespace("killed").await;
    let client = env.client().await.unwrap_or_else(|e| panic!("{e}"));
    create_cluster(&client, &ns, env).await;
    let mut operator = OperatorProcess::new(env, &ns.name, test_dir(&ns), "operator");
    operator.start();
    converges_under_kills(env, &ns, &client, &mut operator).await;
}

/// The apply, the kills and every check, whatever `operator` is.
async fn converges_under_kills(
    env: &'static Environment,
    ns: &TestNamespace,
    client: &Client,
    operator: &mut impl Killer,
) {
    let seed = Rng::seed();
    eprintln!("kill test seed {seed} (namespace {})", ns.name);
    let mut rng = Rng(seed);
    let began = Instant::now();
    let applying = tokio::spawn(apply(client.clone(), ns.name.clone(), seed));
    let resets = tokio::spawn(commit_after_each_reset(
        client.clone(),
        ns.name.clone(),
        env,
    ));
    let mut kills = Vec::new();
    while kills.len() < KILLS || !applying.is_finished() {
        tokio::time::sleep(Duration::from_millis(300 + rng.below(3700))).await;
        if operator.kill().await {
            kills.push(began.elapsed());
        }
    }
    applying.await.unwrap_or_else(|e| panic!("apply: {e}"));
    eprintln!(
        "{} kills at {:?}; apply and deletes done after {:?}",
        kills.len(),
        kills
            .iter()
            .map(|k| format!("{:.1}s", k.as_secs_f64()))
            .collect::<Vec<_>>(),
        began.elapsed()
    );

    let remaining = DELETED_FROM;
    eventually("every resource Ready", Duration::from_secs(300), || async {
        match readiness(client, &ns.name).await? {
            counts if counts == (remaining, remaining, PRODUCERS, GROUPS) => Ok(()),
            (topics, topics_ready, producers_ready, groups_ready) => Err(format!(
                "{topics} Topics ({topics_ready} Ready), {producers_ready} Producers Ready, {groups_ready} ConsumerGroups Ready"
            )),
        }
    })
    .await;
    eprintln!("all Ready {:?} after the start", began.elapsed());

    // Each remaining topic created by one CreateTopics, none created twice (a deleted one not
    // brought back), no request refused but as "exists already".
    let prefix = format!("{}.t-", ns.name);
    let seen = creates_seen(env, &prefix);
    let created_once = |i: usize| seen.get(&format!("{prefix}{i}")).map_or(0, |s| s.created);
    let wrong: Vec<(usize, usize)> = (0..TOPICS)
        .map(|i| (i, created_once(i)))
        .filter(|(i, n)| if *i < DELETED_FROM { *n != 1 } else { *n > 1 })
        .collect();
    assert!(
        wrong.is_empty(),
        "topics created other than once, as (topic, creations): {wrong:?}"
    );
    let refused: Vec<_> = seen.iter().filter(|(_, s)| s.refused > 0).collect();
    assert!(refused.is_empty(), "CreateTopics refused: {refused:?}");
    let existed: usize = seen.values().map(|s| s.existed).sum();
    eprintln!(
        "{} topics created once each; {existed} CreateTopics answered \"exists already\" (a topic created just before a kill)",
        seen.values().filter(|s| s.created == 1).count()
    );

    // No orphan topic: the broker holds the remaining Topics' topics and no other.
    let w = wire(env);
    let expected: BTreeSet<String> = (0..DELETED_FROM).map(|i| format!("{prefix}{i}")).collect();
    eventually(
        "the deleted Topics' topics to be gone",
        Duration::from_secs(60),
        || async {
            let on_broker: BTreeSet<String> = w
                .metadata(None)
                .await
                .map_err(|e| e.to_string())?
                .topics
                .into_iter()
                .map(|t| t.name)
                .filter(|n| n.starts_with(&prefix))
                .collect();
            let orphans: Vec<_> = on_broker.difference(&expected).collect();
            let lost: Vec<_> = expected.difference(&on_broker).collect();
            if orphans.is_empty() && lost.is_empty() {
                Ok(())
            } else {
                Err(format!("orphan topics {orphans:?}, missing {lost:?}"))
            }
        },
    )
    .await;

    // No orphan Secret: one client Secret per Producer, each owned by a Producer that exists.
    let producers: BTreeSet<String> = Api::<Producer>::namespaced(client.clone(), &ns.name)
        .list(&ListParams::default())
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .items
        .into_iter()
        .filter_map(|p| p.metadata.uid)
        .collect();
    let secrets = Api::<Secret>::namespaced(client.clone(), &ns.name)
        .list(&ListParams::default())
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .items;
    let owned: Vec<_> = secrets
        .iter()
        .filter_map(|s| {
            let owner = s
                .metadata
                .owner_references
                .as_ref()?
                .iter()
                .find(|o| o.kind == "Producer")?;
            Some((
                s.metadata.name.clone().unwrap_or_default(),
                owner.uid.clone(),
            ))
        })
        .collect();
    let orphan_secrets: Vec<_> = owned
        .iter()
        .filter(|(_, uid)| !producers.contains(uid))
        .collect();
    assert!(
        orphan_secrets.is_empty(),
        "Secrets of no Producer: {orphan_secrets:?}"
    );
    assert_eq!(owned.len(), PRODUCERS, "client Secrets: {owned:?}");

    // The guarded resets: each has an outcome, and none ran again after it was recorded.
    let results = tokio::time::timeout(Duration::from_secs(120), resets)
        .await
        .unwrap_or_else(|_| panic!("not every offset reset got an outcome"))
        .unwrap_or_else(|e| panic!("resets: {e}"));
    let applied = results.values().filter(|r| *r == "Applied").count();
    eprintln!("offset resets: {applied} Applied, the others: {results:?}");
    assert!(
        results
            .values()
            .all(|r| r == "Applied" || r == "Interrupted"),
        "{results:?}"
    );
    // Let the operator reconcile every group a few more times: each is a chance to run again.
    tokio::time::sleep(Duration::from_secs(12)).await;
    let group_ids: Vec<String> = (0..RESETS).map(|i| format!("{}.g-{i}", ns.name)).collect();
    let (committed, unanswered) = w
        .committed_of_each_group(&group_ids)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(unanswered.is_empty(), "{unanswered:?}");
    for (i, group) in group_ids.iter().enumerate() {
        let tp = TopicPartition::new(format!("{prefix}{}", 200 + i), 0);
        assert_eq!(
            committed.get(group).and_then(|c| c.get(&tp)),
            Some(&(AFTER_THE_RESET, AFTER_THE_RESET_MARK.to_string())),
            "group {group}: its reset ran again after its outcome was recorded"
        );
    }

    if let Some(trouble) = operator.trouble(kills.len()).await {
        panic!("{trouble}");
    }
}
