//! The bad-input table: each row is an input class k0x refuses, the command it is given to, and
//! the one line a user then sees on stderr. `every_row_is_refused_with_its_line` runs each row
//! against the built binary in a fresh directory; `the_doc_carries_the_table` checks that
//! docs/bad-input.md shows the same table (`K0X_BLESS=1` rewrites it there).

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

struct Row {
    /// The input class, as the docs name it.
    input: &'static str,
    /// Files the row's directory holds first: a name ending in `/` is a directory; in a text,
    /// `{worker}` and `{controller}` stand for valid join tokens, `{worker-cut}` for half of
    /// one, `{worker-garbled}` for one with a character changed, `{bad-url}` for a worker token
    /// naming the controller `https://`.
    files: &'static [(&'static str, &'static str)],
    /// Whether `k0x pki init --data-dir d` runs first (commands that need a cluster CA).
    pki: bool,
    args: &'static [&'static str],
    /// The whole of stderr.
    line: &'static str,
}

const K0X_YAML: &str = "apiVersion: k0x.io/v1beta1\nkind: ClusterConfig\nspec:\n";

const ROWS: &[Row] = &[
    Row {
        input: "an impossible IPv4 address as `spec.api.address` (`300.1.2.3`, `999.0.0.1`, `1.2.3`)",
        files: &[("c.yaml", "spec:\n  api:\n    address: 300.1.2.3\n")],
        pki: false,
        args: &["pki", "init", "-c", "c.yaml", "--data-dir", "d"],
        line: "Error: c.yaml:5:14: spec.api.address: `300.1.2.3` is not an IPv4 address: it takes four numbers from 0 to 255 (write an IP address of this host such as 192.168.1.10, or leave it empty for the host's primary address)",
    },
    Row {
        input: "a DNS name as `spec.api.address` (k0x, like k0s, advertises an IP address)",
        files: &[("c.yaml", "spec:\n  api:\n    address: cp.example.com\n")],
        pki: false,
        args: &["pki", "init", "-c", "c.yaml", "--data-dir", "d"],
        line: "Error: c.yaml:5:14: spec.api.address: `cp.example.com` is a DNS name, but this field takes an IP address of this host (write the IP address here and put names in spec.api.sans, or leave it empty for the host's primary address)",
    },
    Row {
        input: "an impossible address in `spec.api.sans`",
        files: &[("c.yaml", "spec:\n  api:\n    sans: [1.2.3.999]\n")],
        pki: false,
        args: &["pki", "init", "-c", "c.yaml", "--data-dir", "d"],
        line: "Error: c.yaml:5:12: spec.api.sans[0]: `1.2.3.999` is not an IPv4 address: it takes four numbers from 0 to 255 (write an IP address such as 192.168.1.10 or a DNS name such as cp.example.com)",
    },
    Row {
        input: "a malformed name in `spec.api.sans`",
        files: &[("c.yaml", "spec:\n  api:\n    sans: [bad_name!]\n")],
        pki: false,
        args: &["pki", "init", "-c", "c.yaml", "--data-dir", "d"],
        line: "Error: c.yaml:5:12: spec.api.sans[0]: `bad_name!` is neither an IP address nor a DNS name (write an IP address such as 192.168.1.10 or a DNS name such as cp.example.com)",
    },
    Row {
        input: "anything but an IP address as `spec.storage.etcd.peerAddress`",
        files: &[(
            "c.yaml",
            "spec:\n  storage:\n    etcd:\n      peerAddress: 1.2.3.4.5",
        )],
        pki: false,
        args: &["pki", "init", "-c", "c.yaml", "--data-dir", "d"],
        line: "Error: c.yaml:6:20: spec.storage.etcd.peerAddress: `1.2.3.4.5` is not an IPv4 address: it takes four numbers from 0 to 255 (write an IP address of this host such as 192.168.1.10, or leave it empty for the host's primary address)",
    },
    Row {
        input: "port 0",
        files: &[("c.yaml", "spec:\n  api:\n    port: 0\n")],
        pki: false,
        args: &["pki", "init", "-c", "c.yaml", "--data-dir", "d"],
        line: "Error: c.yaml:5:11: spec.api.port: port 0 is not a usable port (use a port from 1 to 65535)",
    },
    Row {
        input: "a port out of range",
        files: &[("c.yaml", "spec:\n  api:\n    port: 70000\n")],
        pki: false,
        args: &["pki", "init", "-c", "c.yaml", "--data-dir", "d"],
        line: "Error: c.yaml:5:11: spec.api.port: invalid value: integer `70000` (write a port number from 1 to 65535)",
    },
    Row {
        input: "a port that is no number",
        files: &[("c.yaml", "spec:\n  api:\n    port: https\n")],
        pki: false,
        args: &["pki", "init", "-c", "c.yaml", "--data-dir", "d"],
        line: "Error: c.yaml:5:11: spec.api.port: invalid type: string \"https\" (write a port number from 1 to 65535)",
    },
    Row {
        input: "two settings on one port",
        files: &[("c.yaml", "spec:\n  api:\n    port: 9443\n")],
        pki: false,
        args: &["pki", "init", "-c", "c.yaml", "--data-dir", "d"],
        line: "Error: c.yaml:5:5: spec.api.k0xApiPort: port 9443 is already used by spec.api.port (give each of api.port, api.k0xApiPort, etcd clientPort and peerPort its own port)",
    },
    Row {
        input: "`k0xApiPort` and its k0s name `k0sApiPort` both set",
        files: &[(
            "c.yaml",
            "spec:\n  api:\n    k0xApiPort: 9443\n    k0sApiPort: 9444",
        )],
        pki: false,
        args: &["pki", "init", "-c", "c.yaml", "--data-dir", "d"],
        line: "Error: c.yaml:6:5: spec.api.k0sApiPort: `k0sApiPort` is another name for `k0xApiPort`, and both are set (keep only `k0xApiPort`)",
    },
    Row {
        input: "an unknown field",
        files: &[("c.yaml", "spec:\n  bogus: 1\n")],
        pki: false,
        args: &["pki", "init", "-c", "c.yaml", "--data-dir", "d"],
        line: "Error: c.yaml:4:3: spec.bogus: unknown field `bogus` (remove it or fix the spelling; expected one of `api`, `storage`, `network`, `controllerManager`, `scheduler`, `workerProfiles`, `images`, `pki`, `probes`, `host`)",
    },
    Row {
        input: "a restart threshold that would kill busy components",
        files: &[(
            "c.yaml",
            "spec:\n  probes:\n    restartUnhealthyAfterSeconds: 10",
        )],
        pki: false,
        args: &["pki", "init", "-c", "c.yaml", "--data-dir", "d"],
        line: "Error: c.yaml:5:35: spec.probes.restartUnhealthyAfterSeconds: 10 seconds would restart a component that is only busy on a slow machine (use 30 seconds or more, e.g. the default 300, or 0 to never restart)",
    },
    Row {
        input: "a pod CIDR that does not parse",
        files: &[("c.yaml", "spec:\n  network:\n    podCIDR: 10.244.0.0/33\n")],
        pki: false,
        args: &["pki", "init", "-c", "c.yaml", "--data-dir", "d"],
        line: "Error: c.yaml:5:14: spec.network.podCIDR: `10.244.0.0/33` is not a CIDR (write an address block such as 10.244.0.0/16)",
    },
    Row {
        input: "YAML syntax error",
        files: &[("c.yaml", "spec:\n  api: [\n")],
        pki: false,
        args: &["pki", "init", "-c", "c.yaml", "--data-dir", "d"],
        line: "Error: c.yaml:4:8: invalid YAML: unclosed bracket '[' (fix the YAML syntax at this position)",
    },
    Row {
        input: "an alias bomb (or a file of 300 000 entries)",
        files: &[(
            "c.yaml",
            "a: &a [x,x,x,x,x,x,x,x,x,x]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b,*b]\nd: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c,*c]\ne: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d,*d]\nf: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e,*e]",
        )],
        pki: false,
        args: &["pki", "init", "-c", "c.yaml", "--data-dir", "d"],
        line: "Error: c.yaml: the file is too large for a configuration: it holds or expands to more than 250000 values (a k0x configuration holds a few hundred values; check that --config names the right file and that no anchor is repeated into a huge tree)",
    },
    Row {
        input: "a `--config` file that does not exist",
        files: &[],
        pki: false,
        args: &["pki", "init", "-c", "none.yaml", "--data-dir", "d"],
        line: "Error: none.yaml: cannot read the configuration: No such file or directory (create it with `k0x config create > none.yaml`, or point --config at another file)",
    },
    Row {
        input: "a `--data-dir` that is a file",
        files: &[("afile", "")],
        pki: false,
        args: &["pki", "init", "--data-dir", "afile"],
        line: "Error: cannot create the directory afile: File exists (os error 17) (a file stands where a directory belongs: check --data-dir)",
    },
    Row {
        input: "a join token cut short",
        files: &[("t", "{worker-cut}\n")],
        pki: false,
        args: &["install", "worker", "--token-file", "t", "--root", "root"],
        line: "Error: --token-file t: the join token is truncated: copy the whole token printed by `k0x token create` (a token file avoids this)",
    },
    Row {
        input: "text after the token",
        files: &[("t", "{worker} # the worker token\n")],
        pki: false,
        args: &["install", "worker", "--token-file", "t", "--root", "root"],
        line: "Error: --token-file t: the join token has extra characters after its end: copy exactly the token printed by `k0x token create`, nothing after it",
    },
    Row {
        input: "two tokens in one file",
        files: &[("t", "{worker}\n{worker}\n")],
        pki: false,
        args: &["install", "worker", "--token-file", "t", "--root", "root"],
        line: "Error: --token-file t: 2 join tokens were given where one belongs: keep only the token this node should use",
    },
    Row {
        input: "a character of the token changed",
        files: &[("t", "{worker-garbled}\n")],
        pki: false,
        args: &["install", "worker", "--token-file", "t", "--root", "root"],
        line: "Error: --token-file t: the join token is garbled ('!' is not a base64url character): copy it again from `k0x token create`",
    },
    Row {
        input: "not a k0x token",
        files: &[("t", "K10abc::server:xyz\n")],
        pki: false,
        args: &["install", "worker", "--token-file", "t", "--root", "root"],
        line: "Error: --token-file t: the join token does not start with \"k0x1.\": it is not a k0x join token; create one with `k0x token create`",
    },
    Row {
        input: "an empty token file",
        files: &[("t", "\n")],
        pki: false,
        args: &["install", "worker", "--token-file", "t", "--root", "root"],
        line: "Error: --token-file t: the join token is empty: pass the token printed by `k0x token create`",
    },
    Row {
        input: "a token naming a controller URL without a host",
        files: &[("t", "{bad-url}\n")],
        pki: false,
        args: &["install", "worker", "--token-file", "t", "--root", "root"],
        line: "Error: --token-file t: the join token is invalid: controller URL \"https://\" names no host; create a new one with `k0x token create`",
    },
    Row {
        input: "a controller token for a worker",
        files: &[("t", "{controller}\n")],
        pki: false,
        args: &["install", "worker", "--token-file", "t", "--root", "root"],
        line: "Error: this is a controller token; `k0x install worker` needs a token from `k0x token create --role worker`; install a controller with `k0x install controller --token-file`",
    },
    Row {
        input: "a worker token for a controller",
        files: &[("t", "{worker}\n")],
        pki: false,
        args: &[
            "install",
            "controller",
            "--token-file",
            "t",
            "--root",
            "root",
        ],
        line: "Error: this is a worker token; `k0x install controller --token-file` takes a token from `k0x token create --role controller`; install a worker with `k0x install worker`",
    },
    Row {
        input: "a token file that cannot be read",
        files: &[],
        pki: false,
        args: &[
            "install",
            "worker",
            "--token-file",
            "missing",
            "--root",
            "root",
        ],
        line: "Error: --token-file missing: cannot read it (No such file or directory (os error 2)); save the output of `k0x token create` there, or point --token-file at that file",
    },
    Row {
        input: "an unknown component",
        files: &[],
        pki: false,
        args: &[
            "install",
            "controller",
            "--disable-components",
            "kubeproxy",
            "--root",
            "root",
        ],
        line: "Error: --disable-components: unknown component \"kubeproxy\"; use one of: etcd, kube-apiserver, kube-scheduler, kube-controller-manager, containerd, kubelet, kube-proxy, flannel, coredns, metrics-server",
    },
    Row {
        input: "an unknown component for `k0x server`",
        files: &[],
        pki: false,
        args: &[
            "server",
            "--disable-components",
            "kube-proxi",
            "--data-dir",
            "d",
            "--run-dir",
            "r",
        ],
        line: "Error: --disable-components: unknown component \"kube-proxi\"; use one of: etcd, kube-apiserver, kube-scheduler, kube-controller-manager, containerd, kubelet, kube-proxy, flannel, coredns, metrics-server",
    },
    Row {
        input: "a worker profile the configuration does not define, for `k0x worker`",
        files: &[(
            "c.yaml",
            "spec:\n  workerProfiles:\n  - name: small\n    values: {maxPods: 20}\n",
        )],
        pki: false,
        args: &[
            "worker",
            "--profile",
            "big",
            "-c",
            "c.yaml",
            "--data-dir",
            "d",
        ],
        line: "Error: --profile: worker profile \"big\" is not defined in spec.workerProfiles of the configuration; define it there or pick one of: small",
    },
    Row {
        input: "a worker profile for `k0x install controller` where none is defined",
        files: &[],
        pki: false,
        args: &[
            "install",
            "controller",
            "--enable-worker",
            "--profile",
            "big",
            "--root",
            "root",
        ],
        line: "Error: --profile: worker profile \"big\" is not defined in spec.workerProfiles of the configuration; define it there",
    },
    Row {
        input: "`--server` without a host",
        files: &[],
        pki: true,
        args: &[
            "user",
            "create",
            "demo",
            "--server",
            "https://",
            "--data-dir",
            "d",
        ],
        line: "Error: --server \"https://\" names no host; pass an https:// URL such as https://10.0.0.5:6443",
    },
    Row {
        input: "`--server` with a space",
        files: &[],
        pki: true,
        args: &[
            "user",
            "create",
            "demo",
            "--server",
            "https://a b:6443",
            "--data-dir",
            "d",
        ],
        line: "Error: --server \"https://a b:6443\" contains a space; pass an https:// URL such as https://10.0.0.5:6443",
    },
    Row {
        input: "`--server` that is not https",
        files: &[],
        pki: true,
        args: &[
            "user",
            "create",
            "demo",
            "--server",
            "http://10.0.0.5:6443",
            "--data-dir",
            "d",
        ],
        line: "Error: --server \"http://10.0.0.5:6443\" is not an https:// URL; pass an https:// URL such as https://10.0.0.5:6443",
    },
    Row {
        input: "`--server` with port 0",
        files: &[],
        pki: true,
        args: &[
            "user",
            "create",
            "demo",
            "--server",
            "https://10.0.0.5:0",
            "--data-dir",
            "d",
        ],
        line: "Error: --server \"https://10.0.0.5:0\" has a port that is not a number from 1 to 65535; pass an https:// URL such as https://10.0.0.5:6443",
    },
    Row {
        input: "`--server` with an impossible address",
        files: &[],
        pki: true,
        args: &[
            "user",
            "create",
            "demo",
            "--server",
            "https://300.1.2.3:6443",
            "--data-dir",
            "d",
        ],
        line: "Error: --server \"https://300.1.2.3:6443\" has a host that is neither an IP address nor a DNS name; pass an https:// URL such as https://10.0.0.5:6443",
    },
    Row {
        input: "`--server` with a query string",
        files: &[],
        pki: true,
        args: &[
            "user",
            "create",
            "demo",
            "--server",
            "https://10.0.0.5:6443?watch=1",
            "--data-dir",
            "d",
        ],
        line: "Error: --server \"https://10.0.0.5:6443?watch=1\" has a query or fragment: clients append API paths to it; pass an https:// URL such as https://10.0.0.5:6443",
    },
    Row {
        input: "`--output` naming a directory",
        files: &[("configs/", "")],
        pki: true,
        args: &[
            "user",
            "create",
            "demo",
            "--output",
            "configs",
            "--data-dir",
            "d",
        ],
        line: "Error: --output configs is a directory: name a file, e.g. configs/demo.conf",
    },
    Row {
        input: "`--output` naming a directory, with `--force`",
        files: &[("configs/", "")],
        pki: true,
        args: &[
            "user",
            "create",
            "demo",
            "--output",
            "configs",
            "--force",
            "--data-dir",
            "d",
        ],
        line: "Error: --output configs is a directory: name a file, e.g. configs/demo.conf",
    },
    Row {
        input: "`--output` naming an existing file",
        files: &[("demo.conf", "x")],
        pki: true,
        args: &[
            "user",
            "create",
            "demo",
            "--output",
            "demo.conf",
            "--data-dir",
            "d",
        ],
        line: "Error: --output demo.conf already exists; pass --force to replace it",
    },
    Row {
        input: "a zero certificate lifetime",
        files: &[],
        pki: true,
        args: &[
            "user",
            "create",
            "demo",
            "--expiry",
            "0h",
            "--data-dir",
            "d",
        ],
        line: "Error: --expiry: duration \"0h\" is zero: a certificate must be valid for some time, e.g. 8760h or 30d",
    },
    Row {
        input: "a lifetime that is no duration",
        files: &[],
        pki: true,
        args: &[
            "user",
            "create",
            "demo",
            "--expiry",
            "1y",
            "--data-dir",
            "d",
        ],
        line: "Error: --expiry: duration \"1y\" is invalid: write a number with a unit d, h, m or s, e.g. 8760h, 30d, 90m or 1d12h",
    },
    Row {
        input: "a user name Kubernetes would not accept",
        files: &[],
        pki: false,
        args: &["user", "create", "a b", "--data-dir", "d"],
        line: "Error: user name \"a b\" is invalid: use letters, digits and . _ - @ : (starting with a letter or digit, at most 253 characters)",
    },
    Row {
        input: "a user without a cluster CA",
        files: &[],
        pki: false,
        args: &["user", "create", "demo", "--data-dir", "d"],
        line: "Error: d/pki/ca.crt: not found: the cluster PKI has not been initialised in this data dir; start the controller first (`k0x server`), or run `k0x pki init`; pass --data-dir if the cluster uses another one",
    },
    Row {
        input: "`status` while no server runs",
        files: &[],
        pki: false,
        args: &["status", "--run-dir", "r"],
        line: "Error: k0x is not running here: cannot connect to r/k0x.sock (No such file or directory (os error 2)); is `k0x server` running (start it, or `k0x start`), and is --run-dir the same as the server's?",
    },
    Row {
        input: "`token create` with a zero lifetime",
        files: &[],
        pki: false,
        args: &[
            "token",
            "create",
            "--role",
            "worker",
            "--expiry",
            "0h",
            "--run-dir",
            "r",
        ],
        line: "Error: --expiry \"0h\" is zero: write 0 for a token that never expires (not recommended), or a validity such as 24h",
    },
    Row {
        input: "`token create` with a lifetime that is no duration",
        files: &[],
        pki: false,
        args: &[
            "token",
            "create",
            "--role",
            "worker",
            "--expiry",
            "soon",
            "--run-dir",
            "r",
        ],
        line: "Error: --expiry \"soon\" is not a duration: write a number with a unit d, h, m or s, e.g. 8760h, 30d, 90m or 1d12h, or 0 for never",
    },
];

fn token(role: k0x_join::TokenRole, url: &str) -> String {
    k0x_join::Token::generate(role, vec![url.into()], "ab".repeat(32)).encode()
}

fn expand(text: &str) -> String {
    let worker = token(k0x_join::TokenRole::Worker, "https://10.0.0.1:9443");
    let (head, tail) = worker.split_at(worker.len() / 2);
    let text = if text.starts_with("spec:") {
        format!("{K0X_YAML}{}", text.strip_prefix("spec:\n").unwrap_or(text))
    } else {
        text.to_owned()
    };
    text.replace("{worker-cut}", head)
        .replace("{worker-garbled}", &format!("{head}!{}", &tail[1..]))
        .replace("{bad-url}", &token(k0x_join::TokenRole::Worker, "https://"))
        .replace(
            "{controller}",
            &token(k0x_join::TokenRole::Controller, "https://10.0.0.1:9443"),
        )
        .replace("{worker}", &worker)
}

fn k0x(dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_k0x"))
        .args(args)
        .current_dir(dir)
        .env_remove("K0X_CONFIG")
        .env_remove("K0X_DATA_DIR")
        .env_remove("K0X_RUN_DIR")
        .output()
        .expect("k0x runs")
}

/// What stderr holds when `row` is run in a fresh directory.
fn refusal(row: &Row) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in row.files {
        let path = dir.path().join(name);
        if name.ends_with('/') {
            std::fs::create_dir_all(&path).unwrap();
            continue;
        }
        std::fs::write(&path, expand(text)).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    if row.pki {
        let init = k0x(dir.path(), &["pki", "init", "--data-dir", "d"]);
        assert!(init.status.success(), "pki init failed");
    }
    let out = k0x(dir.path(), row.args);
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).trim_end().to_owned(),
    )
}

#[test]
fn every_row_is_refused_with_its_line() {
    let mut wrong = Vec::new();
    for row in ROWS {
        let (accepted, stderr) = refusal(row);
        if accepted || stderr != row.line {
            wrong.push(format!(
                "{} (k0x {}): accepted={accepted}\n  expected: {}\n  got:      {stderr}",
                row.input,
                command(row),
                row.line
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

const BEGIN: &str = "<!-- the table tests/bad_input.rs holds: K0X_BLESS=1 cargo test --test bad_input rewrites it -->\n";
const END: &str = "<!-- end of the table -->\n";

/// The row's command line as a shell reads it.
fn command(row: &Row) -> String {
    let quoted: Vec<String> = row
        .args
        .iter()
        .map(|arg| match arg.contains(' ') {
            true => format!("'{arg}'"),
            false => (*arg).to_owned(),
        })
        .collect();
    quoted.join(" ")
}

fn code(text: &str) -> String {
    format!("`` {} ``", text.replace('|', "\\|"))
}

fn table() -> String {
    let mut out = String::from("| Input | Command | Line |\n| --- | --- | --- |\n");
    for row in ROWS {
        out.push_str(&format!(
            "| {} | {} | {} |\n",
            row.input.replace('|', "\\|"),
            code(&format!("k0x {}", command(row))),
            code(row.line)
        ));
    }
    out
}

#[test]
fn the_doc_carries_the_table() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/bad-input.md");
    let doc = std::fs::read_to_string(&path).unwrap();
    let start = doc
        .find(BEGIN)
        .expect("docs/bad-input.md has the table's begin marker")
        + BEGIN.len();
    let end = start
        + doc[start..]
            .find(END)
            .expect("docs/bad-input.md has the table's end marker");
    let expected = table();
    if std::env::var_os("K0X_BLESS").is_some() {
        std::fs::write(&path, format!("{}{expected}{}", &doc[..start], &doc[end..])).unwrap();
    } else {
        assert_eq!(
            doc[start..end],
            expected,
            "docs/bad-input.md differs from tests/bad_input.rs; rerun with K0X_BLESS=1"
        );
    }
}
