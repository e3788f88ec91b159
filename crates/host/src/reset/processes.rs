//! Finding and ending processes a k0x started, with the supervisor's own search: processes whose
//! environment holds `K0X_MANAGED=<data dir>` (every child the supervisor starts, and what those
//! start, like containerd shims) and the unmarked processes below them (containers start from a
//! clean environment). Signals go through pidfds and only reach a process that is still what it
//! was found as. Nothing else is ever signalled.

use std::fs;
use std::path::Path;
use std::time::Duration;

use k0x_supervisor::{Leftovers, MARKER_VAR, ProcFs, marker_entry};

/// A running process of our data dir's k0x.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MarkedProcess {
    pub pid: i32,
    pub command: String,
    /// Carries the marker itself (false: found as a descendant of one that does).
    pub marked: bool,
}

/// The marker entry for each form the data dir's path may have taken.
fn markers(data_dirs: &[&Path]) -> Vec<Vec<u8>> {
    data_dirs
        .iter()
        .map(|dir| marker_entry(dir.as_os_str()))
        .collect()
}

fn leftovers(marker: &[u8]) -> Leftovers {
    Leftovers::find(&ProcFs, marker).unwrap_or_else(|error| {
        tracing::warn!("cannot read the process table: {error}");
        Leftovers::default()
    })
}

/// Every live process (other than this one) carrying the marker of one of `data_dirs`, plus
/// all their descendants.
pub fn find_marked(data_dirs: &[&Path]) -> Vec<MarkedProcess> {
    let mut found: Vec<MarkedProcess> = Vec::new();
    for marker in markers(data_dirs) {
        let leftovers = leftovers(&marker);
        let marked = leftovers.marked.iter().map(|pid| (*pid, true));
        let offspring = leftovers.offspring.iter().map(|(pid, _)| (*pid, false));
        for (pid, marked) in marked.chain(offspring) {
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

/// Ends the processes of `data_dirs`' k0x (SIGTERM, then SIGKILL after `grace`). Returns the
/// pids still there afterwards.
pub fn stop(data_dirs: &[&Path], grace: Duration) -> Vec<i32> {
    for marker in markers(data_dirs) {
        if let Err(error) = leftovers(&marker).end(&ProcFs, &marker, grace) {
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
