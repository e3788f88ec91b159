//! Reading a k0s configuration file (`apiVersion: k0s.k0sproject.io/v1beta1`).
//!
//! k0x shares k0s's field names, so most of a k0s file means the same thing here. k0s has
//! sections k0x does not implement (konnectivity, telemetry, helm extensions, kube-proxy
//! tuning...). The defaults `k0s config create` prints contain several of them, and people
//! migrating should not have to delete them first, so in a k0s file they are accepted, each one
//! reported as a warning, and then ignored. In a k0x file they remain unknown fields (errors).

use crate::tree::{FieldPath, Node, Pos, Value};

/// k0s settings k0x does not implement. Each is a field path in a k0s `ClusterConfig`.
pub const K0S_ONLY_FIELDS: &[&str] = &[
    "spec.api.externalAddress",
    "spec.api.tunneledNetworkingMode",
    "spec.api.onlyBindToAddress",
    "spec.api.ca",
    "spec.extensions",
    "spec.installConfig",
    "spec.konnectivity",
    "spec.telemetry",
    "spec.featureGates",
    "spec.podSecurityPolicy",
    "spec.network.calico",
    "spec.network.kuberouter",
    "spec.network.kubeProxy",
    "spec.network.nodeLocalLoadBalancing",
    "spec.network.controlPlaneLoadBalancing",
    "spec.network.dualStack",
    "spec.storage.kine",
    "spec.storage.etcd.externalCluster",
    "spec.storage.etcd.ca",
    "spec.images.konnectivity",
    "spec.images.kubeproxy",
    "spec.images.calico",
    "spec.images.kuberouter",
    "spec.images.pushgateway",
    "spec.images.envoyproxy",
    "spec.images.repository",
    "spec.images.default_pull_policy",
];

/// The field naming k0s's pod network, and the providers k0s has that k0x does not: a k0s file
/// naming one gets k0x's default (flannel) and a warning.
const PROVIDER_FIELD: &str = "spec.network.provider";
const K0S_ONLY_PROVIDERS: &[&str] = &["kuberouter", "calico"];

/// k0s images k0x uses too; k0s writes them as `{image, version}`, k0x as one reference.
const SHARED_IMAGES: &[&str] = &[
    "spec.images.pause",
    "spec.images.coredns",
    "spec.images.metricsserver",
];

/// An ignored k0s setting: its path and where it was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ignored {
    pub path: FieldPath,
    pub pos: Pos,
}

/// Rewrites a k0s document into the k0x shape, in place, and returns what was ignored.
///
/// Sections that are empty (`null`, `{}`, `[]`) carry no setting, so dropping them is not worth
/// a warning.
pub fn translate(root: &mut Node) -> Vec<Ignored> {
    let mut ignored = Vec::new();
    for field in K0S_ONLY_FIELDS {
        let path = FieldPath::parse(field);
        let Some(node) = root.find(&path) else {
            continue;
        };
        if !node.is_empty() {
            let pos = root.key_pos(&path).unwrap_or(node.pos);
            ignored.push(Ignored {
                path: path.clone(),
                pos,
            });
        }
        root.remove(&path);
    }
    let provider = FieldPath::parse(PROVIDER_FIELD);
    if let Some(node) = root.find(&provider)
        && matches!(&node.value, Value::Str(name) if K0S_ONLY_PROVIDERS.contains(&name.as_str()))
    {
        let pos = root.key_pos(&provider).unwrap_or(node.pos);
        ignored.push(Ignored {
            path: provider.clone(),
            pos,
        });
        root.remove(&provider);
    }
    for field in SHARED_IMAGES {
        let path = FieldPath::parse(field);
        if let Some(reference) = root.find(&path).and_then(image_reference) {
            root.replace(&path, Value::Str(reference));
        }
    }
    ignored
}

/// `{image: registry.k8s.io/pause, version: "3.10"}` becomes `registry.k8s.io/pause:3.10`.
fn image_reference(node: &Node) -> Option<String> {
    let text = |key: &str| match &node.get(key)?.value {
        Value::Str(s) => Some(s.clone()),
        _ => None,
    };
    node.as_map()?;
    let image = text("image")?;
    Some(match text("version") {
        Some(version) if version.starts_with("sha256:") => format!("{image}@{version}"),
        Some(version) => format!("{image}:{version}"),
        None => image,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tree::parse;

    #[test]
    fn ignores_k0s_only_sections_and_reports_non_empty_ones() {
        let mut root = parse(
            "spec:\n  telemetry:\n    enabled: true\n  konnectivity: {}\n  network:\n    podCIDR: 10.0.0.0/16\n",
        )
        .unwrap();
        let ignored = translate(&mut root);
        assert_eq!(ignored.len(), 1);
        assert_eq!(ignored[0].path.to_string(), "spec.telemetry");
        assert_eq!(ignored[0].pos, Pos { line: 2, column: 3 });
        assert!(root.get("spec").unwrap().get("konnectivity").is_none());
        assert!(root.get("spec").unwrap().get("network").is_some());
    }

    #[test]
    fn k0s_only_providers_give_way_to_the_default() {
        let mut root = parse("spec:\n  network:\n    provider: kuberouter\n").unwrap();
        let ignored = translate(&mut root);
        assert_eq!(ignored[0].path.to_string(), "spec.network.provider");
        let network = root.get("spec").unwrap().get("network").unwrap();
        assert!(network.get("provider").is_none());
        let mut root = parse("spec:\n  network:\n    provider: custom\n").unwrap();
        assert!(translate(&mut root).is_empty());
    }

    #[test]
    fn k0s_image_objects_become_references() {
        let mut root = parse(
            "spec:\n  images:\n    pause:\n      image: registry.k8s.io/pause\n      version: \"3.9\"\n    coredns: {image: c/d}\n",
        )
        .unwrap();
        translate(&mut root);
        let images = root.get("spec").unwrap().get("images").unwrap();
        assert_eq!(
            images.get("pause").unwrap().value,
            Value::Str("registry.k8s.io/pause:3.9".into())
        );
        assert_eq!(
            images.get("coredns").unwrap().value,
            Value::Str("c/d".into())
        );
    }
}
