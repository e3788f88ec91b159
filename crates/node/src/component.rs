//! The component interface and the controller and worker component lists.

use std::fmt;
use std::path::PathBuf;

use k0x_config::schema::NetworkProvider;
use k0x_supervisor::Spec;

use crate::files::{DirSpec, RenderedFile};
use crate::scheduler;
use crate::{
    NodeContext, NodeError, apiserver, containerd, controller_manager, etcd, flannel, kube_proxy,
    kubelet,
};

/// One supervised component: what it needs on disk and how to run it.
pub trait Component: fmt::Debug + Send + Sync {
    /// The component name used in specs, logs, status and `--disable-components`.
    fn name(&self) -> &'static str;

    /// Directories that must exist (with these modes) before the component starts.
    fn dirs(&self, _ctx: &NodeContext) -> Vec<DirSpec> {
        Vec::new()
    }

    /// Configuration files the component reads, fully rendered.
    fn files(&self, _ctx: &NodeContext) -> Result<Vec<RenderedFile>, NodeError> {
        Ok(Vec::new())
    }

    /// How the supervisor runs the component.
    fn spec(&self, ctx: &NodeContext) -> Result<Spec, NodeError>;

    /// Files an earlier configuration wrote that would now mislead the component.
    fn stale_files(&self, _ctx: &NodeContext) -> Vec<PathBuf> {
        Vec::new()
    }

    /// Creates the directories, writes the files and removes the stale ones. Every file is
    /// rendered before the first one is written, so a configuration error leaves the disk as it
    /// was.
    fn prepare(&self, ctx: &NodeContext) -> Result<(), NodeError> {
        let files = self.files(ctx)?;
        for dir in self.dirs(ctx) {
            dir.create()?;
        }
        files.iter().try_for_each(RenderedFile::write)?;
        for stale in self.stale_files(ctx) {
            match std::fs::remove_file(&stale) {
                Ok(()) => {
                    tracing::info!(component = self.name(), file = %stale.display(), "removed a file of the previous configuration")
                }
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
                Err(err) => return Err(NodeError::write(stale)(err)),
            }
        }
        Ok(())
    }
}

/// The control plane: etcd, kube-apiserver, kube-scheduler, kube-controller-manager.
pub fn controller_components() -> Vec<Box<dyn Component>> {
    vec![
        Box::new(etcd::Etcd),
        Box::new(apiserver::KubeApiserver),
        Box::new(scheduler::KubeScheduler),
        Box::new(controller_manager::KubeControllerManager),
    ]
}

/// A worker: containerd (with the CNI setup), the kubelet, kube-proxy, and flannel where it is
/// the network provider.
pub fn worker_components(provider: NetworkProvider) -> Vec<Box<dyn Component>> {
    let mut components: Vec<Box<dyn Component>> = vec![
        Box::new(containerd::Containerd),
        Box::new(kubelet::Kubelet),
        Box::new(kube_proxy::KubeProxy),
    ];
    if provider == NetworkProvider::Flannel {
        components.push(Box::new(flannel::Flannel));
    }
    components
}

/// Removes the components named in `--disable-components`. Names are checked against every
/// component (controller and worker) and system stack, so the same flag works on every role; an
/// unknown name is an error listing the valid ones. Components that remain stop waiting for disabled ones: a
/// disabled component is assumed to be run by someone else.
pub fn filter_disabled(
    components: Vec<Box<dyn Component>>,
    disabled: &[String],
) -> Result<Vec<Box<dyn Component>>, NodeError> {
    let known = || {
        k0x_config::components::ALL
            .iter()
            .chain(crate::stacks::SYSTEM_STACKS)
    };
    if let Some(unknown) = disabled.iter().find(|d| !known().any(|name| name == d)) {
        return Err(NodeError::UnknownComponent {
            name: unknown.clone(),
            known: known().copied().collect::<Vec<_>>().join(", "),
        });
    }
    Ok(components
        .into_iter()
        .filter(|c| !disabled.iter().any(|d| d == c.name()))
        .collect())
}

/// Why `spec` cannot start on this host, when its executable is missing or not executable: the
/// server reports it (status, logs) and runs the other components instead of failing silently.
pub fn missing_binary(spec: &Spec) -> Option<String> {
    use std::os::unix::fs::PermissionsExt;
    let executable = std::fs::metadata(&spec.path)
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0);
    (!executable).then(|| {
        format!(
            "{}: executable {} is missing; the payload does not carry it (see `k0x version \
             --components`), supply it or run without it: --disable-components {}",
            spec.name,
            spec.path.display(),
            spec.name
        )
    })
}

/// The specs of `components`, with dependencies on components absent from the list dropped
/// (disabled, or running elsewhere such as the apiserver of a worker-only node).
pub fn specs(components: &[Box<dyn Component>], ctx: &NodeContext) -> Result<Vec<Spec>, NodeError> {
    let present: Vec<&str> = components.iter().map(|c| c.name()).collect();
    components
        .iter()
        .map(|component| {
            let mut spec = component.spec(ctx)?;
            spec.depends_on
                .retain(|dep| present.contains(&dep.as_str()));
            Ok(spec)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use k0x_supervisor::Probe;

    use super::*;

    fn names(components: &[Box<dyn Component>]) -> Vec<&'static str> {
        components.iter().map(|c| c.name()).collect()
    }

    #[test]
    fn lists_cover_every_component_in_start_order() {
        let mut all = controller_components();
        all.extend(worker_components(Default::default()));
        assert_eq!(names(&all), k0x_config::components::ALL);
    }

    #[test]
    fn probe_timeouts_name_the_components_with_a_probe() {
        let ctx = crate::test_support::context();
        let mut all = controller_components();
        all.extend(worker_components(NetworkProvider::Flannel));
        let probed: Vec<&str> = all
            .iter()
            .filter(|c| !matches!(c.spec(&ctx).unwrap().readiness.probe, Probe::None))
            .map(|c| c.name())
            .collect();
        assert_eq!(probed, k0x_config::components::PROBED);
    }

    #[test]
    fn disabling_removes_components() {
        let disabled = vec!["kube-scheduler".to_owned(), "kubelet".to_owned()];
        let left = filter_disabled(controller_components(), &disabled).unwrap();
        assert_eq!(
            names(&left),
            ["etcd", "kube-apiserver", "kube-controller-manager"]
        );
    }

    #[test]
    fn missing_binaries_are_named_with_the_fix() {
        let ctx = crate::test_support::context();
        let mut spec = controller_components()[1].spec(&ctx).unwrap();
        spec.path = "/nonexistent/kube-apiserver".into();
        let why = missing_binary(&spec).unwrap();
        assert!(why.contains("--disable-components kube-apiserver"), "{why}");
        spec.path = "/bin/sh".into();
        assert_eq!(missing_binary(&spec), None);
    }

    #[test]
    fn unknown_names_are_refused_with_the_valid_ones() {
        let err = filter_disabled(
            worker_components(Default::default()),
            &["kubelett".to_owned()],
        )
        .unwrap_err()
        .to_string();
        assert!(err.starts_with("--disable-components: unknown component \"kubelett\""));
        assert!(err.contains("kube-controller-manager"), "{err}");
    }
}
