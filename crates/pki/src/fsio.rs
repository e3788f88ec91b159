//! The PKI's file access: the atomic writes of `k0x_config::fsutil` (exclusive temporary file,
//! mode set before content, fsynced, renamed over or hard-linked to the target), with errors
//! that name the file, and the reads and mode checks of existing material.

use std::fs;
use std::io;
use std::path::Path;

use k0x_config::fsutil;

use crate::error::{PkiError, Result};

/// Mode of private keys and of files embedding them (kubeconfigs).
pub const SECRET_MODE: u32 = 0o600;
/// Mode of certificates and public keys.
pub const PUBLIC_MODE: u32 = 0o644;

/// Replaces `path` atomically with `contents`, created with `mode`, and makes it durable.
pub fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> Result<()> {
    fsutil::write_atomic(path, contents, mode).map_err(|err| PkiError::io("write", path, err))
}

/// Like [`write_atomic`], but the caller syncs the directory afterwards ([`sync_dir`]).
pub fn replace_unsynced(path: &Path, contents: &[u8], mode: u32) -> Result<()> {
    fsutil::replace_unsynced(path, contents, mode).map_err(|err| PkiError::io("write", path, err))
}

/// Creates `path` with `contents` and `mode`, failing if it already exists (never clobbers).
pub fn write_new(path: &Path, contents: &[u8], mode: u32) -> Result<()> {
    fsutil::write_new(path, contents, mode).map_err(|err| PkiError::io("create", path, err))
}

/// Makes the entries of `dir` (renames into it) durable.
pub fn sync_dir(dir: &Path) -> Result<()> {
    fsutil::sync_dir(dir).map_err(|err| PkiError::io("sync", dir, err))
}

/// Makes the secret at `path` readable by its owner only when group or others may access it;
/// returns the mode it had then (`None`: it was private already).
pub fn make_private(path: &Path) -> Result<Option<u32>> {
    use std::os::unix::fs::PermissionsExt;
    let mode = fs::metadata(path)
        .map_err(|err| PkiError::io("check the mode of", path, err))?
        .permissions()
        .mode()
        & 0o7777;
    if mode & 0o077 == 0 {
        return Ok(None);
    }
    fs::set_permissions(path, fs::Permissions::from_mode(SECRET_MODE))
        .map_err(|err| PkiError::io("make private", path, err))?;
    Ok(Some(mode))
}

/// Reads `path`, or `None` when it does not exist.
pub fn read_optional(path: &Path) -> Result<Option<String>> {
    match fs::read(path) {
        Ok(bytes) => String::from_utf8(bytes).map(Some).map_err(|_| {
            PkiError::material(
                path,
                "is not a PEM/YAML text file",
                "restore it from a backup or remove it so it is re-created",
            )
        }),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(err) => Err(PkiError::io("read", path, err)),
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn atomic_write_sets_mode_and_replaces() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("k.key");
        write_atomic(&file, b"one", SECRET_MODE).unwrap();
        write_atomic(&file, b"two", SECRET_MODE).unwrap();
        assert_eq!(fs::read(&file).unwrap(), b"two");
        assert_eq!(mode(&file), 0o600);
        assert_eq!(
            fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temp file left"
        );
    }

    #[test]
    fn write_new_never_clobbers() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("out.conf");
        write_new(&file, b"first", SECRET_MODE).unwrap();
        let err = write_new(&file, b"second", SECRET_MODE).unwrap_err();
        assert!(err.to_string().contains("File exists"), "{err}");
        assert_eq!(fs::read(&file).unwrap(), b"first");
        assert_eq!(mode(&file), 0o600);
        assert_eq!(
            fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temp file left"
        );
    }
}
