//! A running node: `k0x server [--enable-worker]` (and the worker half reused by `k0x worker`).
//!
//! The flow is short on purpose; every step lives in the crate that owns it:
//! lock the data dir (supervisor) -> check the host and etcd's free space (host) -> write the
//! PKI or join (pki, join) -> render each component's files and spec (node) -> put the
//! component binaries in place (assets) -> start them in order (supervisor), the kubelet once
//! the images its pods need are in containerd (node) -> serve the admin socket, and on
//! controllers apply `<data-dir>/manifests` once kube-apiserver is ready (manifests) -> wait for
//! SIGTERM, SIGINT or SIGHUP -> stop in reverse order.
//!
//! Every check that can fail runs before the payload is unpacked: a refused address, a failed
//! join or a bad component setting must not leave 150 MiB of binaries behind.

pub mod admin;
mod balancer;
mod controller_join;
mod join;
mod plan;
mod worker;

use std::sync::Arc;

use anyhow::Context;
use k0x_assets::{Payload, Progress};
use k0x_config::{ClusterConfig, DataDir, RunDir, components, fsutil, layout};
use k0x_host::{notify, sysinfo};
use k0x_join::Token;
use k0x_manifests::Applier;
use k0x_node::{EtcdMembership, NodeContext, NodeFacts};
use k0x_supervisor::{
    ComponentState, ComponentStatus, DataDirLock, Supervisor, SupervisorConfig, SystemHost,
};
use tokio::signal::unix::{Signal, SignalKind, signal};

use controller_join::Promotion;

pub use join::etcd_client;
pub use plan::{NodeRole, Plan};

/// Everything `k0x server` or `k0x worker` was asked to do.
#[derive(Debug, Clone)]
pub struct NodeOptions {
    pub role: NodeRole,
    pub disabled: Vec<String>,
    /// `--profile`: the worker profile the kubelet applies (`None`: one named `default`, if any).
    pub worker_profile: Option<String>,
    /// The join token of a worker's or a joining controller's first start.
    pub token: Option<Token>,
    /// Whether the host is fixed before it is checked.
    pub host_fixes: sysinfo::HostFixes,
}

/// Runs the node until SIGTERM, SIGINT or SIGHUP, then stops every component. Blocks.
pub fn run(
    config: ClusterConfig,
    data: DataDir,
    run: RunDir,
    options: &NodeOptions,
) -> anyhow::Result<()> {
    let lock = Arc::new(DataDirLock::acquire(&data)?);
    run.create().with_context(|| {
        format!(
            "cannot create the run dir {}; check --run-dir",
            run.root().display()
        )
    })?;
    end_orphans(&run, &lock)?;
    preflight(&config, &data, options)?;
    check_etcd_space(&data, options)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let facts = NodeFacts::detect(&config, &data)?;
    let (config, membership, promotion) = identity(config, &data, &run, &facts, options, &runtime)?;
    let mut ctx = NodeContext::new(config, data, run, facts);
    ctx.etcd_membership = membership;
    ctx.taint_control_plane = options.role.taints_control_plane();
    ctx.worker_profile = options.worker_profile.clone();
    let rendered = Plan::render(ctx, options)?;
    install_components(&rendered.ctx.data)?;
    let plan = rendered.prepare()?;
    if let Some(promotion) = promotion {
        runtime.spawn(promotion.run());
    }
    runtime.block_on(serve(plan, lock))
}

/// Ends what a k0x killed with SIGKILL left running on this data dir.
fn end_orphans(run: &RunDir, lock: &DataDirLock) -> anyhow::Result<()> {
    let ended = k0x_supervisor::end_orphans(run, lock).with_context(|| {
        format!(
            "cannot end the leftovers of a previous k0x in {}",
            run.root().display()
        )
    })?;
    if !ended.is_empty() {
        tracing::warn!(
            count = ended.len(),
            "ended processes left by a previous k0x"
        );
    }
    Ok(())
}

/// The node's place in the cluster: a controller's PKI and etcd membership (joining with its
/// token on a first start), or a worker's join material and the settings the cluster sent.
fn identity(
    config: ClusterConfig,
    data: &DataDir,
    run: &RunDir,
    facts: &NodeFacts,
    options: &NodeOptions,
    runtime: &tokio::runtime::Runtime,
) -> anyhow::Result<(ClusterConfig, EtcdMembership, Option<Promotion>)> {
    let token = options.token.clone();
    if options.role.runs_controller() {
        let (membership, promotion) =
            controller_join::ensure_pki_and_membership(&config, data, run, facts, token, runtime)?;
        Ok((config, membership, promotion))
    } else {
        let settings = worker::ensure_joined(data, token, facts, runtime)?;
        Ok((
            worker::apply_settings(config, &settings),
            EtcdMembership::New,
            None,
        ))
    }
}

/// The safe host fixes (unless turned off), then the host checks a node cannot run without
/// (sysinfo's fatal ones), on the ports this configuration uses.
fn preflight(config: &ClusterConfig, data: &DataDir, server: &NodeOptions) -> anyhow::Result<()> {
    let options = sysinfo::Options::new(data.clone(), server.role.checked_parts(), &config.spec);
    let report = sysinfo::prepare_for_start(&sysinfo::RealHost, &options, server.host_fixes)?;
    for check in report
        .checks
        .iter()
        .filter(|c| c.status != sysinfo::Status::Pass)
    {
        let fix = check.fix.as_deref().unwrap_or_default();
        tracing::warn!(check = %check.id, "host check: {} {fix}", check.detail);
    }
    Ok(())
}

/// Free space etcd needs to start: it preallocates 64 MiB write-ahead log files and snapshots
/// beside them, and on a full disk it dies with only an exit code to show for it.
const ETCD_MIN_FREE: u64 = 256 << 20;

/// Refuses to start a controller's etcd on a device with less than [`ETCD_MIN_FREE`] free.
fn check_etcd_space(data: &DataDir, options: &NodeOptions) -> anyhow::Result<()> {
    if !options.role.runs_controller()
        || options.disabled.iter().any(|name| name == components::ETCD)
    {
        return Ok(());
    }
    let dir = data.etcd();
    let free = fsutil::available_bytes(&dir)
        .with_context(|| format!("cannot tell the free space for etcd at {}", dir.display()))?;
    anyhow::ensure!(
        free >= ETCD_MIN_FREE,
        "only {} MiB are free on the device of {}, and etcd needs at least {} MiB; free space or \
         pick another --data-dir",
        fsutil::mib(free),
        dir.display(),
        fsutil::mib(ETCD_MIN_FREE)
    );
    Ok(())
}

/// Puts the payload's binaries into `bin/`; without a payload, whatever `bin/` holds is used.
fn install_components(data: &DataDir) -> anyhow::Result<()> {
    match Payload::locate()? {
        Some(payload) => {
            let report = k0x_assets::extract(&payload, data, Progress::Auto)?;
            tracing::info!(
                extracted = report.extracted.len(),
                unchanged = report.unchanged.len(),
                "components ready in {} ({:.0?})",
                data.bin().display(),
                report.elapsed
            );
        }
        None => tracing::warn!(
            "this k0x carries no component payload: using what {} holds ({})",
            data.bin().display(),
            k0x_assets::NO_PAYLOAD_HINT
        ),
    }
    Ok(())
}

async fn serve(plan: Plan, lock: Arc<DataDirLock>) -> anyhow::Result<()> {
    let run = plan.ctx.run.clone();
    for (name, reason) in &plan.unavailable {
        tracing::warn!(component = %name, "not started: {reason}");
    }
    let mut supervisor = Supervisor::new(SupervisorConfig::new(run.clone(), lock))
        .context("cannot start the supervisor")?;
    let (tokens, join_api) = join::controller_services(&plan)?.unzip();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|stop| *stop).await;
        }
    };
    let status = admin::StatusSource::new(&plan, supervisor.subscribe());
    let admin_task = admin::AdminRouter::new(status, tokens).serve(&run, stopped())?;

    let applier = start_manifests(&plan, supervisor.subscribe(), stopped());
    if !plan.role.runs_controller() {
        balancer::start(&plan.ctx.data, stopped()).await?;
    }
    let mut signals = StopSignals::watch()?;
    let started = tokio::select! {
        result = start_components(&mut supervisor, &plan, &stopped) => Some(result),
        _ = signals.recv() => None,
    };
    let outcome = match started {
        Some(Ok(())) => {
            tracing::info!(
                "all {} components ready; {} not started",
                plan.specs.len(),
                plan.unavailable.len()
            );
            let summary = format!("{} components ready", plan.specs.len());
            if let Err(err) = notify::ready(&summary) {
                tracing::warn!(%err, "cannot tell systemd that k0x is ready");
            }
            serve_until_signal(join_api, stopped(), &mut signals).await
        }
        Some(Err(err)) => Err(err),
        None => {
            tracing::info!("signal during start: stopping");
            Ok(())
        }
    };
    if let Err(err) = notify::stopping() {
        tracing::warn!(%err, "cannot tell systemd that k0x is stopping");
    }
    let _ = stop_tx.send(true);
    if let Some(applier) = applier {
        let _ = applier.await;
    }
    supervisor.stop().await;
    let _ = admin_task.await;
    let _ = std::fs::remove_file(run.admin_socket());
    outcome
}

/// On controllers, the applier of `<data-dir>/manifests` (created 0700), started once
/// kube-apiserver is ready and run until `stop`. A controller without its admin kubeconfig runs
/// without it, saying why.
fn start_manifests(
    plan: &Plan,
    mut components: tokio::sync::watch::Receiver<Vec<ComponentStatus>>,
    stop: impl Future<Output = ()> + Send + 'static,
) -> Option<tokio::task::JoinHandle<()>> {
    if !plan.role.runs_controller() {
        return None;
    }
    let data = &plan.ctx.data;
    let server = format!("https://127.0.0.1:{}", plan.ctx.config.spec.api.port);
    let applier = layout::ensure_dir(&data.manifests(), layout::PRIVATE_DIR_MODE)
        .map_err(|e| format!("cannot create {}: {e}", data.manifests().display()))
        .and_then(|()| Applier::new(data, &server, &plan.ctx.node.name).map_err(|e| e.to_string()));
    let applier = applier
        .inspect_err(|why| tracing::warn!("manifests will not be applied: {why}"))
        .ok()?;
    let apiserver_ready = async move {
        let ready = |all: &Vec<ComponentStatus>| {
            all.iter()
                .any(|c| c.name == components::KUBE_APISERVER && c.state == ComponentState::Ready)
        };
        let _ = components.wait_for(ready).await;
    };
    Some(tokio::spawn(async move {
        tokio::pin!(stop);
        tokio::select! {
            () = apiserver_ready => applier.run(stop).await,
            () = &mut stop => {}
        }
    }))
}

/// Starts every component in order; the kubelet only after the sandbox image is imported, since
/// it is the first thing the kubelet asks containerd for. The pods' other images are imported
/// beside the kubelet, and then the archives added later.
async fn start_components<Stopped: Future<Output = ()> + Send + 'static>(
    supervisor: &mut Supervisor<SystemHost>,
    plan: &Plan,
    stopped: &impl Fn() -> Stopped,
) -> anyhow::Result<()> {
    // What comes after the kubelet (kube-proxy) starts with it, not before it.
    let kubelet = plan
        .specs
        .iter()
        .position(|spec| spec.name == k0x_node::images::NEEDED_BY)
        .unwrap_or(plan.specs.len());
    let (first, later) = plan.specs.split_at(kubelet);
    let (first, later) = (first.to_vec(), later.to_vec());
    supervisor.start(first).await?;
    if later.is_empty() {
        return Ok(());
    }
    let ctx = plan.ctx.clone();
    tokio::task::spawn_blocking(move || k0x_node::import_sandbox_image(&ctx))
        .await
        .context("the image import task failed")??;
    if let k0x_node::CniSetup::Flannel { lease, conflist } = k0x_node::cni_setup(&plan.ctx) {
        let ipam = k0x_node::paths::cni_ipam_dir(&plan.ctx.run);
        tokio::spawn(follow_flannel_lease(lease, conflist, ipam, stopped()));
    }
    tokio::spawn(import_pod_images(plan.ctx.clone(), stopped()));
    supervisor.start(later).await?;
    Ok(())
}

/// How often a worker looks at flannel's lease.
const LEASE_LOOK_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

/// Keeps the CNI configuration in step with flannel's lease until k0x stops: the pods' network
/// exists (and the kubelet reports the node Ready) once flannel has its subnet.
async fn follow_flannel_lease(
    lease: std::path::PathBuf,
    conflist: std::path::PathBuf,
    ipam: std::path::PathBuf,
    stopped: impl Future<Output = ()>,
) {
    tokio::pin!(stopped);
    let mut last_error = String::new();
    loop {
        match k0x_node::cni::sync_flannel_conflist(&lease, &conflist, &ipam) {
            Ok(true) => {
                tracing::info!(file = %conflist.display(), "CNI configuration written from flannel's lease")
            }
            Ok(false) => {}
            Err(err) if err.to_string() != last_error => {
                last_error = err.to_string();
                tracing::warn!("{last_error}");
            }
            Err(_) => {}
        }
        tokio::select! {
            () = &mut stopped => return,
            () = tokio::time::sleep(LEASE_LOOK_INTERVAL) => {}
        }
    }
}

/// How often a worker looks for image archives added to `<data-dir>/images/`.
const ARCHIVE_LOOK_INTERVAL: std::time::Duration = std::time::Duration::from_secs(5);

/// Imports the pods' images, then the archives added to or changed in `<data-dir>/images/`
/// until k0x stops.
async fn import_pod_images(ctx: NodeContext, stopped: impl Future<Output = ()>) {
    let first = ctx.clone();
    let Ok(mut archives) =
        tokio::task::spawn_blocking(move || k0x_node::import_pod_images(&first)).await
    else {
        return tracing::error!("the image import task failed");
    };
    tokio::pin!(stopped);
    loop {
        tokio::select! {
            () = &mut stopped => return,
            () = tokio::time::sleep(ARCHIVE_LOOK_INTERVAL) => {}
        }
        let ctx = ctx.clone();
        match tokio::task::spawn_blocking(move || {
            archives.import_changed(&ctx);
            archives
        })
        .await
        {
            Ok(watch) => archives = watch,
            Err(err) => return tracing::error!("the image archive watch ended: {err}"),
        }
    }
}

/// Serves the join API (on controllers) until a stop signal.
async fn serve_until_signal(
    join_api: Option<join::JoinApi>,
    shutdown: impl Future<Output = ()> + Send + 'static,
    signals: &mut StopSignals,
) -> anyhow::Result<()> {
    if let Some(api) = join_api {
        api.serve(shutdown).await?;
    }
    let name = signals.recv().await;
    tracing::info!("{name}: stopping");
    Ok(())
}

/// The signals that stop k0x in order: SIGTERM (systemctl stop), SIGINT (Ctrl-C) and SIGHUP (the
/// terminal of a foreground `k0x server` closed). k0x has nothing to reload, so a hangup is a
/// stop like the others rather than the default instant death that skips the ordered stop and
/// leaves the socket and pid files behind.
struct StopSignals {
    terminate: Signal,
    interrupt: Signal,
    hangup: Signal,
}

impl StopSignals {
    fn watch() -> anyhow::Result<Self> {
        let watch = |kind, name| signal(kind).with_context(|| format!("cannot watch {name}"));
        Ok(Self {
            terminate: watch(SignalKind::terminate(), "SIGTERM")?,
            interrupt: watch(SignalKind::interrupt(), "SIGINT")?,
            hangup: watch(SignalKind::hangup(), "SIGHUP")?,
        })
    }

    /// Waits for the next stop signal and returns its name.
    async fn recv(&mut self) -> &'static str {
        tokio::select! {
            _ = self.terminate.recv() => "SIGTERM",
            _ = self.interrupt.recv() => "SIGINT",
            _ = self.hangup.recv() => "SIGHUP",
        }
    }
}
