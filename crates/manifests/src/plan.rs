//! The pure decisions of a round: which object a manifest is, the body sent for it, the order of
//! applies, and which live objects a prune deletes.

use std::collections::BTreeSet;
use std::fmt;

use serde_json::Value;

use crate::discovery::Resource;

/// The label every applied object carries; its value is the stack's name.
pub const STACK_LABEL: &str = "k0x.io/stack";
/// Where a namespaced object without a namespace goes, as with kubectl.
pub const DEFAULT_NAMESPACE: &str = "default";

/// An object's identity whatever API version serves it: prune compares these.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectKey {
    pub group: String,
    pub kind: String,
    /// `None` for cluster-scoped objects.
    pub namespace: Option<String>,
    pub name: String,
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.namespace {
            Some(namespace) => write!(f, "{} {namespace}/{}", self.kind, self.name),
            None => write!(f, "{} {}", self.kind, self.name),
        }
    }
}

/// A kind as manifests name it (`apps/v1` + `Deployment`); what a stack's record lists.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KindRef {
    pub api_version: String,
    pub kind: String,
}

impl KindRef {
    /// The kind of a parsed object (which has both fields, see the parser).
    pub fn of(object: &Value) -> Self {
        let field = |name: &str| object[name].as_str().unwrap_or_default().to_owned();
        Self {
            api_version: field("apiVersion"),
            kind: field("kind"),
        }
    }

    /// The API group: empty for the core group (`v1`).
    pub fn group(&self) -> &str {
        self.api_version
            .rsplit_once('/')
            .map_or("", |(group, _)| group)
    }

    /// Reads back [`KindRef`]'s display form, `apps/v1 Deployment`.
    pub fn parse(text: &str) -> Option<Self> {
        let (api_version, kind) = text.trim().split_once(' ')?;
        Some(Self {
            api_version: api_version.to_owned(),
            kind: kind.trim().to_owned(),
        })
    }
}

impl fmt::Display for KindRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.api_version, self.kind)
    }
}

/// One object ready to apply: who it is, where it goes and what is sent.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    pub key: ObjectKey,
    pub kind: KindRef,
    pub path: String,
    pub body: Value,
}

/// The apply of `object` at `resource`: labelled with the stack, a namespaced object without a
/// namespace put in `default`, and a cluster-scoped one stripped of a namespace it cannot have.
pub fn target(object: &Value, resource: &Resource, stack: &str) -> Target {
    let mut body = object.clone();
    let metadata = body["metadata"]
        .as_object_mut()
        .expect("the parser checked metadata.name");
    let name = metadata["name"].as_str().unwrap_or_default().to_owned();
    let namespace = if resource.namespaced {
        let given = metadata.get("namespace").and_then(Value::as_str);
        let namespace = given.unwrap_or(DEFAULT_NAMESPACE).to_owned();
        metadata.insert("namespace".to_owned(), namespace.clone().into());
        Some(namespace)
    } else {
        metadata.remove("namespace");
        None
    };
    let labels = metadata
        .entry("labels")
        .or_insert_with(|| Value::Object(Default::default()));
    if !labels.is_object() {
        *labels = Value::Object(Default::default());
    }
    labels[STACK_LABEL] = stack.into();
    let kind = KindRef::of(object);
    Target {
        path: resource.object_path(namespace.as_deref(), &name),
        key: ObjectKey {
            group: kind.group().to_owned(),
            kind: kind.kind.clone(),
            namespace,
            name,
        },
        kind,
        body,
    }
}

/// Namespaces and CustomResourceDefinitions come first: the objects in them, and the resources
/// they define, need them to exist.
fn comes_first(group: &str, kind: &str) -> bool {
    matches!(
        (group, kind),
        ("", "Namespace") | ("apiextensions.k8s.io", "CustomResourceDefinition")
    )
}

/// Sorts targets into apply order, keeping the file order otherwise.
pub fn apply_order(targets: &mut [Target]) {
    targets.sort_by_key(|target| !comes_first(&target.key.group, &target.key.kind));
}

/// The live objects of a stack that its files no longer hold, in delete order: the contents
/// first, Namespaces and CustomResourceDefinitions last (deleting those deletes what they hold).
pub fn prune_set(live: Vec<ObjectKey>, desired: &BTreeSet<ObjectKey>) -> Vec<ObjectKey> {
    let mut doomed: Vec<ObjectKey> = live
        .into_iter()
        .filter(|key| !desired.contains(key))
        .collect();
    doomed.sort_by_key(|key| comes_first(&key.group, &key.kind));
    doomed
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn resource(kind: &str, plural: &str, namespaced: bool) -> Resource {
        Resource {
            api_version: "v1".to_owned(),
            kind: kind.to_owned(),
            plural: plural.to_owned(),
            namespaced,
        }
    }

    fn key(group: &str, kind: &str, namespace: Option<&str>, name: &str) -> ObjectKey {
        ObjectKey {
            group: group.to_owned(),
            kind: kind.to_owned(),
            namespace: namespace.map(str::to_owned),
            name: name.to_owned(),
        }
    }

    #[test]
    fn a_namespaced_object_without_namespace_goes_to_default_with_the_stack_label() {
        let object = json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "cm", "labels": {"app": "x"}}});
        let target = target(&object, &resource("ConfigMap", "configmaps", true), "apps");
        assert_eq!(target.path, "/api/v1/namespaces/default/configmaps/cm");
        assert_eq!(target.key, key("", "ConfigMap", Some("default"), "cm"));
        assert_eq!(target.body["metadata"]["namespace"], "default");
        assert_eq!(
            target.body["metadata"]["labels"],
            json!({"app": "x", "k0x.io/stack": "apps"})
        );
    }

    #[test]
    fn a_cluster_scoped_object_loses_a_namespace() {
        let object = json!({"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": "team", "namespace": "ignored"}});
        let target = target(&object, &resource("Namespace", "namespaces", false), "apps");
        assert_eq!(target.path, "/api/v1/namespaces/team");
        assert_eq!(target.key.namespace, None);
        assert!(target.body["metadata"].get("namespace").is_none());
    }

    #[test]
    fn namespaces_and_crds_are_applied_first_and_pruned_last() {
        let crd_resource = Resource {
            api_version: "apiextensions.k8s.io/v1".to_owned(),
            ..resource(
                "CustomResourceDefinition",
                "customresourcedefinitions",
                false,
            )
        };
        let object = |kind: &str, name: &str| json!({"apiVersion": "v1", "kind": kind, "metadata": {"name": name}});
        let crd = json!({"apiVersion": "apiextensions.k8s.io/v1",
            "kind": "CustomResourceDefinition", "metadata": {"name": "things.example.com"}});
        let mut targets = vec![
            target(
                &object("ConfigMap", "a"),
                &resource("ConfigMap", "configmaps", true),
                "s",
            ),
            target(
                &object("Namespace", "ns"),
                &resource("Namespace", "namespaces", false),
                "s",
            ),
            target(
                &object("Secret", "b"),
                &resource("Secret", "secrets", true),
                "s",
            ),
            target(&crd, &crd_resource, "s"),
        ];
        apply_order(&mut targets);
        let order: Vec<_> = targets.iter().map(|t| t.key.name.as_str()).collect();
        assert_eq!(order, ["ns", "things.example.com", "a", "b"]);

        let live = targets.iter().map(|t| t.key.clone()).collect();
        let pruned = prune_set(live, &BTreeSet::new());
        let order: Vec<_> = pruned.iter().map(|k| k.name.as_str()).collect();
        assert_eq!(order, ["a", "b", "ns", "things.example.com"]);
    }

    #[test]
    fn prune_deletes_only_what_the_files_no_longer_hold() {
        let kept = key("", "ConfigMap", Some("default"), "kept");
        let other_namespace = key("", "ConfigMap", Some("team"), "kept");
        let gone = key("apps", "Deployment", Some("default"), "gone");
        let desired = BTreeSet::from([kept.clone()]);
        let pruned = prune_set(vec![kept, other_namespace.clone(), gone.clone()], &desired);
        assert_eq!(pruned, [other_namespace, gone]);
    }

    #[test]
    fn kind_refs_round_trip_and_know_their_group() {
        let kind = KindRef::parse("apps/v1 Deployment").unwrap();
        assert_eq!(kind.group(), "apps");
        assert_eq!(KindRef::parse(&kind.to_string()), Some(kind));
        assert_eq!(KindRef::parse("v1 ConfigMap").unwrap().group(), "");
        assert_eq!(KindRef::parse("nonsense"), None);
    }
}
