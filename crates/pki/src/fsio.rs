//! File writes that never leave half a key behind: a temporary file in the target directory,
//! created with its final mode, fsynced, then renamed over (or hard-linked to) the target.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::error::{PkiError, Result};

/// Mode of private keys and of files embedding them (kubeconfigs).
pub const SECRET_MODE: u32 = 0o600;
/// Mode of certificates and public keys.
pub const PUBLIC_MODE: u32 = 0o644;

/// Replaces `path` atomically with `contents`, created with `mode`, and makes it durable.
pub fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> Result<()> {
    replace_unsynced(path, contents, mode)?;
    sync_parent(path)
}

/// Like [`write_atomic`], but the caller syncs the directory afterwards ([`sync_dir`]): many
/// files written into one directory then cost one directory sync instead of one each. Until
/// then a crash may lose the rename, never leave a partial file.
pub fn replace_unsynced(path: &Path, contents: &[u8], mode: u32) -> Result<()> {
    let temp = write_temp(path, contents, mode)?;
    fs::rename(&temp, path).map_err(|err| {
        let _ = fs::remove_file(&temp);
        PkiError::io("replace", path, err)
    })
}

/// Creates `path` with `contents` and `mode`, failing if it already exists (never clobbers).
pub fn write_new(path: &Path, contents: &[u8], mode: u32) -> Result<()> {
    let temp = write_temp(path, contents, mode)?;
    let linked = fs::hard_link(&temp, path);
    let _ = fs::remove_file(&temp);
    linked.map_err(|err| PkiError::io("create", path, err))?;
    sync_parent(path)
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

fn write_temp(path: &Path, contents: &[u8], mode: u32) -> Result<PathBuf> {
    let temp = temp_path(path);
    let result = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&temp)
        .and_then(|mut file| {
            file.write_all(contents)?;
            file.sync_all()
        });
    match result {
        Ok(()) => Ok(temp),
        Err(err) => {
            let _ = fs::remove_file(&temp);
            Err(PkiError::io("write", path, err))
        }
    }
}

fn temp_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map_or_else(Default::default, |n| n.to_string_lossy());
    let nonce: u64 = rand::random();
    path.with_file_name(format!(".{name}.{}.{nonce:016x}.tmp", std::process::id()))
}

/// Makes the rename durable: without syncing the directory a crash may forget the new entry.
fn sync_parent(path: &Path) -> Result<()> {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => sync_dir(p),
        _ => sync_dir(Path::new(".")),
    }
}

/// Makes the entries of `dir` (renames into it) durable.
pub fn sync_dir(dir: &Path) -> Result<()> {
    fs::File::open(dir)
        .and_then(|dir| dir.sync_all())
        .map_err(|err| PkiError::io("sync", dir, err))
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
