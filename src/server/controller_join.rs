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
    let request = k0x_pki::PkiRequest::from_config(config);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(data: &DataDir) -> NodeFacts {
        NodeFacts {
            name: "ctl-2".into(),
            address: "127.0.0.1".parse().unwrap(),
            bin_dir: data.bin(),
            cni_bin_dir: data.bin(),
            cgroup_driver: k0x_node::CgroupDriver::Cgroupfs,
            swap_enabled: false,
            oom_score_lowerable: true,
            resolv_conf: "/etc/resolv.conf".into(),
        }
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    /// A token naming a join API that does not exist: any attempt to use it fails.
    fn unusable_token() -> Token {
        Token::generate(
            k0x_join::Role::Controller,
            vec!["https://127.0.0.1:1".into()],
            "00".repeat(32),
        )
    }

    #[test]
    fn a_restarted_member_ignores_its_token() {
        let dir = tempfile::tempdir().unwrap();
        let data = DataDir::new(dir.path().join("data"));
        std::fs::create_dir_all(data.etcd().join("member")).unwrap();
        let run = RunDir::new(dir.path().join("run"));
        let (membership, promotion) = ensure_pki_and_membership(
            &ClusterConfig::default(),
            &data,
            &run,
            &facts(&data),
            Some(unusable_token()),
            &runtime(),
        )
        .unwrap();
        assert_eq!(membership, EtcdMembership::New);
        assert!(promotion.is_none());
        assert!(data.pki_cert(k0x_config::pki_names::ETCD_SERVER).is_file());
    }

    #[test]
    fn a_first_start_joins_with_its_token_and_writes_nothing_when_that_fails() {
        let dir = tempfile::tempdir().unwrap();
        let data = DataDir::new(dir.path().join("data"));
        let run = RunDir::new(dir.path().join("run"));
        let err = ensure_pki_and_membership(
            &ClusterConfig::default(),
            &data,
            &run,
            &facts(&data),
            Some(unusable_token()),
            &runtime(),
        )
        .unwrap_err();
        assert!(
            format!("{err:#}").contains("joining the cluster as a controller failed"),
            "{err:#}"
        );
        assert!(!data.pki().exists(), "no PKI of a cluster of its own");
    }
}
