//! A throwaway PKI for tests, written at the `pki_names` paths the pki crate uses.
//!
//! This is the single place tests get certificates from; once the pki crate is merged, this
//! helper is replaced by a call to it. Names, SANs and key usages follow what the components
//! need (kubeadm conventions), so a component that accepts these accepts the real ones.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use base64::Engine;
use k0x_config::{DataDir, pki_names};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

/// A CA: its certificate PEM and the issuer that signs leaves.
pub struct TestCa {
    pub cert_pem: String,
    issuer: Issuer<'static, KeyPair>,
    key_pem: String,
}

impl TestCa {
    pub fn new(common_name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::new()).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate().unwrap();
        let cert_pem = params.self_signed(&key).unwrap().pem();
        let key_pem = key.serialize_pem();
        Self {
            cert_pem,
            issuer: Issuer::new(params, key),
            key_pem,
        }
    }

    /// A leaf certificate and key (PEM) for `cn`/`orgs` with `sans`, for server and/or client use.
    pub fn leaf(&self, cn: &str, orgs: &[&str], sans: &[&str], usage: Usage) -> (String, String) {
        let sans: Vec<String> = sans.iter().map(|s| (*s).to_owned()).collect();
        let mut params = CertificateParams::new(sans).unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        for org in orgs {
            params
                .distinguished_name
                .push(DnType::OrganizationName, *org);
        }
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = match usage {
            Usage::Server => vec![ExtendedKeyUsagePurpose::ServerAuth],
            Usage::Client => vec![ExtendedKeyUsagePurpose::ClientAuth],
            Usage::Both => vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ],
        };
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    /// Writes `pki/<name>.crt` and `.key`.
    fn write(&self, data: &DataDir, name: &str) {
        write_pair(data, name, &self.cert_pem, &self.key_pem);
    }
}

#[derive(Clone, Copy)]
pub enum Usage {
    Server,
    Client,
    Both,
}

fn write_file(path: &Path, contents: &str, mode: u32) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, contents).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

fn write_pair(data: &DataDir, name: &str, cert: &str, key: &str) {
    write_file(&data.pki_cert(name), cert, 0o644);
    write_file(&data.pki_key(name), key, 0o600);
}

/// A kubeconfig with embedded client credentials for `server`.
pub fn kubeconfig(ca_pem: &str, server: &str, user: &str, cert: &str, key: &str) -> String {
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: k0x\n  cluster:\n    server: {server}\n    \
         certificate-authority-data: {ca}\nusers:\n- name: {user}\n  user:\n    \
         client-certificate-data: {cert}\n    client-key-data: {key}\ncontexts:\n- name: {user}@k0x\n  \
         context:\n    cluster: k0x\n    user: {user}\ncurrent-context: {user}@k0x\n",
        ca = b64(ca_pem),
        cert = b64(cert),
        key = b64(key),
    )
}

/// The CAs of a generated test PKI.
pub struct TestPki {
    pub ca: TestCa,
    pub etcd_ca: TestCa,
    pub front_proxy_ca: TestCa,
}

/// Generates every file the components point at, for a node called `node` at `address`.
pub fn generate(data: &DataDir, node: &str, address: &str) -> TestPki {
    let ca = TestCa::new("kubernetes-ca");
    let etcd_ca = TestCa::new("etcd-ca");
    let front_proxy_ca = TestCa::new("kubernetes-front-proxy-ca");
    ca.write(data, pki_names::CA);
    etcd_ca.write(data, pki_names::ETCD_CA);
    front_proxy_ca.write(data, pki_names::FRONT_PROXY_CA);

    let local = ["127.0.0.1", "localhost", address];
    let issue = |issuer: &TestCa, name: &str, cn: &str, orgs: &[&str], sans: &[&str], usage| {
        let (cert, key) = issuer.leaf(cn, orgs, sans, usage);
        write_pair(data, name, &cert, &key);
    };
    let mut apiserver_sans = vec![
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        "kubernetes.default.svc.cluster.local",
        "10.96.0.1",
    ];
    apiserver_sans.extend(local);
    let loopback = ["127.0.0.1", "localhost"];
    issue(
        &ca,
        pki_names::APISERVER,
        "kube-apiserver",
        &[],
        &apiserver_sans,
        Usage::Server,
    );
    let masters = ["system:masters"];
    issue(
        &ca,
        pki_names::APISERVER_KUBELET_CLIENT,
        "kube-apiserver-kubelet-client",
        &masters,
        &[],
        Usage::Client,
    );
    issue(
        &etcd_ca,
        pki_names::APISERVER_ETCD_CLIENT,
        "kube-apiserver-etcd-client",
        &[],
        &[],
        Usage::Client,
    );
    issue(
        &etcd_ca,
        pki_names::ETCD_SERVER,
        node,
        &[],
        &local,
        Usage::Both,
    );
    issue(
        &etcd_ca,
        pki_names::ETCD_PEER,
        node,
        &[],
        &local,
        Usage::Both,
    );
    issue(
        &etcd_ca,
        pki_names::ETCD_K0X_CLIENT,
        "k0x",
        &[],
        &[],
        Usage::Client,
    );
    issue(
        &front_proxy_ca,
        pki_names::FRONT_PROXY_CLIENT,
        "front-proxy-client",
        &[],
        &[],
        Usage::Client,
    );
    issue(
        &ca,
        pki_names::SCHEDULER_SERVER,
        "kube-scheduler",
        &[],
        &loopback,
        Usage::Server,
    );
    issue(
        &ca,
        pki_names::CONTROLLER_MANAGER_SERVER,
        "kube-controller-manager",
        &[],
        &loopback,
        Usage::Server,
    );
    issue(
        &ca,
        "admin",
        "kubernetes-admin",
        &masters,
        &[],
        Usage::Client,
    );

    let sa = KeyPair::generate().unwrap();
    write_file(&data.sa_key(), &sa.serialize_pem(), 0o600);
    write_file(&data.sa_pub(), &sa.public_key_pem(), 0o644);

    let server = format!("https://{address}:6443");
    let users = [
        (pki_names::ADMIN, "kubernetes-admin", vec!["system:masters"]),
        (pki_names::SCHEDULER, "system:kube-scheduler", vec![]),
        (
            pki_names::CONTROLLER_MANAGER,
            "system:kube-controller-manager",
            vec![],
        ),
        (
            pki_names::KUBELET,
            &*format!("system:node:{node}"),
            vec!["system:nodes"],
        ),
    ]
    .map(|(file, cn, orgs)| (file, cn.to_owned(), orgs));
    for (file, cn, orgs) in users {
        let (cert, key) = ca.leaf(&cn, &orgs, &[], Usage::Client);
        let text = kubeconfig(&ca.cert_pem, &server, &cn, &cert, &key);
        write_file(&data.kubeconfig(file), &text, 0o600);
    }
    TestPki {
        ca,
        etcd_ca,
        front_proxy_ca,
    }
}
