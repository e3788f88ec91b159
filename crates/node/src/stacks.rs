//! The system stacks: manifests k0x itself puts in `<data-dir>/manifests/<stack>/` on every
//! controller, for the applier to apply like any user stack (k0s's convention).
//!
//! Each stack is a YAML template compiled into k0x, with `{{NAME}}` placeholders filled from the
//! cluster configuration. The files are rewritten at every controller start, so a change of
//! `spec.network` or `spec.images` reaches the cluster with the next start and an upgrade of k0x
//! brings its new stacks; a hand edit of these files does not survive (a user who wants another
//! DNS server disables the stack and brings their own).

use std::path::PathBuf;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use k0x_config::pki_names;
use k0x_config::schema::NetworkProvider;

use crate::files::RenderedFile;
use crate::{NodeContext, NodeError};

/// CoreDNS behind the kube-dns Service at the cluster DNS address the kubelets use.
const COREDNS: &str = include_str!("../stacks/coredns.yaml");
/// metrics-server behind the `metrics.k8s.io` APIService, serving with a certificate from the
/// cluster CA (the APIService's caBundle) and verifying the kubelets with the same CA.
const METRICS_SERVER: &str = include_str!("../stacks/metrics-server.yaml");

/// What flannel may read with the nodes' credentials (all Nodes); written where flannel is the
/// network provider.
const FLANNEL: &str = include_str!("../stacks/flannel.yaml");

/// The system stacks' names; `--disable-components` takes them too (k0s's names), which keeps a
/// stack's file away so the applier prunes what it had created.
pub const SYSTEM_STACKS: &[&str] = &["coredns", "metrics-server"];
/// The stack of flannel's permissions, named like the component it serves.
const FLANNEL_STACK: &str = "flannel";

/// The stacks this controller does not write: the disabled ones, and flannel's where another
/// network provider runs.
fn left_out(ctx: &NodeContext, disabled: &[String]) -> Vec<String> {
    let mut out = disabled.to_vec();
    if ctx.config.spec.network.provider != NetworkProvider::Flannel {
        out.push(FLANNEL_STACK.to_owned());
    }
    out
}

/// The system stacks' files, rendered, except those left out (disabled, or flannel's under
/// another network provider).
pub fn system_stacks(
    ctx: &NodeContext,
    disabled: &[String],
) -> Result<Vec<RenderedFile>, NodeError> {
    let network = &ctx.config.spec.network;
    let dns_ip = network.dns_service_ip().to_string();
    let coredns = fill(
        COREDNS,
        &[
            ("CLUSTER_DOMAIN", &network.cluster_domain),
            ("DNS_IP", &dns_ip),
            ("IMAGE", &ctx.config.spec.images.coredns),
        ],
    );
    let pem = |path: PathBuf| {
        std::fs::read(&path)
            .map(|bytes| BASE64.encode(bytes))
            .map_err(|e| NodeError::ReadPki {
                path,
                reason: e.to_string(),
            })
    };
    let data = &ctx.data;
    let metrics_server = fill(
        METRICS_SERVER,
        &[
            ("IMAGE", &ctx.config.spec.images.metrics_server),
            ("TLS_CRT", &pem(data.pki_cert(pki_names::METRICS_SERVER))?),
            ("TLS_KEY", &pem(data.pki_key(pki_names::METRICS_SERVER))?),
            ("CA_BUNDLE", &pem(data.pki_cert(pki_names::CA))?),
        ],
    );
    let stacks = [
        ("coredns", coredns),
        ("metrics-server", metrics_server),
        (FLANNEL_STACK, FLANNEL.to_owned()),
    ];
    let left_out = left_out(ctx, disabled);
    Ok(stacks
        .into_iter()
        .filter(|(name, _)| !left_out.iter().any(|d| d == name))
        .map(|(name, contents)| RenderedFile::private(stack_file(ctx, name), contents))
        .collect())
}

/// The file k0x writes for system stack `stack`.
pub fn stack_file(ctx: &NodeContext, stack: &str) -> PathBuf {
    ctx.data
        .manifests()
        .join(stack)
        .join(format!("{stack}.yaml"))
}

/// Removes the files of the system stacks left out, so the applier prunes their objects.
pub fn remove_disabled(ctx: &NodeContext, disabled: &[String]) -> Result<(), NodeError> {
    let left_out = left_out(ctx, disabled);
    for stack in SYSTEM_STACKS
        .iter()
        .chain([&FLANNEL_STACK])
        .filter(|s| left_out.iter().any(|d| d == *s))
    {
        let path = stack_file(ctx, stack);
        match std::fs::remove_file(&path) {
            Err(err) if err.kind() != std::io::ErrorKind::NotFound => {
                return Err(NodeError::write(&path)(err));
            }
            _ => {}
        }
    }
    Ok(())
}

/// Replaces every `{{NAME}}` of `template` with its value.
fn fill(template: &str, values: &[(&str, &str)]) -> String {
    values
        .iter()
        .fold(template.to_owned(), |text, (name, value)| {
            text.replace(&format!("{{{{{name}}}}}"), value)
        })
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;
    use crate::test_support::context;

    fn documents(text: &str) -> Vec<Value> {
        text.split("\n---\n")
            .map(|doc| serde_saphyr::from_str(doc).unwrap())
            .collect()
    }

    /// A context whose data dir holds stand-ins for the PKI files the stacks embed.
    fn context_with_pki() -> (tempfile::TempDir, NodeContext) {
        let tmp = tempfile::tempdir().unwrap();
        let mut ctx = context();
        ctx.data = k0x_config::DataDir::new(tmp.path());
        let pki = ctx.data.pki();
        std::fs::create_dir_all(&pki).unwrap();
        for name in ["ca.crt", "metrics-server.crt", "metrics-server.key"] {
            std::fs::write(pki.join(name), format!("{name} PEM")).unwrap();
        }
        (tmp, ctx)
    }

    fn find<'a>(docs: &'a [Value], kind: &str) -> &'a Value {
        docs.iter().find(|d| d["kind"] == kind).unwrap()
    }

    #[test]
    fn coredns_serves_the_cluster_dns_address_with_k0xs_image() {
        let (_tmp, ctx) = context_with_pki();
        let files = system_stacks(&ctx, &[]).unwrap();
        assert!(files[0].path.ends_with("manifests/coredns/coredns.yaml"));
        assert!(!files[0].contents.contains("{{"), "a placeholder is left");
        let docs = documents(&files[0].contents);
        let service = find(&docs, "Service");
        assert_eq!(service["metadata"]["name"], "kube-dns");
        assert_eq!(service["spec"]["clusterIP"], "10.96.0.10");
        let deployment = find(&docs, "Deployment");
        let container = &deployment["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(container["image"], "k0x.io/coredns:1.12.4-k0x");
        assert_eq!(container["imagePullPolicy"], "Never");
        let corefile = find(&docs, "ConfigMap")["data"]["Corefile"]
            .as_str()
            .unwrap();
        assert!(corefile.contains("kubernetes cluster.local in-addr.arpa"));
    }

    #[test]
    fn metrics_server_ships_its_certificate_and_the_ca_bundle() {
        let (_tmp, ctx) = context_with_pki();
        let files = system_stacks(&ctx, &[]).unwrap();
        assert!(!files[1].contents.contains("{{"), "a placeholder is left");
        let docs = documents(&files[1].contents);
        let secret = find(&docs, "Secret");
        assert_eq!(
            secret["data"]["tls.crt"],
            BASE64.encode("metrics-server.crt PEM")
        );
        assert_eq!(
            secret["data"]["tls.key"],
            BASE64.encode("metrics-server.key PEM")
        );
        let api = find(&docs, "APIService");
        assert_eq!(api["spec"]["caBundle"], BASE64.encode("ca.crt PEM"));
        assert!(api["spec"].get("insecureSkipTLSVerify").is_none());
    }

    #[test]
    fn a_missing_certificate_is_named() {
        let mut ctx = context();
        ctx.data = k0x_config::DataDir::new("/nonexistent");
        let err = system_stacks(&ctx, &[]).unwrap_err().to_string();
        assert!(
            err.starts_with("cannot read /nonexistent/pki/metrics-server.crt"),
            "{err}"
        );
    }

    #[test]
    fn a_disabled_stack_is_not_written() {
        let (_tmp, ctx) = context_with_pki();
        let stacks = system_stacks(&ctx, &["coredns".into()]).unwrap();
        assert_eq!(stacks.len(), 2);
        assert!(
            stacks[0]
                .path
                .ends_with("metrics-server/metrics-server.yaml")
        );
    }

    #[test]
    fn flannel_s_permissions_go_with_flannel() {
        let (_tmp, mut ctx) = context_with_pki();
        let stacks = system_stacks(&ctx, &[]).unwrap();
        let docs = documents(&stacks[2].contents);
        let binding = find(&docs, "ClusterRoleBinding");
        assert_eq!(binding["subjects"][0]["name"], "system:nodes");
        ctx.config.spec.network.provider = NetworkProvider::Bridge;
        assert_eq!(system_stacks(&ctx, &[]).unwrap().len(), 2);
        let path = stack_file(&ctx, FLANNEL_STACK);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, FLANNEL).unwrap();
        remove_disabled(&ctx, &[]).unwrap();
        assert!(!path.exists());
    }

    #[test]
    fn a_changed_network_moves_the_dns_address() {
        let (_tmp, mut ctx) = context_with_pki();
        ctx.config.spec.network.service_cidr = "172.20.0.0/16".into();
        ctx.config.spec.network.cluster_domain = "k0x.lan".into();
        let docs = documents(&system_stacks(&ctx, &[]).unwrap()[0].contents);
        assert_eq!(find(&docs, "Service")["spec"]["clusterIP"], "172.20.0.10");
        let corefile = find(&docs, "ConfigMap")["data"]["Corefile"]
            .as_str()
            .unwrap();
        assert!(corefile.contains("kubernetes k0x.lan in-addr.arpa"));
    }
}
