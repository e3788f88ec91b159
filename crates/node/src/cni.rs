//! Pod networking: the bridge network on every node, joined across nodes by flannel (the
//! default), or left to the user (`custom`).
//!
//! Every node's pods sit on one bridge (bridge + host-local IPAM + portmap, with containerd
//! adding loopback), each node on its own slice of `spec.network.podCIDR` (allocated by the
//! controller-manager). With `flannel`, k0x renders the conflist from flannel's lease file, as
//! the flannel CNI plugin would: the node's subnet, the vxlan MTU, and no masquerading by the
//! bridge (flannel masquerades only what leaves the pod network). With `bridge` (one node), the
//! conflist is a containerd `conf_template` containerd fills in with the node's pod CIDR once
//! the kubelet learns it; nothing routes pod traffic between nodes then.

use std::fmt;
use std::path::{Path, PathBuf};

use k0x_config::schema::NetworkProvider;
use serde_json::json;

use crate::{NodeContext, NodeError, RenderedFile, paths};

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
    /// flannel: k0x renders `conflist` from the lease flannel writes to `lease`.
    Flannel { lease: PathBuf, conflist: PathBuf },
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
            Self::Flannel { lease, .. } => write!(
                f,
                "flannel vxlan network; the CNI configuration follows its lease {}",
                lease.display()
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
        NetworkProvider::Flannel => CniSetup::Flannel {
            lease: paths::flannel_subnet_file(&ctx.run),
            conflist: paths::cni_flannel_conflist(&ctx.data),
        },
        NetworkProvider::Custom => CniSetup::External { provider: "custom" },
    }
}

/// The name of the conflist containerd renders from a `conf_template`.
const CONTAINERD_RENDERED: &str = "10-containerd-net.conflist";

/// The conflists in the CNI directory that belong to another setup than this node's.
pub fn stale_conflists(ctx: &NodeContext) -> Vec<PathBuf> {
    let rendered_by_containerd = paths::cni_conf_dir(&ctx.data).join(CONTAINERD_RENDERED);
    let from_flannel = paths::cni_flannel_conflist(&ctx.data);
    match cni_setup(ctx) {
        CniSetup::Bridge { .. } => vec![from_flannel],
        CniSetup::Flannel { .. } => vec![rendered_by_containerd],
        CniSetup::External { .. } => vec![from_flannel, rendered_by_containerd],
    }
}

/// The CNI plugins the built-in network needs (`loopback` is used by containerd itself).
pub const BRIDGE_PLUGINS: &[&str] = &["bridge", "host-local", "portmap", "loopback"];

/// The plugins missing from `ctx.node.cni_bin_dir` for the chosen setup (none for external
/// providers, which ship their own).
pub fn missing_cni_plugins(ctx: &NodeContext) -> Vec<&'static str> {
    match cni_setup(ctx) {
        CniSetup::Bridge { .. } | CniSetup::Flannel { .. } => BRIDGE_PLUGINS
            .iter()
            .copied()
            .filter(|p| !ctx.node.cni_bin_dir.join(p).is_file())
            .collect(),
        CniSetup::External { .. } => Vec::new(),
    }
}

/// The node's share of the pod network, as the bridge plugin needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BridgeNetwork {
    /// A CIDR, or [`POD_CIDR_PLACEHOLDER`] for the template.
    pub subnet: String,
    /// The pods' MTU; `None` takes the bridge plugin's default (the host's).
    pub mtu: Option<u32>,
    /// Whether the bridge plugin masquerades what leaves the node's subnet.
    pub ip_masq: bool,
}

/// The bridge conflist for `network` on bridge device [`BRIDGE_NAME`], with host-local
/// allocations kept in `ipam_dir`.
pub fn bridge_conflist(network: &BridgeNetwork, ipam_dir: &Path) -> String {
    let mut bridge = json!({
        "type": "bridge",
        "bridge": BRIDGE_NAME,
        "isGateway": true,
        "ipMasq": network.ip_masq,
        "hairpinMode": true,
        "ipam": {
            "type": "host-local",
            "ranges": [[{ "subnet": network.subnet }]],
            "routes": [{ "dst": "0.0.0.0/0" }],
            "dataDir": ipam_dir,
        }
    });
    if let Some(mtu) = network.mtu {
        bridge["mtu"] = json!(mtu);
    }
    let conflist = json!({
        "cniVersion": "1.0.0",
        "name": NETWORK_NAME,
        "plugins": [
            bridge,
            { "type": "portmap", "capabilities": { "portMappings": true } }
        ]
    });
    format!("{conflist:#}\n")
}

/// A flannel lease file that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("flannel's lease {path}: {why}")]
pub struct LeaseError {
    path: String,
    why: String,
}

/// The node's bridge network from flannel's lease (`FLANNEL_SUBNET=10.244.1.1/24`,
/// `FLANNEL_MTU=1450`, `FLANNEL_IPMASQ=true`), as the flannel CNI plugin reads it.
pub fn network_from_lease(path: &Path, text: &str) -> Result<BridgeNetwork, LeaseError> {
    let bad = |why: String| LeaseError {
        path: path.display().to_string(),
        why,
    };
    let value = |key: &str| {
        text.lines()
            .filter_map(|line| line.trim().split_once('='))
            .find(|(name, _)| *name == key)
            .map(|(_, value)| value.trim())
            .ok_or_else(|| bad(format!("no {key}")))
    };
    let subnet = value("FLANNEL_SUBNET")?;
    let subnet: ipnet::IpNet = subnet
        .parse()
        .map_err(|_| bad(format!("FLANNEL_SUBNET {subnet:?} is not a CIDR")))?;
    let mtu = value("FLANNEL_MTU")?;
    let mtu = mtu
        .parse()
        .map_err(|_| bad(format!("FLANNEL_MTU {mtu:?} is not a number")))?;
    Ok(BridgeNetwork {
        subnet: subnet.trunc().to_string(),
        mtu: Some(mtu),
        ip_masq: value("FLANNEL_IPMASQ").is_ok_and(|masq| masq != "true"),
    })
}

/// Renders the conflist at `conflist` from flannel's lease at `lease`, if the lease exists and
/// the conflist says something else; returns whether it wrote. containerd reloads the CNI
/// configuration when the file changes.
pub fn sync_flannel_conflist(
    lease: &Path,
    conflist: &Path,
    ipam_dir: &Path,
) -> Result<bool, NodeError> {
    let text = match std::fs::read_to_string(lease) {
        Ok(text) => text,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(err) => return Err(NodeError::read(lease)(err)),
    };
    let network = network_from_lease(lease, &text)?;
    let wanted = bridge_conflist(&network, ipam_dir);
    if std::fs::read_to_string(conflist).is_ok_and(|current| current == wanted) {
        return Ok(false);
    }
    RenderedFile::private(conflist, wanted).write()?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::context;

    fn parse(text: &str) -> serde_json::Value {
        serde_json::from_str(text).unwrap()
    }

    #[test]
    fn template_has_placeholder_and_plugins() {
        let network = BridgeNetwork {
            subnet: POD_CIDR_PLACEHOLDER.to_owned(),
            mtu: None,
            ip_masq: true,
        };
        let value = parse(&bridge_conflist(&network, "/run/k0x/cni".as_ref()));
        let types: Vec<_> = value["plugins"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["type"].as_str().unwrap())
            .collect();
        assert_eq!(types, ["bridge", "portmap"]);
        let bridge = &value["plugins"][0];
        assert_eq!(bridge["ipam"]["ranges"][0][0]["subnet"], "{{.PodCIDR}}");
        assert_eq!(bridge["ipMasq"], true);
        assert!(bridge.get("mtu").is_none());
    }

    const LEASE: &str = "FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.1.1/24\n\
                         FLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n";

    #[test]
    fn a_flannel_lease_gives_the_subnet_the_mtu_and_no_bridge_masquerading() {
        let network = network_from_lease("subnet.env".as_ref(), LEASE).unwrap();
        assert_eq!(
            network,
            BridgeNetwork {
                subnet: "10.244.1.0/24".into(),
                mtu: Some(1450),
                ip_masq: false,
            }
        );
        let value = parse(&bridge_conflist(&network, "/run/k0x/cni".as_ref()));
        assert_eq!(value["plugins"][0]["mtu"], 1450);
    }

    #[test]
    fn a_bad_lease_names_the_file_and_the_field() {
        let err = network_from_lease("/run/flannel/subnet.env".as_ref(), "FLANNEL_MTU=1450\n")
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "flannel's lease /run/flannel/subnet.env: no FLANNEL_SUBNET"
        );
        let text = LEASE.replace("1450", "big");
        let err = network_from_lease("subnet.env".as_ref(), &text).unwrap_err();
        assert!(
            err.to_string()
                .contains("FLANNEL_MTU \"big\" is not a number")
        );
    }

    #[test]
    fn the_conflist_follows_the_lease_and_is_written_only_on_change() {
        let dir = tempfile::tempdir().unwrap();
        let (lease, conflist) = (
            dir.path().join("subnet.env"),
            dir.path().join("net.conflist"),
        );
        let ipam = dir.path().join("ipam");
        assert!(!sync_flannel_conflist(&lease, &conflist, &ipam).unwrap());
        assert!(!conflist.exists());
        std::fs::write(&lease, LEASE).unwrap();
        assert!(sync_flannel_conflist(&lease, &conflist, &ipam).unwrap());
        assert!(!sync_flannel_conflist(&lease, &conflist, &ipam).unwrap());
        std::fs::write(&lease, LEASE.replace("1450", "1400")).unwrap();
        assert!(sync_flannel_conflist(&lease, &conflist, &ipam).unwrap());
        let value = parse(&std::fs::read_to_string(&conflist).unwrap());
        assert_eq!(value["plugins"][0]["mtu"], 1400);
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
    fn each_setup_removes_the_conflists_of_the_others() {
        let mut ctx = context();
        let conf = paths::cni_conf_dir(&ctx.data);
        assert_eq!(stale_conflists(&ctx), [conf.join(CONTAINERD_RENDERED)]);
        ctx.config.spec.network.provider = NetworkProvider::Bridge;
        assert_eq!(
            stale_conflists(&ctx),
            [paths::cni_flannel_conflist(&ctx.data)]
        );
    }

    #[test]
    fn custom_writes_nothing_and_says_so() {
        let mut ctx = context();
        ctx.config.spec.network.provider = NetworkProvider::Custom;
        let setup = cni_setup(&ctx);
        assert_eq!(setup, CniSetup::External { provider: "custom" });
        assert!(setup.to_string().contains("writes no CNI configuration"));
    }
}
