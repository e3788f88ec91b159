//! `k0x node forget NAME`: lets a reinstalled host join again under its old name.
//!
//! The join store binds a node name to the kubelet key that first joined with it, so that no
//! other machine can take over a node (its pods, its secrets) by joining under its name. A
//! reinstalled host has a new key and is refused until the admin forgets the old one: this drops
//! the name's record from the join store (in etcd, through the local etcd as `k0x etcd` does) and
//! deletes the Node object when the Kubernetes API answers, so nothing of the old host remains
//! bound to the name.

use clap::{Args, Subcommand};
use k0x_join::NodeRegistry;
use k0x_manifests::{ApiClient, segment};

use crate::cli::{GlobalArgs, block_on};
use crate::cmd::etcd::EndpointArg;

#[derive(Debug, Args)]
pub struct NodeArgs {
    #[command(flatten)]
    endpoint: EndpointArg,
    #[command(subcommand)]
    command: NodeCommand,
}

#[derive(Debug, Subcommand)]
enum NodeCommand {
    /// Forget a worker so that a reinstalled host can join again under its name: removes the
    /// name's record from the join store (the key it joined with) and deletes its Node object
    /// from Kubernetes. Run it on a controller, after the old host is gone; then join the new
    /// host with a worker token. Controllers are refused: `k0x etcd leave` removes those.
    Forget {
        /// The node name (as `k0x kubectl get nodes` shows it).
        name: String,
    },
}

pub fn run(global: &GlobalArgs, args: &NodeArgs) -> anyhow::Result<()> {
    match &args.command {
        NodeCommand::Forget { name } => block_on(forget(global, &args.endpoint, name))?,
    }
}

/// What became of a node's Kubernetes object.
#[derive(Debug, Clone, PartialEq, Eq)]
enum NodeObject {
    Deleted,
    Absent,
    /// The apiserver did not answer, or refused: why.
    Unknown(String),
}

#[allow(clippy::print_stdout)]
async fn forget(global: &GlobalArgs, endpoint: &EndpointArg, name: &str) -> anyhow::Result<()> {
    anyhow::ensure!(
        k0x_config::is_node_name(name),
        "{name:?} is not a node name: see `k0x kubectl get nodes` for the names"
    );
    let etcd = endpoint.client(global)?;
    let members = etcd.member_list().await?;
    if let Some(member) = members.iter().find(|m| m.name == name) {
        anyhow::bail!(
            "{name} is a controller (etcd member {:x}): `k0x node forget` forgets workers; remove \
             a controller with `k0x etcd leave` on it, or `k0x etcd leave --peer-url {}` on \
             another controller",
            member.id,
            member.peer_urls.first().map_or("URL", String::as_str)
        );
    }
    let forgotten = NodeRegistry::new(etcd).forget(name).await?;
    let object = delete_node_object(global, name).await;
    for line in report(name, forgotten, &object)? {
        println!("{line}");
    }
    Ok(())
}

/// Deletes the Node `name` through the apiserver of the admin kubeconfig.
async fn delete_node_object(global: &GlobalArgs, name: &str) -> NodeObject {
    let data = global.data_dir();
    let client = k0x_pki::admin_kubeconfig(&data)
        .and_then(|text| k0x_pki::Kubeconfig::parse(&data.admin_kubeconfig(), &text))
        .map_err(|e| e.to_string())
        .and_then(|kubeconfig| {
            ApiClient::as_admin(&data, &kubeconfig.server).map_err(|e| e.to_string())
        });
    let client = match client {
        Ok(client) => client,
        Err(why) => return NodeObject::Unknown(why),
    };
    let path = format!("/api/v1/nodes/{}", segment(name));
    match client.get(&path).await {
        Err(err) if err.is_not_found() => return NodeObject::Absent,
        Err(err) => return NodeObject::Unknown(err.to_string()),
        Ok(_) => {}
    }
    match client.delete(&path, &serde_json::json!({})).await {
        Ok(()) => NodeObject::Deleted,
        Err(err) => NodeObject::Unknown(err.to_string()),
    }
}

/// The lines saying what was done, or the one line saying the name is unknown.
fn report(name: &str, forgotten: bool, object: &NodeObject) -> anyhow::Result<Vec<String>> {
    let mut lines = Vec::new();
    if forgotten {
        lines.push(format!(
            "forgot node {name} in the join store: a host may join under this name again"
        ));
    }
    match object {
        NodeObject::Deleted => lines.push(format!("deleted Node {name} from Kubernetes")),
        NodeObject::Absent if forgotten => {
            lines.push(format!("Kubernetes has no Node {name}: nothing to delete"));
        }
        NodeObject::Absent => anyhow::bail!(
            "no node {name}: the join store has no record of it and Kubernetes no Node; see \
             `k0x kubectl get nodes`"
        ),
        NodeObject::Unknown(why) if forgotten => lines.push(format!(
            "Node {name} not deleted: {why}; delete it later with `k0x kubectl delete node {name}`"
        )),
        NodeObject::Unknown(why) => anyhow::bail!(
            "no node {name} in the join store, and no answer about its Node: {why}; check the \
             name with `k0x kubectl get nodes`"
        ),
    }
    Ok(lines)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_forgotten_node_is_reported_with_its_object() {
        let lines = report("wrk-1", true, &NodeObject::Deleted).unwrap();
        assert_eq!(
            lines,
            [
                "forgot node wrk-1 in the join store: a host may join under this name again",
                "deleted Node wrk-1 from Kubernetes"
            ]
        );
        let lines = report("wrk-1", true, &NodeObject::Absent).unwrap();
        assert_eq!(lines[1], "Kubernetes has no Node wrk-1: nothing to delete");
        let lines = report("wrk-1", true, &NodeObject::Unknown("refused".into())).unwrap();
        assert!(
            lines[1].contains("`k0x kubectl delete node wrk-1`"),
            "{lines:?}"
        );
    }

    #[test]
    fn a_node_only_kubernetes_knows_is_deleted() {
        let lines = report("wrk-1", false, &NodeObject::Deleted).unwrap();
        assert_eq!(lines, ["deleted Node wrk-1 from Kubernetes"]);
    }

    #[test]
    fn an_unknown_name_is_an_error() {
        let err = report("wrk-9", false, &NodeObject::Absent).unwrap_err();
        assert!(err.to_string().starts_with("no node wrk-9: "), "{err}");
        let err = report("wrk-9", false, &NodeObject::Unknown("down".into())).unwrap_err();
        assert!(err.to_string().contains("its Node: down; "), "{err}");
    }
}
