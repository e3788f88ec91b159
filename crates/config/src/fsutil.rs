//! The one way k0x writes a file: atomically, with an exact mode; and how much room there is
//! to write.
//!
//! Every crate writes configuration, pid files, manifests and unit files through here, so a crash
//! or a full disk never leaves a half-written file behind and modes never depend on the umask.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Writes `contents` to `path` through a temporary file in the same directory, fsynced and renamed
/// into place, so a crash leaves either the old file or the new one. The parent directory is
/// created with mode `0755` when missing.
pub fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> io::Result<()> {
    write_atomic_with(path, mode, |file| file.write_all(contents))
}

/// Like [`write_atomic`], for contents too large to hold in memory: `write` streams them into the
/// temporary file, which replaces `path` only when `write` succeeded.
pub fn write_atomic_with(
    path: &Path,
    mode: u32,
    write: impl FnOnce(&mut fs::File) -> io::Result<()>,
) -> io::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    fs::create_dir_all(dir)?;
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no file name"))?;
    let tmp = dir.join(format!(
        ".{}.k0x-tmp-{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)?;
        // The umask may have cleared bits of `mode`; set it exactly.
        file.set_permissions(fs::Permissions::from_mode(mode))?;
        write(&mut file)?;
        file.sync_all()?;
        fs::rename(&tmp, path)?;
        fs::File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Bytes an unprivileged writer may still use on the filesystem that holds `path`, or would hold
/// it: a path that does not exist yet is measured at its nearest existing ancestor.
// The statvfs field types differ by target (32 bits on ARM boards): the conversions are needed
// there and spelled out everywhere.
#[allow(clippy::useless_conversion)]
pub fn available_bytes(path: &Path) -> io::Result<u64> {
    let existing = path
        .ancestors()
        .find(|dir| dir.exists())
        .unwrap_or(Path::new("/"));
    let stat = nix::sys::statvfs::statvfs(existing).map_err(io::Error::from)?;
    Ok(u64::from(stat.blocks_available()).saturating_mul(u64::from(stat.fragment_size())))
}

/// `bytes` in MiB, rounded up, for messages.
pub fn mib(bytes: u64) -> u64 {
    bytes.div_ceil(1 << 20)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_with_exact_mode_and_no_leftovers() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("a/b/secret");
        write_atomic(&path, b"x", 0o600).unwrap();
        write_atomic(&path, b"y", 0o600).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"y");
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(fs::read_dir(path.parent().unwrap()).unwrap().count(), 1);
    }

    #[test]
    fn a_failed_stream_keeps_the_old_file_and_leaves_no_temporary() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("image.tar");
        write_atomic(&path, b"old", 0o644).unwrap();
        let err = write_atomic_with(&path, 0o644, |file| {
            file.write_all(b"half")?;
            Err(io::Error::other("source vanished"))
        })
        .unwrap_err();
        assert_eq!(err.to_string(), "source vanished");
        assert_eq!(fs::read(&path).unwrap(), b"old");
        assert_eq!(fs::read_dir(tmp.path()).unwrap().count(), 1);
    }

    #[test]
    fn available_bytes_of_a_path_yet_to_be_created() {
        let tmp = tempfile::tempdir().unwrap();
        let here = available_bytes(tmp.path()).unwrap();
        let later = available_bytes(&tmp.path().join("not/yet")).unwrap();
        assert!(here > 0 && later > 0);
        assert_eq!(mib(1), 1);
        assert_eq!(mib(3 << 20), 3);
    }
}
