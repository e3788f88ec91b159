//! `k0x sysinfo --fix`: loads missing kernel modules and sets sysctls, and persists both so the
//! host is still prepared after a reboot.
//!
//! Only these remedies are applied automatically: they are what every Kubernetes node needs and
//! they change nothing a running host relies on. Swap, cgroup kernel parameters, ports and the
//! clock are left to the user, whose one-line fix the report shows.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::host::Host;
use super::{Remedy, Report};
use k0x_config::fsutil::write_atomic;

/// Modules k0x loads at boot, relative to the root.
pub const MODULES_LOAD_FILE: &str = "etc/modules-load.d/k0x.conf";
/// Sysctls k0x sets at boot, relative to the root.
pub const SYSCTL_FILE: &str = "etc/sysctl.d/99-k0x.conf";

/// One applied remedy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Fixed {
    /// e.g. `modprobe br_netfilter`, `sysctl -w net.ipv4.ip_forward=1`.
    pub action: String,
    /// None when it worked, else why not.
    pub error: Option<String>,
    /// The file that keeps it across reboots, when it worked.
    pub persisted_in: Option<PathBuf>,
}

/// Applies the remedies of every failed check in `report`: modules first (a bridge sysctl only
/// exists once br_netfilter is loaded), then sysctls. Persisted files go below `root` (`/` on a
/// real host) and keep any lines an administrator added.
pub fn apply(host: &dyn Host, report: &Report, root: &Path) -> Vec<Fixed> {
    let mut modules: Vec<&'static str> = Vec::new();
    let mut sysctls: Vec<(&'static str, &'static str)> = Vec::new();
    for remedy in report.checks.iter().filter_map(|c| c.remedy.as_ref()) {
        match *remedy {
            Remedy::LoadModule(name) if !modules.contains(&name) => modules.push(name),
            Remedy::SetSysctl { key, value } if !sysctls.iter().any(|(k, _)| *k == key) => {
                sysctls.push((key, value));
            }
            _ => {}
        }
    }
    let mut fixed = Vec::new();
    let modules_file = root.join(MODULES_LOAD_FILE);
    for name in modules {
        let result = host
            .load_module(name)
            .and_then(|()| persist_module(&modules_file, name));
        fixed.push(outcome(format!("modprobe {name}"), result, &modules_file));
    }
    let sysctl_file = root.join(SYSCTL_FILE);
    for (key, value) in sysctls {
        let result = host
            .write_sysctl(key, value)
            .and_then(|()| persist_sysctl(&sysctl_file, key, value));
        fixed.push(outcome(
            format!("sysctl -w {key}={value}"),
            result,
            &sysctl_file,
        ));
    }
    fixed
}

fn outcome(action: String, result: io::Result<()>, file: &Path) -> Fixed {
    match result {
        Ok(()) => Fixed {
            action,
            error: None,
            persisted_in: Some(file.into()),
        },
        Err(err) => Fixed {
            action,
            error: Some(err.to_string()),
            persisted_in: None,
        },
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
    use super::super::{Options, Status, run_checks};
    use super::*;
    use k0x_config::DataDir;

    fn options() -> Options {
        Options::new(DataDir::new("/var/lib/k0x"), true, true)
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
        let fixed = apply(&host, &report, root.path());
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
        assert!(apply(&host, &after, root.path()).is_empty());
    }

    #[test]
    fn a_failed_remedy_is_reported_and_not_persisted() {
        let mut host = FakeHost::healthy();
        host.modprobe_works = false;
        host.set("/proc/modules", "");
        host.set("/proc/filesystems", "");
        let root = tempfile::tempdir().unwrap();
        let fixed = apply(&host, &run_checks(&host, &options()), root.path());
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
