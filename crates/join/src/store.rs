//! Tokens and joined nodes, kept in etcd so that every controller can check them.
//!
//! `/k0x/tokens/<id>` holds a [`TokenRecord`]: the role, a salted sha256 of the secret (never
//! the secret), creation and expiry times and a use count, attached to an etcd lease so that
//! etcd itself removes it. The lease outlives the expiry by a grace period so that a node
//! presenting a recently expired or invalidated token is told exactly that, instead of "unknown".
//!
//! `/k0x/nodes/<name>` remembers the sha256 of the public key a node name joined with, so that a
//! second machine cannot take over a node name (and its pods and secrets) by re-joining.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use k0x_etcd::{Client, EtcdError};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::token::{Token, TokenRole, split_bearer};

const TOKENS_PREFIX: &str = "/k0x/tokens/";
const NODES_PREFIX: &str = "/k0x/nodes/";
/// How long an expired or invalidated token is remembered for a precise error message.
const GRACE: Duration = Duration::from_secs(24 * 3600);
/// Attempts of a compare-and-swap before giving up on counting a use.
const CAS_ATTEMPTS: u32 = 8;

/// What etcd keeps per token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    pub role: TokenRole,
    /// Salted sha256 (hex) of the secret, see `secret_hash`.
    pub hash: String,
    /// Unix seconds.
    pub created: u64,
    /// Unix seconds; 0 never expires.
    pub expires: u64,
    pub uses: u64,
    #[serde(default)]
    pub invalidated: bool,
}

/// A token as `k0x token list` shows it: never the secret nor its hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenInfo {
    pub id: String,
    pub role: TokenRole,
    pub created: u64,
    /// Unix seconds; 0 never expires.
    pub expires: u64,
    pub uses: u64,
}

/// A freshly created token.
#[derive(Debug, Clone)]
pub struct CreatedToken {
    pub token: Token,
    pub info: TokenInfo,
    /// Set when the token never expires.
    pub warning: Option<String>,
}

/// Why a presented credential was refused. The messages go to the joining node; they never
/// contain the secret.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error(
        "no valid credential: send \"Authorization: Bearer <id>.<secret>\" from a k0x join token"
    )]
    Malformed,
    #[error("token {0} is unknown to this cluster: create a new one with `k0x token create`")]
    Unknown(String),
    #[error("token {0} has expired: create a new one with `k0x token create`")]
    Expired(String),
    #[error("token {0} was invalidated: create a new one with `k0x token create`")]
    Invalidated(String),
    #[error("token {0} secret does not match: copy the whole token again")]
    WrongSecret(String),
    #[error(
        "token {id} is a {actual} token and cannot join a {wanted}: create one with `k0x token create --role {wanted}`"
    )]
    WrongRole {
        id: String,
        actual: TokenRole,
        wanted: TokenRole,
    },
    #[error("cannot check the token: {0}")]
    Store(#[from] EtcdError),
}

impl AuthError {
    /// The token id the failure concerns, for logs.
    pub fn token_id(&self) -> Option<&str> {
        match self {
            Self::Unknown(id)
            | Self::Expired(id)
            | Self::Invalidated(id)
            | Self::WrongSecret(id) => Some(id),
            Self::WrongRole { id, .. } => Some(id),
            Self::Malformed | Self::Store(_) => None,
        }
    }
}

/// Errors of the store itself.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Etcd(#[from] EtcdError),
    #[error("record {key} in etcd is unreadable: {why}")]
    Corrupt { key: String, why: String },
    #[error("{0}")]
    Invalid(String),
}

/// The token store.
#[derive(Debug, Clone)]
pub struct TokenStore {
    etcd: Client,
}

impl TokenStore {
    pub fn new(etcd: Client) -> Self {
        Self { etcd }
    }

    /// Creates and stores a token for `role` valid for `expiry` (zero: never), naming the join
    /// API `urls` and pinning `ca_pem`.
    pub async fn create(
        &self,
        role: TokenRole,
        expiry: Duration,
        urls: Vec<String>,
        ca_pem: &str,
    ) -> Result<CreatedToken, StoreError> {
        if urls.is_empty() {
            return Err(StoreError::Invalid(
                "no join API URL known: set spec.api.address (or pass the controller addresses)"
                    .into(),
            ));
        }
        let pin = crate::token::ca_pin(ca_pem)
            .map_err(|why| StoreError::Invalid(format!("cluster CA certificate: {why}")))?;
        let never = expiry.is_zero();
        let mut stored = None;
        // Ids are random; a collision with a live token is retried with a new one.
        for _ in 0..3 {
            stored = self.store_new(role, expiry, &urls, &pin).await?;
            if stored.is_some() {
                break;
            }
        }
        let (token, record) = stored.ok_or_else(|| {
            StoreError::Invalid("could not find a free token id; try again".into())
        })?;
        let warning = never.then(|| {
            format!(
                "token {} never expires: invalidate it with `k0x token invalidate {}` once the nodes have joined",
                token.id, token.id
            )
        });
        if let Some(warning) = &warning {
            tracing::warn!(token_id = %token.id, %role, "{warning}");
        } else {
            tracing::info!(token_id = %token.id, %role, expires = record.expires, "join token created");
        }
        Ok(CreatedToken {
            info: info(&token.id, &record),
            token,
            warning,
        })
    }

    /// Stores a new random token; `None` if its id is taken.
    async fn store_new(
        &self,
        role: TokenRole,
        expiry: Duration,
        urls: &[String],
        pin: &str,
    ) -> Result<Option<(Token, TokenRecord)>, StoreError> {
        let token = Token::generate(role, urls.to_vec(), pin.to_string());
        let created = unix_now();
        let ttl = expiry.as_secs().max(1);
        let record = TokenRecord {
            role,
            hash: secret_hash(&token.id, token.secret()),
            created,
            expires: if expiry.is_zero() { 0 } else { created + ttl },
            uses: 0,
            invalidated: false,
        };
        let lease = if expiry.is_zero() {
            0
        } else {
            self.etcd.lease_grant(ttl + GRACE.as_secs()).await?.id
        };
        let key = token_key(&token.id);
        if self
            .etcd
            .put_if_absent(&key, &to_json(&record), lease)
            .await?
        {
            return Ok(Some((token, record)));
        }
        if lease != 0 {
            self.etcd.lease_revoke(lease).await.ok();
        }
        Ok(None)
    }

    /// Every token still usable (not expired, not invalidated), sorted by creation time.
    pub async fn list(&self) -> Result<Vec<TokenInfo>, StoreError> {
        let now = unix_now();
        let mut tokens = Vec::new();
        for kv in self.etcd.get_prefix(TOKENS_PREFIX).await? {
            let key = String::from_utf8_lossy(&kv.key).into_owned();
            let record = parse_record(&key, &kv.value)?;
            if usable(&record, now) {
                tokens.push(info(&key[TOKENS_PREFIX.len()..], &record));
            }
        }
        tokens.sort_by(|a, b| (a.created, &a.id).cmp(&(b.created, &b.id)));
        Ok(tokens)
    }

    /// Invalidates tokens by id; returns the ids that were not found (or already unusable).
    pub async fn invalidate(&self, ids: &[String]) -> Result<Vec<String>, StoreError> {
        let mut unknown = Vec::new();
        for id in ids {
            if !self.invalidate_one(id).await? {
                unknown.push(id.clone());
            }
        }
        Ok(unknown)
    }

    async fn invalidate_one(&self, id: &str) -> Result<bool, StoreError> {
        let key = token_key(id);
        for _ in 0..CAS_ATTEMPTS {
            let Some(kv) = self.etcd.get(&key).await? else {
                return Ok(false);
            };
            let mut record = parse_record(&key, &kv.value)?;
            if !usable(&record, unix_now()) {
                return Ok(false);
            }
            record.invalidated = true;
            // Keep the tombstone for the grace period only, also for tokens that never expired.
            let lease = self.etcd.lease_grant(GRACE.as_secs()).await?.id;
            if self
                .etcd
                .put_if_unchanged(&key, &to_json(&record), lease, kv.mod_revision)
                .await?
            {
                if kv.lease != 0 {
                    self.etcd.lease_revoke(kv.lease).await.ok();
                }
                tracing::info!(token_id = %id, "join token invalidated");
                return Ok(true);
            }
            self.etcd.lease_revoke(lease).await.ok();
        }
        Err(StoreError::Invalid(format!(
            "token {id} changed concurrently too often; try again"
        )))
    }

    /// Checks a bearer credential `<id>.<secret>` for a join as `wanted` and counts the use.
    pub async fn validate(
        &self,
        credential: &str,
        wanted: TokenRole,
    ) -> Result<TokenRole, AuthError> {
        let (id, secret) = split_bearer(credential).ok_or(AuthError::Malformed)?;
        let key = token_key(id);
        for _ in 0..CAS_ATTEMPTS {
            let kv = self
                .etcd
                .get(&key)
                .await?
                .ok_or_else(|| AuthError::Unknown(id.to_string()))?;
            let mut record: TokenRecord = serde_json::from_slice(&kv.value)
                .map_err(|_| AuthError::Unknown(id.to_string()))?;
            if !constant_time_eq(record.hash.as_bytes(), secret_hash(id, secret).as_bytes()) {
                return Err(AuthError::WrongSecret(id.to_string()));
            }
            if record.invalidated {
                return Err(AuthError::Invalidated(id.to_string()));
            }
            if record.expires != 0 && unix_now() >= record.expires {
                return Err(AuthError::Expired(id.to_string()));
            }
            if record.role != wanted {
                return Err(AuthError::WrongRole {
                    id: id.to_string(),
                    actual: record.role,
                    wanted,
                });
            }
            record.uses += 1;
            if self
                .etcd
                .put_if_unchanged(&key, &to_json(&record), kv.lease, kv.mod_revision)
                .await?
            {
                return Ok(record.role);
            }
        }
        // Heavy concurrent use of one token: the credential is valid, the count is best effort.
        tracing::debug!(
            token_id = %id,
            "token use count not updated under contention"
        );
        Ok(wanted)
    }
}

/// What `/k0x/nodes/<name>` records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeRecord {
    /// sha256 (hex) of the node's public key (SubjectPublicKeyInfo, DER).
    pub public_key_sha256: String,
    /// Unix seconds of the first join.
    pub joined: u64,
}

/// A node name refused because another key already holds it.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error(
        "node name {0} already joined with a different key: choose another node name, or ask the cluster admin to forget the old node if this machine was reinstalled"
    )]
    KeyMismatch(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Node name -> public key, first come first served.
#[derive(Debug, Clone)]
pub struct NodeRegistry {
    etcd: Client,
}

impl NodeRegistry {
    pub fn new(etcd: Client) -> Self {
        Self { etcd }
    }

    /// Records that `name` joins with the key hashed to `key_sha256`. A name held by another key
    /// is refused unless `allow_rekey` (the admin allows reinstalled nodes).
    pub async fn claim(
        &self,
        name: &str,
        key_sha256: &str,
        allow_rekey: bool,
    ) -> Result<(), NodeError> {
        let key = format!("{NODES_PREFIX}{name}");
        let record = NodeRecord {
            public_key_sha256: key_sha256.to_string(),
            joined: unix_now(),
        };
        let value = to_json(&record);
        if self
            .etcd
            .put_if_absent(&key, &value, 0)
            .await
            .map_err(StoreError::from)?
        {
            return Ok(());
        }
        let existing = self
            .etcd
            .get(&key)
            .await
            .map_err(StoreError::from)?
            .map(|kv| parse_json::<NodeRecord>(&key, &kv.value))
            .transpose()?;
        match existing {
            Some(old) if old.public_key_sha256 == key_sha256 => Ok(()),
            _ if allow_rekey => {
                tracing::warn!(node = name, "node re-joined with a new key (allowed)");
                self.etcd
                    .put(&key, &value, 0)
                    .await
                    .map_err(StoreError::from)?;
                Ok(())
            }
            _ => Err(NodeError::KeyMismatch(name.to_string())),
        }
    }

    /// Forgets a node name so that a reinstalled machine can join under it again.
    pub async fn forget(&self, name: &str) -> Result<bool, StoreError> {
        Ok(self.etcd.delete(&format!("{NODES_PREFIX}{name}")).await? > 0)
    }
}

/// Salted hash of a token secret: sha256("k0x-join-token\0" + id + "\0" + secret), hex.
fn secret_hash(id: &str, secret: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(b"k0x-join-token\0");
    hasher.update(id.as_bytes());
    hasher.update(b"\0");
    hasher.update(secret.as_bytes());
    hex::encode(hasher.finalize())
}

/// Compares two byte strings in time independent of where they differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

fn usable(record: &TokenRecord, now: u64) -> bool {
    !record.invalidated && (record.expires == 0 || now < record.expires)
}

fn info(id: &str, record: &TokenRecord) -> TokenInfo {
    TokenInfo {
        id: id.to_string(),
        role: record.role,
        created: record.created,
        expires: record.expires,
        uses: record.uses,
    }
}

fn token_key(id: &str) -> String {
    format!("{TOKENS_PREFIX}{id}")
}

fn parse_record(key: &str, value: &[u8]) -> Result<TokenRecord, StoreError> {
    parse_json(key, value)
}

fn parse_json<T: serde::de::DeserializeOwned>(key: &str, value: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(value).map_err(|e| StoreError::Corrupt {
        key: key.to_string(),
        why: e.to_string(),
    })
}

fn to_json<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("records serialize")
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_salted_with_the_id() {
        assert_ne!(secret_hash("aaaaaa", "s"), secret_hash("bbbbbb", "s"));
        assert_eq!(secret_hash("aaaaaa", "s").len(), 64);
    }

    #[test]
    fn constant_time_eq_compares() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }

    #[test]
    fn usability_follows_expiry_and_invalidation() {
        let mut record = TokenRecord {
            role: TokenRole::Worker,
            hash: String::new(),
            created: 100,
            expires: 200,
            uses: 0,
            invalidated: false,
        };
        assert!(usable(&record, 150));
        assert!(!usable(&record, 200));
        record.expires = 0;
        assert!(usable(&record, u64::MAX));
        record.invalidated = true;
        assert!(!usable(&record, 150));
    }
}
