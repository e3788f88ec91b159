//! Real multi-node clusters ([`common::cluster`]): every host a testkit host running k0x with
//! its default paths and the components built from source: Kubernetes, etcd, containerd, runc,
//! flannel, CoreDNS.
//!
//! One cluster at a time, holding the machine-wide lock of the real-Kubernetes tests: each runs
//! several apiservers and kubelets on a machine that may have two cores.

mod common;

use std::fs;
use std::time::Duration;

use common::cluster::{
    ClusterNode, apply, deployment_available, http_from, kill_hard, nodes_on, ready_nodes,
    running_pod, server_pod, three_controllers_and_a_worker, voters, wait_for, wait_nodes_ready,
    worker_token,
};
use common::{K0X, stderr, stdout};
use k0x_testkit::hosts::{Host, Network};

#[test]
fn one_controller_and_two_workers_run_pods_that_reach_each_other() {
    let test = "one_controller_and_two_workers_run_pods_that_reach_each_other";
    if !k0x_testkit::require_root(test) {
        return;
    }
    let Some(tools) = k0x_testkit::require_binaries(test, &["busybox", "ip", "nsenter", "unshare"])
    else {
        return;
    };
    let _fixed_ports = k0x_testkit::lock_fixed_ports();
    let network = Network::create(&["ctl-1", "wrk-1", "wrk-2", "intruder"]).unwrap();
    let [ctl_host, w1_host, w2_host, intruder] = network.hosts() else {
        unreachable!()
    };
    let busybox = &tools[0];
    let Some(mut controller) = ClusterNode::new(ctl_host, test, busybox) else {
        return;
    };
    let mut workers = [
        ClusterNode::new(w1_host, test, busybox).unwrap(),
        ClusterNode::new(w2_host, test, busybox).unwrap(),
    ];
    controller.start(&["server", "--enable-worker"]);
    let token = worker_token(&controller);
    for worker in &mut workers {
        let file = worker.token_file(&token);
        worker.start(&["worker", "--token-file", file]);
    }
    let all = [&controller, &workers[0], &workers[1]];
    wait_nodes_ready(&controller, &["ctl-1", "wrk-1", "wrk-2"], &all);

    // A pod on each worker; pod A reaches pod B by its pod IP, across the vxlan.
    apply(&controller, &server_pod("pod-a", "wrk-1"));
    apply(&controller, &server_pod("pod-b", "wrk-2"));
    let a_ip = running_pod(&controller, "pod-a", "{.status.podIP}");
    let b_ip = running_pod(&controller, "pod-b", "{.status.podIP}");
    assert_ne!(
        a_ip.rsplit_once('.').map(|p| p.0),
        b_ip.rsplit_once('.').map(|p| p.0)
    );
    let by_ip = wait_for(|| {
        http_from(&controller, "pod-a", &b_ip)
            .contains("served-by-pod-b")
            .then_some(())
    });
    assert!(
        by_ip.is_some(),
        "pod-a cannot reach pod-b at {b_ip}: {:?}\n{}\n{}",
        http_from(&controller, "pod-a", &b_ip),
        workers[0].log_tail(),
        workers[1].log_tail()
    );

    // Through a Service name: CoreDNS answers with the ClusterIP, kube-proxy on wrk-1 sends it
    // to pod B on wrk-2.
    let expose = controller.kubectl(&["expose", "pod", "pod-b", "--name", "web", "--port", "8080"]);
    assert!(expose.status.success(), "expose: {}", stderr(&expose));
    let cluster_ip =
        stdout(&controller.kubectl(&["get", "service", "web", "-o", "jsonpath={.spec.clusterIP}"]));
    let name = "web.default.svc.cluster.local";
    let resolved = wait_for(|| {
        let lookup = stdout(&controller.kubectl(&["exec", "pod-a", "--", "nslookup", name]));
        lookup
            .lines()
            .any(|line| line.trim() == format!("Address: {cluster_ip}"))
            .then_some(())
    });
    assert!(resolved.is_some(), "{name} never resolved to {cluster_ip}");
    let by_service = wait_for(|| {
        http_from(&controller, "pod-a", &cluster_ip)
            .contains("served-by-pod-b")
            .then_some(())
    });
    assert!(
        by_service.is_some(),
        "the Service {cluster_ip} never answered from pod-a"
    );

    // kubectl logs reaches the kubelet of each worker (its serving certificate from the join).
    for pod in ["pod-a", "pod-b"] {
        let logs = controller.kubectl(&["logs", pod]);
        assert!(
            stdout(&logs).contains(&format!("{pod} is up")),
            "kubectl logs {pod}: {}{}",
            stdout(&logs),
            stderr(&logs)
        );
    }

    // flannel enforces no NetworkPolicy: a policy denying all ingress to pod B changes nothing,
    // as docs/networking.md says.
    let deny = serde_json::json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": { "name": "deny-pod-b" },
        "spec": { "podSelector": { "matchLabels": { "app": "pod-b" } }, "policyTypes": ["Ingress"] },
    });
    apply(&controller, &deny.to_string());
    std::thread::sleep(Duration::from_secs(5));
    assert!(
        http_from(&controller, "pod-a", &b_ip).contains("served-by-pod-b"),
        "the NetworkPolicy was enforced: docs/networking.md says it is not"
    );

    token_attacks_are_refused(&controller, intruder, &token);
    // The token is gone; a joined worker's identity is its certificate, so it keeps working
    // through a restart.
    let id = k0x_join::Token::parse(&token).unwrap().id;
    let invalidated = controller.run(K0X, &["token", "invalidate", &id]);
    assert!(invalidated.status.success(), "{}", stderr(&invalidated));
    let line = refused_join(intruder, &token);
    assert!(line.contains("invalidated"), "{line}");
    let restarted = &mut workers[0];
    restarted.stop();
    restarted.start(&["worker"]);
    let beat_after = |since: &str| {
        let jsonpath = "jsonpath={.status.conditions[?(@.type==\"Ready\")].lastHeartbeatTime}";
        let beat = stdout(&controller.kubectl(&["get", "node", "wrk-1", "-o", jsonpath]));
        (beat.as_str() > since).then_some(())
    };
    let since = stdout(&controller.run("date", &["-u", "+%Y-%m-%dT%H:%M:%SZ"]));
    let beat = wait_for(|| beat_after(&since));
    assert!(
        beat.is_some() && ready_nodes(&controller).contains(&"wrk-1".to_owned()),
        "wrk-1 did not come back Ready after its token was invalidated: {}",
        workers[0].log_tail()
    );
    drop(workers);
    drop(controller);
    drop(network);
}

#[test]
fn three_controllers_keep_the_cluster_when_one_is_killed() {
    let test = "three_controllers_keep_the_cluster_when_one_is_killed";
    if !k0x_testkit::require_root(test) {
        return;
    }
    let Some(tools) = k0x_testkit::require_binaries(test, &["busybox", "ip", "nsenter", "unshare"])
    else {
        return;
    };
    let _fixed_ports = k0x_testkit::lock_fixed_ports();
    let network = Network::create(&["ctl-1", "ctl-2", "ctl-3", "wrk-1"]).unwrap();
    let busybox = &tools[0];
    let Some(mut nodes) = nodes_on(network.hosts(), test, busybox) else {
        return;
    };
    three_controllers_and_a_worker(&mut nodes);
    let [first, second, third, worker] = nodes.as_mut_slice() else {
        unreachable!()
    };
    assert!(
        deployment_available(first, "before"),
        "the first Deployment never became Available"
    );
    let container = |via: &ClusterNode| {
        let jsonpath = "jsonpath={.items[0].status.containerStatuses[0].containerID}";
        wait_for(|| {
            let id = stdout(&via.kubectl(&["get", "pods", "-l", "app=before", "-o", jsonpath]));
            (!id.is_empty()).then_some(id)
        })
    };
    let pod_before = container(first).expect("the Deployment's pod has a container");

    kill_hard(first);
    // The others keep serving kubectl, the worker stays Ready, its pod keeps running, and a new
    // Deployment is scheduled.
    let served = wait_for(|| {
        second
            .kubectl(&["get", "nodes"])
            .status
            .success()
            .then_some(())
    });
    assert!(
        served.is_some(),
        "ctl-2 stopped serving: {}",
        second.log_tail()
    );
    std::thread::sleep(Duration::from_secs(20));
    assert!(
        ready_nodes(second).contains(&"wrk-1".to_owned()),
        "wrk-1 is no longer Ready: {}",
        worker.log_tail()
    );
    assert!(
        deployment_available(third, "after"),
        "a Deployment after the loss never became Available"
    );
    let pod_after = container(third).expect("the Deployment's pod is still listed");
    assert_eq!(pod_before, pod_after, "the running pod was replaced");

    // The killed controller comes back as the member it was.
    first.start(&["server"]);
    let back = wait_for(|| {
        (first.kubectl(&["get", "nodes"]).status.success() && voters(second) == 3).then_some(())
    });
    assert!(
        back.is_some(),
        "ctl-1 never came back: {}",
        first.log_tail()
    );
    drop(nodes);
    drop(network);
}

/// The refusal line of a `k0x worker` that must not join: non-zero, one line, nothing written.
fn refused_join(host: &Host, token: &str) -> String {
    let path = host.path("/etc/k0x/attack.token");
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(&path, token).unwrap();
    let output = host.output(K0X, &["worker", "--token-file", "/etc/k0x/attack.token"]);
    let error = stderr(&output);
    assert!(!output.status.success(), "an attack joined: {error}");
    assert!(
        !host.path("/var/lib/k0x/pki/kubelet.crt").exists(),
        "a refused join left a certificate"
    );
    error.lines().last().unwrap_or_default().to_owned()
}

/// The join suite's token attacks, against the live controller from a host of its network.
fn token_attacks_are_refused(controller: &ClusterNode, intruder: &Host, token: &str) {
    let real = k0x_join::Token::parse(token).unwrap();
    let unknown = k0x_join::Token::generate(real.role, real.urls.clone(), real.ca_sha256.clone());
    let line = refused_join(intruder, &unknown.encode());
    assert!(
        line.contains("refused") && line.contains("unknown"),
        "{line}"
    );
    // A man in the middle: the token pins another CA, so the controller's certificate fails.
    let pinned_elsewhere = k0x_join::Token::generate(real.role, real.urls, "0".repeat(64));
    let line = refused_join(intruder, &pinned_elsewhere.encode());
    assert!(
        line.contains("CA") || line.contains("certificate"),
        "{line}"
    );
    let garbled = format!("{}x!", &token[..token.len() / 2]);
    let line = refused_join(intruder, &garbled);
    assert!(line.contains("token"), "{line}");
    let log = fs::read_to_string(controller.log_path()).unwrap_or_default();
    assert!(
        log.lines()
            .any(|l| l.contains("join refused") && l.contains(&unknown.id)),
        "the controller logged no refusal of {}",
        unknown.id
    );
}
