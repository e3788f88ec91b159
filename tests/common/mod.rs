//! The harness of the `k0x server` integration tests: a scratch node (data dir, run dir, a config
//! on free ports, the component binaries staged in `<data-dir>/bin` the way the payload puts them
//! there: the ones built from source (`K0X_COMPONENTS_DIR`, by default the workspace's
//! `target/components/<arch>`) where present, else the host's packages), the built k0x binary run as a process, its status read with
//! `k0x status -o json`, and a guard that always ends the server, every process it marked and
//! every mount below the scratch dir, also when a test fails half-way. A stop of k0x keeps its
//! workloads (container shims and containers) running; the guard ends those with `k0x reset`
//! and only reports component processes left behind.
//! Each test binary uses a subset.
#![allow(dead_code)]

pub mod cluster;

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use k0x_config::{DataDir, pki_names};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;

/// The k0x binary under test.
pub const K0X: &str = env!("CARGO_BIN_EXE_k0x");

/// Binaries staged into `<data-dir>/bin` by every node (built components, else host packages).
pub const STAGED_BINARIES: &[&str] = &[
    "etcd",
    "containerd",
    "containerd-shim-runc-v2",
    "runc",
    "kubectl",
];
/// CNI plugins staged next to them, taken from the directory holding `host-local` (iproute2's
/// `bridge` tool would shadow the plugin on PATH).
pub const CNI_PLUGINS: &[&str] = &["bridge", "host-local", "loopback", "portmap"];

/// The image tests build from busybox-static and import (never pulled).
pub const IMAGE: &str = "k0x.test/busybox:latest";
/// The containerd namespace tests use.
pub const CTR_NAMESPACE: &str = "k0x-test";

/// Bounds a hung wait; nothing asserts on how long anything took.
pub const LIMIT: Duration = Duration::from_secs(120);

/// The components only the build from source provides, staged by [`Node::stage_kubernetes`].
pub const KUBE_COMPONENTS: &[&str] = &[
    "kube-apiserver",
    "kube-scheduler",
    "kube-controller-manager",
    "kubelet",
    "kube-proxy",
];

/// The ports this node listens on, chosen free so concurrent tests never clash.
#[derive(Debug, Clone, Copy)]
pub struct Ports {
    pub api: u16,
    pub k0x_api: u16,
    pub etcd_client: u16,
    pub etcd_peer: u16,
}

impl Ports {
    fn pick() -> Self {
        Self {
            api: free_port(),
            k0x_api: free_port(),
            etcd_client: free_port(),
            etcd_peer: free_port(),
        }
    }
}

pub use k0x_testkit::free_port;

/// A scratch node; see the module docs. Dropping it cleans up everything.
pub struct Node {
    pub root: PathBuf,
    pub data: PathBuf,
    pub run: PathBuf,
    pub config: PathBuf,
    pub ports: Ports,
    server: Option<Child>,
    /// Held for the node's life: every `k0x server` checks that the fixed Kubernetes ports are
    /// free (also when its kube components are missing), and a real node listens on them.
    _fixed_ports: k0x_testkit::FixedPortsLock,
    /// Dropped last: the directory goes only after processes and mounts are gone.
    _tmp: tempfile::TempDir,
}

impl Node {
    /// A node with the host binaries staged, or `None` when the test must be skipped (not root,
    /// or a package missing; a failure in strict mode).
    pub fn new(test: &str) -> Option<Self> {
        if !k0x_testkit::require_root(test) {
            return None;
        }
        k0x_testkit::require_binaries(test, &["etcdctl"])?;
        let fixed_ports = k0x_testkit::lock_fixed_ports();
        let tmp = tempfile::Builder::new()
            .prefix("k0x-server-")
            .tempdir()
            .unwrap();
        let root = tmp.path().to_path_buf();
        let data = root.join("data");
        if !stage_base(&data.join("bin"), test) {
            return None;
        }
        let node = Self {
            data,
            run: root.join("run"),
            config: root.join("k0x.yaml"),
            ports: Ports::pick(),
            root,
            server: None,
            _fixed_ports: fixed_ports,
            _tmp: tmp,
        };
        node.write_config();
        Some(node)
    }

    /// [`stage_kubernetes`] into this node's bin dir.
    pub fn stage_kubernetes(&mut self, test: &str, target_tmp: &Path) -> bool {
        stage_kubernetes(&self.bin(), test, target_tmp)
    }

    /// The default configuration from `k0x config create`, moved to this node's ports.
    fn write_config(&self) {
        let default = Command::new(K0X)
            .args(["config", "create"])
            .output()
            .unwrap();
        assert!(default.status.success(), "k0x config create failed");
        let text = String::from_utf8(default.stdout).unwrap();
        let p = self.ports;
        let text = replace_once(&text, "    port: 6443\n", &format!("    port: {}\n", p.api));
        let text = replace_once(
            &text,
            "k0xApiPort: 9443\n",
            &format!("k0xApiPort: {}\n", p.k0x_api),
        );
        let text = replace_once(
            &text,
            "clientPort: 2379\n",
            &format!("clientPort: {}\n", p.etcd_client),
        );
        let text = replace_once(
            &text,
            "peerPort: 2380\n",
            &format!("peerPort: {}\n", p.etcd_peer),
        );
        fs::write(&self.config, text).unwrap();
    }

    /// Replaces `from` (which must occur exactly once) in the config file.
    pub fn edit_config(&self, from: &str, to: &str) {
        let text = fs::read_to_string(&self.config).unwrap();
        fs::write(&self.config, replace_once(&text, from, to)).unwrap();
    }

    /// The data dir through the layout type that names every path.
    pub fn layout(&self) -> DataDir {
        DataDir::new(&self.data)
    }

    pub fn bin(&self) -> PathBuf {
        self.data.join("bin")
    }

    pub fn log_path(&self) -> PathBuf {
        self.root.join("server.log")
    }

    /// Everything the server processes wrote (all starts, appended).
    pub fn log(&self) -> String {
        fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// A k0x command with this node's global flags.
    pub fn k0x(&self) -> Command {
        let mut command = Command::new(K0X);
        command
            .arg("--data-dir")
            .arg(&self.data)
            .arg("--run-dir")
            .arg(&self.run)
            .arg("--config")
            .arg(&self.config)
            .env_remove("K0X_LOG");
        command
    }

    /// Starts `k0x server <args>` in the background, its output appended to the log.
    pub fn start(&mut self, args: &[&str]) {
        self.start_with_env(args, &[]);
    }

    pub fn start_with_env(&mut self, args: &[&str], env: &[(&str, &OsStr)]) {
        assert!(self.server.is_none(), "server already running");
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .unwrap();
        let child = self
            .k0x()
            .args(["--log-format", "json", "server"])
            .args(args)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .process_group(0)
            .spawn()
            .unwrap();
        self.server = Some(child);
    }

    /// The running server's pid.
    pub fn server_pid(&self) -> u32 {
        self.server.as_ref().expect("server not started").id()
    }

    /// `k0x server <args>` run to completion (for commands that must fail at once).
    pub fn run_server(&self, args: &[&str]) -> Output {
        self.k0x()
            .arg("server")
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    /// `k0x status -o json`, parsed; `None` while no server answers.
    pub fn status(&self) -> Option<Value> {
        let out = self.k0x().args(["status", "-o", "json"]).output().unwrap();
        out.status
            .success()
            .then(|| serde_json::from_slice(&out.stdout).expect("status is JSON"))
    }

    /// Polls the status until `ready` holds for it; panics (with the log) when the server exits
    /// or the limit passes.
    pub fn wait_status(&mut self, what: &str, ready: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + LIMIT;
        let mut last = None;
        while Instant::now() < deadline {
            if let Some(server) = self.server.as_mut()
                && let Ok(Some(exit)) = server.try_wait()
            {
                self.server = None;
                panic!(
                    "k0x server exited ({exit}) while waiting for {what}:\n{}",
                    self.log()
                );
            }
            if let Some(status) = self.status() {
                if ready(&status) {
                    return status;
                }
                last = Some(status);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "timed out waiting for {what}; last status: {last:#?}\nlog:\n{}",
            self.log()
        );
    }

    /// Waits until every component in `names` is ready.
    pub fn wait_ready(&mut self, names: &[&str]) -> Value {
        self.wait_status(&format!("{names:?} ready"), |s| {
            names.iter().all(|n| state(s, n) == "ready")
        })
    }

    /// Sends `signal` to the server and waits for it to exit.
    pub fn stop(&mut self, signal: Signal) -> ExitStatus {
        let mut server = self.server.take().expect("server not started");
        kill(Pid::from_raw(server.id() as i32), signal).unwrap();
        let deadline = Instant::now() + LIMIT;
        while Instant::now() < deadline {
            if let Some(exit) = server.try_wait().unwrap() {
                return exit;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = server.kill();
        let _ = server.wait();
        panic!(
            "k0x server ignored {signal} and was killed:\n{}",
            self.log()
        );
    }

    /// Live processes carrying this node's marker (`K0X_MANAGED=<data dir>`).
    pub fn marked_processes(&self) -> Vec<u32> {
        marked_processes(&self.data)
    }

    /// This node's processes as k0x sorts them: component leftovers and workloads (shims and
    /// what runs below them), by the supervisor's one rule.
    pub fn leftovers(&self) -> k0x_supervisor::Leftovers {
        let ours = k0x_supervisor::Ownership::with_marker_value(self.data.as_os_str());
        k0x_supervisor::Leftovers::find(&k0x_supervisor::ProcFs, &ours).unwrap()
    }

    /// `k0x reset` with host files looked for below a scratch root (never the test host's /etc).
    pub fn reset(&self) -> Output {
        let scratch_root = self.root.join("reset-root");
        fs::create_dir_all(&scratch_root).unwrap();
        self.k0x()
            .arg("reset")
            .arg("--root")
            .arg(&scratch_root)
            .output()
            .unwrap()
    }

    /// The containers runc knows in containerd namespace `namespace`, as (id, status, pid), read
    /// from the node's runc state: works while k0x and containerd are stopped.
    pub fn runc_list(&self, namespace: &str) -> Vec<(String, String, u32)> {
        let root = k0x_config::RunDir::new(&self.run)
            .runc_root()
            .join(namespace);
        if !root.exists() {
            return Vec::new();
        }
        let out = Command::new(self.bin().join("runc"))
            .arg("--root")
            .arg(&root)
            .args(["list", "--format", "json"])
            .output()
            .unwrap();
        assert!(out.status.success(), "runc list: {}", stderr(&out));
        let list: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        list.as_array()
            .into_iter()
            .flatten()
            .map(|c| {
                (
                    c["id"].as_str().unwrap_or_default().to_owned(),
                    c["status"].as_str().unwrap_or_default().to_owned(),
                    c["pid"].as_u64().unwrap_or_default() as u32,
                )
            })
            .collect()
    }

    /// `etcdctl` (API v3) against this node's etcd with the k0x client certificate.
    pub fn etcdctl(&self, args: &[&str]) -> Output {
        let data = self.layout();
        self.etcdctl_as(
            &data.pki_cert(pki_names::ETCD_CA),
            &data.pki_cert(pki_names::ETCD_K0X_CLIENT),
            &data.pki_key(pki_names::ETCD_K0X_CLIENT),
            args,
        )
    }

    /// `etcdctl` with the given trust and client certificate.
    pub fn etcdctl_as(&self, ca: &Path, cert: &Path, key: &Path, args: &[&str]) -> Output {
        Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .arg(format!(
                "--endpoints=https://127.0.0.1:{}",
                self.ports.etcd_client
            ))
            .arg(format!("--cacert={}", ca.display()))
            .arg(format!("--cert={}", cert.display()))
            .arg(format!("--key={}", key.display()))
            .arg("--dial-timeout=5s")
            .arg("--command-timeout=10s")
            .args(args)
            .output()
            .unwrap()
    }

    /// `ctr` on k0x's containerd socket, in the test namespace.
    pub fn ctr(&self) -> Command {
        let mut command = Command::new("ctr");
        command
            .arg("--address")
            .arg(self.run.join("containerd/containerd.sock"))
            .args(["--namespace", CTR_NAMESPACE]);
        command
    }

    /// Builds the busybox image (from the host's static `busybox`) and imports it as [`IMAGE`]
    /// into k0x's containerd.
    pub fn import_busybox(&self, busybox: &Path) {
        let image = self.root.join("busybox.tar");
        k0x_testkit::image::busybox_image(busybox, IMAGE, &image).unwrap();
        let import = self
            .ctr()
            .args(["images", "import"])
            .arg(&image)
            .output()
            .unwrap();
        assert!(import.status.success(), "import: {}", stderr(&import));
    }

    /// The value of `key` in etcd (panics when etcdctl fails).
    pub fn etcd_get(&self, key: &str) -> String {
        let out = self.etcdctl(&["get", key, "--print-value-only"]);
        assert!(out.status.success(), "etcdctl get: {}", stderr(&out));
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    pub fn etcd_put(&self, key: &str, value: &str) {
        let out = self.etcdctl(&["put", key, value]);
        assert!(out.status.success(), "etcdctl put: {}", stderr(&out));
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let mut problems = Vec::new();
        if let Some(mut server) = self.server.take() {
            let pid = Pid::from_raw(server.id() as i32);
            let _ = kill(pid, Signal::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(60);
            while Instant::now() < deadline && matches!(server.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(50));
            }
            if matches!(server.try_wait(), Ok(None)) {
                problems.push("k0x server ignored SIGTERM".to_owned());
                let _ = server.kill();
            }
            let _ = server.wait();
        }
        let left = self.leftovers();
        if !left.marked.is_empty() || !left.offspring.is_empty() {
            problems.push(format!("component processes left behind: {left:?}"));
        }
        if !left.is_empty() {
            // Workloads outlive a stop by design; reset ends them with their mounts and network.
            let _ = self.reset();
        }
        let left = self.marked_processes();
        if !left.is_empty() {
            problems.push(format!("marked processes left after reset: {left:?}"));
            for pid in left {
                let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
            }
        }
        k0x_testkit::unmount_below(&self.root);
        if !problems.is_empty() && !std::thread::panicking() {
            panic!("{}\nlog:\n{}", problems.join("; "), self.log());
        }
    }
}

/// Pids whose environment holds exactly `K0X_MANAGED=<data>`.
pub fn marked_processes(data: &Path) -> Vec<u32> {
    let marker = format!("K0X_MANAGED={}", data.display()).into_bytes();
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            fs::read(format!("/proc/{pid}/environ"))
                .is_ok_and(|env| env.split(|b| *b == 0).any(|entry| entry == marker))
        })
        .collect()
}

fn replace_once(text: &str, from: &str, to: &str) -> String {
    assert_eq!(
        text.matches(from).count(),
        1,
        "expected {from:?} once in the config"
    );
    text.replacen(from, to, 1)
}

/// A component's entry in a status answer (panics when absent).
pub fn component<'a>(status: &'a Value, name: &str) -> &'a Value {
    status["components"]
        .as_array()
        .and_then(|all| all.iter().find(|c| c["name"] == name))
        .unwrap_or_else(|| panic!("{name} not in status: {status:#}"))
}

/// A component's state in a status answer.
pub fn state(status: &Value, name: &str) -> String {
    component(status, name)["state"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// A component's pid in a status answer.
pub fn pid(status: &Value, name: &str) -> u32 {
    component(status, name)["pid"]
        .as_u64()
        .unwrap_or_else(|| panic!("{name} has no pid: {status:#}")) as u32
}

/// Runs the built k0x with `dir_flag DIR ARGS...` on a blocking thread, so a server the test runs
/// on its own async runtime (etcd client, admin socket) keeps serving meanwhile.
pub async fn k0x_off_runtime(dir_flag: &str, dir: &Path, args: &[&str]) -> Output {
    let mut command = Command::new(K0X);
    command.arg(dir_flag).arg(dir).args(args);
    tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap()
}

/// The stdout of a k0x run that must have succeeded.
pub fn success_stdout(output: &Output) -> String {
    assert!(output.status.success(), "k0x failed: {}", stderr(output));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A command's standard output, trimmed.
pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Stages [`STAGED_BINARIES`] and the [`CNI_PLUGINS`] into `bin`; false when the test must be
/// skipped (a failure in strict mode).
pub fn stage_base(bin: &Path, test: &str) -> bool {
    let wanted: Vec<&str> = STAGED_BINARIES
        .iter()
        .copied()
        .chain(["host-local"])
        .collect();
    let Some(found) = k0x_testkit::require_binaries(test, &wanted) else {
        return false;
    };
    fs::create_dir_all(bin).unwrap();
    for (name, path) in STAGED_BINARIES.iter().zip(&found) {
        fs::copy(path, bin.join(name)).unwrap();
    }
    let cni_dir = found.last().unwrap().parent().unwrap();
    for plugin in CNI_PLUGINS {
        fs::copy(cni_dir.join(plugin), bin.join(plugin))
            .unwrap_or_else(|e| panic!("CNI plugin {plugin} in {}: {e}", cni_dir.display()));
    }
    true
}

/// Stages the Kubernetes components and k0x's static pause program (built below `target_tmp`,
/// the test's `CARGO_TARGET_TMPDIR`) into `bin`, as the payload will; false when the test must
/// be skipped (a failure in strict mode).
pub fn stage_kubernetes(bin: &Path, test: &str, target_tmp: &Path) -> bool {
    // ctr: k0x imports images with it; coredns and metrics-server: k0x builds the images of
    // the system stacks from them; flannel: the default pod network.
    let names: Vec<&str> = KUBE_COMPONENTS
        .iter()
        .copied()
        .chain(["ctr", "coredns", "metrics-server", "flannel"])
        .collect();
    let Some(found) = k0x_testkit::require_binaries(test, &names) else {
        return false;
    };
    let mut staged = HashMap::new();
    for (name, path) in names.iter().zip(&found) {
        stage_file(path, &bin.join(name), &mut staged);
    }
    let pause = k0x_testkit::pause::static_pause(target_tmp);
    fs::copy(pause, bin.join("pause")).unwrap();
    true
}

/// Copies `source` to `dest`, or hard-links `dest` to the copy of a source with the same inode
/// (the names of the Kubernetes multi-call binary), as extraction from the payload does: the
/// processes running those names then share its pages, as on a real node.
fn stage_file(source: &Path, dest: &Path, staged: &mut HashMap<(u64, u64), PathBuf>) {
    use std::os::unix::fs::MetadataExt;
    let meta = fs::metadata(source).unwrap();
    match staged.get(&(meta.dev(), meta.ino())) {
        Some(first) => {
            let _ = fs::remove_file(dest);
            fs::hard_link(first, dest).unwrap();
        }
        None => {
            fs::copy(source, dest).unwrap();
            staged.insert((meta.dev(), meta.ino()), dest.to_owned());
        }
    }
}

/// The components of a controller+worker with Kubernetes staged (flannel the pod network), in
/// start order: every component.
pub const NODE_COMPONENTS: &[&str] = k0x_node::ALL_COMPONENTS;

/// `k0x kubectl ARGS`: the node's kubectl with its admin kubeconfig.
pub fn kubectl(node: &Node, args: &[&str]) -> Output {
    node.k0x().arg("kubectl").args(args).output().unwrap()
}

/// `kubectl wait` (up to 120 s) for Deployment `name` to be Available.
pub fn wait_available(node: &Node, name: &str) -> Output {
    let target = format!("deployment/{name}");
    kubectl(
        node,
        &[
            "wait",
            "--for=condition=Available",
            &target,
            "--timeout=120s",
        ],
    )
}

/// The test host's disk may be fuller than the kubelet's default eviction thresholds allow (it
/// would then taint the node with disk-pressure): a test node only needs a little room.
pub fn relax_eviction(node: &Node) {
    node.edit_config(
        "  workerProfiles: []\n",
        "  workerProfiles:\n  - name: default\n    values:\n      evictionHard: \
         {\"nodefs.available\": \"1%\", \"imagefs.available\": \"1%\"}\n",
    );
}

/// Waits until the Node is Ready; panics with `kubectl describe nodes` and the log otherwise.
pub fn wait_node_ready(node: &Node) {
    let ready = wait_until(|| {
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

/// Waits until `check` holds (polling), false when the limit passes first.
pub fn wait_until(mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + LIMIT;
    while Instant::now() < deadline {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

/// The server's JSON log lines about `component` whose message starts with `prefix`, as
/// (timestamp, message). Timestamps are RFC 3339 UTC with a fixed width, so they sort as text.
pub fn log_events(log: &str, component: &str, prefix: &str) -> Vec<(String, String)> {
    log.lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|event| {
            event["fields"]["component"] == component
                || event["span"]["component"] == component
                || event["component"] == component
        })
        .filter_map(|event| {
            let message = event["fields"]["message"].as_str()?.to_owned();
            message.starts_with(prefix).then(|| {
                (
                    event["timestamp"].as_str().unwrap_or_default().to_owned(),
                    message,
                )
            })
        })
        .collect()
}
