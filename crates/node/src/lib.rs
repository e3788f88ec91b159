//! The components of a k0x node, as data.
//!
//! Each component (etcd, kube-apiserver, kube-scheduler, kube-controller-manager, containerd,
//! kubelet) turns the cluster configuration, the on-disk layout and a few facts about the host
//! into the files it needs (rendered configuration) and a [`k0x_supervisor::Spec`] saying how to
//! run it and how to tell that it is ready. Nothing here starts a process: the supervisor does
//! that, and the server command wires the two together. Keeping components declarative is what
//! lets tests check every generated flag against the upstream flag contract without running the
//! kube-* binaries, which cannot be obtained on every build machine.
//!
//! Wiring a node (what `k0x server [--enable-worker]` does with this crate):
//!
//! ```no_run
//! use k0x_config::{ClusterConfig, DataDir, RunDir};
//! use k0x_node::{NodeContext, NodeFacts, NodeError};
//!
//! fn plan(config: ClusterConfig, worker: bool, disabled: &[String]) -> Result<(), NodeError> {
//!     let (data, run) = (DataDir::default(), RunDir::default());
//!     let facts = NodeFacts::detect(&config, &data)?;
//!     let ctx = NodeContext::new(config, data, run, facts);
//!     let mut components = k0x_node::controller_components();
//!     if worker {
//!         components.extend(k0x_node::worker_components(Default::default()));
//!     }
//!     let components = k0x_node::filter_disabled(components, disabled)?;
//!     for component in &components {
//!         component.prepare(&ctx)?; // after the PKI is written
//!     }
//!     for spec in k0x_node::specs(&components, &ctx)? {
//!         if let Some(why) = k0x_node::missing_binary(&spec) {
//!             eprintln!("{why}"); // report in status, do not start it
//!             continue;
//!         }
//!         // hand `spec` to the supervisor
//!     }
//!     Ok(())
//! }
//! ```

mod apiserver;
mod args;
pub mod cgroups;
pub mod cni;
pub mod component;
mod containerd;
pub mod context;
pub mod contract;
mod controller_manager;
mod error;
mod etcd;
mod files;
mod flannel;
pub mod images;
mod kube_proxy;
mod kubelet;
pub mod net;
pub mod paths;
mod scheduler;
pub mod stacks;

pub use cgroups::CgroupDriver;
pub use cni::{CniSetup, cni_setup, missing_cni_plugins};
pub use component::{
    Component, controller_components, filter_disabled, missing_binary, specs, worker_components,
};
pub use context::{EtcdMembership, NodeContext, NodeFacts};
pub use error::NodeError;
pub use files::{DirSpec, RenderedFile};
pub use images::{import_pod_images, import_sandbox_image};
/// Every component name, controller components first, in start order.
pub use k0x_config::components::ALL as ALL_COMPONENTS;

pub use apiserver::service_account_issuer;
pub use containerd::containerd_config;
pub use etcd::{client_url as etcd_client_url, peer_url as etcd_peer_url};
pub use kube_proxy::kube_proxy_config;
pub use kubelet::{kubelet_config, worker_profile};

#[cfg(test)]
mod test_support {
    //! A context describing a fixed, made-up host for unit tests.
    use k0x_config::{ClusterConfig, DataDir, RunDir};

    use crate::{CgroupDriver, NodeContext, NodeFacts};

    pub(crate) fn context() -> NodeContext {
        let node = NodeFacts {
            name: "node-a".into(),
            address: "192.0.2.10".parse().unwrap(),
            bin_dir: "/var/lib/k0x/bin".into(),
            cni_bin_dir: "/var/lib/k0x/bin".into(),
            cgroup_driver: CgroupDriver::Cgroupfs,
            swap_enabled: false,
            oom_score_lowerable: true,
            resolv_conf: "/etc/resolv.conf".into(),
        };
        NodeContext::new(
            ClusterConfig::default(),
            DataDir::default(),
            RunDir::default(),
            node,
        )
    }
}
