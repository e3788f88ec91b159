//! The admin socket (`<run-dir>/k0x.sock`, mode 0600): how `k0x status` (and later `k0x token`)
//! talk to the running server. HTTP/1 with JSON bodies over a unix socket: easy to debug with
//! `curl --unix-socket`, and only root can connect.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use anyhow::Context;
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use k0x_config::RunDir;
use k0x_supervisor::ComponentStatus;
use serde::{Deserialize, Serialize};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::watch;

use super::Plan;

/// Path of the status endpoint.
pub const STATUS_PATH: &str = "/v1/status";

/// What `k0x status` shows.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeStatus {
    pub role: String,
    pub node_name: String,
    pub api_address: String,
    pub data_dir: PathBuf,
    pub run_dir: PathBuf,
    pub pid: u32,
    pub components: Vec<ComponentView>,
}

/// One component as status shows it: running ones carry the supervisor's view, the others why
/// they do not run.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ComponentView {
    pub name: String,
    pub state: String,
    pub pid: Option<u32>,
    pub restarts: u32,
    pub last_exit: Option<String>,
    /// Seconds since the Unix epoch at which the component entered `state`.
    pub since: Option<u64>,
    pub message: Option<String>,
}

impl ComponentView {
    fn supervised(status: &ComponentStatus) -> Self {
        Self {
            name: status.name.clone(),
            state: serde_json::to_value(status.state)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default(),
            pid: status.pid,
            restarts: status.restarts,
            last_exit: status.last_exit.map(|exit| exit.to_string()),
            since: status
                .since
                .duration_since(SystemTime::UNIX_EPOCH)
                .ok()
                .map(|d| d.as_secs()),
            message: status.message.clone(),
        }
    }

    fn not_running(name: &str, state: &str, reason: &str) -> Self {
        Self {
            name: name.to_owned(),
            state: state.to_owned(),
            pid: None,
            restarts: 0,
            last_exit: None,
            since: None,
            message: Some(reason.to_owned()),
        }
    }
}

/// The facts status reports that do not change, plus the supervisor's live view.
#[derive(Debug, Clone)]
pub struct StatusSource {
    base: NodeStatus,
    /// Components the supervisor will run, listed as waiting until it has launched them.
    planned: Vec<String>,
    not_running: Vec<ComponentView>,
    live: watch::Receiver<Vec<ComponentStatus>>,
}

impl StatusSource {
    pub fn new(plan: &Plan, live: watch::Receiver<Vec<ComponentStatus>>) -> Self {
        let ctx = &plan.ctx;
        let not_running = plan
            .unavailable
            .iter()
            .map(|(name, reason)| ComponentView::not_running(name, "missing", reason))
            .chain(plan.disabled.iter().map(|name| {
                ComponentView::not_running(name, "disabled", "turned off with --disable-components")
            }))
            .collect();
        let base = NodeStatus {
            role: plan.role.name().to_owned(),
            node_name: ctx.node.name.clone(),
            api_address: format!("https://{}:{}", ctx.node.address, ctx.config.spec.api.port),
            data_dir: ctx.data.root().to_owned(),
            run_dir: ctx.run.root().to_owned(),
            pid: std::process::id(),
            components: Vec::new(),
        };
        Self {
            base,
            planned: plan.specs.iter().map(|spec| spec.name.clone()).collect(),
            not_running,
            live,
        }
    }

    fn snapshot(&self) -> NodeStatus {
        let mut status = self.base.clone();
        status.components = self
            .live
            .borrow()
            .iter()
            .map(ComponentView::supervised)
            .collect();
        let unlaunched: Vec<ComponentView> = self
            .planned
            .iter()
            .filter(|name| !status.components.iter().any(|c| &c.name == *name))
            .map(|name| ComponentView::not_running(name, "waiting", "not launched yet"))
            .collect();
        status.components.extend(unlaunched);
        status.components.extend(self.not_running.iter().cloned());
        status
    }
}

/// The listening admin socket.
#[derive(Debug)]
pub struct AdminServer {
    listener: UnixListener,
    status: Arc<StatusSource>,
}

impl AdminServer {
    /// Binds `<run-dir>/k0x.sock` with mode 0600. A leftover socket of a dead k0x is replaced (the
    /// data-dir lock, already held, proves no other k0x serves it).
    pub fn bind(run: &RunDir, status: StatusSource) -> anyhow::Result<Self> {
        let path = run.admin_socket();
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
            Err(err) => {
                return Err(err).with_context(|| format!("cannot replace {}", path.display()));
            }
        }
        let listener = UnixListener::bind(&path).with_context(|| {
            format!(
                "cannot listen on the admin socket {}; check --run-dir",
                path.display()
            )
        })?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
            .with_context(|| format!("cannot restrict {} to mode 0600", path.display()))?;
        Ok(Self {
            listener,
            status: Arc::new(status),
        })
    }

    /// Answers requests until the task is aborted.
    pub async fn serve(self) {
        loop {
            let stream = match self.listener.accept().await {
                Ok((stream, _)) => stream,
                Err(err) => {
                    tracing::warn!(%err, "admin socket accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            };
            let status = Arc::clone(&self.status);
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |request| {
                    let status = Arc::clone(&status);
                    async move { Ok::<_, std::convert::Infallible>(route(&status, &request)) }
                });
                if let Err(err) = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await
                {
                    tracing::debug!(%err, "admin connection ended");
                }
            });
        }
    }
}

fn route(status: &StatusSource, request: &Request<Incoming>) -> Response<Full<Bytes>> {
    match (request.method(), request.uri().path()) {
        (&Method::GET, STATUS_PATH) => json(StatusCode::OK, &status.snapshot()),
        (method, path) => json(
            StatusCode::NOT_FOUND,
            &serde_json::json!({ "error": format!("no admin endpoint {method} {path}") }),
        ),
    }
}

fn json(code: StatusCode, body: &impl Serialize) -> Response<Full<Bytes>> {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    let mut response = Response::new(Full::new(Bytes::from(bytes)));
    *response.status_mut() = code;
    response
}

/// Asks the server behind `run`'s admin socket for its status.
pub async fn fetch_status(run: &RunDir) -> anyhow::Result<NodeStatus> {
    let body = get(&run.admin_socket(), STATUS_PATH).await?;
    serde_json::from_slice(&body).context("the server's status answer is not the expected JSON")
}

async fn get(socket: &Path, path: &str) -> anyhow::Result<Bytes> {
    let stream = UnixStream::connect(socket).await.with_context(|| {
        format!(
            "k0x is not running here: cannot connect to {} (start it with `k0x server` or `k0x start`, \
             or pass the server's --run-dir)",
            socket.display()
        )
    })?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .context("admin socket handshake failed")?;
    tokio::spawn(connection);
    let request = Request::get(path)
        .header("host", "k0x")
        .body(Full::new(Bytes::new()))
        .context("building the admin request")?;
    let response = sender
        .send_request(request)
        .await
        .context("admin request failed")?;
    let code = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .context("reading the admin answer")?
        .to_bytes();
    anyhow::ensure!(
        code.is_success(),
        "the k0x server answered {code}: {}",
        String::from_utf8_lossy(&body)
    );
    Ok(body)
}
