//! A cgroup subtree per test host, in every mounted hierarchy, so each host's kubelet puts its
//! pods below its own root (`cgroupRoot`) and a host's processes can all be found and ended.
//!
//! The subtree is `/<name>` with the host's own processes in `/<name>/host` (cgroup v2 allows
//! controllers only on cgroups without processes of their own) and the kubelet's `kubepods` next
//! to it. Names start with `k0xt-<pid>-`, so the subtrees of a killed test run are recognised and
//! removed by the next one.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// The leaf a host's own processes go into.
const HOST_LEAF: &str = "host";

/// One host's cgroup subtree; ended (processes killed, cgroups removed) on drop.
#[derive(Debug)]
pub struct Subtree {
    name: String,
    mounts: Vec<PathBuf>,
}

impl Subtree {
    /// Creates `/<name>` and `/<name>/host` in every mounted hierarchy.
    pub fn create(name: &str) -> io::Result<Self> {
        let subtree = Self {
            name: name.to_owned(),
            mounts: hierarchy_mounts(),
        };
        for mount in &subtree.mounts {
            let root = mount.join(name);
            make_cgroup(mount, &root)?;
            make_cgroup(&root, &root.join(HOST_LEAF))?;
        }
        Ok(subtree)
    }

    /// The cgroup path the kubelet takes as its `cgroupRoot`.
    pub fn root(&self) -> String {
        format!("/{}", self.name)
    }

    /// The `cgroup.procs` files a process writes its pid to, to join the host.
    pub fn procs_files(&self) -> Vec<PathBuf> {
        self.mounts
            .iter()
            .map(|m| m.join(&self.name).join(HOST_LEAF).join("cgroup.procs"))
            .collect()
    }

    /// Kills every process in the subtree and removes its cgroups.
    pub fn end(&self) {
        for mount in &self.mounts {
            end_tree(&mount.join(&self.name));
        }
    }
}

impl Drop for Subtree {
    fn drop(&mut self) {
        self.end();
    }
}

/// The mount points of the cgroup hierarchies (v1 controllers, named ones and cgroup2).
fn hierarchy_mounts() -> Vec<PathBuf> {
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    mountinfo
        .lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let fstype = right.split(' ').next()?;
            let mount = left.split(' ').nth(4)?;
            matches!(fstype, "cgroup" | "cgroup2").then(|| PathBuf::from(mount))
        })
        .collect()
}

/// Creates the cgroup `dir` below `parent`: with the parent's CPUs and memory nodes on a v1
/// cpuset hierarchy (a new cpuset takes no process until they are set), and every controller
/// of the parent enabled for its children on cgroup v2.
fn make_cgroup(parent: &Path, dir: &Path) -> io::Result<()> {
    match fs::create_dir(dir) {
        Ok(()) => {}
        Err(err) if err.kind() == io::ErrorKind::AlreadyExists => {}
        Err(err) => return Err(err),
    }
    for file in ["cpuset.cpus", "cpuset.mems"] {
        if let Ok(value) = fs::read_to_string(parent.join(file))
            && fs::read_to_string(dir.join(file)).is_ok_and(|v| v.trim().is_empty())
        {
            fs::write(dir.join(file), value.trim())?;
        }
    }
    if let Ok(controllers) = fs::read_to_string(dir.join("cgroup.controllers")) {
        let enable: Vec<String> = controllers
            .split_whitespace()
            .map(|c| format!("+{c}"))
            .collect();
        if !enable.is_empty() && dir.file_name().is_some_and(|n| n != HOST_LEAF) {
            fs::write(dir.join("cgroup.subtree_control"), enable.join(" "))?;
        }
    }
    Ok(())
}

/// Kills every process in the cgroup tree `root` and removes its cgroups, deepest first.
fn end_tree(root: &Path) {
    let mut dirs = vec![root.to_path_buf()];
    let mut index = 0;
    while index < dirs.len() {
        if let Ok(entries) = fs::read_dir(&dirs[index]) {
            dirs.extend(
                entries
                    .flatten()
                    .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                    .map(|e| e.path()),
            );
        }
        index += 1;
    }
    for _ in 0..50 {
        let pids: Vec<i32> = dirs
            .iter()
            .filter_map(|d| fs::read_to_string(d.join("cgroup.procs")).ok())
            .flat_map(|text| {
                text.lines()
                    .filter_map(|l| l.trim().parse().ok())
                    .collect::<Vec<i32>>()
            })
            .collect();
        if pids.is_empty() {
            break;
        }
        for pid in pids {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    for dir in dirs.iter().rev() {
        let _ = fs::remove_dir(dir);
    }
}

/// Ends the subtrees of test processes that no longer exist (a test killed with SIGKILL runs no
/// drop). `owner` reads the test's pid from a subtree name.
pub(crate) fn remove_stale(owner: impl Fn(&str) -> Option<u32>) {
    for mount in hierarchy_mounts() {
        let Ok(entries) = fs::read_dir(&mount) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some(pid) = owner(&name)
                && !Path::new(&format!("/proc/{pid}")).exists()
            {
                end_tree(&entry.path());
            }
        }
    }
}
