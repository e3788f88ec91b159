//! `k0x config create|validate` run as a user runs them: the built binary, real files, stdin.

use std::io::Write;
use std::process::{Command, Output, Stdio};

fn k0x(args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_k0x"))
        .args(args)
        .env_remove("K0X_CONFIG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("k0x runs");
    let mut pipe = child.stdin.take().expect("stdin is piped");
    pipe.write_all(stdin.unwrap_or("").as_bytes())
        .expect("stdin accepts the input");
    drop(pipe);
    child.wait_with_output().expect("k0x finishes")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn default_yaml() -> String {
    let out = k0x(&["config", "create"], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    text(&out.stdout)
}

#[test]
fn created_config_validates_from_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("k0x.yaml");
    std::fs::write(&file, default_yaml()).unwrap();
    let file = file.to_str().unwrap();
    for args in [
        vec!["config", "validate", "--config", file],
        vec!["config", "validate", file],
        vec!["--config", file, "config", "validate"],
    ] {
        let out = k0x(&args, None);
        assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
        assert_eq!(text(&out.stdout), format!("{file}: valid\n"));
    }
}

#[test]
fn created_config_validates_from_stdin() {
    let yaml = default_yaml();
    for args in [
        vec!["config", "validate", "-"],
        vec!["config", "validate", "--config", "-"],
    ] {
        let out = k0x(&args, Some(&yaml));
        assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
        assert_eq!(text(&out.stdout), "<stdin>: valid\n");
        assert_eq!(text(&out.stderr), "");
    }
}

#[test]
fn bad_config_exits_non_zero_with_one_line_per_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.yaml");
    std::fs::write(
        &file,
        "apiVersion: k0x.io/v1beta1\nkind: ClusterConfig\nspec:\n  network:\n    podCIDR: 10.96.0.0/16\n  api:\n    port: 99999\n",
    )
    .unwrap();
    let file = file.to_str().unwrap();
    let out = k0x(&["config", "validate", file], None);
    assert!(!out.status.success());
    assert_eq!(text(&out.stdout), "");
    let stderr = text(&out.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 3, "{stderr}");
    assert!(
        lines[0].starts_with(&format!(
            "{file}:5:14: spec.network.podCIDR: pod CIDR 10.96.0.0/16 overlaps"
        )),
        "{stderr}"
    );
    assert!(
        lines[1].starts_with(&format!(
            "{file}:7:11: spec.api.port: invalid value: integer `99999`"
        )),
        "{stderr}"
    );
    assert!(
        lines[2].starts_with(&format!("Error: {file}: 2 errors")),
        "{stderr}"
    );
}

#[test]
fn k0s_default_config_validates_with_warnings() {
    let yaml = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/crates/config/tests/fixtures/k0s-default.yaml"
    ));
    let out = k0x(&["config", "validate", "-"], Some(yaml));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    // Eight k0s-only sections, and its provider kuberouter (k0x runs flannel instead).
    assert_eq!(stderr.lines().count(), 9, "{stderr}");
    assert!(
        stderr.lines().all(|l| l.contains(": warning: k0s setting")),
        "{stderr}"
    );
}

#[test]
fn named_missing_file_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("absent.yaml");
    let file = file.to_str().unwrap();
    let out = k0x(&["--config", file, "config", "validate"], None);
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert_eq!(
        stderr.trim_end(),
        format!(
            "Error: {file}: cannot read the configuration: No such file or directory (create it with `k0x config create > {file}`, or point --config at another file)"
        )
    );
}
