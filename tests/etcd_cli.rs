//! `k0x etcd member-list` and `k0x etcd leave` against a real two-member etcd on loopback, with
//! k0x's etcd client certificate read from the data directory.

mod common;

use std::process::Output;
use std::sync::Arc;

use common::success_stdout as stdout;
use k0x_config::{DataDir, layout, pki_names};
use k0x_etcd::members::{self, Retry};
use k0x_etcd::testing::TestEtcd;

async fn k0x(data: &DataDir, args: &[&str]) -> Output {
    common::k0x_off_runtime("--data-dir", data.root(), args).await
}

fn stderr(output: &Output) -> String {
    assert!(!output.status.success(), "k0x unexpectedly succeeded");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn member_list_and_leave() {
    let Some(first) = TestEtcd::start("member_list_and_leave").await else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let data = DataDir::new(tmp.path());
    let no_pki = k0x(
        &data,
        &["etcd", "member-list", "--endpoint", first.client_url()],
    )
    .await;
    assert!(
        stderr(&no_pki).contains("etcd/ca.crt"),
        "error names no file"
    );

    layout::ensure_dir(&data.etcd_pki(), 0o700).unwrap();
    let tls = first.pki().client_tls();
    std::fs::write(data.pki_cert(pki_names::ETCD_CA), &tls.ca_pem).unwrap();
    std::fs::write(data.pki_cert(pki_names::ETCD_K0X_CLIENT), &tls.cert_pem).unwrap();
    std::fs::write(data.pki_key(pki_names::ETCD_K0X_CLIENT), &tls.key_pem).unwrap();

    let client = first.client();
    let peer_url = TestEtcd::new_peer_url();
    let added = members::add_learner(&client, "m2", &peer_url, Retry::default())
        .await
        .unwrap();
    let second = TestEtcd::start_member(
        Arc::clone(first.pki()),
        "m2",
        Some((&added.initial_cluster, &peer_url)),
    )
    .await;
    members::promote_when_caught_up(&client, added.member_id, Retry::default())
        .await
        .unwrap();

    let json = stdout(
        &k0x(
            &data,
            &[
                "etcd",
                "member-list",
                "--endpoint",
                first.client_url(),
                "-o",
                "json",
            ],
        )
        .await,
    );
    let listed: serde_json::Value = serde_json::from_str(&json).unwrap();
    let names: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), 2);
    assert!(names.contains(&"m1") && names.contains(&"m2"), "{json}");
    let table = stdout(
        &k0x(
            &data,
            &["etcd", "member-list", "--endpoint", first.client_url()],
        )
        .await,
    );
    assert!(
        table.contains("voter") && table.contains(&peer_url),
        "{table}"
    );

    // The second member leaves through its own endpoint.
    let left = stdout(&k0x(&data, &["etcd", "leave", "--endpoint", second.client_url()]).await);
    assert!(left.contains("removed etcd member m2"), "{left}");
    // m1 applies the removal asynchronously: poll its view (bounded).
    let mut remaining = client.member_list().await.unwrap();
    for _ in 0..100 {
        if remaining.len() == 1 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        remaining = client.member_list().await.unwrap();
    }
    assert_eq!(remaining.len(), 1, "{remaining:?}");
    assert_eq!(remaining[0].name, "m1");

    // The last voting member refuses to leave.
    let last = k0x(&data, &["etcd", "leave", "--endpoint", first.client_url()]).await;
    let last = stderr(&last);
    assert!(last.contains("only voting member"), "{last}");
    let unknown = k0x(
        &data,
        &[
            "etcd",
            "leave",
            "--endpoint",
            first.client_url(),
            "--peer-url",
            "https://127.0.0.1:1",
        ],
    )
    .await;
    assert!(stderr(&unknown).contains("no etcd member has this peer URL"));
    drop(second);
}
