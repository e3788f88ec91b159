//! The join API's JSON messages, shared by the server (controllers) and the client (joining nodes).
//!
//! Paths, all HTTPS on `spec.api.k0xApiPort` (9443):
//! - `GET  /v1/ca` (no credential): the cluster CA PEM, checked by the client against the token pin.
//! - `POST /v1/join/worker` [`WorkerJoinRequest`] -> [`WorkerJoinResponse`].
//! - `POST /v1/join/controller` (empty body) -> [`ControllerJoinResponse`].
//! - `POST /v1/etcd/members` [`EtcdMemberAddRequest`] -> [`EtcdMemberAddResponse`].
//! - `POST /v1/etcd/members/promote` [`EtcdPromoteRequest`] -> `{}`; 409 while the learner lags.
//!
//! Authenticated paths take `Authorization: Bearer <id>.<secret>`. Errors are [`ErrorResponse`].
//!
//! Compatibility: the paths keep `/v1/` while messages only grow by optional fields that either
//! side may leave out (`#[serde(default)]`), and unknown fields are ignored. A worker that sends
//! no kube-proxy or serving CSR (an older k0x) gets only its kubelet client certificate; a worker
//! that asked for them refuses an answer without them (an older controller), since it cannot run
//! kube-proxy or a verifiable kubelet without: controllers are upgraded first.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub const PATH_CA: &str = "/v1/ca";
pub const PATH_JOIN_WORKER: &str = "/v1/join/worker";
pub const PATH_JOIN_CONTROLLER: &str = "/v1/join/controller";
pub const PATH_ETCD_MEMBERS: &str = "/v1/etcd/members";
pub const PATH_ETCD_PROMOTE: &str = "/v1/etcd/members/promote";

/// Every error answer: one line saying what went wrong and what to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorResponse {
    pub error: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkerJoinRequest {
    pub node_name: String,
    /// PKCS#10 certificate signing request, PEM. Its subject is ignored: the server issues
    /// CN=system:node:<nodeName>, O=system:nodes. Its key is the one the node name is claimed
    /// with.
    pub csr: String,
    /// CSR of kube-proxy's client key. Its subject is ignored: the server issues
    /// CN=system:kube-proxy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kube_proxy_csr: Option<String>,
    /// CSR of the kubelet's serving key. Its subject is ignored (the server issues the node's
    /// identity, for server use); the names it asks for are the node name and the address the
    /// node serves on, and a request for any other name or address is refused. The certificate
    /// names the node name and the address the controller sees the join come from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubelet_serving_csr: Option<String>,
}

/// What a worker needs besides its certificate; the controller fills it from its configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkerSettings {
    /// kube-apiserver URLs (`https://addr:6443`).
    pub api_servers: Vec<String>,
    pub cluster_domain: String,
    pub pod_cidr: String,
    /// The service CIDR. The worker takes it into its configuration, so its kubelet's clusterDNS
    /// is the controllers' DNS Service IP, the tenth address of this range (`k0x_config::net`).
    #[serde(default)]
    pub service_cidr: String,
    /// The pod network every node runs (`spec.network.provider`); absent from older controllers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_provider: Option<k0x_config::schema::NetworkProvider>,
    /// Image references by role (`pause`, `coredns`, ...).
    pub images: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkerJoinResponse {
    /// kubelet client certificate, PEM.
    pub certificate: String,
    /// kube-proxy client certificate, PEM; present when the request carried its CSR.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kube_proxy_certificate: Option<String>,
    /// kubelet serving certificate, PEM; present when the request carried its CSR.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubelet_serving_certificate: Option<String>,
    /// Cluster CA certificate, PEM.
    pub ca: String,
    #[serde(flatten)]
    pub settings: WorkerSettings,
}

/// A certificate and its private key, PEM.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertAndKey {
    pub cert: String,
    pub key: String,
}

impl std::fmt::Debug for CertAndKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertAndKey")
            .field("cert", &self.cert)
            .field("key", &"<redacted>")
            .finish()
    }
}

/// The service-account signing key pair, PEM.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceAccountKeys {
    pub key: String,
    #[serde(rename = "pub")]
    pub public: String,
}

impl std::fmt::Debug for ServiceAccountKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceAccountKeys")
            .field("key", &"<redacted>")
            .field("public", &self.public)
            .finish()
    }
}

/// The shared secrets of the control plane, given to a joining controller.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ControllerSecrets {
    pub ca: CertAndKey,
    pub etcd_ca: CertAndKey,
    pub front_proxy_ca: CertAndKey,
    pub sa: ServiceAccountKeys,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ControllerJoinResponse {
    #[serde(flatten)]
    pub secrets: ControllerSecrets,
    /// Peer URLs of the current etcd members.
    pub etcd_peer_urls: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EtcdMemberAddRequest {
    /// The new member's etcd name (its node name).
    pub name: String,
    /// The new member's peer URL (`https://addr:2380`).
    pub peer_url: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EtcdMemberAddResponse {
    /// Member id, decimal (64-bit ids do not survive JSON numbers in every client).
    pub member_id: String,
    /// `--initial-cluster` to start the learner with (`--initial-cluster-state existing`).
    pub initial_cluster: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EtcdPromoteRequest {
    pub member_id: String,
}
