//! The `ClusterConfig` schema (`apiVersion: k0x.io/v1beta1`, `kind: ClusterConfig`).
//!
//! Field names follow k0s so that a k0s file (`k0s.k0sproject.io/v1beta1`) is accepted as is.
//! Defaults are filled in here and only here: every struct's `Default` is the documented default,
//! and `#[serde(default)]` makes a partial file mean "the defaults, except for what I wrote".

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// API version of a k0x configuration file.
pub const API_VERSION: &str = "k0x.io/v1beta1";
/// API version of a k0s configuration file, accepted for migration.
pub const K0S_API_VERSION: &str = "k0s.k0sproject.io/v1beta1";
/// The only kind a configuration file may have.
pub const KIND: &str = "ClusterConfig";

/// Extra command-line flags for a component, merged last (`name: value`, without the leading `--`).
pub type ExtraArgs = BTreeMap<String, String>;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClusterConfig {
    pub api_version: String,
    pub kind: String,
    #[serde(default)]
    pub metadata: Metadata,
    #[serde(default)]
    pub spec: Spec,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            api_version: API_VERSION.to_owned(),
            kind: KIND.to_owned(),
            metadata: Metadata::default(),
            spec: Spec::default(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Metadata {
    pub name: String,
}

impl Default for Metadata {
    fn default() -> Self {
        Self {
            name: "k0x".to_owned(),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Spec {
    pub api: Api,
    pub storage: Storage,
    pub network: Network,
    pub controller_manager: ComponentArgs,
    pub scheduler: ComponentArgs,
    pub worker_profiles: Vec<WorkerProfile>,
    pub images: Images,
    pub pki: Pki,
    pub probes: Probes,
    pub host: HostSettings,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Api {
    /// IP address the apiserver advertises; empty means the host's primary address. DNS names
    /// belong in `sans`.
    pub address: String,
    /// kube-apiserver secure port.
    pub port: u16,
    /// Extra subject alternative names (IPs or DNS names) for the apiserver certificate.
    pub sans: Vec<String>,
    /// Port of k0x's join API.
    #[serde(rename = "k0xApiPort", alias = "k0sApiPort")]
    pub k0x_api_port: u16,
    /// Extra kube-apiserver flags.
    pub extra_args: ExtraArgs,
}

impl Default for Api {
    fn default() -> Self {
        Self {
            address: String::new(),
            port: 6443,
            sans: Vec::new(),
            k0x_api_port: 9443,
            extra_args: ExtraArgs::new(),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Storage {
    #[serde(rename = "type")]
    pub kind: StorageType,
    pub etcd: Etcd,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StorageType {
    #[default]
    Etcd,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Etcd {
    /// IP address etcd peers reach this member on; empty means the host's primary address.
    pub peer_address: String,
    /// etcd client port (listens on loopback).
    pub client_port: u16,
    /// etcd peer port.
    pub peer_port: u16,
    /// Extra etcd flags.
    pub extra_args: ExtraArgs,
}

impl Default for Etcd {
    fn default() -> Self {
        Self {
            peer_address: String::new(),
            client_port: 2379,
            peer_port: 2380,
            extra_args: ExtraArgs::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Network {
    #[serde(rename = "podCIDR")]
    pub pod_cidr: String,
    #[serde(rename = "serviceCIDR")]
    pub service_cidr: String,
    pub cluster_domain: String,
    /// Pod network: `flannel` (vxlan between nodes, the default), `bridge` (one node only) or
    /// `custom` (the user installs a CNI).
    pub provider: NetworkProvider,
}

impl Default for Network {
    fn default() -> Self {
        Self {
            pod_cidr: "10.244.0.0/16".to_owned(),
            service_cidr: "10.96.0.0/12".to_owned(),
            cluster_domain: "cluster.local".to_owned(),
            provider: NetworkProvider::default(),
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NetworkProvider {
    #[default]
    Flannel,
    Bridge,
    Custom,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct ComponentArgs {
    pub extra_args: ExtraArgs,
}

/// Kubelet configuration overrides applied to workers that select the profile by name.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WorkerProfile {
    pub name: String,
    /// Fields merged into the generated KubeletConfiguration.
    #[serde(default)]
    pub values: BTreeMap<String, serde_json::Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Images {
    /// The pod sandbox ("pause") image containerd and the kubelet use. k0x builds and imports
    /// the image itself when the reference is in k0x's own domain (the default), so no registry
    /// is needed.
    pub pause: String,
    /// CoreDNS image; k0x builds it from the embedded coredns when it is in k0x's domain.
    pub coredns: String,
    /// metrics-server image; built by k0x like CoreDNS's. k0s's name for the field.
    #[serde(rename = "metricsserver")]
    pub metrics_server: String,
}

impl Default for Images {
    fn default() -> Self {
        Self {
            pause: "k0x.io/pause:3.10-k0x".to_owned(),
            coredns: "k0x.io/coredns:1.12.4-k0x".to_owned(),
            metrics_server: "k0x.io/metrics-server:0.8.0-k0x".to_owned(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Pki {
    pub key_type: KeyType,
    /// Leaf certificates are renewed at start when less than this many days remain.
    pub renew_before_days: u32,
}

impl Default for Pki {
    fn default() -> Self {
        Self {
            key_type: KeyType::default(),
            renew_before_days: 90,
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum KeyType {
    #[default]
    #[serde(rename = "ecdsa-p256")]
    EcdsaP256,
    #[serde(rename = "rsa-2048")]
    Rsa2048,
}

/// How long k0x waits for each component to become ready, and how long one may stay unhealthy
/// afterwards before it is restarted; slow ARM boards need more.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Probes {
    /// Readiness timeout per component in seconds (`etcd`, `kube-apiserver`, ...).
    pub timeout_seconds: BTreeMap<String, u32>,
    /// Timeout for components not listed in `timeoutSeconds`.
    pub default_timeout_seconds: u32,
    /// A component that was ready and then fails every probe for this many seconds is
    /// restarted; 0 never restarts it (status shows it degraded either way).
    pub restart_unhealthy_after_seconds: u32,
}

impl Default for Probes {
    fn default() -> Self {
        Self {
            timeout_seconds: BTreeMap::new(),
            default_timeout_seconds: 120,
            restart_unhealthy_after_seconds: 300,
        }
    }
}

/// What `k0x server` and `k0x worker` may change on the host itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct HostSettings {
    /// Load the kernel modules and set the sysctls a worker needs at start (until reboot) before
    /// the host checks run. `false` for hosts another tool prepares: k0x then only checks.
    pub apply_fixes: bool,
}

impl Default for HostSettings {
    fn default() -> Self {
        Self { apply_fixes: true }
    }
}
