//! kube-controller-manager: signs node certificates with the cluster CA, hands out node pod
//! CIDRs from `spec.network.podCIDR` (which the built-in bridge network relies on), and gives
//! every controller its own service account.

use k0x_config::pki_names;
use k0x_supervisor::Spec;

use crate::args::Flags;
use crate::contract::FlagContract;
use crate::scheduler::{health_probe, loopback_flags};
use crate::{Component, NodeContext, NodeError, apiserver};

pub(crate) const NAME: &str = k0x_config::components::KUBE_CONTROLLER_MANAGER;

const SECURE_PORT: u16 = k0x_config::ports::KUBE_CONTROLLER_MANAGER;

#[derive(Debug)]
pub(crate) struct KubeControllerManager;

impl KubeControllerManager {
    fn flags(ctx: &NodeContext) -> Result<Flags, NodeError> {
        let data = &ctx.data;
        let network = &ctx.config.spec.network;
        let ca = data.pki_cert(pki_names::CA);
        let mut flags = loopback_flags(
            ctx,
            pki_names::CONTROLLER_MANAGER,
            pki_names::CONTROLLER_MANAGER_SERVER,
            SECURE_PORT,
        );
        flags
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
