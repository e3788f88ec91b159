//! `k0x install controller|worker`: writes the service unit (and a worker's token); never starts.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Args, Subcommand, ValueEnum};
use k0x_host::install::{
    Change, ControllerWorker, InstallRequest, Passthrough, controller_args, install, read_token,
    worker_args,
};
use k0x_host::units::{InitSystem, Role};

use crate::cli::{GlobalArgs, HostFixesArg};

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
    /// Also run the worker components (containerd, kubelet) on this controller.
    #[arg(long)]
    pub enable_worker: bool,
    /// With --enable-worker: register the node with the control-plane taint.
    #[arg(long, requires = "enable_worker")]
    pub taint_control_plane: bool,
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
    let common = match &args.role {
        InstallRole::Controller(c) => &c.common,
        InstallRole::Worker(w) => &w.common,
    };
    let passthrough = Passthrough {
        no_host_fixes: common.host_fixes.no_host_fixes,
        ..Passthrough::non_default(
            &absolute(&global.data_dir),
            &absolute(&global.run_dir),
            &absolute(&global.config),
        )
    };
    let (role, args, token) = match &args.role {
        InstallRole::Controller(c) => (
            Role::Controller,
            controller_args(
                c.worker(),
                &c.disable_components,
                c.token_file.is_some(),
                &passthrough,
            ),
            c.token_file.as_deref().map(read_token).transpose()?,
        ),
        InstallRole::Worker(w) => (
            Role::Worker,
            worker_args(&passthrough),
            Some(read_token(&w.token_file)?),
        ),
    };
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

/// Makes a running systemd read the new unit; without systemd as init there is nothing to tell.
pub fn reload_systemd() {
    if Path::new("/run/systemd/system").is_dir() {
        match std::process::Command::new("systemctl")
            .arg("daemon-reload")
            .status()
        {
            Ok(status) if status.success() => {}
            _ => tracing::warn!("systemctl daemon-reload failed; run it before k0x start"),
        }
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
