//! `embedded-bins/build` with the real Go toolchain and module proxy, on the smallest component
//! (the CNI loopback plugin): builds are reproducible byte for byte and match the lock, an
//! unchanged component is served from the cache, an interrupted build leaves no cache entry,
//! and each kind of bad input is one line naming the component and the fix.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use sha2::{Digest, Sha256};
use tempfile::TempDir;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The module cache every build shares (downloads are not what these tests are about).
fn shared_module_cache() -> String {
    let out = Command::new("bash")
        .arg("-c")
        .arg(". embedded-bins/go-env && echo \"$GOMODCACHE\"")
        .current_dir(repo())
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// A build command with a cache of its own (fresh GOCACHE and binary cache).
fn build(cache: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new("bash");
    cmd.arg(repo().join("embedded-bins/build"))
        .args(args)
        .env("K0X_CACHE_DIR", cache)
        .env("GOMODCACHE", shared_module_cache())
        .env_remove("GOCACHE")
        .stdin(Stdio::null());
    cmd
}

fn run(mut cmd: Command) -> Output {
    cmd.output().unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn go_available(test: &str) -> bool {
    k0x_testkit::require_binaries(test, &["go"]).is_some()
}

/// The lock's amd64 record of `name`.
fn amd64_record(name: &str) -> String {
    let lock = fs::read_to_string(repo().join("embedded-bins/components.lock")).unwrap();
    lock.lines()
        .find(|l| {
            let mut fields = l.split_whitespace();
            fields.next() == Some(name) && fields.next() == Some("amd64")
        })
        .unwrap()
        .to_owned()
}

/// A lock holding the Go line and one record.
fn lock_with(dir: &Path, record: &str) -> PathBuf {
    let lock = dir.join("test.lock");
    let go_line = fs::read_to_string(repo().join("embedded-bins/components.lock"))
        .unwrap()
        .lines()
        .find(|l| l.starts_with("go "))
        .unwrap()
        .to_owned();
    fs::write(&lock, format!("{go_line}\n{record}\n")).unwrap();
    lock
}

fn sha256(path: &Path) -> String {
    hex::encode(Sha256::digest(fs::read(path).unwrap()))
}

#[test]
fn two_builds_from_empty_caches_are_byte_identical_and_match_the_lock() {
    if !go_available("reproducible_build") || !cfg!(target_arch = "x86_64") {
        return;
    }
    let tmp = TempDir::new().unwrap();
    let mut digests = Vec::new();
    for n in ["a", "b"] {
        let out_dir = tmp.path().join(format!("out-{n}"));
        let out = run(build(
            &tmp.path().join(format!("cache-{n}")),
            &[
                "--arch",
                "amd64",
                "--only",
                "loopback",
                "--out",
                out_dir.to_str().unwrap(),
            ],
        ));
        assert!(out.status.success(), "{}", stderr(&out));
        assert!(stderr(&out).contains("built loopback"), "{}", stderr(&out));
        digests.push(sha256(&out_dir.join("loopback")));
    }
    assert_eq!(digests[0], digests[1], "two builds of one lock differ");
    let pinned = amd64_record("loopback")
        .split_whitespace()
        .last()
        .unwrap()
        .to_owned();
    assert_eq!(
        digests[0], pinned,
        "the build does not reproduce the lock's sha256"
    );
}

#[test]
fn an_unchanged_component_comes_from_the_cache() {
    if !go_available("build_cache") {
        return;
    }
    let tmp = TempDir::new().unwrap();
    let cache = tmp.path().join("cache");
    let out_dir = tmp.path().join("out");
    let args = ["--only", "loopback", "--out", out_dir.to_str().unwrap()];
    let built = run(build(&cache, &args));
    assert!(built.status.success(), "{}", stderr(&built));
    let again = run(build(&cache, &args));
    assert!(again.status.success(), "{}", stderr(&again));
    assert!(
        stderr(&again).contains("cached loopback"),
        "{}",
        stderr(&again)
    );
    let sources = fs::read_to_string(out_dir.join("sources.tsv")).unwrap();
    assert!(
        sources.starts_with("loopback\tgithub.com/containernetworking/plugins@v"),
        "{sources}"
    );
}

#[test]
fn an_interrupted_build_leaves_no_cache_entry() {
    if !go_available("interrupted_build") {
        return;
    }
    let tmp = TempDir::new().unwrap();
    let cache = tmp.path().join("cache");
    let out_dir = tmp.path().join("out");
    let mut child = build(
        &cache,
        &["--only", "loopback", "--out", out_dir.to_str().unwrap()],
    )
    .stderr(Stdio::null())
    .spawn()
    .unwrap();
    std::thread::sleep(Duration::from_secs(3));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = child.wait().unwrap();
    assert!(!status.success());
    let entries: Vec<_> = fs::read_dir(cache.join("bins"))
        .map(|d| d.map(|e| e.unwrap().file_name()).collect())
        .unwrap_or_default();
    assert!(entries.is_empty(), "left behind: {entries:?}");
}

#[test]
fn bad_input_is_one_line_naming_the_component_and_the_fix() {
    if !go_available("build_bad_input") {
        return;
    }
    let tmp = TempDir::new().unwrap();
    let record = amd64_record("loopback");
    let wrappers = tmp.path().join("wrappers");
    let cni = wrappers.join("cni");
    fs::create_dir_all(&cni).unwrap();
    let go_mod = fs::read_to_string(repo().join("embedded-bins/go/cni/go.mod")).unwrap();
    let go_sum = fs::read_to_string(repo().join("embedded-bins/go/cni/go.sum")).unwrap();

    let cases: Vec<(&str, String, String, String, &str)> = vec![
        (
            "unknown wrapper",
            record.replacen(" cni ", " nosuch ", 1),
            go_mod.clone(),
            go_sum.clone(),
            "no wrapper module embedded-bins/go/nosuch",
        ),
        (
            "version the proxy does not serve",
            record.replace("v1.8.0", "v1.8.99"),
            go_mod.replace("plugins v1.8.0", "plugins v1.8.99"),
            go_sum.clone(),
            "the Go module proxy does not serve github.com/containernetworking/plugins v1.8.99",
        ),
        (
            "go.sum that does not match",
            record.clone(),
            go_mod.clone(),
            tamper_module_hash(&go_sum, "github.com/containernetworking/plugins v1.8.0 h1:"),
            "does not match go.sum",
        ),
    ];
    for (what, record, module, sums, expected) in cases {
        fs::write(cni.join("go.mod"), module).unwrap();
        fs::write(cni.join("go.sum"), sums).unwrap();
        let lock = lock_with(tmp.path(), &record);
        let mut cmd = build(
            &tmp.path().join("cache"),
            &["--arch", "amd64", "--lock", lock.to_str().unwrap(), "--out"],
        );
        cmd.arg(tmp.path().join("out"))
            .env("K0X_WRAPPERS_DIR", &wrappers);
        let out = run(cmd);
        let err = stderr(&out);
        let lines: Vec<_> = err.lines().filter(|l| !l.starts_with("building")).collect();
        assert!(!out.status.success(), "{what}: accepted");
        assert_eq!(lines.len(), 1, "{what}: not one line: {err}");
        assert!(
            lines[0].contains("loopback"),
            "{what}: names no component: {err}"
        );
        assert!(lines[0].contains(expected), "{what}: {err}");
    }
}

/// runc, built with cgo, without the C library it links (pkg-config finds no libseccomp) and
/// without a C compiler (CC names none): one line each, naming runc and what to install.
#[test]
fn a_missing_c_library_or_compiler_is_one_line_naming_the_component_and_the_fix() {
    if !go_available("build_missing_c") || !cfg!(target_arch = "x86_64") {
        return;
    }
    let tmp = TempDir::new().unwrap();
    let lock = lock_with(tmp.path(), &amd64_record("runc"));
    let cases = [
        (
            "no libseccomp",
            ("PKG_CONFIG_LIBDIR", tmp.path().join("no-pc-files")),
            "the C library libseccomp for amd64 is missing (install libseccomp-dev",
        ),
        (
            "no C compiler",
            ("CC", tmp.path().join("no-such-gcc")),
            "no C compiler for amd64 (install gcc",
        ),
    ];
    for (what, (var, value), expected) in cases {
        let mut cmd = build(
            &tmp.path().join(format!("cache-{var}")),
            &["--arch", "amd64", "--lock", lock.to_str().unwrap(), "--out"],
        );
        cmd.arg(tmp.path().join("out")).env(var, value);
        let out = run(cmd);
        let err = stderr(&out);
        let lines: Vec<_> = err.lines().filter(|l| !l.starts_with("building")).collect();
        assert!(!out.status.success(), "{what}: accepted");
        assert_eq!(lines.len(), 1, "{what}: not one line: {err}");
        assert!(lines[0].contains(" runc: "), "{what}: {err}");
        assert!(lines[0].contains(expected), "{what}: {err}");
        assert!(
            !tmp.path().join("out/runc").exists(),
            "{what}: a binary left"
        );
    }
}

/// go.sum with the hash on the line starting with `prefix` replaced by another valid-looking one.
fn tamper_module_hash(go_sum: &str, prefix: &str) -> String {
    let tampered: Vec<String> = go_sum
        .lines()
        .map(|line| match line.strip_prefix(prefix) {
            Some(_) => format!("{prefix}AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="),
            None => line.to_owned(),
        })
        .collect();
    assert_ne!(
        tampered.join("\n"),
        go_sum.trim_end(),
        "{prefix} not in go.sum"
    );
    tampered.join("\n") + "\n"
}
