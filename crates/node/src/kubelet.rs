//! kubelet: a KubeletConfiguration file carries almost everything; the command line only names
//! files and this node's identity.
//!
//! The kubelet serves with `pki/kubelet-server.{crt,key}`, a certificate from the cluster CA for
//! the node name and address, so the apiserver and metrics-server verify it: a controller issues
//! its own worker's, a joined worker gets its own from the join API. The kubelet never makes a
//! self-signed one, which nothing could verify.
//!
//! The node is registered without taints, also when it runs the control plane: a single k0x
//! node is meant to run workloads, which the kubeadm guides only reach with a manual untaint.
//! Whoever wants the control plane kept free of ordinary pods starts it with
//! `--taint-control-plane` (kubeadm's taint, `registerWithTaints`); a worker profile may set
//! other taints.

use std::time::Duration;

use k0x_config::ClusterConfig;
use k0x_config::layout::PRIVATE_DIR_MODE;
use k0x_config::pki_names;
use k0x_supervisor::{Probe, Spec};
use serde_json::{Map, Value, json};

use crate::args::Flags;
use crate::files::{DirSpec, RenderedFile};
use crate::{Component, NodeContext, NodeError, containerd, paths};

pub(crate) const NAME: &str = k0x_config::components::KUBELET;

/// The taint kubeadm puts on control-plane nodes.
const CONTROL_PLANE_TAINT: &str = "node-role.kubernetes.io/control-plane";

/// Where the kubelet answers health checks (plain HTTP, loopback only).
const HEALTHZ_PORT: u16 = 10248;

#[derive(Debug)]
pub(crate) struct Kubelet;

/// The KubeletConfiguration k0x generates, with the selected worker profile merged in.
pub fn kubelet_config(ctx: &NodeContext) -> Result<Value, NodeError> {
    let network = &ctx.config.spec.network;
    let mut config = json!({
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "authentication": {
            "anonymous": { "enabled": false },
            "webhook": { "enabled": true, "cacheTTL": "2m0s" },
            "x509": { "clientCAFile": ctx.data.pki_cert(pki_names::CA) },
        },
        "authorization": { "mode": "Webhook" },
        "cgroupDriver": ctx.node.cgroup_driver.as_str(),
        "clusterDNS": [network.dns_service_ip().to_string()],
        "clusterDomain": network.cluster_domain,
        "containerRuntimeEndpoint": format!("unix://{}", ctx.run.containerd_socket().display()),
        "rotateCertificates": true,
        "serverTLSBootstrap": false,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": HEALTHZ_PORT,
        "readOnlyPort": 0,
        "resolvConf": ctx.node.resolv_conf,
        "tlsCertFile": ctx.data.pki_cert(pki_names::KUBELET_SERVER),
        "tlsPrivateKeyFile": ctx.data.pki_key(pki_names::KUBELET_SERVER),
        "tlsMinVersion": "VersionTLS12",
    });
    if ctx.taint_control_plane {
        config["registerWithTaints"] =
            json!([{ "key": CONTROL_PLANE_TAINT, "effect": "NoSchedule" }]);
    }
    if ctx.node.swap_enabled {
        // Swap is on: run anyway, and keep workloads out of it (they get no swap).
        config["failSwapOn"] = json!(false);
        config["memorySwap"] = json!({ "swapBehavior": "NoSwap" });
    }
    if let Some((name, values)) = worker_profile(&ctx.config, ctx.worker_profile.as_deref())? {
        for key in ["apiVersion", "kind"] {
            if values.contains_key(key) {
                return Err(NodeError::InvalidProfileValue {
                    profile: name.to_owned(),
                    key: key.to_owned(),
                    reason: "is fixed by k0x; remove it from the profile",
                });
            }
        }
        merge(&mut config, values);
    }
    Ok(config)
}

/// A worker profile's name and the values it merges into the kubelet configuration.
pub type ProfileValues<'a> = (&'a str, Map<String, Value>);

/// The worker profile a kubelet applies: the one `wanted` names (which must exist), else one
/// called `default`, else none. `k0x server`, `k0x worker` and `k0x install` check `--profile`
/// with it before anything is written.
pub fn worker_profile<'c>(
    config: &'c ClusterConfig,
    wanted: Option<&str>,
) -> Result<Option<ProfileValues<'c>>, NodeError> {
    let profiles = &config.spec.worker_profiles;
    let found = profiles
        .iter()
        .find(|p| p.name == wanted.unwrap_or("default"));
    match (found, wanted) {
        (Some(profile), _) => {
            let values = profile.values.clone().into_iter().collect();
            Ok(Some((profile.name.as_str(), values)))
        }
        (None, Some(name)) => Err(NodeError::UnknownWorkerProfile {
            name: name.to_owned(),
            known: profiles
                .iter()
                .map(|p| p.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        }),
        (None, None) => Ok(None),
    }
}

/// Deep-merges `overlay` into `base`: objects merge key by key, anything else replaces.
fn merge(base: &mut Value, overlay: Map<String, Value>) {
    for (key, value) in overlay {
        match (base.get_mut(&key), value) {
            (Some(Value::Object(existing)), Value::Object(more)) => {
                let mut inner = Value::Object(std::mem::take(existing));
                merge(&mut inner, more);
                base[key.as_str()] = inner;
            }
            (_, value) => base[key.as_str()] = value,
        }
    }
}

impl Kubelet {
    fn flags(ctx: &NodeContext) -> Flags {
        let data = &ctx.data;
        let mut flags = Flags::new();
        flags
            .path("config", &paths::kubelet_config(data))
            .path("kubeconfig", &data.kubeconfig(pki_names::KUBELET))
            .path("root-dir", &data.kubelet())
            .path("cert-dir", &paths::kubelet_cert_dir(data))
            .set("node-ip", ctx.node.address)
            .set("hostname-override", &ctx.node.name);
        flags
    }
}

impl Component for Kubelet {
    fn name(&self) -> &'static str {
        NAME
    }

    fn dirs(&self, ctx: &NodeContext) -> Vec<DirSpec> {
        vec![
            DirSpec::new(ctx.data.kubelet(), PRIVATE_DIR_MODE),
            DirSpec::new(paths::kubelet_cert_dir(&ctx.data), PRIVATE_DIR_MODE),
        ]
    }

    fn files(&self, ctx: &NodeContext) -> Result<Vec<RenderedFile>, NodeError> {
        let config = kubelet_config(ctx)?;
        let yaml = serde_saphyr::to_string(&config).map_err(|e| NodeError::InvalidConfig {
            field: "spec.workerProfiles".into(),
            value: e.to_string(),
            expected: "KubeletConfiguration",
            hint: "the merged kubelet configuration could not be written as YAML",
        })?;
        let header = "# Written by k0x at every start; change it with spec.workerProfiles.\n";
        Ok(vec![RenderedFile::private(
            paths::kubelet_config(&ctx.data),
            format!("{header}{yaml}"),
        )])
    }

    fn spec(&self, ctx: &NodeContext) -> Result<Spec, NodeError> {
        let config = kubelet_config(ctx)?;
        let host = config["healthzBindAddress"].as_str().unwrap_or("127.0.0.1");
        let port = config["healthzPort"]
            .as_u64()
            .unwrap_or(u64::from(HEALTHZ_PORT));
        let probe = Probe::Http {
            url: format!("http://{host}:{port}/healthz"),
            ca: None,
            client_cert: None,
            client_key: None,
        };
        let mut spec = Spec::new(NAME, ctx.node.binary(NAME));
        spec.args = Self::flags(ctx).to_args();
        spec.readiness = ctx.readiness(NAME, probe);
        spec.stop_timeout = Duration::from_secs(30);
        spec.depends_on = vec![containerd::NAME.to_owned()];
        Ok(spec)
    }
}

#[cfg(test)]
mod tests {
    use k0x_config::schema::WorkerProfile;

    use super::*;
    use crate::test_support::context;

    #[test]
    fn config_matches_runtime_and_network() {
        let mut ctx = context();
        ctx.node.swap_enabled = true;
        let config = kubelet_config(&ctx).unwrap();
        assert_eq!(config["cgroupDriver"], "cgroupfs");
        assert_eq!(config["clusterDNS"], json!(["10.96.0.10"]));
        assert_eq!(
            config["containerRuntimeEndpoint"],
            "unix:///run/k0x/containerd/containerd.sock"
        );
        assert_eq!(config["failSwapOn"], false);
        assert_eq!(config["memorySwap"]["swapBehavior"], "NoSwap");
        assert!(config.get("registerWithTaints").is_none());
        assert!(config.get("staticPodPath").is_none());
        assert_eq!(config["tlsCertFile"], "/var/lib/k0x/pki/kubelet-server.crt");
        assert_eq!(
            config["tlsPrivateKeyFile"],
            "/var/lib/k0x/pki/kubelet-server.key"
        );
    }

    #[test]
    fn control_plane_taint_only_when_asked() {
        let mut ctx = context();
        ctx.taint_control_plane = true;
        let config = kubelet_config(&ctx).unwrap();
        assert_eq!(
            config["registerWithTaints"],
            json!([{ "key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule" }])
        );
    }

    #[test]
    fn default_profile_merges_deeply() {
        let mut ctx = context();
        let values = [
            ("maxPods".to_owned(), json!(50)),
            (
                "authentication".to_owned(),
                json!({ "webhook": { "cacheTTL": "30s" } }),
            ),
        ];
        ctx.config.spec.worker_profiles.push(WorkerProfile {
            name: "default".into(),
            values: values.into_iter().collect(),
        });
        let config = kubelet_config(&ctx).unwrap();
        assert_eq!(config["maxPods"], 50);
        assert_eq!(config["authentication"]["webhook"]["cacheTTL"], "30s");
        assert_eq!(config["authentication"]["webhook"]["enabled"], true);
        assert_eq!(config["authentication"]["anonymous"]["enabled"], false);
    }

    #[test]
    fn unknown_or_bad_profiles_are_errors() {
        let mut ctx = context();
        ctx.worker_profile = Some("gpu".into());
        let err = kubelet_config(&ctx).unwrap_err().to_string();
        assert!(
            err.starts_with("worker profile \"gpu\" is not defined"),
            "{err}"
        );
        ctx.config.spec.worker_profiles.push(WorkerProfile {
            name: "gpu".into(),
            values: [("kind".to_owned(), json!("Pod"))].into_iter().collect(),
        });
        let err = kubelet_config(&ctx).unwrap_err().to_string();
        assert!(
            err.starts_with("spec.workerProfiles[gpu].values.kind:"),
            "{err}"
        );
    }

    #[test]
    fn file_is_yaml_and_spec_waits_for_containerd() {
        let ctx = context();
        let files = Kubelet.files(&ctx).unwrap();
        let parsed: Value = serde_saphyr::from_str(&files[0].contents).unwrap();
        assert_eq!(parsed, kubelet_config(&ctx).unwrap());
        let spec = Kubelet.spec(&ctx).unwrap();
        assert_eq!(spec.depends_on, ["containerd"]);
        assert!(spec.args.contains(&"--node-ip=192.0.2.10".to_owned()));
        assert!(spec.args.contains(&"--hostname-override=node-a".to_owned()));
    }
}
