//! The cluster's trust: certificate authorities, component certificates, kubeconfigs and user
//! credentials, written under the data dir's `pki/` with kubeadm's names.
//!
//! Keys are ECDSA P-256 by default (fast to generate, small, accepted everywhere Kubernetes runs)
//! or RSA 2048 when `spec.pki.keyType: rsa-2048` asks for it. Generation is idempotent (see
//! [`ensure_pki`]); a CA is never replaced without a human deciding so.
//!
//! Entry points:
//! - [`ensure_pki`] with a [`PkiRequest`] (built by [`PkiRequest::from_config`]): the controller's
//!   whole PKI, called at every server start.
//! - [`user_kubeconfig`]: a person's kubeconfig; [`admin_kubeconfig`]: `pki/admin.conf`.
//! - [`load_cluster_ca`], [`CertificateAuthority::sign`], [`ca_pin`]: what the join API
//!   needs to admit workers.
//! - [`ControllerSecrets`]: the CAs and service-account keys a joining controller receives.
//! - [`Kubeconfig::render`]: kubeconfigs with embedded credentials for other callers.

mod authority;
mod der;
mod error;
mod fsio;
mod init;
mod keys;
mod kubeconfig;
mod names;
mod request;
mod shared;
mod user;
pub mod x509;

pub use authority::{CertSpec, CertificateAuthority, Usage, ca_pin, load_cluster_ca};
pub use error::{PkiError, Result};
pub use fsio::{SECRET_MODE, make_private, write_atomic, write_new};
pub use init::{Action, PkiReport, ensure_pki};
pub use keys::generate as generate_key;
pub use kubeconfig::{Kubeconfig, server_url_problem};
pub use names::{
    CLUSTER_ADMIN_GROUP, DURATION_HINT, parse_duration, parse_duration_sum, validate_group,
    validate_user_name,
};
pub use request::{
    CA_VALIDITY, LEAF_VALIDITY, PkiRequest, host_addresses, hostname, public_api_url,
};
pub use shared::{CaPair, ControllerSecrets};
pub use user::{UserRequest, admin_kubeconfig, user_kubeconfig};
