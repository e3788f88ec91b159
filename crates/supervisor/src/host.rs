//! The seam between supervision policy and the operating system.
//!
//! Ordering, readiness gating, restart and backoff decisions live in the runner and talk to the
//! host only through [`ProcessHost`] and [`ProcessTable`]. The real implementation
//! ([`crate::SystemHost`]) forks, signals and reads /proc; tests substitute a fake so the policy
//! has fast tests without processes, next to the real-process tests.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::future::Future;
use std::io;
use std::path::PathBuf;
use std::time::Duration;

use nix::sys::signal::Signal;
use nix::unistd::Pid;
use tokio::sync::oneshot;

use crate::spec::Probe;
use crate::status::ExitReason;
use crate::tail::OutputTail;

/// Name of the environment marker every supervised child carries (`K0X_MANAGED=<data dir>`).
pub const MARKER_VAR: &str = "K0X_MANAGED";

/// Everything needed to start one process of a component.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Launch {
    pub component: String,
    pub path: PathBuf,
    pub args: Vec<String>,
    pub env: BTreeMap<String, String>,
    pub dir: Option<PathBuf>,
    /// Value of [`MARKER_VAR`] in the child's environment.
    pub marker: OsString,
}

/// A started process.
#[derive(Debug)]
pub struct Spawned {
    /// The pid, which is also the id of the child's own process group.
    pub pid: Pid,
    /// Resolves once the process has exited. The process stays a zombie (so its pid and group id
    /// cannot be reused) until the [`Exited`] value is dropped.
    pub exited: oneshot::Receiver<Exited>,
    /// The last lines it wrote, for the message that says why it died.
    pub output: OutputTail,
}

/// An exited, not yet reaped process.
#[derive(Debug)]
pub struct Exited {
    pub reason: ExitReason,
    /// Reaps the zombie when dropped; `None` for hosts without real processes.
    pub zombie: Option<Zombie>,
}

/// An exited child of this process; dropping it reaps it.
#[derive(Debug)]
pub struct Zombie(pub(crate) Pid);

impl Drop for Zombie {
    fn drop(&mut self) {
        // The child has exited (waitid reported it), so this does not block.
        let _ = nix::sys::wait::waitpid(self.0, None);
    }
}

/// Process creation, signals and probes.
pub trait ProcessHost: ProcessTable + Send + Sync + 'static {
    /// Starts a process in its own process group, forwarding its output to the logs.
    fn spawn(&self, launch: Launch) -> impl Future<Output = io::Result<Spawned>> + Send;

    /// Sends `signal` to every process in group `pgid`; a group that no longer exists is not an error.
    fn signal_group(&self, pgid: Pid, signal: Signal) -> io::Result<()>;

    /// One readiness check; `Err` says why it did not pass.
    fn probe(
        &self,
        probe: &Probe,
        attempt_timeout: Duration,
    ) -> impl Future<Output = Result<(), String>> + Send;
}

/// The host's process table, as far as finding marked processes goes.
pub trait ProcessTable: Send + Sync {
    /// Every pid on the host.
    fn pids(&self) -> io::Result<Vec<Pid>>;

    /// True when `pid` is alive and its environment contains exactly `marker` (`K0X_MANAGED=...`).
    fn carries_marker(&self, pid: Pid, marker: &[u8]) -> bool;

    /// Sends `signal` to `pid` only if it carries `marker`, without a window in which the pid
    /// could be reused by another process. `Ok(false)`: not marked or gone.
    fn signal_if_marked(&self, pid: Pid, marker: &[u8], signal: Signal) -> io::Result<bool>;

    /// The processes whose parent is `pid`.
    fn children(&self, pid: Pid) -> Vec<Pid>;

    /// The file `pid` runs, as the kernel shows it (`/proc/PID/exe`); `None` when it is gone or
    /// cannot be read (a kernel thread).
    fn executable(&self, pid: Pid) -> Option<PathBuf>;

    /// Sends `signal` to `pid` only if its parent is still `parent`, pinned the same way as
    /// [`ProcessTable::signal_if_marked`]. `Ok(false)`: reparented or gone.
    fn signal_if_child_of(&self, pid: Pid, parent: Pid, signal: Signal) -> io::Result<bool>;
}

/// The full environment entry (`K0X_MANAGED=<value>`) as it appears in /proc/PID/environ.
pub fn marker_entry(value: &std::ffi::OsStr) -> Vec<u8> {
    use std::os::unix::ffi::OsStrExt;
    let mut entry = format!("{MARKER_VAR}=").into_bytes();
    entry.extend_from_slice(value.as_bytes());
    entry
}
