//! The manifests applier against a real control plane (`k0x server`, controller only, with the
//! components built from source): a stack of a Namespace and ConfigMaps in
//! `<data-dir>/manifests/demo/` is applied with the stack label; a custom resource is applied once
//! the CustomResourceDefinition beside it in its stack is served; an edit of a ConfigMap's data
//! is applied; removing a file prunes its object; a bad YAML file in another stack is one warning
//! with its position and prunes nothing there; removing the stack directory deletes its objects
//! and its record. Checked with the real kubectl through `k0x kubectl`. Without the components
//! the test is skipped, and fails in strict mode.

mod common;

use std::path::Path;

use common::{Node, kubectl};
use nix::sys::signal::Signal;

const NAMESPACE: &str = "k0x-manifests-demo";

/// A CustomResourceDefinition whose custom resource sits in the same stack.
const WIDGET_CRD: &str = "apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.k0x.test
spec:
  group: k0x.test
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            properties:
              size: {type: integer}
";

/// kubectl's output when it succeeded.
fn get(node: &Node, args: &[&str]) -> Option<String> {
    let out = kubectl(node, args);
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

fn exists(node: &Node, args: &[&str]) -> bool {
    get(node, args).is_some_and(|found| !found.is_empty())
}

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

fn config_map(name: &str, namespace: Option<&str>, greeting: &str) -> String {
    let namespace = namespace.map_or_else(String::new, |ns| format!("  namespace: {ns}\n"));
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n{namespace}data:\n  \
         greeting: {greeting}\n"
    )
}

fn greeting(node: &Node, namespace: &str, name: &str) -> Option<String> {
    let jsonpath = "jsonpath={.data.greeting}";
    get(
        node,
        &["get", "configmap", name, "-n", namespace, "-o", jsonpath],
    )
}

/// Waits until `check` holds, failing with `what` and the server log when the limit passes.
fn wait_for(node: &Node, what: &str, check: impl FnMut() -> bool) {
    assert!(
        common::wait_until(check),
        "timed out: {what}\n{}",
        node.log()
    );
}

/// The server's log lines that contain `text`.
fn log_lines(node: &Node, text: &str) -> Vec<String> {
    node.log()
        .lines()
        .filter(|line| line.contains(text))
        .map(str::to_owned)
        .collect()
}

#[test]
fn stacks_are_applied_updated_pruned_and_left_alone_when_broken() {
    let test = "stacks_are_applied_updated_pruned_and_left_alone_when_broken";
    let Some(mut node) = Node::new(test) else {
        return;
    };
    if !node.stage_kubernetes(test, env!("CARGO_TARGET_TMPDIR").as_ref()) {
        return;
    }
    let manifests = node.layout().manifests();
    let demo = manifests.join("demo");
    let namespace = format!("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {NAMESPACE}\n");
    // The Namespace sorts after the ConfigMap in it: applied first all the same.
    write(&demo.join("b-namespace.yaml"), &namespace);
    write(
        &demo.join("a-config.yaml"),
        &format!(
            "---\n{}---\n# nothing here\n---\n",
            config_map("greeting", Some(NAMESPACE), "hello")
        ),
    );
    write(&demo.join("extra.yml"), &config_map("extra", None, "extra"));
    let other = manifests.join("other");
    write(&other.join("a.yaml"), &config_map("other-a", None, "a"));
    write(
        &other.join("b.json"),
        &serde_json::json!({
            "apiVersion": "v1", "kind": "List",
            "items": [{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "other-b"}}],
        })
        .to_string(),
    );

    write(&manifests.join("widgets/crd.yaml"), WIDGET_CRD);
    write(
        &manifests.join("widgets/widget.yaml"),
        "apiVersion: k0x.test/v1\nkind: Widget\nmetadata:\n  name: demo\nspec:\n  size: 3\n",
    );

    node.start(&[]);
    node.wait_ready(&["etcd", "kube-apiserver"]);

    wait_for(&node, "the demo stack applied", || {
        greeting(&node, NAMESPACE, "greeting").as_deref() == Some("hello")
    });
    let label = get(
        &node,
        &[
            "get",
            "configmap",
            "greeting",
            "-n",
            NAMESPACE,
            "-o",
            "jsonpath={.metadata.labels.k0x\\.io/stack}",
        ],
    );
    assert_eq!(label.as_deref(), Some("demo"));
    wait_for(
        &node,
        "a ConfigMap without a namespace lands in default",
        || greeting(&node, "default", "extra").as_deref() == Some("extra"),
    );
    wait_for(&node, "the other stack applied, its List expanded", || {
        exists(
            &node,
            &["get", "configmap", "other-b", "-n", "default", "-o", "name"],
        )
    });
    wait_for(
        &node,
        "a custom resource applied once its CRD (same stack) is served",
        || {
            let jsonpath = "jsonpath={.spec.size}";
            get(
                &node,
                &[
                    "get",
                    "widgets.k0x.test",
                    "demo",
                    "-n",
                    "default",
                    "-o",
                    jsonpath,
                ],
            )
            .as_deref()
                == Some("3")
        },
    );
    let record = [
        "get",
        "configmap",
        "k0x-stack-demo",
        "-n",
        "kube-system",
        "-o",
        "name",
    ];
    assert!(exists(&node, &record), "the demo stack's record");

    write(
        &demo.join("a-config.yaml"),
        &config_map("greeting", Some(NAMESPACE), "hello again"),
    );
    wait_for(&node, "the edited ConfigMap applied", || {
        greeting(&node, NAMESPACE, "greeting").as_deref() == Some("hello again")
    });

    std::fs::remove_file(demo.join("extra.yml")).unwrap();
    wait_for(&node, "the ConfigMap of the removed file pruned", || {
        get(
            &node,
            &[
                "get",
                "configmap",
                "extra",
                "-n",
                "default",
                "--ignore-not-found",
                "-o",
                "name",
            ],
        )
        .is_some_and(|found| found.is_empty())
    });

    // Break the other stack and remove one of its files at once: nothing may be pruned there.
    std::fs::remove_file(other.join("b.json")).unwrap();
    write(
        &other.join("c.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: [oops\n",
    );
    let broken = "manifests stack other not applied";
    wait_for(&node, "the bad file reported", || {
        !log_lines(&node, broken).is_empty()
    });
    // A change in the demo stack applied after the warning shows later rounds ran.
    write(
        &demo.join("a-config.yaml"),
        &config_map("greeting", Some(NAMESPACE), "after the bad file"),
    );
    wait_for(&node, "the demo stack applied after the bad file", || {
        greeting(&node, NAMESPACE, "greeting").as_deref() == Some("after the bad file")
    });
    let warnings = log_lines(&node, broken);
    assert_eq!(
        warnings.len(),
        1,
        "one warning per bad change: {warnings:#?}"
    );
    assert!(
        warnings[0].contains("c.yaml:4:") && warnings[0].contains("fix the YAML"),
        "the warning names the file, line and what to fix: {}",
        warnings[0]
    );
    assert!(
        exists(
            &node,
            &["get", "configmap", "other-b", "-n", "default", "-o", "name"]
        ),
        "a stack with a bad file is left as it was"
    );

    std::fs::remove_dir_all(&demo).unwrap();
    // The Namespace counts as deleted once it is terminating: the namespace controller finishes
    // the job only when every aggregated API answers, and a system stack's API (metrics-server)
    // has no pods on a node without a worker. Printed as `name/deletionTimestamp`, so a live
    // Namespace shows `name/` and a gone one nothing.
    let namespace_state = "jsonpath={.metadata.name}/{.metadata.deletionTimestamp}";
    let record_gone = [&record[..5], &["--ignore-not-found", "-o", "name"][..]].concat();
    wait_for(
        &node,
        "the removed stack's objects and record deleted",
        || {
            let args = [
                "get",
                "namespace",
                NAMESPACE,
                "--ignore-not-found",
                "-o",
                namespace_state,
            ];
            let namespace_deleted = get(&node, &args).is_some_and(|s| s != format!("{NAMESPACE}/"));
            namespace_deleted
                && greeting(&node, NAMESPACE, "greeting").is_none()
                && get(&node, &record_gone).is_some_and(|found| found.is_empty())
        },
    );
    let applied = log_lines(&node, "manifests stack demo applied");
    assert!(
        applied
            .iter()
            .any(|line| line.contains("2 objects applied, 1 pruned")),
        "one line per stack round, with counts: {applied:#?}"
    );
    let removed = log_lines(&node, "manifests stack demo removed");
    assert_eq!(removed.len(), 1, "{removed:#?}");

    let exit = node.stop(Signal::SIGTERM);
    assert!(exit.success(), "k0x exited {exit}:\n{}", node.log());
    assert_eq!(node.marked_processes(), Vec::<u32>::new());
}
