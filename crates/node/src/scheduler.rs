//! kube-scheduler: talks to the apiserver through its kubeconfig, elects a leader among
//! controllers, and serves health on loopback with a certificate from the cluster CA so the
//! readiness probe verifies it like any other TLS peer.

use std::net::Ipv4Addr;

use k0x_config::pki_names;
use k0x_supervisor::{Probe, Spec};

use crate::args::Flags;
use crate::contract::FlagContract;
use crate::{Component, NodeContext, NodeError, apiserver};

pub(crate) const NAME: &str = k0x_config::components::KUBE_SCHEDULER;

const SECURE_PORT: u16 = k0x_config::ports::KUBE_SCHEDULER;

#[derive(Debug)]
pub(crate) struct KubeScheduler;

impl KubeScheduler {
    fn flags(ctx: &NodeContext) -> Result<Flags, NodeError> {
        let mut flags = loopback_flags(
            ctx,
            pki_names::SCHEDULER,
            pki_names::SCHEDULER_SERVER,
            SECURE_PORT,
        );
        let extra = &ctx.config.spec.scheduler.extra_args;
        let contract = FlagContract::for_component(NAME);
        flags.merge_extra(extra, "spec.scheduler.extraArgs", contract.as_ref())?;
        Ok(flags)
    }
}

impl Component for KubeScheduler {
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

/// The flags kube-scheduler and kube-controller-manager share: the kubeconfig `kubeconfig`
/// for the apiserver and for delegated authentication and authorization, health served on
/// loopback at `port` with the certificate `server_cert`, leader election, no profiling.
pub(crate) fn loopback_flags(
    ctx: &NodeContext,
    kubeconfig: &str,
    server_cert: &str,
    port: u16,
) -> Flags {
    let data = &ctx.data;
    let kubeconfig = data.kubeconfig(kubeconfig);
    let mut flags = Flags::new();
    flags
        .path("kubeconfig", &kubeconfig)
        .path("authentication-kubeconfig", &kubeconfig)
        .path("authorization-kubeconfig", &kubeconfig)
        .set("bind-address", Ipv4Addr::LOCALHOST)
        .set("secure-port", port)
        .path("tls-cert-file", &data.pki_cert(server_cert))
        .path("tls-private-key-file", &data.pki_key(server_cert))
        .set("leader-elect", true)
        .set("profiling", false);
    flags
}

/// `GET https://<bind-address>:<secure-port>/healthz`, verified against the cluster CA. The
/// health paths are always allowed without authentication, so no client certificate is sent.
pub(crate) fn health_probe(ctx: &NodeContext, flags: &Flags) -> Probe {
    let host = flags.get("bind-address").unwrap_or("127.0.0.1");
    let port = flags.get("secure-port").unwrap_or_default();
    Probe::Http {
        url: format!("https://{host}:{port}/healthz"),
        ca: Some(ctx.data.pki_cert(pki_names::CA)),
        client_cert: None,
        client_key: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::context;

    #[test]
    fn probe_uses_secure_port_and_cluster_ca() {
        let spec = KubeScheduler.spec(&context()).unwrap();
        let Probe::Http { url, ca, .. } = &spec.readiness.probe else {
            panic!()
        };
        assert_eq!(url, "https://127.0.0.1:10259/healthz");
        assert!(ca.as_ref().unwrap().ends_with("pki/ca.crt"));
        assert_eq!(spec.depends_on, ["kube-apiserver"]);
    }

    #[test]
    fn removed_flag_in_extra_args_is_refused() {
        let mut ctx = context();
        ctx.config
            .spec
            .scheduler
            .extra_args
            .insert("port".into(), "0".into());
        let err = KubeScheduler.spec(&ctx).unwrap_err().to_string();
        assert!(err.starts_with("spec.scheduler.extraArgs.port:"), "{err}");
    }
}
