//! One way to write a resource's children, for every controller that has any (provisioned
//! clusters, Pipelines): server-side apply with the operator's field manager, a controller owner
//! reference to the parent (garbage collection removes the children with it) and the parent's
//! label; and one way to remove the children the parent no longer renders: those carrying its
//! label *and* owned by it, of a kind it applies — never anything else.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::{Client, Resource, ResourceExt};
use tracing::info;

use super::FIELD_MANAGER;
use crate::{Error, Result};

/// The children applied for one parent during one reconcile.
pub struct Children {
    client: Client,
    namespace: String,
    owner: OwnerReference,
    label: (String, String),
    /// Names applied, by kind.
    applied: BTreeMap<String, BTreeSet<String>>,
}

impl Children {
    /// Children of `parent`, labelled `label.0=label.1` (a label naming the parent).
    pub fn of<P>(client: &Client, parent: &P, label: (&str, &str)) -> Result<Children>
    where
        P: Resource<DynamicType = ()>,
    {
        let namespace = parent
            .meta()
            .namespace
            .clone()
            .ok_or(Error::MissingObjectKey("metadata.namespace"))?;
        let owner = parent
            .controller_owner_ref(&())
            .ok_or(Error::MissingObjectKey("metadata.uid"))?;
        Ok(Children {
            client: client.clone(),
            namespace,
            owner,
            label: (label.0.to_string(), label.1.to_string()),
            applied: BTreeMap::new(),
        })
    }

    /// Applies `child` (server-side, forced: the operator owns these fields) with the owner
    /// reference and the label set; an unchanged child is a no-op on the server. Returns the
    /// object as the API server stores it.
    pub async fn apply<K>(&mut self, mut child: K) -> Result<K>
    where
        K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
            + Clone
            + serde::Serialize
            + serde::de::DeserializeOwned
            + std::fmt::Debug,
    {
        let name = child
            .meta()
            .name
            .clone()
            .ok_or(Error::MissingObjectKey("metadata.name"))?;
        let meta = child.meta_mut();
        meta.namespace = Some(self.namespace.clone());
        meta.owner_references = Some(vec![self.owner.clone()]);
        meta.labels
            .get_or_insert_with(Default::default)
            .insert(self.label.0.clone(), self.label.1.clone());
        // Server-side apply wants apiVersion and kind in the body; typed k8s-openapi objects
        // serialize them, CRD types too.
        let api: Api<K> = Api::namespaced(self.client.clone(), &self.namespace);
        let applied = api
            .patch(
                &name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&child),
            )
            .await?;
        self.applied
            .entry(K::kind(&()).to_string())
            .or_default()
            .insert(name);
        Ok(applied)
    }

    /// Deletes the children of kind `K` this parent owns and labels but did not apply in this
    /// reconcile (e.g. a StatefulSet of a role that no longer exists).
    pub async fn prune<K>(&self) -> Result<()>
    where
        K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
            + Clone
            + serde::de::DeserializeOwned
            + std::fmt::Debug,
    {
        let api: Api<K> = Api::namespaced(self.client.clone(), &self.namespace);
        let selector = format!("{}={}", self.label.0, self.label.1);
        let keep = self.applied.get(K::kind(&()).as_ref());
        for object in api
            .list(&ListParams::default().labels(&selector))
            .await?
            .items
        {
            let owned = object
                .owner_references()
                .iter()
                .any(|o| o.uid == self.owner.uid);
            let name = object.name_any();
            if owned && !keep.is_some_and(|k| k.contains(&name)) {
                info!(kind = %K::kind(&()), %name, owner = %self.owner.name, "deleting a child its owner no longer needs");
                api.delete(&name, &DeleteParams::default()).await?;
            }
        }
        Ok(())
    }
}
