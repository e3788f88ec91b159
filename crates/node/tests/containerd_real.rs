//! The real containerd, run with the configuration and socket k0x generates, runs a busybox
//! container with runc on the bridge network k0x generates: the container gets an address from
//! the pod CIDR and prints to its log. The image is built here from busybox-static (no registry).
//! Everything the test creates (network namespace, bridge, iptables rules, containerd state,
//! mounts, processes) is removed by guards, also when an assertion fails.

mod support;

use std::fs;
use std::path::Path;
use std::process::Command;

use k0x_node::paths;
use k0x_testkit::cni::{PodNetwork, random_suffix};
use serde_json::{Value, json};
use support::containerd::{ContainerdUnderTest, containerd_spec};

const NAMESPACE: &str = "k0x-test";
const IMAGE: &str = "k0x.test/busybox:latest";

/// The generated bridge template with this test's bridge name, subnet and IPAM directory.
fn test_conflist(template: &Path, bridge: &str, subnet: &str, ipam: &Path) -> Value {
    let text = fs::read_to_string(template).unwrap();
    assert!(text.contains(k0x_node::cni::POD_CIDR_PLACEHOLDER));
    let rendered = text.replace(k0x_node::cni::POD_CIDR_PLACEHOLDER, subnet);
    let mut conflist: Value = serde_json::from_str(&rendered).unwrap();
    conflist["plugins"][0]["bridge"] = json!(bridge);
    conflist["plugins"][0]["ipam"]["dataDir"] = json!(ipam);
    conflist
}

#[test]
fn containerd_runs_busybox_on_the_bridge_network() {
    let test = "containerd_runs_busybox_on_the_bridge_network";
    if !k0x_testkit::require_root(test) {
        return;
    }
    let required = [
        "containerd",
        "containerd-shim-runc-v2",
        "runc",
        "ctr",
        "busybox",
        "ip",
        "iptables",
        "host-local",
    ];
    let Some(found) = k0x_testkit::require_binaries(test, &required) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let bin = support::bin_dir(tmp.path(), &found[..3]);
    let mut ctx = support::context(tmp.path(), "node-a", "127.0.0.1", &bin);
    // One node, no flannel: the bridge network as containerd renders it from its template.
    ctx.config.spec.network.provider = k0x_config::schema::NetworkProvider::Bridge;
    // The CNI plugin directory (where host-local is; iproute2 also has a `bridge`).
    let cni_bin = found[7].parent().unwrap().to_path_buf();
    for plugin in ["bridge", "loopback", "portmap"] {
        assert!(
            cni_bin.join(plugin).is_file(),
            "{plugin} missing in {}",
            cni_bin.display()
        );
    }
    ctx.node.cni_bin_dir = cni_bin.clone();
    let suffix = random_suffix();
    let containerd =
        ContainerdUnderTest::start(&ctx, tmp.path(), NAMESPACE, format!("k0x-test-{suffix}"));
    assert_eq!(containerd.socket, ctx.run.containerd_socket());

    // The generated CRI section loaded (a config error would leave the plugin in error).
    let plugins = support::run(containerd.ctr().args(["plugins", "ls"]));
    let plugins = String::from_utf8_lossy(&plugins.stdout);
    let cri = plugins
        .lines()
        .find(|l| l.contains("io.containerd.grpc.v1") && l.contains(" cri "));
    assert!(
        cri.is_some_and(|l| l.trim_end().ends_with("ok")),
        "CRI plugin not ok:\n{plugins}"
    );

    let image = tmp.path().join("busybox.tar");
    k0x_testkit::image::busybox_image(&found[4], IMAGE, &image).unwrap();
    let import = support::run(containerd.ctr().args(["images", "import"]).arg(&image));
    assert!(
        import.status.success(),
        "import: {}",
        String::from_utf8_lossy(&import.stderr)
    );

    let bridge = format!("k0xt{}", &suffix[..4]);
    let octet = 100 + rand::random::<u8>() % 150;
    let subnet = format!("10.244.{octet}.0/24");
    let template = paths::cni_bridge_template(&ctx.data);
    let conflist = test_conflist(&template, &bridge, &subnet, &tmp.path().join("ipam"));
    let mut network = PodNetwork::create(&cni_bin, conflist, &bridge);
    let result = network.attach().unwrap();
    let address = result["ips"][0]["address"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let pod_cidr: ipnet::Ipv4Net = "10.244.0.0/16".parse().unwrap();
    let ip: std::net::Ipv4Addr = address.split('/').next().unwrap().parse().unwrap();
    assert!(pod_cidr.contains(&ip), "{address} is outside the pod CIDR");

    let container_log = tmp.path().join("container.log");
    let run = support::run(
        containerd
            .ctr()
            .args(["run", "--rm", "--runc-binary"])
            .arg(ctx.node.binary("runc"))
            .arg("--with-ns")
            .arg(format!("network:{}", network.netns_path()))
            .arg(format!("--log-uri=file://{}", container_log.display()))
            .args([IMAGE, &containerd.container])
            .args([
                "/bin/sh",
                "-c",
                "ip -4 -o addr show dev eth0; echo hello from k0x",
            ]),
    );
    assert!(
        run.status.success(),
        "ctr run: {}\ncontainerd log:\n{}",
        String::from_utf8_lossy(&run.stderr),
        containerd.log()
    );
    let output = fs::read_to_string(&container_log).unwrap();
    assert!(output.contains("hello from k0x"), "container log: {output}");
    assert!(
        output.contains(&format!("inet {address}")),
        "container log: {output}"
    );
    drop(network);
    drop(containerd);
}

/// The real containerd parses the generated file with a user drop-in merged in by k0x, keeping
/// k0x's socket, runc and cgroup settings (`containerd config dump`; no daemon needed).
#[test]
fn containerd_merges_generated_config_with_drop_ins() {
    let test = "containerd_merges_generated_config_with_drop_ins";
    let Some(found) = k0x_testkit::require_binaries(test, &["containerd"]) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let bin = support::bin_dir(tmp.path(), &found);
    let ctx = support::context(tmp.path(), "node-a", "127.0.0.1", &bin);
    let drop_in = paths::containerd_imports(&ctx.data).join("50-user.toml");
    fs::create_dir_all(drop_in.parent().unwrap()).unwrap();
    fs::write(
        &drop_in,
        "version = 3\n[plugins.'io.containerd.cri.v1.images']\n  max_concurrent_downloads = 7\n",
    )
    .unwrap();
    let spec = containerd_spec(&ctx);
    let dump = support::run(
        Command::new(&spec.path)
            .args(&spec.args)
            .args(["config", "dump"]),
    );
    let text = String::from_utf8_lossy(&dump.stdout);
    assert!(
        dump.status.success(),
        "config dump: {}",
        String::from_utf8_lossy(&dump.stderr)
    );
    assert!(
        text.contains("max_concurrent_downloads = 7"),
        "drop-in not merged:\n{text}"
    );
    // containerd 2.x dumps TOML literal strings.
    let socket = format!("address = '{}'", ctx.run.containerd_socket().display());
    assert!(text.contains(&socket), "socket not k0x-owned:\n{text}");
    let runc = format!("BinaryName = '{}'", ctx.node.binary("runc").display());
    assert!(text.contains(&runc), "runc not from the bin dir:\n{text}");
    let systemd = format!(
        "SystemdCgroup = {}",
        ctx.node.cgroup_driver.systemd_cgroup()
    );
    assert!(
        text.contains(&systemd),
        "cgroup driver not applied:\n{text}"
    );
    // State that would otherwise land in host-wide paths stays under k0x's run dir.
    let runc_root = format!("Root = '{}'", paths::runc_root(&ctx.run).display());
    assert!(
        text.contains(&runc_root),
        "runc state outside the run dir:\n{text}"
    );
    assert!(
        text.contains("netns_mounts_under_state_dir = true"),
        "pod network namespaces outside the run dir:\n{text}"
    );
}
