//! Reading certificates back: what k0x needs to decide whether existing material can be kept
//! (subject, SANs, validity, the key it belongs to, the CA that signed it).

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::Path;

use rcgen::{KeyPair, PublicKeyData};
use time::OffsetDateTime;
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::FromDer;

use crate::error::{PkiError, Result};

/// The facts of one parsed certificate.
#[derive(Debug, Clone)]
pub struct CertInfo {
    pub pem: String,
    pub der: Vec<u8>,
    pub common_name: String,
    pub organizations: Vec<String>,
    pub sans: BTreeSet<String>,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
    pub is_ca: bool,
    public_key: Vec<u8>,
}

impl CertInfo {
    /// Parses the single `CERTIFICATE` PEM block read from `path`.
    pub fn parse(path: &Path, pem: &str) -> Result<Self> {
        let corrupt = |problem: String| {
            PkiError::material(
                path,
                problem,
                "restore it from a backup, or remove it and its key so both are re-issued",
            )
        };
        let (_, block) = x509_parser::pem::parse_x509_pem(pem.as_bytes())
            .map_err(|err| corrupt(format!("is not a PEM certificate ({err})")))?;
        if block.label != "CERTIFICATE" {
            return Err(corrupt(format!(
                "holds a PEM block labelled {:?}, expected CERTIFICATE",
                block.label
            )));
        }
        let (_, cert) = X509Certificate::from_der(&block.contents)
            .map_err(|err| corrupt(format!("holds a corrupt certificate ({err})")))?;
        Ok(Self::from_parsed(pem, &block.contents, &cert))
    }

    fn from_parsed(pem: &str, der: &[u8], cert: &X509Certificate<'_>) -> Self {
        let subject = cert.subject();
        let text = |attr: &x509_parser::x509::AttributeTypeAndValue<'_>| {
            attr.as_str().unwrap_or_default().to_owned()
        };
        Self {
            pem: pem.to_owned(),
            der: der.to_vec(),
            common_name: subject
                .iter_common_name()
                .next()
                .map(text)
                .unwrap_or_default(),
            organizations: subject.iter_organization().map(text).collect(),
            sans: san_set(cert),
            not_before: cert.validity().not_before.to_datetime(),
            not_after: cert.validity().not_after.to_datetime(),
            is_ca: cert.is_ca(),
            public_key: cert.public_key().subject_public_key.data.to_vec(),
        }
    }

    /// True when `key` is the private half of this certificate's public key.
    pub fn matches_key(&self, key: &KeyPair) -> bool {
        self.public_key == key.der_bytes()
    }

    /// True when this certificate's signature verifies against `issuer`'s public key.
    pub fn is_signed_by(&self, issuer: &CertInfo) -> bool {
        let (Ok((_, cert)), Ok((_, ca))) = (
            X509Certificate::from_der(&self.der),
            X509Certificate::from_der(&issuer.der),
        ) else {
            return false;
        };
        cert.issuer() == ca.subject() && cert.verify_signature(Some(ca.public_key())).is_ok()
    }
}

/// SANs in a comparable form: `DNS:name` and `IP:address`.
fn san_set(cert: &X509Certificate<'_>) -> BTreeSet<String> {
    let Ok(Some(ext)) = cert.subject_alternative_name() else {
        return BTreeSet::new();
    };
    ext.value
        .general_names
        .iter()
        .filter_map(|name| match name {
            GeneralName::DNSName(dns) => Some(dns_san(dns)),
            GeneralName::IPAddress(bytes) => ip_from_bytes(bytes).map(ip_san),
            _ => None,
        })
        .collect()
}

pub fn dns_san(name: &str) -> String {
    format!("DNS:{}", name.to_ascii_lowercase())
}

pub fn ip_san(ip: IpAddr) -> String {
    format!("IP:{ip}")
}

fn ip_from_bytes(bytes: &[u8]) -> Option<IpAddr> {
    match bytes.len() {
        4 => <[u8; 4]>::try_from(bytes).ok().map(IpAddr::from),
        16 => <[u8; 16]>::try_from(bytes).ok().map(IpAddr::from),
        _ => None,
    }
}
