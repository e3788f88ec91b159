//! A minimal HTTPS/1.1 client: hyper 1 over tokio-rustls with a small per-host pool of idle
//! connections.
//!
//! The etcd gateway, the join API and the local kube-apiserver (for the manifests applier) are the
//! only HTTPS peers k0x talks to, all on a handful of known hosts, so a full-featured client stack
//! is not worth its weight. Every connection is TLS with the caller's `rustls::ClientConfig`:
//! there is no plain-HTTP path at all.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper::client::conn::http1::{self, SendRequest};
use hyper::{Method, Request, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::TlsConnector;

/// Largest response body accepted (etcd range answers for the keys k0x keeps are far smaller).
const MAX_RESPONSE_BYTES: usize = 16 * 1024 * 1024;
/// Idle connections kept per host.
const MAX_IDLE_PER_HOST: usize = 8;

/// What can go wrong talking HTTPS to a peer.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("invalid URL {url:?}: {why}")]
    InvalidUrl { url: String, why: String },
    #[error("refusing {url}: only https:// URLs are allowed")]
    NotHttps { url: String },
    #[error("cannot connect to {addr}: {cause}")]
    Connect { addr: String, cause: std::io::Error },
    #[error("TLS handshake with {addr} failed: {cause}")]
    Tls { addr: String, cause: std::io::Error },
    #[error("HTTP exchange with {addr} failed: {cause}")]
    Http { addr: String, cause: hyper::Error },
    #[error("response from {addr} unreadable: {why}")]
    Body { addr: String, why: String },
    #[error("no answer from {addr} within {timeout:?}")]
    Timeout { addr: String, timeout: Duration },
}

/// A response: status and the whole body.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: StatusCode,
    pub body: Bytes,
}

/// An HTTPS client bound to one TLS configuration.
pub struct HttpsTransport {
    connector: TlsConnector,
    idle: Mutex<HashMap<String, Vec<SendRequest<Full<Bytes>>>>>,
    timeout: Duration,
    local_addr: Option<IpAddr>,
}

impl std::fmt::Debug for HttpsTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpsTransport")
            .field("timeout", &self.timeout)
            .field("local_addr", &self.local_addr)
            .finish_non_exhaustive()
    }
}

impl HttpsTransport {
    /// A transport using `tls` for every connection, with a 10 s per-request timeout.
    pub fn new(tls: Arc<rustls::ClientConfig>) -> Self {
        Self {
            connector: TlsConnector::from(tls),
            idle: Mutex::new(HashMap::new()),
            timeout: Duration::from_secs(10),
            local_addr: None,
        }
    }

    /// Changes the per-request timeout (connect + TLS + exchange).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Connects from this source address (multi-homed hosts, or tests that need several sources).
    pub fn with_local_addr(mut self, addr: IpAddr) -> Self {
        self.local_addr = Some(addr);
        self
    }

    /// Sends one request and reads the whole response.
    pub async fn request(
        &self,
        method: Method,
        url: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Result<Response, TransportError> {
        let target = Target::parse(url)?;
        let exchange = self.exchange(&target, method, headers, body);
        match tokio::time::timeout(self.timeout, exchange).await {
            Ok(result) => result,
            Err(_) => Err(TransportError::Timeout {
                addr: target.authority,
                timeout: self.timeout,
            }),
        }
    }

    async fn exchange(
        &self,
        target: &Target,
        method: Method,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Result<Response, TransportError> {
        if let Some(sender) = self.take_idle(&target.authority).await {
            match self
                .send(target, sender, method.clone(), headers, body.clone())
                .await
            {
                // The peer closed the idle connection before reading the request: use a new one.
                Err(TransportError::Http { cause, .. })
                    if cause.is_closed()
                        || cause.is_canceled()
                        || cause.is_incomplete_message() =>
                {
                    tracing::debug!(addr = %target.authority, %cause, "reused connection was closed");
                }
                other => return other,
            }
        }
        let sender = self.connect(target).await?;
        self.send(target, sender, method, headers, body).await
    }

    async fn send(
        &self,
        target: &Target,
        mut sender: SendRequest<Full<Bytes>>,
        method: Method,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Result<Response, TransportError> {
        let mut request = Request::builder()
            .method(method)
            .uri(&target.path_and_query)
            .header(hyper::header::HOST, &target.authority);
        if !has_content_type(headers) {
            request = request.header(hyper::header::CONTENT_TYPE, "application/json");
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request =
            request
                .body(Full::new(Bytes::from(body)))
                .map_err(|e| TransportError::InvalidUrl {
                    url: target.authority.clone(),
                    why: e.to_string(),
                })?;
        let http_error = |cause| TransportError::Http {
            addr: target.authority.clone(),
            cause,
        };
        let response = sender.send_request(request).await.map_err(http_error)?;
        let status = response.status();
        let body = Limited::new(response.into_body(), MAX_RESPONSE_BYTES)
            .collect()
            .await
            .map_err(|e| TransportError::Body {
                addr: target.authority.clone(),
                why: e.to_string(),
            })?
            .to_bytes();
        self.put_idle(&target.authority, sender);
        Ok(Response { status, body })
    }

    async fn take_idle(&self, authority: &str) -> Option<SendRequest<Full<Bytes>>> {
        loop {
            let candidate = self
                .idle
                .lock()
                .expect("idle pool lock")
                .get_mut(authority)
                .and_then(Vec::pop)?;
            let mut sender = candidate;
            if !sender.is_closed() && sender.ready().await.is_ok() {
                return Some(sender);
            }
        }
    }

    fn put_idle(&self, authority: &str, sender: SendRequest<Full<Bytes>>) {
        let mut idle = self.idle.lock().expect("idle pool lock");
        let slot = idle.entry(authority.to_string()).or_default();
        if slot.len() < MAX_IDLE_PER_HOST {
            slot.push(sender);
        }
    }

    async fn connect(&self, target: &Target) -> Result<SendRequest<Full<Bytes>>, TransportError> {
        let addr = target.authority.clone();
        let tcp = self
            .tcp_connect(&target.host, target.port)
            .await
            .map_err(|cause| TransportError::Connect {
                addr: addr.clone(),
                cause,
            })?;
        let server_name =
            ServerName::try_from(target.host.clone()).map_err(|e| TransportError::InvalidUrl {
                url: addr.clone(),
                why: e.to_string(),
            })?;
        let tls = self
            .connector
            .connect(server_name, tcp)
            .await
            .map_err(|cause| TransportError::Tls {
                addr: addr.clone(),
                cause,
            })?;
        let (sender, connection) =
            http1::handshake(TokioIo::new(tls))
                .await
                .map_err(|cause| TransportError::Http {
                    addr: addr.clone(),
                    cause,
                })?;
        tokio::spawn(async move {
            if let Err(err) = connection.await {
                tracing::debug!(%addr, %err, "HTTPS connection closed");
            }
        });
        Ok(sender)
    }

    async fn tcp_connect(&self, host: &str, port: u16) -> std::io::Result<TcpStream> {
        let Some(local) = self.local_addr else {
            return TcpStream::connect((host, port)).await;
        };
        let remote: IpAddr = host.parse().map_err(|_| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "a source address needs an IP literal as the target host",
            )
        })?;
        let socket = if remote.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        socket.bind(SocketAddr::new(local, 0))?;
        socket.connect(SocketAddr::new(remote, port)).await
    }
}

/// True when the caller names the body's type itself (the Kubernetes API wants a patch type on
/// PATCH); otherwise the body is JSON.
fn has_content_type(headers: &[(&str, &str)]) -> bool {
    headers
        .iter()
        .any(|(name, _)| name.eq_ignore_ascii_case(hyper::header::CONTENT_TYPE.as_str()))
}

/// The parts of an https:// URL a request needs.
struct Target {
    host: String,
    port: u16,
    authority: String,
    path_and_query: String,
}

impl Target {
    fn parse(url: &str) -> Result<Self, TransportError> {
        let invalid = |why: &str| TransportError::InvalidUrl {
            url: url.to_string(),
            why: why.to_string(),
        };
        let uri: Uri = url.parse().map_err(|_| invalid("not a URL"))?;
        if uri.scheme_str() != Some("https") {
            return Err(TransportError::NotHttps {
                url: url.to_string(),
            });
        }
        let authority = uri.authority().ok_or_else(|| invalid("no host"))?;
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        Ok(Self {
            port: authority.port_u16().unwrap_or(443),
            authority: authority.to_string(),
            path_and_query: uri
                .path_and_query()
                .map_or_else(|| "/".to_string(), ToString::to_string),
            host,
        })
    }
}

/// A rustls client configuration with the ring provider and the safe default protocol versions.
pub fn client_config_builder() -> rustls::ConfigBuilder<rustls::ClientConfig, rustls::WantsVerifier>
{
    rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_https_urls() {
        let target = Target::parse("https://127.0.0.1:2379/v3/kv/range").unwrap();
        assert_eq!(target.host, "127.0.0.1");
        assert_eq!(target.port, 2379);
        assert_eq!(target.authority, "127.0.0.1:2379");
        assert_eq!(target.path_and_query, "/v3/kv/range");
        let v6 = Target::parse("https://[::1]:9443/v1/ca").unwrap();
        assert_eq!(v6.host, "::1");
    }

    #[test]
    fn a_caller_content_type_replaces_json() {
        assert!(!has_content_type(&[("Accept", "application/json")]));
        assert!(has_content_type(&[(
            "content-type",
            "application/apply-patch+yaml"
        )]));
    }

    #[test]
    fn refuses_plain_http() {
        let err = Target::parse("http://127.0.0.1:2379/v3/kv/range")
            .err()
            .unwrap();
        assert!(matches!(err, TransportError::NotHttps { .. }), "{err}");
    }
}
