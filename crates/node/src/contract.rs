//! The flag contract of the pinned Kubernetes version: which flags each kube-* binary accepts and
//! which were removed.
//!
//! The upstream binaries cannot run on every machine that builds k0x, so a misspelled or removed
//! flag would only show up on a real node, as a crash loop. The contract files under
//! `contracts/<minor>/` are written once from the upstream command-line reference of the pinned
//! version (cited in each file) and compiled in; tests check every generated flag against them,
//! and `extraArgs` naming a removed flag is refused with a clear message.

use std::collections::{BTreeMap, BTreeSet};

/// The Kubernetes version whose flags the contract describes (same pin as the embedded binaries).
pub const KUBERNETES_VERSION: &str = "v1.34.2";

const CONTRACTS: &[(&str, &str)] = &[
    (
        "kube-apiserver",
        include_str!("../contracts/v1.34/kube-apiserver.flags"),
    ),
    (
        "kube-controller-manager",
        include_str!("../contracts/v1.34/kube-controller-manager.flags"),
    ),
    (
        "kube-scheduler",
        include_str!("../contracts/v1.34/kube-scheduler.flags"),
    ),
    ("kubelet", include_str!("../contracts/v1.34/kubelet.flags")),
];

/// Accepted and removed flags of one component.
#[derive(Debug, Clone)]
pub struct FlagContract {
    pub component: &'static str,
    accepted: BTreeSet<&'static str>,
    removed: BTreeMap<&'static str, &'static str>,
}

impl FlagContract {
    /// The contract of `component` (`kube-apiserver`, `kube-controller-manager`,
    /// `kube-scheduler`, `kubelet`), or `None` for components without one (etcd, containerd).
    pub fn for_component(component: &str) -> Option<Self> {
        let (component, text) = CONTRACTS.iter().find(|(name, _)| *name == component)?;
        Some(Self::parse(component, text))
    }

    /// Parses a contract file: one accepted flag per line, `!flag note` for a removed flag,
    /// `#` comments.
    fn parse(component: &'static str, text: &'static str) -> Self {
        let mut accepted = BTreeSet::new();
        let mut removed = BTreeMap::new();
        for line in text.lines().map(str::trim) {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            match line.strip_prefix('!') {
                Some(rest) => {
                    let (flag, note) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
                    removed.insert(flag, note.trim());
                }
                None => {
                    accepted.insert(line);
                }
            }
        }
        Self {
            component,
            accepted,
            removed,
        }
    }

    /// True when the pinned version accepts `flag` (name without `--`).
    pub fn accepts(&self, flag: &str) -> bool {
        self.accepted.contains(flag)
    }

    /// Why `flag` is gone, when the pinned version removed it.
    pub fn removed_note(&self, flag: &str) -> Option<&'static str> {
        self.removed.get(flag).copied()
    }

    /// Every problem with `args` (`--name=value` entries): flags not accepted by the pinned
    /// version, removed flags, malformed entries. Empty when all are fine.
    pub fn violations(&self, args: &[String]) -> Vec<String> {
        args.iter()
            .filter_map(|arg| {
                let Some(flag) = arg.strip_prefix("--") else {
                    return Some(format!("{arg:?} is not a --flag=value argument"));
                };
                let name = flag.split_once('=').map_or(flag, |(name, _)| name);
                if let Some(note) = self.removed_note(name) {
                    return Some(format!(
                        "--{name} was removed from {} ({note})",
                        self.component
                    ));
                }
                (!self.accepts(name)).then(|| {
                    format!(
                        "--{name} is not a {} {KUBERNETES_VERSION} flag",
                        self.component
                    )
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_contract_parses_and_is_consistent() {
        for (component, _) in CONTRACTS {
            let contract = FlagContract::for_component(component).unwrap();
            assert!(
                contract.accepted.len() >= 10,
                "{component}: contract too small"
            );
            for flag in contract.removed.keys() {
                assert!(
                    !contract.accepts(flag),
                    "{component}: {flag} both accepted and removed"
                );
            }
        }
    }

    #[test]
    fn violations_name_the_flag() {
        let contract = FlagContract::for_component("kube-scheduler").unwrap();
        let args = vec![
            "--leader-elect=true".to_owned(),
            "--leader-elekt=true".to_owned(),
        ];
        assert_eq!(contract.violations(&args).len(), 1);
        assert!(contract.violations(&args)[0].contains("--leader-elekt"));
    }
}
