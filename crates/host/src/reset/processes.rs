//! Finding and ending processes a k0x started, by the `K0X_MANAGED=<data dir>` marker in their
//! environment. The supervisor sets the marker on every child and children inherit it, so this
//! also finds shims and helpers; container processes, which start from a clean environment, are
//! found as descendants of a marked process. Nothing else is ever signalled.

use std::fs;
use std::path::Path;
use std::thread::sleep;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// The environment variable the supervisor sets on every child.
pub const MARKER_VAR: &str = "K0X_MANAGED";

/// A running process carrying the marker of our data dir.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MarkedProcess {
    pub pid: i32,
    pub command: String,
    /// Carries the marker itself (false: found as a descendant of one that does).
    pub marked: bool,
}

/// Every live process (other than this one) whose environment holds `K0X_MANAGED=<dir>` for one
/// of `data_dirs` (the path as given and its canonical form), plus all their descendants: a
/// container's processes get a fresh environment from their OCI spec, but they descend from a
/// marked containerd shim.
pub fn find_marked(data_dirs: &[&Path]) -> Vec<MarkedProcess> {
    let wanted: Vec<Vec<u8>> = data_dirs
        .iter()
        .map(|dir| format!("{MARKER_VAR}={}", dir.display()).into_bytes())
        .collect();
    let me = std::process::id() as i32;
    let live: Vec<(i32, i32)> = all_pids()
        .into_iter()
        .filter(|&pid| pid != me)
        .filter_map(|pid| Some((pid, live_parent(pid)?)))
        .collect();
    let mut found: Vec<i32> = live
        .iter()
        .map(|&(pid, _)| pid)
        .filter(|&pid| {
            // Unreadable (gone, or a kernel thread) means not ours.
            fs::read(format!("/proc/{pid}/environ")).is_ok_and(|environ| {
                environ
                    .split(|&b| b == 0)
                    .any(|var| wanted.iter().any(|w| w.as_slice() == var))
            })
        })
        .collect();
    let carrying_marker = found.len();
    // Add children of found processes until nothing new turns up.
    let mut index = 0;
    while index < found.len() {
        let parent = found[index];
        let children: Vec<i32> = live
            .iter()
            .filter(|&&(pid, ppid)| ppid == parent && pid != me && !found.contains(&pid))
            .map(|&(pid, _)| pid)
            .collect();
        found.extend(children);
        index += 1;
    }
    let mut processes: Vec<MarkedProcess> = found
        .iter()
        .enumerate()
        .map(|(index, &pid)| MarkedProcess {
            pid,
            command: command_line(pid),
            marked: index < carrying_marker,
        })
        .collect();
    processes.sort_by_key(|p| p.pid);
    processes
}

fn all_pids() -> Vec<i32> {
    fs::read_dir("/proc")
        .map(|entries| {
            entries
                .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<i32>().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// The parent pid of a live (not zombie) process.
fn live_parent(pid: i32) -> Option<i32> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // State and ppid follow the command name, which is in parentheses and may contain spaces.
    let (_, rest) = stat.rsplit_once(')')?;
    let mut fields = rest.split_whitespace();
    let state = fields.next()?;
    let ppid = fields.next()?.parse().ok()?;
    (state != "Z" && state != "X").then_some(ppid)
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

/// Alive and not a zombie (a zombie has exited and only waits for its parent to reap it).
fn is_alive(pid: i32) -> bool {
    live_parent(pid).is_some()
}

/// Sends SIGTERM to every process, waits up to `grace`, then SIGKILLs what is left and waits
/// for it to go. Returns the pids that survived even that.
pub fn stop(pids: &[i32], grace: Duration) -> Vec<i32> {
    signal_all(pids, Signal::SIGTERM);
    let left = wait_gone(pids, grace);
    if left.is_empty() {
        return left;
    }
    signal_all(&left, Signal::SIGKILL);
    wait_gone(&left, Duration::from_secs(5))
}

fn signal_all(pids: &[i32], signal: Signal) {
    for &pid in pids {
        let _ = kill(Pid::from_raw(pid), signal);
    }
}

fn wait_gone(pids: &[i32], limit: Duration) -> Vec<i32> {
    let deadline = Instant::now() + limit;
    loop {
        let alive: Vec<i32> = pids.iter().copied().filter(|&p| is_alive(p)).collect();
        if alive.is_empty() || Instant::now() >= deadline {
            return alive;
        }
        sleep(Duration::from_millis(50));
    }
}
