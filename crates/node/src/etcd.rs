//! etcd: the cluster's store, reachable only over mutual TLS.
//!
//! Clients (the local kube-apiserver and k0x itself) use loopback; peers use the node address.
//! Both sides require certificates from the etcd CA, which is separate from the cluster CA so a
//! cluster client certificate can never open the store.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use k0x_config::layout::PRIVATE_DIR_MODE;
use k0x_config::{ClusterConfig, pki_names, url_host};
use k0x_supervisor::{Probe, Spec};

use crate::args::Flags;
use crate::files::DirSpec;
use crate::net::parse_ip;
use crate::{Component, EtcdMembership, NodeContext, NodeError};

pub(crate) const NAME: &str = k0x_config::components::ETCD;

/// Backend quota: twice etcd's 2 GiB default for headroom on busy clusters, half of the 8 GiB
/// etcd recommends as a maximum so small boards are not asked to map a huge file.
const QUOTA_BACKEND_BYTES: u64 = 4 * 1024 * 1024 * 1024;

#[derive(Debug)]
pub(crate) struct Etcd;

/// The client URL on loopback (`https://127.0.0.1:<clientPort>`), used by the apiserver and k0x.
pub fn client_url(config: &ClusterConfig) -> String {
    let port = config.spec.storage.etcd.client_port;
    format!("https://{}:{port}", Ipv4Addr::LOCALHOST)
}

/// The peer URL other members reach this one on.
pub fn peer_url(ctx: &NodeContext) -> Result<String, NodeError> {
    let etcd = &ctx.config.spec.storage.etcd;
    let address: IpAddr = if etcd.peer_address.is_empty() {
        ctx.node.address
    } else {
        parse_ip("spec.storage.etcd.peerAddress", &etcd.peer_address)?
    };
    Ok(format!("https://{}:{}", url_host(address), etcd.peer_port))
}

impl Etcd {
    fn flags(ctx: &NodeContext) -> Result<Flags, NodeError> {
        let data = &ctx.data;
        let name = &ctx.node.name;
        let client = client_url(&ctx.config);
        let peer = peer_url(ctx)?;
        let (initial_cluster, state) = match &ctx.etcd_membership {
            EtcdMembership::New => (format!("{name}={peer}"), "new"),
            EtcdMembership::Join { initial_cluster } => (initial_cluster.clone(), "existing"),
        };
        let mut flags = Flags::new();
        flags
            .set("name", name)
            .path("data-dir", &data.etcd())
            .set("listen-client-urls", &client)
            .set("advertise-client-urls", &client)
            .set("listen-peer-urls", &peer)
            .set("initial-advertise-peer-urls", &peer)
            .set("initial-cluster", initial_cluster)
            .set("initial-cluster-state", state)
            .set(
                "initial-cluster-token",
                format!("k0x-{}", ctx.config.metadata.name),
            )
            .path("trusted-ca-file", &data.pki_cert(pki_names::ETCD_CA))
            .path("cert-file", &data.pki_cert(pki_names::ETCD_SERVER))
            .path("key-file", &data.pki_key(pki_names::ETCD_SERVER))
            .set("client-cert-auth", true)
            .path("peer-trusted-ca-file", &data.pki_cert(pki_names::ETCD_CA))
            .path("peer-cert-file", &data.pki_cert(pki_names::ETCD_PEER))
            .path("peer-key-file", &data.pki_key(pki_names::ETCD_PEER))
            .set("peer-client-cert-auth", true)
            .set("quota-backend-bytes", QUOTA_BACKEND_BYTES)
            // The apiserver compacts every 5 minutes; this is the safety net for the times no
            // apiserver runs (k0x's own keys, a stopped control plane).
            .set("auto-compaction-mode", "periodic")
            .set("auto-compaction-retention", "1h");
        let extra = &ctx.config.spec.storage.etcd.extra_args;
        flags.merge_extra(extra, "spec.storage.etcd.extraArgs", None)?;
        Ok(flags)
    }
}

impl Component for Etcd {
    fn name(&self) -> &'static str {
        NAME
    }

    fn dirs(&self, ctx: &NodeContext) -> Vec<DirSpec> {
        vec![DirSpec::new(ctx.data.etcd(), PRIVATE_DIR_MODE)]
    }

    fn spec(&self, ctx: &NodeContext) -> Result<Spec, NodeError> {
        let flags = Self::flags(ctx)?;
        let data = &ctx.data;
        let client = flags.get("listen-client-urls").unwrap_or_default();
        let first_client = client.split(',').next().unwrap_or_default();
        let probe = Probe::Http {
            url: format!("{first_client}/health"),
            ca: Some(data.pki_cert(pki_names::ETCD_CA)),
            client_cert: Some(data.pki_cert(pki_names::ETCD_K0X_CLIENT)),
            client_key: Some(data.pki_key(pki_names::ETCD_K0X_CLIENT)),
        };
        let mut spec = Spec::new(NAME, ctx.node.binary("etcd"));
        spec.args = flags.to_args();
        if cfg!(target_arch = "arm") {
            // etcd refuses 32-bit ARM unless told the risk is accepted; small boards are a
            // target of k0x.
            spec.env
                .insert("ETCD_UNSUPPORTED_ARCH".into(), "arm".into());
        }
        spec.readiness = ctx.readiness(NAME, probe);
        spec.stop_timeout = Duration::from_secs(20);
        Ok(spec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::context;

    fn arg<'a>(spec: &'a Spec, name: &str) -> Option<&'a str> {
        let prefix = format!("--{name}=");
        spec.args.iter().find_map(|a| a.strip_prefix(&prefix))
    }

    #[test]
    fn single_member_with_mtls() {
        let ctx = context();
        let spec = Etcd.spec(&ctx).unwrap();
        assert_eq!(
            arg(&spec, "listen-client-urls"),
            Some("https://127.0.0.1:2379")
        );
        assert_eq!(
            arg(&spec, "listen-peer-urls"),
            Some("https://192.0.2.10:2380")
        );
        assert_eq!(
            arg(&spec, "initial-cluster"),
            Some("node-a=https://192.0.2.10:2380")
        );
        assert_eq!(arg(&spec, "initial-cluster-state"), Some("new"));
        assert_eq!(arg(&spec, "client-cert-auth"), Some("true"));
        assert_eq!(arg(&spec, "peer-client-cert-auth"), Some("true"));
        let Probe::Http {
            url, client_cert, ..
        } = &spec.readiness.probe
        else {
            panic!("etcd must have an HTTPS probe");
        };
        assert_eq!(url, "https://127.0.0.1:2379/health");
        assert!(
            client_cert
                .as_ref()
                .unwrap()
                .ends_with("pki/etcd/k0x-client.crt")
        );
    }

    #[test]
    fn joining_member_uses_existing_state() {
        let mut ctx = context();
        let cluster = "a=https://192.0.2.1:2380,node-a=https://192.0.2.10:2380".to_owned();
        ctx.etcd_membership = EtcdMembership::Join {
            initial_cluster: cluster.clone(),
        };
        let spec = Etcd.spec(&ctx).unwrap();
        assert_eq!(arg(&spec, "initial-cluster"), Some(cluster.as_str()));
        assert_eq!(arg(&spec, "initial-cluster-state"), Some("existing"));
    }

    #[test]
    fn extra_args_win_and_move_the_probe() {
        let mut ctx = context();
        let extra = &mut ctx.config.spec.storage.etcd.extra_args;
        extra.insert("quota-backend-bytes".into(), "1024".into());
        extra.insert("listen-client-urls".into(), "https://127.0.0.1:3379".into());
        let spec = Etcd.spec(&ctx).unwrap();
        assert_eq!(arg(&spec, "quota-backend-bytes"), Some("1024"));
        let count = spec
            .args
            .iter()
            .filter(|a| a.starts_with("--quota-backend-bytes="))
            .count();
        assert_eq!(count, 1);
        let Probe::Http { url, .. } = &spec.readiness.probe else {
            panic!()
        };
        assert_eq!(url, "https://127.0.0.1:3379/health");
    }

    #[test]
    fn peer_address_from_config() {
        let mut ctx = context();
        ctx.config.spec.storage.etcd.peer_address = "fd00::5".into();
        assert_eq!(peer_url(&ctx).unwrap(), "https://[fd00::5]:2380");
        ctx.config.spec.storage.etcd.peer_address = "x".into();
        let err = peer_url(&ctx).unwrap_err().to_string();
        assert!(err.starts_with("spec.storage.etcd.peerAddress:"), "{err}");
    }
}
