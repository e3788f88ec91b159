//! Several hosts on one machine: each `k0x` runs in its own network namespace with its own host
//! name (k0x_testkit::netns), and the hosts reach each other only over the test's own bridge.
//!
//! Every node runs the real etcd, containerd, runc and CNI plugins from the host's packages (put
//! into the node's `bin/`, as a payload would). The tests run one at a time: each starts several
//! etcd and containerd processes and the machine running them may have few cores.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Output, Stdio};
use std::sync::Mutex;
use std::thread::sleep;
use std::time::{Duration, Instant};

use k0x_config::{DataDir, pki_names};
use k0x_join::material::WorkerFiles;
use k0x_testkit::hosts::{Host, Network};
use tempfile::TempDir;

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// How long a node may take for a step (etcd start, a join, a promotion) on a loaded machine.
/// Only a bound on waiting, never a measured result.
const PATIENCE: Duration = Duration::from_secs(180);

const CONTROLLER_BINS: &[&str] = &["etcd"];
const WORKER_BINS: &[&str] = &[
    "containerd",
    "containerd-shim-runc-v2",
    "runc",
    "bridge",
    "host-local",
    "loopback",
    "portmap",
];

fn prerequisites(test: &str) -> bool {
    let mut needed = vec!["ip", "nsenter", "unshare", "etcdctl", "openssl"];
    needed.extend(CONTROLLER_BINS);
    needed.extend(WORKER_BINS);
    k0x_testkit::require_root(test) && k0x_testkit::require_binaries(test, &needed).is_some()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// One k0x process on one host, with its own data and run dirs; stopped and checked on drop.
struct Node {
    host: Host,
    dir: TempDir,
    child: Option<Child>,
}

impl Node {
    /// A node whose `bin/` holds `bins` from the host's packages.
    fn new(host: &Host, bins: &[&str]) -> Self {
        let node = Self {
            host: host.clone(),
            dir: tempfile::tempdir().unwrap(),
            child: None,
        };
        let bin = node.data().bin();
        fs::create_dir_all(&bin).unwrap();
        fs::set_permissions(node.data().root(), fs::Permissions::from_mode(0o700)).unwrap();
        for name in bins {
            let source = k0x_testkit::find_binary(name).unwrap();
            fs::copy(&source, bin.join(name)).unwrap();
        }
        node
    }

    fn data(&self) -> DataDir {
        DataDir::new(self.dir.path().join("data"))
    }

    fn run_dir(&self) -> PathBuf {
        self.dir.path().join("run")
    }

    fn log(&self) -> PathBuf {
        self.dir.path().join("k0x.log")
    }

    fn global_args(&self) -> Vec<String> {
        vec![
            "--data-dir".into(),
            self.data().root().display().to_string(),
            "--run-dir".into(),
            self.run_dir().display().to_string(),
        ]
    }

    /// Starts `k0x ARGS` on this node's host, its output appended to the node's log.
    fn start(&mut self, args: &[&str]) {
        assert!(self.child.is_none(), "{} already runs", self.host.hostname);
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log())
            .unwrap();
        let child = self
            .host
            .command(env!("CARGO_BIN_EXE_k0x"))
            .args(self.global_args())
            .args(args)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
    }

    /// Runs a short `k0x ARGS` on this node's host (its loopback etcd, its admin socket).
    fn k0x(&self, args: &[&str]) -> Output {
        let mut all: Vec<String> = self.global_args();
        all.extend(args.iter().map(|a| (*a).to_string()));
        let all: Vec<&str> = all.iter().map(String::as_str).collect();
        self.host.output(env!("CARGO_BIN_EXE_k0x"), &all)
    }

    /// `k0x ARGS` that must succeed; its stdout.
    fn k0x_ok(&self, args: &[&str]) -> String {
        let output = self.k0x(args);
        assert!(
            output.status.success(),
            "k0x {args:?} on {} failed: {}",
            self.host.hostname,
            text(&output.stderr)
        );
        text(&output.stdout)
    }

    /// etcdctl against this host's etcd with k0x's etcd client certificate.
    fn etcdctl(&self, args: &[&str]) -> Output {
        let data = self.data();
        let flags = [
            "--endpoints=https://127.0.0.1:2379".to_string(),
            format!("--cacert={}", data.pki_cert(pki_names::ETCD_CA).display()),
            format!(
                "--cert={}",
                data.pki_cert(pki_names::ETCD_K0X_CLIENT).display()
            ),
            format!(
                "--key={}",
                data.pki_key(pki_names::ETCD_K0X_CLIENT).display()
            ),
            "--command-timeout=10s".to_string(),
        ];
        let mut all: Vec<&str> = flags.iter().map(String::as_str).collect();
        all.extend(args);
        self.host.output("etcdctl", &all)
    }

    /// Waits until `check` returns `Some`, failing with the node's log if the node exits or
    /// PATIENCE runs out.
    fn wait_for<T>(&mut self, what: &str, mut check: impl FnMut(&Self) -> Option<T>) -> T {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(found) = check(self) {
                return found;
            }
            if let Some(child) = self.child.as_mut()
                && let Some(status) = child.try_wait().unwrap()
            {
                panic!(
                    "{}: k0x exited ({status}) while waiting for {what}:\n{}",
                    self.host.hostname,
                    self.log_tail()
                );
            }
            assert!(
                Instant::now() < deadline,
                "{}: gave up waiting for {what}:\n{}",
                self.host.hostname,
                self.log_tail()
            );
            sleep(Duration::from_millis(300));
        }
    }

    /// Waits until `k0x status` reports every one of `components` ready.
    fn wait_ready(&mut self, components: &[&str]) {
        let what = format!("{components:?} ready");
        self.wait_for(&what, |node| {
            let output = node.k0x(&["status", "-o", "json"]);
            let status: serde_json::Value = serde_json::from_slice(&output.stdout).ok()?;
            let listed = status["components"].as_array()?;
            components
                .iter()
                .all(|name| {
                    listed
                        .iter()
                        .any(|c| c["name"] == *name && c["state"] == "ready")
                })
                .then_some(())
        });
    }

    /// Creates a token over the admin socket, retrying while the token store is not up yet.
    fn create_token(&mut self, role: &str) -> String {
        let mut last_error = String::new();
        self.wait_for("a token", |node| {
            let output = node.k0x(&["token", "create", "--role", role]);
            let error = text(&output.stderr);
            if !output.status.success() && error != last_error {
                // Shown with the test's output only when it fails.
                eprintln!("{}: token create: {error}", node.host.hostname);
                last_error = error;
            }
            output
                .status
                .success()
                .then(|| text(&output.stdout).trim().to_string())
        })
    }

    /// Writes `token` to a 0600 file in this node's directory.
    fn token_file(&self, token: &str) -> PathBuf {
        let path = self.dir.path().join("join.token");
        let mut file = fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .mode(0o600)
            .open(&path)
            .unwrap();
        file.write_all(token.as_bytes()).unwrap();
        path
    }

    /// The end of k0x's own log lines, then the end of its components' (which are chattier).
    fn log_tail(&self) -> String {
        let log = fs::read_to_string(self.log()).unwrap_or_default();
        let (components, own): (Vec<&str>, Vec<&str>) =
            log.lines().partition(|line| line.contains(" component="));
        let tail =
            |lines: &[&str], count: usize| lines[lines.len().saturating_sub(count)..].join("\n");
        format!(
            "--- k0x ---\n{}\n--- components ---\n{}",
            tail(&own, 30),
            tail(&components, 20)
        )
    }

    /// kill -9 of k0x itself; its children die with it (PR_SET_PDEATHSIG).
    fn kill_hard(&mut self) {
        let mut child = self.child.take().expect("the node runs");
        child.kill().unwrap();
        child.wait().unwrap();
    }

    /// The processes still marked as managed by this node's k0x after giving them a moment:
    /// children receive their parent-death signal asynchronously.
    fn wait_children_gone(&self) -> Vec<i32> {
        let mut left = Vec::new();
        for _ in 0..100 {
            left = managed_processes(self.data().root());
            if left.is_empty() {
                break;
            }
            sleep(Duration::from_millis(100));
        }
        left
    }

    /// SIGTERM, then SIGKILL if k0x has not stopped; returns the pids of processes still marked
    /// as managed by this node's k0x (after ending them).
    fn stop(&mut self) -> Vec<i32> {
        if let Some(mut child) = self.child.take() {
            let pid = nix::unistd::Pid::from_raw(child.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(60);
            while child.try_wait().unwrap().is_none() && Instant::now() < deadline {
                sleep(Duration::from_millis(100));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        let left = self.wait_children_gone();
        for pid in &left {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(*pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        left
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let left = self.stop();
        if !left.is_empty() {
            eprintln!("{}: killed leftover processes {left:?}", self.host.hostname);
        }
    }
}

/// Processes whose environment carries `K0X_MANAGED=<data dir>`.
fn managed_processes(data_dir: &Path) -> Vec<i32> {
    let marker = format!("K0X_MANAGED={}", data_dir.display());
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            fs::read(format!("/proc/{pid}/environ")).is_ok_and(|environ| {
                environ
                    .split(|b| *b == 0)
                    .any(|var| var == marker.as_bytes())
            })
        })
        .collect()
}

/// Stops every node and checks that none left a managed process behind.
fn shut_down(nodes: &mut [&mut Node]) {
    for node in nodes {
        let left = node.stop();
        assert!(
            left.is_empty(),
            "{} left processes {left:?}",
            node.host.hostname
        );
    }
}

/// The voting members and learners `k0x etcd member-list` shows on `node`.
fn members(node: &Node) -> Option<(usize, usize)> {
    let output = node.k0x(&["etcd", "member-list", "-o", "json"]);
    let list: serde_json::Value = serde_json::from_slice(&output.stdout).ok()?;
    let list = list.as_array()?;
    let learners = list.iter().filter(|m| m["isLearner"] == true).count();
    Some((list.len() - learners, learners))
}

#[test]
fn one_controller_two_workers() {
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    if !prerequisites("one_controller_two_workers") {
        return;
    }
    let network = Network::create(&["ctl-1", "wrk-1", "wrk-2"]).unwrap();
    let [ctl_host, w1_host, w2_host] = network.hosts() else {
        unreachable!()
    };
    let mut controller = Node::new(ctl_host, CONTROLLER_BINS);
    let mut workers = [
        Node::new(w1_host, WORKER_BINS),
        Node::new(w2_host, WORKER_BINS),
    ];

    controller.start(&["server"]);
    controller.wait_ready(&["etcd"]);
    let token = controller.create_token("worker");
    let token_id = k0x_join::Token::parse(&token).unwrap().id;

    for worker in &mut workers {
        let file = worker.token_file(&token);
        worker.start(&["worker", "--token-file", file.to_str().unwrap()]);
    }
    let cluster_ca = controller.data().pki_cert(pki_names::CA);
    for worker in &mut workers {
        worker.wait_ready(&["containerd"]);
        let files = WorkerFiles::in_data_dir(&worker.data());
        let verify = std::process::Command::new("openssl")
            .arg("verify")
            .arg("-CAfile")
            .arg(&cluster_ca)
            .arg(&files.client_cert)
            .output()
            .unwrap();
        assert!(
            verify.status.success(),
            "{}{}",
            text(&verify.stdout),
            text(&verify.stderr)
        );
        let subject = std::process::Command::new("openssl")
            .args(["x509", "-noout", "-subject", "-nameopt", "RFC2253", "-in"])
            .arg(&files.client_cert)
            .output()
            .unwrap();
        let subject = text(&subject.stdout);
        let name = &worker.host.hostname;
        assert!(
            subject.contains(&format!("CN=system:node:{name}"))
                && subject.contains("O=system:nodes"),
            "{subject}"
        );
        // kube-proxy's and the kubelet's serving identities came with the join: private keys
        // 0600, the serving certificate for this node's name and address only.
        for secret in [
            &files.client_key,
            &files.kube_proxy_kubeconfig,
            &files.serving_key,
        ] {
            let mode = fs::metadata(secret).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{}", secret.display());
        }
        let address = worker.host.address.to_string();
        let verify = std::process::Command::new("openssl")
            .args(["verify", "-purpose", "sslserver", "-verify_hostname", name])
            .args(["-verify_ip", &address, "-CAfile"])
            .arg(&cluster_ca)
            .arg(&files.serving_cert)
            .output()
            .unwrap();
        assert!(
            verify.status.success(),
            "{}{}",
            text(&verify.stdout),
            text(&verify.stderr)
        );
        let kube_proxy = fs::read_to_string(&files.kube_proxy_kubeconfig).unwrap();
        let kube_proxy =
            k0x_pki::Kubeconfig::parse(&files.kube_proxy_kubeconfig, &kube_proxy).unwrap();
        // Through the worker's node-local load balancer, which starts on the controller the
        // join came through.
        assert_eq!(kube_proxy.server, "https://127.0.0.1:7443");
        let api_server = format!("{}:6443", ctl_host.address);
        assert!(
            fs::read_to_string(worker.log())
                .unwrap()
                .lines()
                .any(|l| l.contains("API load balancer on 127.0.0.1:7443")
                    && l.contains(&api_server)),
            "{}",
            worker.log_tail()
        );
        let status: serde_json::Value =
            serde_json::from_str(&worker.k0x_ok(&["status", "-o", "json"])).unwrap();
        assert_eq!(status["nodeName"], name.as_str(), "{status}");
        assert_eq!(status["role"], "worker", "{status}");
    }

    let listed: serde_json::Value =
        serde_json::from_str(&controller.k0x_ok(&["token", "list", "-o", "json"])).unwrap();
    let entry = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == token_id.as_str())
        .unwrap_or_else(|| panic!("token {token_id} not listed: {listed}"));
    assert_eq!(entry["uses"], 2, "{listed}");

    let [w1, w2] = &mut workers;
    shut_down(&mut [w1, w2, &mut controller]);
}

#[test]
fn three_controllers_survive_the_loss_of_one() {
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    if !prerequisites("three_controllers_survive_the_loss_of_one") {
        return;
    }
    let network = Network::create(&["ctl-1", "ctl-2", "ctl-3"]).unwrap();
    let mut nodes: Vec<Node> = network
        .hosts()
        .iter()
        .map(|host| Node::new(host, CONTROLLER_BINS))
        .collect();

    nodes[0].start(&["server"]);
    nodes[0].wait_ready(&["etcd"]);
    // ctl-2 joins through ctl-1, ctl-3 through ctl-2: a joined controller serves the join API
    // (its own certificate, the cluster's secrets) like the first one.
    for joining in 1..nodes.len() {
        let token = nodes[joining - 1].create_token("controller");
        let sponsor = &nodes[joining - 1].host;
        assert_eq!(
            k0x_join::Token::parse(&token).unwrap().urls,
            [format!("https://{}:9443", sponsor.address)]
        );
        let node = &mut nodes[joining];
        let file = node.token_file(&token);
        node.start(&["server", "--token-file", file.to_str().unwrap()]);
        node.wait_ready(&["etcd"]);
        node.wait_for("a voting etcd member", |node| {
            members(node).filter(|(_, learners)| *learners == 0)
        });
    }
    let (voters, learners) = nodes[0].wait_for("3 voters", |node| {
        members(node).filter(|(voters, _)| *voters == 3)
    });
    assert_eq!((voters, learners), (3, 0));

    nodes[2].kill_hard();
    let left = nodes[2].wait_children_gone();
    assert!(left.is_empty(), "etcd outlived its killed k0x: {left:?}");

    let put = nodes[0].etcdctl(&["put", "/k0x-test/while-down", "written-by-ctl-1"]);
    assert!(put.status.success(), "{}", text(&put.stderr));
    let get = nodes[1].etcdctl(&["get", "--print-value-only", "/k0x-test/while-down"]);
    assert!(get.status.success(), "{}", text(&get.stderr));
    assert_eq!(text(&get.stdout).trim(), "written-by-ctl-1");
    let put = nodes[1].etcdctl(&["put", "/k0x-test/second", "written-by-ctl-2"]);
    assert!(put.status.success(), "{}", text(&put.stderr));
    // Tokens (kept in etcd) can still be made.
    nodes[1].create_token("worker");

    // Restarted without a token: it rejoins from its own data.
    nodes[2].start(&["server"]);
    nodes[2].wait_ready(&["etcd"]);
    let value = nodes[2].wait_for("the key written while down", |node| {
        let get = node.etcdctl(&["get", "--print-value-only", "/k0x-test/while-down"]);
        let value = text(&get.stdout).trim().to_string();
        (get.status.success() && !value.is_empty()).then_some(value)
    });
    assert_eq!(value, "written-by-ctl-1");
    assert_eq!(members(&nodes[2]), Some((3, 0)));

    let [a, b, c] = &mut nodes[..] else {
        unreachable!()
    };
    shut_down(&mut [c, b, a]);
}

/// The last non-empty line of stderr, and how many there were.
fn one_line_error(output: &Output) -> String {
    assert!(!output.status.success(), "expected a refusal");
    let stderr = text(&output.stderr);
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "expected one line: {stderr}");
    lines[0].to_string()
}

#[test]
fn wrong_and_garbled_tokens_are_refused() {
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    if !prerequisites("wrong_and_garbled_tokens_are_refused") {
        return;
    }
    let network = Network::create(&["ctl-1", "ctl-2"]).unwrap();
    let [ctl_host, other_host] = network.hosts() else {
        unreachable!()
    };
    let mut controller = Node::new(ctl_host, CONTROLLER_BINS);
    controller.start(&["server"]);
    controller.wait_ready(&["etcd"]);
    let worker_token = controller.create_token("worker");
    let joining = Node::new(other_host, CONTROLLER_BINS);

    let file = joining.token_file(&worker_token);
    let refused = joining.k0x(&["server", "--token-file", file.to_str().unwrap()]);
    let line = one_line_error(&refused);
    assert!(line.contains("worker token"), "{line}");

    let garbled = format!("{}x!", &worker_token[..worker_token.len() / 2]);
    let file = joining.token_file(&garbled);
    let refused = joining.k0x(&["server", "--token-file", file.to_str().unwrap()]);
    let line = one_line_error(&refused);
    assert!(line.contains("token"), "{line}");
    let refused = joining.k0x(&["worker", &garbled]);
    one_line_error(&refused);
    assert!(
        !joining.data().etcd().exists() && !joining.data().pki().exists(),
        "a refused join left files behind"
    );

    // Over the network: an invalidated controller token is refused by the controller, which logs
    // the refusal with the token id.
    let controller_token = controller.create_token("controller");
    let id = k0x_join::Token::parse(&controller_token).unwrap().id;
    controller.k0x_ok(&["token", "invalidate", &id]);
    let file = joining.token_file(&controller_token);
    let refused = joining.k0x(&["server", "--token-file", file.to_str().unwrap()]);
    assert!(!refused.status.success());
    let stderr = text(&refused.stderr);
    let last = stderr.lines().last().unwrap_or_default();
    assert!(
        last.contains("refused") && last.contains("invalidated"),
        "{stderr}"
    );
    assert!(!joining.data().etcd().join("member").exists());
    let log = fs::read_to_string(controller.log()).unwrap();
    assert!(
        log.lines()
            .any(|l| l.contains("join refused") && l.contains(&id)),
        "no refusal logged:\n{}",
        controller.log_tail()
    );

    shut_down(&mut [&mut controller]);
}

/// True once etcd on `node` has written its write-ahead log.
fn has_etcd_wal(node: &Node) -> bool {
    fs::read_dir(node.data().etcd().join("member").join("wal")).is_ok_and(|entries| {
        entries
            .flatten()
            .any(|e| e.file_name().to_string_lossy().ends_with(".wal"))
    })
}

/// Controllers that stopped after their learner-add: without a token they stay learners (with
/// etcd data) or refuse to start (without), and never form a cluster of their own; with the token
/// they become voters as the same members.
#[test]
fn controllers_stopped_before_their_promotion_recover() {
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    if !prerequisites("controllers_stopped_before_their_promotion_recover") {
        return;
    }
    let network = Network::create(&["ctl-1", "ctl-2", "ctl-3"]).unwrap();
    let [first_host, second_host, third_host] = network.hosts() else {
        unreachable!()
    };
    let mut first = Node::new(first_host, CONTROLLER_BINS);
    first.start(&["server"]);
    first.wait_ready(&["etcd"]);
    let token = first.create_token("controller");
    let learner_added = |node: &Node| {
        let log = fs::read_to_string(node.log()).unwrap_or_default();
        log.contains("etcd starts as a learner").then_some(())
    };

    // ctl-2's etcd never runs: its binary is missing on the first start.
    let mut second = Node::new(second_host, &[]);
    let file = second.token_file(&token);
    let file = file.to_str().unwrap();
    second.start(&["server", "--token-file", file]);
    second.wait_for("the learner-add", learner_added);
    assert!(second.stop().is_empty());
    assert!(!has_etcd_wal(&second));
    assert_eq!(members(&first), Some((1, 1)));
    let record = second.data().etc().join("etcd-learner.json");
    assert!(record.is_file(), "no learner record");
    let etcd = k0x_testkit::find_binary("etcd").unwrap();
    fs::copy(&etcd, second.data().bin().join("etcd")).unwrap();
    // Without etcd data and without a token: refused, not a new cluster.
    let refused = second.k0x(&["server"]);
    assert!(!refused.status.success());
    let stderr = text(&refused.stderr);
    let last = stderr.lines().last().unwrap_or_default();
    assert!(
        last.contains("stopped before it stored any data") && last.contains("--token-file"),
        "{stderr}"
    );
    assert!(!has_etcd_wal(&second), "a refused start ran etcd");
    // With the token: it joins again as the same member and is promoted.
    second.start(&["server", "--token-file", file]);
    first.wait_for("2 voters", |node| {
        members(node).filter(|(voters, learners)| (*voters, *learners) == (2, 0))
    });
    second.wait_for("the learner record dropped", |_| {
        (!record.exists()).then_some(())
    });

    // ctl-3 is killed as soon as its etcd has data, before the promotion (which waits a second,
    // then for the catch-up).
    let mut third = Node::new(third_host, CONTROLLER_BINS);
    let file = third.token_file(&token);
    let file = file.to_str().unwrap();
    third.start(&["server", "--token-file", file]);
    third.wait_for("etcd data", |node| has_etcd_wal(node).then_some(()));
    third.kill_hard();
    assert!(third.wait_children_gone().is_empty());
    assert_eq!(
        members(&first),
        Some((2, 1)),
        "ctl-3 was promoted before it was killed: the test shows nothing"
    );
    // With etcd data and no token: it restarts as the learner and says what it needs.
    third.start(&["server"]);
    third.wait_for("the learner's complaint", |node| {
        let log = fs::read_to_string(node.log()).unwrap_or_default();
        log.contains("this start has no token").then_some(())
    });
    assert!(third.stop().is_empty());
    assert_eq!(members(&first), Some((2, 1)));
    // With the token it asks for its promotion again.
    third.start(&["server", "--token-file", file]);
    first.wait_for("3 voters", |node| {
        members(node).filter(|(voters, learners)| (*voters, *learners) == (3, 0))
    });
    let log = fs::read_to_string(third.log()).unwrap();
    assert!(
        log.contains("asking for its promotion again"),
        "{}",
        third.log_tail()
    );
    shut_down(&mut [&mut third, &mut second, &mut first]);
}

/// A reinstalled worker (a new key under its old name) is refused until `k0x node forget`, and
/// joins after it; controllers and unknown names are refused with one line.
#[test]
fn a_forgotten_worker_joins_again_under_its_name() {
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    if !prerequisites("a_forgotten_worker_joins_again_under_its_name") {
        return;
    }
    let network = Network::create(&["ctl-1", "wrk-1"]).unwrap();
    let [ctl_host, wrk_host] = network.hosts() else {
        unreachable!()
    };
    let mut controller = Node::new(ctl_host, CONTROLLER_BINS);
    controller.start(&["server"]);
    controller.wait_ready(&["etcd"]);
    let token = controller.create_token("worker");

    let mut old = Node::new(wrk_host, WORKER_BINS);
    let file = old.token_file(&token);
    old.start(&["worker", "--token-file", file.to_str().unwrap()]);
    old.wait_ready(&["containerd"]);
    assert!(old.stop().is_empty());

    let mut reinstalled = Node::new(wrk_host, WORKER_BINS);
    let file = reinstalled.token_file(&token);
    let file = file.to_str().unwrap();
    let refused = reinstalled.k0x(&["worker", "--token-file", file]);
    assert!(!refused.status.success());
    let stderr = text(&refused.stderr);
    assert!(
        stderr.contains("node name wrk-1 already joined with a different key"),
        "{stderr}"
    );

    let line = one_line_error(&controller.k0x(&["node", "forget", "ctl-1"]));
    assert!(line.contains("`k0x etcd leave`"), "{line}");
    let line = one_line_error(&controller.k0x(&["node", "forget", "wrk-9"]));
    assert!(line.contains("no node wrk-9 in the join store"), "{line}");
    // No apiserver runs here: the record goes, the Node object is left for later.
    let done = controller.k0x_ok(&["node", "forget", "wrk-1"]);
    assert!(
        done.contains("forgot node wrk-1 in the join store")
            && done.contains("`k0x kubectl delete node wrk-1`"),
        "{done}"
    );

    reinstalled.start(&["worker", "--token-file", file]);
    reinstalled.wait_ready(&["containerd"]);
    shut_down(&mut [&mut reinstalled, &mut controller]);
}
