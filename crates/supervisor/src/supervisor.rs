//! The supervisor: starts components in dependency order, reports their status, stops them.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::sync::Arc;
use std::time::Duration;

use k0x_config::{DataDir, RunDir};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::backoff::BackoffPolicy;
use crate::error::Error;
use crate::host::{ProcessHost, marker_entry};
use crate::lock::DataDirLock;
use crate::order::start_order;
use crate::orphans::Leftovers;
use crate::orphans::{self, ORPHAN_GRACE};
use crate::runner::{Runner, Startup, StatusSender};
use crate::spec::Spec;
use crate::status::{ComponentState, ComponentStatus};
use crate::system::SystemHost;
use crate::workloads::Ownership;

/// Where the supervisor keeps its state and how it restarts.
#[derive(Debug, Clone)]
pub struct SupervisorConfig {
    /// Pid files go here (`<run dir>/<component>.pid`).
    pub run_dir: RunDir,
    /// The lock on the data dir, held as long as the supervisor lives. Its data dir's path is the
    /// marker every child carries (`K0X_MANAGED=<data dir>`). Requiring the lock makes sure no
    /// other k0x runs on the data dir while this one ends leftovers carrying its marker.
    pub lock: Arc<DataDirLock>,
    pub backoff: BackoffPolicy,
    /// Time between SIGTERM and SIGKILL for marked processes outside the components' groups.
    pub orphan_grace: Duration,
}

impl SupervisorConfig {
    /// Default backoff (0.5 s doubling to 30 s) and a 5 s grace for stray processes.
    pub fn new(run_dir: RunDir, lock: Arc<DataDirLock>) -> Self {
        Self {
            run_dir,
            lock,
            backoff: BackoffPolicy::default(),
            orphan_grace: ORPHAN_GRACE,
        }
    }

    /// The data dir the supervisor runs on.
    pub fn data_dir(&self) -> &DataDir {
        self.lock.data_dir()
    }
}

/// Runs components as child processes; see the crate documentation.
#[derive(Debug)]
pub struct Supervisor<H: ProcessHost = SystemHost> {
    config: SupervisorConfig,
    host: Arc<H>,
    marker: OsString,
    status: StatusSender,
    components: Vec<Component>,
    orphans_ended: bool,
}

#[derive(Debug)]
struct Component {
    name: String,
    startup: watch::Receiver<Startup>,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Supervisor<SystemHost> {
    /// A supervisor of real processes. Must be called within a tokio runtime.
    pub fn new(config: SupervisorConfig) -> std::io::Result<Self> {
        Ok(Self::with_host(config, Arc::new(SystemHost::new()?)))
    }
}

impl<H: ProcessHost> Supervisor<H> {
    /// A supervisor on the given host (tests pass a fake).
    pub fn with_host(config: SupervisorConfig, host: Arc<H>) -> Self {
        let marker = orphans::marker_value(config.data_dir());
        Self {
            config,
            host,
            marker,
            status: Arc::new(watch::Sender::new(Vec::new())),
            components: Vec::new(),
            orphans_ended: false,
        }
    }

    /// Starts `specs`, each after its dependencies are ready, and returns once all are ready.
    ///
    /// The first call ends processes a previous k0x left behind (see [`crate::end_orphans`]).
    /// Later calls may add components that depend on running ones. When a component does not
    /// become ready, every component of this call is stopped and the error names it.
    pub async fn start(&mut self, specs: Vec<Spec>) -> Result<(), Error> {
        let existing: BTreeSet<String> = self.components.iter().map(|c| c.name.clone()).collect();
        let order = start_order(&specs, &existing)?;
        self.prepare_run_dir().await?;
        let first_new = self.components.len();
        let mut specs: Vec<Option<Spec>> = specs.into_iter().map(Some).collect();
        for i in order {
            let spec = specs[i].take().expect("start_order yields each index once");
            self.launch(spec);
        }
        let result = self.wait_for_startup(first_new).await;
        if result.is_err() {
            for component in self.components.drain(first_new..).rev().collect::<Vec<_>>() {
                component.stop().await;
            }
            self.status.send_modify(|all| all.truncate(first_new));
        }
        result
    }

    /// The status of every component, in start order.
    pub fn status(&self) -> Vec<ComponentStatus> {
        self.status.borrow().clone()
    }

    /// A receiver that sees every status change (for the admin socket and sd_notify).
    pub fn subscribe(&self) -> watch::Receiver<Vec<ComponentStatus>> {
        self.status.subscribe()
    }

    /// The marker entry (`K0X_MANAGED=<data dir>`) of this supervisor's children.
    pub fn marker(&self) -> Vec<u8> {
        marker_entry(&self.marker)
    }

    /// Stops every component in reverse start order, then ends any process that still carries
    /// this data dir's marker and is no workload (children that left their process group) and
    /// the unmarked processes below those. Workloads, the container shims and what runs below
    /// them, keep running for the next start to adopt (see [`crate::workloads`]).
    pub async fn stop(mut self) {
        while let Some(component) = self.components.pop() {
            component.stop().await;
        }
        let host = self.host.clone();
        let ours = Ownership::with_marker_value(&self.marker);
        let grace = self.config.orphan_grace;
        let swept = tokio::task::spawn_blocking(move || {
            let leftovers = Leftovers::find(host.as_ref(), &ours)?;
            let ended = leftovers.end_components(host.as_ref(), &ours, grace)?;
            Ok::<_, std::io::Error>((ended, leftovers))
        })
        .await;
        match swept {
            Ok(Ok((ended, leftovers))) => {
                if !ended.is_empty() {
                    tracing::warn!(
                        "ended {} processes that outlived their component: {ended:?}",
                        ended.len()
                    );
                }
                if !leftovers.shims.is_empty() {
                    tracing::info!(
                        shims = leftovers.shims.len(),
                        processes = leftovers.workloads().len(),
                        "left the containers running; the next start adopts them \
                         (`k0x reset` or `k0x stop --workloads` ends them)"
                    );
                }
            }
            Ok(Err(error)) => tracing::error!("cannot end leftover marked processes: {error}"),
            Err(error) => tracing::error!("the sweep of leftover processes failed: {error}"),
        }
    }

    async fn prepare_run_dir(&mut self) -> Result<(), Error> {
        let run = self.config.run_dir.clone();
        run.create().map_err(|source| Error::RunDir {
            path: run.root().to_path_buf(),
            source,
        })?;
        if self.orphans_ended {
            return Ok(());
        }
        let host = self.host.clone();
        let data = self.config.data_dir().clone();
        let grace = self.config.orphan_grace;
        tokio::task::spawn_blocking(move || {
            orphans::end_orphans_with(host.as_ref(), &run, &data, grace)
        })
        .await
        .map_err(|e| Error::Orphans(std::io::Error::other(e)))?
        .map_err(Error::Orphans)?;
        self.orphans_ended = true;
        Ok(())
    }

    fn launch(&mut self, spec: Spec) {
        let index = self.components.len();
        let by_name: BTreeMap<&str, &Component> = self
            .components
            .iter()
            .map(|c| (c.name.as_str(), c))
            .collect();
        let dependencies = spec
            .depends_on
            .iter()
            .map(|d| (d.clone(), by_name[d.as_str()].startup.clone()))
            .collect();
        let (startup, startup_rx) = watch::channel(Startup::Pending);
        let (stop, stop_rx) = watch::channel(false);
        self.status
            .send_modify(|all| all.push(ComponentStatus::new(&spec.name)));
        let name = spec.name.clone();
        let runner = Runner {
            pid_file: self.config.run_dir.pid_file(&spec.name),
            spec,
            index,
            host: self.host.clone(),
            status: self.status.clone(),
            startup,
            dependencies,
            marker: self.marker.clone(),
            backoff: self.config.backoff,
        };
        let task = tokio::spawn(runner.run(stop_rx));
        self.components.push(Component {
            name,
            startup: startup_rx,
            stop,
            task,
        });
    }

    /// Waits until every component from `first` on is ready, or one of them failed.
    async fn wait_for_startup(&self, first: usize) -> Result<(), Error> {
        let mut changes = self.status.subscribe();
        loop {
            let mut all_ready = true;
            for component in &self.components[first..] {
                match &*component.startup.borrow() {
                    Startup::Ready => {}
                    Startup::Pending => all_ready = false,
                    Startup::Failed(reason) => {
                        return Err(Error::Start {
                            component: component.name.clone(),
                            reason: reason.clone(),
                        });
                    }
                }
            }
            if all_ready {
                return Ok(());
            }
            if changes.changed().await.is_err() {
                unreachable!("the supervisor holds the status sender");
            }
        }
    }
}

impl Component {
    async fn stop(self) {
        self.stop.send_replace(true);
        if let Err(error) = self.task.await {
            tracing::error!(component = %self.name, "supervision task ended abnormally: {error}");
        }
    }
}

/// True when every component is ready: the moment to tell systemd READY=1.
pub fn all_ready(status: &[ComponentStatus]) -> bool {
    status.iter().all(|s| s.state == ComponentState::Ready)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake::{Event, FakeHost};
    use crate::spec::{HealthPolicy, Probe, ProbeTiming, Readiness, RestartPolicy};
    use crate::status::ExitReason;
    use nix::sys::signal::Signal;
    use nix::unistd::Pid;

    struct Fixture {
        _dirs: tempfile::TempDir,
        host: Arc<FakeHost>,
        supervisor: Supervisor<FakeHost>,
    }

    fn fixture() -> Fixture {
        let dirs = tempfile::tempdir().unwrap();
        let lock = DataDirLock::acquire(&DataDir::new(dirs.path().join("data"))).unwrap();
        let mut config =
            SupervisorConfig::new(RunDir::new(dirs.path().join("run")), Arc::new(lock));
        config.backoff.jitter = 0.0;
        let host = Arc::new(FakeHost::default());
        let supervisor = Supervisor::with_host(config, host.clone());
        Fixture {
            _dirs: dirs,
            host,
            supervisor,
        }
    }

    fn spec(name: &str, deps: &[&str]) -> Spec {
        let mut spec = Spec::new(name, format!("/bin/{name}"));
        spec.depends_on = deps.iter().map(|d| d.to_string()).collect();
        spec
    }

    fn tcp_probe(port: u16, timeout_secs: u64) -> Readiness {
        Readiness {
            probe: Probe::Tcp(([127, 0, 0, 1], port).into()),
            timing: ProbeTiming {
                timeout: Duration::from_secs(timeout_secs),
                ..ProbeTiming::default()
            },
            ..Readiness::default()
        }
    }

    async fn wait_for(
        supervisor: &Supervisor<FakeHost>,
        name: &str,
        condition: impl Fn(&ComponentStatus) -> bool,
    ) -> ComponentStatus {
        let mut changes = supervisor.subscribe();
        let all = changes
            .wait_for(|all| all.iter().any(|s| s.name == name && condition(s)))
            .await
            .unwrap();
        all.iter().find(|s| s.name == name).unwrap().clone()
    }

    #[tokio::test(start_paused = true)]
    async fn dependents_start_only_after_dependencies_are_ready() {
        let Fixture {
            _dirs,
            host,
            mut supervisor,
        } = fixture();
        let mut etcd = spec("etcd", &[]);
        etcd.readiness = tcp_probe(2379, 60);
        let probe = etcd.readiness.probe.clone();
        let apiserver = spec("kube-apiserver", &["etcd"]);
        let starting = tokio::spawn(async move {
            let result = supervisor.start(vec![apiserver, etcd]).await;
            (result, supervisor)
        });
        tokio::time::sleep(Duration::from_secs(30)).await;
        assert_eq!(host.spawns_of("etcd"), 1);
        assert_eq!(
            host.spawns_of("kube-apiserver"),
            0,
            "started before etcd was ready"
        );
        host.set_ready(&probe);
        let (result, supervisor) = starting.await.unwrap();
        result.unwrap();
        assert_eq!(
            host.events(),
            [
                Event::Spawned("etcd".into()),
                Event::Spawned("kube-apiserver".into())
            ]
        );
        assert!(all_ready(&supervisor.status()));
        supervisor.stop().await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_component_that_is_never_ready_fails_start_by_name_and_probe() {
        let Fixture {
            _dirs,
            host,
            mut supervisor,
        } = fixture();
        let mut etcd = spec("etcd", &[]);
        etcd.readiness = tcp_probe(2379, 5);
        let containerd = spec("containerd", &[]);
        let apiserver = spec("kube-apiserver", &["etcd"]);
        let error = supervisor
            .start(vec![etcd, containerd, apiserver])
            .await
            .unwrap_err();
        assert_eq!(
            error.to_string(),
            "component etcd did not start: not ready within 5s: probe tcp 127.0.0.1:2379 last failed: connection refused"
        );
        assert_eq!(host.spawns_of("kube-apiserver"), 0);
        assert!(!host.is_running("etcd") && !host.is_running("containerd"));
        assert!(supervisor.status().is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_component_that_dies_at_start_is_reported_with_its_last_error_lines() {
        let Fixture {
            _dirs,
            host,
            mut supervisor,
        } = fixture();
        let mut etcd = spec("etcd", &[]);
        etcd.readiness = tcp_probe(2379, 60);
        etcd.restart = RestartPolicy::Never;
        let starting = tokio::spawn(async move { supervisor.start(vec![etcd]).await });
        tokio::time::sleep(Duration::from_secs(1)).await;
        host.say("etcd", "starting etcd");
        host.say(
            "etcd",
            r#"{"level":"fatal","msg":"failed to create WAL","error":"no space left on device"}"#,
        );
        host.exit("etcd", ExitReason::Code(2));
        let error = starting.await.unwrap().unwrap_err().to_string();
        assert_eq!(
            error,
            "component etcd did not start: it exited with exit code 2 before it was ready \
             (restart policy Never); its last output: \"failed to create WAL: no space left on \
             device\""
        );
    }

    /// etcd ready, then its probe fails (a SIGSTOP, an overloaded board): degraded at once,
    /// ready again when the probe passes, and no restart before five minutes without a success.
    #[tokio::test(start_paused = true)]
    async fn a_ready_component_that_fails_its_probe_is_degraded_and_recovers_without_restart() {
        let Fixture {
            _dirs,
            host,
            mut supervisor,
        } = fixture();
        let mut etcd = spec("etcd", &[]);
        etcd.readiness = tcp_probe(2379, 60);
        let probe = etcd.readiness.probe.clone();
        host.set_ready(&probe);
        supervisor.start(vec![etcd]).await.unwrap();

        host.set_unready(&probe);
        let degraded = wait_for(&supervisor, "etcd", |s| s.state == ComponentState::Degraded).await;
        assert!(
            degraded
                .message
                .as_deref()
                .unwrap()
                .contains("connection refused"),
            "{degraded:?}"
        );
        tokio::time::sleep(Duration::from_secs(280)).await;
        let status = &supervisor.status()[0];
        assert_eq!(status.state, ComponentState::Degraded);
        assert!(
            status
                .message
                .as_deref()
                .unwrap()
                .starts_with("unhealthy for 2"),
            "{status:?}"
        );
        host.set_ready(&probe);
        wait_for(&supervisor, "etcd", |s| s.state == ComponentState::Ready).await;
        assert_eq!(host.spawns_of("etcd"), 1, "restarted while it recovered");

        // One success in between starts the count again: 4 + 4 minutes of failures, no restart.
        for _ in 0..2 {
            host.set_unready(&probe);
            tokio::time::sleep(Duration::from_secs(240)).await;
            host.set_ready(&probe);
            wait_for(&supervisor, "etcd", |s| s.state == ComponentState::Ready).await;
        }
        assert_eq!(host.spawns_of("etcd"), 1);
        assert_eq!(supervisor.status()[0].restarts, 0);
        supervisor.stop().await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_component_unhealthy_past_the_threshold_is_restarted() {
        let Fixture {
            _dirs,
            host,
            mut supervisor,
        } = fixture();
        let mut etcd = spec("etcd", &[]);
        etcd.readiness = tcp_probe(2379, 60);
        let probe = etcd.readiness.probe.clone();
        host.set_ready(&probe);
        host.ignore_term("etcd"); // stopped with SIGSTOP: only SIGKILL ends it
        supervisor.start(vec![etcd]).await.unwrap();

        host.set_unready(&probe);
        let began = tokio::time::Instant::now();
        let restarted = wait_for(&supervisor, "etcd", |s| s.restarts == 1).await;
        let waited = began.elapsed();
        assert!(
            waited >= HealthPolicy::DEFAULT_RESTART_AFTER
                && waited < HealthPolicy::DEFAULT_RESTART_AFTER + Duration::from_secs(40),
            "restarted after {waited:?}"
        );
        assert_eq!(restarted.last_exit, Some(ExitReason::Signal(9)));
        assert!(
            host.events()
                .contains(&Event::Signalled("etcd".into(), Signal::SIGKILL)),
            "a stopped process gets SIGKILL after the stop timeout"
        );
        host.set_ready(&probe);
        wait_for(&supervisor, "etcd", |s| s.state == ComponentState::Ready).await;
        assert_eq!(host.spawns_of("etcd"), 2);
        supervisor.stop().await;
    }

    #[tokio::test(start_paused = true)]
    async fn without_a_restart_threshold_an_unhealthy_component_is_only_reported() {
        let Fixture {
            _dirs,
            host,
            mut supervisor,
        } = fixture();
        let mut etcd = spec("etcd", &[]);
        etcd.readiness = tcp_probe(2379, 60);
        etcd.readiness.health.restart_after = None;
        let probe = etcd.readiness.probe.clone();
        host.set_ready(&probe);
        supervisor.start(vec![etcd]).await.unwrap();
        host.set_unready(&probe);
        tokio::time::sleep(Duration::from_secs(3600)).await;
        let status = &supervisor.status()[0];
        assert_eq!(status.state, ComponentState::Degraded);
        assert_eq!(host.spawns_of("etcd"), 1);
        supervisor.stop().await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_missing_executable_fails_start_with_its_path() {
        let Fixture {
            _dirs,
            host,
            mut supervisor,
        } = fixture();
        host.set_missing("/bin/etcd");
        let error = supervisor.start(vec![spec("etcd", &[])]).await.unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with("component etcd did not start: cannot run /bin/etcd:"),
            "{error}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn restart_delays_grow_and_reset_after_a_stable_run() {
        let Fixture {
            _dirs,
            host,
            mut supervisor,
        } = fixture();
        supervisor.start(vec![spec("etcd", &[])]).await.unwrap();
        let mut delays = Vec::new();
        for restarts in 1..=4 {
            assert!(host.exit("etcd", ExitReason::Code(1)));
            let status =
                wait_for(&supervisor, "etcd", |s| s.state == ComponentState::Backoff).await;
            assert_eq!(status.last_exit, Some(ExitReason::Code(1)));
            delays.push(status.backoff.unwrap().as_millis());
            let status = wait_for(&supervisor, "etcd", |s| s.state == ComponentState::Ready).await;
            assert_eq!(status.restarts, restarts);
        }
        assert_eq!(delays, [500, 1000, 2000, 4000]);
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert!(host.exit("etcd", ExitReason::Signal(9)));
        let status = wait_for(&supervisor, "etcd", |s| s.state == ComponentState::Backoff).await;
        assert_eq!(status.backoff, Some(Duration::from_millis(500)));
        supervisor.stop().await;
    }

    #[tokio::test(start_paused = true)]
    async fn restart_policies_decide_after_each_exit() {
        let Fixture {
            _dirs,
            host,
            mut supervisor,
        } = fixture();
        let mut on_failure = spec("on-failure", &[]);
        on_failure.restart = RestartPolicy::OnFailure;
        let mut never = spec("never", &[]);
        never.restart = RestartPolicy::Never;
        let always = spec("always", &[]);
        supervisor
            .start(vec![on_failure, never, always])
            .await
            .unwrap();

        host.exit("always", ExitReason::Code(0));
        wait_for(&supervisor, "always", |s| {
            s.restarts == 1 && s.pid.is_some()
        })
        .await;
        host.exit("on-failure", ExitReason::Code(1));
        wait_for(&supervisor, "on-failure", |s| {
            s.restarts == 1 && s.pid.is_some()
        })
        .await;
        host.exit("on-failure", ExitReason::Code(0));
        let stopped = wait_for(&supervisor, "on-failure", |s| {
            s.state == ComponentState::Stopped
        })
        .await;
        assert_eq!(stopped.last_exit, Some(ExitReason::Code(0)));
        host.exit("never", ExitReason::Code(0));
        wait_for(&supervisor, "never", |s| s.state == ComponentState::Stopped).await;

        tokio::time::sleep(Duration::from_secs(60)).await;
        assert_eq!(host.spawns_of("on-failure"), 2);
        assert_eq!(host.spawns_of("never"), 1);
        assert_eq!(host.spawns_of("always"), 2);
        supervisor.stop().await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_failure_under_restart_never_is_reported_as_failed() {
        let Fixture {
            _dirs,
            host,
            mut supervisor,
        } = fixture();
        let mut never = spec("never", &[]);
        never.restart = RestartPolicy::Never;
        supervisor.start(vec![never]).await.unwrap();
        host.exit("never", ExitReason::Signal(9));
        let failed = wait_for(&supervisor, "never", |s| s.state == ComponentState::Failed).await;
        assert_eq!(failed.last_exit, Some(ExitReason::Signal(9)));
        supervisor.stop().await;
    }

    #[tokio::test(start_paused = true)]
    async fn stop_goes_in_reverse_order_and_escalates_after_the_stop_timeout() {
        let Fixture {
            _dirs,
            host,
            mut supervisor,
        } = fixture();
        let etcd = spec("etcd", &[]);
        let mut apiserver = spec("kube-apiserver", &["etcd"]);
        apiserver.stop_timeout = Duration::from_secs(7);
        host.ignore_term("kube-apiserver");
        supervisor.start(vec![apiserver, etcd]).await.unwrap();
        let began = tokio::time::Instant::now();
        supervisor.stop().await;
        assert_eq!(began.elapsed(), Duration::from_secs(7));
        let signals: Vec<_> = host
            .events()
            .into_iter()
            .filter(|e| matches!(e, Event::Signalled(..)))
            .collect();
        assert_eq!(
            signals,
            [
                Event::Signalled("kube-apiserver".into(), Signal::SIGTERM),
                Event::Signalled("kube-apiserver".into(), Signal::SIGKILL),
                Event::Signalled("etcd".into(), Signal::SIGTERM),
            ]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_stop_during_backoff_does_not_restart() {
        let Fixture {
            _dirs,
            host,
            mut supervisor,
        } = fixture();
        supervisor.start(vec![spec("etcd", &[])]).await.unwrap();
        host.exit("etcd", ExitReason::Code(1));
        wait_for(&supervisor, "etcd", |s| s.state == ComponentState::Backoff).await;
        let mut changes = supervisor.subscribe();
        supervisor.stop().await;
        let status = changes.borrow_and_update().clone();
        assert_eq!(status[0].state, ComponentState::Stopped);
        assert_eq!(host.spawns_of("etcd"), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn start_ends_marked_leftovers_and_leaves_everything_else_alone() {
        let Fixture {
            _dirs,
            host,
            mut supervisor,
        } = fixture();
        let run = supervisor.config.run_dir.clone();
        run.create().unwrap();
        let marker = supervisor.marker();
        let other = marker_entry(std::ffi::OsStr::new("/var/lib/other"));
        host.add_process(500, &[b"PATH=/bin", &marker]);
        host.add_process(501, &[b"PATH=/bin"]);
        host.add_process(502, &[&other]);
        host.add_process(503, &[&marker]);
        std::fs::write(run.pid_file("etcd"), "500\n").unwrap();
        std::fs::write(run.pid_file("kubelet"), "501\n").unwrap();
        supervisor.start(vec![spec("etcd", &[])]).await.unwrap();
        assert!(!host.has_process(500) && !host.has_process(503));
        assert!(host.has_process(501) && host.has_process(502));
        assert!(!run.pid_file("kubelet").exists());
        assert!(run.pid_file("etcd").exists(), "the new etcd's pid file");
        supervisor.stop().await;
        assert!(!run.pid_file("etcd").exists());
    }

    /// The data dir's shim executable, as the kernel shows it for a running shim.
    fn shim_of(supervisor: &Supervisor<FakeHost>) -> std::path::PathBuf {
        std::path::Path::new(&supervisor.marker)
            .join("bin")
            .join(crate::SHIM_EXECUTABLES[0])
    }

    /// A pod as the fake host shows it: a shim (marked, running the data dir's shim), a runc
    /// call it makes (marked too), the container's init with a clean environment, and a process
    /// inside the container. Returns every pid.
    fn add_pod(host: &FakeHost, shim: &std::path::Path, marker: &[u8], base: i32) -> [i32; 4] {
        let pids = [base, base + 1, base + 2, base + 3];
        host.add_running(pids[0], shim, &[b"PATH=/bin", marker]);
        host.add_running(pids[1], &shim.with_file_name("runc"), &[marker]);
        host.set_parent(pids[1], pids[0]);
        host.add_child(pids[2], pids[0]);
        host.add_child(pids[3], pids[2]);
        pids
    }

    #[tokio::test(start_paused = true)]
    async fn stop_keeps_shims_and_their_containers_and_ends_component_leftovers() {
        let Fixture {
            _dirs,
            host,
            mut supervisor,
        } = fixture();
        supervisor
            .start(vec![spec("containerd", &[])])
            .await
            .unwrap();
        let marker = supervisor.marker();
        let shim = shim_of(&supervisor);
        let pod = add_pod(&host, &shim, &marker, 600);
        // A shim started before an upgrade replaced the binary.
        let old = std::path::PathBuf::from(format!("{} (deleted)", shim.display()));
        let old_pod = add_pod(&host, &old, &marker, 610);
        host.add_process(650, &[&marker]); // a component's child that left its group
        host.add_child(651, 650); // and what it started with a clean environment
        // A shim of the host's containerd: same name, other file, no marker.
        host.add_running(
            700,
            std::path::Path::new("/usr/bin/containerd-shim-runc-v2"),
            &[],
        );
        host.add_child(701, 700);
        // The data dir's shim binary run by something without our marker: not ours at all.
        host.add_running(710, &shim, &[b"PATH=/bin"]);
        supervisor.stop().await;
        for kept in pod.into_iter().chain(old_pod).chain([700, 701, 710]) {
            assert!(host.has_process(kept), "{kept} was ended by the stop");
        }
        for gone in [650, 651] {
            assert!(!host.has_process(gone), "{gone} survived the stop");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn start_after_a_sigkill_keeps_the_workloads_it_finds() {
        let Fixture {
            _dirs,
            host,
            mut supervisor,
        } = fixture();
        let run = supervisor.config.run_dir.clone();
        run.create().unwrap();
        let marker = supervisor.marker();
        let shim = shim_of(&supervisor);
        let pod = add_pod(&host, &shim, &marker, 600);
        // The previous kubelet's child that PDEATHSIG did not reach, with its own child.
        host.add_process(650, &[&marker]);
        host.add_child(651, 650);
        std::fs::write(run.pid_file("containerd"), "600\n").unwrap();
        supervisor
            .start(vec![spec("containerd", &[])])
            .await
            .unwrap();
        for kept in pod {
            assert!(host.has_process(kept), "{kept} was ended at start");
        }
        assert!(!host.has_process(650) && !host.has_process(651));
        assert!(run.pid_file("containerd").exists(), "the new pid file");
        supervisor.stop().await;
    }

    #[test]
    fn leftovers_sort_workloads_apart_and_end_ends_them_all() {
        let dirs = tempfile::tempdir().unwrap();
        let data = DataDir::new(dirs.path().join("data"));
        let ours = Ownership::of(&data);
        let shim =
            std::path::Path::new(&orphans::marker_value(&data)).join("bin/containerd-shim-runc-v2");
        let host = FakeHost::default();
        let pod = add_pod(&host, &shim, ours.marker(), 600);
        host.add_process(650, &[ours.marker()]);
        host.add_child(651, 650);
        host.add_process(700, &[b"PATH=/bin"]);
        let found = Leftovers::find(&host, &ours).unwrap();
        assert_eq!(found.shims, [Pid::from_raw(600)]);
        let mut workloads: Vec<i32> = found.workloads().iter().map(|p| p.as_raw()).collect();
        workloads.sort();
        assert_eq!(workloads, pod);
        assert_eq!(found.marked, [Pid::from_raw(650)]);
        assert_eq!(found.offspring, [(Pid::from_raw(651), Pid::from_raw(650))]);

        let ended = found.end(&host, &ours, Duration::ZERO).unwrap();
        assert_eq!(ended.len(), 6, "{ended:?}");
        for gone in pod.into_iter().chain([650, 651]) {
            assert!(!host.has_process(gone), "{gone} survived");
        }
        assert!(host.has_process(700));
        assert!(Leftovers::find(&host, &ours).unwrap().is_empty());
    }
}
