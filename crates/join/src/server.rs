//! The join API server every controller runs on `spec.api.k0xApiPort` (see [`crate::api`]).
//!
//! Each authenticated request is checked against the token store in etcd, so a token created on
//! one controller works on all of them. Failures are answered with one clear line, logged with
//! the source address and token id (never the secret), and drain the source's rate-limit bucket.

use std::collections::BTreeSet;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{AUTHORIZATION, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use k0x_etcd::Client;
use k0x_etcd::members::{self, Retry};
use k0x_pki::x509::{CertInfo, dns_san, ip_san};
use k0x_pki::{CertSpec, Usage};
use rcgen::{CertificateSigningRequestParams, PublicKeyData, SanType};
use sha2::{Digest, Sha256};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use x509_parser::certificate::X509Certificate;
use x509_parser::prelude::FromDer;

use crate::Error;
use crate::api::{self, ControllerSecrets, WorkerSettings};
use crate::http::{self, HEADER_TIMEOUT, HttpResponse, Refusal, json_response, read_json};
use crate::ratelimit::{FailureLimiter, RateLimit};
use crate::signer::{self, CsrSigner};
use crate::store::{AuthError, NodeError, NodeRegistry, TokenStore};
use crate::token::TokenRole;

/// How long one promote request waits for the learner before answering 409.
const PROMOTE_WAIT: Retry = Retry {
    attempts: 10,
    interval: Duration::from_millis(500),
};
/// How long one member-add request waits for etcd to settle from an earlier change.
const ADD_WAIT: Retry = Retry {
    attempts: 30,
    interval: Duration::from_millis(500),
};

/// Everything the join server needs; the controller builds it from its config and PKI.
pub struct JoinServerConfig {
    /// Client of the cluster's etcd (tokens, node records, membership).
    pub etcd: Client,
    /// Signs worker CSRs with the cluster CA.
    pub signer: Arc<dyn CsrSigner>,
    /// Cluster CA certificate, PEM (served on `/v1/ca`, pinned by tokens).
    pub ca_pem: String,
    /// The join API's serving certificate (signed by the cluster CA, SANs = the token URLs' hosts).
    pub serving_cert_pem: String,
    pub serving_key_pem: String,
    /// What workers are told about the cluster.
    pub worker: WorkerSettings,
    /// Control-plane secrets for joining controllers; `None` refuses controller joins.
    pub controller: Option<ControllerSecrets>,
    pub rate_limit: RateLimit,
    /// Lets a node name that joined before re-join with a new key (reinstalled machines).
    pub allow_node_rekey: bool,
}

impl std::fmt::Debug for JoinServerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JoinServerConfig")
            .field("worker", &self.worker)
            .field("rate_limit", &self.rate_limit)
            .field("allow_node_rekey", &self.allow_node_rekey)
            .finish_non_exhaustive()
    }
}

/// The join API server.
pub struct JoinServer {
    state: Arc<State>,
    acceptor: TlsAcceptor,
}

impl std::fmt::Debug for JoinServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JoinServer")
            .field("config", &self.state.config)
            .finish_non_exhaustive()
    }
}

#[derive(Debug)]
struct State {
    config: JoinServerConfig,
    tokens: TokenStore,
    nodes: NodeRegistry,
    limiter: FailureLimiter,
}

impl JoinServer {
    /// Checks the TLS material; nothing is bound yet.
    pub fn new(config: JoinServerConfig) -> Result<Self, Error> {
        let tls = crate::tls::server_config(&config.serving_cert_pem, &config.serving_key_pem)?;
        crate::token::ca_pin(&config.ca_pem)?;
        Ok(Self {
            acceptor: TlsAcceptor::from(Arc::new(tls)),
            state: Arc::new(State {
                tokens: TokenStore::new(config.etcd.clone()),
                nodes: NodeRegistry::new(config.etcd.clone()),
                limiter: FailureLimiter::new(config.rate_limit),
                config,
            }),
        })
    }

    /// Serves connections from `listener` until `shutdown` completes. Connections in flight
    /// finish on their own.
    pub async fn serve(self, listener: TcpListener, shutdown: impl Future<Output = ()>) {
        http::accept_until(listener, "join API", shutdown, |(tcp, peer)| {
            let acceptor = self.acceptor.clone();
            let state = Arc::clone(&self.state);
            tokio::spawn(serve_connection(acceptor, state, tcp, peer));
        })
        .await;
    }
}

async fn serve_connection(
    acceptor: TlsAcceptor,
    state: Arc<State>,
    tcp: TcpStream,
    peer: SocketAddr,
) {
    let tls = match tokio::time::timeout(HEADER_TIMEOUT, acceptor.accept(tcp)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(err)) => {
            tracing::debug!(source = %peer, %err, "join API TLS handshake failed");
            return;
        }
        Err(_) => {
            tracing::debug!(source = %peer, "join API TLS handshake timed out");
            return;
        }
    };
    let answer = move |request| {
        let state = Arc::clone(&state);
        async move { route(&state, peer.ip(), request).await }
    };
    if let Err(err) = http::serve_connection(tls, answer).await {
        tracing::debug!(source = %peer, %err, "join API connection ended");
    }
}

impl From<AuthError> for Refusal {
    fn from(err: AuthError) -> Self {
        let status = match &err {
            AuthError::Store(_) => StatusCode::SERVICE_UNAVAILABLE,
            AuthError::WrongRole { .. } => StatusCode::FORBIDDEN,
            _ => StatusCode::UNAUTHORIZED,
        };
        Self {
            status,
            token_id: err.token_id().map(str::to_string),
            failed_auth: !matches!(err, AuthError::Store(_)),
            message: err.to_string(),
        }
    }
}

async fn route(state: &State, source: IpAddr, request: Request<Incoming>) -> HttpResponse {
    let endpoint = request.uri().path().to_string();
    let result = match (request.method(), endpoint.as_str()) {
        (&Method::GET, api::PATH_CA) => Ok(pem_response(&state.config.ca_pem)),
        (&Method::POST, api::PATH_JOIN_WORKER) => join_worker(state, source, request).await,
        (&Method::POST, api::PATH_JOIN_CONTROLLER) => join_controller(state, source, request).await,
        (&Method::POST, api::PATH_ETCD_MEMBERS) => add_etcd_member(state, source, request).await,
        (&Method::POST, api::PATH_ETCD_PROMOTE) => {
            promote_etcd_member(state, source, request).await
        }
        _ => Err(Refusal::new(
            StatusCode::NOT_FOUND,
            format!("no join API endpoint {} {endpoint}", request.method()),
        )),
    };
    result.unwrap_or_else(|refusal| refuse(state, source, &endpoint, refusal))
}

fn refuse(state: &State, source: IpAddr, endpoint: &str, refusal: Refusal) -> HttpResponse {
    if refusal.failed_auth {
        state.limiter.record_failure(source);
    }
    tracing::warn!(
        %source,
        endpoint,
        token_id = %refusal.token_id.as_deref().unwrap_or("-"),
        status = refusal.status.as_u16(),
        reason = %refusal.message,
        "join refused"
    );
    refusal.into_response()
}

/// Checks the rate limit and the bearer credential for a join as `role`; returns the token id.
async fn authenticate(
    state: &State,
    source: IpAddr,
    request: &Request<Incoming>,
    role: TokenRole,
) -> Result<String, Refusal> {
    if !state.limiter.allows(source) {
        return Err(Refusal::new(
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "too many failed join attempts from {source}: wait a minute, then retry with a valid token"
            ),
        ));
    }
    let credential = request
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or(AuthError::Malformed)?;
    state.tokens.validate(credential, role).await?;
    let id = credential.split_once('.').map_or("", |(id, _)| id);
    Ok(id.to_string())
}

async fn join_worker(
    state: &State,
    source: IpAddr,
    request: Request<Incoming>,
) -> Result<HttpResponse, Refusal> {
    let token_id = authenticate(state, source, &request, TokenRole::Worker).await?;
    let with_id = |mut refusal: Refusal| {
        refusal.token_id = Some(token_id.clone());
        refusal
    };
    let join: api::WorkerJoinRequest = read_json(request).await.map_err(with_id)?;
    let issued = issue_worker_certificates(state, source, &join)
        .await
        .map_err(with_id)?;
    tracing::info!(%source, %token_id, node = %join.node_name, "worker joined");
    Ok(json_response(StatusCode::OK, &issued))
}

/// One certificate a worker asked for: its CSR and what the controller issues over its key.
struct Wanted<'a> {
    csr_pem: &'a str,
    spki: Vec<u8>,
    spec: CertSpec,
}

/// Checks every CSR of the request, claims the node name for the key of the kubelet client CSR,
/// then signs: nothing is signed unless everything asked for may be.
async fn issue_worker_certificates(
    state: &State,
    source: IpAddr,
    join: &api::WorkerJoinRequest,
) -> Result<api::WorkerJoinResponse, Refusal> {
    let node = join.node_name.as_str();
    validate_node_name(node).map_err(|why| Refusal::new(StatusCode::BAD_REQUEST, why))?;
    let (client, _) = read_csr(&join.csr, "kubelet client", signer::kubelet_client(node))?;
    let kube_proxy = join
        .kube_proxy_csr
        .as_deref()
        .map(|pem| read_csr(pem, "kube-proxy", signer::kube_proxy_client()))
        .transpose()?
        .map(|(wanted, _)| wanted);
    let serving = join
        .kubelet_serving_csr
        .as_deref()
        .map(|pem| {
            let address = source.to_canonical();
            let spec = signer::kubelet_serving(node, Some(address));
            let (wanted, csr) = read_csr(pem, "kubelet serving", spec)?;
            check_requested_names(&csr, node, address)?;
            Ok::<_, Refusal>(wanted)
        })
        .transpose()?;
    claim_node_name(state, node, &client.spki).await?;
    let sign = |wanted: &Wanted<'_>| sign(state, node, wanted);
    Ok(api::WorkerJoinResponse {
        certificate: sign(&client)?,
        kube_proxy_certificate: kube_proxy.as_ref().map(sign).transpose()?,
        kubelet_serving_certificate: serving.as_ref().map(sign).transpose()?,
        ca: state.config.ca_pem.clone(),
        settings: state.config.worker.clone(),
    })
}

/// A CSR whose signature verifies (proof that the node holds the key), to be signed as `spec`.
fn read_csr<'a>(
    csr_pem: &'a str,
    what: &str,
    spec: CertSpec,
) -> Result<(Wanted<'a>, CertificateSigningRequestParams), Refusal> {
    let csr = CertificateSigningRequestParams::from_pem(csr_pem).map_err(|e| {
        Refusal::new(
            StatusCode::BAD_REQUEST,
            format!("the {what} CSR is not a validly signed PKCS#10 request: {e}"),
        )
    })?;
    let spki = csr.public_key.subject_public_key_info();
    Ok((
        Wanted {
            csr_pem,
            spki,
            spec,
        },
        csr,
    ))
}

/// The names a serving CSR asks for must be among those the controller issues: the node's own
/// name and the address its join comes from. Anything else is refused, not silently dropped, so
/// a worker that believes it serves elsewhere learns it at join time.
fn check_requested_names(
    csr: &CertificateSigningRequestParams,
    node: &str,
    address: IpAddr,
) -> Result<(), Refusal> {
    for name in &csr.params.subject_alt_names {
        let allowed = match name {
            SanType::DnsName(dns) => dns.as_str().eq_ignore_ascii_case(node),
            SanType::IpAddress(ip) => ip.to_canonical() == address,
            _ => false,
        };
        if !allowed {
            return Err(Refusal::new(
                StatusCode::FORBIDDEN,
                format!(
                    "the kubelet serving CSR asks for {}, which this worker may not have: its \
                     serving certificate names only its node name {node} and the address its \
                     join comes from, {address}; join from the address the node serves on",
                    describe(name)
                ),
            ));
        }
    }
    Ok(())
}

fn describe(name: &SanType) -> String {
    match name {
        SanType::DnsName(dns) => format!("DNS name {:?}", dns.as_str()),
        SanType::IpAddress(ip) => format!("address {ip}"),
        other => format!("the name {other:?}"),
    }
}

/// Claims `node` for the kubelet client key `spki` (the first join of a name wins it).
async fn claim_node_name(state: &State, node: &str, spki: &[u8]) -> Result<(), Refusal> {
    let key_sha256 = hex::encode(Sha256::digest(spki));
    state
        .nodes
        .claim(node, &key_sha256, state.config.allow_node_rekey)
        .await
        .map_err(|err| match err {
            NodeError::KeyMismatch(_) => Refusal::new(StatusCode::CONFLICT, err.to_string()),
            NodeError::Store(e) => Refusal::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
        })
}

/// Signs one wanted certificate and checks what was signed.
fn sign(state: &State, node: &str, wanted: &Wanted<'_>) -> Result<String, Refusal> {
    let internal = |why: Error| {
        tracing::error!(
            node,
            identity = %wanted.spec.common_name,
            %why,
            "signing a worker certificate failed"
        );
        Refusal::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the controller could not sign the certificate; see its log",
        )
    };
    let certificate = state
        .config
        .signer
        .sign_csr(wanted.csr_pem, &wanted.spec)
        .map_err(internal)?;
    check_issued(&certificate, &wanted.spec, &wanted.spki)
        .map_err(|why| internal(Error::Signing(why)))?;
    Ok(certificate)
}

/// Defence in depth: the signed certificate carries exactly the subject, names, usage and key we
/// meant.
fn check_issued(cert_pem: &str, spec: &CertSpec, spki: &[u8]) -> Result<(), String> {
    let info = CertInfo::parse(Path::new("the signed certificate"), cert_pem)
        .map_err(|e| format!("signer returned no usable certificate: {e}"))?;
    let (_, cert) = X509Certificate::from_der(&info.der)
        .map_err(|e| format!("signer returned an unparsable certificate: {e}"))?;
    let common_names = cert.subject().iter_common_name().count();
    if common_names != 1
        || info.common_name != spec.common_name
        || info.organizations != spec.organizations
    {
        return Err(format!(
            "signer issued subject CN={:?} O={:?}, not CN={:?} O={:?}",
            info.common_name, info.organizations, spec.common_name, spec.organizations
        ));
    }
    let names: BTreeSet<String> = spec
        .dns_names
        .iter()
        .map(|name| dns_san(name))
        .chain(spec.ips.iter().map(|ip| ip_san(*ip)))
        .collect();
    if info.sans != names {
        return Err(format!(
            "signer issued names {:?}, not {names:?}",
            info.sans
        ));
    }
    let usage = cert
        .extended_key_usage()
        .ok()
        .flatten()
        .map(|eku| (eku.value.server_auth, eku.value.client_auth));
    let wanted = match spec.usage {
        Usage::Server => (true, false),
        Usage::Client => (false, true),
        Usage::ServerAndClient => (true, true),
    };
    if usage != Some(wanted) {
        return Err(format!(
            "signer issued usages (server, client) {usage:?}, not {wanted:?}"
        ));
    }
    if cert.public_key().raw != spki {
        return Err("signer issued a certificate for another public key".into());
    }
    Ok(())
}

/// The node name a worker asks for, under the one rule of [`k0x_config::is_node_name`].
fn validate_node_name(name: &str) -> Result<(), String> {
    if k0x_config::is_node_name(name) {
        return Ok(());
    }
    Err(format!(
        "node name {name:?} is not a valid Kubernetes node name (a lowercase RFC 1123 subdomain: \
         labels of letters, digits and inner '-', at most 63 characters each, 253 in all): the \
         joining node uses its host name, lower-cased; set a valid one with hostnamectl"
    ))
}

async fn join_controller(
    state: &State,
    source: IpAddr,
    request: Request<Incoming>,
) -> Result<HttpResponse, Refusal> {
    let token_id = authenticate(state, source, &request, TokenRole::Controller).await?;
    let secrets = state.config.controller.clone().ok_or_else(|| {
        Refusal::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "this controller does not hand out control-plane secrets: join through another controller",
        )
    })?;
    let members = state
        .config
        .etcd
        .member_list()
        .await
        .map_err(|e| Refusal::new(StatusCode::SERVICE_UNAVAILABLE, format!("etcd: {e}")))?;
    tracing::info!(%source, %token_id, "controller secrets handed out");
    Ok(json_response(
        StatusCode::OK,
        &api::ControllerJoinResponse {
            secrets,
            etcd_peer_urls: members.into_iter().flat_map(|m| m.peer_urls).collect(),
        },
    ))
}

async fn add_etcd_member(
    state: &State,
    source: IpAddr,
    request: Request<Incoming>,
) -> Result<HttpResponse, Refusal> {
    let token_id = authenticate(state, source, &request, TokenRole::Controller).await?;
    let add: api::EtcdMemberAddRequest = read_json(request).await?;
    if !add.peer_url.starts_with("https://") || add.name.is_empty() {
        return Err(Refusal::new(
            StatusCode::BAD_REQUEST,
            "etcd member needs a name and an https:// peer URL",
        ));
    }
    let added = members::add_learner(&state.config.etcd, &add.name, &add.peer_url, ADD_WAIT)
        .await
        .map_err(|e| etcd_refusal(&e))?;
    tracing::info!(%source, %token_id, name = %add.name, peer_url = %add.peer_url, "etcd learner added");
    Ok(json_response(
        StatusCode::OK,
        &api::EtcdMemberAddResponse {
            member_id: added.member_id.to_string(),
            initial_cluster: added.initial_cluster,
        },
    ))
}

async fn promote_etcd_member(
    state: &State,
    source: IpAddr,
    request: Request<Incoming>,
) -> Result<HttpResponse, Refusal> {
    let token_id = authenticate(state, source, &request, TokenRole::Controller).await?;
    let promote: api::EtcdPromoteRequest = read_json(request).await?;
    let member_id: u64 = promote.member_id.parse().map_err(|_| {
        Refusal::new(
            StatusCode::BAD_REQUEST,
            "memberId must be a decimal etcd member id",
        )
    })?;
    members::promote_when_caught_up(&state.config.etcd, member_id, PROMOTE_WAIT)
        .await
        .map_err(|e| etcd_refusal(&e))?;
    tracing::info!(%source, %token_id, member_id, "etcd learner promoted");
    Ok(json_response(StatusCode::OK, &serde_json::json!({})))
}

/// Transient etcd states become 409 (the client retries), as does a peer URL a member that ran
/// holds; another controller still a learner is 503 (a joining one waits its turn); anything
/// else is a gateway error.
fn etcd_refusal(err: &k0x_etcd::EtcdError) -> Refusal {
    if members::is_another_learner(err) {
        Refusal::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("another controller is joining and etcd takes one at a time: {err}"),
        )
    } else if let k0x_etcd::EtcdError::MemberRan { .. } = err {
        Refusal::new(StatusCode::CONFLICT, err.to_string())
    } else if members::is_not_ready(err) {
        Refusal::new(
            StatusCode::CONFLICT,
            format!("etcd is not ready yet: {err}"),
        )
    } else {
        Refusal::new(StatusCode::BAD_GATEWAY, format!("etcd refused: {err}"))
    }
}

fn pem_response(pem: &str) -> HttpResponse {
    let mut response = Response::new(Full::new(Bytes::from(pem.to_string())));
    response.headers_mut().insert(
        CONTENT_TYPE,
        "application/x-pem-file".parse().expect("static header"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_names_follow_kubernetes_rules() {
        assert!(validate_node_name("worker-1.example").is_ok());
        let long_label = format!("{}.example", "a".repeat(64));
        for bad in [
            "",
            "Worker",
            "-a",
            "a-",
            "a_b",
            "a..b",
            &long_label,
            &"a".repeat(254),
        ] {
            assert!(validate_node_name(bad).is_err(), "{bad:?}");
        }
    }
}
