//! Time from starting etcd to its first healthy answer: with the arguments and PKI k0x
//! generates (mutual TLS, quota, compaction) versus bare etcd (no TLS, only the flags needed to
//! move it off the default ports), on the same machine in the same run. Prints both medians and
//! the ratio (goal: <= 1.15). Rounds alternate which side goes first so drift and order affect both alike.
//!
//! A fresh single member waits out raft's randomized election timeout (up to about a second),
//! which dominates the spread of single samples; compare the minimums for the fixed cost of
//! TLS and the generated flags, and the medians over many rounds.
//!
//! Run: `cargo bench -p k0x-node --bench etcd_start` (K0X_BENCH_ROUNDS, default 9).

#[path = "../tests/support/mod.rs"]
mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k0x_config::pki_names;
use k0x_node::{NodeContext, controller_components};
use rustls::pki_types::ServerName;
use support::ChildGuard;

const POLL: Duration = Duration::from_millis(5);
const LIMIT: Duration = Duration::from_secs(60);

fn health_response(stream: &mut impl ReadWrite) -> bool {
    let request = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
    let mut response = String::new();
    stream.write_all(request).is_ok()
        && stream.read_to_string(&mut response).is_ok()
        && response.starts_with("HTTP/1.1 200")
        && response.contains("\"health\":\"true\"")
}

trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

fn plain_healthy(port: u16) -> bool {
    TcpStream::connect(("127.0.0.1", port)).is_ok_and(|mut s| health_response(&mut s))
}

fn tls_config(ctx: &NodeContext) -> Arc<rustls::ClientConfig> {
    let read = |p: &Path| std::fs::read(p).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    let ca = read(&ctx.data.pki_cert(pki_names::ETCD_CA));
    for cert in rustls_pemfile::certs(&mut ca.as_slice()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let cert = read(&ctx.data.pki_cert(pki_names::ETCD_K0X_CLIENT));
    let certs = rustls_pemfile::certs(&mut cert.as_slice())
        .map(Result::unwrap)
        .collect();
    let key = read(&ctx.data.pki_key(pki_names::ETCD_K0X_CLIENT));
    let key = rustls_pemfile::private_key(&mut key.as_slice())
        .unwrap()
        .unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(certs, key)
        .unwrap();
    Arc::new(config)
}

fn tls_healthy(config: &Arc<rustls::ClientConfig>, port: u16) -> bool {
    let Ok(tcp) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let name = ServerName::try_from("127.0.0.1").unwrap();
    let conn = rustls::ClientConnection::new(config.clone(), name).unwrap();
    let mut stream = rustls::StreamOwned::new(conn, tcp);
    health_response(&mut stream)
}

/// Spawns `command`, returns the time until `healthy` first holds, then stops the process.
fn time_to_healthy(command: &mut Command, mut healthy: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    let child = ChildGuard::spawn(command.stdout(Stdio::null()).stderr(Stdio::null()));
    while !healthy() {
        assert!(start.elapsed() < LIMIT, "etcd did not become healthy");
        std::thread::sleep(POLL);
    }
    let elapsed = start.elapsed();
    child.stop();
    elapsed
}

fn k0x_round(etcd: &Path) -> Duration {
    let tmp = tempfile::tempdir().unwrap();
    let bin = support::bin_dir(tmp.path(), &[etcd.to_path_buf()]);
    let mut ctx = support::context(tmp.path(), "bench", "127.0.0.1", &bin);
    ctx.config.spec.storage.etcd.client_port = k0x_testkit::free_port();
    ctx.config.spec.storage.etcd.peer_port = k0x_testkit::free_port();
    support::pki::generate(&ctx.data, "bench", "127.0.0.1");
    let components = controller_components();
    let component = components.iter().find(|c| c.name() == "etcd").unwrap();
    component.prepare(&ctx).unwrap();
    let spec = component.spec(&ctx).unwrap();
    let config = tls_config(&ctx);
    let port = ctx.config.spec.storage.etcd.client_port;
    let mut command = Command::new(&spec.path);
    command.args(&spec.args).envs(&spec.env);
    time_to_healthy(&mut command, || tls_healthy(&config, port))
}

fn bare_round(etcd: &Path) -> Duration {
    let tmp = tempfile::tempdir().unwrap();
    let (client, peer) = (k0x_testkit::free_port(), k0x_testkit::free_port());
    let client_url = format!("http://127.0.0.1:{client}");
    let peer_url = format!("http://127.0.0.1:{peer}");
    let mut command = Command::new(etcd);
    command
        .arg(format!("--data-dir={}", tmp.path().join("etcd").display()))
        .arg(format!("--listen-client-urls={client_url}"))
        .arg(format!("--advertise-client-urls={client_url}"))
        .arg(format!("--listen-peer-urls={peer_url}"))
        .arg(format!("--initial-advertise-peer-urls={peer_url}"))
        .arg(format!("--initial-cluster=default={peer_url}"));
    time_to_healthy(&mut command, || plain_healthy(client))
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

#[allow(clippy::print_stdout, reason = "a benchmark reports on stdout")]
fn main() {
    let Some(etcd) = k0x_testkit::find_binary("etcd") else {
        println!("etcd_start: not run: no etcd binary on PATH (run scripts/setup-packages.sh)");
        return;
    };
    let rounds: usize = std::env::var("K0X_BENCH_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(9);
    let (mut k0x, mut bare) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        if round % 2 == 0 {
            bare.push(bare_round(&etcd));
            k0x.push(k0x_round(&etcd));
        } else {
            k0x.push(k0x_round(&etcd));
            bare.push(bare_round(&etcd));
        }
    }
    let show = |v: &[Duration]| {
        v.iter()
            .map(|d| format!("{:.0}", d.as_secs_f64() * 1e3))
            .collect::<Vec<_>>()
            .join(" ")
    };
    println!(
        "etcd start to healthy, {rounds} rounds, ms: bare [{}] k0x [{}]",
        show(&bare),
        show(&k0x)
    );
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let (k0x_min, bare_min) = (*k0x.iter().min().unwrap(), *bare.iter().min().unwrap());
    let (k0x, bare) = (median(k0x), median(bare));
    println!(
        "median: bare {:.1} ms, k0x (mTLS, generated args) {:.1} ms, ratio {:.3} (goal <= 1.15)",
        ms(bare),
        ms(k0x),
        ms(k0x) / ms(bare)
    );
    println!(
        "minimum: bare {:.1} ms, k0x {:.1} ms, ratio {:.3}",
        ms(bare_min),
        ms(k0x_min),
        ms(k0x_min) / ms(bare_min)
    );
}
