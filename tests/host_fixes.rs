//! `k0x worker` prepares its host at start, and `--no-host-fixes` / `spec.host.applyFixes: false`
//! leave it alone. Each run happens on a scratch host (k0x_testkit::netns): `net.ipv4.ip_forward`
//! belongs to the network namespace, so the test sets it to 0 there whatever the machine's own
//! value is, and the machine's value is neither needed nor changed.
//!
//! No join token is given: a worker that got past its host checks stops at the join, so its
//! runs end on their own without starting a component.

use std::fs;
use std::path::Path;
use std::process::Output;

use k0x_testkit::hosts::{Host, Network};

const K0X: &str = env!("CARGO_BIN_EXE_k0x");
const FORWARDING: &str = "/proc/sys/net/ipv4/ip_forward";

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn forwarding(host: &Host) -> String {
    let out = host.output("cat", &[FORWARDING]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    text(&out.stdout).trim().to_owned()
}

fn turn_forwarding_off(host: &Host) {
    let out = host.output("sh", &["-c", &format!("echo 0 > {FORWARDING}")]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(forwarding(host), "0");
}

/// `k0x worker EXTRA` on `host` with its data and run dirs below `dir` and `config`.
fn worker(host: &Host, dir: &Path, config: &Path, extra: &[&str]) -> Output {
    host.command(K0X)
        .arg("worker")
        .args(extra)
        .arg("--data-dir")
        .arg(dir.join("data"))
        .arg("--run-dir")
        .arg(dir.join("run"))
        .arg("--config")
        .arg(config)
        .env_remove("K0X_LOG")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("k0x worker runs")
}

/// The default configuration with `applyFixes` set as given.
fn write_config(path: &Path, apply_fixes: bool) {
    let out = std::process::Command::new(K0X)
        .args(["config", "create"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let default = text(&out.stdout);
    assert!(default.contains("    applyFixes: true\n"), "{default}");
    let yaml = default.replace(
        "    applyFixes: true\n",
        &format!("    applyFixes: {apply_fixes}\n"),
    );
    fs::write(path, yaml).unwrap();
}

/// The last line a refused start printed: the one that tells what is wrong.
fn last_line(out: &Output) -> String {
    assert!(!out.status.success(), "k0x worker was expected to stop");
    text(&out.stderr)
        .lines()
        .last()
        .unwrap_or_default()
        .to_owned()
}

fn assert_refused_by_the_forwarding_check(out: &Output) {
    let line = last_line(out);
    for part in [
        "host checks failed: ",
        "sysctl:net.ipv4.ip_forward is 0 (want 1) (fix: sysctl -w net.ipv4.ip_forward=1",
        "host fixes are off (--no-host-fixes or spec.host.applyFixes: false)",
    ] {
        assert!(line.contains(part), "`{part}` missing in: {line}");
    }
}

#[test]
fn a_worker_start_turns_forwarding_on_unless_host_fixes_are_off() {
    let test = "a_worker_start_turns_forwarding_on";
    if !k0x_testkit::require_root(test)
        || k0x_testkit::require_binaries(test, &["ip", "nsenter", "unshare"]).is_none()
    {
        return;
    }
    let machine_value = fs::read_to_string(FORWARDING).unwrap();
    let network = Network::create(&["fixes"]).expect("scratch host");
    let host = &network.hosts()[0];
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("k0x.yaml");

    write_config(&config, true);
    turn_forwarding_off(host);
    let out = worker(host, dir.path(), &config, &["--no-host-fixes"]);
    assert_refused_by_the_forwarding_check(&out);
    assert_eq!(forwarding(host), "0", "--no-host-fixes changes nothing");

    write_config(&config, false);
    let out = worker(host, dir.path(), &config, &[]);
    assert_refused_by_the_forwarding_check(&out);
    assert_eq!(forwarding(host), "0", "applyFixes: false changes nothing");

    write_config(&config, true);
    let out = worker(host, dir.path(), &config, &[]);
    let log = text(&out.stderr);
    let fixed: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("fixed sysctl:net.ipv4.ip_forward"))
        .collect();
    assert_eq!(fixed.len(), 1, "one line for the change:\n{log}");
    assert!(
        fixed[0].contains(" INFO ") && fixed[0].contains("fixed sysctl:net.ipv4.ip_forward: 0 → 1"),
        "{}",
        fixed[0]
    );
    assert_eq!(forwarding(host), "1");
    let line = last_line(&out);
    assert!(
        line.contains("no join token"),
        "past the host checks, the worker stops at the join: {line}"
    );
    assert_eq!(
        fs::read_to_string(FORWARDING).unwrap(),
        machine_value,
        "the machine's own forwarding setting is not touched"
    );
}
