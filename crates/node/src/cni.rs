//! Pod networking: k0x's built-in bridge network, or nothing when another provider is chosen.
//!
//! The bridge network (bridge + host-local IPAM + portmap, with containerd adding loopback) is
//! what lets a single node run pods with no extra steps. It is written as a containerd
//! `conf_template`: the kubelet tells containerd the node's pod CIDR (allocated by the
//! controller-manager from `spec.network.podCIDR`), and containerd renders the final conflist,
//! so every node uses its own slice. Pod traffic between nodes needs routes the bridge plugin
//! does not set up; multi-node clusters choose a real provider.

use std::fmt;
use std::path::PathBuf;

use k0x_config::schema::NetworkProvider;
use serde_json::json;

use crate::{NodeContext, paths};

/// The bridge device the built-in network creates.
pub const BRIDGE_NAME: &str = "k0x-br0";
/// The CNI network name of the built-in network.
pub const NETWORK_NAME: &str = "k0x-bridge";
/// The placeholder containerd replaces with the node's pod CIDR.
pub const POD_CIDR_PLACEHOLDER: &str = "{{.PodCIDR}}";

/// What k0x does about pod networking on this node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CniSetup {
    /// The built-in bridge network, rendered by containerd from this template.
    Bridge { template: PathBuf },
    /// Another provider installs its own configuration; k0x writes none.
    External { provider: &'static str },
}

impl fmt::Display for CniSetup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Bridge { template } => write!(
                f,
                "built-in bridge network {NETWORK_NAME} (template {})",
                template.display()
            ),
            Self::External { provider } => write!(
                f,
                "network provider {provider}: k0x writes no CNI configuration; install the \
                 provider's manifests (pods stay ContainerCreating until it is running)"
            ),
        }
    }
}

/// The pod-network plan for this node, from `spec.network.provider`.
pub fn cni_setup(ctx: &NodeContext) -> CniSetup {
    match ctx.config.spec.network.provider {
        NetworkProvider::Bridge => CniSetup::Bridge {
            template: paths::cni_bridge_template(&ctx.data),
        },
        NetworkProvider::Calico => CniSetup::External { provider: "calico" },
        NetworkProvider::Kuberouter => CniSetup::External {
            provider: "kuberouter",
        },
        NetworkProvider::Custom => CniSetup::External { provider: "custom" },
    }
}

/// The CNI plugins the built-in network needs (`loopback` is used by containerd itself).
pub const BRIDGE_PLUGINS: &[&str] = &["bridge", "host-local", "portmap", "loopback"];

/// The plugins missing from `ctx.node.cni_bin_dir` for the chosen setup (none for external
/// providers, which ship their own).
pub fn missing_cni_plugins(ctx: &NodeContext) -> Vec<&'static str> {
    match cni_setup(ctx) {
        CniSetup::Bridge { .. } => BRIDGE_PLUGINS
            .iter()
            .copied()
            .filter(|p| !ctx.node.cni_bin_dir.join(p).is_file())
            .collect(),
        CniSetup::External { .. } => Vec::new(),
    }
}

/// The bridge conflist for `subnet` (a CIDR, or [`POD_CIDR_PLACEHOLDER`] for the template), on
/// bridge device `bridge`, with host-local allocations kept in `ipam_dir`.
pub fn bridge_conflist(bridge: &str, subnet: &str, ipam_dir: &std::path::Path) -> String {
    let conflist = json!({
        "cniVersion": "1.0.0",
        "name": NETWORK_NAME,
        "plugins": [
            {
                "type": "bridge",
                "bridge": bridge,
                "isGateway": true,
                "ipMasq": true,
                "hairpinMode": true,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{ "subnet": subnet }]],
                    "routes": [{ "dst": "0.0.0.0/0" }],
                    "dataDir": ipam_dir,
                }
            },
            { "type": "portmap", "capabilities": { "portMappings": true } }
        ]
    });
    let mut text = serde_json::to_string_pretty(&conflist).unwrap_or_default();
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::context;

    #[test]
    fn template_has_placeholder_and_plugins() {
        let text = bridge_conflist(BRIDGE_NAME, POD_CIDR_PLACEHOLDER, "/run/k0x/cni".as_ref());
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        let types: Vec<_> = value["plugins"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["type"].as_str().unwrap())
            .collect();
        assert_eq!(types, ["bridge", "portmap"]);
        assert_eq!(
            value["plugins"][0]["ipam"]["ranges"][0][0]["subnet"],
            "{{.PodCIDR}}"
        );
    }

    #[test]
    fn missing_plugins_are_listed() {
        let mut ctx = context();
        ctx.node.cni_bin_dir = "/nonexistent".into();
        assert_eq!(missing_cni_plugins(&ctx), BRIDGE_PLUGINS);
        ctx.config.spec.network.provider = NetworkProvider::Custom;
        assert!(missing_cni_plugins(&ctx).is_empty());
    }

    #[test]
    fn other_providers_write_nothing_and_say_so() {
        let mut ctx = context();
        ctx.config.spec.network.provider = NetworkProvider::Calico;
        let setup = cni_setup(&ctx);
        assert_eq!(setup, CniSetup::External { provider: "calico" });
        assert!(setup.to_string().contains("writes no CNI configuration"));
    }
}
