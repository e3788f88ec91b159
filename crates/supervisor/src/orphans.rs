//! Finding and ending processes a previous k0x left behind.
//!
//! A k0x killed with SIGKILL cannot stop its children. PDEATHSIG kills the direct children, but
//! processes that left the group (containerd shims call setsid) survive, and pid files may name
//! pids the kernel has since given to unrelated processes. A process is therefore only ever
//! signalled when its own environment carries `K0X_MANAGED=<this data dir>`, checked through a
//! pidfd so the pid cannot change hands between the check and the signal.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::io;
use std::time::{Duration, Instant};

use k0x_config::{DataDir, RunDir};
use nix::sys::signal::Signal;
use nix::unistd::Pid;

use crate::host::{ProcessTable, marker_entry};
use crate::lock::DataDirLock;
use crate::system::ProcFs;

/// How long orphans get between SIGTERM and SIGKILL.
pub const ORPHAN_GRACE: Duration = Duration::from_secs(5);

/// The marker value for `data`: its absolute, canonical path where it exists.
pub fn marker_value(data: &DataDir) -> OsString {
    let root = data.root();
    root.canonicalize()
        .or_else(|_| std::path::absolute(root))
        .unwrap_or_else(|_| root.to_path_buf())
        .into_os_string()
}

/// Ends every process left by a previous k0x on this data dir: the pids in stale
/// `<run dir>/*.pid` files and any other process carrying the data dir's marker. Processes
/// without the marker are never touched. Removes the stale pid files. Returns the pids ended.
///
/// Taking the [`DataDirLock`] makes sure no other k0x is running on this data dir.
pub fn end_orphans(run: &RunDir, lock: &DataDirLock) -> io::Result<Vec<Pid>> {
    end_orphans_with(&ProcFs, run, lock.data_dir(), ORPHAN_GRACE)
}

pub(crate) fn end_orphans_with(
    table: &dyn ProcessTable,
    run: &RunDir,
    data: &DataDir,
    grace: Duration,
) -> io::Result<Vec<Pid>> {
    let marker = marker_entry(&marker_value(data));
    let (pid_files, mut candidates) = stale_pid_files(run)?;
    candidates.extend(marked_processes(table, &marker)?);
    let ended = end_marked(table, &candidates, &marker, grace)?;
    for file in pid_files {
        std::fs::remove_file(&file)?;
    }
    for pid in &ended {
        tracing::warn!(
            pid = pid.as_raw(),
            "ended a process left behind by a previous k0x"
        );
    }
    Ok(ended)
}

/// The pid files in the run dir and the pids they name.
fn stale_pid_files(run: &RunDir) -> io::Result<(Vec<std::path::PathBuf>, BTreeSet<Pid>)> {
    let mut files = Vec::new();
    let mut pids = BTreeSet::new();
    let entries = match std::fs::read_dir(run.root()) {
        Ok(entries) => entries,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok((files, pids)),
        Err(error) => return Err(error),
    };
    for entry in entries {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "pid") && path.is_file() {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            match text.trim().parse::<i32>() {
                Ok(pid) if pid > 0 => {
                    pids.insert(Pid::from_raw(pid));
                }
                _ => {}
            }
            files.push(path);
        }
    }
    Ok((files, pids))
}

/// Every process other than this one that carries `marker`.
pub(crate) fn marked_processes(table: &dyn ProcessTable, marker: &[u8]) -> io::Result<Vec<Pid>> {
    let me = Pid::this();
    Ok(table
        .pids()?
        .into_iter()
        .filter(|pid| *pid != me && table.carries_marker(*pid, marker))
        .collect())
}

/// SIGTERM to each marked process in `pids`, SIGKILL to those still there after `grace`.
pub(crate) fn end_marked(
    table: &dyn ProcessTable,
    pids: &BTreeSet<Pid>,
    marker: &[u8],
    grace: Duration,
) -> io::Result<Vec<Pid>> {
    let me = Pid::this();
    let mut ended = Vec::new();
    let mut first_error = None;
    let mut send = |pid: Pid, signal: Signal| match table.signal_if_marked(pid, marker, signal) {
        Ok(sent) => sent,
        Err(error) => {
            tracing::warn!(pid = pid.as_raw(), "cannot send {signal}: {error}");
            first_error.get_or_insert(error);
            false
        }
    };
    for pid in pids.iter().filter(|pid| **pid != me) {
        if send(*pid, Signal::SIGTERM) {
            ended.push(*pid);
        }
    }
    let give_up = Instant::now() + grace;
    while ended.iter().any(|pid| table.carries_marker(*pid, marker)) && Instant::now() < give_up {
        std::thread::sleep(Duration::from_millis(20));
    }
    for pid in &ended {
        send(*pid, Signal::SIGKILL);
    }
    // SIGKILL is delivered asynchronously; give the kernel a moment to finish them off.
    let give_up = Instant::now() + Duration::from_secs(1);
    while ended.iter().any(|pid| table.carries_marker(*pid, marker)) && Instant::now() < give_up {
        std::thread::sleep(Duration::from_millis(10));
    }
    match first_error {
        Some(error) => Err(error),
        None => Ok(ended),
    }
}

/// What a k0x left running on a data dir: the processes carrying its marker (children that left
/// their process group, like containerd shims) and the unmarked processes below them (the
/// containers a shim runs get a fresh environment from their OCI spec, so no marker).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Leftovers {
    pub marked: Vec<Pid>,
    /// Each unmarked descendant with the parent it was found under.
    pub offspring: Vec<(Pid, Pid)>,
}

impl Leftovers {
    /// Finds every process other than this one carrying `marker`, and everything below those.
    pub fn find(table: &dyn ProcessTable, marker: &[u8]) -> io::Result<Self> {
        let marked = marked_processes(table, marker)?;
        let offspring = offspring(table, &marked);
        Ok(Self { marked, offspring })
    }

    pub fn is_empty(&self) -> bool {
        self.marked.is_empty() && self.offspring.is_empty()
    }

    /// Ends them: the offspring first, while their shims still hold them (once a shim is gone
    /// they are reparented and no longer recognisable as ours), then the marked processes. Each
    /// gets SIGTERM, then SIGKILL after `grace`; a signal only reaches a process that is still
    /// what it was found as (marked, or under the same parent). Returns the pids signalled.
    pub fn end(
        &self,
        table: &dyn ProcessTable,
        marker: &[u8],
        grace: Duration,
    ) -> io::Result<Vec<Pid>> {
        let mut ended = end_offspring(table, &self.offspring, grace);
        ended.extend(end_marked(
            table,
            &self.marked.iter().copied().collect(),
            marker,
            grace,
        )?);
        Ok(ended)
    }
}

/// Every unmarked descendant of `roots`, with its parent.
fn offspring(table: &dyn ProcessTable, roots: &[Pid]) -> Vec<(Pid, Pid)> {
    let mut found: Vec<(Pid, Pid)> = Vec::new();
    let mut parents: Vec<Pid> = roots.to_vec();
    while let Some(parent) = parents.pop() {
        for child in table.children(parent) {
            if !roots.contains(&child) && !found.iter().any(|(pid, _)| *pid == child) {
                found.push((child, parent));
                parents.push(child);
            }
        }
    }
    found
}

/// SIGTERM to each of `offspring` still under its parent, SIGKILL after `grace` to those left.
fn end_offspring(table: &dyn ProcessTable, offspring: &[(Pid, Pid)], grace: Duration) -> Vec<Pid> {
    let send = |(pid, parent): &(Pid, Pid), signal: Signal| {
        table
            .signal_if_child_of(*pid, *parent, signal)
            .unwrap_or_else(|error| {
                tracing::warn!(pid = pid.as_raw(), "cannot send {signal}: {error}");
                false
            })
    };
    let ended: Vec<(Pid, Pid)> = offspring
        .iter()
        .filter(|entry| send(entry, Signal::SIGTERM))
        .copied()
        .collect();
    let alive = |entry: &&(Pid, Pid)| table.children(entry.1).contains(&entry.0);
    let give_up = Instant::now() + grace;
    while ended.iter().any(|e| alive(&e)) && Instant::now() < give_up {
        std::thread::sleep(Duration::from_millis(20));
    }
    for entry in &ended {
        send(entry, Signal::SIGKILL);
    }
    ended.into_iter().map(|(pid, _)| pid).collect()
}
