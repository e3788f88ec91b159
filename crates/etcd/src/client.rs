//! The etcd client: key/value, leases, membership and status over the JSON gateway.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use hyper::{Method, StatusCode};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::proto;
use crate::transport::{HttpsTransport, TransportError, client_config_builder};

/// What can go wrong talking to etcd.
#[derive(Debug, thiserror::Error)]
pub enum EtcdError {
    #[error("etcd TLS material {path}: {why}")]
    Tls { path: PathBuf, why: String },
    #[error("no etcd endpoint given: pass at least one https:// client URL")]
    NoEndpoints,
    #[error("etcd unreachable ({0})")]
    Unreachable(TransportError),
    #[error("etcd at {endpoint} refused {call}: {message} (HTTP {status})")]
    Server {
        endpoint: String,
        call: &'static str,
        status: StatusCode,
        message: String,
    },
    #[error("etcd answer to {call} unreadable: {why}")]
    Decode { call: &'static str, why: String },
    #[error(
        "etcd member {id:x} with peer URL {peer_url} has run already: it cannot start again without its data; remove it with `k0x etcd leave --peer-url {peer_url}` on another controller, then join again"
    )]
    MemberRan { id: u64, peer_url: String },
}

impl EtcdError {
    /// The server's error message, if etcd answered with one.
    pub fn server_message(&self) -> Option<&str> {
        match self {
            Self::Server { message, .. } => Some(message),
            _ => None,
        }
    }
}

/// Client TLS material in PEM form: the CA that signed etcd's serving certificate and the client
/// certificate and key etcd requires (`--client-cert-auth`).
#[derive(Clone)]
pub struct ClientTls {
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
}

impl std::fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientTls").finish_non_exhaustive()
    }
}

impl ClientTls {
    /// Reads the CA, client certificate and key from files.
    pub fn from_files(ca: &Path, cert: &Path, key: &Path) -> Result<Self, EtcdError> {
        let read = |path: &Path| {
            std::fs::read_to_string(path).map_err(|e| EtcdError::Tls {
                path: path.to_path_buf(),
                why: format!("{e}; check that the etcd PKI was generated"),
            })
        };
        Ok(Self {
            ca_pem: read(ca)?,
            cert_pem: read(cert)?,
            key_pem: read(key)?,
        })
    }

    fn rustls_config(&self) -> Result<rustls::ClientConfig, EtcdError> {
        let bad = |what: &str, why: String| EtcdError::Tls {
            path: PathBuf::from(what),
            why,
        };
        let mut roots = rustls::RootCertStore::empty();
        for cert in parse_certs(&self.ca_pem).map_err(|e| bad("CA", e))? {
            roots
                .add(cert)
                .map_err(|e| bad("CA", format!("unusable CA certificate: {e}")))?;
        }
        let chain = parse_certs(&self.cert_pem).map_err(|e| bad("client certificate", e))?;
        let key = parse_key(&self.key_pem).map_err(|e| bad("client key", e))?;
        client_config_builder()
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)
            .map_err(|e| bad("client certificate", e.to_string()))
    }
}

/// Parses every certificate of a PEM bundle; an empty bundle is an error.
pub fn parse_certs(pem: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = rustls_pemfile::certs(&mut pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("not PEM: {e}"))?;
    if certs.is_empty() {
        return Err("no CERTIFICATE block found".into());
    }
    Ok(certs)
}

/// Parses the first private key of a PEM file (PKCS#8, SEC1 or PKCS#1).
pub fn parse_key(pem: &str) -> Result<PrivateKeyDer<'static>, String> {
    rustls_pemfile::private_key(&mut pem.as_bytes())
        .map_err(|e| format!("not PEM: {e}"))?
        .ok_or_else(|| "no PRIVATE KEY block found".into())
}

/// A key/value pair with its revisions and lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    pub key: Vec<u8>,
    pub value: Vec<u8>,
    pub create_revision: u64,
    pub mod_revision: u64,
    pub version: u64,
    /// Lease the key is attached to (0: none).
    pub lease: u64,
}

/// A granted lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    pub id: u64,
    pub ttl_seconds: u64,
}

/// A cluster member. A learner that has not started yet has an empty name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub id: u64,
    pub name: String,
    pub peer_urls: Vec<String>,
    pub client_urls: Vec<String>,
    pub is_learner: bool,
}

/// Status of the member that answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    pub member_id: u64,
    pub cluster_id: u64,
    pub version: String,
    pub db_size: u64,
    pub leader: u64,
    pub raft_index: u64,
    pub raft_term: u64,
    pub is_learner: bool,
    pub errors: Vec<String>,
}

/// An etcd client over one or more client URLs (`https://host:2379`), tried in order.
#[derive(Debug, Clone)]
pub struct Client {
    endpoints: Arc<Vec<String>>,
    transport: Arc<HttpsTransport>,
}

impl Client {
    /// A client for `endpoints` authenticating with `tls`. Nothing is contacted yet.
    pub fn new(endpoints: &[String], tls: &ClientTls) -> Result<Self, EtcdError> {
        if endpoints.is_empty() {
            return Err(EtcdError::NoEndpoints);
        }
        let transport = HttpsTransport::new(Arc::new(tls.rustls_config()?));
        Ok(Self {
            endpoints: Arc::new(
                endpoints
                    .iter()
                    .map(|e| e.trim_end_matches('/').to_string())
                    .collect(),
            ),
            transport: Arc::new(transport),
        })
    }

    /// The client URLs this client uses.
    pub fn endpoints(&self) -> &[String] {
        &self.endpoints
    }

    /// Stores `value` at `key`, attached to `lease` (0: none).
    pub async fn put(&self, key: &str, value: &[u8], lease: u64) -> Result<(), EtcdError> {
        let request = proto::PutRequest {
            key: B64.encode(key),
            value: B64.encode(value),
            lease,
        };
        self.call::<_, serde_json::Value>("put", "/v3/kv/put", &request)
            .await
            .map(drop)
    }

    /// Stores `value` at `key` only if the key does not exist; true if it was stored.
    pub async fn put_if_absent(
        &self,
        key: &str,
        value: &[u8],
        lease: u64,
    ) -> Result<bool, EtcdError> {
        let compare = proto::Compare {
            key: B64.encode(key),
            target: "CREATE",
            result: "EQUAL",
            create_revision: Some(0),
            mod_revision: None,
        };
        self.put_when(compare, key, value, lease).await
    }

    /// Stores `value` at `key` only if the key was last modified at `mod_revision` (an update
    /// that loses no concurrent write); true if it was stored.
    pub async fn put_if_unchanged(
        &self,
        key: &str,
        value: &[u8],
        lease: u64,
        mod_revision: u64,
    ) -> Result<bool, EtcdError> {
        let compare = proto::Compare {
            key: B64.encode(key),
            target: "MOD",
            result: "EQUAL",
            create_revision: None,
            mod_revision: Some(mod_revision),
        };
        self.put_when(compare, key, value, lease).await
    }

    async fn put_when(
        &self,
        compare: proto::Compare,
        key: &str,
        value: &[u8],
        lease: u64,
    ) -> Result<bool, EtcdError> {
        let request = proto::TxnRequest {
            compare: vec![compare],
            success: vec![proto::RequestOp {
                request_put: proto::PutRequest {
                    key: B64.encode(key),
                    value: B64.encode(value),
                    lease,
                },
            }],
        };
        let response: proto::TxnResponse = self.call("txn", "/v3/kv/txn", &request).await?;
        Ok(response.succeeded)
    }

    /// The value at `key`, if any.
    pub async fn get(&self, key: &str) -> Result<Option<KeyValue>, EtcdError> {
        let request = proto::RangeRequest {
            key: B64.encode(key),
            range_end: None,
        };
        let response: proto::RangeResponse = self.call("range", "/v3/kv/range", &request).await?;
        response.kvs.first().map(decode_kv).transpose()
    }

    /// Every key starting with `prefix`, in key order.
    pub async fn get_prefix(&self, prefix: &str) -> Result<Vec<KeyValue>, EtcdError> {
        let request = proto::RangeRequest {
            key: B64.encode(prefix),
            range_end: Some(B64.encode(prefix_end(prefix.as_bytes()))),
        };
        let response: proto::RangeResponse = self.call("range", "/v3/kv/range", &request).await?;
        response.kvs.iter().map(decode_kv).collect()
    }

    /// Deletes `key`; returns how many keys were deleted (0 or 1).
    pub async fn delete(&self, key: &str) -> Result<u64, EtcdError> {
        self.delete_range(key, None).await
    }

    /// Deletes every key starting with `prefix`; returns how many were deleted.
    pub async fn delete_prefix(&self, prefix: &str) -> Result<u64, EtcdError> {
        self.delete_range(prefix, Some(prefix_end(prefix.as_bytes())))
            .await
    }

    async fn delete_range(&self, key: &str, range_end: Option<Vec<u8>>) -> Result<u64, EtcdError> {
        let request = proto::RangeRequest {
            key: B64.encode(key),
            range_end: range_end.map(|end| B64.encode(end)),
        };
        let response: proto::DeleteRangeResponse = self
            .call("deleterange", "/v3/kv/deleterange", &request)
            .await?;
        Ok(response.deleted)
    }

    /// Grants a lease of `ttl_seconds`; keys put with it vanish when it expires.
    pub async fn lease_grant(&self, ttl_seconds: u64) -> Result<Lease, EtcdError> {
        let request = proto::LeaseGrantRequest { ttl: ttl_seconds };
        let response: proto::LeaseGrantResponse = self
            .call("lease grant", "/v3/lease/grant", &request)
            .await?;
        if !response.error.is_empty() {
            return Err(EtcdError::Decode {
                call: "lease grant",
                why: response.error,
            });
        }
        Ok(Lease {
            id: response.id,
            ttl_seconds: response.ttl,
        })
    }

    /// Revokes a lease, deleting every key attached to it.
    pub async fn lease_revoke(&self, id: u64) -> Result<(), EtcdError> {
        self.call::<_, serde_json::Value>(
            "lease revoke",
            "/v3/lease/revoke",
            &proto::IdRequest { id },
        )
        .await
        .map(drop)
    }

    /// Every member, voting or learner.
    pub async fn member_list(&self) -> Result<Vec<Member>, EtcdError> {
        let response: proto::MembersResponse = self
            .call(
                "member list",
                "/v3/cluster/member/list",
                &serde_json::json!({}),
            )
            .await?;
        Ok(response.members.into_iter().map(member).collect())
    }

    /// Adds a member with `peer_urls`; returns it and the full member list after the change.
    pub async fn member_add(
        &self,
        peer_urls: &[String],
        is_learner: bool,
    ) -> Result<(Member, Vec<Member>), EtcdError> {
        let request = proto::MemberAddRequest {
            peer_urls: peer_urls.to_vec(),
            is_learner,
        };
        let response: proto::MembersResponse = self
            .call("member add", "/v3/cluster/member/add", &request)
            .await?;
        let added = response.member.ok_or(EtcdError::Decode {
            call: "member add",
            why: "the answer names no member".into(),
        })?;
        Ok((
            member(added),
            response.members.into_iter().map(member).collect(),
        ))
    }

    /// Promotes a learner to a voting member (etcd refuses while it lags behind the leader).
    pub async fn member_promote(&self, id: u64) -> Result<Vec<Member>, EtcdError> {
        let response: proto::MembersResponse = self
            .call(
                "member promote",
                "/v3/cluster/member/promote",
                &proto::IdRequest { id },
            )
            .await?;
        Ok(response.members.into_iter().map(member).collect())
    }

    /// Removes a member.
    pub async fn member_remove(&self, id: u64) -> Result<Vec<Member>, EtcdError> {
        let response: proto::MembersResponse = self
            .call(
                "member remove",
                "/v3/cluster/member/remove",
                &proto::IdRequest { id },
            )
            .await?;
        Ok(response.members.into_iter().map(member).collect())
    }

    /// Status of the first endpoint that answers.
    pub async fn status(&self) -> Result<Status, EtcdError> {
        let response: proto::StatusResponse = self
            .call("status", "/v3/maintenance/status", &serde_json::json!({}))
            .await?;
        Ok(Status {
            member_id: response.header.member_id,
            cluster_id: response.header.cluster_id,
            version: response.version,
            db_size: response.db_size,
            leader: response.leader,
            raft_index: response.raft_index,
            raft_term: response.raft_term,
            is_learner: response.is_learner,
            errors: response.errors,
        })
    }

    /// Posts `request` to `path` on the first endpoint that can be reached.
    async fn call<Req: Serialize, Resp: DeserializeOwned + Default>(
        &self,
        call: &'static str,
        path: &str,
        request: &Req,
    ) -> Result<Resp, EtcdError> {
        let body = serde_json::to_vec(request).map_err(|e| EtcdError::Decode {
            call,
            why: e.to_string(),
        })?;
        let mut last_error = None;
        for endpoint in self.endpoints.iter() {
            let url = format!("{endpoint}{path}");
            match self
                .transport
                .request(Method::POST, &url, &[], body.clone())
                .await
            {
                Ok(response) => return decode(endpoint, call, &response),
                Err(err) => {
                    tracing::debug!(%endpoint, %err, call, "etcd endpoint failed, trying the next");
                    last_error = Some(err);
                }
            }
        }
        Err(EtcdError::Unreachable(
            last_error.expect("at least one endpoint was tried"),
        ))
    }
}

fn decode<Resp: DeserializeOwned + Default>(
    endpoint: &str,
    call: &'static str,
    response: &crate::transport::Response,
) -> Result<Resp, EtcdError> {
    if !response.status.is_success() {
        let body: proto::ErrorBody = serde_json::from_slice(&response.body).unwrap_or_default();
        let message = [body.error, body.message]
            .into_iter()
            .find(|m| !m.is_empty())
            .unwrap_or_else(|| String::from_utf8_lossy(&response.body).trim().to_string());
        return Err(EtcdError::Server {
            endpoint: endpoint.to_string(),
            call,
            status: response.status,
            message,
        });
    }
    if response.body.is_empty() {
        return Ok(Resp::default());
    }
    serde_json::from_slice(&response.body).map_err(|e| EtcdError::Decode {
        call,
        why: e.to_string(),
    })
}

fn decode_kv(raw: &proto::RawKeyValue) -> Result<KeyValue, EtcdError> {
    let bytes = |field: &str| {
        B64.decode(field).map_err(|e| EtcdError::Decode {
            call: "range",
            why: format!("bad base64: {e}"),
        })
    };
    Ok(KeyValue {
        key: bytes(&raw.key)?,
        value: bytes(&raw.value)?,
        create_revision: raw.create_revision,
        mod_revision: raw.mod_revision,
        version: raw.version,
        lease: raw.lease,
    })
}

fn member(raw: proto::RawMember) -> Member {
    Member {
        id: raw.id,
        name: raw.name,
        peer_urls: raw.peer_urls,
        client_urls: raw.client_urls,
        is_learner: raw.is_learner,
    }
}

/// The smallest key greater than every key starting with `prefix` (etcd's `range_end`).
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    // Every byte was 0xff: "\0" means "to the end of the keyspace".
    vec![0]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_increments_the_last_byte() {
        assert_eq!(prefix_end(b"/k0x/tokens/"), b"/k0x/tokens0".to_vec());
        assert_eq!(prefix_end(b"a\xff"), b"b".to_vec());
        assert_eq!(prefix_end(b"\xff"), vec![0]);
    }

    #[test]
    fn missing_tls_files_say_which() {
        let err = ClientTls::from_files(
            Path::new("/nonexistent/ca.crt"),
            Path::new("/nonexistent/c.crt"),
            Path::new("/nonexistent/c.key"),
        )
        .unwrap_err();
        assert!(err.to_string().contains("/nonexistent/ca.crt"), "{err}");
    }

    #[test]
    fn no_endpoints_is_an_error() {
        let tls = ClientTls {
            ca_pem: String::new(),
            cert_pem: String::new(),
            key_pem: String::new(),
        };
        assert!(matches!(
            Client::new(&[], &tls),
            Err(EtcdError::NoEndpoints)
        ));
    }
}
