//! Certificate authorities and the certificates they sign.
//!
//! Every certificate gets an explicit validity window, a random serial (rcgen's default is a hash
//! of the public key, which would repeat when a key is re-used) and key usages matching what it is
//! for, so Go's crypto/x509 and openssl accept the chain as kubeadm-issued ones.

use std::net::IpAddr;
use std::path::Path;

use base64::Engine as _;
use k0x_config::DataDir;
use k0x_config::schema::KeyType;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PublicKeyData, SanType, SerialNumber,
};
use sha2::{Digest, Sha256};
use time::{Duration, OffsetDateTime};

use crate::error::{PkiError, Result};
use crate::x509::CertInfo;
use crate::{der, fsio, keys};

/// Certificates start a few minutes in the past so a node whose clock is slightly behind the
/// controller's still accepts them.
const CLOCK_SKEW: Duration = Duration::minutes(5);

/// What a certificate is for; decides its key usages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Usage {
    Server,
    Client,
    ServerAndClient,
}

/// The subject and names of a certificate to issue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertSpec {
    pub common_name: String,
    /// One `O` attribute each: Kubernetes reads them as groups.
    pub organizations: Vec<String>,
    pub dns_names: Vec<String>,
    pub ips: Vec<IpAddr>,
    pub usage: Usage,
}

impl CertSpec {
    /// A client certificate (no SANs).
    pub fn client(common_name: impl Into<String>, organizations: &[&str]) -> Self {
        Self {
            common_name: common_name.into(),
            organizations: organizations.iter().map(|o| (*o).to_owned()).collect(),
            dns_names: Vec::new(),
            ips: Vec::new(),
            usage: Usage::Client,
        }
    }
}

/// A CA: its certificate and private key.
#[derive(Debug)]
pub struct CertificateAuthority {
    cert: CertInfo,
    key: KeyPair,
}

impl CertificateAuthority {
    /// A new self-signed CA valid for `validity` from now.
    pub fn generate(common_name: &str, key_type: KeyType, validity: Duration) -> Result<Self> {
        let key = keys::generate(key_type)?;
        let mut params = base_params(validity);
        params.distinguished_name = name(common_name, &[]);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
        ];
        let cert = params
            .self_signed(&key)
            .map_err(|err| PkiError::crypto(format!("self-signing CA {common_name}"), &err))?;
        let pem = cert.pem();
        let info = CertInfo::parse(Path::new(common_name), &pem)?;
        Ok(Self { cert: info, key })
    }

    /// Loads the CA `name` (a [`k0x_config::pki_names`] name) from `data`; `None` when neither
    /// its certificate nor its key exists.
    pub fn load(data: &DataDir, name: &str) -> Result<Option<Self>> {
        let (cert_path, key_path) = (data.pki_cert(name), data.pki_key(name));
        let cert = fsio::read_optional(&cert_path)?;
        let key = fsio::read_optional(&key_path)?;
        let (cert_pem, key_pem) = match (cert, key) {
            (None, None) => return Ok(None),
            (Some(cert), Some(key)) => (cert, key),
            (Some(_), None) => return Err(half_ca(&key_path, &cert_path)),
            (None, Some(_)) => return Err(half_ca(&cert_path, &key_path)),
        };
        Self::parse(&cert_path, &cert_pem, &key_path, &key_pem).map(Some)
    }

    /// A CA from its certificate and key in PEM (a joining controller's, a test's).
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Self> {
        Self::parse(
            Path::new("CA certificate"),
            cert_pem,
            Path::new("CA key"),
            key_pem,
        )
    }

    fn parse(cert_path: &Path, cert_pem: &str, key_path: &Path, key_pem: &str) -> Result<Self> {
        let cert = CertInfo::parse(cert_path, cert_pem)?;
        let key = keys::parse(key_path, key_pem)?;
        if !cert.matches_key(&key) {
            return Err(PkiError::material(
                cert_path,
                format!("does not belong to the key {}", key_path.display()),
                "restore the matching CA certificate and key pair from a backup",
            ));
        }
        if !cert.is_ca {
            return Err(PkiError::material(
                cert_path,
                "is not a CA certificate (basicConstraints CA:FALSE)",
                "restore the CA from a backup",
            ));
        }
        Ok(Self { cert, key })
    }

    /// Writes the key (0600), then the certificate (0644) under `data` as `name`, durably.
    pub fn store(&self, data: &DataDir, name: &str) -> Result<()> {
        let key_path = data.pki_key(name);
        let key_pem = self.key.serialize_pem();
        fsio::replace_unsynced(&key_path, key_pem.as_bytes(), fsio::SECRET_MODE)?;
        let cert_path = data.pki_cert(name);
        fsio::replace_unsynced(&cert_path, self.cert.pem.as_bytes(), fsio::PUBLIC_MODE)?;
        fsio::sync_dir(cert_path.parent().unwrap_or(&data.pki()))
    }

    /// The CA certificate.
    pub fn cert(&self) -> &CertInfo {
        &self.cert
    }

    /// The CA certificate as PEM.
    pub fn cert_pem(&self) -> &str {
        &self.cert.pem
    }

    /// Hex SHA-256 of the CA certificate's DER: the pin a join token carries.
    pub fn pin(&self) -> String {
        hex::encode(Sha256::digest(&self.cert.der))
    }

    /// Issues a certificate for `spec` with a new key of `key_type`; returns (cert PEM, key).
    pub fn issue(
        &self,
        spec: &CertSpec,
        key_type: KeyType,
        validity: Duration,
    ) -> Result<(String, KeyPair)> {
        let key = keys::generate(key_type)?;
        let pem = self.sign(spec, &key, validity)?;
        Ok((pem, key))
    }

    /// Signs a certificate for `spec` over `public_key`, valid for `validity` (never beyond the
    /// CA's own expiry).
    pub fn sign(
        &self,
        spec: &CertSpec,
        public_key: &impl PublicKeyData,
        validity: Duration,
    ) -> Result<String> {
        let mut params = base_params(validity);
        params.not_after = params.not_after.min(self.cert.not_after);
        params.distinguished_name = name(&spec.common_name, &spec.organizations);
        params.subject_alt_names = sans(spec)?;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = match spec.usage {
            Usage::Server => vec![ExtendedKeyUsagePurpose::ServerAuth],
            Usage::Client => vec![ExtendedKeyUsagePurpose::ClientAuth],
            Usage::ServerAndClient => vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ],
        };
        params.use_authority_key_identifier_extension = true;
        let what = || format!("signing a certificate for {}", spec.common_name);
        let issuer = Issuer::from_ca_cert_pem(&self.cert.pem, &self.key)
            .map_err(|err| PkiError::crypto(what(), &err))?;
        let cert = params
            .signed_by(public_key, &issuer)
            .map_err(|err| PkiError::crypto(what(), &err))?;
        if spec.organizations.len() <= 1 {
            return Ok(cert.pem());
        }
        let subject = der::subject(&spec.common_name, &spec.organizations);
        der::replace_subject(cert.der(), &subject, &self.key).map(|der| pem_encode(&der))
    }
}

fn half_ca(missing: &Path, present: &Path) -> PkiError {
    PkiError::material(
        missing,
        format!("is missing while {} exists", present.display()),
        "restore the CA certificate and key from a backup (a CA is never replaced silently)",
    )
}

fn base_params(validity: Duration) -> CertificateParams {
    let now = OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH);
    let mut params = CertificateParams::default();
    params.not_before = now - CLOCK_SKEW;
    params.not_after = now + validity;
    let mut serial: [u8; 16] = rand::random();
    serial[0] &= 0x7f;
    serial[0] |= 0x01;
    params.serial_number = Some(SerialNumber::from_slice(&serial));
    params
}

fn name(common_name: &str, organizations: &[String]) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    if let Some(org) = organizations.first() {
        dn.push(DnType::OrganizationName, org.as_str());
    }
    dn.push(DnType::CommonName, common_name);
    dn
}

fn sans(spec: &CertSpec) -> Result<Vec<SanType>> {
    let dns = spec.dns_names.iter().map(|name| {
        name.as_str().try_into().map(SanType::DnsName).map_err(|_| {
            PkiError::Input(format!(
                "{name:?} is not a valid DNS name for a certificate SAN"
            ))
        })
    });
    let ips = spec.ips.iter().map(|ip| Ok(SanType::IpAddress(*ip)));
    dns.chain(ips).collect()
}

/// PEM armour for a DER certificate (64-column base64, as openssl writes it).
pub fn pem_encode(der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}

/// Hex SHA-256 of the DER of the first certificate in `cert_pem` (the join token's CA pin).
pub fn ca_pin(cert_pem: &str) -> Result<String> {
    let info = CertInfo::parse(Path::new("CA certificate"), cert_pem)?;
    Ok(hex::encode(Sha256::digest(&info.der)))
}

/// The cluster CA (`pki/ca.{crt,key}`); an error telling how to create it when missing.
pub fn load_cluster_ca(data: &DataDir) -> Result<CertificateAuthority> {
    CertificateAuthority::load(data, k0x_config::pki_names::CA)?.ok_or_else(|| {
        PkiError::material(
            &data.pki_cert(k0x_config::pki_names::CA),
            "not found: the cluster PKI has not been initialised in this data dir",
            "start the controller first (`k0x server`), or run `k0x pki init`; \
             pass --data-dir if the cluster uses another one",
        )
    })
}
