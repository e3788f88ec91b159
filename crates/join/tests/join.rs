//! Joining against a real etcd and the real join API on loopback: a worker joins, controllers get
//! their secrets and an etcd learner slot, and every attack is refused with a clear client error
//! and a server log line.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use std::collections::BTreeSet;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use common::{JoinApi, TestCa, capture_logs, captured_logs, worker_settings};
use k0x_config::DataDir;
use k0x_etcd::testing::TestEtcd;
use k0x_join::material::{WorkerFiles, write_controller_files, write_worker_files};
use k0x_join::ratelimit::RateLimit;
use k0x_join::store::unix_now;
use k0x_join::{JoinClient, JoinError, NodeRegistry, Token, TokenError, TokenRole, TokenStore};
use k0x_pki::Kubeconfig;
use k0x_pki::x509::CertInfo;
use rcgen::{KeyPair, PublicKeyData, SanType};

const DAY: Duration = Duration::from_secs(86_400);

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap()
}

/// The SubjectPublicKeyInfo of a PEM certificate.
fn public_key(cert_pem: &str) -> Vec<u8> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(cert_pem.as_bytes()).unwrap();
    pem.parse_x509().unwrap().public_key().raw.to_vec()
}

/// (serverAuth, clientAuth) of a PEM certificate's extended key usage.
fn usages(cert_pem: &str) -> (bool, bool) {
    let (_, pem) = x509_parser::pem::parse_x509_pem(cert_pem.as_bytes()).unwrap();
    let cert = pem.parse_x509().unwrap();
    let eku = cert.extended_key_usage().unwrap().unwrap().value;
    (eku.server_auth, eku.client_auth)
}

fn openssl(args: &[&str]) -> String {
    let output = Command::new("openssl").args(args).output().unwrap();
    assert!(
        output.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The refusal message of a join error, after checking it is one.
fn refusal(err: &JoinError, status: u16) -> String {
    assert_eq!(err.status(), Some(status), "{err}");
    err.to_string()
}

/// True when the server logged a refusal of `token_id` whose reason contains `reason`.
fn server_logged_refusal(token_id: &str, reason: &str) -> bool {
    captured_logs().lines().any(|line| {
        line.contains("join refused")
            && line.contains(&format!("token_id={token_id}"))
            && line.contains(reason)
    })
}

#[tokio::test]
async fn worker_joins_and_its_certificate_verifies() {
    let Some(etcd) = TestEtcd::start("worker_joins_and_its_certificate_verifies").await else {
        return;
    };
    if k0x_testkit::require_binaries("worker_joins_and_its_certificate_verifies", &["openssl"])
        .is_none()
    {
        return;
    }
    capture_logs();
    let api = JoinApi::start(&etcd, RateLimit::default()).await;
    let token = api.token(&etcd, TokenRole::Worker, DAY).await;
    let secret = token.secret().to_string();

    let client = JoinClient::new(token.clone());
    let joined = client.join_worker("worker-1").await.unwrap();
    let data_dir = tempfile::tempdir().unwrap();
    let data = DataDir::new(data_dir.path().join("k0x"));
    let files = write_worker_files(&data, &joined).unwrap();

    assert_eq!(files, WorkerFiles::in_data_dir(&data));
    assert_eq!(mode(&files.client_key), 0o600);
    assert_eq!(mode(data.root()), 0o700);
    assert_eq!(
        std::fs::read_to_string(&files.ca_cert).unwrap(),
        api.ca.cert_pem
    );
    assert_eq!(files.read_settings().unwrap(), worker_settings());

    let ca = files.ca_cert.to_str().unwrap();
    let cert = files.client_cert.to_str().unwrap();
    let verified = openssl(&["verify", "-CAfile", ca, "-purpose", "sslclient", cert]);
    assert!(verified.contains(": OK"), "{verified}");
    let subject = openssl(&["x509", "-noout", "-subject", "-in", cert]);
    assert!(
        subject.contains("O = system:nodes") && subject.contains("CN = system:node:worker-1"),
        "{subject}"
    );
    // The key on disk is the key of the certificate.
    let cert_pub = openssl(&["x509", "-noout", "-pubkey", "-in", cert]);
    let key_pub = openssl(&["pkey", "-pubout", "-in", files.client_key.to_str().unwrap()]);
    assert_eq!(cert_pub, key_pub);

    // kube-proxy's kubeconfig: its own key, CN=system:kube-proxy and no group, client use, the
    // kubelet's API server.
    assert_eq!(mode(&files.kube_proxy_kubeconfig), 0o600);
    let text = std::fs::read_to_string(&files.kube_proxy_kubeconfig).unwrap();
    let kube_proxy = Kubeconfig::parse(&files.kube_proxy_kubeconfig, &text).unwrap();
    assert_eq!(kube_proxy.server, worker_settings().api_servers[0]);
    assert_eq!(kube_proxy.ca_pem, api.ca.cert_pem);
    let kube_proxy_cert = data.pki().join("kube-proxy-test.crt");
    std::fs::write(&kube_proxy_cert, &kube_proxy.client_cert_pem).unwrap();
    let kube_proxy_cert = kube_proxy_cert.to_str().unwrap();
    let verified = openssl(&[
        "verify",
        "-CAfile",
        ca,
        "-purpose",
        "sslclient",
        kube_proxy_cert,
    ]);
    assert!(verified.contains(": OK"), "{verified}");
    let subject = openssl(&["x509", "-noout", "-subject", "-in", kube_proxy_cert]);
    assert_eq!(subject.trim(), "subject=CN = system:kube-proxy");
    assert_eq!(
        public_key(&kube_proxy.client_cert_pem),
        KeyPair::from_pem(&kube_proxy.client_key_pem)
            .unwrap()
            .subject_public_key_info()
    );

    // The kubelet's serving certificate: the node identity for server use only, named exactly
    // the node name and the address the join came from.
    assert_eq!(mode(&files.serving_key), 0o600);
    let serving = files.serving_cert.to_str().unwrap();
    let verified = openssl(&[
        "verify",
        "-CAfile",
        ca,
        "-purpose",
        "sslserver",
        "-verify_hostname",
        "worker-1",
        serving,
    ]);
    assert!(verified.contains(": OK"), "{verified}");
    let verified = openssl(&[
        "verify",
        "-CAfile",
        ca,
        "-purpose",
        "sslserver",
        "-verify_ip",
        "127.0.0.1",
        serving,
    ]);
    assert!(verified.contains(": OK"), "{verified}");
    let info = CertInfo::parse(&files.serving_cert, &read(&files.serving_cert)).unwrap();
    assert_eq!(info.common_name, "system:node:worker-1");
    assert_eq!(info.organizations, ["system:nodes"]);
    assert_eq!(
        info.sans.iter().map(String::as_str).collect::<Vec<_>>(),
        ["DNS:worker-1", "IP:127.0.0.1"]
    );
    assert_eq!(usages(&read(&files.serving_cert)), (true, false));
    assert_eq!(usages(&read(&files.client_cert)), (false, true));
    assert_eq!(usages(&kube_proxy.client_cert_pem), (false, true));
    let serving_pub = openssl(&["x509", "-noout", "-pubkey", "-in", serving]);
    let serving_key_pub = openssl(&[
        "pkey",
        "-pubout",
        "-in",
        files.serving_key.to_str().unwrap(),
    ]);
    assert_eq!(serving_pub, serving_key_pub);
    // Three identities, three keys, none of which the controller ever saw.
    let keys = [
        &joined.key_pem,
        &joined.kube_proxy_key_pem,
        &joined.kubelet_serving_key_pem,
    ];
    assert_eq!(keys.iter().collect::<BTreeSet<_>>().len(), 3);
    let answer = serde_json::to_string(&joined.response).unwrap();
    assert!(!answer.contains("PRIVATE KEY"), "{answer}");
    assert!(!captured_logs().contains("PRIVATE KEY"));

    let listed = TokenStore::new(etcd.client()).list().await.unwrap();
    let info = listed.iter().find(|t| t.id == token.id).unwrap();
    assert_eq!(info.uses, 1);

    // Another machine claiming the same node name with its own key is refused.
    let err = JoinClient::new(token.clone())
        .join_worker("worker-1")
        .await
        .unwrap_err();
    assert!(
        refusal(&err, 409).contains("worker-1 already joined with a different key"),
        "{err}"
    );
    assert!(server_logged_refusal(&token.id, "already joined"));
    // Once the admin forgets the old node, a reinstalled machine may take the name.
    assert!(
        NodeRegistry::new(etcd.client())
            .forget("worker-1")
            .await
            .unwrap()
    );
    JoinClient::new(token.clone())
        .join_worker("worker-1")
        .await
        .unwrap();
    assert!(!captured_logs().contains(&secret), "the secret was logged");
}

#[tokio::test]
async fn attacks_are_refused_clearly_and_logged() {
    let Some(etcd) = TestEtcd::start("attacks_are_refused_clearly_and_logged").await else {
        return;
    };
    capture_logs();
    let api = JoinApi::start(&etcd, RateLimit::default()).await;
    let store = TokenStore::new(etcd.client());

    // A second CA posing as the server: the client refuses before sending any credential.
    let impostor =
        JoinApi::start_with_ca(&etcd, TestCa::new("kubernetes-ca"), RateLimit::default()).await;
    let mut redirected = api.token(&etcd, TokenRole::Worker, DAY).await;
    redirected.urls = vec![impostor.url.clone()];
    let err = JoinClient::new(redirected.clone())
        .join_worker("victim")
        .await
        .unwrap_err();
    assert!(matches!(err, JoinError::PinMismatch { .. }), "{err}");
    assert!(err.to_string().contains("refusing to join"), "{err}");
    let impostor_saw_credential = captured_logs().lines().any(|line| {
        line.contains(&format!("token_id={}", redirected.id)) && !line.contains("token created")
    });
    assert!(!impostor_saw_credential, "the credential reached a server");

    // Expired token.
    let expiring = api
        .token(&etcd, TokenRole::Worker, Duration::from_secs(1))
        .await;
    let expires = store
        .list()
        .await
        .unwrap()
        .into_iter()
        .find(|t| t.id == expiring.id)
        .unwrap()
        .expires;
    while unix_now() < expires {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let err = JoinClient::new(expiring.clone())
        .join_worker("late")
        .await
        .unwrap_err();
    assert!(refusal(&err, 401).contains("has expired"), "{err}");
    assert!(server_logged_refusal(&expiring.id, "has expired"));

    // Invalidated token.
    let revoked = api.token(&etcd, TokenRole::Worker, DAY).await;
    assert_eq!(
        store
            .invalidate(std::slice::from_ref(&revoked.id))
            .await
            .unwrap(),
        Vec::<String>::new()
    );
    let err = JoinClient::new(revoked.clone())
        .join_worker("revoked")
        .await
        .unwrap_err();
    assert!(refusal(&err, 401).contains("was invalidated"), "{err}");
    assert!(server_logged_refusal(&revoked.id, "was invalidated"));

    // Forged secret for a real token id.
    let real = api.token(&etcd, TokenRole::Worker, DAY).await;
    let forged = forge(&real, &B64URL.encode([7u8; 32]));
    let err = JoinClient::new(forged)
        .join_worker("forger")
        .await
        .unwrap_err();
    assert!(
        refusal(&err, 401).contains("secret does not match"),
        "{err}"
    );
    assert!(server_logged_refusal(&real.id, "secret does not match"));
    assert!(
        !captured_logs().contains(&B64URL.encode([7u8; 32])),
        "forged secret logged"
    );

    // A worker token used for a controller join.
    let err = JoinClient::new(real.clone())
        .join_controller()
        .await
        .unwrap_err();
    assert!(
        refusal(&err, 403).contains("is a worker token and cannot join a controller"),
        "{err}"
    );
    assert!(server_logged_refusal(&real.id, "cannot join a controller"));

    // A token id nobody created.
    let unknown = forge_id(&real, "zzzzzz99");
    let err = JoinClient::new(unknown)
        .join_worker("ghost")
        .await
        .unwrap_err();
    assert!(
        refusal(&err, 401).contains("unknown to this cluster"),
        "{err}"
    );
    assert!(server_logged_refusal("zzzzzz99", "unknown"));

    // A token whose secret was cut short in transit still parses, and is refused by the server.
    let cut = forge(&real, &real.secret()[..32]);
    let err = JoinClient::new(cut).join_worker("cut").await.unwrap_err();
    assert!(
        refusal(&err, 401).contains("secret does not match"),
        "{err}"
    );

    // Truncated and garbled token strings never reach the network.
    let text = real.encode();
    assert_eq!(
        Token::parse(&text[..text.len() - 5]),
        Err(TokenError::Truncated)
    );
    let garbled = format!("{}%%{}", &text[..20], &text[22..]);
    assert!(matches!(
        Token::parse(&garbled),
        Err(TokenError::Garbled(_))
    ));
    assert!(
        Token::parse(&garbled)
            .unwrap_err()
            .to_string()
            .contains("copy it again"),
        "garbled token error is not actionable"
    );

    // The real token still works after all of that.
    JoinClient::new(real).join_worker("honest").await.unwrap();
}

#[tokio::test]
async fn a_server_allowing_rekey_lets_a_reinstalled_node_rejoin() {
    let Some(etcd) =
        TestEtcd::start("a_server_allowing_rekey_lets_a_reinstalled_node_rejoin").await
    else {
        return;
    };
    capture_logs();
    let ca = TestCa::new("kubernetes-ca");
    let api = JoinApi::start_with(&etcd, ca, RateLimit::default(), true).await;
    let token = api.token(&etcd, TokenRole::Worker, DAY).await;
    let first = JoinClient::new(token.clone())
        .join_worker("reborn")
        .await
        .unwrap();
    let second = JoinClient::new(token).join_worker("reborn").await.unwrap();
    assert_ne!(first.key_pem, second.key_pem);
    assert!(captured_logs().contains("node re-joined with a new key"));
}

#[tokio::test]
async fn a_serving_certificate_for_another_name_is_not_trusted() {
    let Some(etcd) = TestEtcd::start("a_serving_certificate_for_another_name_is_not_trusted").await
    else {
        return;
    };
    let ca = TestCa::serving("kubernetes-ca", "controller.example");
    let api = JoinApi::start_with_ca(&etcd, ca, RateLimit::default()).await;
    let token = api.token(&etcd, TokenRole::Worker, DAY).await;
    let err = JoinClient::new(token)
        .join_worker("mismatch")
        .await
        .unwrap_err();
    assert!(matches!(err, JoinError::Untrusted { .. }), "{err}");
    assert!(err.to_string().contains("spec.api.sans"), "{err}");
}

#[tokio::test]
async fn repeated_failures_are_rate_limited_per_source() {
    let Some(etcd) = TestEtcd::start("repeated_failures_are_rate_limited_per_source").await else {
        return;
    };
    capture_logs();
    let limit = RateLimit {
        burst: 3.0,
        refill_per_second: 0.001,
    };
    let api = JoinApi::start(&etcd, limit).await;
    let real = api.token(&etcd, TokenRole::Worker, DAY).await;
    let forged = forge(&real, &B64URL.encode([9u8; 32]));
    let attacker = "127.0.0.7".parse().unwrap();
    for _ in 0..3 {
        let err = JoinClient::new(forged.clone())
            .with_local_addr(attacker)
            .join_worker("brute")
            .await
            .unwrap_err();
        refusal(&err, 401);
    }
    let err = JoinClient::new(forged.clone())
        .with_local_addr(attacker)
        .join_worker("brute")
        .await
        .unwrap_err();
    assert!(
        refusal(&err, 429).contains("too many failed join attempts from 127.0.0.7"),
        "{err}"
    );
    assert!(captured_logs().contains("too many failed join attempts from 127.0.0.7"));
    // Other sources are not affected.
    JoinClient::new(real)
        .join_worker("neighbour")
        .await
        .unwrap();
}

#[tokio::test]
async fn controller_joins_and_its_etcd_is_promoted() {
    let Some(etcd) = TestEtcd::start("controller_joins_and_its_etcd_is_promoted").await else {
        return;
    };
    capture_logs();
    let api = JoinApi::start(&etcd, RateLimit::default()).await;
    let token = api.token(&etcd, TokenRole::Controller, DAY).await;
    let client = JoinClient::new(token.clone());

    let joined = client.join_controller().await.unwrap();
    assert_eq!(joined.secrets.ca.cert, api.ca.cert_pem);
    assert_eq!(joined.secrets.ca.key, api.ca.key_pem);
    assert_eq!(joined.etcd_peer_urls, vec![etcd.peer_url().to_string()]);
    let data_dir = tempfile::tempdir().unwrap();
    let data = DataDir::new(data_dir.path());
    write_controller_files(&data, &joined).unwrap();
    for key in [
        data.pki_key("ca"),
        data.pki_key("etcd/ca"),
        data.pki_key("front-proxy-ca"),
        data.sa_key(),
    ] {
        assert_eq!(mode(&key), 0o600, "{}", key.display());
    }
    assert_eq!(
        std::fs::read_to_string(data.sa_pub()).unwrap(),
        joined.secrets.sa.public
    );

    // A controller token cannot be used to join a worker.
    let err = client.join_worker("sneaky").await.unwrap_err();
    assert!(
        refusal(&err, 403).contains("controller token and cannot join a worker"),
        "{err}"
    );

    let peer_url = TestEtcd::new_peer_url();
    let added = client.add_etcd_member("c2", &peer_url).await.unwrap();
    let learner = etcd
        .client()
        .member_list()
        .await
        .unwrap()
        .into_iter()
        .find(|m| m.id == added.member_id)
        .unwrap();
    assert!(learner.is_learner);
    let second = TestEtcd::start_member(
        Arc::clone(etcd.pki()),
        "c2",
        Some((&added.initial_cluster, &peer_url)),
    )
    .await;
    client
        .promote_etcd_member(added.member_id, 120)
        .await
        .unwrap();
    let members = etcd.client().member_list().await.unwrap();
    assert_eq!(members.len(), 2);
    assert!(members.iter().all(|m| !m.is_learner), "{members:?}");
    drop(second);
}

/// The same token with another secret.
fn forge(token: &Token, secret: &str) -> Token {
    rewrite(token, "secret", secret)
}

/// The same token with another id.
fn forge_id(token: &Token, id: &str) -> Token {
    rewrite(token, "id", id)
}

fn rewrite(token: &Token, field: &str, value: &str) -> Token {
    let text = token.encode();
    let json = B64URL.decode(&text["k0x1.".len()..]).unwrap();
    let mut wire: serde_json::Value = serde_json::from_slice(&json).unwrap();
    wire[field] = serde_json::Value::String(value.to_string());
    Token::parse(&format!("k0x1.{}", B64URL.encode(wire.to_string()))).unwrap()
}

/// Requests a worker join with a hand-made CSR, over TLS verified against the cluster CA.
async fn raw_worker_join(
    api: &JoinApi,
    authorization: Option<&str>,
    node_name: &str,
    csr: &str,
) -> (u16, serde_json::Value) {
    let body = serde_json::json!({"nodeName": node_name, "csr": csr});
    raw_join(api, authorization, &body).await
}

/// Posts `body` to the worker join path, over TLS verified against the cluster CA.
async fn raw_join(
    api: &JoinApi,
    authorization: Option<&str>,
    body: &serde_json::Value,
) -> (u16, serde_json::Value) {
    let tls = k0x_join::tls::verified_client_config(&api.ca.cert_pem).unwrap();
    let transport = k0x_etcd::HttpsTransport::new(Arc::new(tls));
    let headers: Vec<(&str, &str)> = authorization
        .map(|a| vec![("authorization", a)])
        .unwrap_or_default();
    let response = transport
        .request(
            hyper::Method::POST,
            &format!("{}/v1/join/worker", api.url),
            &headers,
            body.to_string().into_bytes(),
        )
        .await
        .unwrap();
    let json = serde_json::from_slice(&response.body).unwrap();
    (response.status.as_u16(), json)
}

fn csr_with_subject(common_name: &str, organization: &str) -> String {
    csr_with_names(common_name, organization, Vec::new())
}

/// A CSR for a new key asking for `common_name`, `organization` and `sans`.
fn csr_with_names(common_name: &str, organization: &str, sans: Vec<SanType>) -> String {
    let key = KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::default();
    params
        .distinguished_name
        .push(rcgen::DnType::OrganizationName, organization);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, common_name);
    params.subject_alt_names = sans;
    params.serialize_request(&key).unwrap().pem().unwrap()
}

fn dns(name: &str) -> SanType {
    SanType::DnsName(name.try_into().unwrap())
}

fn ip(address: &str) -> SanType {
    SanType::IpAddress(address.parse().unwrap())
}

/// The subject of the PEM certificate `field` of a join answer, as x509-parser writes it.
fn subject_of(answer: &serde_json::Value, field: &str) -> String {
    let pem = answer[field].as_str().unwrap();
    let (_, parsed) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).unwrap();
    parsed.parse_x509().unwrap().subject().to_string()
}

#[tokio::test]
async fn a_worker_gets_only_its_own_names_and_identities() {
    let Some(etcd) = TestEtcd::start("a_worker_gets_only_its_own_names_and_identities").await
    else {
        return;
    };
    capture_logs();
    let api = JoinApi::start(&etcd, RateLimit::default()).await;
    let token = api.token(&etcd, TokenRole::Worker, DAY).await;
    let bearer = format!("Bearer {}", token.bearer());
    let join = |node: &str, serving: String| {
        serde_json::json!({
            "nodeName": node,
            "csr": csr_with_subject("x", "y"),
            "kubeProxyCsr": csr_with_subject("kubernetes-admin", "system:masters"),
            "kubeletServingCsr": serving,
        })
    };

    // Subjects are the controller's: a greedy kube-proxy or serving CSR gets the worker's own.
    let greedy = csr_with_names(
        "system:node:other",
        "system:masters",
        vec![dns("greedy"), ip("127.0.0.1")],
    );
    let (status, answer) = raw_join(&api, Some(&bearer), &join("greedy", greedy)).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        subject_of(&answer, "kubeProxyCertificate"),
        "CN=system:kube-proxy"
    );
    let serving = subject_of(&answer, "kubeletServingCertificate");
    assert_eq!(serving, "O=system:nodes, CN=system:node:greedy");
    // A CSR asking for no names still gets the node name and the address it joins from.
    let (status, answer) = raw_join(
        &api,
        Some(&bearer),
        &join("modest", csr_with_subject("a", "b")),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    let pem = answer["kubeletServingCertificate"].as_str().unwrap();
    let info = CertInfo::parse(Path::new("answer"), pem).unwrap();
    assert_eq!(
        info.sans.iter().map(String::as_str).collect::<Vec<_>>(),
        ["DNS:modest", "IP:127.0.0.1"]
    );

    // Another node's name, an address the join does not come from, any other kind of name:
    // refused with one line, and nothing is signed or claimed.
    let victim = JoinClient::new(token.clone())
        .join_worker("victim")
        .await
        .unwrap();
    let refused = [
        (vec![dns("victim")], "DNS name \"victim\""),
        (vec![dns("*.thief")], "DNS name \"*.thief\""),
        (vec![ip("10.1.2.3")], "address 10.1.2.3"),
        (
            vec![SanType::URI("https://thief".try_into().unwrap())],
            "the name URI",
        ),
    ];
    for (sans, asked) in refused {
        let csr = csr_with_names("system:node:thief", "system:nodes", sans);
        let (status, answer) = raw_join(&api, Some(&bearer), &join("thief", csr)).await;
        assert_eq!(status, 403, "{answer}");
        let error = answer["error"].as_str().unwrap();
        assert!(
            error.starts_with(&format!("the kubelet serving CSR asks for {asked}")),
            "{error}"
        );
        assert!(
            error.contains("node name thief and the address its join comes from, 127.0.0.1"),
            "{error}"
        );
        assert!(!error.contains('\n'), "{error}");
        assert!(server_logged_refusal(
            &token.id,
            "kubelet serving CSR asks for"
        ));
    }
    // The refusals claimed nothing: "thief" is still free for a key of its own.
    JoinClient::new(token.clone())
        .join_worker("thief")
        .await
        .unwrap();
    // Only the holder of the victim's kubelet key may join as the victim again (a worker that
    // joined with an older k0x does so for the identities it lacks), and it keeps that key.
    let again = JoinClient::new(token.clone())
        .rejoin_worker("victim", &victim.key_pem)
        .await
        .unwrap();
    assert_eq!(again.key_pem, victim.key_pem);
    assert_eq!(
        public_key(&again.response.certificate),
        public_key(&victim.response.certificate)
    );
    assert_ne!(
        again.kubelet_serving_key_pem,
        victim.kubelet_serving_key_pem
    );
    let err = JoinClient::new(token.clone())
        .join_worker("victim")
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(409), "{err}");

    // A malformed kube-proxy CSR is refused like a malformed kubelet CSR.
    let mut bad = join("broken", csr_with_subject("a", "b"));
    bad["kubeProxyCsr"] = "garbage".into();
    let (status, answer) = raw_join(&api, Some(&bearer), &bad).await;
    assert_eq!(status, 400, "{answer}");
    assert!(
        answer["error"]
            .as_str()
            .unwrap()
            .contains("the kube-proxy CSR is not a validly signed"),
        "{answer}"
    );

    // A worker of an older k0x sends only its kubelet CSR and gets only that certificate.
    let (status, answer) = raw_worker_join(
        &api,
        Some(&bearer),
        "old-worker",
        &csr_with_subject("a", "b"),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert!(answer.get("kubeProxyCertificate").is_none(), "{answer}");
    assert!(
        answer.get("kubeletServingCertificate").is_none(),
        "{answer}"
    );
}

#[tokio::test]
async fn hand_made_requests_cannot_choose_their_identity() {
    let Some(etcd) = TestEtcd::start("hand_made_requests_cannot_choose_their_identity").await
    else {
        return;
    };
    capture_logs();
    let api = JoinApi::start(&etcd, RateLimit::default()).await;
    let token = api.token(&etcd, TokenRole::Worker, DAY).await;
    let bearer = format!("Bearer {}", token.bearer());

    // A CSR asking for cluster-admin gets a node identity all the same.
    let greedy = csr_with_subject("kubernetes-admin", "system:masters");
    let (status, answer) = raw_worker_join(&api, Some(&bearer), "greedy", &greedy).await;
    assert_eq!(status, 200, "{answer}");
    let pem = answer["certificate"].as_str().unwrap();
    let (_, parsed) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).unwrap();
    let cert = parsed.parse_x509().unwrap();
    let subject = cert.subject().to_string();
    assert!(subject.contains("CN=system:node:greedy"), "{subject}");
    assert!(subject.contains("O=system:nodes"), "{subject}");
    assert!(!subject.contains("system:masters"), "{subject}");

    // A CSR whose signature does not verify (no proof of key possession) is refused.
    let tampered = tamper_signature(&csr_with_subject("x", "y"));
    let (status, answer) = raw_worker_join(&api, Some(&bearer), "tampered", &tampered).await;
    assert_eq!(status, 400, "{answer}");
    assert!(
        answer["error"]
            .as_str()
            .unwrap()
            .contains("not a validly signed"),
        "{answer}"
    );
    assert!(server_logged_refusal(&token.id, "not a validly signed"));

    // Bad node names and missing credentials.
    let csr = csr_with_subject("x", "y");
    let (status, answer) = raw_worker_join(&api, Some(&bearer), "Bad_Name", &csr).await;
    assert_eq!(status, 400, "{answer}");
    assert!(
        answer["error"]
            .as_str()
            .unwrap()
            .contains("not a valid Kubernetes node name")
    );
    let (status, answer) = raw_worker_join(&api, None, "anonymous", &csr).await;
    assert_eq!(status, 401, "{answer}");
    assert!(
        answer["error"]
            .as_str()
            .unwrap()
            .contains("Authorization: Bearer")
    );
    assert!(server_logged_refusal("-", "no valid credential"));
}

/// The same CSR with one bit of its signature flipped.
fn tamper_signature(pem: &str) -> String {
    use base64::engine::general_purpose::STANDARD;
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let mut der = STANDARD.decode(body).unwrap();
    let last = der.len() - 1;
    der[last] ^= 0x01;
    let encoded = STANDARD.encode(der);
    let lines: Vec<&str> = encoded
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    format!(
        "-----BEGIN CERTIFICATE REQUEST-----\n{}\n-----END CERTIFICATE REQUEST-----\n",
        lines.join("\n")
    )
}
