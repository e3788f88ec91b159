//! The host as the checks see it: a small trait so each check runs against fakes in unit tests
//! and against this machine through [`RealHost`].

use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::SystemTime;

/// Everything a check reads from or does to the host.
pub trait SysinfoHost {
    /// Reads a text file such as `/proc/swaps` or `/proc/sys/net/ipv4/ip_forward`.
    fn read(&self, path: &str) -> io::Result<String>;
    /// True when `path` exists (e.g. `/sys/module/overlay`).
    fn exists(&self, path: &str) -> bool;
    /// Finds an executable in `extra_dir` (the data dir's `bin/`) or on PATH.
    fn find_binary(&self, name: &str, extra_dir: &Path) -> Option<PathBuf>;
    /// True when a socket of this network namespace listens on TCP `port` (any address).
    fn port_in_use(&self, port: u16) -> io::Result<bool>;
    /// True when the filesystem holding `path` (or its nearest existing parent) is mounted noexec.
    fn noexec(&self, path: &Path) -> io::Result<bool>;
    fn now(&self) -> SystemTime;
    fn hostname(&self) -> io::Result<String>;
    /// Sets a sysctl at runtime (`net.ipv4.ip_forward` -> `/proc/sys/net/ipv4/ip_forward`).
    fn write_sysctl(&self, key: &str, value: &str) -> io::Result<()>;
    /// Loads a kernel module.
    fn load_module(&self, name: &str) -> io::Result<()>;
}

/// This machine.
#[derive(Debug, Default, Clone, Copy)]
pub struct RealHost;

/// The `/proc/sys` file of a sysctl key.
pub fn sysctl_path(key: &str) -> String {
    format!("/proc/sys/{}", key.replace('.', "/"))
}

impl SysinfoHost for RealHost {
    fn read(&self, path: &str) -> io::Result<String> {
        std::fs::read_to_string(path)
    }

    fn exists(&self, path: &str) -> bool {
        Path::new(path).exists()
    }

    fn find_binary(&self, name: &str, extra_dir: &Path) -> Option<PathBuf> {
        let path = std::env::var("PATH").unwrap_or_default();
        std::iter::once(extra_dir.to_path_buf())
            .chain(path.split(':').filter(|d| !d.is_empty()).map(PathBuf::from))
            .chain(["/usr/sbin", "/sbin"].map(PathBuf::from))
            .map(|dir| dir.join(name))
            .find(|candidate| is_executable(candidate))
    }

    fn port_in_use(&self, port: u16) -> io::Result<bool> {
        // Read, not probed with bind(): a probe holds the port for a moment, and two servers
        // starting at once would each see the other's probe as a listener.
        match ["/proc/net/tcp", "/proc/net/tcp6"].map(std::fs::read_to_string) {
            [Err(err), Err(_)] => Err(err),
            tables => Ok(tables.iter().flatten().any(|table| listens_on(table, port))),
        }
    }

    fn noexec(&self, path: &Path) -> io::Result<bool> {
        let existing = path
            .ancestors()
            .find(|p| p.exists())
            .unwrap_or(Path::new("/"));
        let stat = nix::sys::statvfs::statvfs(existing).map_err(io::Error::from)?;
        Ok(stat.flags().contains(nix::sys::statvfs::FsFlags::ST_NOEXEC))
    }

    fn now(&self) -> SystemTime {
        SystemTime::now()
    }

    fn hostname(&self) -> io::Result<String> {
        nix::unistd::gethostname()
            .map_err(io::Error::from)
            .map(|name| name.to_string_lossy().into_owned())
    }

    fn write_sysctl(&self, key: &str, value: &str) -> io::Result<()> {
        std::fs::write(sysctl_path(key), value)
    }

    fn load_module(&self, name: &str) -> io::Result<()> {
        let output =
            Command::new("modprobe")
                .arg(name)
                .output()
                .map_err(|err| match err.kind() {
                    io::ErrorKind::NotFound => {
                        io::Error::new(io::ErrorKind::NotFound, "modprobe not found (install kmod)")
                    }
                    _ => err,
                })?;
        if output.status.success() {
            Ok(())
        } else {
            Err(io::Error::other(format!(
                "modprobe {name}: {}",
                String::from_utf8_lossy(&output.stderr).trim()
            )))
        }
    }
}

/// True when a `/proc/net/tcp`-format table has a socket in LISTEN state on `port`.
fn listens_on(table: &str, port: u16) -> bool {
    const LISTEN: &str = "0A";
    table.lines().skip(1).any(|line| {
        let mut fields = line.split_whitespace().skip(1);
        let local_port = fields
            .next()
            .and_then(|local| local.rsplit_once(':'))
            .and_then(|(_, hex)| u16::from_str_radix(hex, 16).ok());
        let state = fields.nth(1);
        local_port == Some(port) && state == Some(LISTEN)
    })
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::listens_on;

    const TABLE: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:2831 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0 100 0 0 10 0
   1: 0100007F:2833 0100007F:9C40 01 00000000:00000000 00:00000000 00000000     0        0 2 1 0 20 4 30 10 -1
";

    #[test]
    fn only_listening_sockets_count() {
        assert!(listens_on(TABLE, 10289));
        assert!(
            !listens_on(TABLE, 10291),
            "an established connection is not a listener"
        );
        assert!(
            !listens_on(TABLE, 40000),
            "a remote port is not a local one"
        );
        assert!(!listens_on("", 10289));
    }

    #[test]
    fn ipv6_addresses_parse() {
        let table = "header\n   0: 00000000000000000000000000000000:0A2A 00000000000000000000000000000000:0000 0A x\n";
        assert!(listens_on(table, 2602));
    }
}
