//! The few Kubernetes API calls the applier makes (get, server-side apply, delete), over the
//! workspace's one HTTPS client, as the cluster admin (`pki/admin.conf`'s certificate) with the
//! cluster CA verified. A worker, which holds no admin credentials, uses the same client with one
//! of its own kubeconfigs.

use std::path::Path;
use std::sync::Arc;

use hyper::{Method, StatusCode};
use k0x_config::DataDir;
use k0x_etcd::transport::client_config_builder;
use k0x_etcd::{HttpsTransport, TransportError, parse_certs, parse_key};
use k0x_pki::Kubeconfig;
use serde_json::Value;

/// What can go wrong talking to the apiserver.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("cannot use the credentials of {path}: {why}")]
    Credentials { path: String, why: String },
    #[error("the apiserver is unreachable ({0})")]
    Unreachable(#[from] TransportError),
    #[error("{method} {path}: {message} (HTTP {status})")]
    Refused {
        method: Method,
        path: String,
        status: StatusCode,
        message: String,
    },
    #[error("the apiserver serves no kind {kind} in {api_version}")]
    UnknownKind { api_version: String, kind: String },
}

impl ApiError {
    pub fn is_not_found(&self) -> bool {
        matches!(self, ApiError::Refused { status, .. } if *status == StatusCode::NOT_FOUND)
    }
}

fn credentials(path: &Path, why: &dyn std::fmt::Display) -> ApiError {
    ApiError::Credentials {
        path: path.display().to_string(),
        why: why.to_string(),
    }
}

/// A client of one apiserver.
#[derive(Debug)]
pub struct ApiClient {
    transport: HttpsTransport,
    server: String,
}

impl ApiClient {
    /// A client of `server` (`https://127.0.0.1:6443`) with the credentials of the data dir's
    /// admin kubeconfig.
    pub fn as_admin(data: &DataDir, server: &str) -> Result<Self, ApiError> {
        let path = data.admin_kubeconfig();
        let text = k0x_pki::admin_kubeconfig(data).map_err(|e| credentials(&path, &e))?;
        Self::with_kubeconfig(&path, &text, server)
    }

    /// A client of `server` with the credentials of the kubeconfig at `path` (one k0x wrote,
    /// with its certificates inline), such as a worker's kube-proxy kubeconfig.
    pub fn from_kubeconfig(path: &Path, server: &str) -> Result<Self, ApiError> {
        let text = std::fs::read_to_string(path).map_err(|e| credentials(path, &e))?;
        Self::with_kubeconfig(path, &text, server)
    }

    fn with_kubeconfig(path: &Path, text: &str, server: &str) -> Result<Self, ApiError> {
        let bad = |why: String| credentials(path, &why);
        let kubeconfig = Kubeconfig::parse(path, text).map_err(|e| bad(e.to_string()))?;
        let mut roots = rustls::RootCertStore::empty();
        for cert in parse_certs(&kubeconfig.ca_pem).map_err(bad)? {
            roots.add(cert).map_err(|e| bad(e.to_string()))?;
        }
        let chain = parse_certs(&kubeconfig.client_cert_pem).map_err(bad)?;
        let key = parse_key(&kubeconfig.client_key_pem).map_err(bad)?;
        let tls = client_config_builder()
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)
            .map_err(|e| bad(e.to_string()))?;
        Ok(Self {
            transport: HttpsTransport::new(Arc::new(tls)),
            server: server.trim_end_matches('/').to_owned(),
        })
    }

    /// A client of a port nothing listens on: any call fails, which tests use to show a round
    /// made none.
    #[cfg(test)]
    pub fn unreachable() -> Self {
        let tls = client_config_builder()
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth();
        Self {
            transport: HttpsTransport::new(Arc::new(tls)),
            server: "https://127.0.0.1:1".to_owned(),
        }
    }

    pub async fn get(&self, path: &str) -> Result<Value, ApiError> {
        self.call(Method::GET, path, &[], None).await
    }

    /// Server-side apply of `body` at `path` (the object's own path) under `manager`, taking over
    /// fields other managers set: the files are the truth.
    pub async fn apply(&self, path: &str, manager: &str, body: &Value) -> Result<Value, ApiError> {
        let path = format!("{path}?fieldManager={}&force=true", segment(manager));
        let headers = [("Content-Type", "application/apply-patch+yaml")];
        self.call(Method::PATCH, &path, &headers, Some(body)).await
    }

    /// Deletes the object at `path`; its dependents are collected in the background. An object
    /// already gone counts as deleted.
    pub async fn delete(&self, path: &str, options: &Value) -> Result<(), ApiError> {
        match self.call(Method::DELETE, path, &[], Some(options)).await {
            Ok(_) => Ok(()),
            Err(err) if err.is_not_found() => Ok(()),
            Err(err) => Err(err),
        }
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&Value>,
    ) -> Result<Value, ApiError> {
        let url = format!("{}{path}", self.server);
        let bytes = body.map(Value::to_string).unwrap_or_default().into_bytes();
        let mut all_headers = vec![("Accept", "application/json")];
        all_headers.extend_from_slice(headers);
        let response = self
            .transport
            .request(method.clone(), &url, &all_headers, bytes)
            .await?;
        let answer: Value = serde_json::from_slice(&response.body).unwrap_or(Value::Null);
        if response.status.is_success() {
            return Ok(answer);
        }
        let message = answer["message"].as_str().map_or_else(
            || String::from_utf8_lossy(&response.body).trim().to_owned(),
            str::to_owned,
        );
        Err(ApiError::Refused {
            method,
            path: path.split('?').next().unwrap_or(path).to_owned(),
            status: response.status,
            message,
        })
    }
}

/// `text` as one URL path segment or query value: everything but unreserved characters (and the
/// `:` of names like `system:coredns`) percent-encoded.
pub fn segment(text: &str) -> String {
    let mut encoded = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~:".contains(&byte) {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

/// `?labelSelector=` for objects whose `label` is `value`, or that carry `label` at all.
pub fn label_selector(label: &str, value: Option<&str>) -> String {
    let selector = match value {
        Some(value) => format!("{label}={value}"),
        None => label.to_owned(),
    };
    format!("?labelSelector={}", segment(&selector))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_keep_names_and_encode_the_rest() {
        assert_eq!(segment("system:coredns"), "system:coredns");
        assert_eq!(segment("a b/c"), "a%20b%2Fc");
        assert_eq!(
            label_selector("k0x.io/stack", Some("apps")),
            "?labelSelector=k0x.io%2Fstack%3Dapps"
        );
    }

    fn written_by_k0x() -> (tempfile::TempDir, DataDir) {
        let tmp = tempfile::tempdir().unwrap();
        let data = DataDir::new(tmp.path().join("data"));
        let mut request = k0x_pki::PkiRequest::from_config(&k0x_config::ClusterConfig::default());
        request.hostname = "node-1".into();
        request.node_name = "node-1".into();
        k0x_pki::ensure_pki(&data, &request).unwrap();
        (tmp, data)
    }

    #[test]
    fn a_kubeconfig_k0x_wrote_gives_a_client_of_the_server_named() {
        let (_tmp, data) = written_by_k0x();
        let client =
            ApiClient::from_kubeconfig(&data.admin_kubeconfig(), "https://127.0.0.1:7443/")
                .unwrap();
        assert_eq!(client.server, "https://127.0.0.1:7443");
    }

    #[test]
    fn a_missing_or_foreign_kubeconfig_is_an_error_naming_it() {
        let tmp = tempfile::tempdir().unwrap();
        let missing = tmp.path().join("missing.conf");
        let error = ApiClient::from_kubeconfig(&missing, "https://127.0.0.1:7443").unwrap_err();
        assert!(error.to_string().contains("missing.conf"), "{error}");
        let foreign = tmp.path().join("foreign.conf");
        std::fs::write(&foreign, "just: text\n").unwrap();
        let error = ApiClient::from_kubeconfig(&foreign, "https://127.0.0.1:7443").unwrap_err();
        assert!(error.to_string().contains("foreign.conf"), "{error}");
    }
}
