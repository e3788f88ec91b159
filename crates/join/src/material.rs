//! Writing what a join returned into the data directory, all or nothing.
//!
//! Every file is first written to a temporary file beside its target (mode set at creation,
//! fsynced); only when all of them are written are they renamed into place, so a failure leaves
//! no half-written key or a certificate without its key.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use k0x_config::{DataDir, layout, pki_names};

use crate::api::{ControllerJoinResponse, WorkerSettings};
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
    /// [`WorkerSettings`] as JSON (API servers, cluster DNS and domain, pod CIDR, images...).
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

fn prepare_dirs(data: &DataDir) -> io::Result<()> {
    data.create()?;
    for dir in [data.pki(), data.etcd_pki(), data.etc()] {
        layout::ensure_dir(&dir, layout::PRIVATE_DIR_MODE)?;
    }
    Ok(())
}

/// Writes every `(path, contents, mode)` to a temp file, then renames them all into place.
pub fn write_all_or_nothing<P: AsRef<Path>>(files: &[(P, &[u8], u32)]) -> io::Result<()> {
    let mut staged = Vec::with_capacity(files.len());
    for (path, contents, mode) in files {
        match stage(path.as_ref(), contents, *mode) {
            Ok(temp) => staged.push((temp, path.as_ref())),
            Err(err) => {
                for (temp, _) in &staged {
                    let _ = fs::remove_file(temp);
                }
                return Err(io::Error::new(
                    err.kind(),
                    format!("writing {}: {err}", path.as_ref().display()),
                ));
            }
        }
    }
    for (temp, path) in &staged {
        fs::rename(temp, path)?;
        if let Some(dir) = path.parent() {
            File::open(dir)?.sync_all()?;
        }
    }
    Ok(())
}

fn stage(path: &Path, contents: &[u8], mode: u32) -> io::Result<PathBuf> {
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no file name"))?;
    let temp = path.with_file_name(format!(
        ".{}.tmp{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let _ = fs::remove_file(&temp);
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&temp)?;
    let written = file.write_all(contents).and_then(|()| file.sync_all());
    if let Err(err) = written {
        let _ = fs::remove_file(&temp);
        return Err(err);
    }
    Ok(temp)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn writes_with_modes_and_leaves_no_temp_files() {
        let tmp = tempfile::tempdir().unwrap();
        let key = tmp.path().join("a.key");
        let cert = tmp.path().join("a.crt");
        write_all_or_nothing(&[
            (&key, b"k".as_slice(), KEY_MODE),
            (&cert, b"c", PUBLIC_MODE),
        ])
        .unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&key), 0o600);
        assert_eq!(mode(&cert), 0o644);
        assert_eq!(fs::read_dir(tmp.path()).unwrap().count(), 2);
    }

    #[test]
    fn a_failure_writes_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let good = tmp.path().join("good.key");
        let bad = tmp.path().join("missing-dir/bad.key");
        let err =
            write_all_or_nothing(&[(&good, b"k".as_slice(), KEY_MODE), (&bad, b"x", KEY_MODE)])
                .unwrap_err();
        assert!(err.to_string().contains("missing-dir/bad.key"), "{err}");
        assert_eq!(fs::read_dir(tmp.path()).unwrap().count(), 0);
    }
}
