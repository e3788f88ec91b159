//! Paths of the files k0x renders for its components.
//!
//! All of them live under directories k0x owns (`DataDir::etc()`, `DataDir::kubelet()`, the run
//! dir), so a host containerd, a host CNI setup or a host kubelet is never touched. They derive
//! from `DataDir`/`RunDir` only, so `--data-dir` and `--run-dir` move them along.

use std::path::PathBuf;

use k0x_config::{DataDir, RunDir};

/// containerd's main configuration file.
pub fn containerd_config(data: &DataDir) -> PathBuf {
    data.etc().join("containerd").join("config.toml")
}

/// Drop-in directory for user additions to containerd's configuration (`*.toml`, merged by k0x
/// over its own rendering, in file-name order).
pub fn containerd_imports(data: &DataDir) -> PathBuf {
    data.etc().join("containerd").join("conf.d")
}

/// Registry host configuration (`certs.d/<registry>/hosts.toml`) for the CRI plugin.
pub fn containerd_registry_hosts(data: &DataDir) -> PathBuf {
    data.etc().join("containerd").join("certs.d")
}

/// containerd's volatile state (shim sockets, mounts), next to its socket.
pub fn containerd_state(run: &RunDir) -> PathBuf {
    run.containerd().join("state")
}

/// runc's state for the containers k0x's containerd runs: under the run dir, so it is neither shared
/// with a host containerd nor left behind by `k0x reset` (runc's default is a host-wide path).
pub fn runc_root(run: &RunDir) -> PathBuf {
    run.runc_root()
}

/// CNI network configuration directory read by containerd's CRI plugin.
pub fn cni_conf_dir(data: &DataDir) -> PathBuf {
    data.etc().join("cni").join("net.d")
}

/// The built-in bridge network as a containerd `conf_template` (the node's pod CIDR is filled in
/// by containerd once the kubelet learns it).
pub fn cni_bridge_template(data: &DataDir) -> PathBuf {
    data.etc().join("cni").join("k0x-bridge.conflist.tmpl")
}

/// host-local IPAM allocations; volatile, like the containers they belong to.
pub fn cni_ipam_dir(run: &RunDir) -> PathBuf {
    run.root().join("cni").join("networks")
}

/// flannel's `net-conf.json` (the pod CIDR and the backend).
pub fn flannel_net_conf(data: &DataDir) -> PathBuf {
    data.etc().join("flannel").join("net-conf.json")
}

/// Where flannel keeps its volatile state.
pub fn flannel_run_dir(run: &RunDir) -> PathBuf {
    run.root().join("flannel")
}

/// The node's lease flannel writes (`FLANNEL_SUBNET`, `FLANNEL_MTU`, ...), read to render the
/// CNI configuration.
pub fn flannel_subnet_file(run: &RunDir) -> PathBuf {
    flannel_run_dir(run).join("subnet.env")
}

/// The CNI configuration k0x renders from flannel's lease.
pub fn cni_flannel_conflist(data: &DataDir) -> PathBuf {
    cni_conf_dir(data).join("10-k0x-flannel.conflist")
}

/// The rendered KubeletConfiguration.
pub fn kubelet_config(data: &DataDir) -> PathBuf {
    data.etc().join("kubelet").join("config.yaml")
}

/// The rendered KubeProxyConfiguration.
pub fn kube_proxy_config(data: &DataDir) -> PathBuf {
    data.etc().join("kube-proxy").join("config.yaml")
}

/// Where the kubelet keeps its rotated client and serving certificates.
pub fn kubelet_cert_dir(data: &DataDir) -> PathBuf {
    data.kubelet().join("pki")
}

/// The archives of the images k0x builds itself (the pause image), rewritten at every start.
pub fn built_images(data: &DataDir) -> PathBuf {
    data.containerd().join("k0x-images")
}
