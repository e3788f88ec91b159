//! `k0x sysinfo`: the host preparation the kubeadm guides do by hand, checked and explained.
//!
//! Each check yields pass, warn or fail with a one-line fix. Checks whose failure would make a
//! component fail later in a confusing way are *fatal* for the roles that need them:
//! [`prepare_for_start`] runs them before `k0x server` / `k0x worker` start anything, so the user
//! reads "net.ipv4.ip_forward is 0: ..." instead of a pod network that silently drops packets.
//! What is safe to fix (kernel modules, sysctls) [`fix::apply`] fixes: at every start until
//! reboot, as k3s and Docker set what they need, and persistently with `k0x sysinfo --fix`.

mod checks;
pub mod fix;
pub mod host;

use std::fmt::{self, Write as _};

use k0x_config::{DataDir, ports};
use serde::Serialize;

pub use checks::{CgroupVersion, run_checks};
pub use fix::Fixed;
pub use host::{RealHost, SysinfoHost};

/// Outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pass,
    Warn,
    Fail,
}

/// What `--fix` can do about a failed check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Remedy {
    LoadModule(&'static str),
    SetSysctl {
        key: &'static str,
        value: &'static str,
    },
}

/// One check's result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    /// Stable identifier, e.g. `sysctl:net.ipv4.ip_forward`, `port:6443`.
    pub id: String,
    pub status: Status,
    /// What was found, e.g. `0 (want 1)`.
    pub detail: String,
    /// One line telling how to fix a warn or fail.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
    /// A failure stops `k0x server` / `k0x worker` from starting.
    pub fatal: bool,
    #[serde(skip)]
    pub remedy: Option<Remedy>,
}

impl Check {
    fn pass(id: impl Into<String>, detail: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            status: Status::Pass,
            detail: detail.into(),
            fix: None,
            fatal: false,
            remedy: None,
        }
    }

    fn problem(
        status: Status,
        id: impl Into<String>,
        detail: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        Self {
            status,
            fix: Some(fix.into()),
            ..Self::pass(id, detail)
        }
    }

    fn fail(id: impl Into<String>, detail: impl Into<String>, fix: impl Into<String>) -> Self {
        Self::problem(Status::Fail, id, detail, fix)
    }

    fn warn(id: impl Into<String>, detail: impl Into<String>, fix: impl Into<String>) -> Self {
        Self::problem(Status::Warn, id, detail, fix)
    }

    /// Marks a failure as fatal (only failures are ever fatal).
    fn fatal_if(mut self, fatal: bool) -> Self {
        self.fatal = fatal && self.status == Status::Fail;
        self
    }

    fn remedy(mut self, remedy: Remedy) -> Self {
        if self.status != Status::Pass {
            self.remedy = Some(remedy);
        }
        self
    }
}

/// Which parts of k0x a host is checked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parts {
    Controller,
    Worker,
    ControllerWorker,
}

impl Parts {
    pub fn controller(self) -> bool {
        self != Self::Worker
    }

    pub fn worker(self) -> bool {
        self != Self::Controller
    }
}

/// Which parts of k0x will run here, and where.
#[derive(Debug, Clone)]
pub struct Options {
    pub data_dir: DataDir,
    /// The worker components run here: their prerequisites are fatal, and they are fixed.
    pub worker: bool,
    /// Ports that must be free, with the component that needs each.
    pub ports: Vec<(u16, &'static str)>,
}

/// Ports of the controller components that no setting moves.
pub const FIXED_CONTROLLER_PORTS: [(u16, &str); 2] = [
    (ports::KUBE_CONTROLLER_MANAGER, "kube-controller-manager"),
    (ports::KUBE_SCHEDULER, "kube-scheduler"),
];

/// Ports the controller components listen on with this configuration: the configured ones
/// (etcd's client and peer ports, the apiserver's, the join API's), then the fixed ones.
pub fn controller_ports(spec: &k0x_config::schema::Spec) -> Vec<(u16, &'static str)> {
    let mut ports = vec![
        (spec.storage.etcd.client_port, "etcd client"),
        (spec.storage.etcd.peer_port, "etcd peer"),
        (spec.api.port, "kube-apiserver"),
        (spec.api.k0x_api_port, "k0x join API"),
    ];
    ports.extend(FIXED_CONTROLLER_PORTS);
    ports
}

/// Ports the worker components listen on by default.
pub const WORKER_PORTS: [(u16, &str); 3] = [
    (ports::KUBELET, "kubelet"),
    (ports::KUBE_PROXY_METRICS, "kube-proxy metrics"),
    (ports::KUBE_PROXY_HEALTHZ, "kube-proxy health"),
];

/// Ports a node running `parts` listens on with this configuration: a controller's, a
/// worker's, and a worker's node-local API load balancer where no apiserver runs.
pub fn node_ports(parts: Parts, spec: &k0x_config::schema::Spec) -> Vec<(u16, &'static str)> {
    let mut ports = Vec::new();
    if parts.controller() {
        ports.extend(controller_ports(spec));
    }
    if parts.worker() {
        ports.extend(WORKER_PORTS);
    }
    if !parts.controller() {
        ports.push((ports::NODE_LOCAL_BALANCER, "node-local API load balancer"));
    }
    ports
}

impl Options {
    /// Checks for a node running `parts` with the ports of this configuration.
    pub fn new(data_dir: DataDir, parts: Parts, spec: &k0x_config::schema::Spec) -> Self {
        Self {
            data_dir,
            worker: parts.worker(),
            ports: node_ports(parts, spec),
        }
    }
}

/// The results of every check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    pub checks: Vec<Check>,
}

impl Report {
    /// Failed checks that stop k0x from starting.
    pub fn fatal_failures(&self) -> impl Iterator<Item = &Check> {
        self.checks.iter().filter(|c| c.fatal)
    }

    pub fn count(&self, status: Status) -> usize {
        self.checks.iter().filter(|c| c.status == status).count()
    }

    /// One line per check, plus a `fix:` line under each warning and failure.
    pub fn to_text(&self) -> String {
        let width = self.checks.iter().map(|c| c.id.len()).max().unwrap_or(0);
        let mut out = String::new();
        for check in &self.checks {
            let status = match check.status {
                Status::Pass => "PASS",
                Status::Warn => "WARN",
                Status::Fail if check.fatal => "FAIL",
                Status::Fail => "fail",
            };
            let _ = writeln!(out, "{status}  {:width$}  {}", check.id, check.detail);
            if let Some(fix) = &check.fix {
                let _ = writeln!(out, "      {:width$}  fix: {fix}", "");
            }
        }
        let _ = writeln!(
            out,
            "{} passed, {} warnings, {} failed ({} fatal)",
            self.count(Status::Pass),
            self.count(Status::Warn),
            self.count(Status::Fail),
            self.fatal_failures().count()
        );
        out
    }
}

/// Whether `k0x server` / `k0x worker` fix the host before checking it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostFixes {
    /// Apply the safe fixes until reboot (the default).
    Apply,
    /// Only check: the host is prepared by another tool (`--no-host-fixes`,
    /// `spec.host.applyFixes: false`).
    Off,
}

/// The host is not fit to run the requested roles: one line naming each fatal failure, what k0x
/// tried about it, and how to fix it.
#[derive(Debug)]
pub struct PreflightError {
    pub failures: Vec<Check>,
    /// Fixes k0x tried at start that did not work.
    pub failed_fixes: Vec<Fixed>,
    pub fixes: HostFixes,
}

impl fmt::Display for PreflightError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let failures: Vec<String> = self.failures.iter().map(|c| self.describe(c)).collect();
        write!(f, "host checks failed: {}; ", failures.join("; "))?;
        let fixable = self.failures.iter().any(|c| c.remedy.is_some());
        if self.fixes == HostFixes::Off && fixable {
            write!(
                f,
                "host fixes are off (--no-host-fixes or spec.host.applyFixes: false), so k0x \
                 changed nothing: apply the fixes or run `k0x sysinfo --fix`"
            )
        } else {
            write!(f, "run `k0x sysinfo` for details")
        }
    }
}

impl std::error::Error for PreflightError {}

impl PreflightError {
    fn describe(&self, check: &Check) -> String {
        let tried = self
            .failed_fixes
            .iter()
            .find(|fixed| fixed.check == check.id)
            .map(|fixed| {
                let error = fixed.error.as_deref().unwrap_or_default();
                format!(", `{}` failed: {error}", fixed.action)
            })
            .unwrap_or_default();
        let fix = check.fix.as_deref().unwrap_or("-");
        format!("{} is {}{tried} (fix: {fix})", check.id, check.detail)
    }
}

/// What `k0x server` and `k0x worker` do to the host before they start anything (after ending
/// orphans of an earlier run, whose listeners would otherwise show up as busy ports): the safe
/// fixes until reboot, each change one info line, then every check; an error when a fatal one
/// still fails.
///
/// Only a node that runs a worker is fixed: every remedy is a worker's prerequisite (overlay
/// snapshots, pod traffic through bridges and iptables), so a controller alone leaves its host
/// as it is.
pub fn prepare_for_start(
    host: &dyn SysinfoHost,
    options: &Options,
    fixes: HostFixes,
) -> Result<Report, PreflightError> {
    let mut report = run_checks(host, options);
    let mut failed_fixes = Vec::new();
    if fixes == HostFixes::Apply && options.worker {
        let fixed = fix::apply(host, &report, fix::Keep::UntilReboot);
        if !fixed.is_empty() {
            log_fixes(&fixed);
            report = run_checks(host, options);
        }
        failed_fixes = fixed.into_iter().filter(|f| f.error.is_some()).collect();
    }
    let failures: Vec<Check> = report.fatal_failures().cloned().collect();
    if failures.is_empty() {
        Ok(report)
    } else {
        Err(PreflightError {
            failures,
            failed_fixes,
            fixes,
        })
    }
}

fn log_fixes(fixed: &[Fixed]) {
    for f in fixed {
        match &f.error {
            None => tracing::info!(action = %f.action, "fixed {f} (until reboot)"),
            Some(err) => tracing::warn!("cannot fix {}: `{}` failed: {err}", f.check, f.action),
        }
    }
}

#[cfg(test)]
pub(crate) mod fake;

#[cfg(test)]
mod tests {
    use super::fake::FakeHost;
    use super::*;

    fn options(parts: Parts) -> Options {
        let spec = k0x_config::ClusterConfig::default().spec;
        Options::new(DataDir::new("/var/lib/k0x"), parts, &spec)
    }

    /// A fresh host: br_netfilter not loaded (so no bridge sysctls), forwarding off.
    fn unprepared() -> FakeHost {
        let host = FakeHost::healthy();
        host.set("/proc/modules", "");
        host.set("/proc/sys/net/ipv4/ip_forward", "0\n");
        host.remove("/proc/sys/net/bridge/bridge-nf-call-iptables");
        host.remove("/proc/sys/net/bridge/bridge-nf-call-ip6tables");
        host
    }

    #[test]
    fn controller_ports_follow_the_configuration() {
        let defaults: Vec<u16> = options(Parts::Controller)
            .ports
            .iter()
            .map(|p| p.0)
            .collect();
        assert_eq!(defaults, [2379, 2380, 6443, 9443, 10257, 10259]);
        let mut spec = k0x_config::ClusterConfig::default().spec;
        spec.storage.etcd.client_port = 12379;
        spec.api.k0x_api_port = 19443;
        let ports = controller_ports(&spec);
        assert_eq!(ports[0], (12379, "etcd client"));
        assert_eq!(ports[3], (19443, "k0x join API"));
        assert_eq!(ports[4..], FIXED_CONTROLLER_PORTS);
    }

    fn nothing_written(host: &FakeHost) -> bool {
        host.loaded.borrow().is_empty() && host.sysctl_writes.borrow().is_empty()
    }

    #[test]
    fn a_worker_start_loads_modules_and_sets_sysctls_before_checking() {
        let host = unprepared();
        let report =
            prepare_for_start(&host, &options(Parts::ControllerWorker), HostFixes::Apply).unwrap();
        assert_eq!(report.count(Status::Fail), 0, "{}", report.to_text());
        assert_eq!(*host.loaded.borrow(), ["br_netfilter"]);
        let writes = host.sysctl_writes.borrow();
        let keys: Vec<&str> = writes.iter().map(|(key, _)| key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "net.ipv4.ip_forward",
                "net.bridge.bridge-nf-call-iptables",
                "net.bridge.bridge-nf-call-ip6tables"
            ]
        );
        assert!(writes.iter().all(|(_, value)| value == "1"));
    }

    #[test]
    fn a_fix_names_the_old_and_the_new_value_and_is_not_persisted() {
        let host = FakeHost::healthy();
        host.set("/proc/sys/net/ipv4/ip_forward", "0\n");
        let report = run_checks(&host, &options(Parts::Worker));
        let fixed = fix::apply(&host, &report, fix::Keep::UntilReboot);
        assert_eq!(fixed.len(), 1);
        assert_eq!(fixed[0].to_string(), "sysctl:net.ipv4.ip_forward: 0 → 1");
        assert_eq!((&fixed[0].error, &fixed[0].persisted_in), (&None, &None));
    }

    #[test]
    fn with_fixes_off_nothing_is_written_and_the_check_fails_with_one_clear_line() {
        let host = unprepared();
        let err = prepare_for_start(&host, &options(Parts::Worker), HostFixes::Off).unwrap_err();
        assert!(nothing_written(&host));
        let line = err.to_string();
        assert_eq!(line.lines().count(), 1, "{line}");
        for part in [
            "host checks failed: ",
            "module:br_netfilter is not loaded (fix: modprobe br_netfilter",
            "sysctl:net.ipv4.ip_forward is 0 (want 1) (fix: sysctl -w net.ipv4.ip_forward=1",
            "host fixes are off (--no-host-fixes or spec.host.applyFixes: false)",
            "k0x sysinfo --fix",
        ] {
            assert!(line.contains(part), "`{part}` missing in: {line}");
        }
    }

    #[test]
    fn a_fix_that_fails_is_named_in_the_error_line() {
        let mut host = FakeHost::healthy();
        host.modprobe_works = false;
        host.set("/proc/modules", "");
        host.set("/proc/filesystems", "");
        let err = prepare_for_start(&host, &options(Parts::Worker), HostFixes::Apply).unwrap_err();
        let line = err.to_string();
        assert!(
            line.contains(
                "module:overlay is not loaded, `modprobe overlay` failed: modprobe not found \
                 (install kmod) (fix: modprobe overlay"
            ),
            "{line}"
        );
        assert!(!line.contains("fixes are off"), "{line}");
    }

    #[test]
    fn a_controller_alone_is_checked_but_its_host_left_as_it_is() {
        let host = unprepared();
        let report =
            prepare_for_start(&host, &options(Parts::Controller), HostFixes::Apply).unwrap();
        assert!(nothing_written(&host));
        assert!(report.count(Status::Fail) > 0, "{}", report.to_text());
    }
}
