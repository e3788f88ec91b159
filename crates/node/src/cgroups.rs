//! Which cgroup driver containerd (runc) and the kubelet must share on this host.
//!
//! The kubeadm guides tell people to set `SystemdCgroup = true` by hand and to make the kubelet
//! match; getting one of the two wrong gives pods that never start. The rule is simple: when
//! systemd manages the host (it is PID 1), let it own the cgroup tree (`systemd`); otherwise
//! nothing would answer runc's D-Bus calls, so cgroups are written directly (`cgroupfs`). Whether
//! the host uses cgroup v1, v2 or hybrid does not change that choice.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CgroupDriver {
    Systemd,
    Cgroupfs,
}

impl CgroupDriver {
    /// `systemd` when systemd is the init system ([`k0x_config::systemd::booted`]), `cgroupfs`
    /// otherwise.
    pub fn detect() -> Self {
        Self::from_systemd_booted(k0x_config::systemd::booted())
    }

    pub fn from_systemd_booted(booted: bool) -> Self {
        if booted {
            Self::Systemd
        } else {
            Self::Cgroupfs
        }
    }

    /// The value of the kubelet's `cgroupDriver` field.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Systemd => "systemd",
            Self::Cgroupfs => "cgroupfs",
        }
    }

    /// containerd's runc option `SystemdCgroup`.
    pub fn systemd_cgroup(self) -> bool {
        self == Self::Systemd
    }
}

impl fmt::Display for CgroupDriver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn driver_follows_systemd() {
        assert_eq!(CgroupDriver::from_systemd_booted(true).as_str(), "systemd");
        assert!(!CgroupDriver::from_systemd_booted(false).systemd_cgroup());
    }
}
