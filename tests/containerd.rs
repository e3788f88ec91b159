//! containerd as `k0x server --enable-worker` runs it, driven through k0x's own socket
//! (`<run-dir>/containerd/containerd.sock`): a busybox container (image built here from
//! busybox-static and imported, no registry) runs with the staged runc on the pod network
//! k0x's CNI template describes, run through the staged bridge plugins. The container gets an
//! address in the pod CIDR and prints to its log. Guards remove the container, the network
//! namespace, the bridge, the plugins' iptables rules and every mount, also on failure.

mod common;

use std::process::{Command, Output, Stdio};

use common::{IMAGE, Node, stderr};
use k0x_testkit::cni::{PodNetwork, random_suffix};
use nix::sys::signal::Signal;
use serde_json::{Value, json};

/// Removes the test container (task first) through k0x's containerd.
struct ContainerGuard<'a> {
    node: &'a Node,
    id: String,
}

impl Drop for ContainerGuard<'_> {
    fn drop(&mut self) {
        let quiet = |mut cmd: Command| {
            let _ = cmd.stdout(Stdio::null()).stderr(Stdio::null()).status();
        };
        let mut task = self.node.ctr();
        task.args(["tasks", "rm", "--force", &self.id]);
        quiet(task);
        let mut container = self.node.ctr();
        container.args(["containers", "rm", &self.id]);
        quiet(container);
    }
}

/// k0x's bridge template with this test's bridge name, a /24 of the pod CIDR and a private
/// IPAM directory (the template's own values are checked first).
fn test_conflist(node: &Node, bridge: &str, subnet: &str) -> Value {
    let template = k0x_node::paths::cni_bridge_template(&node.layout());
    let text = std::fs::read_to_string(&template)
        .unwrap_or_else(|e| panic!("k0x wrote no CNI template at {}: {e}", template.display()));
    assert!(text.contains(k0x_node::cni::POD_CIDR_PLACEHOLDER), "{text}");
    let rendered = text.replace(k0x_node::cni::POD_CIDR_PLACEHOLDER, subnet);
    let mut conflist: Value = serde_json::from_str(&rendered).unwrap();
    assert_eq!(conflist["plugins"][0]["type"], "bridge");
    assert_eq!(conflist["plugins"][0]["bridge"], k0x_node::cni::BRIDGE_NAME);
    conflist["plugins"][0]["bridge"] = json!(bridge);
    conflist["plugins"][0]["ipam"]["dataDir"] = json!(node.root.join("ipam"));
    conflist
}

fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn containerd_behind_k0x_runs_busybox_on_the_pod_network() {
    let test = "containerd_behind_k0x_runs_busybox_on_the_pod_network";
    let Some(mut node) = Node::new(test) else {
        return;
    };
    let tools = ["ctr", "busybox", "ip", "iptables-save"];
    let Some(tools) = k0x_testkit::require_binaries(test, &tools) else {
        return;
    };
    // The bridge network's template is what this test renders for itself.
    node.edit_config("provider: flannel\n", "provider: bridge\n");
    node.start(&["--enable-worker"]);
    node.wait_ready(&["containerd"]);

    let plugins = node.ctr().args(["plugins", "ls"]).output().unwrap();
    let cri = text(&plugins)
        .lines()
        .find(|l| l.contains("io.containerd.grpc.v1") && l.contains(" cri "))
        .map(str::to_owned);
    assert!(
        cri.as_deref().is_some_and(|l| l.trim_end().ends_with("ok")),
        "the CRI plugin did not load k0x's configuration: {}",
        text(&plugins)
    );

    node.import_busybox(&tools[1]);

    let suffix = random_suffix();
    let bridge = format!("k0xs{}", &suffix[..4]);
    let subnet = format!(
        "10.244.{}.0/24",
        100 + u16::from_str_radix(&suffix[4..], 16).unwrap() % 150
    );
    let conflist = test_conflist(&node, &bridge, &subnet);
    let mut network = PodNetwork::create(&node.bin(), conflist, &bridge);
    let container_id = network.container_id().to_owned();
    let result = network.attach().unwrap();
    let address = result["ips"][0]["address"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let ip: std::net::Ipv4Addr = address.split('/').next().unwrap().parse().unwrap();
    assert_eq!(
        ip.octets()[..2],
        [10, 244],
        "{address} is outside the pod CIDR 10.244.0.0/16"
    );

    let container = ContainerGuard {
        node: &node,
        id: format!("k0x-test-{suffix}"),
    };
    let log = node.root.join("container.log");
    let run = node
        .ctr()
        .args(["run", "--rm", "--runc-binary"])
        .arg(node.bin().join("runc"))
        .arg("--with-ns")
        .arg(format!("network:{}", network.netns_path()))
        .arg(format!("--log-uri=file://{}", log.display()))
        .args([IMAGE, &container.id])
        .args([
            "/bin/sh",
            "-c",
            "ip -4 -o addr show dev eth0; echo hello from k0x",
        ])
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "ctr run: {}\nk0x log:\n{}",
        stderr(&run),
        node.log()
    );
    let output = std::fs::read_to_string(&log).unwrap();
    assert!(output.contains("hello from k0x"), "container log: {output}");
    assert!(
        output.contains(&format!("inet {address}")),
        "container log: {output}"
    );

    drop(container);
    drop(network);
    let rules = Command::new(&tools[3]).output().unwrap();
    assert!(
        !text(&rules).contains(&container_id),
        "CNI iptables rules left behind:\n{}",
        text(&rules)
    );
    let link = Command::new("ip")
        .args(["link", "show", &bridge])
        .output()
        .unwrap();
    assert!(!link.status.success(), "bridge {bridge} left behind");

    let exit = node.stop(Signal::SIGTERM);
    assert!(exit.success(), "k0x exited {exit}:\n{}", node.log());
    assert_eq!(
        node.marked_processes(),
        Vec::<u32>::new(),
        "shims or containerd left"
    );
}
