//! `k0x reset` after a real single-node run: `k0x server --enable-worker` with etcd, containerd
//! and a busybox container run by runc through k0x's containerd. Reset is refused while k0x runs;
//! the container outlives the stop (a stop keeps workloads); `k0x stop --workloads` ends it and
//! its mounts and keeps the data; reset leaves no process, container, mount or directory of k0x
//! behind, and a second reset succeeds. Files reset may remove outside the data dir (units, host-fix files) are looked for
//! under a scratch `--root`, so the test host's /etc is never touched.

mod common;

use std::process::Output;

use common::{IMAGE, Node, stderr};
use nix::sys::signal::Signal;

fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Mount points at or below `dir`, from /proc/self/mountinfo.
fn mounts_below(dir: &std::path::Path) -> Vec<String> {
    let prefix = dir.to_string_lossy().into_owned();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|line| line.split(' ').nth(4).map(str::to_owned))
        .filter(|point| point.starts_with(&prefix))
        .collect()
}

fn alive(pid: i32) -> bool {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok()
}

#[test]
fn reset_after_a_real_run_leaves_nothing_and_can_run_twice() {
    let test = "reset_after_a_real_run_leaves_nothing_and_can_run_twice";
    let Some(mut node) = Node::new(test) else {
        return;
    };
    let Some(tools) = k0x_testkit::require_binaries(test, &["ctr", "busybox"]) else {
        return;
    };
    let scratch_root = node.root.join("host-root");
    std::fs::create_dir_all(&scratch_root).unwrap();
    node.start(&["--enable-worker"]);
    node.wait_ready(&["etcd", "containerd"]);

    let id = format!("k0x-reset-{}", k0x_testkit::cni::random_suffix());
    node.import_busybox(&tools[1]);
    let run = node
        .ctr()
        .args(["run", "-d", "--runc-binary"])
        .arg(node.bin().join("runc"))
        .arg("--runc-root")
        .arg(k0x_node::paths::runc_root(&k0x_config::RunDir::new(
            &node.run,
        )))
        .args([IMAGE, &id, "/bin/sleep", "100000"])
        .output()
        .unwrap();
    assert!(run.status.success(), "ctr run: {}", stderr(&run));
    let running_pid = || {
        let tasks = node.ctr().args(["tasks", "ls"]).output().unwrap();
        text(&tasks)
            .lines()
            .find(|l| l.starts_with(&id) && l.contains("RUNNING"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|pid| pid.parse::<i32>().ok())
    };
    assert!(
        common::wait_until(|| running_pid().is_some()),
        "the container never ran"
    );
    let container_pid = running_pid().unwrap();
    assert!(alive(container_pid));

    let refused = node
        .k0x()
        .arg("reset")
        .arg("--root")
        .arg(&scratch_root)
        .output()
        .unwrap();
    assert!(!refused.status.success(), "reset ran while k0x was running");
    assert_eq!(
        stderr(&refused).trim().lines().count(),
        1,
        "{}",
        stderr(&refused)
    );
    assert!(
        node.data.join("etcd").is_dir(),
        "a refused reset removed data"
    );

    let exit = node.stop(Signal::SIGTERM);
    assert!(exit.success(), "k0x exited {exit}:\n{}", node.log());
    assert!(alive(container_pid), "the stop of k0x ended a container");
    let left = node.leftovers();
    assert!(
        left.marked.is_empty() && left.offspring.is_empty() && !left.shims.is_empty(),
        "a stop keeps only the workloads: {left:?}"
    );

    let stop = node.k0x().args(["stop", "--workloads"]).output().unwrap();
    assert!(
        stop.status.success(),
        "stop --workloads: {}{}",
        text(&stop),
        stderr(&stop)
    );
    assert!(
        common::wait_until(|| !alive(container_pid)),
        "the container outlived `k0x stop --workloads`"
    );
    assert_eq!(node.marked_processes(), Vec::<u32>::new());
    assert_eq!(mounts_below(&node.run), Vec::<String>::new());
    assert!(
        node.data.join("etcd").is_dir(),
        "stop --workloads removed data"
    );
    let again = node.k0x().args(["stop", "--workloads"]).output().unwrap();
    assert!(again.status.success(), "{}", stderr(&again));
    assert_eq!(text(&again).trim(), "no workloads running");

    let reset = node
        .k0x()
        .arg("reset")
        .arg("--root")
        .arg(&scratch_root)
        .output()
        .unwrap();
    assert!(reset.status.success(), "reset: {}", stderr(&reset));
    assert!(
        common::wait_until(|| !alive(container_pid)),
        "the container outlived the reset"
    );
    assert!(
        !node.data.exists(),
        "data dir left: {}",
        node.data.display()
    );
    assert!(!node.run.exists(), "run dir left: {}", node.run.display());
    assert_eq!(mounts_below(&node.data), Vec::<String>::new());
    assert_eq!(mounts_below(&node.run), Vec::<String>::new());
    assert_eq!(node.marked_processes(), Vec::<u32>::new());

    let again = node
        .k0x()
        .arg("reset")
        .arg("--root")
        .arg(&scratch_root)
        .output()
        .unwrap();
    assert!(again.status.success(), "second reset: {}", stderr(&again));
}
