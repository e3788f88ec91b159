//! Signing a node's CSR: the join server decides the subject, the signer only signs.
//!
//! The server takes any [`CsrSigner`]; the cluster CA of the pki crate is the one k0x uses.
//! Whatever the signer returns is checked again by the server (subject and public key) before it
//! is handed out.

use k0x_pki::{CertSpec, CertificateAuthority};
use rcgen::CertificateSigningRequestParams;

use crate::Error;

/// The subject the server issues, whatever the CSR asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientSubject {
    pub common_name: String,
    pub organizations: Vec<String>,
}

impl ClientSubject {
    /// The kubelet client identity of node `name`: CN=system:node:<name>, O=system:nodes.
    pub fn kubelet(node_name: &str) -> Self {
        Self {
            common_name: format!("system:node:{node_name}"),
            organizations: vec!["system:nodes".into()],
        }
    }
}

/// Signs a CSR (PEM, signature already verified by the server) as a TLS client certificate with
/// exactly `subject`, returning the certificate PEM.
pub trait CsrSigner: Send + Sync {
    fn sign_client_csr(&self, csr_pem: &str, subject: &ClientSubject) -> Result<String, Error>;
}

/// The cluster CA of the pki crate signs as the join server asks: only the CSR's public key is
/// used, subject and usages are the server's.
impl CsrSigner for CertificateAuthority {
    fn sign_client_csr(&self, csr_pem: &str, subject: &ClientSubject) -> Result<String, Error> {
        let csr = CertificateSigningRequestParams::from_pem(csr_pem)
            .map_err(|e| Error::Signing(format!("CSR: {e}")))?;
        let organizations: Vec<&str> = subject.organizations.iter().map(String::as_str).collect();
        let spec = CertSpec::client(subject.common_name.as_str(), &organizations);
        self.sign(&spec, &csr.public_key, k0x_pki::LEAF_VALIDITY)
            .map_err(|e| Error::Signing(e.to_string()))
    }
}
