//! `k0x sysinfo`: the host preparation the kubeadm guides do by hand, checked and explained.
//!
//! Each check yields pass, warn or fail with a one-line fix. Checks whose failure would make a
//! component fail later in a confusing way are *fatal* for the roles that need them:
//! [`fatal_checks`] runs them before `k0x server` / `k0x worker` start anything, so the user
//! reads "net.ipv4.ip_forward is 0: ..." instead of a pod network that silently drops packets.
//! [`fix::apply`] fixes what is safe (kernel modules, sysctls) and persists it.

mod checks;
pub mod fix;
pub mod host;

use std::fmt::Write as _;

use k0x_config::DataDir;
use serde::Serialize;

pub use checks::{CgroupVersion, run_checks};
pub use host::{Host, RealHost};

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

/// Which parts of k0x will run here, and where.
#[derive(Debug, Clone)]
pub struct Options {
    pub data_dir: DataDir,
    pub controller: bool,
    pub worker: bool,
    /// Ports that must be free, with the component that needs each.
    pub ports: Vec<(u16, &'static str)>,
    /// The node name when it is set explicitly; the hostname is checked otherwise.
    pub node_name: Option<String>,
}

/// Ports the controller components listen on by default.
pub const CONTROLLER_PORTS: [(u16, &str); 6] = [
    (2379, "etcd client"),
    (2380, "etcd peer"),
    (6443, "kube-apiserver"),
    (9443, "k0x join API"),
    (10257, "kube-controller-manager"),
    (10259, "kube-scheduler"),
];
/// Ports the worker components listen on by default.
pub const WORKER_PORTS: [(u16, &str); 1] = [(10250, "kubelet")];

impl Options {
    /// Checks for the given roles with the default ports.
    pub fn new(data_dir: DataDir, controller: bool, worker: bool) -> Self {
        let mut ports = Vec::new();
        if controller {
            ports.extend(CONTROLLER_PORTS);
        }
        if worker {
            ports.extend(WORKER_PORTS);
        }
        Self {
            data_dir,
            controller,
            worker,
            ports,
            node_name: None,
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

/// The host is not fit to run the requested roles.
#[derive(Debug, thiserror::Error)]
#[error(
    "host checks failed: {}; run `k0x sysinfo` for details or `k0x sysinfo --fix` to fix what is safe",
    .failures.iter().map(|c| format!("{} is {} (fix: {})", c.id, c.detail, c.fix.as_deref().unwrap_or("-"))).collect::<Vec<_>>().join("; ")
)]
pub struct PreflightError {
    pub failures: Vec<Check>,
}

/// Runs every check on this machine and fails when a fatal one failed. `k0x server` and
/// `k0x worker` call this before starting components (after ending orphans of an earlier run,
/// whose listeners would otherwise show up as busy ports).
pub fn fatal_checks(options: &Options) -> Result<Report, PreflightError> {
    let report = run_checks(&RealHost, options);
    let failures: Vec<Check> = report.fatal_failures().cloned().collect();
    if failures.is_empty() {
        Ok(report)
    } else {
        Err(PreflightError { failures })
    }
}

#[cfg(test)]
pub(crate) mod fake;
