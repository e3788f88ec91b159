//! Signing a node's CSR: the join server decides what is issued, the signer only signs.
//!
//! A CSR proves that the node holds the private key; everything else in it is a wish. The server
//! builds a [`CertSpec`] (subject, names, usage) from what it knows about the node, and the
//! signer puts exactly that over the CSR's public key. Whatever the signer returns is checked
//! again by the server (subject, names, usage and public key) before it is handed out.
//!
//! The server takes any [`CsrSigner`]; the cluster CA of the pki crate is the one k0x uses.

use std::net::IpAddr;

use k0x_pki::{CertSpec, CertificateAuthority, Usage};
use rcgen::CertificateSigningRequestParams;

use crate::Error;

/// The kubelet client identity of node `name`: CN=system:node:<name>, O=system:nodes.
pub fn kubelet_client(node_name: &str) -> CertSpec {
    CertSpec::client(format!("system:node:{node_name}"), &["system:nodes"])
}

/// kube-proxy's identity: CN=system:kube-proxy, the user Kubernetes' bootstrap policy binds to
/// `system:node-proxier`. Every worker gets its own key and certificate under this one name.
pub fn kube_proxy_client() -> CertSpec {
    CertSpec::client("system:kube-proxy", &[])
}

/// The kubelet serving certificate of node `name`, reached at `address`: the node's identity
/// for server use, with the node name and that address (when known) as its only names.
pub fn kubelet_serving(node_name: &str, address: Option<IpAddr>) -> CertSpec {
    CertSpec {
        dns_names: vec![node_name.to_owned()],
        ips: address.into_iter().collect(),
        usage: Usage::Server,
        ..kubelet_client(node_name)
    }
}

/// Signs a CSR (PEM, signature already verified by the server) as exactly `spec`, returning the
/// certificate PEM.
pub trait CsrSigner: Send + Sync {
    fn sign_csr(&self, csr_pem: &str, spec: &CertSpec) -> Result<String, Error>;
}

/// The cluster CA of the pki crate signs as the join server asks: only the CSR's public key is
/// used, subject, names and usages are the server's.
impl CsrSigner for CertificateAuthority {
    fn sign_csr(&self, csr_pem: &str, spec: &CertSpec) -> Result<String, Error> {
        let csr = CertificateSigningRequestParams::from_pem(csr_pem)
            .map_err(|e| Error::Signing(format!("CSR: {e}")))?;
        self.sign(spec, &csr.public_key, k0x_pki::LEAF_VALIDITY)
            .map_err(|e| Error::Signing(e.to_string()))
    }
}
