//! End to end, by default: `k0x server --enable-worker`, started with the host's IP forwarding
//! off as on a fresh machine, with the components built from source
//! (see the harness: `K0X_NODE_COMPONENTS_DIR`, by default `target/components/<arch>`) and k0x's own
//! pause program. The node must become Ready with the kubelet's version, take ordinary pods (no
//! control-plane taint), import a busybox archive from `<data-dir>/images/` (a broken archive
//! beside it is reported and skipped), run a Deployment of two replicas to Available, and answer
//! `kubectl logs` and `kubectl exec` (the apiserver's calls to the kubelet), serve a ClusterIP
//! Service that another pod reaches by name (kube-proxy, the CoreDNS system stack), and answer
//! `kubectl top nodes` (the metrics-server stack). A user made with `k0x user create` is
//! Forbidden until their group is bound to a role. kill -9 of the apiserver, the kubelet and
//! containerd each ends with the component back and the Deployment Available; a frozen
//! (SIGSTOP) apiserver is shown degraded, then restarted. Without the components the test is
//! skipped, and fails in strict mode.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::{NODE_COMPONENTS, Node, kubectl, relax_eviction, stderr, stdout, wait_node_ready};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

const KUBE_VERSION: &str = "v1.34.4";
const IMAGE: &str = "k0x.test/busybox:e2e";
const DEPLOYMENT: &str = "k0x-e2e-busybox";
const MESSAGE: &str = "hello from a k0x pod";
/// The host's forwarding switch, off on a fresh machine.
const IP_FORWARD: &str = "/proc/sys/net/ipv4/ip_forward";
/// Where the Deployment's pods serve MESSAGE (busybox httpd) and its Service listens.
const HTTP_PORT: u16 = 8080;
/// The pod that calls the Service from elsewhere.
const CLIENT: &str = "k0x-e2e-client";

/// Deletes the Deployment and waits for its pods (so the CNI plugins remove their network), then
/// the bridge they created.
struct WorkloadGuard<'a>(&'a Node);

impl Drop for WorkloadGuard<'_> {
    fn drop(&mut self) {
        let node = self.0;
        for kind in ["deployment", "service"] {
            let _ = kubectl(node, &["delete", kind, DEPLOYMENT, "--ignore-not-found"]);
        }
        let _ = kubectl(
            node,
            &["delete", "pod", CLIENT, "--ignore-not-found", "--now"],
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

/// The busybox image and a broken archive in `<data-dir>/images/`, imported at worker start.
fn drop_archives(node: &Node, busybox: &std::path::Path) {
    let images = node.layout().images();
    std::fs::create_dir_all(&images).unwrap();
    k0x_testkit::image::busybox_image(busybox, IMAGE, &images.join("busybox.tar")).unwrap();
    std::fs::write(images.join("broken.tar"), "not an image").unwrap();
}

/// An archive dropped into `<data-dir>/images/` while the node runs is imported.
fn archive_added_later_is_imported(node: &Node, busybox: &std::path::Path) {
    let archive = node.layout().images().join("later.tar");
    let partial = archive.with_extension("part");
    k0x_testkit::image::busybox_image(busybox, "k0x.test/busybox:later", &partial).unwrap();
    std::fs::rename(&partial, &archive).unwrap();
    let imported = common::wait_until(|| {
        node.log()
            .lines()
            .any(|l| l.contains("image archive imported") && l.contains("later.tar"))
    });
    assert!(imported, "later.tar was not imported:\n{}", node.log());
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
                        "command": ["/bin/sh", "-c", format!(
                            "echo {MESSAGE}; mkdir -p /tmp/www; echo {MESSAGE} > /tmp/www/index.html; \
                             exec httpd -f -p {HTTP_PORT} -h /tmp/www"
                        )],
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
    let available = common::wait_available(node, DEPLOYMENT);
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

/// A ClusterIP Service in front of the Deployment answers a pod that is not part of it, by
/// name (CoreDNS) and through the Service IP (kube-proxy); the API's own name resolves to the
/// first service IP.
fn service_and_dns_answer(node: &Node) {
    let expose = kubectl(
        node,
        &[
            "expose",
            "deployment",
            DEPLOYMENT,
            &format!("--port={HTTP_PORT}"),
        ],
    );
    assert!(expose.status.success(), "expose: {}", stderr(&expose));
    let client = kubectl(
        node,
        &[
            "run",
            CLIENT,
            &format!("--image={IMAGE}"),
            "--image-pull-policy=Never",
            "--restart=Never",
            "--command",
            "--",
            "sleep",
            "3600",
        ],
    );
    assert!(client.status.success(), "run: {}", stderr(&client));
    let ready = kubectl(
        node,
        &[
            "wait",
            "--for=condition=Ready",
            &format!("pod/{CLIENT}"),
            "--timeout=120s",
        ],
    );
    assert!(
        ready.status.success(),
        "the client pod never became Ready: {}",
        stderr(&ready)
    );
    let in_client = |args: &[&str]| {
        let mut all = vec!["exec", CLIENT, "--"];
        all.extend(args);
        kubectl(node, &all)
    };
    // The image's static busybox cannot resolve names itself (glibc's resolver needs shared
    // libraries), but its nslookup asks the pod's name server directly: the name resolves
    // through CoreDNS, then the Service IP answers through kube-proxy's rules.
    let name = format!("{DEPLOYMENT}.default.svc.cluster.local");
    let cluster_ip = stdout(&kubectl(
        node,
        &[
            "get",
            "service",
            DEPLOYMENT,
            "-o",
            "jsonpath={.spec.clusterIP}",
        ],
    ));
    let resolved = common::wait_until(|| {
        let lookup = stdout(&in_client(&["nslookup", &name]));
        let wanted = format!("Address: {cluster_ip}");
        lookup.lines().any(|line| line.trim() == wanted)
    });
    let lookup = in_client(&["nslookup", &name]);
    assert!(
        resolved,
        "{name} did not resolve to {cluster_ip}: {}{}\n{}",
        stdout(&lookup),
        stderr(&lookup),
        stdout(&kubectl(node, &["get", "pods,svc", "-A", "-o", "wide"]))
    );
    // wget crashes the same way even on an address; nc takes it as it is.
    let request = format!("printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 3 {cluster_ip} {HTTP_PORT}");
    let answered =
        common::wait_until(|| stdout(&in_client(&["sh", "-c", &request])).contains(MESSAGE));
    let last = in_client(&["sh", "-c", &request]);
    assert!(
        answered,
        "the Service never answered at {cluster_ip}:{HTTP_PORT}: {}{}\n{}",
        stdout(&last),
        stderr(&last),
        stdout(&kubectl(node, &["get", "svc,endpointslices", "-o", "wide"]))
    );
    let lookup = in_client(&["nslookup", "kubernetes.default.svc.cluster.local"]);
    assert!(
        lookup.status.success() && stdout(&lookup).contains("10.96.0.1"),
        "nslookup: {}{}",
        stdout(&lookup),
        stderr(&lookup)
    );
}

/// `kubectl top nodes` answers: metrics-server scraped the kubelet and the aggregation layer
/// reaches metrics-server.
fn top_nodes_answers(node: &Node) {
    let answered = common::wait_until(|| {
        let top = kubectl(node, &["top", "nodes", "--no-headers"]);
        top.status.success() && stdout(&top).contains('%')
    });
    let last = kubectl(node, &["top", "nodes"]);
    assert!(
        answered,
        "kubectl top nodes: {}{}\n{}",
        stdout(&last),
        stderr(&last),
        stdout(&kubectl(node, &["get", "pods,apiservices", "-A"]))
    );
}

/// kill -9 of kube-apiserver, then the kubelet, then containerd: each comes back (a new pid,
/// ready) and the Deployment stays Available.
fn killed_components_come_back(node: &Node) {
    for name in ["kube-apiserver", "kubelet", "containerd"] {
        let status = node.status().expect("k0x answers status");
        let before = common::pid(&status, name);
        kill(Pid::from_raw(before as i32), Signal::SIGKILL).unwrap();
        let back = common::wait_until(|| {
            node.status().is_some_and(|s| {
                common::state(&s, name) == "ready"
                    && common::component(&s, name)["pid"].as_u64() != Some(u64::from(before))
            })
        });
        assert!(
            back,
            "{name} did not come back after kill -9:\n{}",
            node.log()
        );
        let available = common::wait_available(node, DEPLOYMENT);
        assert!(
            available.status.success(),
            "the Deployment is not Available after kill -9 of {name}: {}",
            stderr(&available)
        );
    }
}

/// How long the e2e node lets a component fail its probes before restarting it.
const FROZEN_RESTART: Duration = Duration::from_secs(30);

/// SIGSTOP of kube-apiserver: status says degraded while it is frozen (never ready), then k0x
/// restarts it (a new pid, ready) and the Deployment is Available again.
fn frozen_apiserver_is_degraded_then_restarted(node: &Node) {
    let name = "kube-apiserver";
    let before = common::pid(&node.status().expect("k0x answers status"), name);
    kill(Pid::from_raw(before as i32), Signal::SIGSTOP).unwrap();
    let degraded = common::wait_until(|| {
        node.status()
            .is_some_and(|s| common::state(&s, name) == "degraded")
    });
    assert!(
        degraded,
        "a frozen {name} is not shown degraded:\n{}",
        node.log()
    );
    let restarted = common::wait_until(|| {
        node.status().is_some_and(|s| {
            common::state(&s, name) == "ready"
                && common::component(&s, name)["pid"].as_u64() != Some(u64::from(before))
        })
    });
    assert!(
        restarted,
        "a frozen {name} was not restarted:\n{}",
        node.log()
    );
    let available = common::wait_available(node, DEPLOYMENT);
    assert!(
        available.status.success(),
        "the Deployment is not Available after {name} was frozen: {}",
        stderr(&available)
    );
}

/// A `k0x user create` user in group dev is Forbidden until dev is bound to `view` (which grants
/// namespaced reads such as pods, not nodes); then it lists pods in every namespace, still
/// cannot create one, and `kubectl auth whoami` shows its group. (tests/user_cli.rs reads the
/// certificate's CN and O with openssl.)
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
    let allowed = common::wait_until(|| as_demo(&["get", "pods", "-A"]).status.success());
    assert!(
        allowed,
        "demo still cannot list pods in every namespace after the binding"
    );
    let create = as_demo(&[
        "run",
        "demo-pod",
        &format!("--image={IMAGE}"),
        "--restart=Never",
    ]);
    assert!(
        !create.status.success() && stderr(&create).contains("Forbidden"),
        "view must not create pods: {}{}",
        stdout(&create),
        stderr(&create)
    );
    let whoami = as_demo(&["auth", "whoami", "-o", "jsonpath={.status.userInfo}"]);
    let user: serde_json::Value = serde_json::from_slice(&whoami.stdout)
        .unwrap_or_else(|e| panic!("auth whoami: {e}: {}", stderr(&whoami)));
    assert_eq!(user["username"], "demo", "{user}");
    assert!(
        user["groups"]
            .as_array()
            .is_some_and(|g| g.contains(&"dev".into())),
        "{user}"
    );
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
    // A frozen component is restarted after this long (the default is 5 minutes).
    node.edit_config(
        "restartUnhealthyAfterSeconds: 300\n",
        &format!(
            "restartUnhealthyAfterSeconds: {}\n",
            FROZEN_RESTART.as_secs()
        ),
    );
    drop_archives(&node, &tools[0]);
    // A fresh host forwards no packets; k0x must set it itself (what an earlier run left on
    // this one does not count).
    std::fs::write(IP_FORWARD, "0\n").unwrap();

    node.start(&["--enable-worker"]);
    node.wait_ready(NODE_COMPONENTS);
    wait_node_ready(&node);
    let log = node.log();
    assert!(
        log.contains("fixed sysctl:net.ipv4.ip_forward: 0 → 1"),
        "k0x did not turn on forwarding: {log}"
    );
    assert!(log.contains("pause image imported"), "{log}");
    // The user's archives are imported beside the kubelet.
    let reported = common::wait_until(|| {
        node.log()
            .lines()
            .any(|l| l.contains("image archive not imported") && l.contains("broken.tar"))
    });
    assert!(
        reported,
        "the broken archive must be reported: {}",
        node.log()
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

    archive_added_later_is_imported(&node, &tools[0]);

    let workload = WorkloadGuard(&node);
    run_deployment(&node);
    logs_and_exec_work(&node);
    service_and_dns_answer(&node);
    top_nodes_answers(&node);
    group_binding_grants_access(&node);
    killed_components_come_back(&node);
    frozen_apiserver_is_degraded_then_restarted(&node);

    drop(workload);
    let exit = node.stop(Signal::SIGTERM);
    assert!(exit.success(), "k0x exited {exit}:\n{}", node.log());
    // The system pods' containers outlive the stop (tests/restart.rs); no component may.
    let left = node.leftovers();
    assert!(
        left.marked.is_empty() && left.offspring.is_empty(),
        "component processes outlived the stop: {left:?}"
    );
}

/// The readiness timeouts of `spec.probes` hold with the real apiserver: one too short for it to
/// come up stops the start with a line naming the component and the timeout, and nothing runs on.
#[test]
fn a_too_short_apiserver_timeout_stops_the_start_with_the_component_named() {
    let test = "a_too_short_apiserver_timeout_stops_the_start";
    let Some(mut node) = Node::new(test) else {
        return;
    };
    if !node.stage_kubernetes(test, env!("CARGO_TARGET_TMPDIR").as_ref()) {
        return;
    }
    node.edit_config(
        "    timeoutSeconds: {}\n",
        "    timeoutSeconds:\n      kube-apiserver: 1\n",
    );
    let out = node.run_server(&[]);
    let text = stderr(&out);
    assert!(!out.status.success(), "k0x started anyway:\n{text}");
    let last = text
        .lines()
        .rfind(|l| !l.trim().is_empty())
        .unwrap_or_default();
    assert!(
        last.contains("component kube-apiserver did not start") && last.contains("within 1s"),
        "last line: {last}\n{text}"
    );
    assert_eq!(node.marked_processes(), Vec::<u32>::new());
}
