//! kube-apiserver: the cluster's front door.
//!
//! Choices worth knowing:
//! - Bootstrap-token authentication is off: k0x's join API signs each kubelet's client
//!   certificate itself, so no bootstrap tokens exist in the cluster and the authenticator would
//!   only be attack surface.
//! - Aggregated APIs (metrics-server) are reached at their endpoints' pod IPs, not their Service
//!   IP: a controller without a worker runs no kube-proxy to translate Service IPs.
//! - Kubelets are verified (`--kubelet-certificate-authority`): every node serves with a
//!   certificate from the cluster CA, a controller's issued by its own PKI and a joined worker's
//!   by the join API, so `kubectl logs/exec/port-forward` cannot be sent to an impostor.
//! - The readiness probe presents `apiserver-kubelet-client`, a certificate that exists as
//!   separate files; `/readyz` only needs an authenticated (even anonymous) caller, so the probe
//!   does not need admin rights.

use std::net::Ipv4Addr;
use std::time::Duration;

use k0x_config::pki_names;
use k0x_supervisor::{Probe, Spec};

use crate::args::Flags;
use crate::contract::FlagContract;
use crate::{Component, NodeContext, NodeError, etcd};

pub(crate) const NAME: &str = k0x_config::components::KUBE_APISERVER;

#[derive(Debug)]
pub(crate) struct KubeApiserver;

/// The service-account issuer (`https://kubernetes.default.svc.<clusterDomain>`).
pub fn service_account_issuer(ctx: &NodeContext) -> String {
    format!(
        "https://kubernetes.default.svc.{}",
        ctx.config.spec.network.cluster_domain
    )
}

impl KubeApiserver {
    fn flags(ctx: &NodeContext) -> Result<Flags, NodeError> {
        let data = &ctx.data;
        let spec = &ctx.config.spec;
        let cert = |name| data.pki_cert(name);
        let key = |name| data.pki_key(name);
        let mut flags = Flags::new();
        flags
            .set("advertise-address", ctx.node.address)
            .set("secure-port", spec.api.port)
            .set("allow-privileged", true)
            .set("authorization-mode", "Node,RBAC")
            .set("enable-admission-plugins", "NodeRestriction")
            .set("enable-bootstrap-token-auth", false)
            .set("profiling", false)
            .set("tls-min-version", "VersionTLS12")
            .path("client-ca-file", &cert(pki_names::CA))
            .path("tls-cert-file", &cert(pki_names::APISERVER))
            .path("tls-private-key-file", &key(pki_names::APISERVER))
            .set("etcd-servers", etcd::client_url(&ctx.config))
            .path("etcd-cafile", &cert(pki_names::ETCD_CA))
            .path("etcd-certfile", &cert(pki_names::APISERVER_ETCD_CLIENT))
            .path("etcd-keyfile", &key(pki_names::APISERVER_ETCD_CLIENT))
            .path("kubelet-certificate-authority", &cert(pki_names::CA))
            .path(
                "kubelet-client-certificate",
                &cert(pki_names::APISERVER_KUBELET_CLIENT),
            )
            .path(
                "kubelet-client-key",
                &key(pki_names::APISERVER_KUBELET_CLIENT),
            )
            .set(
                "kubelet-preferred-address-types",
                "InternalIP,ExternalIP,Hostname",
            )
            .set("service-cluster-ip-range", &spec.network.service_cidr)
            .set("service-account-issuer", service_account_issuer(ctx))
            .path("service-account-key-file", &data.sa_pub())
            .path("service-account-signing-key-file", &data.sa_key())
            .path(
                "proxy-client-cert-file",
                &cert(pki_names::FRONT_PROXY_CLIENT),
            )
            .path("proxy-client-key-file", &key(pki_names::FRONT_PROXY_CLIENT))
            .path(
                "requestheader-client-ca-file",
                &cert(pki_names::FRONT_PROXY_CA),
            )
            .set("enable-aggregator-routing", true)
            .set("requestheader-allowed-names", "front-proxy-client")
            .set("requestheader-extra-headers-prefix", "X-Remote-Extra-")
            .set("requestheader-group-headers", "X-Remote-Group")
            .set("requestheader-username-headers", "X-Remote-User");
        let contract = FlagContract::for_component(NAME);
        flags.merge_extra(
            &spec.api.extra_args,
            "spec.api.extraArgs",
            contract.as_ref(),
        )?;
        Ok(flags)
    }
}

impl Component for KubeApiserver {
    fn name(&self) -> &'static str {
        NAME
    }

    fn spec(&self, ctx: &NodeContext) -> Result<Spec, NodeError> {
        let flags = Self::flags(ctx)?;
        let port = flags.get("secure-port").unwrap_or_default();
        let data = &ctx.data;
        let probe = Probe::Http {
            url: format!("https://{}:{port}/readyz", Ipv4Addr::LOCALHOST),
            ca: Some(data.pki_cert(pki_names::CA)),
            client_cert: Some(data.pki_cert(pki_names::APISERVER_KUBELET_CLIENT)),
            client_key: Some(data.pki_key(pki_names::APISERVER_KUBELET_CLIENT)),
        };
        let mut spec = Spec::new(NAME, ctx.node.binary(NAME));
        spec.args = flags.to_args();
        spec.readiness = ctx.readiness(NAME, probe);
        // The apiserver drains in-flight requests on SIGTERM (shutdown-delay + grace).
        spec.stop_timeout = Duration::from_secs(30);
        spec.depends_on = vec![etcd::NAME.to_owned()];
        Ok(spec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::context;

    #[test]
    fn extra_args_override_defaults_and_probe_follows_port() {
        let mut ctx = context();
        ctx.config.spec.api.port = 7443;
        let extra = &mut ctx.config.spec.api.extra_args;
        extra.insert(
            "enable-admission-plugins".into(),
            "NodeRestriction,PodSecurity".into(),
        );
        let spec = KubeApiserver.spec(&ctx).unwrap();
        assert!(spec.args.contains(&"--secure-port=7443".to_owned()));
        assert!(
            spec.args
                .contains(&"--enable-admission-plugins=NodeRestriction,PodSecurity".to_owned())
        );
        let Probe::Http { url, .. } = &spec.readiness.probe else {
            panic!()
        };
        assert_eq!(url, "https://127.0.0.1:7443/readyz");
        assert_eq!(spec.depends_on, ["etcd"]);
    }

    #[test]
    fn issuer_uses_cluster_domain() {
        let mut ctx = context();
        ctx.config.spec.network.cluster_domain = "example.internal".into();
        assert_eq!(
            service_account_issuer(&ctx),
            "https://kubernetes.default.svc.example.internal"
        );
    }
}
