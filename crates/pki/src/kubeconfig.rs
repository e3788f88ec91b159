//! Kubeconfig files with everything embedded (CA, client certificate and key as base64 data),
//! so one file is all a component or a person needs.

use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde::Deserialize;

use crate::error::{PkiError, Result};

/// The parts of a kubeconfig with one cluster, one user and one context.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kubeconfig {
    pub cluster_name: String,
    pub server: String,
    pub ca_pem: String,
    pub user_name: String,
    pub client_cert_pem: String,
    pub client_key_pem: String,
}

impl Kubeconfig {
    /// The context name: `user@cluster`.
    pub fn context_name(&self) -> String {
        format!("{}@{}", self.user_name, self.cluster_name)
    }

    /// The YAML text. Strings are written as JSON strings, which YAML reads verbatim.
    pub fn render(&self) -> String {
        let quote = |s: &str| serde_json::Value::from(s).to_string();
        let context = quote(&self.context_name());
        format!(
            "apiVersion: v1\n\
             kind: Config\n\
             clusters:\n\
             - name: {cluster}\n  \
               cluster:\n    \
                 server: {server}\n    \
                 certificate-authority-data: {ca}\n\
             users:\n\
             - name: {user}\n  \
               user:\n    \
                 client-certificate-data: {cert}\n    \
                 client-key-data: {key}\n\
             contexts:\n\
             - name: {context}\n  \
               context:\n    \
                 cluster: {cluster}\n    \
                 user: {user}\n\
             current-context: {context}\n\
             preferences: {{}}\n",
            cluster = quote(&self.cluster_name),
            server = quote(&self.server),
            ca = B64.encode(&self.ca_pem),
            user = quote(&self.user_name),
            cert = B64.encode(&self.client_cert_pem),
            key = B64.encode(&self.client_key_pem),
        )
    }

    /// Reads back a kubeconfig k0x wrote (`path` only names it in errors).
    pub fn parse(path: &Path, text: &str) -> Result<Self> {
        let corrupt = |problem: String| {
            PkiError::material(path, problem, "remove it so that it is written again")
        };
        let file: File = serde_saphyr::from_str(text)
            .map_err(|err| corrupt(format!("is not a kubeconfig ({})", first_line(&err))))?;
        let (Some(cluster), Some(user)) = (file.clusters.first(), file.users.first()) else {
            return Err(corrupt("has no cluster or no user".to_owned()));
        };
        let decode = |field: &str, data: &str| {
            B64.decode(data.trim())
                .ok()
                .and_then(|bytes| String::from_utf8(bytes).ok())
                .ok_or_else(|| corrupt(format!("has invalid base64 in {field}")))
        };
        Ok(Self {
            cluster_name: cluster.name.clone(),
            server: cluster.cluster.server.clone(),
            ca_pem: decode(
                "certificate-authority-data",
                &cluster.cluster.certificate_authority_data,
            )?,
            user_name: user.name.clone(),
            client_cert_pem: decode(
                "client-certificate-data",
                &user.user.client_certificate_data,
            )?,
            client_key_pem: decode("client-key-data", &user.user.client_key_data)?,
        })
    }
}

/// The YAML parser's errors span several lines (with a source excerpt); keep the headline.
fn first_line(err: &impl ToString) -> String {
    err.to_string()
        .lines()
        .next()
        .unwrap_or_default()
        .trim()
        .to_owned()
}

#[derive(Deserialize)]
struct File {
    #[serde(default)]
    clusters: Vec<NamedCluster>,
    #[serde(default)]
    users: Vec<NamedUser>,
}

#[derive(Deserialize)]
struct NamedCluster {
    name: String,
    cluster: Cluster,
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
struct Cluster {
    server: String,
    #[serde(default)]
    certificate_authority_data: String,
}

#[derive(Deserialize)]
struct NamedUser {
    name: String,
    user: User,
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
struct User {
    #[serde(default)]
    client_certificate_data: String,
    #[serde(default)]
    client_key_data: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_then_parse_round_trips() {
        let config = Kubeconfig {
            cluster_name: "k0x".into(),
            server: "https://[fd00::1]:6443".into(),
            ca_pem: "CA\n".into(),
            user_name: "jane@example.com".into(),
            client_cert_pem: "CERT\n".into(),
            client_key_pem: "KEY\n".into(),
        };
        let text = config.render();
        assert!(
            text.contains("current-context: \"jane@example.com@k0x\""),
            "{text}"
        );
        assert_eq!(
            Kubeconfig::parse(Path::new("x.conf"), &text).unwrap(),
            config
        );
    }

    #[test]
    fn garbage_names_the_file() {
        let err = Kubeconfig::parse(Path::new("pki/admin.conf"), "clusters: 7")
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("pki/admin.conf: is not a kubeconfig"),
            "{err}"
        );
    }
}
