//! The host subcommands through the real `k0x` binary: install below a root, sysinfo as JSON,
//! reset of a data dir, and the one-line errors users see.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Output};

fn k0x(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_k0x"))
        .args(args)
        .env_remove("K0X_DATA_DIR")
        .env_remove("K0X_RUN_DIR")
        .env_remove("K0X_CONFIG")
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn install_worker_below_a_root_then_reset_removes_it() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let token = dir.path().join("worker.token");
    fs::write(
        &token,
        format!("{}\n", join_token(k0x_join::TokenRole::Worker)),
    )
    .unwrap();
    fs::set_permissions(&token, fs::Permissions::from_mode(0o600)).unwrap();
    let root_arg = root.to_str().unwrap();
    let out = k0x(&[
        "install",
        "worker",
        "--token-file",
        token.to_str().unwrap(),
        "--root",
        root_arg,
        "--data-dir",
        "/srv/k0x",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));

    let unit = fs::read_to_string(root.join("etc/systemd/system/k0xworker.service")).unwrap();
    let exec = unit.lines().find(|l| l.starts_with("ExecStart=")).unwrap();
    assert!(
        exec.ends_with(" worker --token-file /etc/k0x/worker-token --data-dir /srv/k0x"),
        "{exec}"
    );
    let stored = root.join("etc/k0x/worker-token");
    assert_eq!(
        fs::metadata(&stored).unwrap().permissions().mode() & 0o777,
        0o600
    );

    // A different unit is refused with one line naming the file and the flag.
    let out = k0x(&[
        "install",
        "worker",
        "--token-file",
        token.to_str().unwrap(),
        "--root",
        root_arg,
    ]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("k0xworker.service") && err.contains("--force"),
        "{err}"
    );

    let data = dir.path().join("data");
    fs::create_dir_all(data.join("pki")).unwrap();
    // Point the network part at a CNI config naming a network nobody else has.
    fs::create_dir_all(data.join("etc")).unwrap();
    fs::write(
        data.join("etc/10-k0x.conflist"),
        r#"{"name":"k0x-cli-test-none","plugins":[]}"#,
    )
    .unwrap();
    let data_arg = data.to_str().unwrap();
    let run = dir.path().join("run");
    let run_arg = run.to_str().unwrap();
    let dry = k0x(&[
        "reset",
        "--dry-run",
        "--root",
        root_arg,
        "--data-dir",
        data_arg,
        "--run-dir",
        run_arg,
    ]);
    assert!(dry.status.success(), "{}", text(&dry.stderr));
    assert!(text(&dry.stdout).contains(&format!("would rm -r {data_arg}")));
    assert!(data.exists() && stored.exists());

    for _ in 0..2 {
        let out = k0x(&[
            "reset",
            "--root",
            root_arg,
            "--data-dir",
            data_arg,
            "--run-dir",
            run_arg,
        ]);
        assert!(out.status.success(), "{}", text(&out.stderr));
    }
    assert!(!data.exists() && !stored.exists());
}

/// A well-formed join token of `role` (for a controller nobody runs).
fn join_token(role: k0x_join::TokenRole) -> String {
    k0x_join::Token::generate(role, vec!["https://127.0.0.1:1".into()], "ab".repeat(32)).encode()
}

/// `k0x install` refuses what the unit it writes could only fail on, with the line `k0x server`
/// or `k0x worker` would print, and writes nothing.
#[test]
fn install_refuses_what_the_unit_would_fail_on() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let root_arg = root.to_str().unwrap();
    let file = |name: &str, text: &str| {
        let path = dir.path().join(name);
        fs::write(&path, text).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        path.to_str().unwrap().to_owned()
    };
    let worker = join_token(k0x_join::TokenRole::Worker);
    let truncated = file("truncated", &worker[..worker.len() / 2]);
    let garbled = file("garbled", &worker.replacen('e', "!", 3));
    let controller_token = file("controller", &join_token(k0x_join::TokenRole::Controller));
    let worker_token = file("worker", &worker);
    // The configuration the unit will read: --config on the installed system, below --root.
    fs::create_dir_all(root.join("etc/k0x")).unwrap();
    fs::write(
        root.join("etc/k0x/bad.yaml"),
        "apiVersion: k0x.io/v1beta1\nkind: ClusterConfig\nspec:\n  api:\n    port: 0\n",
    )
    .unwrap();
    let cases: [(Vec<&str>, &str); 6] = [
        (
            vec!["install", "worker", "--token-file", &truncated],
            "the join token is truncated",
        ),
        (
            vec!["install", "worker", "--token-file", &garbled],
            "the join token is garbled",
        ),
        (
            vec!["install", "worker", "--token-file", &controller_token],
            "this is a controller token; `k0x install worker` needs a token from `k0x token create --role worker`",
        ),
        (
            vec!["install", "controller", "--token-file", &worker_token],
            "this is a worker token",
        ),
        (
            vec!["install", "controller", "--disable-components", "kubeproxy"],
            "--disable-components: unknown component \"kubeproxy\"",
        ),
        (
            vec!["--config", "/etc/k0x/bad.yaml", "install", "controller"],
            "bad.yaml:5:11: spec.api.port: port 0 is not a usable port",
        ),
    ];
    for (args, expected) in cases {
        let out = k0x(&[args.as_slice(), &["--root", root_arg]].concat());
        assert!(!out.status.success(), "{args:?} was installed");
        let err = text(&out.stderr);
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(err.contains(expected), "{args:?}: {err}");
        let written = [
            "etc/systemd",
            "etc/k0x/worker-token",
            "etc/k0x/controller-token",
        ];
        assert!(
            written.iter().all(|path| !root.join(path).exists()),
            "{args:?} wrote below the root"
        );
    }
}

#[test]
fn install_carries_no_host_fixes_into_the_unit() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_str().unwrap();
    let out = k0x(&["install", "controller", "--no-host-fixes", "--root", root]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let unit =
        fs::read_to_string(dir.path().join("etc/systemd/system/k0xcontroller.service")).unwrap();
    let exec = unit.lines().find(|l| l.starts_with("ExecStart=")).unwrap();
    assert!(exec.ends_with(" server --no-host-fixes"), "{exec}");
}

#[test]
fn sysinfo_json_lists_every_check() {
    let dir = tempfile::tempdir().unwrap();
    let out = k0x(&[
        "sysinfo",
        "-o",
        "json",
        "--role",
        "worker",
        "--data-dir",
        dir.path().to_str().unwrap(),
    ]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let checks = json["checks"].as_array().unwrap();
    assert!(checks.iter().any(|c| c["id"] == "port:10250"));
    assert!(
        !checks.iter().any(|c| c["id"] == "port:6443"),
        "worker only"
    );
    let fatal = checks.iter().any(|c| c["fatal"] == true);
    assert_eq!(
        out.status.success(),
        !fatal,
        "exit status follows fatal failures"
    );
}

#[test]
fn reset_while_k0x_holds_the_lock_is_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    fs::create_dir_all(data.join("pki")).unwrap();
    // Another process holds the lock, as a running k0x does.
    let mut holder = Holder(
        // --no-fork: flock execs the shell, which execs sleep, so one process holds the lock.
        Command::new("flock")
            .arg("--no-fork")
            .arg(data.join(".lock"))
            .args(["-c", "echo locked; exec sleep 600"])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(holder.0.stdout.as_mut().unwrap()),
        &mut line,
    )
    .unwrap();
    assert_eq!(line, "locked\n");
    let root = dir.path().join("root");
    let out = k0x(&[
        "reset",
        "--root",
        root.to_str().unwrap(),
        "--data-dir",
        data.to_str().unwrap(),
        "--run-dir",
        dir.path().join("run").to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("k0x is running") && err.contains("k0x stop"),
        "{err}"
    );
    assert!(data.join("pki").exists());
}

/// Ends the lock holder when the test ends, also on failure.
struct Holder(std::process::Child);

impl Drop for Holder {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
