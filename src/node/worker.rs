//! A worker's first start: join the cluster with a token (once), then turn what the controller
//! sent into the files the worker components read. Later starts reuse the stored material, so a
//! restarted worker needs no valid token.
//!
//! The join goes out from the node's own address: the controller names the address a join comes
//! from in the kubelet's serving certificate, and the apiserver reaches the kubelet there.

use anyhow::Context;
use k0x_config::{ClusterConfig, DataDir, pki_names};
use k0x_join::api::WorkerSettings;
use k0x_join::material::{self, WorkerFiles};
use k0x_join::{JoinClient, Token};
use k0x_node::NodeFacts;

use super::balancer;

/// Joins with `token` unless this data dir already holds a join's material; returns the cluster
/// settings and writes the kubelet's kubeconfig.
pub fn ensure_joined(
    data: &DataDir,
    token: Option<Token>,
    node: &NodeFacts,
    runtime: &tokio::runtime::Runtime,
) -> anyhow::Result<WorkerSettings> {
    let node_name = node.name.as_str();
    let files = WorkerFiles::in_data_dir(data);
    if !files.all_present() {
        let token = token.ok_or(k0x_join::token::LoadError::Missing)?;
        let client = JoinClient::new(token).with_local_addr(node.address);
        let join = match std::fs::read_to_string(&files.client_key) {
            // Joined before, with fewer identities than this k0x needs: keep the name's key.
            Ok(key) => runtime.block_on(super::join::while_unavailable(|| {
                client.rejoin_worker(node_name, &key)
            })),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                runtime.block_on(super::join::while_unavailable(|| {
                    client.join_worker(node_name)
                }))
            }
            Err(err) => {
                return Err(err)
                    .with_context(|| format!("cannot read {}", files.client_key.display()));
            }
        }
        .context("joining the cluster failed")?;
        material::write_worker_files(data, &join).with_context(|| {
            format!("cannot store the join result in {}", data.root().display())
        })?;
        tracing::info!(node = node_name, "joined the cluster");
    }
    for secret in files.secrets() {
        if let Some(was) = k0x_pki::make_private(secret)? {
            tracing::warn!(
                file = %secret.display(),
                "mode {was:04o} let others read a private key; now 0600"
            );
        }
    }
    let settings = files.read_settings().with_context(|| {
        format!(
            "cannot read {}; remove the data dir and join again",
            files.settings.display()
        )
    })?;
    write_kubelet_kubeconfig(data, &files, &settings, node_name)?;
    Ok(settings)
}

/// The worker's view of the cluster configuration: its own file, with the network and images the
/// controller sent (they must agree cluster-wide).
pub fn apply_settings(mut config: ClusterConfig, settings: &WorkerSettings) -> ClusterConfig {
    let network = &mut config.spec.network;
    network.pod_cidr.clone_from(&settings.pod_cidr);
    network.cluster_domain.clone_from(&settings.cluster_domain);
    if !settings.service_cidr.is_empty() {
        network.service_cidr.clone_from(&settings.service_cidr);
    }
    if let Some(provider) = settings.network_provider {
        network.provider = provider;
    }
    if let Some(pause) = settings.images.get("pause") {
        config.spec.images.pause.clone_from(pause);
    }
    config
}

/// The kubelet's kubeconfig, and kube-proxy's pointed at the node-local load balancer like it.
fn write_kubelet_kubeconfig(
    data: &DataDir,
    files: &WorkerFiles,
    settings: &WorkerSettings,
    node_name: &str,
) -> anyhow::Result<()> {
    let read = |path: &std::path::Path| {
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
    };
    anyhow::ensure!(
        !settings.api_servers.is_empty(),
        "the controller sent no API server address; join again with a new token"
    );
    let kubeconfig = k0x_pki::Kubeconfig {
        cluster_name: material::CLUSTER_NAME.to_owned(),
        server: balancer::server_url(),
        ca_pem: read(&files.ca_cert)?,
        user_name: format!("system:node:{node_name}"),
        client_cert_pem: read(&files.client_cert)?,
        client_key_pem: read(&files.client_key)?,
    };
    let path = data.kubeconfig(pki_names::KUBELET);
    k0x_pki::write_atomic(&path, kubeconfig.render().as_bytes(), 0o600)?;
    let path = &files.kube_proxy_kubeconfig;
    let mut kube_proxy = k0x_pki::Kubeconfig::parse(path, &read(path)?)?;
    kube_proxy.server = balancer::server_url();
    k0x_pki::write_atomic(path, kube_proxy.render().as_bytes(), 0o600)?;
    Ok(())
}
