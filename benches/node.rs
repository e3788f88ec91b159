//! A whole single node, `k0x server --enable-worker` with the components built from source:
//! - time from starting k0x to the Node Ready (by a status its kubelet posted after the start)
//!   and to the CoreDNS Deployment ready, on a fresh data dir (cold) and after a SIGTERM stop on
//!   the same data (warm: CoreDNS's container kept running through the stop);
//! - memory at idle with the system pods running: VmRSS of k0x itself, and the node's memory
//!   summed over every process of it (k0x, its components, the container shims and the
//!   containers below) as PSS, each page shared by several processes counted once (the headline
//!   the goal is held to), beside the RSS sum and its anonymous part, and all three by process
//!   name;
//! - the same with the Go runtime's memory knobs (GOGC, GOMEMLIMIT) in k0x's environment, which
//!   the components inherit, against the default's median.
//!
//! Prints samples and medians against the goals (Ready <= 20 s; k0x <= 20 MiB; the node <= 600
//! MiB); asserts nothing about time. k3s, the reference the goals come from, cannot run here, so
//! no ratio is printed. Run: `cargo bench -p k0x --bench node` (K0X_BENCH_ROUNDS, default 3).

#[path = "../tests/common/mod.rs"]
mod common;

use std::collections::BTreeMap;
use std::ffi::OsStr;
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

/// Starts k0x (its components inherit `env`) and returns the times to Node Ready and to CoreDNS
/// ready.
fn start(node: &mut Node, env: &[(&str, &OsStr)]) -> (Duration, Duration) {
    let since = rfc3339_now();
    let started = Instant::now();
    node.start_with_env(&["--enable-worker"], env);
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

/// Resident KiB of one process: all of it, its anonymous part, and its proportional share (a page
/// that n processes map counts 1/n in each: the Kubernetes components share one binary's text).
#[derive(Clone, Copy, Default)]
struct Resident {
    rss: u64,
    anon: u64,
    pss: u64,
}

impl std::ops::AddAssign for Resident {
    fn add_assign(&mut self, other: Self) {
        self.rss += other.rss;
        self.anon += other.anon;
        self.pss += other.pss;
    }
}

/// The value of the `name` line (`Name:   123 kB`) in a /proc status-like file.
fn kib_field(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Parent pid, resident memory and command name of every process.
fn processes() -> BTreeMap<u32, (u32, Resident, String)> {
    let mut all = BTreeMap::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(status) = std::fs::read_to_string(entry.path().join("status")) else {
            continue;
        };
        let rollup = std::fs::read_to_string(entry.path().join("smaps_rollup")).unwrap_or_default();
        let resident = Resident {
            rss: kib_field(&status, "VmRSS:"),
            anon: kib_field(&status, "RssAnon:"),
            pss: kib_field(&rollup, "Pss:"),
        };
        let name = status
            .lines()
            .find_map(|l| l.strip_prefix("Name:"))
            .unwrap_or_default()
            .trim()
            .to_owned();
        all.insert(pid, (kib_field(&status, "PPid:") as u32, resident, name));
    }
    all
}

/// Resident KiB of the node.
struct Memory {
    k0x: u64,
    total: Resident,
    /// By command name, largest RSS first.
    by_name: Vec<(String, Resident)>,
}

/// KiB resident in k0x and in the whole node: k0x, the processes carrying its marker (the
/// components, and the shims that left k0x's tree) and everything below them.
fn memory(node: &Node) -> Memory {
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
            up = all.get(&up).map_or(1, |(parent, ..)| *parent);
        }
        false
    };
    let mut by_name: BTreeMap<String, Resident> = BTreeMap::new();
    for (_, (_, resident, name)) in all.iter().filter(|(pid, _)| below(**pid)) {
        *by_name.entry(name.clone()).or_default() += *resident;
    }
    let mut total = Resident::default();
    for resident in by_name.values() {
        total += *resident;
    }
    let mut by_name: Vec<(String, Resident)> = by_name.into_iter().collect();
    by_name.sort_by_key(|(_, resident)| std::cmp::Reverse(resident.rss));
    Memory {
        k0x: all.get(&k0x).map_or(0, |(_, resident, _)| resident.rss),
        total,
        by_name,
    }
}

/// Memory knobs of the Go runtime every component reads, given to k0x's environment (a unit's
/// `Environment=`); the components inherit it.
const KNOBS: &[&[(&str, &str)]] = &[
    &[("GOGC", "50")],
    &[("GOMEMLIMIT", "150MiB")],
    &[("GOGC", "50"), ("GOMEMLIMIT", "150MiB")],
];

/// The whole node's idle memory, cold, with `env`.
fn idle_memory(target_tmp: &std::path::Path, env: &[(&str, &OsStr)]) -> Option<Memory> {
    let mut node = Node::new("bench-node")?;
    if !node.stage_kubernetes("bench-node", target_tmp) {
        return None;
    }
    common::relax_eviction(&node);
    start(&mut node, env);
    std::thread::sleep(IDLE);
    let memory = memory(&node);
    assert!(node.stop(Signal::SIGTERM).success(), "{}", node.log());
    Some(memory)
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
        let (ready, dns) = start(&mut node, &[]);
        samples[0].push(ready);
        samples[1].push(dns);
        std::thread::sleep(IDLE);
        rss.push(memory(&node));
        assert!(node.stop(Signal::SIGTERM).success(), "{}", node.log());
        let (ready, dns) = start(&mut node, &[]);
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
    for memory in &rss {
        println!(
            "idle with the system pods: k0x VmRSS {:.1} MiB (goal <= 20), whole node {:.0} MiB \
             (PSS: each shared page once; goal <= 600); RSS summed over processes {:.0} MiB, \
             of it anonymous {:.0} MiB",
            mib(memory.k0x),
            mib(memory.total.pss),
            mib(memory.total.rss),
            mib(memory.total.anon)
        );
    }
    let Some(first) = rss.first() else { return };
    let parts: Vec<String> = first
        .by_name
        .iter()
        .map(|(name, r)| {
            format!(
                "{name} {:.0}/{:.0}/{:.0}",
                mib(r.rss),
                mib(r.anon),
                mib(r.pss)
            )
        })
        .collect();
    println!(
        "whole node by process name, MiB RSS/anonymous/PSS: {}",
        parts.join(", ")
    );
    let mut totals: Vec<u64> = rss.iter().map(|m| m.total.pss).collect();
    totals.sort_unstable();
    let baseline = totals[totals.len() / 2];
    for knob in KNOBS {
        let env: Vec<(&str, &OsStr)> = knob.iter().map(|(k, v)| (*k, OsStr::new(*v))).collect();
        let Some(with) = idle_memory(&target_tmp, &env) else {
            return;
        };
        let named: Vec<String> = knob.iter().map(|(k, v)| format!("{k}={v}")).collect();
        println!(
            "with {}: whole node {:.0} MiB (PSS), {:.2} of the default's median {:.0} MiB",
            named.join(" "),
            mib(with.total.pss),
            with.total.pss as f64 / baseline as f64,
            mib(baseline)
        );
    }
}
