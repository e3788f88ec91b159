//! Command-line flags of a component: k0x's defaults first, the user's `extraArgs` merged last.
//!
//! A flag set keeps one value per name in insertion order, so argv is stable (diffable, testable)
//! and an `extraArgs` entry replaces the default of the same name instead of appearing twice
//! (most kube-* flags take the last occurrence, some reject duplicates: one value avoids both).

use k0x_config::schema::ExtraArgs;

use crate::NodeError;
use crate::contract::FlagContract;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Flags {
    entries: Vec<(String, String)>,
}

impl Flags {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Sets `name` (without `--`) to `value`, replacing an earlier value.
    #[expect(
        clippy::needless_pass_by_value,
        reason = "call sites pass bools, ports, addresses and temporaries; by value reads best"
    )]
    pub(crate) fn set(&mut self, name: &str, value: impl ToString) -> &mut Self {
        let value = value.to_string();
        match self.entries.iter_mut().find(|(n, _)| n == name) {
            Some(entry) => entry.1 = value,
            None => self.entries.push((name.to_owned(), value)),
        }
        self
    }

    /// Sets a flag whose value is a path.
    pub(crate) fn path(&mut self, name: &str, value: &std::path::Path) -> &mut Self {
        self.set(name, value.display())
    }

    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.entries
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Merges the user's extra args last (they override k0x's defaults). Flags the pinned
    /// upstream version removed are refused with the config field that carries them.
    pub(crate) fn merge_extra(
        &mut self,
        extra: &ExtraArgs,
        field: &'static str,
        contract: Option<&FlagContract>,
    ) -> Result<(), NodeError> {
        for (name, value) in extra {
            let name = name.trim_start_matches('-');
            if let Some(note) = contract.and_then(|c| c.removed_note(name)) {
                return Err(NodeError::RemovedFlag {
                    field,
                    flag: name.to_owned(),
                    component: contract.map_or("", |c| c.component),
                    note: note.to_owned(),
                });
            }
            self.set(name, value);
        }
        Ok(())
    }

    /// The flags as argv entries (`--name=value`).
    pub(crate) fn to_args(&self) -> Vec<String> {
        self.entries
            .iter()
            .map(|(name, value)| format!("--{name}={value}"))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extra_args_override_in_place() {
        let mut flags = Flags::new();
        flags.set("a", 1).set("b", 2);
        let extra = ExtraArgs::from([("--b".into(), "3".into()), ("c".into(), "4".into())]);
        flags.merge_extra(&extra, "spec.x.extraArgs", None).unwrap();
        assert_eq!(flags.to_args(), ["--a=1", "--b=3", "--c=4"]);
    }

    #[test]
    fn removed_flags_are_refused() {
        let contract = FlagContract::for_component("kube-apiserver").unwrap();
        let extra = ExtraArgs::from([("insecure-port".into(), "0".into())]);
        let err = Flags::new()
            .merge_extra(&extra, "spec.api.extraArgs", Some(&contract))
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("spec.api.extraArgs.insecure-port:"),
            "{err}"
        );
    }
}
