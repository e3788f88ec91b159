//! k0x's pod network on the host: the CNI bridge (and the pod veths on it) and the iptables
//! rules and chains the CNI plugins created for k0x's network.
//!
//! What belongs to k0x is read from the CNI configuration k0x rendered in its data dir: the
//! network name and the bridge name. Chains are matched by the comment the CNI plugins put on
//! every rule (`name: "<network>" id: "<container>"`), so chains of another CNI network on the
//! same host, and the shared CNI-HOSTPORT-* chains, are left alone.
//!
//! The kubelet, kube-proxy and flannel keep their rules in KUBE-* and FLANNEL-* chains that carry
//! no such comment. A host runs one kubelet and one pod network, so once this data dir's kubelet
//! ran, every such chain is its own: reset removes them and the rules jumping to them, as
//! k3s-killall.sh does, and flannel's vxlan device with them.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The network name k0x's default CNI configuration uses, when none is found in the data dir.
pub const DEFAULT_NETWORK: &str = "k0x-bridge";
/// The bridge k0x's default CNI configuration uses, when none is found in the data dir.
pub const DEFAULT_BRIDGE: &str = "k0x-br0";

/// A CNI network k0x configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CniNetwork {
    pub name: String,
    /// Bridge devices of its `bridge` plugins.
    pub bridges: Vec<String>,
    /// Where its host-local IPAM keeps address leases (the plugin's `dataDir`).
    pub ipam_dirs: Vec<PathBuf>,
}

/// host-local IPAM's default lease directory; leases of a network go to `<dir>/<network>`.
pub const DEFAULT_IPAM_DIR: &str = "/var/lib/cni/networks";
/// libcni's default cache of plugin results (`<dir>/<network>-<container>-<ifname>`).
pub const CNI_RESULTS_DIR: &str = "/var/lib/cni/results";

/// The CNI networks configured below `etc_dir` (k0x's rendered configuration), or k0x's
/// documented default when there is none (e.g. on a second reset, after the data dir is gone).
pub fn k0x_networks(etc_dir: &Path) -> Vec<CniNetwork> {
    let mut files = Vec::new();
    collect_cni_files(etc_dir, 4, &mut files);
    files.sort();
    let networks: Vec<CniNetwork> = files.iter().filter_map(|f| parse_cni_file(f)).collect();
    if networks.is_empty() {
        vec![CniNetwork {
            name: DEFAULT_NETWORK.into(),
            bridges: vec![DEFAULT_BRIDGE.into()],
            ipam_dirs: vec![DEFAULT_IPAM_DIR.into()],
        }]
    } else {
        networks
    }
}

fn collect_cni_files(dir: &Path, depth: usize, out: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        if kind.is_dir() && depth > 0 {
            collect_cni_files(&path, depth - 1, out);
        } else if kind.is_file()
            && path
                .extension()
                .is_some_and(|e| e == "conflist" || e == "conf")
        {
            out.push(path);
        }
    }
}

/// Reads a `.conflist` (plugins array) or a single-plugin `.conf`.
fn parse_cni_file(path: &Path) -> Option<CniNetwork> {
    let json: serde_json::Value = serde_json::from_str(&fs::read_to_string(path).ok()?).ok()?;
    let name = json.get("name")?.as_str()?.to_owned();
    // The name becomes part of paths below; a name that could climb out of them is not ours.
    if name.is_empty() || name.contains('/') || name.starts_with('.') {
        return None;
    }
    let plugins = match json.get("plugins").and_then(|p| p.as_array()) {
        Some(list) => list.clone(),
        None => vec![json.clone()],
    };
    let bridges = plugins
        .iter()
        .filter(|p| p.get("type").and_then(|t| t.as_str()) == Some("bridge"))
        // "cni0" is the bridge plugin's own default.
        .map(|p| {
            p.get("bridge")
                .and_then(|b| b.as_str())
                .unwrap_or("cni0")
                .to_owned()
        })
        .collect();
    let ipam_dirs = plugins
        .iter()
        .filter_map(|p| p.get("ipam"))
        .filter(|ipam| ipam.get("type").and_then(|t| t.as_str()) == Some("host-local"))
        .map(|ipam| {
            ipam.get("dataDir")
                .and_then(|d| d.as_str())
                .unwrap_or(DEFAULT_IPAM_DIR)
                .into()
        })
        .collect();
    Some(CniNetwork {
        name,
        bridges,
        ipam_dirs,
    })
}

/// CNI state kept for `networks` outside the data dir, below `root`: the host-local lease
/// directories of each network and libcni's cached results of its attachments.
pub fn state_paths(root: &Path, networks: &[CniNetwork]) -> Vec<PathBuf> {
    let below_root = |path: &Path| root.join(path.strip_prefix("/").unwrap_or(path));
    let mut paths = Vec::new();
    for network in networks {
        for dir in &network.ipam_dirs {
            let leases = below_root(dir).join(&network.name);
            if leases.is_dir() {
                paths.push(leases);
            }
        }
        let prefix = format!("{}-", network.name);
        if let Ok(entries) = fs::read_dir(below_root(Path::new(CNI_RESULTS_DIR))) {
            let mut results: Vec<PathBuf> = entries
                .flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
                .map(|e| e.path())
                .collect();
            results.sort();
            paths.extend(results);
        }
    }
    paths
}

/// The vxlan device flannel creates.
const FLANNEL_DEVICE: &str = "flannel.1";

/// Network devices to delete: the ports on each bridge (host ends of pod veths), then the bridge;
/// with `kubelet_ran`, also flannel's vxlan device.
pub fn links_to_delete(networks: &[CniNetwork], kubelet_ran: bool) -> Vec<String> {
    let mut links = Vec::new();
    if kubelet_ran && Path::new("/sys/class/net").join(FLANNEL_DEVICE).exists() {
        links.push(FLANNEL_DEVICE.to_owned());
    }
    for bridge in networks.iter().flat_map(|n| &n.bridges) {
        let dev = Path::new("/sys/class/net").join(bridge);
        if !dev.exists() {
            continue;
        }
        if let Ok(ports) = fs::read_dir(dev.join("brif")) {
            let mut names: Vec<String> = ports
                .flatten()
                .map(|p| p.file_name().to_string_lossy().into_owned())
                .collect();
            names.sort();
            links.extend(names);
        }
        links.push(bridge.clone());
    }
    links
}

/// An iptables change, as the arguments after the program name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IptablesChange {
    /// `iptables` or `ip6tables`.
    pub program: &'static str,
    pub args: Vec<String>,
}

/// Rules carrying a comment of one of `networks`, then the CNI-* chains they jump to (flushed,
/// then deleted), in both the IPv4 and the IPv6 tables that exist on this host; with
/// `kube_chains`, also every KUBE-* and FLANNEL-* chain and the rules jumping to it.
pub fn iptables_changes(networks: &[CniNetwork], kube_chains: bool) -> Vec<IptablesChange> {
    let mut changes = Vec::new();
    for program in ["iptables", "ip6tables"] {
        for table in ["nat", "filter", "mangle", "raw"] {
            let Some(dump) = save(program, table) else {
                continue;
            };
            let mut table_changes = changes_for_dump(&dump, networks);
            if kube_chains {
                table_changes = merge(&table_changes, &kube_changes_for_dump(&dump));
            }
            changes.extend(table_changes.into_iter().map(|args| IptablesChange {
                program,
                args: [vec!["-t".to_owned(), table.to_owned()], args].concat(),
            }));
        }
    }
    changes
}

fn save(program: &str, table: &str) -> Option<String> {
    let out = Command::new(format!("{program}-save"))
        .args(["-t", table])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The changes for one table's `iptables-save` output: `-D` for each matching rule, then `-F`
/// and `-X` for each CNI-* chain such a rule jumps to or that holds such a rule.
fn changes_for_dump(dump: &str, networks: &[CniNetwork]) -> Vec<Vec<String>> {
    let markers: Vec<String> = networks
        .iter()
        .map(|n| format!("name: \"{}\"", n.name))
        .collect();
    let mut deletes = Vec::new();
    let mut chains: Vec<String> = Vec::new();
    for line in dump.lines().filter(|l| l.starts_with("-A ")) {
        let words = split_words(line);
        let comment = words
            .windows(2)
            .find(|w| w[0] == "--comment")
            .map(|w| w[1].as_str());
        if !comment.is_some_and(|c| markers.iter().any(|m| c.contains(m.as_str()))) {
            continue;
        }
        let chain = words.get(1).cloned().unwrap_or_default();
        let target = words
            .windows(2)
            .find(|w| w[0] == "-j")
            .map(|w| w[1].clone());
        for owned in [Some(chain.clone()), target].into_iter().flatten() {
            if owned.starts_with("CNI-")
                && !owned.starts_with("CNI-HOSTPORT-")
                && !chains.contains(&owned)
            {
                chains.push(owned);
            }
        }
        // Rules inside a chain that is deleted go with it.
        if !chain.starts_with("CNI-") || chain.starts_with("CNI-HOSTPORT-") {
            let mut delete = words;
            delete[0] = "-D".into();
            deletes.push(delete);
        }
    }
    let flushes = chains.iter().map(|c| vec!["-F".to_owned(), c.clone()]);
    let removals = chains.iter().map(|c| vec!["-X".to_owned(), c.clone()]);
    deletes.into_iter().chain(flushes).chain(removals).collect()
}

/// Deletes of the second list after those of the first, then all flushes, then all removals:
/// a chain can only be deleted once nothing jumps to it any more.
fn merge(first: &[Vec<String>], second: &[Vec<String>]) -> Vec<Vec<String>> {
    let mut all: Vec<Vec<String>> = Vec::new();
    for op in ["-D", "-F", "-X"] {
        for change in first.iter().chain(second) {
            if change[0] == op && !all.contains(change) {
                all.push(change.clone());
            }
        }
    }
    all
}

/// The chain prefixes of the kubelet, kube-proxy and flannel.
const NODE_CHAIN_PREFIXES: &[&str] = &["KUBE-", "FLANNEL-"];

/// The changes that remove the KUBE-* and FLANNEL-* chains of one table's `iptables-save` output:
/// `-D` for each rule of another chain that jumps to one, then `-F` and `-X` for each.
fn kube_changes_for_dump(dump: &str) -> Vec<Vec<String>> {
    let is_kube = |chain: &str| NODE_CHAIN_PREFIXES.iter().any(|p| chain.starts_with(p));
    let chains: Vec<String> = dump
        .lines()
        .filter_map(|l| l.strip_prefix(':'))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|chain| is_kube(chain))
        .map(str::to_owned)
        .collect();
    let mut deletes = Vec::new();
    for line in dump.lines().filter(|l| l.starts_with("-A ")) {
        let words = split_words(line);
        let in_kube = words.get(1).is_some_and(|c| is_kube(c));
        let jumps_to_kube = words
            .windows(2)
            .any(|w| (w[0] == "-j" || w[0] == "-g") && is_kube(&w[1]));
        if jumps_to_kube && !in_kube {
            let mut delete = words;
            delete[0] = "-D".into();
            deletes.push(delete);
        }
    }
    let flushes = chains.iter().map(|c| vec!["-F".to_owned(), c.clone()]);
    let removals = chains.iter().map(|c| vec!["-X".to_owned(), c.clone()]);
    deletes.into_iter().chain(flushes).chain(removals).collect()
}

/// Splits an `iptables-save` rule into words: double quotes group, `\"` and `\\` escape.
fn split_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut quoted = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' if quoted => {
                if let Some(next) = chars.next() {
                    word.push(next);
                }
            }
            '"' => {
                quoted = !quoted;
                in_word = true;
            }
            c if c.is_whitespace() && !quoted => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            c => {
                word.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        words.push(word);
    }
    words
}

#[cfg(test)]
mod tests {
    use super::*;

    const DUMP: &str = r#"*nat
:POSTROUTING ACCEPT [0:0]
:CNI-1234 - [0:0]
:CNI-9999 - [0:0]
:CNI-HOSTPORT-MASQ - [0:0]
-A POSTROUTING -s 10.244.0.5/32 -m comment --comment "name: \"k0x\" id: \"abc\"" -j CNI-1234
-A POSTROUTING -s 10.88.0.5/32 -m comment --comment "name: \"podman\" id: \"def\"" -j CNI-9999
-A POSTROUTING -m comment --comment "CNI portfwd requiring masquerade" -j CNI-HOSTPORT-MASQ
-A CNI-1234 -d 10.244.0.0/16 -m comment --comment "name: \"k0x\" id: \"abc\"" -j ACCEPT
-A CNI-1234 ! -d 224.0.0.0/4 -m comment --comment "name: \"k0x\" id: \"abc\"" -j MASQUERADE
-A CNI-9999 -d 10.88.0.0/16 -m comment --comment "name: \"podman\" id: \"def\"" -j ACCEPT
COMMIT
"#;

    fn k0x() -> Vec<CniNetwork> {
        vec![CniNetwork {
            name: "k0x".into(),
            bridges: vec![],
            ipam_dirs: vec![],
        }]
    }

    #[test]
    fn only_k0x_rules_and_chains_are_removed() {
        let changes = changes_for_dump(DUMP, &k0x());
        let expected: Vec<Vec<String>> = [
            vec![
                "-D",
                "POSTROUTING",
                "-s",
                "10.244.0.5/32",
                "-m",
                "comment",
                "--comment",
                "name: \"k0x\" id: \"abc\"",
                "-j",
                "CNI-1234",
            ],
            vec!["-F", "CNI-1234"],
            vec!["-X", "CNI-1234"],
        ]
        .into_iter()
        .map(|v| v.into_iter().map(String::from).collect())
        .collect();
        assert_eq!(changes, expected);
    }

    const KUBE_DUMP: &str = r#"*filter
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:DOCKER - [0:0]
:KUBE-FIREWALL - [0:0]
:KUBE-KUBELET-CANARY - [0:0]
-A INPUT -j KUBE-FIREWALL
-A OUTPUT -j KUBE-FIREWALL
-A OUTPUT -j DOCKER
-A KUBE-FIREWALL ! -s 127.0.0.0/8 -d 127.0.0.0/8 -m comment --comment "block incoming localnet connections" -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP
COMMIT
"#;

    #[test]
    fn kube_chains_go_with_the_rules_that_jump_to_them_and_nothing_else() {
        let changes = kube_changes_for_dump(KUBE_DUMP);
        let words = |v: &[&str]| v.iter().map(|w| w.to_string()).collect::<Vec<_>>();
        assert_eq!(
            changes,
            [
                words(&["-D", "INPUT", "-j", "KUBE-FIREWALL"]),
                words(&["-D", "OUTPUT", "-j", "KUBE-FIREWALL"]),
                words(&["-F", "KUBE-FIREWALL"]),
                words(&["-F", "KUBE-KUBELET-CANARY"]),
                words(&["-X", "KUBE-FIREWALL"]),
                words(&["-X", "KUBE-KUBELET-CANARY"]),
            ]
        );
        let merged = merge(&changes_for_dump(DUMP, &k0x()), &changes);
        let ops: Vec<&str> = merged.iter().map(|c| c[0].as_str()).collect();
        assert_eq!(ops, ["-D", "-D", "-D", "-F", "-F", "-F", "-X", "-X", "-X"]);
    }

    #[test]
    fn flannel_chains_go_too() {
        let dump = "*nat\n:POSTROUTING ACCEPT [0:0]\n:FLANNEL-POSTRTG - [0:0]\n\
                    -A POSTROUTING -m comment --comment \"flanneld masq\" -j FLANNEL-POSTRTG\n\
                    -A FLANNEL-POSTRTG -s 10.244.0.0/16 -d 10.244.0.0/16 -j RETURN\nCOMMIT\n";
        let ops: Vec<String> = kube_changes_for_dump(dump)
            .iter()
            .map(|c| c[..2].join(" "))
            .collect();
        assert_eq!(
            ops,
            ["-D POSTROUTING", "-F FLANNEL-POSTRTG", "-X FLANNEL-POSTRTG"]
        );
    }

    #[test]
    fn networks_come_from_the_rendered_conflist() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(k0x_networks(dir.path())[0].bridges, [DEFAULT_BRIDGE]);
        let net_d = dir.path().join("cni/net.d");
        fs::create_dir_all(&net_d).unwrap();
        fs::write(
            net_d.join("10-k0x.conflist"),
            r#"{"cniVersion":"1.0.0","name":"k0x-pods","plugins":[
                {"type":"bridge","bridge":"kbr0","ipMasq":true,
                 "ipam":{"type":"host-local","dataDir":"/var/lib/k0x/cni"}},{"type":"portmap"}]}"#,
        )
        .unwrap();
        fs::write(
            net_d.join("99-loopback.conf"),
            r#"{"name":"lo","type":"loopback"}"#,
        )
        .unwrap();
        assert_eq!(
            k0x_networks(dir.path()),
            [
                CniNetwork {
                    name: "k0x-pods".into(),
                    bridges: vec!["kbr0".into()],
                    ipam_dirs: vec!["/var/lib/k0x/cni".into()],
                },
                CniNetwork {
                    name: "lo".into(),
                    bridges: vec![],
                    ipam_dirs: vec![],
                }
            ]
        );
    }

    #[test]
    fn cni_state_of_k0x_networks_only() {
        let root = tempfile::tempdir().unwrap();
        let leases = root.path().join("var/lib/cni/networks");
        let results = root.path().join("var/lib/cni/results");
        for dir in [
            leases.join(DEFAULT_NETWORK),
            leases.join("podman"),
            results.clone(),
        ] {
            fs::create_dir_all(dir).unwrap();
        }
        for file in ["k0x-bridge-c1-eth0", "k0x-bridge-c2-eth0", "podman-d1-eth0"] {
            fs::write(results.join(file), "{}").unwrap();
        }
        let networks = k0x_networks(&root.path().join("no-config"));
        assert_eq!(
            state_paths(root.path(), &networks),
            [
                leases.join(DEFAULT_NETWORK),
                results.join("k0x-bridge-c1-eth0"),
                results.join("k0x-bridge-c2-eth0")
            ]
        );
    }

    #[test]
    fn names_that_could_escape_a_directory_are_ignored() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(
            dir.path().join("a.conflist"),
            r#"{"name":"../etc","plugins":[]}"#,
        )
        .unwrap();
        assert_eq!(k0x_networks(dir.path())[0].name, DEFAULT_NETWORK);
    }

    #[test]
    fn words_split_like_a_shell() {
        assert_eq!(
            split_words(r#"-A X --comment "a \"b\" c" -j Y"#),
            ["-A", "X", "--comment", "a \"b\" c", "-j", "Y"]
        );
    }
}
