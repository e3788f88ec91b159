//! `k0x server` as a process with the real etcd, containerd and runc from the host's packages
//! staged where the payload puts them: what status reports, etcd's mutual TLS, data kept across
//! restarts, restarts of killed components, clean stops, the data-dir lock and
//! `--disable-components`. The kube-* binaries are not obtainable here; they are reported
//! missing (tests/fixtures.rs runs stand-ins for them).

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use common::{IMAGE, KUBE_COMPONENTS, Node, component, pid, state, stderr};
use k0x_config::pki_names;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

const WORKER: &[&str] = &["--enable-worker"];

fn assert_clean_stop(node: &mut Node, signal: Signal) {
    let exit = node.stop(signal);
    assert!(
        exit.success(),
        "k0x server exited {exit} on {signal}:\n{}",
        node.log()
    );
    assert_eq!(
        node.marked_processes(),
        Vec::<u32>::new(),
        "marked processes left after {signal}"
    );
    let status = node.k0x().arg("status").output().unwrap();
    assert!(
        !status.status.success(),
        "the admin socket still answers after {signal}"
    );
    assert!(
        stderr(&status).contains("k0x is not running here"),
        "{}",
        stderr(&status)
    );
}

#[test]
fn single_node_runs_etcd_and_containerd_and_reports_missing_kube_components() {
    let Some(mut node) = Node::new("single_node_runs_etcd_and_containerd") else {
        return;
    };
    node.start(WORKER);
    let status = node.wait_ready(&["etcd", "containerd"]);
    assert_eq!(status["role"], "controller+worker");
    assert_eq!(status["pid"], node.server_pid());
    assert_eq!(status["dataDir"], node.data.display().to_string());
    assert!(
        status["apiAddress"]
            .as_str()
            .is_some_and(|a| a.ends_with(&format!(":{}", node.ports.api))),
        "{status:#}"
    );
    for name in KUBE_COMPONENTS {
        let view = component(&status, name);
        assert_eq!(view["state"], "missing", "{view:#}");
        let message = view["message"].as_str().unwrap_or_default();
        let binary = node.bin().join(name).display().to_string();
        assert!(
            message.contains(&binary) && message.contains("--disable-components"),
            "{name}: the reason must name the file and the way out: {message}"
        );
    }

    let yaml = node.k0x().args(["status", "-o", "yaml"]).output().unwrap();
    let yaml = String::from_utf8_lossy(&yaml.stdout);
    assert!(
        yaml.contains("name: etcd") && yaml.contains("state: ready"),
        "status -o yaml: {yaml}"
    );
    let table = node.k0x().arg("status").output().unwrap();
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("etcd ") && l.contains(" ready ")),
        "status table: {table}"
    );

    let health = node.etcdctl(&["endpoint", "health"]);
    assert!(
        health.status.success(),
        "etcdctl endpoint health: {}{}",
        String::from_utf8_lossy(&health.stdout),
        stderr(&health)
    );
    node.etcd_put("/k0x-test/kept", "across-restarts");

    assert_clean_stop(&mut node, Signal::SIGTERM);
    node.start(WORKER);
    node.wait_ready(&["etcd", "containerd"]);
    assert_eq!(node.etcd_get("/k0x-test/kept"), "across-restarts");
}

/// A plain-HTTP request, a client without a certificate, a client certificate from another
/// etcd CA and one from the cluster CA are all refused; the k0x client certificate works.
#[test]
fn etcd_refuses_clients_without_an_etcd_ca_certificate() {
    let Some(mut node) = Node::new("etcd_refuses_clients_without_an_etcd_ca_certificate") else {
        return;
    };
    node.start(&[]);
    node.wait_ready(&["etcd"]);
    let data = node.layout();
    let etcd_ca = data.pki_cert(pki_names::ETCD_CA);

    let plain = plain_http_health(node.ports.etcd_client);
    assert!(
        !plain.contains("\"health\""),
        "plain HTTP got a health answer: {plain}"
    );

    let other = tempfile::tempdir().unwrap();
    let init = Command::new(common::K0X)
        .arg("--data-dir")
        .arg(other.path())
        .arg("--config")
        .arg(&node.config)
        .args(["pki", "init"])
        .output()
        .unwrap();
    assert!(init.status.success(), "pki init: {}", stderr(&init));
    let other = k0x_config::DataDir::new(other.path());
    let wrong_clients = [
        (
            "a client certificate of another etcd CA",
            other.pki_cert(pki_names::ETCD_K0X_CLIENT),
            other.pki_key(pki_names::ETCD_K0X_CLIENT),
        ),
        (
            "a client certificate of the cluster CA",
            data.pki_cert(pki_names::APISERVER_KUBELET_CLIENT),
            data.pki_key(pki_names::APISERVER_KUBELET_CLIENT),
        ),
    ];
    for (what, cert, key) in &wrong_clients {
        let out = node.etcdctl_as(
            &etcd_ca,
            cert,
            key,
            &["get", "/", "--prefix", "--keys-only"],
        );
        assert!(!out.status.success(), "etcd accepted {what}");
    }
    let no_cert = Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .arg(format!(
            "--endpoints=https://127.0.0.1:{}",
            node.ports.etcd_client
        ))
        .arg(format!("--cacert={}", etcd_ca.display()))
        .args(["--dial-timeout=5s", "--command-timeout=10s"])
        .args(["get", "/", "--prefix", "--keys-only"])
        .output()
        .unwrap();
    assert!(
        !no_cert.status.success(),
        "etcd accepted a client without a certificate"
    );
    // The control: the same call with the k0x client certificate succeeds.
    let good = node.etcdctl(&["get", "/", "--prefix", "--keys-only"]);
    assert!(
        good.status.success(),
        "k0x client refused: {}",
        stderr(&good)
    );
}

/// What a plain-HTTP client gets from the TLS port (empty when the connection is dropped).
fn plain_http_health(port: u16) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let request = "GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
    stream.write_all(request.as_bytes()).unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer).into_owned()
}

#[test]
fn killed_etcd_and_containerd_are_restarted_with_their_data() {
    let Some(mut node) = Node::new("killed_etcd_and_containerd_are_restarted") else {
        return;
    };
    if k0x_testkit::require_binaries(
        "killed_etcd_and_containerd_are_restarted",
        &["ctr", "busybox"],
    )
    .is_none()
    {
        return;
    }
    node.start(WORKER);
    let before = node.wait_ready(&["etcd", "containerd"]);
    node.etcd_put("/k0x-test/survivor", "still-here");
    let busybox = k0x_testkit::find_binary("busybox").unwrap();
    node.import_busybox(&busybox);

    for name in ["etcd", "containerd"] {
        let old = pid(&before, name);
        kill(Pid::from_raw(old as i32), Signal::SIGKILL).unwrap();
        let after = node.wait_status(&format!("{name} restarted"), |s| {
            let view = component(s, name);
            view["state"] == "ready"
                && view["restarts"].as_u64().is_some_and(|r| r >= 1)
                && view["pid"].as_u64().is_some_and(|p| p != u64::from(old))
        });
        assert!(
            component(&after, name)["lastExit"]
                .as_str()
                .is_some_and(|e| e.contains("SIGKILL")),
            "{name}: last exit should say SIGKILL: {:#}",
            component(&after, name)
        );
    }
    assert_eq!(node.etcd_get("/k0x-test/survivor"), "still-here");
    let images = node.ctr().args(["images", "ls", "-q"]).output().unwrap();
    assert!(
        String::from_utf8_lossy(&images.stdout).contains(IMAGE),
        "the imported image is gone after the containerd restart: {}",
        String::from_utf8_lossy(&images.stdout)
    );
    assert_clean_stop(&mut node, Signal::SIGTERM);
}

#[test]
fn sigterm_and_sigint_stop_in_reverse_order_and_exit_zero() {
    let Some(mut node) = Node::new("sigterm_and_sigint_stop_in_reverse_order") else {
        return;
    };
    for signal in [Signal::SIGTERM, Signal::SIGINT] {
        let log_before = node.log().len();
        node.start(WORKER);
        node.wait_ready(&["etcd", "containerd"]);
        assert_clean_stop(&mut node, signal);
        let log = node.log()[log_before..].to_owned();
        let etcd = common::log_events(&log, "etcd", "stopped");
        let containerd = common::log_events(&log, "containerd", "stopped");
        assert!(
            etcd.len() == 1 && containerd.len() == 1,
            "one stop each expected after {signal}:\n{log}"
        );
        assert!(
            containerd[0].0 <= etcd[0].0,
            "{signal}: containerd (started last) must stop before etcd: {containerd:?} {etcd:?}"
        );
    }
}

/// Closing the terminal of a foreground `k0x server` (SIGHUP) is an ordered stop like SIGTERM:
/// components stopped, socket and pid files removed, exit 0.
#[test]
fn a_hangup_stops_in_order_like_sigterm() {
    let Some(mut node) = Node::new("a_hangup_stops_in_order_like_sigterm") else {
        return;
    };
    node.start(&[]);
    node.wait_ready(&["etcd"]);
    assert_clean_stop(&mut node, Signal::SIGHUP);
    let log = node.log();
    assert!(log.contains("SIGHUP: stopping"), "{log}");
    assert_eq!(
        common::log_events(&log, "etcd", "stopped").len(),
        1,
        "{log}"
    );
    let pid_files: Vec<_> = std::fs::read_dir(&node.run)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".pid"))
        .collect();
    assert!(pid_files.is_empty(), "pid files left: {pid_files:?}");
}

#[test]
fn a_second_server_on_the_same_data_dir_exits_at_once() {
    let Some(mut node) = Node::new("a_second_server_on_the_same_data_dir_exits_at_once") else {
        return;
    };
    node.start(&[]);
    let first = node.wait_ready(&["etcd"]);
    let second = node.run_server(&[]);
    assert!(!second.status.success(), "a second server started");
    let text = stderr(&second);
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one clear line expected:\n{text}");
    assert!(
        lines[0].contains(&node.data.display().to_string()),
        "the line must name the data dir: {}",
        lines[0]
    );
    // The first server is untouched: same etcd, admin socket still answering.
    let again = node.wait_ready(&["etcd"]);
    assert_eq!(pid(&again, "etcd"), pid(&first, "etcd"));
    assert_eq!(again["pid"], first["pid"]);
}

#[test]
fn disabled_components_are_reported_and_unknown_names_refused() {
    let Some(mut node) = Node::new("disabled_components_are_reported") else {
        return;
    };
    let unknown = node.run_server(&["--enable-worker", "--disable-components", "etcd,kubeproxy"]);
    assert!(
        !unknown.status.success(),
        "an unknown component was accepted"
    );
    let text = stderr(&unknown);
    assert_eq!(text.trim().lines().count(), 1, "one line expected:\n{text}");
    for expected in [
        "kubeproxy",
        "etcd",
        "containerd",
        "kube-apiserver",
        "kubelet",
    ] {
        assert!(text.contains(expected), "{expected:?} missing from: {text}");
    }
    assert!(
        !node.run.join("k0x.sock").exists() && !node.data.join("pki").exists(),
        "a refused start left an admin socket or a PKI behind"
    );
    assert_eq!(node.marked_processes(), Vec::<u32>::new());

    node.start(&["--enable-worker", "--disable-components", "containerd"]);
    let status = node.wait_ready(&["etcd"]);
    let containerd = component(&status, "containerd");
    assert_eq!(containerd["state"], "disabled", "{containerd:#}");
    assert!(containerd["pid"].is_null());
    assert_eq!(
        status["components"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["name"] == "containerd")
            .count(),
        1,
        "containerd listed once"
    );
    assert_eq!(state(&status, "kubelet"), "missing");
    assert!(
        !node.run.join("containerd/containerd.sock").exists(),
        "a disabled containerd is running"
    );
    assert_clean_stop(&mut node, Signal::SIGTERM);
}

/// A signal while k0x still waits for a component to become ready stops what was started and
/// exits 0.
#[test]
fn a_signal_during_start_stops_cleanly() {
    let Some(mut node) = Node::new("a_signal_during_start_stops_cleanly") else {
        return;
    };
    let fixture =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/never-ready.sh");
    std::fs::copy(&fixture, node.bin().join("kube-apiserver")).unwrap();
    node.start(&[]);
    node.wait_status("kube-apiserver launched, not ready", |s| {
        state(s, "etcd") == "ready" && state(s, "kube-apiserver") == "starting"
    });
    assert_clean_stop(&mut node, Signal::SIGTERM);
    assert!(
        node.log().contains("signal during start"),
        "the stop did not happen during start:\n{}",
        node.log()
    );
}

/// k0x killed with SIGKILL takes its children with it (parent-death signal); a new k0x on the
/// same data dir starts cleanly and finds the data.
#[test]
fn a_new_server_recovers_after_k0x_was_killed() {
    let Some(mut node) = Node::new("a_new_server_recovers_after_k0x_was_killed") else {
        return;
    };
    node.start(WORKER);
    node.wait_ready(&["etcd", "containerd"]);
    node.etcd_put("/k0x-test/after-kill", "kept");
    let killed = node.stop(Signal::SIGKILL);
    assert!(!killed.success());
    assert!(
        common::wait_until(|| node.marked_processes().is_empty()),
        "children outlived a killed k0x: {:?}",
        node.marked_processes()
    );
    node.start(WORKER);
    node.wait_ready(&["etcd", "containerd"]);
    assert_eq!(node.etcd_get("/k0x-test/after-kill"), "kept");
    assert_clean_stop(&mut node, Signal::SIGTERM);
}

/// Everything that can refuse a start (the configuration, the join) is checked before the
/// payload is unpacked: a refused start leaves no binaries behind, and `k0x server` refuses a
/// file with the very line `k0x config validate` prints for it.
#[test]
fn a_refused_start_unpacks_no_payload() {
    let Some(node) = Node::new("a_refused_start_unpacks_no_payload") else {
        return;
    };
    let payload = node.root.join("payload.tar.zst");
    let staged = Command::new("bash")
        .arg(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("embedded-bins/stage"))
        .args(["--level", "3", "--only", "runc", "--out"])
        .arg(&payload)
        .arg("--from-system")
        .output()
        .unwrap();
    assert!(staged.status.success(), "stage: {}", stderr(&staged));
    std::fs::remove_dir_all(node.bin()).unwrap();
    let server = |args: &[&str]| {
        node.k0x()
            .arg("server")
            .args(args)
            .env("K0X_PAYLOAD", &payload)
            .output()
            .unwrap()
    };

    node.edit_config("    address: \"\"\n", "    address: cp.example.com\n");
    let refused = server(&[]);
    assert!(!refused.status.success());
    let validate = node.k0x().args(["config", "validate"]).output().unwrap();
    let diagnostic = stderr(&validate)
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned();
    assert!(diagnostic.contains("spec.api.sans"), "{diagnostic}");
    assert_eq!(stderr(&refused).trim_end(), format!("Error: {diagnostic}"));
    assert!(
        !node.bin().exists(),
        "a refused address unpacked the payload"
    );
    node.edit_config("    address: cp.example.com\n", "    address: \"\"\n");

    let token = k0x_join::Token::generate(
        k0x_join::TokenRole::Controller,
        vec!["https://127.0.0.1:1".into()],
        "00".repeat(32),
    );
    let failed = server(&[&token.encode()]);
    assert!(!failed.status.success());
    assert!(
        stderr(&failed).contains("joining the cluster as a controller failed"),
        "{}",
        stderr(&failed)
    );
    assert!(
        !node.bin().join("runc").exists(),
        "a failed join unpacked the payload"
    );
}

/// A controller whose data dir lies on a nearly full device is refused before etcd is started
/// (etcd would only exit with code 2), naming the directory and the way out.
#[test]
fn too_little_space_for_etcd_is_refused_up_front() {
    let Some(node) = Node::new("too_little_space_for_etcd_is_refused_up_front") else {
        return;
    };
    let small = node.root.join("small");
    std::fs::create_dir(&small).unwrap();
    let mount = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=64m", "tmpfs"])
        .arg(&small)
        .output()
        .unwrap();
    assert!(mount.status.success(), "mount: {}", stderr(&mount));
    let out = Command::new(common::K0X)
        .arg("--data-dir")
        .arg(small.join("data"))
        .arg("--run-dir")
        .arg(&node.run)
        .arg("--config")
        .arg(&node.config)
        .arg("server")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = stderr(&out);
    let line = err.lines().last().unwrap_or_default();
    assert!(
        line.contains("MiB are free on the device of")
            && line.contains(&small.join("data/etcd").display().to_string())
            && line.contains("--data-dir"),
        "{err}"
    );
    assert!(
        !small.join("data/pki").exists(),
        "refused after writing the PKI"
    );
}

/// etcd frozen with SIGSTOP is shown degraded by `k0x status` (not ready), and ready again once
/// it runs on; far below the restart threshold, it is not restarted.
#[test]
fn a_frozen_etcd_is_shown_degraded_and_recovers() {
    let Some(mut node) = Node::new("a_frozen_etcd_is_shown_degraded_and_recovers") else {
        return;
    };
    node.start(&[]);
    let ready = node.wait_ready(&["etcd"]);
    let etcd = Pid::from_raw(pid(&ready, "etcd") as i32);
    kill(etcd, Signal::SIGSTOP).unwrap();
    let degraded = node.wait_status("etcd degraded", |s| state(s, "etcd") == "degraded");
    kill(etcd, Signal::SIGCONT).unwrap();
    let message = component(&degraded, "etcd")["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(message.starts_with("unhealthy for "), "{message}");
    let again = node.wait_ready(&["etcd"]);
    assert_eq!(
        pid(&again, "etcd"),
        pid(&ready, "etcd"),
        "restarted though it recovered"
    );
    assert_eq!(component(&again, "etcd")["restarts"], 0);
    assert_clean_stop(&mut node, Signal::SIGTERM);
}
