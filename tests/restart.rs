//! Restarts keep workloads running, by default with the components built from source (see the
//! harness): `k0x server --enable-worker` runs a 2-replica busybox Deployment; SIGTERM stops k0x
//! and its components, and the pods' containers keep running throughout (runc, read from the
//! node's own state, shows the same containers with the same init pids while k0x is down); the
//! next start adopts them: node Ready, the same container ids, restart counts unchanged. A k0x
//! killed with SIGKILL loses its components (parent-death signal) but not the containers, and
//! its next start adopts them the same way. Then
//! `k0x reset` ends everything: no process carrying the marker, no container, no mount below the
//! data and run dirs, no iptables rule or chain of ours, no bridge or pod veth, no container
//! cgroup. Without the components the test is skipped, and fails in strict mode.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{NODE_COMPONENTS, Node, kubectl, relax_eviction, stderr, stdout, wait_node_ready};
use nix::sys::signal::Signal;
use serde_json::Value;

const IMAGE: &str = "k0x.test/busybox:restart";
const DEPLOYMENT: &str = "k0x-restart-busybox";
/// containerd's namespace for the CRI plugin: where the pods' containers are.
const CRI_NAMESPACE: &str = "k8s.io";

fn run_deployment(node: &Node) {
    let labels = serde_json::json!({ "app": DEPLOYMENT });
    let manifest = serde_json::json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": { "name": DEPLOYMENT, "namespace": "default" },
        "spec": {
            "replicas": 2,
            "selector": { "matchLabels": labels },
            "template": {
                "metadata": { "labels": labels },
                "spec": {
                    "terminationGracePeriodSeconds": 1,
                    "containers": [{
                        "name": "busybox",
                        "image": IMAGE,
                        "imagePullPolicy": "Never",
                        "command": ["/bin/sh", "-c", "sleep 3600"],
                    }],
                },
            },
        },
    });
    let path = node.root.join("deployment.json");
    std::fs::write(&path, manifest.to_string()).unwrap();
    let apply = kubectl(node, &["apply", "-f", &path.display().to_string()]);
    assert!(apply.status.success(), "apply: {}", stderr(&apply));
    wait_available(node);
}

fn wait_available(node: &Node) {
    let available = common::wait_available(node, DEPLOYMENT);
    assert!(
        available.status.success(),
        "the Deployment is not Available: {}\n{}",
        stderr(&available),
        stdout(&kubectl(node, &["describe", "pods"]))
    );
}

/// Each pod of the Deployment: name -> (container id, restart count, ready).
fn pods(node: &Node) -> BTreeMap<String, (String, u64, bool)> {
    let out = kubectl(
        node,
        &[
            "get",
            "pods",
            "-l",
            &format!("app={DEPLOYMENT}"),
            "-o",
            "json",
        ],
    );
    assert!(out.status.success(), "get pods: {}", stderr(&out));
    let list: Value = serde_json::from_slice(&out.stdout).unwrap();
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|pod| {
            let status = &pod["status"]["containerStatuses"][0];
            let id = status["containerID"].as_str().unwrap_or_default();
            (
                pod["metadata"]["name"].as_str().unwrap().to_owned(),
                (
                    id.trim_start_matches("containerd://").to_owned(),
                    status["restartCount"].as_u64().unwrap_or(u64::MAX),
                    status["ready"].as_bool().unwrap_or(false),
                ),
            )
        })
        .collect()
}

/// The running containers runc knows in the CRI namespace: id -> init pid.
fn running(node: &Node) -> BTreeMap<String, u32> {
    node.runc_list(CRI_NAMESPACE)
        .into_iter()
        .filter(|(_, status, _)| status == "running")
        .map(|(id, _, pid)| (id, pid))
        .collect()
}

/// The node's ports (its own and the fixed Kubernetes ones) that still accept connections.
fn listening(node: &Node) -> Vec<u16> {
    let p = node.ports;
    let fixed = [10248, 10249, 10250, 10256, 10257, 10259];
    [p.api, p.k0x_api, p.etcd_client, p.etcd_peer]
        .into_iter()
        .chain(fixed)
        .filter(|port| std::net::TcpStream::connect(("127.0.0.1", *port)).is_ok())
        .collect()
}

fn alive(pid: u32) -> bool {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), None).is_ok()
}

/// The cgroup directories of `pid` (below the hierarchy mounts, as this host shows them).
fn cgroup_dirs(pid: u32) -> Vec<PathBuf> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
    let mut dirs = Vec::new();
    for line in text.lines() {
        let mut fields = line.splitn(3, ':');
        let (_, controllers, path) = (fields.next(), fields.next(), fields.next());
        let (Some(controllers), Some(path)) = (controllers, path) else {
            continue;
        };
        let relative = path.trim_start_matches('/');
        if relative.is_empty() || controllers.is_empty() {
            continue;
        }
        let controller = controllers.trim_start_matches("name=");
        let dir = Path::new("/sys/fs/cgroup").join(controller).join(relative);
        if dir.is_dir() {
            dirs.push(dir);
        }
    }
    dirs
}

fn mounts_below(dir: &Path) -> Vec<String> {
    let prefix = dir.to_string_lossy().into_owned();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|line| line.split(' ').nth(4).map(str::to_owned))
        .filter(|point| point.starts_with(&prefix))
        .collect()
}

/// The host ends of the pod veths on the bridge.
fn bridge_ports() -> Vec<String> {
    let dir = Path::new("/sys/class/net")
        .join(k0x_node::cni::BRIDGE_NAME)
        .join("brif");
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// The rules and chains of ours in `iptables-save`: KUBE-* (the kubelet's) and those the CNI
/// plugins made for k0x's network.
fn our_iptables() -> Vec<String> {
    let network = format!("name: \\\"{}\\\"", k0x_node::cni::NETWORK_NAME);
    ["iptables-save", "ip6tables-save"]
        .into_iter()
        .filter_map(|program| Command::new(program).output().ok())
        .flat_map(|out| {
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .filter(|l| l.contains("KUBE-") || l.contains(&network))
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .collect()
}

/// After a start: every component ready, the node Ready, and the same pods running the same
/// containers (same ids and init pids, restart counts unchanged).
fn assert_adopted(
    node: &mut Node,
    before: &BTreeMap<String, (String, u64, bool)>,
    ids: &[&String],
    init_pids: &[u32],
) {
    node.wait_ready(NODE_COMPONENTS);
    wait_node_ready(node);
    wait_available(node);
    let settled = common::wait_until(|| {
        let now = pods(node);
        now.len() == 2 && now.values().all(|(_, _, ready)| *ready)
    });
    assert!(
        settled,
        "pods after the restart: {:?}\n{}",
        pods(node),
        stdout(&kubectl(node, &["describe", "pods"]))
    );
    let after = pods(node);
    eprintln!("pods after the restart {after:?}");
    assert_eq!(
        after.keys().collect::<Vec<_>>(),
        before.keys().collect::<Vec<_>>(),
        "the pods were replaced"
    );
    for (pod, (id, restarts, _)) in before {
        let (id_after, restarts_after, _) = &after[pod];
        assert_eq!(id_after, id, "{pod} got a new container");
        assert_eq!(restarts_after, restarts, "{pod}'s restart count changed");
    }
    let again = running(node);
    for (id, pid) in ids.iter().zip(init_pids) {
        assert_eq!(
            again.get(*id),
            Some(pid),
            "{id} after the restart: {again:?}"
        );
    }
}

#[test]
fn restarts_keep_workloads_running_and_reset_ends_them() {
    let test = "restarts_keep_workloads_running_and_reset_ends_them";
    let Some(mut node) = Node::new(test) else {
        return;
    };
    let Some(tools) = k0x_testkit::require_binaries(test, &["busybox"]) else {
        return;
    };
    if !node.stage_kubernetes(test, env!("CARGO_TARGET_TMPDIR").as_ref()) {
        return;
    }
    relax_eviction(&node);
    let images = node.layout().images();
    std::fs::create_dir_all(&images).unwrap();
    k0x_testkit::image::busybox_image(&tools[0], IMAGE, &images.join("busybox.tar")).unwrap();

    node.start(&["--enable-worker"]);
    node.wait_ready(NODE_COMPONENTS);
    wait_node_ready(&node);
    run_deployment(&node);
    let before = pods(&node);
    assert_eq!(before.len(), 2, "{before:?}");
    let containers = running(&node);
    for (pod, (id, _, _)) in &before {
        assert!(
            containers.contains_key(id),
            "{pod}'s container {id} not running in runc: {containers:?}"
        );
    }
    let ids: Vec<&String> = before.values().map(|(id, _, _)| id).collect();
    let init_pids: Vec<u32> = ids.iter().map(|id| containers[*id]).collect();
    let cgroups: Vec<PathBuf> = init_pids.iter().flat_map(|pid| cgroup_dirs(*pid)).collect();
    assert!(!cgroups.is_empty(), "no cgroup for {init_pids:?}");
    let veths = bridge_ports();
    eprintln!("pods {before:?}; runc {containers:?}; veths {veths:?}");

    // SIGTERM: every component stops, the workloads stay.
    let exit = node.stop(Signal::SIGTERM);
    assert!(exit.success(), "k0x exited {exit}:\n{}", node.log());
    let left = node.leftovers();
    assert!(
        left.marked.is_empty() && left.offspring.is_empty(),
        "a component outlived the stop: {left:?}"
    );
    assert!(!left.shims.is_empty(), "the shims did not outlive the stop");
    let down = running(&node);
    eprintln!("while k0x is down: runc {down:?}; shims {:?}", left.shims);
    for (id, pid) in ids.iter().zip(&init_pids) {
        assert_eq!(down.get(*id), Some(pid), "{id} while k0x is down: {down:?}");
        assert!(alive(*pid), "{id}'s init {pid} died");
    }
    let status = node.k0x().arg("status").output().unwrap();
    assert!(!status.status.success(), "k0x still answers after SIGTERM");

    // The next start adopts them.
    node.start(&["--enable-worker"]);
    assert_adopted(&mut node, &before, &ids, &init_pids);
    assert!(
        node.log().contains("kept the running containers"),
        "the start did not say it kept the containers:\n{}",
        node.log()
    );

    // SIGKILL: the components die with k0x (parent-death signal), the workloads stay, and the
    // next start ends only component leftovers.
    let killed = node.stop(Signal::SIGKILL);
    assert!(!killed.success());
    let components_gone = common::wait_until(|| {
        let left = node.leftovers();
        left.marked.is_empty() && left.offspring.is_empty()
    });
    assert!(
        components_gone,
        "components outlived SIGKILL: {:?}",
        node.leftovers()
    );
    // A dying component's environment is gone before its sockets are: wait for the ports too,
    // or the next start's host check finds them in use.
    assert!(
        common::wait_until(|| listening(&node).is_empty()),
        "ports still served after SIGKILL: {:?}",
        listening(&node)
    );
    let down = running(&node);
    for (id, pid) in ids.iter().zip(&init_pids) {
        assert_eq!(down.get(*id), Some(pid), "{id} after SIGKILL: {down:?}");
    }
    node.start(&["--enable-worker"]);
    assert_adopted(&mut node, &before, &ids, &init_pids);

    // Reset ends everything.
    let exit = node.stop(Signal::SIGTERM);
    assert!(exit.success(), "k0x exited {exit}:\n{}", node.log());
    let reset = node.reset();
    eprintln!("reset:\n{}", stdout(&reset));
    assert!(
        reset.status.success(),
        "reset: {}{}",
        stdout(&reset),
        stderr(&reset)
    );
    assert_eq!(node.marked_processes(), Vec::<u32>::new());
    assert!(
        common::wait_until(|| init_pids.iter().all(|pid| !alive(*pid))),
        "a container outlived the reset: {init_pids:?}"
    );
    assert_eq!(
        running(&node),
        BTreeMap::new(),
        "runc still knows containers"
    );
    assert_eq!(mounts_below(&node.data), Vec::<String>::new());
    assert_eq!(mounts_below(&node.run), Vec::<String>::new());
    let cgroups_left: Vec<&PathBuf> = cgroups.iter().filter(|dir| dir.exists()).collect();
    assert!(cgroups_left.is_empty(), "cgroups left: {cgroups_left:?}");
    assert_eq!(our_iptables(), Vec::<String>::new(), "iptables left");
    assert!(
        !Path::new("/sys/class/net")
            .join(k0x_node::cni::BRIDGE_NAME)
            .exists(),
        "the bridge outlived the reset"
    );
    for veth in &veths {
        assert!(
            !Path::new("/sys/class/net").join(veth).exists(),
            "veth {veth} outlived the reset"
        );
    }
}
