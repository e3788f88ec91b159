//! The client against a real etcd (Debian's etcd 3.4) with mutual TLS on loopback.

use std::sync::Arc;
use std::time::Duration;

use k0x_etcd::members::{self, Retry};
use k0x_etcd::testing::{TestEtcd, TestPki};
use k0x_etcd::{Client, ClientTls, EtcdError};

#[tokio::test]
async fn put_get_delete_and_prefixes() {
    let Some(etcd) = TestEtcd::start("put_get_delete_and_prefixes").await else {
        return;
    };
    let client = etcd.client();
    assert_eq!(client.get("/t/a").await.unwrap(), None);
    client.put("/t/a", b"one", 0).await.unwrap();
    client.put("/t/b", b"\x00\xffbinary", 0).await.unwrap();
    client.put("/u/c", b"other", 0).await.unwrap();

    let a = client.get("/t/a").await.unwrap().expect("key /t/a");
    assert_eq!(
        (a.key.as_slice(), a.value.as_slice()),
        (&b"/t/a"[..], &b"one"[..])
    );
    assert_eq!(a.version, 1);

    let listed = client.get_prefix("/t/").await.unwrap();
    let keys: Vec<_> = listed.iter().map(|kv| kv.key.clone()).collect();
    assert_eq!(keys, vec![b"/t/a".to_vec(), b"/t/b".to_vec()]);
    assert_eq!(listed[1].value, b"\x00\xffbinary");

    assert!(!client.put_if_absent("/t/a", b"two", 0).await.unwrap());
    assert!(client.put_if_absent("/t/new", b"n", 0).await.unwrap());
    let a = client.get("/t/a").await.unwrap().unwrap();
    assert_eq!(a.value, b"one");
    assert!(
        client
            .put_if_unchanged("/t/a", b"three", 0, a.mod_revision)
            .await
            .unwrap()
    );
    assert!(
        !client
            .put_if_unchanged("/t/a", b"lost", 0, a.mod_revision)
            .await
            .unwrap()
    );
    assert_eq!(client.get("/t/a").await.unwrap().unwrap().value, b"three");

    assert_eq!(client.delete("/t/a").await.unwrap(), 1);
    assert_eq!(client.delete("/t/a").await.unwrap(), 0);
    assert_eq!(client.delete_prefix("/t/").await.unwrap(), 2);
    assert_eq!(client.get_prefix("/t/").await.unwrap(), vec![]);
    assert!(client.get("/u/c").await.unwrap().is_some());
}

#[tokio::test]
async fn lease_expiry_and_revoke_remove_keys() {
    let Some(etcd) = TestEtcd::start("lease_expiry_and_revoke_remove_keys").await else {
        return;
    };
    let client = etcd.client();
    let short = client.lease_grant(1).await.unwrap();
    assert!(short.id != 0);
    client.put("/lease/short", b"x", short.id).await.unwrap();
    let stored = client.get("/lease/short").await.unwrap().unwrap();
    assert_eq!(stored.lease, short.id);

    // Poll until etcd expires the lease (bounded, not a timing assertion).
    let mut gone = false;
    for _ in 0..100 {
        if client.get("/lease/short").await.unwrap().is_none() {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(gone, "key with a 1 s lease still present after 10 s");

    let long = client.lease_grant(600).await.unwrap();
    client.put("/lease/long", b"y", long.id).await.unwrap();
    client.lease_revoke(long.id).await.unwrap();
    assert_eq!(client.get("/lease/long").await.unwrap(), None);
}

#[tokio::test]
async fn status_and_member_list() {
    let Some(etcd) = TestEtcd::start("status_and_member_list").await else {
        return;
    };
    let client = etcd.client();
    let status = client.status().await.unwrap();
    assert!(status.version.starts_with("3."), "{status:?}");
    assert_eq!(status.leader, status.member_id);
    assert!(!status.is_learner);
    let members = client.member_list().await.unwrap();
    assert_eq!(members.len(), 1);
    assert_eq!(members[0].name, "m1");
    assert_eq!(members[0].id, status.member_id);
    assert_eq!(members[0].peer_urls, vec![etcd.peer_url().to_string()]);
    assert_eq!(members[0].client_urls, vec![etcd.client_url().to_string()]);
}

#[tokio::test]
async fn learner_joins_and_is_promoted() {
    let Some(first) = TestEtcd::start("learner_joins_and_is_promoted").await else {
        return;
    };
    let client = first.client();
    let peer_url = TestEtcd::new_peer_url();
    let added = members::add_learner(&client, "m2", &peer_url, Retry::default())
        .await
        .unwrap();
    let mut entries: Vec<_> = added.initial_cluster.split(',').collect();
    entries.sort_unstable();
    let first_entry = format!("m1={}", first.peer_url());
    let new_entry = format!("m2={peer_url}");
    assert_eq!(entries, vec![first_entry.as_str(), new_entry.as_str()]);
    let listed = client.member_list().await.unwrap();
    let learner = listed.iter().find(|m| m.id == added.member_id).unwrap();
    assert!(learner.is_learner);

    // Adding the same peer URL again (a retried join) reuses the member.
    let again = members::add_learner(&client, "m2", &peer_url, Retry::default())
        .await
        .unwrap();
    assert_eq!(again.member_id, added.member_id);

    let second = TestEtcd::start_member(
        Arc::clone(first.pki()),
        "m2",
        Some((&added.initial_cluster, &peer_url)),
    )
    .await;
    members::promote_when_caught_up(&client, added.member_id, Retry::default())
        .await
        .unwrap();
    let listed = client.member_list().await.unwrap();
    assert_eq!(listed.len(), 2);
    assert!(listed.iter().all(|m| !m.is_learner), "{listed:?}");
    // Once it has run, its peer URL is no longer handed out again.
    let err = members::add_learner(&client, "m2", &peer_url, Retry::default())
        .await
        .unwrap_err();
    assert!(matches!(err, EtcdError::MemberRan { .. }), "{err}");

    // Both members now serve writes and reads of each other.
    let both = Client::new(
        &[
            second.client_url().to_string(),
            first.client_url().to_string(),
        ],
        &first.pki().client_tls(),
    )
    .unwrap();
    both.put("/ha/k", b"v", 0).await.unwrap();
    assert_eq!(client.get("/ha/k").await.unwrap().unwrap().value, b"v");

    // A learner that never started can be removed again at once.
    let stale = members::add_learner(&client, "m3", &TestEtcd::new_peer_url(), Retry::default())
        .await
        .unwrap();
    assert_eq!(client.member_list().await.unwrap().len(), 3);
    members::remove_member(&client, stale.member_id, Retry::default())
        .await
        .unwrap();
    assert_eq!(client.member_list().await.unwrap().len(), 2);
    drop(second);
}

#[tokio::test]
async fn plain_http_and_foreign_clients_are_refused() {
    let Some(etcd) = TestEtcd::start("plain_http_and_foreign_clients_are_refused").await else {
        return;
    };
    // Our client never speaks plain HTTP.
    let plain = etcd.client_url().replacen("https://", "http://", 1);
    let client = Client::new(&[plain], &etcd.pki().client_tls()).unwrap();
    let err = client.status().await.unwrap_err();
    assert!(err.to_string().contains("only https://"), "{err}");

    // etcd does not answer a plain HTTP request on its TLS port.
    let addr = etcd.client_url().trim_start_matches("https://").to_string();
    let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    stream
        .write_all(
            b"POST /v3/maintenance/status HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}",
        )
        .await
        .unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        !answer.contains("\"version\""),
        "plain HTTP got etcd status: {answer}"
    );

    // A client certificate from another CA is refused by etcd's client-cert-auth.
    let other = TestPki::new();
    let (cert_pem, key_pem) = other.issue_client("intruder");
    let foreign = ClientTls {
        ca_pem: etcd.pki().ca_pem().to_string(),
        cert_pem,
        key_pem,
    };
    let intruder = Client::new(&[etcd.client_url().to_string()], &foreign).unwrap();
    let err = intruder.put("/x", b"y", 0).await.unwrap_err();
    assert!(
        matches!(err, EtcdError::Unreachable(_)),
        "foreign client cert was not refused: {err}"
    );

    // A client that does not trust etcd's CA refuses etcd.
    let distrustful = ClientTls {
        ca_pem: other.ca_pem().to_string(),
        ..etcd.pki().client_tls()
    };
    let client = Client::new(&[etcd.client_url().to_string()], &distrustful).unwrap();
    let err = client.status().await.unwrap_err();
    assert!(err.to_string().contains("TLS"), "{err}");
}

#[tokio::test]
async fn an_unreachable_endpoint_is_skipped() {
    let Some(etcd) = TestEtcd::start("an_unreachable_endpoint_is_skipped").await else {
        return;
    };
    let dead = format!("https://127.0.0.1:{}", k0x_etcd::testing::free_port());
    let client = Client::new(
        &[dead.clone(), etcd.client_url().to_string()],
        &etcd.pki().client_tls(),
    )
    .unwrap();
    client.put("/failover", b"ok", 0).await.unwrap();
    assert_eq!(client.get("/failover").await.unwrap().unwrap().value, b"ok");

    let only_dead = Client::new(std::slice::from_ref(&dead), &etcd.pki().client_tls()).unwrap();
    let err = only_dead.status().await.unwrap_err();
    let message = err.to_string();
    assert!(
        message.contains("etcd unreachable") && message.contains(&dead[8..]),
        "{message}"
    );
}
