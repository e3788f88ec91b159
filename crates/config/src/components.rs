//! The names of the components k0x runs. The node crate names its components with them, the
//! configuration checks `spec.probes.timeoutSeconds` against them and `--disable-components`
//! accepts them: one list, so a new component cannot be known to one and unknown to another.

pub const ETCD: &str = "etcd";
pub const KUBE_APISERVER: &str = "kube-apiserver";
pub const KUBE_SCHEDULER: &str = "kube-scheduler";
pub const KUBE_CONTROLLER_MANAGER: &str = "kube-controller-manager";
pub const CONTAINERD: &str = "containerd";
pub const KUBELET: &str = "kubelet";
pub const KUBE_PROXY: &str = "kube-proxy";
pub const FLANNEL: &str = "flannel";

/// Every component, controller components first, in start order.
pub const ALL: &[&str] = &[
    ETCD,
    KUBE_APISERVER,
    KUBE_SCHEDULER,
    KUBE_CONTROLLER_MANAGER,
    CONTAINERD,
    KUBELET,
    KUBE_PROXY,
    FLANNEL,
];

/// The components with a readiness probe: the names `spec.probes.timeoutSeconds` may use. flannel
/// has none (it is ready once started), so a timeout for it would mean nothing.
pub const PROBED: &[&str] = &[
    ETCD,
    KUBE_APISERVER,
    KUBE_SCHEDULER,
    KUBE_CONTROLLER_MANAGER,
    CONTAINERD,
    KUBELET,
    KUBE_PROXY,
];
