//! Credentials for people: a client certificate signed by the cluster CA, wrapped in a
//! kubeconfig. Kubernetes authenticates the certificate's CN as the user name and each `O` as a
//! group; what they may do is then decided by RBAC bindings to those names.

use k0x_config::DataDir;
use k0x_config::schema::KeyType;
use time::{Duration, OffsetDateTime};

use crate::authority::{CertSpec, load_cluster_ca};
use crate::error::{PkiError, Result};
use crate::fsio;
use crate::kubeconfig::{Kubeconfig, server_url_problem};
use crate::names::{validate_group, validate_user_name};

/// What `k0x user create` asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRequest {
    pub name: String,
    pub groups: Vec<String>,
    pub validity: Duration,
    /// API server URL written into the kubeconfig.
    pub server: String,
    /// Cluster name in the kubeconfig (`metadata.name`).
    pub cluster_name: String,
    pub key_type: KeyType,
}

/// Issues a client certificate for `req` with the cluster CA in `data` and returns the
/// kubeconfig text. Nothing is written to disk.
pub fn user_kubeconfig(data: &DataDir, req: &UserRequest) -> Result<String> {
    validate_user_name(&req.name)?;
    for group in &req.groups {
        validate_group(group)?;
    }
    if let Some(problem) = server_url_problem(&req.server) {
        return Err(PkiError::Input(format!(
            "--server {:?} {problem}; pass an https:// URL such as https://10.0.0.5:6443",
            req.server
        )));
    }
    let ca = load_cluster_ca(data)?;
    let ca_expiry = ca.cert().not_after;
    if OffsetDateTime::now_utc() + req.validity > ca_expiry {
        return Err(PkiError::Input(format!(
            "--expiry reaches past the cluster CA's own expiry ({}); choose a shorter expiry",
            ca_expiry.date()
        )));
    }
    let mut groups: Vec<&str> = Vec::new();
    for group in &req.groups {
        if !groups.contains(&group.as_str()) {
            groups.push(group);
        }
    }
    let spec = CertSpec::client(req.name.clone(), &groups);
    let (cert_pem, key) = ca.issue(&spec, req.key_type, req.validity)?;
    let config = Kubeconfig {
        cluster_name: req.cluster_name.clone(),
        server: req.server.clone(),
        ca_pem: ca.cert_pem().to_owned(),
        user_name: req.name.clone(),
        client_cert_pem: cert_pem,
        client_key_pem: key.serialize_pem(),
    };
    Ok(config.render())
}

/// The admin kubeconfig text (`pki/admin.conf`), with a clear error when the PKI was never
/// initialised.
pub fn admin_kubeconfig(data: &DataDir) -> Result<String> {
    let path = data.admin_kubeconfig();
    fsio::read_optional(&path)?.ok_or_else(|| {
        PkiError::material(
            &path,
            "not found: the cluster PKI has not been initialised in this data dir",
            "start the controller first (`k0x server`), or run `k0x pki init`; pass --data-dir \
             if the cluster uses another one",
        )
    })
}
