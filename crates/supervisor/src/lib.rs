//! Supervision of k0x's child processes.
//!
//! Components are described by a [`Spec`]; the [`Supervisor`] starts them in dependency order,
//! gates dependents on readiness probes, restarts them under their [`RestartPolicy`] with
//! exponential backoff, and stops them in reverse order without leaving children behind.
//!
//! Guarantees, and how they are kept:
//! - a child dies with k0x, even when k0x is SIGKILLed: PR_SET_PDEATHSIG=SIGKILL, armed from one
//!   long-lived spawner thread ([`SystemHost`]);
//! - a stop leaves no component behind: each child leads its own process group, which gets
//!   SIGTERM, then SIGKILL after the stop timeout, and every process still carrying the data
//!   dir's marker (`K0X_MANAGED=<data dir>`) is ended after the last component stopped;
//! - a stop leaves the workloads running: container shims and the containers below them
//!   ([`workloads`] says which processes those are) are kept for the next start to adopt, as a
//!   kubelet restart does; only `k0x reset` (or `k0x stop --workloads`) ends them;
//! - a k0x restarted after a SIGKILL ends its predecessor's component leftovers
//!   ([`end_orphans`]), keeps its workloads, and touches nothing else: a process is only
//!   signalled when its own environment carries the marker;
//! - one k0x per data dir: the supervisor needs the [`DataDirLock`] to run;
//! - a component that was ready is watched by its probe from then on: shown degraded while the
//!   probe fails, restarted only when it has failed for a long time ([`HealthPolicy`], five
//!   minutes by default, because tight probes kill busy components on slow boards).

mod backoff;
mod error;
mod host;
mod lock;
mod logs;
mod order;
mod orphans;
pub mod probe;
mod runner;
pub mod spec;
mod status;
mod supervisor;
mod system;
mod tail;
pub mod workloads;

#[cfg(test)]
mod fake;

pub use backoff::BackoffPolicy;
pub use error::Error;
pub use host::{
    Exited, Launch, MARKER_VAR, ProcessHost, ProcessTable, Spawned, Zombie, marker_entry,
};
pub use lock::{DataDirLock, LockError};
pub use orphans::{Leftovers, ORPHAN_GRACE, end_orphans, marker_value};
pub use spec::{HealthPolicy, Probe, ProbeTiming, Readiness, RestartPolicy, Spec};
pub use status::{ComponentState, ComponentStatus, ExitReason};
pub use supervisor::{Supervisor, SupervisorConfig, all_ready};
pub use system::{ProcFs, SystemHost};
pub use tail::OutputTail;
pub use workloads::{Ownership, SHIM_EXECUTABLES};

/// Re-exported so callers can name pids and signals without depending on nix themselves.
pub use nix::sys::signal::Signal;
pub use nix::unistd::Pid;
