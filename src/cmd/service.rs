//! `k0x start` / `k0x stop`: the installed unit, through systemctl (or rc-service on OpenRC).
//!
//! A stop keeps the containers running, as a kubelet restart does and as k3s's service does;
//! the next start adopts them. `k0x stop --workloads` also ends them afterwards (k3s ships
//! k3s-killall.sh for this): it is the first part of `k0x reset`, which keeps the data.

use clap::Args;
use k0x_host::reset::{ResetError, ResetOptions, stop_workloads};
use k0x_host::service::{Action, ServiceError, run};

use crate::cli::GlobalArgs;

#[derive(Debug, Args)]
pub struct StopArgs {
    /// Also end the workloads once k0x has stopped: every container shim and container of this
    /// data dir, and their mounts. The data, the configuration and the pod network stay; the
    /// next start runs the pods anew. Without an installed service, stops nothing itself and
    /// only ends what a stopped foreground `k0x server` or `k0x worker` left running.
    #[arg(long)]
    pub workloads: bool,
}

#[allow(clippy::print_stdout)]
pub fn run_action(action: Action) -> anyhow::Result<()> {
    let done = match action {
        Action::Start => "started",
        Action::Stop => "stopped",
    };
    for unit in run(action)? {
        println!("{done} {}", unit.role.service_name());
    }
    Ok(())
}

#[allow(clippy::print_stdout)]
pub fn stop(global: &GlobalArgs, args: &StopArgs) -> anyhow::Result<()> {
    if !args.workloads {
        return run_action(Action::Stop);
    }
    match run_action(Action::Stop) {
        Ok(()) => {}
        // A foreground k0x has no unit: it was stopped with a signal, which kept the workloads.
        Err(err) if matches!(err.downcast_ref(), Some(ServiceError::NotInstalled(_))) => {}
        Err(err) => return Err(err),
    }
    let options = ResetOptions::new(global.data_dir(), global.run_dir());
    let done = stop_workloads(&options).map_err(|err| match err {
        ResetError::Running { data_dir, .. } => anyhow::anyhow!(
            "k0x is still running on data dir {}; stop it first (SIGTERM or Ctrl-C for a \
             foreground `k0x server` or `k0x worker`), then rerun `k0x stop --workloads`",
            data_dir.display()
        ),
        other => other.into(),
    })?;
    if done.is_empty() {
        println!("no workloads running");
    }
    let failed = super::reset::print_done(&done);
    anyhow::ensure!(
        failed == 0,
        "{failed} step(s) failed (marked FAILED above); fix the cause and rerun `k0x stop --workloads`"
    );
    Ok(())
}
