//! kube-proxy: turns Services into iptables rules on every worker.
//!
//! It runs as a supervised process, not as a DaemonSet: in iptables mode it calls the host's
//! `iptables-restore`, and an image would have to carry iptables userspace (a C program k0x does
//! not build) in the version matching the host kernel's backend. As a process it uses the host's
//! iptables, which the host checks already require, and it starts before any pod needs a Service.
//!
//! It authenticates as `system:kube-proxy`, the user Kubernetes' bootstrap policy binds to the
//! `system:node-proxier` role, so no RBAC object of k0x's is needed. The conntrack sysctls are
//! left as the host has them (`maxPerCore: 0` and zero timeouts mean "do not change"): they are
//! host-wide settings, not kube-proxy's to rewrite at every start.

use std::net::Ipv4Addr;

use k0x_config::pki_names;
use k0x_supervisor::{Probe, Spec};
use serde_json::{Value, json};

use crate::args::Flags;
use crate::files::RenderedFile;
use crate::{Component, NodeContext, NodeError, apiserver, paths};

pub(crate) const NAME: &str = k0x_config::components::KUBE_PROXY;

const HEALTHZ_PORT: u16 = k0x_config::ports::KUBE_PROXY_HEALTHZ;
const METRICS_PORT: u16 = k0x_config::ports::KUBE_PROXY_METRICS;

#[derive(Debug)]
pub(crate) struct KubeProxy;

/// The KubeProxyConfiguration k0x generates.
pub fn kube_proxy_config(ctx: &NodeContext) -> Value {
    json!({
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "clientConnection": { "kubeconfig": ctx.data.kubeconfig(pki_names::KUBE_PROXY) },
        "mode": "iptables",
        "clusterCIDR": ctx.config.spec.network.pod_cidr,
        "hostnameOverride": ctx.node.name,
        "nodePortAddresses": ["primary"],
        "healthzBindAddress": format!("{}:{HEALTHZ_PORT}", Ipv4Addr::LOCALHOST),
        "metricsBindAddress": format!("{}:{METRICS_PORT}", Ipv4Addr::LOCALHOST),
        "conntrack": {
            "maxPerCore": 0,
            "min": 0,
            "tcpEstablishedTimeout": "0s",
            "tcpCloseWaitTimeout": "0s",
        },
    })
}

impl Component for KubeProxy {
    fn name(&self) -> &'static str {
        NAME
    }

    fn files(&self, ctx: &NodeContext) -> Result<Vec<RenderedFile>, NodeError> {
        let yaml = serde_json::to_string_pretty(&kube_proxy_config(ctx))
            .expect("a JSON value always serializes");
        let header = "# Written by k0x at every start.\n";
        Ok(vec![RenderedFile::private(
            paths::kube_proxy_config(&ctx.data),
            format!("{header}{yaml}\n"),
        )])
    }

    fn spec(&self, ctx: &NodeContext) -> Result<Spec, NodeError> {
        let mut flags = Flags::new();
        flags.path("config", &paths::kube_proxy_config(&ctx.data));
        let probe = Probe::Http {
            // /healthz also says whether the node may take load-balancer traffic, and fails
            // until the Node object exists; /livez is kube-proxy's own health.
            url: format!("http://{}:{HEALTHZ_PORT}/livez", Ipv4Addr::LOCALHOST),
            ca: None,
            client_cert: None,
            client_key: None,
        };
        let mut spec = Spec::new(NAME, ctx.node.binary(NAME));
        spec.args = flags.to_args();
        spec.readiness = ctx.readiness(NAME, probe);
        // On a worker without a local apiserver the dependency is dropped: kube-proxy retries
        // until the cluster answers.
        spec.depends_on = vec![apiserver::NAME.to_owned()];
        Ok(spec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::context;

    #[test]
    fn config_uses_iptables_the_pod_cidr_and_its_own_identity() {
        let ctx = context();
        let config = kube_proxy_config(&ctx);
        assert_eq!(config["mode"], "iptables");
        assert_eq!(config["clusterCIDR"], "10.244.0.0/16");
        assert_eq!(config["hostnameOverride"], "node-a");
        assert_eq!(
            config["clientConnection"]["kubeconfig"],
            "/var/lib/k0x/pki/kube-proxy.conf"
        );
        assert_eq!(config["conntrack"]["maxPerCore"], 0);
    }

    #[test]
    fn the_file_is_the_config_and_the_spec_names_it() {
        let ctx = context();
        let files = KubeProxy.files(&ctx).unwrap();
        let parsed: Value = serde_saphyr::from_str(&files[0].contents).unwrap();
        assert_eq!(parsed, kube_proxy_config(&ctx));
        let spec = KubeProxy.spec(&ctx).unwrap();
        assert_eq!(
            spec.args,
            ["--config=/var/lib/k0x/etc/kube-proxy/config.yaml"]
        );
        assert_eq!(spec.depends_on, ["kube-apiserver"]);
    }
}
