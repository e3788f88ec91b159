//! The cgroups of container processes k0x ended. runc creates one cgroup per container and
//! removes it only through `runc delete`, which never runs when containerd is gone; reset removes
//! those left empty so no k0x cgroup outlives it. Only cgroups that held nothing but descendants
//! of k0x's processes are candidates, and the kernel refuses to remove a cgroup that still has
//! processes or children, so nothing else can be affected.

use std::fs;
use std::path::{Path, PathBuf};

/// A mounted cgroup hierarchy.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Hierarchy {
    /// The cgroup path mounted at `mount_point` (usually `/`).
    root: String,
    mount_point: PathBuf,
    /// `None` for cgroup2, else the v1 controllers and `name=` options of the mount.
    v1_options: Option<Vec<String>>,
}

fn hierarchies(mountinfo: &str) -> Vec<Hierarchy> {
    mountinfo
        .lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let left: Vec<&str> = left.split(' ').collect();
            let right: Vec<&str> = right.split(' ').collect();
            let v1_options = match *right.first()? {
                "cgroup2" => None,
                "cgroup" => Some(right.get(2)?.split(',').map(str::to_owned).collect()),
                _ => return None,
            };
            Some(Hierarchy {
                root: (*left.get(3)?).to_owned(),
                mount_point: PathBuf::from(*left.get(4)?),
                v1_options,
            })
        })
        .collect()
}

/// The cgroup directories of one process, from its `/proc/PID/cgroup` text, excluding the root
/// of each hierarchy.
fn directories(cgroup_file: &str, hierarchies: &[Hierarchy]) -> Vec<PathBuf> {
    cgroup_file
        .lines()
        .filter_map(|line| {
            let mut fields = line.splitn(3, ':');
            let (_, controllers, path) = (fields.next()?, fields.next()?, fields.next()?);
            let hierarchy = hierarchies.iter().find(|h| match &h.v1_options {
                None => controllers.is_empty(),
                Some(options) => {
                    !controllers.is_empty()
                        && controllers
                            .split(',')
                            .all(|c| options.iter().any(|o| o == c))
                }
            })?;
            let relative = path
                .strip_prefix(hierarchy.root.as_str())
                .unwrap_or(path)
                .trim_start_matches('/');
            (!relative.is_empty() && !relative.split('/').any(|part| part == ".."))
                .then(|| hierarchy.mount_point.join(relative))
        })
        .collect()
}

/// The cgroup directories of `pids`.
pub fn of_processes(pids: &[i32]) -> Vec<PathBuf> {
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let hierarchies = hierarchies(&mountinfo);
    let mut dirs: Vec<PathBuf> = pids
        .iter()
        .filter_map(|pid| fs::read_to_string(format!("/proc/{pid}/cgroup")).ok())
        .flat_map(|text| directories(&text, &hierarchies))
        .collect();
    dirs.sort();
    dirs.dedup();
    dirs
}

/// Removes each (empty) cgroup directory, deepest first; returns those that could not go.
pub fn remove(dirs: &[PathBuf]) -> Vec<(PathBuf, String)> {
    let mut sorted: Vec<&PathBuf> = dirs.iter().collect();
    sorted.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
    sorted
        .into_iter()
        .filter_map(|dir| match fs::remove_dir(dir) {
            Ok(()) => None,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => None,
            Err(err) => Some((dir.clone(), err.to_string())),
        })
        .collect()
}

/// The names of the cgroup the kubelet puts every pod below (`cgroupsPerQOS` with the default
/// `cgroupRoot` of `/`), for the cgroupfs and the systemd driver.
const KUBELET_ROOTS: &[&str] = &["kubepods", "kubepods.slice"];

/// The kubelet's pod cgroup trees in every mounted hierarchy. The kubelet creates them and never
/// removes them; once the pods' processes are gone they are empty.
pub fn kubelet_trees() -> Vec<PathBuf> {
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut trees: Vec<PathBuf> = hierarchies(&mountinfo)
        .into_iter()
        .flat_map(|h| {
            KUBELET_ROOTS
                .iter()
                .map(move |name| h.mount_point.join(name))
        })
        .filter(|dir| is_cgroup_dir(dir) && dir.is_dir())
        .collect();
    trees.sort();
    trees.dedup();
    trees
}

/// Removes the cgroup `tree` and every cgroup below it, deepest first. The kernel refuses to
/// remove a cgroup that still holds a process, so only empty ones go.
pub fn remove_tree(tree: &Path) -> Result<(), String> {
    let mut dirs = Vec::new();
    let mut pending = vec![tree.to_path_buf()];
    while let Some(dir) = pending.pop() {
        if let Ok(entries) = fs::read_dir(&dir) {
            pending.extend(
                entries
                    .flatten()
                    .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                    .map(|e| e.path()),
            );
        }
        dirs.push(dir);
    }
    let kept = remove(&dirs);
    match kept.first() {
        None => Ok(()),
        Some((dir, error)) => Err(format!(
            "{} cgroup(s) left, e.g. {}: {error}",
            kept.len(),
            dir.display()
        )),
    }
}

/// True when `dir` is a cgroup directory of some hierarchy (not a hierarchy root).
pub fn is_cgroup_dir(dir: &Path) -> bool {
    dir.starts_with("/sys/fs/cgroup") && dir != Path::new("/sys/fs/cgroup")
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO: &str = "\
31 23 0:28 / /sys/fs/cgroup rw - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory
40 31 0:37 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,xattr,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw
";

    #[test]
    fn v1_and_v2_lines_map_to_directories() {
        let hierarchies = hierarchies(MOUNTINFO);
        let cgroup = "\
9:name=systemd:/system.slice/k0xworker.service
4:memory:/kubepods/besteffort/pod1/c1
2:cpu,cpuacct:/
0::/kubepods/besteffort/pod1/c1
";
        assert_eq!(
            directories(cgroup, &hierarchies),
            [
                PathBuf::from("/sys/fs/cgroup/systemd/system.slice/k0xworker.service"),
                PathBuf::from("/sys/fs/cgroup/memory/kubepods/besteffort/pod1/c1"),
                PathBuf::from("/sys/fs/cgroup/unified/kubepods/besteffort/pod1/c1"),
            ]
        );
    }

    #[test]
    fn a_process_in_a_nested_mount_root_maps_below_its_mount() {
        let mountinfo =
            "50 1 0:40 /process_api/x /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n";
        let dirs = directories("4:memory:/process_api/x/c1\n", &hierarchies(mountinfo));
        assert_eq!(dirs, [PathBuf::from("/sys/fs/cgroup/memory/c1")]);
    }

    #[test]
    fn a_tree_goes_deepest_first() {
        let tmp = tempfile::tempdir().unwrap();
        let tree = tmp.path().join("kubepods");
        fs::create_dir_all(tree.join("besteffort/pod1/c1")).unwrap();
        fs::create_dir_all(tree.join("burstable")).unwrap();
        remove_tree(&tree).unwrap();
        assert!(!tree.exists());
        fs::create_dir_all(tree.join("pod2")).unwrap();
        fs::write(tree.join("pod2/cgroup.procs"), "1").unwrap();
        assert!(remove_tree(&tree).is_err(), "a cgroup in use stays");
    }

    #[test]
    fn only_real_directories_are_removed() {
        let tmp = tempfile::tempdir().unwrap();
        let leaf = tmp.path().join("a/b");
        fs::create_dir_all(&leaf).unwrap();
        fs::write(tmp.path().join("a/file"), "x").unwrap();
        let failed = remove(&[tmp.path().join("a"), leaf.clone(), tmp.path().join("gone")]);
        assert!(!leaf.exists());
        assert_eq!(failed.len(), 1, "a non-empty directory stays: {failed:?}");
    }
}
