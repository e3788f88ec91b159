//! What the PKI is generated from: a small, explicit input built from the cluster configuration
//! and the host (addresses, hostname), so tests and the server can state exactly what they want.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use k0x_config::schema::KeyType;
use k0x_config::{ClusterConfig, url_host};
use time::Duration;

/// Validity of a CA.
pub const CA_VALIDITY: Duration = Duration::days(3650);
/// Validity of a leaf certificate (components, admin, users by default, joining nodes).
pub const LEAF_VALIDITY: Duration = Duration::days(365);

/// Everything [`crate::ensure_pki`] needs to know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PkiRequest {
    /// Cluster name used in kubeconfigs (`metadata.name`).
    pub cluster_name: String,
    /// `spec.network.clusterDomain` (`cluster.local`).
    pub cluster_domain: String,
    /// First address of the service CIDR: the `kubernetes` Service's ClusterIP.
    pub service_ip: IpAddr,
    /// `spec.api.address` when set (an IP address).
    pub api_address: Option<String>,
    /// `spec.api.sans`: extra IPs or DNS names for the apiserver certificate.
    pub sans: Vec<String>,
    /// The host's non-loopback addresses.
    pub host_addresses: Vec<IpAddr>,
    /// The host name (a SAN of the etcd certificates).
    pub hostname: String,
    /// Node name of the local kubelet (`system:node:<name>`).
    pub node_name: String,
    /// Server URL written into the local components' kubeconfigs.
    pub local_api_url: String,
    pub key_type: KeyType,
    /// Leafs with less than this left are re-issued.
    pub renew_before: Duration,
    pub ca_validity: Duration,
    pub leaf_validity: Duration,
}

impl PkiRequest {
    /// The request for this host under `config`.
    pub fn from_config(config: &ClusterConfig) -> Self {
        let spec = &config.spec;
        let hostname = hostname();
        Self {
            cluster_name: config.metadata.name.clone(),
            cluster_domain: spec.network.cluster_domain.clone(),
            service_ip: spec.network.apiserver_service_ip(),
            api_address: Some(spec.api.address.trim().to_owned()).filter(|a| !a.is_empty()),
            sans: spec.api.sans.clone(),
            host_addresses: host_addresses(),
            node_name: hostname.to_ascii_lowercase(),
            hostname,
            local_api_url: format!("https://127.0.0.1:{}", spec.api.port),
            key_type: spec.pki.key_type,
            renew_before: Duration::days(i64::from(spec.pki.renew_before_days)),
            ca_validity: CA_VALIDITY,
            leaf_validity: LEAF_VALIDITY,
        }
    }
}

/// The host's addresses other than loopback and link-local, deduplicated and sorted.
pub fn host_addresses() -> Vec<IpAddr> {
    let Ok(addrs) = nix::ifaddrs::getifaddrs() else {
        return Vec::new();
    };
    let mut ips: Vec<IpAddr> = addrs
        .filter(|ifa| ifa.flags.contains(nix::net::if_::InterfaceFlags::IFF_UP))
        .filter_map(|ifa| {
            let addr = ifa.address?;
            addr.as_sockaddr_in()
                .map(|sin| IpAddr::V4(sin.ip()))
                .or_else(|| addr.as_sockaddr_in6().map(|sin6| IpAddr::V6(sin6.ip())))
        })
        .filter(is_routable)
        .collect();
    ips.sort();
    ips.dedup();
    ips
}

fn is_routable(ip: &IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => !v4.is_loopback() && !v4.is_link_local() && !v4.is_unspecified(),
        IpAddr::V6(v6) => !v6.is_loopback() && !v6.is_unspecified() && !is_unicast_link_local(v6),
    }
}

fn is_unicast_link_local(ip: &Ipv6Addr) -> bool {
    ip.segments()[0] & 0xffc0 == 0xfe80
}

/// The kernel's host name (`localhost` if it cannot be read).
pub fn hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|name| name.into_string().ok())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
}

/// The URL people reach the API at: `https://<spec.api.address or the first host address>:<port>`
/// (loopback when the host has no other address).
pub fn public_api_url(config: &ClusterConfig, host_addresses: &[IpAddr]) -> String {
    let api = &config.spec.api;
    let host = match api.address.trim() {
        "" => url_host(
            host_addresses
                .iter()
                .find(|ip| ip.is_ipv4())
                .or(host_addresses.first())
                .copied()
                .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        ),
        address => address
            .parse()
            .map_or_else(|_| address.to_owned(), url_host),
    };
    format!("https://{host}:{}", api.port)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_default_config() {
        let req = PkiRequest::from_config(&ClusterConfig::default());
        assert_eq!(req.service_ip.to_string(), "10.96.0.1");
        assert_eq!(req.cluster_domain, "cluster.local");
        assert_eq!(req.local_api_url, "https://127.0.0.1:6443");
        assert_eq!(req.renew_before, Duration::days(90));
        assert!(req.host_addresses.iter().all(|ip| !ip.is_loopback()));
        assert_eq!(req.api_address, None);
    }

    #[test]
    fn public_url_prefers_the_configured_address() {
        let mut config = ClusterConfig::default();
        let hosts = ["fd00::5".parse().unwrap(), "192.0.2.7".parse().unwrap()];
        assert_eq!(public_api_url(&config, &hosts), "https://192.0.2.7:6443");
        assert_eq!(
            public_api_url(&config, &hosts[..1]),
            "https://[fd00::5]:6443"
        );
        assert_eq!(public_api_url(&config, &[]), "https://127.0.0.1:6443");
        config.spec.api.address = "api.example.com".into();
        config.spec.api.port = 7443;
        assert_eq!(
            public_api_url(&config, &hosts),
            "https://api.example.com:7443"
        );
    }
}
