//! containerd with a k0x-owned configuration, socket, root and state, so a containerd the host
//! already runs is never disturbed.
//!
//! The configuration is format version 3, containerd 2.x's own (the payload carries 2.1; a version
//! 2 file would be migrated at every start, with a warning). The sandbox image is pinned there
//! (`pinned_images.sandbox`), so image garbage collection never removes it; it is the same
//! reference k0x imports its pause image under (`spec.images.pause`). Users add
//! settings as `*.toml` drop-ins instead of editing a file k0x rewrites at every start. k0x merges
//! them itself, deeply and in file-name order: containerd's own `imports` replaces a whole plugin
//! section, so a drop-in that sets one CRI option would silently drop k0x's socket, runc and CNI
//! settings.

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use k0x_config::layout::PRIVATE_DIR_MODE;
use k0x_supervisor::{Probe, Spec};

use crate::cni::{self, BridgeNetwork, CniSetup, POD_CIDR_PLACEHOLDER};
use crate::files::{DirSpec, RenderedFile};
use crate::{Component, NodeContext, NodeError, paths};

pub(crate) const NAME: &str = k0x_config::components::CONTAINERD;

/// The configuration format k0x writes, and the only one drop-ins may declare.
const CONFIG_VERSION: i64 = 3;

#[derive(Debug)]
pub(crate) struct Containerd;

/// A TOML basic string.
fn toml_str(value: impl std::fmt::Display) -> String {
    let value = value.to_string();
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Renders containerd's `config.toml`.
fn render_config(ctx: &NodeContext) -> String {
    let data = &ctx.data;
    let run = &ctx.run;
    let images = "plugins.'io.containerd.cri.v1.images'";
    let runtime = "plugins.'io.containerd.cri.v1.runtime'";
    let conf_template = match cni::cni_setup(ctx) {
        CniSetup::Bridge { template } => {
            format!("    conf_template = {}\n", toml_str(template.display()))
        }
        CniSetup::Flannel { .. } | CniSetup::External { .. } => String::new(),
    };
    format!(
        "version = {CONFIG_VERSION}\n\
         root = {root}\n\
         state = {state}\n\
         \n\
         [grpc]\n\
         \x20 address = {socket}\n\
         \n\
         [plugins]\n\
         \x20 [plugins.'io.containerd.internal.v1.opt']\n\
         \x20   path = {opt}\n\
         \x20 [plugins.'io.containerd.grpc.v1.cri']\n\
         \x20   stream_server_address = '127.0.0.1'\n\
         \x20 [{images}.pinned_images]\n\
         \x20   sandbox = {pause}\n\
         \x20 [{images}.registry]\n\
         \x20   config_path = {registry_hosts}\n\
         \x20 [{runtime}]\n\
         \x20   netns_mounts_under_state_dir = true\n\
         \x20   restrict_oom_score_adj = {restrict_oom}\n\
         \x20   [{runtime}.containerd]\n\
         \x20     default_runtime_name = 'runc'\n\
         \x20     [{runtime}.containerd.runtimes.runc]\n\
         \x20       runtime_type = 'io.containerd.runc.v2'\n\
         \x20       [{runtime}.containerd.runtimes.runc.options]\n\
         \x20         BinaryName = {runc}\n\
         \x20         Root = {runc_root}\n\
         \x20         SystemdCgroup = {systemd}\n\
         \x20   [{runtime}.cni]\n\
         \x20     bin_dirs = [{cni_bin}]\n\
         \x20     conf_dir = {cni_conf}\n\
         {conf_template}",
        root = toml_str(data.containerd().display()),
        state = toml_str(paths::containerd_state(run).display()),
        socket = toml_str(run.containerd_socket().display()),
        opt = toml_str(data.containerd().join("opt").display()),
        pause = toml_str(&ctx.config.spec.images.pause),
        registry_hosts = toml_str(paths::containerd_registry_hosts(data).display()),
        restrict_oom = !ctx.node.oom_score_lowerable,
        runc = toml_str(ctx.node.binary("runc").display()),
        runc_root = toml_str(paths::runc_root(run).display()),
        systemd = ctx.node.cgroup_driver.systemd_cgroup(),
        cni_bin = toml_str(ctx.node.cni_bin_dir.display()),
        cni_conf = toml_str(paths::cni_conf_dir(data).display()),
    )
}

/// The drop-ins in the imports directory, in file-name order.
fn drop_ins(ctx: &NodeContext) -> Result<Vec<PathBuf>, NodeError> {
    let dir = paths::containerd_imports(&ctx.data);
    let entries = match fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(NodeError::DropIn {
                path: dir,
                reason: e.to_string(),
            });
        }
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml") && p.is_file())
        .collect();
    files.sort();
    Ok(files)
}

/// Parses one drop-in; its `version`, when present, must be the generated file's.
fn parse_drop_in(path: &Path) -> Result<toml::Table, NodeError> {
    let fail = |reason: String| NodeError::DropIn {
        path: path.to_path_buf(),
        reason,
    };
    let text = fs::read_to_string(path).map_err(|e| fail(e.to_string()))?;
    let mut table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
        let line = e
            .span()
            .map_or(0, |span| text[..span.start].matches('\n').count() + 1);
        fail(format!("not valid TOML at line {line}: {}", e.message()))
    })?;
    match table.remove("version") {
        None => Ok(table),
        Some(toml::Value::Integer(CONFIG_VERSION)) => Ok(table),
        Some(other) => Err(fail(format!(
            "has version = {other}, k0x writes version {CONFIG_VERSION}"
        ))),
    }
}

/// Deep-merges `overlay` into `base`: tables merge key by key, anything else replaces.
fn merge_tables(base: &mut toml::Table, overlay: toml::Table) {
    for (key, value) in overlay {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(existing)), toml::Value::Table(more)) => {
                merge_tables(existing, more);
            }
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

/// containerd's `config.toml`: k0x's rendering with the user's drop-ins merged over it.
pub fn containerd_config(ctx: &NodeContext) -> Result<String, NodeError> {
    let rendered = render_config(ctx);
    let mut config: toml::Table =
        rendered
            .parse()
            .map_err(|e: toml::de::Error| NodeError::DropIn {
                path: paths::containerd_config(&ctx.data),
                reason: format!(
                    "k0x rendered invalid TOML ({}); please report this",
                    e.message()
                ),
            })?;
    let mut header = format!(
        "# Written by k0x at every start: add settings as *.toml files in {} instead.\n",
        paths::containerd_imports(&ctx.data).display()
    );
    for path in drop_ins(ctx)? {
        merge_tables(&mut config, parse_drop_in(&path)?);
        header.push_str(&format!("# merged: {}\n", path.display()));
    }
    let body = toml::to_string(&config).map_err(|e| NodeError::DropIn {
        path: paths::containerd_imports(&ctx.data),
        reason: format!("merged configuration cannot be written: {e}"),
    })?;
    Ok(format!("{header}{body}"))
}

impl Component for Containerd {
    fn name(&self) -> &'static str {
        NAME
    }

    fn dirs(&self, ctx: &NodeContext) -> Vec<DirSpec> {
        let data = &ctx.data;
        vec![
            DirSpec::new(data.containerd(), PRIVATE_DIR_MODE),
            DirSpec::new(ctx.run.containerd(), PRIVATE_DIR_MODE),
            DirSpec::new(paths::containerd_imports(data), PRIVATE_DIR_MODE),
            DirSpec::new(paths::containerd_registry_hosts(data), PRIVATE_DIR_MODE),
            DirSpec::new(paths::cni_conf_dir(data), PRIVATE_DIR_MODE),
            DirSpec::new(paths::cni_ipam_dir(&ctx.run), PRIVATE_DIR_MODE),
        ]
    }

    fn files(&self, ctx: &NodeContext) -> Result<Vec<RenderedFile>, NodeError> {
        let mut files = vec![RenderedFile::private(
            paths::containerd_config(&ctx.data),
            containerd_config(ctx)?,
        )];
        match cni::cni_setup(ctx) {
            CniSetup::Bridge { template } => {
                let network = BridgeNetwork {
                    subnet: POD_CIDR_PLACEHOLDER.to_owned(),
                    mtu: None,
                    ip_masq: true,
                };
                let text = cni::bridge_conflist(&network, &paths::cni_ipam_dir(&ctx.run));
                files.push(RenderedFile::private(template, text));
            }
            other => tracing::info!(component = NAME, "{other}"),
        }
        Ok(files)
    }

    /// The conflist another network setup left (after a change of `spec.network.provider`):
    /// containerd would load the first one by name.
    fn stale_files(&self, ctx: &NodeContext) -> Vec<PathBuf> {
        cni::stale_conflists(ctx)
    }

    fn spec(&self, ctx: &NodeContext) -> Result<Spec, NodeError> {
        let config = paths::containerd_config(&ctx.data);
        let socket = ctx.run.containerd_socket();
        let mut spec = Spec::new(NAME, ctx.node.binary(NAME));
        spec.args = vec!["--config".into(), config.display().to_string()];
        // containerd finds its shim (containerd-shim-runc-v2) on PATH: put the payload first.
        let host_path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
        let path = format!("{}:{host_path}", ctx.node.bin_dir.display());
        spec.env.insert("PATH".into(), path);
        spec.readiness = ctx.readiness(NAME, Probe::UnixSocket(socket));
        spec.stop_timeout = Duration::from_secs(30);
        Ok(spec)
    }
}

#[cfg(test)]
mod tests {
    use k0x_config::schema::NetworkProvider;

    use super::*;
    use crate::CgroupDriver;
    use crate::test_support::context;

    #[test]
    fn config_points_at_k0x_owned_paths() {
        let mut ctx = context();
        ctx.node.cgroup_driver = CgroupDriver::Systemd;
        let text = render_config(&ctx);
        assert!(text.starts_with("version = 3\n"));
        assert!(text.contains("address = \"/run/k0x/containerd/containerd.sock\""));
        assert!(text.contains("root = \"/var/lib/k0x/containerd\""));
        assert!(text.contains("BinaryName = \"/var/lib/k0x/bin/runc\""));
        assert!(text.contains("SystemdCgroup = true"));
        assert!(text.contains("sandbox = \"k0x.io/pause:3.10-k0x\""));
        assert!(text.contains("restrict_oom_score_adj = false"));
        assert!(!text.contains("imports"), "k0x merges drop-ins itself");
        assert!(
            !text.contains("conf_template"),
            "flannel's conflist comes from k0x"
        );
    }

    #[test]
    fn only_the_bridge_provider_has_a_template() {
        let mut ctx = context();
        ctx.config.spec.network.provider = NetworkProvider::Bridge;
        assert!(render_config(&ctx).contains("conf_template = "));
        assert_eq!(Containerd.files(&ctx).unwrap().len(), 2);
        for provider in [NetworkProvider::Custom, NetworkProvider::Flannel] {
            ctx.config.spec.network.provider = provider;
            assert!(!render_config(&ctx).contains("conf_template"));
            assert_eq!(Containerd.files(&ctx).unwrap().len(), 1);
        }
    }

    #[test]
    fn drop_ins_merge_deeply_in_name_order() {
        let tmp = tempfile::tempdir().unwrap();
        let mut ctx = context();
        ctx.data = k0x_config::DataDir::new(tmp.path());
        let dir = paths::containerd_imports(&ctx.data);
        fs::create_dir_all(&dir).unwrap();
        let images = "[plugins.'io.containerd.cri.v1.images']";
        fs::write(
            dir.join("20-b.toml"),
            format!("{images}\nmax_concurrent_downloads = 9\n"),
        )
        .unwrap();
        fs::write(
            dir.join("10-a.toml"),
            format!("version = 3\n{images}\nmax_concurrent_downloads = 4\n"),
        )
        .unwrap();
        fs::write(dir.join("notes.txt"), "ignored").unwrap();
        let merged: toml::Table = containerd_config(&ctx).unwrap().parse().unwrap();
        let images = &merged["plugins"]["io.containerd.cri.v1.images"];
        assert_eq!(images["max_concurrent_downloads"].as_integer(), Some(9));
        assert_eq!(
            images["pinned_images"]["sandbox"].as_str(),
            Some("k0x.io/pause:3.10-k0x")
        );
        let cri = &merged["plugins"]["io.containerd.cri.v1.runtime"];
        let runc = &cri["containerd"]["runtimes"]["runc"]["options"];
        assert_eq!(runc["BinaryName"].as_str(), Some("/var/lib/k0x/bin/runc"));
        assert_eq!(runc["Root"].as_str(), Some("/run/k0x/containerd/runc"));
        // Pod network namespaces live under k0x's run dir, where reset finds them.
        assert_eq!(cri["netns_mounts_under_state_dir"].as_bool(), Some(true));
    }

    #[test]
    fn bad_drop_ins_name_file_and_line() {
        let tmp = tempfile::tempdir().unwrap();
        let mut ctx = context();
        ctx.data = k0x_config::DataDir::new(tmp.path());
        let dir = paths::containerd_imports(&ctx.data);
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("bad.toml"), "version = 3\n[plugins\nx = 1\n").unwrap();
        let err = containerd_config(&ctx).unwrap_err().to_string();
        assert!(err.contains("bad.toml: not valid TOML at line 2"), "{err}");
        fs::write(dir.join("bad.toml"), "version = 2\n").unwrap();
        let err = containerd_config(&ctx).unwrap_err().to_string();
        assert!(
            err.contains("has version = 2, k0x writes version 3"),
            "{err}"
        );
    }

    #[test]
    fn toml_strings_are_escaped() {
        assert_eq!(toml_str("a\"b\\c\n"), "\"a\\\"b\\\\c\\u000A\"");
    }
}
