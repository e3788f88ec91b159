//! Test helpers: a real etcd with a throwaway mutual-TLS PKI on free loopback ports.
//!
//! Used by this crate's tests and by k0x-join's. Each [`TestEtcd`] owns its temp directory and
//! process; dropping it kills etcd and removes everything, also when a test panics. etcd gets
//! SIGKILL if the test process dies first.

use std::fs;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use tempfile::TempDir;

use crate::{Client, ClientTls};

/// How long a test etcd may take to answer its first status call.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// A throwaway etcd PKI: a CA, one member certificate (server + peer, for 127.0.0.1 and
/// localhost) and one client certificate, written as files for etcd's flags.
pub struct TestPki {
    dir: TempDir,
    ca_pem: String,
    ca_issuer: Issuer<'static, KeyPair>,
    client_cert_pem: String,
    client_key_pem: String,
}

impl std::fmt::Debug for TestPki {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestPki")
            .field("dir", &self.dir.path())
            .finish_non_exhaustive()
    }
}

impl TestPki {
    /// Generates the CA and certificates into a new temp directory.
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir for the test PKI");
        let ca_key = KeyPair::generate().expect("CA key");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "k0x-test-etcd-ca");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca_pem = ca_params.self_signed(&ca_key).expect("CA cert").pem();
        let ca_issuer = Issuer::new(ca_params, ca_key);
        let member = issue(
            &ca_issuer,
            "etcd-member",
            &["127.0.0.1", "localhost"],
            &[
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ],
        );
        let client = issue(
            &ca_issuer,
            "k0x-test-client",
            &[],
            &[ExtendedKeyUsagePurpose::ClientAuth],
        );
        let pki = Self {
            ca_pem,
            ca_issuer,
            client_cert_pem: client.0,
            client_key_pem: client.1,
            dir,
        };
        write(&pki.ca_file(), &pki.ca_pem);
        write(&pki.member_cert_file(), &member.0);
        write(&pki.member_key_file(), &member.1);
        pki
    }

    /// TLS material for a client of the test etcd.
    pub fn client_tls(&self) -> ClientTls {
        ClientTls {
            ca_pem: self.ca_pem.clone(),
            cert_pem: self.client_cert_pem.clone(),
            key_pem: self.client_key_pem.clone(),
        }
    }

    /// A client certificate and key (PEM) signed by this CA, e.g. to test a foreign CA.
    pub fn issue_client(&self, common_name: &str) -> (String, String) {
        issue(
            &self.ca_issuer,
            common_name,
            &[],
            &[ExtendedKeyUsagePurpose::ClientAuth],
        )
    }

    /// The CA certificate (PEM).
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.crt")
    }

    fn member_cert_file(&self) -> PathBuf {
        self.dir.path().join("member.crt")
    }

    fn member_key_file(&self) -> PathBuf {
        self.dir.path().join("member.key")
    }
}

impl Default for TestPki {
    fn default() -> Self {
        Self::new()
    }
}

fn issue(
    ca: &Issuer<'static, KeyPair>,
    common_name: &str,
    sans: &[&str],
    usages: &[ExtendedKeyUsagePurpose],
) -> (String, String) {
    let key = KeyPair::generate().expect("leaf key");
    let sans: Vec<String> = sans.iter().map(|s| (*s).to_string()).collect();
    let mut params = CertificateParams::new(sans).expect("leaf params");
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params.extended_key_usages = usages.to_vec();
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    let cert = params.signed_by(&key, ca).expect("leaf cert");
    (cert.pem(), key.serialize_pem())
}

fn write(path: &Path, contents: &str) {
    fs::write(path, contents).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

pub use k0x_testkit::free_port;

/// A running etcd member serving TLS on loopback.
pub struct TestEtcd {
    child: Child,
    data: TempDir,
    pki: Arc<TestPki>,
    name: String,
    client_url: String,
    peer_url: String,
}

impl std::fmt::Debug for TestEtcd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestEtcd")
            .field("name", &self.name)
            .field("client_url", &self.client_url)
            .finish_non_exhaustive()
    }
}

impl TestEtcd {
    /// Starts a single-member cluster with a fresh PKI, or returns `None` (test skipped) when the
    /// etcd binary is missing outside strict mode.
    pub async fn start(test: &str) -> Option<Self> {
        k0x_testkit::require_binaries(test, &["etcd"])?;
        Some(Self::start_member(Arc::new(TestPki::new()), "m1", None).await)
    }

    /// Starts a member named `name`. With `existing_cluster` (an `--initial-cluster` string from
    /// member add, and the new member's peer URL) it joins that cluster; without, it forms a new
    /// single-member cluster. A port taken by a concurrent test between probing and binding is
    /// retried with new ports.
    pub async fn start_member(
        pki: Arc<TestPki>,
        name: &str,
        existing_cluster: Option<(&str, &str)>,
    ) -> Self {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut etcd = Self::spawn(Arc::clone(&pki), name, existing_cluster);
            match etcd.wait_ready().await {
                Ok(()) => return etcd,
                Err(log) if attempt < 3 && log.contains("address already in use") => continue,
                Err(log) => panic!("etcd {name} did not start:\n{log}"),
            }
        }
    }

    fn spawn(pki: Arc<TestPki>, name: &str, existing_cluster: Option<(&str, &str)>) -> Self {
        let data = tempfile::tempdir().expect("temp dir for etcd data");
        let (client_url, peer_url) = match existing_cluster {
            Some((_, peer_url)) => (
                format!("https://127.0.0.1:{}", free_port()),
                peer_url.to_string(),
            ),
            None => (
                format!("https://127.0.0.1:{}", free_port()),
                format!("https://127.0.0.1:{}", free_port()),
            ),
        };
        let (initial_cluster, state) = match existing_cluster {
            Some((cluster, _)) => (cluster.to_string(), "existing"),
            None => (format!("{name}={peer_url}"), "new"),
        };
        let child = spawn_etcd(&EtcdArgs {
            pki: &pki,
            data: data.path(),
            name,
            client_url: &client_url,
            peer_url: &peer_url,
            initial_cluster: &initial_cluster,
            state,
        });
        Self {
            child,
            data,
            pki,
            name: name.to_string(),
            client_url,
            peer_url,
        }
    }

    /// A peer URL on a free loopback port, for a member about to be added.
    pub fn new_peer_url() -> String {
        format!("https://127.0.0.1:{}", free_port())
    }

    /// A client of this member only.
    pub fn client(&self) -> Client {
        Client::new(
            std::slice::from_ref(&self.client_url),
            &self.pki.client_tls(),
        )
        .expect("test etcd client")
    }

    pub fn pki(&self) -> &Arc<TestPki> {
        &self.pki
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn client_url(&self) -> &str {
        &self.client_url
    }

    pub fn peer_url(&self) -> &str {
        &self.peer_url
    }

    /// Waits for etcd to answer; on failure returns the end of its log.
    async fn wait_ready(&mut self) -> Result<(), String> {
        let client = self.client();
        let started = Instant::now();
        loop {
            let error = match client.status().await {
                Ok(_) => return Ok(()),
                Err(err) => err,
            };
            if let Ok(Some(exit)) = self.child.try_wait() {
                return Err(format!("etcd exited ({exit}):\n{}", self.log_tail()));
            }
            if started.elapsed() > START_TIMEOUT {
                return Err(format!(
                    "no answer within {START_TIMEOUT:?}: {error}\n{}",
                    self.log_tail()
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The last lines etcd logged (for failure messages).
    pub fn log_tail(&self) -> String {
        let log = fs::read_to_string(self.data.path().join("etcd.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

impl Drop for TestEtcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct EtcdArgs<'a> {
    pki: &'a TestPki,
    data: &'a Path,
    name: &'a str,
    client_url: &'a str,
    peer_url: &'a str,
    initial_cluster: &'a str,
    state: &'a str,
}

fn spawn_etcd(args: &EtcdArgs<'_>) -> Child {
    let log = fs::File::create(args.data.join("etcd.log")).expect("etcd log file");
    let cert = args.pki.member_cert_file();
    let key = args.pki.member_key_file();
    let ca = args.pki.ca_file();
    let mut command = Command::new("etcd");
    command
        .arg(format!("--name={}", args.name))
        .arg(format!("--data-dir={}", args.data.join("member").display()))
        .arg(format!("--listen-client-urls={}", args.client_url))
        .arg(format!("--advertise-client-urls={}", args.client_url))
        .arg(format!("--listen-peer-urls={}", args.peer_url))
        .arg(format!("--initial-advertise-peer-urls={}", args.peer_url))
        .arg(format!("--initial-cluster={}", args.initial_cluster))
        .arg(format!("--initial-cluster-state={}", args.state))
        .arg("--initial-cluster-token=k0x-test")
        .arg("--client-cert-auth")
        .arg(format!("--trusted-ca-file={}", ca.display()))
        .arg(format!("--cert-file={}", cert.display()))
        .arg(format!("--key-file={}", key.display()))
        .arg("--peer-client-cert-auth")
        .arg(format!("--peer-trusted-ca-file={}", ca.display()))
        .arg(format!("--peer-cert-file={}", cert.display()))
        .arg(format!("--peer-key-file={}", key.display()))
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("etcd log file"))
        .stderr(log);
    // SAFETY: the closure runs in the forked child before exec and only calls prctl(2), which is
    // async-signal-safe; it touches no memory shared with the parent.
    unsafe {
        command.pre_exec(|| {
            nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
                .map_err(std::io::Error::from)
        });
    }
    command.spawn().expect("start etcd")
}
