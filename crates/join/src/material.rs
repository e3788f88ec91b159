//! Writing what a join returned into the data directory, all or nothing.
//!
//! The files of one join are written together by `k0x_config::fsutil::write_all_or_nothing`,
//! so a failure leaves no half-written key or a certificate without its key.

use std::fs;
use std::io;
use std::path::PathBuf;

use k0x_config::fsutil::write_all_or_nothing;
use k0x_config::{DataDir, layout, pki_names};

use crate::api::{
    CertAndKey, ControllerJoinResponse, ControllerSecrets, ServiceAccountKeys, WorkerSettings,
};
use crate::client::WorkerJoin;

/// Name (under `pki/`) of the kubelet client certificate and key a worker join writes.
pub const KUBELET_CLIENT: &str = "kubelet-client";
/// Mode of private keys.
pub const KEY_MODE: u32 = 0o600;
/// Mode of certificates and settings.
pub const PUBLIC_MODE: u32 = 0o644;

/// Where a worker join put its files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerFiles {
    pub ca_cert: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
    /// [`WorkerSettings`] as JSON (API servers, cluster domain, pod and service CIDRs, images...).
    pub settings: PathBuf,
}

impl WorkerFiles {
    pub fn in_data_dir(data: &DataDir) -> Self {
        Self {
            ca_cert: data.pki_cert(pki_names::CA),
            client_cert: data.pki_cert(KUBELET_CLIENT),
            client_key: data.pki_key(KUBELET_CLIENT),
            settings: data.etc().join("worker-join.json"),
        }
    }

    /// Reads back the settings a worker join stored.
    pub fn read_settings(&self) -> io::Result<WorkerSettings> {
        let text = fs::read(&self.settings)?;
        serde_json::from_slice(&text).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: {e}", self.settings.display()),
            )
        })
    }
}

/// Writes a worker join's CA, kubelet client certificate and key, and settings.
pub fn write_worker_files(data: &DataDir, join: &WorkerJoin) -> io::Result<WorkerFiles> {
    let files = WorkerFiles::in_data_dir(data);
    let settings = serde_json::to_vec_pretty(&join.response.settings).map_err(io::Error::other)?;
    prepare_dirs(data)?;
    write_all_or_nothing(&[
        (&files.ca_cert, join.response.ca.as_bytes(), PUBLIC_MODE),
        (
            &files.client_cert,
            join.response.certificate.as_bytes(),
            PUBLIC_MODE,
        ),
        (&files.client_key, join.key_pem.as_bytes(), KEY_MODE),
        (&files.settings, &settings, PUBLIC_MODE),
    ])?;
    Ok(files)
}

/// Writes a controller join's CAs (certificates and keys) and service-account keys under `pki/`.
pub fn write_controller_files(data: &DataDir, join: &ControllerJoinResponse) -> io::Result<()> {
    prepare_dirs(data)?;
    let secrets = &join.secrets;
    let cas = [
        (pki_names::CA, &secrets.ca),
        (pki_names::ETCD_CA, &secrets.etcd_ca),
        (pki_names::FRONT_PROXY_CA, &secrets.front_proxy_ca),
    ];
    let mut files: Vec<(PathBuf, &[u8], u32)> = Vec::new();
    for (name, pair) in cas {
        files.push((data.pki_cert(name), pair.cert.as_bytes(), PUBLIC_MODE));
        files.push((data.pki_key(name), pair.key.as_bytes(), KEY_MODE));
    }
    files.push((data.sa_key(), secrets.sa.key.as_bytes(), KEY_MODE));
    files.push((data.sa_pub(), secrets.sa.public.as_bytes(), PUBLIC_MODE));
    let borrowed: Vec<_> = files.iter().map(|(p, c, m)| (p, *c, *m)).collect();
    write_all_or_nothing(&borrowed)
}

/// Reads the control-plane secrets a controller hands to joining controllers from its `pki/`
/// (the inverse of [`write_controller_files`]).
pub fn read_controller_secrets(data: &DataDir) -> io::Result<ControllerSecrets> {
    let read = |path: PathBuf| {
        fs::read_to_string(&path).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("{}: {e}; generate the cluster PKI first", path.display()),
            )
        })
    };
    let pair = |name: &str| -> io::Result<CertAndKey> {
        Ok(CertAndKey {
            cert: read(data.pki_cert(name))?,
            key: read(data.pki_key(name))?,
        })
    };
    Ok(ControllerSecrets {
        ca: pair(pki_names::CA)?,
        etcd_ca: pair(pki_names::ETCD_CA)?,
        front_proxy_ca: pair(pki_names::FRONT_PROXY_CA)?,
        sa: ServiceAccountKeys {
            key: read(data.sa_key())?,
            public: read(data.sa_pub())?,
        },
    })
}

fn prepare_dirs(data: &DataDir) -> io::Result<()> {
    data.create()?;
    for dir in [data.pki(), data.etcd_pki(), data.etc()] {
        layout::ensure_dir(&dir, layout::PRIVATE_DIR_MODE)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;
    use std::path::Path;

    use super::*;

    #[test]
    fn controller_secrets_round_trip_through_the_data_dir() {
        let tmp = tempfile::tempdir().unwrap();
        let data = DataDir::new(tmp.path().join("k0x"));
        let pair = |n: &str| CertAndKey {
            cert: format!("{n} cert"),
            key: format!("{n} key"),
        };
        let join = ControllerJoinResponse {
            secrets: ControllerSecrets {
                ca: pair("ca"),
                etcd_ca: pair("etcd"),
                front_proxy_ca: pair("fp"),
                sa: ServiceAccountKeys {
                    key: "sa key".into(),
                    public: "sa pub".into(),
                },
            },
            etcd_peer_urls: vec![],
        };
        let err = read_controller_secrets(&data).unwrap_err();
        assert!(err.to_string().contains("ca.crt"), "{err}");
        write_controller_files(&data, &join).unwrap();
        assert_eq!(read_controller_secrets(&data).unwrap(), join.secrets);
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&data.pki_key("etcd/ca")), 0o600);
        assert_eq!(mode(&data.etcd_pki()), 0o700);
    }
}
