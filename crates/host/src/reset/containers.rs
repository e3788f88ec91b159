//! Containers runc still knows after their processes are gone, or whose shim died before reset
//! (its containers were reparented and are no longer found below it). runc keeps each
//! container's state in `<run dir>/containerd/runc/<namespace>/<id>/`; `runc delete --force`
//! ends whatever still runs in the container's cgroup and removes that cgroup and the state.
//! Only the run dir's own runc root is read, so containers of a host containerd are untouched.

use std::fs;
use std::path::{Path, PathBuf};

/// A container in k0x's runc root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuncContainer {
    /// The namespace's state directory, runc's `--root`.
    pub root: PathBuf,
    pub id: String,
}

/// Every container below `runc_root` (one directory per containerd namespace), sorted.
pub fn find(runc_root: &Path) -> Vec<RuncContainer> {
    let mut found = Vec::new();
    for namespace in subdirs(runc_root) {
        for container in subdirs(&namespace) {
            if !container.join("state.json").is_file() {
                continue;
            }
            if let Some(id) = container.file_name().and_then(|n| n.to_str()) {
                found.push(RuncContainer {
                    root: namespace.clone(),
                    id: id.to_owned(),
                });
            }
        }
    }
    found.sort_by(|a, b| (&a.root, &a.id).cmp(&(&b.root, &b.id)));
    found
}

fn subdirs(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut dirs: Vec<PathBuf> = entries
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.path())
        .collect();
    dirs.sort();
    dirs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn containers_are_the_state_dirs_of_each_namespace() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        for (ns, id) in [("k8s.io", "b"), ("k8s.io", "a"), ("k0x-test", "c")] {
            let dir = root.join(ns).join(id);
            fs::create_dir_all(&dir).unwrap();
            fs::write(dir.join("state.json"), "{}").unwrap();
        }
        fs::create_dir_all(root.join("k8s.io/not-a-container")).unwrap();
        let ids: Vec<(PathBuf, String)> = find(root).into_iter().map(|c| (c.root, c.id)).collect();
        assert_eq!(
            ids,
            [
                (root.join("k0x-test"), "c".to_owned()),
                (root.join("k8s.io"), "a".to_owned()),
                (root.join("k8s.io"), "b".to_owned()),
            ]
        );
        assert!(find(&root.join("missing")).is_empty());
    }
}
