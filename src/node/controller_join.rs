//! A controller's first start with a controller token: take the cluster's CAs, make this node's
//! own leaf certificates from them, enter etcd as a learner, and become a voter once caught up.
//!
//! Whether this is a first start is decided by etcd's own data: once `etcd/member/wal` holds a
//! write-ahead log, the node is a member and etcd restarts from its data (it then ignores the
//! initial-cluster flags), so a restarted controller needs no token, exactly like a restarted
//! worker.
//!
//! A controller can stop between its learner-add and its promotion. Two cases:
//! - its etcd stored data: it restarts as the learner it was, and asks for its promotion again
//!   with the token of this start, if there is one (a learner serves no linearizable reads, so
//!   it cannot vouch for itself);
//! - its etcd never stored data: etcd can only start as that member with the member's id and
//!   the cluster's current `--initial-cluster`, which only a voter knows. With a token the join
//!   runs again and the cluster hands back the member already added under this peer URL. Without
//!   one the start is refused: a new cluster here would split the old one. A record written at
//!   the learner-add (`etc/etcd-learner.json`, dropped once the member votes) is what tells this
//!   case from a first controller's first start.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use k0x_config::{ClusterConfig, DataDir, RunDir, fsutil};
use k0x_join::{JoinClient, Token, material};
use k0x_node::{EtcdMembership, NodeContext, NodeFacts};
use serde::{Deserialize, Serialize};

/// How many times the promotion is asked for while the learner catches up. Each refused request
/// already waits about five seconds on the controller, so this covers several minutes of catch-up.
const PROMOTE_ATTEMPTS: u32 = 60;
/// How many times a promotion that failed for another reason than the learner lagging (a
/// controller briefly unreachable, an etcd leader election) is started again.
const PROMOTE_ROUNDS: u32 = 5;
/// How long a restarted controller waits for its own etcd to answer before it gives up on
/// finding out whether it is still a learner.
const LOCAL_STATUS_WAIT: Duration = Duration::from_secs(120);

/// What a controller's start does about its etcd membership.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Start {
    /// etcd restarts from its write-ahead log as the member it was.
    Restart,
    /// Join the cluster with the token.
    Join,
    /// Added as a learner, but its etcd stored no data and there is no token to join again with.
    NeedToken,
    /// The first controller of a new cluster.
    New,
}

/// What a controller finds at its start that decides its [`Start`].
#[derive(Debug, Clone, Copy)]
struct Found {
    /// Its etcd data dir holds a write-ahead log.
    wal: bool,
    /// A record says it was added to the cluster as a learner.
    learner_record: bool,
    /// It was given a controller token.
    token: bool,
}

impl Found {
    fn start(self) -> Start {
        match self {
            Found { wal: true, .. } => Start::Restart,
            Found { token: true, .. } => Start::Join,
            Found {
                learner_record: true,
                ..
            } => Start::NeedToken,
            Found { .. } => Start::New,
        }
    }
}

/// What a restarted controller does once its etcd answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Recovery {
    /// A voting member: nothing to do.
    Voter,
    /// Still a learner: ask for its promotion again.
    Promote(u64),
    /// Still a learner, and no token to ask with.
    NeedToken(u64),
}

fn recovery(status: &k0x_etcd::Status, has_token: bool) -> Recovery {
    match (status.is_learner, has_token) {
        (false, _) => Recovery::Voter,
        (true, true) => Recovery::Promote(status.member_id),
        (true, false) => Recovery::NeedToken(status.member_id),
    }
}

/// What the learner-add left in the data dir, until the member votes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct LearnerRecord {
    member_id: u64,
    peer_url: String,
}

fn learner_record_path(data: &DataDir) -> PathBuf {
    data.etc().join("etcd-learner.json")
}

fn read_learner_record(data: &DataDir) -> Option<LearnerRecord> {
    let text = std::fs::read(learner_record_path(data)).ok()?;
    serde_json::from_slice(&text).ok()
}

/// True once etcd has written its write-ahead log: from then on it restarts from its data.
fn has_wal(data: &DataDir) -> bool {
    std::fs::read_dir(data.etcd().join("member").join("wal")).is_ok_and(|entries| {
        entries
            .flatten()
            .any(|entry| entry.file_name().to_string_lossy().ends_with(".wal"))
    })
}

/// The promotion this start still has to see through.
#[derive(Debug)]
pub struct Promotion {
    /// `None`: no token on this start, so none can be asked for.
    client: Option<JoinClient>,
    /// The learner this start added; `None`: the local etcd tells whether it still is one.
    member_id: Option<u64>,
    local: k0x_etcd::Client,
    record: PathBuf,
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
    let learner = read_learner_record(data);
    let kind = Found {
        wal: has_wal(data),
        learner_record: learner.is_some(),
        token: token.is_some(),
    }
    .start();
    let ctx = NodeContext::new(config.clone(), data.clone(), run.clone(), facts.clone());
    match kind {
        Start::Restart => {
            if token.is_some() {
                tracing::info!(
                    "{} holds an etcd member: restarting it; the token is used only if it is \
                     still a learner",
                    data.etcd().display()
                );
            }
            ensure_pki(config, data)?;
            let promotion = Promotion::new(&ctx, token.map(JoinClient::new), None)?;
            Ok((EtcdMembership::New, Some(promotion)))
        }
        Start::Join => join(&ctx, token.expect("a join has a token"), runtime),
        Start::NeedToken => {
            let learner = learner.expect("a learner record");
            anyhow::bail!(
                "this controller was added to the cluster's etcd as learner {:x} ({}), but its \
                 etcd stopped before it stored any data; start it once with a controller token \
                 (`k0x token create --role controller` on another controller, then \
                 --token-file) to join again as that member",
                learner.member_id,
                learner.peer_url
            )
        }
        Start::New => {
            ensure_pki(config, data)?;
            Ok((EtcdMembership::New, None))
        }
    }
}

/// Joins the cluster with `token`: its CAs, this node's leaf certificates, a learner member.
fn join(
    ctx: &NodeContext,
    token: Token,
    runtime: &tokio::runtime::Runtime,
) -> anyhow::Result<(EtcdMembership, Option<Promotion>)> {
    let data = &ctx.data;
    let client = JoinClient::new(token);
    let join = runtime
        .block_on(super::join::while_unavailable(|| client.join_controller()))
        .context("joining the cluster as a controller failed")?;
    material::write_controller_files(data, &join)
        .with_context(|| format!("cannot store the cluster's CAs in {}", data.pki().display()))?;
    ensure_pki(&ctx.config, data)?;
    let peer_url = k0x_node::etcd_peer_url(ctx)?;
    let added = runtime
        .block_on(super::join::while_unavailable(|| {
            client.add_etcd_member(&ctx.node.name, &peer_url)
        }))
        .context("the cluster did not add this controller to etcd")?;
    tracing::info!(
        member_id = added.member_id,
        %peer_url,
        "joined the cluster; etcd starts as a learner"
    );
    write_learner_record(data, added.member_id, &peer_url)?;
    // A member dir without a write-ahead log holds nothing etcd can restart from: it starts
    // again from the cluster, as the member the cluster handed back.
    let member_dir = data.etcd().join("member");
    if member_dir.exists() {
        std::fs::remove_dir_all(&member_dir)
            .with_context(|| format!("cannot remove {}", member_dir.display()))?;
    }
    let membership = EtcdMembership::Join {
        initial_cluster: added.initial_cluster,
    };
    let promotion = Promotion::new(ctx, Some(client), Some(added.member_id))?;
    Ok((membership, Some(promotion)))
}

fn write_learner_record(data: &DataDir, member_id: u64, peer_url: &str) -> anyhow::Result<()> {
    let record = LearnerRecord {
        member_id,
        peer_url: peer_url.to_owned(),
    };
    let path = learner_record_path(data);
    let json = serde_json::to_vec(&record).expect("the record serializes");
    fsutil::write_atomic(&path, &json, 0o644)
        .with_context(|| format!("cannot write {}", path.display()))
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
    fn new(
        ctx: &NodeContext,
        client: Option<JoinClient>,
        member_id: Option<u64>,
    ) -> anyhow::Result<Self> {
        Ok(Self {
            client,
            member_id,
            local: super::join::etcd_client(&ctx.data, &k0x_node::etcd_client_url(&ctx.config))?,
            record: learner_record_path(&ctx.data),
        })
    }

    /// Sees this controller's etcd member through to a voter. Runs beside the supervisor: a
    /// learner serves no linearizable reads, so components that need them (the apiserver, k0x's
    /// token store) become ready only after this.
    pub async fn run(self) {
        let member_id = match self.member_id {
            Some(id) => id,
            None => match self.local_recovery().await {
                Some(Recovery::Voter) => return self.done(),
                Some(Recovery::Promote(id)) => {
                    tracing::warn!(
                        member_id = id,
                        "this controller's etcd is still a learner: asking for its promotion again"
                    );
                    id
                }
                Some(Recovery::NeedToken(id)) => {
                    return tracing::error!(
                        member_id = id,
                        "this controller's etcd is still a learner and this start has no token \
                         to ask for its promotion with: create a controller token on another \
                         controller and restart this one with --token-file"
                    );
                }
                None => return,
            },
        };
        if let Some(client) = &self.client
            && self.promote(client, member_id).await
        {
            self.done();
        }
    }

    /// Whether the local etcd, once it answers, is still a learner.
    async fn local_recovery(&self) -> Option<Recovery> {
        let deadline = tokio::time::Instant::now() + LOCAL_STATUS_WAIT;
        loop {
            match self.local.status().await {
                Ok(status) => return Some(recovery(&status, self.client.is_some())),
                Err(err) if tokio::time::Instant::now() >= deadline => {
                    tracing::warn!(%err, "cannot tell whether this controller's etcd is a learner");
                    return None;
                }
                Err(_) => tokio::time::sleep(Duration::from_secs(1)).await,
            }
        }
    }

    /// Asks the cluster to promote learner `member_id` until it has caught up; true once it votes.
    ///
    /// Transient failures (a controller briefly unreachable, an etcd leader election) are
    /// retried a bounded number of times; a refusal of the token is final.
    async fn promote(&self, client: &JoinClient, member_id: u64) -> bool {
        let mut round = 0;
        loop {
            round += 1;
            // The learner's etcd is being started; give it a moment before each round.
            tokio::time::sleep(Duration::from_secs(1)).await;
            let err = match client
                .promote_etcd_member(member_id, PROMOTE_ATTEMPTS)
                .await
            {
                Ok(()) => {
                    tracing::info!(member_id, "etcd member promoted to voter");
                    return true;
                }
                Err(err) => err,
            };
            let refused = err.status().is_some_and(|status| {
                (400..500).contains(&status) && status != 409 && status != 429
            });
            if refused || round >= PROMOTE_ROUNDS {
                tracing::error!(
                    member_id,
                    %err,
                    "this controller's etcd is still a learner: check its etcd log, then restart \
                     it with a new controller token (--token-file) to ask again"
                );
                return false;
            }
            tracing::warn!(member_id, %err, "etcd promotion failed, retrying");
        }
    }

    /// The member votes: the learner record has served.
    fn done(&self) {
        if let Err(err) = std::fs::remove_file(&self.record)
            && err.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(%err, "cannot remove {}", self.record.display());
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

    /// A paused clock: a join API that never answers is retried for minutes of its time only.
    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .unwrap()
    }

    /// A token naming a join API that does not exist: any attempt to use it fails.
    fn unusable_token() -> Token {
        Token::generate(
            k0x_join::TokenRole::Controller,
            vec!["https://127.0.0.1:1".into()],
            "00".repeat(32),
        )
    }

    #[test]
    fn a_restarted_member_keeps_its_token_for_a_promotion() {
        let dir = tempfile::tempdir().unwrap();
        let data = DataDir::new(dir.path().join("data"));
        let wal = data.etcd().join("member").join("wal");
        std::fs::create_dir_all(&wal).unwrap();
        std::fs::write(wal.join("0000000000000000-0000000000000000.wal"), b"").unwrap();
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
        let promotion = promotion.expect("a restart checks whether it is a learner");
        assert!(promotion.client.is_some() && promotion.member_id.is_none());
        assert!(data.pki_cert(k0x_config::pki_names::ETCD_SERVER).is_file());
    }

    #[test]
    fn a_learner_without_data_and_token_is_refused_not_started_anew() {
        let dir = tempfile::tempdir().unwrap();
        let data = DataDir::new(dir.path().join("data"));
        std::fs::create_dir_all(data.etcd().join("member")).unwrap();
        write_learner_record(&data, 0xabc, "https://10.0.0.2:2380").unwrap();
        let run = RunDir::new(dir.path().join("run"));
        let err = ensure_pki_and_membership(
            &ClusterConfig::default(),
            &data,
            &run,
            &facts(&data),
            None,
            &runtime(),
        )
        .unwrap_err();
        let line = err.to_string();
        assert!(
            line.contains("learner abc (https://10.0.0.2:2380)") && line.contains("--token-file"),
            "{line}"
        );
    }

    #[test]
    fn the_write_ahead_log_the_record_and_the_token_decide_the_start() {
        let start = |wal, learner_record, token| {
            Found {
                wal,
                learner_record,
                token,
            }
            .start()
        };
        assert_eq!(start(true, true, true), Start::Restart);
        assert_eq!(start(true, false, false), Start::Restart);
        assert_eq!(start(false, false, true), Start::Join);
        assert_eq!(start(false, true, true), Start::Join);
        assert_eq!(start(false, true, false), Start::NeedToken);
        assert_eq!(start(false, false, false), Start::New);
    }

    fn status(member_id: u64, is_learner: bool) -> k0x_etcd::Status {
        k0x_etcd::Status {
            member_id,
            cluster_id: 1,
            version: "3.6.0".into(),
            db_size: 0,
            leader: 2,
            raft_index: 0,
            raft_term: 0,
            is_learner,
            errors: Vec::new(),
        }
    }

    #[test]
    fn a_restarted_learner_asks_for_its_promotion_again() {
        assert_eq!(recovery(&status(7, true), true), Recovery::Promote(7));
        assert_eq!(recovery(&status(7, true), false), Recovery::NeedToken(7));
        assert_eq!(recovery(&status(7, false), true), Recovery::Voter);
        assert_eq!(recovery(&status(7, false), false), Recovery::Voter);
    }

    #[test]
    fn only_a_write_ahead_log_counts_as_member_data() {
        let dir = tempfile::tempdir().unwrap();
        let data = DataDir::new(dir.path());
        assert!(!has_wal(&data));
        let wal = data.etcd().join("member").join("wal");
        std::fs::create_dir_all(&wal).unwrap();
        std::fs::create_dir_all(data.etcd().join("member").join("snap")).unwrap();
        assert!(!has_wal(&data), "an empty member dir is no data");
        std::fs::write(wal.join("0000000000000000-0000000000000000.wal"), b"").unwrap();
        assert!(has_wal(&data));
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
