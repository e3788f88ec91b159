//! Which address of the configured networks is what: the one home of the service-CIDR arithmetic.
//!
//! The apiserver certificate names the first service IP, the kubelet's clusterDNS and the DNS
//! Service name the tenth, and validation refuses a service CIDR too small to hold it. They all
//! ask here, so the three can never disagree about an address.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use ipnet::IpNet;

use crate::schema::Network;

/// Offset of the `kubernetes` Service's ClusterIP in the service CIDR (10.96.0.1).
pub const APISERVER_SERVICE_OFFSET: u32 = 1;
/// Offset of the cluster DNS Service's ClusterIP in the service CIDR (kubeadm and k0s use the
/// tenth: 10.96.0.10).
pub const DNS_SERVICE_OFFSET: u32 = 10;

impl Network {
    /// The `kubernetes` Service IP: the first address of the service CIDR (10.96.0.1). Valid for
    /// a configuration that passed validation (`load`, `from_yaml`, `default`); panics naming the
    /// field for one that did not.
    pub fn apiserver_service_ip(&self) -> IpAddr {
        host_address(self.service_net(), APISERVER_SERVICE_OFFSET)
            .expect("spec.network.serviceCIDR was validated to hold the service IPs")
    }

    /// The cluster DNS Service IP: the tenth address of the service CIDR (10.96.0.10). Same
    /// contract as [`Network::apiserver_service_ip`].
    pub fn dns_service_ip(&self) -> IpAddr {
        host_address(self.service_net(), DNS_SERVICE_OFFSET)
            .expect("spec.network.serviceCIDR was validated to hold the service IPs")
    }

    fn service_net(&self) -> IpNet {
        parse_cidr(&self.service_cidr).expect("spec.network.serviceCIDR was validated")
    }
}

/// A CIDR written as its network address (`10.96.0.0/12`, not `10.96.0.1/12`).
fn parse_cidr(text: &str) -> Option<IpNet> {
    IpNet::from_str(text).ok().filter(|net| net.trunc() == *net)
}

/// The address `offset` after the network address of `net`, when it is a host address of `net`
/// (neither past its end nor its broadcast address).
pub fn host_address(net: IpNet, offset: u32) -> Option<IpAddr> {
    let address = match net.network() {
        IpAddr::V4(base) => IpAddr::V4(Ipv4Addr::from(u32::from(base).checked_add(offset)?)),
        IpAddr::V6(base) => IpAddr::V6(Ipv6Addr::from(
            u128::from(base).checked_add(u128::from(offset))?,
        )),
    };
    (net.contains(&address) && address != net.broadcast()).then_some(address)
}

/// The longest prefix of a `net`-sized family that still holds the DNS Service IP, for messages.
pub(crate) fn longest_service_prefix(net: IpNet) -> u8 {
    let host_bits = u32::BITS - (DNS_SERVICE_OFFSET + 1).leading_zeros();
    net.max_prefix_len() - u8::try_from(host_bits).expect("a few bits")
}

/// An address as the host part of a URL: IPv6 in brackets (`https://[fd00::1]:6443`).
pub fn url_host(address: IpAddr) -> String {
    match address {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("[{v6}]"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_ips_of_the_default_network() {
        let network = Network::default();
        assert_eq!(network.apiserver_service_ip().to_string(), "10.96.0.1");
        assert_eq!(network.dns_service_ip().to_string(), "10.96.0.10");
    }

    #[test]
    fn service_ips_of_an_ipv6_network() {
        let network = Network {
            service_cidr: "fd00:10:96::/108".into(),
            ..Network::default()
        };
        assert_eq!(network.apiserver_service_ip().to_string(), "fd00:10:96::1");
        assert_eq!(network.dns_service_ip().to_string(), "fd00:10:96::a");
    }

    #[test]
    fn host_addresses_stay_inside_the_network_and_below_its_broadcast() {
        let net = |text: &str| text.parse::<IpNet>().unwrap();
        assert_eq!(
            host_address(net("10.0.0.0/28"), 10).unwrap().to_string(),
            "10.0.0.10"
        );
        assert_eq!(host_address(net("10.0.0.0/28"), 15), None, "broadcast");
        assert_eq!(host_address(net("10.0.0.0/29"), 10), None, "past the end");
        assert_eq!(host_address(net("255.255.255.255/32"), 1), None);
        assert_eq!(longest_service_prefix(net("10.0.0.0/8")), 28);
        assert_eq!(longest_service_prefix(net("fd00::/8")), 124);
    }

    #[test]
    fn v6_hosts_are_bracketed() {
        assert_eq!(url_host("::1".parse().unwrap()), "[::1]");
        assert_eq!(url_host("127.0.0.1".parse().unwrap()), "127.0.0.1");
    }
}
