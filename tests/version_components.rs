//! `k0x version --components` against a payload staged `--from-system` from the host's packages:
//! real versions for what is there, the kube-* components marked missing with the way to add them.

use std::path::Path;
use std::process::{Command, Output};

const K0X: &str = env!("CARGO_BIN_EXE_k0x");

fn version_components(data_dir: &Path, payload: Option<&Path>, json: bool) -> Output {
    let mut cmd = Command::new(K0X);
    cmd.args(["version", "--components", "--data-dir"])
        .arg(data_dir);
    if json {
        cmd.args(["-o", "json"]);
    }
    match payload {
        Some(p) => cmd.env("K0X_PAYLOAD", p),
        None => cmd.env_remove("K0X_PAYLOAD"),
    };
    cmd.output().unwrap()
}

#[test]
fn lists_staged_components_with_real_versions_and_marks_kube_missing() {
    if k0x_testkit::require_binaries("version_components", &["etcd", "runc", "loopback", "zstd"])
        .is_none()
    {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let payload = tmp.path().join("p.tar.zst");
    let status = Command::new("bash")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("embedded-bins/stage"))
        .args(["--level", "3", "--only", "etcd,runc,loopback", "--out"])
        .arg(&payload)
        .arg("--from-system")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let host_etcd = String::from_utf8(
        Command::new("etcd")
            .arg("--version")
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let etcd_version = host_etcd
        .lines()
        .next()
        .unwrap()
        .rsplit(' ')
        .next()
        .unwrap()
        .to_owned();

    let out = version_components(&tmp.path().join("data"), Some(&payload), false);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let line = |name: &str| {
        text.lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .unwrap_or_else(|| panic!("no {name} line in:\n{text}"))
            .to_owned()
    };
    assert!(
        line("etcd").contains(&etcd_version) && line("etcd").contains("3.5.25"),
        "{text}"
    );
    assert!(line("runc").contains("in-payload"), "{text}");
    for kube in [
        "kube-apiserver",
        "kube-scheduler",
        "kube-controller-manager",
        "kubelet",
    ] {
        assert!(
            line(kube).contains("MISSING") && line(kube).contains("1.34.2"),
            "{text}"
        );
    }
    assert!(
        text.contains("--from-system DIR") && text.contains("--disable-components"),
        "{text}"
    );

    let out = version_components(&tmp.path().join("data"), Some(&payload), true);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let components = json["components"].as_array().unwrap();
    let etcd = components.iter().find(|c| c["name"] == "etcd").unwrap();
    assert_eq!(etcd["present_version"], etcd_version.as_str());
    assert_eq!(etcd["expected_version"], "3.5.25");
    assert_eq!(etcd["sha256"].as_str().unwrap().len(), 64);
    let kubelet = components.iter().find(|c| c["name"] == "kubelet").unwrap();
    assert_eq!(kubelet["status"], "missing");
    assert!(kubelet["hint"].as_str().unwrap().contains("K0X_PAYLOAD"));
}

#[test]
fn a_binary_without_payload_says_so_and_still_lists_what_it_expects() {
    let tmp = tempfile::tempdir().unwrap();
    let out = version_components(&tmp.path().join("data"), None, false);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("carries no payload (stripped or built without one)"),
        "{text}"
    );
    assert!(
        text.contains("scripts/build.sh") && text.contains("K0X_PAYLOAD=FILE"),
        "{text}"
    );
    for name in [
        "etcd",
        "containerd",
        "runc",
        "bridge",
        "kubectl",
        "kube-apiserver",
    ] {
        assert!(
            text.lines()
                .any(|l| l.starts_with(name) && l.contains("MISSING")),
            "{name}: {text}"
        );
    }
}
