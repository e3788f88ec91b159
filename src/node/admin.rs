//! The admin socket (`<run-dir>/k0x.sock`, mode 0600): how `k0x status` and `k0x token` talk to
//! the running server. HTTP/1 with JSON bodies over a unix socket: easy to debug with
//! `curl --unix-socket`, and only root can connect.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

use anyhow::Context;
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use k0x_config::RunDir;
use k0x_join::admin::{self, AdminClient, AdminHandler, TokenAdmin};
use k0x_join::http;
use k0x_supervisor::ComponentStatus;
use serde::{Deserialize, Serialize};
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
    /// The version its binary reported when the payload was staged (`None`: not from a payload).
    pub version: Option<String>,
    /// Seconds since the Unix epoch at which the component entered `state`.
    pub since: Option<u64>,
    pub message: Option<String>,
}

impl ComponentView {
    fn supervised(status: &ComponentStatus, versions: &BTreeMap<String, String>) -> Self {
        Self {
            name: status.name.clone(),
            state: serde_json::to_value(status.state)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default(),
            pid: status.pid,
            restarts: status.restarts,
            last_exit: status.last_exit.map(|exit| exit.to_string()),
            version: versions.get(&status.name).cloned(),
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
            version: None,
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
    /// Component versions from `bin/.manifest`, read once: binaries change only with a restart.
    versions: BTreeMap<String, String>,
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
        let versions = k0x_assets::components_report(&ctx.data, None)
            .into_iter()
            .filter_map(|info| Some((info.name, info.present_version?)))
            .collect();
        Self {
            base,
            planned: plan.specs.iter().map(|spec| spec.name.clone()).collect(),
            not_running,
            versions,
            live,
        }
    }

    fn snapshot(&self) -> NodeStatus {
        let mut status = self.base.clone();
        status.components = self
            .live
            .borrow()
            .iter()
            .map(|status| ComponentView::supervised(status, &self.versions))
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

/// What the admin socket answers: status always, token administration on controllers.
#[derive(Debug)]
pub struct AdminRouter {
    status: StatusSource,
    tokens: Option<TokenAdmin>,
}

impl AdminRouter {
    pub fn new(status: StatusSource, tokens: Option<TokenAdmin>) -> Self {
        Self { status, tokens }
    }

    /// Binds `<run-dir>/k0x.sock` (mode 0600) and answers on it until `shutdown` completes. A
    /// leftover socket of a dead k0x is replaced: the data-dir lock, already held, proves no other
    /// k0x serves it.
    pub fn serve(
        self,
        run: &RunDir,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<tokio::task::JoinHandle<()>> {
        let path = run.admin_socket();
        let listener = admin::bind(&path).with_context(|| {
            format!(
                "cannot listen on the admin socket {}; check --run-dir",
                path.display()
            )
        })?;
        Ok(tokio::spawn(admin::serve(
            listener,
            Arc::new(self),
            shutdown,
        )))
    }
}

impl AdminHandler for AdminRouter {
    async fn handle(&self, request: Request<Incoming>) -> Response<Full<Bytes>> {
        let path = request.uri().path().to_owned();
        match (&self.tokens, request.method()) {
            (_, &Method::GET) if path == STATUS_PATH => {
                http::json_response(StatusCode::OK, &self.status.snapshot())
            }
            (Some(tokens), _) if TokenAdmin::handles(&path) => tokens.handle(request).await,
            (None, _) if TokenAdmin::handles(&path) => http::error_response(
                StatusCode::NOT_FOUND,
                "tokens are issued by controllers with etcd running; this node has none",
            ),
            (_, method) => http::error_response(
                StatusCode::NOT_FOUND,
                format!("no admin endpoint {method} {path}"),
            ),
        }
    }
}

/// Asks the server behind `run`'s admin socket for its status.
pub async fn fetch_status(run: &RunDir) -> anyhow::Result<NodeStatus> {
    Ok(AdminClient::new(run.admin_socket())
        .get(STATUS_PATH)
        .await?)
}
