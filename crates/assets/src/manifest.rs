//! The two manifests: the one inside the payload (what was staged) and `bin/.manifest` (what was
//! extracted, with the size and mtime that let a warm start trust a file without re-hashing it).

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{AssetsError, Result};

/// Name of the payload's first tar entry.
pub const PAYLOAD_MANIFEST_NAME: &str = "manifest.json";
/// Upper bound on the manifest entry, so a corrupt header cannot make us allocate gigabytes.
pub const MAX_MANIFEST_BYTES: u64 = 1 << 20;

/// `manifest.json`, written by `embedded-bins/stage`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PayloadManifest {
    pub format: u32,
    pub arch: String,
    /// `online` or `from-system`.
    pub mode: String,
    pub created: String,
    pub files: Vec<PayloadFile>,
}

/// One staged binary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PayloadFile {
    pub name: String,
    /// What the binary reported about itself when it was staged.
    pub version: String,
    /// The version components.lock pins for this component.
    #[serde(default)]
    pub lock_version: String,
    pub sha256: String,
    pub size: u64,
    /// `module:<go module>@<version>` (built from source), `supplied:<dir>/<file>` or
    /// `from-system:<dir>/<file>`.
    pub source: String,
}

impl PayloadManifest {
    /// Parses and checks the manifest: names must be plain file names, digests well-formed, no
    /// duplicates. `what` names the payload in errors.
    pub fn parse(bytes: &[u8], payload: &Path) -> Result<Self> {
        let manifest: Self = serde_json::from_slice(bytes).map_err(|err| {
            AssetsError::corrupt(payload, format!("manifest.json does not parse: {err}"))
        })?;
        if manifest.format != 1 {
            return Err(AssetsError::corrupt(
                payload,
                format!(
                    "manifest format {} is not understood by this k0x",
                    manifest.format
                ),
            ));
        }
        let mut seen = std::collections::BTreeSet::new();
        for file in &manifest.files {
            let plain = !file.name.is_empty()
                && !file.name.starts_with('.')
                && !file.name.contains('/')
                && file.name != PAYLOAD_MANIFEST_NAME;
            if !plain || !seen.insert(file.name.as_str()) {
                return Err(AssetsError::corrupt(
                    payload,
                    format!(
                        "manifest lists an invalid or repeated file name {:?}",
                        file.name
                    ),
                ));
            }
            if file.sha256.len() != 64 || hex::decode(&file.sha256).is_err() {
                return Err(AssetsError::corrupt(
                    payload,
                    format!("manifest has a malformed sha256 for {}", file.name),
                ));
            }
        }
        Ok(manifest)
    }

    /// The entry for `name`.
    pub fn file(&self, name: &str) -> Option<&PayloadFile> {
        self.files.iter().find(|file| file.name == name)
    }
}

/// `bin/.manifest`: what k0x extracted and verified, keyed by file name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BinManifest {
    pub files: BTreeMap<String, BinRecord>,
}

/// A verified file in `bin/`, with the stat facts that let a later start skip re-hashing it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BinRecord {
    pub sha256: String,
    pub size: u64,
    pub mtime_ns: i128,
    pub version: String,
    pub source: String,
}

impl BinRecord {
    /// A record for a file whose content was just verified to hash to `file.sha256`.
    pub fn verified(file: &PayloadFile, meta: &fs::Metadata) -> Self {
        Self {
            sha256: file.sha256.clone(),
            size: meta.len(),
            mtime_ns: mtime_ns(meta),
            version: file.version.clone(),
            source: file.source.clone(),
        }
    }

    /// True when the file on disk still looks exactly as it did when it was verified.
    pub fn matches_stat(&self, meta: &fs::Metadata) -> bool {
        meta.is_file() && meta.len() == self.size && mtime_ns(meta) == self.mtime_ns
    }
}

/// Modification time in nanoseconds since the epoch.
pub fn mtime_ns(meta: &fs::Metadata) -> i128 {
    i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec())
}

impl BinManifest {
    /// Reads `bin/.manifest`; a missing or unreadable one is treated as empty (every file is then
    /// re-hashed once, which is slow but correct).
    pub fn load(path: &Path) -> Self {
        match fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|err| {
                tracing::warn!(path = %path.display(), "ignoring unreadable bin manifest: {err}");
                Self::default()
            }),
            Err(_) => Self::default(),
        }
    }

    /// Writes the manifest atomically (temp file, fsync, rename).
    pub fn save(&self, path: &Path) -> Result<()> {
        let json = serde_json::to_vec_pretty(self).expect("bin manifest serializes");
        write_atomic(path, &json, 0o640)
    }
}

/// Writes `bytes` to `path` via a temp file in the same directory, fsync'd, then renamed.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    k0x_config::fsutil::write_atomic(path, bytes, mode).map_err(|err| {
        if crate::error::is_no_space(&err) {
            AssetsError::NoSpace {
                dir: path.parent().unwrap_or(path).to_path_buf(),
                needed_mib: 1,
            }
        } else {
            AssetsError::io("cannot write", path, err)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest_json(name: &str, sha: &str) -> String {
        format!(
            r#"{{"format":1,"arch":"amd64","mode":"from-system","created":"x","files":[{{"name":"{name}","version":"1","sha256":"{sha}","size":3,"source":"s"}}]}}"#
        )
    }

    #[test]
    fn payload_manifest_rejects_paths_and_bad_digests() {
        let good = "a".repeat(64);
        let path = Path::new("p");
        assert!(PayloadManifest::parse(manifest_json("runc", &good).as_bytes(), path).is_ok());
        for name in ["../etc/passwd", ".manifest", "a/b", ""] {
            let err = PayloadManifest::parse(manifest_json(name, &good).as_bytes(), path);
            assert!(err.is_err(), "{name} must be refused");
        }
        assert!(PayloadManifest::parse(manifest_json("runc", "zz").as_bytes(), path).is_err());
        assert!(PayloadManifest::parse(b"{", path).is_err());
    }

    #[test]
    fn bin_manifest_round_trips_and_tolerates_garbage() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".manifest");
        assert_eq!(BinManifest::load(&path), BinManifest::default());
        let mut manifest = BinManifest::default();
        manifest.files.insert(
            "runc".into(),
            BinRecord {
                sha256: "a".repeat(64),
                size: 1,
                mtime_ns: 2,
                version: "v".into(),
                source: "s".into(),
            },
        );
        manifest.save(&path).unwrap();
        assert_eq!(BinManifest::load(&path), manifest);
        fs::write(&path, b"not json").unwrap();
        assert_eq!(BinManifest::load(&path), BinManifest::default());
    }
}
