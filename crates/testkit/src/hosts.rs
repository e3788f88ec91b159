//! Several "hosts" on one machine for multi-host tests, each as close to a machine of its own as
//! namespaces make it:
//! - a network namespace, joined by a veth pair to a bridge that lives in a namespace of its own,
//!   so the test never adds a device or an address to the machine's own network;
//! - a mount namespace with its own `/var/lib`, `/var/log` and `/run` (directories of the host's
//!   scratch dir, [`Host::root`]), an `/etc` whose changes stay with the host (an overlay), and a
//!   `/sys` that shows the host's network devices (the cgroup hierarchies stay mounted in it);
//! - a UTS namespace with the host name;
//! - a cgroup subtree ([`Host::cgroup_root`]) every process started on the host joins, for the
//!   kubelet's `cgroupRoot`.
//!
//! So k0x runs there with its default paths (`/var/lib/k0x`, `/run/k0x`, `/etc/k0x/k0x.yaml`).
//! Addresses come from 203.0.113.0/24 (TEST-NET-3, documentation only), so they can never be a
//! real network's. Names carry the process id and a counter: tests running in parallel (or in
//! several test binaries) never share one. Dropping the [`Network`] kills what still runs in its
//! hosts' cgroups and removes every namespace, mount, cgroup and directory it made, also when the
//! test panics; the next run removes those of a run that was killed.

use std::io;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::cgroup::Subtree;

/// The first three octets of every host address; host `i` is `203.0.113.(i + 1)`.
const SUBNET: [u8; 3] = [203, 0, 113];
const PREFIX_LEN: u8 = 24;

static NETWORKS: AtomicUsize = AtomicUsize::new(0);

/// The prefix of every name a test run gives its namespaces, scratch dirs and cgroups.
const PREFIX: &str = "k0xt-";

/// One host: a network namespace with `eth0` on the shared bridge and loopback up, its mount and
/// UTS namespaces and its cgroup subtree.
#[derive(Debug, Clone)]
pub struct Host {
    /// The network namespace (`ip netns` name).
    pub netns: String,
    /// The host name commands started with [`Host::command`] see (the Kubernetes node name).
    pub hostname: String,
    pub address: Ipv4Addr,
    root: PathBuf,
    cgroup: Arc<Subtree>,
}

/// Hosts on a bridge; removed on drop.
#[derive(Debug)]
pub struct Network {
    bridge_netns: String,
    hosts: Vec<Host>,
    /// Every namespace created so far, deleted on drop even when creation failed half-way.
    created: Vec<String>,
    /// The hosts' scratch dirs, below the machine's temp dir.
    scratch: tempfile::TempDir,
}

impl Network {
    /// Creates one host per name in `hostnames`, all on one bridge.
    pub fn create(hostnames: &[&str]) -> io::Result<Self> {
        assert!(
            hostnames.len() < 250,
            "203.0.113.0/24 holds at most 250 test hosts"
        );
        remove_stale();
        let base = format!(
            "{PREFIX}{}-{}",
            std::process::id(),
            NETWORKS.fetch_add(1, Ordering::Relaxed)
        );
        let mut network = Self {
            bridge_netns: format!("{base}-br"),
            hosts: Vec::new(),
            created: Vec::new(),
            scratch: tempfile::Builder::new()
                .prefix(&format!("{base}-"))
                .tempdir()?,
        };
        network.add_netns(&network.bridge_netns.clone())?;
        let bridge = network.bridge_netns.clone();
        ip(&["-n", &bridge, "link", "add", "br0", "type", "bridge"])?;
        ip(&["-n", &bridge, "link", "set", "br0", "up"])?;
        for (index, hostname) in hostnames.iter().enumerate() {
            let host = Host {
                netns: format!("{base}-h{index}"),
                hostname: (*hostname).to_string(),
                address: Ipv4Addr::new(SUBNET[0], SUBNET[1], SUBNET[2], index as u8 + 1),
                root: network.scratch.path().join(format!("h{index}")),
                cgroup: Arc::new(Subtree::create(&format!("{base}-h{index}"))?),
            };
            network.add_netns(&host.netns)?;
            network.attach(&host, index)?;
            network.hosts.push(host.clone());
            host.make_namespaces()?;
        }
        Ok(network)
    }

    /// The hosts, in the order their names were given.
    pub fn hosts(&self) -> &[Host] {
        &self.hosts
    }

    fn add_netns(&mut self, name: &str) -> io::Result<()> {
        ip(&["netns", "add", name])?;
        self.created.push(name.to_string());
        ip(&["-n", name, "link", "set", "lo", "up"])
    }

    /// A veth pair: `eth0` in the host, `vN` on the bridge.
    fn attach(&self, host: &Host, index: usize) -> io::Result<()> {
        let bridge = &self.bridge_netns;
        let port = format!("v{index}");
        ip(&[
            "-n",
            bridge,
            "link",
            "add",
            &port,
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            &host.netns,
        ])?;
        ip(&["-n", bridge, "link", "set", &port, "master", "br0", "up"])?;
        let cidr = format!("{}/{PREFIX_LEN}", host.address);
        ip(&["-n", &host.netns, "addr", "add", &cidr, "dev", "eth0"])?;
        ip(&["-n", &host.netns, "link", "set", "eth0", "up"])?;
        // A default route makes eth0 the host's primary interface, as on a real machine.
        ip(&["-n", &host.netns, "route", "add", "default", "dev", "eth0"])
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        for host in &self.hosts {
            host.cgroup.end();
        }
        crate::unmount_below(self.scratch.path());
        for name in self.created.iter().rev() {
            if let Err(err) = ip(&["netns", "delete", name]) {
                eprintln!("cannot delete network namespace {name}: {err}");
            }
        }
    }
}

/// What a host's mount namespace gets at its creation, run in it as `sh -c SCRIPT sh ROOT`. The
/// cgroup mounts are moved aside while a new sysfs (the network namespace's view) is mounted on
/// `/sys`, then moved back onto it.
const MOUNT_SETUP: &str = r#"set -e
root="$1"
mount --rbind /sys/fs/cgroup "$root/cgroup"
mount -t sysfs sysfs /sys
mount --move "$root/cgroup" /sys/fs/cgroup
mount --bind "$root/var/lib" /var/lib
mount --bind "$root/var/log" /var/log
mount --bind "$root/run" /run
mount -t overlay overlay -o "lowerdir=/etc,upperdir=$root/etc,workdir=$root/etc-work" /etc
"#;

/// Joins the host's cgroup (`sh -c SCRIPT sh PROCS... -- PROGRAM ARGS...`), then runs the program.
const JOIN_CGROUP: &str =
    r#"while [ "$1" != -- ]; do echo $$ > "$1"; shift; done; shift; exec "$@""#;

impl Host {
    /// The host's scratch dir: its `var/lib`, `var/log`, `run` and `etc` (the changes to `/etc`
    /// only) are what the host sees at `/var/lib`, `/var/log`, `/run` and `/etc`.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the machine sees what the host has at `path` (absolute, below `/var/lib`,
    /// `/var/log`, `/run` or `/etc`; for `/etc` only what the host changed).
    pub fn path(&self, path: impl AsRef<Path>) -> PathBuf {
        let path = path.as_ref();
        self.root.join(path.strip_prefix("/").unwrap_or(path))
    }

    /// The host's cgroup path, for the kubelet's `cgroupRoot`.
    pub fn cgroup_root(&self) -> String {
        self.cgroup.root()
    }

    fn ns_file(&self, kind: &str) -> PathBuf {
        self.root.join("ns").join(kind)
    }

    /// The scratch dirs and the mount and UTS namespaces, kept by bind mounts of their files
    /// (as `ip netns` keeps network namespaces) on a private mount of the `ns` dir.
    fn make_namespaces(&self) -> io::Result<()> {
        for dir in [
            "ns", "cgroup", "var/lib", "var/log", "run", "etc", "etc-work",
        ] {
            std::fs::create_dir_all(self.root.join(dir))?;
        }
        let ns = self.root.join("ns");
        run(Command::new("mount").arg("--bind").arg(&ns).arg(&ns))?;
        run(Command::new("mount").arg("--make-private").arg(&ns))?;
        for kind in ["mnt", "uts"] {
            std::fs::write(self.ns_file(kind), "")?;
        }
        let netns = format!("--net=/run/netns/{}", self.netns);
        let mut mnt = std::ffi::OsString::from("--mount=");
        mnt.push(self.ns_file("mnt"));
        let mut uts = std::ffi::OsString::from("--uts=");
        uts.push(self.ns_file("uts"));
        run(Command::new("nsenter")
            .arg(netns)
            .arg("unshare")
            .arg(mnt)
            .arg(uts)
            .args(["--propagation", "private", "sh", "-c", MOUNT_SETUP, "sh"])
            .arg(&self.root))?;
        run(self.enter().args(["hostname", &self.hostname]))
    }

    /// `nsenter` into the host's network, mount and UTS namespaces.
    fn enter(&self) -> Command {
        let mut command = Command::new("nsenter");
        command
            .arg(format!("--net=/run/netns/{}", self.netns))
            .arg(format!("--mount={}", self.ns_file("mnt").display()))
            .arg(format!("--uts={}", self.ns_file("uts").display()))
            .arg("--");
        command
    }

    /// `program` run on this host: in its namespaces and its cgroup. `nsenter` and `sh` exec, so
    /// the child's pid is `program`'s.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut command = self.enter();
        command.args(["sh", "-c", JOIN_CGROUP, "sh"]);
        command.args(self.cgroup.procs_files());
        command.arg("--").arg(program);
        command
    }

    /// Runs `program args` in this host to completion, capturing its output.
    pub fn output(&self, program: impl AsRef<std::ffi::OsStr>, args: &[&str]) -> Output {
        self.command(program)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("nsenter runs")
    }
}

/// The test process a name of [`PREFIX`] belongs to.
fn owner(name: &str) -> Option<u32> {
    name.strip_prefix(PREFIX)?.split('-').next()?.parse().ok()
}

fn is_gone(pid: u32) -> bool {
    !Path::new(&format!("/proc/{pid}")).exists()
}

/// Removes what test processes that no longer exist left (a test run killed with SIGKILL cannot
/// run its drops): cgroups, mounts, scratch dirs, network namespaces. Those of live processes are
/// left alone.
fn remove_stale() {
    crate::cgroup::remove_stale(owner);
    if let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if owner(&name).is_some_and(is_gone) {
                crate::unmount_below(&entry.path());
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }
    remove_stale_namespaces();
}

/// Deletes the namespaces of test processes that no longer exist (a test run killed with
/// SIGKILL cannot run its drops). Namespaces of live processes are left alone.
fn remove_stale_namespaces() {
    let Ok(entries) = std::fs::read_dir("/run/netns") else {
        return;
    };
    for name in entries
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
    {
        if owner(&name).is_some_and(is_gone) {
            let _ = ip(&["netns", "delete", &name]);
        }
    }
}

/// Runs `ip ARGS`; a failure carries ip's own message.
fn ip(args: &[&str]) -> io::Result<()> {
    run(Command::new("ip").args(args))
}

/// Runs `command` to completion; a failure carries its own message.
fn run(command: &mut Command) -> io::Result<()> {
    let output = command.stdin(Stdio::null()).output()?;
    if output.status.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "{command:?}: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn netns_exists(name: &str) -> bool {
        Path::new("/run/netns").join(name).exists()
    }

    fn stdout(output: &Output) -> String {
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    }

    #[test]
    fn hosts_are_apart_and_everything_is_removed() {
        if !crate::require_root("hosts_are_apart_and_everything_is_removed")
            || crate::require_binaries("hosts", &["ip", "nsenter", "unshare", "busybox"]).is_none()
        {
            return;
        }
        let network = Network::create(&["alpha", "beta"]).unwrap();
        let [a, b] = network.hosts() else {
            panic!("two hosts")
        };
        assert_eq!(stdout(&a.output("hostname", &[])), "alpha");
        let ping = a.output("busybox", &["ping", "-c1", "-W5", &b.address.to_string()]);
        assert!(ping.status.success(), "{}", stdout(&ping));
        // Private /var/lib, /run and /etc, seen by the machine below the host's root.
        let write = "echo a > /var/lib/mark && echo a > /run/mark && mkdir -p /etc/k0x && echo a > /etc/k0x/mark";
        assert!(a.output("sh", &["-c", write]).status.success());
        assert_eq!(
            std::fs::read_to_string(a.path("/var/lib/mark")).unwrap(),
            "a\n"
        );
        assert_eq!(
            std::fs::read_to_string(a.path("/etc/k0x/mark")).unwrap(),
            "a\n"
        );
        assert!(!Path::new("/etc/k0x/mark").exists());
        let seen = b.output("sh", &["-c", "cat /var/lib/mark /run/mark /etc/k0x/mark"]);
        assert!(!seen.status.success(), "beta sees alpha's files");
        // /sys shows the host's own devices; the cgroup hierarchies are still there.
        let devices = stdout(&a.output("ls", &["/sys/class/net"]));
        assert_eq!(
            devices.split_whitespace().collect::<Vec<_>>(),
            ["eth0", "lo"]
        );
        let cgroup = stdout(&a.output("cat", &["/proc/self/cgroup"]));
        assert!(
            cgroup.contains(&format!("{}/host", a.cgroup_root())),
            "{cgroup}"
        );
        let names: Vec<String> = network.created.clone();
        let (root, cgroup_root) = (a.root().to_path_buf(), a.cgroup_root());
        assert_eq!(names.len(), 3);
        assert!(names.iter().all(|n| netns_exists(n)));
        let mut sleeper = a.command("sleep").arg("600").spawn().unwrap();
        let in_host = |pid: u32| {
            std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
                .is_ok_and(|text| text.contains(&cgroup_root))
        };
        for _ in 0..100 {
            if in_host(sleeper.id()) {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        assert!(in_host(sleeper.id()), "the sleeper never joined the host");
        drop(network);
        assert!(names.iter().all(|n| !netns_exists(n)));
        assert!(!root.exists());
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        assert!(!mounts.contains(&root.display().to_string()));
        assert!(
            !Path::new("/sys/fs/cgroup/pids")
                .join(&cgroup_root[1..])
                .exists()
        );
        let status = sleeper.try_wait().unwrap().expect("the sleeper was killed");
        assert!(!status.success());
    }

    #[test]
    fn a_panicking_test_still_removes_its_namespaces() {
        if !crate::require_root("a_panicking_test_still_removes_its_namespaces") {
            return;
        }
        let created = std::sync::Mutex::new(Vec::new());
        let result = std::panic::catch_unwind(|| {
            let network = Network::create(&["gamma"]).unwrap();
            created.lock().unwrap().clone_from(&network.created);
            panic!("test failure");
        });
        assert!(result.is_err());
        let created = created.into_inner().unwrap();
        assert_eq!(created.len(), 2);
        assert!(created.iter().all(|n| !netns_exists(n)));
    }
}
