//! The harness of the multi-node tests and benchmarks: a [`ClusterNode`] is one k0x on one
//! testkit host (its own network, mount and UTS namespaces, /var/lib, /run, /etc and cgroup
//! subtree), with its default paths and the components built from source, the busybox image
//! among its archives; and the few kubectl steps the tests share.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Output, Stdio};
use std::time::{Duration, Instant};

use k0x_testkit::hosts::Host;

use super::{K0X, stderr, stdout};

/// How long a cluster may take for a step (a controller up, a node Ready, a pod Running) on a
/// loaded machine. Only a bound on waiting, never a measured result.
pub const PATIENCE: Duration = Duration::from_secs(300);

/// The image the test pods run, imported from each worker's `<data-dir>/images/`.
pub const IMAGE: &str = "k0x.test/busybox:cluster";
/// Where the server pods answer.
pub const HTTP_PORT: u16 = 8080;

/// One k0x on one test host, with the default data dir (`/var/lib/k0x` of the host).
pub struct ClusterNode {
    pub host: Host,
    pub child: Option<Child>,
}

impl ClusterNode {
    /// A node with every component staged, the busybox image among its archives, and a
    /// configuration whose kubelet puts pods below the host's cgroup.
    pub fn new(host: &Host, test: &str, busybox: &Path) -> Option<Self> {
        let node = Self {
            host: host.clone(),
            child: None,
        };
        let data = node.host.path("/var/lib/k0x");
        let bin = data.join("bin");
        if !super::stage_base(&bin, test)
            || !super::stage_kubernetes(&bin, test, Path::new(env!("CARGO_TARGET_TMPDIR")))
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
    pub fn write_config(&self) {
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

    pub fn log_path(&self) -> PathBuf {
        self.host.root().join("k0x.log")
    }

    /// Starts `k0x ARGS` on the host, its output appended to the host's log.
    pub fn start(&mut self, args: &[&str]) {
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .unwrap();
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
    pub fn run(&self, program: &str, args: &[&str]) -> Output {
        self.host.output(program, args)
    }

    pub fn kubectl(&self, args: &[&str]) -> Output {
        let mut all = vec!["kubectl"];
        all.extend(args);
        self.run(K0X, &all)
    }

    /// The last lines of the host's log, for failure messages.
    pub fn log_tail(&self) -> String {
        let log = fs::read_to_string(self.log_path()).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        format!(
            "--- {} ---\n{}",
            self.host.hostname,
            lines[lines.len().saturating_sub(40)..].join("\n")
        )
    }

    /// Writes `token` where only root reads it and returns its path on the host.
    pub fn token_file(&self, token: &str) -> &'static str {
        let path = self.host.path("/etc/k0x/join.token");
        fs::write(&path, token).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        "/etc/k0x/join.token"
    }
}

impl ClusterNode {
    /// SIGTERM to k0x, SIGKILL if it has not stopped within a minute.
    pub fn stop(&mut self) {
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
    }
}

impl Drop for ClusterNode {
    fn drop(&mut self) {
        self.stop();
        // Containers outlive a stop by design; reset ends them and cleans the host.
        let _ = self.run(K0X, &["reset"]);
    }
}

/// One node per host, or `None` when the test must be skipped (a failure in strict mode).
pub fn nodes_on(hosts: &[Host], test: &str, busybox: &Path) -> Option<Vec<ClusterNode>> {
    hosts
        .iter()
        .map(|host| ClusterNode::new(host, test, busybox))
        .collect()
}

/// Polls `check` until it gives a value, at most [`PATIENCE`].
pub fn wait_for<T>(mut check: impl FnMut() -> Option<T>) -> Option<T> {
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
pub fn ready_nodes(controller: &ClusterNode) -> Vec<String> {
    let jsonpath = "jsonpath={range .items[*]}{.metadata.name}={.status.conditions[?(@.type==\"Ready\")].status}{\"\\n\"}{end}";
    stdout(&controller.kubectl(&["get", "nodes", "-o", jsonpath]))
        .lines()
        .filter_map(|line| line.strip_suffix("=True"))
        .map(str::to_owned)
        .collect()
}

/// Waits until every node in `names` is Ready; panics with the nodes and logs otherwise.
pub fn wait_nodes_ready(controller: &ClusterNode, names: &[&str], logs: &[&ClusterNode]) {
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
pub fn worker_token(controller: &ClusterNode) -> String {
    wait_for(|| {
        let output = controller.run(K0X, &["token", "create", "--role", "worker"]);
        output.status.success().then(|| stdout(&output))
    })
    .unwrap_or_else(|| panic!("no token: {}", controller.log_tail()))
}

/// A pod on `node` serving its own name on [`HTTP_PORT`], labelled `app=NAME`.
pub fn server_pod(name: &str, node: &str) -> String {
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
pub fn apply(controller: &ClusterNode, manifest: &str) {
    let path = controller.host.path("/var/lib/k0x/manifest.json");
    fs::write(&path, manifest).unwrap();
    let applied = controller.kubectl(&["apply", "-f", "/var/lib/k0x/manifest.json"]);
    assert!(applied.status.success(), "apply: {}", stderr(&applied));
}

/// `jsonpath` of pod `name` once it is Running.
pub fn running_pod(controller: &ClusterNode, name: &str, jsonpath: &str) -> String {
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
pub fn http_from(controller: &ClusterNode, client: &str, address: &str) -> String {
    let request = format!("printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 3 {address} {HTTP_PORT}");
    stdout(&controller.kubectl(&["exec", client, "--", "sh", "-c", &request]))
}

/// The voting members `k0x etcd member-list` shows on `node`.
pub fn voters(node: &ClusterNode) -> usize {
    let output = node.run(K0X, &["etcd", "member-list", "-o", "json"]);
    let list: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap_or_default();
    list.as_array()
        .map_or(0, |l| l.iter().filter(|m| m["isLearner"] != true).count())
}

/// kill -9 of k0x itself; its components die with it (their parent-death signal).
pub fn kill_hard(node: &mut ClusterNode) {
    let mut child = node.child.take().expect("the node runs");
    child.kill().unwrap();
    child.wait().unwrap();
}

/// A 1-replica Deployment of the test image, `kubectl wait`ed to Available through `via`.
pub fn deployment_available(via: &ClusterNode, name: &str) -> bool {
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

/// A controller token from `controller` (retried while its join API comes up).
pub fn controller_token(controller: &ClusterNode) -> String {
    wait_for(|| {
        let output = controller.run(K0X, &["token", "create", "--role", "controller"]);
        output.status.success().then(|| stdout(&output))
    })
    .unwrap_or_else(|| panic!("no controller token: {}", controller.log_tail()))
}

/// Three controllers and a worker on `nodes` (in that order): the first starts the cluster, the
/// other two join at once (etcd takes one learner at a time, so one waits for the other's
/// promotion), the worker joins and is Ready, and its load balancer lists all three
/// apiservers.
pub fn three_controllers_and_a_worker(nodes: &mut [ClusterNode]) {
    let [first, second, third, worker] = nodes else {
        panic!("three controllers and a worker, not {} nodes", nodes.len())
    };
    first.start(&["server"]);
    let token = controller_token(first);
    for controller in [&mut *second, &mut *third] {
        let file = controller.token_file(&token);
        controller.start(&["server", "--token-file", file]);
    }
    let joined = wait_for(|| (voters(first) == 3).then_some(()));
    assert!(
        joined.is_some(),
        "three voters never formed:\n{}\n{}",
        second.log_tail(),
        third.log_tail()
    );
    let token = worker_token(first);
    let file = worker.token_file(&token);
    worker.start(&["worker", "--token-file", file]);
    let name = worker.host.hostname.clone();
    wait_nodes_ready(first, &[&name], &[first, worker]);
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
}
