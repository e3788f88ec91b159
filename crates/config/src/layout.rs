//! The on-disk layout: one type per root directory, one method per path.
//!
//! Paths are derived, never stored, so a `DataDir` is cheap to clone and always consistent with
//! the root it was built from. Directory creation applies the modes the design promises (data dir
//! 0700, bin 0750, pki and etcd 0700) even when the directory already exists with looser modes.

use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Default data directory (`--data-dir`, `K0X_DATA_DIR`).
pub const DEFAULT_DATA_DIR: &str = "/var/lib/k0x";
/// Default run directory (`--run-dir`, `K0X_RUN_DIR`).
pub const DEFAULT_RUN_DIR: &str = "/run/k0x";
/// Default configuration file (`--config`, `K0X_CONFIG`).
pub const DEFAULT_CONFIG_FILE: &str = "/etc/k0x/k0x.yaml";

/// Mode of the data directory and of every directory that holds secrets.
pub const PRIVATE_DIR_MODE: u32 = 0o700;
/// Mode of the directory holding extracted component binaries.
pub const BIN_DIR_MODE: u32 = 0o750;

/// Names of the PKI material under `pki/`, shared by the pki crate that writes it and the node
/// crate that points components at it. Names follow kubeadm so existing tooling feels at home.
pub mod pki_names {
    /// Cluster CA (CN=kubernetes-ca).
    pub const CA: &str = "ca";
    /// etcd CA, separate from the cluster CA.
    pub const ETCD_CA: &str = "etcd/ca";
    /// Front-proxy (aggregation layer) CA.
    pub const FRONT_PROXY_CA: &str = "front-proxy-ca";
    /// kube-apiserver serving certificate.
    pub const APISERVER: &str = "apiserver";
    /// kube-apiserver's client certificate towards kubelets.
    pub const APISERVER_KUBELET_CLIENT: &str = "apiserver-kubelet-client";
    /// kube-apiserver's client certificate towards etcd.
    pub const APISERVER_ETCD_CLIENT: &str = "apiserver-etcd-client";
    /// etcd client-facing serving certificate.
    pub const ETCD_SERVER: &str = "etcd/server";
    /// etcd peer certificate (serving and client between members).
    pub const ETCD_PEER: &str = "etcd/peer";
    /// Client certificate k0x itself uses against etcd (health probes, member management, tokens).
    pub const ETCD_K0X_CLIENT: &str = "etcd/k0x-client";
    /// Front-proxy client certificate of kube-apiserver.
    pub const FRONT_PROXY_CLIENT: &str = "front-proxy-client";
    /// Serving certificates of kube-scheduler and kube-controller-manager on their loopback
    /// health ports (SANs 127.0.0.1 and localhost), issued by the cluster CA so probes verify them.
    pub const SCHEDULER_SERVER: &str = "kube-scheduler-server";
    pub const CONTROLLER_MANAGER_SERVER: &str = "kube-controller-manager-server";
    /// The kubelet's serving certificate on a controller's own worker (names: the node name and
    /// the host's addresses), so the apiserver and metrics-server verify the kubelet they call.
    pub const KUBELET_SERVER: &str = "kubelet-server";
    /// metrics-server's serving certificate (its Service's names), shipped in the
    /// metrics-server stack so the aggregation layer verifies it with the cluster CA.
    pub const METRICS_SERVER: &str = "metrics-server";
    /// Kubeconfig names (`pki/<name>.conf`).
    pub const ADMIN: &str = "admin";
    pub const SCHEDULER: &str = "scheduler";
    pub const CONTROLLER_MANAGER: &str = "controller-manager";
    pub const KUBELET: &str = "kubelet";
    /// kube-proxy's kubeconfig (CN=system:kube-proxy, bound to `system:node-proxier` upstream).
    pub const KUBE_PROXY: &str = "kube-proxy";
}

/// The persistent state of a node: binaries, PKI, etcd data, worker state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataDir {
    root: PathBuf,
}

impl DataDir {
    /// A layout rooted at `root` (nothing is touched on disk).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The data directory itself.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Extracted component binaries.
    pub fn bin(&self) -> PathBuf {
        self.root.join("bin")
    }

    /// Record of what was extracted into `bin/` (size, mtime, sha256 per file).
    pub fn bin_manifest(&self) -> PathBuf {
        self.bin().join(".manifest")
    }

    /// Certificates, keys and kubeconfigs.
    pub fn pki(&self) -> PathBuf {
        self.root.join("pki")
    }

    /// The etcd PKI (its own CA and leafs).
    pub fn etcd_pki(&self) -> PathBuf {
        self.pki().join("etcd")
    }

    /// A certificate under `pki/`, by its [`pki_names`] name (`apiserver` -> `pki/apiserver.crt`).
    pub fn pki_cert(&self, name: &str) -> PathBuf {
        self.pki().join(format!("{name}.crt"))
    }

    /// The private key beside [`DataDir::pki_cert`] (`pki/<name>.key`, mode 0600).
    pub fn pki_key(&self, name: &str) -> PathBuf {
        self.pki().join(format!("{name}.key"))
    }

    /// The service-account signing key pair (`pki/sa.key`, `pki/sa.pub`).
    pub fn sa_key(&self) -> PathBuf {
        self.pki().join("sa.key")
    }

    /// The public half of the service-account key pair.
    pub fn sa_pub(&self) -> PathBuf {
        self.pki().join("sa.pub")
    }

    /// A component kubeconfig under `pki/` (`admin`, `scheduler`, `controller-manager`, `kubelet`).
    pub fn kubeconfig(&self, name: &str) -> PathBuf {
        self.pki().join(format!("{name}.conf"))
    }

    /// The admin kubeconfig (O=system:masters).
    pub fn admin_kubeconfig(&self) -> PathBuf {
        self.kubeconfig(pki_names::ADMIN)
    }

    /// etcd member data.
    pub fn etcd(&self) -> PathBuf {
        self.root.join("etcd")
    }

    /// containerd root (images, snapshots, content).
    pub fn containerd(&self) -> PathBuf {
        self.root.join("containerd")
    }

    /// kubelet state and configuration.
    pub fn kubelet(&self) -> PathBuf {
        self.root.join("kubelet")
    }

    /// Manifests the controller applies, one folder per stack.
    pub fn manifests(&self) -> PathBuf {
        self.root.join("manifests")
    }

    /// Image archives (OCI or docker-archive `*.tar`) a worker imports into containerd at start.
    pub fn images(&self) -> PathBuf {
        self.root.join("images")
    }

    /// Configuration files k0x renders for components (containerd, CNI, kubelet...).
    pub fn etc(&self) -> PathBuf {
        self.root.join("etc")
    }

    /// The file a running k0x holds an exclusive lock on.
    pub fn lock_file(&self) -> PathBuf {
        self.root.join(".lock")
    }

    /// Creates the data directory with mode 0700 (tightening an existing one).
    pub fn create(&self) -> io::Result<()> {
        ensure_dir(&self.root, PRIVATE_DIR_MODE)
    }
}

impl Default for DataDir {
    fn default() -> Self {
        Self::new(DEFAULT_DATA_DIR)
    }
}

/// Volatile state of a running k0x: sockets, pid files, status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunDir {
    root: PathBuf,
}

impl RunDir {
    /// A layout rooted at `root` (nothing is touched on disk).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The run directory itself.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The admin socket (0600) that `k0x status` and `k0x token` talk to.
    pub fn admin_socket(&self) -> PathBuf {
        self.root.join("k0x.sock")
    }

    /// The pid file of a supervised component.
    pub fn pid_file(&self, component: &str) -> PathBuf {
        self.root.join(format!("{component}.pid"))
    }

    /// containerd's state directory and its socket, owned by k0x so a host containerd is untouched.
    pub fn containerd(&self) -> PathBuf {
        self.root.join("containerd")
    }

    /// The k0x-owned containerd socket.
    pub fn containerd_socket(&self) -> PathBuf {
        self.containerd().join("containerd.sock")
    }

    /// runc's state for the containers k0x's containerd runs (`<root>/<namespace>/<id>/`).
    pub fn runc_root(&self) -> PathBuf {
        self.containerd().join("runc")
    }

    /// Creates the run directory with mode 0700.
    pub fn create(&self) -> io::Result<()> {
        ensure_dir(&self.root, PRIVATE_DIR_MODE)
    }
}

impl Default for RunDir {
    fn default() -> Self {
        Self::new(DEFAULT_RUN_DIR)
    }
}

/// Creates `dir` (and parents) and sets its mode to exactly `mode`.
pub fn ensure_dir(dir: &Path, mode: u32) -> io::Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(mode)
        .create(dir)?;
    fs::set_permissions(dir, fs::Permissions::from_mode(mode))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_derive_from_the_root() {
        let data = DataDir::new("/x");
        assert_eq!(data.bin_manifest(), Path::new("/x/bin/.manifest"));
        assert_eq!(data.admin_kubeconfig(), Path::new("/x/pki/admin.conf"));
        assert_eq!(data.etcd_pki(), Path::new("/x/pki/etcd"));
        let run = RunDir::new("/r");
        assert_eq!(run.pid_file("etcd"), Path::new("/r/etcd.pid"));
        assert_eq!(run.admin_socket(), Path::new("/r/k0x.sock"));
    }

    #[test]
    fn create_tightens_modes() {
        let tmp = tempfile::tempdir().unwrap();
        let data = DataDir::new(tmp.path().join("data"));
        ensure_dir(data.root(), 0o755).unwrap();
        data.create().unwrap();
        let mode = fs::metadata(data.root()).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
    }
}
