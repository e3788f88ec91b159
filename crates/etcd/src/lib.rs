//! A small etcd v3 client speaking etcd's JSON gateway over mutual TLS.
//!
//! k0x needs only a few etcd calls (keys for join tokens and node records, leases for token TTLs,
//! membership for HA controllers, status for health), so instead of a gRPC stack it posts JSON to
//! the gateway etcd serves on its client port (`/v3/...`, present in etcd 3.4 and later). Keys and
//! values travel base64-encoded and 64-bit integers as strings; this crate hides both.

mod client;
pub mod members;
mod proto;
pub mod transport;

#[cfg(feature = "test-support")]
pub mod testing;

pub use client::{
    Client, ClientTls, EtcdError, KeyValue, Lease, Member, Status, parse_certs, parse_key,
};
pub use members::{LearnerAdded, Retry};
pub use transport::{HttpsTransport, TransportError};
