//! Reconciles a Pipeline into its children and its status:
//! - a Producer `<name>-pipeline` (reserves the workers' `transactional.id` prefix against every
//!   other Producer and Pipeline on the cluster, and reports their transactions),
//! - a ConsumerGroup `<name>-pipeline` (the workers' group, `read_committed`: its lag is the
//!   pipeline's lag),
//! - a Secret `<name>-pipeline` holding the worker's `pipeline.json`,
//! - a StatefulSet `<name>-worker` of `exactly-worker` pods: stable ordinals make worker `n`'s
//!   `transactional.id` `<prefix>-<n>`, so a restarted worker fences its zombie at once.
//!
//! Deciding is pure ([`render_worker_config`], [`render_stateful_set`], [`pipeline_status`]); the
//! reconcile reads what they need, applies the children through the one child applier, and writes
//! the status.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use exactly_worker::config::{self as worker, WorkerConfig};
use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetSpec};
use k8s_openapi::api::core::v1::{
    Capabilities, Container, ContainerPort, EnvVar, EnvVarSource, HTTPGetAction,
    ObjectFieldSelector, PodSecurityContext, PodSpec, PodTemplateSpec, Probe, SeccompProfile,
    Secret, SecretVolumeSource, SecurityContext, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;

use super::children::Children;
use super::{Context, access, identity, resolve};
use crate::api::conditions::{self, types};
use crate::api::duration::DurationField;
use crate::api::pipeline::{
    COMMIT_INTERVAL, DEFAULT_COMMIT_INTERVAL, DEFAULT_TRANSACTION_TIMEOUT, ErrorAction, JqOutput,
    RouteBy, StartFrom, TRANSACTION_TIMEOUT, TransformType,
};
use crate::api::{
    Condition, ConditionStatus, ConsumerGroup, ConsumerGroupSpec, Guarantee, Isolation,
    KafkaCluster, Pipeline, PipelineSpec, PipelineStatus, Producer, ProducerSpec, StatefulSetRef,
    Topic, TopicRef,
};
use crate::{Error, Result};

/// The label naming the Pipeline on each of its children.
pub const PIPELINE_LABEL: &str = "exactly.dev/pipeline";
/// The condition aggregating every exactly-once link of the path.
pub const EXACTLY_ONCE_READY: &str = "ExactlyOnceReady";
/// Where the worker serves `/metrics`, `/healthz` and `/readyz`.
pub const WORKER_PORT: i32 = 9464;
/// The key of the worker configuration in the Pipeline's Secret.
pub const CONFIG_KEY: &str = "pipeline.json";
/// Where the worker container finds its configuration.
const CONFIG_DIR: &str = "/etc/exactly";

/// Names of a Pipeline's children.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Names {
    /// The StatefulSet of workers (and its pods' name prefix).
    pub workers: String,
    /// The Secret with `pipeline.json`, the child Producer and the child ConsumerGroup.
    pub children: String,
}

impl Names {
    pub fn of(pipeline: &str) -> Names {
        Names {
            workers: format!("{pipeline}-worker"),
            children: format!("{pipeline}-pipeline"),
        }
    }
}

/// The workers' consumer group: `spec.input.groupId`, else `<namespace>.<name>`: a group id is
/// global to the Kafka cluster, and two Pipelines of one name in two namespaces must not share
/// one (they would split each other's partitions and sum each other's figures).
pub fn group_id(pipeline: &Pipeline) -> String {
    pipeline.spec.input.group_id.clone().unwrap_or_else(|| {
        format!(
            "{}.{}",
            pipeline.namespace().unwrap_or_default(),
            pipeline.name_any()
        )
    })
}

/// The workers' `transactional.id` prefix: `spec.transactionalIdPrefix`, else
/// `<namespace>.<name>` (unique per Kubernetes cluster).
pub fn transactional_id_prefix(pipeline: &Pipeline) -> String {
    pipeline
        .spec
        .transactional_id_prefix
        .clone()
        .unwrap_or_else(|| {
            format!(
                "{}.{}",
                pipeline.namespace().unwrap_or_default(),
                pipeline.name_any()
            )
        })
}

/// Every Topic resource the pipeline writes to, by name: the output, the route targets, the
/// dead-letter Topic.
fn output_refs(spec: &PipelineSpec) -> Vec<TopicRef> {
    let mut refs: Vec<TopicRef> = Vec::new();
    let mut add = |r: &TopicRef| {
        if !refs.contains(r) {
            refs.push(r.clone());
        }
    };
    if let Some(t) = &spec.output.topic_ref {
        add(t);
    }
    if let Some(route) = &spec.output.route {
        for rule in &route.rules {
            add(&rule.topic_ref);
        }
        if let Some(t) = &route.default_topic_ref {
            add(t);
        }
    }
    if let Some(t) = &spec.error_policy.dead_letter_topic_ref {
        add(t);
    }
    refs
}

/// Names of the Topic resources the pipeline writes to (output, routes, dead letter).
pub fn output_topic_names(spec: &PipelineSpec) -> Vec<String> {
    output_refs(spec).into_iter().map(|r| r.name).collect()
}

/// A Topic the pipeline refers to, as found in the namespace.
#[derive(Clone, Debug, PartialEq)]
pub struct TopicLink {
    /// The Topic resource's name.
    pub resource: String,
    /// Its Kafka topic name, when the resource exists.
    pub kafka: Option<String>,
    /// `None` when Ready; else why not (missing, not ready, its reason).
    pub problem: Option<String>,
}

/// How a Topic reference stands.
pub fn topic_link(reference: &TopicRef, topic: Option<&Topic>) -> TopicLink {
    let problem = match topic {
        None => Some(format!(
            "Topic '{}' does not exist in this namespace",
            reference.name
        )),
        Some(t) => {
            let ready = t
                .status
                .as_ref()
                .and_then(|s| conditions::find(&s.conditions, types::READY));
            match ready {
                Some(c) if c.status == ConditionStatus::True => None,
                Some(c) => Some(format!(
                    "Topic '{}' is not Ready ({}: {})",
                    reference.name, c.reason, c.message
                )),
                None => Some(format!("Topic '{}' has no status yet", reference.name)),
            }
        }
    };
    TopicLink {
        resource: reference.name.clone(),
        kafka: topic.map(Topic::kafka_topic_name),
        problem,
    }
}

/// Parses the spec's durations, with their defaults, in milliseconds.
fn durations(spec: &PipelineSpec) -> std::result::Result<(u32, u32), String> {
    // Both fields' bounds are at most i32::MAX milliseconds, so the u32s always fit.
    let parse = |field: &DurationField, value: Option<&str>, default: &str| {
        field
            .parse_millis(value.unwrap_or(default))
            .map(|ms| u32::try_from(ms).unwrap_or(u32::MAX))
    };
    Ok((
        parse(
            &COMMIT_INTERVAL,
            spec.commit_interval.as_deref(),
            DEFAULT_COMMIT_INTERVAL,
        )?,
        parse(
            &TRANSACTION_TIMEOUT,
            spec.transaction_timeout.as_deref(),
            DEFAULT_TRANSACTION_TIMEOUT,
        )?,
    ))
}

/// The worker configuration for `pipeline`, with the Kafka names of its Topics (`kafka_names`:
/// resource name → Kafka topic name) and the cluster's bootstrap servers and client properties.
pub fn render_worker_config(
    pipeline: &Pipeline,
    bootstrap: &str,
    client_properties: &BTreeMap<String, String>,
    kafka_names: &BTreeMap<String, String>,
) -> std::result::Result<WorkerConfig, String> {
    let spec = &pipeline.spec;
    let name_of = |r: &TopicRef| {
        kafka_names
            .get(&r.name)
            .cloned()
            .unwrap_or_else(|| r.name.clone())
    };
    let (commit_interval_ms, transaction_timeout_ms) = durations(spec)?;
    let outputs: BTreeMap<String, String> = output_refs(spec)
        .iter()
        .filter(|r| Some(*r) != spec.error_policy.dead_letter_topic_ref.as_ref())
        .map(|r| (r.name.clone(), name_of(r)))
        .collect();
    let (default_topic, route) = match (&spec.output.topic_ref, &spec.output.route) {
        (Some(t), _) => (Some(t.name.clone()), None),
        (None, Some(route)) => (
            route.default_topic_ref.as_ref().map(|t| t.name.clone()),
            Some(worker::Route {
                by: match route.by {
                    RouteBy::Key => worker::RouteBy::Key,
                    RouteBy::Field => worker::RouteBy::Field {
                        path: route.field.clone().unwrap_or_default(),
                    },
                },
                rules: route
                    .rules
                    .iter()
                    .map(|r| (r.value.clone(), r.topic_ref.name.clone()))
                    .collect(),
            }),
        ),
        (None, None) => (None, None),
    };
    Ok(WorkerConfig {
        // A Pipeline is exactly-once; the worker's at-least-once mode is a benchmark baseline.
        guarantee: worker::Guarantee::ExactlyOnce,
        pipeline: resolve::qualified(pipeline),
        bootstrap_servers: bootstrap.to_string(),
        client_properties: client_properties.clone(),
        group_id: group_id(pipeline),
        input_topics: spec.input.topics.iter().map(name_of).collect(),
        start_from: match spec.input.start_from {
            StartFrom::Earliest => worker::StartFrom::Earliest,
            StartFrom::Latest => worker::StartFrom::Latest,
        },
        transactional_id_prefix: transactional_id_prefix(pipeline),
        transaction_timeout_ms,
        commit_interval_ms,
        commit_max_records: worker::DEFAULT_COMMIT_MAX_RECORDS,
        output: worker::Output {
            topics: outputs,
            default_topic,
            route,
        },
        transform: match (&spec.transform.type_, &spec.transform.jq) {
            (TransformType::Jq, Some(jq)) => worker::TransformSpec::Jq {
                filter: jq.filter.clone(),
                output: match jq.output {
                    JqOutput::Value => worker::JqOutput::Value,
                    JqOutput::Record => worker::JqOutput::Record,
                },
            },
            _ => worker::TransformSpec::Passthrough,
        },
        error_policy: match (
            &spec.error_policy.action,
            &spec.error_policy.dead_letter_topic_ref,
        ) {
            (ErrorAction::DeadLetter, Some(t)) => {
                worker::ErrorPolicy::DeadLetter { topic: name_of(t) }
            }
            _ => worker::ErrorPolicy::Stop,
        },
    })
}

/// A short, stable hash of `text` (FNV-1a), put on the pod template so that a new worker
/// configuration rolls the workers.
fn config_hash(text: &str) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in text.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{hash:016x}")
}

/// The workers' StatefulSet: `replicas` pods (0 when paused) of `image` running
/// `exactly-worker --config /etc/exactly/pipeline.json`, under the restricted Pod Security
/// Standard.
pub fn render_stateful_set(
    pipeline: &Pipeline,
    names: &Names,
    image: &str,
    config_json: &str,
) -> StatefulSet {
    let spec = &pipeline.spec;
    let labels = BTreeMap::from([
        (PIPELINE_LABEL.to_string(), pipeline.name_any()),
        (
            "app.kubernetes.io/name".to_string(),
            "exactly-worker".to_string(),
        ),
        (
            "app.kubernetes.io/managed-by".to_string(),
            "exactly".to_string(),
        ),
    ]);
    let probe = |path: &str| Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.to_string()),
            port: IntOrString::String("http".into()),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(5),
        ..Probe::default()
    };
    let container = Container {
        name: "worker".into(),
        image: Some(image.to_string()),
        command: Some(vec![
            "exactly-worker".into(),
            "--config".into(),
            format!("{CONFIG_DIR}/{CONFIG_KEY}"),
            "--metrics-addr".into(),
            format!("0.0.0.0:{WORKER_PORT}"),
            "--log-format".into(),
            "json".into(),
        ]),
        env: Some(vec![EnvVar {
            name: "POD_NAME".into(),
            value_from: Some(EnvVarSource {
                field_ref: Some(ObjectFieldSelector {
                    field_path: "metadata.name".into(),
                    ..ObjectFieldSelector::default()
                }),
                ..EnvVarSource::default()
            }),
            ..EnvVar::default()
        }]),
        ports: Some(vec![ContainerPort {
            name: Some("http".into()),
            container_port: WORKER_PORT,
            ..ContainerPort::default()
        }]),
        readiness_probe: Some(probe("/readyz")),
        liveness_probe: Some(Probe {
            failure_threshold: Some(6),
            ..probe("/healthz")
        }),
        resources: spec.resources.clone(),
        volume_mounts: Some(vec![VolumeMount {
            name: "config".into(),
            mount_path: CONFIG_DIR.into(),
            read_only: Some(true),
            ..VolumeMount::default()
        }]),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            read_only_root_filesystem: Some(true),
            run_as_non_root: Some(true),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".into()]),
                ..Capabilities::default()
            }),
            ..SecurityContext::default()
        }),
        ..Container::default()
    };
    StatefulSet {
        metadata: ObjectMeta {
            name: Some(names.workers.clone()),
            namespace: pipeline.namespace(),
            labels: Some(labels.clone()),
            ..ObjectMeta::default()
        },
        spec: StatefulSetSpec {
            replicas: Some(if spec.paused { 0 } else { spec.replicas }),
            service_name: Some(names.workers.clone()),
            // Workers are independent (each fences only its own transactional.id): start and
            // stop them together.
            pod_management_policy: Some("Parallel".into()),
            selector: LabelSelector {
                match_labels: Some(BTreeMap::from([(
                    PIPELINE_LABEL.to_string(),
                    pipeline.name_any(),
                )])),
                ..LabelSelector::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels),
                    annotations: Some(BTreeMap::from([(
                        "exactly.dev/config-hash".to_string(),
                        config_hash(config_json),
                    )])),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    containers: vec![container],
                    node_selector: spec
                        .placement
                        .as_ref()
                        .map(|p| p.node_selector.clone())
                        .filter(|selector| !selector.is_empty()),
                    tolerations: spec
                        .placement
                        .as_ref()
                        .map(|p| p.tolerations.clone())
                        .filter(|tolerations| !tolerations.is_empty()),
                    // No Kubernetes API access: the worker reads its configuration from files.
                    automount_service_account_token: Some(false),
                    // SIGTERM: the worker commits or aborts its open transaction and leaves the
                    // group; give it the time a commit can take.
                    termination_grace_period_seconds: Some(30),
                    security_context: Some(PodSecurityContext {
                        run_as_non_root: Some(true),
                        run_as_user: Some(65532),
                        seccomp_profile: Some(SeccompProfile {
                            type_: "RuntimeDefault".into(),
                            ..SeccompProfile::default()
                        }),
                        ..PodSecurityContext::default()
                    }),
                    volumes: Some(vec![Volume {
                        name: "config".into(),
                        secret: Some(SecretVolumeSource {
                            secret_name: Some(names.children.clone()),
                            ..SecretVolumeSource::default()
                        }),
                        ..Volume::default()
                    }]),
                    ..PodSpec::default()
                }),
            },
            ..StatefulSetSpec::default()
        },
        ..StatefulSet::default()
    }
}

/// The child Producer: reserves the prefix and reports the workers' transactions. Its instances
/// follow the workers' StatefulSet.
fn render_producer(pipeline: &Pipeline, names: &Names, transaction_timeout_ms: u32) -> Producer {
    Producer::new(
        &names.children,
        ProducerSpec {
            cluster_ref: pipeline.spec.cluster_ref.clone(),
            topics: output_refs(&pipeline.spec),
            transactional_id_prefix: transactional_id_prefix(pipeline),
            instances: None,
            stateful_set_ref: Some(StatefulSetRef {
                name: names.workers.clone(),
            }),
            guarantee: Guarantee::ExactlyOnce,
            transaction_timeout: Some(format!("{transaction_timeout_ms}ms")),
            client_overrides: BTreeMap::new(),
            authentication: None,
            consumer_group_ref: None,
        },
    )
}

/// The child ConsumerGroup: the workers' group, read_committed, observed for lag.
fn render_group(pipeline: &Pipeline, names: &Names) -> ConsumerGroup {
    ConsumerGroup::new(
        &names.children,
        ConsumerGroupSpec {
            cluster_ref: pipeline.spec.cluster_ref.clone(),
            group_id: Some(group_id(pipeline)),
            topics: pipeline.spec.input.topics.clone(),
            isolation: Isolation::ReadCommitted,
            lag_objective: None,
            offset_reset: None,
            authentication: None,
            pulsar: None,
        },
    )
}

/// The ordinal `n` of a worker's transactional id: `<prefix>-<n>`, or `<prefix>-<n>.<k>` for its
/// other producers (`exactly_worker::run::producer_transactional_id`).
fn ordinal_of(transactional_id: &str, prefix: &str) -> Option<i32> {
    let rest = transactional_id.strip_prefix(prefix)?.strip_prefix('-')?;
    let (ordinal, producer) = match rest.split_once('.') {
        Some((ordinal, producer)) => (ordinal, Some(producer)),
        None => (rest, None),
    };
    if producer.is_some_and(|k| k.is_empty() || !k.bytes().all(|b| b.is_ascii_digit())) {
        return None;
    }
    ordinal.parse().ok()
}

/// Open transactions of the workers the Pipeline runs (ordinals below `desired`, every producer
/// of each), in the observation.
fn open_worker_transactions(
    prefix: &str,
    desired: i32,
    snapshot: &super::observe::Snapshot,
) -> i32 {
    let open = snapshot
        .transactions
        .values()
        .filter(|t| t.state == "Ongoing")
        .filter(|t| ordinal_of(&t.transactional_id, prefix).is_some_and(|n| n < desired))
        .count();
    i32::try_from(open).unwrap_or(i32::MAX)
}

/// The transactional ids to fence after a scale-down: those of ordinals at or above `desired`
/// with a transaction open, whose pod is gone (`pods`: ordinals of the worker pods that exist),
/// once the StatefulSet has no more than `desired` pods (`current`). A worker still running is
/// never fenced: it commits or aborts on SIGTERM itself; one killed before it could leaves its
/// transaction open until this, instead of until the transaction timeout.
pub fn plan_fencing(
    prefix: &str,
    desired: i32,
    current: i32,
    pods: &std::collections::BTreeSet<i32>,
    transactions: &[&crate::kafka::wire::TransactionDescription],
) -> Vec<String> {
    if current > desired {
        return Vec::new();
    }
    transactions
        .iter()
        .filter(|t| t.state == "Ongoing")
        .filter(|t| {
            ordinal_of(&t.transactional_id, prefix)
                .is_some_and(|n| n >= desired && !pods.contains(&n))
        })
        .map(|t| t.transactional_id.clone())
        .collect()
}

/// What the Pipeline's status is computed from.
#[derive(Debug, Default)]
pub struct Observed<'a> {
    pub generation: Option<i64>,
    pub previous: Option<&'a PipelineStatus>,
    pub cluster: Option<&'a KafkaCluster>,
    pub inputs: Vec<TopicLink>,
    pub outputs: Vec<TopicLink>,
    /// Problems of the worker configuration (durations, transform, routing), by field.
    pub config_problems: Vec<String>,
    pub producer: Option<&'a Producer>,
    pub group: Option<&'a ConsumerGroup>,
    pub workers: Option<&'a StatefulSet>,
    pub desired_workers: i32,
    pub paused: bool,
    pub transaction_timeout_ms: Option<u32>,
    pub group_id: String,
    pub transactional_id_prefix: String,
    /// The workers' figures, summed over the input partitions, from the metadata committed with
    /// the group's offsets; `None` when the brokers were not observed this time.
    pub progress: Option<exactly_worker::Progress>,
    /// Open transactions of removed workers left after this reconcile's fencing.
    pub removed_worker_transactions: Option<i32>,
    /// Open transactions of the running workers' producers (both ids of each ordinal), when
    /// observed; else the Pipeline's Producer's count is shown.
    pub open_worker_transactions: Option<i32>,
    /// Stop markers the workers committed (`errorPolicy: Stop`), when observed.
    pub stopped_at: Option<Vec<String>>,
}

/// A failed link: its stable name and what is wrong.
type Link = (&'static str, String);

/// Every exactly-once link of the path that fails (DESIGN §3), in a stable order.
pub fn failed_links(o: &Observed) -> Vec<Link> {
    let mut failed: Vec<Link> = Vec::new();
    match o.cluster {
        None => failed.push(("Cluster", "the KafkaCluster does not exist".into())),
        Some(c) => {
            let eos = c
                .status
                .as_ref()
                .and_then(|s| conditions::find(&s.conditions, super::cluster::EXACTLY_ONCE_READY));
            match eos {
                Some(e) if e.status == ConditionStatus::True => {}
                Some(e) => failed.push((
                    "Cluster",
                    format!(
                        "KafkaCluster '{}' is not ExactlyOnceReady ({}: {})",
                        c.name_any(),
                        e.reason,
                        e.message
                    ),
                )),
                None => failed.push((
                    "Cluster",
                    format!("KafkaCluster '{}' has not been judged yet", c.name_any()),
                )),
            }
        }
    }
    let topics = |links: &[TopicLink]| -> Option<String> {
        let problems: Vec<String> = links.iter().filter_map(|l| l.problem.clone()).collect();
        (!problems.is_empty()).then(|| problems.join("; "))
    };
    if let Some(p) = topics(&o.inputs) {
        failed.push(("InputTopics", p));
    }
    if let Some(p) = topics(&o.outputs) {
        failed.push(("OutputTopics", p));
    }
    if !o.config_problems.is_empty() {
        failed.push(("WorkerConfig", o.config_problems.join("; ")));
    }
    let max_timeout = o
        .cluster
        .and_then(|c| c.status.as_ref())
        .and_then(|s| s.exactly_once.as_ref())
        .and_then(|e| e.transaction_max_timeout_ms);
    if let (Some(timeout), Some(max)) = (o.transaction_timeout_ms, max_timeout)
        && i64::from(timeout) > max
    {
        failed.push((
            "TransactionTimeout",
            format!(
                "spec.transactionTimeout is {timeout} ms, above the brokers' transaction.max.timeout.ms {max}: the workers could not start transactions. Lower it"
            ),
        ));
    }
    let producer_conditions = o
        .producer
        .and_then(|p| p.status.as_ref())
        .map(|s| s.conditions.as_slice())
        .unwrap_or_default();
    if let Some(c) = conditions::find(producer_conditions, "ResourceConflict")
        && c.status == ConditionStatus::True
    {
        failed.push((
            "PrefixReservation",
            format!(
                "transactional.id prefix '{}': {} Set spec.transactionalIdPrefix to a prefix of its own",
                o.transactional_id_prefix, c.message
            ),
        ));
    }
    failed
}

/// The Pipeline's status: conditions, the links, the figures from its children.
pub fn pipeline_status(o: &Observed) -> PipelineStatus {
    use ConditionStatus::{False, True};
    let mut status = o.previous.cloned().unwrap_or_default();
    let cond = |type_: &str, s: ConditionStatus, reason: &str, message: String| {
        Condition::new(type_, s, reason, message, o.generation)
    };
    let join = |links: &[TopicLink]| {
        let names: Vec<String> = links
            .iter()
            .map(|l| l.kafka.clone().unwrap_or_else(|| l.resource.clone()))
            .collect();
        names.join(",")
    };
    status.input = Some(join(&o.inputs));
    status.output = Some(join(&o.outputs));
    status.group_id = Some(o.group_id.clone());
    status.transactional_id_prefix = Some(o.transactional_id_prefix.clone());
    let ready_workers = o
        .workers
        .and_then(|s| s.status.as_ref())
        .and_then(|s| s.ready_replicas)
        .unwrap_or(0);
    status.workers = Some(format!("{ready_workers}/{}", o.desired_workers));
    let group = o.group.and_then(|g| g.status.as_ref());
    status.total_lag = group.and_then(|g| g.total_lag);
    status.last_commit_seen = group.and_then(|g| g.last_commit_seen.clone());
    if let Some(stops) = &o.stopped_at {
        status.stopped_at = (!stops.is_empty()).then(|| stops.join("; "));
    }
    if o.removed_worker_transactions.is_some() {
        status.removed_worker_transactions = o.removed_worker_transactions;
    }
    if let Some(progress) = &o.progress {
        let count = |n: u64| Some(i64::try_from(n).unwrap_or(i64::MAX));
        status.records_in = count(progress.in_records);
        status.records_out = count(progress.out_records);
        status.dead_lettered = count(progress.dead_lettered);
        status.transactions_committed = count(progress.commits);
        status.transactions_aborted = count(progress.aborts);
    }
    let producer = o.producer.and_then(|p| p.status.as_ref());
    status.open_transactions = o
        .open_worker_transactions
        .or_else(|| producer.and_then(|p| p.open_transactions));
    status.hanging_transactions = producer.and_then(|p| p.hanging_transactions);

    let failed = failed_links(o);
    status.failed_links = failed.iter().map(|(l, _)| l.to_string()).collect();
    let eos = if failed.is_empty() {
        cond(
            EXACTLY_ONCE_READY,
            True,
            "AllLinksHold",
            "cluster, topics, worker configuration, transaction timeout and prefix reservation all meet the exactly-once rules".into(),
        )
    } else {
        let list: Vec<String> = failed.iter().map(|(l, m)| format!("{l}: {m}")).collect();
        cond(
            EXACTLY_ONCE_READY,
            False,
            "LinksFailed",
            format!("{} link(s) fail. {}", failed.len(), list.join(". ")),
        )
    };
    // Workers only run once every link they depend on to start holds.
    let blocking: Vec<&Link> = failed
        .iter()
        .filter(|(l, _)| matches!(*l, "InputTopics" | "OutputTopics" | "WorkerConfig"))
        .collect();
    let mut desired = if !blocking.is_empty() {
        let message = blocking
            .iter()
            .map(|(l, m)| format!("{l}: {m}"))
            .collect::<Vec<_>>()
            .join(". ");
        let stalled = blocking.iter().any(|(l, _)| *l == "WorkerConfig");
        vec![
            cond(types::READY, False, "WaitingForLinks", message.clone()),
            cond(
                types::RECONCILING,
                ConditionStatus::from(!stalled),
                "WaitingForLinks",
                String::new(),
            ),
            cond(
                types::STALLED,
                ConditionStatus::from(stalled),
                "WaitingForLinks",
                if stalled { message } else { String::new() },
            ),
        ]
    } else if let Some(stopped) = &status.stopped_at {
        let message = format!(
            "stopped by errorPolicy Stop at {stopped}. Fix the transform (or set errorPolicy.action DeadLetter): the workers go on from that record"
        );
        vec![
            cond(types::READY, False, "StoppedAtRecord", message.clone()),
            cond(types::RECONCILING, False, "StoppedAtRecord", String::new()),
            cond(types::STALLED, True, "StoppedAtRecord", message),
        ]
    } else if o.paused {
        vec![
            cond(types::READY, True, "Paused", "spec.paused: the workers are scaled to zero; the group's offsets stay where they are".into()),
            cond(types::RECONCILING, False, "Paused", String::new()),
            cond(types::STALLED, False, "Paused", String::new()),
        ]
    } else if ready_workers >= o.desired_workers {
        vec![
            cond(
                types::READY,
                True,
                "WorkersReady",
                format!("{ready_workers} of {} workers ready", o.desired_workers),
            ),
            cond(types::RECONCILING, False, "WorkersReady", String::new()),
            cond(types::STALLED, False, "WorkersReady", String::new()),
        ]
    } else {
        vec![
            cond(
                types::READY,
                False,
                "WorkersNotReady",
                format!("{ready_workers} of {} workers ready", o.desired_workers),
            ),
            cond(types::RECONCILING, True, "WorkersStarting", String::new()),
            cond(types::STALLED, False, "WorkersStarting", String::new()),
        ]
    };
    desired.push(eos);
    status.conditions = conditions::merge(&status.conditions, desired);
    status.observed_generation = o.generation;
    status
}

/// The kind, as it names the workers' user (`<namespace>.pipeline.<name>`).
const KIND: &str = "Pipeline";

/// Reconciles one Pipeline.
pub async fn reconcile(pipeline: Arc<Pipeline>, ctx: Arc<Context>) -> Result<Action> {
    let namespace = pipeline
        .namespace()
        .ok_or(Error::MissingObjectKey("metadata.namespace"))?;
    let names = Names::of(&pipeline.name_any());
    let spec = &pipeline.spec;
    let authentication = spec.authentication.as_ref();
    match access::guard(
        &ctx,
        pipeline.as_ref(),
        KIND,
        &spec.cluster_ref.name,
        &names.children,
        authentication.is_some(),
    )
    .await?
    {
        access::Guard::Proceed => {}
        access::Guard::Stop => return Ok(Action::await_change()),
        access::Guard::Failed(e) => {
            let status = resolve::unreachable_status(
                pipeline.metadata.generation,
                pipeline.status.clone().unwrap_or_default(),
                &e,
            );
            super::write_status(&ctx, pipeline.as_ref(), &status).await?;
            return Ok(Action::requeue(super::RETRY));
        }
    }
    let cluster = match resolve::cluster(&ctx, &namespace, &spec.cluster_ref.name).await {
        Ok(c) => Some(c),
        Err(resolve::Waiting::ClusterNotFound(_)) => None,
        // The API server could not be read: say so and retry, as the other kinds do.
        Err(waiting @ resolve::Waiting::Api(_)) => {
            let status = waiting.status(
                pipeline.metadata.generation,
                pipeline.status.clone().unwrap_or_default(),
            );
            super::write_status(&ctx, pipeline.as_ref(), &status).await?;
            return Ok(Action::requeue(super::RETRY));
        }
    };
    let topic = |r: &TopicRef| ctx.topics.get(&ObjectRef::new(&r.name).within(&namespace));
    let inputs: Vec<TopicLink> = spec
        .input
        .topics
        .iter()
        .map(|r| topic_link(r, topic(r).as_deref()))
        .collect();
    let outputs: Vec<TopicLink> = output_refs(spec)
        .iter()
        .map(|r| topic_link(r, topic(r).as_deref()))
        .collect();
    let kafka_names: BTreeMap<String, String> = inputs
        .iter()
        .chain(&outputs)
        .filter_map(|l| Some((l.resource.clone(), l.kafka.clone()?)))
        .collect();
    // The workers connect as the operator does: with the cluster's client properties. A
    // Secret that cannot be read stops the workers from being rendered, and status says why.
    let mut config_problems: Vec<String> = Vec::new();
    let client_properties = match &cluster {
        Some(c) => resolve::client_properties(&ctx, c)
            .await
            .unwrap_or_else(|e| {
                config_problems.push(format!("the KafkaCluster's client properties: {e}"));
                BTreeMap::new()
            }),
        None => BTreeMap::new(),
    };
    // With its own user, the workers log in as it instead of as the operator.
    let credentials = match (&cluster, authentication) {
        (Some(c), Some(auth)) => {
            match access::credentials(&ctx, c, pipeline.as_ref(), KIND, &names.children, auth).await
            {
                Ok(credentials) => Some(credentials),
                Err(access::Problem::Unavailable(message)) => {
                    config_problems.push(message);
                    None
                }
                Err(access::Problem::Kafka(e)) => {
                    config_problems.push(format!("the workers' user: {e}"));
                    None
                }
            }
        }
        _ => None,
    };
    let client_properties = match &credentials {
        Some(credentials) => {
            let mut props = client_properties;
            props.retain(|k, _| !access::PROPERTIES.contains(&k.as_str()));
            props.extend(credentials.properties());
            props
        }
        None => client_properties,
    };
    let bootstrap = cluster
        .as_ref()
        .map(KafkaCluster::bootstrap_servers)
        .unwrap_or_default();
    let rendered = render_worker_config(&pipeline, &bootstrap, &client_properties, &kafka_names);
    let config = match rendered {
        Ok(config) => {
            config_problems.extend(config.validate().iter().map(ToString::to_string));
            Some(config)
        }
        Err(e) => {
            config_problems.push(e);
            None
        }
    };
    let transaction_timeout_ms = config.as_ref().map(|c| c.transaction_timeout_ms);

    let links_hold = inputs.iter().chain(&outputs).all(|l| l.problem.is_none())
        && config_problems.is_empty()
        && cluster.is_some();
    let mut access_status = None;
    let sets: Api<StatefulSet> = Api::namespaced(ctx.client.clone(), &namespace);
    if let (true, Some(config)) = (links_hold, &config) {
        let json = serde_json::to_string_pretty(config)
            .map_err(|e| Error::Render("pipeline.json", e.to_string()))?;
        let mut children = Children::of(
            &ctx.client,
            pipeline.as_ref(),
            (PIPELINE_LABEL, &pipeline.name_any()),
        )?;
        let secret = Secret {
            metadata: ObjectMeta {
                name: Some(names.children.clone()),
                ..ObjectMeta::default()
            },
            string_data: None,
            data: Some(
                std::iter::once((CONFIG_KEY.to_string(), json.clone()))
                    .chain(credentials.iter().flat_map(|c| c.secret_keys()))
                    .map(|(k, v)| (k, k8s_openapi::ByteString(v.into_bytes())))
                    .collect(),
            ),
            type_: Some("Opaque".into()),
            ..Secret::default()
        };
        // The password is in the Secret before the brokers know it (access.rs).
        children.apply(secret).await?;
        // The workers start once their user holds the path's ACLs.
        let mut workers_may_start = true;
        if let (Some(credentials), Some(auth), Some(c)) = (&credentials, authentication, &cluster) {
            let wanted = identity::pipeline_acls(
                &credentials.user,
                &config.input_topics,
                &config.group_id,
                &output_refs(spec)
                    .iter()
                    .map(|r| {
                        kafka_names
                            .get(&r.name)
                            .cloned()
                            .unwrap_or_else(|| r.name.clone())
                    })
                    .collect::<Vec<_>>(),
                &config.transactional_id_prefix,
            );
            let granted = access::granted(
                pipeline.status.as_ref().and_then(|s| s.access.as_ref()),
                &credentials.user,
            );
            let ensured = match resolve::admin(&ctx, c).await {
                Ok(admin) => {
                    access::ensure(
                        &admin,
                        &ctx.passwords,
                        credentials,
                        &wanted,
                        granted,
                        auth.drift_policy,
                    )
                    .await
                }
                Err(e) => Err(e),
            };
            match ensured {
                Ok(ensured) => {
                    access::report_changes(
                        &ctx,
                        pipeline.as_ref(),
                        &credentials.user,
                        &ensured.changes,
                    )
                    .await;
                    access_status = Some(ensured.status);
                }
                Err(e) => {
                    config_problems.push(format!("the workers' user and ACLs: {e}"));
                    workers_may_start = false;
                }
            }
        }
        if let Some(ms) = transaction_timeout_ms {
            children
                .apply(render_producer(&pipeline, &names, ms))
                .await?;
        }
        children.apply(render_group(&pipeline, &names)).await?;
        let image = spec
            .image
            .clone()
            .unwrap_or_else(|| ctx.worker_image.clone());
        if workers_may_start {
            children
                .apply(render_stateful_set(&pipeline, &names, &image, &json))
                .await?;
        }
    }
    let workers = sets.get_opt(&names.workers).await?;
    let producer = ctx
        .producers
        .get(&ObjectRef::new(&names.children).within(&namespace));
    let group = ctx
        .groups
        .get(&ObjectRef::new(&names.children).within(&namespace));
    let prefix = transactional_id_prefix(&pipeline);
    let observed_progress = match &cluster {
        Some(c) => observe_progress(&ctx, c, &group_id(&pipeline), &prefix, &inputs).await,
        None => None,
    };
    let desired = if spec.paused { 0 } else { spec.replicas };
    let mut removed_worker_transactions = None;
    let open_worker_transactions = observed_progress
        .as_ref()
        .map(|(_, _, snapshot)| open_worker_transactions(&prefix, desired, snapshot));
    if let (Some((_, _, snapshot)), Some(c)) = (&observed_progress, &cluster) {
        removed_worker_transactions = Some(
            fence_removed_workers(
                &ctx,
                &pipeline,
                c,
                &names,
                &prefix,
                desired,
                workers.as_ref(),
                snapshot,
            )
            .await?,
        );
    }
    let stopped_at = observed_progress
        .as_ref()
        .map(|(_, stops, _)| stops.clone());
    let progress = observed_progress.map(|(p, _, _)| p);
    let observed = Observed {
        generation: pipeline.metadata.generation,
        previous: pipeline.status.as_ref(),
        cluster: cluster.as_ref(),
        inputs,
        outputs,
        config_problems,
        producer: producer.as_deref(),
        group: group.as_deref(),
        workers: workers.as_ref(),
        desired_workers: if spec.paused { 0 } else { spec.replicas },
        paused: spec.paused,
        transaction_timeout_ms,
        group_id: group_id(&pipeline),
        transactional_id_prefix: transactional_id_prefix(&pipeline),
        progress,
        removed_worker_transactions,
        open_worker_transactions,
        stopped_at,
    };
    let mut status = pipeline_status(&observed);
    access::set_status(
        &mut status.access,
        &mut status.conditions,
        authentication,
        access_status,
        pipeline.metadata.generation,
    );
    export_metrics(&ctx, &pipeline, &status, workers.as_ref());
    super::write_status(&ctx, pipeline.as_ref(), &status).await?;
    Ok(Action::requeue(
        ctx.refresh_interval.max(Duration::from_secs(1)),
    ))
}

/// The live figures as Prometheus gauges (status shows them at the refresh interval).
fn export_metrics(
    ctx: &Context,
    pipeline: &Pipeline,
    status: &PipelineStatus,
    workers: Option<&StatefulSet>,
) {
    if !super::still_watched(&ctx.pipelines, pipeline) {
        return;
    }
    let labels = ctx.metrics.series_of(
        crate::metrics::kinds::PIPELINE,
        &pipeline.namespace().unwrap_or_default(),
        &pipeline.name_any(),
    );
    let m = &ctx.metrics;
    let set = |family: &prometheus_client::metrics::family::Family<
        _,
        prometheus_client::metrics::gauge::Gauge,
    >,
               value: Option<i64>| {
        if let Some(v) = value {
            family.get_or_create(&labels).set(v);
        }
    };
    set(&m.pipeline_lag, status.total_lag);
    set(&m.pipeline_records_in, status.records_in);
    set(&m.pipeline_records_out, status.records_out);
    set(&m.pipeline_dead_lettered, status.dead_lettered);
    set(
        &m.pipeline_transactions_committed,
        status.transactions_committed,
    );
    set(
        &m.pipeline_transactions_aborted,
        status.transactions_aborted,
    );
    set(
        &m.pipeline_workers_ready,
        Some(i64::from(
            workers
                .and_then(|s| s.status.as_ref())
                .and_then(|s| s.ready_replicas)
                .unwrap_or(0),
        )),
    );
    set(
        &m.pipeline_exactly_once_ready,
        Some(i64::from(status.failed_links.is_empty())),
    );
}

/// Fences the open transactions of workers the pipeline no longer runs ([`plan_fencing`]) and
/// returns how many are left open (0 once done; a fencing the coordinator refuses is retried
/// on the next refresh).
#[allow(clippy::too_many_arguments)]
async fn fence_removed_workers(
    ctx: &Arc<Context>,
    pipeline: &Pipeline,
    cluster: &KafkaCluster,
    names: &Names,
    prefix: &str,
    desired: i32,
    workers: Option<&StatefulSet>,
    snapshot: &super::observe::Snapshot,
) -> Result<i32> {
    let removed: Vec<&crate::kafka::wire::TransactionDescription> = snapshot
        .transactions
        .values()
        .filter(|t| ordinal_of(&t.transactional_id, prefix).is_some_and(|n| n >= desired))
        .filter(|t| t.state == "Ongoing")
        .collect();
    if removed.is_empty() {
        return Ok(0);
    }
    let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(
        ctx.client.clone(),
        &pipeline.namespace().unwrap_or_default(),
    );
    let present: std::collections::BTreeSet<i32> = pods
        .list(
            &kube::api::ListParams::default()
                .labels(&format!("{PIPELINE_LABEL}={}", pipeline.name_any())),
        )
        .await?
        .items
        .iter()
        .filter_map(|p| {
            p.metadata
                .name
                .as_deref()?
                .strip_prefix(&names.workers)?
                .strip_prefix('-')?
                .parse()
                .ok()
        })
        .collect();
    let current = workers
        .and_then(|s| s.status.as_ref())
        .map(|s| s.replicas)
        .unwrap_or(0);
    let plan = plan_fencing(prefix, desired, current, &present, &removed);
    if plan.is_empty() {
        return Ok(i32::try_from(removed.len()).unwrap_or(i32::MAX));
    }
    let admin = resolve::admin(ctx, cluster).await?;
    let mut left = removed.len() - plan.len();
    for id in &plan {
        let timeout = removed
            .iter()
            .find(|t| &t.transactional_id == id)
            .map(|t| t.timeout_ms)
            .unwrap_or(60_000);
        match admin.fence_transactional_id(id, timeout).await {
            Ok((producer_id, epoch)) => {
                tracing::info!(pipeline = %pipeline.name_any(), transactional_id = %id, producer_id, epoch, "fenced a removed worker; its open transaction is aborted");
                super::publish_event(
                    ctx,
                    pipeline,
                    kube::runtime::events::EventType::Normal,
                    "RemovedWorkerFenced",
                    "Fence",
                    format!("{id} belonged to a worker the pipeline no longer runs: fenced (epoch {epoch}), its open transaction aborted so it does not hold back read_committed readers of the output"),
                )
                .await;
            }
            Err(e) => {
                tracing::warn!(pipeline = %pipeline.name_any(), transactional_id = %id, error = %e, "could not fence a removed worker; retrying on the next refresh");
                left += 1;
            }
        }
    }
    if !plan.is_empty() {
        let key = super::cluster_key(
            ctx,
            &cluster.namespace().unwrap_or_default(),
            &cluster.name_any(),
        );
        ctx.observer.invalidate(&key).await;
    }
    Ok(i32::try_from(left).unwrap_or(i32::MAX))
}

/// The workers' figures from the cluster's shared observation (the same one that serves the
/// Pipeline's ConsumerGroup: no request of its own): the progress each worker committed with
/// each input partition's offset, summed. `None` when the brokers do not answer.
async fn observe_progress(
    ctx: &Arc<Context>,
    cluster: &KafkaCluster,
    group: &str,
    prefix: &str,
    inputs: &[TopicLink],
) -> Option<(
    exactly_worker::Progress,
    Vec<String>,
    Arc<super::observe::Snapshot>,
)> {
    let admin = match resolve::admin(ctx, cluster).await {
        Ok(admin) => admin,
        Err(e) => {
            tracing::warn!(group, error = %e, "cannot reach the cluster to observe the pipeline");
            return None;
        }
    };
    let key = super::cluster_key(
        ctx,
        &cluster.namespace().unwrap_or_default(),
        &cluster.name_any(),
    );
    let mine = super::observe::Interest {
        topics: inputs.iter().filter_map(|l| l.kafka.clone()).collect(),
        groups: [group.to_string()].into(),
        transactional_id_prefixes: [prefix.to_string()].into(),
        ..Default::default()
    };
    let snapshot = ctx
        .observer
        .snapshot(&key, &admin, &mine, || {
            super::group::cluster_interest(ctx, &key)
        })
        .await
        .inspect_err(|e| {
            tracing::warn!(group, error = %e, "cannot observe the pipeline's group and transactions; removed workers are not fenced until it can");
        })
        .ok()?;
    // Figures of a group or input topic the brokers would not answer for would read as zero:
    // none rather than wrong ones, as when the cluster cannot be observed at all.
    if let Some(e) = snapshot
        .unanswered_groups
        .get(group)
        .cloned()
        .or_else(|| snapshot.unanswered_of(&mine.topics))
    {
        tracing::warn!(group, error = %e, "the brokers would not answer for the pipeline's group or input topics; removed workers are not fenced until they do");
        return None;
    }
    let decoded: Vec<exactly_worker::Progress> = snapshot
        .committed_metadata
        .get(group)
        .map(|metadata| {
            // Only the pipeline's own input topics: a group id reused elsewhere (set by hand)
            // must not add its figures.
            metadata
                .iter()
                .filter(|((topic, _), _)| inputs.iter().any(|l| l.kafka.as_deref() == Some(topic)))
                .filter_map(|(_, m)| exactly_worker::Progress::decode(m))
                .collect()
        })
        .unwrap_or_default();
    let stops: Vec<String> = decoded
        .iter()
        .filter_map(|p| p.stopped().map(str::to_string))
        .collect();
    let progress = decoded
        .iter()
        .fold(exactly_worker::Progress::default(), |sum, p| sum.plus(p));
    Some((progress, stops, snapshot))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pipeline(spec: serde_json::Value) -> Pipeline {
        let mut base = serde_json::json!({
            "clusterRef": {"name": "main"},
            "input": {"topics": [{"name": "orders"}]},
            "output": {"topicRef": {"name": "charges"}},
        });
        if let (Some(b), Some(extra)) = (base.as_object_mut(), spec.as_object()) {
            for (k, v) in extra {
                b.insert(k.clone(), v.clone());
            }
        }
        let mut p = Pipeline::new(
            "billing",
            serde_json::from_value(base).unwrap_or_else(|e| panic!("{e}")),
        );
        p.metadata.namespace = Some("shop".into());
        p
    }

    fn names() -> BTreeMap<String, String> {
        BTreeMap::from([
            ("orders".to_string(), "shop.orders".to_string()),
            ("charges".to_string(), "shop.charges".to_string()),
            ("dead".to_string(), "shop.dead".to_string()),
        ])
    }

    #[test]
    fn the_worker_configuration_names_kafka_topics_the_group_and_the_stable_prefix() {
        let config = render_worker_config(
            &pipeline(
                serde_json::json!({"commitInterval": "250ms", "transactionTimeout": "1m30s"}),
            ),
            "k:9092",
            &BTreeMap::new(),
            &names(),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(config.input_topics, ["shop.orders"]);
        assert_eq!(config.output.default_topic.as_deref(), Some("charges"));
        assert_eq!(
            config.output.topics.get("charges").map(String::as_str),
            Some("shop.charges")
        );
        assert_eq!(config.group_id, "shop.billing");
        assert_eq!(config.transactional_id_prefix, "shop.billing");
        assert_eq!(
            (config.commit_interval_ms, config.transaction_timeout_ms),
            (250, 90_000)
        );
        assert!(config.validate().is_empty(), "{:?}", config.validate());
    }

    #[test]
    fn a_dead_letter_topic_is_not_an_output_route_but_the_error_policy_target() {
        let config = render_worker_config(
            &pipeline(serde_json::json!({"errorPolicy": {"action": "DeadLetter", "deadLetterTopicRef": {"name": "dead"}}})),
            "k:9092",
            &BTreeMap::new(),
            &names(),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert!(!config.output.topics.contains_key("dead"));
        assert_eq!(
            config.error_policy,
            worker::ErrorPolicy::DeadLetter {
                topic: "shop.dead".into()
            }
        );
    }

    #[test]
    fn a_route_by_field_becomes_the_workers_rules_with_its_default() {
        let config = render_worker_config(
            &pipeline(
                serde_json::json!({"output": {"route": {"by": "Field", "field": "region",
                "rules": [{"value": "eu", "topicRef": {"name": "charges"}}],
                "defaultTopicRef": {"name": "dead"}}}}),
            ),
            "k:9092",
            &BTreeMap::new(),
            &names(),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let route = config.output.route.unwrap_or_else(|| panic!("no route"));
        assert_eq!(
            route.by,
            worker::RouteBy::Field {
                path: "region".into()
            }
        );
        assert_eq!(route.rules.get("eu").map(String::as_str), Some("charges"));
        assert_eq!(config.output.default_topic.as_deref(), Some("dead"));
    }

    #[test]
    fn placement_puts_the_workers_on_the_selected_tolerating_nodes() {
        let p = pipeline(serde_json::json!({"placement": {
            "nodeSelector": {"pool": "workers"},
            "tolerations": [{"key": "dedicated", "operator": "Exists", "effect": "NoSchedule"}],
        }}));
        let pod = render_stateful_set(&p, &Names::of("billing"), "img", "{}")
            .spec
            .template
            .spec
            .unwrap_or_default();
        assert_eq!(
            pod.node_selector
                .and_then(|s| s.get("pool").cloned())
                .as_deref(),
            Some("workers")
        );
        assert_eq!(
            pod.tolerations
                .and_then(|t| t.first().and_then(|t| t.key.clone()))
                .as_deref(),
            Some("dedicated")
        );
        let pod = render_stateful_set(
            &pipeline(serde_json::json!({})),
            &Names::of("billing"),
            "img",
            "{}",
        )
        .spec
        .template
        .spec
        .unwrap_or_default();
        assert_eq!((pod.node_selector, pod.tolerations), (None, None));
    }

    #[test]
    fn a_config_change_changes_the_pod_template_hash_so_the_workers_roll() {
        let p = pipeline(serde_json::json!({}));
        let hash = |json: &str| {
            render_stateful_set(&p, &Names::of("billing"), "img", json)
                .spec
                .template
                .metadata
                .and_then(|m| m.annotations)
                .and_then(|a| a.get("exactly.dev/config-hash").cloned())
        };
        assert_eq!(hash("{\"a\":1}"), hash("{\"a\":1}"));
        assert_ne!(hash("{\"a\":1}"), hash("{\"a\":2}"));
    }

    #[test]
    fn a_paused_pipeline_has_no_workers() {
        let p = pipeline(serde_json::json!({"paused": true, "replicas": 3}));
        let set = render_stateful_set(&p, &Names::of("billing"), "img", "{}");
        assert_eq!(set.spec.replicas, Some(0));
    }

    fn cluster(eos: ConditionStatus, max_timeout_ms: i64) -> KafkaCluster {
        let mut c = KafkaCluster::new(
            "main",
            serde_json::from_value(serde_json::json!({"external": {"bootstrapServers": "k:9092"}}))
                .unwrap_or_else(|e| panic!("{e}")),
        );
        c.status = Some(crate::api::KafkaClusterStatus {
            conditions: vec![Condition::new(
                super::super::cluster::EXACTLY_ONCE_READY,
                eos,
                "R",
                "m",
                Some(1),
            )],
            exactly_once: Some(crate::api::ExactlyOnceSettings {
                transaction_max_timeout_ms: Some(max_timeout_ms),
                ..Default::default()
            }),
            ..Default::default()
        });
        c
    }

    fn link(name: &str) -> TopicLink {
        TopicLink {
            resource: name.into(),
            kafka: Some(format!("shop.{name}")),
            problem: None,
        }
    }

    #[test]
    fn every_link_holding_makes_the_pipeline_exactly_once_ready() {
        let c = cluster(ConditionStatus::True, 900_000);
        let o = Observed {
            cluster: Some(&c),
            inputs: vec![link("orders")],
            outputs: vec![link("charges")],
            transaction_timeout_ms: Some(60_000),
            desired_workers: 1,
            ..Observed::default()
        };
        let status = pipeline_status(&o);
        assert!(status.failed_links.is_empty(), "{:?}", status.failed_links);
        let eos = conditions::find(&status.conditions, EXACTLY_ONCE_READY).map(|c| c.status);
        assert_eq!(eos, Some(ConditionStatus::True));
    }

    #[test]
    fn each_failing_link_is_named_in_a_stable_order() {
        let c = cluster(ConditionStatus::False, 30_000);
        let mut producer = Producer::new(
            "billing-pipeline",
            serde_json::from_value(serde_json::json!({"clusterRef": {"name": "main"},
                "transactionalIdPrefix": "p"}))
            .unwrap_or_else(|e| panic!("{e}")),
        );
        producer.status = Some(crate::api::ProducerStatus {
            conditions: vec![Condition::new(
                "ResourceConflict",
                ConditionStatus::True,
                "PrefixInUse",
                "Producer 'legacy' holds it.",
                Some(1),
            )],
            ..Default::default()
        });
        let o = Observed {
            cluster: Some(&c),
            inputs: vec![TopicLink {
                problem: Some("Topic 'orders' does not exist in this namespace".into()),
                ..link("orders")
            }],
            outputs: vec![link("charges")],
            config_problems: vec!["transform.filter: unexpected end".into()],
            producer: Some(&producer),
            transaction_timeout_ms: Some(60_000),
            desired_workers: 1,
            ..Observed::default()
        };
        let status = pipeline_status(&o);
        assert_eq!(
            status.failed_links,
            [
                "Cluster",
                "InputTopics",
                "WorkerConfig",
                "TransactionTimeout",
                "PrefixReservation"
            ]
        );
        let ready = conditions::find(&status.conditions, types::READY)
            .unwrap_or_else(|| panic!("no Ready"));
        assert_eq!(ready.reason, "WaitingForLinks");
        let stalled = conditions::find(&status.conditions, types::STALLED).map(|c| c.status);
        assert_eq!(
            stalled,
            Some(ConditionStatus::True),
            "a transform that does not compile needs a spec change"
        );
    }

    fn txn(id: &str, state: &str) -> crate::kafka::wire::TransactionDescription {
        crate::kafka::wire::TransactionDescription {
            transactional_id: id.into(),
            coordinator: 1,
            state: state.into(),
            producer_id: 7,
            producer_epoch: 0,
            timeout_ms: 60_000,
            start_time_ms: 0,
            partitions: Vec::new(),
        }
    }

    #[test]
    fn after_a_scale_down_only_open_transactions_of_removed_workers_whose_pods_are_gone_are_fenced()
    {
        let ids = [
            txn("shop.billing-0", "Ongoing"),
            txn("shop.billing-1", "Ongoing"),
            txn("shop.billing-1.1", "Ongoing"),
            txn("shop.billing-2", "Ongoing"),
            txn("shop.billing-3", "CompleteAbort"),
            txn("shop.billing-3.1", "CompleteCommit"),
            txn("shop.billing-extra-4", "Ongoing"),
            txn("shop.billing-5.x", "Ongoing"),
        ];
        let refs: Vec<&_> = ids.iter().collect();
        let pods = std::collections::BTreeSet::from([0, 2]);
        // Scaled 4 -> 1: worker 1's pod is gone (fence both its producers' ids); worker 2's pod
        // is still terminating (it commits or aborts itself); 3 has nothing open; another
        // prefix, or an id not of the worker's form, is not ours.
        assert_eq!(
            plan_fencing("shop.billing", 1, 1, &pods, &refs),
            ["shop.billing-1", "shop.billing-1.1"]
        );
        // While the StatefulSet still has more pods than desired, nothing is fenced.
        assert!(plan_fencing("shop.billing", 1, 2, &pods, &refs).is_empty());
        // A worker that runs is never fenced.
        assert!(plan_fencing("shop.billing", 3, 3, &pods, &refs).is_empty());
    }

    #[test]
    fn a_pipeline_stopped_at_a_record_names_it_and_is_stalled_until_the_spec_changes() {
        let c = cluster(ConditionStatus::True, 900_000);
        let o = Observed {
            cluster: Some(&c),
            inputs: vec![link("orders")],
            outputs: vec![link("charges")],
            transaction_timeout_ms: Some(60_000),
            desired_workers: 1,
            stopped_at: Some(vec!["shop.orders-0@41: the value is not JSON".into()]),
            ..Observed::default()
        };
        let status = pipeline_status(&o);
        assert_eq!(
            status.stopped_at.as_deref(),
            Some("shop.orders-0@41: the value is not JSON")
        );
        let ready = conditions::find(&status.conditions, types::READY)
            .unwrap_or_else(|| panic!("no Ready"));
        assert_eq!(
            (ready.status, ready.reason.as_str()),
            (ConditionStatus::False, "StoppedAtRecord")
        );
        assert!(
            ready.message.contains("shop.orders-0@41"),
            "{}",
            ready.message
        );
        let stalled = conditions::find(&status.conditions, types::STALLED).map(|c| c.status);
        assert_eq!(stalled, Some(ConditionStatus::True));
        // Once the workers commit past it again, the marker is gone and so is the stop.
        let o = Observed {
            stopped_at: Some(Vec::new()),
            previous: Some(&status),
            ..o
        };
        assert_eq!(pipeline_status(&o).stopped_at, None);
    }
}
