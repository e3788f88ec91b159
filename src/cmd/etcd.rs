//! `k0x etcd member-list|leave`: the etcd cluster of the controllers, seen and changed through
//! the local etcd with k0x's own etcd client certificate.

use clap::{Args, Subcommand};
use k0x_etcd::members::{self, Retry};
use k0x_etcd::{Client, Member};
use serde::Serialize;

use crate::cli::{GlobalArgs, OutputFormat, block_on};
use crate::node::etcd_client;

#[derive(Debug, Args)]
pub struct EtcdArgs {
    #[command(flatten)]
    endpoint: EndpointArg,
    #[command(subcommand)]
    command: EtcdCommand,
}

/// `--endpoint` of `k0x etcd` and `k0x node`: the etcd they talk to.
#[derive(Debug, Args)]
pub struct EndpointArg {
    /// Client URL of the local etcd member; by default loopback on spec.storage.etcd.clientPort
    /// of the configuration.
    #[arg(long, global = true, value_name = "URL")]
    endpoint: Option<String>,
}

impl EndpointArg {
    /// k0x's etcd client of the member at `--endpoint`, or of the local member as configured.
    pub fn client(&self, global: &GlobalArgs) -> anyhow::Result<Client> {
        etcd_client(&global.data_dir(), &self.url(global)?)
    }

    fn url(&self, global: &GlobalArgs) -> anyhow::Result<String> {
        match &self.endpoint {
            Some(url) => Ok(url.clone()),
            None => Ok(k0x_node::etcd_client_url(&global.load_config()?)),
        }
    }
}

#[derive(Debug, Subcommand)]
enum EtcdCommand {
    /// List the etcd members (voting and learners).
    MemberList {
        /// Output format.
        #[arg(short, long, value_enum, default_value_t)]
        output: OutputFormat,
    },
    /// Remove a member from the etcd cluster: this controller's own (the one answering on
    /// --endpoint) unless --peer-url names another. Stop the controller afterwards.
    Leave {
        /// Peer URL of the member to remove (`https://addr:2380`).
        #[arg(long)]
        peer_url: Option<String>,
    },
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct MemberView {
    id: String,
    name: String,
    peer_urls: Vec<String>,
    client_urls: Vec<String>,
    is_learner: bool,
}

impl From<&Member> for MemberView {
    fn from(member: &Member) -> Self {
        Self {
            id: format!("{:x}", member.id),
            name: member.name.clone(),
            peer_urls: member.peer_urls.clone(),
            client_urls: member.client_urls.clone(),
            is_learner: member.is_learner,
        }
    }
}

pub fn run(global: &GlobalArgs, args: &EtcdArgs) -> anyhow::Result<()> {
    let client = args.endpoint.client(global)?;
    block_on(async {
        match &args.command {
            EtcdCommand::MemberList { output } => member_list(&client, *output).await,
            EtcdCommand::Leave { peer_url } => leave(&client, peer_url.as_deref()).await,
        }
    })?
}

#[allow(clippy::print_stdout)]
async fn member_list(client: &Client, output: OutputFormat) -> anyhow::Result<()> {
    let members = client.member_list().await?;
    let views: Vec<MemberView> = members.iter().map(MemberView::from).collect();
    match output.structured(&views)? {
        Some(text) => print!("{text}"),
        None => {
            println!("{:<17} {:<20} {:<8} PEER URLS", "ID", "NAME", "ROLE");
            for member in &views {
                let role = if member.is_learner {
                    "learner"
                } else {
                    "voter"
                };
                let name = if member.name.is_empty() {
                    "(not started)"
                } else {
                    &member.name
                };
                println!(
                    "{:<17} {:<20} {:<8} {}",
                    member.id,
                    name,
                    role,
                    member.peer_urls.join(",")
                );
            }
        }
    }
    Ok(())
}

#[allow(clippy::print_stdout)]
async fn leave(client: &Client, peer_url: Option<&str>) -> anyhow::Result<()> {
    let members = client.member_list().await?;
    let target = match peer_url {
        Some(url) => members
            .iter()
            .find(|m| m.peer_urls.iter().any(|u| u == url))
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "--peer-url {url}: no etcd member has this peer URL; see `k0x etcd member-list`"
                )
            })?,
        None => {
            let own = client.status().await?.member_id;
            members
                .iter()
                .find(|m| m.id == own)
                .ok_or_else(|| anyhow::anyhow!("the local etcd member is not in the member list"))?
        }
    };
    let voters = members.iter().filter(|m| !m.is_learner).count();
    if !target.is_learner && voters <= 1 {
        anyhow::bail!(
            "etcd member {} is the only voting member: removing it would destroy the cluster; add another controller first",
            target.name
        );
    }
    members::remove_member(client, target.id, Retry::default()).await?;
    println!("removed etcd member {} ({:x})", target.name, target.id);
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use crate::cli::Cli;
    use crate::cmd::Command;

    fn endpoint(args: &[&str]) -> String {
        let cli = Cli::try_parse_from(args).unwrap();
        let Command::Etcd(etcd) = &cli.command else {
            panic!("not k0x etcd: {args:?}");
        };
        etcd.endpoint.url(&cli.global).unwrap()
    }

    #[test]
    fn the_default_endpoint_follows_the_configured_client_port() {
        let tmp = tempfile::tempdir().unwrap();
        let config = tmp.path().join("k0x.yaml");
        std::fs::write(
            &config,
            "apiVersion: k0x.io/v1beta1\nkind: ClusterConfig\nspec:\n  storage:\n    etcd:\n      clientPort: 12379\n",
        )
        .unwrap();
        let config = config.to_str().unwrap();
        let url = endpoint(&["k0x", "--config", config, "etcd", "member-list"]);
        assert_eq!(url, "https://127.0.0.1:12379");
        let url = endpoint(&[
            "k0x",
            "-c",
            config,
            "etcd",
            "member-list",
            "--endpoint",
            "https://[::1]:2379",
        ]);
        assert_eq!(url, "https://[::1]:2379");
    }
}
