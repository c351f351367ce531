//! The CRD manifests, generated from the API types. `make crds` writes them into `crds/` and
//! into the Helm chart's `charts/exactly/crds/`; a test fails when either differs from what the
//! types generate. They carry `helm.sh/resource-policy: keep`: uninstalling the chart must not
//! delete the CRDs, which would delete every resource of the kind with them.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

use crate::api::{ConsumerGroup, KafkaCluster, Pipeline, Producer, PulsarCluster, Topic};

/// The directories the CRDs are written to, relative to the repository root.
pub const OUT_DIRS: [&str; 2] = ["crds", "charts/exactly/crds"];

/// Every CRD the operator serves.
pub fn all() -> Vec<CustomResourceDefinition> {
    let mut crds = vec![
        KafkaCluster::crd(),
        PulsarCluster::crd(),
        Topic::crd(),
        Producer::crd(),
        ConsumerGroup::crd(),
        Pipeline::crd(),
    ];
    for crd in &mut crds {
        crd.metadata
            .annotations
            .get_or_insert_with(Default::default)
            .insert("helm.sh/resource-policy".into(), "keep".into());
    }
    crds
}

/// File name for a CRD: `<plural>.<group>.yaml`, as `kubectl get crd` names it.
pub fn file_name(crd: &CustomResourceDefinition) -> String {
    format!("{}.yaml", crd.metadata.name.clone().unwrap_or_default())
}

/// The YAML document for one CRD, with a header saying it is generated.
pub fn render(crd: &CustomResourceDefinition) -> Result<String, serde_norway::Error> {
    let body = serde_norway::to_string(crd)?;
    Ok(format!(
        "# Generated from the Rust types by `make crds`. Do not edit.\n{body}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn committed_crds_match_the_types() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let mut stale = Vec::new();
        for dir in OUT_DIRS {
            for crd in all() {
                let path = root.join(dir).join(file_name(&crd));
                let want = render(&crd).unwrap_or_else(|e| panic!("cannot render {path:?}: {e}"));
                let have = std::fs::read_to_string(&path).unwrap_or_default();
                if have != want {
                    stale.push(path.display().to_string());
                }
            }
        }
        assert!(
            stale.is_empty(),
            "stale CRD files {stale:?}: run `make crds` and commit the result"
        );
    }

    #[test]
    fn every_crd_is_in_the_exactly_category() {
        for crd in all() {
            let categories = crd.spec.names.categories.clone().unwrap_or_default();
            assert!(
                categories.contains(&"exactly".to_string()),
                "{:?}",
                crd.metadata.name
            );
        }
    }

    /// Paths of properties without a description under `schema` (`kubectl explain` would show
    /// nothing for them).
    fn undocumented(schema: &serde_json::Value, path: &str, out: &mut Vec<String>) {
        if let Some(properties) = schema.get("properties").and_then(|p| p.as_object()) {
            for (name, property) in properties {
                let here = format!("{path}.{name}");
                let documented = property
                    .get("description")
                    .and_then(|d| d.as_str())
                    .is_some_and(|d| !d.trim().is_empty());
                // metadata is Kubernetes' own; apiVersion and kind are documented by it.
                if !documented && !["metadata", "apiVersion", "kind"].contains(&name.as_str()) {
                    out.push(here.clone());
                }
                undocumented(property, &here, out);
            }
        }
        if let Some(items) = schema.get("items") {
            undocumented(items, &format!("{path}[]"), out);
        }
    }

    #[test]
    fn every_field_of_every_crd_has_a_description() {
        let mut missing = Vec::new();
        for crd in all() {
            for version in &crd.spec.versions {
                let schema = version
                    .schema
                    .as_ref()
                    .and_then(|s| s.open_api_v3_schema.as_ref())
                    .map(|s| serde_json::to_value(s).unwrap_or_default())
                    .unwrap_or_default();
                undocumented(&schema, &crd.spec.names.kind, &mut missing);
            }
        }
        assert!(
            missing.is_empty(),
            "fields without a doc comment: {missing:#?}"
        );
    }
}
