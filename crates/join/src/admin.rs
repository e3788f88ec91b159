//! Token administration over the server's admin socket (`RunDir::admin_socket()`, mode 0600).
//!
//! The protocol is JSON over HTTP/1.1 on the unix socket, so it can be composed with the other
//! admin endpoints of the server and debugged with `curl --unix-socket`:
//! - `POST /v1/tokens` [`CreateTokenRequest`] -> [`CreateTokenResponse`]
//! - `GET  /v1/tokens` -> [`ListTokensResponse`]
//! - `POST /v1/tokens/invalidate` [`InvalidateTokensRequest`] -> [`InvalidateTokensResponse`]
//! - errors: [`crate::api::ErrorResponse`] with a 4xx/5xx status.
//!
//! Only root (the socket's owner) can connect; the token secret travels only over this socket.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::header::{CONTENT_TYPE, HOST};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::net::{UnixListener, UnixStream};

use crate::Error;
use crate::api::ErrorResponse;
use crate::http::{self, HttpResponse, Refusal, json_response, read_json};
use crate::store::{StoreError, TokenInfo, TokenStore};
use crate::token::TokenRole;

pub const PATH_TOKENS: &str = "/v1/tokens";
pub const PATH_INVALIDATE: &str = "/v1/tokens/invalidate";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateTokenRequest {
    pub role: TokenRole,
    /// Validity in seconds; 0 never expires.
    pub expiry_seconds: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateTokenResponse {
    /// The token string to hand to the joining node.
    pub token: String,
    pub info: TokenInfo,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warning: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListTokensResponse {
    pub tokens: Vec<TokenInfo>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvalidateTokensRequest {
    pub ids: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvalidateTokensResponse {
    pub invalidated: Vec<String>,
    /// Ids that named no usable token.
    pub unknown: Vec<String>,
}

/// The server side: the token store plus what a token must name (join URLs, CA).
#[derive(Debug, Clone)]
pub struct TokenAdmin {
    store: TokenStore,
    join_urls: Vec<String>,
    ca_pem: String,
}

impl TokenAdmin {
    /// `join_urls`: the join API URL of every controller (`https://addr:9443`), put in tokens.
    pub fn new(store: TokenStore, join_urls: Vec<String>, ca_pem: String) -> Self {
        Self {
            store,
            join_urls,
            ca_pem,
        }
    }

    /// True for the paths [`TokenAdmin::handle`] answers (for servers composing admin handlers).
    pub fn handles(path: &str) -> bool {
        path == PATH_TOKENS || path.starts_with("/v1/tokens/")
    }

    pub async fn create(
        &self,
        request: &CreateTokenRequest,
    ) -> Result<CreateTokenResponse, StoreError> {
        let created = self
            .store
            .create(
                request.role,
                Duration::from_secs(request.expiry_seconds),
                self.join_urls.clone(),
                &self.ca_pem,
            )
            .await?;
        Ok(CreateTokenResponse {
            token: created.token.encode(),
            info: created.info,
            warning: created.warning,
        })
    }

    pub async fn list(&self) -> Result<ListTokensResponse, StoreError> {
        Ok(ListTokensResponse {
            tokens: self.store.list().await?,
        })
    }

    pub async fn invalidate(
        &self,
        request: &InvalidateTokensRequest,
    ) -> Result<InvalidateTokensResponse, StoreError> {
        let unknown = self.store.invalidate(&request.ids).await?;
        let invalidated = request
            .ids
            .iter()
            .filter(|id| !unknown.contains(id))
            .cloned()
            .collect();
        Ok(InvalidateTokensResponse {
            invalidated,
            unknown,
        })
    }

    /// Answers one admin request for a token path.
    pub async fn handle(&self, request: Request<Incoming>) -> HttpResponse {
        let method = request.method().clone();
        let path = request.uri().path().to_string();
        let answer = match (&method, path.as_str()) {
            (&Method::GET, PATH_TOKENS) => to_answer(self.list().await),
            (&Method::POST, PATH_TOKENS) => match read_json(request).await {
                Ok(create) => to_answer(self.create(&create).await),
                Err(refusal) => Err(refusal),
            },
            (&Method::POST, PATH_INVALIDATE) => match read_json(request).await {
                Ok(ids) => to_answer(self.invalidate(&ids).await),
                Err(refusal) => Err(refusal),
            },
            _ => Err(Refusal::new(
                StatusCode::NOT_FOUND,
                format!("no admin endpoint {method} {path}"),
            )),
        };
        answer.unwrap_or_else(|refusal| {
            tracing::warn!(%method, path, error = refusal.message, "admin request failed");
            refusal.into_response()
        })
    }
}

fn to_answer<T: Serialize>(result: Result<T, StoreError>) -> Result<HttpResponse, Refusal> {
    match result {
        Ok(value) => Ok(json_response(StatusCode::OK, &value)),
        Err(StoreError::Invalid(why)) => Err(Refusal::new(StatusCode::BAD_REQUEST, why)),
        Err(err) => Err(Refusal::new(
            StatusCode::SERVICE_UNAVAILABLE,
            err.to_string(),
        )),
    }
}

/// Binds the admin socket at `path` with mode 0600 (root only), replacing a stale socket left by
/// a k0x that died. The caller must hold the data-dir lock, so no live server owns the old one.
pub fn bind(path: &Path) -> std::io::Result<UnixListener> {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    if std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket()) {
        std::fs::remove_file(path)?;
    }
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

/// Answers the requests of an admin socket. [`TokenAdmin`] is one; the server composes it with
/// its status endpoint into another.
pub trait AdminHandler: Send + Sync + 'static {
    fn handle(&self, request: Request<Incoming>) -> impl Future<Output = HttpResponse> + Send;
}

impl AdminHandler for TokenAdmin {
    async fn handle(&self, request: Request<Incoming>) -> HttpResponse {
        TokenAdmin::handle(self, request).await
    }
}

/// Serves `admin` on `listener` until `shutdown` completes.
pub async fn serve<H: AdminHandler>(
    listener: UnixListener,
    admin: Arc<H>,
    shutdown: impl Future<Output = ()>,
) {
    http::accept_until(listener, "admin socket", shutdown, |stream| {
        let admin = Arc::clone(&admin);
        let answer = move |request| {
            let admin = Arc::clone(&admin);
            async move { AdminHandler::handle(&*admin, request).await }
        };
        tokio::spawn(async move {
            if let Err(err) = http::serve_connection(stream, answer).await {
                tracing::debug!(%err, "admin connection ended");
            }
        });
    })
    .await;
}

/// Why an admin call failed.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error(
        "k0x is not running here: cannot connect to {path} ({cause}); is `k0x server` running (start it, or `k0x start`), and is --run-dir the same as the server's?"
    )]
    Connect {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error(
        "permission denied on the admin socket {path}: only root may talk to the k0x server; run this as root (sudo)"
    )]
    Denied { path: PathBuf },
    #[error("the k0x server refused: {0}")]
    Refused(String),
    #[error("talking to the k0x server at {path} failed: {why}")]
    Protocol { path: PathBuf, why: String },
}

/// The client side, used by `k0x token ...`.
#[derive(Debug, Clone)]
pub struct AdminClient {
    socket: PathBuf,
}

impl AdminClient {
    pub fn new(socket: impl Into<PathBuf>) -> Self {
        Self {
            socket: socket.into(),
        }
    }

    pub async fn create_token(
        &self,
        role: TokenRole,
        expiry: Duration,
    ) -> Result<CreateTokenResponse, AdminError> {
        let request = CreateTokenRequest {
            role,
            expiry_seconds: expiry.as_secs(),
        };
        self.call(Method::POST, PATH_TOKENS, Some(&request)).await
    }

    pub async fn list_tokens(&self) -> Result<ListTokensResponse, AdminError> {
        self.get(PATH_TOKENS).await
    }

    pub async fn invalidate_tokens(
        &self,
        ids: &[String],
    ) -> Result<InvalidateTokensResponse, AdminError> {
        let request = InvalidateTokensRequest { ids: ids.to_vec() };
        self.call(Method::POST, PATH_INVALIDATE, Some(&request))
            .await
    }

    /// A GET of any admin endpoint answering JSON (`/v1/status`, ...).
    pub async fn get<Resp: DeserializeOwned>(&self, path: &str) -> Result<Resp, AdminError> {
        self.call::<(), _>(Method::GET, path, None).await
    }

    async fn call<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&Req>,
    ) -> Result<Resp, AdminError> {
        let protocol = |why: String| AdminError::Protocol {
            path: self.socket.clone(),
            why,
        };
        let stream = UnixStream::connect(&self.socket).await.map_err(|cause| {
            let path = self.socket.clone();
            match cause.kind() {
                std::io::ErrorKind::PermissionDenied => AdminError::Denied { path },
                _ => AdminError::Connect { path, cause },
            }
        })?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| protocol(e.to_string()))?;
        tokio::spawn(connection);
        let bytes = body.map_or_else(Vec::new, |b| serde_json::to_vec(b).expect("json"));
        let request = Request::builder()
            .method(method)
            .uri(path)
            .header(HOST, "k0x")
            .header(CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(bytes)))
            .map_err(|e| protocol(e.to_string()))?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| protocol(e.to_string()))?;
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| protocol(e.to_string()))?
            .to_bytes();
        if !status.is_success() {
            let message = serde_json::from_slice::<ErrorResponse>(&body)
                .map(|e| e.error)
                .unwrap_or_else(|_| format!("HTTP {status}"));
            return Err(AdminError::Refused(message));
        }
        serde_json::from_slice(&body).map_err(|e| protocol(e.to_string()))
    }

    /// The socket this client talks to.
    pub fn socket(&self) -> &Path {
        &self.socket
    }
}

/// Parses a token expiry: `0` (never), or a duration as `k0x_pki::parse_duration_sum` reads it
/// (`24h`, `1h30m`).
pub fn parse_expiry(text: &str) -> Result<Duration, Error> {
    let text = text.trim();
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    let refuse = |why: String| Error::Expiry {
        text: text.to_owned(),
        why,
    };
    match k0x_pki::parse_duration_sum(text) {
        None => Err(refuse(format!(
            "is not a duration: {}, or 0 for never",
            k0x_pki::DURATION_HINT
        ))),
        Some(expiry) if expiry.is_zero() => Err(refuse(
            "is zero: write 0 for a token that never expires (not recommended), or a validity \
             such as 24h"
                .to_owned(),
        )),
        Some(expiry) => Ok(expiry),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiries_parse() {
        let expiry = |text| parse_expiry(text).unwrap();
        assert_eq!(expiry("0"), Duration::ZERO);
        assert_eq!(expiry("24h"), Duration::from_secs(86_400));
        assert_eq!(expiry("1h30m"), Duration::from_secs(5_400));
        assert_eq!(expiry("7d"), Duration::from_secs(604_800));
        for bad in ["", "24", "h", "1x", "0h", "-1h"] {
            let err = parse_expiry(bad).unwrap_err().to_string();
            assert!(
                err.starts_with(&format!("--expiry {bad:?} ")),
                "{bad}: {err}"
            );
        }
        let err = parse_expiry("0h").unwrap_err().to_string();
        assert!(err.contains("is zero: write 0"), "{err}");
    }

    #[test]
    fn token_paths_are_recognised() {
        assert!(TokenAdmin::handles("/v1/tokens"));
        assert!(TokenAdmin::handles("/v1/tokens/invalidate"));
        assert!(!TokenAdmin::handles("/v1/status"));
    }
}
