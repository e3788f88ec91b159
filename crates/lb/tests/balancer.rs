//! The balancer between real TCP sockets on loopback: backends that say their name and then
//! echo, and clients that connect through the balancer.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use k0x_lb::{Balancer, BalancerHandle};
use k0x_testkit::free_port;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], free_port()))
}

/// A stand-in apiserver: greets each connection with its name and a newline, then echoes.
struct Backend {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Backend {
    async fn start(name: &'static str) -> Self {
        Self::start_at(loopback(), name).await
    }

    async fn start_at(addr: SocketAddr, name: &'static str) -> Self {
        let listener = TcpListener::bind(addr).await.expect("bind a backend");
        let task = tokio::spawn(async move {
            let mut connections = JoinSet::new();
            loop {
                let (stream, _) = listener.accept().await.expect("accept");
                connections.spawn(greet_and_echo(stream, name));
            }
        });
        Self { addr, task }
    }

    /// Closes the listener and every connection, as a controller that died.
    async fn stop(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

async fn greet_and_echo(mut stream: TcpStream, name: &str) {
    if stream
        .write_all(format!("{name}\n").as_bytes())
        .await
        .is_err()
    {
        return;
    }
    let (mut read, mut write) = stream.split();
    let _ = tokio::io::copy(&mut read, &mut write).await;
}

struct Running {
    addr: SocketAddr,
    handle: BalancerHandle,
    task: JoinHandle<()>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn balance(backends: &[&Backend]) -> Running {
    let addrs = backends.iter().map(|b| b.addr).collect();
    let balancer = Balancer::new(loopback(), addrs).await.expect("listen");
    let addr = balancer.local_addr();
    let handle = balancer.handle();
    let task = tokio::spawn(balancer.run());
    Running { addr, handle, task }
}

/// A connection through the balancer, after the backend's greeting.
struct Client {
    stream: BufReader<TcpStream>,
    backend: String,
}

impl Client {
    async fn connect(balancer: SocketAddr) -> Self {
        let stream = TcpStream::connect(balancer).await.expect("connect");
        let mut stream = BufReader::new(stream);
        let mut backend = String::new();
        stream.read_line(&mut backend).await.expect("greeting");
        assert!(!backend.is_empty(), "the balancer closed the connection");
        let backend = backend.trim_end().to_owned();
        Self { stream, backend }
    }

    async fn echoes(&mut self, text: &str) -> bool {
        let line = format!("{text}\n");
        if self
            .stream
            .get_mut()
            .write_all(line.as_bytes())
            .await
            .is_err()
        {
            return false;
        }
        let mut answer = String::new();
        self.stream.read_line(&mut answer).await.is_ok() && answer == line
    }
}

/// The backend that answers one new connection, after an echo through it worked.
async fn ask(balancer: SocketAddr) -> String {
    let mut client = Client::connect(balancer).await;
    assert!(
        client.echoes("ping").await,
        "echo through {}",
        client.backend
    );
    client.backend
}

/// Waits for `condition`, polling, and fails after ten seconds.
async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    for _ in 0..200 {
        if condition() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{what} did not happen within 10 s");
}

#[tokio::test]
async fn bytes_pass_through_unchanged_both_ways_until_the_client_closes() {
    let backend = Backend::start("a").await;
    let lb = balance(&[&backend]).await;
    let Client {
        stream,
        backend: name,
    } = Client::connect(lb.addr).await;
    assert_eq!(name, "a");
    let (mut read, mut write) = stream.into_inner().into_split();
    let sent: Vec<u8> = (0..256 * 1024).map(|i: u32| (i % 251) as u8).collect();
    let writer = tokio::spawn({
        let sent = sent.clone();
        async move {
            write.write_all(&sent).await.expect("send");
            write.shutdown().await.expect("half-close");
        }
    });
    let mut received = Vec::new();
    read.read_to_end(&mut received)
        .await
        .expect("receive until the backend closes after the client's half-close");
    writer.await.expect("writer");
    assert!(received == sent, "the bytes came back changed");
}

#[tokio::test]
async fn connections_take_turns_among_the_backends() {
    let backends = [
        Backend::start("a").await,
        Backend::start("b").await,
        Backend::start("c").await,
    ];
    let lb = balance(&backends.iter().collect::<Vec<_>>()).await;
    let mut counts = BTreeMap::new();
    for _ in 0..30 {
        *counts.entry(ask(lb.addr).await).or_insert(0) += 1;
    }
    assert_eq!(
        counts,
        BTreeMap::from([("a".into(), 10), ("b".into(), 10), ("c".into(), 10)])
    );
}

#[tokio::test]
async fn a_stopped_backend_is_skipped_at_once_and_used_again_when_it_returns() {
    let a = Backend::start("a").await;
    let b = Backend::start("b").await;
    let (a_addr, b_addr) = (a.addr, b.addr);
    let lb = balance(&[&a, &b]).await;
    let mut first = vec![ask(lb.addr).await, ask(lb.addr).await];
    first.sort();
    assert_eq!(first, ["a", "b"]);

    a.stop().await;
    for _ in 0..4 {
        assert_eq!(
            ask(lb.addr).await,
            "b",
            "the first connection after the loss gets through"
        );
    }
    eventually("a marked down", || lb.handle.healthy() == [b_addr]).await;

    let _a = Backend::start_at(a_addr, "a").await;
    eventually("a marked up by the check", || {
        lb.handle.healthy().len() == 2
    })
    .await;
    let mut again = vec![ask(lb.addr).await, ask(lb.addr).await];
    again.sort();
    assert_eq!(again, ["a", "b"]);
}

#[tokio::test]
async fn a_backend_believed_down_is_still_tried_when_none_is_healthy() {
    let a = Backend::start("a").await;
    let a_addr = a.addr;
    let lb = balance(&[&a]).await;
    a.stop().await;
    let mut refused = TcpStream::connect(lb.addr).await.expect("connect");
    let mut rest = Vec::new();
    refused
        .read_to_end(&mut rest)
        .await
        .expect("closed, not reset");
    assert!(
        rest.is_empty(),
        "no backend, so the balancer closes the client's connection"
    );
    assert!(lb.handle.healthy().is_empty());

    let _a = Backend::start_at(a_addr, "a").await;
    assert_eq!(ask(lb.addr).await, "a");
}

#[tokio::test]
async fn new_backends_take_new_connections_and_old_connections_stay() {
    let a = Backend::start("a").await;
    let b = Backend::start("b").await;
    let lb = balance(&[&a]).await;
    let mut old = Client::connect(lb.addr).await;
    assert_eq!(old.backend, "a");

    lb.handle.set_backends(vec![b.addr]);
    assert_eq!(lb.handle.backends(), [b.addr]);
    for _ in 0..3 {
        assert_eq!(ask(lb.addr).await, "b");
    }
    assert!(
        old.echoes("still here").await,
        "the connection to a stays open"
    );
}

#[tokio::test]
async fn with_no_backends_a_client_is_closed_not_left_hanging() {
    let lb = balance(&[]).await;
    let mut client = TcpStream::connect(lb.addr).await.expect("connect");
    let mut rest = Vec::new();
    client.read_to_end(&mut rest).await.expect("closed");
    assert!(rest.is_empty());
}

#[tokio::test]
async fn a_listen_address_in_use_is_one_clear_line() {
    let taken = std::net::TcpListener::bind(loopback()).expect("take a port");
    let addr = taken.local_addr().expect("address");
    let error = Balancer::new(addr, Vec::new())
        .await
        .expect_err("the address is taken");
    let message = error.to_string();
    assert!(message.contains(&addr.to_string()), "{message}");
    assert!(message.contains("in use"), "{message}");
    assert!(!message.contains('\n'), "{message}");
}
