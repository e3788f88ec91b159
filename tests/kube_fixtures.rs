//! The control plane's start order and flags, with the kube-* binaries played by a fixture
//! (tests/fixtures/fake-kube-component.sh: records its start time and argv, then serves HTTPS
//! with the serving certificate it was given so k0x's readiness probes pass). The real etcd
//! runs. Observed: etcd is ready before kube-apiserver starts, kube-apiserver is ready before
//! kube-scheduler and kube-controller-manager start, and every fixture got flags that satisfy
//! the pinned upstream flag contract and point at files that exist.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use common::{Node, component, log_events};
use k0x_node::contract::FlagContract;
use nix::sys::signal::Signal;

const FIXTURED: &[&str] = &[
    "kube-apiserver",
    "kube-scheduler",
    "kube-controller-manager",
];

/// What one fixture recorded: its start time and its argv.
struct Record {
    started: String,
    args: Vec<String>,
}

impl Record {
    fn read(dir: &Path, name: &str) -> Self {
        let path = dir.join(format!("{name}.argv"));
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{name} fixture never ran ({}): {e}", path.display()));
        let mut lines = text.lines();
        let started = lines
            .next()
            .and_then(|l| l.strip_prefix("started="))
            .expect("start time first")
            .to_owned();
        Self {
            started,
            args: lines.map(str::to_owned).collect(),
        }
    }

    fn flags(&self) -> BTreeMap<&str, &str> {
        self.args
            .iter()
            .filter_map(|a| a.strip_prefix("--")?.split_once('='))
            .collect()
    }
}

/// The time of the log event saying `component` became ready (exactly once).
fn ready_at(log: &str, component: &str) -> String {
    let events = log_events(log, component, "ready");
    assert_eq!(events.len(), 1, "{component} ready once expected:\n{log}");
    events[0].0.clone()
}

/// The argv the node crate generates for each fixtured component from the same config, data
/// dir and host facts.
fn expected_args(node: &Node) -> BTreeMap<&'static str, Vec<String>> {
    let config = k0x_config::ClusterConfig::load(&node.config).unwrap();
    let data = node.layout();
    let facts = k0x_node::NodeFacts::detect(&config, &data).unwrap();
    let ctx = k0x_node::NodeContext::new(config, data, k0x_config::RunDir::new(&node.run), facts);
    k0x_node::controller_components()
        .iter()
        .filter(|c| FIXTURED.contains(&c.name()))
        .map(|c| (c.name(), c.spec(&ctx).unwrap().args))
        .collect()
}

#[test]
fn control_plane_starts_in_order_with_the_generated_flags() {
    let test = "control_plane_starts_in_order_with_the_generated_flags";
    let Some(mut node) = Node::new(test) else {
        return;
    };
    if k0x_testkit::require_binaries(test, &["openssl"]).is_none() {
        return;
    }
    let fixture =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/fake-kube-component.sh");
    for name in FIXTURED {
        std::fs::copy(&fixture, node.bin().join(name)).unwrap();
    }
    let (scheduler_port, kcm_port) = (common::free_port(), common::free_port());
    node.edit_config(
        "  scheduler:\n    extraArgs: {}\n",
        &format!("  scheduler:\n    extraArgs:\n      secure-port: \"{scheduler_port}\"\n"),
    );
    node.edit_config(
        "  controllerManager:\n    extraArgs: {}\n",
        &format!("  controllerManager:\n    extraArgs:\n      secure-port: \"{kcm_port}\"\n"),
    );
    let records: PathBuf = node.root.join("records");
    std::fs::create_dir_all(&records).unwrap();
    node.start_with_env(&[], &[("K0X_FIXTURE_DIR", records.as_os_str())]);
    let status = node.wait_ready(&[
        "etcd",
        "kube-apiserver",
        "kube-scheduler",
        "kube-controller-manager",
    ]);
    assert_eq!(status["role"], "controller");
    assert!(
        status["components"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["name"] != "kubelet" && c["name"] != "containerd"),
        "a controller without --enable-worker runs no worker components: {status:#}"
    );

    let log = node.log();
    let apiserver = Record::read(&records, "kube-apiserver");
    let scheduler = Record::read(&records, "kube-scheduler");
    let kcm = Record::read(&records, "kube-controller-manager");
    let etcd_ready = ready_at(&log, "etcd");
    let apiserver_ready = ready_at(&log, "kube-apiserver");
    assert!(
        etcd_ready <= apiserver.started,
        "kube-apiserver started at {} before etcd was ready at {etcd_ready}",
        apiserver.started
    );
    for (name, record) in [
        ("kube-scheduler", &scheduler),
        ("kube-controller-manager", &kcm),
    ] {
        assert!(
            apiserver_ready <= record.started,
            "{name} started at {} before kube-apiserver was ready at {apiserver_ready}",
            record.started
        );
    }

    let expected = expected_args(&node);
    let data = node.data.display().to_string();
    for (name, record) in [
        ("kube-apiserver", &apiserver),
        ("kube-scheduler", &scheduler),
        ("kube-controller-manager", &kcm),
    ] {
        assert_eq!(
            &record.args, &expected[name],
            "{name}: the fixture's argv differs from the generated spec"
        );
        let contract = FlagContract::for_component(name).unwrap();
        assert_eq!(
            contract.violations(&record.args),
            Vec::<String>::new(),
            "{name}"
        );
        for (flag, value) in record.flags() {
            if value.starts_with(&data) {
                assert!(
                    Path::new(value).exists(),
                    "{name} --{flag}={value}: no such file"
                );
            }
        }
        assert!(
            component(&status, name)["pid"].as_u64().is_some(),
            "{name} has no pid"
        );
    }
    let api = apiserver.flags();
    let etcd_url = format!("https://127.0.0.1:{}", node.ports.etcd_client);
    assert_eq!(api.get("etcd-servers"), Some(&etcd_url.as_str()));
    let api_port = node.ports.api.to_string();
    assert_eq!(api.get("secure-port"), Some(&api_port.as_str()));
    let scheduler_port = scheduler_port.to_string();
    assert_eq!(
        scheduler.flags().get("secure-port"),
        Some(&scheduler_port.as_str())
    );
    let kcm_port = kcm_port.to_string();
    let kcm_flags = kcm.flags();
    assert_eq!(kcm_flags.get("secure-port"), Some(&kcm_port.as_str()));
    assert_eq!(kcm_flags.get("cluster-cidr"), Some(&"10.244.0.0/16"));
    assert_eq!(kcm_flags.get("allocate-node-cidrs"), Some(&"true"));

    let exit = node.stop(Signal::SIGTERM);
    assert!(exit.success(), "k0x exited {exit}:\n{}", node.log());
    assert_eq!(node.marked_processes(), Vec::<u32>::new());
    // Reverse order: the scheduler and controller-manager stop before the apiserver, which
    // stops before etcd.
    let stopped = |name| {
        let events = log_events(&node.log(), name, "stopped");
        assert_eq!(events.len(), 1, "{name} stopped once");
        events[0].0.clone()
    };
    let apiserver_stopped = stopped("kube-apiserver");
    assert!(stopped("kube-scheduler") <= apiserver_stopped);
    assert!(stopped("kube-controller-manager") <= apiserver_stopped);
    assert!(apiserver_stopped <= stopped("etcd"));
}
