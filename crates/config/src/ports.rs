//! The ports of the components that no setting moves (upstream's defaults). The components
//! listen on them and the host checks look that they are free: one number each.

/// kube-controller-manager's secure (health) port.
pub const KUBE_CONTROLLER_MANAGER: u16 = 10257;
/// kube-scheduler's secure (health) port.
pub const KUBE_SCHEDULER: u16 = 10259;
/// The kubelet's API port (its default: k0x does not set it).
pub const KUBELET: u16 = 10250;
/// Where kube-proxy serves metrics (loopback only).
pub const KUBE_PROXY_METRICS: u16 = 10249;
/// A worker's node-local load balancer in front of the apiservers (loopback only).
pub const NODE_LOCAL_BALANCER: u16 = 7443;
/// Where kube-proxy answers health checks (plain HTTP, loopback only).
pub const KUBE_PROXY_HEALTHZ: u16 = 10256;
