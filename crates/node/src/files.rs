//! Files and directories a component needs on disk, and writing them safely.
//!
//! Components describe files as data so every file is rendered before anything is written: a
//! rendering error leaves the disk untouched. Each write goes to a temporary file in the same
//! directory, is fsynced and renamed into place, so a crash never leaves half a config.

use std::path::{Path, PathBuf};

use k0x_config::layout::ensure_dir;

use crate::NodeError;

/// A file rendered by a component.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedFile {
    pub path: PathBuf,
    pub contents: String,
    pub mode: u32,
}

impl RenderedFile {
    /// A configuration file readable only by root (configs may name keys and tokens).
    pub fn private(path: impl Into<PathBuf>, contents: String) -> Self {
        Self {
            path: path.into(),
            contents,
            mode: 0o600,
        }
    }

    /// Writes the file atomically (temp file + fsync + rename), creating its parent (0700).
    pub fn write(&self) -> Result<(), NodeError> {
        let dir = self.path.parent().unwrap_or(Path::new("/"));
        if !dir.exists() {
            ensure_dir(dir, 0o700).map_err(NodeError::write(dir))?;
        }
        k0x_config::fsutil::write_atomic(&self.path, self.contents.as_bytes(), self.mode)
            .map_err(NodeError::write(&self.path))
    }
}

/// A directory a component needs, with the exact mode it must have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirSpec {
    pub path: PathBuf,
    pub mode: u32,
}

impl DirSpec {
    pub fn new(path: impl Into<PathBuf>, mode: u32) -> Self {
        Self {
            path: path.into(),
            mode,
        }
    }

    /// Creates the directory (and parents) and tightens its mode.
    pub fn create(&self) -> Result<(), NodeError> {
        ensure_dir(&self.path, self.mode).map_err(NodeError::write(&self.path))
    }
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn write_is_atomic_and_private() {
        let tmp = tempfile::tempdir().unwrap();
        let file = RenderedFile::private(tmp.path().join("a/b/config"), "x: 1\n".into());
        file.write().unwrap();
        let meta = fs::metadata(&file.path).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        assert_eq!(fs::read_to_string(&file.path).unwrap(), "x: 1\n");
        let leftovers: Vec<_> = fs::read_dir(tmp.path().join("a/b"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(leftovers.len(), 1, "temp file left behind: {leftovers:?}");
    }

    #[test]
    fn rewrite_replaces_contents() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("f");
        RenderedFile::private(&path, "old".into()).write().unwrap();
        RenderedFile::private(&path, "new".into()).write().unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "new");
    }
}
