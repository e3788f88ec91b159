//! `k0x pki init`, `k0x user create` and `k0x kubeconfig admin` as processes, their output read
//! back by kubectl and openssl.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

struct Cluster {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
}

impl Cluster {
    /// A scratch cluster whose config file holds the defaults until a test rewrites it.
    fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_owned();
        let default = Command::new(env!("CARGO_BIN_EXE_k0x"))
            .args(["config", "create"])
            .output()
            .unwrap();
        assert!(default.status.success());
        fs::write(dir.join("k0x.yaml"), default.stdout).unwrap();
        Self { _tmp: tmp, dir }
    }

    fn config(&self) -> PathBuf {
        self.dir.join("k0x.yaml")
    }

    fn k0x(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_k0x"))
            .arg("--data-dir")
            .arg(self.dir.join("data"))
            .arg("--config")
            .arg(self.config())
            .args(args)
            .env_remove("K0X_LOG")
            .output()
            .unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.k0x(args);
        assert!(out.status.success(), "k0x {args:?}: {}", stderr(&out));
        String::from_utf8(out.stdout).unwrap()
    }

    /// Runs k0x expecting failure; returns its one-line error.
    fn fails(&self, args: &[&str]) -> String {
        let out = self.k0x(args);
        assert!(!out.status.success(), "k0x {args:?} should fail");
        let err = stderr(&out);
        assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
        err
    }

    fn save(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.join(name);
        fs::write(&path, text).unwrap();
        path
    }
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn tools(test: &str) -> bool {
    k0x_testkit::require_binaries(test, &["kubectl", "openssl", "base64", "sh"]).is_some()
}

/// The kubectl tests run: the one embedded-bins/build built, else the host's.
fn kubectl() -> PathBuf {
    k0x_testkit::find_binary("kubectl").unwrap()
}

/// `kubectl config view --raw` of `kubeconfig`, with an optional jsonpath.
fn kubectl_view(kubeconfig: &Path, jsonpath: Option<&str>) -> String {
    let mut cmd = Command::new(kubectl());
    cmd.args(["config", "view", "--raw", "--kubeconfig"])
        .arg(kubeconfig);
    if let Some(path) = jsonpath {
        cmd.arg("-o").arg(format!("jsonpath={path}"));
    }
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "kubectl: {}", stderr(&out));
    String::from_utf8(out.stdout).unwrap()
}

/// openssl's view of the client certificate kubectl finds in `kubeconfig`.
fn client_cert_text(kubeconfig: &Path, openssl_args: &str) -> String {
    let script = format!(
        "\"$2\" config view --raw --kubeconfig \"$1\" \
         -o jsonpath='{{.users[0].user.client-certificate-data}}' | base64 -d \
         | openssl x509 -noout {openssl_args}"
    );
    let out = Command::new("sh")
        .args(["-c", &script, "sh"])
        .arg(kubeconfig)
        .arg(kubectl())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn user_create_prints_a_kubeconfig_kubectl_and_openssl_accept() {
    if !tools("user_create_prints_a_kubeconfig") {
        return;
    }
    let cluster = Cluster::new();
    let err = cluster.fails(&["user", "create", "demo", "--groups", "dev"]);
    assert!(
        err.contains("pki/ca.crt: not found") && err.contains("k0x pki init"),
        "{err}"
    );
    cluster.ok(&["pki", "init"]);

    let demo = cluster.save(
        "demo.conf",
        &cluster.ok(&["user", "create", "demo", "--groups", "dev"]),
    );
    let view = kubectl_view(&demo, None);
    assert!(view.contains("current-context: demo@k0x"), "{view}");
    let subject = client_cert_text(&demo, "-subject -issuer");
    assert!(subject.contains("subject=O = dev, CN = demo"), "{subject}");
    assert!(subject.contains("issuer=CN = kubernetes-ca"), "{subject}");
    let server = kubectl_view(&demo, Some("{.clusters[0].cluster.server}"));
    assert!(
        server.starts_with("https://") && server.ends_with(":6443"),
        "{server}"
    );

    let both = cluster.save(
        "both.conf",
        &cluster.ok(&[
            "user",
            "create",
            "demo",
            "--groups",
            "dev,ops",
            "--server",
            "https://api.example.com:443",
        ]),
    );
    let subject = client_cert_text(&both, "-subject");
    assert!(
        subject.contains("subject=O = dev, O = ops, CN = demo"),
        "{subject}"
    );
    let server = kubectl_view(&both, Some("{.clusters[0].cluster.server}"));
    assert_eq!(server, "https://api.example.com:443");

    let short = cluster.save(
        "short.conf",
        &cluster.ok(&["user", "create", "ci", "--expiry", "30d"]),
    );
    let dates = client_cert_text(&short, "-subject -checkend 2505600");
    assert!(
        dates.contains("will not expire"),
        "valid for 29 days: {dates}"
    );
    let out = Command::new("sh")
        .args(["-c", "kubectl config view --raw --kubeconfig \"$1\" -o jsonpath='{.users[0].user.client-certificate-data}' | base64 -d | openssl x509 -noout -checkend 2678400", "sh"])
        .arg(&short)
        .output()
        .unwrap();
    assert!(!out.status.success(), "expires within 31 days");
}

#[test]
fn user_create_reads_the_api_address_and_key_type_from_the_config() {
    if !tools("user_create_reads_the_config") {
        return;
    }
    let cluster = Cluster::new();
    cluster.save(
        "k0x.yaml",
        "apiVersion: k0x.io/v1beta1\nkind: ClusterConfig\nmetadata:\n  name: lab\nspec:\n  api:\n    \
         address: 192.0.2.5\n    port: 7443\n  pki:\n    keyType: rsa-2048\n",
    );
    cluster.ok(&["pki", "init"]);
    let conf = cluster.save("demo.conf", &cluster.ok(&["user", "create", "demo"]));
    let server = kubectl_view(&conf, Some("{.clusters[0].cluster.server}"));
    assert_eq!(server, "https://192.0.2.5:7443");
    assert_eq!(kubectl_view(&conf, Some("{.current-context}")), "demo@lab");
    let text = client_cert_text(&conf, "-text");
    assert!(
        text.contains("rsaEncryption") && text.contains("(2048 bit)"),
        "{text}"
    );

    cluster.save(
        "k0x.yaml",
        "apiVersion: k0x.io/v1beta1\nkind: ClusterConfig\nspec:\n  bogus: 1\n",
    );
    let err = cluster.fails(&["user", "create", "demo"]);
    assert!(
        err.contains("k0x.yaml:4:3: spec.bogus: unknown field"),
        "{err}"
    );
}

#[test]
fn output_files_are_private_and_never_clobbered() {
    let cluster = Cluster::new();
    cluster.ok(&["pki", "init"]);
    let out = cluster.dir.join("demo.conf");
    let out_arg = out.to_str().unwrap();
    cluster.ok(&[
        "user", "create", "demo", "--groups", "dev", "--output", out_arg,
    ]);
    assert_eq!(
        fs::metadata(&out).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let first = fs::read(&out).unwrap();

    let err = cluster.fails(&["user", "create", "demo", "--output", out_arg]);
    assert!(
        err.contains("already exists") && err.contains("--force"),
        "{err}"
    );
    assert_eq!(fs::read(&out).unwrap(), first);

    fs::set_permissions(&out, fs::Permissions::from_mode(0o644)).unwrap();
    cluster.ok(&["user", "create", "demo", "--output", out_arg, "--force"]);
    assert_ne!(fs::read(&out).unwrap(), first);
    assert_eq!(
        fs::metadata(&out).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let dir = cluster.dir.join("configs");
    fs::create_dir(&dir).unwrap();
    let dir_arg = dir.to_str().unwrap();
    for force in [&[][..], &["--force"][..]] {
        let args = [&["user", "create", "demo", "--output", dir_arg][..], force].concat();
        let err = cluster.fails(&args);
        assert!(
            err.contains("is a directory: name a file") && err.contains("configs/demo.conf"),
            "{args:?}: {err}"
        );
    }
    assert_eq!(fs::read_dir(&dir).unwrap().count(), 0);
    let leftovers: Vec<_> = fs::read_dir(&cluster.dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn bad_names_groups_and_durations_are_one_line_errors() {
    let cluster = Cluster::new();
    cluster.ok(&["pki", "init"]);
    for (args, expect) in [
        (
            &["user", "create", "a b"][..],
            "user name \"a b\" is invalid",
        ),
        (&["user", "create", "system:kube-proxy"][..], "reserved"),
        (
            &["user", "create", "demo", "--groups", "dev,o ps"][..],
            "group \"o ps\" is invalid",
        ),
        (
            &["user", "create", "demo", "--expiry", "1y"][..],
            "--expiry: duration \"1y\"",
        ),
        (
            &["user", "create", "demo", "--expiry", "0h"][..],
            "--expiry: duration \"0h\" is zero",
        ),
        (
            &["user", "create", "demo", "--expiry", "87600h"][..],
            "CA's own expiry",
        ),
        (
            &["user", "create", "demo", "--server", "http://x:6443"][..],
            "https:// URL",
        ),
        (
            &["user", "create", "demo", "--server", "https://"][..],
            "--server \"https://\" names no host",
        ),
        (
            &["user", "create", "demo", "--server", "https://a b:6443"][..],
            "--server \"https://a b:6443\" contains a space",
        ),
        (
            &["user", "create", "demo", "--server", "https://x:0"][..],
            "a port that is not a number from 1 to 65535",
        ),
    ] {
        let err = cluster.fails(args);
        assert!(err.contains(expect), "{args:?}: {err}");
    }
}

#[test]
fn system_masters_is_warned_about() {
    let cluster = Cluster::new();
    cluster.ok(&["pki", "init"]);
    let out = cluster.k0x(&["user", "create", "root-ish", "--groups", "system:masters"]);
    assert!(out.status.success());
    assert!(
        stderr(&out).contains("system:masters grants cluster-admin"),
        "{}",
        stderr(&out)
    );
    let quiet = cluster.k0x(&["user", "create", "demo", "--groups", "dev"]);
    assert!(!stderr(&quiet).contains("Warning"), "{}", stderr(&quiet));
}

#[test]
fn kubeconfig_admin_prints_admin_conf() {
    if !tools("kubeconfig_admin_prints_admin_conf") {
        return;
    }
    let cluster = Cluster::new();
    let err = cluster.fails(&["kubeconfig", "admin"]);
    assert!(err.contains("admin.conf: not found"), "{err}");
    let report = cluster.ok(&["pki", "init"]);
    assert!(
        report.lines().all(|l| l.starts_with("created ")),
        "{report}"
    );
    let again = cluster.ok(&["pki", "init"]);
    assert!(again.lines().all(|l| l.starts_with("kept ")), "{again}");

    let text = cluster.ok(&["kubeconfig", "admin"]);
    assert_eq!(
        text.as_bytes(),
        fs::read(cluster.dir.join("data/pki/admin.conf")).unwrap()
    );
    let admin = cluster.save("admin.conf", &text);
    assert_eq!(
        kubectl_view(&admin, Some("{.clusters[0].cluster.server}")),
        "https://127.0.0.1:6443"
    );
    let subject = client_cert_text(&admin, "-subject -issuer");
    assert!(
        subject.contains("subject=O = system:masters, CN = kubernetes-admin"),
        "{subject}"
    );
    assert!(subject.contains("issuer=CN = kubernetes-ca"), "{subject}");
}

#[test]
fn impossible_addresses_never_reach_a_kubeconfig_or_a_certificate() {
    let cluster = Cluster::new();
    cluster.ok(&["pki", "init"]);
    cluster.save(
        "k0x.yaml",
        "apiVersion: k0x.io/v1beta1\nkind: ClusterConfig\nspec:\n  api:\n    address: 300.1.2.3\n",
    );
    let err = cluster.fails(&["user", "create", "demo"]);
    assert!(
        err.contains("k0x.yaml:5:14: spec.api.address: `300.1.2.3` is not an IPv4 address"),
        "{err}"
    );
    cluster.save(
        "k0x.yaml",
        "apiVersion: k0x.io/v1beta1\nkind: ClusterConfig\nspec:\n  api:\n    sans: [1.2.3.999]\n",
    );
    let err = cluster.fails(&["pki", "init"]);
    assert!(err.contains("spec.api.sans[0]: `1.2.3.999`"), "{err}");
}

#[test]
fn an_os_error_is_said_once_with_what_to_do() {
    let cluster = Cluster::new();
    let file = cluster.save("not-a-dir", "");
    let out = Command::new(env!("CARGO_BIN_EXE_k0x"))
        .arg("--data-dir")
        .arg(&file)
        .arg("--config")
        .arg(cluster.config())
        .args(["pki", "init"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = stderr(&out);
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert_eq!(err.matches("File exists").count(), 1, "{err}");
    assert!(err.contains("check --data-dir"), "{err}");
}
