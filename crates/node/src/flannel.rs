//! flannel: the default pod network across nodes (vxlan over the nodes' own addresses).
//!
//! flannel runs as a supervised process on every worker, as k3s runs it inside its agent: it
//! creates the `flannel.1` vxlan device and a route for every other node's pod CIDR, and writes
//! the node's lease (subnet and MTU) to a file. It takes its subnet from the Node object
//! (`--kube-subnet-mgr`: kube-controller-manager allocates the pod CIDRs), so it needs no etcd
//! and no credentials beyond the kubelet's: the Node authorizer lets a node read Nodes and patch
//! its own status, which is all flannel does.
//!
//! The CNI configuration is k0x's bridge network rendered from that lease ([`crate::cni`]), the
//! job the flannel CNI plugin does upstream: the MTU then leaves room for the vxlan header, and
//! masquerading is flannel's (traffic leaving the pod network only), so pods see each other's
//! real addresses. flannel enforces no NetworkPolicy.

use k0x_config::layout::PRIVATE_DIR_MODE;
use k0x_config::pki_names;
use k0x_supervisor::Spec;
use serde_json::json;

use crate::args::Flags;
use crate::files::{DirSpec, RenderedFile};
use crate::{Component, NodeContext, NodeError, kubelet, paths};

pub(crate) const NAME: &str = k0x_config::components::FLANNEL;

/// flannel's backend: vxlan works on any network that carries UDP between the nodes.
const BACKEND: &str = "vxlan";

#[derive(Debug)]
pub(crate) struct Flannel;

/// flannel's `net-conf.json`: the cluster's pod CIDR and the backend.
pub fn net_conf(ctx: &NodeContext) -> String {
    let conf = json!({
        "Network": ctx.config.spec.network.pod_cidr,
        "Backend": { "Type": BACKEND },
    });
    format!("{conf:#}\n")
}

impl Component for Flannel {
    fn name(&self) -> &'static str {
        NAME
    }

    fn dirs(&self, ctx: &NodeContext) -> Vec<DirSpec> {
        vec![DirSpec::new(
            paths::flannel_run_dir(&ctx.run),
            PRIVATE_DIR_MODE,
        )]
    }

    fn files(&self, ctx: &NodeContext) -> Result<Vec<RenderedFile>, NodeError> {
        Ok(vec![RenderedFile::private(
            paths::flannel_net_conf(&ctx.data),
            net_conf(ctx),
        )])
    }

    fn spec(&self, ctx: &NodeContext) -> Result<Spec, NodeError> {
        let mut flags = Flags::new();
        flags
            .set("kube-subnet-mgr", true)
            .path("kubeconfig-file", &ctx.data.kubeconfig(pki_names::KUBELET))
            .path("net-config-path", &paths::flannel_net_conf(&ctx.data))
            .path("subnet-file", &paths::flannel_subnet_file(&ctx.run))
            .set("iface", ctx.node.address)
            .set("ip-masq", true);
        let mut spec = Spec::new(NAME, ctx.node.binary(NAME));
        spec.args = flags.to_args();
        spec.env.insert("NODE_NAME".into(), ctx.node.name.clone());
        // flannel reads its subnet from the Node object, which the kubelet registers.
        spec.depends_on = vec![kubelet::NAME.to_owned()];
        Ok(spec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::context;

    #[test]
    fn net_conf_names_the_pod_cidr_and_vxlan() {
        let conf: serde_json::Value = serde_json::from_str(&net_conf(&context())).unwrap();
        assert_eq!(conf["Network"], "10.244.0.0/16");
        assert_eq!(conf["Backend"]["Type"], "vxlan");
    }

    #[test]
    fn spec_uses_the_kubelet_identity_and_the_node_address() {
        let ctx = context();
        let spec = Flannel.spec(&ctx).unwrap();
        assert!(spec.args.contains(&"--kube-subnet-mgr=true".to_owned()));
        assert!(
            spec.args
                .contains(&"--kubeconfig-file=/var/lib/k0x/pki/kubelet.conf".to_owned()),
            "{:?}",
            spec.args
        );
        assert!(spec.args.contains(&format!("--iface={}", ctx.node.address)));
        assert_eq!(spec.env["NODE_NAME"], "node-a");
        assert_eq!(spec.depends_on, ["kubelet"]);
    }
}
