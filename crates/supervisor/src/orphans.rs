//! Finding and ending processes a previous k0x left behind.
//!
//! A k0x killed with SIGKILL cannot stop its children. PDEATHSIG kills the direct children, but
//! processes that left the group (containerd shims call setsid) survive, and pid files may name
//! pids the kernel has since given to unrelated processes. A process is therefore only ever
//! signalled when its own environment carries `K0X_MANAGED=<this data dir>`, checked through a
//! pidfd so the pid cannot change hands between the check and the signal.
//!
//! Not every marked process is a leftover: shims and the containers below them are workloads
//! (see [`crate::workloads`]) and keep running across a restart of k0x, also after a SIGKILL;
//! the new containerd adopts them. [`Leftovers`] sorts the two apart.
//!
//! The sort happens before the signals. A pid that died in between can only be reused by a new
//! shim of ours if our containerd runs, and neither sweep runs while it does (the stop sweep
//! runs after containerd stopped, the orphan sweep under the data dir's lock before it starts).

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::io;
use std::time::{Duration, Instant};

use k0x_config::{DataDir, RunDir};
use nix::sys::signal::Signal;
use nix::unistd::Pid;

use crate::host::ProcessTable;
use crate::lock::DataDirLock;
use crate::system::ProcFs;
use crate::workloads::Ownership;

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

/// Ends every component process left by a previous k0x on this data dir: each process carrying
/// the data dir's marker that is no workload, and the unmarked processes below those. Processes
/// without the marker are never touched, and workloads (shims, containers) are kept for the new
/// containerd. Removes the stale `<run dir>/*.pid` files. Returns the pids ended.
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
    let ours = Ownership::of(data);
    // A pid file's pid is only ever signalled when it carries the marker, so the scan finds
    // every one of them that is still ours; the files only need to go.
    let pid_files = stale_pid_files(run)?;
    let leftovers = Leftovers::find(table, &ours)?;
    let ended = leftovers.end_components(table, &ours, grace)?;
    for file in pid_files {
        std::fs::remove_file(&file)?;
    }
    for pid in &ended {
        tracing::warn!(
            pid = pid.as_raw(),
            "ended a process left behind by a previous k0x"
        );
    }
    let workloads = leftovers.workloads();
    if !workloads.is_empty() {
        tracing::info!(
            shims = leftovers.shims.len(),
            processes = workloads.len(),
            "kept the running containers of a previous k0x; containerd adopts them"
        );
    }
    Ok(ended)
}

/// The pid files in the run dir.
fn stale_pid_files(run: &RunDir) -> io::Result<Vec<std::path::PathBuf>> {
    let mut files = Vec::new();
    let entries = match std::fs::read_dir(run.root()) {
        Ok(entries) => entries,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(files),
        Err(error) => return Err(error),
    };
    for entry in entries {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "pid") && path.is_file() {
            files.push(path);
        }
    }
    Ok(files)
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

/// What a k0x left running on a data dir, sorted by [`Ownership`]'s rule (see
/// [`crate::workloads`]): the component leftovers a stop ends, and the workloads only reset (or
/// `k0x stop --workloads`) ends.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Leftovers {
    /// Marked processes that are no workload: children that left their component's process
    /// group, or outlived a k0x killed with SIGKILL.
    pub marked: Vec<Pid>,
    /// The unmarked processes below `marked` that are no workload, each with the parent it was
    /// found under.
    pub offspring: Vec<(Pid, Pid)>,
    /// The shims: marked processes running the data dir's container shim.
    pub shims: Vec<Pid>,
    /// Everything below the shims (containers, the runc calls of a shim), each with its parent.
    pub containers: Vec<(Pid, Pid)>,
}

impl Leftovers {
    /// Finds every process other than this one carrying `ours`' marker, and everything below
    /// those, and sorts them into component leftovers and workloads.
    pub fn find(table: &dyn ProcessTable, ours: &Ownership) -> io::Result<Self> {
        let all = marked_processes(table, ours.marker())?;
        let shims: Vec<Pid> = all
            .iter()
            .copied()
            .filter(|pid| ours.is_shim(table, *pid))
            .collect();
        let containers = offspring(table, &shims, &BTreeSet::new());
        let workloads: BTreeSet<Pid> = shims
            .iter()
            .copied()
            .chain(containers.iter().map(|(pid, _)| *pid))
            .collect();
        let marked: Vec<Pid> = all
            .into_iter()
            .filter(|pid| !workloads.contains(pid))
            .collect();
        let offspring = offspring(table, &marked, &workloads);
        Ok(Self {
            marked,
            offspring,
            shims,
            containers,
        })
    }

    pub fn is_empty(&self) -> bool {
        self.marked.is_empty()
            && self.offspring.is_empty()
            && self.shims.is_empty()
            && self.containers.is_empty()
    }

    /// The workload processes: the shims, then what runs below them.
    pub fn workloads(&self) -> Vec<Pid> {
        self.shims
            .iter()
            .copied()
            .chain(self.containers.iter().map(|(pid, _)| *pid))
            .collect()
    }

    /// Ends the component leftovers and keeps the workloads running: what a stop of k0x and the
    /// next start's orphan sweep do. See [`Leftovers::end`] for how each is ended.
    pub fn end_components(
        &self,
        table: &dyn ProcessTable,
        ours: &Ownership,
        grace: Duration,
    ) -> io::Result<Vec<Pid>> {
        let mut ended = end_offspring(table, &self.offspring, grace);
        ended.extend(end_marked(
            table,
            &self.marked.iter().copied().collect(),
            ours.marker(),
            grace,
        )?);
        Ok(ended)
    }

    /// Ends everything, workloads included: what `k0x reset` does. Whatever is below a process
    /// goes first, while its parent still holds it (once a shim is gone its containers are
    /// reparented and no longer recognisable as ours): containers, then shims, then component
    /// offspring, then marked processes. Each gets SIGTERM, then SIGKILL after `grace`; a signal
    /// only reaches a process that is still what it was found as (marked, or under the same
    /// parent). Returns the pids signalled.
    pub fn end(
        &self,
        table: &dyn ProcessTable,
        ours: &Ownership,
        grace: Duration,
    ) -> io::Result<Vec<Pid>> {
        let mut ended = end_offspring(table, &self.containers, grace);
        let shims = end_marked(
            table,
            &self.shims.iter().copied().collect(),
            ours.marker(),
            grace,
        );
        let components = self.end_components(table, ours, grace);
        ended.extend(shims?);
        ended.extend(components?);
        Ok(ended)
    }
}

/// Every descendant of `roots` that is neither a root nor in `skip`, with its parent.
fn offspring(table: &dyn ProcessTable, roots: &[Pid], skip: &BTreeSet<Pid>) -> Vec<(Pid, Pid)> {
    let mut found: Vec<(Pid, Pid)> = Vec::new();
    let mut parents: Vec<Pid> = roots.to_vec();
    while let Some(parent) = parents.pop() {
        for child in table.children(parent) {
            if !roots.contains(&child)
                && !skip.contains(&child)
                && !found.iter().any(|(pid, _)| *pid == child)
            {
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
