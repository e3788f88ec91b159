//! The individual checks. Each is a small function of the [`SysinfoHost`] and returns one [`Check`].

use std::time::{Duration, UNIX_EPOCH};

use serde::Serialize;

use super::host::{SysinfoHost, sysctl_path};
use super::{Check, Options, Remedy, Report};

/// When this k0x was built (seconds since the epoch); a clock before it was never set.
pub(crate) const BUILD_UNIX_TIME: u64 = parse_u64(env!("K0X_BUILD_UNIX_TIME"));

const fn parse_u64(text: &str) -> u64 {
    let bytes = text.as_bytes();
    let mut value = 0u64;
    let mut i = 0;
    while i < bytes.len() {
        value = value * 10 + (bytes[i] - b'0') as u64;
        i += 1;
    }
    value
}

/// Runs every check relevant to the roles in `options`.
pub fn run_checks(host: &dyn SysinfoHost, options: &Options) -> Report {
    let worker = options.worker;
    let mut checks = vec![
        swap(host),
        module(host, "overlay", OVERLAY_EVIDENCE).fatal_if(worker),
        module(host, "br_netfilter", BR_NETFILTER_EVIDENCE).fatal_if(worker),
        sysctl(host, "net.ipv4.ip_forward", "br_netfilter").fatal_if(worker),
        sysctl(host, "net.bridge.bridge-nf-call-iptables", "br_netfilter").fatal_if(worker),
        sysctl(host, "net.bridge.bridge-nf-call-ip6tables", "br_netfilter"),
    ];
    let cgroups = cgroup_version(host);
    checks.push(cgroups.check().fatal_if(worker));
    checks.push(memory_controller(host, cgroups).fatal_if(worker));
    if worker {
        checks.extend(
            ["iptables", "mount", "umount"].map(|name| binary(host, name, options).fatal_if(true)),
        );
    }
    checks.extend(
        options
            .ports
            .iter()
            .map(|&(port, user)| free_port(host, port, user).fatal_if(true)),
    );
    checks.push(exec_allowed(host, options).fatal_if(true));
    checks.push(clock(host).fatal_if(true));
    checks.push(node_name(host).fatal_if(worker));
    Report { checks }
}

fn swap(host: &dyn SysinfoHost) -> Check {
    let id = "swap";
    match host.read("/proc/swaps") {
        Ok(text) => {
            let active: Vec<&str> = text
                .lines()
                .skip(1)
                .filter_map(|l| l.split_whitespace().next())
                .collect();
            if active.is_empty() {
                Check::pass(id, "off")
            } else {
                Check::warn(
                    id,
                    format!(
                        "on ({}); the kubelet tolerates it (failSwapOn: false) but memory limits get fuzzy",
                        active.join(", ")
                    ),
                    "swapoff -a and remove the swap entries from /etc/fstab",
                )
            }
        }
        Err(err) => Check::warn(
            id,
            format!("unknown: cannot read /proc/swaps: {err}"),
            "mount /proc",
        ),
    }
}

/// Files whose presence shows a module is available, loaded or built in.
const OVERLAY_EVIDENCE: &[&str] = &["/sys/module/overlay"];
const BR_NETFILTER_EVIDENCE: &[&str] = &[
    "/sys/module/br_netfilter",
    "/proc/sys/net/bridge/bridge-nf-call-iptables",
];

fn module(host: &dyn SysinfoHost, name: &'static str, evidence: &[&str]) -> Check {
    let id = format!("module:{name}");
    let in_proc_modules = host.read("/proc/modules").is_ok_and(|text| {
        text.lines()
            .any(|l| l.split_whitespace().next() == Some(name))
    });
    // overlay built into the kernel shows up only as a filesystem type.
    let as_filesystem = name == "overlay"
        && host.read("/proc/filesystems").is_ok_and(|text| {
            text.lines()
                .any(|l| l.split_whitespace().last() == Some("overlay"))
        });
    if in_proc_modules {
        Check::pass(id, "loaded")
    } else if as_filesystem || evidence.iter().any(|p| host.exists(p)) {
        Check::pass(id, "available (built in or loaded)")
    } else {
        Check::fail(
            id,
            "not loaded",
            format!(
                "modprobe {name} and add it to /etc/modules-load.d/k0x.conf (k0x sysinfo --fix)"
            ),
        )
        .remedy(Remedy::LoadModule(name))
    }
}

fn sysctl(host: &dyn SysinfoHost, key: &'static str, provider: &str) -> Check {
    let id = format!("sysctl:{key}");
    let persist = format!(
        "sysctl -w {key}=1 and add `{key} = 1` to /etc/sysctl.d/99-k0x.conf (k0x sysinfo --fix)"
    );
    match host.read(&sysctl_path(key)) {
        Ok(value) if value.trim() == "1" => Check::pass(id, "1"),
        Ok(value) => Check::fail(id, format!("{} (want 1)", value.trim()), persist),
        Err(_) => Check::fail(
            id,
            format!("missing ({provider} not loaded)"),
            format!("modprobe {provider}, then {persist}"),
        ),
    }
    .remedy(Remedy::SetSysctl { key, value: "1" })
}

/// The cgroup layout of the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CgroupVersion {
    /// Only the unified hierarchy (cgroup2 on /sys/fs/cgroup).
    V2,
    /// v1 controllers plus a cgroup2 hierarchy without controllers (systemd's "hybrid").
    Hybrid,
    /// Only v1 controller hierarchies.
    V1,
    None,
}

impl CgroupVersion {
    fn check(self) -> Check {
        let id = "cgroups";
        match self {
            CgroupVersion::V2 => Check::pass(id, "v2 (unified)"),
            CgroupVersion::Hybrid => Check::pass(id, "hybrid (v1 controllers, v2 for systemd)"),
            CgroupVersion::V1 => Check::pass(id, "v1"),
            CgroupVersion::None => Check::fail(
                id,
                "no cgroup filesystem mounted",
                "mount cgroup2 on /sys/fs/cgroup (mount -t cgroup2 none /sys/fs/cgroup)",
            ),
        }
    }
}

fn cgroup_version(host: &dyn SysinfoHost) -> CgroupVersion {
    let mountinfo = host.read("/proc/self/mountinfo").unwrap_or_default();
    let mut v1 = false;
    let mut v2_at_root = false;
    let mut v2_elsewhere = false;
    for line in mountinfo.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let mount_point = left.split_whitespace().nth(4).unwrap_or_default();
        match right.split_whitespace().next() {
            Some("cgroup2") if mount_point == "/sys/fs/cgroup" => v2_at_root = true,
            Some("cgroup2") => v2_elsewhere = true,
            Some("cgroup") => v1 = true,
            _ => {}
        }
    }
    match (v2_at_root, v1, v2_elsewhere) {
        (true, _, _) => CgroupVersion::V2,
        (false, true, true) => CgroupVersion::Hybrid,
        (false, true, false) => CgroupVersion::V1,
        (false, false, _) => CgroupVersion::None,
    }
}

fn memory_controller(host: &dyn SysinfoHost, version: CgroupVersion) -> Check {
    let id = "cgroup:memory";
    let fix = "add cgroup_enable=memory cgroup_memory=1 to the kernel command line (/boot/cmdline.txt on a Raspberry Pi) and reboot";
    let enabled = match version {
        CgroupVersion::V2 => host
            .read("/sys/fs/cgroup/cgroup.controllers")
            .is_ok_and(|text| text.split_whitespace().any(|c| c == "memory")),
        CgroupVersion::V1 | CgroupVersion::Hybrid => host.read("/proc/cgroups").is_ok_and(|text| {
            text.lines().any(|line| {
                let fields: Vec<&str> = line.split_whitespace().collect();
                fields.first() == Some(&"memory") && fields.get(3) == Some(&"1")
            })
        }),
        CgroupVersion::None => false,
    };
    if enabled {
        Check::pass(id, "enabled")
    } else {
        Check::fail(id, "missing or disabled", fix)
    }
}

fn binary(host: &dyn SysinfoHost, name: &str, options: &Options) -> Check {
    let id = format!("binary:{name}");
    match host.find_binary(name, &options.data_dir.bin()) {
        Some(path) => Check::pass(id, path.display().to_string()),
        None => Check::fail(
            id,
            "not found in the data dir's bin/ or on PATH",
            format!(
                "install the package providing {name} (e.g. apt-get install {})",
                package_of(name)
            ),
        ),
    }
}

fn package_of(binary: &str) -> &'static str {
    match binary {
        "iptables" | "ip6tables" => "iptables",
        _ => "mount",
    }
}

fn free_port(host: &dyn SysinfoHost, port: u16, user: &str) -> Check {
    let id = format!("port:{port}");
    match host.port_in_use(port) {
        Ok(false) => Check::pass(id, format!("free ({user})")),
        Ok(true) => Check::fail(
            id,
            format!("in use ({user} needs it)"),
            format!(
                "stop the process listening there (ss -ltnp 'sport = :{port}') or change the port in the k0x config"
            ),
        ),
        Err(err) => Check::warn(
            id,
            format!("cannot test ({err})"),
            "run k0x sysinfo as root",
        ),
    }
}

fn exec_allowed(host: &dyn SysinfoHost, options: &Options) -> Check {
    let id = "data-dir:exec";
    let dir = options.data_dir.root();
    match host.noexec(dir) {
        Ok(false) => Check::pass(id, format!("{} allows executables", dir.display())),
        Ok(true) => Check::fail(
            id,
            format!(
                "{} is on a noexec filesystem; the components cannot run from it",
                dir.display()
            ),
            "remount that filesystem without noexec or choose another --data-dir",
        ),
        Err(err) => Check::warn(
            id,
            format!("cannot stat {}: {err}", dir.display()),
            "check that the data dir's parent exists",
        ),
    }
}

fn clock(host: &dyn SysinfoHost) -> Check {
    let id = "clock";
    let now = host
        .now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs();
    // A day of slack for builds made in another time zone.
    if now + 86_400 >= BUILD_UNIX_TIME {
        Check::pass(id, civil_date(now))
    } else {
        Check::fail(
            id,
            format!(
                "{} is before this k0x was built ({}); certificates would not be valid yet",
                civil_date(now),
                civil_date(BUILD_UNIX_TIME)
            ),
            "set the time: timedatectl set-ntp true, or date -s YYYY-MM-DD",
        )
    }
}

/// `YYYY-MM-DD` of a Unix time (proleptic Gregorian, UTC).
fn civil_date(unix: u64) -> String {
    let days = (unix / 86_400) as i64 + 719_468;
    let era = days.div_euclid(146_097);
    let day_of_era = days.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

/// The node name the kubelet registers: the hostname, lower-cased.
fn node_name(host: &dyn SysinfoHost) -> Check {
    let name = match host.hostname() {
        Ok(name) => name,
        Err(err) => {
            return Check::fail(
                "hostname",
                format!("unreadable: {err}"),
                "set a hostname with hostnamectl set-hostname NAME",
            );
        }
    };
    let lower = name.to_ascii_lowercase();
    if !k0x_config::is_node_name(&lower) {
        Check::fail(
            "hostname",
            format!(
                "{name:?} is not a valid node name (RFC 1123: a-z, 0-9, '-', '.', at most 253 characters)"
            ),
            "set a valid hostname with hostnamectl set-hostname NAME",
        )
    } else if lower != name {
        Check::warn(
            "hostname",
            format!("{name:?} has upper case letters; the node registers as {lower:?}"),
            format!("hostnamectl set-hostname {lower}"),
        )
    } else {
        Check::pass("hostname", name)
    }
}

#[cfg(test)]
mod tests {
    use super::super::fake::FakeHost;
    use super::super::{Parts, Status};
    use super::*;
    use k0x_config::DataDir;

    fn options() -> Options {
        Options::new(
            DataDir::new("/var/lib/k0x"),
            Parts::ControllerWorker,
            &k0x_config::ClusterConfig::default().spec,
        )
    }

    fn find<'a>(report: &'a Report, id: &str) -> &'a Check {
        report
            .checks
            .iter()
            .find(|c| c.id == id)
            .unwrap_or_else(|| panic!("no check {id}"))
    }

    fn check(host: &FakeHost, id: &str) -> Check {
        find(&run_checks(host, &options()), id).clone()
    }

    #[test]
    fn a_healthy_host_passes_everything() {
        let report = run_checks(&FakeHost::healthy(), &options());
        let problems: Vec<_> = report
            .checks
            .iter()
            .filter(|c| c.status != Status::Pass)
            .collect();
        assert!(problems.is_empty(), "{problems:#?}");
        assert_eq!(report.checks.len(), 23);
    }

    #[test]
    fn swap_on_warns_without_being_fatal() {
        let host = FakeHost::healthy();
        host.set(
            "/proc/swaps",
            "Filename Type Size Used Priority\n/swapfile file 1024 0 -2\n",
        );
        let c = check(&host, "swap");
        assert_eq!((c.status, c.fatal), (Status::Warn, false));
        assert!(c.detail.contains("/swapfile"), "{}", c.detail);
    }

    #[test]
    fn missing_modules_fail_with_a_remedy() {
        let host = FakeHost::healthy();
        host.set("/proc/modules", "");
        assert_eq!(
            check(&host, "module:overlay").status,
            Status::Pass,
            "via /proc/filesystems"
        );
        host.set("/proc/filesystems", "nodev\tsysfs\n");
        let c = check(&host, "module:overlay");
        assert_eq!((c.status, c.fatal), (Status::Fail, true));
        assert_eq!(c.remedy, Some(Remedy::LoadModule("overlay")));
        host.set("/sys/module/overlay/refcnt", "0");
        assert_eq!(check(&host, "module:overlay").status, Status::Pass);

        assert_eq!(
            check(&host, "module:br_netfilter").status,
            Status::Pass,
            "via its sysctl"
        );
        host.remove("/proc/sys/net/bridge/bridge-nf-call-iptables");
        let c = check(&host, "module:br_netfilter");
        assert_eq!(c.remedy, Some(Remedy::LoadModule("br_netfilter")));
    }

    #[test]
    fn sysctls_must_be_one() {
        let host = FakeHost::healthy();
        host.set("/proc/sys/net/ipv4/ip_forward", "0\n");
        let c = check(&host, "sysctl:net.ipv4.ip_forward");
        assert_eq!((c.status, c.detail.as_str()), (Status::Fail, "0 (want 1)"));
        assert!(c.fatal);
        host.remove("/proc/sys/net/bridge/bridge-nf-call-ip6tables");
        let c = check(&host, "sysctl:net.bridge.bridge-nf-call-ip6tables");
        assert_eq!((c.status, c.fatal), (Status::Fail, false));
        assert!(c.fix.unwrap().starts_with("modprobe br_netfilter"));
    }

    #[test]
    fn cgroup_layouts_are_told_apart() {
        let host = FakeHost::healthy();
        assert_eq!(cgroup_version(&host), CgroupVersion::V2);
        let v1 = "31 23 0:28 / /sys/fs/cgroup rw - tmpfs tmpfs rw\n\
                  35 31 0:32 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n";
        host.set("/proc/self/mountinfo", v1);
        assert_eq!(cgroup_version(&host), CgroupVersion::V1);
        host.set(
            "/proc/self/mountinfo",
            &format!("{v1}36 31 0:33 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n"),
        );
        assert_eq!(cgroup_version(&host), CgroupVersion::Hybrid);
        host.set(
            "/proc/self/mountinfo",
            "22 1 0:21 / / rw - ext4 /dev/sda1 rw\n",
        );
        let c = check(&host, "cgroups");
        assert_eq!((c.status, c.fatal), (Status::Fail, true));
    }

    #[test]
    fn memory_controller_present_and_enabled() {
        let host = FakeHost::healthy();
        host.set("/sys/fs/cgroup/cgroup.controllers", "cpuset cpu io pids\n");
        assert_eq!(check(&host, "cgroup:memory").status, Status::Fail);
        host.set(
            "/proc/self/mountinfo",
            "35 31 0:32 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n",
        );
        host.set(
            "/proc/cgroups",
            "#subsys_name hierarchy num_cgroups enabled\nmemory 4 20 0\n",
        );
        let c = check(&host, "cgroup:memory");
        assert_eq!((c.status, c.fatal), (Status::Fail, true));
        assert!(c.fix.unwrap().contains("cgroup_enable=memory"));
        host.set(
            "/proc/cgroups",
            "#subsys_name hierarchy num_cgroups enabled\nmemory 4 20 1\n",
        );
        assert_eq!(check(&host, "cgroup:memory").status, Status::Pass);
    }

    #[test]
    fn missing_binaries_fail_for_workers_only() {
        let mut host = FakeHost::healthy();
        host.binaries.remove("iptables");
        let c = check(&host, "binary:iptables");
        assert_eq!((c.status, c.fatal), (Status::Fail, true));
        let controller_only = Options::new(
            DataDir::new("/d"),
            Parts::Controller,
            &k0x_config::ClusterConfig::default().spec,
        );
        let report = run_checks(&host, &controller_only);
        assert!(report.checks.iter().all(|c| !c.id.starts_with("binary:")));
    }

    #[test]
    fn busy_ports_fail() {
        let mut host = FakeHost::healthy();
        host.busy_ports.insert(6443);
        let c = check(&host, "port:6443");
        assert_eq!((c.status, c.fatal), (Status::Fail, true));
        assert!(c.detail.contains("kube-apiserver"));
        let worker_only = Options::new(
            DataDir::new("/d"),
            Parts::Worker,
            &k0x_config::ClusterConfig::default().spec,
        );
        let ids: Vec<_> = run_checks(&host, &worker_only)
            .checks
            .into_iter()
            .filter(|c| c.id.starts_with("port:"))
            .map(|c| c.id)
            .collect();
        assert_eq!(ids, ["port:10250", "port:10249", "port:10256", "port:7443"]);
    }

    #[test]
    fn noexec_data_dir_fails() {
        let mut host = FakeHost::healthy();
        host.noexec = true;
        let c = check(&host, "data-dir:exec");
        assert_eq!((c.status, c.fatal), (Status::Fail, true));
    }

    #[test]
    fn a_clock_before_the_build_fails() {
        let mut host = FakeHost::healthy();
        host.now = UNIX_EPOCH;
        let c = check(&host, "clock");
        assert_eq!((c.status, c.fatal), (Status::Fail, true));
        assert!(c.detail.starts_with("1970-01-01 is before"), "{}", c.detail);
    }

    #[test]
    fn hostnames_follow_rfc_1123() {
        let mut host = FakeHost::healthy();
        host.hostname = "pi_4".into();
        assert_eq!(check(&host, "hostname").status, Status::Fail);
        host.hostname = "Pi-4".into();
        assert_eq!(check(&host, "hostname").status, Status::Warn);
        host.hostname = "a".repeat(64);
        assert_eq!(check(&host, "hostname").status, Status::Fail);
        host.hostname = "pi-4.lan".into();
        assert_eq!(check(&host, "hostname").status, Status::Pass);
        host.hostname = "a..b".into();
        let c = find(&run_checks(&host, &options()), "hostname").clone();
        assert_eq!((c.status, c.fatal), (Status::Fail, true));
    }

    #[test]
    fn civil_dates() {
        assert_eq!(civil_date(0), "1970-01-01");
        assert_eq!(civil_date(951_782_400), "2000-02-29");
        assert_eq!(civil_date(1_764_028_800), "2025-11-25");
    }

    #[test]
    fn text_report_has_a_fix_line_under_each_problem() {
        let host = FakeHost::healthy();
        host.set("/proc/sys/net/ipv4/ip_forward", "0\n");
        let text = run_checks(&host, &options()).to_text();
        let line = text
            .lines()
            .position(|l| l.contains("sysctl:net.ipv4.ip_forward"))
            .unwrap();
        assert!(text.lines().nth(line).unwrap().starts_with("FAIL"));
        assert!(
            text.lines()
                .nth(line + 1)
                .unwrap()
                .trim_start()
                .starts_with("fix: sysctl -w")
        );
        assert!(
            text.ends_with("22 passed, 0 warnings, 1 failed (1 fatal)\n"),
            "{text}"
        );
    }
}
