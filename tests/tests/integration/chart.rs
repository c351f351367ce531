//! The Helm chart (`charts/exactly`): it lints, its values are validated by its schema, what it
//! renders is accepted by the real API server under the restricted Pod Security Standard, it
//! installs, and its RBAC is exactly enough: the operator authenticated with the chart's
//! ServiceAccount token makes every kind Ready, and what the chart does not grant is refused.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use exactly::api::{Condition, ConsumerGroup, KafkaCluster, Pipeline, Producer, Topic};
use exactly_testenv::tools::Tools;
use exactly_testenv::{Environment, TestNamespace, eventually, shared};
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::authentication::v1::TokenRequest;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Namespace, Pod, Secret, ServiceAccount};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::api::rbac::v1::ClusterRole;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::config::{AuthInfo, KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use tokio::io::AsyncWriteExt;

use crate::support::{broker_partitions, condition, create, create_cluster};

const TIMEOUT: Duration = Duration::from_secs(90);

/// The release name of every install; with the chart's naming it is also the full name of its
/// resources (the ServiceAccount, the Deployment, the Lease).
pub(crate) const RELEASE: &str = "exactly";

fn chart_dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../charts/exactly"))
}

/// What a command did, for assertions that show it all when they fail.
pub(crate) struct Output {
    success: bool,
    status: String,
    stdout: String,
    stderr: String,
}

impl Output {
    fn describe(&self, what: &str) -> String {
        format!(
            "{what}: {}\n--- stdout\n{}\n--- stderr\n{}",
            self.status, self.stdout, self.stderr
        )
    }
}

/// Runs `program` with `args` (and `stdin`), without blocking the runtime (the operator may be
/// running on it).
async fn run(program: &Path, args: &[String], stdin: Option<&str>) -> Output {
    let helm_home = std::env::temp_dir().join("exactly-chart-test-helm");
    let mut command = tokio::process::Command::new(program);
    command
        .args(args)
        // Helm's caches and settings away from the user's own.
        .env("HELM_CACHE_HOME", helm_home.join("cache"))
        .env("HELM_CONFIG_HOME", helm_home.join("config"))
        .env("HELM_DATA_HOME", helm_home.join("data"))
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = command
        .spawn()
        .unwrap_or_else(|e| panic!("{}: {e}", program.display()));
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(text.as_bytes())
            .await
            .unwrap_or_else(|e| panic!("{} stdin: {e}", program.display()));
    }
    let output = child
        .wait_with_output()
        .await
        .unwrap_or_else(|e| panic!("{}: {e}", program.display()));
    Output {
        success: output.status.success(),
        status: output.status.to_string(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|a| a.to_string()).collect()
}

fn tools() -> Tools {
    Tools::locate().unwrap_or_else(|e| panic!("{e}"))
}

/// `helm template` of the chart as release [`RELEASE`] in `namespace`, with `--set` values.
async fn template(tools: &Tools, namespace: &str, sets: &[&str]) -> Output {
    let chart = chart_dir();
    let mut args = strings(&["template", RELEASE]);
    args.push(chart.display().to_string());
    args.extend(strings(&["--namespace", namespace]));
    for set in sets {
        args.extend(strings(&["--set", set]));
    }
    run(&tools.helm, &args, None).await
}

/// [`template`], which must succeed.
async fn rendered(tools: &Tools, namespace: &str, sets: &[&str]) -> String {
    let output = template(tools, namespace, sets).await;
    assert!(
        output.success,
        "{}",
        output.describe(&format!("helm template {sets:?}"))
    );
    output.stdout
}

/// `helm install` of the chart as [`RELEASE`] into `namespace` (CRDs skipped: the environment
/// installed them), waiting for the Deployment; must succeed.
pub(crate) async fn install(env: &Environment, namespace: &str, sets: &[&str]) -> Output {
    let chart = chart_dir();
    let mut args = strings(&["install", RELEASE]);
    args.push(chart.display().to_string());
    args.extend(strings(&[
        "--namespace",
        namespace,
        "--skip-crds",
        "--wait",
        "--timeout",
        "120s",
        "--kubeconfig",
    ]));
    args.push(env.kubeconfig.display().to_string());
    for set in sets {
        args.extend(strings(&["--set", set]));
    }
    let output = run(&env.tools.helm, &args, None).await;
    assert!(
        output.success,
        "{}",
        output.describe(&format!("helm install into {namespace} {sets:?}"))
    );
    output
}

/// Labels `ns` to enforce and warn on the restricted Pod Security Standard: the API server then
/// refuses pods below it, and warns about workloads whose pod template is below it.
pub(crate) async fn restricted(client: &Client, ns: &str) {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .patch(
            ns,
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"metadata": {"labels": {
                "pod-security.kubernetes.io/enforce": "restricted",
                "pod-security.kubernetes.io/enforce-version": "latest",
                "pod-security.kubernetes.io/warn": "restricted",
                "pod-security.kubernetes.io/warn-version": "latest",
            }}})),
        )
        .await
        .unwrap_or_else(|e| panic!("labelling {ns}: {e}"));
}

/// `kubectl apply --dry-run=server` of `manifests` with the admin kubeconfig, into `ns`; with
/// `None`, each object goes to the namespace it names (kubectl refuses `--namespace` when the
/// objects span several).
async fn dry_run(env: &Environment, ns: Option<&str>, manifests: &str) -> Output {
    let mut args = strings(&["apply", "--dry-run=server", "-f", "-"]);
    if let Some(ns) = ns {
        args.extend(strings(&["--namespace", ns]));
    }
    args.push(format!("--kubeconfig={}", env.kubeconfig.display()));
    run(&env.tools.kubectl, &args, Some(manifests)).await
}

/// A client of the environment's API server (its URL and CA from the admin kubeconfig)
/// authenticated with a fresh TokenRequest token of the ServiceAccount `ns`/`name`, and nothing
/// else: what the operator's pod would run with.
async fn service_account_client(env: &Environment, admin: &Client, ns: &str, name: &str) -> Client {
    let accounts: Api<ServiceAccount> = Api::namespaced(admin.clone(), ns);
    let request: TokenRequest = serde_json::from_value(serde_json::json!({
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenRequest",
        "spec": {"audiences": [], "expirationSeconds": 3600},
    }))
    .unwrap_or_else(|e| panic!("token request: {e}"));
    let token = accounts
        .create_token_request(name, &PostParams::default(), &request)
        .await
        .unwrap_or_else(|e| panic!("token of serviceaccount {ns}/{name}: {e}"))
        .status
        .and_then(|s| s.token)
        .unwrap_or_else(|| panic!("no token in the TokenRequest's status"));
    assert!(!token.is_empty(), "empty token for {ns}/{name}");
    let kubeconfig = Kubeconfig::read_from(&env.kubeconfig)
        .unwrap_or_else(|e| panic!("{}: {e}", env.kubeconfig.display()));
    let mut config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .unwrap_or_else(|e| panic!("{}: {e}", env.kubeconfig.display()));
    config.auth_info = AuthInfo {
        token: Some(token.into()),
        ..AuthInfo::default()
    };
    Client::try_from(config).unwrap_or_else(|e| panic!("service account client: {e}"))
}

/// The user name the API server knows a ServiceAccount by.
fn sa_user(ns: &str) -> String {
    format!("system:serviceaccount:{ns}:{RELEASE}")
}

/// Asserts that `result` is the API server's 403 for the chart's ServiceAccount of `ns`.
fn assert_forbidden<T: std::fmt::Debug>(result: Result<T, kube::Error>, ns: &str, what: &str) {
    match result {
        Err(kube::Error::Api(status)) if status.code == 403 => {
            assert!(
                status.message.contains(&sa_user(ns)),
                "{what}: refused, but not for the chart's ServiceAccount: {}",
                status.message
            );
        }
        other => panic!(
            "{what} should be forbidden (403) for {}: {other:?}",
            sa_user(ns)
        ),
    }
}

/// Waits until `allowed` succeeds: RBAC bindings take effect once the authorizer's cache has
/// them, a moment after they are created.
async fn assert_allowed<T, F, Fut>(what: &str, mut allowed: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, kube::Error>>,
{
    eventually(what, Duration::from_secs(20), || {
        let attempt = allowed();
        async move { attempt.await.map(|_| ()).map_err(|e| e.to_string()) }
    })
    .await;
}

/// Waits until the chart's bindings are in effect for `client` in `ns` (the API server's
/// authorizer learns of new bindings from its cache, a moment after they are created).
async fn rbac_in_effect(client: &Client, ns: &str) {
    let topics: Api<Topic> = Api::namespaced(client.clone(), ns);
    assert_allowed("listing Topics as the operator", || async {
        topics.list(&ListParams::default()).await
    })
    .await;
    let sets: Api<StatefulSet> = Api::namespaced(client.clone(), ns);
    assert_allowed("listing StatefulSets as the operator", || async {
        sets.list(&ListParams::default()).await
    })
    .await;
}

/// Waits until the resource's `Ready` condition is True; returns it.
async fn wait_ready<K>(
    api: &Api<K>,
    name: &str,
    conditions: impl Fn(&K) -> Option<&Vec<Condition>>,
) -> K
where
    K: kube::Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    eventually(
        &format!("{} {name} to be Ready", K::kind(&())),
        TIMEOUT,
        || async {
            let object = api.get(name).await.map_err(|e| e.to_string())?;
            match conditions(&object).and_then(|c| condition(c, "Ready")) {
                Some((status, _, _)) if status == "True" => Ok(object),
                other => Err(format!("Ready: {other:?}")),
            }
        },
    )
    .await
}

/// What the operator counted as failed: every reconcile whose result is not `ok` (results are
/// labelled by error reason: `KubernetesApiError`, `KafkaRefused`, ...) and every failed list or
/// watch. A watch or write the chart's RBAC refuses shows here.
fn failures(metrics: &exactly::metrics::Metrics) -> Vec<String> {
    metrics
        .encode()
        .lines()
        .filter(|l| {
            (l.starts_with("exactly_reconciles_total{") && !l.contains("result=\"ok\""))
                || l.starts_with("exactly_watch_errors_total{")
        })
        .filter(|l| !l.trim_end().ends_with(" 0"))
        .map(str::to_string)
        .collect()
}

/// Whether `client`'s user may `verb` `resource` (of `group`) in `ns`, as the authorizer says
/// now (a SelfSubjectAccessReview: any authenticated user may ask about itself).
async fn may(client: &Client, ns: &str, group: &str, resource: &str, verb: &str) -> bool {
    use k8s_openapi::api::authorization::v1::SelfSubjectAccessReview;
    let reviews: Api<SelfSubjectAccessReview> = Api::all(client.clone());
    let review: SelfSubjectAccessReview = serde_json::from_value(serde_json::json!({
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SelfSubjectAccessReview",
        "spec": {"resourceAttributes": {
            "namespace": ns, "group": group, "resource": resource, "verb": verb,
        }},
    }))
    .unwrap_or_else(|e| panic!("access review: {e}"));
    reviews
        .create(&PostParams::default(), &review)
        .await
        .unwrap_or_else(|e| panic!("access review of {verb} {resource}: {e}"))
        .status
        .is_some_and(|s| s.allowed)
}

/// Takes `verb` on `resource` away from the chart's ClusterRole of `ns` (as a chart that forgot
/// it would), and waits until the authorizer refuses it to `operator`.
async fn revoke(
    admin: &Client,
    operator: &Client,
    ns: &str,
    group: &str,
    resource: &str,
    verb: &str,
) {
    let roles: Api<ClusterRole> = Api::all(admin.clone());
    let name = format!("{ns}-{RELEASE}");
    let mut role = roles
        .get(&name)
        .await
        .unwrap_or_else(|e| panic!("ClusterRole {name}: {e}"));
    let mut found = false;
    for rule in role.rules.iter_mut().flatten() {
        let covers = rule.api_groups.iter().flatten().any(|g| g == group)
            && rule.resources.iter().flatten().any(|r| r == resource);
        if covers && rule.verbs.iter().any(|v| v == verb) {
            rule.verbs.retain(|v| v != verb);
            found = true;
        }
    }
    assert!(
        found,
        "the chart grants no {verb} on {resource} to take away"
    );
    roles
        .replace(&name, &PostParams::default(), &role)
        .await
        .unwrap_or_else(|e| panic!("replacing ClusterRole {name}: {e}"));
    eventually(
        &format!("{verb} {resource} to be refused"),
        Duration::from_secs(20),
        || async {
            if may(operator, ns, group, resource, verb).await {
                Err("still allowed".to_string())
            } else {
                Ok(())
            }
        },
    )
    .await;
}

#[tokio::test]
async fn helm_lint_passes() {
    let tools = tools();
    let chart = chart_dir().display().to_string();
    for sets in [
        vec![],
        vec!["watchNamespaces={team-a,team-b}"],
        vec![
            "metrics.serviceMonitor.enabled=true",
            "networkPolicy.enabled=true",
            "networkPolicy.egress.allowAll=false",
            "replicaCount=2",
        ],
    ] {
        let mut args = strings(&["lint", "--strict", &chart]);
        for set in &sets {
            args.extend(strings(&["--set", set]));
        }
        let output = run(&tools.helm, &args, None).await;
        assert!(
            output.success,
            "{}",
            output.describe(&format!("helm lint --strict {sets:?}"))
        );
        assert!(
            output.stdout.contains("0 chart(s) failed"),
            "{}",
            output.describe("helm lint")
        );
    }
}

#[tokio::test]
async fn values_outside_the_schema_are_refused_at_render_time() {
    let tools = tools();
    for (set, expected) in [
        ("logFormat=xml", "/logFormat"),
        ("concurrency=0", "/concurrency"),
        ("refreshInterval=thirty", "/refreshInterval"),
        ("watchNamespaces={Not_A_Namespace}", "/watchNamespaces/0"),
        ("metrics.port=80800", "/metrics/port"),
        ("image.pullPolicy=Sometimes", "/image/pullPolicy"),
        ("replicaCoutn=2", "replicaCoutn"),
        // Not a schema rule but the same promise: two active operators are never rendered.
        (
            "replicaCount=2,leaderElection.enabled=false",
            "needs leaderElection.enabled",
        ),
    ] {
        let output = template(&tools, "default", &[set]).await;
        assert!(
            !output.success,
            "{}",
            output.describe(&format!("{set} should be refused"))
        );
        assert!(
            output.stderr.contains(expected),
            "{}",
            output.describe(&format!("{set} should be refused naming {expected}"))
        );
    }
}

#[tokio::test]
async fn rendered_manifests_are_accepted_by_the_api_server_under_restricted_pod_security() {
    let env = shared();
    let tools = &env.tools;
    let admin = env.client().await.unwrap_or_else(|e| panic!("{e}"));
    let ns = env.namespace("chart-render").await;
    let watched = env.namespace("chart-render-watched").await;
    restricted(&admin, &ns.name).await;
    let namespaces = format!("watchNamespaces={{{},{}}}", ns.name, watched.name);
    for sets in [
        vec![],
        vec![namespaces.as_str()],
        vec![
            // The ServiceMonitor CRD is not installed here: the chart renders none when disabled.
            "metrics.serviceMonitor.enabled=false",
            "networkPolicy.enabled=true",
        ],
        vec![
            "networkPolicy.enabled=true",
            "networkPolicy.egress.allowAll=false",
            "networkPolicy.egress.rules[0].to[0].ipBlock.cidr=10.0.0.1/32",
            "networkPolicy.egress.rules[0].ports[0].port=6443",
            "replicaCount=2",
        ],
    ] {
        let manifests = rendered(tools, &ns.name, &sets).await;
        assert!(
            !manifests.contains("kind: ServiceMonitor"),
            "a ServiceMonitor rendered with {sets:?}"
        );
        // With watchNamespaces, the Roles go to other namespaces than the release's.
        let into = (!sets.contains(&namespaces.as_str())).then_some(ns.name.as_str());
        let output = dry_run(env, into, &manifests).await;
        let what = format!("kubectl apply --dry-run=server of the chart with {sets:?}");
        assert!(output.success, "{}", output.describe(&what));
        assert!(
            output
                .stdout
                .contains("deployment.apps/exactly created (server dry run)"),
            "{}",
            output.describe(&what)
        );
        assert!(
            !output.stderr.contains("PodSecurity"),
            "{}",
            output.describe(&format!("{what}: below the restricted profile"))
        );
    }
    // The check above can fail: a pod template below the restricted profile is reported.
    let weakened = rendered(
        tools,
        &ns.name,
        &["securityContext.allowPrivilegeEscalation=true"],
    )
    .await;
    let output = dry_run(env, Some(&ns.name), &weakened).await;
    assert!(
        output.stderr.contains("would violate PodSecurity"),
        "{}",
        output.describe("a weakened securityContext should be reported")
    );
}

#[tokio::test]
async fn a_service_monitor_is_rendered_only_when_enabled() {
    let tools = tools();
    let off = rendered(&tools, "ops", &[]).await;
    assert!(!off.contains("kind: ServiceMonitor"), "{off}");
    let on = rendered(
        &tools,
        "ops",
        &[
            "metrics.serviceMonitor.enabled=true",
            "metrics.serviceMonitor.labels.release=prometheus",
        ],
    )
    .await;
    let monitor = on
        .split("\n---")
        .find(|d| d.contains("kind: ServiceMonitor"))
        .unwrap_or_else(|| panic!("no ServiceMonitor in\n{on}"));
    for expected in [
        "apiVersion: monitoring.coreos.com/v1",
        "namespace: ops",
        "release: prometheus",
        "- port: metrics",
        "path: /metrics",
        "app.kubernetes.io/instance: exactly",
    ] {
        assert!(monitor.contains(expected), "{expected} not in\n{monitor}");
    }
}

#[tokio::test]
async fn helm_install_schedules_the_operator_pod_with_the_restricted_security_context() {
    let env = shared();
    let admin = env.client().await.unwrap_or_else(|e| panic!("{e}"));
    let ns = env.namespace("chart-install").await;
    // Pods below the restricted profile are refused here: the pod existing proves it is not.
    restricted(&admin, &ns.name).await;
    let output = install(env, &ns.name, &[]).await;
    assert!(
        output.stdout.contains("STATUS: deployed"),
        "{}",
        output.describe("helm install")
    );

    let deployments: Api<Deployment> = Api::namespaced(admin.clone(), &ns.name);
    let deployment = deployments
        .get(RELEASE)
        .await
        .unwrap_or_else(|e| panic!("the Deployment: {e}"));
    let spec = deployment.spec;
    assert_eq!(spec.replicas, Some(1));
    let pod = spec.template.spec.unwrap_or_else(|| panic!("no pod spec"));
    assert_eq!(pod.service_account_name.as_deref(), Some(RELEASE));
    let pod_security = pod
        .security_context
        .unwrap_or_else(|| panic!("no pod securityContext"));
    assert_eq!(pod_security.run_as_non_root, Some(true));
    assert_eq!(pod_security.run_as_user, Some(65532));
    assert_eq!(
        pod_security.seccomp_profile.map(|p| p.type_).as_deref(),
        Some("RuntimeDefault")
    );
    let container = pod
        .containers
        .first()
        .unwrap_or_else(|| panic!("no container"));
    assert_eq!(
        container.image.as_deref(),
        Some("ghcr.io/exactly-dev/exactly:0.1.0")
    );
    let security = container
        .security_context
        .clone()
        .unwrap_or_else(|| panic!("no container securityContext"));
    assert_eq!(security.run_as_non_root, Some(true));
    assert_eq!(security.run_as_user, Some(65532));
    assert_eq!(security.read_only_root_filesystem, Some(true));
    assert_eq!(security.allow_privilege_escalation, Some(false));
    assert_eq!(
        security.capabilities.and_then(|c| c.drop),
        Some(vec!["ALL".to_string()])
    );
    assert_eq!(
        security.seccomp_profile.map(|p| p.type_).as_deref(),
        Some("RuntimeDefault")
    );
    let args = container.args.clone().unwrap_or_default();
    for expected in [
        "run",
        "--metrics-addr=0.0.0.0:8080",
        "--leader-elect",
        "--lease-name=exactly",
        &format!("--lease-namespace={}", ns.name),
    ] {
        assert!(
            args.iter().any(|a| a == expected),
            "{expected} not in {args:?}"
        );
    }
    assert!(
        !args.iter().any(|a| a.starts_with("--namespace")),
        "watching every namespace by default: {args:?}"
    );
    let env_vars: Vec<(String, Option<String>)> = container
        .env
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(|e| {
            let field = e.value_from.and_then(|v| v.field_ref).map(|f| f.field_path);
            (e.name, field)
        })
        .collect();
    assert!(
        env_vars.contains(&("POD_NAME".into(), Some("metadata.name".into())))
            && env_vars.contains(&("POD_NAMESPACE".into(), Some("metadata.namespace".into()))),
        "{env_vars:?}"
    );
    let probe_path = |p: &Option<k8s_openapi::api::core::v1::Probe>| {
        p.as_ref()
            .and_then(|p| p.http_get.as_ref())
            .map(|h| (h.path.clone().unwrap_or_default(), format!("{:?}", h.port)))
    };
    assert_eq!(
        probe_path(&container.liveness_probe),
        Some(("/healthz".into(), "String(\"metrics\")".into()))
    );
    assert_eq!(
        probe_path(&container.readiness_probe),
        Some(("/readyz".into(), "String(\"metrics\")".into()))
    );

    // The pod was admitted under `enforce: restricted` and scheduled: a kwok node reports it
    // Running, though no container runs there (a real node will run it).
    let pods: Api<Pod> = Api::namespaced(admin.clone(), &ns.name);
    eventually("the operator pod to be Running", TIMEOUT, || async {
        let list = pods
            .list(&ListParams::default().labels("app.kubernetes.io/instance=exactly"))
            .await
            .map_err(|e| e.to_string())?;
        let phases: Vec<Option<String>> = list
            .items
            .iter()
            .map(|p| p.status.as_ref().and_then(|s| s.phase.clone()))
            .collect();
        if phases.iter().any(|p| p.as_deref() == Some("Running")) {
            Ok(())
        } else {
            Err(format!("pod phases {phases:?}"))
        }
    })
    .await;

    // Uninstalling removes the cluster-wide RBAC and leaves the CRDs.
    let cluster_role = format!("{}-{RELEASE}", ns.name);
    let roles: Api<ClusterRole> = Api::all(admin.clone());
    assert!(
        roles
            .get_opt(&cluster_role)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .is_some(),
        "ClusterRole {cluster_role} not installed"
    );
    let mut args = strings(&["uninstall", RELEASE, "--namespace", &ns.name, "--wait"]);
    args.push(format!("--kubeconfig={}", env.kubeconfig.display()));
    let output = run(&env.tools.helm, &args, None).await;
    assert!(output.success, "{}", output.describe("helm uninstall"));
    assert!(
        roles
            .get_opt(&cluster_role)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .is_none(),
        "ClusterRole {cluster_role} left after uninstall"
    );
    let crds: Api<CustomResourceDefinition> = Api::all(admin.clone());
    for crd in [
        "kafkaclusters.exactly.dev",
        "topics.exactly.dev",
        "producers.exactly.dev",
        "consumergroups.exactly.dev",
        "pipelines.exactly.dev",
    ] {
        assert!(
            crds.get_opt(crd)
                .await
                .unwrap_or_else(|e| panic!("{e}"))
                .is_some(),
            "{crd} gone after uninstall"
        );
    }
}

#[tokio::test]
async fn the_operator_with_the_charts_service_account_makes_every_kind_ready() {
    let env = shared();
    let admin = env.client().await.unwrap_or_else(|e| panic!("{e}"));
    let ns = env.namespace("chart-flow").await;
    // watchNamespaces unset: a ClusterRole.
    install(env, &ns.name, &[]).await;
    let operator = service_account_client(env, &admin, &ns.name, RELEASE).await;
    // The bindings were just created: start once the authorizer has them, so a refusal counted
    // below is a missing rule, not a race.
    rbac_in_effect(&operator, &ns.name).await;
    let metrics = Arc::new(exactly::metrics::Metrics::default());
    crate::support::run_operator_with_metrics(operator, &ns.name, metrics.clone());

    create_cluster(&admin, &ns, env).await;
    let kafka_topic = ns.unique("orders");
    // deletionPolicy Delete: the operator patches its finalizer onto the Topic.
    create::<Topic>(
        &admin,
        &ns,
        "orders",
        serde_json::json!({
            "clusterRef": {"name": "local"}, "topicName": kafka_topic, "partitions": 2,
            "deletionPolicy": "Delete",
        }),
    )
    .await;
    create::<Producer>(
        &admin,
        &ns,
        "writer",
        serde_json::json!({
            "clusterRef": {"name": "local"}, "topics": [{"name": "orders"}],
            "transactionalIdPrefix": ns.unique("writer"),
        }),
    )
    .await;
    create::<ConsumerGroup>(
        &admin,
        &ns,
        "billing",
        serde_json::json!({
            "clusterRef": {"name": "local"}, "groupId": ns.unique("billing"),
            "topics": [{"name": "orders"}],
        }),
    )
    .await;

    // A provisioned cluster too: its StatefulSet, Services, ConfigMap and PodDisruptionBudget
    // are written with the chart's permissions.
    crate::support::create::<KafkaCluster>(
        &admin,
        &ns,
        "provisioned",
        serde_json::json!({"provisioned": {"profile": "Development", "combined": true,
            "controllers": {"replicas": 1}}}),
    )
    .await;

    let clusters: Api<KafkaCluster> = Api::namespaced(admin.clone(), &ns.name);
    wait_ready(&clusters, "local", |c| {
        c.status.as_ref().map(|s| &s.conditions)
    })
    .await;
    wait_ready(&clusters, "provisioned", |c| {
        c.status.as_ref().map(|s| &s.conditions)
    })
    .await;
    let topics: Api<Topic> = Api::namespaced(admin.clone(), &ns.name);
    let topic = wait_ready(&topics, "orders", |t| {
        t.status.as_ref().map(|s| &s.conditions)
    })
    .await;
    assert!(
        topic
            .metadata
            .finalizers
            .unwrap_or_default()
            .iter()
            .any(|f| f.starts_with("exactly.dev/")),
        "the Topic has no finalizer of the operator"
    );
    assert_eq!(broker_partitions(env, &kafka_topic), Some(2));
    let producers: Api<Producer> = Api::namespaced(admin.clone(), &ns.name);
    wait_ready(&producers, "writer", |p| {
        p.status.as_ref().map(|s| &s.conditions)
    })
    .await;
    let secrets: Api<Secret> = Api::namespaced(admin.clone(), &ns.name);
    let secret = secrets
        .get("writer-client")
        .await
        .unwrap_or_else(|e| panic!("the Producer's client Secret: {e}"));
    assert!(
        secret
            .data
            .unwrap_or_default()
            .contains_key("instance-0.properties"),
        "the client Secret holds no properties"
    );
    let groups: Api<ConsumerGroup> = Api::namespaced(admin.clone(), &ns.name);
    wait_ready(&groups, "billing", |g| {
        g.status.as_ref().map(|s| &s.conditions)
    })
    .await;
    // A Pipeline from orders to charges: its workers, configuration Secret, Producer and
    // ConsumerGroup are written with the chart's permissions.
    create::<Topic>(
        &admin,
        &ns,
        "charges",
        serde_json::json!({"clusterRef": {"name": "local"}, "topicName": ns.unique("charges"),
            "partitions": 1}),
    )
    .await;
    create::<Pipeline>(
        &admin,
        &ns,
        "charging",
        serde_json::json!({"clusterRef": {"name": "local"},
            "input": {"topics": [{"name": "orders"}], "groupId": ns.unique("charging")},
            "output": {"topicRef": {"name": "charges"}}}),
    )
    .await;
    let pipelines: Api<Pipeline> = Api::namespaced(admin.clone(), &ns.name);
    wait_ready(&pipelines, "charging", |p| {
        p.status.as_ref().map(|s| &s.conditions)
    })
    .await;

    // No watch or write of the operator was refused along the way.
    let failed = failures(&metrics);
    assert!(
        failed.is_empty(),
        "failed reconciles or watches: {failed:?}"
    );

    // Deleting the Topic: the operator deletes the Kafka topic, says so in an Event and
    // releases its finalizer, all with the chart's permissions.
    groups
        .delete("billing", &DeleteParams::default())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    producers
        .delete("writer", &DeleteParams::default())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    topics
        .delete("orders", &DeleteParams::default())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    eventually("the Topic to be gone", TIMEOUT, || async {
        match topics.get_opt("orders").await {
            Ok(None) => Ok(()),
            other => Err(format!("{:?}", other.map(|t| t.map(|t| t.status)))),
        }
    })
    .await;
    // The broker finishes a deletion a moment after it answers DeleteTopics.
    eventually("the Kafka topic to be gone", TIMEOUT, || async {
        match broker_partitions(env, &kafka_topic) {
            None => Ok(()),
            Some(n) => Err(format!("{kafka_topic} still has {n} partitions")),
        }
    })
    .await;
    let events: Api<Event> = Api::namespaced(admin.clone(), &ns.name);
    eventually("the operator's TopicDeleted Event", TIMEOUT, || async {
        let list = events
            .list(&ListParams::default())
            .await
            .map_err(|e| e.to_string())?;
        let found = list.items.iter().any(|e| {
            e.reason.as_deref() == Some("TopicDeleted")
                && e.reporting_controller.as_deref() == Some("exactly-operator")
        });
        if found {
            Ok(())
        } else {
            Err(format!(
                "events: {:?}",
                list.items.iter().map(|e| &e.reason).collect::<Vec<_>>()
            ))
        }
    })
    .await;
}

/// Negative control of the check above: with one write the chart grants taken away, the same
/// flow's refused writes are counted, and [`failures`] names them.
#[tokio::test]
async fn a_write_the_service_account_may_not_make_shows_as_failed_reconciles() {
    let env = shared();
    let admin = env.client().await.unwrap_or_else(|e| panic!("{e}"));
    let ns = env.namespace("chart-no-patch").await;
    install(env, &ns.name, &[]).await;
    let operator = service_account_client(env, &admin, &ns.name, RELEASE).await;
    rbac_in_effect(&operator, &ns.name).await;
    // The Producer's client Secret is written by server-side apply: a patch.
    revoke(&admin, &operator, &ns.name, "", "secrets", "patch").await;
    let metrics = Arc::new(exactly::metrics::Metrics::default());
    crate::support::run_operator_with_metrics(operator, &ns.name, metrics.clone());
    create_cluster(&admin, &ns, env).await;
    create::<Topic>(
        &admin,
        &ns,
        "orders",
        serde_json::json!({"clusterRef": {"name": "local"}, "topicName": ns.unique("orders"),
            "partitions": 1}),
    )
    .await;
    create::<Producer>(
        &admin,
        &ns,
        "writer",
        serde_json::json!({
            "clusterRef": {"name": "local"}, "topics": [{"name": "orders"}],
            "transactionalIdPrefix": ns.unique("writer"),
        }),
    )
    .await;
    eventually(
        "the refused Secret write to be counted",
        TIMEOUT,
        || async {
            let failed = failures(&metrics);
            if failed
                .iter()
                .any(|l| l.contains("kind=\"Producer\"") && l.contains("KubernetesApiError"))
            {
                Ok(())
            } else {
                Err(format!("failures counted: {failed:?}"))
            }
        },
    )
    .await;
}

/// Negative control: with one watch the chart grants taken away, the failing watch is counted.
#[tokio::test]
async fn a_watch_the_service_account_may_not_make_shows_as_failed_watches() {
    let env = shared();
    let admin = env.client().await.unwrap_or_else(|e| panic!("{e}"));
    let ns = env.namespace("chart-no-watch").await;
    install(env, &ns.name, &[]).await;
    let operator = service_account_client(env, &admin, &ns.name, RELEASE).await;
    rbac_in_effect(&operator, &ns.name).await;
    // The KafkaCluster controller watches the StatefulSets of provisioned clusters.
    revoke(&admin, &operator, &ns.name, "apps", "statefulsets", "watch").await;
    let metrics = Arc::new(exactly::metrics::Metrics::default());
    crate::support::run_operator_with_metrics(operator, &ns.name, metrics.clone());
    eventually("the refused watch to be counted", TIMEOUT, || async {
        let failed = failures(&metrics);
        if failed
            .iter()
            .any(|l| l.starts_with("exactly_watch_errors_total{kind=\"KafkaCluster\"}"))
        {
            Ok(())
        } else {
            Err(format!("failures counted: {failed:?}"))
        }
    })
    .await;
}

#[tokio::test]
async fn verbs_the_chart_does_not_grant_are_forbidden() {
    let env = shared();
    let admin = env.client().await.unwrap_or_else(|e| panic!("{e}"));
    let ns = env.namespace("chart-forbidden").await;
    install(env, &ns.name, &[]).await;
    let sa = service_account_client(env, &admin, &ns.name, RELEASE).await;
    let n = ns.name.as_str();

    let secrets: Api<Secret> = Api::namespaced(admin.clone(), n);
    let secret: Secret = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "kafka-login"},
        "stringData": {"sasl.password": "secret"},
    }))
    .unwrap_or_else(|e| panic!("{e}"));
    secrets
        .create(&PostParams::default(), &secret)
        .await
        .unwrap_or_else(|e| panic!("{e}"));

    // What the chart grants works with this client (so the refusals below are RBAC's)...
    let sa_secrets: Api<Secret> = Api::namespaced(sa.clone(), n);
    assert_allowed("get a Secret as the operator", || async {
        sa_secrets.get("kafka-login").await
    })
    .await;
    let sa_topics: Api<Topic> = Api::namespaced(sa.clone(), n);
    assert_allowed("list Topics as the operator", || async {
        sa_topics.list(&ListParams::default()).await
    })
    .await;

    // ...and nothing more.
    assert_forbidden(
        sa_secrets
            .delete("kafka-login", &DeleteParams::default())
            .await,
        n,
        "deleting a Secret",
    );
    assert!(
        secrets
            .get_opt("kafka-login")
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .is_some()
    );
    assert_forbidden(
        sa_secrets
            .replace("kafka-login", &PostParams::default(), &secret)
            .await,
        n,
        "updating (PUT) a Secret",
    );
    // Pods are listed (a Pipeline's removed workers), never touched.
    let sa_pods: Api<Pod> = Api::namespaced(sa.clone(), n);
    assert_forbidden(
        sa_pods.delete("anything", &DeleteParams::default()).await,
        n,
        "deleting a pod",
    );
    assert_forbidden(sa_pods.get("anything").await, n, "reading a pod");
    assert_forbidden(
        sa_topics.delete("anything", &DeleteParams::default()).await,
        n,
        "deleting a Topic",
    );
    let topic: Topic = serde_json::from_value(serde_json::json!({
        "apiVersion": "exactly.dev/v1alpha1", "kind": "Topic",
        "metadata": {"name": "made-by-the-operator"},
        "spec": {"clusterRef": {"name": "local"}, "partitions": 1},
    }))
    .unwrap_or_else(|e| panic!("{e}"));
    assert_forbidden(
        sa_topics.create(&PostParams::default(), &topic).await,
        n,
        "creating a Topic",
    );
    let sa_deployments: Api<Deployment> = Api::namespaced(sa.clone(), n);
    assert_forbidden(
        sa_deployments.get(RELEASE).await,
        n,
        "reading its own Deployment",
    );
    let sa_namespaces: Api<Namespace> = Api::all(sa.clone());
    assert_forbidden(
        sa_namespaces.list(&ListParams::default()).await,
        n,
        "listing namespaces",
    );
    let sa_crds: Api<CustomResourceDefinition> = Api::all(sa.clone());
    assert_forbidden(
        sa_crds
            .delete("topics.exactly.dev", &DeleteParams::default())
            .await,
        n,
        "deleting a CRD",
    );
    let sa_roles: Api<ClusterRole> = Api::all(sa.clone());
    assert_forbidden(
        sa_roles.list(&ListParams::default()).await,
        n,
        "listing ClusterRoles",
    );
    // Leases: only in the release namespace, never elsewhere.
    let lease: Lease = serde_json::from_value(serde_json::json!({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": RELEASE},
    }))
    .unwrap_or_else(|e| panic!("{e}"));
    let elsewhere: Api<Lease> = Api::namespaced(sa.clone(), "default");
    assert_forbidden(
        elsewhere.create(&PostParams::default(), &lease).await,
        n,
        "creating a Lease outside the release namespace",
    );
    let sa_leases: Api<Lease> = Api::namespaced(sa.clone(), n);
    assert_allowed("creating its Lease in the release namespace", || async {
        sa_leases.create(&PostParams::default(), &lease).await
    })
    .await;
    assert_forbidden(
        sa_leases.delete(RELEASE, &DeleteParams::default()).await,
        n,
        "deleting its Lease",
    );
    assert_forbidden(
        sa_leases.list(&ListParams::default()).await,
        n,
        "listing Leases",
    );
}

#[tokio::test]
async fn with_watch_namespaces_the_service_account_may_act_only_there() {
    let env = shared();
    let admin = env.client().await.unwrap_or_else(|e| panic!("{e}"));
    let release = env.namespace("chart-ops").await;
    let watched: TestNamespace = env.namespace("chart-watched").await;
    let other = env.namespace("chart-other").await;
    let namespaces = format!("watchNamespaces={{{}}}", watched.name);
    install(env, &release.name, &[namespaces.as_str()]).await;

    // No cluster-wide role at all.
    let roles: Api<ClusterRole> = Api::all(admin.clone());
    assert!(
        roles
            .get_opt(&format!("{}-{RELEASE}", release.name))
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .is_none(),
        "a ClusterRole was installed although watchNamespaces is set"
    );
    let deployments: Api<Deployment> = Api::namespaced(admin.clone(), &release.name);
    let args = deployments
        .get(RELEASE)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .spec
        .template
        .spec
        .and_then(|p| p.containers.first().and_then(|c| c.args.clone()))
        .unwrap_or_default();
    assert!(
        args.contains(&format!("--namespace={}", watched.name)),
        "{args:?}"
    );

    let sa = service_account_client(env, &admin, &release.name, RELEASE).await;
    let r = release.name.as_str();
    let in_watched: Api<Topic> = Api::namespaced(sa.clone(), &watched.name);
    assert_allowed("listing Topics in the watched namespace", || async {
        in_watched.list(&ListParams::default()).await
    })
    .await;
    let secrets_watched: Api<Secret> = Api::namespaced(sa.clone(), &watched.name);
    assert_allowed("listing Secrets in the watched namespace", || async {
        secrets_watched.list(&ListParams::default()).await
    })
    .await;
    let in_other: Api<Topic> = Api::namespaced(sa.clone(), &other.name);
    assert_forbidden(
        in_other.list(&ListParams::default()).await,
        r,
        "listing Topics in an unwatched namespace",
    );
    let secrets_other: Api<Secret> = Api::namespaced(sa.clone(), &other.name);
    assert_forbidden(
        secrets_other.list(&ListParams::default()).await,
        r,
        "listing Secrets in an unwatched namespace",
    );
    let all_secrets: Api<Secret> = Api::all(sa.clone());
    assert_forbidden(
        all_secrets.list(&ListParams::default()).await,
        r,
        "listing Secrets across all namespaces",
    );
    let in_release: Api<Secret> = Api::namespaced(sa.clone(), r);
    assert_forbidden(
        in_release.list(&ListParams::default()).await,
        r,
        "listing Secrets in the release namespace (not watched)",
    );

    // The operator runs on the watched namespace with the Role alone.
    rbac_in_effect(&sa, &watched.name).await;
    crate::support::run_operator(sa, &watched.name);
    create_cluster(&admin, &watched, env).await;
    create::<Topic>(
        &admin,
        &watched,
        "orders",
        serde_json::json!({
            "clusterRef": {"name": "local"}, "topicName": watched.unique("orders"),
            "partitions": 1,
        }),
    )
    .await;
    let clusters: Api<KafkaCluster> = Api::namespaced(admin.clone(), &watched.name);
    wait_ready(&clusters, "local", |c| {
        c.status.as_ref().map(|s| &s.conditions)
    })
    .await;
    let topics: Api<Topic> = Api::namespaced(admin.clone(), &watched.name);
    wait_ready(&topics, "orders", |t| {
        t.status.as_ref().map(|s| &s.conditions)
    })
    .await;
}

/// Values that put the operator's pod on the environment's real node (its taint keeps every
/// other workload on kwok's nodes).
pub(crate) const ON_THE_REAL_NODE: [&str; 4] = [
    "nodeSelector.exactly\\.dev/node=real",
    "tolerations[0].key=exactly.dev/real-node",
    "tolerations[0].operator=Exists",
    "tolerations[0].effect=NoSchedule",
];

#[tokio::test]
async fn helm_install_runs_the_operator_as_a_real_container_that_makes_the_quickstart_ready() {
    let env = shared();
    let image = tokio::task::spawn_blocking(|| shared().operator_image())
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|e| panic!("{e}"));
    let admin = env.client().await.unwrap_or_else(|e| panic!("{e}"));
    let ns = env.namespace("chart-real").await;
    restricted(&admin, &ns.name).await;
    // Only this namespace: the operators of other tests own theirs.
    let watch = format!("watchNamespaces={{{}}}", ns.name);
    let mut sets = ON_THE_REAL_NODE.to_vec();
    sets.push(&watch);
    // `--wait`: the Deployment is available only once the container's /readyz answers.
    install(env, &ns.name, &sets).await;

    let pods: Api<Pod> = Api::namespaced(admin.clone(), &ns.name);
    let list = pods
        .list(&ListParams::default().labels("app.kubernetes.io/instance=exactly"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let pod = list
        .items
        .first()
        .unwrap_or_else(|| panic!("no operator pod"));
    let pod_name = pod.metadata.name.clone().unwrap_or_default();
    let spec = pod.spec.as_ref().unwrap_or_else(|| panic!("no pod spec"));
    assert_eq!(
        spec.node_name.as_deref(),
        Some(exactly_testenv::node::NODE_NAME),
        "the operator pod is not on the real node"
    );
    let status = pod.status.clone().unwrap_or_default();
    let container = status
        .container_statuses
        .as_ref()
        .and_then(|s| s.first())
        .unwrap_or_else(|| panic!("no container status: {status:?}"));
    assert!(container.ready, "{container:?}");
    assert_eq!(container.image, image);
    assert!(
        container.image_id.starts_with("sha256:") || container.image_id.contains("@sha256:"),
        "{container:?}"
    );
    assert!(
        container
            .state
            .as_ref()
            .and_then(|s| s.running.as_ref())
            .is_some(),
        "{container:?}"
    );

    // It leader-elects: the Lease names its pod.
    let leases: Api<Lease> = Api::namespaced(admin.clone(), &ns.name);
    eventually("the operator pod to hold the Lease", TIMEOUT, || async {
        let holder = leases
            .get_opt(RELEASE)
            .await
            .map_err(|e| e.to_string())?
            .and_then(|l| l.spec)
            .and_then(|s| s.holder_identity);
        if holder.as_deref() == Some(pod_name.as_str()) {
            Ok(())
        } else {
            Err(format!("holder {holder:?}"))
        }
    })
    .await;

    // /metrics, from the host at the pod's address (the host routes the pod range to the node).
    let pod_ip = status.pod_ip.clone().unwrap_or_else(|| panic!("no pod IP"));
    let metrics = http_get(&pod_ip, 8080, "/metrics").await;
    assert!(
        metrics.starts_with("HTTP/1.1 200") && metrics.contains("application/openmetrics-text"),
        "{metrics}"
    );

    // The quick-start as pasted: its KafkaCluster names `kafka-bootstrap.kafka.svc:9092`, which
    // only resolves in the cluster (CoreDNS, then kube-proxy to the environment's broker).
    crate::examples::apply_example_in(&ns, "quickstart.yaml", 6, None).await;
    let metrics = http_get(&pod_ip, 8080, "/metrics").await;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("exactly_reconciles_total") && l.contains("kind=\"Topic\"")),
        "{metrics}"
    );

    // `kubectl logs` shows its JSON log.
    let mut args = strings(&["logs", "--namespace", &ns.name, &pod_name]);
    args.push(format!("--kubeconfig={}", env.kubeconfig.display()));
    let output = run(&env.tools.kubectl, &args, None).await;
    assert!(output.success, "{}", output.describe("kubectl logs"));
    let lines: Vec<&str> = output
        .stdout
        .lines()
        .filter(|l| !l.trim().is_empty())
        .collect();
    assert!(!lines.is_empty(), "no log lines");
    for line in &lines {
        let entry: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line}"));
        assert!(
            entry.get("level").is_some() && entry.get("timestamp").is_some(),
            "{line}"
        );
    }

    let mut args = strings(&["uninstall", RELEASE, "--namespace", &ns.name, "--wait"]);
    args.push(format!("--kubeconfig={}", env.kubeconfig.display()));
    let output = run(&env.tools.helm, &args, None).await;
    assert!(output.success, "{}", output.describe("helm uninstall"));
}

/// The body of a plain HTTP GET of `http://<ip>:<port><path>`.
async fn http_get(ip: &str, port: u16, path: &str) -> String {
    use tokio::io::AsyncReadExt;
    let mut stream = tokio::time::timeout(
        Duration::from_secs(5),
        tokio::net::TcpStream::connect((ip, port)),
    )
    .await
    .unwrap_or_else(|_| panic!("connecting to {ip}:{port} timed out"))
    .unwrap_or_else(|e| panic!("connecting to {ip}:{port}: {e}"));
    let request = format!("GET {path} HTTP/1.0\r\nHost: {ip}\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let mut response = String::new();
    tokio::time::timeout(
        Duration::from_secs(10),
        stream.read_to_string(&mut response),
    )
    .await
    .unwrap_or_else(|_| panic!("reading {ip}:{port}{path} timed out"))
    .unwrap_or_else(|e| panic!("reading {ip}:{port}{path}: {e}"));
    response
}
