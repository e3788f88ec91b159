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
        line("etcd").contains(&etcd_version) && line("etcd").contains(&pinned("etcd")),
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
            line(kube).contains("MISSING") && line(kube).contains(&pinned(kube)),
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
    assert_eq!(etcd["expected_version"], pinned("etcd").as_str());
    assert_eq!(etcd["sha256"].as_str().unwrap().len(), 64);
    let kubelet = components.iter().find(|c| c["name"] == "kubelet").unwrap();
    assert_eq!(kubelet["status"], "missing");
    assert!(kubelet["hint"].as_str().unwrap().contains("K0X_PAYLOAD"));
}

/// The version components.lock pins for this machine's architecture.
fn pinned(name: &str) -> String {
    pinned_record(name).version
}

fn pinned_record(name: &str) -> k0x_assets::lock::LockEntry {
    k0x_assets::lock::expected()
        .into_iter()
        .find(|e| e.name == name)
        .unwrap()
        .clone()
}

#[test]
fn a_go_binary_names_the_modules_it_was_built_from() {
    let Some(found) = k0x_testkit::require_binaries("go_build_info", &["etcd"]) else {
        return;
    };
    let info = k0x_assets::buildinfo::read(&found[0]).unwrap().unwrap();
    assert!(info.go_version.starts_with("go1."), "{info:?}");
    assert!(info.path.starts_with("go.etcd.io/etcd"), "{info:?}");
    // Built by embedded-bins/build from the package its lock record names, kubelet lists every
    // module with its go.sum hash.
    let kubelet = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/components/amd64/kubelet");
    if cfg!(target_arch = "x86_64") && kubelet.is_file() {
        let info = k0x_assets::buildinfo::read(&kubelet).unwrap().unwrap();
        assert_eq!(info.path, pinned_record("kubelet").package);
        let k8s = info
            .modules
            .iter()
            .find(|m| m.path == "k8s.io/kubernetes")
            .unwrap();
        assert_eq!(k8s.version, pinned("kubelet"));
        assert!(
            k8s.sum.as_deref().is_some_and(|s| s.starts_with("h1:")),
            "{k8s:?}"
        );
    }
    let shell = k0x_testkit::find_binary("sh").unwrap();
    assert_eq!(k0x_assets::buildinfo::read(&shell).unwrap(), None);
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

/// The images k0x builds from an embedded binary are tagged with that binary's pinned version,
/// so the tag a pod names says what runs in it.
#[test]
fn built_images_are_tagged_with_the_embedded_versions() {
    let images = k0x_config::ClusterConfig::default().spec.images;
    for (binary, reference) in [
        ("coredns", images.coredns),
        ("metrics-server", images.metrics_server),
    ] {
        let entry = k0x_assets::lock::expected()
            .into_iter()
            .find(|entry| entry.name == binary)
            .unwrap_or_else(|| panic!("{binary} is not in components.lock"));
        let version = entry.version.trim_start_matches('v');
        assert_eq!(
            reference,
            format!("k0x.io/{binary}:{version}-k0x"),
            "spec.images default of {binary}"
        );
    }
}
