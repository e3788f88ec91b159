//! A whole single node, `k0x server --enable-worker` with the components built from source:
//! - time from starting k0x to the Node Ready (by a status its kubelet posted after the start)
//!   and to the CoreDNS Deployment ready, on a fresh data dir (cold) and after a SIGTERM stop on
//!   the same data (warm: CoreDNS's container kept running through the stop);
//! - memory at idle with the system pods running: VmRSS of k0x itself, and the sum over every
//!   process of the node (k0x, its components, the container shims and the containers below).
//!
//! Prints samples and medians against the goals (Ready <= 20 s; k0x <= 20 MiB; the node <= 600
//! MiB); asserts nothing about time. k3s, the reference the goals come from, cannot run here, so
//! no ratio is printed. Run: `cargo bench -p k0x --bench node` (K0X_BENCH_ROUNDS, default 3).

#[path = "../tests/common/mod.rs"]
mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::{Node, kubectl};
use nix::sys::signal::Signal;

const POLL: Duration = Duration::from_millis(250);
/// How long the node idles before its memory is read.
const IDLE: Duration = Duration::from_secs(30);

fn answers(node: &Node, args: &[&str], wanted: &str) -> bool {
    let out = kubectl(node, args);
    out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == wanted
}

/// The Node is Ready by a status the kubelet posted at or after `since` (RFC 3339, seconds): after
/// a restart the old status still says Ready until it goes stale.
fn node_ready(node: &Node, since: &str) -> bool {
    let ready = "{.items[0].status.conditions[?(@.type==\"Ready\")]}";
    let out = kubectl(node, &["get", "nodes", "-o", &format!("jsonpath={ready}")]);
    let condition: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    condition["status"] == "True"
        && condition["lastHeartbeatTime"]
            .as_str()
            .is_some_and(|beat| beat >= since)
}

/// Now, as the apiserver writes times (`2026-12-02T03:19:01Z`).
fn rfc3339_now() -> String {
    let out = std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%dT%H:%M:%SZ"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn coredns_ready(node: &Node) -> bool {
    let args = [
        "-n",
        "kube-system",
        "get",
        "deployment",
        "coredns",
        "-o",
        "jsonpath={.status.readyReplicas}",
    ];
    answers(node, &args, "1")
}

/// Starts k0x and returns the times to Node Ready and to CoreDNS ready.
fn start(node: &mut Node) -> (Duration, Duration) {
    let since = rfc3339_now();
    let started = Instant::now();
    node.start(&["--enable-worker"]);
    let wait = |ready: &dyn Fn(&Node) -> bool, what: &str| {
        while !ready(node) {
            assert!(
                started.elapsed() < common::LIMIT * 2,
                "{what} never came:\n{}",
                node.log()
            );
            std::thread::sleep(POLL);
        }
        started.elapsed()
    };
    let ready = wait(&|node| node_ready(node, &since), "Node Ready");
    let dns = wait(&coredns_ready, "CoreDNS ready");
    (ready, dns)
}

/// Parent pid and resident KiB of every process.
fn processes() -> BTreeMap<u32, (u32, u64)> {
    let mut all = BTreeMap::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(status) = std::fs::read_to_string(entry.path().join("status")) else {
            continue;
        };
        let field = |name: &str| -> u64 {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
                .unwrap_or(0)
        };
        all.insert(pid, (field("PPid:") as u32, field("VmRSS:")));
    }
    all
}

/// KiB resident in k0x and in the whole node: k0x, the processes carrying its marker (the
/// components, and the shims that left k0x's tree) and everything below them.
fn memory(node: &Node) -> (u64, u64) {
    let all = processes();
    let k0x = node.server_pid();
    let mut roots = node.marked_processes();
    roots.push(k0x);
    let below = |pid: u32| {
        let mut up = pid;
        while up > 1 {
            if roots.contains(&up) {
                return true;
            }
            up = all.get(&up).map_or(1, |(parent, _)| *parent);
        }
        false
    };
    let total = all
        .iter()
        .filter(|(pid, _)| below(**pid))
        .map(|(_, (_, rss))| rss)
        .sum();
    (all.get(&k0x).map_or(0, |(_, rss)| *rss), total)
}

fn seconds(samples: &[Duration]) -> String {
    samples
        .iter()
        .map(|d| format!("{:.1}", d.as_secs_f64()))
        .collect::<Vec<_>>()
        .join(" ")
}

fn median(samples: &[Duration]) -> f64 {
    let mut sorted = samples.to_vec();
    sorted.sort();
    sorted[sorted.len() / 2].as_secs_f64()
}

#[allow(clippy::print_stdout, reason = "a benchmark reports on stdout")]
fn main() {
    let target_tmp = std::env::temp_dir();
    let rounds: usize = std::env::var("K0X_BENCH_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(3);
    let mut samples: [Vec<Duration>; 4] = Default::default();
    let mut rss = Vec::new();
    for _ in 0..rounds {
        let Some(mut node) = Node::new("bench-node") else {
            println!("bench-node: not run: needs root and the host packages");
            return;
        };
        if !node.stage_kubernetes("bench-node", &target_tmp) {
            println!("bench-node: not run: the components are not built (embedded-bins/build)");
            return;
        }
        common::relax_eviction(&node);
        let (ready, dns) = start(&mut node);
        samples[0].push(ready);
        samples[1].push(dns);
        std::thread::sleep(IDLE);
        rss.push(memory(&node));
        assert!(node.stop(Signal::SIGTERM).success(), "{}", node.log());
        let (ready, dns) = start(&mut node);
        samples[2].push(ready);
        samples[3].push(dns);
        assert!(node.stop(Signal::SIGTERM).success(), "{}", node.log());
    }
    for (i, what) in [
        "cold: start to Node Ready",
        "cold: start to CoreDNS ready",
        "warm: start to Node Ready",
        "warm: start to CoreDNS ready",
    ]
    .iter()
    .enumerate()
    {
        println!(
            "{what}, {rounds} rounds, s: [{}] median {:.1} (goal for Ready <= 20)",
            seconds(&samples[i]),
            median(&samples[i])
        );
    }
    let mib = |kib: u64| kib as f64 / 1024.0;
    for (k0x, total) in rss {
        println!(
            "idle with the system pods: k0x VmRSS {:.1} MiB (goal <= 20), whole node {:.0} MiB (goal <= 600)",
            mib(k0x),
            mib(total)
        );
    }
}
