//! The supervisor running the real etcd: readiness through its /health endpoint, restart after
//! a crash, and a clean stop.

use std::sync::Arc;
use std::time::Duration;

use k0x_config::{DataDir, RunDir};
use k0x_supervisor::{
    ComponentState, DataDirLock, ExitReason, Pid, Probe, ProbeTiming, ProcFs, ProcessTable,
    Readiness, Signal, Spec, Supervisor, SupervisorConfig, marker_entry, marker_value,
};

use k0x_testkit::free_port;

/// SIGKILLs whatever still carries the test's marker, also when the test fails.
struct Leftovers(Vec<u8>);

impl Leftovers {
    fn pids(&self) -> Vec<Pid> {
        let me = Pid::this();
        ProcFs
            .pids()
            .unwrap()
            .into_iter()
            .filter(|pid| *pid != me && ProcFs.carries_marker(*pid, &self.0))
            .collect()
    }
}

impl Drop for Leftovers {
    fn drop(&mut self) {
        for pid in self.pids() {
            let _ = ProcFs.signal_if_marked(pid, &self.0, Signal::SIGKILL);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_is_ready_when_healthy_restarts_after_a_crash_and_stops_cleanly() {
    let Some(bins) = k0x_testkit::require_binaries("supervised etcd", &["etcd"]) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let data = DataDir::new(tmp.path().join("data"));
    data.create().unwrap();
    let leftovers = Leftovers(marker_entry(&marker_value(&data)));
    let (client, peer) = (free_port(), free_port());
    let client_url = format!("http://127.0.0.1:{client}");
    let peer_url = format!("http://127.0.0.1:{peer}");
    let mut etcd = Spec::new("etcd", &bins[0]);
    etcd.args = [
        "--name=supervised",
        &format!("--data-dir={}", data.etcd().display()),
        &format!("--listen-client-urls={client_url}"),
        &format!("--advertise-client-urls={client_url}"),
        &format!("--listen-peer-urls={peer_url}"),
        &format!("--initial-advertise-peer-urls={peer_url}"),
        &format!("--initial-cluster=supervised={peer_url}"),
    ]
    .iter()
    .map(|a| a.to_string())
    .collect();
    etcd.readiness = Readiness {
        probe: Probe::Http {
            url: format!("{client_url}/health"),
            ca: None,
            client_cert: None,
            client_key: None,
        },
        timing: ProbeTiming {
            timeout: Duration::from_secs(60),
            ..ProbeTiming::default()
        },
        ..Readiness::default()
    };
    let lock = Arc::new(DataDirLock::acquire(&data).unwrap());
    let mut config = SupervisorConfig::new(RunDir::new(tmp.path().join("run")), lock);
    config.backoff.initial = Duration::from_millis(50);
    let mut supervisor = Supervisor::new(config).unwrap();
    supervisor.start(vec![etcd]).await.unwrap();
    let first = supervisor.status()[0].clone();
    assert_eq!(first.state, ComponentState::Ready);

    let pid = Pid::from_raw(first.pid.unwrap() as i32);
    nix::sys::signal::kill(pid, Signal::SIGKILL).unwrap();
    let mut changes = supervisor.subscribe();
    tokio::time::timeout(
        Duration::from_secs(60),
        changes.wait_for(|all| all[0].restarts == 1 && all[0].state == ComponentState::Ready),
    )
    .await
    .expect("etcd ready again after its crash")
    .unwrap();

    let mut changes = supervisor.subscribe();
    supervisor.stop().await;
    let last = changes.borrow_and_update()[0].clone();
    assert_eq!(last.state, ComponentState::Stopped);
    // etcd re-raises SIGTERM after its cleanup; SIGKILL would mean the stop timeout ran out.
    assert!(
        matches!(
            last.last_exit,
            Some(ExitReason::Code(0) | ExitReason::Signal(libc::SIGTERM))
        ),
        "etcd did not stop gracefully: {:?}",
        last.last_exit
    );
    assert!(leftovers.pids().is_empty());
}
