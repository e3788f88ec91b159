//! Finding and ending processes a k0x started, with the supervisor's own search and its one rule
//! for workloads ([`k0x_supervisor::workloads`]): processes whose environment holds
//! `K0X_MANAGED=<data dir>` (every child the supervisor starts, and what those start, like
//! containerd shims) and the unmarked processes below them (containers start from a clean
//! environment). A stop of k0x keeps the workloads (shims and containers) running; reset ends
//! them with everything else. Signals go through pidfds and only reach a process that is still
//! what it was found as. Nothing else is ever signalled.

use std::fs;
use std::path::Path;
use std::time::Duration;

use k0x_supervisor::ProcessTable;

use k0x_supervisor::{Leftovers, MARKER_VAR, Ownership, ProcFs};

/// A running process of our data dir's k0x.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MarkedProcess {
    pub pid: i32,
    pub command: String,
    /// Carries the marker itself (false: found as a descendant of one that does).
    pub marked: bool,
}

/// The processes of each form the data dir's path may have taken.
fn owners(data_dirs: &[&Path]) -> Vec<Ownership> {
    data_dirs
        .iter()
        .map(|dir| Ownership::with_marker_value(dir.as_os_str()))
        .collect()
}

fn leftovers(ours: &Ownership) -> Leftovers {
    Leftovers::find(&ProcFs, ours).unwrap_or_else(|error| {
        tracing::warn!("cannot read the process table: {error}");
        Leftovers::default()
    })
}

/// Every live process (other than this one) carrying the marker of one of `data_dirs`, plus
/// all their descendants.
pub fn find_marked(data_dirs: &[&Path]) -> Vec<MarkedProcess> {
    let mut found: Vec<MarkedProcess> = Vec::new();
    for ours in owners(data_dirs) {
        let leftovers = leftovers(&ours);
        let marked = leftovers.marked.iter().map(|pid| (*pid, true));
        let offspring = leftovers.offspring.iter().map(|(pid, _)| (*pid, false));
        let shims = leftovers.shims.iter().map(|pid| (*pid, true));
        // Below a shim: the containers (no marker) and the shim's runc calls (its marker).
        let containers = leftovers
            .containers
            .iter()
            .map(|(pid, _)| (*pid, ProcFs.carries_marker(*pid, ours.marker())));
        let all = marked.chain(offspring).chain(shims).chain(containers);
        for (pid, marked) in all {
            if !found.iter().any(|p| p.pid == pid.as_raw()) {
                found.push(MarkedProcess {
                    pid: pid.as_raw(),
                    command: command_line(pid.as_raw()),
                    marked,
                });
            }
        }
    }
    found.sort_by_key(|p| p.pid);
    found
}

/// Ends the processes of `data_dirs`' k0x, workloads included (SIGTERM, then SIGKILL after
/// `grace`). Returns the pids still there afterwards.
pub fn stop(data_dirs: &[&Path], grace: Duration) -> Vec<i32> {
    for ours in owners(data_dirs) {
        if let Err(error) = leftovers(&ours).end(&ProcFs, &ours, grace) {
            tracing::warn!("cannot end every process of {MARKER_VAR}: {error}");
        }
    }
    find_marked(data_dirs).into_iter().map(|p| p.pid).collect()
}

fn command_line(pid: i32) -> String {
    fs::read(format!("/proc/{pid}/cmdline"))
        .map(|raw| {
            raw.split(|&b| b == 0)
                .filter(|s| !s.is_empty())
                .map(|s| String::from_utf8_lossy(s).into_owned())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default()
}
