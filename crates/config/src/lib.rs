//! Cluster configuration and the on-disk layout of a k0x node.
//!
//! Every other crate learns where things live from [`DataDir`] and [`RunDir`], so a path is named
//! once and `--data-dir` / `--run-dir` are honoured everywhere.
//!
//! [`ClusterConfig::load`] reads a configuration file and reports every problem in it, one line
//! each, as `FILE:LINE:COL: FIELD.PATH: what is wrong (how to fix it)`.

pub mod components;
pub mod fsutil;
pub mod layout;
pub mod net;
pub mod ports;
pub mod systemd;

pub use layout::{DataDir, RunDir, pki_names};
pub mod schema;

pub use schema::ClusterConfig;

mod error;
mod k0s;
mod load;
mod tree;
mod validate;

pub use error::{ConfigErrors, Diagnostic, Severity};
pub use k0s::K0S_ONLY_FIELDS;
pub use load::{Checked, STDIN, check_file, check_yaml, source_name};
pub use net::url_host;
pub use validate::{Problem, is_dns_label, is_dns_name, is_node_name};
