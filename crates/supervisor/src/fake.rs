//! A host without processes, for fast tests of the supervision policy under a paused clock.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use nix::sys::signal::Signal;
use nix::unistd::Pid;
use tokio::sync::{Notify, oneshot};

use crate::host::{Exited, Launch, ProcessHost, ProcessTable, Spawned};
use crate::spec::Probe;
use crate::status::ExitReason;
use crate::tail::OutputTail;

/// What the fake host saw, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Event {
    Spawned(String),
    Signalled(String, Signal),
}

#[derive(Debug, Default)]
pub(crate) struct FakeHost {
    state: Mutex<State>,
    pub(crate) changed: Notify,
}

#[derive(Debug, Default)]
struct State {
    next_pid: i32,
    running: BTreeMap<i32, Process>,
    events: Vec<Event>,
    /// Components whose processes ignore SIGTERM.
    ignore_term: BTreeSet<String>,
    /// Probes that pass, by their description.
    ready: BTreeSet<String>,
    /// Executables that cannot be started.
    missing: BTreeSet<String>,
    /// Other processes on the "host": pid -> environment entries.
    table: BTreeMap<i32, Vec<Vec<u8>>>,
    /// Parent of each process in `table` that has one worth knowing: child -> parent.
    parents: BTreeMap<i32, i32>,
    /// The executable of each process in `table` that has one worth knowing.
    executables: BTreeMap<i32, PathBuf>,
}

#[derive(Debug)]
struct Process {
    component: String,
    exit: oneshot::Sender<Exited>,
    output: OutputTail,
}

impl FakeHost {
    pub(crate) fn events(&self) -> Vec<Event> {
        self.state.lock().unwrap().events.clone()
    }

    pub(crate) fn spawns_of(&self, component: &str) -> usize {
        let spawned = Event::Spawned(component.to_owned());
        self.events().iter().filter(|e| **e == spawned).count()
    }

    pub(crate) fn ignore_term(&self, component: &str) {
        self.state
            .lock()
            .unwrap()
            .ignore_term
            .insert(component.into());
    }

    pub(crate) fn set_ready(&self, probe: &Probe) {
        self.state.lock().unwrap().ready.insert(probe.to_string());
    }

    /// Makes `probe` fail from now on (a hung or overloaded component).
    pub(crate) fn set_unready(&self, probe: &Probe) {
        self.state.lock().unwrap().ready.remove(&probe.to_string());
    }

    pub(crate) fn set_missing(&self, path: &str) {
        self.state.lock().unwrap().missing.insert(path.into());
    }

    pub(crate) fn add_process(&self, pid: i32, environ: &[&[u8]]) {
        let environ = environ.iter().map(|e| e.to_vec()).collect();
        self.state.lock().unwrap().table.insert(pid, environ);
    }

    /// A process without marker whose parent is `parent` (a container under a shim).
    pub(crate) fn add_child(&self, pid: i32, parent: i32) {
        let mut state = self.state.lock().unwrap();
        state.table.insert(pid, vec![b"PATH=/bin".to_vec()]);
        state.parents.insert(pid, parent);
    }

    /// A process running `exe` with the environment `environ` (a shim: the data dir's
    /// containerd-shim-runc-v2 and the marker it inherited from containerd).
    pub(crate) fn add_running(&self, pid: i32, exe: &Path, environ: &[&[u8]]) {
        self.add_process(pid, environ);
        let mut state = self.state.lock().unwrap();
        state.executables.insert(pid, exe.to_path_buf());
    }

    /// Makes `pid` a child of `parent` (a runc call of a shim, with the shim's environment).
    pub(crate) fn set_parent(&self, pid: i32, parent: i32) {
        self.state.lock().unwrap().parents.insert(pid, parent);
    }

    pub(crate) fn has_process(&self, pid: i32) -> bool {
        self.state.lock().unwrap().table.contains_key(&pid)
    }

    /// Makes the running process of `component` exit; false if it has none.
    pub(crate) fn exit(&self, component: &str, reason: ExitReason) -> bool {
        let mut state = self.state.lock().unwrap();
        let pid = state
            .running
            .iter()
            .find(|(_, p)| p.component == component)
            .map(|(pid, _)| *pid);
        let Some(process) = pid.and_then(|pid| state.running.remove(&pid)) else {
            return false;
        };
        let _ = process.exit.send(Exited {
            reason,
            zombie: None,
        });
        true
    }

    /// Makes the running process of `component` write `line`.
    pub(crate) fn say(&self, component: &str, line: &str) {
        let state = self.state.lock().unwrap();
        if let Some(process) = state.running.values().find(|p| p.component == component) {
            process.output.push(line);
        }
    }

    pub(crate) fn is_running(&self, component: &str) -> bool {
        let state = self.state.lock().unwrap();
        state.running.values().any(|p| p.component == component)
    }
}

impl ProcessHost for FakeHost {
    async fn spawn(&self, launch: Launch) -> io::Result<Spawned> {
        let mut state = self.state.lock().unwrap();
        if state
            .missing
            .contains(launch.path.to_str().unwrap_or_default())
        {
            return Err(io::Error::from(io::ErrorKind::NotFound));
        }
        state.next_pid += 1;
        let pid = state.next_pid + 1000;
        let (exit, exited) = oneshot::channel();
        let output = OutputTail::new(0);
        state.events.push(Event::Spawned(launch.component.clone()));
        state.running.insert(
            pid,
            Process {
                component: launch.component,
                exit,
                output: output.clone(),
            },
        );
        drop(state);
        self.changed.notify_waiters();
        Ok(Spawned {
            pid: Pid::from_raw(pid),
            exited,
            output,
        })
    }

    fn signal_group(&self, pgid: Pid, signal: Signal) -> io::Result<()> {
        let mut state = self.state.lock().unwrap();
        let Some(component) = state
            .running
            .get(&pgid.as_raw())
            .map(|p| p.component.clone())
        else {
            return Ok(());
        };
        state
            .events
            .push(Event::Signalled(component.clone(), signal));
        let ignored = signal == Signal::SIGTERM && state.ignore_term.contains(&component);
        if !ignored {
            let process = state.running.remove(&pgid.as_raw()).unwrap();
            let _ = process.exit.send(Exited {
                reason: ExitReason::Signal(signal as i32),
                zombie: None,
            });
        }
        Ok(())
    }

    async fn probe(&self, probe: &Probe, _attempt_timeout: Duration) -> Result<(), String> {
        if self
            .state
            .lock()
            .unwrap()
            .ready
            .contains(&probe.to_string())
        {
            Ok(())
        } else {
            Err("connection refused".into())
        }
    }
}

impl ProcessTable for FakeHost {
    fn pids(&self) -> io::Result<Vec<Pid>> {
        let state = self.state.lock().unwrap();
        Ok(state.table.keys().map(|p| Pid::from_raw(*p)).collect())
    }

    fn carries_marker(&self, pid: Pid, marker: &[u8]) -> bool {
        let state = self.state.lock().unwrap();
        state
            .table
            .get(&pid.as_raw())
            .is_some_and(|environ| environ.iter().any(|e| e == marker))
    }

    fn signal_if_marked(&self, pid: Pid, marker: &[u8], _signal: Signal) -> io::Result<bool> {
        if !self.carries_marker(pid, marker) {
            return Ok(false);
        }
        self.state.lock().unwrap().table.remove(&pid.as_raw());
        Ok(true)
    }

    fn children(&self, pid: Pid) -> Vec<Pid> {
        let state = self.state.lock().unwrap();
        state
            .parents
            .iter()
            .filter(|(child, parent)| **parent == pid.as_raw() && state.table.contains_key(child))
            .map(|(child, _)| Pid::from_raw(*child))
            .collect()
    }

    fn executable(&self, pid: Pid) -> Option<PathBuf> {
        let state = self.state.lock().unwrap();
        state
            .table
            .contains_key(&pid.as_raw())
            .then(|| state.executables.get(&pid.as_raw()).cloned())
            .flatten()
    }

    fn signal_if_child_of(&self, pid: Pid, parent: Pid, _signal: Signal) -> io::Result<bool> {
        let mut state = self.state.lock().unwrap();
        if state.parents.get(&pid.as_raw()) != Some(&parent.as_raw()) {
            return Ok(false);
        }
        Ok(state.table.remove(&pid.as_raw()).is_some())
    }
}
