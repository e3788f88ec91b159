//! A fake host for the check tests: starts healthy, each test breaks one thing.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::host::{SysinfoHost, sysctl_path};

#[derive(Debug)]
pub(crate) struct FakeHost {
    pub files: RefCell<BTreeMap<String, String>>,
    pub binaries: BTreeSet<String>,
    pub busy_ports: BTreeSet<u16>,
    pub noexec: bool,
    pub now: SystemTime,
    pub hostname: String,
    pub modprobe_works: bool,
    pub loaded: RefCell<Vec<String>>,
    pub sysctl_writes: RefCell<Vec<(String, String)>>,
}

const CGROUP_V2_MOUNTINFO: &str = "\
22 1 0:21 / / rw,relatime - ext4 /dev/sda1 rw
30 22 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 rw,nsdelegate
";

impl FakeHost {
    pub fn healthy() -> Self {
        let files = [
            ("/proc/swaps", "Filename\tType\tSize\tUsed\tPriority\n"),
            (
                "/proc/filesystems",
                "nodev\tsysfs\nnodev\toverlay\n\text4\n",
            ),
            (
                "/proc/modules",
                "overlay 151552 0 - Live 0x0\nbr_netfilter 32768 0 - Live 0x0\n",
            ),
            ("/proc/self/mountinfo", CGROUP_V2_MOUNTINFO),
            (
                "/sys/fs/cgroup/cgroup.controllers",
                "cpuset cpu io memory pids\n",
            ),
            ("/proc/sys/net/ipv4/ip_forward", "1\n"),
            ("/proc/sys/net/bridge/bridge-nf-call-iptables", "1\n"),
            ("/proc/sys/net/bridge/bridge-nf-call-ip6tables", "1\n"),
        ];
        Self {
            files: RefCell::new(
                files
                    .into_iter()
                    .map(|(k, v)| (k.to_owned(), v.to_owned()))
                    .collect(),
            ),
            binaries: ["iptables", "ip6tables", "mount", "umount"]
                .map(String::from)
                .into(),
            busy_ports: BTreeSet::new(),
            noexec: false,
            now: UNIX_EPOCH + Duration::from_secs(super::checks::BUILD_UNIX_TIME + 86_400),
            hostname: "node-1".into(),
            modprobe_works: true,
            loaded: RefCell::default(),
            sysctl_writes: RefCell::default(),
        }
    }

    pub fn set(&self, path: &str, contents: &str) {
        self.files
            .borrow_mut()
            .insert(path.to_owned(), contents.to_owned());
    }

    pub fn remove(&self, path: &str) {
        self.files.borrow_mut().remove(path);
    }
}

impl SysinfoHost for FakeHost {
    fn read(&self, path: &str) -> io::Result<String> {
        self.files
            .borrow()
            .get(path)
            .cloned()
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))
    }

    fn exists(&self, path: &str) -> bool {
        let files = self.files.borrow();
        files.contains_key(path) || files.keys().any(|k| k.starts_with(&format!("{path}/")))
    }

    fn find_binary(&self, name: &str, extra_dir: &Path) -> Option<PathBuf> {
        self.binaries.contains(name).then(|| extra_dir.join(name))
    }

    fn port_in_use(&self, port: u16) -> io::Result<bool> {
        Ok(self.busy_ports.contains(&port))
    }

    fn noexec(&self, _path: &Path) -> io::Result<bool> {
        Ok(self.noexec)
    }

    fn now(&self) -> SystemTime {
        self.now
    }

    fn hostname(&self) -> io::Result<String> {
        Ok(self.hostname.clone())
    }

    fn write_sysctl(&self, key: &str, value: &str) -> io::Result<()> {
        let path = sysctl_path(key);
        if !self.files.borrow().contains_key(&path) {
            return Err(io::ErrorKind::NotFound.into());
        }
        self.set(&path, &format!("{value}\n"));
        self.sysctl_writes
            .borrow_mut()
            .push((key.to_owned(), value.to_owned()));
        Ok(())
    }

    fn load_module(&self, name: &str) -> io::Result<()> {
        if !self.modprobe_works {
            return Err(io::Error::other("modprobe not found (install kmod)"));
        }
        self.set(&format!("/sys/module/{name}/refcnt"), "0\n");
        if name == "br_netfilter" {
            self.set("/proc/sys/net/bridge/bridge-nf-call-iptables", "0\n");
            self.set("/proc/sys/net/bridge/bridge-nf-call-ip6tables", "0\n");
        }
        self.loaded.borrow_mut().push(name.to_owned());
        Ok(())
    }
}
