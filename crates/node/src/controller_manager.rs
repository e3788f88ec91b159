//! kube-controller-manager: signs node certificates with the cluster CA, hands out node pod
//! CIDRs from `spec.network.podCIDR` (which the built-in bridge network relies on), and gives
//! every controller its own service account.

use std::net::Ipv4Addr;

use k0x_config::pki_names;
use k0x_supervisor::Spec;

use crate::args::Flags;
use crate::contract::FlagContract;
use crate::scheduler::health_probe;
use crate::{Component, NodeContext, NodeError, apiserver};

pub(crate) const NAME: &str = k0x_config::components::KUBE_CONTROLLER_MANAGER;

/// The default secure (health) port of kube-controller-manager.
const SECURE_PORT: u16 = 10257;

#[derive(Debug)]
pub(crate) struct KubeControllerManager;

impl KubeControllerManager {
    fn flags(ctx: &NodeContext) -> Result<Flags, NodeError> {
        let data = &ctx.data;
        let network = &ctx.config.spec.network;
        let kubeconfig = data.kubeconfig(pki_names::CONTROLLER_MANAGER);
        let ca = data.pki_cert(pki_names::CA);
        let mut flags = Flags::new();
        flags
            .path("kubeconfig", &kubeconfig)
            .path("authentication-kubeconfig", &kubeconfig)
            .path("authorization-kubeconfig", &kubeconfig)
            .set("bind-address", Ipv4Addr::LOCALHOST)
            .set("secure-port", SECURE_PORT)
            .path(
                "tls-cert-file",
                &data.pki_cert(pki_names::CONTROLLER_MANAGER_SERVER),
            )
            .path(
                "tls-private-key-file",
                &data.pki_key(pki_names::CONTROLLER_MANAGER_SERVER),
            )
            .set("leader-elect", true)
            .set("profiling", false)
            .set("cluster-name", &ctx.config.metadata.name)
            .path("client-ca-file", &ca)
            .path(
                "requestheader-client-ca-file",
                &data.pki_cert(pki_names::FRONT_PROXY_CA),
            )
            .path("root-ca-file", &ca)
            .path("cluster-signing-cert-file", &ca)
            .path("cluster-signing-key-file", &data.pki_key(pki_names::CA))
            .path("service-account-private-key-file", &data.sa_key())
            .set("use-service-account-credentials", true)
            .set("allocate-node-cidrs", true)
            .set("cluster-cidr", &network.pod_cidr)
            .set("service-cluster-ip-range", &network.service_cidr);
        let extra = &ctx.config.spec.controller_manager.extra_args;
        let contract = FlagContract::for_component(NAME);
        flags.merge_extra(extra, "spec.controllerManager.extraArgs", contract.as_ref())?;
        Ok(flags)
    }
}

impl Component for KubeControllerManager {
    fn name(&self) -> &'static str {
        NAME
    }

    fn spec(&self, ctx: &NodeContext) -> Result<Spec, NodeError> {
        let flags = Self::flags(ctx)?;
        let mut spec = Spec::new(NAME, ctx.node.binary(NAME));
        spec.readiness = ctx.readiness(NAME, health_probe(ctx, &flags));
        spec.args = flags.to_args();
        spec.depends_on = vec![apiserver::NAME.to_owned()];
        Ok(spec)
    }
}

#[cfg(test)]
mod tests {
    use k0x_supervisor::Probe;

    use super::*;
    use crate::test_support::context;

    #[test]
    fn pod_cidr_allocation_follows_config() {
        let mut ctx = context();
        ctx.config.spec.network.pod_cidr = "10.50.0.0/16".into();
        let spec = KubeControllerManager.spec(&ctx).unwrap();
        assert!(
            spec.args
                .contains(&"--cluster-cidr=10.50.0.0/16".to_owned())
        );
        assert!(spec.args.contains(&"--allocate-node-cidrs=true".to_owned()));
        let Probe::Http { url, .. } = &spec.readiness.probe else {
            panic!()
        };
        assert_eq!(url, "https://127.0.0.1:10257/healthz");
    }
}
