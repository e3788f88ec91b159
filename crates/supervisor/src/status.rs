//! What the supervisor reports about each component: the view `k0x status` and the admin socket
//! serve, and what the server watches to tell systemd that everything is ready.

use std::fmt;
use std::time::{Duration, SystemTime};

use nix::sys::signal::Signal;
use serde::Serialize;

/// Where a component is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ComponentState {
    /// Waiting for its dependencies to become ready.
    Waiting,
    /// Its process runs; the readiness probe has not passed yet.
    Starting,
    /// Its process runs and the readiness probe passed.
    Ready,
    /// It was ready, but its probe fails now; restarted if that lasts (see `HealthPolicy`).
    Degraded,
    /// Its process runs but the probe did not pass within its timeout after a restart; watched
    /// like a degraded component from then on.
    Running,
    /// It exited and will be restarted after a delay.
    Backoff,
    /// A stop was requested; waiting for the process group to exit.
    Stopping,
    /// Not running, by request or because it exited cleanly under its restart policy.
    Stopped,
    /// Not running and not restarted (failed start, or a failure its policy does not restart).
    Failed,
}

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ExitReason {
    /// It exited with this code.
    Code(i32),
    /// It was killed by this signal number.
    Signal(i32),
}

impl ExitReason {
    /// True for exit code 0 only; a signal is never a success.
    pub fn success(self) -> bool {
        self == ExitReason::Code(0)
    }
}

impl fmt::Display for ExitReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExitReason::Code(code) => write!(f, "exit code {code}"),
            ExitReason::Signal(number) => match Signal::try_from(*number) {
                Ok(signal) => write!(f, "signal {}", signal.as_str()),
                Err(_) => write!(f, "signal {number}"),
            },
        }
    }
}

/// One component's current status.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ComponentStatus {
    pub name: String,
    pub state: ComponentState,
    /// Pid of the running process (also its process group id).
    pub pid: Option<u32>,
    /// How many times the process was started again after an exit.
    pub restarts: u32,
    pub last_exit: Option<ExitReason>,
    /// The delay of the current or latest restart backoff.
    pub backoff: Option<Duration>,
    /// The latest problem (failed probe, spawn error), cleared when the component becomes ready.
    pub message: Option<String>,
    /// When `state` last changed.
    pub since: SystemTime,
}

impl ComponentStatus {
    pub(crate) fn new(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            state: ComponentState::Waiting,
            pid: None,
            restarts: 0,
            last_exit: None,
            backoff: None,
            message: None,
            since: SystemTime::now(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_reasons_read_like_sentences() {
        assert_eq!(ExitReason::Code(1).to_string(), "exit code 1");
        assert_eq!(ExitReason::Signal(9).to_string(), "signal SIGKILL");
        assert!(ExitReason::Code(0).success());
        assert!(!ExitReason::Signal(15).success());
    }

    #[test]
    fn status_serializes_for_the_admin_socket() {
        let mut status = ComponentStatus::new("etcd");
        status.last_exit = Some(ExitReason::Signal(9));
        let json = serde_json::to_value(&status).unwrap();
        assert_eq!(json["state"], "waiting");
        assert_eq!(json["last_exit"]["signal"], 9);
    }
}
