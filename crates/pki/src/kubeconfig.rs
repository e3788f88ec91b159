//! Kubeconfig files with everything embedded (CA, client certificate and key as base64 data),
//! so one file is all a component or a person needs.

use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde::Deserialize;

use crate::error::{PkiError, Result};

/// Why `url` cannot be a kubeconfig's `server`, or `None` when it can: it must be
/// `https://HOST[:PORT][/PATH]` with HOST an IP address (IPv6 in brackets) or a DNS name and
/// PORT from 1 to 65535; kubectl would otherwise fail on every call.
pub fn server_url_problem(url: &str) -> Option<&'static str> {
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Some("contains a space");
    }
    let Some(rest) = url.strip_prefix("https://") else {
        return Some("is not an https:// URL");
    };
    if rest.contains(['?', '#']) {
        return Some("has a query or fragment: clients append API paths to it");
    }
    let authority = rest.split('/').next().unwrap_or_default();
    if authority.contains('@') {
        return Some("carries a user name: the client certificate is the credential");
    }
    let (host, port) = match authority.strip_prefix('[') {
        Some(v6) => match v6.split_once(']') {
            Some((host, rest)) if host.parse::<std::net::Ipv6Addr>().is_ok() => {
                match rest.strip_prefix(':') {
                    Some(port) => (host, Some(port)),
                    None if rest.is_empty() => (host, None),
                    None => return Some("has text after its IPv6 address"),
                }
            }
            _ => return Some("has a bracketed host that is not an IPv6 address"),
        },
        None => match authority.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        },
    };
    if host.is_empty() {
        Some("names no host")
    } else if !authority.starts_with('[')
        && host.parse::<std::net::Ipv4Addr>().is_err()
        && !k0x_config::is_dns_name(host)
    {
        Some("has a host that is neither an IP address nor a DNS name")
    } else if port.is_some_and(|port| port.parse::<u16>().map_or(true, |p| p == 0)) {
        Some("has a port that is not a number from 1 to 65535")
    } else {
        None
    }
}

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
    fn context_name(&self) -> String {
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
    fn server_urls() {
        for good in [
            "https://10.0.0.5:6443",
            "https://api.example.com",
            "https://[fd00::5]:6443",
            "https://lb.example.com:443/k8s",
        ] {
            assert_eq!(server_url_problem(good), None, "{good}");
        }
        for (bad, why) in [
            ("http://x:6443", "https://"),
            ("https://", "no host"),
            ("https://:6443", "no host"),
            ("https://a b:6443", "space"),
            ("https://300.1.2.3:6443", "neither"),
            ("https://x:0", "port"),
            ("https://x:65536", "port"),
            ("https://x:", "port"),
            ("https://[fd00::5:6443", "IPv6"),
            ("https://u@x:6443", "user name"),
            ("https://x:6443?a=b", "query"),
            ("https://x:6443/k8s#top", "fragment"),
        ] {
            let problem = server_url_problem(bad).unwrap_or_default();
            assert!(problem.contains(why), "{bad}: {problem:?}");
        }
    }

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
