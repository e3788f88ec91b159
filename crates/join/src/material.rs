//! Writing what a join returned into the data directory, all or nothing.
//!
//! The files of one join are written together by `k0x_config::fsutil::write_all_or_nothing`,
//! so a failure leaves no half-written key or a certificate without its key. A worker's files are
//! every identity its components need: the kubelet's client certificate and key, kube-proxy's
//! kubeconfig (its key only inside it, 0600) and the kubelet's serving certificate and key.

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
/// The cluster's name in the kubeconfigs a worker writes.
pub const CLUSTER_NAME: &str = "k0x";
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
    /// kube-proxy's kubeconfig (CN=system:kube-proxy, key embedded).
    pub kube_proxy_kubeconfig: PathBuf,
    /// The kubelet's serving certificate and key.
    pub serving_cert: PathBuf,
    pub serving_key: PathBuf,
    /// [`WorkerSettings`] as JSON (API servers, cluster domain, pod and service CIDRs, images...).
    pub settings: PathBuf,
}

impl WorkerFiles {
    pub fn in_data_dir(data: &DataDir) -> Self {
        Self {
            ca_cert: data.pki_cert(pki_names::CA),
            client_cert: data.pki_cert(KUBELET_CLIENT),
            client_key: data.pki_key(KUBELET_CLIENT),
            kube_proxy_kubeconfig: data.kubeconfig(pki_names::KUBE_PROXY),
            serving_cert: data.pki_cert(pki_names::KUBELET_SERVER),
            serving_key: data.pki_key(pki_names::KUBELET_SERVER),
            settings: data.etc().join("worker-join.json"),
        }
    }

    /// True when every file of a worker join is there.
    pub fn all_present(&self) -> bool {
        let public = [
            &self.ca_cert,
            &self.client_cert,
            &self.serving_cert,
            &self.settings,
        ];
        public
            .into_iter()
            .chain(self.secrets())
            .all(|p| p.is_file())
    }

    /// The files holding a private key, which must stay 0600.
    pub fn secrets(&self) -> [&PathBuf; 3] {
        [
            &self.client_key,
            &self.kube_proxy_kubeconfig,
            &self.serving_key,
        ]
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

/// Writes a worker join's CA, certificates and keys, kube-proxy's kubeconfig and the settings.
pub fn write_worker_files(data: &DataDir, join: &WorkerJoin) -> io::Result<WorkerFiles> {
    let files = WorkerFiles::in_data_dir(data);
    let response = &join.response;
    let settings = serde_json::to_vec_pretty(&response.settings).map_err(io::Error::other)?;
    let missing = |what: &str| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("the controller sent no {what}; join again with a new token"),
        )
    };
    let kube_proxy_cert = response
        .kube_proxy_certificate
        .as_ref()
        .ok_or_else(|| missing("kube-proxy certificate"))?;
    let serving_cert = response
        .kubelet_serving_certificate
        .as_ref()
        .ok_or_else(|| missing("kubelet serving certificate"))?;
    let server = response
        .settings
        .api_servers
        .first()
        .ok_or_else(|| missing("API server address"))?;
    let kube_proxy = k0x_pki::Kubeconfig {
        cluster_name: CLUSTER_NAME.to_owned(),
        server: server.clone(),
        ca_pem: response.ca.clone(),
        user_name: "system:kube-proxy".to_owned(),
        client_cert_pem: kube_proxy_cert.clone(),
        client_key_pem: join.kube_proxy_key_pem.clone(),
    }
    .render();
    prepare_dirs(data)?;
    write_all_or_nothing(&[
        (&files.ca_cert, response.ca.as_bytes(), PUBLIC_MODE),
        (
            &files.client_cert,
            response.certificate.as_bytes(),
            PUBLIC_MODE,
        ),
        (&files.client_key, join.key_pem.as_bytes(), KEY_MODE),
        (
            &files.kube_proxy_kubeconfig,
            kube_proxy.as_bytes(),
            KEY_MODE,
        ),
        (&files.serving_cert, serving_cert.as_bytes(), PUBLIC_MODE),
        (
            &files.serving_key,
            join.kubelet_serving_key_pem.as_bytes(),
            KEY_MODE,
        ),
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
