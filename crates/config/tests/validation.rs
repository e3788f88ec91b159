//! Bad configurations and the exact error line each one gets: field path, line and column.

use k0x_config::{ClusterConfig, ConfigErrors, Diagnostic, Severity, check_yaml};

const HEADER: &str = "apiVersion: k0x.io/v1beta1\nkind: ClusterConfig\n";

fn errors_of(yaml: &str) -> ConfigErrors {
    match check_yaml(yaml, "bad.yaml") {
        Ok(checked) => panic!("expected errors, got {:?}", checked.config),
        Err(errors) => errors,
    }
}

/// The single error of `yaml` (after the k0x header), checked for path, line and column.
fn single_error(body: &str, path: &str, line: u64, column: u64) -> Diagnostic {
    let errors = errors_of(&format!("{HEADER}{body}"));
    assert_eq!(errors.errors.len(), 1, "expected one error, got:\n{errors}");
    let error = errors.errors[0].clone();
    assert_eq!(
        (error.path.as_str(), error.line, error.column),
        (path, line, column),
        "{error}"
    );
    assert_eq!(error.severity, Severity::Error);
    assert_eq!(error.to_string().lines().count(), 1, "{error}");
    assert!(
        !error.message.contains(['(', ')']) && !error.hint.contains(['(', ')']),
        "the only parentheses enclose the hint: {error}"
    );
    error
}

fn assert_mentions(error: &Diagnostic, words: &[&str]) {
    let line = error.to_string();
    for word in words {
        assert!(line.contains(word), "`{word}` missing in: {line}");
    }
}

#[test]
fn yaml_syntax_error() {
    let errors = errors_of(&format!(
        "{HEADER}spec:\n  api:\n    sans: [1.2.3.4\n  network: {{}}\n"
    ));
    assert_eq!(errors.errors.len(), 1, "{errors}");
    let error = &errors.errors[0];
    assert_eq!(error.path, "");
    assert!(error.line >= 5, "{error}");
    assert!(
        error
            .to_string()
            .starts_with(&format!("bad.yaml:{}:", error.line))
    );
    assert_mentions(error, &["invalid YAML", "fix the YAML syntax"]);
}

#[test]
fn duplicate_key() {
    let errors = errors_of(&format!(
        "{HEADER}spec:\n  api:\n    port: 1\n    port: 2\n"
    ));
    let error = &errors.errors[0];
    assert_eq!((error.line, error.column), (6, 5), "{error}");
    assert_mentions(error, &["duplicate key `port`"]);
}

#[test]
fn unknown_field_with_full_path() {
    let error = single_error(
        "spec:\n  api:\n    adress: 10.0.0.1\n",
        "spec.api.adress",
        5,
        5,
    );
    assert_mentions(&error, &["unknown field `adress`", "`address`"]);
}

#[test]
fn unknown_field_deep_in_the_tree() {
    let error = single_error(
        "spec:\n  storage:\n    etcd:\n      peerPorts: 2380\n",
        "spec.storage.etcd.peerPorts",
        6,
        7,
    );
    assert_mentions(&error, &["unknown field", "`peerPort`"]);
}

#[test]
fn host_settings_are_read_and_a_misspelt_one_is_an_error() {
    let checked = check_yaml(
        &format!("{HEADER}spec:\n  host:\n    applyFixes: false\n"),
        "ok.yaml",
    )
    .unwrap();
    assert!(!checked.config.spec.host.apply_fixes);
    assert!(ClusterConfig::default().spec.host.apply_fixes);
    let error = single_error(
        "spec:\n  host:\n    applyFix: false\n",
        "spec.host.applyFix",
        5,
        5,
    );
    assert_mentions(&error, &["unknown field `applyFix`", "`applyFixes`"]);
}

#[test]
fn k0s_only_section_is_an_error_in_a_k0x_file() {
    let error = single_error(
        "spec:\n  telemetry:\n    enabled: true\n",
        "spec.telemetry",
        4,
        3,
    );
    assert_mentions(&error, &["unknown field `telemetry`"]);
}

#[test]
fn wrong_type_for_a_port() {
    let error = single_error("spec:\n  api:\n    port: https\n", "spec.api.port", 5, 11);
    assert_mentions(
        &error,
        &[
            "invalid type: string \"https\"",
            "port number from 1 to 65535",
        ],
    );
    assert!(
        !error.hint.contains("0 to"),
        "0 is refused, so no hint offers it: {error}"
    );
}

#[test]
fn wrong_type_for_a_timeout_offers_only_what_is_accepted() {
    let error = single_error(
        "spec:\n  probes:\n    defaultTimeoutSeconds: -5\n",
        "spec.probes.defaultTimeoutSeconds",
        5,
        28,
    );
    assert_mentions(&error, &["a whole number of seconds"]);
}

#[test]
fn a_field_and_its_alias_both_set_name_the_alias() {
    let error = single_error(
        "spec:\n  api:\n    k0xApiPort: 9443\n    k0sApiPort: 9444\n",
        "spec.api.k0sApiPort",
        6,
        5,
    );
    assert_mentions(
        &error,
        &[
            "`k0sApiPort` is another name for `k0xApiPort`",
            "keep only `k0xApiPort`",
        ],
    );
}

#[test]
fn a_huge_file_and_an_alias_bomb_are_too_large_not_bad_syntax() {
    let huge = format!(
        "{HEADER}spec:\n  api:\n    sans:\n{}",
        "    - a.example.com\n".repeat(300_000)
    );
    let mut bomb = format!("{HEADER}a: &a [x, x, x, x, x, x, x, x, x, x]\n");
    for (name, prev) in ["b", "c", "d", "e", "f", "g"]
        .iter()
        .zip(["a", "b", "c", "d", "e", "f"])
    {
        bomb += &format!(
            "{name}: &{name} [{}]\n",
            vec![format!("*{prev}"); 10].join(", ")
        );
    }
    for yaml in [huge, bomb] {
        let errors = errors_of(&yaml);
        assert_eq!(errors.errors.len(), 1, "{errors}");
        let line = errors.errors[0].to_string();
        assert!(
            line.starts_with("bad.yaml: the file is too large for a configuration: it holds or expands to more than 250000 values ("),
            "{line}"
        );
        assert!(
            !line.contains("YAML syntax") && !line.contains('{'),
            "{line}"
        );
    }
}

#[test]
fn port_out_of_range() {
    let error = single_error("spec:\n  api:\n    port: 70000\n", "spec.api.port", 5, 11);
    assert_mentions(&error, &["70000"]);
}

#[test]
fn port_zero() {
    let error = single_error(
        "spec:\n  storage:\n    etcd:\n      peerPort: 0\n",
        "spec.storage.etcd.peerPort",
        6,
        17,
    );
    assert_mentions(&error, &["port 0", "1 to 65535"]);
}

#[test]
fn ports_must_be_distinct() {
    let error = single_error(
        "spec:\n  api:\n    k0xApiPort: 6443\n",
        "spec.api.k0xApiPort",
        5,
        17,
    );
    assert_mentions(&error, &["6443", "spec.api.port"]);
}

#[test]
fn list_expected_but_text_given() {
    let error = single_error(
        "spec:\n  api:\n    sans: 10.0.0.1\n",
        "spec.api.sans",
        5,
        11,
    );
    assert_mentions(&error, &["invalid type", "YAML list"]);
}

#[test]
fn unsupported_api_version() {
    let errors = errors_of("apiVersion: k0x.io/v2\nkind: ClusterConfig\n");
    let error = &errors.errors[0];
    assert_eq!(
        (error.path.as_str(), error.line, error.column),
        ("apiVersion", 1, 13)
    );
    assert_mentions(error, &["unsupported apiVersion", "k0x.io/v1beta1"]);
}

#[test]
fn missing_api_version_and_wrong_kind_are_both_reported() {
    let errors = errors_of("kind: Pod\nspec: {}\n");
    let found: Vec<_> = errors
        .errors
        .iter()
        .map(|e| (e.path.as_str(), e.line, e.column))
        .collect();
    assert_eq!(found, [("apiVersion", 1, 1), ("kind", 1, 7)], "{errors}");
}

#[test]
fn pod_cidr_does_not_parse() {
    let error = single_error(
        "spec:\n  network:\n    podCIDR: 10.244.0.0/33\n",
        "spec.network.podCIDR",
        5,
        14,
    );
    assert_mentions(&error, &["not a CIDR", "10.244.0.0/16"]);
}

#[test]
fn service_cidr_with_host_bits() {
    let error = single_error(
        "spec:\n  network:\n    serviceCIDR: 10.96.0.1/12\n",
        "spec.network.serviceCIDR",
        5,
        18,
    );
    assert_mentions(&error, &["host bits", "10.96.0.0/12"]);
}

#[test]
fn pod_and_service_cidrs_overlap() {
    let error = single_error(
        "spec:\n  network:\n    podCIDR: 10.96.0.0/16\n",
        "spec.network.podCIDR",
        5,
        14,
    );
    assert_mentions(&error, &["overlaps the service CIDR 10.96.0.0/12"]);
}

#[test]
fn service_cidr_too_small_for_the_dns_ip() {
    let error = single_error(
        "spec:\n  network:\n    serviceCIDR: 10.96.0.0/29\n",
        "spec.network.serviceCIDR",
        5,
        18,
    );
    assert_mentions(&error, &["no room for the DNS service IP", "/28"]);
}

#[test]
fn api_address_is_not_an_address() {
    let error = single_error(
        "spec:\n  api:\n    address: not an/address\n",
        "spec.api.address",
        5,
        14,
    );
    assert_mentions(&error, &["neither an IP address nor a DNS name"]);
}

#[test]
fn api_address_takes_an_ip_and_names_go_in_the_sans() {
    let error = single_error(
        "spec:\n  api:\n    address: cp.example.com\n",
        "spec.api.address",
        5,
        14,
    );
    assert_mentions(&error, &["`cp.example.com` is a DNS name", "spec.api.sans"]);
    let error = single_error(
        "spec:\n  storage:\n    etcd:\n      peerAddress: etcd-1.lab\n",
        "spec.storage.etcd.peerAddress",
        6,
        20,
    );
    assert_mentions(&error, &["`etcd-1.lab` is a DNS name", "IP address"]);
}

#[test]
fn one_bad_san_among_good_ones() {
    let error = single_error(
        "spec:\n  api:\n    sans:\n    - 10.0.0.1\n    - cp.example.com\n    - bad_name!\n",
        "spec.api.sans[2]",
        8,
        7,
    );
    assert_mentions(&error, &["`bad_name!`"]);
}

#[test]
fn etcd_peer_address_is_not_an_address() {
    let error = single_error(
        "spec:\n  storage:\n    etcd:\n      peerAddress: 300.1.1.1:2380\n",
        "spec.storage.etcd.peerAddress",
        6,
        20,
    );
    assert_mentions(&error, &["300.1.1.1:2380"]);
}

#[test]
fn impossible_ipv4_addresses_are_not_dns_names() {
    for address in ["300.1.2.3", "999.0.0.1", "256.256.256.256", "1.2.3"] {
        let error = single_error(
            &format!("spec:\n  api:\n    address: {address}\n"),
            "spec.api.address",
            5,
            14,
        );
        assert_mentions(&error, &[address, "is not an IPv4 address", "0 to 255"]);
    }
    for san in ["300.1.2.3", "1.2.3.999", "\"*.1.2.3\""] {
        let error = single_error(
            &format!("spec:\n  api:\n    sans:\n    - {san}\n"),
            "spec.api.sans[0]",
            6,
            7,
        );
        assert_mentions(&error, &[san.trim_matches('"')]);
    }
    let error = single_error(
        "spec:\n  storage:\n    etcd:\n      peerAddress: 1.2.3.4.5\n",
        "spec.storage.etcd.peerAddress",
        6,
        20,
    );
    assert_mentions(&error, &["`1.2.3.4.5` is not an IPv4 address"]);
}

#[test]
fn cluster_domain_is_not_a_dns_name() {
    let error = single_error(
        "spec:\n  network:\n    clusterDomain: cluster..local\n",
        "spec.network.clusterDomain",
        5,
        20,
    );
    assert_mentions(&error, &["not a DNS name"]);
}

#[test]
fn unknown_network_provider() {
    let error = single_error(
        "spec:\n  network:\n    provider: calico\n",
        "spec.network.provider",
        5,
        15,
    );
    assert_mentions(&error, &["unknown variant `calico`", "`flannel`"]);
}

#[test]
fn worker_profile_name_invalid() {
    let error = single_error(
        "spec:\n  workerProfiles:\n  - name: Big_Boards\n",
        "spec.workerProfiles[0].name",
        5,
        11,
    );
    assert_mentions(&error, &["`Big_Boards`", "lowercase"]);
}

#[test]
fn worker_profile_names_unique() {
    let error = single_error(
        "spec:\n  workerProfiles:\n  - name: arm\n  - name: x86\n  - name: arm\n    values: {}\n",
        "spec.workerProfiles[2].name",
        7,
        11,
    );
    assert_mentions(&error, &["already defined at spec.workerProfiles[0]"]);
}

#[test]
fn worker_profile_without_name() {
    let error = single_error(
        "spec:\n  workerProfiles:\n  - values:\n      maxPods: 50\n",
        "spec.workerProfiles[0].name",
        5,
        5,
    );
    assert_mentions(&error, &["missing field `name`", "add `name`"]);
}

#[test]
fn probe_timeouts_must_be_positive() {
    let errors = errors_of(&format!(
        "{HEADER}spec:\n  probes:\n    defaultTimeoutSeconds: 0\n    timeoutSeconds:\n      kube-apiserver: 0\n      kube-apiservr: 30\n"
    ));
    let found: Vec<_> = errors
        .errors
        .iter()
        .map(|e| (e.path.as_str(), e.line, e.column))
        .collect();
    assert_eq!(
        found,
        [
            ("spec.probes.defaultTimeoutSeconds", 5, 28),
            ("spec.probes.timeoutSeconds.kube-apiserver", 7, 23),
            ("spec.probes.timeoutSeconds.kube-apiservr", 8, 22),
        ],
        "{errors}"
    );
}

#[test]
fn extra_args_values_are_strings() {
    let error = single_error(
        "spec:\n  api:\n    extraArgs:\n      v: 2\n",
        "spec.api.extraArgs.v",
        6,
        10,
    );
    assert_mentions(&error, &["invalid type: integer `2`", "quote it"]);
}

#[test]
fn empty_file() {
    let errors = errors_of("");
    assert_eq!(errors.errors.len(), 1);
    assert_mentions(
        &errors.errors[0],
        &["the file is empty", "k0x config create"],
    );
}

#[test]
fn more_than_one_document() {
    let errors = errors_of(&format!("{HEADER}---\n{HEADER}"));
    assert_eq!(errors.errors.len(), 1, "{errors}");
    assert_eq!(errors.errors[0].line, 4, "{errors}");
    assert_mentions(&errors.errors[0], &["more than one YAML document"]);
}

#[test]
fn not_a_mapping() {
    let errors = errors_of("- just\n- a list\n");
    assert_eq!((errors.errors[0].line, errors.errors[0].column), (1, 1));
    assert_eq!(errors.errors.len(), 1);
}

#[test]
fn every_error_is_reported_in_file_order() {
    let yaml = format!(
        "{HEADER}spec:\n  api:\n    port: 0\n    bogus: 1\n  network:\n    podCIDR: nope\n    serviceCIDR: 10.96.0.0/30\n    provider: weave\n  workerProfiles:\n  - name: a\n  - name: a\n"
    );
    let errors = errors_of(&yaml);
    let found: Vec<_> = errors
        .errors
        .iter()
        .map(|e| (e.path.as_str(), e.line))
        .collect();
    assert_eq!(
        found,
        [
            ("spec.api.port", 5),
            ("spec.api.bogus", 6),
            ("spec.network.podCIDR", 8),
            ("spec.network.serviceCIDR", 9),
            ("spec.network.provider", 10),
            ("spec.workerProfiles[1].name", 13),
        ],
        "{errors}"
    );
    assert_eq!(errors.to_string().lines().count(), 6);
}

#[test]
fn default_configuration_round_trips_and_validates() {
    let yaml = ClusterConfig::default().to_yaml();
    let checked = check_yaml(&yaml, "default.yaml").unwrap();
    assert_eq!(checked.config, ClusterConfig::default());
    assert_eq!(checked.config.to_yaml(), yaml);
}

#[test]
fn k0s_default_configuration_validates_unchanged() {
    let yaml = include_str!("fixtures/k0s-default.yaml");
    let checked = check_yaml(yaml, "k0s.yaml").unwrap_or_else(|e| panic!("{e}"));
    let spec = &checked.config.spec;
    assert_eq!(spec.api.address, "192.168.68.104");
    assert_eq!(spec.api.k0x_api_port, 9443);
    assert_eq!(spec.storage.etcd.peer_address, "192.168.68.104");
    assert_eq!(
        spec.network.provider,
        k0x_config::schema::NetworkProvider::Flannel
    );
    let warned: Vec<_> = checked.warnings.iter().map(|w| w.path.as_str()).collect();
    assert_eq!(
        warned,
        [
            "spec.extensions",
            "spec.installConfig",
            "spec.konnectivity",
            "spec.network.dualStack",
            "spec.network.kubeProxy",
            "spec.network.kuberouter",
            "spec.network.nodeLocalLoadBalancing",
            "spec.network.provider",
            "spec.telemetry",
        ]
    );
    let first = checked.warnings[0].to_string();
    assert_eq!(
        first,
        "k0s.yaml:13:3: spec.extensions: warning: k0s setting that k0x does not implement, ignored (remove it to silence this warning)"
    );
}

#[test]
fn older_k0s_configuration_with_images_validates() {
    let yaml = include_str!("fixtures/k0s-1.26-with-images.yaml");
    let checked = check_yaml(yaml, "k0s.yaml").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        checked.config.spec.images.pause,
        "registry.k8s.io/pause:3.8"
    );
    assert_eq!(
        checked.config.spec.images.coredns,
        "quay.io/k0sproject/coredns:1.10.1"
    );
    assert_eq!(checked.config.spec.api.sans.len(), 2);
    let warned: Vec<_> = checked.warnings.iter().map(|w| w.path.as_str()).collect();
    assert!(warned.contains(&"spec.api.externalAddress"), "{warned:?}");
    assert!(warned.contains(&"spec.images.calico"), "{warned:?}");
    assert!(!warned.contains(&"spec.images.repository"), "{warned:?}");
    assert!(!warned.contains(&"spec.network.calico"), "{warned:?}");
}

#[test]
fn k0s_file_errors_still_are_errors() {
    let yaml = "apiVersion: k0s.k0sproject.io/v1beta1\nkind: ClusterConfig\nspec:\n  telemetry:\n    enabled: true\n  network:\n    podCIDR: 10.96.0.0/12\n";
    let errors = errors_of(yaml);
    assert_eq!(errors.errors.len(), 1, "{errors}");
    assert_eq!(errors.errors[0].path, "spec.network.podCIDR");
    assert_eq!(errors.warnings.len(), 1);
    assert_eq!(errors.warnings[0].path, "spec.telemetry");
}

#[test]
fn old_k0s_kind_cluster_is_accepted_in_k0s_files_only() {
    let k0s = "apiVersion: k0s.k0sproject.io/v1beta1\nkind: Cluster\n";
    assert!(check_yaml(k0s, "k0s.yaml").is_ok());
    let errors = errors_of("apiVersion: k0x.io/v1beta1\nkind: Cluster\n");
    assert_eq!(errors.errors[0].path, "kind");
}

#[test]
fn k0s_value_k0x_cannot_honour_is_an_error() {
    let errors = errors_of(
        "apiVersion: k0s.k0sproject.io/v1beta1\nkind: ClusterConfig\nspec:\n  storage:\n    type: kine\n    kine:\n      dataSource: sqlite:///db\n",
    );
    assert_eq!(errors.errors.len(), 1, "{errors}");
    let error = &errors.errors[0];
    assert_eq!(
        (error.path.as_str(), error.line, error.column),
        ("spec.storage.type", 5, 11)
    );
    assert_eq!(errors.warnings.len(), 1);
    assert_eq!(errors.warnings[0].path, "spec.storage.kine");
}
