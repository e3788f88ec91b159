//! What the commands that start a node share (`k0x server`, `k0x worker`, and `k0x install`,
//! which checks what its unit will run): the join token a node is given and the checks that run
//! before anything is locked or written.

use std::path::Path;

use anyhow::Context;
use k0x_config::ClusterConfig;
use k0x_join::Token;

use crate::cli::{GlobalArgs, HostFixesArg};
use crate::node::{self, NodeOptions, NodeRole};

/// The join token a node command was given, and the role it must be for.
pub struct NodeToken<'a> {
    pub argument: Option<&'a str>,
    pub file: Option<&'a Path>,
    pub role: k0x_join::TokenRole,
    pub wrong_role_hint: &'a str,
}

impl NodeToken<'_> {
    /// The token, well-formed and of the right role; `None` when none was given.
    pub fn load(&self) -> anyhow::Result<Option<Token>> {
        match k0x_join::token::load(self.argument, self.file) {
            Ok(loaded) => {
                anyhow::ensure!(
                    loaded.role == self.role,
                    "this is a {} token; {}",
                    loaded.role.as_str(),
                    self.wrong_role_hint
                );
                Ok(Some(loaded))
            }
            Err(k0x_join::token::LoadError::Missing) => Ok(None),
            Err(err) => Err(err.into()),
        }
    }
}

/// Refuses `--disable-components` names that are no component.
pub fn check_disabled(disabled: &[String]) -> anyhow::Result<()> {
    k0x_node::filter_disabled(Vec::new(), disabled)?;
    Ok(())
}

/// Refuses a `--profile` the configuration does not define.
pub fn check_profile(config: &ClusterConfig, profile: Option<&str>) -> anyhow::Result<()> {
    k0x_node::worker_profile(config, profile).context("--profile")?;
    Ok(())
}

/// Checks what the command line alone can show wrong before anything is locked or written
/// (component names, the configuration, the worker profile, the token's role), then runs the
/// node. `k0x install` runs the same checks on what its unit will run.
pub fn run_node(
    global: &GlobalArgs,
    role: NodeRole,
    token: &NodeToken<'_>,
    disabled: &[String],
    profile: Option<&str>,
    host_fixes: HostFixesArg,
) -> anyhow::Result<()> {
    check_disabled(disabled)?;
    let config = global.load_config()?;
    check_profile(&config, profile)?;
    let options = NodeOptions {
        role,
        disabled: disabled.to_vec(),
        worker_profile: profile.map(str::to_owned),
        token: token.load()?,
        host_fixes: host_fixes.host_fixes(&config),
    };
    node::run(config, global.data_dir(), global.run_dir(), &options)
}
