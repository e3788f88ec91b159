//! The generated kube-* command lines against the flag contract of the pinned Kubernetes
//! version, and every file a flag or probe names against the disk: it exists after prepare and
//! PKI generation, it parses, certificates chain to the CA the component trusts for that role,
//! and keys match their certificates. The kube-* binaries cannot run here; this is what catches
//! a misspelled flag or a wrong path before a real node would crash-loop on it.

mod support;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine;
use k0x_config::pki_names;
use k0x_node::contract::FlagContract;
use k0x_node::{Component, NodeContext, controller_components, specs, worker_components};
use k0x_supervisor::{Probe, Spec};
use serde_json::Value;

/// A node with every component prepared, a test PKI, and some user extraArgs.
fn prepared_node(root: &Path) -> (NodeContext, Vec<Spec>) {
    let bin = root.join("bin");
    let mut ctx = support::context(root, "node-a", "192.0.2.10", &bin);
    let spec = &mut ctx.config.spec;
    spec.api
        .extra_args
        .insert("audit-log-maxage".into(), "30".into());
    spec.scheduler
        .extra_args
        .insert("kube-api-qps".into(), "50".into());
    spec.controller_manager
        .extra_args
        .insert("node-monitor-grace-period".into(), "40s".into());
    support::pki::generate(&ctx.data, "node-a", "192.0.2.10");
    let mut components: Vec<Box<dyn Component>> = controller_components();
    components.extend(worker_components(Default::default()));
    for component in &components {
        component.prepare(&ctx).unwrap();
    }
    let specs = specs(&components, &ctx).unwrap();
    (ctx, specs)
}

fn flags(spec: &Spec) -> BTreeMap<&str, &str> {
    spec.args
        .iter()
        .filter_map(|a| a.strip_prefix("--")?.split_once('='))
        .collect()
}

fn openssl(args: &[&str]) -> (bool, String) {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .expect("openssl");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// Asserts `cert` chains to `ca` (and, when given, is valid for IP `ip`).
fn assert_chains(cert: &str, ca: &str, ip: Option<&str>, what: &str) {
    let mut args = vec!["verify", "-CAfile", ca];
    if let Some(ip) = ip {
        args.extend(["-verify_ip", ip]);
    }
    args.push(cert);
    let (ok, text) = openssl(&args);
    assert!(ok, "{what}: {cert} does not chain to {ca}: {text}");
}

/// Asserts `key` is the private key of `cert`.
fn assert_key_matches(cert: &str, key: &str, what: &str) {
    let (ok1, from_cert) = openssl(&["x509", "-noout", "-pubkey", "-in", cert]);
    let (ok2, from_key) = openssl(&["pkey", "-pubout", "-in", key]);
    assert!(ok1 && ok2, "{what}: cannot read {cert} / {key}");
    assert_eq!(
        from_cert, from_key,
        "{what}: {key} is not the key of {cert}"
    );
}

/// Checks a file by kind and returns what it is.
fn check_file(path: &Path, what: &str) {
    let text =
        fs::read_to_string(path).unwrap_or_else(|e| panic!("{what}: {}: {e}", path.display()));
    match path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or_default()
    {
        "crt" => {
            let (_, pem) = x509_parser::pem::parse_x509_pem(text.as_bytes())
                .unwrap_or_else(|e| panic!("{what}: {} is not PEM: {e}", path.display()));
            pem.parse_x509()
                .unwrap_or_else(|e| panic!("{what}: {} is not X.509: {e}", path.display()));
        }
        "key" => assert!(
            text.contains("PRIVATE KEY-----"),
            "{what}: {} is not a key",
            path.display()
        ),
        "pub" => assert!(
            text.contains("BEGIN PUBLIC KEY"),
            "{what}: {} is not a public key",
            path.display()
        ),
        "conf" => check_kubeconfig(path, &text, what),
        "yaml" => {
            let doc: Value = serde_saphyr::from_str(&text).unwrap();
            assert!(
                doc["apiVersion"].is_string() && doc["kind"].is_string(),
                "{what}: {}",
                path.display()
            );
        }
        "json" => {
            serde_json::from_str::<Value>(&text)
                .unwrap_or_else(|e| panic!("{what}: {} is not JSON: {e}", path.display()));
        }
        "toml" => assert!(text.contains("version = 2"), "{what}: {}", path.display()),
        other => panic!("{what}: unexpected file kind {other:?}: {}", path.display()),
    }
}

/// A kubeconfig parses and its client certificate chains to the cluster CA.
fn check_kubeconfig(path: &Path, text: &str, what: &str) {
    let doc: Value = serde_saphyr::from_str(text).unwrap();
    assert_eq!(doc["kind"], "Config", "{what}: {}", path.display());
    let context = doc["current-context"].as_str().expect("current-context");
    assert!(
        doc["contexts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["name"] == context)
    );
    let user = &doc["users"][0]["user"];
    let cert = base64::engine::general_purpose::STANDARD
        .decode(
            user["client-certificate-data"]
                .as_str()
                .expect("client cert"),
        )
        .unwrap();
    let cert_path = path.with_extension("client.pem");
    fs::write(&cert_path, cert).unwrap();
    let ca = path.parent().unwrap().join("ca.crt");
    assert_chains(
        cert_path.to_str().unwrap(),
        ca.to_str().unwrap(),
        None,
        what,
    );
}

/// Flags whose value is a path k0x owns: must exist after prepare + PKI and parse.
fn path_flags<'a>(spec: &'a Spec, ctx: &NodeContext) -> Vec<(&'a str, PathBuf)> {
    let roots = [ctx.data.root().to_path_buf(), ctx.run.root().to_path_buf()];
    flags(spec)
        .into_iter()
        .map(|(flag, value)| (flag, PathBuf::from(value)))
        .filter(|(_, path)| roots.iter().any(|r| path.starts_with(r)))
        .collect()
}

#[test]
fn kube_flags_are_in_the_pinned_contract() {
    let tmp = tempfile::tempdir().unwrap();
    let (_ctx, specs) = prepared_node(tmp.path());
    let mut checked = 0;
    for spec in &specs {
        let Some(contract) = FlagContract::for_component(&spec.name) else {
            continue;
        };
        let violations = contract.violations(&spec.args);
        assert!(violations.is_empty(), "{}: {violations:#?}", spec.name);
        checked += 1;
    }
    assert_eq!(checked, 4, "every kube-* component must be checked");
}

#[test]
fn every_referenced_file_exists_and_parses() {
    let Some(_) =
        k0x_testkit::require_binaries("every_referenced_file_exists_and_parses", &["openssl"])
    else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let (ctx, specs) = prepared_node(tmp.path());
    let mut files = 0;
    for spec in &specs {
        for (flag, path) in path_flags(spec, &ctx) {
            let what = format!("{} --{flag}", spec.name);
            if flag == "subnet-file" {
                // flannel writes it: its directory must be there.
                let dir = path.parent().unwrap();
                assert!(dir.is_dir(), "{what}: {} is not a directory", dir.display());
            } else if ["data-dir", "root-dir", "cert-dir"].contains(&flag) {
                assert!(
                    path.is_dir(),
                    "{what}: {} is not a directory",
                    path.display()
                );
            } else {
                check_file(&path, &what);
                files += 1;
            }
        }
        if let Probe::Http {
            ca,
            client_cert,
            client_key,
            ..
        } = &spec.readiness.probe
        {
            for path in [ca, client_cert, client_key].into_iter().flatten() {
                check_file(path, &format!("{} probe", spec.name));
            }
        }
    }
    assert!(files > 30, "too few files checked: {files}");
    let kubelet: Value = serde_saphyr::from_str(
        &fs::read_to_string(k0x_node::paths::kubelet_config(&ctx.data)).unwrap(),
    )
    .unwrap();
    check_file(
        Path::new(
            kubelet["authentication"]["x509"]["clientCAFile"]
                .as_str()
                .unwrap(),
        ),
        "kubelet clientCAFile",
    );
}

/// (component, certificate flag, key flag, flag or pki name of the CA it must chain to, IP it serves)
const CHAINS: &[(&str, &str, &str, &str, Option<&str>)] = &[
    (
        "etcd",
        "cert-file",
        "key-file",
        "trusted-ca-file",
        Some("127.0.0.1"),
    ),
    (
        "etcd",
        "peer-cert-file",
        "peer-key-file",
        "peer-trusted-ca-file",
        Some("192.0.2.10"),
    ),
    (
        "kube-apiserver",
        "tls-cert-file",
        "tls-private-key-file",
        "client-ca-file",
        Some("127.0.0.1"),
    ),
    (
        "kube-apiserver",
        "etcd-certfile",
        "etcd-keyfile",
        "etcd-cafile",
        None,
    ),
    (
        "kube-apiserver",
        "kubelet-client-certificate",
        "kubelet-client-key",
        "client-ca-file",
        None,
    ),
    (
        "kube-apiserver",
        "proxy-client-cert-file",
        "proxy-client-key-file",
        "requestheader-client-ca-file",
        None,
    ),
    (
        "kube-scheduler",
        "tls-cert-file",
        "tls-private-key-file",
        pki_names::CA,
        Some("127.0.0.1"),
    ),
    (
        "kube-controller-manager",
        "tls-cert-file",
        "tls-private-key-file",
        "root-ca-file",
        Some("127.0.0.1"),
    ),
    (
        "kube-controller-manager",
        "cluster-signing-cert-file",
        "cluster-signing-key-file",
        "root-ca-file",
        None,
    ),
];

#[test]
fn certificates_chain_to_the_right_ca() {
    let Some(_) = k0x_testkit::require_binaries("certificates_chain_to_the_right_ca", &["openssl"])
    else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let (ctx, specs) = prepared_node(tmp.path());
    let by_name: BTreeMap<&str, &Spec> = specs.iter().map(|s| (s.name.as_str(), s)).collect();
    for (component, cert_flag, key_flag, ca, ip) in CHAINS {
        let flags = flags(by_name[component]);
        let cert = flags[cert_flag];
        let key = flags[key_flag];
        let ca_path = ctx.data.pki_cert(ca).display().to_string();
        let ca = flags.get(ca).copied().unwrap_or(&ca_path);
        let what = format!("{component} --{cert_flag}");
        assert_chains(cert, ca, *ip, &what);
        assert_key_matches(cert, key, &what);
    }
    // The kubelet serves with a certificate the apiserver's --kubelet-certificate-authority
    // verifies, for the node IP the apiserver dials.
    let kubelet: Value = serde_saphyr::from_str(
        &fs::read_to_string(k0x_node::paths::kubelet_config(&ctx.data)).unwrap(),
    )
    .unwrap();
    let serving = kubelet["tlsCertFile"].as_str().unwrap();
    let kubelet_ca = flags(by_name["kube-apiserver"])["kubelet-certificate-authority"];
    assert_chains(
        serving,
        kubelet_ca,
        Some("192.0.2.10"),
        "kubelet tlsCertFile",
    );
    let serving_key = kubelet["tlsPrivateKeyFile"].as_str().unwrap();
    assert_key_matches(serving, serving_key, "kubelet tlsCertFile");
    // The etcd CA and the cluster CA are distinct: a cluster client cannot open etcd.
    let etcd = flags(by_name["etcd"]);
    let admin = ctx.data.pki_cert("admin").display().to_string();
    let (ok, _) = openssl(&["verify", "-CAfile", etcd["trusted-ca-file"], &admin]);
    assert!(
        !ok,
        "a cluster CA certificate must not chain to the etcd CA"
    );
    // Probe client certificates chain to the CA their server trusts.
    for spec in &specs {
        if let Probe::Http {
            ca: Some(ca),
            client_cert: Some(cert),
            client_key: Some(key),
            url,
        } = &spec.readiness.probe
        {
            let server_ca = match spec.name.as_str() {
                "etcd" => etcd["trusted-ca-file"].to_owned(),
                _ => flags(spec)
                    .get("client-ca-file")
                    .map(|s| (*s).to_owned())
                    .unwrap(),
            };
            let what = format!("{} probe {url}", spec.name);
            assert_chains(cert.to_str().unwrap(), &server_ca, None, &what);
            assert_key_matches(cert.to_str().unwrap(), key.to_str().unwrap(), &what);
            assert!(ca.is_file(), "{what}: CA {} missing", ca.display());
        }
    }
}

#[test]
fn start_order_follows_dependencies() {
    let tmp = tempfile::tempdir().unwrap();
    let (_ctx, specs) = prepared_node(tmp.path());
    let position = |name: &str| specs.iter().position(|s| s.name == name).unwrap();
    for spec in &specs {
        for dep in &spec.depends_on {
            assert!(
                position(dep) < position(&spec.name),
                "{} before {dep}",
                spec.name
            );
        }
    }
    let deps = |name: &str| specs[position(name)].depends_on.clone();
    assert_eq!(deps("kube-apiserver"), ["etcd"]);
    assert_eq!(deps("kube-scheduler"), ["kube-apiserver"]);
    assert_eq!(deps("kube-controller-manager"), ["kube-apiserver"]);
    assert_eq!(deps("kubelet"), ["containerd"]);
}
