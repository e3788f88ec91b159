//! Supervision of real processes: fixtures under tests/fixtures stand in for components.
//!
//! Every test gets its own data dir, hence its own marker, and a guard that SIGKILLs whatever
//! still carries that marker when the test ends, passed or failed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::Arc;
use std::time::Duration;

use k0x_config::{DataDir, RunDir};
use k0x_supervisor::{
    BackoffPolicy, ComponentState, ComponentStatus, DataDirLock, ExitReason, Leftovers, Ownership,
    Pid, ProbeTiming, ProcFs, ProcessTable, Readiness, Signal, Spec, Supervisor, SupervisorConfig,
    end_orphans, marker_entry, marker_value,
};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// A data dir, a run dir and a scratch dir for fixtures; ends marked processes on drop.
struct Setup {
    tmp: tempfile::TempDir,
    marker: Vec<u8>,
}

impl Setup {
    fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir(tmp.path().join("work")).unwrap();
        let data = DataDir::new(tmp.path().join("data"));
        data.create().unwrap();
        let marker = marker_entry(&marker_value(&data));
        let _ = tracing_subscriber::fmt().with_test_writer().try_init();
        Self { tmp, marker }
    }

    fn data(&self) -> DataDir {
        DataDir::new(self.tmp.path().join("data"))
    }

    fn run(&self) -> RunDir {
        RunDir::new(self.tmp.path().join("run"))
    }

    fn work(&self) -> PathBuf {
        self.tmp.path().join("work")
    }

    fn config(&self, backoff: BackoffPolicy) -> SupervisorConfig {
        let lock = DataDirLock::acquire(&self.data()).expect("the test's data dir is free");
        let mut config = SupervisorConfig::new(self.run(), Arc::new(lock));
        config.backoff = backoff;
        config.orphan_grace = Duration::from_secs(2);
        config
    }

    fn spec(&self, name: &str, fixture_name: &str, args: &[&str]) -> Spec {
        let mut spec = Spec::new(name, fixture(fixture_name));
        spec.args = args.iter().map(|a| a.to_string()).collect();
        spec.stop_timeout = Duration::from_secs(5);
        spec
    }

    fn marked(&self) -> Vec<Pid> {
        let me = Pid::this();
        ProcFs
            .pids()
            .unwrap()
            .into_iter()
            .filter(|pid| *pid != me && ProcFs.carries_marker(*pid, &self.marker))
            .collect()
    }

    fn assert_nothing_marked(&self) {
        let left = self.describe_marked();
        assert!(left.is_empty(), "left behind: {left:#?}");
    }

    /// Describes the marked processes, for assertion messages.
    fn describe_marked(&self) -> Vec<String> {
        self.marked()
            .into_iter()
            .map(|pid| {
                let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
                stat.trim().to_owned()
            })
            .collect()
    }

    fn read_pid(&self, file: &str) -> Pid {
        let text = std::fs::read_to_string(self.work().join(file)).unwrap();
        Pid::from_raw(text.trim().parse().unwrap())
    }
}

impl Drop for Setup {
    fn drop(&mut self) {
        for pid in self.marked() {
            let _ = ProcFs.signal_if_marked(pid, &self.marker, Signal::SIGKILL);
        }
    }
}

fn small_backoff() -> BackoffPolicy {
    BackoffPolicy {
        initial: Duration::from_millis(10),
        max: Duration::from_millis(40),
        jitter: 0.1,
        reset_after: Duration::from_secs(10),
    }
}

/// Polls `condition` until it holds; panics with `what` if it does not within 30 s.
async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    for _ in 0..1500 {
        if condition() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("gave up waiting for {what}");
}

async fn wait_status<H: k0x_supervisor::ProcessHost>(
    supervisor: &Supervisor<H>,
    what: &str,
    condition: impl Fn(&[ComponentStatus]) -> bool,
) -> Vec<ComponentStatus> {
    let mut changes = supervisor.subscribe();
    let waited = tokio::time::timeout(
        Duration::from_secs(30),
        changes.wait_for(|all| condition(all)),
    )
    .await;
    match waited {
        Ok(Ok(all)) => all.clone(),
        _ => panic!("gave up waiting for {what}: {:#?}", supervisor.status()),
    }
}

/// Alive and not a zombie.
fn alive(pid: Pid) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            let state = stat
                .rsplit_once(')')?
                .1
                .split_whitespace()
                .next()?
                .to_owned();
            Some(state != "Z" && state != "X")
        })
        .unwrap_or(false)
}

/// Children of this process that are zombies.
fn zombie_children() -> Vec<Pid> {
    let me = std::process::id().to_string();
    ProcFs
        .pids()
        .unwrap()
        .into_iter()
        .filter(|pid| {
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                return false;
            };
            let fields: Vec<_> = stat
                .rsplit_once(')')
                .map(|(_, rest)| rest.split_whitespace().collect())
                .unwrap_or_default();
            fields.first() == Some(&"Z") && fields.get(1) == Some(&me.as_str())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_child_restarts_with_growing_delays_and_a_stable_run_resets_them() {
    let setup = Setup::new();
    let work = setup.work();
    let backoff = BackoffPolicy {
        initial: Duration::from_millis(100),
        max: Duration::from_secs(1),
        jitter: 0.0,
        reset_after: Duration::from_secs(1),
    };
    let mut supervisor = Supervisor::new(setup.config(backoff)).unwrap();
    let spec = setup.spec("flaky", "gated-exit.sh", &[work.to_str().unwrap()]);
    supervisor.start(vec![spec]).await.unwrap();

    let mut delays = Vec::new();
    for run in 1..=5u32 {
        let status = wait_status(&supervisor, "the next run", |all| {
            all[0].restarts == run - 1 && all[0].pid.is_some()
        })
        .await;
        eventually("the fixture to record its start", || {
            std::fs::read_to_string(work.join("count")).is_ok_and(|c| c.trim() == run.to_string())
        })
        .await;
        if run > 1 {
            delays.push(status[0].backoff.unwrap().as_millis());
            assert_eq!(status[0].last_exit, Some(ExitReason::Code(1)));
        }
        if run == 4 {
            // A run longer than reset_after.
            tokio::time::sleep(Duration::from_millis(1200)).await;
        }
        std::fs::write(work.join(format!("release.{run}")), "").unwrap();
    }
    assert_eq!(delays, [100, 200, 400, 100]);

    // The fixture's own clock: no restart came sooner than its delay.
    let starts: Vec<u128> = std::fs::read_to_string(work.join("starts"))
        .unwrap()
        .lines()
        .map(|l| l.parse().unwrap())
        .collect();
    for (gap, delay) in starts
        .windows(2)
        .map(|w| (w[1] - w[0]) / 1_000_000)
        .zip(&delays)
    {
        assert!(
            gap >= *delay,
            "restarted after {gap} ms, before its {delay} ms delay"
        );
    }
    supervisor.stop().await;
    setup.assert_nothing_marked();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_child_ignoring_sigterm_is_killed_after_its_stop_timeout() {
    let setup = Setup::new();
    let work = setup.work();
    let mut supervisor = Supervisor::new(setup.config(small_backoff())).unwrap();
    let mut spec = setup.spec("stubborn", "ignore-term.sh", &[work.to_str().unwrap()]);
    spec.stop_timeout = Duration::from_millis(300);
    supervisor.start(vec![spec]).await.unwrap();
    eventually("the fixture's pid file", || {
        work.join("ignore-term.pid").exists()
    })
    .await;
    let pid = setup.read_pid("ignore-term.pid");
    let mut changes = supervisor.subscribe();
    supervisor.stop().await;
    let status = changes.borrow_and_update().clone();
    assert_eq!(status[0].state, ComponentState::Stopped);
    assert_eq!(status[0].last_exit, Some(ExitReason::Signal(libc::SIGKILL)));
    assert!(!alive(pid));
    setup.assert_nothing_marked();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_leaves_no_grandchild_in_the_group_or_in_a_new_session() {
    if k0x_testkit::require_binaries("grandchildren", &["setsid"]).is_none() {
        return;
    }
    let setup = Setup::new();
    let work = setup.work();
    let mut supervisor = Supervisor::new(setup.config(small_backoff())).unwrap();
    let spec = setup.spec("parent", "grandchildren.sh", &[work.to_str().unwrap()]);
    supervisor.start(vec![spec]).await.unwrap();
    eventually("both grandchildren", || {
        work.join("same-group.pid").exists() && work.join("new-session.pid").exists()
    })
    .await;
    let same_group = setup.read_pid("same-group.pid");
    let new_session = setup.read_pid("new-session.pid");
    eventually("the grandchildren to run", || {
        alive(same_group) && alive(new_session)
    })
    .await;
    let parent = Pid::from_raw(supervisor.status()[0].pid.unwrap() as i32);
    assert_eq!(nix::unistd::getpgid(Some(same_group)).unwrap(), parent);
    eventually("the shim-like grandchild to leave the group", || {
        nix::unistd::getsid(Some(new_session)).is_ok_and(|sid| sid == new_session)
    })
    .await;

    eventually("the shim's container", || {
        work.join("container.pid").exists()
    })
    .await;
    let container = setup.read_pid("container.pid");
    assert!(alive(container));

    supervisor.stop().await;
    eventually("the grandchildren and the container to die", || {
        !alive(same_group) && !alive(new_session) && !alive(container)
    })
    .await;
    setup.assert_nothing_marked();
}

/// A real shim (a process running `<data dir>/bin/containerd-shim-runc-v2` with the marker) and
/// the container below it outlive a stop and the next start's orphan sweep; ending everything,
/// as `k0x reset` does, ends both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_and_the_orphan_sweep_keep_a_shim_and_its_container_and_reset_ends_them() {
    if k0x_testkit::require_binaries("shim kept", &["setsid", "sh"]).is_none() {
        return;
    }
    let setup = Setup::new();
    let work = setup.work();
    let data = setup.data();
    std::fs::create_dir_all(data.bin()).unwrap();
    let shim_path = data.bin().join(k0x_supervisor::SHIM_EXECUTABLES[0]);
    std::fs::copy(k0x_testkit::find_binary("sh").unwrap(), &shim_path).unwrap();
    let mut supervisor = Supervisor::new(setup.config(small_backoff())).unwrap();
    let spec = setup.spec(
        "containerd",
        "shim-maker.sh",
        &[work.to_str().unwrap(), shim_path.to_str().unwrap()],
    );
    supervisor.start(vec![spec]).await.unwrap();
    eventually("the shim and its container", || {
        work.join("shim.pid").exists() && work.join("container.pid").exists()
    })
    .await;
    let shim = setup.read_pid("shim.pid");
    let container = setup.read_pid("container.pid");
    eventually(
        "the shim to run its own executable in its own session",
        || {
            ProcFs.executable(shim).is_some_and(|exe| exe == shim_path)
                && nix::unistd::getsid(Some(shim)).is_ok_and(|sid| sid == shim)
        },
    )
    .await;
    // Ends whatever the test leaves, also when it fails half-way (the container has no marker).
    let ours = Ownership::of(&data);
    struct EndAll<'a>(&'a Ownership);
    impl Drop for EndAll<'_> {
        fn drop(&mut self) {
            if let Ok(left) = Leftovers::find(&ProcFs, self.0) {
                let _ = left.end(&ProcFs, self.0, Duration::ZERO);
            }
        }
    }
    let _guard = EndAll(&ours);

    supervisor.stop().await;
    assert!(alive(shim) && alive(container), "the stop ended a workload");
    assert_eq!(setup.marked(), [shim], "only the shim keeps the marker");

    let lock = DataDirLock::acquire(&data).expect("the stopped supervisor released the lock");
    let ended = end_orphans(&setup.run(), &lock).unwrap();
    assert_eq!(ended, [], "the orphan sweep ended a workload");
    assert!(alive(shim) && alive(container));

    let left = Leftovers::find(&ProcFs, &ours).unwrap();
    assert_eq!(left.shims, [shim]);
    assert_eq!(left.containers, [(container, shim)]);
    assert!(
        left.marked.is_empty() && left.offspring.is_empty(),
        "{left:?}"
    );
    left.end(&ProcFs, &ours, Duration::from_secs(2)).unwrap();
    eventually("the shim and the container to die", || {
        !alive(shim) && !alive(container)
    })
    .await;
    setup.assert_nothing_marked();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_takes_its_group_along_but_a_new_session_survives_until_stop() {
    if k0x_testkit::require_binaries("crash with grandchildren", &["setsid"]).is_none() {
        return;
    }
    let setup = Setup::new();
    let work = setup.work();
    let mut supervisor = Supervisor::new(setup.config(small_backoff())).unwrap();
    let spec = setup.spec("parent", "grandchildren.sh", &[work.to_str().unwrap()]);
    supervisor.start(vec![spec]).await.unwrap();
    eventually("both grandchildren", || {
        work.join("same-group.pid").exists() && work.join("new-session.pid").exists()
    })
    .await;
    let same_group = setup.read_pid("same-group.pid");
    let new_session = setup.read_pid("new-session.pid");
    std::fs::remove_file(work.join("same-group.pid")).unwrap();
    eventually("the shim-like grandchild to leave the group", || {
        nix::unistd::getsid(Some(new_session)).is_ok_and(|sid| sid == new_session)
    })
    .await;
    let parent = Pid::from_raw(supervisor.status()[0].pid.unwrap() as i32);
    nix::sys::signal::kill(parent, Signal::SIGKILL).unwrap();
    wait_status(&supervisor, "the restart", |all| {
        all[0].restarts == 1 && all[0].pid.is_some()
    })
    .await;
    eventually("the crashed child's group to be gone", || {
        !alive(same_group)
    })
    .await;
    // Like a containerd shim across a containerd restart: it left the group and lives on...
    assert!(alive(new_session));
    eventually("the new run's grandchild", || {
        work.join("same-group.pid").exists()
    })
    .await;
    supervisor.stop().await;
    // ...until k0x stops.
    eventually("the session leader to be ended", || !alive(new_session)).await;
    setup.assert_nothing_marked();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dependents_start_after_their_dependencies_report_ready() {
    let setup = Setup::new();
    let work = setup.work();
    let dir = work.to_str().unwrap();
    let mut supervisor = Supervisor::new(setup.config(small_backoff())).unwrap();
    let component = |name: &str, delay: &str, deps: &[&str]| {
        let mut spec = setup.spec(name, "readiness.sh", &[dir, name, delay]);
        spec.depends_on = deps.iter().map(|d| d.to_string()).collect();
        spec.readiness = Readiness {
            probe: k0x_supervisor::Probe::Exec {
                path: "/bin/sh".into(),
                args: vec!["-c".into(), format!("test -e {dir}/{name}.ready")],
            },
            timing: ProbeTiming {
                interval: Duration::from_millis(50),
                ..ProbeTiming::default()
            },
            ..Readiness::default()
        };
        spec
    };
    let specs = vec![
        component("scheduler", "0.1", &["apiserver"]),
        component("apiserver", "0.3", &["etcd"]),
        component("etcd", "0.3", &[]),
    ];
    supervisor.start(specs).await.unwrap();
    let stamp = |file: String| -> u128 {
        std::fs::read_to_string(work.join(file))
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    };
    for (dependency, dependent) in [("etcd", "apiserver"), ("apiserver", "scheduler")] {
        let ready = stamp(format!("{dependency}.ready-at"));
        let started = stamp(format!("{dependent}.started"));
        assert!(
            started > ready,
            "{dependent} started before {dependency} was ready"
        );
    }
    let names: Vec<_> = supervisor.status().into_iter().map(|s| s.name).collect();
    assert_eq!(names, ["etcd", "apiserver", "scheduler"]);
    supervisor.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dependency_that_never_gets_ready_fails_start_and_holds_back_its_dependents() {
    let setup = Setup::new();
    let work = setup.work();
    let dir = work.to_str().unwrap();
    let mut supervisor = Supervisor::new(setup.config(small_backoff())).unwrap();
    let mut etcd = setup.spec("etcd", "readiness.sh", &[dir, "etcd", "0"]);
    etcd.readiness = Readiness {
        probe: k0x_supervisor::Probe::UnixSocket(work.join("never.sock")),
        timing: ProbeTiming {
            interval: Duration::from_millis(50),
            attempt_timeout: Duration::from_millis(200),
            timeout: Duration::from_millis(600),
        },
        ..Readiness::default()
    };
    let mut apiserver = setup.spec("apiserver", "readiness.sh", &[dir, "apiserver", "0"]);
    apiserver.depends_on = vec!["etcd".into()];
    let error = supervisor.start(vec![etcd, apiserver]).await.unwrap_err();
    let message = error.to_string();
    assert!(
        message.starts_with(
            "component etcd did not start: not ready within 600ms: probe unix socket "
        ),
        "{message}"
    );
    assert!(!work.join("apiserver.started").exists());
    setup.assert_nothing_marked();
    assert!(supervisor.status().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_kill_random_children_a_hundred_times() {
    let setup = Setup::new();
    let mut supervisor = Supervisor::new(setup.config(small_backoff())).unwrap();
    let names: Vec<String> = (1..=7).map(|i| format!("c{i}")).collect();
    let specs = names
        .iter()
        .map(|name| setup.spec(name, "sleeper.sh", &[]))
        .collect();
    supervisor.start(specs).await.unwrap();

    let mut kills = 0u32;
    let mut killed = Vec::new();
    for _ in 0..100 {
        let status = supervisor.status();
        let victims: Vec<usize> = if rand::random::<bool>() {
            vec![rand::random_range(0..7)]
        } else {
            rand::seq::index::sample(&mut rand::rng(), 7, 2).into_vec()
        };
        let mut expected: BTreeMap<usize, u32> = BTreeMap::new();
        for victim in victims {
            let pid = Pid::from_raw(status[victim].pid.unwrap() as i32);
            nix::sys::signal::kill(pid, Signal::SIGKILL).unwrap();
            killed.push(pid);
            kills += 1;
            expected.insert(victim, status[victim].restarts + 1);
        }
        wait_status(&supervisor, "the killed children to be back", |all| {
            expected.iter().all(|(i, restarts)| {
                all[*i].restarts == *restarts && all[*i].state == ComponentState::Ready
            })
        })
        .await;
    }

    let status = supervisor.status();
    assert!(status.iter().all(|s| s.state == ComponentState::Ready));
    assert_eq!(status.iter().map(|s| s.restarts).sum::<u32>(), kills);
    assert!(
        status
            .iter()
            .all(|s| s.last_exit == Some(ExitReason::Signal(libc::SIGKILL)))
    );
    let mut running: Vec<Pid> = status
        .iter()
        .map(|s| Pid::from_raw(s.pid.unwrap() as i32))
        .collect();
    running.sort();
    let mut marked = setup.marked();
    marked.sort();
    assert_eq!(
        marked, running,
        "marked processes other than the components"
    );
    let zombies: Vec<_> = zombie_children()
        .into_iter()
        .filter(|z| killed.contains(z))
        .collect();
    assert!(zombies.is_empty(), "unreaped children: {zombies:?}");
    supervisor.stop().await;
    setup.assert_nothing_marked();
}

/// Guard for a process the test started itself.
struct Spawned(Child);

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Spawned {
    fn pid(&self) -> Pid {
        Pid::from_raw(self.0.id() as i32)
    }
}

const HELPER_DIR: &str = "K0X_SUPERVISOR_TEST_HELPER_DIR";
const HELPER_GENERATION: &str = "K0X_SUPERVISOR_TEST_HELPER_GENERATION";

/// Not a test: the supervisor process that `killing_the_supervisor_*` SIGKILLs.
#[test]
#[ignore = "helper process started by another test"]
fn helper_supervisor_process() {
    let (Some(dir), Some(generation)) = (
        std::env::var_os(HELPER_DIR).map(PathBuf::from),
        std::env::var_os(HELPER_GENERATION),
    ) else {
        return;
    };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let lock = DataDirLock::acquire(&DataDir::new(dir.join("data"))).unwrap();
        let mut config = SupervisorConfig::new(RunDir::new(dir.join("run")), Arc::new(lock));
        config.backoff = small_backoff();
        let mut supervisor = Supervisor::new(config).unwrap();
        let work = dir.join("work").join(generation);
        let specs = ["a", "b", "c"]
            .iter()
            .map(|name| {
                let mut spec = Spec::new(*name, fixture("orphan-maker.sh"));
                spec.args = vec![work.to_str().unwrap().into(), name.to_string()];
                spec
            })
            .collect();
        supervisor.start(specs).await.unwrap();
        std::fs::write(work.join("helper.ready"), "").unwrap();
        std::future::pending::<()>().await;
    });
}

/// A supervisor process started from `helper_supervisor_process`, and what it runs.
struct Generation {
    helper: Spawned,
    children: Vec<Pid>,
    /// Grandchildren in their own sessions: PDEATHSIG does not reach them.
    grandchildren: Vec<Pid>,
}

impl Generation {
    async fn start(setup: &Setup, number: u32) -> Self {
        let work = setup.work().join(number.to_string());
        std::fs::create_dir(&work).unwrap();
        let helper = Spawned(
            Command::new(std::env::current_exe().unwrap())
                .args([
                    "--ignored",
                    "--exact",
                    "helper_supervisor_process",
                    "--nocapture",
                ])
                .env(HELPER_DIR, setup.tmp.path())
                .env(HELPER_GENERATION, number.to_string())
                .stdout(std::process::Stdio::null())
                .spawn()
                .unwrap(),
        );
        eventually("the helper supervisor to be ready", || {
            work.join("helper.ready").exists()
        })
        .await;
        let run = setup.run();
        let read = |path: PathBuf| {
            Pid::from_raw(
                std::fs::read_to_string(path)
                    .unwrap()
                    .trim()
                    .parse()
                    .unwrap(),
            )
        };
        let mut children = Vec::new();
        let mut grandchildren = Vec::new();
        for name in ["a", "b", "c"] {
            children.push(read(run.pid_file(name)));
            let grandchild = work.join(format!("{name}.grandchild"));
            eventually("the grandchild's pid", || grandchild.exists()).await;
            grandchildren.push(read(grandchild));
        }
        assert!(children.iter().chain(&grandchildren).all(|pid| alive(*pid)));
        Self {
            helper,
            children,
            grandchildren,
        }
    }

    /// SIGKILLs the supervisor; its children die with it, the grandchildren stay.
    async fn kill(mut self) -> Vec<Pid> {
        self.helper.0.kill().unwrap();
        self.helper.0.wait().unwrap();
        eventually("every child to die with its supervisor", || {
            self.children.iter().all(|pid| !alive(*pid))
        })
        .await;
        assert!(
            self.grandchildren.iter().all(|pid| alive(*pid)),
            "setsid survivors are the test's premise"
        );
        self.grandchildren
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_supervisor_kills_its_children_and_a_successor_ends_only_marked_survivors() {
    if k0x_testkit::require_binaries("supervisor kill -9", &["setsid"]).is_none() {
        return;
    }
    let setup = Setup::new();
    let run = setup.run();
    let survivors = Generation::start(&setup, 1).await.kill().await;

    // A pid file naming a process without the marker (the pid was reused), and a process
    // marked for another data dir.
    let unmarked = Spawned(Command::new("sleep").arg("100000").spawn().unwrap());
    std::fs::write(run.pid_file("reused"), format!("{}\n", unmarked.pid())).unwrap();
    let other_dir = tempfile::tempdir().unwrap();
    let other = Spawned(
        Command::new("sleep")
            .arg("100000")
            .env(k0x_supervisor::MARKER_VAR, other_dir.path())
            .spawn()
            .unwrap(),
    );

    // A successor supervisor ends the survivors before it starts its own children.
    let successor = Generation::start(&setup, 2).await;
    assert!(
        survivors.iter().all(|pid| !alive(*pid)),
        "a survivor outlived the successor's start"
    );
    assert!(alive(unmarked.pid()), "an unmarked process was signalled");
    assert!(
        alive(other.pid()),
        "another data dir's process was signalled"
    );
    assert!(!run.pid_file("reused").exists());

    // `k0x reset` after a SIGKILL: end_orphans alone finds the same.
    let survivors = successor.kill().await;
    let lock =
        DataDirLock::acquire(&setup.data()).expect("the dead supervisor's lock went with it");
    let mut ended = end_orphans(&run, &lock).unwrap();
    ended.sort();
    let mut expected = survivors.clone();
    expected.sort();
    assert_eq!(ended, expected);
    eventually("the marked survivors to die", || {
        survivors.iter().all(|pid| !alive(*pid))
    })
    .await;
    assert!(alive(unmarked.pid()) && alive(other.pid()));
    assert!(!run.pid_file("a").exists());
    setup.assert_nothing_marked();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_that_cannot_exec_names_the_reason() {
    let setup = Setup::new();
    let mut supervisor = Supervisor::new(setup.config(small_backoff())).unwrap();
    let missing = setup.spec("missing", "no-such-fixture.sh", &[]);
    let error = supervisor
        .start(vec![missing])
        .await
        .unwrap_err()
        .to_string();
    assert!(
        error.starts_with("component missing did not start: cannot run "),
        "{error}"
    );
    assert!(
        error.ends_with("No such file or directory (os error 2)"),
        "{error}"
    );

    let mut homeless = setup.spec("homeless", "sleeper.sh", &[]);
    homeless.dir = Some(setup.work().join("gone"));
    let error = supervisor
        .start(vec![homeless])
        .await
        .unwrap_err()
        .to_string();
    assert!(error.ends_with("gone does not exist"), "{error}");
    setup.assert_nothing_marked();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn children_carry_the_marker_and_never_the_notify_socket() {
    let setup = Setup::new();
    let work = setup.work();
    let mut supervisor = Supervisor::new(setup.config(small_backoff())).unwrap();
    let mut spec = setup.spec("env", "env-dump.sh", &[work.to_str().unwrap()]);
    spec.env
        .insert("NOTIFY_SOCKET".into(), "/run/systemd/notify".into());
    spec.env
        .insert(k0x_supervisor::MARKER_VAR.into(), "/elsewhere".into());
    spec.env
        .insert("ETCD_UNSUPPORTED_ARCH".into(), "arm".into());
    supervisor.start(vec![spec]).await.unwrap();
    eventually("the environment dump", || work.join("env").exists()).await;
    let env = std::fs::read_to_string(work.join("env")).unwrap();
    let lines: Vec<&str> = env.lines().collect();
    assert!(
        !lines.iter().any(|l| l.starts_with("NOTIFY_SOCKET=")),
        "{env}"
    );
    assert!(lines.contains(&"ETCD_UNSUPPORTED_ARCH=arm"), "{env}");
    let marker = String::from_utf8(setup.marker.clone()).unwrap();
    assert!(lines.contains(&marker.as_str()), "{env}");
    supervisor.stop().await;
    setup.assert_nothing_marked();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_child_that_dies_at_start_is_reported_with_what_it_said() {
    let setup = Setup::new();
    let mut supervisor = Supervisor::new(setup.config(small_backoff())).unwrap();
    let mut etcd = Spec::new("etcd", "/bin/sh");
    etcd.args = [
        "-c",
        "echo starting; echo 'error: open wal: no space left on device' >&2; exit 2",
    ]
    .map(String::from)
    .to_vec();
    etcd.restart = k0x_supervisor::RestartPolicy::Never;
    etcd.readiness = Readiness {
        probe: k0x_supervisor::Probe::Tcp(([127, 0, 0, 1], k0x_testkit::free_port()).into()),
        timing: ProbeTiming {
            timeout: Duration::from_secs(30),
            ..ProbeTiming::default()
        },
        ..Readiness::default()
    };
    let error = supervisor.start(vec![etcd]).await.unwrap_err().to_string();
    assert_eq!(
        error,
        "component etcd did not start: it exited with exit code 2 before it was ready (restart \
         policy Never); its last output: \"error: open wal: no space left on device\""
    );
    setup.assert_nothing_marked();
}
