//! How a controller grows its cluster: the token store behind the admin socket and the join API
//! on `spec.api.k0xApiPort`. Both keep their state in etcd, so they exist only where etcd runs.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use k0x_config::{DataDir, components, pki_names, url_host};
use k0x_etcd::{Client, ClientTls};
use k0x_join::admin::TokenAdmin;
use k0x_join::api::WorkerSettings;
use k0x_join::ratelimit::RateLimit;
use k0x_join::{JoinError, JoinServer, JoinServerConfig, TokenStore};
use tokio::net::TcpListener;

use super::Plan;

/// The join API, ready to serve.
#[derive(Debug)]
pub struct JoinApi {
    server: JoinServer,
    listen: SocketAddr,
}

/// The token administration for the admin socket and the join API; `None` when this node runs no
/// etcd (a worker, or `--disable-components etcd`).
pub fn controller_services(plan: &Plan) -> anyhow::Result<Option<(TokenAdmin, JoinApi)>> {
    if !plan.specs.iter().any(|spec| spec.name == components::ETCD) {
        return Ok(None);
    }
    let ctx = &plan.ctx;
    let etcd = etcd_client(&ctx.data, &k0x_node::etcd_client_url(&ctx.config))?;
    let ca_pem = read(&ctx.data.pki_cert(pki_names::CA))?;
    let port = ctx.config.spec.api.k0x_api_port;
    let join_urls = vec![format!("https://{}:{port}", url_host(ctx.node.address))];
    let network = &ctx.config.spec.network;
    let worker = WorkerSettings {
        api_servers: vec![format!(
            "https://{}:{}",
            url_host(ctx.node.address),
            ctx.config.spec.api.port
        )],
        cluster_domain: network.cluster_domain.clone(),
        pod_cidr: network.pod_cidr.clone(),
        service_cidr: network.service_cidr.clone(),
        network_provider: Some(network.provider),
        images: [
            ("pause".to_owned(), ctx.config.spec.images.pause.clone()),
            ("coredns".to_owned(), ctx.config.spec.images.coredns.clone()),
        ]
        .into(),
    };
    let signer = k0x_pki::load_cluster_ca(&ctx.data)?;
    // The apiserver's serving certificate already names every address of this host plus
    // spec.api.address and sans: exactly the hosts a token's join URLs can name.
    let server = JoinServer::new(JoinServerConfig {
        etcd: etcd.clone(),
        signer: Arc::new(signer),
        ca_pem: ca_pem.clone(),
        serving_cert_pem: read(&ctx.data.pki_cert(pki_names::APISERVER))?,
        serving_key_pem: read(&ctx.data.pki_key(pki_names::APISERVER))?,
        worker,
        controller: k0x_join::material::read_controller_secrets(&ctx.data).ok(),
        rate_limit: RateLimit::default(),
        allow_node_rekey: false,
    })
    .map_err(|why| anyhow::anyhow!("join API: {why}"))?;
    let api = JoinApi {
        server,
        listen: SocketAddr::from((Ipv4Addr::UNSPECIFIED, port)),
    };
    Ok(Some((
        TokenAdmin::new(TokenStore::new(etcd), join_urls, ca_pem),
        api,
    )))
}

impl JoinApi {
    /// Binds the join API port and serves until `shutdown` completes.
    pub async fn serve(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<tokio::task::JoinHandle<()>> {
        let listen = self.listen;
        let listener = TcpListener::bind(listen).await.with_context(|| {
            format!(
                "cannot listen on {listen} for the join API: is the port in use? \
                 change spec.api.k0xApiPort or stop what uses it"
            )
        })?;
        tracing::info!(%listen, "join API listening");
        Ok(tokio::spawn(self.server.serve(listener, shutdown)))
    }
}

/// k0x's own etcd client (tokens, node records, membership), with its client certificate.
pub fn etcd_client(data: &DataDir, endpoint: &str) -> anyhow::Result<Client> {
    let tls = ClientTls::from_files(
        &data.pki_cert(pki_names::ETCD_CA),
        &data.pki_cert(pki_names::ETCD_K0X_CLIENT),
        &data.pki_key(pki_names::ETCD_K0X_CLIENT),
    )?;
    Ok(Client::new(&[endpoint.to_owned()], &tls)?)
}

fn read(path: &std::path::Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
}

/// How long a first start keeps trying a join API that does not answer (the controller may still
/// be starting: its join API serves once its components are ready) or is busy.
const JOIN_PATIENCE: Duration = Duration::from_secs(300);
const JOIN_RETRY: Duration = Duration::from_secs(5);

/// `attempt`, again every few seconds while the join API is unreachable or busy (503: another
/// controller is joining), up to [`JOIN_PATIENCE`].
pub async fn while_unavailable<T, F: Future<Output = Result<T, JoinError>>>(
    mut attempt: impl FnMut() -> F,
) -> Result<T, JoinError> {
    let started = tokio::time::Instant::now();
    loop {
        match attempt().await {
            Err(err) if is_unavailable(&err) && started.elapsed() < JOIN_PATIENCE => {
                tracing::warn!(
                    "{err}; trying again in {JOIN_RETRY:?} (for up to {JOIN_PATIENCE:?})"
                );
                tokio::time::sleep(JOIN_RETRY).await;
            }
            other => return other,
        }
    }
}

fn is_unavailable(err: &JoinError) -> bool {
    matches!(err, JoinError::Unreachable { .. }) || err.status() == Some(503)
}
