//! Finding and ending processes a k0x started, by the `K0X_MANAGED=<data dir>` marker in their
//! environment. The supervisor sets the marker on every child and children inherit it, so this
//! also finds shims and helpers; a process without the marker is never signalled.

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
}

/// Every live process (other than this one) whose environment holds `K0X_MANAGED=<dir>` for one
/// of `data_dirs` (the path as given and its canonical form).
pub fn find_marked(data_dirs: &[&Path]) -> Vec<MarkedProcess> {
    let wanted: Vec<Vec<u8>> = data_dirs
        .iter()
        .map(|dir| format!("{MARKER_VAR}={}", dir.display()).into_bytes())
        .collect();
    let me = std::process::id() as i32;
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut found: Vec<MarkedProcess> = entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| pid != me)
        .filter(|&pid| {
            // Unreadable (gone, or a kernel thread) means not ours.
            fs::read(format!("/proc/{pid}/environ")).is_ok_and(|environ| {
                environ
                    .split(|&b| b == 0)
                    .any(|var| wanted.iter().any(|w| w.as_slice() == var))
            })
        })
        .filter(|&pid| is_alive(pid))
        .map(|pid| MarkedProcess {
            pid,
            command: command_line(pid),
        })
        .collect();
    found.sort_by_key(|p| p.pid);
    found
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
    fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        // The state follows the command name, which is in parentheses and may contain spaces.
        stat.rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X")
    })
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
