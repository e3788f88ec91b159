//! One task per component: wait for dependencies, run, probe, restart, stop.
//!
//! The runner owns every decision about its component (restart or not, how long to wait, when
//! to escalate to SIGKILL) and touches the system only through [`ProcessHost`], so the whole policy is
//! tested with a fake host and tokio's paused clock.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use nix::sys::signal::Signal;
use nix::unistd::Pid;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::backoff::{Backoff, BackoffPolicy};
use crate::host::{Exited, Launch, ProcessHost, Spawned};
use crate::spec::{Probe, Readiness, RestartPolicy, Spec};
use crate::status::{ComponentState, ComponentStatus, ExitReason};
use crate::tail::OutputTail;

/// The outcome of a component's first start, which dependents and `start` wait for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Startup {
    Pending,
    Ready,
    Failed(String),
}

pub(crate) type StatusSender = Arc<watch::Sender<Vec<ComponentStatus>>>;

pub(crate) struct Runner<H> {
    pub(crate) spec: Spec,
    pub(crate) index: usize,
    pub(crate) host: Arc<H>,
    pub(crate) status: StatusSender,
    pub(crate) startup: watch::Sender<Startup>,
    pub(crate) dependencies: Vec<(String, watch::Receiver<Startup>)>,
    pub(crate) pid_file: PathBuf,
    pub(crate) marker: std::ffi::OsString,
    pub(crate) backoff: BackoffPolicy,
}

/// How one process of the component ended.
enum Ended {
    Exited(ExitReason, Duration),
    Stopped,
    NotReady(String),
    /// Ended by the supervisor after failing its probe for too long: restarted whatever its
    /// exit code (a clean exit on SIGTERM must not leave it stopped).
    Unhealthy(Duration),
}

impl RestartPolicy {
    fn restarts_after(self, reason: ExitReason) -> bool {
        match self {
            RestartPolicy::Always => true,
            RestartPolicy::OnFailure => !reason.success(),
            RestartPolicy::Never => false,
        }
    }
}

impl<H: ProcessHost> Runner<H> {
    /// Runs the component until a stop is requested (`stop` becomes true or its sender is
    /// dropped) or its restart policy gives up.
    pub(crate) async fn run(self, mut stop: watch::Receiver<bool>) {
        if !self.wait_for_dependencies(&mut stop).await {
            return;
        }
        let deadline = Instant::now() + self.spec.readiness.timing.timeout;
        let mut backoff = Backoff::new(self.backoff);
        let mut ever_ready = false;
        let mut ever_spawned = false;
        loop {
            let spawned = match self.host.spawn(self.launch()).await {
                Ok(spawned) => spawned,
                Err(error) => {
                    let problem = self.spawn_problem(&error);
                    if !ever_spawned {
                        return self.fail(problem);
                    }
                    tracing::error!(component = %self.spec.name, "{problem}");
                    self.update(|s| s.message = Some(problem));
                    if !self.back_off(backoff.next_delay(), &mut stop).await {
                        return;
                    }
                    continue;
                }
            };
            ever_spawned = true;
            let output = spawned.output.clone();
            let probe_deadline = if ever_ready {
                Instant::now() + self.spec.readiness.timing.timeout
            } else {
                deadline
            };
            match self
                .supervise(spawned, &mut ever_ready, probe_deadline, &mut stop)
                .await
            {
                Ended::Stopped => return,
                Ended::NotReady(problem) => return self.fail(quoting(problem, &output).await),
                Ended::Unhealthy(ran) => {
                    backoff.record_run(ran);
                    if !self.back_off(backoff.next_delay(), &mut stop).await {
                        return;
                    }
                }
                Ended::Exited(reason, ran) => {
                    let restarts = self.spec.restart.restarts_after(reason);
                    if !restarts && !ever_ready {
                        let policy = self.spec.restart;
                        let problem = format!(
                            "it exited with {reason} before it was ready (restart policy {policy:?})"
                        );
                        return self.fail(quoting(problem, &output).await);
                    }
                    if !restarts {
                        return self.give_up(reason);
                    }
                    backoff.record_run(ran);
                    let delay = backoff.next_delay();
                    if !ever_ready && Instant::now() + delay > deadline {
                        let problem = format!(
                            "it exited with {reason} and was not ready within {:?}",
                            self.spec.readiness.timing.timeout
                        );
                        return self.fail(quoting(problem, &output).await);
                    }
                    if !self.back_off(delay, &mut stop).await {
                        return;
                    }
                }
            }
        }
    }

    /// Waits until every dependency is ready. False when a dependency failed or stop was asked.
    async fn wait_for_dependencies(&self, stop: &mut watch::Receiver<bool>) -> bool {
        for (name, startup) in &self.dependencies {
            let mut startup = startup.clone();
            let outcome = tokio::select! {
                result = startup.wait_for(|s| *s != Startup::Pending) => {
                    result.map(|s| s.clone()).unwrap_or(Startup::Failed(String::new()))
                }
                () = stop_requested(stop) => {
                    self.set_state(ComponentState::Stopped);
                    return false;
                }
            };
            if let Startup::Failed(_) = outcome {
                self.fail(format!("its dependency {name} did not start"));
                return false;
            }
        }
        true
    }

    /// Watches one process: its exit, a stop request and its readiness probe.
    async fn supervise(
        &self,
        mut spawned: Spawned,
        ever_ready: &mut bool,
        probe_deadline: Instant,
        stop: &mut watch::Receiver<bool>,
    ) -> Ended {
        let pid = spawned.pid;
        let started = Instant::now();
        self.write_pid_file(pid);
        tracing::info!(component = %self.spec.name, pid = pid.as_raw(), "started");
        self.update(|s| {
            s.pid = Some(pid.as_raw() as u32);
            s.state = ComponentState::Starting;
            s.since = SystemTime::now();
        });
        let probe = wait_until_ready(
            self.host.clone(),
            self.spec.readiness.clone(),
            probe_deadline,
        );
        tokio::pin!(probe);
        let mut probing = true;
        let check = self.next_health_check();
        tokio::pin!(check);
        // Set once the readiness wait is over: from then on the probe watches the component.
        let mut watching = false;
        let mut unhealthy_since: Option<Instant> = None;
        loop {
            tokio::select! {
                exited = &mut spawned.exited => {
                    let Ok(exited) = exited else { return Ended::Stopped };
                    let reason = self.sweep_group(pid, exited);
                    let ran = started.elapsed();
                    tracing::warn!(component = %self.spec.name, pid = pid.as_raw(), ran_ms = ran.as_millis() as u64, "exited with {reason}");
                    self.update(|s| {
                        s.pid = None;
                        s.last_exit = Some(reason);
                    });
                    return Ended::Exited(reason, ran);
                }
                () = stop_requested(stop) => {
                    self.terminate(pid, spawned).await;
                    return Ended::Stopped;
                }
                result = &mut probe, if probing => {
                    probing = false;
                    watching = true;
                    check.set(self.next_health_check());
                    match result {
                        Ok(()) => self.mark_ready(ever_ready),
                        Err(problem) if !*ever_ready => {
                            self.terminate(pid, spawned).await;
                            return Ended::NotReady(problem);
                        }
                        Err(problem) => {
                            // Restarted, never ready since: unhealthy since its start.
                            unhealthy_since = Some(started);
                            tracing::warn!(component = %self.spec.name, "running but not ready: {problem}");
                            self.update(|s| {
                                s.state = ComponentState::Running;
                                s.message = Some(problem);
                                s.since = SystemTime::now();
                            });
                        }
                    }
                }
                result = &mut check, if watching => {
                    check.set(self.next_health_check());
                    match result {
                        Ok(()) => {
                            if unhealthy_since.take().is_some() {
                                self.mark_ready(ever_ready);
                            }
                        }
                        Err(problem) => {
                            let since = *unhealthy_since.get_or_insert_with(Instant::now);
                            if self.unhealthy(since, &problem) {
                                self.terminate(pid, spawned).await;
                                return Ended::Unhealthy(started.elapsed());
                            }
                        }
                    }
                }
            }
        }
    }

    /// One health check after the interval of [`crate::HealthPolicy`]; never resolves for a
    /// component without a probe.
    fn next_health_check(&self) -> impl Future<Output = Result<(), String>> + use<H> {
        let host = self.host.clone();
        let probe = self.spec.readiness.probe.clone();
        let policy = self.spec.readiness.health;
        async move {
            if probe == Probe::None {
                return std::future::pending().await;
            }
            tokio::time::sleep(policy.interval).await;
            host.probe(&probe, policy.attempt_timeout)
                .await
                .map_err(|problem| format!("probe {probe} failed: {problem}"))
        }
    }

    /// Records a failed health check of a component unhealthy since `since`; true when it has
    /// been unhealthy long enough to be restarted (never under `restart: never`).
    fn unhealthy(&self, since: Instant, problem: &str) -> bool {
        let elapsed = since.elapsed();
        let restart = self.spec.restart != RestartPolicy::Never
            && self
                .spec
                .readiness
                .health
                .restart_after
                .is_some_and(|after| elapsed >= after);
        let seconds = elapsed.as_secs();
        if restart {
            tracing::error!(component = %self.spec.name, "unhealthy for {seconds}s, restarting it: {problem}");
            self.update(|s| {
                s.message = Some(format!("restarted after {seconds}s unhealthy: {problem}"))
            });
            return true;
        }
        let degraded = self.status.borrow()[self.index].state == ComponentState::Degraded;
        if !degraded {
            tracing::warn!(component = %self.spec.name, "unhealthy: {problem}");
        }
        self.update(|s| {
            if !degraded {
                s.since = SystemTime::now();
            }
            s.state = ComponentState::Degraded;
            s.message = Some(format!("unhealthy for {seconds}s: {problem}"));
        });
        false
    }

    fn mark_ready(&self, ever_ready: &mut bool) {
        tracing::info!(component = %self.spec.name, "ready");
        *ever_ready = true;
        self.startup.send_if_modified(|s| {
            let first = *s == Startup::Pending;
            *s = Startup::Ready;
            first
        });
        self.update(|s| {
            s.state = ComponentState::Ready;
            s.message = None;
            s.since = SystemTime::now();
        });
    }

    /// SIGTERM to the group, SIGKILL after the stop timeout, then the sweep of the group.
    async fn terminate(&self, pid: Pid, mut spawned: Spawned) {
        self.set_state(ComponentState::Stopping);
        self.signal(pid, Signal::SIGTERM);
        let exited = tokio::select! {
            exited = &mut spawned.exited => exited,
            _ = tokio::time::sleep(self.spec.stop_timeout) => {
                tracing::warn!(component = %self.spec.name, "did not stop within {:?}; killing its process group", self.spec.stop_timeout);
                self.signal(pid, Signal::SIGKILL);
                spawned.exited.await
            }
        };
        let reason = exited.ok().map(|exited| self.sweep_group(pid, exited));
        if let Some(reason) = reason {
            tracing::info!(component = %self.spec.name, "stopped ({reason})");
        }
        self.remove_pid_file();
        self.update(|s| {
            s.pid = None;
            s.state = ComponentState::Stopped;
            s.last_exit = reason.or(s.last_exit);
            s.since = SystemTime::now();
        });
    }

    /// Kills what is left of the process group while the exited leader, still unreaped, keeps
    /// the group id from being reused; then reaps the leader.
    fn sweep_group(&self, pid: Pid, exited: Exited) -> ExitReason {
        self.signal(pid, Signal::SIGKILL);
        let reason = exited.reason;
        drop(exited);
        reason
    }

    fn signal(&self, pgid: Pid, signal: Signal) {
        if let Err(error) = self.host.signal_group(pgid, signal) {
            tracing::warn!(component = %self.spec.name, "cannot send {signal} to process group {pgid}: {error}");
        }
    }

    /// Waits `delay` before the next restart. False when a stop was requested meanwhile.
    async fn back_off(&self, delay: Duration, stop: &mut watch::Receiver<bool>) -> bool {
        tracing::info!(component = %self.spec.name, "restarting in {delay:?}");
        self.update(|s| {
            s.state = ComponentState::Backoff;
            s.backoff = Some(delay);
            s.since = SystemTime::now();
        });
        tokio::select! {
            _ = tokio::time::sleep(delay) => {
                self.update(|s| s.restarts += 1);
                true
            }
            () = stop_requested(stop) => {
                self.remove_pid_file();
                self.set_state(ComponentState::Stopped);
                false
            }
        }
    }

    /// The restart policy does not restart a component that was ready after `reason`.
    fn give_up(&self, reason: ExitReason) {
        let policy = self.spec.restart;
        self.remove_pid_file();
        let state = if reason.success() {
            ComponentState::Stopped
        } else {
            ComponentState::Failed
        };
        tracing::warn!(component = %self.spec.name, "not restarted after {reason} (restart policy {policy:?})");
        self.set_state(state);
    }

    fn fail(&self, problem: String) {
        tracing::error!(component = %self.spec.name, "{problem}");
        self.remove_pid_file();
        self.startup.send_if_modified(|s| {
            let first = *s == Startup::Pending;
            if first {
                *s = Startup::Failed(problem.clone());
            }
            first
        });
        self.update(|s| {
            s.state = ComponentState::Failed;
            s.pid = None;
            s.message = Some(problem);
            s.since = SystemTime::now();
        });
    }

    fn set_state(&self, state: ComponentState) {
        self.update(|s| {
            s.state = state;
            s.since = SystemTime::now();
        });
    }

    fn update(&self, change: impl FnOnce(&mut ComponentStatus)) {
        self.status.send_modify(|all| change(&mut all[self.index]));
    }

    fn launch(&self) -> Launch {
        Launch {
            component: self.spec.name.clone(),
            path: self.spec.path.clone(),
            args: self.spec.args.clone(),
            env: self.spec.env.clone(),
            dir: self.spec.dir.clone(),
            marker: self.marker.clone(),
        }
    }

    fn spawn_problem(&self, error: &std::io::Error) -> String {
        let path = self.spec.path.display();
        match &self.spec.dir {
            Some(dir) if !dir.is_dir() => format!(
                "cannot run {path}: its working directory {} does not exist",
                dir.display()
            ),
            _ => format!("cannot run {path}: {error}"),
        }
    }

    fn write_pid_file(&self, pid: Pid) {
        if let Err(error) = write_atomically(&self.pid_file, format!("{pid}\n").as_bytes()) {
            tracing::warn!(component = %self.spec.name, "cannot write {}: {error}", self.pid_file.display());
        }
    }

    fn remove_pid_file(&self) {
        match std::fs::remove_file(&self.pid_file) {
            Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
                tracing::warn!(component = %self.spec.name, "cannot remove {}: {error}", self.pid_file.display());
            }
            _ => {}
        }
    }
}

/// How long a failure message waits for the last output of an exited process to arrive.
const OUTPUT_SETTLE: Duration = Duration::from_millis(500);

/// `problem`, followed by the process's last error lines: the cause is usually there
/// ("no space left on device"), not in the exit code.
async fn quoting(problem: String, output: &OutputTail) -> String {
    output.settled(OUTPUT_SETTLE).await;
    match output.summary() {
        Some(summary) => format!("{problem}; {summary}"),
        None => problem,
    }
}

/// Resolves once a stop is requested or the supervisor is gone.
async fn stop_requested(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// Probes until the probe passes or `deadline` is reached; the error carries the last failure.
async fn wait_until_ready<H: ProcessHost>(
    host: Arc<H>,
    readiness: Readiness,
    deadline: Instant,
) -> Result<(), String> {
    if readiness.probe == Probe::None {
        return Ok(());
    }
    let timing = readiness.timing;
    // A zero interval would probe in a tight loop.
    let interval = timing.interval.max(Duration::from_millis(10));
    loop {
        let last = match host.probe(&readiness.probe, timing.attempt_timeout).await {
            Ok(()) => return Ok(()),
            Err(problem) => problem,
        };
        if Instant::now() + interval >= deadline {
            return Err(format!(
                "not ready within {:?}: probe {} last failed: {last}",
                timing.timeout, readiness.probe
            ));
        }
        tokio::time::sleep(interval).await;
    }
}

/// Writes a pid file atomically (readable by all, like any pid file).
pub(crate) fn write_atomically(path: &std::path::Path, contents: &[u8]) -> std::io::Result<()> {
    k0x_config::fsutil::write_atomic(path, contents, 0o644)
}
