//! The proxy: accept, pick a backend, connect, copy bytes both ways until either side closes.
//!
//! It works at layer 4 so TLS passes through untouched: the kubelet still verifies the
//! apiserver's certificate (which carries 127.0.0.1) and presents its own client certificate to
//! the apiserver, and the balancer holds no key. Health comes from two sources: a TCP connect to
//! every backend each [`CHECK_INTERVAL`], and every real connect, so a controller that died is
//! skipped from the first connection that finds it dead, not a check period later.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio::time::{MissedTickBehavior, timeout};

use crate::error::ListenError;
use crate::pool::{Health, Pool};

/// How often every backend is checked.
pub const CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// How long a connect, checked or real, may take before the backend counts as down.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// How long the accept loop rests after the listener failed (out of file descriptors, say),
/// so a failure that persists does not spin.
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);

/// A bound listener that forwards its connections to the backends once [`run`](Self::run).
#[derive(Debug)]
pub struct Balancer {
    listener: TcpListener,
    shared: Arc<Shared>,
}

/// Changes a running balancer's backends and reads their health; cheap to clone.
#[derive(Debug, Clone)]
pub struct BalancerHandle {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    pool: Mutex<Pool>,
    changed: Notify,
}

impl Balancer {
    /// Listens on `listen` now, so a taken address is reported before anything relies on the
    /// balancer; forwarding starts with [`run`](Self::run).
    pub async fn new(listen: SocketAddr, backends: Vec<SocketAddr>) -> Result<Self, ListenError> {
        let listener = TcpListener::bind(listen)
            .await
            .map_err(|source| ListenError {
                addr: listen,
                source,
            })?;
        let shared = Arc::new(Shared {
            pool: Mutex::new(Pool::new(backends)),
            changed: Notify::new(),
        });
        Ok(Self { listener, shared })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound TCP listener has an address")
    }

    pub fn handle(&self) -> BalancerHandle {
        BalancerHandle {
            shared: Arc::clone(&self.shared),
        }
    }

    /// Forwards connections and checks the backends until the future is dropped; dropping it
    /// closes the listener and every connection it forwards.
    pub async fn run(self) {
        let mut connections = JoinSet::new();
        let checks = check_forever(Arc::clone(&self.shared));
        tokio::pin!(checks);
        loop {
            tokio::select! {
                () = &mut checks => {}
                accepted = self.listener.accept() => match accepted {
                    Ok((client, _)) => {
                        connections.spawn(forward(Arc::clone(&self.shared), client));
                    }
                    Err(error) => {
                        tracing::warn!("the API load balancer cannot accept a connection: {error}");
                        tokio::time::sleep(ACCEPT_PAUSE).await;
                    }
                },
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
            }
        }
    }
}

impl BalancerHandle {
    /// Replaces the backends: new connections go only to these; connections already forwarded
    /// to a removed backend stay open. A backend that stays keeps its health.
    pub fn set_backends(&self, backends: Vec<SocketAddr>) {
        self.shared.pool().set(backends);
        self.shared.changed.notify_one();
    }

    /// The backends, in the order last given.
    pub fn backends(&self) -> Vec<SocketAddr> {
        self.shared.pool().addresses()
    }

    /// The backends whose last check or connect succeeded.
    pub fn healthy(&self) -> Vec<SocketAddr> {
        let pool = self.shared.pool();
        let addresses = pool.addresses();
        addresses
            .into_iter()
            .filter(|addr| pool.health(*addr) == Some(Health::Up))
            .collect()
    }
}

impl Shared {
    fn pool(&self) -> MutexGuard<'_, Pool> {
        self.pool.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records a result and logs it when it changes the backend's health.
    fn mark(&self, backend: SocketAddr, result: Result<(), String>) {
        let before = self.pool().mark(backend, result.is_ok());
        match (before, result) {
            (None, _) => {}
            (Some(_), Ok(())) => tracing::info!(%backend, "API backend is up"),
            (Some(_), Err(error)) => tracing::warn!(%backend, "API backend is down: {error}"),
        }
    }

    /// The first backend that accepts a connection, in the pool's order.
    async fn connect(&self) -> Option<(TcpStream, SocketAddr)> {
        let order = self.pool().order();
        for backend in order {
            match connect(backend).await {
                Ok(stream) => {
                    self.mark(backend, Ok(()));
                    return Some((stream, backend));
                }
                Err(error) => self.mark(backend, Err(error)),
            }
        }
        None
    }
}

async fn connect(backend: SocketAddr) -> Result<TcpStream, String> {
    match timeout(CONNECT_TIMEOUT, TcpStream::connect(backend)).await {
        Ok(Ok(stream)) => Ok(stream),
        Ok(Err(error)) => Err(error.to_string()),
        Err(_) => Err(format!("no connection within {CONNECT_TIMEOUT:?}")),
    }
}

async fn forward(shared: Arc<Shared>, mut client: TcpStream) {
    let Some((mut upstream, backend)) = shared.connect().await else {
        tracing::debug!("no API backend accepted a connection; closing the client's");
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    if let Err(error) = tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
        tracing::debug!(%backend, "forwarded connection ended: {error}");
    }
}

/// Checks every backend each [`CHECK_INTERVAL`], and at once when the list changed.
async fn check_forever(shared: Arc<Shared>) {
    let mut tick = tokio::time::interval(CHECK_INTERVAL);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = shared.changed.notified() => {}
        }
        check_all(&shared).await;
    }
}

async fn check_all(shared: &Arc<Shared>) {
    let mut checks = JoinSet::new();
    for backend in shared.pool().addresses() {
        checks.spawn(async move { (backend, connect(backend).await.map(drop)) });
    }
    while let Some(joined) = checks.join_next().await {
        if let Ok((backend, result)) = joined {
            shared.mark(backend, result);
        }
    }
}
