//! The node-local load balancer that lets a worker reach every kube-apiserver of the cluster.
//!
//! A worker's kubelet and kube-proxy take one server URL. With several controllers that URL must
//! keep working when any one of them is down, which kubeadm guides solve with keepalived and
//! haproxy on extra hosts. k0x instead runs a small TCP proxy on each worker (k0s's node-local
//! load balancing, k3s's agent load balancer): the components talk to `127.0.0.1:7443`, and the
//! [`Balancer`] forwards each connection to a controller that answers.
//!
//! - Layer 4 only: TLS passes through, so no certificate or key lives in the balancer.
//! - A dead controller is skipped at once: a connect that fails marks its backend down and the
//!   same connection tries the next, and a check every second brings it back when it answers.
//! - Health never refuses a client: with no backend believed healthy every one is still tried
//!   ([`pool`] has the order).
//! - The list of controllers is the caller's to change at any time
//!   ([`BalancerHandle::set_backends`]); [`endpoints::apiservers`] reads it from the cluster's
//!   `default/kubernetes` EndpointSlices, where every apiserver registers itself.

mod balancer;
pub mod endpoints;
mod error;
pub mod pool;

pub use balancer::{Balancer, BalancerHandle, CHECK_INTERVAL, CONNECT_TIMEOUT};
pub use endpoints::{EndpointsError, KUBERNETES_ENDPOINT_SLICES, apiservers};
pub use error::ListenError;
pub use pool::Health;
