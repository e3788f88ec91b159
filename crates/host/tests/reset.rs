//! `k0x reset` against real processes, mounts, a bridge and iptables chains. The scenario runs
//! inside a scratch network namespace (and, through `ip netns exec`, its own mount namespace),
//! so the bridges, chains and mounts it creates never reach the host and vanish with it.

mod common;

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

use common::ScratchNetns;
use k0x_config::{DataDir, RunDir};
use k0x_host::install::{InstallRequest, install, worker_args};
use k0x_host::reset::{ResetError, ResetOptions, Step, plan, reset};
use k0x_host::units::{InitSystem, UnitRole};
use nix::fcntl::{Flock, FlockArg};
use nix::mount::{MsFlags, mount};

const SCENARIO_DIR_ENV: &str = "K0X_TEST_RESET_DIR";
const NETWORK: &str = "k0xtest";
const BRIDGE: &str = "k0xtbr0";

/// A `sleep` that is killed and reaped when dropped.
struct Sleeper(Child);

impl Sleeper {
    fn spawn(marker: Option<&Path>) -> Self {
        let mut command = Command::new("sleep");
        command.arg("600").env_remove("K0X_MANAGED");
        if let Some(dir) = marker {
            command.env("K0X_MANAGED", dir);
        }
        Self(command.spawn().unwrap())
    }

    fn spawn_shell(marker: &Path, script: &str) -> Self {
        let child = Command::new("sh")
            .args(["-c", script])
            .env("K0X_MANAGED", marker)
            .spawn()
            .unwrap();
        Self(child)
    }

    fn running(&mut self) -> bool {
        self.0.try_wait().unwrap().is_none()
    }
}

impl Drop for Sleeper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Kills the shell's child when the test ends early, if that pid is still our `sleep 601`.
struct KillIfStillSleeping(i32);

impl Drop for KillIfStillSleeping {
    fn drop(&mut self) {
        let cmdline = fs::read(format!("/proc/{}/cmdline", self.0)).unwrap_or_default();
        if alive(self.0) && cmdline == b"sleep\x00601\x00" {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(self.0),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

/// Running, as opposed to gone or a zombie waiting for a parent (here: a reaper we do not own).
fn alive(pid: i32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        let state = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next());
        !matches!(state, Some("Z" | "X") | None)
    })
}

/// The pid a shell wrote to `path`, once it has written it (the shell runs concurrently).
fn wait_for_pid_file(path: &Path) -> i32 {
    loop {
        if let Some(pid) = fs::read_to_string(path)
            .ok()
            .and_then(|text| text.trim().parse().ok())
        {
            return pid;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn sh(script: &str) {
    let status = Command::new("sh").args(["-ec", script]).status().unwrap();
    assert!(status.success(), "{script}");
}

fn tmpfs(at: &Path) {
    fs::create_dir_all(at).unwrap();
    mount(
        Some("tmpfs"),
        at,
        Some("tmpfs"),
        MsFlags::empty(),
        None::<&str>,
    )
    .unwrap();
}

fn mounted_under(dir: &Path) -> Vec<String> {
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|p| Path::new(p).starts_with(dir))
        .map(str::to_owned)
        .collect()
}

fn link_exists(name: &str) -> bool {
    Path::new("/sys/class/net").join(name).exists()
}

fn nat_rules() -> String {
    let out = Command::new("iptables-save")
        .args(["-t", "nat"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn reset_removes_what_k0x_created_and_nothing_else() {
    if !k0x_testkit::require_root("reset_removes_what_k0x_created")
        || k0x_testkit::require_binaries(
            "reset_removes_what_k0x_created",
            &["ip", "iptables", "iptables-save", "sleep"],
        )
        .is_none()
    {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let netns = ScratchNetns::create("reset");
    netns.run_child_test("reset_scenario_in_netns", &[(SCENARIO_DIR_ENV, dir.path())]);
}

/// Builds a k0x-looking host inside the namespace, resets it twice, checks what is left.
#[test]
#[ignore = "run by reset_removes_what_k0x_created_and_nothing_else inside a network namespace"]
fn reset_scenario_in_netns() {
    let base =
        PathBuf::from(std::env::var_os(SCENARIO_DIR_ENV).expect("started by the parent test"));
    common::assert_in_scratch_netns();
    let data = DataDir::new(base.join("data"));
    let run = RunDir::new(base.join("run"));
    let root = base.join("root");

    // The user gave k0x a filesystem of its own: reset empties it but keeps the mount.
    tmpfs(data.root());
    // What k0x would have created: state, a CNI config, mounts, a bridge with a pod veth,
    // CNI chains for its network, an installed unit, children carrying the marker.
    fs::create_dir_all(data.pki()).unwrap();
    fs::write(data.pki_key("ca"), "key").unwrap();
    fs::create_dir_all(data.etc().join("cni/net.d")).unwrap();
    fs::write(
        data.etc().join("cni/net.d/10-k0x.conflist"),
        format!(r#"{{"cniVersion":"1.0.0","name":"{NETWORK}","plugins":[{{"type":"bridge","bridge":"{BRIDGE}","ipMasq":true,"ipam":{{"type":"host-local"}}}}]}}"#),
    )
    .unwrap();
    let volume = data
        .kubelet()
        .join("pods/p1/volumes/kubernetes.io~empty-dir/v");
    tmpfs(&volume);
    tmpfs(&volume.join("inner"));
    let rootfs = run
        .containerd()
        .join("io.containerd.runtime.v2.task/k8s.io/c1/rootfs");
    tmpfs(&rootfs);
    sh(&format!(
        "ip link add {BRIDGE} type bridge
         ip link add vethk0xt0 type veth peer name vethk0xt1
         ip link set vethk0xt0 master {BRIDGE}
         ip link add otherbr0 type bridge
         iptables -t nat -N CNI-k0xt1
         iptables -t nat -A CNI-k0xt1 -d 10.244.0.0/16 -m comment --comment 'name: \"{NETWORK}\" id: \"c1\"' -j ACCEPT
         iptables -t nat -A POSTROUTING -s 10.244.0.5/32 -m comment --comment 'name: \"{NETWORK}\" id: \"c1\"' -j CNI-k0xt1
         iptables -t nat -N CNI-other1
         iptables -t nat -A POSTROUTING -s 10.88.0.5/32 -m comment --comment 'name: \"podman\" id: \"d1\"' -j CNI-other1"
    ));
    install(&InstallRequest {
        root: root.clone(),
        init: InitSystem::Systemd,
        role: UnitRole::Worker,
        binary: "/usr/local/bin/k0x".into(),
        args: worker_args(&Default::default()),
        token: Some("k0x1.test".into()),
        force: false,
    })
    .unwrap();
    let leases = root.join("var/lib/cni/networks");
    let results = root.join("var/lib/cni/results");
    for dir in [leases.join(NETWORK), leases.join("podman"), results.clone()] {
        fs::create_dir_all(dir).unwrap();
    }
    fs::write(leases.join(NETWORK).join("10.244.0.5"), "c1").unwrap();
    fs::write(results.join(format!("{NETWORK}-c1-eth0")), "{}").unwrap();
    fs::write(results.join("podman-d1-eth0"), "{}").unwrap();
    let mut marked = Sleeper::spawn(Some(data.root()));
    // Like a container under a marked shim: a clean environment, but a marked parent.
    let mut shim = Sleeper::spawn_shell(
        data.root(),
        &format!(
            "env -u K0X_MANAGED sleep 601 & echo $! > {}/child.pid; wait",
            base.display()
        ),
    );
    let mut unmarked = Sleeper::spawn(None);
    let mut other_k0x = Sleeper::spawn(Some(&base.join("another-data-dir")));

    let options = ResetOptions {
        root: root.clone(),
        grace: Duration::from_secs(5),
        ..ResetOptions::new(data.clone(), run.clone())
    };

    let grandchild: i32 = wait_for_pid_file(&base.join("child.pid"));
    let _reap = KillIfStillSleeping(grandchild);
    // Dry run: lists everything, does nothing.
    let steps = plan(&options).unwrap();
    for step in &steps {
        eprintln!("plan: {step}");
    }
    let stopped: Vec<i32> = steps
        .iter()
        .flat_map(|s| match s {
            Step::StopProcesses { processes, .. } => processes.iter().map(|p| p.0).collect(),
            _ => vec![],
        })
        .collect();
    let mut expected = vec![marked.0.id() as i32, shim.0.id() as i32, grandchild];
    expected.sort_unstable();
    assert_eq!(stopped, expected);
    let unmounts: Vec<&Step> = steps
        .iter()
        .filter(|s| matches!(s, Step::Unmount { .. }))
        .collect();
    assert_eq!(unmounts.len(), 3);
    assert_eq!(
        unmounts[0],
        &Step::Unmount {
            path: fs::canonicalize(volume.join("inner")).unwrap()
        }
    );
    assert!(steps.contains(&Step::DeleteLink {
        name: "vethk0xt0".into()
    }));
    assert!(steps.contains(&Step::DeleteLink {
        name: BRIDGE.into()
    }));
    assert!(marked.running() && link_exists(BRIDGE) && data.root().exists());

    let done = reset(&options).unwrap();
    let failed: Vec<_> = done.iter().filter(|d| d.error.is_some()).collect();
    assert!(failed.is_empty(), "{failed:#?}");

    assert!(!marked.running(), "the marked process is gone");
    assert!(!shim.running(), "the marked parent is gone");
    assert!(!alive(grandchild), "its unmarked child is gone");
    assert!(unmarked.running(), "an unmarked process is untouched");
    assert!(
        other_k0x.running(),
        "another data dir's process is untouched"
    );
    assert_eq!(mounted_under(&base), [data.root().to_str().unwrap()]);
    assert_eq!(fs::read_dir(data.root()).unwrap().count(), 0);
    assert!(!run.root().exists());
    assert!(!link_exists(BRIDGE) && !link_exists("vethk0xt0") && !link_exists("vethk0xt1"));
    assert!(link_exists("otherbr0"), "a bridge k0x did not create stays");
    let nat = nat_rules();
    assert!(
        !nat.contains("CNI-k0xt1") && !nat.contains(NETWORK),
        "{nat}"
    );
    assert!(
        nat.contains(":CNI-other1") && nat.contains("podman"),
        "{nat}"
    );
    assert!(!leases.join(NETWORK).exists() && leases.join("podman").exists());
    let cached: Vec<_> = fs::read_dir(&results)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(cached, ["podman-d1-eth0"]);
    assert!(!root.join("etc/systemd/system/k0xworker.service").exists());
    assert!(!root.join("etc/k0x/worker-token").exists());
    assert!(
        root.join("etc/systemd/system/multi-user.target.wants/k0xworker.service")
            .symlink_metadata()
            .is_err()
    );

    // A second reset finds nothing left to do and succeeds.
    assert_eq!(plan(&options).unwrap(), []);
    assert!(reset(&options).unwrap().is_empty());
}

#[test]
fn reset_is_refused_while_the_lock_is_held() {
    let dir = tempfile::tempdir().unwrap();
    let data = DataDir::new(dir.path().join("data"));
    data.create().unwrap();
    // A CNI config naming a network nobody else has, so the reset below, which runs in the
    // host's network namespace, cannot match anything outside this test.
    fs::create_dir_all(data.etc()).unwrap();
    fs::write(
        data.etc().join("10-k0x.conflist"),
        r#"{"name":"k0x-lock-test-none","plugins":[]}"#,
    )
    .unwrap();
    let lock_file = File::create(data.lock_file()).unwrap();
    let held = Flock::lock(lock_file, FlockArg::LockExclusiveNonblock).unwrap();
    let options = ResetOptions::new(data.clone(), RunDir::new(dir.path().join("run")));
    let err = reset(&options).unwrap_err();
    assert!(matches!(err, ResetError::Running { .. }), "{err}");
    assert!(err.to_string().contains("k0x stop"), "{err}");
    assert!(data.lock_file().exists(), "nothing was removed");
    drop(held);
    assert!(reset(&options).unwrap().iter().all(|d| d.error.is_none()));
    assert!(!data.root().exists());
}
