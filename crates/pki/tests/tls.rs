//! A TLS server set up the way kube-apiserver is (serving certificate `pki/apiserver.crt`,
//! `--client-ca-file pki/ca.crt`) decides over real sockets on loopback whose client
//! certificates get in: the admin's and a user's do, one from another cluster's CA does not.

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::thread;

use k0x_config::schema::KeyType;
use k0x_config::{ClusterConfig, DataDir, pki_names};
use k0x_pki::{Kubeconfig, PkiRequest, UserRequest, ensure_pki, user_kubeconfig};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, ClientConnection, RootCertStore, ServerConfig, ServerConnection};
use time::Duration;

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn cert(pem: &str) -> CertificateDer<'static> {
    CertificateDer::from_pem_slice(pem.as_bytes()).unwrap()
}

fn key(pem: &str) -> PrivateKeyDer<'static> {
    PrivateKeyDer::from_pem_slice(pem.as_bytes()).unwrap()
}

fn roots(ca_pem: &str) -> Arc<RootCertStore> {
    let mut roots = RootCertStore::empty();
    roots.add(cert(ca_pem)).unwrap();
    Arc::new(roots)
}

fn apiserver_config(data: &DataDir) -> Arc<ServerConfig> {
    let read = |path: &Path| std::fs::read_to_string(path).unwrap();
    let ca = read(&data.pki_cert(pki_names::CA));
    let verifier = WebPkiClientVerifier::builder_with_provider(roots(&ca), provider())
        .build()
        .unwrap();
    let config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            vec![cert(&read(&data.pki_cert(pki_names::APISERVER)))],
            key(&read(&data.pki_key(pki_names::APISERVER))),
        )
        .unwrap();
    Arc::new(config)
}

/// Connects with the credentials of `kubeconfig` (which also supplies the CA the client trusts
/// for the server) and returns the server's verdict on the handshake.
fn server_verdict(server: Arc<ServerConfig>, kubeconfig: &Kubeconfig) -> Result<(), String> {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server_side = thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let mut conn = ServerConnection::new(server).unwrap();
        while conn.is_handshaking() {
            conn.complete_io(&mut stream)
                .map_err(|err| err.to_string())?;
        }
        Ok(())
    });
    let client = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots(&kubeconfig.ca_pem))
        .with_client_auth_cert(
            vec![cert(&kubeconfig.client_cert_pem)],
            key(&kubeconfig.client_key_pem),
        )
        .unwrap();
    let name = ServerName::try_from("127.0.0.1").unwrap();
    let mut conn = ClientConnection::new(Arc::new(client), name).unwrap();
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    while conn.is_handshaking() {
        // The client must accept the apiserver certificate for 127.0.0.1 in every case.
        conn.complete_io(&mut stream)
            .expect("client verifies the apiserver certificate");
    }
    let _ = conn.writer().write_all(b"GET /healthz");
    let _ = conn.complete_io(&mut stream);
    drop(stream);
    server_side.join().unwrap()
}

fn init(dir: &Path, key_type: KeyType) -> DataDir {
    let data = DataDir::new(dir);
    let mut req = PkiRequest::from_config(&ClusterConfig::default());
    req.key_type = key_type;
    ensure_pki(&data, &req).unwrap();
    data
}

fn user(data: &DataDir, key_type: KeyType) -> Kubeconfig {
    let req = UserRequest {
        name: "demo".into(),
        groups: vec!["dev".into(), "ops".into()],
        validity: Duration::hours(1),
        server: "https://127.0.0.1:6443".into(),
        cluster_name: "k0x".into(),
        key_type,
    };
    Kubeconfig::parse(
        Path::new("demo.conf"),
        &user_kubeconfig(data, &req).unwrap(),
    )
    .unwrap()
}

fn admin(data: &DataDir) -> Kubeconfig {
    let path = data.admin_kubeconfig();
    Kubeconfig::parse(&path, &std::fs::read_to_string(&path).unwrap()).unwrap()
}

#[test]
fn apiserver_accepts_cluster_clients_and_rejects_foreign_ones() {
    let tmp = tempfile::tempdir().unwrap();
    let cluster = init(&tmp.path().join("cluster"), KeyType::EcdsaP256);
    let other = init(&tmp.path().join("other"), KeyType::EcdsaP256);
    let server = apiserver_config(&cluster);

    assert_eq!(server_verdict(server.clone(), &admin(&cluster)), Ok(()));
    assert_eq!(
        server_verdict(server.clone(), &user(&cluster, KeyType::EcdsaP256)),
        Ok(())
    );
    assert_eq!(
        server_verdict(server.clone(), &user(&cluster, KeyType::Rsa2048)),
        Ok(())
    );

    // A foreign client that trusts our CA for the server but presents its own cluster's cert.
    // Both CAs are named CN=kubernetes-ca, so the server finds a candidate issuer by name and
    // then refuses the signature.
    let mut foreign = admin(&other);
    foreign.ca_pem = admin(&cluster).ca_pem;
    let verdict = server_verdict(server, &foreign);
    let err = verdict.expect_err("a certificate from another CA must be refused");
    assert!(err.contains("BadSignature"), "{err}");

    // The front-proxy client certificate is signed by another CA of the same cluster and must
    // not authenticate directly.
    let read = |path: &Path| std::fs::read_to_string(path).unwrap();
    let mut front_proxy = admin(&cluster);
    front_proxy.client_cert_pem = read(&cluster.pki_cert(pki_names::FRONT_PROXY_CLIENT));
    front_proxy.client_key_pem = read(&cluster.pki_key(pki_names::FRONT_PROXY_CLIENT));
    let err = server_verdict(apiserver_config(&cluster), &front_proxy).unwrap_err();
    assert!(err.contains("UnknownIssuer"), "{err}");
}

#[test]
fn rsa_apiserver_certificate_serves_too() {
    let tmp = tempfile::tempdir().unwrap();
    let cluster = init(tmp.path(), KeyType::Rsa2048);
    assert_eq!(
        server_verdict(apiserver_config(&cluster), &admin(&cluster)),
        Ok(())
    );
}
