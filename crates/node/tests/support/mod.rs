//! Helpers shared by the node integration tests. Each test binary uses a subset.
#![allow(dead_code)]

pub mod containerd;
pub mod pki;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

use k0x_config::{ClusterConfig, DataDir, RunDir};
use k0x_node::{CgroupDriver, NodeContext, NodeFacts};

/// A node context rooted in `root` for a node `name` at `address`, with binaries in `bin`.
pub fn context(root: &Path, name: &str, address: &str, bin: &Path) -> NodeContext {
    let node = NodeFacts {
        name: name.to_owned(),
        address: address.parse().unwrap(),
        bin_dir: bin.to_path_buf(),
        cni_bin_dir: bin.to_path_buf(),
        cgroup_driver: CgroupDriver::detect(),
        swap_enabled: false,
        oom_score_lowerable: true,
        resolv_conf: "/etc/resolv.conf".into(),
    };
    let data = DataDir::new(root.join("data"));
    data.create().unwrap();
    NodeContext::new(
        ClusterConfig::default(),
        data,
        RunDir::new(root.join("run")),
        node,
    )
}

/// A bin dir of symlinks to host binaries, standing in for the extracted payload.
pub fn bin_dir(root: &Path, binaries: &[PathBuf]) -> PathBuf {
    let bin = root.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    for binary in binaries {
        std::os::unix::fs::symlink(binary, bin.join(binary.file_name().unwrap())).unwrap();
    }
    bin
}

/// A child process that is killed (its whole process group) and reaped when dropped.
pub struct ChildGuard(pub Child);

impl ChildGuard {
    /// Spawns `command` in its own process group.
    pub fn spawn(command: &mut Command) -> Self {
        use std::os::unix::process::CommandExt;
        Self(command.process_group(0).spawn().expect("spawn"))
    }

    /// SIGTERM, then wait for the exit.
    pub fn stop(mut self) {
        self.terminate();
    }

    fn terminate(&mut self) {
        let pid = nix::unistd::Pid::from_raw(-(self.0.id() as i32));
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if matches!(self.0.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
        let _ = self.0.wait();
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            self.terminate();
        }
    }
}

/// Runs `command` and returns its output (never panics on a non-zero exit).
pub fn run(command: &mut Command) -> Output {
    command.output().expect("run command")
}

/// Polls `check` every 50 ms until it is true; false when `limit` passes first. The limit only
/// bounds a hung test; nothing asserts on the time taken.
pub fn wait_until(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}
