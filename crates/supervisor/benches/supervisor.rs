//! Supervisor benchmarks; prints numbers, asserts nothing.
//!
//! - resident memory of a process that supervises 7 children, against the same process before
//!   the runtime and supervisor existed (goal: <= 12 MiB in total);
//! - CPU time used while the 7 children idle for 5 s (goal: ~0, no polling);
//! - time from a child's SIGKILL to its restart under the default backoff (goal: <= 600 ms,
//!   the first 0.5 s step plus jitter), against a zero-delay backoff showing the mechanism's own
//!   cost.

#![allow(clippy::print_stdout)]

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k0x_config::{DataDir, RunDir};
use k0x_supervisor::{
    BackoffPolicy, ComponentState, DataDirLock, Pid, Signal, Spec, Supervisor, SupervisorConfig,
};

const CHILDREN: usize = 7;

fn main() {
    let baseline_kib = vm_rss_kib();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let tmp = tempfile::tempdir().unwrap();
        let mut supervisor = supervisor_at(tmp.path(), "default", BackoffPolicy::default()).await;
        let rss_kib = vm_rss_kib();
        println!("rss_baseline_kib {baseline_kib}");
        println!(
            "rss_with_{CHILDREN}_children_kib {rss_kib} ({:.1} MiB, +{} KiB over baseline; goal <= 12 MiB)",
            rss_kib as f64 / 1024.0,
            rss_kib - baseline_kib
        );

        let idle = Duration::from_secs(5);
        let cpu_before = cpu_time();
        tokio::time::sleep(idle).await;
        let cpu = cpu_time() - cpu_before;
        println!(
            "idle_cpu_ms_over_{}s {:.2} ({:.3} % of one core)",
            idle.as_secs(),
            cpu.as_secs_f64() * 1000.0,
            cpu.as_secs_f64() / idle.as_secs_f64() * 100.0
        );

        let default = restart_latencies(&mut supervisor).await;
        supervisor.stop().await;
        let zero = BackoffPolicy {
            initial: Duration::ZERO,
            ..BackoffPolicy::default()
        };
        let mut immediate = supervisor_at(tmp.path(), "zero", zero).await;
        let mechanism = restart_latencies(&mut immediate).await;
        immediate.stop().await;
        report("restart_after_kill_default_backoff_ms", &default, "goal <= 600 ms");
        report("restart_after_kill_zero_backoff_ms", &mechanism, "the mechanism alone");
    });
}

async fn supervisor_at(root: &Path, name: &str, backoff: BackoffPolicy) -> Supervisor {
    let lock = DataDirLock::acquire(&DataDir::new(root.join(name).join("data"))).unwrap();
    let mut config =
        SupervisorConfig::new(RunDir::new(root.join(name).join("run")), Arc::new(lock));
    config.backoff = backoff;
    let mut supervisor = Supervisor::new(config).unwrap();
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/sleeper.sh");
    let specs = (1..=CHILDREN)
        .map(|i| Spec::new(format!("child-{i}"), &fixture))
        .collect();
    supervisor.start(specs).await.unwrap();
    supervisor
}

/// Kills each child once (so each restart is a first backoff step) and times its restart:
/// from the kill until the supervisor reports the new process.
async fn restart_latencies(supervisor: &mut Supervisor) -> Vec<Duration> {
    let mut latencies = Vec::new();
    for index in 0..CHILDREN {
        let old = supervisor.status()[index].pid.unwrap();
        let mut changes = supervisor.subscribe();
        changes.borrow_and_update();
        let killed = Instant::now();
        nix::sys::signal::kill(Pid::from_raw(old as i32), Signal::SIGKILL).unwrap();
        changes
            .wait_for(|all| {
                all[index].state == ComponentState::Ready
                    && all[index].pid.is_some_and(|p| p != old)
            })
            .await
            .unwrap();
        latencies.push(killed.elapsed());
    }
    latencies
}

fn report(name: &str, samples: &[Duration], note: &str) {
    let mut ms: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1000.0).collect();
    ms.sort_by(f64::total_cmp);
    println!(
        "{name} min {:.1} median {:.1} max {:.1} (n={}; {note})",
        ms[0],
        ms[ms.len() / 2],
        ms[ms.len() - 1],
        ms.len()
    );
}

fn vm_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

fn cpu_time() -> Duration {
    // SAFETY: getrusage fills the zeroed struct it is given.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        assert_eq!(libc::getrusage(libc::RUSAGE_SELF, &mut usage), 0);
        usage
    };
    let to_duration = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
    };
    to_duration(usage.ru_utime) + to_duration(usage.ru_stime)
}
