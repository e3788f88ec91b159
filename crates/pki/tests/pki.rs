//! The PKI checked with real tools: openssl verifies every chain, a rustls server configured like
//! kube-apiserver (serving cert + cluster CA as client CA) decides who gets in, and the files on
//! disk keep their bytes, mtimes and modes across runs.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::SystemTime;

use k0x_config::schema::KeyType;
use k0x_config::{ClusterConfig, DataDir, pki_names};
use k0x_pki::{Action, Kubeconfig, PkiRequest, UserRequest, ensure_pki, user_kubeconfig};
use time::Duration;

fn request() -> PkiRequest {
    let mut req = PkiRequest::from_config(&ClusterConfig::default());
    req.hostname = "ctrl-1".into();
    req.node_name = "ctrl-1".into();
    req
}

fn fresh() -> (tempfile::TempDir, DataDir) {
    let tmp = tempfile::tempdir().unwrap();
    let data = DataDir::new(tmp.path().join("data"));
    (tmp, data)
}

fn openssl(args: &[&str]) -> String {
    let out = Command::new("openssl").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "openssl {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn path_str(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// Writes the client certificate embedded in kubeconfig `conf` to a file beside `dir`.
fn extract_client_cert(conf: &Path, dir: &Path) -> PathBuf {
    let text = fs::read_to_string(conf).unwrap();
    let config = Kubeconfig::parse(conf, &text).unwrap();
    let out = dir.join(format!(
        "{}.crt",
        conf.file_stem().unwrap().to_string_lossy()
    ));
    fs::write(&out, config.client_cert_pem).unwrap();
    out
}

const CLUSTER_CA_LEAFS: [&str; 4] = [
    pki_names::APISERVER,
    pki_names::APISERVER_KUBELET_CLIENT,
    pki_names::SCHEDULER_SERVER,
    pki_names::CONTROLLER_MANAGER_SERVER,
];
const ETCD_CA_LEAFS: [&str; 4] = [
    pki_names::ETCD_SERVER,
    pki_names::ETCD_PEER,
    pki_names::APISERVER_ETCD_CLIENT,
    pki_names::ETCD_K0X_CLIENT,
];
const KUBECONFIGS: [&str; 4] = [
    pki_names::ADMIN,
    pki_names::SCHEDULER,
    pki_names::CONTROLLER_MANAGER,
    pki_names::KUBELET,
];

fn verify_all(data: &DataDir, scratch: &Path) {
    let verify = |ca: &str, leaf: &Path| {
        let out = openssl(&[
            "verify",
            "-CAfile",
            path_str(&data.pki_cert(ca)),
            path_str(leaf),
        ]);
        assert!(out.trim_end().ends_with(": OK"), "{out}");
    };
    for leaf in CLUSTER_CA_LEAFS {
        verify(pki_names::CA, &data.pki_cert(leaf));
    }
    for leaf in ETCD_CA_LEAFS {
        verify(pki_names::ETCD_CA, &data.pki_cert(leaf));
    }
    verify(
        pki_names::FRONT_PROXY_CA,
        &data.pki_cert(pki_names::FRONT_PROXY_CLIENT),
    );
    for conf in KUBECONFIGS {
        verify(
            pki_names::CA,
            &extract_client_cert(&data.kubeconfig(conf), scratch),
        );
    }
}

fn subject_and_issuer(cert: &Path) -> String {
    openssl(&[
        "x509",
        "-noout",
        "-subject",
        "-issuer",
        "-in",
        path_str(cert),
    ])
}

#[test]
fn every_leaf_chains_to_its_ca_in_openssl() {
    if k0x_testkit::require_binaries("every_leaf_chains_to_its_ca_in_openssl", &["openssl"])
        .is_none()
    {
        return;
    }
    let (tmp, data) = fresh();
    ensure_pki(&data, &request()).unwrap();
    verify_all(&data, tmp.path());

    let ca = subject_and_issuer(&data.pki_cert(pki_names::CA));
    assert!(ca.contains("subject=CN = kubernetes-ca"), "{ca}");
    let etcd_ca = subject_and_issuer(&data.pki_cert(pki_names::ETCD_CA));
    assert!(etcd_ca.contains("subject=CN = etcd-ca"), "{etcd_ca}");
    let admin = subject_and_issuer(&extract_client_cert(&data.admin_kubeconfig(), tmp.path()));
    assert!(
        admin.contains("subject=O = system:masters, CN = kubernetes-admin"),
        "{admin}"
    );
    let kubelet = extract_client_cert(&data.kubeconfig(pki_names::KUBELET), tmp.path());
    let kubelet = subject_and_issuer(&kubelet);
    assert!(
        kubelet.contains("subject=O = system:nodes, CN = system:node:ctrl-1"),
        "{kubelet}"
    );
    let scheduler = extract_client_cert(&data.kubeconfig(pki_names::SCHEDULER), tmp.path());
    assert!(subject_and_issuer(&scheduler).contains("subject=CN = system:kube-scheduler"));

    let apiserver = openssl(&[
        "x509",
        "-noout",
        "-ext",
        "subjectAltName,extendedKeyUsage",
        "-dates",
        "-in",
        path_str(&data.pki_cert(pki_names::APISERVER)),
    ]);
    for want in [
        "DNS:kubernetes,",
        "DNS:kubernetes.default,",
        "DNS:kubernetes.default.svc,",
        "DNS:kubernetes.default.svc.cluster.local",
        "DNS:localhost",
        "IP Address:10.96.0.1",
        "IP Address:127.0.0.1",
        "TLS Web Server Authentication",
    ] {
        assert!(apiserver.contains(want), "{want} missing:\n{apiserver}");
    }
    let etcd = openssl(&[
        "x509",
        "-noout",
        "-ext",
        "subjectAltName,extendedKeyUsage",
        "-in",
        path_str(&data.pki_cert(pki_names::ETCD_SERVER)),
    ]);
    for want in [
        "DNS:localhost",
        "DNS:ctrl-1",
        "IP Address:127.0.0.1",
        "TLS Web Client Authentication",
    ] {
        assert!(etcd.contains(want), "{want} missing:\n{etcd}");
    }
    let sa_pub = openssl(&[
        "pkey",
        "-pubin",
        "-noout",
        "-text",
        "-in",
        path_str(&data.sa_pub()),
    ]);
    assert!(sa_pub.contains("prime256v1"), "{sa_pub}");
}

#[test]
fn rsa_2048_material_verifies_and_switching_type_reissues_leafs_only() {
    if k0x_testkit::require_binaries("rsa_2048_material_verifies", &["openssl"]).is_none() {
        return;
    }
    let (tmp, data) = fresh();
    let mut req = request();
    req.key_type = KeyType::Rsa2048;
    ensure_pki(&data, &req).unwrap();
    verify_all(&data, tmp.path());
    let text = openssl(&[
        "x509",
        "-noout",
        "-text",
        "-in",
        path_str(&data.pki_cert(pki_names::APISERVER)),
    ]);
    assert!(
        text.contains("Public-Key: (2048 bit)") && text.contains("sha256WithRSAEncryption"),
        "{text}"
    );

    let ca_before = fs::read(data.pki_cert(pki_names::CA)).unwrap();
    req.key_type = KeyType::EcdsaP256;
    let report = ensure_pki(&data, &req).unwrap();
    assert_eq!(
        fs::read(data.pki_cert(pki_names::CA)).unwrap(),
        ca_before,
        "CA kept"
    );
    let apiserver = action(&report, &data.pki_cert(pki_names::APISERVER));
    assert_eq!(apiserver, Action::Reissued("key type changed".into()));
    verify_all(&data, tmp.path());
}

fn action(report: &k0x_pki::PkiReport, path: &Path) -> Action {
    report
        .entries
        .iter()
        .find(|(p, _)| p == path)
        .map(|(_, a)| a.clone())
        .unwrap_or_else(|| panic!("{} not in report {report}", path.display()))
}

#[derive(Debug, PartialEq, Eq)]
struct FileState {
    bytes: Vec<u8>,
    mtime: SystemTime,
    mode: u32,
}

fn snapshot(dir: &Path) -> BTreeMap<PathBuf, FileState> {
    let mut out = BTreeMap::new();
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let meta = fs::metadata(&path).unwrap();
        if meta.is_dir() {
            out.extend(snapshot(&path));
        } else {
            out.insert(
                path.clone(),
                FileState {
                    bytes: fs::read(&path).unwrap(),
                    mtime: meta.modified().unwrap(),
                    mode: meta.permissions().mode() & 0o777,
                },
            );
        }
    }
    out
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn second_run_changes_nothing_and_modes_are_private() {
    let (_tmp, data) = fresh();
    let req = request();
    let first = ensure_pki(&data, &req).unwrap();
    assert!(
        first.entries.iter().all(|(_, a)| *a == Action::Created),
        "{first}"
    );
    let before = snapshot(data.root());
    let second = ensure_pki(&data, &req).unwrap();
    assert!(second.unchanged(), "{second}");
    assert_eq!(snapshot(data.root()), before);

    for dir in [data.root().to_owned(), data.pki(), data.etcd_pki()] {
        assert_eq!(mode(&dir), 0o700, "{}", dir.display());
    }
    let mut secrets = 0;
    for (path, state) in &before {
        let name = path.file_name().unwrap().to_string_lossy();
        if name.ends_with(".key") || name.ends_with(".conf") {
            assert_eq!(state.mode, 0o600, "{}", path.display());
            secrets += 1;
        } else {
            assert!(
                name.ends_with(".crt") || name.ends_with(".pub"),
                "{}",
                path.display()
            );
        }
    }
    // 3 CA keys, sa.key, 11 leaf keys, 5 kubeconfigs
    assert_eq!(secrets, 20, "{} secret files", secrets);
}

#[test]
fn a_key_others_may_read_is_made_private_and_named() {
    let (_tmp, data) = fresh();
    let req = request();
    ensure_pki(&data, &req).unwrap();
    let exposed = [
        data.pki_key(pki_names::CA),
        data.sa_key(),
        data.pki_key(pki_names::APISERVER),
        data.admin_kubeconfig(),
    ];
    for path in &exposed {
        fs::set_permissions(path, fs::Permissions::from_mode(0o644)).unwrap();
    }
    let report = ensure_pki(&data, &req).unwrap();
    for path in &exposed {
        assert_eq!(mode(path), 0o600, "{}", path.display());
        let line = format!(
            "repaired {} (mode 0644 let others read a secret; now 0600)",
            path.display()
        );
        assert!(
            report.to_string().contains(&line),
            "{line} missing from:\n{report}"
        );
    }
    let again = ensure_pki(&data, &req).unwrap();
    assert!(again.unchanged(), "{again}");
}

#[test]
fn leafs_near_expiry_are_renewed_and_cas_kept() {
    let (_tmp, data) = fresh();
    let mut req = request();
    req.leaf_validity = Duration::days(30);
    ensure_pki(&data, &req).unwrap();
    let before = snapshot(data.root());

    let report = ensure_pki(&data, &request()).unwrap();
    for (path, action) in &report.entries {
        let name = path.to_string_lossy();
        if name.ends_with("ca.crt") || name.ends_with("sa.key") {
            assert_eq!(*action, Action::Kept, "{}", path.display());
            assert_eq!(before[path], snapshot(data.root())[path]);
        } else {
            assert!(
                matches!(action, Action::Reissued(why) if why.starts_with("expires on")),
                "{}: {action:?}",
                path.display()
            );
        }
    }
    assert!(ensure_pki(&data, &request()).unwrap().unchanged());
}

#[test]
fn a_san_change_reissues_the_apiserver_certificate_only() {
    let (_tmp, data) = fresh();
    let mut req = request();
    ensure_pki(&data, &req).unwrap();
    req.sans.push("api.example.com".into());
    let report = ensure_pki(&data, &req).unwrap();
    for (path, act) in &report.entries {
        if *path == data.pki_cert(pki_names::APISERVER) {
            assert_eq!(
                *act,
                Action::Reissued("subject alternative names changed".into())
            );
        } else {
            assert_eq!(*act, Action::Kept, "{}", path.display());
        }
    }
    let text = fs::read_to_string(data.pki_cert(pki_names::APISERVER)).unwrap();
    let info = k0x_pki::x509::CertInfo::parse(Path::new("apiserver.crt"), &text).unwrap();
    assert!(info.sans.contains("DNS:api.example.com"), "{:?}", info.sans);
}

/// Runs `ensure_pki` expecting an error; checks it is one line naming `file`, and that nothing
/// on disk changed.
fn expect_error(data: &DataDir, file: &Path, contains: &str) {
    let before = snapshot(data.root());
    let err = ensure_pki(data, &request()).unwrap_err().to_string();
    assert!(!err.contains('\n'), "one line: {err}");
    assert!(
        err.starts_with(&file.display().to_string()),
        "names {}: {err}",
        file.display()
    );
    assert!(err.contains(contains), "{contains:?} in {err}");
    assert_eq!(snapshot(data.root()), before, "nothing written on error");
}

#[test]
fn damaged_material_is_a_clear_error() {
    let (_tmp, data) = fresh();
    ensure_pki(&data, &request()).unwrap();

    let apiserver = data.pki_cert(pki_names::APISERVER);
    let good = fs::read(&apiserver).unwrap();
    fs::write(&apiserver, "-----BEGIN CERTIFICATE-----\nnot base64\n").unwrap();
    expect_error(&data, &apiserver, "is not a PEM certificate");
    fs::write(&apiserver, &good).unwrap();

    let key = data.pki_key(pki_names::APISERVER);
    let good_key = fs::read(&key).unwrap();
    fs::copy(data.pki_key(pki_names::FRONT_PROXY_CLIENT), &key).unwrap();
    expect_error(&data, &apiserver, "does not match the key");
    fs::write(&key, &good_key).unwrap();

    let admin = data.admin_kubeconfig();
    let good_admin = fs::read(&admin).unwrap();
    fs::write(&admin, "apiVersion: v1\nclusters: [").unwrap();
    expect_error(&data, &admin, "is not a kubeconfig");
    fs::write(&admin, &good_admin).unwrap();

    let ca_key = data.pki_key(pki_names::ETCD_CA);
    fs::remove_file(&ca_key).unwrap();
    expect_error(&data, &ca_key, "is missing while");

    fs::remove_file(data.pki_cert(pki_names::ETCD_CA)).unwrap();
    expect_error(
        &data,
        &data.pki_cert(pki_names::ETCD_CA),
        "(signed by it) exists",
    );
}

fn user(data: &DataDir, name: &str, groups: &[&str]) -> Kubeconfig {
    let req = UserRequest {
        name: name.into(),
        groups: groups.iter().map(|g| (*g).to_owned()).collect(),
        validity: Duration::days(365),
        server: "https://127.0.0.1:6443".into(),
        cluster_name: "k0x".into(),
        key_type: KeyType::EcdsaP256,
    };
    let text = user_kubeconfig(data, &req).unwrap();
    Kubeconfig::parse(Path::new("user.conf"), &text).unwrap()
}

#[test]
fn user_certificates_carry_one_organization_per_group() {
    if k0x_testkit::require_binaries("user_certificates_carry_groups", &["openssl"]).is_none() {
        return;
    }
    let (tmp, data) = fresh();
    ensure_pki(&data, &request()).unwrap();
    let ca = path_str(&data.pki_cert(pki_names::CA)).to_owned();
    for (groups, subject) in [
        (&["dev"][..], "subject=O = dev, CN = demo"),
        (
            &["dev", "ops", "dev"][..],
            "subject=O = dev, O = ops, CN = demo",
        ),
        (&[][..], "subject=CN = demo"),
    ] {
        let cert = tmp.path().join("demo.crt");
        fs::write(&cert, user(&data, "demo", groups).client_cert_pem).unwrap();
        let shown = subject_and_issuer(&cert);
        assert!(shown.contains(subject), "{groups:?}: {shown}");
        assert!(shown.contains("issuer=CN = kubernetes-ca"), "{shown}");
        let verified = openssl(&["verify", "-CAfile", &ca, path_str(&cert)]);
        assert!(verified.trim_end().ends_with(": OK"), "{verified}");
    }
}

#[test]
fn user_requests_are_validated() {
    let (_tmp, data) = fresh();
    let mut req = UserRequest {
        name: "demo".into(),
        groups: vec!["dev".into()],
        validity: Duration::days(365),
        server: "https://127.0.0.1:6443".into(),
        cluster_name: "k0x".into(),
        key_type: KeyType::EcdsaP256,
    };
    let err = user_kubeconfig(&data, &req).unwrap_err().to_string();
    assert!(
        err.contains("ca.crt: not found") && err.contains("k0x server"),
        "{err}"
    );
    ensure_pki(&data, &request()).unwrap();
    req.groups = vec!["dev ops".into()];
    assert!(
        user_kubeconfig(&data, &req)
            .unwrap_err()
            .to_string()
            .starts_with("group \"dev ops\"")
    );
    req.groups.clear();
    req.name = "system:admin".into();
    assert!(
        user_kubeconfig(&data, &req)
            .unwrap_err()
            .to_string()
            .contains("reserved")
    );
    req.name = "demo".into();
    req.validity = Duration::days(365 * 20);
    assert!(
        user_kubeconfig(&data, &req)
            .unwrap_err()
            .to_string()
            .contains("--expiry")
    );
}

#[test]
fn ca_pin_is_the_sha256_of_the_der_openssl_computes() {
    if k0x_testkit::require_binaries("ca_pin_matches_openssl", &["openssl", "sh"]).is_none() {
        return;
    }
    let (_tmp, data) = fresh();
    ensure_pki(&data, &request()).unwrap();
    let ca_path = data.pki_cert(pki_names::CA);
    let out = Command::new("sh")
        .arg("-c")
        .arg("openssl x509 -in \"$1\" -outform DER | openssl dgst -sha256 -r")
        .arg("sh")
        .arg(&ca_path)
        .output()
        .unwrap();
    assert!(out.status.success());
    let expected = String::from_utf8(out.stdout).unwrap();
    let pin = k0x_pki::ca_pin(&fs::read_to_string(&ca_path).unwrap()).unwrap();
    assert_eq!(pin, expected.split_whitespace().next().unwrap());
    assert_eq!(k0x_pki::load_cluster_ca(&data).unwrap().pin(), pin);
}

#[test]
fn an_expired_ca_is_reported_not_replaced() {
    let (_tmp, data) = fresh();
    let mut req = request();
    req.ca_validity = Duration::ZERO;
    ensure_pki(&data, &req).unwrap();
    expect_error(&data, &data.pki_cert(pki_names::CA), "CA expired on");
}

#[test]
fn a_joining_controller_shares_the_cas_and_issues_its_own_leafs() {
    let (tmp, first) = fresh();
    ensure_pki(&first, &request()).unwrap();
    let secrets = k0x_pki::ControllerSecrets::read(&first).unwrap();
    assert_eq!(format!("{secrets:?}"), "ControllerSecrets { .. }");
    let wire = serde_json::to_string(&secrets).unwrap();
    let received: k0x_pki::ControllerSecrets = serde_json::from_str(&wire).unwrap();

    let second = DataDir::new(tmp.path().join("second"));
    received.install(&second).unwrap();
    received.install(&second).unwrap();
    let mut req = request();
    req.hostname = "ctrl-2".into();
    let report = ensure_pki(&second, &req).unwrap();
    assert_eq!(
        action(&report, &second.pki_cert(pki_names::CA)),
        Action::Kept
    );
    assert_eq!(
        action(&report, &second.pki_cert(pki_names::APISERVER)),
        Action::Created
    );
    for name in [pki_names::CA, pki_names::ETCD_CA, pki_names::FRONT_PROXY_CA] {
        assert_eq!(
            fs::read(first.pki_key(name)).unwrap(),
            fs::read(second.pki_key(name)).unwrap()
        );
        assert_eq!(mode(&second.pki_key(name)), 0o600);
    }
    assert_eq!(
        fs::read(first.sa_key()).unwrap(),
        fs::read(second.sa_key()).unwrap()
    );

    let (_other_tmp, other) = fresh();
    ensure_pki(&other, &request()).unwrap();
    let before = snapshot(other.root());
    let err = received.install(&other).unwrap_err().to_string();
    assert!(err.contains("belongs to another cluster"), "{err}");
    assert_eq!(snapshot(other.root()), before);

    let mut broken = received;
    broken.sa_pub = secrets.ca.cert;
    let fresh_dir = DataDir::new(tmp.path().join("third"));
    assert!(
        broken
            .install(&fresh_dir)
            .unwrap_err()
            .to_string()
            .contains("does not match sa.key")
    );
    assert!(!fresh_dir.root().exists(), "nothing written");
}
