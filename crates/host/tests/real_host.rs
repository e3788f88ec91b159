//! Host integration against this machine: systemd-analyze on the rendered units, sysinfo's real
//! readings, and `--fix` applied inside a scratch network namespace so the host is not changed.

mod common;

use std::fs;
use std::path::Path;
use std::process::Command;

use common::ScratchNetns;
use k0x_config::DataDir;
use k0x_host::sysinfo::{Options, Parts, RealHost, Report, Status, fix, run_checks};
use k0x_host::units::{InitSystem, UnitRole, render_unit};

fn status_of(report: &Report, id: &str) -> Status {
    report
        .checks
        .iter()
        .find(|c| c.id == id)
        .unwrap_or_else(|| panic!("no check {id}"))
        .status
}

/// Runs `systemd-analyze verify` on `unit` (a file named *.service) and returns what it printed.
fn verify(unit: &Path) -> String {
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(unit)
        .output()
        .expect("run systemd-analyze");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stderr).trim().to_owned()
}

#[test]
fn systemd_analyze_accepts_the_rendered_units() {
    if k0x_testkit::require_binaries("systemd_analyze_accepts", &["systemd-analyze"]).is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // The ExecStart binary must exist and be executable; this test executable is.
    let binary = std::env::current_exe().unwrap();
    for role in UnitRole::ALL {
        let args: Vec<String> = match role {
            UnitRole::Controller => vec!["server".into(), "--enable-worker".into()],
            UnitRole::Worker => vec![
                "worker".into(),
                "--token-file".into(),
                "/etc/k0x/worker-token".into(),
            ],
        };
        let unit = render_unit(InitSystem::Systemd, role, &binary, &args).unwrap();
        let path = dir.path().join(format!("{}.service", role.service_name()));
        fs::write(&path, &unit).unwrap();
        let complaints = verify(&path);
        assert!(complaints.is_empty(), "{role:?}: {complaints}");

        // The same check notices a broken unit, so an empty answer above means something.
        let broken = dir
            .path()
            .join(format!("broken-{}.service", role.service_name()));
        fs::write(&broken, unit.replace("Type=notify", "Type=notfy")).unwrap();
        assert!(verify(&broken).contains("notfy"));
    }
}

#[test]
fn the_openrc_script_is_valid_shell() {
    let dir = tempfile::tempdir().unwrap();
    let args = vec![
        "server".to_owned(),
        "--data-dir".to_owned(),
        "/srv/k 0x".to_owned(),
    ];
    let script = render_unit(
        InitSystem::OpenRc,
        UnitRole::Controller,
        Path::new("/usr/bin/k0x"),
        &args,
    )
    .unwrap();
    let path = dir.path().join("k0xcontroller");
    fs::write(&path, &script).unwrap();
    let check = |path: &Path| Command::new("sh").arg("-n").arg(path).output().unwrap();
    let out = check(&path);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The variables OpenRC reads come out as the shell sees them.
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            ". {}; eval set -- $command_args; printf '%s|' \"$@\"",
            path.display()
        ))
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "server|--data-dir|/srv/k 0x|"
    );

    // A broken script is noticed, so the check above means something.
    let broken = dir.path().join("broken");
    fs::write(&broken, script.replace("depend() {", "depend() {{")).unwrap();
    assert!(!check(&broken).status.success());
}

#[test]
fn sysinfo_reports_this_machine() {
    let data = tempfile::tempdir().unwrap();
    let options = Options::new(
        DataDir::new(data.path().join("k0x")),
        Parts::ControllerWorker,
        &k0x_config::ClusterConfig::default().spec,
    );
    let report = run_checks(&RealHost, &options);
    eprintln!("{}", report.to_text());

    let swaps = fs::read_to_string("/proc/swaps").unwrap();
    let expected_swap = if swaps.lines().count() > 1 {
        Status::Warn
    } else {
        Status::Pass
    };
    assert_eq!(status_of(&report, "swap"), expected_swap);

    let forward = fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap();
    let expected_forward = if forward.trim() == "1" {
        Status::Pass
    } else {
        Status::Fail
    };
    assert_eq!(
        status_of(&report, "sysctl:net.ipv4.ip_forward"),
        expected_forward
    );

    let cgroups = report.checks.iter().find(|c| c.id == "cgroups").unwrap();
    let cgroup2_root = Command::new("stat")
        .args(["-fc", "%T", "/sys/fs/cgroup"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "cgroup2fs")
        .unwrap();
    assert_eq!(
        cgroups.detail.starts_with("v2"),
        cgroup2_root,
        "{}",
        cgroups.detail
    );

    let hostname = fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let host_check = report.checks.iter().find(|c| c.id == "hostname").unwrap();
    assert!(
        host_check.detail.contains(hostname.trim()),
        "{}",
        host_check.detail
    );
    // A temp dir is on an exec filesystem here (the test binary itself runs from one).
    assert_eq!(status_of(&report, "data-dir:exec"), Status::Pass);
    assert_eq!(status_of(&report, "clock"), Status::Pass);
}

const CHILD_ROOT_ENV: &str = "K0X_TEST_FIX_ROOT";

#[test]
fn fix_sets_ip_forward_inside_a_scratch_network_namespace() {
    if !k0x_testkit::require_root("fix_sets_ip_forward_in_netns")
        || k0x_testkit::require_binaries("fix_sets_ip_forward_in_netns", &["ip"]).is_none()
    {
        return;
    }
    let host_value = fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap();
    let root = tempfile::tempdir().unwrap();
    let netns = ScratchNetns::create("fix");
    netns.run_child_test("fix_child_in_netns", &[(CHILD_ROOT_ENV, root.path())]);

    let persisted = fs::read_to_string(root.path().join(fix::SYSCTL_FILE)).unwrap();
    assert!(
        persisted.lines().any(|l| l == "net.ipv4.ip_forward = 1"),
        "{persisted}"
    );
    assert_eq!(
        fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap(),
        host_value,
        "the host's own value must not change"
    );
}

/// Runs inside the scratch namespace, started by the test above.
#[test]
#[ignore = "run by fix_sets_ip_forward_inside_a_scratch_network_namespace inside a network namespace"]
fn fix_child_in_netns() {
    let root = std::env::var_os(CHILD_ROOT_ENV).expect("started by the namespace test");
    common::assert_in_scratch_netns();
    // A new namespace copies the host's IPv4 settings: make sure there is something to fix.
    fs::write("/proc/sys/net/ipv4/ip_forward", "0").unwrap();
    let data = tempfile::tempdir().unwrap();
    let options = Options::new(
        DataDir::new(data.path()),
        Parts::Worker,
        &k0x_config::ClusterConfig::default().spec,
    );
    let key = "sysctl:net.ipv4.ip_forward";
    let before = run_checks(&RealHost, &options);
    assert_eq!(
        status_of(&before, key),
        Status::Fail,
        "a fresh namespace forwards nothing"
    );
    let only_forwarding = Report {
        checks: before.checks.into_iter().filter(|c| c.id == key).collect(),
    };
    let fixed = fix::apply(
        &RealHost,
        &only_forwarding,
        fix::Keep::Persisted(Path::new(&root)),
    );
    assert_eq!(fixed.len(), 1);
    assert_eq!(fixed[0].error, None);
    let after = run_checks(&RealHost, &options);
    assert_eq!(status_of(&after, key), Status::Pass);
}
