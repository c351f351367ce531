//! The controllers, one module per kind, and what they share.

pub mod cluster;
pub mod topic;

use std::future::Future;
use std::sync::Arc;

use futures::StreamExt;
use kube::runtime::controller::{Action, Config as ControllerConfig, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Api, Client, ResourceExt};
use tracing::{info, warn};

use crate::Error;
use crate::api::{KafkaCluster, Topic};
use crate::kafka::KafkaClients;

/// The field manager of every server-side apply the operator makes.
pub const FIELD_MANAGER: &str = "exactly-operator";

/// What every reconcile gets.
pub struct Context {
    pub client: Client,
    pub kafka: KafkaClients,
}

/// How the controllers run.
#[derive(Clone, Debug)]
pub struct Options {
    /// Watch only this namespace; `None` watches all.
    pub namespace: Option<String>,
    /// Reconciles of one kind that may run at once.
    pub concurrency: u16,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            namespace: None,
            concurrency: 4,
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
/// `current`: an unchanged status is never written (DESIGN §4). Returns whether it wrote.
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
    let patch = serde_json::json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": status,
    });
    api.patch_status(
        &object.name_any(),
        &kube::api::PatchParams::apply(FIELD_MANAGER).force(),
        &kube::api::Patch::Apply(patch),
    )
    .await?;
    Ok(true)
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
    let ctx = Arc::new(Context {
        client: client.clone(),
        kafka: KafkaClients::default(),
    });
    let namespace = options.namespace.as_deref();
    let watch = watcher::Config::default().any_semantic();
    let config = ControllerConfig::default().concurrency(options.concurrency);
    // Both controllers stop on the same signal.
    let shutdown = futures::future::FutureExt::shared(Box::pin(shutdown));

    let clusters = Controller::new(api::<KafkaCluster>(&client, namespace), watch.clone())
        .with_config(config.clone())
        .graceful_shutdown_on(shutdown.clone())
        .run(cluster::reconcile, error_policy, ctx.clone())
        .for_each(|_| futures::future::ready(()));

    let topics =
        Controller::new(api::<Topic>(&client, namespace), watch.clone()).with_config(config);
    // A KafkaCluster appearing or changing wakes the Topics that refer to it.
    let topic_store = topics.store();
    let topics = topics
        .watches(
            api::<KafkaCluster>(&client, namespace),
            watch,
            move |cluster| {
                let cluster_ns = cluster.namespace();
                let cluster_name = cluster.name_any();
                topic_store
                    .state()
                    .into_iter()
                    .filter(|t| {
                        t.namespace() == cluster_ns && t.spec.cluster_ref.name == cluster_name
                    })
                    .map(|t| ObjectRef::from_obj(&*t))
                    .collect::<Vec<_>>()
            },
        )
        .graceful_shutdown_on(shutdown)
        .run(topic::reconcile, error_policy, ctx)
        .for_each(|_| futures::future::ready(()));

    info!(
        namespace = namespace.unwrap_or("<all>"),
        concurrency = options.concurrency,
        "controllers started"
    );
    futures::future::join(clusters, topics).await;
    info!("controllers stopped");
}
