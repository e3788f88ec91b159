//! The component lock (`embedded-bins/components.lock`), compiled into every k0x binary.
//!
//! The file is included verbatim at build time, so even a binary without a payload can say which
//! components (and which upstream versions) it expects and from which Go module each is built.
//! The format is deliberately trivial: whitespace-separated records that the bash build script
//! and this module both read without any parser library.

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
    /// amd64, arm64 or arm.
    pub arch: String,
    /// The wrapper Go module under `embedded-bins/go/` that pins the sources.
    pub wrapper: String,
    /// The upstream Go module.
    pub module: String,
    /// Pinned upstream version, as the module proxy names it (`v1.34.4`).
    pub version: String,
    /// The main package built.
    pub package: String,
    /// Built with cgo.
    pub cgo: bool,
    /// Go build tags.
    pub tags: Vec<String>,
    /// sha256 of the binary the build produced, once recorded.
    pub sha256: Option<String>,
}

impl LockEntry {
    /// `module@version`: where the component comes from.
    pub fn origin(&self) -> String {
        format!("{}@{}", self.module, self.version)
    }
}

/// Parses lock text; errors name the line.
pub fn parse(text: &str) -> Result<Vec<LockEntry>, String> {
    text.lines()
        .enumerate()
        .filter(|(_, line)| {
            let line = line.trim_start();
            !line.is_empty() && !line.starts_with('#') && !line.starts_with("go ")
        })
        .map(|(index, line)| parse_record(index + 1, line))
        .collect()
}

fn parse_record(number: usize, line: &str) -> Result<LockEntry, String> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    let [
        name,
        arch,
        wrapper,
        module,
        version,
        package,
        cgo,
        tags,
        sha256,
    ] = fields[..]
    else {
        return Err(format!(
            "components.lock line {number}: expected 9 fields (name arch wrapper module version package cgo tags sha256), found {}",
            fields.len()
        ));
    };
    if sha256 != "-" && (sha256.len() != 64 || hex::decode(sha256).is_err()) {
        return Err(format!(
            "components.lock line {number}: sha256 {sha256:?} is not 64 hex digits"
        ));
    }
    let cgo = match cgo {
        "yes" => true,
        "no" => false,
        other => {
            return Err(format!(
                "components.lock line {number}: cgo {other:?} must be yes or no"
            ));
        }
    };
    Ok(LockEntry {
        name: name.to_owned(),
        arch: arch.to_owned(),
        wrapper: wrapper.to_owned(),
        module: module.to_owned(),
        version: version.to_owned(),
        package: package.to_owned(),
        cgo,
        tags: if tags == "-" {
            Vec::new()
        } else {
            tags.split(',').map(str::to_owned).collect()
        },
        sha256: (sha256 != "-").then(|| sha256.to_owned()),
    })
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
            "etcdctl",
            "kube-apiserver",
            "kube-scheduler",
            "kube-controller-manager",
            "kubelet",
            "kube-proxy",
            "kubectl",
            "containerd",
            "containerd-shim-runc-v2",
            "ctr",
            "runc",
            "bridge",
            "host-local",
            "loopback",
            "portmap",
            "crictl",
            "coredns",
            "metrics-server",
            "flannel",
        ];
        for arch in ["amd64", "arm64", "arm"] {
            for name in wanted {
                let found = entries
                    .iter()
                    .filter(|e| e.name == name && e.arch == arch)
                    .count();
                assert_eq!(found, 1, "{name}/{arch} must appear exactly once");
            }
        }
        assert!(entries.iter().all(|e| wanted.contains(&e.name.as_str())));
    }

    #[test]
    fn every_record_names_a_wrapper_module_that_requires_its_version_and_package() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../embedded-bins/go");
        for entry in all() {
            let go_mod = std::fs::read_to_string(root.join(&entry.wrapper).join("go.mod"))
                .unwrap_or_else(|err| panic!("{}: wrapper {}: {err}", entry.name, entry.wrapper));
            let required = format!("{} {}", entry.module, entry.version);
            assert!(
                go_mod.contains(&required),
                "{}: go.mod lacks {required}",
                entry.name
            );
            let own = format!("k0x.io/embedded-bins/{}/", entry.wrapper);
            let built = match entry.package.strip_prefix(&own) {
                Some(dir) => root
                    .join(&entry.wrapper)
                    .join(dir)
                    .join("main.go")
                    .is_file(),
                None => go_mod
                    .lines()
                    .any(|line| line.trim().trim_start_matches("tool ").trim() == entry.package),
            };
            assert!(
                built,
                "{}: {} is neither a tool of its wrapper nor a main package of its own",
                entry.name, entry.package
            );
        }
    }

    #[test]
    fn kubernetes_is_pinned_to_one_version() {
        let versions: std::collections::BTreeSet<_> = all()
            .iter()
            .filter(|e| e.module == "k8s.io/kubernetes")
            .map(|e| e.version.as_str())
            .collect();
        assert_eq!(versions.len(), 1, "{versions:?}");
        assert!(versions.iter().all(|v| v.starts_with("v1.34.")));
    }

    #[test]
    fn malformed_lines_are_reported_with_their_number() {
        let err = parse("# c\n\netcd amd64 etcd\n").unwrap_err();
        assert!(err.contains("line 3"), "{err}");
        let err = parse("etcd amd64 etcd m v1 p no - abc\n").unwrap_err();
        assert!(err.contains("not 64 hex"), "{err}");
        let err = parse("etcd amd64 etcd m v1 p maybe - -\n").unwrap_err();
        assert!(err.contains("yes or no"), "{err}");
    }

    #[test]
    fn dashes_mean_none_and_the_go_line_is_not_a_record() {
        let entries = parse("go 1.26.8\nrunc arm runc m v1.3.7 p yes seccomp,netgo -\n").unwrap();
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].sha256, None);
        assert_eq!(entries[0].tags, ["seccomp", "netgo"]);
        assert!(entries[0].cgo);
        assert_eq!(entries[0].origin(), "m@v1.3.7");
    }
}
