//! Certificates for tests: the node's real PKI from the pki crate, plus a stand-alone CA for
//! certificates that must NOT be trusted (a rogue client).

use k0x_config::{ClusterConfig, DataDir};
use k0x_pki::PkiRequest;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

/// A CA: its certificate PEM and the issuer that signs leaves.
pub struct TestCa {
    pub cert_pem: String,
    issuer: Issuer<'static, KeyPair>,
    key_pem: String,
}

impl TestCa {
    pub fn new(common_name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::new()).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate().unwrap();
        let cert_pem = params.self_signed(&key).unwrap().pem();
        let key_pem = key.serialize_pem();
        Self {
            cert_pem,
            issuer: Issuer::new(params, key),
            key_pem,
        }
    }

    /// A leaf certificate and key (PEM) for `cn`/`orgs` with `sans`, for server and/or client use.
    pub fn leaf(&self, cn: &str, orgs: &[&str], sans: &[&str], usage: Usage) -> (String, String) {
        let sans: Vec<String> = sans.iter().map(|s| (*s).to_owned()).collect();
        let mut params = CertificateParams::new(sans).unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        for org in orgs {
            params
                .distinguished_name
                .push(DnType::OrganizationName, *org);
        }
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = match usage {
            Usage::Server => vec![ExtendedKeyUsagePurpose::ServerAuth],
            Usage::Client => vec![ExtendedKeyUsagePurpose::ClientAuth],
            Usage::Both => vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ],
        };
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }
}

#[derive(Clone, Copy)]
pub enum Usage {
    Server,
    Client,
    Both,
}

/// Writes the node's PKI with the pki crate, as the server does, for a node called `node` whose
/// only host address is `address`.
pub fn generate(data: &DataDir, node: &str, address: &str) {
    let mut request = PkiRequest::from_config(&ClusterConfig::default());
    request.node_name = node.to_owned();
    request.hostname = node.to_owned();
    request.host_addresses = vec![address.parse().unwrap()];
    k0x_pki::ensure_pki(data, &request).unwrap();
}
