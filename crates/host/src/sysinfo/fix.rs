//! The safe host fixes: load missing kernel modules and set sysctls, the remedies of failed checks.
//!
//! Only these remedies are applied automatically: they are what every Kubernetes node needs and
//! they change nothing a running host relies on. Swap, cgroup kernel parameters, ports and the
//! clock are left to the user, whose one-line fix the report shows.
//!
//! Two commands apply them, and [`Keep`] says for how long: `k0x server` / `k0x worker` at every
//! start until the next reboot, `k0x sysinfo --fix` also in the files the boot reads.

use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::host::{SysinfoHost, sysctl_path};
use super::{Remedy, Report};
use k0x_config::fsutil::write_atomic;

/// Modules k0x loads at boot, relative to the root.
pub const MODULES_LOAD_FILE: &str = "etc/modules-load.d/k0x.conf";
/// Sysctls k0x sets at boot, relative to the root.
pub const SYSCTL_FILE: &str = "etc/sysctl.d/99-k0x.conf";

/// How long an applied fix lasts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keep<'a> {
    /// Until reboot: what `k0x server` and `k0x worker` do at start. They leave /etc alone
    /// because its sysctl.d and modules-load.d belong to the administrator and the tools that
    /// manage the host, and because they need no help from the boot: every start (the unit
    /// starts at boot) applies the fixes again. k3s does the same.
    UntilReboot,
    /// Also in files below this root (`/` on a real host) that the boot applies: the explicit
    /// `k0x sysinfo --fix`. `k0x reset` removes them.
    Persisted(&'a Path),
}

impl Keep<'_> {
    /// The file that keeps a fix across reboots, if any.
    fn file(self, relative: &str) -> Option<PathBuf> {
        match self {
            Keep::UntilReboot => None,
            Keep::Persisted(root) => Some(root.join(relative)),
        }
    }
}

/// One applied remedy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Fixed {
    /// The check it fixes, e.g. `sysctl:net.ipv4.ip_forward`.
    pub check: String,
    /// e.g. `modprobe br_netfilter`, `sysctl -w net.ipv4.ip_forward=1`.
    pub action: String,
    /// What the check found before, e.g. `0`, `missing`, `not loaded`.
    pub before: String,
    /// What the remedy sets, e.g. `1`, `loaded`.
    pub after: String,
    /// None when it worked, else why not.
    pub error: Option<String>,
    /// The file that keeps it across reboots, when it worked and was persisted.
    pub persisted_in: Option<PathBuf>,
}

impl Fixed {
    fn new(check: &str, action: String, before: String, after: &str) -> Self {
        Self {
            check: check.to_owned(),
            action,
            before,
            after: after.to_owned(),
            error: None,
            persisted_in: None,
        }
    }

    fn settle(mut self, result: io::Result<()>, file: Option<PathBuf>) -> Self {
        match result {
            Ok(()) => self.persisted_in = file,
            Err(err) => self.error = Some(err.to_string()),
        }
        self
    }
}

/// `sysctl:net.ipv4.ip_forward: 0 → 1`.
impl fmt::Display for Fixed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {} → {}", self.check, self.before, self.after)
    }
}

/// Applies the remedies of every failed check in `report`, each once: modules first (a bridge
/// sysctl only exists once br_netfilter is loaded), then sysctls. Persisted files keep any lines
/// an administrator added.
pub fn apply(host: &dyn SysinfoHost, report: &Report, keep: Keep<'_>) -> Vec<Fixed> {
    let mut remedies: Vec<(&str, &Remedy)> = Vec::new();
    for check in &report.checks {
        if let Some(remedy) = &check.remedy
            && !remedies.iter().any(|(_, r)| *r == remedy)
        {
            remedies.push((&check.id, remedy));
        }
    }
    remedies.sort_by_key(|(_, remedy)| matches!(remedy, Remedy::SetSysctl { .. }));
    remedies
        .into_iter()
        .map(|(check, remedy)| apply_one(host, check, remedy, keep))
        .collect()
}

fn apply_one(host: &dyn SysinfoHost, check: &str, remedy: &Remedy, keep: Keep<'_>) -> Fixed {
    match *remedy {
        Remedy::LoadModule(name) => {
            let file = keep.file(MODULES_LOAD_FILE);
            let result = host
                .load_module(name)
                .and_then(|()| file.as_deref().map_or(Ok(()), |f| persist_module(f, name)));
            Fixed::new(
                check,
                format!("modprobe {name}"),
                "not loaded".into(),
                "loaded",
            )
            .settle(result, file)
        }
        Remedy::SetSysctl { key, value } => {
            let before = host
                .read(&sysctl_path(key))
                .map_or_else(|_| "missing".to_owned(), |v| v.trim().to_owned());
            let file = keep.file(SYSCTL_FILE);
            let result = host.write_sysctl(key, value).and_then(|()| {
                file.as_deref()
                    .map_or(Ok(()), |f| persist_sysctl(f, key, value))
            });
            Fixed::new(check, format!("sysctl -w {key}={value}"), before, value)
                .settle(result, file)
        }
    }
}

fn read_or_empty(path: &Path) -> io::Result<String> {
    match fs::read_to_string(path) {
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(String::new()),
        other => other,
    }
}

const HEADER: &str = "# Written by `k0x sysinfo --fix`; removed by `k0x reset`.\n";

fn persist_module(path: &Path, name: &str) -> io::Result<()> {
    let text = read_or_empty(path)?;
    if text.lines().any(|l| l.trim() == name) {
        return Ok(());
    }
    let mut out = if text.is_empty() {
        HEADER.to_owned()
    } else {
        text
    };
    if !out.ends_with('\n') {
        out.push('\n');
    }
    out.push_str(name);
    out.push('\n');
    write_atomic(path, out.as_bytes(), 0o644)
}

fn persist_sysctl(path: &Path, key: &str, value: &str) -> io::Result<()> {
    let text = read_or_empty(path)?;
    let mut lines: Vec<String> = if text.is_empty() {
        vec![HEADER.trim_end().to_owned()]
    } else {
        text.lines().map(str::to_owned).collect()
    };
    let entries: BTreeMap<usize, &str> = lines
        .iter()
        .enumerate()
        .filter_map(|(i, l)| l.split_once('=').map(|(k, _)| (i, k.trim())))
        .collect();
    let line = format!("{key} = {value}");
    match entries.iter().find(|(_, k)| **k == key) {
        Some((&index, _)) => lines[index] = line,
        None => lines.push(line),
    }
    write_atomic(path, format!("{}\n", lines.join("\n")).as_bytes(), 0o644)
}

#[cfg(test)]
mod tests {
    use super::super::fake::FakeHost;
    use super::super::{Options, Parts, Status, run_checks};
    use super::*;
    use k0x_config::DataDir;

    fn options() -> Options {
        Options::new(
            DataDir::new("/var/lib/k0x"),
            Parts::ControllerWorker,
            &k0x_config::ClusterConfig::default().spec,
        )
    }

    #[test]
    fn loads_modules_before_setting_their_sysctls_and_persists_both() {
        let host = FakeHost::healthy();
        host.set("/proc/modules", "");
        host.set("/proc/sys/net/ipv4/ip_forward", "0\n");
        host.remove("/proc/sys/net/bridge/bridge-nf-call-iptables");
        host.remove("/proc/sys/net/bridge/bridge-nf-call-ip6tables");
        let root = tempfile::tempdir().unwrap();
        let sysctl_file = root.path().join(SYSCTL_FILE);
        fs::create_dir_all(sysctl_file.parent().unwrap()).unwrap();
        fs::write(
            &sysctl_file,
            "vm.swappiness = 10\nnet.ipv4.ip_forward = 0\n",
        )
        .unwrap();

        let report = run_checks(&host, &options());
        let fixed = apply(&host, &report, Keep::Persisted(root.path()));
        assert!(fixed.iter().all(|f| f.error.is_none()), "{fixed:#?}");
        assert_eq!(*host.loaded.borrow(), ["br_netfilter"]);
        assert_eq!(host.sysctl_writes.borrow().len(), 3);

        let after = run_checks(&host, &options());
        assert_eq!(after.count(Status::Fail), 0, "{}", after.to_text());
        assert_eq!(
            fs::read_to_string(&sysctl_file).unwrap(),
            "vm.swappiness = 10\nnet.ipv4.ip_forward = 1\n\
             net.bridge.bridge-nf-call-iptables = 1\nnet.bridge.bridge-nf-call-ip6tables = 1\n"
        );
        assert_eq!(
            fs::read_to_string(root.path().join(MODULES_LOAD_FILE)).unwrap(),
            format!("{HEADER}br_netfilter\n")
        );
        // Running it again changes nothing.
        assert!(apply(&host, &after, Keep::Persisted(root.path())).is_empty());
    }

    #[test]
    fn a_failed_remedy_is_reported_and_not_persisted() {
        let mut host = FakeHost::healthy();
        host.modprobe_works = false;
        host.set("/proc/modules", "");
        host.set("/proc/filesystems", "");
        let root = tempfile::tempdir().unwrap();
        let fixed = apply(
            &host,
            &run_checks(&host, &options()),
            Keep::Persisted(root.path()),
        );
        assert_eq!(fixed.len(), 1);
        assert_eq!(fixed[0].action, "modprobe overlay");
        assert!(
            fixed[0]
                .error
                .as_deref()
                .unwrap()
                .contains("modprobe not found")
        );
        assert!(!root.path().join(MODULES_LOAD_FILE).exists());
    }
}
