//! Growing the etcd cluster safely: new controllers join as learners and are promoted once they
//! have caught up, so a slow or broken newcomer never costs the cluster its quorum.

use std::time::Duration;

use crate::client::{Client, EtcdError, Member};

/// A learner added to the cluster, and what it must be started with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LearnerAdded {
    pub member_id: u64,
    /// `--initial-cluster` for the new member (`name=peerURL,...`, the new member included).
    pub initial_cluster: String,
}

/// How often and how patiently a membership change is retried while etcd is not ready for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retry {
    pub attempts: u32,
    pub interval: Duration,
}

impl Default for Retry {
    /// One minute: etcd refuses changes for about five seconds after each membership change.
    fn default() -> Self {
        Self {
            attempts: 120,
            interval: Duration::from_millis(500),
        }
    }
}

impl Retry {
    /// Runs `change` until it succeeds, fails with an error that waiting cannot cure, or the
    /// attempts are used up.
    async fn run<T, F, Fut>(self, what: &str, mut change: F) -> Result<T, EtcdError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, EtcdError>>,
    {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match change().await {
                Err(err) if attempt < self.attempts && is_not_ready(&err) => {
                    tracing::debug!(attempt, %err, "etcd not ready for {what}, retrying");
                    tokio::time::sleep(self.interval).await;
                }
                other => return other,
            }
        }
    }
}

/// Adds `name` with `peer_url` as a learner, retrying while etcd is settling from an earlier
/// change. The new member must then be started with `--initial-cluster-state existing` and the
/// returned `--initial-cluster`.
///
/// If a learner with this peer URL was added but never started (a retried join, or a node that
/// stopped before its etcd ran), it is reused instead. A member that has run is refused: the
/// leader remembers how far its log went, and an etcd started again under its id with no data
/// panics on the first heartbeat.
pub async fn add_learner(
    client: &Client,
    name: &str,
    peer_url: &str,
    retry: Retry,
) -> Result<LearnerAdded, EtcdError> {
    retry
        .run("member add", || add_learner_once(client, name, peer_url))
        .await
}

async fn add_learner_once(
    client: &Client,
    name: &str,
    peer_url: &str,
) -> Result<LearnerAdded, EtcdError> {
    let existing = client.member_list().await?;
    if let Some(found) = existing
        .iter()
        .find(|m| m.peer_urls.iter().any(|u| u == peer_url))
    {
        if !found.is_learner || !found.name.is_empty() {
            return Err(EtcdError::MemberRan {
                id: found.id,
                peer_url: peer_url.to_owned(),
            });
        }
        tracing::info!(
            name,
            peer_url,
            member_id = found.id,
            "etcd learner added before, never started"
        );
        return Ok(LearnerAdded {
            member_id: found.id,
            initial_cluster: initial_cluster(&existing, found.id, name),
        });
    }
    let (added, members) = client.member_add(&[peer_url.to_string()], true).await?;
    tracing::info!(name, peer_url, member_id = added.id, "etcd learner added");
    Ok(LearnerAdded {
        member_id: added.id,
        initial_cluster: initial_cluster(&members, added.id, name),
    })
}

/// The `--initial-cluster` string: every peer URL of every member, the new one under `new_name`.
/// Members that have not started yet have no name; etcd accepts them listed with an empty one.
pub fn initial_cluster(members: &[Member], new_id: u64, new_name: &str) -> String {
    members
        .iter()
        .flat_map(|m| {
            let name = if m.id == new_id { new_name } else { &m.name };
            m.peer_urls.iter().map(move |url| format!("{name}={url}"))
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// Promotes learner `member_id`, retrying while etcd says it has not caught up with the leader
/// yet. Promoting a member that already votes succeeds at once.
pub async fn promote_when_caught_up(
    client: &Client,
    member_id: u64,
    retry: Retry,
) -> Result<(), EtcdError> {
    let promoted = retry
        .run("member promote", || client.member_promote(member_id))
        .await;
    match promoted {
        Ok(_) => {
            tracing::info!(member_id, "etcd learner promoted");
            Ok(())
        }
        Err(err) if is_not_a_learner(&err) => Ok(()),
        Err(err) => Err(err),
    }
}

/// Removes `member_id`, retrying while etcd is settling from an earlier change.
pub async fn remove_member(client: &Client, member_id: u64, retry: Retry) -> Result<(), EtcdError> {
    retry
        .run("member remove", || client.member_remove(member_id))
        .await
        .map(drop)
}

/// True for errors that waiting may cure: the learner lags or has not started, etcd settles
/// after a membership change, or a member is briefly unreachable.
pub fn is_not_ready(err: &EtcdError) -> bool {
    match err {
        EtcdError::Unreachable(_) => true,
        other => other.server_message().is_some_and(|m| {
            [
                "in sync with leader",
                "unhealthy cluster",
                "not ready",
                "not started",
                "leader changed",
                "timed out",
            ]
            .iter()
            .any(|needle| m.contains(needle))
        }),
    }
}

/// True when etcd refused a learner because another one has not been promoted yet (it takes
/// one at a time).
pub fn is_another_learner(err: &EtcdError) -> bool {
    err.server_message()
        .is_some_and(|m| m.contains("too many learner members"))
}

fn is_not_a_learner(err: &EtcdError) -> bool {
    err.server_message()
        .is_some_and(|m| m.contains("can only promote a learner member"))
        && !is_not_ready(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(id: u64, name: &str, url: &str) -> Member {
        Member {
            id,
            name: name.into(),
            peer_urls: vec![url.into()],
            client_urls: vec![],
            is_learner: false,
        }
    }

    #[test]
    fn initial_cluster_names_the_new_member() {
        let members = [
            member(1, "c1", "https://10.0.0.1:2380"),
            member(2, "", "https://10.0.0.2:2380"),
        ];
        assert_eq!(
            initial_cluster(&members, 2, "c2"),
            "c1=https://10.0.0.1:2380,c2=https://10.0.0.2:2380"
        );
    }
}
