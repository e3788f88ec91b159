//! Readiness probes against real listeners on loopback (ephemeral ports only).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use k0x_supervisor::Probe;
use k0x_supervisor::probe::check;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;

const ATTEMPT: Duration = Duration::from_secs(5);

/// A CA, a server certificate for 127.0.0.1, a client certificate, and an unrelated CA.
struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let ca = issuer("test-ca");
        let other = issuer("other-ca");
        let write = |name: &str, text: String| std::fs::write(dir.path().join(name), text).unwrap();
        write("ca.crt", ca.pem());
        write("other-ca.crt", other.pem());
        for (name, sans, usage) in [
            (
                "server",
                vec!["127.0.0.1".to_string()],
                ExtendedKeyUsagePurpose::ServerAuth,
            ),
            ("client", vec![], ExtendedKeyUsagePurpose::ClientAuth),
        ] {
            let key = KeyPair::generate().unwrap();
            let mut params = CertificateParams::new(sans).unwrap();
            params.distinguished_name.push(DnType::CommonName, name);
            params.extended_key_usages = vec![usage];
            let cert = params.signed_by(&key, &ca).unwrap();
            write(&format!("{name}.crt"), cert.pem());
            write(&format!("{name}.key"), key.serialize_pem());
        }
        Self { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A TLS server config that requires a client certificate from the test CA.
    fn server_config(&self) -> rustls::ServerConfig {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_file(self.path("ca.crt")).unwrap())
            .unwrap();
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            roots.into(),
            provider.clone(),
        )
        .build()
        .unwrap();
        let chain = vec![CertificateDer::from_pem_file(self.path("server.crt")).unwrap()];
        let key = PrivateKeyDer::from_pem_file(self.path("server.key")).unwrap();
        rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain, key)
            .unwrap()
    }
}

fn issuer(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
}

/// Answers every request on the stream with `status`.
async fn answer<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S, status: &str) {
    let mut request = Vec::new();
    let mut buf = [0u8; 1024];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => request.extend_from_slice(&buf[..n]),
        }
    }
    let response = format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}

/// An HTTP (or, with `tls`, HTTPS) server on an ephemeral loopback port; returns its port.
async fn serve(status: &'static str, tls: Option<rustls::ServerConfig>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let acceptor = tls.map(|config| tokio_rustls::TlsAcceptor::from(Arc::new(config)));
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                match acceptor {
                    Some(acceptor) => {
                        if let Ok(tls) = acceptor.accept(tcp).await {
                            answer(tls, status).await;
                        }
                    }
                    None => answer(tcp, status).await,
                }
            });
        }
    });
    port
}

fn https(port: u16, pki: &Pki, ca: Option<&str>, client: bool) -> Probe {
    Probe::Http {
        url: format!("https://127.0.0.1:{port}/health"),
        ca: ca.map(|c| pki.path(c)),
        client_cert: client.then(|| pki.path("client.crt")),
        client_key: client.then(|| pki.path("client.key")),
    }
}

#[tokio::test]
async fn tcp_passes_when_something_listens() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    check(&Probe::Tcp(address), ATTEMPT).await.unwrap();
    drop(listener);
    let error = check(&Probe::Tcp(address), ATTEMPT).await.unwrap_err();
    assert!(error.contains("refused"), "{error}");
}

#[tokio::test]
async fn unix_socket_passes_when_something_listens() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("containerd.sock");
    let probe = Probe::UnixSocket(path.clone());
    assert!(check(&probe, ATTEMPT).await.is_err());
    let _listener = tokio::net::UnixListener::bind(&path).unwrap();
    check(&probe, ATTEMPT).await.unwrap();
}

#[tokio::test]
async fn exec_passes_on_exit_zero() {
    let probe = |command: &str| Probe::Exec {
        path: "/bin/sh".into(),
        args: vec!["-c".into(), command.into()],
    };
    check(&probe("exit 0"), ATTEMPT).await.unwrap();
    let error = check(&probe("exit 3"), ATTEMPT).await.unwrap_err();
    assert!(error.contains("exit status: 3"), "{error}");
    let error = check(&probe("sleep 10"), Duration::from_millis(200))
        .await
        .unwrap_err();
    assert!(error.starts_with("no answer within"), "{error}");
}

#[tokio::test]
async fn http_needs_a_success_status() {
    let ok = serve("200 OK", None).await;
    let unavailable = serve("503 Service Unavailable", None).await;
    let probe = |port: u16| Probe::Http {
        url: format!("http://127.0.0.1:{port}/readyz"),
        ca: None,
        client_cert: None,
        client_key: None,
    };
    check(&probe(ok), ATTEMPT).await.unwrap();
    let error = check(&probe(unavailable), ATTEMPT).await.unwrap_err();
    assert!(error.contains("503"), "{error}");
}

#[tokio::test]
async fn a_server_that_accepts_but_never_answers_times_out() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let probe = Probe::Http {
        url: format!("http://127.0.0.1:{port}/"),
        ca: None,
        client_cert: None,
        client_key: None,
    };
    let error = check(&probe, Duration::from_millis(300)).await.unwrap_err();
    assert!(error.starts_with("no answer within"), "{error}");
}

#[tokio::test]
async fn https_verifies_the_server_and_presents_the_client_certificate() {
    let pki = Pki::new();
    let port = serve("200 OK", Some(pki.server_config())).await;
    check(&https(port, &pki, Some("ca.crt"), true), ATTEMPT)
        .await
        .unwrap();

    let wrong_ca = check(&https(port, &pki, Some("other-ca.crt"), true), ATTEMPT)
        .await
        .unwrap_err();
    assert!(wrong_ca.starts_with("TLS:"), "{wrong_ca}");

    let no_ca = check(&https(port, &pki, None, true), ATTEMPT)
        .await
        .unwrap_err();
    assert!(no_ca.contains("need a CA"), "{no_ca}");

    // The server requires a client certificate: without one the request fails.
    assert!(
        check(&https(port, &pki, Some("ca.crt"), false), ATTEMPT)
            .await
            .is_err()
    );
}
