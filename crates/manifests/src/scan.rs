//! What the manifests directory holds right now: one entry per stack directory, with its manifest
//! files read whole and a hash of their names and contents.
//!
//! Polling a hash instead of watching inotify events needs no new dependency and sees every way
//! a file changes the same way (an editor's write-and-rename, `cp -r`, a config management tool
//! replacing the whole directory). The directories are small, so reading them every few seconds
//! costs nothing worth measuring.

use std::collections::BTreeMap;
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::io;
use std::path::{Path, PathBuf};

/// File name endings of manifest files; every other file in a stack directory is ignored.
pub const MANIFEST_EXTENSIONS: &[&str] = &["yaml", "yml", "json"];

/// One stack directory as read from disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StackFiles {
    /// The directory's name, which names the stack.
    pub name: String,
    pub dir: PathBuf,
    /// The manifest files, sorted by name, or why the directory could not be read.
    pub files: Result<Vec<ManifestFile>, String>,
    /// Changes whenever a manifest file appears, goes, or changes its contents.
    pub hash: u64,
}

/// One manifest file and its text.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ManifestFile {
    pub path: PathBuf,
    /// The bytes of the file; a file that is not UTF-8 is kept as the error a parse reports.
    pub text: Result<String, String>,
}

/// Every stack directory below `root`, by name. Hidden directories (a leading `.`) are skipped; a
/// missing `root` holds no stacks. An unreadable `root` is an error, never "no stacks": that
/// would prune every stack.
pub fn scan(root: &Path) -> io::Result<BTreeMap<String, StackFiles>> {
    let entries = match std::fs::read_dir(root) {
        Ok(entries) => entries,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(err) => return Err(err),
    };
    let mut stacks = BTreeMap::new();
    for entry in entries {
        let entry = entry?;
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        if name.starts_with('.') || !entry.file_type()?.is_dir() {
            continue;
        }
        let dir = entry.path();
        let files = read_manifests(&dir).map_err(|e| format!("cannot read the directory: {e}"));
        let hash = hash_of(&files);
        stacks.insert(
            name.clone(),
            StackFiles {
                name,
                dir,
                files,
                hash,
            },
        );
    }
    Ok(stacks)
}

/// The manifest files of one stack directory (not its subdirectories), sorted by name.
fn read_manifests(dir: &Path) -> io::Result<Vec<ManifestFile>> {
    let mut paths = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        if is_manifest(&path) && entry.file_type()?.is_file() {
            paths.push(path);
        }
    }
    paths.sort();
    paths
        .into_iter()
        .map(|path| {
            let bytes = std::fs::read(&path)?;
            let text = String::from_utf8(bytes).map_err(|_| "is not UTF-8 text".to_owned());
            Ok(ManifestFile { path, text })
        })
        .collect()
}

/// A visible file with a manifest ending (editors' hidden swap and backup files are not).
fn is_manifest(path: &Path) -> bool {
    let visible = path
        .file_name()
        .and_then(|name| name.to_str())
        .is_some_and(|name| !name.starts_with('.'));
    let extension = path.extension().and_then(|ext| ext.to_str());
    visible && extension.is_some_and(|ext| MANIFEST_EXTENSIONS.contains(&ext))
}

fn hash_of(files: &Result<Vec<ManifestFile>, String>) -> u64 {
    let mut hasher = DefaultHasher::new();
    files.hash(&mut hasher);
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(path: &Path, text: &str) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    #[test]
    fn reads_manifest_files_of_each_stack_in_name_order() {
        let tmp = tempfile::tempdir().unwrap();
        write(&tmp.path().join("app/b.yml"), "b");
        write(&tmp.path().join("app/a.json"), "a");
        write(&tmp.path().join("app/notes.txt"), "ignored");
        write(&tmp.path().join("app/.a.yaml.swp"), "ignored");
        write(&tmp.path().join("app/sub/c.yaml"), "ignored");
        write(&tmp.path().join(".hidden/x.yaml"), "ignored");
        let stacks = scan(tmp.path()).unwrap();
        assert_eq!(stacks.keys().collect::<Vec<_>>(), ["app"]);
        let files = stacks["app"].files.as_ref().unwrap();
        let names: Vec<_> = files.iter().map(|f| f.path.file_name().unwrap()).collect();
        assert_eq!(names, ["a.json", "b.yml"]);
    }

    #[test]
    fn the_hash_follows_names_and_contents() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("app/a.yaml");
        write(&file, "one");
        let first = scan(tmp.path()).unwrap()["app"].hash;
        assert_eq!(scan(tmp.path()).unwrap()["app"].hash, first);
        write(&file, "two");
        let edited = scan(tmp.path()).unwrap()["app"].hash;
        assert_ne!(edited, first);
        std::fs::rename(&file, tmp.path().join("app/b.yaml")).unwrap();
        assert_ne!(scan(tmp.path()).unwrap()["app"].hash, edited);
    }

    #[test]
    fn a_missing_root_holds_no_stacks() {
        let tmp = tempfile::tempdir().unwrap();
        assert!(scan(&tmp.path().join("absent")).unwrap().is_empty());
    }
}
