//! Which components this node runs, with their files written and specs built, and which it
//! cannot run and why (missing binaries, or a dependency that is missing).

use k0x_config::schema::NetworkProvider;
use k0x_host::sysinfo;
use k0x_node::{Component, NodeContext, RenderedFile, stacks};
use k0x_supervisor::Spec;

use super::NodeOptions;

/// The components a node runs: a controller's, a worker's, or both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeRole {
    Controller,
    /// A controller that also runs pods; `tainted` registers it with the control-plane taint
    /// (`--taint-control-plane`).
    ControllerWorker {
        tainted: bool,
    },
    Worker,
}

impl NodeRole {
    /// The role's name as status shows it.
    pub fn name(self) -> &'static str {
        match self {
            Self::ControllerWorker { .. } => "controller+worker",
            Self::Controller => "controller",
            Self::Worker => "worker",
        }
    }

    /// Whether the node runs the controller components.
    pub fn runs_controller(self) -> bool {
        self != Self::Worker
    }

    /// Whether the node runs the worker components.
    pub fn runs_worker(self) -> bool {
        self != Self::Controller
    }

    /// What `k0x sysinfo` checks the host for.
    pub fn checked_parts(self) -> sysinfo::Parts {
        match self {
            Self::Controller => sysinfo::Parts::Controller,
            Self::ControllerWorker { .. } => sysinfo::Parts::ControllerWorker,
            Self::Worker => sysinfo::Parts::Worker,
        }
    }

    /// Whether the node's kubelet registers with the control-plane taint.
    pub fn taints_control_plane(self) -> bool {
        self == Self::ControllerWorker { tainted: true }
    }
}

/// The node's components, ready to hand to the supervisor.
#[derive(Debug)]
pub struct Plan {
    pub ctx: NodeContext,
    pub role: NodeRole,
    /// Specs of the components that will run, in start order.
    pub specs: Vec<Spec>,
    /// Components that will not run, with the reason status reports.
    pub unavailable: Vec<(String, String)>,
    /// Components turned off with `--disable-components`.
    pub disabled: Vec<String>,
}

/// The node's components with their files and specs rendered in memory: every configuration
/// error has shown, nothing is written yet.
#[derive(Debug)]
pub struct Rendered {
    pub ctx: NodeContext,
    role: NodeRole,
    components: Vec<Box<dyn Component>>,
    specs: Vec<Spec>,
    /// The system stacks a controller writes for the applier.
    stacks: Vec<RenderedFile>,
    disabled: Vec<String>,
}

impl Plan {
    /// Renders every component's files and builds its spec without writing anything, so a bad
    /// setting is refused before the binaries are unpacked.
    pub fn render(ctx: NodeContext, options: &NodeOptions) -> anyhow::Result<Rendered> {
        let components = k0x_node::filter_disabled(
            components(options.role, ctx.config.spec.network.provider),
            &options.disabled,
        )?;
        for component in &components {
            component.files(&ctx)?;
        }
        let specs = k0x_node::specs(&components, &ctx)?;
        let stacks = match options.role.runs_controller() {
            true => stacks::system_stacks(&ctx, &options.disabled)?,
            false => Vec::new(),
        };
        Ok(Rendered {
            ctx,
            role: options.role,
            components,
            specs,
            stacks,
            disabled: options.disabled.clone(),
        })
    }
}

impl Rendered {
    /// Writes every component's files and splits off the components whose binaries are missing.
    pub fn prepare(self) -> anyhow::Result<Plan> {
        for component in &self.components {
            component.prepare(&self.ctx)?;
        }
        self.stacks.iter().try_for_each(RenderedFile::write)?;
        if self.role.runs_controller() {
            stacks::remove_disabled(&self.ctx, &self.disabled)?;
        }
        let (specs, unavailable) = runnable(self.specs);
        Ok(Plan {
            ctx: self.ctx,
            role: self.role,
            specs,
            unavailable,
            disabled: self.disabled,
        })
    }
}

fn components(role: NodeRole, provider: NetworkProvider) -> Vec<Box<dyn Component>> {
    let mut components = Vec::new();
    if role.runs_controller() {
        components.extend(k0x_node::controller_components());
    }
    if role.runs_worker() {
        components.extend(k0x_node::worker_components(provider));
    }
    components
}

/// Splits specs into those that can run and those that cannot: a missing executable, or a
/// dependency that will not run (so a dependent never waits forever on it).
fn runnable(specs: Vec<Spec>) -> (Vec<Spec>, Vec<(String, String)>) {
    let mut unavailable: Vec<(String, String)> = Vec::new();
    let mut ready = Vec::new();
    for spec in specs {
        if let Some(reason) = k0x_node::missing_binary(&spec) {
            unavailable.push((spec.name.clone(), reason));
        } else if let Some(dep) = spec
            .depends_on
            .iter()
            .find(|dep| unavailable.iter().any(|(name, _)| name == *dep))
        {
            let reason = format!(
                "{}: not started because it needs {dep}, which cannot run",
                spec.name
            );
            unavailable.push((spec.name.clone(), reason));
        } else {
            ready.push(spec);
        }
    }
    (ready, unavailable)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dependents_of_missing_components_are_not_started() {
        let tmp = tempfile::tempdir().unwrap();
        let present = tmp.path().join("present");
        std::fs::write(&present, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(
            &present,
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
        let etcd = Spec::new("etcd", &present);
        let apiserver = Spec {
            depends_on: vec!["etcd".into()],
            ..Spec::new("kube-apiserver", tmp.path().join("gone"))
        };
        let scheduler = Spec {
            depends_on: vec!["kube-apiserver".into()],
            ..Spec::new("kube-scheduler", &present)
        };
        let (run, skip) = runnable(vec![etcd, apiserver, scheduler]);
        assert_eq!(
            run.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(),
            ["etcd"]
        );
        assert_eq!(skip.len(), 2);
        assert!(skip[0].1.contains("is missing"), "{}", skip[0].1);
        assert!(skip[1].1.contains("needs kube-apiserver"), "{}", skip[1].1);
    }
}
