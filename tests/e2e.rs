//! Opt-in end to end: the whole node with the real kube-* binaries. `K0X_E2E_BINS=DIR` names a
//! directory holding kube-apiserver, kube-scheduler, kube-controller-manager and kubelet (they
//! cannot be downloaded where k0x is built, so they are brought by whoever runs this); the
//! Debian etcd, containerd, runc, CNI plugins and kubectl are staged beside them. The node must
//! become Ready and a busybox pod (image imported from a local tarball, imagePullPolicy Never;
//! the sandbox image is a local busybox stand-in too) must reach Running and print to its log.
//! Without K0X_E2E_BINS the test says that it did not run and why, and passes: it is the one
//! test that does not run by default.

mod common;

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use common::{IMAGE, KUBE_COMPONENTS, Node, stderr};
use nix::sys::signal::Signal;

const PAUSE_IMAGE: &str = "k0x.test/pause:e2e";
const POD: &str = "k0x-e2e-busybox";
const POD_MESSAGE: &str = "hello from a k0x pod";

fn kubectl(node: &Node, args: &[&str]) -> Output {
    node.k0x().arg("kubectl").args(args).output().unwrap()
}

/// Deletes the pod (so the CNI plugins remove its network) and the bridge they created.
struct PodGuard<'a>(&'a Node);

impl Drop for PodGuard<'_> {
    fn drop(&mut self) {
        let _ = kubectl(
            self.0,
            &["delete", "pod", POD, "--ignore-not-found", "--timeout=60s"],
        );
        let _ = Command::new("ip")
            .args(["link", "delete", k0x_node::cni::BRIDGE_NAME])
            .stderr(Stdio::null())
            .status();
    }
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[test]
fn node_becomes_ready_and_runs_a_pod() {
    let Some(bins) = std::env::var_os("K0X_E2E_BINS").map(PathBuf::from) else {
        // Written past the test harness's capture so a plain `cargo test` shows it.
        let _ = writeln!(
            std::io::stderr(),
            "e2e: not run: K0X_E2E_BINS is not set (a directory with real kube-* binaries is needed)"
        );
        return;
    };
    let test = "node_becomes_ready_and_runs_a_pod";
    let Some(mut node) = Node::new(test) else {
        return;
    };
    let Some(tools) = k0x_testkit::require_binaries(test, &["ctr", "busybox"]) else {
        return;
    };
    for name in KUBE_COMPONENTS {
        let source = bins.join(name);
        assert!(
            source.is_file(),
            "K0X_E2E_BINS={}: {name} is missing there",
            bins.display()
        );
        std::fs::copy(&source, node.bin().join(name)).unwrap();
    }
    node.edit_config(
        "pause: registry.k8s.io/pause:3.10\n",
        &format!("pause: {PAUSE_IMAGE}\n"),
    );

    node.start(&["--enable-worker"]);
    node.wait_ready(&[
        "etcd",
        "kube-apiserver",
        "kube-scheduler",
        "kube-controller-manager",
        "containerd",
        "kubelet",
    ]);
    for (tag, cmd) in [
        (IMAGE, &["/bin/sh"][..]),
        (PAUSE_IMAGE, &["/bin/sleep", "2147483647"][..]),
    ] {
        let tar = node
            .root
            .join(format!("{}.tar", tag.replace(['/', ':'], "_")));
        k0x_testkit::image::busybox_image_with_cmd(&tools[1], tag, cmd, &tar).unwrap();
        let import = Command::new(&tools[0])
            .arg("--address")
            .arg(node.run.join("containerd/containerd.sock"))
            .args(["--namespace", "k8s.io", "images", "import"])
            .arg(&tar)
            .output()
            .unwrap();
        assert!(import.status.success(), "import {tag}: {}", stderr(&import));
    }

    let ready = common::wait_until(|| {
        let out = kubectl(
            &node,
            &[
                "get",
                "nodes",
                "-o",
                "jsonpath={.items[*].status.conditions[?(@.type==\"Ready\")].status}",
            ],
        );
        stdout(&out) == "True"
    });
    assert!(
        ready,
        "the node never became Ready: {}\n{}",
        stdout(&kubectl(&node, &["get", "nodes", "-o", "wide"])),
        node.log()
    );

    let pods = PodGuard(&node);
    let manifest = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": { "name": POD, "namespace": "default" },
        "spec": {
            "containers": [{
                "name": "busybox",
                "image": IMAGE,
                "imagePullPolicy": "Never",
                "command": ["/bin/sh", "-c", format!("echo {POD_MESSAGE}; sleep 3600")],
            }],
        },
    });
    let manifest_path = node.root.join("pod.json");
    std::fs::write(&manifest_path, manifest.to_string()).unwrap();
    let apply = kubectl(
        &node,
        &["apply", "-f", &manifest_path.display().to_string()],
    );
    assert!(apply.status.success(), "apply: {}", stderr(&apply));
    let running = common::wait_until(|| {
        let phase = kubectl(
            &node,
            &["get", "pod", POD, "-o", "jsonpath={.status.phase}"],
        );
        stdout(&phase) == "Running"
    });
    assert!(
        running,
        "the pod never ran: {}",
        stdout(&kubectl(&node, &["describe", "pod", POD]))
    );
    let ip = stdout(&kubectl(
        &node,
        &["get", "pod", POD, "-o", "jsonpath={.status.podIP}"],
    ));
    assert!(
        ip.starts_with("10.244."),
        "pod IP {ip} outside 10.244.0.0/16"
    );
    let logs_ok =
        common::wait_until(|| stdout(&kubectl(&node, &["logs", POD])).contains(POD_MESSAGE));
    assert!(logs_ok, "the pod did not print its message");

    drop(pods);
    let exit = node.stop(Signal::SIGTERM);
    assert!(exit.success(), "k0x exited {exit}:\n{}", node.log());
    assert_eq!(node.marked_processes(), Vec::<u32>::new());
}
