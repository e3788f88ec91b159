//! Cluster configuration and the on-disk layout of a k0x node.
//!
//! Every other crate learns where things live from [`DataDir`] and [`RunDir`], so a path is named
//! once and `--data-dir` / `--run-dir` are honoured everywhere.

pub mod layout;

pub use layout::{DataDir, RunDir, pki_names};
pub mod schema;

pub use schema::ClusterConfig;
