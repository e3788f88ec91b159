//! Extraction against real payloads staged `--from-system` from the host's Debian packages (runc,
//! CNI plugins): corruption, truncation, a missing payload, kill -9 mid-way, files changed on
//! disk, two extracting processes, a noexec data dir and a full disk.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use k0x_assets::{AssetsError, Payload, Progress, extract};
use k0x_config::DataDir;
use sha2::{Digest, Sha256};
use tempfile::TempDir;

const TOOL: &str = env!("CARGO_BIN_EXE_k0x-payload");

fn stage_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../embedded-bins/stage")
}

/// Host binaries every test here stages; `None` (after skipping) when they are not installed.
fn prerequisites(test: &str) -> Option<()> {
    k0x_testkit::require_binaries(test, &["runc", "loopback", "host-local", "zstd", "tar"])
        .map(|_| ())
}

/// Stages `only` from `dirs`, then where [`host`] finds binaries (the built components first),
/// into `out` at a fast zstd level.
fn stage(out: &Path, only: &str, dirs: &[&Path]) -> PathBuf {
    let status = Command::new("bash")
        .arg(stage_script())
        .args(["--level", "3", "--only", only, "--out"])
        .arg(out)
        .arg("--from-system")
        .args(dirs)
        .args(k0x_testkit::components_dir())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("run embedded-bins/stage");
    assert!(status.success(), "stage {only} failed");
    out.to_path_buf()
}

/// A stand-in for the k0x binary with `payload` attached.
fn attached(dir: &Path, payload: &Path, name: &str) -> PathBuf {
    let exe = dir.join(format!("{name}.exe"));
    fs::copy("/bin/true", &exe).unwrap();
    let out = dir.join(name);
    k0x_assets::attach(&exe, payload, &out).unwrap();
    out
}

fn sha256(path: &Path) -> String {
    hex::encode(Sha256::digest(fs::read(path).unwrap()))
}

fn host(name: &str) -> PathBuf {
    k0x_testkit::find_binary(name).unwrap()
}

/// Every file in bin/ (including .manifest) with its digest: the "is bin/ intact" fingerprint.
fn snapshot(data: &DataDir) -> BTreeMap<String, String> {
    fs::read_dir(data.bin())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file() && p.file_name().unwrap() != ".lock")
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                sha256(&p),
            )
        })
        .collect()
}

fn leftovers(data: &DataDir) -> Vec<String> {
    fs::read_dir(data.bin())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".staging") || n.contains(".tmp"))
        .collect()
}

/// A payload whose `loopback` is really host-local: a different version of a component.
fn other_payload(tmp: &Path) -> PathBuf {
    let dir = tmp.join("other-bins");
    fs::create_dir_all(&dir).unwrap();
    fs::copy(host("host-local"), dir.join("loopback")).unwrap();
    stage(&tmp.join("other.tar.zst"), "runc,loopback", &[&dir])
}

fn flip_byte(path: &Path, at: u64) {
    let mut bytes = fs::read(path).unwrap();
    bytes[at as usize] ^= 0x5a;
    fs::write(path, bytes).unwrap();
}

#[test]
fn extracts_verified_files_and_a_warm_start_does_not_rewrite_them() {
    let Some(()) = prerequisites("extracts_verified_files") else {
        return;
    };
    let tmp = TempDir::new().unwrap();
    let payload = stage(
        &tmp.path().join("p.tar.zst"),
        "runc,loopback,host-local",
        &[],
    );
    let data = DataDir::new(tmp.path().join("data"));
    let first = extract(&Payload::open(&payload).unwrap(), &data, Progress::Silent).unwrap();
    assert_eq!(first.extracted, ["host-local", "loopback", "runc"]);
    for name in ["runc", "loopback", "host-local"] {
        let path = data.bin().join(name);
        assert_eq!(sha256(&path), sha256(&host(name)), "{name}");
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o750
        );
    }
    assert_eq!(
        fs::metadata(data.bin()).unwrap().permissions().mode() & 0o777,
        0o750
    );
    let out = Command::new(data.bin().join("runc"))
        .arg("--version")
        .output()
        .unwrap();
    assert!(out.status.success(), "extracted runc runs");

    let before = snapshot(&data);
    let warm = extract(&Payload::open(&payload).unwrap(), &data, Progress::Silent).unwrap();
    assert!(warm.extracted.is_empty());
    assert!(
        warm.rehashed.is_empty(),
        "unchanged files are trusted by size+mtime"
    );
    assert_eq!(warm.unchanged.len(), 3);
    assert_eq!(snapshot(&data), before);
    assert!(leftovers(&data).is_empty());
}

/// The stage script packs names with one content (as the Kubernetes multi-call binary's) as tar
/// hard links, stored once; extraction installs them as hard links to one file.
#[test]
fn one_binary_under_two_names_is_packed_once_and_installed_as_one_file() {
    let Some(()) = prerequisites("one_binary_two_names") else {
        return;
    };
    let tmp = TempDir::new().unwrap();
    let dir = tmp.path().join("same-bins");
    fs::create_dir_all(&dir).unwrap();
    fs::copy(host("host-local"), dir.join("host-local")).unwrap();
    fs::copy(host("host-local"), dir.join("loopback")).unwrap();
    let payload = stage(
        &tmp.path().join("p.tar.zst"),
        "loopback,host-local",
        &[&dir],
    );

    let listing = Command::new("sh")
        .arg("-c")
        .arg("zstd -dc \"$1\" | tar -tvf -")
        .arg("sh")
        .arg(&payload)
        .output()
        .unwrap();
    let listing = String::from_utf8_lossy(&listing.stdout);
    assert_eq!(
        listing.lines().filter(|l| l.starts_with('h')).count(),
        1,
        "one name is a link: {listing}"
    );

    let data = DataDir::new(tmp.path().join("data"));
    let report = extract(&Payload::open(&payload).unwrap(), &data, Progress::Silent).unwrap();
    let size = fs::metadata(host("host-local")).unwrap().len();
    assert_eq!(report.bytes_written, size, "written once");
    let inode = |name: &str| fs::metadata(data.bin().join(name)).unwrap().ino();
    assert_eq!(inode("loopback"), inode("host-local"));
    assert_eq!(
        sha256(&data.bin().join("loopback")),
        sha256(&host("host-local"))
    );
}

#[test]
fn a_flipped_byte_is_refused_and_the_previous_bin_stays() {
    let Some(()) = prerequisites("a_flipped_byte_is_refused") else {
        return;
    };
    let tmp = TempDir::new().unwrap();
    let good = stage(&tmp.path().join("good.tar.zst"), "runc,loopback", &[]);
    let data = DataDir::new(tmp.path().join("data"));
    extract(&Payload::open(&good).unwrap(), &data, Progress::Silent).unwrap();
    let before = snapshot(&data);

    let other = other_payload(tmp.path());
    let binary = attached(tmp.path(), &other, "k0x");
    let payload = Payload::open(&binary).unwrap();
    let start =
        fs::metadata(&binary).unwrap().len() - k0x_assets::TRAILER_LEN - payload.len().unwrap();
    for at in [
        start + 20,
        start + payload.len().unwrap() / 2,
        start + payload.len().unwrap() - 10,
    ] {
        let corrupt = tmp.path().join("corrupt");
        fs::copy(&binary, &corrupt).unwrap();
        flip_byte(&corrupt, at);
        let err = extract(&Payload::open(&corrupt).unwrap(), &data, Progress::Silent).unwrap_err();
        assert!(
            matches!(err, AssetsError::Corrupt { .. }),
            "byte {at}: {err}"
        );
        assert!(err.to_string().contains("unusable"), "{err}");
        assert_eq!(
            snapshot(&data),
            before,
            "bin/ changed after a refused payload (byte {at})"
        );
        assert!(leftovers(&data).is_empty());
    }
    // The intact copy of the same payload is accepted: the refusals above were the flipped byte.
    let report = extract(&payload, &data, Progress::Silent).unwrap();
    assert_eq!(report.extracted, ["loopback"]);
    assert_eq!(
        sha256(&data.bin().join("loopback")),
        sha256(&host("host-local"))
    );
}

#[test]
fn truncated_payloads_are_refused() {
    let Some(()) = prerequisites("truncated_payloads_are_refused") else {
        return;
    };
    let tmp = TempDir::new().unwrap();
    let good = stage(&tmp.path().join("good.tar.zst"), "runc,loopback", &[]);
    let data = DataDir::new(tmp.path().join("data"));
    extract(&Payload::open(&good).unwrap(), &data, Progress::Silent).unwrap();
    let before = snapshot(&data);
    let other = other_payload(tmp.path());

    // A bare payload cut in half.
    let bytes = fs::read(&other).unwrap();
    let cut = tmp.path().join("cut.tar.zst");
    fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let err = extract(&Payload::open(&cut).unwrap(), &data, Progress::Silent).unwrap_err();
    assert!(matches!(err, AssetsError::Corrupt { .. }), "{err}");
    assert_eq!(snapshot(&data), before);

    // An attached payload missing bytes in the middle: the trailer no longer fits the file.
    let binary = attached(tmp.path(), &other, "k0x");
    let bytes = fs::read(&binary).unwrap();
    let mid = bytes.len() / 2;
    let holed = tmp.path().join("holed");
    fs::write(&holed, [&bytes[..mid], &bytes[mid + 4096..]].concat()).unwrap();
    let err = Payload::open(&holed).unwrap_err();
    assert!(
        err.to_string().contains("does not match the file size"),
        "{err}"
    );

    // A binary cut at the end has lost its trailer: it carries no payload any more.
    let tail_cut = tmp.path().join("tail-cut");
    fs::write(&tail_cut, &bytes[..bytes.len() - 10]).unwrap();
    assert!(Payload::embedded_in(&tail_cut).unwrap().is_none());
    assert_eq!(snapshot(&data), before);
    assert!(leftovers(&data).is_empty());
}

#[test]
fn a_binary_without_payload_says_how_to_get_one() {
    let Some(()) = prerequisites("a_binary_without_payload") else {
        return;
    };
    let tmp = TempDir::new().unwrap();
    let plain = tmp.path().join("plain");
    fs::copy("/bin/true", &plain).unwrap();
    assert!(Payload::embedded_in(&plain).unwrap().is_none());
    let err = Payload::open(&plain).unwrap_err();
    assert!(
        err.to_string().contains("neither a tar.zst payload"),
        "{err}"
    );

    // The tool itself carries no payload; without K0X_PAYLOAD it must say so in one line.
    let out = Command::new(TOOL)
        .arg("extract")
        .arg(tmp.path().join("data"))
        .env_remove(k0x_assets::PAYLOAD_ENV)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("carries no payload")
            && stderr.contains("scripts/build.sh")
            && stderr.contains("K0X_PAYLOAD"),
        "{stderr}"
    );

    // K0X_PAYLOAD serves development.
    let payload = stage(&tmp.path().join("p.tar.zst"), "loopback", &[]);
    let out = Command::new(TOOL)
        .arg("extract")
        .arg(tmp.path().join("data"))
        .env(k0x_assets::PAYLOAD_ENV, &payload)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        sha256(&tmp.path().join("data/bin/loopback")),
        sha256(&host("loopback"))
    );
}

#[test]
fn kill_9_in_the_middle_then_rerun_gives_correct_files() {
    let Some(()) = prerequisites("kill_9_in_the_middle") else {
        return;
    };
    let tmp = TempDir::new().unwrap();
    let payload = stage(
        &tmp.path().join("p.tar.zst"),
        "runc,loopback,host-local",
        &[],
    );
    let data = DataDir::new(tmp.path().join("data"));
    let fifo = tmp.path().join("fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();

    // The child reads the payload from a FIFO we feed only half of, so it is provably mid-way
    // (a staged file exists, nothing committed) when it is killed.
    let mut child = Command::new(TOOL)
        .arg("extract")
        .arg(data.root())
        .arg(&fifo)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let guard = KillOnDrop(&mut child);
    let bytes = fs::read(&payload).unwrap();
    let mut writer = fs::OpenOptions::new().write(true).open(&fifo).unwrap();
    writer.write_all(&bytes[..bytes.len() / 2]).unwrap();
    let staged = wait_for_staged_file(&data);
    guard.0.kill().unwrap();
    guard.0.wait().unwrap();
    drop(writer);
    assert!(
        staged.exists(),
        "the interrupted extraction left its staging dir"
    );
    for name in ["runc", "loopback", "host-local"] {
        assert!(
            !data.bin().join(name).exists(),
            "{name} committed before the payload was verified"
        );
    }

    let report = extract(&Payload::open(&payload).unwrap(), &data, Progress::Silent).unwrap();
    assert_eq!(report.extracted.len(), 3);
    for name in ["runc", "loopback", "host-local"] {
        assert_eq!(
            sha256(&data.bin().join(name)),
            sha256(&host(name)),
            "{name}"
        );
    }
    assert!(leftovers(&data).is_empty(), "stale staging dir removed");
}

struct KillOnDrop<'c>(&'c mut std::process::Child);

impl Drop for KillOnDrop<'_> {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits until the child has a non-empty file in its staging dir; returns that dir.
fn wait_for_staged_file(data: &DataDir) -> PathBuf {
    for _ in 0..6000 {
        if let Ok(entries) = fs::read_dir(data.bin()) {
            for dir in entries
                .flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with(".staging"))
            {
                let has_file = fs::read_dir(dir.path())
                    .map(|files| {
                        files
                            .flatten()
                            .any(|f| f.metadata().is_ok_and(|m| m.len() > 0))
                    })
                    .unwrap_or(false);
                if has_file {
                    return dir.path();
                }
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    panic!("the extracting child never staged a file");
}

#[test]
fn a_binary_changed_on_disk_is_replaced() {
    let Some(()) = prerequisites("a_binary_changed_on_disk") else {
        return;
    };
    let tmp = TempDir::new().unwrap();
    let payload = stage(&tmp.path().join("p.tar.zst"), "runc,loopback", &[]);
    let data = DataDir::new(tmp.path().join("data"));
    let open = || Payload::open(&payload).unwrap();
    extract(&open(), &data, Progress::Silent).unwrap();

    // Appended to: size differs.
    fs::OpenOptions::new()
        .append(true)
        .open(data.bin().join("runc"))
        .unwrap()
        .write_all(b"x")
        .unwrap();
    let report = extract(&open(), &data, Progress::Silent).unwrap();
    assert_eq!(report.extracted, ["runc"]);
    assert_eq!(sha256(&data.bin().join("runc")), sha256(&host("runc")));

    // Same size, one byte changed in place: the mtime moved, the re-hash catches it.
    flip_byte(&data.bin().join("loopback"), 1000);
    let report = extract(&open(), &data, Progress::Silent).unwrap();
    assert_eq!(report.extracted, ["loopback"]);
    assert_eq!(
        sha256(&data.bin().join("loopback")),
        sha256(&host("loopback"))
    );

    // Touched but identical: re-hashed once, not rewritten.
    let runc = fs::File::options()
        .write(true)
        .open(data.bin().join("runc"))
        .unwrap();
    runc.set_modified(std::time::SystemTime::now() - std::time::Duration::from_secs(60))
        .unwrap();
    let report = extract(&open(), &data, Progress::Silent).unwrap();
    assert!(report.extracted.is_empty());
    assert_eq!(report.rehashed, ["runc"]);

    // A deleted bin/.manifest costs one re-hash of everything, nothing more.
    fs::remove_file(data.bin_manifest()).unwrap();
    let report = extract(&open(), &data, Progress::Silent).unwrap();
    assert!(report.extracted.is_empty());
    assert_eq!(report.rehashed.len(), 2);
}

#[test]
fn two_processes_extracting_at_once_stay_correct() {
    let Some(()) = prerequisites("two_processes_extracting_at_once") else {
        return;
    };
    let tmp = TempDir::new().unwrap();
    let payload = stage(
        &tmp.path().join("p.tar.zst"),
        "runc,loopback,host-local",
        &[],
    );
    let data = DataDir::new(tmp.path().join("data"));
    let spawn = || {
        Command::new(TOOL)
            .arg("extract")
            .arg(data.root())
            .arg(&payload)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };
    let (a, b) = (spawn(), spawn());
    let outputs = [a.wait_with_output().unwrap(), b.wait_with_output().unwrap()];
    let mut extracted = 0;
    for out in &outputs {
        assert!(out.status.success());
        let line = String::from_utf8_lossy(&out.stdout);
        extracted += line
            .split_whitespace()
            .nth(1)
            .unwrap()
            .parse::<usize>()
            .unwrap();
    }
    assert_eq!(
        extracted, 3,
        "the lock lets exactly one process write the files"
    );
    for name in ["runc", "loopback", "host-local"] {
        assert_eq!(
            sha256(&data.bin().join(name)),
            sha256(&host(name)),
            "{name}"
        );
    }
    assert!(leftovers(&data).is_empty());
}

/// A tmpfs mounted for one test, unmounted on drop (also when the test fails).
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, options: &str) -> Self {
        fs::create_dir_all(dir).unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", options, "k0x-test"])
            .arg(dir)
            .status()
            .unwrap();
        assert!(status.success(), "mount tmpfs {options}");
        Self(dir.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn a_noexec_data_dir_is_refused_in_one_line() {
    let Some(()) = prerequisites("a_noexec_data_dir") else {
        return;
    };
    if !k0x_testkit::require_root("a_noexec_data_dir") {
        return;
    }
    let tmp = TempDir::new().unwrap();
    let payload = stage(&tmp.path().join("p.tar.zst"), "loopback", &[]);
    let mnt = tmp.path().join("mnt");
    let _mount = Tmpfs::mount(&mnt, "noexec,size=16m");
    let data = DataDir::new(mnt.join("data"));
    let err = extract(&Payload::open(&payload).unwrap(), &data, Progress::Silent).unwrap_err();
    assert!(matches!(err, AssetsError::NoExec { .. }), "{err}");
    let line = err.to_string();
    assert!(
        line.contains("noexec") && line.contains(&mnt.display().to_string()),
        "{line}"
    );
    assert_eq!(line.lines().count(), 1);
    assert!(!data.bin().join("loopback").exists());
}

#[test]
fn a_full_disk_is_reported_and_the_previous_bin_stays() {
    let Some(()) = prerequisites("a_full_disk") else {
        return;
    };
    if !k0x_testkit::require_root("a_full_disk") {
        return;
    }
    let tmp = TempDir::new().unwrap();
    let small = stage(&tmp.path().join("small.tar.zst"), "loopback", &[]);
    let big = stage(&tmp.path().join("big.tar.zst"), "runc,loopback", &[]);
    let mnt = tmp.path().join("mnt");
    let _mount = Tmpfs::mount(&mnt, "size=4m");
    let data = DataDir::new(mnt.join("data"));
    extract(&Payload::open(&small).unwrap(), &data, Progress::Silent).unwrap();
    let before = snapshot(&data);

    let err = extract(&Payload::open(&big).unwrap(), &data, Progress::Silent).unwrap_err();
    // Refused before the first byte is written: the device cannot hold what the payload needs.
    assert!(matches!(err, AssetsError::TooLittleSpace { .. }), "{err}");
    assert!(
        err.to_string().contains("MiB are free on the device of")
            && err.to_string().contains("--data-dir"),
        "{err}"
    );
    assert_eq!(snapshot(&data), before);
    assert!(
        leftovers(&data).is_empty(),
        "the partial staging dir is removed"
    );
    let out = Command::new(data.bin().join("loopback"))
        .arg("--version")
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout) + String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains("CNI loopback plugin"),
        "previous loopback still runs: {said}"
    );
}
