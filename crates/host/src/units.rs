//! Service templates for systemd and OpenRC, compiled into the binary, and their rendering.
//!
//! Rendering is plain `{{NAME}}` substitution: the templates stay readable files in `systemd/`
//! that reviewers can check against the systemd documentation, and an unknown or missing
//! placeholder is an error rather than a unit with `{{` in it.

use std::path::Path;

use serde::Serialize;

const CONTROLLER_SYSTEMD: &str = include_str!("../../../systemd/k0xcontroller.service");
const WORKER_SYSTEMD: &str = include_str!("../../../systemd/k0xworker.service");
const OPENRC: &str = include_str!("../../../systemd/k0xcontroller.openrc");

/// What a unit runs: `k0x server` or `k0x worker`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum UnitRole {
    Controller,
    Worker,
}

impl UnitRole {
    /// Every role, in the order `k0x start` acts on them.
    pub const ALL: [UnitRole; 2] = [UnitRole::Controller, UnitRole::Worker];

    /// The service name (`k0xcontroller`, `k0xworker`), as used with systemctl and journalctl.
    pub fn service_name(self) -> &'static str {
        match self {
            UnitRole::Controller => "k0xcontroller",
            UnitRole::Worker => "k0xworker",
        }
    }

    fn description(self) -> &'static str {
        match self {
            UnitRole::Controller => "k0x controller: single-binary Kubernetes control plane",
            UnitRole::Worker => "k0x worker: single-binary Kubernetes node",
        }
    }
}

/// The service manager a unit is written for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum InitSystem {
    Systemd,
    OpenRc,
}

impl InitSystem {
    /// Where the unit of `role` lives, relative to the filesystem root.
    pub fn unit_path(self, role: UnitRole) -> String {
        match self {
            InitSystem::Systemd => format!("etc/systemd/system/{}.service", role.service_name()),
            InitSystem::OpenRc => format!("etc/init.d/{}", role.service_name()),
        }
    }

    /// The link that starts the unit at boot (what `systemctl enable` / `rc-update add` create).
    pub fn boot_link(self, role: UnitRole) -> String {
        match self {
            InitSystem::Systemd => format!(
                "etc/systemd/system/multi-user.target.wants/{}.service",
                role.service_name()
            ),
            InitSystem::OpenRc => format!("etc/runlevels/default/{}", role.service_name()),
        }
    }

    /// File mode of the unit: OpenRC scripts are executed, systemd units are read.
    pub fn unit_mode(self) -> u32 {
        match self {
            InitSystem::Systemd => 0o644,
            InitSystem::OpenRc => 0o755,
        }
    }
}

/// A template could not be rendered.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RenderError {
    #[error("template placeholder {{{{{0}}}}} has no value")]
    MissingValue(String),
    #[error(
        "argument {0:?} cannot be written into an OpenRC script (quotes, $ and \\ are not allowed)"
    )]
    UnsafeOpenRcArgument(String),
}

/// Replaces every `{{KEY}}` in `template` with its value; a placeholder without a value is an error.
pub fn render(template: &str, values: &[(&str, &str)]) -> Result<String, RenderError> {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else {
            out.push_str(&rest[start..]);
            return Ok(out);
        };
        let key = &after[..end];
        let value = values
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| *v)
            .ok_or_else(|| RenderError::MissingValue(key.to_owned()))?;
        out.push_str(value);
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Renders the unit of `role` for `init`, running `binary` with `args`.
pub fn render_unit(
    init: InitSystem,
    role: UnitRole,
    binary: &Path,
    args: &[String],
) -> Result<String, RenderError> {
    let bin = binary.to_string_lossy();
    match init {
        InitSystem::Systemd => {
            let template = match role {
                UnitRole::Controller => CONTROLLER_SYSTEMD,
                UnitRole::Worker => WORKER_SYSTEMD,
            };
            let exec_start = systemd_command_line(&bin, args);
            render(
                template,
                &[("BIN", &systemd_escape(&bin)), ("EXEC_START", &exec_start)],
            )
        }
        InitSystem::OpenRc => {
            let args = openrc_args(args)?;
            render(
                OPENRC,
                &[
                    ("NAME", role.service_name()),
                    ("DESCRIPTION", role.description()),
                    ("BIN", &openrc_args(&[bin.into_owned()])?),
                    ("ARGS", &args),
                ],
            )
        }
    }
}

/// An `ExecStart=` command line: each word quoted when needed, `%` and `$` escaped so systemd
/// neither expands specifiers nor environment variables in them.
fn systemd_command_line(binary: &str, args: &[String]) -> String {
    std::iter::once(binary)
        .chain(args.iter().map(String::as_str))
        .map(systemd_word)
        .collect::<Vec<_>>()
        .join(" ")
}

fn systemd_escape(word: &str) -> String {
    word.replace('%', "%%").replace('$', "$$")
}

fn systemd_word(word: &str) -> String {
    let escaped = systemd_escape(word);
    let plain = !word.is_empty()
        && !word
            .chars()
            .any(|c| c.is_whitespace() || matches!(c, '"' | '\'' | '\\' | ';'));
    if plain {
        escaped
    } else {
        format!("\"{}\"", escaped.replace('\\', "\\\\").replace('"', "\\\""))
    }
}

/// OpenRC evaluates `command_args` with the shell: words go in single quotes, and characters
/// that would need escaping inside them are refused.
fn openrc_args(args: &[String]) -> Result<String, RenderError> {
    args.iter()
        .map(|arg| {
            if arg
                .chars()
                .any(|c| matches!(c, '\'' | '"' | '$' | '\\' | '`'))
            {
                Err(RenderError::UnsafeOpenRcArgument(arg.clone()))
            } else if arg
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_./=,:".contains(c))
            {
                Ok(arg.clone())
            } else {
                Ok(format!("'{arg}'"))
            }
        })
        .collect::<Result<Vec<_>, _>>()
        .map(|words| words.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn render_substitutes_and_rejects_unknown_placeholders() {
        assert_eq!(render("a {{X}} b {{X}}", &[("X", "1")]).unwrap(), "a 1 b 1");
        assert_eq!(
            render("{{Y}}", &[("X", "1")]),
            Err(RenderError::MissingValue("Y".into()))
        );
    }

    #[test]
    fn controller_unit_carries_the_install_flags() {
        let unit = render_unit(
            InitSystem::Systemd,
            UnitRole::Controller,
            Path::new("/usr/local/bin/k0x"),
            &args(&["server", "--enable-worker", "--data-dir", "/srv/k 0x"]),
        )
        .unwrap();
        assert!(unit.contains(
            "ExecStart=/usr/local/bin/k0x server --enable-worker --data-dir \"/srv/k 0x\"\n"
        ));
        for line in [
            "Type=notify",
            "NotifyAccess=main",
            "Restart=always",
            "Delegate=yes",
            "KillMode=process",
            "TasksMax=infinity",
            "ConditionFileIsExecutable=/usr/local/bin/k0x",
        ] {
            assert!(unit.lines().any(|l| l == line), "missing {line}");
        }
        assert!(!unit.contains("{{"));
    }

    #[test]
    fn systemd_words_escape_specifiers_and_variables() {
        assert_eq!(systemd_word("100%"), "100%%");
        assert_eq!(systemd_word("$HOME"), "$$HOME");
        assert_eq!(systemd_word(""), "\"\"");
        assert_eq!(systemd_word("a\"b"), "\"a\\\"b\"");
    }

    #[test]
    fn openrc_script_quotes_and_refuses_shell_syntax() {
        let script = render_unit(
            InitSystem::OpenRc,
            UnitRole::Worker,
            Path::new("/usr/bin/k0x"),
            &args(&["worker", "--token-file", "/etc/k0x/worker token"]),
        )
        .unwrap();
        assert!(script.starts_with("#!/sbin/openrc-run\n"));
        assert!(script.contains("command_args=\"worker --token-file '/etc/k0x/worker token'\""));
        assert!(script.contains("name=\"k0xworker\""));
        assert_eq!(
            openrc_args(&args(&["$(reboot)"])),
            Err(RenderError::UnsafeOpenRcArgument("$(reboot)".into()))
        );
    }
}
