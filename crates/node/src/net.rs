//! Address arithmetic on the configured CIDRs, with errors that name the config field.

use std::net::IpAddr;

use ipnet::IpNet;

use crate::NodeError;

/// Parses the first CIDR of a (possibly comma-separated, dual-stack) CIDR list.
pub fn first_cidr(field: &str, value: &str) -> Result<IpNet, NodeError> {
    let first = value.split(',').next().unwrap_or_default().trim();
    first.parse().map_err(|_| NodeError::InvalidConfig {
        field: field.to_owned(),
        value: value.to_owned(),
        expected: "CIDR",
        hint: "write it as address/prefix, for example 10.96.0.0/12",
    })
}

/// The `n`th address of `net` counted from its network address (`10.96.0.0/12`, 10 ->
/// `10.96.0.10`), as kubeadm and k0s pick the cluster DNS address.
pub fn nth_address(field: &str, net: IpNet, n: u32) -> Result<IpAddr, NodeError> {
    let too_small = || NodeError::InvalidConfig {
        field: field.to_owned(),
        value: net.to_string(),
        expected: "CIDR large enough for the cluster DNS address",
        hint: "use a prefix of /28 or shorter",
    };
    let addr = match net.network() {
        IpAddr::V4(base) => {
            IpAddr::V4(u32::from(base).checked_add(n).ok_or_else(too_small)?.into())
        }
        IpAddr::V6(base) => IpAddr::V6(
            u128::from(base)
                .checked_add(u128::from(n))
                .ok_or_else(too_small)?
                .into(),
        ),
    };
    if net.contains(&addr) && addr != net.broadcast() {
        Ok(addr)
    } else {
        Err(too_small())
    }
}

/// The cluster DNS address: the 10th address of the service CIDR.
pub fn cluster_dns(service_cidr: &str) -> Result<IpAddr, NodeError> {
    let field = "spec.network.serviceCIDR";
    nth_address(field, first_cidr(field, service_cidr)?, 10)
}

/// Parses an IP address from a config field.
pub fn parse_ip(field: &str, value: &str) -> Result<IpAddr, NodeError> {
    value.parse().map_err(|_| NodeError::InvalidConfig {
        field: field.to_owned(),
        value: value.to_owned(),
        expected: "IP address",
        hint: "write an IPv4 or IPv6 address of this host, or leave it empty to detect one",
    })
}

/// Formats an address for use in a URL (`[v6]` brackets).
pub fn url_host(addr: IpAddr) -> String {
    match addr {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("[{v6}]"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_dns_is_tenth_service_address() {
        assert_eq!(
            cluster_dns("10.96.0.0/12").unwrap().to_string(),
            "10.96.0.10"
        );
        assert_eq!(
            cluster_dns("10.43.0.0/16,fd00::/108").unwrap().to_string(),
            "10.43.0.10"
        );
        assert_eq!(
            cluster_dns("fd00:10::/108").unwrap().to_string(),
            "fd00:10::a"
        );
    }

    #[test]
    fn errors_name_the_field() {
        let err = cluster_dns("10.96.0.0/30").unwrap_err().to_string();
        assert!(err.starts_with("spec.network.serviceCIDR:"), "{err}");
        let err = cluster_dns("banana").unwrap_err().to_string();
        assert!(err.contains("\"banana\" is not a valid CIDR"), "{err}");
    }

    #[test]
    fn v6_hosts_are_bracketed() {
        assert_eq!(url_host("::1".parse().unwrap()), "[::1]");
        assert_eq!(url_host("127.0.0.1".parse().unwrap()), "127.0.0.1");
    }
}
