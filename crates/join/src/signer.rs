//! Signing a node's CSR: the join server decides the subject, the signer only signs.
//!
//! The server takes any [`CsrSigner`]; the binary wires the PKI crate's signer, and [`CaSigner`]
//! is a self-contained one over a CA certificate and key in PEM. Whatever the signer returns is
//! checked again by the server (subject and public key) before it is handed out.

use std::time::Duration;

use rcgen::{
    CertificateParams, CertificateSigningRequestParams, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, Issuer, KeyPair, KeyUsagePurpose, SerialNumber,
};

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
    fn sign_client_csr(&self, csr_pem: &str, subject: &ClientSubject) -> Result<String, String>;
}

/// A [`CsrSigner`] holding a CA certificate and key.
pub struct CaSigner {
    issuer: Issuer<'static, KeyPair>,
    validity: Duration,
}

impl std::fmt::Debug for CaSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaSigner")
            .field("validity", &self.validity)
            .finish_non_exhaustive()
    }
}

impl CaSigner {
    /// A signer from the CA certificate and key (PEM), issuing certificates valid for `validity`.
    pub fn from_pem(
        ca_cert_pem: &str,
        ca_key_pem: &str,
        validity: Duration,
    ) -> Result<Self, String> {
        let key = KeyPair::from_pem(ca_key_pem).map_err(|e| format!("CA key: {e}"))?;
        let issuer = Issuer::from_ca_cert_pem(ca_cert_pem, key)
            .map_err(|e| format!("CA certificate: {e}"))?;
        Ok(Self { issuer, validity })
    }
}

impl CsrSigner for CaSigner {
    fn sign_client_csr(&self, csr_pem: &str, subject: &ClientSubject) -> Result<String, String> {
        let mut csr =
            CertificateSigningRequestParams::from_pem(csr_pem).map_err(|e| format!("CSR: {e}"))?;
        csr.params = client_params(subject, self.validity);
        csr.signed_by(&self.issuer)
            .map(|cert| cert.pem())
            .map_err(|e| format!("signing: {e}"))
    }
}

fn client_params(subject: &ClientSubject, validity: Duration) -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut name = DistinguishedName::new();
    for org in &subject.organizations {
        name.push(DnType::OrganizationName, org.as_str());
    }
    name.push(DnType::CommonName, subject.common_name.as_str());
    params.distinguished_name = name;
    let now = time::OffsetDateTime::now_utc();
    // Backdated a little so that nodes with a slightly slow clock accept it at once.
    params.not_before = now - time::Duration::minutes(5);
    params.not_after = now + validity;
    let mut serial = rand::random::<[u8; 16]>();
    serial[0] &= 0x7f; // a positive DER integer
    params.serial_number = Some(SerialNumber::from_slice(&serial));
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params
}
