//! Real multi-node clusters: every host a testkit host (its own network, mount and UTS
//! namespaces, /var/lib, /run, /etc and cgroup subtree), running k0x with its default paths and
//! the components built from source: Kubernetes, etcd, containerd, runc, flannel, CoreDNS.
//!
//! One cluster at a time, holding the machine-wide lock of the real-Kubernetes tests: each runs
//! several apiservers and kubelets on a machine that may have two cores.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Output, Stdio};
use std::time::{Duration, Instant};

use common::{K0X, stderr, stdout};
use k0x_testkit::hosts::{Host, Network};

/// How long a cluster may take for a step (a controller up, a node Ready, a pod Running) on a
/// loaded machine. Only a bound on waiting, never a measured result.
const PATIENCE: Duration = Duration::from_secs(300);

/// The image the test pods run, imported from each worker's `<data-dir>/images/`.
const IMAGE: &str = "k0x.test/busybox:cluster";
/// Where the server pods answer.
const HTTP_PORT: u16 = 8080;

/// One k0x on one test host, with the default data dir (`/var/lib/k0x` of the host).
struct ClusterNode {
    host: Host,
    child: Option<Child>,
}

impl ClusterNode {
    /// A node with every component staged, the busybox image among its archives, and a
    /// configuration whose kubelet puts pods below the host's cgroup.
    fn new(host: &Host, test: &str, busybox: &Path) -> Option<Self> {
        let node = Self {
            host: host.clone(),
            child: None,
        };
        let data = node.host.path("/var/lib/k0x");
        let bin = data.join("bin");
        if !common::stage_base(&bin, test)
            || !common::stage_kubernetes(&bin, test, Path::new(env!("CARGO_TARGET_TMPDIR")))
        {
            return None;
        }
        fs::set_permissions(&data, fs::Permissions::from_mode(0o700)).unwrap();
        let images = data.join("images");
        fs::create_dir_all(&images).unwrap();
        k0x_testkit::image::busybox_image(busybox, IMAGE, &images.join("busybox.tar")).unwrap();
        node.write_config();
        Some(node)
    }

    /// `k0x config create`, with a default worker profile: the host's cgroup as the kubelet's
    /// root, and eviction thresholds a test machine's disk meets.
    fn write_config(&self) {
        let default = self.run(K0X, &["config", "create"]);
        assert!(default.status.success(), "{}", stderr(&default));
        let profile = format!(
            "  workerProfiles:\n  - name: default\n    values:\n      cgroupRoot: {}\n      \
             evictionHard: {{\"nodefs.available\": \"1%\", \"imagefs.available\": \"1%\"}}\n",
            self.host.cgroup_root()
        );
        let text = stdout(&default).replace("  workerProfiles: []", profile.trim_end());
        let path = self.host.path("/etc/k0x/k0x.yaml");
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, text + "\n").unwrap();
    }

    fn log_path(&self) -> PathBuf {
        self.host.root().join("k0x.log")
    }

    /// Starts `k0x ARGS` on the host, its output in the host's log.
    fn start(&mut self, args: &[&str]) {
        let log = fs::File::create(self.log_path()).unwrap();
        let child = self
            .host
            .command(K0X)
            .args(args)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
    }

    /// Runs `program ARGS` on the host to completion.
    fn run(&self, program: &str, args: &[&str]) -> Output {
        self.host.output(program, args)
    }

    fn kubectl(&self, args: &[&str]) -> Output {
        let mut all = vec!["kubectl"];
        all.extend(args);
        self.run(K0X, &all)
    }

    /// The last lines of the host's log, for failure messages.
    fn log_tail(&self) -> String {
        let log = fs::read_to_string(self.log_path()).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        format!(
            "--- {} ---\n{}",
            self.host.hostname,
            lines[lines.len().saturating_sub(40)..].join("\n")
        )
    }

    /// Writes `token` where only root reads it and returns its path on the host.
    fn token_file(&self, token: &str) -> &'static str {
        let path = self.host.path("/etc/k0x/join.token");
        fs::write(&path, token).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        "/etc/k0x/join.token"
    }
}

impl Drop for ClusterNode {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let pid = nix::unistd::Pid::from_raw(child.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(60);
            while child.try_wait().unwrap().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(200));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        // Containers outlive a stop by design; reset ends them and cleans the host.
        let _ = self.run(K0X, &["reset"]);
    }
}

/// Polls `check` until it gives a value, at most [`PATIENCE`].
fn wait_for<T>(mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + PATIENCE;
    while Instant::now() < deadline {
        if let Some(value) = check() {
            return Some(value);
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    None
}

/// The node names whose Ready condition is True.
fn ready_nodes(controller: &ClusterNode) -> Vec<String> {
    let jsonpath = "jsonpath={range .items[*]}{.metadata.name}={.status.conditions[?(@.type==\"Ready\")].status}{\"\\n\"}{end}";
    stdout(&controller.kubectl(&["get", "nodes", "-o", jsonpath]))
        .lines()
        .filter_map(|line| line.strip_suffix("=True"))
        .map(str::to_owned)
        .collect()
}

/// Waits until every node in `names` is Ready; panics with the nodes and logs otherwise.
fn wait_nodes_ready(controller: &ClusterNode, names: &[&str], logs: &[&ClusterNode]) {
    let ready = wait_for(|| {
        let ready = ready_nodes(controller);
        names
            .iter()
            .all(|n| ready.iter().any(|r| r == n))
            .then_some(())
    });
    if ready.is_none() {
        let nodes = controller.kubectl(&["describe", "nodes"]);
        let tails: Vec<String> = logs.iter().map(|n| n.log_tail()).collect();
        panic!(
            "nodes {names:?} not all Ready: {}{}\n{}",
            stdout(&nodes),
            stderr(&nodes),
            tails.join("\n")
        );
    }
}

/// A worker token from the controller (retried while its join API comes up).
fn worker_token(controller: &ClusterNode) -> String {
    wait_for(|| {
        let output = controller.run(K0X, &["token", "create", "--role", "worker"]);
        output.status.success().then(|| stdout(&output))
    })
    .unwrap_or_else(|| panic!("no token: {}", controller.log_tail()))
}

/// A pod on `node` serving its own name on [`HTTP_PORT`], labelled `app=NAME`.
fn server_pod(name: &str, node: &str) -> String {
    serde_json::json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": { "name": name, "labels": { "app": name } },
        "spec": {
            "nodeName": node,
            "containers": [{
                "name": "busybox",
                "image": IMAGE,
                "imagePullPolicy": "Never",
                "command": ["sh", "-c", format!(
                    "mkdir -p /tmp/www && echo served-by-{name} > /tmp/www/index.html && \
                     echo {name} is up && exec httpd -f -p {HTTP_PORT} -h /tmp/www"
                )],
            }],
        },
    })
    .to_string()
}

/// Applies a JSON manifest through the controller.
fn apply(controller: &ClusterNode, manifest: &str) {
    let path = controller.host.path("/var/lib/k0x/manifest.json");
    fs::write(&path, manifest).unwrap();
    let applied = controller.kubectl(&["apply", "-f", "/var/lib/k0x/manifest.json"]);
    assert!(applied.status.success(), "apply: {}", stderr(&applied));
}

/// `jsonpath` of pod `name` once it is Running.
fn running_pod(controller: &ClusterNode, name: &str, jsonpath: &str) -> String {
    let path = format!("jsonpath={{.status.phase}} {jsonpath}");
    wait_for(|| {
        let out = stdout(&controller.kubectl(&["get", "pod", name, "-o", &path]));
        out.strip_prefix("Running ").map(str::to_owned)
    })
    .unwrap_or_else(|| {
        let pods = controller.kubectl(&["describe", "pod", name]);
        panic!("pod {name} never ran: {}", stdout(&pods))
    })
}

/// An HTTP request from pod `client` to `address`, the answer's body (empty on failure).
fn http_from(controller: &ClusterNode, client: &str, address: &str) -> String {
    let request = format!("printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 3 {address} {HTTP_PORT}");
    stdout(&controller.kubectl(&["exec", client, "--", "sh", "-c", &request]))
}

#[test]
fn one_controller_and_two_workers_run_pods_that_reach_each_other() {
    let test = "one_controller_and_two_workers_run_pods_that_reach_each_other";
    if !k0x_testkit::require_root(test) {
        return;
    }
    let Some(tools) = k0x_testkit::require_binaries(test, &["busybox", "ip", "nsenter", "unshare"])
    else {
        return;
    };
    let _fixed_ports = k0x_testkit::lock_fixed_ports();
    let network = Network::create(&["ctl-1", "wrk-1", "wrk-2"]).unwrap();
    let [ctl_host, w1_host, w2_host] = network.hosts() else {
        unreachable!()
    };
    let busybox = &tools[0];
    let Some(mut controller) = ClusterNode::new(ctl_host, test, busybox) else {
        return;
    };
    let mut workers = [
        ClusterNode::new(w1_host, test, busybox).unwrap(),
        ClusterNode::new(w2_host, test, busybox).unwrap(),
    ];
    controller.start(&["server", "--enable-worker"]);
    let token = worker_token(&controller);
    for worker in &mut workers {
        let file = worker.token_file(&token);
        worker.start(&["worker", "--token-file", file]);
    }
    let all = [&controller, &workers[0], &workers[1]];
    wait_nodes_ready(&controller, &["ctl-1", "wrk-1", "wrk-2"], &all);

    // A pod on each worker; pod A reaches pod B by its pod IP, across the vxlan.
    apply(&controller, &server_pod("pod-a", "wrk-1"));
    apply(&controller, &server_pod("pod-b", "wrk-2"));
    let a_ip = running_pod(&controller, "pod-a", "{.status.podIP}");
    let b_ip = running_pod(&controller, "pod-b", "{.status.podIP}");
    assert_ne!(
        a_ip.rsplit_once('.').map(|p| p.0),
        b_ip.rsplit_once('.').map(|p| p.0)
    );
    let by_ip = wait_for(|| {
        http_from(&controller, "pod-a", &b_ip)
            .contains("served-by-pod-b")
            .then_some(())
    });
    assert!(
        by_ip.is_some(),
        "pod-a cannot reach pod-b at {b_ip}: {:?}\n{}\n{}",
        http_from(&controller, "pod-a", &b_ip),
        workers[0].log_tail(),
        workers[1].log_tail()
    );

    // Through a Service name: CoreDNS answers with the ClusterIP, kube-proxy on wrk-1 sends it
    // to pod B on wrk-2.
    let expose = controller.kubectl(&["expose", "pod", "pod-b", "--name", "web", "--port", "8080"]);
    assert!(expose.status.success(), "expose: {}", stderr(&expose));
    let cluster_ip =
        stdout(&controller.kubectl(&["get", "service", "web", "-o", "jsonpath={.spec.clusterIP}"]));
    let name = "web.default.svc.cluster.local";
    let resolved = wait_for(|| {
        let lookup = stdout(&controller.kubectl(&["exec", "pod-a", "--", "nslookup", name]));
        lookup
            .lines()
            .any(|line| line.trim() == format!("Address: {cluster_ip}"))
            .then_some(())
    });
    assert!(resolved.is_some(), "{name} never resolved to {cluster_ip}");
    let by_service = wait_for(|| {
        http_from(&controller, "pod-a", &cluster_ip)
            .contains("served-by-pod-b")
            .then_some(())
    });
    assert!(
        by_service.is_some(),
        "the Service {cluster_ip} never answered from pod-a"
    );

    // kubectl logs reaches the kubelet of each worker (its serving certificate from the join).
    for pod in ["pod-a", "pod-b"] {
        let logs = controller.kubectl(&["logs", pod]);
        assert!(
            stdout(&logs).contains(&format!("{pod} is up")),
            "kubectl logs {pod}: {}{}",
            stdout(&logs),
            stderr(&logs)
        );
    }

    // flannel enforces no NetworkPolicy: a policy denying all ingress to pod B changes nothing,
    // as docs/networking.md says.
    let deny = serde_json::json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": { "name": "deny-pod-b" },
        "spec": { "podSelector": { "matchLabels": { "app": "pod-b" } }, "policyTypes": ["Ingress"] },
    });
    apply(&controller, &deny.to_string());
    std::thread::sleep(Duration::from_secs(5));
    assert!(
        http_from(&controller, "pod-a", &b_ip).contains("served-by-pod-b"),
        "the NetworkPolicy was enforced: docs/networking.md says it is not"
    );
    drop(workers);
    drop(controller);
    drop(network);
}

/// The voting members `k0x etcd member-list` shows on `node`.
fn voters(node: &ClusterNode) -> usize {
    let output = node.run(K0X, &["etcd", "member-list", "-o", "json"]);
    let list: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap_or_default();
    list.as_array()
        .map_or(0, |l| l.iter().filter(|m| m["isLearner"] != true).count())
}

/// kill -9 of k0x itself; its components die with it (their parent-death signal).
fn kill_hard(node: &mut ClusterNode) {
    let mut child = node.child.take().expect("the node runs");
    child.kill().unwrap();
    child.wait().unwrap();
}

/// A 1-replica Deployment of the test image, `kubectl wait`ed to Available through `via`.
fn deployment_available(via: &ClusterNode, name: &str) -> bool {
    let created = via.kubectl(&[
        "create",
        "deployment",
        name,
        "--image",
        IMAGE,
        "--",
        "sleep",
        "3600",
    ]);
    assert!(created.status.success(), "{}", stderr(&created));
    let patch = r#"{"spec":{"template":{"spec":{"containers":[{"name":"busybox","imagePullPolicy":"Never"}]}}}}"#;
    let patched = via.kubectl(&["patch", "deployment", name, "-p", patch]);
    assert!(patched.status.success(), "{}", stderr(&patched));
    let target = format!("deployment/{name}");
    via.kubectl(&[
        "wait",
        "--for=condition=Available",
        &target,
        "--timeout=300s",
    ])
    .status
    .success()
}

#[test]
fn three_controllers_keep_the_cluster_when_one_is_killed() {
    let test = "three_controllers_keep_the_cluster_when_one_is_killed";
    if !k0x_testkit::require_root(test) {
        return;
    }
    let Some(tools) = k0x_testkit::require_binaries(test, &["busybox", "ip", "nsenter", "unshare"])
    else {
        return;
    };
    let _fixed_ports = k0x_testkit::lock_fixed_ports();
    let network = Network::create(&["ctl-1", "ctl-2", "ctl-3", "wrk-1"]).unwrap();
    let busybox = &tools[0];
    let mut nodes: Vec<ClusterNode> = Vec::new();
    for host in network.hosts() {
        let Some(node) = ClusterNode::new(host, test, busybox) else {
            return;
        };
        nodes.push(node);
    }
    let [first, second, third, worker] = nodes.as_mut_slice() else {
        unreachable!()
    };
    first.start(&["server"]);
    let token = wait_for(|| {
        let output = first.run(K0X, &["token", "create", "--role", "controller"]);
        output.status.success().then(|| stdout(&output))
    })
    .unwrap_or_else(|| panic!("no controller token: {}", first.log_tail()));
    // One at a time: etcd takes one learner at a time.
    for (controller, voting) in [(&mut *second, 2), (&mut *third, 3)] {
        let file = controller.token_file(&token);
        controller.start(&["server", "--token-file", file]);
        let joined = wait_for(|| (voters(first) == voting).then_some(()));
        assert!(
            joined.is_some(),
            "{} never became a voter:\n{}",
            controller.host.hostname,
            controller.log_tail()
        );
    }
    let token = worker_token(first);
    let file = worker.token_file(&token);
    worker.start(&["worker", "--token-file", file]);
    wait_nodes_ready(first, &["wrk-1"], &[first, worker]);
    // The worker's balancer learns all three apiservers from the cluster.
    let learned = wait_for(|| {
        let log = fs::read_to_string(worker.log_path()).unwrap_or_default();
        log.lines()
            .any(|l| l.contains("apiservers now") && l.matches(":6443").count() == 3)
            .then_some(())
    });
    assert!(
        learned.is_some(),
        "the balancer never listed 3 apiservers: {}",
        worker.log_tail()
    );
    assert!(
        deployment_available(first, "before"),
        "the first Deployment never became Available"
    );
    let container = |via: &ClusterNode| {
        let jsonpath = "jsonpath={.items[0].status.containerStatuses[0].containerID}";
        wait_for(|| {
            let id = stdout(&via.kubectl(&["get", "pods", "-l", "app=before", "-o", jsonpath]));
            (!id.is_empty()).then_some(id)
        })
    };
    let pod_before = container(first).expect("the Deployment's pod has a container");

    kill_hard(first);
    // The others keep serving kubectl, the worker stays Ready, its pod keeps running, and a new
    // Deployment is scheduled.
    let served = wait_for(|| {
        second
            .kubectl(&["get", "nodes"])
            .status
            .success()
            .then_some(())
    });
    assert!(
        served.is_some(),
        "ctl-2 stopped serving: {}",
        second.log_tail()
    );
    std::thread::sleep(Duration::from_secs(20));
    assert!(
        ready_nodes(second).contains(&"wrk-1".to_owned()),
        "wrk-1 is no longer Ready: {}",
        worker.log_tail()
    );
    assert!(
        deployment_available(third, "after"),
        "a Deployment after the loss never became Available"
    );
    let pod_after = container(third).expect("the Deployment's pod is still listed");
    assert_eq!(pod_before, pod_after, "the running pod was replaced");

    // The killed controller comes back as the member it was.
    first.start(&["server"]);
    let back = wait_for(|| {
        (first.kubectl(&["get", "nodes"]).status.success() && voters(second) == 3).then_some(())
    });
    assert!(
        back.is_some(),
        "ctl-1 never came back: {}",
        first.log_tail()
    );
    drop(nodes);
    drop(network);
}
