//! Several "hosts" on one machine for multi-host tests: one network namespace per host, joined by
//! veth pairs to a bridge that lives in a namespace of its own, so the test never adds a device
//! or an address to the machine's own network.
//!
//! Addresses come from 203.0.113.0/24 (TEST-NET-3, documentation only), so they can never be a
//! real network's. Namespace names carry the process id and a counter: tests running in parallel
//! (or in several test binaries) never share one. Dropping the [`Network`] deletes every
//! namespace it made, which takes their veths and the bridge with them, also when the test panics.

use std::io;
use std::net::Ipv4Addr;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

/// The first three octets of every host address; host `i` is `203.0.113.(i + 1)`.
const SUBNET: [u8; 3] = [203, 0, 113];
const PREFIX_LEN: u8 = 24;

static NETWORKS: AtomicUsize = AtomicUsize::new(0);

/// One host: a network namespace with `eth0` on the shared bridge and loopback up.
#[derive(Debug, Clone)]
pub struct Host {
    /// The network namespace (`ip netns` name).
    pub netns: String,
    /// The host name commands started with [`Host::command`] see (the Kubernetes node name).
    pub hostname: String,
    pub address: Ipv4Addr,
}

/// Namespaces on a bridge; deleted on drop.
#[derive(Debug)]
pub struct Network {
    bridge_netns: String,
    hosts: Vec<Host>,
    /// Every namespace created so far, deleted on drop even when creation failed half-way.
    created: Vec<String>,
}

impl Network {
    /// Creates one host per name in `hostnames`, all on one bridge.
    pub fn create(hostnames: &[&str]) -> io::Result<Self> {
        assert!(
            hostnames.len() < 250,
            "203.0.113.0/24 holds at most 250 test hosts"
        );
        remove_stale_namespaces();
        let base = format!(
            "k0xt-{}-{}",
            std::process::id(),
            NETWORKS.fetch_add(1, Ordering::Relaxed)
        );
        let mut network = Self {
            bridge_netns: format!("{base}-br"),
            hosts: Vec::new(),
            created: Vec::new(),
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
            };
            network.add_netns(&host.netns)?;
            network.attach(&host, index)?;
            network.hosts.push(host);
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
        for name in self.created.iter().rev() {
            if let Err(err) = ip(&["netns", "delete", name]) {
                eprintln!("cannot delete network namespace {name}: {err}");
            }
        }
    }
}

impl Host {
    /// `program` run inside this host's network namespace with its own UTS namespace and host
    /// name. `nsenter`, `unshare` and `sh` all exec, so the child's pid is `program`'s.
    ///
    /// `nsenter` rather than `ip netns exec`: the latter remounts `/sys` in a private mount
    /// namespace, which hides the cgroup filesystem a worker's containerd needs.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let netns = format!("--net=/run/netns/{}", self.netns);
        let mut command = Command::new("nsenter");
        command
            .args([netns.as_str(), "unshare", "--uts", "sh", "-c"])
            .arg(r#"hostname "$0" && exec "$@""#)
            .arg(&self.hostname)
            .arg(program);
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
        let owner = name
            .strip_prefix("k0xt-")
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok());
        if let Some(pid) = owner
            && !std::path::Path::new(&format!("/proc/{pid}")).exists()
        {
            let _ = ip(&["netns", "delete", &name]);
        }
    }
}

/// Runs `ip ARGS`; a failure carries ip's own message.
fn ip(args: &[&str]) -> io::Result<()> {
    let output = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()?;
    if output.status.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn netns_exists(name: &str) -> bool {
        std::path::Path::new("/run/netns").join(name).exists()
    }

    #[test]
    fn hosts_reach_each_other_and_everything_is_removed() {
        if !crate::require_root("hosts_reach_each_other_and_everything_is_removed")
            || crate::require_binaries("netns", &["ip", "nsenter", "unshare", "busybox"]).is_none()
        {
            return;
        }
        let network = Network::create(&["alpha", "beta"]).unwrap();
        let [a, b] = network.hosts() else {
            panic!("two hosts")
        };
        let hostname = a.output("hostname", &[]);
        assert_eq!(String::from_utf8_lossy(&hostname.stdout).trim(), "alpha");
        let ping = a.output("busybox", &["ping", "-c1", "-W5", &b.address.to_string()]);
        assert!(
            ping.status.success(),
            "{}",
            String::from_utf8_lossy(&ping.stdout)
        );
        let names: Vec<String> = network.created.clone();
        assert_eq!(names.len(), 3);
        assert!(names.iter().all(|n| netns_exists(n)));
        drop(network);
        assert!(names.iter().all(|n| !netns_exists(n)));
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
