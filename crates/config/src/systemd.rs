//! Whether systemd is the init system: the `sd_booted()` rule, `/run/systemd/system` exists.
//! The cgroup driver follows it, and so does talking to systemctl.

use std::path::Path;

/// Where systemd running as PID 1 leaves its mark.
pub const BOOTED_MARKER: &str = "/run/systemd/system";

/// Whether systemd runs as init on this host.
pub fn booted() -> bool {
    Path::new(BOOTED_MARKER).is_dir()
}
