//! The one error a caller can cause: a listen address the balancer cannot have.

use std::io::ErrorKind;
use std::net::SocketAddr;

/// The balancer could not listen on its address.
#[derive(Debug, thiserror::Error)]
#[error("{}", describe(.addr, .source))]
pub struct ListenError {
    pub addr: SocketAddr,
    pub source: std::io::Error,
}

fn describe(addr: &SocketAddr, source: &std::io::Error) -> String {
    let what = format!("the API load balancer cannot listen on {addr}");
    let port = addr.port();
    match source.kind() {
        ErrorKind::AddrInUse => format!(
            "{what}: the address is in use; stop the process that holds it \
             (`ss -ltnp 'sport = :{port}'` names it) or give the balancer another address"
        ),
        ErrorKind::AddrNotAvailable => format!(
            "{what}: no interface of this host has address {}; give the balancer a local address",
            addr.ip()
        ),
        ErrorKind::PermissionDenied => {
            format!("{what}: permission denied; run k0x as root or use a port above 1023")
        }
        _ => format!("{what}: {source}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_in_use_says_what_where_and_how_to_fix_on_one_line() {
        let error = ListenError {
            addr: SocketAddr::from(([127, 0, 0, 1], 7443)),
            source: ErrorKind::AddrInUse.into(),
        };
        let message = error.to_string();
        assert!(message.contains("127.0.0.1:7443"), "{message}");
        assert!(message.contains("in use"), "{message}");
        assert!(message.contains("sport = :7443"), "{message}");
        assert!(!message.contains('\n'), "{message}");
    }
}
