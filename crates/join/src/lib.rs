//! Growing a cluster: join tokens, the join API every controller serves, and the joining node's
//! client.
//!
//! - [`token`]: the `k0x1.` token string (role, controller URLs, CA pin, id, secret).
//! - [`store`]: tokens (hashed, with an etcd lease for the TTL) and node-name ownership in etcd.
//! - [`server`]: the HTTPS join API (CA, worker join with CSR signing, controller join, etcd
//!   learner add and promote), rate-limited per source address.
//! - [`signer`]: what a worker's certificates say (kubelet client, kube-proxy, kubelet serving).
//! - [`client`]: pins the CA from the token, then joins over verified TLS; the node key stays local.
//! - [`material`]: writes what a join returned into the data directory, all or nothing.
//! - [`admin`]: `k0x token create|list|invalidate` over the admin socket.
//! - [`http`]: what the join API and the admin socket share (accept loop, JSON bodies, answers).
//!
//! Setup failures (TLS material, CA pin, signing, a token expiry) are one [`Error`].

pub mod admin;
pub mod api;
pub mod client;
mod error;
pub mod http;
pub mod material;
pub mod ratelimit;
pub mod server;
pub mod signer;
pub mod store;
pub mod tls;
pub mod token;

pub use client::{JoinClient, JoinError, WorkerJoin};
pub use error::Error;
pub use server::{JoinServer, JoinServerConfig};
pub use signer::CsrSigner;
pub use store::{NodeRegistry, TokenStore};
pub use token::{Token, TokenError, TokenRole};
