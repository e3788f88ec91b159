//! What `k0x version --components` shows: for each component of the compiled-in lock, the version
//! it expects, what is actually present (extracted in `bin/` or waiting in the payload), its digest
//! and where it came from; missing components carry the ways to supply them.

use k0x_config::DataDir;
use serde::Serialize;

use crate::lock::{self, HOST_ARCH};
use crate::manifest::{BinManifest, PayloadManifest};

/// How a missing component can be supplied.
pub const MISSING_HINT: &str = "build the payload with `scripts/build.sh` (components from source), or stage it with `embedded-bins/stage --from-system DIR`, or set K0X_PAYLOAD, or run with --disable-components";

/// Where a component stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ComponentStatus {
    /// Verified in `bin/` and identical to the payload's copy (or there is no payload to compare).
    Extracted,
    /// In the payload but not (or not this version) in `bin/` yet; the next start extracts it.
    InPayload,
    /// Neither in the payload nor in `bin/`.
    Missing,
}

/// One line of the report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ComponentInfo {
    pub name: String,
    /// The upstream version components.lock pins (`None` for a payload file the lock does not name).
    pub expected_version: Option<String>,
    /// What the binary reported when it was staged.
    pub present_version: Option<String>,
    pub sha256: Option<String>,
    /// `module:<go module>@<version>` (built from source), `supplied:<dir>/<file>` or
    /// `from-system:<dir>/<file>`.
    pub source: Option<String>,
    pub status: ComponentStatus,
    /// How to supply a missing component.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

/// The report for this binary's architecture, from `bin/.manifest` and (if any) the payload's
/// manifest. Lock components come first, in lock order; extra payload files follow.
pub fn components_report(data: &DataDir, payload: Option<&PayloadManifest>) -> Vec<ComponentInfo> {
    let extracted = BinManifest::load(&data.bin_manifest());
    let mut names: Vec<(String, Option<&lock::LockEntry>)> = lock::expected()
        .into_iter()
        .map(|entry| (entry.name.clone(), Some(entry)))
        .collect();
    for file in payload.map(|p| p.files.as_slice()).unwrap_or_default() {
        if !names.iter().any(|(name, _)| *name == file.name) {
            names.push((file.name.clone(), None));
        }
    }
    names
        .into_iter()
        .map(|(name, lock_entry)| {
            let on_disk = extracted
                .files
                .get(&name)
                .filter(|_| data.bin().join(&name).is_file());
            let staged = payload.and_then(|p| p.file(&name));
            let (status, version, sha256, source) = match (on_disk, staged) {
                (Some(r), Some(s)) if r.sha256 != s.sha256 => (
                    ComponentStatus::InPayload,
                    Some(&s.version),
                    Some(&s.sha256),
                    Some(&s.source),
                ),
                (Some(r), _) => (
                    ComponentStatus::Extracted,
                    Some(&r.version),
                    Some(&r.sha256),
                    Some(&r.source),
                ),
                (None, Some(s)) => (
                    ComponentStatus::InPayload,
                    Some(&s.version),
                    Some(&s.sha256),
                    Some(&s.source),
                ),
                (None, None) => (ComponentStatus::Missing, None, None, None),
            };
            let hint = (status == ComponentStatus::Missing).then(|| missing_hint(lock_entry));
            ComponentInfo {
                expected_version: lock_entry.map(|e| e.version.clone()),
                present_version: version.cloned(),
                sha256: sha256.cloned(),
                source: source.cloned(),
                status,
                hint,
                name,
            }
        })
        .collect()
}

fn missing_hint(entry: Option<&lock::LockEntry>) -> String {
    match entry {
        Some(e) if e.sha256.is_none() => {
            format!(
                "{} has not been built for {HOST_ARCH} yet; {MISSING_HINT}",
                e.origin()
            )
        }
        _ => MISSING_HINT.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::{BinRecord, PayloadFile};

    fn staged(name: &str, sha: char) -> PayloadFile {
        PayloadFile {
            name: name.into(),
            version: format!("{name}-v"),
            lock_version: String::new(),
            sha256: sha.to_string().repeat(64),
            size: 1,
            source: "from-system:bin/x".into(),
        }
    }

    #[test]
    fn statuses_follow_disk_and_payload() {
        let dir = tempfile::tempdir().unwrap();
        let data = DataDir::new(dir.path());
        std::fs::create_dir_all(data.bin()).unwrap();
        std::fs::write(data.bin().join("etcd"), b"x").unwrap();
        std::fs::write(data.bin().join("runc"), b"x").unwrap();
        let mut bin = BinManifest::default();
        for (name, sha) in [("etcd", 'a'), ("runc", 'b')] {
            bin.files.insert(
                name.into(),
                BinRecord {
                    sha256: sha.to_string().repeat(64),
                    size: 1,
                    mtime_ns: 0,
                    version: "old".into(),
                    source: "s".into(),
                },
            );
        }
        bin.save(&data.bin_manifest()).unwrap();
        let payload = PayloadManifest {
            format: 1,
            arch: HOST_ARCH.into(),
            mode: "from-system".into(),
            created: String::new(),
            files: vec![
                staged("etcd", 'a'),
                staged("runc", 'c'),
                staged("extra-tool", 'd'),
            ],
        };
        let report = components_report(&data, Some(&payload));
        let get = |n: &str| report.iter().find(|c| c.name == n).unwrap();
        assert_eq!(get("etcd").status, ComponentStatus::Extracted);
        let pinned = lock::expected()
            .into_iter()
            .find(|e| e.name == "etcd")
            .unwrap();
        assert_eq!(get("etcd").expected_version.as_ref(), Some(&pinned.version));
        assert_eq!(get("runc").status, ComponentStatus::InPayload);
        assert_eq!(get("runc").present_version.as_deref(), Some("runc-v"));
        assert_eq!(get("kube-apiserver").status, ComponentStatus::Missing);
        assert!(
            get("kube-apiserver")
                .hint
                .as_deref()
                .unwrap()
                .contains("--from-system")
        );
        assert_eq!(get("extra-tool").expected_version, None);
        assert_eq!(report.first().unwrap().name, "etcd");
    }
}
