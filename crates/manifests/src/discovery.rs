//! Which resource (URL path segment) serves a kind, and whether it is namespaced, learned from
//! the apiserver's discovery documents.
//!
//! A manifest names its API version, so only that version's document is fetched (`/api/v1` or
//! `/apis/<group>/<version>`), not the whole `/apis` tree; a version is fetched again when a kind
//! is not (yet) in it, which is how a custom resource whose CustomResourceDefinition the same
//! stack applies becomes known a round later.

use std::collections::HashMap;

use serde_json::Value;

use crate::api::{ApiClient, ApiError, segment};
use crate::plan::KindRef;

/// A kind's resource in one API version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resource {
    pub api_version: String,
    pub kind: String,
    /// The plural name in URLs (`configmaps`).
    pub plural: String,
    pub namespaced: bool,
}

impl Resource {
    /// The collection: `/api/v1/namespaces/<ns>/configmaps`, or across every namespace (and for
    /// cluster-scoped resources) `/api/v1/configmaps`.
    pub fn collection_path(&self, namespace: Option<&str>) -> String {
        let base = version_path(&self.api_version);
        match namespace.filter(|_| self.namespaced) {
            Some(namespace) => format!("{base}/namespaces/{}/{}", segment(namespace), self.plural),
            None => format!("{base}/{}", self.plural),
        }
    }

    pub fn object_path(&self, namespace: Option<&str>, name: &str) -> String {
        format!("{}/{}", self.collection_path(namespace), segment(name))
    }
}

/// The discovery document path of an API version: the core group lives under `/api`.
fn version_path(api_version: &str) -> String {
    if api_version.contains('/') {
        format!("/apis/{api_version}")
    } else {
        format!("/api/{api_version}")
    }
}

/// The resources of the API versions looked at so far.
#[derive(Debug, Default)]
pub struct Discovery {
    versions: HashMap<String, Vec<Resource>>,
}

impl Discovery {
    /// The resource serving `kind`, asking the apiserver when it is not known yet.
    pub async fn resolve(&mut self, api: &ApiClient, kind: &KindRef) -> Result<Resource, ApiError> {
        if let Some(resource) = self.lookup(kind) {
            return Ok(resource);
        }
        self.refresh(api, &kind.api_version).await?;
        self.lookup(kind).ok_or_else(|| ApiError::UnknownKind {
            api_version: kind.api_version.clone(),
            kind: kind.kind.clone(),
        })
    }

    /// Forgets what an API version serves, so the next lookup asks again (an apply answered
    /// 404: the resource may be gone, as when its CustomResourceDefinition was deleted).
    pub fn forget(&mut self, api_version: &str) {
        self.versions.remove(api_version);
    }

    fn lookup(&self, kind: &KindRef) -> Option<Resource> {
        self.versions
            .get(&kind.api_version)?
            .iter()
            .find(|resource| resource.kind == kind.kind)
            .cloned()
    }

    async fn refresh(&mut self, api: &ApiClient, api_version: &str) -> Result<(), ApiError> {
        let resources = match api.get(&version_path(api_version)).await {
            Ok(document) => resources_of(api_version, &document),
            Err(err) if err.is_not_found() => Vec::new(),
            Err(err) => return Err(err),
        };
        self.versions.insert(api_version.to_owned(), resources);
        Ok(())
    }
}

/// The resources of an `APIResourceList`, without subresources (`pods/log`).
fn resources_of(api_version: &str, document: &Value) -> Vec<Resource> {
    let Some(list) = document["resources"].as_array() else {
        return Vec::new();
    };
    list.iter()
        .filter_map(|entry| {
            let plural = entry["name"].as_str()?;
            let kind = entry["kind"].as_str()?;
            (!plural.contains('/')).then(|| Resource {
                api_version: api_version.to_owned(),
                kind: kind.to_owned(),
                plural: plural.to_owned(),
                namespaced: entry["namespaced"].as_bool().unwrap_or(false),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn resources_skip_subresources() {
        let document = json!({"groupVersion": "apps/v1", "resources": [
            {"name": "deployments", "kind": "Deployment", "namespaced": true},
            {"name": "deployments/scale", "kind": "Scale", "namespaced": true},
        ]});
        let resources = resources_of("apps/v1", &document);
        assert_eq!(resources.len(), 1);
        let deployments = &resources[0];
        assert_eq!(
            deployments.object_path(Some("team"), "web"),
            "/apis/apps/v1/namespaces/team/deployments/web"
        );
        assert_eq!(
            deployments.collection_path(None),
            "/apis/apps/v1/deployments"
        );
    }

    #[test]
    fn core_and_cluster_scoped_paths() {
        let namespaces = Resource {
            api_version: "v1".to_owned(),
            kind: "Namespace".to_owned(),
            plural: "namespaces".to_owned(),
            namespaced: false,
        };
        assert_eq!(
            namespaces.object_path(Some("x"), "team"),
            "/api/v1/namespaces/team"
        );
    }
}
