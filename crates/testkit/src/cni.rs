//! Attaching a test network namespace to a CNI conflist by running the plugins the way a
//! container runtime does (CNI spec 1.0: configuration on stdin, parameters in the environment),
//! so container tests can give a `ctr run` container a pod address without a kubelet. Dropping a
//! [`PodNetwork`] runs DEL for every plugin (which removes their iptables rules and the address
//! lease), deletes the namespace and the bridge, also when the test failed half-way.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::{Value, json};

/// A short random hex suffix for names that must not clash with concurrent tests.
pub fn random_suffix() -> String {
    let mut bytes = [0u8; 3];
    getrandom::fill(&mut bytes).expect("random bytes");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The parameters every plugin call of one attachment shares.
#[derive(Debug)]
struct CniCall {
    plugin_dir: PathBuf,
    container_id: String,
    netns_path: String,
}

impl CniCall {
    fn exec(&self, conf: &Value, command: &str, ifname: &str) -> Result<Value, String> {
        let plugin = conf["type"].as_str().unwrap_or_default();
        let mut child = Command::new(self.plugin_dir.join(plugin))
            .env_clear()
            .env("CNI_COMMAND", command)
            .env("CNI_CONTAINERID", &self.container_id)
            .env("CNI_NETNS", &self.netns_path)
            .env("CNI_IFNAME", ifname)
            .env("CNI_PATH", &self.plugin_dir)
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("{plugin}: {e}"))?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin
                .write_all(conf.to_string().as_bytes())
                .map_err(|e| format!("{plugin}: {e}"))?;
        }
        let out = child
            .wait_with_output()
            .map_err(|e| format!("{plugin}: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "{plugin} {command}: {} {}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        if out.stdout.is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&out.stdout).map_err(|e| format!("{plugin}: bad result: {e}"))
    }
}

/// A network namespace attached (or to be attached) to a conflist.
#[derive(Debug)]
pub struct PodNetwork {
    call: CniCall,
    netns: String,
    bridge: String,
    conflist: Value,
    result: Option<Value>,
}

impl PodNetwork {
    /// Creates a fresh network namespace for `conflist`, whose first plugin creates `bridge`.
    pub fn create(plugin_dir: &Path, conflist: Value, bridge: &str) -> Self {
        let netns = format!("k0xt-{}", random_suffix());
        let status = Command::new("ip")
            .args(["netns", "add", &netns])
            .status()
            .expect("run ip netns add");
        assert!(status.success(), "ip netns add {netns} failed");
        Self {
            call: CniCall {
                plugin_dir: plugin_dir.to_path_buf(),
                container_id: format!("k0x-test-{netns}"),
                netns_path: format!("/var/run/netns/{netns}"),
            },
            netns,
            bridge: bridge.to_owned(),
            conflist,
            result: None,
        }
    }

    /// The namespace path (`ctr run --with-ns network:<path>`).
    pub fn netns_path(&self) -> &str {
        &self.call.netns_path
    }

    /// The CNI container id the plugins saw (iptables rules and leases carry it).
    pub fn container_id(&self) -> &str {
        &self.call.container_id
    }

    fn plugin_conf(&self, plugin: &Value, prev: Option<&Value>) -> Value {
        let mut conf = plugin.clone();
        conf["name"] = self.conflist["name"].clone();
        conf["cniVersion"] = self.conflist["cniVersion"].clone();
        if let Some(prev) = prev {
            conf["prevResult"] = prev.clone();
        }
        conf
    }

    /// ADD: loopback on `lo` (as containerd does), then the conflist chain on `eth0`. Returns
    /// the last plugin's result (`ips[0].address` is the pod address).
    pub fn attach(&mut self) -> Result<Value, String> {
        let lo = json!({ "cniVersion": "1.0.0", "name": "lo", "type": "loopback" });
        self.call.exec(&lo, "ADD", "lo")?;
        let mut prev: Option<Value> = None;
        let plugins = self.conflist["plugins"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        for plugin in plugins {
            let conf = self.plugin_conf(&plugin, prev.as_ref());
            let result = self.call.exec(&conf, "ADD", "eth0")?;
            self.result = Some(result.clone());
            prev = Some(result);
        }
        Ok(prev.unwrap_or(Value::Null))
    }
}

impl Drop for PodNetwork {
    fn drop(&mut self) {
        let plugins = self.conflist["plugins"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        for plugin in plugins.iter().rev() {
            let conf = self.plugin_conf(plugin, self.result.as_ref());
            if let Err(e) = self.call.exec(&conf, "DEL", "eth0") {
                eprintln!("cleanup: {e}");
            }
        }
        let _ = Command::new("ip")
            .args(["netns", "delete", &self.netns])
            .status();
        let _ = Command::new("ip")
            .args(["link", "delete", &self.bridge])
            .stderr(Stdio::null())
            .status();
    }
}
