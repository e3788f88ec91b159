//! Checks that need the typed configuration: values that parse as their type but cannot work
//! (overlapping CIDRs, port clashes, names that are not DNS names...), plus the typed accessors
//! other crates use instead of re-parsing strings.
//!
//! The checks report field paths; the loader turns them into file positions.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::str::FromStr;
use std::time::Duration;

use ipnet::IpNet;

use crate::components;
use crate::net::{DNS_SERVICE_OFFSET, host_address, longest_service_prefix};
use crate::schema::{ClusterConfig, ExtraArgs, Network, Spec};

/// A semantic problem at a field path (`spec.network.podCIDR`, `spec.api.sans[1]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub path: String,
    pub message: String,
    pub hint: String,
}

impl Problem {
    fn new(path: impl Into<String>, message: impl Into<String>, hint: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            message: message.into(),
            hint: hint.into(),
        }
    }
}

impl ClusterConfig {
    /// Every semantic problem of this configuration; empty when it is usable.
    ///
    /// [`ClusterConfig::load`] runs this already; call it for a configuration built in code.
    pub fn problems(&self) -> Vec<Problem> {
        let mut problems = Vec::new();
        check_api(&self.spec, &mut problems);
        check_ports(&self.spec, &mut problems);
        check_network(&self.spec.network, &mut problems);
        check_storage(&self.spec, &mut problems);
        check_worker_profiles(&self.spec, &mut problems);
        check_images(&self.spec, &mut problems);
        check_probes(&self.spec, &mut problems);
        check_pki(&self.spec, &mut problems);
        problems
    }
}

impl Spec {
    /// How long to wait for `component` (`etcd`, `kube-apiserver`, ...) to become ready.
    pub fn probe_timeout(&self, component: &str) -> Duration {
        let seconds = self
            .probes
            .timeout_seconds
            .get(component)
            .copied()
            .unwrap_or(self.probes.default_timeout_seconds);
        Duration::from_secs(u64::from(seconds))
    }

    /// How long a ready component may fail its probe before it is restarted; `None`: never.
    pub fn restart_unhealthy_after(&self) -> Option<Duration> {
        let seconds = self.probes.restart_unhealthy_after_seconds;
        (seconds > 0).then(|| Duration::from_secs(u64::from(seconds)))
    }
}

/// A DNS name as RFC 1123 hostnames allow: dot-separated labels of letters, digits and inner
/// hyphens, each 1-63 characters, 253 in all, whose last label is not all digits (RFC 3696 2).
/// That last rule keeps impossible IPv4 addresses (`300.1.2.3`, `1.2.3`) from passing as names:
/// a resolver would never look them up, and a certificate naming them matches nothing.
pub fn is_dns_name(name: &str) -> bool {
    let name = name.strip_suffix('.').unwrap_or(name);
    is_subdomain(name)
        && name
            .rsplit('.')
            .next()
            .is_some_and(|top| !is_all_digits(top))
}

/// A Kubernetes node name: a lowercase RFC 1123 subdomain (dot-separated labels of a-z, 0-9 and
/// inner '-', at most 253 characters). Node crate, pki and host checks share this one rule.
/// Unlike a DNS name it may be all digits, as Kubernetes allows.
pub fn is_node_name(name: &str) -> bool {
    is_subdomain(name) && !name.bytes().any(|b| b.is_ascii_uppercase())
}

/// Dot-separated DNS labels, 253 characters in all.
fn is_subdomain(name: &str) -> bool {
    !name.is_empty() && name.len() <= 253 && name.split('.').all(is_dns_label)
}

fn is_all_digits(text: &str) -> bool {
    text.bytes().all(|b| b.is_ascii_digit())
}

/// One DNS label (also the rule for worker profile names, which name ConfigMaps).
pub fn is_dns_label(label: &str) -> bool {
    !label.is_empty()
        && label.len() <= 63
        && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        && !label.starts_with('-')
        && !label.ends_with('-')
}

fn is_address(text: &str) -> bool {
    text.parse::<IpAddr>().is_ok() || is_dns_name(text)
}

/// Why `value` is no address: digits and dots only look like an IPv4 address gone wrong
/// (`300.1.2.3`, `1.2.3`), anything else is neither an address nor a name.
fn not_an_address(value: &str) -> String {
    if !value.is_empty()
        && value
            .split('.')
            .all(|part| !part.is_empty() && is_all_digits(part))
    {
        format!("`{value}` is not an IPv4 address: it takes four numbers from 0 to 255")
    } else {
        format!("`{value}` is neither an IP address nor a DNS name")
    }
}

const ADDRESS_HINT: &str =
    "write an IP address such as 192.168.1.10 or a DNS name such as cp.example.com";

/// An address this host is reached on (`spec.api.address`, `spec.storage.etcd.peerAddress`): an
/// IP address, as k0s takes it; names belong in `spec.api.sans`. Empty means the host's primary
/// address. `name_hint` says where a DNS name should go instead.
fn check_host_ip(path: &str, value: &str, name_hint: &str, problems: &mut Vec<Problem>) {
    if value.is_empty() || value.parse::<IpAddr>().is_ok() {
        return;
    }
    let (message, hint) = if is_dns_name(value) {
        (
            format!("`{value}` is a DNS name, but this field takes an IP address of this host"),
            format!("{name_hint}, or leave it empty for the host's primary address"),
        )
    } else {
        (
            not_an_address(value),
            "write an IP address of this host such as 192.168.1.10, or leave it empty for the \
             host's primary address"
                .to_owned(),
        )
    };
    problems.push(Problem::new(path, message, hint));
}

fn check_api(spec: &Spec, problems: &mut Vec<Problem>) {
    check_host_ip(
        "spec.api.address",
        &spec.api.address,
        "write the IP address here and put names in spec.api.sans",
        problems,
    );
    for (i, san) in spec.api.sans.iter().enumerate() {
        let name = san.strip_prefix("*.").unwrap_or(san);
        if !is_address(name) {
            problems.push(Problem::new(
                format!("spec.api.sans[{i}]"),
                not_an_address(san),
                ADDRESS_HINT,
            ));
        }
    }
    check_extra_args("spec.api.extraArgs", &spec.api.extra_args, problems);
    check_extra_args(
        "spec.controllerManager.extraArgs",
        &spec.controller_manager.extra_args,
        problems,
    );
    check_extra_args(
        "spec.scheduler.extraArgs",
        &spec.scheduler.extra_args,
        problems,
    );
}

fn check_extra_args(path: &str, args: &ExtraArgs, problems: &mut Vec<Problem>) {
    for name in args.keys() {
        if name.is_empty() || name.starts_with('-') || name.contains(char::is_whitespace) {
            problems.push(Problem::new(
                format!("{path}.{name}"),
                format!("`{name}` is not a flag name"),
                "write the flag without leading dashes, e.g. `v: \"2\"` for --v=2",
            ));
        }
    }
}

fn check_ports(spec: &Spec, problems: &mut Vec<Problem>) {
    let ports = [
        ("spec.api.port", spec.api.port),
        ("spec.api.k0xApiPort", spec.api.k0x_api_port),
        (
            "spec.storage.etcd.clientPort",
            spec.storage.etcd.client_port,
        ),
        ("spec.storage.etcd.peerPort", spec.storage.etcd.peer_port),
    ];
    let mut seen: BTreeMap<u16, &str> = BTreeMap::new();
    for (path, port) in ports {
        if port == 0 {
            problems.push(Problem::new(
                path,
                "port 0 is not a usable port",
                "use a port from 1 to 65535",
            ));
            continue;
        }
        if let Some(first) = seen.get(&port) {
            problems.push(Problem::new(
                path,
                format!("port {port} is already used by {first}"),
                "give each of api.port, api.k0xApiPort, etcd clientPort and peerPort its own port",
            ));
        } else {
            seen.insert(port, path);
        }
    }
}

fn check_cidr(path: &str, text: &str, example: &str, problems: &mut Vec<Problem>) -> Option<IpNet> {
    let Ok(net) = IpNet::from_str(text) else {
        problems.push(Problem::new(
            path,
            format!("`{text}` is not a CIDR"),
            format!("write an address block such as {example}"),
        ));
        return None;
    };
    if net.trunc() != net {
        problems.push(Problem::new(
            path,
            format!("`{text}` has host bits set"),
            format!("use the network address: {}", net.trunc()),
        ));
        return None;
    }
    Some(net)
}

fn check_network(network: &Network, problems: &mut Vec<Problem>) {
    let pod = check_cidr(
        "spec.network.podCIDR",
        &network.pod_cidr,
        "10.244.0.0/16",
        problems,
    );
    let service = check_cidr(
        "spec.network.serviceCIDR",
        &network.service_cidr,
        "10.96.0.0/12",
        problems,
    );
    if let Some(service) = service
        && host_address(service, DNS_SERVICE_OFFSET).is_none()
    {
        problems.push(Problem::new(
            "spec.network.serviceCIDR",
            format!(
                "`{service}` has no room for the DNS service IP, the tenth address of the range"
            ),
            format!(
                "use a prefix of /{} or shorter, e.g. 10.96.0.0/12",
                longest_service_prefix(service)
            ),
        ));
    }
    if let (Some(pod), Some(service)) = (pod, service)
        && (pod.contains(&service.network()) || service.contains(&pod.network()))
    {
        problems.push(Problem::new(
            "spec.network.podCIDR",
            format!("pod CIDR {pod} overlaps the service CIDR {service}"),
            "choose non-overlapping ranges, e.g. podCIDR 10.244.0.0/16 and serviceCIDR 10.96.0.0/12",
        ));
    }
    if !is_dns_name(&network.cluster_domain) {
        problems.push(Problem::new(
            "spec.network.clusterDomain",
            format!("`{}` is not a DNS name", network.cluster_domain),
            "use a domain such as cluster.local",
        ));
    }
}

fn check_storage(spec: &Spec, problems: &mut Vec<Problem>) {
    check_host_ip(
        "spec.storage.etcd.peerAddress",
        &spec.storage.etcd.peer_address,
        "write the IP address the other controllers reach this one on",
        problems,
    );
    check_extra_args(
        "spec.storage.etcd.extraArgs",
        &spec.storage.etcd.extra_args,
        problems,
    );
}

fn check_worker_profiles(spec: &Spec, problems: &mut Vec<Problem>) {
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, profile) in spec.worker_profiles.iter().enumerate() {
        let path = format!("spec.workerProfiles[{i}].name");
        if !is_dns_label(&profile.name) || profile.name.chars().any(|c| c.is_ascii_uppercase()) {
            problems.push(Problem::new(
                path,
                format!("`{}` is not a valid profile name", profile.name),
                "use lowercase letters, digits and inner hyphens, at most 63 characters",
            ));
        } else if let Some(first) = seen.get(profile.name.as_str()) {
            problems.push(Problem::new(
                path,
                format!(
                    "profile `{}` is already defined at spec.workerProfiles[{first}]",
                    profile.name
                ),
                "give every worker profile its own name",
            ));
        } else {
            seen.insert(&profile.name, i);
        }
    }
}

fn check_images(spec: &Spec, problems: &mut Vec<Problem>) {
    let images = [
        ("spec.images.pause", &spec.images.pause),
        ("spec.images.coredns", &spec.images.coredns),
        ("spec.images.metricsserver", &spec.images.metrics_server),
    ];
    for (path, image) in images {
        if image.is_empty() || image.contains(char::is_whitespace) {
            problems.push(Problem::new(
                path,
                format!("`{image}` is not an image reference"),
                "write a reference such as k0x.io/pause:3.10-k0x",
            ));
        }
    }
}

/// Below this, a busy component on a slow board is restarted while it is merely slow (see
/// `spec.probes.restartUnhealthyAfterSeconds` in docs/configuration.md).
const MIN_RESTART_UNHEALTHY_SECONDS: u32 = 30;

fn check_probes(spec: &Spec, problems: &mut Vec<Problem>) {
    let restart_after = spec.probes.restart_unhealthy_after_seconds;
    if restart_after > 0 && restart_after < MIN_RESTART_UNHEALTHY_SECONDS {
        problems.push(Problem::new(
            "spec.probes.restartUnhealthyAfterSeconds",
            format!(
                "{restart_after} seconds would restart a component that is only busy on a slow machine"
            ),
            format!(
                "use {MIN_RESTART_UNHEALTHY_SECONDS} seconds or more, e.g. the default 300, or 0 to never restart"
            ),
        ));
    }
    if spec.probes.default_timeout_seconds == 0 {
        problems.push(Problem::new(
            "spec.probes.defaultTimeoutSeconds",
            "a timeout of 0 seconds never lets a component become ready",
            "use a number of seconds greater than 0, e.g. 120",
        ));
    }
    for (component, seconds) in &spec.probes.timeout_seconds {
        let path = format!("spec.probes.timeoutSeconds.{component}");
        if !components::PROBED.contains(&component.as_str()) {
            problems.push(Problem::new(
                path,
                format!("`{component}` is not a k0x component"),
                format!("use one of: {}", components::PROBED.join(", ")),
            ));
        } else if *seconds == 0 {
            problems.push(Problem::new(
                path,
                "a timeout of 0 seconds never lets the component become ready",
                "use a number of seconds greater than 0, e.g. 300 for slow boards",
            ));
        }
    }
}

/// Leaf certificates live one year, so renewing earlier than that would renew at every start.
const LEAF_LIFETIME_DAYS: u32 = 365;

fn check_pki(spec: &Spec, problems: &mut Vec<Problem>) {
    let days = spec.pki.renew_before_days;
    if days == 0 || days >= LEAF_LIFETIME_DAYS {
        problems.push(Problem::new(
            "spec.pki.renewBeforeDays",
            format!("{days} days does not fit the one-year lifetime of leaf certificates"),
            format!("use 1 to {} days, e.g. 90", LEAF_LIFETIME_DAYS - 1),
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_config_has_no_problems() {
        assert_eq!(ClusterConfig::default().problems(), Vec::new());
    }

    #[test]
    fn probe_timeout_falls_back_to_the_default() {
        let mut spec = Spec::default();
        spec.probes.timeout_seconds.insert("etcd".into(), 600);
        assert_eq!(spec.probe_timeout("etcd"), Duration::from_secs(600));
        assert_eq!(spec.probe_timeout("kubelet"), Duration::from_secs(120));
    }

    #[test]
    fn unhealthy_restart_threshold_is_generous_and_can_be_turned_off() {
        let mut spec = Spec::default();
        assert_eq!(
            spec.restart_unhealthy_after(),
            Some(Duration::from_secs(300))
        );
        spec.probes.restart_unhealthy_after_seconds = 0;
        assert_eq!(spec.restart_unhealthy_after(), None);
        let mut config = ClusterConfig::default();
        config.spec.probes.restart_unhealthy_after_seconds = 10;
        assert_eq!(
            config.problems()[0].path,
            "spec.probes.restartUnhealthyAfterSeconds"
        );
    }

    #[test]
    fn dns_names() {
        assert!(is_dns_name("cluster.local"));
        assert!(is_dns_name("a-b.example.com."));
        assert!(!is_dns_name("-a.example.com"));
        assert!(!is_dns_name("a..b"));
        assert!(!is_dns_name("under_score.io"));
        assert!(!is_dns_name(&"a".repeat(64)));
        assert!(is_dns_name("123.example.com"));
        for impossible_ip in [
            "300.1.2.3",
            "999.0.0.1",
            "256.256.256.256",
            "1.2.3",
            "1.2.3.4.5",
        ] {
            assert!(!is_dns_name(impossible_ip), "{impossible_ip}");
        }
        assert!(
            !is_dns_name("example.123"),
            "a top-level label is never all digits"
        );
    }

    #[test]
    fn node_names_may_be_all_digits_as_kubernetes_allows() {
        assert!(is_node_name("1234"));
        assert!(is_node_name("node-1.lab"));
        assert!(!is_node_name("Node-1"));
        assert!(!is_node_name("node."));
    }

    #[test]
    fn smallest_service_cidr_that_holds_the_dns_ip() {
        let mut config = ClusterConfig::default();
        config.spec.network.service_cidr = "10.96.0.0/28".into();
        assert!(config.problems().is_empty());
        config.spec.network.service_cidr = "10.96.0.0/29".into();
        assert_eq!(config.problems()[0].path, "spec.network.serviceCIDR");
    }
}
