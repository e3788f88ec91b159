//! Join benchmarks against a real etcd and the join API on loopback.
//!
//! 1. Worker join latency: token string -> CA pinned -> key + CSR -> certificate -> files on disk
//!    (goal: at most 300 ms), next to a baseline in the same run: one bare `GET /v1/ca` over a
//!    fresh TLS connection.
//! 2. 200 concurrent joins, valid ones and forged ones (the forged from another loopback source,
//!    as an attacker would be): every valid join must succeed; p50/p99 are printed. The load is
//!    one bounded wave and stops by itself.

// A benchmark's output is its report.
#![allow(clippy::print_stdout)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::net::IpAddr;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use common::JoinApi;
use k0x_config::DataDir;
use k0x_etcd::testing::TestEtcd;
use k0x_join::material::write_worker_files;
use k0x_join::ratelimit::RateLimit;
use k0x_join::{JoinClient, Token, TokenRole};

const LATENCY_RUNS: usize = 20;
const CONCURRENT: usize = 200;
const INVALID_SHARE: usize = 4; // one in four concurrent joins is forged
const WAVE_TIMEOUT: Duration = Duration::from_secs(120);

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let Some(etcd) = TestEtcd::start("bench join").await else {
        println!("join benchmark skipped: etcd not installed");
        return;
    };
    let api = JoinApi::start(&etcd, RateLimit::default()).await;
    latency(&etcd, &api).await;
    concurrent(&etcd, &api).await;
}

async fn latency(etcd: &TestEtcd, api: &JoinApi) {
    let token = api
        .token(etcd, TokenRole::Worker, Duration::from_secs(3600))
        .await
        .encode();
    let mut baseline = Vec::new();
    let mut joins = Vec::new();
    for run in 0..LATENCY_RUNS {
        let started = Instant::now();
        JoinClient::new(Token::parse(&token).unwrap())
            .cluster_ca()
            .await
            .unwrap();
        baseline.push(started.elapsed());

        let data_dir = tempfile::tempdir().unwrap();
        let started = Instant::now();
        let client = JoinClient::new(Token::parse(&token).unwrap());
        let joined = client.join_worker(&format!("latency-{run}")).await.unwrap();
        write_worker_files(&DataDir::new(data_dir.path()), &joined).unwrap();
        joins.push(started.elapsed());
    }
    let (join_p50, base_p50) = (percentile(&mut joins, 50), percentile(&mut baseline, 50));
    println!(
        "worker join latency (token -> cert + config on disk), {LATENCY_RUNS} runs: p50 {:.1} ms, max {:.1} ms (goal <= 300 ms: {})",
        ms(join_p50),
        ms(*joins.last().unwrap()),
        if join_p50 <= Duration::from_millis(300) {
            "met"
        } else {
            "MISSED"
        },
    );
    println!(
        "baseline CA fetch (new TLS connection + GET /v1/ca): p50 {:.1} ms; join/baseline ratio {:.1}",
        ms(base_p50),
        join_p50.as_secs_f64() / base_p50.as_secs_f64()
    );
}

async fn concurrent(etcd: &TestEtcd, api: &JoinApi) {
    let mut tokens = Vec::new();
    for _ in 0..10 {
        tokens.push(
            api.token(etcd, TokenRole::Worker, Duration::from_secs(3600))
                .await,
        );
    }
    let attacker: IpAddr = "127.0.0.2".parse().unwrap();
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(CONCURRENT);
    for i in 0..CONCURRENT {
        let valid = i % INVALID_SHARE != 0;
        let token = tokens[i % tokens.len()].clone();
        tasks.push(tokio::spawn(async move {
            let client = if valid {
                JoinClient::new(token)
            } else {
                JoinClient::new(forge(&token)).with_local_addr(attacker)
            };
            let begun = Instant::now();
            let result = client.join_worker(&format!("load-{i}")).await;
            (
                valid,
                result.map(drop).map_err(|e| e.to_string()),
                begun.elapsed(),
            )
        }));
    }
    let mut valid_latencies = Vec::new();
    let mut invalid_latencies = Vec::new();
    let mut valid_failures = Vec::new();
    let mut forged_accepted = 0;
    let wave = async {
        for task in tasks {
            let (valid, result, elapsed) = task.await.unwrap();
            match (valid, result) {
                (true, Ok(())) => valid_latencies.push(elapsed),
                (true, Err(err)) => valid_failures.push(err),
                (false, Ok(())) => forged_accepted += 1,
                (false, Err(_)) => invalid_latencies.push(elapsed),
            }
        }
    };
    tokio::time::timeout(WAVE_TIMEOUT, wave)
        .await
        .expect("the concurrent wave finished in time");
    let total = started.elapsed();
    println!(
        "{CONCURRENT} concurrent joins in {:.0} ms: valid ok {} (p50 {:.1} ms, p99 {:.1} ms), valid failed {}, forged refused {} (p50 {:.1} ms, p99 {:.1} ms), forged accepted {forged_accepted}",
        ms(total),
        valid_latencies.len(),
        ms(percentile(&mut valid_latencies, 50)),
        ms(percentile(&mut valid_latencies, 99)),
        valid_failures.len(),
        invalid_latencies.len(),
        ms(percentile(&mut invalid_latencies, 50)),
        ms(percentile(&mut invalid_latencies, 99)),
    );
    for failure in valid_failures.iter().take(5) {
        println!("  valid join failed: {failure}");
    }
    assert!(valid_failures.is_empty(), "valid joins failed under load");
    assert_eq!(forged_accepted, 0, "forged tokens were accepted");
}

fn forge(token: &Token) -> Token {
    let text = token.encode();
    let json = B64URL.decode(&text["k0x1.".len()..]).unwrap();
    let mut wire: serde_json::Value = serde_json::from_slice(&json).unwrap();
    wire["secret"] = serde_json::Value::String(B64URL.encode([3u8; 32]));
    Token::parse(&format!("k0x1.{}", B64URL.encode(wire.to_string()))).unwrap()
}

fn percentile(samples: &mut [Duration], pct: usize) -> Duration {
    if samples.is_empty() {
        return Duration::ZERO;
    }
    samples.sort_unstable();
    samples[(samples.len() * pct / 100).min(samples.len() - 1)]
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}
