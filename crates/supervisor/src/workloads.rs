//! Which of a data dir's processes are workloads: the one rule the stop sweep, the orphan sweep
//! and `k0x reset` share.
//!
//! Why there is a rule at all: a stop of k0x (SIGTERM from `systemctl restart` or an upgrade,
//! SIGINT, SIGHUP) must leave running containers alone, as a kubelet restart does and as k3s
//! documents for its service; the next start adopts them (containerd reconnects to its shims,
//! the kubelet finds its pods). Yet the same stop must leave no component process behind, and
//! both kinds carry the data dir's marker: containerd passes `K0X_MANAGED=<data dir>` on to the
//! shims it starts. So the marker says "ours", and this rule says "a workload or not".
//!
//! The rule: a workload is a process that carries the data dir's marker and runs the data dir's
//! container shim (`<data dir>/bin/containerd-shim-runc-v2`), and every process below such a
//! shim: the containers (their environment comes from the OCI spec, so no marker) and the runc
//! calls the shim makes. Nothing else is a workload.
//!
//! Why the executable: `/proc/PID/exe` is what the kernel runs, where argv can be rewritten by
//! the process. A shim started before an upgrade replaced the binary still counts: the kernel
//! then shows the path with ` (deleted)` after it. Why both marker and executable: a shim of a
//! host containerd or of another data dir runs another file, and a process of ours must still
//! carry our marker to be signalled at all.
//!
//! The rule only sorts; [`crate::Leftovers`] ends what a caller asks for. A stop and the orphan
//! sweep end the component leftovers and keep the workloads; reset ends both.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use k0x_config::DataDir;
use nix::unistd::Pid;

use crate::host::{ProcessTable, marker_entry};
use crate::orphans::marker_value;

/// The container shims k0x ships, as file names in `<data dir>/bin`.
pub const SHIM_EXECUTABLES: &[&str] = &["containerd-shim-runc-v2"];

/// How the kernel shows the executable of a process whose file was replaced or removed.
const DELETED_SUFFIX: &str = " (deleted)";

/// A data dir's processes as k0x tells them apart: its marker, and its shims.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ownership {
    marker: Vec<u8>,
    shims: Vec<PathBuf>,
}

impl Ownership {
    /// The processes of the k0x on `data` (its canonical path, as the supervisor marks them).
    pub fn of(data: &DataDir) -> Self {
        Self::with_marker_value(&marker_value(data))
    }

    /// The processes marked `K0X_MANAGED=<value>`; `value` is a data dir's path.
    pub fn with_marker_value(value: &OsStr) -> Self {
        let bin = DataDir::new(Path::new(value)).bin();
        let mut shims = Vec::new();
        for name in SHIM_EXECUTABLES {
            let shim = bin.join(name);
            // The kernel shows the resolved path: a symlinked bin dir must still match.
            if let Ok(real) = shim.canonicalize()
                && real != shim
            {
                shims.push(real);
            }
            shims.push(shim);
        }
        Self {
            marker: marker_entry(value),
            shims,
        }
    }

    /// The environment entry every process of ours carries (`K0X_MANAGED=<data dir>`).
    pub fn marker(&self) -> &[u8] {
        &self.marker
    }

    /// True when `pid` carries the marker and runs one of the data dir's shims.
    pub fn is_shim(&self, table: &dyn ProcessTable, pid: Pid) -> bool {
        table
            .executable(pid)
            .is_some_and(|exe| self.is_shim_executable(&exe))
            && table.carries_marker(pid, &self.marker)
    }

    fn is_shim_executable(&self, exe: &Path) -> bool {
        let exe = exe.as_os_str().to_string_lossy();
        let exe = exe.strip_suffix(DELETED_SUFFIX).unwrap_or(&exe);
        self.shims.iter().any(|shim| Path::new(exe) == shim)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shim_replaced_by_an_upgrade_is_still_a_shim() {
        let ours = Ownership::with_marker_value(OsStr::new("/var/lib/k0x"));
        let shim = "/var/lib/k0x/bin/containerd-shim-runc-v2";
        assert!(ours.is_shim_executable(Path::new(shim)));
        assert!(ours.is_shim_executable(Path::new(&format!("{shim} (deleted)"))));
        for other in [
            "/usr/bin/containerd-shim-runc-v2",
            "/var/lib/other/bin/containerd-shim-runc-v2",
            "/var/lib/k0x/bin/containerd",
            "/var/lib/k0x/bin/containerd-shim-runc-v2.old",
        ] {
            assert!(!ours.is_shim_executable(Path::new(other)), "{other}");
        }
    }

    #[test]
    fn the_marker_names_the_data_dir() {
        let ours = Ownership::with_marker_value(OsStr::new("/var/lib/k0x"));
        assert_eq!(ours.marker(), b"K0X_MANAGED=/var/lib/k0x");
    }
}
