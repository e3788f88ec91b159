//! Mounts below k0x's directories (kubelet volumes, container root filesystems, CNI netns
//! bind mounts), read from /proc/self/mountinfo and unmounted deepest first.

use std::fs;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::mount::{MntFlags, umount2};

/// Every mount point of this mount namespace.
pub fn mount_points() -> Vec<PathBuf> {
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(|field| PathBuf::from(unescape(field)))
        .collect()
}

/// True when `dir` itself is a mount point (e.g. a disk mounted on the data dir).
pub fn is_mount_point(dir: &Path) -> bool {
    mount_points().iter().any(|p| p == dir)
}

/// Mount points strictly below any of `dirs`, deepest first (a mount stacked twice is listed
/// twice). A filesystem mounted on a dir itself is the user's, not k0x's, and is not listed.
pub fn mounts_under(dirs: &[PathBuf]) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = mount_points()
        .into_iter()
        .filter(|point| {
            dirs.iter()
                .any(|dir| point != dir && point.starts_with(dir))
        })
        .collect();
    found.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    found
}

/// mountinfo writes space, tab, newline and backslash as octal escapes (`\040`).
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|d| bytes[i] == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match octal {
            Some(digits) => {
                out.push(digits.iter().fold(0u8, |acc, d| acc * 8 + (d - b'0')));
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Unmounts `point`; a busy mount is detached lazily so it goes once its last user does.
pub fn unmount(point: &Path) -> Result<(), Errno> {
    match umount2(point, MntFlags::empty()) {
        Err(Errno::EBUSY) => umount2(point, MntFlags::MNT_DETACH),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn octal_escapes_are_decoded() {
        assert_eq!(unescape(r"/var/lib/k0x/a\040b"), "/var/lib/k0x/a b");
        assert_eq!(unescape(r"/x\134y"), r"/x\y");
        assert_eq!(unescape(r"/plain"), "/plain");
    }
}
