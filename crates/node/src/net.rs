//! Addresses read from configuration fields, with errors that name the field. Which address of
//! a configured network is what lives in `k0x_config::net`.

use std::net::IpAddr;

use crate::NodeError;

/// Parses an IP address from a config field.
pub fn parse_ip(field: &str, value: &str) -> Result<IpAddr, NodeError> {
    value.parse().map_err(|_| NodeError::InvalidConfig {
        field: field.to_owned(),
        value: value.to_owned(),
        expected: "IP address",
        hint: "write an IPv4 or IPv6 address of this host, or leave it empty to detect one",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_the_field() {
        let err = parse_ip("spec.api.address", "banana")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("spec.api.address:"), "{err}");
    }
}
