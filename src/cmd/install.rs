//! `k0x install controller|worker`: writes the service unit (and a worker's token); never starts.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Args, Subcommand, ValueEnum};
use k0x_config::ClusterConfig;
use k0x_config::layout::DEFAULT_CONFIG_FILE;
use k0x_host::install::{
    Change, ControllerWorker, InstallRequest, Passthrough, controller_args, install, worker_args,
};
use k0x_host::units::{InitSystem, UnitRole};

use crate::cli::{GlobalArgs, HostFixesArg};
use crate::cmd::launch::{NodeToken, check_disabled, check_profile};

#[derive(Debug, Args)]
pub struct InstallArgs {
    #[command(subcommand)]
    pub role: InstallRole,
}

#[derive(Debug, Subcommand)]
pub enum InstallRole {
    /// Install the controller unit (`k0x server`).
    Controller(ControllerArgs),
    /// Install the worker unit (`k0x worker`) and store its join token.
    Worker(WorkerArgs),
}

#[derive(Debug, Args)]
pub struct ControllerArgs {
    /// Also run the worker components (containerd, kubelet, kube-proxy) on this controller.
    #[arg(long)]
    pub enable_worker: bool,
    /// With --enable-worker: register the node with the control-plane taint.
    #[arg(long, requires = "enable_worker")]
    pub taint_control_plane: bool,
    /// With --enable-worker: the worker profile (`spec.workerProfiles[].name` in the unit's configuration) the unit's
    /// kubelet applies.
    #[arg(long, value_name = "NAME", requires = "enable_worker")]
    pub profile: Option<String>,
    /// Components not to run, comma separated (e.g. kube-scheduler).
    #[arg(long, value_delimiter = ',')]
    pub disable_components: Vec<String>,
    /// Join an existing cluster with this controller token (`k0x token create --role
    /// controller`); copied to a 0600 file.
    #[arg(long)]
    pub token_file: Option<PathBuf>,
    #[command(flatten)]
    pub common: CommonArgs,
}

#[derive(Debug, Args)]
pub struct WorkerArgs {
    /// The join token printed by `k0x token create --role worker`; copied to a 0600 file.
    #[arg(long)]
    pub token_file: PathBuf,
    /// The worker profile (`spec.workerProfiles[].name` in the unit's configuration) the unit's
    /// kubelet applies.
    #[arg(long, value_name = "NAME")]
    pub profile: Option<String>,
    #[command(flatten)]
    pub common: CommonArgs,
}

#[derive(Debug, Args)]
pub struct CommonArgs {
    /// Write below this root instead of / (for images and tests).
    #[arg(long, default_value = "/")]
    pub root: PathBuf,
    /// Replace an installed unit or token that differs.
    #[arg(long)]
    pub force: bool,
    /// Service manager to write the unit for.
    #[arg(long, value_enum, default_value_t = Init::Systemd)]
    pub init: Init,
    #[command(flatten)]
    pub host_fixes: HostFixesArg,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Init {
    Systemd,
    Openrc,
}

#[allow(clippy::print_stdout)]
pub fn run(global: &GlobalArgs, args: &InstallArgs) -> anyhow::Result<()> {
    let absolute = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    let (common, profile) = match &args.role {
        InstallRole::Controller(c) => (&c.common, &c.profile),
        InstallRole::Worker(w) => (&w.common, &w.profile),
    };
    let unit_config = unit_config(&absolute(&global.config), &common.root)?;
    check_profile(&unit_config, profile.as_deref())?;
    let passthrough = Passthrough {
        no_host_fixes: common.host_fixes.no_host_fixes,
        profile: profile.clone(),
        ..Passthrough::non_default(
            &absolute(&global.data_dir),
            &absolute(&global.run_dir),
            &absolute(&global.config),
        )
    };
    let (role, args, token) = match &args.role {
        InstallRole::Controller(c) => {
            check_disabled(&c.disable_components)?;
            let token = NodeToken {
                argument: None,
                file: c.token_file.as_deref(),
                role: k0x_join::TokenRole::Controller,
                wrong_role_hint: "`k0x install controller --token-file` takes a token from \
                                  `k0x token create --role controller`; install a worker with \
                                  `k0x install worker`",
            }
            .load()?;
            let args = controller_args(
                c.worker(),
                &c.disable_components,
                token.is_some(),
                &passthrough,
            );
            (UnitRole::Controller, args, token)
        }
        InstallRole::Worker(w) => {
            let token = NodeToken {
                argument: None,
                file: Some(&w.token_file),
                role: k0x_join::TokenRole::Worker,
                wrong_role_hint: "`k0x install worker` needs a token from `k0x token create \
                                  --role worker`; install a controller with `k0x install \
                                  controller --token-file`",
            }
            .load()?;
            (UnitRole::Worker, worker_args(&passthrough), token)
        }
    };
    // The unit reads the token back from its own file: store it as `k0x worker` parses it.
    let token = token.map(|token| token.encode());
    let init = match common.init {
        Init::Systemd => InitSystem::Systemd,
        Init::Openrc => InitSystem::OpenRc,
    };
    let binary = std::env::current_exe()
        .and_then(std::fs::canonicalize)
        .context("cannot tell where the k0x executable is; run it by its full path")?;
    let files = install(&InstallRequest {
        root: common.root.clone(),
        init,
        role,
        binary,
        args,
        token,
        force: common.force,
    })?;
    for file in &files {
        let change = match file.change {
            Change::Created => "created",
            Change::Replaced => "replaced",
            Change::Unchanged => "unchanged",
        };
        println!("{change:9} {}", file.path.display());
    }
    if common.root == Path::new("/") && init == InitSystem::Systemd {
        reload_systemd();
    }
    println!(
        "installed {}; start it with: k0x start",
        role.service_name()
    );
    Ok(())
}

/// Loads the configuration the unit will read (`--config` on the installed system below
/// `--root`) as `k0x server` and `k0x worker` load it, so a unit that could only fail is never
/// installed.
fn unit_config(config: &Path, root: &Path) -> anyhow::Result<ClusterConfig> {
    let installed = root.join(config.strip_prefix("/").unwrap_or(config));
    if config == Path::new(DEFAULT_CONFIG_FILE) && !installed.exists() {
        return Ok(ClusterConfig::default());
    }
    ClusterConfig::load(&installed).map_err(|errors| anyhow::anyhow!("{errors}"))
}

/// Makes a running systemd read the changed units; a failure only warns: the files are written.
pub fn reload_systemd() {
    if let Err(err) = k0x_host::service::reload_systemd() {
        tracing::warn!("{err}; run `systemctl daemon-reload` before k0x start");
    }
}

impl ControllerArgs {
    fn worker(&self) -> ControllerWorker {
        match (self.enable_worker, self.taint_control_plane) {
            (false, _) => ControllerWorker::No,
            (true, false) => ControllerWorker::Untainted,
            (true, true) => ControllerWorker::Tainted,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use clap::Parser;
    use k0x_host::install::{
        CONTROLLER_TOKEN_PATH, ControllerWorker, Passthrough, WORKER_TOKEN_PATH, controller_args,
        worker_args,
    };

    use crate::cli::Cli;
    use crate::cmd::Command;

    /// Parses a unit's arguments with the real command line, as the unit's `k0x` will.
    fn parse(args: &[String]) -> Cli {
        let argv = std::iter::once("k0x".to_owned()).chain(args.iter().cloned());
        Cli::try_parse_from(argv).unwrap_or_else(|err| panic!("{args:?}: {err}"))
    }

    fn every_passthrough() -> Passthrough {
        Passthrough {
            no_host_fixes: true,
            profile: Some("small".into()),
            ..Passthrough::non_default(Path::new("/d"), Path::new("/r"), Path::new("/c.yaml"))
        }
    }

    #[test]
    fn the_controller_unit_arguments_parse_as_k0x_server() {
        let disabled = ["kube-scheduler".to_owned(), "etcd".to_owned()];
        let args = controller_args(
            ControllerWorker::Tainted,
            &disabled,
            true,
            &every_passthrough(),
        );
        let cli = parse(&args);
        let Command::Server(server) = &cli.command else {
            panic!("not k0x server: {args:?}");
        };
        assert!(server.enable_worker && server.taint_control_plane);
        assert_eq!(server.disable_components, disabled);
        assert_eq!(
            server.token_file.as_deref(),
            Some(Path::new(CONTROLLER_TOKEN_PATH))
        );
        assert!(server.host_fixes.no_host_fixes);
        assert_eq!(server.profile.as_deref(), Some("small"));
        assert_eq!(cli.global.data_dir, Path::new("/d"));
        assert_eq!(cli.global.run_dir, Path::new("/r"));
        assert_eq!(cli.global.config, Path::new("/c.yaml"));

        let args = controller_args(
            ControllerWorker::Untainted,
            &[],
            false,
            &Passthrough::default(),
        );
        let Command::Server(server) = parse(&args).command else {
            panic!("not k0x server: {args:?}");
        };
        assert!(server.enable_worker && !server.taint_control_plane);
        assert!(server.token_file.is_none() && server.disable_components.is_empty());
    }

    #[test]
    fn the_worker_unit_arguments_parse_as_k0x_worker() {
        let args = worker_args(&every_passthrough());
        let cli = parse(&args);
        let Command::Worker(worker) = &cli.command else {
            panic!("not k0x worker: {args:?}");
        };
        assert_eq!(
            worker.token_file.as_deref(),
            Some(Path::new(WORKER_TOKEN_PATH))
        );
        assert!(worker.token.is_none());
        assert!(worker.host_fixes.no_host_fixes);
        assert_eq!(worker.profile.as_deref(), Some("small"));
        assert_eq!(cli.global.data_dir, Path::new("/d"));
    }
}
