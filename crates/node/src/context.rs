//! Everything a component needs to render itself: the cluster configuration, the on-disk layout,
//! and facts about this host.
//!
//! Host facts are detected once ([`NodeFacts::detect`]) and then passed around as plain data, so
//! components are pure functions of their input and tests can describe any host they like.

use std::fs;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use k0x_config::{ClusterConfig, DataDir, RunDir};
use k0x_supervisor::{HealthPolicy, Probe, ProbeTiming, Readiness};

use crate::{CgroupDriver, NodeError, net};

/// Facts about the host the node runs on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeFacts {
    /// Kubernetes node name (lower-case host name) and etcd member name.
    pub name: String,
    /// Address other nodes reach this one on (apiserver advertise address, kubelet node IP).
    pub address: IpAddr,
    /// Directory holding the extracted component binaries.
    pub bin_dir: PathBuf,
    /// Directory holding the CNI plugins (bridge, host-local, loopback, portmap).
    pub cni_bin_dir: PathBuf,
    pub cgroup_driver: CgroupDriver,
    /// True when swap is active (the kubelet must then be told to tolerate it).
    pub swap_enabled: bool,
    /// False where even root may not lower an oom_score_adj (some sandboxed or unprivileged
    /// hosts): containerd must then clamp the kubelet's negative scores for sandboxes, or no pod
    /// starts (runc fails writing `/proc/self/oom_score_adj`).
    pub oom_score_lowerable: bool,
    /// The resolv.conf pods inherit (systemd-resolved's upstream file when the host uses the
    /// 127.0.0.53 stub, which would loop inside pods).
    pub resolv_conf: PathBuf,
}

impl NodeFacts {
    /// Detects the facts of this host. The address comes from `spec.api.address` when set,
    /// otherwise from the interface of the default route.
    pub fn detect(config: &ClusterConfig, data: &DataDir) -> Result<Self, NodeError> {
        let address = if config.spec.api.address.is_empty() {
            primary_address()?
        } else {
            net::parse_ip("spec.api.address", &config.spec.api.address)?
        };
        Ok(Self {
            name: node_name()?,
            address,
            bin_dir: data.bin(),
            cni_bin_dir: data.bin(),
            cgroup_driver: CgroupDriver::detect(),
            swap_enabled: swap_enabled(),
            oom_score_lowerable: oom_score_lowerable(),
            resolv_conf: resolv_conf(),
        })
    }

    /// A component binary in the bin dir.
    pub fn binary(&self, name: &str) -> PathBuf {
        self.bin_dir.join(name)
    }
}

/// How this controller's etcd member enters the cluster.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum EtcdMembership {
    /// First controller: a new single-member cluster.
    #[default]
    New,
    /// Joining controller, already added as a member by the cluster: `initial_cluster` is the
    /// full `name=https://addr:port,...` list returned by the member-add call, including this one.
    Join { initial_cluster: String },
}

/// The input of every component.
#[derive(Debug, Clone)]
pub struct NodeContext {
    pub config: ClusterConfig,
    pub data: DataDir,
    pub run: RunDir,
    pub node: NodeFacts,
    pub etcd_membership: EtcdMembership,
    /// The worker profile (`spec.workerProfiles[].name`) applied to the kubelet; `None` applies a
    /// profile named `default` when one exists.
    pub worker_profile: Option<String>,
    /// A node that also runs the control plane registers with the control-plane taint.
    pub taint_control_plane: bool,
}

impl NodeContext {
    /// A context for a node that starts a new cluster and uses the default worker profile.
    pub fn new(config: ClusterConfig, data: DataDir, run: RunDir, node: NodeFacts) -> Self {
        Self {
            config,
            data,
            run,
            node,
            etcd_membership: EtcdMembership::New,
            worker_profile: None,
            taint_control_plane: false,
        }
    }

    /// Readiness for `component` with the timeout from `spec.probes`.
    pub(crate) fn readiness(&self, component: &str, probe: Probe) -> Readiness {
        Readiness {
            probe,
            timing: ProbeTiming {
                timeout: self.config.spec.probe_timeout(component),
                ..ProbeTiming::default()
            },
            health: HealthPolicy {
                restart_after: self.config.spec.restart_unhealthy_after(),
                ..HealthPolicy::default()
            },
        }
    }
}

/// The host name, lower-cased: Kubernetes node names must be lower-case DNS labels.
fn node_name() -> Result<String, NodeError> {
    let name = nix::unistd::gethostname().map_err(|e| NodeError::HostDetection {
        what: "the host name",
        reason: e.to_string(),
        hint: "set a host name with hostnamectl or /etc/hostname",
    })?;
    valid_node_name(&name.to_string_lossy().to_lowercase())
}

/// Checks that `name` is a DNS subdomain (RFC 1123), as Kubernetes requires of node names.
fn valid_node_name(name: &str) -> Result<String, NodeError> {
    if k0x_config::is_node_name(name) {
        Ok(name.to_owned())
    } else {
        Err(NodeError::HostDetection {
            what: "a usable node name",
            reason: format!("host name {name:?} is not a valid Kubernetes node name (RFC 1123)"),
            hint: "set a host name of letters, digits, '-' and '.' with hostnamectl",
        })
    }
}

/// The IPv4 address of the interface that carries the default route, else the first global
/// IPv4 address: what the node advertises and kubeconfigs name. Reads kernel tables only;
/// sends nothing.
pub fn primary_address() -> Result<IpAddr, NodeError> {
    let default_iface = fs::read_to_string("/proc/net/route")
        .ok()
        .and_then(|routes| default_route_interface(&routes));
    let addrs: Vec<(String, IpAddr)> = nix::ifaddrs::getifaddrs()
        .map_err(|e| NodeError::HostDetection {
            what: "the host address",
            reason: e.to_string(),
            hint: "set spec.api.address in the config",
        })?
        .filter_map(|ifa| {
            let v4 = ifa.address?.as_sockaddr_in()?.ip();
            Some((ifa.interface_name, IpAddr::V4(v4)))
        })
        .filter(|(_, ip)| !ip.is_loopback())
        .collect();
    addrs
        .iter()
        .find(|(iface, _)| Some(iface) == default_iface.as_ref())
        .or_else(|| addrs.first())
        .map(|(_, ip)| *ip)
        .ok_or(NodeError::HostDetection {
            what: "the host address",
            reason: "no interface has a non-loopback IPv4 address".into(),
            hint: "set spec.api.address in the config",
        })
}

/// The interface of the IPv4 default route in `/proc/net/route` format.
fn default_route_interface(routes: &str) -> Option<String> {
    routes
        .lines()
        .skip(1)
        .map(|line| line.split_whitespace().collect::<Vec<_>>())
        .find(|cols| cols.len() > 2 && cols[1] == "00000000")
        .map(|cols| cols[0].to_owned())
}

/// True when `/proc/swaps` lists an active swap area.
fn swap_enabled() -> bool {
    fs::read_to_string("/proc/swaps").is_ok_and(|s| s.lines().skip(1).any(|l| !l.trim().is_empty()))
}

/// Whether this process may lower its oom_score_adj, tried by lowering it by one and putting it
/// back (raising is always allowed).
fn oom_score_lowerable() -> bool {
    let path = Path::new("/proc/self/oom_score_adj");
    let Some(current) = fs::read_to_string(path)
        .ok()
        .and_then(|s| s.trim().parse::<i32>().ok())
    else {
        return true;
    };
    if current <= -1000 {
        return true;
    }
    let lowered = fs::write(path, (current - 1).to_string()).is_ok();
    if lowered {
        let _ = fs::write(path, current.to_string());
    }
    lowered
}

fn resolv_conf() -> PathBuf {
    let resolved = Path::new("/run/systemd/resolve/resolv.conf");
    let stub_in_use = fs::read_to_string("/etc/resolv.conf").is_ok_and(|s| {
        s.lines()
            .any(|l| l.trim_start().starts_with("nameserver 127.0.0.53"))
    });
    if stub_in_use && resolved.is_file() {
        resolved.to_path_buf()
    } else {
        PathBuf::from("/etc/resolv.conf")
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn default_route_interface_is_found() {
        let routes = "Iface\tDestination\tGateway\tFlags\n\
                      eth1\t0002A8C0\t00000000\t0001\n\
                      eth0\t00000000\t010200C0\t0003\n";
        assert_eq!(default_route_interface(routes).as_deref(), Some("eth0"));
        assert_eq!(default_route_interface("Iface\tDestination\n"), None);
    }

    #[test]
    fn node_names_must_be_dns_subdomains() {
        assert_eq!(valid_node_name("node-1.lab").unwrap(), "node-1.lab");
        for bad in ["my_host", "-a", "a..b", ""] {
            let err = valid_node_name(bad).unwrap_err().to_string();
            assert!(err.contains("not a valid Kubernetes node name"), "{err}");
        }
    }

    #[test]
    fn detect_uses_configured_address() {
        let mut config = ClusterConfig::default();
        config.spec.api.address = "192.0.2.7".into();
        let facts = NodeFacts::detect(&config, &DataDir::new("/d")).unwrap();
        assert_eq!(facts.address.to_string(), "192.0.2.7");
        assert_eq!(facts.bin_dir, Path::new("/d/bin"));
        assert_eq!(facts.name, facts.name.to_lowercase());
    }

    #[test]
    fn bad_configured_address_names_the_field() {
        let mut config = ClusterConfig::default();
        config.spec.api.address = "not-an-ip".into();
        let err = NodeFacts::detect(&config, &DataDir::new("/d")).unwrap_err();
        assert!(err.to_string().starts_with("spec.api.address:"), "{err}");
    }

    #[test]
    fn probe_timeouts_come_from_config() {
        let mut config = ClusterConfig::default();
        config
            .spec
            .probes
            .timeout_seconds
            .insert("etcd".into(), 300);
        config.spec.probes.default_timeout_seconds = 45;
        config.spec.probes.restart_unhealthy_after_seconds = 600;
        let ctx = NodeContext::new(config, DataDir::new("/d"), RunDir::new("/r"), test_facts());
        assert_eq!(
            ctx.readiness("etcd", Probe::None).health.restart_after,
            Some(Duration::from_secs(600))
        );
        assert_eq!(
            ctx.readiness("etcd", Probe::None).timing.timeout.as_secs(),
            300
        );
        assert_eq!(
            ctx.readiness("kubelet", Probe::None)
                .timing
                .timeout
                .as_secs(),
            45
        );
    }

    fn test_facts() -> NodeFacts {
        NodeFacts {
            name: "n1".into(),
            address: "192.0.2.10".parse().unwrap(),
            bin_dir: "/d/bin".into(),
            cni_bin_dir: "/d/bin".into(),
            cgroup_driver: CgroupDriver::Cgroupfs,
            swap_enabled: false,
            oom_score_lowerable: true,
            resolv_conf: "/etc/resolv.conf".into(),
        }
    }
}
