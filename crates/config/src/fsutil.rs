//! The one way k0x writes a file: atomically, with an exact mode; and how much room there is
//! to write.
//!
//! Every crate writes configuration, keys and certificates, pid files, manifests and unit files
//! through here, so a crash or a full disk never leaves a half-written file behind and modes
//! never depend on the umask. The temporary file is created exclusively under a name no other
//! writer uses, gets its exact mode before the first byte of content, and is fsynced before the
//! rename, whose directory is fsynced after it.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

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
    write: impl FnOnce(&mut File) -> io::Result<()>,
) -> io::Result<()> {
    let dir = parent(path);
    fs::create_dir_all(dir)?;
    replace_unsynced_with(path, mode, write)?;
    sync_dir(dir)
}

/// Like [`write_atomic`] into a directory that exists, without syncing it: many files written
/// into one directory then cost one [`sync_dir`] instead of one each. Until then a crash may lose
/// the rename, never leave a partial file.
pub fn replace_unsynced(path: &Path, contents: &[u8], mode: u32) -> io::Result<()> {
    replace_unsynced_with(path, mode, |file| file.write_all(contents))
}

/// Creates `path` with `contents` and `mode`, failing with `AlreadyExists` when it exists: a
/// complete file is linked into place, so the check and the write are one step.
pub fn write_new(path: &Path, contents: &[u8], mode: u32) -> io::Result<()> {
    let temp = write_temp(path, mode, |file| file.write_all(contents))?;
    let linked = fs::hard_link(&temp, path);
    let _ = fs::remove_file(&temp);
    linked?;
    sync_dir(parent(path))
}

/// Writes every `(path, contents, mode)` to a temporary file beside it, then renames them all
/// into place: a failure before the renames leaves none of the files changed, so a certificate is
/// never written without its key. The directories are synced once each at the end.
pub fn write_all_or_nothing<P: AsRef<Path>>(files: &[(P, &[u8], u32)]) -> io::Result<()> {
    let mut staged = Vec::with_capacity(files.len());
    for (path, contents, mode) in files {
        let path = path.as_ref();
        match write_temp(path, *mode, |file| file.write_all(contents)) {
            Ok(temp) => staged.push((temp, path)),
            Err(err) => {
                for (temp, _) in &staged {
                    let _ = fs::remove_file(temp);
                }
                let context = format!("writing {}: {err}", path.display());
                return Err(io::Error::new(err.kind(), context));
            }
        }
    }
    for (temp, path) in &staged {
        fs::rename(temp, path)?;
    }
    let mut dirs: Vec<&Path> = staged.iter().map(|(_, path)| parent(path)).collect();
    dirs.sort();
    dirs.dedup();
    dirs.into_iter().try_for_each(sync_dir)
}

/// Makes the entries of `dir` (renames and links into it) durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

fn replace_unsynced_with(
    path: &Path,
    mode: u32,
    write: impl FnOnce(&mut File) -> io::Result<()>,
) -> io::Result<()> {
    let temp = write_temp(path, mode, write)?;
    fs::rename(&temp, path).inspect_err(|_| {
        let _ = fs::remove_file(&temp);
    })
}

/// A complete, fsynced temporary file beside `path`, or nothing.
fn write_temp(
    path: &Path,
    mode: u32,
    write: impl FnOnce(&mut File) -> io::Result<()>,
) -> io::Result<PathBuf> {
    let (temp, mut file) = create_temp(path, mode)?;
    let written = file
        .set_permissions(fs::Permissions::from_mode(mode))
        .and_then(|()| write(&mut file))
        .and_then(|()| file.sync_all());
    match written {
        Ok(()) => Ok(temp),
        Err(err) => {
            let _ = fs::remove_file(&temp);
            Err(err)
        }
    }
}

/// Creates a temporary file beside `path` that did not exist before (`O_EXCL`), named by this
/// process and a counter, so two writers, or a leftover of a crashed one, never share it.
fn create_temp(path: &Path, mode: u32) -> io::Result<(PathBuf, File)> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no file name"))?
        .to_string_lossy();
    loop {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let temp = path.with_file_name(format!(".{name}.k0x-tmp-{}-{n}", std::process::id()));
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&temp)
        {
            Ok(file) => return Ok((temp, file)),
            Err(err) if err.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(err) => return Err(err),
        }
    }
}

fn parent(path: &Path) -> &Path {
    path.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
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
    fn the_exact_mode_is_set_before_any_content() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("shared");
        write_atomic_with(&path, 0o666, |file| {
            let mode = file.metadata()?.permissions().mode() & 0o777;
            assert_eq!(mode, 0o666, "the umask must not decide the mode");
            file.write_all(b"x")
        })
        .unwrap();
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o666
        );
    }

    #[test]
    fn a_leftover_temporary_is_neither_reused_nor_clobbering() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("key");
        let leftover = tmp
            .path()
            .join(format!(".key.k0x-tmp-{}-0", std::process::id()));
        fs::write(&leftover, b"someone else's").unwrap();
        for _ in 0..2 {
            replace_unsynced(&path, b"k", 0o600).unwrap();
        }
        sync_dir(tmp.path()).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"k");
        assert_eq!(fs::read(&leftover).unwrap(), b"someone else's");
        assert_eq!(fs::read_dir(tmp.path()).unwrap().count(), 2);
    }

    #[test]
    fn all_or_nothing_writes_every_file_or_none() {
        let tmp = tempfile::tempdir().unwrap();
        let key = tmp.path().join("a.key");
        let cert = tmp.path().join("a.crt");
        write_all_or_nothing(&[(&key, b"k".as_slice(), 0o600), (&cert, b"c", 0o644)]).unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!((mode(&key), mode(&cert)), (0o600, 0o644));
        let missing = tmp.path().join("missing-dir/b.key");
        let err =
            write_all_or_nothing(&[(&key, b"new".as_slice(), 0o600), (&missing, b"x", 0o600)])
                .unwrap_err();
        assert!(err.to_string().contains("missing-dir/b.key"), "{err}");
        assert_eq!(fs::read(&key).unwrap(), b"k");
        assert_eq!(fs::read_dir(tmp.path()).unwrap().count(), 2);
    }

    #[test]
    fn write_new_never_clobbers() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("out.conf");
        write_new(&path, b"first", 0o600).unwrap();
        let err = write_new(&path, b"second", 0o600).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(fs::read(&path).unwrap(), b"first");
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
