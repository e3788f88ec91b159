//! The joining node's side: trust on first use, but only of the CA the token pins.
//!
//! 1. `GET /v1/ca` over TLS that verifies nothing (we do not know the CA yet); nothing secret
//!    is sent. The answer must be exactly one certificate whose sha256 equals the token's pin.
//! 2. Every other request goes over TLS verified against that CA, with the token as credential.
//!
//! The node's private keys are generated here and never sent: only CSRs leave the machine. A
//! worker makes three: its kubelet's client key, kube-proxy's client key and its kubelet's
//! serving key.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::{Method, StatusCode};
use k0x_etcd::transport::{HttpsTransport, TransportError};
use k0x_pki::CertSpec;
use rcgen::string::Ia5String;
use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair, PublicKeyData, SanType};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::OnceCell;

use crate::token::{Token, ca_pin};
use crate::{api, signer};

/// Why a join failed, in words for the person running `k0x worker`.
#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    #[error(
        "the CA served by {url} has sha256 {actual}, but the token pins {expected}: this is not the cluster the token was created for, or something is impersonating its controller; refusing to join"
    )]
    PinMismatch {
        url: String,
        expected: String,
        actual: String,
    },
    #[error("cannot reach the join API at {url}: {cause}; check the address and that port is open")]
    Unreachable { url: String, cause: TransportError },
    #[error(
        "the join API at {url} failed TLS verification against the pinned CA: {cause}; its certificate must name the address in the token (spec.api.sans)"
    )]
    Untrusted { url: String, cause: TransportError },
    #[error("the join API at {url} refused: {message}")]
    Refused {
        url: String,
        status: u16,
        message: String,
    },
    #[error("the join API at {url} gave an unusable answer: {why}")]
    BadAnswer { url: String, why: String },
    #[error("cannot create the node key or CSR: {0}")]
    Key(String),
}

impl JoinError {
    /// The HTTP status of a refusal.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Refused { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// A worker's join result: its new keys (PEM, to be written 0600) and what the controller sent,
/// which holds a certificate for each key.
#[derive(Clone)]
pub struct WorkerJoin {
    /// The kubelet's client key (`response.certificate`).
    pub key_pem: String,
    /// kube-proxy's client key (`response.kube_proxy_certificate`).
    pub kube_proxy_key_pem: String,
    /// The kubelet's serving key (`response.kubelet_serving_certificate`).
    pub kubelet_serving_key_pem: String,
    pub response: api::WorkerJoinResponse,
}

impl std::fmt::Debug for WorkerJoin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerJoin")
            .field("keys", &"<redacted>")
            .field("response", &self.response)
            .finish()
    }
}

/// A learner added for a joining controller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdMemberAdded {
    pub member_id: u64,
    pub initial_cluster: String,
}

/// A verified session with one controller.
#[derive(Debug)]
struct Session {
    url: String,
    ca_pem: String,
    transport: HttpsTransport,
}

/// The join client of one token.
#[derive(Debug)]
pub struct JoinClient {
    token: Token,
    local_addr: Option<IpAddr>,
    timeout: Duration,
    session: OnceCell<Session>,
}

impl JoinClient {
    pub fn new(token: Token) -> Self {
        Self {
            token,
            local_addr: None,
            timeout: Duration::from_secs(30),
            session: OnceCell::new(),
        }
    }

    /// Connects from this source address (multi-homed nodes).
    pub fn with_local_addr(mut self, addr: IpAddr) -> Self {
        self.local_addr = Some(addr);
        self
    }

    /// The token this client joins with.
    pub fn token(&self) -> &Token {
        &self.token
    }

    /// The cluster CA (PEM), fetched and checked against the pin.
    pub async fn cluster_ca(&self) -> Result<&str, JoinError> {
        Ok(&self.session().await?.ca_pem)
    }

    /// Joins as a worker named `node_name`: three new keys and their certificates (kubelet
    /// client, kube-proxy client, kubelet serving). The serving certificate names the node and
    /// the address the join comes from; [`Self::with_local_addr`] makes that the node's address.
    pub async fn join_worker(&self, node_name: &str) -> Result<WorkerJoin, JoinError> {
        let client = NewKey::generate(&signer::kubelet_client(node_name))?;
        self.join_worker_with(node_name, client).await
    }

    /// Joins again as the worker `node_name` that already holds the kubelet client key
    /// `kubelet_key_pem`: the node name stays claimed by that key, and the node gets every
    /// certificate anew (a worker that joined with an older k0x lacks some).
    pub async fn rejoin_worker(
        &self,
        node_name: &str,
        kubelet_key_pem: &str,
    ) -> Result<WorkerJoin, JoinError> {
        let key = KeyPair::from_pem(kubelet_key_pem).map_err(|e| JoinError::Key(e.to_string()))?;
        let client = NewKey::for_key(key, &signer::kubelet_client(node_name))?;
        self.join_worker_with(node_name, client).await
    }

    /// A worker join with the kubelet client key `client`; kube-proxy's and the serving key are
    /// new.
    async fn join_worker_with(
        &self,
        node_name: &str,
        client: NewKey,
    ) -> Result<WorkerJoin, JoinError> {
        let keys = WorkerKeys {
            client,
            kube_proxy: NewKey::generate(&signer::kube_proxy_client())?,
            serving: NewKey::generate(&signer::kubelet_serving(node_name, self.local_addr))?,
        };
        let request = keys.request(node_name);
        let response: api::WorkerJoinResponse = self.post(api::PATH_JOIN_WORKER, &request).await?;
        let session = self.session().await?;
        let answer = WorkerAnswer {
            url: &session.url,
            pinned_ca: &session.ca_pem,
        };
        answer.check_ca(&response.ca)?;
        answer.check_certificate(
            "kubelet client",
            Some(&response.certificate),
            &keys.client.key,
        )?;
        answer.check_certificate(
            "kube-proxy",
            response.kube_proxy_certificate.as_deref(),
            &keys.kube_proxy.key,
        )?;
        answer.check_certificate(
            "kubelet serving",
            response.kubelet_serving_certificate.as_deref(),
            &keys.serving.key,
        )?;
        Ok(WorkerJoin {
            key_pem: keys.client.key.serialize_pem(),
            kube_proxy_key_pem: keys.kube_proxy.key.serialize_pem(),
            kubelet_serving_key_pem: keys.serving.key.serialize_pem(),
            response,
        })
    }

    /// Joins as a controller: the control-plane CAs, keys and the etcd peer URLs.
    pub async fn join_controller(&self) -> Result<api::ControllerJoinResponse, JoinError> {
        let response: api::ControllerJoinResponse = self
            .post(api::PATH_JOIN_CONTROLLER, &serde_json::json!({}))
            .await?;
        let session = self.session().await?;
        if ca_pin(&response.secrets.ca.cert).ok().as_deref() != Some(&self.token.ca_sha256) {
            return Err(JoinError::BadAnswer {
                url: session.url.clone(),
                why: "the cluster CA it sent is not the pinned one".into(),
            });
        }
        Ok(response)
    }

    /// Asks the cluster to add this controller's etcd as a learner.
    pub async fn add_etcd_member(
        &self,
        name: &str,
        peer_url: &str,
    ) -> Result<EtcdMemberAdded, JoinError> {
        let request = api::EtcdMemberAddRequest {
            name: name.to_string(),
            peer_url: peer_url.to_string(),
        };
        let response: api::EtcdMemberAddResponse =
            self.post(api::PATH_ETCD_MEMBERS, &request).await?;
        let member_id = response
            .member_id
            .parse()
            .map_err(|_| JoinError::BadAnswer {
                url: self.token.urls[0].clone(),
                why: format!("member id {:?} is not a number", response.member_id),
            })?;
        Ok(EtcdMemberAdded {
            member_id,
            initial_cluster: response.initial_cluster,
        })
    }

    /// Asks the cluster to promote learner `member_id` once it has caught up, retrying for up to
    /// `attempts` requests while the server answers 409 (not caught up yet).
    pub async fn promote_etcd_member(
        &self,
        member_id: u64,
        attempts: u32,
    ) -> Result<(), JoinError> {
        let request = api::EtcdPromoteRequest {
            member_id: member_id.to_string(),
        };
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self
                .post::<_, serde_json::Value>(api::PATH_ETCD_PROMOTE, &request)
                .await
            {
                Err(err) if err.status() == Some(409) && attempt < attempts => {
                    tracing::debug!(member_id, attempt, %err, "etcd learner not promoted yet");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                other => return other.map(drop),
            }
        }
    }

    async fn session(&self) -> Result<&Session, JoinError> {
        self.session.get_or_try_init(|| self.open_session()).await
    }

    /// Fetches and pins the CA from the first controller that answers.
    async fn open_session(&self) -> Result<Session, JoinError> {
        let mut last_error = None;
        for url in &self.token.urls {
            match self.fetch_pinned_ca(url).await {
                Ok(ca_pem) => {
                    let config = crate::tls::verified_client_config(&ca_pem).map_err(|err| {
                        JoinError::BadAnswer {
                            url: url.clone(),
                            why: err.to_string(),
                        }
                    })?;
                    return Ok(Session {
                        url: url.trim_end_matches('/').to_string(),
                        ca_pem,
                        transport: self.transport(config),
                    });
                }
                Err(err @ JoinError::PinMismatch { .. }) => return Err(err),
                Err(err) => {
                    tracing::warn!(url, %err, "join API not usable, trying the next one");
                    last_error = Some(err);
                }
            }
        }
        Err(last_error.expect("tokens name at least one URL"))
    }

    async fn fetch_pinned_ca(&self, url: &str) -> Result<String, JoinError> {
        let transport = self.transport(crate::tls::unverified_client_config());
        let address = format!("{}{}", url.trim_end_matches('/'), api::PATH_CA);
        let response = transport
            .request(Method::GET, &address, &[], Vec::new())
            .await
            .map_err(|cause| JoinError::Unreachable {
                url: url.to_string(),
                cause,
            })?;
        let bad = |why: String| JoinError::BadAnswer {
            url: url.to_string(),
            why,
        };
        if response.status != StatusCode::OK {
            return Err(bad(format!(
                "GET {} answered HTTP {}",
                api::PATH_CA,
                response.status
            )));
        }
        let ca_pem = String::from_utf8(response.body.to_vec())
            .map_err(|_| bad("the CA is not text".into()))?;
        let certs = k0x_etcd::parse_certs(&ca_pem).map_err(|e| bad(format!("the CA: {e}")))?;
        if certs.len() != 1 {
            return Err(bad(format!(
                "expected exactly one CA certificate, got {}",
                certs.len()
            )));
        }
        let actual = ca_pin(&ca_pem).map_err(|err| bad(err.to_string()))?;
        if actual != self.token.ca_sha256 {
            return Err(JoinError::PinMismatch {
                url: url.to_string(),
                expected: self.token.ca_sha256.clone(),
                actual,
            });
        }
        Ok(ca_pem)
    }

    fn transport(&self, config: rustls::ClientConfig) -> HttpsTransport {
        let transport = HttpsTransport::new(Arc::new(config)).with_timeout(self.timeout);
        match self.local_addr {
            Some(addr) => transport.with_local_addr(addr),
            None => transport,
        }
    }

    async fn post<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        path: &str,
        request: &Req,
    ) -> Result<Resp, JoinError> {
        let session = self.session().await?;
        let url = format!("{}{path}", session.url);
        let authorization = format!("Bearer {}", self.token.bearer());
        let body = serde_json::to_vec(request).expect("requests serialize");
        let response = session
            .transport
            .request(
                Method::POST,
                &url,
                &[("authorization", authorization.as_str())],
                body,
            )
            .await
            .map_err(|cause| match cause {
                TransportError::Tls { .. } => JoinError::Untrusted {
                    url: session.url.clone(),
                    cause,
                },
                cause => JoinError::Unreachable {
                    url: session.url.clone(),
                    cause,
                },
            })?;
        if !response.status.is_success() {
            let message = serde_json::from_slice::<api::ErrorResponse>(&response.body)
                .map(|e| e.error)
                .unwrap_or_else(|_| format!("HTTP {}", response.status));
            return Err(JoinError::Refused {
                url: session.url.clone(),
                status: response.status.as_u16(),
                message,
            });
        }
        serde_json::from_slice(&response.body).map_err(|e| JoinError::BadAnswer {
            url: session.url.clone(),
            why: e.to_string(),
        })
    }
}

/// The keys of a worker join, made on this node: only their CSRs go into the request.
struct WorkerKeys {
    client: NewKey,
    kube_proxy: NewKey,
    serving: NewKey,
}

impl WorkerKeys {
    fn request(&self, node_name: &str) -> api::WorkerJoinRequest {
        api::WorkerJoinRequest {
            node_name: node_name.to_string(),
            csr: self.client.csr_pem.clone(),
            kube_proxy_csr: Some(self.kube_proxy.csr_pem.clone()),
            kubelet_serving_csr: Some(self.serving.csr_pem.clone()),
        }
    }
}

/// A key of this node and the CSR that asks for `spec` over it.
struct NewKey {
    key: KeyPair,
    csr_pem: String,
}

impl NewKey {
    /// A new key.
    fn generate(spec: &CertSpec) -> Result<Self, JoinError> {
        let key = KeyPair::generate().map_err(|e| JoinError::Key(e.to_string()))?;
        Self::for_key(key, spec)
    }

    fn for_key(key: KeyPair, spec: &CertSpec) -> Result<Self, JoinError> {
        let failed = |e: rcgen::Error| JoinError::Key(e.to_string());
        let mut params = CertificateParams::default();
        let mut name = DistinguishedName::new();
        for org in &spec.organizations {
            name.push(DnType::OrganizationName, org.as_str());
        }
        name.push(DnType::CommonName, spec.common_name.as_str());
        params.distinguished_name = name;
        for dns in &spec.dns_names {
            let dns = Ia5String::try_from(dns.as_str()).map_err(failed)?;
            params.subject_alt_names.push(SanType::DnsName(dns));
        }
        params
            .subject_alt_names
            .extend(spec.ips.iter().map(|ip| SanType::IpAddress(*ip)));
        let csr_pem = params
            .serialize_request(&key)
            .and_then(|csr| csr.pem())
            .map_err(failed)?;
        Ok(Self { key, csr_pem })
    }
}

/// Checks of a worker join's answer from the controller at `url`.
struct WorkerAnswer<'a> {
    url: &'a str,
    pinned_ca: &'a str,
}

impl WorkerAnswer<'_> {
    fn bad(&self, why: String) -> JoinError {
        JoinError::BadAnswer {
            url: self.url.to_string(),
            why,
        }
    }

    /// The CA must be the one we pinned.
    fn check_ca(&self, ca_pem: &str) -> Result<(), JoinError> {
        if ca_pin(ca_pem).ok() != ca_pin(self.pinned_ca).ok() {
            return Err(self.bad("the CA it sent is not the pinned one".into()));
        }
        Ok(())
    }

    /// The `what` certificate must be there (a controller older than this worker sends no
    /// kube-proxy or serving certificate) and be for our key.
    fn check_certificate(
        &self,
        what: &str,
        cert_pem: Option<&str>,
        key: &KeyPair,
    ) -> Result<(), JoinError> {
        let cert_pem = cert_pem.ok_or_else(|| {
            self.bad(format!(
                "it sent no {what} certificate: the controller runs an older k0x than this \
                 worker; upgrade the controllers first"
            ))
        })?;
        let (_, pem) = x509_parser::pem::parse_x509_pem(cert_pem.as_bytes())
            .map_err(|_| self.bad(format!("the {what} certificate is not PEM")))?;
        let cert = pem
            .parse_x509()
            .map_err(|_| self.bad(format!("the {what} certificate does not parse")))?;
        if cert.public_key().raw != key.subject_public_key_info().as_slice() {
            return Err(self.bad(format!("the {what} certificate is not for this node's key")));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use rcgen::CertificateSigningRequestParams;

    use super::*;

    #[test]
    fn a_worker_request_carries_csrs_and_never_a_key() {
        let keys = WorkerKeys {
            client: NewKey::generate(&signer::kubelet_client("worker-1")).unwrap(),
            kube_proxy: NewKey::generate(&signer::kube_proxy_client()).unwrap(),
            serving: NewKey::generate(&signer::kubelet_serving(
                "worker-1",
                Some("192.0.2.7".parse().unwrap()),
            ))
            .unwrap(),
        };
        let request = keys.request("worker-1");
        let wire = serde_json::to_string(&request).unwrap();
        assert!(!wire.contains("PRIVATE KEY"), "{wire}");
        for key in [&keys.client, &keys.kube_proxy, &keys.serving] {
            let key_pem = key.key.serialize_pem();
            let body = key_pem.lines().nth(1).unwrap();
            assert!(!wire.contains(body), "a private key is in the request");
        }
        let csrs = [
            &request.csr,
            request.kube_proxy_csr.as_ref().unwrap(),
            request.kubelet_serving_csr.as_ref().unwrap(),
        ];
        let parsed: Vec<_> = csrs
            .iter()
            .map(|pem| CertificateSigningRequestParams::from_pem(pem).unwrap())
            .collect();
        let public: std::collections::BTreeSet<_> = parsed
            .iter()
            .map(|csr| csr.public_key.subject_public_key_info())
            .collect();
        assert_eq!(public.len(), 3, "each identity has its own key");
        let sans = &parsed[2].params.subject_alt_names;
        assert_eq!(
            *sans,
            [
                SanType::DnsName(Ia5String::try_from("worker-1").unwrap()),
                SanType::IpAddress("192.0.2.7".parse().unwrap()),
            ]
        );
    }
}
