//! The secrets every controller of one cluster shares: the three CAs and the service-account
//! key pair. A joining controller receives them over the join API and installs them before
//! [`crate::ensure_pki`] issues its own leafs, so all controllers sign and verify alike.

use std::fmt;
use std::path::Path;

use k0x_config::layout::{PRIVATE_DIR_MODE, ensure_dir};
use k0x_config::{DataDir, pki_names};
use serde::{Deserialize, Serialize};

use crate::authority::CertificateAuthority;
use crate::error::{CREATE_DIR, PkiError, Result};
use crate::x509::CertInfo;
use crate::{fsio, keys};

/// A CA certificate and its private key, as PEM.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaPair {
    pub cert: String,
    pub key: String,
}

/// The CAs and service-account keys of a cluster. `Debug` never shows the keys.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ControllerSecrets {
    pub ca: CaPair,
    pub etcd_ca: CaPair,
    pub front_proxy_ca: CaPair,
    pub sa_key: String,
    pub sa_pub: String,
}

impl fmt::Debug for CaPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CaPair { .. }")
    }
}

impl fmt::Debug for ControllerSecrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ControllerSecrets { .. }")
    }
}

impl ControllerSecrets {
    /// Reads and checks the secrets of the cluster whose PKI is in `data`.
    pub fn read(data: &DataDir) -> Result<Self> {
        let ca = |name: &str| -> Result<CaPair> {
            let ca = CertificateAuthority::load(data, name)?.ok_or_else(|| {
                PkiError::material(
                    &data.pki_cert(name),
                    "not found",
                    "initialise the PKI first (start the controller or run `k0x pki init`)",
                )
            })?;
            Ok(CaPair {
                cert: ca.cert_pem().to_owned(),
                key: read_required(&data.pki_key(name))?,
            })
        };
        Ok(Self {
            ca: ca(pki_names::CA)?,
            etcd_ca: ca(pki_names::ETCD_CA)?,
            front_proxy_ca: ca(pki_names::FRONT_PROXY_CA)?,
            sa_key: read_required(&data.sa_key())?,
            sa_pub: read_required(&data.sa_pub())?,
        })
    }

    /// Writes the secrets into `data` (keys 0600). Files already holding the same content are
    /// left alone; a file holding something else is an error, because it means this data dir
    /// belongs to another cluster. Everything is checked before anything is written.
    pub fn install(&self, data: &DataDir) -> Result<()> {
        let files = self.files(data);
        for (path, contents, _) in &files {
            if fsio::read_optional(path)?.is_some_and(|existing| existing != *contents) {
                return Err(PkiError::material(
                    path,
                    "already exists and differs from the cluster's copy: this data dir belongs \
                     to another cluster",
                    "remove its pki directory (or use another --data-dir) before joining",
                ));
            }
        }
        self.validate(data)?;
        data.create()
            .map_err(|err| PkiError::io(CREATE_DIR, data.root(), err))?;
        for dir in [data.pki(), data.etcd_pki()] {
            ensure_dir(&dir, PRIVATE_DIR_MODE)
                .map_err(|err| PkiError::io(CREATE_DIR, &dir, err))?;
        }
        for (path, contents, mode) in files {
            if !path.exists() {
                fsio::write_atomic(&path, contents.as_bytes(), mode)?;
            }
        }
        Ok(())
    }

    fn files<'a>(&'a self, data: &DataDir) -> Vec<(std::path::PathBuf, &'a str, u32)> {
        let mut files = Vec::new();
        for (name, pair) in self.cas() {
            files.push((data.pki_key(name), pair.key.as_str(), fsio::SECRET_MODE));
            files.push((data.pki_cert(name), pair.cert.as_str(), fsio::PUBLIC_MODE));
        }
        files.push((data.sa_key(), self.sa_key.as_str(), fsio::SECRET_MODE));
        files.push((data.sa_pub(), self.sa_pub.as_str(), fsio::PUBLIC_MODE));
        files
    }

    fn cas(&self) -> [(&'static str, &CaPair); 3] {
        [
            (pki_names::CA, &self.ca),
            (pki_names::ETCD_CA, &self.etcd_ca),
            (pki_names::FRONT_PROXY_CA, &self.front_proxy_ca),
        ]
    }

    /// Every certificate is a CA matching its key, and sa.pub belongs to sa.key.
    fn validate(&self, data: &DataDir) -> Result<()> {
        for (name, pair) in self.cas() {
            let cert_path = data.pki_cert(name);
            let cert = CertInfo::parse(&cert_path, &pair.cert)?;
            let key = keys::parse(&data.pki_key(name), &pair.key)?;
            if !cert.is_ca || !cert.matches_key(&key) {
                return Err(PkiError::material(
                    &cert_path,
                    "received a CA certificate that is not a CA or does not match its key",
                    "check that the controller you join from has an intact PKI",
                ));
            }
        }
        let sa_key = keys::parse(&data.sa_key(), &self.sa_key)?;
        if sa_key.public_key_pem() != self.sa_pub {
            return Err(PkiError::material(
                &data.sa_pub(),
                "received a service-account public key that does not match sa.key",
                "check that the controller you join from has an intact PKI",
            ));
        }
        Ok(())
    }
}

fn read_required(path: &Path) -> Result<String> {
    fsio::read_optional(path)?.ok_or_else(|| {
        PkiError::material(
            path,
            "not found",
            "initialise the PKI first (start the controller or run `k0x pki init`)",
        )
    })
}
