//! `ensure_pki`: the whole controller PKI, created on first start and checked on every start.
//!
//! Existing material is kept when it is still right; a leaf is re-issued (new key, new
//! certificate) when it nears expiry, no longer carries the names the configuration asks for,
//! was not signed by the current CA, or uses another key type than configured. CAs and the
//! service-account key are never replaced: losing them would invalidate every credential in
//! the cluster, so their absence or damage is an error for a human to resolve.

use std::collections::BTreeSet;
use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use k0x_config::layout::{PRIVATE_DIR_MODE, ensure_dir};
use k0x_config::{DataDir, pki_names};
use rcgen::KeyPair;
use time::OffsetDateTime;

use crate::authority::{CertSpec, CertificateAuthority, Usage};
use crate::error::{CREATE_DIR, PkiError, Result};
use crate::kubeconfig::Kubeconfig;
use crate::request::PkiRequest;
use crate::x509::{CertInfo, dns_san, ip_san};
use crate::{fsio, keys};

/// What happened to one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Created,
    Kept,
    /// Re-issued, with the reason.
    Reissued(String),
    /// Kept, but its mode let others read a secret: now 0600.
    Repaired(String),
}

/// The outcome of [`ensure_pki`], one entry per certificate, key pair or kubeconfig.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PkiReport {
    pub entries: Vec<(PathBuf, Action)>,
}

impl PkiReport {
    /// Logged at debug level only: callers print or log the report as fits them.
    fn record(&mut self, path: PathBuf, action: Action) {
        match &action {
            Action::Repaired(why) => tracing::warn!(file = %path.display(), "pki: {why}"),
            _ => tracing::debug!(file = %path.display(), ?action, "pki"),
        }
        self.entries.push((path, action));
    }

    /// True when nothing was written.
    pub fn unchanged(&self) -> bool {
        self.entries
            .iter()
            .all(|(_, action)| *action == Action::Kept)
    }
}

impl fmt::Display for PkiReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (path, action) in &self.entries {
            match action {
                Action::Created => writeln!(f, "created  {}", path.display())?,
                Action::Kept => writeln!(f, "kept     {}", path.display())?,
                Action::Reissued(why) => writeln!(f, "renewed  {} ({why})", path.display())?,
                Action::Repaired(why) => writeln!(f, "repaired {} ({why})", path.display())?,
            }
        }
        Ok(())
    }
}

/// Where a leaf lives: a cert/key pair or a kubeconfig embedding both.
#[derive(Debug, Clone, Copy)]
enum Target {
    Files(&'static str),
    Kubeconfig(&'static str),
}

#[derive(Debug)]
struct Leaf {
    target: Target,
    ca: &'static str,
    spec: CertSpec,
}

/// Creates or refreshes every CA, key and certificate a controller (plus its local kubelet)
/// needs under `data`'s `pki/`.
pub fn ensure_pki(data: &DataDir, req: &PkiRequest) -> Result<PkiReport> {
    data.create()
        .map_err(|err| PkiError::io(CREATE_DIR, data.root(), err))?;
    for dir in [data.pki(), data.etcd_pki()] {
        ensure_dir(&dir, PRIVATE_DIR_MODE).map_err(|err| PkiError::io(CREATE_DIR, &dir, err))?;
    }
    let leafs = leafs(req);
    let mut report = PkiReport::default();
    let cas = [
        (pki_names::CA, "kubernetes-ca"),
        (pki_names::ETCD_CA, "etcd-ca"),
        (pki_names::FRONT_PROXY_CA, "front-proxy-ca"),
    ];
    let loaded = cas
        .iter()
        .map(|(name, _)| load_ca(data, name, &leafs, req))
        .collect::<Result<Vec<_>>>()?;
    let mut authorities = Vec::new();
    for ((name, common_name), existing) in cas.into_iter().zip(loaded) {
        let ca = match existing {
            Some(ca) => {
                report.record(data.pki_cert(name), Action::Kept);
                ca
            }
            None => {
                let ca =
                    CertificateAuthority::generate(common_name, req.key_type, req.ca_validity)?;
                ca.store(data, name)?;
                report.record(data.pki_cert(name), Action::Created);
                ca
            }
        };
        authorities.push((name, ca));
    }
    ensure_service_account_key(data, req, &mut report)?;
    for leaf in &leafs {
        let ca = authorities
            .iter()
            .find(|(name, _)| *name == leaf.ca)
            .map(|(_, ca)| ca)
            .ok_or_else(|| PkiError::Input(format!("no CA named {}", leaf.ca)))?;
        match leaf.target {
            Target::Files(name) => ensure_leaf_files(data, name, ca, &leaf.spec, req, &mut report)?,
            Target::Kubeconfig(name) => {
                ensure_kubeconfig(data, name, ca, &leaf.spec, req, &mut report)?;
            }
        }
    }
    for path in secret_paths(data, &cas.map(|(name, _)| name), &leafs) {
        if let Some(was) = fsio::make_private(&path)? {
            let why = format!("mode {was:04o} let others read a secret; now 0600");
            report.record(path, Action::Repaired(why));
        }
    }
    // Leafs are written without a directory sync each (they can always be re-issued); one
    // sync per directory makes them durable. CAs and the service-account key were synced
    // one by one as they were written.
    if !report.unchanged() {
        fsio::sync_dir(&data.pki())?;
        fsio::sync_dir(&data.etcd_pki())?;
    }
    Ok(report)
}

/// The leafs of a controller, following kubeadm's names and subjects.
///
/// The apiserver's client certificate towards kubelets carries O=system:masters, as k0s does:
/// it works without any RBAC object. (kubeadm moved to a `kubeadm:cluster-admins` group bound by
/// a ClusterRoleBinding it creates; k0x creates no such binding, so it keeps the built-in group.)
fn leafs(req: &PkiRequest) -> Vec<Leaf> {
    let files = |name, ca, spec| Leaf {
        target: Target::Files(name),
        ca,
        spec,
    };
    let kubeconfig = |name, spec| Leaf {
        target: Target::Kubeconfig(name),
        ca: pki_names::CA,
        spec,
    };
    let etcd_member = |usage| CertSpec {
        common_name: req.hostname.to_ascii_lowercase(),
        organizations: Vec::new(),
        dns_names: vec!["localhost".to_owned(), req.hostname.to_ascii_lowercase()],
        ips: [
            IpAddr::from([127, 0, 0, 1]),
            IpAddr::from([0u16, 0, 0, 0, 0, 0, 0, 1]),
        ]
        .into_iter()
        .chain(req.host_addresses.iter().copied())
        .collect(),
        usage,
    };
    vec![
        files(pki_names::APISERVER, pki_names::CA, apiserver_spec(req)),
        files(
            pki_names::APISERVER_KUBELET_CLIENT,
            pki_names::CA,
            CertSpec::client("kube-apiserver-kubelet-client", &["system:masters"]),
        ),
        files(
            pki_names::FRONT_PROXY_CLIENT,
            pki_names::FRONT_PROXY_CA,
            CertSpec::client("front-proxy-client", &[]),
        ),
        files(
            pki_names::ETCD_SERVER,
            pki_names::ETCD_CA,
            etcd_member(Usage::ServerAndClient),
        ),
        files(
            pki_names::ETCD_PEER,
            pki_names::ETCD_CA,
            etcd_member(Usage::ServerAndClient),
        ),
        files(
            pki_names::APISERVER_ETCD_CLIENT,
            pki_names::ETCD_CA,
            CertSpec::client("kube-apiserver-etcd-client", &[]),
        ),
        files(
            pki_names::ETCD_K0X_CLIENT,
            pki_names::ETCD_CA,
            CertSpec::client("k0x-etcd-client", &[]),
        ),
        files(
            pki_names::SCHEDULER_SERVER,
            pki_names::CA,
            loopback_server("kube-scheduler"),
        ),
        files(
            pki_names::CONTROLLER_MANAGER_SERVER,
            pki_names::CA,
            loopback_server("kube-controller-manager"),
        ),
        files(
            pki_names::KUBELET_SERVER,
            pki_names::CA,
            kubelet_server(req),
        ),
        files(
            pki_names::METRICS_SERVER,
            pki_names::CA,
            service_server(req, "metrics-server", "kube-system"),
        ),
        kubeconfig(
            pki_names::ADMIN,
            CertSpec::client("kubernetes-admin", &["system:masters"]),
        ),
        kubeconfig(
            pki_names::SCHEDULER,
            CertSpec::client("system:kube-scheduler", &[]),
        ),
        kubeconfig(
            pki_names::CONTROLLER_MANAGER,
            CertSpec::client("system:kube-controller-manager", &[]),
        ),
        kubeconfig(
            pki_names::KUBE_PROXY,
            CertSpec::client("system:kube-proxy", &[]),
        ),
        kubeconfig(
            pki_names::KUBELET,
            CertSpec::client(format!("system:node:{}", req.node_name), &["system:nodes"]),
        ),
    ]
}

/// A serving certificate for a health endpoint bound to loopback (scheduler, controller-manager),
/// so k0x's readiness probes verify TLS against the cluster CA like every other probe.
fn loopback_server(common_name: &str) -> CertSpec {
    CertSpec {
        common_name: common_name.to_owned(),
        organizations: Vec::new(),
        dns_names: vec!["localhost".to_owned()],
        ips: vec![IpAddr::from([127, 0, 0, 1])],
        usage: Usage::Server,
    }
}

/// The local kubelet's serving certificate: reached by node name or address.
fn kubelet_server(req: &PkiRequest) -> CertSpec {
    let mut ips = vec![IpAddr::from([127, 0, 0, 1])];
    ips.extend(&req.host_addresses);
    CertSpec {
        common_name: format!("system:node:{}", req.node_name),
        organizations: vec!["system:nodes".to_owned()],
        dns_names: vec![req.node_name.clone(), "localhost".to_owned()],
        ips,
        usage: Usage::Server,
    }
}

/// A serving certificate for the in-cluster Service `name` in `namespace`.
fn service_server(req: &PkiRequest, name: &str, namespace: &str) -> CertSpec {
    let svc = format!("{name}.{namespace}.svc");
    CertSpec {
        common_name: svc.clone(),
        organizations: Vec::new(),
        dns_names: vec![
            name.to_owned(),
            format!("{name}.{namespace}"),
            format!("{svc}.{}", req.cluster_domain),
            svc,
        ],
        ips: Vec::new(),
        usage: Usage::Server,
    }
}

/// The apiserver's serving names: the in-cluster service names, the first service IP,
/// loopback, the host's addresses, `spec.api.address` and `spec.api.sans`.
fn apiserver_spec(req: &PkiRequest) -> CertSpec {
    let mut dns_names: Vec<String> = [
        "kubernetes".to_owned(),
        "kubernetes.default".to_owned(),
        "kubernetes.default.svc".to_owned(),
        format!("kubernetes.default.svc.{}", req.cluster_domain),
        "localhost".to_owned(),
    ]
    .into();
    let mut ips = vec![req.service_ip, IpAddr::from([127, 0, 0, 1])];
    ips.extend(&req.host_addresses);
    for name in req.api_address.iter().chain(&req.sans) {
        match name.parse::<IpAddr>() {
            Ok(ip) => ips.push(ip),
            Err(_) => dns_names.push(name.to_ascii_lowercase()),
        }
    }
    dedup(&mut dns_names);
    dedup(&mut ips);
    CertSpec {
        common_name: "kube-apiserver".to_owned(),
        organizations: Vec::new(),
        dns_names,
        ips,
        usage: Usage::Server,
    }
}

fn dedup<T: PartialEq + Clone>(items: &mut Vec<T>) {
    let mut seen = Vec::new();
    items.retain(|item| {
        let fresh = !seen.contains(item);
        if fresh {
            seen.push(item.clone());
        }
        fresh
    });
}

/// Every file holding a private key: CA keys, the service-account key, leaf keys, kubeconfigs.
fn secret_paths(data: &DataDir, cas: &[&str], leafs: &[Leaf]) -> Vec<PathBuf> {
    let leaf_secrets = leafs.iter().map(|leaf| match leaf.target {
        Target::Files(name) => data.pki_key(name),
        Target::Kubeconfig(name) => data.kubeconfig(name),
    });
    cas.iter()
        .map(|name| data.pki_key(name))
        .chain([data.sa_key()])
        .chain(leaf_secrets)
        .collect()
}

fn leaf_path(data: &DataDir, leaf: &Leaf) -> PathBuf {
    match leaf.target {
        Target::Files(name) => data.pki_cert(name),
        Target::Kubeconfig(name) => data.kubeconfig(name),
    }
}

/// Loads CA `name`; a missing CA is only acceptable when nothing it signed exists.
fn load_ca(
    data: &DataDir,
    name: &str,
    leafs: &[Leaf],
    req: &PkiRequest,
) -> Result<Option<CertificateAuthority>> {
    if let Some(ca) = CertificateAuthority::load(data, name)? {
        check_ca_validity(data, name, &ca, req)?;
        return Ok(Some(ca));
    }
    let orphan = leafs
        .iter()
        .filter(|leaf| leaf.ca == name)
        .map(|leaf| leaf_path(data, leaf))
        .find(|path| path.exists());
    match orphan {
        Some(leaf) => Err(PkiError::material(
            &data.pki_cert(name),
            format!("is missing while {} (signed by it) exists", leaf.display()),
            "restore the CA certificate and key from a backup; to start a new cluster instead, \
             remove the whole pki directory (a CA is never replaced silently)",
        )),
        None => Ok(None),
    }
}

fn check_ca_validity(
    data: &DataDir,
    name: &str,
    ca: &CertificateAuthority,
    req: &PkiRequest,
) -> Result<()> {
    let now = OffsetDateTime::now_utc();
    let not_after = ca.cert().not_after;
    if not_after <= now {
        return Err(PkiError::material(
            &data.pki_cert(name),
            format!("CA expired on {}", not_after.date()),
            "k0x never replaces a CA by itself: rotate it by hand, or remove the pki directory \
             to start a new cluster",
        ));
    }
    if not_after - now < req.renew_before {
        tracing::warn!(
            file = %data.pki_cert(name).display(),
            expires = %not_after.date(),
            "CA expires soon; k0x never replaces a CA by itself, plan a rotation"
        );
    }
    Ok(())
}

fn ensure_service_account_key(
    data: &DataDir,
    req: &PkiRequest,
    report: &mut PkiReport,
) -> Result<()> {
    let (key_path, pub_path) = (data.sa_key(), data.sa_pub());
    let public = fsio::read_optional(&pub_path)?;
    let key = match fsio::read_optional(&key_path)? {
        Some(pem) => keys::parse(&key_path, &pem)?,
        None if public.is_some() => {
            return Err(PkiError::material(
                &key_path,
                format!("is missing while {} exists", pub_path.display()),
                "restore sa.key from a backup (replacing it would invalidate every \
                 service-account token), or remove sa.pub to start over",
            ));
        }
        None => {
            let key = keys::generate(req.key_type)?;
            let (key_pem, pub_pem) = (key.serialize_pem(), key.public_key_pem());
            fsio::replace_unsynced(&key_path, key_pem.as_bytes(), fsio::SECRET_MODE)?;
            fsio::write_atomic(&pub_path, pub_pem.as_bytes(), fsio::PUBLIC_MODE)?;
            report.record(key_path, Action::Created);
            return Ok(());
        }
    };
    let expected = key.public_key_pem();
    match public {
        Some(found) if found == expected => report.record(key_path, Action::Kept),
        Some(_) => {
            return Err(PkiError::material(
                &pub_path,
                format!("does not match {}", key_path.display()),
                "remove sa.pub so that it is derived again from sa.key",
            ));
        }
        None => {
            fsio::write_atomic(&pub_path, expected.as_bytes(), fsio::PUBLIC_MODE)?;
            report.record(pub_path, Action::Created);
        }
    }
    Ok(())
}

fn ensure_leaf_files(
    data: &DataDir,
    name: &str,
    ca: &CertificateAuthority,
    spec: &CertSpec,
    req: &PkiRequest,
    report: &mut PkiReport,
) -> Result<()> {
    let (cert_path, key_path) = (data.pki_cert(name), data.pki_key(name));
    let cert = fsio::read_optional(&cert_path)?;
    let key = fsio::read_optional(&key_path)?;
    let action = match (cert, key) {
        (None, None) => Action::Created,
        (Some(_), None) => Action::Reissued(format!("{} was missing", key_path.display())),
        (None, Some(_)) => Action::Reissued(format!("{} was missing", cert_path.display())),
        (Some(cert_pem), Some(key_pem)) => {
            let cert = CertInfo::parse(&cert_path, &cert_pem)?;
            let key = keys::parse(&key_path, &key_pem)?;
            check_pair(&cert_path, &key_path, &cert, &key)?;
            match stale(&cert, &key, ca, spec, req) {
                None => {
                    report.record(cert_path, Action::Kept);
                    return Ok(());
                }
                Some(why) => Action::Reissued(why),
            }
        }
    };
    let (cert_pem, key) = ca.issue(spec, req.key_type, req.leaf_validity)?;
    fsio::replace_unsynced(&key_path, key.serialize_pem().as_bytes(), fsio::SECRET_MODE)?;
    fsio::replace_unsynced(&cert_path, cert_pem.as_bytes(), fsio::PUBLIC_MODE)?;
    report.record(cert_path, action);
    Ok(())
}

fn ensure_kubeconfig(
    data: &DataDir,
    name: &str,
    ca: &CertificateAuthority,
    spec: &CertSpec,
    req: &PkiRequest,
    report: &mut PkiReport,
) -> Result<()> {
    let path = data.kubeconfig(name);
    let action = match fsio::read_optional(&path)? {
        None => Action::Created,
        Some(text) => {
            let existing = Kubeconfig::parse(&path, &text)?;
            let cert = CertInfo::parse(&path, &existing.client_cert_pem)?;
            let key = keys::parse(&path, &existing.client_key_pem)?;
            check_pair(&path, &path, &cert, &key)?;
            let why = if existing.ca_pem != ca.cert_pem() {
                Some("embedded CA differs from the current CA".to_owned())
            } else if existing.server != req.local_api_url {
                Some(format!("server changed to {}", req.local_api_url))
            } else if existing.cluster_name != req.cluster_name {
                Some(format!("cluster name changed to {}", req.cluster_name))
            } else {
                stale(&cert, &key, ca, spec, req)
            };
            match why {
                None => {
                    report.record(path, Action::Kept);
                    return Ok(());
                }
                Some(why) => Action::Reissued(why),
            }
        }
    };
    let (cert_pem, key) = ca.issue(spec, req.key_type, req.leaf_validity)?;
    let config = Kubeconfig {
        cluster_name: req.cluster_name.clone(),
        server: req.local_api_url.clone(),
        ca_pem: ca.cert_pem().to_owned(),
        user_name: spec.common_name.clone(),
        client_cert_pem: cert_pem,
        client_key_pem: key.serialize_pem(),
    };
    fsio::replace_unsynced(&path, config.render().as_bytes(), fsio::SECRET_MODE)?;
    report.record(path, action);
    Ok(())
}

fn check_pair(cert_path: &Path, key_path: &Path, cert: &CertInfo, key: &KeyPair) -> Result<()> {
    if cert.matches_key(key) {
        return Ok(());
    }
    let problem = if cert_path == key_path {
        "holds a client certificate that does not match its key".to_owned()
    } else {
        format!("does not match the key {}", key_path.display())
    };
    Err(PkiError::material(
        cert_path,
        problem,
        "remove the certificate and its key so both are re-issued",
    ))
}

/// Why an existing leaf must be re-issued, or `None` to keep it.
fn stale(
    cert: &CertInfo,
    key: &KeyPair,
    ca: &CertificateAuthority,
    spec: &CertSpec,
    req: &PkiRequest,
) -> Option<String> {
    let renew_at = cert.not_after - req.renew_before;
    if !cert.is_signed_by(ca.cert()) {
        Some("not signed by the current CA".to_owned())
    } else if OffsetDateTime::now_utc() >= renew_at {
        Some(format!("expires on {}", cert.not_after.date()))
    } else if cert.common_name != spec.common_name || cert.organizations != spec.organizations {
        Some("subject changed".to_owned())
    } else if cert.sans != expected_sans(spec) {
        Some("subject alternative names changed".to_owned())
    } else if keys::key_type_of(key) != Some(req.key_type) {
        Some("key type changed".to_owned())
    } else {
        None
    }
}

fn expected_sans(spec: &CertSpec) -> BTreeSet<String> {
    let dns = spec.dns_names.iter().map(|name| dns_san(name));
    let ips = spec.ips.iter().map(|ip| ip_san(*ip));
    dns.chain(ips).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> PkiRequest {
        let mut req = PkiRequest::from_config(&k0x_config::ClusterConfig::default());
        req.host_addresses = vec!["192.0.2.10".parse().unwrap()];
        req.api_address = Some("192.0.2.10".into());
        req.sans = vec!["API.example.com".into(), "198.51.100.1".into()];
        req
    }

    #[test]
    fn apiserver_names_cover_service_loopback_host_and_config() {
        let spec = apiserver_spec(&request());
        let sans = expected_sans(&spec);
        for want in [
            "DNS:kubernetes",
            "DNS:kubernetes.default",
            "DNS:kubernetes.default.svc",
            "DNS:kubernetes.default.svc.cluster.local",
            "DNS:localhost",
            "DNS:api.example.com",
            "IP:10.96.0.1",
            "IP:127.0.0.1",
            "IP:192.0.2.10",
            "IP:198.51.100.1",
        ] {
            assert!(sans.contains(want), "{want} missing from {sans:?}");
        }
        assert_eq!(spec.ips.len(), 4, "duplicates removed: {:?}", spec.ips);
    }
}
