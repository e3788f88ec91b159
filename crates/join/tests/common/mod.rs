//! A controller's join API on loopback, backed by a real etcd, with a throwaway cluster CA.
//! Shared by the integration tests and the benchmark.

#![allow(dead_code)] // each test binary uses a different part of the fixture

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use k0x_etcd::testing::TestEtcd;
use k0x_join::api::{CertAndKey, ControllerSecrets, ServiceAccountKeys, WorkerSettings};
use k0x_join::ratelimit::RateLimit;
use k0x_join::{JoinServer, JoinServerConfig, Token, TokenRole, TokenStore};
use k0x_pki::CertificateAuthority;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

/// A CA (certificate and key, PEM) and a serving certificate for 127.0.0.1 signed by it.
pub struct TestCa {
    pub cert_pem: String,
    pub key_pem: String,
    pub serving: CertAndKey,
}

impl TestCa {
    pub fn new(common_name: &str) -> Self {
        Self::serving(common_name, "127.0.0.1")
    }

    /// A CA whose join API certificate names `serving_name` only.
    pub fn serving(common_name: &str, serving_name: &str) -> Self {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let cert_pem = params.self_signed(&key).unwrap().pem();
        let key_pem = key.serialize_pem();
        let issuer = Issuer::new(params, key);
        let serving_key = KeyPair::generate().unwrap();
        let mut serving = CertificateParams::new(vec![serving_name.to_string()]).unwrap();
        serving
            .distinguished_name
            .push(DnType::CommonName, "k0x-join-api");
        serving.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let serving_cert = serving.signed_by(&serving_key, &issuer).unwrap();
        Self {
            cert_pem,
            key_pem,
            serving: CertAndKey {
                cert: serving_cert.pem(),
                key: serving_key.serialize_pem(),
            },
        }
    }

    fn pair(&self) -> CertAndKey {
        CertAndKey {
            cert: self.cert_pem.clone(),
            key: self.key_pem.clone(),
        }
    }
}

/// A join server on a free loopback port; stopped when dropped.
pub struct JoinApi {
    pub url: String,
    pub ca: TestCa,
    stop: Option<oneshot::Sender<()>>,
}

impl Drop for JoinApi {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

pub fn worker_settings() -> WorkerSettings {
    WorkerSettings {
        api_servers: vec!["https://127.0.0.1:6443".into()],
        cluster_domain: "cluster.local".into(),
        pod_cidr: "10.244.0.0/16".into(),
        service_cidr: "10.96.0.0/12".into(),
        network_provider: Some(Default::default()),
        images: [("pause".to_string(), "k0x.io/pause:3.10-k0x".to_string())].into(),
    }
}

impl JoinApi {
    /// Starts a join API with a new cluster CA in front of `etcd`.
    pub async fn start(etcd: &TestEtcd, rate_limit: RateLimit) -> Self {
        Self::start_with_ca(etcd, TestCa::new("kubernetes-ca"), rate_limit).await
    }

    pub async fn start_with_ca(etcd: &TestEtcd, ca: TestCa, rate_limit: RateLimit) -> Self {
        Self::start_with(etcd, ca, rate_limit, false).await
    }

    /// Full control: `allow_node_rekey` lets reinstalled nodes re-join under their old name.
    pub async fn start_with(
        etcd: &TestEtcd,
        ca: TestCa,
        rate_limit: RateLimit,
        allow_node_rekey: bool,
    ) -> Self {
        let signer = CertificateAuthority::from_pem(&ca.cert_pem, &ca.key_pem).unwrap();
        let etcd_ca = TestCa::new("etcd-ca");
        let front_proxy_ca = TestCa::new("front-proxy-ca");
        let sa = KeyPair::generate().unwrap();
        let config = JoinServerConfig {
            etcd: etcd.client(),
            signer: Arc::new(signer),
            ca_pem: ca.cert_pem.clone(),
            serving_cert_pem: ca.serving.cert.clone(),
            serving_key_pem: ca.serving.key.clone(),
            worker: worker_settings(),
            controller: Some(ControllerSecrets {
                ca: ca.pair(),
                etcd_ca: etcd_ca.pair(),
                front_proxy_ca: front_proxy_ca.pair(),
                sa: ServiceAccountKeys {
                    key: sa.serialize_pem(),
                    public: sa.public_key_pem(),
                },
            }),
            rate_limit,
            allow_node_rekey,
        };
        let server = JoinServer::new(config).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("https://{}", listener.local_addr().unwrap());
        let (stop, stopped) = oneshot::channel();
        tokio::spawn(server.serve(listener, async {
            let _ = stopped.await;
        }));
        Self {
            url,
            ca,
            stop: Some(stop),
        }
    }

    /// Creates a token for this server.
    pub async fn token(&self, etcd: &TestEtcd, role: TokenRole, expiry: Duration) -> Token {
        let created = TokenStore::new(etcd.client())
            .create(role, expiry, vec![self.url.clone()], &self.ca.cert_pem)
            .await
            .unwrap();
        Token::parse(&created.token.encode()).unwrap()
    }
}

/// Everything logged by this test process (tracing), for checking the server's log lines.
pub fn captured_logs() -> String {
    let buffer = log_buffer();
    String::from_utf8_lossy(&buffer.lock().unwrap()).into_owned()
}

/// Installs the capturing subscriber once per test process.
pub fn capture_logs() {
    let _ = log_buffer();
}

fn log_buffer() -> Arc<Mutex<Vec<u8>>> {
    static BUFFER: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    BUFFER
        .get_or_init(|| {
            let buffer = Arc::new(Mutex::new(Vec::new()));
            let writer = SharedWriter(Arc::clone(&buffer));
            let subscriber = tracing_subscriber::fmt()
                .with_env_filter("k0x_join=info")
                .with_ansi(false)
                .with_writer(move || writer.clone())
                .finish();
            tracing::subscriber::set_global_default(subscriber).unwrap();
            buffer
        })
        .clone()
}

#[derive(Clone)]
struct SharedWriter(Arc<Mutex<Vec<u8>>>);

impl Write for SharedWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
