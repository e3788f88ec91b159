//! The system stacks: manifests k0x itself puts in `<data-dir>/manifests/<stack>/` on every
//! controller, for the applier to apply like any user stack (k0s's convention).
//!
//! Each stack is a YAML template compiled into k0x, with `{{NAME}}` placeholders filled from the
//! cluster configuration. The files are rewritten at every controller start, so a change of
//! `spec.network` or `spec.images` reaches the cluster with the next start and an upgrade of k0x
//! brings its new stacks; a hand edit of these files does not survive (a user who wants another
//! DNS server disables the stack and brings their own).

use std::path::PathBuf;

use crate::files::RenderedFile;
use crate::{NodeContext, NodeError, net};

/// CoreDNS behind the kube-dns Service at the cluster DNS address the kubelets use.
const COREDNS: &str = include_str!("../stacks/coredns.yaml");

/// The system stacks' names; `--disable-components` takes them too (k0s's names), which keeps a
/// stack's file away so the applier prunes what it had created.
pub const SYSTEM_STACKS: &[&str] = &["coredns"];

/// The system stacks' files, rendered, except those of `disabled` stacks.
pub fn system_stacks(
    ctx: &NodeContext,
    disabled: &[String],
) -> Result<Vec<RenderedFile>, NodeError> {
    let network = &ctx.config.spec.network;
    let dns_ip = net::cluster_dns(&network.service_cidr)?.to_string();
    let coredns = fill(
        COREDNS,
        &[
            ("CLUSTER_DOMAIN", &network.cluster_domain),
            ("DNS_IP", &dns_ip),
            ("IMAGE", &ctx.config.spec.images.coredns),
        ],
    );
    let stacks = [("coredns", coredns)];
    Ok(stacks
        .into_iter()
        .filter(|(name, _)| !disabled.iter().any(|d| d == name))
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

/// Removes the files of the disabled system stacks, so the applier prunes their objects.
pub fn remove_disabled(ctx: &NodeContext, disabled: &[String]) -> Result<(), NodeError> {
    for stack in SYSTEM_STACKS
        .iter()
        .filter(|s| disabled.iter().any(|d| d == *s))
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

    fn find<'a>(docs: &'a [Value], kind: &str) -> &'a Value {
        docs.iter().find(|d| d["kind"] == kind).unwrap()
    }

    #[test]
    fn coredns_serves_the_cluster_dns_address_with_k0xs_image() {
        let ctx = context();
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
    fn a_disabled_stack_is_not_written() {
        let ctx = context();
        assert!(system_stacks(&ctx, &["coredns".into()]).unwrap().is_empty());
    }

    #[test]
    fn a_changed_network_moves_the_dns_address() {
        let mut ctx = context();
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
