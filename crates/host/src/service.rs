//! `k0x start` / `k0x stop`: hand the installed unit to the host's service manager.
//!
//! k0x never daemonizes itself; the service manager owns restarts and logs. Which unit to act on
//! is found from what `k0x install` wrote, so the user never has to remember the unit name.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::units::{InitSystem, UnitRole};

/// Start or stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Start,
    Stop,
}

impl Action {
    fn verb(self) -> &'static str {
        match self {
            Action::Start => "start",
            Action::Stop => "stop",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error(
        "no k0x service is installed (looked for {}); run `k0x install controller` or `k0x install worker` first",
        .0.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
    )]
    NotInstalled(Vec<PathBuf>),
    #[error(
        "{unit} is installed but systemd is not running as init on this host ({} is missing); run `k0x server` or `k0x worker` in the foreground instead",
        marker.display()
    )]
    SystemdNotRunning { unit: String, marker: PathBuf },
    #[error("`{program}` was not found on PATH; {hint}")]
    ToolMissing { program: &'static str, hint: String },
    #[error("`{command}` failed ({status}); see `{logs}` for why")]
    Failed {
        command: String,
        status: std::process::ExitStatus,
        logs: String,
    },
    #[error("cannot run `{command}`: {source}")]
    Spawn {
        command: String,
        source: std::io::Error,
    },
}

/// Makes a running systemd read the units again (`systemctl daemon-reload`); without systemd as
/// init there is nothing to tell.
pub fn reload_systemd() -> Result<(), ServiceError> {
    if !k0x_config::systemd::booted() {
        return Ok(());
    }
    run_tool(
        "systemctl",
        &["daemon-reload"],
        "journalctl -b -u init.scope".into(),
    )
}

/// An installed unit found below `root`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstalledUnit {
    pub init: InitSystem,
    pub role: UnitRole,
    pub path: PathBuf,
}

/// Every k0x unit installed below `root`, controller first.
pub fn installed_units(root: &Path) -> Vec<InstalledUnit> {
    UnitRole::ALL
        .into_iter()
        .flat_map(|role| {
            [InitSystem::Systemd, InitSystem::OpenRc]
                .into_iter()
                .map(move |init| InstalledUnit {
                    init,
                    role,
                    path: root.join(init.unit_path(role)),
                })
        })
        .filter(|unit| unit.path.is_file())
        .collect()
}

/// Starts or stops every installed k0x unit on this host through systemctl or rc-service.
pub fn run(action: Action) -> Result<Vec<InstalledUnit>, ServiceError> {
    let units = installed_units(Path::new("/"));
    if units.is_empty() {
        return Err(ServiceError::NotInstalled(
            UnitRole::ALL
                .into_iter()
                .flat_map(|role| {
                    [InitSystem::Systemd, InitSystem::OpenRc]
                        .map(|init| Path::new("/").join(init.unit_path(role)))
                })
                .collect(),
        ));
    }
    for unit in &units {
        let name = unit.role.service_name();
        let (program, args, logs) = match unit.init {
            InitSystem::Systemd => {
                let marker = Path::new(k0x_config::systemd::BOOTED_MARKER);
                if !k0x_config::systemd::booted() {
                    return Err(ServiceError::SystemdNotRunning {
                        unit: format!("{name}.service"),
                        marker: marker.into(),
                    });
                }
                (
                    "systemctl",
                    [action.verb(), name],
                    format!("journalctl -u {name}"),
                )
            }
            InitSystem::OpenRc => (
                "rc-service",
                [name, action.verb()],
                format!("/var/log/{name}.log"),
            ),
        };
        run_tool(program, &args, logs)?;
    }
    Ok(units)
}

fn run_tool(program: &'static str, args: &[&str], logs: String) -> Result<(), ServiceError> {
    let command = format!("{program} {}", args.join(" "));
    let status = Command::new(program)
        .args(args)
        .status()
        .map_err(|source| match source.kind() {
            std::io::ErrorKind::NotFound => ServiceError::ToolMissing {
                program,
                hint: "install the service manager or run k0x in the foreground".into(),
            },
            _ => ServiceError::Spawn {
                command: command.clone(),
                source,
            },
        })?;
    if status.success() {
        Ok(())
    } else {
        Err(ServiceError::Failed {
            command,
            status,
            logs,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_what_install_wrote() {
        let root = tempfile::tempdir().unwrap();
        assert!(installed_units(root.path()).is_empty());
        let unit = root.path().join("etc/systemd/system/k0xworker.service");
        std::fs::create_dir_all(unit.parent().unwrap()).unwrap();
        std::fs::write(&unit, "x").unwrap();
        assert_eq!(
            installed_units(root.path()),
            [InstalledUnit {
                init: InitSystem::Systemd,
                role: UnitRole::Worker,
                path: unit
            }]
        );
    }
}
