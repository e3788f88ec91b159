//! `k0x token create|list|invalidate` run as a user would, against an admin socket served
//! in-process by the join crate's token admin, backed by a real etcd.

mod common;

use std::process::Output;
use std::sync::Arc;

use common::success_stdout as stdout;
use k0x_etcd::testing::TestEtcd;
use k0x_join::admin::{self, TokenAdmin};
use k0x_join::{Token, TokenRole, TokenStore};
use tokio::net::UnixListener;
use tokio::sync::oneshot;

async fn k0x(run_dir: &std::path::Path, args: &[&str]) -> Output {
    common::k0x_off_runtime("--run-dir", run_dir, args).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_commands_talk_to_the_admin_socket() {
    let Some(etcd) = TestEtcd::start("token_commands_talk_to_the_admin_socket").await else {
        return;
    };
    let run_dir = tempfile::tempdir().unwrap();
    let listener = UnixListener::bind(run_dir.path().join("k0x.sock")).unwrap();
    let token_admin = TokenAdmin::new(
        TokenStore::new(etcd.client()),
        vec!["https://127.0.0.1:9443".into()],
        etcd.pki().ca_pem().to_string(),
    );
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(admin::serve(listener, Arc::new(token_admin), async {
        let _ = stopped.await;
    }));

    let created = k0x(run_dir.path(), &["token", "create", "--role", "worker"]).await;
    let token = Token::parse(&stdout(&created)).unwrap();
    assert_eq!(token.role, TokenRole::Worker);
    assert!(created.stderr.is_empty(), "unexpected warning");

    let forever = k0x(
        run_dir.path(),
        &["token", "create", "--role", "controller", "--expiry", "0"],
    )
    .await;
    let forever_token = Token::parse(&stdout(&forever)).unwrap();
    assert!(String::from_utf8_lossy(&forever.stderr).contains("never expires"));

    let table = stdout(&k0x(run_dir.path(), &["token", "list"]).await);
    assert!(table.starts_with("ID"), "{table}");
    let worker_line = table.lines().find(|l| l.starts_with(&token.id)).unwrap();
    let fields: Vec<&str> = worker_line.split_whitespace().collect();
    assert_eq!(fields[1], "worker", "{table}");
    assert!(["24h0m", "23h59m"].contains(&fields[2]), "{table}");
    assert_eq!(fields[3], "0", "{table}");
    assert!(table.contains("never"), "{table}");
    assert!(!table.contains(token.secret()));

    let json = stdout(&k0x(run_dir.path(), &["token", "list", "-o", "json"]).await);
    let listed: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 2);

    let invalidated = k0x(run_dir.path(), &["token", "invalidate", &token.id]).await;
    assert_eq!(
        stdout(&invalidated).trim(),
        format!("invalidated {}", token.id)
    );
    let again = k0x(run_dir.path(), &["token", "invalidate", &token.id]).await;
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("no usable token with id"));

    let table = stdout(&k0x(run_dir.path(), &["token", "list"]).await);
    assert!(
        !table.contains(&token.id) && table.contains(&forever_token.id),
        "{table}"
    );

    stop.send(()).unwrap();
    server.await.unwrap();
}

/// Mistakes on the command line are refused before the server is asked.
#[test]
fn a_zero_expiry_is_told_apart_from_a_malformed_one() {
    let run_dir = tempfile::tempdir().unwrap();
    for (expiry, expected) in [
        (
            "0h",
            "--expiry \"0h\" is zero: write 0 for a token that never expires",
        ),
        ("1y", "--expiry \"1y\" is not a duration"),
    ] {
        let out = std::process::Command::new(common::K0X)
            .arg("--run-dir")
            .arg(run_dir.path())
            .args(["token", "create", "--role", "worker", "--expiry", expiry])
            .output()
            .unwrap();
        assert!(!out.status.success());
        let err = common::stderr(&out);
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains(expected), "{err}");
    }
}

/// A user who may not use the admin socket is told so, not that k0x is not running.
#[test]
fn status_without_permission_says_permission_denied() {
    use std::os::unix::process::CommandExt;
    if !k0x_testkit::require_root("status_without_permission_says_permission_denied") {
        return;
    }
    let run_dir = tempfile::tempdir().unwrap();
    let socket = run_dir.path().join("k0x.sock");
    let _listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    let out = std::process::Command::new(common::K0X)
        .arg("--run-dir")
        .arg(run_dir.path())
        .arg("status")
        .uid(65534)
        .gid(65534)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = common::stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("permission denied") && err.contains("run this as root"),
        "{err}"
    );
    assert!(!err.contains("not running"), "{err}");
}
