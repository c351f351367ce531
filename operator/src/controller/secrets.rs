//! What the operator's own Secrets hold, as their watch last delivered them (issue #10): a
//! Producer's reconcile compares the client configuration it renders with this instead of
//! reading its Secret from the API server, which cost one GET per Producer per refresh
//! (10 000 a refresh with 10 000 Producers). Only a digest of each Secret's data is kept.

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::Mutex;

use futures::{Stream, StreamExt};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::runtime::watcher;

/// The label every Secret the operator writes carries; its watch selects on it.
pub const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "exactly");

/// A Secret's `namespace/name`.
type Key = (String, String);

/// The digest of each of the operator's Secrets, by namespace and name.
#[derive(Default)]
pub struct SecretLedger {
    inner: Mutex<Ledger>,
}

#[derive(Default)]
struct Ledger {
    digests: HashMap<Key, u64>,
    /// During a relist of the watch: the Secrets listed so far. Those not listed by its end
    /// were deleted while the watch was away.
    relisted: Option<HashSet<Key>>,
}

/// The digest of a Secret's data: equal data, equal digest (within this process).
pub fn digest(data: Option<&BTreeMap<String, ByteString>>) -> u64 {
    let mut hasher = DefaultHasher::new();
    for (key, value) in data.into_iter().flatten() {
        key.hash(&mut hasher);
        value.0.hash(&mut hasher);
    }
    hasher.finish()
}

fn key_of(secret: &Secret) -> Key {
    (secret.namespace().unwrap_or_default(), secret.name_any())
}

impl SecretLedger {
    fn lock(&self) -> std::sync::MutexGuard<'_, Ledger> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether the Secret `namespace/name` holds data of `digest`; `None` when the ledger does
    /// not know it (not delivered by the watch yet): the caller reads it.
    pub fn holds(&self, namespace: &str, name: &str, digest: u64) -> Option<bool> {
        self.lock()
            .digests
            .get(&(namespace.to_string(), name.to_string()))
            .map(|d| *d == digest)
    }

    /// Records that the Secret `namespace/name` holds data of `digest` (just written or read).
    pub fn record(&self, namespace: &str, name: &str, digest: u64) {
        self.lock()
            .digests
            .insert((namespace.to_string(), name.to_string()), digest);
    }

    /// Applies one event of the Secrets' watch.
    pub fn observe(&self, event: &watcher::Event<Secret>) {
        let mut ledger = self.lock();
        match event {
            watcher::Event::Init => ledger.relisted = Some(HashSet::new()),
            watcher::Event::InitApply(secret) | watcher::Event::Apply(secret) => {
                let key = key_of(secret);
                if let Some(relisted) = ledger.relisted.as_mut() {
                    relisted.insert(key.clone());
                }
                ledger.digests.insert(key, digest(secret.data.as_ref()));
            }
            watcher::Event::Delete(secret) => {
                ledger.digests.remove(&key_of(secret));
            }
            watcher::Event::InitDone => {
                if let Some(relisted) = ledger.relisted.take() {
                    ledger.digests.retain(|key, _| relisted.contains(key));
                }
            }
        }
    }
}

/// The operator's Secrets as they change (for [`kube::runtime::Controller::owns_stream`]),
/// each event recorded in `ledger` on the way.
pub fn watch(
    api: kube::Api<Secret>,
    config: watcher::Config,
    ledger: std::sync::Arc<SecretLedger>,
) -> impl Stream<Item = Result<Secret, watcher::Error>> + Send + 'static {
    use kube::runtime::WatchStreamExt;
    let config = config.labels(&format!("{}={}", MANAGED_BY.0, MANAGED_BY.1));
    watcher(api, config)
        .backoff(super::backoff::WatchBackoff::default())
        .filter_map(move |event| {
            let touched = match event {
                Ok(event) => {
                    ledger.observe(&event);
                    match event {
                        watcher::Event::Apply(s)
                        | watcher::Event::InitApply(s)
                        | watcher::Event::Delete(s) => Some(Ok(s)),
                        watcher::Event::Init | watcher::Event::InitDone => None,
                    }
                }
                Err(e) => Some(Err(e)),
            };
            std::future::ready(touched)
        })
}

/// Writes the Secret `namespace/name` with `data` (server-side apply, owned by `owner` so it is
/// collected with it, labelled as the operator's and with `label`), unless it holds exactly
/// that already as its watch last showed it (read only when the watch has not delivered it).
/// Returns whether it wrote.
pub async fn apply_owned<K>(
    ctx: &super::Context,
    owner: &K,
    namespace: &str,
    name: &str,
    label: (&str, String),
    data: &BTreeMap<String, String>,
) -> Result<bool, kube::Error>
where
    K: kube::Resource<DynamicType = ()>,
{
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
    use kube::api::{Api, ObjectMeta, Patch, PatchParams};
    let owner = OwnerReference {
        api_version: K::api_version(&()).to_string(),
        kind: K::kind(&()).to_string(),
        name: owner.meta().name.clone().unwrap_or_default(),
        uid: owner.meta().uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    };
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            namespace: Some(namespace.to_string()),
            owner_references: Some(vec![owner]),
            labels: Some(BTreeMap::from([
                (MANAGED_BY.0.into(), MANAGED_BY.1.into()),
                (label.0.to_string(), label.1),
            ])),
            ..ObjectMeta::default()
        },
        data: Some(
            data.iter()
                .map(|(k, v)| (k.clone(), ByteString(v.clone().into_bytes())))
                .collect(),
        ),
        type_: Some("Opaque".into()),
        ..Secret::default()
    };
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), namespace);
    let wanted = digest(secret.data.as_ref());
    let holds = match ctx.secrets.holds(namespace, name, wanted) {
        Some(holds) => holds,
        None => api
            .get_opt(name)
            .await?
            .is_some_and(|existing| existing.data == secret.data),
    };
    if !holds {
        api.patch(
            name,
            &PatchParams::apply(super::FIELD_MANAGER).force(),
            &Patch::Apply(&secret),
        )
        .await?;
    }
    ctx.secrets.record(namespace, name, wanted);
    Ok(!holds)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::api::ObjectMeta;

    fn secret(name: &str, value: &str) -> Secret {
        Secret {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("ns".into()),
                ..ObjectMeta::default()
            },
            data: Some(BTreeMap::from([(
                "producer.properties".to_string(),
                ByteString(value.as_bytes().to_vec()),
            )])),
            ..Secret::default()
        }
    }

    fn digest_of(s: &Secret) -> u64 {
        digest(s.data.as_ref())
    }

    #[test]
    fn a_secret_the_watch_delivered_is_known_and_compared_by_its_data() {
        let ledger = SecretLedger::default();
        let a = secret("a-client", "acks=all");
        assert_eq!(ledger.holds("ns", "a-client", digest_of(&a)), None);
        ledger.observe(&watcher::Event::Apply(a.clone()));
        assert_eq!(ledger.holds("ns", "a-client", digest_of(&a)), Some(true));
        let edited = secret("a-client", "acks=1");
        assert_eq!(
            ledger.holds("ns", "a-client", digest_of(&edited)),
            Some(false)
        );
        ledger.observe(&watcher::Event::Apply(edited.clone()));
        assert_eq!(ledger.holds("ns", "a-client", digest_of(&a)), Some(false));
    }

    #[test]
    fn a_deleted_secret_is_unknown_again() {
        let ledger = SecretLedger::default();
        let a = secret("a-client", "acks=all");
        ledger.record("ns", "a-client", digest_of(&a));
        ledger.observe(&watcher::Event::Delete(a.clone()));
        assert_eq!(ledger.holds("ns", "a-client", digest_of(&a)), None);
    }

    #[test]
    fn a_relist_forgets_the_secrets_deleted_while_the_watch_was_away() {
        let ledger = SecretLedger::default();
        let (a, b) = (secret("a-client", "x"), secret("b-client", "y"));
        ledger.observe(&watcher::Event::Apply(a.clone()));
        ledger.observe(&watcher::Event::Apply(b.clone()));
        ledger.observe(&watcher::Event::Init);
        ledger.observe(&watcher::Event::InitApply(a.clone()));
        ledger.observe(&watcher::Event::InitDone);
        assert_eq!(ledger.holds("ns", "a-client", digest_of(&a)), Some(true));
        assert_eq!(ledger.holds("ns", "b-client", digest_of(&b)), None);
    }
}
