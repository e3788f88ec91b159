//! Host integration of k0x: everything that touches the machine outside the data and run dirs.
//!
//! - [`units`]: the systemd and OpenRC service templates and their rendering.
//! - [`install`]: writes a rendered unit (and a worker's join token) below a root, never starts it.
//! - [`service`]: `k0x start` / `k0x stop` through the host's service manager.
//! - [`notify`]: READY=1 / STOPPING=1 for the `Type=notify` units.
//! - [`sysinfo`]: preflight checks with a one-line fix each, `--fix` for the safe ones, and
//!   [`sysinfo::prepare_for_start`] that `k0x server` / `k0x worker` run before starting
//!   anything: the safe fixes until reboot, then the fatal checks.
//! - [`reset`]: removes what k0x created (processes, mounts, dirs, CNI bridge and chains, units).
//!
//! Host side effects of the checks go through the [`sysinfo::SysinfoHost`] trait so every check is
//! tested against fakes as well as against this machine.

pub mod install;
pub mod notify;
pub mod reset;
pub mod service;
pub mod sysinfo;
pub mod units;
