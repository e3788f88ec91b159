//! The component lock (`embedded-bins/components.lock`), compiled into every k0x binary.
//!
//! The file is included verbatim at build time, so even a binary without a payload can say which
//! components (and which upstream versions) it expects. The format is deliberately trivial:
//! whitespace-separated records that the bash stage script and this module both read without any
//! parser library.

use std::sync::LazyLock;

/// The lock as it was when this binary was built.
const LOCK_TEXT: &str = include_str!("../../../embedded-bins/components.lock");

/// The Debian/Go name of the architecture this binary was built for.
pub const HOST_ARCH: &str = if cfg!(target_arch = "x86_64") {
    "amd64"
} else if cfg!(target_arch = "aarch64") {
    "arm64"
} else if cfg!(target_arch = "arm") {
    "arm"
} else {
    "unsupported"
};

/// One component for one architecture.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockEntry {
    /// File name under `<data-dir>/bin`.
    pub name: String,
    /// Pinned upstream version.
    pub version: String,
    /// amd64, arm64 or arm.
    pub arch: String,
    /// Upstream download, `None` when upstream publishes no build for this architecture.
    pub url: Option<String>,
    /// Confirmed sha256 of the download, where upstream publishes one we could confirm.
    pub sha256: Option<String>,
    /// The checksum file upstream publishes beside the download.
    pub checksum_url: Option<String>,
    /// Path of the binary inside the downloaded archive (`None`: the download is the binary).
    pub member: Option<String>,
}

/// Parses lock text; errors name the line.
pub fn parse(text: &str) -> Result<Vec<LockEntry>, String> {
    let optional = |field: &str| (field != "-").then(|| field.to_owned());
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty() && !line.trim_start().starts_with('#'))
        .map(|(index, line)| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let [name, version, arch, url, sha256, checksum_url, member] = fields[..] else {
                return Err(format!(
                    "components.lock line {}: expected 7 fields (name version arch url sha256 checksum_url member), found {}",
                    index + 1,
                    fields.len()
                ));
            };
            if sha256 != "-" && (sha256.len() != 64 || hex::decode(sha256).is_err()) {
                return Err(format!(
                    "components.lock line {}: sha256 {sha256:?} is not 64 hex digits",
                    index + 1
                ));
            }
            Ok(LockEntry {
                name: name.to_owned(),
                version: version.to_owned(),
                arch: arch.to_owned(),
                url: optional(url),
                sha256: optional(sha256),
                checksum_url: optional(checksum_url),
                member: optional(member),
            })
        })
        .collect()
}

/// Every record of the compiled-in lock.
pub fn all() -> &'static [LockEntry] {
    static ALL: LazyLock<Vec<LockEntry>> = LazyLock::new(|| {
        parse(LOCK_TEXT).expect("components.lock is checked by this crate's tests")
    });
    &ALL
}

/// The components this binary expects, in lock order (records for [`HOST_ARCH`]).
pub fn expected() -> Vec<&'static LockEntry> {
    all()
        .iter()
        .filter(|entry| entry.arch == HOST_ARCH)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_compiled_in_lock_parses_and_covers_every_component_on_every_arch() {
        let entries = parse(LOCK_TEXT).unwrap();
        let wanted = [
            "etcd",
            "kube-apiserver",
            "kube-scheduler",
            "kube-controller-manager",
            "kubelet",
            "containerd",
            "containerd-shim-runc-v2",
            "runc",
            "bridge",
            "host-local",
            "loopback",
            "portmap",
            "kubectl",
        ];
        for arch in ["amd64", "arm64", "arm"] {
            for name in wanted {
                let found: Vec<_> = entries
                    .iter()
                    .filter(|e| e.name == name && e.arch == arch)
                    .collect();
                assert_eq!(found.len(), 1, "{name}/{arch} must appear exactly once");
                let entry = found[0];
                if entry.url.is_some() {
                    assert!(
                        entry.sha256.is_some() || entry.checksum_url.is_some(),
                        "{name}/{arch} has a url but nothing to verify it against"
                    );
                }
            }
        }
        assert!(entries.iter().all(|e| wanted.contains(&e.name.as_str())));
    }

    #[test]
    fn kubernetes_is_pinned_to_one_version() {
        let versions: std::collections::BTreeSet<_> = all()
            .iter()
            .filter(|e| e.name.starts_with("kube"))
            .map(|e| e.version.as_str())
            .collect();
        assert_eq!(versions.into_iter().collect::<Vec<_>>(), ["1.34.2"]);
    }

    #[test]
    fn malformed_lines_are_reported_with_their_number() {
        let err = parse("# c\n\netcd 1 amd64 -\n").unwrap_err();
        assert!(err.contains("line 3"), "{err}");
        let err = parse("etcd 1 amd64 http://x abc - -\n").unwrap_err();
        assert!(err.contains("not 64 hex"), "{err}");
    }

    #[test]
    fn dashes_mean_none() {
        let entries = parse("runc 1.3.4 arm - - - -\n").unwrap();
        assert_eq!(entries[0].url, None);
        assert_eq!(entries[0].member, None);
    }
}
