//! `k0x install`: renders the service unit (and stores a worker's join token) below a root.
//!
//! Nothing is started. Every file is checked before the first one is written, so a refusal (a
//! different unit already installed, no `--force`) leaves the host exactly as it was; the writes
//! themselves are atomic.

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use k0x_config::layout;
use serde::Serialize;

use crate::units::{InitSystem, RenderError, UnitRole, render_unit};
use k0x_config::fsutil::write_atomic;

/// Where `k0x install worker` stores the join token on the host (mode 0600).
pub const WORKER_TOKEN_PATH: &str = "/etc/k0x/worker-token";
/// Where `k0x install controller --token-file` stores the token of a joining controller.
pub const CONTROLLER_TOKEN_PATH: &str = "/etc/k0x/controller-token";

/// The host path of the join token file of `role`.
pub fn token_path(role: UnitRole) -> &'static str {
    match role {
        UnitRole::Controller => CONTROLLER_TOKEN_PATH,
        UnitRole::Worker => WORKER_TOKEN_PATH,
    }
}

/// Flags `k0x install` passes on to the `k0x server` / `k0x worker` of the unit; only non-default
/// ones are written so that a unit stays short and follows future changes of the defaults.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Passthrough {
    pub data_dir: Option<PathBuf>,
    pub run_dir: Option<PathBuf>,
    pub config: Option<PathBuf>,
    /// `--no-host-fixes`: the unit's node only checks the host.
    pub no_host_fixes: bool,
    /// `--profile NAME`: the worker profile the unit's kubelet applies.
    pub profile: Option<String>,
}

impl Passthrough {
    /// Keeps each path only when it differs from the built-in default.
    pub fn non_default(data_dir: &Path, run_dir: &Path, config: &Path) -> Self {
        let keep = |path: &Path, default: &str| (path != Path::new(default)).then(|| path.into());
        Self {
            data_dir: keep(data_dir, layout::DEFAULT_DATA_DIR),
            run_dir: keep(run_dir, layout::DEFAULT_RUN_DIR),
            config: keep(config, layout::DEFAULT_CONFIG_FILE),
            no_host_fixes: false,
            profile: None,
        }
    }

    fn push_to(&self, args: &mut Vec<String>) {
        if self.no_host_fixes {
            args.push("--no-host-fixes".into());
        }
        if let Some(profile) = &self.profile {
            args.push("--profile".into());
            args.push(profile.clone());
        }
        for (flag, value) in [
            ("--data-dir", &self.data_dir),
            ("--run-dir", &self.run_dir),
            ("--config", &self.config),
        ] {
            if let Some(value) = value {
                args.push(flag.into());
                args.push(value.to_string_lossy().into_owned());
            }
        }
    }
}

/// Whether a controller unit also runs the worker components, and with which taint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ControllerWorker {
    No,
    /// `--enable-worker`: the node takes ordinary pods.
    Untainted,
    /// `--enable-worker --taint-control-plane`.
    Tainted,
}

/// The arguments of `k0x server` as the controller unit runs it; `joins` adds the token file of
/// a controller that joins an existing cluster.
pub fn controller_args(
    worker: ControllerWorker,
    disable_components: &[String],
    joins: bool,
    passthrough: &Passthrough,
) -> Vec<String> {
    let mut args = vec!["server".to_owned()];
    if worker != ControllerWorker::No {
        args.push("--enable-worker".into());
    }
    if worker == ControllerWorker::Tainted {
        args.push("--taint-control-plane".into());
    }
    if joins {
        args.push("--token-file".into());
        args.push(CONTROLLER_TOKEN_PATH.into());
    }
    if !disable_components.is_empty() {
        args.push("--disable-components".into());
        args.push(disable_components.join(","));
    }
    passthrough.push_to(&mut args);
    args
}

/// The arguments of `k0x worker` as the worker unit runs it: the token comes from a file, never
/// from argv where every user could read it.
pub fn worker_args(passthrough: &Passthrough) -> Vec<String> {
    let mut args = vec![
        "worker".to_owned(),
        "--token-file".into(),
        WORKER_TOKEN_PATH.into(),
    ];
    passthrough.push_to(&mut args);
    args
}

/// What to install.
#[derive(Debug, Clone)]
pub struct InstallRequest {
    /// Filesystem root the files go below (`/` on a real host).
    pub root: PathBuf,
    pub init: InitSystem,
    pub role: UnitRole,
    /// The k0x executable the unit runs.
    pub binary: PathBuf,
    /// Arguments after the binary, from [`controller_args`] or [`worker_args`].
    pub args: Vec<String>,
    /// The join token to store (required for [`UnitRole::Worker`], optional for a controller).
    pub token: Option<String>,
    /// Replace files that exist with different content.
    pub force: bool,
}

/// What happened to one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Change {
    Created,
    Replaced,
    Unchanged,
}

/// One installed file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InstalledFile {
    pub path: PathBuf,
    pub change: Change,
}

#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    #[error(
        "{} already exists with different content; rerun with --force to replace it (or `k0x reset` first)",
        .0.display()
    )]
    Exists(PathBuf),
    #[error("a worker needs a join token: pass --token-file FILE")]
    TokenMissing,
    #[error("cannot write {}: {source}; check that the directory is writable (run as root)", path.display())]
    Write { path: PathBuf, source: io::Error },
    #[error("cannot render the {role:?} unit: {source}")]
    Render { role: UnitRole, source: RenderError },
}

/// Writes the unit (and token) below `request.root`. Checks every file first, writes after.
pub fn install(request: &InstallRequest) -> Result<Vec<InstalledFile>, InstallError> {
    let unit = render_unit(request.init, request.role, &request.binary, &request.args).map_err(
        |source| InstallError::Render {
            role: request.role,
            source,
        },
    )?;
    let mut files = vec![(
        request.root.join(request.init.unit_path(request.role)),
        unit.into_bytes(),
        request.init.unit_mode(),
    )];
    if request.role == UnitRole::Worker && request.token.is_none() {
        return Err(InstallError::TokenMissing);
    }
    if let Some(token) = &request.token {
        files.push((
            request
                .root
                .join(token_path(request.role).trim_start_matches('/')),
            format!("{token}\n").into_bytes(),
            0o600,
        ));
    }
    let changes = files
        .iter()
        .map(|(path, contents, _)| planned_change(path, contents, request.force))
        .collect::<Result<Vec<_>, _>>()?;
    let link = request.root.join(request.init.boot_link(request.role));
    let target = Path::new("/").join(request.init.unit_path(request.role));
    let link_change = planned_link(&link, &target, request.force)?;
    let mut installed = files
        .into_iter()
        .zip(changes)
        .map(|((path, contents, mode), change)| {
            let result = if change == Change::Unchanged {
                fs::set_permissions(&path, fs::Permissions::from_mode(mode))
            } else {
                write_atomic(&path, &contents, mode)
            };
            result
                .map(|()| InstalledFile {
                    path: path.clone(),
                    change,
                })
                .map_err(|source| InstallError::Write { path, source })
        })
        .collect::<Result<Vec<_>, _>>()?;
    if link_change != Change::Unchanged {
        write_link(&link, &target).map_err(|source| InstallError::Write {
            path: link.clone(),
            source,
        })?;
    }
    installed.push(InstalledFile {
        path: link,
        change: link_change,
    });
    Ok(installed)
}

/// The boot link points at the unit by its absolute path on the host (as `systemctl enable`
/// writes it), which is right also when installing below another root.
fn planned_link(link: &Path, target: &Path, force: bool) -> Result<Change, InstallError> {
    match fs::read_link(link) {
        Ok(existing) if existing == target => Ok(Change::Unchanged),
        Ok(_) if force => Ok(Change::Replaced),
        Ok(_) => Err(InstallError::Exists(link.into())),
        Err(_) if link.symlink_metadata().is_ok() && !force => {
            Err(InstallError::Exists(link.into()))
        }
        Err(_) if link.symlink_metadata().is_ok() => Ok(Change::Replaced),
        Err(_) => Ok(Change::Created),
    }
}

fn write_link(link: &Path, target: &Path) -> io::Result<()> {
    if let Some(dir) = link.parent() {
        fs::create_dir_all(dir)?;
    }
    let tmp = link.with_extension("k0x-tmp");
    let _ = fs::remove_file(&tmp);
    std::os::unix::fs::symlink(target, &tmp)?;
    fs::rename(&tmp, link)
}

fn planned_change(path: &Path, contents: &[u8], force: bool) -> Result<Change, InstallError> {
    match fs::read(path) {
        Ok(existing) if existing == contents => Ok(Change::Unchanged),
        Ok(_) if force => Ok(Change::Replaced),
        Ok(_) => Err(InstallError::Exists(path.into())),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(Change::Created),
        Err(source) => Err(InstallError::Write {
            path: path.into(),
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    fn worker_request(root: &Path, token: &str) -> InstallRequest {
        InstallRequest {
            root: root.into(),
            init: InitSystem::Systemd,
            role: UnitRole::Worker,
            binary: "/usr/local/bin/k0x".into(),
            args: worker_args(&Passthrough::default()),
            token: Some(token.into()),
            force: false,
        }
    }

    #[test]
    fn passthrough_keeps_only_non_default_paths() {
        let pass = Passthrough::non_default(
            Path::new("/srv/k0x"),
            Path::new(layout::DEFAULT_RUN_DIR),
            Path::new(layout::DEFAULT_CONFIG_FILE),
        );
        assert_eq!(
            controller_args(
                ControllerWorker::Untainted,
                &["etcd".into(), "kube-scheduler".into()],
                false,
                &pass
            ),
            [
                "server",
                "--enable-worker",
                "--disable-components",
                "etcd,kube-scheduler",
                "--data-dir",
                "/srv/k0x"
            ]
        );
    }

    #[test]
    fn a_tainted_worker_carries_both_flags() {
        assert_eq!(
            controller_args(
                ControllerWorker::Tainted,
                &[],
                false,
                &Passthrough::default()
            ),
            ["server", "--enable-worker", "--taint-control-plane"]
        );
    }

    #[test]
    fn no_host_fixes_is_carried_into_both_units() {
        let pass = Passthrough {
            no_host_fixes: true,
            ..Passthrough::default()
        };
        assert_eq!(
            controller_args(ControllerWorker::No, &[], false, &pass),
            ["server", "--no-host-fixes"]
        );
        assert_eq!(
            worker_args(&pass),
            [
                "worker",
                "--token-file",
                WORKER_TOKEN_PATH,
                "--no-host-fixes"
            ]
        );
    }

    #[test]
    fn worker_install_writes_unit_0644_and_token_0600() {
        let root = tempfile::tempdir().unwrap();
        let files = install(&worker_request(root.path(), "k0x1.abc")).unwrap();
        let unit = root.path().join("etc/systemd/system/k0xworker.service");
        let token = root.path().join("etc/k0x/worker-token");
        let link = root
            .path()
            .join("etc/systemd/system/multi-user.target.wants/k0xworker.service");
        assert_eq!(
            files
                .iter()
                .map(|f| (&f.path, f.change))
                .collect::<Vec<_>>(),
            [
                (&unit, Change::Created),
                (&token, Change::Created),
                (&link, Change::Created)
            ]
        );
        assert_eq!(
            fs::read_link(&link).unwrap(),
            Path::new("/etc/systemd/system/k0xworker.service")
        );
        assert_eq!(mode(&unit), 0o644);
        assert_eq!(mode(&token), 0o600);
        assert_eq!(fs::read_to_string(&token).unwrap(), "k0x1.abc\n");
        let text = fs::read_to_string(&unit).unwrap();
        assert!(
            text.contains(
                "ExecStart=/usr/local/bin/k0x worker --token-file /etc/k0x/worker-token\n"
            )
        );
    }

    #[test]
    fn a_different_existing_file_is_refused_without_force_and_nothing_is_written() {
        let root = tempfile::tempdir().unwrap();
        install(&worker_request(root.path(), "k0x1.old")).unwrap();
        let again = install(&worker_request(root.path(), "k0x1.old")).unwrap();
        assert!(again.iter().all(|f| f.change == Change::Unchanged));

        let token = root.path().join("etc/k0x/worker-token");
        let err = install(&worker_request(root.path(), "k0x1.new")).unwrap_err();
        assert!(
            matches!(&err, InstallError::Exists(p) if *p == token),
            "{err}"
        );
        assert_eq!(fs::read_to_string(&token).unwrap(), "k0x1.old\n");

        let mut forced = worker_request(root.path(), "k0x1.new");
        forced.force = true;
        let files = install(&forced).unwrap();
        assert_eq!(files[0].change, Change::Unchanged);
        assert_eq!(files[1].change, Change::Replaced);
        assert_eq!(fs::read_to_string(&token).unwrap(), "k0x1.new\n");
    }

    #[test]
    fn a_joining_controller_gets_its_token_file() {
        let root = tempfile::tempdir().unwrap();
        let request = InstallRequest {
            role: UnitRole::Controller,
            args: controller_args(ControllerWorker::No, &[], true, &Passthrough::default()),
            ..worker_request(root.path(), "k0x1.ctl")
        };
        install(&request).unwrap();
        let token = root.path().join("etc/k0x/controller-token");
        assert_eq!(fs::read_to_string(&token).unwrap(), "k0x1.ctl\n");
        assert_eq!(mode(&token), 0o600);
        let unit = fs::read_to_string(root.path().join("etc/systemd/system/k0xcontroller.service"))
            .unwrap();
        assert!(unit.contains(" server --token-file /etc/k0x/controller-token\n"));
    }
}
