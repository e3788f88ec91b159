//! End to end, by default: `k0x server --enable-worker` with the components built from source
//! (see the harness: `K0X_COMPONENTS_DIR`, by default `target/components/<arch>`) and k0x's own
//! pause program. The node must become Ready with the kubelet's version, take ordinary pods (no
//! control-plane taint), import a busybox archive from `<data-dir>/images/` (a broken archive
//! beside it is reported and skipped), run a Deployment of two replicas to Available, and answer
//! `kubectl logs` and `kubectl exec` (the apiserver's calls to the kubelet). A user made with
//! `k0x user create` is Forbidden until their group is bound to a role. Without the components
//! the test is skipped, and fails in strict mode.

mod common;

use std::process::{Command, Output, Stdio};

use common::{Node, stderr};
use nix::sys::signal::Signal;

const KUBE_VERSION: &str = "v1.34.4";
const IMAGE: &str = "k0x.test/busybox:e2e";
const DEPLOYMENT: &str = "k0x-e2e-busybox";
const MESSAGE: &str = "hello from a k0x pod";

fn kubectl(node: &Node, args: &[&str]) -> Output {
    node.k0x().arg("kubectl").args(args).output().unwrap()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Deletes the Deployment and waits for its pods (so the CNI plugins remove their network), then
/// the bridge they created.
struct WorkloadGuard<'a>(&'a Node);

impl Drop for WorkloadGuard<'_> {
    fn drop(&mut self) {
        let node = self.0;
        let _ = kubectl(
            node,
            &["delete", "deployment", DEPLOYMENT, "--ignore-not-found"],
        );
        let _ = kubectl(
            node,
            &[
                "wait",
                "--for=delete",
                "pod",
                "-l",
                &format!("app={DEPLOYMENT}"),
                "--timeout=90s",
            ],
        );
        let _ = Command::new("ip")
            .args(["link", "delete", k0x_node::cni::BRIDGE_NAME])
            .stderr(Stdio::null())
            .status();
    }
}

/// The test host's disk may be fuller than the kubelet's default eviction thresholds allow (it
/// would then taint the node with disk-pressure): this node only needs a little room.
fn relax_eviction(node: &Node) {
    node.edit_config(
        "  workerProfiles: []\n",
        "  workerProfiles:\n  - name: default\n    values:\n      evictionHard: \
         {\"nodefs.available\": \"1%\", \"imagefs.available\": \"1%\"}\n",
    );
}

/// The busybox image and a broken archive in `<data-dir>/images/`, imported at worker start.
fn drop_archives(node: &Node, busybox: &std::path::Path) {
    let images = node.layout().images();
    std::fs::create_dir_all(&images).unwrap();
    k0x_testkit::image::busybox_image(busybox, IMAGE, &images.join("busybox.tar")).unwrap();
    std::fs::write(images.join("broken.tar"), "not an image").unwrap();
}

fn wait_node_ready(node: &Node) {
    let ready = common::wait_until(|| {
        let jsonpath = "jsonpath={.items[*].status.conditions[?(@.type==\"Ready\")].status}";
        stdout(&kubectl(node, &["get", "nodes", "-o", jsonpath])) == "True"
    });
    assert!(
        ready,
        "the node never became Ready: {}\n{}",
        stdout(&kubectl(node, &["describe", "nodes"])),
        node.log()
    );
}

fn deployment_manifest() -> serde_json::Value {
    let labels = serde_json::json!({ "app": DEPLOYMENT });
    serde_json::json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": { "name": DEPLOYMENT, "namespace": "default" },
        "spec": {
            "replicas": 2,
            "selector": { "matchLabels": labels },
            "template": {
                "metadata": { "labels": labels },
                "spec": {
                    "containers": [{
                        "name": "busybox",
                        "image": IMAGE,
                        "imagePullPolicy": "Never",
                        "command": ["/bin/sh", "-c", format!("echo {MESSAGE}; sleep 3600")],
                    }],
                },
            },
        },
    })
}

fn run_deployment(node: &Node) {
    let path = node.root.join("deployment.json");
    std::fs::write(&path, deployment_manifest().to_string()).unwrap();
    let apply = kubectl(node, &["apply", "-f", &path.display().to_string()]);
    assert!(apply.status.success(), "apply: {}", stderr(&apply));
    let available = kubectl(
        node,
        &[
            "wait",
            "--for=condition=Available",
            &format!("deployment/{DEPLOYMENT}"),
            "--timeout=120s",
        ],
    );
    assert!(
        available.status.success(),
        "the Deployment never became Available: {}\n{}",
        stderr(&available),
        stdout(&kubectl(node, &["describe", "pods"]))
    );
    let ips = stdout(&kubectl(
        node,
        &[
            "get",
            "pods",
            "-l",
            &format!("app={DEPLOYMENT}"),
            "-o",
            "jsonpath={.items[*].status.podIP}",
        ],
    ));
    assert_eq!(
        ips.split(' ')
            .filter(|ip| ip.starts_with("10.244."))
            .count(),
        2,
        "pod IPs: {ips}"
    );
}

fn logs_and_exec_work(node: &Node) {
    let target = format!("deployment/{DEPLOYMENT}");
    let logs_ok =
        common::wait_until(|| stdout(&kubectl(node, &["logs", &target])).contains(MESSAGE));
    assert!(
        logs_ok,
        "kubectl logs: {}",
        stderr(&kubectl(node, &["logs", &target]))
    );
    let exec = kubectl(node, &["exec", &target, "--", "echo", "exec-ok"]);
    assert!(
        exec.status.success() && stdout(&exec) == "exec-ok",
        "kubectl exec: {}{}",
        stdout(&exec),
        stderr(&exec)
    );
}

/// A `k0x user create` user in group dev is Forbidden until dev is bound to `view` (which grants
/// namespaced reads such as pods, not nodes).
fn group_binding_grants_access(node: &Node) {
    let kubeconfig = node.root.join("demo.kubeconfig");
    let create = node
        .k0x()
        .args(["user", "create", "demo", "--groups", "dev", "--output"])
        .arg(&kubeconfig)
        .output()
        .unwrap();
    assert!(create.status.success(), "user create: {}", stderr(&create));
    let as_demo = |args: &[&str]| {
        Command::new(node.bin().join("kubectl"))
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .args(args)
            .output()
            .unwrap()
    };
    for args in [&["get", "nodes"][..], &["get", "pods", "-n", "default"][..]] {
        let denied = as_demo(args);
        assert!(
            !denied.status.success() && stderr(&denied).contains("Forbidden"),
            "demo must be Forbidden for {args:?}: {}{}",
            stdout(&denied),
            stderr(&denied)
        );
    }
    let bind = kubectl(
        node,
        &[
            "create",
            "clusterrolebinding",
            "dev-view",
            "--clusterrole=view",
            "--group=dev",
        ],
    );
    assert!(bind.status.success(), "bind: {}", stderr(&bind));
    let allowed =
        common::wait_until(|| as_demo(&["get", "pods", "-n", "default"]).status.success());
    assert!(allowed, "demo still Forbidden after the binding");
}

#[test]
fn node_becomes_ready_and_runs_a_deployment() {
    let test = "node_becomes_ready_and_runs_a_deployment";
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
    drop_archives(&node, &tools[0]);

    node.start(&["--enable-worker"]);
    node.wait_ready(&[
        "etcd",
        "kube-apiserver",
        "kube-scheduler",
        "kube-controller-manager",
        "containerd",
        "kubelet",
    ]);
    wait_node_ready(&node);
    let log = node.log();
    assert!(log.contains("pause image imported"), "{log}");
    assert!(
        log.lines()
            .any(|l| l.contains("image archive not imported") && l.contains("broken.tar")),
        "the broken archive must be reported: {log}"
    );
    let nodes = stdout(&kubectl(&node, &["get", "nodes"]));
    assert!(nodes.contains(KUBE_VERSION), "kubectl get nodes: {nodes}");
    // The node lifecycle controller lifts node.kubernetes.io/not-ready a moment after Ready;
    // no other taint may stay.
    let taints = || {
        stdout(&kubectl(
            &node,
            &["get", "nodes", "-o", "jsonpath={.items[*].spec.taints}"],
        ))
    };
    assert!(
        common::wait_until(|| taints().is_empty()),
        "a controller+worker takes ordinary pods, but the node has taints {}",
        taints()
    );

    let workload = WorkloadGuard(&node);
    run_deployment(&node);
    logs_and_exec_work(&node);
    group_binding_grants_access(&node);

    drop(workload);
    let exit = node.stop(Signal::SIGTERM);
    assert!(exit.success(), "k0x exited {exit}:\n{}", node.log());
    assert_eq!(node.marked_processes(), Vec::<u32>::new());
}
