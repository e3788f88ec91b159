//! `k0x reset` after real components ran: etcd, containerd and a runc container started the way
//! the supervisor starts them (with the `K0X_MANAGED` marker). Everything runs in the host's
//! network namespace (nothing here touches the network: the CNI config names a network no one
//! has, and the container gets its own empty namespace), and Drop guards end every process and
//! remove the container's cgroup even when an assertion fails.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::Duration;

use k0x_config::{DataDir, RunDir};
use k0x_host::reset::{ResetOptions, Step, plan, reset};

const NEEDS: &[&str] = &[
    "etcd",
    "containerd",
    "containerd-shim-runc-v2",
    "runc",
    "ctr",
    "busybox",
];

/// Started processes and the container's cgroup, ended and removed when dropped.
struct Cleanup {
    children: Vec<Child>,
    /// Other pids (shim, container) with the command line they had, so a reused pid is spared.
    others: Vec<(i32, Vec<u8>)>,
    cgroup_name: String,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for (pid, cmdline) in &self.others {
            if fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|now| now == *cmdline) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(*pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        for dir in cgroup_dirs(&self.cgroup_name) {
            let _ = fs::remove_dir(dir);
        }
    }
}

/// Every `/sys/fs/cgroup/<hierarchy>/<name>` (and `/sys/fs/cgroup/<name>` on cgroup v2) that exists.
fn cgroup_dirs(name: &str) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = fs::read_dir("/sys/fs/cgroup")
        .into_iter()
        .flatten()
        .flatten()
        .map(|h| h.path().join(name))
        .collect();
    dirs.push(Path::new("/sys/fs/cgroup").join(name));
    dirs.into_iter().filter(|d| d.is_dir()).collect()
}

fn alive(pid: i32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        let state = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next());
        !matches!(state, Some("Z" | "X") | None)
    })
}

use k0x_testkit::free_port;

fn ctr(socket: &Path, args: &[&str]) -> std::process::Output {
    Command::new("ctr")
        .arg("--address")
        .arg(socket)
        .args(args)
        .output()
        .unwrap()
}

/// Polls `ready` until it holds; gives up (panicking with `what`) after a generous bound so a
/// broken setup fails instead of hanging. Not a timing assertion: speed is never checked.
fn wait_until(what: &str, mut ready: impl FnMut() -> bool) {
    for _ in 0..600 {
        if ready() {
            return;
        }
        sleep(Duration::from_millis(100));
    }
    panic!("{what} never became ready");
}

#[test]
fn reset_after_real_etcd_containerd_and_a_container() {
    if !k0x_testkit::require_root("reset_after_real_components")
        || k0x_testkit::require_binaries("reset_after_real_components", NEEDS).is_none()
    {
        return;
    }
    let base = tempfile::tempdir().unwrap();
    let data = DataDir::new(base.path().join("data"));
    let run = RunDir::new(base.path().join("run"));
    data.create().unwrap();
    run.create().unwrap();
    let mut cleanup = Cleanup {
        children: Vec::new(),
        others: Vec::new(),
        cgroup_name: format!("k0x-reset-test-{}", std::process::id()),
    };
    fs::create_dir_all(data.etc().join("cni/net.d")).unwrap();
    fs::write(
        data.etc().join("cni/net.d/10-k0x.conflist"),
        r#"{"name":"k0x-reset-real-none","plugins":[]}"#,
    )
    .unwrap();

    let (client, peer) = (free_port(), free_port());
    let etcd = Command::new("etcd")
        .args(["--name", "reset-test", "--data-dir"])
        .arg(data.etcd())
        .arg(format!("--listen-client-urls=http://127.0.0.1:{client}"))
        .arg(format!("--advertise-client-urls=http://127.0.0.1:{client}"))
        .arg(format!("--listen-peer-urls=http://127.0.0.1:{peer}"))
        .arg(format!(
            "--initial-advertise-peer-urls=http://127.0.0.1:{peer}"
        ))
        .arg(format!(
            "--initial-cluster=reset-test=http://127.0.0.1:{peer}"
        ))
        .env("K0X_MANAGED", data.root())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let etcd_pid = etcd.id() as i32;
    cleanup.children.push(etcd);

    let socket = run.containerd_socket();
    let config = data.etc().join("containerd.toml");
    fs::write(
        &config,
        format!(
            "version = 2\nroot = {:?}\nstate = {:?}\n\
             disabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n\
             [grpc]\n  address = {:?}\n[ttrpc]\n  address = \"{}.ttrpc\"\n\
             [plugins.\"io.containerd.internal.v1.opt\"]\n  path = {:?}\n",
            data.containerd(),
            run.containerd(),
            socket,
            socket.display(),
            data.containerd().join("opt"),
        ),
    )
    .unwrap();
    let containerd = Command::new("containerd")
        .arg("--config")
        .arg(&config)
        .env("K0X_MANAGED", data.root())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let containerd_pid = containerd.id() as i32;
    cleanup.children.push(containerd);
    wait_until("containerd", || ctr(&socket, &["version"]).status.success());

    let rootfs = data.root().join("rootfs");
    fs::create_dir_all(rootfs.join("bin")).unwrap();
    fs::copy(
        k0x_testkit::find_binary("busybox").unwrap(),
        rootfs.join("bin/busybox"),
    )
    .unwrap();
    let cgroup = format!("/{}", cleanup.cgroup_name);
    let out = ctr(
        &socket,
        &[
            "run",
            "-d",
            // runc keeps container state in /run/containerd/runc unless told otherwise; k0x's
            // containerd keeps it in the run dir, where reset removes it.
            "--runc-root",
            run.root().join("runc").to_str().unwrap(),
            // ctr's own I/O fifos, which would otherwise go to /run/containerd/fifo.
            "--fifo-dir",
            run.root().join("fifo").to_str().unwrap(),
            "--cgroup",
            &cgroup,
            "--rootfs",
            rootfs.to_str().unwrap(),
            "c1",
            "/bin/busybox",
            "sleep",
            "600",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tasks = String::from_utf8_lossy(&ctr(&socket, &["task", "ls"]).stdout).into_owned();
    let container_pid: i32 = tasks
        .lines()
        .find(|l| l.starts_with("c1 "))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no c1 task in: {tasks}"));

    let options = ResetOptions {
        root: base.path().join("root"),
        // The container's `sleep` is PID 1 of its namespace and ignores SIGTERM: it takes the
        // SIGKILL after the grace period, as a real workload that ignores TERM would.
        grace: Duration::from_secs(2),
        ..ResetOptions::new(data.clone(), run.clone())
    };
    let steps = plan(&options).unwrap();
    let Some(Step::StopProcesses { processes, cgroups }) = steps.first() else {
        panic!("the plan does not start by stopping processes: {steps:?}");
    };
    let pids: Vec<i32> = processes.iter().map(|p| p.0).collect();
    for (pid, cmdline) in processes {
        cleanup
            .others
            .push((*pid, cmdline.replace(' ', "\0").into_bytes()));
    }
    for pid in [etcd_pid, containerd_pid, container_pid] {
        assert!(pids.contains(&pid), "{pid} missing from {processes:?}");
    }
    assert!(
        processes
            .iter()
            .any(|(_, cmd)| cmd.contains("containerd-shim-runc-v2")),
        "the shim is found by its marker: {processes:?}"
    );
    assert!(
        !cgroups.is_empty() && cgroups.iter().all(|d| d.ends_with(&cleanup.cgroup_name)),
        "{cgroups:?}"
    );
    assert!(!cgroup_dirs(&cleanup.cgroup_name).is_empty());

    let done = reset(&options).unwrap();
    let failed: Vec<_> = done.iter().filter(|d| d.error.is_some()).collect();
    assert!(failed.is_empty(), "{failed:#?}");
    for pid in pids {
        assert!(!alive(pid), "process {pid} survived the reset");
    }
    assert!(!data.root().exists() && !run.root().exists());
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mountinfo.contains(base.path().to_str().unwrap()),
        "{mountinfo}"
    );
    assert_eq!(cgroup_dirs(&cleanup.cgroup_name), Vec::<PathBuf>::new());

    assert_eq!(plan(&options).unwrap(), []);
    assert!(reset(&options).unwrap().is_empty());
}
