//! A real multi-node cluster on testkit hosts (`tests/common/cluster.rs`), measured:
//! - worker join: from `k0x worker --token-file` to the Node Ready, seconds (goal <= 15 s);
//! - pod-to-pod throughput across two nodes (flannel vxlan) against host-to-host over the same
//!   veth links, with the same programs on both paths (busybox `dd | nc` into `nc -e dd`,
//!   256 MiB, timed by busybox `time` where it runs), as a ratio (goal >= 0.9). busybox nc moves
//!   small chunks and is CPU-bound well below the links' speed, so the ratio compares the cost of
//!   each path rather than the links' capacity;
//! - controller loss: seconds from kill -9 of the first of three controllers until the worker's
//!   kubectl (its kubelet credentials, through the node-local load balancer) answers again (goal
//!   <= 5 s).
//!
//! Prints samples, medians and ratios; asserts nothing about time. Run:
//! `cargo bench -p k0x --bench cluster` (K0X_BENCH_ROUNDS throughput rounds, default 3).

#![allow(clippy::print_stdout, reason = "a benchmark reports on stdout")]

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::cluster::{
    ClusterNode, IMAGE, apply, kill_hard, nodes_on, ready_nodes, running_pod,
    three_controllers_and_a_worker, wait_for, wait_nodes_ready, worker_token,
};
use k0x_testkit::hosts::{Host, Network};

const BENCH: &str = "bench-cluster";
/// What each throughput sample sends: 4096 blocks of 64 KiB.
const BLOCKS: u32 = 4096;
const BLOCK: u32 = 65_536;
const SINK_PORT: u16 = 5001;

fn median(samples: &mut [f64]) -> f64 {
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

/// The nodes of `hosts`, or `None` (with a line) when the bench cannot run here.
fn nodes(hosts: &[Host]) -> Option<Vec<ClusterNode>> {
    nodes_on(hosts, BENCH, &k0x_testkit::find_binary("busybox")?)
}

/// The sender's command: `dd | nc` to `address`, under busybox `time -p`.
fn send_command(busybox: &str, address: &str) -> String {
    format!(
        "{busybox}time -p sh -c '{busybox}dd if=/dev/zero bs={BLOCK} count={BLOCKS} 2>/dev/null \
         | {busybox}nc {address} {SINK_PORT}'"
    )
}

/// The sink: accepts one connection and reads it to the end (busybox nc alone would stop at
/// the end of its own stdin).
fn sink_command(busybox: &str) -> String {
    format!("{busybox}nc -l -p {SINK_PORT} -e {busybox}dd of=/dev/null bs={BLOCK}")
}

/// MB/s from busybox `time -p` output (`real 1.23`); `None` for a transfer too fast to be one
/// (the connection failed).
fn rate(time_output: &str) -> Option<f64> {
    let real: f64 = time_output
        .lines()
        .find_map(|l| l.strip_prefix("real "))?
        .trim()
        .parse()
        .ok()?;
    (real >= 0.1).then(|| f64::from(BLOCKS) * f64::from(BLOCK) / 1e6 / real)
}

/// One host-to-host sample: a sink on `to`, the sender on `from`.
fn host_to_host(from: &Host, to: &Host) -> Option<f64> {
    let mut sink = to
        .command("sh")
        .args(["-c", &sink_command("busybox ")])
        .spawn()
        .ok()?;
    std::thread::sleep(Duration::from_millis(500));
    let sent = from.output(
        "sh",
        &["-c", &send_command("busybox ", &to.address.to_string())],
    );
    let _ = sink.kill();
    let _ = sink.wait();
    rate(&String::from_utf8_lossy(&sent.stderr))
}

/// One pod-to-pod sample: the sender pod's `dd | nc` to the sink pod's address.
fn pod_to_pod(controller: &ClusterNode, sink_ip: &str) -> Option<f64> {
    let script = send_command("", sink_ip);
    let sent = controller.kubectl(&["exec", "sender", "--", "sh", "-c", &script]);
    rate(&String::from_utf8_lossy(&sent.stderr))
}

/// A pod on `node` running `script`.
fn pod(name: &str, node: &str, script: &str) -> String {
    serde_json::json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": { "name": name },
        "spec": {
            "nodeName": node,
            "containers": [{
                "name": "busybox",
                "image": IMAGE,
                "imagePullPolicy": "Never",
                "command": ["sh", "-c", script],
            }],
        },
    })
    .to_string()
}

/// Worker joins and throughput on one controller+worker and two workers.
fn joins_and_throughput(rounds: usize) {
    let network = Network::create(&["ctl-1", "wrk-1", "wrk-2"]).unwrap();
    let Some(mut nodes) = nodes(network.hosts()) else {
        return println!("{BENCH}: not run: needs root, busybox and the built components");
    };
    let [controller, workers @ ..] = nodes.as_mut_slice() else {
        unreachable!()
    };
    controller.start(&["server", "--enable-worker"]);
    wait_nodes_ready(controller, &["ctl-1"], &[controller]);
    let token = worker_token(controller);
    for worker in workers.iter_mut() {
        let file = worker.token_file(&token);
        let started = Instant::now();
        worker.start(&["worker", "--token-file", file]);
        let name = worker.host.hostname.clone();
        wait_for(|| ready_nodes(controller).contains(&name).then_some(()))
            .unwrap_or_else(|| panic!("{name} never Ready: {}", worker.log_tail()));
        println!(
            "worker join, token to Node Ready: {name} {:.1} s (goal <= 15 s)",
            started.elapsed().as_secs_f64()
        );
    }
    let sink_loop = format!("while true; do {}; done", sink_command(""));
    apply(controller, &pod("sink", "wrk-1", &sink_loop));
    apply(controller, &pod("sender", "wrk-2", "exec sleep 3600"));
    let sink_ip = running_pod(controller, "sink", "{.status.podIP}");
    running_pod(controller, "sender", "{.status.podIP}");
    let (w1, w2) = (&workers[0].host, &workers[1].host);
    let (mut hosts, mut pods) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        hosts.extend(host_to_host(w2, w1));
        pods.extend(pod_to_pod(controller, &sink_ip));
    }
    if hosts.is_empty() || pods.is_empty() {
        return println!("throughput: no sample (host {hosts:?}, pod {pods:?})");
    }
    println!("host-to-host MB/s: {hosts:.0?}; pod-to-pod MB/s: {pods:.0?}");
    let (host, pod) = (median(&mut hosts), median(&mut pods));
    println!(
        "pod-to-pod / host-to-host: {pod:.0} / {host:.0} MB/s = {:.2} (goal >= 0.9)",
        pod / host
    );
}

/// Seconds from kill -9 of the first of three controllers until the worker's kubectl answers.
fn controller_loss() {
    let network = Network::create(&["ctl-1", "ctl-2", "ctl-3", "wrk-1"]).unwrap();
    let Some(mut nodes) = nodes(network.hosts()) else {
        return;
    };
    three_controllers_and_a_worker(&mut nodes);
    let [first, .., worker] = nodes.as_mut_slice() else {
        unreachable!()
    };
    let answers = || {
        let kubectl = "/var/lib/k0x/bin/kubectl";
        let args = [
            "--kubeconfig=/var/lib/k0x/pki/kubelet.conf",
            "--request-timeout=2s",
            "get",
            "node",
            "wrk-1",
            "-o",
            "name",
        ];
        worker.run(kubectl, &args).status.success()
    };
    assert!(
        answers(),
        "the worker's kubectl does not answer before the loss"
    );
    kill_hard(first);
    let killed = Instant::now();
    let mut failed = 0;
    while !answers() {
        failed += 1;
        assert!(
            killed.elapsed() < Duration::from_secs(120),
            "no answer after the loss"
        );
    }
    println!(
        "controller loss, kill -9 to the worker's kubectl answering: {:.1} s, {failed} failed \
         tries (goal <= 5 s)",
        killed.elapsed().as_secs_f64()
    );
}

fn main() {
    if !k0x_testkit::require_root(BENCH) {
        return println!("{BENCH}: not run: needs root");
    }
    let rounds: usize = std::env::var("K0X_BENCH_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(3);
    let _fixed_ports = k0x_testkit::lock_fixed_ports();
    joins_and_throughput(rounds);
    controller_loss();
}
