//! `embedded-bins/stage --online` against a local "upstream" (file:// URLs in a lock of our own):
//! downloads are verified against the pinned sha256 and the published checksum file, archive
//! members are extracted, and a mismatch stops the build.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use k0x_assets::Payload;
use sha2::{Digest, Sha256};
use tempfile::TempDir;

fn sha256(path: &Path) -> String {
    hex::encode(Sha256::digest(fs::read(path).unwrap()))
}

fn stage_online(lock: &Path, out: &Path) -> Output {
    Command::new("bash")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../embedded-bins/stage"))
        .args(["--online", "--arch", "amd64", "--level", "3", "--lock"])
        .arg(lock)
        .arg("--out")
        .arg(out)
        .output()
        .unwrap()
}

/// An upstream release directory: a CNI-style tarball, a bare binary and a SHA256SUMS file.
fn upstream(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let files = dir.join("files");
    fs::create_dir_all(&files).unwrap();
    fs::copy(
        k0x_testkit::find_binary("loopback").unwrap(),
        files.join("loopback"),
    )
    .unwrap();
    let tarball = dir.join("cni-plugins.tgz");
    let status = Command::new("tar")
        .arg("-czf")
        .arg(&tarball)
        .arg("-C")
        .arg(&files)
        .arg("./loopback")
        .status()
        .unwrap();
    assert!(status.success());
    let runc = dir.join("runc.amd64");
    fs::copy(k0x_testkit::find_binary("runc").unwrap(), &runc).unwrap();
    let sums = dir.join("SHA256SUMS");
    fs::write(
        &sums,
        format!(
            "{}  cni-plugins.tgz\n{}  runc.amd64\n",
            sha256(&tarball),
            sha256(&runc)
        ),
    )
    .unwrap();
    (tarball, runc, sums)
}

fn url(path: &Path) -> String {
    format!("file://{}", path.display())
}

#[test]
fn online_staging_verifies_downloads_and_extracts_members() {
    if k0x_testkit::require_binaries(
        "online_staging",
        &["runc", "loopback", "zstd", "tar", "curl"],
    )
    .is_none()
    {
        return;
    }
    let tmp = TempDir::new().unwrap();
    let (tarball, runc, sums) = upstream(tmp.path());
    let lock = tmp.path().join("test.lock");
    fs::write(
        &lock,
        format!(
            "# test lock\nloopback 1.8.0 amd64 {} - {} ./loopback\nrunc 1.3.4 amd64 {} {} {} -\n",
            url(&tarball),
            url(&sums),
            url(&runc),
            sha256(&runc),
            url(&sums)
        ),
    )
    .unwrap();
    let out = tmp.path().join("out/payload.tar.zst");
    let result = stage_online(&lock, &out);
    assert!(
        result.status.success(),
        "{}",
        String::from_utf8_lossy(&result.stderr)
    );

    let manifest = Payload::open(&out).unwrap().read_manifest().unwrap();
    assert_eq!(manifest.mode, "online");
    let names: Vec<_> = manifest.files.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, ["loopback", "runc"]);
    for file in &manifest.files {
        assert_eq!(file.source, "lock-download");
        let host = k0x_testkit::find_binary(&file.name).unwrap();
        assert_eq!(file.sha256, sha256(&host), "{}", file.name);
    }
    let runc_entry = manifest.file("runc").unwrap();
    assert_eq!(runc_entry.lock_version, "1.3.4");
    assert!(
        runc_entry.version.chars().next().unwrap().is_ascii_digit(),
        "{}",
        runc_entry.version
    );
}

#[test]
fn a_download_not_matching_the_lock_or_the_published_sums_is_refused() {
    if k0x_testkit::require_binaries(
        "online_staging_mismatch",
        &["runc", "loopback", "zstd", "tar", "curl"],
    )
    .is_none()
    {
        return;
    }
    let tmp = TempDir::new().unwrap();
    let (_, runc, sums) = upstream(tmp.path());
    let lock = tmp.path().join("pinned-wrong.lock");
    let wrong = "0".repeat(64);
    fs::write(
        &lock,
        format!("runc 1.3.4 amd64 {} {wrong} - -\n", url(&runc)),
    )
    .unwrap();
    let result = stage_online(&lock, &tmp.path().join("a/payload.tar.zst"));
    assert!(!result.status.success());
    assert!(String::from_utf8_lossy(&result.stderr).contains("checksum mismatch"));

    // The lock pins nothing; the published checksum file disagrees with the download.
    fs::write(&sums, format!("{wrong}  runc.amd64\n")).unwrap();
    let lock = tmp.path().join("sums-wrong.lock");
    fs::write(
        &lock,
        format!("runc 1.3.4 amd64 {} - {} -\n", url(&runc), url(&sums)),
    )
    .unwrap();
    let out = tmp.path().join("b/payload.tar.zst");
    let result = stage_online(&lock, &out);
    assert!(!result.status.success());
    assert!(String::from_utf8_lossy(&result.stderr).contains("checksum mismatch"));
    assert!(!out.exists());
}
