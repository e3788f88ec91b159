//! A controller's first start with a controller token: take the cluster's CAs, make this node's
//! own leaf certificates from them, enter etcd as a learner, and become a voter once caught up.
//!
//! Whether this is a first start is decided by etcd's own data: once `etcd/member` exists, the
//! node is a member and etcd restarts from its data (it then ignores the initial-cluster flags), so
//! a restarted controller needs no token, exactly like a restarted worker.

use std::time::Duration;

use anyhow::Context;
use k0x_config::{ClusterConfig, DataDir, RunDir};
use k0x_join::{JoinClient, Token, material};
use k0x_node::{EtcdMembership, NodeContext, NodeFacts};

/// How many times the promotion is asked for while the learner catches up. Each refused request
/// already waits about five seconds on the controller, so this covers several minutes of catch-up.
const PROMOTE_ATTEMPTS: u32 = 60;
/// How many times a promotion that failed for another reason than the learner lagging (a
/// controller briefly unreachable, an etcd leader election) is started again.
const PROMOTE_ROUNDS: u32 = 5;

/// A learner that must be promoted once its etcd runs.
#[derive(Debug)]
pub struct Promotion {
    client: JoinClient,
    member_id: u64,
}

/// Prepares the PKI and the etcd membership of a controller: joins the cluster with `token` when
/// this data dir holds no etcd member yet, otherwise keeps what is there. Returns how etcd enters
/// the cluster and the promotion still to do.
pub fn ensure_pki_and_membership(
    config: &ClusterConfig,
    data: &DataDir,
    run: &RunDir,
    facts: &NodeFacts,
    token: Option<Token>,
    runtime: &tokio::runtime::Runtime,
) -> anyhow::Result<(EtcdMembership, Option<Promotion>)> {
    let member_data = data.etcd().join("member");
    let token = match token {
        Some(_) if member_data.is_dir() => {
            tracing::info!(
                "{} already holds an etcd member: restarting it, the token is not used",
                member_data.display()
            );
            None
        }
        token => token,
    };
    let client = match token {
        Some(token) => {
            let client = JoinClient::new(token);
            let join = runtime
                .block_on(client.join_controller())
                .context("joining the cluster as a controller failed")?;
            material::write_controller_files(data, &join).with_context(|| {
                format!("cannot store the cluster's CAs in {}", data.pki().display())
            })?;
            Some(client)
        }
        None => None,
    };
    ensure_pki(config, data)?;
    let Some(client) = client else {
        return Ok((EtcdMembership::New, None));
    };
    let ctx = NodeContext::new(config.clone(), data.clone(), run.clone(), facts.clone());
    let peer_url = k0x_node::etcd_peer_url(&ctx)?;
    let added = runtime
        .block_on(client.add_etcd_member(&facts.name, &peer_url))
        .context("the cluster did not add this controller to etcd")?;
    tracing::info!(
        member_id = added.member_id,
        %peer_url,
        "joined the cluster; etcd starts as a learner"
    );
    let membership = EtcdMembership::Join {
        initial_cluster: added.initial_cluster,
    };
    let promotion = Promotion {
        client,
        member_id: added.member_id,
    };
    Ok((membership, Some(promotion)))
}

/// Issues this node's leaf certificates (from the cluster's CAs after a join).
fn ensure_pki(config: &ClusterConfig, data: &DataDir) -> anyhow::Result<()> {
    let request = k0x_pki::PkiRequest::from_config(config)?;
    let report = k0x_pki::ensure_pki(data, &request)?;
    tracing::info!(
        changed = !report.unchanged(),
        "PKI ready in {}",
        data.pki().display()
    );
    Ok(())
}

impl Promotion {
    /// Asks the cluster to promote this learner until it has caught up. Runs beside the
    /// supervisor: a learner serves no linearizable reads, so components that need them (the
    /// apiserver, k0x's token store) become ready only after this.
    ///
    /// Transient failures (a controller briefly unreachable, an etcd leader election) are
    /// retried a bounded number of times; a refusal of the token is final.
    pub async fn run(self) {
        let mut round = 0;
        loop {
            round += 1;
            // The learner's etcd is being started; give it a moment before each round.
            tokio::time::sleep(Duration::from_secs(1)).await;
            let result = self
                .client
                .promote_etcd_member(self.member_id, PROMOTE_ATTEMPTS)
                .await;
            let err = match result {
                Ok(()) => {
                    tracing::info!(member_id = self.member_id, "etcd member promoted to voter");
                    return;
                }
                Err(err) => err,
            };
            let refused = err.status().is_some_and(|status| {
                (400..500).contains(&status) && status != 409 && status != 429
            });
            if refused || round >= PROMOTE_ROUNDS {
                tracing::error!(
                    member_id = self.member_id,
                    %err,
                    "this controller's etcd is still a learner: check its etcd log, then run \
                     `etcdctl member promote` with this member id against another controller"
                );
                return;
            }
            tracing::warn!(member_id = self.member_id, %err, "etcd promotion failed, retrying");
        }
    }
}
