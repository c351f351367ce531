//! The controllers, one module per kind, and what they share.

pub mod access;
pub mod backoff;
pub mod batch;
pub mod children;
pub mod cluster;
pub mod eos;
pub mod events;
pub mod fair;
pub mod group;
pub mod group_pulsar;
pub mod identity;
pub mod index;
pub mod lag;
pub mod observe;
pub mod pipeline;
pub mod producer;
pub mod producer_config;
pub mod producer_pulsar;
pub mod provision;
pub mod provisioned;
pub mod pulsar_cluster;
pub mod resolve;
pub mod secrets;
pub mod topic;

#[cfg(test)]
mod properties;

use std::future::Future;
use std::sync::Arc;

use futures::StreamExt;
use kube::runtime::controller::{Action, Config as ControllerConfig, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use tracing::{debug, info, warn};

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::jiff::Timestamp;
use kube::runtime::events::{Event, EventType, Reporter};

use crate::Error;
use crate::api::{Condition, ConsumerGroup, KafkaCluster, Pipeline, Producer, Topic};
use crate::kafka::KafkaClients;
use crate::metrics::{Metrics, kinds};
use observe::Observer;

/// Retry interval while a dependency is missing or the brokers do not answer.
pub const RETRY: Duration = Duration::from_secs(15);

/// The field manager of every server-side apply the operator makes.
pub const FIELD_MANAGER: &str = "exactly-operator";

/// What every reconcile gets.
pub struct Context {
    pub client: Client,
    pub kafka: KafkaClients,
    /// Every watched KafkaCluster (the controllers' cache; no API request to read it).
    pub clusters: Store<KafkaCluster>,
    /// Every watched PulsarCluster.
    pub pulsar_clusters: Store<crate::api::PulsarCluster>,
    /// The admin client of each PulsarCluster.
    pub pulsar_admins: pulsar_cluster::Admins,
    /// Checked before every change sent to a messaging system (the Kafka clients hold it too).
    pub fence: crate::fence::Fence,
    /// Every watched Topic, for cross-resource checks such as two Topics claiming one topic.
    pub topics: Store<Topic>,
    /// Every watched Producer (prefix conflicts, what to observe).
    pub producers: Store<Producer>,
    /// The watched Producers by transactional id prefix (prefix conflicts).
    pub producer_prefixes: Arc<index::Index<Producer>>,
    /// Every watched ConsumerGroup (what to observe).
    pub groups: Store<ConsumerGroup>,
    /// Every watched Pipeline (what to observe: its workers' transactional ids).
    pub pipelines: Store<Pipeline>,
    /// The shared, interval-bounded observation of each cluster.
    pub observer: Observer,
    /// Live figures for Prometheus.
    pub metrics: Arc<Metrics>,
    /// Publishes Kubernetes Events.
    pub recorder: events::Events,
    /// When each group's committed offsets were last seen to move.
    pub commit_clock: CommitClock,
    /// Offset resets this process applied, by `namespace/name/id`.
    pub resets: Mutex<HashMap<String, crate::api::OffsetResetOutcome>>,
    /// Connection security of each KafkaCluster (`namespace/name`), from its Secret.
    pub security: Mutex<HashMap<String, crate::kafka::security::Security>>,
    /// The image Pipeline workers run when `spec.image` is not set.
    pub worker_image: String,
    /// How often delivery figures are refreshed (and Pipelines re-read their children).
    pub refresh_interval: Duration,
    /// The batched topic calls of each KafkaCluster (`namespace/name`).
    pub topic_batches: Mutex<HashMap<String, Arc<topic::TopicBatches>>>,
    /// What the operator's own Secrets hold, from their watch (no GET to compare).
    pub secrets: Arc<secrets::SecretLedger>,
    /// The passwords of workloads' own users (`spec.authentication`), from their Secrets.
    pub passwords: access::Passwords,
    /// When these controllers started. A resource created before may have been acted upon by
    /// an earlier run (killed, or a leader that lost its lease) without a status to show it.
    pub started: k8s_openapi::jiff::Timestamp,
}

/// Remembers each group's committed offsets between observations, to tell when it last
/// committed (Kafka does not report commit times).
#[derive(Default)]
pub struct CommitClock {
    seen: Mutex<HashMap<String, CommitSeen>>,
}

/// A group's committed offsets when last observed, and when they last moved.
type CommitSeen = (BTreeMap<(String, i32), i64>, Option<Instant>);

impl CommitClock {
    /// Records `committed` for `key`. Returns the new `lastCommitSeen` when the offsets moved
    /// (else `None`: keep the status' value), and the time since the last commit when known.
    /// `previous` is the status' `lastCommitSeen`, used after an operator restart.
    pub fn observe(
        &self,
        key: &str,
        committed: &BTreeMap<(String, i32), i64>,
        previous: Option<&str>,
    ) -> (Option<String>, Option<Duration>) {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        let since_previous = previous
            .and_then(|t| t.parse::<Timestamp>().ok())
            .and_then(|t| {
                let ms = Timestamp::now().as_millisecond() - t.as_millisecond();
                u64::try_from(ms).ok().map(Duration::from_millis)
            });
        match seen.get_mut(key) {
            None => {
                let since = since_previous;
                let at = since.and_then(|d| Instant::now().checked_sub(d));
                seen.insert(key.to_string(), (committed.clone(), at));
                (None, since)
            }
            Some((last, at)) if last != committed => {
                *last = committed.clone();
                *at = Some(Instant::now());
                (Some(Timestamp::now().to_string()), Some(Duration::ZERO))
            }
            Some((_, at)) => (None, at.map(|t| t.elapsed())),
        }
    }
}

/// The key resources on one cluster share: its bootstrap servers when the KafkaCluster is
/// known, else `namespace/name`.
pub fn cluster_key(ctx: &Context, namespace: &str, cluster: &str) -> String {
    ctx.clusters
        .get(&ObjectRef::new(cluster).within(namespace))
        .map(|c| c.bootstrap_servers())
        .unwrap_or_else(|| format!("{namespace}/{cluster}"))
}

/// Publishes an Event about `object`; a failure is logged, never fatal.
pub async fn publish_event<K>(
    ctx: &Context,
    object: &K,
    type_: EventType,
    reason: &str,
    action: &str,
    note: String,
) where
    K: kube::Resource<DynamicType = ()>,
{
    let event = Event {
        type_,
        reason: reason.to_string(),
        note: Some(note),
        action: action.to_string(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&event, &object.object_ref(&())).await {
        warn!(error = %e, reason, "could not publish event");
    }
}

/// Publishes one Event per condition whose status flipped (DESIGN §4: Events only on changes).
pub async fn transition_events<K>(
    ctx: &Context,
    object: &K,
    previous: Option<&[Condition]>,
    current: &[Condition],
) where
    K: kube::Resource<DynamicType = ()>,
{
    use crate::api::conditions::types;
    for c in current {
        if c.type_ == types::RECONCILING || c.type_ == types::STALLED {
            continue;
        }
        let healthy = match c.type_.as_str() {
            "Drifted" | "ResourceConflict" | "HangingTransactions" => {
                c.status != crate::api::ConditionStatus::True
            }
            _ => c.status == crate::api::ConditionStatus::True,
        };
        let before = previous.and_then(|p| crate::api::conditions::find(p, &c.type_));
        let flipped = match before {
            Some(b) => b.status != c.status,
            // A condition first seen healthy is not news; first seen failing, it is.
            None => !healthy,
        };
        if !flipped {
            continue;
        }
        let type_ = if healthy {
            EventType::Normal
        } else {
            EventType::Warning
        };
        let note = if c.message.is_empty() {
            format!("{} is now {:?}", c.type_, c.status)
        } else {
            c.message.clone()
        };
        publish_event(ctx, object, type_, &c.reason, &c.type_, note).await;
    }
}

/// How the controllers run.
#[derive(Clone, Debug)]
pub struct Options {
    /// Watch only this namespace, or these (comma-separated); `None` watches all.
    pub namespace: Option<String>,
    /// Reconciles of one kind that may run at once (Topics: see `topic_concurrency`).
    pub concurrency: u16,
    /// Topic reconciles that may run at once. Higher than the others: a Topic's reconcile
    /// mostly waits for the batched Kafka call it shares with the Topics reconciled beside it,
    /// so the more run together, the fewer requests a burst costs.
    pub topic_concurrency: u16,
    /// How often delivery figures (lag, transactions) are refreshed; one observation of a
    /// cluster per interval serves every resource on it.
    pub refresh_interval: Duration,
    /// Where Prometheus metrics are recorded (the HTTP server exposing them is the caller's).
    pub metrics: Arc<Metrics>,
    /// The image Pipeline workers run when `spec.image` is not set (the operator's own image
    /// ships `exactly-worker`).
    pub worker_image: String,
    /// Checked before every Kafka change (and, by the caller's client, every API write): with
    /// leader election the leader's [`crate::lease::Leader::fence`], else open.
    pub fence: crate::fence::Fence,
}

/// Topic reconciles that may run at once unless configured (see [`Options::topic_concurrency`]).
pub const DEFAULT_TOPIC_CONCURRENCY: u16 = 64;

/// The worker image when none is configured: this release's operator image.
pub const DEFAULT_WORKER_IMAGE: &str =
    concat!("ghcr.io/exactly-dev/exactly:", env!("CARGO_PKG_VERSION"));

impl Default for Options {
    fn default() -> Self {
        Options {
            namespace: None,
            concurrency: 4,
            topic_concurrency: DEFAULT_TOPIC_CONCURRENCY,
            refresh_interval: Duration::from_secs(30),
            metrics: Arc::default(),
            worker_image: DEFAULT_WORKER_IMAGE.to_string(),
            fence: crate::fence::Fence::open(),
        }
    }
}

fn api<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    K::DynamicType: Default,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// Writes `status` by server-side apply with the operator's field manager, unless it equals
/// `current`: an unchanged status is never written (DESIGN §4). The write is conditional on
/// `object`'s resourceVersion. Returns whether it wrote.
pub async fn apply_status<K>(
    client: &Client,
    object: &K,
    current: Option<&K::Status>,
    status: &K::Status,
) -> crate::Result<bool>
where
    K: kube::Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + kube::core::object::HasStatus
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
    K::Status: PartialEq + serde::Serialize,
{
    if current == Some(status) {
        return Ok(false);
    }
    let namespace = object
        .namespace()
        .ok_or(Error::MissingObjectKey("metadata.namespace"))?;
    let api: Api<K> = Api::namespaced(client.clone(), &namespace);
    // The status was computed from this version of the object: if the object moved on since
    // (a reconcile of a stale cached copy), the write is refused rather than overwriting a newer
    // status, and the newer version's own reconcile writes instead.
    let patch = serde_json::json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "metadata": {"resourceVersion": object.resource_version()},
        "status": status,
    });
    match api
        .patch_status(
            &object.name_any(),
            &kube::api::PatchParams::apply(FIELD_MANAGER).force(),
            &kube::api::Patch::Apply(patch),
        )
        .await
    {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(e)) if e.code == 409 => {
            tracing::debug!(name = %object.name_any(), "status computed from a stale copy; not written");
            Ok(false)
        }
        Err(e) => Err(e.into()),
    }
}

/// Writes `status` of `object` (unless unchanged, and only over the version it was computed
/// from; see [`apply_status`]) and, when it was written, publishes an Event for each condition
/// that flipped: one mechanism for every kind, so Events follow recorded changes only.
pub async fn write_status<K>(ctx: &Context, object: &K, status: &K::Status) -> crate::Result<bool>
where
    K: kube::Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + kube::core::object::HasStatus
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
    K::Status: PartialEq + serde::Serialize + resolve::HasConditions,
{
    use resolve::HasConditions;
    let previous = object.status();
    let written = apply_status(&ctx.client, object, previous, status).await?;
    if written {
        transition_events(
            ctx,
            object,
            previous.map(HasConditions::conditions),
            status.conditions(),
        )
        .await;
    }
    Ok(written)
}

/// A boxed reconcile future.
type ReconcileFuture = std::pin::Pin<Box<dyn Future<Output = crate::Result<Action>> + Send>>;

/// Wraps a reconcile function to record its duration and result (`ok` or the error's reason).
fn timed<K, F, Fut>(
    kind: &'static str,
    reconcile: F,
) -> impl Fn(Arc<K>, Arc<Context>) -> ReconcileFuture
where
    K: Send + Sync + 'static,
    F: Fn(Arc<K>, Arc<Context>) -> Fut + Copy + Send + 'static,
    Fut: Future<Output = crate::Result<Action>> + Send + 'static,
{
    move |object, ctx| {
        Box::pin(async move {
            let started = Instant::now();
            let result = reconcile(object, ctx.clone()).await;
            let outcome = match &result {
                Ok(_) => "ok",
                Err(e) => e.reason(),
            };
            ctx.metrics
                .observe_reconcile(kind, started.elapsed().as_secs_f64(), outcome);
            result
        })
    }
}

/// One item of a controller's output stream.
type ControllerResult<K, E> = Result<
    (ObjectRef<K>, Action),
    kube::runtime::controller::Error<E, kube::runtime::watcher::Error>,
>;

/// Consumes a controller's output: reconcile results are already counted by [`timed`]; a
/// failed list or watch (e.g. RBAC refusing it) is logged and counted here, so it is visible
/// rather than retried in silence.
fn watch_errors<K, E>(
    kind: &'static str,
    metrics: Arc<Metrics>,
) -> impl FnMut(ControllerResult<K, E>) -> futures::future::Ready<()>
where
    K: kube::Resource,
    E: std::error::Error,
{
    move |result| {
        if let Err(kube::runtime::controller::Error::QueueError(e)) = result {
            if is_expired(&e) {
                debug!(kind, error = %e, "watch expired; listing again");
            } else {
                warn!(kind, error = %e, "watch failed");
                metrics.watch_failed(kind);
            }
        }
        futures::future::ready(())
    }
}

/// The KafkaClusters of `namespace` (all when `None`), each time what its dependents act on
/// changes ([`cluster_wake_hash`]).
fn watch_cluster_changes(
    client: &Client,
    namespace: Option<&str>,
    watch: &watcher::Config,
) -> impl futures::Stream<Item = Result<KafkaCluster, watcher::Error>> + Send + 'static {
    watcher(api::<KafkaCluster>(client, namespace), watch.clone())
        .backoff(backoff::WatchBackoff::default())
        .modify(trim)
        .applied_objects()
        .predicate_filter(
            |c: &KafkaCluster| Some(cluster_wake_hash(c)),
            kube::runtime::PredicateConfig::default(),
        )
}

/// What the resources on a KafkaCluster act on: its spec (generation), where clients connect,
/// whether its conditions hold and the exactly-once settings it reports. The figures its status
/// carries (partitions short of replicas, messages, transition times) wake nothing.
fn cluster_wake_hash(cluster: &KafkaCluster) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    cluster.meta().generation.hash(&mut hasher);
    if let Some(status) = &cluster.status {
        status.bootstrap_servers.hash(&mut hasher);
        for c in &status.conditions {
            (&c.type_, format!("{:?}", c.status)).hash(&mut hasher);
        }
        serde_json::to_string(&status.exactly_once)
            .unwrap_or_default()
            .hash(&mut hasher);
    }
    hasher.finish()
}

/// For a watch stream the operator consumes itself (not through a controller): passes the
/// objects on, and logs and counts a failed list or watch as [`watch_errors`] does.
fn watched<K>(
    kind: &'static str,
    metrics: Arc<Metrics>,
) -> impl FnMut(Result<K, watcher::Error>) -> futures::future::Ready<Option<K>> {
    move |result| {
        futures::future::ready(match result {
            Ok(object) => Some(object),
            Err(e) => {
                if is_expired(&e) {
                    debug!(kind, error = %e, "watch expired; listing again");
                } else {
                    warn!(kind, error = %e, "watch failed");
                    metrics.watch_failed(kind);
                }
                None
            }
        })
    }
}

/// Whether a watch ended with 410 Gone (its resource version is older than the API server
/// keeps): the watcher lists again and goes on, so it is no failure. A fresh API server's watch
/// cache answers a watch from a just-listed version this way too.
fn is_expired(error: &kube::runtime::watcher::Error) -> bool {
    matches!(error, kube::runtime::watcher::Error::WatchError(status) if status.code == 410)
}

/// Adds or removes `finalizer` on `object`. Returns whether the object changed: by this patch,
/// or, when the patch is refused as a conflict, since the cached copy this reconcile saw (the
/// cache lags the operator's own last write); either way the newer version brings the object
/// round again.
pub async fn set_finalizer<K>(
    ctx: &Context,
    object: &K,
    finalizer: &str,
    present: bool,
) -> crate::Result<bool>
where
    K: kube::Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let has = object.finalizers().iter().any(|f| f == finalizer);
    if has == present {
        return Ok(false);
    }
    let namespace = object
        .namespace()
        .ok_or(Error::MissingObjectKey("metadata.namespace"))?;
    let api: Api<K> = Api::namespaced(ctx.client.clone(), &namespace);
    let mut finalizers: Vec<String> = object
        .finalizers()
        .iter()
        .filter(|f| *f != finalizer)
        .cloned()
        .collect();
    if present {
        finalizers.push(finalizer.to_string());
    }
    // Guarded by resourceVersion so a concurrent change of the list is never overwritten.
    let patch = serde_json::json!({
        "metadata": {
            "finalizers": finalizers,
            "resourceVersion": object.resource_version(),
        }
    });
    match api
        .patch(
            &object.name_any(),
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(patch),
        )
        .await
    {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(e)) if e.code == 409 => {
            tracing::debug!(name = %object.name_any(), "finalizer patch over a stale copy refused; waiting for the newer version");
            Ok(true)
        }
        Err(e) => Err(e.into()),
    }
}

/// Drops what no controller reads from a watched object before it is cached: the managed
/// fields are about a third of a small object, and the caches hold every object.
fn trim<K: kube::Resource>(object: &mut K) {
    object.meta_mut().managed_fields = None;
}

/// What a Topic's reconcile acts on: its spec (through its generation), its finalizers and its
/// deletion. A change to anything else (its status above all) wakes no reconcile.
fn wake_hash(topic: &Topic) -> u64 {
    acted_on(topic.meta(), None)
}

/// The hash of what a reconcile acts on in an object's metadata: its generation (the spec), its
/// finalizers, its deletion, and the value of `annotation` when it acts on one. Its own status
/// writes change none of these, so they wake nothing.
fn acted_on(meta: &kube::api::ObjectMeta, annotation: Option<&str>) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    meta.generation.hash(&mut hasher);
    meta.finalizers.hash(&mut hasher);
    meta.deletion_timestamp.is_some().hash(&mut hasher);
    if let Some(annotation) = annotation {
        meta.annotations
            .as_ref()
            .and_then(|a| a.get(annotation))
            .hash(&mut hasher);
    }
    hasher.finish()
}

/// The objects of `api` whose [`acted_on`] hash changed, for a controller, and the cache of all
/// of them ([`all_of`]).
fn changes_of<K>(
    api: Api<K>,
    watch: watcher::Config,
    annotation: Option<&'static str>,
    on_event: impl Fn(&watcher::Event<K>) + Send + 'static,
) -> (
    Store<K>,
    impl futures::Stream<Item = Result<K, watcher::Error>> + Send + 'static,
)
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    let (store, changes) = all_of(api, watch, on_event);
    let changes = changes.predicate_filter(
        move |o: &K| Some(acted_on(o.meta(), annotation)),
        kube::runtime::PredicateConfig::default(),
    );
    (store, changes)
}

/// The cache of every object of `api` (managed fields trimmed) and every applied object, as
/// `Controller::new` builds them, with `on_event` seeing every watch event before the cache.
fn all_of<K>(
    api: Api<K>,
    watch: watcher::Config,
    on_event: impl Fn(&watcher::Event<K>) + Send + 'static,
) -> (
    Store<K>,
    impl futures::Stream<Item = Result<K, watcher::Error>> + Send + 'static,
)
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    let (store, writer) = kube::runtime::reflector::store::<K>();
    let changes = kube::runtime::reflector(
        writer,
        watcher(api, watch)
            .backoff(backoff::WatchBackoff::default())
            .modify(trim)
            .inspect(move |event| {
                if let Ok(event) = event {
                    on_event(event);
                }
            }),
    )
    .applied_objects();
    (store, changes)
}

/// Whether `object` is still in its watch's cache. A reconcile that was under way when its
/// object was deleted exports no series for it: the watch has removed them already.
pub fn still_watched<K>(store: &Store<K>, object: &K) -> bool
where
    K: kube::Resource<DynamicType = ()> + Clone + 'static,
{
    store.get(&ObjectRef::from_obj(object)).is_some()
}

/// A watch's event hook that removes the metric series of each deleted resource of `kind`:
/// when the watch sees the deletion, and after a relist for those no longer listed (deleted
/// while the watch was down).
fn forget_deleted<K: kube::Resource>(
    kind: &'static str,
    namespace: Option<&str>,
    metrics: Arc<Metrics>,
) -> impl Fn(&watcher::Event<K>) + Send + 'static {
    let namespace = namespace.map(str::to_string);
    let listed = Mutex::new(std::collections::BTreeSet::new());
    let key = |object: &K| {
        let meta = object.meta();
        (
            meta.namespace.clone().unwrap_or_default(),
            meta.name.clone().unwrap_or_default(),
        )
    };
    move |event| {
        let mut listed = listed.lock().unwrap_or_else(|p| p.into_inner());
        match event {
            watcher::Event::Delete(object) => {
                let (ns, name) = key(object);
                metrics.forget(kind, &ns, &name);
            }
            watcher::Event::Init => listed.clear(),
            watcher::Event::InitApply(object) => {
                listed.insert(key(object));
            }
            watcher::Event::InitDone => {
                metrics.retain(kind, namespace.as_deref(), &listed);
                listed.clear();
            }
            watcher::Event::Apply(_) => {}
        }
    }
}

fn error_policy<K: ResourceExt>(object: Arc<K>, error: &Error, _ctx: Arc<Context>) -> Action {
    warn!(name = %object.name_any(), namespace = object.namespace().unwrap_or_default(), reason = error.reason(), %error, "reconcile failed");
    Action::requeue(std::time::Duration::from_secs(10))
}

/// Runs the controllers until `shutdown` resolves; in-flight reconciles finish first.
pub async fn run(
    client: Client,
    options: Options,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let namespaces: Vec<String> = options
        .namespace
        .as_deref()
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|ns| !ns.is_empty())
        .map(str::to_string)
        .collect();
    if namespaces.len() <= 1 {
        return run_in(client, options, shutdown).await;
    }
    // A watch is of one namespace or of all: one set of controllers per listed namespace, so
    // the operator needs no cluster-wide read access (the chart's `watchNamespaces`).
    let shutdown = futures::future::FutureExt::shared(Box::pin(shutdown));
    futures::future::join_all(namespaces.into_iter().map(|ns| {
        let options = Options {
            namespace: Some(ns),
            ..options.clone()
        };
        run_in(client.clone(), options, shutdown.clone())
    }))
    .await;
}

/// Runs the controllers for one namespace (or all, when `options.namespace` is `None`).
async fn run_in(
    client: Client,
    options: Options,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let namespace = options.namespace.as_deref();
    let watch = watcher::Config::default().any_semantic();
    let config = ControllerConfig::default().concurrency(options.concurrency);
    // Both controllers stop on the same signal.
    let shutdown = futures::future::FutureExt::shared(Box::pin(shutdown));

    // Each kind with metric series of its own removes them when one of its resources goes.
    let (cluster_store, cluster_changes) = all_of(
        api::<KafkaCluster>(&client, namespace),
        watch.clone(),
        forget_deleted(kinds::CLUSTER, namespace, options.metrics.clone()),
    );
    // A snapshot that finds a cluster's brokers gone, or back, wakes the KafkaCluster's check
    // (by its key, the bootstrap servers) instead of waiting for its resync.
    let (reachability_tx, reachability_rx) = futures::channel::mpsc::unbounded::<String>();
    let reachability_wakes = {
        let store = cluster_store.clone();
        reachability_rx.flat_map(move |key| {
            futures::stream::iter(
                store
                    .state()
                    .into_iter()
                    .filter(|c| c.bootstrap_servers() == key)
                    .map(|c| ObjectRef::from_obj(&*c))
                    .collect::<Vec<_>>(),
            )
        })
    };
    let clusters = Controller::for_stream(cluster_changes, cluster_store)
        .with_config(config.clone())
        .trigger_backoff(backoff::WatchBackoff::default())
        .reconcile_on(reachability_wakes);
    // Topics wake their reconcile only when what it acts on changes (spec, finalizers,
    // deletion), never on their own status writes; the cache still sees every version. The
    // periodic refresh ([`topic::refresh`]) recomputes their status from one observation per
    // cluster and hands those needing a change in Kafka to the controller. Every trigger goes
    // through a fair queue ([`fair`]): namespaces take turns for the controller's slots.
    let (topic_store, topic_writer) = kube::runtime::reflector::store::<Topic>();
    let topic_changes = kube::runtime::reflector(
        topic_writer,
        watcher(api::<Topic>(&client, namespace), watch.clone())
            .backoff(backoff::WatchBackoff::default())
            .modify(trim),
    )
    .applied_objects()
    .predicate_filter(
        |t: &Topic| Some(wake_hash(t)),
        kube::runtime::PredicateConfig::default(),
    )
    .filter_map(watched("Topic", options.metrics.clone()))
    .map(|t| ObjectRef::from_obj(&t));
    let (refresh_tx, refresh_rx) = futures::channel::mpsc::unbounded::<ObjectRef<Topic>>();
    let (fair_tx, fair_rx) = futures::channel::mpsc::unbounded::<ObjectRef<Topic>>();
    let topic_slots = fair::Slots::default();
    let topics = Controller::for_stream(
        futures::stream::pending::<Result<Topic, watcher::Error>>(),
        topic_store,
    )
    .with_config(config.clone().concurrency(options.topic_concurrency))
    .trigger_backoff(backoff::WatchBackoff::default())
    .reconcile_on(fair_rx);
    // Producers and ConsumerGroups too wake only on what their reconcile acts on (and are
    // requeued every refresh interval): a status write of theirs is no change.
    let producer_prefixes: Arc<index::Index<Producer>> = Arc::new(index::Index::new(|p| {
        p.spec.transactional_id_prefix.clone()
    }));
    let (producer_store, producer_changes) = changes_of(
        api::<Producer>(&client, namespace),
        watch.clone(),
        Some(producer::ABORT_ANNOTATION),
        {
            let index = producer_prefixes.clone();
            let forget = forget_deleted(kinds::PRODUCER, namespace, options.metrics.clone());
            move |event| {
                index.observe(event);
                forget(event);
            }
        },
    );
    let producers = Controller::for_stream(producer_changes, producer_store)
        .with_config(config.clone())
        .trigger_backoff(backoff::WatchBackoff::default());
    let (group_store, group_changes) = changes_of(
        api::<ConsumerGroup>(&client, namespace),
        watch.clone(),
        None,
        forget_deleted(kinds::CONSUMER_GROUP, namespace, options.metrics.clone()),
    );
    let groups = Controller::for_stream(group_changes, group_store)
        .with_config(config.clone())
        .trigger_backoff(backoff::WatchBackoff::default());
    let (pipeline_store, pipeline_changes) = all_of(
        api::<Pipeline>(&client, namespace),
        watch.clone(),
        forget_deleted(kinds::PIPELINE, namespace, options.metrics.clone()),
    );
    let pipelines = Controller::for_stream(pipeline_changes, pipeline_store)
        .with_config(config.clone())
        .trigger_backoff(backoff::WatchBackoff::default());
    let (pulsar_cluster_store, pulsar_cluster_changes) = all_of(
        api::<crate::api::PulsarCluster>(&client, namespace),
        watch.clone(),
        forget_deleted(kinds::PULSAR_CLUSTER, namespace, options.metrics.clone()),
    );
    let pulsar_clusters = Controller::for_stream(pulsar_cluster_changes, pulsar_cluster_store)
        .with_config(config)
        .trigger_backoff(backoff::WatchBackoff::default());
    let ctx = Arc::new(Context {
        client: client.clone(),
        kafka: KafkaClients::counting(options.metrics.kafka_request_counter())
            .fenced(options.fence.clone()),
        clusters: clusters.store(),
        pulsar_clusters: pulsar_clusters.store(),
        pulsar_admins: Mutex::default(),
        fence: options.fence.clone(),
        topics: topics.store(),
        producers: producers.store(),
        producer_prefixes,
        groups: groups.store(),
        pipelines: pipelines.store(),
        observer: Observer::new(options.refresh_interval).waking(reachability_tx),
        metrics: options.metrics.clone(),
        recorder: events::Events::new(client.clone(), Reporter::from("exactly-operator")),
        commit_clock: CommitClock::default(),
        resets: Mutex::default(),
        security: Mutex::default(),
        worker_image: options.worker_image.clone(),
        refresh_interval: options.refresh_interval,
        topic_batches: Mutex::default(),
        secrets: Arc::default(),
        passwords: access::Passwords::default(),
        started: k8s_openapi::jiff::Timestamp::now(),
    });

    let clusters = clusters
        // A provisioned cluster's StatefulSets report its pods' readiness.
        .owns(
            api::<k8s_openapi::api::apps::v1::StatefulSet>(&client, namespace),
            watch.clone(),
        )
        .graceful_shutdown_on(shutdown.clone())
        .run(
            timed("KafkaCluster", cluster::reconcile),
            error_policy,
            ctx.clone(),
        )
        .for_each(watch_errors("KafkaCluster", ctx.metrics.clone()));

    // A KafkaCluster appearing or changing wakes the resources that refer to it.
    fn on_cluster<K>(
        store: Store<K>,
        cluster_of: fn(&K) -> &str,
    ) -> impl Fn(KafkaCluster) -> Vec<ObjectRef<K>>
    where
        K: kube::Resource<DynamicType = ()> + Clone + 'static,
    {
        move |cluster| {
            let ns = cluster.namespace();
            let name = cluster.name_any();
            store
                .state()
                .into_iter()
                .filter(|o| o.namespace() == ns && cluster_of(o) == name)
                .map(|o| ObjectRef::from_obj(&*o))
                .collect()
        }
    }
    // A KafkaCluster's status is written as its figures move: only what its dependents act on
    // ([`cluster_wake_hash`]) wakes its 10 000 Topics.
    let on_topic_cluster = on_cluster(ctx.topics.clone(), |t: &Topic| &t.spec.cluster_ref.name);
    let topic_cluster_changes = watch_cluster_changes(&client, namespace, &watch)
        .filter_map(watched("Topic", options.metrics.clone()))
        .flat_map(move |cluster| futures::stream::iter(on_topic_cluster(cluster)));
    let dispatcher = fair::dispatch(
        futures::stream::select_all([
            topic_changes.boxed(),
            topic_cluster_changes.boxed(),
            refresh_rx.boxed(),
        ]),
        |r: &ObjectRef<Topic>| (r.namespace.clone(), r.name.clone()),
        fair_tx,
        usize::from(options.topic_concurrency),
        topic_slots.clone(),
    );
    let topics = {
        let mut on_result = watch_errors("Topic", ctx.metrics.clone());
        topics
            .graceful_shutdown_on(shutdown.clone())
            .run(timed("Topic", topic::reconcile), error_policy, ctx.clone())
            .for_each(move |result| {
                // The reconcile ended, however: its slot goes back to the fair queue.
                let key = match &result {
                    Ok((object, _)) => Some((object.namespace.clone(), object.name.clone())),
                    Err(kube::runtime::controller::Error::ObjectNotFound(object))
                    | Err(kube::runtime::controller::Error::ReconcilerFailed(_, object)) => {
                        Some((object.namespace.clone(), object.name.clone()))
                    }
                    Err(_) => None,
                };
                if let Some(key) = key {
                    topic_slots.release(&key);
                }
                on_result(result)
            })
    };
    let producers = producers
        // Only the operator's own Secrets (its label), recorded on the way for the reconciles
        // to compare against.
        .owns_stream(secrets::watch(
            api::<k8s_openapi::api::core::v1::Secret>(&client, namespace),
            watch.clone(),
            ctx.secrets.clone(),
        ))
        .watches_stream(
            watch_cluster_changes(&client, namespace, &watch),
            on_cluster(ctx.producers.clone(), |p: &Producer| {
                &p.spec.cluster_ref.name
            }),
        )
        // A StatefulSet scaling changes the instance count of the Producer it runs.
        .watches(
            api::<k8s_openapi::api::apps::v1::StatefulSet>(&client, namespace),
            watch.clone(),
            {
                let store = ctx.producers.clone();
                move |sts| {
                    let ns = sts.namespace();
                    let name = sts.name_any();
                    store
                        .state()
                        .into_iter()
                        .filter(|p| {
                            p.namespace() == ns
                                && p.spec
                                    .stateful_set_ref
                                    .as_ref()
                                    .is_some_and(|r| r.name == name)
                        })
                        .map(|p| ObjectRef::from_obj(&*p))
                        .collect::<Vec<_>>()
                }
            },
        )
        .graceful_shutdown_on(shutdown.clone())
        .run(
            timed("Producer", producer::reconcile),
            error_policy,
            ctx.clone(),
        )
        .for_each(watch_errors("Producer", ctx.metrics.clone()));
    let pipeline_store = ctx.pipelines.clone();
    let pipelines = pipelines
        // Its children: their status is part of the Pipeline's.
        .owns(
            api::<k8s_openapi::api::apps::v1::StatefulSet>(&client, namespace),
            watch.clone(),
        )
        .owns(api::<Producer>(&client, namespace), watch.clone())
        .owns(api::<ConsumerGroup>(&client, namespace), watch.clone())
        .watches_stream(
            watch_cluster_changes(&client, namespace, &watch),
            on_cluster(pipeline_store.clone(), |p: &Pipeline| {
                &p.spec.cluster_ref.name
            }),
        )
        // A Topic it reads or writes appearing or becoming Ready.
        .watches(api::<Topic>(&client, namespace), watch.clone(), {
            let store = pipeline_store.clone();
            move |topic| {
                let ns = topic.namespace();
                let name = topic.name_any();
                store
                    .state()
                    .into_iter()
                    .filter(|p| {
                        p.namespace() == ns
                            && (p.spec.input.topics.iter().any(|t| t.name == name)
                                || pipeline::output_topic_names(&p.spec).contains(&name))
                    })
                    .map(|p| ObjectRef::from_obj(&*p))
                    .collect::<Vec<_>>()
            }
        })
        .graceful_shutdown_on(shutdown.clone())
        .run(
            timed("Pipeline", pipeline::reconcile),
            error_policy,
            ctx.clone(),
        )
        .for_each(watch_errors("Pipeline", ctx.metrics.clone()));
    let pulsar_clusters = pulsar_clusters
        .graceful_shutdown_on(shutdown.clone())
        .run(
            timed("PulsarCluster", pulsar_cluster::reconcile),
            error_policy,
            ctx.clone(),
        )
        .for_each(watch_errors("PulsarCluster", ctx.metrics.clone()));
    let groups = groups
        .watches_stream(
            watch_cluster_changes(&client, namespace, &watch),
            on_cluster(ctx.groups.clone(), |g: &ConsumerGroup| {
                &g.spec.cluster_ref.name
            }),
        )
        .graceful_shutdown_on(shutdown)
        .run(
            timed("ConsumerGroup", group::reconcile),
            error_policy,
            ctx.clone(),
        )
        .for_each(watch_errors("ConsumerGroup", ctx.metrics.clone()));

    // The periodic refresh of Topics, until the controllers stop.
    let refresher = {
        let ctx = ctx.clone();
        let interval = options.refresh_interval;
        async move {
            let trigger = move |topic: ObjectRef<Topic>| {
                let _ = refresh_tx.unbounded_send(topic);
            };
            loop {
                tokio::time::sleep(interval).await;
                let started = Instant::now();
                topic::refresh(&ctx, &trigger).await;
                ctx.metrics.observe_reconcile(
                    "TopicRefresh",
                    started.elapsed().as_secs_f64(),
                    "ok",
                );
            }
        }
    };
    let topics = async move {
        tokio::select! {
            () = topics => {}
            () = refresher => {}
            () = dispatcher => {}
        }
    };

    info!(
        namespace = namespace.unwrap_or("<all>"),
        concurrency = options.concurrency,
        topic_concurrency = options.topic_concurrency,
        "controllers started"
    );
    futures::future::join(
        futures::future::join5(clusters, topics, producers, groups, pipelines),
        pulsar_clusters,
    )
    .await;
    info!("controllers stopped");
}

#[cfg(test)]
mod tests {
    use super::is_expired;
    use kube::core::Status;
    use kube::runtime::watcher::Error;

    fn watch_error(code: u16, reason: &str) -> Error {
        let mut status = Status::failure("too old resource version: 296 (297)", reason);
        status.code = code;
        Error::WatchError(Box::new(status))
    }

    #[test]
    fn a_watch_that_expired_is_not_counted_as_failed() {
        assert!(is_expired(&watch_error(410, "Expired")));
    }

    #[test]
    fn a_watch_refused_or_failing_otherwise_is_counted() {
        assert!(!is_expired(&watch_error(403, "Forbidden")));
        assert!(!is_expired(&watch_error(500, "InternalError")));
        assert!(!is_expired(&Error::NoResourceVersion));
    }
}
