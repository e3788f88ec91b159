//! Helpers for tests that need root or real host binaries (etcd, containerd, runc, CNI, kubectl).
//!
//! Developers without root or packages get a clear "skipped" line. In CI (`CI` or `K0X_STRICT_TESTS`
//! set) a missing prerequisite is a failure, so a test tier can never pass by silently skipping.
//! [`hosts`] gives multi-host tests several hosts on one machine; [`pause`] builds the static pause
//! binary of k0x's pause image.

mod cgroup;
pub mod hosts;

pub mod cni;
pub mod image;
pub mod pause;

use std::path::{Path, PathBuf};

/// True when missing prerequisites must fail tests instead of skipping them.
pub fn strict() -> bool {
    ["CI", "K0X_STRICT_TESTS"]
        .iter()
        .any(|var| std::env::var(var).is_ok_and(|v| !v.is_empty() && v != "0" && v != "false"))
}

/// Returns false (after saying why) when the test must be skipped; panics in strict mode.
fn prerequisite(ok: bool, test: &str, why: &str) -> bool {
    if ok {
        return true;
    }
    assert!(
        !strict(),
        "{test}: prerequisite missing in strict mode: {why}"
    );
    eprintln!("SKIPPED {test}: {why} (set K0X_STRICT_TESTS=1 to make this a failure)");
    false
}

/// True when running as root; otherwise skips (or fails in strict mode).
pub fn require_root(test: &str) -> bool {
    prerequisite(nix::unistd::geteuid().is_root(), test, "needs root")
}

/// The directory of the components built from source (`embedded-bins/build`): `K0X_COMPONENTS_DIR`
/// when set, else the workspace's `target/components/<arch>` when it exists.
pub fn components_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("K0X_COMPONENTS_DIR").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(dir));
    }
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../target/components")
        .join(arch);
    dir.is_dir().then_some(dir)
}

/// Finds `name` among the built components first (the versions k0x ships), then on PATH (plus
/// the sbin directories and the Debian CNI directory).
pub fn find_binary(name: &str) -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    let host_dirs = path
        .split(':')
        .chain(["/usr/sbin", "/sbin", "/usr/lib/cni", "/opt/cni/bin"])
        .map(PathBuf::from);
    components_dir()
        .into_iter()
        .chain(host_dirs)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// The path of every binary in `names`, or `None` (after skipping or failing) if one is missing.
pub fn require_binaries(test: &str, names: &[&str]) -> Option<Vec<PathBuf>> {
    let found: Vec<_> = names.iter().map(|n| find_binary(n)).collect();
    let missing: Vec<_> = names
        .iter()
        .zip(&found)
        .filter(|(_, f)| f.is_none())
        .map(|(n, _)| *n)
        .collect();
    let why = format!(
        "missing binaries: {} (run embedded-bins/build or set K0X_COMPONENTS_DIR; scripts/setup-packages.sh for host tools)",
        missing.join(", ")
    );
    prerequisite(missing.is_empty(), test, &why).then(|| found.into_iter().flatten().collect())
}

/// Unmounts (lazily, deepest first) every mount point at or below `root`: what containerd and
/// runc leave behind when a test dies half-way.
pub fn unmount_below(root: &Path) {
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let root = root.display().to_string();
    let mut below: Vec<&str> = mounts
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|m| m.starts_with(&root))
        .collect();
    below.sort_by_key(|m| std::cmp::Reverse(m.len()));
    for mount in below {
        let _ = nix::mount::umount2(mount, nix::mount::MntFlags::MNT_DETACH);
    }
}

/// A TCP port that is free on every address, for a server a test configures.
///
/// Ports are drawn at random below the kernel's ephemeral range (32768 and up on Linux), where
/// outgoing connections take their source ports: a port the OS handed out with `bind(:0)` and
/// released can be taken again by any client socket before the server binds it. Each port is
/// handed out once per test process.
pub fn free_port() -> u16 {
    use std::net::{Ipv4Addr, TcpListener};
    use std::sync::Mutex;
    static HANDED_OUT: Mutex<Vec<u16>> = Mutex::new(Vec::new());
    let mut handed_out = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        let mut bytes = [0u8; 2];
        getrandom::fill(&mut bytes).expect("random bytes");
        let port = 20_000 + u16::from_le_bytes(bytes) % 12_000;
        let free = |ip: Ipv4Addr| TcpListener::bind((ip, port)).is_ok();
        if !handed_out.contains(&port) && free(Ipv4Addr::UNSPECIFIED) && free(Ipv4Addr::LOCALHOST) {
            handed_out.push(port);
            return port;
        }
    }
}

/// Held while a test runs components on fixed host ports (the kubelet's 10250, the scheduler's
/// and controller-manager's 10259 and 10257, kube-proxy's): one such node per machine at a time,
/// across test binaries and checkouts.
#[derive(Debug)]
pub struct FixedPortsLock(#[allow(dead_code)] nix::fcntl::Flock<std::fs::File>);

/// Waits for [`FixedPortsLock`]; the lock goes with the process, so a killed test never keeps it.
pub fn lock_fixed_ports() -> FixedPortsLock {
    let path = std::env::temp_dir().join("k0x-tests-fixed-ports.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .unwrap_or_else(|e| panic!("cannot open {}: {e}", path.display()));
    let lock = nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive)
        .unwrap_or_else(|(_, e)| panic!("cannot lock {}: {e}", path.display()));
    FixedPortsLock(lock)
}
