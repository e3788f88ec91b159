//! `k0x server` against bare etcd, same machine, same run, same etcd binary:
//! - time from starting `k0x server` (controller only: etcd, the kube-* are absent here) to etcd
//!   answering `/health` over mutual TLS, versus bare etcd (no TLS, only moved off the default
//!   ports) to `/health` over plain HTTP; fresh data dirs (k0x also writes its PKI), then a
//!   restart of each on its existing data. Rounds alternate which side goes first.
//! - k0x's own memory (VmRSS and VmHWM of the k0x process, children excluded) while it
//!   supervises etcd and containerd (`--enable-worker`), after a burst of `k0x status` calls.
//!
//! Prints samples, medians and ratios (goal: start ratio <= 1.15, RSS <= 20 MiB); asserts
//! nothing about time. Run: `scripts/bench-server.sh` (K0X_BENCH_ROUNDS, default 7).

#[path = "../tests/common/mod.rs"]
mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::Node;
use k0x_config::pki_names;
use nix::sys::signal::Signal;
use rustls::pki_types::ServerName;

const POLL: Duration = Duration::from_millis(5);

fn health_answer(stream: &mut (impl Read + Write)) -> bool {
    let request = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
    let mut answer = String::new();
    stream.write_all(request).is_ok()
        && stream.read_to_string(&mut answer).is_ok()
        && answer.starts_with("HTTP/1.1 200")
        && answer.contains("\"health\":\"true\"")
}

fn plain_healthy(port: u16) -> bool {
    TcpStream::connect(("127.0.0.1", port)).is_ok_and(|mut s| health_answer(&mut s))
}

/// The k0x etcd client identity, once k0x has written it (`None` before).
fn tls_config(node: &Node) -> Option<Arc<rustls::ClientConfig>> {
    let data = node.layout();
    let ca = std::fs::read(data.pki_cert(pki_names::ETCD_CA)).ok()?;
    let cert = std::fs::read(data.pki_cert(pki_names::ETCD_K0X_CLIENT)).ok()?;
    let key = std::fs::read(data.pki_key(pki_names::ETCD_K0X_CLIENT)).ok()?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut ca.as_slice()) {
        roots.add(cert.ok()?).ok()?;
    }
    let chain = rustls_pemfile::certs(&mut cert.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .ok()?;
    let key = rustls_pemfile::private_key(&mut key.as_slice()).ok()??;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .ok()?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .ok()?;
    Some(Arc::new(config))
}

fn tls_healthy(config: &Arc<rustls::ClientConfig>, port: u16) -> bool {
    let Ok(tcp) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let name = ServerName::try_from("127.0.0.1").unwrap();
    let conn = rustls::ClientConnection::new(Arc::clone(config), name).unwrap();
    health_answer(&mut rustls::StreamOwned::new(conn, tcp))
}

fn poll_until(start: Instant, mut healthy: impl FnMut() -> bool) -> Duration {
    while !healthy() {
        assert!(start.elapsed() < common::LIMIT, "etcd never became healthy");
        std::thread::sleep(POLL);
    }
    start.elapsed()
}

/// Starts `k0x server` on `node` and times it to etcd's first healthy mTLS answer.
fn k0x_to_healthy(node: &mut Node) -> Duration {
    let start = Instant::now();
    node.start(&[]);
    let port = node.ports.etcd_client;
    let mut config = None;
    poll_until(start, || {
        if config.is_none() {
            config = tls_config(node);
        }
        config.as_ref().is_some_and(|c| tls_healthy(c, port))
    })
}

/// fresh start, restart: k0x.
fn k0x_round() -> (Duration, Duration) {
    let mut node = Node::new("bench-server").expect("prerequisites");
    let fresh = k0x_to_healthy(&mut node);
    assert!(
        node.stop(Signal::SIGTERM).success(),
        "k0x exit:\n{}",
        node.log()
    );
    let restart = k0x_to_healthy(&mut node);
    assert!(
        node.stop(Signal::SIGTERM).success(),
        "k0x exit:\n{}",
        node.log()
    );
    (fresh, restart)
}

/// Bare etcd on its own process, killed when dropped.
struct BareEtcd(Child);

impl Drop for BareEtcd {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.0.id() as i32),
            Signal::SIGTERM,
        );
        let _ = self.0.wait();
    }
}

fn bare_to_healthy(etcd: &Path, data: &Path, client: u16, peer: u16) -> Duration {
    let client_url = format!("http://127.0.0.1:{client}");
    let peer_url = format!("http://127.0.0.1:{peer}");
    let start = Instant::now();
    let _etcd = BareEtcd(
        Command::new(etcd)
            .arg(format!("--data-dir={}", data.display()))
            .arg(format!("--listen-client-urls={client_url}"))
            .arg(format!("--advertise-client-urls={client_url}"))
            .arg(format!("--listen-peer-urls={peer_url}"))
            .arg(format!("--initial-advertise-peer-urls={peer_url}"))
            .arg(format!("--initial-cluster=default={peer_url}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    poll_until(start, || plain_healthy(client))
}

/// fresh start, restart: bare etcd (the binary staged for k0x, so both run the same file).
fn bare_round() -> (Duration, Duration) {
    let node = Node::new("bench-server").expect("prerequisites");
    let etcd = node.bin().join("etcd");
    let data = node.root.join("bare-etcd");
    let (client, peer) = (common::free_port(), common::free_port());
    let fresh = bare_to_healthy(&etcd, &data, client, peer);
    let restart = bare_to_healthy(&etcd, &data, client, peer);
    (fresh, restart)
}

/// VmRSS and VmHWM of `pid`, in KiB.
fn memory(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

#[allow(clippy::print_stdout, reason = "a benchmark reports on stdout")]
fn rss() {
    let mut node = Node::new("bench-server").expect("prerequisites");
    node.start(&["--enable-worker"]);
    node.wait_ready(&["etcd", "containerd"]);
    let pid = node.server_pid();
    let (ready_rss, _) = memory(pid);
    for _ in 0..50 {
        node.status().expect("status answers");
    }
    std::thread::sleep(Duration::from_secs(2));
    let (rss, hwm) = memory(pid);
    let mib = |kib: u64| kib as f64 / 1024.0;
    println!(
        "k0x process memory supervising etcd+containerd: VmRSS {:.1} MiB when ready, {:.1} MiB after 50 status calls, VmHWM {:.1} MiB (goal <= 20 MiB)",
        mib(ready_rss),
        mib(rss),
        mib(hwm)
    );
    assert!(
        node.stop(Signal::SIGTERM).success(),
        "k0x exit:\n{}",
        node.log()
    );
}

fn median(samples: &[Duration]) -> f64 {
    let mut sorted = samples.to_vec();
    sorted.sort();
    sorted[sorted.len() / 2].as_secs_f64() * 1e3
}

fn show(samples: &[Duration]) -> String {
    samples
        .iter()
        .map(|d| format!("{:.0}", d.as_secs_f64() * 1e3))
        .collect::<Vec<_>>()
        .join(" ")
}

#[allow(clippy::print_stdout, reason = "a benchmark reports on stdout")]
fn main() {
    if !nix::unistd::geteuid().is_root() || k0x_testkit::find_binary("etcd").is_none() {
        println!("bench-server: not run: needs root and etcd (run scripts/setup-packages.sh)");
        return;
    }
    let rounds: usize = std::env::var("K0X_BENCH_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(7);
    let (mut k0x_fresh, mut k0x_restart, mut bare_fresh, mut bare_restart) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for round in 0..rounds {
        let (k0x, bare) = if round % 2 == 0 {
            let bare = bare_round();
            (k0x_round(), bare)
        } else {
            let k0x = k0x_round();
            (k0x, bare_round())
        };
        k0x_fresh.push(k0x.0);
        k0x_restart.push(k0x.1);
        bare_fresh.push(bare.0);
        bare_restart.push(bare.1);
    }
    for (what, k0x, bare) in [
        ("fresh data dir", &k0x_fresh, &bare_fresh),
        ("restart on existing data", &k0x_restart, &bare_restart),
    ] {
        println!(
            "start to etcd healthy, {what}, {rounds} rounds, ms: bare etcd [{}] k0x server [{}]",
            show(bare),
            show(k0x)
        );
        println!(
            "  median: bare {:.1} ms, k0x {:.1} ms, ratio {:.3} (goal <= 1.15)",
            median(bare),
            median(k0x),
            median(k0x) / median(bare)
        );
    }
    rss();
}
