//! Token administration over a real unix admin socket, served in-process, backed by real etcd.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use std::time::Duration;

use common::TestCa;
use k0x_etcd::testing::TestEtcd;
use k0x_join::admin::{self, AdminClient, AdminError, TokenAdmin};
use k0x_join::{Token, TokenRole, TokenStore};
use tokio::net::UnixListener;
use tokio::sync::oneshot;

#[tokio::test]
async fn tokens_are_created_listed_and_invalidated_over_the_socket() {
    let Some(etcd) =
        TestEtcd::start("tokens_are_created_listed_and_invalidated_over_the_socket").await
    else {
        return;
    };
    let ca = TestCa::new("kubernetes-ca");
    let run_dir = tempfile::tempdir().unwrap();
    let socket = run_dir.path().join("k0x.sock");
    // A stale socket from a dead server is replaced; the new one is root-only.
    drop(UnixListener::bind(&socket).unwrap());
    let listener = admin::bind(&socket).unwrap();
    let mode = std::fs::metadata(&socket).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let join_url = "https://127.0.0.1:9443".to_string();
    let token_admin = Arc::new(TokenAdmin::new(
        TokenStore::new(etcd.client()),
        vec![join_url.clone()],
        ca.cert_pem.clone(),
    ));
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(admin::serve(listener, token_admin, async {
        let _ = stopped.await;
    }));
    let client = AdminClient::new(&socket);

    let created = client
        .create_token(TokenRole::Worker, Duration::from_secs(3600))
        .await
        .unwrap();
    assert_eq!(created.warning, None);
    let token = Token::parse(&created.token).unwrap();
    assert_eq!(token.role, TokenRole::Worker);
    assert_eq!(token.urls, vec![join_url]);
    assert_eq!(
        token.ca_sha256,
        k0x_join::token::ca_pin(&ca.cert_pem).unwrap()
    );
    assert_eq!(created.info.id, token.id);
    assert!(created.info.expires >= created.info.created + 3600);

    let forever = client
        .create_token(TokenRole::Controller, Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(forever.info.expires, 0);
    assert!(
        forever
            .warning
            .as_deref()
            .unwrap()
            .contains("never expires")
    );

    let listed = client.list_tokens().await.unwrap();
    let ids: Vec<_> = listed.tokens.iter().map(|t| t.id.as_str()).collect();
    assert_eq!(ids.len(), 2);
    assert!(ids.contains(&token.id.as_str()) && ids.contains(&forever.info.id.as_str()));
    let listed_json = serde_json::to_string(&listed).unwrap();
    assert!(!listed_json.contains(token.secret()), "list shows a secret");

    let answer = client
        .invalidate_tokens(&[token.id.clone(), "nosuch1".to_string()])
        .await
        .unwrap();
    assert_eq!(answer.invalidated, vec![token.id.clone()]);
    assert_eq!(answer.unknown, vec!["nosuch1".to_string()]);
    let remaining = client.list_tokens().await.unwrap().tokens;
    assert_eq!(remaining.len(), 1);
    assert_eq!(remaining[0].id, forever.info.id);

    // The secret is stored only as a hash.
    let raw = etcd
        .client()
        .get(&format!("/k0x/tokens/{}", token.id))
        .await
        .unwrap()
        .unwrap();
    assert!(!String::from_utf8_lossy(&raw.value).contains(token.secret()));

    stop.send(()).unwrap();
    server.await.unwrap();
}

#[tokio::test]
async fn a_missing_server_is_reported_clearly() {
    let run_dir = tempfile::tempdir().unwrap();
    let socket = run_dir.path().join("k0x.sock");
    let err = AdminClient::new(&socket).list_tokens().await.unwrap_err();
    assert!(matches!(err, AdminError::Connect { .. }));
    let message = err.to_string();
    assert!(message.contains(&socket.display().to_string()), "{message}");
    assert!(message.contains("is `k0x server` running"), "{message}");
}
