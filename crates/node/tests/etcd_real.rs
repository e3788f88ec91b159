//! The real etcd, run with exactly the spec k0x generates and a test PKI: it answers health
//! checks over mutual TLS, keeps data across a restart, and refuses plain HTTP, clients without
//! a certificate and clients from another CA.

mod support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use k0x_config::pki_names;
use k0x_node::{NodeContext, controller_components};
use k0x_supervisor::{Probe, Spec};
use support::{ChildGuard, pki};

fn etcd_spec(ctx: &NodeContext) -> Spec {
    let components = controller_components();
    let etcd = components.iter().find(|c| c.name() == "etcd").unwrap();
    etcd.prepare(ctx).unwrap();
    etcd.spec(ctx).unwrap()
}

fn start(spec: &Spec) -> ChildGuard {
    ChildGuard::spawn(
        Command::new(&spec.path)
            .args(&spec.args)
            .envs(&spec.env)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null()),
    )
}

/// etcdctl against `endpoint` with the given TLS files (`None` leaves the option out).
fn etcdctl(endpoint: &str, tls: [Option<&Path>; 3], args: &[&str]) -> std::process::Output {
    let mut cmd = Command::new("etcdctl");
    cmd.env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={endpoint}"))
        .arg("--dial-timeout=2s")
        .arg("--command-timeout=3s");
    for (flag, value) in ["--cacert", "--cert", "--key"].iter().zip(tls) {
        if let Some(path) = value {
            cmd.arg(format!("{flag}={}", path.display()));
        }
    }
    support::run(cmd.args(args))
}

#[test]
fn etcd_runs_with_generated_args_and_mtls() {
    let Some(_bins) = k0x_testkit::require_binaries(
        "etcd_runs_with_generated_args_and_mtls",
        &["etcd", "etcdctl"],
    ) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let etcd_bin = k0x_testkit::find_binary("etcd").unwrap();
    let bin = support::bin_dir(tmp.path(), &[etcd_bin]);
    let mut ctx = support::context(tmp.path(), "node-a", "127.0.0.1", &bin);
    let (client_port, peer_port) = (k0x_testkit::free_port(), k0x_testkit::free_port());
    ctx.config.spec.storage.etcd.client_port = client_port;
    ctx.config.spec.storage.etcd.peer_port = peer_port;
    pki::generate(&ctx.data, "node-a", "127.0.0.1");
    let spec = etcd_spec(&ctx);

    let Probe::Http {
        url,
        ca,
        client_cert,
        client_key,
    } = spec.readiness.probe.clone()
    else {
        panic!("etcd probe must be HTTPS with a client certificate");
    };
    let endpoint = url.trim_end_matches("/health").to_owned();
    assert_eq!(endpoint, format!("https://127.0.0.1:{client_port}"));
    let good = [ca.as_deref(), client_cert.as_deref(), client_key.as_deref()];
    let healthy = || {
        etcdctl(&endpoint, good, &["endpoint", "health"])
            .status
            .success()
    };

    let etcd = start(&spec);
    assert!(
        support::wait_until(Duration::from_secs(60), healthy),
        "etcd never became healthy"
    );
    let put = etcdctl(&endpoint, good, &["put", "/k0x/test", "survives"]);
    assert!(
        put.status.success(),
        "put failed: {}",
        String::from_utf8_lossy(&put.stderr)
    );

    // Plain HTTP on the client port is refused.
    let plain = format!("http://127.0.0.1:{client_port}");
    assert!(
        !etcdctl(&plain, [None; 3], &["endpoint", "health"])
            .status
            .success()
    );
    // A client without a certificate is refused.
    assert!(
        !etcdctl(
            &endpoint,
            [ca.as_deref(), None, None],
            &["get", "/k0x/test"]
        )
        .status
        .success()
    );
    // A client with a certificate from another CA is refused.
    let rogue_ca = pki::TestCa::new("rogue-ca");
    let (cert, key) = rogue_ca.leaf("k0x", &[], &[], pki::Usage::Client);
    let rogue_cert = tmp.path().join("rogue.crt");
    let rogue_key = tmp.path().join("rogue.key");
    std::fs::write(&rogue_cert, cert).unwrap();
    std::fs::write(&rogue_key, key).unwrap();
    let rogue = [
        ca.as_deref(),
        Some(rogue_cert.as_path()),
        Some(rogue_key.as_path()),
    ];
    assert!(
        !etcdctl(&endpoint, rogue, &["get", "/k0x/test"])
            .status
            .success()
    );
    // The apiserver's etcd client certificate works, the cluster CA's admin one does not.
    let etcd_client = [
        ctx.data.pki_cert(pki_names::APISERVER_ETCD_CLIENT),
        ctx.data.pki_key(pki_names::APISERVER_ETCD_CLIENT),
    ];
    let apiserver = [
        ca.as_deref(),
        Some(etcd_client[0].as_path()),
        Some(etcd_client[1].as_path()),
    ];
    assert!(
        etcdctl(&endpoint, apiserver, &["get", "/k0x/test"])
            .status
            .success()
    );
    let admin = [ctx.data.pki_cert("admin"), ctx.data.pki_key("admin")];
    let cluster_client = [
        ca.as_deref(),
        Some(admin[0].as_path()),
        Some(admin[1].as_path()),
    ];
    assert!(
        !etcdctl(&endpoint, cluster_client, &["get", "/k0x/test"])
            .status
            .success()
    );

    // The key survives a restart with the same generated arguments.
    etcd.stop();
    let etcd = start(&etcd_spec(&ctx));
    assert!(
        support::wait_until(Duration::from_secs(60), healthy),
        "etcd did not come back"
    );
    let get = etcdctl(&endpoint, good, &["get", "/k0x/test", "--print-value-only"]);
    assert_eq!(String::from_utf8_lossy(&get.stdout).trim(), "survives");
    etcd.stop();

    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(ctx.data.etcd())
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o700, "etcd data dir must be private");
}
